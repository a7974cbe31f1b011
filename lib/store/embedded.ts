/**
 * EmbeddedStore: the default record store, on LevelDB (classic-level; its prebuilt binaries ship in
 * the npm package). One directory per store, e.g. `<Node-RED user dir>/sets-store/<name>`.
 *
 * ## Keys
 * Keys are strings whose parts are joined by U+0000 (parts escape U+0000/U+0001 as U+0001 U+0001 /
 * U+0001 U+0002, so byte order of keys is tuple order). C = collection, d = date_added (fixed-width
 * µs text), vk = versionKey (lib/store/common: normalised timestamp without `Z`, sortable at any
 * precision), s = status, t = type.
 *
 *   r C id vk              -> StoredRecord JSON (the record)
 *   o C id                 -> per-object meta: type + every version {vk, d, status, spec, hash}
 *   a C d id vk            -> ''   all records by date_added            (match[version]=all, added_after)
 *   t C t d id vk          -> ''   by type                              (match[type])
 *   s C s d id vk          -> ''   by integrity status                  (statuses)
 *   v C vk d id vk         -> ''   by version instant                   (explicit match[version])
 *   L C d id vk / LT C t d id vk -> status   the latest version of each object (default candidates)
 *   F C d id vk / FT C t d id vk -> status   the first version of each object (default candidates)
 *   c C s                  -> count of records with that status
 *   m clock                -> last date_added assigned (µs since epoch; never goes backwards)
 *   m meta name            -> store-wide named values (getOrCreateMeta: the server's token secret)
 *   S id / X expiry id     -> TAXII status resources (without their pendings) and their expiry index
 *   SP id oid vk           -> the pending entries of status resource `id` naming that object version
 *                             (normally one; settled in place: {st, m}),
 *                             so settling one object is one small read and write whatever the
 *                             resource's size (Store.settleStatus); getStatus assembles the resource
 *
 * "Default candidates" = the versions that are not `invalid` and carry the object's highest spec
 * version (what a TAXII GET without match[spec_version] sees). L/F hold exactly one entry per
 * object, maintained on add/setStatus/delete, so `match[version]=last` (the default) and `first`
 * page by a range scan of L/F from the cursor: a page reads `limit + 1` index entries whatever the
 * collection size. Other filter combinations scan a/t/s/v from the cursor and check each entry
 * against the object's meta (one small read, cached per query).
 *
 * Every change of an object (its records, index entries, meta and counters, and the clock) is one
 * atomic LevelDB batch, built inside one serialised write queue per directory: a crash never
 * leaves an index entry without its record, and concurrent add() of the same key cannot race.
 * Queries read from an explicit LevelDB snapshot, so a page is consistent with itself.
 *
 * ## Erasure
 * delete() removes the records, every index entry and the meta in one batch, then calls
 * `compactRange` over the object's record range and its meta key: LevelDB rewrites the table
 * files holding them, the old write-ahead log is dropped, and the object's content and hashes are
 * gone from the directory once delete() resolves. Caveats: (1) a query running concurrently keeps
 * a snapshot from before the delete and LevelDB keeps the data it may read until it ends (the next
 * compaction of the range drops it); (2) the index keys (collection, id, version, date_added,
 * type, status — no content) are deleted at once but their bytes leave the files with LevelDB's
 * ordinary background compaction, as do key names in LevelDB's MANIFEST log. Compacting them at
 * once too would rewrite files across the whole store for every delete (seconds at 100k records).
 *
 * ## Sharing
 * LevelDB locks its directory. Two EmbeddedStore instances on the same directory in one process
 * share one handle (reference-counted, one write queue, one clock); another process gets
 * StoreError `ERR_STORE_LOCKED`.
 */
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import type { ClassicLevel, Iterator as LevelIterator } from 'classic-level';
import type {
  AddOutcome,
  IntegrityStatus,
  Page,
  RecordQuery,
  SetStatusOptions,
  StatusCounts,
  StatusMove,
  StatusResource,
  Store,
  StoredRecord,
  VersionMatch,
} from './store';
import { StoreError, describeError } from './errors';
import {
  DEFAULT_STATUS_RETENTION_MS,
  STATUSES,
  buildRecord,
  cmpBytes,
  defaultSelection,
  deleteSelector,
  encodeCursor,
  checkMetaName,
  expectedStatuses,
  formatMicros,
  isStatus,
  isoNow,
  normaliseQuery,
  prepareRecord,
  selectVersions,
  versionKey,
  assembleStatus,
  checkMoves,
  splitStatus,
  statusVersionKey,
  type StatusEntry,
  type NewRecord,
  type NormalisedQuery,
  type PreparedRecord,
} from './common';

export interface EmbeddedStoreOptions {
  /** directory of the LevelDB database (created if missing) */
  dir: string;
  /** how long TAXII status resources are kept after their last update (default 24 h) */
  statusRetentionMs?: number;
  /** Snappy compression of table files (default true) */
  compression?: boolean;
  /** clock in ms (tests); default Date.now */
  now?: () => number;
  /**
   * Most index entries one query examines (default 10,000). A selective filter the indexes cannot
   * answer directly (match[spec_version], statuses, explicit versions) checks entries one by one;
   * when this many were examined without filling the page, the page ends there with `more: true`
   * and a cursor at the last examined entry, so the next page goes on from it — a query never
   * reads the whole collection at once, and paging still returns every match exactly once.
   */
  maxScanEntries?: number;
}

/** Default bound of index entries examined per query (EmbeddedStoreOptions.maxScanEntries). */
export const DEFAULT_MAX_SCAN_ENTRIES = 10_000;

/** Instrumentation: what queries read (for scale checks; not used by the store itself). */
export interface EmbeddedStoreStats {
  /** index entries read from LevelDB iterators */
  indexEntriesRead: number;
  /** record values read */
  recordsRead: number;
  /** per-object meta values read */
  metasRead: number;
}

// ---------------------------------------------------------------------------------------------
// Keys

const SEP = '\u0000';
/** how often putStatus looks for expired status resources while none are found (ms) */
const PURGE_EVERY_MS = 1000;

/** most setStatus calls applied in one batch (group commit) */
const MAX_STATUS_GROUP = 1000;

