// Process management for the integration tests: start tollgate-mock and
// tollgate on free loopback ports, generate their configs, watch their logs
// and stop them. Every child is tracked so that stopAll() (run it in an
// `after` or `afterEach` hook) and the process exit handler leave nothing
// running.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { request } from './http.mjs';

export * from './http.mjs';
export * from './tls.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/* Source tree root: from the environment under `make check`, else two levels
 * above t/integration/lib so that `node --test` works by hand. */
export const SRCDIR = process.env.TOLLGATE_SRCDIR || path.resolve(here, '../../..');
export const TOLLGATE_BIN = process.env.TOLLGATE_BIN || path.join(SRCDIR, 'tollgate');
export const MOCK_BIN = process.env.TOLLGATE_MOCK_BIN || path.join(SRCDIR, 'tollgate-mock');

/* How long a child may take to start or stop before the test fails. These
 * bound waiting on a broken build; they are not performance thresholds. */
const START_DEADLINE_MS = 15000;
const STOP_DEADLINE_MS = 20000;

const children = new Set();
const gateways = new Set();
const tempDirs = new Set();

process.on('exit', () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null)
      child.kill('SIGKILL');
  }
  if (!process.env.TOLLGATE_TEST_KEEP) {
    for (const dir of tempDirs)
      fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Stop every gateway not stopped yet with SIGTERM, then kill the mocks and
 * anything else still running and remove the temporary directories. Throws
 * after the cleanup when a gateway did not exit with 0 or logged an
 * unexpected error, so the hook that runs it fails.
 */
export async function stopAll() {
  const problems = [];
  for (const gw of gateways) {
    if (gw.stopped)
      continue;
    try {
      await gw.stop();
    } catch (err) {
      problems.push(err.message);
    }
  }
  gateways.clear();
  await killAll();
  if (problems.length > 0)
    throw new Error(problems.join('\n\n'));
}

/* Kill every child still running and remove the temporary directories;
 * never throws. */
export async function killAll() {
  const waits = [];
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      waits.push(once(child, 'exit'));
      child.kill('SIGKILL');
    }
  }
  await Promise.all(waits);
  children.clear();
  if (!process.env.TOLLGATE_TEST_KEEP) {
    for (const dir of tempDirs)
      fs.rmSync(dir, { recursive: true, force: true });
    tempDirs.clear();
  }
}

