#!/usr/bin/env node
// Mock of Alibaba Cloud DashScope's OpenAI-compatible API (/compatible-mode/v1).
//
// Pure node (>= 18), no npm dependencies. Used by `make run`, the Test::Nginx
// suite and the OpenAI SDK client tests. Fast by design: keep-alive, no
// per-request output unless --verbose (then to stderr), HTTP/1.0 and 1.1.
//
//   node t/mock/dashscope.js [--host 127.0.0.1] [--port 8081] [--key KEY ...]
//                            [--workers N] [--verbose]
//
// --port 0 picks a free port; the single stdout line tells which:
//   mock-dashscope listening on http://HOST:PORT
//
// Environment (CLI wins): MOCK_DASHSCOPE_HOST, MOCK_DASHSCOPE_PORT,
// MOCK_DASHSCOPE_KEYS (comma-separated), MOCK_DASHSCOPE_WORKERS. Default key:
// sk-mock. --workers N (default 1) forks N processes sharing the socket.
//
// Request headers understood (all optional):
//   x-mock-echo: body|digest|request   answer with what was received (after auth)
//   x-mock-fault: item[,item...]       status:NNN[-variant], slow:MS, cut:N
//   x-mock-retry-after: S|none|date:S  Retry-After for status:429 (default 2)
//   x-mock-attempt: N                  attempt number (sent by the gateway)
//   x-mock-plan: 1=f,f;2-3=f;*=f       x-mock-fault items per attempt number
//   x-mock-scenario: ID                record the request; read the record with
//                                      GET /__mock/scenario/ID (no auth)
//   x-mock-usage: P,C[,K[,R]]          exact prompt/completion/cached/reasoning tokens
//   x-mock-set-cookie: VALUE           answers carry Set-Cookie: VALUE
//   x-mock-chunks: N                   reply is "w1 w2 ... wN"
//   x-mock-reply: TEXT                 reply is TEXT (percent-decoded)
//   x-mock-interval-ms: N              pace SSE events N ms apart (default 0)
//   x-mock-write-bytes: N              write an SSE stream N bytes at a time,
//                                      1 ms apart (events split everywhere)
// See t/mock/README.md for the full contract.
'use strict';

const http = require('http');
const crypto = require('crypto');

const PREFIX = '/compatible-mode/v1';
const MAX_BODY = 64 * 1024 * 1024;      // bodies above this get 413 (16 MB must work)
const MAX_EMBED_BATCH = 10;
const MAX_SCENARIOS = 1000;             // recorded scenarios kept (oldest dropped)
const MAX_SCENARIO_REQUESTS = 64;       // requests recorded per scenario
const SCENARIO_ID = /^[A-Za-z0-9._-]{1,64}$/;
const BEARER = /^\s*Bearer\s+(\S+)\s*$/i;
const DEFAULT_DIMENSIONS = 1024;
const MODELS_CREATED = 1700000000;
const MODELS = [
  'qwen-max', 'qwen-plus', 'qwen-turbo', 'qwen-flash', 'qwen3-max',
  'qwen3-coder-plus', 'qwen3-coder-flash', 'qwq-plus', 'qwen-vl-max',
  'qwen-vl-plus', 'text-embedding-v3', 'text-embedding-v4',
];

/* ------------------------------------------------------------------ CLI -- */

function usage(code) {
  (code ? process.stderr : process.stdout).write(
    'usage: node dashscope.js [--host 127.0.0.1] [--port 8081] [--key KEY ...] [--workers N] [--verbose]\n' +
    '  env: MOCK_DASHSCOPE_HOST, MOCK_DASHSCOPE_PORT, MOCK_DASHSCOPE_KEYS=k1,k2, MOCK_DASHSCOPE_WORKERS\n');
  process.exit(code);
}

function parseArgs(argv) {
  const opt = {
    host: process.env.MOCK_DASHSCOPE_HOST || '127.0.0.1',
    port: process.env.MOCK_DASHSCOPE_PORT !== undefined && process.env.MOCK_DASHSCOPE_PORT !== ''
      ? process.env.MOCK_DASHSCOPE_PORT : '8081',
    keys: [],
    workers: process.env.MOCK_DASHSCOPE_WORKERS || '1',
    verbose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    const val = () => {
      if (v !== undefined) return v;
      if (i + 1 >= argv.length) { process.stderr.write(`${a} needs a value\n`); usage(2); }
      return argv[++i];
    };
    switch (a) {
      case '--host': opt.host = val(); break;
      case '--port': opt.port = val(); break;
      case '--key': opt.keys.push(val()); break;
      case '--workers': opt.workers = val(); break;
      case '--verbose': case '-v': opt.verbose = true; break;
      case '--help': case '-h': usage(0); break;
      default: process.stderr.write(`unknown argument: ${argv[i]}\n`); usage(2);
    }
  }
  if (opt.keys.length === 0) {
    const env = process.env.MOCK_DASHSCOPE_KEYS;
    opt.keys = env ? env.split(',').map((s) => s.trim()).filter(Boolean) : [];
    if (opt.keys.length === 0) opt.keys = ['sk-mock'];
  }
  const p = Number(opt.port);
  if (!Number.isInteger(p) || p < 0 || p > 65535) {
    process.stderr.write(`invalid port: ${opt.port}\n`);
    usage(2);
  }
  opt.port = p;
  const w = Number(opt.workers);
  if (!Number.isInteger(w) || w < 1 || w > 64) {
    process.stderr.write(`invalid --workers: ${opt.workers}\n`);
    usage(2);
  }
  opt.workers = w;
  return opt;
}

