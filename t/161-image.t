# The container image (Dockerfile, docker/, scripts/image.sh,
# docs/container.md), built and run here, where no image registry can be
# reached: scripts/image.sh makes the base from Debian's packages
# (mmdebstrap, podman import), builds with podman (--isolation=chroot) and
# runs the image's nginx with buildah (--isolation=chroot, the host's
# network) in front of the mock DashScope, on free ports.
#
# Checked: the image's configuration (user 101, ports 8000 and 9145,
# SIGQUIT, the health check), nginx running as uid 101 and writing nothing
# outside /tmp, /healthz, /readyz, a chat completion with the model rewritten
# and its usage, the request counted on the metrics port, the key in no file,
# log or command line, a reload that re-renders the templates (client keys
# turned on), a bad variable that fails at once, and SIGQUIT letting a
# stream in progress finish.
#
# Building takes a minute or two the first time (the base image is kept in
# podman's storage, the layers in its cache), seconds afterwards.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use File::Find ();
use File::Basename qw(dirname);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use IO::Socket::INET ();
use FindBin;
use lib "$FindBin::Bin/lib";
use Qwen::FreePort qw(free_port);

my $repo = $ENV{TEST_NGINX_REPO} || dirname($FindBin::Bin);
plan skip_all => 'needs root: podman build and buildah run --isolation=chroot'
    if $> != 0;
for my $tool (qw(podman buildah mmdebstrap)) {
    next if grep { -x "$_/$tool" } split /:/, $ENV{PATH};
    system("$repo/scripts/deps.sh", 'image') == 0
        or plan skip_all => "$tool cannot be installed (scripts/deps.sh image)";
    last;
}

