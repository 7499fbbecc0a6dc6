// Backend health: cooldowns after 429, 503 or 529 with Retry-After (and which
// of two wins), a route whose backends all cool down, ejection after
// failures or an error ratio, the half-open trial, active probes, and
// panic mode.
//
// Time checks here are one-sided, so a slow machine cannot make them fail.
// A request that completed before a cooldown or ejection could have ended
// must not have reached that backend. A request that did reach it must
// have completed after the earliest moment the cooldown could end. Those
// checks see a wrong length only when a request falls late in the window,
// which a stalled test process may miss, so the tests also check the
// length that the gateway logs for each cooldown and ejection.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
  mockBackend, sleep, startGateway, startMock, stopAll, waitFor,
} from './lib/harness.mjs';
import {
  NEVER_EJECT, RETRY_FREELY, apiRequests, chat, probeRequests, setMockOptions,
  startMockWith, startScripted,
} from './lib/failover.mjs';
import { parseSamples, scrape, valueOf } from './lib/prometheus.mjs';

/* A route with backend a as the first tier and b as the second, so every
 * request goes to a while a can take one. Tiers rather than a balanced
 * group keep these tests independent of the balancers. */
function twoBackendConfig(a, b, { health = {}, retry = RETRY_FREELY } = {}) {
  return {
    backends: {
      a: mockBackend(a, { health: { ...NEVER_EJECT, ...health } }),
      b: mockBackend(b, { health: NEVER_EJECT }),
    },
    routes: [{
      name: 'chat',
      match: { path: '/v1/chat/completions' },
      backends: ['a', 'b'],
      retry,
    }],
  };
}

/*
 * Send requests one after another until `until` (performance.now() ms)
 * and return them with the backend that served each, from the access log.
 */
async function sendUntil(gw, until) {
  const sent = [];
  while (performance.now() < until)
    sent.push(await chat(gw));
  for (const res of sent) {
    assert.equal(res.status, 200, `status (body: ${res.text.slice(0, 300)})`);
    res.backend = (await gw.accessFor(res.id)).backend;
  }
  return sent;
}

/* Send requests until one is served by backend `name` (by its access-log
 * line), and return that request. */
async function waitServedBy(gw, name, { timeoutMs = 15000 } = {}) {
  return waitFor(async () => {
    const res = await chat(gw);
    const entry = await gw.accessFor(res.id);
    return entry.backend === name || (res.attempts ?? '').startsWith(`${name}:`) ? res : null;
  }, { timeoutMs, message: `a request that reached backend ${name}` });
}

/* Assert that no request completed before `end` reached backend a. */
function assertNoneToABefore(sent, end) {
  const toA = sent.filter((r) => r.doneAt < end)
    .filter((r) => r.backend === 'a' || (r.attempts ?? '').startsWith('a:'));
  assert.deepEqual(toA.map((r) => r.attempts ?? r.backend), [],
    'requests that reached backend a before it could come back');
}

/* Wait for the cooldown line of backend a after status, and return it
 * once it names request id and a length that `seconds` matches. */
async function cooldownLine(gw, status, id, seconds) {
  const line = await gw.waitForLog(new RegExp(`backend a responded ${status}; cooling down`));
  assert.match(line, new RegExp(`req=${id} `));
  assert.match(line, new RegExp(`cooling down( model "[^"]*")? for ${seconds} s`),
    'the cooldown line gives another length');
  return line;
}

