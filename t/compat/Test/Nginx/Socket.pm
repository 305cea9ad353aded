package Test::Nginx::Socket;

# ---------------------------------------------------------------------------
# Independent re-implementation of a SUBSET of the documented behaviour of
# Test::Nginx::Socket (CPAN distribution Test-Nginx, openresty/test-nginx) and
# of the parts of Test::Base it relies on (the __DATA__ block format and its
# section filters).  No code was copied from those projects.
#
# Used only when the real module is not installed (the Makefile then adds
# -I t/compat).  Hard rule: never be more lenient than the real module - a
# .t file that passes here must pass unchanged under the real one.  Anything
# not implemented either behaves identically or makes the test fail / bail
# out.  See t/compat/README.md for the supported surface.
# ---------------------------------------------------------------------------

use strict;
use warnings;

our $VERSION = '0.29_compat';

use Carp qw(croak carp cluck confess);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Socket::INET ();
use IO::Select ();
use Time::HiRes qw(sleep);
use POSIX qw(WNOHANG);
use Digest::MD5 ();
use Digest::SHA ();
use MIME::Base64 ();
use Test::More ();

use Test::Nginx::Util;

sub send_request ($$$$;$);

# ---------------------------------------------------------------------------
# Exports.  The real module exports its own list plus (through Spiffy) the
# whole export list of Test::Base, which re-exports a fixed set of Test::More
# functions.  We export the same names, minus the Test::Base extras we do not
# implement (a test using one of those fails to compile here, never the
# other way round).  Notably NOT exported by the real module either:
# $ServerPort, done_testing, note, explain, subtest, BAIL_OUT.
# ---------------------------------------------------------------------------

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test
    repeat_each config_preamble worker_connections
    master_process_enabled
    no_long_string workers master_on master_off
    log_level no_shuffle no_root_location use_hup
    server_name
    server_addr server_root html_dir server_port server_port_for_client
    timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
    add_response_body_check
);

# What Test::Base adds (Test::More subset first).
our @EXPORT_TEST_BASE = qw(
    ok isnt like unlike is_deeply cmp_ok
    skip todo_skip pass fail
    eq_array eq_hash eq_set
    plan can_ok isa_ok diag
    use_ok
    is no_diff blocks filters filter_arguments
    croak carp cluck confess
);

sub import {
    my $class = shift;
    my @args = @_;
    my $caller = caller;

    croak "Test::Nginx::Socket compat: '-Base'/'-base' subclassing is not "
          . "supported by t/compat; install the real Test::Nginx"
        if grep { /^-base$/i } @args;

    # Test::Base turns on strict and warnings for the whole test file; do the
    # same so sloppy test code fails here exactly as it would there.
    strict->import;
    warnings->import;

    no strict 'refs';
    for my $sym (@EXPORT, @EXPORT_TEST_BASE) {
        next if defined &{"${caller}::$sym"};
        my $code = defined &{"Test::Nginx::Socket::$sym"}
                   ? \&{"Test::Nginx::Socket::$sym"}
                   : \&{"Test::More::$sym"};
        *{"${caller}::$sym"} = $code;
    }
    *{"${caller}::TODO"} = \$Test::More::TODO;

    # "use Test::Nginx::Socket 'no_plan';" / "... tests => 3;"
    Test::More::plan(@args) if @args;
}

# Re-exported Test::More functions that we define here so that our own code
# and the export loop can refer to them uniformly.
sub plan      { Test::More::plan(@_) }
sub is ($$;$) {
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::is($_[0], $_[1], $_[2]);
}
sub no_diff { $ENV{TEST_SHOW_NO_DIFFS} = 1 }

our @ResponseBodyChecks;
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

# ===========================================================================
# The __DATA__ block format (the subset of Test::Base that test files use)
# ===========================================================================
#
#   === TEST 1: title            <- starts a block; the rest of the line is
#   optional description            its name
#   --- section [filters]        <- value = following lines, up to the next
#   value lines                     "--- " line
#   --- section [filters]: value <- inline value (must have no further lines)
#
# Every value first goes through the default filters "norm" (CRLF -> LF) and
# "trim" (drop leading blank lines and trailing whitespace after the last
# newline, so a multi-line value keeps exactly one trailing "\n"), then the
# filters named on the section line, in order.  Meta sections: ONLY, SKIP,
# FIRST, LAST.

my $Spec;            # raw __DATA__ text
my $BlockList;       # parsed, selected blocks
my @GlobalFilters = qw(norm trim);
my %SectionFilters;  # filters() with a hashref: per-section extra filters
our $FilterArguments;

my %RESERVED = map { $_ => 1 } qw(
    new DESTROY AUTOLOAD set_value run_filters name description seq_num
    is_filtered blocks_object original_values block_accessor
);

sub _spec {
    return $Spec if defined $Spec;
    no strict 'refs';
    my $fh = \*{'main::DATA'};
    if (defined fileno($fh)) {
        local $/;
        $Spec = <$fh>;
    }
    return $Spec;
}

