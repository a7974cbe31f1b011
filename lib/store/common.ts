/**
 * Logic shared by the record stores (embedded and MongoDB): timestamp keys, query normalisation,
 * the TAXII version/spec_version selection rules, and cursors. Pure functions, no I/O.
 *
 * Selection rules (TAXII 2.1 §3.4 filtering, TAXII-NOTES §5-6), the same for both stores:
 *  1. Candidates of one object = its versions, without `invalid` ones unless `includeInvalid` (or
 *     `statuses` names `invalid`).
 *  2. `specVersions` given: candidates with one of those spec versions; absent: only the
 *     candidates with the highest spec version among them.
 *  3. `versions` (default `last`): `all` = every candidate, `first`/`last` = the candidate with the
 *     earliest/latest version instant, explicit timestamps = candidates with that instant.
 *  4. The other filters are per record and applied after: `ids`, `types`, `statuses`,
 *     `addedAfter` (date_added strictly later) and the cursor. So `added_after` + `last` returns the
 *     latest version only if *it* was added after the value (filters AND together), and a page
 *     never depends on what earlier pages held.
 */
import { normaliseTimestamp } from '../digest';
import { StoreError } from './errors';
import type { IntegrityStatus, RecordQuery, StatusDetail, StatusMove, StatusResource, StoredRecord, VersionMatch } from './store';

export const STATUSES: readonly IntegrityStatus[] = ['pending', 'finalized', 'invalid'];

/** Default retention of TAXII status resources (the interop profile asks for at least 24 h). */
export const DEFAULT_STATUS_RETENTION_MS = 24 * 60 * 60 * 1000;

/** A new record as given to add()/addMany(). `version: ''` = unversioned (the store uses date_added). */
export type NewRecord = Omit<StoredRecord, 'dateAdded' | 'statusAt'> & { dateAdded?: string };

export function isStatus(v: unknown): v is IntegrityStatus {
  return v === 'pending' || v === 'finalized' || v === 'invalid';
}

// ---------------------------------------------------------------------------------------------
// Timestamps

function normalised(ts: string): string | null {
  if (typeof ts !== 'string') return null;
  try {
    return normaliseTimestamp(ts);
  } catch {
    return null;
  }
}

/**
 * Sortable, exact key of a version timestamp: the lib/digest normalised form without its `Z`
 * (`2020-01-01T00:00:00.5`). Normalised fractions carry no trailing zeros, so plain byte order of
 * these keys is time order at any precision, and equal instants give equal keys. Null if invalid.
 */
