package Test::Nginx::Util;

# ---------------------------------------------------------------------------
# Independent re-implementation of a SUBSET of the documented behaviour of
# Test::Nginx::Util from the CPAN distribution Test-Nginx (openresty/test-nginx).
# No code was copied from that project; this file was written from its
# documentation and from observing how it behaves.
#
# It only exists because CPAN is unreachable in some build environments.  The
# project Makefile puts t/compat on @INC *only* when the real module is not
# installed.  Hard rule for every change made here: never be more lenient than
# the real module.  A .t file that passes under this runner must pass unchanged
# under the real Test::Nginx::Socket.  See t/compat/README.md.
#
# This file holds the server side of the runner: the environment knobs, the
# generated nginx.conf, starting/reloading/stopping nginx, the embedded fake
# TCP/UDP upstream servers, error/access log reading and the per-block driver.
# The HTTP client and the response checks live in Test/Nginx/Socket.pm.
# ---------------------------------------------------------------------------

use strict;
use warnings;

our $VERSION = '0.29_compat';

use Exporter ();
our @ISA = ('Exporter');

use POSIX qw(SIGQUIT SIGKILL SIGTERM SIGHUP SIGUSR1 WNOHANG);
use File::Spec ();
use File::Path qw(make_path remove_tree);
use File::Find ();
use File::Temp ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use Socket qw(SOCK_STREAM SOCK_DGRAM);
use List::Util qw(shuffle);
use Scalar::Util qw(looks_like_number);
use Time::HiRes qw(sleep time);
use Config ();
use Carp qw(croak);
use Test::More ();

sub bail_out (@);
sub cleanup ();
sub kill_process ($$$);
sub timeout (@);
sub is_running ($);
sub parse_time ($);
sub get_pid_from_pidfile ($);

# ---------------------------------------------------------------------------
# Settings.  The variable names match the real module's package variables so
# that test files poking at e.g. $Test::Nginx::Util::ServerPort keep working.
# ---------------------------------------------------------------------------

our $Verbose            = $ENV{TEST_NGINX_VERBOSE};
our $UseHup             = $ENV{TEST_NGINX_USE_HUP};
our $UseValgrind        = $ENV{TEST_NGINX_USE_VALGRIND};
our $LoadModules        = $ENV{TEST_NGINX_LOAD_MODULES};
our $NoShuffle          = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoNginxManager     = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $EventType          = $ENV{TEST_NGINX_EVENT_TYPE};
our $ReusePort          = $ENV{TEST_NGINX_REUSE_PORT};
our $Timeout            = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $CheckAccumErrLog   = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Randomize          = $ENV{TEST_NGINX_RANDOMIZE};
our $WorkerUser         = $ENV{TEST_NGINX_WORKER_USER};
our $BuildSlaveName     = $ENV{TEST_NGINX_BUILDSLAVE};

our $ServerAddr         = '127.0.0.1';
our $ServerName         = 'localhost';
our $NginxBinary        = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $Workers            = 1;
our $WorkerConnections  = 64;
our $LogLevel           = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled      = 'on';
our $ServerPort         = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                          || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort || 1984;
our $NoRootLocation     = 0;
our $TestNginxSleep     = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ForceRestartOnTest = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
                          ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $RepeatEach         = 1;
our $NoLongString;
our $ConfigPreamble     = '';
our @EnvToNginx;
our @CleanupHandlers;
our @BlockPreprocessors;

# Hooks filled in by Test::Nginx::Socket (the client side).
our $RunTestHelper;
our $CheckErrorLog;
our $BlocksProvider;

# Run-time state.
our ($NginxVersion, $NginxRawVersion, $OpenSSLVersion);
our $PrevConfig;
our $ConfigVersion;
our $FirstTime = 1;
our $ErrLogFilePos = 0;
our ($ChildPid, $TcpServerPid, $UdpServerPid);
our $ValgrindLog;           # file receiving valgrind's (and nginx's) stderr
my  $MainPid = $$;          # END must do nothing in forked helpers

# Only env var values made of word characters and at most one space are valid
# for the "user" directive; reject anything else loudly, as the real one does.
if (defined $WorkerUser && $WorkerUser !~ /^\w+(?:\s+\w+)?$/) {
    die "Bad value in the env TEST_NGINX_WORKER_USER: $WorkerUser\n";
}

# Valgrind wants nginx in the foreground (and we want to be its parent so we
# can collect its report).  The master process setting is left alone.
if ($UseValgrind) {
    $DaemonEnabled = 'off';
}

srand $$;

if ($Randomize) {
    $ServerPort = gen_rand_port(1000);
    die "Cannot find an available listening port number after 1000 attempts.\n"
        unless defined $ServerPort;
    $ServerPortForClient = $ServerPort;
}

our $ServRoot = $Randomize
    ? File::Spec->rel2abs("t/servroot_$ServerPort")
    : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));