export function makeTempDir(prefix = 'tollgate-it-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/* Poll fn until it returns a truthy value and return that value, or throw
 * `message` (plus the last value or error seen) once timeoutMs has passed. */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last)
        return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}; last value: ${describeValue(last)}`);
    await sleep(intervalMs);
  }
}

function describeValue(value) {
  if (value instanceof Error)
    return value.message;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/* Return a loopback port that was free a moment ago: bind port 0, read the
 * port, close. Another process may take it before the caller binds it; the
 * window is short and the tests accept it. */
/* Ports this process handed out: the kernel may offer a just-closed port
 * again, which once gave a gateway the same listen and admin port. */
const portsGiven = new Set();

export async function freePort(host = '127.0.0.1') {
  for (;;) {
    const server = net.createServer();
    server.listen(0, host);
    await once(server, 'listening');
    const { port } = server.address();
    server.close();
    await once(server, 'close');
    if (!portsGiven.has(port)) {
      portsGiven.add(port);
      return port;
    }
  }
}

/* Split a stream into lines and hand each complete line to onLine. */
function collectLines(stream, onLine) {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (text) => {
    pending += text;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, nl).replace(/\r$/, ''));
      pending = pending.slice(nl + 1);
    }
  });
  stream.on('end', () => {
    if (pending)
      onLine(pending);
  });
}

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function waitExit(child, deadlineMs, what) {
  if (child.exitCode !== null || child.signalCode !== null)
    return { code: child.exitCode, signal: child.signalCode };
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  const [code, signal] = await once(child, 'exit');
  clearTimeout(timer);
  if (signal === 'SIGKILL')
    throw new Error(`${what} did not exit within ${deadlineMs} ms and was killed`);
  return { code, signal };
}

/* ------------------------------------------------------------------------ */
/* tollgate-mock                                                            */
/* ------------------------------------------------------------------------ */

/* A host as a URL writes it: an IPv6 address in brackets. */
function urlHost(host) {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Start tollgate-mock on a free loopback port. Options: tls {cert, key, ca}
 * to serve HTTPS (ca is what the helpers trust when they talk to it),
 * fixtures DIR, args [extra flags], host (the address to listen on, a
 * loopback address such as 127.0.0.1, 127.0.0.2 or ::1), port (0 picks a
 * free one).
 */
export async function startMock({ tls = null, fixtures = null, args = [], host = '127.0.0.1', port = 0 } = {}) {
  const argv = ['--listen', `${urlHost(host)}:${port}`, '--quiet'];
  if (tls)
    argv.push('--tls-cert', tls.cert, '--tls-key', tls.key);
  if (fixtures)
    argv.push('--fixtures', fixtures);
  argv.push(...args);

  const child = track(spawn(MOCK_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const stderr = [];
  collectLines(child.stderr, (line) => stderr.push(line));

  const boundPort = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(
      `tollgate-mock printed no "listening" line within ${START_DEADLINE_MS} ms; stderr:\n${stderr.join('\n')}`)),
    START_DEADLINE_MS);
    collectLines(child.stdout, (line) => {
      const m = /^tollgate-mock listening on (\S+):(\d+)$/.exec(line);
      if (m && m[1] === urlHost(host)) {
        clearTimeout(timer);
        resolve(Number(m[2]));
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${MOCK_BIN}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`tollgate-mock exited early (code ${code}, signal ${signal}); stderr:\n${stderr.join('\n')}`));
    });
  });

  return new Mock(child, host, boundPort, tls, stderr);
}

class Mock {
  constructor(child, host, port, tls, stderr) {
    this.child = child;
    this.host = host;
    this.port = port;
    this.tls = tls;
    this.stderr = stderr;
    this.scheme = tls ? 'https' : 'http';
    this.url = `${this.scheme}://${urlHost(host)}:${port}`;
    // The /_mock calls share one kept-alive connection, so that they add
    // at most one to connections_opened and none to
    // connections_closed_by_peer while the test runs.
    const agentOptions = { keepAlive: true, maxSockets: 1 };
    this.agent = tls
      ? new https.Agent({ ...agentOptions, ca: fs.readFileSync(tls.ca), servername: 'localhost' })
      : new http.Agent(agentOptions);
  }

  async #get(pathname, method = 'GET') {
    const res = await request({
      host: this.host, port: this.port, path: pathname, method, agent: this.agent,
      tls: this.tls ? { ca: this.tls.ca, servername: 'localhost' } : null,
    });
    if (res.status !== 200)
      throw new Error(`mock ${method} ${pathname} returned ${res.status}: ${res.text}`);
    return res.status === 200 && res.text ? JSON.parse(res.text) : null;
  }

  /* {connections_opened, connections_closed_by_peer, requests,
   *  responses_completed, responses_aborted} */
  stats() {
    return this.#get('/_mock/stats');
  }

  /* The last 100 requests, oldest first, without the mock's own /_mock
   * endpoints (their connection numbers are still counted by the mock). */
  async requests() {
    const all = await this.#get('/_mock/requests');
    return all.filter((r) => !r.path.startsWith('/_mock/'));
  }

  async lastRequest() {
    const all = await this.requests();
    if (all.length === 0)
      throw new Error('the mock has recorded no request');
    return all[all.length - 1];
  }

  async reset() {
    await this.#get('/_mock/reset', 'POST');
  }

  async stop() {
    this.agent.destroy();
    this.child.kill('SIGTERM');
    await waitExit(this.child, STOP_DEADLINE_MS, 'tollgate-mock');
  }
}

/* ------------------------------------------------------------------------ */
/* tollgate                                                                 */
/* ------------------------------------------------------------------------ */

/* Lines that mean the gateway is broken whatever the test expects: sanitizer
 * reports and assertion failures. */
const FATAL_PATTERNS = [/AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer/, /runtime error:/, /Assertion .* failed/];

/* Throw when the output of a tollgate run by runTollgate() has a line that
 * FATAL_PATTERNS matches, such as a leak report at exit. */
export function assertNoFatalOutput(text) {
  const line = text.split('\n').find((l) => FATAL_PATTERNS.some((p) => p.test(l)));
  if (line !== undefined)
    throw new Error(`tollgate reported: ${line}`);
}

/* A backend entry for a config, pointing at a started mock. */
export function mockBackend(mock, extra = {}) {
  return { url: mock.url, ...extra };
}

/* Routes for the three OpenAI POST endpoints, any model, to one backend. */
export function openaiRoutes(backend = 'mock', model = '*') {
  return [
    { name: 'chat', match: { path: '/v1/chat/completions', model }, backends: [backend] },
    { name: 'completions', match: { path: '/v1/completions', model }, backends: [backend] },
    { name: 'embeddings', match: { path: '/v1/embeddings', model }, backends: [backend] },
  ];
}

/* The usual config: one backend "mock" and the three OpenAI routes. */
export function basicConfig(mock, { backend = {}, ...rest } = {}) {
  return {
    backends: { mock: mockBackend(mock, backend) },
    routes: openaiRoutes('mock'),
    ...rest,
  };
}

