# Regions and keys: the region's key replaces the client's, keys stay out
# of logs and answers, regions are picked by variable, by the model's
# catalogue entry, or stood in for when they have no key.
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_long_string();

$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();
no_shuffle();

$ENV{QWEN_TEST_VIRGINIA_KEY} = 'sk-mock-virginia';
delete $ENV{QWEN_TEST_UNSET_KEY};

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;

    qwen_region singapore url=http://dashscope_mock key=sk-mock
                host=dashscope-intl.aliyuncs.com;
    qwen_region beijing url=http://dashscope_mock
                key_file=$TEST_NGINX_HTML_DIR/beijing.key;
    qwen_region virginia url=http://dashscope_mock
                key_env=QWEN_TEST_UNSET_KEY key_env=QWEN_TEST_VIRGINIA_KEY;
    qwen_region hongkong url=http://dashscope_mock
                key_env=QWEN_TEST_UNSET_KEY without_key=beijing;
    qwen_region frankfurt url=http://dashscope_mock
                key_env=QWEN_TEST_UNSET_KEY;

    map $http_x_region $region {
        default  singapore;
        ~^(.+)$  $1;
    }
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region $region;
        proxy_set_header Host $qwen_upstream_host;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
        add_header X-Qwen "$qwen_requested_model|$qwen_model|$qwen_provider|$qwen_region|$qwen_upstream|$qwen_upstream_host|$qwen_stream" always;
    }
_EOC_
    }

    if (!defined $block->user_files) {
        $block->set_value("user_files", ">>> beijing.key\n  sk-mock-beijing \n");
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: the region's key replaces the client's Authorization
--- more_headers
Authorization: Bearer client-secret-key
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- response_body_like eval
qr/"authorization":"Bearer sk-mock"/
--- response_body_unlike
client-secret-key



=== TEST 2: the variables, for proxy_pass, headers and logs
--- more_headers
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","stream":true}'
--- response_headers
X-Qwen: qwen/qwen-max|qwen-max|alibaba-cloud|singapore|http://dashscope_mock|dashscope-intl.aliyuncs.com|1
--- response_body_like eval
qr'"host":"dashscope-intl.aliyuncs.com"'



=== TEST 3: a region picked by a variable, with a key from a file
--- more_headers
X-Region: beijing
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":false}'
--- response_headers
X-Qwen: qwen-plus|qwen-plus|alibaba-cloud|beijing|http://dashscope_mock|dashscope_mock|0
--- response_body_like eval
qr'"authorization":"Bearer sk-mock-beijing"'



=== TEST 4: a key from the first environment variable that is set
--- more_headers
X-Region: virginia
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- response_body_like eval
qr'"authorization":"Bearer sk-mock-virginia"'



=== TEST 5: a model pinned to a region goes there, with that region's key
--- more_headers
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-long"}'
--- response_headers_like
X-Qwen: qwen-long\|qwen-long\|alibaba-cloud\|beijing\|.*
--- response_body_like eval
qr'"authorization":"Bearer sk-mock-beijing"'



=== TEST 6: a region without a key stands in for by its without_key region
--- more_headers
X-Region: hongkong
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- response_headers_like
X-Qwen: qwen-plus\|qwen-plus\|alibaba-cloud\|beijing\|.*
--- response_body_like eval
qr'"authorization":"Bearer sk-mock-beijing"'



=== TEST 7: a region without any key answers 503
--- more_headers
X-Region: frankfurt
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- error_code: 503
--- response_body
{"error":{"message":"The gateway has no API key for the upstream region.","type":"server_error","param":null,"code":"no_upstream_key"}}
--- error_log
qwen: region "frankfurt" has no API key
--- no_error_log
[alert]



=== TEST 8: a variable that names no region is a configuration fault: 500
--- more_headers
X-Region: atlantis
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-plus"}'
--- error_code: 500
--- response_body
{"error":{"message":"The gateway is misconfigured.","type":"server_error","param":null,"code":"gateway_misconfigured"}}
--- error_log
qwen: qwen_default_region gave "atlantis", which is no region
--- no_error_log
[alert]



=== TEST 9: a model pinned to regions this gateway lacks
--- http_config
    qwen_model qwen-long regions=beijing;
    qwen_region singapore url=http://127.0.0.1:1 key=sk-mock;
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen-long"}'
--- error_code: 400
--- response_body
{"error":{"message":"The model is not available in any region this gateway serves.","type":"invalid_request_error","param":"model","code":"model_not_available"}}
--- error_log
qwen: model "qwen-long" is offered in no configured region



=== TEST 10: keys appear in no log line, access log included, nor answer
--- log_level: info
--- http_config
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_region nokey url=http://dashscope_mock key_env=QWEN_TEST_UNSET_KEY;

    log_format qwen 'qwen-access $qwen_requested_model $qwen_model '
                    '$qwen_provider $qwen_region $qwen_upstream '
                    '$qwen_upstream_host $qwen_stream';
--- config
    access_log logs/error.log qwen;

    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region $http_x_region;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-secret-key
X-Region: singapore
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- error_code: 200
--- response_body_unlike eval
qr/sk-mock|client-secret/
--- error_log
qwen-access qwen/qwen-max qwen-max alibaba-cloud singapore http://dashscope_mock dashscope_mock 0
--- no_error_log
sk-mock
client-secret-key
[error]



=== TEST 11: nor in an error answer and its log lines
--- log_level: info
--- http_config
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_region nokey url=http://dashscope_mock key_env=QWEN_TEST_UNSET_KEY;

    log_format qwen 'qwen-access $qwen_requested_model $qwen_model '
                    '$qwen_provider $qwen_region $qwen_upstream '
                    '$qwen_upstream_host $qwen_stream';
--- config
    access_log logs/error.log qwen;

    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        qwen_default_region $http_x_region;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-secret-key
X-Region: singapore
--- request eval
"POST /v1/chat/completions\n" . '{"model":"nope"}'
--- error_code: 404
--- response_body_unlike eval
qr/sk-mock|client-secret/
--- error_log
qwen-access nope - - - - - -
--- no_error_log
sk-mock
client-secret-key
[error]
