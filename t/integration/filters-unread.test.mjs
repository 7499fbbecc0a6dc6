// Content filters on texts that they once left unscreened. These are the
// reasoning, audio transcript, reasoning details and annotations of a chat
// message, and streamed audio transcripts. So are the server tool results
// in an Anthropic stream's content blocks, and tool outputs (a Responses
// API shell_call_output, Anthropic's text editor results). So are an image
// generation call's revised prompt, an error's param and an error given as
// a string. A scripted upstream sends the shape the x-shape header names,
// with an address in such a place. The model names the route: "mask"
// masks the address, "block" blocks on it, on both sides.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { eventData, request, splitEvents, startGateway, stopAll } from './lib/harness.mjs';

const ADDRESS = 'jane@example.com';
const MASKED = '[REDACTED:email]';

const RULES = { type: 'regex', apply_to: ['request', 'response'], presets: ['email'] };
const FILTERS = {
  mask: { ...RULES, action: 'mask' },
  block: { ...RULES, action: 'block' },
};

const answer = (message) => JSON.stringify({
  id: 'c', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: 'stop' }],
});
const chunk = (delta, finish = null) => JSON.stringify({
  id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
  choices: [{ index: 0, delta, finish_reason: finish }],
});

/* Chat messages by shape, and where the masked text must be. */
const CHAT = {
  'reasoning-content': {
    message: { content: 'x', reasoning_content: `think ${ADDRESS}` },
    masked: (m) => m.reasoning_content,
  },
  reasoning: {
    message: { content: 'x', reasoning: `think ${ADDRESS}` },
    masked: (m) => m.reasoning,
  },
  'reasoning-object': {
    message: { content: 'x', reasoning: { text: `think ${ADDRESS}` } },
    masked: (m) => m.reasoning.text,
  },
  'reasoning-details': {
    message: {
      content: 'x', reasoning: 'think',
      reasoning_details: [{ type: 'reasoning.text', text: `think ${ADDRESS}`, signature: 's', format: 'f' }],
    },
    masked: (m) => m.reasoning_details[0].text,
  },
  'reasoning-summary': {
    message: { content: 'x', reasoning_details: [{ type: 'reasoning.summary', summary: `sum ${ADDRESS}` }] },
    masked: (m) => m.reasoning_details[0].summary,
  },
  transcript: {
    message: { content: null, audio: { id: 'a1', data: 'UklGRg==', expires_at: 1, transcript: `mail ${ADDRESS}` } },
    masked: (m) => m.audio.transcript,
  },
  // The content and the transcript of its audio say the same.
  'content-and-transcript': {
    message: { content: `mail ${ADDRESS}`, audio: { id: 'a1', data: 'UklGRg==', expires_at: 1, transcript: `mail ${ADDRESS}` } },
    masked: (m) => m.audio.transcript,
  },
  annotation: {
    message: {
      content: 'see [1]',
      annotations: [{ type: 'url_citation', url_citation: { start_index: 4, end_index: 7, url: 'https://example.org/a', title: `by ${ADDRESS}` } }],
    },
    masked: (m) => m.annotations[0].url_citation.title,
  },
};

/* Anthropic blocks by shape: where the masked text must be in the block. */
const BLOCKS = {
  'bash-result': {
    block: {
      type: 'bash_code_execution_tool_result', tool_use_id: 's1',
      content: { type: 'bash_code_execution_result', stdout: ADDRESS, stderr: '', return_code: 0, content: [] },
    },
    masked: (b) => b.content.stdout,
  },
  'web-fetch-result': {
    block: {
      type: 'web_fetch_tool_result', tool_use_id: 's1',
      content: {
        type: 'web_fetch_result', url: 'https://example.org/a',
        content: { type: 'document', title: 'page', source: { type: 'text', media_type: 'text/plain', data: `mail ${ADDRESS}` } },
      },
    },
    masked: (b) => b.content.content.source.data,
  },
  'text-editor-view': {
    block: {
      type: 'text_editor_code_execution_tool_result', tool_use_id: 's1',
      content: { type: 'text_editor_code_execution_view_result', file_type: 'text', content: `mail ${ADDRESS}`, num_lines: 1 },
    },
    masked: (b) => b.content.content,
  },
};

const anthropicMessage = (block) => JSON.stringify({
  id: 'msg', type: 'message', role: 'assistant', model: 'm', stop_reason: 'end_turn',
  content: [{ type: 'text', text: 'ok' }, block],
  usage: { input_tokens: 1, output_tokens: 1 },
});

/* An Anthropic stream with a text block, then the given block whole in
 * its content_block_start, as Anthropic streams a server tool's result. */
