// The servers of a bench/run: tollgate-mock (the LLM provider every
// contender forwards to), the OTLP sink for tollgate's spans, and the
// contenders themselves. Each start function returns
//   {name, address: "127.0.0.1:PORT", pid (the process whose CPU and
//    memory are measured, null for direct), root (the process started, whose
//    tree is paused while another contender is measured, null for direct),
//    headers: [...], stop()}.

import fs from 'node:fs';
import path from 'node:path';

import { childrenOf, freePort, run, sleep, start, stop, waitForLine, waitForPort } from './proc.mjs';

// Fill the @NAME@ placeholders of a template file.
function fillTemplate(file, values) {
  let text = fs.readFileSync(file, 'utf8');
  for (const [k, v] of Object.entries(values))
    text = text.replaceAll(`@${k}@`, v);
  return text;
}

function prepareNginxPrefix(prefix) {
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    fs.mkdirSync(path.join(prefix, d), { recursive: true });
}

export async function startMock(ctx) {
  const proc = start('tollgate-mock', [ctx.bins.mock, '--listen', '127.0.0.1:0', '--quiet'], {
    cpu: ctx.cpu.client, logFile: path.join(ctx.tmp, 'mock.log'),
  });
  const m = await waitForLine(proc, /listening on (127\.0\.0\.1:\d+)/);
  return { proc, pid: proc.pid, address: m[1], stop: () => stop(proc) };
}

// nginx master in the foreground with its own prefix; the worker inherits
// the CPU affinity, and is the process measured.
async function startNginx(ctx, name, template, values, cpu) {
  const prefix = path.join(ctx.tmp, name);
  const port = await freePort();
  const conf = path.join(prefix, 'nginx.conf');

  prepareNginxPrefix(prefix);
  const files = Number.isFinite(ctx.fdLimit) ? ctx.fdLimit : 65536;
  fs.writeFileSync(conf, fillTemplate(template, {
    PREFIX: prefix, LISTEN: `127.0.0.1:${port}`, NOFILE: String(files),
    CONNECTIONS: String(Math.min(40000, files - 50)), ...values,
  }));
  const proc = start(name, [ctx.bins.nginx, '-p', prefix, '-c', conf], {
    cpu, logFile: path.join(prefix, 'stderr.log'),
  });
  await waitForPort(proc, port);

  let worker = null;
  for (let i = 0; i < 50 && worker === null; i++) {
    worker = childrenOf(proc.pid)[0] ?? null;
    if (worker === null)
      await sleep(20);
  }
  return { proc, port, worker, prefix };
}

export async function startSink(ctx) {
  const n = await startNginx(ctx, 'otlp-sink', path.join(ctx.benchDir, 'otlp-sink.conf.in'), {},
                             ctx.cpu.client);
  return { address: `127.0.0.1:${n.port}`, pid: n.worker, stop: () => stop(n.proc) };
}

// ---- contenders -------------------------------------------------------

function direct(ctx) {
  return {
    name: 'direct', address: ctx.mock.address, pid: null, root: null, headers: [],
    alive: () => true, status: () => 'running', stop: async () => {},
  };
}

async function nginx(ctx) {
  const n = await startNginx(ctx, 'nginx', path.join(ctx.benchDir, 'nginx.conf.in'),
                             { UPSTREAM: ctx.mock.address }, ctx.cpu.server);
  return {
    name: 'nginx', address: `127.0.0.1:${n.port}`, pid: n.worker, root: n.proc.pid, headers: [],
    alive: n.proc.alive, status: n.proc.status, stop: () => stop(n.proc),
  };
}

// The optional sections of tollgate's config, each checked alone with
// `tollgate -t` before use, since they land while this harness exists.
function tollgateFeatures(ctx) {
  return [
    {
      name: 'tracing',
      what: 'OpenTelemetry spans for every request, exported over OTLP/HTTP in tollgate\'s default encoding (named under the configuration) to a local sink',
      apply: (c) => {
        c.tracing = { enabled: true, otlp: { endpoint: `http://${ctx.sink.address}/v1/traces` } };
      },
    },
    {
      name: 'filters',
      what: 'a regex content filter masking e-mail addresses in prompts and completions',
      apply: (c) => {
        c.filters = { pii: { type: 'regex', apply_to: ['request', 'response'], action: 'mask', presets: ['email'] } };
        for (const r of c.routes)
          r.filters = ['pii'];
      },
    },
  ];
}

function tollgateBaseConfig(ctx, port, adminPort) {
  return {
    listen: [`127.0.0.1:${port}`],
    admin: `127.0.0.1:${adminPort}`,
    workers: 1,
    access_log: path.join(ctx.tmp, 'tollgate-access.log'),
    backends: {
      mock: {
        url: `http://${ctx.mock.address}`,
        pool: { max_idle: 1024 },
      },
    },
    routes: [
      { name: 'chat', match: { path: '/v1/chat/completions' }, backends: ['mock'] },
    ],
  };
}

async function checkConfig(ctx, config, file) {
  fs.writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
  const r = await run('tollgate -t', [ctx.bins.tollgate, '-t', '-c', file], { timeoutMs: 10000 });
  return { ok: r.code === 0, message: (r.stderr + r.stdout).trim() };
}

