// Streams and failover. The gateway holds content-free events, so a
// failure before the first content still moves the request to the next
// backend, and the client sees nothing of the failed stream. After content,
// a failure ends the client's stream with an error event and no [DONE],
// and the access log records it as a failure.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
  mockBackend, openStream, request, startGateway, startMock, stopAll, waitFor,
} from './lib/harness.mjs';
import { normalizeVolatile } from './lib/checks.mjs';
import { parseSamples, scrape, valueOf } from './lib/prometheus.mjs';
import {
  NEVER_EJECT, RETRY_FREELY, apiRequests, chat, chunkEvent, eventDatas, gate, messages,
  startMockWith, startScripted, within,
} from './lib/failover.mjs';

/*
 * Start a gateway with backend a as the first tier and b as the second,
 * each behind its own mock with the given default options. Member a
 * renames the model to "from-a", so its events can be recognized.
 */
async function startPair(aOptions, bOptions = '', { withB = true, timeouts = {} } = {}) {
  const a = await startMockWith(aOptions);
  const b = withB ? await startMockWith(bOptions) : null;
  const backends = { a: mockBackend(a, { timeouts, health: NEVER_EJECT }) };
  const tiers = [{ members: [{ name: 'a', model: 'from-a' }] }];
  if (withB) {
    backends.b = mockBackend(b, { health: NEVER_EJECT });
    tiers.push('b');
  }
  const gw = await startGateway({
    backends,
    routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: tiers, retry: RETRY_FREELY }],
  });
  return { a, b, gw };
}

/* The stream that b sends for the request, taken from b directly, so that
 * the client's copy can be compared with it byte for byte. */
async function directStream(mock) {
  const res = await request({ port: mock.port, method: 'POST', path: '/v1/chat/completions', body: { model: 'gpt-4o', messages, stream: true } });
  return res.text;
}

function isError(data) {
  try {
    return typeof JSON.parse(data).error === 'object';
  } catch {
    return false;
  }
}

/* Assert that an SSE body ends with one OpenAI-shaped error event and no
 * [DONE], and return the events' data. */
function assertEndsWithError(text) {
  const datas = eventDatas(text);
  assert.ok(!datas.includes('[DONE]'), `the stream has a [DONE]: ${text}`);
  assert.ok(isError(datas.at(-1)), `the last event is not an error: ${datas.at(-1)}`);
  const { error } = JSON.parse(datas.at(-1));
  assert.equal(typeof error.message, 'string');
  assert.equal(typeof error.type, 'string');
  assert.ok('code' in error, 'the error event has no "code"');
  return datas;
}

describe('stream failover before content', () => {
  afterEach(stopAll);

  for (const [what, options, label, timeouts] of [
    ['an error event after the role chunk', 'stream_error=1', 'stream_error', {}],
    ['an error event as the first event', 'stream_error=0', 'stream_error', {}],
    ['a connection closed after the role chunk', 'close_after=1', 'reset', {}],
    ['an upstream silent after the role chunk', 'stall_after=1', 'timeout', { idle: '300ms' }],
  ]) {
    it(`moves on after ${what}`, async () => {
      const { a, b, gw } = await startPair(options, '', { timeouts });
      const res = await chat(gw, { stream: true });
      assert.equal(res.status, 200, `status (body: ${res.text.slice(0, 300)})`);
      assert.equal(res.attempts, `a:${label},b:200`);

      // Nothing of a's stream reached the client: the body is b's stream.
      assert.ok(!res.text.includes('from-a'), `an event of a reached the client: ${res.text}`);
      assert.equal(normalizeVolatile(res.text), normalizeVolatile(await directStream(b)));

      assert.equal((await apiRequests(a, 'from-a')).length, 1, 'requests a received');
      const entry = await gw.accessFor(res.id);
      assert.equal(entry.backend, 'b');
      assert.equal(entry.status, 200);
      assert.equal(entry.termination, '--');
    });
  }

  it('answers an HTTP error when the failure cannot move the request', async () => {
    // retry.on names resets, so the start is held, but not stream errors:
    // the error event before any content goes out as an HTTP error.
    const a = await startMockWith('stream_error=1');
    const b = await startMock();
    const gw = await startGateway({
      backends: { a: mockBackend(a, { health: NEVER_EJECT }), b: mockBackend(b) },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['a', 'b'],
        retry: { ...RETRY_FREELY, on: ['reset'] } }],
    });
    const res = await chat(gw, { stream: true });
    assert.equal(res.attempts, 'a:stream_error');
    assert.ok(res.status >= 500, `status ${res.status}, body: ${res.text.slice(0, 500)}`);
    assert.match(res.headers['content-type'] ?? '', /^application\/json\b/);
    assert.equal(typeof res.json().error, 'object');
  });

  it('relays an early error event with no backend left', async () => {
    // Nothing was held, since no failure could move the request: the
    // client gets the stream, and its error event, as the upstream sent it.
    const { gw } = await startPair('stream_error=1', '', { withB: false });
    const res = await chat(gw, { stream: true });
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] ?? '', /^text\/event-stream\b/);
    const datas = assertEndsWithError(res.text);
    assert.equal(datas.length, 2, `events: ${datas.join(' | ')}`);
    const entry = await gw.accessFor(res.id);
    assert.match(entry.termination, /^S/, 'termination');
  });
});

