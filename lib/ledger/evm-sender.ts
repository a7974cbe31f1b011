/**
 * The per-account transaction pipeline of the EVM adapter.
 *
 * One `AccountSender` exists per (chain id, RPC URL, account) in a process — ledgers and the
 * deploy/admin helpers that sign with the same key share it through `acquireSender`, so one
 * nonce allocator serves them all. It
 *
 * - signs locally and sends raw transactions (`eth_sendRawTransaction`) strictly in nonce
 *   order, one request after the other, without waiting for mining between sends
 *   (pipelined), with at most `maxInFlight` sent-but-unconfirmed transactions;
 * - after a failed send asks the node for the account's `pending` nonce and decides: the
 *   transaction is in (track it), or it is not (the nonce is free again: the failed job and any
 *   dropped ones are re-signed from that nonce, so no gap is ever left — automine rejects gaps);
 * - tracks receipts with one loop per new block, not one poller per transaction: the mined
 *   nonce count at the new head tells which in-flight transactions were mined, and only their
 *   receipts are fetched (batched).
 */
import { SigningKey, Transaction, computeAddress, toQuantity } from 'ethers';
import { LedgerError } from './ledger';
import { ChainClient, NodeError } from './evm-rpc';

export interface FeeSettings {
  /** 0 = legacy (gasPrice), 2 = EIP-1559 */
  type: 0 | 2;
  gasPrice?: bigint;
  maxFeePerGas?: bigint;
  maxPriorityFeePerGas?: bigint;
}

export interface TxSpec {
  /** null deploys a contract */
  to: string | null;
  data: string;
  gasLimit: bigint;
  fees: FeeSettings;
  confirmations: number;
  /** names the transaction in error messages, e.g. "writeCTIHash(0x12…)" */
  label: string;
}

export interface TxLog {
  address: string;
  topics: string[];
  data: string;
}

export interface MinedTx {
  hash: string;
  block: number;
  /** 1 success, 0 reverted */
  status: number;
  gasUsed: bigint;
  gasLimit: bigint;
  logs: TxLog[];
  contractAddress: string | null;
}

interface Job {
  spec: TxSpec;
  resolve: (m: MinedTx) => void;
  reject: (e: LedgerError) => void;
  attempts: number;
}

interface Sent {
  job: Job;
  nonce: number;
  hash: string;
  sentAt: number;
  mined?: MinedTx;
  /** scans in which the nonce was used but no receipt came back */
  misses: number;
}

export interface SenderOptions {
  maxInFlight: number;
  /** how long a sent transaction may stay unmined before its job fails with TIMEOUT */
  txTimeoutMs: number;
}

const MAX_ATTEMPTS = 4;
const FEE_CACHE_MS = 5000;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

function hexNum(v: unknown, what: string): number {
  if (typeof v !== 'string' || !/^0x[0-9a-fA-F]+$/.test(v)) throw new Error(`bad ${what} from node: ${String(v)}`);
  return Number(BigInt(v));
}

function parseReceipt(r: Record<string, unknown>, hash: string, gasLimit: bigint): MinedTx {
  const logs: TxLog[] = [];
  if (Array.isArray(r.logs)) {
    for (const l of r.logs as unknown[]) {
      if (isRecord(l) && typeof l.address === 'string' && Array.isArray(l.topics) && typeof l.data === 'string') {
        logs.push({ address: l.address, topics: l.topics.filter((t): t is string => typeof t === 'string'), data: l.data });
      }
    }
  }
  return {
    hash,
    block: hexNum(r.blockNumber, 'receipt blockNumber'),
    status: typeof r.status === 'string' ? Number(BigInt(r.status)) : 1,
    gasUsed: typeof r.gasUsed === 'string' ? BigInt(r.gasUsed) : 0n,
    gasLimit,
    logs,
    contractAddress: typeof r.contractAddress === 'string' ? r.contractAddress : null,
  };
}

/** Send errors after which the same job is simply re-signed with the node's nonce and resent. */
function isNonceTrouble(e: NodeError): boolean {
  return /nonce|known transaction|already known|already imported|replacement/i.test(e.body.message);
}

export class AccountSender {
  readonly address: string;
  private readonly key: SigningKey;
  private readonly queue: Job[] = [];
  private readonly sent = new Map<number, Sent>();
  private nextNonce: number | null = null;
  /** re-read the nonce from the node before the next send */
  private resync = false;
  private pumping = false;
  private scanning = false;
  private rescan = false;
  private lastScanHead = -1;
  private unsubHeads: (() => void) | null = null;
  private timeoutTimer: NodeJS.Timeout | null = null;
  private feeCache = new Map<number, { at: number; fees: FeeSettings }>();
  private closed = false;
  refs = 1;

