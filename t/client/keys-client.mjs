#!/usr/bin/env node
// The official `openai` npm client against the gateway's client keys
// (issue 9), run by t/152-keys-client.t against the DashScope mock:
//
//   node t/client/keys-client.mjs --base-url http://127.0.0.1:PORT/v1 \
//       --client-key ok=KEY --client-key rpm=KEY --client-key tpm=KEY \
//       --client-key budget=KEY --client-key models=KEY \
//       --client-key disabled=KEY --client-key unknown=KEY
//
// The keys, as the keys file of t/152 gives them:
//   ok:       rpm 100, tpm 1000000     rpm:    rpm 2
//   tpm:      tpm 1000                 budget: a budget of 0.000001 USD a day
//   models:   models ["k-chat"]        disabled: "disabled": true
//   unknown:  in no keys file
// and the gateway must know the models k-chat and k-other.
//
// Prints `ok - <what>` / `not ok - <what>: <details>` per check and a final
// `N passed, M failed`; exits 1 if anything failed, 2 on bad usage.

import OpenAI, {
  APIError, AuthenticationError, NotFoundError, RateLimitError,
} from 'openai';

function usage(msg) {
  process.stderr.write(`${msg}\nusage: node keys-client.mjs --base-url URL --client-key NAME=KEY ...\n`);
  process.exit(2);
}

const names = ['ok', 'rpm', 'tpm', 'budget', 'models', 'disabled', 'unknown'];
const opt = { baseURL: undefined, keys: {} };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--base-url') opt.baseURL = process.argv[++i];
  else if (a === '--client-key') {
    const m = /^(\w+)=(.+)$/.exec(process.argv[++i] ?? '');
    if (!m || !names.includes(m[1])) usage(`bad --client-key: ${process.argv[i]}`);
    opt.keys[m[1]] = m[2];
  } else usage(`unknown argument: ${a}`);
}
if (!opt.baseURL) usage('--base-url is required');
for (const n of names) if (!opt.keys[n]) usage(`--client-key ${n}=KEY is required`);

const client = (apiKey, extra = {}) => new OpenAI({
  baseURL: opt.baseURL, apiKey, timeout: 10000, maxRetries: 0, ...extra,
});

let passed = 0;
let failed = 0;
function check(what, cond, details) {
  if (cond) { passed++; console.log(`ok - ${what}`); }
  else { failed++; console.log(`not ok - ${what}: ${details}`); }
}
function show(x) {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : (s.length > 300 ? s.slice(0, 300) + '...' : s);
}
function describe(e) {
  if (e instanceof APIError) {
    return `${e.constructor.name} status=${e.status} code=${e.code} type=${e.type}: ${e.message}`;
  }
  return e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e);
}
function headersOf(h) {
  const o = {};
  if (h && typeof h.forEach === 'function') h.forEach((v, k) => { o[k] = v; });
  return o;
}
// no client key anywhere in what the client was given
const keyless = (x) => !Object.values(opt.keys).some((k) => (JSON.stringify(x) ?? '').includes(k));

const messages = [{ role: 'user', content: 'Say hello.' }];
const usageOf = (p, c) => ({ headers: { 'x-mock-usage': `${p},${c}` } });

// the call must fail with an error of class cls; returns the error
async function refused(what, cls, fn) {
  try {
    const r = await fn();
    check(`${what}: ${cls.name}`, false, `answered ${show(r)}`);
    return null;
  } catch (e) {
    check(`${what}: ${cls.name}`, e instanceof cls, describe(e));
    check(`${what}: an APIError with the error body`, e instanceof APIError
      && typeof e.error?.message === 'string' && e.error.message.length > 0, describe(e));
    check(`${what}: no key in the error`, keyless({ e: e.error, h: headersOf(e.headers) }),
      show(e.error));
    return e;
  }
}

