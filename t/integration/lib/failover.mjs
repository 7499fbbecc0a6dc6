// Helpers for the failover tests. They start mocks with per-instance
// behaviour, send chat requests that report their attempts and timing, and
// count what each mock received.

import { once } from 'node:events';
import http from 'node:http';
import { performance } from 'node:perf_hooks';

import { request, startMock } from './harness.mjs';

/* A retry policy that never runs out of budget, for tests about something
 * else than the budget: with the default (0.2, min_retries 3) a test file
 * that fails over many times would see later failovers refused. */
export const RETRY_FREELY = { budget: 1, min_retries: 1000000 };

/* Health that never ejects, for backends that fail on purpose in tests
 * about something else than ejection. */
export const NEVER_EJECT = { consecutive_failures: 0 };

export const messages = [{ role: 'user', content: 'Hello!' }];

/* Start a mock that applies `options`, such as "status=500", to every API
 * request (the mock's --options). */
export function startMockWith(options) {
  return startMock({ args: ['--options', options] });
}

/* Replace the default behaviour options of a running mock ("" clears
 * them), through POST /_mock/options. */
export async function setMockOptions(mock, options) {
  const res = await request({ port: mock.port, method: 'POST', path: '/_mock/options', body: options });
  if (res.status !== 200)
    throw new Error(`mock POST /_mock/options ${JSON.stringify(options)} returned ${res.status}: ${res.text}`);
}

/* Return the API requests (POST) in a mock's log of the last 100, so
 * health probes are left out. With model, keep those for that model. */
export async function apiRequests(mock, model = null) {
  const all = await mock.requests();
  return all.filter((r) => r.method === 'POST' &&
    (model === null || JSON.parse(r.body).model === model));
}

/* The probes (GET) a mock received. */
export async function probeRequests(mock) {
  return (await mock.requests()).filter((r) => r.method === 'GET');
}

/* How many requests a mock counted in all, probes included. */
export async function requestCount(mock) {
  return (await mock.stats()).requests;
}

/**
 * POST a chat completion to the gateway. Options: model, stream, headers,
 * body (replaces the generated one), agent, path. Resolves to the
 * response of request() plus id (the gateway's X-Request-Id), attempts
 * (x-tollgate-attempts, or null), and sentAt and doneAt in
 * performance.now() milliseconds.
 */
export async function chat(gw, { model = 'gpt-4o', stream = false, headers = {}, body = null, agent = false, path = '/v1/chat/completions' } = {}) {
  const payload = body ?? { model, messages, ...(stream ? { stream: true } : {}) };
  const sentAt = performance.now();
  const res = await request({ port: gw.port, method: 'POST', path, headers, body: payload, agent });
  const doneAt = performance.now();
  return {
    ...res,
    id: res.headers['x-request-id'],
    attempts: res.headers['x-tollgate-attempts'] ?? null,
    sentAt,
    doneAt,
  };
}

/* Run task(i) for i in [0, count) with at most `concurrency` at once;
 * resolves to the results in order. */
export async function runConcurrently(count, concurrency, task) {
  const results = new Array(count);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(count, concurrency) }, worker));
  return results;
}

/* A keep-alive agent for many requests to the gateway; destroy() it after. */
export function keepAliveAgent(maxSockets) {
  return new http.Agent({ keepAlive: true, maxSockets });
}

/* The backend that served a request, from its access-log line. */
export async function servedBy(gw, id) {
  return (await gw.accessFor(id)).backend;
}

/* The data of each event of an SSE body, comments left out. */
export function eventDatas(text) {
  return text.split(/\n\n/).map((event) => event.split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trimStart())
    .join('\n')).filter((data) => data !== '');
}

/* The stderr lines of a gateway that carry this request id. */
export function logLinesOf(gw, id) {
  return gw.stderr.filter((line) => line.includes(`req=${id} `));
}

/* Start an upstream on loopback that answers each request with
 * handler(req, res, body), body being the request's text. Resolves to
 * { url, close() }; close() also ends the connections left open. */
export async function startScripted(handler) {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (piece) => { body += piece; });
    req.on('end', () => handler(req, res, body));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/* A signal a scripted upstream waits for: `opened` resolves once open()
 * is called. */
export function gate() {
  let open;
  const opened = new Promise((resolve) => { open = resolve; });
  return { opened, open };
}

/* One SSE event of a chat.completion.chunk with this delta and finish
 * reason. */
export function chunkEvent(delta, finishReason = null) {
  const chunk = {
    id: 'chatcmpl-s', object: 'chat.completion.chunk', created: 0, model: 'gpt-4o',
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  };
  return `data: ${JSON.stringify(chunk)}\n\n`;
}

/* Resolve as promise does, or reject with a message naming what did not
 * happen once timeoutMs passed: a deadline for an outcome, as waitFor()
 * has, so that a gateway that holds something back fails the test rather
 * than hang it. */
export function within(promise, what, timeoutMs = 5000) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