sub _block_list {
    return $BlockList if $BlockList;
    my $spec = _spec();
    return $BlockList = [] unless defined $spec;

    # Optional "<<< perl code >>>" prelude, evaluated in package main.
    if ($spec =~ s/\A\s*<<<(.*?)>>>\s*$//sm) {
        my $code = $1;
        eval "package main; $code";
        croak $@ if $@;
    }

    # Cut the text into hunks, each starting at a line beginning with "===".
    my @hunks;
    for my $line (split /^/, $spec) {
        if ($line =~ /^===/) {
            push @hunks, $line;
        } elsif (@hunks) {
            $hunks[-1] .= $line;
        }
    }

    my @made = map { _make_block($_) } @hunks;
    my $has_first = grep { exists $_->{FIRST} } @made;
    my @chosen;
    for my $b (@made) {
        if (exists $b->{ONLY}) {
            Test::More::diag("I found ONLY: maybe you're debugging?");
            @chosen = ($b);
            last;
        }
        next if exists $b->{SKIP};
        if ($has_first) {
            next unless exists $b->{FIRST};
            $has_first = 0;
        }
        push @chosen, $b;
        last if exists $b->{LAST};
    }

    my $seq = 1;
    $_->{__seq} = $seq++ for @chosen;
    return $BlockList = \@chosen;
}

sub _make_block {
    my $hunk = shift;
    my $block = Test::Nginx::Socket::Block->new;

    # Title line; the whitespace after it (blank lines included) is eaten.
    $hunk =~ s/\A===[ \t]*(.*)\s+//
        or die "malformed block header: $hunk";
    my $name = $1;

    my ($description, @sections) = ('');
    for my $line (split /^/, $hunk) {
        if ($line =~ /^--- +\(?(\w+)\)? *(.*)\n\z/) {
            push @sections, [$1, $2, ''];
        } elsif (@sections) {
            $sections[-1][2] .= $line;
        } else {
            $description .= $line;
        }
    }
    $description = $name unless $description =~ /\S/;
    $description =~ s/\s*\z//;

    my @order;
    for my $s (@sections) {
        my ($type, $filters, $value) = @$s;
        croak "'$type' is a reserved name. Use something else.\n"
            if $RESERVED{$type} || $type =~ /^_/;
        if ($filters =~ /:(\s|\z)/) {
            croak "Extra lines not allowed in '$type' section"
                if $value =~ /\S/;
            ($filters, $value) = split /\s*:(?:\s+|\z)/, $filters, 2;
            $value = '' unless defined $value;
            $value =~ s/^\s*(.*?)\s*$/$1/;
        }
        $block->{__filters}{$type} = $filters;
        push @order, $type unless grep { $_ eq $type } @order;
        $block->set_value($type, $value);
    }

    $block->set_value(name => $name);
    $block->set_value(description => $description);
    $block->{__order} = \@order;
    return $block;
}

# blocks()            - in list context: all selected blocks, filtered
# blocks()            - in scalar context: how many (used for the plan)
# blocks('section')   - only the blocks having that section
sub blocks (;$) {
    my $section = shift;
    croak "'$section' is invalid argument to blocks()"
        if defined $section && $section !~ /^[a-zA-Z]\w*$/;
    my @b = @{ _block_list() };
    @b = grep { exists $_->{$section} } @b if $section;
    return scalar @b unless wantarray;
    $_->run_filters for grep { !$_->{__filtered} } @b;
    return @b;
}

# filters(qw(chomp)) appends default filters for every section;
# filters({ section => [...] }) adds filters for particular sections.
sub filters {
    if (ref $_[0] eq 'HASH') {
        %SectionFilters = %{ $_[0] };
    } else {
        push @GlobalFilters, @_;
    }
}

sub filter_arguments { $FilterArguments }

$Test::Nginx::Util::BlocksProvider = sub { blocks() };

# --- the built-in filters --------------------------------------------------

sub _scalar_only {
    my ($filter, @v) = @_;
    croak "Input to the '$filter' filter must be a scalar, not a list"
        if @v != 1;
}

my %FILTERS;
%FILTERS = (
    norm => sub {
        _scalar_only('norm', @_);
        my $t = shift;
        $t = '' unless defined $t;
        $t =~ s/\r\n/\n/g;
        $t =~ s/\r/\n/g;
        return $t;
    },
    trim => sub {
        return map {
            s/\A([ \t]*\n)+//;
            s/(?<=\n)\s*\z//g;
            $_;
        } @_;
    },
    chomp   => sub { map { CORE::chomp; $_ } @_ },
    chop    => sub { map { CORE::chop; $_ } @_ },
    unchomp => sub { map { $_ . "\n" } @_ },
    eval => sub {
        _scalar_only('eval', @_);
        # Evaluated in list context, under strict and warnings, in a package
        # of its own.  A compile/run error does not abort: like the real
        # filter, the error message becomes the section value.
        my @r = _eval_section(shift);
        return $@ if $@;
        return @r;
    },
    escape => sub {
        _scalar_only('escape', @_);
        my $t = shift;
        $t =~ s/(\\.)/eval "qq{$1}"/ge;
        return $t;
    },
    lines => sub {
        _scalar_only('lines', @_);
        my $t = shift;
        return () unless length $t;
        return $t =~ /^(.*\n?)/gm;
    },
    join => sub {
        my $sep = defined $FilterArguments ? $FilterArguments : '';
        return CORE::join($sep, @_);
    },
    array   => sub { [@_] },
    prepend => sub { my $p = $FilterArguments; map { $p . $_ } @_ },
    append  => sub { my $s = $FilterArguments; map { $_ . $s } @_ },
    base64_decode => sub {
        _scalar_only('base64_decode', @_);
        MIME::Base64::decode_base64(shift);
    },
    base64_encode => sub {
        _scalar_only('base64_encode', @_);
        MIME::Base64::encode_base64(shift);
    },
    regexp => sub {
        _scalar_only('regexp', @_);
        my $t = shift;
        my $flags = $FilterArguments;
        if ($t =~ /\n.*?\n/s) {
            $flags = 'xism' unless defined $flags;
        } else {
            CORE::chomp $t;
        }
        $flags ||= '';
        my $re = eval "qr{$t}$flags";
        die $@ if $@;
        return $re;
    },
);

