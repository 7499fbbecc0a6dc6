// Tracing: the span tree of each request (kinds, names, parent links, GenAI
// attributes equal to what the mock returned, timing order), W3C trace
// context propagation to the upstream, one attempt span per backend on
// failover, export resilience against an OTLP receiver that is down,
// slow, or responds 429 with Retry-After, and export over https.
//
// Every export, binary protobuf (the default) or JSON, is checked by
// lib/otlp-receiver.mjs against the official protobuf definitions. No test asserts how fast
// anything happened: that exports do not delay requests is shown by
// requests completing while the receiver still holds an export unanswered.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import {
  freePort, makeCertificates, makeTempDir, mockBackend, openStream, openaiRoutes, request,
  runTollgate, startGateway, startMock, stopAll, waitFor, writeTempFile,
} from './lib/harness.mjs';
import {
  otlpTraceProblem, quickTracing, requestSpans, spansOf, startOtlpReceiver,
} from './lib/otlp-receiver.mjs';
import { parseSamples, scrape, valueOf } from './lib/prometheus.mjs';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACESTATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';

const messages = [{ role: 'user', content: 'Tell me about the weather in Paris today.' }];

/* A failing backend that stays in rotation, and a retry budget that never
 * runs out, so that each request fails over the same way. */
const NEVER_EJECT = { consecutive_failures: 0 };
const RETRY_FREELY = { budget: 1, min_retries: 1000000 };

function config(mock, tracingSection) {
  return {
    backends: { mock: mockBackend(mock) },
    routes: openaiRoutes('mock'),
    tracing: tracingSection,
  };
}

async function postChat(gw, body, headers = {}) {
  return request({ port: gw.port, method: 'POST', path: '/v1/chat/completions', headers, body });
}

function byKind(spans, kind) {
  return spans.filter((s) => s.kind === kind).sort((a, b) => (a.start < b.start ? -1 : 1));
}

/* Parse a traceparent value into its four fields. */
function parseTraceparent(value) {
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value || '');
  assert.ok(m, `not a valid traceparent: ${value}`);
  return { version: m[1], traceId: m[2], parentId: m[3], flags: m[4] };
}

function assertInside(child, parent) {
  assert.ok(child.start >= parent.start, `${child.name} starts before its parent ${parent.name}`);
  assert.ok(child.end <= parent.end, `${child.name} ends after its parent ${parent.name}`);
  assert.ok(child.start <= child.end, `${child.name} ends before it starts`);
}

async function adminGet(gw, path) {
  return request({ port: gw.adminPort, path });
}

async function exporterStats(gw) {
  const res = await adminGet(gw, '/api/traces');
  assert.equal(res.status, 200);
  return res.json().exporter;
}

