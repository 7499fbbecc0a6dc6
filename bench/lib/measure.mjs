// One measurement each: wrk at saturation, the load generator at a fixed
// rate, N concurrent streams, and memory with N streams open. Each returns
// plain numbers (latencies in microseconds) plus the CPU use seen while it
// ran, so bench/run can show which core was the bottleneck.

import fs from 'node:fs';
import path from 'node:path';

import { cpuSeconds, rssKiB, run, setRealtime, sleep } from './proc.mjs';

const CHAT_PATH = '/v1/chat/completions';

// Busy and total jiffies of each CPU from /proc/stat.
function cpuTimes() {
  const out = {};
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = line.match(/^cpu(\d+) (.*)$/);
    if (!m)
      continue;
    const v = m[2].trim().split(/\s+/).map(Number);
    const idle = v[3] + v[4];
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    out[m[1]] = { busy: total - idle, total };
  }
  return out;
}

// Start a CPU-use observation of the processes in pids (name -> pid) and
// of every core. The returned function ends it, given the CPU seconds the
// load generator used, and returns percentages of one core per process and
// per core. It also returns "other": the busy time of all cores that
// neither these processes nor the generator spent, which is other programs
// on the machine and interrupt work not charged to any process.
function observeCpu(pids) {
  const t0 = process.hrtime.bigint();
  const cores0 = cpuTimes();
  const proc0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid ? cpuSeconds(pid) : null]));

  return (generatorSeconds) => {
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cores1 = cpuTimes();
    const out = { cores: {}, processes: {} };
    let busy = 0, ours = generatorSeconds ?? 0;

    for (const [cpu, c] of Object.entries(cores1)) {
      const d = c.total - cores0[cpu].total;
      out.cores[cpu] = d > 0 ? Math.round((100 * (c.busy - cores0[cpu].busy)) / d) : null;
      busy += d > 0 ? (c.busy - cores0[cpu].busy) / d : 0;
    }
    for (const [k, pid] of Object.entries(pids)) {
      const now = pid ? cpuSeconds(pid) : null;
      const used = now !== null && proc0[k] !== null ? now - proc0[k] : null;
      out.processes[k] = used !== null ? Math.round((100 * used) / seconds) : null;
      ours += used ?? 0;
    }
    out.processes.generator = generatorSeconds !== null ? Math.round((100 * generatorSeconds) / seconds) : null;
    out.other = Math.max(0, Math.round(100 * (busy - ours / seconds)));
    return out;
  };
}

function watched(ctx, contender) {
  return { contender: contender.pid, mock: ctx.mock.pid, sink: ctx.sink.pid };
}

// wrk at saturation: -c connections, one thread, on the client core.
export async function saturation(ctx, contender, seconds) {
  const argv = ['wrk', '-t1', `-c${ctx.wrkConnections}`, `-d${seconds}s`, '--latency', '--timeout', '10s',
                '-s', path.join(ctx.benchDir, 'post.lua'), `http://${contender.address}${CHAT_PATH}`];
  const env = { BENCH_MODEL: 'gpt-4o', BENCH_HEADERS: contender.headers.join('\n') };
  const done = observeCpu(watched(ctx, contender));
  const r = await run(`wrk ${contender.name}`, argv, { cpu: ctx.cpu.client, env, timeoutMs: (seconds + 30) * 1000 });
  const cpu = done(r.cpuSeconds);
  const rps = r.stdout.match(/Requests\/sec:\s+([\d.]+)/);
  const json = r.stdout.match(/^WRK_JSON (.*)$/m);

  if (r.code !== 0 || !rps || !json)
    throw new Error(`wrk against ${contender.name} failed (code ${r.code}): ${r.stderr || r.stdout}`);
  const w = JSON.parse(json[1]);
  return { rps: Number(rps[1]), latency: w, errors: w.errors + w.non_2xx + w.timeouts, cpu };
}