sub _eval_section {
    # No lexicals here and @_ emptied first: the evaluated code must not see
    # anything of ours.
    return eval "package Test::Base::Filter; " . shift;
}

# ===========================================================================
# Block objects
# ===========================================================================

package Test::Nginx::Socket::Block;

use strict;
use warnings;

our $AUTOLOAD;

sub new { bless {}, shift }

# Values are stored as lists, like Test::Base: the accessor returns the whole
# list in list context and its first element in scalar context.
sub set_value {
    my ($self, $name, @v) = @_;
    $self->{$name} = [@v];
}

sub name        { my @v = @{ $_[0]{name} || [] }; wantarray ? @v : $v[0] }
sub description { my @v = @{ $_[0]{description} || [] };
                  wantarray ? @v : $v[0] }
sub seq_num     { $_[0]{__seq} }
sub is_filtered { $_[0]{__filtered} }
sub original_values { $_[0]{__original} ||= {} }

sub AUTOLOAD {
    my $self = shift;
    (my $name = $AUTOLOAD) =~ s/.*:://;
    return if $name eq 'DESTROY';
    return unless ref $self && exists $self->{$name};
    Carp::croak("Not allowed to set values for '$name'") if @_;
    my @v = @{ $self->{$name} };
    return wantarray ? @v : $v[0];
}

sub run_filters {
    my $self = shift;
    Carp::croak("Attempt to filter a block twice") if $self->{__filtered};

    for my $type (@{ $self->{__order} || [] }) {
        my @value = @{ $self->{$type} };
        $self->original_values->{$type} = $value[0];

        for my $f (_filter_names($type, $self->{__filters}{$type})) {
            local $Test::Nginx::Socket::FilterArguments
                = $f =~ s/=(.*)$// ? $1 : undef;
            no strict 'refs';
            if (defined &{"main::$f"}) {
                # A filter function defined by the test file itself.
                local $_ = (@value == 1 && !defined $value[0]) ? undef
                                                                : join '', @value;
                @value = &{"main::$f"}(@value);
                if (!@value
                    || (@value == 1 && defined $value[0]
                        && $value[0] =~ /\A(\d+|)\z/))
                {
                    @value = ($_);
                }
            } elsif (my $code = $FILTERS{$f}) {
                @value = $code->(@value);
            } else {
                die "Can't find a function or method for '$f' filter\n";
            }
            $self->{$type} = [@value];
        }
    }
    $self->{__filtered} = 1;
}

# Default filters, then per-section ones from filters({...}), then the ones on
# the section line.  "-name" removes an earlier filter, "+name" appends one
# at the very end.
sub _filter_names {
    my ($type, $string) = @_;
    $string = '' unless defined $string;
    $string =~ s/^\s+//;
    my $per = $SectionFilters{$type} || [];
    $per = [$per] unless ref $per;
    my (@list, @append);
    for my $f (@GlobalFilters, @$per, split /\s+/, $string) {
        last unless length $f;
        if ($f =~ s/^-//) {
            @list = grep { $_ ne $f } @list;
        } elsif ($f =~ s/^\+//) {
            push @append, $f;
        } else {
            push @list, $f;
        }
    }
    return (@list, @append);
}

# ===========================================================================
# Minimal HTTP response object (what HTTP::Response->parse would give us)
# ===========================================================================

package Test::Nginx::Socket::Response;

use strict;
use warnings;

sub code    { my $s = shift; $s->{code} = shift if @_; $s->{code} }
sub message { $_[0]{message} }
sub content { my $s = shift; $s->{content} = shift if @_; $s->{content} }

# Case-insensitive lookup; "_" in the requested name matches "-".  Several
# headers of the same name are joined with ", " (scalar context).
sub header {
    my ($s, $name) = @_;
    (my $key = lc $name) =~ tr/_/-/;
    my @v = map { $_->[1] } grep { $_->[0] eq $key } @{ $s->{headers} };
    return wantarray ? @v : (@v ? join(', ', @v) : undef);
}

# Status line, then "Name: value" lines (with obs-fold continuation lines),
# then an optional empty line; everything after that is the body.  Parsing
# stops at the first line that is not a header, which then starts the body.
sub parse {
    my ($class, $raw) = @_;
    my $self = bless { headers => [], content => '' }, $class;

    my $status;
    if ($raw =~ s/^(.*)\n//) {
        $status = $1;
    } else {
        ($status, $raw) = ($raw, '');
    }
    $status =~ s/\r\z//;

    while (1) {
        if ($raw =~ s/^([^\s:]+)[ \t]*: ?(.*)\n?//) {
            my ($k, $v) = (lc $1, $2);
            $v =~ s/\r\z//;
            push @{ $self->{headers} }, [$k, $v];
        } elsif (@{ $self->{headers} } && $raw =~ s/^([ \t].*)\n?//) {
            my $more = $1;
            $more =~ s/\r\z//;
            $self->{headers}[-1][1] .= "\n$more";
        } else {
            $raw =~ s/^\r?\n//;
            last;
        }
    }
    $self->{content} = $raw;

    my ($code, $msg);
    if ($status =~ /^\d{3} /) {
        ($code, $msg) = split ' ', $status, 2;
    } else {
        (undef, $code, $msg) = split ' ', $status, 3;
    }
    $self->{code} = $code;
    $self->{message} = $msg;
    return $self;
}

# ===========================================================================
# Building requests
# ===========================================================================

