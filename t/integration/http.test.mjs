// The client side of HTTP/1.1: keep-alive, pipelining, HTTP/1.0,
// 100-continue, request framing errors and slow clients.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, basicConfig, eventData, mockBackend, request, stopAll, rawPost, rawRequest,
  splitEvents, startGateway, startMock, waitFor,
} from './lib/harness.mjs';
import { assertError } from './lib/checks.mjs';

const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };
const chatText = JSON.stringify(chat);

describe('client connections', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(basicConfig(mock, {
      limits: {
        max_body: '4KiB',
        client_header_timeout: '1s',
        client_body_timeout: '1s',
        keepalive_timeout: '1s',
      },
    }));
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  async function withClient(fn) {
    const client = await RawClient.connect(gw.port);
    try {
      return await fn(client);
    } finally {
      client.destroy();
    }
  }

  it('keeps an HTTP/1.1 connection alive', () => withClient(async (client) => {
    await client.write(rawPost('/v1/chat/completions', chat));
    assert.equal((await client.readResponse()).status, 200);
    await client.write(rawPost('/v1/chat/completions', chat));
    assert.equal((await client.readResponse()).status, 200);
  }));

  it('answers pipelined requests in order', () => withClient(async (client) => {
    const ids = ['pipelined-1', 'pipelined-2', 'pipelined-3'];
    await client.write(ids.map((id) => rawPost('/v1/chat/completions', chat, [`X-Request-Id: ${id}`])).join(''));
    for (const id of ids) {
      const res = await client.readResponse();
      assert.equal(res.status, 200);
      assert.equal(res.header('x-request-id'), id);
    }
  }));

  it('closes after a request with Connection: close', () => withClient(async (client) => {
    await client.write(rawPost('/v1/chat/completions', chat, ['Connection: close']));
    const res = await client.readResponse();
    assert.equal(res.status, 200);
    assert.ok(await client.waitClosed(), 'the connection stayed open');
  }));

  it('closes an idle connection after keepalive_timeout', () => withClient(async (client) => {
    await client.write(rawPost('/v1/chat/completions', chat));
    assert.equal((await client.readResponse()).status, 200);
    assert.ok(await client.waitClosed(), 'the idle connection stayed open');
  }));

  // The timer of the reading keeps running while a request is served:
  // when it fires then, the connection must stay open.
  it('keeps a connection whose response outlasts its timeouts', () => withClient(async (client) => {
    await client.write(rawPost('/v1/chat/completions', chat));
    assert.equal((await client.readResponse()).status, 200);
    await client.write(rawPost('/v1/chat/completions', chat, ['x-mock: first_byte_delay=1500ms']));
    assert.equal((await client.readResponse()).status, 200);
    await client.write(rawPost('/v1/chat/completions', chat));
    assert.equal((await client.readResponse()).status, 200);
  }));

  it('answers HTTP/1.0 and closes', () => withClient(async (client) => {
    await client.write(`POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${chatText.length}\r\n\r\n${chatText}`);
    const res = await client.readResponse();
    assert.equal(res.status, 200);
    assert.equal(res.json().object, 'chat.completion');
    assert.ok(await client.waitClosed(), 'the HTTP/1.0 connection stayed open');
  }));

  it('streams to an HTTP/1.0 client without chunking', () => withClient(async (client) => {
    const body = JSON.stringify({ ...chat, stream: true });
    await client.write(`POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const res = await client.readResponse();
    assert.equal(res.status, 200);
    assert.equal(res.header('transfer-encoding'), undefined, 'chunked sent to an HTTP/1.0 client');
    const { events } = splitEvents(res.text);
    assert.equal(eventData(events.at(-1)), '[DONE]');
  }));

  it('sends 100 Continue before reading the body', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json',
      `Content-Length: ${chatText.length}`, 'Expect: 100-continue',
    ]));
    const interim = await client.readResponse();
    assert.equal(interim.status, 100);
    await client.write(chatText);
    const res = await client.readResponse();
    assert.equal(res.status, 200);
  }));

  it('answers 413 to a chunked body over max_body', () => withClient(async (client) => {
    const part = 'x'.repeat(3000);
    const chunk = `${part.length.toString(16)}\r\n${part}\r\n`;
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked',
    ], chunk + chunk + chunk + '0\r\n\r\n'));
    const res = await client.readResponse();
    assertError(res, 413, 'invalid_request_error', 'request_too_large');
  }));

  it('rejects Content-Length with Transfer-Encoding', () => withClient(async (client) => {
    const chunked = `${chatText.length.toString(16)}\r\n${chatText}\r\n0\r\n\r\n`;
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json',
      `Content-Length: ${chunked.length}`, 'Transfer-Encoding: chunked',
    ], chunked));
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.match(error.message, /both Content-Length and Transfer-Encoding; send only one of them/);
  }));

  it('rejects two different Content-Length values', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json',
      `Content-Length: ${chatText.length}`, `Content-Length: ${chatText.length + 1}`,
    ], chatText));
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.match(error.message, /Content-Length appears more than once/);
  }));

  it('says a Content-Length over 64 bits is too large, and names the limit', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json', 'Content-Length: 99999999999999999999999',
    ], chatText));
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.match(error.message, /^Content-Length is too large: .* at most limits\.max_body \(\d+ bytes\)$/);
  }));

  // The value as sent, escaped, in the message: llhttp stops inside it.
  const LENGTHS = [
    ['12a', '12a'], ['', ''], ['-1', '-1'], ['1 2', '1 2'], ['0x10', '0x10'],
    ['1,1', '1,1'], ['4"\\\x80', '4\\x22\\x5c\\x80'],
    [`12${'a'.repeat(80)}`, `12${'a'.repeat(34)}...`],
  ];
  for (const [value, shown] of LENGTHS) {
    it(`rejects Content-Length ${JSON.stringify(value)} and quotes it`, () => withClient(async (client) => {
      await client.write(Buffer.from(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', `Content-Length: ${value}`,
      ], chatText), 'latin1'));
      const res = await client.readResponse();
      const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
      assert.equal(error.message, `Content-Length is "${shown}", not one decimal number of ` +
        'bytes such as 1024; send the length of the body in bytes, once');
    }));
  }

  it('says that a header name is empty', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json', ': no-name',
      `Content-Length: ${chatText.length}`,
    ], chatText));
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.equal(error.message, 'a header line of the request has an empty name (it starts ' +
      'with ":"); send each header as NAME: VALUE, with a name such as Content-Type');
  }));

  it('answers 413 to chunk extensions over 16 KiB', () => withClient(async (client) => {
    // The extension bytes are not body data, so max_body alone would not
    // stop them.
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked',
    ], `1;${'e'.repeat(20000)}\r\n{\r\n`));
    const res = await client.readResponse();
    const error = assertError(res, 413, 'invalid_request_error', 'request_too_large');
    assert.match(error.message, /chunk extensions .* exceed 16384 bytes/);
  }));

  it('answers 413 to a chunk announced over max_body', () => withClient(async (client) => {
    // Only the first bytes of a 1 MiB chunk are sent: the size line alone
    // must decide, since the rest never comes.
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked',
    ], '100000\r\n{"model"'));
    const res = await client.readResponse();
    const error = assertError(res, 413, 'invalid_request_error', 'request_too_large');
    assert.match(error.message, /chunk of 1048576 bytes .* limits\.max_body \(4096 bytes\)/);
  }));

  it('rejects HTTP/1.1 without Host', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Content-Type: application/json', `Content-Length: ${chatText.length}`,
    ], chatText));
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.match(error.message, /no Host header/);
    assert.ok(await client.waitClosed(), 'the connection stayed open after the 400');
  }));

  for (const version of ['1.1', '1.0']) {
    it(`rejects two Host headers in HTTP/${version}`, () => withClient(async (client) => {
      await client.write(`POST /v1/chat/completions HTTP/${version}\r\nHost: 127.0.0.1\r\nHost: example.test\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${chatText.length}\r\n\r\n${chatText}`);
      const res = await client.readResponse();
      const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
      assert.match(error.message, /2 Host headers/);
    }));
  }

  for (const host of ['a b/c', 'api.example.test/v1', 'user@api.example.test', '[::1']) {
    it(`rejects the Host value ${JSON.stringify(host)}`, () => withClient(async (client) => {
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        `Host: ${host}`, 'Content-Type: application/json', `Content-Length: ${chatText.length}`,
      ], chatText));
      const res = await client.readResponse();
      const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
      assert.match(error.message, /Host header is not a valid uri-host\[:port\]/);
      assert.ok(!error.message.includes(host), 'the message quotes the unchecked value');
      assert.ok(await client.waitClosed(), 'the connection stayed open after the 400');
    }));
  }

  it('routes an absolute-form target by its path', () => withClient(async (client) => {
    // The authority replaces Host (RFC 9112 section 3.2.2), but the upstream
    // still gets the backend's Host and the path in origin form.
    await client.write(rawRequest('POST', 'http://api.example.test/v1/chat/completions?trial=1', [
      'Host: api.example.test', 'Content-Type: application/json',
      `Content-Length: ${chatText.length}`, 'X-Request-Id: absolute-form',
    ], chatText));
    const res = await client.readResponse();
    assert.equal(res.status, 200);
    const upstream = (await mock.requests()).find((r) => r.headers['x-request-id'] === 'absolute-form');
    assert.ok(upstream, 'the request did not reach the mock');
    assert.equal(upstream.path, '/v1/chat/completions');
    assert.equal(upstream.query, 'trial=1');
    assert.equal(upstream.headers.host, new URL(mock.url).host);
    const entry = await gw.accessFor('absolute-form');
    assert.equal(entry.path, '/v1/chat/completions');
  }));

  /* Request targets rejected with 400, and the message expected. */
  const TARGETS = [
    ['ftp://api.example.test/v1/chat/completions', /scheme "ftp"; send an http:\/\/ or https:\/\/ URL/],
    ['http://user:secret@api.example.test/v1/chat/completions', /user information before "@"/],
    ['http:///v1/chat/completions', /empty host/],
    ['http://api.example.test/v1/chat/completions#part', /fragment after "#"/],
    ['/v1/chat/completions#part', /fragment after "#"/],
    ['*', /"\*" is only for OPTIONS, not POST/],
    ['api.example.test:443', /neither a path such as \/v1\/chat\/completions nor a valid http:\/\/ or https:\/\/ URL/],
  ];
  for (const [target, message] of TARGETS) {
    it(`rejects the request target ${target}`, () => withClient(async (client) => {
      await client.write(rawPost(target, chat));
      const res = await client.readResponse();
      const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /secret/, 'the message quotes the credentials');
      assert.ok(await client.waitClosed(), 'the connection stayed open after the 400');
    }));
  }

  it('answers CONNECT with 501', () => withClient(async (client) => {
    await client.write('CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n');
    const res = await client.readResponse();
    const error = assertError(res, 501, 'invalid_request_error', 'method_not_implemented');
    assert.match(error.message, /CONNECT is not supported: tollgate forwards API requests and opens no tunnels/);
    assert.ok(await client.waitClosed(), 'the connection stayed open after the 501');
  }));

  // RFC 9110 section 9.1: 501 for a method the server does not recognize.
  // llhttp cannot read on after one, so the connection closes.
  const METHODS = [
    ['FOO', 'FOO'], ['QUERY', 'QUERY'], ['get', 'get'], ['GETX', 'GETX'], ['SETUP', 'SETUP'],
    ['Post', 'Post'], [`X${'Y'.repeat(50)}`, `X${'Y'.repeat(31)}`],
  ];
  for (const [method, shown] of METHODS) {
    it(`answers 501 to the method ${method.slice(0, 12)}, and logs it`, () => withClient(async (client) => {
      const id = `method-${method.slice(0, 12)}`;
      await client.write(rawRequest(method, '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', `X-Request-Id: ${id}`,
        `Content-Length: ${chatText.length}`,
      ], chatText));
      const res = await client.readResponse();
      const error = assertError(res, 501, 'invalid_request_error', 'method_not_implemented');
      assert.equal(error.message, `the gateway does not implement the method "${shown}"; it ` +
        'forwards standard methods such as GET and POST, whose names are case-sensitive');
      assert.ok(await client.waitClosed(), 'the connection stayed open after the 501');
      const entry = await gw.waitForAccess((e) => e.status === 501 && e.method === shown,
        { message: `an access-log line with status 501 and method ${shown}` });
      assert.equal(entry.termination, 'GR');
      assert.equal(entry.reason, 'method_not_implemented');
    }));
  }

  it('answers 400 to a request line that starts with no method', () => withClient(async (client) => {
    await client.write(Buffer.from('G@T /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 'latin1'));
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.equal(error.message, 'the request line does not start with a method such as POST ' +
      'and a space, but with "G@T /v1/models H"; send METHOD TARGET HTTP/1.1');
    assert.ok(await client.waitClosed(), 'the connection stayed open after the 400');
  }));

  it('answers 400 to a line that is no request after its method', () => withClient(async (client) => {
    await client.write('THIS IS NOT HTTP\r\nHost: 127.0.0.1\r\n\r\n');
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.match(error.message, /^the request line that starts with "THIS IS NOT HTTP" is not METHOD TARGET HTTP\/1\.1 after its method \(llhttp: .+\)$/);
    const entry = await gw.waitForAccess((e) => e.status === 400 && e.reason === 'bad_request_line' && e.method === null,
      { message: 'an access-log line with status 400 and no method' });
    assert.equal(entry.termination, 'GR');
  }));

  it('answers 400 to TLS on the plain port, and quotes its first bytes', () => withClient(async (client) => {
    await client.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.match(error.message, /but with "\\x16\\x03\\x01\\x02\\x00\\x01"/);
  }));

  /* Transfer-Encoding lines, the status, error code and message expected. */
  const CODINGS = [
    [['gzip, chunked'], 501, 'unsupported_transfer_coding', /transfer coding "gzip" is not supported/],
    [['gzip', 'chunked'], 501, 'unsupported_transfer_coding', /transfer coding "gzip" is not supported/],
    [['Deflate ;level=1, chunked'], 501, 'unsupported_transfer_coding', /transfer coding "Deflate" is not supported/],
    [['gzip'], 400, 'bad_request', /ends with "gzip", not chunked/],
    [['chunked, gzip'], 400, 'bad_request', /goes on after chunked/],
    [['chunked, chunked'], 400, 'bad_request', /goes on after chunked/],
    [['chunked', 'gzip'], 400, 'bad_request', /goes on after chunked/],
    [['chunked', 'chunked'], 400, 'bad_request', /goes on after chunked/],
    // No coding follows chunked here: llhttp rejects a bare comma too,
    // although RFC 9110 section 5.6.1 lets a recipient skip it.
    [['chunked,'], 400, 'bad_request', /goes on after chunked/],
    [['chunked', ','], 400, 'bad_request', /goes on after chunked/],
    [['chunked;ext=1'], 400, 'bad_request', /chunked parameters/],
    [['g(zip, chunked'], 400, 'bad_request', /coding 1 is not a valid name/],
    [[''], 400, 'bad_request', /Transfer-Encoding is empty/],
  ];
  for (const [lines, status, code, message] of CODINGS) {
    it(`answers ${status} to Transfer-Encoding ${lines.map((line) => JSON.stringify(line)).join(' + ')}`, () => withClient(async (client) => {
      const chunked = `${chatText.length.toString(16)}\r\n${chatText}\r\n0\r\n\r\n`;
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json',
        ...lines.map((line) => `Transfer-Encoding: ${line}`),
      ], chunked));
      const res = await client.readResponse();
      const error = assertError(res, status, 'invalid_request_error', code);
      assert.match(error.message, message);
    }));
  }

  /* Content-Encoding lines of a body the gateway reads, and the coding
   * the 415 names. */
  const CONTENT_CODINGS = [
    [['gzip'], 'gzip'],
    [['GZIP'], 'GZIP'],
    [['identity, br'], 'br'],
    [['identity', 'deflate'], 'deflate'],
  ];
  for (const [lines, coding] of CONTENT_CODINGS) {
    it(`answers 415 to Content-Encoding ${lines.map((line) => JSON.stringify(line)).join(' + ')}`, async () => {
      const id = `content-coding-${coding}`;
      const body = zlib.gzipSync(chatText);
      const res = await request({
        port: gw.port, method: 'POST', path: '/v1/chat/completions', body,
        headers: { 'content-type': 'application/json', 'content-encoding': lines, 'x-request-id': id },
      });
      const error = assertError(res, 415, 'invalid_request_error', 'unsupported_content_encoding');
      assert.equal(error.message, `the request body has Content-Encoding "${coding}"; ` +
        'the gateway reads request bodies and accepts only identity (uncompressed)');
      // RFC 9110 section 15.5.16: the response names what is accepted.
      assert.equal(res.headers['accept-encoding'], 'identity');
      const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id'] === id);
      assert.equal(forwarded.length, 0, 'the coded request reached the mock');
    });
  }

  // The head decides the 415, so a client that waits for 100 Continue gets
  // it instead, and sends no body that would be read for nothing.
  it('answers 415 to Content-Encoding before 100 Continue', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json', 'Content-Encoding: br',
      `Content-Length: ${chatText.length}`, 'Expect: 100-continue',
      'X-Request-Id: content-coding-expect',
    ]));
    const res = await client.readResponse();
    const error = assertError(res, 415, 'invalid_request_error', 'unsupported_content_encoding');
    assert.match(error.message, /Content-Encoding "br"/);
    assert.equal(res.header('accept-encoding'), 'identity');
    assert.ok(await client.waitClosed(), 'the connection stayed open after the 415');
    const entry = await gw.accessFor('content-coding-expect');
    assert.equal(entry.termination, 'GR');
  }));

  // A body the gateway forwards unread keeps its coding, and its 100.
  it('sends 100 Continue to a coded body it forwards unread', () => withClient(async (client) => {
    const body = zlib.gzipSync('raw bytes');
    await client.write(rawRequest('POST', '/v1/files', [
      'Host: 127.0.0.1', 'Content-Type: application/octet-stream', 'Content-Encoding: gzip',
      `Content-Length: ${body.length}`, 'Expect: 100-continue',
    ]));
    assert.equal((await client.readResponse()).status, 100);
  }));

  it('takes Content-Encoding: identity', async () => {
    const res = await request({
      port: gw.port, method: 'POST', path: '/v1/chat/completions', body: chat,
      headers: { 'content-encoding': 'Identity' },
    });
    assert.equal(res.status, 200, res.text);
  });

  it('rejects Transfer-Encoding in HTTP/1.0', () => withClient(async (client) => {
    // HTTP/1.0 defines no Transfer-Encoding, so an intermediary may have
    // framed this body another way: the message is faulty and the
    // connection closes, keep-alive asked for or not.
    const chunked = `${chatText.length.toString(16)}\r\n${chatText}\r\n0\r\n\r\n`;
    await client.write('POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\n' +
      'X-Request-Id: http10-chunked\r\nContent-Type: application/json\r\n' +
      `Transfer-Encoding: chunked\r\n\r\n${chunked}`);
    const res = await client.readResponse();
    const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
    assert.match(error.message, /HTTP\/1\.0 request has Transfer-Encoding, which HTTP\/1\.0 does not define/);
    assert.ok(await client.waitClosed(), 'the connection stayed open after the 400');
    const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id'] === 'http10-chunked');
    assert.equal(forwarded.length, 0, 'the request reached the mock');
  }));

  it('answers 408 when the head is too slow', () => withClient(async (client) => {
    await client.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: slow-head\r\n');
    const res = await client.readResponse();
    const error = assertError(res, 408, 'invalid_request_error', 'request_timeout');
    assert.equal(error.message, 'the client did not send the whole request head within ' +
      'limits.client_header_timeout (1s)');
    assert.ok(await client.waitClosed(), 'the connection stayed open after the 408');
    const entry = await gw.waitForAccess((e) => e.status === 408 && e.termination === 'cR',
      { message: 'an access-log line with status 408 and termination cR' });
    assert.equal(entry.upstream_status, null);
  }));

  it('answers 408 when the body is too slow', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json',
      `Content-Length: ${chatText.length}`, 'X-Request-Id: slow-body',
    ], chatText.slice(0, 10)));
    const res = await client.readResponse();
    const error = assertError(res, 408, 'invalid_request_error', 'request_timeout');
    assert.equal(error.message, 'the client sent no more of the request body for ' +
      'limits.client_body_timeout (1s)');
    const entry = await gw.accessFor('slow-body');
    assert.equal(entry.status, 408);
    assert.equal(entry.termination, 'cR');
  }));

  it('does not forward a request whose client left mid-body', async () => {
    const before = (await mock.requests()).length;
    await withClient(async (client) => {
      await client.write(rawRequest('POST', '/v1/chat/completions', [
        'Host: 127.0.0.1', 'Content-Type: application/json', `Content-Length: ${chatText.length}`,
      ], chatText.slice(0, 10)));
    });
    const entry = await gw.waitForAccess((e) => e.termination === 'CR',
      { message: 'an access-log line with termination CR' });
    assert.equal(entry.upstream_status, null);
    assert.equal((await mock.requests()).length, before, 'the partial request reached the mock');
  });
});

/* A stream far larger than what the sockets between the mock and the
 * client can hold (a few MiB each way), so that a client that does not read
 * makes the gateway queue output and stop reading the upstream. */
const HUGE_STREAM = 'events=40;size=32000000';

/* POST a chat stream with node:http. Resolves to the response, unread. */
function postStream(port, mockOptions, requestId) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false,
      headers: { 'content-type': 'application/json', 'x-mock': mockOptions, 'x-request-id': requestId },
    }, resolve);
    req.on('error', reject);
    req.end(JSON.stringify({ ...chat, stream: true }));
  });
}

/* The body of a response, read to its end. */
function readBody(res) {
  return new Promise((resolve, reject) => {
    const parts = [];
    res.on('data', (b) => parts.push(b));
    res.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    res.on('error', reject);
  });
}

/* The generated text of a chat stream, events in order. */
function streamText(body) {
  const { events, rest } = splitEvents(body);
  assert.equal(rest, '', 'the stream ends inside an event');
  assert.equal(eventData(events.at(-1)), '[DONE]');
  return events.slice(0, -1).map((e) => JSON.parse(eventData(e)))
    .map((j) => j.choices?.[0]?.delta?.content ?? '').join('');
}

describe('slow readers', () => {
  afterEach(stopAll);

  it('closes a non-reading client after send_timeout', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { limits: { send_timeout: '300ms' } }));

    const socket = net.connect(gw.port, '127.0.0.1');
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.on('error', () => {});
    socket.pause();
    socket.write(rawPost('/v1/chat/completions', { ...chat, stream: true },
      [`x-mock: ${HUGE_STREAM}`, 'X-Request-Id: reads-nothing']));

    const entry = await gw.accessFor('reads-nothing');
    assert.equal(entry.termination, 'cD');
    assert.equal(entry.status, 200);
    assert.ok(entry.bytes_out > 0, 'no response byte was counted as sent');

    // Had the gateway kept reading while the client did not, the mock
    // would have written the whole stream out.
    const stats = await waitFor(async () => {
      const s = await mock.stats();
      return s.responses_aborted >= 1 && s;
    }, { message: 'the mock to see its stream aborted' });
    assert.equal(stats.responses_completed, 0);
    socket.destroy();
  });

  it('relays a whole stream to a paused reader', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));

    const res = await postStream(gw.port, HUGE_STREAM, 'reads-late');
    assert.equal(res.statusCode, 200);
    res.pause();
    // Long enough for the gateway to fill the client's socket and queue the
    // rest. A shorter wait tests less but cannot fail the test.
    await new Promise((resolve) => setTimeout(resolve, 300));
    res.resume();
    const viaGateway = streamText(await readBody(res));

    const direct = await postStream(mock.port, HUGE_STREAM, 'reads-late-direct');
    assert.equal(viaGateway, streamText(await readBody(direct)));

    const entry = await gw.accessFor('reads-late');
    assert.equal(entry.termination, '--');
    await gw.stop();
  });
});

/* The resident memory of process pid, in bytes. */
function residentBytes(pid) {
  return Number(/^VmRSS:\s*(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
}

/* The inode of the gateway's end of the connection from local port
 * clientPort to the gateway's port, from /proc/net/tcp. */
function socketInode(port, clientPort) {
  const hex = (n) => n.toString(16).toUpperCase().padStart(4, '0');
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && f[1].endsWith(`:${hex(port)}`) && f[2].endsWith(`:${hex(clientPort)}`))
      return f[9];
  }
  return null;
}

/* Whether process pid asks any of its epoll sets to report input on the
 * socket of inode: the fd of that socket appears as a "tfd:" line with
 * EPOLLIN (1) in its events in the fdinfo of an epoll descriptor. */
function pollsForInput(pid, inode) {
  const fds = fs.readdirSync(`/proc/${pid}/fd`);
  const fd = fds.find((n) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${n}`) === `socket:[${inode}]`;
    } catch {
      return false;           // closed since the listing
    }
  });
  if (fd === undefined)
    return false;
  const watch = new RegExp(`^tfd:\\s+${fd}\\s+events:\\s+([0-9a-f]+)`, 'm');
  return fds.some((n) => {
    let info;
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${n}`, 'utf8');
    } catch {
      return false;
    }
    const m = watch.exec(info);
    return m !== null && (parseInt(m[1], 16) & 1) !== 0;
  });
}

describe('pipelining clients', () => {
  afterEach(stopAll);

  // One client sends 64 MiB of pipelined requests and reads no response.
  // Once the first responses fill the socket, the gateway must stop
  // reading rather than hold the rest of the requests in memory. Its
  // memory grew by 0.4 MiB, and by 19 MiB under AddressSanitizer, whose
  // quarantine keeps what the requests answered before then freed.
  it('stops reading a non-reading client', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));
    const one = rawRequest('GET', '/v1/models', ['Host: 127.0.0.1']);
    const flood = Buffer.alloc(Math.ceil(64 * 1024 * 1024 / one.length) * one.length, one);

    const socket = net.connect(gw.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.pause();
    const inode = await waitFor(() => socketInode(gw.port, socket.localPort),
      { message: 'the gateway to accept the connection' });
    const before = residentBytes(gw.child.pid);
    let written = false;
    socket.write(flood, () => { written = true; });

    await waitFor(() => written || !pollsForInput(gw.child.pid, inode),
      { timeoutMs: 30000, message: 'the gateway to stop reading the connection' });
    const grown = residentBytes(gw.child.pid) - before;
    assert.ok(grown < 32 * 1024 * 1024,
      `the gateway's memory grew by ${(grown / 1048576).toFixed(1)} MiB under the flood`);
    assert.equal(written, false, 'the gateway read all 64 MiB of pipelined requests');
    socket.destroy();
  });

  // More pipelined requests than the gateway reads ahead: reading stops
  // and resumes, and every response comes, in order.
  it('answers many pipelined requests in order', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));
    const ids = Array.from({ length: 2000 }, (_, i) => `pipelined-${i}`);
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(ids.map((id) => rawRequest('GET', '/v1/models',
        ['Host: 127.0.0.1', `X-Request-Id: ${id}`])).join(''));
      for (const id of ids) {
        const res = await client.readResponse();
        assert.equal(res.status, 200, id);
        assert.equal(res.header('x-request-id'), id);
      }
    } finally {
      client.destroy();
    }
  });
});

