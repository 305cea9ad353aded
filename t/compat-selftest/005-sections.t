# Self-test of the compat runner: configuration-shaping sections, files,
# skipping, filters and the Perl hooks (add_block_preprocessor,
# add_response_body_check, add_cleanup_handler).

use Test::Nginx::Socket;

repeat_each(2);

$ENV{TEST_NGINX_SELFTEST_WORD} = 'bonjour';

# Blocks without a --- request get a default one.
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /t\n") unless defined $block->request;
});

# A custom section checked against every response body: one TAP test each.
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    my $want = $block->body_length;
    return unless defined $want;
    is(length($body), $want, $block->name . " - body_length (req $req_idx)");
});

my $cleaned = 0;
add_cleanup_handler(sub { $cleaned++ });

plan tests => repeat_each() * (
      4     # 1: user_files: 2 requests x (status + body)
    + 3     # 2: user_files eval with timestamp: status + header + body
    + 3     # 3: user_files text with timestamp: status + header + body
    + 2     # 4: $TEST_NGINX_* inside user_files
    + 2     # 5: http_config
    + 2     # 6: main_config
    + 2     # 7: post_main_config
    + 2     # 8: $TEST_NGINX_* in config
    + 2     # 9: $TEST_NGINX_RAND_PORT_1
    + 2     # 10: server_name
    + 2     # 11: init
    + 2     # 12: skip_eval (2 skipped)
    + 2     # 13: skip_nginx, condition false: runs
    + 1     # 14: skip_nginx, condition true: 1 skipped
    + 1     # 15: todo (1 todo_skip)
    + 2     # 16: response_body_filters uc
    + 2     # 17: response_body_filters md5_hex
    + 2     # 18: response_body_filters eval sub + length
    + 3     # 19: body_length custom check: status + body + body_length
    + 2     # 20: shutdown
    + 1     # 21: must_die
    + 2     # 22: blocks after must_die get a fresh nginx
) + 1;      # the cleanup handler ran

no_shuffle();
run_tests();

is($cleaned, 1, "cleanup handler ran once at the end of run_tests");

__DATA__

=== TEST 1: user_files: several files, sub-directories
--- config
--- user_files
>>> a.txt
file a
>>> sub/dir/b.txt
file b
line 2
--- request eval
["GET /a.txt", "GET /sub/dir/b.txt"]
--- response_body eval
["file a\n", "file b\nline 2\n"]



=== TEST 2: user_files eval with a modification time
--- config
--- user_files eval
[["stamped.txt" => "stamp\n", 199801171935.33]]
--- request
GET /stamped.txt
--- response_headers
Last-Modified: Sat, 17 Jan 1998 19:35:33 GMT
--- response_body
stamp



=== TEST 3: user_files text form with a modification time
--- config
--- user_files
>>> old.txt 201001020304.05
old
--- request
GET /old.txt
--- response_headers
Last-Modified: Sat, 02 Jan 2010 03:04:05 GMT
--- response_body
old



=== TEST 4: $TEST_NGINX_* variables are expanded in user_files
--- config
--- user_files
>>> word.txt
$TEST_NGINX_SELFTEST_WORD from $TEST_NGINX_SERVER_PORT
--- request
GET /word.txt
--- response_body eval
"bonjour from $ENV{TEST_NGINX_SERVER_PORT}\n"



=== TEST 5: http_config goes into the http {} block
--- http_config
    map $arg_k $selftest_mapped {
        default  none;
        x        mapped-x;
    }
--- config
    location = /t {
        return 200 "$selftest_mapped\n";
    }
--- request
GET /t?k=x
--- response_body
mapped-x



=== TEST 6: main_config goes into the top level, before http {}
--- main_config
    thread_pool selftest_pool threads=1;
--- config
    location /files/ {
        alias html/;
        aio threads=selftest_pool;
    }
--- user_files
>>> aio.txt
via thread pool
--- request
GET /files/aio.txt
--- response_body
via thread pool



=== TEST 7: post_main_config goes into the top level, after http {}
--- post_main_config
    thread_pool selftest_post threads=1;
--- config
    location /files/ {
        alias html/;
        aio threads=selftest_post;
    }
--- user_files
>>> aio2.txt
post main
--- request
GET /files/aio2.txt
--- response_body
post main



=== TEST 8: $TEST_NGINX_* variables are expanded in config
--- config
    location = /t {
        return 200 "$TEST_NGINX_SELFTEST_WORD $TEST_NGINX_SERVER_PORT $TEST_NGINX_SERVER_ROOT\n";
    }
--- response_body eval
"bonjour $ENV{TEST_NGINX_SERVER_PORT} $ENV{TEST_NGINX_SERVER_ROOT}\n"



=== TEST 9: $TEST_NGINX_RAND_PORT_1 is one free port, the same everywhere
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "from the random-port server\n";
        }
    }
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/;
    }
--- response_body
from the random-port server



=== TEST 10: --- server_name
--- config
    location = /t {
        return 200 "$server_name\n";
    }
--- server_name: selftest.example
--- response_body
selftest.example



=== TEST 11: --- init runs Perl code before the requests
--- config
--- init
open my $fh, '>', html_dir() . '/from-init.txt' or die $!;
print $fh "written by init\n";
close $fh;
--- request
GET /from-init.txt
--- response_body
written by init



=== TEST 12: skip_eval: the given number of tests is skipped
--- config
    location = /t { return 500; }
--- skip_eval: 2: 1 + 1 == 2
--- response_body
this is never compared



=== TEST 13: skip_nginx with a false condition runs the tests
--- config
    location = /t { return 200 "ran\n"; }
--- skip_nginx: 2: < 1.0.0
--- response_body
ran



=== TEST 14: skip_nginx with a true condition skips
--- config
    location = /t { return 500; }
--- skip_nginx
1: >= 1.0.0
--- error_code: 200



=== TEST 15: todo
--- config
    location = /t { return 500; }
--- todo
1: demonstrates todo_skip
--- error_code: 200



=== TEST 16: response_body_filters by name
--- config
    location = /t { return 200 "Hello\n"; }
--- response_body_filters
uc
--- response_body
HELLO



=== TEST 17: response_body_filters md5_hex
--- config
    location = /t { return 200 "abc"; }
--- response_body_filters: md5_hex
--- response_body chomp
900150983cd24fb0d6963f7d28e17f72



=== TEST 18: response_body_filters as Perl subs, applied in order
--- config
    location = /t { return 200 "one two three"; }
--- response_body_filters eval
[sub { my $b = shift; $b =~ s/ /-/g; $b }, 'length']
--- response_body chomp
13



=== TEST 19: add_response_body_check with a custom section
--- config
    location = /t { return 200 "12345"; }
--- body_length: 5
--- response_body chomp
12345



=== TEST 20: --- shutdown closes the client's write side after sending
--- config
    location = /t { return 200 "still answered\n"; }
--- shutdown
--- response_body
still answered



=== TEST 21: must_die: nginx refuses the configuration
--- config
    location = /t {
        return 200 "unterminated string;
    }
--- must_die



=== TEST 22: the next block starts a fresh nginx
--- config
    location = /t { return 200 "alive again\n"; }
--- response_body
alive again



=== TEST 23: --- SKIP blocks are dropped entirely (not counted by blocks())
--- config
    location = /t { return 500; }
--- error_code: 200
--- SKIP
