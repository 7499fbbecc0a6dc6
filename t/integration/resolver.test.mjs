// Backend host names through the worker's resolver cache (src/resolve.c).
// Every gateway here queries only the test's own DNS server on 127.0.0.1,
// set in "resolver.nameservers", for a name under .test that no other
// server resolves. One worker, so that one cache sees every connect, and no pooled
// connections, so that every request opens one.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { curl, curlPost, sleep, startGateway, startMock, stopAll, waitFor } from './lib/harness.mjs';
import { DnsServer } from './lib/dns-server.mjs';
import { parseSamples, promtoolCheck, scrape, valueOf } from './lib/prometheus.mjs';

const NAME = 'backend.tollgate.test';
const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };
const NO_POOL = { max_idle: 0 };

let dns = null;
let otherDns = null;

async function startDns(records) {
  dns = await new DnsServer({ [NAME]: records }).start();
  return dns;
}

function config(port, resolver = {}) {
  return {
    resolver: { nameservers: [dns.address], ...resolver },
    backends: { named: { url: `http://${NAME}:${port}`, pool: NO_POOL } },
    routes: [{ name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['named'] }],
  };
}

async function chat(gw, n = 1) {
  for (let i = 0; i < n; i++) {
    const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, body));
    assert.equal(res.status, 200, `request ${i}: ${res.text}`);
  }
}

/* Wait until the answer's TTL, which is one second, has surely passed. */
const outliveTtl = () => sleep(1500);

