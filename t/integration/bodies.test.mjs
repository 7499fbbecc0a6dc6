// Request bodies that are not JSON: an audio or file upload in
// multipart/form-data, or raw bytes. Such a body goes unread and unchanged
// to a route matched by path, method and headers, on failover too. A
// match.model cannot match it, metrics count it under the model "other",
// and the cache bypasses it. A route
// whose request filters would mask or block refuses it with 415 before
// any upstream call. A body that claims JSON and is not still gets 400.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { request, startGateway, stopAll } from './lib/harness.mjs';
import { parseSamples, valueOf } from './lib/prometheus.mjs';
import { RETRY_FREELY } from './lib/failover.mjs';

const BOUNDARY = 'tollgate-test-boundary';
const FORM_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;

/* A multipart form with a model field and a "file" of bytes that are not
 * UTF-8 (NUL, 0xff), as an audio upload has. */
function form() {
  return Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n`),
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n`),
    Buffer.from('Content-Type: audio/wav\r\n\r\n'),
    Buffer.from([0x52, 0x49, 0x46, 0x46, 0x00, 0xff, 0xfe, 0x7b, 0x0a]),
    Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
  ]);
}

/* A scripted upstream that keeps every request it gets. With fail, it
 * responds 503 to each, as a backend to fail over from. */
