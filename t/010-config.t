# Configuration mistakes stop nginx at start (and at nginx -t) with a
# message that names what is wrong; the file and line are nginx's own.
use Test::Nginx::Socket 'no_plan';

no_long_string();

$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->config) {
        $block->set_value("config", "location = /t { return 204; }");
    }

    if (!defined $block->request) {
        $block->set_value("request", "GET /t");
    }
});

run_tests();

__DATA__

=== TEST 1: an unknown qwen_model parameter
--- http_config
    qwen_model qwen-plus price=1;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "price=1" in .*nginx\.conf:\d+/



=== TEST 2: a price that is not a number
--- http_config
    qwen_model qwen-plus input=cheap output=1;
--- must_die
--- error_log eval
qr/invalid parameter "input=cheap" in .*nginx\.conf:\d+/



=== TEST 3: a price with more than six decimals
--- http_config
    qwen_model qwen-plus input=0.0000001 output=1;
--- must_die
--- error_log
invalid parameter "input=0.0000001"



=== TEST 4: an input price without an output price
--- http_config
    qwen_model qwen-plus input=1;
--- must_die
--- error_log
model "qwen-plus" needs both "input=" and "output=" prices, or neither



=== TEST 5: a name defined twice
--- http_config
    qwen_model qwen-plus;
    qwen_model qwen-max alias=QWEN-PLUS;
--- must_die
--- error_log eval
qr/model name "QWEN-PLUS" in qwen_model is defined already in .*nginx\.conf:\d+/



=== TEST 6: a pattern that is no regular expression
--- http_config
    qwen_model_pattern "^qwen-(" "x";
--- must_die
--- error_log eval
qr/model pattern: pcre2?_compile\(\) failed: .* in .*nginx\.conf:\d+/



=== TEST 7: a replacement using a capture the pattern lacks
--- http_config
    qwen_model_pattern "^qwen-(\d+)$" "q-$2";
--- must_die
--- error_log
model pattern "^qwen-(\d+)$" has no capture $2 used in "q-$2"



=== TEST 8: a missing catalogue file
--- http_config
    qwen_models_file /nonexistent/models.json;
--- must_die
--- error_log eval
qr/open\(\) "\/nonexistent\/models\.json" failed \(2: No such file or directory\) in .*nginx\.conf:\d+/



=== TEST 9: a catalogue that is not JSON names the line
--- user_files
>>> bad-models.json
{
  "models": [
    {"id": "qwen-plus",}
  ]
}
--- http_config
    qwen_models_file $TEST_NGINX_HTML_DIR/bad-models.json;
--- must_die
--- error_log eval
qr/model catalogue ".*bad-models\.json" is not valid JSON near line 3 in .*nginx\.conf:\d+/



=== TEST 10: a catalogue entry with a wrong type names the entry
--- user_files
>>> bad-models.json
{"models": [{"id": "qwen-plus"}, {"id": "qwen-max", "pricing": {"input": "1"}}]}
--- http_config
    qwen_models_file $TEST_NGINX_HTML_DIR/bad-models.json;
--- must_die
--- error_log
models[1]: a price must be a number of USD per 1M tokens



=== TEST 11: a catalogue without a models array
--- user_files
>>> bad-models.json
{"model": []}
--- http_config
    qwen_models_file $TEST_NGINX_HTML_DIR/bad-models.json;
--- must_die
--- error_log
has no "models" array



=== TEST 12: price tiers out of order
--- user_files
>>> bad-models.json
{"models": [{"id": "m", "pricing": [{"up_to": 100, "input": 1, "output": 1}, {"up_to": 50, "input": 1, "output": 1}]}]}
--- http_config
    qwen_models_file $TEST_NGINX_HTML_DIR/bad-models.json;
--- must_die
--- error_log
price tiers must be in ascending "up_to" order



=== TEST 13: a region without a url
--- http_config
    qwen_region singapore key=sk-x;
--- must_die
--- error_log
region "singapore" needs "url=http://..." or "url=https://..."



=== TEST 14: a region url with a path
--- http_config
    qwen_region singapore url=https://dashscope-intl.aliyuncs.com/compatible-mode key=sk-x;
--- must_die
--- error_log
the path belongs to proxy_pass



=== TEST 15: a region without any key source
--- http_config
    qwen_region singapore url=https://dashscope-intl.aliyuncs.com;
--- must_die
--- error_log
region "singapore" needs a key



=== TEST 16: an unknown region parameter does not echo what follows '='
--- http_config
    qwen_region singapore url=http://x kee=sk-secret-value;
--- must_die
--- error_log
region "singapore": invalid parameter "kee"
--- no_error_log
sk-secret-value



=== TEST 17: a key that cannot go in a header, not echoed
--- http_config
    qwen_region singapore url=http://x "key=sk-bad key";
--- must_die
--- error_log
the key of region "singapore" has characters that cannot go in a header
--- no_error_log
sk-bad



=== TEST 18: a missing key file
--- http_config
    qwen_region singapore url=http://x key_file=/nonexistent/key;
--- must_die
--- error_log
open() "/nonexistent/key" failed



=== TEST 19: a region defined twice
--- http_config
    qwen_region singapore url=http://x key=a;
    qwen_region singapore url=http://y key=b;
--- must_die
--- error_log
region "singapore" is defined already



=== TEST 20: without_key names no region
--- http_config
    qwen_region singapore url=http://x key=a without_key=mars;
--- must_die
--- error_log
region "singapore": "without_key=mars" names no other region



=== TEST 21: qwen_unknown_model takes reject or pass
--- http_config
    qwen_unknown_model maybe;
--- must_die
--- error_log
invalid value "maybe" in



=== TEST 22: qwen_gateway is a location directive
--- http_config
    qwen_gateway on;
    proxy_set_header Authorization $qwen_upstream_authorization;
--- must_die
--- error_log
"qwen_gateway" directive is not allowed here



=== TEST 23: a valid configuration starts
--- http_config
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_model my-model alias=mine input=0.5 output=1.5 cached_input=0.05 thinking_output=3 context=8192 regions=singapore;
    qwen_model_pattern "^qwen-(\d+)$" "qwen$1";
    qwen_model_prefixes qwen/ acme/;
    qwen_region singapore url=https://dashscope-intl.aliyuncs.com key=sk-x;
    qwen_unknown_model pass;
    qwen_max_body_size 20m;
--- error_code: 204
--- no_error_log
[emerg]
[error]