my $base = tempdir('qwen-image-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $run_dir = "$base/run";
$ENV{IMAGE_RUN_DIR} = $run_dir;     # for scripts/image.sh stop as well
my $key = 'sk-mock';
my $client_key = 'sk-gw-image-test-7d1e5b';
my $http = HTTP::Tiny->new(timeout => 10);
my $json = JSON::PP->new;

# the mock DashScope: the suite's (scripts/run-tests.sh), else our own
my ($mock_pid, $mock_port, $mock) = (undef, $ENV{TEST_NGINX_MOCK_PORT});
unless ($mock_port) {
    $mock_pid = open($mock, '-|', 'node', "$repo/t/mock/dashscope.js",
                     '--port', 0, '--key', 'sk-mock')
        or die "node t/mock/dashscope.js: $!";
    my $line = <$mock> // '';
    ($mock_port) = $line =~ m{listening on http://[^ ]*:(\d+)}
        or die "the mock did not start: $line";
}

my ($nginx_master, $stopped, $scratch);
sub stop_all {
    return if $stopped++;
    system("$repo/scripts/image.sh", 'stop') if -d $run_dir;
}
END {
    my $status = $?;
    stop_all();
    system("buildah rm '$scratch' >/dev/null 2>&1") if $scratch;
    if ($mock_pid) {
        kill 'TERM', $mock_pid;
        close $mock;
    }
    $? = $status;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    binmode $fh;
    return do { local $/; <$fh> };
}

sub collect {
    # for the secret scan (t/lib/Qwen/SecretScan.pm), when it runs
    Qwen::SecretScan::collect_logs($run_dir, "the image's run in t/161-image.t")
        if defined &Qwen::SecretScan::collect_logs;
}

sub give_up {
    my ($why) = @_;
    fail($why);
    diag "stderr of the run:\n" . slurp("$run_dir/stderr.log")
        if -f "$run_dir/stderr.log";
    collect();
    stop_all();
    done_testing();
    exit 1;
}

sub script {
    my ($log, @args) = @_;
    my $t0 = time;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log or die "$log: $!";
        open STDERR, '>&', \*STDOUT;
        exec "$repo/scripts/image.sh", @args;
        die "exec: $!";
    }
    waitpid $pid, 0;
    return ($? >> 8, time - $t0);
}

# ---------------------------------------------------------------- build --

my $tag = 'localhost/qwen-gateway:t161';
{
    local $ENV{IMAGE_VERSION} = 't161';
    local $ENV{IMAGE_BASE} = 'local';
    local $ENV{IMAGE_ENGINE} = 'podman';
    my ($rc, $secs) = script("$base/build.log", 'build');
    if ($rc != 0) {
        diag substr(slurp("$base/build.log"), -3000);
        give_up('scripts/image.sh builds the image');
    }
    pass(sprintf 'scripts/image.sh builds the image (%.0f s)', $secs);
}

my $inspect = eval {
    $json->decode(scalar `podman image inspect '$tag' 2>/dev/null`)->[0]
} || {};
my $config = $inspect->{Config} || {};
like($config->{User} // '', qr/\A101(?::101)?\z/, 'the image runs as 101:101');
is_deeply([sort keys %{ $config->{ExposedPorts} || {} }],
          ['8000/tcp', '9145/tcp'], 'it exposes 8000 and 9145');
is($config->{StopSignal}, 'SIGQUIT', 'its stop signal is SIGQUIT');
is_deeply($config->{Entrypoint}, ['/usr/local/bin/qwen-entrypoint'],
          'its entry point is qwen-entrypoint');
my $health = ($inspect->{Healthcheck} || {})->{Test} || [];
is($health->[0], 'CMD', 'it has a health check');
my $size = $inspect->{Size} || 0;
cmp_ok($size, '<', 150e6, sprintf 'it is small (%.1f MB)', $size / 1e6);
unlike(scalar `podman history --no-trunc --format '{{.CreatedBy}}' '$tag'`,
       qr/\Q$key\E/, 'no layer was made with the key');

# ------------------------------------------------------------------ run --

# a keys file, mounted as the Secret would be; client keys stay off until
# the reload below turns them on
my $keys_dir = "$base/keys";
mkdir $keys_dir or die $!;
open my $kf, '>', "$keys_dir/keys.json" or die $!;
print $kf '{"keys": [{"id": "image-test", "key": "sk-gw-image-test-7d1e5b"}]}', "\n";
close $kf;
chmod 0755, $keys_dir;
chmod 0644, "$keys_dir/keys.json";

my $port = free_port($mock_port);
my $metrics_port = free_port($mock_port, $port);
my %env = (
    IMAGE                 => $tag,
    QWEN_UPSTREAM         => "http://127.0.0.1:$mock_port",
    QWEN_PORT             => $port,
    QWEN_METRICS_PORT     => $metrics_port,
    QWEN_WORKER_PROCESSES => 2,
    QWEN_LOG_LEVEL        => 'notice',
    QWEN_KEYS_DIR         => $keys_dir,
    DASHSCOPE_API_KEY     => $key,
);

# a bad variable: the run fails at once, saying why
{
    local @ENV{keys %env} = values %env;
    local $ENV{QWEN_CLIENT_KEYS} = 'maybe';
    my ($rc, $secs) = script("$base/bad.log", 'run', '-d');
    isnt($rc, 0, 'QWEN_CLIENT_KEYS=maybe: the run fails');
    cmp_ok($secs, '<', 10, sprintf 'at once (%.1f s)', $secs);
    like(slurp("$base/bad.log"), qr/QWEN_CLIENT_KEYS=maybe: on or off/,
         'saying why');
}

{
    local @ENV{keys %env} = values %env;
    my ($rc, $secs) = script("$base/run.log", 'run', '-d');
    if ($rc != 0) {
        diag slurp("$base/run.log");
        give_up('scripts/image.sh run -d starts the image');
    }
    pass(sprintf 'scripts/image.sh run -d starts the image (%.1f s)', $secs);
}

my $res;
my $deadline = time + 10;
while (time < $deadline) {
    $res = $http->get("http://127.0.0.1:$port/healthz");
    last if $res->{status} == 200;
    sleep 0.1;
}
is($res->{status}, 200, '/healthz: 200') or give_up('nginx in the image serves');
is($res->{content}, "ok\n", '/healthz: ok');

($nginx_master) = slurp("$run_dir/tmp/nginx/nginx.pid") =~ /(\d+)/;
ok($nginx_master, 'nginx wrote its pid file into the run\'s /tmp');

# a process that runs (not a zombie: PID 1 may reap late here)
sub alive {
    my ($pid) = @_;
    my $stat = slurp("/proc/$pid/stat");
    return $stat ne '' && $stat !~ /^\d+ \(.*\) Z /s;
}

sub proc_uid {
    my ($pid) = @_;
    my ($uid) = slurp("/proc/$pid/status") =~ /^Uid:\s+(\d+)/m;
    return $uid;
}

sub children {
    my ($ppid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $line = slurp($stat);
        push @kids, [$1, $2] if $line =~ /^(\d+) \((.*)\) \S+ (\d+) / && $3 == $ppid;
    }
    return @kids;
}

my @workers = grep { $_->[1] eq 'nginx' } children($nginx_master);
is(scalar @workers, 2, 'two workers (QWEN_WORKER_PROCESSES=2)');
# buildah run's standard output is a pipe of root's: the entry point's relay
is(scalar(grep { $_->[1] eq 'cat' } children($nginx_master)), 1,
   'the standard output relayed (buildah run keeps it root\'s)');
is(proc_uid($nginx_master), 101, 'the master process runs as uid 101');
is_deeply([map { proc_uid($_->[0]) } @workers], [101, 101],
          'the workers run as uid 101');

$res = $http->get("http://127.0.0.1:$port/readyz");
is($res->{status}, 200, '/readyz: 200');
my $ready = eval { $json->decode($res->{content}) } || {};
is($ready->{status}, 'ready', '/readyz: ready') or diag $res->{content};
is($http->get("http://127.0.0.1:$metrics_port/healthz")->{status}, 200,
   '/healthz on the metrics port: 200');

# a chat completion through the gateway: the mock accepts only the key, so
# a 200 says the key went from the environment to the upstream request
my $chat = '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"Hi"}]}';
$res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
    headers => { 'content-type' => 'application/json',
                 'authorization' => 'Bearer not-a-dashscope-key' },
    content => $chat,
});
is($res->{status}, 200, 'a chat completion: 200') or diag $res->{content};
my $doc = eval { $json->decode($res->{content}) } || {};
is($doc->{model}, 'qwen-max', 'the model was rewritten (qwen/qwen-max)');
ok(($doc->{usage} || {})->{total_tokens}, 'the answer has its usage');

