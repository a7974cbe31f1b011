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
