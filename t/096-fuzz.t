# The libFuzzer targets in fuzz/: builds both (with fuzz/Makefile, into a
# temporary directory), replays the seed corpora and the reproducers in
# fuzz/crashes/, then fuzzes each for a short while, both at once.  Plain
# Test::More: no nginx is needed.
#
#   prove t/096-fuzz.t
#
# Skipped when clang cannot build a libFuzzer program (on Debian the
# fuzzer runtime is in libclang-rt-14-dev, pulled in by clang) or cJSON's
# headers are missing (libcjson-dev).  CLANG overrides the compiler,
# QWEN_FUZZ_SECONDS the time each fuzzer runs (20 s).

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Spec;
use File::Copy qw(copy);
use FindBin;

my $root = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin,
                                                   File::Spec->updir));
my $fuzz = File::Spec->catdir($root, 'fuzz');
my $clang = $ENV{CLANG} || 'clang';
my $seconds = $ENV{QWEN_FUZZ_SECONDS} || 20;
my $dir = tempdir('qwen-fuzz-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my @targets = qw(request usage);

plan skip_all => "no $clang" unless run_ok("$clang --version");
plan skip_all => "no make" unless run_ok("make --version");

my $why = probe();
plan skip_all => $why if $why;

# the build: both at once

my ($rc, $out) = run("make -s -j2 -C $fuzz OUT=$dir CLANG=$clang");
ok($rc == 0, 'the fuzzers build') or diag(tail($out));
BAIL_OUT('the fuzzers do not build') if $rc != 0;

# every seed and every crash reproducer once

for my $t (@targets) {
    my @files = (glob("$fuzz/corpus/$t/*"), glob("$fuzz/crashes/$t-*"));

    ($rc, $out) = run("$dir/${t}_fuzz -runs=0 @files");
    ok($rc == 0 && $out =~ /Executed .* in \d+ ms/,
       "$t: the seeds and the reproducers in fuzz/crashes/ pass ("
       . scalar(@files) . " inputs)")
        or diag(failure($out));
}

# fuzzing, both at once, on copies of the corpora

my %pid;

for my $t (@targets) {
    my $corpus = "$dir/corpus-$t";
    mkdir $corpus or die "mkdir $corpus: $!";
    copy($_, $corpus) or die "copy $_: $!" for glob("$fuzz/corpus/$t/*");

    my @cmd = ("$dir/${t}_fuzz", $corpus, "-max_total_time=$seconds",
               '-runs=5000000', '-rss_limit_mb=2048', '-timeout=10',
               '-print_final_stats=1', "-dict=$dir/$t.dict",
               "-artifact_prefix=$dir/$t-");

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>', "$dir/$t.log" or die;
        open STDERR, '>&', \*STDOUT or die;
        exec @cmd or die "exec: $!";
    }

    $pid{$t} = $pid;
}

for my $t (@targets) {
    waitpid($pid{$t}, 0);
    my $status = $?;

    my $log = slurp("$dir/$t.log");

    ok($status == 0, "$t: the fuzzer exits 0") or diag(failure($log));
    like($log, qr/^Done \d+ runs in \d+ second/m, "$t: libFuzzer is done");
    unlike($log, qr/ERROR: |deadly signal|Test unit written/,
           "$t: no crash") or diag(failure($log));

    my ($done) = $log =~ /^(#\d+\s+DONE\b.*)$/m;
    note("$t: " . ($done // 'no stats line'));
}

done_testing();


# why libFuzzer programs cannot be built and run here, or ''

sub probe {
    my $src = "$dir/probe.c";

    open my $fh, '>', $src or die "$src: $!";
    print $fh <<'_EOC_';
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    cJSON_Delete(cJSON_ParseWithLength((const char *) d, n));
    return 0;
}
_EOC_
    close $fh;

    my ($rc, $out) = run("$clang -fsanitize=fuzzer,address,undefined "
                         . "$src -lcjson -o $dir/probe");

    if ($rc != 0) {
        return "cJSON's headers or library are missing (libcjson-dev)"
            if $out =~ /cJSON\.h|-lcjson|cJSON_/;
        return "$clang cannot build with -fsanitize=fuzzer (on Debian: "
            . "libclang-rt-14-dev)";
    }

    ($rc, $out) = run("$dir/probe -runs=10");

    return "a libFuzzer program does not run here" if $rc != 0;

    return '';
}


sub run {
    my ($cmd) = @_;

    my $out = `$cmd 2>&1`;

    return ($? == 0 ? 0 : ($? >> 8) || 1, $out // '');
}


sub run_ok {
    my ($rc) = run(@_);
    return $rc == 0;
}


sub slurp {
    my ($file) = @_;

    open my $fh, '<', $file or return '';
    local $/;
    return <$fh> // '';
}


# what went wrong: the failed check, the sanitizer's report, the input
sub failure {
    my @lines = grep { !/^\s+#\d+ 0x/ } split /\n/, shift;
    my @keep = grep { /failed at line|ERROR|SUMMARY|runtime error|Running:|Test unit written|Base64|^0x/ } @lines;
    @keep = @lines[-30 .. -1] if !@keep && @lines > 30;
    @keep = @lines if !@keep;
    splice @keep, 0, @keep - 30 if @keep > 30;
    return join("\n", @keep);
}


sub tail {
    my @lines = split /\n/, shift;
    splice @lines, 0, @lines - 40 if @lines > 40;
    return join("\n", @lines);
}
