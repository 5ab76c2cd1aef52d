#!/usr/bin/env node
// ibex end-to-end gate. Without --base-url it starts fakellm and ibex on free loopback ports
// (IBEX_BIN, FAKELLM_BIN) and runs every check against them through the official openai SDK and
// raw sockets; with --base-url it runs the checks that need neither fakellm nor process control
// against a running deployment. Output: node:test (TAP when piped, spec on a terminal), plus
// <report-dir>/e2e-report.{json,md}. Exit status 1 when any check fails.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Harness } from './lib/harness.mjs';
import { E2E_DIR, splitPatterns } from './lib/util.mjs';
import { allChecks } from './checks/index.mjs';

const HELP = `usage: node tests/e2e/run.mjs [options]

Options:
  --base-url URL     target a running ibex (its root, e.g. http://127.0.0.1:8080); checks that
                     need fakellm or process control are skipped. Default: start fakellm + ibex.
  --api-key KEY      bearer key the clients send to ibex (default: a random test key)
  --only PATTERNS    run only these checks: comma-separated ids or globs (hostile.*)
  --skip PATTERNS    do not run these checks (same syntax)
  --report-dir DIR   where e2e-report.json, e2e-report.md and process logs go
                     (default tests/e2e/reports/)
  --list             print the check ids and exit
  --help             this text

Environment:
  IBEX_BIN      ibex binary (default ./ibex, relative to the repository root)
  FAKELLM_BIN   fakellm binary (default tools/fakellm/fakellm)
  IBEX_* and OPENAI_* variables are not passed on to the processes the runner starts.
`;

function parse() {
    try {
        return parseArgs({
            options: {
                'base-url': { type: 'string' },
                'api-key': { type: 'string' },
                only: { type: 'string' },
                skip: { type: 'string' },
                'report-dir': { type: 'string' },
                list: { type: 'boolean' },
                help: { type: 'boolean', short: 'h' },
            },
            strict: true,
        }).values;
    } catch (e) {
        process.stderr.write(`${e.message}\n\n${HELP}`);
        process.exit(2);
    }
}

const args = parse();
if (args.help) {
    process.stdout.write(HELP);
    process.exit(0);
}

const checks = allChecks();
const ids = new Set();
for (const c of checks) {
    if (ids.has(c.id)) throw new Error(`duplicate check id ${c.id}`);
    ids.add(c.id);
}
if (args.list) {
    for (const c of checks) process.stdout.write(`${c.id.padEnd(36)} ${c.title || ''}\n`);
    process.exit(0);
}

const harness = new Harness({
    baseUrl: args['base-url'] || null,
    apiKey: args['api-key'] || null,
    reportDir: path.resolve(args['report-dir'] || path.join(E2E_DIR, 'reports')),
    only: splitPatterns(args.only),
    skip: splitPatterns(args.skip),
});

const selected = harness.select(checks);
if (selected.length === 0) {
    process.stderr.write(`no check matches --only ${args.only ?? ''} --skip ${args.skip ?? ''}; see --list\n`);
    process.exit(2);
}
await harness.setup();
harness.register(selected);
