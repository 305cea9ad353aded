# Meta-test of the compat runner, mostly that wrong expectations really fail.
#
# Each t/compat-selftest/fixtures/*.tn file is a Test::Nginx test file with a
# known outcome (prove does not pick them up on its own because of the
# extension).  Its first line says what must happen:
#   # expect: fail=N   exits non-zero with exactly N "not ok" lines
#   # expect: bail     exits non-zero after a "Bail out!"
#   # expect: exit     exits non-zero (plan mismatch, compile error, ...)
#   # expect: pass=N   exits zero with exactly N "ok" lines (used for
#                      features whose diagnostics would clutter prove's
#                      output, like --- ONLY)
#
# This file uses plain Test::More; each fixture runs in its own perl process
# with the same Test::Nginx::Socket that this prove run would load.

use strict;
use warnings;
use Test::More;
use File::Basename qw(dirname);
use File::Spec;

my $dir = File::Spec->catdir(dirname(__FILE__), 'fixtures');
my @fixtures = sort glob("$dir/*.tn");

# Find (without loading it) the Test/Nginx/Socket.pm on our @INC.
my ($lib) = grep { -f "$_/Test/Nginx/Socket.pm" } @INC;
plan skip_all => 'Test::Nginx::Socket not found on @INC' unless $lib;
$lib = File::Spec->rel2abs($lib);

plan tests => 2 * @fixtures;

for my $file (@fixtures) {
    open my $fh, '<', $file or die "$file: $!";
    my $first = <$fh>;
    close $fh;
    my ($expect) = $first =~ /^# expect: (\S+)/
        or die "$file: missing '# expect:' line\n";

    my $out = `"$^X" -I"$lib" "$file" 2>&1`;
    my $status = $? >> 8;
    my $name = (File::Spec->splitpath($file))[2];

    if ($expect =~ /^pass=(\d+)$/) {
        my $want = $1;
        is($status, 0, "$name exits zero") or diag($out);
        my $ok = () = $out =~ /^ok \d+/mg;
        my $not_ok = () = $out =~ /^not ok /mg;
        is("$ok/$not_ok", "$want/0", "$name: $want passing tests")
            or diag($out);
        next;
    }

    isnt($status, 0, "$name exits non-zero")
        or diag($out);

    if ($expect =~ /^fail=(\d+)$/) {
        my $want = $1;
        my $got = () = $out =~ /^not ok \d+(?! # TODO)/mg;
        is($got, $want, "$name: $want failing tests") or diag($out);
    } elsif ($expect eq 'bail') {
        like($out, qr/^Bail out!/m, "$name bails out") or diag($out);
    } elsif ($expect eq 'exit') {
        unlike($out, qr/^Bail out!/m, "$name fails without bailing out")
            or diag($out);
    } else {
        die "$file: bad expectation '$expect'\n";
    }
}
