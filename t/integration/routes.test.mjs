// Route matching (in order, exact and glob models) and the model list that
// the gateway serves itself.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

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
});

describe('routes: paths not in normal form', () => {
  // A route matches its path byte for byte, but an upstream that removes
  // dot segments or decodes escapes before routing serves each of these
  // as /v1/chat/completions. Were they let through, they would miss the
  // filtered route and reach that endpoint through the catch-all one.
  const PATHS = [
    '/v1/chat/../chat/completions',
    '/v1/./chat/completions',
    '/v1/chat/%63ompletions',
    '/v1/chat%2Fcompletions',
    '/v1/%2e%2E/v1/chat/completions',
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
});
