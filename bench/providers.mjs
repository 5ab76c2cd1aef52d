// bench/providers.mjs - the client and report of bench/providers.sh: sends the same prompts, at
// several sizes, streaming and not, through ibex to every provider of a plan, one request at a
// time, and reports per provider, size and mode: TTFT and total latency (p50/p95), prompt and
// completion tokens, and the estimated cost from the plan's prices. A provider the plan marks
// skipped (its key is not set) gets a SKIP row, never nothing.
//   node bench/providers.mjs <plan.json>
// The plan (written by providers.sh): {url, key, sizes, modes, max_tokens, prices: {model:
// {input, output, note}}, providers: [{name, type, kind, alias, model, runs, warmup, headers,
// skip}], out: {dir, name}, run: {...}}. Writes <dir>/<name>.json and .md, and
// <dir>/providers-latest.json and .md.
//
// TTFT: streaming, the time from sending the request to the first chunk that carries content
// (delta.content, delta.tool_calls or delta.refusal); non-streaming, the time to the response
// headers, which ibex sends once the whole answer is in. Total: to the end of the body.
// Percentiles: nearest rank over the measured runs (warm-up runs are not counted).
// Exit status: 0 = every measured request succeeded, 1 = some failed, 2 = could not run.
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";

const planFile = process.argv[2];
if (!planFile) {
  console.error("usage: node providers.mjs <plan.json>");
  process.exit(2);
}
const plan = JSON.parse(fs.readFileSync(planFile, "utf8"));
const base = new URL(plan.url);
const client = base.protocol === "https:" ? https : http;
const agent = new client.Agent({ keepAlive: true, maxSockets: 1 });

// A prompt of exactly `size` characters: an instruction, a nonce that defeats the providers'
// prompt caches (they match prefixes), then filler text.
const FILLER =
  "Ops log: the card authorisation service returned more timeouts to the checkout API after the " +
  "deploy; p99 latency rose from 180 ms to 900 ms while pod CPU stayed flat and the database pool " +
  "showed waits. The on-call engineer rolled back one canary and kept watching the dashboards. ";
function prompt(size, nonce) {
  let s = `Reply with one short sentence that summarises these notes. [${nonce}] `;
  while (s.length < size) s += FILLER;
  return s.slice(0, size);
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

// One request through ibex; resolves {ok, status, ttft_ms, total_ms, prompt_tokens,
// completion_tokens, error}. Never rejects.
function send(p, size, stream, nonce) {
  const body = {
    model: p.alias,
    messages: [{ role: "user", content: prompt(size, nonce) }],
    max_completion_tokens: plan.max_tokens,
  };
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  const data = Buffer.from(JSON.stringify(body));
  const headers = {
    "content-type": "application/json",
    "content-length": data.length,
    authorization: `Bearer ${plan.key}`,
    ...(p.headers || {}),
  };
  return new Promise((resolve) => {
    const t0 = nowMs();
    let ttft = null;
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      resolve({ total_ms: nowMs() - t0, ttft_ms: ttft, ...r });
    };
    const req = client.request(
      { hostname: base.hostname, port: base.port, path: "/v1/chat/completions", method: "POST", headers, agent },
      (res) => {
        if (!stream) ttft = nowMs() - t0;
        let text = "";
        let line = "";
        let usage = null;
        let sawDone = false;
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          if (!stream || res.statusCode !== 200) {
            text += chunk;
            return;
          }
          line += chunk;
          let i;
          while ((i = line.indexOf("\n")) >= 0) {
            const l = line.slice(0, i).replace(/\r$/, "");
            line = line.slice(i + 1);
            if (!l.startsWith("data:")) continue;
            const v = l.slice(5).trim();
            if (v === "[DONE]") {
              sawDone = true;
              continue;
            }
            let ev;
            try {
              ev = JSON.parse(v);
            } catch {
              continue;
            }
            if (ev.error) text = JSON.stringify(ev);
            const d = ev.choices?.[0]?.delta;
            if (ttft === null && d && (d.content || d.tool_calls || d.refusal)) ttft = nowMs() - t0;
            if (ev.usage) usage = ev.usage;
          }
        });
        res.on("end", () => {
          if (res.statusCode !== 200) {
            let msg = text.slice(0, 200);
            try {
              msg = JSON.parse(text).error?.message ?? msg;
            } catch {}
            return finish({ ok: false, status: res.statusCode, error: String(msg).slice(0, 200) });
          }
          if (!stream) {
            try {
              usage = JSON.parse(text).usage;
            } catch {
              return finish({ ok: false, status: 200, error: "answer is not JSON" });
            }
          } else if (!sawDone) {
            return finish({ ok: false, status: 200, error: text ? `stream error: ${text.slice(0, 160)}` : "stream without [DONE]" });
          }
          finish({
            ok: true,
            status: 200,
            prompt_tokens: usage?.prompt_tokens ?? null,
            completion_tokens: usage?.completion_tokens ?? null,
          });
        });
        res.on("error", (e) => finish({ ok: false, status: res.statusCode, error: e.message }));
      },
    );
    req.setTimeout(plan.timeout_s * 1000, () => req.destroy(new Error(`no answer in ${plan.timeout_s} s`)));
    req.on("error", (e) => finish({ ok: false, status: null, error: e.message }));
    req.end(data);
  });
}