$res = $http->get("http://127.0.0.1:$port/v1/models");
is($res->{status}, 200, '/v1/models: 200');
like($res->{content}, qr/"id":"qwen-max"/, 'from the baked-in catalogue');

# the log phase commits the counters just after the answer
my $metrics = '';
$deadline = time + 5;
while (time < $deadline) {
    $metrics = $http->get("http://127.0.0.1:$metrics_port/metrics")->{content} // '';
    last if $metrics =~ /^qwen_requests_total\{model="qwen-max",[^}]*status="2xx"\} 1$/m;
    sleep 0.1;
}
like($metrics, qr/^qwen_requests_total\{model="qwen-max",[^}]*status="2xx"\} 1$/m,
     '/metrics on the metrics port counts the request');
like($metrics, qr/^qwen_tokens_total\{model="qwen-max",[^}]*type="input"\} [1-9]/m,
     'and its tokens');
$res = $http->get("http://127.0.0.1:$metrics_port/status");
my $status = eval { $json->decode($res->{content}) } || {};
is((grep { $_->{model} eq 'qwen-max' } @{ $status->{models} || [] })[0]
       ->{requests}{'2xx'}, 1, '/status (JSON) counts it too');
is($http->get("http://127.0.0.1:$port/metrics")->{status}, 404,
   'no /metrics on the API port');

