/**
 * Pure parts of the MongoDB store's consistency design (lib/store/mongo.ts), kept apart so they
 * are unit-tested without a server (test/store/mongo-design.test.ts).
 *
 * ## Visibility horizon (no reader passes an object that becomes visible afterwards)
 * date_added is reserved from a shared clock *before* the document is inserted, so without care a
 * paging reader could see a later reservation's document, move its cursor past it, and never see
 * an earlier reservation inserted a moment later. Writers therefore record each reservation:
 *   1. read the clock value c0;  2. insert {floor: c0, expiresAt} into `reservations`;
 *   3. reserve date_added values from the clock (all > c0);  4. insert the documents and fix
 *      their flags;  5. delete the reservation.
 * A reader first reads the clock C, then the live (unexpired) reservations, and returns only
 * documents with date_added <= cap = min(C, every live floor). Any writer whose reservation the
 * reader did not see inserted it after the reader read the reservations, hence reserved after C was
 * read: its values are > C >= cap. A writer it did see reserves values > its floor >= cap. So every
 * document a reader passes was either visible or has a value above the cap; the next page or poll
 * (added_after) finds it. A writer that crashes leaves a reservation that expires (`RESERVATION_TTL_MS`):
 * until then readers stop at its floor; a writer slower than that could still be passed (logged).
 *
 * ## Flags repaired idempotently
 * The `last`/`first`/`inD` flags of an object are recomputed after each insert, and also when an
 * add turns out to be a duplicate: a retry after a crash between insert and flag update repairs the
 * flags instead of leaving the version invisible to default queries.
 *
 * ## Counters
 * counts() reads per-(collection, status) counters maintained with $inc right after each write
 * (insert: +1; status change: -1/+1 from the document's previous status returned by the same
 * findOneAndUpdate; delete: -1 per document actually deleted) instead of aggregating the whole
 * collection. Without transactions a crash between a write and its $inc can make a counter drift;
 * `recount()` rebuilds them (and runs once on a database that has none yet).
 */
import { formatMicros } from './common';
import type { IntegrityStatus } from './store';

/** How long a reservation holds readers back when its writer never finishes it. */
export const RESERVATION_TTL_MS = 60_000;

export interface Reservation {
  /** the clock value (µs) read before the reservation was recorded */
  floor: number;
  expiresAt: Date;
}

/**
 * The highest date_added (µs) a reader may return: the clock value read first, lowered to the
 * floor of every reservation still live at `nowMs`. Null when nothing was ever reserved.
 */
export function visibilityCapUs(clockUs: number | null | undefined, reservations: readonly Reservation[], nowMs: number): number | null {
  if (clockUs === null || clockUs === undefined || !Number.isFinite(clockUs)) return null;
  let cap = clockUs;
  for (const r of reservations) {
    if (!(r.expiresAt.getTime() > nowMs)) continue; // expired: its writer is gone
    if (Number.isFinite(r.floor) && r.floor < cap) cap = r.floor;
  }
  return cap;
}

/** The cap as a date_added text bound (`dateAdded <= text`), or null (no bound needed: nothing reserved yet). */
export function visibilityCapText(clockUs: number | null | undefined, reservations: readonly Reservation[], nowMs: number): string | null {
  const us = visibilityCapUs(clockUs, reservations, nowMs);
  return us === null ? null : formatMicros(us);
}

/** Counter document id of (collection, status). */
export function counterId(collection: string, status: IntegrityStatus): string {
  return `count\u0000${collection}\u0000${status}`;
}

