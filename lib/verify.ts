/**
 * Integrity check of one STIX object against the ledger (paper steps 2.a/2.b, 4, 5, 6):
 * recompute h_t = H(t), derive the key from m_t, read the anchored hash and compare.
 * "Pending is a state, not an error": with `waitMs` > 0 the check waits for the producer's
 * anchor to be mined before concluding `not-anchored`.
 */
import type { Ledger } from './ledger/ledger';
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
  const record = waitMs > 0 ? await ledger.waitForAnchor(key, waitMs) : await ledger.lookup(key);
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
