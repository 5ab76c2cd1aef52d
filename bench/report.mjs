// bench/report.mjs - turns one run directory of bench/run.sh into tables (stdout and .md) and one
// JSON document: bench/out/<timestamp>.json + .md, and bench/out/latest.json + latest.md.
//   node bench/report.mjs <run dir> <out dir>
// Exit status: 0 = no errors and every target met, 1 = some phase had errors, 3 = no errors
// but a target was missed or could not be measured.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const [runDir, outDir] = process.argv.slice(2);
if (!runDir || !outDir) {
  console.error("usage: node report.mjs <run dir> <out dir>");
  process.exit(2);
}
const read = (name) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(runDir, name), "utf8"));
  } catch {
    return null;
  }
};
const run = read("run.json");
if (!run) {
  console.error(`report: ${runDir}/run.json missing`);
  process.exit(2);
}
const cfg = run.config;
// direct, ibex, and ibex_off (recording off) when bench/run.sh compared recording on and off
const PATHS = cfg.paths ?? ["direct", "ibex"];
const isGw = (p) => p !== "direct" && cfg.gateway === "ibex";
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const f = (v, d = 3) => (num(v) === null ? "-" : v.toFixed(d));
const signed = (v, d = 3) => (num(v) === null ? "-" : (v >= 0 ? "+" : "") + v.toFixed(d));
const sub = (a, b) => (num(a) === null || num(b) === null ? null : a - b);
const problems = []; // every error, by phase
const died = run.ibex.died_during;
const warnings = [];

// ------------------------------------------------------------------ saturation (wrk)
const sat = {};
for (const p of PATHS) {
  const w = read(`sat-${p}.json`) || {};
  const m = read(`sat-${p}.meta.json`) || {};
  const e = w.errors || {};
  const errors = w.requests === undefined ? null
    : (e.connect || 0) + (e.read || 0) + (e.write || 0) + (e.status || 0) + (e.timeout || 0);
  const rps = w.requests && w.duration_us ? w.requests / (w.duration_us / 1e6) : null;
  const lat = w.latency_us || {};
  const gw = isGw(p);
  const cpuUs = gw && w.requests ? (m.ibex_cpu_ticks / m.clk_tck) * 1e6 / w.requests : null;
  // the store writer's share, by thread name (absent from runs before threads had names)
  const writerTicks = m.ibex_thread_cpu_ticks?.["ibex-writer"];
  const writerUs = gw && w.requests && writerTicks !== undefined ? (writerTicks / m.clk_tck) * 1e6 / w.requests : null;
  const cpuSchedUs = gw && w.requests && m.ibex_cpu_sched_ns ? m.ibex_cpu_sched_ns / 1e3 / w.requests : null;
  sat[p] = {
    requests: w.requests ?? null, rps, p50_ms: num(lat.p50) === null ? null : lat.p50 / 1e3,
    p99_ms: num(lat.p99) === null ? null : lat.p99 / 1e3, errors, wrk_errors: e,
    upstream_requests: m.upstream_requests ?? null,
    ibex_cpu_pct: gw && m.wall_ms ? (m.ibex_cpu_ticks / m.clk_tck) * 1e5 / m.wall_ms : null,
    ibex_cpu_us_per_req: cpuUs, ibex_cpu_us_per_req_schedstat: cpuSchedUs,
    ibex_writer_cpu_us_per_req: writerUs,
    fakellm_cpu_pct: m.wall_ms ? (m.fakellm_cpu_ticks / m.clk_tck) * 1e5 / m.wall_ms : null,
    other_cpu_pct: m.other_cpu_pct ?? null,
  };
  if (errors === null) problems.push(`saturation ${p}: wrk produced no result`);
  else if (errors > 0) problems.push(`saturation ${p}: ${errors} errors ${JSON.stringify(e)}`);
  // every request wrk counted must have reached fakellm (wrk drops the ones in flight at the end)
  if (w.requests && m.upstream_requests !== undefined && m.upstream_requests < w.requests)
    problems.push(`saturation ${p}: fakellm saw ${m.upstream_requests} requests, wrk counted ${w.requests}`);
}