const OPT = parseArgs(process.argv.slice(2));
const KEYS = new Set(OPT.keys);

/* -------------------------------------------------------------- helpers -- */

function newRequestId() { return crypto.randomUUID(); }

function errorBody(rid, message, type, code, param) {
  return JSON.stringify({
    error: { message, type, param: param === undefined ? null : param, code },
    request_id: rid,
  });
}

function intHeader(req, name, min, max) {
  const v = req.headers[name];
  if (v === undefined) return undefined;
  const n = Number(String(v).trim());
  if (!Number.isFinite(n)) return undefined;
  return Math.min(max, Math.max(min, Math.floor(n)));
}

function parseFaults(h) {
  const f = {};
  if (!h) return f;
  for (const item of String(h).split(',')) {
    const s = item.trim();
    if (!s) continue;
    const c = s.indexOf(':');
    const k = (c < 0 ? s : s.slice(0, c)).trim().toLowerCase();
    const v = c < 0 ? '' : s.slice(c + 1).trim();
    if (k === 'status') f.status = v.toLowerCase();
    else if (k === 'slow') { const n = Number(v); if (Number.isFinite(n) && n > 0) f.slow = n; }
    else if (k === 'cut') { const n = Number(v); if (Number.isFinite(n) && n >= 0) f.cut = Math.floor(n); }
  }
  return f;
}

// x-mock-attempt: a non-negative integer, else null.
function attemptNumber(v) {
  if (v === undefined) return null;
  const m = /^\s*(\d{1,9})\s*$/.exec(v);
  return m ? Number(m[1]) : null;
}

// x-mock-plan: "KEY=items;KEY=items;..." with KEY N, A-B or *. Returns the
// items (x-mock-fault syntax, possibly empty) of the first entry matching
// attempt n, or undefined when no entry matches.
function planEntry(plan, n) {
  for (const part of String(plan).split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    let hit = false;
    if (k === '*') hit = true;
    else {
      const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(k);
      if (m) hit = m[2] === undefined ? n === Number(m[1]) : n >= Number(m[1]) && n <= Number(m[2]);
    }
    if (hit) return part.slice(eq + 1);
  }
  return undefined;
}

// The fault items that apply: the plan's entry for the attempt, else x-mock-fault.
function faultSpec(req) {
  const h = req.headers;
  if (h['x-mock-plan'] !== undefined && h['x-mock-attempt'] !== undefined) {
    const n = attemptNumber(h['x-mock-attempt']);
    if (n !== null) {
      const e = planEntry(h['x-mock-plan'], n);
      if (e !== undefined) return e;
    }
  }
  return h['x-mock-fault'];
}

// The credential: Authorization: Bearer KEY, else api-key: KEY, else
// x-api-key: KEY (the first of these headers that carries a key).
// Returns [header name, key] or null.
function credential(h) {
  const a = h.authorization;
  if (a !== undefined) {
    const m = BEARER.exec(a);
    if (m) return ['authorization', m[1]];
  }
  let k = h['api-key'];
  if (k !== undefined && (k = k.trim()) !== '') return ['api-key', k];
  k = h['x-api-key'];
  if (k !== undefined && (k = k.trim()) !== '') return ['x-api-key', k];
  return null;
}

// Each word keeps its trailing whitespace (leading whitespace goes with the
// first word), so pieces.join('') === text.
function splitWords(text) {
  if (text === '') return [];
  const m = text.match(/^\s*\S+\s*|\S+\s*/g);
  return m || [text];
}

function replyText(req, model) {
  const n = intHeader(req, 'x-mock-chunks', 0, 1000000);
  if (n !== undefined) {
    const w = new Array(n);
    for (let i = 0; i < n; i++) w[i] = 'w' + (i + 1);
    return w.join(' ');
  }
  const r = req.headers['x-mock-reply'];
  if (r !== undefined) {
    try { return decodeURIComponent(r); } catch (e) { return r; }
  }
  return `Mock reply from ${model}.`;
}

