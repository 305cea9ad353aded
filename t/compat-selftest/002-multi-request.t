# Self-test of the compat runner: blocks sending several requests
# (--- request eval arrays, request packets, --- pipelined_requests,
# --- raw_request) and per-request expectations given as arrays.

use Test::Nginx::Socket;

repeat_each(2);

# Per repetition, per block:
#  1: 3 requests x (status + body)                          = 6
#  2: 2 x (status + body)                                   = 4
#  3: 2 x (status + 1 header)                               = 4
#  4: 1 x (status + body)                                   = 2
#  5: 1 x (status + body)                                   = 2
#  6: 2 pipelined x (status + body)                         = 4
#  7: 3 pipelined x status                                  = 3
#  8: raw_request: status + body                            = 2
#  9: raw_request packets: status + body                    = 2
# 10: raw_request HTTP/0.9-ish, http09: status + body       = 2
# 11: single request, array expectations: status + body     = 2
# 12: ignore_response                                       = 0
plan tests => repeat_each() * 33;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: array of requests, array expectations
--- config
    location /echo {
        return 200 "$request_method $uri\n";
    }
    location = /missing {
        return 404 "nope\n";
    }
--- request eval
["GET /echo/a", "POST /echo/b\nbody", "GET /missing"]
--- error_code eval
[200, 200, 404]
--- response_body eval
["GET /echo/a\n", "POST /echo/b\n", "nope\n"]



=== TEST 2: more_headers given per request
--- config
    location = /t {
        return 200 "x=$http_x\n";
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X: one", "X: two"]
--- response_body eval
["x=one\n", "x=two\n"]



=== TEST 3: response_headers per request
--- config
    location /h {
        add_header X-Uri $uri;
        return 204;
    }
--- request eval
["GET /h/1", "GET /h/2"]
--- error_code eval
[204, 204]
--- response_headers eval
["X-Uri: /h/1", "X-Uri: /h/2"]



=== TEST 4: one request split into packets, with a delay before the second
--- config
    location = /t {
        return 200 "len=$http_content_length ua=$http_user_agent\n";
    }
--- more_headers
User-Agent: split
--- request eval
[["POST /t\nhel", {value => "lo", delay_before => 0.05}]]
--- response_body eval
["len=5 ua=split\n"]



=== TEST 5: Transfer-Encoding: chunked in more_headers: no Content-Length added
--- config
    location = /t {
        return 200 "te=$http_transfer_encoding cl=$http_content_length\n";
    }
--- more_headers
Transfer-Encoding: chunked
--- request eval
"POST /t
5\r
hello\r
0\r
\r
"
--- response_body
te=chunked cl=



=== TEST 6: pipelined requests on one connection
--- config
    location /p {
        return 200 "$uri conn=$http_connection\n";
    }
--- pipelined_requests eval
["GET /p/1", "GET /p/2"]
--- response_body eval
["/p/1 conn=keep-alive\n", "/p/2 conn=close\n"]



=== TEST 7: pipelined requests, status codes only
--- config
    location /ok { return 200 "ok"; }
    location /no { return 403; }
--- pipelined_requests eval
["GET /ok", "GET /no", "GET /ok"]
--- error_code eval
[200, 403, 200]



=== TEST 8: raw_request is sent verbatim
--- config
    location = /t {
        return 200 "host=$http_host proto=$server_protocol\n";
    }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: raw.example\r\n\r\n"
--- response_body
host=raw.example proto=HTTP/1.0



=== TEST 9: raw_request split into packets with raw_request_middle_delay
--- config
    location = /t {
        return 200 "a=$arg_a\n";
    }
--- raw_request eval
["GET /t?a=", "42 HTTP/1.1\r\nHost: local", "host\r\nConnection: close\r\n\r\n"]
--- raw_request_middle_delay: 0.02
--- response_body
a=42



=== TEST 10: HTTP/0.9 request, response parsed as --- http09
--- config
    location = /t {
        return 200 "ninety\n";
    }
--- raw_request eval
"GET /t\r\n"
--- http09
--- response_body
ninety



=== TEST 11: a single request takes the first element of array expectations
--- config
    location = /t {
        return 202 "first\n";
    }
--- request
GET /t
--- error_code eval
[202]
--- response_body eval
["first\n"]



=== TEST 12: ignore_response: no response checks at all
--- config
    location = /t {
        return 500;
    }
--- request
GET /t
--- ignore_response
