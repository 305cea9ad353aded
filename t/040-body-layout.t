# The body wherever nginx keeps it: one buffer, several buffers, a chunked
# body, a temporary file, and 10 MB both in memory and in a file.
use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(sha256_hex);

repeat_each(2);
no_long_string();
no_shuffle();

our $Big = '{"messages":[{"role":"user","content":"' . ("0123456789" x 1_000_000)
           . '"}],"model":"qwen/qwen-long","stream":false}';
(our $BigOut = $Big) =~ s{"qwen/qwen-long"}{"qwen-long"};

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_region beijing url=http://dashscope_mock key=sk-mock-beijing;
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: a body in a temporary file (client_body_in_file_only)
--- config
    location /v1/chat/completions {
        client_body_in_file_only clean;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"from a file"}]}'
--- response_body eval
'{"model":"qwen-max","messages":[{"role":"user","content":"from a file"}]}'
--- error_log eval
[qr/qwen body reads 78 bytes from "[^"]+"/, qr/qwen body rewritten, 73 bytes from 78/]



=== TEST 2: a body in a file that needs no rewrite is sent from its file
--- config
    location /v1/chat/completions {
        client_body_in_file_only clean;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-max","messages":[]}'
--- response_body eval
'{"model":"qwen-max","messages":[]}'
--- no_error_log
qwen body rewritten
[error]



=== TEST 3: a body bigger than client_body_buffer_size goes to a file
--- config
    location /v1/chat/completions {
        client_body_buffer_size 1k;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: digest
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-plus","messages":[{"role":"user","content":"' . ("x" x 5000) . '"}]}'
--- response_body eval
my $out = '{"model":"qwen-plus","messages":[{"role":"user","content":"' . ("x" x 5000) . '"}]}';
sprintf('{"length":%d,"sha256":"%s"}', length $out, Digest::SHA::sha256_hex($out))
--- error_log eval
qr/qwen body reads 5\d\d\d bytes from/



=== TEST 4: a body that arrives in pieces lands in several buffers
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
my @body = ('{"messages":[],', '"mod', 'el":"alibaba-cloud/qwen-max"}');
my $len = length join "", @body;
["POST /v1/chat/completions HTTP/1.0\r\nHost: localhost\r\nX-Mock-Echo: body\r\nContent-Length: $len\r\n\r\n$body[0]",
 $body[1], $body[2]]
--- raw_request_middle_delay: 0.05
--- response_body eval
'{"messages":[],"model":"qwen-max"}'
--- error_log eval
qr/qwen body in [2-9] buffers/



=== TEST 5: a chunked body of many one-byte chunks
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
my $body = '{"model":"qwen/qwen-turbo","messages":[{"role":"user","content":"hi"}]}';
"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Mock-Echo: body\r\nTransfer-Encoding: chunked\r\n\r\n"
. join("", map { "1\r\n$_\r\n" } split //, $body) . "0\r\n\r\n"
--- response_body eval
'{"model":"qwen-turbo","messages":[{"role":"user","content":"hi"}]}'



=== TEST 6: 10 MB kept in memory, spliced without a copy
--- config
    location /v1/chat/completions {
        client_body_buffer_size 11m;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: digest
--- request eval
"POST /v1/chat/completions\n" . $::Big
--- response_body eval
sprintf('{"length":%d,"sha256":"%s"}', length $::BigOut, Digest::SHA::sha256_hex($::BigOut))
--- error_log eval
qr/qwen body in \d+ buffers/
--- no_error_log
qwen body reads
[error]
--- timeout: 20



=== TEST 7: 10 MB from a temporary file, to the model's own region
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: digest
--- request eval
"POST /v1/chat/completions\n" . $::Big
--- response_body eval
sprintf('{"length":%d,"sha256":"%s"}', length $::BigOut, Digest::SHA::sha256_hex($::BigOut))
--- error_log eval
[qr/qwen body reads 100000\d\d bytes from/, qr/qwen region "beijing"/]
--- timeout: 20