function reasoningText(model) { return `Mock reasoning about ${model}.`; }

function usageOverride(req) {
  const h = req.headers['x-mock-usage'];
  if (!h) return null;
  const p = String(h).split(',').map((s) => Number(s.trim()));
  if (p.length < 2 || p.some((n) => !Number.isFinite(n))) return null;
  return { prompt: p[0], completion: p[1], cached: p.length > 2 ? p[2] : undefined, reasoning: p.length > 3 ? p[3] : undefined };
}

function buildUsage(prompt, completion, cached, reasoning) {
  const u = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached || 0 },
  };
  if (reasoning !== undefined) u.completion_tokens_details = { reasoning_tokens: reasoning };
  return u;
}

// FNV-1a 32-bit, then mulberry32: deterministic vectors per (model, text).
function fnv1a(str) {
  let h = 0x811c9dc5;
  for (let i = 0; i < str.length; i++) {
    h ^= str.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function embedVector(model, text, dims) {
  let a = fnv1a(model + '\u0000' + text) || 1;
  const v = new Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const x = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
    v[i] = x;
    norm += x * x;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < dims; i++) v[i] = Math.round((v[i] / norm) * 1e6) / 1e6;
  return v;
}

function toBase64Float32(v) {
  const f = new Float32Array(v);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

/* ------------------------------------------------------------- responses -- */

const FAULTS = {
  '400': [400, 'Mock fault: invalid parameter.', 'invalid_request_error', 'invalid_parameter_error'],
  '400-arrearage': [400, 'Access denied, please make sure your account is in good standing.', 'Arrearage', 'Arrearage'],
  '400-inspection': [400, 'Input data may contain inappropriate content.', 'data_inspection_failed', 'data_inspection_failed'],
  '400-datainspectionfailed': [400, 'Input data may contain inappropriate content.', 'data_inspection_failed', 'DataInspectionFailed'],
  '401': [401, 'Incorrect API key provided. ', 'invalid_request_error', 'invalid_api_key'],
  '402': [402, 'Payment required: your account has an overdue payment.', 'invalid_request_error', 'payment_required'],
  '403': [403, 'Access denied.', 'invalid_request_error', 'AccessDenied'],
  '404': null, // model_not_found, built with the model name
  '429': [429, 'Requests rate limit exceeded, please try again later.', 'limit_requests', 'limit_requests'],
  '429-ratequota': [429, 'Requests rate limit exceeded, please try again later.', 'Throttling.RateQuota', 'Throttling.RateQuota'],
  '429-allocation': [429, 'Allocated quota exceeded, please increase your quota limit.', 'Throttling.AllocationQuota', 'Throttling.AllocationQuota'],
  '429-throttling': [429, 'Requests throttling triggered.', 'Throttling', 'Throttling'],
  '429-quota': [429, 'Free allocated quota exceeded.', 'insufficient_quota', 'insufficient_quota'],
  '500': [500, 'An internal error has occured, please try your request again later.', 'internal_error', 'InternalError'],
  '502': [502, 'Bad gateway.', 'internal_error', 'BadGateway'],
  '503': [503, 'The service is temporarily unavailable, please try again later.', 'service_unavailable', 'ServiceUnavailable'],
  '504': [504, 'Gateway timeout.', 'internal_error', 'GatewayTimeout'],
};

class Ctx {
  constructor(req, res) {
    this.req = req;
    this.res = res;
    this.rid = newRequestId();
    this.faults = null;
    this.rec = null;                     // scenario record entry (x-mock-scenario)
    this.closed = false;
    this.timers = [];
    this.start = OPT.verbose ? process.hrtime.bigint() : 0n;
    res.on('close', () => {
      this.closed = true;
      for (const t of this.timers) clearTimeout(t);
    });
  }

  later(ms, fn) {
    if (this.closed) return;
    const t = setTimeout(fn, ms);
    this.timers.push(t);
  }

  // Run fn now, or after the slow:MS fault.
  delayed(fn) {
    const slow = this.faults && this.faults.slow;
    if (slow) this.later(slow, () => { if (!this.closed) fn(); });
    else fn();
  }

  headers(extra) {
    const h = { 'x-request-id': this.rid };
    // a provider behind a load balancer or WAF that sets a cookie
    const cookie = this.req.headers['x-mock-set-cookie'];
    if (cookie !== undefined) h['set-cookie'] = cookie;
    if (extra) Object.assign(h, extra);
    return h;
  }

  // Complete body (Buffer or string). Honours cut:N (first half, then destroy).
  send(status, body, contentType, extra, allowCut) {
    this.delayed(() => {
      const res = this.res;
      const buf = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
      const h = this.headers(extra);
      h['content-type'] = contentType;
      h['content-length'] = buf.length;
      if (this.rec) this.rec.status = status;
      res.writeHead(status, h);
      if (allowCut && this.faults && this.faults.cut !== undefined) {
        cutAfter(res, buf.subarray(0, buf.length >> 1));
        return;
      }
      res.end(buf);
    });
  }

  json(status, obj, extra, allowCut) {
    this.send(status, typeof obj === 'string' ? obj : JSON.stringify(obj), 'application/json', extra, allowCut);
  }

  error(status, message, type, code, extra) {
    this.json(status, errorBody(this.rid, message, type, code), extra, false);
  }

  badRequest(message, code) {
    this.error(400, message, 'invalid_request_error', code || 'invalid_parameter_error');
  }

  // SSE: events written in one burst, or paced by x-mock-interval-ms;
  // cut:N writes N events then destroys the socket.
  stream(events) {
    const interval = intHeader(this.req, 'x-mock-interval-ms', 0, 3600000) || 0;
    const cut = this.faults ? this.faults.cut : undefined;
    this.delayed(() => {
      const res = this.res;
      if (this.rec) this.rec.status = 200;
      res.writeHead(200, this.headers({
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
      }));
      const limit = cut === undefined ? events.length : Math.min(cut, events.length);
      const pieces = intHeader(this.req, 'x-mock-write-bytes', 1, 1 << 20) || 0;
      if (pieces > 0 && cut === undefined) {
        // the whole stream, written N bytes at a time, each on its own tick,
        // so that the gateway reads events split at every offset
        const payload = Buffer.from(events.join(''), 'utf8');
        let off = 0;
        const piece = () => {
          if (this.closed) return;
          if (off >= payload.length) { res.end(); return; }
          res.write(payload.subarray(off, off + pieces));
          off += pieces;
          this.later(1, piece);
        };
        piece();
        return;
      }
      if (interval === 0) {
        const payload = limit === events.length ? events.join('') : events.slice(0, limit).join('');
        if (cut === undefined) res.end(payload);
        else cutAfter(res, payload);
        return;
      }
      const finish = () => { if (cut === undefined) res.end(); else cutAfter(res, ''); };
      if (limit === 0) { finish(); return; }
      let i = 0;
      const step = () => {
        if (this.closed) return;
        res.write(events[i++]);
        if (i >= limit) finish();
        else this.later(interval, step);
      };
      step();
    });
  }
}

// Write data (possibly empty: headers only), then destroy the socket once it
// has been handed to the kernel, leaving the body unterminated.
function cutAfter(res, data) {
  const sock = res.socket;
  if (data.length) res.write(data);
  else res.flushHeaders();
  if (!sock) return;
  sock.write('', () => sock.destroy());
}

// x-mock-retry-after: "none" -> no header (null); "date:S" -> an HTTP-date at
// least S seconds ahead (rounded up to a whole second); anything else as is.
function retryAfter(ra) {
  const s = String(ra).trim();
  if (s.toLowerCase() === 'none') return null;
  const m = /^date:\s*(-?\d+(?:\.\d+)?)$/i.exec(s);
  if (m) return new Date(Math.ceil((Date.now() + Number(m[1]) * 1000) / 1000) * 1000).toUTCString();
  return s;
}

function faultResponse(ctx, status, model) {
  if (status === '404') {
    ctx.error(404, `The model \`${model}\` does not exist or you do not have access to it.`,
      'invalid_request_error', 'model_not_found');
    return;
  }
  let f = FAULTS[status];
  if (!f) {
    const n = parseInt(status, 10);
    if (!(n >= 400 && n <= 599)) return false;
    f = [n, `Mock fault: status ${n}.`, 'mock_fault', `mock_fault_${n}`];
  }
  const extra = {};
  const ra = ctx.req.headers['x-mock-retry-after'];
  let v;
  if (f[0] === 429 && status !== '429-quota') v = ra !== undefined ? retryAfter(ra) : '2';
  else if ((f[0] === 503 || f[0] === 429) && ra !== undefined) v = retryAfter(ra);
  if (v !== undefined && v !== null) extra['retry-after'] = v;
  ctx.error(f[0], f[1], f[2], f[3], extra);
  return true;
}

/* ------------------------------------------------------------- handlers -- */

function handleModels(ctx, id) {
  if (id === undefined) {
    ctx.json(200, {
      object: 'list',
      data: MODELS.map((m) => ({ id: m, object: 'model', created: MODELS_CREATED, owned_by: 'system' })),
    }, null, true);
    return;
  }
  if (MODELS.includes(id)) {
    ctx.json(200, { id, object: 'model', created: MODELS_CREATED, owned_by: 'system' }, null, true);
    return;
  }
  faultResponse(ctx, '404', id);
}

function chunk(id, created, model, choices, usage) {
  return 'data: ' + JSON.stringify({
    id, object: 'chat.completion.chunk', created, model, choices, usage, system_fingerprint: null,
  }) + '\n\n';
}

function handleChat(ctx, body, bodyLen) {
  const req = ctx.req;
  const model = body.model;
  const stream = body.stream === true;
  const thinking = body.enable_thinking === true;
  const includeUsage = stream && body.stream_options !== null && typeof body.stream_options === 'object' &&
    body.stream_options.include_usage === true;

  const text = replyText(req, model);
  const words = splitWords(text);
  const rText = thinking ? reasoningText(model) : '';
  const rWords = thinking ? splitWords(rText) : [];

  const ov = usageOverride(req);
  const usage = ov
    ? buildUsage(ov.prompt, ov.completion, ov.cached, ov.reasoning !== undefined ? ov.reasoning : (thinking ? rWords.length : undefined))
    : buildUsage(Math.ceil(bodyLen / 4), words.length + rWords.length, 0, thinking ? rWords.length : undefined);

  const id = 'chatcmpl-' + crypto.randomUUID().replace(/-/g, '');
  const created = Math.floor(Date.now() / 1000);

  if (!stream) {
    const message = { role: 'assistant', content: text };
    if (thinking) message.reasoning_content = rText;
    ctx.json(200, {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message, finish_reason: 'stop', logprobs: null }],
      usage,
      system_fingerprint: null,
    }, null, true);
    return;
  }

  const events = [];
  const first = { role: 'assistant', content: '' };
  if (thinking) first.reasoning_content = '';
  events.push(chunk(id, created, model, [{ index: 0, delta: first, finish_reason: null, logprobs: null }], null));
  for (const w of rWords) {
    events.push(chunk(id, created, model,
      [{ index: 0, delta: { content: null, reasoning_content: w }, finish_reason: null, logprobs: null }], null));
  }
  for (const w of words) {
    events.push(chunk(id, created, model,
      [{ index: 0, delta: { content: w }, finish_reason: null, logprobs: null }], null));
  }
  events.push(chunk(id, created, model, [{ index: 0, delta: {}, finish_reason: 'stop', logprobs: null }], null));
  if (includeUsage) events.push(chunk(id, created, model, [], usage));
  events.push('data: [DONE]\n\n');
  ctx.stream(events);
}

