/**
 * Storage of CTI records for the TAXII server (paper §4.2 "backend plugins"), with the SETS
 * integrity status of every record. Two implementations share one conformance suite
 * (test/store/conformance.ts): `embedded.ts` (default, classic-level/LevelDB under the Node-RED
 * user dir) and `mongo.ts` (official MongoDB driver).
 *
 * Scale rule (DESIGN.md §3): every query runs on an index and pages by cursor range — nothing
 * loads a whole collection into memory. A collection of 1,000,000 objects pages as fast as 1,000.
 */
import type { StixObject } from '../stix';

/** SETS integrity status of a stored record (DESIGN.md §3). */
export type IntegrityStatus = 'pending' | 'finalized' | 'invalid';

export interface StoredRecord {
  collection: string;
  /** STIX id */
  id: string;
  /** STIX type (the part of the id before `--`) */
  type: string;
  /** object version: normalised `modified`, else `created`, else the date_added (lib/digest normaliseTimestamp form) */
  version: string;
  /** `spec_version` of the object (`2.1`; `2.0` when absent on an SDO/SRO) */
  specVersion: string;
  /** TAXII date_added: RFC 3339 UTC with microseconds, unique and strictly increasing per store */
  dateAdded: string;
  /** media type of the object, `application/stix+json;version=2.1` */
  mediaType: string;
  /** the STIX object exactly as received */
  object: StixObject;
  /** h_t = H(object) as computed at admission (lib/digest hashObject) */
  hash: string;
  /** ledger key k = key(collection, id, version) */
  key: string;
  status: IntegrityStatus;
  /** why it is `invalid` (or what it is waiting for while `pending`) */
  statusReason?: string;
  /** when the status last changed, RFC 3339 */
  statusAt: string;
  /**
   * TAXII status resources that listed this version among their `pendings` when it was added:
   * the persisted record -> status index, so that a verdict recorded after a restart, on another
   * instance or by a recovery sweep still moves the object in its status resource(s).
   */
  statusIds?: string[];
}

/** Values of TAXII `match[version]`: keywords or explicit version timestamps. */
export type VersionMatch = 'first' | 'last' | 'all' | string;

export interface RecordQuery {
  collection: string;
  /** date_added strictly later than this (TAXII µs timestamp) */
  addedAfter?: string;
  /** match[id] (OR) */
  ids?: string[];
  /** match[type] (OR) */
  types?: string[];
  /** match[version]; default ['last'] */
  versions?: VersionMatch[];
  /** match[spec_version]; default: only the latest spec version of each object */
  specVersions?: string[];
  /** include records whose status is `invalid` (default false: they are never served) */
  includeInvalid?: boolean;
  /** restrict to these statuses (used by integrity-status queries) */
  statuses?: IntegrityStatus[];
  /** page size (the server caps it) */
  limit: number;
  /**
   * opaque position returned as `Page.cursor` by the previous page of the same query:
   * the next page starts strictly after it.
   */
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  /** true when at least one more record matches after the last item */
  more: boolean;
  /**
   * position to pass as `cursor` for the next page: after the last item, or — when a bounded scan
   * stopped early (embedded store `maxScanEntries`, MongoDB store `maxScanDocuments` / `queryMaxTimeMS`) — after the last entry examined, so a page may
   * be empty with `more: true` and a cursor. Absent when nothing was returned or examined.
   */
  cursor?: string;
}

export type AddOutcome =
  /** stored as a new version */
  | { outcome: 'added'; record: StoredRecord }
  /** the identical version (same id, version and hash) is already stored: nothing written */
  | { outcome: 'duplicate'; record: StoredRecord }
  /** a different object already uses this id and version: nothing written */
  | { outcome: 'conflict'; record: StoredRecord };

/** A TAXII status resource, kept in the store so any instance behind a load balancer can answer. */
export interface StatusDetail {
  id: string;
  version: string;
  message?: string;
}
export interface StatusResource {
  id: string;
  status: 'pending' | 'complete';
  request_timestamp: string;
  total_count: number;
  success_count: number;
  successes?: StatusDetail[];
  failure_count: number;
  failures?: StatusDetail[];
  pending_count: number;
  pendings?: StatusDetail[];
  /**
   * Not a TAXII property (never sent): the identity that created it (`<scheme>:<name>`, lib/taxii/server.ts);
   * only that caller may read it. Absent on statuses written before owners were recorded.
   */
  owner?: string;
}

