// Route matching (in order, exact and glob models, methods, path prefixes
// and headers) and the model list that the gateway serves itself.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import OpenAI from 'openai';

import { curl, curlPost, stopAll, mockBackend, startGateway, startMock } from './lib/harness.mjs';
import { request } from './lib/http.mjs';

const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hello' }] });

describe('routes', () => {
  let first;
  let second;
  let gw;

  before(async () => {
    first = await startMock();
    second = await startMock();
    gw = await startGateway({
      backends: { first: mockBackend(first), second: mockBackend(second) },
      routes: [
        { name: 'special', match: { path: '/v1/chat/completions', model: 'gpt-4o' }, backends: ['second'] },
        { name: 'mini', match: { path: '/v1/chat/completions', model: 'gpt-4o-mini' }, backends: ['first'] },
        { name: 'gpt-glob', match: { path: '/v1/chat/completions', model: 'gpt-*' }, backends: ['first'] },
        { name: 'shadowed', match: { path: '/v1/chat/completions', model: 'gpt-4o-shadowed' }, backends: ['second'] },
        { name: 'o-series', match: { path: '/v1/chat/completions', model: 'o?-mini' }, backends: ['second'] },
        { name: 'completions-4o', match: { path: '/v1/completions', model: 'gpt-4o' }, backends: ['first'] },
        { name: 'embeddings', match: { path: '/v1/embeddings', model: 'text-embedding-3-small' }, backends: ['second'] },
        { name: 'any-embedding', match: { path: '/v1/embeddings' }, backends: ['first'] },
      ],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  async function routeOf(path, model) {
    const bodies = {
      '/v1/chat/completions': chat(model),
      '/v1/completions': { model, prompt: 'hello' },
      '/v1/embeddings': { model, input: 'hello' },
    };
    const res = await curl(curlPost(`${gw.baseURL}${path}`, bodies[path]));
    assert.equal(res.status, 200, `${path} ${model}: ${res.text}`);
    const entry = await gw.accessFor(res.headers['x-request-id']);
    return entry;
  }

  it('routes an exact model to its backend', async () => {
    const entry = await routeOf('/v1/chat/completions', 'gpt-4o');
    assert.equal(entry.route, 'special');
    assert.equal(entry.backend, 'second');
    assert.equal(entry.model, 'gpt-4o');
    assert.equal(JSON.parse((await second.lastRequest()).body).model, 'gpt-4o');
  });

  it('routes through a glob', async () => {
    const entry = await routeOf('/v1/chat/completions', 'gpt-3.5-turbo');
    assert.equal(entry.route, 'gpt-glob');
    assert.equal(entry.backend, 'first');
    assert.equal(JSON.parse((await first.lastRequest()).body).model, 'gpt-3.5-turbo');
  });

  it('takes the first matching route', async () => {
    const entry = await routeOf('/v1/chat/completions', 'gpt-4o-shadowed');
    assert.equal(entry.route, 'gpt-glob');
  });

  it('matches a ? glob', async () => {
    const entry = await routeOf('/v1/chat/completions', 'o1-mini');
    assert.equal(entry.route, 'o-series');
    const miss = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat('o10-mini')));
    assert.equal(miss.status, 404);
  });

  it('matches the path exactly', async () => {
    const entry = await routeOf('/v1/completions', 'gpt-4o');
    assert.equal(entry.route, 'completions-4o');
    const miss = await curl(curlPost(`${gw.baseURL}/v1/completions`, { model: 'gpt-4o-mini', prompt: 'hello' }));
    assert.equal(miss.status, 404);
    const trailing = await curl(curlPost(`${gw.baseURL}/v1/chat/completions/`, chat('gpt-4o')));
    assert.equal(trailing.status, 404);
  });

  it('matches any model when the route names none', async () => {
    const entry = await routeOf('/v1/embeddings', 'some-other-embedding');
    assert.equal(entry.route, 'any-embedding');
  });

  it('matches the path without its query string', async () => {
    const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions?api-version=2024-06-01`, chat('gpt-4o')));
    assert.equal(res.status, 200);
    const seen = await second.lastRequest();
    assert.match(seen.path, /^\/v1\/chat\/completions(\?api-version=2024-06-01)?$/);
  });

  it('lists the exact route models', async () => {
    const before = (await first.requests()).length + (await second.requests()).length;
    const res = await curl([`${gw.baseURL}/v1/models`]);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^application\/json\b/);
    const expected = ['gpt-4o', 'gpt-4o-mini', 'gpt-4o-shadowed', 'text-embedding-3-small'];
    assert.deepEqual(res.json(), {
      object: 'list',
      data: expected.map((id) => ({ id, object: 'model', created: 0, owned_by: 'tollgate' })),
    });
    const after = (await first.requests()).length + (await second.requests()).length;
    assert.equal(after, before, 'the model list was fetched from a backend');
  });

  it('answers HEAD on the model list with the head of GET', async () => {
    const get = await request({ port: gw.port, path: '/v1/models' });
    const head = await request({ port: gw.port, method: 'HEAD', path: '/v1/models' });
    assert.equal(head.status, 200, head.text);
    assert.equal(head.text, '');
    assert.equal(head.headers['content-type'], get.headers['content-type']);
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(get.text)));
  });
});

describe('routes: one model of the model list', () => {
  const FINE_TUNED = 'ft:gpt-4o:org::abc123';
  let mock;
  let gw;
  let client;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [
        { name: 'plain', match: { path: '/v1/chat/completions', model: 'gpt-4o' }, backends: ['mock'] },
        { name: 'slash', match: { path: '/v1/chat/completions', model: 'org/model' }, backends: ['mock'] },
        { name: 'tuned', match: { path: '/v1/chat/completions', model: FINE_TUNED }, backends: ['mock'] },
        { name: 'tenant', match: { path: '/v1/chat/completions', model: 'tenant-model', headers: { 'x-tenant': 'a' } }, backends: ['mock'] },
        { name: 'glob', match: { path: '/v1/chat/completions', model: 'o*' }, backends: ['mock'] },
        // Other methods on a model's path still go to a backend (OpenAI
        // deletes a fine-tuned model with DELETE).
        { name: 'models', match: { path_prefix: '/v1/models/' }, backends: ['mock'] },
      ],
    });
    client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('answers models.retrieve of openai-node for each listed id', async () => {
    for (const id of ['gpt-4o', 'org/model', FINE_TUNED]) {
      const model = await client.models.retrieve(id);
      assert.deepEqual({ ...model }, { id, object: 'model', created: 0, owned_by: 'tollgate' });
    }
    assert.equal((await mock.requests()).length, 0, 'a model was fetched from a backend');
  });

  it('takes a "/" in an id bare or encoded', async () => {
    for (const path of ['/v1/models/org/model', '/v1/models/org%2Fmodel', '/v1/models/org%2fmodel']) {
      const res = await request({ port: gw.port, path });
      assert.equal(res.status, 200, `${path}: ${res.text}`);
      assert.equal(res.json().id, 'org/model');
    }
  });

  it('answers 404 model_not_found for a model not listed', async () => {
    await assert.rejects(client.models.retrieve('gpt-5'), (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.code, 'model_not_found');
      assert.equal(err.type, 'invalid_request_error');
      return true;
    });
    // A glob names no model, and a route whose headers do not hold lists none.
    for (const path of ['/v1/models/o1', '/v1/models/tenant-model', '/v1/models/org%2F']) {
      const res = await request({ port: gw.port, path });
      assert.equal(res.status, 404, `${path}: ${res.text}`);
    }
    const tenant = await request({ port: gw.port, path: '/v1/models/tenant-model', headers: { 'x-tenant': 'a' } });
    assert.equal(tenant.status, 200, tenant.text);
  });

  it('answers HEAD with the head of GET', async () => {
    const get = await request({ port: gw.port, path: '/v1/models/gpt-4o' });
    const head = await request({ port: gw.port, method: 'HEAD', path: '/v1/models/gpt-4o' });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(get.text)));
  });

  it('forwards other methods', async () => {
    const res = await request({ port: gw.port, method: 'DELETE', path: `/v1/models/${FINE_TUNED}` });
    assert.equal(res.status, 200, res.text);
    const seen = (await mock.requests()).at(-1);
    assert.equal(seen.method, 'DELETE');
    assert.equal(seen.path, `/v1/models/${FINE_TUNED}`);
    // An encoded "/" stays refused where the path goes to a backend.
    const encoded = await request({ port: gw.port, method: 'DELETE', path: '/v1/models/org%2Fmodel' });
    assert.equal(encoded.status, 400, encoded.text);
  });

  it('answers in the shape of Anthropic\'s Models API with anthropic-version', async () => {
    const headers = { 'anthropic-version': '2023-06-01' };
    const list = await request({ port: gw.port, path: '/v1/models', headers });
    assert.equal(list.status, 200, list.text);
    const ids = ['gpt-4o', 'org/model', FINE_TUNED];
    assert.deepEqual(list.json(), {
      data: ids.map((id) => ({ type: 'model', id, display_name: id, created_at: '1970-01-01T00:00:00Z' })),
      has_more: false, first_id: 'gpt-4o', last_id: FINE_TUNED,
    });
    const one = await request({ port: gw.port, path: '/v1/models/org%2Fmodel', headers });
    assert.deepEqual(one.json(), { type: 'model', id: 'org/model', display_name: 'org/model', created_at: '1970-01-01T00:00:00Z' });
    const missing = await request({ port: gw.port, path: '/v1/models/claude-x', headers });
    assert.equal(missing.status, 404);
    assert.equal(missing.json().type, 'error');
    assert.equal(missing.json().error.type, 'not_found_error');
  });
});

describe('routes: paths not in normal form', () => {
  // A route matches its path byte for byte, but an upstream that removes
  // dot segments, decodes escapes, drops path parameters, ends a path at a
  // NUL or trims names before routing may serve each of these as
  // /v1/chat/completions. Were they let through, they would miss the
  // filtered route and reach that endpoint through the catch-all one.
  const PATHS = [
    '/v1/chat/../chat/completions',
    '/v1/./chat/completions',
    '/v1/chat/%63ompletions',
    '/v1/chat%2Fcompletions',
    '/v1/%2e%2E/v1/chat/completions',
    '/v1/chat/completions;x=1',
    '/v1/chat;v=2/completions',
    '/v1/chat/completions%00',
    '/v1/chat/completions%0d%0a',
    '/v1/chat/completions%20',
    '/v1/chat/completions%20?api-version=1',
  ];
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      filters: { deny: { type: 'regex', rules: [{ name: 'secret', pattern: 'swordfish' }] } },
      routes: [
        { name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['mock'], filters: ['deny'] },
        { name: 'rest', backends: ['mock'] },
      ],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  for (const path of PATHS) {
    it(`rejects ${path}`, async () => {
      const before = (await mock.stats()).requests;
      const res = await request({
        port: gw.port, method: 'POST', path, headers: { 'content-type': 'application/json' },
        body: JSON.stringify(chat('the password is swordfish')),
      });
      assert.equal(res.status, 400, res.text);
      assert.equal(JSON.parse(res.text).error.code, 'bad_request');
      assert.equal((await mock.stats()).requests, before, 'the request reached the upstream');
    });
  }

  it('still serves the path in normal form', async () => {
    const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat('hello')));
    assert.equal(res.status, 200, res.text);
  });

  it('forwards an encoded space inside a segment as sent', async () => {
    const res = await request({ port: gw.port, path: '/v1/files/a%20b?x=;' });
    assert.equal(res.status, 404, res.text);
    const seen = await mock.lastRequest();
    assert.equal(seen.path, '/v1/files/a%20b');
    assert.equal(seen.query, 'x=;');
  });
});

describe('routes: method, path prefix and header matches', () => {
  let first;
  let second;
  let gw;
  let sent = 0;

  const ROUTES = [
    { name: 'files-read', match: { path_prefix: '/v1/files', method: ['GET', 'HEAD'] }, backends: ['first'] },
    { name: 'files-write', match: { path: '/v1/files', method: 'POST' }, backends: ['second'] },
    { name: 'acme', match: { path: '/v1/chat/completions', headers: { 'X-Tenant': 'acme', 'x-canary': false } }, backends: ['second'] },
    { name: 'canary', match: { path: '/v1/chat/completions', headers: { 'x-canary': true } }, backends: ['first'] },
    { name: 'acme-model', match: { path: '/v1/embeddings', model: 'acme-embed', headers: { 'x-tenant': 'acme' } }, backends: ['second'] },
    { name: 'chat', match: { path: '/v1/chat/completions', model: 'gpt-4o' }, backends: ['first'] },
  ];

  before(async () => {
    first = await startMock();
    second = await startMock();
    gw = await startGateway({
      backends: { first: mockBackend(first), second: mockBackend(second) },
      routes: ROUTES,
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  // Send a request and return its response and access-log line.
  async function send(method, path, { headers = {}, body = null } = {}) {
    const id = `route-match-${++sent}`;
    const res = await request({ port: gw.port, method, path, headers: { 'x-request-id': id, ...headers }, body });
    return { res, entry: await gw.accessFor(id) };
  }

  const chatBody = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

  it('routes by method', async () => {
    const read = await send('GET', '/v1/files');
    assert.equal(read.entry.route, 'files-read');
    assert.equal((await first.lastRequest()).method, 'GET');
    const write = await send('POST', '/v1/files', { body: { purpose: 'batch' } });
    assert.equal(write.entry.route, 'files-write');
    assert.equal((await second.lastRequest()).method, 'POST');
  });

  it('matches a path prefix by whole segments', async () => {
    const under = await send('GET', '/v1/files/file-abc/content');
    assert.equal(under.entry.route, 'files-read');
    assert.equal((await first.lastRequest()).path, '/v1/files/file-abc/content');
    const other = await send('GET', '/v1/filesystem');
    assert.equal(other.res.status, 404, other.res.text);
    assert.equal(other.res.json().error.code, 'route_not_found');
  });

  it('rejects a method no route takes with 405', async () => {
    const before = (await first.stats()).requests + (await second.stats()).requests;
    const exact = await send('DELETE', '/v1/files');
    assert.equal(exact.res.status, 405, exact.res.text);
    assert.equal(exact.res.headers.allow, 'GET, HEAD, POST');
    assert.equal(exact.res.json().error.code, 'method_not_allowed');
    assert.equal(exact.res.json().error.message, 'DELETE is not allowed on /v1/files; use GET, HEAD, POST');
    const under = await send('PUT', '/v1/files/file-abc', { body: {} });
    assert.equal(under.res.status, 405, under.res.text);
    assert.equal(under.res.headers.allow, 'GET, HEAD');
    const after = (await first.stats()).requests + (await second.stats()).requests;
    assert.equal(after, before, 'a request with a method no route takes was forwarded');
  });

  it('routes by header value, names in any case', async () => {
    for (const name of ['x-tenant', 'X-TENANT']) {
      const { res, entry } = await send('POST', '/v1/chat/completions', { headers: { [name]: 'acme' }, body: chatBody });
      assert.equal(res.status, 200, res.text);
      assert.equal(entry.route, 'acme', name);
    }
    const { entry } = await send('POST', '/v1/chat/completions', { headers: { 'x-tenant': 'ACME' }, body: chatBody });
    assert.equal(entry.route, 'chat', 'values compare exactly');
  });

  // Spaces and tabs around a value are not part of it (RFC 9110 section
  // 5.5): the route and the upstream see the same "acme".
  it('routes by a header value without the whitespace around it', async () => {
    for (const value of ['acme ', 'acme\t', 'acme \t ', '  acme', '\tacme\t']) {
      const { res, entry } = await send('POST', '/v1/chat/completions', { headers: { 'x-tenant': value }, body: chatBody });
      assert.equal(res.status, 200, res.text);
      assert.equal(entry.route, 'acme', JSON.stringify(value));
      assert.equal((await second.lastRequest()).headers['x-tenant'], 'acme', JSON.stringify(value));
    }
  });

  it('compares repeated header lines joined', async () => {
    const { res, entry } = await send('POST', '/v1/chat/completions', { headers: { 'x-tenant': ['acme', 'acme'] }, body: chatBody });
    assert.equal(res.status, 200, res.text);
    assert.equal(entry.route, 'chat');
  });

  it('routes by the presence and absence of a header', async () => {
    const canary = await send('POST', '/v1/chat/completions', { headers: { 'x-canary': '' }, body: chatBody });
    assert.equal(canary.entry.route, 'canary', 'present, even empty');
    const both = await send('POST', '/v1/chat/completions', { headers: { 'x-tenant': 'acme', 'x-canary': '1' }, body: chatBody });
    assert.equal(both.entry.route, 'canary', 'the acme route wants x-canary absent');
  });

  it('lists models by header conditions', async () => {
    const ids = async (headers) => {
      const res = await request({ port: gw.port, path: '/v1/models', headers });
      assert.equal(res.status, 200, res.text);
      return res.json().data.map((m) => m.id);
    };
    assert.deepEqual(await ids({}), ['gpt-4o']);
    assert.deepEqual(await ids({ 'x-tenant': 'acme' }), ['acme-embed', 'gpt-4o']);
  });
});

describe('routes: method and header matches on reload', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      backends: { mock: mockBackend(mock) },
      routes: [{ name: 'batches', match: { path: '/v1/batches' }, backends: ['mock'] }],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('applies and rejects match changes on reload', async () => {
    let sent = 0;
    // The status and the route of a request to /v1/batches; the mock
    // returns 404 for that path, so only the log shows which route was taken.
    const send = async (method, headers = {}) => {
      const id = `reload-${++sent}`;
      const res = await request({ port: gw.port, method, path: '/v1/batches', headers: { 'x-request-id': id, ...headers } });
      const entry = await gw.accessFor(id);
      return `${res.status} ${entry.route ?? '-'}`;
    };
    assert.equal(await send('DELETE'), '404 batches');

    const config = structuredClone(gw.config);
    config.routes[0].match = { path: '/v1/batches', method: 'GET', headers: { 'x-tenant': true } };
    assert.equal(await gw.reload(config), 'reloaded');
    assert.equal(await send('DELETE', { 'x-tenant': 'a' }), '405 -');
    assert.equal(await send('GET'), '404 -');
    assert.equal(await send('GET', { 'x-tenant': 'a' }), '404 batches');

    gw.expectErrors(/reload|configuration|method/i);
    config.routes[0].match = { path: '/v1/batches', method: 'get' };
    assert.equal(await gw.reload(config), 'failed');
    assert.ok(gw.stderr.some((l) => l.includes('routes[0].match.method: unknown method "get"; methods are case-sensitive: write "GET"')));
    assert.equal(await send('GET'), '404 -', 'the running config was kept');
  });
});
