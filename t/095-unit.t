# The C unit tests in t/unit/: each is compiled with cc and run, and must
# end with "N passed, 0 failed".  Plain Test::More: no nginx is needed.
#
#   prove t/095-unit.t
#
# CC overrides the compiler.  A variant built with
# -fsanitize=address,undefined runs too when the compiler and the machine
# support it, and is skipped otherwise.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Spec;
use FindBin;

my $root = File::Spec->catdir($FindBin::Bin, File::Spec->updir);
my $cc = $ENV{CC} || 'cc';
my $dir = tempdir('qwen-unit-XXXXXX', TMPDIR => 1, CLEANUP => 1);

plan skip_all => "no C compiler ($cc)" unless run_ok("$cc --version");

my @units = (
    {
        name => 'usage',
        srcs => ['t/unit/usage_test.c', 'src/ngx_http_qwen_usage.c'],
    },
    {
        name => 'edit',
        srcs => ['t/unit/edit_test.c', 'src/ngx_http_qwen_edit.c',
                 'src/ngx_http_qwen_json.c'],
    },
    {
        name => 'json',
        srcs => ['t/unit/json_test.c', 'src/ngx_http_qwen_json.c'],
    },
    {
        name => 'sha256',
        srcs => ['t/unit/sha256_test.c', 'src/ngx_http_qwen_sha256.c'],
    },
);

my $san = '-fsanitize=address,undefined -fno-sanitize-recover=all';
my $san_ok = sanitizers_work();

for my $u (@units) {
    my @srcs = map { File::Spec->catfile($root, $_) } @{ $u->{srcs} };
    my $inc = File::Spec->catdir($root, 'src');

    check($u->{name}, "-O2 -Wall -Wextra", $inc, @srcs);

    SKIP: {
        skip "$cc cannot build and run with $san here", 3 unless $san_ok;
        check("$u->{name} (sanitizers)", "-O1 -g $san", $inc, @srcs);
    }
}

done_testing();


# builds and runs one unit test: three tests
sub check {
    my ($name, $flags, $inc, @srcs) = @_;

    (my $bin = "$dir/$name") =~ s/[^\w\/.-]+/_/g;

    my ($rc, $out) = run("$cc $flags -I$inc @srcs -o $bin");
    ok($rc == 0, "$name: compiles") or diag($out);
    diag($out) if $rc == 0 && $out =~ /\S/;

    SKIP: {
        skip "$name: not built", 2 if $rc != 0;

        local $ENV{UBSAN_OPTIONS} = 'halt_on_error=1:print_stacktrace=1';

        ($rc, $out) = run($bin);
        my @lines = split /\n/, $out;
        my $last = @lines ? $lines[-1] : '';

        ok($rc == 0, "$name: exits 0") or diag(tail($out));
        like($last, qr/^\d+ passed, 0 failed$/, "$name: nothing failed")
            or diag(tail($out));
        note($last);
    }
}


# whether a trivial program builds and runs with the sanitizers
sub sanitizers_work {
    my $src = "$dir/probe.c";

    open my $fh, '>', $src or return 0;
    print $fh "#include <stdlib.h>\n"
        . "int main(void) { char *p = malloc(4); p[0] = 0; free(p);"
        . " return 0; }\n";
    close $fh;

    return run_ok("$cc -O1 $san $src -o $dir/probe") && run_ok("$dir/probe");
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


sub tail {
    my @lines = split /\n/, shift;
    splice @lines, 0, @lines - 40 if @lines > 40;
    return join("\n", @lines);
}
