// Rate limits per gateway key (gateway_keys.NAME.limits): requests are
// counted at admission and rejected with 429 before any upstream call,
// tokens are charged from the usage the mock reports. Limits of 1 to 3
// per minute refill one unit every 20 seconds or more, far longer than
// each test takes, so no check depends on how fast the machine is.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, assertNoFatalOutput, mockBackend, rawRequest, request, runTollgate, startGateway, startMock, stopAll,
  writeTempFile,
} from './lib/harness.mjs';
import { apiRequests, chat } from './lib/failover.mjs';
import { quickTracing, requestSpans, startOtlpReceiver } from './lib/otlp-receiver.mjs';
import { parseSamples, scrape, seriesKey, valueOf } from './lib/prometheus.mjs';

const KEYS = {
  capped: 'tg-capped-3c1f0a',
  free: 'tg-free-9d2e4b',
  tokens: 'tg-tokens-51aa07',
  streamer: 'tg-streamer-e08c3d',
  anthropic: 'tg-anthropic-7b64f2',
  cached: 'tg-cached-2d9a1e',
  uploader: 'tg-uploader-64c0b8',
  waiter: 'tg-waiter-0f71c5',
  sender: 'tg-sender-a35e92',
};

const bearer = (name) => ({ Authorization: `Bearer ${KEYS[name]}` });

/* POST to Anthropic's Messages API with the key "anthropic". The mock
 * serves no such path: an admitted request gets the mock's 404, a rejected
 * one the gateway's 429. */
const sendMessage = (gw) => chat(gw, {
  path: '/v1/messages',
  body: { model: 'claude-x', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] },
  headers: { 'x-api-key': KEYS.anthropic },
});

/* The mock's responses are long enough to use up tokens_per_minute 100 in
 * one response, streamed or not. */
const LONG_ANSWER = { 'x-mock': 'words=150;events=150' };

/* Two workers, so that a count kept per thread would let more through.
 * mock is a started mock, or any object with the url of an upstream. */
function limitedConfig(mock, { cachedTokens = 1000, ...extra } = {}) {
  return {
    workers: 2,
    backends: { mock: mockBackend(mock) },
    gateway_keys: {
      capped: { key: KEYS.capped, limits: { requests_per_minute: 3 } },
      free: { key: KEYS.free },
      tokens: { key: KEYS.tokens, limits: { tokens_per_minute: 100 } },
      streamer: { key: KEYS.streamer, limits: { tokens_per_minute: 100 } },
      anthropic: { key: KEYS.anthropic, limits: { requests_per_minute: 1 } },
      cached: { key: KEYS.cached, limits: { requests_per_minute: 3, tokens_per_minute: cachedTokens } },
      uploader: { key: KEYS.uploader, limits: { requests_per_minute: 1 } },
      waiter: { key: KEYS.waiter, limits: { requests_per_minute: 2 } },
      sender: { key: KEYS.sender, limits: { requests_per_minute: 1 } },
    },
    filters: {
      blocker: { type: 'regex', apply_to: ['request'], presets: ['email'], action: 'block' },
    },
    routes: [
      { name: 'upload', match: { path: '/v1/audio/transcriptions' }, backends: ['mock'], filters: ['blocker'] },
      { name: 'cached', match: { path: '/v1/chat/completions', model: 'cached-model' }, backends: ['mock'], cache: true },
      { name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['mock'] },
      { name: 'messages', match: { path: '/v1/messages' }, backends: ['mock'] },
      { name: 'files', match: { path_prefix: '/v1/files' }, backends: ['mock'] },
    ],
    ...extra,
  };
}

/* Check a rejection by a limit: status, body, Retry-After, the x-ratelimit-* headers of
 * the limit, the access log, and that nothing went upstream. */
async function expectLimited(gw, mock, send, { limit, key }) {
  const before = (await apiRequests(mock)).length;
  const res = await send();
  assert.equal(res.status, 429, res.text);
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter), `Retry-After ${res.headers['retry-after']}`);
  assert.ok(retryAfter >= 1, `Retry-After ${retryAfter}`);
  assert.ok(retryAfter <= 3600, `Retry-After ${retryAfter}`);
  assert.equal(res.headers[`x-ratelimit-remaining-${limit}`], '0');
  assert.match(res.headers[`x-ratelimit-reset-${limit}`], /^(\d+h)?(\d+m)?\d+(\.\d+)?s$|^\d+ms$/);
  const entry = await gw.accessFor(res.id);
  assert.equal(entry.status, 429);
  assert.equal(entry.key, key);
  assert.equal(entry.reason, `rate_limit_${limit}`);
  assert.equal((await apiRequests(mock)).length, before, 'nothing may go upstream');
  return res;
}

