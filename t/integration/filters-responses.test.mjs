// Response-side content filters on the OpenAI Responses API
// (POST /v1/responses). A scripted upstream responds with the response
// object, or the stream events, that the x-shape header names, each with
// an address in a place the model writes. A mask filter must rewrite it,
// a block filter must stop it, and neither may let it reach the client.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import OpenAI from 'openai';

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
const created = { type: 'response.created', response: { id: 'resp_1', object: 'response', status: 'in_progress', output: [] } };
const completed = (...output) => ({ type: 'response.completed', response: JSON.parse(response(output)) });
const at = { item_id: 'msg_1', output_index: 0, content_index: 0 };

/* The events of a message whose one part streams by deltas, in the order
 * OpenAI sends them: the part starts empty, and the .done events, the
 * item's and the response's end repeat it whole. */
function messageEvents(deltas, { kind = 'output_text', annotations = [] } = {}) {
  const text = deltas.join('');
  const part = (t) => (kind === 'refusal' ? { type: 'refusal', refusal: t } : outputText(t, annotations));
  // Each delta's token repeats its text, as when the request sets logprobs.
  const logprobs = (token) => [{ token, logprob: -0.5, bytes: [...Buffer.from(token)], top_logprobs: [] }];
  const done = kind === 'refusal' ? { refusal: text } : { text, logprobs: logprobs(text) };
  return [
    created,
    { type: 'response.output_item.added', output_index: 0, item: message() },
    { type: 'response.content_part.added', ...at, part: part('') },
    ...deltas.map((delta) => ({ type: `response.${kind}.delta`, ...at, delta, logprobs: logprobs(delta) })),
    { type: `response.${kind}.done`, ...at, ...done },
    { type: 'response.content_part.done', ...at, part: part(text) },
    { type: 'response.output_item.done', output_index: 0, item: message(part(text)) },
    completed(message(part(text))),
  ];
}

const call = (args) => ({
  id: 'fc_1', type: 'function_call', call_id: 'call_1', name: 'send', status: 'completed', arguments: args,
});
function callEvents(deltas) {
  const args = deltas.join('');
  return [
    created,
    { type: 'response.output_item.added', output_index: 0, item: call('') },
    ...deltas.map((delta) => ({ type: 'response.function_call_arguments.delta', item_id: 'fc_1', output_index: 0, delta })),
    { type: 'response.function_call_arguments.done', item_id: 'fc_1', output_index: 0, arguments: args },
    { type: 'response.output_item.done', output_index: 0, item: call(args) },
    completed(call(args)),
  ];
}

/* The events of an item, built by item(text), whose free text streams in
 * `response.${prefix}.delta` events and comes whole in the .done event's
 * doneMember: a custom tool call's input or a code interpreter's code. */
function freeTextEvents(prefix, doneMember, item, deltas) {
  const text = deltas.join('');
  const where = { item_id: item('').id, output_index: 0 };
  return [
    created,
    { type: 'response.output_item.added', output_index: 0, item: item('') },
    ...deltas.map((delta) => ({ type: `response.${prefix}.delta`, ...where, delta })),
    { type: `response.${prefix}.done`, ...where, [doneMember]: text },
    { type: 'response.output_item.done', output_index: 0, item: item(text) },
    completed(item(text)),
  ];
}
const customCall = (input) => ({ id: 'ct_1', type: 'custom_tool_call', call_id: 'call_1', name: 'run', input });
const codeCall = (code) => ({
  id: 'ci_1', type: 'code_interpreter_call', status: 'completed', container_id: 'cntr_1', code, outputs: [],
});

const reasoning = (summary) => ({ id: 'rs_1', type: 'reasoning', summary });
function summaryEvents(deltas) {
  const text = deltas.join('');
  const where = { item_id: 'rs_1', output_index: 0, summary_index: 0 };
  const part = (t) => ({ type: 'summary_text', text: t });
  return [
    created,
    { type: 'response.output_item.added', output_index: 0, item: reasoning([]) },
    { type: 'response.reasoning_summary_part.added', ...where, part: part('') },
    ...deltas.map((delta) => ({ type: 'response.reasoning_summary_text.delta', ...where, delta })),
    { type: 'response.reasoning_summary_text.done', ...where, text },
    { type: 'response.reasoning_summary_part.done', ...where, part: part(text) },
    { type: 'response.output_item.done', output_index: 0, item: reasoning([part(text)]) },
    completed(reasoning([part(text)])),
  ];
}

