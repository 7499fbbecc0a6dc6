// The response cache through the real binary: hits and misses, what the key
// covers, tenants, stream record and replay, JSON <-> stream cross serving,
// what is never stored, Cache-Control, the memory store's bound, and the
// Redis store against a real redis-server that is killed, paused and
// restarted. A hit is proven by the mock not seeing the request, and by the
// response carrying the id of the response that was stored.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  eventData, makeTempDir, mockBackend, RawClient, request, splitEvents, startGateway, startMock,
  stopAll, waitFor,
} from './lib/harness.mjs';
import { quickTracing, requestSpans, startOtlpReceiver } from './lib/otlp-receiver.mjs';
import { parseSamples, valueOf } from './lib/prometheus.mjs';
import { startRedis, stopAllRedis } from './lib/redis.mjs';

const CHAT = '/v1/chat/completions';
const MESSAGES = '/v1/messages';

const baseBody = {
  model: 'gpt-4o',
  messages: [
    { role: 'system', content: 'Answer briefly.' },
    { role: 'user', content: 'What is a toll gate?' },
  ],
  temperature: 0.5,
};

/* A body no other test sends, so each test starts from a miss. */
let uniqueCounter = 0;
function uniqueBody(extra = {}) {
  uniqueCounter++;
  return {
    ...baseBody,
    messages: [...baseBody.messages, { role: 'user', content: `question ${uniqueCounter} ${Date.now()}` }],
    ...extra,
  };
}

function post(gw, body, headers = {}, { pathname = CHAT, timeoutMs } = {}) {
  return request({
    port: gw.port, method: 'POST', path: pathname, body, timeoutMs,
    headers: typeof body === 'string' ? { 'content-type': 'application/json', ...headers } : headers,
  });
}

/* The data of each event of a stream response, in order. */
function streamData(res) {
  const { events, rest } = splitEvents(res.text);
  assert.equal(rest, '', `the stream ended inside an event: ${JSON.stringify(rest)}`);
  return events.map(eventData).filter((d) => d !== null);
}

/* Join the chunks of a chat stream into {id, content, finish, usage}. */
function joinChat(data) {
  assert.equal(data[data.length - 1], '[DONE]', 'the stream does not end with [DONE]');
  const joined = { id: null, content: '', finish: null, usage: null, chunks: 0 };
  for (const d of data.slice(0, -1)) {
    const chunk = JSON.parse(d);
    assert.equal(chunk.object, 'chat.completion.chunk');
    joined.id ??= chunk.id;
    joined.chunks++;
    for (const choice of chunk.choices) {
      joined.content += choice.delta?.content ?? '';
      joined.finish = choice.finish_reason ?? joined.finish;
    }
    if (chunk.usage)
      joined.usage = chunk.usage;
  }
  return joined;
}

async function upstreamRequests(mock) {
  return (await mock.stats()).requests;
}

/* Send body twice and return both responses, checking the second is a hit
 * that the upstream never saw. */
async function assertCached(gw, mock, body, headers = {}) {
  const first = await post(gw, body, headers);
  assert.equal(first.status, 200, first.text);
  assert.equal(first.headers['x-tollgate-cache'], 'miss');
  const seen = await upstreamRequests(mock);
  const second = await post(gw, body, headers);
  assert.equal(second.status, 200, second.text);
  assert.equal(second.headers['x-tollgate-cache'], 'hit');
  assert.equal(await upstreamRequests(mock), seen, 'the hit reached the upstream');
  return [first, second];
}

/* Send body and check whether it was a hit (1) or reached the upstream (0). */
async function isHit(gw, mock, body, headers = {}) {
  const seen = await upstreamRequests(mock);
  const res = await post(gw, body, headers);
  assert.equal(res.status, 200, res.text);
  const reached = (await upstreamRequests(mock)) > seen;
  assert.equal(res.headers['x-tollgate-cache'], reached ? 'miss' : 'hit',
    'x-tollgate-cache disagrees with what the upstream saw');
  return !reached;
}

/* A fixture file the mock replays: JSON is YAML, so no YAML writer is needed. */
/* The Redis clients' counters from the gateway's /metrics. */
async function redisCounters(gw) {
  const res = await request({ port: gw.adminPort, path: '/metrics', timeoutMs: 5000 });
  const value = (name) => Number(new RegExp(`^tollgate_cache_redis_${name}_total (\\S+)$`, 'm').exec(res.text)?.[1]);
  return { errors: value('errors'), timeouts: value('timeouts'), connects: value('connects') };
}

function writeFixture(dir, name, contentType, body, code = 200) {
  const cassette = { interactions: [{ response: { code, headers: { 'Content-Type': [contentType] }, body } }] };
  fs.writeFileSync(path.join(dir, `${name}.yaml`), JSON.stringify(cassette));
}

/* An Anthropic Messages stream with one text block, ending in the events
 * given: each event is named by its data's type, and a ping follows
 * message_start, as Anthropic sends them. */
function messagesStream(ending) {
  const events = [
    { type: 'message_start', message: { id: 'msg_fx', type: 'message', role: 'assistant', content: [], model: 'claude-x', stop_reason: null, usage: { input_tokens: 3, output_tokens: 1 } } },
    { type: 'ping' },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello' } },
    { type: 'content_block_stop', index: 0 },
    ...ending,
  ];
  return events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join('');
}

/* The name and data of each event of a stream response, in order. */
function namedEvents(res) {
  const { events, rest } = splitEvents(res.text);
  assert.equal(rest, '', `the stream ended inside an event: ${JSON.stringify(rest)}`);
  return events.map((e) => ({ name: /^event: ?(.*)$/m.exec(e)?.[1] ?? null, data: eventData(e) }));
}

function chunkEvent(choices, extra = {}) {
  return `data: ${JSON.stringify({ id: 'chatcmpl-fx', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices, ...extra })}\n\n`;
}

