/**
 * EVM ledger adapter (ethers v6): anchors (scope, key, hash) triples in the SetsRegistry contract
 * (contracts/evm/SetsRegistry.sol, version 2: one anchor per writer and key, writers granted per
 * collection scope, producer identities optionally bound to accounts) on Quorum, Besu, hardhat or
 * any EVM JSON-RPC node.
 *
 * - Writes go through the account's single pipelined send queue (evm-sender.ts): locally
 *   signed raw transactions in nonce order, bounded in flight, receipts found by one loop per
 *   new block. `anchor()` may be called hundreds of times concurrently.
 * - Coalescing (`coalesceMs`, default 20; 0 = off): concurrent anchor()/anchorMany() calls
 *   arriving within the window (or until `maxBatchSize` entries wait) share one pre-read and one
 *   writeCTIHashes transaction; each caller still gets its own receipts or error — a caller's
 *   KEY_TAKEN (found by the pre-read) fails that caller only, and a batch transaction that
 *   reverts is re-sent caller by caller, so one caller never fails another. A call naming a key
 *   that an earlier call in the window writes goes after that one's batch (a repeat then reads
 *   `existing: true`, another hash KEY_TAKEN). Concurrent reads
 *   (lookup, waits) within the window become one readCTIRecordsMany eth_call.
 * - Before sending, this writer's own record under every key is read (readCTIRecord(key, self)):
 *   the same hash → `existing: true` (nothing sent, whatever scope it named), another → KEY_TAKEN
 *   (nothing sent); and the account's grant of every scope written is checked (NOT_AUTHORISED,
 *   nothing sent). Other writers' anchors never matter. A reverted write is explained (KEY_TAKEN,
 *   NOT_AUTHORISED, out of gas, …) from the chain's state.
 * - `lookup` returns every anchor under a key with its `entitled` flag, judged by the contract
 *   for the scope asked about and the creator's identity tag, if given (readCTIRecords).
 * - `waitForAnchor` shares one new-block subscription (WebSocket `newHeads` when `wsUrl` is
 *   set, polling otherwise) among all waiters; each new block range is searched once with
 *   `eth_getLogs` for the awaited keys' `CTIHashWritten` events, so nothing is missed between
 *   blocks and no listener outlives its waiter. Any anchor under the key wakes its waiters; each
 *   resolves only once an anchor *entitled* for its scope (and creator identity) is there.
 * - Configuration is explicit: chain id (checked against the node), transaction type, fees and
 *   gas limits (free-gas Quorum/Besu: `txType: 0, gasPrice: 0`).
 */
import { Interface, SigningKey, getAddress, toQuantity, zeroPadValue, type Result } from 'ethers';
import {
  ANY_SCOPE,
  checkAnchorEntries,
  checkBytes32 as bytes32,
  LedgerError,
  type AnchorEntry,
  type AnchorReceipt,
  type Ledger,
  type LedgerRecord,
  type LookupQuery,
  type LedgerState,
  type WriterStatus,
} from './ledger';
import { ChainClient, NodeError } from './evm-rpc';
import { acquireSender, releaseSender, type AccountSender, type FeeSettings, type MinedTx } from './evm-sender';

/** Wei amounts: bigint, integer number, or decimal string (as config UIs store them). */
export type Wei = bigint | number | string;

export interface EvmLedgerConfig {
  /** JSON-RPC endpoint, http(s) or ws(s) */
  rpcUrl: string;
  /** WebSocket endpoint for new-block events (defaults to rpcUrl when that is ws(s)) */
  wsUrl?: string;
  /** SetsRegistry contract address */
  address: string;
  /** expected chain id; the node's must match (else BAD_CONFIG) */
  chainId: number | bigint | string;
  /** signing key (0x + 64 hex); without it the ledger is read-only */
  privateKey?: string;
  /** transaction type: 0 legacy (default; free-gas Quorum) or 2 EIP-1559 */
  txType?: 0 | 2;
  /** type 0 gas price in wei (default: the node's eth_gasPrice + 25 %) */
  gasPrice?: Wei;
  /** type 2 fee cap in wei (default: 2 × base fee + tip) */
  maxFeePerGas?: Wei;
  /** type 2 tip in wei (default: the node's eth_maxPriorityFeePerGas, else 0) */
  maxPriorityFeePerGas?: Wei;
  /**
   * gas limit of one writeCTIHash transaction (default 150000; measured on hardhat: ~74800 for the
   * first anchor of a key, ~101500 for a second writer's, which joins a list)
   */
  gasLimit?: number;
  /** gas limit of a writeCTIHashes transaction = batchGasBase + n × gasPerBatchItem */
  batchGasBase?: number;
  /**
   * (defaults 60000 and 80000; measured per entry: ~49300 for first anchors of their keys, ~75900
   * when another writer anchored the key first — the default covers that worst case)
   */
  gasPerBatchItem?: number;
  /**
   * entries per writeCTIHashes transaction; anchorMany splits larger arrays (default 150: its
   * gas limit, 12.06 M, stays under the EIP-7825 transaction gas cap of 2^24 = 16.78 M that
   * current nodes enforce, and under common block gas limits; ~7.4 M used for first anchors)
   */
  maxBatchSize?: number;
  /** blocks on top of the including block before an anchor resolves (default 1 = mined) */
  confirmations?: number;
  /** deadline of each JSON-RPC request, ms (default 10000) */
  requestTimeoutMs?: number;
  /** new-block polling interval, ms (default 500) */
  waitPollMs?: number;
  /** sent-but-unmined transactions allowed per account (default 64) */
  maxInFlight?: number;
  /**
   * anchor deadline, ms (default 120000): how long an anchor may take from submission until
   * mined — node outages and re-broadcasts included — before it fails with TIMEOUT (UNREACHABLE
   * when the node does not answer at that moment) naming the key
   */
  txTimeoutMs?: number;
  /** a sent transaction the node no longer holds (dropped, node restarted) is re-broadcast after this long, ms (default 3000) */
  rebroadcastAfterMs?: number;
  /** background connection probe while idle, ms (default 15000; 0 = none) */
  healthCheckMs?: number;
  /**
   * coalescing window, ms (default 20; 0 = off): concurrent anchors within it share one batch
   * transaction (at most maxBatchSize entries; a full batch goes at once), concurrent reads one
   * eth_call
   */
  coalesceMs?: number;
  /** queries per readCTIRecordsMany call (default 200) */
  readBatchSize?: number;
  /**
   * read what this writer holds under the keys before sending (default true): a repeat is answered
   * `existing` and another hash KEY_TAKEN without a transaction. false: batches go out unread —
   * the contract skips identical repeats itself, and a batch that reverts (another hash under a
   * key) is sent again call by call *with* the pre-read, so results and guarantees are the same;
   * the cost of a conflict is one reverted transaction. Saves a read per batch where the node's
   * EVM is slow to answer it (hardhat).
   */
  precheck?: boolean;
  /**
   * told about settings that cannot apply (another connection with the same key and node set the
   * account's maxInFlight / rebroadcastAfterMs differently, a registry without readCTIRecordsMany);
   * default: process.emitWarning
   */
  onWarning?: (message: string) => void;
}