  constructor(
    readonly client: ChainClient,
    privateKey: string,
    readonly opts: SenderOptions,
  ) {
    this.key = new SigningKey(privateKey);
    this.address = computeAddress(this.key.publicKey);
  }

  /** Numbers for tests and status displays. */
  stats(): { queued: number; inFlight: number; listening: boolean } {
    return { queued: this.queue.length, inFlight: this.sent.size, listening: this.unsubHeads !== null };
  }

  /** Queue a transaction; resolves when it is mined with `confirmations` (status 0 included). */
  submit(spec: TxSpec): Promise<MinedTx> {
    if (this.closed) return Promise.reject(new LedgerError('TX_FAILED', `${spec.label}: the sender is closed`));
    return new Promise<MinedTx>((resolve, reject) => {
      this.queue.push({ spec, resolve, reject, attempts: 0 });
      void this.pump();
    });
  }

  private async pendingNonce(): Promise<number> {
    const n = await this.client.call('eth_getTransactionCount', [this.address, 'pending'], {
      send: true,
      what: `reading the nonce of ${this.address}`,
    });
    return hexNum(n, 'nonce');
  }

  private async fees(spec: FeeSettings): Promise<FeeSettings> {
    if (spec.type === 0 && spec.gasPrice !== undefined) return spec;
    if (spec.type === 2 && spec.maxFeePerGas !== undefined && spec.maxPriorityFeePerGas !== undefined) return spec;
    const cached = this.feeCache.get(spec.type);
    let suggested: FeeSettings;
    if (cached && Date.now() - cached.at < FEE_CACHE_MS) {
      suggested = cached.fees;
    } else {
      if (spec.type === 0) {
        const gp = BigInt(String(await this.client.call('eth_gasPrice', [], { what: 'reading the gas price' })));
        suggested = { type: 0, gasPrice: (gp * 5n) / 4n };
      } else {
        const block = await this.client.call('eth_getBlockByNumber', ['latest', false], { what: 'reading the base fee' });
        const base = isRecord(block) && typeof block.baseFeePerGas === 'string' ? BigInt(block.baseFeePerGas) : 0n;
        let prio = 0n;
        try {
          prio = BigInt(String(await this.client.call('eth_maxPriorityFeePerGas', [], { what: 'reading the priority fee' })));
        } catch (e) {
          if (!(e instanceof NodeError)) throw e; // not supported: tip 0
        }
        suggested = { type: 2, maxFeePerGas: base * 2n + prio, maxPriorityFeePerGas: prio };
      }
      this.feeCache.set(spec.type, { at: Date.now(), fees: suggested });
    }
    return {
      type: spec.type,
      gasPrice: spec.gasPrice ?? suggested.gasPrice,
      maxPriorityFeePerGas: spec.maxPriorityFeePerGas ?? suggested.maxPriorityFeePerGas,
      maxFeePerGas: spec.maxFeePerGas ?? suggested.maxFeePerGas,
    };
  }

  private sign(spec: TxSpec, fees: FeeSettings, nonce: number): { raw: string; hash: string } {
    const tx = Transaction.from({
      type: fees.type,
      chainId: this.client.network.chainId,
      nonce,
      to: spec.to,
      data: spec.data,
      value: 0n,
      gasLimit: spec.gasLimit,
      ...(fees.type === 0
        ? { gasPrice: fees.gasPrice ?? 0n }
        : { maxFeePerGas: fees.maxFeePerGas ?? 0n, maxPriorityFeePerGas: fees.maxPriorityFeePerGas ?? 0n }),
    });
    tx.signature = this.key.sign(tx.unsignedHash);
    return { raw: tx.serialized, hash: tx.hash as string };
  }