package Test::Nginx::Socket;

# "--- more_headers" text -> ("Name: value\r\n"..., is_chunked).  Lines
# starting with "#" are comments.
sub parse_more_headers ($) {
    my $text = shift;
    my ($out, $chunked) = ('');
    for my $line (split /\n+/, $text) {
        next if $line =~ /^\s*#/;
        my ($k, $v) = split /:\s*/, $line, 2;
        $v = '' unless defined $v;
        $chunked = 1 if lc($k) eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# Turns the user's request text, possibly split into several packets, into
# the bytes to send: "METHOD URI VERSION\r\n", Host and Connection headers
# unless given, the more_headers, a Content-Length when there is a body (the
# body is then stripped of surrounding whitespace), an empty line and the
# body.  URI defaults to "/" and VERSION to HTTP/1.1.
#
# The packet boundaries the user chose are preserved: the rewrite is applied
# as a list of edits (delete n chars / replace n chars by a string) walking
# through the packets, so bytes stay in the packet they were written in.
sub build_request_from_packets ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn, $packets) = @_;

    my $text = join '', map { defined $_ ? $_ : '' } @$packets;
    my ($first, $content) = $text =~ /\A([^\n]*\n?)(.*)\z/s;
    bail_out("$name - Request line should be non-empty") unless $first;

    $first =~ /^(\s*)(\S+)( *)(?:(\S+)( *))?(?:(\S+)( *))?(\s*)$/
        or bail_out("$name - Request line is not valid. Should be 'meth "
                    . "[url [version]]' but got \"$first\".");
    my ($lead, $meth, $sp1, $url, $sp2, $ver, $sp3, $tail)
        = ($1, $2, $3, $4, $5, $6, $7, $8);
    my ($url_len, $ver_len) = (0, 0);
    if (defined $url) { $url_len = length $url } else { ($url, $sp2) = ('/', '') }
    if (defined $ver) { $ver_len = length $ver } else { ($ver, $sp3) = ('HTTP/1.1', '') }

    my $len_header = '';
    my $new_content = $content;
    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        $new_content =~ s/^\s+|\s+$//g;
        $len_header = "Content-Length: " . length($new_content) . "\r\n";
    }

    $more_headers =~ s/(?<!\r)\n/\r\n/g;
    my $headers = '';
    $headers .= "Host: " . server_name() . "\r\n"
        if $more_headers !~ /(?:^|\n)Host:/i;
    $headers .= "Connection: $conn\r\n"
        if $more_headers !~ /(?:^|\n)Connection/i;
    $headers .= "$more_headers$len_header\r\n";

    # [length, replacement] ; undef replacement = delete
    my @edits = (
        [length $lead, undef],
        [length $meth, "$meth "],
        [length $sp1, undef],
        [$url_len, "$url "],
        [length $sp2, undef],
        [$ver_len, "$ver\r\n"],
        [length($sp3) + length($tail), undef],
        [0, $headers],
        [length $content, $new_content],
    );

    return _apply_edits([@$packets], \@edits);
}

sub _apply_edits {
    my ($in, $edits) = @_;
    my @out;
    my $p = shift @$in;
    my $cur = 0;
    my $e = shift @$edits;

    while (defined $p) {
        if (!$e) {
            push @out, $p;
            $p = shift @$in;
            $cur = 0;
            next;
        }

        my $avail = length($p) - $cur;
        my ($len, $rep) = @$e;

        if ($len > $avail) {
            # The edited region continues in the next packet.
            $e->[0] -= $avail;
            if (defined $rep) {
                my $piece = substr($rep, 0, $avail);
                substr($p, $cur) = $piece;
                $e->[1] = substr($rep, length $piece);
                push @out, $p;
            } elsif ($cur > 0) {
                # A deletion running past the end of a packet leaves that
                # packet's tail alone (this mirrors the reference runner's
                # observable behaviour for such odd splits).
                push @out, $p;
            }
            $p = shift @$in;
            $cur = 0;
        } else {
            if (defined $rep) {
                substr($p, $cur, $len) = $rep;
                $cur += length $rep;
            } else {
                substr($p, $cur, $len) = '';
            }
            $e = shift @$edits;
        }
    }
    return \@out;
}

