// Accepting at the open-files limit. The gateway runs under a low
// `ulimit -n` and gets more connections than it has descriptors left.
// Covered: the workers stop accepting while a descriptor is left for the
// upstream connection of each client connection, so every request is
// proxied and the connections beyond wait until others close, or until
// the longest-idle keep-alive connection is closed for them. Admin
// connections, under an admin_max_connections above the limit, take the
// rest. Then it logs
// the failed accepts a few times instead of once per try and names the
// limit. It goes on serving the connections it has, and responds 503 when
// no descriptor is left for an upstream connection. It accepts again once
// connections close, and drains on SIGTERM while it is paused.
// At startup the gateway raises its soft limit to the hard one and sizes
// the kernel's descriptor table for it. Under the default cap a flood of
// idle admin connections takes no more than that cap.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, it } from 'node:test';

import {
  RawClient, TOLLGATE_BIN, basicConfig, freePort, rawPost, rawRequest, request, sleep, startGateway,
  startMock, stopAll, waitFor, writeTempFile,
} from './lib/harness.mjs';
import { parseSamples, scrape, valueOf } from './lib/prometheus.mjs';

/* The gateway starts with about 20 descriptors open (standard streams,
 * event loops, listeners), so 64 leaves it room for some 40 connections,
 * and with one worker it accepts (64 - 32 - 9) / 2 = 11 client
 * connections at a time (see OPEN FILES in tollgate(8)). */
const LIMIT = 64;
const HELD = LIMIT + 32;

/* A paused worker tries accept() once per 100 ms and logs a burst once, so
 * holding the connections for HOLD_MS gives a line or two. The bound is
 * loose on purpose: without the pause the count reaches the thousands
 * within a second. */
const HOLD_MS = 1000;
const MAX_LINES = 50;

const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] };

/* Open n connections to port and resolve once all are connected. The
 * kernel completes them whether or not the gateway accepts them. */
async function holdConnections(port, n) {
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    sockets.push(socket);
  }
  await Promise.all(sockets.map((s) => once(s, 'connect')));
  return sockets;
}

function closeAll(sockets) {
  for (const socket of sockets)
    socket.destroy();
}

/* Resolve with the first response read on socket, once its JSON body has
 * arrived. */
function answerOf(socket) {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (bytes) => {
      text += bytes;
      if (/\r\n\r\n[\s\S]*\}\s*$/.test(text))
        resolve(text);
    });
  });
}

/* Wait until the gateway has accepted client's connection, which a
 * response to GET /v1/models (no upstream needed) shows. A connection the
 * kernel completed may still be in the accept queue, and the worker cannot
 * accept it once the admin connections hold every descriptor. */
async function whenAccepted(client) {
  await client.write(rawRequest('GET', '/v1/models', ['Host: 127.0.0.1']));
  assert.equal((await client.readResponse()).status, 200, 'GET /v1/models before the overload');
}

function acceptFailures(gw, owner = '') {
  return gw.stderr.filter((line) => line.includes(`${owner}: accept failed`));
}

/* The admin connections of these tests take every descriptor, which the
 * default admin_max_connections would prevent. */
async function startLimited(mock) {
  return startGateway(basicConfig(mock, { admin_max_connections: HELD }),
    { nofile: LIMIT, expectErrors: [/accept failed/] });
}

/* Take every descriptor the gateway has left with admin connections and
 * wait until the admin listener has failed to accept one more. */
async function exhaust(gw) {
  const connections = await holdConnections(gw.adminPort, HELD);
  await gw.waitForLog(/admin listener .*: accept failed/);
  return connections;
}

/* Exhaust the descriptors, then wait until the worker has failed to
 * accept a client connection too. */
async function overload(gw) {
  const connections = await exhaust(gw);
  connections.push(...await holdConnections(gw.port, 2));
  await gw.waitForLog(/worker 0: accept failed/);
  return connections;
}

/* The connections waiting in the accept queue of the IPv4 listener on
 * port, from /proc/net/tcp (the receive queue of a listening socket). */
function acceptQueue(port) {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 4 && f[1].endsWith(`:${hexPort}`) && f[3] === '0A')
      return parseInt(f[4].split(':')[1], 16);
  }
  return 0;
}

/* Wait until the gateway has fewer than LIMIT - spare descriptors open and
 * nothing left in its accept queues. Connections that a test closed stay
 * open on the gateway's side until it reads their end, and those still
 * queued until it accepts and closes them: a reload before that finds no
 * descriptor for the file. */
