/**
 * Integrity check of one STIX object against the ledger (paper steps 2.a/2.b, 4, 5, 6):
 * recompute h_t = H(t), derive the key from m_t, read the anchored hash and compare.
 * "Pending is a state, not an error": with `waitMs` > 0 the check waits for the producer's
 * anchor to be mined before concluding `not-anchored`, and a ledger it cannot read by the end of
 * the wait gives `unknown` (retry later), never `not-anchored`.
 */
import { LedgerError, type Ledger, type LedgerRecord } from './ledger/ledger';
import { identityTag, keyForObject } from './digest';
import type { StixObject } from './stix';

/**
 * - `verified`: every anchor under the key by a writer entitled to vouch for the collection holds
 *   the object's hash.
 * - `mismatch`: the entitled anchors agree on another hash (altered in transit or in storage).
 * - `not-anchored`: no anchor at all (for an unversioned object, whose key is its content, an altered
 *   copy reads so too).
 * - `wrong-writer`: anchored only by writers not entitled to vouch for this object: not granted its
 *   collection (granted another, or revoked since), or — when the registry binds the object's
 *   creator (`created_by_ref`) to accounts — not one of those. Never proof.
 * - `conflict`: entitled writers anchored *different* hashes under one key: one of them is not
 *   honest (key squatting by a consortium member). Neither copy is proven until the registry admin
 *   revokes the rogue writer; then the check decides again.
 * - `unknown`: the check could not decide — the ledger could not be read, or the wait for a pending
 *   anchor ran out without a final read settling it. Never a rejection: retry later.
 */
export type VerificationStatus = 'verified' | 'mismatch' | 'not-anchored' | 'wrong-writer' | 'conflict' | 'unknown';

/** The statuses that reject an object (never use it): all but `verified` and `unknown`. */
export const REJECTING_STATUSES: readonly VerificationStatus[] = ['mismatch', 'not-anchored', 'wrong-writer', 'conflict'];

export function isRejection(status: VerificationStatus): boolean {
  return status === 'mismatch' || status === 'not-anchored' || status === 'wrong-writer' || status === 'conflict';
}

/** Why a verification is `unknown`. */
export type UnknownCause = 'timeout' | 'unreachable';

/** One anchor under the object's key, as the verdict reports it. */
export interface AnchorSeen {
  writer: string;
  hash: string;
  timestamp: number;
  /** counted: its writer is entitled to vouch for this collection */
  entitled: boolean;
}

export interface Verification {
  status: VerificationStatus;
  /** object id */
  id: string;
  /** collection id used in the key */
  collection: string;
  /** normalised version used in the key (null for unversioned objects, keyed by their hash) */
  version: string | null;
  key: string;
  /** the collection's scope on the ledger (who may vouch is granted per scope) */
  scope: string;
  /** the object's `created_by_ref`, when it names one: writers bound to that identity (if any) are the only ones entitled */
  creator?: string;
  /** hash anchored on the ledger by the entitled writer(s) (absent when none anchored, or with `conflict`) */
  expected?: string;
  /** hash computed from the object received */
  actual: string;
  /**
   * who vouched and when (seconds): the entitled writer whose anchor decided (`verified`/`mismatch`),
   * else the first anchor seen
   */
  writer?: string;
  timestamp?: number;
  /** every anchor under the key (any writer), when there is more than the deciding one or none is entitled */
  anchors?: AnchorSeen[];
  /** human-readable reason for anything but `verified` */
  reason?: string;
  /** why the check could not decide (only with status `unknown`) */
  cause?: UnknownCause;
}

export interface VerifyOptions {
  /** how long to wait for a not-yet-mined anchor, ms (0 = look once) */
  waitMs?: number;
  /** HMAC key for the keyed-hash privacy option (see lib/digest); must match the producer's */
  hmacKey?: string | Buffer;
}

/** Ledger error codes after which a verification with a wait is `unknown` (retry later), not an error. */
const UNDECIDED_CODES = new Set(['UNREACHABLE', 'TIMEOUT', 'TX_FAILED']);
/** pause between attempts to reach an unreachable ledger during the wait, ms */
const RETRY_MS = 1000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const short = (a: string) => (a.length > 12 ? `${a.slice(0, 6)}…${a.slice(-4)}` : a);

