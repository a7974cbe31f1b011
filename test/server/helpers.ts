/**
 * Helpers for the TAXII server tests: a real node:http server on 127.0.0.1:0 and raw HTTP
 * requests (node:http, so every header and byte is under the test's control).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { createTaxiiServer, type TaxiiServer, type TaxiiServerConfig } from '../../lib/taxii/server';
import { hashPassword } from '../../lib/auth/server-basic';
import type { Store } from '../../lib/store/store';

export const TAXII = 'application/taxii+json;version=2.1';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

export interface Running {
  base: string;
  port: number;
  http: http.Server;
  close(): Promise<void>;
}

export function listen(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Running> {
  const srv = http.createServer(handler);
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      resolve({
        base: `http://127.0.0.1:${port}`,
        port,
        http: srv,
        close: () =>
          new Promise<void>((res) => {
            srv.closeAllConnections();
            srv.close(() => res());
          }),
      });
    });
  });
}

export interface ReqOpts {
  headers?: Record<string, string | string[] | undefined>;
  body?: string | Buffer;
  /** default: Accept TAXII */
  accept?: string | null;
  auth?: string | null;
}

export function request(base: string, method: string, path: string, opts: ReqOpts = {}): Promise<Reply> {
  const url = new URL(path, base);
  const headers: Record<string, string | string[]> = {};
  if (opts.accept !== null) headers['Accept'] = opts.accept ?? TAXII;
  if (opts.auth) headers['Authorization'] = opts.auth;
  for (const [k, v] of Object.entries(opts.headers ?? {})) if (v !== undefined) headers[k] = v;
  if (opts.body !== undefined && headers['Content-Length'] === undefined && headers['Transfer-Encoding'] === undefined) {
    headers['Content-Length'] = String(Buffer.byteLength(opts.body));
  }
  return new Promise((resolve, reject) => {
    const r = http.request(
      { method, hostname: url.hostname, port: url.port, path: url.pathname + url.search, headers, agent: false, timeout: 20_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = undefined;
          try {
            json = text === '' ? undefined : JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`request ${method} ${path} timed out`)));
    r.on('error', reject);
    if (opts.body !== undefined) r.write(opts.body);
    r.end();
  });
}

export function basic(user: string, pass: string): string {
  return 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64');
}

export function obj(j: unknown): Record<string, unknown> {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new Error(`expected a JSON object, got ${JSON.stringify(j)}`);
  return j as Record<string, unknown>;
}

export function list(j: unknown): unknown[] {
  if (!Array.isArray(j)) throw new Error(`expected a list, got ${JSON.stringify(j)}`);
  return j;
}

/** A valid STIX 2.1 indicator. */
export function indicator(id = `indicator--${randomUUID()}`, modified = '2024-01-01T00:00:00.000Z', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id,
    created: '2024-01-01T00:00:00.000Z',
    modified,
    name: `indicator ${id.slice(-6)}`,
    pattern: "[ipv4-addr:value = '10.0.0.1']",
    pattern_type: 'stix',
    valid_from: '2024-01-01T00:00:00Z',
    ...extra,
  };
}

export function malware(id = `malware--${randomUUID()}`, modified = '2024-01-01T00:00:00.000Z'): Record<string, unknown> {
  return { type: 'malware', spec_version: '2.1', id, created: '2024-01-01T00:00:00.000Z', modified, name: 'bad', is_family: false };
}

export const COL_MAIN = '6f3a3c6e-0b0a-4c07-9ad0-111111111111';
export const COL_TRUST = '6f3a3c6e-0b0a-4c07-9ad0-222222222222';
export const COL_ANON = '6f3a3c6e-0b0a-4c07-9ad0-333333333333';
export const COL_SECRET = '6f3a3c6e-0b0a-4c07-9ad0-444444444444';
export const SECRET = 'test-next-token-secret-0123456789';

export interface Users {
  alice: string; // reader + writer
  bob: string; // reader
  carol: string; // no roles
}

let hashes: Promise<Record<string, string>> | undefined;
function userHashes(): Promise<Record<string, string>> {
  hashes ??= (async () => ({
    alice: await hashPassword('alice-pw', { N: 1024 }),
    bob: await hashPassword('bob-pw', { N: 1024 }),
    carol: await hashPassword('carol-pw', { N: 1024 }),
  }))();
  return hashes;
}

export const AUTH: Users = { alice: basic('alice', 'alice-pw'), bob: basic('bob', 'bob-pw'), carol: basic('carol', 'carol-pw') };

/** The standard test configuration (override parts with `patch`). */
export async function testConfig(store: Store, patch: Partial<TaxiiServerConfig> = {}): Promise<TaxiiServerConfig> {
  const h = await userHashes();
  return {
    title: 'SETS test TAXII server',
    description: 'server under test',
    contact: 'cti@example.org',
    defaultApiRoot: 'api1',
    apiRoots: {
      api1: {
        title: 'API root one',
        description: 'first root',
        maxContentLength: 64 * 1024,
        collections: [
          { id: COL_MAIN, title: 'Main', alias: 'main', canRead: ['reader', 'writer'], canWrite: ['writer'] },
          { id: COL_TRUST, title: 'Trusted', canRead: ['reader'], canWrite: ['writer'], integrity: { mode: 'trust' } },
          { id: COL_ANON, title: 'Public', canRead: ['anonymous', '*'], canWrite: ['writer'] },
          { id: COL_SECRET, title: 'Secret', canRead: ['nobody'], canWrite: ['nobody'] },
        ],
      },
      'trust/group': { title: 'Nested API root', collections: [] },
    },
    store,
    auth: {
      realm: 'SETS test',
      basic: {
        users: [
          { username: 'alice', passwordHash: h.alice, roles: ['reader', 'writer'] },
          { username: 'bob', passwordHash: h.bob, roles: ['reader'] },
          { username: 'carol', passwordHash: h.carol, roles: [] },
        ],
      },
      anonymousRead: true,
    },
    maxPageSize: 50,
    nextTokenSecret: SECRET,
    log: () => undefined,
    ...patch,
  };
}

export async function startTaxii(store: Store, patch: Partial<TaxiiServerConfig> = {}): Promise<{ server: TaxiiServer; run: Running }> {
  const server = createTaxiiServer(await testConfig(store, patch));
  const run = await listen((req, res) => void server.handle(req, res));
  return { server, run };
}

/** POST an envelope to a collection; returns the reply. */
export function post(base: string, col: string, objects: unknown[], auth = AUTH.alice): Promise<Reply> {
  return request(base, 'POST', `/api1/collections/${col}/objects/`, {
    auth,
    headers: { 'Content-Type': TAXII },
    body: JSON.stringify({ objects }),
  });
}
