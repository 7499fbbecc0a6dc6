// Every error status of the contract, with its JSON body, through curl and
// raw sockets; upstream error statuses passed through unchanged.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, curl, curlPost, freePort, stopAll, mockBackend, rawRequest, request,
  startGateway, startMock,
} from './lib/harness.mjs';
import { assertError } from './lib/checks.mjs';

const chatBody = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

describe('error responses', () => {
  let mock;
  let gw;
  let chatURL;

  before(async () => {
    mock = await startMock();
    const closedPort = await freePort();
    gw = await startGateway({
      limits: { max_body: '4KiB', max_header: '4KiB' },
      backends: {
        mock: mockBackend(mock, { timeouts: { first_byte: '1s' } }),
        dead: { url: `http://127.0.0.1:${closedPort}` },
        // One backend per passed-through status: a 429 or 503 with
        // Retry-After cools its backend down, which must not reach the
        // other tests.
        p429: mockBackend(mock),
        p500: mockBackend(mock),
        p503: mockBackend(mock),
      },
      routes: [
        { name: 'pass-429', match: { path: '/v1/chat/completions', model: 'pass-429' }, backends: ['p429'] },
        { name: 'pass-500', match: { path: '/v1/chat/completions', model: 'pass-500' }, backends: ['p500'] },
        { name: 'pass-503', match: { path: '/v1/chat/completions', model: 'pass-503' }, backends: ['p503'] },
        { name: 'dead', match: { path: '/v1/chat/completions', model: 'dead-model' }, backends: ['dead'] },
        { name: 'chat', match: { path: '/v1/chat/completions', model: 'gpt-*' }, backends: ['mock'] },
        { name: 'embeddings', match: { path: '/v1/embeddings', model: '*' }, backends: ['mock'] },
      ],
    });
    chatURL = `${gw.baseURL}/v1/chat/completions`;
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('rejects a body that is not JSON', async () => {
    const res = await curl(curlPost(chatURL, '{"model": "gpt-4o", '));
    assertError(res, 400, 'invalid_request_error', 'invalid_json');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.status, 400);
    assert.equal(entry.termination, 'GL');
  });

  it('says what is wrong with a body jansson rejects, in its own words', async () => {
    const cases = [
      ['{"model": "gpt-4o", ', /^the request body is not valid JSON: it ends before the value is complete \(line 1, column \d+\)$/],
      ['{"model": "gpt\\u0000x", "messages": []}', /^the request body has \\u0000 \(a NUL character\) in a string, which is not accepted \(line 1, column \d+\)$/],
      ['{"model": "gpt-4o", "model": "x"}', /^the request body has an object with the same key twice \(line 1, column \d+\)$/],
      ['{"model": "gpt-4o"} {}', /^the request body is not valid JSON: more data follows the value \(line 1, column \d+\)$/],
      ['{"model": "gpt-4o", "n": [}', /^the request body is not valid JSON \(line 1, column \d+\)$/],
    ];
    for (const [body, expected] of cases) {
      const error = assertError(await curl(curlPost(chatURL, body)), 400, 'invalid_request_error', 'invalid_json');
      assert.match(error.message, expected, `message for ${body}`);
      // Nothing of the parser's own text: flag names, or the token it quotes.
      assert.doesNotMatch(error.message, /JSON_|near '/, `message for ${body}`);
    }
  });

  it('names encoding, byte or escape errors', async () => {
    const json = '{"model": "gpt-4o", "messages": []}';
    const cases = [
      ['a UTF-8 byte order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]),
        /^the request body starts with a byte order mark \(bytes EF BB BF\), which JSON sent over a network must not have \(RFC 8259, section 8\.1\); send the JSON text without it$/],
      ['UTF-16 with a byte order mark', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(json, 'utf16le')]),
        /^the request body looks like UTF-16 or UTF-32 text \(its first bytes are FF FE\); JSON sent over a network must be UTF-8 \(RFC 8259, section 8\.1\)$/],
      ['UTF-16 without one', Buffer.from(json, 'utf16le'),
        /^the request body looks like UTF-16 or UTF-32 text \(its first bytes are 7B 00\); JSON sent over a network must be UTF-8/],
      // The byte FF is the 13th character of the line.
      ['a byte that is not UTF-8', Buffer.concat([Buffer.from('{"model": "g'), Buffer.from([0xff]), Buffer.from('pt-4o"}')]),
        /^the request body has the byte FF, which is not valid UTF-8 there, at line 1, column 13; JSON sent over a network must be UTF-8$/],
      // The string that contains the escape ends at column 34.
      ['a lone surrogate escape', Buffer.from('{"model": "gpt-4o", "x": "a\\ud800"}'),
        /^the request body has \\uD800, half of a UTF-16 surrogate pair, without its other half, in the string that ends at line 1, column 34; a \\uD800 to \\uDBFF escape must be followed by one from \\uDC00 to \\uDFFF$/],
    ];
    for (const [what, body, expected] of cases) {
      const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' }, body });
      const error = assertError(res, 400, 'invalid_request_error', 'invalid_json');
      assert.match(error.message, expected, `message for ${what}`);
    }
  });

  it('says that an empty body is empty', async () => {
    for (const headers of [['Content-Length: 0'], ['Transfer-Encoding: chunked']]) {
      const res = await curl(curlPost(chatURL, '', headers));
      const error = assertError(res, 400, 'invalid_request_error', 'invalid_json');
      assert.equal(error.message, 'the request body is empty; send a JSON object with a "model" member',
        `message with ${headers}`);
    }
  });

  it('rejects a JSON body that is not an object', async () => {
    const res = await curl(curlPost(chatURL, '["gpt-4o"]'));
    assertError(res, 400, 'invalid_request_error', 'invalid_json');
  });

  it('rejects a body without a model', async () => {
    const res = await curl(curlPost(chatURL, { messages: [] }));
    assertError(res, 400, 'invalid_request_error', 'missing_model');
  });

  it('rejects a model that is not a string', async () => {
    const res = await curl(curlPost(chatURL, { model: 4, messages: [] }));
    assertError(res, 400, 'invalid_request_error', 'missing_model');
  });

  it('answers 404 for a model no route matches', async () => {
    const res = await curl(curlPost(chatURL, { ...chatBody, model: 'claude-3' }));
    assertError(res, 404, 'invalid_request_error', 'route_not_found');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.termination, 'GL');
    assert.equal(entry.route, null);
    assert.equal(entry.backend, null);
  });

  it('answers 404 for a path no route matches', async () => {
    const res = await curl(curlPost(`${gw.baseURL}/v1/completions`, chatBody));
    assertError(res, 404, 'invalid_request_error', 'route_not_found');
    const other = await curl([`${gw.baseURL}/no/such/path`]);
    assertError(other, 404, 'invalid_request_error', 'route_not_found');
  });

  it('answers 405 with Allow for GET on a POST endpoint', async () => {
    const res = await curl([chatURL]);
    assertError(res, 405, 'invalid_request_error', 'method_not_allowed');
    assert.equal(res.headers.allow, 'POST');
  });

  it('answers 405 with Allow for DELETE on embeddings', async () => {
    const res = await curl(['-X', 'DELETE', `${gw.baseURL}/v1/embeddings`]);
    assertError(res, 405, 'invalid_request_error', 'method_not_allowed');
    assert.equal(res.headers.allow, 'POST');
  });

  it('answers 405 with Allow for POST on /v1/models', async () => {
    const res = await curl(curlPost(`${gw.baseURL}/v1/models`, chatBody));
    assertError(res, 405, 'invalid_request_error', 'method_not_allowed');
    assert.equal(res.headers.allow, 'GET, HEAD');
  });

  it('answers 413 for a body over max_body', async () => {
    const body = { ...chatBody, messages: [{ role: 'user', content: 'x'.repeat(8192) }] };
    const res = await curl(curlPost(chatURL, body));
    const error = assertError(res, 413, 'invalid_request_error', 'request_too_large');
    assert.match(error.message, /^the request body of \d+ bytes \(Content-Length\) exceeds limits\.max_body \(4096 bytes\)$/);
    const requests = await mock.requests();
    assert.ok(!requests.some((r) => r.body.length > 4096), 'the oversized body reached the mock');
  });

  it('answers 413 before the body is sent', async () => {
    // Only the head goes out: a 413 that arrives proves the gateway did not
    // wait for the 10 MiB it was announced.
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', 'Content-Length: 10485760',
      ]));
      const res = await client.readResponse();
      assertError(res, 413, 'invalid_request_error', 'request_too_large');
    } finally {
      client.destroy();
    }
  });

  it('answers 413 instead of 100 Continue', async () => {
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', 'Content-Length: 10485760',
        'Expect: 100-continue',
      ]));
      const res = await client.readResponse();
      assertError(res, 413, 'invalid_request_error', 'request_too_large');
    } finally {
      client.destroy();
    }
  });

  it('answers 431 for headers over max_header', async () => {
    const res = await curl(curlPost(chatURL, chatBody, [`X-Padding: ${'a'.repeat(8192)}`]));
    const error = assertError(res, 431, 'invalid_request_error', 'request_header_too_large');
    assert.equal(error.message, 'the request head exceeds limits.max_header (4096 bytes)');
  });

  it('answers 431 naming trailer fields over max_header', async () => {
    const client = await RawClient.connect(gw.port);
    try {
      const body = JSON.stringify(chatBody);
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked',
      ]) + `${body.length.toString(16)}\r\n${body}\r\n0\r\nX-Trailer: ${'t'.repeat(5000)}\r\n\r\n`);
      const res = await client.readResponse();
      const error = assertError(res, 431, 'invalid_request_error', 'request_header_too_large');
      assert.match(error.message, /trailer fields of its chunked body exceed limits\.max_header \(4096 bytes\)/);
    } finally {
      client.destroy();
    }
  });

  it('answers 431 to many short header lines over max_header', async () => {
    // 1,000 lines of "h: v" are 6,000 bytes with their separators, over
    // the 4 KiB limit, though their names and values are 2,000 bytes.
    const client = await RawClient.connect(gw.port);
    try {
      const lines = Array.from({ length: 1000 }, () => 'h: v');
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', ...lines,
      ], JSON.stringify(chatBody)));
      const res = await client.readResponse();
      assertError(res, 431, 'invalid_request_error', 'request_header_too_large');
    } finally {
      client.destroy();
    }
  });

  it('answers 400 to a malformed request line', async () => {
    const client = await RawClient.connect(gw.port);
    try {
      await client.write('THIS IS NOT HTTP\r\n\r\n');
      const res = await client.readResponse();
      assertError(res, 400, 'invalid_request_error', 'bad_request');
    } finally {
      client.destroy();
    }
  });

  it('answers 502 when the upstream refuses', async () => {
    gw.expectErrors(/refused|connect/i);
    const res = await curl(curlPost(chatURL, { ...chatBody, model: 'dead-model' }));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.status, 502);
    assert.equal(entry.upstream_status, null);
    assert.equal(entry.route, 'dead');
    assert.equal(entry.backend, 'dead');
    assert.equal(entry.termination, 'SC');
  });

  it('answers 504 when the first byte times out', async () => {
    gw.expectErrors(/timed out|timeout/i);
    const res = await curl(curlPost(chatURL, chatBody, ['x-mock: first_byte_delay=4s']));
    assertError(res, 504, 'upstream_error', 'upstream_timeout');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.status, 504);
    assert.equal(entry.termination, 'sH');
  });

  for (const status of [429, 500, 503]) {
    it(`passes an upstream ${status} through unchanged`, async () => {
      const headers = [`x-mock: status=${status};retry_after=7`];
      const body = { ...chatBody, model: `pass-${status}` };
      const direct = await curl(curlPost(`${mock.url}/v1/chat/completions`, body, headers));
      assert.equal(direct.status, status, 'the mock itself answers with the status');

      const res = await curl(curlPost(chatURL, body, headers));
      assert.equal(res.status, status);
      assert.equal(res.text, direct.text, 'body');
      assert.equal(res.headers['content-type'], direct.headers['content-type']);
      assert.equal(res.headers['retry-after'], '7');
      const entry = await gw.accessFor(res.headers['x-request-id']);
      assert.equal(entry.status, status);
      assert.equal(entry.upstream_status, status);
      assert.equal(entry.termination, '--');
    });
  }

  it('passes the upstream 400 for a bad option through', async () => {
    const headers = ['x-mock: no_such_option=1'];
    const direct = await curl(curlPost(`${mock.url}/v1/chat/completions`, chatBody, headers));
    assert.equal(direct.status, 400, 'the mock itself rejects the option');
    const res = await curl(curlPost(chatURL, chatBody, headers));
    assert.equal(res.status, 400);
    assert.equal(res.text, direct.text);
  });
});
