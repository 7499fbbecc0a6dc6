// Content filters over JSON numbers. A number is read by its value, as a
// client's JSON.parse reads it: 4.111111111111111e15 is the card number
// 4111111111111111. Numbers are read inside tool call arguments, inside
// an Anthropic tool_use block's "input" (request and response), and in
// the "default" of a tool's JSON Schema. The upstream of
// lib/filter-setup.mjs records the request it gets and responds with the
// body or stream that the request names.

import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { postShaped, useFilterSetup } from './lib/filter-setup.mjs';
import { startGateway } from './lib/harness.mjs';

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

/* An Anthropic stream of a tool_use block whose input json comes in
 * input_json_delta events of three bytes. */
function inputStream(json) {
  const event = (type, data) => `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
  const events = [
    event('message_start', { type: 'message_start', message: { id: 'msg', type: 'message', role: 'assistant', content: [], model: 'c' } }),
    event('content_block_start', { type: 'content_block_start', index: 0, content_block: toolUse({}) }),
  ];
  for (let i = 0; i < json.length; i += 3) {
    events.push(event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: json.slice(i, i + 3) } }));
  }
  events.push(
    event('content_block_stop', { type: 'content_block_stop', index: 0 }),
    event('message_delta', { type: 'message_delta', delta: { stop_reason: 'tool_use' } }),
    event('message_stop', { type: 'message_stop' }),
  );
  return events.join('');
}

/* A chat stream whose tool call arguments come in pieces of three bytes. */
function argsStream(args) {
  const chunk = (delta, finish) => `data: ${JSON.stringify({
    id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
  const events = [chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'pay', arguments: '' } }] }, null)];
  for (let i = 0; i < args.length; i += 3) {
    events.push(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(i, i + 3) } }] }, null));
  }
  events.push(chunk({}, 'tool_calls'), 'data: [DONE]\n\n');
  return events.join('');
}

const STREAMS = {
  'input-exponent': inputStream('{"card":4.111111111111111e15,"n":2}'),
  'args-exponent': argsStream(EXPONENT_ARGS),
};

/* The partial_json of an Anthropic stream's events, joined. */
const streamedInput = (text) => text.split('\n\n').filter((e) => e.includes('input_json_delta'))
  .map((e) => JSON.parse(e.slice(e.indexOf('data: ') + 6)).delta.partial_json).join('');
/* The arguments of a chat stream's tool call, joined. */
const streamedArguments = (text) => text.split('\n\n').filter((e) => e.startsWith('data: {'))
  .map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? '')
  .join('');

const setup = useFilterSetup({ filters: FILTERS, bodies: BODIES, streams: STREAMS });

/* POST a streamed request; the upstream responds with STREAMS[shape]. */
function postStream(gw, path, body, shape) {
  const streamed = JSON.stringify({ ...JSON.parse(body), stream: true });
  return postShaped(gw, path, streamed, shape, true);
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

describe('request filters: numbers', () => {
  for (const [name, input] of [['digits', '4111111111111111'], ['an exponent', '4.111111111111111e15']]) {
    it(`blocks a card number written as ${name} in a tool_use input`, async () => {
      setup.received = null;
      const res = await postShaped(setup.blocking, '/v1/messages', messagesWithInput(`{"card":${input}}`));
      assert.equal(res.status, 400);
      assert.equal(setup.received, null, 'the request went upstream');
    });
  }

  it('masks a card number in a tool_use input, as a string', async () => {
    setup.received = null;
    const res = await postShaped(setup.masking, '/v1/messages', messagesWithInput('{"card":4111111111111111,"n":[4.111111111111111e15],"x":0.7}'));
    assert.equal(res.status, 200);
    const input = JSON.parse(setup.received).messages[0].content[0].input;
    assert.deepEqual(input, { card: '[REDACTED:credit_card]', n: ['[REDACTED:credit_card]'], x: 0.7 });
    // The masked strings are spliced into the body as sent: a dump of the
    // parsed body would write 0.7 as 0.69999999999999996.
    assert.match(setup.received, /"x":0\.7\}/);
  });

  it('blocks a card number written with an exponent in tool call arguments', async () => {
    setup.received = null;
    const res = await postShaped(setup.blocking, '/v1/chat/completions', chatWithArgs(EXPONENT_ARGS));
    assert.equal(res.status, 400);
    assert.equal(setup.received, null, 'the request went upstream');
  });

  it('masks a card number written with an exponent in tool call arguments', async () => {
    setup.received = null;
    const res = await postShaped(setup.masking, '/v1/chat/completions', chatWithArgs(EXPONENT_ARGS));
    assert.equal(res.status, 200);
    const args = JSON.parse(setup.received).messages[0].tool_calls[0].function.arguments;
    assert.equal(args, '{"c":"[REDACTED:credit_card]","n":2}');
  });

  it('blocks a card number as a schema default, on a mask filter too', async () => {
    for (const gw of [setup.blocking, setup.masking]) {
      setup.received = null;
      const res = await postShaped(gw, '/v1/chat/completions', chatWithDefault('4.111111111111111e15'));
      assert.equal(res.status, 400);
      assert.equal(setup.received, null, 'the request went upstream');
    }
  });

  it('passes numbers that are no card', async () => {
    setup.received = null;
    const res = await postShaped(setup.blocking, '/v1/messages', messagesWithInput('{"n":1.5e3,"m":[2,0.25]}'));
    assert.equal(res.status, 200);
    assert.match(setup.received, /"n":1\.5e3,"m":\[2,0\.25\]/);
  });
});