/*
 * What reaches the client before the upstream sends content. Upstream a is
 * scripted: it sends the head and what `before` writes, then waits for a
 * signal before its content, so each test sees what the client got while
 * the upstream was still reasoning or idle.
 */
describe('a stream before its content', () => {
  let upstream = null;
  let waiting = null;
  let opening = [];

  afterEach(async () => {
    waiting?.open();
    // A stream whose head came late, after a failed check, is closed too.
    await Promise.allSettled(opening.map((p) => p.then((stream) => stream.abort())));
    opening = [];
    await stopAll();
    upstream?.close();
    upstream = null;
  });

  /* Open a stream through gw, and resolve to it once its head arrives. */
  function openThrough(gw) {
    const p = openStream({ port: gw.port, body: { model: 'gpt-4o', messages, stream: true } });
    opening.push(p);
    return within(p, 'the response head arriving before the upstream sent content');
  }

  async function startHeld(before, { retry = RETRY_FREELY, withB = true } = {}) {
    waiting = gate();
    const signal = waiting;
    upstream = await startScripted(async (req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkEvent({ role: 'assistant', content: '' }));
      before(res);
      await signal.opened;
      res.write(chunkEvent({ content: 'Hello' }));
      res.write(chunkEvent({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
    const backends = { a: { url: upstream.url, health: NEVER_EJECT } };
    const tiers = ['a'];
    if (withB) {
      backends.b = mockBackend(await startMock());
      tiers.push('b');
    }
    return startGateway({
      backends,
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: tiers, retry }],
    });
  }

  /* Read the client's stream after the upstream's content, and check that
   * it ended well. */
  async function finish(stream) {
    waiting.open();
    const datas = (await stream.rest()).map((ev) => ev.data).filter((d) => d !== null);
    assert.equal(datas.at(-1), '[DONE]');
  }

  for (const member of ['reasoning_content', 'reasoning']) {
    it(`relays a delta.${member} before the content, as content`, async () => {
      // Failover is possible (b is there), yet the reasoning is model
      // output: it commits the stream and goes out at once.
      const gw = await startHeld((res) => res.write(chunkEvent({ [member]: 'Let me think' })));
      const stream = await openThrough(gw);
      assert.equal(stream.status, 200);
      const role = await within(stream.nextData(), 'the role chunk arriving');
      assert.equal(JSON.parse(role.data).choices[0].delta.role, 'assistant');
      const reasoning = await within(stream.nextData(), `the ${member} chunk arriving`);
      assert.equal(JSON.parse(reasoning.data).choices[0].delta[member], 'Let me think');
      await finish(stream);
    });
  }

  for (const [what, options] of [
    ['the route has no other backend', { withB: false }],
    ['retry.max_attempts is 1', { retry: { ...RETRY_FREELY, max_attempts: 1 } }],
    ['retry.hold_stream is false', { retry: { ...RETRY_FREELY, hold_stream: false } }],
    ['retry.on names no stream failure', { retry: { ...RETRY_FREELY, on: ['connect', 429] } }],
    ['the retry budget is spent', { retry: { budget: 0, min_retries: 0 } }],
  ]) {
    it(`sends the head, events and comments at once when ${what}`, async () => {
      const gw = await startHeld((res) => res.write(': keepalive\n\n'), options);
      const stream = await openThrough(gw);
      assert.equal(stream.status, 200);
      const role = await within(stream.nextData(), 'the role chunk arriving');
      assert.equal(JSON.parse(role.data).choices[0].delta.role, 'assistant');
      await within(waitFor(() => stream.body().toString().includes(': keepalive\n'),
        { message: 'the keepalive comment' }), 'the keepalive comment arriving');
      await finish(stream);
    });
  }
});

describe('stream failure after content', () => {
  afterEach(stopAll);

  it('ends a stream cut after content with an error', async () => {
    // Role chunk and two content chunks, then the connection closes.
    const { gw } = await startPair('close_after=3', '', { withB: false });
    const res = await chat(gw, { stream: true });
    assert.equal(res.status, 200);
    const datas = assertEndsWithError(res.text);
    assert.equal(datas.length, 4, `events: ${datas.join(' | ')}`);

    const entry = await gw.accessFor(res.id);
    assert.equal(entry.status, 200);
    assert.match(entry.termination, /^S/, 'termination');
  });

  it('ends a cut stream in the last tier with an error', async () => {
    const { a, gw } = await startPair('stream_error=1', 'close_after=3');
    const res = await chat(gw, { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.attempts, 'a:stream_error,b:200');
    assertEndsWithError(res.text);
    assert.ok(!res.text.includes('from-a'), `an event of a reached the client: ${res.text}`);
    assert.equal((await apiRequests(a, 'from-a')).length, 1, 'requests a received');

    const entry = await gw.accessFor(res.id);
    assert.equal(entry.backend, 'b');
    assert.equal(entry.status, 200);
    assert.match(entry.termination, /^S/, 'termination');
  });

  it('passes an error event after content on, without failing over', async () => {
    // Role chunk, two content chunks, then the upstream's error event.
    const { b, gw } = await startPair('stream_error=3');
    const res = await chat(gw, { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.attempts, null, 'the request moved after content had reached the client');
    const datas = assertEndsWithError(res.text);
    assert.ok(datas.some((d) => d.includes('stream_error requested')), `the upstream's error event is missing: ${datas.join(' | ')}`);
    assert.equal((await apiRequests(b)).length, 0, 'requests that reached b');

    const entry = await gw.accessFor(res.id);
    assert.equal(entry.backend, 'a');
    assert.equal(entry.status, 200);
    assert.match(entry.termination, /^S/, 'termination');
  });
});

/*
 * Start a gateway whose route has the one backend a, ejected after
 * `failures` failures in a row, behind a mock with the given options.
 */
async function startEjecting(options, failures, timeouts = {}) {
  const a = await startMockWith(options);
  const gw = await startGateway({
    backends: { a: mockBackend(a, { timeouts, health: { consecutive_failures: failures } }) },
    routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['a'], retry: RETRY_FREELY }],
  });
  return { a, gw };
}

/* The value of a metric for backend a (0 when the series is not there). */
async function metricOfA(gw, metric, labels = {}) {
  return valueOf(parseSamples((await scrape(gw)).text), metric, { backend: 'a', ...labels });
}

describe('backend health after a stream fails', () => {
  afterEach(stopAll);

  for (const [what, options, outcome, timeouts] of [
    ['a connection closed after content', 'close_after=3', 'reset', {}],
    ['an error event after content', 'stream_error=3', 'stream_error', {}],
    ['an upstream silent after content', 'stall_after=3', 'timeout', { idle: '300ms' }],
  ]) {
    it(`counts ${what} as a failure and ejects the backend`, async () => {
      const { gw } = await startEjecting(options, 3, timeouts);
      for (let i = 0; i < 3; i++) {
        const res = await chat(gw, { stream: true });
        assert.equal(res.status, 200);
        assertEndsWithError(res.text);
        assert.equal(res.attempts, null, 'the request moved after content had reached the client');
      }

      assert.equal(await metricOfA(gw, 'tollgate_upstream_attempts_total', { outcome }), 3,
        `attempts of a with outcome ${outcome}`);
      assert.equal(await metricOfA(gw, 'tollgate_upstream_attempts_total', { outcome: 'success' }), 0,
        'attempts of a with outcome success');
      await gw.waitForLog(/backend a ejected for [0-9.]+ s after failures/);
      assert.equal(await metricOfA(gw, 'tollgate_backend_up'), 0, 'tollgate_backend_up of a');
    });
  }

  it('leaves health alone when the client leaves mid-stream', async () => {
    const { a, gw } = await startEjecting('', 1);
    const stream = await openStream({
      port: gw.port,
      body: { model: 'gpt-4o', messages, stream: true },
      headers: { 'x-mock': 'events=40;event_delay=1s', 'x-request-id': 'leaves-mid-stream' },
    });
    assert.equal(stream.status, 200);
    assert.notEqual(await stream.nextData(), null, 'the stream ended before its first event');
    stream.abort();
    await waitFor(async () => (await a.stats()).responses_aborted >= 1,
      { timeoutMs: 10000, message: 'the mock to see its stream aborted by the gateway' });
    await gw.accessFor('leaves-mid-stream');

    assert.equal(await metricOfA(gw, 'tollgate_upstream_attempts_total', { outcome: 'cancelled' }), 1,
      'attempts of a with outcome cancelled');
    assert.equal(await metricOfA(gw, 'tollgate_upstream_attempts_total', { outcome: 'success' }), 0,
      'attempts of a with outcome success');
    assert.equal(await metricOfA(gw, 'tollgate_backend_up'), 1, 'tollgate_backend_up of a');
    assert.ok(!gw.stderr.some((l) => /backend a ejected/.test(l)), 'backend a was ejected');

    // The next stream, which ends well, still goes to a.
    const res = await chat(gw, { stream: true });
    assert.equal(res.status, 200);
    assert.equal(await metricOfA(gw, 'tollgate_upstream_attempts_total', { outcome: 'success' }), 1);
  });
});