# the health check of the image, run inside the container
my $ctr = slurp("$run_dir/container") =~ s/\s+\z//r;
if (@$health > 1) {
    my @cmd = @$health[1 .. $#$health];
    my $rc = system('buildah', 'run', '--isolation=chroot', '--network=host',
                    '--user', '101:101', '-e', "QWEN_PORT=$port", $ctr, '--',
                    @cmd);
    is($rc, 0, 'the health check passes inside the container');
}

# ------------------------------------------------------- secrets, files --

my %rendered;
File::Find::find({ no_chdir => 1, wanted => sub {
    $rendered{$_} = slurp($_) if -f $_;
} }, "$run_dir/tmp");
ok(exists $rendered{"$run_dir/tmp/nginx/nginx.conf"},
   'the configuration was rendered into /tmp/nginx');
like($rendered{"$run_dir/tmp/nginx/nginx.conf"} // '',
     qr/^\s*listen $port;/m, 'with QWEN_PORT');
like($rendered{"$run_dir/tmp/nginx/nginx.conf"} // '',
     qr/server 127\.0\.0\.1:$mock_port;/, 'and QWEN_UPSTREAM');
is_deeply([grep { index($rendered{$_}, $key) >= 0 } sort keys %rendered], [],
          'the key is in no file under /tmp');
for my $log ('stdout.log', 'stderr.log') {
    unlike(slurp("$run_dir/$log"), qr/\Q$key\E/, "the key is not in $log");
}
like(slurp("$run_dir/stdout.log"),
     qr{"POST /v1/chat/completions HTTP/1\.1" 200 .*model=qwen/qwen-max->qwen-max},
     'the access log went to the standard output');

# no command line of the run shows the key (it goes in through a pipe)
my @run_pids = (slurp("$run_dir/buildah.pid") =~ /(\d+)/);
for (my $i = 0; $i < @run_pids; $i++) {
    push @run_pids, map { $_->[0] } children($run_pids[$i]);
}
cmp_ok(scalar @run_pids, '>', 3, 'the processes of the run were found');
is_deeply([grep { index(slurp("/proc/$_/cmdline"), $key) >= 0 } @run_pids],
          [], 'no command line of the run has the key');

# what the container wrote outside /tmp (a bind mount) is in its own layer
my $merged = `buildah mount '$ctr' 2>/dev/null` =~ s/\s+\z//r;
my @written;
if ($merged && -d dirname($merged) . '/diff') {
    my $diff = dirname($merged) . '/diff';
    File::Find::find({ no_chdir => 1, wanted => sub {
        push @written, substr($_, length $diff) if !-d $_;
    } }, $diff);
    system("buildah umount '$ctr' >/dev/null");
    # buildah's own marker file
    is_deeply([grep { $_ ne '/run/.containerenv' } sort @written], [],
              'nginx wrote nothing outside /tmp (a read-only root would do)');
} else {
    fail('the container\'s layer can be read');
}

# ---------------------------------------------------------------- reload --

# scripts/image.sh reload: `qwen-entrypoint reload` in the running
# container (as kubectl exec would), here with client keys on: the
# templates are rendered again and nginx reloads
my @old_workers = map { $_->[0] } @workers;
{
    local @ENV{keys %env} = values %env;
    delete local $ENV{DASHSCOPE_API_KEY};
    local $ENV{QWEN_CLIENT_KEYS} = 'on';
    my ($rc, $secs) = script("$base/reload.log", 'reload');
    is($rc, 0, sprintf 'scripts/image.sh reload (%.1f s)', $secs)
        or diag slurp("$base/reload.log");
}
my @new;
$deadline = time + 10;
while (time < $deadline) {
    @new = grep { my $p = $_; !grep { $_ == $p } @old_workers }
           map { $_->[0] } grep { $_->[1] eq 'nginx' } children($nginx_master);
    last if @new >= 2;
    sleep 0.1;
}
is(scalar @new, 2, 'new workers after the reload');
# the old ones end once idle (a kept-alive connection to one of them would
# still be served with the old configuration): new connections from here
$deadline = time + 10;
sleep 0.1 while grep({ alive($_) } @old_workers) && time < $deadline;
ok(!grep({ alive($_) } @old_workers), 'the old workers ended');
$http = HTTP::Tiny->new(timeout => 10);
like(slurp("$run_dir/tmp/nginx/nginx.conf"),
     qr{qwen_keys_file /etc/qwen/keys/keys\.json;}, 'rendered with the keys');

$res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
    headers => { 'content-type' => 'application/json' }, content => $chat });
