# Failover (issue 8): a request moves along its model's chain of deployments
# on the triggers of /work/failover-spec.md, and nowhere else.
#
# Every block proves who answered three ways: the mock's reply names the
# upstream model ("Mock reply from us-chat."; each deployment has its own
# model id), the X-Qwen-Deployment header ($qwen_deployment), and the mock's
# record of the scenario (X-Mock-Scenario: one id per request), which lists
# every attempt the mock got: its number ($qwen_attempt, sent as
# X-Mock-Attempt), the model, which key it carried (first 16 hex of the
# key's sha256) in which header, the body's sha256 (the client's body, byte
# for byte, but for the model) and its time since attempt 1 (t_ms, to see
# Retry-After honoured). The access log, written into error.log, gives
# $qwen_attempts, $qwen_failovers, $qwen_cost and $qwen_incomplete.
#
# The first blocks are written out; the fault matrix that follows (every
# trigger x stream or not x body in memory or in a temporary file) is one
# line per block, `--- matrix: TRIGGER plain|stream memory|file`, which the
# block preprocessor below turns into a full block from the table %TRIGGER.
#
# repeat_each(1): a failed deployment cools down, by design, so a second
# run of a block in the same nginx would take another path. Every block
# restarts nginx, and the matrix runs without a zone (health per worker):
# each block starts with every deployment up.
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
    nr   => ['authorization', 'sk-mock'],
);