async function rateLimited(gw, key, limit) {
  return valueOf(parseSamples((await scrape(gw)).text), 'tollgate_key_rate_limited_total', { key, limit });
}

describe('rate limits per key', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(limitedConfig(mock));
  });
  after(stopAll);
  afterEach(() => gw.checkErrors());

  it('answers 3 requests a minute and then 429', async () => {
    assert.equal(await rateLimited(gw, 'capped', 'requests'), 0);
    for (const remaining of ['2', '1', '0']) {
      const res = await chat(gw, { headers: bearer('capped') });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers['x-ratelimit-limit-requests'], '3');
      assert.equal(res.headers['x-ratelimit-remaining-requests'], remaining);
      assert.match(res.headers['x-ratelimit-reset-requests'], /^\d+(\.\d+)?s$/);
      assert.equal(res.headers['x-ratelimit-limit-tokens'], undefined, 'the key sets no token limit');
    }

    const res = await expectLimited(gw, mock, () => chat(gw, { headers: bearer('capped') }),
      { limit: 'requests', key: 'capped' });
    assert.deepEqual(res.json().error, {
      message: res.json().error.message, type: 'requests', param: null, code: 'rate_limit_exceeded',
    });
    assert.match(res.json().error.message, /"capped" reached its limit of 3 requests per minute/);
    assert.equal(res.headers['x-ratelimit-limit-requests'], '3');
    assert.ok(Number(res.headers['retry-after']) <= 20, 'one request comes back within 20 s');
    assert.equal(await rateLimited(gw, 'capped', 'requests'), 1);
  });

  it('does not count a body refused with 415', async () => {
    // The route's blocking filter cannot read a body that is not JSON.
    for (let i = 0; i < 2; i++) {
      const refused = await request({
        port: gw.port, method: 'POST', path: '/v1/audio/transcriptions', body: Buffer.from('RIFF....WAVE'),
        headers: { ...bearer('uploader'), 'content-type': 'audio/wav' },
      });
      assert.equal(refused.status, 415, refused.text);
    }
    const res = await chat(gw, { headers: bearer('uploader') });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers['x-ratelimit-remaining-requests'], '0');

    const limited = await chat(gw, { headers: bearer('uploader') });
    assert.equal(limited.status, 429, limited.text);
    assert.match(limited.json().error.message, /reached its limit of 1 request per minute; retry after \d+ seconds$/);
  });

  it('leaves other keys alone', async () => {
    const rejected = await chat(gw, { headers: bearer('capped') });
    assert.equal(rejected.status, 429, rejected.text);

    const res = await chat(gw, { headers: bearer('free') });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers['x-ratelimit-limit-requests'], undefined, 'a key without limits gets no headers');
    const samples = parseSamples((await scrape(gw)).text);
    assert.ok(!samples.has(seriesKey('tollgate_key_rate_limited_total', { key: 'free', limit: 'requests' })),
      'a key without limits has no series');
  });

  it('rejects in the Anthropic shape on /v1/messages', async () => {
    const first = await sendMessage(gw);
    assert.equal(first.status, 404, 'admitted, and answered by the mock');
    assert.equal(first.headers['x-ratelimit-remaining-requests'], '0');

    const res = await expectLimited(gw, mock, () => sendMessage(gw), { limit: 'requests', key: 'anthropic' });
    const body = res.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'rate_limit_error');
    assert.equal(body.error.code, 'rate_limit_exceeded');
  });

  it('rejects a key whose tokens ran out', async () => {
    const first = await chat(gw, { headers: { ...bearer('tokens'), ...LONG_ANSWER } });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-ratelimit-limit-tokens'], '100');
    assert.equal(first.headers['x-ratelimit-remaining-tokens'], '100', 'counted before its own tokens');
    assert.equal(first.headers['x-ratelimit-reset-tokens'], '0s', 'a full bucket, written as OpenAI does');
    assert.equal(first.headers['x-ratelimit-limit-requests'], undefined, 'the key sets no request limit');
    const { usage } = first.json();
    assert.ok(usage.prompt_tokens + usage.completion_tokens > 100, JSON.stringify(usage));
    await gw.accessFor(first.id);

    const res = await expectLimited(gw, mock, () => chat(gw, { headers: bearer('tokens') }),
      { limit: 'tokens', key: 'tokens' });
    assert.equal(res.json().error.type, 'tokens');
    assert.equal(await rateLimited(gw, 'tokens', 'tokens'), 1);
  });

  it('charges the usage of a stream', async () => {
    const first = await chat(gw, { stream: true, headers: { ...bearer('streamer'), ...LONG_ANSWER } });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-ratelimit-remaining-tokens'], '100');
    assert.ok(!first.text.includes('"usage"'), 'the usage chunk the gateway asked for stays hidden');
    await gw.accessFor(first.id);

    await expectLimited(gw, mock, () => chat(gw, { stream: true, headers: bearer('streamer') }),
      { limit: 'tokens', key: 'streamer' });
  });
});

