// Child processes of bench/run: started pinned to a CPU with taskset,
// stopped by their own pid, observed through /proc. Every command line is
// kept in `commands` for RESULTS.md.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';

export const commands = [];

const live = new Set();         // processes from start() still running

const CLOCK_TICKS = 100;        // USER_HZ: /proc/PID/stat counts in 1/100 s

function quote(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

// Render a command as a shell line, with the environment it was given.
export function commandLine(argv, env = {}) {
  const vars = Object.entries(env).map(([k, v]) => `${k}=${quote(String(v))}`);
  return [...vars, ...argv.map(quote)].join(' ');
}

let niceness = null;            // --nice: priority of every command

// Run every later command at this nice value (negative: ahead of other
// programs on a shared machine), or at the default with null.
export function setNiceness(n) {
  niceness = n;
}

// The SCHED_FIFO priority of the stream phase: above every ordinary
// thread, and below the kernel's per-CPU threads at priority 99.
export const REALTIME_PRIORITY = 50;

function withCpu(argv, cpu, realtime = false) {
  const pinned = cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv];
  const niced = niceness === null ? pinned : ['nice', '-n', String(niceness), ...pinned];
  return realtime ? ['chrt', '-f', String(REALTIME_PRIORITY), ...niced] : niced;
}

// Move every thread of each running process in pids to SCHED_FIFO at
// REALTIME_PRIORITY (on) or back to SCHED_OTHER. Returns the first error
// of chrt, or null.
export function setRealtime(pids, on) {
  for (const pid of pids) {
    const args = on ? ['-a', '-f', '-p', String(REALTIME_PRIORITY), String(pid)]
      : ['-a', '-o', '-p', '0', String(pid)];
    const r = spawnSync('chrt', args, { encoding: 'utf8' });
    if (r.status !== 0)
      return `chrt ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`;
  }
  return null;
}

function record(label, argv, env) {
  commands.push({ label, line: commandLine(argv, env) });
}

// Start a long-running process. Its stdout and stderr go to logFile; lines
// of stdout are also passed to onLine. Returns {pid, child, exited}.
//
// Each process gets a session of its own (detached), so that pause() is
// safe. In bench/run's process group, a paused process would get SIGHUP
// (which kills Portkey and reloads nginx and tollgate) as soon as the
// group became orphaned, for example when the shell that started bench/run
// in the background exits. bench/run stops them on an interrupt itself.
export function start(label, argv, { cpu, env = {}, cwd, logFile, onLine } = {}) {
  const full = withCpu(argv, cpu);
  record(label, full, env);

  const child = spawn(full[0], full.slice(1), {
    cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  // Append, so a restarted process does not erase how the last one ended.
  const log = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const proc = { label, pid: child.pid, child, exited };
  proc.alive = () => child.exitCode === null && child.signalCode === null;
  proc.status = () => (child.signalCode ? `signal ${child.signalCode}` : `exit code ${child.exitCode}`);

  child.stderr.on('data', (d) => log?.write(d));
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    log?.write(line + '\n');
    onLine?.(line);
  });
  child.on('error', (err) => log?.write(`spawn failed: ${err.message}\n`));
  live.add(proc);
  exited.then(() => live.delete(proc));
  return proc;
}

// Stop every process start() started that is still running, as on an
// interrupt or a failure, so none outlives bench/run.
export async function stopAll() {
  await Promise.all([...live].map((p) => stop(p, 2000)));
}

// Run a command to completion, killing it after timeoutMs. Resolves to
// {code, signal, stdout, stderr, cpuSeconds}; onLine sees each stdout line
// as it comes.
//
// The child's CPU time is sampled every 200 ms while it runs; cpuSeconds in
// the result is the last sample, short of the true total by at most that.
export function run(label, argv, { cpu, env = {}, cwd, timeoutMs = 120000, onLine, realtime = false } = {}) {
  const full = withCpu(argv, cpu, realtime);
  record(label, full, env);

  return new Promise((resolve) => {
    const child = spawn(full[0], full.slice(1), {
      cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '', used = null;
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const sampler = setInterval(() => { used = cpuSeconds(child.pid) ?? used; }, 200);

    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      stdout += line + '\n';
      onLine?.(line, child.pid);
    });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', (err) => { stderr += `spawn failed: ${err.message}\n`; });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(sampler);
      resolve({ code, signal, stdout, stderr, cpuSeconds: used });
    });
  });
}

// Stop a process started with start(): SIGTERM, then SIGKILL after graceMs.
// A paused process (see pause()) is continued first, or the SIGTERM would
// wait behind its stop until the SIGKILL.
export async function stop(proc, graceMs = 5000) {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null)
    return;
  signalTree(proc.pid, 'SIGCONT');
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

// Resolve when a line of the process's stdout matches re; reject on exit
// or after timeoutMs.
export function waitForLine(proc, re, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.child.stdout });
    const timer = setTimeout(() => reject(new Error(`${proc.label}: no line matching ${re} within ${timeoutMs} ms`)), timeoutMs);
    rl.on('line', (line) => {
      const m = line.match(re);
      if (m) {
        clearTimeout(timer);
        rl.close();
        resolve(m);
      }
    });
    proc.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${proc.label} exited (code ${code}, signal ${signal}) before it was ready`));
    });
  });
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

// Resolve once 127.0.0.1:port accepts a connection.
export async function waitForPort(proc, port, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let exited = false;

  proc.exited.then(() => { exited = true; });
  while (Date.now() < deadline) {
    if (exited)
      throw new Error(`${proc.label} exited before it listened on port ${port}`);
    if (await tryConnect(port))
      return;
    await sleep(50);
  }
  throw new Error(`${proc.label} did not listen on port ${port} within ${timeoutMs} ms`);
}

// A loopback port that is free now: the kernel picks it, we release it.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Resident set size of a process in KiB (VmRSS), or null once it is gone.
export function rssKiB(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// CPU time of a process, all threads, user plus system, in seconds.
export function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;  // utime, stime
  } catch {
    return null;
  }
}

// The pids of a process's children (nginx's worker under its master).
export function childrenOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

// Send sig to pid and to its children (nginx's worker under its master).
// A process that is gone already is skipped: the caller checks liveness.
export function signalTree(pid, sig) {
  for (const p of [pid, ...childrenOf(pid)]) {
    try {
      process.kill(p, sig);
    } catch {
      // The process is gone; the caller that started it reports its exit.
    }
  }
}

// Pause a process tree with SIGSTOP, or continue it with SIGCONT. A paused
// contender takes no CPU at all, not even for its idle timers and garbage
// collection, so it cannot delay the one being measured on the same core.
export function pause(pid) {
  signalTree(pid, 'SIGSTOP');
}

export function resume(pid) {
  signalTree(pid, 'SIGCONT');
}
