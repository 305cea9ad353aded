# Where the region key goes, and where it does not. The request's headers
# keep the client's own Authorization ($http_authorization shows it); the
# key reaches the upstream only through the gateway location's
# "proxy_set_header Authorization $qwen_upstream_authorization;", which
# nginx -t insists on; provider control headers and other providers'
# credentials from the client are taken out unless qwen_pass_client_header
# lets them through.
#
# The blocks run at info level, where nginx prints no request headers:
# "no line mentions sk-mock" then covers every log line.
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_long_string();
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    my $extra = $block->http_config;
    $extra = '' unless defined $extra;

    $block->set_value("http_config", <<'_EOC_' . $extra);
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
_EOC_

    if (!defined $block->log_level) {
        $block->set_value("log_level", "info");
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\nsk-mock\n");
    }
});

run_tests();

__DATA__

=== TEST 1: $http_authorization is the client's own in add_header and the access log; the key is nowhere
# (an access log writes a variable without a value as "-")
--- http_config
    log_format seen 'seen client=[$http_authorization] '
                    'upstream=[$qwen_upstream_authorization] '
                    'model=$qwen_model region=$qwen_region';
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
        add_header X-Client-Authorization "[$http_authorization]" always;
        add_header X-Upstream-Authorization "[$qwen_upstream_authorization]" always;
        access_log logs/error.log seen;
    }
--- more_headers
Authorization: Bearer client-token
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_headers
X-Client-Authorization: [Bearer client-token]
X-Upstream-Authorization: []
--- raw_response_headers_unlike: sk-mock
--- response_body_like eval
qr/\A(?!.*sk-mock)\{"id":"chatcmpl-[^"]+","object":"chat.completion",.*"model":"qwen-max"/s
--- error_log eval
[qr/seen client=\[Bearer client-token\] upstream=\[-?\] model=qwen-max region=singapore$/,
 'qwen: transformed model "qwen/qwen-max" to "qwen-max"']



=== TEST 2: the same for an answer the gateway makes itself (unknown model)
--- http_config
    log_format seen 'seen client=[$http_authorization] '
                    'upstream=[$qwen_upstream_authorization] '
                    'model=$qwen_requested_model';
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
        add_header X-Client-Authorization "[$http_authorization]" always;
        add_header X-Upstream-Authorization "[$qwen_upstream_authorization]" always;
        access_log logs/error.log seen;
    }
--- more_headers
Authorization: Bearer client-token
--- request eval
"POST /v1/chat/completions\n" . '{"model":"no-such-model"}'
--- error_code: 404
--- response_headers
X-Client-Authorization: [Bearer client-token]
X-Upstream-Authorization: []
--- raw_response_headers_unlike: sk-mock
--- response_body_like eval
qr/\A(?!.*sk-mock)\{"error":\{.*"code":"model_not_found"\}\}\n?\z/s
--- error_log eval
qr/seen client=\[Bearer client-token\] upstream=\[-?\] model=no-such-model$/
--- no_error_log
sk-mock
[error]
[alert]
[crit]



=== TEST 3: the client's Authorization never reaches the upstream; the region key does
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-token
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock".*"body_length":20\}\z/s



=== TEST 4: nginx -t: a gateway location without the Authorization line fails, naming where
# the second location of gw.conf lacks the line: its qwen_gateway is on line 7
--- user_files
>>> gw.conf
location /v1/embeddings {
    qwen_gateway on;
    proxy_set_header Authorization $qwen_upstream_authorization;
    proxy_pass $qwen_upstream/compatible-mode/v1/embeddings;
}
location /v1/chat/completions {
    qwen_gateway on;
    proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
}
--- config
    include ../html/gw.conf;
--- must_die
--- error_log eval
qr/\[emerg\](?=.*"qwen_gateway")(?=.*gw\.conf:7\b)(?=.*"proxy_set_header (?i:authorization) \$qwen_upstream_authorization;")/



