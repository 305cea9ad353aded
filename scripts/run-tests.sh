#!/usr/bin/env bash
# Runs the whole Test::Nginx suite against build/ngx_http_qwen_module.so:
# starts the mock DashScope the tests talk to, installs the npm client the
# compatibility tests use, and uses our compatible runner (t/compat) only
# when the real Test::Nginx::Socket is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."

repo=$(pwd)
export TEST_NGINX_REPO="$repo"
export TEST_NGINX_BINARY="${TEST_NGINX_BINARY:-$repo/t/nginx.sh}"
export TEST_NGINX_LOAD_MODULES="${TEST_NGINX_LOAD_MODULES:-$repo/build/ngx_http_qwen_module.so}"
export TEST_NGINX_MOCK_PORT="${TEST_NGINX_MOCK_PORT:-19850}"

inc=()
if ! perl -MTest::Nginx::Socket -e1 2>/dev/null; then
    inc=(-I "$repo/t/compat")
fi

if [ ! -d t/client/node_modules/openai ]; then
    (cd t/client && npm ci --no-audit --no-fund --loglevel=error)
fi

# the mock: one per run, killed whatever happens
mock_log=$(mktemp)
node t/mock/dashscope.js --port "$TEST_NGINX_MOCK_PORT" \
    --key sk-mock --key sk-mock-beijing --key sk-mock-virginia \
    >"$mock_log" 2>&1 &
mock_pid=$!
trap 'kill $mock_pid 2>/dev/null || true; rm -f "$mock_log"' EXIT

for _ in $(seq 1 100); do
    grep -q "listening" "$mock_log" && break
    kill -0 $mock_pid 2>/dev/null || { cat "$mock_log"; exit 1; }
    sleep 0.1
done

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(t/*.t)
    [ ${#inc[@]} -gt 0 ] && tests+=(t/compat-selftest/*.t)
fi

start=$(date +%s)
status=0
prove "${inc[@]}" "${tests[@]}" || status=$?
echo "test run took $(( $(date +%s) - start ))s"
exit $status