async function loadgen(ctx, label, args, seconds, onLine, realtime = false) {
  const argv = [ctx.bins.loadgen, ...args];
  const r = await run(label, argv, { cpu: ctx.cpu.client, timeoutMs: (seconds + 60) * 1000, onLine, realtime });
  const last = r.stdout.trim().split('\n').pop();

  if (r.code !== 0 || !last?.startsWith('{'))
    throw new Error(`${label} failed (code ${r.code}, signal ${r.signal}): ${r.stderr.trim()}`);
  return JSON.parse(last);
}

function headerArgs(contender) {
  return contender.headers.flatMap((h) => ['--header', h]);
}

// Non-streaming requests at a fixed rate, open loop.
export async function fixedRate(ctx, contender, rate, seconds) {
  const args = ['rate', '--target', contender.address, '--rate', String(Math.round(rate)),
                '--connections', String(ctx.wrkConnections), '--duration', String(seconds),
                '--warmup', String(ctx.warmup), '--model', 'gpt-4o', ...headerArgs(contender)];
  const done = observeCpu(watched(ctx, contender));
  const r = await loadgen(ctx, `loadgen rate ${contender.name}`, args, seconds);
  return { ...r, cpu: done(r.cpu_s) };
}

function streamModel(eventDelay, events) {
  return `gpt-4o@stamp=1;events=${events};event_delay=${eventDelay}`;
}

// N concurrent streams for `seconds`, each restarted when it ends.
export async function streams(ctx, contender, n, seconds) {
  const s = ctx.streams;
  const args = ['stream', '--target', contender.address, '--streams', String(n), '--duration', String(seconds),
                '--warmup', String(s.warmup), '--connect-rate', String(s.connectRate),
                '--model', streamModel(s.eventDelay, s.events), ...headerArgs(contender)];
  const pids = [ctx.mock.pid, contender.pid].filter((pid) => pid !== null);
  const realtime = ctx.realtime && setRealtime(pids, true) === null;
  const done = observeCpu(watched(ctx, contender));
  try {
    const r = await loadgen(ctx, `loadgen stream ${contender.name}`, args, seconds, undefined, realtime);
    return { ...r, cpu: done(r.cpu_s), realtime };
  } finally {
    if (realtime)
      setRealtime(pids, false);
  }
}

// Memory per open stream: a fresh contender process, its RSS after a short
// warm-up, then its RSS once n streams are all open (the load generator
// prints "open N"), sampled a few times while they stay open.
export async function memory(ctx, startContender, n) {
  const m = ctx.memory;
  const contender = await startContender();

  try {
    const warm = ['stream', '--target', contender.address, '--streams', '10', '--duration', '1.5',
                  '--warmup', '0.5', '--model', streamModel('10ms', 5), ...headerArgs(contender)];
    await loadgen(ctx, `loadgen warm-up ${contender.name}`, warm, 2);
    await sleep(500);
    const before = rssKiB(contender.pid);

    const samples = [];
    let openAt = null;
    const timer = setInterval(() => samples.push({ t: Date.now(), rss: rssKiB(contender.pid) }), 250);
    const args = ['stream', '--target', contender.address, '--streams', String(n), '--duration', String(m.seconds),
                  '--warmup', String(m.seconds / 2), '--connect-rate', String(m.connectRate),
                  '--model', streamModel(m.eventDelay, m.events), ...headerArgs(contender)];
    const r = await loadgen(ctx, `loadgen memory ${contender.name}`, args, m.seconds, (line) => {
      if (line.startsWith('open '))
        openAt = Date.now();
    });
    clearInterval(timer);

    // The largest RSS seen from "open N" to the end; without "open N", the
    // largest seen at all, with the count of streams that did open.
    const held = samples.filter((x) => x.rss !== null && (openAt === null || x.t >= openAt));
    const during = held.length ? Math.max(...held.map((x) => x.rss)) : null;
    return {
      streams: n, opened: r.streams_open, allOpen: openAt !== null, before, during,
      perStreamKiB: during !== null && before !== null ? (during - before) / n : null,
      generator: r,
    };
  } finally {
    await contender.stop();
  }
}
