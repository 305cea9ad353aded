# Self-test of the Test::Nginx::Socket compat runner (t/compat): basic
# request/response sections.  Runs against plain nginx, no module loaded.
# Every block here must behave identically under the real CPAN module.

use Test::Nginx::Socket;

repeat_each(2);

# Per repetition: 65 TAP tests (one "status code ok" per request, one per
# body check and one per listed response header).
plan tests => repeat_each() * 65;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: plain return, multi-line body keeps exactly one trailing newline
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
    GET /t
--- response_body
hello



=== TEST 2: inline error_code, body with chomp filter
--- config
    location = /t {
        return 201 "created";
    }
--- request
GET /t
--- error_code: 201
--- response_body chomp
created



=== TEST 3: response_body eval
--- config
    location = /t {
        return 200 "a\tb\r\nc";
    }
--- request
GET /t
--- response_body eval
"a\tb\r\nc"



=== TEST 4: request defaults: URI "/", HTTP/1.1, index.html from html/
--- config
--- request
GET
--- response_body: <html><head><title>It works!</title></head><body>It works!</body></html>



=== TEST 5: default Host and Connection headers, no Content-Length without body
--- config
    location = /t {
        return 200 "host=$http_host conn=$http_connection cl=$http_content_length proto=$server_protocol\n";
    }
--- request
GET /t
--- response_body
host=localhost conn=close cl= proto=HTTP/1.1



=== TEST 6: request with a body gets Content-Length of the trimmed body
--- config
    location = /t {
        return 200 "$request_method cl=$http_content_length\n";
    }
--- request
POST /t
  hello world  

--- response_body
POST cl=11



=== TEST 7: comments and leading blank lines before the request line
--- config
    location = /t {
        return 200 "args=$args\n";
    }
--- request

    # this comment is not part of the request
    # neither is this one
    GET /t?a=1&b=2
--- response_body
args=a=1&b=2



=== TEST 8: more_headers (comment lines ignored)
--- config
    location = /t {
        return 200 "foo=$http_x_foo bar=$http_x_bar ua=$http_user_agent\n";
    }
--- more_headers
X-Foo: 1
# X-Ignored: yes
X-Bar: hello world
--- request
GET /t
--- response_body
foo=1 bar=hello world ua=



=== TEST 9: more_headers overriding Host and Connection
--- config
    location = /t {
        return 200 "host=$http_host conn=$http_connection\n";
    }
--- more_headers
Host: example.com
Connection: close
--- request
GET /t
--- response_body
host=example.com conn=close



=== TEST 10: explicit HTTP/1.0 request line
--- config
    location = /t {
        return 200 "proto=$server_protocol\n";
    }
--- request
GET /t HTTP/1.0
--- response_body
proto=HTTP/1.0



=== TEST 11: error_code with a 404 page body (response_body_like)
--- config
    location = /t {
        return 404;
    }
--- request
GET /t
--- error_code: 404
--- response_body_like: 404 Not Found



=== TEST 12: response_body_like is a multi-line regex with /s
--- config
    location = /t {
        return 200 "line one\nline two\n";
    }
--- request
GET /t
--- response_body_like chomp
^line one.line \w+$



=== TEST 13: response_body_unlike
--- config
    location = /t {
        return 200 "all fine\n";
    }
--- request
GET /t
--- response_body_unlike: error



=== TEST 14: response_headers: exact values and absent headers
--- config
    location = /t {
        add_header X-Foo "bar baz";
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Foo: bar baz
!X-Missing
Content-Type: text/plain
--- response_body
ok



=== TEST 15: response_headers_like anchors the pattern
--- config
    location = /t {
        add_header X-Num 12345;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers_like
X-Num: \d+
Server: nginx/[\d.]+
--- response_body
ok



=== TEST 16: response headers are case-insensitive, "_" matches "-"
--- config
    location = /t {
        add_header X-Some-Thing yes;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
x_some_thing: yes
--- response_body
ok



=== TEST 17: repeated response headers are joined with ", "
--- config
    location = /t {
        add_header X-Multi a;
        add_header X-Multi b;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Multi: a, b
--- response_body
ok



=== TEST 18: raw_response_headers_like / unlike
--- config
    location = /t {
        add_header X-Raw yes;
        return 200 "ok\n";
    }
--- request
GET /t
--- raw_response_headers_like: ^HTTP/1\.1 200 OK\r\n.*X-Raw: yes\r\n
--- raw_response_headers_unlike: Transfer-Encoding



=== TEST 19: chunked response is decoded
--- config
    location /sub/ {
        root html;
        sub_filter_types *;
        sub_filter world nginx;
        sub_filter_once off;
    }
--- user_files
>>> sub/a.txt
hello world, world!
--- request
GET /sub/a.txt
--- response_headers
Transfer-Encoding: chunked
--- response_body
hello nginx, nginx!



=== TEST 20: HTTP/1.0 response without Content-Length (read until close)
--- config
    location /sub/ {
        root html;
        sub_filter_types *;
        sub_filter a b;
    }
--- user_files
>>> sub/x.txt
a-a
--- request
GET /sub/x.txt HTTP/1.0
--- response_headers
!Content-Length
--- response_body
b-a



=== TEST 21: HEAD request (no body expected)
--- config
    location = /t {
        return 200 "this body is not sent\n";
    }
--- request
HEAD /t
--- response_headers
Content-Length: 22
--- response_body



=== TEST 22: redirect with $ServerPort in the expected header value
--- config
    location = /t {
        return 301 http://localhost:$server_port/x;
    }
--- request
GET /t
--- error_code: 301
--- response_headers
Location: http://localhost:$ServerPort/x
--- response_body_like: 301 Moved Permanently



=== TEST 23: block without --- config reuses the previous nginx
--- request
GET /t
--- error_code: 301
--- response_body_like: Moved



=== TEST 24: $ServerPort in response_body
--- config
    location = /t {
        return 200 "port $server_port\n";
    }
--- request
GET /t
--- response_body
port $ServerPort



=== TEST 25: timeout section with a time unit
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- timeout: 500ms
--- response_body
ok



=== TEST 26: error_code eval
--- config
    location = /t {
        return 418;
    }
--- request
GET /t
--- error_code eval
400 + 18



=== TEST 27: error_code_like
--- config
    location = /t {
        return 503;
    }
--- request
GET /t
--- error_code_like: ^50\d$
--- response_body_like: 503
