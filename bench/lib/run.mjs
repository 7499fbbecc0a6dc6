// bench/run: tollgate against no proxy, nginx and Portkey, in front of one
// tollgate-mock, on this machine. See bench/README.md.
//
// Phases, each repeated and interleaved across contenders so that a change
// in background load hits them alike:
//   1. wrk at saturation (non-streaming)
//   2. the load generator at half of nginx's maximum rate (non-streaming)
//   3. 1,000 concurrent streams: per-event relay latency and time to first
//      token
//   4. perf profiles of tollgate at saturation and under streams (full run)
//   5. memory with 10,000 open streams, each contender freshly started

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { contenders, onlyPhases, startMock, startSink, tollgateConfig } from './contenders.mjs';
import { holdPollingIdle } from './idle.mjs';
import { fixedRate, memory, saturation, streams } from './measure.mjs';
import { REALTIME_PRIORITY, commands, pause, resume, run, setNiceness, stopAll } from './proc.mjs';
import { writeReport } from './report.mjs';
import { median } from './stats.mjs';

const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const topDir = path.dirname(benchDir);

const PROFILES = {
  // Five repetitions: with three, the median took one slow repetition or
  // not (nginx's maximum ranged from 48,069 to 57,853 requests/s within
  // one run), and that alone moved a throughput ratio by 0.1.
  full: {
    reps: 5, saturationSeconds: 10, rateSeconds: 10, streamSeconds: 12, streamWarmup: 3,
    streamCount: 1000, memoryStreams: 10000, memorySeconds: 14, profile: true,
    out: benchDir,
  },
  quick: {
    reps: 1, saturationSeconds: 4, rateSeconds: 4, streamSeconds: 6, streamWarmup: 2,
    streamCount: 1000, memoryStreams: 10000, memorySeconds: 12, profile: false,
    out: path.join(benchDir, 'quick'),
  },
};

const USAGE = `usage: bench/run [--quick] [--only NAME,...] [--no-profile] [--nice N] [--deep-idle]
                 [--no-realtime] [--out DIR]
       bench/run --report results.json [--out DIR]
  --quick        one short repetition of each phase (about 2 minutes);
                 writes bench/quick/ instead of bench/RESULTS.md
  --only LIST    contenders to run, from direct,nginx,tollgate,tollgate-plain,
                 tollgate-prompts,portkey
                 (direct and nginx are always run: they are the baselines)
  --no-profile   skip the perf profiles of tollgate
  --nice N       run every benchmark process at nice value N (-20 to 19;
                 negative values need root), so that other programs on a
                 shared machine disturb the measurements less
  --deep-idle    let idle cores enter deep idle states; by default bench/run
                 keeps them polling (/dev/cpu_dma_latency, when it may
                 write it), so that waking a core does not count as proxy
                 latency
  --no-realtime  run the stream phase at the normal scheduling policy; by
                 default the mock, the contender and the load generator
                 run it under SCHED_FIFO (when bench/run may set it), so
                 that other programs' threads cannot hold the cores for
                 milliseconds between a stream's events
  --out DIR      where RESULTS.md, results.json and latency.png go
  --report FILE  measure nothing: write RESULTS.md and latency.png again
                 from the results.json of an earlier run (after editing
                 bench/analysis.md, for instance)`;

