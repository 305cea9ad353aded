# make run from a checkout nginx's worker processes cannot enter: a clone
# under /root (mode 0700) with nginx started as root, so that its workers run
# as nobody. A request body larger than client_body_buffer_size (a base64
# image) goes to a temporary file a worker writes; when the temporary
# directories were in the checkout, such a request got 500 ("Permission
# denied" in the log).
#
# The checkout is copied into a mode-0700 directory and scripts/run-gateway.sh
# is started there as make run starts it, on free ports (QWEN_GATEWAY_PORT,
# QWEN_MOCK_PORT=0).
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use File::Copy qw(copy);
use File::Find ();
use File::Basename qw(dirname);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Digest::SHA qw(sha256_hex);
use MIME::Base64 qw(encode_base64);
use FindBin;
use lib "$FindBin::Bin/lib";
use Qwen::FreePort qw(free_port);

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
plan skip_all => 'needs root: nginx started as root, with workers that '
               . 'cannot enter the checkout, is the case under test'
    if $> != 0;
my $so = $ENV{TEST_NGINX_LOAD_MODULES} || "$repo/build/ngx_http_qwen_module.so";
plan skip_all => "no module at $so" unless -f $so;

# the checkout, copied into a private directory
my $base = tempdir('qwen-make-run-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $co = "$base/checkout";
mkdir $co, 0700 or die "$co: $!";
my @files = grep { -f "$repo/$_" } split /\0/,
    `git -C '$repo' ls-files -z 2>/dev/null`;
@files = ('scripts/run-gateway.sh', 't/mock/dashscope.js',
          map { s{^\Q$repo\E/}{}r } glob "$repo/conf-examples/*")
    unless @files;
for my $f (@files) {
    make_path(dirname("$co/$f"));
    copy("$repo/$f", "$co/$f") or die "copy $f: $!";
    chmod((stat "$repo/$f")[2] & 07777, "$co/$f");
}
make_path("$co/build");
copy($so, "$co/build/ngx_http_qwen_module.so") or die "copy $so: $!";
chmod 0700, $base, $co;

sub tree {
    my @t;
    File::Find::find({ no_chdir => 1, wanted => sub { push @t, $_ } }, $co);
    return join "\n", sort @t;
}
my $before = tree();

# make run, on free ports, its output (nginx's error log, the access log)
# kept next to the checkout
my $logs = "$base/logs";
mkdir $logs or die $!;
my $port = free_port();
my $gw = fork // die "fork: $!";
if ($gw == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', "$logs/make-run.log" or die $!;
    open STDERR, '>&', \*STDOUT;
    delete @ENV{qw(DASHSCOPE_API_KEY ALIBABA_CLOUD_API_KEY)};
    $ENV{QWEN_GATEWAY_PORT} = $port;
    $ENV{QWEN_MOCK_PORT} = 0;
    chdir $co or die $!;
    exec "$co/scripts/run-gateway.sh";
    die "exec: $!";
}
# make run stops with the test, however the test ends
END {
    if ($gw && kill 0, $gw) {
        kill 'TERM', $gw;
        waitpid $gw, 0;
    }
}

sub output {
    open my $fh, '<', "$logs/make-run.log" or return '';
    return do { local $/; <$fh> };
}

my $http = HTTP::Tiny->new(timeout => 10);
my ($res, $gone);
my $deadline = time + 10;
while (time < $deadline) {
    $res = $http->get("http://127.0.0.1:$port/v1/models");
    last if $res->{status} == 200;
    if (waitpid($gw, WNOHANG) == $gw) {
        $gone = 1;
        last;
    }
    sleep 0.1;
}
if ($res->{status} != 200) {
    diag output();
    kill 'TERM', $gw unless $gone;
    waitpid $gw, 0 unless $gone;
    BAIL_OUT('make run did not serve within 10 s');
}
pass('make run serves from a mode-0700 checkout');

my ($rt) = output() =~ /runtime directory (\S+)/;
ok($rt && $rt !~ /^\Q$base\E/, 'its runtime directory is outside the checkout')
    or diag output();

# the case under test: the workers cannot enter the checkout
my $master = '';
if ($rt && open my $fh, '<', "$rt/logs/nginx.pid") {
    ($master) = (scalar <$fh> // '') =~ /^(\d+)/;
    $master //= '';
}
my @workers;
for my $stat (glob '/proc/[0-9]*/stat') {
    open my $fh, '<', $stat or next;
    my $line = <$fh> // next;
    push @workers, $1 if $line =~ /^(\d+) \(nginx\) \S+ (\d+) / && $2 eq $master;
}
my $worker_uid;
if (@workers && open my $fh, '<', "/proc/$workers[0]/status") {
    ($worker_uid) = map { /^Uid:\s+(\d+)/ ? $1 : () } <$fh>;
}
ok(defined $worker_uid && $worker_uid != 0,
   'the worker process runs as an unprivileged user')
    or diag "master $master, workers @workers";
my @st = stat $co;
ok(($st[2] & 0077) == 0 && $st[4] != ($worker_uid // 0),
   'which cannot enter the checkout');

# a 2 MB body: more than client_body_buffer_size, so it goes to a file
srand 42;
my $image = encode_base64(pack('C*', map { int rand 256 } 1 .. 1_600_000), '');
my $body = '{"model":"qwen-vl-max","messages":[{"role":"user","content":['
         . '{"type":"text","text":"What is in this picture?"},'
         . '{"type":"image_url","image_url":{"url":"data:image/png;base64,'
         . $image . '"}}]}]}';
cmp_ok(length $body, '>', 2 * 1024 * 1024, 'the body is over 2 MB');

$res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
    headers => { 'content-type' => 'application/json' },
    content => $body,
});
is($res->{status}, 200, 'a 2 MB chat completion gets 200')
    or diag substr($res->{content} // '', 0, 500);
my $doc = eval { JSON::PP->new->decode($res->{content}) } || {};
is($doc->{model}, 'qwen-vl-max', 'answered by the mock');

$res = $http->post("http://127.0.0.1:$port/v1/chat/completions", {
    headers => { 'content-type' => 'application/json',
                 'x-mock-echo' => 'digest' },
    content => $body,
});
is($res->{content}, sprintf('{"length":%d,"sha256":"%s"}',
                            length $body, sha256_hex($body)),
   'the mock got the whole body, byte for byte');

# the JSON log, before make run removes its directory
copy("$rt/logs/qwen-otel.json", "$logs/qwen-otel.json")
    or diag "copy $rt/logs/qwen-otel.json: $!";

kill 'TERM', $gw;
my $stopped;
$deadline = time + 10;
while (time < $deadline) {
    if (waitpid($gw, WNOHANG) == $gw) {
        $stopped = 1;
        last;
    }
    sleep 0.1;
}
ok($stopped, 'make run stops on SIGTERM') or kill 'KILL', $gw;
ok($rt && !-e $rt, 'and removes its runtime directory');
ok(!kill(0, $master), 'nginx stopped with it') if $master;

my $out = output();
like($out, qr/a client request body is buffered to a temporary file/,
     'the body went through a temporary file');
unlike($out, qr/\[(?:crit|alert|emerg)\]|Permission denied/,
       'nothing failed in the log') or diag $out;
is(tree(), $before, 'make run wrote nothing into the checkout');

# for the secret scan (t/lib/Qwen/SecretScan.pm), when it runs
Qwen::SecretScan::collect_logs($logs, 'make run in t/091-make-run.t')
    if defined &Qwen::SecretScan::collect_logs;

done_testing();
