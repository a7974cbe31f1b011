/**
 * PostgresStore: the record store on PostgreSQL (the `pg` driver and its pool), for deployments
 * where several Node-RED/n8n instances serve one TAXII API on one (replicated) database
 * (issue 14). Same interface and conformance suite as the embedded and MongoDB stores.
 *
 * ## Tables (schema `schema`, names prefixed with `tablePrefix`, default `public.sets_*`)
 * - `objects`: one row per object version, primary key (collection, id, vk) (vk = versionKey,
 *   lib/store/common). The STIX object is kept as its JSON text, exactly as received. Flags of the
 *   default candidate set (`is_last`, `is_first`, `in_d`; see mongo.ts) are recomputed in the same
 *   transaction as every add / setStatus / delete of the object, so they are never stale; partial
 *   indexes on them page the default `match[version]=last` by index range.
 * - `counts`: per (collection, status) counters, changed in the same transaction (exact, no drift).
 * - `counters`: the date_added clock (µs). `meta`: getOrCreateMeta values.
 * - `statuses` + `status_entries`: TAXII status resources, one row per pending entry, settled in
 *   place by one conditional UPDATE (`st IS NULL`); entries go with their resource (ON DELETE CASCADE).
 *
 * ## The paging key is commit-ordered (why no object is missed or repeated)
 * Pages are keyset ranges over (date_added, id, vk). A clock value reserved *before* the insert
 * commits would let a reader pass a later value that committed first and never see the earlier
 * one. Here every transaction that adds records first takes ONE transaction-level advisory lock
 * of the store (`pg_advisory_xact_lock`, per schema + prefix), then reads the clock, inserts and
 * commits; PostgreSQL releases that lock only after the commit is visible (xact.c
 * CommitTransaction: ProcArrayEndTransaction "must be done _before_ releasing locks"). The clock
 * is read by a statement AFTER the lock statement: in READ COMMITTED a statement's snapshot is
 * taken when it starts, so a read inside the lock statement would see the state from before the
 * wait. So the transaction that
 * takes date_added d2 > d1 started its insert after the one with d1 had committed and become
 * visible: date_added order is commit order across every connection and every instance. A reader's
 * snapshot that shows d2 therefore also shows every smaller value (except an explicit `dateAdded`
 * given by the caller, which is kept as given — imports, tests), and a keyset page never passes a
 * value that becomes visible later. We chose this over a visibility horizon
 * (pg_snapshot_xmin(pg_current_snapshot()) plus a per-row xid) because readers then need no extra
 * bound or per-query snapshot arithmetic, and a reader is never held back by an unrelated long
 * transaction; the price is that adds are serialised per store (one short transaction at a time),
 * which we soften two ways: while the lock is held an add costs four round trips (lock, read the
 * versions, read the clock, one statement writing rows + clock + counters; then COMMIT), and the
 * adds that arrive in one process while its previous add transaction runs are group-committed
 * into the next one (each caller keeps its own outcomes). setStatus, delete and the status
 * resources do not take that lock.
 *
 * ## Other concurrency
 * setStatus and delete lock the object's rows (SELECT … FOR UPDATE) before they recompute its
 * flags, and an add locks the existing versions of the objects it touches after the writer lock:
 * compare-and-set (`expect`) is a check on the locked row, atomic across instances. Lock order is
 * always writer lock -> object rows -> counters, so these transactions cannot deadlock one another.
 * Within one process, mutations of one object run in call order (a per-object queue), as in the
 * other stores. settleStatus locks the resource row, then updates entries `WHERE st IS NULL`:
 * concurrent settlers (any instance) move an entry once. getOrCreateMeta is INSERT … ON CONFLICT
 * DO NOTHING, then SELECT.
 *
 * ## Timeouts, bounds, reconnection
 * Every connection has `statement_timeout` (default 10 s; also bounds waits for locks),
 * `idle_in_transaction_session_timeout` and a client-side read timeout; the pool has
 * `connectionTimeoutMillis`. Scans that judge candidates one by one (match[spec_version],
 * match[version]=all with invalid ones, explicit versions) read at most `maxScanRows` candidates
 * per page (default 10,000): the page then ends early with `more: true` and a cursor at the last
 * row examined, as in the other stores. The pool drops a connection that failed; an operation whose
 * FIRST statement fails because the connection or server is gone runs again once on a new
 * connection (nothing was executed), so after a server restart operations resume by themselves;
 * while the server is down they fail with ERR_STORE_CONNECT naming the server.
 *
 * ## Erasure
 * delete() removes the rows in one transaction. PostgreSQL keeps the old row versions in the table
 * files until VACUUM reclaims them (and in WAL, archives and replicas until those are recycled):
 * `vacuum()` runs VACUUM (FULL with `{ full: true }`) on the store's tables; see README.
 */
import type { Pool, PoolClient, PoolConfig, QueryConfig, QueryResultRow } from 'pg';
import type { AddOutcome, IntegrityStatus, Page, RecordQuery, SetStatusOptions, StatusCounts, StatusMove, StatusResource, Store, StoredRecord, VersionMatch } from './store';
import { StoreError, describeError } from './errors';
import {
  DEFAULT_STATUS_RETENTION_MS,
  STATUSES,
  assembleStatus,
  buildRecord,
  checkMetaName,
  checkMoves,
  defaultSelection,
  deleteSelector,
  encodeCursor,
  expectedStatuses,
  formatMicros,
  isStatus,
  isoNow,
  normaliseQuery,
  prepareRecord,
  selectVersions,
  splitStatus,
  statusVersionKey,
  versionKey,
  type NewRecord,
  type NormalisedQuery,
  type PreparedRecord,
  type StatusEntry,
  type VersionInfo,
} from './common';
import { isConnectionError, isRetryableConflict, pgFail, pgNames, redactPgUrl, schemaDdl, storableText, type PgNames } from './postgres-sql';

export { redactPgUrl };

/** The pg driver, loaded on the first open() (a process that never opens a PostgreSQL store never loads it). */
type Driver = typeof import('pg');
let driver: Driver | undefined;
async function loadDriver(): Promise<Driver> {
  driver ??= await import('pg');
  return driver;
}