is($res->{status}, 401, 'client keys on: no key, 401');
$res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
    headers => { 'content-type' => 'application/json',
                 'authorization' => "Bearer $client_key" },
    content => $chat });
is($res->{status}, 200, 'the key of the mounted keys file: 200')
    or diag $res->{content};
$metrics = $http->get("http://127.0.0.1:$metrics_port/metrics")->{content} // '';
like($metrics, qr/^qwen_requests_total\{model="qwen-max",[^}]*status="2xx"\} 2$/m,
     'the counters were kept across the reload');

# ---------------------------------------------------------------- SIGQUIT --

# a stream of 20 events 150 ms apart (3 s) is under way when the stop
# comes: nginx stops taking connections but lets it finish
my $stream_out = "$base/stream.out";
my $client = fork // die "fork: $!";
if ($client == 0) {
    open my $out, '>', $stream_out or die $!;
    $out->autoflush(1);
    my $r = HTTP::Tiny->new(timeout => 30)->post(
        "http://127.0.0.1:$port/v1/chat/completions", {
            headers => { 'content-type' => 'application/json',
                         'authorization' => "Bearer $client_key",
                         'x-mock-chunks' => 20,
                         'x-mock-interval-ms' => 150 },
            content => '{"model":"qwen-plus","stream":true,'
                     . '"messages":[{"role":"user","content":"Hi"}]}',
            data_callback => sub { print $out $_[0] },
        });
    print $out "\nSTATUS $r->{status}\n";
    close $out;
    POSIX::_exit(0);
}
$deadline = time + 5;
sleep 0.05 until slurp($stream_out) =~ /^data: /m || time > $deadline;
like(slurp($stream_out), qr/^data: /m, 'a stream is under way');

my $t0 = time;
my $stopper = fork // die "fork: $!";
if ($stopper == 0) {
    local @ENV{keys %env} = values %env;
    open STDOUT, '>', "$base/stop.log";
    open STDERR, '>&', \*STDOUT;
    exec "$repo/scripts/image.sh", 'stop';
    die "exec: $!";
}
my $refused;
$deadline = time + 1.5;
while (time < $deadline) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1);
    if (!$s) {
        $refused = 1;
        last;
    }
    close $s;
    sleep 0.05;
}
ok($refused, 'after SIGQUIT, new connections are refused');
waitpid $client, 0;
my $stream_secs = time - $t0;
my $stream = slurp($stream_out);
like($stream, qr/^data: \[DONE\]$/m, 'the stream finished')
    or diag substr($stream, -500);
like($stream, qr/STATUS 200/, 'with 200');
is(scalar(() = $stream =~ /"content":"w\d+ ?"/g), 20, 'all 20 events came');

my $gone;
$deadline = time + 10;
while (time < $deadline) {
    if (waitpid($stopper, WNOHANG) == $stopper) {
        $gone = 1;
        last;
    }
    sleep 0.1;
}
ok($gone && $? == 0, 'scripts/image.sh stop ended') or diag slurp("$base/stop.log");
my $stop_secs = time - $t0;
ok(!alive($nginx_master), sprintf 'nginx stopped (%.1f s after SIGQUIT,'
   . ' the stream took %.1f s)', $stop_secs, $stream_secs);
cmp_ok($stop_secs, '<', 10, 'in time');
ok(!grep({ alive($_) } @run_pids), 'no process of the run is left');
like(slurp("$run_dir/stderr.log"), qr/gracefully shutting down|exit$/m,
     'nginx shut down gracefully');
unlike(slurp("$run_dir/stderr.log"), qr/\[(?:alert|emerg|crit)\]/,
       'nothing alarming in the error log');