# The one "built-in" TEST_NGINX_* variable besides TEST_NGINX_SERVER_PORT
# (set in run_tests) and the TEST_NGINX_RAND_PORT_N family.  Note that the
# real module does NOT define TEST_NGINX_HTML_DIR or TEST_NGINX_CONF_DIR;
# test files must set those themselves (e.g. $ENV{TEST_NGINX_HTML_DIR} ||=
# html_dir()), so we do not define them either.
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catfile($ServRoot, 'logs');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');
our $HtmlDir    = File::Spec->catfile($ServRoot, 'html');
our $ConfDir    = File::Spec->catfile($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');

our @EXPORT = qw(
    env_to_nginx is_str no_long_string $NoLongString
    server_addr $ServerAddr server_name $ServerName
    server_port $ServerPort server_port_for_client $ServerPortForClient
    server_root html_dir $ServRoot $PidFile $ConfFile $NginxVersion
    timeout workers worker_connections master_on master_off
    master_process_enabled log_level repeat_each $RepeatEach
    no_shuffle no_root_location no_nginx_manager use_hup
    check_accum_error_log config_preamble
    add_block_preprocessor add_cleanup_handler bail_out
    run_tests run_test parse_time parse_headers trim show_all_chars
    error_log_data access_log_data sleep_time verbose is_running
    get_pid_from_pidfile get_canon_version get_nginx_version
    $RunTestHelper $CheckErrorLog
);

# ---------------------------------------------------------------------------
# Small configuration functions (exported to test files via Socket.pm).
# Getter/setter style mirrors the real module: with an argument they set,
# without one they return the current value.
# ---------------------------------------------------------------------------

sub no_long_string ()        { $NoLongString = 1 }
sub no_shuffle ()            { $NoShuffle = 1 }
sub no_root_location ()      { $NoRootLocation = 1 }
sub no_nginx_manager ()      { $NoNginxManager = 1 }
sub use_hup ()               { $UseHup = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on ()             { $MasterProcessEnabled = 'on' }
sub master_off ()            { $MasterProcessEnabled = 'off' }
sub config_preamble ($)      { $ConfigPreamble = shift }
sub html_dir ()              { $HtmlDir }
sub server_root ()           { $ServRoot }
sub sleep_time               { $TestNginxSleep }
sub verbose                  { $Verbose }

sub server_addr (@)            { @_ ? ($ServerAddr = shift) : $ServerAddr }
sub server_name (@)            { @_ ? ($ServerName = shift) : $ServerName }
sub server_port (@)            { @_ ? ($ServerPort = shift) : $ServerPort }
sub server_port_for_client (@) { @_ ? ($ServerPortForClient = shift)
                                     : $ServerPortForClient }
sub timeout (@)                { @_ ? ($Timeout = shift) : $Timeout }
sub workers (@)                { @_ ? ($Workers = shift) : $Workers }
sub worker_connections (@)     { @_ ? ($WorkerConnections = shift)
                                     : $WorkerConnections }
sub log_level (@)              { @_ ? ($LogLevel = shift) : $LogLevel }

sub repeat_each (@) {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub master_process_enabled (@) {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# Both lists are LIFO, like the real module: the most recently added
# preprocessor / cleanup handler runs first.
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)    { unshift @CleanupHandlers, shift }

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid && kill(0, $pid);
    # A daemonised nginx that exited is re-parented to PID 1; if that init
    # reaps lazily (common in containers) the zombie still answers kill 0.
    # Do not wait seconds for a process that is already dead.
    if (open my $st, '<', "/proc/$pid/stat") {
        my $line = <$st>;
        return 0 if defined $line && $line =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

# "50ms" -> 0.05, "2s" -> 2, "1.5" -> 1.5
sub parse_time ($) {
    my $t = shift;
    return $t unless defined $t;
    if ($t =~ s/([^_a-zA-Z])ms$/$1/) {
        return $t / 1000;
    }
    $t =~ s/([^_a-zA-Z])s$/$1/;
    return $t;
}

sub trim ($) {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    return $s;
}

sub show_all_chars ($) {
    my $s = shift;
    $s =~ s/\n/\\n/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\t/\\t/g;
    return $s;
}

# Parses a --- response_headers style value into { name => value }.
# "! Name" (and, as in the real module, a bare "Name" without a colon) maps to
# undef, meaning "this header must be absent".
sub parse_headers ($) {
    my $text = shift;
    my %h;
    for my $line (split /^/, $text) {
        $line =~ s/^\s+|\s+$//g;
        if ($line =~ s/^!\s*//) {
            $h{$line} = undef;
            next;
        }
        my ($k, $v) = split /\s*:\s*/, $line, 2;
        $k = '' unless defined $k;
        $h{$k} = $v;
    }
    return \%h;
}

# String equality that also accepts a qr// as the expectation.
sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return is_long_string($got, $expected, $desc);
}

# Stand-in for Test::LongString::is_string (not installable here): same
# pass/fail rule as Test::More::is, but a diagnostic that points at the first
# differing character instead of dumping two huge strings.
sub is_long_string {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $tb = Test::More->builder;

    if (!defined $got || !defined $expected) {
        my $ok = !defined $got && !defined $expected;
        $tb->ok($ok, $desc);
        $tb->diag("         got: " . (defined $got ? _fmt_snip($got, 0)
                                                   : 'undef') . "\n"
                . "    expected: " . (defined $expected
                                      ? _fmt_snip($expected, 0) : 'undef'))
            unless $ok;
        return $ok;
    }

    my $ok = $got eq $expected;
    $tb->ok($ok, $desc);
    return 1 if $ok;

    my $pos = 0;
    my $max = length($got) < length($expected) ? length($got)
                                               : length($expected);
    $pos++ while $pos < $max
                 && substr($got, $pos, 1) eq substr($expected, $pos, 1);
    my $line = 1 + (substr($got, 0, $pos) =~ tr/\n//);
    $tb->diag("         got: " . _fmt_snip($got, $pos) . "\n"
            . "      length: " . length($got) . "\n"
            . "    expected: " . _fmt_snip($expected, $pos) . "\n"
            . "      length: " . length($expected) . "\n"
            . "    strings begin to differ at char " . ($pos + 1)
            . " (line $line)");
    return 0;
}

sub _fmt_snip {
    my ($s, $pos) = @_;
    my $start = $pos > 10 ? $pos - 10 : 0;
    my $snip = substr($s, $start, 60);
    $snip =~ s/([^\x20-\x7e])/sprintf('\\x{%02x}', ord $1)/ge;
    return ($start ? '...' : '') . "\"$snip\""
         . ($start + 60 < length($s) ? '...' : '');
}

sub gen_rand_str {
    my $len = shift;
    my @chars = ('A' .. 'Z', 'a' .. 'z', '0' .. '9');
    return join '', map { $chars[rand @chars] } 1 .. $len;
}

sub gen_rand_port {
    my ($tries, $used) = @_;
    $tries ||= 1000;
    $used  ||= {};
    for (1 .. $tries) {
        my $port = int(rand 63550) + 1985;
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(
            LocalAddr => $ServerAddr,
            LocalPort => $port,
            Proto     => 'tcp',
        );
        if ($sock) {
            close $sock;
            return $port;
        }
    }
    return undef;
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# Substitutes $TEST_NGINX_FOO with $ENV{TEST_NGINX_FOO}.  An unset variable is
# fatal (bail out), exactly like the real module: silently leaving the text
# alone would let a broken config "pass".  $TEST_NGINX_RAND_PORT_<n> expands to
# a free port, the same one for every use of <n> within a block.
sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            if (!defined $rand_ports->{$var}) {
                my %used = ($ServerPort => 1,
                            map { $_ => 1 } values %$rand_ports);
                my $p = gen_rand_port(1000, \%used);
                bail_out("$name - Cannot find an available listening port "
                         . "number for $var.\n") unless defined $p;
                $rand_ports->{$var} = $p;
            }
            $val = $rand_ports->{$var};
        } else {
            bail_out("$name - No environment $var defined.\n")
                unless defined $ENV{$var};
            $val = $ENV{$var};
        }
        $val;
    }ge;

    return $text;
}

sub can_run {
    my $cmd = shift;
    if ($cmd =~ m{/}) {
        return (-f $cmd && -x $cmd) ? $cmd : undef;
    }
    for my $dir (split(/\Q$Config::Config{path_sep}\E/, $ENV{PATH} || ''),
                 '.')
    {
        next if $dir eq '';
        my $abs = File::Spec->catfile($dir, $cmd);
        return $abs if -f $abs && -x $abs;
    }
    return undef;
}

# When TEST_NGINX_BINARY is not set and "nginx" is not in PATH (Debian puts it
# in /usr/sbin, which non-root PATHs often lack) fall back to /usr/sbin/nginx.
sub _resolve_nginx_binary {
    return if $ENV{TEST_NGINX_BINARY};
    return if can_run($NginxBinary);
    $NginxBinary = '/usr/sbin/nginx' if -x '/usr/sbin/nginx';
}

sub get_canon_version (@) {
    sprintf "%d.%03d%03d", $_[0], $_[1], $_[2];
}

sub get_nginx_version () {
    _resolve_nginx_binary();
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        $out //= '';
        bail_out("Failed to get the version of the Nginx in PATH: $out");
    }

    if ($out =~ m{built with OpenSSL (\d+)\.(\d+)\.(\d+)([a-z])?}s) {
        $OpenSSLVersion = get_canon_version($1, $2, $3)
                        . (defined $4 ? sprintf('%03d', ord($4) - ord('a'))
                                      : '');
    }

    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s)
    {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }

    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

sub get_pid_from_pidfile ($) {
    my $name = shift;
    open my $in, '<', $PidFile
        or bail_out("$name - Failed to open the pid file $PidFile for "
                    . "reading: $!");
    my $pid = do { local $/; <$in> };
    close $in;
    $pid = '' unless defined $pid;
    chomp $pid;
    return $pid;
}

# Asks a process to quit gracefully (SIGQUIT), waits up to timeout() for it,
# then escalates to SIGTERM and finally SIGKILL.  Reaps it if it is our child.
sub kill_process ($$$) {
    my ($pid, $wait, $name) = @_;
    return unless $pid;

    if ($wait) {
        kill SIGQUIT, $pid;
        my $left = timeout();
        while ($left > 0 && is_running($pid)) {
            waitpid($pid, WNOHANG);
            last unless is_running($pid);
            sleep 0.02;
            $left -= 0.02;
        }
    }

    my $step = $TestNginxSleep;
    for (1 .. 20) {
        waitpid($pid, WNOHANG);
        return unless is_running($pid);
        kill SIGTERM, $pid;
        $step *= 1.2;
        $step = 0.5 if $step > 0.5;
        sleep $step;
    }

    warn "$name - WARNING: killing the process $pid with force...\n";
    kill SIGKILL, $pid;
    waitpid($pid, 0);
}

sub cleanup () {
    warn "cleaning up everything\n" if $Verbose;

    $_->() for @CleanupHandlers;

    for my $ref (\$UdpServerPid, \$TcpServerPid, \$ChildPid) {
        next unless defined $$ref;
        kill_process($$ref, 1, 'cleanup');
        undef $$ref;
    }
}

# ---------------------------------------------------------------------------
# Log access
# ---------------------------------------------------------------------------

# Returns the error.log lines written since the previous call (within one
# test block), or all of them with check_accum_error_log().  The short sleep
# gives nginx's log phase, which runs after the response is sent, time to
# write.
sub error_log_data () {
    sleep $TestNginxSleep * 3;

    open my $in, '<', $ErrLogFile or return undef;
    if (!$CheckAccumErrLog && $ErrLogFilePos > 0) {
        seek $in, $ErrLogFilePos, 0;
    }
    my @lines = <$in>;
    $ErrLogFilePos = tell($in) unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data () {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or do {
        die "open $AccLogFile failed: $!" if $AccLogFile ne 'off';
        return undef;
    };
    my @lines = <$in>;
    close $in;
    return \@lines;
}

# ---------------------------------------------------------------------------
# Server root and nginx.conf
# ---------------------------------------------------------------------------

sub setup_server_root ($) {
    my $first_time = shift;

    if (-d $ServRoot) {
        remove_tree($ConfDir, glob("$ServRoot/*_cache"),
                    glob("$ServRoot/*_temp"));

        if ($UseHup) {
            # nginx keeps running across blocks: delete files, keep the
            # directories it has open, and keep the pid file / sockets /
            # certificates unless this is the very first block.
            File::Find::find({ bydepth => 1, no_chdir => 1, wanted => sub {
                return if -d $_;
                return if !$first_time
                          && /(?:\bnginx\.pid|\.sock|\.crt|\.key)$/;
                unlink $_ or warn "Failed to remove $_: $!\n";
            } }, $ServRoot);
        } else {
            remove_tree($HtmlDir, $LogDir);
            # Refuse to go on if anything else lives there: TEST_NGINX_SERVROOT
            # might point at real data by mistake.
            rmdir $ServRoot
                or bail_out("Can't remove $ServRoot (not empty?): $!");
        }
    }

    for my $dir ($ServRoot, $LogDir, $HtmlDir) {
        next if -d $dir;
        mkdir $dir or bail_out("Failed to do mkdir $dir\n");
    }

    my $index = "$HtmlDir/index.html";
    open my $out, '>', $index
        or bail_out("Can't open $index for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
             . '<body>It works!</body></html>';
    close $out;

    mkdir $ConfDir or bail_out("Failed to do mkdir $ConfDir\n");
}

# --- user_files: either text with ">>> name [touch-timestamp]" headers, or an
# eval'ed array of [name, body, timestamp].  Relative names go under html/.
sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ />>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        $body = '' unless defined $body;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - Cannot create directory $1");
        }
        $body = expand_env_in_text($body, $name, $rand_ports);
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            my $cmd = "TZ=GMT touch -t '$date' $HtmlDir/$fname";
            system($cmd) == 0
                or bail_out("Failed to run shell command: $cmd\n");
        }
    }
}

