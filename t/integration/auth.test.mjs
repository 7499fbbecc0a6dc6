// Gateway keys: callers present a key of the gateway's own, which the
// gateway checks against gateway_keys, records by name and never passes
// upstream. Each case checks what the client got and what the mock
// received (nothing, for a rejected request).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, assertNoFatalOutput, mockBackend, rawRequest, request, runTollgate, startGateway, startMock, stopAll,
  waitFor, writeTempFile,
} from './lib/harness.mjs';
import { apiRequests, chat } from './lib/failover.mjs';
import { quickTracing, requestSpans, startOtlpReceiver } from './lib/otlp-receiver.mjs';
import { parseSamples, promtoolCheck, scrape, valueOf } from './lib/prometheus.mjs';

const TEAM_KEY = 'tg-team-5b0c61f1e2';
const CI_KEY = 'tg-ci-a7d94e0c33';
const BACKEND_KEY = 'sk-backend-only-8e21';

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/* The credential headers, as the mock reports names: in lower case. */
const CREDENTIAL_NAMES = ['authorization', 'x-api-key', 'api-key'];

/* The credential headers of a request the mock recorded. */
function credentialsIn(recorded) {
  return Object.fromEntries(Object.entries(recorded.headers)
    .filter(([name]) => CREDENTIAL_NAMES.includes(name)));
}

/* Two keys: "team" from the environment and "ci" by digest. Routes: to a
 * backend with api_key ("chat"), to one without ("no-backend-key"), one
 * that only "ci" may use, one open to anyone, and /v1/messages. */
function keyedConfig(mock, extra = {}) {
  return {
    backends: {
      keyed: mockBackend(mock, { api_key: BACKEND_KEY }),
      plain: mockBackend(mock),
    },
    gateway_keys: {
      team: { key: '${TEAM_GATEWAY_KEY}' },
      ci: { sha256: sha256(CI_KEY) },
    },
    routes: [
      { name: 'chat', match: { path: '/v1/chat/completions', model: 'gpt-4o' }, backends: ['keyed'] },
      { name: 'no-backend-key', match: { path: '/v1/chat/completions', model: 'plain-model' }, backends: ['plain'] },
      { name: 'ci-only', match: { path: '/v1/chat/completions', model: 'ci-model' }, backends: ['keyed'], auth: { keys: ['ci'] } },
      { name: 'public', match: { path: '/v1/chat/completions', model: 'public-model' }, backends: ['keyed'], auth: { required: false } },
      { name: 'messages', match: { path: '/v1/messages' }, backends: ['keyed'] },
    ],
    ...extra,
  };
}

const ENV = { env: { TEAM_GATEWAY_KEY: TEAM_KEY } };

/* Send a request with send() and check its rejection: status, code,
 * challenge, the access-log reason, and that the mock got no new request
 * for the model. Returns the response. */
async function expectRejected(gw, mock, send, { status, code, model }) {
  const before = (await apiRequests(mock, model)).length;
  const res = await send();
  assert.equal(res.status, status, res.text);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.equal(res.json().error.code, code);
  if (status === 401)
    assert.match(res.headers['www-authenticate'], /^Bearer realm="tollgate"/);
  else
    assert.equal(res.headers['www-authenticate'], undefined);
  const entry = await gw.accessFor(res.id);
  assert.equal(entry.reason, code);
  assert.equal(entry.status, status);
  assert.equal((await apiRequests(mock, model)).length, before, 'nothing may go upstream');
  return res;
}

