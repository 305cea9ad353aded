# Failover health survives a reload: a deployment taken out stays out
# after `nginx -s reload`, for both workers, when the deployments are the
# same (the zone's table is kept) and when the catalogue changed (a new
# table, what is known of the same names copied over); attempts counted
# before the reload are still counted after it.
#
# Driven by hand, as t/121-zone-workers.t: one nginx across reloads.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use lib "$ENV{TEST_NGINX_REPO}/t/lib";
use Qwen::FreePort qw(free_port);
use Qwen::Reload ();

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $so = $ENV{TEST_NGINX_LOAD_MODULES} or plan skip_all => 'no module';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';

my $port = free_port($mock);
my $dead = free_port($mock, $port);

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(conf logs);

sub write_conf {
    my ($extra_model) = @_;
    $extra_model //= '';
    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh <<"_EOC_";
load_module $so;
master_process on;
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    upstream mock { server 127.0.0.1:$mock; }
    qwen_region sg url=http://127.0.0.1:$dead path=/compatible-mode key=sk-mock;
    qwen_region us url=http://mock path=/compatible-mode key=sk-mock-virginia;
    qwen_model fo-reload deploy=sg:sg-chat deploy=us:us-chat;
    $extra_model
    qwen_metrics_zone qwen 1m;
    server {
        listen 127.0.0.1:$port reuseport;
        location /v1/ {
            qwen_gateway on;
            qwen_failover on;
            qwen_cooldown transient=60s;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            add_header X-Attempts \$qwen_attempts always;
            add_header X-Deployment \$qwen_deployment always;
            proxy_pass \$qwen_upstream\$qwen_upstream_path\$uri;
        }
        location = /status { qwen_status json; }
        location = /metrics { qwen_status prometheus; }
    }
}
_EOC_
    close $fh;
}

my $http_new = sub { HTTP::Tiny->new(timeout => 5, keep_alive => 0) };

sub chat {
    my $r = $http_new->()->post("http://127.0.0.1:$port/v1/chat/completions", {
        content => q{{"model":"fo-reload","messages":[]}},
    });
    return ($r->{status}, $r->{headers}{'x-attempts'} // '',
            $r->{headers}{'x-deployment'} // '');
}

sub get {
    return $http_new->()->get("http://127.0.0.1:$port/$_[0]")->{content} // '';
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
    Qwen::Reload::reload(log => "$dir/logs/error.log", workers => 2,
        nginx => [$nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf"])
        or return 0;
    return wait_up();
}

sub log_count {
    my ($re) = @_;
    open my $fh, '<', "$dir/logs/error.log" or return 0;
    return scalar grep { /$re/ } <$fh>;
}

write_conf();
system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf") == 0
    or BAIL_OUT('nginx did not start');

END {
    system($nginx, '-p', "$dir/", '-c', "$dir/conf/nginx.conf", '-s', 'stop')
        if $dir && -f "$dir/logs/nginx.pid";
}

ok(wait_up(), 'nginx is up with two workers');

my ($status, $attempts, $dep) = chat();
is("$status $attempts $dep", '200 2 us/us-chat',
   'the first request fails over from the dead region to us');

like(get('status'), qr/\{"name":"sg\/sg-chat","up":false,"cooldown_ms":\d+,"reason":"error","attempts":\{"error":1\}\}/,
     'sg/sg-chat is out for an error, one attempt counted');

# a plain reload: the same deployments, the same table

ok(reload(), 'nginx is up after a plain reload');

my @after = map { join ' ', (chat())[0, 1, 2] } 1 .. 6;
is_deeply(\@after, [('200 1 us/us-chat') x 6],
          'after the reload, both workers still skip sg: one attempt each')
    or diag(explain(\@after));

like(get('status'), qr/\{"name":"sg\/sg-chat","up":false,"cooldown_ms":\d+,"reason":"error","attempts":\{"error":1\}\}/,
     'sg/sg-chat is still out, its attempt still counted');
like(get('metrics'), qr/^qwen_attempts_total\{deployment="us\/us-chat",outcome="ok"\} 7$/m,
     'the answers of us/us-chat from before and after the reload add up');

# a reload with another catalogue: a new table, filled by name

write_conf('qwen_model fo-other deploy=us:us-other deploy=sg:sg-other;');
ok(reload(), 'nginx is up after a reload that adds deployments');

@after = map { join ' ', (chat())[0, 1, 2] } 1 .. 4;
is_deeply(\@after, [('200 1 us/us-chat') x 4],
          'the new table kept sg/sg-chat out')
    or diag(explain(\@after));

my $st = get('status');
like($st, qr/\{"name":"sg\/sg-chat","up":false,"cooldown_ms":\d+,"reason":"error","attempts":\{"error":1\}\}/,
     'sg/sg-chat is out in the new table, with its count');
like($st, qr/\{"name":"sg\/sg-other","up":true,"cooldown_ms":0,"reason":null,"attempts":\{\}\}/,
     'a new deployment starts up and uncounted');
like(get('metrics'), qr/^qwen_attempts_total\{deployment="us\/us-chat",outcome="ok"\} 11$/m,
     'the counts of us/us-chat went on in the new table');

is(log_count(qr/\[(alert|crit|emerg)\]/), 0, 'no alert in the log');
is(log_count(qr/no room in the zone/), 0, 'the health table fits in the zone');

done_testing();
