// Content filters over JSON numbers. A number is read by its value, as a
// client's JSON.parse reads it: 4.111111111111111e15 is the card number
// 4111111111111111. Numbers are read inside tool call arguments, inside
// an Anthropic tool_use block's "input" (request and response), and in
// the "default" of a tool's JSON Schema. A scripted upstream records the
// request it gets and answers with the body named by the x-shape header.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { request, startGateway, stopAll } from './lib/harness.mjs';

const FILTERS = {
  mask: { type: 'regex', apply_to: ['request', 'response'], action: 'mask', presets: ['credit_card'] },
  deny: { type: 'regex', apply_to: ['request', 'response'], action: 'block', presets: ['credit_card'] },
};

const EXPONENT_ARGS = '{"c":4.111111111111111e15,"n":2}';
const toolUse = (input) => ({ type: 'tool_use', id: 't1', name: 'pay', input });
const anthropicAnswer = (input) => JSON.stringify({
  id: 'msg', type: 'message', role: 'assistant', model: 'c', stop_reason: 'tool_use',
  content: [toolUse(input)], usage: { input_tokens: 1, output_tokens: 1 },
});
const chatAnswer = (args) => JSON.stringify({
  id: 'c', object: 'chat.completion', created: 1, model: 'm',
  choices: [{
    index: 0, finish_reason: 'tool_calls',
    message: { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'pay', arguments: args } }] },
  }],
});
const BODIES = {
  clean: chatAnswer('{"n":2}'),
  'args-exponent': chatAnswer(EXPONENT_ARGS),
  // Written by hand: JSON.stringify would write the exponent as digits.
  'input-card': anthropicAnswer({ card: 4111111111111111, n: 2 }),
  'input-exponent': anthropicAnswer({ n: 2 }).replace('"n":2', '"card":4.111111111111111e15,"n":2'),
};

let upstream;
let received;
let masking;
let blocking;

async function startUpstream() {
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      received = Buffer.concat(parts).toString();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(BODIES[req.headers['x-shape'] ?? 'clean']);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function post(gw, path, body, shape) {
  return request({
    port: gw.port, method: 'POST', path, body,
    headers: { 'content-type': 'application/json', ...(shape ? { 'x-shape': shape } : {}) },
  });
}

/* An Anthropic request whose assistant turn called a tool with input,
 * written as the JSON text inputText. */
const messagesWithInput = (inputText) => '{"model":"c","max_tokens":10,"messages":[' +
  `{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"pay","input":${inputText}}]},` +
  '{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}]}';
const chatWithArgs = (args) => JSON.stringify({
  model: 'm',
  messages: [
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'pay', arguments: args } }] },
    { role: 'tool', tool_call_id: 'c1', content: 'ok' },
  ],
});
const chatWithDefault = (defaultText) => '{"model":"m","messages":[{"role":"user","content":"hi"}],' +
  '"tools":[{"type":"function","function":{"name":"pay","parameters":{"type":"object",' +
  `"properties":{"card":{"type":"integer","default":${defaultText}}}}}}]}`;

before(async () => {
  upstream = await startUpstream();
  const url = `http://127.0.0.1:${upstream.address().port}`;
  const config = (filter) => ({
    backends: { up: { url } },
    filters: FILTERS,
    routes: [{ name: 'all', match: { path_prefix: '/v1/' }, backends: ['up'], filters: [filter] }],
  });
  masking = await startGateway(config('mask'));
  blocking = await startGateway(config('deny'));
});
afterEach(() => {
  masking?.checkErrors();
  blocking?.checkErrors();
});
after(async () => {
  await stopAll();
  upstream?.close();
});

describe('request filters: numbers', () => {
  for (const [name, input] of [['digits', '4111111111111111'], ['an exponent', '4.111111111111111e15']]) {
    it(`blocks a card number written as ${name} in a tool_use input`, async () => {
      received = null;
      const res = await post(blocking, '/v1/messages', messagesWithInput(`{"card":${input}}`));
      assert.equal(res.status, 400);
      assert.equal(received, null, 'the request went upstream');
    });
  }

  it('masks a card number in a tool_use input, as a string', async () => {
    received = null;
    const res = await post(masking, '/v1/messages', messagesWithInput('{"card":4111111111111111,"n":[4.111111111111111e15]}'));
    assert.equal(res.status, 200);
    const input = JSON.parse(received).messages[0].content[0].input;
    assert.deepEqual(input, { card: '[REDACTED:credit_card]', n: ['[REDACTED:credit_card]'] });
  });

  it('blocks a card number written with an exponent in tool call arguments', async () => {
    received = null;
    const res = await post(blocking, '/v1/chat/completions', chatWithArgs(EXPONENT_ARGS));
    assert.equal(res.status, 400);
    assert.equal(received, null, 'the request went upstream');
  });

  it('masks a card number written with an exponent in tool call arguments', async () => {
    received = null;
    const res = await post(masking, '/v1/chat/completions', chatWithArgs(EXPONENT_ARGS));
    assert.equal(res.status, 200);
    const args = JSON.parse(received).messages[0].tool_calls[0].function.arguments;
    assert.equal(args, '{"c":"[REDACTED:credit_card]","n":2}');
  });

  it('blocks a card number as a schema default, on a mask filter too', async () => {
    for (const gw of [blocking, masking]) {
      received = null;
      const res = await post(gw, '/v1/chat/completions', chatWithDefault('4.111111111111111e15'));
      assert.equal(res.status, 400);
      assert.equal(received, null, 'the request went upstream');
    }
  });

  it('passes numbers that are no card', async () => {
    received = null;
    const res = await post(blocking, '/v1/messages', messagesWithInput('{"n":1.5e3,"m":[2,0.25]}'));
    assert.equal(res.status, 200);
    assert.match(received, /"n":1\.5e3,"m":\[2,0\.25\]/);
  });
});

describe('response filters: numbers', () => {
  for (const shape of ['input-card', 'input-exponent']) {
    it(`blocks a card number in a tool_use input (${shape})`, async () => {
      const res = await post(blocking, '/v1/messages', messagesWithInput('{}'), shape);
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /4\.?111111111111111/);
      assert.equal(JSON.parse(res.text).stop_reason, 'refusal');
    });

    it(`masks a card number in a tool_use input (${shape})`, async () => {
      const res = await post(masking, '/v1/messages', messagesWithInput('{}'), shape);
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.text).content[0].input, { card: '[REDACTED:credit_card]', n: 2 });
    });
  }

  it('blocks a card number written with an exponent in tool call arguments', async () => {
    const res = await post(blocking, '/v1/chat/completions', chatWithArgs('{}'), 'args-exponent');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.text).choices[0].finish_reason, 'content_filter');
  });

  it('masks a card number written with an exponent in tool call arguments', async () => {
    const res = await post(masking, '/v1/chat/completions', chatWithArgs('{}'), 'args-exponent');
    assert.equal(res.status, 200);
    const args = JSON.parse(res.text).choices[0].message.tool_calls[0].function.arguments;
    assert.equal(args, '{"c":"[REDACTED:credit_card]","n":2}');
  });
});
