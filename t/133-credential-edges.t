# The edges of the credential boundary and of the body read: a key is
# withheld from a proxy_pass that does not go to its region's url; a region
# whose provider takes its key in another header gets it there and nowhere
# else; a body that nginx cannot read (bad chunked encoding, a client that
# stalls, a client that leaves) ends the request at once, with the right
# answer where there is one to give.
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
    }

    upstream elsewhere {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
_EOC_
    }

    if (!defined $block->log_level) {
        $block->set_value("log_level", "info");
    }
});

run_tests();

__DATA__

=== TEST 1: a proxy_pass that does not go to the region's url gets no key
# (the mock answers 401 to a request without a key it knows, echo or not:
# neither the region's key nor the client's reached it)
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass http://elsewhere/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer sk-mock-virginia
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- error_code: 401
--- response_body_like: "code":"invalid_api_key"
--- error_log
qwen: the upstream request goes to "elsewhere", not to the url of region "singapore" ("http://dashscope_mock"): its key is withheld
--- no_error_log
sk-mock
[alert]



=== TEST 2: nor does one with another scheme
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass https://dashscope_mock/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- error_code: 502
--- error_log
qwen: the upstream request goes to "https://", not to the url of region "singapore" ("http://dashscope_mock"): its key is withheld
--- no_error_log
sk-mock
[alert]



=== TEST 3: a static proxy_pass to the region's own upstream gets the key
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass http://dashscope_mock/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like: "authorization":"Bearer sk-mock"
--- no_error_log
[error]
[alert]



=== TEST 4: a region with auth_header=api-key: its key in api-key alone, no Authorization at all
--- http_config
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_region azure url=http://headers_echo key=sk-mock-beijing
                auth_header=api-key;

    # an upstream that answers with the credential headers it got (an
    # echo: the request says X-Mock-Echo, for the suite's secret scan)
    upstream headers_echo {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }

    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "authorization=[$http_authorization] api-key=[$http_api_key]\n";
        }
    }
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        qwen_default_region azure;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header api-key $qwen_upstream_api_key;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-token
api-key: client-api-key
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body
authorization=[] api-key=[sk-mock-beijing]
--- no_error_log
[error]
[alert]



=== TEST 5: nginx -t: a region with auth_header=api-key needs its line in every gateway location
--- http_config
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_region azure url=http://dashscope_mock key=sk-mock-beijing
                auth_header=api-key;
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- must_die
--- error_log
needs "proxy_set_header api-key $qwen_upstream_api_key;" in its location or above



=== TEST 6: nginx -t: an auth_header= no provider uses is refused, and the key is not printed
--- http_config
    qwen_region singapore url=http://127.0.0.1:1 key=sk-mock-secret-9
                auth_header=x-token;
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- must_die
--- error_log
region "singapore": "auth_header=x-token" is none of "authorization", "api-key", "x-api-key"
--- no_error_log
sk-mock-secret-9



=== TEST 7: a bad chunked body sent to a gateway location by error_page 400 gets the gateway's JSON 400 at once
--- config
    location /v1/chat/completions {
        error_page 400 = @gw;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location @gw {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Connection: close\r
Transfer-Encoding: chunked\r
\r
5\r
{\"mod\r
zz\r
"
--- timeout: 3
--- error_code: 400
--- response_body
{"error":{"message":"The request body could not be read.","type":"invalid_request_error","param":null,"code":"invalid_request_body"}}
--- error_log
client sent invalid chunked body
qwen: rejected request: the body could not be read
--- no_error_log
[alert]
[crit]



=== TEST 8: a client that stalls in the middle of its body: nginx closes the request when client_body_timeout passes, nothing waits on
--- config
    location /v1/chat/completions {
        client_body_timeout 300ms;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Content-Length: 100\r
\r
{\"model\":"
--- timeout: 2
--- ignore_response
--- access_log
"POST /v1/chat/completions HTTP/1.1" 408
--- no_error_log
qwen: transformed model
[alert]
[crit]



=== TEST 9: a client that leaves in the middle of its body: the request ends, nothing waits on
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Content-Length: 100\r
\r
{\"model\":"
--- shutdown
--- timeout: 2
--- ignore_response
--- error_log
client prematurely closed connection
--- no_error_log
qwen: transformed model
[alert]
[crit]
