# The metrics zone with two workers: every request is counted once, in one
# set of totals, whichever worker served it; and a zone whose size changes
# on reload starts afresh (nginx gives a zone of another size new memory)
# without a crash, and counts again.
#
# Driven by hand, as t/120-zone.t: one nginx across many requests and a
# reload.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use IO::Socket::INET;
use lib "$ENV{TEST_NGINX_REPO}/t/lib";
use Qwen::FreePort qw(free_port);
use Qwen::Reload ();

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $so = $ENV{TEST_NGINX_LOAD_MODULES} or plan skip_all => 'no module';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';

my $port = free_port($mock);

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(conf logs);

sub write_conf {
    my ($zone) = @_;
    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh <<"_EOC_";
load_module $so;
master_process on;
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    log_format pids '\$pid';
    access_log logs/access.log pids;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    upstream mock { server 127.0.0.1:$mock; }
    qwen_models_file $repo/conf-examples/qwen-models.json;
    qwen_region singapore url=http://mock key=sk-mock;
    qwen_metrics_zone qwen $zone;
    server {
        # reuseport: the kernel spreads connections over both workers
        listen 127.0.0.1:$port reuseport;
        location /v1/ {
            qwen_gateway on;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            proxy_pass \$qwen_upstream/compatible-mode\$uri;
        }
        location = /status { qwen_status json; }
    }
}
_EOC_
    close $fh;
}

# a new connection each time, so that both workers get some
my $http_new = sub { HTTP::Tiny->new(timeout => 5, keep_alive => 0) };

sub chat {
    my ($model) = @_;
    return $http_new->()->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'x-mock-usage' => '10,5' },
        content => qq{{"model":"$model","messages":[]}},
    })->{status};
}

sub status {
    return $http_new->()->get("http://127.0.0.1:$port/status")->{content} // '';
}

sub wait_up {
    for (1 .. 50) {
        return 1 if $http_new->()->get("http://127.0.0.1:$port/status")
                        ->{status} == 200;
        sleep 0.1;
    }
    return 0;
}

sub reload {
    return Qwen::Reload::reload(log => "$dir/logs/error.log", workers => 2,
        nginx => [$nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf"]);
}

sub log_count {
    my ($file, $re) = @_;
    open my $fh, '<', "$dir/logs/$file" or return 0;
    my $n = grep { /$re/ } <$fh>;
    return $n;
}

write_conf('1m');
system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf") == 0
    or BAIL_OUT('nginx did not start');

END {
    system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf", '-s', 'stop')
        if $dir && -f "$dir/logs/nginx.pid";
}

ok(wait_up(), 'nginx is up with two workers');
truncate "$dir/logs/access.log", 0;

my $fails = grep { chat('qwen-max') != 200 } 1 .. 60;
is($fails, 0, '60 requests answered');

my %pids;
if (open my $fh, '<', "$dir/logs/access.log") {
    while (<$fh>) { chomp; $pids{$_}++ }
}
is(scalar keys %pids, 2, 'both workers served requests')
    or diag(explain(\%pids));

like(status(), qr/"model":"qwen-max","provider":"alibaba-cloud","requests":\{"2xx":60\},"tokens":\{"input":600,"output":300,/,
     'one set of totals: every request counted once');

# a reload with another size: a new zone, counted from zero

write_conf('2m');
ok(reload(), 'the reload with a 2m zone took: new workers, the old ones gone');
ok(wait_up(), 'nginx is up after the reload with a 2m zone');

is(chat('qwen-max'), 200, 'a request after the resize is answered');
like(status(), qr/"model":"qwen-max","provider":"alibaba-cloud","requests":\{"2xx":1\}/,
     'the resized zone counts from zero');

# and back, with a reload that keeps the size: the counters go on

ok(reload(), 'the plain reload took');
is(chat('qwen-max'), 200, 'a request after a plain reload is answered');
like(status(), qr/"requests":\{"2xx":2\}/, 'and the counters went on');

is(log_count('error.log', qr/\[(alert|crit|emerg)\]/), 0, 'no alert in the log');

done_testing();