const pct = (xs, q) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};
const price = (model) => plan.prices[model] ?? null;
const cost = (pr, pt, ct) =>
  pr && Number.isFinite(pt) && Number.isFinite(ct) ? (pt * pr.input + ct * pr.output) / 1e6 : null;

const rows = [];
const totals = {}; // per provider: every request, warm-ups included (ibex's counters see them all)
let failed = 0;
for (const p of plan.providers) {
  if (p.skip) {
    rows.push({ provider: p.name, type: p.type, kind: p.kind, model: p.model, status: `SKIP: ${p.skip}` });
    console.error(`${p.name}: SKIP: ${p.skip}`);
    continue;
  }
  totals[p.name] = { requests: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 };
  const pr = price(p.model);
  for (const size of plan.sizes) {
    for (const mode of plan.modes) {
      const stream = mode === "stream";
      const runs = [];
      for (let i = 0; i < p.warmup + p.runs; i++) {
        const r = await send(p, size, stream, `${p.name}-${size}-${mode}-${i}-${process.pid}`);
        const t = totals[p.name];
        t.requests++;
        if (r.ok) {
          t.prompt_tokens += r.prompt_tokens ?? 0;
          t.completion_tokens += r.completion_tokens ?? 0;
          t.cost_usd += cost(pr, r.prompt_tokens, r.completion_tokens) ?? 0;
        }
        if (i >= p.warmup) runs.push(r);
      }
      const ok = runs.filter((r) => r.ok);
      const errs = runs.filter((r) => !r.ok);
      failed += errs.length;
      const pt = pct(ok.map((r) => r.prompt_tokens), 0.5);
      const ct = pct(ok.map((r) => r.completion_tokens), 0.5);
      const row = {
        provider: p.name, type: p.type, kind: p.kind, model: p.model, size_chars: size, mode,
        runs: runs.length, ok: ok.length, errors: errs.length,
        ttft_ms: { p50: pct(ok.map((r) => r.ttft_ms), 0.5), p95: pct(ok.map((r) => r.ttft_ms), 0.95) },
        total_ms: { p50: pct(ok.map((r) => r.total_ms), 0.5), p95: pct(ok.map((r) => r.total_ms), 0.95) },
        prompt_tokens: pt, completion_tokens: ct,
        cost_usd_per_request: cost(pr, pt, ct),
        price: pr ? { input_per_mtok: pr.input, output_per_mtok: pr.output, note: pr.note ?? "estimate" } : null,
        status: errs.length === 0 ? "ok" : ok.length ? `${errs.length} errors` : "ERROR",
        first_error: errs[0] ? { status: errs[0].status, message: errs[0].error } : null,
        raw: runs.map((r) => ({ ok: r.ok, ttft_ms: r.ttft_ms, total_ms: r.total_ms, prompt_tokens: r.prompt_tokens, completion_tokens: r.completion_tokens })),
      };
      rows.push(row);
      console.error(`${p.name} ${size} ${mode}: ${row.status}, total p50 ${row.total_ms.p50?.toFixed(2) ?? "-"} ms`);
    }
  }
}
agent.destroy();

