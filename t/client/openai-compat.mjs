#!/usr/bin/env node
// OpenAI SDK compatibility checks, run with the real `openai` package against
// the qwen gateway (…/v1) or directly against the DashScope mock
// (http://127.0.0.1:PORT/compatible-mode/v1).
//
//   node t/client/openai-compat.mjs --base-url URL --api-key KEY [options]
//
// Prints `ok - <what>` / `not ok - <what>: <details>` per check and a final
// `N passed, M failed`; exits 1 if anything failed, 2 on bad usage.
// Run `node t/client/openai-compat.mjs --help` for the options.

import fs from 'node:fs';
import OpenAI, { APIError } from 'openai';

const HELP = `usage: node openai-compat.mjs --base-url URL --api-key KEY [options]

  --base-url URL               API base, e.g. http://127.0.0.1:8080/v1 (env OPENAI_BASE_URL)
  --api-key KEY                bearer key (env OPENAI_API_KEY)
  --model M                    chat model to send (default qwen-plus)
  --expect-model E             model the responses must name (default: --model)
  --expect-model-prefix P      responses' model must start with P (instead of
                               equality, unless --expect-model is also given)
  --embedding-model M          embedding model (default text-embedding-v4)
  --expect-embedding-model E   model the embedding response must name (default: not checked)
  --unknown-model M            model expected to give 404 model_not_found
                               (default no-such-model-xyz)
  --mock-faults                send "x-mock-fault: status:404" with the unknown-model
                               request (needed when talking to the mock directly)
  --header 'Name: value'       extra header on every request (repeatable)
  --json-out FILE              write the raw chunks of the plain stream (check 3) as JSON
  --loose                      do not require stream content == non-stream content
                               (for a real, non-deterministic upstream)
  --skip LIST                  comma-separated: models,chat,stream,stream-usage,embeddings,unknown-model
  --timeout MS                 per-request timeout (default 30000)
  --max-retries N              SDK retries (default 0: see every error)
  --verbose                    print responses
`;

function parseArgs(argv) {
  const o = {
    baseURL: process.env.OPENAI_BASE_URL,
    apiKey: process.env.OPENAI_API_KEY,
    model: 'qwen-plus',
    expectModel: undefined,
    expectModelPrefix: undefined,
    embeddingModel: 'text-embedding-v4',
    expectEmbeddingModel: undefined,
    unknownModel: 'no-such-model-xyz',
    mockFaults: false,
    headers: {},
    jsonOut: undefined,
    loose: false,
    skip: new Set(),
    timeout: 30000,
    maxRetries: 0,
    verbose: false,
  };
  const flags = {
    '--mock-faults': () => { o.mockFaults = true; },
    '--loose': () => { o.loose = true; },
    '--verbose': () => { o.verbose = true; },
    '--help': () => { process.stdout.write(HELP); process.exit(0); },
  };
  const withValue = {
    '--base-url': (v) => { o.baseURL = v; },
    '--api-key': (v) => { o.apiKey = v; },
    '--model': (v) => { o.model = v; },
    '--expect-model': (v) => { o.expectModel = v; },
    '--expect-model-prefix': (v) => { o.expectModelPrefix = v; },
    '--embedding-model': (v) => { o.embeddingModel = v; },
    '--expect-embedding-model': (v) => { o.expectEmbeddingModel = v; },
    '--unknown-model': (v) => { o.unknownModel = v; },
    '--header': (v) => {
      const c = v.indexOf(':');
      if (c <= 0) usageError(`bad --header (want 'Name: value'): ${v}`);
      o.headers[v.slice(0, c).trim()] = v.slice(c + 1).trim();
    },
    '--json-out': (v) => { o.jsonOut = v; },
    '--skip': (v) => { for (const s of v.split(',')) if (s.trim()) o.skip.add(s.trim()); },
    '--timeout': (v) => { o.timeout = Number(v); },
    '--max-retries': (v) => { o.maxRetries = Number(v); },
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    if (flags[a] && v === undefined) { flags[a](); continue; }
    if (withValue[a]) {
      if (v === undefined) {
        if (i + 1 >= argv.length) usageError(`${a} needs a value`);
        v = argv[++i];
      }
      withValue[a](v);
      continue;
    }
    usageError(`unknown argument: ${argv[i]}`);
  }
  if (!o.baseURL) usageError('--base-url is required');
  if (!o.apiKey) usageError('--api-key is required');
  if (!Number.isFinite(o.timeout) || o.timeout <= 0) usageError('bad --timeout');
  if (!Number.isInteger(o.maxRetries) || o.maxRetries < 0) usageError('bad --max-retries');
  if (o.expectModel === undefined && o.expectModelPrefix === undefined) o.expectModel = o.model;
  return o;
}

