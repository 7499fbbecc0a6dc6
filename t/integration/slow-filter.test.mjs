// A filter that keeps the worker busy for longer than a backend timeout must
// not make that timeout fire: the request was sent after the filter ran,
// and the backend responded at once.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { basicConfig, request, startGateway, startMock, stopAll } from './lib/harness.mjs';

const PLUGINS = process.env.TOLLGATE_PLUGINS || path.resolve('plugins');

function chat(port, content) {
  return request({
    port, method: 'POST', path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content }] }),
  });
}

describe('a slow request filter', () => {
  after(stopAll);

  // The test plugin spends 300 ms on a text with PLUGIN-SLOW; the backend's
  // connect timeout is 100 ms, and the mock accepts at once. Without a pool,
  // the connection opens after the filter, in the same turn of the loop.
  it('leaves the connect timeout to the backend', async () => {
    const mock = await startMock();
    const config = basicConfig(mock, {
      backend: { timeouts: { connect: '100ms' }, pool: { max_idle: 0 } },
      filters: {
        slow: { type: 'plugin', path: path.join(PLUGINS, 'test', 'keyword.so'),
          labels: { __label__secret: 0.5 } },
      },
    });
    for (const route of config.routes)
      route.filters = ['slow'];
    const gw = await startGateway(config);

    const res = await chat(gw.port, 'PLUGIN-SLOW hello');
    assert.equal(res.status, 200, res.body);
    await gw.stop();
  });
});