export function versionKey(ts: string): string | null {
  const n = normalised(ts);
  return n === null ? null : n.slice(0, -1);
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS` (UTC, any year 0000-9999). */
function epochSeconds(s: string): number {
  const d = new Date(0);
  d.setUTCFullYear(Number(s.slice(0, 4)), Number(s.slice(5, 7)) - 1, Number(s.slice(8, 10)));
  d.setUTCHours(Number(s.slice(11, 13)), Number(s.slice(14, 16)), Number(s.slice(17, 19)), 0);
  return Math.floor(d.getTime() / 1000);
}

/** TAXII timestamp (`YYYY-MM-DDTHH:MM:SS.ssssssZ`) of µs since the epoch. */
export function formatMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return iso.slice(0, 23) + pad(us - ms * 1000, 3) + 'Z';
}

/**
 * Any RFC 3339 timestamp as a TAXII µs timestamp (`text`, fixed width, sortable) and as µs since
 * the epoch. Digits beyond µs are truncated (date_added values are µs, so `> truncated` is the same
 * test as `> exact`). Null if invalid.
 */
export function toMicros(ts: string): { text: string; us: number } | null {
  const n = normalised(ts);
  if (n === null) return null;
  const frac = n.length > 20 ? n.slice(20, -1) : '';
  const micros = (frac + '000000').slice(0, 6);
  const sec = n.slice(0, 19);
  // a leap second (23:59:60) is kept as written in the text; its µs value rolls into the next minute
  return { text: `${sec}.${micros}Z`, us: epochSeconds(sec) * 1_000_000 + Number(micros) };
}

export function isoNow(nowMs: number): string {
  return new Date(nowMs).toISOString();
}

/** Compare dotted spec versions numerically ('2.0' < '2.1' < '2.10'); non-numeric parts as text. */
export function compareSpec(a: string, b: string): number {
  const pa = a.split('.');
  const pb = b.split('.');
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    if (x === y) continue;
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    if (!Number.isNaN(nx) && !Number.isNaN(ny)) return nx < ny ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

/** Byte order of the UTF-8 encodings (the order of LevelDB keys and of MongoDB strings). */
export function cmpBytes(a: string, b: string): number {
  if (a === b) return 0;
  // UTF-16 code-unit order equals UTF-8 byte order unless a surrogate is involved
  if (!/[\ud800-\udfff]/.test(a) && !/[\ud800-\udfff]/.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// ---------------------------------------------------------------------------------------------
// Version selection

/** What selection needs to know about one stored version. */
export interface VersionInfo {
  /** versionKey of the version */
  vk: string;
  status: IntegrityStatus;
  spec: string;
}

export interface VersionSelector {
  first: boolean;
  last: boolean;
  all: boolean;
  /** explicit version keys */
  explicit: Set<string>;
  /** 'top' = only the highest spec version of the candidates; 'any' = no spec filter */
  spec: 'top' | 'any' | Set<string>;
  allowInvalid: boolean;
}

/** The versionKeys of one object's versions that the selector picks (rules 1-3 above). */
export function selectVersions<V extends VersionInfo>(versions: readonly V[], sel: VersionSelector): Set<string> {
  let c = versions.filter((v) => sel.allowInvalid || v.status !== 'invalid');
  const spec = sel.spec;
  if (spec instanceof Set) c = c.filter((v) => spec.has(v.spec));
  else if (spec === 'top' && c.length > 0) {
    const top = c.reduce((m, v) => (compareSpec(v.spec, m) > 0 ? v.spec : m), c[0].spec);
    c = c.filter((v) => v.spec === top);
  }
  const out = new Set<string>();
  if (c.length === 0) return out;
  c.sort((a, b) => cmpBytes(a.vk, b.vk));
  if (sel.all) for (const v of c) out.add(v.vk);
  if (sel.first) out.add(c[0].vk);
  if (sel.last) out.add(c[c.length - 1].vk);
  if (sel.explicit.size > 0) for (const v of c) if (sel.explicit.has(v.vk)) out.add(v.vk);
  return out;
}

/** The default candidate set's first and last version (what the `last`/`first` indexes hold). */
export function defaultSelection<V extends VersionInfo>(versions: readonly V[]): { first?: V; last?: V } {
  let first: V | undefined;
  let last: V | undefined;
  let top: string | undefined;
  for (const v of versions) {
    if (v.status === 'invalid') continue;
    if (top === undefined || compareSpec(v.spec, top) > 0) top = v.spec;
  }
  if (top === undefined) return {};
  for (const v of versions) {
    if (v.status === 'invalid' || v.spec !== top) continue;
    if (!first || cmpBytes(v.vk, first.vk) < 0) first = v;
    if (!last || cmpBytes(v.vk, last.vk) > 0) last = v;
  }
  return { first, last };
}

function parseVersionMatches(values: readonly VersionMatch[] | undefined, what: string): Omit<VersionSelector, 'spec' | 'allowInvalid'> {
  const sel = { first: false, last: false, all: false, explicit: new Set<string>() };
  const list = values && values.length > 0 ? values : ['last'];
  for (const v of list) {
    if (v === 'first') sel.first = true;
    else if (v === 'last') sel.last = true;
    else if (v === 'all') sel.all = true;
    else {
      const k = versionKey(v);
      if (k === null) {
        throw new StoreError('ERR_STORE_BAD_QUERY', `${what}: version ${JSON.stringify(v)} is neither first, last, all nor an RFC 3339 timestamp`);
      }
      sel.explicit.add(k);
    }
  }
  return sel;
}

/** Selector of delete(): no filter = every version (any status, any spec version). */
export function deleteSelector(filter?: { versions?: VersionMatch[]; specVersions?: string[] }): VersionSelector {
  const hasVersions = !!filter?.versions && filter.versions.length > 0;
  const base = hasVersions
    ? parseVersionMatches(filter?.versions, 'delete')
    : { first: false, last: false, all: true, explicit: new Set<string>() };
  const specs = filter?.specVersions && filter.specVersions.length > 0 ? new Set(filter.specVersions) : 'any';
  return { ...base, spec: specs, allowInvalid: true };
}

// ---------------------------------------------------------------------------------------------
// Queries and cursors

export interface Position {
  /** date_added (µs text) */
  d: string;
  id: string;
  /** versionKey */
  vk: string;
}

export interface NormalisedQuery {
  collection: string;
  /** µs text: date_added must be strictly later */
  addedAfter?: string;
  ids?: string[];
  types?: string[];
  statuses?: Set<IntegrityStatus>;
  selector: VersionSelector;
  /** no explicit spec versions and invalid records excluded: the `first`/`last` indexes apply */
  defaultCandidates: boolean;
  limit: number;
  cursor?: Position;
}

const CURSOR_PREFIX = 'c1.';

export function encodeCursor(p: Position): string {
  return CURSOR_PREFIX + Buffer.from(JSON.stringify([p.d, p.id, p.vk]), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): Position {
  const bad = (why: string): never => {
    throw new StoreError('ERR_STORE_BAD_CURSOR', `cursor ${JSON.stringify(cursor.slice(0, 80))} is not valid: ${why}`);
  };
  if (typeof cursor !== 'string' || !cursor.startsWith(CURSOR_PREFIX)) bad('unknown format');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    return bad('not decodable');
  }
  if (!Array.isArray(parsed) || parsed.length !== 3 || !parsed.every((x) => typeof x === 'string')) return bad('wrong shape');
  const [d, id, vk] = parsed as [string, string, string];
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/.test(d) || id.length === 0 || versionKey(vk + 'Z') !== vk) {
    bad('wrong position values');
  }
  return { d, id, vk };
}

function stringList(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x.length > 0)) {
    throw new StoreError('ERR_STORE_BAD_QUERY', `${what} must be a list of non-empty strings`);
  }
  return v.length === 0 ? undefined : [...new Set(v as string[])];
}

/** Validate and normalise a RecordQuery (throws StoreError ERR_STORE_BAD_QUERY / ERR_STORE_BAD_CURSOR). */
export function normaliseQuery(q: RecordQuery): NormalisedQuery {
  if (!q || typeof q.collection !== 'string' || q.collection.length === 0) {
    throw new StoreError('ERR_STORE_BAD_QUERY', 'query: collection must be a non-empty string');
  }
  if (!Number.isSafeInteger(q.limit) || q.limit < 1) {
    throw new StoreError('ERR_STORE_BAD_QUERY', `query: limit must be a positive integer, got ${String(q.limit)}`);
  }
  let addedAfter: string | undefined;
  if (q.addedAfter !== undefined) {
    const m = toMicros(q.addedAfter);
    if (!m) throw new StoreError('ERR_STORE_BAD_QUERY', `query: addedAfter ${JSON.stringify(q.addedAfter)} is not an RFC 3339 timestamp`);
    addedAfter = m.text;
  }
  const statusList = stringList(q.statuses, 'query: statuses');
  if (statusList && !statusList.every(isStatus)) {
    throw new StoreError('ERR_STORE_BAD_QUERY', `query: statuses must be among ${STATUSES.join(', ')}`);
  }
  const statuses = statusList ? new Set(statusList as IntegrityStatus[]) : undefined;
  const allowInvalid = q.includeInvalid === true || (statuses?.has('invalid') ?? false);
  const specList = stringList(q.specVersions, 'query: specVersions');
  const selector: VersionSelector = {
    ...parseVersionMatches(q.versions, 'query'),
    spec: specList ? new Set(specList) : 'top',
    allowInvalid,
  };
  return {
    collection: q.collection,
    addedAfter,
    ids: stringList(q.ids, 'query: ids'),
    types: stringList(q.types, 'query: types'),
    statuses,
    selector,
    defaultCandidates: !specList && !allowInvalid,
    limit: q.limit,
    cursor: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
  };
}

// ---------------------------------------------------------------------------------------------
// Records to add

export interface PreparedRecord {
  input: NewRecord;
  /** versionKey, or null when unversioned (the store assigns date_added as the version) */
  vk: string | null;
  /** explicit date_added, when given */
  dateAdded?: { text: string; us: number };
}

/** Validate a record to add (throws StoreError ERR_STORE_BAD_RECORD naming the problem). */
export function prepareRecord(rec: NewRecord, index?: number): PreparedRecord {
  const where = index === undefined ? 'add' : `add (record ${index})`;
  const bad = (why: string): never => {
    throw new StoreError('ERR_STORE_BAD_RECORD', `${where}: ${why}`);
  };
  if (!rec || typeof rec !== 'object') return bad('record must be an object');
  const str = (name: keyof NewRecord, allowEmpty = false): void => {
    const v = rec[name];
    if (typeof v !== 'string' || (!allowEmpty && v.length === 0)) bad(`${String(name)} must be a non-empty string`);
  };
  str('collection');
  str('id');
  str('type');
  str('specVersion');
  str('mediaType');
  str('hash');
  str('key', true);
  str('version', true);
  const sep = rec.id.indexOf('--');
  if (sep <= 0 || rec.id.slice(0, sep) !== rec.type) bad(`type ${JSON.stringify(rec.type)} does not match id ${JSON.stringify(rec.id)}`);
  if (!isStatus(rec.status)) bad(`status must be one of ${STATUSES.join(', ')}`);
  if (rec.statusReason !== undefined && typeof rec.statusReason !== 'string') bad('statusReason must be a string');
  if (!rec.object || typeof rec.object !== 'object' || Array.isArray(rec.object)) bad('object must be a JSON object');
  if (rec.statusIds !== undefined && (!Array.isArray(rec.statusIds) || !rec.statusIds.every((x) => typeof x === 'string' && x.length > 0))) {
    bad('statusIds must be a list of non-empty strings');
  }
  let vk: string | null = null;
  if (rec.version !== '') {
    vk = versionKey(rec.version);
    if (vk === null) bad(`version ${JSON.stringify(rec.version)} is not an RFC 3339 timestamp`);
  }
  let dateAdded: { text: string; us: number } | undefined;
  if (rec.dateAdded !== undefined) {
    const m = toMicros(rec.dateAdded);
    if (!m) return bad(`dateAdded ${JSON.stringify(rec.dateAdded)} is not an RFC 3339 timestamp`);
    dateAdded = m;
  }
  return { input: rec, vk, dateAdded };
}

/** The StoredRecord to keep for a prepared record once date_added is known. */
export function buildRecord(p: PreparedRecord, dateAdded: string, statusAt: string): StoredRecord {
  const r = p.input;
  const rec: StoredRecord = {
    collection: r.collection,
    id: r.id,
    type: r.type,
    version: r.version === '' ? dateAdded : r.version,
    specVersion: r.specVersion,
    dateAdded,
    mediaType: r.mediaType,
    object: r.object,
    hash: r.hash,
    key: r.key,
    status: r.status,
    statusAt,
  };
  if (r.statusReason !== undefined) rec.statusReason = r.statusReason;
  if (r.statusIds !== undefined && r.statusIds.length > 0) rec.statusIds = [...new Set(r.statusIds)];
  return rec;
}

/** The statuses a compare-and-set setStatus accepts (null = any); throws for an unknown status. */
export function expectedStatuses(expect: IntegrityStatus | readonly IntegrityStatus[] | undefined): Set<IntegrityStatus> | null {
  if (expect === undefined) return null;
  const list = typeof expect === 'string' ? [expect] : [...expect];
  if (!list.every(isStatus)) throw new StoreError('ERR_STORE_BAD_RECORD', `setStatus: expect must be among ${STATUSES.join(', ')}`);
  return new Set(list);
}

/** Name of a store-wide meta value: 1-200 characters. */
export function checkMetaName(name: string, initial: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) throw new StoreError('ERR_STORE_BAD_RECORD', 'getOrCreateMeta: name must be 1-200 characters');
  if (typeof initial !== 'string') throw new StoreError('ERR_STORE_BAD_RECORD', 'getOrCreateMeta: initial must be a string');
}

// ---------------------------------------------------------------------------------------------
// TAXII status resources kept as a header and one item per pending entry (Store.settleStatus)

/** How a pending entry's version is matched by settleStatus: the normalised instant, else the text. */
export function statusVersionKey(version: string): string {
  return normalised(version) ?? String(version);
}

/** A pending entry of a status resource as the stores keep it (`st` once settled). */
export interface StatusEntry {
  /** position among the resource's pendings as put */
  i: number;
  id: string;
  version: string;
  message?: string;
  /** settled: s = success, f = failure */
  st?: 's' | 'f';
  /** the settling message */
  m?: string;
}

/** The resource without its pendings (the header), and its pendings as entries. */
export function splitStatus(status: StatusResource): { header: StatusResource; entries: StatusEntry[] } {
  if (status.pendings !== undefined && !Array.isArray(status.pendings)) {
    throw new StoreError('ERR_STORE_BAD_RECORD', 'putStatus: pendings must be a list');
  }
  const { pendings, ...rest } = status;
  const entries = (pendings ?? []).map((d, i): StatusEntry => {
    if (!d || typeof d.id !== 'string' || typeof d.version !== 'string') {
      throw new StoreError('ERR_STORE_BAD_RECORD', `putStatus: pendings[${i}] must have a string id and version`);
    }
    const e: StatusEntry = { i, id: d.id, version: d.version };
    if (d.message !== undefined) e.message = d.message;
    return e;
  });
  return { header: JSON.parse(JSON.stringify(rest)) as StatusResource, entries };
}

/** Check a settleStatus call; returns the moves with their version keys. */
export function checkMoves(statusId: string, moves: readonly StatusMove[]): Array<StatusMove & { vk: string }> {
  if (typeof statusId !== 'string' || statusId.length === 0) throw new StoreError('ERR_STORE_BAD_RECORD', 'settleStatus: statusId must be a non-empty string');
  if (!Array.isArray(moves)) throw new StoreError('ERR_STORE_BAD_RECORD', 'settleStatus: moves must be a list');
  return moves.map((m, i) => {
    if (!m || typeof m.id !== 'string' || typeof m.version !== 'string' || (m.outcome !== 'success' && m.outcome !== 'failure') || typeof m.message !== 'string') {
      throw new StoreError('ERR_STORE_BAD_RECORD', `settleStatus: moves[${i}] must have a string id, version and message and an outcome of success or failure`);
    }
    return { ...m, vk: statusVersionKey(m.version) };
  });
}

/**
 * The resource from its header and entries (any order): unsettled entries are its pendings,
 * settled ones are appended to successes / failures in their pending order; the counts move by
 * what was settled (so counts the lists do not show are kept) and `status` follows pending_count.
 * Without settled entries the resource is exactly as put.
 */
export function assembleStatus(header: StatusResource, entries: readonly StatusEntry[]): StatusResource {
  const sorted = [...entries].sort((a, b) => a.i - b.i);
  const pendings: StatusDetail[] = [];
  const ok: StatusDetail[] = [];
  const bad: StatusDetail[] = [];
  for (const e of sorted) {
    if (e.st === undefined) {
      const d: StatusDetail = { id: e.id, version: e.version };
      if (e.message !== undefined) d.message = e.message;
      pendings.push(d);
    } else {
      const d: StatusDetail = { id: e.id, version: e.version };
      if (e.m !== undefined) d.message = e.m;
      (e.st === 's' ? ok : bad).push(d);
    }
  }
  const out: StatusResource = { ...header };
  delete out.pendings;
  if (pendings.length > 0) out.pendings = pendings;
  if (ok.length === 0 && bad.length === 0) return out;
  if (ok.length > 0) out.successes = [...(header.successes ?? []), ...ok];
  if (bad.length > 0) out.failures = [...(header.failures ?? []), ...bad];
  out.success_count = header.success_count + ok.length;
  out.failure_count = header.failure_count + bad.length;
  out.pending_count = Math.max(0, header.pending_count - ok.length - bad.length);
  if (pendings.length > out.pending_count) out.pending_count = pendings.length;
  out.status = out.pending_count > 0 ? 'pending' : 'complete';
  return out;
}