# Writes nginx.conf following the real module's template: same directives,
# same order, same defaults, so behaviour (and error messages with line
# numbers, roughly) match.
sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    master_on() if $UseHup;    # reloading with master off is unreliable

    my $http_config = expand_env_in_text($block->http_config, $name,
                                         $rand_ports);
    $http_config = '' unless defined $http_config;
    $config = '' unless defined $config;

    my $main_config = $block->main_config;
    $main_config = '' unless defined $main_config;
    if ($LoadModules) {
        my @mods = map { "load_module $_;" } grep { length } split /\s+/,
                   $LoadModules;
        $main_config .= join ' ', @mods;
    }
    $main_config = expand_env_in_text($main_config, $name, $rand_ports);

    my $post_main_config = expand_env_in_text($block->post_main_config,
                                              $name, $rand_ports);
    $post_main_config = '' unless defined $post_main_config;

    my $err_log_file = $block->error_log_file || $ErrLogFile;
    my $server_name  = $block->server_name;
    $server_name = $ServerName unless defined $server_name;

    my $listen_opts = $ReusePort ? ' reuseport' : '';

    my $env = join '', map { "env $_;\n" }
        qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN MOCKEAGAIN_WRITE_TIMEOUT_PATTERN
           LD_PRELOAD LD_LIBRARY_PATH DYLD_INSERT_LIBRARIES
           DYLD_FORCE_FLAT_NAMESPACE),
        map { /\s/ ? "'$_'" : $_ } @EnvToNginx;

    my $conf = <<"_EOC_";
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;