/** $inc deltas per counter id for status changes (before -> after; null = absent). Zero deltas are left out. */
export function counterDeltas(changes: ReadonlyArray<{ collection: string; before: IntegrityStatus | null; after: IntegrityStatus | null }>): Map<string, number> {
  const out = new Map<string, number>();
  const add = (id: string, n: number): void => {
    const v = (out.get(id) ?? 0) + n;
    if (v === 0) out.delete(id);
    else out.set(id, v);
  };
  for (const c of changes) {
    if (c.before === c.after) continue;
    if (c.before) add(counterId(c.collection, c.before), -1);
    if (c.after) add(counterId(c.collection, c.after), 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Bounded scans (the equivalent of the embedded store's maxScanEntries)
//
// A query the flag indexes cannot answer directly (match[spec_version], match[version]=all,
// explicit versions, invalid records included) reads candidates in (dateAdded, _id) order and
// judges them in chunks. Without a bound, a selective filter that matches little in a large
// collection would read the whole collection in one request. The scan stops after
// `maxScanDocuments` candidates (or when the server's `maxTimeMS` runs out after at least one was
// read): the page ends there with `more: true` and its cursor at the last candidate examined
// (Page.cursor, lib/store/store.ts), so the next page goes on from it and paging still returns
// every match exactly once.

/** Default most candidate documents one query examines (MongoStoreOptions.maxScanDocuments). */
export const DEFAULT_MAX_SCAN_DOCUMENTS = 10_000;
/** Default server-side time limit of one query's cursor, ms (MongoStoreOptions.queryMaxTimeMS). */
export const DEFAULT_QUERY_MAX_TIME_MS = 10_000;

/** The part of the driver's FindCursor a scan uses. */
export interface ScanCursor<D> {
  hasNext(): Promise<boolean>;
  next(): Promise<D | null>;
  bufferedCount(): number;
}

/** The server ended the cursor because its maxTimeMS ran out (MongoServerError code 50). */
export function isMaxTimeExpired(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; codeName?: unknown };
  return e.code === 50 || e.codeName === 'MaxTimeMSExpired';
}

/** Options of the find cursor of a scan: order, batch size, server time limit. */
export function scanFindOptions(want: number, maxScan: number, maxTimeMS: number): { sort: { dateAdded: 1; _id: 1 }; batchSize: number; maxTimeMS?: number } {
  const o: { sort: { dateAdded: 1; _id: 1 }; batchSize: number; maxTimeMS?: number } = {
    sort: { dateAdded: 1, _id: 1 },
    batchSize: Math.max(1, Math.min(Math.max(want, 100), 1000, maxScan)),
  };
  if (maxTimeMS > 0) o.maxTimeMS = maxTimeMS;
  return o;
}

/**
 * Read candidates from `cursor` until `want` are accepted or `maxScan` were examined. `accept`
 * judges a chunk of candidates (in order) and returns those that match, in order. Returns the
 * matches and, when the scan stopped on its bound with candidates left (or on the server's time
 * limit after at least one candidate), `stoppedAt`: the last candidate examined — every candidate
 * up to it has been judged.
 */
export async function boundedScan<D>(
  cursor: ScanCursor<D>,
  want: number,
  maxScan: number,
  accept: (chunk: D[]) => Promise<D[]>,
): Promise<{ docs: D[]; stoppedAt?: D; examined: number }> {
  const out: D[] = [];
  let chunk: D[] = [];
  let examined = 0;
  let lastExamined: D | undefined;
  const flush = async (): Promise<void> => {
    if (chunk.length === 0) return;
    const judged = chunk;
    chunk = [];
    for (const d of await accept(judged)) {
      if (out.length >= want) break;
      out.push(d);
    }
  };
  try {
    while (out.length < want) {
      if (examined >= maxScan) {
        await flush();
        if (out.length < want && lastExamined !== undefined && (await cursor.hasNext())) return { docs: out, stoppedAt: lastExamined, examined };
        break;
      }
      if (!(await cursor.hasNext())) break;
      const d = await cursor.next();
      if (d === null) break;
      examined++;
      lastExamined = d;
      chunk.push(d);
      if (chunk.length >= Math.max(want - out.length, 50) || cursor.bufferedCount() === 0 || examined >= maxScan) await flush();
    }
    await flush();
    return { docs: out, examined };
  } catch (err) {
    if (!isMaxTimeExpired(err) || lastExamined === undefined) throw err;
    // the server's time limit: end the page at what was read (judged first)
    await flush();
    if (out.length >= want) return { docs: out, examined };
    return { docs: out, stoppedAt: lastExamined, examined };
  }
}
