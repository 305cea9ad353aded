# Token accounting: usage read from JSON answers and from streams (split at
# every byte), the include_usage injection and the removal of the chunk it
# produces, cut streams, and exact costs from the catalogue's prices.
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

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;

    log_format usage 'qwen-usage $qwen_model p=$qwen_prompt_tokens '
                     'c=$qwen_completion_tokens t=$qwen_total_tokens '
                     'k=$qwen_cached_tokens r=$qwen_reasoning_tokens '
                     'cost=$qwen_cost inc=$qwen_incomplete '
                     'rm=$qwen_response_model';
    log_format ttft 'qwen-ttft $qwen_ttft';
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    access_log logs/error.log usage;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n[warn]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: usage from a JSON answer, priced: qwen-max 1.6 in, 6.4 out
100 * 1.6 + 20 * 6.4 = 288 USD per 1M tokens = 0.000288 USD
--- more_headers
X-Mock-Usage: 100,20
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body_like eval
qr/"usage":\{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120/
--- error_log
qwen-usage qwen-max p=100 c=20 t=120 k=0 r=- cost=0.000288000 inc=0 rm=qwen-max



=== TEST 2: a tier by input size: qwen3-max 32K-128K is 2.4 in, 12 out
40000 * 2.4 + 1000 * 12 = 108000 USD per 1M = 0.108 USD
--- more_headers
X-Mock-Usage: 40000,1000
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen3-max","messages":[]}'
--- error_log
qwen-usage qwen3-max p=40000 c=1000 t=41000 k=0 r=- cost=0.108000000 inc=0



=== TEST 3: the last tier's bound is inclusive: 32768 tokens is still tier 1
32768 * 1.2 + 10 * 6 = 39381.6 USD per 1M = 0.0393816 USD
--- more_headers
X-Mock-Usage: 32768,10
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen3-max","messages":[]}'
--- error_log
qwen-usage qwen3-max p=32768 c=10 t=32778 k=0 r=- cost=0.039381600 inc=0



=== TEST 4: cached input at its own price: qwen3-coder-plus 1 in, 0.1 cached, 5 out
(10000 - 8000) * 1 + 8000 * 0.1 + 100 * 5 = 3300 USD per 1M = 0.0033 USD
--- more_headers
X-Mock-Usage: 10000,100,8000
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen3-coder-plus","messages":[]}'
--- error_log
qwen-usage qwen3-coder-plus p=10000 c=100 t=10100 k=8000 r=- cost=0.003300000 inc=0



=== TEST 5: cached input without a cached price is billed as input
qwen-max: 100 * 1.6 + 20 * 6.4 = 0.000288 USD, whatever is cached
--- more_headers
X-Mock-Usage: 100,20,60
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-max","messages":[]}'
--- error_log
qwen-usage qwen-max p=100 c=20 t=120 k=60 r=- cost=0.000288000 inc=0



=== TEST 6: a request that reasoned pays the thinking price for its output
qwen-plus: 1000 * 0.4 + 500 * 4 = 2400 USD per 1M = 0.0024 USD
--- more_headers
X-Mock-Usage: 1000,500,0,300
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","enable_thinking":true,"messages":[]}'
--- error_log
qwen-usage qwen-plus p=1000 c=500 t=1500 k=0 r=300 cost=0.002400000 inc=0



=== TEST 7: without reasoning the same model pays the plain output price
qwen-plus: 1000 * 0.4 + 500 * 1.2 = 1000 USD per 1M = 0.001 USD
--- more_headers
X-Mock-Usage: 1000,500
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","messages":[]}'
--- error_log
qwen-usage qwen-plus p=1000 c=500 t=1500 k=0 r=- cost=0.001000000 inc=0



=== TEST 8: a model without a price is unpriced, not free
--- more_headers
X-Mock-Usage: 10,5
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-coder","messages":[]}'
--- error_log
qwen-usage qwen-coder p=10 c=5 t=15 k=0 r=- cost=- inc=0
qwen: model "qwen-coder" has no price in the catalogue



=== TEST 9: embeddings usage
--- more_headers
X-Mock-Usage: 7,0
--- request eval
"POST /v1/embeddings\n" . '{"model":"text-embedding-v4","input":["a","b"],"dimensions":4}'
--- error_log eval
qr/qwen-usage text-embedding-v4 p=\d+ c=- t=\d+ k=- r=- cost=0\.\d{9} inc=0 rm=text-embedding-v4/



=== TEST 10: a stream that did not ask for usage gets it injected upstream
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"messages":[]}'
--- response_body eval
'{"model":"qwen-plus","stream":true,"messages":[],"stream_options":{"include_usage":true}}'



