# Bad input: each gets an OpenAI-style error with the right status, an
# info line in the error log saying why, and never reaches the upstream.
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_long_string();
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;

    # the upstream must never be reached: nothing listens there
    qwen_region singapore url=http://127.0.0.1:1 key=sk-mock;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_max_body_size 4k;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
    }

    if (!defined $block->response_headers && !ref $block->request
        && !defined $block->pipelined_requests)
    {
        $block->set_value("response_headers",
                          "Content-Type: application/json");
    }
});

run_tests();

__DATA__

=== TEST 1: not JSON
--- request eval
"POST /v1/chat/completions\n" . 'model=qwen-plus'
--- error_code: 400
--- response_body
{"error":{"message":"The request body is not valid JSON: unexpected character at byte 0.","type":"invalid_request_error","param":null,"code":"invalid_json"}}
--- error_log
qwen: rejected request: the body is not valid JSON: unexpected character at byte 0



=== TEST 2: JSON cut short
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","messages":[{"role":"user"'
--- error_code: 400
--- response_body
{"error":{"message":"The request body is not valid JSON: unexpected end of input at byte 47.","type":"invalid_request_error","param":null,"code":"invalid_json"}}
--- error_log
unexpected end of input at byte 47



=== TEST 3: a trailing comma
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus",}'
--- error_code: 400
--- response_body_like eval
qr'"message":"The request body is not valid JSON: expected a member name at byte 21\."'



=== TEST 4: data after the JSON value
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"} {}'
--- error_code: 400
--- response_body_like eval
qr'unexpected data after the JSON value at byte 22'



=== TEST 5: an invalid escape and a raw control character in strings
--- request eval
["POST /v1/chat/completions\n" . '{"model":"qwen-plus","x":"\q"}',
 "POST /v1/chat/completions\n" . qq{{"model":"qwen-plus","x":"a\tb"}}]
--- error_code eval
[400, 400]
--- response_body_like eval
[qr/invalid escape in a string at byte 27/,
 qr/control character in a string at byte 27/]



=== TEST 6: invalid numbers and literals
--- request eval
["POST /v1/chat/completions\n" . '{"model":"qwen-plus","t":01}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus","t":1.}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus","t":tru}']
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[qr/expected ',' or '}' at byte 26/,
 qr/invalid number at byte 27/,
 qr/invalid literal at byte 28/]



=== TEST 7: a JSON array is not an object
--- request eval
"POST /v1/chat/completions\n" . '[{"model":"qwen-plus"}]'
--- error_code: 400
--- response_body
{"error":{"message":"The request body must be a JSON object.","type":"invalid_request_error","param":null,"code":"invalid_request_body"}}
--- error_log
qwen: rejected request: The request body must be a JSON object.



=== TEST 8: no model
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[{"role":"user","content":"hi","model":"qwen-plus"}]}'
--- error_code: 400
--- response_body
{"error":{"message":"The request body has no \"model\".","type":"invalid_request_error","param":"model","code":"missing_model"}}
--- error_log
qwen: rejected request: The request body has no "model".



=== TEST 9: a model that is not a string
--- request eval
["POST /v1/chat/completions\n" . '{"model":42}',
 "POST /v1/chat/completions\n" . '{"model":null}',
 "POST /v1/chat/completions\n" . '{"model":["qwen-plus"]}']
--- error_code eval
[400, 400, 400]
--- response_body eval
[qq{{"error":{"message":"The \\"model\\" member must be a string.","type":"invalid_request_error","param":"model","code":"invalid_model"}}\n},
 qq{{"error":{"message":"The \\"model\\" member must be a string.","type":"invalid_request_error","param":"model","code":"invalid_model"}}\n},
 qq{{"error":{"message":"The \\"model\\" member must be a string.","type":"invalid_request_error","param":"model","code":"invalid_model"}}\n}]



=== TEST 10: an empty model, and one longer than 256 bytes
--- request eval
["POST /v1/chat/completions\n" . '{"model":""}',
 "POST /v1/chat/completions\n" . '{"model":"' . ("q" x 257) . '"}']
--- error_code eval
[400, 400]
--- response_body_like eval
[qr/"code":"invalid_model"/, qr/"code":"invalid_model"/]
--- error_log
must be a model name of 1 to 256 bytes



=== TEST 11: model twice at the top level
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","messages":[],"model":"qwen-max"}'
--- error_code: 400
--- response_body
{"error":{"message":"The request body has \"model\" more than once.","type":"invalid_request_error","param":"model","code":"duplicate_model"}}
--- error_log
qwen: rejected request: The request body has "model" more than once.



=== TEST 12: model twice, the second spelt with an escape
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","mod\u0065l":"qwen-max"}'
--- error_code: 400
--- response_body_like eval
qr'"code":"duplicate_model"'



=== TEST 13: stream twice
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":false,"stream":true}'
--- error_code: 400
--- response_body_like eval
qr'"param":"stream"'



=== TEST 14: an unknown model
--- request eval
"POST /v1/chat/completions\n" . '{"model":"gpt-\"4\"","messages":[]}'
--- error_code: 404
--- response_body
{"error":{"message":"The model `gpt-\"4\"` does not exist or you do not have access to it.","type":"invalid_request_error","param":"model","code":"model_not_found"}}
--- error_log
qwen: rejected request: unknown model "gpt-"4""