# The chat body every block sends: 3.5 KB with JSON escapes, a model id of
# the same length as every deployment's (so that sizes match too).
sub chat_body {
    my ($model, $stream) = @_;
    my $text = join ' ', map { qq{line $_: caf\\u00e9 \\"quoted\\" tab\\t} } 1 .. 100;
    return qq({"model":"$model","messages":[{"role":"system","content":"be brief"},)
         . qq({"role":"user","content":"$text"}],"temperature":0.5)
         . ($stream ? ',"stream":true,"stream_options":{"include_usage":true}' : '')
         . '}';
}

sub chat_request { "POST /v1/chat/completions\n" . chat_body(@_) }

# one scenario id per request of a block, also used to find its access log line
sub sid {
    my ($block, $idx) = @_;
    my ($n) = $block->name =~ /\bTEST (\d+):/;
    return "fo140-" . ($n // 'x') . "-" . ($idx // 0) . "-$$";
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
    qwen_region nr url=http://dashscope_mock path=/compatible-mode key=sk-mock;
    qwen_region dead url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_1 path=/compatible-mode key=sk-mock;
    qwen_region dead2 url=http://127.0.0.1:$TEST_NGINX_RAND_PORT_2 path=/compatible-mode key=sk-mock;

    log_format fo 'qwen-fo status=$status dep=$qwen_deployment attempts=$qwen_attempts failovers="$qwen_failovers" cost=$qwen_cost inc=$qwen_incomplete id=$http_x_mock_scenario';
_EOC_

my $MODELS = <<'_EOC_';
    qwen_model fo-chat input=1 output=2 deploy=sg:sg-chat deploy=us:us-chat deploy=cn:cn-chat;
    qwen_model fo-dead input=1 output=2 deploy=dead:xx-chat deploy=us:us-chat;
    qwen_model fo-nora input=1 output=2 deploy=nr:nr-chat deploy=us:us-chat;
    qwen_model fo-long input=1 output=2 deploy=sg:sg-chat deploy=us:us-chat deploy=cn:cn-chat deploy=sg:sg-long deploy=us:us-long;
    qwen_model fo-same input=1 output=2 deploy=sg:sg-chat deploy=us:us-chat;
    qwen_model fo-gone input=1 output=2 deploy=dead:xx-chat deploy=dead2:yy-chat;
    qwen_model fo-fast input=1 output=2 first_byte_timeout=300ms deploy=sg:sg-chat deploy=us:us-chat;
    qwen_model fo-slow input=1 output=2 first_byte_timeout=3s deploy=sg:sg-chat deploy=us:us-chat;
    qwen_model fo-one input=1 output=2 deploy=sg:sg-one;
_EOC_

# the gateway location; a block's `--- location` adds directives, and
# replaces a default of the same name
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

sub gateway_config {
    my ($extra, $zone) = @_;
    $extra //= '';
    my @lines;
    for my $d (@LOCATION) {
        my ($name) = $d =~ /^(\S+)/;
        next if $name =~ /^qwen_/ && $extra =~ /^\s*\Q$name\E\s/m;
        push @lines, $d;
    }
    push @lines, map { s/^\s+//r } grep { /\S/ } split /\n/, $extra;
    my $conf = "    access_log logs/error.log fo;\n\n    location /v1/ {\n"
        . join('', map { "        $_\n" } @lines)
        . "        proxy_pass \$qwen_upstream\$qwen_upstream_path\$uri;\n    }\n";
    $conf .= "\n    location = /metrics { qwen_status prometheus; }\n"
           . "    location = /status { qwen_status json; }\n" if $zone;
    return $conf;
}

# ----------------------------------------------------------- the matrix --

my $ALL_TRIGGERS = 'error timeout first_byte http_500 http_502 http_503 '
    . 'http_504 http_429 model_not_found auth arrears';
sub all_triggers { $ALL_TRIGGERS }

# For each trigger: the model asked for, the mock's plan, extra headers and
# location directives, the attempts the mock must see ([attempt, deployment,
# t_ms min, t_ms max]), the moves ([from, to, reason, attempt]); by default
# the last attempt answers with 200.
my %TRIGGER = (
    error => {
        title => 'error (a dead port)', model => 'fo-dead',
        seen => [[2, 'us/us-chat']], attempts => 2, answer => 'us/us-chat',
        moves => [['dead/xx-chat', 'us/us-chat', 'error', 1]],
        log => ['connect() failed (111: Connection refused)'], errors => 1,
    },
    timeout => {
        title => 'timeout (proxy_read_timeout)',
        loc => 'proxy_read_timeout 300ms;', plan => '1=slow:1000',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 280, 900]],
        moves => [['sg/sg-chat', 'us/us-chat', 'timeout', 1]],
        log => ['upstream timed out'], errors => 1,
    },
    first_byte => {
        title => 'first_byte (qwen_first_byte_timeout)',
        loc => 'qwen_first_byte_timeout 300ms;', plan => '1=slow:1000',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 280, 900]],
        moves => [['sg/sg-chat', 'us/us-chat', 'first_byte', 1]],
        errors => 1,
    },
    (map {
        ("http_$_" => {
            title => "http_$_", plan => "1=status:$_",
            seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 0, 190]],
            moves => [['sg/sg-chat', 'us/us-chat', "http_$_", 1]],
        })
    } 500, 502, 503, 504),
    http_429 => {
        title => 'http_429 with Retry-After: 1, retried on the same deployment',
        plan => '1=status:429', headers => "X-Mock-Retry-After: 1",
        seen => [[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 950, 1600]],
        # $qwen_failovers lists each 429 (docs/failover.md)
        failovers => 'sg/sg-chat:http_429',
    },
    http_429_twice => {
        title => 'http_429 twice: cooled down, next deployment',
        plan => '1-2=status:429', headers => "X-Mock-Retry-After: 1",
        seen => [[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 950, 1600],
                 [3, 'us/us-chat', 950, 1700]],
        failovers => 'sg/sg-chat:http_429 sg/sg-chat:http_429',
        moves => [['sg/sg-chat', 'us/us-chat', 'http_429', 2]],
    },
    http_429_no_retry_after => {
        title => 'http_429 without Retry-After: qwen_retry_wait 200ms 400ms',
        plan => '1=status:429', headers => "X-Mock-Retry-After: none",
        seen => [[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 190, 700]],
        failovers => 'sg/sg-chat:http_429',
    },
    model_not_found => {
        title => 'model_not_found (404)', plan => '1=status:404',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 0, 190]],
        moves => [['sg/sg-chat', 'us/us-chat', 'model_not_found', 1]],
    },
    auth_401 => {
        title => 'auth (401), logged at error', plan => '1=status:401',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 0, 190]],
        moves => [['sg/sg-chat', 'us/us-chat', 'auth', 1]],
        log => [qr{\[error\].*qwen: .*"sg/sg-chat"}], errors => 1,
    },
    auth_403 => {
        title => 'auth (403), logged at error', plan => '1=status:403',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 0, 190]],
        moves => [['sg/sg-chat', 'us/us-chat', 'auth', 1]],
        log => [qr{\[error\].*qwen: .*"sg/sg-chat"}], errors => 1,
    },
    arrears_402 => {
        title => 'arrears (402)', plan => '1=status:402',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 0, 190]],
        moves => [['sg/sg-chat', 'us/us-chat', 'arrears', 1]],
    },
    arrears_arrearage => {
        title => 'arrears (400 Arrearage)', plan => '1=status:400-arrearage',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 0, 190]],
        moves => [['sg/sg-chat', 'us/us-chat', 'arrears', 1]],
    },
    arrears_insufficient_quota => {
        title => 'arrears (429 insufficient_quota): no wait, no retry there',
        plan => '1=status:429-quota',
        seen => [[1, 'sg/sg-chat'], [2, 'us/us-chat', 0, 190]],
        moves => [['sg/sg-chat', 'us/us-chat', 'arrears', 1]],
    },
    moderation => {
        title => 'moderation (400 data_inspection_failed): not retried by default',
        plan => '1=status:400-inspection', status => 400,
        seen => [[1, 'sg/sg-chat']], answer => 'sg/sg-chat',
        body => qr/\A\{"error":\{.*"code":"data_inspection_failed"/s,
        failovers => '',
    },
    moderation_opt_in => {
        title => 'moderation opted in: the next deployment of another provider',
        plan => '1=status:400-DataInspectionFailed',
        loc => "qwen_failover_on $ALL_TRIGGERS moderation;",
        seen => [[1, 'sg/sg-chat'], [2, 'cn/cn-chat', 0, 190]],
        moves => [['sg/sg-chat', 'cn/cn-chat', 'moderation', 1]],
    },
);

sub matrix_block {
    my ($block, $spec) = @_;
    my ($trigger, $kind, $where) = split ' ', $spec;
    my $t = $TRIGGER{$trigger} or die "no trigger $trigger";
    my $stream = $kind eq 'stream';
    my $model = $t->{model} // 'fo-chat';

    my $loc = $t->{loc} // '';
    $loc .= "\nclient_body_in_file_only clean;" if $where eq 'file';
    $block->set_value('http_config', $COMMON . $MODELS);
    $block->set_value('config', gateway_config($loc, 0));
    $block->set_value('request', chat_request($model, $stream));

    my @h;
    push @h, "X-Mock-Plan: $t->{plan}" if $t->{plan};
    push @h, $t->{headers} if $t->{headers};
    $block->set_value('more_headers', join "\n", @h) if @h;

    my $answer = $t->{answer} // $t->{seen}[-1][1];
    my ($up) = $answer =~ m{/(.*)};
    my $status = $t->{status} // 200;
    $block->set_value('error_code', $status);
    $block->set_value('response_headers', "X-Qwen-Deployment: $answer\n");
    if ($t->{body}) {
        $block->set_value('response_body_like', $t->{body});
    } elsif ($stream) {
        $block->set_value('response_body_like',
            qr/\Adata: \{[^\n]*"model":"\Q$up\E".*"content":"\Q$up\E\.".*\ndata: \[DONE\]\n\n\z/s);
    } else {
        $block->set_value('response_body_like',
            qr/\A\{"id":"chatcmpl-[^"]+",[^\n]*"model":"\Q$up\E".*"content":"Mock reply from \Q$up\E\."/s);
    }

    $block->set_value('mock_record', $t->{seen});

    my $attempts = $t->{attempts} // $t->{seen}[-1][0];
    my $fo = $t->{failovers}
        // join ' ', map { "$_->[0]:$_->[2]" } @{ $t->{moves} || [] };
    $fo = ref $fo ? $fo : qr/\Q$fo\E/;
    $block->set_value('access_line',
        qr{^qwen-fo status=$status dep=\Q$answer\E attempts=$attempts failovers="-?$fo" });

    my @log = @{ $t->{log} || [] };
    for my $m (@{ $t->{moves} || [] }) {
        push @log, qq{qwen: failover from "$m->[0]" to "$m->[1]": $m->[2] (attempt $m->[3] of 4)};
        push @log, qr{\[warn\].*qwen: failover from "\Q$m->[0]\E"} unless $m->[2] eq 'auth';
    }
    $block->set_value('error_log', \@log) if @log;
    $block->set_value('no_error_log',
        [$t->{errors} ? () : ('[error]'), '[alert]', '[crit]', '[emerg]']);
}

# ---------------------------------------------------- the preprocessor --

sub reaches_cn {
    my ($v) = @_;
    return ref $v eq 'ARRAY' ? scalar(grep { reaches_cn($_) } @$v)
         : defined $v && $v =~ m{^cn/};
}

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('timeout', 5) unless defined $block->timeout;

    if (defined $block->matrix) {
        matrix_block($block, $block->matrix);
    } else {
        # (a zone of its own per block: under TEST_NGINX_USE_HUP a reload
        # keeps a zone, and the health of the previous block with it)
        my ($n) = $block->name =~ /\bTEST (\d+):/;
        $block->set_value('http_config', $COMMON . ($block->catalogue // $MODELS)
                                         . "    qwen_metrics_zone fo140_" . ($n // 0) . " 1m;\n")
            unless defined $block->http_config;
        $block->set_value('config', gateway_config(scalar $block->location, 1))
            unless defined $block->config;
        $block->set_value('no_error_log', ['[error]', '[alert]', '[crit]', '[emerg]'])
            unless defined $block->no_error_log;
    }

    # At debug level nginx prints the value of every proxy_set_header as it
    # builds the upstream request; the suite's secret scan lets that record
    # pass for Authorization only, so the blocks that reach cn (its key in
    # api-key) log at info.
    $block->set_value('log_level', 'info')
        if !defined $block->log_level && reaches_cn(scalar $block->mock_record);

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

# the attempts the mock got for one request, against [attempt, deployment,
# t_ms min, t_ms max] (attempt undef: not checked)
sub check_record {
    my ($name, $id, $want, $body) = @_;
    my $rec = mock_record($id);
    my @got = @{ $rec->{requests} || [] };
    is(scalar @got, scalar @$want,
       "$name - the mock got " . scalar(@$want) . " request(s)")
        or diag($json->encode($rec));

    my ($asked) = $body =~ /"model":"([^"]*)"/;
    my $stream = $body =~ /"stream":true/ ? 1 : 0;
    for my $i (0 .. $#$want) {
        my ($attempt, $dep, $tmin, $tmax) = @{ $want->[$i] };
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
        is($g->{stream} ? 1 : 0, $stream, "$n is " . ($stream ? '' : 'not ') . 'a stream');

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

        if (defined $tmin) {
            my $t = $g->{t_ms} // -1;
            ok($t >= $tmin && $t <= $tmax,
               "$n came ${tmin}-${tmax} ms after attempt 1") or diag("t_ms $t");
        }
    }

    if (@got > 1) {
        my %sans = map { ($_->{body_sans_model_sha256} // 'none') => 1 } @got;
        ok(keys %sans == 1 && !$sans{none},
           "$name - every attempt had the same body but for the model")
            or diag($json->encode([map { $_->{body_sans_model_sha256} } @got]));
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

add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run;

    my $multi = ref $block->request eq 'ARRAY';
    my $id = sid($block, $req_idx);
    my $req = $multi ? $block->request->[$req_idx] : $block->request;
    my ($reqbody) = $req =~ /\n(.*)\z/s;

    my $want = $block->mock_record;
    $want = $want->[$req_idx] if $multi && defined $want;
    check_record($block->name, $id, $want, $reqbody) if defined $want;

    my $line = $block->access_line;
    $line = $line->[$req_idx] if $multi && ref $line eq 'ARRAY';
    if (defined $line) {
        my $got = access_line($id);
        like($got // '(no access log line)', $line,
             $block->name . " - the access log line of request " . ($req_idx + 1));
    }
});

# the metrics (last request of a block): the Prometheus text parses (the
# Python client's parser, as t/110-metrics.t) and holds the samples
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run;
    return if ref $block->request && $req_idx != @{ $block->request } - 1;

    if (defined(my $want = $block->prometheus_samples)) {
        my $pid = IPC::Open2::open2(my $out, my $in,
                                    "$ENV{TEST_NGINX_REPO}/t/lib/promcheck.py");
        print $in $body;
        close $in;
        my $parsed = do { local $/; <$out> };
        waitpid $pid, 0;
        is($? >> 8, 0, $block->name . " - the Prometheus text parses")
            or diag($parsed);
        my %have = map { $_ => 1 } split /\n/, $parsed;
        for my $line (split /\n/, $want) {
            next unless $line =~ /\S/;
            ok($have{$line}, $block->name . " - sample $line") or diag($parsed);
        }
    }

    if (defined(my $re = $block->prometheus_like)) {
        like($body, $re, $block->name . " - the metrics match $re");
    }

    if (defined(my $want = $block->status_deployments)) {
        my $doc = eval { JSON::PP->new->decode($body) } || {};
        my %dep = map { ($_->{name} // '') => $_ } @{ $doc->{deployments} || [] };
        for my $name (sort keys %$want) {
            my $w = $want->{$name};
            my $d = $dep{$name};
            ok($d, $block->name . " - the status lists $name") or diag($body);
            $d ||= {};
            is($d->{up} ? 1 : 0, $w->{up}, $block->name . " - $name up=$w->{up}");
            is($d->{reason}, $w->{reason}, $block->name . " - $name cooled for $w->{reason}")
                if defined $w->{reason};
            if (defined $w->{cooldown_min}) {
                my $c = $d->{cooldown_ms} // -1;
                ok($c >= $w->{cooldown_min} && $c <= $w->{cooldown_max},
                   $block->name . " - $name cooldown_ms $w->{cooldown_min}-$w->{cooldown_max}")
                    or diag("cooldown_ms $c");
            }
            for my $o (sort keys %{ $w->{attempts} || {} }) {
                is($d->{attempts}{$o}, $w->{attempts}{$o},
                   $block->name . " - $name attempts $o");
            }
        }
    }
});

run_tests();

__DATA__

=== TEST 1: no fault: one attempt, no failover
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- response_body_like eval
qr/"content":"Mock reply from sg-chat\."/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" }



=== TEST 2: qwen_failover off: a 503 is the answer
--- location
qwen_failover off;
--- more_headers
X-Mock-Plan: 1=status:503
--- request eval
main::chat_request('fo-chat')
--- error_code: 503
--- response_body_like eval
qr/"code":"ServiceUnavailable"/
--- mock_record eval
[[undef, 'sg/sg-chat']]



=== TEST 3: qwen_failover_on off: a 503 is the answer
--- location
qwen_failover_on off;
--- more_headers
X-Mock-Plan: 1=status:503
--- request eval
main::chat_request('fo-chat')
--- error_code: 503
--- response_body_like eval
qr/"code":"ServiceUnavailable"/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=503 dep=sg/sg-chat attempts=1 failovers="-?" }



=== TEST 4: qwen_failover_on http_503: a 502 is the answer, a 503 moves on
--- location
qwen_failover_on http_503;
--- more_headers eval
["X-Mock-Plan: 1=status:502", "X-Mock-Plan: 1=status:503"]
--- request eval
[main::chat_request('fo-nora'), main::chat_request('fo-chat')]
--- error_code eval
[502, 200]
--- response_body_like eval
[qr/"code":"BadGateway"/, qr/"content":"Mock reply from us-chat\."/]
--- mock_record eval
[[[1, 'nr/nr-chat']], [[1, 'sg/sg-chat'], [2, 'us/us-chat']]]
--- access_line eval
[qr{^qwen-fo status=502 dep=nr/nr-chat attempts=1 failovers="-?" },
 qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:http_503" }]



=== TEST 5: another 4xx is the answer
--- more_headers
X-Mock-Plan: 1=status:400
--- request eval
main::chat_request('fo-chat')
--- error_code: 400
--- response_body_like eval
qr/"code":"invalid_parameter_error"/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=400 dep=sg/sg-chat attempts=1 failovers="-?" }



=== TEST 6: another 5xx (501) is the answer
--- more_headers
X-Mock-Plan: 1=status:501
--- request eval
main::chat_request('fo-chat')
--- error_code: 501
--- response_body_like eval
qr/"code":"mock_fault_501"/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=501 dep=sg/sg-chat attempts=1 failovers="-?" }



=== TEST 7: a 401 whose trigger is not listed goes to the client, and does not take the deployment out
--- location
qwen_failover_on http_503;
--- more_headers eval
["X-Mock-Plan: 1=status:401", ""]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat')]
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/"code":"invalid_api_key"/, qr/"content":"Mock reply from sg-chat\."/]
--- mock_record eval
[[[1, 'sg/sg-chat']], [[1, 'sg/sg-chat']]]
--- access_line eval
[qr{^qwen-fo status=401 dep=sg/sg-chat attempts=1 },
 qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" }]
--- no_error_log
[alert]
[crit]



=== TEST 8: a location without failover never cools a deployment down
--- location
qwen_failover off;
--- more_headers eval
["X-Mock-Plan: 1=status:401", ""]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat')]
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/"code":"invalid_api_key"/, qr/"content":"Mock reply from sg-chat\."/]
--- mock_record eval
[[[undef, 'sg/sg-chat']], [[undef, 'sg/sg-chat']]]
--- no_error_log
[alert]
[crit]



=== TEST 9: four attempts by default; the last upstream answer goes to the client as it came
--- more_headers
X-Mock-Plan: *=status:503
--- request eval
main::chat_request('fo-long')
--- error_code: 503
--- response_body_like eval
qr/\A\{"error":\{"message":"The service is temporarily unavailable, please try again later\.","type":"service_unavailable","param":null,"code":"ServiceUnavailable"\}/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat'], [3, 'cn/cn-chat'], [4, 'sg/sg-long']]
--- access_line eval
qr{^qwen-fo status=503 dep=sg/sg-long attempts=4 failovers="sg/sg-chat:http_503 us/us-chat:http_503 cn/cn-chat:http_503(?: sg/sg-long:http_503)?" }
--- error_log
qwen: failover from "sg/sg-chat" to "us/us-chat": http_503 (attempt 1 of 4)
qwen: failover from "us/us-chat" to "cn/cn-chat": http_503 (attempt 2 of 4)
qwen: failover from "cn/cn-chat" to "sg/sg-long": http_503 (attempt 3 of 4)



=== TEST 10: qwen_failover_tries 2
--- location
qwen_failover_tries 2;
--- more_headers
X-Mock-Plan: *=status:503
--- request eval
main::chat_request('fo-long')
--- error_code: 503
--- response_body_like eval
qr/"code":"ServiceUnavailable"/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat']]
--- access_line eval
qr{^qwen-fo status=503 dep=us/us-chat attempts=2 }
--- error_log
qwen: failover from "sg/sg-chat" to "us/us-chat": http_503 (attempt 1 of 2)



=== TEST 11: the 429 retry counts as an attempt
--- location
qwen_failover_tries 2;
--- more_headers
X-Mock-Plan: *=status:429
X-Mock-Retry-After: 1
--- request eval
main::chat_request('fo-chat')
--- error_code: 429
--- response_body_like eval
qr/"code":"limit_requests"/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 950, 1600]]
--- access_line eval
qr{^qwen-fo status=429 dep=sg/sg-chat attempts=2 }



=== TEST 12: the time budget: no attempt starts after qwen_failover_timeout
Attempts of 400 ms each start at about 0, 400 and 800 ms; the fourth would
start after the budget of 1 s. The last failure is nginx's own timeout:
504 upstream_timeout (docs/failover.md).
--- location
qwen_failover_timeout 1s;
proxy_read_timeout 400ms;
--- more_headers
X-Mock-Plan: *=slow:3000
--- request eval
main::chat_request('fo-long')
--- error_code: 504
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/\A\{"error":\{"message":"The upstream did not answer in time\.","type":"server_error","param":null,"code":"upstream_timeout"\}\}\n?\z/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat', 380, 700], [3, 'cn/cn-chat', 760, 999]]
--- access_line eval
qr{^qwen-fo status=504 dep=cn/cn-chat attempts=3 failovers="sg/sg-chat:timeout us/us-chat:timeout(?: cn/cn-chat:timeout)?" }
--- no_error_log
[alert]
[crit]



=== TEST 13: a chain ended by first-byte budgets: 504 upstream_timeout (docs/failover.md)
--- location
qwen_first_byte_timeout 300ms;
qwen_failover_tries 2;
--- more_headers
X-Mock-Plan: *=slow:1000
--- request eval
main::chat_request('fo-chat', 1)
--- error_code: 504
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/\A\{"error":\{"message":"The upstream did not answer in time\.","type":"server_error","param":null,"code":"upstream_timeout"\}\}\n?\z/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat', 280, 900]]
--- access_line eval
qr{^qwen-fo status=504 dep=us/us-chat attempts=2 failovers="sg/sg-chat:first_byte(?: us/us-chat:first_byte)?" }
--- no_error_log
[alert]
[crit]



=== TEST 14: a chain exhausted by nginx's own errors: 502; the next request probes them again
Every deployment is out after a transient failure: the first one is tried
anyway (the lead's rule, a2ac8a1), and fails the same way.
--- location
qwen_cooldown transient=30s;
--- request eval
[main::chat_request('fo-gone'), main::chat_request('fo-gone')]
--- error_code eval
[502, 502]
--- response_headers eval
["Content-Type: application/json", "Content-Type: application/json"]
--- response_body_like eval
[qr/\A\{"error":\{"message":"[^"]+","type":"[^"]+","param":null,"code":"upstream_unavailable"\}\}\n?\z/,
 qr/\A\{"error":\{"message":"[^"]+","type":"[^"]+","param":null,"code":"upstream_unavailable"\}\}\n?\z/]
--- access_line eval
[qr{^qwen-fo status=502 dep=dead2/yy-chat attempts=2 failovers="dead/xx-chat:error(?: dead2/yy-chat:error)?" },
 qr{^qwen-fo status=502 dep=dead\d?/\w\w-chat attempts=[12] }]
--- no_error_log
[alert]
[crit]



=== TEST 15: every deployment out for its key: the 401 as it came, then 503 all_deployments_cooling_down at once
--- more_headers eval
["X-Mock-Plan: *=status:401", ""]
--- request eval
[main::chat_request('fo-same'), main::chat_request('fo-same')]
--- error_code eval
[401, 503]
--- response_body_like eval
[qr/"code":"invalid_api_key"/,
 qr/\A\{"error":\{"message":"[^"]+","type":"[^"]+","param":null,"code":"all_deployments_cooling_down"\}\}\n?\z/]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat']], []]
--- access_line eval
[qr{^qwen-fo status=401 dep=us/us-chat attempts=2 failovers="sg/sg-chat:auth(?: us/us-chat:auth)?" },
 qr{^qwen-fo status=503 }]
--- no_error_log
[alert]
[crit]



=== TEST 16: every deployment out after 429s, back later than qwen_retry_after_max: 503 with Retry-After
The retry waits 1 s (the cap); the second 429 cools the deployment down
for its Retry-After, 5 s, more than the 1 s a request may wait.
--- location
qwen_retry_after_max 1s;
--- more_headers eval
["X-Mock-Plan: *=status:429\nX-Mock-Retry-After: 5", ""]
--- request eval
[main::chat_request('fo-one'), main::chat_request('fo-one')]
--- error_code eval
[429, 503]
--- response_headers_like eval
["", "Retry-After: [1-5]"]
--- response_body_like eval
[qr/"code":"limit_requests"/,
 qr/\A\{"error":\{"message":"[^"]+","type":"[^"]+","param":null,"code":"all_deployments_cooling_down"\}\}\n?\z/]
--- mock_record eval
[[[1, 'sg/sg-one'], [2, 'sg/sg-one', 950, 1600]], []]
--- access_line eval
[qr{^qwen-fo status=429 dep=sg/sg-one attempts=2 },
 qr{^qwen-fo status=503 }]



=== TEST 17: the model's first_byte_timeout wins over a longer qwen_first_byte_timeout
--- location
qwen_first_byte_timeout 5s;
--- more_headers
X-Mock-Plan: 1=slow:1000
--- request eval
main::chat_request('fo-fast')
--- response_headers
X-Qwen-Deployment: us/us-chat
--- response_body_like eval
qr/"content":"Mock reply from us-chat\."/
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat', 280, 900]]
--- access_line eval
qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:first_byte" }
--- no_error_log
[alert]
[crit]



=== TEST 18: the model's first_byte_timeout wins over a shorter qwen_first_byte_timeout
--- location
qwen_first_byte_timeout 300ms;
--- more_headers
X-Mock-Plan: 1=slow:1000
--- request eval
main::chat_request('fo-slow')
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- response_body_like eval
qr/"content":"Mock reply from sg-chat\."/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" }



=== TEST 19: Retry-After is capped by qwen_retry_after_max
--- location
qwen_retry_after_max 1s;
--- more_headers
X-Mock-Plan: 1=status:429
X-Mock-Retry-After: 5
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 950, 1600]]
--- access_line eval
qr{^qwen-fo status=200 dep=sg/sg-chat attempts=2 }



=== TEST 20: Retry-After as an HTTP date
The mock's date is 2 to 3 s ahead (rounded up to the second).
--- more_headers
X-Mock-Plan: 1=status:429
X-Mock-Retry-After: date:2
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 1500, 3300]]