# Returns a list of requests; each request is a list of packets
# ({ value => bytes, delay_before => seconds }).
sub get_req_from_block ($) {
    my $block = shift;
    my $name = $block->name;
    my @reqs;

    if (defined $block->raw_request) {
        my $raw = $block->raw_request;
        if (ref $raw && ref $raw eq 'ARRAY') {
            push @reqs, [map { { value => $_ } } @$raw];
        } else {
            push @reqs, [{ value => $raw }];
        }
        return \@reqs;
    }

    my $request;
    if (defined $block->request_eval) {
        Test::More::diag("$name - request_eval DEPRECATED. Use request eval "
                         . "instead.");
        $request = eval $block->request_eval;
        warn $@ if $@;
    } else {
        $request = $block->request;
        # Leading blank space and "# comment" lines are not part of it.
        if (defined $request && !ref $request) {
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//;
        }
    }

    my $more_headers = $block->more_headers || '';
    my $headers_for = sub {
        my ($i, $what) = @_;
        my $h = $more_headers;
        if (ref $more_headers eq 'ARRAY') {
            $h = $more_headers->[$i];
            bail_out("--- more_headers lacks data for the $what")
                unless defined $h;
        }
        return parse_more_headers($h);
    };

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            if !ref $reqs || ref $reqs ne 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my ($hdr, $chunked)
                = $headers_for->($i, "$i pipelined request");
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $all .= build_request_from_packets($name, $hdr, $chunked, $conn,
                                               [$reqs->[$i]])->[0];
        }
        return [[{ value => $all }]];
    }

    if (!ref $request) {
        my ($hdr, $chunked) = $headers_for->(0, 'request');
        my $bytes = build_request_from_packets($name, $hdr, $chunked, 'close',
                                               [$request])->[0];
        return [[{ value => $bytes }]];
    }

    bail_out("$name - invalid ---request : MUST be string or array of "
             . "requests") if ref $request ne 'ARRAY';

    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($hdr, $chunked) = $headers_for->($i, "${i}th request");

        if (!ref $one) {
            my $bytes = build_request_from_packets($name, $hdr, $chunked,
                                                   'close', [$one])->[0];
            push @reqs, [{ value => $bytes }];
            next;
        }

        bail_out("$name - Invalid syntax. $one should be a string or an "
                 . "array of packets.") if ref $one ne 'ARRAY';

        my @raw = map {
            !ref $_ ? $_
            : ref $_ eq 'HASH' ? $_->{value}
            : bail_out("$name - Invalid syntax. $_ should be a string or "
                       . "hash with value.")
        } @$one;
        my $built = build_request_from_packets($name, $hdr, $chunked,
                                               'close', \@raw);
        my @packets;
        for my $j (0 .. $#$built) {
            if (ref $one->[$j]) {
                # Like the reference runner, the user's hash is updated in
                # place (so it keeps its delay_before).
                $one->[$j]{value} = $built->[$j];
                push @packets, $one->[$j];
            } else {
                push @packets, { value => $built->[$j] };
            }
        }
        push @reqs, \@packets;
    }
    return \@reqs;
}

# ===========================================================================
# Sending a request
# ===========================================================================

our $TotalConnectingTimeouts = 0;

sub _connect {
    my ($block, $timeout) = @_;
    my $addr = $block->server_addr_for_client;
    $addr = $Test::Nginx::Util::ServerAddr unless defined $addr;
    return (IO::Socket::INET->new(
        PeerAddr => $addr,
        PeerPort => $Test::Nginx::Util::ServerPortForClient,
        Proto    => 'tcp',
        Timeout  => $timeout,
    ), $addr);
}

# Sends one request (a list of packets) on a fresh connection and reads until
# the server closes it.  The timeout applies between two I/O events, not to
# the whole exchange.  A timeout is a test failure unless --- abort is given;
# either way whatever was received so far is returned and checked.
sub send_request ($$$$;$) {
    my ($req, $middle_delay, $timeout, $block, $tries) = @_;
    my $name = $block->name;

    my @bits = @$req;
    my $head_req = (join('', map { $_->{value} } @bits) =~ /^\s*HEAD\s+/)
                   ? 1 : 0;

    my ($sock, $addr) = _connect($block, $timeout);
    my $port = $Test::Nginx::Util::ServerPortForClient;

    if (!$sock) {
        my $err = $!;
        $tries ||= 1;
        my $total = $TotalConnectingTimeouts ? 20 : 50;
        if ($tries <= $total) {
            my $st = sleep_time();
            my $wait = ($st + $st * $tries) * $tries / 2;
            $wait = 1 if $wait >= 1;

            # In valgrind mode nginx is our child: stop waiting if it died.
            my $child = $Test::Nginx::Util::ChildPid;
            if (defined $child && waitpid($child, WNOHANG) == -1) {
                warn "WARNING: Child process $child is already gone.\n";
                Test::More->builder->no_ending(1);
                Test::More::fail("$name - Can't connect to $addr:$port: "
                                 . "$err (aborted)\n");
                return;
            }

            if ($wait >= 0.6) {
                warn "$name - Can't connect to $addr:$port: $err\n";
                warn "\tRetry connecting after $wait sec\n"
                    if $tries + 1 <= $total;
            }
            sleep $wait;
            return send_request($req, $middle_delay, $timeout, $block,
                                $tries + 1);
        }

        my $msg = "$name - Can't connect to $addr:$port: $err (aborted)\n";
        if (++$TotalConnectingTimeouts < 3) {
            Test::More->builder->no_ending(1);
            Test::More::fail($msg);
        } else {
            bail_out($msg);
        }
        return;
    }

    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';   # report EPIPE as a write error instead

    my $resp = '';
    my $buf = (shift @bits)->{value};
    my $off = 0;
    my ($reading, $writing) = (1, 1);
    my $shutdown = $block->shutdown;

    while ($reading) {
        my $rsel = IO::Select->new($sock);
        my $wsel = $writing ? IO::Select->new($sock) : undef;
        $! = 0;
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, $timeout);

        if (!$r && !$w) {
            next if $! == EINTR;
            # Nothing happened within the timeout.
            if (!defined $block->abort) {
                Test::More->builder->no_ending(1);
                Test::More::fail("ERROR: client socket timed out - $name\n");
            } else {
                sleep 0.005;
            }
            last;
        }

        if ($w && @$w) {
            # Write as much as possible; between packets honour the delay.
            while (1) {
                if ($off < length $buf) {
                    my $n = syswrite($sock, $buf, length($buf) - $off, $off);
                    if (!defined $n) {
                        last if $! == EAGAIN || $! == EWOULDBLOCK;
                        my $msg = "write failed: $!";
                        warn "$msg\n";
                        $resp = $msg if $resp eq '';
                        $reading = $writing = 0;
                        last;
                    }
                    $off += $n;
                    next;
                }
                my $next = shift @bits;
                if (!$next) {
                    $writing = 0;
                    if (defined $shutdown) {
                        $shutdown = 1 if $shutdown eq '';
                        shutdown($sock, $shutdown);
                    }
                    last;
                }
                ($buf, $off) = ($next->{value}, 0);
                my $delay = defined $next->{delay_before}
                            ? $next->{delay_before} : $middle_delay;
                sleep $delay if $delay;
            }
        }

        if ($reading && $r && @$r) {
            while (1) {
                my $chunk;
                my $n = sysread($sock, $chunk, 1024);
                if (!defined $n) {
                    last if $! == EAGAIN || $! == EWOULDBLOCK;
                    warn "WARNING: $name - HTTP response read failure: $!";
                    $reading = 0;
                    last;
                }
                if ($n == 0) {          # server closed the connection
                    $reading = 0;
                    last;
                }
                $resp .= $chunk;
            }
        }
    }

    close $sock;
    return ($resp, $head_req);
}

