# Client keys (issue 9) with two workers, across reloads and restarts: one
# set of counters in the zone, whichever worker serves.
#
#  * a burst of parallel clients against a key's rpm admits no more than the
#    limit (the count admitted, and the slack, are printed), from forked
#    clients and from wrk; a burst against a concurrency limit admits only
#    that many at once;
#  * a reload keeps the counters (the same names: the same table; other
#    names: a new table filled by name), picks up a rotated key (the same
#    id, a new key: the old one 401, the new one admitted, the counters
#    going on), does not carry a request in flight into the new table's
#    concurrency, and a keys file with a mistake is refused (nginx -t and
#    the reload name the file, the entry and the reason; the running
#    configuration goes on);
#  * spend reaches the state file within its 5 s when another worker than
#    worker 0 counted it; a restart (stop and start) restores it, and so
#    does a start after every process was killed; a corrupt or truncated
#    state file is reported at error level and ignored: spend from zero;
#  * no alert, no crit.
#
# Driven by hand, as t/121-zone-workers.t and t/145-failover-reload.t: one
# nginx (master, 2 workers, reuseport) across reloads and restarts.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(sleep time);
use lib "$ENV{TEST_NGINX_REPO}/t/lib";
use Qwen::FreePort qw(free_port);
use Qwen::Reload ();

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $so = $ENV{TEST_NGINX_LOAD_MODULES} or plan skip_all => 'no module';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';

my $port = free_port($mock);

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(conf logs state);
my $state = "$dir/state/qwen-keys.json";

# the keys file as it starts, and after a rotation ("rot" gets a new key)
# that also adds a key (so that the names change: a new table)
my $KEYS = <<'_EOK_';
{"teams": [{"id": "team-w", "limits": {"rpm": 100000}}],
 "keys": [
  {"id": "burst", "key": "sk-client-k151-burst-0123456789", "limits": {"rpm": 50}},
  {"id": "wrk", "key": "sk-client-k151-wrk-0123456789", "limits": {"rpm": 200}},
  {"id": "conc", "key": "sk-client-k151-conc-0123456789", "limits": {"concurrency": 5}},
  {"id": "rot", "key": "sk-client-k151-rot-old-0123456789", "team": "team-w",
   "budget": {"usd": 10, "period": "day"}},
  {"id": "spend", "key": "sk-client-k151-spend-0123456789", "budget": {"usd": 10, "period": "day"}},
  {"id": "leak", "key": "sk-client-k151-leak-0123456789", "limits": {"concurrency": 1}},
  {"id": "win", "key": "sk-client-k151-win-0123456789", "limits": {"rpm": 3}}
 ]}
_EOK_

my $KEYS_ROTATED = <<'_EOK_';
{"teams": [{"id": "team-w", "limits": {"rpm": 100000}}],
 "keys": [
  {"id": "burst", "key": "sk-client-k151-burst-0123456789", "limits": {"rpm": 50}},
  {"id": "wrk", "key": "sk-client-k151-wrk-0123456789", "limits": {"rpm": 200}},
  {"id": "conc", "key": "sk-client-k151-conc-0123456789", "limits": {"concurrency": 5}},
  {"id": "rot", "key": "sk-client-k151-rot-new-0123456789", "team": "team-w",
   "budget": {"usd": 10, "period": "day"}},
  {"id": "spend", "key": "sk-client-k151-spend-0123456789", "budget": {"usd": 10, "period": "day"}},
  {"id": "leak", "key": "sk-client-k151-leak-0123456789", "limits": {"concurrency": 1}},
  {"id": "win", "key": "sk-client-k151-win-0123456789", "limits": {"rpm": 3}},
  {"id": "newcomer", "key": "sk-client-k151-newcomer-0123456789"}
 ]}
_EOK_

# a mistake in entry 2: a team that does not exist
my $KEYS_BAD = <<'_EOK_';
{"keys": [
  {"id": "burst", "key": "sk-client-k151-burst-0123456789"},
  {"id": "bad-a", "key": "sk-client-k151-bad-a-0123456789"},
  {"id": "bad-b", "key": "sk-client-k151-bad-b-0123456789", "team": "nowhere"}
 ]}
_EOK_

my %KEY;
for my $json ($KEYS, $KEYS_ROTATED, $KEYS_BAD) {
    for my $k (@{ JSON::PP::decode_json($json)->{keys} }) {
        $KEY{ $k->{key} =~ /-old-/ ? 'rot-old' : $k->{key} =~ /-new-/ ? 'rot-new' : $k->{id} }
            = $k->{key};
    }
}

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
}

