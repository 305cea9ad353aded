# Failover health is shared by the workers through the qwen_metrics_zone
# (issue 8): a deployment cooled by a request on one worker is skipped by
# the requests that follow, whichever worker serves them, until its
# cooldown ends; and the attempts and failovers are counted once, in one
# set of totals.
#
# Two workers (reuseport spreads connections over both), driven by hand as
# t/121-zone-workers.t. The worker of each request is its access log's
# $pid; where each went, from the mock's scenario records.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use IPC::Open2 ();
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use lib "$ENV{TEST_NGINX_REPO}/t/lib";
use Qwen::FreePort qw(free_port);

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $so = $ENV{TEST_NGINX_LOAD_MODULES} or plan skip_all => 'no module';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';

my $port = free_port($mock);
my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(conf logs);

my $COOLDOWN = 4;    # seconds

open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
print $fh <<"_EOC_";
load_module $so;
master_process on;
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    log_format fo '\$pid status=\$status dep=\$qwen_deployment attempts=\$qwen_attempts failovers="\$qwen_failovers" id=\$http_x_mock_scenario';
    access_log logs/access.log fo;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    upstream dashscope_mock { server 127.0.0.1:$mock; }
    qwen_region sg url=http://dashscope_mock path=/compatible-mode key=sk-mock;
    qwen_region us url=http://dashscope_mock path=/compatible-mode key=sk-mock-virginia;
    qwen_model fo-chat input=1 output=2 deploy=sg:sg-chat deploy=us:us-chat;
    qwen_metrics_zone fo142 1m;

    server {
        # reuseport: the kernel spreads connections over both workers
        listen 127.0.0.1:$port reuseport;
        location /v1/ {
            qwen_gateway on;
            qwen_failover on;
            qwen_cooldown transient=${COOLDOWN}s;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            proxy_set_header X-Mock-Attempt \$qwen_attempt;
            proxy_pass \$qwen_upstream\$qwen_upstream_path\$uri;
        }
        location = /metrics { qwen_status prometheus; }
        location = /status { qwen_status json; }
    }
}
_EOC_
close $fh;

system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf") == 0
    or BAIL_OUT('nginx did not start');
END {
    system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf", '-s', 'stop')
        if $dir && -f "$dir/logs/nginx.pid";
}

my $json = JSON::PP->new->canonical;
# a new connection each time, so that both workers get some
my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 0);

sub up {
    for (1 .. 50) {
        return 1 if $http->get("http://127.0.0.1:$port/status")->{status} == 200;
        sleep 0.1;
    }
    return 0;
}
ok(up(), 'nginx is up with two workers');

my $n = 0;
sub chat {
    my (%h) = @_;
    my $id = "fo142-$$-" . ++$n;
    my $res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'X-Mock-Scenario' => $id, %h },
        content => '{"model":"fo-chat","messages":[{"role":"user","content":"hi"}]}',
    });
    return ($id, $res);
}

sub record {
    my ($id) = @_;
    my $res = $http->get("http://127.0.0.1:$mock/__mock/scenario/$id");
    my $doc = eval { $json->decode($res->{content}) } || {};
    return $doc->{requests} || [];
}

sub log_of {
    my ($id) = @_;
    for (1 .. 40) {
        if (open my $a, '<', "$dir/logs/access.log") {
            for (<$a>) { return $_ if / id=\Q$id\E$/ }
        }
        sleep 0.05;
    }
    return '';
}

# the request that cools sg down
my ($first, $res) = chat('X-Mock-Plan' => '1=status:503');
my $cooled_at = time;
is($res->{status}, 200, 'a 503 from sg: answered by us');
my $r = record($first);
is(join(' ', map { $_->{model} } @$r), 'sg-chat us-chat', 'after sg then us');
my ($cooler) = log_of($first) =~ /^(\d+) /;
ok($cooler, "served by worker $cooler");

# the next ones, on new connections, until the other worker has served
# some; every one must skip sg, whichever worker it is on
my (%by_worker, @wrong);
my $deadline = $cooled_at + $COOLDOWN - 1;
while (time < $deadline) {
    my ($id, $res) = chat();
    my $rec = record($id);
    my ($pid) = log_of($id) =~ /^(\d+) /;
    $pid //= 'none';
    $by_worker{$pid}++;
    push @wrong, "$pid: $res->{status} " . join(' ', map { $_->{model} // '-' } @$rec)
        unless $res->{status} == 200 && @$rec == 1 && ($rec->[0]{model} // '') eq 'us-chat';
    my @other = grep { $_ ne $cooler && $_ ne 'none' } keys %by_worker;
    last if @other && $by_worker{$other[0]} >= 3 && $n > 10;
}
my @others = grep { $_ ne $cooler && $_ ne 'none' } keys %by_worker;
ok(@others && $by_worker{$others[0]} >= 3,
   'the other worker served requests during the cooldown')
    or diag($json->encode(\%by_worker));
is(scalar @wrong, 0, 'every request during the cooldown skipped sg, on both workers')
    or diag(join "\n", @wrong);

# the metrics, parsed (t/lib/promcheck.py: one sorted line per sample)
sub samples {
    my $text = $http->get("http://127.0.0.1:$port/metrics")->{content} // '';
    my $pid = IPC::Open2::open2(my $out, my $in, "$repo/t/lib/promcheck.py");
    print $in $text;
    close $in;
    my $parsed = do { local $/; <$out> };
    waitpid $pid, 0;
    return { map { /^(\S+) (\S+)$/ ? ($1 => $2) : () } split /\n/, $parsed };
}

# the same from the shared zone, read through either worker
my $m = samples();
is($m->{'qwen_deployment_up{deployment="sg/sg-chat"}'}, '0.0', 'the metrics: sg is down');
is($m->{'qwen_attempts_total{deployment="sg/sg-chat",outcome="http_503"}'}, '1.0',
   'one attempt at sg, counted once');
my $served = $n;    # every request was answered by us, the first included
is($m->{'qwen_attempts_total{deployment="us/us-chat",outcome="ok"}'}, "$served.0",
   "$served attempts at us, from both workers, in one total");
is($m->{'qwen_failovers_total{from="sg/sg-chat",reason="http_503",to="us/us-chat"}'}, '1.0',
   'one failover');

# after the cooldown, sg again, on both workers
sleep($cooled_at + $COOLDOWN + 0.5 - time) if time < $cooled_at + $COOLDOWN + 0.5;
my (%back, @still);
for (1 .. 16) {
    my ($id, $res) = chat();
    my $rec = record($id);
    my ($pid) = log_of($id) =~ /^(\d+) /;
    $back{$pid // 'none'}++;
    push @still, "$res->{status} " . join(' ', map { $_->{model} // '-' } @$rec)
        unless $res->{status} == 200 && @$rec == 1 && ($rec->[0]{model} // '') eq 'sg-chat';
}
is(scalar @still, 0, 'after the cooldown every request goes to sg again')
    or diag(join "\n", @still);
is(scalar(grep { $_ ne 'none' } keys %back), 2, 'on both workers')
    or diag($json->encode(\%back));
is(samples()->{'qwen_deployment_up{deployment="sg/sg-chat"}'}, '1.0', 'the metrics: sg is up');

open my $log, '<', "$dir/logs/error.log" or die $!;
my @bad = grep { /\[(alert|crit|emerg)\]/ } <$log>;
is(scalar @bad, 0, 'no alert in the log') or diag(@bad);

done_testing();
