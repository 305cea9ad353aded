# Failover waits (issue 8) are nginx timers: while a request waits out a
# 429's Retry-After, or for a deployment out after 429s to come back, the worker
# serves others; a client that leaves during the wait ends its request
# (499) and no further attempt is made for it; a wait never outlasts the
# time budget. And once an answer's header has gone to the client there is
# no failover (a non-stream answer cut in the middle).
#
# These need requests at the same time on one worker and a client that
# closes its socket at a chosen moment, so nginx is driven by hand, as in
# t/125-backpressure.t. Who answered and when each attempt came is read
# from the mock's scenario records (t/mock/README.md).
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use IO::Select;
use lib "$ENV{TEST_NGINX_REPO}/t/lib";
use Qwen::FreePort qw(free_port);

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $so = $ENV{TEST_NGINX_LOAD_MODULES} or plan skip_all => 'no module';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';

my $port = free_port($mock);
my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(conf logs);

# one worker: what it does during a wait is what the others get
open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
print $fh <<"_EOC_";
load_module $so;
master_process on;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    log_format fo 'qwen-fo status=\$status dep=\$qwen_deployment attempts=\$qwen_attempts failovers="\$qwen_failovers" inc=\$qwen_incomplete id=\$http_x_mock_scenario';
    access_log logs/access.log fo;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    upstream dashscope_mock { server 127.0.0.1:$mock; keepalive 8; }
    qwen_region sg url=http://dashscope_mock path=/compatible-mode key=sk-mock;
    qwen_region us url=http://dashscope_mock path=/compatible-mode key=sk-mock-virginia;
    qwen_model fo-chat input=1 output=2 deploy=sg:sg-chat deploy=us:us-chat;
    qwen_model fo-pair input=1 output=2 deploy=sg:sg-pair deploy=us:us-pair;
    qwen_model fo-cut input=1 output=2 deploy=sg:sg-cut deploy=us:us-cut;
    qwen_model fo-budget input=1 output=2 deploy=sg:sg-budget deploy=us:us-budget;
    qwen_model fo-one input=1 output=2 deploy=sg:sg-one;
    qwen_metrics_zone fo141 1m;

    server {
        listen 127.0.0.1:$port;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization \$qwen_upstream_authorization;
        proxy_set_header X-Mock-Attempt \$qwen_attempt;
        proxy_buffering off;
        add_header X-Qwen-Deployment \$qwen_deployment always;

        location /v1/ {
            qwen_gateway on;
            qwen_failover on;
            proxy_pass \$qwen_upstream\$qwen_upstream_path\$uri;
        }

        # deployments out for 30 s after a 5xx
        location /cool/ {
            qwen_gateway on;
            qwen_failover on;
            qwen_cooldown transient=30s;
            proxy_pass \$qwen_upstream\$qwen_upstream_path/v1/chat/completions;
        }

        # a time budget shorter than the Retry-After
        location /budget/ {
            qwen_gateway on;
            qwen_failover on;
            qwen_failover_timeout 1s;
            proxy_pass \$qwen_upstream\$qwen_upstream_path/v1/chat/completions;
        }

        location = /status { qwen_status json; }
    }
}
_EOC_
close $fh;

system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf") == 0
    or BAIL_OUT('nginx did not start');
my $stopped;
sub stop_nginx {
    return if $stopped++;
    system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf", '-s', 'stop');
    for (1 .. 50) { last unless -f "$dir/logs/nginx.pid"; sleep 0.1 }
}
END { stop_nginx() if $dir && -f "$dir/logs/nginx.pid" }

my $json = JSON::PP->new->canonical;
my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);

for (1 .. 50) {
    last if $http->get("http://127.0.0.1:$port/status")->{status} == 200;
    sleep 0.1;
}

