// A client that goes away must cost the upstream its connection at once:
// mid-stream and while the gateway still waits for the response head. Each
// test has its own mock so that the mock's counters are its own.

import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';

import {
  RawClient, basicConfig, stopAll, openStream, rawPost, startGateway,
  startMock, waitFor,
} from './lib/harness.mjs';

const messages = [{ role: 'user', content: 'Hello!' }];

/* How long the upstream connection may stay open after the client left.
 * The mock's own delays below are several times longer, so a gateway that
 * keeps the upstream connection cannot pass by waiting it out. */
const CLOSE_DEADLINE_MS = 10000;

describe('client disconnect', () => {
  afterEach(stopAll);

  it('closes the upstream when the client leaves mid-stream', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));

    const stream = await openStream({
      port: gw.port,
      body: { model: 'gpt-4o', messages, stream: true },
      headers: { 'x-mock': 'events=40;event_delay=1s', 'x-request-id': 'client-leaves-mid-stream' },
    });
    assert.equal(stream.status, 200);
    const first = await stream.nextData();
    assert.notEqual(first, null, 'the stream ended before its first event');
    stream.abort();

    await waitFor(async () => {
      const s = await mock.stats();
      return s.responses_aborted >= 1 && s.connections_closed_by_peer >= 1 && s;
    }, { timeoutMs: CLOSE_DEADLINE_MS, message: 'the mock to see its stream aborted by the gateway' });

    const entry = await gw.accessFor('client-leaves-mid-stream');
    assert.equal(entry.termination, 'CD');
    assert.equal(entry.status, 200);
    assert.equal(entry.upstream_status, 200);
    assert.equal(entry.stream, true);
    await gw.stop();
  });

  it('closes the upstream when the client leaves before the first byte', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));

    const client = await RawClient.connect(gw.port);
    await client.write(rawPost('/v1/chat/completions', { model: 'gpt-4o', messages, stream: true },
      ['x-mock: first_byte_delay=30s', 'X-Request-Id: client-leaves-before-first-byte']));
    await waitFor(async () => (await mock.requests()).length === 1,
      { message: 'the request to reach the mock' });
    client.destroy();

    await waitFor(async () => {
      const s = await mock.stats();
      return s.responses_aborted >= 1 && s.connections_closed_by_peer >= 1 && s;
    }, { timeoutMs: CLOSE_DEADLINE_MS, message: 'the mock to see its delayed response aborted by the gateway' });

    const entry = await gw.accessFor('client-leaves-before-first-byte');
    assert.equal(entry.termination, 'CH');
    assert.equal(entry.upstream_status, null);
    await gw.stop();
  });

  it('closes the upstream when a non-streaming client leaves', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));

    const client = await RawClient.connect(gw.port);
    await client.write(rawPost('/v1/chat/completions', { model: 'gpt-4o', messages },
      ['x-mock: first_byte_delay=30s', 'X-Request-Id: client-leaves-non-streaming']));
    await waitFor(async () => (await mock.requests()).length === 1,
      { message: 'the request to reach the mock' });
    client.destroy();

    await waitFor(async () => (await mock.stats()).responses_aborted >= 1,
      { timeoutMs: CLOSE_DEADLINE_MS, message: 'the mock to see its delayed response aborted' });
    const entry = await gw.accessFor('client-leaves-non-streaming');
    assert.equal(entry.termination, 'CH');
    await gw.stop();
  });

  it('logs a client reset mid-stream once', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));

    // Events 1 ms apart, so that the reset often arrives while the gateway
    // writes; a reset noticed on read instead must end the same way.
    const socket = net.connect(gw.port, '127.0.0.1');
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.write(rawPost('/v1/chat/completions', { model: 'gpt-4o', messages, stream: true },
      ['x-mock: events=2000;event_delay=1ms', 'X-Request-Id: client-resets-mid-stream']));
    await new Promise((resolve) => socket.once('data', resolve));
    socket.resetAndDestroy();

    await waitFor(async () => (await mock.stats()).responses_aborted >= 1,
      { timeoutMs: CLOSE_DEADLINE_MS, message: 'the mock to see its stream aborted' });
    const entry = await gw.accessFor('client-resets-mid-stream');
    assert.equal(entry.termination, 'CD');
    await gw.stop();
    const lines = gw.accessLog.filter((e) => e.request_id === 'client-resets-mid-stream');
    assert.equal(lines.length, 1);
  });
});
