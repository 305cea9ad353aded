# Self-test of the compat runner: the embedded one-shot upstream servers
# (--- tcp_listen, --- tcp_reply, --- tcp_query, --- tcp_query_len,
# --- tcp_reply_delay, --- tcp_shutdown, --- tcp_no_close, --- udp_listen,
# --- udp_reply, --- udp_query) and client --- timeout / --- abort.
#
# nginx proxies to the fake server; tcp_query sees exactly the bytes nginx
# sent upstream. The version, Host and Connection are written out, in
# that order: nginx 1.29 and later proxy with HTTP/1.1 by default and,
# with HTTP/1.0, no longer send "Connection: close", and versions order
# default and configured headers differently; left to the defaults, those
# bytes differ between versions (and a one-shot server reading
# tcp_query_len bytes then waits for the rest).  tcp_query and tcp_query_len each add one TAP test, run
# after the HTTP checks.

use Test::Nginx::Socket;

repeat_each(2);

plan tests => repeat_each() * (
      4     # 1: status + body + tcp_query + tcp_query_len
    + 3     # 2: status + body + tcp_query_len
    + 2     # 3: status + body
    + 3     # 4: status + body + tcp_query (regex)
    + 4     # 5: status + error_log + tcp_query + tcp_query_len
    + 2     # 6: status + error_log
    + 2     # 7: status + error_log
    + 3     # 8: status + body + error_log
    + 2     # 9: status + body (client timed out, --- abort)
    + 3     # 10: status + body + tcp_query
    + 3     # 11: status + error_log + udp_query
);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: tcp_reply string, tcp_query exact bytes, tcp_query_len
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113/up;
    }
--- tcp_listen: 19113
--- tcp_query eval
"GET /up HTTP/1.0\r
Host: 127.0.0.1:19113\r
Connection: close\r
\r
"
--- tcp_query_len: 62
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc"
--- request
GET /t
--- response_body chomp
abc



=== TEST 2: tcp_reply as an array of writes
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113;
    }
--- tcp_listen: 19113
--- tcp_query_len: 61
--- tcp_reply eval
["HTTP/1.0 200 OK\r\n", "X-Up: 1\r\n\r\n", "one,", "two"]
--- request
GET /t
--- response_body chomp
one,two



=== TEST 3: tcp_reply as a sub computing the reply from the query
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113/dyn;
    }
--- tcp_listen: 19113
--- tcp_reply eval
sub {
    my $req = shift;
    my ($line) = $req =~ /^(.*?)\r\n/;
    return "HTTP/1.0 200 OK\r\n\r\nupstream saw: $line\n";
}
--- request
GET /t
--- response_body
upstream saw: GET /dyn HTTP/1.0



=== TEST 4: tcp_query given as a regex (compared with like)
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113;
        proxy_set_header X-Trace abc;
    }
--- tcp_listen: 19113
--- tcp_query eval
qr/\r\nX-Trace: abc\r\n/
--- tcp_query_len: 75
--- tcp_reply eval
"HTTP/1.0 204 No Content\r\n\r\n"
--- request
GET /t
--- error_code: 204



=== TEST 5: the request body reaches the upstream (Content-Length added)
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113;
    }
--- tcp_listen: 19113
--- tcp_query eval
qr/\r\nContent-Length: 5\r\n\r\nhello\z/
--- tcp_query_len: 86
--- tcp_reply eval
"HTTP/1.0 201 Created\r\n\r\n"
--- request
POST /t
hello
--- error_code: 201
--- error_log
http proxy header:



=== TEST 6: tcp_reply_delay longer than proxy_read_timeout -> 504
--- config
    location = /t {
        proxy_read_timeout 200ms;
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113;
    }
--- tcp_listen: 19113
--- tcp_reply_delay: 600ms
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\ntoo late"
--- request
GET /t
--- error_code: 504
--- error_log
upstream timed out



=== TEST 7: tcp_shutdown of the write side without a reply -> 502
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113;
    }
--- tcp_listen: 19113
--- tcp_shutdown: 1
--- request
GET /t
--- error_code: 502
--- error_log
upstream prematurely closed connection



=== TEST 8: tcp_no_close keeps the connection open (nginx read times out)
--- config
    location = /t {
        proxy_read_timeout 300ms;
        proxy_buffering off;
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113;
    }
--- tcp_listen: 19113
--- tcp_no_close
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\npartial"
--- request
GET /t HTTP/1.0
--- response_body chomp chop
partial!
--- error_log
upstream timed out



=== TEST 9: client --- timeout with --- abort is not a failure
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://127.0.0.1:19113;
    }
--- tcp_listen: 19113
--- tcp_reply_delay: 1s
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\nslow"
--- request
GET /t
--- timeout: 300ms
--- abort
--- error_code:
--- response_body



=== TEST 10: tcp_listen on a unix domain socket
--- config
    location = /t {
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://unix:/tmp/tnginx-compat-selftest.sock:/via-unix;
    }
--- tcp_listen: /tmp/tnginx-compat-selftest.sock
--- tcp_query eval
qr{\AGET /via-unix HTTP/1\.0\r\nHost: localhost\r\n}
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\nunix ok\n"
--- request
GET /t
--- response_body
unix ok



=== TEST 11: udp_listen / udp_reply / udp_query (nginx's resolver talks to it)
--- config
    resolver 127.0.0.1:19114 ipv6=off;
    resolver_timeout 500ms;
    location = /t {
        set $up "selftest.invalid";
        proxy_http_version 1.0;
        proxy_set_header Host $proxy_host;
        proxy_set_header Connection close;
        proxy_pass http://$up;
    }
--- udp_listen: 19114
--- udp_reply: not a DNS packet
--- udp_query eval
qr/\x{08}selftest\x{07}invalid\x{00}/
--- request
GET /t
--- error_code: 502
--- error_log
could not be resolved