describe('span tree', () => {
  let mock;
  let receiver;
  let gw;

  before(async () => {
    mock = await startMock();
    receiver = await startOtlpReceiver();
    gw = await startGateway(config(mock, quickTracing(receiver)));
  });

  afterEach(() => {
    gw?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  it('records a server span and a chat attempt with the mock\'s answer', async () => {
    const body = { model: 'gpt-4o', messages, max_tokens: 50, temperature: 0.7, top_p: 0.9,
      stop: ['END'], seed: 7 };
    const res = await postChat(gw, body);
    assert.equal(res.status, 200);
    const answer = res.json();
    const { traceId, spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    const [server] = byKind(spans, SERVER);
    const [client] = byKind(spans, CLIENT);

    assert.equal(server.name, 'POST /v1/chat/completions');
    assert.equal(server.parentSpanId, '', 'a new trace has a root server span');
    assert.equal(server.traceId, traceId);
    assert.equal(server.attributes['tollgate.request_id'], res.headers['x-request-id']);
    assert.equal(server.attributes['http.request.method'], 'POST');
    assert.equal(server.attributes['http.response.status_code'], 200n);
    assert.equal(server.status.code, 0);
    assert.equal(server.resource['service.name'], 'tollgate');

    assert.equal(client.name, 'chat gpt-4o');
    assert.equal(client.parentSpanId, server.spanId);
    const a = client.attributes;
    assert.equal(a['gen_ai.operation.name'], 'chat');
    assert.equal(a['gen_ai.provider.name'], 'openai');
    assert.equal(a['gen_ai.request.model'], 'gpt-4o');
    assert.equal(a['gen_ai.request.stream'], false);
    assert.equal(a['gen_ai.request.max_tokens'], 50n);
    assert.equal(a['gen_ai.request.temperature'], 0.7);
    assert.equal(a['gen_ai.request.top_p'], 0.9);
    assert.deepEqual(a['gen_ai.request.stop_sequences'], ['END']);
    assert.equal(a['gen_ai.request.seed'], 7n);
    assert.equal(a['gen_ai.response.id'], answer.id);
    assert.equal(a['gen_ai.response.model'], answer.model);
    assert.deepEqual(a['gen_ai.response.finish_reasons'], answer.choices.map((c) => c.finish_reason));
    assert.equal(a['gen_ai.usage.input_tokens'], BigInt(answer.usage.prompt_tokens));
    assert.equal(a['gen_ai.usage.output_tokens'], BigInt(answer.usage.completion_tokens));
    assert.equal(a['server.address'], '127.0.0.1');
    assert.equal(a['server.port'], BigInt(mock.port));
    assert.equal(a['http.response.status_code'], 200n);
    assert.equal(a['gen_ai.input.messages'], undefined, 'content is captured only on request');
    assert.equal(client.status.code, 0);
    assertInside(client, server);
  });

  it('records a stream, ending the server span after the last event', async () => {
    // Three content events 300 ms apart: the mock sends the last one at
    // least 600 ms after it receives the request, which comes after the
    // server span starts. The first token's time is when the gateway read
    // that event, and a busy machine delays that read, so it is no bound.
    const stream = await openStream({
      port: gw.port,
      headers: { 'x-mock': 'events=3;event_delay=300ms' },
      body: { model: 'gpt-4o', messages, stream: true, stream_options: { include_usage: true } },
    });
    assert.equal(stream.status, 200);
    const chunks = (await stream.rest()).map((e) => e.data).filter((d) => d && d !== '[DONE]')
      .map((d) => JSON.parse(d));
    const usage = chunks.find((c) => c.usage)?.usage;
    assert.ok(usage, 'the mock sent no usage chunk');
    const finish = chunks.flatMap((c) => c.choices).map((c) => c.finish_reason).filter(Boolean);

    const { spans } = await requestSpans(gw, receiver, stream.headers['x-request-id'], 2);
    const [server] = byKind(spans, SERVER);
    const [client] = byKind(spans, CLIENT);
    const a = client.attributes;

    assert.equal(a['gen_ai.request.stream'], true);
    assert.equal(a['gen_ai.response.id'], chunks[0].id);
    assert.equal(a['gen_ai.response.model'], chunks[0].model);
    assert.deepEqual(a['gen_ai.response.finish_reasons'], finish);
    assert.equal(a['gen_ai.usage.input_tokens'], BigInt(usage.prompt_tokens));
    assert.equal(a['gen_ai.usage.output_tokens'], BigInt(usage.completion_tokens));
    assert.equal(typeof a['gen_ai.response.time_to_first_chunk'], 'number');
    assert.ok(a['gen_ai.response.time_to_first_chunk'] >= 0);

    const firstToken = client.events.filter((e) => e.name === 'tollgate.first_token');
    assert.equal(firstToken.length, 1, 'one first-token event');
    assert.ok(firstToken[0].time >= client.start, 'the first token came before the attempt');
    assert.ok(firstToken[0].time <= client.end, 'the first token came after the attempt');
    assertInside(client, server);
    assert.ok(server.end - server.start >= 600n * 1000000n,
      'the server span ended before the last event was sent');
  });

  // A client that leaves mid-stream ends the request while the attempt's
  // span is still open, and both spans end at the request's end.
  it('nests the attempt of an abandoned stream', async () => {
    const id = 'trace-client-leaves-mid-stream';
    const stream = await openStream({
      port: gw.port,
      headers: { 'x-mock': 'events=40;event_delay=1s', 'x-request-id': id },
      body: { model: 'gpt-4o', messages, stream: true },
    });
    assert.equal(stream.status, 200);
    assert.notEqual(await stream.nextData(), null, 'the stream ended before its first event');
    stream.abort();

    const { spans } = await requestSpans(gw, receiver, id, 2);
    const [server] = byKind(spans, SERVER);
    const [client] = byKind(spans, CLIENT);
    assertInside(client, server);
  });

  // The dispatch's scan reads the parameters of most bodies, jansson's
  // tree those of a body the scan leaves to it (here, for an escaped
  // surrogate pair): both must record the same attributes.
  it('records the same request attributes from the scan and the tree', async () => {
    const stops = Array.from({ length: 18 }, (_, i) => `"s${i}"`).join(',');
    const params = '"max_completion_tokens":7,"max_tokens":50,"temperature":1,"top_p":0.25e0,'
      + '"seed":-3,"frequency_penalty":-0.5,"presence_penalty":2E-1,"n":1,'
      + '"response_format":{"type":"json_object"},'
      + `"stop":["\\u0045ND",12,null,["nested"],"S\\/T",${stops}]`;
    const requestAttributes = async (content) => {
      const body = `{"model":"gpt-4o","messages":[{"role":"user","content":"${content}"}],${params}}`;
      const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 200, res.text);
      const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
      return Object.fromEntries(Object.entries(byKind(spans, CLIENT)[0].attributes)
        .filter(([key]) => key.startsWith('gen_ai.request.') || key === 'gen_ai.output.type'));
    };
    const scanned = await requestAttributes('hello');
    const parsed = await requestAttributes('hello \\ud83d\\ude00');

    assert.deepEqual(scanned, parsed);
    assert.equal(scanned['gen_ai.request.max_tokens'], 7n);
    assert.equal(scanned['gen_ai.request.temperature'], 1);
    assert.equal(scanned['gen_ai.request.top_p'], 0.25);
    assert.equal(scanned['gen_ai.request.seed'], -3n);
    assert.equal(scanned['gen_ai.request.frequency_penalty'], -0.5);
    assert.equal(scanned['gen_ai.request.presence_penalty'], 0.2);
    assert.equal(scanned['gen_ai.request.choice.count'], undefined, 'n is recorded only when not 1');
    assert.equal(scanned['gen_ai.output.type'], 'json');
    assert.deepEqual(scanned['gen_ai.request.stop_sequences'],
      ['END', 'S/T', ...Array.from({ length: 14 }, (_, i) => `s${i}`)]);
  });

  // "modalities" names the output modality, which gen_ai.output.type
  // records: audio as speech, before the format of "response_format".
  it('records modalities as output type', async () => {
    const outputType = async (members, content) => {
      const body = `{"model":"gpt-4o","messages":[{"role":"user","content":"${content}"}],${members}}`;
      const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 200, res.text);
      const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
      return byKind(spans, CLIENT)[0].attributes['gen_ai.output.type'];
    };
    const cases = [
      ['"modalities":["text","audio"],"audio":{"voice":"alloy","format":"wav"}', 'speech'],
      ['"modalities":["text"]', 'text'],
      ['"modalities":["text"],"response_format":{"type":"json_object"}', 'json'],
      ['"modalities":["audio"],"response_format":{"type":"text"}', 'speech'],
    ];
    // The surrogate pair leaves the body to jansson's tree.
    for (const content of ['hello', 'hello \\ud83d\\ude00']) {
      for (const [members, type] of cases)
        assert.equal(await outputType(members, content), type, `${members} (${content})`);
    }
  });

  // An integer beyond 64 bits makes jansson read every integer of the
  // body as a real; the parameters that fit are still recorded.
  it('keeps integer parameters beside a huge seed', async () => {
    const body = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],'
      + '"seed":9223372036854775808,"max_tokens":50,"n":2,"temperature":1,"top_p":0.5}';
    const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' }, body });
    assert.equal(res.status, 200, res.text);
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    const a = byKind(spans, CLIENT)[0].attributes;

    assert.equal(a['gen_ai.request.max_tokens'], 50n);
    assert.equal(a['gen_ai.request.choice.count'], 2n);
    assert.equal(a['gen_ai.request.seed'], undefined, 'a seed beyond 64 bits has no int value');
    assert.equal(a['gen_ai.request.temperature'], 1);
    assert.equal(a['gen_ai.request.top_p'], 0.5);
  });

  it('records the parameters of embeddings', async () => {
    const res = await request({ port: gw.port, method: 'POST', path: '/v1/embeddings',
      body: { model: 'text-embedding-3-small', input: 'hi', dimensions: 256, encoding_format: 'float' } });
    assert.equal(res.status, 200, res.text);
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    const client = byKind(spans, CLIENT)[0];
    assert.equal(client.name, 'embeddings text-embedding-3-small');
    assert.equal(client.attributes['gen_ai.embeddings.dimension.count'], 256n);
    assert.deepEqual(client.attributes['gen_ai.request.encoding_formats'], ['float']);
  });

  it('leaves the server span unset for a client error', async () => {
    const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' }, body: '{"model": ' });
    assert.equal(res.status, 400);
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 1);
    assert.equal(spans[0].kind, SERVER);
    assert.equal(spans[0].attributes['http.response.status_code'], 400n);
    assert.equal(spans[0].status.code, 0);
  });

  it('names spans within their bounds', async () => {
    const res = await postChat(gw, { model: 'm'.repeat(300), messages });
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    assert.equal(byKind(spans, CLIENT)[0].name, `chat ${'m'.repeat(200)}`,
      'the model in the attempt\'s name is cut at 200 bytes');

    const other = await request({ port: gw.port, method: 'GET', path: '/v9/anything?x=1' });
    const { spans: [server] } = await requestSpans(gw, receiver, other.headers['x-request-id'], 1);
    assert.equal(server.name, 'GET', 'a path the gateway does not serve stays out of the name');
  });

  it('marks an upstream failure as an error on both spans', async () => {
    const res = await postChat(gw, { model: 'gpt-4o', messages }, { 'x-mock': 'status=501' });
    assert.equal(res.status, 501);
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    const [server] = byKind(spans, SERVER);
    const [client] = byKind(spans, CLIENT);
    assert.equal(server.status.code, ERROR);
    assert.equal(server.attributes['error.type'], '501');
    assert.equal(client.status.code, ERROR);
    assert.equal(client.attributes['error.type'], '501');
    assert.equal(client.attributes['http.response.status_code'], 501n);
  });

  it('lists recent traces on the admin listener', async () => {
    const res = await postChat(gw, { model: 'gpt-4o', messages });
    const { traceId } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);

    const list = await waitFor(async () => {
      const r = (await adminGet(gw, '/api/traces')).json();
      return r.traces.some((t) => t.trace_id === traceId) ? r : null;
    }, { message: `trace ${traceId} in GET /api/traces` });
    const summary = list.traces.find((t) => t.trace_id === traceId);
    assert.equal(summary.spans, 2);
    assert.ok(summary.duration > 0, `duration ${summary.duration}`);
    assert.ok(summary.duration < 60, `duration ${summary.duration}`);
    assert.equal(summary.request_id, res.headers['x-request-id']);
    assert.equal(list.traces[0].trace_id, traceId, 'the newest trace comes first');

    // Durations have the access log's 6 significant digits, not the 17
    // that show a binary fraction (0.00058298599999999996).
    const text = (await adminGet(gw, '/api/traces')).text;
    const durations = [...text.matchAll(/"duration":([^,}]+)/g)].map((m) => m[1]);
    assert.ok(durations.length > 0, `no duration in ${text.slice(0, 300)}`);
    for (const duration of durations) {
      const digits = duration.replace(/e.*$/, '').replace(/[-.]/g, '').replace(/^0+/, '');
      assert.ok(digits.length <= 6, `duration ${duration} has more than 6 significant digits`);
    }

    const one = await adminGet(gw, `/api/traces/${traceId}`);
    assert.equal(one.status, 200);
    assert.equal(otlpTraceProblem(one.json()), null);
    assert.deepEqual(spansOf(one.json()).map((s) => s.spanId).sort(),
      receiver.spansOfTrace(traceId).map((s) => s.spanId).sort());
    assert.equal((await adminGet(gw, `/api/traces/${'0'.repeat(31)}1`)).status, 404);
  });
});

