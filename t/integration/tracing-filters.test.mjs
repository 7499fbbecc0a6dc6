// Content filter decisions as traces, metrics and the access log record
// them. A response that a filter blocks shows in a span of that filter (one
// span per filter, over both sides it checks) and marks the server span
// failed. The attempt span keeps the finish reason the upstream sent, not
// the gateway's "content_filter". A mask filter whose match lies where
// no mask may rewrite (a message's name, a schema's enum) blocks, and is
// recorded as a block marked unmaskable everywhere the decision shows.
//
// The upstream is a scripted server for chat completions, completions and
// Anthropic messages, streamed or not.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { request, startGateway, stopAll } from './lib/harness.mjs';
import { quickTracing, requestSpans, startOtlpReceiver } from './lib/otlp-receiver.mjs';
import { parseSamples, scrape, valueOf } from './lib/prometheus.mjs';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

const EMAIL = 'jane@example.com';

const sse = (data, name = null) => `${name ? `event: ${name}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

/* The reply to each path, with the e-mail address in its text unless the
 * request's header x-text gives another text. In a stream of chat or
 * completions, the text and the finish reason come in one event, so the
 * filter blocks the event that carries the upstream's finish reason. */
function reply(path, stream, text) {
  const base = { id: 'r1', created: 1, model: 'm' };
  if (path === '/v1/chat/completions' && !stream)
    return JSON.stringify({ ...base, object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }] });
  if (path === '/v1/chat/completions')
    return sse({ ...base, object: 'chat.completion.chunk',
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }) +
      sse({ ...base, object: 'chat.completion.chunk',
        choices: [{ index: 0, delta: { content: text }, finish_reason: 'stop' }] }) +
      'data: [DONE]\n\n';
  if (path === '/v1/completions' && !stream)
    return JSON.stringify({ ...base, object: 'text_completion',
      choices: [{ index: 0, text, finish_reason: 'length' }] });
  if (path === '/v1/completions')
    return sse({ ...base, object: 'text_completion',
      choices: [{ index: 0, text, finish_reason: 'length' }] }) + 'data: [DONE]\n\n';
  const message = { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-test',
    content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null,
    usage: { input_tokens: 3, output_tokens: 4 } };
  if (!stream)
    return JSON.stringify(message);
  return [
    { type: 'message_start', message: { ...message, content: [], stop_reason: null } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: 4 } },
    { type: 'message_stop' },
  ].map((e) => sse(e, e.type)).join('');
}

