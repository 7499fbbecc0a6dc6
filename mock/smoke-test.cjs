#!/usr/bin/env node
// Smoke test of tollgate-mock: starts the binary on a free port and checks
// each endpoint and behaviour option through HTTP and raw sockets.
//
//   node mock/smoke-test.cjs [path/to/tollgate-mock]
//
// Exits 0 when every check passes; prints each failed check otherwise.
'use strict';

const assert = require('assert');
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const http = require('http');
const https = require('https');
const net = require('net');
const os = require('os');
const path = require('path');

const BIN = process.argv[2] || process.env.TOLLGATE_MOCK_BIN || './tollgate-mock';
const FIXTURES = path.join(__dirname, '..', 't', 'fixtures', 'openai-recorded');
const CHAT = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };

function startMock(args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['--listen', '127.0.0.1:0', '--quiet', ...args],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^tollgate-mock listening on 127\.0\.0\.1:(\d+)\n/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on('exit', (code) => reject(new Error(`mock exited with ${code}: ${out}`)));
  });
}

function request(port, { method = 'POST', path: p = '/v1/chat/completions', body, headers = {},
                         agent, tls = false } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined
      : typeof body === 'string' ? body : JSON.stringify(body);
    const lib = tls ? https : http;
    const req = lib.request({ host: '127.0.0.1', port, method, path: p, agent,
      rejectUnauthorized: false,
      headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        raw: Buffer.concat(chunks), text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

const json = async (...a) => JSON.parse((await request(...a)).text);
const stats = (port) => json(port, { method: 'GET', path: '/_mock/stats' });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Split an SSE body (LF framing) into the data of each event.
function sseData(text) {
  return text.split('\n\n').filter((e) => e.length > 0)
    .map((e) => e.replace(/^data: /, ''));
}

// Send raw bytes on a new socket; collect every 'data' event until the peer
// closes or until ms passes.
function rawExchange(port, bytes, ms = 1500) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const reads = [];
    let closed = false;
    const done = () => { sock.destroy(); resolve({ reads, all: Buffer.concat(reads), closed }); };
    const timer = setTimeout(done, ms);
    sock.on('data', (d) => reads.push(d));
    sock.on('close', () => { closed = true; clearTimeout(timer); done(); });
    sock.on('error', () => {});
    sock.write(bytes);
  });
}

function post(body, extra = '') {
  const data = JSON.stringify(body);
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${extra}` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\n\r\n${data}`;
}

// Decode a chunked body; returns the chunk payloads and whether the
// terminating zero chunk arrived.
function dechunk(buf) {
  const text = buf.toString('latin1');
  let pos = text.indexOf('\r\n\r\n') + 4;
  const chunks = [];
  for (;;) {
    const eol = text.indexOf('\r\n', pos);
    if (eol < 0) return { chunks, terminated: false };
    const size = parseInt(text.slice(pos, eol), 16);
    if (size === 0) return { chunks, terminated: true };
    chunks.push(Buffer.from(text.slice(eol + 2, eol + 2 + size), 'latin1'));
    pos = eol + 2 + size + 2;
  }
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('chat completion shape', async (port) => {
  const r = await json(port, { body: { ...CHAT, model: 'gpt-4o@words=3' } });
  assert.strictEqual(r.object, 'chat.completion');
  assert.strictEqual(r.model, 'gpt-4o');
  assert.strictEqual(r.choices[0].message.role, 'assistant');
  assert.strictEqual(r.choices[0].message.content, 'Hello from the');
  assert.strictEqual(r.choices[0].finish_reason, 'stop');
  assert.strictEqual(r.usage.completion_tokens, 3);
  assert.strictEqual(r.usage.total_tokens, r.usage.prompt_tokens + 3);
});

test('header wins over model suffix', async (port) => {
  const r = await json(port, { body: { ...CHAT, model: 'gpt-4o@words=2' },
    headers: { 'x-mock': 'words=4' } });
  assert.strictEqual(r.choices[0].message.content.split(' ').length, 4);
});

test('stream events and usage', async (port) => {
  const r = await request(port, { body: { ...CHAT, stream: true,
    stream_options: { include_usage: true } }, headers: { 'x-mock': 'events=3' } });
  assert.match(r.headers['content-type'], /^text\/event-stream/);
  assert.strictEqual(r.headers['transfer-encoding'], 'chunked');
  const data = sseData(r.text);
  assert.strictEqual(data.length, 7);
  assert.strictEqual(data[6], '[DONE]');
  const chunks = data.slice(0, 6).map((d) => JSON.parse(d));
  assert.deepStrictEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '', refusal: null });
  assert.strictEqual(chunks.slice(1, 4).map((c) => c.choices[0].delta.content).join(''),
    'Hello from the');
  assert.strictEqual(chunks[4].choices[0].finish_reason, 'stop');
  assert.deepStrictEqual(chunks[5].choices, []);
  assert.strictEqual(chunks[5].usage.completion_tokens, 3);
});