function anthropicStream(block) {
  const event = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  return [
    event('message_start', { message: { id: 'msg', type: 'message', role: 'assistant', content: [], model: 'm' } }),
    event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'ok' } }),
    event('content_block_stop', { index: 0 }),
    event('content_block_start', { index: 1, content_block: block }),
    event('content_block_stop', { index: 1 }),
    event('message_delta', { delta: { stop_reason: 'end_turn' } }),
    event('message_stop', {}),
  ];
}

/* Responses API output items with the address in a tool's text. */
const imageCall = { id: 'ig_1', type: 'image_generation_call', status: 'completed', result: 'iVBORw0K', revised_prompt: `a card for ${ADDRESS}` };
const responseBody = (output) => ({
  id: 'resp_1', object: 'response', created_at: 1, status: 'completed', model: 'm', output,
  usage: { input_tokens: 1, output_tokens: 2, total_tokens: 3 },
});
function responsesStream() {
  let n = 0;
  const event = (data) => `event: ${data.type}\ndata: ${JSON.stringify({ ...data, sequence_number: n++ })}\n\n`;
  const pending = { ...imageCall, status: 'generating', revised_prompt: undefined };
  return [
    event({ type: 'response.created', response: { ...responseBody([]), status: 'in_progress' } }),
    event({ type: 'response.output_item.added', output_index: 0, item: pending }),
    event({ type: 'response.output_item.done', output_index: 0, item: imageCall }),
    event({ type: 'response.completed', response: responseBody([imageCall]) }),
  ];
}

/* Upstream answers by shape: [status, body] or the events of a stream. */
const SHAPES = {};
for (const [shape, { message }] of Object.entries(CHAT)) SHAPES[`chat-${shape}`] = [200, answer(message)];
for (const [shape, { block }] of Object.entries(BLOCKS)) {
  SHAPES[`anthropic-${shape}`] = [200, anthropicMessage(block)];
  SHAPES[`anthropic-stream-${shape}`] = anthropicStream(block);
}
Object.assign(SHAPES, {
  'transcript-stream': [
    `data: ${chunk({ role: 'assistant', audio: { id: 'a1', transcript: 'mail jane@exa' } })}\n\n`,
    `data: ${chunk({ audio: { data: 'UklGRg==', transcript: 'mple.com' } })}\n\n`,
    `data: ${chunk({ audio: { expires_at: 1 } }, 'stop')}\n\n`,
    'data: [DONE]\n\n',
  ],
  'image-generation': [200, JSON.stringify(responseBody([imageCall]))],
  'image-generation-stream': responsesStream(),
  'error-param': [400, JSON.stringify({ error: { message: 'invalid value', type: 'invalid_request_error', param: ADDRESS, code: null } })],
  'error-string': [400, JSON.stringify({ error: `no account for ${ADDRESS}` })],
});

async function startUpstream() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const shape = SHAPES[req.headers['x-shape']];

      if (typeof shape[0] === 'string') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(shape.join(''));
        return;
      }
      res.writeHead(shape[0], { 'content-type': 'application/json' });
      res.end(shape[1]);
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
    routes: ['mask', 'block'].map((name) => ({ name, match: { model: name }, backends: ['up'], filters: [name] })),
  });
});
afterEach(() => gw?.checkErrors());
after(async () => {
  await stopAll();
  upstream?.close();
});

/* POST body (with the route's model) to path, the upstream answering with
 * shape. */
function post(route, shape, { path = '/v1/chat/completions', body = {} } = {}) {
  const json = { model: route, messages: [{ role: 'user', content: 'hi' }], max_tokens: 10, ...body };
  return request({
    port: gw.port, method: 'POST', path, body: JSON.stringify(json),
    headers: { 'content-type': 'application/json', 'x-shape': shape },
  });
}

/* The JSON data of each event of an SSE body, [DONE] left out. */
function streamData(text) {
  return splitEvents(text).events.map(eventData).filter((d) => d && d !== '[DONE]').map((d) => JSON.parse(d));
}

describe('a chat message: every text a filter reads', () => {
  for (const [shape, { masked }] of Object.entries(CHAT)) {
    it(`masks the address of ${shape} in place`, async () => {
      const res = await post('mask', `chat-${shape}`);
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      assert.match(masked(JSON.parse(res.text).choices[0].message), new RegExp(MASKED.replace(/[[\]]/g, '\\$&')));
    });

    it(`removes every text read from the choice when ${shape} blocks`, async () => {
      const res = await post('block', `chat-${shape}`);
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const choice = JSON.parse(res.text).choices[0];
      assert.equal(choice.finish_reason, 'content_filter');
      assert.equal(choice.message.content, null);
      for (const member of ['reasoning', 'reasoning_content', 'reasoning_details', 'audio', 'annotations']) {
        assert.equal(choice.message[member], undefined, `${member} was kept`);
      }
    });
  }

  it('keeps the url of a cited page, which no mask rewrites', async () => {
    const res = await post('mask', 'chat-annotation');
    const citation = JSON.parse(res.text).choices[0].message.annotations[0].url_citation;
    assert.equal(citation.url, 'https://example.org/a');
  });
});

