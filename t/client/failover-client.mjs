#!/usr/bin/env node
// The official `openai` npm client through the gateway's failover (issue 8),
// run by t/143-failover-client.t against the DashScope mock:
//
//   node t/client/failover-client.mjs --base-url http://127.0.0.1:PORT/v1 --api-key KEY
//
// The gateway must define the models below, each with its own deployments
// (so that one check's cooldowns do not steer another's), the first at a
// region whose upstream model id ends in "-sg", the second in "-us":
//   fo-a: a-sg, a-us    fo-b: b-sg, b-us    fo-c: c-sg, c-us
//   fo-e: e-sg, e-us    fo-f: f-sg, f-us    fo-k: k-sg, k-us
//   fo-gone: two dead ports
// and send `proxy_set_header X-Mock-Attempt $qwen_attempt;` so that the
// mock's x-mock-plan (faults per attempt) applies.
//
// Prints `ok - <what>` / `not ok - <what>: <details>` per check and a final
// `N passed, M failed`; exits 1 if anything failed, 2 on bad usage.

import OpenAI, { APIError } from 'openai';

function usage(msg) {
  process.stderr.write(`${msg}\nusage: node failover-client.mjs --base-url URL --api-key KEY\n`);
  process.exit(2);
}

const opt = { baseURL: undefined, apiKey: undefined };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--base-url') opt.baseURL = process.argv[++i];
  else if (a === '--api-key') opt.apiKey = process.argv[++i];
  else usage(`unknown argument: ${a}`);
}
if (!opt.baseURL || !opt.apiKey) usage('--base-url and --api-key are required');

const client = new OpenAI({
  baseURL: opt.baseURL, apiKey: opt.apiKey, timeout: 10000, maxRetries: 0,
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

const messages = [{ role: 'user', content: 'Say hello.' }];
const plan = (p, extra = {}) => ({ headers: { 'x-mock-plan': p, ...extra } });
const joined = (chunks) => chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join('');
// no key of the gateway's, in whatever the client was given
const keyless = (x) => !/sk-mock/.test(JSON.stringify(x) ?? '');

async function main() {
  // 1. a clean answer through a failover (503 at sg)
  try {
    const { data, response } = await client.chat.completions
      .create({ model: 'fo-a', messages }, plan('1=status:503')).withResponse();
    check('a failover: the next deployment answers',
      data.choices?.[0]?.message?.content === 'Mock reply from a-us.', show(data));
    check('a failover: the answer names its model', data.model === 'a-us', show(data.model));
    check('a failover: X-Qwen-Deployment names it',
      response.headers.get('x-qwen-deployment') === 'us/a-us',
      show(response.headers.get('x-qwen-deployment')));
    check('a failover: usage counted', data.usage?.total_tokens > 0, show(data.usage));
  } catch (e) {
    check('a failover: the next deployment answers', false, describe(e));
  }

  // 2. a stream through a failover (502 at sg): a clean stream of the next
  try {
    const stream = await client.chat.completions.create(
      { model: 'fo-b', messages, stream: true }, plan('1=status:502'));
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    check('a stream after a failover: the next deployment\'s content',
      joined(chunks) === 'Mock reply from b-us.', show(joined(chunks)));
    check('a stream after a failover: it finishes',
      chunks.some((c) => c.choices?.[0]?.finish_reason === 'stop'), show(chunks.at(-1)));
  } catch (e) {
    check('a stream after a failover: the next deployment\'s content', false, describe(e));
  }

  // 3. a 429 with Retry-After: 1 is waited out by the gateway, not the client
  try {
    const t0 = Date.now();
    const r = await client.chat.completions.create(
      { model: 'fo-f', messages }, plan('1=status:429', { 'x-mock-retry-after': '1' }));
    const ms = Date.now() - t0;
    check('a 429: answered by the same deployment after the wait',
      r.choices?.[0]?.message?.content === 'Mock reply from f-sg.', show(r));
    check('a 429: after about 1 s', ms >= 900 && ms < 3000, `${ms} ms`);
  } catch (e) {
    check('a 429: answered by the same deployment after the wait', false, describe(e));
  }

  // 4. the chain exhausted by upstream answers: the last one, a clean APIError
  try {
    const r = await client.chat.completions.create({ model: 'fo-c', messages }, plan('*=status:503'));
    check('an exhausted chain: an APIError', false, `answered ${show(r)}`);
  } catch (e) {
    check('an exhausted chain: an APIError 503', e instanceof APIError && e.status === 503, describe(e));
    check('an exhausted chain: the upstream\'s own error', e.code === 'ServiceUnavailable', describe(e));
  }

  // 5. the chain exhausted by nginx's own errors: 502 upstream_unavailable
  try {
    const r = await client.chat.completions.create({ model: 'fo-gone', messages });
    check('no deployment reachable: an APIError', false, `answered ${show(r)}`);
  } catch (e) {
    check('no deployment reachable: an APIError 502', e instanceof APIError && e.status === 502, describe(e));
    check('no deployment reachable: code upstream_unavailable', e.code === 'upstream_unavailable', describe(e));
    check('no deployment reachable: a message', typeof e.error?.message === 'string'
      && e.error.message.length > 0, show(e.error));
    check('no deployment reachable: no key in the error', keyless(e.error), show(e.error));
  }

  // 6. every deployment refusing the gateway's key: the last 401 as it
  // came, then at once a 503 all_deployments_cooling_down
  try {
    const r = await client.chat.completions.create({ model: 'fo-k', messages }, plan('*=status:401'));
    check('every key refused: an APIError', false, `answered ${show(r)}`);
  } catch (e) {
    check('every key refused: the last upstream 401', e instanceof APIError && e.status === 401
      && e.code === 'invalid_api_key', describe(e));
  }
  try {
    const r = await client.chat.completions.create({ model: 'fo-k', messages });
    check('every deployment out: an APIError', false, `answered ${show(r)}`);
  } catch (e) {
    check('every deployment out: an APIError 503', e instanceof APIError && e.status === 503, describe(e));
    check('every deployment out: code all_deployments_cooling_down',
      e.code === 'all_deployments_cooling_down', describe(e));
    check('every deployment out: no key in the error', keyless(e.error), show(e.error));
  }

  // 7. a stream cut after its first events: the error event raises an APIError
  const got = [];
  try {
    const stream = await client.chat.completions.create(
      { model: 'fo-e', messages, stream: true }, plan('1=cut:3'));
    for await (const c of stream) got.push(c);
    check('a cut stream: an error is raised', false,
      `the stream ended without one after ${got.length} chunks: ${show(joined(got))}`);
  } catch (e) {
    check('a cut stream: an APIError', e instanceof APIError, describe(e));
    check('a cut stream: code stream_interrupted', e.code === 'stream_interrupted', describe(e));
    check('a cut stream: type server_error', e.type === 'server_error', describe(e));
    check('a cut stream: after the events that came', got.length === 3
      && joined(got) === 'Mock reply ', `${got.length} chunks: ${show(joined(got))}`);
    check('a cut stream: from the deployment that began it, no failover',
      got.every((c) => c.model === 'e-sg'), show(got.map((c) => c.model)));
  }

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.log(`not ok - unexpected: ${describe(e)}`); process.exit(1); });