describe('cache with the memory store', () => {
  let mock;
  let gw;

  before(async () => {
    const fixtures = makeTempDir('tollgate-cache-fixtures-');
    writeFixture(fixtures, 'filtered-stream', 'text/event-stream',
      chunkEvent([{ index: 0, delta: { role: 'assistant', content: 'Partial' }, finish_reason: null }]) +
      chunkEvent([{ index: 0, delta: {}, finish_reason: 'content_filter' }]) + 'data: [DONE]\n\n');
    writeFixture(fixtures, 'filtered-json', 'application/json', JSON.stringify({
      id: 'chatcmpl-fx', object: 'chat.completion', created: 1, model: 'gpt-4o',
      choices: [{ index: 0, message: { role: 'assistant', content: '' }, finish_reason: 'content_filter' }],
      usage: { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 },
    }));
    writeFixture(fixtures, 'error-event', 'text/event-stream',
      chunkEvent([{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }]) +
      'data: {"error":{"message":"overloaded","type":"server_error","code":null}}\n\n');
    writeFixture(fixtures, 'no-finish', 'text/event-stream',
      chunkEvent([{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }]) +
      'data: [DONE]\n\n');

    mock = await startMock({ fixtures });
    gw = await startGateway({
      workers: 4,
      backends: { mock: mockBackend(mock) },
      routes: [
        { name: 'chat', match: { path: CHAT }, backends: ['mock'], cache: true },
        { name: 'completions', match: { path: '/v1/completions' }, backends: ['mock'], cache: { ttl: '10m' } },
        { name: 'embeddings', match: { path: '/v1/embeddings' }, backends: ['mock'] },
      ],
      cache: { store: 'memory', max_bytes: '8MiB', ttl: '1h', tenant_header: 'X-Tenant', ignore_fields: ['metadata'] },
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('answers a repeated request from the cache', async () => {
    const [first, second] = await assertCached(gw, mock, uniqueBody());
    assert.equal(second.text, first.text);
    assert.equal(second.json().id, first.json().id, 'the hit is not the stored response');
    assert.equal(second.headers['content-type'], 'application/json');
    assert.match(second.headers.age, /^\d+$/);
    assert.equal(first.headers.age, undefined);
  });

  it('passes by a body with an integer beyond 64 bits', async () => {
    // 2^63 + 1 and 2^63 + 2 round to the same double, so the two seeds,
    // read as reals, would share a key.
    const base = JSON.stringify(uniqueBody());
    const text = (seed) => base.replace(/}$/, `,"seed":${seed}}`);
    const seen = await upstreamRequests(mock);
    for (const seed of ['9223372036854775809', '9223372036854775810']) {
      const res = await post(gw, text(seed));
      assert.equal(res.status, 200, res.text);
    }
    assert.equal(await upstreamRequests(mock), seen + 2, 'a request was answered from the cache');
  });

  it('shares entries between the workers of the process', async () => {
    const body = uniqueBody();
    await assertCached(gw, mock, body);
    // Each request comes on a new connection, so the kernel spreads them
    // over the four workers' listeners.
    for (let i = 0; i < 16; i++)
      assert.ok(await isHit(gw, mock, body), `request ${i} missed`);
  });

  it('changes the key with every output-affecting field', async () => {
    const body = uniqueBody();
    await assertCached(gw, mock, body);
    const variants = {
      'model': { model: 'gpt-4o-mini' },
      'system prompt': { messages: [{ role: 'system', content: 'Answer at length.' }, ...body.messages.slice(1)] },
      'earlier turn': { messages: body.messages.slice(1) },
      'temperature': { temperature: 0.7 },
      'top_p': { top_p: 0.9 },
      'max_tokens': { max_tokens: 7 },
      'max_completion_tokens': { max_completion_tokens: 7 },
      'stop': { stop: ['\n'] },
      'seed': { seed: 42 },
      'response_format': { response_format: { type: 'json_object' } },
      'n': { n: 2 },
      'logprobs': { logprobs: true },
      'tools': { tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }] },
      'tool_choice': { tool_choice: 'none' },
      'unknown field': { x_future_knob: 1 },
    };
    for (const [name, change] of Object.entries(variants))
      assert.equal(await isHit(gw, mock, { ...body, ...change }), false, `a different ${name} hit the cache`);
  });

  it('keeps the key across user, key order, whitespace and number spelling', async () => {
    const body = uniqueBody();
    await assertCached(gw, mock, body);
    const [system, question, unique] = body.messages;
    const reordered = `{ "temperature" : 5e-1,\n  "messages": [${[system, question, unique].map((m) =>
      `{"content": ${JSON.stringify(m.content)}, "role": "${m.role}"}`).join(' ,\n ')}],\t"model":"gpt-4o" }`;
    const same = [
      { ...body, user: 'alice' },
      { ...body, stream: false },
      { ...body, metadata: { trace: 'abc' } },
      reordered,
    ];
    for (const variant of same)
      assert.ok(await isHit(gw, mock, variant), `missed for ${typeof variant === 'string' ? variant : JSON.stringify(variant)}`);
  });

  it('never serves one tenant another tenant\'s entry', async () => {
    const body = uniqueBody();
    const alice = { authorization: 'Bearer sk-alice' };
    const bob = { authorization: 'Bearer sk-bob' };
    await assertCached(gw, mock, body, alice);
    assert.equal(await isHit(gw, mock, body, bob), false, 'bob got alice\'s entry');
    assert.equal(await isHit(gw, mock, body), false, 'an anonymous caller got alice\'s entry');
    assert.ok(await isHit(gw, mock, body, bob));
    assert.ok(await isHit(gw, mock, body, alice));

    // The configured tenant header splits a credential's entries, and
    // never reaches those of another credential or of no credential.
    const other = uniqueBody();
    await assertCached(gw, mock, other, { ...alice, 'x-tenant': 'acme' });
    assert.equal(await isHit(gw, mock, other, { ...bob, 'x-tenant': 'acme' }), false,
      'another key with the same tenant header got the entry');
    assert.equal(await isHit(gw, mock, other, { 'x-tenant': 'acme' }), false,
      'a caller without a key got the entry by naming the tenant');
    assert.equal(await isHit(gw, mock, other, { ...alice, 'x-tenant': 'globex' }), false);
    assert.equal(await isHit(gw, mock, other, alice), false, 'the key without the header got the entry');
    assert.ok(await isHit(gw, mock, other, { ...alice, 'X-Tenant': 'acme' }));
  });

  it('keeps requests apart by API version and beta headers', async () => {
    const body = uniqueBody();
    await assertCached(gw, mock, body, { 'anthropic-beta': 'tools-1' });
    assert.equal(await isHit(gw, mock, body), false, 'a request without the beta header got its entry');
    assert.equal(await isHit(gw, mock, body, { 'anthropic-beta': 'tools-2' }), false, 'another beta got the entry');
    assert.equal(await isHit(gw, mock, body, { 'OpenAI-Beta': 'assistants=v2' }), false);
    assert.ok(await isHit(gw, mock, body, { 'Anthropic-Beta': 'tools-1' }));
    assert.ok(await isHit(gw, mock, body, { 'anthropic-beta': 'tools-1', 'x-trace': 'other' }));
  });

  it('keeps requests apart by query string', async () => {
    const body = uniqueBody();
    const at = (query) => ({ pathname: `${CHAT}${query}` });
    const hitAt = async (query) => {
      const seen = await upstreamRequests(mock);
      const res = await post(gw, body, {}, at(query));
      assert.equal(res.status, 200, res.text);
      return res.headers['x-tollgate-cache'] === 'hit' && (await upstreamRequests(mock)) === seen;
    };
    assert.equal((await post(gw, body, {}, at('?api-version=1'))).headers['x-tollgate-cache'], 'miss');
    assert.equal(await hitAt('?api-version=2'), false, 'another api-version got the entry');
    assert.equal(await hitAt(''), false, 'a request without a query got the entry');
    assert.ok(await hitAt('?api-version=1'));
    assert.ok(await hitAt('?api-version=2'));
    // An empty query is no query.
    assert.ok(await hitAt('?'));
  });

  it('replays a stored stream event for event', async () => {
    const body = uniqueBody({ stream: true, stream_options: { include_usage: true } });
    const [first, second] = await assertCached(gw, mock, body);
    assert.match(second.headers['content-type'], /^text\/event-stream/);
    assert.deepEqual(streamData(second), streamData(first));
    const joined = joinChat(streamData(second));
    assert.equal(joined.finish, 'stop');
    assert.ok(joined.usage, 'the usage chunk the client asked for is missing');
  });

  it('replays tool-call deltas unchanged', async () => {
    const body = uniqueBody({
      stream: true,
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
    });
    const [first, second] = await assertCached(gw, mock, body);
    const data = streamData(second);
    assert.deepEqual(data, streamData(first));
    assert.ok(data.some((d) => d.includes('"tool_calls"')), 'the stream carried no tool call');
  });

  it('omits the usage chunk unless requested', async () => {
    const body = uniqueBody({ stream: true, stream_options: { include_usage: true } });
    const [first] = await assertCached(gw, mock, body);
    const withUsage = streamData(first);
    const res = await post(gw, { ...body, stream_options: undefined });
    assert.equal(res.headers['x-tollgate-cache'], 'hit');
    const data = streamData(res);
    assert.equal(joinChat(data).usage, null);
    // The other chunks lose their "usage": null too, as the relay's do.
    assert.deepEqual(data, withUsage.filter((d) => d === '[DONE]' || JSON.parse(d).choices.length > 0)
      .map((d) => d.replace(',"usage":null', '')));
  });

  it('serves JSON from a stored stream', async () => {
    const body = uniqueBody({ stream: true, stream_options: { include_usage: true } });
    const stream = await post(gw, body);
    assert.equal(stream.headers['x-tollgate-cache'], 'miss');
    const streamed = joinChat(streamData(stream));
    const seen = await upstreamRequests(mock);

    const res = await post(gw, { ...body, stream: false, stream_options: undefined });
    assert.equal(res.headers['x-tollgate-cache'], 'hit');
    assert.equal(await upstreamRequests(mock), seen);
    assert.equal(res.headers['content-type'], 'application/json');
    const json = res.json();
    assert.equal(json.object, 'chat.completion');
    assert.equal(json.id, streamed.id);
    assert.equal(json.choices[0].message.role, 'assistant');
    assert.equal(json.choices[0].message.content, streamed.content);
    assert.equal(json.choices[0].finish_reason, streamed.finish);
    assert.deepEqual(json.usage, streamed.usage);

    // The same fields as the upstream's own non-streaming response.
    const direct = await post(gw, { ...body, stream: false, seed: 1 });
    assert.deepEqual(Object.keys(json).sort(), Object.keys(direct.json()).sort());
    assert.equal(json.choices[0].message.content, direct.json().choices[0].message.content);
  });

  it('serves a stream from a stored JSON response', async () => {
    const body = uniqueBody();
    const stored = await post(gw, body);
    assert.equal(stored.headers['x-tollgate-cache'], 'miss');
    const json = stored.json();

    for (const includeUsage of [false, true]) {
      const streamBody = { ...body, stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) };
      const seen = await upstreamRequests(mock);
      const res = await post(gw, streamBody);
      assert.equal(res.headers['x-tollgate-cache'], 'hit');
      assert.equal(await upstreamRequests(mock), seen);
      assert.match(res.headers['content-type'], /^text\/event-stream/);
      const joined = joinChat(streamData(res));
      assert.equal(joined.id, json.id);
      assert.equal(joined.content, json.choices[0].message.content);
      assert.equal(joined.finish, json.choices[0].finish_reason);
      assert.deepEqual(joined.usage, includeUsage ? json.usage : null);
    }
  });

  it('caches legacy completions with the route\'s own ttl', async () => {
    const body = { model: 'gpt-3.5-turbo-instruct', prompt: `say ${Date.now()}` };
    const first = await post(gw, body, {}, { pathname: '/v1/completions' });
    assert.equal(first.headers['x-tollgate-cache'], 'miss');
    const second = await post(gw, body, {}, { pathname: '/v1/completions' });
    assert.equal(second.headers['x-tollgate-cache'], 'hit');
    assert.equal(second.text, first.text);
  });

  it('logs what x-tollgate-cache says', async () => {
    const body = uniqueBody();
    const logged = async (res) => (await gw.accessFor(res.headers['x-request-id'])).cache;
    const miss = await post(gw, body);
    assert.equal(miss.headers['x-tollgate-cache'], 'miss');
    assert.equal(await logged(miss), 'miss');
    await waitFor(async () => {
      const res = await post(gw, body);
      return res.headers['x-tollgate-cache'] === 'hit' && await logged(res) === 'hit';
    }, { message: 'a hit logged as hit' });
    const bypass = await post(gw, body, { 'cache-control': 'no-store' });
    assert.equal(await logged(bypass), 'bypass');
    const notCached = await post(gw, uniqueBody(), { 'cache-control': 'only-if-cached' });
    assert.equal(notCached.status, 504);
    assert.equal(await logged(notCached), 'miss');

    const uncached = await post(gw, { model: 'text-embedding-3-small', input: 'x' }, {}, { pathname: '/v1/embeddings' });
    assert.equal(uncached.status, 200);
    assert.ok(!('cache' in await gw.accessFor(uncached.headers['x-request-id'])), 'a route without cache logs no cache field');
  });

  it('leaves routes without cache alone', async () => {
    const body = { model: 'text-embedding-3-small', input: `x ${Date.now()}` };
    for (let i = 0; i < 2; i++) {
      const seen = await upstreamRequests(mock);
      const res = await post(gw, body, {}, { pathname: '/v1/embeddings' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-tollgate-cache'], undefined);
      assert.equal(await upstreamRequests(mock), seen + 1);
    }
  });

  it('does not store upstream errors', async () => {
    for (const status of [400, 429, 500]) {
      const body = uniqueBody();
      const failed = await post(gw, body, { 'x-mock': `status=${status}` });
      assert.equal(failed.status, status);
      assert.equal(failed.headers['x-tollgate-cache'], 'miss');
      const again = await post(gw, body, { 'x-mock': `status=${status}` });
      assert.equal(again.headers['x-tollgate-cache'], 'miss', `a ${status} was stored`);
      assert.equal(await isHit(gw, mock, body), false, `a ${status} was served as a hit`);
    }
  });

  it('does not store a stream cut before its end', async () => {
    const body = uniqueBody({ stream: true });
    const cut = await post(gw, body, { 'x-mock': 'close_after=3' });
    assert.equal(cut.headers['x-tollgate-cache'], 'miss');
    assert.ok(!streamData(cut).includes('[DONE]'));
    assert.equal(await isHit(gw, mock, body), false, 'the cut stream was stored');
  });

  it('does not store streams without a finish, with an error, or filtered', async () => {
    for (const fixture of ['no-finish', 'error-event', 'filtered-stream']) {
      const body = uniqueBody({ stream: true });
      const res = await post(gw, body, { 'x-mock': `fixture=${fixture}` });
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-tollgate-cache'], 'miss');
      assert.equal(await isHit(gw, mock, body), false, `the ${fixture} stream was stored`);
    }
  });

  it('does not store a response stopped by a content filter', async () => {
    const body = uniqueBody();
    const res = await post(gw, body, { 'x-mock': 'fixture=filtered-json' });
    assert.equal(res.json().choices[0].finish_reason, 'content_filter');
    assert.equal(await isHit(gw, mock, body), false, 'the filtered response was stored');
  });

  it('skips the lookup but stores with Cache-Control: no-cache', async () => {
    const body = uniqueBody();
    await assertCached(gw, mock, body);
    const seen = await upstreamRequests(mock);
    const fresh = await post(gw, body, { 'cache-control': 'no-cache' });
    assert.equal(fresh.headers['x-tollgate-cache'], 'bypass');
    assert.equal(await upstreamRequests(mock), seen + 1);

    // What no-cache fetched replaced the entry.
    const hit = await post(gw, body);
    assert.equal(hit.headers['x-tollgate-cache'], 'hit');
    assert.equal(hit.json().id, fresh.json().id);
  });

  it('neither looks up nor stores with Cache-Control: no-store', async () => {
    const body = uniqueBody();
    const first = await post(gw, body, { 'cache-control': 'max-age=0, No-Store' });
    assert.equal(first.headers['x-tollgate-cache'], 'bypass');
    assert.equal(await isHit(gw, mock, body), false, 'a no-store response was stored');
    const seen = await upstreamRequests(mock);
    const again = await post(gw, body, { 'cache-control': 'no-store' });
    assert.equal(again.headers['x-tollgate-cache'], 'bypass');
    assert.equal(await upstreamRequests(mock), seen + 1, 'no-store was answered from the cache');
  });

  it('keeps entries across a reload of the same size', async () => {
    const body = uniqueBody();
    await assertCached(gw, mock, body);
    assert.equal(await gw.reload(gw.config), 'reloaded');
    assert.ok(await isHit(gw, mock, body), 'the reload emptied the store');
  });

  it('answers only-if-cached from the cache or with 504', async () => {
    const body = uniqueBody();
    const seen = await upstreamRequests(mock);
    const missing = await post(gw, body, { 'cache-control': 'only-if-cached' });
    assert.equal(missing.status, 504);
    assert.equal(missing.json().error.code, 'not_cached');
    assert.equal(await upstreamRequests(mock), seen);
    await assertCached(gw, mock, body);
    const found = await post(gw, body, { 'cache-control': 'only-if-cached' });
    assert.equal(found.headers['x-tollgate-cache'], 'hit');
  });

  it('answers no-store, only-if-cached from the cache or with 504', async () => {
    const body = uniqueBody();
    const onlyCached = { 'cache-control': 'no-store, only-if-cached' };
    const seen = await upstreamRequests(mock);
    const missing = await post(gw, body, onlyCached);
    assert.equal(missing.status, 504, missing.text);
    assert.equal(missing.json().error.code, 'not_cached');
    assert.equal(missing.headers['x-tollgate-cache'], 'miss');
    assert.equal((await gw.accessFor(missing.headers['x-request-id'])).cache, 'miss');
    assert.equal(await upstreamRequests(mock), seen, 'no-store, only-if-cached reached the upstream');

    const [stored] = await assertCached(gw, mock, body);
    const before = await upstreamRequests(mock);
    const found = await post(gw, body, onlyCached);
    assert.equal(found.status, 200, found.text);
    assert.equal(found.headers['x-tollgate-cache'], 'hit');
    assert.equal(found.json().id, stored.json().id);
    assert.equal((await gw.accessFor(found.headers['x-request-id'])).cache, 'hit');
    assert.equal(await upstreamRequests(mock), before, 'the hit reached the upstream');
  });
});

describe('first token of a hit', () => {
  let mock;
  let receiver;
  let gw;

  before(async () => {
    mock = await startMock();
    receiver = await startOtlpReceiver();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [{ name: 'chat', match: { path: CHAT, model: 'gpt-4o' }, backends: ['mock'], cache: true }],
      cache: { store: 'memory', ttl: '1h' },
      tracing: quickTracing(receiver),
    });
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  /* The count of tollgate_time_to_first_token_seconds for backend. */
  async function ttftCount(backend) {
    const res = await request({ port: gw.adminPort, path: '/metrics' });
    return valueOf(parseSamples(res.text), 'tollgate_time_to_first_token_seconds_count',
      { route: 'chat', backend, model: 'gpt-4o' });
  }

  it('records it in the access log, the metrics and the lookup span', async () => {
    const body = uniqueBody({ stream: true });
    const [, hit] = await assertCached(gw, mock, body);
    const entry = await gw.accessFor(hit.headers['x-request-id']);
    assert.equal(typeof entry.ttft, 'number', 'a streamed hit has no ttft in the access log');
    assert.ok(entry.ttft <= entry.duration, `ttft ${entry.ttft} is over the duration ${entry.duration}`);
    await waitFor(async () => (await ttftCount('none')) === 1,
      { message: 'the hit counted in tollgate_time_to_first_token_seconds' });

    const { spans } = await requestSpans(gw, receiver, hit.headers['x-request-id'], 2);
    const server = spans.find((s) => s.kind === 2);
    const lookup = spans.find((s) => s.name === 'cache lookup');
    const events = lookup.events.filter((e) => e.name === 'tollgate.first_token');
    assert.equal(events.length, 1, 'the lookup span of a hit has no first-token event');
    // The same instant in both records, to the access log's 6 digits.
    const fromSpan = Number(events[0].time - server.start) / 1e9;
    assert.ok(Math.abs(fromSpan - entry.ttft) <= entry.ttft * 1e-5 + 1e-9,
      `the span puts the first token at ${fromSpan} s, the access log at ${entry.ttft} s`);
  });

  it('records none for a hit that is not a stream', async () => {
    const [miss, hit] = await assertCached(gw, mock, uniqueBody());
    assert.equal((await gw.accessFor(hit.headers['x-request-id'])).ttft, null);
    assert.equal((await gw.accessFor(miss.headers['x-request-id'])).ttft, null);
  });

  it('gives a streamed miss its ttft as well', async () => {
    const res = await post(gw, uniqueBody({ stream: true }));
    assert.equal(res.headers['x-tollgate-cache'], 'miss');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(typeof entry.ttft, 'number');
    assert.ok(entry.ttft <= entry.duration);
  });
});

describe('memory store bound', () => {
  const maxBytes = 64 * 1024;
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [{ name: 'chat', match: { path: CHAT }, backends: ['mock'], cache: true }],
      cache: { max_bytes: maxBytes },
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('stays within max_bytes under a stream of unique requests', async () => {
    const bodies = [];
    let bodyBytes = Infinity;
    for (let i = 0; i < 400; i++) {
      const body = { model: 'gpt-4o', messages: [{ role: 'user', content: `unique ${i}` }] };
      const res = await post(gw, body, {}, { timeoutMs: 10000 });
      assert.equal(res.headers['x-tollgate-cache'], 'miss');
      bodies.push(body);
      bodyBytes = Math.min(bodyBytes, res.body.length);
    }

    // Probe every entry without changing the store: only-if-cached never
    // goes upstream and never stores.
    const seen = await upstreamRequests(mock);
    const present = [];
    for (const [i, body] of bodies.entries()) {
      const res = await post(gw, body, { 'cache-control': 'only-if-cached' });
      if (res.status === 200)
        present.push(i);
      else
        assert.equal(res.status, 504);
    }
    assert.equal(await upstreamRequests(mock), seen, 'a probe reached the upstream');

    // Each entry takes at least the bytes of its body, so the bodies of the entries
    // still present must fit in the bound.
    assert.ok(present.length > 0, 'nothing was kept');
    assert.ok(present.length * bodyBytes <= maxBytes,
      `${present.length} entries of at least ${bodyBytes} bytes exceed max_bytes ${maxBytes}`);
    assert.ok(present.length < bodies.length, 'nothing was evicted');
    assert.ok(present.includes(bodies.length - 1), 'the newest entry was evicted');
    assert.ok(!present.includes(0), 'the oldest entry survived');
  });
});

describe('cache of Anthropic streams', () => {
  /* Endings of the scripted upstream's streams, chosen by x-ending. */
  const endings = {
    complete: [
      { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } },
      { type: 'message_stop' },
    ],
    'no-stop': [
      { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } },
    ],
    refusal: [
      { type: 'message_delta', delta: { stop_reason: 'refusal', stop_sequence: null }, usage: { output_tokens: 2 } },
      { type: 'message_stop' },
    ],
  };
  let upstream;
  let requests = 0;
  let gw;

  before(async () => {
    upstream = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        requests++;
        const body = JSON.parse(Buffer.concat(chunks).toString());
        if (!body.stream) {
          const refused = req.headers['x-ending'] === 'refusal';
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'msg_fx', type: 'message', role: 'assistant', model: 'claude-x',
            content: refused ? [] : [{ type: 'text', text: 'Hello' }], stop_reason: refused ? 'refusal' : 'end_turn',
            stop_sequence: null, usage: { input_tokens: 3, output_tokens: 2 } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(messagesStream(endings[req.headers['x-ending'] ?? 'complete']));
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    gw = await startGateway({
      backends: { anthropic: { url: `http://127.0.0.1:${upstream.address().port}` } },
      filters: { pii: { type: 'regex', apply_to: ['response'], presets: ['email'], action: 'mask' } },
      routes: [
        { name: 'masked', match: { path: MESSAGES, headers: { 'x-filter': 'mask' } }, backends: ['anthropic'], cache: true, filters: ['pii'] },
        { name: 'messages', match: { path: MESSAGES }, backends: ['anthropic'], cache: true },
      ],
      cache: { store: 'memory' },
    });
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    await stopAll();
    upstream?.close();
  });

  const streamBody = (text) => ({ model: 'claude-x', max_tokens: 100, stream: true, messages: [{ role: 'user', content: `${text} ${Date.now()}` }] });

  it('replays a stream under its event names', async () => {
    const body = streamBody('replay');
    const at = { pathname: MESSAGES };
    const first = await post(gw, body, {}, at);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-tollgate-cache'], 'miss');
    const seen = requests;
    const second = await post(gw, body, {}, at);
    assert.equal(second.status, 200, second.text);
    assert.equal(second.headers['x-tollgate-cache'], 'hit');
    assert.equal(requests, seen, 'the hit reached the upstream');
    assert.match(second.headers['content-type'], /^text\/event-stream/);

    const played = namedEvents(second);
    assert.deepEqual(played, namedEvents(first).filter((e) => e.name !== 'ping'));
    assert.deepEqual(played.map((e) => e.name), ['message_start', 'content_block_start',
      'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    for (const e of played)
      assert.equal(JSON.parse(e.data).type, e.name);
  });

  it('stores a stream that a response mask filter let through unchanged', async () => {
    const body = streamBody('masked');
    const headers = { 'x-filter': 'mask' };
    const first = await post(gw, body, headers, { pathname: MESSAGES });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-tollgate-cache'], 'miss');
    const seen = requests;
    const second = await post(gw, body, headers, { pathname: MESSAGES });
    assert.equal(second.headers['x-tollgate-cache'], 'hit', 'the stream was not stored');
    assert.equal(requests, seen, 'the hit reached the upstream');
    assert.deepEqual(namedEvents(second), namedEvents(first).filter((e) => e.name !== 'ping'));
  });

  it('answers no non-streaming request from a stored stream', async () => {
    const body = streamBody('plain');
    await post(gw, body, {}, { pathname: MESSAGES });
    const seen = requests;
    const plain = await post(gw, { ...body, stream: false }, {}, { pathname: MESSAGES });
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.headers['x-tollgate-cache'], 'miss');
    assert.equal(requests, seen + 1);
    assert.equal(plain.json().type, 'message');
  });

  it('does not store a refused message', async () => {
    const body = { ...streamBody('refused body'), stream: false };
    for (let i = 0; i < 2; i++) {
      const res = await post(gw, body, { 'x-ending': 'refusal' }, { pathname: MESSAGES });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json().stop_reason, 'refusal');
      assert.equal(res.headers['x-tollgate-cache'], 'miss', 'the refusal was stored');
    }
  });

  it('does not store a stream without message_stop, or refused', async () => {
    for (const ending of ['no-stop', 'refusal']) {
      const body = streamBody(ending);
      for (let i = 0; i < 2; i++) {
        const res = await post(gw, body, { 'x-ending': ending }, { pathname: MESSAGES });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers['x-tollgate-cache'], 'miss', `the ${ending} stream was stored`);
      }
    }
  });
});

