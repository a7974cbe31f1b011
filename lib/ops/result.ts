/**
 * What the operations put into `msg.sets` (Node-RED) / the item JSON (n8n). One place, so both
 * front ends produce the same shapes:
 *
 * - anchor:  `{collection, items: [{id, type, version, key, hash, anchor: {tx, block, existing?, timings?: {queued, sent, mined}}}]}`
 *            plus `key`, `hash`, `anchor` at the top level when the payload held one object;
 * - verify:  `{verification: {status, id, collection, version, key, expected?, actual, reason?, ...}}`
 *            per object, or for a payload kept whole `{verification: <summary>, verifications: [...]}`;
 * - publish: `{published: {exchange, count, routingKeys}}`;
 * - TAXII:   `{taxii: <status resource>}` after an add.
 */
import { isRejection, type Verification } from '../verify';
import type { AnchorResult } from './anchor';
import { overallStatus } from './verify';

export type SetsFragment = Record<string, unknown>;

/** Keys a node owns in msg.sets: stale values from an earlier node are removed. */
export const ANCHOR_KEYS = ['collection', 'items', 'key', 'hash', 'anchor'] as const;
export const VERIFY_KEYS = ['verification', 'verifications'] as const;

export function anchorFragment(result: AnchorResult): SetsFragment {
  const out: SetsFragment = { collection: result.collection, items: result.items };
  if (result.items.length === 1) {
    const [one] = result.items;
    out.key = one.key;
    out.hash = one.hash;
    out.anchor = one.anchor;
  }
  return out;
}

export function verificationFragment(v: Verification): SetsFragment {
  return { verification: v };
}

/** A whole payload's verification: the summary (worst status, joined reasons) and every object's. */
export function wholeVerificationFragment(vs: Verification[]): SetsFragment {
  const status = overallStatus(vs);
  // `unknown` is not a rejection (the ledger could not be read): counted apart
  const rejected = vs.filter((v) => isRejection(v.status));
  const undecided = vs.filter((v) => v.status === 'unknown');
  const summary: Record<string, unknown> = {
    status,
    collection: vs[0]?.collection,
    total: vs.length,
    verified: vs.length - rejected.length - undecided.length,
    rejected: rejected.length,
    undecided: undecided.length,
  };
  const notVerified = [...rejected, ...undecided];
  if (notVerified.length > 0) {
    summary.reason = notVerified
      .slice(0, 10)
      .map((v) => v.reason ?? `${v.id}: ${v.status}`)
      .join('; ')
      .concat(notVerified.length > 10 ? `; … and ${notVerified.length - 10} more` : '');
  }
  return { verification: summary, verifications: vs };
}

/**
 * msg.sets after a node: the earlier msg.sets (when it is an object), without the keys this
 * node owns, plus this node's fragment.
 */
export function mergeSets(existing: unknown, owned: readonly string[], fragment: SetsFragment): SetsFragment {
  const base: SetsFragment = typeof existing === 'object' && existing !== null && !Array.isArray(existing) ? { ...(existing as SetsFragment) } : {};
  for (const k of owned) delete base[k];
  return { ...base, ...fragment };
}