describe('trace context propagation', () => {
  let mock;
  let receiver;
  let gw;

  before(async () => {
    mock = await startMock();
    receiver = await startOtlpReceiver();
    gw = await startGateway(config(mock, quickTracing(receiver)));
  });

  afterEach(() => {
    gw?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  it('continues a valid traceparent and names the attempt upstream', async () => {
    const res = await postChat(gw, { model: 'gpt-4o', messages }, {
      traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, tracestate: TRACESTATE,
    });
    assert.equal(res.status, 200);
    const { traceId, spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    const [server] = byKind(spans, SERVER);
    const [client] = byKind(spans, CLIENT);
    assert.equal(traceId, TRACE_ID);
    assert.equal(server.parentSpanId, PARENT_ID);
    assert.equal(server.traceState, TRACESTATE);

    const upstream = await mock.lastRequest();
    const sent = parseTraceparent(upstream.headers.traceparent);
    assert.equal(sent.traceId, TRACE_ID);
    assert.equal(sent.parentId, client.spanId, 'the upstream parent is the attempt span');
    assert.equal(sent.flags, '01');
    assert.equal(upstream.headers.tracestate, TRACESTATE, 'tracestate passes through unchanged');
  });

  for (const [what, value] of [
    ['uppercase hex', `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01`],
    ['an all-zero parent id', `00-${TRACE_ID}-0000000000000000-01`],
    ['version ff', `ff-${TRACE_ID}-${PARENT_ID}-01`],
    ['trailing data in version 00', `00-${TRACE_ID}-${PARENT_ID}-01-extra`],
  ]) {
    it(`replaces a traceparent with ${what}`, async () => {
      const res = await postChat(gw, { model: 'gpt-4o', messages }, {
        traceparent: value, tracestate: TRACESTATE,
      });
      assert.equal(res.status, 200);
      const { traceId, spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
      const [server] = byKind(spans, SERVER);
      const [client] = byKind(spans, CLIENT);
      assert.notEqual(traceId, TRACE_ID);
      assert.equal(server.parentSpanId, '');

      const upstream = await mock.lastRequest();
      const sent = parseTraceparent(upstream.headers.traceparent);
      assert.equal(sent.traceId, traceId);
      assert.equal(sent.parentId, client.spanId);
      assert.equal(upstream.headers.tracestate, undefined, 'tracestate of an invalid parent is dropped');
    });
  }

  it('starts a new trace for two traceparent headers', async () => {
    const res = await postChat(gw, { model: 'gpt-4o', messages }, {
      traceparent: [`00-${TRACE_ID}-${PARENT_ID}-01`, `00-${TRACE_ID}-b7ad6b7169203331-01`],
    });
    const { traceId } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    assert.notEqual(traceId, TRACE_ID);
  });

  it('follows an unsampled parent: propagates, exports nothing', async () => {
    const unsampledTrace = 'a'.repeat(31) + 'b';
    const res = await postChat(gw, { model: 'gpt-4o', messages }, {
      traceparent: `00-${unsampledTrace}-${PARENT_ID}-00`,
    });
    assert.equal(res.status, 200);
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.trace_id, unsampledTrace);
    const sent = parseTraceparent((await mock.lastRequest()).headers.traceparent);
    assert.equal(sent.traceId, unsampledTrace);
    assert.equal(sent.flags, '00');
    assert.notEqual(sent.parentId, PARENT_ID);

    // Exports keep their order: once a later trace arrived, an earlier one
    // would have too.
    const later = await postChat(gw, { model: 'gpt-4o', messages });
    await requestSpans(gw, receiver, later.headers['x-request-id'], 2);
    assert.equal(receiver.spansOfTrace(unsampledTrace).length, 0);
  });
});

describe('sampling and content capture', () => {
  let mock;
  let receiver;
  let unsampled;
  let capturing;

  before(async () => {
    mock = await startMock();
    receiver = await startOtlpReceiver();
    unsampled = await startGateway(config(mock, quickTracing(receiver, { sample_ratio: 0 })));
    capturing = await startGateway(config(mock, quickTracing(receiver, {
      capture_content: true, max_content_length: 10,
    })));
  });

  afterEach(() => {
    unsampled?.checkErrors();
    capturing?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  it('samples no new trace at ratio 0 but still propagates', async () => {
    const res = await postChat(unsampled, { model: 'gpt-4o', messages });
    assert.equal(res.status, 200);
    const entry = await unsampled.accessFor(res.headers['x-request-id']);
    const sent = parseTraceparent((await mock.lastRequest()).headers.traceparent);
    assert.equal(sent.traceId, entry.trace_id);
    assert.equal(sent.flags, '00');

    const later = await postChat(capturing, { model: 'gpt-4o', messages });
    await requestSpans(capturing, receiver, later.headers['x-request-id'], 2);
    assert.equal(receiver.spansOfTrace(entry.trace_id).length, 0);
  });

  it('captures content truncated when configured', async () => {
    const res = await postChat(capturing, { model: 'gpt-4o', messages });
    const answer = res.json();
    const { spans } = await requestSpans(capturing, receiver, res.headers['x-request-id'], 2);
    const [client] = byKind(spans, CLIENT);
    const input = JSON.parse(client.attributes['gen_ai.input.messages']);
    assert.deepEqual(input, [{ role: 'user', parts: [{ type: 'text', content: messages[0].content.slice(0, 10) }] }]);
    const output = JSON.parse(client.attributes['gen_ai.output.messages']);
    assert.equal(output[0].role, 'assistant');
    assert.equal(output[0].parts[0].content, answer.choices[0].message.content.slice(0, 10));
    assert.equal(output[0].finish_reason, answer.choices[0].finish_reason);
  });
});

describe('content capture after masking', () => {
  let mock;
  let receiver;
  let gw;

  before(async () => {
    mock = await startMock();
    receiver = await startOtlpReceiver();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      filters: {
        tickets: { type: 'regex', action: 'mask', apply_to: ['request', 'response'],
          rules: [{ name: 'ticket', pattern: 'TCK-[0-9]{6}' }] },
      },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['mock'],
        filters: ['tickets'] }],
      tracing: quickTracing(receiver, { capture_content: true, max_content_length: 200 }),
    });
  });

  afterEach(() => {
    gw?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  it('captures prompts and answers as masked', async () => {
    const prompt = [{ role: 'user', content: 'look up ticket TCK-123456 please' }];
    const res = await postChat(gw, { model: 'gpt-4o', messages: prompt },
      { 'x-mock': 'content=your ticket TCK-654321 is closed' });
    assert.equal(res.status, 200);
    assert.equal(res.json().choices[0].message.content, 'your ticket [REDACTED:ticket] is closed');

    // Server, attempt and request-filter spans.
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 3);
    const [client] = byKind(spans, CLIENT);
    const input = client.attributes['gen_ai.input.messages'];
    const output = client.attributes['gen_ai.output.messages'];
    assert.ok(input.includes('[REDACTED:ticket]'), `input not masked: ${input}`);
    assert.ok(!input.includes('TCK-123456'), 'the masked prompt text reached the span');
    assert.ok(output.includes('[REDACTED:ticket]'), `output not masked: ${output}`);
    assert.ok(!output.includes('TCK-654321'), 'the masked answer text reached the span');
  });
});

describe('filter and cache spans', () => {
  let mock;
  let receiver;
  let gw;

  before(async () => {
    mock = await startMock();
    receiver = await startOtlpReceiver();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      filters: {
        deny: { type: 'regex', action: 'block',
          rules: [{ name: 'injection', pattern: 'ignore previous instructions', caseless: true }] },
        audit: { type: 'regex', action: 'flag', rules: [{ name: 'codeword', pattern: 'PINEAPPLE' }] },
        tickets: { type: 'regex', action: 'mask', rules: [{ name: 'ticket', pattern: 'TCK-[0-9]{6}' }] },
      },
      cache: { store: 'memory' },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['mock'],
        filters: ['deny', 'audit', 'tickets'], cache: true }],
      tracing: quickTracing(receiver),
    });
  });

  afterEach(() => {
    gw?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  function filterSpan(spans, name) {
    const span = spans.find((s) => s.name === `filter ${name}`);
    assert.ok(span, `no span for filter ${name}`);
    return span;
  }

  it('records each filter and the cache lookup', async () => {
    const content = `PINEAPPLE about TCK-123456, request ${Date.now()}`;
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content }] };
    const miss = await postChat(gw, body);
    assert.equal(miss.status, 200);
    assert.equal(miss.headers['x-tollgate-cache'], 'miss');
    const { spans } = await requestSpans(gw, receiver, miss.headers['x-request-id'], 6);
    const [server] = byKind(spans, SERVER);
    const [client] = byKind(spans, CLIENT);
    const cache = spans.find((s) => s.name === 'cache lookup');

    const decisions = { deny: 'pass', audit: 'flag', tickets: 'mask' };
    for (const [name, decision] of Object.entries(decisions)) {
      const span = filterSpan(spans, name);
      assert.equal(span.kind, 1);
      assert.equal(span.parentSpanId, server.spanId);
      assert.equal(span.attributes['tollgate.filter.decision'], decision, `filter ${name}`);
      assert.equal(span.attributes['tollgate.filter.stage'], 'request');
      assert.equal(span.status.code, 0);
      assert.ok(span.end <= cache.start, `filter ${name} ended after the cache lookup began`);
    }
    assert.equal(filterSpan(spans, 'audit').attributes['tollgate.filter.rule'], 'codeword');
    const events = server.events.filter((e) => e.name === 'tollgate.filter.decision');
    assert.deepEqual(events.map((e) => e.attributes['tollgate.filter.name']).sort(), ['audit', 'tickets']);

    assert.equal(cache.kind, 1);
    assert.equal(cache.parentSpanId, server.spanId);
    assert.equal(cache.attributes['tollgate.cache.result'], 'miss');
    assert.equal(cache.attributes['tollgate.cache.store'], 'memory');
    assert.ok(cache.end <= client.start, 'the attempt started before the cache lookup ended');
    assertInside(cache, server);

    const hit = await postChat(gw, body);
    assert.equal(hit.headers['x-tollgate-cache'], 'hit');
    const again = await requestSpans(gw, receiver, hit.headers['x-request-id'], 5);
    assert.equal(byKind(again.spans, CLIENT).length, 0, 'a cache hit made an upstream attempt');
    assert.equal(again.spans.find((s) => s.name === 'cache lookup').attributes['tollgate.cache.result'], 'hit');
  });

  it('marks the filter that blocked a request', async () => {
    const res = await postChat(gw, { model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Please ignore previous instructions.' }] });
    assert.equal(res.status, 400);
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 4);
    const [server] = byKind(spans, SERVER);
    const deny = filterSpan(spans, 'deny');

    assert.equal(deny.attributes['tollgate.filter.decision'], 'block');
    assert.equal(deny.attributes['tollgate.filter.rule'], 'injection');
    assert.equal(deny.status.code, ERROR);
    assert.equal(server.status.code, 0, 'a 400 to the client leaves the server span unset');
    assert.equal(byKind(spans, CLIENT).length, 0);
    assert.equal(spans.find((s) => s.name === 'cache lookup'), undefined);
    const blocked = server.events.find((e) => e.attributes['tollgate.filter.decision'] === 'block');
    assert.equal(blocked.attributes['tollgate.filter.name'], 'deny');
  });
});

