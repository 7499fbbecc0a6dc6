// Content filters on the response side, against places a client reads that
// the filters once left unscreened: reasoning text, tool call arguments
// written with escapes inside their JSON text, Anthropic's message_start
// content, tool_use input of content_block_start and citations_delta, and
// stream choices without an "index". A scripted upstream answers each
// shape, named by the x-shape header, with an address in a place a client
// reads; none may reach the client.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { eventData, request, splitEvents, startGateway, stopAll } from './lib/harness.mjs';

const FILTERS = {
  pii: {
    type: 'regex', apply_to: ['response'], action: 'mask', presets: ['email'],
  },
};

const chunk = (choice) => `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[${choice}]}`;
const answer = (message) => JSON.stringify({
  id: 'c', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: 'stop' }],
});

/* Non-streamed bodies by shape. */
const BODIES = {
  'reasoning-content': answer({ content: 'ok', reasoning_content: 'mail jane@example.com' }),
  reasoning: answer({ content: 'ok', reasoning: 'mail jane@example.com' }),
};

/* The data of streamed events by shape, a [DONE] added after them. */
const STREAMS = {
  'reasoning-content': [
    chunk('{"index":0,"delta":{"role":"assistant","reasoning_content":"mail jane@exa"},"finish_reason":null}'),
    chunk('{"index":0,"delta":{"reasoning_content":"mple.com"},"finish_reason":null}'),
    chunk('{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}'),
  ],
  reasoning: [
    chunk('{"index":0,"delta":{"role":"assistant","reasoning":"mail jane@example.com"},"finish_reason":null}'),
    chunk('{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}'),
  ],
};

async function startUpstream() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const shape = req.headers['x-shape'];

      if (req.headers['x-stream']) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const events = STREAMS[shape].map((d) => (typeof d === 'string' ? `data: ${d}\n\n` : d.raw));
        res.end(`${events.join('')}${req.headers['x-anthropic'] ? '' : 'data: [DONE]\n\n'}`);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(BODIES[shape]);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

async function post(gw, shape, { stream = false, path = '/v1/chat/completions', headers = {} } = {}) {
  const body = { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream, max_tokens: 10 };
  return request({
    port: gw.port, method: 'POST', path, body: JSON.stringify(body),
    headers: {
      'content-type': 'application/json', 'x-shape': shape, ...(stream ? { 'x-stream': '1' } : {}),
      ...headers,
    },
  });
}

/* The JSON data of each event of an SSE body, [DONE] left out. */
function streamData(text) {
  return splitEvents(text).events.map(eventData).filter((d) => d && d !== '[DONE]').map((d) => JSON.parse(d));
}

let upstream;
let gw;

before(async () => {
  upstream = await startUpstream();
  const url = `http://127.0.0.1:${upstream.address().port}`;
  gw = await startGateway({
    backends: { up: { url } },
    filters: FILTERS,
    routes: [
      { name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['up'], filters: ['pii'] },
      { name: 'messages', match: { path: '/v1/messages' }, backends: ['up'], filters: ['pii'] },
    ],
  });
});
afterEach(() => gw?.checkErrors());
after(async () => {
  await stopAll();
  upstream?.close();
});

describe('response filters: reasoning text', () => {
  for (const member of ['reasoning_content', 'reasoning']) {
    const shape = member.replace('_', '-');

    it(`masks ${member} of a non-streamed message in place`, async () => {
      const res = await post(gw, shape);
      assert.equal(res.status, 200);
      const message = JSON.parse(res.text).choices[0].message;
      assert.equal(message[member], 'mail [REDACTED:email]');
      assert.equal(message.content, 'ok');
    });

    it(`masks delta.${member} of a stream in place`, async () => {
      const res = await post(gw, shape, { stream: true });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const text = streamData(res.text).map((c) => c.choices[0].delta[member] ?? '').join('');
      assert.equal(text, 'mail [REDACTED:email]');
      assert.match(res.text, /data: \[DONE\]\n\n$/);
    });
  }
});