/** A queued setStatus call. */
interface StatusChange {
  collection: string;
  id: string;
  vk: string;
  version: string;
  status: IntegrityStatus;
  reason?: string;
  expect: Set<IntegrityStatus> | null;
  resolve: (written: boolean) => void;
  reject: (err: unknown) => void;
}

/** most status entries one purge of expired status resources deletes */
const PURGE_ENTRIES = 10_000;
const FORMAT = '1';

// Key parts escape the separator characters themselves, so the regexes must name them.
function esc(s: string): string {
  if (!s.includes('\u0000') && !s.includes('\u0001')) return s; // the usual case, without a regex
  // eslint-disable-next-line no-control-regex -- U+0000/U+0001 are the key separator and escape
  return s.replace(/[\u0000\u0001]/g, (c) => (c === '\u0000' ? '\u0001\u0001' : '\u0001\u0002'));
}
function unesc(s: string): string {
  // eslint-disable-next-line no-control-regex -- see esc()
  return s.replace(/\u0001([\u0001\u0002])/g, (_m, c: string) => (c === '\u0001' ? '\u0000' : '\u0001'));
}
function key(...parts: string[]): string {
  return parts.map(esc).join(SEP);
}
function prefix(...parts: string[]): string {
  return key(...parts) + SEP;
}
/** Smallest string above every key that starts with `p` (p ends with SEP). */
function upper(p: string): string {
  return p.slice(0, -1) + '\u0001';
}
function suffix(d: string, id: string, vk: string): string {
  return key(d, id, vk);
}

const K = {
  rec: (c: string, id: string, vk: string) => key('r', c, id, vk),
  recPrefix: (c: string, id: string) => prefix('r', c, id),
  meta: (c: string, id: string) => key('o', c, id),
  counter: (c: string, s: IntegrityStatus) => key('c', c, s),
  clock: key('m', 'clock'),
  format: key('m', 'format'),
  userMeta: (name: string) => key('m', 'meta', name),
  status: (id: string) => key('S', id),
  entry: (sid: string, id: string, vk: string) => key('SP', sid, id, vk),
  entries: (sid: string) => prefix('SP', sid),
  expiry: (at: number, id: string) => key('X', String(at).padStart(16, '0'), id),
};

