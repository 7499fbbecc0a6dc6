// The access log: one JSON object per request with the documented fields,
// exact byte counts and termination codes; written to a file or turned off.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, basicConfig, curl, curlPost, freePort, stopAll, makeTempDir,
  mockBackend, openaiRoutes, rawPost, request, startGateway, startMock, waitFor,
} from './lib/harness.mjs';
import { parseSamples, valueOf } from './lib/prometheus.mjs';

const FIELDS = ['time', 'request_id', 'client', 'method', 'path', 'route', 'backend', 'model',
  'stream', 'status', 'upstream_status', 'duration', 'ttft', 'bytes_in', 'bytes_out', 'termination',
  'reason'];

const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

describe('access log', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    const closedPort = await freePort();
    gw = await startGateway({
      backends: {
        mock: mockBackend(mock, { timeouts: { first_byte: '500ms' } }),
        dead: { url: `http://127.0.0.1:${closedPort}` },
      },
      routes: [
        { name: 'dead', match: { path: '/v1/chat/completions', model: 'dead-model' }, backends: ['dead'] },
        ...openaiRoutes('mock', 'gpt-*'),
      ],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  /* Send one request on its own connection; return the response, the
   * connection's byte counts and the access-log entry. */
  async function exchange(body, headers = []) {
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawPost('/v1/chat/completions', body, ['Connection: close', ...headers]));
      const res = await client.readResponse();
      await client.waitClosed();
      const entry = await gw.accessFor(res.header('x-request-id'));
      return { res, entry, sent: client.sent, received: client.received, localPort: client.localPort };
    } finally {
      client.destroy();
    }
  }

  it('logs a request with every field', async () => {
    const { res, entry, sent, received, localPort } = await exchange(chat);
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(entry).sort(), [...FIELDS].sort());
    assert.match(entry.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(entry.time) - Date.now()) < 3600e3, `time ${entry.time} is not today`);
    assert.equal(entry.request_id, res.header('x-request-id'));
    assert.equal(entry.client, `127.0.0.1:${localPort}`);
    assert.equal(entry.method, 'POST');
    assert.equal(entry.path, '/v1/chat/completions');
    assert.equal(entry.route, 'chat');
    assert.equal(entry.backend, 'mock');
    assert.equal(entry.model, 'gpt-4o');
    assert.equal(entry.stream, false);
    assert.equal(entry.status, 200);
    assert.equal(entry.upstream_status, 200);
    assert.equal(typeof entry.duration, 'number');
    assert.ok(entry.duration >= 0, `duration ${entry.duration}`);
    assert.equal(entry.ttft, null, 'a response that is not a stream has a ttft');
    assert.equal(entry.bytes_in, sent, 'bytes_in is not the bytes the client sent');
    assert.equal(entry.bytes_out, received, 'bytes_out is not the bytes the client received');
    assert.equal(entry.termination, '--');
    assert.equal(entry.reason, null);
  });

  it('logs a stream with exact byte counts', async () => {
    const { res, entry, sent, received } = await exchange({ ...chat, stream: true }, ['x-mock: events=7']);
    assert.equal(res.status, 200);
    assert.equal(entry.stream, true);
    assert.equal(typeof entry.ttft, 'number');
    assert.ok(entry.ttft <= entry.duration, `ttft ${entry.ttft} is over the duration ${entry.duration}`);
    assert.equal(entry.bytes_in, sent);
    assert.equal(entry.bytes_out, received);
    assert.equal(entry.termination, '--');
  });

  it('writes one line per request', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat, [`X-Request-Id: one-line-${i}`]));
      assert.equal(res.status, 200);
      ids.push(`one-line-${i}`);
    }
    await gw.accessFor('one-line-4');
    for (const id of ids)
      assert.equal(gw.accessLog.filter((e) => e.request_id === id).length, 1, `lines for ${id}`);
    assert.ok(gw.accessLog.every((e) => !e.unparsable), 'a line on stdout is not JSON');
  });

  it('logs a 404 with null route and backend', async () => {
    const { res, entry } = await exchange({ ...chat, model: 'claude-3' });
    assert.equal(res.status, 404);
    assert.equal(entry.route, null);
    assert.equal(entry.backend, null);
    assert.equal(entry.model, 'claude-3');
    assert.equal(entry.upstream_status, null);
    assert.equal(entry.termination, 'GL');
  });

  it('logs a path that is not UTF-8', async () => {
    // jansson refuses invalid UTF-8, so such a path once cost the request
    // its log line. llhttp, built strict, now rejects bytes over 0x7F in
    // the target, so the request ends at its first line: the line logs
    // the 400 without a path (check_json_writer tests the U+FFFD that
    // replaces such bytes in a logged string).
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(Buffer.concat([
        Buffer.from('GET /v1/'), Buffer.from([0xff, 0xfe]),
        Buffer.from(' HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: raw-path-bytes\r\n'
          + 'Connection: close\r\n\r\n'),
      ]));
      const res = await client.readResponse();
      assert.equal(res.status, 400);
    } finally {
      client.destroy();
    }
    const entry = await gw.waitForAccess((e) => e.client.endsWith(`:${client.localPort}`));
    assert.equal(entry.path, null);
    assert.equal(entry.status, 400);
  });

  it('logs a body without a model with a null model', async () => {
    const { res, entry } = await exchange({ messages: [] });
    assert.equal(res.status, 400);
    assert.equal(entry.model, null);
    assert.equal(entry.termination, 'GL');
  });

  it('logs GET /v1/models', async () => {
    const res = await curl([`${gw.baseURL}/v1/models`, '-H', 'X-Request-Id: list-models']);
    assert.equal(res.status, 200);
    const entry = await gw.accessFor('list-models');
    assert.equal(entry.method, 'GET');
    assert.equal(entry.path, '/v1/models');
    assert.equal(entry.status, 200);
    assert.equal(entry.upstream_status, null);
    assert.equal(entry.backend, null);
  });

  it('logs SC for a refused upstream', async () => {
    gw.expectErrors(/refused|connect/i);
    const { res, entry } = await exchange({ ...chat, model: 'dead-model' });
    assert.equal(res.status, 502);
    assert.equal(entry.termination, 'SC');
    assert.equal(entry.upstream_status, null);
  });

  it('logs sH for a first-byte timeout', async () => {
    gw.expectErrors(/timed out|timeout/i);
    const { res, entry } = await exchange(chat, ['x-mock: first_byte_delay=3s']);
    assert.equal(res.status, 504);
    assert.equal(entry.termination, 'sH');
  });

  it('logs sD for an idle timeout mid-stream', async () => {
    const idleMock = await startMock();
    const idleGw = await startGateway(basicConfig(idleMock, { backend: { timeouts: { idle: '500ms' } } }),
      { expectErrors: [/timed out|timeout|idle/i] });
    const client = await RawClient.connect(idleGw.port);
    let entry;
    try {
      await client.write(rawPost('/v1/chat/completions', { ...chat, stream: true },
        ['x-mock: events=3;stall_after=2', 'X-Request-Id: idle-mid-stream']));
      entry = await idleGw.accessFor('idle-mid-stream');
    } finally {
      client.destroy();
    }
    assert.equal(entry.status, 200);
    assert.equal(entry.termination, 'sD');
    await idleGw.stop();
  });
  it('keeps a long stream without long pauses', async () => {
    // Eight events 150ms apart take over a second with a 400ms idle timeout:
    // only a timer that counts from the latest read lets this stream finish.
    const idleMock = await startMock();
    const idleGw = await startGateway(basicConfig(idleMock, { backend: { timeouts: { idle: '400ms' } } }));
    const client = await RawClient.connect(idleGw.port);
    let entry;
    try {
      await client.write(rawPost('/v1/chat/completions', { ...chat, stream: true },
        ['x-mock: events=8;event_delay=150ms', 'X-Request-Id: busy-stream']));
      entry = await idleGw.accessFor('busy-stream');
    } finally {
      client.destroy();
    }
    assert.equal(entry.status, 200);
    assert.equal(entry.termination, '--');
    await idleGw.stop();
  });
});