/** Options of Store.setStatus. */
export interface SetStatusOptions {
  /**
   * Compare-and-set: write only if the version's current status is this one (or one of these);
   * otherwise nothing is written and setStatus resolves false. Atomic in every driver, so two
   * concurrent verdicts cannot both apply, and `invalid` (final) cannot be overwritten by a
   * verdict decided on an older read.
   */
  expect?: IntegrityStatus | readonly IntegrityStatus[];
}

/**
 * One move of Store.settleStatus: the pending entries of a status resource naming this object
 * version (version compared as an instant, lib/digest normaliseTimestamp; as text when it is not a
 * timestamp) go to `successes` or `failures` with this message.
 */
export interface StatusMove {
  id: string;
  version: string;
  outcome: 'success' | 'failure';
  message: string;
}

export interface StatusCounts {
  pending: number;
  finalized: number;
  invalid: number;
}

export interface Store {
  /** Open files/connections and create indexes. Idempotent. */
  open(): Promise<void>;
  close(): Promise<void>;

  /**
   * Add one version. `dateAdded` is assigned by the store (strictly increasing µs timestamps)
   * unless given. Status starts as given (normally `pending`).
   * `version: ''` marks an unversioned object (no modified/created, e.g. an SCO): the store uses
   * the assigned date_added as its version, and a re-add with the same hash is a `duplicate`.
   * Throws StoreError (lib/store/errors) `ERR_STORE_BAD_RECORD` for a malformed record.
   */
  add(rec: Omit<StoredRecord, 'dateAdded' | 'statusAt'> & { dateAdded?: string }): Promise<AddOutcome>;

  /**
   * add() for many records in one atomic write (one outcome per record, same order). Records of
   * the same object are applied in order. Use it for a POSTed envelope.
   */
  addMany(recs: Array<Omit<StoredRecord, 'dateAdded' | 'statusAt'> & { dateAdded?: string }>): Promise<AddOutcome[]>;

  /** One version (or, without version, the latest version) of an object; null when absent. */
  get(collection: string, id: string, version?: string): Promise<StoredRecord | null>;

  /**
   * Records matching a TAXII query, ascending by date_added, one page. Throws StoreError
   * `ERR_STORE_BAD_QUERY` (bad limit / timestamp) or `ERR_STORE_BAD_CURSOR` (-> TAXII 400).
   */
  query(q: RecordQuery): Promise<Page<StoredRecord>>;

  /**
   * Set the integrity status of one version. Returns false when that version is not stored, or
   * (with `opts.expect`) when its current status is not the expected one — then nothing is written.
   */
  setStatus(collection: string, id: string, version: string, status: IntegrityStatus, reason?: string, opts?: SetStatusOptions): Promise<boolean>;

  /**
   * Erase versions of an object (right to be forgotten): all of them, or those matching
   * `versions` / `specVersions`. Returns how many were erased. The data is gone from the store;
   * the ledger keeps only the hash.
   */
  delete(collection: string, id: string, filter?: { versions?: VersionMatch[]; specVersions?: string[] }): Promise<number>;

  /** Counts per integrity status (optionally of one collection). */
  counts(collection?: string): Promise<StatusCounts>;

  /**
   * A store-wide named value (e.g. the TAXII server's generated next-token secret): the stored one,
   * or — when there is none yet — `initial`, stored atomically, so every instance sharing the store
   * gets the same value whichever creates it first. Survives restarts.
   */
  getOrCreateMeta(name: string, initial: string): Promise<string>;

  /**
   * TAXII status resources. putStatus writes (or replaces) one whole resource and renews its
   * retention; its `pendings` are kept as one small item each, so settleStatus moves them without
   * reading or rewriting the resource. getStatus assembles the resource as put, with the settled
   * entries moved (appended to `successes` / `failures` in the order they were listed as pending)
   * and the counts and `status` adjusted: counts the caller gave that the lists do not show (e.g.
   * failures summarised past a bound) are kept. Readable until the retention after the last
   * putStatus / settleStatus that changed it; then null.
   */
  putStatus(status: StatusResource): Promise<void>;
  getStatus(id: string): Promise<StatusResource | null>;
  /**
   * Move entries of one status resource from `pendings` (Store.putStatus) to `successes` /
   * `failures`. Cost per move independent of the resource's size. One result per move, same order:
   * true when at least one pending entry moved; false when none was pending any more (already
   * settled), the version is not listed, or the resource is unknown or expired. Atomic per entry:
   * two stores (instances) settling the same entry concurrently move it once.
   */
  settleStatus(statusId: string, moves: readonly StatusMove[]): Promise<boolean[]>;
}
