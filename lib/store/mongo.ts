/**
 * MongoStore: the record store on MongoDB (official `mongodb` 6 driver), for deployments where
 * several Node-RED/n8n instances serve one TAXII API (DESIGN.md §3 Scale-out).
 *
 * ## Collections
 * - `objects`: one document per object version, `_id` = `<collection>\0<id>\0<vk>` (vk = versionKey,
 *   lib/store/common). The STIX object is kept as its JSON text (`json`): exactly what was received,
 *   whatever its dictionary keys (`$`/`.` in keys, number forms) — hashes are over JCS anyway.
 *   Flags of the *default candidate set* (not invalid, highest spec version of the object — what a
 *   TAXII GET without match[spec_version] sees): `last`, `first`, `inD`, recomputed for the object
 *   on every add/setStatus/delete. Indexes: {collection,id,vk} unique; {collection,dateAdded,_id};
 *   {collection,type,dateAdded,_id}; {collection,status,dateAdded,_id}; {collection,vk,dateAdded,_id};
 *   and partial indexes on `last: true` / `first: true` (with and without type) so the default
 *   `match[version]=last` and `first` page by index range.
 * - `meta`: store-wide named values (getOrCreateMeta: the TAXII server's generated token secret).
 * - `statuses`: TAXII status resources without their pendings, with `expiresAt` (TTL index; reads
 *   also check it).
 * - `statusEntries`: one document per pending entry of a status resource ({s, id, vk, i}, index
 *   {s, id, vk}; TTL on `expiresAt`), settled in place (`st`, `m`) by one conditional update, so
 *   settling one object costs the same whatever the resource's size; getStatus assembles the
 *   resource. An entry's expiry is renewed when it is settled, the resource's on every settle: a
 *   resource kept alive by settles for longer than the retention may lose its oldest entries from
 *   its lists and counts before it expires itself (24 h by default; settles come within minutes).
 * - `counters`: the date_added clock (µs, strictly increasing across all instances: an atomic
 *   `$max` update) and the revision counter of flag recomputations.
 *
 * ## Paging
 * Sorted by (dateAdded, _id); the cursor is the last (dateAdded, id, vk) and the next page is the
 * range strictly after it — never skip/offset. `more` comes from reading one document more.
 *
 * ## Concurrency
 * Within one process all writes go through one queue. Across processes: the unique index decides
 * duplicate/conflict races; flag recomputations are ordered by a revision taken *after* the change,
 * and a flag write only lands on documents whose `flagRev` is older, so the last writer's view —
 * which saw every earlier change — wins. Between a change and its recomputation another instance
 * may briefly see an object with a stale `last` flag (eventual, bounded by one round trip).
 * Reservations, the visibility horizon, flag repair on retry and incremental counters:
 * lib/store/mongo-design.ts.
 */
import type { AnyBulkWriteOperation, Collection, Db, Document, Filter, MongoClient, MongoClientOptions } from 'mongodb';
import type { AddOutcome, IntegrityStatus, Page, RecordQuery, SetStatusOptions, StatusCounts, StatusMove, StatusResource, Store, StoredRecord, VersionMatch } from './store';
import { randomUUID } from 'node:crypto';
import { StoreError, describeError } from './errors';
import {
  DEFAULT_MAX_SCAN_DOCUMENTS,
  DEFAULT_QUERY_MAX_TIME_MS,
  RESERVATION_TTL_MS,
  boundedScan,
  counterDeltas,
  counterId,
  scanFindOptions,
  visibilityCapText,
  type Reservation,
} from './mongo-design';
import {
  assembleStatus,
  checkMoves,
  splitStatus,
  statusVersionKey,
  type StatusEntry,
  DEFAULT_STATUS_RETENTION_MS,
  STATUSES,
  buildRecord,
  defaultSelection,
  deleteSelector,
  encodeCursor,
  checkMetaName,
  expectedStatuses,
  isStatus,
  isoNow,
  normaliseQuery,
  prepareRecord,
  selectVersions,
  versionKey,
  formatMicros,
  type NewRecord,
  type NormalisedQuery,
  type PreparedRecord,
  type VersionInfo,
} from './common';

/**
 * The MongoDB driver, loaded on the first open(): a process that never opens a MongoDB store (the
 * embedded default, every node that has no store) never loads it.
 */
type Driver = typeof import('mongodb');
let driver: Driver | undefined;
async function loadDriver(): Promise<Driver> {
  driver ??= await import('mongodb');
  return driver;
}

export interface MongoStoreOptions {
  /** mongodb:// or mongodb+srv:// connection string */
  uri: string;
  /** database name */
  db: string;
  /** prefix of the collection names (default none: objects, statuses, counters) */
  collectionPrefix?: string;
  /** how long to look for a usable server before failing (default 10 s) */
  serverSelectionTimeoutMS?: number;
  /** TCP connect timeout (default 10 s) */
  connectTimeoutMS?: number;
  /** socket inactivity timeout (default 60 s) */
  socketTimeoutMS?: number;
  /** TAXII status resource retention (default 24 h) */
  statusRetentionMs?: number;
  /** more driver options (TLS, auth mechanism...); the timeouts above win */
  clientOptions?: MongoClientOptions;
  /** clock in ms (tests); default Date.now */
  now?: () => number;
  /**
   * Most candidate documents one query examines (default 10,000; lib/store/mongo-design.ts, bounded
   * scans). A selective filter the flag indexes cannot answer directly (match[spec_version],
   * match[version]=all, explicit versions) judges candidates one by one; when this many were read
   * without filling the page, the page ends there with `more: true` and a cursor at the last
   * candidate examined, so the next page goes on from it.
   */
  maxScanDocuments?: number;
  /**
   * Server-side time limit of each query cursor, ms (default 10,000; 0 = none). A scan that runs
   * out of it after reading at least one candidate ends its page there, as above; otherwise the
   * query fails (ERR_STORE_IO).
   */
  queryMaxTimeMS?: number;
}