/** The contract interface the adapter uses (checked against the compiled artifact by the tests). */
export const REGISTRY_ABI = [
  'constructor(address[] writers, bytes32[] scopes)',
  'function ANY_SCOPE() view returns (bytes32)',
  'function admin() view returns (address)',
  'function pendingAdmin() view returns (address)',
  'function isWriterFor(bytes32, address) view returns (bool)',
  'function grantsOf(address) view returns (uint256)',
  'function canWrite(bytes32 scope, address account) view returns (bool)',
  'function writeCTIHash(bytes32 scope, bytes32 key, bytes32 hash)',
  'function writeCTIHashes(bytes32[] scopes, bytes32[] keys, bytes32[] hashes)',
  'function isEntitled(bytes32 scope, bytes32 identity, address account) view returns (bool)',
  'function isBoundTo(bytes32, address) view returns (bool)',
  'function bindingsOf(bytes32) view returns (uint256)',
  'function readCTIRecords(bytes32 scope, bytes32 identity, bytes32 key) view returns (address[] writers, bytes32[] hashes, uint64[] timestamps, uint32[] blocks, bool[] entitled)',
  'function readCTIRecord(bytes32 key, address writer) view returns (bytes32 hash, uint64 timestamp, uint32 blockNumber)',
  'function readCTIRecordsMany(bytes32[] scopes, bytes32[] identities, bytes32[] keys) view returns (uint256[] counts, tuple(address writer, bytes32 hash, uint64 timestamp, uint32 blockNumber, bool entitled)[] records)',
  'function grantWriter(address account, bytes32 scope)',
  'function revokeWriter(address account, bytes32 scope)',
  'function bindIdentity(bytes32 identity, address account)',
  'function unbindIdentity(bytes32 identity, address account)',
  'function proposeAdmin(address proposed)',
  'function acceptAdmin()',
  'event CTIHashWritten(bytes32 indexed key, bytes32 indexed scope, bytes32 hash, address indexed writer)',
  'event WriterGranted(address indexed account, bytes32 indexed scope)',
  'event WriterRevoked(address indexed account, bytes32 indexed scope)',
  'event IdentityBound(bytes32 indexed identity, address indexed account)',
  'event IdentityUnbound(bytes32 indexed identity, address indexed account)',
  'event AdminProposed(address indexed admin, address indexed proposed)',
  'event AdminTransferred(address indexed previousAdmin, address indexed newAdmin)',
  'error KeyTaken(bytes32 key, address writer)',
  'error NotWriter(address account, bytes32 scope)',
  'error NotAdmin(address account)',
  'error NotPendingAdmin(address account)',
  'error ZeroHash(bytes32 key)',
  'error ZeroScope()',
  'error LengthMismatch()',
  'error ZeroAddress()',
] as const;

export const registryInterface = new Interface(REGISTRY_ABI);
const WRITTEN_TOPIC = registryInterface.getEvent('CTIHashWritten')?.topicHash as string;
const ZERO32 = '0x' + '0'.repeat(64);
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;
/** the scope the pre-read of anchors names: entitlement does not matter there, only who wrote */
const S_PRECHECK = '0x' + '0'.repeat(63) + '1';
const LOG_RANGE = 1000;
const KEY_FILTER_MAX = 64;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const short = (h: string) => `${h.slice(0, 10)}…`;

/** An anchor entry with its parts checked and lower-cased. */
interface Entry {
  scope: string;
  key: string;
  hash: string;
}

/** What one writer holds under a key (readCTIRecord). */
interface Held {
  hash: string;
  block: number;
}

/** Parse a wei amount from config. */
export function toWei(v: Wei | undefined, what: string): bigint | undefined {
  if (v === undefined || v === '') return undefined;
  try {
    const b = typeof v === 'bigint' ? v : BigInt(typeof v === 'number' ? Math.trunc(v) : v.trim());
    if (b < 0n) throw new Error('negative');
    return b;
  } catch {
    throw new LedgerError('BAD_CONFIG', `${what} must be a non-negative integer amount of wei, got ${String(v)}`);
  }
}

function positiveInt(v: number | undefined, dflt: number, what: string, min = 1): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min) throw new LedgerError('BAD_CONFIG', `${what} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

export function parseChainId(v: unknown): bigint {
  try {
    const b = BigInt(typeof v === 'string' ? v.trim() : (v as number | bigint));
    if (b <= 0n) throw new Error('not positive');
    return b;
  } catch {
    throw new LedgerError('BAD_CONFIG', `chainId must be a positive integer, got ${String(v)}`);
  }
}

export function checkUrl(v: unknown, what: string): string {
  if (typeof v !== 'string' || !/^(https?|wss?):\/\/./i.test(v)) {
    throw new LedgerError('BAD_CONFIG', `${what} must be an http(s):// or ws(s):// URL, got ${String(v)}`);
  }
  try {
    new URL(v);
  } catch {
    throw new LedgerError('BAD_CONFIG', `${what} is not a valid URL: ${v}`);
  }
  return v;
}

export function checkPrivateKey(v: unknown): string {
  if (typeof v !== 'string' || !BYTES32.test(v.startsWith('0x') ? v : `0x${v}`)) {
    throw new LedgerError('BAD_CONFIG', 'privateKey must be 32 bytes of hex (0x + 64 hex digits)');
  }
  const k = v.startsWith('0x') ? v : `0x${v}`;
  try {
    new SigningKey(k);
  } catch {
    throw new LedgerError('BAD_CONFIG', 'privateKey is not a valid secp256k1 key');
  }
  return k;
}

/** Explain revert data with the registry's custom errors (or Error(string) / Panic). */
export function decodeRevert(data: string | undefined): string {
  if (!data || data === '0x') return 'reverted without a reason';
  try {
    const e = registryInterface.parseError(data);
    if (e) return `${e.name}(${e.args.map((a: unknown) => String(a)).join(', ')})`;
  } catch {
    // not one of ours
  }
  return `reverted with data ${data.slice(0, 138)}`;
}

function hexNum(v: unknown, what: string): number {
  if (typeof v !== 'string' || !/^0x[0-9a-fA-F]+$/.test(v)) throw new LedgerError('TX_FAILED', `bad ${what} from node: ${String(v)}`);
  return Number(BigInt(v));
}

/**
 * Block timestamps in seconds. GoQuorum Raft reports nanoseconds: values beyond year ~5000 in
 * seconds are taken as nanoseconds.
 */
function seconds(ts: bigint): number {
  return Number(ts > 100_000_000_000_000n ? ts / 1_000_000_000n : ts);
}

/** A read waiting in the coalescing window. */
interface ReadReq {
  scope: string;
  key: string;
  identity: string;
  resolve: (r: LedgerRecord[]) => void;
  reject: (e: unknown) => void;
}

/** One anchor()/anchorMany() call, alone or coalesced with others into shared transactions. */
interface AnchorCall {
  /** the input, in order (receipts follow it) */
  input: Entry[];
  /** one entry per key */
  list: Entry[];
  queued: number;
  done: Map<string, AnchorReceipt>;
  finished: boolean;
  /** held back until the batch it conflicts with (another hash under one of its keys) is settled */
  blocked: boolean;
  resolve: (r: AnchorReceipt[]) => void;
  reject: (e: LedgerError) => void;
}

/**
 * Decode readCTIRecordsMany's answer: (uint256[] counts, (address, bytes32, uint64, uint32, bool)[]
 * records), both arrays of static words — read straight from the hex (a generic ABI decoder spends
 * about as long on 200 records as the node spends answering). Null when the data is not shaped so.
 */