function parseArgs(argv) {
  const opts = { profileName: 'full', only: null, noProfile: false, nice: null, deepIdle: false,
                 noRealtime: false, out: null, report: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick')
      opts.profileName = 'quick';
    else if (a === '--only')
      opts.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--no-profile')
      opts.noProfile = true;
    else if (a === '--deep-idle')
      opts.deepIdle = true;
    else if (a === '--no-realtime')
      opts.noRealtime = true;
    else if (a === '--out')
      opts.out = argv[++i];
    else if (a === '--report')
      opts.report = argv[++i];
    else if (a === '--nice') {
      opts.nice = Number(argv[++i]);
      if (!Number.isInteger(opts.nice) || opts.nice < -20 || opts.nice > 19) {
        console.error(`bench/run: invalid value "${argv[i]}" for --nice: expected an integer from -20 to 19`);
        process.exit(2);
      }
    }
    else if (a === '-h' || a === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else {
      console.error(`bench/run: unknown option "${a}"\n${USAGE}`);
      process.exit(2);
    }
  }
  for (const n of opts.only ?? [])
    if (!(n in contenders)) {
      console.error(`bench/run: unknown contender "${n}"; valid: ${Object.keys(contenders).join(', ')}`);
      process.exit(2);
    }
  return opts;
}

function log(msg) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// The output of a short command, stdout and stderr together (nginx -v
// prints to stderr), or null when it could not run.
function capture(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 });
  return r.error ? null : ((r.stdout ?? '') + (r.stderr ?? '')).trim();
}

// The open-files limit bench/run gave this process (and so its children).
function fdLimit() {
  const n = Number(capture('sh', ['-c', 'ulimit -n']));
  return Number.isFinite(n) ? n : Infinity;
}

function findBinary(candidates) {
  return candidates.find((f) => f && fs.existsSync(f)) ?? null;
}