interface ObjectDoc {
  _id: string;
  collection: string;
  id: string;
  type: string;
  version: string;
  vk: string;
  specVersion: string;
  dateAdded: string;
  mediaType: string;
  /** the STIX object as JSON text */
  json: string;
  hash: string;
  key: string;
  status: IntegrityStatus;
  statusReason?: string;
  statusAt: string;
  /** status resources listing it among their pendings when added (StoredRecord.statusIds) */
  statusIds?: string[];
  last: boolean;
  first: boolean;
  inD: boolean;
  flagRev: number;
}

interface CounterDoc {
  _id: string;
  value: number;
}

interface ReservationDoc extends Reservation {
  _id: string;
}

interface MetaDoc {
  _id: string;
  value: string;
}

interface StatusDoc {
  _id: string;
  /** without its pendings (statusEntries); a document of an earlier version holds them here */
  resource: StatusResource;
  expiresAt: Date;
}

interface StatusEntryDoc extends StatusEntry {
  /** `<status id>\0<i>` */
  _id: string;
  /** status id */
  s: string;
  /** statusVersionKey(version) */
  vk: string;
  expiresAt: Date;
}

type VersionDoc = Pick<ObjectDoc, '_id' | 'id' | 'vk' | 'status' | 'specVersion' | 'hash' | 'dateAdded'>;
const VERSION_PROJECTION = { _id: 1, id: 1, vk: 1, status: 1, specVersion: 1, hash: 1, dateAdded: 1 } as const;

const SEP = '\u0000';
const docId = (c: string, id: string, vk: string): string => `${c}${SEP}${id}${SEP}${vk}`;
const info = (d: VersionDoc): VersionInfo & { doc: VersionDoc } => ({ vk: d.vk, status: d.status, spec: d.specVersion, doc: d });

/** The connection string without its password, for messages. */
export function redactUri(uri: string): string {
  return uri.replace(/\/\/([^@/]*)@/, (_m, cred: string) => `//${cred.split(':')[0]}:***@`);
}

function toRecord(d: ObjectDoc): StoredRecord {
  const r: StoredRecord = {
    collection: d.collection,
    id: d.id,
    type: d.type,
    version: d.version,
    specVersion: d.specVersion,
    dateAdded: d.dateAdded,
    mediaType: d.mediaType,
    object: JSON.parse(d.json) as StoredRecord['object'],
    hash: d.hash,
    key: d.key,
    status: d.status,
    statusAt: d.statusAt,
  };
  if (typeof d.statusReason === 'string') r.statusReason = d.statusReason;
  if (Array.isArray(d.statusIds) && d.statusIds.length > 0) r.statusIds = [...d.statusIds];
  return r;
}

export class MongoStore implements Store {
  private readonly opts: MongoStoreOptions;
  private readonly where: string;
  private readonly retentionMs: number;
  private readonly now: () => number;
  private readonly maxScan: number;
  private readonly maxTimeMS: number;
  private client?: MongoClient;
  private database?: Db;
  private opening?: Promise<void>;
  private queue: Promise<void> = Promise.resolve();

  constructor(opts: MongoStoreOptions) {
    if (!opts || typeof opts.uri !== 'string' || !/^mongodb(\+srv)?:\/\//.test(opts.uri)) {
      throw new StoreError('ERR_STORE_CONFIG', 'mongodb store: uri must be a mongodb:// or mongodb+srv:// connection string');
    }
    if (typeof opts.db !== 'string' || opts.db.length === 0) throw new StoreError('ERR_STORE_CONFIG', 'mongodb store: db must be a database name');
    const retention = opts.statusRetentionMs ?? DEFAULT_STATUS_RETENTION_MS;
    if (!(retention > 0)) throw new StoreError('ERR_STORE_CONFIG', 'mongodb store: statusRetentionMs must be > 0');
    const maxScan = opts.maxScanDocuments ?? DEFAULT_MAX_SCAN_DOCUMENTS;
    if (!Number.isSafeInteger(maxScan) || maxScan < 1) {
      throw new StoreError('ERR_STORE_CONFIG', `mongodb store: maxScanDocuments must be a positive integer, got ${String(maxScan)}`);
    }
    const maxTime = opts.queryMaxTimeMS ?? DEFAULT_QUERY_MAX_TIME_MS;
    if (!Number.isSafeInteger(maxTime) || maxTime < 0) {
      throw new StoreError('ERR_STORE_CONFIG', `mongodb store: queryMaxTimeMS must be an integer >= 0 (0 = no limit), got ${String(maxTime)}`);
    }
    this.maxScan = maxScan;
    this.maxTimeMS = maxTime;
    this.opts = opts;
    this.retentionMs = retention;
    this.now = opts.now ?? Date.now;
    this.where = `mongodb store ${redactUri(opts.uri)} db ${opts.db}`;
  }