$http_config

    server {
        listen          $ServerPort$listen_opts;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

_EOC_

    if (!$NoRootLocation) {
        $conf .= <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    }
    $conf .= "    }\n";

    if ($UseHup) {
        # A second virtual server lets us poll which configuration generation
        # is live after a HUP reload.
        $conf .= <<"_EOC_";
    server {
        listen          $ServerPort$listen_opts;
        server_name     'Test-Nginx';

        location = /ver {
            return 200 '$ConfigVersion';
        }
    }
_EOC_
    }

    $conf .= <<"_EOC_";
}

$post_main_config

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
_EOC_
    $conf .= "    use $EventType;\n" if $EventType;
    $conf .= "}\n";
    $conf .= "env ASAN_OPTIONS;\nenv MOCKNOEAGAIN_VERBOSE;\nenv MOCKNOEAGAIN;\n";

    if (defined $WorkerUser) {
        $conf .= "user $WorkerUser;\n";
    } elsif ($> == 0) {
        $conf .= "user root;\n";
    }

    open my $out, '>', $ConfFile
        or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out $conf;
    close $out;
}

# ---------------------------------------------------------------------------
# Starting nginx
# ---------------------------------------------------------------------------

sub _nginx_cmd {
    my $cmd = "$NginxBinary -p $ServRoot/ -c $ConfFile > /dev/null";
    return $cmd unless $UseValgrind;

    my $opts;
    if ($UseValgrind =~ /^\d+$/) {
        $opts = "--num-callers=100 -q --tool=memcheck --leak-check=full "
              . "--show-possibly-lost=no --gen-suppressions=all";
        $opts .= " --suppressions=valgrind.suppress" if -f 'valgrind.suppress';
    } else {
        $opts = "-q $UseValgrind";
    }
    return "valgrind $opts $cmd";
}

# Runs the (daemonising) nginx command once.  nginx's stderr goes to a file
# rather than a pipe because the daemon child inherits it.  Returns the wait
# status and whatever nginx printed.
sub _run_nginx_once {
    my $cmd = shift;
    my $errfile = File::Temp->new(TEMPLATE => 'tnginx-stderr-XXXXXX',
                                  TMPDIR => 1);
    my $status = system("$cmd 2>" . $errfile->filename);
    my $err = do {
        open my $in, '<', $errfile->filename;
        local $/;
        $in ? <$in> : '';
    };
    $err = '' unless defined $err;
    print STDERR $err if length $err;   # the real runner shows it too
    return ($status, $err);
}