$stopped = 1;
is(scalar(grep { /\Q$ctr\E/ } `buildah containers --format '{{.ContainerName}}'`),
   0, 'the container was removed');

# ------------------------------------------------------ the entry point --

# in a container of its own, /tmp a tmpfs: what qwen-entrypoint renders
$scratch = `buildah from --pull-never '$tag' 2>/dev/null` =~ s/\s+\z//r;
ok($scratch, 'a second container of the image');
my $templates = "$base/templates";
mkdir $templates or die $!;
open my $tf, '>', "$templates/nginx.conf.template" or die $!;
print $tf "events {}\n";
close $tf;
open $tf, '>', "$templates/probe.txt.template" or die $!;
print $tf 'port=${QWEN_PORT} upstream=$QWEN_UPSTREAM_SERVER'
        . ' key=${DASHSCOPE_API_KEY} unset=${QWEN_NOT_SET}'
        . ' nginx=$host lower=${lower_case}' . "\n";
close $tf;
chmod 0755, $templates;
chmod 0644, glob "$templates/*";

sub entrypoint {
    my ($env, @cmd) = @_;
    my @e = map { ('-e', "$_=$env->{$_}") } sort keys %$env;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec 'buildah', 'run', '--isolation=chroot', '--network=host',
            '--user', '101:101', '--mount', 'type=tmpfs,destination=/tmp',
            '-v', "$templates:/etc/nginx/templates:ro", @e, $scratch, '--',
            '/usr/local/bin/qwen-entrypoint', @cmd;
        die "exec: $!";
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    return ($? >> 8, $out);
}

my ($rc, $out) = entrypoint({ QWEN_PORT => 8123, DASHSCOPE_API_KEY => $key,
                              lower_case => 'x' },
                            'cat', '/tmp/nginx/probe.txt');
is($out, 'port=8123 upstream=dashscope-intl.aliyuncs.com:443'
       . ' key=${DASHSCOPE_API_KEY} unset=${QWEN_NOT_SET} nginx=$host'
       . ' lower=${lower_case}' . "\n",
   'templates: variables set, in upper case and not secret, are replaced');
($rc, $out) = entrypoint({ QWEN_REGION => 'beijing' },
                         'cat', '/tmp/nginx/probe.txt');
like($out, qr/upstream=dashscope\.aliyuncs\.com:443 /,
     'QWEN_REGION=beijing: the Beijing endpoint by default');
($rc, $out) = entrypoint({ QWEN_UPSTREAM => 'ftp://example.com' }, 'true');
ok($rc != 0 && $out =~ /QWEN_UPSTREAM=ftp:/, 'QWEN_UPSTREAM=ftp://...: refused');
($rc, $out) = entrypoint({ QWEN_UPSTREAM => 'https://example.com:8443/v1' }, 'true');
ok($rc != 0 && $out =~ /no path/, 'QWEN_UPSTREAM with a path: refused');
($rc, $out) = entrypoint({ QWEN_PORT => 9145 }, 'true');
ok($rc != 0 && $out =~ /both 9145/, 'QWEN_PORT = QWEN_METRICS_PORT: refused');
($rc, $out) = entrypoint({ QWEN_CLIENT_KEYS => 'on' }, 'true');
ok($rc != 0 && $out =~ m{/etc/qwen/keys/keys\.json}, 'client keys without the keys file: refused');

# ---------------------------------------------------- read-only root --

