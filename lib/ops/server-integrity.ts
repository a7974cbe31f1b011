/**
 * The server side of SETS integrity (paper §3 steps 2.a/2.b and 5.a/5.b, §4.2): what the TAXII
 * server hands to the flow for each admitted or served record, how a verification result settles
 * the record (`finalized` / `invalid`), and status queries and counts. Shared by the Node-RED
 * `taxii-server` / `integrity-status` nodes and n8n.
 *
 * The verdict is applied by the TAXII server's `recordVerification`, under the collection's
 * integrity policy (required / optional / off; lib/taxii/server-config). Two paths reach it:
 * - admission (a POSTed object, step 2): the verifier waited for the producer's anchor, so its
 *   verdict is final;
 * - inquiry (an object just served, step 5): the verifier looks once. A mismatch means the stored
 *   record was altered -> invalid. A record not `finalized` yet that is not anchored *yet* is left
 *   to its admission check (the producer's anchor may not be mined) until its anchoring deadline
 *   (date_added + the server's grace period); after it the look counts (`inquiryDefers`);
 * - recovery (a record that stayed pending, emitted again by the server's sweep or a duplicate
 *   POST): verified like an admission, its verdict is final.
 * A verification `unknown` (the verifier could not decide: ledger unreachable, wait ran out) is no
 * verdict: nothing changes, the record is checked again later (`retry: true` in the result).
 */
import type { IntegrityStatus, StatusCounts, Store, StoredRecord } from '../store/store';
import type { IntegrityPolicy } from '../taxii/server-config';
import { INTEGRITY_VERDICTS, isIntegrityVerdict, type IntegrityVerdict } from '../taxii/server-objects';
import { recordVerdict as applyVerdict, type IntegrityOrigin, type VerdictOutcome } from '../taxii/server-verdict';
import { OpsError } from './errors';

/** Where a record reached the flow from: `admission`, `inquiry` or `recovery` (lib/taxii/server-verdict). */
export type { IntegrityOrigin };

/** A ledger verdict (lib/verify VerificationStatus); `unknown` = could not decide, retry later. */
export type Verdict = IntegrityVerdict;

const isOrigin = (v: unknown): v is IntegrityOrigin => v === 'admission' || v === 'inquiry' || v === 'recovery';

/** `msg.sets` (Node-RED) / item JSON (n8n) of a record the TAXII server admitted or served. */
export interface ServerRecordInfo {
  apiRoot: string;
  collection: string;
  id: string;
  /** the stored version (normalised timestamp; date_added for unversioned objects) */
  version: string;
  /** ledger key k */
  key: string;
  /** h_t computed at admission */
  hash: string;
  /** integrity status when the record left the server */
  status: IntegrityStatus;
  dateAdded: string;
  origin: IntegrityOrigin;
  /** the collection's integrity policy */
  policy?: IntegrityPolicy;
  /** the TAXII status resource listing it among its pendings (admission, recovery) */
  statusId?: string;
  /** recovery: how many times this server re-emitted it */
  attempt?: number;
  /** admission, recovery: when its hash must be anchored by (date_added + the server's grace period) */
  anchorDeadline?: string;
}

export function recordInfo(
  rec: StoredRecord,
  apiRoot: string,
  origin: IntegrityOrigin,
  opts: { statusId?: string; policy?: IntegrityPolicy; attempt?: number; anchorDeadline?: string } = {},
): ServerRecordInfo {
  const out: ServerRecordInfo = {
    apiRoot,
    collection: rec.collection,
    id: rec.id,
    version: rec.version,
    key: rec.key,
    hash: rec.hash,
    status: rec.status,
    dateAdded: rec.dateAdded,
    origin,
  };
  if (opts.policy !== undefined) out.policy = opts.policy;
  if (opts.statusId !== undefined) out.statusId = opts.statusId;
  if (opts.attempt !== undefined) out.attempt = opts.attempt;
  if (opts.anchorDeadline !== undefined) out.anchorDeadline = opts.anchorDeadline;
  return out;
}

/** Which record a verification result is about. */
export interface IntegrityTarget {
  collection: string;
  id: string;
  version: string;
  statusId?: string;
  origin?: IntegrityOrigin;
  /** status when the record was emitted, if known */
  status?: IntegrityStatus;
  /** when its hash must be anchored by, if the server said */
  anchorDeadline?: string;
}