  // -- lifecycle ------------------------------------------------------------------------------

  async open(): Promise<void> {
    if (this.database) return;
    this.opening ??= this.doOpen().finally(() => {
      this.opening = undefined;
    });
    await this.opening;
  }

  private async doOpen(): Promise<void> {
    let mongo: Driver;
    try {
      mongo = await loadDriver();
    } catch (err) {
      throw new StoreError('ERR_STORE_IO', `${this.where}: cannot load the MongoDB driver (the mongodb package): ${describeError(err)}`, { cause: err });
    }
    const client = new mongo.MongoClient(this.opts.uri, {
      appName: 'sets-store',
      ...this.opts.clientOptions,
      ignoreUndefined: true,
      serverSelectionTimeoutMS: this.opts.serverSelectionTimeoutMS ?? 10_000,
      connectTimeoutMS: this.opts.connectTimeoutMS ?? 10_000,
      socketTimeoutMS: this.opts.socketTimeoutMS ?? 60_000,
    });
    try {
      await client.connect();
      const db = client.db(this.opts.db);
      await db.command({ ping: 1 });
      const p = this.opts.collectionPrefix ?? '';
      await db.collection<ObjectDoc>(p + 'objects').createIndexes([
        { key: { collection: 1, id: 1, vk: 1 }, name: 'object_version', unique: true },
        { key: { collection: 1, dateAdded: 1, _id: 1 }, name: 'by_date' },
        { key: { collection: 1, type: 1, dateAdded: 1, _id: 1 }, name: 'by_type' },
        { key: { collection: 1, status: 1, dateAdded: 1, _id: 1 }, name: 'by_status' },
        { key: { collection: 1, vk: 1, dateAdded: 1, _id: 1 }, name: 'by_version' },
        { key: { collection: 1, last: 1, dateAdded: 1, _id: 1 }, name: 'last', partialFilterExpression: { last: true } },
        { key: { collection: 1, type: 1, last: 1, dateAdded: 1, _id: 1 }, name: 'last_by_type', partialFilterExpression: { last: true } },
        { key: { collection: 1, first: 1, dateAdded: 1, _id: 1 }, name: 'first', partialFilterExpression: { first: true } },
        { key: { collection: 1, type: 1, first: 1, dateAdded: 1, _id: 1 }, name: 'first_by_type', partialFilterExpression: { first: true } },
      ]);
      await db.collection<StatusDoc>(p + 'statuses').createIndex({ expiresAt: 1 }, { name: 'ttl', expireAfterSeconds: 0 });
      await db.collection<StatusEntryDoc>(p + 'statusEntries').createIndexes([
        { key: { s: 1, id: 1, vk: 1 }, name: 'entry' },
        { key: { expiresAt: 1 }, name: 'ttl', expireAfterSeconds: 0 },
      ]);
      await db.collection<ReservationDoc>(p + 'reservations').createIndex({ expiresAt: 1 }, { name: 'ttl', expireAfterSeconds: 0 });
      this.client = client;
      this.database = db;
      // counters of a database written by an older version (or never counted): built once
      if (!(await this.meta.findOne({ _id: 'counters-initialised' }))) await this.recount();
    } catch (err) {
      await client.close().catch(() => undefined);
      throw this.fail('open', err);
    }
  }

  async close(): Promise<void> {
    if (this.opening) await this.opening.catch(() => undefined);
    const client = this.client;
    if (!client) return;
    await this.queue;
    this.client = undefined;
    this.database = undefined;
    try {
      await client.close();
    } catch (err) {
      throw this.fail('close', err);
    }
  }

  private get db(): Db {
    if (!this.database) throw new StoreError('ERR_STORE_NOT_OPEN', `${this.where}: the store is not open (call open() first)`);
    return this.database;
  }
  private get objects(): Collection<ObjectDoc> {
    return this.db.collection<ObjectDoc>((this.opts.collectionPrefix ?? '') + 'objects');
  }
  private get counters(): Collection<CounterDoc> {
    return this.db.collection<CounterDoc>((this.opts.collectionPrefix ?? '') + 'counters');
  }
  private get statuses(): Collection<StatusDoc> {
    return this.db.collection<StatusDoc>((this.opts.collectionPrefix ?? '') + 'statuses');
  }
  private get statusEntries(): Collection<StatusEntryDoc> {
    return this.db.collection<StatusEntryDoc>((this.opts.collectionPrefix ?? '') + 'statusEntries');
  }
  private get reservations(): Collection<ReservationDoc> {
    return this.db.collection<ReservationDoc>((this.opts.collectionPrefix ?? '') + 'reservations');
  }
  private get meta(): Collection<MetaDoc> {
    return this.db.collection<MetaDoc>((this.opts.collectionPrefix ?? '') + 'meta');
  }