describe('rate limits and Expect: 100-continue', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(limitedConfig(mock));
  });
  after(stopAll);
  afterEach(() => gw.checkErrors());

  const CHAT_BODY = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] });

  /* POST body to path with the key name, waiting for 100 Continue before
   * the body is sent. Returns the first response, the final one (the first
   * when no 100 came) and the access-log line. */
  let sent = 0;
  async function sendAfterContinue(path, name, { body = CHAT_BODY, type = 'application/json' } = {}) {
    const id = `continue-${++sent}`;
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawRequest('POST', path, [
        'Host: 127.0.0.1', `Content-Type: ${type}`, `Content-Length: ${Buffer.byteLength(body)}`,
        'Expect: 100-continue', `X-Request-Id: ${id}`, `Authorization: Bearer ${KEYS[name]}`,
      ]));
      const first = await client.readResponse();
      let final = first;
      if (first.status === 100) {
        await client.write(body);
        final = await client.readResponse();
      }
      return { first, final, access: await gw.accessFor(id) };
    } finally {
      client.destroy();
    }
  }

  it('answers 429 before 100 Continue', async () => {
    for (const remaining of ['1', '0']) {
      const { first, final } = await sendAfterContinue('/v1/chat/completions', 'waiter');
      assert.equal(first.status, 100);
      assert.equal(final.status, 200, final.body.toString());
      assert.equal(final.header('x-ratelimit-remaining-requests'), remaining, 'counted once');
    }

    const before = (await apiRequests(mock)).length;
    const { first, access } = await sendAfterContinue('/v1/chat/completions', 'waiter');
    assert.equal(first.status, 429, 'the body was asked for');
    const retryAfter = Number(first.header('retry-after'));
    assert.ok(Number.isInteger(retryAfter), `Retry-After ${first.header('retry-after')}`);
    assert.ok(retryAfter >= 1, `Retry-After ${retryAfter}`);
    assert.ok(retryAfter <= 30, `Retry-After ${retryAfter}`);
    assert.equal(first.header('x-ratelimit-limit-requests'), '2');
    assert.equal(first.header('x-ratelimit-remaining-requests'), '0');
    assert.match(first.header('x-ratelimit-reset-requests'), /^\d+(\.\d+)?s$/);
    assert.equal(first.header('connection'), 'close');
    const { error } = JSON.parse(first.body.toString());
    assert.equal(error.code, 'rate_limit_exceeded');
    assert.match(error.message, /"waiter" reached its limit of 2 requests per minute; retry after \d+ seconds?$/);
    assert.equal(access.status, 429);
    assert.equal(access.key, 'waiter');
    assert.equal(access.reason, 'rate_limit_requests');
    assert.equal(access.termination, 'GR');
    assert.equal((await apiRequests(mock)).length, before, 'nothing may go upstream');
    assert.equal(await rateLimited(gw, 'waiter', 'requests'), 1);
  });

  it('keeps 415 first and uncounted', async () => {
    const wav = { body: 'RIFF....WAVE', type: 'audio/wav' };
    const refused = await sendAfterContinue('/v1/audio/transcriptions', 'sender', wav);
    assert.equal(refused.first.status, 100);
    assert.equal(refused.final.status, 415, refused.final.body.toString());

    const upload = await sendAfterContinue('/v1/files', 'sender', wav);
    assert.equal(upload.first.status, 100, 'the 415 spent the budget');
    assert.equal(upload.final.header('x-ratelimit-remaining-requests'), '0');

    // Used up now: the route whose filter cannot read the body still
    // rejects it with 415 after the body, and the route without filters
    // with 429 at once.
    const again = await sendAfterContinue('/v1/audio/transcriptions', 'sender', wav);
    assert.equal(again.first.status, 100);
    assert.equal(again.final.status, 415, again.final.body.toString());
    const limited = await sendAfterContinue('/v1/files', 'sender', wav);
    assert.equal(limited.first.status, 429, 'the body was asked for');
    assert.equal(limited.first.header('x-ratelimit-remaining-requests'), '0');
    assert.equal(limited.access.route, null, 'rejected before routing');
    assert.equal(limited.access.termination, 'GR');
    assert.equal(limited.access.key, 'sender');
  });
});

