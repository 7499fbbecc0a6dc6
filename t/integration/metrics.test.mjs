// Prometheus metrics on the admin listener. Covered: promtool on a scrape
// after mixed traffic, both exposition formats, stream timing against the
// mock's delays and token counts against the mock's usage. Also
// estimates for unreadable usage, abandonment, failover, cooldowns,
// bounded series, sessions, reloads, and a real Prometheus server
// scraping the gateway.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, SRCDIR, freePort, mockBackend, openStream, openaiRoutes, rawPost, request,
  splitEvents, eventData, startGateway, startMock, stopAll, waitFor,
} from './lib/harness.mjs';
import {
  parseSamples, promtoolCheck, scrape, seriesKey, startPrometheus, valueOf,
} from './lib/prometheus.mjs';

const messages = [{ role: 'user', content: 'Say hello to the metrics.' }];

/*
 * The mock sends the response head and the role-only chunk after
 * first_byte_delay, then each later event event_delay after the one before,
 * so the first content leaves the gateway FIRST_BYTE + EVENT after the
 * request. The delays put every observation at least 500 ms inside the
 * bucket (1, 2.5]: TTFT near 1.7 s, token gaps near 1.5 s. A busy machine
 * cannot move one across a bound then; with bounds 50 ms away, loaded
 * runs did.
 */
const FIRST_BYTE_MS = 200;
const EVENT_MS = 1500;
const EVENTS = 4;
const TIMING = `first_byte_delay=${FIRST_BYTE_MS}ms;event_delay=${EVENT_MS}ms;events=${EVENTS}`;

function route(name, model) {
  return { name, match: { path: '/v1/chat/completions', model }, backends: ['mock'] };
}

function gatewayConfig(mock, extra = {}) {
  return {
    backends: {
      mock: mockBackend(mock),
      cooling: mockBackend(mock),
      // Port 9 (discard) on loopback: nothing listens, so connects fail.
      closed: { url: 'http://127.0.0.1:9' },
    },
    routes: [
      route('timing', 'timed'),
      route('tokens', 'tok'),
      route('abandon', 'quit'),
      { name: 'cool', match: { path: '/v1/chat/completions', model: 'cool' }, backends: ['cooling'] },
      { name: 'cool503', match: { path: '/v1/chat/completions', model: 'cool-503' }, backends: ['cooling'] },
      { name: 'failover', match: { path: '/v1/chat/completions', model: 'fo' }, backends: ['closed', 'mock'] },
      ...openaiRoutes('mock'),
    ],
    pricing: { currency: 'USD', models: { tok: { input: 1, output: 2 } } },
    ...extra,
  };
}

function chat(gw, body, headers = {}, agent = false) {
  return request({ port: gw.port, method: 'POST', path: '/v1/chat/completions', body, headers, agent });
}

/* The data of every event of a streamed response, parsed when JSON. */
function streamData(res) {
  return splitEvents(res.text).events.map(eventData).filter((d) => d !== null)
    .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
}

/* Scrape once no request is in flight, so that every finished request has
 * been counted: a client can read its whole response a moment before the
 * gateway ends the request. */
async function settledSamples(gw) {
  return waitFor(async () => {
    const samples = parseSamples((await scrape(gw)).text);
    return valueOf(samples, 'tollgate_requests_in_flight') === 0 ? samples : null;
  }, { message: 'tollgate_requests_in_flight to reach 0' });
}

