# The real OpenAI SDK (npm "openai") against the gateway's client keys
# (issue 9): its own error classes for the gateway's refusals (401
# AuthenticationError: no key, an unknown one, a disabled one; 404
# NotFoundError for a model the key may not use; 429 RateLimitError for a
# rate limit, for a stream too large for its tokens per minute, before any
# event, and for a spent budget, insufficient_quota), with the
# x-ratelimit-* and Retry-After headers intact in err.headers, and on an
# answer. The checks are in t/client/keys-client.mjs.
#
# At info level: at debug, nginx prints the request's headers, the client's
# key with them (the secret scan looks for it in every log).
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_long_string();
no_shuffle();

our %KEY = (
    ok       => 'sk-client-k152-ok-0123456789',
    rpm      => 'sk-client-k152-rpm-0123456789',
    tpm      => 'sk-client-k152-tpm-0123456789',
    budget   => 'sk-client-k152-budget-0123456789',
    models   => 'sk-client-k152-models-0123456789',
    disabled => 'sk-client-k152-disabled-0123456789',
    unknown  => 'sk-client-k152-unknown-0123456789',
);

# runs the client once the block's nginx is up
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run || !defined $block->keys_client;

    # the rpm check wants its three requests in one clock minute
    my $left = 60 - time % 60;
    sleep($left + 1) if $left < 10;

    my $script = "$ENV{TEST_NGINX_REPO}/t/client/keys-client.mjs";
    my $base = "http://127.0.0.1:" . server_port() . "/v1";
    my $args = join ' ', map { "--client-key $_=$KEY{$_}" } sort keys %KEY;
    my $out = `node $script --base-url $base $args 2>&1`;
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
    my $n = () = $out =~ /^(?:not )?ok - /mg;
    cmp_ok($n, '>=', 40, $block->name . " - the client made all its checks");
});

run_tests();

__DATA__

=== TEST 1: the openai client's error classes for the gateway's refusals, with their headers
--- http_config
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_region sg url=http://dashscope_mock path=/compatible-mode key=sk-mock;
    qwen_model k-chat input=1 output=2 deploy=sg:k-chat;
    qwen_model k-other input=1 output=2 deploy=sg:k-other;
    qwen_metrics_zone k152 1m;
    qwen_keys_file ../html/keys.json;
--- user_files
>>> keys.json
{"keys": [
  {"id": "ok", "key": "sk-client-k152-ok-0123456789", "limits": {"rpm": 100, "tpm": 1000000}},
  {"id": "rpm", "key": "sk-client-k152-rpm-0123456789", "limits": {"rpm": 2}},
  {"id": "tpm", "key": "sk-client-k152-tpm-0123456789", "limits": {"tpm": 1000}},
  {"id": "budget", "key": "sk-client-k152-budget-0123456789",
   "budget": {"usd": 0.000001, "period": "day"}},
  {"id": "models", "key": "sk-client-k152-models-0123456789", "models": ["k-chat"]},
  {"id": "disabled", "key": "sk-client-k152-disabled-0123456789", "disabled": true}
]}
--- config
    location /v1/ {
        qwen_gateway on;
        qwen_keys on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_buffering off;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }

    location = /ready {
        return 200 "ready\n";
    }
--- log_level: info
--- keys_client: on
--- request
GET /ready
--- response_body
ready
--- timeout: 30
--- no_error_log
[error]
[alert]
[crit]
[emerg]
