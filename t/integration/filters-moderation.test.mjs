// Moderation filters whose classifier replies with what it should not: an
// HTML page, members of the wrong type, fewer results than inputs, scores
// that are not numbers, or nothing in time. Each is a classifier failure
// that the filter's on_error decides, never a verdict on the text: the
// client is told the text could not be checked, and the log says what was
// wrong with the reply, once per filter within the log interval.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import { request, startGateway, startMock, stopAll } from './lib/harness.mjs';

/* The classifier's replies, by the path the filter's backend URL adds. */
const REPLIES = {
  html: { type: 'text/html', body: '<html><body>Service Unavailable</body></html>' },
  flagged_text: { type: 'application/json', body: '{"results":[{"flagged":"yes"}]}' },
  no_results: { type: 'application/json', body: '{"results":[]}' },
  score_text: { type: 'application/json', body: '{"results":[{"flagged":false,"category_scores":{"violence":"high"}}]}' },
  clean: { type: 'application/json', body: '{"results":[{"flagged":false}]}' },
  proxy_error: { status: 502, type: 'text/html', body: '<html>Bad Gateway</html>' },
};

/* A classifier that replies by the first segment of the request path, and
 * never replies under /silent. */
async function startClassifier() {
  const server = http.createServer((req, res) => {
    req.resume();
    const name = req.url.split('/')[1];
    if (name === 'silent')
      return;
    req.on('end', () => {
      const reply = REPLIES[name];
      res.writeHead(reply.status ?? 200, { 'content-type': reply.type });
      res.end(reply.body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function chat(model) {
  return { model, messages: [{ role: 'user', content: 'hello' }] };
}

async function post(gw, body) {
  const res = await request({
    port: gw.port, method: 'POST', path: '/v1/chat/completions', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
  return { ...res, json: JSON.parse(res.text) };
}

async function decisions(gw, res) {
  const id = res.headers['x-request-id'];
  const line = await gw.waitForAccess((l) => l.request_id === id, { message: `access line of ${id}` });
  return line.filters || [];
}

describe('moderation filters: a classifier that fails', () => {
  let classifier;
  let gw;

  before(async () => {
    classifier = await startClassifier();
    const mock = await startMock();
    const base = `http://127.0.0.1:${classifier.address().port}`;
    const names = [...Object.keys(REPLIES), 'silent'];
    const backends = { mock: { url: mock.url } };
    const filters = {};
    const routes = [];
    for (const name of names) {
      backends[`c_${name}`] = { url: `${base}/${name}` };
      filters[name] = { type: 'moderation', backend: `c_${name}`, timeout: '300ms', on_error: 'block' };
      routes.push({ name, match: { model: name }, backends: ['mock'], filters: [name] });
    }
    filters.scored = { ...filters.score_text, thresholds: { violence: 0.5 } };
    routes.push({ name: 'scored', match: { model: 'scored' }, backends: ['mock'], filters: ['scored'] });
    filters.html_open = { ...filters.html, on_error: 'allow' };
    routes.push({ name: 'html_open', match: { model: 'html_open' }, backends: ['mock'], filters: ['html_open'] });
    filters.repeat = { ...filters.no_results };
    routes.push({ name: 'repeat', match: { model: 'repeat' }, backends: ['mock'], filters: ['repeat'] });
    gw = await startGateway({ backends, filters, routes });
  });
  afterEach(() => gw?.checkErrors());
  after(async () => {
    await stopAll();
    classifier?.close();
  });

  it('tells the client the text could not be checked when on_error blocks', async () => {
    const res = await post(gw, chat('html'));
    assert.equal(res.status, 400);
    assert.equal(res.json.error.code, 'content_filter');
    assert.equal(res.json.error.rule, null);
    assert.match(res.json.error.message, /content filter "html" could not check it: its classifier failed, and the filter's on_error setting rejects what it cannot check/);
    assert.deepEqual(await decisions(gw, res),
      [{ filter: 'html', rule: null, action: 'block', side: 'request', count: 1, error: true }]);
  });

  it('logs the content type and first bytes of a reply that is not JSON', async () => {
    await post(gw, chat('html'));
    const line = await gw.waitForLog(/moderation filter html failed: /);
    assert.match(line, /classifier response not understood: the body is not JSON \(invalid from byte \d+\); status 200, Content-Type text\/html, 45-byte body beginning "<html><body>Service Unavailable<\/body><\/html>"; on_error is block, so the request is rejected$/);
  });

  it('lets the request pass when on_error allows', async () => {
    const res = await post(gw, chat('html_open'));
    assert.equal(res.status, 200);
    assert.deepEqual(await decisions(gw, res),
      [{ filter: 'html_open', rule: null, action: 'flag', side: 'request', count: 1, error: true }]);
    await gw.waitForLog(/moderation filter html_open failed: .*; on_error is allow, so the request goes on$/);
  });

  for (const [name, why] of [
    ['flagged_text', 'results\\[0\\]\\.flagged is a string, expected true or false'],
    ['no_results', 'results has 0 entries for 1 input'],
    ['scored', 'results\\[0\\]\\.category_scores\\.violence is a string, expected a number'],
  ]) {
    it(`names what is wrong in the reply of ${name}`, async () => {
      const res = await post(gw, chat(name));
      assert.equal(res.status, 400);
      assert.match(res.json.error.message, /could not check it/);
      await gw.waitForLog(new RegExp(`moderation filter ${name} failed: classifier response not understood: ${why}; status 200, Content-Type application/json`));
    });
  }

  it('describes an error status whose body is not an API error', async () => {
    const res = await post(gw, chat('proxy_error'));
    assert.equal(res.status, 400);
    assert.match(res.json.error.message, /could not check it/);
    await gw.waitForLog(/moderation filter proxy_error failed: classifier responded with status 502 \(Content-Type text\/html, 24-byte body beginning "<html>Bad Gateway<\/html>"\)/);
  });

  it('names the timeout the classifier ran past', async () => {
    const res = await post(gw, chat('silent'));
    assert.equal(res.status, 400);
    assert.match(res.json.error.message, /could not check it/);
    await gw.waitForLog(/moderation filter silent failed: classifier timed out: no complete response within 300 ms \(filters\.silent\.timeout\)/);
  });

  // An outage fails every request; the log takes one line per filter and
  // 5 s, so requests sent back to back give fewer lines than requests.
  it('logs the failures of a filter once per interval', async () => {
    const sent = 6;
    for (let i = 0; i < sent; i++)
      assert.equal((await post(gw, chat('repeat'))).status, 400);
    const lines = gw.stderr.filter((l) => l.includes('moderation filter repeat failed'));
    assert.ok(lines.length >= 1, 'no line about the failures');
    assert.ok(lines.length < sent, lines.join('\n'));
  });

  it('still passes a clean reply', async () => {
    assert.equal((await post(gw, chat('clean'))).status, 200);
  });
});