=== TEST 21: a Retry-After date in the past: a retry at once
--- more_headers
X-Mock-Plan: 1=status:429
X-Mock-Retry-After: date:-5
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 0, 150]]



=== TEST 22: an unreadable Retry-After counts as none: qwen_retry_wait
--- more_headers
X-Mock-Plan: 1=status:429
X-Mock-Retry-After: soon
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 190, 700]]



=== TEST 23: moderation opted in, but no deployment of another provider: the 400 is the answer
--- location eval
"qwen_failover_on " . main::all_triggers() . " moderation;"
--- more_headers
X-Mock-Plan: *=status:400-inspection
--- request eval
main::chat_request('fo-same')
--- error_code: 400
--- response_body_like eval
qr/"code":"data_inspection_failed"/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=400 dep=sg/sg-chat attempts=1 }



=== TEST 24: a 429 of another code (Throttling.AllocationQuota) is a throttle too
--- more_headers
X-Mock-Plan: 1=status:429-allocation
X-Mock-Retry-After: 1
--- request eval
main::chat_request('fo-chat')
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'sg/sg-chat', 950, 1600]]
--- access_line eval
qr{^qwen-fo status=200 dep=sg/sg-chat attempts=2 }



=== TEST 25: a stream cut after its header: no failover, an error event ends it
--- more_headers
X-Mock-Plan: 1=cut:3
--- request eval
"POST /v1/chat/completions HTTP/1.0\n" . main::chat_body('fo-chat', 1)
--- response_headers
X-Qwen-Deployment: sg/sg-chat
--- response_body_like eval
qr/\A(data: \{[^\n]*\n\n){3}data: \{"error":\{"message":"The upstream connection was lost before the answer was complete\.","type":"server_error","param":null,"code":"stream_interrupted"\}\}\n\n\z/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" cost=\S* inc=1 }
--- no_error_log
[alert]
[crit]



=== TEST 26: the same with the body in a temporary file
--- location
client_body_in_file_only clean;
--- more_headers
X-Mock-Plan: 1=cut:2
--- request eval
"POST /v1/chat/completions HTTP/1.0\n" . main::chat_body('fo-chat', 1)
--- response_body_like eval
qr/\A(data: \{[^\n]*\n\n){2}data: \{"error":\{"message":"The upstream connection was lost before the answer was complete\.","type":"server_error","param":null,"code":"stream_interrupted"\}\}\n\n\z/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- access_line eval
qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" cost=\S* inc=1 }
--- no_error_log
[alert]
[crit]



=== TEST 27: a cut stream counts as "cut" and cools its deployment down
--- more_headers eval
["X-Mock-Plan: 1=cut:3", ""]
--- request eval
["POST /v1/chat/completions HTTP/1.0\n" . main::chat_body('fo-chat', 1), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"code":"stream_interrupted"\}\}\n\n\z/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="cut"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 0.0
--- no_error_log
[alert]
[crit]



=== TEST 28: a region without a key is passed over: the chain ends at the last deployment that has one
--- catalogue
    qwen_region nokey url=http://dashscope_mock path=/compatible-mode key_env=QWEN_TEST_140_NO_SUCH_KEY;
    qwen_model fo-nokey input=1 output=2 deploy=sg:sg-chat deploy=nokey:nk-chat;
--- more_headers
X-Mock-Plan: 1=status:503
--- request eval
main::chat_request('fo-nokey')
--- error_code: 503
--- response_body_like eval
qr/"code":"ServiceUnavailable"/
--- mock_record eval
[[1, 'sg/sg-chat']]
--- error_log
no other deployment is left
--- no_error_log
[alert]
[crit]



=== TEST 28b: a chain whose only deployment has no key: 503 no_upstream_key
--- catalogue
    qwen_region nokey url=http://dashscope_mock path=/compatible-mode key_env=QWEN_TEST_140_NO_SUCH_KEY;
    qwen_model fo-nokey input=1 output=2 deploy=nokey:nk-chat;
--- request eval
main::chat_request('fo-nokey')
--- error_code: 503
--- response_body_like eval
qr/\A\{"error":\{"message":"[^"]+","type":"[^"]+","param":null,"code":"no_upstream_key"\}\}\n?\z/
--- error_log
region "nokey" has no API key
--- no_error_log
[alert]
[crit]



=== TEST 29: a body over client_body_buffer_size (in a temporary file) is sent again whole
--- location
client_body_buffer_size 1k;
--- more_headers
X-Mock-Plan: 1=status:503;2=status:502
--- request eval
main::chat_request('fo-chat', 1)
--- response_headers
X-Qwen-Deployment: cn/cn-chat
--- response_body_like eval
qr/"content":"cn-chat\.".*data: \[DONE\]\n\n\z/s
--- mock_record eval
[[1, 'sg/sg-chat'], [2, 'us/us-chat'], [3, 'cn/cn-chat']]
--- access_line eval
qr{^qwen-fo status=200 dep=cn/cn-chat attempts=3 failovers="sg/sg-chat:http_503 us/us-chat:http_502" }



=== TEST 30: the deployment that answered is the one accounted, at its own prices
sg-chat at the entry's 1 and 2 USD per 1M tokens: 1000 * 1 + 500 * 2 =
0.002 USD; us-chat at its own 10 and 20: 0.02 USD.
--- catalogue
    qwen_models_file ../html/fo-models.json;
--- user_files
>>> fo-models.json
{"models": [
  {"id": "fo-chat", "pricing": {"input": 1, "output": 2},
   "deployments": [
     {"region": "sg", "model": "sg-chat"},
     {"region": "us", "model": "us-chat", "pricing": {"input": 10, "output": 20}}
   ]}
]}
--- more_headers eval
["X-Mock-Usage: 1000,500", "X-Mock-Usage: 1000,500\nX-Mock-Plan: 1=status:503"]
--- request eval
[main::chat_request('fo-chat'), main::chat_request('fo-chat')]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"content":"Mock reply from sg-chat\."/, qr/"content":"Mock reply from us-chat\."/]
--- mock_record eval
[[[1, 'sg/sg-chat']], [[1, 'sg/sg-chat'], [2, 'us/us-chat']]]
--- access_line eval
[qr{^qwen-fo status=200 dep=sg/sg-chat attempts=1 failovers="-?" cost=0\.002000000 inc=0 },
 qr{^qwen-fo status=200 dep=us/us-chat attempts=2 failovers="sg/sg-chat:http_503" cost=0\.020000000 inc=0 }]



