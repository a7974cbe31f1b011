/**
 * The PostgreSQL store's schema (lib/store/postgres.ts), identifier checks, and how driver and
 * server errors map to StoreError codes. No I/O here: unit-testable without a server.
 */
import { StoreError, describeError } from './errors';

/** A plain SQL identifier we create: letters, digits, underscore, not starting with a digit. */
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Longest table/index name we build: prefix + 'status_entries_entry' (PostgreSQL truncates past 63 bytes). */
export const MAX_PREFIX_LENGTH = 40;

export interface PgNames {
  schema: string;
  prefix: string;
  /** quoted, schema-qualified table names */
  objects: string;
  counts: string;
  counters: string;
  meta: string;
  statuses: string;
  entries: string;
  /** text hashed into the advisory lock keys of this store (one writer lock per schema + prefix) */
  lockName: string;
}

const quote = (id: string): string => `"${id}"`;

/** Check the schema and table prefix and build the table names (throws ERR_STORE_CONFIG). */
export function pgNames(schema: string | undefined, prefix: string | undefined): PgNames {
  const s = schema ?? 'public';
  const p = prefix ?? 'sets_';
  if (!IDENT.test(s) || s.length > 63) {
    throw new StoreError('ERR_STORE_CONFIG', `postgres store: schema ${JSON.stringify(s)} must be 1-63 letters, digits or _ (not starting with a digit)`);
  }
  if (p !== '' && (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(p) || p.length > MAX_PREFIX_LENGTH)) {
    throw new StoreError('ERR_STORE_CONFIG', `postgres store: table prefix ${JSON.stringify(p)} must be empty or up to ${MAX_PREFIX_LENGTH} letters, digits or _ (not starting with a digit)`);
  }
  const t = (name: string): string => `${quote(s)}.${quote(p + name)}`;
  return {
    schema: s,
    prefix: p,
    objects: t('objects'),
    counts: t('counts'),
    counters: t('counters'),
    meta: t('meta'),
    statuses: t('statuses'),
    entries: t('status_entries'),
    lockName: `sets-store:${s}.${p}`,
  };
}

/**
 * The DDL, idempotent (IF NOT EXISTS), run in one transaction under an advisory lock at open().
 * Every text key column is COLLATE "C": byte order, the order of the other stores' keys
 * (lib/store/common cmpBytes) — `vk` order is version order, `date_added` text order is time order.
 */
export function schemaDdl(n: PgNames): string[] {
  const ix = (name: string): string => quote(n.prefix + name);
  return [
    `CREATE SCHEMA IF NOT EXISTS ${quote(n.schema)}`,
    `CREATE TABLE IF NOT EXISTS ${n.objects} (
      collection text COLLATE "C" NOT NULL,
      id text COLLATE "C" NOT NULL,
      vk text COLLATE "C" NOT NULL,
      version text NOT NULL,
      type text COLLATE "C" NOT NULL,
      spec_version text NOT NULL,
      date_added text COLLATE "C" NOT NULL,
      media_type text NOT NULL,
      object text NOT NULL,
      hash text NOT NULL,
      key text NOT NULL,
      status text NOT NULL CHECK (status IN ('pending', 'finalized', 'invalid')),
      status_reason text,
      status_at text NOT NULL,
      status_ids text,
      is_last boolean NOT NULL DEFAULT false,
      is_first boolean NOT NULL DEFAULT false,
      in_d boolean NOT NULL DEFAULT false,
      PRIMARY KEY (collection, id, vk)
    )`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_by_date')} ON ${n.objects} (collection, date_added, id, vk)`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_by_type')} ON ${n.objects} (collection, type, date_added, id, vk)`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_by_status')} ON ${n.objects} (collection, status, date_added, id, vk)`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_last')} ON ${n.objects} (collection, date_added, id, vk) WHERE is_last`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_last_by_type')} ON ${n.objects} (collection, type, date_added, id, vk) WHERE is_last`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_first')} ON ${n.objects} (collection, date_added, id, vk) WHERE is_first`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_first_by_type')} ON ${n.objects} (collection, type, date_added, id, vk) WHERE is_first`,
    `CREATE INDEX IF NOT EXISTS ${ix('objects_in_d')} ON ${n.objects} (collection, date_added, id, vk) WHERE in_d`,
    `CREATE TABLE IF NOT EXISTS ${n.counts} (
      collection text COLLATE "C" NOT NULL,
      status text NOT NULL,
      n bigint NOT NULL,
      PRIMARY KEY (collection, status)
    )`,
    `CREATE TABLE IF NOT EXISTS ${n.counters} (name text COLLATE "C" PRIMARY KEY, value bigint NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ${n.meta} (name text COLLATE "C" PRIMARY KEY, value text NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ${n.statuses} (
      id text COLLATE "C" PRIMARY KEY,
      resource text NOT NULL,
      expires_ms bigint NOT NULL
    )`,
    `CREATE INDEX IF NOT EXISTS ${ix('statuses_expiry')} ON ${n.statuses} (expires_ms)`,
    `CREATE TABLE IF NOT EXISTS ${n.entries} (
      s text COLLATE "C" NOT NULL REFERENCES ${n.statuses} (id) ON DELETE CASCADE,
      i integer NOT NULL,
      id text COLLATE "C" NOT NULL,
      vk text COLLATE "C" NOT NULL,
      version text NOT NULL,
      message text,
      st text,
      m text,
      PRIMARY KEY (s, i)
    )`,
    `CREATE INDEX IF NOT EXISTS ${ix('status_entries_entry')} ON ${n.entries} (s, id, vk)`,
  ];
}

