// The run's report: <dir>/e2e-report.json (machine-readable: run metadata and one entry per
// check) and <dir>/e2e-report.md (a table for humans, then the details of each failure).
import fs from 'node:fs';
import path from 'node:path';

export class Report {
    constructor(dir, meta) {
        this.dir = dir;
        this.meta = meta;
        this.entries = [];
        this.problems = []; // findings outside any check (teardown)
        this.startedAt = new Date();
    }

    add(entry) {
        this.entries.push(entry);
    }

    summary() {
        const count = (s) => this.entries.filter((e) => e.status === s).length;
        return { total: this.entries.length, pass: count('PASS'), fail: count('FAIL'), skip: count('SKIP') };
    }

    write({ interrupted = false } = {}) {
        fs.mkdirSync(this.dir, { recursive: true });
        const finishedAt = new Date();
        const doc = {
            tool: 'ibex-e2e',
            started_at: this.startedAt.toISOString(),
            finished_at: finishedAt.toISOString(),
            duration_ms: finishedAt - this.startedAt,
            interrupted,
            ...this.meta,
            summary: this.summary(),
            problems: this.problems,
            checks: this.entries,
        };
        const jsonPath = path.join(this.dir, 'e2e-report.json');
        fs.writeFileSync(jsonPath, `${JSON.stringify(doc, null, 2)}\n`);
        fs.writeFileSync(path.join(this.dir, 'e2e-report.md'), this.markdown(doc));
        return jsonPath;
    }

    markdown(doc) {
        const cell = (s) => {
            const str = String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
            return str.length > 200 ? `${str.slice(0, 200)}...` : str;
        };
        const s = doc.summary;
        const out = [
            '# ibex e2e report',
            '',
            `- started: ${doc.started_at}, duration: ${(doc.duration_ms / 1000).toFixed(1)} s${doc.interrupted ? ' (interrupted)' : ''}`,
            `- mode: ${doc.mode}, target: ${doc.target ?? '-'}`,
            `- ibex: ${doc.ibex_bin ?? '-'}${doc.ibex_version ? ` (version ${doc.ibex_version})` : ''}, fakellm: ${doc.fakellm_bin ?? '-'}`,
            `- node ${doc.node_version}, openai SDK ${doc.openai_sdk_version ?? '-'}`,
            `- result: **${s.pass} pass, ${s.fail} fail, ${s.skip} skip** of ${s.total}`,
            '',
            '| check | status | duration | reason |',
            '|---|---|---:|---|',
            ...doc.checks.map((e) => `| \`${e.id}\` | ${e.status} | ${(e.duration_ms / 1000).toFixed(2)} s | ${cell(e.reason)} |`),
            '',
        ];
        for (const p of doc.problems) out.push(`**Problem outside a check:** ${p}`, '');
        for (const e of doc.checks.filter((x) => x.status === 'FAIL')) {
            out.push(`## FAIL \`${e.id}\``, '', e.title ? `${e.title}` : '', '', '```', e.error ?? e.reason, '```', '');
            for (const l of e.logs || []) {
                out.push(`stderr of ${l.name} (\`${l.path}\`), last lines:`, '', '```', l.tail || '(empty)', '```', '');
            }
        }
        return `${out.join('\n')}\n`;
    }
}
