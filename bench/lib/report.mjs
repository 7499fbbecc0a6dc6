// RESULTS.md and latency.png from the results of one bench/run.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { medianRun, ratio, summary } from './stats.mjs';

const PERCENTILES = ['p50', 'p75', 'p90', 'p95', 'p99', 'p99.9', 'p99.99'];

// ---- formatting -----------------------------------------------------------

function num(x, digits = 0) {
  if (x === null || x === undefined || !Number.isFinite(x))
    return 'n/a';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function us(x) {
  if (x === null || x === undefined || !Number.isFinite(x))
    return 'n/a';
  if (Math.abs(x) >= 10000)
    return `${num(x / 1000, 1)} ms`;
  return `${num(x, 0)} µs`;
}

function times(x) {
  return x === null || !Number.isFinite(x) ? 'n/a' : `${num(x, 2)}x`;
}

// "median (min to max)" of a summary, formatted with f.
function spread(s, f) {
  if (s.median === null)
    return 'n/a';
  return s.n > 1 ? `${f(s.median)} (${f(s.min)} to ${f(s.max)})` : f(s.median);
}

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function verdict(met) {
  if (met === null)
    return 'not measured';
  return met ? '**met**' : '**missed**';
}

// ---- extracting numbers ------------------------------------------------------

function okRuns(runs) {
  return (runs ?? []).filter((r) => r && !r.error);
}

function stat(results, phase, name, get) {
  return summary(okRuns(results[phase]?.[name]).map(get));
}

function med(results, phase, name, get) {
  return stat(results, phase, name, get).median;
}

function added(results, phase, name, get) {
  const a = med(results, phase, name, get), d = med(results, phase, 'direct', get);
  return a === null || d === null ? null : a - d;
}

// The targets for contender tg, each with what was measured and whether
// it was met.
export function evaluateTargets(r, tg) {
  const rps = (n) => med(r, 'saturation', n, (x) => x.rps);
  const satP99 = (n) => med(r, 'saturation', n, (x) => x.latency.p99);
  const rateP99 = (x) => x.latency_us.p99;
  const eventP99 = (x) => (x.token_latency_us ?? x.event_latency_us).p99;
  const ttftP99 = (x) => x.ttft_us.p99;
  const out = [];

  const tput = ratio(rps(tg), rps('nginx'));
  out.push({
    target: 'Non-streaming throughput at least 0.9x nginx (aim 1.0x)',
    measured: `${times(tput)} (${num(rps(tg))} against ${num(rps('nginx'))} requests/s)`,
    met: tput === null ? null : tput >= 0.9,
  });

  const addTg = added(r, 'fixedRate', tg, rateP99), addNg = added(r, 'fixedRate', 'nginx', rateP99);
  const overloaded = okRuns(r.fixedRate?.[tg]).some((x) => x.overloaded);
  // When nginx adds nothing measurable there is no ratio; then only a
  // contender that adds nothing either meets the target.
  const addRatio = addNg !== null && addNg > 0 ? ratio(addTg, addNg) : null;
  let addMet = addRatio === null ? null : addRatio <= 1.5;
  if (addRatio === null && addTg !== null && addNg !== null)
    addMet = addTg <= 0;
  out.push({
    target: `Added p99 at half of nginx's maximum rate (${num(r.halfRate)} requests/s) within 1.5x nginx's`,
    measured: overloaded ? 'could not keep up with the rate'
      : `${times(addRatio)} (adds ${us(addTg)}; nginx adds ${us(addNg)})`,
    met: overloaded ? false : addMet,
  });

  const evTg = added(r, 'streams', tg, eventP99), evNg = added(r, 'streams', 'nginx', eventP99);
  out.push({
    target: `Added per-event latency p99 under 100 µs with ${num(r.params.streamCount)} streams (events with tokens)`,
    measured: `${us(evTg)} (nginx: ${us(evNg)})`,
    met: evTg === null ? null : evTg < 100,
  });

  const ttTg = added(r, 'streams', tg, ttftP99), ttNg = added(r, 'streams', 'nginx', ttftP99);
  out.push({
    target: 'Added time to first token p99 under 200 µs',
    measured: `${us(ttTg)} (nginx: ${us(ttNg)})`,
    met: ttTg === null ? null : ttTg < 200,
  });

  const memTg = r.memory?.[tg], memNg = r.memory?.nginx;
  const perTg = memTg?.allOpen ? memTg.perStreamKiB : null;
  out.push({
    target: `Under 32 KiB of RSS per open stream with 10,000 streams (measured with ${num(r.params.memoryStreams)})`,
    measured: `${num(perTg, 1)} KiB (nginx: ${num(memNg?.allOpen ? memNg.perStreamKiB : null, 1)} KiB)`,
    met: perTg === null ? null : perTg < 32,
  });

  const pk = ratio(rps(tg), rps('portkey'));
  const p99ok = satP99(tg) !== null && satP99('portkey') !== null ? satP99(tg) <= satP99('portkey') : null;
  out.push({
    target: "At least 10x Portkey's throughput at equal or better p99",
    measured: `${times(pk)} (${num(rps(tg))} against ${num(rps('portkey'))} requests/s; `
      + `p99 at saturation ${us(satP99(tg))} against ${us(satP99('portkey'))})`,
    met: pk === null || p99ok === null ? null : pk >= 10 && p99ok,
  });
  return out;
}

function targetsSection(r) {
  const full = evaluateTargets(r, 'tollgate'), plain = evaluateTargets(r, 'tollgate-plain');
  return table(['target', 'tollgate, as users run it', 'result', 'tollgate-plain', 'result'],
               full.map((t, i) => [t.target, t.measured, verdict(t.met), plain[i].measured, verdict(plain[i].met)]));
}

// ---- the chart ---------------------------------------------------------------

// Write one data file per panel and contender: "nines latency_us" lines,
// where nines = -log10(1 - p) puts p50, p90, p99, ... evenly on the x axis.
function writeChartData(r, dir) {
  const panels = [
    { key: 'saturation', phase: 'saturation', get: (x) => x.latency, pick: (x) => x.rps },
    { key: 'rate', phase: 'fixedRate', get: (x) => x.latency_us, pick: (x) => x.latency_us.p99 },
    { key: 'events', phase: 'streams', get: (x) => x.token_latency_us ?? x.event_latency_us,
      pick: (x) => (x.token_latency_us ?? x.event_latency_us).p99 },
    { key: 'ttft', phase: 'streams', get: (x) => x.ttft_us, pick: (x) => x.ttft_us.p99 },
  ];
  const names = {};

  for (const p of panels)
    for (const [name, runs] of Object.entries(r[p.phase] ?? {})) {
      const run = medianRun(okRuns(runs), p.pick);
      if (!run)
        continue;
      const dist = p.get(run);
      const lines = PERCENTILES.filter((k) => Number.isFinite(dist[k]) && dist[k] > 0)
        .map((k) => `${(-Math.log10(1 - Number(k.slice(1)) / 100)).toFixed(4)} ${dist[k]}`);
      fs.writeFileSync(path.join(dir, `${p.key}-${name}.dat`), lines.join('\n') + '\n');
      (names[p.key] ??= []).push(name);
    }
  return names;
}

function drawChart(r, benchDir, outDir, tmp) {
  const dir = path.join(tmp, 'chart');
  fs.mkdirSync(dir, { recursive: true });
  const names = writeChartData(r, dir);
  const out = path.join(outDir, 'latency.png');
  const list = (key) => `'${(names[key] ?? []).join(' ')}'`;
  const vars = `datadir='${dir}'; out='${out}'; halfrate='${num(r.halfRate)}'; `
    + `streams='${num(r.params.streamCount)}'; names_saturation=${list('saturation')}; `
    + `names_rate=${list('rate')}; names_events=${list('events')}; names_ttft=${list('ttft')}`;

  execFileSync('gnuplot', ['-e', vars, path.join(benchDir, 'latency.gp')], { stdio: 'inherit' });
  return out;
}

// ---- sections ------------------------------------------------------------------

function pct(v) {
  return v === null || v === undefined ? 'n/a' : `${v}%`;
}

// CPU use during a measurement, in percent of one core: the contender, the
// mock, the load generator, and everything else on the machine.
const CPU_HEADER = ['CPU: contender', 'mock', 'generator', 'other'];

// Contender CPU time per unit of work (request or event) in µs: robust to
// background load, which slows a run but adds little to this.
function cpuPer(cpu, perSecond) {
  const c = cpu?.processes?.contender;
  if (c === null || c === undefined || !perSecond)
    return 'n/a';
  return `${num((c / 100 / perSecond) * 1e6, 1)} µs`;
}

function cpuCells(cpu) {
  const p = cpu?.processes ?? {};
  return [pct(p.contender), pct(p.mock), pct(p.generator), pct(cpu?.other)];
}

function saturationSection(r) {
  const nginx = med(r, 'saturation', 'nginx', (x) => x.rps);
  const rows = Object.keys(r.saturation ?? {}).map((n) => {
    const last = okRuns(r.saturation[n]).at(-1);
    return [
      n,
      spread(stat(r, 'saturation', n, (x) => x.rps), (x) => num(x)),
      times(ratio(med(r, 'saturation', n, (x) => x.rps), nginx)),
      us(med(r, 'saturation', n, (x) => x.latency.p50)),
      us(med(r, 'saturation', n, (x) => x.latency.p99)),
      num(med(r, 'saturation', n, (x) => x.errors)),
      cpuPer(last?.cpu, last?.rps),
      ...cpuCells(last?.cpu),
    ];
  });
  return table(['contender', 'requests/s, median (min to max)', 'vs nginx', 'p50', 'p99', 'errors',
                'contender CPU per request', ...CPU_HEADER], rows);
}

function rateSection(r) {
  const rows = Object.keys(r.fixedRate ?? {}).map((n) => {
    const last = okRuns(r.fixedRate[n]).at(-1);
    const p99 = (x) => x.latency_us.p99;
    const overloaded = okRuns(r.fixedRate[n]).filter((x) => x.overloaded).length;
    return [
      n,
      num(med(r, 'fixedRate', n, (x) => x.achieved_rps))
        + (overloaded ? ` (overloaded in ${overloaded} of ${okRuns(r.fixedRate[n]).length} runs)` : ''),
      us(med(r, 'fixedRate', n, (x) => x.latency_us.p50)),
      spread(stat(r, 'fixedRate', n, p99), us),
      us(med(r, 'fixedRate', n, (x) => x.latency_us['p99.9'])),
      n === 'direct' ? '(baseline)' : us(added(r, 'fixedRate', n, p99)),
      us(med(r, 'fixedRate', n, (x) => x.service_latency_us.p99)),
      cpuPer(last?.cpu, last?.achieved_rps),
      ...cpuCells(last?.cpu),
    ];
  });
  return table(['contender', 'achieved requests/s', 'p50', 'p99, median (min to max)', 'p99.9', 'added p99',
                'p99 from actual send', 'contender CPU per request', ...CPU_HEADER], rows);
}

function streamsSection(r) {
  const tokens = (x) => x.token_latency_us ?? x.event_latency_us;
  const rows = Object.keys(r.streams ?? {}).map((n) => {
    const last = okRuns(r.streams[n]).at(-1);
    const tk = (x) => tokens(x).p99, ev = (x) => x.event_latency_us.p99, tt = (x) => x.ttft_us.p99;
    const keptAliveTt = (x) => x.ttft_kept_alive_us?.p99;
    const errors = (x) => x.counters.connect_errors + x.counters.status_errors + x.counters.eof_errors
      + x.counters.parse_errors;
    return [
      n,
      num(med(r, 'streams', n, (x) => x.events_per_s)),
      us(med(r, 'streams', n, (x) => tokens(x).p50)),
      spread(stat(r, 'streams', n, tk), us),
      n === 'direct' ? '(baseline)' : us(added(r, 'streams', n, tk)),
      us(med(r, 'streams', n, ev)),
      us(med(r, 'streams', n, (x) => x.ttft_us.p50)),
      spread(stat(r, 'streams', n, tt), us),
      n === 'direct' ? '(baseline)' : us(added(r, 'streams', n, tt)),
      spread(stat(r, 'streams', n, keptAliveTt), us),
      n === 'direct' ? '(baseline)' : us(added(r, 'streams', n, keptAliveTt)),
      num(med(r, 'streams', n, errors)),
      cpuPer(last?.cpu, last?.events_per_s),
      ...cpuCells(last?.cpu),
    ];
  });
  return table(['contender', 'events/s', 'token p50', 'token p99, median (min to max)', 'added token p99',
                'p99 of all events', 'TTFT p50', 'TTFT p99, median (min to max)', 'added TTFT p99',
                'TTFT p99 on kept-alive connections', 'added', 'errors',
                'contender CPU per event', ...CPU_HEADER], rows);
}

function memorySection(r) {
  const rows = Object.entries(r.memory ?? {}).map(([n, m]) => {
    if (m.error)
      return [n, 'failed', '', '', '', m.error];
    return [
      n, `${num(m.opened)} of ${num(m.streams)}`, `${num(m.before)} KiB`, `${num(m.during)} KiB`,
      m.allOpen ? `${num(m.perStreamKiB, 1)} KiB` : 'n/a (not all open)',
      `event p99 ${us(m.generator?.event_latency_us?.p99)}`,
    ];
  });
  return table(['contender', 'streams open at once', 'RSS before', 'RSS with streams open', 'per stream', 'note'], rows);
}

function featuresSection(r) {
  const rows = (r.tollgate?.features ?? []).map((f) => [
    f.name, f.what, f.accepted ? 'on' : `off: \`tollgate -t\` rejected it (${f.message.split('\n')[0]})`,
  ]);
  rows.unshift(['metrics', 'Prometheus metrics on the admin listener (always on)',
                r.metrics?.series ? `on: ${r.metrics.series} series at /metrics after the run` : `not served (${r.metrics?.error ?? `status ${r.metrics?.status}`})`]);
  return table(['feature', 'what', 'state in this run'], rows);
}

/* The OTLP sink's count of exports, with the encoding it received when the
 * run logged it (runs before the protobuf export logged only the count). */
function spanExportsLine(r) {
  if (r.spanExports === undefined || r.spanExports === null)
    return '';
  const types = Object.entries(r.spanExportTypes ?? {});
  const names = { 'application/x-protobuf': 'OTLP/HTTP protobuf', 'application/json': 'OTLP/HTTP JSON' };
  const encoding = types.length === 0 ? ''
    : `, ${types.map(([t, n]) => `${num(n)} as ${names[t] ?? t} (Content-Type ${t})`).join(' and ')}`
      + (r.spanExportMeanBytes ? `, ${num(r.spanExportMeanBytes)} bytes each on average` : '');
  return `\nThe OTLP sink received ${num(r.spanExports)} export requests during the run${encoding}.\n`;
}

function profileSection(r) {
  if (!r.profiles)
    return 'Not profiled in this run (quick mode or --no-profile).';
  const intro = 'Self time by DSO and symbol (`perf record -F 999` for 8 s, entries from 0.7%), '
    + 'recorded after the measurements above, in separate runs.';
  return intro + '\n\n' + Object.entries(r.profiles).map(([k, v]) => {
    if (v.error)
      return `${k}: failed: ${v.error}`;
    return `${k}:\n\n\`\`\`\n${v.top.join('\n')}\n\`\`\``;
  }).join('\n\n');
}

function rawSection(r) {
  const parts = [];
  for (const phase of ['saturation', 'fixedRate', 'streams'])
    for (const [n, runs] of Object.entries(r[phase] ?? {}))
      runs.forEach((x, i) => {
        if (x.error) {
          parts.push(`${phase} ${n} #${i + 1}: failed: ${x.error}`);
          return;
        }
        const views = {
          saturation: [x.latency, `${num(x.rps)} requests/s`],
          fixedRate: [x.latency_us, `${num(x.achieved_rps)} requests/s`],
          streams: [x.event_latency_us, `${num(x.events_per_s)} events/s, TTFT `
            + PERCENTILES.map((k) => `${k} ${num(x.ttft_us?.[k], 1)}`).join(' ')],
        };
        const [dist, head] = views[phase];
        parts.push(`${phase} ${n} #${i + 1}: ${head}; ${phase === 'streams' ? 'event ' : ''}latency µs `
          + PERCENTILES.map((k) => `${k} ${num(dist[k], 1)}`).join(' '));
      });
  return '```\n' + parts.join('\n') + '\n```';
}

function analysis(benchDir) {
  const f = path.join(benchDir, 'analysis.md');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim() : 'No bench/analysis.md was present.';
}

// ---- the document --------------------------------------------------------------

// The median share of a core that other programs took during the
// measurements, with a warning when it is large enough to matter.
function backgroundNote(r) {
  const others = ['saturation', 'fixedRate', 'streams']
    .flatMap((ph) => Object.values(r[ph] ?? {}).flat())
    .map((x) => x?.cpu?.other).filter(Number.isFinite);
  const m = summary(others).median;
  if (m === null || m < 15)
    return '';
  return `\n**Warning**: other programs and interrupt work took a median of ${m}% of a
core during the measurements (column "other" below), so these numbers are
noisier and slower than on an idle machine; rerun on an idle machine before
drawing conclusions from small differences.\n`;
}


// Describe whether bench/run kept idle cores polling (see idle.mjs), and
// why not when it did not. Older results.json files have no record of it.
function idleText(idle) {
  if (!idle)
    return 'Idle states: not recorded in this run (idle cores could halt).';
  if (idle.held)
    return `Idle cores were kept polling for the whole run (0 written to
  /dev/cpu_dma_latency): on a virtual machine a halted core is woken by the
  hypervisor, tens to hundreds of microseconds later, and its timers fire
  late, costs that no proxy causes. \`--deep-idle\` measures without it.`;
  return `Idle cores could halt (${idle.reason}): waking one is a cost of the
  machine that every "added" latency includes.`;
}
// Describe whether the stream phases ran under SCHED_FIFO (measure.mjs).
// Older results.json files have no record of it.
function realtimeText(rt) {
  if (!rt)
    return 'Scheduling: not recorded in this run (the normal policy).';
  if (rt.on)
    return `The stream phases ran under SCHED_FIFO: the mock, the contender
  (every thread) and the load generator at priority 50 (\`chrt\`), so that
  the threads of other programs on the machine cannot hold a core for
  milliseconds while an event waits. Other phases use the normal policy,
  since a real-time thread that fills its core is throttled by the kernel.
  \`--no-realtime\` measures streams without it.`;
  return `The stream phases ran at the normal scheduling policy
  (${rt.reason}): other programs' threads can delay events by milliseconds.`;
}

function crashNote(r) {
  if (!r.crashes?.length)
    return '';
  return `\n**Crashes**: ${r.crashes.map((c) => `${c.contender} died (${c.status}) before ${c.before}`).join('; ')}.
Each was started again for the measurements after it; its log and any core
dump are in the run's scratch directory.\n`;
}

export async function writeReport(r, { outDir, benchDir, tmp }) {
  let chart = null;
  try {
    chart = drawChart(r, benchDir, outDir, tmp);
  } catch (err) {
    r.errors.push({ what: 'chart', message: err.message });
  }

  const m = r.machine, v = r.versions, p = r.params;
  const doc = `# tollgate benchmark results

Written by \`bench/run${r.mode === 'quick' ? ' --quick' : ''}\` from ${r.startedAt} to ${r.finishedAt}
(${r.minutes} minutes, ${p.reps} repetition${p.reps > 1 ? 's' : ''} of each measurement, interleaved
across contenders). Rerun it rather than edit this file; \`bench/README.md\`
says what each number means.

## Targets

Each ratio compares numbers measured in this run. "Added" is a contender's
latency percentile minus the same percentile with no proxy (direct), both
medians over the repetitions. "tollgate" runs as users run it, with the
optional features below turned on; "tollgate-plain" is the same binary with
none of them, to show what the features cost.${r.streams?.['tollgate-prompts'] ? `
"tollgate-prompts", in the streams table only, is "tollgate" with the filter
screening prompts only: a response mask holds each streamed event that may
begin a match until the next event, and this contender shows what the other
features cost a stream without that hold.` : ''}

${targetsSection(r)}
${backgroundNote(r)}${crashNote(r)}
## Machine and versions

- CPU: ${m.cpu}, ${m.cores} cores${m.hypervisor ? ` (virtual machine, ${m.hypervisor})` : ''}; memory ${m.memoryGiB} GiB; kernel ${m.kernel}
- load average before: ${m.loadBefore.map((x) => x.toFixed(2)).join(', ')}; after: ${m.loadAfter.map((x) => x.toFixed(2)).join(', ')} (other processes on the machine share the cores)
- open files limit: ${r.fdLimit}
- tollgate: ${v.tollgate}, commit ${v.commit}
- ${v.nginx}; ${v.wrk}; node ${v.node}; libevent ${v.libevent}
- Portkey gateway ${v.portkey ?? 'not installed'}${v.honoNodeServer ? ` with @hono/node-server ${v.honoNodeServer}` : ''}
- ${v.gnuplot}; ${v.perf}

## Setup

- Core ${p.cpu.client}: the load generator (wrk or bench/loadgen), tollgate-mock,
  and the OTLP sink for tollgate's spans. Core ${p.cpu.server}: the contender alone
  (nginx's worker, tollgate with one worker thread, Portkey's node process).
  While one contender is measured, the others are paused (SIGSTOP), so
  their idle timers cannot take that core. Placement is by \`taskset\`${r.nice !== null && r.nice !== undefined ? `; every benchmark process ran at nice ${r.nice}
  (\`--nice\`) so that other programs on the machine got in its way less` : ''}.
  With two cores the client side and the mock share one core, so no proxy
  can be faster than what that core feeds it: the CPU columns (percent of
  one core) show which side was the bottleneck, and "other" is what
  programs outside the benchmark and interrupt work took.
- ${idleText(r.pollingIdle)}
- ${realtimeText(r.realtime)}
- Every contender forwards to the same tollgate-mock. "direct" sends to the
  mock itself and is the baseline of every "added" number.
- Non-streaming: POST /v1/chat/completions with a JSON body of under 100
  bytes, answered by a completion of about 340 bytes. Saturation: \`wrk -t1 -c${p.wrkConnections}\` for ${p.saturationSeconds} s.
  Fixed rate: bench/loadgen sends at half of nginx's median maximum rate
  (${num(r.halfRate)} requests/s) over ${p.wrkConnections} connections for ${p.rateSeconds} s, the first ${p.warmup} s
  not counted, open loop: latency counts from when each request was due.
  A contender that falls more than one second of requests behind is
  "overloaded": the generator stops queueing, and its latencies cover only
  the requests that were sent.
- Streams: ${num(p.streamCount)} concurrent chat streams of ${p.streams.events} content events,
  one every ${p.streams.eventDelay}, opened at ${num(p.streams.connectRate)} per second, evenly spaced, and
  restarted as they end (so no two streams keep the same schedule), for ${p.streamSeconds} s (the first ${p.streamWarmup} s not counted). The mock stamps each event
  with its CLOCK_MONOTONIC send time; per-event latency is receive time minus
  that stamp. "Token" columns count only events with content; "all events"
  adds the role, finish and usage chunks, which a gateway may hold on
  purpose (tollgate holds a role chunk until the first token, so that it
  can still fail over). Time to first token is the request path (request
  written to first event queued by the mock) plus the relay of the first
  content event, which leaves out the mock's deliberate ${p.streams.eventDelay} pause before
  it; it counts every stream, warm-up included. The kept-alive columns
  count only streams whose request followed another on the same
  connection: without the connection's setup, and without the run's
  opening second, in which every stream opens a new connection.
- Memory: each contender restarted, its VmRSS read after a warm-up, then
  again (the largest sample every 250 ms) while ${num(p.memoryStreams)} streams are open
  (one event every ${p.memory.eventDelay} each, opened at ${num(p.memory.connectRate)} per second).

### tollgate's configuration

${featuresSection(r)}

\`\`\`json
${JSON.stringify(r.tollgate?.config ?? {}, null, 2)}
\`\`\`
${spanExportsLine(r)}
## Non-streaming at saturation (wrk)

${saturationSection(r)}

## Non-streaming at a fixed rate of ${num(r.halfRate)} requests/s

${rateSection(r)}
${r.fixedRateSkipped?.length ? `\nNot run at this rate, since their maximum is below it: ${r.fixedRateSkipped.join(', ')}.\n` : ''}
## ${num(p.streamCount)} concurrent streams

${streamsSection(r)}

## Memory with ${num(p.memoryStreams)} open streams

${memorySection(r)}
${p.memoryStreams < 10000 ? `
The open-files limit here is ${num(r.fdLimit)} and cannot be raised (the
hard limit needs CAP_SYS_RESOURCE). A proxy needs two sockets per stream
and some to spare, so this test ran with ${num(p.memoryStreams)} streams instead of 10,000.
` : ''}

## Latency percentiles

${chart ? `![latency percentiles](${path.basename(chart)})` : 'The chart could not be drawn.'}

Each curve is the repetition with the median p99 (the median throughput for
wrk). The axes are logarithmic.

## Profiles

${profileSection(r)}

## Analysis

${analysis(benchDir)}
${r.errors.length ? `\n## Errors during the run\n\n${r.errors.map((e) => `- ${e.what}: ${e.message}`).join('\n')}\n` : ''}
## Commands

\`\`\`
${r.commands.map((c) => c.line).join('\n')}
\`\`\`

## Raw numbers

Every repetition; latencies in microseconds. results.json beside this file
holds everything above in machine-readable form.

${rawSection(r)}
`;
  fs.writeFileSync(path.join(outDir, 'RESULTS.md'), doc);
}