# ===========================================================================
# Parsing and checking responses
# ===========================================================================

# Returns (response, raw header text, bytes left over after this response).
# Bodies are delimited by chunked encoding or Content-Length; otherwise the
# body is everything up to connection close.
sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;

    my $raw_headers = '';
    $raw_headers = $1 if $raw =~ /(.*?\r\n)\r\n/s;

    my $res = Test::Nginx::Socket::Response->parse($raw);
    my $code = $res->code;
    if ($code && $code !~ /^\d+$/) {
        undef $code;
        $res->code(undef);
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my $left;

    if (defined $enc && $enc eq 'chunked') {
        my $body = $res->content;
        $body = '' unless defined $body;
        my $decoded = '';
        pos($body) = 0;
        while (1) {
            if ($body =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                if (length($body) - pos($body) < $size) {
                    Test::More->builder->no_ending(1);
                    Test::More::fail("$name - invalid chunked data received "
                        . "(not enought octets for the data section)");
                    return;
                }
                $decoded .= substr($body, pos($body), $size);
                pos($body) += $size;
                if ($body !~ /\G\r\n/gc) {
                    Test::More->builder->no_ending(1);
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(expected CRLF).");
                    return;
                }
            } elsif ($body =~ /\G(.+)/gcs) {
                Test::More->builder->no_ending(1);
                Test::More::fail("$name - invalid chunked body received: $1");
                return;
            } else {
                Test::More->builder->no_ending(1);
                Test::More::fail("$name - no last chunk found - $body");
                return;
            }
        }
        $res->content($decoded);

    } elsif (defined $len && $len ne '' && $len >= 0) {
        my $body = $res->content;
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n" unless $head_req;
        } elsif (length $body > $len) {
            $left = substr $body, $len;
            $res->content(substr $body, 0, $len);
        }
    }

    return ($res, $raw_headers, $left);
}

# For blocks sending several requests every expectation must be an array
# with one entry per request; a single request takes element 0 of an array.
sub get_indexed_value ($$$$) {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value && ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    if (ref $value && ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.")
            if $idx != 0;
        return $value->[0];
    }
    return $value;
}