describe('gateway keys', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway(keyedConfig(mock), ENV);
  });
  after(stopAll);
  afterEach(() => gw.checkErrors());

  it('answers 401 to a missing key', async () => {
    const before = parseSamples((await scrape(gw)).text);
    const res = await expectRejected(gw, mock, () => chat(gw, { model: 'gpt-4o' }),
      { status: 401, code: 'missing_api_key', model: 'gpt-4o' });
    assert.equal(res.json().error.type, 'invalid_request_error');
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="tollgate"');

    const labels = { route: 'chat', reason: 'missing_api_key' };
    await waitFor(async () => valueOf(parseSamples((await scrape(gw)).text),
      'tollgate_gateway_errors_total', labels) ===
      valueOf(before, 'tollgate_gateway_errors_total', labels) + 1,
    { message: 'the 401 counted in tollgate_gateway_errors_total' });
  });

  it('answers 401 to an unknown key', async () => {
    for (const headers of [{ Authorization: 'Bearer wrong-key' }, { 'x-api-key': 'wrong-key' },
      { 'api-key': `${TEAM_KEY}x` }, { Authorization: `Basic ${TEAM_KEY}` }]) {
      const res = await expectRejected(gw, mock, () => chat(gw, { model: 'gpt-4o', headers }),
        { status: 401, code: 'invalid_api_key', model: 'gpt-4o' });
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="tollgate", error="invalid_token"');
      assert.ok(!res.text.includes('wrong-key'), 'the key is not echoed');
    }
  });

  it('answers 401 to a header repeated with two keys', async () => {
    for (const headers of [{ 'x-api-key': [TEAM_KEY, CI_KEY] },
      { Authorization: [`Bearer ${CI_KEY}`, `Bearer ${TEAM_KEY}`] }, { 'api-key': [TEAM_KEY, 'wrong-key'] }]) {
      const res = await expectRejected(gw, mock, () => chat(gw, { model: 'gpt-4o', headers }),
        { status: 401, code: 'invalid_api_key', model: 'gpt-4o' });
      assert.match(res.json().error.message, /repeats a credential header .* with different keys/);
      assert.equal((await gw.accessFor(res.id)).key, undefined);
    }
    // The same key twice, as a proxy may add it, is one key.
    const same = await chat(gw, { model: 'gpt-4o', headers: { Authorization: [`Bearer ${TEAM_KEY}`, `bearer ${TEAM_KEY}`] } });
    assert.equal(same.status, 200, same.text);
    assert.equal((await gw.accessFor(same.id)).key, 'team');
  });

  it('takes an empty credential for none', async () => {
    for (const headers of [{ Authorization: '' }, { Authorization: 'Bearer ' }, { 'x-api-key': '' }, { 'api-key': '' }]) {
      const res = await expectRejected(gw, mock, () => chat(gw, { model: 'gpt-4o', headers }),
        { status: 401, code: 'missing_api_key', model: 'gpt-4o' });
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="tollgate"', JSON.stringify(headers));
      const open = await chat(gw, { model: 'public-model', headers });
      assert.equal(open.status, 200, `${JSON.stringify(headers)}: ${open.text}`);
      assert.equal((await gw.accessFor(open.id)).key, undefined);
    }
    const next = await chat(gw, { model: 'gpt-4o', headers: { Authorization: 'Bearer ', 'x-api-key': TEAM_KEY } });
    assert.equal(next.status, 200, next.text);
    assert.equal((await gw.accessFor(next.id)).key, 'team');
  });

  it('logs the key of a 405', async () => {
    const res = await request({ port: gw.port, path: '/v1/chat/completions', headers: { Authorization: `Bearer ${TEAM_KEY}` } });
    assert.equal(res.status, 405, res.text);
    const entry = await gw.accessFor(res.headers['x-request-id']);
    assert.equal(entry.status, 405);
    assert.equal(entry.key, 'team');
  });

  it('accepts the key in each header', async () => {
    for (const headers of [{ Authorization: `Bearer ${TEAM_KEY}` }, { authorization: `bearer  ${TEAM_KEY}` },
      { 'x-api-key': TEAM_KEY }, { 'api-key': TEAM_KEY }]) {
      const res = await chat(gw, { model: 'gpt-4o', headers });
      assert.equal(res.status, 200, `${JSON.stringify(headers)}: ${res.text}`);
      const entry = await gw.accessFor(res.id);
      assert.equal(entry.key, 'team');
      assert.equal(entry.reason, null);
      const seen = (await apiRequests(mock, 'gpt-4o')).at(-1);
      assert.deepEqual(credentialsIn(seen), { authorization: `Bearer ${BACKEND_KEY}` });
    }
  });

  it('strips the key for a keyless backend', async () => {
    const res = await chat(gw, { model: 'plain-model', headers: { Authorization: `Bearer ${TEAM_KEY}`, 'x-api-key': TEAM_KEY } });
    assert.equal(res.status, 200, res.text);
    const seen = (await apiRequests(mock, 'plain-model')).at(-1);
    assert.deepEqual(credentialsIn(seen), {});
    assert.ok(!JSON.stringify(seen).includes(TEAM_KEY), 'the gateway key reached the backend');
  });

  it('accepts a key by its digest', async () => {
    const res = await chat(gw, { model: 'gpt-4o', headers: { Authorization: `Bearer ${CI_KEY}` } });
    assert.equal(res.status, 200, res.text);
    assert.equal((await gw.accessFor(res.id)).key, 'ci');
  });

  it('answers 403 to an unlisted key', async () => {
    const res = await expectRejected(gw, mock,
      () => chat(gw, { model: 'ci-model', headers: { Authorization: `Bearer ${TEAM_KEY}` } }),
      { status: 403, code: 'key_not_allowed', model: 'ci-model' });
    assert.match(res.json().error.message, /"team" may not use the route "ci-only"/);
    assert.equal((await gw.accessFor(res.id)).key, 'team');

    const allowed = await chat(gw, { model: 'ci-model', headers: { Authorization: `Bearer ${CI_KEY}` } });
    assert.equal(allowed.status, 200, allowed.text);
  });

  it('opens a route without required keys', async () => {
    const res = await chat(gw, { model: 'public-model' });
    assert.equal(res.status, 200, res.text);
    assert.equal((await gw.accessFor(res.id)).key, undefined);

    const keyed = await chat(gw, { model: 'public-model', headers: { 'x-api-key': CI_KEY } });
    assert.equal(keyed.status, 200, keyed.text);
    assert.equal((await gw.accessFor(keyed.id)).key, 'ci');
    assert.deepEqual(credentialsIn((await apiRequests(mock, 'public-model')).at(-1)),
      { authorization: `Bearer ${BACKEND_KEY}` });

    await expectRejected(gw, mock, () => chat(gw, { model: 'public-model', headers: { 'x-api-key': 'nope' } }),
      { status: 401, code: 'invalid_api_key', model: 'public-model' });
  });

  it('lists the models a caller may use', async () => {
    const models = async (headers) => {
      const res = await request({ port: gw.port, path: '/v1/models', headers });
      assert.equal(res.status, 200, res.text);
      return res.json().data.map((m) => m.id);
    };
    assert.deepEqual(await models({}), ['public-model']);
    assert.deepEqual(await models({ Authorization: `Bearer ${TEAM_KEY}` }), ['gpt-4o', 'plain-model', 'public-model']);
    assert.deepEqual(await models({ Authorization: `Bearer ${CI_KEY}` }), ['gpt-4o', 'plain-model', 'ci-model', 'public-model']);
    const wrong = await request({ port: gw.port, path: '/v1/models', headers: { Authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
  });

  it('retrieves only the models a caller may use', async () => {
    const retrieve = (id, headers) => request({ port: gw.port, path: `/v1/models/${id}`, headers });
    const ci = { Authorization: `Bearer ${CI_KEY}` };
    const team = { Authorization: `Bearer ${TEAM_KEY}` };
    assert.equal((await retrieve('ci-model', ci)).json().id, 'ci-model');
    assert.equal((await retrieve('public-model', {})).json().id, 'public-model');
    for (const [id, headers] of [['ci-model', team], ['gpt-4o', {}]]) {
      const res = await retrieve(id, headers);
      assert.equal(res.status, 404, res.text);
      assert.equal(res.json().error.code, 'model_not_found');
      assert.equal((await gw.accessFor(res.headers['x-request-id'])).reason, 'model_not_found');
    }
    assert.equal((await retrieve('gpt-4o', { Authorization: 'Bearer nope' })).status, 401);
  });

  it('counts requests by key name', async () => {
    const count = async (key, code) => valueOf(parseSamples((await scrape(gw)).text),
      'tollgate_key_requests_total', { key, code });
    const before = { team: await count('team', '200'), none: await count('none', '401') };
    assert.equal((await chat(gw, { model: 'gpt-4o', headers: { 'x-api-key': TEAM_KEY } })).status, 200);
    assert.equal((await chat(gw, { model: 'gpt-4o', headers: { 'x-api-key': 'nope' } })).status, 401);
    await waitFor(async () => await count('team', '200') === before.team + 1 &&
      await count('none', '401') === before.none + 1, { message: 'one 200 of team and one 401 of none' });

    const text = (await scrape(gw)).text;
    assert.ok(!text.includes(TEAM_KEY), 'the key is in the metrics');
    assert.ok(!text.includes('nope'), 'the unknown key is in the metrics');
    const { code, output } = await promtoolCheck(text);
    assert.equal(code, 0, output);
  });

  it('answers in the Messages error shape', async () => {
    const body = { model: 'claude-3-5-sonnet', max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] };
    const res = await chat(gw, { path: '/v1/messages', body, headers: { 'anthropic-version': '2023-06-01' } });
    assert.equal(res.status, 401);
    assert.equal(res.json().type, 'error');
    assert.equal(res.json().error.type, 'authentication_error');
  });
});

