# The body's ways through nginx other than the plain one: error_page chains
# (a body read that failed, a URI-form error_page that turns the POST into
# a GET, a hop into a location that is no gateway), proxy_request_buffering
# off, and HTTP/2.
#
# HTTP/2: Test::Nginx::Socket's own "--- http2" section sends a block's
# requests with curl, but the stand-in runner (t/compat) does not implement
# it. So a block marked "--- h2c: 1" sends its request twice: once over
# HTTP/1.1 as usual, then again with curl --http2-prior-knowledge to the
# h2c listener its config declares ($TEST_NGINX_H2C_PORT), from a response
# body check (add_response_body_check, a documented Test::Nginx::Socket
# hook that runs after each request's checks, with nginx up). The h2
# answer must meet the block's error_code, response_headers and
# response_body(_like) as well. Nothing here is specific to t/compat.
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET ();
use File::Temp ();
use Digest::SHA ();

repeat_each(2);
no_long_string();
no_shuffle();

# the h2c listener's port: a free one unless the caller chose one
if (!defined $ENV{TEST_NGINX_H2C_PORT}) {
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'tcp', Listen => 1)
        or die "cannot find a free port for the h2c listener: $!\n";
    $ENV{TEST_NGINX_H2C_PORT} = $sock->sockport;
    close $sock;
}

# 64 KB of JSON: over HTTP/2 it comes in several DATA frames and goes to a
# temporary file
our $LARGE_BODY = '{"messages":[{"role":"user","content":"'
                  . ('0123456789abcdef' x 4096) . '"}],"model":"qwen/qwen-max"}';
(our $LARGE_REWRITTEN = $LARGE_BODY) =~ s{"qwen/qwen-max"}{"qwen-max"};

sub chunked {
    my @chunks = @_;
    return join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } @chunks)
           . "0\r\n\r\n";
}

sub h2c_request {
    my ($block) = @_;

    my $name = $block->name;
    my $req = $block->request;
    my ($line, $body) = split /\n/, $req, 2;
    $line =~ s/^\s+|\s+$//g;
    my ($method, $path) = split /\s+/, $line;
    $body = '' unless defined $body;
    $body =~ s/^\s+|\s+$//gs;     # as Test::Nginx::Socket does

    my @cmd = ('curl', '-sS', '--http2-prior-knowledge',
               '--max-time', $block->timeout || 10, '-X', $method,
               '-H', 'Content-Type:', '-w', '%{http_version} %{response_code}');

    my $more = $block->more_headers;
    $more = '' unless defined $more;
    for my $h (split /\n+/, $more) {
        next if $h =~ /^\s*#/ || $h !~ /\S/;
        push @cmd, '-H', $h;
    }

    my $tmp = File::Temp->newdir();
    my ($reqfile, $bodyfile, $headfile)
        = map { "$tmp/$_" } qw(request body headers);

    if (length $body) {
        open my $out, '>', $reqfile or die "$reqfile: $!";
        binmode $out;
        print $out $body;
        close $out;
        push @cmd, '--data-binary', "\@$reqfile";
    }

    push @cmd, '-o', $bodyfile, '-D', $headfile,
               "http://127.0.0.1:$ENV{TEST_NGINX_H2C_PORT}$path";

    open my $curl, '-|', @cmd or die "cannot run curl: $!";
    my $status = do { local $/; <$curl> };
    close $curl;
    my $rc = $?;

    my $got = '';
    if (open my $in, '<', $bodyfile) {
        binmode $in;
        $got = do { local $/; <$in> };
        close $in;
    }

    my %headers;
    if (open my $in, '<', $headfile) {
        while (<$in>) {
            s/\r?\n\z//;
            $headers{lc $1} = $2 if /^([^:\s]+):\s*(.*)$/;
        }
        close $in;
    }

    is($rc, 0, "$name - h2c - curl succeeded");
    is($status, '2 ' . ($block->error_code || 200),
       "$name - h2c - an HTTP/2 answer with the status code");

    for my $h (split /\n+/, $block->response_headers || '') {
        my ($key, $val) = split /\s*:\s*/, $h, 2;
        next unless defined $key && length $key;
        is($headers{lc $key}, $val, "$name - h2c - header $key ok");
    }

    if (defined $block->response_body) {
        is($got, $block->response_body, "$name - h2c - response_body");

    } elsif (defined $block->response_body_like) {
        my $pat = $block->response_body_like;
        like($got, qr/$pat/s, "$name - h2c - response_body_like");
    }
}

add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;

    return unless defined $block->h2c;

    if ($dry_run) {
        SKIP: {
            skip $block->name . " - h2c - tests skipped due to $dry_run", 3;
        }
        return;
    }

    h2c_request($block);
});

