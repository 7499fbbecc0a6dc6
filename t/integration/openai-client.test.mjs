// The official openai npm client pointed at the gateway gets the same
// results as when pointed at the mock directly.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import OpenAI from 'openai';

import { curl, curlPost, stopAll, mockBackend, startGateway, startMock } from './lib/harness.mjs';
import { normalizeVolatile } from './lib/checks.mjs';

const messages = [{ role: 'user', content: 'Hello!' }];

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};

/* A deep copy without the per-response id and creation time. */
function normalized(value) {
  return JSON.parse(normalizeVolatile(JSON.stringify(value)));
}

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream)
    chunks.push(chunk);
  return chunks;
}

function contentOf(chunks) {
  return chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
}

/* Assemble streamed tool-call deltas into whole calls, by index. */
function assembleToolCalls(chunks) {
  const calls = [];
  for (const chunk of chunks) {
    for (const delta of chunk.choices[0]?.delta?.tool_calls ?? []) {
      const call = (calls[delta.index] ??= { id: '', type: '', function: { name: '', arguments: '' } });
      call.id += delta.id ?? '';
      call.type += delta.type ?? '';
      call.function.name += delta.function?.name ?? '';
      call.function.arguments += delta.function?.arguments ?? '';
    }
  }
  return calls;
}

/* Offsets inside UTF-8 sequences (or inside CRLF) of a raw SSE body, at most
 * 40, spread over the body. */
function awkwardOffsets(body, crlf) {
  const all = [];
  for (let i = 1; i < body.length; i++) {
    const hit = crlf ? body[i - 1] === 0x0d && body[i] === 0x0a : (body[i] & 0xc0) === 0x80;
    if (hit)
      all.push(i);
  }
  const step = Math.max(1, Math.ceil(all.length / 40));
  return all.filter((_, i) => i % step === 0);
}