sub _start_nginx_daemon ($) {
    my $name = shift;
    my $cmd = _nginx_cmd();
    my $waited = 0;
    my $i = 0;

    while (1) {
        my ($status, $err) = _run_nginx_once($cmd);
        return if $status == 0;

        # The real runner keeps retrying for ~30 seconds (a previous nginx
        # may still hold the port) and then bails out.  A configuration error
        # can never fix itself, so bail out on it right away: same verdict,
        # 30 seconds sooner.  nginx reports it on stderr or, when started
        # with "-e logs/error.log", in the (freshly emptied) error.log.
        if (open my $log, '<', $ErrLogFile) {
            local $/;
            my $text = <$log>;
            $err .= $text if defined $text;
        }
        if ($err =~ /\[emerg\]/ && $err !~ /Address already in use/) {
            bail_out("$name - Cannot start nginx using command \"$cmd\" "
                     . "(status code $status).");
        }

        $i++;
        my $delay = 0.1 * $i;
        $delay = 1 if $delay > 1;
        sleep $delay;
        $waited += $delay;
        next if $waited < 30;
        bail_out("$name - Cannot start nginx using command \"$cmd\" "
                 . "(status code $status).");
    }
}

# Valgrind mode: nginx runs in the foreground as our child.  Its stderr (and
# therefore valgrind's report) is captured in $ValgrindLog.
sub _start_nginx_foreground ($) {
    my $name = shift;
    my $cmd = _nginx_cmd();
    $ValgrindLog = File::Temp->new(TEMPLATE => 'tnginx-valgrind-XXXXXX',
                                   TMPDIR => 1);
    warn "$name\n";
    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        setpgrp(0, 0);
        exec "exec $cmd 2>" . $ValgrindLog->filename
            or POSIX::_exit(127);
    }
    $ChildPid = $pid;
    sleep $TestNginxSleep;
}

# Valgrind mode: called after the foreground nginx has exited.  Echoes the
# captured stderr (the real runner lets it go to the terminal) and turns any
# valgrind error record into a failing test.  This is a deliberate addition:
# the real runner only prints the report, so this makes us stricter, never
# more lenient.
sub _report_valgrind ($) {
    my $name = shift;
    return unless $ValgrindLog;
    my $file = $ValgrindLog->filename;
    my $text = do { open my $in, '<', $file or return; local $/; <$in> };
    undef $ValgrindLog;
    return unless defined $text && length $text;
    print STDERR $text;
    my @errors = grep { /^==\d+==\s+\S/ && !/^==\d+==\s+Warning:/ }
                 split /\n/, $text;
    return unless @errors;
    Test::More->builder->no_ending(1);
    Test::More::fail("$name - valgrind reported errors: $errors[0]");
}

# Stops the foreground (valgrind) nginx at the end of a block.
sub _stop_foreground_nginx ($) {
    my $name = shift;
    return unless -f $PidFile;
    my $pid = get_pid_from_pidfile($name);
    if (!is_running($pid)) {
        unlink $PidFile;
    } else {
        kill SIGQUIT, $pid;
        # Valgrind prints its leak report at exit; give it time to.
        my $left = timeout() + 1;
        while ($left > 0 && is_running($pid)) {
            last if waitpid($pid, WNOHANG) == $pid;
            sleep 0.05;
            $left -= 0.05;
        }
        if (is_running($pid) && waitpid($pid, WNOHANG) != $pid) {
            warn "$name - timeout when waiting for the process $pid to exit\n";
            kill SIGKILL, -$pid;
            waitpid($pid, 0);
        }
        unlink $PidFile if -f $PidFile;
    }
    undef $ChildPid if defined $ChildPid && $ChildPid == $pid;
    _report_valgrind($name);
}

# HUP mode: poll GET /ver (Host: Test-Nginx) until the freshly written
# configuration generation answers consistently.
sub test_config_version ($) {
    my $name = shift;
    my $nsucc = 0;
    for my $try (1 .. 200) {
        my $ver = _simple_get('Test-Nginx', '/ver');
        if (defined $ver && $ver eq $ConfigVersion) {
            $nsucc++;
            sleep $TestNginxSleep if $nsucc == 5;
            return if $nsucc >= 20;
            next;
        }
        $nsucc = 0;
        my $wait = ($TestNginxSleep + $TestNginxSleep * $try) * $try / 2;
        $wait = 1 if $wait > 1;
        warn "$name - waiting $wait sec for nginx to reload the "
             . "configuration\n" if $wait > 0.5;
        sleep $wait;
    }
    Test::More->builder->no_ending(1);
    Test::More::fail("$name - failed to reload configuration after 200 "
                     . "failed test requests");
}

# Minimal blocking GET used only for the HUP version probe.
sub _simple_get {
    my ($host, $uri) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                     PeerPort => $ServerPortForClient,
                                     Proto => 'tcp', Timeout => 2)
        or return undef;
    print $sock "GET $uri HTTP/1.0\r\nHost: $host\r\n\r\n";
    my $resp = do { local $/; <$sock> };
    close $sock;
    return undef unless defined $resp
                        && $resp =~ m{\AHTTP/1\.\d 200 .*?\r\n\r\n(.*)\z}s;
    return $1;
}

# ---------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------

# Sections whose behaviour this runner does not implement.  Silently ignoring
# them could make a test pass here that fails under the real module, so we
# refuse to run such a block.
my @UNSUPPORTED = qw(
    http2 http3 stap stap_out stap_out_like stap_out_unlike
    shutdown_error_log no_shutdown_error_log reload_fails
    curl_error curl_options curl_protocol quic_max_idle_timeout
    skip_slave
);

# Testing modes of the real runner that this one does not implement.
my @UNSUPPORTED_ENV = qw(
    TEST_NGINX_USE_HTTP2 TEST_NGINX_USE_HTTP3 TEST_NGINX_USE_STAP
    TEST_NGINX_USE_RR TEST_NGINX_CHECK_LEAK TEST_NGINX_BENCHMARK
    TEST_NGINX_POSTPONE_OUTPUT
);

