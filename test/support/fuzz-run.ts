/**
 * The TAXII server fuzz engine (issue 11): generated envelopes and query strings against a running
 * server over real HTTP. Used by test/server/fuzz.test.ts (a short run in CI) and scripts/fuzz.ts
 * (`npm run fuzz`, 100,000 cases on demand).
 *
 * Cases come from a small seeded PRNG (mulberry32), so a failing case is reproduced by its seed
 * and index. Mutations of valid envelopes: keys dropped, duplicated (in the raw text), retagged,
 * values replaced by random unicode (lone surrogates, controls, astral), numbers at the edges
 * (±2^53, 1e308, 5e-324, -0, 1e400), deep nesting, truncation, raw invalid UTF-8 bytes, wrong
 * media types; query strings from every TAXII filter and unknown ones with random values; a few
 * random paths and credentials.
 *
 * A crash is: a 5xx other than 503 (a 503 is the hashing gate's "busy, retry": counted), a
 * response that is not a TAXII JSON resource, or a socket error / hang-up / timeout.
 */
import * as http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { createTaxiiServer, type TaxiiServer } from '../../lib/taxii/server';
import { hashPassword } from '../../lib/auth/server-basic';
import { EmbeddedStore } from '../../lib/store/embedded';

export const TAXII = 'application/taxii+json;version=2.1';
export const FUZZ_COL = '7a1c0de5-0b0a-4c07-9ad0-555555555555';
export const FUZZ_COL_RO = '7a1c0de5-0b0a-4c07-9ad0-666666666666';
const WRITER = 'Basic ' + Buffer.from('fuzzer:fuzz-pw').toString('base64');
const READER = 'Basic ' + Buffer.from('reader:read-pw').toString('base64');

// ---- PRNG -----------------------------------------------------------------------------------------

export type Rng = () => number;

