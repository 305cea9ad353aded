# Failover edges: the rules of the review fixes (d6b140d), each proved by a
# block that fails when the rule breaks.
#
#  1. a client header the gateway drops, with a provider's header= and a
#     failover: no crash, the provider's header only at its provider, the
#     client's api-key nowhere (TESTS 1-3)
#  2. a model without a chain goes to the region-level deployment named
#     after the region; a 404 model_not_found, a 429 or a 503 there does
#     not take the region out, an error (a dead port) does (TESTS 4-8)
#  3. a location without failover is never refused nor delayed by a
#     deployment a failover location cooled, and cools nothing itself
#     (TESTS 9-11, 33; a transient cooldown, TEST 9, is one a failover
#     location would probe anyway: TESTS 10 and 11 are the ones a location
#     consulting the health fails)
#  4. a trigger not in qwen_failover_on goes to the client and cools
#     nothing (TESTS 12-15)
#  5. qwen_default_region puts its deployments first in a written chain,
#     and the error_page recipe into a named location (TESTS 16-18)
#  6. a 429 retry on the same deployment is a move from=to (TESTS 19-20)
#  7. a stream cut after its header counts once, as "cut" (TESTS 21-23)
#  8. nginx -t fails for a deployment twice in a chain (TESTS 24-26)
#  9. a region without a key is passed over in a chain (TESTS 27-29)
# 10. an upstream error answer over 64 KB reaches the client without a
#     wrong Content-Length (TESTS 30-32). The mock's error bodies are a few
#     hundred bytes at most (their only variable part is the model id, and
#     the gateway takes ids of up to 256 bytes), so the upstream of these
#     blocks is a server of the same nginx that answers 503 with a file.
#
# Who answered is proved as in t/140-failover.t: the mock's reply names the
# upstream model, X-Qwen-Deployment gives $qwen_deployment, and the mock's
# record of the scenario (X-Mock-Scenario, one id per request) lists every
# attempt it got, with its number, model, key (first 16 hex of its sha256)
# and header, body and headers. The access log, written into error.log,
# gives $qwen_attempts, $qwen_failovers and $request_time. Every block has
# its own qwen_metrics_zone, read through /metrics (the Python client's
# parser, t/lib/promcheck.py).
#
# repeat_each(1): a failed deployment cools down, by design, so a second
# run of a block in the same nginx would take another path.
use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use JSON::PP ();
use IPC::Open2 ();
use Time::HiRes ();

repeat_each(1);
no_long_string();
no_shuffle();

# the regions' keys and the header they go in (the mock's record names the
# header and the first 16 hex of the key's sha256, never the key)
my %KEY = (
    sg   => ['authorization', 'sk-mock'],
    us   => ['authorization', 'sk-mock-virginia'],
    cn   => ['api-key',       'sk-mock-beijing'],
);