  /** The single send loop: in nonce order, one request after the other, bounded in-flight. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.closed && this.queue.length > 0 && this.sent.size < this.opts.maxInFlight) {
        const job = this.queue[0];
        let fees: FeeSettings;
        let nonce: number;
        try {
          if (this.nextNonce === null || this.resync) {
            this.resync = false;
            this.nextNonce = await this.pendingNonce();
          }
          nonce = this.nextNonce;
          fees = await this.fees(job.spec.fees);
        } catch (e) {
          // cannot even ask the node: fail what waits, rather than hang
          this.failQueued(e);
          break;
        }
        this.queue.shift();
        let signed: { raw: string; hash: string };
        try {
          signed = this.sign(job.spec, fees, nonce);
        } catch (e) {
          job.reject(new LedgerError('TX_FAILED', `${job.spec.label}: cannot sign: ${(e as Error).message}`, { cause: e }));
          continue;
        }
        const { raw, hash } = signed;
        try {
          await this.client.call('eth_sendRawTransaction', [raw], { send: true, retry: false, what: `sending ${job.spec.label}` });
          this.nextNonce = nonce + 1;
          this.track(job, nonce, hash);
        } catch (err) {
          await this.recover(job, nonce, hash, err);
        }
      }
    } catch (e) {
      // a bug, not a network failure: fail what waits instead of leaving it hanging
      this.resync = true;
      this.failQueued(e);
    } finally {
      this.pumping = false;
    }
    if (this.queue.length > 0 && this.sent.size >= this.opts.maxInFlight) this.client.kick();
  }

  private track(job: Job, nonce: number, hash: string): void {
    this.sent.set(nonce, { job, nonce, hash, sentAt: Date.now(), misses: 0 });
    // the block that mined it may already be known (automine, WebSocket heads): make sure a
    // scan at the latest head sees it, instead of waiting for a next block that may never come
    if (!this.unsubHeads) this.unsubHeads = this.client.onHead(() => void this.scan());
    else if (this.scanning) this.rescan = true;
    else if (this.client.latestHead > this.lastScanHead) void this.scan();
    if (!this.timeoutTimer) {
      this.timeoutTimer = setInterval(() => this.expire(), Math.min(1000, this.opts.txTimeoutMs));
    }
  }

  /**
   * A send failed. Ask the node where the account's nonce stands and leave no gap: either the
   * transaction is in the node (track it), or its nonce is free again (re-sign from there).
   */
  private async recover(job: Job, nonce: number, hash: string, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    let pending: number;
    try {
      pending = await this.pendingNonce();
    } catch {
      this.resync = true;
      job.reject(
        new LedgerError(
          'UNREACHABLE',
          `${job.spec.label}: ${reason}; whether transaction ${hash} reached the node is unknown (anchoring again is safe)`,
          { cause: err },
        ),
      );
      return;
    }
    if (pending > nonce) {
      // the nonce is used: by our transaction (e.g. hardhat automine reports a revert as a send
      // error although it mined the transaction) or by someone else signing with this key
      let ours = false;
      try {
        ours = isRecord(await this.client.call('eth_getTransactionByHash', [hash], { send: true }));
      } catch {
        ours = false;
      }
      this.nextNonce = pending;
      if (ours) this.track(job, nonce, hash);
      else this.retryOrFail(job, err, reason);
      return;
    }
    // our transaction is not in the node: its nonce (and any later in-flight one, dropped by
    // the node) is free again; all of them are re-signed from the node's nonce, in order
    this.nextNonce = pending;
    const dropped = this.takeDropped(pending);
    if (!(err instanceof NodeError) || isNonceTrouble(err)) {
      this.retryOrFail(job, err, reason);
    } else {
      job.reject(new LedgerError('TX_FAILED', `the node refused ${job.spec.label}: ${err.body.message}`, { cause: err }));
    }
    this.queue.unshift(...dropped);
  }

  /** Put `job` back at the head of the queue, or fail it after MAX_ATTEMPTS. */
  private retryOrFail(job: Job, err: unknown, reason: string): void {
    if (++job.attempts < MAX_ATTEMPTS) {
      this.queue.unshift(job);
      return;
    }
    const code = err instanceof NodeError ? 'TX_FAILED' : 'UNREACHABLE';
    job.reject(new LedgerError(code, `${job.spec.label}: gave up after ${job.attempts} attempts: ${reason}`, { cause: err }));
  }

  /** In-flight transactions with nonce >= `from` are not in the node: take them back, in nonce order. */
  private takeDropped(from: number): Job[] {
    const dropped = [...this.sent.values()].filter((s) => s.nonce >= from && !s.mined).sort((a, b) => a.nonce - b.nonce);
    for (const s of dropped) this.sent.delete(s.nonce);
    return dropped.map((s) => s.job);
  }

  private failQueued(e: unknown): void {
    const jobs = this.queue.splice(0);
    for (const j of jobs) {
      j.reject(
        e instanceof LedgerError
          ? new LedgerError(e.code, `${j.spec.label} not sent: ${e.message}`, { cause: e })
          : new LedgerError('TX_FAILED', `${j.spec.label} not sent: ${String(e)}`, { cause: e }),
      );
    }
  }

