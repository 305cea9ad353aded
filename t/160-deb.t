# The Debian package (docs/debian.md): scripts/deb.sh builds
# libnginx-mod-http-qwen and lintian finds no error; `dpkg -i` installs it
# on this machine's nginx the way Debian's own libnginx-mod-* packages are
# (the module, its load file, the modules-enabled link, the ABI and cJSON
# dependencies, the examples); the system configuration still passes
# `nginx -t`; an nginx of its own (its own prefix, the module loaded through
# /etc/nginx/modules-enabled) serves a chat completion with the mock
# DashScope's key given through key_env; a higher version is installed over
# it and that nginx reloads cleanly and still serves; `dpkg -r` and
# `dpkg --purge` take everything away and `nginx -t` still passes.
#
# It changes the system (dpkg -i), so it needs root, and it removes the
# package at the end however it ends. It never starts the system nginx.
# Both packages are built first, so that the package is installed for as
# short a time as possible. Two runs at once wait for each other (a lock in
# /run/lock); a dpkg lock held by someone else's apt-get is waited for.
use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use File::Temp qw(tempdir);
use Fcntl qw(:flock);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use FindBin;
use lib "$FindBin::Bin/lib";
use Qwen::FreePort qw(free_port);

my $t0 = time;
my $repo = $ENV{TEST_NGINX_REPO} || "$FindBin::Bin/..";
my $pkg = 'libnginx-mod-http-qwen';
my $sys_nginx = '/usr/sbin/nginx';

plan skip_all => 'needs root: the test installs a package with dpkg -i'
    if $> != 0;
plan skip_all => 'needs dpkg: not a Debian system'
    unless -x '/usr/bin/dpkg' && -x '/usr/bin/dpkg-query';
plan skip_all => "needs Debian's nginx ($sys_nginx, /etc/nginx/modules-enabled)"
    unless -x $sys_nginx && -d '/etc/nginx/modules-enabled';

# the nginx this test starts: through $QWEN_NGINX under run-tests.sh, so
# that the secret scan keeps its logs
my $nginx = $ENV{QWEN_NGINX} || $sys_nginx;

sub slurp {
    open my $fh, '<', $_[0] or return undef;
    local $/;
    return scalar <$fh>;
}

# one run at a time on this machine
open my $lock, '>', '/run/lock/qwen-160-deb.lock'
    or BAIL_OUT("/run/lock/qwen-160-deb.lock: $!");
my $waited = time;
until (flock $lock, LOCK_EX | LOCK_NB) {
    BAIL_OUT('another t/160-deb.t held its lock for 10 minutes')
        if time - $waited > 600;
    sleep 1;
}

sub pkg_status {
    my $s = `dpkg-query -W -f='\${Status} \${Version}' $pkg 2>/dev/null`;
    return $s // '';
}

# a package installed by someone (not a leftover: a run always purges it)
# is not ours to replace and remove
if (pkg_status() =~ /^install ok installed/) {
    plan skip_all => "$pkg is already installed on this machine; this test "
                   . "installs and removes it (dpkg --purge $pkg to run it)";
}

