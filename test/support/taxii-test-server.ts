/**
 * A small, independent TAXII 2.1 server for testing TAXII *clients* over real HTTP(S).
 *
 * It is a test oracle: written from the spec (TAXII 2.1 OS) and /work/shared/TAXII-NOTES.md,
 * sharing no code with lib/ (in particular not lib/taxii/media.ts), plain node:http(s), in memory.
 * Strict where the reference server medallion is strict (Accept and Content-Type must be the
 * full `application/taxii+json;version=2.1`), so a client that passes here also passes there.
 *
 * Features: discovery, API root, collections, objects GET/POST with added_after, limit, next and
 * match[id|type|version|spec_version], status (complete at once or pending for N polls),
 * manifest, versions, delete; Basic and Bearer auth (static tokens, or JWTs verified with jose
 * against a JWKS); every request recorded with its raw query. Faults switchable with `setFault`
 * for client fault tests (error statuses with TAXII or HTML bodies, wrong Content-Type, hanging,
 * connection resets, versions newest-first, no X-TAXII-Date-Added headers, `more` without `next`,
 * expired `next` tokens, repeated pages, inconsistent status counts).
 *
 * With `medallion: {...}` it behaves as the OASIS reference server medallion does where that
 * differs (read from medallion/backends/memory_backend.py and medallion/common.py, not copied):
 * every object of one POST gets the same date_added (the request time); a query's `next` token is
 * one id for the whole paging session (the same token on every page), the session is a snapshot
 * of the result taken at the first page and is forgotten after `nextTokenTtlMs` without use (or by
 * `expireSessions()`), after which the token is answered 400 "'next' not valid"; `added_after`
 * must be `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (Python strptime `%f`: 1 to 6 digits) or the server fails
 * with a 500 HTML page; DELETE without match[version] deletes only the latest version (its filter
 * defaults to `last`).
 *
 * Also `makeTestPki()`: a throw-away CA, a server certificate for 127.0.0.1/localhost and a client
 * certificate, made with the `openssl` CLI.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import { execFileSync } from 'node:child_process';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';

const TAXII = 'application/taxii+json;version=2.1';
const STIX = 'application/stix+json;version=2.1';

export interface TestCollection {
  id: string;
  title: string;
  description?: string;
  alias?: string;
  can_read: boolean;
  can_write: boolean;
  media_types?: string[];
}

export interface StoredVersion {
  id: string;
  type: string;
  /** modified, else created, else date_added */
  version: string;
  specVersion: string;
  dateAdded: string;
  object: Record<string, unknown>;
}

export interface RecordedRequest {
  method: string;
  /** path without the query */
  path: string;
  /** the query string exactly as sent, without `?` ('' when none) */
  rawQuery: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** who was authenticated ('basic:<user>', 'bearer:static', 'jwt:<sub>') */
  principal?: string;
}

export interface JwksAuth {
  jwksUrl: string;
  issuer?: string;
  audience?: string;
  /** require this role in `realm_access.roles` (Keycloak style), else 403 */
  requiredRole?: string;
}

export interface TestServerOptions {
  tls?: { key: string; cert: string; ca?: string; requestClientCert?: boolean };
  /** user -> password (HTTP Basic) */
  basic?: Record<string, string>;
  /** accepted static bearer tokens */
  bearerTokens?: string[];
  /** accept JWT bearer tokens verified against this JWKS */
  jwks?: JwksAuth;
  collections?: TestCollection[];
  /** API root max_content_length (default 10 MiB) */
  maxContentLength?: number;
  /** largest page the server returns whatever the client asks (default 1000) */
  maxPageSize?: number;
  /** a new status stays pending for this many status GETs (default 0: complete at once) */
  pendingPolls?: number;
  /** API root path (default /api1/) */
  apiRootPath?: string;
  /** behave as medallion (see the file comment) */
  medallion?: MedallionOptions;
}

export interface MedallionOptions {
  /** a paging session unused for this long is forgotten (default: never; see expireSessions) */
  nextTokenTtlMs?: number;
}

interface MedallionSession {
  key: string;
  remaining: StoredVersion[];
  lastUsed: number;
}

