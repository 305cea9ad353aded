# The real OpenAI SDK (npm "openai") through the gateway: models, chat,
# streams with and without usage, embeddings, and an unknown model.
use Test::Nginx::Socket 'no_plan';
use Cwd qw(cwd);

repeat_each(1);
no_long_string();
no_shuffle();

# runs the client once the block's nginx is up, from the block's request
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;

    my $args = $block->openai_client;
    return if !defined $args || $dry_run;

    chomp $args;
    my $script = "$ENV{TEST_NGINX_REPO}/t/client/openai-compat.mjs";
    my $base = "http://127.0.0.1:" . server_port() . "/v1";
    my $out = `node $script --base-url $base --api-key sk-client $args 2>&1`;
    my $status = $? >> 8;

    like($out, qr/^\d+ passed, 0 failed$/m,
         $block->name . " - the openai client's checks passed")
        or diag($out);
    is($status, 0, $block->name . " - the openai client exited 0");
});

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<'_EOC_');
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
_EOC_

    $block->set_value("config", <<'_EOC_');
    location /v1/ {
        qwen_gateway on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }

    location = /v1/models {
        qwen_models;
    }
_EOC_

    $block->set_value("request", "GET /v1/models");
    $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
});

run_tests();

__DATA__

=== TEST 1: a name with an organisation prefix, rewritten
--- openai_client
--model qwen/qwen-max --expect-model qwen-max
--- response_body_like eval
qr'"id":"qwen-max"'



=== TEST 2: a plain name, and the SDK's default (base64) embeddings
--- openai_client
--model qwen-plus --expect-embedding-model text-embedding-v4
--- response_body_like eval
qr'"id":"qwen-plus"'
