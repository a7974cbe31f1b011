/**
 * Integrity check of one STIX object against the ledger (paper steps 2.a/2.b, 4, 5, 6):
 * recompute h_t = H(t), derive the key from m_t, read the anchored hash and compare.
 * "Pending is a state, not an error": with `waitMs` > 0 the check waits for the producer's
 * anchor to be mined before concluding `not-anchored`, and a ledger it cannot read by the end of
 * the wait gives `unknown` (retry later), never `not-anchored`.
 */
import { LedgerError, type Ledger, type LedgerRecord } from './ledger/ledger';
import { hashObject, ledgerKey, objectVersion } from './digest';
import type { StixObject } from './stix';

/**
 * `unknown`: the check could not decide — the ledger could not be read, or the wait for a pending
 * anchor ran out without a final read settling it. Never a rejection: retry later.
 */
export type VerificationStatus = 'verified' | 'mismatch' | 'not-anchored' | 'unknown';

/** Why a verification is `unknown`. */
export type UnknownCause = 'timeout' | 'unreachable';

export interface Verification {
  status: VerificationStatus;
  /** object id */
  id: string;
  /** collection id used in the key */
  collection: string;
  /** normalised version used in the key (null for unversioned objects) */
  version: string | null;
  key: string;
  /** hash anchored on the ledger (absent when nothing is anchored) */
  expected?: string;
  /** hash computed from the object received */
  actual: string;
  /** who anchored it and when (seconds), when anchored */
  writer?: string;
  timestamp?: number;
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

/**
 * Verify one object: recompute its hash and compare with the ledger's.
 *
 * - `waitMs` 0: one read. A ledger that cannot be read throws its LedgerError (UNREACHABLE, …)
 *   unchanged — the caller asked for one look and gets the ledger's own error.
 * - `waitMs` > 0: waits for a not-yet-mined anchor (`ledger.waitForAnchor`, which ends with a
 *   final read when the wait runs out). An unreachable ledger during the wait is tried again
 *   until the deadline. Outcomes: `verified` / `mismatch` as soon as a hash is read;
 *   `not-anchored` ("… within N ms") only when the final read succeeded and found nothing;
 *   `unknown` with `cause: 'unreachable'` (or `'timeout'`) and a reason naming the ledger's error
 *   when that final read could not be made. Configuration errors (BAD_CONFIG, …) still throw.
 */
export async function verifyObject(
  ledger: Ledger,
  collection: string,
  object: StixObject,
  opts: VerifyOptions = {},
): Promise<Verification> {
  const version = objectVersion(object);
  const key = ledgerKey(collection, object.id, version);
  const actual = hashObject(object, opts.hmacKey);
  const base = { id: object.id, collection, version, key, actual };
  const waitMs = opts.waitMs ?? 0;
  let record: LedgerRecord | null;
  if (waitMs > 0) {
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        record = await ledger.waitForAnchor(key, Math.max(1, deadline - Date.now()));
        break;
      } catch (err) {
        if (!(err instanceof LedgerError) || !UNDECIDED_CODES.has(err.code)) throw err;
        const left = deadline - Date.now();
        if (left <= 0) {
          return {
            ...base,
            status: 'unknown',
            cause: err.code === 'TIMEOUT' ? 'timeout' : 'unreachable',
            reason:
              `could not decide for ${object.id} (version ${version ?? 'none'}) in collection ${collection} within ${waitMs} ms: ` +
              `the ledger could not be read (${err.message}); retry later`,
          };
        }
        await sleep(Math.min(RETRY_MS, left));
      }
    }
  } else {
    record = await ledger.lookup(key);
  }
  if (!record) {
    return {
      ...base,
      status: 'not-anchored',
      reason:
        waitMs > 0
          ? `no hash anchored for ${object.id} (version ${version ?? 'none'}) in collection ${collection} within ${waitMs} ms`
          : `no hash anchored for ${object.id} (version ${version ?? 'none'}) in collection ${collection}`,
    };
  }
  const common = { ...base, expected: record.hash, writer: record.writer, timestamp: record.timestamp };
  if (record.hash.toLowerCase() === actual.toLowerCase()) return { ...common, status: 'verified' };
  return {
    ...common,
    status: 'mismatch',
    reason: `hash mismatch for ${object.id}: ledger holds ${record.hash}, object hashes to ${actual} (altered in transit or in storage)`,
  };
}
