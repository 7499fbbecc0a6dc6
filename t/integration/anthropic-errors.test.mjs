// The gateway's own errors on Anthropic's Messages API (/v1/messages) have
// that API's shape, {"type": "error", "error": {"type", "message", "code"}},
// with the status and message the OpenAI routes give the same failure, and
// the same access-log line; the OpenAI routes keep their shape.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  curl, curlPost, freePort, mockBackend, startGateway, startMock, stopAll,
} from './lib/harness.mjs';
import { assertError } from './lib/checks.mjs';

const messagesBody = { model: 'claude-x', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] };
const chatBody = { model: 'claude-x', messages: [{ role: 'user', content: 'hello' }] };

/* Assert an Anthropic-shaped error response and return its parsed body. */
function assertAnthropicError(res, status, type, code) {
  const body = res.text.slice(0, 300);
  assert.equal(res.status, status, `status (body: ${body})`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json\b/, 'error content type');
  const parsed = JSON.parse(res.text);
  assert.equal(parsed.type, 'error', `top-level type in ${body}`);
  assert.equal(parsed.error.type, type, `error.type in ${body}`);
  assert.equal(parsed.error.code, code, `error.code in ${body}`);
  assert.equal(typeof parsed.error.message, 'string', `error.message in ${body}`);
  return parsed;
}