describe('access log reasons', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(basicConfig(mock, { limits: { max_header: 2048, max_body: 4096 } }));
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  /* Send bytes on a connection of their own; return the status and the
   * access-log line of that connection. */
  async function rejected(bytes) {
    const client = await RawClient.connect(gw.port);
    let status;
    try {
      await client.write(bytes);
      status = (await client.readResponse()).status;
    } finally {
      client.destroy();
    }
    const entry = await gw.waitForAccess((e) => e.client.endsWith(`:${client.localPort}`));
    return { status, entry };
  }

  const head = (lines) => `${lines.join('\r\n')}\r\n\r\n`;

  // Each case: the request, the status, the reason, the method and the
  // path the line gives, and the termination code. A method or path is
  // null when the request ended before it was read whole or was not
  // valid. GR is a request rejected before it was read whole, GL one
  // rejected after.
  const cases = [
    ['a method that is not a token', head(['G@T /v1/models HTTP/1.1', 'Host: a']), 400,
      'bad_request_line', null, null, 'GR'],
    ['a version that is not HTTP/1.x', head(['GET /v1/models HTTX/1.1', 'Host: a']), 400,
      'bad_request_line', 'GET', '/v1/models', 'GR'],
    ['a request line over limits.max_header', head([`GET /v1/${'a'.repeat(3000)} HTTP/1.1`, 'Host: a']),
      431, 'request_header_too_large', 'GET', null, 'GR'],
    ['a header name with a space', head(['POST /v1/chat/completions HTTP/1.1', 'Bad Name: a']), 400,
      'bad_header', 'POST', '/v1/chat/completions', 'GR'],
    ['a head over limits.max_header', head(['POST /v1/chat/completions?a=1 HTTP/1.1', `X-Big: ${'a'.repeat(3000)}`]),
      431, 'request_header_too_large', 'POST', '/v1/chat/completions', 'GR'],
    ['a body over limits.max_body', head(['POST /v1/chat/completions HTTP/1.1', 'Host: a',
      'Content-Length: 5000']), 413, 'request_too_large', 'POST', '/v1/chat/completions', 'GR'],
    ['a malformed chunk', `${head(['POST /v1/chat/completions HTTP/1.1', 'Host: a',
      'Transfer-Encoding: chunked'])}zz\r\n`, 400, 'bad_chunked_body', 'POST', '/v1/chat/completions', 'GR'],
    ['a gzip body', `${head(['POST /v1/chat/completions HTTP/1.1', 'Host: a', 'Content-Encoding: gzip',
      'Content-Length: 2'])}{}`, 415, 'unsupported_content_encoding', 'POST', '/v1/chat/completions', 'GL'],
  ];

  for (const [what, bytes, status, reason, method, path, termination] of cases) {
    it(`gives the reason, method and path read for ${what}`, async () => {
      const { status: got, entry } = await rejected(bytes);
      assert.equal(got, status);
      assert.equal(entry.status, status);
      assert.equal(entry.reason, reason);
      assert.equal(entry.method, method);
      assert.equal(entry.path, path);
      assert.equal(entry.termination, termination);
    });
  }

  it('counts its own rejections apart from a backend\'s 4xx', async () => {
    const before = parseSamples((await request({ port: gw.adminPort, path: '/metrics' })).text);
    await rejected(head(['POST /v1/chat/completions HTTP/1.1', 'Host: a', 'Content-Encoding: gzip',
      'Content-Length: 2']) + '{}');
    const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat,
      ['x-mock: status=415', 'X-Request-Id: backend-415']));
    assert.equal(res.status, 415);
    const entry = await gw.accessFor('backend-415');
    assert.equal(entry.reason, null);
    assert.equal(entry.upstream_status, 415);

    const key = { route: 'none', reason: 'unsupported_content_encoding' };
    await waitFor(async () => {
      const now = parseSamples((await request({ port: gw.adminPort, path: '/metrics' })).text);
      return valueOf(now, 'tollgate_gateway_errors_total', key) ===
        valueOf(before, 'tollgate_gateway_errors_total', key) + 1 &&
        [...now.keys()].filter((k) => k.startsWith('tollgate_gateway_errors_total{')).every(
          (k) => !k.includes('route="chat"'));
    }, { message: 'one gateway 415 counted, and none for the backend\'s' });
  });
});

