#!/usr/bin/env bash
# make run: the gateway on 127.0.0.1:8000 in the foreground, logging to the
# terminal, in front of real DashScope when an API key is set and of the
# mock DashScope otherwise. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p build/run/tmp
rm -f build/run/dashscope-upstreams.conf

pids=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if [ -n "${DASHSCOPE_API_KEY:-}${ALIBABA_CLOUD_API_KEY:-}" ]; then
    cp conf-examples/dashscope-upstreams.conf build/run/
    echo "qwen gateway: real DashScope (key from the environment);" \
         "region by the X-Qwen-Region header, Singapore by default"
else
    node t/mock/dashscope.js --host 127.0.0.1 --port 8001 --key sk-mock &
    pids+=($!)
    echo "qwen gateway: no DASHSCOPE_API_KEY, answering from the mock" \
         "DashScope on 127.0.0.1:8001"
fi

/usr/sbin/nginx -p "$(pwd)" -c conf-examples/quickstart.conf &
pids+=($!)

cat <<'TXT'
qwen gateway: listening on http://127.0.0.1:8000  (Ctrl-C to stop)

  curl http://127.0.0.1:8000/v1/chat/completions \
    -H 'Content-Type: application/json' \
    -d '{"model":"qwen-plus","messages":[{"role":"user","content":"Hello"}]}'

TXT

# stop when nginx stops, or on Ctrl-C
wait "${pids[-1]}"