function decodeReadMany(hex: string, queries: number): { counts: number[]; records: Array<Omit<LedgerRecord, 'key'>> } | null {
  if (!/^0x([0-9a-fA-F]{64})*$/.test(hex)) return null;
  const h = hex.slice(2);
  const words = h.length / 64;
  const word = (i: number) => h.slice(i * 64, i * 64 + 64);
  const small = (i: number): number | null => {
    if (i >= words) return null;
    const w = word(i);
    return /^0{48}/.test(w) ? parseInt(w.slice(48), 16) : null;
  };
  const oc = small(0);
  const or = small(1);
  if (oc === null || or === null || oc % 32 !== 0 || or % 32 !== 0) return null;
  const c0 = oc / 32;
  const r0 = or / 32;
  const n = small(c0);
  const m = small(r0);
  if (n !== queries || m === null || c0 + 1 + n > words || r0 + 1 + m * 5 > words) return null;
  const counts: number[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const c = small(c0 + 1 + i);
    if (c === null) return null;
    counts.push(c);
    total += c;
  }
  if (total !== m) return null;
  const checksummed = new Map<string, string>();
  const records: Array<Omit<LedgerRecord, 'key'>> = [];
  for (let r = 0; r < m; r++) {
    const b = r0 + 1 + r * 5;
    const raw = '0x' + word(b).slice(24);
    let writer = checksummed.get(raw);
    if (writer === undefined) checksummed.set(raw, (writer = getAddress(raw)));
    const block = small(b + 3);
    if (block === null) return null;
    records.push({
      hash: ('0x' + word(b + 1)).toLowerCase(),
      writer,
      timestamp: seconds(BigInt('0x' + word(b + 2))),
      entitled: BigInt('0x' + word(b + 4)) !== 0n,
      block,
    });
  }
  return { counts, records };
}

interface Waiter {
  key: string;
  scope: string;
  /** creator identity tag (ZERO32: none) */
  identity: string;
  timeoutMs: number;
  resolve: (r: LedgerRecord[]) => void;
  reject: (e: LedgerError) => void;
  timer: NodeJS.Timeout;
  done: boolean;
}

export class EvmLedger implements Ledger {
  readonly address: string;
  readonly chainId: bigint;
  /** the signing account, when a private key is configured */
  readonly account?: string;
  private readonly client: ChainClient;
  private readonly sender?: AccountSender;
  private readonly fees: FeeSettings;
  private readonly gasLimit: bigint;
  private readonly batchGasBase: bigint;
  private readonly gasPerItem: bigint;
  private readonly maxBatch: number;
  private readonly confirmations: number;
  private readonly coalesceMs: number;
  private readonly precheck: boolean;
  private readonly readBatch: number;
  private readonly txTimeoutMs: number;
  private readonly warn: (message: string) => void;
  /** the registry has no readCTIRecordsMany (deployed before it): reads go one by one */
  private noReadMany = false;
  private readQueue: ReadReq[] = [];
  private readTimer: NodeJS.Timeout | null = null;
  private anchorQueue: AnchorCall[] = [];
  private anchorQueued = 0;
  private anchorTimer: NodeJS.Timeout | null = null;
  /** numbers for tests and diagnostics: eth_calls of reads, transactions of anchors */
  private counters = { reads: 0, readCalls: 0, anchorTxs: 0 };

  private fatal: LedgerError | null = null;
  private initP: Promise<void> | null = null;
  private closed = false;
  private stateListeners = new Set<(s: LedgerState, detail?: string) => void>();
  /** scope → until when this account is known to be granted it (checked before sending) */
  private writerOkUntil = new Map<string, number>();
  private writerChecks = new Map<string, Promise<void>>();

  private waiters = new Map<string, Set<Waiter>>();
  private watchFrom: number | null = null;
  private watchStarting: Promise<void> | null = null;
  private unwatch: (() => void) | null = null;
  private watchError: LedgerError | null = null;
  private watchScanning = false;
  private watchRescan = false;

  /** Throws LedgerError BAD_CONFIG for configuration that cannot work; connects lazily. */
  constructor(config: EvmLedgerConfig) {
    if (!isRecord(config)) throw new LedgerError('BAD_CONFIG', 'EVM ledger configuration missing');
    const rpcUrl = checkUrl(config.rpcUrl, 'rpcUrl');
    const wsUrl = config.wsUrl ? checkUrl(config.wsUrl, 'wsUrl') : undefined;
    if (wsUrl && !/^wss?:/i.test(wsUrl)) throw new LedgerError('BAD_CONFIG', `wsUrl must be a ws(s):// URL, got ${wsUrl}`);
    try {
      this.address = getAddress(String(config.address));
    } catch {
      throw new LedgerError('BAD_CONFIG', `address must be the registry's 0x… contract address, got ${String(config.address)}`);
    }
    this.chainId = parseChainId(config.chainId);
    const txType = config.txType ?? 0;
    if (txType !== 0 && txType !== 2) throw new LedgerError('BAD_CONFIG', `txType must be 0 or 2, got ${String(txType)}`);
    this.fees = {
      type: txType,
      gasPrice: toWei(config.gasPrice, 'gasPrice'),
      maxFeePerGas: toWei(config.maxFeePerGas, 'maxFeePerGas'),
      maxPriorityFeePerGas: toWei(config.maxPriorityFeePerGas, 'maxPriorityFeePerGas'),
    };
    this.gasLimit = BigInt(positiveInt(config.gasLimit, 150_000, 'gasLimit', 21_000));
    this.batchGasBase = BigInt(positiveInt(config.batchGasBase, 60_000, 'batchGasBase', 21_000));
    this.gasPerItem = BigInt(positiveInt(config.gasPerBatchItem, 80_000, 'gasPerBatchItem'));
    this.maxBatch = positiveInt(config.maxBatchSize, 150, 'maxBatchSize');
    this.confirmations = positiveInt(config.confirmations, 1, 'confirmations');
    const requestTimeoutMs = positiveInt(config.requestTimeoutMs, 10_000, 'requestTimeoutMs');
    const waitPollMs = positiveInt(config.waitPollMs, 500, 'waitPollMs');
    const maxInFlight = positiveInt(config.maxInFlight, 64, 'maxInFlight');
    const txTimeoutMs = positiveInt(config.txTimeoutMs, 120_000, 'txTimeoutMs');
    const rebroadcastAfterMs = positiveInt(config.rebroadcastAfterMs, 3000, 'rebroadcastAfterMs', 100);
    const healthCheckMs = positiveInt(config.healthCheckMs, 15_000, 'healthCheckMs', 0);
    const privateKey = config.privateKey ? checkPrivateKey(config.privateKey) : undefined;
    this.coalesceMs = positiveInt(config.coalesceMs, 20, 'coalesceMs', 0);
    this.readBatch = positiveInt(config.readBatchSize, 200, 'readBatchSize');
    if (config.precheck !== undefined && typeof config.precheck !== 'boolean') throw new LedgerError('BAD_CONFIG', `precheck must be true or false, got ${String(config.precheck)}`);
    this.precheck = config.precheck ?? true;
    this.txTimeoutMs = txTimeoutMs;
    if (config.onWarning !== undefined && typeof config.onWarning !== 'function') throw new LedgerError('BAD_CONFIG', 'onWarning must be a function');
    this.warn = config.onWarning ?? ((m: string) => process.emitWarning(m, 'SetsLedgerWarning'));

    this.client = new ChainClient({ rpcUrl, wsUrl, chainId: this.chainId, requestTimeoutMs, waitPollMs, healthCheckMs });
    this.client.onState((s, d) => {
      if (this.fatal) return;
      if (s === 'connected' && this.watchError) this.emitState('error', this.watchDetail());
      else this.emitState(s, d);
    });
    if (privateKey) {
      this.sender = acquireSender(this.client, privateKey, { maxInFlight, txTimeoutMs, rebroadcastAfterMs }, (m) => this.warn(m));
      this.account = this.sender.address;
    }
    this.client.startHealth();
    this.ready().catch(() => undefined); // connect early; failures surface through state and calls
  }

