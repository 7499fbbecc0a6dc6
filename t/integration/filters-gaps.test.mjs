// Response-side content filters on places a client reads that the filters
// once left unscreened. These are reasoning text, tool call arguments with
// escapes inside their JSON text, Anthropic's message_start content, the
// tool_use input of content_block_start, citations_delta, and stream
// choices without an "index". A scripted upstream sends each shape, named
// by the x-shape header, with an address in such a place. No address may
// reach the client, not even token by token in the logprobs that repeat a
// masked text.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import OpenAI from 'openai';

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

/* Arguments whose JSON text writes the address's "@" as an escape, and
 * with the address also written out, which a mask reaches. */
const HIDDEN = '{"to":"jane\\u0040example.com"}';
const BOTH = '{"cc":"joe@example.com","to":"jane\\u0040example.com"}';
const call = (args) => ({ id: 'c1', type: 'function', function: { name: 'send', arguments: args } });

/* Non-streamed bodies by shape. */
const BODIES = {
  'arguments-escaped': answer({ content: null, tool_calls: [call(HIDDEN)] }),
  'arguments-both': answer({ content: null, tool_calls: [call(BOTH)] }),
  'function-call-escaped': answer({ content: null, function_call: { name: 'send', arguments: HIDDEN } }),
  'arguments-escaped-clean': answer({ content: null, tool_calls: [call('{"to":"a line\\nbreak \\u00e9"}')] }),
  'reasoning-content': answer({ content: 'ok', reasoning_content: 'mail jane@example.com' }),
  reasoning: answer({ content: 'ok', reasoning: 'mail jane@example.com' }),
};

/* Bodies that the bytes alone cannot show clean: an '@' written as an
 * escape or as the fullwidth U+FF20, which NFKC makes an '@'; and one
 * they can, with escapes that decode to no '@'. */
Object.assign(BODIES, {
  'content-escaped': answer({ content: 'mail jane@example.com' }).replace('@', '\\u0040'),
  'content-fullwidth': answer({ content: 'mail jane\uff20example.com' }),
  'content-clean-escapes': answer({ content: 'a line\nbreak "q" \\ / at example.com' }),
});

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
  // Valid JSON with counts no usage has: beyond 64 bits, and negative.
  'bigint-usage': [
    chunk('{"index":0,"delta":{"role":"assistant","content":"mail jane@example.com"},"finish_reason":"stop"}'),
    '{"choices":[],"usage":{"prompt_tokens":18446744073709551617,"completion_tokens":-1}}',
  ],
};

/* The arguments json cut at byte cut into two tool call deltas. */
function splitCall(json, cut) {
  const delta = (args, first) => chunk(`{"index":0,"delta":{"tool_calls":[{"index":0${first ? ',"id":"c1","type":"function","function":{"name":"send",' : ',"function":{'}"arguments":${JSON.stringify(args)}}}]},"finish_reason":null}`);
  return [
    delta(json.slice(0, cut), true), delta(json.slice(cut), false),
    chunk('{"index":0,"delta":{},"finish_reason":"tool_calls"}'),
  ];
}

/* The input json of an Anthropic tool_use block cut at byte cut into two
 * input_json_delta events. */
function splitInput(json, cut) {
  const event = (type, data) => ({ raw: `event: ${type}\ndata: ${JSON.stringify(data)}\n\n` });
  const delta = (part) => event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: part } });
  return [
    event('message_start', { type: 'message_start', message: { id: 'msg', type: 'message', role: 'assistant', content: [], model: 'm' } }),
    event('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 't1', name: 'send', input: {} } }),
    delta(json.slice(0, cut)), delta(json.slice(cut)),
    event('content_block_stop', { type: 'content_block_stop', index: 0 }),
    event('message_delta', { type: 'message_delta', delta: { stop_reason: 'tool_use' } }),
    event('message_stop', { type: 'message_stop' }),
  ];
}

/* An Anthropic stream with one text block, whose events are the given
 * ones around a delta of the text. */
