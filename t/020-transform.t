# Model transformation: the documented resolution order, and a body that
# reaches the upstream byte for byte except for the "model" value.
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
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "X-Mock-Echo: body");
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: an exact name stays as it is
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","messages":[{"role":"user","content":"hi"}]}'
--- response_body eval
'{"model":"qwen-plus","messages":[{"role":"user","content":"hi"}]}'
--- error_code: 200
--- error_log
transformed model "qwen-plus" to "qwen-plus" for provider alibaba-cloud



=== TEST 2: the qwen/ prefix is removed
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body eval
'{"model":"qwen-max","messages":[]}'
--- error_log
transformed model "qwen/qwen-max" to "qwen-max" for provider alibaba-cloud



=== TEST 3: the alibaba-cloud/ prefix is removed
--- request eval
"POST /v1/chat/completions\n" . '{"model":"alibaba-cloud/qwen-coder","messages":[]}'
--- response_body eval
'{"model":"qwen-coder","messages":[]}'
--- error_log
transformed model "alibaba-cloud/qwen-coder" to "qwen-coder" for provider alibaba-cloud



=== TEST 4: a pattern with a capture
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-3-30b","messages":[]}'
--- response_body eval
'{"model":"qwen-3-30b-a3b-instruct","messages":[]}'
--- error_log
transformed model "qwen-3-30b" to "qwen-3-30b-a3b-instruct" for provider alibaba-cloud



=== TEST 5: an alias becomes its model id
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-max-latest","messages":[]}'
--- response_body eval
'{"model":"qwen-max","messages":[]}'



=== TEST 6: names match whatever their case
--- request eval
"POST /v1/chat/completions\n" . '{"model":"Qwen/QWEN-Plus","messages":[]}'
--- response_body eval
'{"model":"qwen-plus","messages":[]}'



=== TEST 7: every other byte is kept: order, spacing, numbers, escapes, unicode
--- request eval
"POST /v1/chat/completions\n" . qq{{\n  "temperature" : 1.50e0,\n  "messages":[{"role":"user","content":"caf\\u00e9 \xe4\xbd\xa0\xe5\xa5\xbd \\"q\\" \\\\n"}],\n  "model"  :  "qwen/qwen-max" ,"top_k":-0,"stop":null,"seed":12345678901234567890\n}}
--- response_body eval
qq{{\n  "temperature" : 1.50e0,\n  "messages":[{"role":"user","content":"caf\\u00e9 \xe4\xbd\xa0\xe5\xa5\xbd \\"q\\" \\\\n"}],\n  "model"  :  "qwen-max" ,"top_k":-0,"stop":null,"seed":12345678901234567890\n}}



=== TEST 8: the model value is decoded as JSON before the lookup
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen\u002fqwen\u002dmax","n":1}'
--- response_body eval
'{"model":"qwen-max","n":1}'
--- error_log
transformed model "qwen/qwen-max" to "qwen-max"



=== TEST 9: a "model" key inside messages is content, not the model
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[{"role":"user","model":"qwen-long","content":{"model":"x"}}],"model":"qwen-turbo"}'
--- response_body eval
'{"messages":[{"role":"user","model":"qwen-long","content":{"model":"x"}}],"model":"qwen-turbo"}'



=== TEST 10: an unknown model passes unchanged with qwen_unknown_model pass
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_unknown_model pass;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-brand-new","messages":[]}'
--- response_body eval
'{"model":"qwen-brand-new","messages":[]}'
--- error_log
transformed model "qwen-brand-new" to "qwen-brand-new" for provider alibaba-cloud



=== TEST 11: pass still removes an organisation prefix
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_unknown_model pass;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-brand-new"}'
--- response_body eval
'{"model":"qwen-brand-new"}'



=== TEST 12: inline qwen_model, qwen_model_prefixes and qwen_model_pattern
--- http_config
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_model qwen-plus alias=fast alias=cheap input=0.4 output=1.2;
    qwen_model qwen3-max provider=alibaba-cloud context=262144;
    qwen_model_prefixes acme/;
    qwen_model_pattern "^big-(.*)$" "qwen3-$1" provider=alibaba-cloud;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
--- request eval
["POST /v1/chat/completions\n" . '{"model":"acme/cheap"}',
 "POST /v1/chat/completions\n" . '{"model":"big-max"}',
 "POST /v1/chat/completions\n" . '{"model":"qwen/qwen-plus"}']
--- response_body eval
['{"model":"qwen-plus"}',
 '{"model":"qwen3-max"}',
 '{"error":{"message":"The model `qwen/qwen-plus` does not exist or you do not have access to it.","type":"invalid_request_error","param":"model","code":"model_not_found"}}' . "\n"]
--- error_code eval
[200, 200, 404]



=== TEST 13: the Content-Length the upstream gets is the new body's
--- more_headers
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr'"content-length":"20"'



=== TEST 14: a chunked request body reaches the upstream with a Content-Length
--- more_headers
X-Mock-Echo: body
Transfer-Encoding: chunked
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Connection: close\r
X-Mock-Echo: body\r
Transfer-Encoding: chunked\r
\r
6\r
{\"mode\r
e\r
l\":\"qwen/qwen-\r
5\r
max\"}\r
0\r
\r
"
--- response_body eval
'{"model":"qwen-max"}'
