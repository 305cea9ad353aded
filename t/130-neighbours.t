# The gateway among nginx's own request-path modules. It runs in the
# PRECONTENT phase, after the access phase: auth_basic, auth_request,
# access_by_lua and allow/deny see the client's request as it came (its own
# Authorization), and a client they refuse costs no body read. Subrequests
# (auth_request, mirror) never carry the region key.
#
# "The body was not read" is shown by two marks that reading it leaves in
# the error log at info level: the gateway's "qwen: transformed model" line,
# and nginx's "a client request body is buffered to a temporary file" for a
# body larger than client_body_buffer_size (TEST 1 shows both appear when
# the body is read).
#
# The servers standing in for an auth service and a mirror target log at
# debug level, so the error log lists every header they received ("http
# header: ..."); the rest runs at info, where nginx itself prints no
# request headers, so "no line mentions sk-mock" covers every header those
# servers got as well as every log line. (This needs an nginx built
# --with-debug, as Debian's is; without it those blocks fail, they do not
# pass unseen.)
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_long_string();
no_shuffle();

our $LUA_MODULES = '/usr/lib/nginx/modules';

# Debian's lua module is built for Debian's nginx: another nginx (make
# matrix, a build of your own) refuses to load it ("module ... version
# 1022001 instead of ..."). TEST 8 and 9 run where the nginx under test
# loads it, checked once with "nginx -t" on a configuration of two lines.
our $LUA_LOADS = do {
    my $ok = 0;
    if (-f "$LUA_MODULES/ngx_http_lua_module.so"
        && -f "$LUA_MODULES/ndk_http_module.so")
    {
        require File::Temp;
        my $dir = File::Temp::tempdir(CLEANUP => 1);
        mkdir "$dir/logs";
        if (open my $fh, '>', "$dir/lua.conf") {
            print $fh "load_module $LUA_MODULES/ndk_http_module.so;\n"
                    . "load_module $LUA_MODULES/ngx_http_lua_module.so;\n"
                    . "error_log logs/error.log;\nevents {}\n";
            close $fh;
            my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';
            $ok = system("'$bin' -p '$dir/' -c '$dir/lua.conf' -t "
                         . ">/dev/null 2>&1") == 0;
        }
    }
    $ok;
};

# 8 KB of JSON: more than the client_body_buffer_size 1k set below, so
# reading it writes a temporary file
our $BIG_BODY = '{"model":"qwen/qwen-max","messages":[{"role":"user","content":"'
                . ('x' x 8000) . '"}]}';

add_block_preprocessor(sub {
    my $block = shift;

    my $extra = $block->http_config;
    $extra = '' unless defined $extra;

    $block->set_value("http_config", <<'_EOC_' . $extra);
    upstream dashscope_mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    qwen_models_file $TEST_NGINX_REPO/conf-examples/qwen-models.json;
    qwen_region singapore url=http://dashscope_mock key=sk-mock;
_EOC_

    if (!defined $block->log_level) {
        $block->set_value("log_level", "info");
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\nsk-mock\n");
    }
});

run_tests();

__DATA__