describe('gateway keys without an open route', () => {
  afterEach(stopAll);

  it('rejects a missing key before routing', async () => {
    const mock = await startMock();
    const config = keyedConfig(mock);
    config.routes = config.routes.filter((r) => r.name !== 'public');
    const gw = await startGateway(config, ENV);
    await expectRejected(gw, mock, () => chat(gw, { model: 'no-such-model' }),
      { status: 401, code: 'missing_api_key', model: 'no-such-model' });
    assert.equal((await request({ port: gw.port, path: '/v1/models' })).status, 401);
  });

  it('answers 401 to a model list without models', async () => {
    const mock = await startMock();
    const config = keyedConfig(mock);
    const open = config.routes.find((r) => r.name === 'public');
    open.match = { path: '/v1/embeddings' };
    const gw = await startGateway(config, ENV);
    for (const headers of [{}, { Authorization: 'Bearer ' }]) {
      const res = await request({ port: gw.port, path: '/v1/models', headers });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json().error.code, 'missing_api_key');
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="tollgate"');
      assert.equal((await gw.accessFor(res.headers['x-request-id'])).reason, 'missing_api_key');
    }
    const keyed = await request({ port: gw.port, path: '/v1/models', headers: { Authorization: `Bearer ${TEAM_KEY}` } });
    assert.equal(keyed.status, 200, keyed.text);
    assert.deepEqual(keyed.json().data.map((m) => m.id), ['gpt-4o', 'plain-model']);
    // One model is asked for as the list is: 401, not 404, without a key.
    const one = await request({ port: gw.port, path: '/v1/models/gpt-4o' });
    assert.equal(one.status, 401, one.text);
    assert.equal(one.json().error.code, 'missing_api_key');
  });
});