// ------------------------------------------------------------------ fixed rates (loadgen)
const rates = [];
for (const r of cfg.rates) {
  const row = { rate: r };
  for (const p of PATHS) {
    const j = read(`rate${r}-${p}.json`);
    const m = read(`rate${r}-${p}.meta.json`) || {};
    const gw = isGw(p);
    if (!j) {
      problems.push(`rate ${r} ${p}: loadgen produced no result`);
      row[p] = null;
      continue;
    }
    row[p] = {
      requests: j.requests, ok: j.ok, errors: j.errors, error_kinds: j.error_kinds,
      achieved_rps: j.sent_rps, p50_ms: j.latency_ms.p50, p99_ms: j.latency_ms.p99,
      p999_ms: j.latency_ms.p999, max_ms: j.latency_ms.max, send_lag_p99_ms: j.send_lag_ms.p99,
      connections: j.connections_opened, upstream_requests: m.upstream_requests ?? null,
      ibex_cpu_us_per_req: gw && j.ok ? (m.ibex_cpu_ticks / m.clk_tck) * 1e6 / j.ok : null,
      ibex_cpu_us_per_req_schedstat: gw && j.ok && m.ibex_cpu_sched_ns ? m.ibex_cpu_sched_ns / 1e3 / j.ok : null,
      ibex_cpu_pct: gw && m.wall_ms ? (m.ibex_cpu_ticks / m.clk_tck) * 1e5 / m.wall_ms : null,
      other_cpu_pct: m.other_cpu_pct ?? null,
    };
    if (j.errors > 0) problems.push(`rate ${r} ${p}: ${j.errors} errors ${JSON.stringify(j.error_kinds)}`);
    if (m.upstream_requests !== undefined && m.upstream_requests !== j.requests)
      problems.push(`rate ${r} ${p}: loadgen sent ${j.requests} requests, fakellm saw ${m.upstream_requests}`);
    if (j.send_lag_ms.p99 > 1)
      warnings.push(`rate ${r} ${p}: the load generator sent late (send lag p99 ${j.send_lag_ms.p99} ms): CPU ${cfg.cpu_load} was busy`);
  }
  for (const p of PATHS.filter(isGw)) {
    const x = p === "ibex" ? "" : `_${p.slice(5)}`; // added_p50_ms (ibex), added_p50_ms_off (ibex_off)
    row[`added_p50_ms${x}`] = sub(row[p]?.p50_ms, row.direct?.p50_ms);
    row[`added_p99_ms${x}`] = sub(row[p]?.p99_ms, row.direct?.p99_ms);
  }
  rates.push(row);
}

// ------------------------------------------------------------------ streaming
const streams = {};
for (const p of PATHS) {
  const j = read(`stream-${p}.json`);
  if (!j) {
    if (cfg.stream_n > 0) problems.push(`streams ${p}: loadgen produced no result`);
    streams[p] = null;
    continue;
  }
  streams[p] = {
    requests: j.requests, ok: j.ok, errors: j.errors, error_kinds: j.error_kinds,
    done_seen: j.sse_done, ttft_p50_ms: j.ttfb_ms.p50, ttft_p99_ms: j.ttfb_ms.p99,
    ttft_mean_ms: j.ttfb_ms.mean, total_p50_ms: j.latency_ms.p50, total_p99_ms: j.latency_ms.p99,
  };
  if (j.errors > 0) problems.push(`streams ${p}: ${j.errors} errors ${JSON.stringify(j.error_kinds)}`);
  if (j.sse_done !== j.requests) problems.push(`streams ${p}: [DONE] in ${j.sse_done} of ${j.requests}`);
}
const ttftAdded = sub(streams.ibex?.ttft_p50_ms, streams.direct?.ttft_p50_ms);
const totalAdded = sub(streams.ibex?.total_p50_ms, streams.direct?.total_p50_ms);
const ttftAddedOff = sub(streams.ibex_off?.ttft_p50_ms, streams.direct?.ttft_p50_ms);
const totalAddedOff = sub(streams.ibex_off?.total_p50_ms, streams.direct?.total_p50_ms);
const addedOf = (p, on, off) => (p === "ibex" ? on : p === "ibex_off" ? off : null);