sub run_tests () {
    for my $var (@UNSUPPORTED_ENV) {
        bail_out("$var is not supported by the Test::Nginx compat runner "
                 . "(t/compat); install the real Test::Nginx from CPAN")
            if $ENV{$var};
    }

    $NginxVersion = get_nginx_version();

    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
        unless defined $ENV{TEST_NGINX_SERVER_PORT};

    my @blocks = $BlocksProvider->();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . $block->name);
        run_test($block);
    }

    cleanup();
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;

    my $name = $block->name;

    for my $s (@UNSUPPORTED) {
        bail_out("$name - section \"--- $s\" is not supported by the "
                 . "Test::Nginx compat runner (t/compat); install the real "
                 . "Test::Nginx from CPAN") if defined $block->$s;
    }

    my $first_time = $FirstTime;
    $FirstTime = 0;

    my $rand_ports = {};
    my $config = expand_env_in_text($block->config, $name, $rand_ports);

    local $LogLevel = $LogLevel;
    $LogLevel = $block->log_level if $block->log_level;

    my $must_die = $block->must_die;
    local $UseValgrind = $UseValgrind;
    local $UseHup = $UseHup;
    if (defined $must_die) {
        undef $UseValgrind;
        undef $UseHup;
    }

    # Whether nginx needs (re)starting for this block.
    my ($should_restart, $should_reconfig) = (1, 1);
    if (!defined $config) {
        if (!$NoNginxManager && !defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?");
        }
        # Reuse whatever nginx is already running.
        ($should_restart, $should_reconfig) = (0, 0);
    } elsif ($NoNginxManager) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name ignored");
        ($should_restart, $should_reconfig) = (0, 0);
    } else {
        $should_reconfig = !defined $PrevConfig || $config ne $PrevConfig;
        $should_restart = $should_reconfig || $ForceRestartOnTest;
    }

    my ($should_skip, $tests_to_skip, $skip_reason)
        = _skip_decision($block, $name);
    my ($should_todo, $todo_reason, $todo_count)
        = _todo_decision($block, $name);
    $tests_to_skip = $todo_count if defined $todo_count;

    if (!$NoNginxManager && !$should_skip && $should_restart) {
        $ConfigVersion = gen_rand_str(10) if $UseHup;
        $PrevConfig = $config if $should_reconfig;

        if (-f $PidFile) {
            my $pid = get_pid_from_pidfile($name);
            if ($pid ne '' && is_running($pid)) {
                if ($UseHup && !$first_time
                    && _hup_reload($block, $config, $rand_ports, $pid))
                {
                    goto REQUEST;
                }
                kill_process($pid, 1, $name);
            } else {
                unlink $PidFile
                    or warn "WARNING: failed to remove pid file $PidFile\n";
            }
        }

        setup_server_root($first_time);
        write_user_files($block, $rand_ports);
        write_config_file($block, $config, $rand_ports);

        bail_out("$name - Cannot find the nginx executable in the PATH "
                 . "environment") unless can_run($NginxBinary);

        $ErrLogFilePos = 0;

        if (defined $must_die) {
            _run_must_die($block, $name, $must_die);
            return;
        }

        if ($UseValgrind) {
            _start_nginx_foreground($name);
        } else {
            _start_nginx_daemon($name);
        }
        sleep $TestNginxSleep;
    }

  REQUEST:
    if (defined(my $init = $block->init)) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogFilePos = 0;
    for my $i (1 .. $RepeatEach) {
        warn "Run the test block $name ...\n" if $Verbose;

        my ($tcp_sock, $tcp_query_file) = _start_tcp_server($block, $name);
        my ($udp_sock, $udp_query_file, $uds_file)
            = _start_udp_server($block, $name);

        # Later repetitions get pristine copies of the user files.
        write_user_files($block, $rand_ports) if $i > 1;

        my $run = sub {
            $RunTestHelper->($block, 0, $i - 1);
            _check_tcp_query($block, $tcp_sock, $tcp_query_file);
            _check_udp_query($block, $udp_sock, $udp_query_file);
        };

        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }
        } elsif ($should_todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason",
                                      $tests_to_skip);
            }
        } else {
            $run->();
        }

        if (defined $udp_sock) {
            if (defined $UdpServerPid) {
                kill_process($UdpServerPid, 1, $name);
                undef $UdpServerPid;
            }
            close $udp_sock;
        }
        unlink $uds_file if defined $uds_file;

        if (defined $tcp_sock) {
            if (defined $TcpServerPid) {
                kill_process($TcpServerPid, 1, $name);
                undef $TcpServerPid;
            }
            close $tcp_sock;
            my $target = $block->tcp_listen;
            unlink $target if $target =~ /\.sock$/;
        }
        unlink $tcp_query_file if $tcp_query_file;
        unlink $udp_query_file if $udp_query_file;
    }

    if (my $total = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile) {
            open my $out, '>>', $total
                or bail_out("Failed to append test case title to $total: $!\n");
            print $out "\n=== $0 $name\n";
            open my $in, '<', $ErrLogFile;
            print $out $_ while <$in>;
            close $out;
        }
    }

    _stop_foreground_nginx($name) if $UseValgrind && !$UseHup;
}

# HUP reload of an already running nginx.  Returns true on success.
sub _hup_reload {
    my ($block, $config, $rand_ports, $pid) = @_;
    my $name = $block->name;

    setup_server_root(0);
    write_user_files($block, $rand_ports);
    write_config_file($block, $config, $rand_ports);

    # USR1 reopens the (just deleted) log files, HUP loads the new config.
    if (!kill SIGUSR1, $pid) {
        warn "$name - Failed to send USR1 signal\n";
        return 0;
    }
    sleep $TestNginxSleep;
    if (!kill SIGHUP, $pid) {
        warn "$name - Failed to send HUP signal\n" if $Verbose;
        return 0;
    }
    sleep $TestNginxSleep * 3;
    warn "$name\n" if $UseValgrind;
    test_config_version($name);
    return 1;
}