=== TEST 15: nested deeper than 128 levels
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","x":' . ("[" x 128) . ("]" x 128) . '}'
--- error_code: 400
--- response_body_like eval
qr'nesting too deep at byte 152'
--- error_log
nesting too deep



=== TEST 16: nested 127 levels is fine (it fails upstream, not here)
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","x":' . ("[" x 127) . ("]" x 127) . '}'
--- error_code: 502
--- response_headers
Content-Type: text/html
--- error_log
connect() failed
--- no_error_log
nesting too deep



=== TEST 17: a body over qwen_max_body_size, by Content-Length
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","x":"' . ("a" x 5000) . '"}'
--- error_code: 413
--- response_body
{"error":{"message":"The request body is too large.","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- error_log
qwen: rejected request: body of 5028 bytes is larger than qwen_max_body_size 4096



=== TEST 18: a chunked body over qwen_max_body_size
--- raw_request eval
my $body = '{"model":"qwen-plus","x":"' . ("a" x 5000) . '"}';
"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
. sprintf("%x\r\n", length $body) . $body . "\r\n0\r\n\r\n"
--- error_code: 413
--- response_body_like eval
qr'"code":"request_too_large"'
--- error_log
body of 5028 bytes is larger than qwen_max_body_size 4096



=== TEST 19: an empty body
--- request eval
"POST /v1/chat/completions\n"
--- error_code: 400
--- response_body
{"error":{"message":"The request body is empty.","type":"invalid_request_error","param":null,"code":"invalid_json"}}
--- error_log
qwen: rejected request: the body is empty



=== TEST 20: GET is not allowed
--- request
GET /v1/chat/completions
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
--- response_body
{"error":{"message":"Only POST is allowed here.","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}
--- error_log
qwen: rejected request: method GET is not POST



=== TEST 21: PUT with a body is not allowed either, and the body is discarded
--- request eval
["PUT /v1/chat/completions\n" . '{"model":"qwen-plus"}',
 "DELETE /v1/chat/completions"]
--- error_code eval
[405, 405]
--- response_body_like eval
[qr/method_not_allowed/, qr/method_not_allowed/]



=== TEST 22: the error response to a HEAD has no body
--- request
HEAD /v1/chat/completions
--- error_code: 405
--- response_body eval
""



=== TEST 23: a bad request on a keep-alive connection leaves it usable
--- pipelined_requests eval
["POST /v1/chat/completions\n" . '{"model":1}',
 "POST /v1/chat/completions\n" . '{"model":"nope"}']
--- error_code eval
[400, 404]
--- response_body_like eval
[qr/invalid_model/, qr/model_not_found/]



=== TEST 24: unpaired surrogates in a model name decode to U+FFFD, never to a surrogate
--- request eval
"POST /v1/chat/completions\n" . '{"model":"\ud83d\ud83dx\udc00"}'
--- error_code: 404
--- response_body eval
"{\"error\":{\"message\":\"The model `\xef\xbf\xbd\xef\xbf\xbdx\xef\xbf\xbd` does not exist or you do not have access to it.\",\"type\":\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}\n"



=== TEST 25: a model name with CR LF is refused, under qwen_unknown_model pass too, and reaches no header or log line
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_unknown_model pass;
        proxy_set_header X-Model $qwen_requested_model;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus\r\nX-Injected: 1","messages":[]}'
--- error_code: 400
--- response_body
{"error":{"message":"The model name must not contain control characters.","type":"invalid_request_error","param":"model","code":"invalid_value"}}
--- error_log
qwen: rejected request: the requested model name has a control character (0x0d) at byte 9
--- no_error_log
X-Injected
[error]
[alert]



=== TEST 26: a tab in a model name is refused
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen\tplus"}'
--- error_code: 400
--- response_body_like: "code":"invalid_value"
--- error_log
control character (0x09) at byte 4



=== TEST 27: a NUL in a model name is refused
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen\u0000plus"}'
--- error_code: 400
--- response_body_like: "code":"invalid_value"
--- error_log
control character (0x00) at byte 4



=== TEST 28: DEL in a model name is refused
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen' . "\x7f" . 'plus"}'
--- error_code: 400
--- response_body_like: "code":"invalid_value"
--- error_log
control character (0x7f) at byte 4



=== TEST 29: a pattern cannot make a control character out of a clean name
--- http_config
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://127.0.0.1:1 key=sk-mock;
    qwen_model_pattern "^esc-(.*)$" "qwen-$1";
--- request eval
"POST /v1/chat/completions\n" . '{"model":"esc-\n"}'
--- error_code: 400
--- response_body_like: "code":"invalid_value"
--- error_log
the requested model name has a control character (0x0a) at byte 4



=== TEST 30: include_usage twice in stream_options is refused, whichever value comes last
--- request eval
["POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":false,"include_\u0075sage":true}}']
--- error_code eval
[400, 400]
--- response_body eval
['{"error":{"message":"The request body has \"stream_options.include_usage\" more than once.","type":"invalid_request_error","param":"stream_options.include_usage","code":"invalid_request_body"}}
',
'{"error":{"message":"The request body has \"stream_options.include_usage\" more than once.","type":"invalid_request_error","param":"stream_options.include_usage","code":"invalid_request_body"}}
']
--- error_log
qwen: rejected request: The request body has "stream_options.include_usage" more than once.
