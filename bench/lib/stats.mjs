// Small statistics over repeated runs.

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0)
    return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// {median, min, max, n} of the numbers among values.
export function summary(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0)
    return { median: null, min: null, max: null, n: 0 };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

// The run whose value of key(run) is the median one (the lower middle
// for an even count), so a chart shows one real distribution.
export function medianRun(runs, key) {
  const ok = runs.filter((r) => r && Number.isFinite(key(r)));
  if (ok.length === 0)
    return null;
  ok.sort((a, b) => key(a) - key(b));
  return ok[Math.floor((ok.length - 1) / 2)];
}

export function ratio(a, b) {
  return a === null || b === null || b === 0 ? null : a / b;
}
