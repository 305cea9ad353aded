#!/usr/bin/env bash
# make run: the gateway on 127.0.0.1:8000 in the foreground, logging to the
# terminal, in front of real DashScope when an API key is set and of the
# mock DashScope (127.0.0.1:8001) otherwise. Ctrl-C (or SIGTERM) stops
# everything it started.
#
# nginx runs from a fresh runtime directory under /tmp, not from the
# checkout: conf-examples/quickstart.conf explains why and what is in it.
# It is removed on exit.
#
# Environment, for tests and for when those ports are taken:
#   QWEN_GATEWAY_PORT   the gateway's port (8000)
#   QWEN_MOCK_PORT      the mock's port (8001; 0: any free port)
#   QWEN_NGINX          the nginx binary (/usr/sbin/nginx)
set -euo pipefail
cd "$(dirname "$0")/.."

gw_port=${QWEN_GATEWAY_PORT:-8000}
mock_port=${QWEN_MOCK_PORT:-8001}
nginx=${QWEN_NGINX:-/usr/sbin/nginx}

die() { echo "qwen gateway: $*" >&2; exit 1; }

[ -f build/ngx_http_qwen_module.so ] \
    || die "build/ngx_http_qwen_module.so is missing: run make first"

# /tmp rather than $TMPDIR: the worker user must be able to enter it, and a
# private TMPDIR (under /root, say) would defeat the purpose
rt=$(mktemp -d /tmp/qwen-gateway.XXXXXX)
pids=()
cleanup() {
    trap - EXIT INT TERM HUP
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$rt"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# the workers only pass through it to their *_temp directories, which nginx
# creates at start and gives to the worker user
chmod 0711 "$rt"
mkdir "$rt/logs" "$rt/modules"
cp build/ngx_http_qwen_module.so "$rt/modules/"
cp conf-examples/otel-access-log.conf conf-examples/qwen-models.json "$rt/"

if [ -n "${DASHSCOPE_API_KEY:-}${ALIBABA_CLOUD_API_KEY:-}" ]; then
    cp conf-examples/dashscope-upstreams.conf "$rt/"
    echo "qwen gateway: real DashScope (key from the environment);" \
         "region by the X-Qwen-Region header, Singapore by default"
else
    node t/mock/dashscope.js --host 127.0.0.1 --port "$mock_port" \
        --key sk-mock >"$rt/logs/mock.out" &
    pids+=($!)
    port=
    for _ in $(seq 1 50); do
        port=$(sed -n 's|^mock-dashscope listening on http://[^ ]*:\([0-9]*\)$|\1|p' \
                   "$rt/logs/mock.out")
        [ -n "$port" ] && break
        kill -0 "${pids[-1]}" 2>/dev/null \
            || die "the mock DashScope did not start (port $mock_port taken? set QWEN_MOCK_PORT)"
        sleep 0.1
    done
    [ -n "$port" ] || die "the mock DashScope did not start within 5 s"
    mock_port=$port
    echo "qwen gateway: no DASHSCOPE_API_KEY, answering from the mock" \
         "DashScope on 127.0.0.1:$mock_port"
fi

# the quickstart with the ports of this run (the same file for 8000/8001)
sed -e "s/127\.0\.0\.1:8000;/127.0.0.1:$gw_port;/" \
    -e "s/127\.0\.0\.1:8001;/127.0.0.1:$mock_port;/" \
    conf-examples/quickstart.conf >"$rt/quickstart.conf"
grep -q "listen 127\.0\.0\.1:$gw_port;" "$rt/quickstart.conf" \
    && grep -q "server 127\.0\.0\.1:$mock_port;" "$rt/quickstart.conf" \
    || die "conf-examples/quickstart.conf no longer listens on 127.0.0.1:8000" \
           "with the mock on 127.0.0.1:8001: update scripts/run-gateway.sh"

"$nginx" -p "$rt/" -c quickstart.conf &
pids+=($!)

cat <<TXT
qwen gateway: listening on http://127.0.0.1:$gw_port  (Ctrl-C to stop)
qwen gateway: runtime directory $rt (removed on exit)

  curl http://127.0.0.1:$gw_port/v1/chat/completions \\
    -H 'Content-Type: application/json' \\
    -d '{"model":"qwen-plus","messages":[{"role":"user","content":"Hello"}]}'

TXT

# stop when nginx stops, or on Ctrl-C
wait "${pids[-1]}"