export interface Fault {
  /** only requests with this method (default: any) */
  method?: string;
  /** only requests whose path contains this string or matches this RegExp */
  path?: string | RegExp;
  /** only requests whose raw query string contains this string or matches this RegExp */
  query?: string | RegExp;
  /** let this many matching requests pass unaffected first (default 0) */
  skip?: number;
  /** apply to this many matching requests, then remove the fault (default: until cleared) */
  times?: number;
  /** answer this status instead of the normal answer */
  status?: number;
  /** body kind for `status` (default taxii error resource) */
  body?: 'taxii' | 'html' | 'text' | 'empty';
  title?: string;
  description?: string;
  /** send the normal answer with this Content-Type */
  contentType?: string;
  /** accept the request and never answer */
  hang?: boolean;
  /** destroy the connection without an answer */
  reset?: boolean;
  /** answer 308 Permanent Redirect to this URL */
  redirect?: string;
  /** versions resource newest-first */
  versionsNewestFirst?: boolean;
  /** omit X-TAXII-Date-Added-First/Last */
  noDateHeaders?: boolean;
  /** `more: true` without `next` on a partial page */
  moreWithoutNext?: boolean;
  /** every `next` token is unknown (400) */
  expireNextTokens?: boolean;
  /** ignore `next` and answer the first page again (medallion mode: the session stops advancing) */
  repeatFirstPage?: boolean;
  /** status resources whose counts do not add up */
  badStatusCounts?: boolean;
}

interface NextToken {
  key: string;
  offset: number;
}

export interface TestServerState {
  collections: TestCollection[];
  /** collection id -> stored versions in date_added order */
  objects: Map<string, StoredVersion[]>;
  statuses: Map<string, { successes: Record<string, unknown>[]; failures: Record<string, unknown>[]; requestTimestamp: string; pollsLeft: number }>;
  requests: RecordedRequest[];
  nextTokens: Map<string, NextToken>;
  maxContentLength: number;
  maxPageSize: number;
  pendingPolls: number;
}

export interface TestTaxiiServer {
  url: string;
  discoveryUrl: string;
  apiRootUrl: string;
  state: TestServerState;
  setFault(f: Fault | null): void;
  /** requests recorded since start (or the last clearRequests) whose path contains `part` */
  requestsTo(part: string): RecordedRequest[];
  clearRequests(): void;
  /** store objects directly (no HTTP), with date_added from the server clock (one date for all in medallion mode) */
  seed(collectionId: string, objects: Record<string, unknown>[]): StoredVersion[];
  /** medallion mode: forget every paging session now (as its session checker does after the timeout) */
  expireSessions(): void;
  /** medallion mode: paging sessions alive */
  sessionCount(): number;
  stop(): Promise<void>;
}

export const DEFAULT_COLLECTIONS: TestCollection[] = [
  { id: '91a7b528-80eb-42ed-a74d-c6fbd5a26116', title: 'Read-write', can_read: true, can_write: true, media_types: [STIX] },
  { id: '52892447-4d7e-4f70-b94d-d7f22742ff63', title: 'Read-only', can_read: true, can_write: false, media_types: [STIX] },
  { id: '64993447-4d7e-4f70-b94d-d7f33742ee63', title: 'Write-only', can_read: false, can_write: true, media_types: [STIX] },
];

// ---- timestamps: the server's own µs clock, independent of lib/ ------------------------------

function makeClock(): () => string {
  let lastMs = 0;
  let micros = 0;
  return () => {
    const now = Date.now();
    if (now > lastMs) {
      lastMs = now;
      micros = 0;
    } else if (++micros > 999) {
      lastMs++;
      micros = 0;
    }
    return new Date(lastMs).toISOString().slice(0, 23) + String(micros).padStart(3, '0') + 'Z';
  };
}

/** Timestamp -> comparable bigint of microseconds; null when unparsable. */
function micros(ts: string): bigint | null {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$/i.exec(ts);
  if (!m) return null;
  const base = Date.parse(m[1] + 'Z');
  if (Number.isNaN(base)) return null;
  const frac = ((m[2] ?? '') + '000000').slice(0, 6);
  return BigInt(base) * 1000n + BigInt(frac);
}

// ---- helpers -----------------------------------------------------------------------------------

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function specVersionOf(o: Record<string, unknown>): string {
  return typeof o['spec_version'] === 'string' ? o['spec_version'] : '2.0';
}

/** An exception medallion does not handle: Flask answers 500 with its HTML page. */
class MedallionCrash extends Error {}

class HttpFail extends Error {
  constructor(readonly status: number, readonly title: string, readonly description?: string, readonly headers: Record<string, string> = {}) {
    super(title);
  }
}

// ---- the server ----------------------------------------------------------------------------------