async function waitForSpareDescriptors(gw, spare) {
  const deadline = Date.now() + 5000;
  const busy = () => fs.readdirSync(`/proc/${gw.child.pid}/fd`).length >= LIMIT - spare
    || acceptQueue(gw.port) > 0 || acceptQueue(gw.adminPort) > 0;

  while (busy()) {
    if (Date.now() > deadline)
      throw new Error('the gateway did not release the descriptors of closed connections in 5 s');
    await sleep(20);
  }
}

describe('client connections under the open-files limit', () => {
  afterEach(stopAll);

  it('keeps a descriptor for the upstream of each accepted connection', async () => {
    const mock = await startMock();
    const gw = await startLimited(mock);
    const connections = await holdConnections(gw.port, HELD);
    // A connection closes after its response, which lets the worker accept
    // one of those waiting in the listen queue.
    const answers = connections.map((socket) => answerOf(socket).then((text) => {
      socket.destroy();
      return text;
    }));
    for (const socket of connections)
      socket.write(rawPost('/v1/chat/completions', chat));
    const statuses = (await Promise.all(answers)).map((text) => text.split(' ')[1]);

    assert.deepEqual(statuses.filter((status) => status !== '200'), [],
      'requests on accepted connections were refused');
    assert.deepEqual(acceptFailures(gw), []);
    assert.match(gw.stderr.find((line) => line.includes('stopped accepting')) ?? '',
      new RegExp(`\\[warn\\] worker 0: stopped accepting at the connection limit of 11 \\(\\d+ open\\), .*\\(open files limit ${LIMIT}\\)`));
    const pauses = valueOf(parseSamples((await scrape(gw)).text), 'tollgate_accept_limit_pauses_total');
    assert.ok(pauses >= 1, `tollgate_accept_limit_pauses_total is ${pauses}`);
    await gw.stop();
  });
});

describe('client connections at the connection limit', () => {
  afterEach(stopAll);

  // With one worker the limit is 11 (see LIMIT). Without the eviction the
  // new client waited for keepalive_timeout to close an idle connection.
  it('closes the longest-idle keep-alive connection for a new one', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { limits: { keepalive_timeout: '300s' } }),
      { nofile: LIMIT });
    const idle = [];
    try {
      for (let i = 0; i < 11; i++) {
        const client = await RawClient.connect(gw.port);
        idle.push(client);
        await whenAccepted(client);
      }
      const late = await RawClient.connect(gw.port);
      idle.push(late);
      await late.write(rawRequest('GET', '/v1/models', ['Host: 127.0.0.1']));
      assert.equal((await late.readResponse()).status, 200, 'the connection past the limit');

      assert.ok(await idle[0].waitClosed(), 'the longest-idle connection is still open');
      assert.deepEqual(idle.slice(1).filter((c) => c.closed).map((c) => idle.indexOf(c)), [],
        'other connections were closed');
      await whenAccepted(idle[1]);
    } finally {
      for (const client of idle)
        client.destroy();
    }
    await gw.stop();
  });

  // Two workers accept each on its own socket: at the limit of 7, the
  // one that had not reached it accepted one more, and 8 requests ran.
  it('serves no more connections than the limit', async () => {
    const max = 7;  // (64 - 32 - 2 * 9) / 2
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { workers: 2 }), { nofile: LIMIT });
    const connections = await holdConnections(gw.port, 3 * max);
    // A connection closes after its response, which gives its place to
    // one that waits.
    const answered = connections.map((socket) => answerOf(socket).then(() => socket.destroy()));
    let firstAnswer = false;
    Promise.race(answered).then(() => { firstAnswer = true; });
    for (const socket of connections)
      socket.write(rawPost('/v1/chat/completions', chat, ['x-mock: first_byte_delay=1s']));

    // Until the first response, the requests in flight are those of the
    // connections being served.
    let most = 0;
    while (!firstAnswer) {
      const samples = parseSamples((await scrape(gw)).text);
      most = Math.max(most, valueOf(samples, 'tollgate_requests_in_flight'));
      await sleep(20);
    }
    await Promise.all(answered);
    assert.equal(most, max, 'the most requests in flight at once');
    const overshoot = gw.stderr.filter((line) => /connection limit of \d+ \((\d+) open\)/.test(line)
      && !line.includes(`(${max} open)`));
    assert.deepEqual(overshoot, []);
    await gw.stop();
  });
});

