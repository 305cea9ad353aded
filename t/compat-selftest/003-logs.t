# Self-test of the compat runner: error.log / access.log sections
# (--- error_log, --- no_error_log, --- grep_error_log[_out], --- log_level,
# --- access_log, --- no_access_log, --- wait).
#
# A request for a missing static file makes nginx log, at [error] level:
#   open() ".../html/nope.html" failed (2: No such file or directory)

use Test::Nginx::Socket;

repeat_each(2);

# error_log / no_error_log: one test per pattern; grep_error_log_out: one.
plan tests => repeat_each() * (
      3        # 1: status + 2 error_log lines
    + 3        # 2: status + error_log array of 2
    + 2        # 3: status + error_log qr
    + 4        # 4: status + body + no_error_log array of 2
    + 2        # 5: status + grep_error_log_out
    + 2        # 6: status + grep_error_log_out (regex)
    + 2        # 7: status + grep_error_log_out (array by repetition)
    + 3        # 8: status + body + no_error_log
    + 3        # 9: status + body + error_log
    + 6        # 10: 2 requests x (status + error_log), no_error_log twice
    + 4        # 11: status + body + access_log + no_access_log
    + 3        # 12: status + body + error_log (after --- wait)
);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: error_log: every line is a substring that must appear
(the value is NOT subject to $TEST_NGINX_* expansion; see TEST 2)
--- config
--- request
GET /nope.html
--- error_code: 404
--- error_log
[error]
/html/nope.html" failed (2: No such file or directory)



=== TEST 2: error_log eval: array of substrings and regexes
--- config
--- request
GET /nope.html
--- error_code: 404
--- error_log eval
[qq{open() "$ENV{TEST_NGINX_SERVER_ROOT}/html/nope.html" failed},
 qr/open\(\) "[^"]+nope\.html" failed/]



=== TEST 3: error_log eval: a single regex
--- config
--- request
GET /nope.html
--- error_code: 404
--- error_log eval
qr/\[error\] \d+#\d+: \*\d+ open\(\)/



=== TEST 4: no_error_log: patterns that must not appear
--- config
    location = /t {
        return 200 "fine\n";
    }
--- request
GET /t
--- response_body
fine
--- no_error_log eval
["[error]", qr/\[(?:alert|crit|emerg)\]/]



=== TEST 5: grep_error_log (substring) / grep_error_log_out
--- config
--- request
GET /nope.html
--- error_code: 404
--- grep_error_log chop
No such file or directory
--- grep_error_log_out
No such file or directory



=== TEST 6: grep_error_log eval regex, grep_error_log_out regex
--- config
--- request
GET /nope.html
--- error_code: 404
--- grep_error_log eval
qr/open\(\) "[^"]+"/
--- grep_error_log_out eval
qr{\Aopen\(\) ".*/html/nope\.html"\n\z}



=== TEST 7: grep_error_log_out as an array indexed by repetition
--- config
--- request
GET /nope.html
--- error_code: 404
--- grep_error_log eval: qr/\(2: No such file or directory\)/
--- grep_error_log_out eval
["(2: No such file or directory)\n", "(2: No such file or directory)\n"]



=== TEST 8: --- log_level: warn hides debug messages
--- config
    location = /t {
        return 200 "quiet\n";
    }
--- log_level: warn
--- request
GET /t?quiet
--- response_body
quiet
--- no_error_log
http request line: "GET /t?quiet



=== TEST 9: default log level is debug
--- config
    location = /t {
        return 200 "loud\n";
    }
--- request
GET /t?loud
--- response_body
loud
--- error_log
http request line: "GET /t?loud



=== TEST 10: with several requests the logs are checked after each one
--- config
--- request eval
["GET /nope.html", "GET /nope.html"]
--- error_code eval
[404, 404]
--- error_log
nope.html
--- no_error_log
[alert]



=== TEST 11: access_log / no_access_log
--- config
    location = /t {
        return 200 "logged\n";
    }
--- request
GET /t?from=selftest
--- response_body
logged
--- access_log
"GET /t?from=selftest HTTP/1.1" 200
--- no_access_log
"GET /never



=== TEST 12: --- wait delays the log checks
--- config
    location = /t {
        return 200 "waited\n";
    }
--- request
GET /t
--- wait: 0.1
--- response_body
waited
--- error_log
http log handler