function usageError(msg) {
  process.stderr.write(`${msg}\n\n${HELP}`);
  process.exit(2);
}

const opt = parseArgs(process.argv.slice(2));

const client = new OpenAI({
  baseURL: opt.baseURL,
  apiKey: opt.apiKey,
  timeout: opt.timeout,
  maxRetries: opt.maxRetries,
  defaultHeaders: opt.headers,
});

let passed = 0;
let failed = 0;

function ok(what) { passed++; console.log(`ok - ${what}`); }
function notOk(what, details) { failed++; console.log(`not ok - ${what}: ${details}`); }
function check(what, cond, details) { if (cond) ok(what); else notOk(what, details); }
function show(x) {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : (s.length > 300 ? s.slice(0, 300) + '...' : s);
}
function describeError(e) {
  if (e instanceof APIError) {
    return `${e.constructor.name} status=${e.status} code=${e.code} request_id=${e.requestID}: ${e.message}`;
  }
  return e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e);
}
function verbose(label, x) { if (opt.verbose) console.log(`# ${label}: ${JSON.stringify(x)}`); }

function checkModel(what, model) {
  if (opt.expectModel !== undefined) {
    check(`${what}: model is ${show(opt.expectModel)}`, model === opt.expectModel, `got ${show(model)}`);
  }
  if (opt.expectModelPrefix !== undefined) {
    check(`${what}: model starts with ${show(opt.expectModelPrefix)}`,
      typeof model === 'string' && model.startsWith(opt.expectModelPrefix), `got ${show(model)}`);
  }
}

const messages = [
  { role: 'system', content: 'You are a terse assistant.' },
  { role: 'user', content: 'Say hello in five words.' },
];

function joinContent(chunks) {
  let s = '';
  for (const c of chunks) {
    const d = c && Array.isArray(c.choices) && c.choices[0] && c.choices[0].delta;
    if (d && typeof d.content === 'string') s += d.content;
  }
  return s;
}

function checkContentEqual(what, streamed, reference) {
  if (opt.loose) {
    check(`${what}: streamed content is non-empty`, streamed.length > 0, 'empty');
  } else if (reference === undefined) {
    notOk(`${what}: streamed content equals the non-stream content`, 'no non-stream content to compare with');
  } else {
    check(`${what}: streamed content equals the non-stream content`, streamed === reference,
      `streamed ${show(streamed)} vs non-stream ${show(reference)}`);
  }
}

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

