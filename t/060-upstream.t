# What comes back from the upstream passes through: streams, errors; and
# failover with nginx's own machinery re-sends the rewritten body intact.
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_long_string();
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    # the first server takes the whole request, body included, and does
    # not answer in time: the body was sent, so the retry must rewind it;
    # its weight and max_fails=0 make every request try it first
    upstream dashscope_flaky {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1 weight=100 max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    # (it is an upstream of the gateway: its own log stays at info, as a
    # real upstream's would, so that it does not print what it received)
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        error_log logs/first-server.log info;
        location / {
            proxy_set_header X-Mock-Echo "";
            proxy_set_header X-Mock-Fault "slow:1000";
            proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        }
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_region flaky url=http://dashscope_flaky key=sk-mock;
    qwen_region dead url=http://127.0.0.1:1 key=sk-mock;
    qwen_region beijing url=http://dashscope_mock key=sk-mock-beijing;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: a non-stream answer carries the upstream model
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"hi"}]}'
--- response_body_like eval
qr'^\{"id":"chatcmpl-[^"]+","object":"chat.completion","created":\d+,"model":"qwen-max",.*"content":"Mock reply from qwen-max\."'



=== TEST 2: a stream passes through event by event, [DONE] included
--- more_headers
X-Mock-Usage: 11,4,0
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true},"messages":[]}'
--- response_headers_like
Content-Type: text/event-stream
--- response_body_like eval
qr/\Adata: \{[^\n]*"delta":\{"role":"assistant","content":""\}[^\n]*\n\n(data: \{[^\n]*\n\n){5}data: \{[^\n]*"choices":\[\],[^\n]*"usage":\{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15[^\n]*\n\ndata: \[DONE\]\n\n\z/s



=== TEST 3: upstream errors reach the client as the upstream sent them
--- more_headers eval
["X-Mock-Fault: status:404", "X-Mock-Fault: status:429\nX-Mock-Retry-After: 7",
 "X-Mock-Fault: status:500"]
--- request eval
["POST /v1/chat/completions\n" . '{"model":"qwen-plus"}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus"}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus"}']
--- error_code eval
[404, 429, 500]
--- response_body_like eval
[qr/"code":"model_not_found"/, qr/"code":"limit_requests"/,
 qr/InternalError/]



=== TEST 4: proxy_next_upstream re-sends the rewritten body from its start, after the first server took all of it
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region flaky;
        proxy_read_timeout 300ms;
        proxy_next_upstream timeout non_idempotent;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[{"role":"user","content":"retry me"}],"model":"qwen/qwen-max","n":1}'
--- response_body eval
'{"messages":[{"role":"user","content":"retry me"}],"model":"qwen-max","n":1}'
--- error_log
upstream timed out
--- no_error_log
[alert]
[crit]



=== TEST 5: the same with the body read from a temporary file
--- config
    location /v1/chat/completions {
        client_body_in_file_only clean;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region flaky;
        proxy_read_timeout 300ms;
        proxy_next_upstream timeout non_idempotent;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[],"model":"qwen/qwen-max"}'
--- response_body eval
'{"messages":[],"model":"qwen-max"}'
--- error_log
upstream timed out
--- no_error_log
[alert]
[crit]



=== TEST 5a: without non_idempotent nginx does not send a POST again once it was sent
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region flaky;
        proxy_read_timeout 300ms;
        proxy_next_upstream timeout;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[],"model":"qwen/qwen-max"}'
--- error_code: 504
--- error_log
upstream timed out
--- no_error_log
[alert]
[crit]



=== TEST 6: failover to a named location in another region, with its key
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region dead;
        error_page 502 = @beijing;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @beijing {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region beijing;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
        add_header X-Qwen "$qwen_model $qwen_region";
    }
--- more_headers
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_headers
X-Qwen: qwen-max beijing
--- response_body_like eval
qr'"authorization":"Bearer sk-mock-beijing".*"body_length":20'
--- error_log
connect() failed (111: Connection refused) while connecting to upstream
--- no_error_log
[alert]
[crit]



=== TEST 7: a slow first byte is the upstream's to time
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_read_timeout 200ms;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Fault: slow:1000
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- error_code: 504
--- error_log
upstream timed out
--- no_error_log
[alert]
[crit]



=== TEST 8: a stream cut by the upstream ends the client's stream with an error event
--- more_headers
X-Mock-Fault: cut:3
--- request eval
"POST /v1/chat/completions HTTP/1.0\n" . '{"model":"qwen-plus","stream":true}'
--- response_body_like eval
qr/\A(data: \{"id[^\n]*\n\n){3}data: \{"error":\{"message":"The upstream connection was lost before the answer was complete\.","type":"server_error","param":null,"code":"stream_interrupted"\}\}\n\n\z/s
--- error_log
upstream prematurely closed connection
broke after the client got part of it
--- no_error_log
[alert]
[crit]