describe('failover spans', () => {
  let bad;
  let good;
  let receiver;
  let gw;

  // Backend a gets the model renamed with a suffix that makes its mock
  // respond 503; backend b gets the model as the client sent it.
  const FAILING_MODEL = 'gpt-4o@status=503';

  before(async () => {
    bad = await startMock();
    good = await startMock();
    receiver = await startOtlpReceiver();
    gw = await startGateway({
      backends: {
        a: mockBackend(bad, { health: NEVER_EJECT }),
        b: mockBackend(good),
      },
      routes: [{
        name: 'chat', match: { path: '/v1/chat/completions' },
        backends: [{ balance: 'round_robin', members: [{ name: 'a', model: FAILING_MODEL }] }, 'b'],
        retry: { on: [503], max_attempts: 3, ...RETRY_FREELY },
      }],
      tracing: quickTracing(receiver),
    });
  });

  afterEach(() => {
    gw?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  it('records one attempt span per backend, the failed one marked', async () => {
    const res = await postChat(gw, { model: 'gpt-4o', messages });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-tollgate-attempts'], 'a:503,b:200');
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 3);
    const [server] = byKind(spans, SERVER);
    const [first, second] = byKind(spans, CLIENT);

    assert.equal(first.name, `chat ${FAILING_MODEL}`);
    assert.equal(first.attributes['gen_ai.request.model'], FAILING_MODEL);
    assert.equal(first.attributes['tollgate.backend'], 'a');
    assert.equal(first.attributes['tollgate.attempt'], 1n);
    assert.equal(first.attributes['server.port'], BigInt(bad.port));
    assert.equal(first.attributes['http.response.status_code'], 503n);
    assert.equal(first.attributes['error.type'], '503');
    assert.equal(first.status.code, ERROR);

    assert.equal(second.name, 'chat gpt-4o');
    assert.equal(second.attributes['tollgate.backend'], 'b');
    assert.equal(second.attributes['tollgate.attempt'], 2n);
    assert.equal(second.attributes['server.port'], BigInt(good.port));
    assert.equal(second.attributes['http.response.status_code'], 200n);
    assert.equal(second.attributes['gen_ai.response.id'], res.json().id);
    assert.equal(second.attributes['error.type'], undefined);
    assert.equal(second.status.code, 0);

    for (const attempt of [first, second]) {
      assert.equal(attempt.parentSpanId, server.spanId);
      assertInside(attempt, server);
    }
    assert.ok(first.end <= second.start, 'the second attempt started before the first ended');
    assert.equal(server.status.code, 0, 'the request succeeded');

    const failovers = server.events.filter((e) => e.name === 'tollgate.failover');
    assert.equal(failovers.length, 1);
    assert.equal(failovers[0].attributes['tollgate.failover.from'], 'a');
    assert.equal(failovers[0].attributes['tollgate.failover.reason'], '503');
    assert.equal(failovers[0].attributes['tollgate.backend'], 'b');
    assert.equal(failovers[0].time, second.start);

    // Each backend saw its own attempt as the parent.
    assert.equal(parseTraceparent((await bad.lastRequest()).headers.traceparent).parentId, first.spanId);
    assert.equal(parseTraceparent((await good.lastRequest()).headers.traceparent).parentId, second.spanId);
  });
});

// error.type names each failure of the gateway's own by its reason
// (tollgate.json(5), TRACING), and an error status by its code.
describe('error types', () => {
  let mock;
  let receiver;
  let gw;

  before(async () => {
    mock = await startMock();
    receiver = await startOtlpReceiver();
    const closed = await freePort();
    const backends = {
      refused: { url: `http://127.0.0.1:${closed}` },
      tls: { url: `https://127.0.0.1:${mock.port}` },
      slow: mockBackend(mock, { timeouts: { first_byte: '100ms' } }),
      mock: mockBackend(mock),
    };
    gw = await startGateway({
      backends,
      routes: Object.keys(backends).map((name) => ({
        name, match: { path: '/v1/chat/completions', model: name }, backends: [name],
      })),
      limits: { max_response_body: '4KiB' },
      tracing: quickTracing(receiver),
    }, { expectErrors: [/./] });
  });

  after(async () => {
    await stopAll();
    await receiver?.close();
  });

  const cases = [
    { what: 'a refused connection', model: 'refused', type: 'upstream_connect' },
    { what: 'a failed TLS handshake', model: 'tls', type: 'upstream_tls' },
    { what: 'a first byte too late', model: 'slow', mock: 'first_byte_delay=5s', type: 'first_byte_timeout' },
    { what: 'a hangup', model: 'mock', mock: 'hangup=1', type: 'upstream_reset' },
    { what: 'a reply too large', model: 'mock', mock: 'size=20000', type: 'upstream_too_large' },
    { what: 'an error status', model: 'mock', mock: 'status=502', type: '502' },
  ];
  for (const c of cases) {
    it(`names ${c.what} ${c.type}`, async () => {
      const headers = c.mock ? { 'x-mock': c.mock } : {};
      const res = await postChat(gw, { model: c.model, messages }, headers);
      assert.ok(res.status >= 500, `status ${res.status}`);
      const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
      const [server] = byKind(spans, SERVER);
      const [client] = byKind(spans, CLIENT);
      assert.equal(client.attributes['error.type'], c.type);
      assert.equal(client.status.code, ERROR);
      assert.equal(server.attributes['error.type'], c.type);
      assert.equal(server.status.code, ERROR);
    });
  }

  it('names a late error event', async () => {
    const stream = await openStream({ port: gw.port, path: '/v1/chat/completions',
      headers: { 'x-mock': 'stream_error=2' }, body: { model: 'mock', messages, stream: true } });
    assert.equal(stream.status, 200);
    await stream.rest();
    const { spans } = await requestSpans(gw, receiver, stream.headers['x-request-id'], 2);
    assert.equal(byKind(spans, CLIENT)[0].attributes['error.type'], 'upstream_stream_error');
    assert.equal(byKind(spans, SERVER)[0].attributes['error.type'], 'upstream_stream_error');
  });
});

describe('export resilience', () => {
  const receivers = [];

  afterEach(async () => {
    await stopAll();
    for (const r of receivers.splice(0))
      await r.close();
  });

  /* A mock, a receiver with scripted responses (none when answers is null,
   * so that nothing listens) and a gateway exporting to it. */
  async function setup(answers, extra = {}) {
    const mock = await startMock();
    let receiver = null;
    let endpoint;
    if (answers === null) {
      endpoint = `http://127.0.0.1:${await freePort()}/v1/traces`;
    } else {
      receiver = await startOtlpReceiver({ answers });
      receivers.push(receiver);
      endpoint = receiver.endpoint;
    }
    const gw = await startGateway(config(mock, quickTracing({ endpoint }, extra)));
    return { gw, receiver };
  }

  it('serves requests while the receiver is down, retrying connection failures', async () => {
    const { gw } = await setup(null, { retry: { max_attempts: 3 } });
    for (let i = 0; i < 4; i++)
      assert.equal((await postChat(gw, { model: 'gpt-4o', messages })).status, 200);

    const stats = await waitFor(async () => {
      const s = await exporterStats(gw);
      return s.spans_failed === 8 && s.spans_queued === 0 ? s : null;
    }, { message: '8 spans failed' });
    assert.ok(stats.export_requests >= 3);
    assert.equal(stats.export_requests % 3, 0, 'each export is tried exactly max_attempts times');
    assert.equal(stats.spans_exported, 0);
    assert.equal(stats.spans_dropped, 0);
  });

  it('does not hold requests while an export hangs', async () => {
    const { gw, receiver } = await setup([{ status: 200, hang: true }], { otlp: { timeout: '30s' } });
    await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(() => receiver.requests.length === 1, { message: 'the first export' });

    // The receiver has not answered; requests complete all the same.
    for (let i = 0; i < 5; i++)
      assert.equal((await postChat(gw, { model: 'gpt-4o', messages })).status, 200);
    assert.equal(receiver.requests.length, 1, 'a second export started while one was in flight');
    assert.equal(receiver.hanging.length, 1);
    receiver.assertValid();
  });

  it('drops and counts spans when the queue is full', async () => {
    const { gw, receiver } = await setup([{ status: 200, hang: true }], {
      otlp: { timeout: '30s' },
      batch: { max_queue_size: 4, max_export_batch_size: 2 },
    });
    await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(() => receiver.requests.length === 1, { message: 'the first export' });

    // While the first export hangs, the queue keeps 4 spans and drops the
    // rest: 6 requests of 2 spans each.
    for (let i = 0; i < 6; i++)
      assert.equal((await postChat(gw, { model: 'gpt-4o', messages })).status, 200);
    const stats = await waitFor(async () => {
      const s = await exporterStats(gw);
      return s.spans_queued === 4 && s.spans_dropped >= 8 ? s : null;
    }, { message: 'a full queue and 8 drops' });
    assert.equal(stats.spans_dropped, 8);
    assert.equal(stats.spans_exported, 0);
  });

  it('warns of every dropped span by shutdown', async () => {
    const { gw, receiver } = await setup([{ status: 200, hang: true }], {
      otlp: { timeout: '30s' },
      batch: { max_queue_size: 4, max_export_batch_size: 2 },
    });
    await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(() => receiver.requests.length === 1, { message: 'the first export' });

    // Drops before the first warning and after it, within the warnings'
    // rate limit: 3 requests fill the queue and drop 2 spans, 3 more drop 6.
    for (let i = 0; i < 3; i++)
      await postChat(gw, { model: 'gpt-4o', messages });
    await gw.waitForLog(/tracing queue full/);
    for (let i = 0; i < 3; i++)
      await postChat(gw, { model: 'gpt-4o', messages });
    // A request's spans are submitted after its response has gone out, so
    // the count of the last one may come a moment after the client has it.
    const dropped = 8;
    await waitFor(async () => (await exporterStats(gw)).spans_dropped === dropped,
      { message: `${dropped} spans dropped` });
    await gw.stop();

    const counts = gw.stderr.map((line) => /(\d+) spans dropped since the last warning, (\d+) since start/.exec(line))
      .filter(Boolean);
    assert.ok(counts.length > 0, 'no drop warning');
    assert.equal(counts.reduce((sum, m) => sum + Number(m[1]), 0), dropped, 'drops in the warnings');
    assert.equal(Number(counts.at(-1)[2]), dropped, 'total in the last warning');
  });

  it('logs the spans a failing endpoint leaves unexported at shutdown', async () => {
    // 400 is never retried. The first batch fails while running, which
    // silences later failures; the second fails at shutdown.
    const { gw } = await setup([{ status: 400 }, { status: 400 }], {
      batch: { max_export_batch_size: 4, schedule_delay: '1h' },
    });
    for (let i = 0; i < 2; i++)
      await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(async () => (await exporterStats(gw)).spans_failed === 4,
      { message: 'the first batch failed' });
    await postChat(gw, { model: 'gpt-4o', messages });
    await gw.stop();
    assert.ok(gw.stderr.some((line) => /\[warn\] tracing stopped with 2 spans not exported: 2 in exports that failed, 0 still unsent/.test(line)),
      `no shutdown line in:\n${gw.stderr.join('\n')}`);
  });

  it('retries only 429, 502, 503 and 504, the same batch each time', async () => {
    const { gw, receiver } = await setup([{ status: 503 }, { status: 429 }, { status: 502 }, { status: 504 }]);
    await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(async () => (await exporterStats(gw)).spans_exported === 2,
      { message: 'the spans exported after 4 retries' });
    assert.equal(receiver.requests.length, 5);
    for (const r of receiver.requests.slice(1))
      assert.ok(r.bytes.equals(receiver.requests[0].bytes), "a retry sent other bytes");
    receiver.assertValid();
  });

  for (const protocol of ['http/protobuf', 'http/json']) {
    it(`warns of the spans an endpoint rejected, over ${protocol}`, async () => {
      const partial = { rejectedSpans: 2, errorMessage: 'quota\nexceeded' };
      const { gw, receiver } = await setup([{ status: 200, partial }], { otlp: { protocol } });
      await postChat(gw, { model: 'gpt-4o', messages });
      const line = await gw.waitForLog(/rejected 2 spans/);
      assert.match(line, /\[warn\] OTLP endpoint http:\/\/127\.0\.0\.1:\d+\/v1\/traces rejected 2 spans: quota\?exceeded$/);
      assert.equal(receiver.requests[0].protocol, protocol);
    });
  }

  for (const status of [400, 401, 404, 500]) {
    it(`never retries ${status}`, async () => {
      const { gw, receiver } = await setup([{ status }]);
      await postChat(gw, { model: 'gpt-4o', messages });
      // spans_failed counts once the exporter decided not to retry.
      await waitFor(async () => (await exporterStats(gw)).spans_failed === 2,
        { message: 'the spans failed' });
      assert.equal(receiver.requests.length, 1);
    });
  }

  it('waits as Retry-After says after a 429', async () => {
    // The back-off is longer than the export timeout, so a retry can only
    // come from the header.
    const { gw, receiver } = await setup([{ status: 429, retryAfter: 1 }], {
      otlp: { timeout: '20s' }, retry: { initial_backoff: '1m', max_backoff: '1m' },
    });
    assert.equal((await postChat(gw, { model: 'gpt-4o', messages })).status, 200);
    await waitFor(async () => (await exporterStats(gw)).spans_exported === 2,
      { message: 'the spans exported after Retry-After' });
    assert.equal(receiver.requests.length, 2);
    assert.ok(receiver.requests[1].bytes.equals(receiver.requests[0].bytes), "the retry sent other bytes");
    receiver.assertValid();
  });

  it('names the time a retry was given when it times out', async () => {
    // Retry-After takes 1 s of the 3 s export, so the retry that hangs
    // was given about 2 s (timers round to the millisecond), never the
    // whole configured timeout.
    const { gw } = await setup([{ status: 503, retryAfter: 1 }, { status: 200, hang: true }], {
      otlp: { timeout: '3s' },
    });
    await postChat(gw, { model: 'gpt-4o', messages });
    const line = await gw.waitForLog(/OTLP export of \d+ spans to .* failed: no response within (\d+) ms/);
    const given = Number(line.match(/no response within (\d+) ms/)[1]);
    assert.ok(given < 3000, `the retry reported ${given} ms`);
    assert.ok(given > 0, `the retry reported ${given} ms`);
  });

  it('says when the connection to the endpoint timed out', async () => {
    // A mock that accepts no connection, so that connects to it time out
    // as to a blackholed address.
    const mock = await startMock();
    const silent = await startMock({ args: ['--no-accept'] });
    const gw = await startGateway(config(mock, {
      otlp: { endpoint: `${silent.url}/v1/traces`, timeout: '500ms', shutdown_timeout: '1s' },
      batch: { schedule_delay: '50ms' },
      retry: { max_attempts: 1 },
    }));
    await postChat(gw, { model: 'gpt-4o', messages });
    const line = await gw.waitForLog(/OTLP export of \d+ spans to .* failed: /);
    assert.ok(line.includes(`${silent.url}/v1/traces`), line);
    assert.match(line, /failed: the connection timed out: not connected after \d+ ms/);
  });

  it('gives up when Retry-After is past the export timeout', async () => {
    const { gw, receiver } = await setup([{ status: 429, retryAfter: 3600 }], { otlp: { timeout: '5s' } });
    await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(async () => (await exporterStats(gw)).spans_failed === 2,
      { message: 'the spans failed' });
    assert.equal(receiver.requests.length, 1);
  });

  it('starts exporting after a reload turns tracing on', async () => {
    const mock = await startMock();
    const receiver = await startOtlpReceiver();
    receivers.push(receiver);
    const gw = await startGateway(config(mock, {}));
    const before = await postChat(gw, { model: 'gpt-4o', messages });
    assert.equal((await gw.accessFor(before.headers['x-request-id'])).trace_id, undefined,
      'tracing is off without an endpoint');

    assert.equal(await gw.reload({ ...gw.config, tracing: quickTracing(receiver) }), 'reloaded');
    const after = await postChat(gw, { model: 'gpt-4o', messages });
    await requestSpans(gw, receiver, after.headers['x-request-id'], 2);
    receiver.assertValid();
  });

  // An exporter loop with tracing off would take a thread and descriptors
  // for nothing, and could fail the start under a low open-files limit.
  it('starts the exporter thread only once tracing is on', async () => {
    const threads = (pid) => fs.readdirSync(`/proc/${pid}/task`).length;
    const mock = await startMock();
    const receiver = await startOtlpReceiver();
    receivers.push(receiver);
    const gw = await startGateway(config(mock, {}));
    const off = threads(gw.child.pid);

    assert.equal(await gw.reload({ ...gw.config, tracing: quickTracing(receiver) }), 'reloaded');
    await waitFor(() => threads(gw.child.pid) === off + 1, { message: 'the exporter thread' });
    const res = await postChat(gw, { model: 'gpt-4o', messages });
    await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
  });

  it('sends queued spans on SIGTERM', async () => {
    const { gw, receiver } = await setup([], { batch: { schedule_delay: '1h' } });
    const res = await postChat(gw, { model: 'gpt-4o', messages });
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(receiver.requests.length, 0);
    await gw.stop();

    // The receiver runs in this process. When this process is slow, the
    // gateway stops waiting for the export's response at its shutdown
    // timeout and exits, and the exit may be seen here before the
    // receiver reads the export.
    const spans = await waitFor(() => {
      const found = receiver.spansOfTrace(entry.trace_id);
      return found.length >= 2 ? found : null;
    }, { message: `the spans of trace ${entry.trace_id} at the receiver` });
    assert.equal(spans.length, 2);
    receiver.assertValid();
  });

  it('marks the server span of a request cut at drain_timeout', async () => {
    // The upstream holds back its response head past the deadline, and
    // the request ends with the drain's 503, a gateway failure.
    const mock = await startMock();
    const receiver = await startOtlpReceiver();
    receivers.push(receiver);
    const gw = await startGateway({ ...config(mock, quickTracing(receiver)), drain_timeout: '1s' });
    const pending = postChat(gw, { model: 'gpt-4o', messages },
      { 'x-mock': 'first_byte_delay=60s', 'x-request-id': 'cut-before-head' });
    await waitFor(async () => (await mock.requests()).length === 1,
      { message: 'the request to reach the mock' });
    gw.signal('SIGTERM');
    assert.equal((await pending).status, 503);
    assert.equal((await gw.waitExit()).code, 0);

    const { spans } = await requestSpans(gw, receiver, 'cut-before-head', 2);
    const [server] = byKind(spans, SERVER);
    assert.equal(server.status.code, ERROR);
    assert.equal(server.attributes['error.type'], 'shutting_down');
    assert.equal(server.attributes['http.response.status_code'], 503n);
    assert.equal(server.attributes['tollgate.termination'], 'DH');
    receiver.assertValid();
  });
});

describe('export over https', () => {
  let certs;
  let otherCerts;
  const receivers = [];

  /* Made for each test, because stopAll() removes the temporary
   * directories. */
  beforeEach(() => {
    certs = makeCertificates(makeTempDir());
    otherCerts = makeCertificates(makeTempDir(), 'unrelated test CA');
  });

  afterEach(async () => {
    await stopAll();
    for (const r of receivers.splice(0))
      await r.close();
  });

  /* An https receiver and a gateway that trusts caFile for it. */
  async function setup(caFile, extra = {}) {
    const mock = await startMock();
    const receiver = await startOtlpReceiver({ tls: certs });
    receivers.push(receiver);
    const gw = await startGateway(config(mock, quickTracing(receiver, {
      ...extra, otlp: { tls: { ca_file: caFile }, ...(extra.otlp || {}) },
    })));
    return { gw, receiver };
  }

  async function exportFailures(gw) {
    return valueOf(parseSamples((await scrape(gw)).text), 'tollgate_spans_export_failed_total');
  }

  it('exports to a receiver the CA file vouches for', async () => {
    const { gw, receiver } = await setup(certs.ca);
    const res = await postChat(gw, { model: 'gpt-4o', messages });
    assert.equal(res.status, 200);
    await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    assert.match(receiver.endpoint, /^https:/);
    assert.deepEqual(receiver.tlsErrors, []);
    receiver.assertValid();
    gw.checkErrors();
  });

  it('fails exports to a receiver of another CA, still serving requests', async () => {
    const { gw, receiver } = await setup(otherCerts.ca, { retry: { max_attempts: 2 } });
    assert.equal(await exportFailures(gw), 0);
    assert.equal((await postChat(gw, { model: 'gpt-4o', messages })).status, 200);

    await waitFor(async () => (await exportFailures(gw)) === 2,
      { message: 'tollgate_spans_export_failed_total at 2' });
    const line = await gw.waitForLog(/OTLP export of 2 spans to https:/);
    assert.match(line, /\[warn\] .*failed: TLS: .*certificate verify failed \(unable to get local issuer certificate\)/);
    assert.equal(receiver.requests.length, 0, 'the receiver accepted an export');
    assert.ok(receiver.tlsErrors.length >= 2, `handshakes refused: ${receiver.tlsErrors.length}`);
    assert.equal((await exporterStats(gw)).export_requests, 2, 'max_attempts attempts');

    assert.equal((await postChat(gw, { model: 'gpt-4o', messages })).status, 200);
    gw.checkErrors();
  });

  it('drops an open connection when a reload changes the CA file', async () => {
    const { gw, receiver } = await setup(certs.ca, { retry: { max_attempts: 1 } });
    await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(async () => (await exporterStats(gw)).spans_exported === 2,
      { message: 'the first batch exported' });

    // The connection is still open, but the new CA does not vouch for
    // the receiver: the next export must verify it again and fail.
    const { tracing: before } = gw.config;
    const after = { ...before, otlp: { ...before.otlp, tls: { ca_file: otherCerts.ca } } };
    assert.equal(await gw.reload({ ...gw.config, tracing: after }), 'reloaded');
    await postChat(gw, { model: 'gpt-4o', messages });
    await waitFor(async () => (await exporterStats(gw)).spans_failed === 2,
      { message: 'the second batch failed' });
    assert.equal(receiver.requests.length, 1);
    await gw.waitForLog(/failed: TLS: .*certificate verify failed/);
  });

  for (const [what, close] of [
    ['closed its idle connection', (receiver) => receiver.closeIdleConnections()],
    ['restarted on the same port', (receiver) => receiver.restart()],
  ]) {
    it(`exports a second batch after the receiver ${what}`, async () => {
      const { gw, receiver } = await setup(certs.ca);
      await postChat(gw, { model: 'gpt-4o', messages });
      await waitFor(async () => (await exporterStats(gw)).spans_exported === 2,
        { message: 'the first batch exported' });
      assert.equal(receiver.connections, 1);

      await close(receiver);
      await waitFor(() => receiver.sockets.size === 0, { message: 'the first connection closed' });
      await postChat(gw, { model: 'gpt-4o', messages });
      const stats = await waitFor(async () => {
        const s = await exporterStats(gw);
        return s.spans_exported === 4 || s.spans_failed > 0 ? s : null;
      }, { message: 'the second batch exported or failed' });
      assert.equal(stats.spans_failed, 0, 'the second batch failed');
      assert.equal(stats.export_requests, 2, 'an attempt failed on the closed connection');
      assert.equal(receiver.connections, 2);
      assert.equal(receiver.requests.length, 2);
      receiver.assertValid();
      gw.checkErrors();
    });
  }
});

describe('https export settings', () => {
  let certs;

  before(() => {
    certs = makeCertificates(makeTempDir());
  });
  after(stopAll);

  /* Run tollgate -t on a config whose tracing.otlp is otlp. */
  async function check(otlp) {
    const file = writeTempFile('tollgate.json', JSON.stringify({
      backends: { mock: { url: 'http://127.0.0.1:9' } },
      routes: openaiRoutes('mock'),
      tracing: { otlp },
    }));
    return runTollgate(['-t', '-c', file]);
  }

  it('accepts an https endpoint with a CA file', async () => {
    const { code, stderr } = await check({
      endpoint: 'https://127.0.0.1:4318/v1/traces', tls: { ca_file: certs.ca },
    });
    assert.match(stderr, /configuration is valid/);
    assert.equal(code, 0);
  });

  /* The otlp sections take certs when the test runs, after before(). */
  for (const [what, otlpOf, message] of [
    ['an unreadable CA file',
      () => ({ endpoint: 'https://127.0.0.1:4318/v1/traces', tls: { ca_file: '/nonexistent/ca.pem' } }),
      /tracing\.otlp\.tls\.ca_file: cannot read "\/nonexistent\/ca\.pem": No such file or directory/],
    ['a CA file without certificates',
      () => ({ endpoint: 'https://127.0.0.1:4318/v1/traces', tls: { ca_file: certs.key } }),
      /tracing\.otlp\.tls\.ca_file: cannot load CA certificates from ".*server\.key" \(expected a PEM bundle\)/],
    ['a CA file with http://',
      () => ({ endpoint: 'http://127.0.0.1:4318/v1/traces', tls: { ca_file: certs.ca } }),
      /tracing\.otlp\.tls\.ca_file: ".*ca\.pem" is set, but tracing\.otlp\.endpoint is http:\/\/; a CA file applies only to an https:\/\/ endpoint/],
    ['verify that is not a boolean',
      () => ({ endpoint: 'https://127.0.0.1:4318/v1/traces', tls: { verify: 'no' } }),
      /tracing\.otlp\.tls\.verify: expected true or false, got a string/],
  ]) {
    it(`rejects ${what}`, async () => {
      const { code, stderr } = await check(otlpOf());
      assert.notEqual(code, 0);
      assert.match(stderr, message);
    });
  }
});

describe('response attributes', () => {
  let upstream;
  let receiver;
  let gw;
  let reply;

  /* A chat reply whose "id" and "model" are the given JSON texts, each a
   * string or a Buffer of raw bytes. */
  function chatReply(idJson, modelJson) {
    return Buffer.concat([
      Buffer.from('{"id":'), Buffer.from(idJson),
      Buffer.from(',"object":"chat.completion","model":'), Buffer.from(modelJson),
      Buffer.from(',"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},' +
        '"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}'),
    ]);
  }

  before(async () => {
    upstream = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(reply);
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    receiver = await startOtlpReceiver();
    gw = await startGateway({
      backends: { up: { url: `http://127.0.0.1:${upstream.address().port}` } },
      routes: openaiRoutes('up'),
      tracing: quickTracing(receiver),
    });
  });

  afterEach(() => {
    gw?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
    upstream?.close();
  });

  /* The attributes of the attempt span of one request whose upstream reply is body. */
  async function attemptAttributes(body) {
    reply = body;
    const res = await postChat(gw, { model: 'gpt-4o', messages });
    assert.equal(res.status, 200);
    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
    return byKind(spans, CLIENT)[0].attributes;
  }

  function assertOthersKept(a) {
    assert.deepEqual(a['gen_ai.response.finish_reasons'], ['stop']);
    assert.equal(a['gen_ai.usage.input_tokens'], 9n);
    assert.equal(a['gen_ai.usage.output_tokens'], 2n);
    assert.equal(a['http.response.status_code'], 200n);
  }

  it('drops a model with a NUL, keeps the rest', async () => {
    const a = await attemptAttributes(chatReply('"chatcmpl-nul"', '"gpt-4o\\u0000x"'));
    assert.equal(a['gen_ai.response.model'], undefined);
    assert.equal(a['gen_ai.response.id'], 'chatcmpl-nul');
    assertOthersKept(a);
  });

  it('drops an id of invalid UTF-8, keeps the rest', async () => {
    /* An overlong encoding of "/", which yajl lets through and jansson rejects. */
    const id = Buffer.concat([Buffer.from('"chatcmpl-'), Buffer.from([0xc0, 0xaf]), Buffer.from('"')]);
    const a = await attemptAttributes(chatReply(id, '"gpt-4o"'));
    assert.equal(a['gen_ai.response.id'], undefined);
    assert.equal(a['gen_ai.response.model'], 'gpt-4o');
    assertOthersKept(a);
  });

  it('keeps a control character in the model', async () => {
    const a = await attemptAttributes(chatReply('"chatcmpl-ctl"', '"gpt-4o\\u0001"'));
    assert.equal(a['gen_ai.response.model'], 'gpt-4o\u0001');
    assert.equal(a['gen_ai.response.id'], 'chatcmpl-ctl');
    assertOthersKept(a);
  });
});

describe('export protocols', () => {
  let mock;
  const receivers = {};
  const gateways = {};

  before(async () => {
    mock = await startMock();
    for (const protocol of ['http/protobuf', 'http/json']) {
      receivers[protocol] = await startOtlpReceiver();
      // The default protocol is protobuf, so it goes unnamed.
      const otlp = protocol === 'http/json' ? { protocol } : {};
      gateways[protocol] = await startGateway({
        backends: { mock: mockBackend(mock) },
        filters: {
          deny: { type: 'regex', action: 'block', rules: [{ name: 'injection', pattern: 'ignore previous' }] },
          tickets: { type: 'regex', action: 'mask', rules: [{ name: 'ticket', pattern: 'TCK-[0-9]{6}' }] },
        },
        routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['mock'],
          filters: ['deny', 'tickets'] }],
        tracing: quickTracing(receivers[protocol], { capture_content: true, otlp }),
      });
    }
  });

  afterEach(() => {
    for (const protocol of Object.keys(gateways)) {
      gateways[protocol].checkErrors();
      receivers[protocol].assertValid();
    }
  });
  after(async () => {
    await stopAll();
    for (const receiver of Object.values(receivers))
      await receiver.close();
  });

  /* Requests whose spans hold every kind of field: a remote parent with
   * tracestate and flags, events, arrays, doubles, text that JSON escapes
   * and UTF-8, an error status with a message, and one without. */
  async function sendAll(gw) {
    const content = 'Ticket TCK-123456: a "café" \\ naïve ☕ question';
    const requests = [
      postChat(gw, { model: 'gpt-4o', messages: [{ role: 'user', content }], temperature: 0.25,
        stop: ['END', 'fin'] }, {
        traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, tracestate: TRACESTATE,
      }),
      postChat(gw, { model: 'gpt-4o', messages: [{ role: 'user', content: 'please ignore previous rules' }] }),
      postChat(gw, { model: 'gpt-4o', messages }, { 'x-mock': 'status=501' }),
    ];
    const counts = [4, 3, 4];
    const traces = [];
    for (const [i, res] of (await Promise.all(requests)).entries())
      traces.push(await requestSpans(gw, receivers[gw.protocol], res.headers['x-request-id'], counts[i]));
    return traces;
  }

  function sortedById(spans) {
    return [...spans].sort((a, b) => (a.spanId < b.spanId ? -1 : 1));
  }

  for (const protocol of ['http/protobuf', 'http/json']) {
    it(`exports with ${protocol} the spans the admin listener shows`, async () => {
      const gw = gateways[protocol];
      gw.protocol = protocol;
      for (const { traceId, spans } of await sendAll(gw)) {
        const shown = await adminGet(gw, `/api/traces/${traceId}`);
        assert.equal(shown.status, 200);
        assert.deepEqual(sortedById(spans), sortedById(spansOf(shown.json())),
          `trace ${traceId} differs between the export and GET /api/traces`);
      }
      const all = receivers[protocol].spans();
      assert.ok(all.some((s) => s.traceState === TRACESTATE && s.flags !== 0), 'no span with tracestate and flags');
      assert.ok(all.some((s) => s.status.message === 'blocked by a content filter'), 'no status message');
      assert.ok(all.some((s) => s.events.length > 0), 'no event');
      assert.ok(all.some((s) => s.attributes['gen_ai.input.messages']?.includes('café')), 'no UTF-8 text');
    });
  }

  it('sends the Content-Type of each protocol', async () => {
    for (const [protocol, type] of [['http/protobuf', 'application/x-protobuf'], ['http/json', 'application/json']]) {
      const requests = receivers[protocol].requests;
      assert.ok(requests.length > 0, `no export with ${protocol}`);
      for (const r of requests) {
        assert.equal(r.headers['content-type'], type, `an export with ${protocol}`);
        assert.equal(r.protocol, protocol);
      }
    }
  });

  it('exports the same spans with either protocol, but for ids and times', async () => {
    /* What two gateways that got the same requests agree on. */
    const stable = (span) => ({
      name: span.name, kind: span.kind, traceState: span.traceState, flags: span.flags,
      status: span.status, resource: { ...span.resource, 'service.instance.id': undefined },
      scope: span.scope,
      attributes: { ...span.attributes, 'tollgate.request_id': undefined, 'gen_ai.response.id': undefined },
      events: span.events.map((e) => ({ name: e.name, attributes: e.attributes })),
    });
    const key = (s) => JSON.stringify(s, (k, v) => (typeof v === 'bigint' ? `${v}` : v));
    const [protobuf, json] = ['http/protobuf', 'http/json'].map((protocol) =>
      receivers[protocol].spans().map(stable).map(key).sort());
    assert.ok(protobuf.length >= 11, `${protobuf.length} spans exported with protobuf`);
    assert.deepEqual(protobuf, json);
  });
});