sub body { my ($model, $stream) = @_;
           qq({"model":"$model","messages":[{"role":"user","content":"wait for me"}])
           . ($stream ? ',"stream":true' : '') . '}' }

sub record {
    my ($id) = @_;
    my $res = $http->get("http://127.0.0.1:$mock/__mock/scenario/$id");
    my $doc = eval { $json->decode($res->{content}) } || {};
    return $doc->{requests} || [];
}

# wait until the mock has seen n requests of a scenario
sub wait_record {
    my ($id, $n, $limit) = @_;
    my $end = time + ($limit // 3);
    while (time < $end) {
        my $r = record($id);
        return $r if @$r >= $n;
        sleep 0.02;
    }
    return record($id);
}

sub access_line {
    my ($id, $limit) = @_;
    my $end = time + ($limit // 2);
    while (1) {
        if (open my $a, '<', "$dir/logs/access.log") {
            for (<$a>) { return $_ if /^qwen-fo .* id=\Q$id\E$/ }
        }
        return undef if time > $end;
        sleep 0.02;
    }
}

# a request on its own socket, answered later
sub start_request {
    my ($path, $body, %h) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or die "connect: $!";
    my $head = "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n";
    $head .= "$_: $h{$_}\r\n" for sort keys %h;
    print $s "$head\r\n$body";
    return $s;
}

sub read_all {
    my ($s, $limit) = @_;
    my $sel = IO::Select->new($s);
    my $got = '';
    my $end = time + $limit;
    while (time < $end) {
        next unless $sel->can_read($end - time);
        my $n = sysread($s, $got, 65536, length $got);
        last unless $n;
    }
    return $got;
}

my $id = "fo141-$$";
my $ok_body = qr/"content":"Mock reply from sg-chat\."/;

# --- 1. a Retry-After wait: another request is served meanwhile ---------

{
    my $a = "$id-wait";
    my $t0 = time;
    my $s = start_request('/v1/chat/completions', body('fo-chat'),
        'X-Mock-Scenario' => $a, 'X-Mock-Plan' => '1=status:429',
        'X-Mock-Retry-After' => 2);
    is(scalar @{ wait_record($a, 1) }, 1, 'the waiting request had its 429');

    my $t1 = time;
    my $res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'X-Mock-Scenario' => "$id-other" }, content => body('fo-chat') });
    my $took = time - $t1;
    is($res->{status}, 200, 'another request is answered during the wait');
    cmp_ok($took, '<', 0.5, 'at once (the worker is not blocked)')
        or diag("took ${took}s");
    # (a 429's Retry-After puts the deployment out for the others: b5ae8f8)
    like($res->{content}, qr/"content":"Mock reply from us-chat\."/,
         'by the next deployment: the one that throttled is out for others');

    my $got = read_all($s, 6);
    my $total = time - $t0;
    close $s;    # (nginx logs the request once the client is gone)
    like($got, qr{\AHTTP/1\.1 200 }, 'the waiting request is answered after its wait');
    like($got, qr{^X-Qwen-Deployment: sg/sg-chat\r$}mi, 'by the same deployment');
    like($got, $ok_body, 'with its answer');
    cmp_ok($total, '>=', 1.9, 'after the Retry-After of 2 s');

    my $r = record($a);
    is(scalar @$r, 2, 'the mock got two attempts');
    my $t = $r->[1]{t_ms} // -1;
    ok($t >= 1950 && $t <= 2700, 'the retry came 2 s after the 429')
        or diag("t_ms $t");
    is($r->[1]{attempt}, 2, 'as attempt 2');
    like(access_line($a) // '', qr{^qwen-fo status=200 dep=sg/sg-chat attempts=2 },
         'the access log: two attempts');
}

# --- 2. the client leaves during the wait ---------------------------------

{
    my $c = "$id-gone";
    my $s = start_request('/v1/chat/completions', body('fo-chat', 1),
        'X-Mock-Scenario' => $c, 'X-Mock-Plan' => '1=status:429',
        'X-Mock-Retry-After' => 3);
    is(scalar @{ wait_record($c, 1) }, 1, 'the leaving request had its 429');
    my $t429 = time;
    sleep 0.3;
    close $s;
    my $closed = time;

    my $line = access_line($c, 2.5);
    my $seen = time - $closed;
    like($line // '', qr{^qwen-fo status=499 }, 'a client gone during the wait: 499');
    cmp_ok($seen, '<', 1.5, 'logged at once, not at the end of the wait')
        or diag("${seen}s after the close");

    sleep(($t429 + 3.8) - time) if time < $t429 + 3.8;
    is(scalar @{ record($c) }, 1, 'and no attempt after the wait (the timer is gone)');

    my $res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'X-Mock-Scenario' => "$id-after" }, content => body('fo-chat') });
    is($res->{status}, 200, 'the worker serves on');
}

# --- 3. every deployment out after 429s: the request waits for the first back

