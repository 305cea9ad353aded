# The shared totals and the status handler: counters after N requests, the
# Prometheus text (checked with a real parser) and the JSON document.
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();
use IPC::Open2 qw(open2);

repeat_each(1);
no_long_string();
no_shuffle();

# the Prometheus answer must parse, and hold the block's expected samples
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;

    my $want = $block->prometheus_samples;
    return if !defined $want || $dry_run;
    return if ref $block->request && $req_idx != @{ $block->request } - 1;

    my $pid = open2(my $out, my $in, "$ENV{TEST_NGINX_REPO}/t/lib/promcheck.py");
    print $in $body;
    close $in;
    my $parsed = do { local $/; <$out> };
    waitpid $pid, 0;

    is($? >> 8, 0, $block->name . " - the Prometheus text parses")
        or diag($parsed);

    my %have = map { $_ => 1 } split /\n/, $parsed;

    for my $line (split /\n/, $want) {
        next unless $line =~ /\S/;
        ok($have{$line}, $block->name . " - sample $line")
            or diag($parsed);
    }
});

# the JSON answer must parse, and hold the block's expected values
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;

    my $want = $block->json_values;
    return if !defined $want || $dry_run;
    return if ref $block->request && $req_idx != @{ $block->request } - 1;

    my $doc = eval { JSON::PP->new->decode($body) };
    ok($doc, $block->name . " - the JSON parses") or diag($@);

    for my $line (split /\n/, $want) {
        next unless $line =~ /^(\S+)\s+(.*)$/;
        my ($path, $value) = ($1, $2);
        my $v = $doc;
        for my $step (split /\./, $path) {
            $v = $step =~ /^\d+$/ ? $v->[$step] : $v->{$step};
        }
        is("$v", $value, $block->name . " - $path");
    }
});

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
    qwen_metrics_zone qwen 1m;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode$uri;
    }

    location = /metrics {
        qwen_status prometheus;
    }

    location = /status {
        qwen_status json;
    }
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: counters after several requests, as Prometheus text
--- more_headers eval
["X-Mock-Usage: 100,20", "X-Mock-Usage: 100,20", "X-Mock-Usage: 100,20,40",
 "X-Mock-Usage: 11,4", "X-Mock-Usage: 1,1", ""]
--- request eval
["POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max"}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-max"}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-max-latest"}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-plus","stream":true}',
 "POST /v1/chat/completions\n" . '{"model":"no-such-model"}',
 "GET /metrics"]
--- error_code eval
[200, 200, 200, 200, 404, 200]
--- response_headers eval
["", "", "", "", "", "Content-Type: text/plain; version=0.0.4"]
--- response_body_like eval
[qr/qwen-max/, qr/qwen-max/, qr/qwen-max/, qr/DONE/, qr/model_not_found/,
 qr/^# HELP qwen_requests_total /]
--- prometheus_samples
qwen_requests_total{model="qwen-max",provider="alibaba-cloud",status="2xx"} 3.0
qwen_requests_total{model="qwen-plus",provider="alibaba-cloud",status="2xx"} 1.0
qwen_requests_total{model="-",provider="-",status="4xx"} 1.0
qwen_tokens_total{model="qwen-max",provider="alibaba-cloud",type="input"} 300.0
qwen_tokens_total{model="qwen-max",provider="alibaba-cloud",type="output"} 60.0
qwen_tokens_total{model="qwen-max",provider="alibaba-cloud",type="cached"} 40.0
qwen_tokens_total{model="qwen-max",provider="alibaba-cloud",type="reasoning"} 0.0
qwen_tokens_total{model="qwen-plus",provider="alibaba-cloud",type="input"} 11.0
qwen_tokens_total{model="qwen-plus",provider="alibaba-cloud",type="output"} 4.0
qwen_cost_usd_total{model="qwen-max",provider="alibaba-cloud"} 0.000864
qwen_cost_usd_total{model="qwen-plus",provider="alibaba-cloud"} 9.2e-06
qwen_incomplete_total{model="qwen-max",provider="alibaba-cloud"} 0.0
qwen_unpriced_requests_total{model="qwen-max",provider="alibaba-cloud"} 0.0
qwen_ttft_seconds_count{model="qwen-max",provider="alibaba-cloud"} 3.0
qwen_ttft_seconds_bucket{le="+Inf",model="qwen-max",provider="alibaba-cloud"} 3.0
qwen_ttft_seconds_bucket{le="30",model="qwen-max",provider="alibaba-cloud"} 3.0
qwen_ttft_seconds_bucket{le="0.1",model="qwen-max",provider="alibaba-cloud"} 3.0
qwen_ttft_seconds_bucket{le="2.5",model="qwen-max",provider="alibaba-cloud"} 3.0



=== TEST 2: the same as JSON
--- more_headers eval
["X-Mock-Usage: 1000,500,0,300", "X-Mock-Usage: 10,5", ""]
--- request eval
["POST /v1/chat/completions\n" . '{"model":"qwen-plus"}',
 "POST /v1/chat/completions\n" . '{"model":"qwen-coder"}',
 "GET /status"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/qwen-plus/, qr/qwen-coder/, qr/^\{"since":\d+,"evicted":0,"models":\[/]
--- json_values
models.0.model qwen-coder
models.0.requests.2xx 1
models.0.unpriced 1
models.0.cost_usd 0
models.1.model qwen-plus
models.1.provider alibaba-cloud
models.1.requests.2xx 1
models.1.tokens.input 1000
models.1.tokens.output 500
models.1.tokens.reasoning 300
models.1.cost_usd 0.0024
models.1.ttft.count 1



=== TEST 3: an incomplete stream is counted as such
--- more_headers eval
["X-Mock-Fault: cut:2", ""]
--- request eval
["POST /v1/chat/completions HTTP/1.0\n" . '{"model":"qwen-plus","stream":true}',
 "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/data:/, qr/qwen_incomplete_total\{model="qwen-plus",provider="alibaba-cloud"\} 1\n/]
--- no_error_log
[alert]
[crit]



=== TEST 4: the status handler answers GET and HEAD only
--- request eval
["POST /metrics\n{}", "HEAD /status"]
--- error_code eval
[405, 200]
--- response_headers eval
["Allow: GET, HEAD", "Content-Type: application/json"]
--- response_body eval
[qq{{"error":{"message":"Only GET is allowed here.","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}\n}, ""]



=== TEST 5: qwen_status needs a zone
--- http_config
    qwen_region singapore url=http://127.0.0.1:1 key=sk-mock;
--- config
    location = /metrics {
        qwen_status;
    }
--- must_die
--- error_log eval
qr/"qwen_status" needs a "qwen_metrics_zone" in the http block/



=== TEST 6: a zone too small, and an unknown format
--- http_config
    qwen_metrics_zone qwen 4k;
--- config
    location = /t { return 204; }
--- must_die
--- error_log eval
qr/zone "qwen" is too small/