describe('cooldown after Retry-After', () => {
  afterEach(stopAll);

  // Each case gives Retry-After on the first request only, so that later
  // requests that reach a get its status without a new cooldown. The
  // HTTP-date is 3 s ahead, rounded down to a second: it ends at least 2 s
  // after the request was sent, like the delay of 2 seconds. The gateway
  // reads the date against its clock in whole seconds, so it logs 2 s or
  // 3 s.
  const httpDateIn3s = () => new Date((Math.floor(Date.now() / 1000) + 3) * 1000).toUTCString();
  for (const [status, what, retryAfter, seconds] of [
    [429, '2', () => '2', '2\\.000'],
    [503, '2', () => '2', '2\\.000'],
    [529, '2', () => '2', '2\\.000'],
    [429, 'an HTTP-date', httpDateIn3s, '[23]\\.000'],
  ]) {
    it(`keeps a backend out after ${status} with Retry-After ${what}, then uses it again`, async () => {
      const a = await startMockWith(`status=${status}`);
      const b = await startMock();
      const gw = await startGateway(twoBackendConfig(a, b));

      // a's status cools it down, so b serves the request.
      const first = await chat(gw, { headers: { 'x-mock': `retry_after=${retryAfter()}` } });
      const t0 = first.sentAt;          // the cooldown ends after t0 + 2 s
      assert.equal(first.status, 200);
      assert.equal(first.attempts, `a:${status},b:200`);
      await cooldownLine(gw, status, first.id, seconds);

      const sent = await sendUntil(gw, t0 + 1500);
      assertNoneToABefore(sent, t0 + 2000);

      // a's own log agrees, when read before the cooldown could end.
      const count = (await apiRequests(a)).length;
      if (performance.now() < t0 + 2000)
        assert.equal(count, 1, 'requests a received during its cooldown');

      const back = await waitServedBy(gw, 'a');
      assert.ok(back.doneAt >= t0 + 2000, `a got a request ${back.doneAt - t0} ms after its ${status} asked for 2 s`);
      assert.equal(back.attempts, `a:${status},b:200`);
    });
  }

  for (const [firstWait, secondWait] of [[3, 1], [1, 3]]) {
    it(`keeps the later end of two cooldowns (Retry-After ${firstWait} then ${secondWait})`, async () => {
      // Every request goes to a while a can take it. The mock delays its
      // 429, so two requests are in flight at once and their responses
      // arrive in the order the requests were sent. The delay is long
      // enough for the second request to reach a even when the test
      // process stalls for a second after the first one arrives.
      const delayMs = 2000;
      const a = await startMockWith(`status=429;first_byte_delay=${delayMs}ms`);
      const b = await startMock();
      const gw = await startGateway(twoBackendConfig(a, b));

      const t0 = performance.now();
      const firstReq = chat(gw, { headers: { 'x-mock': `retry_after=${firstWait}` } });
      await waitFor(async () => (await apiRequests(a)).length === 1, { message: 'the first request at a' });
      const secondReq = chat(gw, { headers: { 'x-mock': `retry_after=${secondWait}` } });
      const [first, second] = await Promise.all([firstReq, secondReq]);
      assert.equal(first.attempts, 'a:429,b:200');
      assert.equal(second.attempts, 'a:429,b:200');

      // The second line gives the end of the first cooldown when that one
      // ends later, and no other end when the second one ends later.
      const lines = await waitFor(() => {
        const found = gw.stderr.filter((l) => /backend a responded 429; cooling down/.test(l));
        return found.length === 2 ? found : null;
      }, { message: 'two cooldown lines for a' });
      assert.match(lines[0], new RegExp(`req=${first.id} .*for ${firstWait}\\.000 s$`));
      assert.match(lines[1], new RegExp(`req=${second.id} .*for ${secondWait}\\.000 s`));
      const earlierEnd = /; with an earlier cooldown it stays out for (\d+\.\d{3}) s$/.exec(lines[1]);
      if (firstWait > secondWait) {
        assert.ok(earlierEnd, `the second cooldown line gives no later end of the first: ${lines[1]}`);
        const left = Number(earlierEnd[1]);
        assert.ok(left > secondWait, `the first cooldown keeps a out for only ${left} s after the second 429`);
        assert.ok(left <= firstWait, `the first cooldown keeps a out for ${left} s, longer than it was set for`);
      } else {
        assert.equal(earlierEnd, null, `the second cooldown does not end when it should: ${lines[1]}`);
      }

      // The first 429 left a no sooner than the delay after t0, so the
      // later end is at least 3 s after that.
      const laterEnd = t0 + delayMs + 3000;
      const sent = await sendUntil(gw, laterEnd - 400);
      assertNoneToABefore(sent, laterEnd);

      const back = await waitServedBy(gw, 'a');
      assert.ok(back.doneAt >= laterEnd, `a got a request ${back.doneAt - t0} ms after t0, before the 3 s cooldown could end`);
    });
  }

  // delay-seconds is digits only, so "-1" sets no cooldown. Read as an
  // unsigned number, it wraps to a huge delay, and the route's only backend
  // would stay out for the 1-hour cap.
  it('ignores a negative Retry-After', async () => {
    const only = await startMock();
    const gw = await startGateway({
      backends: { only: mockBackend(only) },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['only'], retry: RETRY_FREELY }],
    });

    const limited = await chat(gw, { headers: { 'x-mock': 'status=429;retry_after=-1' } });
    assert.equal(limited.status, 429, 'the upstream 429 goes to the client when no backend is left');

    const next = await chat(gw);
    assert.equal(next.status, 200, `status (body: ${next.text.slice(0, 300)})`);
    assert.equal((await apiRequests(only)).length, 2, 'requests that reached the backend');
    assert.deepEqual(gw.stderr.filter((line) => /cooling down/.test(line)), [], 'cooldown log lines');
  });

  for (const status of [429, 503]) {
    it(`answers 503 with Retry-After when every backend cools down after ${status}`, async () => {
      const only = await startMockWith(`status=${status};retry_after=30`);
      const gw = await startGateway({
        backends: { only: mockBackend(only) },
        routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['only'], retry: RETRY_FREELY }],
      });

      const first = await chat(gw);
      assert.equal(first.status, status, `the upstream ${status} goes to the client when no backend is left`);

      const second = await chat(gw);
      assert.equal(second.status, 503, `status (body: ${second.text.slice(0, 300)})`);
      const retryAfter = second.headers['retry-after'];
      assert.match(retryAfter ?? '', /^\d+$/, `Retry-After: ${retryAfter}`);
      assert.ok(Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`);
      assert.ok(Number(retryAfter) <= 30, `Retry-After: ${retryAfter}`);
      assert.equal(typeof second.json().error, 'object');
      assert.match(second.json().error.message,
        /^every backend of route "chat" is cooling down after rate limiting or overload \(429, 503 or 529\); retry in \d+ s$/);
      assert.equal((await apiRequests(only)).length, 1, 'requests that reached the cooling backend');

      const entry = await gw.accessFor(second.id);
      assert.equal(entry.status, 503);
    });
  }
});

// OpenAI sends retry-after-ms beside Retry-After, and openai-node waits
// for the time in retry-after-ms. A cooldown from Retry-After alone would end before
// that wait, or after it, and the SDK's retry would then meet the
// gateway's own 503.
describe('cooldown after retry-after-ms', () => {
  let upstream = null;

  afterEach(async () => {
    await stopAll();
    upstream?.close();
    upstream = null;
  });

  it('cools down as retry-after-ms says, and tells the client the same', async () => {
    upstream = await startScripted((req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1', 'retry-after-ms': '20500' });
      res.end('{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}');
    });
    const gw = await startGateway({
      backends: { only: { url: upstream.url, health: NEVER_EJECT } },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['only'], retry: RETRY_FREELY }],
    });

    const limited = await chat(gw);
    assert.equal(limited.status, 429);
    const line = await gw.waitForLog(/backend only responded 429; cooling down/);
    assert.match(line, /cooling down model "gpt-4o" for 20\.500 s/);

    // The gateway's own 503 gives the rest of that wait both ways: whole
    // seconds, rounded up, and milliseconds.
    const cooling = await chat(gw);
    assert.equal(cooling.status, 503, `status (body: ${cooling.text.slice(0, 300)})`);
    const ms = cooling.headers['retry-after-ms'];
    assert.match(ms ?? '', /^\d+$/, `retry-after-ms: ${ms}`);
    assert.ok(Number(ms) > 1000, `retry-after-ms: ${ms}`);
    assert.ok(Number(ms) <= 20500, `retry-after-ms: ${ms}`);
    assert.equal(cooling.headers['retry-after'], String(Math.ceil(Number(ms) / 1000)));
  });
});

/* A route whose only backend is `only`, with `health` merged into it. */
function oneBackendConfig(only, health = {}) {
  return {
    backends: { only: mockBackend(only, { health: { ...NEVER_EJECT, ...health } }) },
    routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['only'], retry: RETRY_FREELY }],
  };
}

/* The value of a metric for backend `name`. */
async function backendMetric(gw, metric, name) {
  return valueOf(parseSamples((await scrape(gw)).text), metric, { backend: name });
}

/* tollgate_backend_cooldowns_total of backend `only`. */
function cooldownCount(gw) {
  return backendMetric(gw, 'tollgate_backend_cooldowns_total', 'only');
}

// A client that can provoke a 429 (OpenAI sends one for a single request
// over the tokens-per-minute limit) must not take the backend out of
// rotation for the hour a far-off Retry-After requests.
describe('max_cooldown', () => {
  afterEach(stopAll);
  const farOff = { 'x-mock': 'status=429;retry_after=99999999999' };

  it('bounds a far-off Retry-After to 60 s by default', async () => {
    const only = await startMock();
    const gw = await startGateway(oneBackendConfig(only));

    const limited = await chat(gw, { headers: farOff });
    assert.equal(limited.status, 429, 'the upstream 429 goes to the client when no backend is left');
    const line = await gw.waitForLog(/backend only responded 429; cooling down/);
    assert.match(line, /cooling down model "gpt-4o" for 60\.000 s \(max_cooldown\) instead of the 3600\.000 s or more requested/);

    const next = await chat(gw);
    assert.equal(next.status, 503, `status (body: ${next.text.slice(0, 300)})`);
    const retryAfter = Number(next.headers['retry-after']);
    assert.ok(retryAfter >= 1, `Retry-After: ${next.headers['retry-after']}`);
    assert.ok(retryAfter <= 60, `Retry-After: ${next.headers['retry-after']}`);
    assert.equal(await cooldownCount(gw), 1);
  });

  it('brings the backend back after a short max_cooldown', async () => {
    const only = await startMock();
    const gw = await startGateway(oneBackendConfig(only, { max_cooldown: '1s' }));

    const limited = await chat(gw, { headers: farOff });
    assert.equal(limited.status, 429);
    const cooling = await chat(gw);
    if (cooling.doneAt < limited.sentAt + 1000) {
      assert.equal(cooling.status, 503, 'a request during the 1 s cooldown');
      assert.equal(cooling.headers['retry-after'], '1');
    }

    const back = await waitFor(async () => {
      const res = await chat(gw);
      return res.status === 200 ? res : null;
    }, { message: 'a request served after max_cooldown' });
    assert.ok(back.doneAt >= limited.sentAt + 1000, `served ${back.doneAt - limited.sentAt} ms after the 429, within max_cooldown`);
  });

  it('sets no cooldown when max_cooldown is 0', async () => {
    const only = await startMock();
    const gw = await startGateway(oneBackendConfig(only, { max_cooldown: '0s' }));

    const limited = await chat(gw, { headers: farOff });
    assert.equal(limited.status, 429);
    const next = await chat(gw);
    assert.equal(next.status, 200, `status (body: ${next.text.slice(0, 300)})`);
    assert.equal((await apiRequests(only)).length, 2, 'requests that reached the backend');
    assert.deepEqual(gw.stderr.filter((l) => /cooling down/.test(l)), [], 'cooldown log lines');
    assert.equal(await cooldownCount(gw), 0);
  });
});

/* The backend that served res: the first attempt's, or the access log's
 * when there was one attempt. */
async function firstBackend(gw, res) {
  return res.attempts ? res.attempts.split(':')[0] : (await gw.accessFor(res.id)).backend;
}

// Providers limit each model apart, so a 429 for one model keeps the
// backend from that model only. A 503, an overload, keeps it from all.
describe('cooldown scope', () => {
  afterEach(stopAll);
  const limited = { 'x-mock': 'status=429;retry_after=30' };

  // The x-mock header reaches b too when a request fails over, so a's
  // status is set by its options instead, and a is made healthy after.
  const retryIn30s = { 'x-mock': 'retry_after=30' };
  async function limitAtA(gw, a, model) {
    await setMockOptions(a, 'status=429');
    const res = await chat(gw, { model, headers: retryIn30s });
    await setMockOptions(a, '');
    assert.equal(res.attempts, 'a:429,b:200');
    return res;
  }

  it('cools down only the model of a 429', async () => {
    const a = await startMock();
    const b = await startMock();
    const gw = await startGateway(twoBackendConfig(a, b));

    await limitAtA(gw, a, 'm1');
    const line = await gw.waitForLog(/backend a responded 429; cooling down/);
    assert.match(line, /cooling down model "m1" for 30\.000 s$/);

    const other = await chat(gw, { model: 'm2' });
    assert.equal(other.status, 200);
    assert.equal(await firstBackend(gw, other), 'a', 'the backend of a request for another model');
    const same = await chat(gw, { model: 'm1' });
    assert.equal(same.status, 200);
    assert.equal(same.attempts, null, 'attempts of a request for the cooling model');
    assert.equal(await firstBackend(gw, same), 'b');
    assert.equal((await apiRequests(a, 'm1')).length, 1, 'requests for m1 that reached a');

    // A cooldown of one model counts, and leaves the backend up.
    assert.equal(await backendMetric(gw, 'tollgate_backend_cooldowns_total', 'a'), 1);
    assert.equal(await backendMetric(gw, 'tollgate_backend_up', 'a'), 1);

    // A 503 cools the backend down for every model.
    await setMockOptions(a, 'status=503');
    const overloaded = await chat(gw, { model: 'm2', headers: retryIn30s });
    await setMockOptions(a, '');
    assert.equal(overloaded.attempts, 'a:503,b:200');
    const after = await chat(gw, { model: 'm3' });
    assert.equal(await firstBackend(gw, after), 'b', 'the backend of a request after the 503');
    assert.equal(await backendMetric(gw, 'tollgate_backend_cooldowns_total', 'a'), 2);
    assert.equal(await backendMetric(gw, 'tollgate_backend_up', 'a'), 0);
  });

  it('keeps model cooldowns across a reload', async () => {
    const a = await startMock();
    const b = await startMock();
    const config = twoBackendConfig(a, b);
    const gw = await startGateway(config);

    await limitAtA(gw, a, 'm1');
    assert.equal(await gw.reload(config), 'reloaded');

    const same = await chat(gw, { model: 'm1' });
    assert.equal(await firstBackend(gw, same), 'b', 'the backend of a request for the cooling model');
    const other = await chat(gw, { model: 'm2' });
    assert.equal(await firstBackend(gw, other), 'a', 'the backend of a request for another model');
  });

  it('answers 503 only for the model whose backends all cool down', async () => {
    const only = await startMock();
    const gw = await startGateway(oneBackendConfig(only));

    assert.equal((await chat(gw, { model: 'm1', headers: limited })).status, 429);
    const cooling = await chat(gw, { model: 'm1' });
    assert.equal(cooling.status, 503);
    const retryAfter = Number(cooling.headers['retry-after']);
    assert.ok(retryAfter >= 1, `Retry-After: ${cooling.headers['retry-after']}`);
    assert.ok(retryAfter <= 30, `Retry-After: ${cooling.headers['retry-after']}`);
    assert.equal((await chat(gw, { model: 'm2' })).status, 200, 'a request for another model');
  });

  // The table of a backend keeps 16 models; the 17th drops the cooldown
  // that ends first, and that model may reach the backend again.
  it('drops the cooldown that ends first when 16 models cool down', async () => {
    const only = await startMock();
    const gw = await startGateway(oneBackendConfig(only));

    for (let i = 0; i <= 16; i++)
      assert.equal((await chat(gw, { model: `m${i}`, headers: limited })).status, 429, `the 429 for m${i}`);
    await gw.waitForLog(/backend only has 16 models cooling down; the cooldown that ends first was dropped/);

    assert.equal((await chat(gw, { model: 'm0' })).status, 200, 'a request for the dropped model');
    for (const model of ['m1', 'm16'])
      assert.equal((await chat(gw, { model })).status, 503, `a request for ${model}`);
    assert.equal(await cooldownCount(gw), 17);
  });
});

describe('ejection', () => {
  afterEach(stopAll);

  it('ejects a failing backend and brings it back with a trial request', async () => {
    const a = await startMockWith('status=500');
    const b = await startMock();
    const gw = await startGateway(twoBackendConfig(a, b, {
      health: { consecutive_failures: 2, base_ejection: '2s' },
    }));

    // a fails the first two requests, and the second ejects it.
    const failed = [];
    while (!gw.stderr.some((l) => /backend a ejected/.test(l)) && failed.length < 10)
      failed.push(await chat(gw));
    const line = await gw.waitForLog(/backend a ejected for 2\.000 s after failures/);
    const ejecting = failed.find((r) => line.includes(`req=${r.id} `));
    assert.ok(ejecting, `the ejection line names none of the requests: ${line}\nrequests: ` +
      failed.map((r) => `${r.id} ${r.status} ${r.attempts}`).join('; ') +
      `\nlog:\n${gw.stderr.join('\n')}`);
    assert.equal(ejecting.attempts, 'a:500,b:200');
    assert.equal((await apiRequests(a)).length, 2, 'requests a failed before its ejection');
    const t0 = ejecting.sentAt;         // the ejection ends after t0 + 2 s

    // a is healthy again, but stays out until its ejection ends.
    await setMockOptions(a, '');
    const sent = await sendUntil(gw, t0 + 1500);
    assertNoneToABefore(sent, t0 + 2000);

    const back = await waitServedBy(gw, 'a');
    assert.ok(back.doneAt >= t0 + 2000, `a got a request ${back.doneAt - t0} ms after its ejection for 2 s`);
    assert.equal(back.status, 200);

    // The trial is the first request that reached a after its ejection:
    // back, or the last one sent above when the test process stalled
    // between its check of the time and the request.
    const recovered = await gw.waitForLog(/backend a recovered/);
    const trial = [...sent, back].find((r) => recovered.includes(`req=${r.id} `));
    assert.ok(trial, `the recovered line names none of the requests sent: ${recovered}`);
    assert.ok(trial === back || trial.backend === 'a', `the trial request ${trial.id} did not reach a`);
    assert.ok(trial.doneAt >= t0 + 2000, `the trial request completed ${trial.doneAt - t0} ms after its ejection for 2 s`);
  });

  // The ejection lines give the length of each ejection. Requests alone
  // show the second one longer only when one is sent more than 1 s after
  // the trial and completes within 2 s, which a slow machine may miss.
  it('ejects again, for longer, when the trial request fails', async () => {
    const a = await startMockWith('status=500');
    const b = await startMock();
    const gw = await startGateway(twoBackendConfig(a, b, {
      health: { consecutive_failures: 1, base_ejection: '1s' },
    }));

    const first = await chat(gw);
    assert.equal(first.attempts, 'a:500,b:200');
    const trial = await waitServedBy(gw, 'a');
    assert.ok(trial.doneAt >= first.sentAt + 1000, 'the trial came before the ejection ended');
    assert.equal(trial.attempts, 'a:500,b:200');
    const t1 = trial.sentAt;            // the second ejection lasts 2 s

    const lines = await waitFor(() => {
      const found = gw.stderr.filter((l) => /backend a ejected/.test(l));
      return found.length === 2 ? found : null;
    }, { message: 'a second ejection line for a' });
    assert.match(lines[0], new RegExp(`req=${first.id} .*backend a ejected for 1\\.000 s after failures`));
    assert.match(lines[1], new RegExp(`req=${trial.id} .*backend a ejected for 2\\.000 s after failures`));
    const sent = await sendUntil(gw, t1 + 1500);
    assertNoneToABefore(sent, t1 + 2000);
  });

  it('sends one trial request at a time when an ejection ends', async () => {
    const a = await startMockWith('status=500');
    const b = await startMock();
    const gw = await startGateway(twoBackendConfig(a, b, {
      health: { consecutive_failures: 1, base_ejection: '1s' },
    }));

    const first = await chat(gw);
    assert.equal(first.attempts, 'a:500,b:200');

    // Healthy but slow, so that the trial is still out while the other
    // requests arrive; they start after the ejection has ended.
    await setMockOptions(a, 'first_byte_delay=2s');
    await sleep(first.doneAt + 1200 - performance.now());
    const results = await Promise.all(Array.from({ length: 6 }, () => chat(gw)));
    for (const res of results)
      assert.equal(res.status, 200);

    const toA = [];
    for (const res of results) {
      if ((await gw.accessFor(res.id)).backend === 'a')
        toA.push(res.id);
    }
    assert.equal(toA.length, 1, `requests that a served after its ejection: ${toA.length}`);
    assert.equal((await apiRequests(a)).length, 2, 'requests a received');
    const recovered = await gw.waitForLog(/backend a recovered/);
    assert.match(recovered, new RegExp(`req=${toA[0]} `));
  });

  it('ejects on the error ratio once min_requests attempts are in', async () => {
    // Every request goes to a first. Before each request the test sets
    // a's outcome: ok, ok, fail, fail (ratio 0.5, not above it), fail.
    const a = await startMock();
    const b = await startMock();
    const gw = await startGateway(twoBackendConfig(a, b, {
      health: { consecutive_failures: 0, error_ratio: 0.5, min_requests: 4, window: '60s', base_ejection: '600s', max_ejection: '600s' },
    }));

    const results = [];
    for (const options of ['', '', 'status=500', 'status=500', 'status=500']) {
      await setMockOptions(a, options);
      results.push(await chat(gw));
    }
    assert.deepEqual(results.map((r) => r.attempts), [null, null, 'a:500,b:200', 'a:500,b:200', 'a:500,b:200']);
    const line = await gw.waitForLog(/backend a ejected/);
    assert.match(line, new RegExp(`req=${results[4].id} `), 'the ejection came at another attempt than the fifth');

    await setMockOptions(a, '');
    for (let i = 0; i < 5; i++)
      assert.equal((await gw.accessFor((await chat(gw)).id)).backend, 'b', `request ${i} after the ejection`);
    assert.equal((await apiRequests(a)).length, 5, 'requests a received');
  });

  it('brings an ejected backend back once its probe succeeds', async () => {
    const a = await startMockWith('status=500');
    const b = await startMock();
    const gw = await startGateway(twoBackendConfig(a, b, {
      // Only a probe can end an ejection of 10 minutes within the test.
      health: {
        consecutive_failures: 2, base_ejection: '600s', max_ejection: '600s',
        probe: { path: '/v1/models', interval: '300ms', timeout: '1s' },
      },
    }));

    // Requests or probes (status=500 fails both) eject a.
    await waitFor(async () => {
      await chat(gw);
      return (await apiRequests(a)).length >= 2 || (await probeRequests(a)).length >= 2;
    }, { message: 'two failures of a' });
    const before = (await apiRequests(a)).length;
    const probesBefore = (await probeRequests(a)).length;

    // Ejected: a gets no request, even after more failed probes.
    await waitFor(async () => (await probeRequests(a)).length >= probesBefore + 2, { message: 'two more probes of a' });
    for (let i = 0; i < 20; i++) {
      const res = await chat(gw);
      assert.equal(res.status, 200);
      assert.equal(res.attempts, null, `request ${i} tried a: ${res.attempts}`);
    }
    assert.equal((await apiRequests(a)).length, before, 'requests that reached the ejected backend');

    const from = gw.stderr.length;
    await setMockOptions(a, '');
    await gw.waitForLog(/backend a: probe of \/v1\/models succeeded/, { from });
    const back = await waitServedBy(gw, 'a');
    assert.equal(back.status, 200);
    assert.equal(back.attempts, null);
  });

  it('logs an ejection that probes cause', async () => {
    // No request is sent: only the failed probes can eject a.
    const a = await startMockWith('status=500');
    const b = await startMock();
    const gw = await startGateway(twoBackendConfig(a, b, {
      health: {
        consecutive_failures: 2, base_ejection: '600s', max_ejection: '600s',
        probe: { path: '/v1/models', interval: '200ms', timeout: '1s' },
      },
    }));
    await waitFor(async () => (await probeRequests(a)).length >= 3, { message: 'three probes of a' });

    // The probes did eject a: requests go to b only.
    for (let i = 0; i < 10; i++)
      assert.equal((await chat(gw)).attempts, null, `request ${i} tried a`);
    assert.equal((await apiRequests(a)).length, 0, 'requests that reached the ejected backend');

    assert.ok(gw.stderr.some((l) => /backend a ejected for 600\.000 s after failed probes of \/v1\/models/.test(l)),
      `no log line says that backend a was ejected, and for how long; the log:\n${gw.stderr.join('\n')}`);
  });

  it('tries ejected backends anyway when every backend is ejected (panic mode)', async () => {
    const a = await startMockWith('status=500');
    const b = await startMockWith('status=500');
    const health = { consecutive_failures: 1, base_ejection: '600s', max_ejection: '600s' };
    const gw = await startGateway({
      backends: { a: mockBackend(a, { health }), b: mockBackend(b, { health }) },
      routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['a', 'b'], retry: RETRY_FREELY }],
    });

    const first = await chat(gw);
    assert.equal(first.status, 500);
    assert.equal(first.attempts, 'a:500,b:500');
    await waitFor(() => gw.stderr.filter((l) => /backend [ab] ejected/.test(l)).length === 2,
      { message: 'ejection lines for a and b' });

    const second = await chat(gw);
    assert.equal(second.status, 500, `status (body: ${second.text.slice(0, 300)})`);
    assert.equal((second.attempts ?? '').split(',').length, 2, `x-tollgate-attempts: ${second.attempts}`);
    assert.equal((await apiRequests(a)).length, 2, 'requests that reached a');
    assert.equal((await apiRequests(b)).length, 2, 'requests that reached b');
  });
});