describe('gateway keys and Expect: 100-continue', () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    const config = keyedConfig(mock);
    config.routes.push({ name: 'ci-files', match: { path_prefix: '/v1/files' }, backends: ['plain'], auth: { keys: ['ci'] } });
    gw = await startGateway(config, ENV);
  });
  after(stopAll);
  afterEach(() => gw.checkErrors());

  /* Send the head of a POST to path that waits for 100 Continue, and
   * return the first response and the access-log line of it. */
  async function waitForContinue(path, credential, id) {
    const body = JSON.stringify({ model: 'claude-x', max_tokens: 10, messages: [] });
    const client = await RawClient.connect(gw.port);
    try {
      await client.write(rawRequest('POST', path, [
        'Host: 127.0.0.1', 'Content-Type: application/json', `Content-Length: ${body.length}`,
        'Expect: 100-continue', `X-Request-Id: ${id}`, ...credential,
      ]));
      const res = await client.readResponse();
      if (res.status === 100) {
        await client.write(body);
        await client.readResponse();
      }
      return { res, access: await gw.accessFor(id) };
    } finally {
      client.destroy();
    }
  }

  const CASES = [
    // [case, path, credential header, status, code]
    ['an unknown key', '/v1/messages', ['x-api-key: wrong-key'], 401, 'invalid_api_key'],
    ['no key on a route that needs one', '/v1/messages', [], 401, 'missing_api_key'],
    ['a key that no route of the path allows', '/v1/files', [`Authorization: Bearer ${TEAM_KEY}`], 403, 'key_not_allowed'],
  ];
  for (const [name, path, credential, status, code] of CASES) {
    it(`answers ${status} to ${name} without 100 Continue`, async () => {
      const before = (await mock.requests()).length;
      const { res, access } = await waitForContinue(path, credential, `continue-${code}`);
      assert.equal(res.status, status, 'the body was asked for');
      const { error } = JSON.parse(res.body.toString());
      assert.equal(error.code, code);
      if (status === 401)
        assert.match(res.header('www-authenticate'), /^Bearer realm="tollgate"/);
      else
        assert.match(error.message, /the gateway key "team" may use no route that takes POST \/v1\/files/);
      assert.equal(res.header('connection'), 'close');
      assert.equal(access.reason, code);
      assert.equal(access.termination, 'GR');
      assert.equal((await mock.requests()).length, before, 'nothing may go upstream');
    });
  }

  it('asks for the body when the body may decide', async () => {
    // A route open to anyone takes some models of this path.
    const { res } = await waitForContinue('/v1/chat/completions', [], 'continue-open');
    assert.equal(res.status, 100);
    const { res: allowed, access } = await waitForContinue('/v1/messages', [`x-api-key: ${TEAM_KEY}`], 'continue-key');
    assert.equal(allowed.status, 100);
    assert.equal(access.route, 'messages');
    assert.equal(access.key, 'team');
  });
});