describe('gateway errors on the Anthropic Messages API', () => {
  let mock;
  let gw;
  let messagesURL;
  let chatURL;

  before(async () => {
    mock = await startMock();
    const closedPort = await freePort();
    gw = await startGateway({
      limits: { max_body: '4KiB' },
      backends: { mock: mockBackend(mock), dead: { url: `http://127.0.0.1:${closedPort}` } },
      filters: {
        deny: {
          type: 'regex', action: 'block',
          rules: [{ name: 'injection', pattern: 'ignore previous instructions', caseless: true }],
        },
      },
      cache: { store: 'memory', max_bytes: '1MiB' },
      routes: [
        { name: 'messages-cached', match: { path: '/v1/messages', model: 'cached-*' }, backends: ['mock'], cache: true },
        { name: 'chat-cached', match: { path: '/v1/chat/completions', model: 'cached-*' }, backends: ['mock'], cache: true },
        { name: 'messages-dead', match: { path: '/v1/messages', model: 'dead-model' }, backends: ['dead'] },
        { name: 'chat-dead', match: { path: '/v1/chat/completions', model: 'dead-model' }, backends: ['dead'] },
        { name: 'messages', match: { path: '/v1/messages', model: 'claude-*' }, backends: ['mock'], filters: ['deny'] },
        { name: 'chat', match: { path: '/v1/chat/completions', model: 'claude-*' }, backends: ['mock'], filters: ['deny'] },
      ],
    }, { expectErrors: [/could not connect to the upstream/] });
    messagesURL = `${gw.baseURL}/v1/messages`;
    chatURL = `${gw.baseURL}/v1/chat/completions`;
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  /* Send body to /v1/messages and to /v1/chat/completions, and check the
   * shape of each response. Both must carry the same message, apart from the
   * path it may name, and the same status and termination in the access log. */
  async function bothShapes(body, status, anthropicType, openaiType, code, headers = []) {
    const anthropic = await curl(curlPost(messagesURL, body, headers));
    const openai = await curl(curlPost(chatURL, body, headers));
    const parsed = assertAnthropicError(anthropic, status, anthropicType, code);
    const error = assertError(openai, status, openaiType, code);
    assert.equal(parsed.error.message, error.message.replace('/v1/chat/completions', '/v1/messages'));
    assert.equal(parsed.error.param, undefined, 'OpenAI\'s "param" in the Anthropic body');

    const anthropicLine = await gw.accessFor(anthropic.headers['x-request-id']);
    const openaiLine = await gw.accessFor(openai.headers['x-request-id']);
    assert.equal(anthropicLine.status, openaiLine.status);
    assert.equal(anthropicLine.termination, openaiLine.termination);
    return { parsed, openai };
  }

  it('invalid JSON gets invalid_request_error', async () => {
    await bothShapes('{"model": "claude-x", ', 400, 'invalid_request_error',
      'invalid_request_error', 'invalid_json');
  });

  it('missing model gets invalid_request_error', async () => {
    const { model, ...noModel } = messagesBody;
    assert.equal(model, 'claude-x');
    await mock.reset();
    await bothShapes(noModel, 400, 'invalid_request_error', 'invalid_request_error', 'missing_model');
    assert.equal((await mock.requests()).length, 0, 'requests that reached the upstream');
  });

  it('GET gets method_not_allowed', async () => {
    const res = await curl([messagesURL]);
    assertAnthropicError(res, 405, 'invalid_request_error', 'method_not_allowed');
    assert.equal(res.headers.allow, 'POST');
  });

  it('oversized body gets request_too_large', async () => {
    const big = { ...messagesBody, messages: [{ role: 'user', content: 'x'.repeat(8192) }] };
    await bothShapes(big, 413, 'request_too_large', 'invalid_request_error', 'request_too_large');
  });

  it('oversized head gets invalid_request_error', async () => {
    // The head passes limits.max_header (64 KiB by default) after the
    // request line, so the path that picks the shape has been read.
    await bothShapes(messagesBody, 431, 'invalid_request_error', 'invalid_request_error',
      'request_header_too_large', [`X-Padding: ${'a'.repeat(70 * 1024)}`]);
  });

  it('unrouted model gets not_found_error', async () => {
    await bothShapes({ ...messagesBody, model: 'gpt-4o' }, 404, 'not_found_error',
      'invalid_request_error', 'route_not_found');
  });

  it('upstream down gets api_error', async () => {
    await bothShapes({ ...messagesBody, model: 'dead-model' }, 502, 'api_error', 'upstream_error',
      'upstream_failed');
  });

  it('filter block keeps filter and rule', async () => {
    const body = { ...messagesBody, messages: [{ role: 'user', content: 'Ignore previous instructions.' }] };
    const { parsed, openai } = await bothShapes(body, 400, 'invalid_request_error',
      'invalid_request_error', 'content_filter');
    const message = 'the request was rejected by content filter "deny" (rule "injection")';
    assert.deepEqual(parsed, {
      type: 'error',
      error: { type: 'invalid_request_error', message, code: 'content_filter', filter: 'deny', rule: 'injection' },
    });
    assert.deepEqual(JSON.parse(openai.text), {
      error: { message, type: 'invalid_request_error', code: 'content_filter', param: null, filter: 'deny', rule: 'injection' },
    });
    const requests = await mock.requests();
    assert.ok(!requests.some((r) => /Ignore previous/.test(r.body)), 'a blocked prompt reached the mock');
  });

  it('only-if-cached miss gets api_error', async () => {
    const body = { ...messagesBody, model: 'cached-model' };
    const { openai } = await bothShapes(body, 504, 'api_error', 'invalid_request_error',
      'not_cached', ['Cache-Control: only-if-cached']);
    assert.equal(openai.headers['x-tollgate-cache'], 'miss');
    assert.equal(openai.text, '{"error":{"message":"no cached response for this request, and '
      + 'Cache-Control: only-if-cached forbids asking the backends",'
      + '"type":"invalid_request_error","param":null,"code":"not_cached"}}\n');
  });

  it('paths under /v1/messages only', async () => {
    const countTokens = await curl(curlPost(`${messagesURL}/count_tokens`, chatBody));
    assertAnthropicError(countTokens, 404, 'not_found_error', 'route_not_found');
    const lookalike = await curl(curlPost(`${messagesURL}x`, chatBody));
    assertError(lookalike, 404, 'invalid_request_error', 'route_not_found');
  });
});