const STREAMS = {
  'output-text': messageEvents(['Hello, ', 'mail jane@exa', 'mple.com', '.']),
  // A stream that ends after two deltas, without response.completed.
  unfinished: messageEvents(['Hello, ', 'see you']).slice(0, 5),
  refusal: messageEvents(['no, jane@', 'example.com'], { kind: 'refusal' }),
  'function-call': callEvents(['{"to":"jane@exa', 'mple.com","n":1}']),
  'reasoning-summary': summaryEvents(['mail jane', '@example.com']),
  // A server that streams no deltas: the item and the response repeat the
  // text whole, with a cited page's title.
  'whole-only': [
    created,
    { type: 'response.output_item.done', output_index: 0, item: message(outputText(`mail ${ADDRESS}`, [{ type: 'url_citation', title: `by ${ADDRESS}` }])) },
    completed(message(outputText(`mail ${ADDRESS}`))),
  ],
  // A .done event whose text is not that of the deltas.
  'repeat-differs': [
    created,
    { type: 'response.output_text.delta', ...at, delta: 'Hello' },
    { type: 'response.output_text.done', ...at, text: `Hello, ${ADDRESS}` },
    completed(message(outputText(`Hello, ${ADDRESS}`))),
  ],
  'custom-tool-input': freeTextEvents('custom_tool_call_input', 'input', customCall, ['send("jane@exa', 'mple.com")']),
  'code-interpreter': freeTextEvents('code_interpreter_call_code', 'code', codeCall, ['to = "jane', '@example.com"']),
  // An audio transcript streams as text the filters do not read.
  'audio-transcript': [
    created,
    { type: 'response.audio.transcript.delta', delta: `mail ${ADDRESS}` },
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
    routes: ['mask', 'block', 'flag', 'unfiltered'].map((name) => ({
      name, match: { path: '/v1/responses', headers: { 'x-filter': name } }, backends: ['up'],
      filters: name === 'unfiltered' ? [] : [name],
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

/* The events of a stream, parsed, by type. */
function streamEvents(text) {
  return splitEvents(text).events.map((e) => ({ name: e.match(/^event: (.*)$/m)?.[1], data: JSON.parse(eventData(e)) }));
}
const byType = (events, type) => events.filter((e) => e.data.type === type).map((e) => e.data);

describe('response filters on a Responses API stream', () => {
  it('mask rewrites an address split across deltas, and each repeat', async () => {
    const { res, access } = await post('mask', 'output-text', { stream: true });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const events = streamEvents(res.text);
    assert.deepEqual(events.map((e) => e.data.type), STREAMS['output-text'].map((e) => e.type));
    assert.deepEqual(events.map((e) => e.name), events.map((e) => e.data.type));
    assert.deepEqual(events.map((e) => e.data.sequence_number), events.map((_, n) => n));

    const streamed = byType(events, 'response.output_text.delta').map((d) => d.delta).join('');
    assert.equal(streamed, 'Hello, mail [REDACTED:email].');
    assert.equal(byType(events, 'response.output_text.done')[0].text, streamed);
    assert.equal(byType(events, 'response.content_part.done')[0].part.text, streamed);
    assert.equal(byType(events, 'response.output_item.done')[0].item.content[0].text, streamed);
    assert.equal(byType(events, 'response.completed')[0].response.output[0].content[0].text, streamed);
    assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['mask', 'email', 'mask']]);
  });

  it('mask empties the logprobs of masked events only', async () => {
    const { res } = await post('mask', 'output-text', { stream: true });
    const deltas = byType(streamEvents(res.text), 'response.output_text.delta');
    assert.deepEqual(deltas.map((d) => d.logprobs.length), [1, 0, 0, 1]);
    assert.equal(deltas[0].logprobs[0].token, 'Hello, ');
    assert.deepEqual(byType(streamEvents(res.text), 'response.output_text.done')[0].logprobs, []);
  });

  it('block ends the stream mid-way with the API error event', async () => {
    const { res, access } = await post('block', 'output-text', { stream: true });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const events = streamEvents(res.text);
    assert.deepEqual(events.map((e) => e.data.type), [
      'response.created', 'response.output_item.added', 'response.content_part.added',
      'response.output_text.delta', 'error',
    ]);
    assert.equal(events[3].data.delta, 'Hello, ');
    const error = events[4];
    assert.equal(error.name, 'error');
    assert.deepEqual(Object.keys(error.data).sort(), ['code', 'message', 'param', 'sequence_number', 'type']);
    assert.equal(error.data.code, 'content_filter');
    assert.equal(error.data.param, null);
    assert.equal(error.data.sequence_number, 4);
    assert.match(error.data.message, /blocked by a content filter/);
    assert.equal(access.reason, 'content_filter');
    assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['block', 'email', 'block']]);
  });

  it('mask rewrites a refusal split across deltas', async () => {
    const { res } = await post('mask', 'refusal', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const events = streamEvents(res.text);
    const streamed = byType(events, 'response.refusal.delta').map((d) => d.delta).join('');
    assert.equal(streamed, 'no, [REDACTED:email]');
    assert.equal(byType(events, 'response.refusal.done')[0].refusal, streamed);
    assert.equal(byType(events, 'response.completed')[0].response.output[0].content[0].refusal, streamed);
  });

  it('mask rewrites function call arguments decoded', async () => {
    const { res, access } = await post('mask', 'function-call', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const events = streamEvents(res.text);
    const streamed = byType(events, 'response.function_call_arguments.delta').map((d) => d.delta).join('');
    assert.deepEqual(JSON.parse(streamed), { to: '[REDACTED:email]', n: 1 });
    assert.equal(byType(events, 'response.function_call_arguments.done')[0].arguments, streamed);
    assert.equal(byType(events, 'response.output_item.done')[0].item.arguments, streamed);
    assert.equal(byType(events, 'response.completed')[0].response.output[0].arguments, streamed);
    assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['mask', 'email', 'mask']]);
  });

  it('mask rewrites a reasoning summary', async () => {
    const { res } = await post('mask', 'reasoning-summary', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const events = streamEvents(res.text);
    const streamed = byType(events, 'response.reasoning_summary_text.delta').map((d) => d.delta).join('');
    assert.equal(streamed, 'mail [REDACTED:email]');
    assert.equal(byType(events, 'response.reasoning_summary_text.done')[0].text, streamed);
    assert.equal(byType(events, 'response.reasoning_summary_part.done')[0].part.text, streamed);
    assert.equal(byType(events, 'response.completed')[0].response.output[0].summary[0].text, streamed);
  });

  const FREE_TEXTS = {
    'custom-tool-input': { prefix: 'custom_tool_call_input', member: 'input', masked: 'send("[REDACTED:email]")' },
    'code-interpreter': { prefix: 'code_interpreter_call_code', member: 'code', masked: 'to = "[REDACTED:email]"' },
  };
  for (const [shape, { prefix, member, masked }] of Object.entries(FREE_TEXTS)) {
    it(`mask rewrites the streamed ${member} of ${shape}`, async () => {
      const { res, access } = await post('mask', shape, { stream: true });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const events = streamEvents(res.text);
      assert.deepEqual(events.map((e) => e.data.type), STREAMS[shape].map((e) => e.type));
      const streamed = byType(events, `response.${prefix}.delta`).map((d) => d.delta).join('');
      assert.equal(streamed, masked);
      assert.equal(byType(events, `response.${prefix}.done`)[0][member], streamed);
      assert.equal(byType(events, 'response.output_item.done')[0].item[member], streamed);
      assert.equal(byType(events, 'response.completed')[0].response.output[0][member], streamed);
      assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['mask', 'email', 'mask']]);
    });

    it(`block ends the stream of ${shape}`, async () => {
      const { res, access } = await post('block', shape, { stream: true });
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const events = streamEvents(res.text);
      assert.equal(events.at(-1).data.type, 'error');
      assert.equal(events.at(-1).data.code, 'content_filter');
      assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['block', 'email', 'block']]);
    });
  }

  it('mask rewrites whole texts that no deltas streamed', async () => {
    const { res, access } = await post('mask', 'whole-only', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const events = streamEvents(res.text);
    const item = byType(events, 'response.output_item.done')[0].item;
    assert.equal(item.content[0].text, 'mail [REDACTED:email]');
    assert.equal(item.content[0].annotations[0].title, 'by [REDACTED:email]');
    assert.equal(byType(events, 'response.completed')[0].response.output[0].content[0].text, 'mail [REDACTED:email]');
    assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['mask', 'email', 'mask']]);
  });

  it('mask ends a stream whose repeat differs from its deltas', async () => {
    gw.expectErrors(/stream filters failed \(a Responses API event repeats a text with a length other/);
    const { res, access } = await post('mask', 'repeat-differs', { stream: true });
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.doesNotMatch(res.text, /response\.completed/);
    assert.equal(access.reason, 'internal_error');
  });

  it('flag records the address and relays the stream whole', async () => {
    const { res, access } = await post('flag', 'output-text', { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.text, STREAMS['output-text'].map(event).join(''));
    assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action]), [['flag', 'email', 'flag']]);
    assert.equal(access.reason, null);
  });

  it('a route without filters relays the stream whole', async () => {
    const { res, access } = await post('unfiltered', 'output-text', { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.text, STREAMS['output-text'].map(event).join(''));
    assert.deepEqual(access.filters ?? [], []);
    assert.equal(access.reason, null);
  });

  for (const filter of ['mask', 'block']) {
    it(`${filter} ends a stream with unread model text`, async () => {
      const { res, access } = await post(filter, 'audio-transcript', { stream: true });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const events = streamEvents(res.text);
      assert.deepEqual(events.map((e) => e.data.type), ['response.created', 'error']);
      assert.equal(events[1].data.code, 'content_filter');
      assert.equal(events[1].data.sequence_number, 1);
      assert.match(events[1].data.message, /cannot screen/);
      assert.equal(access.reason, 'content_filter');
      assert.deepEqual(access.filters.map((f) => [f.filter, f.rule, f.action, f.side]),
        [[filter, null, 'block', 'response']]);
      await gw.waitForLog(/streamed response blocked unread \(the Responses API event response\.audio\.transcript\.delta/);
    });
  }
});