describe('accepting at the open-files limit', () => {
  afterEach(stopAll);

  it('logs few lines that name the limit', async () => {
    const mock = await startMock();
    const gw = await startLimited(mock);
    const connections = await overload(gw);
    await sleep(HOLD_MS);
    closeAll(connections);

    const lines = acceptFailures(gw, 'worker 0');
    assert.ok(lines.length < MAX_LINES,
      `${lines.length} "accept failed" lines in about ${HOLD_MS} ms, the first: ${lines[0]}`);
    assert.match(lines[0], /\[error\] worker 0: accept failed: Too many open files/);
    assert.match(lines[0], new RegExp(`\\(open files limit ${LIMIT}\\)`));
    assert.match(lines[0], /new connections paused for 100 ms/);
    await gw.stop();
  });

  it('serves open connections and accepts again', async () => {
    const mock = await startMock();
    const gw = await startLimited(mock);
    const client = await RawClient.connect(gw.port);
    try {
      // The first request leaves its upstream connection in the pool, so
      // the second needs no new descriptor.
      await client.write(rawPost('/v1/chat/completions', chat));
      assert.equal((await client.readResponse()).status, 200);

      const connections = await overload(gw);
      await client.write(rawPost('/v1/chat/completions', chat));
      assert.equal((await client.readResponse()).status, 200, 'the open connection was not served');
      await sleep(HOLD_MS);
      closeAll(connections);
    } finally {
      client.destroy();
    }

    const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions', body: chat });
    assert.equal(res.status, 200, 'a new connection after the overload');
    await waitForSpareDescriptors(gw, 8);
    assert.equal(await gw.reload(gw.config), 'reloaded');

    const errors = valueOf(parseSamples((await scrape(gw)).text), 'tollgate_accept_errors_total');
    assert.ok(errors >= 1, `tollgate_accept_errors_total is ${errors}`);
    const lines = acceptFailures(gw);
    assert.ok(lines.length < MAX_LINES, `${lines.length} "accept failed" lines`);
    await gw.stop();
  });

  it('answers 503 without blaming the backend when no descriptor is left', async () => {
    const mock = await startMock();
    const gw = await startLimited(mock);
    const client = await RawClient.connect(gw.port);
    await whenAccepted(client);
    const connections = await exhaust(gw);
    // The admin connections hold every descriptor, so the request finds
    // none for its upstream connection.
    await client.write(rawPost('/v1/chat/completions', chat));
    const res = await client.readResponse();
    client.destroy();
    closeAll(connections);

    assert.equal(res.status, 503);
    assert.match(res.text, /"code":"gateway_overloaded"/);
    const samples = parseSamples((await scrape(gw)).text);
    assert.equal(valueOf(samples, 'tollgate_backend_up', { backend: 'mock' }), 1,
      'the gateway\'s own shortage took the backend out of rotation');
    assert.ok(valueOf(samples, 'tollgate_upstream_attempts_total',
      { backend: 'mock', outcome: 'gateway_error' }) >= 1, 'no gateway_error attempt counted');
    await gw.stop();
  });

  it('pauses the admin listener too', async () => {
    const mock = await startMock();
    const gw = await startLimited(mock);
    const connections = await exhaust(gw);
    await sleep(HOLD_MS);
    closeAll(connections);

    // Without an error callback of its own, the admin listener logged
    // libevent's warning "Error from accept() call" instead.
    const adminFailure = /admin listener 127\.0\.0\.1:\d+: accept failed|Error from accept/;
    const lines = gw.stderr.filter((line) => adminFailure.test(line));
    assert.ok(lines.length < MAX_LINES, `${lines.length} lines about the admin listener`);
    assert.match(lines[0], new RegExp(`\\[error\\] admin listener .*\\(open files limit ${LIMIT}\\)`));
    await scrape(gw);   // throws unless the admin listener returns 200
    await gw.stop();
  });

  it('drains on SIGTERM while paused', async () => {
    const mock = await startMock();
    const gw = await startLimited(mock);
    const connections = await overload(gw);
    await sleep(HOLD_MS);
    try {
      const stopped = await gw.stop();
      assert.equal(stopped.code, 0);
    } finally {
      closeAll(connections);
    }
    assert.ok(gw.stderr.some((line) => line.includes('[info] stopped')), 'no "stopped" line');
    const lines = acceptFailures(gw);
    assert.ok(lines.length < MAX_LINES, `${lines.length} "accept failed" lines`);
  });
});

/* Count the sockets that the other end has closed, as they close. */
function closeCounter(sockets) {
  const counter = { closed: 0 };
  for (const socket of sockets)
    socket.on('close', () => counter.closed++);
  return counter;
}

