# The real OpenAI SDK (npm "openai") through the gateway's failover (issue
# 8): a clean answer, plain and streamed, after a failed deployment; a 429
# waited out by the gateway; clean APIErrors when the chain is exhausted
# (the last upstream answer, 502 upstream_unavailable) or every deployment
# is out (503 all_deployments_cooling_down); and an APIError raised by the error event
# of a stream cut after its header. The checks are in
# t/client/failover-client.mjs.
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_long_string();
no_shuffle();

# runs the client once the block's nginx is up
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run || !defined $block->failover_client;

    my $script = "$ENV{TEST_NGINX_REPO}/t/client/failover-client.mjs";
    my $base = "http://127.0.0.1:" . server_port() . "/v1";
    my $out = `node $script --base-url $base --api-key sk-client 2>&1`;
    my $status = $? >> 8;

    # one TAP test per check of the client's, so that each shows
    for my $line (split /\n/, $out) {
        next unless $line =~ /^(not )?ok - (.*)$/;
        ok(!$1, $block->name . " - $2");
    }
    like($out, qr/^\d+ passed, 0 failed$/m,
         $block->name . " - the openai client's checks passed")
        or diag($out);
    is($status, 0, $block->name . " - the openai client exited 0");
});

run_tests();

__DATA__

=== TEST 1: the openai client through failovers
--- http_config
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_region sg url=http://dashscope_mock path=/compatible-mode key=sk-mock;
    qwen_region us url=http://dashscope_mock path=/compatible-mode key=sk-mock-virginia;
    qwen_region dead url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_1 path=/compatible-mode key=sk-mock;
    qwen_region dead2 url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_2 path=/compatible-mode key=sk-mock;

    qwen_model fo-a input=1 output=2 deploy=sg:a-sg deploy=us:a-us;
    qwen_model fo-b input=1 output=2 deploy=sg:b-sg deploy=us:b-us;
    qwen_model fo-c input=1 output=2 deploy=sg:c-sg deploy=us:c-us;
    qwen_model fo-e input=1 output=2 deploy=sg:e-sg deploy=us:e-us;
    qwen_model fo-f input=1 output=2 deploy=sg:f-sg deploy=us:f-us;
    qwen_model fo-k input=1 output=2 deploy=sg:k-sg deploy=us:k-us;
    qwen_model fo-gone input=1 output=2 deploy=dead:x-dead deploy=dead2:y-dead;
    qwen_metrics_zone fo143 1m;
--- config
    location /v1/ {
        qwen_gateway on;
        qwen_failover on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header X-Mock-Attempt $qwen_attempt;
        proxy_buffering off;
        add_header X-Qwen-Deployment $qwen_deployment always;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }

    location = /ready {
        return 200 "ready\n";
    }
--- failover_client: on
--- request
GET /ready
--- response_body
ready
--- timeout: 30
--- no_error_log
[alert]
[crit]
[emerg]
