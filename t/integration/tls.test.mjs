// TLS on both sides: an HTTPS upstream verified against a CA made for the
// test, and a TLS listener on the gateway.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, curl, curlPost, eventData, freePort, stopAll, makeCertificates,
  makeTempDir, openStream, rawPost, request, splitEvents, startGateway, startMock, waitFor,
} from './lib/harness.mjs';
import { assertError, normalizeVolatile } from './lib/checks.mjs';
import { parseSamples, valueOf } from './lib/prometheus.mjs';

const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hello' }] });

function chatRoute(model, backend) {
  return { name: backend, match: { path: '/v1/chat/completions', model }, backends: [backend] };
}

describe('HTTPS upstream', () => {
  let certs;
  let otherCerts;
  let mock;
  let gw;
  let chatURL;
  let closedPort;

  before(async () => {
    closedPort = await freePort();
    certs = makeCertificates(makeTempDir());
    otherCerts = makeCertificates(makeTempDir(), 'unrelated test CA');
    mock = await startMock({ tls: certs });
    const byName = `https://localhost:${mock.port}`;
    gw = await startGateway({
      backends: {
        byname: { url: byName, tls: { ca_file: certs.ca } },
        byip: { url: `https://127.0.0.1:${mock.port}`, tls: { ca_file: certs.ca } },
        wrongca: { url: byName, tls: { ca_file: otherCerts.ca } },
        systemca: { url: byName },
        noverify: { url: byName, tls: { ca_file: otherCerts.ca, verify: false } },
        closed: { url: `https://127.0.0.1:${closedPort}` },
      },
      routes: [
        chatRoute('by-name', 'byname'),
        chatRoute('by-ip', 'byip'),
        chatRoute('wrong-ca', 'wrongca'),
        chatRoute('system-ca', 'systemca'),
        chatRoute('no-verify', 'noverify'),
        chatRoute('closed', 'closed'),
      ],
    });
    chatURL = `${gw.baseURL}/v1/chat/completions`;
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('proxies to https://localhost with its CA', async () => {
    const res = await curl(curlPost(chatURL, chat('by-name')));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json().object, 'chat.completion');
    const seen = await mock.lastRequest();
    assert.equal(seen.headers.host, `localhost:${mock.port}`);
  });

  it('proxies to https://127.0.0.1 with its CA', async () => {
    const res = await curl(curlPost(chatURL, chat('by-ip')));
    assert.equal(res.status, 200, res.text);
  });

  it('relays a stream over TLS', async () => {
    const body = { ...chat('by-name'), stream: true };
    const header = ['x-mock: events=8;unicode=1'];
    const res = await curl(curlPost(chatURL, body, header));
    const direct = await curl(['--cacert', certs.ca, '--resolve', `localhost:${mock.port}:127.0.0.1`,
      ...curlPost(`https://localhost:${mock.port}/v1/chat/completions`, body, header)]);
    assert.equal(direct.status, 200, direct.stderr);
    assert.equal(res.status, 200);
    assert.equal(eventData(splitEvents(res.text).events.at(-1)), '[DONE]');
    assert.equal(normalizeVolatile(res.text), normalizeVolatile(direct.text));
  });

  it('reuses the TLS connection', async () => {
    const before = (await mock.requests()).length;
    assert.equal((await curl(curlPost(chatURL, chat('by-name')))).status, 200);
    assert.equal((await curl(curlPost(chatURL, chat('by-name')))).status, 200);
    const requests = (await mock.requests()).slice(before);
    assert.equal(requests.length, 2);
    assert.equal(requests[1].connection, requests[0].connection);
  });

  it('answers 502 when the certificate has another CA', async () => {
    gw.expectErrors(/certificate|verify|tls|ssl|handshake/i);
    const res = await curl(curlPost(chatURL, chat('wrong-ca')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.termination, 'SC');
  });

  it('verifies against the system store by default', async () => {
    gw.expectErrors(/certificate|verify|tls|ssl|handshake/i);
    const res = await curl(curlPost(chatURL, chat('system-ca')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
  });

  it('reports a refused connection, not a TLS error', async () => {
    gw.expectErrors(/refused/);
    const res = await curl(curlPost(chatURL, chat('closed')));
    assertError(res, 502, 'upstream_error', 'upstream_failed');
    const line = await gw.waitForLog(new RegExp(`127\\.0\\.0\\.1:${closedPort}: Connection refused`));
    assert.doesNotMatch(line, /TLS/);
  });

  it('skips verification with verify false', async () => {
    const res = await curl(curlPost(chatURL, chat('no-verify')));
    assert.equal(res.status, 200, res.text);
  });
});

describe('TLS listener', () => {
  let certs;
  let mock;
  let gw;
  let port;

  before(async () => {
    certs = makeCertificates(makeTempDir());
    mock = await startMock();
    port = await freePort();
    gw = await startGateway({
      listen: [{ address: `127.0.0.1:${port}`, tls: { cert: certs.cert, key: certs.key } }],
      backends: { mock: { url: mock.url } },
      routes: [chatRoute('gpt-*', 'mock')],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  const url = () => `https://localhost:${port}/v1/chat/completions`;
  const resolve = () => ['--resolve', `localhost:${port}:127.0.0.1`];

  it('serves HTTPS to curl with the CA', async () => {
    const res = await curl([...resolve(), '--cacert', certs.ca, ...curlPost(url(), chat('gpt-4o'))]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.status, 200);
    assert.equal(res.json().object, 'chat.completion');
    const seen = await mock.lastRequest();
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
  });

  it('fails verification without the CA', async () => {
    const res = await curl([...resolve(), ...curlPost(url(), chat('gpt-4o'))]);
    assert.equal(res.code, 60, `curl exit code (60 is a certificate problem): ${res.stderr}`);
  });

  it('streams over TLS with chunked framing', async () => {
    const client = await RawClient.connect(port, { tls: { ca: certs.ca, servername: 'localhost' } });
    try {
      await client.write(rawPost('/v1/chat/completions', { ...chat('gpt-4o'), stream: true }));
      const res = await client.readResponse();
      assert.equal(res.status, 200);
      assert.equal(res.header('transfer-encoding'), 'chunked');
      assert.equal(eventData(splitEvents(res.text).events.at(-1)), '[DONE]');
    } finally {
      client.destroy();
    }
  });

  it('streams to node:https', async () => {
    const stream = await openStream({
      port, body: { ...chat('gpt-4o'), stream: true },
      tls: { ca: certs.ca, servername: 'localhost' },
    });
    assert.equal(stream.status, 200);
    const events = await stream.rest();
    assert.equal(events.filter((e) => e.data !== null).at(-1).data, '[DONE]');
  });

  it('answers plain HTTP on the TLS port with a plain 400, then closes', async () => {
    // OpenSSL alone would fail the handshake and close without a word.
    const id = 'tls-plain-http';
    const plainHttpErrors = async () => valueOf(
      parseSamples((await request({ port: gw.adminPort, path: '/metrics' })).text),
      'tollgate_gateway_errors_total', { route: 'none', reason: 'plain_http_on_tls' });
    const before = await plainHttpErrors();
    const client = await RawClient.connect(port);
    try {
      await client.write(rawPost('/v1/chat/completions', chat('gpt-4o'), [`X-Request-Id: ${id}`]));
      const res = await client.readResponse();
      const error = assertError(res, 400, 'invalid_request_error', 'bad_request');
      assert.match(error.message, /plain HTTP to a port that takes HTTPS only; send it over TLS/);
      assert.equal(res.header('connection'), 'close');
      assert.ok(await client.waitClosed(), 'the TLS port kept a plain HTTP connection open');
      assert.equal(client.buffer.length, 0, 'a second response followed the 400');
    } finally {
      client.destroy();
    }
    const entry = await gw.waitForAccess((e) => e.client.endsWith(`:${client.localPort}`));
    assert.equal(entry.status, 400);
    // A reason of its own, apart from a malformed request line.
    assert.equal(entry.reason, 'plain_http_on_tls');
    assert.equal(entry.termination, 'GR');
    const forwarded = (await mock.requests()).filter((r) => r.headers['x-request-id'] === id);
    assert.deepEqual(forwarded, [], 'the plain request reached the mock');
    await waitFor(async () => await plainHttpErrors() === before + 1,
      { message: 'tollgate_gateway_errors_total{reason="plain_http_on_tls"} to count the request' });
  });

  it('serves TLS after a pause before the ClientHello', async () => {
    // The gateway waits for the first byte before it picks TLS or plain.
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const secure = tls.connect({ socket, ca: fs.readFileSync(certs.ca), servername: 'localhost' });
    await once(secure, 'secureConnect');
    const client = new RawClient(secure);
    try {
      await client.write(rawPost('/v1/chat/completions', chat('gpt-4o')));
      const res = await client.readResponse();
      assert.equal(res.status, 200, res.text);
    } finally {
      client.destroy();
    }
  });
});