  private fail(op: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const name = err instanceof Error ? err.name : '';
    if (name === 'MongoServerSelectionError' || name === 'MongoNetworkError' || name === 'MongoNetworkTimeoutError' || name === 'MongoTopologyClosedError') {
      return new StoreError('ERR_STORE_CONNECT', `${this.where}: ${op}: cannot reach the server: ${describeError(err)}`, { cause: err });
    }
    if (driver && err instanceof driver.MongoServerError && (err.code === 18 || err.code === 13)) {
      return new StoreError('ERR_STORE_CONNECT', `${this.where}: ${op}: not authorised: ${describeError(err)}`, { cause: err });
    }
    return new StoreError('ERR_STORE_IO', `${this.where}: ${op} failed: ${describeError(err)}`, { cause: err });
  }

  /** Serialise a mutation behind the previous ones (within this process). */
  private exclusive<T>(op: string, fn: () => Promise<T>): Promise<T> {
    void this.db; // not open -> typed error now
    const run = this.queue.then(fn);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run.catch((err: unknown) => {
      throw this.fail(op, err);
    });
  }

  private async counter(name: string, inc: number): Promise<number> {
    const doc = await this.counters.findOneAndUpdate({ _id: name }, { $inc: { value: inc } }, { upsert: true, returnDocument: 'after' });
    if (!doc) throw new StoreError('ERR_STORE_IO', `${this.where}: counter ${name} not returned`);
    return doc.value;
  }

  /**
   * Reserve `n` date_added values (µs) after every value handed out so far by any instance, and
   * after `atLeast` (explicit date_added values of the batch). Returns the first one.
   */
  private async reserveClock(n: number, nowUs: number, atLeast: number): Promise<number> {
    const doc = await this.counters.findOneAndUpdate(
      { _id: 'clock' },
      [{ $set: { value: { $max: [{ $add: [{ $ifNull: ['$value', 0] }, n] }, nowUs + n - 1, atLeast + n] } } }],
      { upsert: true, returnDocument: 'after' },
    );
    if (!doc) throw new StoreError('ERR_STORE_IO', `${this.where}: clock not returned`);
    return doc.value - n + 1;
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
    return this.exclusive('add', () => this.addBatch(prepared));
  }

  private async versionsOf(c: string, ids: string[]): Promise<Map<string, VersionDoc[]>> {
    const out = new Map<string, VersionDoc[]>();
    if (ids.length === 0) return out;
    const docs = await this.objects.find({ collection: c, id: { $in: ids } }, { projection: VERSION_PROJECTION }).toArray();
    for (const d of docs as VersionDoc[]) {
      const l = out.get(d.id);
      if (l) l.push(d);
      else out.set(d.id, [d]);
    }
    return out;
  }

  private async addBatch(prepared: PreparedRecord[]): Promise<AddOutcome[]> {
    const byCollection = new Map<string, Set<string>>();
    for (const p of prepared) {
      const s = byCollection.get(p.input.collection) ?? new Set<string>();
      s.add(p.input.id);
      byCollection.set(p.input.collection, s);
    }
    const existing = new Map<string, VersionDoc[]>(); // c\0id -> versions (updated as the batch adds)
    for (const [c, ids] of byCollection) {
      const m = await this.versionsOf(c, [...ids]);
      for (const id of ids) existing.set(c + SEP + id, m.get(id) ?? []);
    }
    // decide in order; records needing a date_added get one after the decisions
    type Pending = { i: number; p: PreparedRecord };
    const toInsert: Pending[] = [];
    const sameAs = new Map<number, string>(); // outcome index -> _id of the stored version it equals/conflicts with
    const batchIds = new Map<string, number>(); // _id -> index of the batch record adding it
    for (let i = 0; i < prepared.length; i++) {
      const p = prepared[i];
      const list = existing.get(p.input.collection + SEP + p.input.id) ?? [];
      const same = p.vk === null ? list.find((v) => v.hash === p.input.hash) : list.find((v) => v.vk === p.vk);
      if (same) {
        sameAs.set(i, same._id);
        continue;
      }
      toInsert.push({ i, p });
      // placeholder so later records of the batch see this version (vk of unversioned ones unknown yet)
      const placeholderVk = p.vk ?? `\u0001pending-${i}`;
      const pid = docId(p.input.collection, p.input.id, placeholderVk);
      batchIds.set(pid, i);
      list.push({ _id: pid, id: p.input.id, vk: placeholderVk, status: p.input.status, specVersion: p.input.specVersion, hash: p.input.hash, dateAdded: '' });
      existing.set(p.input.collection + SEP + p.input.id, list);
    }
    const nowMs = this.now();
    const statusAt = isoNow(nowMs);
    const auto = toInsert.filter((t) => !t.p.dateAdded);
    const maxExplicit = toInsert.reduce((m, t) => Math.max(m, t.p.dateAdded?.us ?? 0), 0);
    const minExplicit = toInsert.reduce((m, t) => Math.min(m, t.p.dateAdded?.us ?? Infinity), Infinity);
    // visibility horizon (mongo-design.ts): record the reservation before taking clock values
    let reservation: string | undefined;
    if (toInsert.length > 0) {
      const c0 = (await this.counters.findOne({ _id: 'clock' }))?.value ?? 0;
      reservation = randomUUID();
      await this.reservations.insertOne({ _id: reservation, floor: Math.min(c0, minExplicit - 1), expiresAt: new Date(Date.now() + RESERVATION_TTL_MS) });
    }
    try {
      return await this.insertReserved(prepared, toInsert, sameAs, batchIds, auto.length, maxExplicit, nowMs, statusAt);
    } finally {
      if (reservation !== undefined) await this.reservations.deleteOne({ _id: reservation }).catch(() => undefined);
    }
  }