{
    # the retry waits 2 s, the second 429 puts the only deployment out for 2 s
    my $d = "$id-cool1";
    my $res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'X-Mock-Scenario' => $d, 'X-Mock-Plan' => '*=status:429',
                     'X-Mock-Retry-After' => 2 },
        content => body('fo-one') });
    my $cooled = time;
    is($res->{status}, 429, 'two 429s from the only deployment: the last as it came');
    is(scalar @{ record($d) }, 2, 'after two attempts');

    my $e = "$id-cool2";
    $res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'X-Mock-Scenario' => $e }, content => body('fo-one') });
    my $took = time - $cooled;
    is($res->{status}, 200, 'the next request, the deployment out, is answered');
    like($res->{content}, qr/"content":"Mock reply from sg-one\."/, 'by it');
    ok($took >= 1.5 && $took <= 3.0, 'once it is back (out for 2 s)')
        or diag("took ${took}s");
    is(scalar @{ record($e) }, 1, 'one attempt, after the wait');
}

# --- 3b. every deployment out after 5xx: the first is probed at once ----

{
    my $d = "$id-probe1";
    my $res = $http->post("http://127.0.0.1:$port/cool/", {
        headers => { 'X-Mock-Scenario' => $d, 'X-Mock-Plan' => '*=status:503' },
        content => body('fo-pair') });
    is($res->{status}, 503, 'both deployments fail: the last 503 as it came');
    is(scalar @{ record($d) }, 2, 'after two attempts');

    my $e = "$id-probe2";
    my $t0 = time;
    $res = $http->post("http://127.0.0.1:$port/cool/", {
        headers => { 'X-Mock-Scenario' => $e }, content => body('fo-pair') });
    my $took = time - $t0;
    is($res->{status}, 200, 'the next request, both out after a 503, is answered');
    like($res->{content}, qr/"content":"Mock reply from sg-pair\."/,
         'by the first of the chain, tried anyway');
    cmp_ok($took, '<', 0.5, 'at once') or diag("took ${took}s");

    # its success puts it back up at once (docs/failover.md)
    my $doc = eval { $json->decode($http->get("http://127.0.0.1:$port/status")->{content}) } || {};
    my ($sg) = grep { ($_->{name} // '') eq 'sg/sg-pair' } @{ $doc->{deployments} || [] };
    my ($us) = grep { ($_->{name} // '') eq 'us/us-pair' } @{ $doc->{deployments} || [] };
    ok($sg && $sg->{up}, 'the status: the deployment that answered is up again');
    ok($us && !$us->{up}, 'the other one still out');
}

# --- 4. the time budget bounds a wait -------------------------------------

{
    my $b = "$id-budget";
    my $t0 = time;
    my $res = $http->post("http://127.0.0.1:$port/budget/", {
        headers => { 'X-Mock-Scenario' => $b, 'X-Mock-Plan' => '1=status:429',
                     'X-Mock-Retry-After' => 3 },
        content => body('fo-budget') });
    my $took = time - $t0;
    cmp_ok($took, '<', 0.5, 'a Retry-After of 3 s is not waited past a budget of 1 s')
        or diag("took ${took}s");
    is($res->{status}, 200, 'the request moves on at once');
    like($res->{content}, qr/"content":"Mock reply from us-budget\."/, 'to the next deployment');
    my $r = record($b);
    is(join(' ', map { $_->{model} // '-' } @$r), 'sg-budget us-budget', 'after one attempt at sg');
}

# --- 5. no failover once the answer's header went to the client ---------

{
    my $f = "$id-cut";
    my $s = start_request('/v1/chat/completions', body('fo-cut'),
        'X-Mock-Scenario' => $f, 'X-Mock-Plan' => '1=cut:1');
    my $got = read_all($s, 5);
    close $s;
    like($got, qr{\AHTTP/1\.1 200 }, 'a non-stream answer cut in the middle: 200 went out');
    my ($len) = $got =~ /^Content-Length: (\d+)\r$/mi;
    my ($body) = $got =~ /\r\n\r\n(.*)\z/s;
    ok(defined $len && length($body // '') < $len, 'and only part of its body')
        or diag($got);
    unlike($body // '', qr/us-cut/, 'nothing of another deployment');
    is(scalar @{ record($f) }, 1, 'no second attempt');
    like(access_line($f) // '', qr{^qwen-fo status=200 dep=sg/sg-cut attempts=1 .* inc=1 },
         'the access log: one attempt, incomplete');
}

stop_nginx();
open my $log, '<', "$dir/logs/error.log" or die $!;
my @bad = grep { /\[(alert|crit|emerg)\]/ } <$log>;
is(scalar @bad, 0, 'no alert in the log, at the stop either') or diag(@bad);

done_testing();
