/**
 * Admission of one posted object (paper step 2): STIX checks (lib/stix), version, hash h_t and
 * ledger key k (lib/digest), and the record handed to the store. Problems become the message of
 * a status `failures` entry, never an HTTP error.
 */
import { keyForObject, normaliseTimestamp } from '../digest';
import { formatIssue, specVersionOf, validateObject, type StixObject } from '../stix';
import type { StoredRecord } from '../store/store';
import { STIX_MEDIA_TYPE } from './media';
import type { IntegrityPolicy, ResolvedCollection } from './server-config';

export type NewRecord = Omit<StoredRecord, 'dateAdded' | 'statusAt'> & { dateAdded?: string };

export type Prepared =
  | { ok: true; record: NewRecord; unversioned: boolean }
  | { ok: false; id: string; version: string; message: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The version string of a status detail for an object that could not be read. */
function bestVersion(obj: unknown): string {
  if (!isRecord(obj)) return '';
  for (const p of ['modified', 'created'] as const) {
    const v = obj[p];
    if (typeof v === 'string') return v;
  }
  return '';
}

export function prepareRecord(obj: unknown, index: number, col: ResolvedCollection): Prepared {
  const rawId = isRecord(obj) && typeof obj['id'] === 'string' ? obj['id'] : `objects[${index}]`;
  const fail = (message: string): Prepared => ({ ok: false, id: rawId, version: bestVersion(obj), message });
  let issues;
  try {
    issues = validateObject(obj, index);
  } catch (err) {
    // e.g. a pathologically deep object: a per-object failure, never a server error
    return fail(`cannot be validated: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (issues.length > 0) {
    const lines = issues.slice(0, 10).map((i) => formatIssue({ ...i, index }));
    if (issues.length > 10) lines.push(`... and ${issues.length - 10} more`);
    return fail(`invalid STIX: ${lines.join('; ')}`);
  }
  const o = obj as StixObject;
  try {
    const { version, hash, key } = keyForObject(col.id, o, { hmacKey: col.integrity?.hmacKey });
    const unversioned = version === null;
    const record: NewRecord = {
      collection: col.id,
      id: o.id,
      type: o.type,
      // '' = unversioned (SCO): the store uses the date_added as the version and finds re-adds by hash
      version: version ?? '',
      specVersion: specVersionOf(o),
      mediaType: STIX_MEDIA_TYPE,
      object: o,
      hash,
      key,
      ...initialIntegrity(col),
    };
    return { ok: true, record, unversioned };
  } catch (err) {
    return fail(`cannot be hashed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Reason recorded on records of an `off` collection. The store knows three states only, so such a
 * record is kept `finalized` with this reason; the server reports it as `unverified` and keeps it
 * out of integrity counts (see TaxiiServer.integrityOf / integrityCounts).
 */
export const OFF_REASON = 'integrity policy off: not verified against the ledger';
/** Reason of an `optional` record that has no verification result yet. */
export const OPTIONAL_PENDING_REASON = 'integrity policy optional: served at once, verified when its hash is anchored';

/** Status a new record starts with under its collection's policy. */
function initialIntegrity(col: ResolvedCollection): Pick<NewRecord, 'status' | 'statusReason'> {
  switch (col.integrityPolicy) {
    case 'off':
      return { status: 'finalized', statusReason: OFF_REASON };
    case 'optional':
      return { status: 'pending', statusReason: OPTIONAL_PENDING_REASON };
    default:
      return { status: 'pending' };
  }
}

/** Normalise a version for comparison and store look-ups (any RFC 3339 spelling of the instant). */
export function normaliseVersion(v: string): string {
  try {
    return normaliseTimestamp(v);
  } catch {
    return v;
  }
}

export function sameVersion(a: string, b: string): boolean {
  return a === b || normaliseVersion(a) === normaliseVersion(b);
}

/**
 * A verify-hash result about one stored version (lib/verify VerificationStatus). `unknown`: the
 * verifier could not decide (ledger unreachable, or its wait ran out) — never a verdict: the record
 * is left as it is and checked again later. `conflict`: entitled writers anchored different hashes
 * (a dishonest consortium member) — not decidable until the admin revokes one, so a pending record
 * stays pending (with the reason) and is checked again; it never turns a record invalid, or a rogue
 * could get genuine CTI refused for good. `wrong-writer`: anchored only by writers not entitled to
 * vouch for the collection — counts as not anchored.
 */
export type IntegrityVerdict = 'verified' | 'mismatch' | 'not-anchored' | 'wrong-writer' | 'conflict' | 'unknown';

export const INTEGRITY_VERDICTS: readonly IntegrityVerdict[] = ['verified', 'mismatch', 'not-anchored', 'wrong-writer', 'conflict', 'unknown'];

export function isIntegrityVerdict(v: unknown): v is IntegrityVerdict {
  return typeof v === 'string' && (INTEGRITY_VERDICTS as readonly string[]).includes(v);
}

/**
 * What a verdict does to a record under a collection's integrity policy — the one state machine
 * shared by the TAXII server and by integrity-status on a bare store:
 * - `keep`: nothing is written (`reason` says why);
 * - `settle`: the record becomes `finalized` / `invalid` (the server also moves it through the TAXII
 *   status resources that list it);
 * - `note`: policy optional, not anchored yet: the record stays `pending`, served, with the reason.
 * An invalid record stays invalid: the ledger proved the stored copy was altered.
 */
export type IntegrityDecision =
  | { action: 'keep'; reason: string }
  | { action: 'settle'; status: 'finalized' | 'invalid'; reason: string }
  | { action: 'note'; status: 'pending'; reason: string };

export function decideIntegrity(
  rec: Pick<StoredRecord, 'status' | 'statusReason'>,
  policy: IntegrityPolicy,
  verdict: IntegrityVerdict,
  reason?: string,
): IntegrityDecision {
  if (policy === 'off') return { action: 'keep', reason: 'integrity policy off: verification results are not recorded' };
  if (verdict === 'unknown') {
    return { action: 'keep', reason: `could not decide${reason ? ` (${reason})` : ''}: left ${rec.status}, to be checked again later` };
  }
  if (verdict === 'conflict') {
    const why = `conflicting anchors${reason ? ` (${reason})` : ''}`;
    if (rec.status !== 'pending') return { action: 'keep', reason: `${why}: left ${rec.status}` };
    return { action: 'note', status: 'pending', reason: `${why}: left pending until the registry admin revokes the dishonest writer; checked again later` };
  }
  if (verdict === 'verified') {
    if (rec.status === 'invalid') {
      return { action: 'keep', reason: `already invalid${rec.statusReason ? ` (${rec.statusReason})` : ''}; an invalid record is never served again` };
    }
    if (rec.status === 'finalized' && rec.statusReason !== OFF_REASON) return { action: 'keep', reason: 'already finalized' };
    return { action: 'settle', status: 'finalized', reason: reason ?? 'integrity verified: the hash matches the ledger' };
  }
  if ((verdict === 'not-anchored' || verdict === 'wrong-writer') && policy === 'optional') {
    // served unverified: the reason says so; an anchor that appears later still settles it
    if (rec.status !== 'pending') return { action: 'keep', reason: `not anchored, left ${rec.status} (integrity policy optional)` };
    return { action: 'note', status: 'pending', reason: `not anchored on the ledger (integrity policy optional: served unverified)${reason ? `: ${reason}` : ''}` };
  }
  if (rec.status === 'invalid') return { action: 'keep', reason: 'already invalid' };
  return {
    action: 'settle',
    status: 'invalid',
    reason:
      verdict === 'mismatch'
        ? reason ?? 'hash mismatch: the object differs from the one anchored on the ledger'
        : verdict === 'wrong-writer'
          ? `not anchored by a writer entitled to vouch for this collection: ${reason ?? 'only writers granted other collections (or revoked) anchored it'}`
          : `not anchored: ${reason ?? 'no hash anchored on the ledger for this object version'}`,
  };
}
