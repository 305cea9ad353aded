#!/usr/bin/env bash
# The benchmark: plain proxy_pass against the module with everything on
# (model rewrite, region key, usage accounting with pricing, the metrics
# zone), in one nginx, in the same run, for each scenario.
#
#   make bench                       (BENCH_DURATION=10s by default)
#
# Pinning, on this 2-core machine: the gateway's one worker has CPU 1 to
# itself; the mock upstream (nginx serving canned DashScope answers), the
# load generator (wrk) and the paced-stream mock share CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."

repo=$(pwd)
work=$repo/build/bench
dur=${BENCH_DURATION:-10s}
nginx=${QWEN_NGINX:-/usr/sbin/nginx}
so=$repo/build/ngx_http_qwen_module.so
ncpu=$(nproc)
gw_cpu=$(( ncpu > 1 ? 1 : 0 ))

rm -rf "$work"
mkdir -p "$work"/{mock,gw}/{conf,logs}
python3 bench/gen.py "$work/data" >/dev/null

# the mock: canned answers as static files; a POST to a static file is a
# 405, which error_page turns into a GET of the answer
cat > "$work/mock/conf/nginx.conf" <<EOC
worker_processes 1;
worker_cpu_affinity 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_max_body_size 0;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:19901 backlog=4096;
        root $work/data;
        location = /compatible-mode/v1/chat/completions {
            if (\$http_x_bench_stream) {
                error_page 405 =200 /answer.sse;
                return 405;
            }
            error_page 405 =200 /answer.json;
            return 405;
        }
        location = /answer.json {
            internal;
            default_type application/json;
        }
        location = /answer.sse {
            internal;
            types { }
            default_type text/event-stream;
        }
    }
}
EOC

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
    qwen_metrics_zone qwen 1m;

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
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass \$qwen_upstream/compatible-mode\$uri;
        }
        location /paced/ {
            qwen_gateway on;
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

hz=$(getconf CLK_TCK)

# run PORT BODY CONNECTIONS [HEADER]: prints "rps p50 p99 requests ticks"
run() {
    local port=$1 body=$2 conns=$3 header=${4:-}
    local before after out
    before=$(cpu_ticks)
    out=$(BENCH_BODY=$work/data/$body BENCH_HEADER=$header \
          taskset -c 0 wrk -t1 -c"$conns" -d"$dur" --latency \
          -s bench/post.lua "http://127.0.0.1:$port/v1/chat/completions")
    after=$(cpu_ticks)
    if echo "$out" | grep -q "Non-2xx"; then
        echo "$out" >&2
        echo "bench: non-2xx answers on port $port" >&2
        exit 1
    fi
    echo "$out" | awk -v ticks=$((after - before)) '
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        / requests in / { n = $1 }
        END { print rps, p50, p99, n, ticks }'
}

printf '\n%s\n' "nginx $($nginx -v 2>&1 | sed 's/.*\///'), $(nproc) cores, $(date -u +%Y-%m-%d), $dur per run; gateway worker on CPU $gw_cpu"
printf '%-16s | %-22s | %-22s | %-19s | %s\n' scenario "requests/s plain/module" "p50 plain/module" "p99 plain/module" "CPU/request plain, module, ratio"

row() {
    local name=$1 body=$2 conns=$3 header=${4:-}
    # a short warm-up of both, then the measured runs
    dur=2s run 19911 "$body" "$conns" "$header" >/dev/null
    dur=2s run 19912 "$body" "$conns" "$header" >/dev/null
    read -r prps pp50 pp99 pn pt < <(run 19911 "$body" "$conns" "$header")
    read -r mrps mp50 mp99 mn mt < <(run 19912 "$body" "$conns" "$header")
    awk -v name="$name" -v prps="$prps" -v mrps="$mrps" -v pp50="$pp50" \
        -v mp50="$mp50" -v pp99="$pp99" -v mp99="$mp99" -v pn="$pn" \
        -v mn="$mn" -v pt="$pt" -v mt="$mt" -v hz="$hz" 'BEGIN {
        pc = pt / hz / pn * 1e6; mc = mt / hz / mn * 1e6;
        printf "%-16s | %9s / %-10s | %9s / %-10s | %8s / %-8s | %7.1f us, %7.1f us, %.2f\n",
               name, prps, mrps, pp50, mp50, pp99, mp99, pc, mc, mc / pc }'
}

row "1 KB chat" req-1k.json 16
row "256 KB chat" req-256k.json 8
row "10 MB chat" req-10m.json 2
row "50-event stream" req-stream.json 16 "X-Bench-Stream: 1"

# paced: one event per millisecond, added latency per event
node bench/paced.mjs 127.0.0.1:19911 127.0.0.1:19912 "$work/data/req-stream.json"

curl -s http://127.0.0.1:19912/metrics >"$work/metrics.txt" || true
