# The secret scan itself (t/lib/Qwen/SecretScan.pm, t/lib/secret-scan,
# t/lib/nginx-record.sh; docs/testing.md): it finds the keys the suite
# configures, and deliberate leaks in small test files of its own, run the
# way scripts/run-tests.sh runs the suite but with their own scan directory,
# are caught: in an answer of a Test::Nginx block, in an answer HTTP::Tiny
# got (header and body), in an error log and in access logs, both of
# Test::Nginx's server root and of an nginx a test started by hand in a
# temporary directory it removes. The exempt records (nginx's debug dump of
# the upstream request, the mock's echo answers) are not reported.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use Qwen::FreePort qw(free_port);
use Qwen::SecretScan ();

my $repo = $ENV{TEST_NGINX_REPO} || "$FindBin::Bin/..";
my $lib = "$repo/t/lib";
my $scan = "$lib/secret-scan";
my $key = 'sk-selftest-leak';

# --- the keys the suite configures --------------------------------------

{
    my @sources = (glob("$repo/t/*.t"), glob("$repo/conf-examples/*.conf"),
                   "$repo/scripts/run-tests.sh");
    my ($keys) = Qwen::SecretScan::extract_keys(@sources);
    my %k = map { $_ => 1 } @$keys;
    ok($k{$_}, "the suite's key $_ is searched for")
        for qw(sk-mock sk-mock-beijing sk-mock-virginia);

    my $dir = tempdir(CLEANUP => 1);
    # written with qwen_REGION and --KEY so that the suite's own scan does
    # not take these for keys of the suite
    (my $text = <<'_EOT_') =~ s/qwen_REGION/qwen_region/g;
$ENV{QWEN_X_KEY} = 'sk-from-env';
my $conf = <<'_EOC_';
    qwen_REGION a url=http://x key=sk-inline;
    qwen_REGION b url=http://x key_env=QWEN_UNSET key_env=QWEN_X_KEY;
    qwen_REGION c url=http://x key_file=$TEST_NGINX_HTML_DIR/c.key;
    qwen_REGION d url=http://x "kee=sk-misspelt";
    qwen_REGION e url=http://x key=ab;
_EOC_
my $files = ">>> c.key\n  sk-from-file \n";
system('node', 'mock.js', '--KEY', 'sk-mock-arg');
_EOT_
    $text =~ s/--KEY/'--' . 'key'/ge;
    open my $fh, '>', "$dir/x.t" or die $!;
    print $fh $text;
    close $fh;
    my ($got, $ignored) = Qwen::SecretScan::extract_keys("$dir/x.t");
    is_deeply($got, [sort qw(sk-inline sk-from-env sk-from-file sk-misspelt sk-mock-arg)],
              'keys from key=, key_env=, key_file=, a misspelt parameter, --key');
    is_deeply($ignored, ['ab'], 'a value too short to search for is set aside');

    # the client keys of a keys file (qwen_keys_file), as user_files give
    # it and as a test writes it from a Perl string; written with "KEY" so
    # that the suite's own scan does not take these for keys of the suite
    ($text = <<'_EOT_') =~ s/"KEY"/"key"/g;
--- user_files
>>> keys.json
{"keys": [
  {"id": "a", "KEY": "sk-client-json-a-0123456789", "team": "t"},
  {"id": "b","KEY":"client-key-not-sk-0123456789"},
  {"id": "c", "KEY": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
  {"id": "e", "KEY": "SHA256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"}
]}
_EOT_
    $text .= q{my $json = "{\"keys\":[{\"id\":\"d\",\"KEY\":\"sk-client-escaped-0123456789\"}]}";} . "\n";
    $text =~ s/\\"KEY\\"/\\"key\\"/g;
    open $fh, '>', "$dir/y.t" or die $!;
    print $fh $text;
    close $fh;
    ($got, $ignored) = Qwen::SecretScan::extract_keys("$dir/y.t");
    is_deeply($got, [sort qw(sk-client-json-a-0123456789 client-key-not-sk-0123456789
                             sk-client-escaped-0123456789)],
              'client keys of a keys file, in user_files and in a Perl string; '
              . 'not a sha256: digest (the prefix in any case)')
        or diag(explain($got));
}

# --- one log, line by line ----------------------------------------------

{
    my $dir = tempdir(CLEANUP => 1);
    my $d = '2026/01/01 00:00:00 [debug] 10#10: *3';
    my @lines = (
        "#### qwen-secret-scan: a header naming $key is not a log line",
        "$d http script copy: \"Authorization\"",
        "$d http script var: \"Bearer $key\"",
        "$d http script copy: \"Host\"",
        "$d http script var: \"$key.example\"",                     # 5: found
        "$d http proxy header: \"Authorization: Bearer $key\"",
        "$d http proxy header:",
        "\"POST /v1/chat/completions HTTP/1.1\r",
        "Authorization: Bearer $key\r",
        "\r",
        "\"",
        "127.0.0.1 - - \"GET /?$key HTTP/1.1\" 200 2",               # 12: found
        "2026/01/01 00:00:00 [error] 10#10: *4 the key is $key",     # 13: found
        "$d http header: \"Authorization: Bearer $key\"",            # 14: found
        # the other headers a key goes in (auth_header=): api-key, x-api-key
        "$d http script copy: \"api-key\"",
        "$d http script var: \"$key\"",                                # 16: exempt
        "$d http script copy: \"X-API-Key\"",
        "$d http script copy: \"$key\"",                               # 18: exempt (a constant)
        "$d http script copy: \"x-api-key\"",
        "$d http script copy: \"Bearer \"",
        "$d http script var: \"$key\"",                                # 21: exempt
        "$d http script copy: \"api-key\"",
        "$d http script var: \"$key\"",                                # 23: exempt
        "$d http script var: \"$key\"",                                # 24: found (one value only)
        "$d http script copy: \"x-api-key-2\"",
        "$d http script var: \"$key\"",                                # 26: found (another name)
        "$d http script copy: \"api-key\"",
        "2026/01/01 00:00:00 [debug] 10#10: *4 http script var: \"$key\"", # 28: found (another request)
        "$d http script copy: \"x-api-key\"",
        "2026/01/01 00:00:00 [info] 10#10: *3 api-key: $key",           # 30: found (not a debug record)
        "$d http script copy: \"my-api-key\"",
        "$d http script var: \"$key\"",                                # 32: found (another name)
        "$d http header: \"api-key: $key\"",                           # 33: found (the client's)
        "$d http script copy: \"api-key: $key\"",                      # 34: found (not the name)
        "$d http proxy header: \"x-api-key: $key\"",                   # 35: exempt (one header)
    );
    open my $fh, '>', "$dir/error.log" or die $!;
    print $fh map { "$_\n" } @lines;
    close $fh;
    my @hits = Qwen::SecretScan::scan_log_file("$dir/error.log", [$key]);
    is_deeply([map { $_->{line} } @hits], [5, 12, 13, 14, 24, 26, 28, 30, 32, 33, 34],
              "the proxy module's debug records of the upstream request are "
              . "exempt (the key in Authorization, api-key or x-api-key), "
              . "nothing else is");
}

# --- deliberate leaks, end to end -------------------------------------------

# the Test::Nginx this run uses: the directory prove -I gave (t/compat), or
# the installed one (not loaded here: it would act on this run's servroot)
my ($tn_inc) = grep { -f "$_/Test/Nginx/Socket.pm" } @INC;
if (!defined $tn_inc) {
    my $probe = tempdir(CLEANUP => 1);
    local $ENV{TEST_NGINX_SERVROOT} = "$probe/servroot";
    local $ENV{PERL5OPT};
    $tn_inc = '' if system("'$^X' -MTest::Nginx::Socket -e1 2>/dev/null") == 0;
}
SKIP: {
    skip 'Test::Nginx::Socket is not available', 15 unless defined $tn_inc;

    my $dir = tempdir(CLEANUP => 1);
    my $secrets = "$dir/secrets";
    mkdir $secrets or die $!;
    open my $kfh, '>', "$secrets/keys" or die $!;
    print $kfh "$key\n";
    close $kfh;

    my $port = free_port();
    my $port2 = free_port($port);

    open my $fh, '>', "$dir/leak-test-nginx.t" or die $!;
    print $fh <<"_EOT_";
use Test::Nginx::Socket 'no_plan';
repeat_each(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a key in an answer
--- config
    location = /leak { return 200 "Bearer $key\\n"; }
--- request
GET /leak
--- response_body_like: Bearer

=== TEST 2: the same answer to an echo request
--- config
    location = /leak { return 200 "Bearer $key\\n"; }
--- more_headers
X-Mock-Echo: request
--- request
GET /leak
--- response_body_like: Bearer

=== TEST 3: a key in the error log and in the access log
--- log_level: info
--- config
    location = /x { return 204; }
--- request
GET /$key
--- error_code: 404

=== TEST 4: the upstream request with its key, in the debug log only
--- config
    location = /up {
        proxy_set_header Authorization "Bearer $key";
        proxy_set_header api-key "$key";
        proxy_set_header X-Api-Key "$key";
        proxy_pass http://127.0.0.1:1/up;
    }
--- request
GET /up
--- error_code: 502

=== TEST 5: a key in a debug line of another kind
--- config
    location = /d { return 200 "ok\\n"; }
--- request
GET /d?$key
--- response_body
ok

=== TEST 6: the key in the debug record of a header that is not a key's
--- config
    location = /up {
        proxy_set_header X-Api-Key-Old "$key";
        proxy_pass http://127.0.0.1:1/up;
    }
--- request
GET /up
--- error_code: 502
_EOT_
    close $fh;

    open $fh, '>', "$dir/leak-by-hand.t" or die $!;
    print $fh <<"_EOT_";
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);

my \$dir = tempdir(CLEANUP => 1);
mkdir "\$dir/\$_" for qw(conf logs);
open my \$fh, '>', "\$dir/conf/nginx.conf" or die \$!;
print \$fh <<'_EOC_';
error_log logs/error.log info;
pid logs/nginx.pid;
events {}
http {
    access_log logs/access.log;
    server {
        listen 127.0.0.1:$port2;
        location = /body { return 200 "Bearer $key\\n"; }
        location = /header { add_header X-Key $key; return 204; }
        location / { return 200 "ok\\n"; }
    }
}
_EOC_
close \$fh;
my \@nginx = (\$ENV{QWEN_NGINX}, '-p', "\$dir/", '-c', "\$dir/conf/nginx.conf");
system(\@nginx) == 0 or BAIL_OUT('nginx did not start');
my \$http = HTTP::Tiny->new(timeout => 5);
my \$res;
for (1 .. 50) {
    \$res = \$http->get('http://127.0.0.1:$port2/');
    last if \$res->{status} == 200;
    sleep 0.1;
}
\$http->get('http://127.0.0.1:$port2/body');
\$http->get('http://127.0.0.1:$port2/header');
\$http->get('http://127.0.0.1:$port2/body', { headers => { 'X-Mock-Echo' => 'body' } });
\$http->get('http://127.0.0.1:$port2/$key');
system(\@nginx, '-s', 'stop');
sleep 0.3;
pass('done');
done_testing();
_EOT_
    close $fh;

    my $real_nginx = $ENV{QWEN_SECRET_REAL_NGINX}
        || ($ENV{QWEN_NGINX} && $ENV{QWEN_NGINX} !~ /nginx-record\.sh$/ && $ENV{QWEN_NGINX})
        || '/usr/sbin/nginx';
    my $out = '';
    {
        local $ENV{QWEN_SECRET_DIR} = $secrets;
        local $ENV{QWEN_SECRET_REAL_NGINX} = $real_nginx;
        local $ENV{QWEN_NGINX} = "$lib/nginx-record.sh";
        local $ENV{PERL5LIB} = join ':', $lib, grep { defined } $ENV{PERL5LIB};
        local $ENV{PERL5OPT} = ($ENV{PERL5OPT} // '') =~ /-MQwen::SecretScan\b/
                             ? $ENV{PERL5OPT}
                             : join ' ', grep { length } $ENV{PERL5OPT} // '',
                                                         '-MQwen::SecretScan';
        local $ENV{TEST_NGINX_SERVROOT} = "$dir/servroot";
        local $ENV{TEST_NGINX_PORT} = $port;
        local $ENV{TEST_NGINX_BINARY} = $ENV{TEST_NGINX_BINARY}
                                     || "$repo/t/nginx.sh";
        local $ENV{TEST_NGINX_NO_SHUFFLE} = 1;
        delete local $ENV{TEST_NGINX_SERVER_PORT};
        delete local $ENV{TEST_NGINX_CLIENT_PORT};
        delete local $ENV{TEST_NGINX_LOAD_MODULES};
        delete local $ENV{TEST_NGINX_USE_VALGRIND};
        delete local $ENV{TEST_NGINX_USE_HUP};
        my @inc = $tn_inc ? ("-I$tn_inc") : ();

        my $tn = `cd '$dir' && '$^X' @inc leak-test-nginx.t 2>&1`;
        my $tn_status = $?;
        my $bh = `cd '$dir' && '$^X' leak-by-hand.t 2>&1`;
        my $bh_status = $?;
        $out = `'$^X' '$scan' report '$secrets' '$dir/leak-test-nginx.t' '$dir/leak-by-hand.t' 2>&1`;
        my $scan_status = $? >> 8;

        isnt($tn_status, 0, 'the Test::Nginx file with a leak fails') or diag $tn;
        like($tn, qr/^not ok \d+ - .*TEST 1: a key in an answer - the answer to request 0 .*carries no upstream key$/m,
             'on the answer that carries the key');
        unlike($tn, qr/^not ok \d+ - .*TEST [2-6]/m,
               'and on nothing else (an echo answer may carry it)') or diag $tn;
        isnt($bh_status, 0, 'the HTTP::Tiny file with a leak fails') or diag $bh;
        like($bh, qr{^not ok \d+ - the answer to GET http://\S+/body carries no upstream key$}m,
             'on a body');
        like($bh, qr{^not ok \d+ - the answer to GET http://\S+/header carries no upstream key$}m,
             'on a header');
        is(() = $bh =~ /^not ok/mg, 2, 'and not on the echo answer') or diag $bh;
        is($scan_status, 1, 'the scan of the run fails') or diag $out;
    }

    like($out, qr/SECRET SCAN FAILED/, 'loudly');
    my %where;
    while ($out =~ m{^(\S+):(\d+): upstream key '\Q$key\E' in a log line\n\s+written by: (.*)$}mg) {
        my ($file, $line, $by) = ($1, $2, $3);
        open my $lfh, '<', $file or next;
        my @l = <$lfh>;
        next unless ($l[$line - 1] // '') =~ /\Q$key\E/;
        my $rel = substr $file, length "$secrets/logs/";
        $where{$rel}{ $by =~ /(TEST \d+)/ ? $1 : 'by hand' } = 1;
    }
    ok($where{'leak-test-nginx.t/error.log'}{'TEST 3'}
       && $where{'leak-test-nginx.t/access.log'}{'TEST 3'},
       "Test::Nginx's error and access logs, by file and line")
        or diag $out;
    ok($where{'leak-test-nginx.t/error.log'}{'TEST 5'},
       'a debug line that is not the upstream request') or diag $out;
    ok(!$where{'leak-test-nginx.t/error.log'}{'TEST 4'},
       'but not the upstream request in the debug log (Authorization, '
       . 'api-key, x-api-key)') or diag $out;
    ok($where{'leak-test-nginx.t/error.log'}{'TEST 6'},
       'a debug record of another header of the upstream request') or diag $out;
    ok($where{'leak-by-hand.t/access.log'}{'by hand'},
       'the access log of an nginx started by hand, in a directory since removed')
        or diag $out;
    like($out, qr/^answer: leak-test-nginx\.t: .*TEST 1: .*carries the upstream key '\Q$key\E'$/m,
         'the answers are listed too') or diag $out;
}

# --- a clean run passes, a file the hooks did not reach does not ------------

{
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    mkdir "$dir/logs/x.t";
    open my $fh, '>', "$dir/keys" or die $!;
    print $fh "$key\n";
    open $fh, '>', "$dir/logs/x.t/error.log" or die $!;
    print $fh "2026/01/01 00:00:00 [error] 1#1: *1 nothing to see\n";
    close $fh;
    open $fh, '>', "$dir/y.t" or die $!;
    print $fh "use Test::More;\n";
    close $fh;
    my $out = `'$^X' '$scan' report '$dir' 2>&1`;
    is($? >> 8, 0, 'a run without leaks passes') or diag $out;
    $out = `'$^X' '$scan' report '$dir' '$dir/y.t' 2>&1`;
    is($? >> 8, 1, 'a test file the hooks did not reach fails the scan');
    like($out, qr/the secret hooks did not run in: \S*y\.t$/m,
         'and is named') or diag $out;
}

done_testing();