// ------------------------------------------------------------------ RSS and held streams
const hold = read("hold.meta.json");
const holdRun = read("hold.json");
if (cfg.hold_streams > 0) {
  if (!hold) problems.push("hold: no result");
  else {
    if (hold.client_open !== hold.wanted)
      problems.push(`hold: only ${hold.client_open} of ${hold.wanted} streams opened`);
    if (hold.upstream_active !== hold.wanted)
      problems.push(`hold: fakellm had ${hold.upstream_active} active streams, wanted ${hold.wanted}`);
    if (holdRun && holdRun.errors > 0)
      problems.push(`hold: ${holdRun.errors} stream errors ${JSON.stringify(holdRun.error_kinds)}`);
    if (hold.upstream_active_after_release > 0)
      warnings.push(`hold: ${hold.upstream_active_after_release} upstream streams still active 5 s after the clients left`);
  }
}
const smoke = {};
for (const p of PATHS) {
  smoke[p] = read(`smoke-${p}.json`);
  if (!smoke[p] || !smoke[p].non_stream_ok) problems.push(`smoke ${p}: non-streaming completion failed`);
  if (!smoke[p] || !smoke[p].stream_ok) problems.push(`smoke ${p}: stream without data: [DONE]`);
}
if (run.ibex.died_during)
  problems.unshift(`ibex exited on its own during ${run.ibex.died_during} (status ${run.ibex.died_status}); later phases were skipped`);
else if (cfg.gateway === "ibex" && run.ibex.exit_status !== 0)
  problems.push(`ibex exited with status ${run.ibex.exit_status} after SIGTERM`);

// ------------------------------------------------------------------ ibex request log
let reqlog = null;
const logFile = path.join(runDir, "ibex.log");
const logText = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8")
  : fs.existsSync(logFile + ".gz") ? zlib.gunzipSync(fs.readFileSync(logFile + ".gz")).toString("utf8") : null;
if (cfg.gateway === "ibex" && logText !== null) {
  reqlog = { lines: 0, json_lines: 0, request_lines: 0, status: {} };
  const text = logText;
  for (const line of text.split("\n")) {
    if (!line) continue;
    reqlog.lines++;
    let o;
    try {
      o = JSON.parse(line);
    } catch {
      continue;
    }
    reqlog.json_lines++;
    if (o.msg !== "request") continue;
    reqlog.request_lines++;
    const st = o.status ?? o.http_status;
    if (st !== undefined) reqlog.status[st] = (reqlog.status[st] || 0) + 1;
  }
  if (reqlog.lines !== reqlog.json_lines)
    warnings.push(`ibex log: ${reqlog.lines - reqlog.json_lines} of ${reqlog.lines} lines are not JSON`);
  // 499 = the client went away first: wrk stops with requests in flight, and the held streams
  // end that way; anything else >= 400 deserves a look
  const bad = Object.entries(reqlog.status).filter(([s]) => +s >= 400 && +s !== 499);
  if (bad.length) warnings.push(`ibex log: error statuses ${JSON.stringify(Object.fromEntries(bad))}`);
}

const noise = [];
for (const p of PATHS) {
  noise.push([`saturation ${p}`, read(`sat-${p}.meta.json`)]);
  for (const r of cfg.rates) noise.push([`rate ${r} ${p}`, read(`rate${r}-${p}.meta.json`)]);
  noise.push([`streams ${p}`, read(`stream-${p}.meta.json`)]);
}
for (const [what, m] of noise) {
  if (!m) continue;
  if (m.other_cpu_pct > 20)
    warnings.push(`${what}: other processes used ${m.other_cpu_pct}% of a core meanwhile (noisy; rerun on a quieter machine)`);
  const steal = m.wall_ms ? (m.steal_ticks / m.clk_tck) * 1e5 / m.wall_ms : 0;
  if (steal > 5) warnings.push(`${what}: the hypervisor stole ${Math.round(steal)}% of a core (VM steal time)`);
}

// ------------------------------------------------------------------ targets
const mb = (kb) => (num(kb) === null || kb === 0 ? null : kb / 1024);
const r2000 = rates.find((r) => r.rate === 2000);
const t = run.targets;
const gwRun = cfg.gateway === "ibex";
const targets = [
  { name: "ibex CPU per proxied request at saturation", unit: "us", limit: t.cpu_us_per_req,
    measured: sat.ibex?.ibex_cpu_us_per_req ?? null },
  { name: "added p50 latency at 2,000 req/s", unit: "ms", limit: t.added_p50_ms_at_2000,
    measured: r2000?.added_p50_ms ?? null },
  { name: "streaming TTFT overhead (p50)", unit: "ms", limit: t.ttft_overhead_ms, measured: ttftAdded },
  { name: "RSS idle", unit: "MB", limit: t.rss_idle_mb, measured: gwRun ? mb(run.ibex.rss_idle_kb) : null },
  { name: `RSS with ${cfg.hold_streams} open streams`, unit: "MB", limit: t.rss_hold_mb,
    measured: gwRun ? mb(hold?.ibex_rss_kb) : null },
];