/** mulberry32: a small, fast, seeded PRNG (uniform in [0, 1)) */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** percent-encode the UTF-8 bytes of `s` (lone surrogates become U+FFFD, as any client would send) */
function pct(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** keep printable ASCII as is (so `[`, `]`, `%`, `,` reach the server raw), encode the rest */
function rawish(s: string): string {
  let out = '';
  for (const ch of s) out += /^[\x21-\x7e]$/.test(ch) ? ch : pct(ch);
  return out;
}

const int = (r: Rng, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];

// ---- values ---------------------------------------------------------------------------------------

const EDGE_NUMBERS = [
  '0', '-0', '1', '-1', '9007199254740991', '-9007199254740991', '9007199254740992', '9007199254740993', '-9007199254740993',
  '18446744073709551616', '1e308', '1.7976931348623157e308', '1e309', '-1e400', '5e-324', '1e-400', '0.1', '1E2', '1e+2',
  '123456789012345678901234567890', '0.000000000000000000001', '2.5', '-2.5e-3',
];

function randomString(r: Rng): string {
  const n = int(r, 24);
  let s = '';
  for (let i = 0; i < n; i++) {
    switch (int(r, 8)) {
      case 0:
        s += String.fromCharCode(int(r, 0x20)); // control
        break;
      case 1:
        s += String.fromCharCode(0xd800 + int(r, 0x800)); // lone surrogate
        break;
      case 2:
        s += String.fromCodePoint(0x10000 + int(r, 0xfffff)); // astral
        break;
      case 3:
        s += pick(r, ['"', '\\', '/', '\u2028', '\u2029', '\uFEFF', '\uFFFF', '\u0000', '%', "'", '--', '$', '.', '[', ']']);
        break;
      case 4:
        s += String.fromCharCode(0x80 + int(r, 0xff80));
        break;
      default:
        s += String.fromCharCode(0x20 + int(r, 0x5f));
    }
  }
  return s;
}

/** a JSON text for a random value (some of it not I-JSON on purpose) */
function randomValueText(r: Rng, depth = 0): string {
  switch (int(r, depth > 3 ? 5 : 8)) {
    case 0:
      return pick(r, EDGE_NUMBERS);
    case 1:
      return JSON.stringify(randomString(r));
    case 2:
      return pick(r, ['true', 'false', 'null']);
    case 3:
      return JSON.stringify(pick(r, ['2024-01-01T00:00:00Z', '2024-13-01T00:00:00Z', '1970-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999999Z', '2024-02-30T00:00:00Z', '']));
    case 4:
      return `"\\ud${int(r, 2) ? 'c' : '8'}00"`; // escaped lone surrogate
    case 5:
      return `[${Array.from({ length: int(r, 4) }, () => randomValueText(r, depth + 1)).join(',')}]`;
    case 6:
      return `{${Array.from({ length: int(r, 4) }, () => `${JSON.stringify(randomString(r))}:${randomValueText(r, depth + 1)}`).join(',')}}`;
    default: {
      const d = pick(r, [10, 500, 1001, 5000, 20_000]);
      return '['.repeat(d) + '1' + ']'.repeat(d);
    }
  }
}

function validObject(r: Rng): Record<string, unknown> {
  const base = { spec_version: '2.1', created: '2024-01-01T00:00:00.000Z', modified: `2024-01-0${1 + int(r, 9)}T00:00:00.000Z` };
  switch (int(r, 4)) {
    case 0:
      return { type: 'indicator', id: `indicator--${randomUUID()}`, ...base, name: 'fuzz', pattern: "[ipv4-addr:value = '10.0.0.1']", pattern_type: 'stix', valid_from: '2024-01-01T00:00:00Z' };
    case 1:
      return { type: 'malware', id: `malware--${randomUUID()}`, ...base, name: 'bad', is_family: false };
    case 2:
      return { type: 'identity', id: `identity--${randomUUID()}`, ...base, name: 'org', identity_class: 'organization' };
    default:
      return { type: 'ipv4-addr', spec_version: '2.1', id: `ipv4-addr--${randomUUID()}`, value: `10.0.${int(r, 256)}.${int(r, 256)}` };
  }
}

/** member texts of an object, mutated */
function mutateObjectText(r: Rng, o: Record<string, unknown>): string {
  let members = Object.entries(o).map(([k, v]) => [JSON.stringify(k), JSON.stringify(v)] as [string, string]);
  const n = 1 + int(r, 4);
  for (let i = 0; i < n; i++) {
    const j = int(r, Math.max(members.length, 1));
    switch (int(r, 9)) {
      case 0: // drop a key
        members.splice(j, 1);
        break;
      case 1: // duplicate a key (with another or the same value)
        if (members[j]) members.push([members[j][0], int(r, 2) ? members[j][1] : randomValueText(r)]);
        break;
      case 2: // retag a key
        if (members[j]) members[j] = [JSON.stringify(pick(r, ['id', 'type', 'spec_version', 'modified', 'created', 'x_' + randomString(r), randomString(r), 'Type', 'ID']) ), members[j][1]];
        break;
      case 3: // replace a value
        if (members[j]) members[j] = [members[j][0], randomValueText(r)];
        break;
      case 4: // add a custom property
        members.push([JSON.stringify(`x_${int(r, 1000)}`), randomValueText(r)]);
        break;
      case 5: // escaped spelling of an existing name (a duplicate only a strict parser sees)
        if (members[j]) {
          const name = JSON.parse(members[j][0]) as string; // member names here are always valid JSON string texts
          if (name !== '') members.push([`"\\u${name.charCodeAt(0).toString(16).padStart(4, '0')}${JSON.stringify(name.slice(1)).slice(1)}`, randomValueText(r)]);
        }
        break;
      case 6: // id of another type / malformed id
        members.push(['"id"', JSON.stringify(pick(r, [`malware--${randomUUID()}`, 'indicator--x', `indicator--${randomUUID().toUpperCase()}`, '', 'x'.repeat(300)]))]);
        members = members.filter((m, k) => m[0] !== '"id"' || k === members.length - 1);
        break;
      case 7: // a number at the edge in a standard property
        members.push([JSON.stringify(pick(r, ['confidence', 'number_observed', 'x_n', 'revoked'])), pick(r, EDGE_NUMBERS)]);
        break;
      default: // shuffle
        members.sort(() => r() - 0.5);
    }
  }
  return `{${members.map(([k, v]) => `${k}:${v}`).join(',')}}`;
}

export interface FuzzCase {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

/** Case `i` of the run with `seed` (independent of the others: reproducible alone). */
export function generateCase(seed: number, i: number): FuzzCase {
  const r = mulberry32((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
  const headers: Record<string, string> = { Accept: TAXII, Authorization: WRITER };
  const kind = r();
  if (kind < 0.55) {
    // POST a mutated envelope
    const objs: string[] = [];
    const count = 1 + int(r, 3);
    for (let k = 0; k < count; k++) objs.push(int(r, 4) === 0 ? JSON.stringify(validObject(r)) : mutateObjectText(r, validObject(r)));
    let text = `{"objects":[${objs.join(',')}]}`;
    const wrap = int(r, 12);
    if (wrap === 0) text = `{"type":"bundle","id":"bundle--${randomUUID()}","spec_version":"2.1","objects":[${objs.join(',')}]}`;
    else if (wrap === 1) text = `{"objects":[${objs.join(',')}],"objects":[]}`;
    else if (wrap === 2) text = text.slice(0, int(r, text.length)); // truncated
    else if (wrap === 3) text = `{"objects":${randomValueText(r)}}`;
    else if (wrap === 4) text = randomValueText(r);
    let body = Buffer.from(text, 'utf8');
    if (int(r, 10) === 0) {
      // raw bytes that are not valid UTF-8 somewhere inside
      const at = int(r, body.length + 1);
      const bad = pick(r, [[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xff], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]);
      body = Buffer.concat([body.subarray(0, at), Buffer.from(bad), body.subarray(at)]);
    }
    headers['Content-Type'] = int(r, 15) === 0 ? pick(r, ['application/json', 'application/stix+json;version=2.1', 'text/plain', 'application/taxii+json;version=2.0', 'application/taxii+json; version=2.1']) : TAXII;
    if (int(r, 30) === 0) headers['Authorization'] = READER;
    return { method: 'POST', path: `/api1/collections/${int(r, 10) === 0 ? FUZZ_COL_RO : FUZZ_COL}/objects/`, headers, body };
  }
  if (kind < 0.95) {
    // GET with a generated query string
    const names = ['added_after', 'limit', 'next', 'match[id]', 'match[type]', 'match[version]', 'match[spec_version]', 'match[foo]', 'x', 'match[', 'limit[]'];
    const values = (name: string): string => {
      if (int(r, 3) === 0) return randomString(r);
      switch (name) {
        case 'added_after':
          return pick(r, ['2024-01-01T00:00:00Z', '2024-01-01T00:00:00.123456Z', '2024-01-01', '0', 'now', '2024-01-01T00:00:00+25:00', '99999-01-01T00:00:00Z']);
        case 'limit':
          return pick(r, ['1', '0', '-1', 'abc', '1e3', '100000000000000000000', ' 5', '5.5', '']);
        case 'next':
          return pick(r, ['', 'x', 'a.b', `${Buffer.from('{"v":1}').toString('base64url')}.AAAA`]);
        case 'match[id]':
          return pick(r, [`indicator--${randomUUID()}`, 'indicator--x', `,,indicator--${randomUUID()},`, '*']);
        case 'match[type]':
          return pick(r, ['indicator', 'malware,identity', '', 'Indicator', '.*', 'ipv4-addr']);
        case 'match[version]':
          return pick(r, ['all', 'first', 'last', 'first,last', '2024-01-01T00:00:00.000Z', 'yesterday', '']);
        case 'match[spec_version]':
          return pick(r, ['2.1', '2.0', '2.0,2.1', '3', '']);
        default:
          return randomString(r);
      }
    };
    const parts: string[] = [];
    const n = int(r, 5);
    for (let k = 0; k < n; k++) {
      const name = pick(r, names);
      const enc = int(r, 6) === 0 ? rawish : pct;
      let part = `${enc(name)}=${enc(values(name))}`;
      if (int(r, 15) === 0) part += pick(r, ['%FF', '%C0%AF', '%ED%A0%80', '%', '%G1', '%00']); // bytes no decoder accepts
      parts.push(part);
    }
    const endpoint = pick(r, ['objects/', 'manifest/', `objects/indicator--${randomUUID()}/`, `objects/indicator--${randomUUID()}/versions/`]);
    if (int(r, 20) === 0) headers['Authorization'] = READER;
    if (int(r, 40) === 0) headers['Accept'] = pick(r, ['text/html', '*/*', 'application/taxii+json', 'application/taxii+json;version=2.0']);
    return { method: pick(r, ['GET', 'GET', 'GET', 'HEAD']), path: `/api1/collections/${FUZZ_COL}/${endpoint}${parts.length ? '?' + parts.join('&') : ''}`, headers };
  }
  // random paths, methods and credentials
  const seg = (): string => pick(r, ['api1', 'collections', FUZZ_COL, 'objects', 'manifest', 'status', '..', '%2e%2e', '', '%2F', '%00', '%FF', pct(randomString(r)), rawish(randomString(r)), 'taxii2']);
  const p = '/' + Array.from({ length: 1 + int(r, 6) }, seg).join('/') + (int(r, 2) ? '/' : '');
  if (int(r, 3) === 0) headers['Authorization'] = pick(r, ['Basic ' + Buffer.from(randomString(r)).toString('base64'), 'Bearer x.y.z', 'Basic', '']);
  return { method: pick(r, ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']), path: p, headers };
}

// ---- the server -----------------------------------------------------------------------------------

export interface FuzzServer {
  base: string;
  port: number;
  server: TaxiiServer;
  store: EmbeddedStore;
  close(): Promise<void>;
}

export async function startFuzzServer(): Promise<FuzzServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sets-fuzz-'));
  const store = new EmbeddedStore({ dir });
  await store.open();
  const server = createTaxiiServer({
    title: 'SETS fuzz target',
    defaultApiRoot: 'api1',
    apiRoots: {
      api1: {
        title: 'fuzz root',
        maxContentLength: 256 * 1024,
        collections: [
          { id: FUZZ_COL, title: 'Fuzz', canRead: ['reader', 'writer'], canWrite: ['writer'] },
          { id: FUZZ_COL_RO, title: 'Read-only', canRead: ['reader', 'writer'], canWrite: ['nobody'] },
        ],
      },
    },
    store,
    auth: {
      realm: 'fuzz',
      throttle: false, // the fuzzer sends bad credentials on purpose, all from 127.0.0.1
      basic: {
        users: [
          { username: 'fuzzer', passwordHash: await hashPassword('fuzz-pw', { N: 1024 }), roles: ['reader', 'writer'] },
          { username: 'reader', passwordHash: await hashPassword('read-pw', { N: 1024 }), roles: ['reader'] },
        ],
      },
    },
    maxPageSize: 100,
    nextTokenSecret: 'fuzz-next-token-secret-0123456789',
    bodyTimeoutMs: 10_000,
    log: () => undefined,
  });
  const srv = http.createServer((req, res) => void server.handle(req, res));
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (srv.address() as { port: number }).port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    server,
    store,
    close: async () => {
      srv.closeAllConnections();
      await new Promise<void>((res) => srv.close(() => res()));
      server.close();
      await store.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}

// ---- the run --------------------------------------------------------------------------------------

export interface FuzzResult {
  cases: number;
  seed: number;
  ms: number;
  /** responses by status */
  statuses: Record<string, number>;
  /** crashes: case index, what, the request line */
  crashes: Array<{ i: number; what: string; request: string }>;
  busy: number;
  memory: { before: NodeJS.MemoryUsage; after: NodeJS.MemoryUsage };
}

function send(port: number, c: FuzzCase, agent: http.Agent): Promise<{ status: number; type: string | undefined; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...c.headers };
    if (c.body) headers['Content-Length'] = String(c.body.length);
    const req = http.request({ host: '127.0.0.1', port, method: c.method, path: c.path, headers, agent, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 30 s')));
    req.on('error', reject);
    if (c.body) req.write(c.body);
    req.end();
  });
}

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

export async function runFuzz(opts: {
  port: number;
  cases: number;
  seed: number;
  concurrency?: number;
  progress?: (done: number, elapsedMs: number) => void;
}): Promise<FuzzResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency ?? 4 });
  const statuses: Record<string, number> = {};
  const crashes: FuzzResult['crashes'] = [];
  let busy = 0;
  gc();
  const before = process.memoryUsage();
  const t0 = Date.now();
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= opts.cases) return;
      const c = generateCase(opts.seed, i);
      const line = `${c.method} ${c.path.slice(0, 200)}`;
      try {
        const r = await send(opts.port, c, agent);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.status === 503) busy++;
        else if (r.status >= 500 || r.status === 0) crashes.push({ i, what: `status ${r.status}: ${r.text.slice(0, 300)}`, request: line });
        else if (c.method !== 'HEAD') {
          if (r.type !== TAXII) crashes.push({ i, what: `content-type ${String(r.type)} (status ${r.status}): ${r.text.slice(0, 200)}`, request: line });
          else {
            try {
              const j = JSON.parse(r.text) as unknown;
              if (typeof j !== 'object' || j === null) throw new Error('not an object');
              if (r.status >= 400 && (j as Record<string, unknown>)['http_status'] !== String(r.status)) throw new Error('no http_status');
            } catch (err) {
              crashes.push({ i, what: `unreadable body (${(err as Error).message}, status ${r.status}): ${r.text.slice(0, 200)}`, request: line });
            }
          }
        }
      } catch (err) {
        crashes.push({ i, what: `socket: ${(err as Error).message}`, request: line });
      }
      done++;
      if (opts.progress && done % 1000 === 0) opts.progress(done, Date.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 4 }, worker));
  agent.destroy();
  gc();
  const after = process.memoryUsage();
  return { cases: opts.cases, seed: opts.seed, ms: Date.now() - t0, statuses, crashes, busy, memory: { before, after } };
}

const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

export function summariseFuzz(r: FuzzResult): string {
  const rate = (r.cases / (r.ms / 1000)).toFixed(0);
  const st = Object.entries(r.statuses)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([s, n]) => `${s}:${n}`)
    .join(' ');
  return [
    `fuzz: ${r.cases} cases (seed ${r.seed}) in ${(r.ms / 1000).toFixed(1)} s = ${rate} cases/s; crashes ${r.crashes.length}; busy (503) ${r.busy}`,
    `  statuses ${st}`,
    `  rss ${mb(r.memory.before.rss)} -> ${mb(r.memory.after.rss)}; heapUsed ${mb(r.memory.before.heapUsed)} -> ${mb(r.memory.after.heapUsed)}`,
    ...r.crashes.slice(0, 10).map((c) => `  crash at case ${c.i}: ${c.what} [${c.request}]`),
  ].join('\n');
}