describe('access log destinations', () => {
  afterEach(stopAll);

  it('appends to a file', async () => {
    const mock = await startMock();
    const file = path.join(makeTempDir(), 'access.log');
    const gw = await startGateway(basicConfig(mock, { access_log: file }));
    for (let i = 0; i < 3; i++) {
      const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat, [`X-Request-Id: to-file-${i}`]));
      assert.equal(res.status, 200);
    }
    const lines = await waitFor(() => {
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      const all = text.split('\n').filter((l) => l !== '');
      return all.length >= 3 && all;
    }, { message: `three lines in ${file}` });
    assert.deepEqual(lines.map((l) => JSON.parse(l).request_id), ['to-file-0', 'to-file-1', 'to-file-2']);
    assert.equal(gw.accessLog.length, 0, 'access-log lines went to stdout too');
    await gw.stop();
  });

  it('writes nothing when false', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { access_log: false }));
    const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat));
    assert.equal(res.status, 200);
    await gw.stop();
    assert.deepEqual(gw.stdout, [], 'stdout is not empty');
  });
});

describe('access log buffering', () => {
  afterEach(stopAll);

  /* The request ids of the lines in file so far; throws on a line that is
   * not a whole JSON object. */
  function idsIn(file) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    assert.ok(text === '' || text.endsWith('\n'), `${file} ends inside a line`);
    return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l).request_id);
  }

  async function send(gw, id) {
    const res = await request({
      port: gw.port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'x-request-id': id }, body: chat,
    });
    assert.equal(res.status, 200);
  }

  /* Wait until /metrics counts n requests. A request's access-log line goes
   * into the worker's buffer before its metrics are recorded, and the
   * client may see the response before either, so only a counted request
   * surely has its line buffered. */
  async function waitCounted(gw, n) {
    await waitFor(async () => {
      const res = await request({ port: gw.adminPort, path: '/metrics' });
      const counted = [...parseSamples(res.text)]
        .filter(([key]) => key.startsWith('tollgate_requests_total{'))
        .reduce((sum, [, value]) => sum + value, 0);
      return counted >= n;
    }, { message: `${n} requests counted in /metrics` });
  }

  async function startBuffered(mock, file, settings) {
    return startGateway(basicConfig(mock, { access_log: file, ...settings }));
  }

  it('holds lines until the reload, then writes new ones after access_log_flush', async () => {
    const mock = await startMock();
    const file = path.join(makeTempDir(), 'access.log');
    const gw = await startBuffered(mock, file, { access_log_buffer: '64KiB', access_log_flush: '1h' });
    for (let i = 0; i < 3; i++)
      await send(gw, `held-${i}`);
    assert.deepEqual(idsIn(file), [], 'lines were written before the buffer filled or an hour passed');

    const config = JSON.parse(fs.readFileSync(gw.file, 'utf8'));
    assert.equal(await gw.reload({ ...config, access_log_flush: '200ms' }), 'reloaded');
    assert.deepEqual(await waitFor(() => idsIn(file).length >= 3 && idsIn(file),
      { message: 'the held lines after the reload' }), ['held-0', 'held-1', 'held-2']);

    // Nothing but the 200ms timer writes this one: the buffer is far from full.
    await send(gw, 'timed');
    await waitFor(() => idsIn(file).includes('timed'), { message: 'the line written by the flush timer' });
    await gw.stop();
  });

  it('writes every buffered line of every worker on SIGTERM', async () => {
    const mock = await startMock();
    const file = path.join(makeTempDir(), 'access.log');
    // A 2KiB buffer makes both workers write often while the requests run,
    // so their batches meet in the file. An hour's flush leaves the rest
    // for the shutdown, and the next test holds a line for it for certain.
    const gw = await startBuffered(mock, file, {
      workers: 2, access_log_buffer: '2KiB', access_log_flush: '1h',
    });
    const ids = Array.from({ length: 200 }, (_, i) => `term-${i}`);
    for (let i = 0; i < ids.length; i += 20)
      await Promise.all(ids.slice(i, i + 20).map((id) => send(gw, id)));

    await gw.stop();
    const written = idsIn(file);
    assert.equal(written.length, ids.length, 'lines lost or repeated');
    assert.deepEqual([...written].sort(), [...ids].sort());
  });

  it('writes buffered lines to the old file before SIGUSR1 reopens it', async () => {
    const mock = await startMock();
    const file = path.join(makeTempDir(), 'access.log');
    const gw = await startBuffered(mock, file, { access_log_flush: '1h' });
    await send(gw, 'before-rotation');
    await waitCounted(gw, 1);
    fs.renameSync(file, `${file}.1`);
    const from = gw.stderr.length;
    gw.signal('SIGUSR1');
    await gw.waitForLog(/access log .* reopened/, { from });
    assert.deepEqual(idsIn(`${file}.1`), ['before-rotation']);

    // Held by the hour's flush: only the shutdown writes it.
    await send(gw, 'after-rotation');
    await gw.stop();
    assert.deepEqual(idsIn(`${file}.1`), ['before-rotation']);
    assert.deepEqual(idsIn(file), ['after-rotation']);
  });

  it('writes each line at once with access_log_buffer 0', async () => {
    const mock = await startMock();
    const file = path.join(makeTempDir(), 'access.log');
    const gw = await startBuffered(mock, file, { access_log_buffer: 0, access_log_flush: '1h' });
    await send(gw, 'unbuffered');
    // A buffered line would wait an hour.
    await waitFor(() => idsIn(file).includes('unbuffered'), { message: 'the unbuffered line' });
    await gw.stop();
  });
});

