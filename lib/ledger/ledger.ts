/**
 * The ledger abstraction of SETS (paper §4.3, "blockchain-specific adapters"): a write-once map
 * from a 32-byte key (derived from the object's metadata m_t) to a 32-byte hash h_t — one map per
 * writer, so that no writer can take a key from another (issue 11: key squatting).
 *
 * Who may vouch for what: writers are granted, by the registry admin, the right to write in a
 * *scope* — one TAXII collection (`collectionScope(collectionId)` in lib/digest) or every
 * collection (`ANY_SCOPE`). A write names its scope and the ledger refuses it unless the writer is
 * granted that scope. A read returns every anchor under a key, each flagged `entitled` when its
 * writer is, *now*, granted the scope asked about — and, when the read names the object's creator
 * (`identityTag(created_by_ref)` in lib/digest) and the admin has bound that identity to accounts,
 * is one of them. lib/verify decides from the entitled ones only (revoking withdraws a writer's word).
 *
 * Keys, scopes and hashes are 0x-prefixed, lower-case, 64-hex-digit strings (bytes32), as produced
 * by `lib/digest`. Adapters: `evm.ts` (ethers v6, Quorum/Besu/any EVM) and, later, `fabric.ts`.
 */

/** The scope "every collection": a writer granted it may write in any collection. */
export const ANY_SCOPE = '0x' + '0'.repeat(64);

const BYTES32 = /^0x[0-9a-fA-F]{64}$/;
const ZERO32 = '0x' + '0'.repeat(64);

/**
 * A key, hash, scope or identity tag checked and lower-cased, as every adapter takes it:
 * BAD_INPUT for anything but a 0x-prefixed 32-byte hex string, the zero hash, or ANY_SCOPE named
 * as the scope of a write.
 */