describe('cache hits as the original response', () => {
  let upstream;
  let requests = 0;
  let gw;

  /* The chunks of a chat stream, with "usage": null in each but the usage
   * chunk when the request asked for usage, as OpenAI sends them. A
   * request with tools gets a tool call after an opening "content": "". */
  const chatChunks = (n, body) => {
    const withUsage = body.stream_options?.include_usage === true;
    const chunk = (choices) => ({ id: `chatcmpl-${n}`, object: 'chat.completion.chunk', created: 1,
      model: 'gpt-4o', choices, ...(withUsage ? { usage: null } : {}) });
    const deltas = body.tools
      ? [{ role: 'assistant', content: '', refusal: null },
        { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] }]
      : [{ role: 'assistant', content: '', refusal: null }, { content: 'Hello' }];
    const chunks = deltas.map((delta) => chunk([{ index: 0, delta, logprobs: null, finish_reason: null }]));
    chunks.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: body.tools ? 'tool_calls' : 'stop' }]));
    if (withUsage)
      chunks.push({ ...chunk([]), usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
    return chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
  };

  before(async () => {
    upstream = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        requests++;
        const body = JSON.parse(Buffer.concat(chunks).toString());
        const ids = { 'openai-processing-ms': String(300 + requests), 'openai-version': '2020-10-01',
          'x-request-id': `req_${requests}`, 'x-ratelimit-remaining-requests': String(1000 - requests),
          'set-cookie': `seen=${requests}` };
        if (req.url === MESSAGES) {
          res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache',
            'request-id': `req_msg_${requests}`, 'anthropic-ratelimit-requests-remaining': '9' });
          res.end(messagesStream([
            { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } },
            { type: 'message_stop' },
          ]));
        } else if (body.stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8',
            'cache-control': 'no-cache, must-revalidate', ...ids });
          res.end(chatChunks(requests, body));
        } else {
          res.writeHead(200, { 'content-type': 'application/json', ...ids });
          res.end(JSON.stringify({ id: `chatcmpl-${requests}`, object: 'chat.completion', created: 1, model: 'gpt-4o',
            choices: [{ index: 0, message: { role: 'assistant', content: 'Hello', refusal: null }, logprobs: null, finish_reason: 'stop' }],
            usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
        }
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const url = `http://127.0.0.1:${upstream.address().port}`;
    gw = await startGateway({
      backends: { openai: { url }, anthropic: { url } },
      routes: [
        { name: 'chat', match: { path: CHAT }, backends: ['openai'], cache: true },
        { name: 'messages', match: { path: MESSAGES }, backends: ['anthropic'], cache: true },
      ],
      cache: { store: 'memory' },
    });
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    await stopAll();
    upstream?.close();
  });

  /* Send body twice: a miss, then a hit that the upstream did not see. */
  async function missThenHit(body, hitBody = body, pathname = CHAT) {
    const first = await post(gw, body, {}, { pathname });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-tollgate-cache'], 'miss');
    const seen = requests;
    const second = await post(gw, hitBody, {}, { pathname });
    assert.equal(second.status, 200, second.text);
    assert.equal(second.headers['x-tollgate-cache'], 'hit');
    assert.equal(requests, seen, 'the hit reached the upstream');
    return [first, second];
  }

  it('replays the provider\'s ids and content type, not its rate limits', async () => {
    const [first, second] = await missThenHit(uniqueBody());
    for (const name of ['content-type', 'x-upstream-request-id', 'openai-processing-ms', 'openai-version'])
      assert.equal(second.headers[name], first.headers[name], name);
    assert.equal(second.headers['x-upstream-request-id'], `req_${requests}`);
    assert.equal(first.headers['x-ratelimit-remaining-requests'], String(1000 - requests));
    assert.equal(second.headers['x-ratelimit-remaining-requests'], undefined);
    assert.equal(second.headers['set-cookie'], undefined);
    assert.notEqual(second.headers['x-request-id'], first.headers['x-request-id'], 'the gateway\'s own id was replayed');
  });

  it('sends a stream hit framed as the live stream', async () => {
    const [first, second] = await missThenHit(uniqueBody({ stream: true }));
    for (const res of [first, second]) {
      assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
      assert.equal(res.headers['cache-control'], 'no-cache, must-revalidate');
      assert.equal(res.headers['transfer-encoding'], 'chunked');
      assert.equal(res.headers['content-length'], undefined);
    }
    assert.equal(second.headers['x-upstream-request-id'], first.headers['x-upstream-request-id']);
    assert.equal(second.headers['openai-processing-ms'], first.headers['openai-processing-ms']);
    assert.equal(second.headers['x-ratelimit-remaining-requests'], undefined);
    assert.deepEqual(streamData(second), streamData(first));
  });

  it('ends an HTTP/1.0 stream hit with the close, as the live stream', async () => {
    const text = JSON.stringify(uniqueBody({ stream: true }));
    const heads = [];
    for (let i = 0; i < 2; i++) {
      const client = await RawClient.connect(gw.port);
      await client.write(`POST ${CHAT} HTTP/1.0\r\nHost: a\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      await waitFor(() => client.closed, { message: 'the close that ends the stream' });
      const raw = client.buffer.toString();
      const [head, body] = raw.split('\r\n\r\n', 2);
      assert.match(body, /data: \[DONE\]\n\n$/);
      heads.push(head.toLowerCase());
    }
    assert.match(heads[1], /x-tollgate-cache: hit/);
    for (const head of heads) {
      assert.doesNotMatch(head, /content-length|transfer-encoding/);
      assert.match(head, /connection: close/);
    }
  });

  it('sends a stream converted from JSON as a stream', async () => {
    const body = uniqueBody();
    const [, second] = await missThenHit(body, { ...body, stream: true });
    assert.equal(second.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(second.headers['cache-control'], 'no-cache');
    assert.equal(second.headers['transfer-encoding'], 'chunked');
    assert.equal(joinChat(streamData(second)).content, 'Hello');
  });

  it('leaves "usage": null out for a client that did not ask for usage', async () => {
    const body = uniqueBody({ stream: true });
    const stored = { ...body, stream_options: { include_usage: true } };
    const [first, second] = await missThenHit(stored, body);
    assert.ok(streamData(first).slice(0, -2).every((d) => JSON.parse(d).usage === null));
    const live = await post(gw, uniqueBody({ stream: true }));
    assert.equal(live.headers['x-tollgate-cache'], 'miss');
    for (const res of [live, second]) {
      const data = streamData(res);
      assert.equal(data.at(-1), '[DONE]');
      for (const d of data.slice(0, -1))
        assert.equal('usage' in JSON.parse(d), false, d);
    }
  });

  it('answers JSON from a stored tool-call stream with content null', async () => {
    const body = uniqueBody({ stream: true, stream_options: { include_usage: true },
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }] });
    const [, second] = await missThenHit(body, { ...body, stream: false, stream_options: undefined });
    const message = second.json().choices[0].message;
    assert.equal(message.content, null);
    assert.equal(message.tool_calls[0].function.name, 'f');
  });

  it('replays Anthropic\'s request-id', async () => {
    const body = { model: 'claude-x', max_tokens: 100, stream: true, messages: [{ role: 'user', content: `id ${Date.now()}` }] };
    const [first, second] = await missThenHit(body, body, MESSAGES);
    assert.match(first.headers['request-id'], /^req_msg_\d+$/);
    assert.equal(second.headers['request-id'], first.headers['request-id']);
    assert.equal(second.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(second.headers['anthropic-ratelimit-requests-remaining'], undefined);
  });
});

describe('cache of Responses API responses', () => {
  const RESPONSES = '/v1/responses';
  let upstream;
  let requests = 0;
  let gw;

  /* A response whose status is status, as the upstream's request number n. */
  const responseOf = (n, status) => {
    const done = status === 'completed';
    return {
      id: `resp_${n}`, object: 'response', created_at: 1, status, model: 'gpt-4o',
      output: done ? [{ id: 'msg_1', type: 'message', role: 'assistant', status: 'completed',
        content: [{ type: 'output_text', text: 'Hello', annotations: [] }] }] : [],
      error: status === 'failed' ? { code: 'server_error', message: 'The model failed' } : null,
      incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
      usage: done ? { input_tokens: 3, output_tokens: 1, total_tokens: 4 } : null,
    };
  };

  /* The events of a stream that ends as status says: with response.completed,
   * response.failed or response.incomplete, or with none when it is 'cut'. */
  const responseEvents = (n, status) => {
    const events = [
      { type: 'response.created', response: responseOf(n, 'in_progress') },
      { type: 'response.output_item.added', output_index: 0,
        item: { id: 'msg_1', type: 'message', role: 'assistant', status: 'in_progress', content: [] } },
      { type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hello' },
      { type: 'response.output_text.done', item_id: 'msg_1', output_index: 0, content_index: 0, text: 'Hello' },
    ];
    if (status !== 'cut')
      events.push({ type: `response.${status}`, response: responseOf(n, status) });
    return events.map((e, i) => `event: ${e.type}\ndata: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`).join('');
  };

  /* The scripted upstream responds 200 with the status that x-status names,
   * as a body or, when the request asks for one, as a stream. */
  before(async () => {
    upstream = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        requests++;
        const status = req.headers['x-status'];
        if (JSON.parse(Buffer.concat(chunks).toString()).stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(responseEvents(requests, status));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(responseOf(requests, status)));
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    gw = await startGateway({
      backends: { openai: { url: `http://127.0.0.1:${upstream.address().port}` } },
      routes: [{ name: 'responses', match: { path: RESPONSES }, backends: ['openai'], cache: true }],
      cache: { store: 'memory' },
    });
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    await stopAll();
    upstream?.close();
  });

  it('stores a completed response', async () => {
    const body = { model: 'gpt-4o', input: `completed ${Date.now()}` };
    const headers = { 'x-status': 'completed' };
    const first = await post(gw, body, headers, { pathname: RESPONSES });
    assert.equal(first.headers['x-tollgate-cache'], 'miss', first.text);
    const seen = requests;
    const second = await post(gw, body, headers, { pathname: RESPONSES });
    assert.equal(second.headers['x-tollgate-cache'], 'hit');
    assert.equal(requests, seen, 'the hit reached the upstream');
    assert.equal(second.text, first.text);
  });

  it('replays a completed stream under its event names', async () => {
    const body = { model: 'gpt-4o', input: `stream ${Date.now()}`, stream: true };
    const headers = { 'x-status': 'completed' };
    const first = await post(gw, body, headers, { pathname: RESPONSES });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-tollgate-cache'], 'miss');
    const seen = requests;
    const second = await post(gw, body, headers, { pathname: RESPONSES });
    assert.equal(second.headers['x-tollgate-cache'], 'hit', 'the stream was not stored');
    assert.equal(requests, seen, 'the hit reached the upstream');
    assert.match(second.headers['content-type'], /^text\/event-stream/);
    assert.deepEqual(namedEvents(second), namedEvents(first));
    assert.equal(namedEvents(second).at(-1).name, 'response.completed');
  });

  it('answers a stream and a body from entries of their own kind', async () => {
    const input = `kinds ${Date.now()}`;
    const headers = { 'x-status': 'completed' };
    await post(gw, { model: 'gpt-4o', input, stream: true }, headers, { pathname: RESPONSES });
    const plain = await post(gw, { model: 'gpt-4o', input }, headers, { pathname: RESPONSES });
    assert.equal(plain.headers['x-tollgate-cache'], 'miss', 'a body came from a stored stream');
    assert.equal(plain.json().object, 'response');

    const streamed = await post(gw, { model: 'gpt-4o', input, stream: true }, headers, { pathname: RESPONSES });
    assert.equal(streamed.headers['x-tollgate-cache'], 'miss', 'a stream came from a stored body');
    assert.equal(namedEvents(streamed)[0].name, 'response.created');
  });

  for (const status of ['failed', 'incomplete', 'cut']) {
    it(`does not store a stream that ends ${status}`, async () => {
      const body = { model: 'gpt-4o', input: `stream ${status} ${Date.now()}`, stream: true };
      for (let i = 0; i < 2; i++) {
        const res = await post(gw, body, { 'x-status': status }, { pathname: RESPONSES });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers['x-tollgate-cache'], 'miss', `the ${status} stream was stored`);
      }
    });
  }

  for (const status of ['failed', 'queued', 'in_progress', 'incomplete', 'cancelled']) {
    it(`does not store a response whose status is ${status}`, async () => {
      const body = { model: 'gpt-4o', input: `${status} ${Date.now()}` };
      for (let i = 0; i < 2; i++) {
        const res = await post(gw, body, { 'x-status': status }, { pathname: RESPONSES });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json().status, status);
        assert.equal(res.headers['x-tollgate-cache'], 'miss', `the ${status} response was stored`);
      }
    });
  }
});

