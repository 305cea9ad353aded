# qwen_ready: the readiness probe (issue 10; the container image's /readyz
# and the Kubernetes readinessProbe). 200 while the configuration routes
# somewhere and at least one deployment is not cooling down; 503 with the
# reason when every deployment is out, so that a load balancer stops
# sending the pod requests it would only refuse. GET and HEAD only.
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_metrics_zone ready112 1m;
    qwen_region singapore url=http://127.0.0.1:$TEST_NGINX_MOCK_PORT key=sk-mock;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location = /readyz { qwen_ready; }
    location = /healthz { return 200 "ok\n"; }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: ready: the catalogue is loaded and the deployments are up
--- request
GET /readyz
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like chomp
^\{"status":"ready","models":[1-9][0-9]*,"regions":1,"deployments":[1-9][0-9]*,"deployments_up":[1-9][0-9]*\}$
--- no_error_log
[error]
not ready



=== TEST 2: every deployment counted up
--- request
GET /readyz
--- response_body_like chomp
"deployments":(\d+),"deployments_up":\1\}



=== TEST 3: HEAD is answered without a body
--- request
HEAD /readyz
--- error_code: 200
--- response_body eval
""



=== TEST 4: POST is refused with 405 and Allow
--- request
POST /readyz
{}
--- error_code: 405
--- response_headers
Allow: GET, HEAD
--- response_body_like chomp
"code":"method_not_allowed"
--- error_log
qwen: rejected request: method POST on the readiness probe



=== TEST 5: not ready once the only deployment is cooling down (a refused key: auth cooldown)
--- http_config
    qwen_metrics_zone ready112b 1m;
    qwen_region sg url=http://127.0.0.1:$TEST_NGINX_MOCK_PORT path=/compatible-mode key=sk-not-a-mock-key;
    qwen_model ready-chat input=1 output=2;
--- config
    location = /readyz { qwen_ready; }
    location /v1/ {
        qwen_gateway on;
        qwen_failover on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }
--- request eval
["GET /readyz",
 "POST /v1/chat/completions\n" . '{"model":"ready-chat","messages":[{"role":"user","content":"hi"}]}',
 "GET /readyz"]
--- error_code eval
[200, 401, 503]
--- response_body_like eval
[qr/^\{"status":"ready","models":1,"regions":1,"deployments":1,"deployments_up":1\}$/,
 qr/invalid_api_key|Incorrect API key/,
 qr/^\{"status":"not_ready","models":1,"regions":1,"deployments":1,"deployments_up":0,"reason":"every deployment is cooling down"\}$/]



=== TEST 6: not ready when no region is configured (nothing to route to)
--- http_config
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
--- request
GET /readyz
--- error_code: 503
--- response_body_like chomp
^\{"status":"not_ready","models":[1-9][0-9]*,"regions":0,"deployments":0,"deployments_up":0,"reason":"no region is configured"\}$
--- error_log
qwen: not ready: no region is configured



=== TEST 7: qwen_ready takes no arguments
--- config
    location = /readyz { qwen_ready now; }
--- must_die
--- error_log eval
qr/invalid number of arguments in "qwen_ready" directive in \S+nginx\.conf:\d+/



=== TEST 8: qwen_ready twice in a location is a mistake
--- config
    location = /readyz { qwen_ready; qwen_ready; }
--- must_die
--- error_log eval
qr/"qwen_ready" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 9: /healthz beside it needs nothing of the module (liveness)
--- request
GET /healthz
--- error_code: 200
--- response_body
ok