export interface VerificationLike {
  status: Verdict;
  reason?: string;
  id?: string;
  collection?: string;
  version?: string | null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The verification result in msg.sets (from verify-hash), or null when there is none. */
export function verificationOf(sets: unknown): VerificationLike | null {
  if (!isRecord(sets) || !isRecord(sets['verification'])) return null;
  const v = sets['verification'];
  const status = v['status'];
  if (!isIntegrityVerdict(status)) {
    throw new OpsError('BAD_PAYLOAD', `msg.sets.verification.status must be one of ${INTEGRITY_VERDICTS.join(', ')}, got ${JSON.stringify(status)}`);
  }
  const out: VerificationLike = { status };
  const reason = str(v['reason']);
  if (reason) out.reason = reason;
  const id = str(v['id']);
  if (id) out.id = id;
  const collection = str(v['collection']);
  if (collection) out.collection = collection;
  if (typeof v['version'] === 'string' || v['version'] === null) out.version = v['version'] as string | null;
  return out;
}

/**
 * The record to settle: msg.sets's collection/id/version (set by the TAXII server), else the
 * verification's own. Throws OpsError BAD_PAYLOAD when it cannot be told.
 */
export function integrityTarget(sets: unknown, v: VerificationLike): IntegrityTarget {
  const s = isRecord(sets) ? sets : {};
  const collection = str(s['collection']) ?? v.collection;
  const id = str(s['id']) ?? v.id;
  const version = str(s['version']) ?? (typeof v.version === 'string' ? v.version : undefined);
  if (!collection || !id || !version) {
    throw new OpsError(
      'BAD_PAYLOAD',
      'cannot tell which stored record this verification is about: msg.sets needs collection, id and version (as the taxii-server node sets them)',
    );
  }
  const t: IntegrityTarget = { collection, id, version };
  const statusId = str(s['statusId']);
  if (statusId) t.statusId = statusId;
  if (isOrigin(s['origin'])) t.origin = s['origin'];
  if (s['status'] === 'pending' || s['status'] === 'finalized' || s['status'] === 'invalid') t.status = s['status'];
  const deadline = str(s['anchorDeadline']);
  if (deadline && Number.isFinite(Date.parse(deadline))) t.anchorDeadline = deadline;
  return t;
}

/**
 * An inquiry's quick look found no anchor for a record not settled yet, before its anchoring
 * deadline (as the server emitted it): its admission check decides. Without a deadline in the
 * message the recorder decides from the stored record's date_added and the grace period.
 */
export function inquiryDefers(v: VerificationLike, t: Pick<IntegrityTarget, 'origin' | 'status' | 'anchorDeadline'>, now: number = Date.now()): boolean {
  if (t.origin !== 'inquiry' || (v.status !== 'not-anchored' && v.status !== 'wrong-writer') || t.status === 'finalized' || t.anchorDeadline === undefined) return false;
  return now < Date.parse(t.anchorDeadline);
}

/** What records a verdict: the TAXII server's recordVerification (moves its status resource too). */
export type VerdictRecorder = (
  collection: string,
  id: string,
  version: string,
  verdict: Verdict,
  reason?: string,
  statusId?: string,
  /** where the record reached the flow from (an inquiry's `not-anchored` counts after the deadline only) */
  origin?: IntegrityOrigin,
) => Promise<{ stored: boolean; status: string; changed: boolean; reason: string }>;

export interface IntegrityResult {
  collection: string;
  id: string;
  version: string;
  /** the record's integrity after this step (`absent`: no such record is stored, e.g. deleted; `unverified`: policy off) */
  status: string;
  /** whether the record's status changed */
  changed: boolean;
  reason: string;
  origin?: IntegrityOrigin;
  /** the verifier could not decide (`unknown`): nothing changed, check the record again later */
  retry?: boolean;
}

/** Apply a verification to the record it is about. */
export async function settleIntegrity(record: VerdictRecorder, target: IntegrityTarget, v: VerificationLike): Promise<IntegrityResult> {
  const base = { collection: target.collection, id: target.id, version: target.version, ...(target.origin ? { origin: target.origin } : {}) };
  if (inquiryDefers(v, target)) {
    return { ...base, status: target.status ?? 'pending', changed: false, reason: `not anchored yet (anchoring deadline ${target.anchorDeadline ?? '?'}); left to the admission check` };
  }
  const out = await record(target.collection, target.id, target.version, v.status, v.reason, target.statusId, target.origin);
  return { ...base, status: out.stored ? out.status : 'absent', changed: out.changed, reason: out.reason, ...(v.status === 'unknown' ? { retry: true } : {}) };
}

/**
 * The same rules on a bare store, for a front end without the TAXII server at hand (policy
 * `required`): the decision is the server's own (lib/taxii/server-verdict), so the two cannot
 * drift apart, and a `statusId` given with the record moves its TAXII status resource too.
 */
export function storeRecorder(store: Store): VerdictRecorder {
  return storeVerdictRecorder(store);
}

/** A record to settle from another execution: what the server emitted with it, plus the verdict. */
export interface StoredVerdict {
  collection: string;
  id: string;
  version: string;
  verdict: Verdict;
  reason?: string;
  /** the TAXII status resource listing the record among its pendings (admission) */
  statusId?: string;
  /** the collection's integrity policy as the server emitted it (default `required`) */
  policy?: IntegrityPolicy;
  /** where the record reached the flow from */
  origin?: IntegrityOrigin;
  /** anchor grace period, ms (default lib/taxii/server-verdict DEFAULT_ANCHOR_GRACE_MS) */
  anchorGraceMs?: number;
}

/**
 * Settle a record through the store alone — the TAXII server's own rules (lib/taxii/server-verdict),
 * status resource included — for a front end that verifies a record in another execution than the
 * one holding the server (n8n: the SETS node after the server trigger's workflow run).
 */
export function recordVerdict(store: Store, t: StoredVerdict): Promise<VerdictOutcome> {
  return applyVerdict(store, {
    collection: t.collection,
    id: t.id,
    version: t.version,
    verdict: t.verdict,
    ...(t.reason !== undefined ? { reason: t.reason } : {}),
    ...(t.statusId ? { statusIds: [t.statusId] } : {}),
    ...(t.policy ? { policy: t.policy } : {}),
    ...(t.origin ? { origin: t.origin } : {}),
    ...(t.anchorGraceMs !== undefined ? { anchorGraceMs: t.anchorGraceMs } : {}),
  });
}

/** A VerdictRecorder on a bare store that keeps the policy and status resource the record came with. */
export function storeVerdictRecorder(
  store: Store,
  policyOf?: (collection: string) => IntegrityPolicy | undefined,
  opts: { anchorGraceMs?: number } = {},
): VerdictRecorder {
  return async (collection, id, version, verdict, reason, statusId, origin) => {
    const out = await recordVerdict(store, {
      collection,
      id,
      version,
      verdict,
      ...(reason !== undefined ? { reason } : {}),
      ...(statusId ? { statusId } : {}),
      ...(policyOf?.(collection) ? { policy: policyOf(collection) } : {}),
      ...(origin ? { origin } : {}),
      ...(opts.anchorGraceMs !== undefined ? { anchorGraceMs: opts.anchorGraceMs } : {}),
    });
    return { stored: out.stored, status: out.status, changed: out.changed, reason: out.reason };
  };
}

// ---------------------------------------------------------------------------------------------
// queries and counts

export interface StatusQuery {
  collection?: string;
  id?: string;
  statuses?: IntegrityStatus[];
}

export interface RecordStatus {
  collection: string;
  id: string;
  type: string;
  version: string;
  /** `unverified`: the collection's integrity policy is off */
  status: IntegrityStatus | 'unverified';
  reason?: string;
  statusAt: string;
  dateAdded: string;
  key: string;
  hash: string;
}

const STATUSES: readonly IntegrityStatus[] = ['pending', 'finalized', 'invalid'];

/**
 * A status query from msg.payload: an object id (string), or a filter
 * `{collection?, id?, status?}` (status: one value or a list). Empty / undefined = everything.
 */
export function parseStatusQuery(payload: unknown): StatusQuery {
  if (payload === undefined || payload === null || payload === '') return {};
  if (typeof payload === 'string') return { id: payload.trim() };
  if (!isRecord(payload)) throw new OpsError('BAD_FILTER', 'a status query is an object id (string) or a filter {collection?, id?, status?}');
  const q: StatusQuery = {};
  for (const k of Object.keys(payload)) {
    if (k !== 'collection' && k !== 'id' && k !== 'status') throw new OpsError('BAD_FILTER', `unknown status query field "${k}" (collection, id, status)`);
  }
  for (const k of ['collection', 'id'] as const) {
    const v = payload[k];
    if (v === undefined || v === null || v === '') continue;
    if (typeof v !== 'string') throw new OpsError('BAD_FILTER', `status query: ${k} must be a string`);
    q[k] = v;
  }
  const st = payload['status'];
  if (st !== undefined && st !== null && st !== '') {
    const list = Array.isArray(st) ? st : [st];
    if (list.length === 0 || !list.every((s): s is IntegrityStatus => typeof s === 'string' && (STATUSES as readonly string[]).includes(s))) {
      throw new OpsError('BAD_FILTER', `status query: status must be among ${STATUSES.join(', ')}`);
    }
    q.statuses = [...new Set(list)];
  }
  return q;
}

function toStatus(r: StoredRecord, policy: IntegrityPolicy | undefined): RecordStatus {
  const out: RecordStatus = {
    collection: r.collection,
    id: r.id,
    type: r.type,
    version: r.version,
    status: policy === 'off' ? 'unverified' : r.status,
    statusAt: r.statusAt,
    dateAdded: r.dateAdded,
    key: r.key,
    hash: r.hash,
  };
  if (r.statusReason) out.reason = r.statusReason;
  return out;
}

/**
 * Statuses of the records matching `q` in the given collections (every version, every spec
 * version, invalid ones included), in date_added order per collection, at most `maxItems`.
 * A collection outside `collections` is refused (BAD_FILTER): a query sees only its server's.
 * `policyOf` (the server's) reports records of `off` collections as `unverified`.
 */
export async function queryStatuses(
  store: Store,
  collections: readonly string[],
  q: StatusQuery,
  maxItems = 1000,
  policyOf?: (collection: string) => IntegrityPolicy | undefined,
): Promise<{ items: RecordStatus[]; more: boolean }> {
  if (q.collection !== undefined && !collections.includes(q.collection)) {
    throw new OpsError('BAD_FILTER', `status query: collection ${q.collection} is not one of ${collections.join(', ') || '(none)'}`);
  }
  const cols = q.collection !== undefined ? [q.collection] : collections;
  const items: RecordStatus[] = [];
  for (const collection of cols) {
    const policy = policyOf?.(collection);
    let cursor: string | undefined;
    for (;;) {
      const left = maxItems - items.length;
      if (left <= 0) return { items, more: true };
      const page = await store.query({
        collection,
        ...(q.id !== undefined ? { ids: [q.id] } : {}),
        versions: ['all'],
        specVersions: ['2.0', '2.1'],
        includeInvalid: true,
        ...(q.statuses ? { statuses: q.statuses } : {}),
        limit: Math.min(left, 500),
        ...(cursor !== undefined ? { cursor } : {}),
      });
      for (const r of page.items) items.push(toStatus(r, policy));
      if (!page.more || page.cursor === undefined) break;
      cursor = page.cursor;
    }
  }
  return { items, more: false };
}

/** Counts per status over several collections of a bare store (the server's integrityCounts knows policies). */
export async function countStatuses(store: Store, collections: readonly string[]): Promise<StatusCounts> {
  const total: StatusCounts = { pending: 0, finalized: 0, invalid: 0 };
  for (const c of collections) {
    const n = await store.counts(c);
    total.pending += n.pending;
    total.finalized += n.finalized;
    total.invalid += n.invalid;
  }
  return total;
}

/**
 * How long a verification should wait for an anchor for a message/item that the TAXII server
 * emitted: a record of a collection whose integrity policy is `off` is never recorded (nothing
 * anchors it, and no verdict would be kept), so waiting for its anchor only holds the flow up —
 * such records are looked at once. Anything else keeps the configured wait.
 */
export function effectiveWaitMs(sets: unknown, waitMs: number): number {
  return isRecord(sets) && sets['policy'] === 'off' ? 0 : waitMs;
}
