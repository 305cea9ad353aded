#!/usr/bin/env bash
# The soak: a million requests through one gateway worker (the module, with
# everything on), a mix of chat, streams, bad input and upstream errors;
# the worker's memory after the first ten thousand and at the end.
#
#   make soak                    (SOAK_REQUESTS=1000000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh

target=${SOAK_REQUESTS:-1000000}

rss() { awk '/VmRSS/ { print $2 }' "/proc/$gw_worker/status"; }

wrk_count() {
    BENCH_DATA=$work/data taskset -c 0 wrk -t1 -c32 -d"$1" -s bench/soak.lua \
        http://127.0.0.1:19912/v1/chat/completions \
        | awk '/ requests in / { print $1 }'
}

total=$(wrk_count 1s)
while [ "$total" -lt 10000 ]; do
    total=$(( total + $(wrk_count 1s) ))
done
rss_early=$(rss)
early=$total

while [ "$total" -lt "$target" ]; do
    total=$(( total + $(wrk_count 10s) ))
    echo "soak: $total requests, worker RSS $(rss) kB" >&2
done
rss_end=$(rss)

metrics=$(curl -s http://127.0.0.1:19912/metrics)
alerts=$(grep -c -E '\[(alert|crit|emerg)\]' "$work/gw/logs/error.log" || true)

awk -v early="$early" -v total="$total" -v a="$rss_early" -v b="$rss_end" \
    -v alerts="$alerts" 'BEGIN {
    printf "soak: %d requests; worker RSS %d kB after %d, %d kB at the end (%+.1f%%); %d alert/crit lines\n",
           total, a, early, b, (b - a) * 100.0 / a, alerts }'
echo "$metrics" | grep -E "^qwen_requests_total" >&2 || echo "soak: no metrics: $metrics" >&2