function anthropicStream({ start = [], block = { type: 'text', text: '' }, extra = [] } = {}) {
  const event = (type, data) => ({ raw: `event: ${type}\ndata: ${JSON.stringify(data)}\n\n` });
  return [
    event('message_start', { type: 'message_start', message: { id: 'msg', type: 'message', role: 'assistant', content: start, model: 'm' } }),
    event('content_block_start', { type: 'content_block_start', index: 0, content_block: block }),
    event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'ok' } }),
    ...extra.map((delta) => event('content_block_delta', { type: 'content_block_delta', index: 0, delta })),
    event('content_block_stop', { type: 'content_block_stop', index: 0 }),
    event('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' } }),
    event('message_stop', { type: 'message_stop' }),
  ];
}

const deep = (depth) => (depth === 0 ? 'jane@example.com' : { a: [deep(depth - 1)] });

Object.assign(STREAMS, {
  'message-start-content': anthropicStream({ start: [{ type: 'text', text: 'mail jane@example.com' }] }),
  'tool-use-input': anthropicStream({ block: { type: 'tool_use', id: 't1', name: 'send', input: { to: ['jane@example.com'] } } }),
  'citations-delta': anthropicStream({
    extra: [{ type: 'citations_delta', citation: { type: 'char_location', cited_text: 'mail jane@example.com', document_index: 0, start_char_index: 0, end_char_index: 21 } }],
  }),
  'message-start-after-chunk': [
    chunk('{"index":0,"delta":{"content":"mail jane@exa"},"finish_reason":null}'),
    { raw: `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { content: [{ type: 'text', text: ' ' }] } })}\n\n` },
    chunk('{"index":0,"delta":{"content":"mple.com"},"finish_reason":"stop"}'),
  ],
  'tool-use-input-deep': anthropicStream({ block: { type: 'tool_use', id: 't1', name: 'send', input: deep(20) } }),
});

/* Choices without "index": openai-node joins them all as
 * choices[undefined], where other clients key them by position. */
const unindexed = (...texts) => chunk(texts.map((t) => `{"delta":{"content":${JSON.stringify(t)}},"finish_reason":null}`).join(','));
Object.assign(STREAMS, {
  'index-missing-beside': [unindexed('mail jane', '@example.com')],
  'index-missing-mixed': [unindexed('mail jane'), chunk('{"index":0,"delta":{"content":"@example.com"},"finish_reason":null}')],
  'index-missing-alone': [unindexed('mail jane'), unindexed('@example.com'), unindexed('')],
});

/* Arguments whose escaped address a rule with hold_timeout, waiting for
 * "zzz", keeps from being settled while the upstream pauses. */
