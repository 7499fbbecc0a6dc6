// Balancers and the retry budget: weighted round robin shares, ewma and
// least_requests steering away from a slow member, and the bound the
// budget puts on upstream load during a full outage.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
  mockBackend, startGateway, startMock, stopAll,
} from './lib/harness.mjs';
import {
  parseSamples, promtoolCheck, scrape, valueOf,
} from './lib/prometheus.mjs';
import {
  NEVER_EJECT, RETRY_FREELY, chat, keepAliveAgent, requestCount,
  runConcurrently, startMockWith,
} from './lib/failover.mjs';

/* Send `count` requests, `concurrency` at a time, and count the backend
 * that served each, from the access log. */
async function distribute(gw, count, concurrency) {
  const agent = keepAliveAgent(concurrency);
  try {
    const results = await runConcurrently(count, concurrency, () => chat(gw, { agent }));
    const served = {};
    for (const res of results) {
      assert.equal(res.status, 200, `status (body: ${res.text.slice(0, 300)})`);
      const { backend } = await gw.accessFor(res.id);
      served[backend] = (served[backend] ?? 0) + 1;
    }
    return served;
  } finally {
    agent.destroy();
  }
}

/* A route over these mocks (an object from backend name to mock) with
 * `tiers` as its backends. */
function routeConfig(mocks, tiers, { retry = RETRY_FREELY, health = {} } = {}) {
  const backends = {};
  for (const [name, mock] of Object.entries(mocks))
    backends[name] = mockBackend(mock, { health });
  return {
    backends,
    routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: tiers, retry }],
  };
}

describe('balancers', () => {
  afterEach(stopAll);

  it('shares 1,000 requests by weight in round robin', async () => {
    const a = await startMock();
    const b = await startMock();
    const gw = await startGateway(routeConfig({ a, b }, [{
      balance: 'round_robin', members: [{ name: 'a', weight: 3 }, { name: 'b', weight: 1 }],
    }]));

    const served = await distribute(gw, 1000, 16);
    assert.equal((served.a ?? 0) + (served.b ?? 0), 1000, `served: ${JSON.stringify(served)}`);
    assert.ok(Math.abs(served.a / 1000 - 0.75) <= 0.05, `a served ${served.a} of 1000, weight share 750`);
    assert.ok(Math.abs(served.b / 1000 - 0.25) <= 0.05, `b served ${served.b} of 1000, weight share 250`);
    assert.equal(await requestCount(a), served.a, 'requests a counted');
    assert.equal(await requestCount(b), served.b, 'requests b counted');
  });

  for (const balance of ['ewma', 'least_requests']) {
    it(`sends most traffic away from a slow member (${balance})`, async () => {
      const slow = await startMockWith('first_byte_delay=200ms');
      const fast = await startMock();
      const gw = await startGateway(routeConfig({ slow, fast }, [{ balance, members: ['slow', 'fast'] }]));

      const served = await distribute(gw, 200, 8);
      assert.equal((served.slow ?? 0) + (served.fast ?? 0), 200, `served: ${JSON.stringify(served)}`);
      assert.ok(served.fast > 140, `the fast member served ${served.fast} of 200, the slow one ${served.slow ?? 0}`);
    });
  }
});

describe('retry budget', () => {
  afterEach(stopAll);

  /* Send n requests one after another to a route whose three backends
   * always fail with 500, and return the number of upstream requests. */
  async function outage(n, retry) {
    const mocks = {
      o1: await startMockWith('status=500'),
      o2: await startMockWith('status=500'),
      o3: await startMockWith('status=500'),
    };
    const gw = await startGateway(routeConfig(mocks, ['o1', 'o2', 'o3'], {
      retry: { max_attempts: 3, ...retry }, health: NEVER_EJECT,
    }));
    for (let i = 0; i < n; i++) {
      const res = await chat(gw);
      assert.equal(res.status, 500, `request ${i}: status`);
    }
    const counts = await Promise.all(Object.values(mocks).map(requestCount));
    return { total: counts.reduce((x, y) => x + y, 0), gw };
  }

  it('caps retries at the budget share of requests', async () => {
    // 30 requests take well under the budget's 10 s window.
    const n = 30;
    const { total, gw } = await outage(n, { budget: 0.2, min_retries: 0 });
    assert.ok(total <= n * (1 + 0.2), `${total} upstream requests for ${n} requests with budget 0.2`);
    assert.ok(total > n, `no request was retried at all (${total} upstream requests)`);
    await gw.waitForLog(/retry budget of route exhausted/);
  });

  it('allows min_retries when the budget is 0', async () => {
    const n = 10;
    const { total } = await outage(n, { budget: 0, min_retries: 2 });
    assert.equal(total, n + 2, `${total} upstream requests for ${n} requests with min_retries 2`);
  });

  it('counts failures the budget left unretried', async () => {
    // The first request takes both min_retries and ends at max_attempts,
    // so each later one fails once and finds the budget exhausted.
    const n = 10;
    const { gw } = await outage(n, { budget: 0, min_retries: 2 });
    const res = await scrape(gw);
    const { code, output } = await promtoolCheck(res.text);
    assert.equal(output, '', 'promtool check metrics reported problems');
    assert.equal(code, 0);
    const samples = parseSamples(res.text);
    assert.equal(valueOf(samples, 'tollgate_retry_budget_exhausted_total', { route: 'chat' }), n - 1);
    assert.equal(valueOf(samples, 'tollgate_failovers_total', { route: 'chat' }), 2);
  });
});