test('stream usage off and on', async (port) => {
  const off = await request(port, { body: { ...CHAT, stream: true,
    stream_options: { include_usage: true } }, headers: { 'x-mock': 'usage=off;events=1' } });
  assert.strictEqual(sseData(off.text).length, 4);
  const on = await request(port, { body: { ...CHAT, stream: true },
    headers: { 'x-mock': 'usage=on;events=1' } });
  assert.strictEqual(sseData(on.text).length, 5);
});

test('stream tool call', async (port) => {
  const body = { ...CHAT, stream: true, tools: [{ type: 'function',
    function: { name: 'lookup', parameters: { type: 'object' } } }] };
  const data = sseData((await request(port, { body })).text);
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const calls = chunks.flatMap((c) => (c.choices[0] && c.choices[0].delta.tool_calls) || []);
  assert.strictEqual(calls[0].function.name, 'lookup');
  assert.ok(calls[0].id);
  assert.ok(calls.length > 2);
  const args = calls.map((c) => c.function.arguments).join('');
  assert.deepStrictEqual(JSON.parse(args), { location: 'Paris', unit: 'celsius' });
  assert.strictEqual(chunks[chunks.length - 1].choices[0].finish_reason, 'tool_calls');
});

test('unicode and size', async (port) => {
  const u = await json(port, { body: CHAT, headers: { 'x-mock': 'unicode=1;words=3' } });
  assert.ok(Buffer.byteLength(u.choices[0].message.content) > u.choices[0].message.content.length);
  const s = await json(port, { body: CHAT, headers: { 'x-mock': 'size=1000' } });
  assert.strictEqual(Buffer.byteLength(s.choices[0].message.content), 1000);
  const st = await request(port, { body: { ...CHAT, stream: true }, headers: { 'x-mock': 'size=300;events=4' } });
  const text = sseData(st.text).slice(1, 5).map((d) => JSON.parse(d).choices[0].delta.content).join('');
  assert.strictEqual(Buffer.byteLength(text), 300);
});

test('completions and embeddings', async (port) => {
  const c = await json(port, { path: '/v1/completions', body: { model: 'm', prompt: 'x' } });
  assert.strictEqual(c.object, 'text_completion');
  assert.strictEqual(c.choices[0].text, 'Hello from the tollgate mock');
  const e = await json(port, { path: '/v1/embeddings', body: { model: 'e', input: ['a', 'b', 'a'] } });
  assert.strictEqual(e.data.length, 3);
  assert.strictEqual(e.data[0].embedding.length, 8);
  assert.deepStrictEqual(e.data[0].embedding, e.data[2].embedding);
  assert.notDeepStrictEqual(e.data[0].embedding, e.data[1].embedding);
  const one = await json(port, { path: '/v1/embeddings', body: { model: 'e', input: 'a' } });
  assert.strictEqual(one.data.length, 1);
  const m = await json(port, { method: 'GET', path: '/v1/models' });
  assert.strictEqual(m.object, 'list');
  assert.ok(m.data.length >= 3);
});