async function startUpstream() {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const stream = JSON.parse(body).stream === true;
      const text = req.headers['x-text'] ?? `write to ${EMAIL}`;
      res.writeHead(200, { 'content-type': stream ? 'text/event-stream' : 'application/json' });
      res.end(reply(req.url, stream, text));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function filterSpan(spans, name) {
  const span = spans.find((s) => s.name === `filter ${name}`);
  assert.ok(span, `no span for filter ${name}`);
  return span;
}

describe('filter decisions in spans', () => {
  let upstream;
  let receiver;
  let gw;

  before(async () => {
    upstream = await startUpstream();
    receiver = await startOtlpReceiver();
    const routes = ['/v1/chat/completions', '/v1/completions', '/v1/messages'].map((path) => (
      { name: path.slice(4).replace('/', '-'), match: { path }, backends: ['up'], filters: ['secrets', 'mail'] }));
    gw = await startGateway({
      backends: { up: { url: `http://127.0.0.1:${upstream.address().port}` } },
      filters: {
        secrets: { type: 'regex', action: 'mask', apply_to: ['request', 'response'],
          rules: [{ name: 'secret', pattern: 'SECRET-[0-9]{4}' }] },
        mail: { type: 'regex', action: 'block', apply_to: ['response'],
          rules: [{ name: 'address', pattern: 'jane@example\\.com' }] },
      },
      routes,
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

  const CASES = [
    { path: '/v1/chat/completions', stream: false, finish: ['stop'] },
    { path: '/v1/chat/completions', stream: true, finish: ['stop'] },
    { path: '/v1/completions', stream: false, finish: ['length'] },
    { path: '/v1/completions', stream: true, finish: ['length'] },
    { path: '/v1/messages', stream: false, finish: ['end_turn'] },
    // The block ends the stream at the text, before the upstream's
    // message_delta with its stop_reason.
    { path: '/v1/messages', stream: true, finish: undefined },
  ];

  for (const { path, stream, finish } of CASES) {
    it(`records a response block: ${path}${stream ? ', streamed' : ''}`, async () => {
      const body = path === '/v1/completions' ? { model: 'm', prompt: 'hi', stream }
        : { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], stream };
      const res = await request({ port: gw.port, method: 'POST', path, body,
        headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 200);
      assert.ok(!res.text.includes(EMAIL), `the address reached the client: ${res.text}`);

      // Server, attempt and one span per filter.
      const { entry, spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 4);
      assert.equal(entry.reason, 'content_filter');
      const [server] = spans.filter((s) => s.kind === SERVER);
      const [attempt] = spans.filter((s) => s.kind === CLIENT);
      assert.equal(server.status.code, ERROR, 'the server span of a blocked response is not ERROR');
      assert.equal(server.attributes['error.type'], 'content_filter');

      const mail = filterSpan(spans, 'mail');
      assert.equal(mail.parentSpanId, server.spanId);
      assert.equal(mail.attributes['tollgate.filter.stage'], 'response');
      assert.equal(mail.attributes['tollgate.filter.decision'], 'block');
      assert.equal(mail.attributes['tollgate.filter.rule'], 'address');
      assert.equal(mail.status.code, ERROR);
      assert.equal(mail.attributes['error.type'], 'content_filter');
      assert.ok(mail.start >= attempt.start, 'the response side started before the attempt');
      assert.ok(mail.end <= server.end, 'the filter span ended after the server span');

      assert.deepEqual(attempt.attributes['gen_ai.response.finish_reasons'], finish,
        'the attempt span does not keep the finish reason the upstream sent');
      assert.equal(attempt.status.code, 0);
    });
  }

  it('spans one filter over both sides', async () => {
    const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', 'x-text': 'the code is SECRET-4321' },
      body: { model: 'm', messages: [{ role: 'user', content: 'hello' }] } });
    assert.equal(res.status, 200);
    assert.equal(res.json().choices[0].message.content, 'the code is [REDACTED:secret]');

    const { spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 4);
    const [server] = spans.filter((s) => s.kind === SERVER);
    const [attempt] = spans.filter((s) => s.kind === CLIENT);
    const secrets = filterSpan(spans, 'secrets');
    assert.equal(secrets.attributes['tollgate.filter.decision'], 'mask');
    assert.equal(secrets.attributes['tollgate.filter.stage'], 'response');
    assert.equal(secrets.status.code, 0);
    assert.ok(secrets.start <= attempt.start, 'the span does not cover the request side');
    assert.ok(secrets.end >= attempt.end, 'the span does not cover the response side');
    const sides = secrets.events.map((e) => [e.attributes['tollgate.filter.stage'],
      e.attributes['tollgate.filter.decision']]);
    assert.deepEqual(sides, [['response', 'mask']]);

    const mail = filterSpan(spans, 'mail');
    assert.equal(mail.attributes['tollgate.filter.decision'], 'pass');
    assert.equal(mail.attributes['tollgate.filter.stage'], 'response');
    assert.equal(mail.events.length, 0);
    assert.equal(server.status.code, 0);
    assert.deepEqual(attempt.attributes['gen_ai.response.finish_reasons'], ['stop']);
  });

  const UNMASKABLE = [
    ['a message name', { model: 'm', messages: [{ role: 'user', name: 'SECRET-1234', content: 'hi' }] }],
    ['a schema enum', { model: 'm', messages: [{ role: 'user', content: 'hi' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object',
        properties: { a: { type: 'string', enum: ['SECRET-1234'] } } } } }] }],
  ];

  for (const [what, body] of UNMASKABLE) {
    it(`records an unmaskable match in ${what} as a block`, async () => {
      const before = parseSamples((await scrape(gw)).text);
      const labels = { filter: 'secrets', rule: 'secret', action: 'block', side: 'request' };
      const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 400);
      assert.equal(res.json().error.code, 'content_filter');

      // The server span and the request side's filter span: the request
      // went no further, so the filter of the response side has none.
      const { entry, spans } = await requestSpans(gw, receiver, res.headers['x-request-id'], 2);
      assert.deepEqual(entry.filters, [{ filter: 'secrets', rule: 'secret', action: 'block',
        side: 'request', count: 1, unmaskable: true }]);

      const secrets = filterSpan(spans, 'secrets');
      assert.equal(secrets.attributes['tollgate.filter.decision'], 'block');
      assert.equal(secrets.attributes['tollgate.filter.stage'], 'request');
      assert.equal(secrets.attributes['tollgate.filter.unmaskable'], true);
      assert.equal(secrets.status.code, ERROR);
      assert.equal(secrets.attributes['error.type'], 'content_filter');
      const [server] = spans.filter((s) => s.kind === SERVER);
      const event = server.events.find((e) => e.attributes['tollgate.filter.name'] === 'secrets');
      assert.equal(event.attributes['tollgate.filter.decision'], 'block');
      assert.equal(event.attributes['tollgate.filter.unmaskable'], true);
      assert.equal(spans.find((s) => s.name === 'filter mail'), undefined,
        'a filter of the response side has a span without a response');

      const now = parseSamples((await scrape(gw)).text);
      const counted = (samples, action) => valueOf(samples, 'tollgate_filter_decisions_total',
        { ...labels, action });
      assert.equal(counted(now, 'block') - counted(before, 'block'), 1);
      assert.equal(counted(now, 'mask') - counted(before, 'mask'), 0);
    });
  }
});