my $dir = tempdir('qwen-deb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;

# the mock DashScope: run-tests.sh's, else one of our own
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
# (a package variable: a lexical's pipe would be closed, which waits for
# the mock, before the END block that stops the mock runs)
our $mfh;
my $mock_pid;
if (!$mock) {
    $mock_pid = open $mfh, '-|', 'node', "$repo/t/mock/dashscope.js",
                     '--port', '0', '--key', 'sk-mock'
        or BAIL_OUT("node t/mock/dashscope.js: $!");
    my $line = <$mfh> // '';
    ($mock) = $line =~ m{listening on http://[^ ]*:(\d+)}
        or BAIL_OUT("the mock DashScope did not start: $line");
}

my ($started, $installed);
# stopped by a signal, it still cleans up (exit runs the END block)
$SIG{$_} = sub { exit 128 + 2 } for qw(INT TERM HUP);
END {
    my $rc = $?;
    if ($started && -f "$dir/logs/nginx.pid") {
        system $nginx, '-p', "$dir/", '-c', 'conf/nginx.conf', '-s', 'stop';
    }
    if ($installed && pkg_status() !~ /^(?:unknown|$)/) {
        system "dpkg --purge $pkg >/dev/null 2>&1";
    }
    kill 'TERM', $mock_pid if $mock_pid;
    $? = $rc;
}

# dpkg, waiting for a lock someone else's apt-get or dpkg holds
sub dpkg {
    my @args = @_;
    my ($out, $rc);
    my $deadline = time + 180;
    while (1) {
        $out = `dpkg @args 2>&1`;
        $rc = $? >> 8;
        last unless $rc && $out =~ /\block\b/i && time < $deadline;
        sleep 2;
    }
    return ($rc, $out);
}

sub system_nginx_pid {
    my $pid = (slurp('/run/nginx.pid') // '') =~ /^(\d+)/ ? $1 : 0;
    return $pid && kill(0, $pid) ? $pid : 0;
}

sub sys_nginx_t {
    my $out = `$sys_nginx -t 2>&1`;
    return ($? >> 8, $out);
}

my $system_running = system_nginx_pid();
my ($rc, $out) = sys_nginx_t();
is($rc, 0, "the system configuration passes nginx -t before the test")
    or diag $out;

# --------------------------------------------------------------- build --

my $version = `dpkg-parsechangelog -l '$repo/debian/changelog' -S Version`;
chomp $version;
my $upstream = $version =~ s/-[^-]*$//r;
my $version2 = "$upstream+t160-1";
ok(system("dpkg --compare-versions '$version2' gt '$version'") == 0,
   "$version2 is higher than $version");

sub build {
    my ($out_dir, %env) = @_;
    my $t = time;
    local @ENV{keys %env} = values %env;
    local $ENV{DEB_OUTDIR} = $out_dir;
    my $log = `'$repo/scripts/deb.sh' 2>&1`;
    my $rc = $? >> 8;
    return ($rc, $log, time - $t);
}

my ($brc, $blog, $bt) = build("$dir/v1");
is($brc, 0, sprintf('scripts/deb.sh builds the package (%.0f s)', $bt))
    or diag $blog;
my $deb = "$dir/v1/${pkg}_${version}_"
        . `dpkg --print-architecture` =~ s/\s+//r . '.deb';
ok(-f $deb, "into DEB_OUTDIR: $deb") or diag `ls -l $dir/v1`;
ok(-f ($deb =~ s/\.deb$/.changes/r) && -f ($deb =~ s/\.deb$/.buildinfo/r),
   'with its .changes and .buildinfo');
like($blog, qr/^deb\.sh: lintian: 0 errors/m, 'lintian ran: no error');
my @lintian_e = grep { /^E: / } split /\n/, $blog;
is_deeply(\@lintian_e, [], 'no E: line from lintian');
note grep { /^[WIP]: |^deb\.sh: / } split /^/, $blog;

my ($brc2, $blog2, $bt2) = build("$dir/v2", DEB_VERSION => $version2,
                                 DEB_LINTIAN => 0);
is($brc2, 0, sprintf('DEB_VERSION=%s builds a higher version (%.0f s)',
                     $version2, $bt2)) or diag $blog2;
my $deb2 = $deb =~ s{/v1/(.*?)_\Q$version\E_}{/v2/$1_${version2}_}r;
ok(-f $deb2, "into its own DEB_OUTDIR: $deb2");

BAIL_OUT('the packages did not build') unless -f $deb && -f $deb2;

my $fields = `dpkg-deb -f '$deb' Package Version Architecture Depends Section`;
like($fields, qr/^Package: \Q$pkg\E$/m, "the package is $pkg");
like($fields, qr/^Version: \Q$version\E$/m, "version $version");
my ($abi) = (slurp('/usr/share/nginx/src/debian/libnginx-mod.abisubstvars')
             // '') =~ /^nginx:abi=(\S+)/m;
ok($abi, "nginx-dev names the ABI: $abi");
my ($depends) = $fields =~ /^Depends: (.*)$/m;
$depends //= '';
ok($abi && grep({ $_ eq $abi } split /,\s*/, $depends),
   "it depends on exactly $abi (dh_nginx)") or diag $depends;
like($depends, qr/(?:^|, )libcjson1 \(>= [\d.]+\)/,
     'and on libcjson1 (shlibs)');
like(`dpkg-query -W -f='\${Provides}' nginx`, qr/(?:^|, )\Q$abi\E(?:,|$)/,
     "which this machine's nginx provides");

# ------------------------------------------------------------- install --

$installed = 1;
($rc, $out) = dpkg('-i', $deb);
is($rc, 0, 'dpkg -i installs it') or diag $out;
like(pkg_status(), qr/^install ok installed \Q$version\E$/,
     "$pkg $version is installed");

my $so = '/usr/lib/nginx/modules/ngx_http_qwen_module.so';
my $avail = '/usr/share/nginx/modules-available/mod-http-qwen.conf';
my $link = '/etc/nginx/modules-enabled/50-mod-http-qwen.conf';
my $doc = "/usr/share/doc/$pkg";

ok(-f $so, "the module: $so");
is(slurp($avail), "load_module modules/ngx_http_qwen_module.so;\n",
   "its load file: $avail");
is(readlink($link) // '', $avail, "enabled: $link links to it");
like(slurp("$doc/copyright") // '', qr/^License: BSD-2-clause\n Redistribution/m,
     "$doc/copyright: the module's BSD-2-clause licence");
ok(-f "$doc/changelog.Debian.gz", "$doc/changelog.Debian.gz");
ok(-f "$doc/README.md.gz" || -f "$doc/README.md", "$doc/README.md");
my $models = "$doc/examples/qwen-models.json";
ok(eval { JSON::PP->new->decode(slurp($models) // '') }, "$models: JSON");
my $example = "$doc/examples/qwen-gateway.conf";
like(slurp($example) // '', qr/^\s*qwen_gateway on;/m, $example);

($rc, $out) = sys_nginx_t();
is($rc, 0, 'the system configuration with the module loaded passes nginx -t')
    or diag $out;
like(`$sys_nginx -T 2>/dev/null`,
     qr{^# configuration file \Q$link\E:\nload_module modules/ngx_http_qwen_module\.so;}m,
     'nginx -T shows it loads the module through modules-enabled');

# ---------------------------------------- an nginx of its own, using it --

mkdir "$dir/$_" for qw(conf logs tmp);
# the load file names modules/..., relative to the prefix: Debian's prefix
# /usr/share/nginx has modules -> /usr/lib/nginx/modules, so does this one
symlink '/usr/lib/nginx/modules', "$dir/modules" or die "symlink: $!";

my $port = free_port($mock);
my $temps = join "\n", map { "    ${_}_temp_path $dir/tmp/$_;" }
                           qw(client_body proxy fastcgi uwsgi scgi);

open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
print $fh <<"_EOC_";
include /etc/nginx/modules-enabled/*.conf;
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
$temps
    log_format qwen 'model=\$qwen_requested_model->\$qwen_model '
                    'region=\$qwen_region status=\$status '
                    'tokens=\$qwen_prompt_tokens+\$qwen_completion_tokens '
                    'cost=\$qwen_cost';
    access_log logs/access.log qwen;
    qwen_metrics_zone qwen 1m;
    qwen_models_file $models;
    upstream dashscope_mock {
        server 127.0.0.1:$mock;
    }
    qwen_region singapore url=http://dashscope_mock key_env=QWEN_DEB_TEST_KEY;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            qwen_gateway on;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            proxy_pass \$qwen_upstream/compatible-mode\$uri;
        }
        location = /metrics {
            access_log off;
            qwen_status prometheus;
        }
    }
}
_EOC_
close $fh;

# the package's example, as a user would put it in conf.d: only what this
# machine cannot have is changed (no DNS for DashScope's host here; logs
# and the catalogue where this test may write and read)
my $ex = slurp($example) // '';
$ex =~ s{/etc/nginx/qwen-models\.json}{$models}g;
$ex =~ s{server dashscope-intl\.aliyuncs\.com:443;}{server 127.0.0.1:$mock;};
$ex =~ s{/var/log/nginx/qwen-access\.log}{$dir/logs/example-access.log}g;
open $fh, '>', "$dir/conf/example.conf" or die $!;
print $fh $ex;
close $fh;
open $fh, '>', "$dir/conf/example-test.conf" or die $!;
print $fh "include /etc/nginx/modules-enabled/*.conf;\n"
        . "error_log logs/example-error.log;\npid logs/example.pid;\n"
        . "events {}\nhttp {\n$temps\n    include $dir/conf/example.conf;\n}\n";
close $fh;
$out = `$nginx -p '$dir/' -c conf/example-test.conf -t 2>&1`;
is($? >> 8, 0, "the package's example configuration passes nginx -t")
    or diag $out;

sub workers {
    my ($master) = @_;
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $line = slurp($stat) // next;
        push @w, $1 if $line =~ /^(\d+) \(nginx\) \S+ (\d+) / && $2 == $master;
    }
    return sort { $a <=> $b } @w;
}

sub master_pid {
    return (slurp("$dir/logs/nginx.pid") // '') =~ /^(\d+)/ ? $1 : 0;
}

{
    # the region's key: in the master's environment only, never in a file
    local $ENV{QWEN_DEB_TEST_KEY} = 'sk-mock';
    $out = `$nginx -p '$dir/' -c conf/nginx.conf 2>&1`;
}
is($? >> 8, 0, 'an nginx of its own starts with the installed module')
    or diag $out, slurp("$dir/logs/error.log") // '';
$started = 1;

my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
sub chat {
    return $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { 'content-type' => 'application/json',
                     'x-mock-usage' => '11,7' },
        content => '{"model":"qwen/qwen-max","messages":'
                 . '[{"role":"user","content":"Hello"}]}',
    });
}
sub wait_up {
    my $deadline = time + 10;
    while (time < $deadline) {
        my $r = $http->get("http://127.0.0.1:$port/metrics");
        return 1 if $r->{status} == 200;
        sleep 0.1;
    }
    return 0;
}

ok(wait_up(), 'it answers within 10 s')
    or BAIL_OUT('the nginx of the test did not start: '
                . (slurp("$dir/logs/error.log") // ''));

sub check_chat {
    my ($when, $n) = @_;
    my $r = chat();
    is($r->{status}, 200, "$when: a chat completion gets 200")
        or diag $r->{content};
    my $j = eval { JSON::PP->new->decode($r->{content}) } || {};
    is($j->{model}, 'qwen-max', "$when: qwen/qwen-max was rewritten to qwen-max");
    is_deeply($j->{usage} && [@{$j->{usage}}{qw(prompt_tokens completion_tokens)}],
              [11, 7], "$when: the mock's usage reached the client");
    # the access log line is written once the answer was sent
    my @lines;
    for (1 .. 50) {
        @lines = grep { /^model=/ } split /\n/, slurp("$dir/logs/access.log") // '';
        last if @lines >= $n;
        sleep 0.1;
    }
    like($lines[$n - 1] // '',
         qr/^model=qwen\/qwen-max->qwen-max region=singapore status=200 tokens=11\+7 cost=[\d.]+$/,
         "$when: the access log has the model, region and usage (\$qwen_*)");
    my $m = $http->get("http://127.0.0.1:$port/metrics")->{content} // '';
    like($m, qr/^qwen_tokens_total\{model="qwen-max",[^}]*type="input"\} ${\(11 * $n)}$/m,
         "$when: /metrics counts the input tokens");
}

check_chat('installed', 1);

# ------------------------------------------------------------- upgrade --

my $master = master_pid();
my @old = workers($master);
ok(@old == 2, "two workers before the upgrade: @old");

($rc, $out) = dpkg('-i', $deb2);
is($rc, 0, "dpkg -i installs $version2 over $version") or diag $out;
like(pkg_status(), qr/^install ok installed \Q$version2\E$/,
     "$pkg $version2 is installed");
is(readlink($link) // '', $avail, 'the modules-enabled link is kept');
($rc, $out) = sys_nginx_t();
is($rc, 0, 'the system configuration passes nginx -t after the upgrade')
    or diag $out;

my $log_before = length(slurp("$dir/logs/error.log") // '');
$out = `$nginx -p '$dir/' -c conf/nginx.conf -s reload 2>&1`;
is($? >> 8, 0, 'nginx -s reload') or diag $out;

my @new;
my $deadline = time + 10;
while (time < $deadline) {
    @new = workers($master);
    my %old = map { $_ => 1 } @old;
    last if @new == 2 && !grep { $old{$_} } @new;
    sleep 0.1;
}
my %old = map { $_ => 1 } @old;
ok(@new == 2 && !grep({ $old{$_} } @new),
   "the reload replaced the workers: @old -> @new");
is(master_pid(), $master, 'the same master');
my $after = substr(slurp("$dir/logs/error.log") // '', $log_before);
like($after, qr/\[notice\] \d+#\d+: reconfiguring/, 'the master reconfigured');
unlike($after, qr/\[(?:emerg|alert|crit)\]/, 'no emerg, alert or crit since')
    or diag $after;

# which module file the new workers run (docs/debian.md: a reload keeps
# the module the master loaded; a restart loads the new one)
my ($map) = grep { /ngx_http_qwen_module\.so/ } split /\n/,
            slurp("/proc/$new[0]/maps") // '';
note 'a new worker maps ', ($map // 'nothing') =~ s/^.*\s(\/\S+.*)$/$1/r;

check_chat('upgraded and reloaded', 2);

unlike(slurp("$dir/logs/error.log") // '', qr/\[(?:emerg|alert)\]/,
       'no emerg or alert in its error log at all');

$out = `$nginx -p '$dir/' -c conf/nginx.conf -s quit 2>&1`;
$deadline = time + 10;
sleep 0.1 while kill(0, $master) && time < $deadline;
ok(!kill(0, $master), 'the nginx of the test stopped');
$started = 0;

# -------------------------------------------------------- remove, purge --

($rc, $out) = dpkg('-r', $pkg);
is($rc, 0, 'dpkg -r removes it') or diag $out;
ok(!-e $so, "$so is gone");
ok(!-e $avail, "$avail is gone");
ok(!-e $link && !-l $link, "$link is gone");
ok(!-e "$doc/examples", 'the examples are gone');
($rc, $out) = sys_nginx_t();
is($rc, 0, 'the system configuration passes nginx -t after dpkg -r')
    or diag $out;

($rc, $out) = dpkg('--purge', $pkg);
is($rc, 0, 'dpkg --purge purges it') or diag $out;
unlike(pkg_status(), qr/^(?:install|deinstall)/, 'dpkg knows it no more');
my @left = grep { /qwen/ } glob '/etc/nginx/modules-enabled/*';
is_deeply(\@left, [], 'nothing of it is left in modules-enabled');
ok(!-e $doc, "$doc is gone");
($rc, $out) = sys_nginx_t();
is($rc, 0, 'the system configuration passes nginx -t after the purge')
    or diag $out;
$installed = 0;

is(system_nginx_pid() ? 1 : 0, $system_running ? 1 : 0,
   $system_running ? 'the system nginx runs as before'
                   : 'the system nginx was not started');

note sprintf 't/160-deb.t took %.0f s', time - $t0;
done_testing();