describe('cache with the redis store', () => {
  let redis;
  let mock;
  let gw;
  let gw2;

  /* Redis settings for both instances. The timeout only bounds how long a
   * request waits for a frozen Redis; it is not asserted on. */
  const cacheConfig = () => ({ store: 'redis', redis: redis.url, ttl: '10m', timeout: '250ms' });

  before(async () => {
    redis = await startRedis();
    mock = await startMock();
    const config = {
      backends: { mock: mockBackend(mock) },
      routes: [{ name: 'chat', match: { path: CHAT }, backends: ['mock'], cache: true }],
      cache: cacheConfig(),
    };
    gw = await startGateway(config);
    gw2 = await startGateway(config);
  });

  afterEach(() => {
    gw?.checkErrors();
    gw2?.checkErrors();
  });
  after(async () => {
    await stopAll();
    await stopAllRedis();
  });

  it('stores entries in Redis with their ttl', async () => {
    const body = uniqueBody();
    const before = new Set(await redis.cacheKeys());
    await assertCached(gw, mock, body);
    const added = (await redis.cacheKeys()).filter((k) => !before.has(k));
    assert.equal(added.length, 1, `expected one new key, got ${JSON.stringify(added)}`);
    assert.match(added[0], /^tollgate:cache:[0-9a-f]{64}$/);
    const ttl = await redis.command('PTTL', added[0]);
    assert.ok(ttl > 0, `PTTL ${ttl}: the entry has no ttl`);
    assert.ok(ttl <= 10 * 60 * 1000, `PTTL ${ttl} is longer than the configured 10m`);
  });

  it('replays a stream stored in Redis', async () => {
    const body = uniqueBody({ stream: true });
    const [first, second] = await assertCached(gw, mock, body);
    assert.deepEqual(streamData(second), streamData(first));
  });

  it('shares hits between two instances', async () => {
    const body = uniqueBody();
    const keys = (await redis.cacheKeys()).length;
    const first = await post(gw, body);
    assert.equal(first.headers['x-tollgate-cache'], 'miss');
    // The first instance stores after its response went out; wait for the
    // entry, so that the second instance cannot have stored it itself.
    await waitFor(async () => (await redis.cacheKeys()).length > keys,
      { message: 'the entry of the first instance in Redis' });
    const seen = await upstreamRequests(mock);
    const hit = await post(gw2, body);
    assert.equal(hit.headers['x-tollgate-cache'], 'hit');
    assert.equal(await upstreamRequests(mock), seen);
    assert.equal(hit.json().id, first.json().id);
  });

  it('serves every request while Redis is killed, and hits resume after a restart', async () => {
    const body = uniqueBody();
    await assertCached(gw, mock, body);

    const before = await redisCounters(gw);
    const statuses = [];
    for (let i = 0; i < 20; i++) {
      if (i === 5)
        await redis.kill();
      const res = await post(gw, i % 2 === 0 ? body : uniqueBody(), {}, { timeoutMs: 10000 });
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, Array(20).fill(200));
    await gw.waitForLog(/\[warn\] cache: redis 127\.0\.0\.1:\d+: /);

    await redis.restart();
    const again = uniqueBody();
    await waitFor(async () => (await isHit(gw, mock, again)) || null,
      { message: 'a hit after Redis restarted' });
    const counters = await redisCounters(gw);
    assert.ok(counters.errors > before.errors, `errors: ${JSON.stringify({ before, after: counters })}`);
    assert.ok(counters.connects > before.connects, `connects: ${JSON.stringify({ before, after: counters })}`);
  });

  /* A Redis and a gateway of their own, so that no earlier error holds
   * back the log lines a test reads (errors are logged at most every 5 s). */
  async function startOwnRedis() {
    const frozen = await startRedis();
    const own = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [{ name: 'chat', match: { path: CHAT }, backends: ['mock'], cache: true }],
      cache: { ...cacheConfig(), redis: frozen.url },
    });
    return { frozen, own };
  }

  it('goes on without the cache while Redis is paused', async () => {
    const { frozen, own } = await startOwnRedis();
    const body = uniqueBody();
    await assertCached(own, mock, body);

    frozen.pause();
    try {
      // Without the command timeout these requests would wait for Redis
      // for ever; the request deadline only turns such a hang into a
      // failure.
      for (let i = 0; i < 5; i++) {
        const res = await post(own, i === 0 ? body : uniqueBody(), {}, { timeoutMs: 10000 });
        assert.equal(res.status, 200);
        assert.equal(res.headers['x-tollgate-cache'], 'error');
        assert.equal((await own.accessFor(res.headers['x-request-id'])).cache, 'error');
      }
      await own.waitForLog(/\[warn\] cache: redis .*: no reply within 250 ms/);
      const counters = await redisCounters(own);
      assert.ok(counters.timeouts >= 1, `timeouts while Redis is paused: ${JSON.stringify(counters)}`);
      assert.ok(counters.errors >= counters.timeouts, `errors while Redis is paused: ${JSON.stringify(counters)}`);
      const metrics = await request({ port: own.adminPort, path: '/metrics', timeoutMs: 5000 });
      assert.match(metrics.text, /^tollgate_cache_lookups_total\{route="chat",result="error"\} 5$/m);
    } finally {
      frozen.resume();
    }

    const again = uniqueBody();
    await waitFor(async () => (await isHit(own, mock, again)) || null,
      { message: 'a hit after Redis resumed' });
    await own.stop();
  });

  it('stores no entry above max_entry_bytes, and lookups stay healthy', async () => {
    const { frozen, own } = await startOwnRedis();
    const small = uniqueBody();
    await assertCached(own, mock, small);
    const keys = (await frozen.cacheKeys()).length;

    // The default bound is 4MiB. With one worker, every lookup shares the
    // one Redis connection that a SET of these responses would take.
    const large = uniqueBody();
    const largeStream = uniqueBody({ stream: true });
    const largeHeaders = { 'x-mock': 'size=6000000' };
    const streamHeaders = { 'x-mock': 'size=6000000;events=100' };
    const results = await Promise.all([
      post(own, large, largeHeaders, { timeoutMs: 20000 }),
      post(own, largeStream, streamHeaders, { timeoutMs: 20000 }),
      post(own, large, largeHeaders, { timeoutMs: 20000 }),
      ...Array.from({ length: 40 }, () => post(own, small, {}, { timeoutMs: 20000 })),
    ]);
    for (const [i, res] of results.entries()) {
      assert.equal(res.status, 200, `request ${i}: ${res.text.slice(0, 200)}`);
      assert.equal(res.headers['x-tollgate-cache'], i < 3 ? 'miss' : 'hit', `request ${i}`);
    }
    await own.waitForLog(/\[info\] .*cache: response not stored: \d+ bytes, more than the 4194304 bytes one entry may take \(cache\.max_entry_bytes\)/);
    await own.waitForLog(/\[info\] .*cache: response not stored: the stream is larger than the 4194304 bytes one entry may take \(cache\.max_entry_bytes\)/);

    assert.equal((await frozen.cacheKeys()).length, keys, 'a large entry was written to Redis');
    assert.equal(await isHit(own, mock, large, largeHeaders), false, 'the large response was stored');
    assert.equal((await redisCounters(own)).errors, 0, 'a Redis command failed');
    await own.stop();
  });

  it('logs one connected line per Redis outage', async () => {
    const { frozen, own } = await startOwnRedis();
    const connectedLines = () => own.stderr.filter((line) => /\[info\] cache: connected to redis /.test(line));
    await assertCached(own, mock, uniqueBody());
    const before = await redisCounters(own);

    // A paused Redis still completes connects from its listen queue, so
    // each reconnect succeeds and then times out on its first command.
    frozen.pause();
    try {
      await waitFor(async () => {
        await post(own, uniqueBody(), {}, { timeoutMs: 10000 });
        return (await redisCounters(own)).connects >= before.connects + 2 || null;
      }, { message: 'two reconnects while Redis is paused' });
    } finally {
      frozen.resume();
    }
    const again = uniqueBody();
    await waitFor(async () => (await isHit(own, mock, again)) || null,
      { message: 'a hit after Redis resumed' });

    assert.equal(connectedLines().length, 2, `connected lines:\n${connectedLines().join('\n')}`);
    await own.stop();
  });

  /* A gateway of its own whose cache.redis is url. */
  function startRedisGateway(url) {
    return startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [{ name: 'chat', match: { path: CHAT }, backends: ['mock'], cache: true }],
      cache: { ...cacheConfig(), redis: url },
    });
  }

  /* Send body three times while AUTH or SELECT fails: each request goes to
   * the upstream with cache status error, and nothing is stored in any
   * database. Then wait for two reconnects, which show that the failed
   * connection was closed and the back-off retries. */
  async function assertSetupFails(own, server) {
    const body = uniqueBody();
    const before = await redisCounters(own);
    for (let i = 0; i < 3; i++) {
      const seen = await upstreamRequests(mock);
      const res = await post(own, body, {}, { timeoutMs: 10000 });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers['x-tollgate-cache'], 'error', `request ${i}`);
      assert.equal(await upstreamRequests(mock), seen + 1, `request ${i} did not reach the upstream`);
    }
    await waitFor(async () => (await redisCounters(own)).connects >= before.connects + 2 || null,
      { message: 'two reconnects after the failed AUTH or SELECT' });
    assert.deepEqual(await server.keyspace(), {}, 'keys were written');
  }

  /* The warning lines about a failed AUTH or SELECT. */
  const setupWarnings = (own) => own.stderr.filter((line) => /\[warn\] cache: redis .*: (AUTH|SELECT)/.test(line));

  it('uses no connection whose SELECT failed', async () => {
    const server = await startRedis();
    const own = await startRedisGateway(server.url.replace(/\/0$/, '/99'));
    await assertSetupFails(own, server);

    const warnings = setupWarnings(own);
    assert.equal(warnings.length, 1, `one line for all reconnects:\n${warnings.join('\n')}`);
    assert.match(warnings[0], /cache: redis 127\.0\.0\.1:\d+: SELECT 99 failed: ERR DB index is out of range;/);
    const counters = await redisCounters(own);
    assert.ok(counters.errors >= 2, `errors: ${JSON.stringify(counters)}`);
    await own.stop();
  });

  it('uses no connection whose AUTH failed', async () => {
    const server = await startRedis();
    await server.requirePassword('the-right-one');
    const own = await startRedisGateway(server.url.replace('redis://', 'redis://:a-wrong-one@'));
    await assertSetupFails(own, server);

    const warnings = setupWarnings(own);
    assert.equal(warnings.length, 1, `one line for all reconnects:\n${warnings.join('\n')}`);
    assert.match(warnings[0], /cache: redis 127\.0\.0\.1:\d+: AUTH failed: WRONGPASS/);
    assert.doesNotMatch(warnings[0], /a-wrong-one/, 'the password is logged');
    await own.stop();
  });

  it('names the user whose AUTH failed', async () => {
    const server = await startRedis();
    const created = await server.command('ACL', 'SETUSER', 'gateway', 'on', '>the-right-one', '~*', '+@all');
    assert.equal(created, 'OK');
    const own = await startRedisGateway(server.url.replace('redis://', 'redis://gateway:a-wrong-one@'));
    await assertSetupFails(own, server);

    const warnings = setupWarnings(own);
    assert.equal(warnings.length, 1, `one line for all reconnects:\n${warnings.join('\n')}`);
    assert.match(warnings[0], /cache: redis 127\.0\.0\.1:\d+: AUTH as user "gateway" failed: WRONGPASS/);
    assert.doesNotMatch(warnings[0], /a-wrong-one/, 'the password is logged');
    await own.stop();
  });

  it('uses the cache once AUTH succeeds again', async () => {
    const server = await startRedis();
    await server.requirePassword('an-old-one');
    // SELECT waits behind AUTH, and the lookups behind both.
    const own = await startRedisGateway(server.url.replace('redis://', 'redis://:the-new-one@').replace(/\/0$/, '/3'));
    await assertSetupFails(own, server);

    const connected = own.stderr.length;
    await server.requirePassword('the-new-one');
    // The next reconnect comes after a back-off of up to 2 s.
    const body = uniqueBody();
    await waitFor(async () => (await post(own, body)).headers['x-tollgate-cache'] === 'hit' || null,
      { message: 'a hit once Redis accepts the password' });
    assert.deepEqual(await server.keyspace(), { db3: 1 });
    await own.waitForLog(/\[info\] cache: connected to redis /, { from: connected });
    await own.stop();
  });
});

describe('cache with a Redis that answers GET with an array', () => {
  let server;

  after(async () => {
    await stopAll();
    server?.close();
  });

  it('names the reply type in words', async () => {
    // Every command gets a one-element array, which no GET of a string
    // key returns.
    server = net.createServer((socket) => {
      let pending = '';
      socket.on('data', (bytes) => {
        pending += bytes.toString('latin1');
        const commands = pending.match(/\*\d+\r\n\$\d+\r\n[A-Za-z]+\r\n/g) || [];
        pending = '';
        socket.write('*1\r\n$1\r\nx\r\n'.repeat(commands.length));
      });
      socket.on('error', () => {});
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const mock = await startMock();
    const gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [{ name: 'chat', match: { path: CHAT }, backends: ['mock'], cache: true }],
      cache: { store: 'redis', redis: `redis://127.0.0.1:${server.address().port}`, ttl: '10m', timeout: '250ms' },
    });
    const res = await request({ port: gw.port, method: 'POST', path: CHAT, body: uniqueBody() });
    assert.equal(res.status, 200);
    const line = await gw.waitForLog(/cache: redis .*: GET returned/);
    assert.match(line, /GET returned an array \(reply type 2\), not a bulk string/);
  });
});
