// Opening upstream connections. A backend whose host is a numeric IPv4 or
// IPv6 address connects to the address parsed at load. A backend whose
// host is a name is looked up at each connect. The name is "localhost",
// which /etc/hosts resolves, so no query leaves the machine. Each kind must
// connect, send the Host header of its URL, report a refused connection
// with its address and fail over from it. The pools keep no idle
// connection, so that every request opens one.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
  basicConfig, curl, curlPost, freePort, mockBackend, startGateway, startMock, stopAll,
} from './lib/harness.mjs';
import { NEVER_EJECT, RETRY_FREELY, chat } from './lib/failover.mjs';

const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };
const NO_POOL = { max_idle: 0 };

/* [what, address the mock listens on, host as the backend URL writes it] */
const HOSTS = [
  ['a numeric IPv4 host', '127.0.0.1', '127.0.0.1'],
  ['a numeric IPv6 host', '::1', '[::1]'],
  ['a host name', '127.0.0.1', 'localhost'],
];

describe('opening upstream connections', () => {
  afterEach(stopAll);

  for (const [what, listen, host] of HOSTS) {
    it(`opens a connection per request to ${what}`, async () => {
      const mock = await startMock({ host: listen });
      const url = `http://${host}:${mock.port}`;
      const gw = await startGateway({
        backends: { mock: { url, pool: NO_POOL } },
        routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['mock'] }],
      });
      for (let i = 0; i < 3; i++) {
        const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, body));
        assert.equal(res.status, 200, `request ${i}: ${res.text}`);
      }

      const requests = await mock.requests();
      assert.equal(requests.length, 3);
      assert.equal(new Set(requests.map((r) => r.connection)).size, 3,
                   'the requests shared an upstream connection');
      assert.equal(requests[0].headers.host, `${host}:${mock.port}`);
      await gw.stop();
    });
  }

  it('sends a large body whole on a new connection', async () => {
    // Larger than a socket buffer, so that the first write after the
    // connect takes only part and the rest must follow it in order.
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { backend: { pool: NO_POOL } }));
    const big = { ...body, messages: [{ role: 'user', content: 'new connection body '.repeat(250000) }] };
    const text = JSON.stringify(big);
    const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: text,
    });
    assert.equal(res.status, 200);
    await res.text();

    const requests = await mock.requests();
    assert.equal(requests.length, 1);
    assert.ok(requests[0].body === text,
              `the mock got ${Buffer.byteLength(requests[0].body)} bytes that differ from the ${text.length} sent`);
    await gw.stop();
  });

  for (const [what, listen, host] of HOSTS) {
    it(`names the address and fails over when ${what} refuses`, async () => {
      const ok = await startMock();
      const closedPort = await freePort(listen);
      const gw = await startGateway({
        backends: {
          dead: { url: `http://${host}:${closedPort}`, pool: NO_POOL, health: NEVER_EJECT },
          ok: mockBackend(ok),
        },
        routes: [
          { name: 'dead', match: { path: '/v1/chat/completions', model: 'dead' }, backends: ['dead'] },
          { name: 'failover', match: { path: '/v1/chat/completions' }, backends: ['dead', 'ok'],
            retry: RETRY_FREELY },
        ],
      });
      gw.expectErrors(/refused/);

      const alone = await chat(gw, { model: 'dead' });
      assert.equal(alone.status, 502, alone.text);
      assert.equal(alone.json().error.message,
        `could not connect to the upstream (backend "dead" at ${host}:${closedPort})`);
      const hostInLog = host.replace(/[[\]]/g, '');
      await gw.waitForLog(new RegExp(`${hostInLog.replace(/\./g, '\\.')}:${closedPort}: Connection refused`));

      const moved = await chat(gw);
      assert.equal(moved.status, 200, moved.text);
      assert.equal(moved.attempts, 'dead:connect,ok:200');
      await gw.stop();
    });
  }
});