/**
 * Write config (an object, or JSON text used as is) into a new temp dir and
 * start `tollgate -c FILE`. Missing listen, admin, workers, drain_timeout,
 * access_log and access_log_flush are filled in (free ports, 1 worker, 10s,
 * stdout, 50ms). The short flush keeps the access log buffered, as users
 * run it, without making every test that waits for a line wait a second.
 * Options: env (added to the environment), expectErrors (RegExps matching
 * `[error]` lines this gateway may log), args (extra flags), stdout (a file
 * descriptor for the gateway's stdout instead of a pipe the harness reads),
 * nofile (the gateway's open-files limit, soft and hard) and nofileSoft
 * (the soft limit alone). The limits are set by `ulimit` in a shell that
 * then execs tollgate, so gw.child is still tollgate itself.
 * With stdout given, gw.stdout and gw.accessLog stay empty.
 *
 * Resolves once the admin /readyz returns 200.
 */
export async function startGateway(config, { env = {}, expectErrors = [], args = [], stdout = 'pipe', nofile = null, nofileSoft = null, closeFds = [] } = {}) {
  const dir = makeTempDir();
  const file = path.join(dir, 'tollgate.json');
  let listenPort = null;
  let adminPort = null;

  if (typeof config === 'string') {
    fs.writeFileSync(file, config);
    const parsed = JSON.parse(config);
    adminPort = Number(/:(\d+)$/.exec(parsed.admin)[1]);
    listenPort = listenPortOf(parsed.listen[0]);
  } else {
    config = structuredClone(config);
    if (!config.listen) {
      listenPort = await freePort();
      config.listen = [`127.0.0.1:${listenPort}`];
    } else {
      listenPort = listenPortOf(config.listen[0]);
    }
    if (!config.admin) {
      adminPort = await freePort();
      config.admin = `127.0.0.1:${adminPort}`;
    } else {
      adminPort = Number(/:(\d+)$/.exec(config.admin)[1]);
    }
    config.workers ??= 1;
    config.drain_timeout ??= '10s';
    config.access_log ??= '-';
    config.access_log_flush ??= '50ms';
    fs.writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
  }

  const gw = new Gateway({ dir, file, config, listenPort, adminPort, env, expectErrors, nofile, nofileSoft, closeFds });
  gateways.add(gw);
  await gw.start(args, stdout);
  return gw;
}

function listenPortOf(entry) {
  const address = typeof entry === 'string' ? entry : entry.address;
  return Number(/:(\d+)$/.exec(address)[1]);
}

class Gateway {
  constructor({ dir, file, config, listenPort, adminPort, env, expectErrors, nofile, nofileSoft, closeFds }) {
    this.dir = dir;
    this.file = file;
    this.config = config;
    this.port = listenPort;
    this.adminPort = adminPort;
    this.env = env;
    this.nofile = nofile;
    this.nofileSoft = nofileSoft;
    this.closeFds = closeFds;
    this.allowed = [...expectErrors];
    this.stderr = [];
    this.stdout = [];
    this.accessLog = [];
    this.checkedLines = 0;
    this.exit = null;
    this.stopped = false;
  }

  get baseURL() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(args, stdout) {
    let command = TOLLGATE_BIN;
    let argv = ['-c', this.file, ...args];
    const limits = [['-n', this.nofile], ['-Sn', this.nofileSoft]].filter(([, n]) => n !== null);
    if (limits.length > 0 || this.closeFds.length > 0) {
      for (const [, n] of limits) {
        if (!Number.isInteger(n) || n < 1)
          throw new Error(`nofile and nofileSoft must be positive integers, not ${n}`);
      }
      for (const fd of this.closeFds) {
        if (![0, 1, 2].includes(fd))
          throw new Error(`closeFds takes 0, 1 or 2, not ${fd}`);
      }
      const ulimits = limits.map(([flag, n]) => `ulimit ${flag} ${n} && `).join('');
      const closes = this.closeFds.map((fd) => ` ${fd}>&-`).join('');
      argv = ['-c', `${ulimits}exec "$0" "$@"${closes}`, TOLLGATE_BIN, ...argv];
      command = '/bin/sh';
    }
    const child = spawn(command, argv, {
      stdio: ['ignore', stdout, 'pipe'],
      env: { ...process.env, ...this.env },
    });
    this.child = track(child);
    collectLines(child.stderr, (line) => {
      this.stderr.push(line);
      if (process.env.TOLLGATE_TEST_VERBOSE)
        process.stderr.write(`[tollgate:${this.port}] ${line}\n`);
    });
    if (child.stdout) {
      collectLines(child.stdout, (line) => {
        this.stdout.push(line);
        if (line.startsWith('{')) {
          try {
            this.accessLog.push(JSON.parse(line));
          } catch {
            this.accessLog.push({ unparsable: line });
          }
        }
      });
    }
    child.once('exit', (code, signal) => {
      this.exit = { code, signal };
    });
    // 'close' comes after the last stdout bytes were read, which 'exit'
    // does not promise: the access-log lines written at shutdown.
    this.closed = new Promise((resolve) => child.once('close', resolve));
    const spawnError = new Promise((_, reject) => child.once('error', (err) => reject(new Error(`cannot start ${TOLLGATE_BIN}: ${err.message}`))));

    // waitFor() takes a throw for "not yet", so an exit is returned, not
    // thrown: a gateway that rejects its config fails the test at once.
    const started = await Promise.race([spawnError, waitFor(async () => {
      if (this.exit)
        return { exited: this.exit };
      const res = await request({ port: this.adminPort, path: '/readyz', timeoutMs: 1000 });
      return res.status === 200 && { ready: true };
    }, { timeoutMs: START_DEADLINE_MS, message: `tollgate admin /readyz on port ${this.adminPort}` }).catch((err) => {
      throw new Error(`${err.message}\nstderr:\n${this.stderr.join('\n')}`);
    })]);
    if (started.exited)
      throw new Error(`tollgate exited during startup (${JSON.stringify(started.exited)}):\n${this.stderr.join('\n')}`);
  }

