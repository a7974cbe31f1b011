/**
 * Configuration of the TAXII 2.1 server (lib/taxii/server.ts) and its validation: a config that
 * cannot work is refused at creation with a message naming the field, not at the first request.
 */
import type { Store } from '../store/store';
import type { ServerAuthConfig } from '../auth/server-auth';
import { STIX_MEDIA_TYPE } from './media';

export interface CollectionConfig {
  /** collection id (TAXII identifier; UUIDv4 recommended). Also the collection part of the ledger key. */
  id: string;
  title: string;
  description?: string;
  /** alternative name, usable in URLs instead of the id */
  alias?: string;
  /** roles that may read (`*` = any authenticated caller, `anonymous` = callers without credentials) */
  canRead: string[];
  /** roles that may add objects (and, with canRead, delete them) */
  canWrite: string[];
  /** media types of the objects (default [`application/stix+json;version=2.1`]) */
  mediaTypes?: string[];
  /**
   * SETS integrity policy of the collection (docs/interop.md):
   * - `required` (default, the SETS behaviour): a record starts `pending`, an `object` event asks
   *   the flow to check it against the ledger, and a record whose hash is not anchored by its
   *   deadline, or does not match the anchored hash, ends `invalid` and is never served again;
   * - `optional`: records are stored and served at once (the TAXII status is `complete`); the
   *   verification result is recorded when an anchor appears. A mismatch against an existing
   *   anchor still makes the record `invalid` (refused); `not-anchored` does not;
   * - `off`: a plain TAXII 2.1 collection; records are never verified (reported `unverified`).
   * `mode` is the older spelling and stays accepted: `verify` = required, `trust` = off.
   */
  integrity?: {
    policy?: IntegrityPolicy;
    /** @deprecated use `policy`; `verify` = required, `trust` = off (the policy names work here too) */
    mode?: 'verify' | 'trust' | IntegrityPolicy;
    /** community key for the keyed-hash privacy option (must match the producers'); lib/digest hashObject */
    hmacKey?: string;
  };
}

/** SETS integrity policy of a collection (see CollectionConfig.integrity). */
export type IntegrityPolicy = 'required' | 'optional' | 'off';
export const INTEGRITY_POLICIES: readonly IntegrityPolicy[] = ['required', 'optional', 'off'];

/** The policy named by a config value: a policy name, or the legacy `verify` / `trust`; null otherwise. */
export function integrityPolicyOf(value: unknown): IntegrityPolicy | null {
  if (value === 'verify') return 'required';
  if (value === 'trust') return 'off';
  return typeof value === 'string' && (INTEGRITY_POLICIES as readonly string[]).includes(value) ? (value as IntegrityPolicy) : null;
}

/** The sentence appended to a collection's `description` to report its policy to TAXII clients. */
export function integrityPolicySentence(policy: IntegrityPolicy): string {
  switch (policy) {
    case 'required':
      return 'Integrity policy: required — every object is verified against the SETS ledger; an object whose hash is not anchored by its deadline, or differs from the anchored hash, is marked invalid and never served.';
    case 'optional':
      return 'Integrity policy: optional — objects are served at once and verified against the SETS ledger when their hash is anchored; an object that differs from its anchored hash is marked invalid and no longer served.';
    case 'off':
      return 'Integrity policy: off — a plain TAXII 2.1 collection; objects are not verified against the SETS ledger.';
  }
}