describe('openai client through the gateway', () => {
  let mock;
  let gw;
  let viaGateway;
  let direct;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [
        { name: 'chat-4o', match: { path: '/v1/chat/completions', model: 'gpt-4o' }, backends: ['mock'] },
        { name: 'chat-mini', match: { path: '/v1/chat/completions', model: 'gpt-4o-mini' }, backends: ['mock'] },
        { name: 'chat-rest', match: { path: '/v1/chat/completions', model: 'gpt-*' }, backends: ['mock'] },
        { name: 'completions', match: { path: '/v1/completions', model: 'gpt-3.5-turbo-instruct' }, backends: ['mock'] },
        { name: 'embeddings', match: { path: '/v1/embeddings', model: 'text-embedding-3-small' }, backends: ['mock'] },
      ],
    });
    viaGateway = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'sk-anything', maxRetries: 0 });
    direct = new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: 'sk-anything', maxRetries: 0 });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('completes a chat', async () => {
    const request = { model: 'gpt-4o', messages };
    const { data, response } = await viaGateway.chat.completions.create(request).withResponse();
    const expected = await direct.chat.completions.create(request);

    assert.equal(data.object, 'chat.completion');
    assert.equal(typeof data.choices[0].message.content, 'string');
    assert.ok(data.choices[0].message.content.length > 0, 'empty content');
    assert.deepEqual(normalized(data), normalized(expected));
    assert.match(response.headers.get('x-request-id') ?? '', /^[0-9a-f]{32}$/);
  });

  it('streams a chat', async () => {
    const request = { model: 'gpt-4o', messages, stream: true, stream_options: { include_usage: true } };
    const chunks = await collect(await viaGateway.chat.completions.create(request));
    const expected = await collect(await direct.chat.completions.create(request));

    assert.ok(chunks.length > 2, `only ${chunks.length} chunks`);
    assert.ok(contentOf(chunks).length > 0, 'no content deltas');
    assert.equal(contentOf(chunks), contentOf(expected));
    assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === 'stop'), 'no finish_reason "stop"');
    assert.ok(chunks.at(-1).usage, 'no usage chunk at the end');
    assert.deepEqual(normalized(chunks), normalized(expected));
  });

  it('streams tool calls', async () => {
    const request = { model: 'gpt-4o', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weatherTool] };
    const chunks = await collect(await viaGateway.chat.completions.create({ ...request, stream: true }));
    const streamedDirect = await collect(await direct.chat.completions.create({ ...request, stream: true }));
    const whole = await direct.chat.completions.create(request);

    const calls = assembleToolCalls(chunks);
    assert.ok(calls.length >= 1, 'no tool call in the stream');
    assert.deepEqual(normalized(calls), normalized(assembleToolCalls(streamedDirect)));

    const expected = whole.choices[0].message.tool_calls;
    assert.equal(calls.length, expected.length);
    for (const [i, call] of calls.entries()) {
      assert.equal(call.type, 'function');
      assert.equal(call.function.name, expected[i].function.name);
      assert.deepEqual(JSON.parse(call.function.arguments), JSON.parse(expected[i].function.arguments));
    }
    assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === 'tool_calls'), 'no finish_reason "tool_calls"');
  });

  for (const [what, option] of [['UTF-8 sequences', 'unicode=1'], ['CRLF line ends', 'unicode=1;crlf=1']]) {
    it(`reassembles a stream split inside ${what}`, async () => {
      const request = { model: 'gpt-4o', messages, stream: true };
      const raw = await curl(curlPost(`${mock.url}/v1/chat/completions`, request, [`x-mock: events=10;${option}`]));
      const offsets = awkwardOffsets(raw.body, option.includes('crlf'));
      assert.ok(offsets.length >= 3, 'the mock body has too few awkward offsets');
      const headers = { 'x-mock': `events=10;${option};split=${offsets.join(',')}` };

      const chunks = await collect(await viaGateway.chat.completions.create(request, { headers }));
      const expected = await collect(await direct.chat.completions.create(request, { headers }));
      const content = contentOf(chunks);
      assert.ok(/[^\x00-\x7f]/.test(content), `no multi-byte characters in ${JSON.stringify(content)}`);
      assert.ok(!content.includes('\ufffd'), 'a replacement character: a UTF-8 sequence was broken');
      assert.equal(content, contentOf(expected));
      assert.deepEqual(normalized(chunks), normalized(expected));
    });
  }

  it('completes a prompt', async () => {
    const request = { model: 'gpt-3.5-turbo-instruct', prompt: 'Say hi' };
    const data = await viaGateway.completions.create(request);
    const expected = await direct.completions.create(request);
    assert.equal(data.object, 'text_completion');
    assert.ok(data.choices[0].text.length > 0, 'empty completion');
    assert.deepEqual(normalized(data), normalized(expected));
  });

  it('streams a completion', async () => {
    const request = { model: 'gpt-3.5-turbo-instruct', prompt: 'Say hi', stream: true };
    const chunks = await collect(await viaGateway.completions.create(request));
    const expected = await collect(await direct.completions.create(request));
    const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
    assert.ok(text.length > 0, 'no text in the stream');
    assert.deepEqual(normalized(chunks), normalized(expected));
  });

  it('creates embeddings in the default base64 encoding', async () => {
    const request = { model: 'text-embedding-3-small', input: ['first text', 'second text'] };
    const data = await viaGateway.embeddings.create(request);
    const expected = await direct.embeddings.create(request);
    assert.equal(data.data.length, 2);
    for (const item of data.data) {
      assert.ok(item.embedding.length > 0, 'empty vector');
      assert.ok(Array.from(item.embedding).every(Number.isFinite), 'a component is not a number');
    }
    assert.deepEqual(data.data.map((d) => Array.from(d.embedding)), expected.data.map((d) => Array.from(d.embedding)));
    const seen = await mock.lastRequest();
    assert.equal(JSON.parse(seen.body).encoding_format, 'base64', 'the client did not ask for base64');
  });

  it('creates embeddings as floats', async () => {
    const request = { model: 'text-embedding-3-small', input: 'one text', encoding_format: 'float' };
    const data = await viaGateway.embeddings.create(request);
    const expected = await direct.embeddings.create(request);
    assert.equal(data.data.length, 1);
    assert.deepEqual(normalized(data), normalized(expected));
  });

  it('lists the route models', async () => {
    const ids = [];
    for await (const model of viaGateway.models.list())
      ids.push(model.id);
    assert.deepEqual(ids, ['gpt-4o', 'gpt-4o-mini', 'gpt-3.5-turbo-instruct', 'text-embedding-3-small']);
  });

  it('raises NotFoundError for an unrouted model', async () => {
    await assert.rejects(viaGateway.chat.completions.create({ model: 'claude-3', messages }), (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'route_not_found');
      assert.equal(err.type, 'invalid_request_error');
      return true;
    });
  });

  it('raises RateLimitError for an upstream 429', async () => {
    await assert.rejects(
      viaGateway.chat.completions.create({ model: 'gpt-4o', messages }, { headers: { 'x-mock': 'status=429' } }),
      (err) => {
        assert.ok(err instanceof OpenAI.RateLimitError, `${err.constructor.name}: ${err.message}`);
        assert.equal(err.status, 429);
        return true;
      });
  });
});