# the chat body every block sends: 3.5 KB with JSON escapes
sub chat_body {
    my ($model, $stream) = @_;
    my $text = join ' ', map { qq{line $_: caf\\u00e9 \\"quoted\\" tab\\t} } 1 .. 100;
    return qq({"model":"$model","messages":[{"role":"system","content":"be brief"},)
         . qq({"role":"user","content":"$text"}],"temperature":0.5)
         . ($stream ? ',"stream":true,"stream_options":{"include_usage":true}' : '')
         . '}';
}

sub chat_request { "POST /v1/chat/completions\n" . chat_body(@_) }
sub chat_request_at { my $path = shift; "POST $path\n" . chat_body(@_) }
sub stream_request_10 { "POST /v1/chat/completions HTTP/1.0\n" . chat_body($_[0], 1) }

# one scenario id per request of a block, also used to find its access log line
sub sid {
    my ($block, $idx) = @_;
    my ($n) = $block->name =~ /\bTEST (\d+):/;
    return "fo144-" . ($n // 'x') . "-" . ($idx // 0) . "-$$";
}

# 25 headers more than nginx's first part of the header list holds (20)
sub many_headers { join "\n", map { "X-Extra-$_: $_" } 1 .. 25 }

# a JSON error of exactly $len bytes, its code first
sub big_error {
    my ($len) = @_;
    my $head = '{"error":{"code":"ServiceUnavailable","type":"service_unavailable","message":"';
    my $tail = '"},"request_id":"fo144"}';
    return $head . ('x' x ($len - length($head) - length($tail))) . $tail;
}

# ----------------------------------------------------------------- config --

my $COMMON = <<'_EOC_';
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_region sg url=http://dashscope_mock path=/compatible-mode key=sk-mock header=X-Title:sg-app;
    qwen_region us url=http://dashscope_mock path=/compatible-mode key=sk-mock-virginia;
    qwen_region cn url=http://dashscope_mock path=/compatible-mode key=sk-mock-beijing auth_header=api-key provider=other-cloud;
    qwen_region dead url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_1 path=/compatible-mode key=sk-mock;

    map $http_x_test_region $fo144_region {
        default sg;
        dead    dead;
    }

    log_format fo 'qwen-fo status=$status dep=$qwen_deployment attempts=$qwen_attempts failovers="$qwen_failovers" rt=$request_time id=$http_x_mock_scenario';
_EOC_

my $MODELS = <<'_EOC_';
    qwen_model fo-chat input=1 output=2 deploy=sg:sg-chat deploy=us:us-chat deploy=cn:cn-chat;
    qwen_model fo-dead input=1 output=2 deploy=dead:xx-chat deploy=us:us-chat;
    qwen_model plain-a input=1 output=2;
    qwen_model plain-b input=1 output=2;
_EOC_

# the gateway location; a block's `--- location` adds directives, and
# replaces a default of the same name (but proxy_set_header)
my @LOCATION = (
    'qwen_gateway on;',
    'qwen_failover on;',
    'qwen_retry_wait 200ms 400ms;',
    'proxy_http_version 1.1;',
    'proxy_set_header Connection "";',
    'proxy_set_header Authorization $qwen_upstream_authorization;',
    'proxy_set_header api-key $qwen_upstream_api_key;',
    'proxy_set_header X-Mock-Attempt $qwen_attempt;',
    'proxy_buffering off;',
    'add_header X-Qwen-Deployment $qwen_deployment always;',
);

sub gateway_location {
    my ($path, $extra, $target) = @_;
    $extra //= '';
    $target //= '$qwen_upstream$qwen_upstream_path$uri';
    my @lines;
    for my $d (@LOCATION) {
        my ($name) = $d =~ /^(\S+)/;
        next if $name ne 'proxy_set_header' && $extra =~ /^\s*\Q$name\E\s/m;
        push @lines, $d;
    }
    push @lines, map { s/^\s+//r } grep { /\S/ } split /\n/, $extra;
    return "    location $path {\n"
        . join('', map { "        $_\n" } @lines)
        . "        proxy_pass $target;\n    }\n";
}

sub server_top { "    access_log logs/error.log fo;\n\n" }

sub status_locations {
    return "\n    location = /metrics { qwen_status prometheus; }\n";
}

sub gateway_config {
    my ($extra) = @_;
    return server_top() . gateway_location('/v1/', $extra) . status_locations();
}

# ---------------------------------------------------- the preprocessor --

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('timeout', 5) unless defined $block->timeout;

    # (a zone of its own per block: under TEST_NGINX_USE_HUP a reload
    # keeps a zone, and the health of the previous block with it)
    my ($n) = $block->name =~ /\bTEST (\d+):/;
    $block->set_value('http_config', $COMMON . ($block->catalogue // $MODELS)
                                     . "    qwen_metrics_zone fo144_" . ($n // 0) . " 1m;\n")
        unless defined $block->http_config;
    $block->set_value('config', gateway_config(scalar $block->location))
        unless defined $block->config;

    if (defined $block->must_die) {
        $block->set_value('request', 'GET /metrics') unless defined $block->request;
        return;
    }

    $block->set_value('no_error_log',
                      ['[error]', '[alert]', '[crit]', '[emerg]', 'exited on signal'])
        unless defined $block->no_error_log;

    # the scenario id goes first in each request's headers
    my $reqs = $block->request;
    my $mh = $block->more_headers;
    if (ref $reqs eq 'ARRAY') {
        my @mh = map {
            my $h = ref $mh eq 'ARRAY' ? $mh->[$_] : $mh;
            "X-Mock-Scenario: " . sid($block, $_)
                . (defined $h && length $h ? "\n$h" : '');
        } 0 .. $#$reqs;
        $block->set_value('more_headers', \@mh);
    } else {
        $block->set_value('more_headers', "X-Mock-Scenario: " . sid($block, 0)
            . (defined $mh && length $mh ? "\n$mh" : ''));
    }
});

# ------------------------------------------------------------ the checks --

my $http = HTTP::Tiny->new(timeout => 3);
my $json = JSON::PP->new->canonical;

sub mock_record {
    my ($id) = @_;
    my $res = $http->get("http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}/__mock/scenario/$id");
    return {} unless $res->{success};
    return eval { $json->decode($res->{content}) } || {};
}

sub header_of {
    my ($rec, $name) = @_;
    my $h = $rec->{headers} || {};
    for my $k (keys %$h) {
        return $h->{$k} if lc $k eq lc $name;
    }
    return undef;
}

# the attempts the mock got for one request, against [attempt, region/model]
# (attempt undef: not checked); every attempt carries its region's key and
# nothing else, the client's body but for the model, sg's header= at sg
# only, none of the headers named in @$absent, and never the credential
# $client_key
sub check_record {
    my ($name, $id, $want, $body, $absent, $client_key) = @_;
    my $rec = mock_record($id);
    my @got = @{ $rec->{requests} || [] };
    is(scalar @got, scalar @$want,
       "$name - the mock got " . scalar(@$want) . " request(s)")
        or diag($json->encode($rec));

    my ($asked) = $body =~ /"model":"([^"]*)"/;
    for my $i (0 .. $#$want) {
        my ($attempt, $dep) = @{ $want->[$i] };
        my $g = $got[$i] || {};
        my ($region, $model) = split m{/}, $dep, 2;
        my ($header, $key) = @{ $KEY{$region} };
        my $n = "$name - request " . ($i + 1);

        is($g->{attempt}, $attempt, "$n is attempt $attempt") if defined $attempt;
        is($g->{model}, $model, "$n went to $dep (model $model)");
        is(lc($g->{credential_header} // ''), $header, "$n has its key in $header");
        is(join(',', @{ $g->{credential_headers} || [] }), $header,
           "$n has no other credential header");
        is($g->{credential_sha256}, substr(sha256_hex($key), 0, 16),
           "$n has the key of region $region");
        if (defined $client_key) {
            isnt($g->{credential_sha256}, substr(sha256_hex($client_key), 0, 16),
                 "$n has not the client's credential");
        }

        (my $sent = $body) =~ s/"model":"\Q$asked\E"/"model":"$model"/;
        my $sha = lc($g->{body_sha256} // '');
        ok(length $sha >= 16 && index(sha256_hex($sent), $sha) == 0,
           "$n has the client's body, but for the model")
            or diag("body_sha256 $sha, expected " . sha256_hex($sent));

        my $title = header_of($g, 'x-title');
        if ($region eq 'sg') {
            is($title, 'sg-app', "$n has sg's own header=");
        } else {
            ok(!defined $title, "$n has not sg's header=")
                or diag("X-Title: $title");
        }

        for my $h (@{ $absent || [] }) {
            my $v = header_of($g, $h);
            ok(!defined $v, "$n has no $h header") or diag("$h: $v");
        }
    }
}

# the request's access log line (written into error.log), found by its id
sub access_line {
    my ($id) = @_;
    my $deadline = Time::HiRes::time() + 2;
    while (1) {
        if (open my $fh, '<', $Test::Nginx::Util::ErrLogFile) {
            for (<$fh>) {
                return $_ if /^qwen-fo .* id=\Q$id\E$/;
            }
        }
        return undef if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
}

sub per_request {
    my ($block, $v, $idx) = @_;
    return ref $block->request eq 'ARRAY' && ref $v eq 'ARRAY' ? $v->[$idx] : $v;
}

add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run;

    my $multi = ref $block->request eq 'ARRAY';
    my $id = sid($block, $req_idx);
    my $req = $multi ? $block->request->[$req_idx] : $block->request;
    my ($reqbody) = $req =~ /\n(.*)\z/s;

    my $want = $block->mock_record;
    $want = $want->[$req_idx] if $multi && defined $want;
    my @absent = grep { /\S/ } split /\n/, ($block->absent_headers // '');
    check_record($block->name, $id, $want, $reqbody // '', \@absent,
                 scalar $block->client_key)
        if defined $want;

    my $line = per_request($block, scalar $block->access_line, $req_idx);
    if (defined $line) {
        my $got = access_line($id);
        like($got // '(no access log line)', $line,
             $block->name . " - the access log line of request " . ($req_idx + 1));
    }

    my $len = per_request($block, scalar $block->body_length, $req_idx);
    if (defined $len) {
        is(length($body // ''), $len,
           $block->name . " - the answer to request " . ($req_idx + 1) . " has $len bytes");
    }
});

# the metrics (last request of a block): the Prometheus text parses (the
# Python client's parser, as t/110-metrics.t) and holds the samples, and
# not those of --- prometheus_absent (any value)
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run;
    return if ref $block->request && $req_idx != @{ $block->request } - 1;

    my $want = $block->prometheus_samples;
    my $absent = $block->prometheus_absent;
    return unless defined $want || defined $absent;

    my $pid = IPC::Open2::open2(my $out, my $in,
                                "$ENV{TEST_NGINX_REPO}/t/lib/promcheck.py");
    print $in $body;
    close $in;
    my $parsed = do { local $/; <$out> };
    waitpid $pid, 0;
    is($? >> 8, 0, $block->name . " - the Prometheus text parses")
        or diag($parsed);
    my %have = map { $_ => 1 } split /\n/, $parsed;
    for my $line (split /\n/, $want // '') {
        next unless $line =~ /\S/;
        ok($have{$line}, $block->name . " - sample $line") or diag($parsed);
    }
    for my $sample (split /\n/, $absent // '') {
        next unless $sample =~ /\S/;
        my @found = grep { index($_, "$sample ") == 0 } split /\n/, $parsed;
        ok(!@found, $block->name . " - no sample $sample") or diag(join "\n", @found);
    }
});

run_tests();

__DATA__

=== TEST 1: a dropped client header, sg's header= and a failover: no crash, X-Title at sg only, no client key
X-DashScope-Foo makes the gateway shape the client's header list; sg's
X-Title goes in after it, and out again before the attempt at us.
--- more_headers
X-DashScope-Foo: 1
api-key: client-value
X-Mock-Plan: 1=status:503
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: us/us-chat
--- response_body_like eval
qr/"content":"Mock reply from us-chat\."/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat']]
--- absent_headers
x-dashscope-foo
--- client_key: client-value
--- access_line eval
qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:http_503" }



=== TEST 2: the same with a header list of two parts (25 more client headers)
--- more_headers eval
main::many_headers() . "\nX-DashScope-Foo: 1\napi-key: client-value\nX-Mock-Plan: 1=status:503"
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: us/us-chat
--- response_body_like eval
qr/"content":"Mock reply from us-chat\."/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat']]
--- absent_headers
x-dashscope-foo
--- client_key: client-value
--- access_line eval
qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:http_503" }



=== TEST 3: the same over three attempts (sg, us, then cn with its key in api-key), and the next request
--- more_headers eval
["X-DashScope-Foo: 1\napi-key: client-value\nX-Mock-Plan: 1-2=status:503",
 "X-DashScope-Foo: 1\napi-key: client-value"]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat')]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Qwen-Deployment: cn/cn-chat", "X-Qwen-Deployment: cn/cn-chat"]
--- response_body_like eval
[qr/"content":"Mock reply from cn-chat\."/, qr/"content":"Mock reply from cn-chat\."/]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat'], [3, 'cn/cn-chat']], [[1, 'cn/cn-chat']]]
--- absent_headers
x-dashscope-foo
--- client_key: client-value
--- access_line eval
[qr{^qwen-fo status=200 dep=cn/cn-chat attempts=3 failovers="sg/sg-chat:http_503 us/us-chat:http_503" },
 qr{^qwen-fo status=200 dep=cn/cn-chat attempts=1 failovers="-?" }]



=== TEST 4: a model without a chain: a 404 model_not_found does not take the region-level deployment out
The second request, for another model (one outside the catalogue,
passed), goes to sg at once; the region is up in the metrics.
--- location
qwen_unknown_model pass;
--- more_headers eval
["X-Mock-Plan: *=status:404", "", ""]
--- request eval
[main::chat_request('plain-a'), main::chat_request('mystery-144'), "GET /metrics"]
--- error_code eval
[404, 200, 200]
--- response_headers eval
["X-Qwen-Deployment: sg", "X-Qwen-Deployment: sg", ""]
--- response_body_like eval
[qr/"code":"model_not_found"/, qr/"content":"Mock reply from mystery-144\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/plain-a']], [[1, 'sg/mystery-144']], undef]
--- access_line eval
[qr{^qwen-fo status=404 dep=sg attempts=1 failovers="(?:sg:model_not_found)?" },
 qr{^qwen-fo status=200 dep=sg attempts=1 failovers="-?" rt=0\.\d{3} },
 undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg",outcome="model_not_found"} 1.0
qwen_attempts_total{deployment="sg",outcome="ok"} 1.0
qwen_deployment_up{deployment="sg"} 1.0
qwen_deployment_cooldown_seconds{deployment="sg"} 0.0



=== TEST 5: a model without a chain: a 429 does not take the region-level deployment out
The retry waits 1 s (qwen_retry_after_max) and gets a 429 again, which goes
to the client; had the region been cooled for the 30 s of Retry-After, the
next request would be refused (503) rather than answered at once.
--- location
qwen_retry_after_max 1s;
--- more_headers eval
["X-Mock-Plan: *=status:429\nX-Mock-Retry-After: 30", "", ""]
--- request eval
[main::chat_request('plain-a'), main::chat_request('plain-b'), "GET /metrics"]
--- error_code eval
[429, 200, 200]
--- response_headers eval
["X-Qwen-Deployment: sg", "X-Qwen-Deployment: sg", ""]
--- response_body_like eval
[qr/"code":"limit_requests"/, qr/"content":"Mock reply from plain-b\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/plain-a'], [2, 'sg/plain-a']], [[1, 'sg/plain-b']], undef]
--- access_line eval
[qr{^qwen-fo status=429 dep=sg attempts=2 },
 qr{^qwen-fo status=200 dep=sg attempts=1 failovers="-?" rt=0\.\d{3} },
 undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg",outcome="http_429"} 2.0
qwen_deployment_up{deployment="sg"} 1.0
qwen_deployment_cooldown_seconds{deployment="sg"} 0.0



=== TEST 6: a model without a chain: a 503 does not take the region-level deployment out
The metrics are read right after the 503 (the next success would put sg
back up anyway), then another model goes to sg at once.
--- more_headers eval
["X-Mock-Plan: *=status:503", "", ""]
--- request eval
[main::chat_request('plain-a'), "GET /metrics", main::chat_request('plain-b')]
--- error_code eval
[503, 200, 200]
--- response_headers eval
["X-Qwen-Deployment: sg", "", "X-Qwen-Deployment: sg"]
--- response_body_like eval
[qr/"code":"ServiceUnavailable"/,
 qr/^qwen_deployment_up\{deployment="sg"\} 1\n(?s:.*)^qwen_deployment_cooldown_seconds\{deployment="sg"\} 0\.000$/m,
 qr/"content":"Mock reply from plain-b\."/]
--- mock_record eval
[[[1, 'sg/plain-a']], undef, [[1, 'sg/plain-b']]]
--- access_line eval
[qr{^qwen-fo status=503 dep=sg attempts=1 },
 undef,
 qr{^qwen-fo status=200 dep=sg attempts=1 failovers="-?" rt=0\.\d{3} }]



=== TEST 7: a model without a chain: the metrics name the deployment after the region, and a 503 there cools nothing, whatever the location's cooldown
--- location
qwen_cooldown transient=60s;
--- more_headers eval
["X-Mock-Plan: *=status:503", ""]
--- request eval
[main::chat_request('plain-a'), "GET /metrics"]
--- error_code eval
[503, 200]
--- response_body_like eval
[qr/"code":"ServiceUnavailable"/, qr/^# /]
--- mock_record eval
[[[1, 'sg/plain-a']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg",outcome="http_503"} 1.0
qwen_deployment_up{deployment="sg"} 1.0
qwen_deployment_cooldown_seconds{deployment="sg"} 0.0
--- prometheus_absent
qwen_attempts_total{deployment="sg/plain-a",outcome="http_503"}



=== TEST 8: a model without a chain: an error (a dead port) takes the region-level deployment out
--- location
qwen_default_region $fo144_region;
--- more_headers eval
["X-Test-Region: dead", ""]
--- request eval
[main::chat_request('plain-a'), "GET /metrics"]
--- error_code eval
[502, 200]
--- response_headers eval
["X-Qwen-Deployment: dead", ""]
--- response_body_like eval
[qr/\A\{"error":\{"message":"[^"]+","type":"[^"]+","param":null,"code":"upstream_unavailable"\}\}\n?\z/, qr/^# /]
--- mock_record eval
[[], undef]
--- access_line eval
[qr{^qwen-fo status=502 dep=dead attempts=1 }, undef]
--- prometheus_samples
qwen_attempts_total{deployment="dead",outcome="error"} 1.0
qwen_deployment_up{deployment="dead"} 0.0
qwen_deployment_up{deployment="sg"} 1.0
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 9: a location without failover goes to a deployment a failover location cooled (503), at once
--- config eval
main::server_top()
. main::gateway_location('/fo/', '', '$qwen_upstream$qwen_upstream_path/v1/chat/completions')
. main::gateway_location('/plain/', 'qwen_failover off;', '$qwen_upstream$qwen_upstream_path/v1/chat/completions')
. main::status_locations()
--- more_headers eval
["X-Mock-Plan: 1=status:503", "", "", ""]
--- request eval
[main::chat_request_at('/fo/v1/chat/completions', 'fo-chat'),
 "GET /metrics",
 main::chat_request_at('/plain/v1/chat/completions', 'fo-chat'),
 "GET /metrics"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-Qwen-Deployment: us/us-chat", "", "X-Qwen-Deployment: sg/sg-chat", ""]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/,
 qr/^qwen_deployment_up\{deployment="sg\/sg-chat"\} 0$/m,
 qr/"content":"Mock reply from sg-chat\."/,
 qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat']], undef, [[undef, 'sg/sg-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:http_503" },
 undef,
 qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" rt=0\.\d{3} },
 undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_503"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"} 1.0
qwen_attempts_total{deployment="us/us-chat",outcome="ok"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 1.0




=== TEST 10: a location without failover goes to a deployment a failover location took out for its key (401)
--- config eval
main::server_top()
. main::gateway_location('/fo/', '', '$qwen_upstream$qwen_upstream_path/v1/chat/completions')
. main::gateway_location('/plain/', 'qwen_failover off;', '$qwen_upstream$qwen_upstream_path/v1/chat/completions')
. main::status_locations()
--- more_headers eval
["X-Mock-Plan: 1=status:401", "", "", ""]
--- request eval
[main::chat_request_at('/fo/v1/chat/completions', 'fo-chat'),
 "GET /metrics",
 main::chat_request_at('/plain/v1/chat/completions', 'fo-chat'),
 "GET /metrics"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-Qwen-Deployment: us/us-chat", "", "X-Qwen-Deployment: sg/sg-chat", ""]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/,
 qr/^qwen_deployment_up\{deployment="sg\/sg-chat"\} 0$/m,
 qr/"content":"Mock reply from sg-chat\."/,
 qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat']], undef, [[undef, 'sg/sg-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:auth" },
 undef,
 qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" rt=0\.\d{3} },
 undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="auth"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"} 1.0
qwen_attempts_total{deployment="us/us-chat",outcome="ok"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 1.0
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 11: a location without failover does not wait for a deployment a failover location cooled after 429s
/fo/ retries after 1 s (its qwen_retry_after_max), gets a second 429 and
cools sg for its Retry-After (3 s) before moving to us; /plain/ (whose
qwen_retry_after_max, 10 s, would allow a wait) goes to sg at once.
--- config eval
main::server_top()
. main::gateway_location('/fo/', 'qwen_retry_after_max 1s;', '$qwen_upstream$qwen_upstream_path/v1/chat/completions')
. main::gateway_location('/plain/', 'qwen_failover off;', '$qwen_upstream$qwen_upstream_path/v1/chat/completions')
. main::status_locations()
--- more_headers eval
["X-Mock-Plan: 1-2=status:429\nX-Mock-Retry-After: 3", ""]
--- request eval
[main::chat_request_at('/fo/v1/chat/completions', 'fo-chat'),
 main::chat_request_at('/plain/v1/chat/completions', 'fo-chat')]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Qwen-Deployment: us/us-chat", "X-Qwen-Deployment: sg/sg-chat"]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/, qr/"content":"Mock reply from sg-chat\."/]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'sg/sg-chat'], [3, 'us/us-chat']], [[undef, 'sg/sg-chat']]]
--- access_line eval
[qr{^qwen-fo status=200 dep=us/us-chat attempts=3 failovers="sg/sg-chat:http_429 sg/sg-chat:http_429" },
 qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" rt=0\.\d{3} }]



=== TEST 12: a 401 whose trigger is not listed goes to the client and takes nothing out
--- location
qwen_failover_on http_503;
--- more_headers eval
["X-Mock-Plan: 1=status:401", "", ""]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[401, 200, 200]
--- response_headers eval
["X-Qwen-Deployment: sg/sg-chat", "X-Qwen-Deployment: sg/sg-chat", ""]
--- response_body_like eval
[qr/"code":"invalid_api_key"/, qr/"content":"Mock reply from sg-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat']], [[1, 'sg/sg-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=401 dep=sg/sg-chat attempts=1 failovers="-?" },
 qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" },
 undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="auth"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 1.0
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 13: a 429 whose trigger is not listed: no retry, no wait, and the next request goes there at once
--- location
qwen_failover_on http_503;
--- more_headers eval
["X-Mock-Plan: 1=status:429\nX-Mock-Retry-After: 30", "", ""]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[429, 200, 200]
--- response_headers eval
["X-Qwen-Deployment: sg/sg-chat", "X-Qwen-Deployment: sg/sg-chat", ""]
--- response_body_like eval
[qr/"code":"limit_requests"/, qr/"content":"Mock reply from sg-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat']], [[1, 'sg/sg-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=429 dep=sg/sg-chat attempts=1 failovers="-?" rt=0\.\d{3} },
 qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" rt=0\.\d{3} },
 undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_429"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 1.0
qwen_deployment_cooldown_seconds{deployment="sg/sg-chat"} 0.0



=== TEST 14: a 402 (arrears) whose trigger is not listed goes to the client and takes nothing out
--- location
qwen_failover_on http_503;
--- more_headers eval
["X-Mock-Plan: 1=status:402", "", ""]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[402, 200, 200]
--- response_body_like eval
[qr/"code":"payment_required"/, qr/"content":"Mock reply from sg-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat']], [[1, 'sg/sg-chat']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="arrears"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 1.0



=== TEST 15: qwen_failover_on off: a 503 goes to the client and takes nothing out
--- location
qwen_failover_on off;
--- more_headers eval
["X-Mock-Plan: 1=status:503", "", ""]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[503, 200, 200]
--- response_body_like eval
[qr/"code":"ServiceUnavailable"/, qr/"content":"Mock reply from sg-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat']], [[1, 'sg/sg-chat']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_503"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 1.0



=== TEST 16: qwen_default_region us puts us first in a written chain (sg, us, cn): us, then sg, then cn
--- location
qwen_default_region us;
--- more_headers eval
["", "X-Mock-Plan: 1-2=status:503\nX-DashScope-Foo: 1"]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat')]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Qwen-Deployment: us/us-chat", "X-Qwen-Deployment: cn/cn-chat"]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/, qr/"content":"Mock reply from cn-chat\."/]
--- mock_record eval
[[[1, 'us/us-chat']], [[1, 'us/us-chat'], [2, 'sg/sg-chat'], [3, 'cn/cn-chat']]]
--- absent_headers
x-dashscope-foo
--- access_line eval
[qr{^qwen-fo status=200 dep=us/us-chat attempts=1 failovers="-?" },
 qr{^qwen-fo status=200 dep=cn/cn-chat attempts=3 failovers="us/us-chat:http_503 sg/sg-chat:http_503" }]



=== TEST 17: qwen_default_region without failover: the one deployment tried is the region's
--- location
qwen_failover off;
qwen_default_region cn;
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: cn/cn-chat
--- response_body_like eval
qr/"content":"Mock reply from cn-chat\."/
--- mock_record eval
[[undef, 'cn/cn-chat']]



=== TEST 18: the error_page recipe: nginx's own 502 in a location without failover, then a named location with qwen_default_region us
fo-dead's chain is dead, us: the first location tries dead (its first
deployment) and gets nginx's 502; @other (no failover either) builds the
chain again with us first, and answers from us with us's key.
--- config eval
main::server_top()
. main::gateway_location('/v1/', "qwen_failover off;\nerror_page 502 503 = \@other;")
. main::gateway_location('@other', "qwen_failover off;\nqwen_default_region us;")
. main::status_locations()
--- request eval
main::chat_request('fo-dead')
--- response_headers
X-Qwen-Deployment: us/us-chat
--- response_body_like eval
qr/"content":"Mock reply from us-chat\."/
--- mock_record eval
[[undef, 'us/us-chat']]
--- access_line eval
qr{^qwen-fo status=200 dep=us/us-chat attempts=2 }
--- error_log
connect() failed (111: Connection refused)
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 19: a 429 retried on the same deployment is a move from=to, and in $qwen_failovers
--- more_headers eval
["X-Mock-Plan: 1=status:429\nX-Mock-Retry-After: date:-5", ""]
--- request eval
[main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Qwen-Deployment: sg/sg-chat", ""]
--- response_body_like eval
[qr/"content":"Mock reply from sg-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'sg/sg-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=200 dep=sg/sg-chat attempts=2 failovers="sg/sg-chat:http_429" }, undef]
--- prometheus_samples
qwen_failovers_total{from="sg/sg-chat",reason="http_429",to="sg/sg-chat"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_429"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"} 1.0
--- prometheus_absent
qwen_failovers_total{from="sg/sg-chat",reason="http_429",to="us/us-chat"}



=== TEST 20: two 429s: the retry (from=to) and the move to us, both counted
--- more_headers eval
["X-Mock-Plan: 1-2=status:429\nX-Mock-Retry-After: date:-5", ""]
--- request eval
[main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Qwen-Deployment: us/us-chat", ""]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'sg/sg-chat'], [3, 'us/us-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=200 dep=us/us-chat attempts=3 failovers="sg/sg-chat:http_429 sg/sg-chat:http_429" }, undef]
--- prometheus_samples
qwen_failovers_total{from="sg/sg-chat",reason="http_429",to="sg/sg-chat"} 1.0
qwen_failovers_total{from="sg/sg-chat",reason="http_429",to="us/us-chat"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_429"} 2.0
qwen_attempts_total{deployment="us/us-chat",outcome="ok"} 1.0



=== TEST 21: a stream cut after its header counts once, as "cut", not as "ok"
--- more_headers eval
["X-Mock-Plan: 1=cut:2", ""]
--- request eval
[main::stream_request_10('fo-chat'), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/\A(data: \{[^\n]*\n\n){2}data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\n\z/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" }, undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="cut"} 1.0
--- prometheus_absent
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"}
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 22: a stream cut on the attempt that answered after a failover: each attempt counted once
--- more_headers eval
["X-Mock-Plan: 1=status:503;2=cut:2", ""]
--- request eval
[main::stream_request_10('fo-chat'), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Qwen-Deployment: us/us-chat", ""]
--- response_body_like eval
[qr/\A(data: \{[^\n]*\n\n){2}data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\n\z/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_503"} 1.0
qwen_attempts_total{deployment="us/us-chat",outcome="cut"} 1.0
--- prometheus_absent
qwen_attempts_total{deployment="us/us-chat",outcome="ok"}
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"}
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 23: whole answers count once each, as "ok", streams and not
--- request eval
[main::chat_request('fo-chat'), main::stream_request_10('fo-chat'), "GET /metrics"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/"content":"Mock reply from sg-chat\."/, qr/data: \[DONE\]\n\n\z/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat']], [[1, 'sg/sg-chat']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"} 2.0
--- prometheus_absent
qwen_attempts_total{deployment="sg/sg-chat",outcome="cut"}



=== TEST 24: nginx -t: a chain that names a deployment twice, once under the model's own id
--- catalogue
    qwen_model fo-dup input=1 output=2 deploy=sg deploy=us deploy=sg:fo-dup;
--- must_die
--- error_log eval
qr/\[emerg\] .*model "fo-dup": deployment "sg\/fo-dup" is in its chain twice/



=== TEST 25: nginx -t: the same in the JSON catalogue
--- catalogue
    qwen_models_file ../html/fo144-dup.json;
--- user_files
>>> fo144-dup.json
{"models": [
  {"id": "fo-dup-json", "pricing": {"input": 1, "output": 2},
   "deployments": [
     {"region": "sg"},
     {"region": "us", "model": "us-chat"},
     {"region": "sg", "model": "fo-dup-json"}
   ]}
]}
--- must_die
--- error_log eval
qr/\[emerg\] .*model "fo-dup-json": deployment "sg\/fo-dup-json" is in its chain twice/



=== TEST 26: the same model id in two regions, and two ids in one region, are different deployments
--- catalogue
    qwen_model fo-two input=1 output=2 deploy=sg:fo-two deploy=us:fo-two deploy=sg:sg-long;
--- more_headers
X-Mock-Plan: 1-2=status:503
--- request eval
main::chat_request('fo-two')
--- response_headers
X-Qwen-Deployment: sg/sg-long
--- mock_record eval
[[1, 'sg/fo-two'], [2, 'us/fo-two'], [3, 'sg/sg-long']]



=== TEST 27: a region without a key (key_env unset) first in a chain is passed over: the first attempt goes to us
--- catalogue
    qwen_region nokey url=http://dashscope_mock path=/compatible-mode key_env=QWEN_TEST_144_NO_SUCH_KEY;
    qwen_model fo-nokey input=1 output=2 deploy=nokey:nk-chat deploy=us:us-chat;
--- request eval
[main::chat_request('fo-nokey'), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Qwen-Deployment: us/us-chat", ""]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'us/us-chat']], undef]
--- access_line eval
[qr{^qwen-fo status=200 dep=us/us-chat attempts=1 failovers="-?" }, undef]
--- prometheus_absent
qwen_attempts_total{deployment="nokey/nk-chat",outcome="error"}
qwen_failovers_total{from="nokey/nk-chat",reason="error",to="us/us-chat"}



=== TEST 28: a region without a key in the middle of a chain is passed over on a failover
--- catalogue
    qwen_region nokey url=http://dashscope_mock path=/compatible-mode key_env=QWEN_TEST_144_NO_SUCH_KEY;
    qwen_model fo-nokey input=1 output=2 deploy=sg:sg-chat deploy=nokey:nk-chat deploy=us:us-chat;
--- more_headers
X-Mock-Plan: 1=status:503
--- request eval
main::chat_request('fo-nokey')
--- response_headers
X-Qwen-Deployment: us/us-chat
--- response_body_like eval
qr/"content":"Mock reply from us-chat\."/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat']]
--- access_line eval
qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:http_503" }



=== TEST 29: a chain whose only deployment has no key: 503 no_upstream_key
--- catalogue
    qwen_region nokey url=http://dashscope_mock path=/compatible-mode key_env=QWEN_TEST_144_NO_SUCH_KEY;
    qwen_model fo-nokey input=1 output=2 deploy=nokey:nk-chat;
--- request eval
main::chat_request('fo-nokey')
--- error_code: 503
--- response_body_like eval
qr/\A\{"error":\{"message":"[^"]+","type":"[^"]+","param":null,"code":"no_upstream_key"\}\}\n?\z/
--- mock_record eval
[]
--- error_log
region "nokey" has no API key
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 30: an upstream error answer over 64 KB: its first 64 KB, without a Content-Length
The upstream, a server of this nginx, answers 503 with a 100000-byte JSON
error; the chain has no other deployment, so that answer goes to the
client. (At info: that server would log the key it gets at debug.)
--- log_level: info
--- catalogue eval
<<'_EOC_' . "    qwen_model fo-big input=1 output=2 deploy=big:big-chat;\n"
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_3;
        access_log off;
        default_type application/json;
        error_page 503 /big.json;
        location / { return 503; }
        location = /big.json { root html; }
    }
    qwen_region big url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_3 path=/compatible-mode key=sk-mock;
_EOC_
--- user_files eval
[['big.json', main::big_error(100000)]]
--- request eval
main::chat_request('fo-big')
--- error_code: 503
--- response_headers
!Content-Length
X-Qwen-Deployment: big/big-chat
--- response_body_like eval
qr/\A\{"error":\{"code":"ServiceUnavailable","type":"service_unavailable","message":"x+\z/
--- body_length: 65536
--- error_log
qwen: the upstream's error answer is longer than 65536 bytes
--- no_error_log
[error]
[alert]
[crit]



=== TEST 31: the same with proxy_buffering on (nginx's default)
--- log_level: info
--- location
proxy_buffering on;
--- catalogue eval
<<'_EOC_' . "    qwen_model fo-big input=1 output=2 deploy=big:big-chat;\n"
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_3;
        access_log off;
        default_type application/json;
        error_page 503 /big.json;
        location / { return 503; }
        location = /big.json { root html; }
    }
    qwen_region big url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_3 path=/compatible-mode key=sk-mock;
_EOC_
--- user_files eval
[['big.json', main::big_error(100000)]]
--- request eval
main::chat_request('fo-big')
--- error_code: 503
--- response_headers
!Content-Length
X-Qwen-Deployment: big/big-chat
--- response_body_like eval
qr/\A\{"error":\{"code":"ServiceUnavailable","type":"service_unavailable","message":"x+\z/
--- body_length: 65536
--- error_log
qwen: the upstream's error answer is longer than 65536 bytes
--- no_error_log
[error]
[alert]
[crit]



=== TEST 32: an error answer under 64 KB keeps its Content-Length, and is whole
--- log_level: info
--- catalogue eval
<<'_EOC_' . "    qwen_model fo-big input=1 output=2 deploy=big:big-chat;\n"
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_3;
        access_log off;
        default_type application/json;
        error_page 503 /big.json;
        location / { return 503; }
        location = /big.json { root html; }
    }
    qwen_region big url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_3 path=/compatible-mode key=sk-mock;
_EOC_
--- user_files eval
[['big.json', main::big_error(60000)]]
--- request eval
main::chat_request('fo-big')
--- error_code: 503
--- response_headers
Content-Length: 60000
X-Qwen-Deployment: big/big-chat
--- response_body_like eval
qr/\A\{"error":\{"code":"ServiceUnavailable",.*"request_id":"fo144"\}\z/s
--- body_length: 60000
--- no_error_log
qwen: the upstream's error answer is longer
[error]
[alert]
[crit]



=== TEST 33: a location without failover counts its attempts by status alone, and cools nothing
--- location
qwen_failover off;
--- more_headers eval
["X-Mock-Plan: 1=status:429\nX-Mock-Retry-After: 30", "X-Mock-Plan: 1=status:404", "", ""]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat'), main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[429, 404, 200, 200]
--- response_body_like eval
[qr/"code":"limit_requests"/, qr/"code":"model_not_found"/, qr/"content":"Mock reply from sg-chat\."/, qr/^# /]
--- mock_record eval
[[[undef, 'sg/sg-chat']], [[undef, 'sg/sg-chat']], [[undef, 'sg/sg-chat']], undef]
--- access_line eval
[undef, undef, qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" rt=0\.\d{3} }, undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_429"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="client_error"} 1.0
qwen_attempts_total{deployment="sg/sg-chat",outcome="ok"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 1.0
--- prometheus_absent
qwen_attempts_total{deployment="sg/sg-chat",outcome="model_not_found"}