export function checkBytes32(v: unknown, what: 'key' | 'hash' | 'scope' | 'write scope' | 'identity'): string {
  if (typeof v !== 'string' || !BYTES32.test(v)) {
    throw new LedgerError('BAD_INPUT', `${what === 'write scope' ? 'scope' : what} must be a 0x-prefixed 32-byte hex string, got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  const s = v.toLowerCase();
  if (what === 'hash' && s === ZERO32) throw new LedgerError('BAD_INPUT', 'the zero hash cannot be anchored');
  if (what === 'write scope' && s === ANY_SCOPE) {
    throw new LedgerError('BAD_INPUT', 'an anchor names the scope of its collection (collectionScope(collectionId)), never ANY_SCOPE (the zero scope)');
  }
  return s;
}

/** anchor()/anchorMany() input checked and lower-cased (BAD_INPUT naming the entry), for every adapter. */
export function checkAnchorEntries(entries: unknown): AnchorEntry[] {
  if (!Array.isArray(entries)) throw new LedgerError('BAD_INPUT', 'anchorMany expects an array of {scope, key, hash}');
  return entries.map((e: unknown, i) => {
    if (typeof e !== 'object' || e === null) throw new LedgerError('BAD_INPUT', `entry ${i} is not a {scope, key, hash} object`);
    const r = e as Record<string, unknown>;
    return { scope: checkBytes32(r.scope, 'write scope'), key: checkBytes32(r.key, 'key'), hash: checkBytes32(r.hash, 'hash') };
  });
}

/** A (scope, key, hash) triple to anchor. */
export interface AnchorEntry {
  /** the collection scope the writer vouches in (never ANY_SCOPE: a write names its collection) */
  scope: string;
  key: string;
  hash: string;
}

/** Where an anchor landed. */
export interface AnchorReceipt {
  key: string;
  hash: string;
  /** transaction id (EVM tx hash / Fabric tx id) */
  tx: string;
  /** block number that included the transaction */
  block: number;
  /**
   * true when this writer had already anchored this very hash under the key before this call
   * (idempotent re-anchor): nothing was written, `tx`/`block` describe the earlier write when known.
   */
  existing?: boolean;
  /** the account that signed (EVM address, checksummed) */
  writer?: string;
  /**
   * When this anchor was queued (the call), sent (handed to the node) and mined (seen included
   * with the configured confirmations), epoch ms. With `existing: true` nothing was sent: `sent`
   * and `mined` are both the moment the earlier anchor was found.
   */
  timings?: AnchorTimings;
}

/** Epoch ms of an anchor's steps (AnchorReceipt.timings). */
export interface AnchorTimings {
  queued: number;
  sent: number;
  mined: number;
}

/** One question of a batched read (Ledger.lookupMany): the anchors under `key`, judged for `scope` (and creator `identity`). */
export interface LookupQuery {
  scope: string;
  key: string;
  identity?: string;
}

/** One anchor under a key: what one writer wrote. */
export interface LedgerRecord {
  key: string;
  hash: string;
  /** account (EVM address, checksummed) or identity (Fabric MSP id + cert subject) that wrote it */
  writer: string;
  /** block timestamp, seconds since the epoch */
  timestamp: number;
  /**
   * true when the writer is granted, now, the scope the read asked about (or ANY_SCOPE) and, when
   * the read named a creator identity bound to accounts, is bound to it — this anchor counts.
   */
  entitled: boolean;
  /** block number of the write, when known */
  block?: number;
}

/** Where a signing account may write. */
export interface WriterStatus {
  account: string;
  /** granted ANY_SCOPE (every collection) */
  anyScope: boolean;
  /** granted the scope asked about (true when anyScope) */
  inScope: boolean;
}

/** Connection state, reported to the nodes for their status badges. */
export type LedgerState = 'connecting' | 'connected' | 'disconnected' | 'error';

export interface Ledger {
  /**
   * Anchor one hash in a scope; resolves once the transaction is mined (or this writer is found
   * to hold this very hash under the key already). A writer not granted the scope → NOT_AUTHORISED.
   */
  anchor(scope: string, key: string, hash: string): Promise<AnchorReceipt>;
  /**
   * Anchor many; resolves once all are mined. Order of the result follows the input.
   * A key this writer already anchored with the same hash is reported with `existing: true`;
   * with a *different* hash the call rejects with LedgerError code `KEY_TAKEN` (nothing written).
   * Other writers' anchors under the same key never block a write.
   */
  anchorMany(entries: AnchorEntry[]): Promise<AnchorReceipt[]>;
  /**
   * Every anchor under `key` (any writer), `entitled` judged for `scope` and, when given, the
   * creator's identity tag; [] when there is none.
   */
  lookup(scope: string, key: string, identity?: string): Promise<LedgerRecord[]>;
  /**
   * `lookup` for many queries at once (one read where the ledger can batch), results in query
   * order. Optional: callers fall back to `lookup` per query when a ledger does not offer it.
   */
  lookupMany?(queries: LookupQuery[]): Promise<LedgerRecord[][]>;
  /**
   * Wait until an *entitled* anchor exists under `key` for `scope` (contract event, or polling),
   * at most `timeoutMs`. Resolves with every anchor under the key (as `lookup`); when the deadline
   * passes, one final read decides — possibly [] or only anchors that are not entitled. Rejects
   * (LedgerError UNREACHABLE, naming the RPC error) when the ledger cannot be read at the start or
   * for that final read — never [] for "could not look".
   */
  waitForAnchor(scope: string, key: string, timeoutMs: number, identity?: string): Promise<LedgerRecord[]>;
  /** Where the signing account may write (`scope` defaults to ANY_SCOPE). Throws BAD_CONFIG without a signer. */
  writerStatus(scope?: string): Promise<WriterStatus>;
  /** Release connections, listeners and timers. Safe to call twice. */
  close(): Promise<void>;
  /** Current connection state. */
  readonly state: LedgerState;
  /** Subscribe to state changes; returns an unsubscribe function. */
  onState(listener: (state: LedgerState, detail?: string) => void): () => void;
}

export type LedgerErrorCode =
  | 'UNREACHABLE' // the node/peer does not answer within the timeout
  | 'KEY_TAKEN' // write-once: this writer already anchored a different hash under the key
  | 'NOT_AUTHORISED' // the signer is not granted the scope (collection) it writes in
  | 'TX_FAILED' // reverted / not mined / dropped
  | 'TIMEOUT' // waited longer than configured
  | 'BAD_CONFIG' // configuration cannot work (bad key, bad address, wrong chain)
  | 'BAD_INPUT'; // key or hash not a bytes32 hex string

export class LedgerError extends Error {
  readonly code: LedgerErrorCode;
  readonly key?: string;
  constructor(code: LedgerErrorCode, message: string, opts: { key?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'LedgerError';
    this.code = code;
    this.key = opts.key;
  }
}
