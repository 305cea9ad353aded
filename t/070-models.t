# GET /v1/models, answered from the catalogue.
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_long_string();

run_tests();

__DATA__

=== TEST 1: the list in OpenAI's format
--- http_config
    qwen_model qwen-plus alias=fast;
    qwen_model qwen-max provider=alibaba-cloud;
    qwen_model acme-\"model\" provider=acme;
--- config
    location = /v1/models {
        qwen_models;
    }
--- request
GET /v1/models
--- response_headers
Content-Type: application/json
--- response_body
{"object":"list","data":[{"id":"qwen-plus","object":"model","created":0,"owned_by":"alibaba-cloud"},{"id":"qwen-max","object":"model","created":0,"owned_by":"alibaba-cloud"},{"id":"acme-\"model\"","object":"model","created":0,"owned_by":"acme"}]}
--- no_error_log
[error]



=== TEST 2: the shipped catalogue lists every model once
--- http_config
    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
--- config
    location = /v1/models {
        qwen_models;
    }
--- request
GET /v1/models
--- response_body_like eval
qr'^\{"object":"list","data":\[\{"id":"qwen-max",.*\{"id":"qwen-long","object":"model","created":0,"owned_by":"alibaba-cloud"\}\]\}$'
--- no_error_log
[error]



=== TEST 3: an empty catalogue is an empty list
--- config
    location = /v1/models {
        qwen_models;
    }
--- request
GET /v1/models
--- response_body
{"object":"list","data":[]}



=== TEST 4: HEAD has the headers only
--- config
    location = /v1/models {
        qwen_models;
    }
--- request
HEAD /v1/models
--- error_code: 200
--- response_body eval
""



=== TEST 5: POST is not allowed
--- config
    location = /v1/models {
        qwen_models;
    }
--- request eval
"POST /v1/models\n{}"
--- error_code: 405
--- response_headers
Allow: GET, HEAD
--- response_body
{"error":{"message":"Only GET is allowed here.","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}
--- error_log
qwen: rejected request: method POST on the model list