function handleEmbeddings(ctx, body) {
  const model = body.model;
  let input = body.input;
  if (input === undefined || input === null) return ctx.badRequest("Missing required parameter: 'input'.");
  if (typeof input === 'string') input = [input];
  if (!Array.isArray(input) || input.length === 0 || input.some((s) => typeof s !== 'string')) {
    return ctx.badRequest("'input' must be a string or a non-empty array of strings.", 'InvalidParameter');
  }
  if (input.length > MAX_EMBED_BATCH) {
    return ctx.badRequest(
      `Value error, batch size is invalid, it should not be larger than ${MAX_EMBED_BATCH}.: input.contents`,
      'InvalidParameter');
  }
  let dims = DEFAULT_DIMENSIONS;
  if (body.dimensions !== undefined && body.dimensions !== null) {
    dims = body.dimensions;
    if (!Number.isInteger(dims) || dims < 1 || dims > 8192) {
      return ctx.badRequest("'dimensions' must be an integer between 1 and 8192.", 'InvalidParameter');
    }
  }
  const fmt = body.encoding_format === undefined || body.encoding_format === null ? 'float' : body.encoding_format;
  if (fmt !== 'float' && fmt !== 'base64') {
    return ctx.badRequest("'encoding_format' must be 'float' or 'base64'.", 'InvalidParameter');
  }
  const data = input.map((s, index) => {
    const v = embedVector(model, s, dims);
    return { object: 'embedding', index, embedding: fmt === 'base64' ? toBase64Float32(v) : v };
  });
  const ov = usageOverride(ctx.req);
  let prompt = 0;
  for (const s of input) prompt += Math.max(1, Math.ceil(Buffer.byteLength(s) / 4));
  if (ov) prompt = ov.prompt;
  ctx.json(200, {
    object: 'list',
    data,
    model,
    usage: { prompt_tokens: prompt, total_tokens: prompt },
    id: ctx.rid,
  }, null, true);
}