=== TEST 1: auth_basic: good credentials pass, the upstream gets the region key, not them
--- user_files
>>> htpasswd
alice:{PLAIN}wonderland
--- config
    location /v1/chat/completions {
        auth_basic "gateway";
        auth_basic_user_file ../html/htpasswd;
        client_body_buffer_size 1k;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Basic YWxpY2U6d29uZGVybGFuZA==
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . $main::BIG_BODY
--- response_body_like eval
qr/\A(?!.*YWxpY2U6)(?!.*Basic)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s
--- error_log
qwen: transformed model "qwen/qwen-max" to "qwen-max"
a client request body is buffered to a temporary file
--- no_error_log
sk-mock
[error]
[alert]
[crit]



=== TEST 2: auth_basic: a wrong password is refused by nginx, the body is never read
--- user_files
>>> htpasswd
alice:{PLAIN}wonderland
--- config
    location /v1/chat/completions {
        auth_basic "gateway";
        auth_basic_user_file ../html/htpasswd;
        client_body_buffer_size 1k;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Basic YWxpY2U6d3Jvbmc=
--- request eval
"POST /v1/chat/completions\n" . $main::BIG_BODY
--- error_code: 401
--- response_headers
WWW-Authenticate: Basic realm="gateway"
Content-Type: text/html
--- error_log
user "alice": password mismatch
--- no_error_log
qwen: transformed model
a client request body is buffered to a temporary file
sk-mock
[alert]
[crit]



=== TEST 3: auth_request: the auth service sees the client's own Authorization, the upstream the region key
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        error_log logs/error.log debug;

        location = /check {
            if ($http_authorization = "Bearer client-token") {
                return 204;
            }
            return 403;
        }
    }
--- config
    location /v1/chat/completions {
        auth_request /_auth;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location = /_auth {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/check;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
    }
--- more_headers
Authorization: Bearer client-token
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s
--- error_log
http header: "Authorization: Bearer client-token"
qwen: transformed model "qwen/qwen-max" to "qwen-max"



=== TEST 4: auth_request: a 403 from the auth service refuses before the body is read
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        error_log logs/error.log debug;

        location = /check {
            if ($http_authorization = "Bearer client-token") {
                return 204;
            }
            return 403;
        }
    }
--- config
    location /v1/chat/completions {
        auth_request /_auth;
        client_body_buffer_size 1k;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location = /_auth {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/check;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
    }
--- more_headers
Authorization: Bearer someone-else
--- request eval
"POST /v1/chat/completions\n" . $main::BIG_BODY
--- error_code: 403
--- response_headers
Content-Type: text/html
--- error_log
http header: "Authorization: Bearer someone-else"
--- no_error_log
qwen: transformed model
a client request body is buffered to a temporary file
sk-mock
[error]
[alert]
[crit]



=== TEST 5: auth_request: $qwen_upstream_authorization is empty in the auth subrequest
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        error_log logs/error.log debug;

        location = /check {
            if ($http_x_token = "t1") {
                return 204;
            }
            return 403;
        }
    }
--- config
    location /v1/chat/completions {
        auth_request /_auth;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location = /_auth {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/check;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header X-Upstream-Key $qwen_upstream_authorization;
    }
--- more_headers
Authorization: Bearer client-token
X-Token: t1
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s
--- error_log
http header: "X-Token: t1"
--- no_error_log
http header: "Authorization
http header: "X-Upstream-Key
sk-mock
[error]
[alert]
[crit]



=== TEST 6: mirror: the mirror target gets the client's headers and no region key anywhere
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        error_log logs/error.log debug;

        location / {
            return 200 "mirrored\n";
        }
    }
--- config
    location /v1/chat/completions {
        mirror /_mirror;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location = /_mirror {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/mirror;
    }
--- more_headers
Authorization: Bearer client-token
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s
--- error_log
http header: "Authorization: Bearer client-token"
http header: "X-Mock-Echo: request"



=== TEST 7: mirror: $qwen_upstream_authorization is empty in the mirror subrequest
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        error_log logs/error.log debug;

        location / {
            return 200 "mirrored\n";
        }
    }
--- config
    proxy_set_header Authorization $qwen_upstream_authorization;

    location /v1/chat/completions {
        mirror /_mirror;
        qwen_gateway on;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }

    location = /_mirror {
        internal;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header X-Upstream-Key $qwen_upstream_authorization;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/mirror;
    }
--- more_headers
Authorization: Bearer client-token
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s
--- error_log
http header: "X-Mock-Echo: request"
--- no_error_log
http header: "Authorization
http header: "X-Upstream-Key
sk-mock
[error]
[alert]
[crit]



=== TEST 8: access_by_lua sees the client's own Authorization; the upstream gets the region key
--- skip_eval: 7: !$main::LUA_LOADS
--- main_config
    load_module /usr/lib/nginx/modules/ndk_http_module.so;
    load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
--- config
    location /v1/chat/completions {
        access_by_lua_block {
            local auth = ngx.var.http_authorization
            ngx.log(ngx.INFO, "lua saw authorization [", auth, "]")
            if auth ~= "Bearer client-token" then
                return ngx.exit(ngx.HTTP_FORBIDDEN)
            end
        }
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer client-token
X-Mock-Echo: request
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body_like eval
qr/\A(?!.*client-token)\{"method":"POST",.*"authorization":"Bearer sk-mock"/s
--- error_log
lua saw authorization [Bearer client-token]



=== TEST 9: access_by_lua refuses with 403 before the body is read
--- skip_eval: 8: !$main::LUA_LOADS
--- main_config
    load_module /usr/lib/nginx/modules/ndk_http_module.so;
    load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
--- config
    location /v1/chat/completions {
        client_body_buffer_size 1k;
        access_by_lua_block {
            local auth = ngx.var.http_authorization
            ngx.log(ngx.INFO, "lua saw authorization [", auth, "]")
            if auth ~= "Bearer client-token" then
                return ngx.exit(ngx.HTTP_FORBIDDEN)
            end
        }
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- more_headers
Authorization: Bearer someone-else
--- request eval
"POST /v1/chat/completions\n" . $main::BIG_BODY
--- error_code: 403
--- error_log
lua saw authorization [Bearer someone-else]
--- no_error_log
qwen: transformed model
a client request body is buffered to a temporary file
sk-mock
[error]
[alert]
[crit]



=== TEST 10: deny in a gateway location: nginx's 403, the body is never read
--- config
    location /v1/chat/completions {
        deny all;
        client_body_buffer_size 1k;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . $main::BIG_BODY
--- error_code: 403
--- response_headers
Content-Type: text/html
--- error_log
access forbidden by rule
--- no_error_log
qwen: transformed model
a client request body is buffered to a temporary file
sk-mock
[alert]
[crit]



=== TEST 11: allow in a gateway location lets the client through to the upstream
--- config
    location /v1/chat/completions {
        allow 127.0.0.1;
        deny all;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}'
--- response_body_like eval
qr/"model":"qwen-max",.*"content":"Mock reply from qwen-max\."/s
--- error_log
qwen: transformed model "qwen/qwen-max" to "qwen-max"



=== TEST 12: limit_req counts a gateway request like any other and refuses the next one
# one zone entry per connection ($connection), so that each repetition of
# the block starts afresh; the two requests share a keep-alive connection
--- http_config
    limit_req_zone $connection zone=per_connection:1m rate=1r/m;
--- config
    location /v1/chat/completions {
        limit_req zone=per_connection;
        limit_req_status 429;
        limit_req_log_level info;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- pipelined_requests eval
["POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}',
 "POST /v1/chat/completions\n" . '{"model":"qwen/qwen-max","messages":[]}']
--- error_code eval
[200, 429]
--- response_body_like eval
[qr/"content":"Mock reply from qwen-max\."/, qr/429 Too Many Requests/]



=== TEST 13: limit_req refuses a gateway request before its body is read
--- http_config
    limit_req_zone $connection zone=per_connection:1m rate=1r/m;
--- user_files
>>> warm-up.txt
counted
--- config
    # a static file: "return" would answer before limit_req runs
    location = /warm-up.txt {
        limit_req zone=per_connection;
    }

    location /v1/chat/completions {
        limit_req zone=per_connection;
        limit_req_status 429;
        limit_req_log_level info;
        client_body_buffer_size 1k;
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_pass $qwen_upstream/compatible-mode/v1/chat/completions;
    }
--- pipelined_requests eval
["GET /warm-up.txt", "POST /v1/chat/completions\n" . $main::BIG_BODY]
--- error_code eval
[200, 429]
--- response_body_like eval
[qr/\Acounted\n\z/, qr/429 Too Many Requests/]
--- no_error_log
qwen: transformed model
a client request body is buffered to a temporary file
[error]
[alert]
[crit]
