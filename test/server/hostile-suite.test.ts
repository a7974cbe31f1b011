/**
 * Issue 11: the table-driven hostile-request suite. Each row is a request (method, raw path,
 * headers, raw body bytes, credentials — or a raw socket exchange for what an HTTP client library
 * would not send) and the answer it must get: the status and a TAXII error resource
 * (`application/taxii+json;version=2.1`, `title`, `http_status` equal to the status). After the
 * whole table: the server still answers, and no refused request stored anything (records counted
 * in the embedded store before and after, in every collection).
 *
 * Servers: Basic auth with the failure throttle off (the table floods bad credentials on purpose),
 * the same with the throttle on (a few rows check the 429), and OAuth2 bearer JWTs verified against
 * a fixed JWKS (keys made here with jose, so tokens can be forged in every way).
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import * as net from 'node:net';
import { randomUUID, generateKeyPairSync, createHmac } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { createTaxiiServer, type TaxiiServerConfig } from '../../lib/taxii/server';
import { NextTokens } from '../../lib/taxii/server-paging';
import { hashPassword } from '../../lib/auth/server-basic';
import type { Store } from '../../lib/store/store';
import { AUTH, COL_ANON, COL_MAIN, COL_SECRET, COL_TRUST, SECRET, TAXII, basic, indicator, listen, obj, testConfig, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

const ISSUER = 'https://idp.sets.test/realms/cti';
const AUDIENCE = 'taxii.sets.test';
const MAX_BODY = 1024 * 1024;
const BODY_TIMEOUT_MS = 1500;

export interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/** A request with the path sent verbatim (no URL normalisation), a 20 s timeout. */
export function rawRequest(port: number, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<RawReply> {
  const h: Record<string, string> = { Host: `127.0.0.1:${port}`, ...headers };
  if (body !== undefined && h['Content-Length'] === undefined) h['Content-Length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const r = http.request({ method, host: '127.0.0.1', port, path, headers: h, agent: false, timeout: 20_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error(`${method} ${path} timed out`)));
    r.on('error', reject);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

/**
 * A raw socket exchange: `send` writes what it wants; the answer is read until the server closes or
 * `waitMs` passes after the first response is complete. Returns every response found, parsed.
 */
function rawSocket(port: number, send: (s: net.Socket) => Promise<void>, waitMs = 300): Promise<RawReply[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let data = Buffer.alloc(0);
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      sock.destroy();
      try {
        resolve(parseResponses(data));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    };
    const guard = setTimeout(() => {
      settled = true;
      sock.destroy();
      reject(new Error(`raw exchange did not end within 20 s; got ${JSON.stringify(data.toString('latin1').slice(0, 300))}`));
    }, 20_000);
    let quiet: NodeJS.Timeout | undefined;
    sock.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      clearTimeout(quiet);
      quiet = setTimeout(done, waitMs);
    });
    sock.on('error', () => done());
    sock.on('close', () => done());
    sock.on('connect', () => {
      send(sock).catch(() => done());
    });
  });
}

