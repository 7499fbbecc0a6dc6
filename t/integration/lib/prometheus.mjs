// Prometheus for the metrics tests: a parser for the text exposition, the
// real `promtool check metrics`, and a real Prometheus server (the Debian
// package) started on a free loopback port with a generated config and a
// temporary storage directory.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

import { freePort, makeTempDir, request, waitFor } from './harness.mjs';

/* How long Prometheus may take to start or stop before the test fails; a
 * bound on a broken install, not a performance threshold. */
const START_DEADLINE_MS = 30000;
const STOP_DEADLINE_MS = 10000;

const servers = new Set();

process.on('exit', () => {
  for (const child of servers)
    child.kill('SIGKILL');
});

/* GET /metrics from a gateway's admin listener; accept is the Accept
 * header (default: none, so the text format). Returns the response. */
export async function scrape(gw, accept = null) {
  const res = await request({ port: gw.adminPort, path: '/metrics', headers: accept ? { accept } : {} });
  if (res.status !== 200)
    throw new Error(`GET /metrics returned ${res.status}: ${res.text}`);
  return res;
}

/* Unescape a label value of the exposition format. */
function unescapeLabel(value) {
  return value.replace(/\\(["\\n])/g, (_, c) => (c === 'n' ? '\n' : c));
}

/**
 * Parse a text exposition into a Map from series key to value. The key is
 * the sample name followed by its labels sorted by name, as
 * name{a="1",b="2"}, so lookups do not depend on label order. Comment lines
 * are skipped.
 */
export function parseSamples(text) {
  const samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#'))
      continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \S+)?$/.exec(line);
    if (!m)
      throw new Error(`unparsable sample line: ${line}`);
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]] = unescapeLabel(l[2]);
    samples.set(seriesKey(m[1], labels), Number(m[3]));
  }
  return samples;
}

/* The key of a series in a parseSamples() map. */
export function seriesKey(name, labels = {}) {
  const parts = Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return parts.length > 0 ? `${name}{${parts.join(',')}}` : name;
}

/* The value of one series, or 0 when the scrape has none (a counter or
 * histogram series appears with its first observation). */
export function valueOf(samples, name, labels = {}) {
  return samples.get(seriesKey(name, labels)) ?? 0;
}

/* Run `promtool check metrics` on an exposition; resolves to {code, output}:
 * code 0 and no output when promtool finds nothing to report. */
export async function promtoolCheck(text) {
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  child.stdin.end(text);
  const [code] = await once(child, 'exit');
  return { code, output: output.trim() };
}

/**
 * Start Prometheus scraping targets ("host:port" strings) every second at
 * /metrics, with exemplar storage on. Resolves once its /-/ready returns
 * 200.
 */
export async function startPrometheus(targets) {
  const dir = makeTempDir('tollgate-prometheus-');
  const port = await freePort();
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(config, [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    'scrape_configs:',
    '  - job_name: tollgate',
    '    static_configs:',
    `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
    '',
  ].join('\n'));

  const child = spawn('prometheus', [
    `--config.file=${config}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
    '--enable-feature=exemplar-storage',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.add(child);
  child.once('exit', () => servers.delete(child));
  const stderr = [];
  child.stderr.setEncoding('utf8').on('data', (d) => stderr.push(d));
  const spawnError = new Promise((_, reject) => child.once('error', (err) =>
    reject(new Error(`cannot start prometheus: ${err.message}; install the Debian package prometheus`))));

  const server = new Prometheus(child, port, stderr);
  await Promise.race([spawnError, waitFor(async () => {
    if (child.exitCode !== null)
      throw new Error(`prometheus exited with ${child.exitCode}: ${stderr.join('')}`);
    const res = await request({ port, path: '/-/ready', timeoutMs: 1000 });
    return res.status === 200;
  }, { timeoutMs: START_DEADLINE_MS, message: `prometheus /-/ready on port ${port}` })]);
  return server;
}

class Prometheus {
  constructor(child, port, stderr) {
    this.child = child;
    this.port = port;
    this.stderr = stderr;
  }

  async #get(pathname) {
    const res = await request({ port: this.port, path: pathname });
    const body = res.json();
    if (res.status !== 200 || body.status !== 'success')
      throw new Error(`prometheus ${pathname} returned ${res.status}: ${res.text}`);
    return body.data;
  }

  /* An instant PromQL query; resolves to the result vector:
   * [{metric, value: [time, "text"]}]. */
  query(expr) {
    return this.#get(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  }

  /* The single value of a query, or null when its result is empty. */
  async scalar(expr) {
    const data = await this.query(expr);
    if (data.result.length === 0)
      return null;
    if (data.result.length > 1)
      throw new Error(`${expr} returned ${data.result.length} series, not one`);
    return Number(data.result[0].value[1]);
  }

  /* The exemplars of the series expr selects over the last five minutes:
   * [{seriesLabels, exemplars: [{labels, value, timestamp}]}]. */
  queryExemplars(expr) {
    const now = Date.now() / 1000;
    return this.#get(`/api/v1/query_exemplars?query=${encodeURIComponent(expr)}` +
      `&start=${now - 300}&end=${now + 60}`);
  }

  /* The active targets with their health and last scrape error. */
  async targets() {
    const data = await this.#get('/api/v1/targets');
    return data.activeTargets;
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null)
      return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_DEADLINE_MS);
    await exited;
    clearTimeout(timer);
  }
}
