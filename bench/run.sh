#!/usr/bin/env bash
# The benchmark: plain proxy_pass against the module with everything on
# (model rewrite, region key, usage accounting with pricing, the metrics
# zone), in one nginx, in the same run, for each scenario.
#
#   make bench                       (BENCH_DURATION=10s by default)
#   BENCH_ONLY=stream bench/run.sh   only the rows whose name matches
#   BENCH_SLICES=10                  plain and module alternate in slices
#   BENCH_STREAM_FRAMING=length      the mock sends streams with a
#                                    Content-Length instead of chunked
#   BENCH_FAILOVER=1                 the module's chat location with
#                                    qwen_failover on (happy path)
#   BENCH_KEYS=1                     the module's chat location with
#                                    client keys, all limits and budgets on
#
# The two stream rows: the client asks for usage itself
# (stream_options.include_usage), or it does not, and the module asks the
# upstream for it and hides the usage chunk from the client.  The mock
# answers each request as DashScope would (see bench/lib.sh); the script
# checks what the client gets before it measures.
#
# Pinning, on this 2-core machine: the gateway's one worker has CPU 1 to
# itself; the mock upstream (nginx serving canned DashScope answers), the
# load generator (wrk) and the paced-stream mock share CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh

hz=$(getconf CLK_TCK)

# run PORT BODY CONNECTIONS [HEADER]: one wrk run of $dur, prints
# "rps p50 p99 requests ticks" (latencies in microseconds)
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
        function us(t) {
            if (t ~ /us$/) return t + 0
            if (t ~ /ms$/) return t * 1000
            if (t ~ /s$/) return t * 1000000
            return t + 0
        }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = us($2) }
        /^ +99%/ { p99 = us($2) }
        / requests in / { n = $1 }
        END { print rps, p50, p99, n, ticks }'
}

# the duration of one slice: plain and module take turns, $slices times
# each (1 s slices for the default 10 s), so that a slower moment of the
# machine falls on both; CPU per request is that of the median slice
slices=${BENCH_SLICES:-10}
total=${dur%s}
slice=$(awk -v t="$total" -v n="$slices" 'BEGIN { s = t / n; if (s < 1) s = 1; printf "%ds", s }')

printf '\n%s\n' "nginx $($nginx -v 2>&1 | sed 's/.*\///'), $(nproc) cores, $(date -u +%Y-%m-%d), $dur per server per row in $slices slices; gateway worker on CPU $gw_cpu"
printf '%-20s | %-22s | %-22s | %-19s | %s\n' scenario "requests/s plain/module" "p50 plain/module" "p99 plain/module" "CPU/request plain, module, ratio"

# BENCH_ONLY=regex runs only the rows (and "paced") whose name matches it
only() {
    [ -z "${BENCH_ONLY:-}" ] || [[ $1 =~ $BENCH_ONLY ]]
}

row() {
    local name=$1 body=$2 conns=$3 header=${4:-}
    local i out
    only "$name" || return 0
    # a short warm-up of both, then the measured slices, alternately
    dur=2s run 19911 "$body" "$conns" "$header" >/dev/null
    dur=2s run 19912 "$body" "$conns" "$header" >/dev/null
    out=
    for i in $(seq "$slices"); do
        # plain first, then module first: a drift weighs on both alike
        if [ $((i % 2)) = 1 ]; then
            out+="p $(dur=$slice run 19911 "$body" "$conns" "$header")"$'\n'
            out+="m $(dur=$slice run 19912 "$body" "$conns" "$header")"$'\n'
        else
            out+="m $(dur=$slice run 19912 "$body" "$conns" "$header")"$'\n'
            out+="p $(dur=$slice run 19911 "$body" "$conns" "$header")"$'\n'
        fi
    done
    echo "$out" | awk -v name="$name" -v hz="$hz" '
        function median(a, n,    i, j, t) {
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
                    t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
                }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function lat(u) {
            if (u >= 1000) return sprintf("%.2fms", u / 1000)
            return sprintf("%.0fus", u)
        }
        NF == 6 {
            k = $1; c[k]++
            secs[k] += $5 / $2; n[k] += $5
            if (k == "p") { p50p[c[k]] = $3; p99p[c[k]] = $4; cpup[c[k]] = $6 / $5 }
            else { p50m[c[k]] = $3; p99m[c[k]] = $4; cpum[c[k]] = $6 / $5 }
        }
        END {
            # the median slice: a slice that something else on the
            # machine slowed down does not move it
            pc = median(cpup, c["p"]) / hz * 1e6
            mc = median(cpum, c["m"]) / hz * 1e6
            printf "%-20s | %9.0f / %-10.0f | %9s / %-10s | %8s / %-8s | %7.1f us, %7.1f us, %.2f\n",
                   name, n["p"] / secs["p"], n["m"] / secs["m"],
                   lat(median(p50p, c["p"])), lat(median(p50m, c["m"])),
                   lat(median(p99p, c["p"])), lat(median(p99m, c["m"])),
                   pc, mc, mc / pc
        }'
}

# stream DATA PORT: the events the client gets, "events usage-chunks [DONE]s"
stream() {
    curl -s -H 'Content-Type: application/json' -H 'Authorization: Bearer sk-client' -H 'X-Bench-Stream: 1' \
         --data-binary "@$work/data/$1" \
         "http://127.0.0.1:$2/v1/chat/completions" \
    | awk '/^data: / { n++ } /"choices":\[\],/ && /"usage":\{/ { u++ }
           /^data: \[DONE\]/ { d++ } END { print n + 0, u + 0, d + 0 }'
}

# The two stream rows are what they say: (a) the client asks for usage, the
# upstream sends the usage chunk to both servers and the module only reads
# it; (b) the client does not ask, so plain proxy_pass gets no usage chunk
# while the module asks upstream for one (include_usage injected), counts
# it and hides it: the client sees the same 50 events and [DONE] as plain.
check_stream() {
    local got
    got=$(stream "$1" "$2")
    if [ "$got" != "$3" ]; then
        echo "bench: $1 through port $2: events, usage chunks, [DONE] are" \
             "\"$got\", not \"$3\"" >&2
        exit 1
    fi
}
check_stream req-stream-usage.json 19911 "52 1 1"
check_stream req-stream-usage.json 19912 "52 1 1"
check_stream req-stream.json 19911 "51 0 1"
check_stream req-stream.json 19912 "51 0 1"
# and the hidden chunk was counted: 48 output tokens for each of the two
out_tokens=$(curl -s http://127.0.0.1:19912/metrics \
    | awk '/^qwen_tokens_total.*type="output"/ { n += $2 } END { print n + 0 }')
if [ "$out_tokens" != 96 ]; then
    echo "bench: the module counted $out_tokens output tokens, not 96" >&2
    exit 1
fi

row "1 KB chat" req-1k.json 16
row "256 KB chat" req-256k.json 8
row "10 MB chat" req-10m.json 2
row "stream, usage asked" req-stream-usage.json 16 "X-Bench-Stream: 1"
row "stream, usage hidden" req-stream.json 16 "X-Bench-Stream: 1"

# paced: one event per millisecond, added latency per event
only paced && node bench/paced.mjs 127.0.0.1:19911 127.0.0.1:19912 "$work/data/req-stream.json"

curl -s http://127.0.0.1:19912/metrics >"$work/metrics.txt" || true