// Recording on (ibex) against off (ibex_off), issue 4: each core figure within 10%. Costs may
// grow by at most that much, throughput fall by at most that much; the store writer's share is
// shown, not judged (it is part of the CPU per request).
const RECORDING_LIMIT = 0.1;
const recording = [];
if (PATHS.includes("ibex_off")) {
  const ratio = (on, off) => (num(on) === null || num(off) === null || off <= 0 ? null : on / off);
  const requestPath = (x) => sub(x?.ibex_cpu_us_per_req, x?.ibex_writer_cpu_us_per_req);
  const fig = (name, unit, d, off, on, judge) => ({ name, unit, d, off, on, ratio: judge === null ? null : ratio(on, off),
    verdict: judge === null ? "-" : ratio(on, off) === null ? "n/a"
      : (judge === "cost" ? ratio(on, off) <= 1 + RECORDING_LIMIT : ratio(on, off) >= 1 - RECORDING_LIMIT) ? "met" : "MISSED" });
  recording.push(
    fig("CPU per request at saturation", "us", 1, sat.ibex_off?.ibex_cpu_us_per_req, sat.ibex?.ibex_cpu_us_per_req, "cost"),
    fig("of it, the request path (every thread but the store writer)", "us", 1, requestPath(sat.ibex_off), requestPath(sat.ibex), "cost"),
    fig("of it, the store writer (ibex-writer)", "us", 1, sat.ibex_off?.ibex_writer_cpu_us_per_req, sat.ibex?.ibex_writer_cpu_us_per_req, null),
    fig("req/s at saturation", "req/s", 0, sat.ibex_off?.rps, sat.ibex?.rps, "throughput"),
    fig("added p50 at 2,000 req/s", "ms", 3, r2000?.added_p50_ms_off, r2000?.added_p50_ms, "cost"),
    fig("added TTFT p50", "ms", 3, ttftAddedOff, ttftAdded, "cost"),
  );
  const judged = recording.filter((x) => x.verdict !== "-");
  targets.push({ name: "recording on: each core figure within 10% of recording off", unit: "figures missed", limit: 0,
    measured: judged.some((x) => x.verdict === "n/a") ? null : judged.filter((x) => x.verdict !== "met").length,
    of: judged.length });
}
// after ibex died, the skipped phases are not separate problems
if (died) {
  const first = problems.findIndex((p) => p.startsWith("ibex exited"));
  const kept = problems.filter((p, i) => i === first || !/produced no result|no result$/.test(p));
  problems.length = 0;
  problems.push(...kept);
}
for (const x of targets) x.verdict = x.measured === null ? "n/a" : x.measured <= x.limit ? "met" : "MISSED";

// ------------------------------------------------------------------ tables
const table = (head, rows) => {
  const all = [head, ...rows].map((r) => r.map((c) => String(c)));
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r) => "| " + r.map((c, i) => c.padEnd(w[i])).join(" | ") + " |";
  return [line(all[0]), "|" + w.map((n) => "-".repeat(n + 2)).join("|") + "|", ...all.slice(1).map(line)].join("\n");
};
const errCell = (n) => (n === null || n === undefined ? "-" : n === 0 ? "0" : `${n} ERR`);
const pct = (v) => (num(v) === null ? "-" : `${Math.round(v)}%`);
const out = [];
const m = run.machine;
const status = problems.length ? `ERRORS (${problems.length})` : "no errors";
out.push(`# ibex benchmark ${run.timestamp}`);
out.push("");
out.push(`${run.date}; ${m.nproc} x ${m.cpu}, kernel ${m.kernel}; git ${run.git.commit}${run.git.dirty ? " (dirty)" : ""}` +
  `${run.ibex_version ? `; ${run.ibex_version}` : ""}`);
