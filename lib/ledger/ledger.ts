/**
 * The ledger abstraction of SETS (paper §4.3, "blockchain-specific adapters"): a write-once map
 * from a 32-byte key (derived from the object's metadata m_t) to a 32-byte hash h_t.
 *
 * Keys and hashes are 0x-prefixed, lower-case, 64-hex-digit strings (bytes32), as produced by
 * `lib/digest`. Adapters: `evm.ts` (ethers v6, Quorum/Besu/any EVM) and, later, `fabric.ts`.
 */

/** A (key, hash) pair to anchor. */
export interface AnchorEntry {
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
   * true when the key was already anchored with this very hash before this call (idempotent
   * re-anchor): nothing was written, `tx`/`block` describe the earlier write when known.
   */
  existing?: boolean;
}

/** What the ledger holds for a key. */
export interface LedgerRecord {
  key: string;
  hash: string;
  /** account (EVM address) or identity (Fabric MSP id + cert subject) that wrote it */
  writer: string;
  /** block timestamp, seconds since the epoch */
  timestamp: number;
}

/** Connection state, reported to the nodes for their status badges. */
export type LedgerState = 'connecting' | 'connected' | 'disconnected' | 'error';

export interface Ledger {
  /** Anchor one hash; resolves once the transaction is mined (or the key is found already holding this hash). */
  anchor(key: string, hash: string): Promise<AnchorReceipt>;
  /**
   * Anchor many; resolves once all are mined. Order of the result follows the input.
   * A key already anchored with the same hash is reported with `existing: true`;
   * a key already anchored with a *different* hash rejects with LedgerError code `KEY_TAKEN`.
   */
  anchorMany(entries: AnchorEntry[]): Promise<AnchorReceipt[]>;
  /** Read what is anchored for a key; null when nothing is. */
  lookup(key: string): Promise<LedgerRecord | null>;
  /**
   * Wait until the key is anchored (contract event, or polling), at most `timeoutMs`.
   * Resolves with the record; when the deadline passes, one final read decides: null when it
   * found nothing. Rejects (LedgerError UNREACHABLE, naming the RPC error) when the ledger cannot
   * be read at the start or for that final read — never null for "could not look".
   */
  waitForAnchor(key: string, timeoutMs: number): Promise<LedgerRecord | null>;
  /** Release connections, listeners and timers. Safe to call twice. */
  close(): Promise<void>;
  /** Current connection state. */
  readonly state: LedgerState;
  /** Subscribe to state changes; returns an unsubscribe function. */
  onState(listener: (state: LedgerState, detail?: string) => void): () => void;
}

export type LedgerErrorCode =
  | 'UNREACHABLE' // the node/peer does not answer within the timeout
  | 'KEY_TAKEN' // write-once: the key holds a different hash
  | 'NOT_AUTHORISED' // the signer is not an authorised writer
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
