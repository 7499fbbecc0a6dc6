// The client side of HTTP/1.1: keep-alive, pipelining, HTTP/1.0,
// 100-continue, request framing errors and slow clients.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, basicConfig, eventData, stopAll, rawPost, rawRequest,
  splitEvents, startGateway, startMock,
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
    assertError(res, 400, 'invalid_request_error', 'bad_request');
  }));

  it('rejects two different Content-Length values', () => withClient(async (client) => {
    await client.write(rawRequest('POST', '/v1/chat/completions', [
      'Host: 127.0.0.1', 'Content-Type: application/json',
      `Content-Length: ${chatText.length}`, `Content-Length: ${chatText.length + 1}`,
    ], chatText));
    const res = await client.readResponse();
    assertError(res, 400, 'invalid_request_error', 'bad_request');
  }));

  it('answers 408 when the head is too slow', () => withClient(async (client) => {
    await client.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: slow-head\r\n');
    const res = await client.readResponse();
    assertError(res, 408, 'invalid_request_error', 'request_timeout');
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
    assertError(res, 408, 'invalid_request_error', 'request_timeout');
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