out.push(`netns=${cfg.netns ? "private" : "host"}; pinning ${cfg.pin ? `load=cpu${cfg.cpu_load} fakellm=cpu${cfg.cpu_upstream} ibex=cpu${cfg.cpu_ibex}` : "off"}; ` +
  `ibex --workers ${cfg.workers}; gateway=${cfg.gateway}; body ~1.5 KB chat completion, model ${cfg.model}; ` +
  `wrk ${run.versions.wrk}, libuv ${run.versions.libuv}; other processes before start: ${run.preflight_other_cpu_pct ?? "-"}% of a core`);
out.push("");
out.push(`**Result: ${status}.** direct = load generator -> fakellm; ibex = load generator -> ibex -> fakellm; added = ibex - direct` +
  `${PATHS.includes("ibex_off") ? "; ibex_off = the same with `--recording off`" : ""}.`);
out.push("");
out.push("## Targets");
out.push("");
out.push(table(["target", "limit", "measured", "verdict"], targets.map((x) =>
  [x.name, `<= ${x.limit} ${x.unit}`, x.measured === null ? "-" : x.of !== undefined ? `${x.measured} of ${x.of}`
    : `${f(x.measured, x.unit === "ms" ? 3 : 1)} ${x.unit}`, x.verdict])));
out.push("");
out.push(`## Saturation (wrk, closed loop, ${cfg.sat_connections} connections, ${cfg.sat_duration_s} s)`);
out.push("");
out.push(table(["path", "req/s", "p50 ms", "p99 ms", "errors", "upstream reqs", "ibex CPU", "ibex CPU us/req", "(schedstat)", "of it, store writer", "fakellm CPU", "other CPU"],
  PATHS.map((p) => {
    const s = sat[p];
    return [p, f(s.rps, 0), f(s.p50_ms), f(s.p99_ms), errCell(s.errors), s.upstream_requests ?? "-", pct(s.ibex_cpu_pct),
      f(s.ibex_cpu_us_per_req, 1), f(s.ibex_cpu_us_per_req_schedstat, 1), f(s.ibex_writer_cpu_us_per_req, 1),
      pct(s.fakellm_cpu_pct), pct(s.other_cpu_pct)];
  })));
out.push("");
out.push(`req/s ratio ibex/direct: ${f(sat.ibex.rps && sat.direct.rps ? sat.ibex.rps / sat.direct.rps : null, 2)} ` +
  `(direct is the ceiling of wrk + fakellm sharing cpu${cfg.cpu_load}; compare ibex by CPU us/req)`);
out.push("");
out.push(`## Fixed rate (loadgen, open loop, ${cfg.rate_duration_s} s; latency from each request's scheduled time)`);
out.push("");
const rateRows = [];
for (const r of rates)
  for (const p of PATHS) {
    const x = r[p];
    if (!x) { rateRows.push([r.rate, p, "-", "-", "-", "-", "-", "-", "no result", "-", "-", "-", "-", "-"]); continue; }
    rateRows.push([r.rate, p, f(x.achieved_rps, 0), f(x.p50_ms), f(x.p99_ms), f(x.p999_ms),
      isGw(p) ? signed(addedOf(p, r.added_p50_ms, r.added_p50_ms_off)) : "(base)",
      isGw(p) ? signed(addedOf(p, r.added_p99_ms, r.added_p99_ms_off)) : "(base)",
      errCell(x.errors), pct(x.ibex_cpu_pct), f(x.ibex_cpu_us_per_req, 1), f(x.ibex_cpu_us_per_req_schedstat, 1),
      f(x.send_lag_p99_ms), pct(x.other_cpu_pct)]);
  }
out.push(table(["req/s", "path", "achieved", "p50 ms", "p99 ms", "p99.9 ms", "added p50", "added p99", "errors", "ibex CPU", "ibex CPU us/req", "(schedstat)", "send lag p99", "other CPU"], rateRows));
out.push("");
out.push(`## Streaming (${cfg.stream_n} sequential SSE requests, ${cfg.stream_chunks} chunks x ${cfg.stream_interval_ms} ms; TTFT = first body byte)`);
out.push("");
out.push(table(["path", "TTFT p50 ms", "TTFT p99 ms", "added TTFT p50", "total p50 ms", "added total p50", "[DONE]", "errors"],
  PATHS.map((p) => {
    const s = streams[p];
    if (!s) return [p, "-", "-", "-", "-", "-", "-", "-"];
    return [p, f(s.ttft_p50_ms), f(s.ttft_p99_ms), isGw(p) ? signed(addedOf(p, ttftAdded, ttftAddedOff)) : "(base)",
      f(s.total_p50_ms, 2), isGw(p) ? signed(addedOf(p, totalAdded, totalAddedOff), 2) : "(base)",
      `${s.done_seen}/${s.requests}`, errCell(s.errors)];
  })));