describe('rate limits and the cache', () => {
  afterEach(stopAll);

  /* With tokens_per_minute at one and a half times what the response
   * uses, a first hit that cost tokens as well would leave the key in
   * debt, and the second would be rejected for tokens. With
   * requests_per_minute 3, the request after two hits is rejected. */
  it('counts a hit as a request without tokens', async () => {
    const mock = await startMock();
    const body = { model: 'cached-model', messages: [{ role: 'user', content: 'Hello from the cache test!' }] };
    const direct = await request({ port: mock.port, method: 'POST', path: '/v1/chat/completions', body });
    const used = direct.json().usage.total_tokens;
    const gw = await startGateway(limitedConfig(mock, { cachedTokens: Math.ceil(used * 1.5) }));

    const miss = await chat(gw, { body, headers: bearer('cached') });
    assert.equal(miss.status, 200, miss.text);
    assert.equal(miss.headers['x-tollgate-cache'], 'miss');
    assert.equal(miss.json().usage.total_tokens, used, 'the mock answers alike');
    await gw.accessFor(miss.id);

    for (const remaining of ['1', '0']) {
      const hit = await chat(gw, { body, headers: bearer('cached') });
      assert.equal(hit.status, 200, hit.text);
      assert.equal(hit.headers['x-tollgate-cache'], 'hit');
      assert.equal(hit.headers['x-ratelimit-remaining-requests'], remaining);
      await gw.accessFor(hit.id);
    }
    await expectLimited(gw, mock, () => chat(gw, { body, headers: bearer('cached') }),
      { limit: 'requests', key: 'cached' });
  });
});

describe('rate limits on reload', () => {
  afterEach(stopAll);

  it('keeps what a key spent under its new limit', async () => {
    const mock = await startMock();
    const config = limitedConfig(mock);
    config.gateway_keys.capped.limits.requests_per_minute = 2;
    const gw = await startGateway(config);
    const send = () => chat(gw, { headers: bearer('capped') });

    assert.equal((await send()).status, 200);
    assert.equal((await send()).status, 200);
    assert.equal((await send()).status, 429);

    const raised = structuredClone(gw.config);
    raised.gateway_keys.capped.limits.requests_per_minute = 3;
    assert.equal(await gw.reload(raised), 'reloaded');
    const res = await send();
    assert.equal(res.status, 200, 'the raise adds one request');
    assert.equal(res.headers['x-ratelimit-limit-requests'], '3');
    assert.equal(res.headers['x-ratelimit-remaining-requests'], '0');
    assert.equal((await send()).status, 429, 'the two spent before the reload stay spent');

    const removed = structuredClone(raised);
    delete removed.gateway_keys.capped.limits;
    assert.equal(await gw.reload(removed), 'reloaded');
    const open = await send();
    assert.equal(open.status, 200, open.text);
    assert.equal(open.headers['x-ratelimit-limit-requests'], undefined);
  });
});

