// A test OIDC issuer on loopback: RSA (RS256) and EC P-256 (ES256) signing keys made with
// node:crypto, their public halves served as a JWKS at /jwks.json (fetches counted), key
// rotation, and a JWT signer that also makes the broken tokens a verifier must refuse (alg none,
// HMAC keyed with a public key, tampered payloads, foreign keys under a published kid).
//
// Invariant: only keys marked published appear in the JWKS; signing with an unpublished or
// foreign key is how a check makes a token ibex must not accept.
import http from 'node:http';
import crypto from 'node:crypto';

export const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function newKeyPair(alg) {
    if (alg === 'RS256') return crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    if (alg === 'ES256') return crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    throw new Error(`unsupported alg ${alg}`);
}

// The signature of data ('<header>.<payload>') for alg with key (a KeyObject, or the HMAC secret).
export function signature(alg, data, key) {
    switch (alg) {
        case 'none':
            return Buffer.alloc(0);
        case 'RS256':
            return crypto.sign('sha256', Buffer.from(data), key);
        case 'ES256':
            return crypto.sign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' }); // JOSE: r || s
        case 'HS256':
            return crypto.createHmac('sha256', key).update(data).digest();
        default:
            throw new Error(`unsupported alg ${alg}`);
    }
}

// A compact JWS from a header and payload (objects or already-encoded strings).
export function jws(header, payload, alg, key) {
    const data = `${typeof header === 'string' ? header : b64url(header)}.${typeof payload === 'string' ? payload : b64url(payload)}`;
    return `${data}.${signature(alg, data, key).toString('base64url')}`;
}

export class TestIssuer {
    constructor({ audience = 'ibex-e2e' } = {}) {
        this.audience = audience;
        this.keys = new Map(); // kid -> {alg, privateKey, publicKey, published}
        this.jwksFetches = 0;
        this.server = null;
        this.url = null;
        this.seq = 0;
    }

    async start() {
        this.server = http.createServer((req, res) => this.handle(req, res));
        await new Promise((resolve, reject) => {
            this.server.once('error', reject);
            this.server.listen({ host: '127.0.0.1', port: 0 }, resolve);
        });
        this.url = `http://127.0.0.1:${this.server.address().port}`;
        return this;
    }

    get jwksUrl() {
        return `${this.url}/jwks.json`;
    }

    handle(req, res) {
        const send = (status, body) => {
            const s = JSON.stringify(body);
            res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(s) });
            res.end(s);
        };
        const path = req.url.split('?')[0];
        if (req.method === 'GET' && path === '/jwks.json') {
            this.jwksFetches++;
            return send(200, this.jwks());
        }
        if (req.method === 'GET' && path === '/.well-known/openid-configuration')
            return send(200, { issuer: this.url, jwks_uri: this.jwksUrl, id_token_signing_alg_values_supported: ['RS256', 'ES256'] });
        return send(404, { error: 'not_found' });
    }

    async stop() {
        if (!this.server) return;
        this.server.closeAllConnections();
        await new Promise((resolve) => this.server.close(resolve));
        this.server = null;
    }

    // Makes a key pair; returns its kid. publish: whether the JWKS shows it.
    addKey(alg = 'RS256', { publish = true, kid } = {}) {
        const id = kid || `e2e-${alg.toLowerCase()}-${++this.seq}-${crypto.randomBytes(3).toString('hex')}`;
        const { privateKey, publicKey } = newKeyPair(alg);
        this.keys.set(id, { alg, privateKey, publicKey, published: publish });
        return id;
    }

    // A new published key of alg; every other key leaves the JWKS. Returns the new kid.
    rotate(alg = 'RS256') {
        for (const k of this.keys.values()) k.published = false;
        return this.addKey(alg);
    }

    jwks() {
        const keys = [];
        for (const [kid, k] of this.keys) {
            if (!k.published) continue;
            keys.push({ ...k.publicKey.export({ format: 'jwk' }), kid, alg: k.alg, use: 'sig' });
        }
        return { keys };
    }

    publicPem(kid) {
        return this.keys.get(kid).publicKey.export({ type: 'spki', format: 'pem' });
    }

    // Standard claims for a token ibex should accept; overrides replace or (undefined) remove them.
    claims({ tenantId, scope = 'chat', sub = 'e2e-subject', ttl = 300, ...overrides } = {}) {
        const t = Math.floor(Date.now() / 1000);
        const c = { iss: this.url, aud: this.audience, sub, tenant_id: tenantId, scope, iat: t, nbf: t - 5, exp: t + ttl };
        for (const [k, v] of Object.entries(overrides)) {
            if (v === undefined) delete c[k];
            else c[k] = v;
        }
        return c;
    }

    // A token for claims signed with the key kid. header: fields added to (or, undefined,
    // removed from) the JOSE header; key/alg: sign with another key or algorithm than kid's.
    sign(claims, { kid, header = {}, alg, key } = {}) {
        const k = this.keys.get(kid);
        if (!k && !(alg && key !== undefined)) throw new Error(`unknown kid ${kid}`);
        const a = alg || k.alg;
        const h = { alg: a, typ: 'JWT', kid };
        for (const [name, v] of Object.entries(header)) {
            if (v === undefined) delete h[name];
            else h[name] = v;
        }
        return jws(h, claims, a, key !== undefined ? key : k.privateKey);
    }
}