  /* Allow `[error]` lines matching these patterns from now on. */
  expectErrors(...patterns) {
    this.allowed.push(...patterns);
  }

  /* Throw when a stderr line since the last check is a sanitizer report or an
   * `[error]` line no allowed pattern matches. Call it in afterEach. */
  checkErrors() {
    const lines = this.stderr.slice(this.checkedLines);
    this.checkedLines += lines.length;
    const bad = lines.filter((line) =>
      FATAL_PATTERNS.some((re) => re.test(line)) ||
      (line.includes('[error]') && !this.allowed.some((re) => re.test(line))));
    if (bad.length > 0)
      throw new Error(`tollgate logged unexpected errors:\n${bad.join('\n')}`);
  }

  /* Wait for a stderr line matching re, looking from line index `from`. */
  waitForLog(re, { from = 0, timeoutMs = 10000 } = {}) {
    return waitFor(() => this.stderr.slice(from).find((line) => re.test(line)),
      { timeoutMs, message: `tollgate log line ${re}` });
  }

  /* Wait for an access-log entry that satisfies predicate and return it. */
  waitForAccess(predicate, { timeoutMs = 10000, message = 'an access-log line' } = {}) {
    return waitFor(() => this.accessLog.find(predicate), { timeoutMs, message });
  }

  /* Wait for the access-log entry of the request with this x-request-id. */
  accessFor(requestId) {
    return this.waitForAccess((e) => e.request_id === requestId,
      { message: `the access-log line with request_id ${requestId}` });
  }

  signal(name) {
    this.child.kill(name);
  }

  /* Replace the config file (an object or raw text), send SIGHUP and wait for
   * the outcome. Returns 'reloaded' or 'failed'. */
  async reload(config) {
    const text = typeof config === 'string' ? config : JSON.stringify(config, null, 2) + '\n';
    const tmp = `${this.file}.new`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, this.file);
    const from = this.stderr.length;
    this.signal('SIGHUP');
    const line = await this.waitForLog(/configuration reloaded from|reload of .* failed/, { from });
    return /configuration reloaded from/.test(line) ? 'reloaded' : 'failed';
  }

  /* Send SIGTERM (unless the gateway already exited) and wait for the exit.
   * Throws when the exit code is not 0 or the log has unexpected errors. */
  async stop() {
    this.stopped = true;
    if (!this.exit)
      this.signal('SIGTERM');
    const { code, signal } = await waitExit(this.child, STOP_DEADLINE_MS, 'tollgate');
    await this.closed;
    if (code !== 0)
      throw new Error(`tollgate on port ${this.port} exited with code ${code}, signal ${signal}; stderr:\n${this.stderr.join('\n')}`);
    this.checkErrors();
    return { code, signal };
  }

  /* Wait for an exit already triggered (SIGTERM sent by the test), and for
   * the output written before it. */
  async waitExit() {
    const result = await waitExit(this.child, STOP_DEADLINE_MS, 'tollgate');
    await this.closed;
    return result;
  }
}

/* Run tollgate with args (e.g. -t, -V) and collect its output. */
export async function runTollgate(args, { env = {} } = {}) {
  const child = track(spawn(TOLLGATE_BIN, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  }));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s) => { stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s) => { stderr += s; });
  const { code, signal } = await waitExit(child, STOP_DEADLINE_MS, `tollgate ${args.join(' ')}`);
  return { code, signal, stdout, stderr };
}

/* Write text to a new file in a new temp dir and return its path. */
export function writeTempFile(name, text) {
  const file = path.join(makeTempDir(), name);
  fs.writeFileSync(file, text);
  return file;
}