sub write_conf {
    # as root, the workers too (they write the state file into $dir, a
    # directory of mode 0700)
    my $user = $> == 0 ? 'user root;' : '';
    write_file("$dir/conf/nginx.conf", <<"_EOC_");
load_module $so;
$user
master_process on;
worker_processes 2;
# notice: wrk's hundred thousand refusals would each log an info line
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    upstream mock { server 127.0.0.1:$mock; keepalive 16; }
    qwen_region sg url=http://mock path=/compatible-mode key=sk-mock;
    qwen_model k-chat input=1 output=2 deploy=sg:k-sg-1;
    qwen_metrics_zone k151 1m;
    qwen_keys_file keys.json;
    qwen_keys_state_file $state;
    server {
        # reuseport: the kernel spreads connections over both workers
        listen 127.0.0.1:$port reuseport;
        location /v1/ {
            qwen_gateway on;
            qwen_keys on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization \$qwen_upstream_authorization;
            add_header X-Pid \$pid always;
            proxy_pass \$qwen_upstream\$qwen_upstream_path\$uri;
        }
        location = /v1/key { qwen_key_info; }
        location = /status { qwen_status json; }
        location = /metrics { qwen_status prometheus; }
        location = /pid { return 200 "\$pid"; }
    }
}
_EOC_
}

my @NGINX = ($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf");

my $http_new = sub { HTTP::Tiny->new(timeout => 10, keep_alive => 0) };

sub body { '{"model":"k-chat","messages":[{"role":"user","content":"hi"}],"max_tokens":100}' }

sub chat {
    my ($key, %h) = @_;
    my $http = delete $h{http} || $http_new->();
    my $res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'Content-Type' => 'application/json',
                     ($key ? (Authorization => "Bearer $KEY{$key}") : ()), %h },
        content => body(),
    });
    return $res;
}

# (a request settles in its log phase, just after its answer, and maybe in
# the other worker than the one that answers next: a moment for it first)
sub info {
    my ($key) = @_;
    sleep 0.2;
    my $res = $http_new->()->get("http://127.0.0.1:$port/v1/key",
                                 { headers => { Authorization => "Bearer $KEY{$key}" } });
    return eval { JSON::PP::decode_json($res->{content}) } || {};
}

sub status {
    sleep 0.2;
    my $res = $http_new->()->get("http://127.0.0.1:$port/status");
    my $st = eval { JSON::PP::decode_json($res->{content}) } || {};
    return { map { ("$_->{kind}:$_->{id}" => $_) } @{ $st->{keys} || [] } };
}

sub up {
    for (1 .. 100) {
        my $r = $http_new->()->get("http://127.0.0.1:$port/pid");
        return 1 if $r->{status} == 200;
        sleep 0.1;
    }
    return 0;
}

sub master_pid {
    open my $fh, '<', "$dir/logs/nginx.pid" or return undef;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid;
}

# the pids of the master's workers, in the order the master started them
# (the first is worker 0): the last "start worker process" lines of the log
sub workers {
    my @pids = log_text() =~ /start worker process (\d+)$/mg;
    return @pids[-2, -1];
}

sub parent_of {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat =~ /\) \S (\d+) / ? $1 : 0;
}

sub running { my ($pid) = @_; return $pid && $pid > 1 && kill(0, $pid) }

# (never a pid of 0 or less: kill would signal this process group)
sub signal {
    my ($sig, @pids) = @_;
    @pids = grep { defined && /^\d+$/ && $_ > 1 } @pids;
    return @pids ? kill($sig, @pids) : 0;
}

sub reload {
    Qwen::Reload::reload(log => "$dir/logs/error.log", workers => 2,
                         nginx => \@NGINX)
        or return 0;
    return up();
}

