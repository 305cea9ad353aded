# The benchmark's setup, shared by run.sh and soak.sh: the canned mock
# upstream, the gateway (plain proxy_pass and the module), the paced mock.
# Sourced from the repository's top directory.

repo=$(pwd)
work=$repo/build/bench
dur=${BENCH_DURATION:-10s}
nginx=${QWEN_NGINX:-/usr/sbin/nginx}
so=${QWEN_MODULE:-$repo/build/ngx_http_qwen_module.so}
ncpu=$(nproc)
gw_cpu=$(( ncpu > 1 ? 1 : 0 ))
# how the mock frames a stream: "chunked" as DashScope does (an event
# stream's length is not known when it starts), or "length"
stream_framing=${BENCH_STREAM_FRAMING:-chunked}

# BENCH_FAILOVER=1: the module's chat location with failover on and a
# first-byte budget (a timer per request), on the happy path
failover_conf=
if [ -n "${BENCH_FAILOVER:-}" ]; then
    failover_conf="            qwen_failover on;
            qwen_first_byte_timeout 60s;"
fi

# BENCH_KEYS=1: the module's chat location with client keys on, the
# client's key with every limit and a budget, its team and the model with
# limits too (all far above what the bench reaches): the lookup, the
# admission and the settlement on every request
keys_http=
if [ -n "${BENCH_KEYS:-}" ]; then
    keys_http="    qwen_keys_file $work/gw/conf/keys.json;"
    failover_conf="$failover_conf
            qwen_keys on;"
fi

rm -rf "$work"
mkdir -p "$work"/{mock,gw}/{conf,logs,tmp}
python3 bench/gen.py "$work/data" >/dev/null

# the mock: canned answers as static files; a POST to a static file is a
# 405, which error_page turns into a GET of the answer.  A stream (asked
# with the X-Bench-Stream header, so that chat bodies are never read) is
# answered as DashScope does: with the usage-only chunk when the body asks
# for it ("stream_options":{"include_usage":true}, as the module and the
# bench's bodies write it), without otherwise; Lua reads the body to tell.
cat > "$work/mock/conf/nginx.conf" <<EOC
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
worker_cpu_affinity 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_max_body_size 0;
    keepalive_requests 1000000;
    client_body_temp_path $work/mock/tmp/body;
    proxy_temp_path $work/mock/tmp/proxy;
    init_by_lua_block {
        local function read(name)
            local f = assert(io.open("$work/data/" .. name, "rb"))
            local s = f:read("*a")
            f:close()
            return s
        end
        bench_sse = read("answer.sse")
        bench_sse_usage = read("answer-usage.sse")
        bench_sse_length = ("$stream_framing" == "length")
    }
    server {
        listen 127.0.0.1:19901 backlog=4096;
        root $work/data;
        location = /compatible-mode/v1/chat/completions {
            if (\$http_x_bench_error) {
                return 500 '{"error":{"message":"The service is down.","type":"server_error","param":null,"code":"InternalError"}}';
            }
            error_page 405 =200 /answer.json;
            if (\$http_x_bench_stream = "") {
                return 405;
            }
            client_body_buffer_size 64k;
            content_by_lua_block {
                ngx.req.read_body()
                local body = ngx.req.get_body_data() or ""
                local a = body:find('"include_usage":true', 1, true)
                          and bench_sse_usage or bench_sse
                ngx.header.content_type = "text/event-stream"
                if bench_sse_length then
                    ngx.header.content_length = #a
                end
                ngx.print(a)
            }
        }
        location = /answer.json {
            internal;
            default_type application/json;
        }
    }
}
EOC

if [ -n "${BENCH_KEYS:-}" ]; then
    cat > "$work/gw/conf/keys.json" <<EOK
{"teams": [{"id": "bench-team",
            "limits": {"rpm": 100000000, "tpm": 1000000000000,
                       "concurrency": 100000},
            "budget": {"usd": 1000000000, "period": "month"}}],
 "models": [{"model": "qwen-plus",
             "limits": {"rpm": 100000000, "tpm": 1000000000000}}],
 "keys": [{"id": "bench", "key": "sk-client", "team": "bench-team",
           "models": ["qwen-*"],
           "limits": {"rpm": 100000000, "tpm": 1000000000000,
                      "concurrency": 100000},
           "budget": {"usd": 1000000000, "period": "day"}}]}
EOK
fi

cat > "$work/gw/conf/nginx.conf" <<EOC
load_module $so;
worker_processes 1;
worker_cpu_affinity $( [ $gw_cpu = 1 ] && echo 10 || echo 1 );
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    keepalive_requests 1000000;
    # the bench's own temporary files, not the system's /var/lib/nginx
    client_body_temp_path $work/gw/tmp/body;
    proxy_temp_path $work/gw/tmp/proxy;

    upstream mock {
        server 127.0.0.1:19901;
        keepalive 128;
    }

    upstream paced {
        server 127.0.0.1:19902;
        keepalive 128;
    }

    qwen_models_file $repo/conf-examples/qwen-models.json;
    qwen_region bench url=http://mock key=sk-bench;
    qwen_region paced url=http://paced key=sk-mock;
    qwen_metrics_zone qwen 4m;
$keys_http

    # the floor: nginx's own proxy_pass, same keepalive and buffering
    server {
        listen 127.0.0.1:19911 backlog=4096;
        location /v1/ {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://mock/compatible-mode\$uri;
        }
        location /paced/ {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_pass http://paced/compatible-mode/v1/chat/completions;
        }
    }

    # the module, everything on
    server {
        listen 127.0.0.1:19912 backlog=4096;
        location /v1/ {
            qwen_gateway on;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass \$qwen_upstream/compatible-mode\$uri;
$failover_conf
        }
        location /paced/ {
            qwen_gateway on;
            proxy_set_header Authorization \$qwen_upstream_authorization;
            qwen_default_region paced;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_pass \$qwen_upstream/compatible-mode/v1/chat/completions;
        }
        location = /metrics { qwen_status; }
    }
}
EOC

taskset -c 0 "$nginx" -p "$work/mock/" -c "$work/mock/conf/nginx.conf"
"$nginx" -p "$work/gw/" -c "$work/gw/conf/nginx.conf"
taskset -c 0 node t/mock/dashscope.js --port 19902 --key sk-mock \
    >"$work/paced-mock.log" 2>&1 &
paced_pid=$!

cleanup() {
    "$nginx" -p "$work/mock/" -c "$work/mock/conf/nginx.conf" -s stop || true
    "$nginx" -p "$work/gw/" -c "$work/gw/conf/nginx.conf" -s stop || true
    kill $paced_pid 2>/dev/null || true
}
trap cleanup EXIT
sleep 1

gw_worker=$(pgrep -P "$(cat "$work/gw/logs/nginx.pid")" | head -1)

# CPU time of the gateway worker, in clock ticks
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$gw_worker/stat"
}