sub check_error_code {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = get_indexed_value($name, $block->error_code_like, $idx,
                                    $need_array);
        Test::More::like($got, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($got, get_indexed_value($name, $block->error_code,
                                               $idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($got, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->raw_response_headers_like) {
        my $pat = get_indexed_value($name, $block->raw_response_headers_like,
                                    $idx, $need_array);
        Test::More::like($raw_headers, qr/$pat/s,
                         "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = get_indexed_value($name,
                                    $block->raw_response_headers_unlike,
                                    $idx, $need_array);
        Test::More::unlike($raw_headers, qr/$pat/s,
                           "$name - raw resp headers unlike");
    }
}

# --- response_headers: "Name: value" must equal exactly (a missing header
# compares as ""); "!Name" must not appear in the raw header text.
# --- response_headers_like: the value must match ^pattern$.
# One TAP test per listed header.
sub check_response_headers {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    my $sp  = $Test::Nginx::Util::ServerPort;
    my $spc = $Test::Nginx::Util::ServerPortForClient;

    if (defined $block->response_headers) {
        my $h = parse_headers(get_indexed_value(
                    $name, $block->response_headers, $idx, $need_array));
        for my $key (keys %$h) {
            my $val = $h->{$key};
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/m,
                    "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$sp/g;
            $val =~ s/\$ServerPortForClient\b/$spc/g;
            my $actual = $res ? $res->header($key) : undef;
            $actual = '' unless defined $actual;
            Test::More::is($actual, $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $h = parse_headers(get_indexed_value(
                    $name, $block->response_headers_like, $idx, $need_array));
        for my $key (keys %$h) {
            my $pat = $h->{$key};
            $pat = '' unless defined $pat;
            my $actual = $res ? $res->header($key) : undef;
            $actual = '' unless defined $actual;
            Test::More::like($actual, qr/^$pat$/,
                             "$name - header $key like ok");
        }
    }
}

my %BODY_FILTERS = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
    length   => sub { length $_[0] },
);

sub _run_body_filter {
    my ($block, $filter, $content) = @_;
    my $name = $block->name;
    return $filter->($content) if ref $filter eq 'CODE';
    bail_out("$name - the --- response_body_filters section only supports "
             . "subroutine reference values and string values") if ref $filter;
    my $code = $BODY_FILTERS{$filter}
        or bail_out("$name - unknown filter, \"$filter\", specified in the "
                    . "--- response_body_filters section");
    return $code->($content);
}

# --- response_body_filters: applied to the actual body before comparing.
sub transform_response_body {
    my ($block, $res, $idx) = @_;
    return unless defined $res;
    my $content = $res->content;
    return unless defined $content;
    my $filters = $block->response_body_filters;
    return unless defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }

    my $f = $filters;
    if (ref $filters->[0] eq 'ARRAY') {
        for (@$filters) {
            bail_out("$name - the --- response_body_filters two-dimensional "
                     . "array only be like [[uc], [lc]] not [[uc], lc]")
                if ref $_ ne 'ARRAY';
        }
        $f = $filters->[$idx];
        bail_out("$name - the ---response_body_filters two-dimensional array "
                 . "unmatch the specified request($idx)") unless defined $f;
    }

    $content = _run_body_filter($block, $_, $content)
        for ref $f eq 'ARRAY' ? @$f : ($f);
    $res->content($content);
}

sub check_response_body {
    my ($block, $res, $idx, $repeated_idx, $need_array) = @_;
    my $name = $block->name;
    my $sp  = $Test::Nginx::Util::ServerPort;
    my $spc = $Test::Nginx::Util::ServerPortForClient;

    my $content = $res ? $res->content : undef;
    if (defined $content) {
        # Leftovers of very old LWP-based requests; kept for parity.
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gm;
        $content =~ s/^Connection: TE, close\r\n//gm;
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        my $expected;
        if ($block->response_body_eval) {
            Test::More::diag("$name - response_body_eval is DEPRECATED. Use "
                             . "response_body eval instead.");
            $expected = eval get_indexed_value($name,
                              $block->response_body_eval, $idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body, $idx,
                                          $need_array);
        }

        if ($block->charset) {
            require Encode;
            Encode::from_to($expected, 'UTF-8', $block->charset);
        }

        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$sp/g;
            $expected =~ s/\$ServerPortForClient\b/$spc/g;
        }

        my $desc = "$name - response_body - ";
        if (ref $expected) {
            Test::More::like($content, $expected, $desc
                . "like (repeated req $repeated_idx, req $idx)");
        } else {
            is_str($content, $expected, $desc
                . "response is expected (repeated req $repeated_idx, "
                . "req $idx)");
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my ($pats, $type) = defined $block->response_body_like
            ? ($block->response_body_like, 'like')
            : ($block->response_body_unlike, 'unlike');
        my $pat = get_indexed_value($name, $pats, $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$sp/g;
        $pat =~ s/\$ServerPortForClient\b/$spc/g;
        my $summary = trim($content);
        $summary = '' unless defined $summary;
        my $cmp = $type eq 'like' ? \&Test::More::like : \&Test::More::unlike;
        $cmp->($content, qr/$pat/s,
               "$name - response_body_$type - response is expected "
               . "($summary)");
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $idx, $repeated_idx,
                 0);
    }
}

sub fmt_str ($) {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# A section value of patterns: text = one substring per line, qr// = one
# regex, array = several (each a substring or a qr//).
sub _pattern_list {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub _line_matches {
    my ($line, $pat) = @_;
    return (ref $pat && $line =~ /$pat/) || $line =~ /\Q$pat\E/;
}

sub _value_mentions {
    my ($val, $needle) = @_;
    return $val =~ /\Q$needle\E/ if !ref $val || ref $val eq 'Regexp';
    if (ref $val eq 'ARRAY') {
        for (@$val) { return 1 if _value_mentions($_, $needle) }
    }
    return 0;
}

# --- grep_error_log / grep_error_log_out, --- error_log, --- no_error_log.
# Only the error.log lines written since the previous check of this block
# are looked at (unless check_accum_error_log()).
#   error_log:    one passing test per pattern found, one failing test per
#                 pattern not found in any line
#   no_error_log: one failing test per matching line, one passing test per
#                 pattern that matched nothing
sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $repeated_idx, $need_array) = @_;
    my $name = $block->name;
    my $lines;
    my %warn_on = ('[alert]' => 1, '[crit]' => 1, '[emerg]' => 1);

    my $grep_pat;
    if (defined(my $g = $block->grep_error_log)) {
        $grep_pat = ref $g && ref $g eq 'ARRAY' ? $g->[$repeated_idx] : $g;
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- "
                 . "grep_error_log_out is defined");
    }

    if (defined $grep_pat) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- "
                 . "grep_error_log is defined") unless defined $expected;
        $expected = $expected->[$repeated_idx]
            if ref $expected && ref $expected eq 'ARRAY';

        $lines ||= error_log_data();
        my $out = '';
        for my $line (@{ $lines || [] }) {
            my $m;
            if (ref $grep_pat && $line =~ /$grep_pat/) {
                $m = $&;
            } elsif ($line =~ /\Q$grep_pat\E/) {
                $m = $&;
            }
            $out .= "$m\n" if defined $m && $m !~ /\n/;
        }
        my $desc = "$name - grep_error_log_out (req $repeated_idx)";
        if (ref $expected eq 'Regexp') {
            Test::More::like($out, $expected, $desc);
        } else {
            is_str($out, $expected, $desc);
        }
    }

    if (defined $block->error_log) {
        my $pats = $block->error_log;
        for my $lvl (keys %warn_on) {
            (my $needle = $lvl) =~ s/\]$//;
            delete $warn_on{$lvl} if _value_mentions($pats, $needle);
        }
        my @p = @{ _pattern_list($pats) };
        $lines ||= error_log_data();
        for my $line (@{ $lines || [] }) {
            for my $pat (@p) {
                next unless defined $pat;
                if (_line_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line "
                                     . "in error.log (req $repeated_idx)");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @p) {
            Test::More::fail("$name - pattern \"$pat\" should match a line in "
                             . "error.log (req $repeated_idx)");
        }
    }

    if (defined $block->no_error_log) {
        my $pats = $block->no_error_log;
        for my $lvl (keys %warn_on) {
            (my $needle = $lvl) =~ s/\]$//;
            delete $warn_on{$lvl} if _value_mentions($pats, $needle);
        }
        my @p = @{ _pattern_list($pats) };
        my %found;
        $lines ||= error_log_data();
        my @l = @{ $lines || [] };
        for my $i (0 .. $#l) {
            for my $pat (@p) {
                next unless defined $pat;
                next unless _line_matches($l[$i], $pat);
                # A second hit of the same pattern adds a test; do not let
                # Test::Builder complain about the count on top of the failure.
                Test::More->builder->no_ending(1) if $found{$pat}++;
                my $end = $i + 10 < $#l ? $i + 10 : $#l;
                my $more = join '', @l[$i + 1 .. $end - 1];
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                    . "\" should not match any line in error.log but matches "
                    . "line \"" . fmt_str($l[$i]) . "\" (req $repeated_idx)\n"
                    . $more);
            }
        }
        for my $pat (@p) {
            next if !defined $pat || $found{$pat};
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in error.log "
                             . "(req $repeated_idx)");
        }
    }

    # Unexpected serious messages are shown (but are not failures).
    if (%warn_on) {
        $lines ||= error_log_data();
        for my $line (@{ $lines || [] }) {
            for my $lvl (keys %warn_on) {
                warn "WARNING: $name - " . fmt_str($line) . "\n"
                    if index($line, $lvl) >= 0;
            }
        }
    }

    for my $line (@{ $lines || [] }) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            Test::More->builder->no_ending(1);
            (my $l = $line) =~ s/\n\z//;
            Test::More::fail("$name - $l\n");
        }
    }
}