async function main() {
  // 1. a good key: an answer, with the rate-limit headers
  try {
    const { data, response } = await client(opt.keys.ok).chat.completions
      .create({ model: 'k-chat', messages, max_tokens: 50 }).withResponse();
    check('a valid key: answered', data.choices?.[0]?.message?.content === 'Mock reply from k-chat.',
      show(data));
    check('a valid key: x-ratelimit-limit-requests 100',
      response.headers.get('x-ratelimit-limit-requests') === '100',
      show(headersOf(response.headers)));
    check('a valid key: x-ratelimit-remaining-requests 99',
      response.headers.get('x-ratelimit-remaining-requests') === '99',
      show(headersOf(response.headers)));
    check('a valid key: x-ratelimit-limit-tokens 1000000',
      response.headers.get('x-ratelimit-limit-tokens') === '1000000',
      show(headersOf(response.headers)));
    check('a valid key: x-ratelimit-reset-tokens in seconds',
      /^\d+s$/.test(response.headers.get('x-ratelimit-reset-tokens') ?? ''),
      show(headersOf(response.headers)));
  } catch (e) {
    check('a valid key: answered', false, describe(e));
  }

  // 2. 401s: no key (the client's Authorization taken away), an unknown
  // key, a disabled one
  let e = await refused('no key', AuthenticationError, () => client('unused', {
    defaultHeaders: { Authorization: null },
  }).chat.completions.create({ model: 'k-chat', messages }));
  if (e) {
    check('no key: 401 missing_api_key', e.status === 401 && e.code === 'missing_api_key', describe(e));
  }
  for (const which of ['unknown', 'disabled']) {
    e = await refused(`a key ${which}`, AuthenticationError,
      () => client(opt.keys[which]).chat.completions.create({ model: 'k-chat', messages }));
    if (e) {
      check(`a key ${which}: 401 invalid_api_key`, e.status === 401 && e.code === 'invalid_api_key',
        describe(e));
      check(`a key ${which}: type invalid_request_error`, e.type === 'invalid_request_error',
        describe(e));
    }
  }

  // 3. a model the key may not use: the NotFoundError of an unknown model
  e = await refused('a model not allowed', NotFoundError,
    () => client(opt.keys.models).chat.completions.create({ model: 'k-other', messages }));
  if (e) {
    check('a model not allowed: 404 model_not_found', e.status === 404
      && e.code === 'model_not_found', describe(e));
    check('a model not allowed: the message of an unknown model',
      e.error?.message === 'The model `k-other` does not exist or you do not have access to it.',
      show(e.error));
  }

  // 4. requests per minute: the third of two
  const rpm = client(opt.keys.rpm);
  for (const n of [1, 2]) {
    try {
      await rpm.chat.completions.create({ model: 'k-chat', messages });
      check(`rpm 2: request ${n} answered`, true);
    } catch (err) {
      check(`rpm 2: request ${n} answered`, false, describe(err));
    }
  }
  e = await refused('rpm 2: the third', RateLimitError,
    () => rpm.chat.completions.create({ model: 'k-chat', messages }));
  if (e) {
    const h = e.headers;
    check('rpm 2: 429 rate_limit_exceeded', e.status === 429 && e.code === 'rate_limit_exceeded'
      && e.type === 'requests', describe(e));
    check('rpm 2: err.headers has Retry-After', /^\d+$/.test(h?.get('retry-after') ?? '')
      && Number(h.get('retry-after')) >= 1 && Number(h.get('retry-after')) <= 60,
      show(headersOf(h)));
    check('rpm 2: err.headers has x-ratelimit-limit-requests 2',
      h?.get('x-ratelimit-limit-requests') === '2', show(headersOf(h)));
    check('rpm 2: err.headers has x-ratelimit-remaining-requests 0',
      h?.get('x-ratelimit-remaining-requests') === '0', show(headersOf(h)));
    check('rpm 2: err.headers has x-ratelimit-reset-requests, as Retry-After',
      h?.get('x-ratelimit-reset-requests') === `${h?.get('retry-after')}s`, show(headersOf(h)));
  }

  // 5. a stream whose reservation cannot fit: refused before any event
  const events = [];
  e = await refused('a stream too large for tpm 1000', RateLimitError, async () => {
    const stream = await client(opt.keys.tpm).chat.completions.create(
      { model: 'k-chat', messages, stream: true, max_tokens: 5000 });
    for await (const c of stream) events.push(c);
    return events;
  });
  if (e) {
    check('a stream too large: 429 rate_limit_exceeded, tokens', e.status === 429
      && e.code === 'rate_limit_exceeded' && e.type === 'tokens', describe(e));
    check('a stream too large: "Request too large"', /^Request too large: /.test(e.error?.message ?? ''),
      show(e.error));
    check('a stream too large: no event came', events.length === 0, show(events));
    check('a stream too large: err.headers has x-ratelimit-limit-tokens 1000',
      e.headers?.get('x-ratelimit-limit-tokens') === '1000', show(headersOf(e.headers)));
  }
  try {
    const stream = await client(opt.keys.tpm).chat.completions.create(
      { model: 'k-chat', messages, stream: true, max_tokens: 100 });
    const got = [];
    for await (const c of stream) got.push(c);
    check('a stream that fits tpm 1000: streamed',
      got.map((c) => c.choices?.[0]?.delta?.content ?? '').join('') === 'Mock reply from k-chat.',
      show(got.at(-1)));
  } catch (err) {
    check('a stream that fits tpm 1000: streamed', false, describe(err));
  }

  // 6. a budget spent: insufficient_quota
  const budget = client(opt.keys.budget);
  try {
    await budget.chat.completions.create({ model: 'k-chat', messages }, usageOf(1000, 0));
    check('a budget: the first request spends it', true);
  } catch (err) {
    check('a budget: the first request spends it', false, describe(err));
  }
  e = await refused('a budget spent', RateLimitError,
    () => budget.chat.completions.create({ model: 'k-chat', messages }));
  if (e) {
    check('a budget spent: 429 insufficient_quota', e.status === 429
      && e.code === 'insufficient_quota' && e.type === 'insufficient_quota', describe(e));
    check('a budget spent: the message names the reset',
      /resets at \d+ \(seconds since 1970, UTC\)/.test(e.error?.message ?? ''), show(e.error));
    check('a budget spent: Retry-After until then', Number(e.headers?.get('retry-after')) > 0,
      show(headersOf(e.headers)));
  }

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => { console.log(`not ok - unexpected: ${describe(err)}`); process.exit(1); });
