# Self-test of the compat runner: HUP reload mode (use_hup(), same as
# TEST_NGINX_USE_HUP=1).  nginx is started once (with the master process
# forced on) and every later block is loaded with a HUP signal, so the
# master process - and anything kept in shared memory - survives.

use Test::Nginx::Socket;

use_hup();
repeat_each(2);

# Remember the master pid seen before each block after the first one.
my @pids;
add_block_preprocessor(sub {
    my $pidfile = $Test::Nginx::Util::PidFile;
    if (-f $pidfile) {
        open my $fh, '<', $pidfile or die $!;
        my $pid = <$fh>;
        chomp $pid;
        push @pids, $pid;
    }
});

plan tests => repeat_each() * (2 + 2 + 2 + 2) + 2;

no_shuffle();
run_tests();

my %distinct = map { $_ => 1 } @pids;
is(scalar @pids, 3, 'a master pid was seen before blocks 2 to 4');
is(scalar keys %distinct, 1, 'the same master served every block');

__DATA__

=== TEST 1: first configuration
--- config
    location = /t {
        return 200 "generation one\n";
    }
--- request
GET /t
--- response_body
generation one



=== TEST 2: reloaded configuration is live
--- config
    location = /t {
        return 200 "generation two\n";
    }
--- request
GET /t
--- response_body
generation two



=== TEST 3: user files and logs after a reload
--- config
--- user_files
>>> after-hup.txt
fresh file
--- request
GET /missing-after-hup.txt
--- error_code: 404
--- error_log
missing-after-hup.txt" failed



=== TEST 4: user file written for the reloaded configuration
--- config
    location = /t {
        return 200 "generation four\n";
    }
--- user_files
>>> x.txt
x
--- request
GET /x.txt
--- response_body
x