  /**
   * `error` for a configuration that cannot work, and while the search for awaited anchors
   * fails although the node answers (e.g. `eth_getLogs` refused): waiters would then only be
   * settled by their final read, so the badge must not say `connected`.
   */
  get state(): LedgerState {
    if (this.fatal) return 'error';
    const s = this.client.state;
    return s === 'connected' && this.watchError ? 'error' : s;
  }

  private watchDetail(): string {
    return `searching new blocks for anchors fails: ${this.watchError?.message ?? ''}`;
  }

  /** Note (or clear) a failing anchor search, and tell the state listeners. */
  private setWatchError(e: LedgerError | null): void {
    const had = this.watchError;
    this.watchError = e;
    if (this.fatal || this.closed) return;
    if (e && (!had || had.message !== e.message)) {
      if (this.client.state === 'connected') this.emitState('error', this.watchDetail());
    } else if (!e && had) {
      this.emitState(this.client.state);
    }
  }

  onState(listener: (state: LedgerState, detail?: string) => void): () => void {
    this.stateListeners.add(listener);
    return () => {
      this.stateListeners.delete(listener);
    };
  }

  private emitState(s: LedgerState, detail?: string): void {
    for (const l of [...this.stateListeners]) {
      try {
        l(s, detail);
      } catch {
        // not ours to handle
      }
    }
  }

  /** Numbers for tests and status displays: waiters, new-block listeners, queued and in-flight sends. */
  stats(): { waiters: number; headListeners: number; queued: number; inFlight: number } {
    let waiters = 0;
    for (const s of this.waiters.values()) waiters += s.size;
    const s = this.sender?.stats() ?? { queued: 0, inFlight: 0 };
    return { waiters, headListeners: this.client.headListenerCount, queued: s.queued, inFlight: s.inFlight };
  }

  /** Read and anchor traffic of this ledger (tests, diagnostics): reads asked, eth_calls that served them, anchor transactions sent. */
  trafficStats(): { reads: number; readCalls: number; anchorTxs: number } {
    return { ...this.counters };
  }

  /** Recovery counters of the account's send queue (shared by ledgers with the same key and node). */
  sendStats(): { rebroadcasts: number; collisions: number } {
    return { rebroadcasts: this.sender?.rebroadcasts ?? 0, collisions: this.sender?.collisions ?? 0 };
  }

  /** Resolves once the node answered with the configured chain id and the contract exists. */
  ready(): Promise<void> {
    if (this.closed) return Promise.reject(new LedgerError('BAD_CONFIG', 'the ledger is closed'));
    if (this.fatal) return Promise.reject(this.fatal);
    this.initP ??= this.init().catch((e: unknown) => {
      this.initP = null;
      throw e;
    });
    return this.initP;
  }

  private async init(): Promise<void> {
    const id = BigInt(String(await this.client.call('eth_chainId', [], { what: 'checking the chain id' })));
    if (id !== this.chainId) {
      this.fatal = new LedgerError(
        'BAD_CONFIG',
        `wrong chain: ${this.client.rpcUrl} serves chain id ${id}, the configuration expects ${this.chainId}`,
      );
      this.emitState('error', this.fatal.message);
      throw this.fatal;
    }
    const code = await this.client.call('eth_getCode', [this.address, 'latest'], { what: 'checking the registry contract' });
    if (typeof code !== 'string' || code === '0x' || code === '0x0') {
      const e = new LedgerError('BAD_CONFIG', `no contract at ${this.address} on chain ${id} (${this.client.rpcUrl}): deploy SetsRegistry or fix the address`);
      this.emitState('error', e.message);
      throw e;
    }
  }

  // ---- reads ----------------------------------------------------------------------------------

  private async view(fn: string, args: unknown[]): Promise<Result> {
    const data = registryInterface.encodeFunctionData(fn, args);
    let out: unknown;
    try {
      out = await this.client.call('eth_call', [{ to: this.address, data }, 'latest'], { what: `${fn} on ${this.address}` });
    } catch (e) {
      if (e instanceof NodeError) {
        throw new LedgerError('TX_FAILED', `${fn} on ${this.address} failed: ${e.revertData ? decodeRevert(e.revertData) : e.body.message}`, { cause: e });
      }
      throw e;
    }
    try {
      return registryInterface.decodeFunctionResult(fn, String(out));
    } catch (e) {
      throw new LedgerError('BAD_CONFIG', `${this.address} does not answer ${fn} like a SetsRegistry (got ${String(out).slice(0, 66)})`, { cause: e });
    }
  }

  /**
   * Every anchor under `key`, judged for `scope` and creator `identity`. Within the coalescing
   * window concurrent reads become one readCTIRecordsMany call (a full batch goes at once).
   */
  private read(scope: string, key: string, identity: string = ZERO32): Promise<LedgerRecord[]> {
    this.counters.reads++;
    if (this.coalesceMs === 0) {
      this.counters.readCalls++;
      return this.readOne(scope, key, identity);
    }
    return new Promise<LedgerRecord[]>((resolve, reject) => {
      this.readQueue.push({ scope, key, identity, resolve, reject });
      if (this.readQueue.length >= this.readBatch) this.flushReads();
      else this.readTimer ??= setTimeout(() => this.flushReads(), this.coalesceMs);
    });
  }

  private flushReads(): void {
    if (this.readTimer) clearTimeout(this.readTimer);
    this.readTimer = null;
    const batch = this.readQueue.splice(0);
    if (batch.length === 0) return;
    this.readManyRaw(batch).then(
      (res) => batch.forEach((q, i) => q.resolve(res[i])),
      (e: unknown) => batch.forEach((q) => q.reject(e)),
    );
  }

  /**
   * Many reads in as few eth_calls as possible (readCTIRecordsMany, `readBatchSize` queries per
   * call; identical queries asked once). A registry without readCTIRecordsMany is read query by
   * query (and a warning says so once).
   */
  private async readManyRaw(queries: Array<{ scope: string; key: string; identity: string }>): Promise<LedgerRecord[][]> {
    if (queries.length === 1 || this.noReadMany) {
      this.counters.readCalls += queries.length;
      return Promise.all(queries.map((q) => this.readOne(q.scope, q.key, q.identity)));
    }
    const index = new Map<string, number>();
    const uniq: Array<{ scope: string; key: string; identity: string }> = [];
    const slot = queries.map((q) => {
      const id = `${q.scope}/${q.identity}/${q.key}`;
      let i = index.get(id);
      if (i === undefined) {
        i = uniq.length;
        index.set(id, i);
        uniq.push(q);
      }
      return i;
    });
    const chunks: Array<typeof uniq> = [];
    for (let i = 0; i < uniq.length; i += this.readBatch) chunks.push(uniq.slice(i, i + this.readBatch));
    let results: LedgerRecord[][][];
    try {
      this.counters.readCalls += chunks.length;
      results = await Promise.all(chunks.map((c) => this.readChunk(c)));
    } catch (e) {
      // an older registry (no readCTIRecordsMany) reverts without data: read one by one from now on
      if (!(e instanceof LedgerError) || e.code !== 'TX_FAILED' || !/without a reason|reverted|execution/i.test(e.message)) throw e;
      const probe = await this.readOne(uniq[0].scope, uniq[0].key, uniq[0].identity); // the registry answers single reads?
      this.noReadMany = true;
      this.warn(`registry ${this.address} has no readCTIRecordsMany (deployed before it): reads go one key at a time (${e.message})`);
      this.counters.readCalls += uniq.length - 1;
      const rest = await Promise.all(uniq.slice(1).map((q) => this.readOne(q.scope, q.key, q.identity)));
      results = [[probe, ...rest]];
    }
    const flat = results.flat();
    return slot.map((i) => flat[i].map((r) => ({ ...r })));
  }

