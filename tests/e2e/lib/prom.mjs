// Prometheus text exposition format (0.0.4): enough of a parser to read samples and their labels.

// Returns {samples: [{name, labels, value}], types: {family: type}}.
export function parseProm(text) {
    const samples = [];
    const types = {};
    for (const raw of text.split('\n')) {
        const line = raw.trim();
        if (!line) continue;
        if (line.startsWith('#')) {
            const m = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);
            if (m) types[m[1]] = m[2];
            continue;
        }
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/.exec(line);
        if (!m) throw new Error(`bad metrics line: ${JSON.stringify(line)}`);
        samples.push({ name: m[1], labels: parseLabels(m[3] || ''), value: parseValue(m[4]) });
    }
    return { samples, types };
}

function parseValue(s) {
    if (s === '+Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    if (s === 'NaN') return NaN;
    const v = Number(s);
    if (Number.isNaN(v)) throw new Error(`bad sample value ${s}`);
    return v;
}

function parseLabels(s) {
    const labels = {};
    const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;
    let m;
    while ((m = re.exec(s)) !== null) {
        labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        if (re.lastIndex >= s.length) break;
    }
    return labels;
}

// Sum of the samples of name whose labels satisfy match (an object of exact values or
// predicates).
export function sumSamples(parsed, name, match = {}) {
    let sum = 0;
    let found = false;
    for (const s of parsed.samples) {
        if (s.name !== name) continue;
        const ok = Object.entries(match).every(([k, v]) => (typeof v === 'function' ? v(s.labels[k]) : s.labels[k] === v));
        if (ok) {
            sum += s.value;
            found = true;
        }
    }
    return found ? sum : null;
}

export function hasFamily(parsed, name) {
    return parsed.samples.some((s) => s.name === name || s.name.startsWith(`${name}_`));
}