  private async insertReserved(
    prepared: PreparedRecord[],
    toInsert: Array<{ i: number; p: PreparedRecord }>,
    sameAs: Map<number, string>,
    batchIds: Map<string, number>,
    autoCount: number,
    maxExplicit: number,
    nowMs: number,
    statusAt: string,
  ): Promise<AddOutcome[]> {
    const outcomes: AddOutcome[] = new Array<AddOutcome>(prepared.length);
    let next = autoCount > 0 || maxExplicit > 0 ? await this.reserveClock(autoCount, nowMs * 1000, maxExplicit) : 0;
    const docs: ObjectDoc[] = [];
    const docOf = new Map<number, ObjectDoc>();
    for (const { i, p } of toInsert) {
      const d = p.dateAdded ? p.dateAdded.text : formatMicros(next++);
      const record = buildRecord(p, d, statusAt);
      const vk = p.vk ?? versionKey(d);
      if (vk === null) throw new StoreError('ERR_STORE_IO', `${this.where}: cannot derive a version from date_added ${d}`);
      const doc: ObjectDoc = {
        _id: docId(record.collection, record.id, vk),
        collection: record.collection,
        id: record.id,
        type: record.type,
        version: record.version,
        vk,
        specVersion: record.specVersion,
        dateAdded: record.dateAdded,
        mediaType: record.mediaType,
        json: JSON.stringify(record.object),
        hash: record.hash,
        key: record.key,
        status: record.status,
        statusReason: record.statusReason,
        statusAt: record.statusAt,
        statusIds: record.statusIds,
        last: false,
        first: false,
        inD: false,
        flagRev: 0,
      };
      docs.push(doc);
      docOf.set(i, doc);
    }
    const failed = new Set<string>();
    if (docs.length > 0) {
      try {
        await this.objects.insertMany(docs, { ordered: false });
      } catch (err) {
        if (!(driver && err instanceof driver.MongoBulkWriteError)) throw err;
        const errs = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
        for (const we of errs) {
          if (we.code !== 11000) throw err;
          failed.add(docs[we.index]._id);
        }
      }
    }
    // outcomes: inserted ones are `added`; the rest compare with what is stored
    const lookups = new Set<string>();
    for (const id of sameAs.values()) if (!batchIds.has(id)) lookups.add(id);
    for (const d of docs) if (failed.has(d._id)) lookups.add(d._id);
    const stored = new Map<string, StoredRecord>();
    if (lookups.size > 0) {
      for (const d of await this.objects.find({ _id: { $in: [...lookups] } }).toArray()) stored.set(d._id, toRecord(d));
    }
    for (const d of docs) if (!failed.has(d._id)) stored.set(d._id, toRecord(d));
    for (let i = 0; i < prepared.length; i++) {
      const p = prepared[i];
      const own = docOf.get(i);
      if (own && !failed.has(own._id)) {
        outcomes[i] = { outcome: 'added', record: toRecord(own) };
        continue;
      }
      let id = own ? own._id : (sameAs.get(i) ?? '');
      const src = batchIds.get(id);
      if (src !== undefined) id = docOf.get(src)?._id ?? id; // same as an earlier record of this batch
      const rec = stored.get(id);
      if (!rec) throw new StoreError('ERR_STORE_IO', `${this.where}: version ${id.split(SEP).slice(1).join(' ')} vanished while adding`);
      outcomes[i] = { outcome: rec.hash === p.input.hash ? 'duplicate' : 'conflict', record: rec };
    }
    // counters: the inserted documents
    await this.applyCounters(docs.filter((d) => !failed.has(d._id)).map((d) => ({ collection: d.collection, before: null, after: d.status })));
    // flags of every object this batch touched — duplicates included: a retry after a crash between
    // an insert and its flag update repairs the flags (idempotent)
    const touched = new Map<string, Set<string>>();
    for (let i = 0; i < prepared.length; i++) {
      const c = prepared[i].input.collection;
      const s = touched.get(c) ?? new Set<string>();
      s.add(prepared[i].input.id);
      touched.set(c, s);
    }
    for (const [c, ids] of touched) await this.recomputeFlags(c, [...ids]);
    return outcomes;
  }

  /** $inc the per-(collection, status) counters for these status changes. */
  private async applyCounters(changes: Array<{ collection: string; before: IntegrityStatus | null; after: IntegrityStatus | null }>): Promise<void> {
    const deltas = counterDeltas(changes);
    if (deltas.size === 0) return;
    await this.counters.bulkWrite(
      [...deltas].map(([id, n]) => ({ updateOne: { filter: { _id: id }, update: { $inc: { value: n } }, upsert: true } })),
      { ordered: false },
    );
  }