export const DEFAULT_PG_POOL_SIZE = 10;
export const DEFAULT_PG_STATEMENT_TIMEOUT_MS = 10_000;
export const DEFAULT_PG_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_PG_MAX_SCAN_ROWS = 10_000;
/** Most records one group-committed add transaction takes from concurrent callers (one caller's batch is never split). */
const MAX_GROUP_RECORDS = 1000;

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// connection string (may carry user, password, host, port, database, sslmode) */
  uri: string;
  /** schema of the tables (default `public`; created when missing) */
  schema?: string;
  /** prefix of the table names (default `sets_`) */
  tablePrefix?: string;
  /** most connections this store opens (default 10) */
  poolSize?: number;
  /** server-side limit of every statement, ms (default 10,000; includes waiting for locks) */
  statementTimeoutMs?: number;
  /** limit for opening a connection, ms (default 10,000) */
  connectTimeoutMs?: number;
  /** TAXII status resource retention (default 24 h) */
  statusRetentionMs?: number;
  /** most candidate rows one page examines when candidates are judged one by one (default 10,000) */
  maxScanRows?: number;
  /** more pool/driver options (TLS `ssl`, ...); the settings above win */
  clientOptions?: Omit<PoolConfig, 'connectionString' | 'max' | 'statement_timeout' | 'query_timeout' | 'connectionTimeoutMillis'>;
  /** clock in ms (tests); default Date.now */
  now?: () => number;
}

interface ObjectRow extends QueryResultRow {
  collection: string;
  id: string;
  vk: string;
  version: string;
  type: string;
  spec_version: string;
  date_added: string;
  media_type: string;
  object: string;
  hash: string;
  key: string;
  status: IntegrityStatus;
  status_reason: string | null;
  status_at: string;
  status_ids: string | null;
}

/** What flag recomputation and version selection need of one version. */
interface VersionRow extends QueryResultRow {
  id: string;
  vk: string;
  status: IntegrityStatus;
  spec_version: string;
  hash: string;
  date_added: string;
  is_last: boolean;
  is_first: boolean;
  in_d: boolean;
}

const OBJECT_COLS = 'collection, id, vk, version, type, spec_version, date_added, media_type, object, hash, key, status, status_reason, status_at, status_ids';
/** OBJECT_COLS of the table aliased `o` (in joins) */
const OBJECT_COLS_O = OBJECT_COLS.split(', ')
  .map((c) => 'o.' + c)
  .join(', ');
const VERSION_COLS = 'id, vk, status, spec_version, hash, date_added, is_last, is_first, in_d';
const SEP = '\u0000';

const info = (r: VersionRow): VersionInfo => ({ vk: r.vk, status: r.status, spec: r.spec_version });

function toRecord(r: ObjectRow): StoredRecord {
  const rec: StoredRecord = {
    collection: r.collection,
    id: r.id,
    type: r.type,
    version: r.version,
    specVersion: r.spec_version,
    dateAdded: r.date_added,
    mediaType: r.media_type,
    object: JSON.parse(r.object) as StoredRecord['object'],
    hash: r.hash,
    key: r.key,
    status: r.status,
    statusAt: r.status_at,
  };
  if (r.status_reason !== null) rec.statusReason = r.status_reason;
  if (r.status_ids !== null) {
    const ids = JSON.parse(r.status_ids) as string[];
    if (ids.length > 0) rec.statusIds = ids;
  }
  return rec;
}

/** Flags of every version of one object (the default candidate set, as in mongo.ts). */
function flagsOf(versions: readonly VersionInfo[]): Map<string, { l: boolean; f: boolean; d: boolean }> {
  const sel = defaultSelection(versions);
  const inD = selectVersions(versions, { first: false, last: false, all: true, explicit: new Set(), spec: 'top', allowInvalid: false });
  const out = new Map<string, { l: boolean; f: boolean; d: boolean }>();
  for (const v of versions) out.set(v.vk, { l: sel.last?.vk === v.vk, f: sel.first?.vk === v.vk, d: inD.has(v.vk) });
  return out;
}

/** Counter changes as (collection, status, delta) columns in key order (rows locked in one order: no lock cycles). */
function countRows(changes: ReadonlyArray<{ collection: string; before: IntegrityStatus | null; after: IntegrityStatus | null }>): { collections: string[]; statuses: string[]; deltas: number[] } {
  const deltas = new Map<string, number>();
  for (const ch of changes) {
    if (ch.before === ch.after) continue;
    if (ch.before) deltas.set(ch.collection + SEP + ch.before, (deltas.get(ch.collection + SEP + ch.before) ?? 0) - 1);
    if (ch.after) deltas.set(ch.collection + SEP + ch.after, (deltas.get(ch.collection + SEP + ch.after) ?? 0) + 1);
  }
  const rows = [...deltas].filter(([, d]) => d !== 0).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { collections: rows.map(([k]) => k.split(SEP)[0]), statuses: rows.map(([k]) => k.split(SEP)[1]), deltas: rows.map(([, d]) => d) };
}