sub stop {
    my ($how) = @_;
    my $master = master_pid();
    system(@NGINX, '-s', $how // 'quit');
    for (1 .. 100) {
        last unless running($master);
        sleep 0.1;
    }
    return !running($master);
}

sub start {
    system(@NGINX) == 0 or return 0;
    return up();
}

sub log_text {
    open my $fh, '<', "$dir/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

# one test: a line of the log matches
sub log_like {
    my ($re, $what) = @_;
    my @l = grep { /$re/ } split /\n/, log_text();
    ok(scalar @l, $what) or diag("no line of the error log matches $re");
}

sub state_of {
    my ($name) = @_;
    open my $fh, '<', $state or return undef;
    my $doc = eval { local $/; JSON::PP::decode_json(<$fh>) } or return undef;
    my ($s) = grep { $_->{name} eq $name } @{ $doc->{subjects} || [] };
    return $s;
}

# at least $room seconds before the minute ends
sub minute_room {
    my ($room) = @_;
    my $left = 60 - time % 60;
    sleep($left + 0.3) if $left < $room;
}

# $n clients at once (forked, each its own connection), each sending one
# request with $key; returns the statuses and, per worker pid that answered,
# its statuses
sub burst {
    my ($n, $key, %h) = @_;
    my $t0 = time + 0.5;
    my @kids;
    for my $i (1 .. $n) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $r;
            sleep($t0 - time) if $t0 > time;
            my $res = chat($key, %h);
            print $w "$res->{status} " . ($res->{headers}{'x-pid'} // '-') . "\n";
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my (%status, %pids);
    for my $k (@kids) {
        my ($pid, $r) = @$k;
        my $line = <$r> // '0 -';
        close $r;
        waitpid $pid, 0;
        my ($st, $wp) = split ' ', $line;
        $status{$st}++;
        $pids{$wp}{$st}++ if $wp ne '-';
    }
    return (\%status, \%pids);
}

sub usd { sprintf '%.9f', $_[0] }

write_file("$dir/conf/keys.json", $KEYS);
write_conf();
system(@NGINX) == 0 or BAIL_OUT('nginx did not start');

END {
    system(@NGINX, '-s', 'stop') if $dir && -f "$dir/logs/nginx.pid";
}

ok(up(), 'nginx is up with two workers');
log_like(qr/\[notice\] .*qwen: no keys' state file ".*qwen-keys\.json" yet: counting from zero/,
         'no state file yet: a notice');

# ---------------------------------------------------------------- bursts --

minute_room(30);
my ($st, $pids) = burst(150, 'burst');
my $admitted = $st->{200} // 0;
diag(sprintf 'burst of 150 parallel clients against rpm 50 over 2 workers: '
     . '%d admitted, %d refused (429), slack %d', $admitted, $st->{429} // 0, 50 - $admitted);
cmp_ok($admitted, '<=', 50, 'a burst of 150 against rpm 50: no more than 50 admitted');
is($admitted, 50, '... and not fewer (nothing counted twice)');
is($st->{429} // 0, 100, 'the others refused with 429');
# Which worker admits is scheduling (one may run through its share of the
# burst before the other gets a core): what matters is that both took part,
# so the 50 were counted across workers, not per worker.
is(scalar keys %$pids, 2, 'both workers answered part of the burst')
    or diag(explain($pids));
diag(join ', ', map { my $p = $_; "worker $p: "
     . join ' ', map { "$_ x$pids->{$p}{$_}" } sort keys %{ $pids->{$p} } } sort keys %$pids);
my $row = status()->{'key:burst'} || {};
is($row->{requests}, 50, 'the status counts the 50 admitted');
is($row->{refused}{rpm}, 100, '... and the 100 refused, reason rpm');
is($row->{active}, 0, 'none in flight');

# a plain reload (the same names: the same table), in the same minute
ok(reload(), 'nginx is up after a plain reload');
is(chat('burst')->{status}, 429, 'the burst key is still over its rpm: the window went on');
is(status()->{'key:burst'}{requests}, 50, 'its count too');

# wrk: as many requests as it can for 3 s, over 40 connections
SKIP: {
    my $wrk = `command -v wrk 2>/dev/null`;
    chomp $wrk;
    skip 'wrk is not installed', 3 unless $wrk;
    minute_room(15);
    my $lua = "$dir/wrk.lua";
    (my $b = body()) =~ s/"/\\"/g;
    write_file($lua, <<"_EOL_");
wrk.method = "POST"
wrk.body = "$b"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("K151_KEY")
_EOL_
    local $ENV{K151_KEY} = $KEY{wrk};
    my $out = `$wrk -t2 -c40 -d3s -s $lua http://127.0.0.1:$port/v1/chat/completions 2>&1`;
    my ($total) = $out =~ /(\d+) requests in /;
    my ($non2xx) = $out =~ /Non-2xx or 3xx responses: (\d+)/;
    $non2xx //= 0;
    my $ok = defined $total ? $total - $non2xx : -1;
    diag("wrk, 40 connections for 3 s against rpm 200 over 2 workers: $ok admitted of "
         . ($total // '?') . " requests, slack " . (200 - $ok));
    ok(defined $total && $total > 400, 'wrk made many more requests than the limit') or diag($out);
    cmp_ok($ok, '<=', 200, 'wrk: no more than 200 admitted');
    is(status()->{'key:wrk'}{requests}, $ok, 'the status counts as many as wrk saw answered');
}

# concurrency: 30 at once, each held 1 s by the mock
($st) = burst(30, 'conc', 'X-Mock-Fault' => 'slow:1000');
diag(sprintf 'burst of 30 parallel slow requests against concurrency 5: %d admitted',
             $st->{200} // 0);
is($st->{200} // 0, 5, 'a burst of 30 slow requests against concurrency 5: 5 admitted');
is($st->{429} // 0, 25, 'the others refused');
is(status()->{'key:conc'}{active}, 0, 'all released');

# ---------------------------------------------------------------- reload --

# spend with the key about to be rotated: 1000 + 500 * 2 per 1M = 0.002
for (1 .. 2) {
    is(chat('rot-old', 'X-Mock-Usage' => '1000,500')->{status}, 200, 'rot (its old key) spends');
}
is(info('rot-old')->{budget}{spent}, '0.004', 'rot has spent 0.004');

# a rotation that adds a key: a new table, filled by name; win's window
# (3 requests of 3) and a request of leak in flight across it
minute_room(15);
is(chat('win')->{status}, 200, "win: request $_ of 3") for 1 .. 3;
my $leak = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
    or die "connect: $!";
{
    my $b = body();
    print $leak "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "Authorization: Bearer $KEY{leak}\r\nX-Mock-Fault: slow:2500\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
}
sleep 0.5;
is(chat('leak')->{status}, 429, 'leak has a request in flight (concurrency 1)');

write_file("$dir/conf/keys.json", $KEYS_ROTATED);
ok(reload(), 'nginx is up after a reload with the rotated key and a new one');
my $r = chat('rot-old');
is($r->{status}, 401, 'the old key of rot: 401');
$r = chat('rot-new', 'X-Mock-Usage' => '1000,500');
is($r->{status}, 200, 'its new key: admitted');
is(info('rot-new')->{budget}{spent}, '0.006', "rot's spend went on under its new key");
is(status()->{'key:rot'}{requests}, 3, "rot's request count too");
is(status()->{'team:team-w'}{requests}, 3, "and its team's");
is(status()->{'key:burst'}{requests}, 50, "the burst key's count was copied into the new table");
is(chat('win')->{status}, 429, "win's window too: its 4th request of the minute is refused");
is(chat('newcomer')->{status}, 200, 'the new key works');

{
    local $/;
    my $got = <$leak> // '';
    like($got, qr{^HTTP/1\.1 200 }, 'the request in flight across the reload is answered');
}
close $leak;
sleep 0.3;
is(chat('leak')->{status}, 200,
   'leak is admitted again: the request in flight did not stay in the new table');
is(status()->{'key:leak'}{active}, 0, 'nothing in flight for leak');

# a keys file with a mistake: nginx -t says where, the reload is refused
write_file("$dir/conf/keys.json", $KEYS_BAD);
my $t = `@NGINX -t 2>&1`;
isnt($?, 0, 'nginx -t fails on a keys file with a mistake');
like($t, qr/keys file ".*keys\.json": keys\[2\]: "team" names no team of "teams"/,
     'nginx -t names the file, the entry and the reason');
unlike($t, qr/sk-client-k151/, 'and no key');
my $emerg_before = () = log_text() =~ /\[emerg\]/g;
# (a signal, not "nginx -s reload": that one reads the configuration
# first, and stops there)
signal('HUP', master_pid());
sleep 1.5;
my $emerg_after = () = log_text() =~ /\[emerg\]/g;
is($emerg_after - $emerg_before, 1, 'the reload is refused with one emerg line');
log_like(qr/\[emerg\] .*keys file ".*keys\.json": keys\[2\]: "team" names no team of "teams"/,
         '... naming the file, the entry and the reason');
is(chat('rot-new')->{status}, 200, 'the running configuration goes on: the new key of rot works');
is(chat('newcomer')->{status}, 200, '... and the newcomer');
write_file("$dir/conf/keys.json", $KEYS_ROTATED);

# ------------------------------------------------------------ the state file --

# spend on a connection that worker 1 serves (not worker 0, which writes
# the file)
my ($w0, $w1) = workers();
ok($w0 && $w1 && running($w0) && running($w1), 'the two workers are known (worker 0 first)');
my $on_w1;
for (1 .. 50) {
    my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 1);
    my $res = $http->get("http://127.0.0.1:$port/pid");
    if (($res->{content} // '') eq $w1) {
        $on_w1 = $http;
        last;
    }
}
ok($on_w1, 'a keep-alive connection to worker 1');
SKIP: {
    skip 'no connection to worker 1', 4 unless $on_w1;
    sleep 6;    # whatever was to be saved is saved
    my $before = (state_of('k:spend') || {})->{spent_nano} // 0;
    my $res = chat('spend', 'X-Mock-Usage' => '100000,0', http => $on_w1);
    is($res->{status}, 200, 'spend spends 0.1 through worker 1');
    is($res->{headers}{'x-pid'}, $w1, '... served by worker 1');
    sleep 6.5;
    my $s = state_of('k:spend') || {};
    is(($s->{spent_nano} // 0) - $before, 100_000_000,
       'within 5 s the state file has the spend worker 1 counted');
    is($s->{requests}, 1, '... and its request');
}

# a stop and a start: the spend comes back
my $spent = info('spend')->{budget}{spent};
my $rot_spent = info('rot-new')->{budget}{spent};
my $spend_requests = status()->{'key:spend'}{requests};
ok(stop('quit'), 'nginx stops (quit)');
ok(-f $state, 'the state file is there');
ok(start(), 'nginx starts again');
log_like(qr/\[notice\] .*qwen: spend of \d+ keys, teams and models restored from ".*qwen-keys\.json"/,
         'the start says it restored the spend');
is(info('spend')->{budget}{spent}, $spent, "spend's spend is back ($spent)");
is(info('rot-new')->{budget}{spent}, $rot_spent, "rot's too ($rot_spent)");
is(status()->{'key:spend'}{requests}, $spend_requests, "and spend's request count");
is(status()->{'team:team-w'}{requests}, 4, "and rot's team's");

# killed, every process at once: what was saved 5 s before comes back
is(chat('spend', 'X-Mock-Usage' => '200000,0')->{status}, 200, 'spend spends 0.2 more');
my $after = info('spend')->{budget}{spent};
sleep 6.5;
{
    my $master = master_pid();
    # every process of the master's (old workers still ending included)
    my @w = grep { parent_of($_) == $master }
            map { m{^/proc/(\d+)$} ? $1 : () } glob '/proc/[0-9]*';
    ok(@w >= 2, 'the master has its workers');
    # the master first: killed after a worker, it may live long enough to
    # log the worker's death at alert
    signal('KILL', $master);
    signal('KILL', grep { running($_) } @w);
    for (1 .. 50) {
        last unless grep { running($_) } $master, @w;
        sleep 0.1;
    }
    ok(!grep({ running($_) } $master, @w), 'nginx killed (master and workers)');
}
ok(start(), 'nginx starts after being killed');
is(info('spend')->{budget}{spent}, $after, "the spend saved before the kill is back ($after)");

# a corrupt state file: reported, ignored, spend from zero
ok(stop('quit'), 'nginx stops');
write_file($state, "{\"version\":1,\"subjects\":[{\"name\":\"k:spend\",\"spent_nano\":");
ok(start(), 'nginx starts with a truncated state file');
log_like(qr/\[error\] .*qwen: the keys' state file ".*qwen-keys\.json" is not one this module wrote \(corrupt or truncated\): it is ignored, spend counts from zero/,
         'reported at error level');
is(info('spend')->{budget}{spent}, '0', 'spend counts from zero');
is(info('rot-new')->{budget}{spent}, '0', 'for every key');
is(chat('spend', 'X-Mock-Usage' => '1000,0')->{status}, 200, 'requests are served');

ok(stop('quit'), 'nginx stops');
write_file($state, "\x00\xffnot json at all\n");
ok(start(), 'nginx starts with a state file of garbage');
my $errors_after = () = log_text() =~ /\[error\] .*qwen: the keys' state file/g;
is($errors_after, 2, 'reported again');
is(info('spend')->{budget}{spent}, '0', 'spend counts from zero');
is(chat('spend', 'X-Mock-Usage' => '3000,0')->{status}, 200, 'spend spends 0.003');
sleep 6.5;
is((state_of('k:spend') || {})->{spent_nano}, 3_000_000, 'the state file is whole again, with the new spend');

# ------------------------------------------------------------------- logs --

my $log = log_text();
my @lines = split /\n/, $log;
is(join("\n", grep { /\[(?:alert|crit)\]/ } @lines), '', 'no alert, no crit in the log');
is(join("\n", grep { /\[emerg\]/ && !/keys file ".*keys\.json": keys\[2\]: "team" names no team/ } @lines),
   '', 'no emerg but the refused reload\'s');
is(join(' ', grep { index($log, $KEY{$_}) >= 0 } sort keys %KEY), '', 'no key in the log');
{
    open my $fh, '<', $state or die;
    my $text = do { local $/; <$fh> };
    is(join(' ', grep { index($text, $KEY{$_}) >= 0 } sort keys %KEY), '', 'none in the state file');
}

done_testing();
