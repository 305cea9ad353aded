package Qwen::SecretScan;

# The suite-wide secret scan: proves that the upstream keys the tests
# configure, and the client keys of their keys files, never reach a log
# nginx wrote nor an answer a client got (but the answers of the mock's echo
# mode, which return what the upstream received). docs/testing.md has the
# why; in short:
#
# scripts/run-tests.sh loads this module into every test process with
# PERL5OPT=-MQwen::SecretScan and points QWEN_SECRET_DIR at a directory of
# the run holding "keys" (one key a line, from extract_keys()). Then, in each
# test process:
#
#  * Test::Nginx::Socket files: a response body check (add_response_body_check,
#    which the real Test::Nginx has too) fails the test when an answer carries
#    a key, and a block preprocessor (add_block_preprocessor) copies what the
#    previous block's nginx wrote in <servroot>/logs before Test::Nginx wipes
#    it for the next block; the last block's at exit.
#  * files that use HTTP::Tiny: each answer, headers and body, is checked the
#    same way.
#  * nginx started by hand through $QWEN_NGINX: t/lib/nginx-record.sh notes
#    its prefix, and at exit (before File::Temp removes the test's temporary
#    directories) what it wrote in <prefix>/logs is copied too.
#
# The copies go to $QWEN_SECRET_DIR/logs/<test file>/<log name>, each piece
# behind a "#### qwen-secret-scan:" line naming where and when it was
# written; t/lib/secret-scan scans them at the end of the run and reports
# every key found by file and line.
#
# Without QWEN_SECRET_DIR the module does nothing, so a plain "prove" works.

use strict;
use warnings;

# loaded first so that its END block, which removes the test's temporary
# directories, runs after ours (END blocks run last-compiled first)
use File::Temp ();
use File::Basename qw(basename);
use File::Path qw(make_path);

our $Dir = $ENV{QWEN_SECRET_DIR};
our @Keys;
our $TestName = basename($0);
my $Main = $$;
my %Held;          # path => { fh, id, pos }: logs being followed
my $Label = 'before the first test block';
my %Count = (responses => 0, log_bytes => 0);
my %Hooked;

sub active { return defined $Dir && $Dir ne '' && @Keys > 0 }

if (defined $Dir && $Dir ne '') {
    @Keys = read_keys("$Dir/keys");
    # nginx started from here notes this pid (t/lib/nginx-record.sh)
    $ENV{QWEN_SECRET_OWNER} = $$;
}