  /**
   * Rebuild the per-(collection, status) counters from the documents (one aggregation: a repair
   * tool, and the first open of a database that has no counters yet).
   */
  async recount(): Promise<void> {
    const rows = await this.objects.aggregate<{ _id: { c: string; s: unknown }; n: number }>([{ $group: { _id: { c: '$collection', s: '$status' }, n: { $sum: 1 } } }]).toArray();
    const ops: AnyBulkWriteOperation<CounterDoc>[] = [];
    const seen = new Set<string>();
    for (const r of rows) {
      if (!isStatus(r._id.s)) continue;
      const id = counterId(r._id.c, r._id.s);
      seen.add(id);
      ops.push({ updateOne: { filter: { _id: id }, update: { $set: { value: r.n } }, upsert: true } });
    }
    const stale = await this.counters.find({ _id: { $gte: 'count\u0000', $lt: 'count\u0001' } }, { projection: { _id: 1 } }).toArray();
    for (const d of stale) if (!seen.has(d._id)) ops.push({ updateOne: { filter: { _id: d._id }, update: { $set: { value: 0 } } } });
    if (ops.length > 0) await this.counters.bulkWrite(ops, { ordered: false });
    await this.meta.updateOne({ _id: 'counters-initialised' }, { $set: { value: new Date(this.now()).toISOString() } }, { upsert: true });
  }

  /** The visibility horizon of a read (mongo-design.ts): clock first, then the live reservations. */
  private async readCap(): Promise<string | null> {
    const clock = (await this.counters.findOne({ _id: 'clock' }))?.value;
    const live = await this.reservations.find({ expiresAt: { $gt: new Date(Date.now()) } }, { projection: { floor: 1, expiresAt: 1 } }).toArray();
    return visibilityCapText(clock, live, Date.now());
  }

  /** Recompute last/first/inD of these objects (see "Concurrency" in the header). */
  private async recomputeFlags(c: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const rev = await this.counter('flagrev', 1);
    const versions = await this.versionsOf(c, ids);
    const ops: AnyBulkWriteOperation<ObjectDoc>[] = [];
    for (const list of versions.values()) {
      const infos = list.map(info);
      const sel = defaultSelection(infos);
      const inD = selectVersions(infos, { first: false, last: false, all: true, explicit: new Set(), spec: 'top', allowInvalid: false });
      for (const v of infos) {
        ops.push({
          updateOne: {
            filter: { _id: v.doc._id, flagRev: { $lt: rev } },
            update: { $set: { last: sel.last?.vk === v.vk, first: sel.first?.vk === v.vk, inD: inD.has(v.vk), flagRev: rev } },
          },
        });
      }
    }
    if (ops.length > 0) await this.objects.bulkWrite(ops, { ordered: false });
  }

  async get(collection: string, id: string, version?: string): Promise<StoredRecord | null> {
    try {
      if (version !== undefined) {
        const vk = versionKey(version);
        if (vk === null) return null;
        const d = await this.objects.findOne({ _id: docId(collection, id, vk) });
        return d ? toRecord(d) : null;
      }
      const d = await this.objects.find({ collection, id }).sort({ vk: -1 }).limit(1).next();
      return d ? toRecord(d) : null;
    } catch (err) {
      throw this.fail('get', err);
    }
  }

  async query(q: RecordQuery): Promise<Page<StoredRecord>> {
    const nq = normaliseQuery(q);
    try {
      const cap = await this.readCap();
      const indexed = nq.defaultCandidates && !nq.selector.all;
      const { docs, stoppedAt, matched } = indexed ? { docs: await this.queryIndexed(nq, cap), stoppedAt: undefined, matched: undefined } : await this.queryFiltered(nq, cap);
      const found = matched ?? docs.length;
      // the scan bound was hit before the page filled: more may match after the last examined document
      const stopped = stoppedAt !== undefined && found <= nq.limit ? stoppedAt : undefined;
      const more = found > nq.limit || stopped !== undefined;
      const page = docs.slice(0, nq.limit);
      const items = page.map(toRecord);
      const last = stopped ?? page[page.length - 1];
      return last ? { items, more, cursor: encodeCursor({ d: last.dateAdded, id: last.id, vk: last.vk }) } : { items, more };
    } catch (err) {
      throw this.fail('query', err);
    }
  }

  /** Filters every query shares: collection, position, ids, types, statuses. */
  private baseFilter(nq: NormalisedQuery, cap: string | null): Document[] {
    const and: Document[] = [{ collection: nq.collection }];
    if (nq.addedAfter) and.push({ dateAdded: { $gt: nq.addedAfter } });
    // never past a date_added that an unfinished write may still fill in (visibility horizon)
    if (cap !== null) and.push({ dateAdded: { $lte: cap } });
    if (nq.cursor) {
      const c = nq.cursor;
      and.push({ $or: [{ dateAdded: { $gt: c.d } }, { dateAdded: c.d, _id: { $gt: docId(nq.collection, c.id, c.vk) } }] });
    }
    if (nq.ids) and.push({ id: { $in: nq.ids } });
    if (nq.types) and.push({ type: { $in: nq.types } });
    if (nq.statuses) and.push({ status: { $in: [...nq.statuses] } });
    else if (!nq.selector.allowInvalid) and.push({ status: { $ne: 'invalid' } });
    return and;
  }

  /** Default candidates with first/last/explicit: one indexed query on the maintained flags. */
  private async queryIndexed(nq: NormalisedQuery, cap: string | null): Promise<ObjectDoc[]> {
    const sel = nq.selector;
    const or: Document[] = [];
    if (sel.last) or.push({ last: true });
    if (sel.first) or.push({ first: true });
    if (sel.explicit.size > 0) or.push({ inD: true, vk: { $in: [...sel.explicit] } });
    const filter = { $and: [...this.baseFilter(nq, cap), or.length === 1 ? or[0] : { $or: or }] } as Filter<ObjectDoc>;
    const c = this.objects.find(filter).sort({ dateAdded: 1, _id: 1 }).limit(nq.limit + 1);
    if (this.maxTimeMS > 0) c.maxTimeMS(this.maxTimeMS);
    return c.toArray();
  }

