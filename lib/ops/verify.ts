/**
 * Paper steps 4 and 6 on the consumer side: recompute H(t) for each object received, read the
 * anchors, and conclude `verified` or a rejection (`mismatch`, `not-anchored`, `wrong-writer`,
 * `conflict`) or `unknown` (lib/verify). "Pending is
 * a state, not an error": with `waitMs` > 0 a not-yet-mined anchor is waited for.
 */
import type { Ledger } from '../ledger/ledger';
import type { StixObject } from '../stix';
import { verifyObject, type Verification, type VerificationStatus } from '../verify';
import { checkCollection } from './collection';
import { objectsToVerify } from './payload';

export interface VerifyInput {
  collection: string;
  /** STIX content: object, array, bundle, TAXII envelope, JSON text or bytes */
  payload: unknown;
  /** how long to wait for a not-yet-mined anchor, ms (0 = look once) */
  waitMs?: number;
  hmacKey?: string;
}

export interface VerifiedObject {
  object: StixObject;
  verification: Verification;
}

/** How many ledger reads run at once for one payload. */
export const VERIFY_CONCURRENCY = 16;

/**
 * Verify every object of a payload (in payload order). Throws OpsError BAD_PAYLOAD when the
 * payload or an object cannot be verified at all (no id, bad timestamps), and ledger errors
 * (LedgerError UNREACHABLE, ...) as they come: a ledger that cannot be read is an error, not a
 * rejection.
 */
export async function verifyPayload(ledger: Ledger, input: VerifyInput): Promise<VerifiedObject[]> {
  const collection = checkCollection(input.collection);
  const objects = objectsToVerify(input.payload);
  const opts = { waitMs: input.waitMs ?? 0, ...(input.hmacKey !== undefined ? { hmacKey: input.hmacKey } : {}) };
  const out: VerifiedObject[] = new Array<VerifiedObject>(objects.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < objects.length) {
      const i = next++;
      out[i] = { object: objects[i], verification: await verifyObject(ledger, collection, objects[i], opts) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(VERIFY_CONCURRENCY, objects.length) }, worker));
  return out;
}

/** Worst status of several: conflict > mismatch > wrong-writer > not-anchored > unknown > verified. */
export function overallStatus(verifications: Verification[]): VerificationStatus {
  for (const s of ['conflict', 'mismatch', 'wrong-writer', 'not-anchored'] as const) {
    if (verifications.some((v) => v.status === s)) return s;
  }
  if (verifications.some((v) => v.status === 'unknown')) return 'unknown';
  return 'verified';
}