  private async readChunk(qs: Array<{ scope: string; key: string; identity: string }>): Promise<LedgerRecord[][]> {
    const fn = 'readCTIRecordsMany';
    const data = registryInterface.encodeFunctionData(fn, [qs.map((q) => q.scope), qs.map((q) => q.identity), qs.map((q) => q.key)]);
    let out: unknown;
    try {
      out = await this.client.call('eth_call', [{ to: this.address, data }, 'latest'], { what: `${fn} of ${qs.length} keys on ${this.address}` });
    } catch (e) {
      if (e instanceof NodeError) {
        throw new LedgerError('TX_FAILED', `${fn} on ${this.address} failed: ${e.revertData ? decodeRevert(e.revertData) : e.body.message}`, { cause: e });
      }
      throw e;
    }
    const dec = decodeReadMany(String(out), qs.length);
    if (!dec) throw new LedgerError('BAD_CONFIG', `${this.address} does not answer ${fn} like a SetsRegistry (got ${String(out).slice(0, 66)})`);
    const result: LedgerRecord[][] = [];
    let j = 0;
    qs.forEach((q, i) => {
      const recs: LedgerRecord[] = [];
      for (let n = dec.counts[i]; n > 0; n--, j++) recs.push({ key: q.key, ...dec.records[j] });
      result.push(recs);
    });
    return result;
  }

  /** Every anchor under `key`, judged for `scope` and creator `identity` (readCTIRecords). */
  private async readOne(scope: string, key: string, identity: string): Promise<LedgerRecord[]> {
    const r = await this.view('readCTIRecords', [scope, identity, key]);
    const writers = r[0] as unknown as string[];
    const hashes = r[1] as unknown as string[];
    const timestamps = r[2] as unknown as bigint[];
    const blocks = r[3] as unknown as bigint[];
    const entitled = r[4] as unknown as boolean[];
    const out: LedgerRecord[] = [];
    for (let i = 0; i < writers.length; i++) {
      out.push({
        key,
        hash: String(hashes[i]).toLowerCase(),
        writer: getAddress(String(writers[i])),
        timestamp: seconds(BigInt(timestamps[i])),
        entitled: entitled[i] === true,
        block: Number(blocks[i]),
      });
    }
    return out;
  }

  /** What `writer` anchored under `key` (readCTIRecord); null when nothing. */
  private async held(key: string, writer: string): Promise<Held | null> {
    const r = await this.view('readCTIRecord', [key, writer]);
    const hash = String(r[0]).toLowerCase();
    if (hash === ZERO32) return null;
    return { hash, block: Number(r[2] as bigint) };
  }

  /** Where the signing account may write; BAD_CONFIG for a read-only ledger. */
  async writerStatus(scope: string = ANY_SCOPE): Promise<WriterStatus> {
    const s = bytes32(scope, 'scope');
    const account = this.account;
    if (!account) throw new LedgerError('BAD_CONFIG', 'no signing key: this EVM ledger is read-only (configure privateKey to anchor)');
    await this.ready();
    const [any] = await this.view('isWriterFor', [ANY_SCOPE, account]);
    const anyScope = any === true;
    let inScope = anyScope;
    if (!anyScope && s !== ANY_SCOPE) inScope = (await this.view('isWriterFor', [s, account]))[0] === true;
    return { account, anyScope, inScope };
  }

  /**
   * How much the signing account is granted (connection tests): every collection, or the
   * number of collection scopes; null for a read-only ledger (no private key).
   */
  async writerGrants(): Promise<{ account: string; anyScope: boolean; scopes: number } | null> {
    const account = this.account;
    if (!account) return null;
    await this.ready();
    const [[any], [count]] = await Promise.all([this.view('isWriterFor', [ANY_SCOPE, account]), this.view('grantsOf', [account])]);
    const anyScope = any === true;
    return { account, anyScope, scopes: Number(count as bigint) - (anyScope ? 1 : 0) };
  }

  async lookup(scope: string, key: string, identity?: string): Promise<LedgerRecord[]> {
    const s = bytes32(scope, 'scope');
    const k = bytes32(key, 'key');
    const id = identity === undefined ? ZERO32 : bytes32(identity, 'identity');
    await this.ready();
    return this.read(s, k, id);
  }

  /** `lookup` for many queries: ceil(n / readBatchSize) eth_calls (readCTIRecordsMany), results in query order. */
  async lookupMany(queries: LookupQuery[]): Promise<LedgerRecord[][]> {
    if (!Array.isArray(queries)) throw new LedgerError('BAD_INPUT', 'lookupMany expects an array of {scope, key, identity?}');
    const qs = queries.map((q, i) => {
      if (!isRecord(q)) throw new LedgerError('BAD_INPUT', `query ${i} is not a {scope, key, identity?} object`);
      return {
        scope: bytes32(q.scope, 'scope'),
        key: bytes32(q.key, 'key'),
        identity: q.identity === undefined ? ZERO32 : bytes32(q.identity, 'identity'),
      };
    });
    if (qs.length === 0) return [];
    await this.ready();
    this.counters.reads += qs.length;
    return this.readManyRaw(qs);
  }

  /** What `writer` holds under each key (one batched read; readCTIRecord for a single key). */
  private async heldMany(keys: string[], writer: string): Promise<Map<string, Held | null>> {
    const out = new Map<string, Held | null>();
    if (keys.length === 1) {
      this.counters.readCalls++;
      out.set(keys[0], await this.held(keys[0], writer));
      return out;
    }
    const recs = await this.readManyRaw(keys.map((key) => ({ scope: S_PRECHECK, key, identity: ZERO32 })));
    keys.forEach((k, i) => {
      const mine = recs[i].find((r) => r.writer === writer);
      out.set(k, mine ? { hash: mine.hash, block: mine.block ?? 0 } : null);
    });
    return out;
  }