sub read_keys {
    my ($file) = @_;
    open my $fh, '<', $file or return ();
    my @k = grep { length } map { s/\s+\z//r } <$fh>;
    close $fh;
    # longest first: a report names sk-mock-beijing rather than sk-mock
    return sort { length $b <=> length $a || $a cmp $b } @k;
}

# the keys found in a string, longest first, none that is part of another
# one found at the same place
sub keys_in {
    my ($text) = @_;
    return () unless defined $text && length $text;
    my (@found, %covered);
    for my $k (@Keys) {
        my $pos = -1;
        while (($pos = index($text, $k, $pos + 1)) >= 0) {
            next if $covered{$pos};
            $covered{$_} = 1 for $pos .. $pos + length($k) - 1;
            push @found, $k unless grep { $_ eq $k } @found;
        }
    }
    return @found;
}

# --------------------------------------------------------------------------
# the keys the tests configure
# --------------------------------------------------------------------------

# Returns (\@keys, \@ignored): from qwen_region directives, every key=
# value, every token shaped like a DashScope key (sk-...) whatever the
# parameter (a misspelt one included), the contents the tests give the files
# named by key_file= (user_files ">>> name"), and the values the tests give
# the variables named by key_env=; the keys the mock DashScope is started
# with (--key); and the client keys of keys files (qwen_keys_file), every
# JSON member "key": "VALUE" the tests write, in user_files or in a Perl
# string (its quotes escaped or not), but a "sha256:" digest (the prefix in
# any case, as the module takes it). Values shorter than 4 characters
# ("key=a") or with a "$" cannot be searched for usefully and are returned
# as ignored.
sub extract_keys {
    my @files = @_;
    my (%texts, %env, %keyfile, %keys, %ignored);
    for my $f (@files) {
        open my $fh, '<', $f or die "Qwen::SecretScan: $f: $!\n";
        $texts{$f} = do { local $/; <$fh> };
        close $fh;
    }
    my $add = sub {
        my ($v) = @_;
        $v =~ s/\\[nrt]\z//;
        return if $v eq '';
        if (length($v) < 4 || $v =~ /\$/) { $ignored{$v} = 1 } else { $keys{$v} = 1 }
    };
    for my $text (values %texts) {
        while ($text =~ /\bqwen_region\b([^;]*);/g) {
            my $d = $1;
            $add->($1) while $d =~ /(?<![\w-])key=([^\s;"']+)/g;
            $add->($1) while $d =~ /(?<![\w-])(sk-[\w.-]+)/g;
            $env{$1} = 1 while $d =~ /(?<![\w-])key_env=(\w+)/g;
            $keyfile{basename($1)} = 1 while $d =~ /(?<![\w-])key_file=([^\s;"']+)/g;
        }
        $add->($1) while $text =~ /(?<![\w-])--key\b['"]?\s*(?:,|=>|=)?\s*['"]?([^\s'",;)]+)/g;
        # a client key in a keys file: "key": "sk-...", or \"key\":\"sk-...\"
        while ($text =~ /\\?"key\\?"\s*:\s*\\?"([^"\\\s]+)\\?"/g) {
            my $v = $1;
            $add->($v) unless $v =~ /\Asha256:/i;    # a digest, in any case
        }
    }
    for my $text (values %texts) {
        for my $name (keys %env) {
            $add->($1) while $text =~ /\$ENV\{\s*['"]?\Q$name\E['"]?\s*\}\s*(?:\|\|)?=\s*['"]([^'"]+)['"]/g;
            $add->($1) while $text =~ /(?<![\w\$])\Q$name\E\s*=>\s*['"]([^'"]+)['"]/g;
            $add->($1) while $text =~ /(?<![\w\$])\Q$name\E=['"]?([^\s'";]+)/g;
        }
        for my $base (keys %keyfile) {
            # user_files: ">>> beijing.key" then the contents, on the next
            # line of the section or after a "\n" inside a Perl string
            $add->($1) while $text =~ />>>\s*\Q$base\E[^\S\n]*(?:\\n|\n)\s*([^\s\\'"]+)/g;
        }
    }
    return ([sort keys %keys], [sort keys %ignored]);
}

# --------------------------------------------------------------------------
# scanning a log
# --------------------------------------------------------------------------

# Returns the lines of a saved log that carry a key, as hashes: line (from
# 1), keys, text, where (the "#### qwen-secret-scan:" header above it).
#
# One kind of record is exempt: nginx's own proxy module, at the debug
# level, prints every header of the request it sends upstream, as
#   ... [debug] PID#TID: *N http proxy header: "Authorization: Bearer KEY"
# and the whole request as one record spanning lines:
#   ... [debug] PID#TID: *N http proxy header:
#   "POST /compatible-mode/v1/chat/completions HTTP/1.1
#   Authorization: Bearer KEY
#   ...
#   "
# and, while it builds that request from "proxy_set_header Authorization
# $qwen_upstream_authorization" (or "Bearer $var", or a constant), the
# value right after the header's name:
#   ... [debug] PID#TID: *N http script copy: "Authorization"
#   ... [debug] PID#TID: *N http script copy: "Bearer "     (if any)
#   ... [debug] PID#TID: *N http script var: "Bearer KEY"
# and the same for the two other headers a key goes in (auth_header=),
# "proxy_set_header api-key $qwen_upstream_api_key" and "x-api-key
# $qwen_upstream_x_api_key" (the name in any case, nothing else in it):
#   ... [debug] PID#TID: *N http script copy: "api-key"
#   ... [debug] PID#TID: *N http script var: "KEY"
# That is what nginx's debug log is, not something the module can or should
# change (nobody runs debug logs with real keys). Only these records are
# exempt: every other line, a debug line of the module's, the same variable
# used anywhere else or an access log line written into error.log right
# after such a record included, is not.
sub scan_log_file {
    my ($path, $keys) = @_;
    local @Keys = @$keys;
    open my $fh, '<', $path or die "Qwen::SecretScan: $path: $!\n";
    binmode $fh;
    my ($where, $in_dump, $auth_conn, @hits) = ('', 0, '');
    while (my $line = <$fh>) {
        if ($line =~ /^#### qwen-secret-scan: (.*)/) {
            ($where, $in_dump, $auth_conn) = ($1, 0, '');
            next;
        }
        if ($line =~ m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] }) {
            $in_dump = 0;
            my $level = $1;
            if ($level eq 'debug'
                && $line =~ m{^\S+ \S+ \[debug\] \d+#\d+: (\*\d+) http (proxy header|script copy|script var):(.*)$})
            {
                my ($conn, $what, $rest) = ($1, $2, $3);
                $rest =~ s/\r\z//;
                if ($what eq 'proxy header') {
                    next if $rest =~ /^ ".*"\z/;    # one header
                    if ($rest eq '') {              # the whole request follows
                        $in_dump = 1;
                        next;
                    }
                } elsif ($what eq 'script copy'
                         && lc($rest) =~ /\A "(?:authorization|api-key|x-api-key)"\z/)
                {
                    # proxy_set_header Authorization|api-key|x-api-key ...:
                    # its value comes next
                    $auth_conn = $conn;
                    next;
                } elsif ($auth_conn eq $conn) {
                    # the value: one record, or a scheme ("Bearer ") and one
                    $auth_conn = ($what eq 'script copy' && $rest =~ /^ "\w+ "\z/)
                               ? $conn : '';
                    next;
                }
            }
            $auth_conn = '';
        } elsif ($in_dump) {
            $in_dump = 0 if $line =~ /^"\r?\n?\z/;
            next;
        }
        my @found = keys_in($line) or next;
        my $text = $line;
        $text =~ s/\s+\z//;
        $text = substr($text, 0, 300) . '...' if length $text > 300;
        push @hits, { line => $., keys => \@found, text => $text,
                      where => $where };
    }
    close $fh;
    return @hits;
}

# --------------------------------------------------------------------------
# copying logs
# --------------------------------------------------------------------------

sub _dest_dir { return "$Dir/logs/$TestName" }

sub _append {
    my ($name, $header, $data) = @_;
    my $dir = _dest_dir();
    make_path($dir) unless -d $dir;
    open my $out, '>>', "$dir/$name" or die "Qwen::SecretScan: $dir/$name: $!\n";
    binmode $out;
    print $out "#### qwen-secret-scan: $header\n", $data;
    print $out "\n" if length $data && substr($data, -1) ne "\n";
    close $out;
    $Count{log_bytes} += length $data;
}

# what a followed file got since last time
sub _drain {
    my ($path, $h, $why) = @_;
    my $fh = $h->{fh};
    seek $fh, $h->{pos}, 0 or return;
    my $data = do { local $/; <$fh> } // '';
    return unless length $data;
    my $from = $h->{pos};
    $h->{pos} += length $data;
    _append(basename($path), "$path bytes $from-$h->{pos}, $why", $data);
}

# Copies the new bytes of every file in $logdir. Each file stays open from
# then on: if it is later deleted and a new one takes its name, the new one
# cannot get the old inode, and whatever the old one got in the meantime is
# still read.
sub save_logs {
    my ($logdir, $why) = @_;
    return unless active() && $$ == $Main;
    my %now;
    if (opendir my $dh, $logdir) {
        for my $f (sort grep { !/^\.\.?\z/ && !/\.pid\z/ } readdir $dh) {
            my $path = "$logdir/$f";
            next unless -f $path;
            my @st = stat _;
            $now{$path} = "$st[0]:$st[1]";
        }
        closedir $dh;
    }
    for my $path (sort keys %Held) {
        next unless index($path, "$logdir/") == 0;
        my $h = $Held{$path};
        _drain($path, $h, $why);
        if (!defined $now{$path} || $now{$path} ne $h->{id}) {
            close $h->{fh};
            delete $Held{$path};
        } elsif (-s $path < $h->{pos}) {
            $h->{pos} = 0;      # truncated
        }
    }
    for my $path (sort keys %now) {
        next if $Held{$path};
        open my $fh, '<', $path or next;
        binmode $fh;
        my @st = stat $fh;
        $Held{$path} = { fh => $fh, id => "$st[0]:$st[1]", pos => 0 };
        _drain($path, $Held{$path}, $why);
    }
}

# For a test that knows of logs nothing else will find: copies the new bytes
# of the files in $dir (a no-op without QWEN_SECRET_DIR).
sub collect_logs {
    my ($dir, $why) = @_;
    save_logs($dir, $why // "collected by $TestName");
}

sub _servroot_logs {
    my $root = eval { Test::Nginx::Util::server_root() };
    return defined $root ? "$root/logs" : undef;
}

# --------------------------------------------------------------------------
# findings and records
# --------------------------------------------------------------------------

sub _record {
    my ($file, $line) = @_;
    return unless active();
    make_path($Dir) unless -d $Dir;
    open my $out, '>>', "$Dir/$file" or die "Qwen::SecretScan: $Dir/$file: $!\n";
    print $out "$line\n";
    close $out;
}

sub _leak {
    my ($what, @found) = @_;
    my $keys = join ', ', map { "'$_'" } @found;
    _record('findings', "$TestName: $what carries the upstream key $keys");
    if (defined &Test::More::fail) {
        local $Test::Builder::Level = $Test::Builder::Level + 2;
        Test::More::fail("$what carries no upstream key");
        Test::More::diag("secret scan: upstream key $keys in $what");
    }
}

# --------------------------------------------------------------------------
# Test::Nginx::Socket
# --------------------------------------------------------------------------

sub _section_text {
    my ($block, $section, $idx, $per_request) = @_;
    my $v = eval { $block->$section };
    return '' unless defined $v;
    if (ref $v eq 'ARRAY') {
        return _flatten($v->[$idx]) if $per_request;
        return _flatten($v);
    }
    return _flatten($v);
}

sub _flatten {
    my ($v) = @_;
    return '' unless defined $v;
    return join "\n", map { _flatten($_) } @$v if ref $v eq 'ARRAY';
    return _flatten($v->{value}) if ref $v eq 'HASH';
    return "$v";
}

# whether request $idx of the block asks the mock to echo
sub block_request_echoes {
    my ($block, $idx) = @_;
    my $text = join "\n",
        _section_text($block, 'more_headers', $idx, 1),
        _section_text($block, 'raw_request', $idx, 0);
    return $text =~ /(?:\A|\n)[ \t]*x-mock-echo[ \t]*:/i ? 1 : 0;
}

sub check_block_response {
    my ($block, $body, $idx, $repeated_idx, $dry_run) = @_;
    return if $dry_run || $$ != $Main;
    $Count{responses}++;
    return unless defined $body && length $body;
    my @found = keys_in($body) or return;
    return if block_request_echoes($block, $idx // 0);
    _leak(sprintf('%s - the answer to request %d (repetition %d)',
                  $block->name, $idx // 0, $repeated_idx // 0), @found);
}

sub _hook_test_nginx {
    no strict 'refs';
    Test::Nginx::Socket::add_response_body_check(\&check_block_response);
    &{'Test::Nginx::Socket::add_block_preprocessor'}(sub {
        my ($block) = @_;
        if (my $logs = _servroot_logs()) {
            save_logs($logs, "written up to the end of: $Label");
        }
        $Label = $block->name;
    });
    $Hooked{'test-nginx'} = 1;
}

# --------------------------------------------------------------------------
# HTTP::Tiny
# --------------------------------------------------------------------------

sub check_http_tiny {
    my ($method, $url, $args, $res) = @_;
    return unless ref $res eq 'HASH' && $$ == $Main;
    $Count{responses}++;
    my $h = $res->{headers} || {};
    my $text = join "\n",
        (map { my $v = $h->{$_}; "$_: " . (ref $v ? join(', ', @$v) : $v // '') } sort keys %$h),
        $res->{content} // '';
    my @found = keys_in($text) or return;
    my $req = ($args && $args->{headers}) || {};
    return if grep { lc $_ eq 'x-mock-echo' } keys %$req;
    _leak("the answer to $method $url", @found);
}

sub _hook_http_tiny {
    my $orig = \&HTTP::Tiny::request;
    no warnings 'redefine';
    *HTTP::Tiny::request = sub {
        my $res = $orig->(@_);
        check_http_tiny(@_[1 .. 3], $res);
        return $res;
    };
    $Hooked{'http-tiny'} = 1;
}

# --------------------------------------------------------------------------
# the hooks
# --------------------------------------------------------------------------

INIT {
    if (active()) {
        my @missed;
        if ($INC{'Test/Nginx/Socket.pm'}) {
            if (defined &Test::Nginx::Socket::add_response_body_check
                && defined &Test::Nginx::Socket::add_block_preprocessor)
            {
                _hook_test_nginx();
            } else {
                push @missed, 'test-nginx';
            }
        }
        _hook_http_tiny() if defined &HTTP::Tiny::request;
        # every test process says it is here, with what it hooked and what
        # it could not: the report fails a test file without this line
        _record('hooked', join "\t", $TestName, $$,
                join(',', sort keys %Hooked), join(',', @missed));
    }
}

END {
    if (active() && $$ == $Main) {
        my $status = $?;
        my $servroot_logs = $Hooked{'test-nginx'} ? _servroot_logs() : undef;
        save_logs($servroot_logs, "written up to the end of: $Label (at exit)")
            if $servroot_logs;
        # nginx this process started by hand
        if (open my $fh, '<', "$Dir/prefixes") {
            my %seen;
            while (<$fh>) {
                chomp;
                my ($owner, $prefix) = split /\t/, $_, 2;
                next unless defined $prefix && $owner eq $$;
                $prefix =~ s{/+\z}{};
                next if $seen{$prefix}++;
                next if $servroot_logs && "$prefix/logs" eq $servroot_logs;
                save_logs("$prefix/logs", "nginx -p $prefix (at exit)");
            }
            close $fh;
        }
        close $_->{fh} for values %Held;
        %Held = ();
        _record('counts', join "\t", $TestName, $$,
                map { "$_=$Count{$_}" } sort keys %Count);
        $? = $status;
    }
}

1;