/** A counting semaphore: at most `n` operations hold a pool connection, the rest wait here without a timeout. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

export class PostgresStore implements Store {
  private readonly opts: PostgresStoreOptions;
  private readonly names: PgNames;
  private readonly where: string;
  private readonly retentionMs: number;
  private readonly now: () => number;
  private readonly maxScan: number;
  private readonly statementTimeoutMs: number;
  private readonly poolSize: number;
  private pool?: Pool;
  private slots?: Slots;
  private opening?: Promise<void>;
  private readonly inflight = new Set<Promise<unknown>>();
  /** per-object tails: mutations of one object run in call order within this process */
  private readonly tails = new Map<string, Promise<void>>();
  /** adds waiting for the next group commit (enqueueAdd) */
  private readonly addQueue: Array<{ prepared: PreparedRecord[]; resolve: (o: AddOutcome[]) => void; reject: (e: unknown) => void }> = [];
  private flushing?: Promise<void>;
  /** the last error of an idle pooled connection (server restart...), for messages */
  private idleError?: string;

  constructor(opts: PostgresStoreOptions) {
    if (!opts || typeof opts.uri !== 'string' || !/^postgres(ql)?:\/\/\S+$/.test(opts.uri)) {
      throw new StoreError('ERR_STORE_CONFIG', 'postgres store: uri must be a postgres:// or postgresql:// connection string');
    }
    this.names = pgNames(opts.schema, opts.tablePrefix);
    const int = (v: number | undefined, name: string, dflt: number, min: number, max: number): number => {
      const n = v ?? dflt;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        throw new StoreError('ERR_STORE_CONFIG', `postgres store: ${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
      }
      return n;
    };
    this.poolSize = int(opts.poolSize, 'poolSize', DEFAULT_PG_POOL_SIZE, 1, 1000);
    this.statementTimeoutMs = int(opts.statementTimeoutMs, 'statementTimeoutMs', DEFAULT_PG_STATEMENT_TIMEOUT_MS, 1, 24 * 3_600_000);
    int(opts.connectTimeoutMs, 'connectTimeoutMs', DEFAULT_PG_CONNECT_TIMEOUT_MS, 1, 3_600_000);
    this.maxScan = int(opts.maxScanRows, 'maxScanRows', DEFAULT_PG_MAX_SCAN_ROWS, 1, Number.MAX_SAFE_INTEGER);
    const retention = opts.statusRetentionMs ?? DEFAULT_STATUS_RETENTION_MS;
    if (!(retention > 0)) throw new StoreError('ERR_STORE_CONFIG', 'postgres store: statusRetentionMs must be > 0');
    this.retentionMs = retention;
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.where = `postgres store ${redactPgUrl(opts.uri)} tables ${this.names.schema}.${this.names.prefix}*`;
  }

  // -- lifecycle ------------------------------------------------------------------------------

  async open(): Promise<void> {
    if (this.pool) return;
    this.opening ??= this.doOpen().finally(() => {
      this.opening = undefined;
    });
    await this.opening;
  }

  private async doOpen(): Promise<void> {
    let pg: Driver;
    try {
      pg = await loadDriver();
    } catch (err) {
      throw new StoreError('ERR_STORE_IO', `${this.where}: cannot load the PostgreSQL driver (the pg package): ${describeError(err)}`, { cause: err });
    }
    const st = this.statementTimeoutMs;
    const pool = new pg.Pool({
      application_name: 'sets-store',
      keepAlive: true,
      ...this.opts.clientOptions,
      connectionString: this.opts.uri,
      max: this.poolSize,
      connectionTimeoutMillis: this.opts.connectTimeoutMs ?? DEFAULT_PG_CONNECT_TIMEOUT_MS,
      statement_timeout: st,
      // a client that stalls mid-transaction (or dies without closing) must not hold the writer lock
      idle_in_transaction_session_timeout: Math.max(st * 2, 10_000),
      // the network itself: a reply that never comes
      query_timeout: st + 5_000,
    });
    // an idle pooled connection dropped by the server (restart, admin kill): the pool removes it;
    // without a listener the error would crash the process
    pool.on('error', (err) => {
      this.idleError = describeError(err);
    });
    this.pool = pool;
    this.slots = new Slots(this.poolSize);
    try {
      await this.tx('open', async (c) => {
        await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [this.names.lockName + ':ddl']);
        for (const sql of schemaDdl(this.names)) await c.query(sql);
      });
    } catch (err) {
      this.pool = undefined;
      this.slots = undefined;
      await pool.end().catch(() => undefined);
      throw pgFail(this.where, 'open', err, st);
    }
  }

  async close(): Promise<void> {
    if (this.opening) await this.opening.catch(() => undefined);
    if (!this.pool) return;
    // adds already accepted are written first
    while (this.flushing) await this.flushing;
    const pool = this.pool;
    if (!pool) return;
    this.pool = undefined;
    await Promise.allSettled([...this.inflight]);
    this.slots = undefined;
    try {
      await pool.end();
    } catch (err) {
      throw pgFail(this.where, 'close', err, this.statementTimeoutMs);
    }
  }

  /**
   * Reclaim the space of erased and replaced rows now: VACUUM (ANALYZE) of the store's tables, or
   * VACUUM FULL (rewrites each table into new files: the old files with the erased rows' bytes are
   * removed; takes an exclusive lock while it runs). Not bound by the statement or read timeouts.
   */
  async vacuum(opts: { full?: boolean } = {}): Promise<void> {
    const n = this.names;
    await this.withClient('vacuum', async (c) => {
      await c.query('SET statement_timeout = 0');
      try {
        // and no client-side read timeout either (the pool's default is the statement timeout + 5 s)
        for (const t of [n.objects, n.entries, n.statuses, n.meta, n.counts, n.counters]) {
          const q: QueryConfig & { query_timeout: number } = { text: `VACUUM (${opts.full ? 'FULL, ' : ''}ANALYZE) ${t}`, query_timeout: 7 * 24 * 3_600_000 };
          await c.query(q);
        }
      } finally {
        await c.query(`SET statement_timeout = ${this.statementTimeoutMs}`);
      }
    });
  }

  private get where2(): string {
    return this.idleError ? `${this.where} (last connection error: ${this.idleError})` : this.where;
  }

  private fail(op: string, err: unknown): StoreError {
    return pgFail(this.where2, op, err, this.statementTimeoutMs);
  }

  /**
   * Run `fn` with a pooled connection. When the FIRST statement fails because the connection or the
   * server is gone (nothing was executed), runs once more on a new connection; a transient
   * serialisation failure or deadlock (rolled back whole) is retried too.
   */
  private async withClient<T>(op: string, fn: (c: PoolClient) => Promise<T>): Promise<T> {
    const pool = this.pool;
    const slots = this.slots;
    if (!pool || !slots) throw new StoreError('ERR_STORE_NOT_OPEN', `${this.where}: the store is not open (call open() first)`);
    const run = (async (): Promise<T> => {
      await slots.take();
      try {
        for (let attempt = 1; ; attempt++) {
          let client: PoolClient;
          try {
            client = await pool.connect();
          } catch (err) {
            if (attempt < 2 && isConnectionError(err)) continue;
            throw this.fail(op, err);
          }
          // the server may drop a checked-out connection between two statements (restart, admin
          // kill): pg then emits 'error' on the client, which would crash the process without a
          // listener; the next statement fails with the connection error instead
          const onError = (err: Error): void => {
            this.idleError = describeError(err);
          };
          client.on('error', onError);
          let progressed = false;
          const tracked: PoolClient = Object.create(client) as PoolClient;
          // count a statement as done once it returned: a failure after that is not retried
          const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
          (tracked as unknown as { query: (...a: unknown[]) => Promise<unknown> }).query = async (...a: unknown[]) => {
            const r = await query(...a);
            progressed = true;
            return r;
          };
          try {
            const out = await fn(tracked);
            client.removeListener('error', onError);
            client.release();
            this.idleError = undefined; // the server answers again: an old connection error is no news
            return out;
          } catch (err) {
            const gone = isConnectionError(err);
            client.removeListener('error', onError);
            client.release(gone ? (err instanceof Error ? err : new Error(String(err))) : undefined);
            if (attempt < 3 && ((gone && !progressed) || isRetryableConflict(err))) continue;
            throw this.fail(op, err);
          }
        }
      } finally {
        slots.give();
      }
    })();
    this.inflight.add(run);
    try {
      return await run;
    } finally {
      this.inflight.delete(run);
    }
  }

  /** `fn` in one transaction (BEGIN … COMMIT; ROLLBACK on error). */
  private tx<T>(op: string, fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return this.withClient(op, async (c) => {
      await c.query('BEGIN');
      try {
        const out = await fn(c);
        await c.query('COMMIT');
        return out;
      } catch (err) {
        if (!isConnectionError(err)) await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /** Run `fn` after every earlier mutation of these objects (keys `collection\0id`) in this process. */
  private serial<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    if (!this.pool) return Promise.reject(new StoreError('ERR_STORE_NOT_OPEN', `${this.where}: the store is not open (call open() first)`));
    const uniq = [...new Set(keys)];
    const before = uniq.map((k) => this.tails.get(k)).filter((p): p is Promise<void> => p !== undefined);
    const run = (before.length === 0 ? Promise.resolve() : Promise.all(before)).then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    for (const k of uniq) this.tails.set(k, tail);
    void tail.then(() => {
      for (const k of uniq) if (this.tails.get(k) === tail) this.tails.delete(k);
    });
    return run;
  }

  // -- records --------------------------------------------------------------------------------

  async add(rec: NewRecord): Promise<AddOutcome> {
    const [out] = await this.addMany([rec]);
    return out;
  }

  async addMany(recs: NewRecord[]): Promise<AddOutcome[]> {
    if (!Array.isArray(recs)) throw new StoreError('ERR_STORE_BAD_RECORD', 'addMany: records must be an array');
    const prepared = recs.map((r, i) => {
      const p = prepareRecord(r, recs.length === 1 ? undefined : i);
      const texts = [r.collection, r.id, r.type, r.version, r.specVersion, r.mediaType, r.hash, r.key, r.statusReason ?? '', ...(r.statusIds ?? [])];
      if (!texts.every(storableText)) {
        throw new StoreError('ERR_STORE_BAD_RECORD', `${recs.length === 1 ? 'add' : `add (record ${i})`}: a text field holds U+0000 or a lone surrogate, which PostgreSQL text cannot keep`);
      }
      return p;
    });
    if (prepared.length === 0) return [];
    const keys = prepared.map((p) => p.input.collection + SEP + p.input.id);
    return this.serial(keys, () => this.enqueueAdd(prepared));
  }

  /**
   * Group commit: adds that arrive while this process's previous add transaction runs are written
   * together in the next one (one writer-lock turn for all of them; each caller's records stay
   * together and in order; every caller gets its own outcomes). When the server refuses the group
   * (other than for a lost connection), each caller's records are tried alone, so one caller's bad
   * record fails only that caller.
   */
  private enqueueAdd(prepared: PreparedRecord[]): Promise<AddOutcome[]> {
    return new Promise<AddOutcome[]>((resolve, reject) => {
      this.addQueue.push({ prepared, resolve, reject });
      this.flushing ??= this.flushAdds().finally(() => {
        this.flushing = undefined;
      });
    });
  }

  private async flushAdds(): Promise<void> {
    while (this.addQueue.length > 0) {
      const group: typeof this.addQueue = [];
      let count = 0;
      while (this.addQueue.length > 0 && (group.length === 0 || count + this.addQueue[0].prepared.length <= MAX_GROUP_RECORDS)) {
        const next = this.addQueue.shift();
        if (!next) break;
        group.push(next);
        count += next.prepared.length;
      }
      try {
        const all = group.length === 1 ? group[0].prepared : group.flatMap((g) => g.prepared);
        const out = await this.tx('add', (c) => this.addBatch(c, all));
        let k = 0;
        for (const g of group) {
          g.resolve(out.slice(k, k + g.prepared.length));
          k += g.prepared.length;
        }
      } catch (err) {
        const cause = err instanceof StoreError ? err.cause : err;
        if (group.length === 1 || isConnectionError(cause)) {
          for (const g of group) g.reject(err);
          continue;
        }
        // one caller's records may be what the server refused (e.g. a key too long for an index):
        // the others must not fail with it — each caller alone, in the same order
        for (const g of group) {
          try {
            g.resolve(await this.tx('add', (c) => this.addBatch(c, g.prepared)));
          } catch (e) {
            g.reject(e);
          }
        }
      }
    }
  }

  private async versionsOf(c: PoolClient, collection: string, ids: readonly string[], lock: boolean): Promise<Map<string, VersionRow[]>> {
    const out = new Map<string, VersionRow[]>();
    if (ids.length === 0) return out;
    const r = await c.query<VersionRow>(
      `SELECT ${VERSION_COLS} FROM ${this.names.objects} WHERE collection = $1 AND id = ANY($2::text[]) ORDER BY id, vk${lock ? ' FOR UPDATE' : ''}`,
      [collection, [...ids]],
    );
    for (const row of r.rows) {
      const l = out.get(row.id);
      if (l) l.push(row);
      else out.set(row.id, [row]);
    }
    return out;
  }

  /**
   * Every version of one object, its rows locked (setStatus, delete). Two statements: the lock may
   * have waited for an add that inserted a NEW version of the object meanwhile, which the locking
   * statement's snapshot (taken before the wait) cannot show; the second statement's snapshot does,
   * and no add can insert another version while we hold the locks (an add locks the object's rows
   * first).
   */
  private async lockedVersions(c: PoolClient, collection: string, id: string): Promise<VersionRow[]> {
    await c.query(`SELECT 1 FROM ${this.names.objects} WHERE collection = $1 AND id = $2 ORDER BY vk FOR UPDATE`, [collection, id]);
    return (await this.versionsOf(c, collection, [id], false)).get(id) ?? [];
  }

  private async addBatch(c: PoolClient, prepared: PreparedRecord[]): Promise<AddOutcome[]> {
    const n = this.names;
    // the writer lock: date_added order = commit order (header)
    await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [n.lockName]);
    const byCollection = new Map<string, Set<string>>();
    for (const p of prepared) {
      const s = byCollection.get(p.input.collection) ?? new Set<string>();
      s.add(p.input.id);
      byCollection.set(p.input.collection, s);
    }
    type Version = { row?: VersionRow; batch?: number; vk: string; status: IntegrityStatus; spec: string; hash: string };
    const existing = new Map<string, Version[]>();
    for (const [col, ids] of [...byCollection].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const m = await this.versionsOf(c, col, [...ids].sort(), true);
      for (const id of ids) existing.set(col + SEP + id, (m.get(id) ?? []).map((row) => ({ row, vk: row.vk, status: row.status, spec: row.spec_version, hash: row.hash })));
    }
    const clockRow = await c.query<{ value: string }>(`SELECT value FROM ${n.counters} WHERE name = 'clock'`);
    const clock = clockRow.rows.length > 0 ? Number(clockRow.rows[0].value) : 0;
    const maxExplicit = prepared.reduce((m, p) => Math.max(m, p.dateAdded?.us ?? 0), 0);
    let next = Math.max(clock + 1, Math.floor(this.now()) * 1000, maxExplicit + 1);
    let newClock = Math.max(clock, maxExplicit);
    const statusAt = isoNow(this.now());
    const outcomes: Array<AddOutcome | { same: Version; i: number }> = [];
    const inserted: Array<{ record: StoredRecord; vk: string }> = [];
    for (let i = 0; i < prepared.length; i++) {
      const p = prepared[i];
      const list = existing.get(p.input.collection + SEP + p.input.id) ?? [];
      const same = p.vk === null ? list.find((v) => v.hash === p.input.hash) : list.find((v) => v.vk === p.vk);
      if (same) {
        outcomes.push({ same, i });
        continue;
      }
      let d: string;
      if (p.dateAdded) d = p.dateAdded.text;
      else {
        d = formatMicros(next);
        newClock = Math.max(newClock, next);
        next++;
      }
      const record = buildRecord(p, d, statusAt);
      const vk = p.vk ?? versionKey(d);
      if (vk === null) throw new StoreError('ERR_STORE_IO', `${this.where}: cannot derive a version from date_added ${d}`);
      list.push({ batch: inserted.length, vk, status: record.status, spec: record.specVersion, hash: record.hash });
      existing.set(p.input.collection + SEP + p.input.id, list);
      inserted.push({ record, vk });
      outcomes.push({ outcome: 'added', record });
    }
    // flags of every touched object, from its versions as they will be after this batch
    const flagOf = new Map<string, { l: boolean; f: boolean; d: boolean }>(); // c\0id\0vk
    const changed: Array<{ c: string; id: string; vk: string; l: boolean; f: boolean; d: boolean }> = [];
    for (const [key, list] of existing) {
      const [col, id] = key.split(SEP);
      const flags = flagsOf(list.map((v) => ({ vk: v.vk, status: v.status, spec: v.spec })));
      for (const v of list) {
        const fl = flags.get(v.vk) ?? { l: false, f: false, d: false };
        flagOf.set(key + SEP + v.vk, fl);
        if (v.row && (v.row.is_last !== fl.l || v.row.is_first !== fl.f || v.row.in_d !== fl.d)) changed.push({ c: col, id, vk: v.vk, ...fl });
      }
    }
    if (inserted.length > 0) {
      const col = <K extends string>(f: (x: { record: StoredRecord; vk: string; fl: { l: boolean; f: boolean; d: boolean } }) => K | boolean | null): Array<K | boolean | null> =>
        inserted.map((x) => f({ ...x, fl: flagOf.get(x.record.collection + SEP + x.record.id + SEP + x.vk) ?? { l: false, f: false, d: false } }));
      const counts = countRows(inserted.map((x) => ({ collection: x.record.collection, before: null, after: x.record.status })));
      // one statement (fewer round trips while the writer lock is held): the clock, the counters, the rows
      await c.query(
        `WITH clock AS (
           INSERT INTO ${n.counters} (name, value) VALUES ('clock', $19) ON CONFLICT (name) DO UPDATE SET value = GREATEST(${n.counters}.value, EXCLUDED.value)
         ), counted AS (
           INSERT INTO ${n.counts} (collection, status, n) SELECT * FROM unnest($20::text[], $21::text[], $22::bigint[]) ORDER BY 1, 2
           ON CONFLICT (collection, status) DO UPDATE SET n = ${n.counts}.n + EXCLUDED.n
         )
         INSERT INTO ${n.objects} (${OBJECT_COLS}, is_last, is_first, in_d)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                              $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bool[], $17::bool[], $18::bool[])`,
        [
          col((x) => x.record.collection),
          col((x) => x.record.id),
          col((x) => x.vk),
          col((x) => x.record.version),
          col((x) => x.record.type),
          col((x) => x.record.specVersion),
          col((x) => x.record.dateAdded),
          col((x) => x.record.mediaType),
          col((x) => JSON.stringify(x.record.object)),
          col((x) => x.record.hash),
          col((x) => x.record.key),
          col((x) => x.record.status),
          col((x) => x.record.statusReason ?? null),
          col((x) => x.record.statusAt),
          col((x) => (x.record.statusIds ? JSON.stringify(x.record.statusIds) : null)),
          col((x) => x.fl.l),
          col((x) => x.fl.f),
          col((x) => x.fl.d),
          newClock,
          counts.collections,
          counts.statuses,
          counts.deltas,
        ],
      );
    }
    await this.writeFlags(c, changed);
    // duplicates / conflicts: the stored record they equal (an earlier one of this batch, or a stored row)
    const lookups = outcomes.flatMap((o) => ('same' in o && o.same.row ? [{ c: prepared[o.i].input.collection, id: prepared[o.i].input.id, vk: o.same.vk }] : []));
    const stored = new Map<string, StoredRecord>();
    if (lookups.length > 0) {
      const r = await c.query<ObjectRow>(
        `SELECT ${OBJECT_COLS_O} FROM ${n.objects} o JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(c, id, vk) ON o.collection = k.c AND o.id = k.id AND o.vk = k.vk`,
        [lookups.map((l) => l.c), lookups.map((l) => l.id), lookups.map((l) => l.vk)],
      );
      for (const row of r.rows) stored.set(row.collection + SEP + row.id + SEP + row.vk, toRecord(row));
    }
    return outcomes.map((o) => {
      if (!('same' in o)) return o;
      const p = prepared[o.i];
      const rec = o.same.batch !== undefined ? inserted[o.same.batch].record : stored.get(p.input.collection + SEP + p.input.id + SEP + o.same.vk);
      if (!rec) throw new StoreError('ERR_STORE_IO', `${this.where}: version ${p.input.id} ${o.same.vk} vanished while adding`);
      return { outcome: rec.hash === p.input.hash ? 'duplicate' : 'conflict', record: rec };
    });
  }

  /** Per-(collection, status) counter changes, one statement, rows in key order (no lock-order cycles). */
  private async applyCounts(c: PoolClient, changes: ReadonlyArray<{ collection: string; before: IntegrityStatus | null; after: IntegrityStatus | null }>): Promise<void> {
    const rows = countRows(changes);
    if (rows.deltas.length === 0) return;
    const n = this.names;
    await c.query(
      `INSERT INTO ${n.counts} (collection, status, n)
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ORDER BY 1, 2
       ON CONFLICT (collection, status) DO UPDATE SET n = ${n.counts}.n + EXCLUDED.n`,
      [rows.collections, rows.statuses, rows.deltas],
    );
  }

  private async writeFlags(c: PoolClient, changed: ReadonlyArray<{ c: string; id: string; vk: string; l: boolean; f: boolean; d: boolean }>): Promise<void> {
    if (changed.length === 0) return;
    await c.query(
      `UPDATE ${this.names.objects} o SET is_last = v.l, is_first = v.f, in_d = v.d
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[], $6::bool[]) AS v(c, id, vk, l, f, d)
       WHERE o.collection = v.c AND o.id = v.id AND o.vk = v.vk`,
      [changed.map((x) => x.c), changed.map((x) => x.id), changed.map((x) => x.vk), changed.map((x) => x.l), changed.map((x) => x.f), changed.map((x) => x.d)],
    );
  }

  /** Recompute the flags of one object whose rows are locked, from `rows` as they now are. */
  private async reflag(c: PoolClient, collection: string, id: string, rows: readonly VersionRow[]): Promise<void> {
    const flags = flagsOf(rows.map(info));
    const changed = rows.flatMap((r) => {
      const fl = flags.get(r.vk) ?? { l: false, f: false, d: false };
      return r.is_last !== fl.l || r.is_first !== fl.f || r.in_d !== fl.d ? [{ c: collection, id, vk: r.vk, ...fl }] : [];
    });
    await this.writeFlags(c, changed);
  }

  async get(collection: string, id: string, version?: string): Promise<StoredRecord | null> {
    if (typeof collection !== 'string' || typeof id !== 'string' || !storableText(collection) || !storableText(id)) return null;
    const n = this.names;
    if (version !== undefined) {
      const vk = versionKey(version);
      if (vk === null) return null;
      const r = await this.withClient('get', (c) => c.query<ObjectRow>(`SELECT ${OBJECT_COLS} FROM ${n.objects} WHERE collection = $1 AND id = $2 AND vk = $3`, [collection, id, vk]));
      return r.rows.length > 0 ? toRecord(r.rows[0]) : null;
    }
    const r = await this.withClient('get', (c) =>
      c.query<ObjectRow>(`SELECT ${OBJECT_COLS} FROM ${n.objects} WHERE collection = $1 AND id = $2 ORDER BY vk DESC LIMIT 1`, [collection, id]),
    );
    return r.rows.length > 0 ? toRecord(r.rows[0]) : null;
  }

  async query(q: RecordQuery): Promise<Page<StoredRecord>> {
    const nq = normaliseQuery(q);
    const texts = [nq.collection, ...(nq.ids ?? []), ...(nq.types ?? []), ...(nq.cursor ? [nq.cursor.id] : [])];
    if (!texts.every(storableText)) throw new StoreError('ERR_STORE_BAD_QUERY', 'query: a value holds U+0000 or a lone surrogate');
    const indexed = nq.defaultCandidates && !nq.selector.all;
    return this.withClient('query', async (c) => {
      const { rows, stoppedAt, matched } = indexed ? { rows: await this.queryIndexed(c, nq), stoppedAt: undefined, matched: undefined } : await this.queryFiltered(c, nq);
      const found = matched ?? rows.length;
      const stopped = stoppedAt !== undefined && found <= nq.limit ? stoppedAt : undefined;
      const more = found > nq.limit || stopped !== undefined;
      const page = rows.slice(0, nq.limit);
      const items = page.map(toRecord);
      const last = stopped ?? (page.length > 0 ? { d: page[page.length - 1].date_added, id: page[page.length - 1].id, vk: page[page.length - 1].vk } : undefined);
      return last ? { items, more, cursor: encodeCursor(last) } : { items, more };
    });
  }

  /** WHERE clauses every query shares (collection, position, ids, types, statuses); pushes its parameters. */
  private baseWhere(nq: NormalisedQuery, params: unknown[], after?: { d: string; id: string; vk: string }): string[] {
    const p = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    const w = [`collection = ${p(nq.collection)}`];
    if (nq.addedAfter) w.push(`date_added > ${p(nq.addedAfter)}`);
    const pos = after ?? nq.cursor;
    if (pos) w.push(`(date_added, id, vk) > (${p(pos.d)}, ${p(pos.id)}, ${p(pos.vk)})`);
    if (nq.ids) w.push(`id = ANY(${p(nq.ids)}::text[])`);
    if (nq.types) w.push(`type = ANY(${p(nq.types)}::text[])`);
    if (nq.statuses) w.push(`status = ANY(${p([...nq.statuses])}::text[])`);
    else if (!nq.selector.allowInvalid) w.push(`status <> 'invalid'`);
    return w;
  }

  /** Default candidates with first/last/explicit: one indexed query on the maintained flags. */
  private async queryIndexed(c: PoolClient, nq: NormalisedQuery): Promise<ObjectRow[]> {
    const sel = nq.selector;
    const params: unknown[] = [];
    const w = this.baseWhere(nq, params);
    const or: string[] = [];
    if (sel.last) or.push('is_last');
    if (sel.first) or.push('is_first');
    if (sel.explicit.size > 0) {
      params.push([...sel.explicit]);
      or.push(`(in_d AND vk = ANY($${params.length}::text[]))`);
    }
    w.push(or.length === 1 ? or[0] : `(${or.join(' OR ')})`);
    params.push(nq.limit + 1);
    const r = await c.query<ObjectRow>(`SELECT ${OBJECT_COLS} FROM ${this.names.objects} WHERE ${w.join(' AND ')} ORDER BY date_added, id, vk LIMIT $${params.length}`, params);
    return r.rows;
  }

  /**
   * Other combinations (all, explicit spec versions, invalid included): read candidates in order,
   * in keyset chunks, and judge each object's version set (lib/store/common selectVersions) until
   * limit + 1 match or `maxScanRows` candidates were examined (or a chunk hit the statement timeout
   * after at least one candidate): then `stoppedAt` is the last candidate examined.
   */
  private async queryFiltered(c: PoolClient, nq: NormalisedQuery): Promise<{ rows: ObjectRow[]; stoppedAt?: { d: string; id: string; vk: string }; matched: number }> {
    const sel = nq.selector;
    const spec = sel.spec instanceof Set ? sel.spec : undefined;
    const want = nq.limit + 1;
    const maxScan = Math.max(this.maxScan, want);
    const needObjects = !(nq.defaultCandidates && sel.all) && !(sel.all && sel.spec !== 'top');
    const picked = new Map<string, Set<string>>();
    const matches: VersionRow[] = [];
    let examined = 0;
    let last: { d: string; id: string; vk: string } | undefined;
    const candidates = async (after: typeof last, limit: number): Promise<VersionRow[]> => {
      const params: unknown[] = [];
      const w = this.baseWhere(nq, params, after);
      if (nq.defaultCandidates && sel.all) w.push('in_d');
      else if (!sel.all && !sel.first && !sel.last) {
        params.push([...sel.explicit]);
        w.push(`vk = ANY($${params.length}::text[])`);
      }
      params.push(limit);
      const r = await c.query<VersionRow>(`SELECT ${VERSION_COLS} FROM ${this.names.objects} WHERE ${w.join(' AND ')} ORDER BY date_added, id, vk LIMIT $${params.length}`, params);
      return r.rows;
    };
    let stoppedAt: typeof last;
    while (matches.length < want) {
      if (examined >= maxScan) {
        if (last !== undefined && (await candidates(last, 1)).length > 0) stoppedAt = last;
        break;
      }
      const chunkSize = Math.max(1, Math.min(Math.max(want - matches.length, 100), 1000, maxScan - examined));
      let chunk: VersionRow[];
      try {
        chunk = await candidates(last, chunkSize);
      } catch (err) {
        // the statement timeout after candidates were judged: the page ends there
        if ((err as { code?: unknown }).code === '57014' && last !== undefined) {
          stoppedAt = last;
          break;
        }
        throw err;
      }
      if (chunk.length === 0) break;
      examined += chunk.length;
      const tail = chunk[chunk.length - 1];
      last = { d: tail.date_added, id: tail.id, vk: tail.vk };
      const judged = spec ? chunk.filter((r) => spec.has(r.spec_version)) : chunk;
      if (needObjects) {
        const unknown = [...new Set(judged.map((r) => r.id))].filter((id) => !picked.has(id));
        const versions = await this.versionsOf(c, nq.collection, unknown, false);
        for (const id of unknown) picked.set(id, selectVersions((versions.get(id) ?? []).map(info), sel));
      }
      for (const r of judged) {
        if (matches.length >= want) break;
        if (!needObjects || picked.get(r.id)?.has(r.vk)) matches.push(r);
      }
      if (chunk.length < chunkSize) break;
    }
    const page = matches.slice(0, nq.limit);
    const rows = await this.wholeRows(c, nq.collection, page);
    return stoppedAt !== undefined && matches.length <= nq.limit ? { rows, stoppedAt, matched: matches.length } : { rows, matched: matches.length };
  }

  /** The full rows of a page, in the page's order (one deleted meanwhile is left out). */
  private async wholeRows(c: PoolClient, collection: string, page: readonly VersionRow[]): Promise<ObjectRow[]> {
    if (page.length === 0) return [];
    const r = await c.query<ObjectRow>(
      `SELECT ${OBJECT_COLS_O} FROM ${this.names.objects} o JOIN unnest($2::text[], $3::text[]) AS k(id, vk) ON o.collection = $1 AND o.id = k.id AND o.vk = k.vk`,
      [collection, page.map((p) => p.id), page.map((p) => p.vk)],
    );
    const found = new Map(r.rows.map((row) => [row.id + SEP + row.vk, row]));
    return page.flatMap((p) => {
      const w = found.get(p.id + SEP + p.vk);
      return w ? [w] : [];
    });
  }

  async setStatus(collection: string, id: string, version: string, status: IntegrityStatus, reason?: string, opts?: SetStatusOptions): Promise<boolean> {
    if (!isStatus(status)) throw new StoreError('ERR_STORE_BAD_RECORD', `setStatus: status must be one of ${STATUSES.join(', ')}`);
    if (reason !== undefined && (typeof reason !== 'string' || !storableText(reason))) {
      throw new StoreError('ERR_STORE_BAD_RECORD', 'setStatus: reason must be a string without U+0000 or lone surrogates');
    }
    const expect = expectedStatuses(opts?.expect);
    const vk = versionKey(version);
    if (vk === null || typeof collection !== 'string' || typeof id !== 'string' || !storableText(collection) || !storableText(id)) return false;
    return this.serial([collection + SEP + id], () =>
      this.tx('setStatus', async (c) => {
        const rows = await this.lockedVersions(c, collection, id);
        const row = rows.find((r) => r.vk === vk);
        // compare-and-set on the locked row: atomic whatever other connections / instances do
        if (!row || (expect && !expect.has(row.status))) return false;
        await c.query(`UPDATE ${this.names.objects} SET status = $4, status_at = $5, status_reason = $6 WHERE collection = $1 AND id = $2 AND vk = $3`, [
          collection,
          id,
          vk,
          status,
          isoNow(this.now()),
          reason ?? null,
        ]);
        const before = row.status;
        row.status = status;
        await this.reflag(c, collection, id, rows);
        await this.applyCounts(c, [{ collection, before, after: status }]);
        return true;
      }),
    );
  }

  async delete(collection: string, id: string, filter?: { versions?: VersionMatch[]; specVersions?: string[] }): Promise<number> {
    const sel = deleteSelector(filter);
    if (typeof collection !== 'string' || typeof id !== 'string' || !storableText(collection) || !storableText(id)) return 0;
    return this.serial([collection + SEP + id], () =>
      this.tx('delete', async (c) => {
        const rows = await this.lockedVersions(c, collection, id);
        const picked = selectVersions(rows.map(info), sel);
        if (picked.size === 0) return 0;
        const gone = await c.query<{ status: IntegrityStatus }>(
          `DELETE FROM ${this.names.objects} WHERE collection = $1 AND id = $2 AND vk = ANY($3::text[]) RETURNING status`,
          [collection, id, [...picked]],
        );
        await this.reflag(
          c,
          collection,
          id,
          rows.filter((r) => !picked.has(r.vk)),
        );
        await this.applyCounts(
          c,
          gone.rows.map((r) => ({ collection, before: r.status, after: null })),
        );
        return gone.rowCount ?? gone.rows.length;
      }),
    );
  }

  async counts(collection?: string): Promise<StatusCounts> {
    const out: StatusCounts = { pending: 0, finalized: 0, invalid: 0 };
    if (collection !== undefined && (typeof collection !== 'string' || !storableText(collection))) return out;
    const n = this.names;
    const r = await this.withClient('counts', (c) =>
      collection !== undefined
        ? c.query<{ status: string; n: string }>(`SELECT status, n FROM ${n.counts} WHERE collection = $1`, [collection])
        : c.query<{ status: string; n: string }>(`SELECT status, sum(n)::bigint AS n FROM ${n.counts} GROUP BY status`),
    );
    for (const row of r.rows) if (isStatus(row.status)) out[row.status] = Math.max(0, Number(row.n));
    return out;
  }

  async getOrCreateMeta(name: string, initial: string): Promise<string> {
    checkMetaName(name, initial);
    if (!storableText(name) || !storableText(initial)) throw new StoreError('ERR_STORE_BAD_RECORD', 'getOrCreateMeta: name and value must not hold U+0000 or lone surrogates');
    const n = this.names;
    return this.withClient('getOrCreateMeta', async (c) => {
      // a concurrent first insert of the same name (any instance) makes this one wait, then do nothing
      await c.query(`INSERT INTO ${n.meta} (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, [name, initial]);
      const r = await c.query<{ value: string }>(`SELECT value FROM ${n.meta} WHERE name = $1`, [name]);
      if (r.rows.length === 0) throw new StoreError('ERR_STORE_IO', `${this.where}: meta value ${name} could not be created or read`);
      return r.rows[0].value;
    });
  }

  // -- TAXII status resources -----------------------------------------------------------------

  async putStatus(status: StatusResource): Promise<void> {
    if (!status || typeof status.id !== 'string' || status.id.length === 0) {
      throw new StoreError('ERR_STORE_BAD_RECORD', 'putStatus: status.id must be a non-empty string');
    }
    const { header, entries } = splitStatus(status);
    const texts = [status.id, ...entries.flatMap((e) => [e.id, e.version, e.message ?? ''])];
    if (!texts.every(storableText)) throw new StoreError('ERR_STORE_BAD_RECORD', 'putStatus: a text holds U+0000 or a lone surrogate');
    const n = this.names;
    const nowMs = this.now();
    await this.tx('putStatus', async (c) => {
      // expired resources go (their entries with them); a few per write keeps the table small
      await c.query(`DELETE FROM ${n.statuses} WHERE id IN (SELECT id FROM ${n.statuses} WHERE expires_ms <= $1 ORDER BY expires_ms LIMIT 100)`, [nowMs]);
      await c.query(
        `INSERT INTO ${n.statuses} (id, resource, expires_ms) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET resource = EXCLUDED.resource, expires_ms = EXCLUDED.expires_ms`,
        [status.id, JSON.stringify(header), nowMs + this.retentionMs],
      );
      await c.query(`DELETE FROM ${n.entries} WHERE s = $1`, [status.id]);
      if (entries.length > 0) {
        await c.query(
          `INSERT INTO ${n.entries} (s, i, id, vk, version, message) SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[])`,
          [status.id, entries.map((e) => e.i), entries.map((e) => e.id), entries.map((e) => statusVersionKey(e.version)), entries.map((e) => e.version), entries.map((e) => e.message ?? null)],
        );
      }
    });
  }

  async getStatus(id: string): Promise<StatusResource | null> {
    if (typeof id !== 'string' || !storableText(id)) return null;
    const n = this.names;
    // one statement: one snapshot of the resource and its entries
    const r = await this.withClient('getStatus', (c) =>
      c.query<{ resource: string; expires_ms: string; entries: string | null }>(
        `SELECT s.resource, s.expires_ms,
                (SELECT json_agg(json_build_object('i', e.i, 'id', e.id, 'version', e.version, 'message', e.message, 'st', e.st, 'm', e.m))::text
                   FROM ${n.entries} e WHERE e.s = s.id) AS entries
           FROM ${n.statuses} s WHERE s.id = $1`,
        [id],
      ),
    );
    const row = r.rows[0];
    if (!row || Number(row.expires_ms) <= this.now()) return null;
    const header = JSON.parse(row.resource) as StatusResource;
    type RawEntry = { i: number; id: string; version: string; message: string | null; st: string | null; m: string | null };
    const entries = (row.entries ? (JSON.parse(row.entries) as RawEntry[]) : []).map((e): StatusEntry => {
      const out: StatusEntry = { i: e.i, id: e.id, version: e.version };
      if (e.message !== null) out.message = e.message;
      if (e.st === 's' || e.st === 'f') out.st = e.st;
      if (e.m !== null) out.m = e.m;
      return out;
    });
    return assembleStatus(header, entries);
  }

  async settleStatus(statusId: string, moves: readonly StatusMove[]): Promise<boolean[]> {
    const checked = checkMoves(statusId, moves);
    if (checked.length === 0) return [];
    if (!storableText(statusId)) return checked.map(() => false);
    const n = this.names;
    return this.tx('settleStatus', async (c) => {
      // the resource row first (as putStatus): settlers of one resource take turns, no lock cycles
      const r = await c.query<{ expires_ms: string }>(`SELECT expires_ms FROM ${n.statuses} WHERE id = $1 FOR UPDATE`, [statusId]);
      const nowMs = this.now();
      if (r.rows.length === 0 || Number(r.rows[0].expires_ms) <= nowMs) return checked.map(() => false);
      const out: boolean[] = [];
      for (const m of checked) {
        if (!storableText(m.id) || !storableText(m.message)) {
          out.push(false);
          continue;
        }
        const u = await c.query(`UPDATE ${n.entries} SET st = $4, m = $5 WHERE s = $1 AND id = $2 AND vk = $3 AND st IS NULL`, [
          statusId,
          m.id,
          m.vk,
          m.outcome === 'success' ? 's' : 'f',
          m.message,
        ]);
        out.push((u.rowCount ?? 0) > 0);
      }
      if (out.some(Boolean)) await c.query(`UPDATE ${n.statuses} SET expires_ms = $2 WHERE id = $1`, [statusId, nowMs + this.retentionMs]);
      return out;
    });
  }
}