=== TEST 5: nginx -t: the Authorization line inherited from the server level is enough
--- config
    proxy_set_header Authorization $qwen_upstream_authorization;

    location /v1/chat/completions {
        qwen_gateway on;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-token
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s



=== TEST 6: nginx -t: inherited from the http level is enough too
--- http_config
    proxy_set_header Authorization $qwen_upstream_authorization;
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-token
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s



=== TEST 7: nginx -t: a location with its own proxy_set_header lines inherits none from the server
# nginx's proxy_set_header is inherited only by a level that has none of
# its own: this location would send the client's Authorization upstream
--- user_files
>>> gw.conf
location /v1/chat/completions {
    qwen_gateway on;
    proxy_set_header Host $qwen_upstream_host;
    proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
}
--- config
    proxy_set_header Authorization $qwen_upstream_authorization;
    include ../html/gw.conf;
--- must_die
--- error_log eval
qr/\[emerg\](?=.*"qwen_gateway")(?=.*gw\.conf:2\b)(?=.*"proxy_set_header (?i:authorization) \$qwen_upstream_authorization;")/



=== TEST 8: nginx -t: a named gateway location (a failover target) is checked too
--- user_files
>>> gw.conf
location /v1/chat/completions {
    qwen_gateway on;
    proxy_set_header Authorization $qwen_upstream_authorization;
    error_page 502 = @other;
    proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
}
location @other {
    qwen_gateway on;
    proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
}
--- config
    include ../html/gw.conf;
--- must_die
--- error_log eval
qr/\[emerg\](?=.*"qwen_gateway")(?=.*gw\.conf:8\b)(?=.*"proxy_set_header (?i:authorization) \$qwen_upstream_authorization;")/



=== TEST 9: nginx -t: so is a regular-expression gateway location
--- user_files
>>> gw.conf
location ~ ^/v1/(chat/completions|embeddings)$ {
    qwen_gateway on;
    proxy_pass $qwen_upstream/compatible-mode/v1/$1;
}
--- config
    include ../html/gw.conf;
--- must_die
--- error_log eval
qr/\[emerg\](?=.*"qwen_gateway")(?=.*gw\.conf:2\b)(?=.*"proxy_set_header (?i:authorization) \$qwen_upstream_authorization;")/



=== TEST 10: provider control headers and other providers' keys from the client do not reach the upstream
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-DashScope-WorkSpace: ws-client
X-DashScope-DataInspection: disable
OpenAI-Organization: org-client
OpenAI-Project: proj-client
api-key: azure-style-key
x-api-key: anthropic-style-key
X-Kept: kept-value
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*(?:x-dashscope|openai-|api-key|ws-client|org-client|proj-client|-style-key|disable))(?=.*"x-kept":"kept-value")(?=.*"authorization":"Bearer sk-mock")\{"method":"POST",/si



=== TEST 11: qwen_pass_client_header lets the one named header through
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        qwen_pass_client_header X-DashScope-WorkSpace;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-DashScope-WorkSpace: ws-client
X-DashScope-DataInspection: disable
OpenAI-Organization: org-client
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*(?:datainspection|openai-|org-client|disable))\{"method":"POST",.*"x-dashscope-workspace":"ws-client"/si



=== TEST 12: qwen_pass_client_header with a trailing * lets a prefix through
--- config
    location /v1/chat/completions {
        qwen_gateway on;
        qwen_pass_client_header X-DashScope-*;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
X-DashScope-WorkSpace: ws-client
X-DashScope-DataInspection: disable
OpenAI-Organization: org-client
x-api-key: anthropic-style-key
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}'
--- response_body_like eval
qr/\A(?!.*(?:openai-|org-client|api-key|-style-key))\{"method":"POST",(?=.*"x-dashscope-datainspection":"disable").*"x-dashscope-workspace":"ws-client"/si
