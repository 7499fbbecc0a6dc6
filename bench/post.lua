-- wrk script of bench/run: POST one small non-streaming chat completion.
-- BENCH_MODEL and BENCH_HEADERS (lines of "Name: value") come from the
-- environment, so every contender gets the same body.
wrk.method = "POST"
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "gpt-4o") ..
    '","messages":[{"role":"user","content":"Say hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
        wrk.headers[name] = value
    end
end

-- Print the latency distribution as one parseable line, since wrk's own
-- summary rounds to two digits and names units per line.
done = function(summary, latency, requests)
    local parts = {}
    for _, p in ipairs({50, 75, 90, 95, 99, 99.9, 99.99}) do
        parts[#parts + 1] = string.format('"p%s":%.1f', p, latency:percentile(p))
    end
    io.write(string.format(
        'WRK_JSON {"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,' ..
        '"timeouts":%d,"mean":%.1f,"max":%.1f,%s}\n',
        summary.requests, summary.duration,
        summary.errors.connect + summary.errors.read + summary.errors.write,
        summary.errors.status, summary.errors.timeout,
        latency.mean, latency.max, table.concat(parts, ",")))
end