  /** The receipt of this writer's earlier write of `e` (it must hold e.hash). */
  private async existingReceipt(writer: string, e: Entry, held?: Held | null): Promise<AnchorReceipt> {
    const h = held === undefined ? await this.held(e.key, writer) : held;
    if (!h) throw new LedgerError('TX_FAILED', `key ${e.key} should be anchored by ${writer} but holds nothing`, { key: e.key });
    if (h.hash !== e.hash) throw this.keyTaken(writer, e, h);
    let tx = '';
    if (h.block > 0) {
      try {
        const logs = await this.client.call(
          'eth_getLogs',
          [
            {
              address: this.address,
              topics: [WRITTEN_TOPIC, e.key, null, zeroPadValue(writer, 32).toLowerCase()],
              fromBlock: toQuantity(h.block),
              toBlock: toQuantity(h.block),
            },
          ],
          { what: `finding the transaction that anchored ${short(e.key)}` },
        );
        const first = Array.isArray(logs) ? logs.find((l) => isRecord(l) && typeof l.transactionHash === 'string') : undefined;
        if (isRecord(first)) tx = String(first.transactionHash);
      } catch {
        // the transaction id is a courtesy; the anchor itself is certain
      }
    }
    const found = Date.now();
    return { key: e.key, hash: e.hash, tx, block: h.block, existing: true, writer, timings: { queued: 0, sent: found, mined: found } };
  }

  private keyTaken(writer: string, wanted: Entry, held: Held): LedgerError {
    return new LedgerError(
      'KEY_TAKEN',
      `you (${writer}) already anchored a different hash under key ${wanted.key} (${held.hash}, not ${wanted.hash}); the registry is write-once per writer`,
      { key: wanted.key },
    );
  }

  // ---- writes ---------------------------------------------------------------------------------

  async anchor(scope: string, key: string, hash: string): Promise<AnchorReceipt> {
    const [r] = await this.anchorEntries(checkAnchorEntries([{ scope, key, hash }]));
    return r;
  }

  async anchorMany(entries: AnchorEntry[]): Promise<AnchorReceipt[]> {
    const list = checkAnchorEntries(entries);
    if (list.length === 0) return [];
    return this.anchorEntries(list);
  }

  private async anchorEntries(entries: Entry[]): Promise<AnchorReceipt[]> {
    const queued = Date.now();
    const sender = this.sender;
    if (!sender) throw new LedgerError('BAD_CONFIG', 'no signing key: this EVM ledger is read-only (configure privateKey to anchor)');
    const wanted = new Map<string, Entry>();
    for (const e of entries) {
      const prev = wanted.get(e.key);
      if (prev !== undefined && prev.hash !== e.hash) {
        throw new LedgerError('BAD_INPUT', `key ${e.key} appears twice with different hashes`, { key: e.key });
      }
      wanted.set(e.key, e);
    }
    await this.ready();
    if (this.closed) throw new LedgerError('TX_FAILED', 'the ledger is closed');
    return new Promise<AnchorReceipt[]>((resolve, reject) => {
      const call: AnchorCall = {
        input: entries,
        list: [...wanted.values()],
        queued,
        done: new Map(),
        finished: false,
        blocked: false,
        resolve: (r) => {
          if (call.finished) return;
          call.finished = true;
          resolve(r);
        },
        reject: (e) => {
          if (call.finished) return;
          call.finished = true;
          reject(e);
        },
      };
      if (this.coalesceMs === 0 || call.list.length >= this.maxBatch) {
        void this.runAnchors(sender, [call]);
        return;
      }
      this.anchorQueue.push(call);
      this.anchorQueued += call.list.length;
      if (this.anchorQueued >= this.maxBatch) this.flushAnchors();
      else this.anchorTimer ??= setTimeout(() => this.flushAnchors(), this.coalesceMs);
    });
  }

  /**
   * The window closed (or a batch is full): the waiting calls go together — except a call naming
   * a key an earlier call of this batch writes: it waits until that batch is settled (first come,
   * first served), and its pre-read then says what is there: the same hash → `existing: true`
   * (as for any repeat), another → KEY_TAKEN.
   */
  private flushAnchors(): void {
    if (this.anchorTimer) clearTimeout(this.anchorTimer);
    this.anchorTimer = null;
    const sender = this.sender;
    if (!sender) return;
    const calls = this.anchorQueue.splice(0);
    this.anchorQueued = 0;
    const keys = new Set<string>();
    const now: AnchorCall[] = [];
    const deferred: AnchorCall[] = [];
    for (const c of calls) {
      if (c.finished) continue;
      const conflict = c.list.some((e) => keys.has(e.key));
      if (c.blocked || conflict) {
        this.anchorQueue.push(c);
        this.anchorQueued += c.list.length;
        if (!c.blocked) deferred.push(c);
        continue;
      }
      for (const e of c.list) keys.add(e.key);
      now.push(c);
    }
    for (const c of deferred) c.blocked = true;
    if (now.length > 0) {
      void this.runAnchors(sender, now).finally(() => {
        for (const c of deferred) c.blocked = false;
        if (deferred.length > 0 && !this.closed) this.anchorTimer ??= setTimeout(() => this.flushAnchors(), this.coalesceMs);
      });
    }
    if (this.anchorQueue.some((c) => !c.blocked)) this.anchorTimer ??= setTimeout(() => this.flushAnchors(), this.coalesceMs);
  }

  /** A call failed: its own error, or — once something of it was sent — how far it got. */
  private failCall(c: AnchorCall, failure: LedgerError, sent: boolean): void {
    if (!sent || c.list.length === 1) {
      c.reject(failure);
      return;
    }
    c.reject(
      new LedgerError(
        failure.code,
        `${failure.message} [anchorMany: ${c.done.size} of ${c.list.length} keys are anchored, the others not; anchoring again is safe]`,
        { key: failure.key, cause: failure },
      ),
    );
  }

  private finishCall(c: AnchorCall): void {
    if (c.finished || c.list.some((e) => !c.done.has(e.key))) return;
    c.resolve(
      c.input.map((e) => {
        const r = c.done.get(e.key) as AnchorReceipt;
        const t = r.timings ?? { queued: c.queued, sent: c.queued, mined: c.queued };
        return { ...r, timings: { queued: c.queued, sent: t.sent, mined: t.mined } };
      }),
    );
  }