/**
 * Verify one object: recompute its hash and key, read every anchor under the key and decide from
 * those written by writers entitled to vouch for the collection (see VerificationStatus).
 *
 * - `waitMs` 0: one read. A ledger that cannot be read throws its LedgerError (UNREACHABLE, …)
 *   unchanged — the caller asked for one look and gets the ledger's own error.
 * - `waitMs` > 0: waits for an entitled anchor not yet mined (`ledger.waitForAnchor`, which ends
 *   with a final read when the wait runs out). An unreachable ledger during the wait is tried again
 *   until the deadline. `not-anchored` / `wrong-writer` only when that final read succeeded;
 *   `unknown` with `cause: 'unreachable'` (or `'timeout'`) and a reason naming the ledger's error
 *   when it could not be made. Configuration errors (BAD_CONFIG, …) still throw.
 */
export async function verifyObject(
  ledger: Ledger,
  collection: string,
  object: StixObject,
  opts: VerifyOptions = {},
): Promise<Verification> {
  const { scope, key, hash: actual, version } = keyForObject(collection, object, { hmacKey: opts.hmacKey });
  const creatorRef = (object as { created_by_ref?: unknown }).created_by_ref;
  const creator = typeof creatorRef === 'string' && creatorRef.length > 0 ? creatorRef : undefined;
  const identity = creator === undefined ? undefined : identityTag(creator);
  const base: Base = { id: object.id, collection, version, key, scope, actual, ...(creator ? { creator } : {}) };
  const what = `${object.id} (version ${version ?? 'none: keyed by its content'}) in collection ${collection}`;
  const waitMs = opts.waitMs ?? 0;
  let records: LedgerRecord[];
  if (waitMs > 0) {
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        records = await ledger.waitForAnchor(scope, key, Math.max(1, deadline - Date.now()), identity);
        break;
      } catch (err) {
        if (!(err instanceof LedgerError) || !UNDECIDED_CODES.has(err.code)) throw err;
        const left = deadline - Date.now();
        if (left <= 0) {
          return {
            ...base,
            status: 'unknown',
            cause: err.code === 'TIMEOUT' ? 'timeout' : 'unreachable',
            reason: `could not decide for ${what} within ${waitMs} ms: the ledger could not be read (${err.message}); retry later`,
          };
        }
        await sleep(Math.min(RETRY_MS, left));
      }
    }
  } else {
    records = await ledger.lookup(scope, key, identity);
  }
  return decide(base, what, records, waitMs);
}

type Base = Pick<Verification, 'id' | 'collection' | 'version' | 'key' | 'scope' | 'actual' | 'creator'>;

function decide(base: Base, what: string, records: LedgerRecord[], waitMs: number): Verification {
  const seen: AnchorSeen[] = records.map((r) => ({ writer: r.writer, hash: r.hash.toLowerCase(), timestamp: r.timestamp, entitled: r.entitled }));
  const actual = base.actual.toLowerCase();
  const unversionedHint = base.version === null ? ' (an unversioned object is keyed by its content: an altered copy has no anchor)' : '';
  if (seen.length === 0) {
    return {
      ...base,
      status: 'not-anchored',
      reason: `no hash anchored for ${what}${waitMs > 0 ? ` within ${waitMs} ms` : ''}${unversionedHint}`,
    };
  }
  const entitled = seen.filter((a) => a.entitled);
  if (entitled.length === 0) {
    const first = seen[0];
    return {
      ...base,
      status: 'wrong-writer',
      writer: first.writer,
      timestamp: first.timestamp,
      anchors: seen,
      reason:
        `anchored for ${what} only by ${seen.map((a) => a.writer).join(', ')}, not entitled to vouch for this collection` +
        (base.creator ? ` or for its creator ${base.creator}` : '') +
        ` (granted another collection, not bound to the creator's identity, or revoked): not proof of integrity`,
    };
  }
  const hashes = new Set(entitled.map((a) => a.hash));
  if (hashes.size > 1) {
    const list = entitled.map((a) => `${a.writer} → ${short(a.hash)}`).join(', ');
    const matching = entitled.filter((a) => a.hash === actual).map((a) => a.writer);
    return {
      ...base,
      status: 'conflict',
      anchors: seen,
      reason:
        `conflicting anchors for ${what}: entitled writers anchored different hashes (${list}); ` +
        (matching.length > 0 ? `this copy matches ${matching.join(', ')}; ` : 'this copy matches none of them; ') +
        'one writer is not honest — the registry admin must revoke it (revokeWriter), then verify again',
    };
  }
  const deciding = entitled[0];
  const common: Verification = {
    ...base,
    status: 'verified',
    expected: deciding.hash,
    writer: deciding.writer,
    timestamp: deciding.timestamp,
  };
  if (seen.length > 1) common.anchors = seen;
  if (deciding.hash === actual) return common;
  return {
    ...common,
    status: 'mismatch',
    reason: `hash mismatch for ${base.id}: ledger holds ${deciding.hash} (anchored by ${deciding.writer}), object hashes to ${base.actual} (altered in transit or in storage)`,
  };
}