# --- must_die: nginx is expected to refuse to start.
sub _run_must_die {
    my ($block, $name, $must_die) = @_;
    my $cmd = _nginx_cmd();
    for my $i (0 .. $RepeatEach - 1) {
        my ($status) = _run_nginx_once($cmd);
        my $exit_code = $status == -1 ? undef : $status >> 8;
        my $coredump  = $status != -1 && ($status & 128);

        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($coredump) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($must_die, $exit_code,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        $CheckErrorLog->($block, undef, 0, $i, 0);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing "
                 . "it (req $i)\n";
            for (1 .. 15) {
                last if -f $PidFile;
                sleep $TestNginxSleep;
            }
            kill_process(get_pid_from_pidfile($name), 1, $name)
                if -f $PidFile;
        }
    }
}

# --- skip_eval / skip_nginx / skip_nginx2 / skip_openssl
sub _skip_decision {
    my ($block, $name) = @_;
    my ($skip, $n, $reason);

    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            ($n, $reason) = ($1, 'skip_eval');
            my $code = $2;
            $skip = eval $code;
            bail_out("$name - skip_eval - failed to eval the Perl code "
                     . "\"$code\": $@") if $@;
        }
    }

    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                  (?:\s*:\s*(.*))?\s*$/x
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        $n = $1;
        my ($op, $v) = ($2, get_canon_version($3, $4, $5));
        $reason = $6 || "nginx version $op $3.$4.$5";
        $skip = 1 if _version_cmp($NginxVersion, $op, $v);
    } elsif (defined(my $spec2 = $block->skip_nginx2)) {
        $spec2 =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                   \s*(or|and)\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                   (?:\s*:\s*(.*))?\s*$/x
            or bail_out("$name - Invalid --- skip_nginx2 spec: $spec2");
        $n = $1;
        my $a = _version_cmp($NginxVersion, $2, get_canon_version($3, $4, $5));
        my $b = _version_cmp($NginxVersion, $7,
                             get_canon_version($8, $9, $10));
        $reason = $11;
        $skip = 1 if $6 eq 'or' ? ($a || $b) : ($a && $b);
    }

    if (defined(my $spec = $block->skip_openssl)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)([a-z])?
                  (?:\s*:\s*(.*))?\s*$/x
            or bail_out("$name - Invalid --- skip_openssl spec: $spec");
        $n = $1;
        my ($op, $ver) = ($2, get_canon_version($3, $4, $5)
                              . (defined $6 ? sprintf('%03d',
                                                ord($6) - ord('a')) : ''));
        $reason = $7 || (defined $OpenSSLVersion
                         ? "OpenSSL version $op $3.$4.$5" . ($6 // '')
                         : 'Not built with OpenSSL');
        $skip = 1 if !defined $OpenSSLVersion
                     || _version_cmp($OpenSSLVersion, $op, $ver);
    }

    return ($skip, $n, defined $reason ? $reason : 'various reasons');
}

sub _todo_decision {
    my ($block, $name) = @_;
    my ($todo, $reason, $n);

    if (defined(my $spec = $block->todo_nginx)) {
        $spec =~ /^\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/x
            or bail_out("$name - Invalid --- todo_nginx spec: $spec");
        $reason = $5;
        $todo = 1 if _version_cmp($NginxVersion, $1,
                                  get_canon_version($2, $3, $4));
    }
    if (defined(my $spec = $block->todo)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- todo spec: $spec");
        ($todo, $n, $reason) = (1, $1, $2);
    }
    return ($todo, defined $reason ? $reason : 'various reasons', $n);
}

sub _version_cmp {
    my ($have, $op, $want) = @_;
    return $op =~ /^</ ? 1 : 0 unless defined $have;
    return $have <  $want if $op eq '<';
    return $have <= $want if $op eq '<=';
    return $have >  $want if $op eq '>';
    return $have >= $want;
}

# ---------------------------------------------------------------------------
# Embedded one-shot TCP / UDP servers (--- tcp_listen, --- udp_listen)
# ---------------------------------------------------------------------------

sub _start_tcp_server {
    my ($block, $name) = @_;
    my $target = $block->tcp_listen;
    return unless defined $target;

    my $reply = $block->tcp_reply;
    bail_out("$name - no --- tcp_reply specified but --- tcp_listen is "
             . "specified") if !defined $reply && !defined $block->tcp_shutdown;

    my $req_len = $block->tcp_query_len;
    my $query_file;
    if (defined $block->tcp_query || defined $req_len) {
        $req_len = length $block->tcp_query unless defined $req_len;
        (undef, $query_file) = File::Temp::tempfile('tnginx-tcpq-XXXXXX',
                                                    TMPDIR => 1);
    }

    my ($sock, $err);
    for my $try (1 .. 30) {
        if ($target =~ /^\d+$/) {
            $sock = IO::Socket::INET->new(LocalHost => '127.0.0.1',
                                          LocalPort => $target,
                                          Proto => 'tcp', ReuseAddr => 1,
                                          Listen => 5);
        } elsif ($target =~ /\S+\.sock$/) {
            unlink $target if -e $target;
            $sock = IO::Socket::UNIX->new(Local => $target,
                                          Type => SOCK_STREAM, Listen => 5);
        } else {
            bail_out("$name - bad tcp_listen target: $target");
        }
        last if $sock;
        $err = $!;
        last unless $err =~ /address already in use/i;
        warn "WARNING: failed to create the tcp listening socket: $err\n";
        sleep 1;
    }
    bail_out("$name - failed to create the tcp listening socket: $err")
        unless $sock;

    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;

    if ($pid == 0) {
        _tcp_server_child($block, $name, $sock, $reply, $req_len,
                          $query_file);
        POSIX::_exit(0);
    }

    $TcpServerPid = $pid;
    return ($sock, $query_file);
}