test('errors', async (port) => {
  const bad = await request(port, { body: 'not json' });
  assert.strictEqual(bad.status, 400);
  assert.strictEqual(JSON.parse(bad.text).error.type, 'invalid_request_error');
  assert.strictEqual((await request(port, { body: { messages: [] } })).status, 400);
  const notUtf8 = await request(port, { body: CHAT, headers: { 'x-mock': 'content=a%FFb' } });
  assert.strictEqual(notUtf8.status, 400);
  assert.match(JSON.parse(notUtf8.text).error.message, /piece 1 is not valid UTF-8/);
  const unknown = await request(port, { body: CHAT, headers: { 'x-mock': 'colour=red' } });
  assert.strictEqual(unknown.status, 400);
  assert.match(JSON.parse(unknown.text).error.message, /^the x-mock header: unknown option "colour"; valid options: /);
  const suffix = await request(port, { body: { ...CHAT, model: 'gpt-4o@echo=1' } });
  assert.strictEqual(suffix.status, 400);
  assert.match(JSON.parse(suffix.text).error.message, /^the model suffix after "@": unknown option "echo"; /);
  const value = await request(port, { body: { ...CHAT, model: 'gpt-4o@events=x' } });
  assert.match(JSON.parse(value.text).error.message, /^the model suffix after "@": invalid value "x" for option events/);
  const st = await request(port, { body: CHAT, headers: { 'x-mock': 'status=503;retry_after=7' } });
  assert.strictEqual(st.status, 503);
  assert.strictEqual(st.headers['retry-after'], '7');
  assert.ok(JSON.parse(st.text).error.message);
});

