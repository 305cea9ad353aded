# The shared zone across a running nginx: counters survive "nginx -s
# reload", an unpriced model is logged once however many requests it gets,
# a stream the client walks away from is counted as incomplete, and a full
# zone drops its least recently used entry with a clear log line and goes
# on counting.
#
# These need one nginx across many requests and a reload, so they drive
# nginx by hand rather than through Test::Nginx::Socket blocks.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use IO::Socket::INET;
use FindBin;
use lib "$FindBin::Bin/lib";
use Qwen::FreePort qw(free_port);
use Qwen::Reload ();

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $so = $ENV{TEST_NGINX_LOAD_MODULES} or plan skip_all => 'no module';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';
my $port = free_port($mock);

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(conf logs);

# nginx stops with the test, however the test ends (before File::Temp
# removes its directory)
$SIG{INT} = $SIG{TERM} = sub { exit 1 };
END {
    my $pid;
    if ($dir && open my $fh, '<', "$dir/logs/nginx.pid") {
        ($pid) = (scalar <$fh> // '') =~ /^(\d+)/;
    }
    if ($pid && kill 0, $pid) {
        local $?;
        system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf", '-s', 'stop');
    }
}

sub write_conf {
    my ($zone, $models) = @_;
    # metric labels come from the catalogue: filling the zone takes
    # catalogued models
    my $inline = join '', map { "    qwen_model model-$_;\n" } 1 .. ($models || 0);
    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh <<"_EOC_";
load_module $so;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    upstream mock { server 127.0.0.1:$mock; keepalive 4; }
    qwen_models_file $repo/conf-examples/qwen-models.json;
    qwen_region singapore url=http://mock key=sk-mock;
    qwen_metrics_zone qwen $zone;
$inline    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            qwen_gateway on;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            qwen_unknown_model pass;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass \$qwen_upstream/compatible-mode\$uri;
        }
        location = /status { qwen_status json; }
    }
}
_EOC_
    close $fh;
}

my $http = HTTP::Tiny->new(timeout => 5);

sub chat {
    my ($model, $usage) = @_;
    return $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'x-mock-usage' => $usage || '10,5' },
        content => qq{{"model":"$model","messages":[]}},
    });
}

sub status {
    my $res = $http->get("http://127.0.0.1:$port/status");
    return $res->{content} // '';
}

sub log_count {
    my ($re) = @_;
    open my $fh, '<', "$dir/logs/error.log" or return 0;
    my $n = grep { /$re/ } <$fh>;
    close $fh;
    return $n;
}

sub wait_up {
    for (1 .. 50) {
        my $res = $http->get("http://127.0.0.1:$port/status");
        return 1 if $res->{status} == 200;
        sleep 0.1;
    }
    return 0;
}

write_conf('1m');
system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf") == 0
    or BAIL_OUT('nginx did not start');
ok(wait_up(), 'nginx is up');

# counters survive a reload

chat('qwen-max', '100,20')->{status} == 200 or diag 'chat failed';
chat('qwen-max', '100,20');
like(status(), qr/"model":"qwen-max".*"requests":\{"2xx":2\}/,
     'two requests counted');

ok(Qwen::Reload::reload(log => "$dir/logs/error.log",
                        nginx => [$nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf"]),
   'the reload took: a new worker, the old one gone');
chat('qwen-max', '100,20');
like(status(), qr/"model":"qwen-max".*"requests":\{"2xx":3\}.*"input":300/,
     'the counters survived the reload and go on');

# an unpriced model is logged once

chat('qwen-coder') for 1 .. 3;
like(status(), qr/"model":"qwen-coder".*"unpriced":3/,
     'three unpriced requests counted');
is(log_count(qr/model "qwen-coder" has no price in the catalogue/), 1,
   'and logged once');

# models outside the catalogue, passed on: one label, "other", so names a
# client chooses can neither grow the label set nor churn the zone

chat("client-chosen-$_") for 1 .. 5;
like(status(), qr/"model":"other".*"requests":\{"2xx":5\}.*"unpriced":5/,
     'names the client chose are counted under "other"');
unlike(status(), qr/client-chosen/, 'and never become a label');
is(log_count(qr/model "client-chosen-\d+" has no price/), 1,
   'and are logged once, not once each');

# a client that walks away in the middle of a stream

{
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")
        or die "connect: $!";
    my $body = '{"model":"qwen-turbo","stream":true}';
    print $sock "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        . "X-Mock-Interval-Ms: 100\r\nX-Mock-Chunks: 30\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    my $got = '';
    while ($got !~ /data: .*\n\n.*data: /s) {
        sysread($sock, $got, 4096, length $got) or last;
    }
    like($got, qr/text\/event-stream/, 'a stream began');
    close $sock;
    sleep 1;
}

is(log_count(qr/\[warn\].*qwen: incomplete answer from model "qwen-turbo" \(the client went away\)/), 1,
   'a stream the client left is logged as incomplete, once');
like(status(), qr/"model":"qwen-turbo".*?"incomplete":1/,
     'and counted as incomplete');

# a full zone drops its least recently used entry

system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf", '-s', 'stop');
sleep 0.5;
write_conf('32k', 300);
system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf") == 0
    or BAIL_OUT('nginx did not start');
ok(wait_up(), 'nginx is up with a 32k zone');

my $fails = 0;
for my $i (1 .. 300) {
    $fails++ if chat("model-$i")->{status} != 200;
}
is($fails, 0, 'every request of 300 distinct models was answered');

ok(log_count(qr/\[warn\].*qwen: metrics zone "qwen" is full: dropped the counters of model "model-1" /) >= 1,
   'the zone said it is full and which model it dropped');

my $st = status();
like($st, qr/"model":"model-300"/, 'the newest model is counted');
unlike($st, qr/"model":"model-1"/, 'the oldest was dropped');
like($st, qr/"evicted":[1-9]\d*/, 'the status shows evictions');
is(log_count(qr/\[(alert|crit|emerg)\]/), 0, 'no alert in the log');

system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf", '-s', 'stop');

done_testing();