describe('gateway keys and the response cache', () => {
  afterEach(stopAll);

  it('keys one tenant per gateway key', async () => {
    const mock = await startMock();
    const config = keyedConfig(mock);
    config.routes[0].cache = true;
    const gw = await startGateway(config, ENV);
    const ask = async (headers) => {
      const res = await chat(gw, { model: 'gpt-4o', headers });
      assert.equal(res.status, 200, res.text);
      return res.headers['x-tollgate-cache'];
    };

    assert.equal(await ask({ Authorization: `Bearer ${TEAM_KEY}` }), 'miss');
    await waitFor(async () => await ask({ Authorization: `Bearer ${TEAM_KEY}` }) === 'hit',
      { message: 'the entry stored' });
    assert.equal(await ask({ 'x-api-key': TEAM_KEY }), 'hit', 'one key is one tenant');
    assert.equal(await ask({ Authorization: `Bearer ${CI_KEY}` }), 'miss', 'another key is another tenant');
  });
});

describe('gateway keys on reload', () => {
  afterEach(stopAll);

  it('adds and removes keys on SIGHUP', async () => {
    const mock = await startMock();
    const gw = await startGateway(keyedConfig(mock), ENV);
    const NEW_KEY = 'tg-new-0f9a8b7c';
    const send = (key) => chat(gw, { model: 'gpt-4o', headers: { Authorization: `Bearer ${key}` } });

    assert.equal((await send(NEW_KEY)).status, 401);
    const added = structuredClone(gw.config);
    added.gateway_keys.newcomer = { sha256: sha256(NEW_KEY) };
    assert.equal(await gw.reload(added), 'reloaded');
    const res = await send(NEW_KEY);
    assert.equal(res.status, 200, res.text);
    assert.equal((await gw.accessFor(res.id)).key, 'newcomer');

    const removed = structuredClone(added);
    delete removed.gateway_keys.team;
    assert.equal(await gw.reload(removed), 'reloaded');
    assert.equal((await send(TEAM_KEY)).status, 401);
    assert.equal((await send(NEW_KEY)).status, 200);

    const none = structuredClone(removed);
    delete none.gateway_keys;
    none.routes = none.routes.map(({ auth, ...r }) => r);
    assert.equal(await gw.reload(none), 'reloaded');
    const open = await chat(gw, { model: 'gpt-4o' });
    assert.equal(open.status, 200, open.text);
    assert.equal((await gw.accessFor(open.id)).key, undefined);
  });
});