test('fixtures replay byte for byte', async (port) => {
  for (const name of ['chat-basic', 'chat-streaming', 'chat-unknown-model', 'completion-streaming']) {
    const expected = execFileSync('python3', ['-c',
      'import sys, yaml; r = yaml.safe_load(open(sys.argv[1]))["interactions"][0]["response"];' +
      'sys.stdout.buffer.write(r["body"].encode()); sys.stderr.write("%d %s" % (r["code"], r["headers"]["Content-Type"][0]))',
      path.join(FIXTURES, name + '.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = await request(port, { body: CHAT, headers: { 'x-mock': `fixture=${name}` } });
    assert.ok(r.raw.equals(expected), `${name} body differs`);
  }
  const unknown = await request(port, { body: CHAT, headers: { 'x-mock': 'fixture=chat-unknown-model' } });
  assert.strictEqual(unknown.status, 404);
});

test('fixture stream reframed with crlf', async (port) => {
  const r = await request(port, { body: CHAT, headers: { 'x-mock': 'fixture=chat-streaming;crlf=1;nospace=1' } });
  assert.ok(!/[^\r]\n/.test(r.text), 'found a bare LF');
  assert.ok(r.text.startsWith('data:{'));
  assert.ok(r.text.endsWith('data:[DONE]\r\n\r\n'));
});

test('framing options', async (port) => {
  const crlf = await request(port, { body: { ...CHAT, stream: true }, headers: { 'x-mock': 'crlf=1;events=1' } });
  assert.ok(crlf.text.endsWith('data: [DONE]\r\n\r\n'));
  const cr = await request(port, { body: { ...CHAT, stream: true }, headers: { 'x-mock': 'cr=1;events=1' } });
  assert.ok(!cr.text.includes('\n'));
  assert.ok(cr.text.endsWith('data: [DONE]\r\r'));
  const ka = await request(port, { body: { ...CHAT, stream: true }, headers: { 'x-mock': 'keepalive=2;nospace=1;events=1' } });
  assert.strictEqual(ka.text.split(': keepalive\n').length - 1, 2 * 4);
  assert.ok(ka.text.includes('\ndata:{'));
});

test('split writes pieces at offsets', async (port) => {
  const r = await rawExchange(port, post({ ...CHAT, stream: true }, 'x-mock: split=7,8,9;events=1\r\n'));
  const { chunks, terminated } = dechunk(r.all);
  assert.ok(terminated);
  assert.deepStrictEqual(chunks.slice(0, 3).map((c) => c.length), [7, 1, 1]);
  assert.ok(r.reads.length >= 4, `only ${r.reads.length} reads`);
});

test('close_after cuts the stream', async (port) => {
  const r = await rawExchange(port, post({ ...CHAT, stream: true }, 'x-mock: close_after=2\r\n'));
  assert.ok(r.closed);
  const { chunks, terminated } = dechunk(r.all);
  assert.strictEqual(terminated, false);
  assert.strictEqual(chunks.length, 2);
  assert.ok(!r.all.toString().includes('[DONE]'));
});

test('keep-alive reuse and reset_next', async (port) => {
  await request(port, { method: 'POST', path: '/_mock/reset' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  await request(port, { body: CHAT, agent });
  await request(port, { body: CHAT, agent });
  agent.destroy();
  const log = await json(port, { method: 'GET', path: '/_mock/requests' });
  assert.strictEqual(log.length, 2);
  assert.strictEqual(log[0].connection, log[1].connection);
  assert.strictEqual(log[0].headers['content-type'], 'application/json');
  assert.deepStrictEqual(JSON.parse(log[0].body), CHAT);

  const r = await rawExchange(port, post(CHAT, 'x-mock: reset_next=1\r\n') + post(CHAT));
  assert.ok(r.closed);
  assert.strictEqual(r.all.toString().split('HTTP/1.1 200').length - 1, 1);
});

test('pipelined requests', async (port) => {
  const r = await rawExchange(port, post(CHAT) + post(CHAT) + post(CHAT, 'Connection: close\r\n'));
  assert.ok(r.closed);
  assert.strictEqual(r.all.toString().split('HTTP/1.1 200').length - 1, 3);
});

test('peer close during first_byte_delay is counted', async (port) => {
  await request(port, { method: 'POST', path: '/_mock/reset' });
  await rawExchange(port, post(CHAT, 'x-mock: first_byte_delay=2s\r\n'), 200);
  await sleep(100);
  const s = await stats(port);
  assert.strictEqual(s.responses_aborted, 1);
  assert.strictEqual(s.connections_closed_by_peer, 1);
  assert.strictEqual(s.connections_opened, 1);
  assert.strictEqual(s.requests, 1);
  assert.strictEqual(s.responses_completed, 0);
});

test('peer close mid-stream is counted', async (port) => {
  await request(port, { method: 'POST', path: '/_mock/reset' });
  const r = await rawExchange(port, post({ ...CHAT, stream: true }, 'x-mock: event_delay=100ms;events=20\r\n'), 350);
  assert.ok(r.all.toString().includes('data: '));
  await sleep(100);
  const s = await stats(port);
  assert.strictEqual(s.responses_aborted, 1);
  assert.strictEqual(s.connections_closed_by_peer, 1);
});

test('expect 100-continue', async (port) => {
  const r = await rawExchange(port, post(CHAT, 'Expect: 100-continue\r\nConnection: close\r\n'));
  assert.ok(r.all.toString().startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK'));
});

test('https', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mock-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`],
  { stdio: 'ignore' });
  const { child, port } = await startMock(['--tls-cert', `${dir}/cert.pem`, '--tls-key', `${dir}/key.pem`]);
  try {
    const r = await json(port, { body: CHAT, tls: true });
    assert.strictEqual(r.object, 'chat.completion');
    const s = await request(port, { body: { ...CHAT, stream: true }, tls: true,
      headers: { 'x-mock': 'events=2;event_delay=10ms' } });
    assert.strictEqual(sseData(s.text).length, 5);
  } finally {
    child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true });
  }
});

(async () => {
  const { child, port } = await startMock();
  let failed = 0;
  for (const t of tests) {
    try {
      await t.fn(port);
      console.log(`ok - ${t.name}`);
    } catch (err) {
      failed++;
      console.log(`not ok - ${t.name}\n  ${String(err.stack || err).split('\n').slice(0, 3).join('\n  ')}`);
    }
  }
  child.removeAllListeners('exit');
  const code = await new Promise((resolve) => { child.on('exit', resolve); child.kill('SIGTERM'); });
  if (code !== 0) {
    failed++;
    console.log(`not ok - SIGTERM exit status ${code}`);
  }
  process.exit(failed ? 1 : 0);
})();
