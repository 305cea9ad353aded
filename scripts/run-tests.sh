#!/usr/bin/env bash
# Runs the Test::Nginx suite (or the test files given) against
# build/ngx_http_qwen_module.so: starts the mock DashScope the tests talk to,
# installs the npm client the compatibility tests use, uses our compatible
# runner (t/compat) only when the real Test::Nginx::Socket is not installed,
# and ends with the secret scan (docs/testing.md).
#
# Everything a run writes goes to a fresh directory under $TMPDIR (or /tmp):
# nginx's server root, the mock's output, the logs the secret scan keeps. It
# is removed when the run passes and kept, with its path printed, when it
# fails. Ports are picked free at random (the caller may set
# TEST_NGINX_MOCK_PORT and TEST_NGINX_PORT), so runs at once do not collide.
set -euo pipefail
cd "$(dirname "$0")/.."

repo=$(pwd)
export TEST_NGINX_REPO="$repo"
export TEST_NGINX_BINARY="${TEST_NGINX_BINARY:-$repo/t/nginx.sh}"
export TEST_NGINX_LOAD_MODULES="${TEST_NGINX_LOAD_MODULES:-$repo/build/ngx_http_qwen_module.so}"

# the npm client, once; a lock so that two runs do not both install it
if [ ! -d t/client/node_modules/openai ]; then
    mkdir -p build
    (
        flock 9
        if [ ! -d t/client/node_modules/openai ]; then
            cd t/client && npm ci --no-audit --no-fund --loglevel=error
        fi
    ) 9>build/.npm-ci.lock
fi

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/qwen-test.XXXXXX")
mock_pid=
watchdog_pid=
status=1
finish() {
    trap - EXIT INT TERM HUP
    set +e
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null
    [ -n "$watchdog_pid" ] && kill "$watchdog_pid" 2>/dev/null
    wait 2>/dev/null
    if [ "$status" = 0 ]; then
        rm -rf "$run_dir"
    else
        echo "run-tests.sh: the run failed; its files are kept in $run_dir" >&2
        echo "  (servroot/: nginx's server root, secrets/logs/: the logs of" \
             "every test file, mock.log: the mock's output)" >&2
    fi
    exit "$status"
}
trap finish EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM HUP
export TEST_NGINX_SERVROOT="$run_dir/servroot"

# (loading it acts on TEST_NGINX_SERVROOT at exit: this run's, still empty)
inc=()
if ! perl -MTest::Nginx::Socket -e1 2>/dev/null; then
    inc=(-I "$repo/t/compat")
fi

# the mock: one per run, on the port it picks itself unless one is given
mock_log="$run_dir/mock.log"
node t/mock/dashscope.js --port "${TEST_NGINX_MOCK_PORT:-0}" \
    --key sk-mock --key sk-mock-beijing --key sk-mock-virginia \
    >"$mock_log" 2>&1 &
mock_pid=$!
# killed even if this script is (SIGKILL cannot be trapped): a watchdog
# that outlives it sees its parent change (the script's pid may linger as a
# zombie where PID 1 reaps lazily, so kill -0 would not do)
(
    trap '' INT
    me=$BASHPID
    while [ "$(sed 's/.*) [A-Za-z] //; s/ .*//' "/proc/$me/stat" 2>/dev/null)" = "$$" ]; do
        sleep 1
    done
    kill "$mock_pid" 2>/dev/null
) >/dev/null 2>&1 &
watchdog_pid=$!

port=
for _ in $(seq 1 50); do
    port=$(sed -n 's|^mock-dashscope listening on http://[^ ]*:\([0-9]*\)$|\1|p' "$mock_log")
    [ -n "$port" ] && break
    if ! kill -0 "$mock_pid" 2>/dev/null; then
        echo "run-tests.sh: the mock DashScope did not start:" >&2
        cat "$mock_log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "run-tests.sh: the mock DashScope did not say it listens within 5 s:" >&2
    cat "$mock_log" >&2
    exit 1
fi
export TEST_NGINX_MOCK_PORT="$port"

# nginx's port (the same for every file: they run one after another) and
# server root, both this run's own. Not TEST_NGINX_RANDOMIZE: it puts the
# server root in t/servroot_PORT, inside the checkout, and ignores
# TEST_NGINX_SERVROOT.
if [ -z "${TEST_NGINX_PORT:-}${TEST_NGINX_SERVER_PORT:-}" ]; then
    TEST_NGINX_PORT=$(perl -I"$repo/t/lib" -MQwen::FreePort=free_port \
                          -e "print free_port($TEST_NGINX_MOCK_PORT)")
    export TEST_NGINX_PORT
fi

# the secret scan (docs/testing.md): the keys the tests configure, a hook in
# every test process, the nginx a test starts by hand noted
export QWEN_SECRET_DIR="$run_dir/secrets"
mkdir -p "$QWEN_SECRET_DIR"
perl t/lib/secret-scan keys t/*.t conf-examples/*.conf scripts/run-tests.sh \
    >"$QWEN_SECRET_DIR/keys" \
    || { echo "run-tests.sh: found no keys for the secret scan" >&2; exit 1; }
export PERL5LIB="$repo/t/lib${PERL5LIB:+:$PERL5LIB}"
export PERL5OPT="${PERL5OPT:+$PERL5OPT }-MQwen::SecretScan"
export QWEN_SECRET_REAL_NGINX="${QWEN_NGINX:-/usr/sbin/nginx}"
export QWEN_NGINX="$repo/t/lib/nginx-record.sh"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(t/*.t)
    [ ${#inc[@]} -gt 0 ] && tests+=(t/compat-selftest/*.t)
fi

echo "run-tests.sh: nginx on port $TEST_NGINX_PORT, the mock on" \
     "$TEST_NGINX_MOCK_PORT, files in $run_dir"
start=$(date +%s)
prove_status=0
prove "${inc[@]}" "${tests[@]}" || prove_status=$?
echo "test run took $(( $(date +%s) - start ))s"

scan_args=()
[ "$prove_status" != 0 ] && scan_args=(--suite-failed)
scan_status=0
perl t/lib/secret-scan report "$QWEN_SECRET_DIR" "${scan_args[@]}" "${tests[@]}" \
    || scan_status=$?

status=$prove_status
[ "$status" = 0 ] && status=$scan_status
exit "$status"