/* ------------------------------------------------------------ scenarios -- */

// x-mock-scenario: ID -> { t0, requests: [...], dropped }. Per process. A Map
// keeps insertion order: the first key is the oldest scenario.
const SCENARIOS = new Map();
const NO_RECORD_HEADERS = new Set(['authorization', 'api-key', 'x-api-key', 'cookie']);
const CRED_HEADERS = ['authorization', 'api-key', 'x-api-key'];

function sha256hex(...parts) {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

// Called when the request's headers arrive. Returns the entry (its body fields
// are filled in by recordBody, its status when the mock answers) or null.
function recordStart(req) {
  const id = req.headers['x-mock-scenario'];
  if (!SCENARIO_ID.test(id) || req.url.startsWith('/__mock/')) return null;
  const attempt = attemptNumber(req.headers['x-mock-attempt']);
  const now = performance.now();
  let s = SCENARIOS.get(id);
  if (s === undefined || attempt === 1) {
    if (s !== undefined) SCENARIOS.delete(id);
    else if (SCENARIOS.size >= MAX_SCENARIOS) SCENARIOS.delete(SCENARIOS.keys().next().value);
    s = { t0: now, requests: [], dropped: 0 };
    SCENARIOS.set(id, s);
  }
  const cred = credential(req.headers);
  const all = rawHeaderMap(req);
  const headers = {};
  for (const k in all) if (!NO_RECORD_HEADERS.has(k)) headers[k] = all[k];
  const rec = {
    attempt,
    method: req.method,
    host: req.headers.host !== undefined ? req.headers.host : null,
    path: req.url,
    credential_header: cred ? cred[0] : null,
    credential_sha256: cred ? sha256hex(cred[1]).slice(0, 16) : null,
    credential_headers: CRED_HEADERS.filter((k) => k in all),
    model: null,
    stream: false,
    body_sha256: null,
    body_sans_model_sha256: null,
    body_length: 0,
    headers,
    status: null,
    t_ms: Math.round((now - s.t0) * 10) / 10,
  };
  if (s.requests.length < MAX_SCENARIO_REQUESTS) s.requests.push(rec);
  else s.dropped++;
  return rec;
}

function recordBody(rec, body, len, tooBig) {
  rec.body_length = len;
  if (tooBig) return;
  const b = body || Buffer.alloc(0);
  rec.body_sha256 = sha256hex(b);
  let json = null;
  try { json = JSON.parse(b.toString('utf8')); } catch (e) { /* not JSON */ }
  if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
    if (typeof json.model === 'string') rec.model = json.model;
    rec.stream = json.stream === true;
  }
  const r = modelValueRange(b);
  rec.body_sans_model_sha256 = r ? sha256hex(b.subarray(0, r[0]), '""', b.subarray(r[1])) : rec.body_sha256;
}