add_block_preprocessor(sub {
    my $block = shift;

    my $extra = $block->http_config;
    $extra = '' unless defined $extra;

    $block->set_value("http_config", <<'_EOC_' . $extra);
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_region dead url=http://127.0.0.1:1 key=sk-dead-region;
_EOC_

    if (!defined $block->log_level) {
        $block->set_value("log_level", "info");
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log",
                          "[error]\n[alert]\n[crit]\nsk-mock\nsk-dead\n");
    }
});

run_tests();

__DATA__

=== TEST 1: a chunked body over client_max_body_size, error_page 413 into the gateway: 413 JSON at once
--- config
    location /v1/chat/completions {
        client_max_body_size 100;
        error_page 413 = @gw;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @gw {
        client_max_body_size 100;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
. "Transfer-Encoding: chunked\r\n\r\n"
. main::chunked('{"model":"qwen/qwen-max","messages":[{"role":"user","content":"'
                . ('x' x 300) . '"}]}')
--- timeout: 3
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"The request body is too large.","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- error_log
client intended to send too large chunked body
--- no_error_log
qwen: transformed model
sk-mock
[alert]
[crit]



=== TEST 2: the same when the limit is crossed by a later chunk
--- config
    location /v1/chat/completions {
        client_max_body_size 100;
        error_page 413 = @gw;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @gw {
        client_max_body_size 100;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
. "Transfer-Encoding: chunked\r\n\r\n"
. main::chunked('{"model":"qwen/qwen-max","messages":[{"role":"user",',
                '"content":"' . ('x' x 100) . '"}]}')
--- timeout: 3
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"The request body is too large.","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- error_log
client intended to send too large chunked body
--- no_error_log
qwen: transformed model
sk-mock
[alert]
[crit]



=== TEST 3: the same with a Content-Length body over client_max_body_size, all of it come with the headers
# nginx refuses it in its find-config phase and throws away the body it
# already holds, leaving Content-Length 0 and no trace of a body being
# discarded: the gateway in @gw must still answer 413, not take it for empty
--- config
    location /v1/chat/completions {
        client_max_body_size 100;
        error_page 413 = @gw;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @gw {
        client_max_body_size 100;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n"
. '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"'
. ('x' x 300) . '"}]}'
--- timeout: 3
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"The request body is too large.","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- error_log
client intended to send too large body
--- no_error_log
qwen: transformed model
sk-mock
[alert]
[crit]



=== TEST 4: the same when the last bytes of the body come later
# nginx refuses the request on its Content-Length, throws away what it has
# and the rest as it comes; the bytes still awaited are under the limit
--- config
    location /v1/chat/completions {
        client_max_body_size 100;
        error_page 413 = @gw;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @gw {
        client_max_body_size 100;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
my $body = '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"'
           . ('x' x 8000) . '"}]}';
["POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
 . "Content-Length: " . length($body) . "\r\n\r\n" . substr($body, 0, -50),
 substr($body, -50)]
--- raw_request_middle_delay: 0.3
--- timeout: 3
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"The request body is too large.","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- error_log
client intended to send too large body
--- no_error_log
qwen: transformed model
sk-mock
[alert]
[crit]



=== TEST 5: error_page to a URI in a gateway location: the upstream gets a POST with the rewritten body
# nginx turns the request into a GET for a URI-form error_page; the gateway
# restores the POST its body belongs to. Without "=" in error_page the
# client gets the status that led there (502) with the fallback's answer.
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        qwen_default_region dead;
        error_page 502 503 /fallback/x;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location /fallback/ {
        qwen_gateway on;
        qwen_default_region singapore;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- error_code: 502
--- response_body_like eval
qr/\A(?!.*sk-dead)\{"method":"POST","url":"\/compatible-mode\/v1\/chat\/completions",.*"authorization":"Bearer sk-mock".*"body_length":20\}\z/s
--- error_log
connect() failed (111: Connection refused) while connecting to upstream
--- no_error_log
sk-mock
sk-dead
[alert]
[crit]



=== TEST 6: the same, the upstream gets the rewritten body byte for byte
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        qwen_default_region dead;
        error_page 502 503 /fallback/x;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location /fallback/ {
        qwen_gateway on;
        qwen_default_region singapore;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[{"role":"user","content":"again"}],"model":"qwen/qwen-max","n":1}'
--- error_code: 502
--- response_body eval
'{"messages":[{"role":"user","content":"again"}],"model":"qwen-max","n":1}'
--- error_log
connect() failed (111: Connection refused) while connecting to upstream
--- no_error_log
sk-mock
sk-dead
[alert]
[crit]



=== TEST 7: an error_page hop into a location that is no gateway sends the client's own key, not the region's
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        qwen_default_region dead;
        error_page 502 = @plain;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @plain {
        rewrite ^ /compatible-mode/v1/chat/completions break;
        proxy_pass http://dashscope_mock;
    }
--- more_headers
Authorization: Bearer sk-mock-virginia
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*sk-dead)(?!.*"Bearer sk-mock")\{"method":"POST",.*"authorization":"Bearer sk-mock-virginia"/s
--- error_log
connect() failed (111: Connection refused) while connecting to upstream
--- no_error_log
sk-mock
sk-dead
[alert]
[crit]



=== TEST 8: $qwen_upstream_authorization is empty in a location that is no gateway
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        qwen_default_region dead;
        error_page 502 = @plain;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @plain {
        rewrite ^ /compatible-mode/v1/chat/completions break;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass http://dashscope_mock;
    }
--- more_headers
Authorization: Bearer sk-mock-virginia
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- error_code: 401
--- response_body_like eval
qr/\A\{"error":\{[^}]*"code":"invalid_api_key"/
--- error_log
connect() failed (111: Connection refused) while connecting to upstream
--- no_error_log
sk-mock
sk-dead
[alert]
[crit]



=== TEST 9: proxy_request_buffering off: the body is still rewritten and sent whole
# the gateway must see the whole body before it can check it and rewrite
# "model", so it reads it first whatever proxy_request_buffering says; the
# proxy module then finds it read and sends it as it is
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_request_buffering off;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[{"role":"user","content":"unbuffered"}],"model":"qwen/qwen-max"}'
--- response_body eval
'{"messages":[{"role":"user","content":"unbuffered"}],"model":"qwen-max"}'
--- error_log
qwen: transformed model "qwen/qwen-max" to "qwen-max"



=== TEST 10: proxy_request_buffering off with a chunked body and HTTP/1.1 to the upstream
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_request_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
. "X-Mock-Echo: body\r\nTransfer-Encoding: chunked\r\n\r\n"
. main::chunked('{"messages":[{"role":"user","content":"unbuf', 'fered"}],"model":"qwen/qw', 'en-max"}')
--- response_body eval
'{"messages":[{"role":"user","content":"unbuffered"}],"model":"qwen-max"}'
--- error_log
qwen: transformed model "qwen/qwen-max" to "qwen-max"



=== TEST 11: HTTP/2: a chat request
--- h2c: 1
--- config
    listen 127.0.0.1:$TEST_NGINX_H2C_PORT http2;

    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-token
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"hi"}]}'
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/\A\{"id":"chatcmpl-[^"]+","object":"chat.completion","created":\d+,"model":"qwen-max",.*"content":"Mock reply from qwen-max\."/s
--- error_log
qwen: transformed model "qwen/qwen-max" to "qwen-max"



=== TEST 12: HTTP/2: a stream, event by event, [DONE] included
--- h2c: 1
--- config
    listen 127.0.0.1:$TEST_NGINX_H2C_PORT http2;

    location /v1/chat/completions {
        qwen_gateway on;
        proxy_buffering off;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Chunks: 3
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","stream":true,"messages":[]}'
--- response_headers
Content-Type: text/event-stream
--- response_body_like eval
qr/\A(?=data: \{[^\n]*"model":"qwen-max")data: \{[^\n]*"delta":\{"role":"assistant","content":""\}[^\n]*\n\n(data: \{[^\n]*"content":"w\d ?"[^\n]*\n\n){3}data: \{[^\n]*"finish_reason":"stop"[^\n]*\n\ndata: \[DONE\]\n\n\z/s



=== TEST 13: HTTP/2: the upstream gets a POST with the region key, not the client's
--- h2c: 1
--- config
    listen 127.0.0.1:$TEST_NGINX_H2C_PORT http2;

    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-token
X-DashScope-WorkSpace: ws-client
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*client-token)(?!.*x-dashscope)\{"method":"POST",.*"authorization":"Bearer sk-mock".*"body_length":20\}\z/si



=== TEST 14: HTTP/2: a 64 KB body in many DATA frames arrives rewritten, byte for byte
--- h2c: 1
--- config
    listen 127.0.0.1:$TEST_NGINX_H2C_PORT http2;

    location /v1/chat/completions {
        client_body_buffer_size 8k;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: digest
--- request eval
"POST /v1/chat/completions\n" . $main::LARGE_BODY
--- response_body eval
'{"length":' . length($main::LARGE_REWRITTEN) . ',"sha256":"'
. Digest::SHA::sha256_hex($main::LARGE_REWRITTEN) . '"}'



=== TEST 15: HTTP/2: a body that is not JSON gets the gateway's JSON error
--- h2c: 1
--- config
    listen 127.0.0.1:$TEST_NGINX_H2C_PORT http2;

    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-max",'
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/\A\{"error":\{"message":"[^"]+","type":"invalid_request_error","param":null,"code":"invalid_json"\}\}\n?\z/
--- error_log
qwen: rejected request: the body is not valid JSON