describe('metrics endpoint', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(gatewayConfig(mock));
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('passes promtool check after mixed traffic', async () => {
    gw.expectErrors(/upstream/);
    await chat(gw, { model: 'gpt-4o', messages });
    await chat(gw, { model: 'tok', messages, stream: true });
    await chat(gw, { model: 'tok', messages, stream: true, stream_options: { include_usage: true } });
    await chat(gw, { model: 'gpt-4o', messages }, { 'x-mock': 'status=500' });
    await chat(gw, { model: 'gpt-4o', messages }, { 'x-mock': 'status=429' });
    await chat(gw, { model: 'gpt-4o', messages, stream: true }, { 'x-mock': 'events=5;close_after=3' });
    await chat(gw, '{"model": ');
    await request({ port: gw.port, method: 'POST', path: '/v1/completions', body: { model: 'babbage', prompt: 'a' } });
    await request({ port: gw.port, method: 'POST', path: '/v1/embeddings', body: { model: 'emb', input: 'a' } });
    await request({ port: gw.port, method: 'POST', path: '/v1/unknown', body: { model: 'gpt-4o' } });

    const samples = await settledSamples(gw);
    const res = await scrape(gw);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const { code, output } = await promtoolCheck(res.text);
    assert.equal(output, '', 'promtool check metrics reported problems');
    assert.equal(code, 0);

    for (const c of ['200', '400', '404', '429', '500']) {
      const total = [...samples].filter(([k]) => k.startsWith('tollgate_requests_total{') &&
        k.includes(`code="${c}"`)).reduce((sum, [, v]) => sum + v, 0);
      assert.ok(total >= 1, `no request counted with code ${c}`);
    }
    assert.equal(valueOf(samples, 'tollgate_build_info', { version: '0.1.0' }), 1);
    assert.ok(valueOf(samples, 'process_open_fds') > 0);
    assert.ok(valueOf(samples, 'process_resident_memory_bytes') > 0);
  });

  it('serves only families that tollgate.json(5) lists', async () => {
    const page = fs.readFileSync(path.join(SRCDIR, 'man', 'tollgate.json.5'), 'utf8');
    const section = page.slice(page.indexOf('\n.SH METRICS'), page.indexOf('\n.SH TRACING'));
    const served = [...(await scrape(gw)).text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    assert.ok(served.length > 20, `only ${served.length} families served`);
    const missing = served.filter((name) => !new RegExp(`\\b${name}\\b`).test(section));
    assert.deepEqual(missing, [], 'families missing from the METRICS section of tollgate.json(5)');
  });

  it('serves OpenMetrics ending with EOF when asked', async () => {
    const om = await scrape(gw, 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5');
    assert.equal(om.headers['content-type'], 'application/openmetrics-text; version=1.0.0; charset=utf-8');
    assert.ok(om.text.endsWith('\n# EOF\n'), `ends with ${JSON.stringify(om.text.slice(-40))}`);
    assert.match(om.text, /^# TYPE tollgate_requests counter$/m);
    assert.match(om.text, /^tollgate_requests_total\{/m);
    assert.match(om.text, /^# TYPE tollgate_build info$/m);
    assert.doesNotMatch(om.text, /^# TYPE \S+_total /m);

    const text = await scrape(gw);
    assert.doesNotMatch(text.text, /# EOF/);
    assert.match(text.text, /^# TYPE tollgate_requests_total counter$/m);
  });

  it('puts stream timing in the buckets of the mock delays', async () => {
    const streams = 4;
    const responses = await Promise.all(Array.from({ length: streams },
      () => chat(gw, { model: 'timed', messages, stream: true }, { 'x-mock': TIMING })));
    for (const res of responses)
      assert.equal(res.status, 200);
    const s = await settledSamples(gw);
    const labels = { route: 'timing', backend: 'mock', model: 'timed' };
    const bucket = (name, le) => valueOf(s, `tollgate_${name}_bucket`, { ...labels, le });

    assert.equal(valueOf(s, 'tollgate_time_to_first_token_seconds_count', labels), streams);
    assert.equal(bucket('time_to_first_token_seconds', '1'), 0, 'a first token came before the mock sent it');
    assert.equal(bucket('time_to_first_token_seconds', '2.5'), streams);

    const gaps = streams * (EVENTS - 1);
    assert.equal(valueOf(s, 'tollgate_time_between_tokens_seconds_count', labels), gaps);
    assert.equal(bucket('time_between_tokens_seconds', '1'), 0);
    assert.equal(bucket('time_between_tokens_seconds', '2.5'), gaps);

    assert.equal(valueOf(s, 'tollgate_time_per_output_token_seconds_count', labels), streams);
    assert.equal(bucket('time_per_output_token_seconds', '1'), 0);
    assert.equal(bucket('time_per_output_token_seconds', '2.5'), streams);
    assert.equal(valueOf(s, 'tollgate_streams_open'), 0);
  });

  it('counts the tokens the mock reported', async () => {
    const tokens = (s, type) => valueOf(s, 'tollgate_tokens_total', { route: 'tokens', backend: 'mock', model: 'tok', type });
    const cost = (s) => valueOf(s, 'tollgate_cost_total', { route: 'tokens', backend: 'mock', model: 'tok' });
    let s = await settledSamples(gw);
    let input = tokens(s, 'input');
    let output = tokens(s, 'output');
    let spent = cost(s);

    // A whole response: its usage object.
    const whole = await chat(gw, { model: 'tok', messages }, { 'x-mock': 'words=7' });
    const usage = whole.json().usage;
    s = await settledSamples(gw);
    assert.equal(tokens(s, 'input') - input, usage.prompt_tokens);
    assert.equal(tokens(s, 'output') - output, usage.completion_tokens);
    assert.ok(Math.abs(cost(s) - spent - (usage.prompt_tokens + 2 * usage.completion_tokens) / 1e6) < 1e-12);
    [input, output, spent] = [tokens(s, 'input'), tokens(s, 'output'), cost(s)];

    // A stream whose client asked for usage: the usage chunk it received.
    const asked = streamData(await chat(gw, { model: 'tok', messages, stream: true,
      stream_options: { include_usage: true } }, { 'x-mock': 'events=6' }));
    const chunk = asked.find((d) => d !== '[DONE]' && d.usage);
    assert.ok(chunk, 'the client that asked got no usage chunk');
    s = await settledSamples(gw);
    assert.equal(tokens(s, 'input') - input, chunk.usage.prompt_tokens);
    assert.equal(tokens(s, 'output') - output, chunk.usage.completion_tokens);
    [input, output] = [tokens(s, 'input'), tokens(s, 'output')];

    // A stream whose client did not request usage: the usage the mock
    // sends when requested, which never reaches this client.
    const body = { model: 'tok', messages, stream: true };
    const res = await chat(gw, body, { 'x-mock': 'events=4' });
    assert.doesNotMatch(res.text, /"usage"/, 'the client got usage it did not ask for');
    assert.equal(streamData(res).at(-1), '[DONE]');
    const direct = await request({ port: mock.port, method: 'POST', path: '/v1/chat/completions',
      body: { ...body, stream_options: { include_usage: true } }, headers: { 'x-mock': 'events=4' } });
    const reported = streamData(direct).find((d) => d !== '[DONE]' && d.usage).usage;
    s = await settledSamples(gw);
    assert.equal(tokens(s, 'input') - input, reported.prompt_tokens);
    assert.equal(tokens(s, 'output') - output, reported.completion_tokens);
    const sent = await mock.lastRequest();
    assert.equal(JSON.parse(sent.body).stream_options.include_usage, true);
  });

  it('estimates tokens apart when the backend reports none', async () => {
    const labels = { route: 'tokens', backend: 'mock', model: 'tok' };
    let s = await settledSamples(gw);
    const provided = valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'output' });
    const estimated = valueOf(s, 'tollgate_estimated_tokens_total', { ...labels, type: 'output' });

    await chat(gw, { model: 'tok', messages, stream: true }, { 'x-mock': 'events=5;usage=off' });
    s = await settledSamples(gw);
    assert.equal(valueOf(s, 'tollgate_estimated_tokens_total', { ...labels, type: 'output' }) - estimated, 5);
    assert.equal(valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'output' }), provided);
  });

  it('counts a client gone before the first token', async () => {
    const id = 'metrics-abandon-before-first-token';
    const labels = { route: 'abandon', phase: 'before_first_token' };
    const before = valueOf(await settledSamples(gw), 'tollgate_requests_abandoned_total', labels);
    const client = await RawClient.connect(gw.port);
    await client.write(rawPost('/v1/chat/completions', { model: 'quit', messages, stream: true },
      ['x-mock: first_byte_delay=3s', `X-Request-Id: ${id}`]));
    await waitFor(async () => (await mock.requests()).some((r) => r.headers['x-request-id'] === id),
      { message: 'the mock to receive the request' });
    client.destroy();
    await gw.accessFor(id);

    const s = await settledSamples(gw);
    assert.equal(valueOf(s, 'tollgate_requests_abandoned_total', labels) - before, 1);
    assert.ok(valueOf(s, 'tollgate_requests_total', { route: 'abandon', backend: 'mock', model: 'quit', code: 'none' }) >= 1);
  });

  it('counts a client gone mid-stream', async () => {
    const id = 'metrics-abandon-mid-stream';
    const labels = { route: 'abandon', phase: 'mid_stream' };
    const before = valueOf(await settledSamples(gw), 'tollgate_requests_abandoned_total', labels);
    const stream = await openStream({ port: gw.port, body: { model: 'quit', messages, stream: true },
      headers: { 'x-mock': 'events=40;event_delay=50ms', 'x-request-id': id } });
    let first = await stream.nextData();
    while (first !== null && !JSON.parse(first.data).choices?.[0]?.delta?.content)
      first = await stream.nextData();
    assert.notEqual(first, null, 'the stream ended without content');
    stream.abort();
    await gw.accessFor(id);

    const s = await settledSamples(gw);
    assert.equal(valueOf(s, 'tollgate_requests_abandoned_total', labels) - before, 1);
  });

  it('counts a failover and its failed attempt', async () => {
    gw.expectErrors(/127\.0\.0\.1:9/);
    const before = await settledSamples(gw);
    const res = await chat(gw, { model: 'fo', messages });
    assert.equal(res.status, 200);

    const s = await settledSamples(gw);
    const delta = (name, labels) => valueOf(s, name, labels) - valueOf(before, name, labels);
    assert.equal(delta('tollgate_failovers_total', { route: 'failover' }), 1);
    assert.equal(delta('tollgate_upstream_attempts_total', { backend: 'closed', outcome: 'connect_error' }), 1);
    assert.equal(delta('tollgate_upstream_attempts_total', { backend: 'mock', outcome: 'success' }), 1);
    assert.equal(delta('tollgate_requests_total', { route: 'failover', backend: 'mock', model: 'fo', code: '200' }), 1);
  });

  // A 429 for a model cools down that model only, so the backend stays up
  // for the others; a 503 cools the whole backend down.
  it('counts rate-limit cooldowns and marks the backend down', async () => {
    let s = await settledSamples(gw);
    assert.equal(valueOf(s, 'tollgate_backend_up', { backend: 'cooling' }), 1);
    let res = await chat(gw, { model: 'cool', messages }, { 'x-mock': 'status=429;retry_after=60' });
    assert.equal(res.status, 429);

    s = await settledSamples(gw);
    assert.equal(valueOf(s, 'tollgate_backend_cooldowns_total', { backend: 'cooling' }), 1);
    assert.equal(valueOf(s, 'tollgate_backend_up', { backend: 'cooling' }), 1);

    res = await chat(gw, { model: 'cool-503', messages }, { 'x-mock': 'status=503;retry_after=60' });
    assert.equal(res.status, 503);
    s = await settledSamples(gw);
    assert.equal(valueOf(s, 'tollgate_backend_cooldowns_total', { backend: 'cooling' }), 2);
    assert.equal(valueOf(s, 'tollgate_backend_up', { backend: 'cooling' }), 0);
    assert.equal(valueOf(s, 'tollgate_backend_up', { backend: 'mock' }), 1);
    assert.equal(valueOf(s, 'tollgate_upstream_attempts_total', { backend: 'cooling', outcome: 'rate_limited' }), 1);
  });

  it('adds no series for random models and users', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const random = () => Math.random().toString(36).slice(2);
    const send = () => chat(gw, { model: `m-${random()}`, user: `u-${random()}`, messages },
      { 'x-mock': 'words=1', 'x-session-id': `s-${random()}` }, agent);
    try {
      // One first, so the "other" series of the route exist.
      assert.equal((await send()).status, 200);
      const before = new Set((await settledSamples(gw)).keys());

      let left = 10000;
      const workers = Array.from({ length: 32 }, async () => {
        while (left > 0) {
          left--;
          const res = await send();
          assert.equal(res.status, 200);
        }
      });
      await Promise.all(workers);

      const samples = await settledSamples(gw);
      const added = [...samples.keys()].filter((k) => !before.has(k));
      assert.deepEqual(added, []);
      assert.ok(valueOf(samples, 'tollgate_requests_total',
        { route: 'chat', backend: 'mock', model: 'other', code: '200' }) >= 10001);
    } finally {
      agent.destroy();
    }
  });
});

describe('metrics sessions', () => {
  let gw;

  before(async () => {
    const mock = await startMock();
    gw = await startGateway(gatewayConfig(mock, { sessions: { idle_timeout: '1s' } }));
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('counts the turns of a session once it is idle', async () => {
    for (let i = 0; i < 3; i++)
      await chat(gw, { model: 'gpt-4o', messages }, { 'x-session-id': 'conversation-1' });
    for (let i = 0; i < 2; i++)
      await chat(gw, { model: 'gpt-4o', messages, user: 'user-1' });
    await chat(gw, { model: 'gpt-4o', messages });     // no session

    // A session ends at the first scrape after its idle timeout.
    const s = await waitFor(async () => {
      const samples = parseSamples((await scrape(gw)).text);
      return valueOf(samples, 'tollgate_session_turns_count') >= 2 ? samples : null;
    }, { message: 'two sessions to end' });
    assert.equal(valueOf(s, 'tollgate_session_turns_count'), 2);
    assert.equal(valueOf(s, 'tollgate_session_turns_sum'), 5);
    assert.equal(valueOf(s, 'tollgate_session_turns_bucket', { le: '1' }), 0);
    assert.equal(valueOf(s, 'tollgate_session_turns_bucket', { le: '2' }), 1);
    assert.equal(valueOf(s, 'tollgate_session_turns_bucket', { le: '3' }), 2);
    assert.equal(valueOf(s, 'tollgate_sessions_active'), 0);
  });
});

/*
 * A stream of CONTENT_EVENTS content chunks whose usage chunk carries the
 * given usage object, sent only when the request asked for usage.
 */
const CONTENT_EVENTS = 3;

function streamWithUsage(usage) {
  const chunk = (fields) => `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'scripted', ...fields })}\n\n`;
  const delta = (d, finish = null) => chunk({ choices: [{ index: 0, delta: d, finish_reason: finish }] });
  return (asked) => [
    delta({ role: 'assistant' }),
    ...Array.from({ length: CONTENT_EVENTS }, () => delta({ content: 'word ' })),
    delta({}, 'stop'),
    ...(asked ? [chunk({ choices: [], usage })] : []),
    'data: [DONE]\n\n',
  ].join('');
}

/* Anthropic's shape: usage in message_start, and the final output count in
 * message_delta, here unreadable. */
function anthropicStreamWithDeltaUsage(usage) {
  const event = (data) => `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`;
  return () => [
    event({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'scripted', content: [], usage: { input_tokens: 5, output_tokens: 1 } } }),
    event({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
    ...Array.from({ length: CONTENT_EVENTS }, () => event({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'word ' } })),
    event({ type: 'content_block_stop', index: 0 }),
    event({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage }),
    event({ type: 'message_stop' }),
  ].join('');
}

/* Streams by model, each given whether the request asked for usage. */
const UNREADABLE_USAGE = {
  negative: streamWithUsage({ prompt_tokens: -3, completion_tokens: -7, total_tokens: -10 }),
  strings: streamWithUsage({ prompt_tokens: '3', completion_tokens: '7', total_tokens: '10' }),
  'anthropic-delta': anthropicStreamWithDeltaUsage({ output_tokens: '9' }),
};

describe('metrics of unreadable stream usage', () => {
  let upstream;
  let gw;

  before(async () => {
    upstream = http.createServer((req, res) => {
      let text = '';
      req.on('data', (bytes) => { text += bytes; });
      req.on('end', () => {
        const body = JSON.parse(text);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(UNREADABLE_USAGE[body.model](body.stream_options?.include_usage === true));
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    gw = await startGateway({
      backends: { scripted: { url: `http://127.0.0.1:${upstream.address().port}` } },
      // An exact model per route, so that the model is a label value.
      routes: Object.keys(UNREADABLE_USAGE).map((model) => ({
        name: model, match: { path: '/v1/chat/completions', model }, backends: ['scripted'],
      })),
    });
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    await stopAll();
    upstream?.close();
  });

  for (const model of Object.keys(UNREADABLE_USAGE)) {
    it(`estimates tokens of ${model} counts`, async () => {
      const labels = { route: model, backend: 'scripted', model, type: 'output' };
      const res = await chat(gw, { model, messages, stream: true });
      assert.equal(res.status, 200);
      if (!model.startsWith('anthropic'))
        assert.doesNotMatch(res.text, /"usage"/, 'the client got usage it did not ask for');

      const s = await settledSamples(gw);
      assert.equal(valueOf(s, 'tollgate_estimated_tokens_total', labels), CONTENT_EVENTS);
      assert.equal(valueOf(s, 'tollgate_tokens_total', labels), 0);
      assert.equal(valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'input' }), 0);
    });
  }
});

/*
 * A failover group member that renames the model: the response came from
 * the model sent upstream, so its tokens are priced and labelled under that
 * model, which the access log names too. "small-asked" costs 50 times
 * "small", so pricing by the client's model would show in the cost.
 */
describe('metrics of a member that renames the model', () => {
  let gw;

  before(async () => {
    const failing = await startMock({ args: ['--options', 'status=500'] });
    const ok = await startMock();
    const renameTo = (name, model) => ({
      name,
      match: { path: '/v1/chat/completions', model: `${model}-asked` },
      backends: ['failing', { members: [{ name: 'ok', model }] }],
      retry: { budget: 1, min_retries: 1000000 },
    });
    gw = await startGateway({
      backends: {
        failing: mockBackend(failing, { health: { consecutive_failures: 0 } }),
        ok: mockBackend(ok),
      },
      routes: [renameTo('priced', 'small'), renameTo('unpriced', 'tiny')],
      pricing: { models: { 'small-asked': { input: 50, output: 100 }, small: { input: 1, output: 2 } } },
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('prices tokens by the model sent', async () => {
    const res = await chat(gw, { model: 'small-asked', messages });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-tollgate-attempts'], 'failing:500,ok:200');
    const { usage } = res.json();

    const s = await settledSamples(gw);
    const labels = { route: 'priced', backend: 'ok', model: 'small' };
    assert.equal(valueOf(s, 'tollgate_requests_total', { ...labels, code: '200' }), 1);
    assert.equal(valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'input' }), usage.prompt_tokens);
    const cost = valueOf(s, 'tollgate_cost_total', labels);
    const expected = (usage.prompt_tokens + 2 * usage.completion_tokens) / 1e6;
    assert.ok(Math.abs(cost - expected) < 1e-12, `cost ${cost}, expected ${expected} at the prices of "small"`);
    const clientModelSeries = [...s.keys()].filter((k) => k.includes('model="small-asked"') && /_(tokens|cost)_total/.test(k));
    assert.deepEqual(clientModelSeries, [], 'series under the model the client named');

    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.model, 'small-asked');
    assert.equal(entry.upstream_model, 'small');
    assert.equal(entry.backend, 'ok');
    assert.equal(entry.upstream_status, 200);
  });

  it('labels a member-only model by name', async () => {
    const res = await chat(gw, { model: 'tiny-asked', messages });
    assert.equal(res.status, 200);

    const s = await settledSamples(gw);
    const labels = { route: 'unpriced', backend: 'ok', model: 'tiny', code: '200' };
    assert.equal(valueOf(s, 'tollgate_requests_total', labels), 1);
  });
});

describe('metrics across a reload', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [route('kept', 'm1'), route('removed', 'm2')],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('keeps counters and the series of removed routes', async () => {
    const kept = { route: 'kept', backend: 'mock', model: 'm1', code: '200' };
    const removed = { route: 'removed', backend: 'mock', model: 'm2', code: '200' };
    const added = { route: 'added', backend: 'mock', model: 'm3', code: '200' };
    await chat(gw, { model: 'm1', messages });
    await chat(gw, { model: 'm2', messages });

    const config = { ...gw.config, routes: [route('kept', 'm1'), route('added', 'm3')] };
    assert.equal(await gw.reload(config), 'reloaded');
    await chat(gw, { model: 'm1', messages });
    await chat(gw, { model: 'm3', messages });

    for (let scrapes = 0; scrapes < 2; scrapes++) {
      // The second scrape comes after the old config's table was archived.
      const s = await settledSamples(gw);
      assert.equal(valueOf(s, 'tollgate_requests_total', kept), 2);
      assert.equal(valueOf(s, 'tollgate_requests_total', removed), 1);
      assert.equal(valueOf(s, 'tollgate_requests_total', added), 1);
    }
  });
});

describe('metrics of a gateway without traffic', () => {
  afterEach(stopAll);

  // Workers build their series tables at their first request under a
  // config; tollgate_backend_up comes from the config loaded regardless.
  it('shows backend_up before the first request', async () => {
    const mock = await startMock();
    const gw = await startGateway({
      workers: 2, backends: { mock: mockBackend(mock) }, routes: [route('chat', 'm1')],
    });
    const up = async (backend) => parseSamples((await scrape(gw)).text)
      .get(seriesKey('tollgate_backend_up', { backend }));
    assert.equal(await up('mock'), 1);

    const config = {
      ...gw.config,
      backends: { ...gw.config.backends, spare: mockBackend(mock) },
      routes: [route('chat', 'm1'), { ...route('spare', 'm2'), backends: ['spare'] }],
    };
    assert.equal(await gw.reload(config), 'reloaded');
    assert.equal(await up('spare'), 1);
    assert.equal(await up('mock'), 1);
    await gw.stop();
  });
});

describe('metrics scraped by Prometheus', () => {
  let mock;
  let gw;
  let prometheus;
  let proxy;
  const seen = [];              // {accept, contentType} of each scrape

  before(async () => {
    mock = await startMock();
    gw = await startGateway(gatewayConfig(mock, { tracing: { enabled: true } }));

    // Prometheus scrapes through this pass-through, which notes the format
    // it asked for and the one it got.
    proxy = http.createServer((req, res) => {
      http.get({ host: '127.0.0.1', port: gw.adminPort, path: req.url, headers: { accept: req.headers.accept ?? '' } },
        (upstream) => {
          seen.push({ accept: req.headers.accept, contentType: upstream.headers['content-type'] });
          res.writeHead(upstream.statusCode, upstream.headers);
          upstream.pipe(res);
        }).on('error', () => res.destroy());
    });
    const port = await freePort();
    proxy.listen(port, '127.0.0.1');
    await once(proxy, 'listening');
    prometheus = await startPrometheus([`127.0.0.1:${port}`]);
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    await prometheus?.stop();
    proxy?.close();
    await stopAll();
  });

  const traceIds = [];

  it('agrees with the mock delays on the TTFT quantile', async () => {
    const streams = 10;
    let output = 0;
    const responses = await Promise.all(Array.from({ length: streams }, () => {
      // Each request continues a sampled trace of its own.
      const traceId = crypto.randomBytes(16).toString('hex');
      const traceparent = `00-${traceId}-${crypto.randomBytes(8).toString('hex')}-01`;
      traceIds.push(traceId);
      return chat(gw, { model: 'timed', messages, stream: true,
        stream_options: { include_usage: true } }, { 'x-mock': TIMING, traceparent });
    }));
    for (const res of responses)
      output += streamData(res).find((d) => d !== '[DONE]' && d.usage).usage.completion_tokens;
    await settledSamples(gw);

    // A request is counted in requests_total when it ends, after its other
    // figures, so once Prometheus has all of them it has everything.
    const selector = '{route="timing",backend="mock",model="timed"}';
    await waitFor(async () => (await prometheus.scalar(
      `sum(tollgate_requests_total${selector})`)) === streams,
    { timeoutMs: 30000, message: 'Prometheus to scrape the streams' });

    // With every observation in one bucket, histogram_quantile interpolates
    // inside it, so agreement means the quantile lies in the bucket of the
    // delays set in the x-mock header.
    const expected = (FIRST_BYTE_MS + EVENT_MS) / 1000;
    assert.ok(expected > 1, `expected TTFT ${expected} s`);
    assert.ok(expected <= 2.5, `expected TTFT ${expected} s`);
    for (const q of [0.5, 0.9, 0.99]) {
      const ttft = await prometheus.scalar(
        `histogram_quantile(${q}, sum by (le) (tollgate_time_to_first_token_seconds_bucket${selector}))`);
      assert.ok(ttft > 1, `p${q * 100} TTFT ${ttft} s is not above 1 s`);
      assert.ok(ttft <= 2.5, `p${q * 100} TTFT ${ttft} s is above 2.5 s`);
    }
    assert.equal(await prometheus.scalar(`sum(tollgate_tokens_total{route="timing",type="output"})`), output);

    const [target] = await prometheus.targets();
    assert.equal(target.health, 'up');
    assert.equal(target.lastError, '');
    assert.ok(seen.length > 0);
    assert.match(seen[0].accept, /application\/openmetrics-text/, 'Prometheus did not ask for OpenMetrics');
    assert.match(seen[0].contentType, /^application\/openmetrics-text; version=1\.0\.0/);
  });

  it('links TTFT buckets to traces with exemplars', async () => {
    const data = await waitFor(async () => {
      const series = await prometheus.queryExemplars(
        'tollgate_time_to_first_token_seconds_bucket{route="timing"}');
      return series.length > 0 ? series : null;
    }, { timeoutMs: 30000, message: 'Prometheus to store an exemplar' });

    const exemplars = data.flatMap((s) => s.exemplars.map((e) => ({ ...e, le: s.seriesLabels.le })));
    assert.ok(exemplars.length > 0);
    for (const e of exemplars) {
      assert.ok(traceIds.includes(e.labels.trace_id), `exemplar of an unknown trace ${e.labels.trace_id}`);
      assert.equal(e.le, '2.5', 'the exemplar is not on the bucket of its value');
      assert.ok(Number(e.value) > 1, `exemplar value ${e.value}`);
      assert.ok(Number(e.value) <= 2.5, `exemplar value ${e.value}`);
    }
  });

  it('runs every query of the Grafana dashboard', async () => {
    const dashboard = JSON.parse(fs.readFileSync(path.join(SRCDIR, 'conf/grafana/tollgate.json'), 'utf8'));
    const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    assert.ok(queries.length >= 30, `only ${queries.length} queries`);
    for (const expr of queries) {
      // Grafana's variables, as Grafana would fill them in.
      const promql = expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h')
        .replace(/\$(route|backend|model|job)\b/g, '.*');
      const data = await prometheus.query(promql);
      assert.equal(data.resultType, 'vector', expr);
    }
  });
});

/*
 * The Responses API streams its output as "response.*.delta" events and
 * reports usage once, in the response that its last event carries
 * (response.completed), with its cached and reasoning counts in
 * input_tokens_details and output_tokens_details.
 */
const RESPONSES_DELTAS = 3;
const RESPONSES_USAGE = {
  input_tokens: 11, input_tokens_details: { cached_tokens: 4 },
  output_tokens: 7, output_tokens_details: { reasoning_tokens: 2 }, total_tokens: 18,
};

function responsesStream() {
  let seq = 0;
  const event = (type, fields) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...fields })}\n\n`;
  const response = (status, usage = null) => ({ id: 'resp_1', object: 'response', status, model: 'scripted', output: [], usage });
  return [
    event('response.created', { response: response('in_progress') }),
    event('response.output_item.added', { output_index: 0, item: { id: 'msg_1', type: 'message', role: 'assistant', content: [] } }),
    ...Array.from({ length: RESPONSES_DELTAS }, () => event('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'word ' })),
    event('response.output_text.done', { item_id: 'msg_1', output_index: 0, content_index: 0, text: 'word word word ' }),
    event('response.completed', { response: response('completed', RESPONSES_USAGE) }),
  ].join('');
}

describe('metrics of a Responses API stream', () => {
  let upstream;
  let gw;

  before(async () => {
    upstream = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(responsesStream());
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    gw = await startGateway({
      backends: { scripted: { url: `http://127.0.0.1:${upstream.address().port}` } },
      routes: [{ name: 'responses', match: { path: '/v1/responses', model: 'resp' }, backends: ['scripted'] }],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    await stopAll();
    upstream?.close();
  });

  it('counts its tokens and first token', async () => {
    const res = await request({
      port: gw.port, method: 'POST', path: '/v1/responses',
      body: { model: 'resp', input: 'hi', stream: true },
    });
    assert.equal(res.status, 200);
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.notEqual(entry.ttft, null);

    const labels = { route: 'responses', backend: 'scripted', model: 'resp' };
    const s = await settledSamples(gw);
    assert.equal(valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'input' }), 11);
    assert.equal(valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'output' }), 7);
    assert.equal(valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'cached_input' }), 4);
    assert.equal(valueOf(s, 'tollgate_tokens_total', { ...labels, type: 'reasoning' }), 2);
    assert.equal(valueOf(s, 'tollgate_estimated_tokens_total', { ...labels, type: 'output' }), 0);
    assert.equal(valueOf(s, 'tollgate_time_to_first_token_seconds_count', labels), 1);
  });
});