async function startUpstream({ fail = false } = {}) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (part) => parts.push(part));
    req.on('end', () => {
      seen.push({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(parts) });
      res.writeHead(fail ? 503 : 200, { 'content-type': 'application/json' });
      res.end(fail ? '{"error":{"message":"down","type":"server_error"}}' : '{"text":"hello"}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, seen, url: `http://127.0.0.1:${server.address().port}` };
}

let up;
let down;
let gw;

before(async () => {
  up = await startUpstream();
  down = await startUpstream({ fail: true });
  gw = await startGateway({
    backends: { up: { url: up.url }, down: { url: down.url } },
    filters: {
      masker: { type: 'regex', apply_to: ['request'], presets: ['email'], action: 'mask' },
      blocker: { type: 'regex', apply_to: ['request'], presets: ['email'], action: 'block' },
      flagger: { type: 'regex', apply_to: ['request'], presets: ['email'], action: 'flag' },
      answers: { type: 'regex', apply_to: ['response'], presets: ['email'], action: 'mask' },
    },
    cache: { store: 'memory', ttl: '1h' },
    routes: [
      { name: 'chat', match: { path: '/v1/chat/completions', model: 'gpt-4o' }, backends: ['up'] },
      { name: 'by-model', match: { path: '/v1/files', model: 'whisper-1' }, backends: ['up'] },
      ...['masker', 'blocker', 'flagger', 'answers'].map((filter) => ({
        name: filter, match: { path_prefix: '/v1/audio', headers: { 'x-filter': filter } },
        backends: ['up'], filters: [filter],
      })),
      { name: 'cached', match: { path_prefix: '/v1/audio', headers: { 'x-cache': '1' } }, backends: ['up'], cache: true },
      { name: 'audio', match: { path_prefix: '/v1/audio' }, backends: ['down', 'up'], retry: RETRY_FREELY },
    ],
  });
});
afterEach(() => gw?.checkErrors());
after(async () => {
  await stopAll();
  up?.server.close();
  down?.server.close();
});

/* POST body to path with these headers, and the access-log line of it. */
async function post(id, path, body, headers) {
  const res = await request({
    port: gw.port, method: 'POST', path, body, headers: { ...headers, 'x-request-id': id },
  });
  return { res, access: await gw.accessFor(id) };
}

/* The requests with this X-Request-Id that upstream got. */
const seenBy = (upstream, id) => upstream.seen.filter((r) => r.headers['x-request-id'] === id);

describe('a body that is not JSON', () => {
  it('goes upstream unread and unchanged, and again on failover', async () => {
    const { res, access } = await post('upload', '/v1/audio/transcriptions', form(), { 'content-type': FORM_TYPE });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json(), { text: 'hello' });
    const [failed] = seenBy(down, 'upload');
    const [served] = seenBy(up, 'upload');
    for (const got of [failed, served]) {
      assert.equal(got.path, '/v1/audio/transcriptions');
      assert.equal(got.headers['content-type'], FORM_TYPE);
      assert.ok(got.body.equals(form()), 'the body upstream differs from the one sent');
    }
    assert.equal(access.route, 'audio');
    assert.equal(access.status, 200);
    assert.equal(access.model ?? null, null);
  });

  it('counts under the model "other", as any request without a model', async () => {
    await post('counted', '/v1/audio/transcriptions', form(), { 'content-type': FORM_TYPE });
    const metrics = await request({ port: gw.adminPort, path: '/metrics' });
    const samples = parseSamples(metrics.text);
    const count = valueOf(samples, 'tollgate_requests_total',
      { route: 'audio', backend: 'up', model: 'other', code: '200' });
    assert.ok(count >= 1, `no request counted under model "other": ${count}`);
  });

  it('keeps a Content-Encoding, which the upstream reads', async () => {
    const bytes = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02]);
    const { res } = await post('coded', '/v1/audio/speech', bytes,
      { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
    assert.equal(res.status, 200, res.text);
    const [served] = seenBy(up, 'coded');
    assert.equal(served.headers['content-encoding'], 'gzip');
    assert.ok(served.body.equals(bytes));
  });

  it('matches no route by model, and the 404 says why', async () => {
    const { res } = await post('no-model', '/v1/files', form(), { 'content-type': FORM_TYPE });
    assert.equal(res.status, 404, res.text);
    assert.equal(res.json().error.code, 'route_not_found');
    assert.match(res.json().error.message, /Content-Type "multipart\/form-data.*is not JSON, so it names no model/);
    assert.deepEqual(seenBy(up, 'no-model'), []);
  });

  it('is not stored by the cache', async () => {
    for (const id of ['cache-1', 'cache-2']) {
      const { res } = await post(id, '/v1/audio/transcriptions', form(), { 'content-type': FORM_TYPE, 'x-cache': '1' });
      assert.equal(res.status, 200, res.text);
      assert.notEqual(res.headers['x-tollgate-cache'], 'hit');
      assert.equal(seenBy(up, id).length, 1, `${id} did not reach the upstream`);
    }
  });

  it('bypasses the cache, and only-if-cached keeps it from the backends', async () => {
    const headers = { 'content-type': FORM_TYPE, 'x-cache': '1' };
    const passed = await post('bypass', '/v1/audio/transcriptions', form(), headers);
    assert.equal(passed.res.status, 200, passed.res.text);
    assert.equal(passed.res.headers['x-tollgate-cache'], 'bypass');
    assert.equal(passed.access.cache, 'bypass');

    const refused = await post('only-cached', '/v1/audio/transcriptions', form(),
      { ...headers, 'cache-control': 'only-if-cached' });
    assert.equal(refused.res.status, 504, refused.res.text);
    assert.equal(refused.res.json().error.code, 'not_cached');
    assert.equal(refused.res.headers['x-tollgate-cache'], 'bypass');
    assert.equal(refused.access.cache, 'bypass');
    assert.deepEqual(seenBy(up, 'only-cached'), [], 'only-if-cached reached the upstream');
  });

  for (const [filter, action] of [['masker', 'mask'], ['blocker', 'block']]) {
    it(`is refused with 415 by a route whose request filter would ${action}`, async () => {
      const id = `refused-${filter}`;
      const { res, access } = await post(id, '/v1/audio/transcriptions', form(),
        { 'content-type': FORM_TYPE, 'x-filter': filter });
      assert.equal(res.status, 415, res.text);
      const { error } = res.json();
      assert.equal(error.code, 'unsupported_content_type');
      assert.match(error.message, /Content-Type "multipart\/form-data; boundary=tollgate-test-boundary"/);
      assert.match(error.message, new RegExp(`filter "${filter}" \\(action ${action}\\)`));
      assert.deepEqual(seenBy(up, id), [], 'the refused body reached the upstream');
      assert.equal(access.reason, 'unsupported_content_type');
    });
  }

  for (const filter of ['flagger', 'answers']) {
    it(`passes a route whose filter ${filter === 'flagger' ? 'only flags' : 'checks responses only'}`, async () => {
      const id = `passed-${filter}`;
      const { res } = await post(id, '/v1/audio/transcriptions', form(),
        { 'content-type': FORM_TYPE, 'x-filter': filter });
      assert.equal(res.status, 200, res.text);
      assert.ok(seenBy(up, id)[0].body.equals(form()));
    });
  }
});

describe('a body read as JSON', () => {
  for (const type of ['application/json', 'application/vnd.api+json; charset=utf-8']) {
    it(`gets 400 invalid_json when it claims ${type} and is not JSON`, async () => {
      const id = `claims-${type.split(';')[0]}`;
      const { res } = await post(id, '/v1/audio/transcriptions', form(), { 'content-type': type });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json().error.code, 'invalid_json');
      assert.deepEqual(seenBy(up, id), []);
    });
  }

  it('gets 400 invalid_json without a Content-Type', async () => {
    const { res } = await post('untyped', '/v1/audio/transcriptions', Buffer.from('model=whisper-1'), {});
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json().error.code, 'invalid_json');
  });

  it('on a JSON endpoint, whatever its Content-Type says', async () => {
    const body = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    const { res, access } = await post('form-typed', '/v1/chat/completions', body,
      { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(res.status, 200, res.text);
    assert.equal(access.route, 'chat');
    assert.equal(access.model, 'gpt-4o');
  });
});