describe('gateway keys in traces', () => {
  let receiver;
  before(async () => { receiver = await startOtlpReceiver(); });
  after(async () => { await stopAll(); await receiver.close(); });

  it('names the key in the span', async () => {
    const mock = await startMock();
    const tracing = quickTracing(receiver);
    const gw = await startGateway(keyedConfig(mock, { tracing }), ENV);
    const res = await chat(gw, { model: 'gpt-4o', headers: { Authorization: `Bearer ${CI_KEY}` } });
    assert.equal(res.status, 200, res.text);
    const { spans } = await requestSpans(gw, receiver, res.id, 2);
    const server = spans.find((s) => s.kind === 2);
    assert.equal(server.attributes['tollgate.key'], 'ci');
    assert.ok(!JSON.stringify(spans, (k, v) => (typeof v === 'bigint' ? String(v) : v))
      .includes(CI_KEY), 'the secret is in a span');
  });
});

describe('gateway_keys in the config', () => {
  const check = async (config, env = {}) => {
    const file = writeTempFile('tollgate.json', JSON.stringify(config));
    const result = await runTollgate(['-t', '-c', file], { env });
    assertNoFatalOutput(result.stderr);
    return result;
  };
  const base = {
    backends: { b: { url: 'http://127.0.0.1:9' } },
    routes: [{ name: 'r', backends: ['b'] }],
  };

  it('accepts a variable and a digest', async () => {
    const { code, stderr } = await check({ ...base, gateway_keys: { a: { key: '${K}' }, b: { sha256: sha256('x') } } }, { K: 'secret-value' });
    assert.equal(code, 0, stderr);
  });

  it('reports every mistake without secrets', async () => {
    const config = {
      ...base,
      gateway_keys: {
        both: { key: 'literal-secret-1', sha256: sha256('y') },
        neither: {},
        short: { sha256: 'abc123' },
        unset: { key: '${TG_TEST_UNSET_KEY}' },
        twin: { key: 'literal-secret-1x' },
        'twin-2': { key: 'literal-secret-1x' },
        'bad name!': { sha256: sha256('z') },
      },
      routes: [
        { name: 'r', backends: ['b'], auth: { keys: ['nobody'] } },
        { name: 's', backends: ['b'], auth: { required: false, keys: ['twin'] } },
      ],
    };
    const { code, stderr } = await check(config);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /gateway_keys\.both: give the secret once/);
    assert.match(stderr, /gateway_keys\.neither: give the secret once/);
    assert.match(stderr, /gateway_keys\.short\.sha256: invalid digest "abc123"; expected 64 hexadecimal digits/);
    assert.match(stderr, /TG_TEST_UNSET_KEY is not set/);
    assert.match(stderr, /gateway_keys\.twin-2: has the same secret as gateway_keys\.twin/);
    assert.match(stderr, /gateway_keys: invalid key name "bad name!"/);
    assert.match(stderr, /routes\[0\]\.auth\.keys\[0\]: unknown gateway key "nobody"/);
    assert.match(stderr, /routes\[1\]\.auth\.keys: has no effect when "required" is false/);
    assert.ok(!stderr.includes('literal-secret'), stderr);
  });

  it('rejects secrets no caller can present', async () => {
    const config = {
      ...base,
      backends: { b: { url: 'http://127.0.0.1:9', api_key: ' \t ' } },
      gateway_keys: {
        spacey: { key: ' literal-secret-2 ' },
        tabbed: { key: 'literal-secret-3\t' },
        empty: { sha256: sha256('') },
      },
    };
    const { code, stderr } = await check(config);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /gateway_keys\.spacey\.key: starts or ends with a space or tab, which HTTP strips/);
    assert.match(stderr, /gateway_keys\.tabbed\.key: starts or ends with a space or tab/);
    assert.match(stderr, /gateway_keys\.empty\.sha256: is the SHA-256 of the empty string, which no caller can present/);
    assert.match(stderr, /backends\.b\.api_key: contains only spaces or tabs, which HTTP strips/);
    assert.ok(!stderr.includes('literal-secret'), stderr);
  });

  it('rejects auth without gateway_keys', async () => {
    const { code, stderr } = await check({ ...base, routes: [{ name: 'r', backends: ['b'], auth: { required: false } }] });
    assert.equal(code, 1);
    assert.match(stderr, /routes\[0\]\.auth: has no effect without "gateway_keys"/);
  });
});
