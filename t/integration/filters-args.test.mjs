// Content filters over the values of tool call arguments. The arguments
// are a JSON text inside a string, and each string value of it is
// screened as a text of its own, so a rule anchored with ^ and $ matches
// a value whole. The upstream of lib/filter-setup.mjs records the request
// it gets and responds with the body or stream that the request names.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { postShaped, useFilterSetup } from './lib/filter-setup.mjs';

const RULES = [{ name: 'tok', pattern: '^token$' }, { name: 'acct', pattern: '^[0-9]{6}$' }];
const FILTERS = {
  mask: { type: 'regex', apply_to: ['request', 'response'], action: 'mask', rules: RULES, presets: ['email', 'credit_card'] },
  deny: { type: 'regex', apply_to: ['request', 'response'], action: 'block', rules: RULES },
};

const PLAIN = '{"a":"token","b":["x token","mail jane@example.com"],"n":2}';
const MASKED = '{"a":"[REDACTED:tok]","b":["x token","mail [REDACTED:email]"],"n":2}';
const ESCAPED = '{"a":"tok\\u0065n"}';
const NEWLINE = '{"note":"line\\nmail jane@example.com"}';
const NEWLINE_MASKED = '{"note":"line\\nmail [REDACTED:email]"}';
const NUMBER = '{"acct":123456,"n":2}';
const NUMBER_MASKED = '{"acct":"[REDACTED:acct]","n":2}';
const CARD = '{"card":4111111111111111,"n":2}';
const CARD_MASKED = '{"card":"[REDACTED:credit_card]","n":2}';

const call = (args) => ({ id: 'c1', type: 'function', function: { name: 'send', arguments: args } });
const answer = (args) => JSON.stringify({
  id: 'c', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [call(args)] }, finish_reason: 'tool_calls' }],
});
const BODIES = {
  plain: answer(PLAIN), escaped: answer(ESCAPED), newline: answer(NEWLINE), number: answer(NUMBER),
  card: answer(CARD),
  clean: answer('{"a":"x token"}'),
};