describe('admin connections at admin_max_connections', () => {
  afterEach(stopAll);

  // Without the cap the held connections took every descriptor until their
  // idle timeout, so the scrape and the chat request waited for it.
  it('closes the oldest so that scrapes and chat go on', async () => {
    const max = 4;
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, {
      admin_max_connections: max, admin_idle_timeout: '300s',
    }), { nofile: LIMIT });
    const held = await holdConnections(gw.adminPort, HELD);
    const counter = closeCounter(held);

    const metrics = await request({ port: gw.adminPort, path: '/metrics' });
    assert.equal(metrics.status, 200, 'GET /metrics while the admin connections are held');
    const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions', body: chat });
    assert.equal(res.status, 200, 'a chat request while the admin connections are held');

    await waitFor(() => HELD - counter.closed <= max,
      { message: `the gateway to close all but ${max} of ${HELD} idle admin connections` });
    await gw.waitForLog(new RegExp(`\\[warn\\] admin listener .*: closed the oldest connection to accept a new one, at admin_max_connections ${max}`));
    closeAll(held);
    await gw.stop();
  });

  it('closes a connection idle for admin_idle_timeout', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { admin_idle_timeout: '100ms' }));
    const client = await RawClient.connect(gw.adminPort);
    const closed = once(client.socket, 'close');
    await client.write(rawRequest('GET', '/healthz', ['Host: 127.0.0.1']));
    assert.equal((await client.readResponse()).status, 200);
    await closed;
    const [idle] = await holdConnections(gw.adminPort, 1);
    await once(idle, 'close');
    await gw.stop();
  });
});

// The soft and hard open-files limits of a process, from /proc.
function openFilesLimits(pid) {
  const line = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = line.split(/\s+/).slice(3, 5);
  return { soft: Number(soft), hard: Number(hard) };
}

// How many descriptors the kernel's table of a process has room for.
function descriptorTableSize(pid) {
  return Number(/^FDSize:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

describe('descriptors at startup', () => {
  afterEach(stopAll);

  // Growing the table later would stall a worker for an RCU grace period
  // inside accept() or socket(), once per doubling.
  it('sizes the descriptor table for its limit at startup', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock));
    const { soft } = openFilesLimits(gw.child.pid);
    const table = descriptorTableSize(gw.child.pid);
    assert.ok(table >= Math.min(soft, 65536),
      `descriptor table has ${table} slots for an open-files limit of ${soft}`);
    await gw.stop();
  });

  // 2 workers with one listen address need 32 + 2 * (8 + 1) spare
  // descriptors and 2 for a client connection (src/descriptors.h).
  it('refuses to start below the descriptors its config needs, and says so', async () => {
    const mock = await startMock();
    const file = writeTempFile('tollgate.json', JSON.stringify(basicConfig(mock, {
      listen: [`127.0.0.1:${await freePort()}`], admin: `127.0.0.1:${await freePort()}`, workers: 2, access_log: false,
    })));
    const run = spawnSync('/bin/sh', ['-c', 'ulimit -n 20 && exec "$0" -c "$1"', TOLLGATE_BIN, file],
      { encoding: 'utf8', timeout: 10000 });

    assert.equal(run.status, 1, run.stderr);
    const lines = run.stderr.trim().split('\n');
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0], /\[error\] the open-files limit 20 is below the 52 descriptors tollgate needs with 2 workers and 1 listen address .*raise the hard limit to at least 52/);
    assert.doesNotMatch(run.stderr, /libevent|tracing/);
  });

  it('starts at the least limit its config needs', async () => {
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock, { workers: 2 }), { nofile: 52 });
    const res = await request({ port: gw.port, method: 'POST', path: '/v1/chat/completions', body: chat });
    assert.equal(res.status, 200);
    assert.ok(gw.stderr.some((l) => l.includes('the open-files limit 52 leaves room for 1 client connection (50 descriptors are spare')),
      gw.stderr.join('\n'));
    await gw.stop();
  });

  it('raises the soft open-files limit to the hard limit', async (t) => {
    const { hard } = openFilesLimits(process.pid);
    if (!(hard > 256)) {
      t.skip(`the hard open-files limit here is ${hard}, no room to lower the soft one`);
      return;
    }
    const mock = await startMock();
    const gw = await startGateway(basicConfig(mock), { nofileSoft: 256 });
    assert.deepEqual(openFilesLimits(gw.child.pid), { soft: hard, hard });
    assert.ok(gw.stderr.some((l) => l.includes(`[info] raised the open-files limit from 256 to the hard limit ${hard}`)),
      `no line about the raised limit in:\n${gw.stderr.join('\n')}`);
    const metrics = await request({ port: gw.adminPort, path: '/metrics', timeoutMs: 5000 });
    assert.match(metrics.text, new RegExp(`^process_max_fds ${hard}$`, 'm'));
    await gw.stop();
  });
});
