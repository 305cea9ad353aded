#!/usr/bin/env bash
# Self-check of the DashScope mock (t/mock/dashscope.js).
# Needs bash, curl and node. Starts the mock on a free port (--port 0), checks
# every documented behaviour, exits non-zero on any failure.
#   t/mock/selftest.sh [-v]
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
MOCK="$HERE/dashscope.js"
VERBOSE=${1:-}
T=$(mktemp -d "${TMPDIR:-/tmp}/mock-selftest.XXXXXX")
PASS=0
FAIL=0
MOCK_PID=

cleanup() {
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

ok()     { PASS=$((PASS + 1)); echo "ok - $1"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $1${2:+: $2}"; }

# start_mock OUTFILE ARGS... : starts a mock, sets STARTED_PID and STARTED_URL
start_mock() {
    local out=$1; shift
    node "$MOCK" "$@" >"$out" 2>"$out.err" &
    STARTED_PID=$!
    STARTED_URL=
    for _ in $(seq 1 100); do
        if grep -q '^mock-dashscope listening on ' "$out" 2>/dev/null; then
            STARTED_URL=$(sed -n 's/^mock-dashscope listening on //p' "$out")
            return 0
        fi
        kill -0 "$STARTED_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "mock failed to start: $(cat "$out" "$out.err")" >&2
    return 1
}

start_mock "$T/mock.out" --port 0 --key sk-mock --key sk-region-2 ${VERBOSE:+--verbose} || exit 1
MOCK_PID=$STARTED_PID
ROOT=$STARTED_URL
B="$ROOT/compatible-mode/v1"
AUTH='Authorization: Bearer sk-mock'

# Node helper: evaluates a JS expression against the last response.
#   j = parsed JSON body (or undefined), b = body string, buf = body Buffer,
#   h = headers (lower-cased), ev = parsed SSE events ('[DONE]' for the end)
cat >"$T/check.js" <<'EOF'
const fs = require('fs');
const [,, expr, dir] = process.argv;
const buf = fs.readFileSync(dir + '/b');
const b = buf.toString('utf8');
const h = {};
let status = 0;
for (const line of fs.readFileSync(dir + '/h', 'latin1').split(/\r?\n/)) {
  const m = /^HTTP\/\S+ (\d+)/.exec(line);
  if (m) { status = +m[1]; for (const k in h) delete h[k]; continue; }
  const c = line.indexOf(':');
  if (c > 0) h[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
}
let j; try { j = JSON.parse(b); } catch (e) {}
const ev = [];
for (const block of b.split('\n\n')) {
  if (!block.startsWith('data: ')) continue;
  const d = block.slice(6);
  try { ev.push(d === '[DONE]' ? '[DONE]' : JSON.parse(d)); } catch (e) { ev.push({ unparsable: d }); }
}
const content = (evs) => evs.filter((e) => e !== '[DONE]' && e.choices && e.choices[0] && e.choices[0].delta)
  .map((e) => e.choices[0].delta.content || '').join('');
const sha256 = (x) => require('crypto').createHash('sha256').update(x).digest('hex');
let r;
try { r = eval(expr); } catch (e) { console.log('exception: ' + e.message); process.exit(1); }
if (!r) {
  console.log(`status=${status} body=${b.length > 600 ? b.slice(0, 600) + '...' : b}`);
  process.exit(1);
}
EOF

# call [curl args...] : runs curl, body in $T/b, headers in $T/h, status in $ST, exit code in $RC
call() {
    : >"$T/b"; : >"$T/h"
    ST=$(curl -sS -o "$T/b" -D "$T/h" -w '%{http_code}' --max-time 20 "$@" 2>"$T/curl.err")
    RC=$?
}

# check NAME EXPECTED_STATUS JS_EXPR
check() {
    local name=$1 want=$2 expr=${3:-true} out
    if [ "$ST" != "$want" ]; then
        not_ok "$name" "status $ST, want $want; curl rc=$RC; body: $(head -c 400 "$T/b")"
        return
    fi
    if out=$(node "$T/check.js" "$expr" "$T" 2>&1); then ok "$name"; else not_ok "$name" "$expr -> $out"; fi
}

ERR_ENV='j && j.error && typeof j.error.message === "string" && "param" in j.error && j.error.param === null && j.request_id === h["x-request-id"] && /^[0-9a-f-]{36}$/.test(j.request_id)'
CHAT='{"model":"qwen-plus","messages":[{"role":"user","content":"Hello"}]}'
CHAT_LEN=${#CHAT}

# ------------------------------------------------------------------ auth ---
call "$B/models"
check "401 without Authorization" 401 "$ERR_ENV && j.error.code === 'invalid_api_key' && j.error.type === 'invalid_request_error' && j.error.message === 'Incorrect API key provided. '"
call "$B/chat/completions" -H 'Authorization: Bearer sk-wrong' -d "$CHAT"
check "401 with a wrong key" 401 "$ERR_ENV && j.error.code === 'invalid_api_key'"
call "$B/chat/completions" -H 'Authorization: Bearer sk-region-2' -d "$CHAT"
check "second --key accepted" 200 "j.object === 'chat.completion'"
call "$B/chat/completions" -H 'Authorization: Basic sk-mock' -d "$CHAT"
check "401 with a non-Bearer scheme" 401 "j.error.code === 'invalid_api_key'"
call "$B/no/such/path" -d '{}'
check "401 comes before routing" 401 "j.error.code === 'invalid_api_key'"

# --------------------------------------------------------------- routing ---
call "$B/models" -H "$AUTH"
check "GET /models lists models" 200 "j.object === 'list' && j.data.length > 0 && j.data.every(m => m.object === 'model' && m.id) && /^[0-9a-f-]{36}$/.test(h['x-request-id'])"
call "$B/models/qwen-plus" -H "$AUTH"
check "GET /models/qwen-plus" 200 "j.id === 'qwen-plus' && j.object === 'model'"
call "$B/models/nope" -H "$AUTH"
check "GET /models/nope is model_not_found" 404 "$ERR_ENV && j.error.code === 'model_not_found'"
call "$ROOT/chat/completions" -H "$AUTH" -d "$CHAT"
check "no prefix -> 404" 404 "$ERR_ENV && j.error.code === 'unknown_url'"
call "$B/completions" -H "$AUTH" -d "$CHAT"
check "unknown path -> 404" 404 "$ERR_ENV && j.error.type === 'invalid_request_error'"
call "$B/chat/completions" -H "$AUTH"
check "GET /chat/completions -> 405" 405 "$ERR_ENV && h.allow === 'POST'"
call "$B/chat/completions?foo=bar" -H "$AUTH" -d "$CHAT"
check "query string ignored for routing" 200 "j.object === 'chat.completion'"

# ------------------------------------------------------------ validation ---
call "$B/chat/completions" -H "$AUTH" -d '{"model":'
check "invalid JSON -> 400" 400 "$ERR_ENV && j.error.code === 'invalid_parameter_error' && j.error.type === 'invalid_request_error'"
call "$B/chat/completions" -H "$AUTH" -d '[1,2]'
check "JSON array body -> 400" 400 "$ERR_ENV && j.error.code === 'invalid_parameter_error'"
call "$B/chat/completions" -H "$AUTH" -X POST
check "empty body -> 400" 400 "$ERR_ENV"
call "$B/chat/completions" -H "$AUTH" -d '{"messages":[]}'
check "missing model -> 400" 400 "$ERR_ENV && /model/.test(j.error.message)"
call "$B/chat/completions" -H "$AUTH" --data-binary $'\xff\xfe{"model":1}'
check "binary garbage -> 400" 400 "$ERR_ENV"

# ---------------------------------------------------------- chat (plain) ---
call "$B/chat/completions" -H "$AUTH" -H 'Content-Type: application/json' -d "$CHAT"
check "chat non-stream shape" 200 "h['content-type'] === 'application/json' && /^chatcmpl-/.test(j.id) && j.object === 'chat.completion' && Number.isInteger(j.created) && j.model === 'qwen-plus' && j.choices.length === 1 && j.choices[0].index === 0 && j.choices[0].message.role === 'assistant' && j.choices[0].finish_reason === 'stop'"
check "chat non-stream deterministic content" 200 "j.choices[0].message.content === 'Mock reply from qwen-plus.'"
check "chat default usage" 200 "j.usage.prompt_tokens === Math.ceil($CHAT_LEN / 4) && j.usage.completion_tokens === 4 && j.usage.total_tokens === j.usage.prompt_tokens + 4 && j.usage.prompt_tokens_details.cached_tokens === 0 && !('completion_tokens_details' in j.usage)"
call "$B/chat/completions" -H "$AUTH" -d '{"model":"Qwen/Strange Name@v1","messages":[]}'
check "model echoed exactly" 200 "j.model === 'Qwen/Strange Name@v1' && j.choices[0].message.content === 'Mock reply from Qwen/Strange Name@v1.'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-usage: 100,20,64,7' -d "$CHAT"
check "x-mock-usage P,C,K,R" 200 "j.usage.prompt_tokens === 100 && j.usage.completion_tokens === 20 && j.usage.total_tokens === 120 && j.usage.prompt_tokens_details.cached_tokens === 64 && j.usage.completion_tokens_details.reasoning_tokens === 7"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-usage: 5,6' -d "$CHAT"
check "x-mock-usage P,C" 200 "j.usage.prompt_tokens === 5 && j.usage.completion_tokens === 6 && j.usage.total_tokens === 11 && j.usage.prompt_tokens_details.cached_tokens === 0"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-chunks: 5' -d "$CHAT"
check "x-mock-chunks non-stream" 200 "j.choices[0].message.content === 'w1 w2 w3 w4 w5' && j.usage.completion_tokens === 5"
call "$B/chat/completions" -H "$AUTH" -d '{"model":"qwen-plus","enable_thinking":true,"messages":[]}'
check "enable_thinking non-stream" 200 "j.choices[0].message.content === 'Mock reply from qwen-plus.' && typeof j.choices[0].message.reasoning_content === 'string' && j.usage.completion_tokens_details.reasoning_tokens > 0 && j.usage.completion_tokens === 4 + j.usage.completion_tokens_details.reasoning_tokens"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-reply: Hello%20there,%20world' -d "$CHAT"
check "x-mock-reply" 200 "j.choices[0].message.content === 'Hello there, world' && j.usage.completion_tokens === 3"

# --------------------------------------------------------- chat (stream) ---
STREAM='{"model":"qwen-plus","stream":true,"messages":[{"role":"user","content":"Hello"}]}'
call "$B/chat/completions" -H "$AUTH" -d "$STREAM"
check "stream content-type" 200 "h['content-type'] === 'text/event-stream' && /^[0-9a-f-]{36}$/.test(h['x-request-id'])"
check "stream framing" 200 "/^(data: [^\n]+\n\n)+$/.test(b) && b.endsWith('data: [DONE]\n\n') && ev[ev.length - 1] === '[DONE]'"
check "stream first chunk role" 200 "JSON.stringify(ev[0].choices[0].delta) === '{\"role\":\"assistant\",\"content\":\"\"}'"
check "stream one chunk per word, concat equals non-stream" 200 "ev.length === 1 + 4 + 1 + 1 && content(ev) === 'Mock reply from qwen-plus.' && ev[1].choices[0].delta.content === 'Mock ' && ev[4].choices[0].delta.content === 'qwen-plus.'"
check "stream finish chunk" 200 "ev[5].choices[0].finish_reason === 'stop' && JSON.stringify(ev[5].choices[0].delta) === '{}'"
check "stream without include_usage: usage null everywhere" 200 "ev.slice(0, -1).every(e => 'usage' in e && e.usage === null) && ev.slice(0, -1).every(e => e.choices.length === 1)"
check "stream same id/created/model/object" 200 "ev.slice(0, -1).every(e => e.id === ev[0].id && e.created === ev[0].created && e.model === 'qwen-plus' && e.object === 'chat.completion.chunk') && /^chatcmpl-/.test(ev[0].id)"

STREAM_U='{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}'
call "$B/chat/completions" -H "$AUTH" -d "$STREAM_U"
check "stream include_usage: final usage chunk" 200 "ev.length === 8 && ev[7] === '[DONE]' && Array.isArray(ev[6].choices) && ev[6].choices.length === 0 && ev[6].usage.prompt_tokens === Math.ceil(${#STREAM_U} / 4) && ev[6].usage.completion_tokens === 4 && ev[6].usage.total_tokens === ev[6].usage.prompt_tokens + 4 && ev[6].usage.prompt_tokens_details.cached_tokens === 0"
check "stream include_usage: other chunks usage null" 200 "ev.slice(0, 6).every(e => e.usage === null) && content(ev) === 'Mock reply from qwen-plus.' && ev[6].id === ev[0].id"

call "$B/chat/completions" -H "$AUTH" -d '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":false}}'
check "stream include_usage:false -> no usage chunk" 200 "ev.length === 7 && ev.slice(0, -1).every(e => e.usage === null)"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-chunks: 50' -H 'x-mock-usage: 9,8,7' -d "$STREAM_U"
check "stream x-mock-chunks 50 + x-mock-usage" 200 "ev.length === 1 + 50 + 1 + 1 + 1 && content(ev) === Array.from({length: 50}, (_, i) => 'w' + (i + 1)).join(' ') && ev[52].usage.prompt_tokens === 9 && ev[52].usage.completion_tokens === 8 && ev[52].usage.prompt_tokens_details.cached_tokens === 7"
call "$B/chat/completions" -H "$AUTH" -d '{"model":"qwq-plus","stream":true,"enable_thinking":true,"stream_options":{"include_usage":true}}'
check "stream thinking: reasoning_content deltas first" 200 "(() => { const d = ev.filter(e => e !== '[DONE]' && e.choices.length).map(e => e.choices[0].delta); const ri = d.map((x, i) => x.reasoning_content ? i : -1).filter(i => i >= 0); const ci = d.map((x, i) => x.content ? i : -1).filter(i => i >= 0); return ri.length > 0 && ci.length === 4 && Math.max(...ri) < Math.min(...ci); })() && content(ev) === 'Mock reply from qwq-plus.' && ev[ev.length - 2].usage.completion_tokens_details.reasoning_tokens > 0"

START=$(date +%s%N)
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-chunks: 5' -H 'x-mock-interval-ms: 100' -d "$STREAM"
ELAPSED=$(( ($(date +%s%N) - START) / 1000000 ))
check "x-mock-interval-ms paces events (${ELAPSED}ms)" 200 "ev.length === 8 && $ELAPSED >= 600 && $ELAPSED < 3000"

# HTTP/1.1 chunked vs HTTP/1.0
curl -sS --raw -D "$T/h" -o "$T/b" --max-time 10 "$B/chat/completions" -H "$AUTH" -d "$STREAM"; ST=200
check "HTTP/1.1 stream is chunked" 200 "/chunked/i.test(h['transfer-encoding'] || '') && b.endsWith('\r\n0\r\n\r\n')"
call --http1.0 "$B/chat/completions" -H "$AUTH" -d "$STREAM"
check "HTTP/1.0 stream (close-delimited)" 200 "!h['transfer-encoding'] && content(ev) === 'Mock reply from qwen-plus.' && ev[ev.length - 1] === '[DONE]'"
call --http1.0 "$B/chat/completions" -H "$AUTH" -d "$CHAT"
check "HTTP/1.0 non-stream" 200 "j.choices[0].message.content === 'Mock reply from qwen-plus.' && +h['content-length'] === buf.length"

# keep-alive: several requests over one connection
curl -sS -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' --max-time 10 -H "$AUTH" -d "$CHAT" \
    "$B/chat/completions" "$B/chat/completions" "$B/chat/completions" >"$T/conns"
if [ "$(tr -d '\n' <"$T/conns")" = "100" ]; then ok "keep-alive reuses the connection"; else not_ok "keep-alive reuses the connection" "num_connects: $(tr '\n' ' ' <"$T/conns")"; fi

# ------------------------------------------------------------ embeddings ---
call "$B/embeddings" -H "$AUTH" -d '{"model":"text-embedding-v4","input":"hello"}'
check "embeddings string input" 200 "j.object === 'list' && j.model === 'text-embedding-v4' && j.data.length === 1 && j.data[0].object === 'embedding' && j.data[0].index === 0 && j.data[0].embedding.length === 1024 && j.data[0].embedding.every(x => typeof x === 'number') && j.usage.prompt_tokens > 0 && j.usage.total_tokens === j.usage.prompt_tokens"
cp "$T/b" "$T/emb1"
call "$B/embeddings" -H "$AUTH" -d '{"model":"text-embedding-v4","input":"hello"}'
check "embeddings deterministic" 200 "JSON.stringify(j.data) === JSON.stringify(JSON.parse(require('fs').readFileSync('$T/emb1', 'utf8')).data)"
call "$B/embeddings" -H "$AUTH" -d '{"model":"my/emb","input":["a","b","c"],"dimensions":64}'
check "embeddings array + dimensions" 200 "j.model === 'my/emb' && j.data.length === 3 && j.data.every((d, i) => d.index === i && d.embedding.length === 64) && JSON.stringify(j.data[0].embedding) !== JSON.stringify(j.data[1].embedding) && Math.abs(Math.hypot(...j.data[0].embedding) - 1) < 1e-3"
cp "$T/b" "$T/embf"
call "$B/embeddings" -H "$AUTH" -d '{"model":"my/emb","input":["a","b","c"],"dimensions":64,"encoding_format":"base64"}'
check "embeddings base64 = float32 of float" 200 "(() => { const f = JSON.parse(require('fs').readFileSync('$T/embf', 'utf8')); return j.data.every((d, i) => { const x = Buffer.from(d.embedding, 'base64'); const v = new Float32Array(x.buffer, x.byteOffset, x.length / 4); return v.length === 64 && Array.from(v).every((y, k) => Math.abs(y - f.data[i].embedding[k]) < 1e-6); }); })()"
call "$B/embeddings" -H "$AUTH" -d '{"model":"text-embedding-v4","input":["1","2","3","4","5","6","7","8","9","10","11"]}'
check "embeddings > 10 inputs -> 400" 400 "$ERR_ENV && j.error.code === 'InvalidParameter' && j.error.message.includes('batch size is invalid, it should not be larger than 10.')"
call "$B/embeddings" -H "$AUTH" -d '{"model":"text-embedding-v4","input":["1","2","3","4","5","6","7","8","9","10"]}'
check "embeddings 10 inputs ok" 200 "j.data.length === 10"
call "$B/embeddings" -H "$AUTH" -d '{"model":"text-embedding-v4"}'
check "embeddings missing input -> 400" 400 "$ERR_ENV"
call "$B/embeddings" -H "$AUTH" -d '{"input":"x"}'
check "embeddings missing model -> 400" 400 "$ERR_ENV"
call "$B/embeddings" -H "$AUTH" -H 'x-mock-usage: 42,0' -d '{"model":"text-embedding-v4","input":"x"}'
check "embeddings x-mock-usage" 200 "j.usage.prompt_tokens === 42 && j.usage.total_tokens === 42"

# ---------------------------------------------------------------- faults ---
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:404' -d '{"model":"qwen-nope","messages":[]}'
check "fault status:404" 404 "$ERR_ENV && j.error.code === 'model_not_found' && j.error.type === 'invalid_request_error' && j.error.message === 'The model \`qwen-nope\` does not exist or you do not have access to it.'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429' -d "$CHAT"
check "fault status:429 (Retry-After 2)" 429 "$ERR_ENV && j.error.code === 'limit_requests' && h['retry-after'] === '2'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429' -H 'x-mock-retry-after: 7' -d "$CHAT"
check "fault status:429 + x-mock-retry-after" 429 "h['retry-after'] === '7'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429-ratequota' -d "$CHAT"
check "fault status:429-ratequota" 429 "$ERR_ENV && j.error.code === 'Throttling.RateQuota' && h['retry-after'] === '2'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429-allocation' -d "$CHAT"
check "fault status:429-allocation" 429 "$ERR_ENV && j.error.code === 'Throttling.AllocationQuota'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429-quota' -d "$CHAT"
check "fault status:429-quota (no Retry-After)" 429 "$ERR_ENV && j.error.code === 'insufficient_quota' && j.error.message === 'Free allocated quota exceeded.' && !('retry-after' in h)"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:500' -d "$CHAT"
check "fault status:500" 500 "$ERR_ENV && j.error.code === 'InternalError'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:503' -d "$CHAT"
check "fault status:503" 503 "$ERR_ENV && j.error.code === 'ServiceUnavailable'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:400-arrearage' -d "$CHAT"
check "fault status:400-arrearage" 400 "$ERR_ENV && j.error.code === 'Arrearage'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:400-inspection' -d "$CHAT"
check "fault status:400-inspection" 400 "$ERR_ENV && j.error.code === 'data_inspection_failed'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:418' -d "$CHAT"
check "fault status:418 (generic)" 418 "$ERR_ENV"
call "$B/embeddings" -H "$AUTH" -H 'x-mock-fault: status:500' -d '{"model":"text-embedding-v4","input":"x"}'
check "fault on embeddings" 500 "$ERR_ENV"
call "$B/models" -H "$AUTH" -H 'x-mock-fault: status:503'
check "fault on models" 503 "$ERR_ENV"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:500' -d 'not json'
check "status fault wins over body validation" 500 "$ERR_ENV"
call "$B/chat/completions" -H 'Authorization: Bearer bad' -H 'x-mock-fault: status:500' -d "$CHAT"
check "auth wins over faults" 401 "j.error.code === 'invalid_api_key'"

START=$(date +%s%N)
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: slow:400' -d "$CHAT"
ELAPSED=$(( ($(date +%s%N) - START) / 1000000 ))
check "fault slow:400 (${ELAPSED}ms)" 200 "$ELAPSED >= 380 && j.choices[0].message.content === 'Mock reply from qwen-plus.'"
START=$(date +%s%N)
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: slow:300, status:503' -d "$CHAT"
ELAPSED=$(( ($(date +%s%N) - START) / 1000000 ))
check "fault slow + status combined (${ELAPSED}ms)" 503 "$ELAPSED >= 280"

call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: cut:3' -d "$STREAM"
if [ "$RC" != 0 ]; then ok "fault cut:3 stream: curl sees a broken transfer (rc=$RC)"; else not_ok "fault cut:3 stream: curl sees a broken transfer" "rc=0"; fi
check "fault cut:3 stream: exactly 3 events, no [DONE]" 200 "ev.length === 3 && !b.includes('[DONE]')"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: cut:2' -H 'x-mock-interval-ms: 30' -d "$STREAM"
check "fault cut:2 paced stream" 200 "ev.length === 2 && $RC !== 0"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: cut:0' -d "$STREAM"
check "fault cut:0 stream: headers only" 200 "b.length === 0 && $RC !== 0"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: cut:1' -d "$CHAT"
check "fault cut non-stream: half the body" 200 "$RC !== 0 && +h['content-length'] > buf.length && buf.length === Math.floor(+h['content-length'] / 2) && j === undefined"

# --------------------------------------------- more faults, Retry-After ---
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:402' -d "$CHAT"
check "fault status:402" 402 "$ERR_ENV && j.error.code === 'payment_required' && j.error.type === 'invalid_request_error'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:400-DataInspectionFailed' -d "$CHAT"
check "fault status:400-DataInspectionFailed" 400 "$ERR_ENV && j.error.code === 'DataInspectionFailed'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:400-Arrearage' -d "$CHAT"
check "fault status:400-Arrearage (case-insensitive)" 400 "$ERR_ENV && j.error.code === 'Arrearage'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429-throttling' -d "$CHAT"
check "fault status:429-throttling" 429 "$ERR_ENV && j.error.code === 'Throttling' && h['retry-after'] === '2'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429' -H 'x-mock-retry-after: none' -d "$CHAT"
check "x-mock-retry-after: none omits Retry-After" 429 "j.error.code === 'limit_requests' && !('retry-after' in h)"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:429-throttling' -H 'x-mock-retry-after: date:5' -d "$CHAT"
check "x-mock-retry-after: date:5 sends an HTTP-date 5-6 s ahead" 429 "/^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/.test(h['retry-after']) && (d => d >= 4000 && d <= 6500)(Date.parse(h['retry-after']) - Date.now())"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:503' -H 'x-mock-retry-after: 3' -d "$CHAT"
check "status:503 + x-mock-retry-after" 503 "h['retry-after'] === '3'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:503' -H 'x-mock-retry-after: none' -d "$CHAT"
check "status:503 + x-mock-retry-after: none" 503 "!('retry-after' in h)"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: status:503' -d "$CHAT"
check "status:503 alone: no Retry-After" 503 "!('retry-after' in h)"

# -------------------------------------------------------- keys elsewhere ---
call "$B/chat/completions" -H 'api-key: sk-mock' -d "$CHAT"
check "api-key header accepted" 200 "j.object === 'chat.completion'"
call "$B/models" -H 'X-Api-Key: sk-region-2'
check "x-api-key header accepted (any key of the list)" 200 "j.object === 'list'"
call "$B/models" -H 'api-key: sk-wrong'
check "api-key with a wrong key -> 401" 401 "j.error.code === 'invalid_api_key'"
call "$B/models" -H 'x-api-key: Bearer sk-mock'
check "x-api-key carries the key alone (no Bearer)" 401 "j.error.code === 'invalid_api_key'"
call "$B/models" -H 'Authorization: Bearer sk-wrong' -H 'api-key: sk-mock'
check "Authorization carrying a key wins over api-key" 401 "j.error.code === 'invalid_api_key'"
call "$B/models" -H 'Authorization: Basic abc' -H 'api-key: sk-mock'
check "non-Bearer Authorization carries no key: api-key used" 200 "j.object === 'list'"

# ------------------------------------------------------------- x-mock-plan ---
PLAN='1=status:503;2=status:429;3-4=slow:300,cut:2;7=;*=status:500'
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 1' -H "x-mock-plan: $PLAN" -d "$CHAT"
check "plan: attempt 1 -> 503" 503 "$ERR_ENV && j.error.code === 'ServiceUnavailable'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 2' -H "x-mock-plan: $PLAN" -d "$CHAT"
check "plan: attempt 2 -> 429" 429 "j.error.code === 'limit_requests' && h['retry-after'] === '2'"
for A in 3 4; do
    START=$(date +%s%N)
    call "$B/chat/completions" -H "$AUTH" -H "x-mock-attempt: $A" -H "x-mock-plan: $PLAN" -d "$STREAM"
    ELAPSED=$(( ($(date +%s%N) - START) / 1000000 ))
    check "plan: attempt $A in 3-4 -> slow:300,cut:2 (${ELAPSED}ms)" 200 "$ELAPSED >= 280 && ev.length === 2 && $RC !== 0"
done
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 9' -H "x-mock-plan: $PLAN" -d "$CHAT"
check "plan: attempt 9 -> * -> 500" 500 "j.error.code === 'InternalError'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 7' -H "x-mock-plan: $PLAN" -H 'x-mock-fault: status:502' -d "$CHAT"
check "plan: empty entry wins over x-mock-fault (served normally)" 200 "j.object === 'chat.completion'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 5' -H 'x-mock-plan: 1=status:503;2-4=status:500' -d "$CHAT"
check "plan: attempt not in the plan served normally" 200 "j.choices[0].message.content === 'Mock reply from qwen-plus.'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 5' -H 'x-mock-plan: 1=status:503' -H 'x-mock-fault: status:502' -d "$CHAT"
check "plan: no entry -> x-mock-fault applies" 502 "$ERR_ENV"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 1' -H 'x-mock-plan: 1=status:503' -H 'x-mock-fault: status:502' -d "$CHAT"
check "plan: entry wins over x-mock-fault" 503 "$ERR_ENV"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-plan: 1=status:503;*=status:500' -d "$CHAT"
check "plan ignored without x-mock-attempt" 200 "j.object === 'chat.completion'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: two' -H 'x-mock-plan: *=status:500' -d "$CHAT"
check "plan ignored with a non-numeric x-mock-attempt" 200 "j.object === 'chat.completion'"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 2' -H 'x-mock-plan: 1-3=status:500; 2=status:503' -d "$CHAT"
check "plan: first matching entry wins" 500 "$ERR_ENV"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 1' -H 'x-mock-plan: 1=status:429-quota' -d "$CHAT"
check "plan: status variants" 429 "j.error.code === 'insufficient_quota' && !('retry-after' in h)"
call "$B/models" -H "$AUTH" -H 'x-mock-attempt: 3' -H 'x-mock-plan: 3=status:404'
check "plan on GET /models" 404 "$ERR_ENV"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-attempt: 1' -H 'x-mock-plan: 1=status:500' -H 'x-mock-echo: digest' -d "$CHAT"
check "plan: echo is never faulted" 200 "j.length === $CHAT_LEN"

# ------------------------------------------------------------------ echo ---
printf '{"model":"x","a":"\xc3\xa9\\u0000"}\r\n\x00\xff' >"$T/raw"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-echo: body' --data-binary "@$T/raw"
check "echo body: exact bytes" 200 "h['content-type'] === 'application/octet-stream' && buf.equals(require('fs').readFileSync('$T/raw')) && h['x-request-id']"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-echo: digest' --data-binary "@$T/raw"
check "echo digest" 200 "j.length === require('fs').statSync('$T/raw').size && j.sha256 === sha256(require('fs').readFileSync('$T/raw'))"
call "$ROOT/anything/at/all?x=1" -H "$AUTH" -H 'x-mock-echo: request' -H 'X-Custom-Thing: Va lue' -H 'x-mock-fault: status:500' -d 'abc'
check "echo request (any path, before faults)" 200 "j.method === 'POST' && j.url === '/anything/at/all?x=1' && j.http_version === '1.1' && j.headers['x-custom-thing'] === 'Va lue' && j.headers.authorization === 'Bearer sk-mock' && j.body_length === 3 && Array.isArray(j.raw_headers)"
call --http1.0 "$B/models" -H "$AUTH" -H 'x-mock-echo: request'
check "echo request HTTP/1.0 GET" 200 "j.method === 'GET' && j.http_version === '1.0' && j.body_length === 0"
call "$B/models" -H 'Authorization: Bearer nope' -H 'x-mock-echo: request'
check "echo needs auth" 401 "j.error.code === 'invalid_api_key'"

# -------------------------------------------------------- big bodies etc ---
node -e '
const pad = "x".repeat(16 * 1024 * 1024);
process.stdout.write(JSON.stringify({model: "qwen-vl-max", messages: [{role: "user", content: pad}]}));' >"$T/big.json"
BIG=$(stat -c %s "$T/big.json")
call "$B/chat/completions" -H "$AUTH" -H 'Content-Type: application/json' --data-binary "@$T/big.json"
check "16 MB body accepted (usage from size)" 200 "j.usage.prompt_tokens === Math.ceil($BIG / 4)"
call "$B/chat/completions" -H "$AUTH" -H 'x-mock-echo: digest' --data-binary "@$T/big.json"
check "16 MB echo digest" 200 "j.length === $BIG && j.sha256 === sha256(require('fs').readFileSync('$T/big.json'))"

# clients that disconnect mid-stream / mid-upload / bad request lines must not crash the mock
curl -sS -o /dev/null --max-time 0.3 "$B/chat/completions" -H "$AUTH" -H 'x-mock-interval-ms: 100' -H 'x-mock-chunks: 20' -d "$STREAM" 2>/dev/null
curl -sS -o /dev/null --max-time 0.2 "$B/chat/completions" -H "$AUTH" -H 'x-mock-fault: slow:1000' -d "$CHAT" 2>/dev/null
node -e '
const net = require("net");
const u = new URL(process.argv[1]);
const s1 = net.connect(+u.port, u.hostname, () => { s1.write("POST /compatible-mode/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-mock\r\nContent-Length: 100000\r\n\r\n{\"model\":"); setTimeout(() => s1.destroy(), 50); });
const s2 = net.connect(+u.port, u.hostname, () => { s2.end("GARBAGE\r\n\r\n"); });
s2.on("data", () => {}); s2.on("error", () => {}); s1.on("error", () => {});
setTimeout(() => process.exit(0), 300);' "$ROOT"
sleep 0.3
call "$B/chat/completions" -H "$AUTH" -d "$CHAT"
check "still alive after abusive clients" 200 "j.object === 'chat.completion'"
if kill -0 "$MOCK_PID" 2>/dev/null; then ok "mock process alive"; else not_ok "mock process alive"; fi

# ------------------------------------------------------------- process ---
LINES=$(wc -l <"$T/mock.out")
if [ "$LINES" = 1 ] && grep -qE '^mock-dashscope listening on http://127\.0\.0\.1:[0-9]+$' "$T/mock.out"; then
    ok "exactly one stdout line"
else
    not_ok "exactly one stdout line" "$(cat "$T/mock.out")"
fi
if [ -z "$VERBOSE" ]; then
    if [ ! -s "$T/mock.out.err" ]; then ok "no per-request output without --verbose"; else not_ok "no per-request output without --verbose" "$(head -c 300 "$T/mock.out.err")"; fi
fi

kill -TERM "$MOCK_PID"; wait "$MOCK_PID"; RCODE=$?; MOCK_PID=
if [ "$RCODE" = 0 ]; then ok "SIGTERM exits 0"; else not_ok "SIGTERM exits 0" "rc=$RCODE"; fi

# scenario records: on a mock of its own with one worker (the record is per process)
start_mock "$T/mock3.out" --port 0 --workers 1 --key sk-mock --key sk-region-2 || exit 1
MOCK_PID=$STARTED_PID
R=$STARTED_URL
RB="$R/compatible-mode/v1"
HOSTPORT=${R#http://}
SC() { call "$R/__mock/scenario/$1"; }

SC never-seen
check "scenario: unknown -> {requests:[]}, no auth needed" 200 "b === '{\"requests\":[]}'"
call "$R/__mock/scenario/bad%20id"
check "scenario: invalid id -> 400" 400 "$ERR_ENV"
call "$R/__mock/scenario/x" -X POST
check "scenario: POST -> 405" 405 "h.allow === 'GET'"

printf '%s' '{"model":"qwen-plus","messages":[{"role":"user","content":"Hi"}],"meta":{"model":"inner"}}' >"$T/s1"
printf '%s' '{"model":"qwen-max","messages":[{"role":"user","content":"Hi"}],"meta":{"model":"inner"}}' >"$T/s2"
printf '%s' '{"model":"","messages":[{"role":"user","content":"Hi"}],"meta":{"model":"inner"}}' >"$T/s0"
printf '%s' '{ "stream" : true , "a":[1,{"model":"no"},"]}"], "model" : "qwen-turbo","x":1}' >"$T/s3"
printf '%s' '{ "stream" : true , "a":[1,{"model":"no"},"]}"], "model" : "","x":1}' >"$T/s3sans"
P1='1=status:503;2=status:429'
call "$RB/chat/completions" -H "$AUTH" -H 'x-mock-scenario: fo-1' -H 'x-mock-attempt: 1' -H "x-mock-plan: $P1" \
    -H 'Cookie: c=1' -H 'X-Trace: abc' -H 'Content-Type: application/json' --data-binary "@$T/s1"
check "scenario fo-1 attempt 1 (503)" 503
sleep 0.2
call "$RB/chat/completions" -H 'api-key: sk-region-2' -H 'x-mock-scenario: fo-1' -H 'x-mock-attempt: 2' -H "x-mock-plan: $P1" --data-binary "@$T/s2"
check "scenario fo-1 attempt 2 (429)" 429
call "$RB/chat/completions" -H 'x-api-key: sk-mock' -H 'x-mock-scenario: fo-1' -H 'x-mock-attempt: 3' -H "x-mock-plan: $P1" --data-binary "@$T/s3"
check "scenario fo-1 attempt 3 (200 stream)" 200 "content(ev) === 'Mock reply from qwen-turbo.'"
call "$RB/chat/completions" -H 'Authorization: Bearer sk-bad' -H 'x-mock-scenario: fo-1' -H 'x-mock-attempt: 4' -d 'x'
check "scenario fo-1 attempt 4 (401)" 401
call "$RB/models" -H "$AUTH" -H 'x-mock-scenario: fo-1'
check "scenario fo-1 no attempt header" 200
call "$R/__mock/scenario/fo-1?x=1" -H 'x-mock-scenario: fo-1' -H 'x-mock-attempt: 1'
check "scenario fo-1 record: 5 requests in order" 200 "Object.keys(j).join() === 'requests' && j.requests.length === 5 && j.requests.map(r => r.attempt).join() === '1,2,3,4,' && j.requests[4].attempt === null && j.requests.map(r => r.status).join() === '503,429,200,401,200'"
check "scenario record: field names" 200 "Object.keys(j.requests[0]).join() === 'attempt,method,host,path,credential_header,credential_sha256,credential_headers,model,stream,body_sha256,body_sans_model_sha256,body_length,headers,status,t_ms'"
check "scenario record: method/host/path" 200 "(r => r.method === 'POST' && r.host === '$HOSTPORT' && r.path === '/compatible-mode/v1/chat/completions')(j.requests[0]) && j.requests[4].method === 'GET' && j.requests[4].path === '/compatible-mode/v1/models'"
check "scenario record: credential header + sha256 prefix of the key alone" 200 "(([a, b, c, d]) => a.credential_header === 'authorization' && a.credential_sha256 === sha256('sk-mock').slice(0, 16) && b.credential_header === 'api-key' && b.credential_sha256 === sha256('sk-region-2').slice(0, 16) && c.credential_header === 'x-api-key' && c.credential_sha256 === a.credential_sha256 && d.credential_header === 'authorization' && d.credential_sha256 === sha256('sk-bad').slice(0, 16) && JSON.stringify(b.credential_headers) === '[\"api-key\"]')(j.requests)"
check "scenario record: model/stream/body_length" 200 "(([a, b, c, d, e]) => a.model === 'qwen-plus' && a.stream === false && b.model === 'qwen-max' && c.model === 'qwen-turbo' && c.stream === true && d.model === null && e.model === null && e.body_length === 0 && a.body_length === require('fs').statSync('$T/s1').size)(j.requests)"
check "scenario record: body_sha256 of the raw body" 200 "j.requests[0].body_sha256 === sha256(require('fs').readFileSync('$T/s1')) && j.requests[3].body_sha256 === sha256('x')"
check "scenario record: body_sans_model_sha256 equal across a model splice" 200 "j.requests[0].body_sans_model_sha256 === j.requests[1].body_sans_model_sha256 && j.requests[0].body_sha256 !== j.requests[1].body_sha256 && j.requests[0].body_sans_model_sha256 === sha256(require('fs').readFileSync('$T/s0'))"
check "scenario record: sans-model replaces the first top-level model only" 200 "j.requests[2].body_sans_model_sha256 === sha256(require('fs').readFileSync('$T/s3sans')) && j.requests[3].body_sans_model_sha256 === j.requests[3].body_sha256"
check "scenario record: headers without credentials or cookie" 200 "(h0 => h0['x-trace'] === 'abc' && h0['x-mock-scenario'] === 'fo-1' && h0['x-mock-attempt'] === '1' && h0.host === '$HOSTPORT' && h0['content-type'] === 'application/json' && !('authorization' in h0) && !('cookie' in h0))(j.requests[0].headers) && !('api-key' in j.requests[1].headers) && !('x-api-key' in j.requests[2].headers) && j.requests.every(r => !JSON.stringify(r.headers).includes('sk-'))"
check "scenario record: t_ms from attempt 1" 200 "j.requests[0].t_ms < 50 && j.requests[1].t_ms >= 190 && j.requests.every((r, i) => i === 0 || r.t_ms >= j.requests[i - 1].t_ms)"

call "$RB/chat/completions" -H "$AUTH" -H 'x-mock-scenario: fo-1' -H 'x-mock-attempt: 1' -d "$CHAT"
SC fo-1
check "scenario: attempt 1 resets the record" 200 "j.requests.length === 1 && j.requests[0].status === 200 && j.requests[0].t_ms < 50"

curl -sS -o /dev/null --max-time 0.2 "$RB/chat/completions" -H "$AUTH" -H 'x-mock-scenario: gone' -H 'x-mock-attempt: 1' -H 'x-mock-plan: 1=slow:2000' -d "$CHAT" 2>/dev/null
SC gone
check "scenario: a request the mock never answered has status null" 200 "j.requests.length === 1 && j.requests[0].status === null && j.requests[0].model === 'qwen-plus'"

call "$RB/models" -H "$AUTH" -H 'x-mock-scenario: bad id!'
check "scenario: invalid id in the header is not recorded" 200
call "$R/__mock/scenario/bad%20id!"
check "scenario: invalid id not kept" 400

curl -sS --max-time 20 "$RB/models?[1-70]" -H "$AUTH" -H 'x-mock-scenario: many' >/dev/null
SC many
check "scenario: at most 64 requests kept (dropped counted)" 200 "j.requests.length === 64 && j.dropped === 6 && j.requests[63].path === '/compatible-mode/v1/models?64'"

node -e '
const http = require("http");
const u = new URL(process.argv[1]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let next = 0, done = 0;
const one = () => {
  const i = next++;
  if (i > 1000) return;
  http.get({ host: u.hostname, port: u.port, path: "/compatible-mode/v1/models", agent,
    headers: { authorization: "Bearer sk-mock", "x-mock-scenario": "cap-" + i } }, (res) => {
    res.resume(); res.on("end", () => { if (++done === 1001) process.exit(0); one(); });
  }).on("error", (e) => { console.error(e.message); process.exit(1); });
};
one();' "$R"
SC cap-0
check "scenario: 1001st scenario drops the oldest" 200 "j.requests.length === 0"
SC cap-1000
check "scenario: newest kept" 200 "j.requests.length === 1"
SC cap-1
check "scenario: second oldest kept" 200 "j.requests.length === 1"
if [ ! -s "$T/mock3.out.err" ]; then ok "scenario mock: no stderr output"; else not_ok "scenario mock: no stderr output" "$(head -c 300 "$T/mock3.out.err")"; fi
kill -TERM "$MOCK_PID"; wait "$MOCK_PID"; MOCK_PID=

# env: MOCK_DASHSCOPE_KEYS / MOCK_DASHSCOPE_PORT(=0), SIGINT
MOCK_DASHSCOPE_KEYS='sk-env1, sk-env2' MOCK_DASHSCOPE_PORT=0 start_mock "$T/mock2.out" || exit 1
P2=$STARTED_PID
MOCK_PID=$P2
call "$STARTED_URL/compatible-mode/v1/models" -H 'Authorization: Bearer sk-env2'
check "MOCK_DASHSCOPE_KEYS second key" 200 "j.object === 'list'"
call "$STARTED_URL/compatible-mode/v1/models" -H 'Authorization: Bearer sk-mock'
check "MOCK_DASHSCOPE_KEYS replaces the default key" 401 "j.error.code === 'invalid_api_key'"
kill -INT "$P2"; wait "$P2"; RCODE=$?; MOCK_PID=
if [ "$RCODE" = 0 ]; then ok "SIGINT exits 0"; else not_ok "SIGINT exits 0" "rc=$RCODE"; fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