=== TEST 31: the metrics: attempts by outcome, failovers, the cooled deployment
--- more_headers eval
["X-Mock-Plan: 1=status:503", ""]
--- request eval
[main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_503"} 1.0
qwen_attempts_total{deployment="us/us-chat",outcome="ok"} 1.0
qwen_failovers_total{from="sg/sg-chat",reason="http_503",to="us/us-chat"} 1.0
qwen_deployment_up{deployment="sg/sg-chat"} 0.0
qwen_deployment_up{deployment="us/us-chat"} 1.0
--- prometheus_like eval
qr/^qwen_deployment_cooldown_seconds\{deployment="sg\/sg-chat"\} (?:[1-9]|10)(?:\.\d+)?$/m



=== TEST 32: the chain's end in the metrics: to="none"
--- location
qwen_failover_tries 2;
--- more_headers eval
["X-Mock-Plan: *=status:503", ""]
--- request eval
[main::chat_request('fo-chat'), "GET /metrics"]
--- error_code eval
[503, 200]
--- response_body_like eval
[qr/ServiceUnavailable/, qr/^# /]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat']], undef]
--- prometheus_samples
qwen_attempts_total{deployment="sg/sg-chat",outcome="http_503"} 1.0
qwen_attempts_total{deployment="us/us-chat",outcome="http_503"} 1.0
qwen_failovers_total{from="sg/sg-chat",reason="http_503",to="us/us-chat"} 1.0
qwen_failovers_total{from="us/us-chat",reason="http_503",to="none"} 1.0



=== TEST 33: the JSON status lists the deployments
--- more_headers eval
["X-Mock-Plan: 1=status:401", ""]
--- request eval
[main::chat_request('fo-chat'), "GET /status"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"content":"Mock reply from us-chat\."/, qr/"deployments":\[/]
--- mock_record eval
[[[1, 'sg/sg-chat'], [2, 'us/us-chat']], undef]
--- status_deployments eval
{'sg/sg-chat' => {up => 0, reason => 'auth', cooldown_min => 200_000, cooldown_max => 300_000,
                  attempts => {auth => 1}},
 'us/us-chat' => {up => 1, attempts => {ok => 1}}}
--- no_error_log
[alert]
[crit]



=== TEST 34: error (a dead port), non-stream, body in memory
--- matrix: error plain memory



=== TEST 35: error (a dead port), non-stream, body in a temporary file
--- matrix: error plain file



=== TEST 36: error (a dead port), stream, body in memory
--- matrix: error stream memory



=== TEST 37: error (a dead port), stream, body in a temporary file
--- matrix: error stream file



=== TEST 38: timeout (proxy_read_timeout), non-stream, body in memory
--- matrix: timeout plain memory



=== TEST 39: timeout (proxy_read_timeout), non-stream, body in a temporary file
--- matrix: timeout plain file



=== TEST 40: timeout (proxy_read_timeout), stream, body in memory
--- matrix: timeout stream memory



=== TEST 41: timeout (proxy_read_timeout), stream, body in a temporary file
--- matrix: timeout stream file



=== TEST 42: first_byte (qwen_first_byte_timeout), non-stream, body in memory
--- matrix: first_byte plain memory



=== TEST 43: first_byte (qwen_first_byte_timeout), non-stream, body in a temporary file
--- matrix: first_byte plain file



=== TEST 44: first_byte (qwen_first_byte_timeout), stream, body in memory
--- matrix: first_byte stream memory



=== TEST 45: first_byte (qwen_first_byte_timeout), stream, body in a temporary file
--- matrix: first_byte stream file



=== TEST 46: http_500, non-stream, body in memory
--- matrix: http_500 plain memory



=== TEST 47: http_500, non-stream, body in a temporary file
--- matrix: http_500 plain file



=== TEST 48: http_500, stream, body in memory
--- matrix: http_500 stream memory



=== TEST 49: http_500, stream, body in a temporary file
--- matrix: http_500 stream file



=== TEST 50: http_502, non-stream, body in memory
--- matrix: http_502 plain memory



=== TEST 51: http_502, non-stream, body in a temporary file
--- matrix: http_502 plain file



=== TEST 52: http_502, stream, body in memory
--- matrix: http_502 stream memory



=== TEST 53: http_502, stream, body in a temporary file
--- matrix: http_502 stream file



=== TEST 54: http_503, non-stream, body in memory
--- matrix: http_503 plain memory



=== TEST 55: http_503, non-stream, body in a temporary file
--- matrix: http_503 plain file



=== TEST 56: http_503, stream, body in memory
--- matrix: http_503 stream memory



=== TEST 57: http_503, stream, body in a temporary file
--- matrix: http_503 stream file



=== TEST 58: http_504, non-stream, body in memory
--- matrix: http_504 plain memory



=== TEST 59: http_504, non-stream, body in a temporary file
--- matrix: http_504 plain file



=== TEST 60: http_504, stream, body in memory
--- matrix: http_504 stream memory



=== TEST 61: http_504, stream, body in a temporary file
--- matrix: http_504 stream file



=== TEST 62: http_429 with Retry-After: 1, retried on the same deployment, non-stream, body in memory
--- matrix: http_429 plain memory



=== TEST 63: http_429 with Retry-After: 1, retried on the same deployment, non-stream, body in a temporary file
--- matrix: http_429 plain file



=== TEST 64: http_429 with Retry-After: 1, retried on the same deployment, stream, body in memory
--- matrix: http_429 stream memory



=== TEST 65: http_429 with Retry-After: 1, retried on the same deployment, stream, body in a temporary file
--- matrix: http_429 stream file



=== TEST 66: http_429 twice: cooled down, next deployment, non-stream, body in memory
--- matrix: http_429_twice plain memory



=== TEST 67: http_429 twice: cooled down, next deployment, non-stream, body in a temporary file
--- matrix: http_429_twice plain file



=== TEST 68: http_429 twice: cooled down, next deployment, stream, body in memory
--- matrix: http_429_twice stream memory



=== TEST 69: http_429 twice: cooled down, next deployment, stream, body in a temporary file
--- matrix: http_429_twice stream file



=== TEST 70: http_429 without Retry-After: qwen_retry_wait 200ms 400ms, non-stream, body in memory
--- matrix: http_429_no_retry_after plain memory



=== TEST 71: http_429 without Retry-After: qwen_retry_wait 200ms 400ms, non-stream, body in a temporary file
--- matrix: http_429_no_retry_after plain file



=== TEST 72: http_429 without Retry-After: qwen_retry_wait 200ms 400ms, stream, body in memory
--- matrix: http_429_no_retry_after stream memory



=== TEST 73: http_429 without Retry-After: qwen_retry_wait 200ms 400ms, stream, body in a temporary file
--- matrix: http_429_no_retry_after stream file



=== TEST 74: model_not_found (404), non-stream, body in memory
--- matrix: model_not_found plain memory



=== TEST 75: model_not_found (404), non-stream, body in a temporary file
--- matrix: model_not_found plain file



=== TEST 76: model_not_found (404), stream, body in memory
--- matrix: model_not_found stream memory



=== TEST 77: model_not_found (404), stream, body in a temporary file
--- matrix: model_not_found stream file



=== TEST 78: auth (401), logged at error, non-stream, body in memory
--- matrix: auth_401 plain memory



=== TEST 79: auth (401), logged at error, non-stream, body in a temporary file
--- matrix: auth_401 plain file



=== TEST 80: auth (401), logged at error, stream, body in memory
--- matrix: auth_401 stream memory



=== TEST 81: auth (401), logged at error, stream, body in a temporary file
--- matrix: auth_401 stream file



=== TEST 82: auth (403), logged at error, non-stream, body in memory
--- matrix: auth_403 plain memory



=== TEST 83: auth (403), logged at error, non-stream, body in a temporary file
--- matrix: auth_403 plain file



=== TEST 84: auth (403), logged at error, stream, body in memory
--- matrix: auth_403 stream memory



=== TEST 85: auth (403), logged at error, stream, body in a temporary file
--- matrix: auth_403 stream file



=== TEST 86: arrears (402), non-stream, body in memory
--- matrix: arrears_402 plain memory



=== TEST 87: arrears (402), non-stream, body in a temporary file
--- matrix: arrears_402 plain file



=== TEST 88: arrears (402), stream, body in memory
--- matrix: arrears_402 stream memory



=== TEST 89: arrears (402), stream, body in a temporary file
--- matrix: arrears_402 stream file



=== TEST 90: arrears (400 Arrearage), non-stream, body in memory
--- matrix: arrears_arrearage plain memory



=== TEST 91: arrears (400 Arrearage), non-stream, body in a temporary file
--- matrix: arrears_arrearage plain file



=== TEST 92: arrears (400 Arrearage), stream, body in memory
--- matrix: arrears_arrearage stream memory



=== TEST 93: arrears (400 Arrearage), stream, body in a temporary file
--- matrix: arrears_arrearage stream file



=== TEST 94: arrears (429 insufficient_quota): no wait, no retry there, non-stream, body in memory
--- matrix: arrears_insufficient_quota plain memory



=== TEST 95: arrears (429 insufficient_quota): no wait, no retry there, non-stream, body in a temporary file
--- matrix: arrears_insufficient_quota plain file



=== TEST 96: arrears (429 insufficient_quota): no wait, no retry there, stream, body in memory
--- matrix: arrears_insufficient_quota stream memory



=== TEST 97: arrears (429 insufficient_quota): no wait, no retry there, stream, body in a temporary file
--- matrix: arrears_insufficient_quota stream file



=== TEST 98: moderation (400 data_inspection_failed): not retried by default, non-stream, body in memory
--- matrix: moderation plain memory



=== TEST 99: moderation (400 data_inspection_failed): not retried by default, non-stream, body in a temporary file
--- matrix: moderation plain file



=== TEST 100: moderation (400 data_inspection_failed): not retried by default, stream, body in memory
--- matrix: moderation stream memory



=== TEST 101: moderation (400 data_inspection_failed): not retried by default, stream, body in a temporary file
--- matrix: moderation stream file



=== TEST 102: moderation opted in: the next deployment of another provider, non-stream, body in memory
--- matrix: moderation_opt_in plain memory



=== TEST 103: moderation opted in: the next deployment of another provider, non-stream, body in a temporary file
--- matrix: moderation_opt_in plain file



=== TEST 104: moderation opted in: the next deployment of another provider, stream, body in memory
--- matrix: moderation_opt_in stream memory



=== TEST 105: moderation opted in: the next deployment of another provider, stream, body in a temporary file
--- matrix: moderation_opt_in stream file