/** SQLSTATEs and socket errors after which the connection is gone (the pool drops it; a retry gets a new one). */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P01', // admin_shutdown (server stopping / restarting)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up / shutting down)
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
]);

function codeOf(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : '';
}

/** True when the error means the connection (or the server) is gone, not that the statement was wrong. */
export function isConnectionError(err: unknown): boolean {
  if (CONNECTION_CODES.has(codeOf(err))) return true;
  const msg = err instanceof Error ? err.message : '';
  return /Connection terminated|connection timeout|timeout expired|Client has encountered a connection error|not queryable|Query read timeout|server closed the connection/i.test(msg);
}

/** Transient conflicts after which the whole transaction can run again (nothing was written). */
export function isRetryableConflict(err: unknown): boolean {
  const c = codeOf(err);
  return c === '40001' || c === '40P01';
}

/** A driver/server error as a StoreError naming the store and the operation. */
export function pgFail(where: string, op: string, err: unknown, statementTimeoutMs: number): StoreError {
  if (err instanceof StoreError) return err;
  const code = codeOf(err);
  if (code === '28P01' || code === '28000') {
    return new StoreError('ERR_STORE_CONNECT', `${where}: ${op}: not authorised: ${describeError(err)}`, { cause: err });
  }
  if (code === '3D000') return new StoreError('ERR_STORE_CONNECT', `${where}: ${op}: the database does not exist: ${describeError(err)}`, { cause: err });
  if (isConnectionError(err)) {
    return new StoreError('ERR_STORE_CONNECT', `${where}: ${op}: cannot reach the server: ${describeError(err)}`, { cause: err });
  }
  if (code === '57014' || code === '55P03') {
    return new StoreError('ERR_STORE_IO', `${where}: ${op}: timed out (statement timeout ${statementTimeoutMs} ms): ${describeError(err)}`, { cause: err });
  }
  if (code === '42501') return new StoreError('ERR_STORE_CONFIG', `${where}: ${op}: permission denied: ${describeError(err)}`, { cause: err });
  return new StoreError('ERR_STORE_IO', `${where}: ${op} failed: ${describeError(err)}`, { cause: err });
}

/** The connection string without its password, for messages. */
export function redactPgUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, cred: string) => `//${cred.split(':')[0]}:***@`).replace(/([?&]password=)[^&]*/i, '$1***');
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** PostgreSQL text cannot hold U+0000; a lone surrogate would be stored altered. */
export function storableText(s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s);
}