// The binaries: from the environment, else the build tree (the top
// directory, or a build directory given by TOLLGATE_BUILD_DIR).
function locateBinaries() {
  const build = process.env.TOLLGATE_BUILD_DIR ?? topDir;
  const bins = {
    tollgate: findBinary([process.env.TOLLGATE_BIN, path.join(build, 'tollgate')]),
    mock: findBinary([process.env.TOLLGATE_MOCK_BIN, path.join(build, 'tollgate-mock')]),
    loadgen: findBinary([process.env.LOADGEN_BIN, path.join(build, 'bench', 'loadgen')]),
    nginx: findBinary([process.env.NGINX_BIN, '/usr/sbin/nginx']),
    node: process.execPath,
    portkey: findBinary([path.join(benchDir, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js')]),
  };
  for (const k of ['tollgate', 'mock', 'loadgen', 'nginx'])
    if (!bins[k])
      throw new Error(`${k} not found: build with \`make tollgate tollgate-mock bench/loadgen\` and install the `
                      + 'tools with bench/setup (see bench/README.md)');
  return bins;
}

function machineInfo() {
  const lscpu = capture('lscpu', []) ?? '';
  const field = (name) => lscpu.match(new RegExp(`^${name}:\\s*(.*)$`, 'm'))?.[1] ?? null;
  return {
    cpu: field('Model name') ?? os.cpus()[0]?.model,
    cores: os.cpus().length,
    hypervisor: field('Hypervisor vendor'),
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: os.release(),
    loadBefore: os.loadavg(),
  };
}

function versions(bins) {
  const pkg = bins.portkey ? path.join(path.dirname(bins.portkey), '..', 'package.json') : null;
  const hono = path.join(benchDir, 'node_modules', '@hono', 'node-server', 'package.json');
  const readVersion = (f) => (f && fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')).version : null);
  return {
    tollgate: capture(bins.tollgate, ['-V']),
    commit: capture('git', ['-C', topDir, 'describe', '--always', '--dirty']),
    nginx: capture(bins.nginx, ['-v']),
    node: process.version,
    portkey: readVersion(pkg),
    honoNodeServer: readVersion(hono),
    wrk: capture('wrk', ['-v'])?.split('\n')[0] ?? null,
    libevent: capture('pkg-config', ['--modversion', 'libevent']),
    gnuplot: capture('gnuplot', ['--version']),
    perf: capture('perf', ['--version']),
  };
}

// Run fn, keeping its result or the error it threw, so one contender that
// fails does not stop the others.
async function attempt(results, what, fn) {
  try {
    return await fn();
  } catch (err) {
    log(`${what}: ${err.message}`);
    results.errors.push({ what, message: err.message });
    return { error: err.message };
  }
}

async function startContenders(ctx, results, names) {
  const running = {};
  for (const name of names) {
    if (name === 'portkey' && !ctx.bins.portkey) {
      results.contenders.portkey = { started: false, error: 'not installed: run bench/setup' };
      continue;
    }
    const c = await attempt(results, `start ${name}`, () => contenders[name](ctx));
    results.contenders[name] = { started: !c.error, error: c.error ?? null };
    if (!c.error)
      running[name] = c;
  }
  return running;
}

// A contender that died is recorded as a crash and started again, so the
// phases after it still run. Returns the contender to measure, or null.
async function ensureAlive(ctx, results, running, name, where) {
  const c = running[name];
  if (c.alive())
    return c;
  const message = `${name} died (${c.status()}) before ${where}; restarted`;
  log(message);
  results.crashes.push({ contender: name, before: where, status: c.status() });
  results.errors.push({ what: `${name} crash`, message });
  const again = await attempt(results, `restart ${name}`, () => contenders[name](ctx));
  if (again.error) {
    delete running[name];
    return null;
  }
  running[name] = again;
  if (ctx.running && ctx.running !== running && name in ctx.running)
    ctx.running[name] = again;
  return again;
}

// Run fn while every other contender is paused. They all share the
// contender core, and an idle one still wakes for its timers (Portkey's
// node process, tollgate's span exporter). In earlier runs such wake-ups
// coincided with multi-millisecond tails in the stream latencies of the
// contender being measured.
async function alone(ctx, c, fn) {
  const others = Object.values(ctx.running).filter((o) => o !== c && o.root);
  for (const o of others)
    pause(o.root);
  try {
    return await fn();
  } finally {
    for (const o of others)
      resume(o.root);
  }
}

// Repeat fn for every contender, interleaved: rep 1 of each, rep 2, ...
async function interleave(ctx, results, running, phase, reps, fn) {
  results[phase] = {};
  for (let rep = 1; rep <= reps; rep++)
    for (const name of Object.keys(running)) {
      if (onlyPhases[name] && !onlyPhases[name].includes(phase))
        continue;
      const c = await ensureAlive(ctx, results, running, name, `${phase} #${rep}`);
      if (!c)
        continue;
      log(`${phase} ${rep}/${reps}: ${c.name}`);
      const r = await attempt(results, `${phase} ${c.name} #${rep}`, () => alone(ctx, c, () => fn(c)));
      (results[phase][c.name] ??= []).push(r);
    }
}

async function warmUp(ctx, results, running) {
  for (const c of Object.values(running))
    await attempt(results, `warm-up ${c.name}`, () => alone(ctx, c, () => saturation(ctx, c, 2)));
}

// A perf profile of pid while load() runs; returns the top symbols.
async function profile(ctx, label, pid, seconds, load) {
  const file = path.join(ctx.tmp, `perf-${label}.data`);
  const rec = run(`perf record ${label}`, ['perf', 'record', '-F', '999', '-p', String(pid), '-o', file,
                                           '--', 'sleep', String(seconds)],
                  { cpu: ctx.cpu.client, timeoutMs: (seconds + 30) * 1000 });
  await load();
  const r = await rec;
  if (r.code !== 0)
    throw new Error(`perf record failed: ${r.stderr.trim()}`);
  const rep = await run(`perf report ${label}`, ['perf', 'report', '-i', file, '--stdio', '--no-children',
                                                 '--sort', 'dso,symbol', '--percent-limit', '0.7'],
                        { timeoutMs: 120000 });
  const lines = rep.stdout.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  return { top: lines.slice(0, 30).map((l) => l.trim()) };
}

async function scrapeMetrics(admin) {
  try {
    const res = await fetch(`http://${admin}/metrics`);
    const text = await res.text();
    const series = text.split('\n').filter((l) => l.startsWith('tollgate_'));
    return { status: res.status, series: series.length, sample: series.filter((l) => /requests_total|spans|dropped/.test(l)).slice(0, 12) };
  } catch (err) {
    return { error: err.message };
  }
}

/* The exports the OTLP sink logged (otlp-sink.conf.in: Content-Type and
 * Content-Length per line): how many, of which Content-Type, and the mean
 * size of their bodies in bytes. */
function spanExportsOf(file) {
  let lines;
  try {
    lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return { spanExports: null };
  }
  const types = {};
  let bytes = 0;
  for (const line of lines) {
    const [type, length] = line.split(' ');
    types[type] = (types[type] ?? 0) + 1;
    bytes += Number(length) || 0;
  }
  return {
    spanExports: lines.length, spanExportTypes: types,
    spanExportMeanBytes: lines.length > 0 ? Math.round(bytes / lines.length) : null,
  };
}

async function rewriteReport(opts) {
  const results = JSON.parse(fs.readFileSync(opts.report, 'utf8'));
  const outDir = path.resolve(opts.out ?? path.dirname(opts.report));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-'));

  results.crashes ??= [];
  fs.mkdirSync(outDir, { recursive: true });
  await writeReport(results, { outDir, benchDir, tmp });
  log(`wrote ${path.join(outDir, 'RESULTS.md')} from ${opts.report}`);
}

// Whether this process may run threads under SCHED_FIFO: { on, reason }.
function realtimeAllowed() {
  const r = spawnSync('chrt', ['-f', String(REALTIME_PRIORITY), 'true'], { encoding: 'utf8' });
  if (r.status === 0)
    return { on: true, reason: null };
  return { on: false, reason: (r.stderr || r.error?.message || `chrt exit code ${r.status}`).trim() };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.report)
    return rewriteReport(opts);
  const p = PROFILES[opts.profileName];
  const outDir = path.resolve(opts.out ?? p.out);
  const names = Object.keys(contenders).filter((n) => !opts.only || opts.only.includes(n) || n === 'direct' || n === 'nginx');
  const t0 = Date.now();
  setNiceness(opts.nice);
  const idle = opts.deepIdle ? { held: false, reason: 'not asked for (--deep-idle)', release() {} }
                             : holdPollingIdle();
  log(idle.held ? 'idle cores kept polling for the run' : `idle cores may halt: ${idle.reason}`);
  const realtime = opts.noRealtime ? { on: false, reason: 'not asked for (--no-realtime)' }
                                   : realtimeAllowed();
  log(realtime.on ? 'stream phases run under SCHED_FIFO' : `stream phases at the normal policy: ${realtime.reason}`);

  // A proxy needs two sockets per open stream, its client side and its
  // upstream side, so the open-files limit caps the memory test. Where it
  // cannot be raised (no CAP_SYS_RESOURCE), the test runs with fewer
  // streams and RESULTS.md says so. The 600 spare descriptors leave nginx
  // room for its listening sockets, logs and idle upstream connections:
  // with fewer, it closes client connections to make room.
  const files = fdLimit();
  const memoryStreams = Math.min(p.memoryStreams, Math.floor((files - 600) / 200) * 100);

  const ctx = {
    benchDir, topDir,
    tmp: fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-')),
    bins: locateBinaries(),
    cpu: { client: 0, server: os.cpus().length > 1 ? 1 : 0 },
    wrkConnections: 64,
    warmup: 1,
    // Two events a second per stream: enough to keep 1,000 streams busy,
    // while the mock and the load generator, which share one core, stay
    // far from saturating it (at 20 events a second per stream their
    // queueing alone adds milliseconds to every event, proxy or not).
    streams: { warmup: p.streamWarmup, connectRate: 1000, eventDelay: '500ms', events: 10 },
    memory: { seconds: p.memorySeconds, connectRate: 4000, eventDelay: '1s', events: 30 },
    fdLimit: files,
    realtime: realtime.on,
  };
  const results = {
    mode: opts.profileName, startedAt: new Date().toISOString(),
    params: {
      ...p, out: undefined, cpu: ctx.cpu, wrkConnections: ctx.wrkConnections, warmup: ctx.warmup,
      streams: ctx.streams, memory: ctx.memory, memoryStreams,
    },
    machine: machineInfo(), versions: versions(ctx.bins), contenders: {}, errors: [], crashes: [],
    fdLimit: files, memoryStreams, nice: opts.nice, pollingIdle: { held: idle.held, reason: idle.reason },
    realtime,
  };
  log(`writing to ${outDir}; scratch files in ${ctx.tmp}`);

  ctx.mock = await startMock(ctx);
  ctx.sink = await startSink(ctx);
  ctx.tollgate = await tollgateConfig(ctx);
  results.tollgate = { features: ctx.tollgate.features, config: ctx.tollgate.full.config,
                       plainConfig: ctx.tollgate.plain.config,
                       promptsConfig: ctx.tollgate.prompts?.config ?? null };
  const running = await startContenders(ctx, results, names);
  ctx.running = running;

  try {
    await warmUp(ctx, results, running);
    await interleave(ctx, results, running, 'saturation', p.reps, (c) => saturation(ctx, c, p.saturationSeconds));

    const nginxRps = median((results.saturation.nginx ?? []).map((r) => r.rps));
    results.halfRate = nginxRps ? Math.round(nginxRps / 2) : null;
    if (results.halfRate) {
      const sustainable = Object.fromEntries(Object.values(running).filter((c) => {
        const best = Math.max(...(results.saturation[c.name] ?? []).map((r) => r.rps ?? 0));
        return c.name !== 'portkey' || best >= results.halfRate * 1.1;
      }).map((c) => [c.name, c]));
      results.fixedRateSkipped = Object.keys(running).filter((n) => !(n in sustainable));
      await interleave(ctx, results, sustainable, 'fixedRate', p.reps, (c) => fixedRate(ctx, c, results.halfRate, p.rateSeconds));
    }

    await interleave(ctx, results, running, 'streams', p.reps, (c) => streams(ctx, c, p.streamCount, p.streamSeconds));

    if (running.tollgate && running.tollgate.alive()) {
      results.metrics = await scrapeMetrics(running.tollgate.admin);
      Object.assign(results, spanExportsOf(path.join(ctx.tmp, 'otlp-sink', 'access.log')));
    }
    if (p.profile && !opts.noProfile) {
      results.profiles = {};
      for (const name of ['tollgate', 'tollgate-plain'].filter((n) => running[n])) {
        const tg = await ensureAlive(ctx, results, running, name, 'profiles');
        if (!tg)
          continue;
        results.profiles[`${name} at saturation`] = await attempt(results, `profile ${name} saturation`, () =>
          alone(ctx, tg, () => profile(ctx, `${name}-saturation`, tg.pid, 8, () => saturation(ctx, tg, 8))));
        results.profiles[`${name} under ${p.streamCount} streams`] = await attempt(results, `profile ${name} streams`, () =>
          alone(ctx, tg, () => profile(ctx, `${name}-streams`, tg.pid, 8, () => streams(ctx, tg, p.streamCount, 10))));
      }
    }
  } finally {
    for (const c of Object.values(running))
      await c.stop();
  }

  results.memory = {};
  for (const name of names.filter((n) => n !== 'direct' && !onlyPhases[n] && results.contenders[n]?.started)) {
    log(`memory: ${name} with ${memoryStreams} streams`);
    results.memory[name] = await attempt(results, `memory ${name}`, () => memory(ctx, () => contenders[name](ctx), memoryStreams));
  }

  await ctx.sink.stop();
  await ctx.mock.stop();
  idle.release();
  results.machine.loadAfter = os.loadavg();
  results.finishedAt = new Date().toISOString();
  results.minutes = +((Date.now() - t0) / 60000).toFixed(1);
  results.commands = commands;

  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 1) + '\n');
  await writeReport(results, { outDir, benchDir, tmp: ctx.tmp });
  log(`done in ${results.minutes} min: ${path.join(outDir, 'RESULTS.md')}`);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
  process.on(sig, () => {
    log(`${sig}: stopping the servers`);
    stopAll().finally(() => process.exit(130));
  });

main().catch(async (err) => {
  log(`failed: ${err.stack ?? err.message}`);
  await stopAll();
  process.exit(1);
});