// Byte range [start, end) of the first top-level "model" string value (the
// quotes included) of a JSON object in buffer b, or null. A textual scan.
function isWs(c) { return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d; }
function skipWs(b, i) { while (i < b.length && isWs(b[i])) i++; return i; }
function skipString(b, i) {          // b[i] is '"'; the index after the closing quote, or -1
  for (i++; i < b.length; i++) {
    const c = b[i];
    if (c === 0x5c) i++;
    else if (c === 0x22) return i + 1;
  }
  return -1;
}
function skipValue(b, i) {
  const c = b[i];
  if (c === 0x22) return skipString(b, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (; i < b.length; i++) {
      const d = b[i];
      if (d === 0x22) { i = skipString(b, i); if (i < 0) return -1; i--; }
      else if (d === 0x7b || d === 0x5b) depth++;
      else if ((d === 0x7d || d === 0x5d) && --depth === 0) return i + 1;
    }
    return -1;
  }
  while (i < b.length && !isWs(b[i]) && b[i] !== 0x2c && b[i] !== 0x7d && b[i] !== 0x5d) i++;
  return i;
}
function isModelKey(b, s, e) {
  if (e - s === 7) return b.toString('latin1', s, e) === '"model"';
  if (b.indexOf(0x5c, s) < 0 || b.indexOf(0x5c, s) >= e) return false;
  try { return JSON.parse(b.toString('utf8', s, e)) === 'model'; } catch (x) { return false; }
}
function modelValueRange(b) {
  let i = skipWs(b, 0);
  if (b[i] !== 0x7b) return null;
  i = skipWs(b, i + 1);
  for (;;) {
    if (b[i] !== 0x22) return null;
    const ks = i;
    i = skipString(b, i);
    if (i < 0) return null;
    const ke = i;
    i = skipWs(b, i);
    if (b[i] !== 0x3a) return null;
    i = skipWs(b, i + 1);
    const vs = i;
    i = skipValue(b, i);
    if (i < 0 || i === vs) return null;
    if (b[vs] === 0x22 && isModelKey(b, ks, ke)) return [vs, i];
    i = skipWs(b, i);
    if (b[i] !== 0x2c) return null;
    i = skipWs(b, i + 1);
  }
}