function parseResponses(buf: Buffer): RawReply[] {
  const out: RawReply[] = [];
  let rest = buf.toString('latin1');
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.slice(0, end).split('\r\n');
    const status = Number(head[0].split(' ')[1]);
    const headers: http.IncomingHttpHeaders = {};
    for (const l of head.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    rest = rest.slice(end + 4);
    let body = '';
    const cl = headers['content-length'];
    if (typeof cl === 'string') {
      body = rest.slice(0, Number(cl));
      rest = rest.slice(Number(cl));
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const nl = rest.indexOf('\r\n');
        const n = parseInt(rest.slice(0, nl), 16);
        rest = rest.slice(nl + 2);
        if (!(n > 0)) {
          rest = rest.slice(2);
          break;
        }
        body += rest.slice(0, n);
        rest = rest.slice(n + 2);
      }
    } else {
      body = rest;
      rest = '';
    }
    const text = Buffer.from(body, 'latin1').toString('utf8');
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    out.push({ status, headers, text, json });
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** error: a TAXII error resource; status-failed: a status resource refusing every object; ok: a TAXII 200 */
type Shape = 'error' | 'status-failed' | 'ok';
type ServerName = 'basic' | 'throttled' | 'jwt';

interface Row {
  name: string;
  server?: ServerName;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** credentials: default alice (reader + writer); null: none */
  auth?: string | null;
  /** a raw socket exchange instead of a request; the first response is checked */
  raw?: (port: number) => Promise<RawReply[]>;
  /** send the same request this many times; the last reply is checked */
  repeat?: number;
  status: number;
  shape?: Shape;
  /** matched against the error's description (status-failed: against the whole status resource) */
  desc?: RegExp;
}

const OBJ = (col = COL_MAIN): string => `/api1/collections/${col}/objects/`;
const CT = { 'Content-Type': TAXII };
const env = (objects: unknown[]): string => JSON.stringify({ objects });
/** an envelope with one indicator whose JSON text gets `extra` spliced in */
const withRaw = (extra: string): string => {
  const t = JSON.stringify(indicator());
  return `{"objects":[${t.slice(0, -1)},${extra}}]}`;
};
type KeyLike = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
const nested = (depth: number, open: string, close: string, inner = '1'): string => open.repeat(depth) + inner + close.repeat(depth);

describe('TAXII server: the hostile-request table (issue 11)', function () {
  this.timeout(600_000);
  let ts: TestStore;
  const runs: Partial<Record<ServerName, Running>> = {};
  let rsaPriv: KeyLike;
  let otherPriv: KeyLike;
  let pubJwk: JWK;
  let pubPem: string;
  /** valid next tokens / cursors gathered from the seeded collection */
  let goodNext = '';
  let goodNextTyped = '';
  let cursorOfGood = '';
  let seeded = 0;
  const daveAuth = basic('dave', 'dave-pw'); // writer only (no reader role)

  async function config(store: Store, patch: (c: TaxiiServerConfig) => void): Promise<TaxiiServerConfig> {
    const cfg = await testConfig(store, { bodyTimeoutMs: BODY_TIMEOUT_MS });
    cfg.apiRoots['api1'].maxContentLength = MAX_BODY;
    patch(cfg);
    return cfg;
  }

  async function countAll(): Promise<number> {
    let n = 0;
    for (const col of [COL_MAIN, COL_TRUST, COL_ANON, COL_SECRET]) {
      let cursor: string | undefined;
      for (;;) {
        const p = await ts.store.query({ collection: col, versions: ['all'], includeInvalid: true, limit: 500, ...(cursor ? { cursor } : {}) });
        n += p.items.length;
        if (!p.more) break;
        cursor = p.cursor;
      }
    }
    return n;
  }

  before(async () => {
    ts = await makeStore();
    const daveHash = await hashPassword('dave-pw', { N: 1024 });
    const withDave = (c: TaxiiServerConfig): void => {
      c.auth.basic?.users.push({ username: 'dave', passwordHash: daveHash, roles: ['writer'] });
    };
    const start = async (cfg: TaxiiServerConfig): Promise<Running> => {
      const server = createTaxiiServer(cfg);
      return listen((req, res) => void server.handle(req, res));
    };
    runs.basic = await start(
      await config(ts.store, (c) => {
        withDave(c);
        c.auth.throttle = false;
      }),
    );
    runs.throttled = await start(await config(ts.store, withDave));

    const kp = await generateKeyPair('RS256');
    rsaPriv = kp.privateKey;
    otherPriv = (await generateKeyPair('RS256')).privateKey;
    pubJwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    pubPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    runs.jwt = await start(
      await config(ts.store, (c) => {
        c.auth = { realm: 'SETS test', throttle: false, oauth2: { jwks: { keys: [pubJwk] }, issuer: ISSUER, audience: AUDIENCE }, anonymousRead: false };
      }),
    );

    // seed: three indicators, so that limit=1 pages have next tokens
    for (let i = 0; i < 3; i++) {
      const r = await rawRequest(runs.basic.port, 'POST', OBJ(), { ...CT, Accept: TAXII, Authorization: AUTH.alice }, env([indicator()]));
      assert.equal(r.status, 202, r.text);
    }
    const page = await rawRequest(runs.basic.port, 'GET', `${OBJ()}?limit=1`, { Accept: TAXII, Authorization: AUTH.alice });
    goodNext = String(obj(page.json)['next']);
    const typed = await rawRequest(runs.basic.port, 'GET', `${OBJ()}?limit=1&match[type]=indicator`, { Accept: TAXII, Authorization: AUTH.alice });
    goodNextTyped = String(obj(typed.json)['next']);
    cursorOfGood = String((JSON.parse(Buffer.from(goodNext.split('.')[0], 'base64url').toString('utf8')) as { c: string }).c);
    assert.ok(goodNext.includes('.') && goodNextTyped.includes('.'));
    seeded = await countAll();
    assert.equal(seeded, 3);
  });

  after(async () => {
    for (const r of Object.values(runs)) await r?.close();
    await ts?.dispose();
  });

  // ---- tokens -----------------------------------------------------------------------------------
  const now = (): number => Math.floor(Date.now() / 1000);
  const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ realm_access: { roles: ['reader'] }, preferred_username: 'jwt-reader', ...extra });
  const jwt = async (opts: { key?: KeyLike; iss?: string; aud?: string; exp?: number | null; nbf?: number; roles?: string[]; kid?: string } = {}): Promise<string> => {
    const s = new SignJWT(claims(opts.roles ? { realm_access: { roles: opts.roles } } : {}))
      .setProtectedHeader({ alg: 'RS256', kid: opts.kid ?? 'k1', typ: 'at+jwt' })
      .setIssuer(opts.iss ?? ISSUER)
      .setAudience(opts.aud ?? AUDIENCE)
      .setIssuedAt()
      .setSubject('client-1');
    if (opts.exp !== null) s.setExpirationTime(opts.exp ?? now() + 300);
    if (opts.nbf !== undefined) s.setNotBefore(opts.nbf);
    return s.sign(opts.key ?? rsaPriv);
  };
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = (): string =>
    `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims(), iss: ISSUER, aud: AUDIENCE, exp: now() + 300, sub: 'x' })}.`;
  const hsWithPublicKey = (key: string): string => {
    const head = `${b64({ alg: 'HS256', typ: 'JWT', kid: 'k1' })}.${b64({ ...claims(), iss: ISSUER, aud: AUDIENCE, exp: now() + 300, sub: 'x' })}`;
    return `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`;
  };
  const tokenRows = async (): Promise<Row[]> => {
    const t = {
      good: await jwt(),
      forged: await jwt({ key: otherPriv }),
      tampered: (await jwt()).replace(/\.([^.]+)\./, (_m, p: string) => `.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString('utf8')), realm_access: { roles: ['reader', 'writer'] } })}.`),
      expired: await jwt({ exp: now() - 3600 }),
      noExp: await jwt({ exp: null }),
      notYet: await jwt({ nbf: now() + 3600 }),
      wrongIss: await jwt({ iss: 'https://evil.example/realms/cti' }),
      wrongAud: await jwt({ aud: 'another-service' }),
      unknownKid: await jwt({ kid: 'k2', key: otherPriv }),
      none: unsigned(),
      hsPem: hsWithPublicKey(pubPem),
      hsN: hsWithPublicKey(String(pubJwk.n)),
    };
    const get = (name: string, tok: string, desc?: RegExp): Row => ({ name: `JWT: ${name}`, server: 'jwt', path: OBJ(), auth: `Bearer ${tok}`, status: 401, ...(desc ? { desc } : {}) });
    return [
      get('signed by another key (forged signature)', t.forged),
      get('claims altered after signing (reader -> writer)', t.tampered),
      get('expired', t.expired, /exp/),
      get('without exp', t.noExp),
      get('not yet valid (nbf in an hour)', t.notYet, /nbf/),
      get('wrong issuer', t.wrongIss, /iss/),
      get('wrong audience', t.wrongAud, /aud/),
      get('unknown kid', t.unknownKid),
      get('alg none', t.none),
      get('HS256 keyed with the public key (PEM)', t.hsPem),
      get('HS256 keyed with the public key (JWK n)', t.hsN),
      get('not a JWT at all', 'abc.def.ghi'),
      { name: 'JWT: a valid reader token POSTs (role violation)', server: 'jwt', method: 'POST', path: OBJ(), headers: CT, body: env([indicator()]), auth: `Bearer ${t.good}`, status: 403 },
      { name: 'JWT: a valid reader token reads the secret collection', server: 'jwt', path: OBJ(COL_SECRET), auth: `Bearer ${t.good}`, status: 403 },
      { name: 'JWT: Basic credentials on a bearer-only server', server: 'jwt', path: OBJ(), auth: AUTH.alice, status: 401 },
    ];
  };

  // ---- next tokens ------------------------------------------------------------------------------
  const nextRows = (): Row[] => {
    const tokens = new NextTokens(SECRET, 3_600_000);
    const scope = `objects|api1|${COL_MAIN}|`;
    const expired = tokens.issue(scope, {}, cursorOfGood, Date.now() - 7_200_000);
    const forgedCursor = tokens.issue(scope, {}, 'not-a-cursor');
    const otherSecret = new NextTokens('another-secret-0123456789abcdef', 3_600_000).issue(scope, {}, cursorOfGood);
    const flipped = goodNext.slice(0, -2) + (goodNext.endsWith('AA') ? 'BB' : 'AA');
    const q = (next: string, extra = ''): string => `${OBJ()}?limit=1&next=${encodeURIComponent(next)}${extra}`;
    return [
      { name: 'next: garbage', path: q('garbage'), status: 400, desc: /malformed/ },
      { name: 'next: 8 KiB of garbage', path: q(`${'A'.repeat(4096)}.${'B'.repeat(4096)}`), status: 400, desc: /not one this server issued/ },
      { name: 'next: signature altered', path: q(flipped), status: 400, desc: /not one this server issued/ },
      { name: 'next: signed with another secret', path: q(otherSecret), status: 400, desc: /bad signature/ },
      { name: 'next: expired', path: q(expired), status: 400, desc: /expired/ },
      { name: 'next: for another collection', path: `${OBJ(COL_ANON)}?limit=1&next=${encodeURIComponent(goodNext)}`, status: 400, desc: /another endpoint/ },
      { name: 'next: for the manifest of another object endpoint (versions)', path: `/api1/collections/${COL_MAIN}/objects/indicator--${randomUUID()}/versions/?next=${encodeURIComponent(goodNext)}`, status: 400, desc: /another endpoint/ },
      { name: 'next: issued for other filters', path: q(goodNextTyped), status: 400, desc: /different filters/ },
      { name: 'next: filters added after the first page', path: q(goodNext, '&match[type]=malware'), status: 400, desc: /different filters/ },
      { name: 'next: validly signed but names no position', path: q(forgedCursor), status: 400, desc: /position/ },
    ];
  };

  // ---- the static table -------------------------------------------------------------------------
  const staticRows = (): Row[] => [
    // bad JSON
    { name: 'JSON: truncated', method: 'POST', path: OBJ(), headers: CT, body: '{"objects":[{"type":"indicator"', status: 400 },
    { name: 'JSON: empty body', method: 'POST', path: OBJ(), headers: CT, body: '', status: 400 },
    { name: 'JSON: trailing comma', method: 'POST', path: OBJ(), headers: CT, body: env([indicator()]).slice(0, -2) + ',]}', status: 400 },
    { name: 'JSON: NaN literal', method: 'POST', path: OBJ(), headers: CT, body: withRaw('"x_n":NaN'), status: 400 },
    { name: 'JSON: single quotes', method: 'POST', path: OBJ(), headers: CT, body: "{'objects':[]}", status: 400 },
    { name: 'JSON: two documents', method: 'POST', path: OBJ(), headers: CT, body: env([indicator()]) + env([indicator()]), status: 400 },
    { name: 'JSON: null', method: 'POST', path: OBJ(), headers: CT, body: 'null', status: 422 },
    { name: 'JSON: a list instead of an envelope', method: 'POST', path: OBJ(), headers: CT, body: JSON.stringify([indicator()]), status: 422 },
    { name: 'JSON: objects is a string', method: 'POST', path: OBJ(), headers: CT, body: '{"objects":"x"}', status: 422 },
    { name: 'JSON: objects is empty', method: 'POST', path: OBJ(), headers: CT, body: '{"objects":[]}', status: 422 },
    { name: 'JSON: a bare STIX object', method: 'POST', path: OBJ(), headers: CT, body: JSON.stringify(indicator()), status: 422 },
    { name: 'JSON: a bundle with a bad id', method: 'POST', path: OBJ(), headers: CT, body: JSON.stringify({ type: 'bundle', id: 'bundle--x', objects: [indicator()] }), status: 422 },
    { name: 'JSON: duplicate member name', method: 'POST', path: OBJ(), headers: CT, body: withRaw('"name":"a","name":"b"'), status: 400, desc: /duplicate/ },
    { name: 'JSON: duplicate "objects"', method: 'POST', path: OBJ(), headers: CT, body: `{"objects":[],"objects":${JSON.stringify([indicator()])}}`, status: 400, desc: /duplicate/ },
    { name: 'JSON: integer 2^64', method: 'POST', path: OBJ(), headers: CT, body: withRaw('"x_n":18446744073709551616'), status: 400, desc: /18446744073709551616/ },
    { name: 'JSON: number overflowing a double', method: 'POST', path: OBJ(), headers: CT, body: withRaw('"x_n":-1e999'), status: 400 },
    { name: 'UTF-8: a lone continuation byte', method: 'POST', path: OBJ(), headers: CT, body: Buffer.concat([Buffer.from(withRaw('"x_s":"').slice(0, -3)), Buffer.from([0x80]), Buffer.from('"}]}')]), status: 400, desc: /UTF-8/ },
    { name: 'UTF-8: an encoded surrogate (CESU)', method: 'POST', path: OBJ(), headers: CT, body: Buffer.concat([Buffer.from(withRaw('"x_s":"').slice(0, -3)), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}]}')]), status: 400, desc: /UTF-8/ },
    { name: 'UTF-8: a lone surrogate escape in a member name', method: 'POST', path: OBJ(), headers: CT, body: withRaw('"x_\\udc00":1'), status: 400, desc: /surrogate/ },
    // media types
    { name: 'Content-Type missing', method: 'POST', path: OBJ(), body: env([indicator()]), status: 415 },
    { name: 'Content-Type application/json', method: 'POST', path: OBJ(), headers: { 'Content-Type': 'application/json' }, body: env([indicator()]), status: 415 },
    { name: 'Content-Type TAXII 2.0', method: 'POST', path: OBJ(), headers: { 'Content-Type': 'application/taxii+json;version=2.0' }, body: env([indicator()]), status: 415 },
    { name: 'Content-Type text/plain', method: 'POST', path: OBJ(), headers: { 'Content-Type': 'text/plain' }, body: env([indicator()]), status: 415 },
    { name: 'Content-Type STIX for an envelope (not a bundle)', method: 'POST', path: OBJ(), headers: { 'Content-Type': 'application/stix+json;version=2.1' }, body: env([indicator()]), status: 415 },
    { name: 'Content-Encoding gzip', method: 'POST', path: OBJ(), headers: { ...CT, 'Content-Encoding': 'gzip' }, body: env([indicator()]), status: 415 },
    { name: 'Accept text/html', path: OBJ(), headers: { Accept: 'text/html' }, status: 406 },
    { name: 'Accept TAXII 2.0', path: OBJ(), headers: { Accept: 'application/taxii+json;version=2.0' }, status: 406 },
    { name: 'Accept application/json only', method: 'POST', path: OBJ(), headers: { ...CT, Accept: 'application/json' }, body: env([indicator()]), status: 406 },
    // sizes and shapes
    { name: 'body over max_content_length', method: 'POST', path: OBJ(), headers: CT, body: withRaw(`"x_s":"${'a'.repeat(MAX_BODY)}"`), status: 413 },
    { name: 'Content-Length claims over max_content_length', raw: (port) => rawSocket(port, async (s) => void s.write(`POST ${OBJ()} HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\nAuthorization: ${AUTH.alice}\r\nContent-Length: ${MAX_BODY * 100}\r\n\r\n{`)), path: OBJ(), status: 413 },
    { name: 'huge array: 200,000 numbers as labels', method: 'POST', path: OBJ(), headers: CT, body: withRaw(`"labels":[${new Array<string>(200_000).fill('1').join(',')}]`), status: 202, shape: 'status-failed' },
    { name: 'huge array: 100,000 empty objects as the envelope', method: 'POST', path: OBJ(), headers: CT, body: `{"objects":[${new Array<string>(100_000).fill('{}').join(',')}]}`, status: 202, shape: 'status-failed' },
    { name: 'huge array: 200,000 bare numbers in objects', method: 'POST', path: OBJ(), headers: CT, body: `{"objects":[${new Array<string>(200_000).fill('0').join(',')}]}`, status: 202, shape: 'status-failed' },
    // nesting: JSON.parse and the strict scan are not recursive; hashing refuses beyond 1000 levels
    { name: 'deep nesting: 100,000 arrays as the body', method: 'POST', path: OBJ(), headers: CT, body: nested(100_000, '[', ']'), status: 422 },
    { name: 'deep nesting: 100,000 objects as the body', method: 'POST', path: OBJ(), headers: CT, body: nested(100_000, '{"a":', '}'), status: 422 },
    { name: 'deep nesting: 100,000 arrays in an object property', method: 'POST', path: OBJ(), headers: CT, body: withRaw(`"x_deep":${nested(100_000, '[', ']')}`), status: 202, shape: 'status-failed', desc: /nesting deeper than 1000/ },
    { name: 'deep nesting: 50,000 objects in an object property', method: 'POST', path: OBJ(), headers: CT, body: withRaw(`"x_deep":${nested(50_000, '{"a":', '}')}`), status: 202, shape: 'status-failed', desc: /nesting deeper than 1000/ },
    { name: 'deep nesting: 100,000 arrays as the objects list', method: 'POST', path: OBJ(), headers: CT, body: `{"objects":${nested(100_000, '[', ']')}}`, status: 202, shape: 'status-failed' },
    // invalid STIX: accepted as an envelope, every object refused in the status resource
    { name: 'STIX: bad id', method: 'POST', path: OBJ(), headers: CT, body: env([indicator('indicator--not-a-uuid')]), status: 202, shape: 'status-failed' },
    { name: 'STIX: id of another type', method: 'POST', path: OBJ(), headers: CT, body: env([{ ...indicator(), type: 'malware' }]), status: 202, shape: 'status-failed' },
    { name: 'STIX: bad type', method: 'POST', path: OBJ(), headers: CT, body: env([{ ...indicator(), type: 'Indicator!' }]), status: 202, shape: 'status-failed' },
    { name: 'STIX: missing spec_version', method: 'POST', path: OBJ(), headers: CT, body: env([{ ...indicator(), spec_version: undefined }]), status: 202, shape: 'status-failed' },
    { name: 'STIX: spec_version 9.9', method: 'POST', path: OBJ(), headers: CT, body: env([indicator(undefined, undefined, { spec_version: '9.9' })]), status: 202, shape: 'status-failed' },
    { name: 'STIX: bad modified timestamp', method: 'POST', path: OBJ(), headers: CT, body: env([indicator(undefined, '2024-13-45T99:00:00Z')]), status: 202, shape: 'status-failed' },
    { name: 'STIX: modified before created', method: 'POST', path: OBJ(), headers: CT, body: env([indicator(undefined, '2000-01-01T00:00:00.000Z')]), status: 202, shape: 'status-failed' },
    { name: 'STIX: not an object', method: 'POST', path: OBJ(), headers: CT, body: '{"objects":[1,"x",null,[]]}', status: 202, shape: 'status-failed' },
    { name: 'STIX: id with SQL in it', method: 'POST', path: OBJ(), headers: CT, body: env([indicator("indicator--' OR 1=1--")]), status: 202, shape: 'status-failed' },
    // filters
    { name: 'filter: match[type] empty', path: `${OBJ()}?match[type]=`, status: 400 },
    { name: 'filter: match[type] with metacharacters', path: `${OBJ()}?match[type]=${encodeURIComponent('.*|indicator')}`, status: 400 },
    { name: 'filter: match[id] not an identifier', path: `${OBJ()}?match[id]=${encodeURIComponent("x' OR '1'='1")}`, status: 400 },
    { name: 'filter: added_after not a timestamp', path: `${OBJ()}?added_after=yesterday`, status: 400 },
    { name: 'filter: added_after impossible date', path: `${OBJ()}?added_after=2024-02-30T25:61:00Z`, status: 400 },
    { name: 'filter: limit=-1', path: `${OBJ()}?limit=-1`, status: 400 },
    { name: 'filter: limit=0', path: `${OBJ()}?limit=0`, status: 400 },
    { name: 'filter: limit=abc', path: `${OBJ()}?limit=abc`, status: 400 },
    { name: 'filter: limit 10^20 (lowered to the page size, not refused)', path: `${OBJ()}?limit=100000000000000000000`, status: 200, shape: 'ok' },
    { name: 'filter: limit with a sign', path: `${OBJ()}?limit=%2B5`, status: 400 },
    { name: 'filter: limit twice, different', path: `${OBJ()}?limit=1&limit=2`, status: 400 },
    { name: 'filter: match[version] bogus', path: `${OBJ()}?match[version]=yesterday`, status: 400 },
    { name: 'filter: match[spec_version] bogus', path: `${OBJ()}?match[spec_version]=2.x`, status: 400 },
    { name: 'filter: unknown match[...]', path: `${OBJ()}?match[name]=x`, status: 400 },
    { name: 'filter: match[id] on the object endpoint', path: `${OBJ()}indicator--${randomUUID()}/?match[id]=indicator--${randomUUID()}`, status: 400 },
    // paths
    { name: 'path: ../ out of the API root', path: `/api1/../../etc/passwd`, status: 404 },
    { name: 'path: %2e%2e', path: `/api1/collections/%2e%2e/%2e%2e/`, status: 404 },
    { name: 'path: %2e%2e to another collection', path: `/api1/collections/${COL_MAIN}/%2e%2e/${COL_SECRET}/objects/`, status: 404 },
    // empty segments are collapsed by the router: the secret collection stays secret
    { name: 'path: double slashes to the secret collection', path: `//api1//collections//${COL_SECRET}//objects//`, status: 403 },
    { name: 'path: double slashes to a forbidden collection (reader of nothing)', path: `//api1//collections//${COL_MAIN}//objects//`, auth: AUTH.carol, status: 403 },
    { name: 'path: encoded slash in the collection id', path: `/api1/collections/${COL_MAIN}%2Fobjects/`, status: 404 },
    { name: 'path: unknown API root', path: `/nope/collections/${COL_MAIN}/objects/`, status: 404 },
    { name: 'path: collection id with SQL', path: `/api1/collections/${encodeURIComponent("x' OR '1'='1")}/objects/`, status: 404 },
    { name: 'path: collection id as a regex', path: `/api1/collections/${encodeURIComponent('.*')}/objects/`, status: 404 },
    { name: 'path: collection id with a NUL', path: `/api1/collections/${COL_MAIN}%00/objects/`, status: 404 },
    { name: 'path: object id with a NUL', path: `${OBJ()}indicator--${randomUUID()}%00/`, status: 404 },
    { name: 'path: bad percent-encoding', path: `/api1/collections/%E0%A4%A/objects/`, status: 404 },
    { name: 'path: absolute-form to another host', path: `http://evil.example/api1/collections/${COL_SECRET}/objects/`, status: 403 },
    // methods
    { name: 'method: PUT on objects', method: 'PUT', path: OBJ(), headers: CT, body: env([indicator()]), status: 405 },
    { name: 'method: DELETE on a collection', method: 'DELETE', path: `/api1/collections/${COL_MAIN}/`, status: 405 },
    { name: 'method: POST on discovery', method: 'POST', path: '/taxii2/', headers: CT, body: env([indicator()]), status: 405 },
    // roles and credentials
    { name: 'role: reader POSTs', method: 'POST', path: OBJ(), headers: CT, body: env([indicator()]), auth: AUTH.bob, status: 403 },
    { name: 'role: no roles POSTs', method: 'POST', path: OBJ(), headers: CT, body: env([indicator()]), auth: AUTH.carol, status: 403 },
    { name: 'role: no roles reads', path: OBJ(), auth: AUTH.carol, status: 403 },
    { name: 'role: writer of Main reads Trusted (write-only)', path: OBJ(COL_TRUST), auth: daveAuth, status: 403 },
    { name: 'role: writer deletes without read', method: 'DELETE', path: `${OBJ(COL_TRUST)}indicator--${randomUUID()}/`, auth: daveAuth, status: 403 },
    { name: 'role: writer of Main reads a Trusted object', path: `${OBJ(COL_TRUST)}indicator--${randomUUID()}/`, auth: daveAuth, status: 403 },
    { name: 'role: writer of Main reads the Trusted manifest', path: `/api1/collections/${COL_TRUST}/manifest/`, auth: daveAuth, status: 403 },
    { name: 'role: anyone reads the secret collection', path: OBJ(COL_SECRET), auth: AUTH.alice, status: 403 },
    { name: 'role: anonymous POSTs', method: 'POST', path: OBJ(COL_ANON), headers: CT, body: env([indicator()]), auth: null, status: 401 },
    { name: 'role: anonymous reads a members-only collection', path: OBJ(), auth: null, status: 401 },
    { name: 'credentials: wrong password', path: OBJ(), auth: basic('alice', 'wrong'), status: 401 },
    { name: 'credentials: unknown user', path: OBJ(), auth: basic('mallory', 'x'), status: 401 },
    { name: 'credentials: malformed Basic', path: OBJ(), auth: 'Basic !!!not-base64', status: 401 },
    { name: 'credentials: unknown scheme', path: OBJ(), auth: 'Digest username="alice"', status: 401 },
    { name: 'credentials: 30 wrong passwords in a row, throttle off', path: OBJ(), auth: basic('alice', 'nope'), repeat: 30, status: 401 },
    { name: 'throttle: 12 wrong passwords, the last one throttled', server: 'throttled', path: OBJ(), auth: basic('mallory', 'guess'), repeat: 12, status: 429 },
    { name: 'throttle: a throttled address is refused even with good credentials', server: 'throttled', path: OBJ(), status: 429 },
    { name: 'throttle: a throttled POST stores nothing', server: 'throttled', method: 'POST', path: OBJ(), headers: CT, body: env([indicator()]), status: 429 },
    // HTTP framing (raw sockets)
    {
      name: 'framing: body longer than Content-Length (the rest is a smuggled unauthenticated POST)',
      path: OBJ(),
      status: 400,
      raw: async (port) => {
        const smuggled = `POST ${OBJ()} HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\nContent-Length: ${env([indicator()]).length}\r\n\r\n${env([indicator()])}`;
        const first = '{"objects":[';
        const replies = await rawSocket(port, async (s) =>
          void s.write(`POST ${OBJ()} HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\nAuthorization: ${AUTH.alice}\r\nContent-Length: ${first.length}\r\n\r\n${first}${smuggled}`),
        );
        assert.equal(replies.length, 2, 'two responses: the truncated body, then the smuggled request');
        assert.equal(replies[1].status, 401, 'the smuggled request has no credentials of its own');
        return replies;
      },
    },
    {
      name: 'framing: body shorter than Content-Length, then silence (timed out)',
      path: OBJ(),
      status: 408,
      raw: (port) =>
        rawSocket(port, async (s) => void s.write(`POST ${OBJ()} HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\nAuthorization: ${AUTH.alice}\r\nContent-Length: 5000\r\n\r\n{"objects":[`)),
    },
    {
      name: 'framing: slow body, one byte every 100 ms (timed out)',
      path: OBJ(),
      status: 408,
      raw: (port) =>
        rawSocket(port, async (s) => {
          const body = env([indicator()]);
          s.write(`POST ${OBJ()} HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\nAuthorization: ${AUTH.alice}\r\nContent-Length: ${body.length}\r\n\r\n`);
          for (let i = 0; i < body.length - 1 && !s.destroyed; i++) {
            s.write(body[i]);
            await sleep(100);
          }
        }),
    },
    {
      name: 'framing: slow chunked body without an end (timed out)',
      path: OBJ(),
      status: 408,
      raw: (port) =>
        rawSocket(port, async (s) => {
          s.write(`POST ${OBJ()} HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\nAuthorization: ${AUTH.alice}\r\nTransfer-Encoding: chunked\r\n\r\n`);
          for (let i = 0; i < 100 && !s.destroyed; i++) {
            s.write('1\r\n[\r\n');
            await sleep(100);
          }
        }),
    },
    {
      name: 'framing: chunked body beyond max_content_length',
      path: OBJ(),
      status: 413,
      raw: (port) =>
        rawSocket(port, async (s) => {
          s.write(`POST ${OBJ()} HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\nAuthorization: ${AUTH.alice}\r\nTransfer-Encoding: chunked\r\n\r\n`);
          const chunk = 'a'.repeat(64 * 1024);
          for (let i = 0; i < 40 && !s.destroyed; i++) s.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        }),
    },
  ];

  it('answers every row of the table with the right status and a TAXII error resource; nothing is stored; the server lives', async () => {
    const rows = [...staticRows(), ...nextRows(), ...(await tokenRows())];
    console.log(`      hostile table: ${rows.length} cases`);
    assert.ok(rows.length >= 40);
    const wrong: string[] = [];
    for (const row of rows) {
      const run = runs[row.server ?? 'basic'];
      assert.ok(run);
      let reply: RawReply | undefined;
      try {
        if (row.raw) {
          reply = (await row.raw(run.port))[0];
        } else {
          const headers: Record<string, string> = { Accept: TAXII, ...(row.headers ?? {}) };
          const auth = row.auth === undefined ? AUTH.alice : row.auth;
          if (auth !== null) headers['Authorization'] = auth;
          for (let i = 0; i < (row.repeat ?? 1); i++) reply = await rawRequest(run.port, row.method ?? 'GET', row.path, headers, row.body);
        }
      } catch (err) {
        wrong.push(`${row.name}: ${(err as Error).message}`);
        continue;
      }
      if (!reply) {
        wrong.push(`${row.name}: no response`);
        continue;
      }
      const problems: string[] = [];
      if (reply.status !== row.status) problems.push(`status ${reply.status}, expected ${row.status}`);
      const shape = row.shape ?? 'error';
      {
        if (reply.headers['content-type'] !== TAXII) problems.push(`content-type ${String(reply.headers['content-type'])}`);
        const j = reply.json;
        if (typeof j !== 'object' || j === null) problems.push('no JSON body');
        else if (shape === 'error') {
          const e = j as Record<string, unknown>;
          if (typeof e['title'] !== 'string' || e['title'] === '') problems.push('no title');
          if (e['http_status'] !== String(reply.status)) problems.push(`http_status ${String(e['http_status'])}`);
          if (row.desc && !row.desc.test(String(e['description']))) problems.push(`description ${JSON.stringify(e['description'])} !~ ${String(row.desc)}`);
        } else if (shape === 'status-failed') {
          const s = j as Record<string, unknown>;
          if (row.desc && !row.desc.test(reply.text)) problems.push(`status resource does not match ${String(row.desc)}`);
          if (s['success_count'] !== 0 || !(Number(s['failure_count']) > 0) || s['pending_count'] !== 0) {
            problems.push(`status resource ${JSON.stringify({ success: s['success_count'], failure: s['failure_count'], pending: s['pending_count'] })}`);
          }
        }
      }
      if (problems.length) wrong.push(`${row.name}: ${problems.join('; ')} — ${reply.text.slice(0, 200)}`);
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${rows.length} rows answered wrongly:\n${wrong.join('\n')}`);

    // the server still answers, on every instance, and nothing was stored by any refused request
    for (const [name, run] of Object.entries(runs)) {
      const r = await rawRequest(run.port, 'GET', '/taxii2/', { Accept: TAXII, Authorization: name === 'jwt' ? `Bearer ${await jwt()}` : AUTH.bob });
      assert.equal(r.status, name === 'throttled' ? 429 : 200, `${name}: ${r.text}`);
    }
    assert.equal(await countAll(), seeded, 'no refused request stored anything');
    const ok = await rawRequest((runs.basic as Running).port, 'GET', `${OBJ()}?limit=10`, { Accept: TAXII, Authorization: AUTH.bob });
    assert.equal(ok.status, 200);
  });
});
