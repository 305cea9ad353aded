# The shipped configurations: conf-examples/quickstart.conf passes
# "nginx -t" and serves through the mock, with and without an API key in
# the environment; dashscope-upstreams.conf passes "nginx -t" once its host
# names resolve (they are mapped to loopback here: the suite runs offline).
#
# These run nginx by hand, not through Test::Nginx::Socket, because they
# test whole configuration files rather than blocks of one.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);

my $repo = $ENV{TEST_NGINX_REPO} or plan skip_all => 'TEST_NGINX_REPO not set';
my $nginx = $ENV{QWEN_NGINX} || '/usr/sbin/nginx';

mkdir "$repo/build/run";
mkdir "$repo/build/run/tmp";
unlink "$repo/build/run/dashscope-upstreams.conf";
unlink "$repo/build/run/qwen-otel.json";

sub nginx_t {
    my ($prefix, $conf, %env) = @_;
    local @ENV{keys %env} = values %env;
    my $out = `$nginx -p $prefix -c $conf -t 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = nginx_t($repo, 'conf-examples/quickstart.conf',
                         DASHSCOPE_API_KEY => undef);
is($rc, 0, 'quickstart.conf passes nginx -t without a key') or diag $out;
like($out, qr/region "singapore" has no key, its requests go to region "mock"/,
     'without a key the regions stand in with the mock');

($rc, $out) = nginx_t($repo, 'conf-examples/quickstart.conf',
                      DASHSCOPE_API_KEY => 'sk-test-not-printed');
is($rc, 0, 'quickstart.conf passes nginx -t with a key') or diag $out;
unlike($out, qr/no key/, 'with a key no region stands in');
unlike($out, qr/sk-test-not-printed/, 'the key is not printed');

# dashscope-upstreams.conf, its hosts mapped to 127.0.0.1
{
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/conf";
    mkdir "$dir/logs";
    open my $in, '<', "$repo/conf-examples/dashscope-upstreams.conf" or die $!;
    my $ups = do { local $/; <$in> };
    close $in;
    my $hosts = () = $ups =~ /server\s+\S+aliyuncs\.com:443;/g;
    $ups =~ s/server\s+\S+aliyuncs\.com:443;/server 127.0.0.1:443;/g;
    open my $out_fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $out_fh "error_log logs/error.log;\nevents {}\nhttp {\n$ups\n}\n";
    close $out_fh;
    my ($rc2, $out2) = nginx_t("$dir/", "$dir/conf/nginx.conf");
    is($rc2, 0, 'dashscope-upstreams.conf passes nginx -t') or diag $out2;
    is($hosts, 4, 'it defines the four regions');
}

# the quickstart serving, with the mock on the port it expects
SKIP: {
    my $mock = fork // die;
    if ($mock == 0) {
        open STDOUT, '>', '/dev/null';
        exec 'node', "$repo/t/mock/dashscope.js", '--port', '8001',
             '--key', 'sk-mock';
        die;
    }

    local $ENV{DASHSCOPE_API_KEY};
    delete $ENV{DASHSCOPE_API_KEY};
    delete $ENV{ALIBABA_CLOUD_API_KEY};

    my $gw = fork // die;
    if ($gw == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', "$repo/build/run/quickstart-test.log";
        chdir $repo;
        exec $nginx, '-p', $repo, '-c', 'conf-examples/quickstart.conf';
        die;
    }

    # both must be up: the quickstart and the mock behind it
    my $http = HTTP::Tiny->new(timeout => 5);
    my $res;
    for (1 .. 100) {
        my $mock_res = $http->get('http://127.0.0.1:8001/compatible-mode/v1/models',
                                  { headers => { authorization => 'Bearer sk-mock' } });
        $res = $http->get('http://127.0.0.1:8000/v1/models');
        last if $res->{status} == 200 && $mock_res->{status} == 200;
        sleep 0.1;
    }

    skip 'the quickstart did not start (port 8000 or 8001 busy?)', 12
        unless $res->{status} == 200;

    like($res->{content}, qr/"id":"qwen-plus"/, 'the quickstart lists models');

    $res = $http->post('http://127.0.0.1:8000/v1/chat/completions', {
        headers => { 'content-type' => 'application/json',
                     'authorization' => 'Bearer anything' },
        content => '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"hi"}]}',
    });
    is($res->{status}, 200, 'a chat completion through the quickstart');
    like($res->{content}, qr/"model":"qwen-max"/,
         'the mock got the rewritten model');

    $res = $http->post('http://127.0.0.1:8000/v1/chat/completions', {
        headers => { 'x-qwen-region' => 'beijing' },
        content => '{"model":"qwen-long","stream":true}',
    });
    like($res->{content}, qr/data: \[DONE\]/, 'a stream through the quickstart');
    unlike($res->{content}, qr/"usage":\{/, 'without the usage it did not ask for');

    $res = $http->get('http://127.0.0.1:8000/metrics');
    like($res->{content},
         qr/^qwen_requests_total\{model="qwen-max",provider="alibaba-cloud",status="2xx"\} 1$/m,
         'the quickstart serves /metrics');
    like($res->{content},
         qr/^qwen_tokens_total\{model="qwen-long",provider="alibaba-cloud",type="output"\} [1-9]/m,
         'with the usage of the stream');

    # the OpenTelemetry log line of the stream, once nginx has written it
    sleep 0.2;
    open my $log, '<', "$repo/build/run/qwen-otel.json";
    my @lines = $log ? <$log> : ();
    my ($line) = grep { /"gen_ai.request.model":"qwen-long"/ } @lines;
    ok($line, 'the JSON access log has the stream');
    my $doc = eval { JSON::PP->new->decode($line // '') };
    ok($doc, 'the line is JSON') or diag $line;
    is($doc && $doc->{'gen_ai.response.model'}, 'qwen-long',
       'gen_ai.response.model');
    like($doc && $doc->{'gen_ai.usage.output_tokens'}, qr/^[1-9]\d*$/,
         'gen_ai.usage.output_tokens');
    is($doc && $doc->{'gen_ai.operation.name'}, 'chat', 'gen_ai.operation.name');

    kill 'QUIT', $gw;
    kill 'TERM', $mock;
    waitpid $gw, 0;
    waitpid $mock, 0;
}

done_testing();