// Build tollgate's two configs once per run. "tollgate" runs as users run
// it: every optional feature that `tollgate -t` accepts on its own is on,
// and the others are reported as not available yet. "tollgate-plain" has
// none of them, which separates the cost of the features from the relay.
export async function tollgateConfig(ctx) {
  const full = { port: await freePort(), adminPort: await freePort(), file: path.join(ctx.tmp, 'tollgate.json') };
  const plain = { port: await freePort(), adminPort: await freePort(), file: path.join(ctx.tmp, 'tollgate-plain.json') };
  const base = tollgateBaseConfig(ctx, full.port, full.adminPort);
  const features = [];

  const baseCheck = await checkConfig(ctx, base, full.file);
  if (!baseCheck.ok)
    throw new Error(`tollgate -t rejects the base config ${full.file}: ${baseCheck.message}`);

  full.config = structuredClone(base);
  for (const f of tollgateFeatures(ctx)) {
    const trial = structuredClone(base);
    f.apply(trial);
    const check = await checkConfig(ctx, trial, full.file);
    features.push({ name: f.name, what: f.what, accepted: check.ok, message: check.ok ? '' : check.message });
    if (check.ok)
      f.apply(full.config);
  }

  const final = await checkConfig(ctx, full.config, full.file);
  if (!final.ok)
    throw new Error(`tollgate -t rejects the combined config ${full.file}: ${final.message}`);

  plain.config = tollgateBaseConfig(ctx, plain.port, plain.adminPort);
  plain.config.access_log = path.join(ctx.tmp, 'tollgate-plain-access.log');
  const plainCheck = await checkConfig(ctx, plain.config, plain.file);
  if (!plainCheck.ok)
    throw new Error(`tollgate -t rejects ${plain.file}: ${plainCheck.message}`);
  return { full, plain, prompts: await promptsConfig(ctx, full.config), features };
}

// "tollgate-prompts": the configuration as users run it, except that the
// filter screens prompts only. A response mask keeps back each streamed
// event whose text may begin a match, until the next event shows whether it
// does. This variant shows what the other features cost a stream without
// that wait.
// null when the full configuration has no filter.
async function promptsConfig(ctx, fullConfig) {
  if (!fullConfig.filters)
    return null;
  const prompts = { port: await freePort(), adminPort: await freePort(), file: path.join(ctx.tmp, 'tollgate-prompts.json') };
  prompts.config = structuredClone(fullConfig);
  prompts.config.listen = [`127.0.0.1:${prompts.port}`];
  prompts.config.admin = `127.0.0.1:${prompts.adminPort}`;
  prompts.config.access_log = path.join(ctx.tmp, 'tollgate-prompts-access.log');
  for (const f of Object.values(prompts.config.filters))
    f.apply_to = ['request'];
  const check = await checkConfig(ctx, prompts.config, prompts.file);
  if (!check.ok)
    throw new Error(`tollgate -t rejects ${prompts.file}: ${check.message}`);
  return prompts;
}

async function startTollgate(ctx, name, t) {
  // The scratch directory is the working directory, so that a core dump
  // of a crash lands there.
  const proc = start(name, [ctx.bins.tollgate, '-c', t.file], {
    cpu: ctx.cpu.server, cwd: ctx.tmp, logFile: path.join(ctx.tmp, `${name}.log`),
  });
  await waitForPort(proc, t.port);
  return {
    name, address: `127.0.0.1:${t.port}`, pid: proc.pid, root: proc.pid, headers: [],
    admin: `127.0.0.1:${t.adminPort}`, alive: proc.alive, status: proc.status, stop: () => stop(proc),
  };
}

function tollgate(ctx) {
  return startTollgate(ctx, 'tollgate', ctx.tollgate.full);
}

function tollgatePlain(ctx) {
  return startTollgate(ctx, 'tollgate-plain', ctx.tollgate.plain);
}

function tollgatePrompts(ctx) {
  if (!ctx.tollgate.prompts)
    throw new Error('the configuration as users run it has no filter to limit to prompts');
  return startTollgate(ctx, 'tollgate-prompts', ctx.tollgate.prompts);
}

async function portkey(ctx) {
  const port = await freePort();
  const proc = start('portkey', [ctx.bins.node, ctx.bins.portkey, `--port=${port}`, '--headless'], {
    cpu: ctx.cpu.server, env: { NODE_ENV: 'production' }, logFile: path.join(ctx.tmp, 'portkey.log'),
  });
  await waitForPort(proc, port, 30000);
  return {
    name: 'portkey', address: `127.0.0.1:${port}`, pid: proc.pid, root: proc.pid,
    headers: ['x-portkey-provider: openai', `x-portkey-custom-host: http://${ctx.mock.address}/v1`],
    alive: proc.alive, status: proc.status, stop: () => stop(proc),
  };
}

export const contenders = {
  direct, nginx, tollgate, 'tollgate-plain': tollgatePlain, 'tollgate-prompts': tollgatePrompts, portkey,
};

// The phases a contender takes part in, where not all: the prompts-only
// variant answers a question about streams alone.
export const onlyPhases = { 'tollgate-prompts': ['streams'] };