async function main() {
  // 1. models.list()
  if (!opt.skip.has('models')) {
    try {
      const page = await client.models.list();
      verbose('models', page.data);
      check('models.list() returns a non-empty list', Array.isArray(page.data) && page.data.length > 0,
        `data: ${show(page.data)}`);
    } catch (e) {
      notOk('models.list() returns a non-empty list', describeError(e));
    }
  }

  // 2. non-stream chat
  let reference;
  if (!opt.skip.has('chat')) {
    try {
      const r = await client.chat.completions.create({ model: opt.model, messages });
      verbose('chat', r);
      const content = r && r.choices && r.choices[0] && r.choices[0].message && r.choices[0].message.content;
      check('chat: choices[0].message.content is non-empty', typeof content === 'string' && content.length > 0,
        `got ${show(content)}`);
      if (typeof content === 'string') reference = content;
      check('chat: object is chat.completion', r.object === 'chat.completion', `got ${show(r.object)}`);
      check('chat: usage.total_tokens > 0', r.usage && r.usage.total_tokens > 0, `usage ${show(r.usage)}`);
      checkModel('chat', r.model);
    } catch (e) {
      notOk('chat.completions.create (non-stream)', describeError(e));
    }
  }

  // 3. stream without usage
  if (!opt.skip.has('stream')) {
    try {
      const chunks = await collect(await client.chat.completions.create({ model: opt.model, messages, stream: true }));
      verbose('stream chunks', chunks);
      if (opt.jsonOut) fs.writeFileSync(opt.jsonOut, JSON.stringify(chunks, null, 2) + '\n');
      check('stream: received chunks', chunks.length > 0, 'no chunks');
      check('stream: every chunk is a chat.completion.chunk',
        chunks.every((c) => c.object === 'chat.completion.chunk'),
        `objects ${show([...new Set(chunks.map((c) => c.object))])}`);
      checkContentEqual('stream', joinContent(chunks), reference);
      const withUsage = chunks.filter((c) => c.usage !== null && c.usage !== undefined);
      check('stream: no chunk carries a usage', withUsage.length === 0, `${withUsage.length} did: ${show(withUsage[0])}`);
      check('stream: a chunk has a finish_reason',
        chunks.some((c) => c.choices && c.choices.some((ch) => ch.finish_reason)), 'none');
      const models = [...new Set(chunks.map((c) => c.model))];
      check('stream: all chunks name one model', models.length === 1, `models ${show(models)}`);
      checkModel('stream', models[0]);
    } catch (e) {
      notOk('chat.completions.create (stream)', describeError(e));
    }
  }

  // 4. stream with stream_options.include_usage
  if (!opt.skip.has('stream-usage')) {
    try {
      const chunks = await collect(await client.chat.completions.create({
        model: opt.model, messages, stream: true, stream_options: { include_usage: true },
      }));
      verbose('stream-usage chunks', chunks);
      const last = chunks[chunks.length - 1];
      check('stream+usage: last chunk has empty choices',
        last && Array.isArray(last.choices) && last.choices.length === 0, `last ${show(last)}`);
      check('stream+usage: last chunk usage.total_tokens > 0',
        last && last.usage && last.usage.total_tokens > 0, `last ${show(last)}`);
      const early = chunks.slice(0, -1).filter((c) => c.usage !== null && c.usage !== undefined);
      check('stream+usage: only the last chunk carries a usage', early.length === 0,
        `${early.length} earlier did: ${show(early[0])}`);
      checkContentEqual('stream+usage', joinContent(chunks), reference);
      checkModel('stream+usage', last && last.model);
    } catch (e) {
      notOk('chat.completions.create (stream, include_usage)', describeError(e));
    }
  }

  // 5. embeddings: the SDK default (it asks for base64 and decodes), then explicit float
  if (!opt.skip.has('embeddings')) {
    const input = ['a', 'b'];
    let dflt;
    try {
      dflt = await client.embeddings.create({ model: opt.embeddingModel, input });
      verbose('embeddings', { ...dflt, data: dflt.data && dflt.data.map((d) => ({ ...d, embedding: `[${d.embedding.length}]` })) });
      check('embeddings: 2 vectors', Array.isArray(dflt.data) && dflt.data.length === 2, `data ${show(dflt.data)}`);
      const dims = dflt.data.map((d) => (Array.isArray(d.embedding) ? d.embedding.length : -1));
      check('embeddings: vectors are non-empty, same length, finite numbers',
        dims[0] > 0 && dims.every((n) => n === dims[0]) &&
        dflt.data.every((d) => d.embedding.every((x) => Number.isFinite(x))), `lengths ${show(dims)}`);
      if (opt.expectEmbeddingModel !== undefined) {
        check(`embeddings: model is ${show(opt.expectEmbeddingModel)}`, dflt.model === opt.expectEmbeddingModel,
          `got ${show(dflt.model)}`);
      }
    } catch (e) {
      notOk('embeddings.create (SDK default encoding)', describeError(e));
    }
    try {
      const flt = await client.embeddings.create({ model: opt.embeddingModel, input, encoding_format: 'float' });
      check('embeddings (float): 2 vectors', Array.isArray(flt.data) && flt.data.length === 2, `data ${show(flt.data)}`);
      check('embeddings (float): usage.prompt_tokens > 0', flt.usage && flt.usage.prompt_tokens > 0,
        `usage ${show(flt.usage)}`);
      if (dflt && dflt.data && dflt.data.length === 2) {
        const same = flt.data.every((d, i) => d.embedding.length === dflt.data[i].embedding.length &&
          d.embedding.every((x, k) => Math.abs(x - dflt.data[i].embedding[k]) <= 1e-4 * Math.max(1, Math.abs(x))));
        check('embeddings: float and default (base64) vectors agree', same,
          `float dims ${flt.data.map((d) => d.embedding.length)} vs default ${dflt.data.map((d) => d.embedding.length)}`);
      }
    } catch (e) {
      notOk('embeddings.create (encoding_format float)', describeError(e));
    }
  }

  // 6. unknown model -> APIError 404 model_not_found
  if (!opt.skip.has('unknown-model')) {
    const what = `unknown model ${show(opt.unknownModel)}: APIError 404 model_not_found`;
    try {
      const r = await client.chat.completions.create(
        { model: opt.unknownModel, messages },
        opt.mockFaults ? { headers: { 'x-mock-fault': 'status:404' } } : undefined);
      notOk(what, `no error; response ${show(r)}`);
    } catch (e) {
      if (e instanceof APIError) {
        verbose('unknown-model error', { status: e.status, code: e.code, error: e.error, requestID: e.requestID });
        check(what, e.status === 404 && e.code === 'model_not_found', describeError(e));
      } else {
        notOk(what, describeError(e));
      }
    }
  }

  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  notOk('unexpected exception', describeError(e));
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = 1;
});
