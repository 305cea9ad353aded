# The real OpenAI SDK (npm "openai") through the gateway: models, chat,
# streams with and without usage, embeddings, and an unknown model.
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();
use File::Temp qw(tempdir);

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

# the client's stream through the gateway equals the mock's own stream for
# the model the gateway sent, but for ids and timestamps
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;

    my $args = $block->compare_stream;
    return if !defined $args || $dry_run;

    my ($sent, $upstream) = split ' ', $args;
    my $dir = tempdir(CLEANUP => 1);
    my $script = "$ENV{TEST_NGINX_REPO}/t/client/openai-compat.mjs";
    my $gw = "http://127.0.0.1:" . server_port() . "/v1";
    my $mock = "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}/compatible-mode/v1";

    my $out = `node $script --base-url $gw --api-key sk-client --model $sent --expect-model $upstream --json-out $dir/gw.json 2>&1`;
    is($? >> 8, 0, $block->name . " - through the gateway") or diag($out);

    $out = `node $script --base-url $mock --api-key sk-mock --model $upstream --mock-faults --json-out $dir/mock.json 2>&1`;
    is($? >> 8, 0, $block->name . " - straight to the mock") or diag($out);

    my @streams;
    for my $f ("$dir/gw.json", "$dir/mock.json") {
        open my $fh, '<', $f or die "$f: $!";
        my $chunks = JSON::PP->new->decode(do { local $/; <$fh> });
        delete @{$_}{qw(id created)} for @$chunks;
        push @streams, $chunks;
    }

    ok(@{ $streams[0] } > 3, $block->name . " - the stream has chunks");
    is_deeply($streams[0], $streams[1],
              $block->name . " - the same chunks, in the same order");
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
        proxy_set_header Authorization $qwen_upstream_authorization;
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



=== TEST 3: the stream through the gateway is the mock's own
--- compare_stream
qwen/qwen-max qwen-max
--- response_body_like eval
qr/"id":"qwen-max"/
