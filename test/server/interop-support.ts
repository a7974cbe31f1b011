/**
 * Shared pieces of the interoperability tests (test/server/interop-*.test.ts): a TAXII server with
 * one collection per integrity policy, users and API keys; the wire encodings of the clients we
 * imitate (Python requests / urllib quote_plus, axios params); the response checks taxii2-client
 * applies; realistic STIX content as those tools produce it.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createTaxiiServer, hashApiKey, type TaxiiServer, type TaxiiServerConfig } from '../../lib/taxii/server';
import * as http from 'node:http';
import { listen, testConfig, type Reply, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

export const COL_REQUIRED = 'b0000000-0000-4000-8000-00000000000a';
export const COL_OPTIONAL = 'b0000000-0000-4000-8000-00000000000b';
export const COL_OFF = 'b0000000-0000-4000-8000-00000000000c';

/** API keys handed to the tools (plain text here; the server only holds their hashes). */
export const KEYS = {
  feed: 'feed-key-9f2c1e77d0a54b6c8e3a',
  producer: 'producer-key-4b1d9a0c6e2f7358a1',
};

export interface InteropServer {
  server: TaxiiServer;
  run: Running;
  base: string;
  ts: TestStore;
  close(): Promise<void>;
}

/**
 * Users alice (read+write), bob (read) from the standard test config; API keys `feed` (read) and
 * `producer` (read+write); collections: required, optional, off (all read: reader, write: writer).
 */
export async function startInteropServer(patch: (cfg: TaxiiServerConfig) => void = () => undefined): Promise<InteropServer> {
  const ts = await makeStore();
  const cfg = await testConfig(ts.store);
  cfg.apiRoots = {
    api1: {
      title: 'SETS interop root',
      maxContentLength: 64 * 1024,
      collections: [
        { id: COL_REQUIRED, title: 'SETS verified', canRead: ['reader', 'writer'], canWrite: ['writer'], integrity: { policy: 'required' } },
        { id: COL_OPTIONAL, title: 'SETS optional', alias: 'optional', canRead: ['reader', 'writer'], canWrite: ['writer'], integrity: { policy: 'optional' } },
        { id: COL_OFF, title: 'Plain TAXII', alias: 'plain', canRead: ['reader', 'writer'], canWrite: ['writer'], integrity: { policy: 'off' } },
      ],
    },
  };
  cfg.auth = {
    ...cfg.auth,
    anonymousRead: false,
    apiKeys: [
      { name: 'feed-consumer', keyHash: hashApiKey(KEYS.feed), roles: ['reader'] },
      { name: 'producer', keyHash: hashApiKey(KEYS.producer), roles: ['reader', 'writer'] },
    ],
  };
  patch(cfg);
  const server = createTaxiiServer(cfg);
  const run = await listen((req, res) => void server.handle(req, res));
  return {
    server,
    run,
    base: run.base,
    ts,
    close: async () => {
      await run.close();
      await ts.dispose();
    },
  };
}