// ibex's own counters (ibex_tokens_total, ibex_cost_usd_total): the cost wiring, cross-checked.
let metrics = null;
try {
  const res = await fetch(new URL("/metrics", plan.url), { headers: { authorization: `Bearer ${plan.key}` } });
  const text = await res.text();
  metrics = {};
  for (const m of text.matchAll(/^ibex_(tokens_total|cost_usd_total)\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const e = (metrics[labels.provider] ??= {});
    if (m[1] === "cost_usd_total") e.cost_usd = Number(m[3]);
    else e[`${labels.kind}_tokens`] = Number(m[3]);
  }
} catch (e) {
  console.error(`providers: cannot read ibex's /metrics: ${e.message}`);
}
const warnings = [];
for (const [name, t] of Object.entries(totals)) {
  const m = metrics?.[name];
  t.ibex = m ?? null;
  if (!m) continue;
  const close = (a, b) => Math.abs((a ?? 0) - (b ?? 0)) <= 1e-9 + 1e-6 * Math.abs(b ?? 0);
  if (!close(m.prompt_tokens, t.prompt_tokens) || !close(m.completion_tokens, t.completion_tokens) ||
      !close(m.cost_usd, t.cost_usd))
    warnings.push(`${name}: ibex counted ${JSON.stringify(m)}, the bench ${JSON.stringify({ prompt_tokens: t.prompt_tokens, completion_tokens: t.completion_tokens, cost_usd: t.cost_usd })}`);
}

// ------------------------------------------------------------------ report
const f = (v, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : "-");
const usd = (v) => (Number.isFinite(v) ? `$${v < 0.01 ? v.toPrecision(2) : v.toFixed(4)}` : "-");
const out = [];
const p = (s = "") => out.push(s);
p(`# Providers through ibex (bench/providers.sh), ${plan.run.date}`);
p();
p(`${plan.run.cpu}, ${plan.run.nproc} CPUs, load average ${plan.run.loadavg}; commit ${plan.run.commit}; ` +
  `max_completion_tokens ${plan.max_tokens}; fakellm: ${plan.run.fakellm}`);
p();
p("| provider | type | model | size (chars) | mode | runs | TTFT p50 ms | TTFT p95 ms | total p50 ms | total p95 ms | prompt tok | completion tok | est. cost/request | status |");
p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  if (r.status.startsWith("SKIP")) {
    p(`| ${r.provider} | ${r.type} | ${r.model} | - | - | - | - | - | - | - | - | - | - | ${r.status} |`);
    continue;
  }
  p(`| ${r.provider} | ${r.type} | ${r.model} | ${r.size_chars} | ${r.mode} | ${r.ok}/${r.runs} | ${f(r.ttft_ms.p50, 3)} | ${f(r.ttft_ms.p95, 3)} | ` +
    `${f(r.total_ms.p50, 3)} | ${f(r.total_ms.p95, 3)} | ${r.prompt_tokens ?? "-"} | ${r.completion_tokens ?? "-"} | ${usd(r.cost_usd_per_request)} | ` +
    `${r.status}${r.first_error ? ` (${r.first_error.status ?? "-"}: ${r.first_error.message})` : ""} |`);
}
p();
p("Prices (US$ per million tokens, input / output) are estimates from the table in bench/providers.sh " +
  "(PRICES_FILE replaces it); the fakellm models are priced as the real model named in their note.");
p();
p("| model | input | output | note |");
p("|---|---|---|---|");
const used = new Set(rows.map((r) => r.model));
for (const [m, x] of Object.entries(plan.prices)) if (used.has(m)) p(`| ${m} | ${x.input} | ${x.output} | ${x.note ?? "estimate"} |`);
p();
p("ibex's counters against the bench's sums (every request, warm-ups included):");
p();
p("| provider | requests | prompt tokens (bench / ibex) | completion tokens (bench / ibex) | cost US$ (bench / ibex) |");
p("|---|---|---|---|---|");
for (const [name, t] of Object.entries(totals))
  p(`| ${name} | ${t.requests} | ${t.prompt_tokens} / ${t.ibex?.prompt_tokens ?? "-"} | ${t.completion_tokens} / ${t.ibex?.completion_tokens ?? "-"} | ` +
    `${t.cost_usd.toFixed(6)} / ${Number.isFinite(t.ibex?.cost_usd) ? t.ibex.cost_usd.toFixed(6) : "-"} |`);
if (warnings.length) {
  p();
  p("## Warnings");
  for (const w of warnings) p(`- ${w}`);
}
const md = out.join("\n") + "\n";
process.stdout.write("\n" + md);
fs.mkdirSync(plan.out.dir, { recursive: true });
const doc = {
  ...plan.run, sizes: plan.sizes, modes: plan.modes, max_tokens: plan.max_tokens,
  providers: plan.providers.map(({ headers, ...x }) => x), prices: plan.prices, results: rows, totals, warnings,
};
const b = path.join(plan.out.dir, plan.out.name);
fs.writeFileSync(`${b}.json`, JSON.stringify(doc, null, 2) + "\n");
fs.writeFileSync(`${b}.md`, md);
fs.copyFileSync(`${b}.json`, path.join(plan.out.dir, "providers-latest.json"));
fs.copyFileSync(`${b}.md`, path.join(plan.out.dir, "providers-latest.md"));
console.log(`written: ${b}.json, ${b}.md`);
process.exit(failed ? 1 : 0);