  /**
   * Anchor the entries of one or more calls: one pre-read of what this writer holds under every
   * key, the grants of the scopes, then the new entries in batch transactions of at most
   * maxBatchSize. Every call is settled — with its receipts, or its own error: a call whose key
   * this writer holds with another hash fails alone (KEY_TAKEN, nothing of it sent), and a batch
   * transaction that fails while it carried several calls' entries is sent again call by call.
   */
  private async runAnchors(sender: AccountSender, calls: AnchorCall[], precheck = this.precheck): Promise<void> {
    const me = sender.address;
    const single = calls.length === 1;
    try {
      let live = calls.filter((c) => !c.finished);
      const union = new Map<string, Entry>();
      for (const c of live) for (const e of c.list) if (!c.done.has(e.key)) union.set(e.key, e);
      const held = precheck ? await this.heldMany([...union.keys()], me) : new Map<string, Held | null>();
      for (const c of live) {
        for (const e of c.list) {
          const h = held.get(e.key);
          if (!c.done.has(e.key) && h && h.hash !== e.hash) {
            this.failCall(c, this.keyTaken(me, e, h), c.done.size > 0);
            break;
          }
        }
      }
      live = live.filter((c) => !c.finished);
      // keys this writer already holds with the wanted hash: nothing to send
      const existing = new Map<string, Promise<AnchorReceipt>>();
      const todo = new Map<string, Entry>();
      for (const c of live) {
        for (const e of c.list) {
          if (c.done.has(e.key)) continue;
          const h = held.get(e.key);
          if (h) {
            if (!existing.has(e.key)) existing.set(e.key, this.existingReceipt(me, e, h));
          } else {
            todo.set(e.key, e);
          }
        }
      }
      const ex = new Map<string, AnchorReceipt>();
      await Promise.all([...existing].map(async ([k, p]) => ex.set(k, await p)));
      for (const c of live) for (const e of c.list) if (ex.has(e.key) && !c.done.has(e.key)) c.done.set(e.key, ex.get(e.key) as AnchorReceipt);
      // the grant of every scope written (a call writing in a scope not granted fails alone)
      const scopes = [...new Set([...todo.values()].map((e) => e.scope))];
      const grants = await Promise.allSettled(scopes.map((scope) => this.ensureWriter(me, scope)));
      const refused = new Map<string, LedgerError>();
      grants.forEach((g, i) => {
        if (g.status === 'rejected') refused.set(scopes[i], g.reason instanceof LedgerError ? g.reason : new LedgerError('UNREACHABLE', String(g.reason), { cause: g.reason }));
      });
      if (refused.size > 0) {
        for (const c of live) {
          const e = c.list.find((x) => !c.done.has(x.key) && refused.has(x.scope));
          if (e) this.failCall(c, refused.get(e.scope) as LedgerError, c.done.size > 0);
        }
        live = live.filter((c) => !c.finished);
        todo.clear();
        for (const c of live) for (const e of c.list) if (!c.done.has(e.key) && !ex.has(e.key)) todo.set(e.key, e);
      }
      for (const c of live) this.finishCall(c);
      live = live.filter((c) => !c.finished);
      if (todo.size === 0) return;

      const list = [...todo.values()];
      const chunks: Entry[][] = [];
      for (let i = 0; i < list.length; i += this.maxBatch) chunks.push(list.slice(i, i + this.maxBatch));
      const settled = await Promise.allSettled(chunks.map((ch) => this.writeChunk(sender, ch)));
      const again = new Set<AnchorCall>();
      settled.forEach((st, i) => {
        if (st.status === 'fulfilled') {
          for (const r of st.value) for (const c of live) if (todo.get(r.key) !== undefined && c.list.some((e) => e.key === r.key)) c.done.set(r.key, r);
          return;
        }
        const failure = st.reason instanceof LedgerError ? st.reason : new LedgerError('TX_FAILED', String(st.reason), { cause: st.reason });
        const keys = new Set(chunks[i].map((e) => e.key));
        const involved = live.filter((c) => c.list.some((e) => keys.has(e.key)));
        // several calls shared the failed transaction: send each again on its own, so that one
        // call's problem is not another's. A call alone in it gets the error.
        if ((single || involved.length === 1) && precheck) for (const c of involved) this.failCall(c, failure, true);
        else for (const c of involved) again.add(c);
      });
      for (const c of live) if (!again.has(c)) this.finishCall(c);
      if (again.size > 0) await Promise.all([...again].filter((c) => !c.finished).map((c) => this.runAnchors(sender, [c], true)));
    } catch (e) {
      const failure = e instanceof LedgerError ? e : new LedgerError('TX_FAILED', String(e), { cause: e });
      for (const c of calls) this.failCall(c, failure, c.done.size > 0);
    }
  }

  /** The scope's grant is checked before sending (cached 5 s) so a non-writer wastes no transaction. */
  private async ensureWriter(account: string, scope: string): Promise<void> {
    if (Date.now() < (this.writerOkUntil.get(scope) ?? 0)) return;
    let p = this.writerChecks.get(scope);
    if (!p) {
      p = (async () => {
        const [ok] = await this.view('canWrite', [scope, account]);
        if (ok !== true) throw this.notWriter(account, scope);
        this.writerOkUntil.set(scope, Date.now() + 5000);
      })().finally(() => {
        this.writerChecks.delete(scope);
      });
      this.writerChecks.set(scope, p);
    }
    return p;
  }

  private notWriter(account: string, scope: string): LedgerError {
    return new LedgerError(
      'NOT_AUTHORISED',
      `account ${account} may not anchor in scope ${scope} of registry ${this.address}: it is granted neither that collection ` +
        `nor every collection (the registry admin must grantWriter(${account}, ${scope}))`,
    );
  }

  private async writeChunk(sender: AccountSender, chunk: Entry[]): Promise<AnchorReceipt[]> {
    const me = sender.address;
    const single = chunk.length === 1;
    const data = single
      ? registryInterface.encodeFunctionData('writeCTIHash', [chunk[0].scope, chunk[0].key, chunk[0].hash])
      : registryInterface.encodeFunctionData('writeCTIHashes', [chunk.map((e) => e.scope), chunk.map((e) => e.key), chunk.map((e) => e.hash)]);
    const gasLimit = single ? this.gasLimit : this.batchGasBase + this.gasPerItem * BigInt(chunk.length);
    const label = single ? `writeCTIHash(${short(chunk[0].key)})` : `writeCTIHashes(${chunk.length} keys from ${short(chunk[0].key)})`;
    this.counters.anchorTxs++;
    const mined = await sender.submit({
      to: this.address,
      data,
      gasLimit,
      fees: this.fees,
      confirmations: this.confirmations,
      label,
      key: chunk[0].key,
      timeoutMs: this.txTimeoutMs,
    });
    if (mined.status !== 1) return this.explainFailure(sender, chunk, mined, data, label);
    const written = new Map<string, string>();
    for (const log of mined.logs) {
      if (log.address.toLowerCase() !== this.address.toLowerCase() || log.topics[0] !== WRITTEN_TOPIC) continue;
      const ev = registryInterface.parseLog(log);
      if (ev && getAddress(String(ev.args[3])) === me) written.set(String(ev.args[0]).toLowerCase(), String(ev.args[2]).toLowerCase());
    }
    return Promise.all(
      chunk.map((e) =>
        written.get(e.key) === e.hash
          ? { key: e.key, hash: e.hash, tx: mined.hash, block: mined.block, writer: me, timings: { queued: 0, sent: mined.sentAt, mined: mined.minedAt } }
          : // skipped by writeCTIHashes: an identical concurrent write of ours landed first
            this.existingReceipt(me, e),
      ),
    );
  }

  /** A write reverted: say why, from the chain's state (and a replay for the exact reason). */
  private async explainFailure(sender: AccountSender, chunk: Entry[], mined: MinedTx, data: string, label: string): Promise<AnchorReceipt[]> {
    const me = sender.address;
    const recs = await Promise.all(chunk.map((e) => this.held(e.key, me)));
    chunk.forEach((e, i) => {
      const r = recs[i];
      if (r && r.hash !== e.hash) throw this.keyTaken(me, e, r);
    });
    // everything holds our hashes: an identical concurrent write of ours won the race
    if (recs.every((r) => r !== null)) return Promise.all(chunk.map((e, i) => this.existingReceipt(me, e, recs[i])));
    for (const scope of new Set(chunk.map((e) => e.scope))) {
      const [ok] = await this.view('canWrite', [scope, me]);
      if (ok !== true) {
        this.writerOkUntil.delete(scope);
        throw this.notWriter(me, scope);
      }
    }
    let why: string;
    if (mined.gasUsed * 64n >= mined.gasLimit * 63n) {
      why = `ran out of gas (gas limit ${mined.gasLimit}; raise gasLimit / gasPerBatchItem)`;
    } else {
      why = 'reverted';
      try {
        await this.client.call(
          'eth_call',
          [{ from: me, to: this.address, data, gas: toQuantity(mined.gasLimit) }, toQuantity(Math.max(0, mined.block - 1))],
          { what: `replaying ${label}` },
        );
      } catch (e) {
        if (e instanceof NodeError) why = decodeRevert(e.revertData);
      }
    }
    const code = why.startsWith('ZeroScope') || why.startsWith('ZeroHash') ? 'BAD_INPUT' : 'TX_FAILED';
    throw new LedgerError(code, `${label}: transaction ${mined.hash} failed in block ${mined.block}: ${why}`, { key: chunk[0].key });
  }