/** A status resource's pending entries grouped under their keys (SP sid id vk). */
function groupEntries(statusId: string, entries: readonly StatusEntry[]): Map<string, StatusEntry[]> {
  const out = new Map<string, StatusEntry[]>();
  for (const e of entries) {
    const k = K.entry(statusId, e.id, statusVersionKey(e.version));
    const list = out.get(k);
    if (list) list.push(e);
    else out.set(k, [e]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Per-object meta

interface VMeta {
  /** versionKey */
  vk: string;
  /** date_added */
  d: string;
  status: IntegrityStatus;
  spec: string;
  hash: string;
}
interface ObjMeta {
  type: string;
  versions: VMeta[];
}

function parseMeta(json: string | undefined): ObjMeta | null {
  if (json === undefined) return null;
  const m = JSON.parse(json) as ObjMeta;
  if (!m || typeof m.type !== 'string' || !Array.isArray(m.versions)) {
    throw new StoreError('ERR_STORE_IO', 'embedded store: corrupt object meta value');
  }
  return m;
}

/** Index keys (a, t, s, v) of one version. */
function indexKeys(c: string, id: string, type: string, v: VMeta): string[] {
  return [
    key('a', c, v.d, id, v.vk),
    key('t', c, type, v.d, id, v.vk),
    key('s', c, v.status, v.d, id, v.vk),
    key('v', c, v.vk, v.d, id, v.vk),
  ];
}
function selKeys(tag: 'L' | 'F', c: string, id: string, type: string, v: VMeta): string[] {
  return [key(tag, c, v.d, id, v.vk), key(tag + 'T', c, type, v.d, id, v.vk)];
}

type Op = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

/**
 * Batch operations turning an object's `before` versions into `after` (index entries, L/F
 * selection, meta, counter deltas). Record values (r keys) are the caller's business.
 * Returns the keys deleted.
 */
function objectDiff(
  ops: Op[],
  counters: Map<string, number>,
  c: string,
  id: string,
  type: string,
  before: VMeta[],
  after: VMeta[],
): string[] {
  const erased: string[] = [];
  const del = (k: string): void => {
    ops.push({ type: 'del', key: k });
    erased.push(k);
  };
  const count = (s: IntegrityStatus, n: number): void => {
    const k = K.counter(c, s);
    counters.set(k, (counters.get(k) ?? 0) + n);
  };
  const bMap = new Map(before.map((v) => [v.vk, v]));
  const aMap = new Map(after.map((v) => [v.vk, v]));
  for (const b of before) {
    const a = aMap.get(b.vk);
    if (!a) {
      indexKeys(c, id, type, b).forEach(del);
      count(b.status, -1);
    } else if (a.status !== b.status) {
      del(key('s', c, b.status, b.d, id, b.vk));
      ops.push({ type: 'put', key: key('s', c, a.status, a.d, id, a.vk), value: '' });
      count(b.status, -1);
      count(a.status, 1);
    }
  }
  for (const a of after) {
    if (bMap.has(a.vk)) continue;
    for (const k of indexKeys(c, id, type, a)) ops.push({ type: 'put', key: k, value: '' });
    count(a.status, 1);
  }
  const selB = defaultSelection(before);
  const selA = defaultSelection(after);
  for (const [tag, b, a] of [
    ['L', selB.last, selA.last],
    ['F', selB.first, selA.first],
  ] as const) {
    if (b && (!a || a.vk !== b.vk)) selKeys(tag, c, id, type, b).forEach(del);
    if (a && (!b || a.vk !== b.vk || a.status !== b.status)) {
      for (const k of selKeys(tag, c, id, type, a)) ops.push({ type: 'put', key: k, value: a.status });
    }
  }
  const metaKey = K.meta(c, id);
  if (after.length > 0) {
    const sorted = [...after].sort((x, y) => cmpBytes(x.vk, y.vk));
    ops.push({ type: 'put', key: metaKey, value: JSON.stringify({ type, versions: sorted } satisfies ObjMeta) });
  } else {
    del(metaKey);
  }
  return erased;
}

// ---------------------------------------------------------------------------------------------
// Shared handles (one per directory per process)

type DB = ClassicLevel<string, string>;

interface Handle {
  dir: string;
  db: DB;
  refs: number;
  closed: boolean;
  /** tail of the serialised write queue */
  queue: Promise<void>;
  /** last date_added assigned, µs since epoch */
  clockUs: number;
  /** compactions of deletes in progress (close() waits for them) */
  erasing: Set<Promise<void>>;
}

const handles = new Map<string, Promise<Handle>>();
const closing = new Map<string, Promise<void>>();

async function openHandle(dir: string, compression: boolean): Promise<Handle> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new StoreError('ERR_STORE_IO', `embedded store: cannot create directory ${dir}: ${describeError(err)}`, { cause: err });
  }
  // classic-level (a native addon) is loaded on the first open, so a process that never opens an
  // embedded store (every node but the store's users, n8n nodes without a store) never loads it.
  let Level: typeof ClassicLevel;
  try {
    ({ ClassicLevel: Level } = await import('classic-level'));
  } catch (err) {
    throw new StoreError('ERR_STORE_IO', `embedded store: cannot load LevelDB (the classic-level package): ${describeError(err)}`, { cause: err });
  }
  const db: DB = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8', compression });
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new StoreError(
        'ERR_STORE_LOCKED',
        `embedded store ${dir} is in use by another process (LevelDB lock held); stop the other process or use another directory`,
        { cause: err },
      );
    }
    throw new StoreError('ERR_STORE_IO', `embedded store: cannot open ${dir}: ${describeError(cause ?? err)}`, { cause: err });
  }
  try {
    const format = await db.get(K.format);
    if (format === undefined) await db.put(K.format, FORMAT);
    else if (format !== FORMAT) {
      throw new StoreError('ERR_STORE_CONFIG', `embedded store ${dir} has data format ${format}; this version reads format ${FORMAT}`);
    }
    const clock = Number((await db.get(K.clock)) ?? '0');
    return { dir, db, refs: 0, closed: false, queue: Promise.resolve(), clockUs: Number.isFinite(clock) ? clock : 0, erasing: new Set() };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err instanceof StoreError ? err : new StoreError('ERR_STORE_IO', `embedded store ${dir}: ${describeError(err)}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// Merging index ranges

interface Entry {
  /** d \0 id \0 vk (escaped) */
  suffix: string;
  d: string;
  id: string;
  vk: string;
  value: string;
}

/** One index range read in growing chunks. */
class RangeReader {
  private buf: Array<[string, string]> = [];
  private pos = 0;
  private done = false;
  private chunk: number;
  private readonly it: LevelIterator<DB, string, string>;

  constructor(
    db: DB,
    readonly prefix: string,
    readonly kind: 'sel' | 'meta',
    start: string | undefined,
    chunk: number,
    snapshot: ReturnType<DB['snapshot']>,
    private readonly stats: EmbeddedStoreStats,
    /** largest batch read ahead (the scan bound: no use reading far beyond it) */
    private readonly maxChunk = 1000,
  ) {
    this.maxChunk = Math.max(1, Math.min(maxChunk, 1000));
    this.chunk = Math.max(1, Math.min(chunk, this.maxChunk));
    this.it = start === undefined
      ? db.iterator({ gte: prefix, lt: upper(prefix), snapshot })
      : db.iterator({ gt: prefix + start, lt: upper(prefix), snapshot });
  }

  async peek(): Promise<Entry | null> {
    if (this.pos >= this.buf.length) {
      if (this.done) return null;
      this.buf = await this.it.nextv(this.chunk);
      this.pos = 0;
      this.stats.indexEntriesRead += this.buf.length;
      this.chunk = Math.min(this.chunk * 2, this.maxChunk);
      if (this.buf.length === 0) {
        this.done = true;
        return null;
      }
    }
    const [k, value] = this.buf[this.pos];
    const suf = k.slice(this.prefix.length);
    const parts = suf.split(SEP);
    if (parts.length !== 3) throw new StoreError('ERR_STORE_IO', `embedded store: malformed index key ${JSON.stringify(k)}`);
    return { suffix: suf, d: parts[0], id: unesc(parts[1]), vk: parts[2], value };
  }

  advance(): void {
    this.pos++;
  }

  close(): Promise<void> {
    return this.it.close();
  }
}

// ---------------------------------------------------------------------------------------------

export class EmbeddedStore implements Store {
  readonly dir: string;
  readonly stats: EmbeddedStoreStats = { indexEntriesRead: 0, recordsRead: 0, metasRead: 0 };
  private readonly retentionMs: number;
  private readonly compression: boolean;
  private readonly now: () => number;
  private readonly maxScan: number;
  private handle?: Handle;
  private opening?: Promise<void>;

  constructor(opts: EmbeddedStoreOptions) {
    if (!opts || typeof opts.dir !== 'string' || opts.dir.length === 0) {
      throw new StoreError('ERR_STORE_CONFIG', 'embedded store: dir must be a non-empty path');
    }
    const retention = opts.statusRetentionMs ?? DEFAULT_STATUS_RETENTION_MS;
    if (!(retention > 0)) throw new StoreError('ERR_STORE_CONFIG', 'embedded store: statusRetentionMs must be > 0');
    this.dir = path.resolve(opts.dir);
    this.retentionMs = retention;
    this.compression = opts.compression ?? true;
    this.now = opts.now ?? Date.now;
    const maxScan = opts.maxScanEntries ?? DEFAULT_MAX_SCAN_ENTRIES;
    if (!Number.isSafeInteger(maxScan) || maxScan < 1) {
      throw new StoreError('ERR_STORE_CONFIG', `embedded store: maxScanEntries must be a positive integer, got ${String(maxScan)}`);
    }
    this.maxScan = maxScan;
  }

  resetStats(): void {
    this.stats.indexEntriesRead = 0;
    this.stats.recordsRead = 0;
    this.stats.metasRead = 0;
  }

  // -- lifecycle ------------------------------------------------------------------------------

  async open(): Promise<void> {
    if (this.handle) return;
    this.opening ??= this.doOpen().finally(() => {
      this.opening = undefined;
    });
    await this.opening;
  }

  private async doOpen(): Promise<void> {
    for (;;) {
      await closing.get(this.dir);
      let p = handles.get(this.dir);
      if (!p) {
        p = openHandle(this.dir, this.compression);
        handles.set(this.dir, p);
        p.catch(() => {
          if (handles.get(this.dir) === p) handles.delete(this.dir);
        });
      }
      const h = await p;
      if (h.closed) continue; // lost a race with the last close(): open anew
      h.refs++;
      this.handle = h;
      return;
    }
  }

  async close(): Promise<void> {
    if (this.opening) await this.opening.catch(() => undefined);
    const h = this.handle;
    if (!h) return;
    this.handle = undefined;
    h.refs--;
    if (h.refs > 0) return;
    h.closed = true;
    handles.delete(h.dir);
    const done = (async () => {
      await h.queue;
      await Promise.allSettled([...h.erasing]);
      await h.db.close();
    })();
    closing.set(h.dir, done);
    try {
      await done;
    } catch (err) {
      throw new StoreError('ERR_STORE_IO', `embedded store ${h.dir}: close failed: ${describeError(err)}`, { cause: err });
    } finally {
      if (closing.get(h.dir) === done) closing.delete(h.dir);
    }
  }

  private h(op: string): Handle {
    if (!this.handle) throw new StoreError('ERR_STORE_NOT_OPEN', `embedded store ${this.dir}: ${op} called while the store is not open`);
    return this.handle;
  }

  private fail(op: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const code = (err as { code?: unknown }).code;
    if (code === 'LEVEL_DATABASE_NOT_OPEN' || code === 'LEVEL_ITERATOR_NOT_OPEN' || code === 'LEVEL_SNAPSHOT_NOT_OPEN') {
      return new StoreError('ERR_STORE_NOT_OPEN', `embedded store ${this.dir}: ${op}: the store was closed`, { cause: err });
    }
    return new StoreError('ERR_STORE_IO', `embedded store ${this.dir}: ${op} failed: ${describeError(err)}`, { cause: err });
  }

  /** Run a mutation in the directory's serialised write queue. */
  private exclusive<T>(op: string, fn: (h: Handle) => Promise<T>): Promise<T> {
    const h = this.h(op);
    const run = h.queue.then(() => {
      if (h.closed) throw new StoreError('ERR_STORE_NOT_OPEN', `embedded store ${this.dir}: ${op}: the store was closed`);
      return fn(h);
    });
    h.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run.catch((err: unknown) => {
      throw this.fail(op, err);
    });
  }

  // -- records --------------------------------------------------------------------------------

  async add(rec: NewRecord): Promise<AddOutcome> {
    const [out] = await this.addMany([rec]);
    return out;
  }

  async addMany(recs: NewRecord[]): Promise<AddOutcome[]> {
    if (!Array.isArray(recs)) throw new StoreError('ERR_STORE_BAD_RECORD', 'addMany: records must be an array');
    const prepared = recs.map((r, i) => prepareRecord(r, recs.length === 1 ? undefined : i));
    if (prepared.length === 0) return [];
    return this.exclusive('add', (h) => this.addBatch(h, prepared));
  }

  private async addBatch(h: Handle, prepared: PreparedRecord[]): Promise<AddOutcome[]> {
    const db = h.db;
    const outcomes: AddOutcome[] = new Array<AddOutcome>(prepared.length);
    const groups = new Map<string, number[]>();
    for (let i = 0; i < prepared.length; i++) {
      const k = K.meta(prepared[i].input.collection, prepared[i].input.id);
      const g = groups.get(k);
      if (g) g.push(i);
      else groups.set(k, [i]);
    }
    const metaKeys = [...groups.keys()];
    const metas = await db.getMany(metaKeys);
    const nowMs = this.now();
    const statusAt = isoNow(nowMs);
    let clock = h.clockUs;
    const ops: Op[] = [];
    const counters = new Map<string, number>();
    const written = new Map<string, StoredRecord>();
    const existing = async (c: string, id: string, vk: string): Promise<StoredRecord> => {
      const rk = K.rec(c, id, vk);
      const w = written.get(rk);
      if (w) return w;
      const json = await db.get(rk);
      if (json === undefined) throw new StoreError('ERR_STORE_IO', `embedded store ${this.dir}: record ${id} ${vk} is indexed but missing`);
      return JSON.parse(json) as StoredRecord;
    };

    for (let g = 0; g < metaKeys.length; g++) {
      const idxs = groups.get(metaKeys[g]) ?? [];
      const first = prepared[idxs[0]].input;
      const c = first.collection;
      const id = first.id;
      const meta = parseMeta(metas[g]);
      const before = meta?.versions ?? [];
      const after = before.map((v) => ({ ...v }));
      for (const i of idxs) {
        const p = prepared[i];
        let same: VMeta | undefined;
        if (p.vk === null) same = after.find((v) => v.hash === p.input.hash);
        else same = after.find((v) => v.vk === p.vk);
        if (same) {
          const record = await existing(c, id, same.vk);
          outcomes[i] = { outcome: same.hash === p.input.hash ? 'duplicate' : 'conflict', record };
          continue;
        }
        let d: string;
        if (p.dateAdded) {
          d = p.dateAdded.text;
          clock = Math.max(clock, p.dateAdded.us);
        } else {
          clock = Math.max(clock + 1, nowMs * 1000);
          d = formatMicros(clock);
        }
        const record = buildRecord(p, d, statusAt);
        const vk = p.vk ?? versionKey(d);
        if (vk === null) throw new StoreError('ERR_STORE_IO', `embedded store: cannot derive a version from date_added ${d}`);
        const clash = after.find((v) => v.vk === vk);
        if (clash) {
          // an unversioned add whose date_added equals an explicit version of the same object
          outcomes[i] = { outcome: 'conflict', record: await existing(c, id, clash.vk) };
          continue;
        }
        after.push({ vk, d, status: record.status, spec: record.specVersion, hash: record.hash });
        const rk = K.rec(c, id, vk);
        ops.push({ type: 'put', key: rk, value: JSON.stringify(record) });
        written.set(rk, record);
        outcomes[i] = { outcome: 'added', record };
      }
      if (after.length !== before.length) objectDiff(ops, counters, c, id, first.type, before, after);
    }
    if (ops.length === 0) return outcomes;
    await this.putCounters(db, ops, counters);
    ops.push({ type: 'put', key: K.clock, value: String(clock) });
    await db.batch(ops);
    h.clockUs = clock;
    return outcomes;
  }

  private async putCounters(db: DB, ops: Op[], counters: Map<string, number>): Promise<void> {
    const keys = [...counters.keys()].filter((k) => counters.get(k) !== 0);
    if (keys.length === 0) return;
    const current = await db.getMany(keys);
    keys.forEach((k, i) => {
      const n = Number(current[i] ?? '0') + (counters.get(k) ?? 0);
      if (n > 0) ops.push({ type: 'put', key: k, value: String(n) });
      else ops.push({ type: 'del', key: k });
    });
  }

  async get(collection: string, id: string, version?: string): Promise<StoredRecord | null> {
    const h = this.h('get');
    try {
      if (version !== undefined) {
        const vk = versionKey(version);
        if (vk === null) return null;
        const json = await h.db.get(K.rec(collection, id, vk));
        return json === undefined ? null : (JSON.parse(json) as StoredRecord);
      }
      const p = K.recPrefix(collection, id);
      const rows = await h.db.iterator({ gte: p, lt: upper(p), reverse: true, limit: 1 }).all();
      return rows.length === 0 ? null : (JSON.parse(rows[0][1]) as StoredRecord);
    } catch (err) {
      throw this.fail('get', err);
    }
  }

  async query(q: RecordQuery): Promise<Page<StoredRecord>> {
    const nq = normaliseQuery(q);
    const h = this.h('query');
    let snapshot: ReturnType<DB['snapshot']> | undefined;
    try {
      snapshot = h.db.snapshot();
      const snap = snapshot;
      let start: string | undefined;
      if (nq.cursor) start = suffix(nq.cursor.d, nq.cursor.id, nq.cursor.vk);
      if (nq.addedAfter) {
        const after = esc(nq.addedAfter) + '\u0001'; // above every key with that exact date_added
        if (start === undefined || cmpBytes(after, start) > 0) start = after;
      }
      const plan = nq.ids ? { entries: await this.planIds(h.db, snap, nq, start) } : await this.planScan(h.db, snap, nq, start);
      const entries = plan.entries;
      const page = entries.slice(0, nq.limit);
      // the scan bound was hit before the page filled: more may match after the last examined entry
      const stopped = 'stoppedAt' in plan && plan.stoppedAt !== undefined && entries.length <= nq.limit ? plan.stoppedAt : undefined;
      const more = entries.length > nq.limit || stopped !== undefined;
      const values = page.length ? await h.db.getMany(page.map((e) => K.rec(nq.collection, e.id, e.vk)), { snapshot: snap }) : [];
      this.stats.recordsRead += values.length;
      const items: StoredRecord[] = [];
      for (const v of values) if (v !== undefined) items.push(JSON.parse(v) as StoredRecord);
      const last = stopped ?? page[page.length - 1];
      return last ? { items, more, cursor: encodeCursor({ d: last.d, id: last.id, vk: last.vk }) } : { items, more };
    } catch (err) {
      throw this.fail('query', err);
    } finally {
      await snapshot?.close().catch(() => undefined);
    }
  }

  /** match[id] given: read the metas of those objects and select in memory (bounded by the id list). */
  private async planIds(db: DB, snapshot: ReturnType<DB['snapshot']>, nq: NormalisedQuery, start: string | undefined): Promise<Entry[]> {
    const ids = nq.ids ?? [];
    const metas = await db.getMany(ids.map((id) => K.meta(nq.collection, id)), { snapshot });
    this.stats.metasRead += ids.length;
    const out: Entry[] = [];
    ids.forEach((id, i) => {
      const meta = parseMeta(metas[i]);
      if (!meta || (nq.types && !nq.types.includes(meta.type))) return;
      const picked = selectVersions(meta.versions, nq.selector);
      for (const v of meta.versions) {
        if (!picked.has(v.vk) || (nq.statuses && !nq.statuses.has(v.status))) continue;
        const suf = suffix(v.d, id, v.vk);
        if (start !== undefined && cmpBytes(suf, start) <= 0) continue;
        out.push({ suffix: suf, d: v.d, id, vk: v.vk, value: v.status });
      }
    });
    out.sort((a, b) => cmpBytes(a.suffix, b.suffix));
    return out.slice(0, nq.limit + 1);
  }

  /**
   * Merge the index ranges that can hold matches, from the start position, until limit + 1 match
   * or `maxScanEntries` entries were examined (then `stoppedAt` is the last one examined, when
   * entries remain after it).
   */
  private async planScan(
    db: DB,
    snapshot: ReturnType<DB['snapshot']>,
    nq: NormalisedQuery,
    start: string | undefined,
  ): Promise<{ entries: Entry[]; stoppedAt?: Entry }> {
    const c = nq.collection;
    const sel = nq.selector;
    const specs: Array<{ p: string; kind: 'sel' | 'meta' }> = [];
    if (sel.all || !nq.defaultCandidates) {
      if (nq.types) for (const t of nq.types) specs.push({ p: prefix('t', c, t), kind: 'meta' });
      else if (nq.statuses) for (const s of nq.statuses) specs.push({ p: prefix('s', c, s), kind: 'meta' });
      else specs.push({ p: prefix('a', c), kind: 'meta' });
    } else {
      for (const [on, tag] of [
        [sel.first, 'F'],
        [sel.last, 'L'],
      ] as const) {
        if (!on) continue;
        if (nq.types) for (const t of nq.types) specs.push({ p: prefix(tag + 'T', c, t), kind: 'sel' });
        else specs.push({ p: prefix(tag, c), kind: 'sel' });
      }
      for (const vk of sel.explicit) specs.push({ p: prefix('v', c, vk), kind: 'meta' });
    }
    const want = nq.limit + 1;
    // the bound never stops a page that could fill from what it read (limit above the bound)
    const maxScan = Math.max(this.maxScan, want);
    const readers = specs.map((s) => new RangeReader(db, s.p, s.kind, start, want, snapshot, this.stats, maxScan));
    type Judged = { type: string; picked: Set<string>; status: Map<string, IntegrityStatus> } | null;
    const metaCache = new Map<string, Judged>();
    const out: Entry[] = [];
    let lastSuffix: string | undefined;
    let examined = 0;
    let lastExamined: Entry | undefined;
    const nextEntry = async (): Promise<{ e: Entry; kind: 'sel' | 'meta' } | null> => {
      let best: { r: RangeReader; e: Entry } | undefined;
      for (const r of readers) {
        const e = await r.peek();
        if (e && (!best || cmpBytes(e.suffix, best.e.suffix) < 0)) best = { r, e };
      }
      if (!best) return null;
      best.r.advance();
      return { e: best.e, kind: best.r.kind };
    };
    try {
      let exhausted = false;
      while (out.length < want && !exhausted) {
        if (examined >= maxScan) {
          // bounded: stop here unless nothing is left anyway
          const left = await Promise.all(readers.map((r) => r.peek()));
          if (left.some((e) => e !== null) && lastExamined) return { entries: out, stoppedAt: lastExamined };
          break;
        }
        // take a chunk of candidates in order, then read the metas they need in one getMany
        const chunk: Array<{ e: Entry; kind: 'sel' | 'meta' }> = [];
        const room = Math.min(Math.max(want - out.length, 16), maxScan - examined);
        while (chunk.length < room) {
          const n = await nextEntry();
          if (!n) {
            exhausted = true;
            break;
          }
          chunk.push(n);
          examined++;
          lastExamined = n.e;
        }
        const need = [...new Set(chunk.filter((x) => x.kind === 'meta' && !metaCache.has(x.e.id)).map((x) => x.e.id))];
        if (need.length > 0) {
          const vals = await db.getMany(need.map((id) => K.meta(c, id)), { snapshot });
          this.stats.metasRead += need.length;
          need.forEach((id, i) => {
            const meta = parseMeta(vals[i]);
            metaCache.set(
              id,
              meta ? { type: meta.type, picked: selectVersions(meta.versions, sel), status: new Map(meta.versions.map((v) => [v.vk, v.status])) } : null,
            );
          });
        }
        for (const { e, kind } of chunk) {
          if (out.length >= want) break;
          if (e.suffix === lastSuffix) continue; // the same record from two ranges (first = last)
          let ok: boolean;
          if (kind === 'sel') {
            ok = !nq.statuses || (isStatus(e.value) && nq.statuses.has(e.value));
          } else {
            const m = metaCache.get(e.id);
            const st = m?.status.get(e.vk);
            ok = !!m && st !== undefined && m.picked.has(e.vk) && (!nq.types || nq.types.includes(m.type)) && (!nq.statuses || nq.statuses.has(st));
          }
          if (ok) {
            out.push(e);
            lastSuffix = e.suffix;
          }
        }
      }
    } finally {
      await Promise.all(readers.map((r) => r.close().catch(() => undefined)));
    }
    return { entries: out };
  }

  async setStatus(collection: string, id: string, version: string, status: IntegrityStatus, reason?: string, opts?: SetStatusOptions): Promise<boolean> {
    if (!isStatus(status)) throw new StoreError('ERR_STORE_BAD_RECORD', `setStatus: status must be one of ${STATUSES.join(', ')}`);
    const expect = expectedStatuses(opts?.expect);
    const vk = versionKey(version);
    if (vk === null) return false;
    this.h('setStatus');
    // compare-and-set: the check and the write happen inside the directory's serialised write
    // queue and the write is one batch, so no other change of this version can come between.
    // Calls queued while a write is in progress are applied together, in call order, as one batch
    // (group commit): a burst of verdicts costs a few writes, not one each.
    return new Promise<boolean>((resolve, reject) => {
      this.statusQueue.push({ collection, id, vk, version, status, reason, expect, resolve, reject });
      if (this.statusQueue.length === 1) this.kickStatuses();
    });
  }

  /** Queue one applyStatuses run; if the write queue refuses it (store closed), the waiting calls fail. */
  private kickStatuses(): void {
    this.exclusive('setStatus', (h) => this.applyStatuses(h)).catch((err: unknown) => {
      for (const c of this.statusQueue.splice(0)) c.reject(err);
    });
  }

  /** when putStatus next purges expired status resources (ms) */
  private purgeAfter = 0;

  /** setStatus calls waiting for the write queue (applied together by applyStatuses) */
  private statusQueue: StatusChange[] = [];

  private async applyStatuses(h: Handle): Promise<void> {
    const group = this.statusQueue.splice(0, MAX_STATUS_GROUP);
    if (this.statusQueue.length > 0) this.kickStatuses();
    if (group.length === 0) return;
    try {
      const metaKeys = [...new Set(group.map((c) => K.meta(c.collection, c.id)))];
      const metaVals = await h.db.getMany(metaKeys);
      const metas = new Map<string, ObjMeta | null>(metaKeys.map((k, n) => [k, parseMeta(metaVals[n])]));
      const recKeys = [...new Set(group.map((c) => K.rec(c.collection, c.id, c.vk)))];
      const recVals = await h.db.getMany(recKeys);
      const recs = new Map<string, string | undefined>(recKeys.map((k, n) => [k, recVals[n]]));
      const parsed = new Map<string, StoredRecord>();
      const ops: Op[] = [];
      const counters = new Map<string, number>();
      const results: boolean[] = [];
      const statusAt = isoNow(this.now());
      for (const c of group) {
        const mk = K.meta(c.collection, c.id);
        const meta = metas.get(mk);
        const cur = meta?.versions.find((v) => v.vk === c.vk);
        if (!meta || !cur || (c.expect && !c.expect.has(cur.status))) {
          results.push(false);
          continue;
        }
        const rk = K.rec(c.collection, c.id, c.vk);
        let rec = parsed.get(rk);
        if (!rec) {
          const json = recs.get(rk);
          if (json === undefined) throw new StoreError('ERR_STORE_IO', `embedded store ${this.dir}: record ${c.id} ${c.version} is indexed but missing`);
          rec = JSON.parse(json) as StoredRecord;
          parsed.set(rk, rec);
        }
        rec.status = c.status;
        if (c.reason === undefined) delete rec.statusReason;
        else rec.statusReason = c.reason;
        rec.statusAt = statusAt;
        const after = meta.versions.map((v) => (v.vk === c.vk ? { ...v, status: c.status } : v));
        objectDiff(ops, counters, c.collection, c.id, meta.type, meta.versions, after);
        metas.set(mk, { ...meta, versions: after });
        results.push(true);
      }
      // each record once, as it ends up (a later change of the same record in the group wins)
      for (const [rk, rec] of parsed) ops.push({ type: 'put', key: rk, value: JSON.stringify(rec) });
      if (ops.length > 0) {
        await this.putCounters(h.db, ops, counters);
        await h.db.batch(ops);
      }
      group.forEach((c, n) => c.resolve(results[n]));
    } catch (err) {
      const e = this.fail('setStatus', err);
      for (const c of group) c.reject(e);
    }
  }


  async delete(collection: string, id: string, filter?: { versions?: VersionMatch[]; specVersions?: string[] }): Promise<number> {
    const sel = deleteSelector(filter);
    const h = this.h('delete');
    const n = await this.exclusive('delete', async (hh) => {
      const meta = parseMeta(await hh.db.get(K.meta(collection, id)));
      if (!meta) return 0;
      const picked = selectVersions(meta.versions, sel);
      if (picked.size === 0) return 0;
      const after = meta.versions.filter((v) => !picked.has(v.vk));
      const ops: Op[] = [];
      for (const vk of picked) ops.push({ type: 'del', key: K.rec(collection, id, vk) });
      const counters = new Map<string, number>();
      objectDiff(ops, counters, collection, id, meta.type, meta.versions, after);
      await this.putCounters(hh.db, ops, counters);
      // Flush the memtable first (a compaction of a range that holds no key does only that), so
      // the values and their tombstones never share one flushed table file (see eraseRanges).
      await hh.db.compactRange(SEP, SEP + SEP);
      await hh.db.batch(ops);
      return picked.size;
    });
    if (n > 0) {
      // outside the write queue: other writes go on while LevelDB rewrites the table files
      const p = this.eraseRanges(h, [
        [K.recPrefix(collection, id), upper(K.recPrefix(collection, id))],
        [K.meta(collection, id), K.meta(collection, id) + SEP],
      ]);
      h.erasing.add(p);
      try {
        await p;
      } catch (err) {
        throw this.fail('delete (compaction)', err);
      } finally {
        h.erasing.delete(p);
      }
    }
    return n;
  }

  /**
   * Physical erasure: compactRange flushes the memtable, then compacts level L into L+1 for each
   * level above the deepest one holding the range. The tombstones were flushed *after* the values
   * (delete() flushes before writing them), so each tombstone sits above its value and is compacted
   * down into it; both are dropped. Older values of the same keys (status updates) go as well.
   */
  private async eraseRanges(h: Handle, ranges: Array<[string, string]>): Promise<void> {
    for (const [from, to] of ranges) await h.db.compactRange(from, to);
  }

  async counts(collection?: string): Promise<StatusCounts> {
    const h = this.h('counts');
    const out: StatusCounts = { pending: 0, finalized: 0, invalid: 0 };
    try {
      if (collection !== undefined) {
        const vals = await h.db.getMany(STATUSES.map((s) => K.counter(collection, s)));
        STATUSES.forEach((s, i) => (out[s] = Number(vals[i] ?? '0')));
        return out;
      }
      const p = prefix('c');
      for await (const [k, v] of h.db.iterator({ gte: p, lt: upper(p) })) {
        const s = unesc(k.slice(k.lastIndexOf(SEP) + 1));
        if (isStatus(s)) out[s] += Number(v);
      }
      return out;
    } catch (err) {
      throw this.fail('counts', err);
    }
  }

  async getOrCreateMeta(name: string, initial: string): Promise<string> {
    checkMetaName(name, initial);
    return this.exclusive('getOrCreateMeta', async (h) => {
      const cur = await h.db.get(K.userMeta(name));
      if (cur !== undefined) return cur;
      await h.db.put(K.userMeta(name), initial);
      return initial;
    });
  }

  // -- TAXII status resources -----------------------------------------------------------------

  async putStatus(status: StatusResource): Promise<void> {
    if (!status || typeof status.id !== 'string' || status.id.length === 0) {
      throw new StoreError('ERR_STORE_BAD_RECORD', 'putStatus: status.id must be a non-empty string');
    }
    const { header, entries } = splitStatus(status);
    await this.exclusive('putStatus', async (h) => {
      const now = this.now();
      const ops: Op[] = [];
      // purge first: the puts below come later in the batch and win over any purge of this id.
      // At most once a second (a scan of the expiry index per POST showed in its profile); a
      // resource past its expiry reads as absent whether or not it was purged yet.
      if (now >= this.purgeAfter) {
        const before = ops.length;
        await this.purgeExpired(h, now, ops, 100);
        this.purgeAfter = ops.length - before > 0 ? now : now + PURGE_EVERY_MS;
      }
      const old = await h.db.get(K.status(status.id));
      if (old !== undefined) {
        ops.push({ type: 'del', key: K.expiry((JSON.parse(old) as { x: number }).x, status.id) });
        // a replaced resource: its old entries go (one scan, only when an id is put again)
        const p = K.entries(status.id);
        for await (const k of h.db.keys({ gte: p, lt: upper(p) })) ops.push({ type: 'del', key: k });
      }
      const x = now + this.retentionMs;
      ops.push({ type: 'put', key: K.status(status.id), value: JSON.stringify({ x, r: header }) });
      ops.push({ type: 'put', key: K.expiry(x, status.id), value: '' });
      for (const [k, list] of groupEntries(status.id, entries)) ops.push({ type: 'put', key: k, value: JSON.stringify(list) });
      await h.db.batch(ops);
    });
  }

  async getStatus(id: string): Promise<StatusResource | null> {
    const h = this.h('getStatus');
    let json: string | undefined;
    const entries: StatusEntry[] = [];
    const snapshot = h.db.snapshot();
    try {
      json = await h.db.get(K.status(id), { snapshot });
      if (json !== undefined) {
        const p = K.entries(id);
        for await (const v of h.db.values({ gte: p, lt: upper(p), snapshot })) entries.push(...(JSON.parse(v) as StatusEntry[]));
      }
    } catch (err) {
      throw this.fail('getStatus', err);
    } finally {
      await snapshot.close().catch(() => undefined);
    }
    if (json === undefined) return null;
    const v = JSON.parse(json) as { x: number; r: StatusResource };
    // a resource written whole by an earlier version keeps its pendings in the header
    if (v.x > this.now()) return v.r.pendings !== undefined ? v.r : assembleStatus(v.r, entries);
    await this.exclusive('getStatus', async (hh) => {
      const ops: Op[] = [];
      await this.purgeExpired(hh, this.now(), ops, 100);
      if (ops.length) await hh.db.batch(ops);
    });
    return null;
  }

  async settleStatus(statusId: string, moves: readonly StatusMove[]): Promise<boolean[]> {
    const checked = checkMoves(statusId, moves);
    if (checked.length === 0) return [];
    return this.exclusive('settleStatus', async (h) => {
      const now = this.now();
      const json = await h.db.get(K.status(statusId));
      if (json === undefined) return checked.map(() => false);
      const v = JSON.parse(json) as { x: number; r: StatusResource };
      if (!(v.x > now)) return checked.map(() => false);
      const ops: Op[] = [];
      let header = v.r;
      /** entry lists read or changed by this call, by key (a later move of the batch sees an earlier one's change) */
      const lists = new Map<string, StatusEntry[] | undefined>();
      const changed = new Set<string>();
      if (header.pendings !== undefined) {
        // written whole by an earlier version: split it once (its entries are written below)
        const split = splitStatus(header);
        header = split.header;
        for (const [k, list] of groupEntries(statusId, split.entries)) {
          lists.set(k, list);
          changed.add(k);
        }
      }
      const keys = checked.map((m) => K.entry(statusId, m.id, m.vk));
      if (header === v.r) {
        const wanted = [...new Set(keys)];
        const vals = await h.db.getMany(wanted);
        wanted.forEach((k, n) => lists.set(k, vals[n] === undefined ? undefined : (JSON.parse(vals[n] as string) as StatusEntry[])));
      }
      const out: boolean[] = [];
      for (const [n, m] of checked.entries()) {
        const k = keys[n];
        let moved = false;
        for (const e of lists.get(k) ?? []) {
          if (e.st !== undefined) continue;
          e.st = m.outcome === 'success' ? 's' : 'f';
          e.m = m.message;
          moved = true;
        }
        if (moved) changed.add(k);
        out.push(moved);
      }
      if (!out.some(Boolean) && header === v.r) return out;
      for (const k of changed) ops.push({ type: 'put', key: k, value: JSON.stringify(lists.get(k) ?? []) });
      // an update renews the retention
      const x = now + this.retentionMs;
      ops.push({ type: 'del', key: K.expiry(v.x, statusId) });
      ops.push({ type: 'put', key: K.status(statusId), value: JSON.stringify({ x, r: header }) });
      ops.push({ type: 'put', key: K.expiry(x, statusId), value: '' });
      await h.db.batch(ops);
      return out;
    });
  }

  /**
   * Add deletions of up to `max` expired status resources to `ops`, with their entries (at most
   * PURGE_ENTRIES per call: a resource with more keeps its expiry key and is finished by later calls;
   * it reads as expired meanwhile).
   */
  private async purgeExpired(h: Handle, now: number, ops: Op[], max: number): Promise<void> {
    const p = prefix('X');
    const end = p + String(now + 1).padStart(16, '0');
    let budget = PURGE_ENTRIES;
    for await (const k of h.db.keys({ gte: p, lt: end, limit: max })) {
      const parts = k.split(SEP);
      const id = unesc(parts[2] ?? '');
      // only delete the resource if it was not updated (re-put) since: its expiry key would differ
      const cur = await h.db.get(K.status(id));
      if (cur !== undefined && K.expiry((JSON.parse(cur) as { x: number }).x, id) === k) {
        const ep = K.entries(id);
        let left = false;
        for await (const ek of h.db.keys({ gte: ep, lt: upper(ep), limit: budget + 1 })) {
          if (budget === 0) {
            left = true;
            break;
          }
          ops.push({ type: 'del', key: ek });
          budget--;
        }
        if (left) return;
        ops.push({ type: 'del', key: K.status(id) });
      }
      ops.push({ type: 'del', key: k });
    }
  }

  // -- diagnostics ----------------------------------------------------------------------------

  /**
   * Full consistency check (diagnostic, O(store size) time and memory: for tests and `fsck`-like
   * tooling, never on a request path): every record has its meta and index entries, every index
   * entry and counter matches the records. Returns the problems found (empty = consistent).
   */
  async verifyIntegrity(): Promise<{ records: number; problems: string[] }> {
    const h = this.h('verifyIntegrity');
    const problems: string[] = [];
    const expected = new Map<string, string>();
    const counters = new Map<string, number>();
    let records = 0;
    const snapshot = h.db.snapshot();
    try {
      const op = prefix('o');
      for await (const [k, v] of h.db.iterator({ gte: op, lt: upper(op), snapshot })) {
        const parts = k.split(SEP).map(unesc);
        const c = parts[1];
        const id = parts[2];
        const meta = parseMeta(v);
        if (!meta || meta.versions.length === 0) {
          problems.push(`empty meta ${c} ${id}`);
          continue;
        }
        const ops: Op[] = [];
        objectDiff(ops, counters, c, id, meta.type, [], meta.versions);
        for (const o of ops) if (o.type === 'put' && o.key !== k) expected.set(o.key, o.value);
        for (const m of meta.versions) {
          records++;
          const json = await h.db.get(K.rec(c, id, m.vk), { snapshot });
          if (json === undefined) {
            problems.push(`missing record ${c} ${id} ${m.vk}`);
            continue;
          }
          const r = JSON.parse(json) as StoredRecord;
          if (r.status !== m.status || r.dateAdded !== m.d || r.hash !== m.hash || r.specVersion !== m.spec || versionKey(r.version) !== m.vk) {
            problems.push(`record ${c} ${id} ${m.vk} disagrees with its meta`);
          }
          expected.set(K.rec(c, id, m.vk), '*');
        }
      }
      for (const [k, n] of counters) if (n !== 0) expected.set(k, String(n));
      for (const tag of ['r', 'a', 't', 's', 'v', 'L', 'LT', 'F', 'FT', 'c']) {
        const p = prefix(tag);
        for await (const [k, v] of h.db.iterator({ gte: p, lt: upper(p), snapshot })) {
          const want = expected.get(k);
          if (want === undefined) problems.push(`stray key ${JSON.stringify(k)}`);
          else if (want !== '*' && want !== v) problems.push(`key ${JSON.stringify(k)} = ${v}, expected ${want}`);
          expected.delete(k);
        }
      }
      for (const k of expected.keys()) problems.push(`missing key ${JSON.stringify(k)}`);
      return { records, problems };
    } catch (err) {
      throw this.fail('verifyIntegrity', err);
    } finally {
      await snapshot.close().catch(() => undefined);
    }
  }
}