  /**
   * Other combinations (all, explicit spec versions, invalid included): read the candidates in
   * order and check each object's version set, in chunks, until limit + 1 match — or until the
   * scan bound (`maxScanDocuments`, `queryMaxTimeMS`) ends the page early (`stoppedAt`, see
   * lib/store/mongo-design.ts boundedScan).
   */
  private async queryFiltered(nq: NormalisedQuery, cap: string | null): Promise<{ docs: ObjectDoc[]; stoppedAt?: ObjectDoc; matched: number }> {
    const sel = nq.selector;
    const and = this.baseFilter(nq, cap);
    if (nq.defaultCandidates && sel.all) and.push({ inD: true });
    else if (!sel.all && !sel.first && !sel.last) and.push({ vk: { $in: [...sel.explicit] } });
    // match[spec_version] is judged here, not by the server: a filter no index answers would make
    // the server examine documents it does not return, past the count bound (maxTimeMS only)
    const spec = sel.spec instanceof Set ? sel.spec : undefined;
    const want = nq.limit + 1;
    // the bound never stops a page that could fill from what it read (limit above the bound)
    const maxScan = Math.max(this.maxScan, want);
    const o = scanFindOptions(want, maxScan, this.maxTimeMS);
    // candidates without the object text: most are judged and dropped; the page's are read whole below
    const cursor = this.objects.find({ $and: and } as Filter<ObjectDoc>, { projection: { json: 0 } }).sort(o.sort).batchSize(o.batchSize);
    if (o.maxTimeMS !== undefined) cursor.maxTimeMS(o.maxTimeMS);
    const picked = new Map<string, Set<string>>();
    const needObjects = !(nq.defaultCandidates && sel.all) && !(sel.all && sel.spec !== 'top');
    try {
      const r = await boundedScan<ObjectDoc>(cursor, want, maxScan, async (candidates) => {
        const chunk = spec ? candidates.filter((d) => spec.has(d.specVersion)) : candidates;
        if (needObjects) {
          const unknown = [...new Set(chunk.map((d) => d.id))].filter((id) => !picked.has(id));
          const versions = await this.versionsOf(nq.collection, unknown);
          for (const id of unknown) picked.set(id, selectVersions((versions.get(id) ?? []).map(info), sel));
        }
        return needObjects ? chunk.filter((d) => picked.get(d.id)?.has(d.vk)) : chunk;
      });
      const docs = await this.wholeDocuments(r.docs);
      // matched: before a document deleted meanwhile was left out (it still tells whether more follow)
      return r.stoppedAt !== undefined ? { docs, stoppedAt: r.stoppedAt, matched: r.docs.length } : { docs, matched: r.docs.length };
    } finally {
      await cursor.close().catch(() => undefined);
    }
  }

  /** The documents of a page with their object text, in the page's order (one deleted meanwhile is left out). */
  private async wholeDocuments(page: ObjectDoc[]): Promise<ObjectDoc[]> {
    if (page.length === 0) return [];
    const found = new Map<string, ObjectDoc>();
    const c = this.objects.find({ _id: { $in: page.map((d) => d._id) } });
    if (this.maxTimeMS > 0) c.maxTimeMS(this.maxTimeMS);
    for (const d of await c.toArray()) found.set(d._id, d);
    return page.flatMap((d) => {
      const w = found.get(d._id);
      return w ? [w] : [];
    });
  }

  async setStatus(collection: string, id: string, version: string, status: IntegrityStatus, reason?: string, opts?: SetStatusOptions): Promise<boolean> {
    if (!isStatus(status)) throw new StoreError('ERR_STORE_BAD_RECORD', `setStatus: status must be one of ${STATUSES.join(', ')}`);
    const expect = expectedStatuses(opts?.expect);
    const vk = versionKey(version);
    if (vk === null) return false;
    return this.exclusive('setStatus', async () => {
      const update: Document =
        reason === undefined
          ? { $set: { status, statusAt: isoNow(this.now()) }, $unset: { statusReason: '' } }
          : { $set: { status, statusAt: isoNow(this.now()), statusReason: reason } };
      // compare-and-set: one document update whose filter names the expected status, atomic on
      // the server whatever other instances do
      const filter: Filter<ObjectDoc> = expect ? { _id: docId(collection, id, vk), status: { $in: [...expect] } } : { _id: docId(collection, id, vk) };
      const before = await this.objects.findOneAndUpdate(filter, update, { returnDocument: 'before', projection: { status: 1 } });
      if (!before) return false;
      await this.applyCounters([{ collection, before: before.status, after: status }]);
      await this.recomputeFlags(collection, [id]);
      return true;
    });
  }

