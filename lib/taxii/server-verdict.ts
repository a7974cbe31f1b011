/**
 * Applying a ledger verdict to a stored record, on the store alone (paper §3 steps 2.a/2.b and
 * 5.a/5.b): the record becomes `finalized` or `invalid` under its collection's integrity policy
 * (`decideIntegrity`), and the TAXII status resource(s) that list it among their `pendings` move
 * it to `successes` / `failures`.
 *
 * This is what the TAXII server's `recordVerification` does, as a function of the store: an n8n
 * execution that verifies a record the server trigger emitted earlier (another execution) settles
 * it here, with the `statusId` and `policy` that came with the record, without a reference to the
 * server object. The status-resource update is one Store.settleStatus move (a small write whatever
 * the resource's size); moves of one status id that arrive while an earlier one is being written
 * (or within one tick) go to the store as one call. The record's own status is one store write.
 */
import type { IntegrityStatus, StatusDetail, StatusMove, StatusResource, Store, StoredRecord } from '../store/store';
import type { IntegrityPolicy } from './server-config';
import { decideIntegrity, INTEGRITY_VERDICTS, isIntegrityVerdict, normaliseVersion, OFF_REASON, type IntegrityVerdict } from './server-objects';

/**
 * Where a record reached the flow from: `admission` (a POST stored it), `inquiry` (a GET served
 * it), `recovery` (re-emitted because it stayed pending: after a restart, a lost message, a
 * duplicate POST).
 */
export type IntegrityOrigin = 'admission' | 'inquiry' | 'recovery';

/**
 * Default anchor grace period (ms): how long after its date_added a record may stay unanchored
 * before a `not-anchored` look from a read counts, and before the recovery sweep re-checks it.
 */
export const DEFAULT_ANCHOR_GRACE_MS = 300_000;

/** How often a verdict is re-decided when the record changed between the read and the write. */
const CAS_ATTEMPTS = 5;

/** Integrity of a stored record as reported (`unverified`: its collection's policy is off). */
export type ReportedIntegrity = IntegrityStatus | 'unverified';

export interface VerdictOutcome {
  /** false when that version is not stored (nothing was written) */
  stored: boolean;
  policy: IntegrityPolicy;
  /** the record's integrity after this call (`absent` when not stored) */
  status: ReportedIntegrity | 'absent';
  /** whether the record's status changed */
  changed: boolean;
  /** what was recorded, or why nothing was */
  reason: string;
}

export interface VerdictTarget {
  collection: string;
  id: string;
  version: string;
  verdict: IntegrityVerdict;
  reason?: string;
  /** TAXII status resources listing the record among their pendings */
  statusIds?: readonly string[];
  /** the collection's integrity policy (default `required`) */
  policy?: IntegrityPolicy;
  /**
   * where the verdict comes from: a `not-anchored` look of an `inquiry` (a read, looking once) is
   * applied only once the record is older than the anchor grace period (its anchoring deadline);
   * before, the producer's anchor may simply not be mined yet
   */
  origin?: IntegrityOrigin;
  /** the anchoring deadline: date_added + this (default DEFAULT_ANCHOR_GRACE_MS) */
  anchorGraceMs?: number;
  /** clock, ms (tests) */
  now?: () => number;
}

/** When a record's hash must be anchored by: date_added + grace (ms since the epoch; NaN if unreadable). */
export function anchorDeadline(dateAdded: string, graceMs: number = DEFAULT_ANCHOR_GRACE_MS): number {
  return Date.parse(dateAdded) + graceMs;
}

const locks = new WeakMap<Store, Map<string, Promise<void>>>();

/** Run `fn` after every earlier holder of (store, status id) in this process. */
export async function withStatusLock<T>(store: Store, id: string, fn: () => Promise<T>): Promise<T> {
  let byId = locks.get(store);
  if (!byId) locks.set(store, (byId = new Map()));
  const held = byId;
  const prev = held.get(id) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  held.set(id, tail);
  try {
    return await run;
  } finally {
    if (held.get(id) === tail) held.delete(id);
  }
}

export function reportedStatus(rec: Pick<StoredRecord, 'status' | 'statusReason'>, policy: IntegrityPolicy): ReportedIntegrity {
  if (policy === 'off' || (rec.status === 'finalized' && rec.statusReason === OFF_REASON)) return 'unverified';
  return rec.status;
}

export function buildStatus(
  id: string,
  requestTimestamp: string,
  successes: StatusDetail[],
  failures: StatusDetail[],
  pendings: StatusDetail[],
  total?: number,
  owner?: string,
): StatusResource {
  const s: StatusResource = {
    id,
    status: pendings.length > 0 ? 'pending' : 'complete',
    request_timestamp: requestTimestamp,
    total_count: total ?? successes.length + failures.length + pendings.length,
    success_count: successes.length,
    failure_count: failures.length,
    pending_count: pendings.length,
  };
  if (successes.length > 0) s.successes = successes;
  if (failures.length > 0) s.failures = failures;
  if (pendings.length > 0) s.pendings = pendings;
  if (owner !== undefined) s.owner = owner;
  return s;
}