export interface ApiRootConfig {
  title: string;
  description?: string;
  /** largest request body accepted, octets (default 10 MiB) */
  maxContentLength?: number;
  collections: CollectionConfig[];
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type ServerLogger = (level: LogLevel, message: string, detail?: Record<string, unknown>) => void;

export interface TaxiiServerConfig {
  /** discovery title */
  title: string;
  description?: string;
  contact?: string;
  /**
   * URL path where the server is reachable (e.g. `/taxii`), used to strip incoming paths in a plain
   * node:http server and to build the `api_roots` URLs. Under Express, `req.baseUrl` is used when
   * this is not given.
   */
  basePath?: string;
  /** API roots by name; the name is the URL path segment (`/api1/`) */
  apiRoots: Record<string, ApiRootConfig>;
  /** name of the default API root (must be one of apiRoots) */
  defaultApiRoot?: string;
  store: Store;
  auth: ServerAuthConfig;
  /** most records in one page (default 1,000); larger `limit` values are lowered to it */
  maxPageSize?: number;
  /** page size when the request has no `limit` (default maxPageSize) */
  defaultPageSize?: number;
  /**
   * HMAC secret signing `next` tokens (>= 16 bytes). Every instance behind one load balancer must
   * share it. When absent, a secret generated once and kept in the store (Store.getOrCreateMeta)
   * is used: shared by every instance on that store, the same after a restart.
   */
  nextTokenSecret?: string | Uint8Array;
  /** how long a `next` token stays valid, ms (default 3,600,000; at least 600,000) */
  nextTokenTtlMs?: number;
  /** how long to wait for a request body, ms (default 60,000) */
  bodyTimeoutMs?: number;
  /** where diagnostics go (default: console for warn/error) */
  log?: ServerLogger;
  /** re-checking records that stay `pending` (TaxiiServer.startRecovery / recover) */
  recovery?: RecoveryConfig;
}

export interface RecoveryConfig {
  /** time between sweeps, ms (default 60,000; 0 = no periodic sweep, only at start) */
  intervalMs?: number;
  /**
   * anchor grace period, ms (default 300,000): a record pending longer than this since its
   * date_added is re-emitted by the sweep, and a `not-anchored` look from a read counts against it
   */
  graceMs?: number;
  /** most records re-emitted per collection and sweep (default 100) */
  batchSize?: number;
}

export interface ResolvedRecovery {
  intervalMs: number;
  graceMs: number;
  batchSize: number;
}

export const DEFAULT_RECOVERY: ResolvedRecovery = { intervalMs: 60_000, graceMs: 300_000, batchSize: 100 };

function resolveRecovery(r: RecoveryConfig | undefined): ResolvedRecovery {
  const out = { ...DEFAULT_RECOVERY, ...Object.fromEntries(Object.entries(r ?? {}).filter(([, v]) => v !== undefined)) } as ResolvedRecovery;
  if (!Number.isInteger(out.intervalMs) || out.intervalMs < 0) throw new TaxiiServerConfigError('recovery.intervalMs must be a whole number of ms >= 0');
  if (out.intervalMs > 0 && out.intervalMs < 1000) throw new TaxiiServerConfigError('recovery.intervalMs must be 0 (off) or at least 1000');
  if (!Number.isInteger(out.graceMs) || out.graceMs < 0) throw new TaxiiServerConfigError('recovery.graceMs must be a whole number of ms >= 0');
  if (!Number.isInteger(out.batchSize) || out.batchSize < 1 || out.batchSize > 10_000) throw new TaxiiServerConfigError('recovery.batchSize must be between 1 and 10000');
  return out;
}

export class TaxiiServerConfigError extends Error {
  readonly code = 'BAD_CONFIG';
  constructor(message: string) {
    super(`TAXII server config: ${message}`);
    this.name = 'TaxiiServerConfigError';
  }
}

export interface ResolvedCollection extends CollectionConfig {
  mediaTypes: string[];
  integrityPolicy: IntegrityPolicy;
  /** @deprecated legacy view of integrityPolicy: `trust` for off, `verify` otherwise */
  integrityMode: 'verify' | 'trust';
}

export interface ResolvedApiRoot {
  name: string;
  title: string;
  description?: string;
  maxContentLength: number;
  collections: ResolvedCollection[];
  byKey: Map<string, ResolvedCollection>;
}

export interface ResolvedConfig {
  title: string;
  description?: string;
  contact?: string;
  basePath?: string;
  defaultApiRoot?: string;
  roots: ResolvedApiRoot[];
  maxPageSize: number;
  defaultPageSize: number;
  /** undefined: the secret is kept in the store (created once, see TaxiiServerConfig.nextTokenSecret) */
  nextTokenSecret?: Uint8Array | string;
  nextTokenTtlMs: number;
  bodyTimeoutMs: number;
  recovery: ResolvedRecovery;
}

const SEGMENT_RE = /^[A-Za-z0-9._~!$&'()*+,;=:@-]+$/;

function nonEmpty(v: unknown): v is string {
  return typeof v === 'string' && v.trim() !== '';
}

function normaliseBasePath(p: string | undefined): string | undefined {
  if (p === undefined || p === '' || p === '/') return undefined;
  let s = p.trim();
  if (!s.startsWith('/')) s = '/' + s;
  while (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

export function resolveConfig(config: TaxiiServerConfig): ResolvedConfig {
  if (!config || typeof config !== 'object') throw new TaxiiServerConfigError('missing');
  if (!nonEmpty(config.title)) throw new TaxiiServerConfigError('title is required');
  if (!config.store) throw new TaxiiServerConfigError('store is required');
  if (!config.auth) throw new TaxiiServerConfigError('auth is required (use { open: true } for a server without authentication)');
  const maxPageSize = config.maxPageSize ?? 1000;
  if (!Number.isInteger(maxPageSize) || maxPageSize < 1) throw new TaxiiServerConfigError(`maxPageSize must be a positive integer, got ${maxPageSize}`);
  const defaultPageSize = config.defaultPageSize ?? maxPageSize;
  if (!Number.isInteger(defaultPageSize) || defaultPageSize < 1 || defaultPageSize > maxPageSize) {
    throw new TaxiiServerConfigError(`defaultPageSize must be an integer between 1 and maxPageSize (${maxPageSize})`);
  }
  const ttl = config.nextTokenTtlMs ?? 3_600_000;
  if (!Number.isFinite(ttl) || ttl < 600_000) throw new TaxiiServerConfigError('nextTokenTtlMs must be at least 600000 (10 minutes)');
  let secret = config.nextTokenSecret;
  if (typeof secret === 'string' && secret === '') secret = undefined;
  if (secret !== undefined) {
    const secretLen = typeof secret === 'string' ? Buffer.byteLength(secret, 'utf8') : secret.length;
    if (secretLen < 16) throw new TaxiiServerConfigError('nextTokenSecret must be at least 16 bytes');
  }
  const recovery = resolveRecovery(config.recovery);

  const names = Object.keys(config.apiRoots ?? {});
  const roots: ResolvedApiRoot[] = [];
  const seenIds = new Set<string>();
  for (const name of names) {
    const r = config.apiRoots[name];
    const segs = name.split('/');
    if (name === '' || segs.some((s) => !SEGMENT_RE.test(s) || s === '.' || s === '..')) {
      throw new TaxiiServerConfigError(`API root name ${JSON.stringify(name)} must be one or more URL path segments without slashes at the ends`);
    }
    if (segs[0] === 'taxii2') throw new TaxiiServerConfigError('an API root cannot be named taxii2 (the discovery path)');
    if (!r || !nonEmpty(r.title)) throw new TaxiiServerConfigError(`API root ${name}: title is required`);
    const mcl = r.maxContentLength ?? 10 * 1024 * 1024;
    if (!Number.isInteger(mcl) || mcl < 1) throw new TaxiiServerConfigError(`API root ${name}: maxContentLength must be a positive integer`);
    const byKey = new Map<string, ResolvedCollection>();
    const cols: ResolvedCollection[] = [];
    for (const c of r.collections ?? []) {
      if (!nonEmpty(c.id) || !SEGMENT_RE.test(c.id)) throw new TaxiiServerConfigError(`API root ${name}: collection id ${JSON.stringify(c.id)} is not usable in a URL`);
      if (!nonEmpty(c.title)) throw new TaxiiServerConfigError(`collection ${c.id}: title is required`);
      if (seenIds.has(c.id)) throw new TaxiiServerConfigError(`collection id ${c.id} is used twice (ids must be unique across API roots: they name the collection on the ledger)`);
      seenIds.add(c.id);
      if (!Array.isArray(c.canRead) || !Array.isArray(c.canWrite)) throw new TaxiiServerConfigError(`collection ${c.id}: canRead and canWrite must be lists of roles`);
      const fromPolicy = c.integrity?.policy === undefined ? undefined : integrityPolicyOf(c.integrity.policy);
      const fromMode = c.integrity?.mode === undefined ? undefined : integrityPolicyOf(c.integrity.mode);
      if (fromPolicy === null) {
        throw new TaxiiServerConfigError(`collection ${c.id}: integrity.policy must be one of ${INTEGRITY_POLICIES.join(', ')}, got ${JSON.stringify(c.integrity?.policy)}`);
      }
      if (fromMode === null) {
        throw new TaxiiServerConfigError(`collection ${c.id}: integrity.mode must be verify, trust or one of ${INTEGRITY_POLICIES.join(', ')}, got ${JSON.stringify(c.integrity?.mode)}`);
      }
      if (fromPolicy !== undefined && fromMode !== undefined && fromPolicy !== fromMode) {
        throw new TaxiiServerConfigError(`collection ${c.id}: integrity.policy (${fromPolicy}) and integrity.mode (${String(c.integrity?.mode)}) disagree; give policy only`);
      }
      const policy: IntegrityPolicy = fromPolicy ?? fromMode ?? 'required';
      if (c.integrity?.hmacKey !== undefined && c.integrity.hmacKey === '') throw new TaxiiServerConfigError(`collection ${c.id}: integrity.hmacKey is empty`);
      const rc: ResolvedCollection = {
        ...c,
        canRead: [...c.canRead],
        canWrite: [...c.canWrite],
        mediaTypes: c.mediaTypes && c.mediaTypes.length > 0 ? [...c.mediaTypes] : [STIX_MEDIA_TYPE],
        integrityPolicy: policy,
        integrityMode: policy === 'off' ? 'trust' : 'verify',
      };
      cols.push(rc);
      byKey.set(c.id, rc);
    }
    for (const c of cols) {
      if (c.alias === undefined) continue;
      if (!nonEmpty(c.alias) || !SEGMENT_RE.test(c.alias)) throw new TaxiiServerConfigError(`collection ${c.id}: alias ${JSON.stringify(c.alias)} is not usable in a URL`);
      if (byKey.has(c.alias) && byKey.get(c.alias) !== c) throw new TaxiiServerConfigError(`API root ${name}: alias ${c.alias} clashes with another collection`);
      byKey.set(c.alias, c);
    }
    roots.push({ name, title: r.title, description: r.description, maxContentLength: mcl, collections: cols, byKey });
  }
  if (config.defaultApiRoot !== undefined && !names.includes(config.defaultApiRoot)) {
    throw new TaxiiServerConfigError(`defaultApiRoot ${config.defaultApiRoot} is not one of the API roots (${names.join(', ')})`);
  }
  return {
    title: config.title,
    description: config.description,
    contact: config.contact,
    basePath: normaliseBasePath(config.basePath),
    defaultApiRoot: config.defaultApiRoot,
    roots,
    maxPageSize,
    defaultPageSize,
    ...(secret !== undefined ? { nextTokenSecret: secret } : {}),
    nextTokenTtlMs: ttl,
    bodyTimeoutMs: config.bodyTimeoutMs ?? 60_000,
    recovery,
  };
}
