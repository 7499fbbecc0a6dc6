// Content filters over the keys of tool call arguments and of an
// Anthropic tool_use block's "input". A key is read as a text of its own,
// verbatim: the tool's code reads its arguments by their keys, so a mask
// never rewrites one, and a mask or block filter that matches one blocks.
// The upstream of lib/filter-setup.mjs records the request it gets and
// responds with the body that the request names.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { postShaped, useFilterSetup } from './lib/filter-setup.mjs';

const FILTERS = {
  mask: { type: 'regex', apply_to: ['request', 'response'], action: 'mask', presets: ['email'] },
  deny: { type: 'regex', apply_to: ['request', 'response'], action: 'block', presets: ['email'] },
};

const KEYED = { 'jane@example.com': 1 };
const ESCAPED_KEY_ARGS = '{"jane\\u0040example.com":1}';

const chatAnswer = (args) => JSON.stringify({
  id: 'c', object: 'chat.completion', created: 1, model: 'm',
  choices: [{
    index: 0, finish_reason: 'tool_calls',
    message: { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: args } }] },
  }],
});
const anthropicAnswer = (input) => JSON.stringify({
  id: 'msg', type: 'message', role: 'assistant', model: 'c', stop_reason: 'tool_use',
  content: [{ type: 'tool_use', id: 't1', name: 'send', input }], usage: { input_tokens: 1, output_tokens: 1 },
});
const BODIES = {
  clean: chatAnswer('{"to":"x"}'),
  'args-key': chatAnswer(JSON.stringify(KEYED)),
  'args-escaped-key': chatAnswer(ESCAPED_KEY_ARGS),
  'input-key': anthropicAnswer({ nested: KEYED }),
};

const setup = useFilterSetup({ filters: FILTERS, bodies: BODIES });

const messagesWithInput = (input) => ({
  model: 'c', max_tokens: 10,
  messages: [
    { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'send', input }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'ok' }] },
  ],
});
const chatWithArgs = (args) => ({
  model: 'm',
  messages: [
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: args } }] },
    { role: 'tool', tool_call_id: 'c1', content: 'ok' },
  ],
});

describe('request filters: keys', () => {
  const cases = [
    ['a tool_use input', '/v1/messages', messagesWithInput({ list: [KEYED] })],
    ['tool call arguments', '/v1/chat/completions', chatWithArgs(JSON.stringify(KEYED))],
    ['tool call arguments, escaped', '/v1/chat/completions', chatWithArgs(ESCAPED_KEY_ARGS)],
  ];
  for (const [where, path, body] of cases) {
    for (const [name, gw] of [['mask', () => setup.masking], ['block', () => setup.blocking]]) {
      it(`${name} filter blocks an address as a key of ${where}`, async () => {
        setup.received = null;
        const res = await postShaped(gw(), path, body);
        assert.equal(res.status, 400);
        assert.equal(JSON.parse(res.text).error.code, 'content_filter');
        assert.equal(setup.received, null, 'the request went upstream');
      });
    }
  }

  it('passes keys that match no rule', async () => {
    setup.received = null;
    const res = await postShaped(setup.masking, '/v1/messages', messagesWithInput({ to: 'x' }));
    assert.equal(res.status, 200);
    assert.notEqual(setup.received, null);
  });
});

describe('response filters: keys', () => {
  for (const shape of ['args-key', 'args-escaped-key', 'input-key']) {
    for (const [name, gw] of [['mask', () => setup.masking], ['block', () => setup.blocking]]) {
      it(`${name} filter blocks an address as a key (${shape})`, async () => {
        const path = shape === 'input-key' ? '/v1/messages' : '/v1/chat/completions';
        const body = shape === 'input-key' ? messagesWithInput({}) : chatWithArgs('{}');
        const res = await postShaped(gw(), path, body, shape);
        assert.equal(res.status, 200);
        assert.doesNotMatch(res.text, /jane/);
        assert.match(res.text, /content_filter|refusal/);
      });
    }
  }
});