=== TEST 11: include_usage merges into stream_options, touching nothing else
--- more_headers
X-Mock-Echo: body
--- request eval
["POST /v1/chat/completions\n" . '{"stream_options":{},"model":"qwen-plus","stream":true}',
 "POST /v1/chat/completions\n" . '{"stream_options":{ "x" : 1 },"model":"qwen-plus","stream":true}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":false,"y":[1]}}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"stream_options":null}',
 "POST /v1/chat/completions\n" . '{}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":false}']
--- response_body eval
['{"stream_options":{"include_usage":true},"model":"qwen-plus","stream":true}',
 '{"stream_options":{"include_usage":true, "x" : 1 },"model":"qwen-plus","stream":true}',
 '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true,"y":[1]}}',
 '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true}}',
 qq{{"error":{"message":"The request body has no \\"model\\".","type":"invalid_request_error","param":"model","code":"missing_model"}}\n},
 '{"model":"qwen-plus","stream":false}']
--- error_code eval
[200, 200, 200, 200, 400, 200]
--- no_error_log
[error]



=== TEST 12: the injected usage is counted and its chunk removed from the stream
--- more_headers
X-Mock-Usage: 11,4
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"messages":[]}'
--- response_body_like eval
qr/\Adata: \{[^\n]*"delta":\{"role":"assistant","content":""\}[^\n]*\n\n(data: \{"id[^\n]*"choices":\[\{[^\n]*\n\n){5}data: \[DONE\]\n\n\z/
--- response_body_unlike eval
qr/"usage":\{/
--- error_log
qwen-usage qwen-plus p=11 c=4 t=15 k=0 r=- cost=0.000009200 inc=0 rm=qwen-plus



=== TEST 13: the same stream read a byte at a time, at every offset
--- more_headers
X-Mock-Usage: 11,4
X-Mock-Write-Bytes: 1
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"messages":[]}'
--- response_body_like eval
qr/\Adata: \{[^\n]*"delta":\{"role":"assistant","content":""\}[^\n]*\n\n(data: \{"id[^\n]*"choices":\[\{[^\n]*\n\n){5}data: \[DONE\]\n\n\z/
--- response_body_unlike eval
qr/"usage":\{/
--- error_log
qwen-usage qwen-plus p=11 c=4 t=15 k=0 r=- cost=0.000009200 inc=0 rm=qwen-plus
--- timeout: 10



=== TEST 14: and in pieces of 7 bytes, with proxy buffering on
--- config
    access_log logs/error.log usage;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
--- more_headers
X-Mock-Usage: 11,4
X-Mock-Write-Bytes: 7
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"messages":[]}'
--- response_body_unlike eval
qr/"usage":\{/
--- response_body_like eval
qr/(data: \{"id[^\n]*"choices":\[\{[^\n]*\n\n){5}data: \[DONE\]\n\n\z/
--- error_log
qwen-usage qwen-plus p=11 c=4 t=15 k=0 r=- cost=0.000009200 inc=0 rm=qwen-plus
--- timeout: 10



=== TEST 15: a client that asked for usage gets its usage chunk
--- more_headers
X-Mock-Usage: 11,4
X-Mock-Write-Bytes: 3
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true}}'
--- response_body_like eval
qr/data: \{[^\n]*"choices":\[\],[^\n]*"usage":\{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15[^\n]*\n\ndata: \[DONE\]\n\n\z/
--- error_log
qwen-usage qwen-plus p=11 c=4 t=15 k=0 r=- cost=0.000009200 inc=0 rm=qwen-plus



=== TEST 16: qwen_inject_usage off leaves the body alone
--- config
    access_log logs/error.log usage;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_inject_usage off;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true}'
--- response_body eval
'{"model":"qwen-plus","stream":true}'



=== TEST 17: a stream without usage counts no tokens and is not priced
--- config
    access_log logs/error.log usage;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_inject_usage off;
        proxy_buffering off;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true}'
--- response_body_like eval
qr/data: \[DONE\]\n\n\z/
--- error_log
qwen-usage qwen-plus p=- c=- t=- k=- r=- cost=- inc=0 rm=qwen-plus



=== TEST 18: a stream cut by the upstream is recorded as incomplete, once; the client gets an error event
--- more_headers
X-Mock-Fault: cut:3
--- request eval
"POST /v1/chat/completions HTTP/1.0\n" . '{"model":"qwen-plus","stream":true}'
--- response_body_like eval
qr/\A(data: \{"id[^\n]*\n\n){3}data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\n\z/
--- grep_error_log eval
qr/qwen: incomplete answer[^,]*/
--- grep_error_log_out
qwen: incomplete answer from model "qwen-plus" (the upstream stopped): 3 events
--- error_log
qwen-usage qwen-plus p=- c=- t=- k=- r=- cost=- inc=1 rm=qwen-plus
--- no_error_log
[alert]
[crit]



=== TEST 19: upstream errors carry no usage and are not incomplete
--- more_headers
X-Mock-Fault: status:429
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- error_code: 429
--- error_log
qwen-usage qwen-plus p=- c=- t=- k=- r=- cost=- inc=0 rm=-



=== TEST 20: the upstream is asked for an uncompressed answer
--- more_headers
Accept-Encoding: gzip, br
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- response_body_like eval
qr/"accept-encoding":"identity"/



=== TEST 21: time to first byte, in $qwen_ttft
--- config
    access_log logs/error.log ttft;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
--- more_headers
X-Mock-Fault: slow:300
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- error_log eval
qr/qwen-ttft 0\.(2[89]\d|[3-9]\d\d)$/



=== TEST 22: an event longer than 64k passes as it comes; the usage chunk still goes
--- http_config
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://127.0.0.1:19871 key=sk-mock;

    log_format usage 'qwen-usage $qwen_model p=$qwen_prompt_tokens '
                     'c=$qwen_completion_tokens inc=$qwen_incomplete';
--- config
    access_log logs/error.log usage;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_buffering off;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
--- tcp_listen: 19871
--- tcp_reply eval
"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
. 'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"' . ("x" x 70000) . '"}}],"usage":null}' . "\n\n"
. 'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":70000,"total_tokens":70003}}' . "\n\n"
. "data: [DONE]\n\n"
--- request eval
"POST /v1/chat/completions HTTP/1.0\n" . '{"model":"qwen-plus","stream":true}'
--- response_body eval
'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"' . ("x" x 70000) . '"}}],"usage":null}' . "\n\n"
. "data: [DONE]\n\n"
--- error_log
qwen-usage qwen-plus p=3 c=70000 inc=0



=== TEST 23: an answer the upstream compressed anyway is passed on, not read
--- http_config
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://127.0.0.1:19872 key=sk-mock;

    log_format usage 'qwen-usage $qwen_model p=$qwen_prompt_tokens';
--- config
    access_log logs/error.log usage;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
--- tcp_listen: 19872
--- tcp_reply eval
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\nConnection: close\r\n\r\nGZIP"
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- response_body: GZIP
--- response_headers
Content-Encoding: gzip
--- error_log
qwen: usage of model "qwen-plus" not read: the upstream answered with Content-Encoding "gzip"
qwen-usage qwen-plus p=-
--- no_error_log
[error]



=== TEST 24: the model and stream_options edits together, body in one buffer
--- more_headers
X-Mock-Echo: body
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-plus","stream":true,"stream_options":{"x":null},"n":2}'
--- response_body eval
'{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true,"x":null},"n":2}'



=== TEST 25: both edits on a chunked body of one-byte chunks
--- raw_request eval
my $body = '{"stream":true,"model":"alibaba-cloud/qwen-max","messages":[{"role":"user","content":"hi"}]}';
"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Mock-Echo: body\r\nTransfer-Encoding: chunked\r\n\r\n"
. join("", map { "1\r\n$_\r\n" } split //, $body) . "0\r\n\r\n"
--- response_body eval
'{"stream":true,"model":"qwen-max","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}'



=== TEST 26: an answer proxy buffering spills to a temporary file is still read
--- config
    access_log logs/error.log usage;

    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_buffer_size 1k;
        proxy_buffers 2 1k;
        proxy_busy_buffers_size 1k;
        proxy_temp_file_write_size 1k;
        limit_rate 400k;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }
--- more_headers
X-Mock-Usage: 11,1000
X-Mock-Chunks: 1000
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true}'
--- response_body_like eval
qr/\Adata: \{[^\n]*"delta":\{"role":"assistant","content":""\}[^\n]*\n\n(data: \{"id[^\n]*"choices":\[\{[^\n]*\n\n){1001}data: \[DONE\]\n\n\z/
--- response_body_unlike eval
qr/"usage":\{/
--- error_log
an upstream response is buffered to a temporary file
qwen-usage qwen-plus p=11 c=1000 t=1011 k=0 r=- cost=0.001204400 inc=0 rm=qwen-plus
--- no_error_log
[error]
[alert]
[crit]
--- timeout: 10