  /** One pass per new block: which in-flight transactions got mined, and settle the confirmed. */
  private async scan(): Promise<void> {
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    this.scanning = true;
    try {
      do {
        this.rescan = false;
        await this.scanOnce();
      } while (this.rescan && !this.closed);
    } catch {
      // node unreachable this time: the next block (or poll) tries again; expire() bounds waits
    } finally {
      this.scanning = false;
    }
    if (this.sent.size === 0) this.idle();
    void this.pump();
  }

  private async scanOnce(): Promise<void> {
    const head = this.client.latestHead;
    if (head < 0 || this.sent.size === 0) return;
    this.lastScanHead = head;
    if ([...this.sent.values()].some((s) => !s.mined)) {
      const minedCount = hexNum(
        await this.client.call('eth_getTransactionCount', [this.address, toQuantity(head)], { what: 'tracking transactions' }),
        'nonce',
      );
      // (taken after the await: transactions tracked meanwhile count too)
      const due = [...this.sent.values()].filter((s) => !s.mined && s.nonce < minedCount);
      const receipts = await Promise.all(
        due.map((s) =>
          this.client.call('eth_getTransactionReceipt', [s.hash], { what: `reading the receipt of ${s.hash}` }).catch(() => undefined),
        ),
      );
      due.forEach((s, i) => {
        const r = receipts[i];
        if (isRecord(r) && typeof r.blockNumber === 'string') {
          s.mined = parseReceipt(r, s.hash, s.job.spec.gasLimit);
        } else if (r === null && ++s.misses >= 3 && this.sent.get(s.nonce) === s) {
          // the nonce was used by another transaction (same key elsewhere): ours will never be mined
          this.sent.delete(s.nonce);
          this.resync = true;
          this.retryOrFail(s.job, new Error('replaced'), `nonce ${s.nonce} was used by another transaction`);
        }
      });
    }
    for (const s of [...this.sent.values()]) {
      if (s.mined && head >= s.mined.block + Math.max(1, s.job.spec.confirmations) - 1) {
        this.sent.delete(s.nonce);
        s.job.resolve(s.mined);
      }
    }
  }

  /** Transactions unmined for longer than txTimeoutMs fail with TIMEOUT. */
  private expire(): void {
    const now = Date.now();
    let any = false;
    for (const s of [...this.sent.values()]) {
      if (!s.mined && now - s.sentAt > this.opts.txTimeoutMs) {
        this.sent.delete(s.nonce);
        any = true;
        s.job.reject(
          new LedgerError(
            'TIMEOUT',
            `${s.job.spec.label}: transaction ${s.hash} (nonce ${s.nonce}) not mined within ${this.opts.txTimeoutMs} ms; ` +
              'it may still be mined later (anchoring again is safe)',
          ),
        );
      }
    }
    if (any) this.resync = true;
    if (this.sent.size === 0) this.idle();
    if (any) void this.pump();
  }

  private idle(): void {
    this.unsubHeads?.();
    this.unsubHeads = null;
    if (this.timeoutTimer) clearInterval(this.timeoutTimer);
    this.timeoutTimer = null;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const j of this.queue.splice(0)) {
      j.reject(new LedgerError('TX_FAILED', `${j.spec.label}: the ledger was closed before it was sent`));
    }
    for (const s of this.sent.values()) {
      s.job.reject(
        new LedgerError('TIMEOUT', `${s.job.spec.label}: the ledger was closed while transaction ${s.hash} waited to be mined; it may still be mined`),
      );
    }
    this.sent.clear();
    this.idle();
    this.client.release();
  }
}

// ---- one sender per (chain, node, account) in the process ------------------------------------

const senders = new Map<string, AccountSender>();

/**
 * The process-wide sender for this key on this chain and node: created on first use with
 * `client` (which it retains) and `opts`; later callers share it (their options are ignored).
 * Pair every acquire with `releaseSender`.
 */
export function acquireSender(client: ChainClient, privateKey: string, opts: SenderOptions): AccountSender {
  const address = computeAddress(new SigningKey(privateKey).publicKey);
  const id = `${client.network.chainId}|${client.rpcUrl}|${address}`;
  const have = senders.get(id);
  if (have && !have.client.isClosed) {
    have.refs++;
    return have;
  }
  const s = new AccountSender(client.retain(), privateKey, opts);
  senders.set(id, s);
  return s;
}

export function releaseSender(s: AccountSender): void {
  if (--s.refs > 0) return;
  const id = `${s.client.network.chainId}|${s.client.rpcUrl}|${s.address}`;
  if (senders.get(id) === s) senders.delete(id);
  s.close();
}