/** A request with exactly these headers (no Accept added) and the path exactly as given (`//x/` stays). */
export function raw(base: string, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Reply> {
  const u = new URL(base);
  const h: Record<string, string> = { ...headers };
  const has = (name: string): boolean => Object.keys(h).some((k) => k.toLowerCase() === name);
  if (body !== undefined && !has('content-length') && !has('transfer-encoding')) h['Content-Length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const r = http.request({ method, hostname: u.hostname, port: u.port, path, headers: h, agent: false, timeout: 20_000 }, (res) => {
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
    r.on('timeout', () => r.destroy(new Error(`request ${method} ${path} timed out`)));
    r.on('error', reject);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

export function basicHeader(user: string, pass: string, scheme = 'Basic'): string {
  return `${scheme} ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`;
}

// ---- wire encodings ---------------------------------------------------------------------------

/** Python's urllib.parse.quote_plus (safe: letters, digits, `_.-~`; space -> `+`), as requests uses for params. */
export function pyQuotePlus(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9_.\-~]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** requests' `params=` encoding (urlencode(..., doseq=True)): pairs in dict order. */
export function pyUrlencode(pairs: Array<[string, string | number]>): string {
  return pairs.map(([k, v]) => `${pyQuotePlus(k)}=${pyQuotePlus(String(v))}`).join('&');
}

/**
 * axios' default params serializer (axios 1.x buildURL): encodeURIComponent, then `: $ , [ ]`
 * and space (`+`) left readable; undefined/null values dropped; Dates as toISOString().
 */
export function axiosParams(params: Record<string, string | number | Date | undefined | null>): string {
  const enc = (v: string): string =>
    encodeURIComponent(v).replace(/%3A/gi, ':').replace(/%24/g, '$').replace(/%2C/gi, ',').replace(/%20/g, '+').replace(/%5B/gi, '[').replace(/%5D/gi, ']');
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    parts.push(`${enc(k)}=${enc(v instanceof Date ? v.toISOString() : String(v))}`);
  }
  return parts.join('&');
}

// ---- checks the reference client applies to our answers -----------------------------------------

/** taxii2-client `_HTTPConnection.valid_content_type` for TAXII 2.1 (common.py). */
export function taxii2clientAcceptsContentType(contentType: string | undefined, accept = 'application/taxii+json;version=2.1'): boolean {
  if (contentType === undefined) return false;
  const acceptTokens = accept.replace(/ /g, '').split(';');
  const ctTokens = contentType.replace(/ /g, '').split(';');
  return acceptTokens.every((t) => ctTokens.includes(t)) && ctTokens[0] === 'application/taxii+json';
}

/** taxii2-client `Status._validate_status` (v21). */
export function assertValidStatus(st: Record<string, unknown>): void {
  for (const k of ['id', 'status']) assert.ok(st[k], `status without ${k}`);
  for (const k of ['total_count', 'success_count', 'failure_count', 'pending_count']) assert.equal(typeof st[k], 'number', `status without ${k}`);
  const n = (k: string): number => st[k] as number;
  for (const [list, count] of [['successes', 'success_count'], ['pendings', 'pending_count'], ['failures', 'failure_count']] as const) {
    const l = st[list];
    if (Array.isArray(l) && l.length > 0) assert.equal(l.length, n(count), `${list} length != ${count}`);
  }
  assert.equal(n('success_count') + n('pending_count') + n('failure_count'), n('total_count'), 'counts do not add up');
}

/** Python's json.dumps default separators (", " and ": "), as taxii2-client sends a dict envelope. */
export function pyJsonDumps(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(pyJsonDumps).join(', ')}]`;
  return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${JSON.stringify(k)}: ${pyJsonDumps(x)}`).join(', ')}}`;
}

// ---- content --------------------------------------------------------------------------------------

export function stixIndicator(n: number, modified = '2024-03-01T10:00:00.000Z'): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${randomUUID()}`,
    created: '2024-03-01T10:00:00.000Z',
    modified,
    name: `198.51.100.${n % 256}`,
    pattern: `[ipv4-addr:value = '198.51.100.${n % 256}']`,
    pattern_type: 'stix',
    pattern_version: '2.1',
    valid_from: '2024-03-01T10:00:00Z',
    labels: ['misp:type="ip-dst"'],
  };
}

/** What MISP's STIX 2.1 export (misp-stix) makes of an event: the org identity, a report, its indicators. */
export function mispEventObjects(count: number): Record<string, unknown>[] {
  const org = { type: 'identity', spec_version: '2.1', id: `identity--${randomUUID()}`, created: '2024-03-01T09:00:00.000Z', modified: '2024-03-01T09:00:00.000Z', name: 'CIRCL', identity_class: 'organization' };
  const indicators: Record<string, unknown>[] = Array.from({ length: count }, (_, i) => ({ ...stixIndicator(i), created_by_ref: org.id }));
  const report = {
    type: 'report',
    spec_version: '2.1',
    id: `report--${randomUUID()}`,
    created: '2024-03-01T09:30:00.000Z',
    modified: '2024-03-01T09:30:00.000Z',
    name: 'MISP event: phishing campaign',
    published: '2024-03-01T09:30:00Z',
    report_types: ['misc'],
    labels: ['Threat-Report', 'misp:tool="MISP-STIX-Converter"'],
    created_by_ref: org.id,
    object_refs: indicators.map((o) => o['id']),
  };
  return [org, report, ...indicators];
}

export function objectsOf(r: Reply): Record<string, unknown>[] {
  const b = r.json as Record<string, unknown> | undefined;
  const l = b?.['objects'];
  return Array.isArray(l) ? (l as Record<string, unknown>[]) : [];
}