out.push("");
if (recording.length) {
  out.push("## Recording on against off (one run)");
  out.push("");
  out.push("ibex records what its settings say (`recording: checkpoints` by default); ibex_off is the same binary with " +
    "`--recording off`, measured in the same phases. Within 10%: a cost at most 1.10 x, throughput at least 0.90 x.");
  out.push("");
  out.push(table(["figure", "recording off", "recording on", "on / off", "within 10%"], recording.map((x) =>
    [x.name, x.off === null || x.off === undefined ? "-" : `${f(x.off, x.d)} ${x.unit}`,
      x.on === null || x.on === undefined ? "-" : `${f(x.on, x.d)} ${x.unit}`, f(x.ratio, 2), x.verdict])));
  out.push("");
}
out.push("## ibex memory");
out.push("");
const kb = (v) => (num(v) === null || v === 0 ? "-" : `${(v / 1024).toFixed(1)} MB`);
out.push(table(["when", "VmRSS", "notes"], [
  ["idle, after start", kb(run.ibex.rss_idle_kb), `healthy ${run.ibex.ready_ms} ms after exec; ` +
    `idle CPU ${f(run.ibex.idle_cpu_pct, 2)}% of a core over ${f(run.ibex.idle_window_ms / 1000, 1)} s`],
  ["after the load phases", kb(run.ibex.rss_after_load_kb), ""],
  [`${cfg.hold_streams} streams open`, kb(hold?.ibex_rss_kb),
    hold ? `client open ${hold.client_open}, fakellm active ${hold.upstream_active}, ibex fds ${hold.ibex_fds}, VmHWM ${kb(hold.ibex_hwm_kb)}` : ""],
  ["streams released", kb(hold?.ibex_rss_kb_after_release), hold ? `fakellm active afterwards: ${hold.upstream_active_after_release}` : ""],
  ["before SIGTERM", kb(run.ibex.rss_end_kb), `exit status ${run.ibex.exit_status ?? "-"} after ${run.ibex.stop_ms ?? "-"} ms`],
]));
if (reqlog) {
  out.push("");
  out.push(`ibex log: ${reqlog.lines} lines (${reqlog.json_lines} JSON, ${reqlog.request_lines} requests), statuses ${JSON.stringify(reqlog.status)} ` +
    "(499: the client left first, e.g. wrk's requests in flight when it stops)");
}
out.push("");
if (problems.length) {
  out.push("## Errors");
  out.push("");
  for (const p of problems) out.push(`- ${p}`);
  out.push("");
}
if (warnings.length) {
  out.push("## Warnings");
  out.push("");
  for (const w of warnings) out.push(`- ${w}`);
  out.push("");
}
out.push(`Raw files: ${path.relative(process.cwd(), runDir) || runDir}`);
const md = out.join("\n") + "\n";

const doc = {
  ...run, result: problems.length ? "errors" : "ok", errors: problems, warnings, targets,
  saturation: sat, fixed_rate: rates,
  streaming: { ...streams, ttft_added_p50_ms: ttftAdded, total_added_p50_ms: totalAdded,
    ttft_added_p50_ms_off: ttftAddedOff, total_added_p50_ms_off: totalAddedOff },
  recording,
  memory: { ...run.ibex, hold }, hold_run: holdRun, smoke, ibex_request_log: reqlog,
  raw_dir: runDir,
};
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, `${run.timestamp}.json`), JSON.stringify(doc, null, 1) + "\n");
fs.writeFileSync(path.join(outDir, `${run.timestamp}.md`), md);
fs.copyFileSync(path.join(outDir, `${run.timestamp}.json`), path.join(outDir, "latest.json"));
fs.copyFileSync(path.join(outDir, `${run.timestamp}.md`), path.join(outDir, "latest.md"));
process.stdout.write("\n" + md);
console.log(`\nwrote ${path.join(outDir, run.timestamp)}.json and .md`);
process.exit(problems.length ? 1 : targets.some((x) => x.verdict !== "met") ? 3 : 0);
