// Tracing of Anthropic Messages calls: /v1/messages spans carry the same
// GenAI attributes, events and captured content as chat completions.
// They follow the OpenTelemetry GenAI conventions: provider "anthropic",
// input tokens that count cache reads and writes, stop_reason as the
// finish reason, "system" as the system instructions. A count_tokens
// call, for which the GenAI conventions have no operation, is traced as
// plain HTTP.
//
// The upstream is a scripted Anthropic server; every export is checked by
// lib/otlp-receiver.mjs against the official protobuf definitions.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { openStream, request, startGateway, stopAll } from './lib/harness.mjs';
import { quickTracing, requestSpans, startOtlpReceiver } from './lib/otlp-receiver.mjs';

const SERVER = 2;
const CLIENT = 3;

const USAGE = {
  input_tokens: 9, cache_read_input_tokens: 100, cache_creation_input_tokens: 20, output_tokens: 5,
};
const ALL_INPUT = 129n;  // 9 + 100 + 20

/* The reply to every request: a text in two pieces. A request with tools
 * gets a tool_use block after the text. */
const message = (body) => ({
  id: 'msg_01', type: 'message', role: 'assistant', model: 'claude-test-20250101',
  content: [{ type: 'text', text: 'Sunny, 21 degrees.' },
    ...(body.tools ? [{ type: 'tool_use', id: 'toolu_9', name: 'weather', input: { city: 'Paris' } }] : [])],
  stop_reason: body.tools ? 'tool_use' : 'end_turn', stop_sequence: null, usage: USAGE,
});

const sse = (data) => `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`;

function streamEvents(body) {
  const whole = message(body);
  return [
    { type: 'message_start', message: { ...whole, content: [], stop_reason: null,
      usage: { ...USAGE, output_tokens: 1 } } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'ping' },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Sunny, ' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: '21 degrees.' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: whole.stop_reason, stop_sequence: null },
      usage: { output_tokens: USAGE.output_tokens } },
    { type: 'message_stop' },
  ].map(sse).join('');
}

function config(upstream, tracingSection) {
  return {
    backends: { claude: { url: `http://127.0.0.1:${upstream.address().port}`, api_key: 'k',
      api_key_header: 'x-api-key' } },
    routes: [
      { name: 'messages', match: { path: '/v1/messages' }, backends: ['claude'] },
      { name: 'count', match: { path: '/v1/messages/count_tokens' }, backends: ['claude'] },
    ],
    tracing: tracingSection,
  };
}

/* The server and client spans of the request requestId. */
async function spansOf(gw, receiver, requestId) {
  const { spans } = await requestSpans(gw, receiver, requestId, 2);
  return {
    server: spans.find((s) => s.kind === SERVER),
    client: spans.find((s) => s.kind === CLIENT),
  };
}

const ask = (extra = {}) => ({
  model: 'claude-test', max_tokens: 64, temperature: 0.5, top_p: 0.9, top_k: 40,
  stop_sequences: ['END'], output_config: { format: { type: 'json_schema', schema: { type: 'object' } } },
  messages: [{ role: 'user', content: 'What is the weather in Paris?' }], ...extra,
});

async function send(gw, body) {
  const res = await request({ port: gw.port, method: 'POST', path: '/v1/messages', body });
  assert.equal(res.status, 200, res.text);
  return res;
}

async function sendStream(gw, body) {
  const stream = await openStream({ port: gw.port, path: '/v1/messages', body: { ...body, stream: true } });
  assert.equal(stream.status, 200);
  await stream.rest();
  return stream;
}

