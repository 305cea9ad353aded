# Self-test of the compat runner: file-level settings made with the exported
# functions (workers, master_on, log_level, worker_connections, env_to_nginx,
# config_preamble, no_root_location, server_name, check_accum_error_log,
# timeout) and the shape of the generated nginx.conf.

use Test::Nginx::Socket;

repeat_each(2);
workers(2);
master_on();
log_level('info');
worker_connections(100);
env_to_nginx('SELFTEST_ENV', 'SELFTEST_ENV2=a b');
config_preamble("        add_header X-Preamble yes;\n");
no_root_location();
server_name('selftest.local');
check_accum_error_log();
timeout(2);

plan tests => repeat_each() * (3 + 3 + 2 + 2) + 12;

no_shuffle();
run_tests();

# nginx is still running here; it is stopped at exit.  Check the generated
# configuration file.
my $conf = do {
    open my $fh, '<', $Test::Nginx::Util::ConfFile or die $!;
    local $/;
    <$fh>;
};
like($conf, qr/^worker_processes\s+2;$/m, 'worker_processes');
my $daemon = $ENV{TEST_NGINX_USE_VALGRIND} ? 'off' : 'on';    # foreground under valgrind
like($conf, qr/^daemon $daemon;$/m, 'daemon');
like($conf, qr/^master_process on;$/m, 'master_process');
like($conf, qr/^error_log \S+\/logs\/error\.log info;$/m, 'error_log level');
like($conf, qr/^\s+worker_connections\s+100;$/m, 'worker_connections');
like($conf, qr/^\s+accept_mutex off;$/m, 'accept_mutex off');
like($conf, qr/^env SELFTEST_ENV;$/m, 'env_to_nginx plain');
like($conf, qr/^env 'SELFTEST_ENV2=a b';$/m, 'env_to_nginx with a space');
like($conf, qr/^\s+listen\s+\d+;$/m, 'listen');
like($conf, qr/^\s+server_name\s+'selftest\.local';$/m, 'server_name');
like($conf, qr/^\s+client_max_body_size 30M;$/m, 'client_max_body_size');
unlike($conf, qr/^\s+location \/ \{/m, 'no_root_location');

__DATA__

=== TEST 1: settings visible from inside nginx
--- config
    location = /t {
        return 200 "host=$http_host name=$server_name\n";
    }
--- request
GET /t
--- response_headers
X-Preamble: yes
--- response_body
host=selftest.local name=selftest.local



=== TEST 2: log_level('info'): no debug lines
--- config
    location = /t {
        return 200 "info only\n";
    }
--- request
GET /t
--- response_body
info only
--- no_error_log
[debug]



=== TEST 3: no_root_location(): the block may define "location /" itself
--- config
    location / {
        return 200 "own root location\n";
    }
--- request
GET /anything
--- response_body
own root location



=== TEST 4: check_accum_error_log(): later repetitions see earlier lines
--- config
    location /f/ {
        root html;
    }
--- request
GET /f/missing.txt
--- error_code: 404
--- grep_error_log: No such file
--- grep_error_log_out eval
[
    "No such file\n",
    "No such file\nNo such file\n",
]