# buildah run cannot make the root read-only: the same image, mounted, with
# its root bound read-only, /tmp a directory of ours, in a mount namespace
# of its own (unshare), entered as 101:101 with chroot, as a container
# runtime's --read-only would
my $root = `buildah mount '$scratch' 2>/dev/null` =~ s/\s+\z//r;
my $ro_tmp = "$base/ro-tmp";
mkdir $ro_tmp, 0700 or die $!;
chown 101, 101, $ro_tmp;
my $ro_port = free_port($mock_port, $port, $metrics_port);
my $ro_metrics = free_port($mock_port, $port, $metrics_port, $ro_port);
my $ro = fork // die "fork: $!";
if ($ro == 0) {
    open STDIN, '<', '/dev/null';
    # the standard output the user's own, as runc and crun give it: nginx
    # opens /dev/stdout itself (no relay by the entry point)
    open STDOUT, '>', "$base/ro.out" or die $!;
    chown 101, 101, "$base/ro.out";
    open STDERR, '>', "$base/ro.err" or die $!;
    $ENV{$_} = $env{$_} for qw(QWEN_UPSTREAM DASHSCOPE_API_KEY QWEN_LOG_LEVEL);
    $ENV{QWEN_PORT} = $ro_port;
    $ENV{QWEN_METRICS_PORT} = $ro_metrics;
    $ENV{QWEN_WORKER_PROCESSES} = 1;
    exec 'unshare', '-m', '--propagation', 'private', 'sh', '-c', q{
        set -e
        r=$1 t=$2
        mount --bind "$r" "$r"
        mount -o remount,bind,ro "$r"
        mount --bind "$t" "$r/tmp"
        mount --rbind /dev "$r/dev"
        mount -t proc proc "$r/proc"
        if touch "$r/etc/qwen/written" 2>/dev/null; then
            echo "the root is writable" >&2
            exit 99
        fi
        exec chroot --userspec=101:101 "$r" /usr/local/bin/qwen-entrypoint
    }, 'read-only-root', $root, $ro_tmp;
    die "exec: $!";
}
$res = {};
$deadline = time + 10;
while (time < $deadline) {
    $res = $http->get("http://127.0.0.1:$ro_port/readyz");
    last if $res->{status} == 200 || waitpid($ro, WNOHANG) == $ro;
    sleep 0.1;
}
is($res->{status}, 200, 'read-only root: /readyz 200')
    or diag slurp("$base/ro.err");
$res = $http->post("http://127.0.0.1:$ro_port/v1/chat/completions", {
    headers => { 'content-type' => 'application/json' }, content => $chat });
is($res->{status}, 200, 'read-only root: a chat completion 200');
# a body over client_body_buffer_size (1m) goes to a temporary file
my $big = '{"model":"qwen-plus","messages":[{"role":"user","content":"'
        . ('x' x (1536 * 1024)) . '"}]}';
$res = $http->post("http://127.0.0.1:$ro_port/v1/chat/completions", {
    headers => { 'content-type' => 'application/json' }, content => $big });
is($res->{status}, 200, 'read-only root: a 1.5 MB body (a temporary file) 200');
my ($ro_master) = slurp("$ro_tmp/nginx/nginx.pid") =~ /(\d+)/;
is_deeply([grep { $_->[1] ne 'nginx' } children($ro_master // 0)], [],
          'read-only root: the standard output its own, no relay');
kill 'QUIT', $ro_master if $ro_master;
my $ro_gone;
$deadline = time + 10;
while (time < $deadline) {
    if (waitpid($ro, WNOHANG) == $ro) {
        $ro_gone = 1;
        last;
    }
    sleep 0.1;
}
ok($ro_gone && $? == 0, 'read-only root: SIGQUIT stops it')
    or do { kill 'KILL', $ro unless $ro_gone; diag slurp("$base/ro.err") };
like(slurp("$base/ro.err"), qr/a client request body is buffered to a temporary file/,
     'read-only root: the body went through /tmp/nginx/client_body_temp');
unlike(slurp("$base/ro.err"), qr/\[(?:alert|emerg|crit)\]|Read-only|Permission denied/,
       'read-only root: nothing failed') or diag slurp("$base/ro.err");
like(slurp("$base/ro.out"), qr{"POST /v1/chat/completions HTTP/1\.1" 200 },
     'read-only root: the access log on the standard output');
Qwen::SecretScan::collect_logs($base, "the read-only run in t/161-image.t")
    if defined &Qwen::SecretScan::collect_logs;
system("buildah umount '$scratch' >/dev/null 2>&1");
system("buildah rm '$scratch' >/dev/null 2>&1") if $scratch;
undef $scratch;

collect();
done_testing();
