// Content filters over values of an unexpected shape. OpenAI rejects tool
// call arguments given as a JSON object and a message content given as
// an object, but compatible servers may take them, and clients read them
// as data, so the filters read them too: arguments as an object are read
// as a tool_use block's input is (strings, numbers and keys), and content
// as an object as one part. A stream whose delta has a number, a boolean
// or an object where a text string belongs ends with an error event,
// since a client may read it as text (JavaScript's += turns 5 into "5").
// The upstream of lib/filter-setup.mjs records the request it gets and
// responds with the body or stream that the request names.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { postShaped, useFilterSetup } from './lib/filter-setup.mjs';

const FILTERS = {
  mask: { type: 'regex', apply_to: ['request', 'response'], action: 'mask', presets: ['email'] },
  deny: { type: 'regex', apply_to: ['request', 'response'], action: 'block', presets: ['email'] },
};

const MAIL = 'mail jane@example.com';
const MASKED = 'mail [REDACTED:email]';

const chatAnswer = (message) => JSON.stringify({
  id: 'c', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', ...message } }],
});
const BODIES = {
  clean: chatAnswer({ content: 'ok' }),
  'args-object': chatAnswer({ content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: { to: [MAIL] } } }] }),
  'content-object': chatAnswer({ content: { type: 'text', text: MAIL } }),
};

const chunk = (delta, finish = null) => `data: ${JSON.stringify({
  id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
  choices: [{ index: 0, delta, finish_reason: finish }],
})}\n\n`;
const streamOf = (delta) => chunk({ role: 'assistant', content: '' }) + chunk(delta) +
  chunk({}, 'stop') + 'data: [DONE]\n\n';
const STREAMS = {
  'content-number': streamOf({ content: 4111111111111111 }),
  'content-object': streamOf({ content: { text: MAIL } }),
  'args-object': streamOf({ tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'send', arguments: { to: MAIL } } }] }),
  'content-parts': streamOf({ content: [{ type: 'text', text: MAIL }] }),
};

const setup = useFilterSetup({
  filters: FILTERS, bodies: BODIES, streams: STREAMS, match: { path: '/v1/chat/completions' },
});

function post(gw, messages, shape, stream = false) {
  return postShaped(gw, '/v1/chat/completions', { model: 'm', messages, stream }, shape, stream);
}

const argsObject = [
  { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: { to: [MAIL], n: 2 } } }] },
  { role: 'tool', tool_call_id: 'c1', content: 'ok' },
];
const contentObject = [{ role: 'user', content: { type: 'text', text: MAIL } }];

describe('request filters: unexpected shapes', () => {
  for (const [name, messages] of [['arguments as an object', argsObject], ['content as an object', contentObject]]) {
    it(`blocks an address in ${name}`, async () => {
      setup.received = null;
      const res = await post(setup.blocking, messages);
      assert.equal(res.status, 400);
      assert.equal(setup.received, null, 'the request went upstream');
    });
  }

  it('masks an address in arguments as an object', async () => {
    setup.received = null;
    const res = await post(setup.masking, argsObject);
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(setup.received).messages[0].tool_calls[0].function.arguments, { to: [MASKED], n: 2 });
  });

  it('masks an address in content as an object', async () => {
    setup.received = null;
    const res = await post(setup.masking, contentObject);
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(setup.received).messages[0].content, { type: 'text', text: MASKED });
  });
});

describe('response filters: unexpected shapes', () => {
  it('blocks an address in arguments as an object', async () => {
    const res = await post(setup.blocking, [{ role: 'user', content: 'hi' }], 'args-object');
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /jane/);
    assert.equal(JSON.parse(res.text).choices[0].finish_reason, 'content_filter');
  });

  it('masks an address in arguments as an object', async () => {
    const res = await post(setup.masking, [{ role: 'user', content: 'hi' }], 'args-object');
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text).choices[0].message.tool_calls[0].function.arguments, { to: [MASKED] });
  });

  it('blocks an address in content as an object', async () => {
    const res = await post(setup.blocking, [{ role: 'user', content: 'hi' }], 'content-object');
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /jane/);
  });

  it('masks an address in content as an object', async () => {
    const res = await post(setup.masking, [{ role: 'user', content: 'hi' }], 'content-object');
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text).choices[0].message.content, { type: 'text', text: MASKED });
  });
});

describe('stream filters: unexpected shapes', () => {
  for (const shape of ['content-number', 'content-object', 'args-object']) {
    for (const [name, gw] of [['mask', () => setup.masking], ['block', () => setup.blocking]]) {
      it(`${name} filter ends a stream with ${shape} in an error event`, async () => {
        gw().expectErrors(/stream filters failed \(an event has a number, a boolean or an object where a text string belongs/);
        const res = await post(gw(), [{ role: 'user', content: 'hi' }], shape, true);
        assert.equal(res.status, 200);
        assert.doesNotMatch(res.text, /4111111111111111|jane/);
        assert.match(res.text, /"error":\{"message":"the content filters could not check the response"/);
      });
    }
  }

  it('masks content given as an array of parts', async () => {
    const res = await post(setup.masking, [{ role: 'user', content: 'hi' }], 'content-parts', true);
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /jane/);
    assert.match(res.text, /\[REDACTED:email\]/);
  });
});