// GET /__mock/scenario/ID -> {"requests":[...]} (plus "dropped":N when more
// than MAX_SCENARIO_REQUESTS requests came). No auth, no faults.
function handleMock(ctx) {
  const req = ctx.req;
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const m = /^\/__mock\/scenario\/([^/]*)$/.exec(path);
  if (!m) {
    return ctx.error(404, `Unknown request URL: ${req.method} ${path}. Please check the URL for typos.`,
      'invalid_request_error', 'unknown_url');
  }
  if (req.method !== 'GET') {
    return ctx.error(405, `Method ${req.method} not allowed for ${path}.`, 'invalid_request_error',
      'method_not_allowed', { allow: 'GET' });
  }
  let id;
  try { id = decodeURIComponent(m[1]); } catch (e) { id = m[1]; }
  if (!SCENARIO_ID.test(id)) return ctx.badRequest('Invalid scenario id (want [A-Za-z0-9._-]{1,64}).');
  const s = SCENARIOS.get(id);
  const out = { requests: s ? s.requests : [] };
  if (s && s.dropped) out.dropped = s.dropped;
  return ctx.json(200, out);
}

/* --------------------------------------------------------------- router -- */

function rawHeaderMap(req) {
  const out = {};
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    out[k] = k in out ? out[k] + ', ' + raw[i + 1] : raw[i + 1];
  }
  return out;
}

function handleEcho(ctx, mode, body, bodyLen) {
  const req = ctx.req;
  if (mode === 'body') {
    ctx.send(200, body || Buffer.alloc(0), 'application/octet-stream', null, false);
  } else if (mode === 'digest') {
    const sha256 = crypto.createHash('sha256').update(body || Buffer.alloc(0)).digest('hex');
    ctx.json(200, { length: bodyLen, sha256 });
  } else {
    const rh = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) rh.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    ctx.json(200, {
      method: req.method,
      url: req.url,
      http_version: req.httpVersion,
      headers: rawHeaderMap(req),
      raw_headers: rh,
      body_length: bodyLen,
    });
  }
}

function route(ctx, body, bodyLen, tooBig) {
  const req = ctx.req;

  // 0. the scenario record (no auth)
  if (req.url.startsWith('/__mock/')) return handleMock(ctx);

  // 1. auth
  const cred = credential(req.headers);
  if (cred === null || !KEYS.has(cred[1])) {
    return ctx.error(401, 'Incorrect API key provided. ', 'invalid_request_error', 'invalid_api_key');
  }

  // 2. echo (any method, any path)
  const echo = req.headers['x-mock-echo'];
  if (echo !== undefined) {
    const mode = String(echo).trim().toLowerCase();
    if (mode === 'body' || mode === 'digest' || mode === 'request') {
      if (tooBig) return ctx.error(413, 'Request body too large.', 'invalid_request_error', 'request_too_large');
      return handleEcho(ctx, mode, body, bodyLen);
    }
  }

  // 3. routing
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  let ep = null;
  if (path.startsWith(PREFIX + '/')) ep = path.slice(PREFIX.length);
  let allow = null;
  let modelId;
  if (ep === '/chat/completions' || ep === '/embeddings') allow = 'POST';
  else if (ep === '/models') allow = 'GET';
  else if (ep !== null && ep.startsWith('/models/') && ep.length > 8 && ep.indexOf('/', 8) < 0) {
    allow = 'GET';
    try { modelId = decodeURIComponent(ep.slice(8)); } catch (e) { modelId = ep.slice(8); }
    ep = '/models/{id}';
  }
  if (allow === null) {
    return ctx.error(404, `Unknown request URL: ${req.method} ${path}. Please check the URL for typos.`,
      'invalid_request_error', 'unknown_url');
  }

  ctx.faults = parseFaults(faultSpec(req));
  if (req.method !== allow) {
    return ctx.error(405, `Method ${req.method} not allowed for ${path}.`, 'invalid_request_error',
      'method_not_allowed', { allow });
  }
  if (tooBig) return ctx.error(413, 'Request body too large.', 'invalid_request_error', 'request_too_large');

  // 4. body (POST only): a JSON object
  let json = null;
  let parseError = null;
  if (allow === 'POST') {
    if (!body || bodyLen === 0) parseError = 'Request body is empty.';
    else {
      try { json = JSON.parse(body.toString('utf8')); } catch (e) { parseError = 'Request body is not valid JSON.'; }
      if (!parseError && (json === null || typeof json !== 'object' || Array.isArray(json))) {
        parseError = 'Request body must be a JSON object.';
        json = null;
      }
    }
  }

  // 5. status faults (win over body validation)
  if (ctx.faults.status) {
    const model = json && typeof json.model === 'string' ? json.model : (modelId !== undefined ? modelId : '');
    if (faultResponse(ctx, ctx.faults.status, model) !== false) return undefined;
  }

  if (ep === '/models') return handleModels(ctx);
  if (ep === '/models/{id}') return handleModels(ctx, modelId);

  if (parseError) return ctx.badRequest(parseError);
  if (json.model === undefined || json.model === null || json.model === '') {
    return ctx.badRequest("Missing required parameter: 'model'.");
  }
  if (typeof json.model !== 'string') return ctx.badRequest("'model' must be a string.");

  if (ep === '/chat/completions') return handleChat(ctx, json, bodyLen);
  return handleEmbeddings(ctx, json);
}