describe('Anthropic messages spans', () => {
  let upstream;
  let receiver;
  let plain;
  let capturing;

  before(async () => {
    upstream = http.createServer((req, res) => {
      let text = '';
      req.on('data', (bytes) => { text += bytes; });
      req.on('end', () => {
        const body = JSON.parse(text);
        if (req.url === '/v1/messages/count_tokens') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ input_tokens: 12 }));
        } else if (body.stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(streamEvents(body));
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(message(body)));
        }
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    receiver = await startOtlpReceiver();
    plain = await startGateway(config(upstream, quickTracing(receiver)));
    capturing = await startGateway(config(upstream, quickTracing(receiver, { capture_content: true })));
  });

  afterEach(() => {
    plain?.checkErrors();
    capturing?.checkErrors();
    receiver?.assertValid();
  });
  after(async () => {
    await stopAll();
    await receiver?.close();
    upstream?.close();
  });

  function assertRequestAttributes(a, stream) {
    assert.equal(a['gen_ai.operation.name'], 'chat');
    assert.equal(a['gen_ai.provider.name'], 'anthropic');
    assert.equal(a['gen_ai.request.model'], 'claude-test');
    assert.equal(a['gen_ai.request.stream'], stream);
    assert.equal(a['gen_ai.request.max_tokens'], 64n);
    assert.equal(a['gen_ai.request.temperature'], 0.5);
    assert.equal(a['gen_ai.request.top_p'], 0.9);
    assert.equal(a['gen_ai.request.top_k'], 40, 'top_k is a double in the conventions');
    assert.equal(a['gen_ai.output.type'], 'json');
    assert.deepEqual(a['gen_ai.request.stop_sequences'], ['END']);
  }

  function assertResponseAttributes(a, reason = 'end_turn') {
    assert.equal(a['gen_ai.response.id'], 'msg_01');
    assert.equal(a['gen_ai.response.model'], 'claude-test-20250101');
    assert.deepEqual(a['gen_ai.response.finish_reasons'], [reason]);
    assert.equal(a['gen_ai.usage.input_tokens'], ALL_INPUT);
    assert.equal(a['gen_ai.usage.output_tokens'], 5n);
    assert.equal(a['gen_ai.usage.cache_read.input_tokens'], 100n);
    assert.equal(a['gen_ai.usage.cache_creation.input_tokens'], 20n);
  }

  it('records a call like a chat', async () => {
    const res = await send(plain, ask());
    const { server, client } = await spansOf(plain, receiver, res.headers['x-request-id']);

    assert.equal(server.name, 'POST /v1/messages');
    assert.equal(server.attributes['http.route'], '/v1/messages');
    assert.equal(server.attributes['gen_ai.operation.name'], 'chat');
    assert.equal(client.name, 'chat claude-test');
    assert.equal(client.parentSpanId, server.spanId);
    assertRequestAttributes(client.attributes, false);
    assertResponseAttributes(client.attributes);
    assert.equal(client.attributes['gen_ai.input.messages'], undefined, 'content is captured only on request');
    assert.equal(client.attributes['gen_ai.output.messages'], undefined);
    assert.equal(client.attributes['gen_ai.system_instructions'], undefined);
  });

  // The conventions keep each provider's own finish reasons.
  it('keeps the stop reason as Anthropic gives it', async () => {
    const res = await send(plain, ask({ tools: [{ name: 'weather', input_schema: { type: 'object' } }] }));
    const { client } = await spansOf(plain, receiver, res.headers['x-request-id']);
    assert.deepEqual(client.attributes['gen_ai.response.finish_reasons'], ['tool_use']);
  });

  it('names a count_tokens call by its route, as HTTP', async () => {
    const res = await request({ port: plain.port, method: 'POST',
      path: '/v1/messages/count_tokens', body: ask() });
    assert.equal(res.status, 200, res.text);
    const { server, client } = await spansOf(plain, receiver, res.headers['x-request-id']);

    assert.equal(server.name, 'POST /v1/messages/count_tokens');
    assert.equal(server.attributes['http.route'], '/v1/messages/count_tokens');
    assert.equal(server.attributes['gen_ai.operation.name'], undefined);
    assert.equal(client.name, 'POST /v1/messages/count_tokens');
    assert.equal(client.attributes['url.template'], '/v1/messages/count_tokens');
    assert.equal(client.attributes['http.request.method'], 'POST');
    assert.equal(client.attributes['http.response.status_code'], 200n);
    assert.equal(client.attributes['server.port'], BigInt(upstream.address().port));
    assert.equal(client.attributes['gen_ai.operation.name'], undefined,
      'no GenAI operation counts tokens');
    assert.equal(client.attributes['gen_ai.provider.name'], undefined);
    assert.equal(server.attributes['gen_ai.request.model'], 'claude-test');
    assert.equal(client.attributes['gen_ai.request.model'], 'claude-test');
  });

  it('records a stream and its first token', async () => {
    const stream = await sendStream(plain, ask());
    const { client } = await spansOf(plain, receiver, stream.headers['x-request-id']);
    const a = client.attributes;

    assert.equal(client.name, 'chat claude-test');
    assertRequestAttributes(a, true);
    assertResponseAttributes(a);
    assert.equal(typeof a['gen_ai.response.time_to_first_chunk'], 'number');
    assert.ok(a['gen_ai.response.time_to_first_chunk'] >= 0);
    const firstToken = client.events.filter((e) => e.name === 'tollgate.first_token');
    assert.equal(firstToken.length, 1, 'one first-token event');
    assert.ok(firstToken[0].time >= client.start, 'the first token came before the attempt');
    assert.ok(firstToken[0].time <= client.end, 'the first token came after the attempt');
  });

  it('captures messages, tools and system', async () => {
    const body = ask({
      system: [{ type: 'text', text: 'Answer briefly.' }],
      tools: [{ name: 'weather', input_schema: { type: 'object' } }],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '21 C' }] },
      ],
    });
    const res = await send(capturing, body);
    const { client } = await spansOf(capturing, receiver, res.headers['x-request-id']);
    const a = client.attributes;

    assert.deepEqual(JSON.parse(a['gen_ai.input.messages']), [
      { role: 'user', parts: [{ type: 'text', content: 'Weather in Paris?' }] },
      { role: 'assistant', parts: [{ type: 'tool_call', id: 'toolu_1', name: 'weather', arguments: { city: 'Paris' } }] },
      { role: 'user', parts: [{ type: 'tool_call_response', id: 'toolu_1', response: '21 C' }] },
    ]);
    assert.deepEqual(JSON.parse(a['gen_ai.system_instructions']), [{ type: 'text', content: 'Answer briefly.' }]);
    assert.deepEqual(JSON.parse(a['gen_ai.output.messages']), [
      { role: 'assistant', parts: [{ type: 'text', content: 'Sunny, 21 degrees.' }], finish_reason: 'tool_use' },
    ]);
    assertResponseAttributes(a, 'tool_use');
  });

  it('captures the text of a stream', async () => {
    const stream = await sendStream(capturing, ask({ system: 'Answer briefly.' }));
    const { client } = await spansOf(capturing, receiver, stream.headers['x-request-id']);
    const a = client.attributes;

    assert.deepEqual(JSON.parse(a['gen_ai.input.messages']), [
      { role: 'user', parts: [{ type: 'text', content: 'What is the weather in Paris?' }] },
    ]);
    assert.deepEqual(JSON.parse(a['gen_ai.system_instructions']), [{ type: 'text', content: 'Answer briefly.' }]);
    assert.deepEqual(JSON.parse(a['gen_ai.output.messages']), [
      { role: 'assistant', parts: [{ type: 'text', content: 'Sunny, 21 degrees.' }], finish_reason: 'end_turn' },
    ]);
    assertResponseAttributes(a);
    assert.equal(client.events.filter((e) => e.name === 'tollgate.first_token').length, 1);
  });
});
