# Client keys (issue 9): who may call the gateway, for which models and
# regions, how much (requests and tokens per minute, concurrency, budgets)
# and at what cost; what the client is told (401, 404, 429 with Retry-After
# and x-ratelimit-* headers, its key's information) and what the operator
# sees (metrics, JSON status, access log variables); and that the client's
# key goes nowhere: not upstream, not into a log, not into an answer.
#
# The keys file of every block is KEYS below (a block may bring its own in
# `--- user_files`), the catalogue MODELS: k-chat is answered by sg at the
# entry's prices (1 and 2 USD per 1M tokens) and by us at its own (10 and
# 20). Every deployment id has the length of the name clients send, so that
# the body the reservation is computed from has one length.
#
# The blocks that need a sequence of requests, or requests at once, say
# `--- drive: NAME`: once the block's nginx answers GET /ready, drive_NAME
# below runs them with HTTP::Tiny against it and checks every answer, the
# mock's record of what reached it (X-Mock-Scenario: one id per request;
# the record gives the first 16 hex of the sha256 of the credential it got
# and the header it came in), the key information endpoint, the metrics and
# the access log. `--- minute_room: N` starts the block with at least N
# seconds left in the current minute (the windows are per minute, and a
# minute's requests weigh on the next one).
#
# Every block logs at info: at debug, nginx itself prints the request's
# headers, the client's key with them; the suite's secret scan looks for
# every key of this file's keys files in every log and answer.
use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Open2 ();
use JSON::PP ();
use Time::HiRes ();

repeat_each(1);
no_long_string();
no_shuffle();

our $KEYS = <<'_EOK_';
{
  "teams": [
    {"id": "team-a", "limits": {"rpm": 1000}},
    {"id": "team-small", "budget": {"usd": 0.004, "period": "day", "soft": 0.5}},
    {"id": "team-rl", "limits": {"rpm": 2}}
  ],
  "models": [
    {"model": "k-shared", "limits": {"rpm": 2}}
  ],
  "keys": [
    {"id": "app-a", "key": "sk-client-k150-app-a-0123456789", "owner": "alice@example.com",
     "team": "team-a", "labels": {"env": "test"}},
    {"id": "app-b", "key": "sk-client-k150-app-b-0123456789", "owner": "bob", "team": "team-a"},
    {"id": "rpm3", "key": "sk-client-k150-rpm3-0123456789", "limits": {"rpm": 3}},
    {"id": "tpm", "key": "sk-client-k150-tpm-0123456789", "limits": {"rpm": 1000, "tpm": 5000}},
    {"id": "tpm-small", "key": "sk-client-k150-tpm-small-0123456789", "limits": {"tpm": 1000}},
    {"id": "conc", "key": "sk-client-k150-conc-0123456789", "limits": {"concurrency": 1}},
    {"id": "settle", "key": "sk-client-k150-settle-0123456789", "limits": {"rpm": 1000, "tpm": 100000}},
    {"id": "hdr", "key": "sk-client-k150-hdr-0123456789", "limits": {"rpm": 10, "tpm": 100000}},
    {"id": "models", "key": "sk-client-k150-models-0123456789", "models": ["k-chat", "k3-*"]},
    {"id": "region-us", "key": "sk-client-k150-region-us-0123456789", "regions": ["us"]},
    {"id": "region-cn", "key": "sk-client-k150-region-cn-0123456789", "regions": ["cn"]},
    {"id": "region-ali", "key": "sk-client-k150-region-ali-0123456789", "regions": ["alibaba-cloud"]},
    {"id": "spender", "key": "sk-client-k150-spender-0123456789", "owner": "carol",
     "budget": {"usd": 1, "period": "day"}},
    {"id": "budget", "key": "sk-client-k150-budget-0123456789",
     "budget": {"usd": 0.01, "period": "day", "soft": 0.5}},
    {"id": "week", "key": "sk-client-k150-week-0123456789", "budget": {"usd": 1, "period": "week"}},
    {"id": "month", "key": "sk-client-k150-month-0123456789", "budget": {"usd": 1, "period": "month"}},
    {"id": "days7", "key": "sk-client-k150-days7-0123456789", "budget": {"usd": 1, "period": 7}},
    {"id": "small-1", "key": "sk-client-k150-small-1-0123456789", "team": "team-small"},
    {"id": "small-2", "key": "sk-client-k150-small-2-0123456789", "team": "team-small"},
    {"id": "rl-1", "key": "sk-client-k150-rl-1-0123456789", "team": "team-rl"},
    {"id": "rl-2", "key": "sk-client-k150-rl-2-0123456789", "team": "team-rl"},
    {"id": "disabled", "key": "sk-client-k150-disabled-0123456789", "disabled": true},
    {"id": "expired-date", "key": "sk-client-k150-expired-date-0123456789", "expires": "2020-01-01"},
    {"id": "expired-time", "key": "sk-client-k150-expired-time-0123456789", "expires": "2020-01-01T00:00:00Z"},
    {"id": "expired-secs", "key": "sk-client-k150-expired-secs-0123456789", "expires": 1577836800},
    {"id": "future", "key": "sk-client-k150-future-0123456789", "expires": "2099-12-31T23:59:59Z"},
    {"id": "hashed", "key": "sha256:HASHED_SHA256"},
    {"id": "hashed-upper", "key": "SHA256:UPPER_SHA256"}
  ]
}
_EOK_

# "hashed" is written as its digest, "hashed-upper" as its digest in upper
# case after "SHA256:"; their clear texts, for the secret scan too:
# {"key": "sk-client-k150-hashed-0123456789"}
# {"key": "sk-client-k150-hashed-upper-0123456789"}
our $HASHED = 'sk-client-k150-hashed-0123456789';
our $HASHED_UPPER = 'sk-client-k150-hashed-upper-0123456789';
$KEYS =~ s/HASHED_SHA256/sha256_hex($HASHED)/e;
$KEYS =~ s/UPPER_SHA256/uc sha256_hex($HASHED_UPPER)/e;

our %KEY = map { $_->{id} => $_->{key} } @{ JSON::PP::decode_json($KEYS)->{keys} };
$KEY{hashed} = $HASHED;
$KEY{'hashed-upper'} = $HASHED_UPPER;
our $UNKNOWN = 'sk-client-k150-unknown-0123456789';

our $MODELS = <<'_EOM_';
{"prefixes": ["acme/"],
 "models": [
  {"id": "k-chat", "aliases": ["k-chat-latest"], "pricing": {"input": 1, "output": 2},
   "deployments": [
     {"region": "sg", "model": "k-sg-1"},
     {"region": "us", "model": "k-us-1", "pricing": {"input": 10, "output": 20}}
   ]},
  {"id": "k-other", "pricing": {"input": 1, "output": 2},
   "deployments": [{"region": "sg", "model": "k-oth-s"}]},
  {"id": "k3-alpha", "pricing": {"input": 1, "output": 2}, "deployments": [{"region": "sg"}]},
  {"id": "k4-alpha", "pricing": {"input": 1, "output": 2}, "deployments": [{"region": "sg"}]},
  {"id": "k-shared", "pricing": {"input": 1, "output": 2}, "deployments": [{"region": "sg"}]}
 ]}
_EOM_

# the regions' keys (the mock's record names the first 16 hex of the sha256
# of the credential it got)
our %REGION_KEY = (sg => 'sk-mock', us => 'sk-mock-virginia', cn => 'sk-mock-beijing');

my $HTTP_CONFIG = <<'_EOC_';
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        keepalive 8;
    }

    qwen_region sg url=http://dashscope_mock path=/compatible-mode key=sk-mock;
    qwen_region us url=http://dashscope_mock path=/compatible-mode key=sk-mock-virginia;
    qwen_region cn url=http://dashscope_mock path=/compatible-mode key=sk-mock-beijing provider=other-cloud;
    qwen_models_file ../html/models.json;
    qwen_keys_file ../html/keys.json;

    log_format keys 'k150 status=$status key=$qwen_key team=$qwen_key_team '
                    'owner="$qwen_key_owner" budget=$qwen_budget_remaining '
                    'dep=$qwen_deployment cost=$qwen_cost len=$request_length '
                    'id=$http_x_mock_scenario';
_EOC_

my @LOCATION = (
    'qwen_gateway on;',
    'qwen_keys on;',
    'qwen_failover on;',
    'proxy_http_version 1.1;',
    'proxy_set_header Connection "";',
    'proxy_set_header Authorization $qwen_upstream_authorization;',
    'proxy_set_header X-Mock-Attempt $qwen_attempt;',
    'proxy_buffering off;',
);