describe('rate limits and the upstream\'s headers', () => {
  let upstream;
  after(async () => { await stopAll(); upstream?.close(); });

  /* An upstream that sends OpenAI's x-ratelimit-* headers of its own, as
   * the OpenAI API does for the gateway's account. */
  async function startUpstream() {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': 'application/json',
          'x-ratelimit-limit-requests': '5000',
          'x-ratelimit-remaining-requests': '4999',
          'x-ratelimit-reset-requests': '12ms',
          'x-ratelimit-limit-tokens': '160000',
          'x-ratelimit-remaining-tokens': '159976',
          'x-ratelimit-reset-tokens': '9ms',
        });
        res.end(JSON.stringify({
          id: 'chatcmpl-1', object: 'chat.completion', model: 'gpt-4o',
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
        }));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return server;
  }

  it('replaces them for the kinds the key limits', async () => {
    upstream = await startUpstream();
    const gw = await startGateway(limitedConfig({ url: `http://127.0.0.1:${upstream.address().port}` }));

    const limited = await chat(gw, { headers: bearer('capped') });
    assert.equal(limited.status, 200, limited.text);
    assert.equal(limited.headers['x-ratelimit-limit-requests'], '3');
    assert.equal(limited.headers['x-ratelimit-remaining-requests'], '2');
    assert.match(limited.headers['x-ratelimit-reset-requests'], /^\d+(\.\d+)?s$/);
    assert.equal(limited.headers['x-ratelimit-limit-tokens'], '160000', 'the key sets no token limit');
    assert.equal(limited.headers['x-ratelimit-reset-tokens'], '9ms');

    const free = await chat(gw, { headers: bearer('free') });
    assert.equal(free.status, 200, free.text);
    assert.equal(free.headers['x-ratelimit-limit-requests'], '5000');
    assert.equal(free.headers['x-ratelimit-remaining-tokens'], '159976');
  });
});

describe('rate limits in traces', () => {
  let receiver;
  before(async () => { receiver = await startOtlpReceiver(); });
  after(async () => { await stopAll(); await receiver.close(); });

  it('records the rejection in the server span', async () => {
    const mock = await startMock();
    const tracing = quickTracing(receiver);
    const gw = await startGateway(limitedConfig(mock, { tracing }));
    assert.equal((await sendMessage(gw)).status, 404);
    const res = await sendMessage(gw);
    assert.equal(res.status, 429, res.text);

    const { traceId, spans } = await requestSpans(gw, receiver, res.id, 1);
    const server = spans.find((s) => s.kind === 2);
    assert.equal(server.attributes['error.type'], 'rate_limit_requests');
    assert.equal(server.attributes['http.response.status_code'], 429n);
    assert.equal(server.attributes['tollgate.key'], 'anthropic');
  });
});

describe('limits in the config', () => {
  const check = async (config) => {
    const file = writeTempFile('tollgate.json', JSON.stringify(config));
    const result = await runTollgate(['-t', '-c', file]);
    assertNoFatalOutput(result.stderr);
    return result;
  };
  const base = {
    backends: { b: { url: 'http://127.0.0.1:9' } },
    routes: [{ name: 'r', backends: ['b'] }],
  };

  it('accepts either limit or both', async () => {
    const { code, stderr } = await check({
      ...base,
      gateway_keys: {
        a: { key: 'a-secret', limits: { requests_per_minute: 60 } },
        b: { key: 'b-secret', limits: { tokens_per_minute: 100000 } },
        c: { key: 'c-secret', limits: { requests_per_minute: 1, tokens_per_minute: 1000000000 } },
      },
    });
    assert.equal(code, 0, stderr);
  });

  it('reports every invalid limit with what is valid', async () => {
    const { code, stderr } = await check({
      ...base,
      gateway_keys: {
        zero: { key: 'zero-secret', limits: { requests_per_minute: 0 } },
        text: { key: 'text-secret', limits: { tokens_per_minute: '1000' } },
        fraction: { key: 'fraction-secret', limits: { requests_per_minute: 1.5 } },
        empty: { key: 'empty-secret', limits: {} },
        typo: { key: 'typo-secret', limits: { requests_per_second: 5 } },
      },
    });
    assert.equal(code, 1);
    const lines = stderr.trim().split('\n').map((line) => line.replace(/^[^:]+: /, ''));
    assert.deepEqual(lines, [
      'gateway_keys.zero.limits.requests_per_minute: 0 is out of range; valid values are 1 to 1000000000',
      'gateway_keys.text.limits.tokens_per_minute: invalid value "1000" (a string); expected an integer from 1 to 1000000000, written without quotes',
      'gateway_keys.fraction.limits.requests_per_minute: invalid value 1.5; expected an integer from 1 to 1000000000, written without a fraction or an exponent',
      'gateway_keys.empty.limits: sets no limit; give "requests_per_minute", "tokens_per_minute" or both, or remove "limits"',
      'gateway_keys.typo.limits: unknown key "requests_per_second"; valid keys: requests_per_minute, tokens_per_minute',
    ]);
  });
});