describe('a Responses API stream that ends unfinished', () => {
  // The gateway's error event takes the number after the last event the
  // client received, through the filters or not.
  for (const filter of ['mask', 'unfiltered']) {
    it(`ends with the API's error event after the last one (${filter})`, async () => {
      const { res, access } = await post(filter, 'unfinished', { stream: true });
      assert.equal(res.status, 200);
      const events = streamEvents(res.text);
      assert.deepEqual(events.map((e) => e.data.type), STREAMS.unfinished.map((e) => e.type).concat('error'));
      assert.deepEqual(events.map((e) => e.data.sequence_number), events.map((_, n) => n));
      const error = events.at(-1);
      assert.equal(error.name, 'error');
      assert.deepEqual(Object.keys(error.data).sort(), ['code', 'message', 'param', 'sequence_number', 'type']);
      assert.equal(error.data.code, 'upstream_incomplete');
      assert.equal(access.reason, 'upstream_incomplete');
    });
  }
});

describe('openai client on a screened Responses API stream', () => {
  const client = (filter) => new OpenAI({
    apiKey: 'test', baseURL: `http://127.0.0.1:${gw.port}/v1`, maxRetries: 0,
    defaultHeaders: { 'x-filter': filter, 'x-shape': 'output-text', 'x-stream': '1' },
  });

  it('mask gives the masked text in deltas and the final response', async () => {
    const stream = client('mask').responses.stream({ model: 'm', input: 'hi' });
    let streamed = '';
    for await (const e of stream) {
      if (e.type === 'response.output_text.delta')
        streamed += e.delta;
    }
    const final = await stream.finalResponse();
    assert.equal(streamed, 'Hello, mail [REDACTED:email].');
    assert.equal(final.output_text, streamed);
    assert.equal(final.status, 'completed');
  });

  // openai-node yields the API's error event as an event, and its final
  // response rejects with that event.
  it('block gives the error event and no final response', async () => {
    const stream = client('block').responses.stream({ model: 'm', input: 'hi' });
    const events = [];
    for await (const e of stream)
      events.push(e);
    assert.doesNotMatch(JSON.stringify(events), /example\.com/);
    const last = events.at(-1);
    assert.equal(last.type, 'error');
    assert.equal(last.code, 'content_filter');
    await assert.rejects(stream.finalResponse(), (err) => {
      assert.equal(err.code, 'content_filter');
      assert.match(err.message, /blocked by a content filter/);
      return true;
    });
  });
});