describe('resolving backend host names', () => {
  // A server left open would keep node's event loop, and the test file,
  // running after a failed test.
  afterEach(async () => {
    await stopAll();
    await dns?.stop();
    await otherDns?.stop();
    dns = null;
    otherDns = null;
  });

  it('asks once per TTL', async () => {
    const mock = await startMock();
    await startDns({ A: ['127.0.0.1'], ttl: 300 });
    const gw = await startGateway(config(mock.port));

    await chat(gw, 10);
    const requests = await mock.requests();
    assert.equal(new Set(requests.map((r) => r.connection)).size, 10,
                 'the requests shared an upstream connection');
    assert.equal(dns.count(NAME, 'A'), 1);
    assert.equal(dns.count(NAME, 'AAAA'), 1);
    await gw.stop();
  });

  it('refreshes an expired answer', async () => {
    const first = await startMock({ host: '127.0.0.1' });
    const second = await startMock({ host: '127.0.0.2', port: first.port });
    await startDns({ A: ['127.0.0.1'], ttl: 1 });
    const gw = await startGateway(config(first.port, { min_ttl: '1s' }));

    await chat(gw, 2);
    dns.names[NAME].A = ['127.0.0.2'];
    await outliveTtl();

    // The connect that finds the answer expired asks again in the
    // background and still uses the old address.
    await chat(gw);
    await waitFor(() => dns.count(NAME, 'A') === 2, { message: 'a second A query' });
    assert.equal((await first.requests()).length, 3);

    await chat(gw, 2);
    assert.equal((await second.requests()).length, 2);
    await gw.stop();
  });

  it('serves while the resolver is silent', async () => {
    const mock = await startMock();
    await startDns({ A: ['127.0.0.1'], ttl: 1 });
    const gw = await startGateway(config(mock.port, { min_ttl: '1s' }));

    await chat(gw);
    dns.mode = 'silent';
    await outliveTtl();
    await chat(gw, 5);
    assert.equal((await mock.requests()).length, 6);
    await gw.stop();
  });

  it('serves and logs once while failing', async () => {
    const mock = await startMock();
    await startDns({ A: ['127.0.0.1'], ttl: 1 });
    const gw = await startGateway(config(mock.port, { min_ttl: '1s' }));

    await chat(gw);
    dns.mode = 'servfail';
    for (let round = 0; round < 3; round++) {
      await outliveTtl();
      await chat(gw, 2);
      await waitFor(() => dns.count(NAME, 'A') >= round + 2, { message: `A query ${round + 2}: ${JSON.stringify(dns.queries)}` });
    }
    const failures = gw.stderr.filter((line) => line.includes(`cannot resolve ${NAME}`));
    assert.equal(failures.length, 1, failures.join('\n'));
    assert.match(failures[0], /\[warn\] .*stay in use/);

    dns.mode = 'answer';
    await outliveTtl();
    await chat(gw);
    await gw.waitForLog(new RegExp(`${NAME} resolves again`));
    assert.equal((await mock.requests()).length, 8);
    await gw.stop();
  });

  it('counts queries, failures and stale answers', async () => {
    const mock = await startMock();
    await startDns({ A: ['127.0.0.1'], ttl: 1 });
    const gw = await startGateway(config(mock.port, { min_ttl: '1s' }));
    const count = async (family) => valueOf(parseSamples((await scrape(gw)).text),
                                            `tollgate_resolver_${family}_total`, { name: NAME });

    await chat(gw);
    assert.equal(await count('queries'), 1);
    assert.equal(await count('stale_answers'), 0);

    // Both requests use the expired answer: the first starts a refresh,
    // which fails, and the second finds it failing. The name is removed,
    // not failed with SERVFAIL, which libevent asks again as a timeout:
    // then each query of the gateway is one A query at the server.
    dns.names = {};
    await outliveTtl();
    await chat(gw);
    await waitFor(async () => (await count('failures')) === 1, { message: 'a failed query counted' });
    await chat(gw);
    assert.equal(await count('stale_answers'), 2);
    assert.equal(await count('queries'), dns.count(NAME, 'A'));
    const { code, output } = await promtoolCheck((await scrape(gw)).text);
    assert.equal(output, '', 'promtool check metrics reported problems');
    assert.equal(code, 0);
    await gw.stop();
  });

  it('reports the resolver\'s error', async () => {
    await startDns({ A: [], ttl: 1 });
    dns.names = {};
    const gw = await startGateway(config(9), { expectErrors: [/name does not exist/] });

    const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, body));
    assert.equal(res.status, 502, res.text);
    await gw.waitForLog(new RegExp(`resolving ${NAME}: name does not exist`));
    await gw.stop();
  });

  /* Send n requests to a gateway whose backend name does not resolve. */
  async function failingChat(gw, n) {
    for (let i = 0; i < n; i++) {
      const res = await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, body));
      assert.equal(res.status, 502, `request ${i}: ${res.text}`);
    }
  }

  it('caches a name that does not exist', async () => {
    await startDns({ A: [], ttl: 1 });
    dns.names = {};
    const gw = await startGateway(config(9), { expectErrors: [/name does not exist/] });

    // Within negative_ttl (default 5 s), each request fails at once with
    // the error of the one query, and the log names the host for each.
    await failingChat(gw, 4);
    assert.equal(dns.count(NAME, 'A'), 1, JSON.stringify(dns.queries));
    await waitFor(() => gw.stderr.filter((line) => line.includes(`resolving ${NAME}: name does not exist`)).length === 4,
                  { message: 'a log line with the name for each request' });
    const warnings = gw.stderr.filter((line) => line.includes(`cannot resolve ${NAME}`));
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0], /name does not exist; connections to it fail at once for 5000 ms/);
    await gw.stop();
  });

  it('asks a failed name again after negative_ttl', async () => {
    await startDns({ A: [], ttl: 1 });
    dns.names = {};
    const gw = await startGateway(config(9, { negative_ttl: '1s' }),
                                  { expectErrors: [/name does not exist/] });

    await failingChat(gw, 2);
    assert.equal(dns.count(NAME, 'A'), 1, JSON.stringify(dns.queries));
    await outliveTtl();
    await failingChat(gw, 1);
    assert.equal(dns.count(NAME, 'A'), 2, JSON.stringify(dns.queries));
    await gw.stop();
  });

  it('keeps a failure for the time of its SOA record', async () => {
    await startDns({ A: [], ttl: 1 });
    dns.names = {};
    dns.negativeTtl = 1;
    const gw = await startGateway(config(9), { expectErrors: [/name does not exist/] });

    // The SOA record's 1 s is shorter than negative_ttl (default 5 s).
    await failingChat(gw, 2);
    assert.equal(dns.count(NAME, 'A'), 1, JSON.stringify(dns.queries));
    await gw.waitForLog(/cannot resolve .*: name does not exist; connections to it fail at once for 1000 ms/);
    await outliveTtl();
    await failingChat(gw, 1);
    assert.equal(dns.count(NAME, 'A'), 2, JSON.stringify(dns.queries));
    await gw.stop();
  });

  it('rotates over the A records', async () => {
    const first = await startMock({ host: '127.0.0.1' });
    const second = await startMock({ host: '127.0.0.2', port: first.port });
    await startDns({ A: ['127.0.0.1', '127.0.0.2'], AAAA: ['::1'], ttl: 300 });
    const gw = await startGateway(config(first.port));

    await chat(gw, 6);
    assert.equal((await first.requests()).length, 3);
    assert.equal((await second.requests()).length, 3);
    await gw.stop();
  });

  it('keeps its nameservers over a reload', async () => {
    const mock = await startMock();
    await startDns({ A: ['127.0.0.1'], ttl: 1 });
    otherDns = await new DnsServer({ [NAME]: { A: ['127.0.0.1'], ttl: 1 } }).start();
    const gw = await startGateway(config(mock.port, { min_ttl: '1s' }));
    await chat(gw);

    const next = { ...gw.config, resolver: { nameservers: [otherDns.address], min_ttl: '1s' } };
    assert.equal(await gw.reload(next), 'reloaded');
    await gw.waitForLog(/\[warn\] reload: resolver.nameservers changed; it takes effect after a restart/);
    await outliveTtl();
    await chat(gw);
    await waitFor(() => dns.count(NAME, 'A') === 2, { message: 'a second A query to the first server' });
    assert.equal(otherDns.queries.length, 0);
    await gw.stop();
  });

  it('answers localhost from the hosts file', async () => {
    const mock = await startMock();
    await startDns({ A: ['127.0.0.1'], ttl: 300 });
    const gw = await startGateway({
      ...config(mock.port),
      backends: { named: { url: `http://localhost:${mock.port}`, pool: NO_POOL } },
    });

    await chat(gw, 3);
    assert.equal(dns.queries.length, 0, JSON.stringify(dns.queries));
    await gw.stop();
  });

  it('moves past a refusing address', async () => {
    // Nothing listens on 127.0.0.3 (only a wildcard listener on the
    // mock's port could), so every other connect is refused there and
    // must move on to 127.0.0.1, not fail.
    const mock = await startMock();
    await startDns({ A: ['127.0.0.3', '127.0.0.1'], ttl: 300 });
    const gw = await startGateway(config(mock.port));

    await chat(gw, 4);
    assert.equal((await mock.requests()).length, 4);
    await gw.stop();
  });

  it('moves past an address that does not answer', async () => {
    // 127.0.0.4 takes no connection (a mock with --no-accept), so every
    // other connect times out there. Each address gets half of the
    // connect timeout, and the request goes on to 127.0.0.1 within it.
    const mock = await startMock();
    await startMock({ host: '127.0.0.4', port: mock.port, args: ['--no-accept'] });
    await startDns({ A: ['127.0.0.4', '127.0.0.1'], ttl: 300 });
    const gw = await startGateway({
      ...config(mock.port),
      backends: { named: { url: `http://${NAME}:${mock.port}`, pool: NO_POOL, timeouts: { connect: '2s' } } },
    });

    await chat(gw, 4);
    assert.equal((await mock.requests()).length, 4);
    await gw.stop();
  });
});
