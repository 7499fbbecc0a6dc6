// Response-side content filters on the OpenAI Responses API
// (POST /v1/responses). A scripted upstream responds with the response
// object, or the stream events, that the x-shape header names, each with
// an address in a place the model writes. A mask filter must rewrite it,
// a block filter must stop it, and neither may let it reach the client.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { eventData, request, splitEvents, startGateway, stopAll } from './lib/harness.mjs';

const RULES = { type: 'regex', apply_to: ['response'], presets: ['email'] };
const FILTERS = {
  mask: { ...RULES, action: 'mask' },
  block: { ...RULES, action: 'block' },
  flag: { ...RULES, action: 'flag' },
};

const ADDRESS = 'jane@example.com';

const response = (output) => JSON.stringify({
  id: 'resp_1', object: 'response', created_at: 1, status: 'completed', model: 'm',
  output, usage: { input_tokens: 1, output_tokens: 2, total_tokens: 3 },
});
const message = (...content) => ({
  id: 'msg_1', type: 'message', role: 'assistant', status: 'completed', content,
});
const outputText = (text, annotations = []) => ({ type: 'output_text', text, annotations });

/* Responses by shape, and where in them the masked text must be. */
const BODIES = {
  'output-text': {
    body: response([message(outputText(`mail ${ADDRESS}`))]),
    masked: (r) => r.output[0].content[0].text,
  },
  refusal: {
    body: response([message({ type: 'refusal', refusal: `no, ${ADDRESS}` })]),
    masked: (r) => r.output[0].content[0].refusal,
  },
  annotation: {
    body: response([message(outputText('see [1]', [{
      type: 'url_citation', start_index: 4, end_index: 7, url: 'https://example.org/a', title: `by ${ADDRESS}`,
    }]))]),
    masked: (r) => r.output[0].content[0].annotations[0].title,
  },
  'reasoning-summary': {
    body: response([{ id: 'rs_1', type: 'reasoning', summary: [{ type: 'summary_text', text: `mail ${ADDRESS}` }] },
      message(outputText('ok'))]),
    masked: (r) => r.output[0].summary[0].text,
  },
  'function-call': {
    body: response([{
      id: 'fc_1', type: 'function_call', call_id: 'call_1', name: 'send', status: 'completed',
      arguments: '{"to":"jane\\u0040example.com"}',
    }]),
    masked: (r) => JSON.parse(r.output[0].arguments).to,
  },
  // The output's text joined, which some servers add as the SDKs do.
  'output-text-joined': {
    body: JSON.stringify({ ...JSON.parse(response([message(outputText('ok'))])), output_text: `mail ${ADDRESS}` }),
    masked: (r) => r.output_text,
  },
  'custom-tool-call': {
    body: response([{ id: 'ct_1', type: 'custom_tool_call', call_id: 'call_1', name: 'run', input: `mail ${ADDRESS}` }]),
    masked: (r) => r.output[0].input,
  },
};

/* A Responses API stream: each event named by its type, as OpenAI sends it. */
const event = (data, n) => `event: ${data.type}\ndata: ${JSON.stringify({ ...data, sequence_number: n })}\n\n`;
const STREAMS = {
  'output-text': [
    { type: 'response.created', response: { id: 'resp_1', object: 'response', status: 'in_progress', output: [] } },
    { type: 'response.output_item.added', output_index: 0, item: message() },
    { type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'mail jane@exa' },
    { type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'mple.com' },
    { type: 'response.output_text.done', item_id: 'msg_1', output_index: 0, content_index: 0, text: `mail ${ADDRESS}` },
    { type: 'response.completed', response: JSON.parse(BODIES['output-text'].body) },
  ],
};

async function startUpstream() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const shape = req.headers['x-shape'];

      if (req.headers['x-stream']) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(STREAMS[shape].map(event).join(''));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(BODIES[shape].body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

let upstream;
let gw;

before(async () => {
  upstream = await startUpstream();
  gw = await startGateway({
    backends: { up: { url: `http://127.0.0.1:${upstream.address().port}` } },
    filters: FILTERS,
    routes: ['mask', 'block', 'flag', 'none'].map((name) => ({
      name, match: { path: '/v1/responses', headers: { 'x-filter': name } }, backends: ['up'],
      filters: name === 'none' ? [] : [name],
    })),
  });
});
afterEach(() => gw?.checkErrors());
after(async () => {
  await stopAll();
  upstream?.close();
});

async function post(filter, shape, { stream = false } = {}) {
  const id = `${filter}-${shape}-${stream ? 'stream' : 'body'}`;
  const res = await request({
    port: gw.port, method: 'POST', path: '/v1/responses',
    body: JSON.stringify({ model: 'm', input: 'hi', stream }),
    headers: {
      'content-type': 'application/json', 'x-filter': filter, 'x-shape': shape, 'x-request-id': id,
      ...(stream ? { 'x-stream': '1' } : {}),
    },
  });
  return { res, access: await gw.accessFor(id) };
}

describe('response filters on a Responses API response', () => {
  for (const [shape, { masked }] of Object.entries(BODIES)) {
    it(`mask rewrites the address in ${shape}`, async () => {
      const { res, access } = await post('mask', shape);
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const body = JSON.parse(res.text);
      assert.match(masked(body), /\[REDACTED:email\]/);
      assert.equal(body.status, 'completed');
      assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['mask', 'email', 'mask']]);
    });

    it(`block marks the response incomplete for ${shape}`, async () => {
      const { res, access } = await post('block', shape);
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const body = JSON.parse(res.text);
      assert.deepEqual(body.output, []);
      assert.equal(body.status, 'incomplete');
      assert.deepEqual(body.incomplete_details, { reason: 'content_filter' });
      assert.equal(body.id, 'resp_1');
      assert.equal(access.reason, 'content_filter');
      assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['block', 'email', 'block']]);
    });
  }
});

describe('response filters on a Responses API stream', () => {
  for (const filter of ['mask', 'block']) {
    it(`${filter} ends the stream with the API's error event, the events unread`, async () => {
      const { res, access } = await post(filter, 'output-text', { stream: true });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const events = splitEvents(res.text).events;
      assert.equal(events.length, 1, res.text);
      assert.match(events[0], /^event: error\n/);
      const data = JSON.parse(eventData(events[0]));
      assert.equal(data.type, 'error');
      assert.equal(data.code, 'content_filter');
      assert.equal(data.param, null);
      assert.equal(data.sequence_number, 0);
      assert.match(data.message, /cannot screen Responses API streams/);
      assert.equal(access.reason, 'content_filter');
      assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action, f.side]),
        [[filter, null, 'block', 'response']]);
      await gw.waitForLog(/streamed response blocked unread \(the stream is a Responses API stream/);
    });
  }

  for (const filter of ['flag', 'none']) {
    it(`a route with ${filter} filters relays the stream whole`, async () => {
      const { res, access } = await post(filter, 'output-text', { stream: true });
      assert.equal(res.status, 200);
      assert.equal(res.text, STREAMS['output-text'].map(event).join(''));
      assert.deepEqual(access.filters ?? [], []);
      assert.equal(access.reason, null);
    });
  }
});