sub gateway_config {
    my ($extra) = @_;
    $extra //= '';
    my $conf = "    access_log logs/keys.log keys;\n\n    location /v1/ {\n"
        . join('', map { "        $_\n" } @LOCATION,
                   map { s/^\s+//r } grep { /\S/ } split /\n/, $extra)
        . "        proxy_pass \$qwen_upstream\$qwen_upstream_path\$uri;\n    }\n";
    $conf .= <<'_EOC_';

    location = /v1/key { qwen_key_info; }
    location = /status { qwen_status json; }
    location = /metrics { qwen_status prometheus; }
    location = /ready { return 200 "ready\n"; }
_EOC_
    return $conf;
}

sub block_number {
    my ($block) = @_;
    my ($n) = $block->name =~ /\bTEST (\d+):/;
    return $n // 0;
}

add_block_preprocessor(sub {
    my $block = shift;
    my $n = block_number($block);

    # (a zone of its own per block: under TEST_NGINX_USE_HUP a reload keeps
    # a zone, and the counters of the previous block with it)
    $block->set_value('http_config', $HTTP_CONFIG . "    qwen_metrics_zone k150_$n 1m;\n")
        unless defined $block->http_config;
    $block->set_value('config', gateway_config(scalar $block->location))
        unless defined $block->config;

    my $files = $block->user_files;
    $files = ">>> keys.json\n$KEYS" unless defined $files;
    if (defined(my $in = $block->expires_in)) {
        # (here: the sections are read when the file starts)
        $files = ">>> keys.json\n"
            . '{"keys": [{"id": "soon", "key": "sk-client-k150-soon-0123456789", "expires": '
            . (time + $in) . '}]}' . "\n";
    }
    $files .= "\n" unless $files =~ /\n\z/;
    $files .= ">>> models.json\n$MODELS" unless $files =~ /^>>> models\.json$/m;
    $block->set_value('user_files', $files);

    $block->set_value('log_level', 'info') unless defined $block->log_level;
    $block->set_value('timeout', 10) unless defined $block->timeout;

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value('no_error_log', ['[error]', '[alert]', '[crit]', '[emerg]']);
    }

    # (a must_die block has a request too, as the real Test::Nginx wants)
    if (!defined $block->request && !defined $block->raw_request) {
        $block->set_value('request', 'GET /ready');
        $block->set_value('response_body', "ready\n")
            unless defined $block->response_body || defined $block->must_die;
    }

    if (defined(my $room = $block->minute_room)) {
        wait_minute_room($room);
    }

    # budgets reset at midnight UTC: no block starts in its last 30 s
    my $to_midnight = 86400 - time % 86400;
    sleep($to_midnight + 1) if $to_midnight < 30;
});

# ------------------------------------------------------------- helpers --

our $JSON = JSON::PP->new->canonical;
our $HTTP = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
our $MOCK = "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}";

sub gw { "http://127.0.0.1:" . server_port() }

# at least $room seconds before the minute ends
sub wait_minute_room {
    my ($room) = @_;
    my $left = 60 - time % 60;
    Time::HiRes::sleep($left + 0.2) if $left < $room;
}

sub sha16 { substr(sha256_hex($_[0]), 0, 16) }

my $SCENARIO = 0;
sub scenario { "k150-$$-" . ++$SCENARIO }

# a chat body: model, max_tokens, max_completion_tokens, stream, content
sub chat_body {
    my (%o) = @_;
    my $body = '{"model":"' . ($o{model} // 'k-chat') . '","messages":[{"role":"user","content":"'
             . ($o{content} // 'Say hello.') . '"}]';
    $body .= ',"max_tokens":' . $o{max_tokens} if defined $o{max_tokens};
    $body .= ',"max_completion_tokens":' . $o{max_completion_tokens}
        if defined $o{max_completion_tokens};
    $body .= ',"stream":true,"stream_options":{"include_usage":true}' if $o{stream};
    return $body . '}';
}

# the tokens the gateway reserves for a body: a quarter token a byte, and
# max_tokens (or max_completion_tokens), else 4096
sub reserve_of {
    my ($body, $completion) = @_;
    return int((length($body) + 3) / 4) + ($completion // 4096);
}

sub key_headers {
    my ($key, $how) = @_;
    return () unless defined $key;
    my $k = $KEY{$key} // $key;
    $how //= 'bearer';
    return (Authorization => "Bearer $k") if $how eq 'bearer';
    return ($how => $k);
}

# POST /v1/chat/completions: key (an id of KEYS, or a key), how (bearer,
# x-api-key, api-key), usage "P,C", plan, fault, scenario, headers, body
sub chat {
    my (%o) = @_;
    my %h = (key_headers($o{key}, $o{how}), %{ $o{headers} || {} });
    $h{'Content-Type'} = 'application/json';
    $h{'X-Mock-Usage'} = $o{usage} if defined $o{usage};
    $h{'X-Mock-Plan'} = $o{plan} if defined $o{plan};
    $h{'X-Mock-Fault'} = $o{fault} if defined $o{fault};
    $h{'X-Mock-Scenario'} = $o{scenario} if defined $o{scenario};
    my $body = $o{body} // chat_body(%o);
    my $res = $HTTP->post(gw() . ($o{path} // '/v1/chat/completions'),
                          { headers => \%h, content => $body });
    $res->{sent} = $body;
    return $res;
}

sub info {
    my ($key, $how) = @_;
    my $res = $HTTP->get(gw() . '/v1/key', { headers => { key_headers($key, $how) } });
    $res->{json} = eval { JSON::PP::decode_json($res->{content}) };
    return $res;
}

sub status_json {
    return eval { JSON::PP::decode_json($HTTP->get(gw() . '/status')->{content}) } || {};
}

# the metrics, parsed by the Python client's reference parser: "name{labels} value"
sub metrics {
    my $text = $HTTP->get(gw() . '/metrics')->{content} // '';
    my $pid = IPC::Open2::open2(my $out, my $in, "$ENV{TEST_NGINX_REPO}/t/lib/promcheck.py");
    print $in $text;
    close $in;
    my $parsed = do { local $/; <$out> };
    waitpid $pid, 0;
    return ($text, $parsed, $? >> 8);
}

sub mock_record {
    my ($id) = @_;
    my $res = $HTTP->get("$MOCK/__mock/scenario/$id");
    return eval { JSON::PP::decode_json($res->{content}) } || {};
}

sub mock_requests { scalar @{ mock_record($_[0])->{requests} || [] } }

sub error_body {
    my ($res) = @_;
    return eval { JSON::PP::decode_json($res->{content}) } || {};
}

# the single value of a response header (undef if absent, the values joined
# by " | " if it came more than once)
sub hdr {
    my ($res, $name) = @_;
    my $v = $res->{headers}{lc $name};
    return ref $v ? join(' | ', @$v) : $v;
}

sub access_log_lines {
    my $file = server_root() . '/logs/keys.log';
    open my $fh, '<', $file or return ();
    return <$fh>;
}

# the access log line of a scenario (written after the answer: waited for)
sub access_line {
    my ($id) = @_;
    my $deadline = Time::HiRes::time() + 3;
    while (1) {
        for (access_log_lines()) {
            return $_ if /^k150 .* id=\Q$id\E$/;
        }
        return undef if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
}

sub error_log_text {
    open my $fh, '<', $Test::Nginx::Util::ErrLogFile or return '';
    local $/;
    return <$fh>;
}

# what is left of the minute for a refusal now, in seconds (1 to 60), by
# gettimeofday() as nginx reads it (time() may lag it by a few ms)
sub minute_left { 60 - int(Time::HiRes::time()) % 60 }

# a Retry-After (and the reset headers) from a refusal of the minute: what
# is left of it, give or take the second the request took
sub check_minute_retry {
    my ($name, $res, $which) = @_;
    my $ra = hdr($res, 'retry-after') // '';
    my $left = minute_left();
    # the refusal came now or a second ago (60 then 1 over a minute's end);
    # a second either way for the clocks
    ok($ra =~ /^\d+$/ && $ra >= 1 && $ra <= 60 && grep({ ($ra - $left) % 60 == $_ } 59, 0, 1, 2),
       "$name: Retry-After is what is left of the minute") or diag("Retry-After '$ra', $left s left");
    if ($which) {
        is(hdr($res, "x-ratelimit-reset-$which"), "${ra}s",
           "$name: x-ratelimit-reset-$which says the same");
    }
}

# a 429 rate_limit_exceeded of the gateway's own
sub check_rate_limited {
    my ($name, $res, $type, $message) = @_;
    is($res->{status}, 429, "$name: 429");
    my $e = error_body($res)->{error} || {};
    is($e->{code}, 'rate_limit_exceeded', "$name: code rate_limit_exceeded");
    is($e->{type}, $type, "$name: type $type");
    like($e->{message} // '', $message, "$name: the message says why");
    like(hdr($res, 'content-type') // '', qr{^application/json}, "$name: a JSON error");
}

our %ERR401 = (
    missing => '{"error":{"message":"You didn\'t provide an API key. Send it in the '
             . 'Authorization header (Authorization: Bearer YOUR_KEY).","type":'
             . '"invalid_request_error","param":null,"code":"missing_api_key"}}' . "\n",
    invalid => '{"error":{"message":"Incorrect API key provided.","type":'
             . '"invalid_request_error","param":null,"code":"invalid_api_key"}}' . "\n",
);

sub not_found_body {
    my ($model) = @_;
    return '{"error":{"message":"The model `' . $model . '` does not exist or you do '
         . 'not have access to it.","type":"invalid_request_error","param":"model",'
         . '"code":"model_not_found"}}' . "\n";
}

# runs the block's driver once its nginx answers GET /ready
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run;
    my $drive = $block->drive;
    return unless defined $drive;
    $drive =~ s/\s+\z//;
    my $sub = main->can("drive_$drive") or die "no driver drive_$drive\n";
    $sub->($block->name =~ s/^.*?\bTEST \d+: //r, $block);
});

# --------------------------------------------------------------- drivers --

# sends a request's head and the first bytes of a 10 MB body; returns the
# socket and the time
sub send_head {
    my (@headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Timeout => 5) or die "connect: $!";
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\nContent-Length: 10000000\r\n"
        . join('', map { "$_\r\n" } @headers) . "\r\n" . '{"model":"k-chat","messages":[';
    return ($s, Time::HiRes::time());
}

# the answer's head and body (by Content-Length), or what came by $wait s
sub read_answer {
    my ($s, $wait) = @_;
    my $buf = '';
    my $deadline = Time::HiRes::time() + $wait;
    while (Time::HiRes::time() < $deadline) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        last unless select(my $rout = $rin, undef, undef, $deadline - Time::HiRes::time());
        last unless sysread($s, $buf, 65536, length $buf);
        if ($buf =~ /\A(.*?\r\n\r\n)/s) {
            my $head = $1;
            my ($len) = $head =~ /^Content-Length: (\d+)\r$/mi;
            last if defined $len && length($buf) >= length($head) + $len;
        }
    }
    return $buf;
}

# TEST: no key, no body read
sub drive_no_body_read {
    my ($name) = @_;
    my $sid = scenario();
    my ($s, $t0) = send_head("X-Mock-Scenario: $sid");
    my $got = read_answer($s, 5);
    my $took = Time::HiRes::time() - $t0;
    like($got, qr{\AHTTP/1\.1 401 }, "$name: no key: 401 with the body still coming");
    ok($took < 1, "$name: at once, not after the body") or diag("$took s");
    like($got, qr/\r\n\r\n\Q$ERR401{missing}\E\z/, "$name: missing_api_key");
    close $s;
    is(mock_requests($sid), 0, "$name: nothing reached the mock");

    ($s, $t0) = send_head('Authorization: Bearer ' . $KEY{'app-a'});
    $got = read_answer($s, 1.5);
    is($got, '', "$name: with a valid key, the gateway waits for the body (nothing in 1.5 s)");
    close $s;
}

# TEST: expiry at run time
sub drive_expiry {
    my ($name) = @_;
    my $res = chat(key => 'sk-client-k150-soon-0123456789');
    is($res->{status}, 200, "$name: before its expiry: answered");
    my $at = (info('sk-client-k150-soon-0123456789')->{json} || {})->{expires_at} // 0;
    ok($at > time && $at <= time + 5, "$name: its information says when") or diag("expires_at $at");
    Time::HiRes::sleep($at - Time::HiRes::time() + 1.1) if $at > time;
    $res = chat(key => 'sk-client-k150-soon-0123456789');
    is($res->{status}, 401, "$name: after: 401");
    is($res->{content}, $ERR401{invalid}, "$name: invalid_api_key");
    like(error_log_text(), qr/qwen: rejected request: key "soon" has expired/, "$name: logged, by alias");
}

# TEST: the three headers a key may come in
sub drive_headers {
    my ($name) = @_;
    my @cases = (['bearer', 'app-a'], ['x-api-key', 'app-a'], ['api-key', 'app-a'],
                 ['X-API-KEY', 'app-b'], ['Api-Key', 'app-b'], ['hashed-bearer', 'hashed']);
    for my $c (@cases) {
        my ($how, $id) = @$c;
        my $sid = scenario();
        my $res = chat(key => $id, how => ($how eq 'hashed-bearer' ? 'bearer' : $how),
                       scenario => $sid);
        is($res->{status}, 200, "$name: the key of $id in $how is accepted");
        like(access_line($sid) // '', qr/ key=\Q$id\E /, "$name: \$qwen_key is $id ($how)");
    }
    my $res = chat(headers => { Authorization => "bearer $KEY{'app-a'}" });
    is($res->{status}, 200, "$name: the scheme in lower case (bearer) is accepted");
    $res = chat(headers => { Authorization => "Basic $KEY{'app-a'}" });
    is($res->{status}, 401, "$name: another scheme in Authorization is no key");
    is($res->{content}, $ERR401{missing}, "$name: ... missing_api_key");
    $res = chat(headers => { Authorization => 'Bearer    ' });
    is($res->{content}, $ERR401{missing}, "$name: Bearer and blanks: missing_api_key");
}

# TEST: unknown, disabled, expired: one answer for all
sub drive_invalid {
    my ($name) = @_;
    my %bodies;
    for my $id ('unknown', 'disabled', 'expired-date', 'expired-time', 'expired-secs') {
        my $sid = scenario();
        my $res = chat(key => ($id eq 'unknown' ? $UNKNOWN : $id), scenario => $sid);
        is($res->{status}, 401, "$name: $id: 401");
        is($res->{content}, $ERR401{invalid}, "$name: $id: invalid_api_key, the same body");
        ok(!defined hdr($res, 'x-ratelimit-limit-requests'), "$name: $id: no rate-limit header");
        is(mock_requests($sid), 0, "$name: $id: nothing reached the mock");
        like(access_line($sid) // '', qr/^k150 status=401 key=- team=- owner="-" budget=- /,
             "$name: $id: no \$qwen_key in the access log");
    }
    for my $id ('future', 'hashed', 'hashed-upper') {
        is(chat(key => $id)->{status}, 200, "$name: $id: answered");
    }
    # a known key with something after it, a prefix of it
    is(chat(key => "$KEY{'app-a'}x")->{content}, $ERR401{invalid}, "$name: a key and more: invalid");
    is(chat(key => substr($KEY{'app-a'}, 0, -1))->{content}, $ERR401{invalid},
       "$name: a key but its last character: invalid");
    # the clear key of a hashed one is what the client sends, not its digest
    is(chat(key => 'sha256:' . sha256_hex($HASHED))->{status}, 401,
       "$name: the digest itself is no key");
    like(error_log_text(), qr/\[info\] .*qwen: rejected request: key "disabled" is disabled/,
         "$name: the log says why (disabled), by alias");
    like(error_log_text(), qr/\[info\] .*qwen: rejected request: key "expired-date" has expired/,
         "$name: the log says why (expired), by alias");
}

# TEST: models and patterns
sub drive_models {
    my ($name) = @_;
    my @ok = ('k-chat', 'K-CHAT', 'k-chat-latest', 'acme/k-chat', 'k3-alpha');
    for my $m (@ok) {
        my $res = chat(key => 'models', model => $m);
        is($res->{status}, 200, "$name: model $m is allowed") or diag($res->{content});
    }
    for my $m ('k-other', 'k4-alpha', 'k-shared') {
        my $sid = scenario();
        my $res = chat(key => 'models', model => $m, scenario => $sid);
        is($res->{status}, 404, "$name: model $m is not: 404");
        is($res->{content}, not_found_body($m),
           "$name: $m: the very body an unknown model gets");
        is(mock_requests($sid), 0, "$name: $m: nothing reached the mock");
    }
    my $res = chat(key => 'models', model => 'k-nowhere');
    is($res->{content}, not_found_body('k-nowhere'), "$name: an unknown model: the same");
    $res = chat(key => 'app-a', model => 'k-nowhere');
    is($res->{content}, not_found_body('k-nowhere'), "$name: ... for a key of any model too");
    is(chat(key => 'app-a', model => 'k-other')->{status}, 200,
       "$name: a key without \"models\" may use any");

    my (undef, $parsed, $rc) = metrics();
    is($rc, 0, "$name: the metrics parse");
    like($parsed, qr/^qwen_key_refusals_total\{key="models",reason="model",team=""\} 3\.0$/m,
         "$name: the three refusals counted, reason model") or diag($parsed);
}

# TEST: regions
sub drive_regions {
    my ($name) = @_;
    my $sid = scenario();
    my $res = chat(key => 'region-us', scenario => $sid);
    is($res->{status}, 200, "$name: region-us: answered");
    like($res->{content}, qr/"content":"Mock reply from k-us-1\."/, "$name: by us, the key's region");
    my @r = @{ mock_record($sid)->{requests} || [] };
    is(scalar @r, 1, "$name: one request reached the mock");
    is($r[0]{credential_sha256}, sha16($REGION_KEY{us}), "$name: with us's key");

    # us failing: no failover into a region the key may not use
    $sid = scenario();
    $res = chat(key => 'region-us', scenario => $sid, plan => '*=status:503');
    is($res->{status}, 503, "$name: us failing: its answer, no move to sg");
    @r = @{ mock_record($sid)->{requests} || [] };
    is(join(',', map { $_->{model} } @r), 'k-us-1', "$name: only us was tried");


    # a provider's name stands for its regions
    $res = chat(key => 'region-ali');
    like($res->{content}, qr/"content":"Mock reply from k-sg-1\."/,
         "$name: region-ali (a provider): answered by sg, the first of the chain");

    # no region of the model is the key's: the 404 of an unknown model
    $sid = scenario();
    $res = chat(key => 'region-cn', scenario => $sid);
    is($res->{status}, 404, "$name: region-cn and a model offered in sg and us: 404");
    is($res->{content}, not_found_body('k-chat'),
       "$name: region-cn: the very body an unknown model gets (nothing revealed)");
    is(mock_requests($sid), 0, "$name: region-cn: nothing reached the mock");
}

# TEST: requests per minute
sub drive_rpm {
    my ($name) = @_;
    my @ids = map { scenario() } 1 .. 5;
    for my $i (0 .. 2) {
        my $res = chat(key => 'rpm3', scenario => $ids[$i]);
        is($res->{status}, 200, "$name: request " . ($i + 1) . " of 3: 200");
        is(hdr($res, 'x-ratelimit-limit-requests'), 3, "$name: request " . ($i + 1) . ": limit 3");
        is(hdr($res, 'x-ratelimit-remaining-requests'), 2 - $i,
           "$name: request " . ($i + 1) . ": " . (2 - $i) . " remaining");
        like(hdr($res, 'x-ratelimit-reset-requests') // '', qr/^(?:[1-9]|[1-5]\d|60)s$/,
             "$name: request " . ($i + 1) . ": reset in seconds");
        ok(!defined hdr($res, 'x-ratelimit-limit-tokens'),
           "$name: request " . ($i + 1) . ": no token headers (no tpm)");
    }
    for my $i (3, 4) {
        my $res = chat(key => 'rpm3', scenario => $ids[$i]);
        check_rate_limited("$name: request " . ($i + 1), $res, 'requests',
            qr/^Rate limit reached: requests per minute of key "rpm3"\. Please try again in \d+s\.$/);
        check_minute_retry("$name: request " . ($i + 1), $res, 'requests');
        is(hdr($res, 'x-ratelimit-limit-requests'), 3, "$name: request " . ($i + 1) . ": limit 3");
        is(hdr($res, 'x-ratelimit-remaining-requests'), 0, "$name: request " . ($i + 1) . ": 0 remaining");
        is(mock_requests($ids[$i]), 0, "$name: request " . ($i + 1) . " did not reach the mock");
    }
    is(join(',', map { mock_requests($_) } @ids[0 .. 2]), '1,1,1',
       "$name: the three admitted reached the mock");
    is(chat(key => 'app-a')->{status}, 200, "$name: another key is not limited by it");
    my $i = info('rpm3')->{json} || {};
    is($i->{usage}{requests_per_minute}, 3, "$name: the refusals did not count as requests");
    my (undef, $parsed) = metrics();
    like($parsed, qr/^qwen_key_refusals_total\{key="rpm3",reason="rpm",team=""\} 2\.0$/m,
         "$name: two refusals, reason rpm") or diag($parsed);
}

# TEST: tokens per minute, and streams refused up front
sub drive_tpm {
    my ($name) = @_;
    # 4000 tokens used of 5000
    my $res = chat(key => 'tpm', max_tokens => 100, usage => '3000,1000');
    is($res->{status}, 200, "$name: a request that reserves little but uses 4000: 200");
    is(hdr($res, 'x-ratelimit-remaining-tokens'), 5000 - reserve_of($res->{sent}, 100),
       "$name: ... the reservation counted at admission");

    # a stream whose reservation would cross the limit: refused before the upstream
    my $sid = scenario();
    $res = chat(key => 'tpm', max_tokens => 2000, stream => 1, scenario => $sid);
    check_rate_limited("$name: a stream reserving 2000 more", $res, 'tokens',
        qr/^Rate limit reached: tokens per minute of key "tpm"\. Please try again in \d+s\.$/);
    check_minute_retry("$name: a stream reserving 2000 more", $res, 'tokens');
    is(hdr($res, 'x-ratelimit-remaining-tokens'), 1000,
       "$name: ... 1000 tokens remaining: the real 4000 were settled");
    is(hdr($res, 'x-ratelimit-limit-tokens'), 5000, "$name: ... limit 5000");
    is(mock_requests($sid), 0, "$name: ... nothing reached the mock");

    # one that fits
    $sid = scenario();
    $res = chat(key => 'tpm', max_tokens => 500, stream => 1, usage => '20,10', scenario => $sid);
    is($res->{status}, 200, "$name: a stream reserving 500 fits");
    like($res->{content}, qr/data: \[DONE\]\n\n\z/, "$name: ... and streams to its end");
    is(hdr($res, 'x-ratelimit-remaining-tokens'), 1000 - reserve_of($res->{sent}, 500),
       "$name: ... its reservation counted");

    # bigger than the limit itself: refused whatever was used
    for my $c (['max_tokens', 2000], ['max_completion_tokens', 1500], ['neither', undef]) {
        my ($field, $n) = @$c;
        $sid = scenario();
        $res = chat(key => 'tpm-small', stream => 1, scenario => $sid,
                    ($field ne 'neither' ? ($field => $n) : ()));
        my $want = reserve_of($res->{sent}, $n);
        check_rate_limited("$name: tpm 1000 and $field " . ($n // '(4096)'), $res, 'tokens',
            qr/^Request too large: it may use \Q$want\E tokens, more than the limit of 1000 tokens per minute\.$/);
        ok(!defined hdr($res, 'retry-after'), "$name: tpm 1000 and $field: no Retry-After (it can never fit)");
        is(hdr($res, 'x-ratelimit-limit-tokens'), 1000, "$name: tpm 1000 and $field: the rate-limit headers");
        is(mock_requests($sid), 0, "$name: tpm 1000 and $field: nothing reached the mock");
    }
    $res = chat(key => 'tpm-small', max_tokens => 100, stream => 1);
    is($res->{status}, 200, "$name: tpm 1000 and max_tokens 100: answered");

    my (undef, $parsed) = metrics();
    like($parsed, qr/^qwen_key_refusals_total\{key="tpm",reason="tpm",team=""\} 1\.0$/m,
         "$name: the refusal counted, reason tpm") or diag($parsed);
    like($parsed, qr/^qwen_key_refusals_total\{key="tpm-small",reason="tpm",team=""\} 3\.0$/m,
         "$name: and the three too large") or diag($parsed);
}

# sends a request on a socket of its own and returns the socket, unread
sub send_raw {
    my (%o) = @_;
    my %h = (key_headers($o{key}), %{ $o{headers} || {} });
    my $body = chat_body(%o);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(),
                                  Timeout => 5) or die "connect: $!";
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n"
        . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n" . $body;
    return $s;
}

sub read_raw {
    my ($s) = @_;
    local $/;
    my $r = <$s>;
    close $s;
    my ($status) = ($r // '') =~ m{^HTTP/1\.1 (\d+)};
    return ($status // 0, $r // '');
}

sub concurrent_now {
    my ($key) = @_;
    return (info($key)->{json} || {})->{usage}{concurrent};
}

# TEST: concurrency
sub drive_concurrency {
    my ($name) = @_;
    # a slow answer in flight
    my $s = send_raw(key => 'conc', headers => { 'X-Mock-Fault' => 'slow:1500' });
    Time::HiRes::sleep(0.4);
    is(concurrent_now('conc'), 1, "$name: one request in flight");
    my $sid = scenario();
    my $res = chat(key => 'conc', scenario => $sid);
    check_rate_limited("$name: a second one at once", $res, 'requests',
        qr/^Rate limit reached: concurrent requests of key "conc"\. Please try again in 1s\.$/);
    is(hdr($res, 'retry-after'), 1, "$name: Retry-After: 1");
    is(mock_requests($sid), 0, "$name: it did not reach the mock");
    is(chat(key => 'app-a')->{status}, 200, "$name: another key is not held up");
    my ($st) = read_raw($s);
    is($st, 200, "$name: the slow one is answered");
    Time::HiRes::sleep(0.1);
    is(concurrent_now('conc'), 0, "$name: and released");
    is(chat(key => 'conc')->{status}, 200, "$name: the next one is admitted");

    # a stream holds its place to its end
    $s = send_raw(key => 'conc', stream => 1,
                  headers => { 'X-Mock-Chunks' => 6, 'X-Mock-Interval-Ms' => 250 });
    Time::HiRes::sleep(0.5);
    is(chat(key => 'conc')->{status}, 429, "$name: during a stream: 429");
    my ($st2, $raw) = read_raw($s);
    is($st2, 200, "$name: the stream is answered");
    like($raw, qr/data: \[DONE\]/, "$name: ... to its end");
    Time::HiRes::sleep(0.1);
    is(chat(key => 'conc')->{status}, 200, "$name: after the stream: admitted");

    # a failed request gives its place back
    $res = chat(key => 'conc', fault => 'status:400');
    is($res->{status}, 400, "$name: an upstream 400 passes through");
    is(chat(key => 'conc')->{status}, 200, "$name: after it: admitted");

    # a client that leaves mid-stream gives its place back
    $s = send_raw(key => 'conc', stream => 1,
                  headers => { 'X-Mock-Chunks' => 20, 'X-Mock-Interval-Ms' => 200 });
    Time::HiRes::sleep(0.5);
    close $s;
    my $free;
    for (1 .. 30) {
        Time::HiRes::sleep(0.1);
        last if ($free = concurrent_now('conc')) == 0;
    }
    is($free, 0, "$name: a client gone mid-stream: released");
    is(chat(key => 'conc')->{status}, 200, "$name: and the next one is admitted");

    my (undef, $parsed) = metrics();
    like($parsed, qr/^qwen_key_refusals_total\{key="conc",reason="concurrency",team=""\} 2\.0$/m,
         "$name: two refusals, reason concurrency") or diag($parsed);
}

# TEST: settlement
sub drive_settle {
    my ($name) = @_;
    my $used = 0;
    my $tpm = 100000;
    my $n = 0;
    my $step = sub {
        my ($what, %o) = @_;
        my $res = chat(key => 'settle', %o);
        $n++;
        my $mt = $o{max_tokens} // $o{max_completion_tokens};
        is(hdr($res, 'x-ratelimit-remaining-tokens'), $tpm - $used - reserve_of($res->{sent}, $mt),
           "$name: $what: the tokens remaining at admission are the limit, less "
           . "what was used ($used), less its reservation");
        is(hdr($res, 'x-ratelimit-remaining-requests'), 1000 - $n, "$name: $what: requests remaining");
        return $res;
    };
    my $check = sub {
        my ($what) = @_;
        my $i = info('settle')->{json} || {};
        is($i->{usage}{tokens_per_minute}, $used,
           "$name: after $what: the minute's tokens are the real usage ($used)");
        is($i->{usage}{requests_per_minute}, $n, "$name: after $what: $n requests");
        is($i->{usage}{concurrent}, 0, "$name: after $what: none in flight");
    };

    my $res = $step->('a request reserving 1000, using 50', max_tokens => 1000, usage => '30,20');
    is($res->{status}, 200, "$name: answered");
    $used += 50;
    $check->('it');

    $res = $step->('a stream reserving 500, using 100', max_tokens => 500, stream => 1, usage => '70,30');
    like($res->{content}, qr/"usage":\{"prompt_tokens":70,"completion_tokens":30,/, "$name: the stream's usage");
    $used += 100;
    $check->('the stream');

    # usage the reservation did not foresee (an upstream that ignores
    # max_tokens): the real usage is what counts
    $res = $step->('a stream reserving 10, using 2000', max_tokens => 10, stream => 1, usage => '1500,500');
    $used += 2000;
    $check->('the stream over its reservation');

    # nothing used, nothing counted: an upstream error
    $res = $step->('an upstream 400', max_completion_tokens => 700, fault => 'status:400');
    is($res->{status}, 400, "$name: the upstream's 400 passes through");
    $check->('the 400 (its reservation released)');

    # the default reservation (no max_tokens)
    $res = $step->('a request without max_tokens, using 7', usage => '5,2');
    $used += 7;
    $check->('it');

    # an answer without usage (the client left the stream before its usage
    # chunk): its reservation stays counted
    my $s = send_raw(key => 'settle', stream => 1, max_tokens => 300,
                     headers => { 'X-Mock-Chunks' => 20, 'X-Mock-Interval-Ms' => 200 });
    Time::HiRes::sleep(0.5);
    close $s;
    $n++;
    for (1 .. 30) {
        Time::HiRes::sleep(0.1);
        last if (concurrent_now('settle') // 1) == 0;
    }
    $used += reserve_of(chat_body(stream => 1, max_tokens => 300), 300);
    $check->('a stream the client left before its usage (its reservation stays)');

    my (undef, $parsed) = metrics();
    like($parsed, qr/^qwen_key_tokens_total\{key="settle",team="",type="input"\} 1605\.0$/m,
         "$name: the input tokens in the metrics") or diag($parsed);
    like($parsed, qr/^qwen_key_tokens_total\{key="settle",team="",type="output"\} 552\.0$/m,
         "$name: the output tokens in the metrics") or diag($parsed);
    like($parsed, qr/^qwen_key_requests_total\{key="settle",team=""\} 6\.0$/m,
         "$name: six requests settled") or diag($parsed);
}

# TEST: the answering deployment's prices
sub drive_prices {
    my ($name) = @_;
    my $sid1 = scenario();
    my $res = chat(key => 'spender', usage => '1000,500', scenario => $sid1);
    like($res->{content}, qr/Mock reply from k-sg-1\./, "$name: sg answers");
    like(access_line($sid1) // '', qr/ key=spender .* budget=0\.998000000 dep=sg\/k-sg-1 cost=0\.002000000 /,
         "$name: at 1 and 2 USD per 1M: 0.002 spent, \$qwen_budget_remaining after it");

    my $sid2 = scenario();
    $res = chat(key => 'spender', usage => '1000,500', plan => '1=status:503', scenario => $sid2);
    like($res->{content}, qr/Mock reply from k-us-1\./, "$name: after a 503 at sg, us answers");
    is(join(',', map { $_->{model} } @{ mock_record($sid2)->{requests} || [] }), 'k-sg-1,k-us-1',
       "$name: the mock got both attempts");
    like(access_line($sid2) // '', qr/ key=spender .* budget=0\.978000000 dep=us\/k-us-1 cost=0\.020000000 /,
         "$name: at us's 10 and 20: 0.02 more");

    my $i = info('spender')->{json} || {};
    is($i->{budget}{spent}, '0.022', "$name: the key's information: 0.022 spent");
    is($i->{budget}{remaining}, '0.978', "$name: 0.978 remaining");
    my (undef, $parsed) = metrics();
    like($parsed, qr/^qwen_key_cost_usd_total\{key="spender",team=""\} 0\.022$/m,
         "$name: qwen_key_cost_usd_total") or diag($parsed);
    like($parsed, qr/^qwen_key_budget_spent_usd\{key="spender",team=""\} 0\.022$/m,
         "$name: qwen_key_budget_spent_usd") or diag($parsed);
    my ($row) = grep { $_->{kind} eq 'key' && $_->{id} eq 'spender' } @{ status_json()->{keys} || [] };
    is($row->{spent} // '', '0.022', "$name: the JSON status's spent");
    is($row->{cost} // '', '0.022', "$name: the JSON status's cost");
}

# midnight UTC after now
sub next_midnight { my $t = time; $t - $t % 86400 + 86400 }

# TEST: a budget spent, a soft threshold, a team's budget
sub drive_budget {
    my ($name) = @_;
    # 0.004, 0.006 (60 %: the warning), 0.011 (over: admitted, as spent < budget before it)
    for my $c (['4000,0', 200], ['2000,0', 200], ['5000,0', 200]) {
        my $res = chat(key => 'budget', usage => $c->[0]);
        is($res->{status}, $c->[1], "$name: spending $c->[0] tokens at 1 USD per 1M: $c->[1]");
    }
    my $sid = scenario();
    my $res = chat(key => 'budget', scenario => $sid);
    is($res->{status}, 429, "$name: over the budget: 429");
    my $e = error_body($res)->{error} || {};
    is($e->{code}, 'insufficient_quota', "$name: code insufficient_quota");
    is($e->{type}, 'insufficient_quota', "$name: type insufficient_quota");
    my $reset = next_midnight();
    like($e->{message} // '', qr/^The budget of key "budget" for this period is spent; it resets at (\d+) \(seconds since 1970, UTC\)\.$/,
         "$name: the message names the key and the reset");
    my ($at) = ($e->{message} // '') =~ /resets at (\d+)/;
    is($at, $reset, "$name: the reset is the next midnight, UTC");
    my $ra = hdr($res, 'retry-after') // 0;
    ok(abs($ra - ($reset - time)) <= 2, "$name: Retry-After: until then")
        or diag("Retry-After $ra, " . ($reset - time) . " s to midnight");
    is(mock_requests($sid), 0, "$name: it did not reach the mock");

    my $i = info('budget')->{json} || {};
    is($i->{budget}{spent}, '0.011', "$name: the key's information: 0.011 spent");
    is($i->{budget}{remaining}, '0', "$name: nothing remaining");
    is($i->{budget}{resets_at}, $reset, "$name: resets at midnight");

    my @warn = error_log_text() =~ /^(.*\[warn\].*qwen: key "budget" has spent.*)$/mg;
    is(scalar @warn, 1, "$name: the soft threshold warned once") or diag(join "\n", @warn);
    like($warn[0] // '', qr/qwen: key "budget" has spent 50% of its budget for the period/,
         "$name: ... saying so");

    # a team's budget: small-1 spends it, small-2 is refused
    is(chat(key => 'small-1', usage => '5000,0')->{status}, 200, "$name: small-1 spends 0.005 of team-small's 0.004");
    $res = chat(key => 'small-2');
    is($res->{status}, 429, "$name: small-2, of the same team: 429");
    like((error_body($res)->{error} || {})->{message} // '',
         qr/^The budget of team "team-small" for this period is spent; it resets at \Q$reset\E /,
         "$name: the message names the team");
    is(chat(key => 'app-a')->{status}, 200, "$name: a key of another team is not held");
    my @team_warn = error_log_text() =~ /^(.*\[warn\].*qwen: team "team-small" has spent.*)$/mg;
    is(scalar @team_warn, 1, "$name: the team's soft threshold warned once");

    my (undef, $parsed) = metrics();
    like($parsed, qr/^qwen_key_refusals_total\{key="budget",reason="budget",team=""\} 1\.0$/m,
         "$name: the key's refusal counted, reason budget") or diag($parsed);
    like($parsed, qr/^qwen_key_refusals_total\{key="small-2",reason="budget",team="team-small"\} 1\.0$/m,
         "$name: small-2's too") or diag($parsed);
    like($parsed, qr/^qwen_key_refusals_total\{reason="budget",team="team-small"\} 1\.0$/m,
         "$name: and the team's") or diag($parsed);
    like($parsed, qr/^qwen_key_budget_spent_usd\{team="team-small"\} 0\.005$/m,
         "$name: the team's spend") or diag($parsed);
}

# TEST: the periods
sub drive_periods {
    my ($name) = @_;
    my $now = time;
    my $day = int($now / 86400);
    # weeks start on Mondays (1970-01-01 was a Thursday)
    my $monday = ($day - ($day + 3) % 7 + 7) * 86400;
    my @g = gmtime($now);
    my ($y, $m) = ($g[5] + 1900, $g[4] + 2);
    ($y, $m) = ($y + 1, 1) if $m == 13;
    my $month = days_from_civil($y, $m, 1) * 86400;

    is((info('week')->{json} || {})->{budget}{resets_at}, $monday, "$name: week: next Monday 00:00 UTC");
    is((info('month')->{json} || {})->{budget}{resets_at}, $month, "$name: month: the 1st of next month");
    my $r = (info('days7')->{json} || {})->{budget}{resets_at} // 0;
    ok($r >= $now + 7 * 86400 - 1 && $r <= time + 7 * 86400 + 1, "$name: 7 days: 7 days from now")
        or diag("resets_at $r, now $now");
    is(chat(key => 'days7', usage => '10,0')->{status}, 200, "$name: days7 spends");
    my $r2 = (info('days7')->{json} || {})->{budget}{resets_at} // 0;
    ok($r2 >= $now + 7 * 86400 - 1 && $r2 <= time + 7 * 86400 + 1,
       "$name: 7 days from the first spend");
    sleep 2;
    is((info('days7')->{json} || {})->{budget}{resets_at}, $r2, "$name: and it stays there");
}

sub days_from_civil {
    my ($y, $m, $d) = @_;
    $y -= $m <= 2 ? 1 : 0;
    my $era = int($y / 400);
    my $yoe = $y - $era * 400;
    my $doy = int((153 * ($m + ($m > 2 ? -3 : 9)) + 2) / 5) + $d - 1;
    my $doe = $yoe * 365 + int($yoe / 4) - int($yoe / 100) + $doy;
    return $era * 146097 + $doe - 719468;
}

# TEST: the key information endpoint
sub drive_info {
    my ($name) = @_;
    is(chat(key => 'app-a', usage => '10,5', max_tokens => 50)->{status}, 200, "$name: app-a uses 15 tokens");
    for my $how ('bearer', 'x-api-key', 'api-key') {
        my $res = info('app-a', $how);
        is($res->{status}, 200, "$name: GET with the key in $how: 200");
        like(hdr($res, 'content-type') // '', qr{^application/json}, "$name: $how: JSON");
        ok($res->{json}, "$name: $how: the answer parses as JSON") or diag($res->{content});
    }
    my $j = info('app-a')->{json} || {};
    is($j->{id}, 'app-a', "$name: its id");
    is($j->{owner}, 'alice@example.com', "$name: its owner");
    is($j->{team}, 'team-a', "$name: its team");
    is_deeply($j->{limits}, { rpm => 0, tpm => 0, concurrency => 0 }, "$name: no limits of its own");
    is_deeply($j->{usage}, { requests_per_minute => 1, tokens_per_minute => 15, concurrent => 0 },
              "$name: its usage") or diag($JSON->encode($j->{usage}));
    ok(exists $j->{budget} && !defined $j->{budget}, "$name: no budget");
    ok(exists $j->{expires_at} && !defined $j->{expires_at}, "$name: no expiry");

    $j = info('settle')->{json} || {};
    is($j->{id}, 'settle', "$name: another key gets its own: its id");
    is_deeply($j->{limits}, { rpm => 1000, tpm => 100000, concurrency => 0 }, "$name: its limits");
    is($j->{usage}{requests_per_minute}, 0, "$name: its usage, not app-a's");
    ok(exists $j->{owner} && !defined $j->{owner}, "$name: owner null");

    $j = info('future')->{json} || {};
    is($j->{expires_at}, 4102444799, "$name: expires_at");

    $j = info('spender')->{json} || {};
    is_deeply($j->{budget}, { usd => '1', spent => '0', remaining => '1', resets_at => next_midnight() },
              "$name: a budget") or diag($JSON->encode($j->{budget}));

    my $res = info(undef);
    is($res->{status}, 401, "$name: without a key: 401");
    is($res->{content}, $ERR401{missing}, "$name: ... missing_api_key");
    for my $id ('unknown', 'disabled', 'expired-date') {
        $res = info($id eq 'unknown' ? $UNKNOWN : $id);
        is($res->{content}, $ERR401{invalid}, "$name: $id: 401 invalid_api_key");
    }
    $res = $HTTP->post(gw() . '/v1/key', { headers => { key_headers('app-a') }, content => '{}' });
    is($res->{status}, 405, "$name: POST: 405");

    for my $id ('app-a', 'settle', 'spender') {
        my $c = info($id)->{content} // '';
        my @ids = $c =~ /"id":"([^"]*)"/g;
        is("@ids", $id, "$name: ${id}'s answer is about ${id} alone");
        is(join(' ', grep { index($c, $KEY{$_}) >= 0 } sort keys %KEY), '',
           "$name: ${id}'s answer shows no key, not even its own");
    }
    is((info('app-a')->{json} || {})->{usage}{requests_per_minute}, 1,
       "$name: reading it is no request");
}

# TEST: metrics and the JSON status
sub drive_metrics {
    my ($name) = @_;
    chat();
    chat(key => $UNKNOWN);
    chat(key => 'disabled');
    chat(key => 'app-a', usage => '10,5') for 1 .. 2;
    chat(key => 'app-b', usage => '100,50', model => 'k-shared');
    chat(key => 'rpm3') for 1 .. 4;                    # one rpm
    chat(key => 'tpm-small', max_tokens => 5000);      # one tpm
    chat(key => 'models', model => 'k-other');         # one model
    chat(key => 'budget', usage => '20000,0');
    chat(key => 'budget');                             # one budget
    my $s = send_raw(key => 'conc', headers => { 'X-Mock-Fault' => 'slow:800' });
    Time::HiRes::sleep(0.3);
    chat(key => 'conc');                               # one concurrency
    read_raw($s);

    my ($text, $parsed, $rc) = metrics();
    is($rc, 0, "$name: the Prometheus text parses") or diag($parsed);
    my %have = map { $_ => 1 } split /\n/, $parsed;
    for my $line (split /\n/, <<'_EOS_') {
qwen_unauthorized_requests_total{} 3.0
qwen_key_requests_total{key="app-a",team="team-a"} 2.0
qwen_key_tokens_total{key="app-a",team="team-a",type="input"} 20.0
qwen_key_tokens_total{key="app-a",team="team-a",type="output"} 10.0
qwen_key_cost_usd_total{key="app-a",team="team-a"} 4e-05
qwen_key_requests_total{key="app-b",team="team-a"} 1.0
qwen_key_requests_total{team="team-a"} 3.0
qwen_key_tokens_total{team="team-a",type="input"} 120.0
qwen_key_tokens_total{team="team-a",type="output"} 60.0
qwen_key_cost_usd_total{team="team-a"} 0.00024
qwen_key_requests_total{model="k-shared"} 1.0
qwen_key_tokens_total{model="k-shared",type="input"} 100.0
qwen_key_cost_usd_total{model="k-shared"} 0.0002
qwen_key_refusals_total{key="rpm3",reason="rpm",team=""} 1.0
qwen_key_refusals_total{key="tpm-small",reason="tpm",team=""} 1.0
qwen_key_refusals_total{key="conc",reason="concurrency",team=""} 1.0
qwen_key_refusals_total{key="budget",reason="budget",team=""} 1.0
qwen_key_refusals_total{key="models",reason="model",team=""} 1.0
qwen_key_budget_spent_usd{key="budget",team=""} 0.02
_EOS_
        ok($have{$line}, "$name: sample $line") or diag($parsed);
    }
    # the exposition format: a family's samples in one group (a histogram's
    # _bucket, _sum and _count are one family)
    my %hist = map { $_ => 1 } $text =~ /^# TYPE (\S+) histogram$/mg;
    my (%seen, $last, @split);
    $last = '';
    for (split /\n/, $text) {
        next if /^#/ || !/\S/;
        my ($fam) = /^([a-z_]+)/;
        $fam =~ s/_(?:bucket|sum|count)\z// if $fam =~ /^(.*)_(?:bucket|sum|count)\z/ && $hist{$1};
        push @split, $fam if $seen{$fam} && $fam ne $last;
        $seen{$fam} = 1;
        $last = $fam;
    }
    is(join(',', sort keys %{{ map { $_ => 1 } @split }}), '',
       "$name: each metric family's samples are one group");

    my $st = status_json();
    is($st->{unauthorized}, 3, "$name: JSON status: unauthorized");
    my %row = map { ("$_->{kind}:$_->{id}" => $_) } @{ $st->{keys} || [] };
    is(scalar(grep { /^key:/ } keys %row), scalar(keys %KEY), "$name: a row per key");
    ok($row{'team:team-a'} && $row{'model:k-shared'}, "$name: rows for teams and models");
    is($row{'key:app-a'}{requests}, 2, "$name: app-a's requests");
    is($row{'key:app-a'}{input}, 20, "$name: app-a's input tokens");
    is($row{'team:team-a'}{requests}, 3, "$name: team-a's requests");
    is($row{'key:conc'}{active}, 0, "$name: conc: none active");
    is_deeply($row{'key:rpm3'}{refused}, { rpm => 1 }, "$name: rpm3's refusals");
    is_deeply($row{'key:models'}{refused}, { model => 1 }, "$name: models's refusals");
    is($row{'key:budget'}{spent}, '0.02', "$name: budget's spend");
    my $all = $JSON->encode($st) . $text;
    is(join(' ', grep { index($all, $KEY{$_}) >= 0 } sort keys %KEY), '',
       "$name: no key in the status or the metrics");
}

# TEST: the access log
sub drive_access_log {
    my ($name) = @_;
    my @sid = map { scenario() } 1 .. 4;
    chat(key => 'spender', usage => '1000,0', scenario => $sid[0]);
    chat(key => 'app-a', scenario => $sid[1]);
    chat(scenario => $sid[2]);
    chat(key => 'models', model => 'k-other', scenario => $sid[3]);
    like(access_line($sid[0]) // '',
         qr/^k150 status=200 key=spender team=- owner="carol" budget=0\.999000000 dep=sg\/k-sg-1 cost=0\.001000000 /,
         "$name: alias, owner, the budget remaining after the request");
    like(access_line($sid[1]) // '',
         qr/^k150 status=200 key=app-a team=team-a owner="alice\@example\.com" budget=- /,
         "$name: alias, team, owner");
    like(access_line($sid[2]) // '', qr/^k150 status=401 key=- team=- owner="-" budget=- /,
         "$name: no key: nothing");
    like(access_line($sid[3]) // '', qr/^k150 status=404 key=models /,
         "$name: a model refused: the alias");
    my $log = join '', access_log_lines();
    is(join(' ', grep { index($log, $KEY{$_}) >= 0 } sort keys %KEY), '',
       "$name: no key in the access log");
    my $err = error_log_text();
    is(join(' ', grep { index($err, $KEY{$_}) >= 0 } sort keys %KEY), '',
       "$name: none in the error log");
}

# TEST: the client's key never goes upstream
sub drive_upstream {
    my ($name) = @_;
    for my $how ('bearer', 'x-api-key', 'api-key') {
        my $sid = scenario();
        my $res = chat(key => 'app-a', how => $how, scenario => $sid,
                       headers => { 'X-Other' => 'passed' });
        is($res->{status}, 200, "$name: the key in $how: answered");
        my @r = @{ mock_record($sid)->{requests} || [] };
        is(scalar @r, 1, "$name: $how: one request upstream");
        my $r = $r[0] || {};
        is($r->{credential_header}, 'authorization', "$name: $how: the region's key in Authorization");
        is($r->{credential_sha256}, sha16($REGION_KEY{sg}), "$name: $how: the region's key");
        is(join(',', @{ $r->{credential_headers} || [] }), 'authorization',
           "$name: $how: no other credential header (api-key, x-api-key)");
        my $enc = $JSON->encode($r);
        ok(index($enc, $KEY{'app-a'}) < 0, "$name: $how: the client's key is nowhere in the request");
        ok(index($enc, sha16($KEY{'app-a'})) < 0, "$name: $how: nor its hash");
    }
    # the control: without qwen_keys, qwen_pass_client_header lets them through
    my $sid = scenario();
    my $res = $HTTP->post(gw() . '/open/v1/chat/completions', {
        headers => { 'Content-Type' => 'application/json', 'X-Mock-Scenario' => $sid,
                     'x-api-key' => 'a-header-not-a-key' },
        content => chat_body() });
    is($res->{status}, 200, "$name: control: a location without keys answers");
    my ($r) = @{ mock_record($sid)->{requests} || [] };
    is(join(',', sort @{ ($r || {})->{credential_headers} || [] }), 'authorization,x-api-key',
       "$name: control: there, x-api-key goes upstream (qwen_pass_client_header works)");
}

# TEST: the x-ratelimit-* headers on every answer
sub drive_ratelimit_headers {
    my ($name) = @_;
    my $n = 0;
    my $check = sub {
        my ($what, $res, $status) = @_;
        $n++;
        is($res->{status}, $status, "$name: $what: $status");
        is(hdr($res, 'x-ratelimit-limit-requests'), 10, "$name: $what: x-ratelimit-limit-requests, once");
        is(hdr($res, 'x-ratelimit-remaining-requests'), 10 - $n,
           "$name: $what: x-ratelimit-remaining-requests, once");
        like(hdr($res, 'x-ratelimit-reset-requests') // '', qr/^[1-9]\d*s$/,
             "$name: $what: x-ratelimit-reset-requests, once");
        is(hdr($res, 'x-ratelimit-limit-tokens'), 100000, "$name: $what: x-ratelimit-limit-tokens, once");
        like(hdr($res, 'x-ratelimit-remaining-tokens') // '', qr/^[1-9]\d*$/,
             "$name: $what: x-ratelimit-remaining-tokens, once");
        is(hdr($res, 'x-ratelimit-reset-tokens'), hdr($res, 'x-ratelimit-reset-requests'),
           "$name: $what: x-ratelimit-reset-tokens, once, the same");
    };
    # refused before the limits were asked (docs/keys.md): none of them
    my $none = sub {
        my ($what, $res, $status) = @_;
        is($res->{status}, $status, "$name: $what: $status");
        is(join(',', grep { /^x-ratelimit-/ } sort keys %{ $res->{headers} }), '',
           "$name: $what: no rate-limit header (the limits were not asked)");
    };
    $check->('an answer', chat(key => 'hdr'), 200);
    $check->('a stream', chat(key => 'hdr', stream => 1), 200);
    $check->('an answer after a failover', chat(key => 'hdr', plan => '1=status:503'), 200);
    $check->('an upstream error', chat(key => 'hdr', fault => 'status:400'), 400);
    $check->('an upstream 500 (a chain of one)', chat(key => 'hdr', model => 'k-other', fault => 'status:500'), 500);
    $none->('an unknown model', chat(key => 'hdr', model => 'k-nowhere'), 404);
    $none->('a body that is no JSON', chat(key => 'hdr', body => '{"model":'), 400);
    $check->('an answer after those', chat(key => 'hdr'), 200);
    my $res = chat(key => 'app-a');
    is(join(',', grep { /^x-ratelimit-/ } sort keys %{ $res->{headers} }), '',
       "$name: a key without limits of its own: none");
    $res = chat();
    is(join(',', grep { /^x-ratelimit-/ } sort keys %{ $res->{headers} }), '',
       "$name: no key: none");
}

# TEST: team and model limits
sub drive_shared_limits {
    my ($name) = @_;
    is(chat(key => 'rl-1')->{status}, 200, "$name: rl-1: 200");
    is(chat(key => 'rl-2')->{status}, 200, "$name: rl-2, of the same team: 200");
    my $res = chat(key => 'rl-1');
    check_rate_limited("$name: the team's third", $res, 'requests',
        qr/^Rate limit reached: requests per minute of team "team-rl"\. Please try again in \d+s\.$/);
    check_minute_retry("$name: the team's third", $res);
    is(chat(key => 'app-a', model => 'k-shared')->{status}, 200, "$name: k-shared, app-a: 200");
    is(chat(key => 'app-b', model => 'k-shared')->{status}, 200, "$name: k-shared, app-b: 200");
    $res = chat(key => 'settle', model => 'k-shared');
    check_rate_limited("$name: k-shared's third, another key", $res, 'requests',
        qr/^Rate limit reached: requests per minute of model "k-shared"\. Please try again in \d+s\.$/);
    is(chat(key => 'settle', model => 'k-chat')->{status}, 200, "$name: another model: 200");
    my (undef, $parsed) = metrics();
    like($parsed, qr/^qwen_key_refusals_total\{reason="rpm",team="team-rl"\} 1\.0$/m,
         "$name: the team's refusal") or diag($parsed);
    like($parsed, qr/^qwen_key_refusals_total\{key="rl-1",reason="rpm",team="team-rl"\} 1\.0$/m,
         "$name: told to the key too") or diag($parsed);
    like($parsed, qr/^qwen_key_refusals_total\{model="k-shared",reason="rpm"\} 1\.0$/m,
         "$name: the model's refusal") or diag($parsed);
}

run_tests();

__DATA__

=== TEST 1: a keys file that is not JSON: nginx -t names the file and the line, not the key
--- user_files
>>> keys.json
{"keys": [
  {"id": "a", "key": "sk-client-k150-badjson-a-0123456789"}
  {"id": "b", "key": "sk-client-k150-badjson-b-0123456789"}
]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json" is not valid JSON near line 3 in .*nginx\.conf:\d+/
--- no_error_log
sk-client-k150-badjson



=== TEST 2: a key of an unknown team: the entry and the reason, not the key
--- user_files
>>> keys.json
{"teams": [{"id": "team-a"}],
 "keys": [
  {"id": "a", "key": "sk-client-k150-badteam-a-0123456789", "team": "team-a"},
  {"id": "b", "key": "sk-client-k150-badteam-b-0123456789", "team": "team-b"}
]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[1\]: "team" names no team of "teams" in .*nginx\.conf:\d+/
--- no_error_log
sk-client-k150-badteam



=== TEST 3: two keys of one id
--- user_files
>>> keys.json
{"keys": [
  {"id": "a", "key": "sk-client-k150-dupid-a-0123456789"},
  {"id": "a", "key": "sk-client-k150-dupid-b-0123456789"}
]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[1\]: a key of this "id" is defined already/
--- no_error_log
sk-client-k150-dupid



=== TEST 4: one key twice, in clear and as its digest
--- user_files eval
">>> keys.json\n" . '{"keys": [{"id": "a", "key": "sk-client-k150-twice-0123456789"},'
. '{"id": "b", "key": "sha256:' . Digest::SHA::sha256_hex('sk-client-k150-twice-0123456789') . '"}]}'
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[1\]: the same key is written twice/
--- no_error_log
sk-client-k150-twice



=== TEST 5: a sha256: that is not 64 hex digits
--- user_files
>>> keys.json
{"keys": [
  {"id": "a", "key": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0"}
]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[0\]: "sha256:" must be followed by 64 hex digits/



=== TEST 6: a model's limits written twice (names without regard to case)
--- user_files
>>> keys.json
{"models": [{"model": "k-chat", "limits": {"rpm": 5}}, {"model": "K-CHAT", "limits": {"tpm": 5}}],
 "keys": [{"id": "a", "key": "sk-client-k150-modeltwice-0123456789"}]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": models\[1\]: limits for this "model" are written already/



=== TEST 7: a key's budget without a positive amount
--- user_files
>>> keys.json
{"keys": [
  {"id": "a", "key": "sk-client-k150-badbudget-0123456789", "budget": {"usd": -1, "period": "day"}}
]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[0\]: "budget" needs "usd", a positive amount/
--- no_error_log
sk-client-k150-badbudget



=== TEST 8: a team's budget of a period that is none
--- user_files
>>> keys.json
{"teams": [{"id": "t", "budget": {"usd": 1, "period": "fortnight"}}],
 "keys": [{"id": "a", "key": "sk-client-k150-badperiod-0123456789", "team": "t"}]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": teams\[0\]: "budget" needs "period": "day", "week", "month" or a number of days/



=== TEST 9: a soft threshold over 1
--- user_files
>>> keys.json
{"keys": [{"id": "a", "key": "sk-client-k150-badsoft-0123456789",
           "budget": {"usd": 1, "period": 30, "soft": 1.5}}]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[0\]: "soft" must be a fraction of the budget/



=== TEST 10: a limit that is not a whole number
--- user_files
>>> keys.json
{"keys": [{"id": "a", "key": "sk-client-k150-badlimit-0123456789", "limits": {"rpm": 1.5}}]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[0\]: a limit must be a whole number from 1 up/



=== TEST 11: an expiry that is no date
--- user_files
>>> keys.json
{"keys": [{"id": "a", "key": "sk-client-k150-badexpiry-0123456789", "expires": "next year"}]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[0\]: "expires" must be seconds since 1970 or a UTC date/
--- no_error_log
sk-client-k150-badexpiry



=== TEST 12: a key too short to be one is refused without being printed
--- user_files
>>> keys.json
{"keys": [{"id": "a", "key": "sk-shrt"}]}
--- must_die
--- error_log eval
qr/\[emerg\] .*keys file ".*\/html\/keys\.json": keys\[0\]: a key must be 8 to 512 characters long/
--- no_error_log
sk-shrt



=== TEST 13: a keys file that does not exist
--- http_config
    qwen_metrics_zone k150_12 1m;
    qwen_keys_file ../html/no-such-keys.json;
--- config
    location = /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] .*no-such-keys\.json/



=== TEST 14: qwen_keys on without a keys file fails nginx -t
--- http_config
    qwen_region sg url=http://127.0.0.1:$TEST_NGINX_MOCK_PORT path=/compatible-mode key=sk-mock;
    qwen_metrics_zone k150_13 1m;
--- config
    location /v1/ {
        qwen_gateway on;
        qwen_keys on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"qwen_keys on" in the location of "qwen_gateway" in .*nginx\.conf:\d+ needs a "qwen_keys_file" in the http block/



=== TEST 15: a keys file without a metrics zone to count in fails nginx -t
--- http_config
    qwen_keys_file ../html/keys.json;
--- config
    location = /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"qwen_keys_file" needs a "qwen_metrics_zone"/



=== TEST 16: qwen_key_info without a keys file fails nginx -t
--- http_config
    qwen_metrics_zone k150_15 1m;
--- config
    location = /v1/key { qwen_key_info; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"qwen_key_info" needs a "qwen_keys_file" in the http block/



=== TEST 17: a zone too small for the keys' counters fails the start: nothing is evicted
300 keys (written as digests) take 67 KB of counters; the zone has 32 KB.
--- http_config
    qwen_metrics_zone k150_small 32k;
    qwen_keys_file ../html/keys.json;
--- config
    location = /t { return 204; }
--- user_files eval
">>> keys.json\n" . '{"keys":['
. join(',', map { '{"id":"k' . $_ . '","key":"sha256:' . Digest::SHA::sha256_hex("k150-zone-$_") . '"}' } 1 .. 300)
. ']}'
--- must_die
--- error_log eval
qr/\[emerg\] .*qwen: no room in the qwen_metrics_zone for the counters of 300 keys, teams and models \(\d+ bytes\): make the zone larger; nothing is evicted to make room/



=== TEST 18: no key: 401 missing_api_key, no rate-limit headers, nothing upstream
--- more_headers
X-Mock-Scenario: k150-16-nokey
--- request eval
"POST /v1/chat/completions\n" . main::chat_body()
--- error_code: 401
--- response_body eval
$main::ERR401{missing}
--- response_headers
Content-Type: application/json
!x-ratelimit-limit-requests
!Retry-After
--- error_log
qwen: rejected request: no API key
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 19: no key: the 401 comes before the body, which is never waited for; with a key, it is
A 10 MB body announced and its first bytes sent: without a key the 401
comes at once, with a valid key the gateway waits for the body (until
client_body_timeout, 30 s here).
--- location
client_body_timeout 30s;
--- drive: no_body_read



=== TEST 20: no key and a body over the size limit: 401, not 413 (the key first)
--- location
qwen_max_body_size 1k;
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Content-Type: application/json\r
Content-Length: 5000\r
Connection: close\r
\r
" . ('x' x 5000)
--- error_code: 401
--- response_body eval
$main::ERR401{missing}



=== TEST 21: no key and a body that is no JSON: 401, the body is not looked at
--- request eval
"POST /v1/chat/completions\n{\"model\":"
--- error_code: 401
--- response_body eval
$main::ERR401{missing}



=== TEST 22: nginx's own access modules come first (deny: 403, whatever the key)
--- location
deny all;
--- more_headers eval
"Authorization: Bearer $main::KEY{'app-a'}"
--- request eval
"POST /v1/chat/completions\n" . main::chat_body()
--- error_code: 403
--- error_log
access forbidden by rule
--- no_error_log
[alert]



=== TEST 23: Bearer, x-api-key and api-key
--- drive: headers



=== TEST 24: unknown, disabled and expired keys: one 401 invalid_api_key for all
--- drive: invalid



=== TEST 25: a key's models, by name, alias, prefix and pattern: others get the 404 of an unknown model
--- drive: models



=== TEST 26: a key's regions: its deployments only, and a 404 when none is left
--- drive: regions



=== TEST 27: requests per minute: 429 rate_limit_exceeded, Retry-After, the headers
--- minute_room: 15
--- drive: rpm



=== TEST 28: tokens per minute: reserved at admission, a stream that cannot fit refused up front
--- minute_room: 15
--- drive: tpm



=== TEST 29: concurrent requests: 429 with Retry-After 1, released at the end, on errors, when the client leaves
--- minute_room: 20
--- drive: concurrency



=== TEST 30: settlement: the real usage replaces the reservation, a failed request uses nothing
--- minute_room: 15
--- drive: settle



=== TEST 31: budgets are spent at the prices of the deployment that answered
--- drive: prices



=== TEST 32: a budget spent: 429 insufficient_quota naming the reset; the soft threshold warns once; a team's budget
--- drive: budget
--- no_error_log
[error]
[alert]
[crit]
[emerg]



=== TEST 33: budget periods: a week, a month, a number of days
--- drive: periods



=== TEST 34: GET qwen_key_info: the key's own limits, usage and budget; 401 without it
--- minute_room: 10
--- drive: info



=== TEST 35: metrics and the JSON status, per key, team and model, and the refusals by reason
--- minute_room: 15
--- drive: metrics



=== TEST 36: $qwen_key and friends in the access log, the key itself nowhere
--- drive: access_log



=== TEST 37: the client's key never goes upstream, whatever qwen_pass_client_header lets through
--- config
    access_log logs/keys.log keys;

    location /v1/ {
        qwen_gateway on;
        qwen_keys on;
        qwen_pass_client_header api-key x-api-key;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }

    location /open/ {
        qwen_gateway on;
        qwen_pass_client_header api-key x-api-key;
        proxy_set_header Authorization $qwen_upstream_authorization;
        rewrite ^/open(/.*)$ $1 break;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }

    location = /ready { return 200 "ready\n"; }
--- drive: upstream



=== TEST 38: x-ratelimit-* headers on every answer of a keyed request, once
--- minute_room: 15
--- drive: ratelimit_headers



=== TEST 39: a team's and a model's limits are shared by their keys
--- minute_room: 15
--- drive: shared_limits



=== TEST 40: a key that expires while nginx runs: 401 from that second on
--- expires_in: 5
--- drive: expiry