# Accepts exactly one connection, reads the query (until tcp_query_len bytes
# arrived, or a single read when no length is expected), optionally sleeps,
# sends the reply and closes (unless --- tcp_no_close).
sub _tcp_server_child {
    my ($block, $name, $sock, $reply, $req_len, $query_file) = @_;
    # kill_process() asks us to stop with SIGQUIT; exit quietly (no core).
    $SIG{$_} = sub { POSIX::_exit(0) } for qw(QUIT TERM);
    $SIG{PIPE} = 'DEFAULT';

    my $client;
    until ($client = $sock->accept) {
        warn "WARNING: $name - TCP server: failed to accept: $!\n";
        sleep $TestNginxSleep;
    }

    my ($no_read, $no_write);
    if (defined(my $how = $block->tcp_shutdown)) {
        sleep parse_time($block->tcp_shutdown_delay)
            if $block->tcp_shutdown_delay;
        shutdown $client, $how;
        if ($how == 0 || $how == 2) { $no_read = 1 } else { $no_write = 1 }
    }

    my $buf = '';
    unless ($no_read) {
        while (1) {
            my $chunk;
            my $n = sysread $client, $chunk, 4096;
            die "failed to receive: $!\n" unless defined $n;
            last if $n == 0;
            $buf .= $chunk;
            # Flush after every read so the parent sees partial data too.
            if ($query_file) {
                open my $out, '>', $query_file
                    or die "cannot open $query_file for writing: $!\n";
                binmode $out;
                print $out $buf;
                close $out;
            }
            last if !$req_len || length($buf) >= $req_len;
        }
    }

    if (my $delay = parse_time($block->tcp_reply_delay)) {
        sleep $delay;
    }

    if (!$no_write && defined $reply) {
        $reply = $reply->($buf) if ref $reply eq 'CODE';
        my @parts;
        if (ref $reply) {
            bail_out('bad --- tcp_reply value') if ref $reply ne 'ARRAY';
            @parts = @$reply;
        } else {
            @parts = ($reply);
        }
        for my $part (@parts) {
            defined send($client, $part, 0)
                or warn "WARNING: tcp server failed to send reply: $!\n";
        }
    }

    if (defined $block->tcp_no_close) {
        sleep 1 while 1;
    }
    close $client;
    close $sock;
}

# One TAP test each for --- tcp_query and --- tcp_query_len, evaluated after
# the HTTP checks of the same repetition.
sub _check_tcp_query {
    my ($block, $sock, $file) = @_;
    return unless defined $sock;
    my $name = $block->name;
    my $buf = '';
    if ($file && open my $in, '<', $file) {
        binmode $in;
        local $/;
        $buf = <$in>;
        $buf = '' unless defined $buf;
        close $in;
    }
    is_str($buf, $block->tcp_query, "$name - tcp_query ok")
        if defined $block->tcp_query;
    Test::More::is(length($buf), $block->tcp_query_len,
                   "$name - TCP query length ok")
        if defined $block->tcp_query_len;
}

sub _start_udp_server {
    my ($block, $name) = @_;
    my $target = $block->udp_listen;
    return unless defined $target;

    my $reply = $block->udp_reply;
    bail_out("$name - no --- udp_reply specified but --- udp_listen is "
             . "specified") unless defined $reply;

    my $query_file;
    (undef, $query_file) = File::Temp::tempfile('tnginx-udpq-XXXXXX',
                                                TMPDIR => 1)
        if defined $block->udp_query;

    my ($sock, $uds);
    if ($target =~ /^\d+$/) {
        $sock = IO::Socket::INET->new(LocalPort => $target, Proto => 'udp',
                                      ReuseAddr => 1)
            or bail_out("$name - failed to create the udp listening socket: $!");
    } elsif ($target =~ /\S+\.sock$/) {
        unlink $target if -e $target;
        $sock = IO::Socket::UNIX->new(Local => $target, Type => SOCK_DGRAM)
            or die "$!";
        $uds = $target;
    } else {
        bail_out("$name - bad udp_listen target: $target");
    }

    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        $SIG{$_} = sub { POSIX::_exit(0) } for qw(QUIT TERM);
        my $buf = '';
        defined $sock->recv($buf, 4096) or warn "udp recv failed: $!";
        if ($query_file && open my $out, '>', $query_file) {
            binmode $out;
            print $out $buf;
            close $out;
        }
        if (my $delay = parse_time($block->udp_reply_delay)) {
            sleep $delay;
        }
        $reply = $reply->($buf) if ref $reply eq 'CODE';
        for my $r (ref $reply eq 'ARRAY' ? @$reply : ($reply)) {
            defined $sock->send($r)
                or warn "$name - WARNING: udp server failed to send reply: $!\n";
        }
        POSIX::_exit(0);
    }
    $UdpServerPid = $pid;
    return ($sock, $query_file, $uds);
}

sub _check_udp_query {
    my ($block, $sock, $file) = @_;
    return unless defined $sock && defined $block->udp_query;
    my $buf = '';
    if ($file && open my $in, '<', $file) {
        binmode $in;
        local $/;
        $buf = <$in>;
        $buf = '' unless defined $buf;
    }
    is_str($buf, $block->udp_query, $block->name . " - udp_query ok");
}

# ---------------------------------------------------------------------------
# Teardown
# ---------------------------------------------------------------------------

END {
    return if $$ != $MainPid;

    my $exit = $?;
    cleanup();

    if ($UseValgrind || !$ENV{TEST_NGINX_NO_CLEAN}) {
        if (-f $PidFile) {
            my $pid = get_pid_from_pidfile('END');
            if ($pid && is_running($pid)) {
                kill_process($pid, 1, 'END');
            } else {
                unlink $PidFile;
            }
        }
        _report_valgrind('END') if $UseValgrind;
    }

    if ($Randomize && -d $ServRoot && $ServRoot =~ m{/t/servroot_\d+$}) {
        remove_tree($ServRoot);
    }

    # Some failures (client timeouts, broken chunked data, ...) call
    # no_ending(1) like the real runner does, which also stops Test::Builder
    # from turning failures into a non-zero exit status.  Make sure a failing
    # run still exits non-zero.
    my $tb = Test::More->builder;
    if ($tb->no_ending && $exit == 0) {
        my $failed = grep { !$_ } $tb->summary;
        $exit = $failed > 254 ? 254 : $failed if $failed;
    }
    $? = $exit;
}

1;
