/**
 * Paper steps 4 and 6 on the consumer side: recompute H(t) for each object received, read the
 * anchors, and conclude `verified` or a rejection (`mismatch`, `not-anchored`, `wrong-writer`,
 * `conflict`) or `unknown` (lib/verify). "Pending is
 * a state, not an error": with `waitMs` > 0 a not-yet-mined anchor is waited for.
 */
import type { Ledger, LedgerRecord, LedgerState, LookupQuery } from '../ledger/ledger';
import type { StixObject } from '../stix';
import { identityTag, keyForObject } from '../digest';
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
 * The ledger as seen by one payload's verification: every object's anchors were read up front in
 * one batched read (Ledger.lookupMany), so `lookup` answers from that read and `waitForAnchor`
 * returns at once when it already found an entitled anchor — only objects still pending wait on
 * the ledger itself. Verdicts are the same as reading each key on its own, at the moment of the
 * batched read; every other call goes to the ledger.
 */
class PrefetchedLedger implements Ledger {
  constructor(
    private readonly ledger: Ledger,
    private readonly seen: Map<string, LedgerRecord[]>,
  ) {}
  static id(scope: string, key: string, identity?: string): string {
    return `${scope.toLowerCase()}/${key.toLowerCase()}/${(identity ?? '').toLowerCase()}`;
  }
  get state(): LedgerState {
    return this.ledger.state;
  }
  anchor(scope: string, key: string, hash: string) {
    return this.ledger.anchor(scope, key, hash);
  }
  anchorMany(entries: Parameters<Ledger['anchorMany']>[0]) {
    return this.ledger.anchorMany(entries);
  }
  lookup(scope: string, key: string, identity?: string): Promise<LedgerRecord[]> {
    const recs = this.seen.get(PrefetchedLedger.id(scope, key, identity));
    return recs ? Promise.resolve(recs.map((r) => ({ ...r }))) : this.ledger.lookup(scope, key, identity);
  }
  waitForAnchor(scope: string, key: string, timeoutMs: number, identity?: string): Promise<LedgerRecord[]> {
    const recs = this.seen.get(PrefetchedLedger.id(scope, key, identity));
    if (recs && recs.some((r) => r.entitled)) return Promise.resolve(recs.map((r) => ({ ...r })));
    return this.ledger.waitForAnchor(scope, key, timeoutMs, identity);
  }
  writerStatus(scope?: string) {
    return this.ledger.writerStatus(scope);
  }
  close(): Promise<void> {
    return Promise.resolve(); // not ours to close
  }
  onState(listener: (state: LedgerState, detail?: string) => void): () => void {
    return this.ledger.onState(listener);
  }
}

/**
 * Read the anchors of every object of a payload in one batched read when the ledger offers
 * lookupMany; objects whose key cannot be computed are left to verifyObject (it reports them).
 */
async function prefetch(ledger: Ledger, collection: string, objects: StixObject[], hmacKey: string | undefined): Promise<Ledger> {
  if (typeof ledger.lookupMany !== 'function' || objects.length < 2) return ledger;
  const queries: LookupQuery[] = [];
  for (const object of objects) {
    try {
      const { scope, key } = keyForObject(collection, object, { hmacKey });
      const ref = (object as { created_by_ref?: unknown }).created_by_ref;
      const identity = typeof ref === 'string' && ref.length > 0 ? identityTag(ref) : undefined;
      queries.push(identity === undefined ? { scope, key } : { scope, key, identity });
    } catch {
      // verifyObject throws the same error for this object, in payload order
    }
  }
  if (queries.length === 0) return ledger;
  const results = await ledger.lookupMany(queries);
  const seen = new Map<string, LedgerRecord[]>();
  queries.forEach((q, i) => seen.set(PrefetchedLedger.id(q.scope, q.key, q.identity), results[i] ?? []));
  return new PrefetchedLedger(ledger, seen);
}

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
  // one batched read for the whole payload (instead of one per object), where the ledger can
  let view: Ledger;
  try {
    view = await prefetch(ledger, collection, objects, input.hmacKey);
  } catch (err) {
    // with a wait, an unreachable ledger is verifyObject's to retry until the deadline (then
    // `unknown`); a single look reports the ledger's error, as reading key by key would
    if (opts.waitMs === 0) throw err;
    view = ledger;
  }
  const out: VerifiedObject[] = new Array<VerifiedObject>(objects.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < objects.length) {
      const i = next++;
      out[i] = { object: objects[i], verification: await verifyObject(view, collection, objects[i], opts) };
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