  async delete(collection: string, id: string, filter?: { versions?: VersionMatch[]; specVersions?: string[] }): Promise<number> {
    const sel = deleteSelector(filter);
    return this.exclusive('delete', async () => {
      const list = (await this.versionsOf(collection, [id])).get(id) ?? [];
      const picked = selectVersions(list.map(info), sel);
      if (picked.size === 0) return 0;
      const ids = list.filter((v) => picked.has(v.vk)).map((v) => v._id);
      // one by one: the counters drop by what was really deleted (another instance may race)
      const gone: Array<{ collection: string; before: IntegrityStatus | null; after: IntegrityStatus | null }> = [];
      for (const _id of ids) {
        const d = await this.objects.findOneAndDelete({ _id }, { projection: { status: 1 } });
        if (d) gone.push({ collection, before: d.status, after: null });
      }
      await this.applyCounters(gone);
      await this.recomputeFlags(collection, [id]);
      return gone.length;
    });
  }

  async counts(collection?: string): Promise<StatusCounts> {
    const out: StatusCounts = { pending: 0, finalized: 0, invalid: 0 };
    try {
      // maintained counters (mongo-design.ts), not an aggregation over the collection
      if (collection !== undefined) {
        const docs = await this.counters.find({ _id: { $in: STATUSES.map((st) => counterId(collection, st)) } }).toArray();
        for (const d of docs) {
          const st = d._id.slice(d._id.lastIndexOf('\u0000') + 1);
          if (isStatus(st)) out[st] = Math.max(0, d.value);
        }
        return out;
      }
      for (const d of await this.counters.find({ _id: { $gte: 'count\u0000', $lt: 'count\u0001' } }).toArray()) {
        const st = d._id.slice(d._id.lastIndexOf('\u0000') + 1);
        if (isStatus(st)) out[st] += Math.max(0, d.value);
      }
      return out;
    } catch (err) {
      throw this.fail('counts', err);
    }
  }

  async getOrCreateMeta(name: string, initial: string): Promise<string> {
    checkMetaName(name, initial);
    try {
      // created once: $setOnInsert writes only when the upsert inserts; a concurrent first upsert
      // of another instance fails on the unique _id, and the value it stored is read back
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          const doc = await this.meta.findOneAndUpdate({ _id: name }, { $setOnInsert: { value: initial } }, { upsert: true, returnDocument: 'after' });
          if (doc && typeof doc.value === 'string') return doc.value;
        } catch (err) {
          if (!(driver && err instanceof driver.MongoServerError && err.code === 11000)) throw err;
        }
        const cur = await this.meta.findOne({ _id: name });
        if (cur && typeof cur.value === 'string') return cur.value;
      }
      throw new StoreError('ERR_STORE_IO', `${this.where}: meta value ${name} could not be created or read`);
    } catch (err) {
      throw this.fail('getOrCreateMeta', err);
    }
  }

  // -- TAXII status resources -----------------------------------------------------------------

  async putStatus(status: StatusResource): Promise<void> {
    if (!status || typeof status.id !== 'string' || status.id.length === 0) {
      throw new StoreError('ERR_STORE_BAD_RECORD', 'putStatus: status.id must be a non-empty string');
    }
    const { header, entries } = splitStatus(status);
    try {
      const expiresAt = new Date(this.now() + this.retentionMs);
      // entries first: a reader never sees the resource without them
      await this.statusEntries.deleteMany({ s: status.id });
      if (entries.length > 0) {
        await this.statusEntries.insertMany(
          entries.map((e) => ({ ...e, _id: `${status.id}\u0000${e.i}`, s: status.id, vk: statusVersionKey(e.version), expiresAt })),
          { ordered: false },
        );
      }
      await this.statuses.replaceOne({ _id: status.id }, { resource: header, expiresAt }, { upsert: true });
    } catch (err) {
      throw this.fail('putStatus', err);
    }
  }

  async getStatus(id: string): Promise<StatusResource | null> {
    try {
      const d = await this.statuses.findOne({ _id: id });
      if (!d || d.expiresAt.getTime() <= this.now()) return null;
      if (d.resource.pendings !== undefined) return d.resource; // written whole by an earlier version
      const entries = await this.statusEntries.find({ s: id }, { projection: { _id: 0, s: 0, vk: 0, expiresAt: 0 } }).toArray();
      return assembleStatus(d.resource, entries as StatusEntry[]);
    } catch (err) {
      throw this.fail('getStatus', err);
    }
  }

  async settleStatus(statusId: string, moves: readonly StatusMove[]): Promise<boolean[]> {
    const checked = checkMoves(statusId, moves);
    if (checked.length === 0) return [];
    try {
      const d = await this.statuses.findOne({ _id: statusId });
      if (!d || d.expiresAt.getTime() <= this.now()) return checked.map(() => false);
      const expiresAt = new Date(this.now() + this.retentionMs);
      if (d.resource.pendings !== undefined) {
        // written whole by an earlier version: split it once (putStatus writes its entries)
        await this.putStatus(d.resource);
      }
      const out: boolean[] = [];
      // one conditional update per move (atomic per entry: concurrent settles move it once)
      for (const m of checked) {
        const r = await this.statusEntries.updateMany(
          { s: statusId, id: m.id, vk: m.vk, st: { $exists: false } },
          { $set: { st: m.outcome === 'success' ? 's' : 'f', m: m.message, expiresAt } },
        );
        out.push(r.modifiedCount > 0);
      }
      if (out.some(Boolean)) await this.statuses.updateOne({ _id: statusId }, { $set: { expiresAt } });
      return out;
    } catch (err) {
      throw this.fail('settleStatus', err);
    }
  }
}
