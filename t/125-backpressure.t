# A client that stops reading a long stream whose usage chunk the gateway
# hides: the upstream must be made to wait (the filter consumes an input
# buffer only once what it made of it is sent), so the worker's memory
# stays bounded instead of growing by the size of the stream.
#
# This needs one nginx, a raw client socket that stops reading, and the
# worker's RSS from /proc, so it drives nginx by hand, as t/120-zone.t does.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use lib "$ENV{TEST_NGINX_REPO}/t/lib";
use Qwen::FreePort qw(free_port);

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $so = $ENV{TEST_NGINX_LOAD_MODULES} or plan skip_all => 'no module';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';
-d '/proc/self' or plan skip_all => 'no /proc';

# a free port
my $port = free_port($mock);

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(conf logs);

open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
print $fh <<"_EOC_";
load_module $so;
master_process on;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    upstream mock { server 127.0.0.1:$mock; keepalive 4; }
    qwen_models_file $repo/conf-examples/qwen-models.json;
    qwen_region singapore url=http://mock key=sk-mock;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            qwen_gateway on;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
            send_timeout 60s;
            proxy_pass \$qwen_upstream/compatible-mode\$uri;
        }
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

sub worker_pid {
    for (1 .. 50) {
        if (open my $p, '<', "$dir/logs/nginx.pid") {
            my $master = <$p>;
            chomp $master;
            for my $task (glob "/proc/*/stat") {
                open my $s, '<', $task or next;
                my $stat = <$s> // '';
                return $1 if $stat =~ /^(\d+) \(nginx\) \S+ $master /;
            }
        }
        sleep 0.1;
    }
    return undef;
}

sub rss_kb {
    my ($pid) = @_;
    open my $s, '<', "/proc/$pid/status" or return 0;
    while (<$s>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

my $worker = worker_pid() or BAIL_OUT('no worker');

# 200000 content events: about 38 MB of stream; the client did not ask for
# usage, so the gateway injects it and removes the usage chunk
my $chunks = 200000;
my $body = '{"model":"qwen-plus","stream":true,"messages":[]}';

my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
    or BAIL_OUT("connect: $!");
print $sock "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\n"
    . "X-Mock-Chunks: $chunks\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body";

# read the first megabyte, then stop reading
my $got = '';
my $deadline = time + 20;
while (length($got) < 1_000_000 && time < $deadline) {
    sysread($sock, $got, 65536, length $got) or last;
}
ok(length($got) >= 1_000_000, 'the stream began');

my $before = rss_kb($worker);
sleep 3;
my $during = rss_kb($worker);
my $growth = $during - $before;

diag("worker RSS ${before} kB -> ${during} kB while the client does not read");
cmp_ok($growth, '<', 8 * 1024,
       'the worker did not take in the stream the client is not reading');

# then read the rest: the whole stream arrives, usage chunk removed
$deadline = time + 60;
while (time < $deadline) {
    my $n = sysread($sock, $got, 1 << 20, length $got);
    last unless $n;
}
close $sock;

# (ok, not like: a failure must not print 38 MB)
my $words = () = $got =~ /"content":"w\d+ ?"/g;
is($words, $chunks, 'every content event arrived');
ok(substr($got, -20) =~ /data: \[DONE\]\n\n\z/, 'the stream ended with [DONE]');
ok($got !~ /"usage":\{/, 'and without the usage chunk the gateway asked for');

my $after = rss_kb($worker);
diag("worker RSS ${after} kB after the stream");
cmp_ok($after - $before, '<', 8 * 1024, 'and memory stayed bounded');

open my $log, '<', "$dir/logs/error.log" or die $!;
my @bad = grep { /\[(alert|crit|emerg)\]/ } <$log>;
is(scalar @bad, 0, 'no alert in the log') or diag(@bad);

done_testing();