# --- access_log / --- no_access_log: same rules, against access.log.
sub check_access_log {
    my ($block, $repeated_idx) = @_;
    my $name = $block->name;
    my $lines;

    if (defined $block->access_log) {
        my @p = @{ _pattern_list($block->access_log) };
        $lines ||= access_log_data();
        for my $line (@{ $lines || [] }) {
            for my $pat (@p) {
                next unless defined $pat;
                if (_line_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line "
                                     . "in access.log (req $repeated_idx)");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @p) {
            Test::More::fail("$name - pattern \"$pat\" should match a line in "
                             . "access.log (req $repeated_idx)");
        }
    }

    if (defined $block->no_access_log) {
        my @p = @{ _pattern_list($block->no_access_log) };
        my %found;
        $lines ||= access_log_data();
        for my $line (@{ $lines || [] }) {
            for my $pat (@p) {
                next unless defined $pat && _line_matches($line, $pat);
                Test::More->builder->no_ending(1) if $found{$pat}++;
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                    . "\" should not match any line in access.log but matches "
                    . "line \"" . fmt_str($line) . "\" (req $repeated_idx)");
            }
        }
        for my $pat (@p) {
            next if !defined $pat || $found{$pat};
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in access.log "
                             . "(req $repeated_idx)");
        }
    }
}

# ===========================================================================
# One repetition of one block
# ===========================================================================

sub run_test_helper ($$$) {
    my ($block, $dry_run, $repeated_idx) = @_;
    my $name = $block->name;

    my $reqs = get_req_from_block($block);
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = parse_time($block->timeout);
    $timeout = timeout() unless defined $timeout;

    my ($res, $need_array, $n);
    my $idx = 0;

    for my $one (@$reqs) {
        my ($raw, $head_req) = send_request($one,
                                            $block->raw_request_middle_delay,
                                            $timeout, $block);

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @$reqs > 1;
        }

        # With pipelined requests all responses arrive on one connection:
        # parse them one after the other from the same buffer.
        while (1) {
            $raw = '' unless defined $raw;
            my ($raw_headers, $left);

            if (!defined $block->ignore_response) {
                if (defined $block->http09) {
                    $res = Test::Nginx::Socket::Response->parse('');
                    $res->code(200);
                    $res->content($raw);
                    $raw_headers = '';
                } else {
                    ($res, $raw_headers, $left)
                        = parse_response($name, $raw, $head_req);
                }
            }

            if (!$n) {
                if (defined $left && length $left) {
                    (my $show = $left)
                        =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/ge;
                    warn "WARNING: $name - unexpected extra bytes after last "
                         . "chunk in response: \"$show\"\n";
                }
            } else {
                $raw = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $idx,
                                           $need_array);
                check_response_headers($block, $res, $raw_headers, $idx,
                                       $need_array);
                transform_response_body($block, $res, $idx);
                check_response_body($block, $res, $idx, $repeated_idx,
                                    $need_array);
            }

            # Between requests of a multi-request block the logs are checked
            # too (each check sees only the lines logged since the last one).
            if ($n || $idx < @$reqs - 1) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $res, $dry_run, $repeated_idx,
                                $need_array);
                check_access_log($block, $repeated_idx)
                    unless defined $block->ignore_response;
            }

            $idx++;
            last unless $n;
        }
    }

    sleep $block->wait if $block->wait;

    check_error_log($block, $res, $dry_run, $repeated_idx, $need_array);
    check_access_log($block, $repeated_idx)
        unless defined $block->ignore_response;
}

$Test::Nginx::Util::RunTestHelper = \&run_test_helper;
$Test::Nginx::Util::CheckErrorLog = \&check_error_log;

1;