describe('response filters: numbers', () => {
  for (const shape of ['input-card', 'input-exponent']) {
    it(`blocks a card number in a tool_use input (${shape})`, async () => {
      const res = await postShaped(setup.blocking, '/v1/messages', messagesWithInput('{}'), shape);
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /4\.?111111111111111/);
      assert.equal(JSON.parse(res.text).stop_reason, 'refusal');
    });

    it(`masks a card number in a tool_use input (${shape})`, async () => {
      const res = await postShaped(setup.masking, '/v1/messages', messagesWithInput('{}'), shape);
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.text).content[0].input, { card: '[REDACTED:credit_card]', n: 2 });
    });
  }

  it('blocks a card number written with an exponent in tool call arguments', async () => {
    const res = await postShaped(setup.blocking, '/v1/chat/completions', chatWithArgs('{}'), 'args-exponent');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.text).choices[0].finish_reason, 'content_filter');
  });

  it('masks a card number written with an exponent in tool call arguments', async () => {
    const res = await postShaped(setup.masking, '/v1/chat/completions', chatWithArgs('{}'), 'args-exponent');
    assert.equal(res.status, 200);
    const args = JSON.parse(res.text).choices[0].message.tool_calls[0].function.arguments;
    assert.equal(args, '{"c":"[REDACTED:credit_card]","n":2}');
  });
});

describe('stream filters: numbers', () => {
  it('blocks a card number written with an exponent in a tool_use input', async () => {
    const res = await postStream(setup.blocking, '/v1/messages', messagesWithInput('{}'), 'input-exponent');
    assert.equal(res.status, 200);
    assert.doesNotMatch(streamedInput(res.text), /4\.111/);
    assert.match(res.text, /content_filter|refusal/);
  });

  it('masks a card number written with an exponent in a tool_use input', async () => {
    const res = await postStream(setup.masking, '/v1/messages', messagesWithInput('{}'), 'input-exponent');
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(streamedInput(res.text)), { card: '[REDACTED:credit_card]', n: 2 });
  });

  it('blocks a card number written with an exponent in tool call arguments', async () => {
    const res = await postStream(setup.blocking, '/v1/chat/completions', chatWithArgs('{}'), 'args-exponent');
    assert.equal(res.status, 200);
    assert.doesNotMatch(streamedArguments(res.text), /4\.111/);
    assert.match(res.text, /content_filter/);
  });

  it('masks a card number written with an exponent in tool call arguments', async () => {
    const res = await postStream(setup.masking, '/v1/chat/completions', chatWithArgs('{}'), 'args-exponent');
    assert.equal(res.status, 200);
    assert.equal(streamedArguments(res.text), '{"c":"[REDACTED:credit_card]","n":2}');
  });
});

describe('request filters: numbers against a literal rule', () => {
  let literal;
  before(async () => {
    const url = `http://127.0.0.1:${setup.upstream.address().port}`;
    literal = await startGateway({
      backends: { up: { url } },
      filters: { zeros: { type: 'regex', apply_to: ['request'], action: 'block', rules: [{ name: 'zeros', pattern: '100000' }] } },
      routes: [{ name: 'all', match: { path_prefix: '/v1/' }, backends: ['up'], filters: ['zeros'] }],
    });
  });

  it('blocks a value whose digits the text lacks', async () => {
    setup.received = null;
    const body = messagesWithInput('{"n":1e5}').replace('"max_tokens":10', '"max_tokens":9');
    assert.doesNotMatch(body, /0/);
    const res = await postShaped(literal, '/v1/messages', body);
    assert.equal(res.status, 400);
    assert.equal(setup.received, null, 'the request went upstream');
  });
});
