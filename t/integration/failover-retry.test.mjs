// Retries. Each failure kind of retry.on moves a request to the next
// backend, and a kind not listed does not. Also covered: max_attempts, no
// backend tried twice, model renaming per member, a large body replayed
// intact, the log lines of attempts, failovers, cooldowns and ejections,
// and a client that leaves during a failover.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  RawClient, freePort, mockBackend, rawPost, request, runTollgate, startGateway,
  startMock, stopAll, waitFor, writeTempFile,
} from './lib/harness.mjs';
import {
  NEVER_EJECT, RETRY_FREELY, apiRequests, chat, eventDatas, logLinesOf,
  messages, startMockWith,
} from './lib/failover.mjs';
import { parseSamples, scrape, valueOf } from './lib/prometheus.mjs';

/*
 * One route per case, matched by model name: the failing backend first, in
 * a tier of its own, then "ok". Routes without a retry key get the
 * documented default retry.on (connect, timeout, reset, stream_error, 429,
 * 500, 502, 503, 504, 529).
 */
const TRIGGERS = [
  // [case, the failing backend's mock options (null: a closed port), label in x-tollgate-attempts, stream]
  ['connect', null, 'connect', false],
  ['timeout', 'first_byte_delay=10s', 'timeout', false],
  ['reset', 'hangup=1', 'reset', false],
  ['429', 'status=429', '429', false],
  ['500', 'status=500', '500', false],
  ['502', 'status=502', '502', false],
  ['503', 'status=503', '503', false],
  ['504', 'status=504', '504', false],
  ['529', 'status=529', '529', false],
  ['stream_error', 'stream_error=1', 'stream_error', true],
];

/* Cases whose policy leaves the failure out: the client gets it as is. */
const NOT_LISTED = [
  // [case, mock options, retry.on, expected client status]
  ['500 without 500 listed', 'status=500', ['connect', 'timeout', 502, 503], 500],
  ['429 without 429 listed', 'status=429', [500, 502, 503, 504], 429],
  ['a timeout without timeout listed', 'first_byte_delay=10s', ['connect', 500], 504],
  ['a reset without reset or 502 listed', 'hangup=1', ['connect', 500, 503], 502],
];

/* Failure kinds that a listed status implies, as tollgate.json(5) documents. */
const IMPLIED = [
  // [case, mock options, retry.on, label, stream]
  ['502 implies reset', 'hangup=1', [502], 'reset', false],
  ['a 5xx implies stream_error', 'stream_error=1', [503], 'stream_error', true],
];

describe('tier configuration', () => {
  after(stopAll);

  /* Check a config whose one route has these tiers with tollgate -t. */
  function checkTiers(tiers) {
    const config = {
      listen: ['127.0.0.1:8080'],
      backends: { a: { url: 'http://127.0.0.1:9001' }, b: { url: 'http://127.0.0.1:9002' }, c: { url: 'http://127.0.0.1:9003' } },
      routes: [{ name: 'chat', backends: tiers }],
    };
    return runTollgate(['-t', '-c', writeTempFile('tollgate.json', JSON.stringify(config))]);
  }

  it('accepts groups of several members', async () => {
    const { code, stderr } = await checkTiers([
      { balance: 'round_robin', members: [{ name: 'a', weight: 3 }, { name: 'b', model: 'gpt-4o-mini' }] },
      'c',
    ]);
    assert.equal(code, 0, stderr);
  });

  it('rejects a backend listed twice in a route', async () => {
    for (const tiers of [[{ members: ['a', 'a'] }], ['a', { members: ['b', 'a'] }], ['a', 'a']]) {
      const { code, stderr } = await checkTiers(tiers);
      assert.equal(code, 1, `tiers ${JSON.stringify(tiers)} were accepted`);
      assert.match(stderr, /backend "a" is listed twice/);
    }
  });
});