function onRequest(req, res) {
  const ctx = new Ctx(req, res);
  if (req.headers['x-mock-scenario'] !== undefined) ctx.rec = recordStart(req);
  res.on('error', () => {});
  req.on('error', () => {});
  if (OPT.verbose) {
    res.on('close', () => {
      const ms = Number(process.hrtime.bigint() - ctx.start) / 1e6;
      process.stderr.write(`${new Date().toISOString()} ${req.method} ${req.url} HTTP/${req.httpVersion} ` +
        `${res.headersSent ? res.statusCode : '-'} ${ms.toFixed(1)}ms ${ctx.rid}` +
        `${res.writableFinished ? '' : ' (closed early)'}\n`);
    });
  }
  const chunks = [];
  let len = 0;
  let tooBig = false;
  req.on('data', (c) => {
    len += c.length;
    if (len > MAX_BODY) { tooBig = true; chunks.length = 0; } else chunks.push(c);
  });
  req.on('end', () => {
    if (ctx.closed) return;
    const body = tooBig ? null : (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, len));
    if (ctx.rec) recordBody(ctx.rec, body, len, tooBig);
    try {
      route(ctx, body, len, tooBig);
    } catch (e) {
      process.stderr.write(`mock-dashscope: internal error: ${e && e.stack}\n`);
      if (!res.headersSent) {
        try { ctx.error(500, 'Mock internal error.', 'internal_error', 'InternalError'); } catch (e2) { res.destroy(); }
      } else res.destroy();
    }
  });
}

/* ---------------------------------------------------------------- start -- */

const server = http.createServer(onRequest);
server.keepAliveTimeout = 75000;   // longer than nginx's upstream keepalive_timeout (60s)
server.headersTimeout = 80000;
server.requestTimeout = 0;         // no limit for slow uploads
server.maxHeadersCount = 0;
server.on('connection', (sock) => { sock.setNoDelay(true); });
server.on('clientError', (err, sock) => {
  if (sock.writable && !sock.destroyed && err.code !== 'ECONNRESET') {
    const rid = newRequestId();
    const b = errorBody(rid, 'Bad request.', 'invalid_request_error', 'bad_request');
    sock.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-request-id: ${rid}\r\n` +
      `content-length: ${Buffer.byteLength(b)}\r\nconnection: close\r\n\r\n${b}`);
  } else sock.destroy();
});
server.on('error', (err) => {
  process.stderr.write(`mock-dashscope: ${err.message}\n`);
  process.exit(1);
});

function listeningLine(a) {
  const host = a.addressType === 6 || a.family === 'IPv6' || a.family === 6 ? `[${a.address}]` : a.address;
  return `mock-dashscope listening on http://${host}:${a.port}\n`;
}

const cluster = require('cluster');
if (OPT.workers > 1 && cluster.isPrimary) {
  // Several worker processes share the listening socket (--workers N).
  let ready = 0;
  let stopping = false;
  for (let i = 0; i < OPT.workers; i++) cluster.fork();
  cluster.on('listening', (w, addr) => {
    if (++ready === OPT.workers) process.stdout.write(listeningLine(addr));
  });
  cluster.on('exit', (w, code, signal) => {
    if (stopping) return;
    process.stderr.write(`mock-dashscope: worker ${w.process.pid} exited (${signal || code})\n`);
    stopping = true;
    for (const id in cluster.workers) cluster.workers[id].process.kill();
    process.exit(1);
  });
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      stopping = true;
      for (const id in cluster.workers) cluster.workers[id].process.kill();
      process.exit(0);
    });
  }
} else {
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
  if (cluster.isWorker) process.on('disconnect', () => process.exit(0));
  server.listen({ host: OPT.host, port: OPT.port, backlog: 4096 }, () => {
    if (!cluster.isWorker) process.stdout.write(listeningLine(server.address()));
  });
}