describe('requests a route for any path forwards', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    // The path prefix would turn an asterisk-form target into "/openai*".
    gw = await startGateway({
      backends: { mock: mockBackend(mock, { url: `${mock.url}/openai` }) },
      routes: [{ name: 'any', backends: ['mock'] }],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('passes the request on unchanged, since it has no body to read', async () => {
    const res = await request({
      port: gw.port, method: 'GET', path: '/v1/files',
      headers: { 'content-encoding': 'gzip', 'x-request-id': 'bodiless-coded' },
    });
    assert.notEqual(res.status, 415, res.text);
    const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id'] === 'bodiless-coded');
    assert.equal(forwarded.length, 1, 'the request did not reach the mock');
    assert.equal(forwarded[0].headers['content-encoding'], 'gzip');
    assert.equal(forwarded[0].path, '/openai/v1/files');
  });

  it('answers OPTIONS * itself, as Envoy does', async () => {
    const client = await RawClient.connect(gw.port);
    try {
      await client.write('OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: options-asterisk\r\n\r\n');
      const res = await client.readResponse();
      const error = assertError(res, 404, 'invalid_request_error', 'route_not_found');
      assert.match(error.message, /^OPTIONS \* is not forwarded: it asks about the server as a whole/);
    } finally {
      client.destroy();
    }
    const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id'] === 'options-asterisk');
    assert.deepEqual(forwarded.map((r) => r.path), [], 'OPTIONS * reached the upstream');
  });
});