describe('retry triggers', () => {
  let ok;
  let gw;
  const bad = new Map();  // case name -> mock, for the cases that have one

  before(async () => {
    ok = await startMock();
    const closedPort = await freePort();
    const backends = { ok: mockBackend(ok) };
    const routes = [];

    const addCase = async (name, options, retry) => {
      const backend = `x-${routes.length}`;
      if (options === null) {
        backends[backend] = { url: `http://127.0.0.1:${closedPort}`, health: NEVER_EJECT };
      } else {
        const mock = await startMockWith(options);
        bad.set(name, mock);
        backends[backend] = mockBackend(mock, { timeouts: { first_byte: '300ms' }, health: NEVER_EJECT });
      }
      routes.push({
        name: `case-${routes.length}`,
        match: { path: '/v1/chat/completions', model: `model-${routes.length}` },
        backends: [backend, 'ok'],
        retry,
      });
      return { backend, model: `model-${routes.length - 1}` };
    };

    for (const entry of TRIGGERS)
      entry.route = await addCase(entry[0], entry[1], RETRY_FREELY);
    for (const entry of [...NOT_LISTED, ...IMPLIED])
      entry.route = await addCase(entry[0], entry[1], { ...RETRY_FREELY, on: entry[2] });

    gw = await startGateway({ backends, routes });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  /* Send one request of a case and check that it moved from the failing
   * backend to "ok" after exactly one upstream request to each. */
  async function expectFailover(name, route, label, stream) {
    const res = await chat(gw, { model: route.model, stream });
    assert.equal(res.status, 200, `status (body: ${res.text.slice(0, 300)})`);
    assert.equal(res.attempts, `${route.backend}:${label},ok:200`);
    if (stream) {
      const datas = eventDatas(res.text);
      assert.equal(datas.at(-1), '[DONE]', 'the stream of the second backend is not complete');
      assert.ok(!datas.some((d) => d.includes('"error"')), `the client saw the first backend's error event: ${res.text}`);
    } else {
      assert.equal(res.json().object, 'chat.completion');
    }

    assert.equal((await apiRequests(ok, route.model)).length, 1, 'requests that reached "ok"');
    if (bad.has(name))
      assert.equal((await apiRequests(bad.get(name), route.model)).length, 1, 'requests that reached the failing backend');
    const entry = await gw.accessFor(res.id);
    assert.equal(entry.backend, 'ok');
    assert.equal(entry.status, 200);
  }

  for (const entry of TRIGGERS) {
    const [name, , label, stream] = entry;
    it(`moves on after ${name} (default retry.on)`, () => expectFailover(name, entry.route, label, stream));
  }

  for (const entry of IMPLIED) {
    const [name, , , label, stream] = entry;
    it(`moves on: ${name}`, () => expectFailover(name, entry.route, label, stream));
  }

  for (const entry of NOT_LISTED) {
    const [name, options, , status] = entry;
    it(`passes ${name} to the client`, async () => {
      const { route } = entry;
      const res = await chat(gw, { model: route.model });
      assert.equal(res.status, status, `status (body: ${res.text.slice(0, 300)})`);
      assert.equal(typeof res.json().error, 'object', 'an OpenAI error body');
      assert.equal((await apiRequests(ok, route.model)).length, 0, 'the request reached the next backend');
      assert.equal((await apiRequests(bad.get(name), route.model)).length, 1, 'upstream requests');

      if (options.startsWith('status=')) {
        // The upstream's own response, unchanged.
        const direct = await request({ port: bad.get(name).port, method: 'POST', path: '/v1/chat/completions', body: { model: 'direct', messages } });
        assert.equal(res.text, direct.text);
      }
      const access = await gw.accessFor(res.id);
      assert.equal(access.backend, route.backend);
      assert.equal(access.status, status);
    });
  }
});

describe('attempt limits', () => {
  const STATUSES = [500, 502, 503, 504];
  let mocks;
  let gw;

  before(async () => {
    mocks = await Promise.all(STATUSES.map((s) => startMockWith(`status=${s}`)));
    const backends = {};
    STATUSES.forEach((s, i) => {
      backends[`s${s}`] = mockBackend(mocks[i], { health: NEVER_EJECT });
    });
    const tiers = STATUSES.map((s) => `s${s}`);
    gw = await startGateway({
      backends,
      routes: [
        { name: 'three', match: { path: '/v1/chat/completions', model: 'three' }, backends: tiers, retry: { ...RETRY_FREELY, max_attempts: 3 } },
        { name: 'sixteen', match: { path: '/v1/chat/completions', model: 'sixteen' }, backends: tiers, retry: { ...RETRY_FREELY, max_attempts: 16 } },
      ],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  async function upstreamRequests(model) {
    const perMock = await Promise.all(mocks.map((m) => apiRequests(m, model)));
    return perMock.map((list) => list.length);
  }

  it('stops after max_attempts and returns the last upstream answer', async () => {
    const res = await chat(gw, { model: 'three' });
    const counts = await upstreamRequests('three');
    assert.equal(counts.reduce((a, b) => a + b, 0), 3, `upstream requests per backend: ${counts}`);

    const entries = (res.attempts ?? '').split(',');
    assert.equal(entries.length, 3, `x-tollgate-attempts: ${res.attempts}`);
    const tried = entries.map((e) => e.split(':'));
    for (const [name, label] of tried)
      assert.equal(label, name.slice(1), `attempt ${name} is labelled ${label}`);
    STATUSES.forEach((s, i) => {
      assert.equal(counts[i], tried.some(([name]) => name === `s${s}`) ? 1 : 0,
        `requests to s${s} (attempts: ${res.attempts})`);
    });

    // The last attempt's status and body reach the client unchanged.
    const [lastName] = tried.at(-1);
    const lastStatus = Number(lastName.slice(1));
    assert.equal(res.status, lastStatus);
    const direct = await request({ port: mocks[STATUSES.indexOf(lastStatus)].port, method: 'POST', path: '/v1/chat/completions', body: { model: 'direct', messages } });
    assert.equal(res.text, direct.text);

    const access = await gw.accessFor(res.id);
    assert.equal(access.backend, lastName);
    assert.equal(access.upstream_status, lastStatus);
  });

  it('never sends a request to the same backend twice', async () => {
    const res = await chat(gw, { model: 'sixteen' });
    const counts = await upstreamRequests('sixteen');
    assert.deepEqual(counts, [1, 1, 1, 1], 'upstream requests per backend');
    const names = (res.attempts ?? '').split(',').map((e) => e.split(':')[0]);
    assert.deepEqual([...names].sort(), STATUSES.map((s) => `s${s}`), `x-tollgate-attempts: ${res.attempts}`);
    assert.equal(res.status, Number(names.at(-1).slice(1)));
  });
});

describe('what the next backend receives', () => {
  let failing;
  let ok;
  let gw;

  before(async () => {
    failing = await startMockWith('status=500');
    ok = await startMock();
    gw = await startGateway({
      limits: { max_body: '8MiB' },
      backends: {
        bad: mockBackend(failing, { health: NEVER_EJECT }),
        good: mockBackend(ok),
      },
      routes: [
        {
          name: 'renamed',
          match: { path: '/v1/chat/completions', model: 'renamed' },
          backends: ['bad', { members: [{ name: 'good', model: 'other-model' }] }],
          retry: RETRY_FREELY,
        },
        { name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['bad', 'good'], retry: RETRY_FREELY },
      ],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('sends the member\'s model name to a member that renames it', async () => {
    const res = await chat(gw, { model: 'renamed' });
    assert.equal(res.status, 200);
    assert.equal(res.attempts, 'bad:500,good:200');

    const [first] = await apiRequests(failing, 'renamed');
    assert.ok(first, 'the first backend did not get the request');
    const [second] = await apiRequests(ok, 'other-model');
    assert.ok(second, 'the second backend did not get the model "other-model"');
    const body = JSON.parse(second.body);
    assert.deepEqual(body, { ...JSON.parse(first.body), model: 'other-model' }, 'only the model may change');
    assert.equal(Number(second.headers['content-length']), Buffer.byteLength(second.body));
  });

  it('renames the model and keeps the other bytes', async () => {
    const body = (model) => ` { "model" : "${model}", "temperature" : 0.7, "top_p": 1E0,`
      + ' "messages": [{"role": "user", "content": "caf\\u00e9"}] }\n';
    const res = await chat(gw, { body: body('renamed'), headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 200);
    assert.equal(res.attempts, 'bad:500,good:200');

    const second = (await apiRequests(ok, 'other-model')).at(-1);
    assert.ok(second, 'the second backend did not get the model "other-model"');
    assert.equal(second.body, body('other-model'));
  });

  it('replays a 5 MiB body unchanged on the second backend', async () => {
    // Varied text with multi-byte characters, so a lost, repeated or
    // shifted piece shows.
    const parts = [];
    for (let i = 0, bytes = 0; bytes < 5 * 1024 * 1024; i++) {
      const line = `line ${i}: the quick brown fox, é日本🙂 ${(i * 7919) % 10007}\n`;
      parts.push(line);
      bytes += Buffer.byteLength(line);
    }
    const text = JSON.stringify({ model: 'big-body', messages: [{ role: 'user', content: parts.join('') }] });
    assert.ok(Buffer.byteLength(text) > 5 * 1024 * 1024);

    const res = await chat(gw, { body: text, headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 200, `status (body: ${res.text.slice(0, 300)})`);
    assert.equal(res.attempts, 'bad:500,good:200');

    for (const [name, mock] of [['the first backend', failing], ['the second backend', ok]]) {
      const [got] = await apiRequests(mock, 'big-body');
      assert.ok(got, `${name} did not get the request`);
      assert.equal(Number(got.headers['content-length']), Buffer.byteLength(text), `content-length at ${name}`);
      assert.ok(got.body === text, `${name} got a body of ${Buffer.byteLength(got.body)} bytes that differs from the ${Buffer.byteLength(text)} sent`);
    }
  });
});

describe('failover log lines', () => {
  let gw;

  before(async () => {
    const failing = await startMockWith('status=500');
    const limited = await startMockWith('status=429;retry_after=60');
    const slow = await startMockWith('first_byte_delay=10s');
    const ok = await startMock();
    gw = await startGateway({
      backends: {
        slow: mockBackend(slow, { timeouts: { first_byte: '300ms' }, health: NEVER_EJECT }),
        sick: mockBackend(failing, { health: { consecutive_failures: 1, base_ejection: '60s' } }),
        limited: mockBackend(limited),
        ok: mockBackend(ok),
        last: mockBackend(failing, { health: NEVER_EJECT }),
        lastbut: mockBackend(failing, { health: NEVER_EJECT }),
      },
      routes: [
        { name: 'logged', match: { path: '/v1/chat/completions', model: 'logged' }, backends: ['sick', 'limited', 'ok'], retry: RETRY_FREELY },
        { name: 'failed', match: { path: '/v1/chat/completions', model: 'failed' }, backends: ['lastbut', 'last'], retry: RETRY_FREELY },
        { name: 'timedout', match: { path: '/v1/chat/completions', model: 'timedout' }, backends: ['lastbut', 'slow'], retry: RETRY_FREELY },
      ],
    });
  });

  afterEach(() => gw?.checkErrors());
  after(stopAll);

  it('logs failovers, ejection and cooldown', async () => {
    const res = await chat(gw, { model: 'logged' });
    assert.equal(res.status, 200);
    assert.equal(res.attempts, 'sick:500,limited:429,ok:200');
    await gw.accessFor(res.id);
    const lines = logLinesOf(gw, res.id);
    const has = (re, what) => assert.ok(lines.some((l) => re.test(l)), `no log line ${what} (${re}); lines of the request:\n${lines.join('\n')}`);

    has(/\bsick\b.*\b500\b.*\blimited\b/, 'for the failover from sick (500) to limited');
    has(/\blimited\b.*\b429\b.*\bok\b/, 'for the failover from limited (429) to ok');
    has(/\bsick\b.*eject/, 'for the ejection of sick');
    has(/\blimited\b.*cool/, 'for the cooldown of limited');
  });

  it('logs attempts when every backend fails', async () => {
    const res = await chat(gw, { model: 'failed' });
    assert.equal(res.status, 500);
    assert.equal(res.attempts, 'lastbut:500,last:500');
    const access = await gw.accessFor(res.id);
    assert.equal(access.backend, 'last');
    assert.equal(access.upstream_status, 500);
    const lines = logLinesOf(gw, res.id);
    assert.ok(lines.some((l) => /\blastbut\b.*\b500\b.*\blast\b/.test(l)),
      `no log line for the failover from lastbut to last; lines of the request:\n${lines.join('\n')}`);
  });

  it('logs the last attempt\'s backend and status', async () => {
    const res = await chat(gw, { model: 'timedout' });
    assert.equal(res.status, 504);
    assert.equal(res.attempts, 'lastbut:500,slow:timeout');
    const access = await gw.accessFor(res.id);
    assert.equal(access.backend, 'slow');
    assert.equal(access.upstream_status, null, 'the 500 of lastbut paired with the backend slow');
  });
});

describe('client gone during failover', () => {
  afterEach(stopAll);

  for (const stream of [false, true]) {
    it(`closes the second attempt's connection when the client leaves (${stream ? 'stream' : 'JSON'})`, async () => {
      const first = await startMockWith('status=500');
      const second = await startMockWith('first_byte_delay=30s');
      const third = await startMock();
      const gw = await startGateway({
        backends: {
          a: mockBackend(first, { health: NEVER_EJECT }),
          b: mockBackend(second, { health: NEVER_EJECT }),
          c: mockBackend(third),
        },
        routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['a', 'b', 'c'], retry: RETRY_FREELY }],
      });

      const id = `client-leaves-during-failover-${stream ? 'stream' : 'json'}`;
      const client = await RawClient.connect(gw.port);
      await client.write(rawPost('/v1/chat/completions', { model: 'gpt-4o', messages, stream }, [`X-Request-Id: ${id}`]));
      await waitFor(async () => (await apiRequests(second)).length === 1, { message: 'the second attempt at b' });
      client.destroy();

      await waitFor(async () => (await second.stats()).responses_aborted === 1,
        { message: 'b to see the gateway close the attempt' });
      const entry = await gw.accessFor(id);
      assert.match(entry.termination, /^C/, 'termination');
      assert.equal(entry.backend, 'b');
      assert.equal((await apiRequests(third)).length, 0, 'the request went on to c after the client left');
    });
  }
});

describe('connect timeout', () => {
  afterEach(stopAll);

  // A backend whose address accepts no connection (a mock with
  // --no-accept, like a blackholed address) fails its attempt with a
  // connect timeout, which the default retry.on lists.
  it('moves on from a backend that does not accept in time', async () => {
    const silent = await startMock({ args: ['--no-accept'] });
    const ok = await startMock();
    const gw = await startGateway({
      backends: {
        silent: { url: silent.url, timeouts: { connect: '300ms' }, health: NEVER_EJECT },
        ok: mockBackend(ok),
      },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['silent', 'ok'], retry: RETRY_FREELY }],
    });

    const res = await chat(gw);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.attempts, 'silent:timeout,ok:200');
    const lines = logLinesOf(gw, res.id);
    assert.ok(lines.some((l) => l.includes(`no connection to 127.0.0.1:${silent.port} after 300 ms`)),
      `no log line names the connect timeout; lines of the request:\n${lines.join('\n')}`);

    // The client may read the response a moment before the request ends
    // and is counted.
    const samples = await waitFor(async () => {
      const s = parseSamples((await scrape(gw)).text);
      return valueOf(s, 'tollgate_requests_in_flight') === 0 ? s : null;
    }, { message: 'tollgate_requests_in_flight to reach 0' });
    assert.equal(valueOf(samples, 'tollgate_upstream_attempts_total', { backend: 'silent', outcome: 'timeout' }), 1);
    assert.equal(valueOf(samples, 'tollgate_upstream_attempts_total', { backend: 'ok', outcome: 'success' }), 1);
    assert.equal(valueOf(samples, 'tollgate_failovers_total', { route: 'chat' }), 1);
    await gw.stop();
  });
});

/*
 * A whole body cut short after its head: nothing reached the client, so
 * the request moves on, and the cut counts against the backend as a reset
 * (before, its attempt ended as a success at the head).
 */
describe('a body cut short', () => {
  let cutter;

  afterEach(async () => {
    await stopAll();
    cutter?.close();
  });

  it('counts as a reset and ejects the backend', async () => {
    cutter = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' });
        res.write('{"id":"chatcmpl-cut","object":"chat.completion","choices":[');
        setTimeout(() => res.socket.destroy(), 20);
      });
    });
    cutter.listen(0, '127.0.0.1');
    await once(cutter, 'listening');
    const ok = await startMock();
    const gw = await startGateway({
      backends: {
        cut: { url: `http://127.0.0.1:${cutter.address().port}`, health: { consecutive_failures: 2 } },
        ok: mockBackend(ok, { health: NEVER_EJECT }),
      },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['cut', 'ok'], retry: RETRY_FREELY }],
    });
    gw.expectErrors(/upstream|ejected/);

    for (let i = 0; i < 2; i++) {
      const res = await chat(gw);
      assert.equal(res.status, 200);
      assert.equal(res.attempts, 'cut:reset,ok:200');
    }

    const samples = parseSamples((await scrape(gw)).text);
    assert.equal(valueOf(samples, 'tollgate_upstream_attempts_total', { backend: 'cut', outcome: 'reset' }), 2);
    assert.equal(valueOf(samples, 'tollgate_upstream_attempts_total', { backend: 'cut', outcome: 'success' }), 0);
    await gw.waitForLog(/backend cut ejected for [0-9.]+ s after failures/);
  });
});

/*
 * backends.NAME.stream_usage false: a backend that rejects
 * stream_options (as some Azure api-versions do) gets the client's body,
 * without the usage request the gateway adds to count a stream's tokens,
 * while the other backends of the route still get it, on a failover too.
 */
describe('stream_usage', () => {
  afterEach(stopAll);

  for (const [what, member] of [['as the client sent it', 'a'], ['with its member\'s model', { name: 'a', model: 'from-a' }]]) {
    it(`sends a backend without it the body ${what}`, async () => {
      const a = await startMockWith('status=500');
      const b = await startMock();
      const gw = await startGateway({
        backends: { a: mockBackend(a, { stream_usage: false, health: NEVER_EJECT }), b: mockBackend(b) },
        routes: [{ name: 'chat', match: { path: '/v1/chat/completions' },
          backends: [{ members: [member] }, 'b'], retry: RETRY_FREELY }],
      });
      const res = await chat(gw, { stream: true });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.attempts, 'a:500,b:200');
      assert.ok(!res.text.includes('"choices":[]'), `the usage chunk reached the client: ${res.text}`);

      const [toA] = await apiRequests(a);
      const sentToA = JSON.parse(toA.body);
      assert.equal(sentToA.stream_options, undefined, `a got: ${toA.body}`);
      assert.equal(sentToA.model, typeof member === 'string' ? 'gpt-4o' : 'from-a');
      const [toB] = await apiRequests(b);
      assert.deepEqual(JSON.parse(toB.body).stream_options, { include_usage: true });
    });
  }

  it('leaves a stream alone when no backend of the route takes it', async () => {
    const only = await startMock();
    const gw = await startGateway({
      backends: { only: mockBackend(only, { stream_usage: false }) },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['only'] }],
    });
    const body = { model: 'gpt-4o', messages, stream: true };
    const res = await chat(gw, { body });
    assert.equal(res.status, 200, res.text);
    const [sent] = await apiRequests(only);
    assert.equal(sent.body, JSON.stringify(body));
  });
});