export async function startTestTaxiiServer(opts: TestServerOptions = {}): Promise<TestTaxiiServer> {
  const apiRootPath = opts.apiRootPath ?? '/api1/';
  const clock = makeClock();
  const state: TestServerState = {
    collections: (opts.collections ?? DEFAULT_COLLECTIONS).map((c) => ({ ...c })),
    objects: new Map(),
    statuses: new Map(),
    requests: [],
    nextTokens: new Map(),
    maxContentLength: opts.maxContentLength ?? 10 * 1024 * 1024,
    maxPageSize: opts.maxPageSize ?? 1000,
    pendingPolls: opts.pendingPolls ?? 0,
  };
  let fault: (Fault & { left: number; toSkip: number }) | null = null;
  const medallion = opts.medallion;
  const sessions = new Map<string, MedallionSession>();
  const jwks = opts.jwks ? createRemoteJWKSet(new URL(opts.jwks.jwksUrl), { timeoutDuration: 5000 }) : undefined;
  const sockets = new Set<Socket>();
  let base = '';

  function faultFor(req: RecordedRequest): Fault | null {
    if (!fault) return null;
    if (fault.method && fault.method.toUpperCase() !== req.method) return null;
    if (fault.path !== undefined) {
      const ok = typeof fault.path === 'string' ? req.path.includes(fault.path) : fault.path.test(req.path);
      if (!ok) return null;
    }
    if (fault.query !== undefined) {
      const ok = typeof fault.query === 'string' ? req.rawQuery.includes(fault.query) : fault.query.test(req.rawQuery);
      if (!ok) return null;
    }
    if (fault.toSkip > 0) {
      fault.toSkip--;
      return null;
    }
    const f = fault;
    if (--f.left <= 0) fault = null;
    return f;
  }

  function store(collectionId: string, o: Record<string, unknown>, requestTime?: string): { stored: StoredVersion | null; duplicate: boolean } {
    const list = state.objects.get(collectionId) ?? [];
    state.objects.set(collectionId, list);
    const id = o['id'] as string;
    const dateAdded = requestTime ?? clock();
    const version = typeof o['modified'] === 'string' ? o['modified'] : typeof o['created'] === 'string' ? o['created'] : dateAdded;
    const dup = list.find((v) => v.id === id && v.version === version && v.specVersion === specVersionOf(o));
    if (dup) return { stored: dup, duplicate: true };
    const sv: StoredVersion = { id, type: typeof o['type'] === 'string' ? o['type'] : id.split('--')[0], version, specVersion: specVersionOf(o), dateAdded, object: o };
    list.push(sv);
    return { stored: sv, duplicate: false };
  }

  function collectionOr404(id: string): TestCollection {
    const c = state.collections.find((x) => x.id === id);
    if (!c) throw new HttpFail(404, 'Collection not found', `no collection ${id}`);
    return c;
  }

  /** Parse the raw query; reject repeated parameters and unknown filter names for this endpoint. */
  function parseQuery(raw: string, allowed: string[]): Map<string, string> {
    const q = new Map<string, string>();
    for (const [k, v] of new URLSearchParams(raw)) {
      if (q.has(k)) throw new HttpFail(400, 'Bad query', `repeated parameter ${k}`);
      if (!allowed.includes(k)) throw new HttpFail(400, 'Bad query', `parameter ${k} is not supported here`);
      q.set(k, v);
    }
    return q;
  }

  function list(q: Map<string, string>, k: string): string[] | undefined {
    const v = q.get(k);
    return v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  }

  /** Apply match[spec_version] and match[version] per object id (selection over all versions). */
  function selectVersions(all: StoredVersion[], q: Map<string, string>): StoredVersion[] {
    const byId = new Map<string, StoredVersion[]>();
    for (const v of all) {
      const l = byId.get(v.id) ?? [];
      l.push(v);
      byId.set(v.id, l);
    }
    const specs = list(q, 'match[spec_version]');
    const versions = list(q, 'match[version]') ?? ['last'];
    const out: StoredVersion[] = [];
    for (const vs of byId.values()) {
      let pool = vs;
      if (specs) pool = pool.filter((v) => specs.includes(v.specVersion));
      else {
        const latestSpec = pool.map((v) => v.specVersion).sort().at(-1);
        pool = pool.filter((v) => v.specVersion === latestSpec);
      }
      if (pool.length === 0) continue;
      const byVersion = [...pool].sort((a, b) => {
        const ma = micros(a.version), mb = micros(b.version);
        return ma !== null && mb !== null ? (ma < mb ? -1 : ma > mb ? 1 : 0) : a.version.localeCompare(b.version);
      });
      const pick = new Set<StoredVersion>();
      for (const want of versions) {
        if (want === 'all') byVersion.forEach((v) => pick.add(v));
        else if (want === 'first') pick.add(byVersion[0]);
        else if (want === 'last') pick.add(byVersion[byVersion.length - 1]);
        else {
          const mw = micros(want);
          if (mw === null) throw new HttpFail(400, 'Bad filter', `match[version] value ${want} is not a timestamp`);
          for (const v of byVersion) if (micros(v.version) === mw) pick.add(v);
        }
      }
      out.push(...pick);
    }
    return out;
  }

  function filterRecords(all: StoredVersion[], q: Map<string, string>): StoredVersion[] {
    let recs = all;
    const ids = list(q, 'match[id]');
    if (ids) recs = recs.filter((v) => ids.includes(v.id));
    const types = list(q, 'match[type]');
    if (types) recs = recs.filter((v) => types.includes(v.type));
    recs = selectVersions(recs, q);
    const after = q.get('added_after');
    if (after !== undefined) {
      if (medallion && !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/.test(after)) {
        // medallion parses with strptime and does not catch the ValueError: Flask's 500 page
        throw new MedallionCrash(`time data '${after}' does not match format '%Y-%m-%dT%H:%M:%S.%fZ'`);
      }
      const m = micros(after);
      if (m === null) throw new HttpFail(400, 'Bad filter', `added_after ${after} is not a TAXII timestamp`);
      recs = recs.filter((v) => (micros(v.dateAdded) ?? 0n) > m);
    }
    return [...recs].sort((a, b) => (a.dateAdded < b.dateAdded ? -1 : a.dateAdded > b.dateAdded ? 1 : 0));
  }

  /** Slice one page; returns the page, `more`, a `next` token and date headers. */
  function paginate<T>(
    items: T[],
    dateOf: (t: T) => string,
    q: Map<string, string>,
    f: Fault | null,
  ): { page: T[]; more: boolean; next?: string; headers: Record<string, string> } {
    const limitRaw = q.get('limit');
    let limit = state.maxPageSize;
    if (limitRaw !== undefined) {
      const n = Number(limitRaw);
      if (!/^\d+$/.test(limitRaw) || n < 1) throw new HttpFail(400, 'Bad filter', `limit ${limitRaw} is not a positive integer`);
      limit = Math.min(n, state.maxPageSize);
    }
    const key = [...q.entries()].filter(([k]) => k !== 'next').map(([k, v]) => `${k}=${v}`).sort().join('&');
    if (medallion) return medallionPage(items, dateOf, q, key, limit, f);
    let offset = 0;
    const nextTok = q.get('next');
    if (nextTok !== undefined && !f?.repeatFirstPage) {
      const t = state.nextTokens.get(nextTok);
      if (!t || f?.expireNextTokens) throw new HttpFail(400, 'Bad next', `next token ${nextTok} is unknown or expired`);
      if (t.key !== key) throw new HttpFail(400, 'Bad next', 'the filters differ from those of the first page');
      offset = t.offset;
    }
    const page = items.slice(offset, offset + limit);
    const more = offset + page.length < items.length;
    const headers: Record<string, string> = {};
    if (page.length > 0 && !f?.noDateHeaders) {
      headers['X-TAXII-Date-Added-First'] = dateOf(page[0]);
      headers['X-TAXII-Date-Added-Last'] = dateOf(page[page.length - 1]);
    }
    let next: string | undefined;
    if (more && !f?.moreWithoutNext) {
      next = crypto.randomBytes(9).toString('base64url');
      state.nextTokens.set(next, { key, offset: offset + page.length });
    }
    return { page, more, ...(next ? { next } : {}), headers };
  }

  /** medallion: the first page snapshots the result; the same token pages through it until the end. */
  function medallionPage<T>(items: T[], dateOf: (t: T) => string, q: Map<string, string>, key: string, limit: number, f: Fault | null): { page: T[]; more: boolean; next?: string; headers: Record<string, string> } {
    const now = Date.now();
    const ttl = medallion?.nextTokenTtlMs;
    if (ttl !== undefined) for (const [k, s] of sessions) if (now - s.lastUsed > ttl) sessions.delete(k);
    let token = q.get('next');
    let remaining: T[];
    if (token === undefined) {
      token = crypto.randomUUID();
      remaining = [...items];
      sessions.set(token, { key, remaining: remaining as unknown as StoredVersion[], lastUsed: now });
    } else {
      const s = f?.expireNextTokens ? undefined : sessions.get(token);
      if (!s) throw new HttpFail(400, 'ProcessingError', "The server did not understand the request or filter parameters: 'next' not valid");
      if (s.key !== key) throw new HttpFail(400, 'ProcessingError', 'The server did not understand the request or filter parameters: params changed over subsequent transaction');
      s.lastUsed = now;
      remaining = s.remaining as unknown as T[];
    }
    // repeatFirstPage: a broken session that never advances (same page, same token)
    const page = f?.repeatFirstPage ? remaining.slice(0, limit) : remaining.splice(0, limit);
    const more = f?.repeatFirstPage ? remaining.length > page.length : remaining.length > 0;
    if (!more) sessions.delete(token);
    const headers: Record<string, string> = {};
    if (page.length > 0) {
      const dates = page.map(dateOf).sort();
      headers['X-TAXII-Date-Added-First'] = dates[0];
      headers['X-TAXII-Date-Added-Last'] = dates[dates.length - 1];
    }
    return { page, more, ...(more ? { next: token } : {}), headers };
  }

  function statusResource(id: string, f: Fault | null): Record<string, unknown> {
    const s = state.statuses.get(id);
    if (!s) throw new HttpFail(404, 'Status not found', `no status ${id}`);
    const { successes, failures, pollsLeft } = s;
    const total = successes.length + failures.length;
    const r: Record<string, unknown> = {
      id,
      status: pollsLeft > 0 ? 'pending' : 'complete',
      request_timestamp: s.requestTimestamp,
      total_count: total,
      success_count: pollsLeft > 0 ? 0 : successes.length,
      failure_count: pollsLeft > 0 ? 0 : failures.length,
      pending_count: pollsLeft > 0 ? total : 0,
    };
    if (pollsLeft > 0) r['pendings'] = [...successes, ...failures].map((d) => ({ id: d['id'], version: d['version'] }));
    else {
      if (successes.length) r['successes'] = successes;
      if (failures.length) r['failures'] = failures;
    }
    if (f?.badStatusCounts) r['success_count'] = (r['success_count'] as number) + 1;
    return r;
  }

  async function authenticate(req: http.IncomingMessage): Promise<string | undefined> {
    const configured = opts.basic || opts.bearerTokens || opts.jwks;
    if (!configured) return undefined;
    const h = req.headers.authorization ?? '';
    const challenge: Record<string, string> = {
      'WWW-Authenticate': [opts.basic ? 'Basic realm="taxii"' : '', opts.bearerTokens || opts.jwks ? 'Bearer realm="taxii"' : ''].filter(Boolean).join(', '),
    };
    const m = /^(\S+)\s+(\S+)$/.exec(h);
    if (!m) throw new HttpFail(401, 'Unauthorized', 'credentials required', challenge);
    const scheme = m[1].toLowerCase();
    if (scheme === 'basic' && opts.basic) {
      const dec = Buffer.from(m[2], 'base64').toString('utf8');
      const i = dec.indexOf(':');
      const user = dec.slice(0, i), pass = dec.slice(i + 1);
      if (i > 0 && Object.prototype.hasOwnProperty.call(opts.basic, user) && opts.basic[user] === pass) return `basic:${user}`;
      throw new HttpFail(401, 'Unauthorized', 'bad username or password', challenge);
    }
    if (scheme === 'bearer') {
      if (opts.bearerTokens?.includes(m[2])) return 'bearer:static';
      if (jwks && opts.jwks) {
        let payload: JWTPayload;
        try {
          ({ payload } = await jwtVerify(m[2], jwks, {
            ...(opts.jwks.issuer ? { issuer: opts.jwks.issuer } : {}),
            ...(opts.jwks.audience ? { audience: opts.jwks.audience } : {}),
          }));
        } catch (e) {
          throw new HttpFail(401, 'Unauthorized', `invalid token: ${(e as Error).message}`, {
            'WWW-Authenticate': 'Bearer realm="taxii", error="invalid_token"',
          });
        }
        if (opts.jwks.requiredRole) {
          const ra = payload['realm_access'];
          const roles = isObj(ra) && Array.isArray(ra['roles']) ? ra['roles'] : [];
          if (!roles.includes(opts.jwks.requiredRole)) throw new HttpFail(403, 'Forbidden', `role ${opts.jwks.requiredRole} required`);
        }
        return `jwt:${String(payload.sub)}`;
      }
    }
    throw new HttpFail(401, 'Unauthorized', 'credentials rejected', challenge);
  }

  type Answer = { status: number; body?: unknown; headers?: Record<string, string> };

  async function route(req: http.IncomingMessage, rec: RecordedRequest, f: Fault | null): Promise<Answer> {
    const accept = (req.headers.accept ?? '').replace(/\s+/g, '').toLowerCase();
    if (!accept.split(',').includes(TAXII)) throw new HttpFail(406, 'Not Acceptable', `Accept must be ${TAXII}, got ${JSON.stringify(req.headers.accept ?? '')}`);
    rec.principal = await authenticate(req);
    const p = rec.path;
    const method = rec.method;
    if (p === '/taxii2/') {
      if (method !== 'GET') throw new HttpFail(405, 'Method Not Allowed');
      return { status: 200, body: { title: 'Test TAXII server', description: 'test oracle', default: `${base}${apiRootPath}`, api_roots: [`${base}${apiRootPath}`] } };
    }
    if (!p.startsWith(apiRootPath)) throw new HttpFail(404, 'Not Found', `no resource at ${p}`);
    const parts = p.slice(apiRootPath.length).split('/');
    if (parts[parts.length - 1] !== '') throw new HttpFail(404, 'Not Found', 'resource paths end with /');
    parts.pop();
    const seg = parts.map((s) => decodeURIComponent(s));
    if (seg.length === 0) {
      if (method !== 'GET') throw new HttpFail(405, 'Method Not Allowed');
      return { status: 200, body: { title: 'API root 1', versions: [TAXII], max_content_length: state.maxContentLength } };
    }
    if (seg[0] === 'status' && seg.length === 2) {
      // the first `pendingPolls` status GETs still answer pending
      const body = statusResource(seg[1], f);
      const s = state.statuses.get(seg[1]);
      if (s && s.pollsLeft > 0) s.pollsLeft--;
      return { status: 200, body };
    }
    if (seg[0] !== 'collections') throw new HttpFail(404, 'Not Found', `no resource at ${p}`);
    if (seg.length === 1) {
      parseQuery(rec.rawQuery, []);
      return { status: 200, body: state.collections.length ? { collections: state.collections } : {} };
    }
    const col = collectionOr404(seg[1]);
    const all = state.objects.get(col.id) ?? [];
    if (seg.length === 2) return { status: 200, body: col };
    if (seg[2] === 'manifest' && seg.length === 3) {
      if (!col.can_read) throw new HttpFail(403, 'Forbidden', 'collection is not readable');
      const q = parseQuery(rec.rawQuery, ['added_after', 'limit', 'next', 'match[id]', 'match[type]', 'match[version]', 'match[spec_version]']);
      const pg = paginate(filterRecords(all, q), (v) => v.dateAdded, q, f);
      const body: Record<string, unknown> = {};
      if (pg.page.length) body['objects'] = pg.page.map((v) => ({ id: v.id, date_added: v.dateAdded, version: v.version, media_type: STIX }));
      if (pg.more) body['more'] = true;
      if (pg.next) body['next'] = pg.next;
      return { status: 200, body, headers: pg.headers };
    }
    if (seg[2] !== 'objects') throw new HttpFail(404, 'Not Found', `no resource at ${p}`);
    if (seg.length === 3) {
      if (method === 'POST') return addObjects(req, rec, col, f);
      if (!col.can_read) throw new HttpFail(403, 'Forbidden', 'collection is not readable');
      const q = parseQuery(rec.rawQuery, ['added_after', 'limit', 'next', 'match[id]', 'match[type]', 'match[version]', 'match[spec_version]']);
      const pg = paginate(filterRecords(all, q), (v) => v.dateAdded, q, f);
      return { status: 200, body: envelope(pg.page.map((v) => v.object), pg.more, pg.next), headers: pg.headers };
    }
    const objectId = seg[3];
    const versionsOf = all.filter((v) => v.id === objectId);
    if (seg.length === 4) {
      if (method === 'DELETE') {
        if (!col.can_read || !col.can_write) throw new HttpFail(403, 'Forbidden', 'delete needs can_read and can_write');
        const q = parseQuery(rec.rawQuery, ['match[version]', 'match[spec_version]']);
        if (!q.has('match[version]')) q.set('match[version]', medallion ? 'last' : 'all');
        if (!q.has('match[spec_version]')) q.set('match[spec_version]', [...new Set(versionsOf.map((v) => v.specVersion))].join(','));
        const doomed = new Set(selectVersions(versionsOf, q));
        if (doomed.size === 0) throw new HttpFail(404, 'Object not found', `no ${objectId} matching the filters`);
        state.objects.set(col.id, all.filter((v) => !doomed.has(v)));
        return { status: 200 };
      }
      if (!col.can_read) throw new HttpFail(403, 'Forbidden', 'collection is not readable');
      if (versionsOf.length === 0) throw new HttpFail(404, 'Object not found', `no ${objectId} in ${col.id}`);
      const q = parseQuery(rec.rawQuery, ['added_after', 'limit', 'next', 'match[version]', 'match[spec_version]']);
      const pg = paginate(filterRecords(versionsOf, q), (v) => v.dateAdded, q, f);
      return { status: 200, body: envelope(pg.page.map((v) => v.object), pg.more, pg.next), headers: pg.headers };
    }
    if (seg.length === 5 && seg[4] === 'versions') {
      if (!col.can_read) throw new HttpFail(403, 'Forbidden', 'collection is not readable');
      if (versionsOf.length === 0) throw new HttpFail(404, 'Object not found', `no ${objectId} in ${col.id}`);
      const q = parseQuery(rec.rawQuery, ['added_after', 'limit', 'next', 'match[spec_version]']);
      q.set('match[version]', 'all');
      let recs = filterRecords(versionsOf, q);
      q.delete('match[version]');
      const pg = paginate(recs, (v) => v.dateAdded, q, f);
      recs = f?.versionsNewestFirst ? [...pg.page].reverse() : pg.page;
      const body: Record<string, unknown> = {};
      if (recs.length) body['versions'] = recs.map((v) => v.version);
      if (pg.more) body['more'] = true;
      if (pg.next) body['next'] = pg.next;
      const headers = { ...pg.headers };
      if (f?.versionsNewestFirst && headers['X-TAXII-Date-Added-First']) {
        [headers['X-TAXII-Date-Added-First'], headers['X-TAXII-Date-Added-Last']] = [headers['X-TAXII-Date-Added-Last'], headers['X-TAXII-Date-Added-First']];
      }
      return { status: 200, body, headers };
    }
    throw new HttpFail(404, 'Not Found', `no resource at ${p}`);
  }

  function envelope(objects: unknown[], more: boolean, next?: string): Record<string, unknown> {
    const b: Record<string, unknown> = {};
    if (objects.length) b['objects'] = objects;
    if (more) b['more'] = true;
    if (next) b['next'] = next;
    return b;
  }

  function addObjects(req: http.IncomingMessage, rec: RecordedRequest, col: TestCollection, f: Fault | null): Answer {
    if (!col.can_write) throw new HttpFail(403, 'Forbidden', 'collection is not writable');
    const ct = (req.headers['content-type'] ?? '').replace(/\s+/g, '').toLowerCase();
    if (ct !== TAXII) throw new HttpFail(415, 'Unsupported Media Type', `Content-Type must be ${TAXII}`);
    const len = Buffer.byteLength(rec.body);
    if (len > state.maxContentLength) throw new HttpFail(413, 'Request Entity Too Large', `${len} bytes > max_content_length ${state.maxContentLength}`);
    let env: unknown;
    try {
      env = JSON.parse(rec.body);
    } catch {
      throw new HttpFail(400, 'Bad Request', 'body is not JSON');
    }
    if (!isObj(env) || !Array.isArray(env['objects'])) throw new HttpFail(422, 'Unprocessable Entity', 'envelope without objects');
    const successes: Record<string, unknown>[] = [];
    const failures: Record<string, unknown>[] = [];
    const requestTime = medallion ? clock() : undefined;
    for (const o of env['objects'] as unknown[]) {
      if (!isObj(o) || typeof o['id'] !== 'string' || typeof o['type'] !== 'string') {
        failures.push({ id: isObj(o) && typeof o['id'] === 'string' ? o['id'] : 'unknown', version: 'unknown', message: 'object needs id and type' });
        continue;
      }
      const { stored, duplicate } = store(col.id, o, requestTime);
      const d: Record<string, unknown> = { id: o['id'], version: stored?.version };
      if (duplicate) d['message'] = 'Object already added';
      successes.push(d);
    }
    const id = crypto.randomUUID();
    // with pendingPolls N > 0: pending in the 202 answer and in the first N status GETs
    state.statuses.set(id, { successes, failures, requestTimestamp: clock(), pollsLeft: state.pendingPolls });
    return { status: 202, body: statusResource(id, f) };
  }

  function sendError(res: http.ServerResponse, status: number, kind: Fault['body'], title: string, description?: string, headers: Record<string, string> = {}): void {
    for (const [k, v] of Object.entries(headers)) if (v) res.setHeader(k, v);
    if (kind === 'html') {
      const esc = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
      res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><head><title>${status} ${esc(title)}</title></head><body><h1>${esc(title)}</h1><p>${esc(description ?? '')}</p></body></html>`);
    } else if (kind === 'text') {
      res.writeHead(status, { 'Content-Type': 'text/plain' });
      res.end(`${title}${description ? `: ${description}` : ''}`);
    } else if (kind === 'empty') {
      res.writeHead(status);
      res.end();
    } else {
      const body: Record<string, unknown> = { title, http_status: String(status) };
      if (description) body['description'] = description;
      res.writeHead(status, { 'Content-Type': TAXII });
      res.end(JSON.stringify(body));
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rawUrl = req.url ?? '/';
    const qi = rawUrl.indexOf('?');
    const rec: RecordedRequest = {
      method: (req.method ?? 'GET').toUpperCase(),
      path: qi < 0 ? rawUrl : rawUrl.slice(0, qi),
      rawQuery: qi < 0 ? '' : rawUrl.slice(qi + 1),
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    state.requests.push(rec);
    const f = faultFor(rec);
    if (f?.hang) return; // never answer; stop() destroys the socket
    if (f?.reset) {
      req.socket.destroy();
      return;
    }
    if (f?.redirect !== undefined) {
      res.writeHead(308, { Location: f.redirect, 'Content-Type': 'text/plain' });
      res.end(`moved to ${f.redirect}`);
      return;
    }
    if (f?.status !== undefined) {
      const title = f.title ?? http.STATUS_CODES[f.status] ?? 'Error';
      const headers: Record<string, string> = f.status === 401 ? { 'WWW-Authenticate': 'Basic realm="taxii"' } : {};
      sendError(res, f.status, f.body, title, f.description ?? `injected ${f.status}`, headers);
      return;
    }
    try {
      const a = await route(req, rec, f);
      for (const [k, v] of Object.entries(a.headers ?? {})) res.setHeader(k, v);
      if (a.body === undefined) {
        res.writeHead(a.status);
        res.end();
      } else {
        res.writeHead(a.status, { 'Content-Type': f?.contentType ?? TAXII });
        res.end(JSON.stringify(a.body));
      }
    } catch (e) {
      if (e instanceof HttpFail) sendError(res, e.status, 'taxii', e.title, e.description, e.headers);
      else if (e instanceof MedallionCrash) sendError(res, 500, 'html', 'Internal Server Error', 'The server encountered an internal error and was unable to complete your request.');
      else sendError(res, 500, 'taxii', 'Internal Server Error', (e as Error).message);
    }
  }

  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'taxii', 'Internal Server Error', String(e));
      else res.destroy();
    });
  };
  const server: http.Server | https.Server = opts.tls
    ? https.createServer({
      key: opts.tls.key,
      cert: opts.tls.cert,
      ...(opts.tls.ca ? { ca: opts.tls.ca } : {}),
      ...(opts.tls.requestClientCert ? { requestCert: true, rejectUnauthorized: true } : {}),
    }, listener)
    : http.createServer(listener);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  base = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  return {
    url: base,
    discoveryUrl: `${base}/taxii2/`,
    apiRootUrl: `${base}${apiRootPath}`,
    state,
    setFault(f: Fault | null): void {
      fault = f ? { ...f, left: f.times ?? Infinity, toSkip: f.skip ?? 0 } : null;
    },
    requestsTo(part: string): RecordedRequest[] {
      return state.requests.filter((r) => r.path.includes(part));
    },
    clearRequests(): void {
      state.requests.length = 0;
    },
    seed(collectionId: string, objects: Record<string, unknown>[]): StoredVersion[] {
      collectionOr404(collectionId);
      const requestTime = medallion ? clock() : undefined;
      return objects.map((o) => {
        const r = store(collectionId, o, requestTime);
        if (!r.stored) throw new Error('seed failed');
        return r.stored;
      });
    },
    expireSessions(): void {
      sessions.clear();
    },
    sessionCount(): number {
      return sessions.size;
    },
    async stop(): Promise<void> {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---- PKI for TLS tests ----------------------------------------------------------------------------

export interface TestPki {
  caCert: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
  /** PKCS#12 bundle of the client key + certificate */
  clientPfx: Buffer;
  pfxPassphrase: string;
  /** a second CA that signed nothing we use (for "wrong CA" tests) */
  otherCaCert: string;
}

/** Create a throw-away CA, a server cert (SAN 127.0.0.1, localhost) and a client cert with `openssl`. */
export function makeTestPki(): TestPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-pki-'));
  const ossl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  try {
    const ca = (name: string): void => {
      ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2',
        '-subj', `/CN=SETS test ${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    };
    ca('ca');
    ca('otherca');
    const leaf = (name: string, ext: string): void => {
      ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
      ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
    };
    leaf('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
    leaf('client', 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n');
    const pass = 'pfx-secret';
    ossl('pkcs12', '-export', '-inkey', 'client.key', '-in', 'client.crt', '-out', 'client.p12', '-passout', `pass:${pass}`);
    const r = (f: string): string => fs.readFileSync(path.join(dir, f), 'utf8');
    return {
      caCert: r('ca.crt'),
      serverKey: r('server.key'),
      serverCert: r('server.crt'),
      clientKey: r('client.key'),
      clientCert: r('client.crt'),
      clientPfx: fs.readFileSync(path.join(dir, 'client.p12')),
      pfxPassphrase: pass,
      otherCaCert: r('otherca.crt'),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