describe('a chat stream: the audio transcript', () => {
  it('masks an address split across transcript deltas', async () => {
    const res = await post('mask', 'transcript-stream', { body: { stream: true } });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const text = streamData(res.text).map((c) => c.choices[0].delta.audio?.transcript ?? '').join('');
    assert.equal(text, `mail ${MASKED}`);
    assert.match(res.text, /data: \[DONE\]\n\n$/);
  });

  it('blocks on it', async () => {
    const res = await post('block', 'transcript-stream', { body: { stream: true } });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.match(res.text, /"finish_reason":"content_filter"/);
  });
});

describe('Anthropic server tool results, in bodies and streams', () => {
  for (const [shape, { masked }] of Object.entries(BLOCKS)) {
    it(`masks ${shape} of a message in place`, async () => {
      const res = await post('mask', `anthropic-${shape}`, { path: '/v1/messages' });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      assert.match(masked(JSON.parse(res.text).content[1]), /\[REDACTED:email\]/);
    });

    it(`blocks ${shape} of a message`, async () => {
      const res = await post('block', `anthropic-${shape}`, { path: '/v1/messages' });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      assert.equal(JSON.parse(res.text).stop_reason, 'refusal');
    });

    it(`masks ${shape} of a content_block_start in place`, async () => {
      const res = await post('mask', `anthropic-stream-${shape}`, { path: '/v1/messages', body: { stream: true } });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      const start = streamData(res.text).find((e) => e.type === 'content_block_start' && e.index === 1);
      assert.match(masked(start.content_block), /\[REDACTED:email\]/);
      assert.match(res.text, /event: message_stop/);
    });

    it(`blocks ${shape} of a content_block_start`, async () => {
      const res = await post('block', `anthropic-stream-${shape}`, { path: '/v1/messages', body: { stream: true } });
      assert.equal(res.status, 200);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      assert.match(res.text, /"code":"content_filter"/);
      assert.doesNotMatch(res.text, /event: message_stop/);
    });
  }
});

describe('tool outputs in requests', () => {
  it('blocks a shell_call_output whose stdout has the address', async () => {
    const input = [
      { type: 'shell_call', call_id: 'c1', action: { commands: ['cat notes'] }, status: 'completed' },
      { type: 'shell_call_output', call_id: 'c1', output: [{ stdout: `mail ${ADDRESS}`, stderr: '', outcome: { type: 'exit', exit_code: 0 } }] },
    ];
    const res = await post('block', 'image-generation', { path: '/v1/responses', body: { input, messages: undefined } });
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(res.text).error.code, 'content_filter');
  });

  it('blocks a shell_call_output whose stderr has the address', async () => {
    const input = [{ type: 'shell_call_output', call_id: 'c1', output: [{ stdout: '', stderr: `no ${ADDRESS}` }] }];
    const res = await post('block', 'image-generation', { path: '/v1/responses', body: { input, messages: undefined } });
    assert.equal(res.status, 400);
  });

  it('blocks a text editor result an assistant turn sends back', async () => {
    const messages = [
      { role: 'user', content: 'read it' },
      { role: 'assistant', content: [BLOCKS['text-editor-view'].block] },
      { role: 'user', content: 'go on' },
    ];
    const res = await post('block', 'anthropic-text-editor-view', { path: '/v1/messages', body: { messages } });
    assert.equal(res.status, 400);
  });
});

describe('an image generation call: its revised prompt', () => {
  it('masks it in a response body', async () => {
    const res = await post('mask', 'image-generation', { path: '/v1/responses' });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    assert.equal(JSON.parse(res.text).output[0].revised_prompt, `a card for ${MASKED}`);
  });

  it('masks it in a stream', async () => {
    const res = await post('mask', 'image-generation-stream', { path: '/v1/responses', body: { stream: true } });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
    const done = streamData(res.text).find((e) => e.type === 'response.output_item.done');
    assert.equal(done.item.revised_prompt, `a card for ${MASKED}`);
  });
});

describe('upstream errors: param, and an error given as a string', () => {
  for (const shape of ['error-param', 'error-string']) {
    it(`masks ${shape}`, async () => {
      const res = await post('mask', shape);
      assert.equal(res.status, 400);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      assert.match(res.text, /\[REDACTED:email\]/);
    });

    it(`withholds ${shape} on a block`, async () => {
      const res = await post('block', shape);
      assert.equal(res.status, 400);
      assert.doesNotMatch(res.text, /example\.com/, 'the address reached the client');
      assert.match(res.text, /withheld by a content filter/);
    });
  }
});