describe('export protocol settings', () => {
  after(stopAll);

  async function check(otlp, env = {}) {
    const file = writeTempFile('tollgate.json', JSON.stringify({
      backends: { mock: { url: 'http://127.0.0.1:9' } },
      routes: openaiRoutes('mock'),
      tracing: { otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces', ...otlp } },
    }));
    return runTollgate(['-t', '-c', file], { env });
  }

  for (const protocol of ['http/protobuf', 'http/json']) {
    it(`accepts ${protocol}`, async () => {
      const { code, stderr } = await check({ protocol });
      assert.match(stderr, /configuration is valid/);
      assert.equal(code, 0);
    });
  }

  it('rejects grpc in the file, naming the valid protocols', async () => {
    const { code, stderr } = await check({ protocol: 'grpc' });
    assert.notEqual(code, 0);
    assert.match(stderr, /tracing\.otlp\.protocol: unsupported protocol "grpc": tollgate exports over OTLP\/HTTP only; use "http\/protobuf" or "http\/json"/);
  });

  it('rejects a protocol that is not a string', async () => {
    const { code, stderr } = await check({ protocol: 1 });
    assert.notEqual(code, 0);
    assert.match(stderr, /tracing\.otlp\.protocol: expected "http\/protobuf" or "http\/json", got an integer/);
  });

  it('reads OTEL_EXPORTER_OTLP_PROTOCOL when the file sets none', async () => {
    const bad = await check({}, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/xml' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /: OTEL_EXPORTER_OTLP_PROTOCOL="http\/xml" \(tracing\.otlp\.protocol\): unsupported protocol "http\/xml"/);
    const good = await check({}, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' });
    assert.equal(good.code, 0, good.stderr);
    const file = await check({ protocol: 'http/json' }, { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' });
    assert.equal(file.code, 0, 'the file wins over the variable');
    assert.match(file.stderr, /: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: warning: ignored, because the file sets tracing\.otlp\.protocol/);
  });

  it('warns of OTEL_EXPORTER_OTLP_PROTOCOL=grpc and starts', async () => {
    const { code, stderr } = await check({}, { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /: OTEL_EXPORTER_OTLP_PROTOCOL: warning: "grpc" is not supported, so spans are exported with http\/protobuf/);
    assert.match(stderr, /Set OTEL_EXPORTER_OTLP_PROTOCOL to http\/protobuf or http\/json/);
    assert.match(stderr, /configuration is valid/);
  });

  it('names the variable of an out-of-range value', async () => {
    const { code, stderr } = await check({}, { OTEL_BSP_SCHEDULE_DELAY: '0' });
    assert.notEqual(code, 0);
    assert.match(stderr, /: OTEL_BSP_SCHEDULE_DELAY="0" \(tracing\.batch\.schedule_delay\): "0ms" is out of range; valid values are 1ms to 1h/);
  });

  it('names the variable of a non-numeric value', async () => {
    const { code, stderr } = await check({}, { OTEL_BSP_SCHEDULE_DELAY: 'abc' });
    assert.notEqual(code, 0);
    assert.match(stderr, /: OTEL_BSP_SCHEDULE_DELAY="abc" \(tracing\.batch\.schedule_delay\): invalid value; expected a whole number of milliseconds from 1 to 3600000$/m);
  });

  // The file wins, so a variable whose key it sets is ignored whatever its
  // value: it can neither fail the load nor change the value.
  for (const value of ['abc', '0']) {
    it(`ignores OTEL_BSP_SCHEDULE_DELAY=${value} when the file sets the key`, async () => {
      const file = writeTempFile('tollgate.json', JSON.stringify({
        backends: { mock: { url: 'http://127.0.0.1:9' } },
        routes: openaiRoutes('mock'),
        tracing: { batch: { schedule_delay: '1s' } },
      }));
      const { code, stderr } = await runTollgate(['-t', '-c', file], { env: { OTEL_BSP_SCHEDULE_DELAY: value } });
      assert.equal(code, 0, stderr);
      assert.match(stderr, /: OTEL_BSP_SCHEDULE_DELAY: warning: ignored, because the file sets tracing\.batch\.schedule_delay, which wins over the variable$/m);
      assert.match(stderr, /configuration is valid/);
    });
  }
});