  // ---- waiting for anchors --------------------------------------------------------------------

  async waitForAnchor(scope: string, key: string, timeoutMs: number, identity?: string): Promise<LedgerRecord[]> {
    const s = bytes32(scope, 'scope');
    const k = bytes32(key, 'key');
    const id = identity === undefined ? ZERO32 : bytes32(identity, 'identity');
    await this.ready();
    if (!(timeoutMs > 0)) return this.read(s, k, id);
    let w: Waiter | undefined;
    const p = new Promise<LedgerRecord[]>((resolve, reject) => {
      w = { key: k, scope: s, identity: id, timeoutMs, resolve, reject, done: false, timer: setTimeout(() => this.expireWaiter(w as Waiter), timeoutMs) };
    });
    const waiter = w as Waiter;
    let set = this.waiters.get(k);
    if (!set) this.waiters.set(k, (set = new Set()));
    set.add(waiter);
    try {
      await this.startWatch();
      const recs = await this.read(s, k, id);
      if (recs.some((r) => r.entitled)) this.settle(waiter, recs);
    } catch (e) {
      this.settle(waiter, e instanceof LedgerError ? e : new LedgerError('UNREACHABLE', String(e), { key: k, cause: e }));
    }
    return p;
  }

  /**
   * The wait ran out: one final read decides (the event search may have failed or missed it).
   * Resolves with whatever is anchored under the key (possibly [] or only anchors that are not
   * entitled); the read fails → UNREACHABLE naming the RPC error (and the search's error during
   * the wait).
   */
  private expireWaiter(w: Waiter): void {
    if (w.done) return;
    this.read(w.scope, w.key, w.identity).then(
      (recs) => this.settle(w, recs),
      (e: unknown) => {
        const during = this.watchError;
        const msg = e instanceof Error ? e.message : String(e);
        const code = e instanceof LedgerError && e.code !== 'TX_FAILED' ? e.code : 'UNREACHABLE';
        this.settle(
          w,
          new LedgerError(
            code,
            `waiting ${w.timeoutMs} ms for key ${w.key}: the final read failed: ${msg}` +
              (during && during.message !== msg ? `; during the wait: ${during.message}` : ''),
            { key: w.key, cause: e },
          ),
        );
      },
    );
  }

  private settle(w: Waiter, outcome: LedgerRecord[] | LedgerError): void {
    if (w.done) return;
    w.done = true;
    clearTimeout(w.timer);
    const set = this.waiters.get(w.key);
    set?.delete(w);
    if (set && set.size === 0) this.waiters.delete(w.key);
    if (this.waiters.size === 0) this.stopWatch();
    if (outcome instanceof LedgerError) w.reject(outcome);
    else w.resolve(outcome);
  }

  private async startWatch(): Promise<void> {
    if (this.unwatch) return;
    this.watchStarting ??= (async () => {
      // the scan starts after this head; the caller reads the key after it, so no write is missed
      const head = hexNum(await this.client.call('eth_blockNumber', [], { what: 'starting to watch for anchors' }), 'block number');
      if (this.closed || this.waiters.size === 0 || this.unwatch) return;
      this.watchFrom = head;
      this.unwatch = this.client.onHead(() => void this.scanLogs());
    })().finally(() => {
      this.watchStarting = null;
    });
    return this.watchStarting;
  }

  private stopWatch(): void {
    this.unwatch?.();
    this.unwatch = null;
    this.watchFrom = null;
    this.setWatchError(null);
  }

  private async scanLogs(): Promise<void> {
    if (this.watchScanning) {
      this.watchRescan = true;
      return;
    }
    this.watchScanning = true;
    try {
      do {
        this.watchRescan = false;
        await this.scanLogsOnce();
      } while (this.watchRescan && !this.closed);
      this.setWatchError(null);
    } catch (e) {
      // surfaced, not swallowed: the state leaves `connected`, and each waiter's final read decides
      this.setWatchError(e instanceof LedgerError ? e : new LedgerError('UNREACHABLE', String(e), { cause: e }));
    } finally {
      this.watchScanning = false;
    }
  }

  private async scanLogsOnce(): Promise<void> {
    for (;;) {
      const from = this.watchFrom;
      const head = this.client.latestHead;
      if (from === null || from >= head || this.waiters.size === 0) return;
      const to = Math.min(head, from + LOG_RANGE);
      const keys = [...this.waiters.keys()];
      const topics = keys.length <= KEY_FILTER_MAX ? [WRITTEN_TOPIC, keys] : [WRITTEN_TOPIC];
      const logs = await this.client.call(
        'eth_getLogs',
        [{ address: this.address, topics, fromBlock: toQuantity(from + 1), toBlock: toQuantity(to) }],
        { what: 'searching new blocks for anchors' },
      );
      if (this.watchFrom !== from) return; // stopped (and maybe restarted) meanwhile
      this.watchFrom = to;
      const seen = new Set<string>();
      if (Array.isArray(logs)) {
        for (const l of logs) {
          if (isRecord(l) && Array.isArray(l.topics) && typeof l.topics[1] === 'string') seen.add(l.topics[1].toLowerCase());
        }
      }
      // any anchor under an awaited key wakes its waiters; each resolves only once an anchor
      // entitled for its own scope and creator is there (one read per key, scope and identity)
      const reads: Promise<void>[] = [];
      for (const k of seen) {
        const ws = this.waiters.get(k);
        if (!ws) continue;
        const groups = new Map<string, { scope: string; identity: string }>();
        for (const w of ws) groups.set(`${w.scope}/${w.identity}`, { scope: w.scope, identity: w.identity });
        for (const [g, { scope, identity }] of groups) {
          reads.push(
            this.read(scope, k, identity).then((recs) => {
              if (!recs.some((r) => r.entitled)) return;
              for (const w of [...(this.waiters.get(k) ?? [])]) if (`${w.scope}/${w.identity}` === g) this.settle(w, recs);
            }),
          );
        }
      }
      await Promise.all(reads);
    }
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const set of [...this.waiters.values()]) {
      for (const w of [...set]) this.settle(w, new LedgerError('TIMEOUT', `the ledger was closed while waiting for key ${w.key}`, { key: w.key }));
    }
    this.stopWatch();
    if (this.readTimer) clearTimeout(this.readTimer);
    this.readTimer = null;
    for (const q of this.readQueue.splice(0)) q.reject(new LedgerError('UNREACHABLE', `the ledger was closed before key ${q.key} was read`, { key: q.key }));
    if (this.anchorTimer) clearTimeout(this.anchorTimer);
    this.anchorTimer = null;
    this.anchorQueued = 0;
    for (const c of this.anchorQueue.splice(0)) c.reject(new LedgerError('TX_FAILED', 'the ledger was closed before the anchor was sent (nothing was sent; anchoring again is safe)', { key: c.list[0]?.key }));
    this.stateListeners.clear();
    if (this.sender) releaseSender(this.sender);
    this.client.release();
  }
}