const callDelta = (args) => chunk(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(args)}}}]},"finish_reason":null}`);
Object.assign(STREAMS, {
  'arguments-escaped-paused': [
    callDelta('{"to":"'), callDelta('jane\\u0040example.com"}'), { pause: 400 },
    chunk('{"index":0,"delta":{},"finish_reason":"tool_calls"}'),
  ],
});

Object.assign(BODIES, {
  citations: JSON.stringify({
    id: 'msg', type: 'message', role: 'assistant', model: 'm', stop_reason: 'end_turn',
    content: [{ type: 'text', text: 'ok', citations: [{ type: 'char_location', cited_text: 'mail jane@example.com', document_index: 0 }] }],
  }),
});

/* Logprobs that repeat the address token by token, as the API sends them
 * to a client that asks with "logprobs": true. */
const tokens = (texts) => ({
  content: texts.map((t) => ({ token: t, logprob: -0.1, bytes: [...Buffer.from(t)], top_logprobs: [] })),
});
const logprobsChunk = (text) => chunk(JSON.stringify({
  index: 0, delta: { content: text }, logprobs: tokens([text]), finish_reason: null,
}));
BODIES.logprobs = JSON.stringify({
  id: 'c', object: 'chat.completion', created: 1, model: 'm',
  choices: [{
    index: 0, message: { role: 'assistant', content: 'mail jane@example.com' },
    logprobs: tokens(['mail', ' jane', '@', 'example', '.com']), finish_reason: 'stop',
  }],
});
STREAMS.logprobs = [
  logprobsChunk('mail '), logprobsChunk('jane'), logprobsChunk('@example'), logprobsChunk('.com'),
  chunk('{"index":0,"delta":{},"finish_reason":"stop"}'),
];

/* An error event after content, whose message echoes the prompt, as an
 * error body's may. */
STREAMS['error-event'] = [
  chunk('{"index":0,"delta":{"content":"hello "},"finish_reason":null}'),
  '{"error":{"message":"bad jane@example.com","type":"server_error","code":null}}',
];
/* An Anthropic error event, named "error", such as an overloaded_error
 * that comes in the middle of a stream. */
const anthropicError = (message) => ({
  raw: `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message } })}\n\n`,
});
STREAMS['anthropic-error-event'] = [...anthropicStream().slice(0, 3), anthropicError('Overloaded')];
STREAMS['anthropic-error-event-address'] = [...anthropicStream().slice(0, 3), anthropicError('bad jane@example.com')];

const CLEAN = '{"code":"a\\nb \\u00e9 \\"q\\""}';
const CUTS = {
  'arguments-escaped': (cut) => splitCall(HIDDEN, cut),
  'arguments-escaped-clean': (cut) => splitCall(CLEAN, cut),
  'input-escaped': (cut) => splitInput(HIDDEN, cut),
};

async function startUpstream() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const shape = req.headers['x-shape'];

      if (req.headers['x-stream']) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const items = CUTS[shape] ? CUTS[shape](Number(req.headers['x-cut'])) : STREAMS[shape];
        const send = async () => {
          // A { pause } item pauses the stream for that many milliseconds.
          for (const d of items) {
            if (d.pause) await new Promise((resolve) => { setTimeout(resolve, d.pause); });
            else res.write(typeof d === 'string' ? `data: ${d}\n\n` : d.raw);
          }
          res.end(req.headers['x-anthropic'] ? '' : 'data: [DONE]\n\n');
        };
        send();
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

describe('stream filters: a usage count beyond 64 bits', () => {
  it('relays the event and logs the usage as unknown', async () => {
    const body = {
      model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true,
      stream_options: { include_usage: true },
    };
    const res = await request({
      port: gw.port, method: 'POST', path: '/v1/chat/completions', body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', 'x-shape': 'bigint-usage', 'x-stream': '1' },
    });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /"error"/);
    assert.match(res.text, /data: \{"choices":\[\],"usage":\{"prompt_tokens":18446744073709551617,"completion_tokens":-1\}\}\n\n/);
    assert.equal(streamData(res.text)[0].choices[0].delta.content, 'mail [REDACTED:email]');
    assert.match(res.text, /data: \[DONE\]\n\n$/);
    await gw.waitForLog(/usage has a token count that is not an integer from 0 to 2\^63 - 1; the response's tokens are counted as unknown and estimated/);
  });
});

describe('response filters: logprobs of a masked text', () => {
  it('sets the logprobs of a masked choice to null', async () => {
    const res = await post(gw, 'logprobs');
    assert.equal(res.status, 200);
    const choice = JSON.parse(res.text).choices[0];
    assert.equal(choice.message.content, 'mail [REDACTED:email]');
    assert.equal(choice.logprobs, null);
  });

  it('sets the logprobs of the changed events of a stream to null', async () => {
    const res = await post(gw, 'logprobs', { stream: true });
    assert.equal(res.status, 200);
    const chunks = streamData(res.text);
    const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
    const tokenText = chunks.map((c) => (c.choices[0].logprobs?.content ?? []).map((t) => t.token).join('')).join('');
    assert.equal(text, 'mail [REDACTED:email]');
    assert.equal(tokenText, 'mail ', 'the tokens of the address reached the client');
    assert.match(res.text, /data: \[DONE\]\n\n$/);
  });
});

describe('stream filters: error events', () => {
  it('masks the message of an error event after content', async () => {
    const res = await post(gw, 'error-event', { stream: true });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const events = streamData(res.text);
    assert.equal(events.at(-1).error.message, 'bad [REDACTED:email]');
  });

  it('passes an Anthropic error event on with its type', async () => {
    const res = await post(gw, 'anthropic-error-event', { stream: true, path: '/v1/messages', headers: { 'x-anthropic': '1' } });
    assert.equal(res.status, 200);
    const last = streamData(res.text).at(-1);
    assert.equal(last.error.type, 'overloaded_error');
    assert.equal(last.error.message, 'Overloaded');
    assert.match(res.text, /event: error\n/);
  });

  it('masks the message of an Anthropic error event', async () => {
    const res = await post(gw, 'anthropic-error-event-address', { stream: true, path: '/v1/messages', headers: { 'x-anthropic': '1' } });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.equal(streamData(res.text).at(-1).error.message, 'bad [REDACTED:email]');
  });
});

describe('response filters: escapes inside tool call arguments', () => {
  it('checks the arguments as the client decodes them', () => {
    const args = JSON.parse(BODIES['arguments-escaped']).choices[0].message.tool_calls[0].function.arguments;
    assert.equal(args, '{"to":"jane\\u0040example.com"}');
    assert.equal(JSON.parse(args).to, 'jane@example.com');
  });

  /* Each value is read decoded and a mask writes it again, so the
   * address behind an escape is masked as one written out is. */
  const MASKED_ARGS = {
    'arguments-escaped': '{"to":"[REDACTED:email]"}',
    'arguments-both': '{"cc":"[REDACTED:email]","to":"[REDACTED:email]"}',
    'function-call-escaped': '{"to":"[REDACTED:email]"}',
  };
  for (const [shape, masked] of Object.entries(MASKED_ARGS)) {
    it(`masks a non-streamed answer with ${shape}`, async () => {
      const res = await post(gw, shape);
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'an address reached the client');
      const message = JSON.parse(res.text).choices[0].message;
      const args = message.tool_calls?.[0].function.arguments ?? message.function_call.arguments;
      assert.equal(args, masked);
    });
  }

  it('logs the match of the decoded form as a mask', async () => {
    const res = await post(gw, 'arguments-escaped');
    const id = res.headers['x-request-id'];
    const line = await gw.waitForAccess((l) => l.request_id === id, { message: `access line of ${id}` });
    assert.deepEqual(line.filters, [{ filter: 'pii', rule: 'email', action: 'mask', side: 'response', count: 1 }]);
  });

  it('sends arguments with escapes and no match unchanged', async () => {
    const res = await post(gw, 'arguments-escaped-clean');
    assert.equal(res.text, BODIES['arguments-escaped-clean']);
  });
});

describe('response filters: bodies judged by their bytes', () => {
  for (const shape of ['content-escaped', 'content-fullwidth']) {
    it(`masks a non-streamed answer with ${shape}`, async () => {
      const res = await post(gw, shape);
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.text).choices[0].message.content, 'mail [REDACTED:email]');
    });
  }

  it('sends an answer with escapes and no @ unchanged', async () => {
    const res = await post(gw, 'content-clean-escapes');
    assert.equal(res.text, BODIES['content-clean-escapes']);
  });
});

describe('stream filters: escapes inside tool call arguments', () => {
  it('ends a stream whose arguments hide an address behind an escape, cut anywhere', async () => {
    for (let cut = 1; cut < HIDDEN.length; cut++) {
      const res = await post(gw, 'arguments-escaped', { stream: true, headers: { 'x-cut': String(cut) } });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, `cut at ${cut}: the address reached the client`);
      const last = streamData(res.text).at(-1);
      assert.equal(last.choices[0].finish_reason, 'content_filter', `cut at ${cut}`);
    }
  });

  it('sends arguments with escapes and no match whole, cut anywhere', async () => {
    for (let cut = 1; cut < CLEAN.length; cut++) {
      const res = await post(gw, 'arguments-escaped-clean', { stream: true, headers: { 'x-cut': String(cut) } });
      const args = streamData(res.text).map((c) => c.choices[0].delta.tool_calls?.[0].function.arguments ?? '').join('');
      assert.equal(args, CLEAN, `cut at ${cut}`);
      assert.equal(streamData(res.text).at(-1).choices[0].finish_reason, 'tool_calls');
    }
  });

  it('ends an Anthropic stream whose tool input hides an address, cut anywhere', async () => {
    for (let cut = 1; cut < HIDDEN.length; cut++) {
      const res = await post(gw, 'input-escaped', { stream: true, path: '/v1/messages', headers: { 'x-cut': String(cut), 'x-anthropic': '1' } });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, `cut at ${cut}: the address reached the client`);
      assert.match(res.text, /content_filter/, `cut at ${cut}`);
    }
  });
});

describe('stream filters: Anthropic places a client reads', () => {
  for (const shape of ['message-start-content', 'tool-use-input', 'citations-delta']) {
    it(`masks an address in ${shape}`, async () => {
      const res = await post(gw, shape, { stream: true, path: '/v1/messages', headers: { 'x-anthropic': '1' } });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      assert.match(res.text, /\[REDACTED:email\]/);
      assert.match(res.text, /event: message_stop/);
    });
  }

  it('ends a stream that mixes chunks with message_start text', async () => {
    gw.expectErrors(/stream filters failed \(the stream mixes OpenAI chunks and Anthropic/);
    const res = await post(gw, 'message-start-after-chunk', { stream: true });
    assert.doesNotMatch(res.text, /mple\.com/, 'the rest of the address reached the client');
  });

  it('ends a stream with too deep tool input', async () => {
    gw.expectErrors(/stream filters failed \(an event has texts nested deeper/);
    const res = await post(gw, 'tool-use-input-deep', { stream: true, path: '/v1/messages', headers: { 'x-anthropic': '1' } });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.match(res.text, /event: error/);
  });

  it('masks an address in the citations of a non-streamed message', async () => {
    const res = await post(gw, 'citations', { path: '/v1/messages' });
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.text).content[0].citations[0].cited_text, 'mail [REDACTED:email]');
  });
});

describe('stream filters: choices without an index', () => {
  it('ends a stream whose chunk has choices without an index that openai-node joins', async () => {
    gw.expectErrors(/stream filters failed \(an event has a choice without an "index"/);
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${gw.port}/v1`, apiKey: 'unused', maxRetries: 0,
      defaultHeaders: { 'x-shape': 'index-missing-beside', 'x-stream': '1' } });
    const stream = client.chat.completions.stream({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    let seen = '';
    await assert.rejects(async () => {
      for await (const c of stream) seen += JSON.stringify(c);
      seen += JSON.stringify(await stream.finalChatCompletion());
    });
    assert.doesNotMatch(seen, /example\.com/, 'the address reached the client');
  });

  it('ends a stream that mixes choices with and without an index', async () => {
    gw.expectErrors(/stream filters failed \(an event has a choice without an "index"/);
    const res = await post(gw, 'index-missing-mixed', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.equal(streamData(res.text).at(-1).error.code, 'internal_error');
  });

  it('masks an address across chunks of one choice without an index', async () => {
    const res = await post(gw, 'index-missing-alone', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.equal(streamData(res.text).map((c) => c.choices[0]?.delta.content ?? '').join(''), 'mail [REDACTED:email]');
  });
});

describe('stream filters: escaped arguments and hold_timeout', () => {
  let timed;

  before(async () => {
    timed = await startGateway({
      backends: { up: { url: `http://127.0.0.1:${upstream.address().port}` } },
      filters: {
        pii: FILTERS.pii,
        waits: { type: 'regex', apply_to: ['response'], action: 'mask', hold_timeout: '50ms', rules: [{ name: 'pair', pattern: 'jane.{0,60}zzz' }] },
      },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['up'], filters: ['waits', 'pii'] }],
    });
  });
  afterEach(() => timed?.checkErrors());

  it('holds an escaped string that hold_timeout let go of before it was decoded', async () => {
    const res = await post(timed, 'arguments-escaped-paused', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.equal(streamData(res.text).at(-1).choices[0].finish_reason, 'content_filter');
  });
});