/* A stream that delivers args in pieces of three bytes. */
function streamOf(args) {
  const chunk = (delta, finish) => `data: ${JSON.stringify({
    id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
  const events = [chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'send', arguments: '' } }] }, null)];
  for (let i = 0; i < args.length; i += 3) {
    events.push(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(i, i + 3) } }] }, null));
  }
  events.push(chunk({}, 'tool_calls'), 'data: [DONE]\n\n');
  return events.join('');
}
/* An escaped string of about 2 MB, past the 64 KiB limit of the
 * "limited" gateway: the filters hold all of it until its end. */
const LONG_ESCAPED = `{"a":"\\n${'x'.repeat(2 * 1024 * 1024)}"}`;
const STREAMS = {
  plain: streamOf(PLAIN), escaped: streamOf(ESCAPED), number: streamOf(NUMBER), card: streamOf(CARD),
  'long-escaped': streamOf(LONG_ESCAPED),
};

const setup = useFilterSetup({
  filters: FILTERS, bodies: BODIES, streams: STREAMS, match: { path: '/v1/chat/completions' },
  gateways: { limited: { filter: 'mask', limits: { max_response_body: '64KiB' } } },
});

/* POST a chat request whose assistant message calls a tool with args. */
function post(gw, args, shape, stream = false) {
  const body = {
    model: 'm',
    stream,
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: null, tool_calls: [call(args)] },
      { role: 'tool', tool_call_id: 'c1', content: 'sent' },
    ],
  };
  return postShaped(gw, '/v1/chat/completions', body, shape, stream);
}

const argumentsOf = (message) => message.tool_calls[0].function.arguments;

describe('request filters: values of tool call arguments', () => {
  it('masks a value that an anchored rule matches whole, in place', async () => {
    setup.received = null;
    const res = await post(setup.masking, PLAIN);
    assert.equal(res.status, 200);
    const args = argumentsOf(JSON.parse(setup.received).messages[1]);
    assert.equal(args, MASKED);
    assert.deepEqual(JSON.parse(args).b, ['x token', 'mail [REDACTED:email]']);
  });

  it('blocks a value that an anchored rule matches whole', async () => {
    setup.received = null;
    const res = await post(setup.blocking, PLAIN);
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(res.text).error.code, 'content_filter');
    assert.equal(setup.received, null, 'the request went upstream');
  });

  it('masks a value that matches only decoded, writing it again', async () => {
    setup.received = null;
    const res = await post(setup.masking, ESCAPED);
    assert.equal(res.status, 200);
    assert.equal(argumentsOf(JSON.parse(setup.received).messages[1]), '{"a":"[REDACTED:tok]"}');
  });

  it('masks an address beside an escape in a value', async () => {
    setup.received = null;
    const res = await post(setup.masking, NEWLINE);
    assert.equal(res.status, 200);
    assert.equal(argumentsOf(JSON.parse(setup.received).messages[1]), NEWLINE_MASKED);
  });
});

describe('response filters: values of tool call arguments', () => {
  it('masks a value that an anchored rule matches whole, in place', async () => {
    const res = await post(setup.masking, '{}', 'plain');
    assert.equal(res.status, 200);
    const args = argumentsOf(JSON.parse(res.text).choices[0].message);
    assert.equal(args, MASKED);
    assert.equal(JSON.parse(args).a, '[REDACTED:tok]');
  });

  it('blocks a value that an anchored rule matches whole', async () => {
    const res = await post(setup.blocking, '{}', 'plain');
    assert.equal(res.status, 200);
    const choice = JSON.parse(res.text).choices[0];
    assert.equal(choice.finish_reason, 'content_filter');
    assert.doesNotMatch(res.text, /token/);
  });

  it('masks a value that matches only decoded, writing it again', async () => {
    const res = await post(setup.masking, '{}', 'escaped');
    assert.equal(res.status, 200);
    assert.equal(argumentsOf(JSON.parse(res.text).choices[0].message), '{"a":"[REDACTED:tok]"}');
  });

  it('masks an address beside an escape in a value', async () => {
    const res = await post(setup.masking, '{}', 'newline');
    assert.equal(res.status, 200);
    assert.equal(argumentsOf(JSON.parse(res.text).choices[0].message), NEWLINE_MASKED);
  });
});

/* The arguments of the tool call in a stream's events, joined. */
function streamedArguments(text) {
  return text.split('\n\n').filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? '')
    .join('');
}

describe('stream filters: values of tool call arguments', () => {
  it('masks a value that an anchored rule matches whole, in place', async () => {
    const res = await post(setup.masking, '{}', 'plain', true);
    assert.equal(res.status, 200);
    const args = streamedArguments(res.text);
    assert.equal(args, MASKED);
    assert.equal(JSON.parse(args).a, '[REDACTED:tok]');
    assert.match(res.text, /data: \[DONE\]\n\n$/);
  });

  it('ends the stream before a value that an anchored rule matches whole', async () => {
    const res = await post(setup.blocking, '{}', 'plain', true);
    assert.equal(res.status, 200);
    assert.doesNotMatch(streamedArguments(res.text), /token"/);
    assert.match(res.text, /content_filter/);
  });

  it('masks a number that an anchored rule matches, as a response body', async () => {
    const whole = await post(setup.masking, '{}', 'number');
    assert.equal(argumentsOf(JSON.parse(whole.text).choices[0].message), NUMBER_MASKED);
    const res = await post(setup.masking, '{}', 'number', true);
    assert.equal(res.status, 200);
    assert.equal(streamedArguments(res.text), NUMBER_MASKED);
  });

  it('masks a card number outside quotes, as a response body', async () => {
    const whole = await post(setup.masking, '{}', 'card');
    assert.equal(argumentsOf(JSON.parse(whole.text).choices[0].message), CARD_MASKED);
    const res = await post(setup.masking, '{}', 'card', true);
    assert.equal(res.status, 200);
    assert.equal(streamedArguments(res.text), CARD_MASKED);
  });

  it('ends a stream on a decoded-only match', async () => {
    const res = await post(setup.masking, '{}', 'escaped', true);
    assert.equal(res.status, 200);
    assert.match(res.text, /content_filter/);
    assert.doesNotMatch(streamedArguments(res.text), /u0065n/);
  });

  it('ends a stream whose held arguments pass limits.max_response_body', async () => {
    const res = await post(setup.limited, '{}', 'long-escaped', true);
    assert.equal(res.status, 200);
    const chunks = res.text.split('\n\n').filter((e) => !e.startsWith('data: {"error"'));
    assert.doesNotMatch(streamedArguments(chunks.join('\n\n')), /\\n|x/, 'held arguments went out');
    assert.match(res.text, /"code":"upstream_failed"/);
    assert.doesNotMatch(res.text, /\[DONE\]/);
    const line = await setup.limited.accessFor(res.headers['x-request-id']);
    assert.equal(line.reason, 'upstream_too_large');
    await setup.limited.waitForLog(/streamed response too large to screen/);
  });
});