describe('access log destinations that fail', () => {
  afterEach(stopAll);

  async function scrape(gw) {
    const res = await request({ port: gw.adminPort, path: '/metrics' });
    assert.equal(res.status, 200);
    return parseSamples(res.text);
  }

  async function send(gw) {
    const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions', body: chat });
    assert.equal(res.status, 200);
  }

  /* Send requests in batches until the gateway counts a dropped line,
   * because the destination is full and the workers' buffers are at their
   * bound. Every request must still get its response. */
  async function sendUntilDropped(gw) {
    for (let sent = 0; sent < 20000; sent += 50) {
      await Promise.all(Array.from({ length: 50 }, () => send(gw)));
      if (valueOf(await scrape(gw), 'tollgate_access_log_lines_dropped_total') > 0)
        return;
    }
    assert.fail('no access-log line was dropped after 20000 requests to a destination that reads nothing');
  }

  /* A pipe whose reader never reads: [read end, write end]. */
  function stuckPipe() {
    const fifo = path.join(makeTempDir(), 'stdout');
    execFileSync('mkfifo', [fifo]);
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    return [reader, fs.openSync(fifo, 'w')];
  }

  for (const kind of ['pipe', 'socket']) {
    it(`keeps serving and stops on SIGTERM when the stdout ${kind} is not read`, async () => {
      const mock = await startMock();
      let reader = null;
      let stdout = 'pipe';
      if (kind === 'pipe')
        [reader, stdout] = stuckPipe();
      const gw = await startGateway(basicConfig(mock, {
        workers: 2, access_log_buffer: '1KiB', drain_timeout: '1s',
      }), { stdout });
      try {
        if (kind === 'pipe')
          fs.closeSync(stdout);
        else
          gw.child.stdout.pause();     // node's stdio pipe is a socket pair

        await sendUntilDropped(gw);
        const health = await request({ port: gw.adminPort, path: '/healthz' });
        assert.equal(health.status, 200);

        gw.signal('SIGTERM');
        const { code } = await gw.waitExit();
        assert.equal(code, 0);
        assert.ok(gw.stderr.some((l) => /\[warn\] access log -: \d+ lines? (dropped|not written)/.test(l)),
          `no warning about lost lines:\n${gw.stderr.join('\n')}`);
        gw.checkErrors();
      } finally {
        if (reader !== null)
          fs.closeSync(reader);
      }
    });
  }

  it('counts failed writes and warns about them at most once per interval', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { access_log: '/dev/full', access_log_buffer: 0 }));
    const requests = 300;
    for (let i = 0; i < requests; i += 30)
      await Promise.all(Array.from({ length: 30 }, () => send(gw)));

    const samples = await scrape(gw);
    assert.equal(valueOf(samples, 'tollgate_access_log_write_errors_total'), requests);
    assert.equal(valueOf(samples, 'tollgate_access_log_lines_dropped_total'), requests);
    await gw.stop();

    const warnings = gw.stderr.filter((l) => l.includes('access log /dev/full'));
    assert.ok(warnings.length > 0, 'no warning about the failed writes');
    // One warning per failed write would be 300 lines.
    assert.ok(warnings.length < requests / 10, `${warnings.length} warnings for ${requests} failed writes`);
    assert.match(warnings[0], /No space left on device/);
    const total = warnings.reduce((n, l) => n + Number(/(\d+) writes? failed/.exec(l)[1]), 0);
    assert.equal(total, requests, 'the warnings do not add up to the failed writes');
  });
});
