// TLS on both sides: an HTTPS upstream verified against a CA made for the
// test, and a TLS listener on the gateway.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, curl, curlPost, eventData, freePort, stopAll, makeCertificates,
  makeTempDir, openStream, rawPost, request, splitEvents, startGateway, startMock, waitFor,
} from './lib/harness.mjs';
import { assertError, normalizeVolatile } from './lib/checks.mjs';
import { parseSamples, promtoolCheck, scrape, valueOf } from './lib/prometheus.mjs';

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

/* The SHA-256 fingerprint of the certificate in a PEM file, as node:tls
 * reports a peer's. */
function fingerprintOf(file) {
  return new crypto.X509Certificate(fs.readFileSync(file)).fingerprint256;
}

/* Connect to the TLS listener on port without verifying it, and return
 * the fingerprint of the certificate it presents. */
async function servedFingerprint(port) {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
  try {
    await once(socket, 'secureConnect');
    return socket.getPeerCertificate().fingerprint256;
  } finally {
    socket.destroy();
  }
}

/* Certificates renewed as certbot renews them: new files at the same
 * paths, then a reload. */
describe('TLS files on reload', () => {
  let first;
  let second;
  let third;
  let upstream;
  let live;
  let mock;
  let gw;
  let port;
  let openBeforeReload;

  const copy = (from, to) => fs.copyFileSync(from, path.join(live, to));
  const chatURL = () => `https://localhost:${port}/v1/chat/completions`;
  const verified = (ca) => ['--resolve', `localhost:${port}:127.0.0.1`, '--cacert', ca];

  before(async () => {
    first = makeCertificates(makeTempDir(), 'first test CA');
    second = makeCertificates(makeTempDir(), 'second test CA');
    third = makeCertificates(makeTempDir(), 'third test CA');
    upstream = makeCertificates(makeTempDir(), 'upstream test CA');
    live = makeTempDir();
    copy(first.cert, 'server.pem');
    copy(first.key, 'server.key');
    copy(first.ca, 'upstream-ca.pem');       // not the upstream's CA yet
    mock = await startMock({ tls: upstream });
    port = await freePort();
    gw = await startGateway({
      listen: [{ address: `127.0.0.1:${port}`,
        tls: { cert: path.join(live, 'server.pem'), key: path.join(live, 'server.key') } }],
      backends: {
        mock: { url: `https://localhost:${mock.port}`, tls: { ca_file: path.join(live, 'upstream-ca.pem') } },
      },
      routes: [chatRoute('gpt-*', 'mock')],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(async () => {
    openBeforeReload?.destroy();
    await stopAll();
  });

  it('serves the certificate of the start', async () => {
    assert.equal(await servedFingerprint(port), fingerprintOf(first.cert));
    openBeforeReload = await RawClient.connect(port, { tls: { ca: first.ca, servername: 'localhost' } });
  });

  it('answers 502 before the CA file renewal', async () => {
    gw.expectErrors(/certificate|verify|tls|ssl|handshake/i);
    const res = await curl([...verified(first.ca), ...curlPost(chatURL(), chat('gpt-4o'))]);
    assertError(res, 502, 'upstream_error', 'upstream_failed');
  });

  it('reloads files renewed at the same paths', async () => {
    copy(second.cert, 'server.pem');
    copy(second.key, 'server.key');
    copy(upstream.ca, 'upstream-ca.pem');
    assert.equal(await gw.reload(gw.config), 'reloaded');
    assert.equal(await servedFingerprint(port), fingerprintOf(second.cert));
    const res = await curl([...verified(second.ca), ...curlPost(chatURL(), chat('gpt-4o'))]);
    assert.equal(res.status, 200, `${res.stderr}${res.text}`);
  });

  it('keeps an open connection on its certificate', async () => {
    assert.equal(openBeforeReload.socket.getPeerCertificate().fingerprint256, fingerprintOf(first.cert));
    await openBeforeReload.write(rawPost('/v1/chat/completions', chat('gpt-4o')));
    const res = await openBeforeReload.readResponse();
    assert.equal(res.status, 200, res.text);
  });

  it('keeps the certificate when new files are unusable', async () => {
    const key = path.join(live, 'server.key');
    gw.expectErrors(/listen\[0\]\.tls\.key|reload of .* failed/);
    copy(third.key, 'server.key');
    const from = gw.stderr.length;
    assert.equal(await gw.reload(gw.config), 'failed');
    const line = await gw.waitForLog(/listen\[0\]\.tls\.key: /, { from });
    assert.ok(line.includes(`"${key}"`), line);
    assert.match(line, /key values mismatch/);
    assert.equal(await servedFingerprint(port), fingerprintOf(second.cert));
    copy(second.key, 'server.key');
  });

  it('reloads a certificate from new paths', async () => {
    const config = structuredClone(gw.config);
    config.listen[0].tls = { cert: third.cert, key: third.key };
    const from = gw.stderr.length;
    assert.equal(await gw.reload(config), 'reloaded');
    assert.equal(await servedFingerprint(port), fingerprintOf(third.cert));
    assert.deepEqual(gw.stderr.slice(from).filter((l) => l.includes('[warn]')), []);
  });
});

/* Each failed handshake on a TLS listener gets an info line with the
 * client and OpenSSL's reason, and a count by reason. Fewer failures
 * happen here than the log lets through in a second, so every one has its
 * line. */
describe('failed TLS handshakes', () => {
  let certs;
  let mock;
  let gw;
  let port;
  let plainPort;

  before(async () => {
    certs = makeCertificates(makeTempDir());
    mock = await startMock();
    port = await freePort();
    plainPort = await freePort();
    gw = await startGateway({
      listen: [{ address: `127.0.0.1:${port}`, tls: { cert: certs.cert, key: certs.key } },
        `127.0.0.1:${plainPort}`],
      limits: { client_header_timeout: '1s' },
      backends: { mock: { url: mock.url } },
      routes: [chatRoute('gpt-*', 'mock')],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  const failures = async (reason) => valueOf(parseSamples((await scrape(gw)).text),
    'tollgate_tls_handshake_errors_total', { listener: `127.0.0.1:${port}`, reason });

  /* Run fail(), which makes one handshake fail, and return the log line
   * of that failure once the counter of reason has counted it. */
  async function expectFailure(reason, fail) {
    const before = await failures(reason);
    const from = gw.stderr.length;
    const clientPort = await fail();
    const line = await gw.waitForLog(new RegExp(`\\[info\\] client 127\\.0\\.0\\.1:${clientPort ?? '\\d+'}: ` +
      `TLS handshake on 127\\.0\\.0\\.1:${port} failed \\(${reason}\\): `), { from });
    await waitFor(async () => await failures(reason) === before + 1,
      { message: `tollgate_tls_handshake_errors_total{reason="${reason}"} to count the failure` });
    return line;
  }

  /* Send bytes on a plain socket to the TLS port, and end the connection
   * when close is set. Resolves to the client's port once the gateway has
   * closed it. */
  async function sendRaw(bytes, { close }) {
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    const clientPort = socket.localPort;
    socket.on('error', () => {});
    socket.resume();
    socket.write(bytes);
    if (close)
      socket.end();
    await once(socket, 'close');
    return clientPort;
  }

  it('logs and counts a TLS 1.0 client', async () => {
    const line = await expectFailure('protocol', async () => {
      const socket = tls.connect({
        host: '127.0.0.1', port, minVersion: 'TLSv1', maxVersion: 'TLSv1',
        ciphers: 'DEFAULT@SECLEVEL=0', rejectUnauthorized: false,
      });
      const [err] = await once(socket, 'error');
      assert.match(err.code, /PROTOCOL_VERSION/);
      return undefined;
    });
    assert.match(line, /unsupported protocol/);
  });

  it('logs and counts an untrusted certificate', async () => {
    const line = await expectFailure('certificate', async () => {
      const res = await curl(['--resolve', `localhost:${port}:127.0.0.1`,
        ...curlPost(`https://localhost:${port}/v1/chat/completions`, chat('gpt-4o'))]);
      assert.equal(res.code, 60, res.stderr);
      return undefined;
    });
    assert.match(line, /alert unknown ca/);
  });

  it('logs and counts a malformed ClientHello', async () => {
    // A handshake record whose message type and length are nonsense.
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]);
    const line = await expectFailure('other', () => sendRaw(hello, { close: false }));
    assert.match(line, /error:[0-9A-F]+:SSL routines::/);
  });

  it('logs and counts a client leaving mid-handshake', async () => {
    const partial = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x50, 0x01]);
    await expectFailure('closed', () => sendRaw(partial, { close: true }));
  });

  it('logs and counts a handshake timeout', async () => {
    const partial = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x50, 0x01]);
    const line = await expectFailure('timeout', () => sendRaw(partial, { close: false }));
    assert.match(line, /not done within limits\.client_header_timeout/);
  });

  it('ignores a connection that sends nothing', async () => {
    const total = async () => {
      const samples = parseSamples((await scrape(gw)).text);
      return ['protocol', 'certificate', 'closed', 'timeout', 'other'].reduce((sum, reason) =>
        sum + valueOf(samples, 'tollgate_tls_handshake_errors_total', { listener: `127.0.0.1:${port}`, reason }), 0);
    };
    const before = await total();
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    socket.end();
    await once(socket, 'close');
    // The gateway closed the empty connection before 'close' fired, so a
    // count of it would show by now. A good handshake must not count either.
    const res = await curl(['--resolve', `localhost:${port}:127.0.0.1`, '--cacert', certs.ca,
      ...curlPost(`https://localhost:${port}/v1/chat/completions`, chat('gpt-4o'))]);
    assert.equal(res.status, 200, res.stderr);
    assert.equal(await total(), before);
  });

  it('lists every reason per TLS listener', async () => {
    const { text } = await scrape(gw);
    const samples = parseSamples(text);
    for (const reason of ['protocol', 'certificate', 'closed', 'timeout', 'other'])
      assert.ok(samples.has(`tollgate_tls_handshake_errors_total{listener="127.0.0.1:${port}",reason="${reason}"}`), reason);
    assert.doesNotMatch(text, new RegExp(`tollgate_tls_handshake_errors_total\\{listener="127\\.0\\.0\\.1:${plainPort}"`));
    const checked = await promtoolCheck(text);
    assert.equal(checked.code, 0, checked.output);
  });
});
