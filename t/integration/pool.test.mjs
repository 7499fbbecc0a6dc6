// Upstream keep-alive pooling: reuse, the retry of a request that met a
// stale pooled connection, max_idle and idle_timeout. One worker, so that
// every request uses the same pool; each test has its own mock so that
// connection numbers and counters start at zero.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
  RawClient, basicConfig, curl, curlPost, stopAll, openStream, rawPost,
  startGateway, startMock, waitFor,
} from './lib/harness.mjs';

const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

async function start(backend = {}) {
  const mock = await startMock();
  const gw = await startGateway(basicConfig(mock, { backend }));
  return { mock, gw, url: `${gw.baseURL}/v1/chat/completions` };
}

describe('upstream connection pool', () => {
  afterEach(stopAll);

  it('reuses the upstream connection across client connections', async () => {
    const { mock, gw, url } = await start();
    assert.equal((await curl(curlPost(url, chat))).status, 200);
    assert.equal((await curl(curlPost(url, chat))).status, 200);

    const requests = await mock.requests();
    assert.equal(requests.length, 2);
    assert.equal(requests[1].connection, requests[0].connection, 'the second request came on a new connection');
    await gw.stop();
  });

  it('reuses the upstream connection on one client connection', async () => {
    const { mock, gw } = await start();
    const client = await RawClient.connect(gw.port);
    try {
      for (let i = 0; i < 3; i++) {
        await client.write(rawPost('/v1/chat/completions', chat));
        assert.equal((await client.readResponse()).status, 200);
      }
    } finally {
      client.destroy();
    }
    const connections = new Set((await mock.requests()).map((r) => r.connection));
    assert.equal(connections.size, 1, `connections used: ${[...connections]}`);
    await gw.stop();
  });

  it('reuses the upstream connection after a stream', async () => {
    const { mock, gw } = await start();
    const stream = await openStream({ port: gw.port, body: { ...chat, stream: true } });
    assert.equal(stream.status, 200);
    await stream.rest();
    assert.equal((await curl(curlPost(`${gw.baseURL}/v1/chat/completions`, chat))).status, 200);

    const requests = await mock.requests();
    assert.equal(requests.length, 2);
    assert.equal(requests[1].connection, requests[0].connection);
    await gw.stop();
  });

  it('sends a large body whole on a pooled connection', async () => {
    // Larger than a socket buffer, so the first write on the pooled
    // connection takes only part and the rest must follow it in order.
    const { mock, gw, url } = await start();
    const big = { ...chat, messages: [{ role: 'user', content: 'pooled body '.repeat(400000) }] };
    const text = JSON.stringify(big);
    assert.equal((await curl(curlPost(url, chat))).status, 200);
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
    assert.equal(res.status, 200);
    await res.text();

    const requests = await mock.requests();
    assert.equal(requests.length, 2);
    assert.equal(requests[1].connection, requests[0].connection, 'the large body came on a new connection');
    assert.ok(requests[1].body === text,
              `the mock got ${Buffer.byteLength(requests[1].body)} bytes that differ from the ${text.length} sent`);
    await gw.stop();
  });

  it('retries once when a pooled connection is stale', async () => {
    const { mock, gw, url } = await start();
    const first = await curl(curlPost(url, chat, ['x-mock: reset_next=1']));
    assert.equal(first.status, 200);
    const second = await curl(curlPost(url, chat, ['X-Request-Id: after-stale-connection']));
    assert.equal(second.status, 200, `second request: ${second.text}`);
    assert.equal(second.json().object, 'chat.completion');

    const requests = await mock.requests();
    const firstConnection = requests[0].connection;
    const last = requests.at(-1);
    assert.equal(last.headers['x-request-id'], 'after-stale-connection');
    assert.notEqual(last.connection, firstConnection, 'the answered retry came on the stale connection');

    const entry = await gw.accessFor('after-stale-connection');
    assert.equal(entry.status, 200);
    assert.equal(entry.termination, '--');
    await gw.stop();
  });

  it('opens a new connection per request with max_idle 0', async () => {
    const { mock, gw, url } = await start({ pool: { max_idle: 0 } });
    assert.equal((await curl(curlPost(url, chat))).status, 200);
    assert.equal((await curl(curlPost(url, chat))).status, 200);
    const requests = await mock.requests();
    assert.notEqual(requests[1].connection, requests[0].connection);
    await gw.stop();
  });

  it('closes a pooled connection after idle_timeout', async () => {
    const { mock, gw, url } = await start({ pool: { idle_timeout: '500ms' } });
    assert.equal((await curl(curlPost(url, chat))).status, 200);
    await waitFor(async () => (await mock.stats()).connections_closed_by_peer >= 1,
      { message: 'the gateway to close its idle pooled connection' });
    assert.equal((await curl(curlPost(url, chat))).status, 200);
    const requests = await mock.requests();
    assert.notEqual(requests[1].connection, requests[0].connection);
    await gw.stop();
  });
});