interface SettleBatch {
  moves: StatusMove[];
  waiters: Array<{ resolve: (moved: boolean) => void; reject: (err: unknown) => void }>;
}

/** per store and status id: the batch of moves still open for more (not yet handed to the store) */
const openBatches = new WeakMap<Store, Map<string, SettleBatch>>();

/**
 * Move (id, version) from a status resource's pendings to its successes or failures
 * (Store.settleStatus). Resolves whether an entry moved (false: not listed, already settled, or
 * the resource is unknown / expired). Runs after every earlier holder of the status lock (the POST
 * that creates the resource holds it until it is written); moves of the same status id queued
 * meanwhile are written in one store call.
 */
export function settleStatusEntry(
  store: Store,
  statusId: string,
  id: string,
  version: string,
  status: Exclude<IntegrityStatus, 'pending'>,
  reason?: string,
): Promise<boolean> {
  const move: StatusMove =
    status === 'finalized'
      ? { id, version, outcome: 'success', message: reason ?? 'integrity verified' }
      : { id, version, outcome: 'failure', message: reason ?? 'failed its integrity check' };
  let byId = openBatches.get(store);
  if (!byId) openBatches.set(store, (byId = new Map()));
  const open = byId;
  return new Promise<boolean>((resolve, reject) => {
    const joined = open.get(statusId);
    if (joined) {
      joined.moves.push(move);
      joined.waiters.push({ resolve, reject });
      return;
    }
    const batch: SettleBatch = { moves: [move], waiters: [{ resolve, reject }] };
    open.set(statusId, batch);
    void withStatusLock(store, statusId, async () => {
      // closed to newcomers from here: they start the next batch (which waits for this one)
      if (open.get(statusId) === batch) open.delete(statusId);
      return store.settleStatus(statusId, batch.moves);
    }).then(
      (moved) => batch.waiters.forEach((w, k) => w.resolve(moved[k] === true)),
      (err: unknown) => batch.waiters.forEach((w) => w.reject(err)),
    );
  });
}

/**
 * Apply a verdict to a stored record (and its status resources). Throws RangeError for a verdict
 * that is not one of verified / mismatch / not-anchored / unknown; store errors pass through.
 *
 * The decision is read-decide-write; the write is a compare-and-set on the status that was read
 * (Store.setStatus `expect`), so a concurrent verdict that changed the record first makes this one
 * re-read and decide again: `invalid` stays final whatever the interleaving.
 * The status resources settled are those given plus those the record lists (StoredRecord.statusIds).
 */
export async function recordVerdict(store: Store, t: VerdictTarget): Promise<VerdictOutcome> {
  const verdict = t.verdict;
  if (!isIntegrityVerdict(verdict)) {
    throw new RangeError(`verdict must be one of ${INTEGRITY_VERDICTS.join(', ')}, got ${String(verdict)}`);
  }
  const policy: IntegrityPolicy = t.policy ?? 'required';
  const v = normaliseVersion(t.version);
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const rec = await store.get(t.collection, t.id, v);
    if (!rec) return { stored: false, policy, status: 'absent', changed: false, reason: `no version ${t.version} of ${t.id} is stored in collection ${t.collection}` };
    if ((verdict === 'not-anchored' || verdict === 'wrong-writer') && t.origin === 'inquiry' && rec.status === 'pending' && policy !== 'off') {
      const deadline = anchorDeadline(rec.dateAdded, t.anchorGraceMs);
      const now = (t.now ?? Date.now)();
      if (!(now >= deadline)) {
        return {
          stored: true,
          policy,
          status: reportedStatus(rec, policy),
          changed: false,
          reason: `not anchored yet; its anchoring deadline is ${Number.isFinite(deadline) ? new Date(deadline).toISOString() : 'unknown'}: left to the admission check and the recovery sweep`,
        };
      }
    }
    const d = decideIntegrity(rec, policy, verdict, t.reason);
    if (d.action === 'keep') return { stored: true, policy, status: reportedStatus(rec, policy), changed: false, reason: d.reason };
    if (d.action === 'note') {
      if (!(await store.setStatus(t.collection, t.id, v, 'pending', d.reason, { expect: 'pending' }))) continue;
      return { stored: true, policy, status: 'pending', changed: false, reason: d.reason };
    }
    if (!(await store.setStatus(t.collection, t.id, v, d.status, d.reason, { expect: rec.status }))) continue;
    for (const sid of new Set([...(t.statusIds ?? []), ...(rec.statusIds ?? [])])) await settleStatusEntry(store, sid, t.id, v, d.status, d.reason);
    return { stored: true, policy, status: d.status, changed: true, reason: d.reason };
  }
  const now = await store.get(t.collection, t.id, v);
  return {
    stored: now !== null,
    policy,
    status: now ? reportedStatus(now, policy) : 'absent',
    changed: false,
    reason: `the record kept changing while this ${verdict} verdict was applied (${CAS_ATTEMPTS} attempts): left ${now?.status ?? 'absent'}`,
  };
}
