/**
 * The per-account transaction pipeline of the EVM adapter.
 *
 * One `AccountSender` exists per (chain id, node, account) in a process — ledgers and the
 * deploy/admin helpers that sign with the same key share it through `acquireSender`, so one
 * nonce allocator serves them all. The node is identified by its normalised URL
 * (`http://localhost:8545/` and `http://127.0.0.1:8545` are one node). It
 *
 * - signs locally and sends raw transactions (`eth_sendRawTransaction`) strictly in nonce
 *   order, one request after the other, without waiting for mining between sends
 *   (pipelined), with at most `maxInFlight` sent-but-unconfirmed transactions;
 * - binds every nonce it signs to that one signed transaction until it is mined, its nonce is
 *   used by another transaction, or the node refused it: this process never puts two
 *   transactions on one nonce;
 * - after a refused send asks the node for the account's `pending` nonce and decides: the
 *   transaction is in (track it), its nonce was taken by another signer of the same key (another
 *   process: re-sign from the node's nonce, bounded retries), or the node misses earlier
 *   transactions of ours (re-broadcast them, then send again);
 * - re-broadcasts (same signed raw transaction) what the node does not hold any more — dropped
 *   from its pool, or sent while it was unreachable / restarting — every few seconds until it is
 *   mined or its nonce is used; while the node is unreachable, anchors wait, bounded by the
 *   anchor deadline (`txTimeoutMs`, counted from submission);
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
  /** the (first) ledger key the transaction writes, named in errors */
  key?: string;
  /** this transaction's deadline from submission, ms (default: the sender's txTimeoutMs) */
  timeoutMs?: number;
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
  /** when it was (last) handed to the node, epoch ms */
  sentAt: number;
  /** when it was seen mined with the requested confirmations, epoch ms */
  minedAt: number;
}

interface Job {
  spec: TxSpec;
  resolve: (m: MinedTx) => void;
  reject: (e: LedgerError) => void;
  /** sends refused for other reasons than a nonce taken by another signer */
  attempts: number;
  /** times the nonce it was signed with was taken by another signer of this key */
  collisions: number;
  /** submission time + its timeout */
  deadline: number;
  /** its timeout, ms */
  timeoutMs: number;
  done: boolean;
}

interface Sent {
  job: Job;
  nonce: number;
  hash: string;
  /** the signed transaction, re-broadcast as is */
  raw: string;
  /** last time the node was seen holding it, or it was (re)broadcast */
  seenAt: number;
  /** the last send was not acknowledged (node unreachable): it may not be in the node */
  unconfirmed: boolean;
  rebroadcasts: number;
  mined?: MinedTx;
  /** scans in which the nonce was used but no receipt came back */
  misses: number;
  /** when it was handed to the node, epoch ms */
  sentAt: number;
}

/**
 * Per-account settings: one nonce queue serves every ledger that signs with the key on the same
 * node, so these belong to the account, not to a connection — the first ledger's values hold and
 * a later one that asks for different values gets a warning (see acquireSender). The deadline
 * (`txTimeoutMs`) is only the default: each transaction may carry its own (TxSpec.timeoutMs).
 */
export interface SenderOptions {
  maxInFlight: number;
  /**
   * Anchor deadline: how long a transaction may take from submission until mined — queueing,
   * node outages and re-broadcasts included — before its job fails with TIMEOUT (or
   * UNREACHABLE when the node is unreachable at that moment).
   */
  txTimeoutMs: number;
  /** a sent transaction the node has not been seen holding for this long is re-broadcast (default 3000) */
  rebroadcastAfterMs?: number;
}

/** refused sends of one job (other than nonce collisions) before it fails */
const MAX_ATTEMPTS = 4;
/** nonce collisions with another signer of the same key before a job fails */
const MAX_COLLISIONS = 40;
const FEE_CACHE_MS = 5000;
/** watchdog period: deadlines, re-broadcasts, resuming after an outage */
const CHECK_MS = 1000;
/** transactions looked up per watchdog pass (the lowest nonces: they block the others) */
const CHECK_BATCH = 128;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function hexNum(v: unknown, what: string): number {
  if (typeof v !== 'string' || !/^0x[0-9a-fA-F]+$/.test(v)) throw new Error(`bad ${what} from node: ${String(v)}`);
  return Number(BigInt(v));
}

function parseReceipt(r: Record<string, unknown>, hash: string, gasLimit: bigint, sentAt: number): MinedTx {
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
    sentAt,
    minedAt: 0,
  };
}

/** The node already holds this very transaction. */
function isKnown(e: NodeError): boolean {
  return /already known|known transaction|already imported|already in (the )?(mem)?pool/i.test(e.body.message);
}

/** Send errors about the nonce (taken, too low, too high, replacement). */
function isNonceTrouble(e: NodeError): boolean {
  return /nonce|replacement|underpriced/i.test(e.body.message);
}

export class AccountSender {
  readonly address: string;
  private readonly key: SigningKey;
  private readonly queue: Job[] = [];
  private readonly sent = new Map<number, Sent>();
  private readonly rebroadcastAfterMs: number;
  private nextNonce: number | null = null;
  /** re-read the nonce from the node before the next send */
  private resync = false;
  /** the node did not answer: sending waits for the watchdog to reach it again */
  private stalled = false;
  private pumping = false;
  private scanning = false;
  private rescan = false;
  private checking = false;
  private checkSoon = false;
  private lastScanHead = -1;
  private unsubHeads: (() => void) | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  private feeCache = new Map<number, { at: number; fees: FeeSettings }>();
  private closed = false;
  /** re-broadcasts so far (tests, diagnostics) */
  rebroadcasts = 0;
  /** nonce collisions with another signer so far (tests, diagnostics) */
  collisions = 0;
  refs = 1;

  constructor(
    readonly client: ChainClient,
    privateKey: string,
    readonly opts: SenderOptions,
  ) {
    this.key = new SigningKey(privateKey);
    this.address = computeAddress(this.key.publicKey);
    this.rebroadcastAfterMs = opts.rebroadcastAfterMs ?? 3000;
  }

  /** Numbers for tests and status displays. */
  stats(): { queued: number; inFlight: number; listening: boolean } {
    return { queued: this.queue.length, inFlight: this.sent.size, listening: this.unsubHeads !== null };
  }

  /** Queue a transaction; resolves when it is mined with `confirmations` (status 0 included). */
  submit(spec: TxSpec): Promise<MinedTx> {
    if (this.closed) return Promise.reject(new LedgerError('TX_FAILED', `${spec.label}: the sender is closed`, { key: spec.key }));
    const timeoutMs = spec.timeoutMs ?? this.opts.txTimeoutMs;
    return new Promise<MinedTx>((resolve, reject) => {
      const job: Job = {
        spec,
        attempts: 0,
        collisions: 0,
        timeoutMs,
        deadline: Date.now() + timeoutMs,
        done: false,
        resolve: (m) => {
          if (job.done) return;
          job.done = true;
          resolve(m);
        },
        reject: (e) => {
          if (job.done) return;
          job.done = true;
          reject(e);
        },
      };
      this.queue.push(job);
      const idle = this.checkTimer === null;
      this.startWatchdog();
      // stalled by an earlier outage: find out now whether the node answers again
      if (idle && this.stalled) this.kickWatchdog();
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

  /** The first nonce neither the node nor this sender has used: never one bound to a tracked transaction. */
  private freeNonce(pending: number): number {
    let n = pending;
    for (const s of this.sent.values()) n = Math.max(n, s.nonce + 1);
    return n;
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
      while (!this.closed && !this.stalled && this.queue.length > 0 && this.sent.size < this.opts.maxInFlight) {
        const job = this.queue[0];
        if (job.done) {
          this.queue.shift();
          continue;
        }
        let fees: FeeSettings;
        let nonce: number;
        try {
          if (this.nextNonce === null || this.resync) {
            this.resync = false;
            this.nextNonce = this.freeNonce(await this.pendingNonce());
          }
          nonce = this.nextNonce;
          fees = await this.fees(job.spec.fees);
        } catch (e) {
          if (e instanceof LedgerError && e.code === 'UNREACHABLE') {
            // the node does not answer: the queue waits (bounded by each job's deadline) and the
            // watchdog resumes sending once the node answers again
            this.resync = true;
            this.stalled = true;
          } else {
            this.failQueued(e);
          }
          break;
        }
        this.queue.shift();
        let signed: { raw: string; hash: string };
        try {
          signed = this.sign(job.spec, fees, nonce);
        } catch (e) {
          job.reject(new LedgerError('TX_FAILED', `${job.spec.label}: cannot sign: ${(e as Error).message}`, { key: job.spec.key, cause: e }));
          continue;
        }
        const { raw, hash } = signed;
        try {
          await this.client.call('eth_sendRawTransaction', [raw], { send: true, retry: false, what: `sending ${job.spec.label}` });
          this.nextNonce = nonce + 1;
          this.track(job, nonce, hash, raw, false);
        } catch (err) {
          await this.recover(job, nonce, hash, raw, err);
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

  private track(job: Job, nonce: number, hash: string, raw: string, unconfirmed: boolean): void {
    const now = Date.now();
    this.sent.set(nonce, { job, nonce, hash, raw, seenAt: now, unconfirmed, rebroadcasts: 0, misses: 0, sentAt: now });
    // the block that mined it may already be known (automine, WebSocket heads): make sure a
    // scan at the latest head sees it, instead of waiting for a next block that may never come
    if (!this.unsubHeads) this.unsubHeads = this.client.onHead(() => void this.scan());
    else if (this.scanning) this.rescan = true;
    else if (this.client.latestHead > this.lastScanHead) void this.scan();
    this.startWatchdog();
  }

  /**
   * A send failed. Leave no nonce gap and never sign a second transaction for a nonce that may
   * still be mined: the transaction is in the node (track it), its nonce was taken by another
   * signer (re-sign from the node's nonce), the node misses earlier ones of ours (re-broadcast
   * them, then send this one again), or the node refused it (fail the job).
   */
  private async recover(job: Job, nonce: number, hash: string, raw: string, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    if (!(err instanceof NodeError)) {
      // no answer: whether the node got it is unknown. The nonce stays bound to this very
      // transaction, which the watchdog re-broadcasts once the node answers again.
      this.nextNonce = nonce + 1;
      this.track(job, nonce, hash, raw, true);
      this.stalled = true;
      return;
    }
    if (isKnown(err)) {
      this.nextNonce = nonce + 1;
      this.track(job, nonce, hash, raw, false);
      return;
    }
    let pending: number;
    try {
      pending = await this.pendingNonce();
    } catch {
      // refused, so its nonce is free again; send it anew once the node answers
      this.queue.unshift(job);
      this.nextNonce = nonce;
      this.resync = true;
      this.stalled = true;
      return;
    }
    if (pending > nonce) {
      // the nonce is used: by our transaction (e.g. hardhat automine reports a revert as a send
      // error although it mined the transaction) or by another signer of this key
      let ours = false;
      try {
        ours = isRecord(await this.client.call('eth_getTransactionByHash', [hash], { send: true }));
      } catch {
        ours = false;
      }
      if (ours) {
        this.track(job, nonce, hash, raw, false);
        this.nextNonce = this.freeNonce(pending);
        return;
      }
      this.nextNonce = this.freeNonce(pending);
      await this.collided(job, reason);
      return;
    }
    if (!isNonceTrouble(err)) {
      this.nextNonce = nonce;
      job.reject(new LedgerError('TX_FAILED', `the node refused ${job.spec.label}: ${err.body.message}`, { key: job.spec.key, cause: err }));
      return;
    }
    // the node holds fewer nonces than we sent (a gap: it lost earlier transactions of ours,
    // e.g. dropped from its pool or restarted): this one goes again after the watchdog has
    // re-broadcast the missing ones, in order
    this.nextNonce = nonce;
    this.queue.unshift(job);
    let ownGap = pending < nonce;
    for (let n = pending; n < nonce; n++) {
      const s = this.sent.get(n);
      if (s && !s.mined) s.unconfirmed = true;
      else ownGap = false;
    }
    if (!ownGap && ++job.attempts >= MAX_ATTEMPTS) {
      // a gap we cannot fill (nonces not ours), or a nonce error we do not understand
      this.queue.shift();
      this.resync = true;
      job.reject(new LedgerError('TX_FAILED', `${job.spec.label}: gave up after ${job.attempts} attempts: ${reason}`, { key: job.spec.key, cause: err }));
      return;
    }
    if (!ownGap) this.resync = true;
    this.stalled = true;
    this.kickWatchdog();
  }

  /** The nonce of `job` was taken by another signer of this key: re-sign it from the node's nonce. */
  private async collided(job: Job, reason: string): Promise<void> {
    this.collisions++;
    if (++job.collisions > MAX_COLLISIONS) {
      job.reject(
        new LedgerError(
          'TX_FAILED',
          `${job.spec.label}: its nonce was taken ${job.collisions - 1} times by another signer of ${this.address} (${reason}); ` +
            'another process or node sends with the same key as fast as we do (anchoring again is safe)',
          { key: job.spec.key },
        ),
      );
      return;
    }
    this.queue.unshift(job);
    // two senders in lockstep would collide on every nonce: step aside a little, at random
    if (job.collisions > 1) await sleep(Math.floor(Math.random() * 10 * Math.min(job.collisions, 10)));
  }

  private failQueued(e: unknown): void {
    const jobs = this.queue.splice(0);
    for (const j of jobs) {
      j.reject(
        e instanceof LedgerError
          ? new LedgerError(e.code, `${j.spec.label} not sent: ${e.message}`, { key: j.spec.key, cause: e })
          : new LedgerError('TX_FAILED', `${j.spec.label} not sent: ${String(e)}`, { key: j.spec.key, cause: e }),
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
      // node unreachable this time: the next block (or the watchdog) tries again; deadlines bound waits
    } finally {
      this.scanning = false;
    }
    if (this.sent.size === 0) this.unlisten();
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
      for (let i = 0; i < due.length; i++) {
        const s = due[i];
        const r = receipts[i];
        if (isRecord(r) && typeof r.blockNumber === 'string') {
          s.mined = parseReceipt(r, s.hash, s.job.spec.gasLimit, s.sentAt);
        } else if (r === null && ++s.misses >= 3 && this.sent.get(s.nonce) === s) {
          // the nonce was used by another transaction (same key elsewhere): ours will never be mined
          this.sent.delete(s.nonce);
          this.resync = true;
          await this.collided(s.job, `nonce ${s.nonce} was used by another transaction`);
        }
      }
    }
    for (const s of [...this.sent.values()]) {
      if (s.mined && head >= s.mined.block + Math.max(1, s.job.spec.confirmations) - 1) {
        this.sent.delete(s.nonce);
        s.job.resolve({ ...s.mined, minedAt: Date.now() });
      }
    }
  }

  // ---- watchdog: deadlines, re-broadcasts, resuming after an outage -------------------------

  private startWatchdog(): void {
    if (this.closed || this.checkTimer) return;
    this.checkTimer = setInterval(() => void this.check(), Math.min(CHECK_MS, this.opts.txTimeoutMs));
  }

  private kickWatchdog(): void {
    if (this.checking) {
      this.checkSoon = true;
      return;
    }
    setImmediate(() => void this.check());
  }

  private async check(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      do {
        this.checkSoon = false;
        this.expire();
        await this.rebroadcastMissing();
        // the node answered: sending may go on (after the re-broadcasts, so in nonce order)
        this.stalled = false;
        if (this.sent.size > 0) void this.scan();
        else void this.pump();
      } while (this.checkSoon && !this.closed);
    } catch {
      // the node does not answer: next time; deadlines bound the waits
    } finally {
      this.checking = false;
    }
    // nothing to look after: stop (also when stalled — the next submit restarts the watchdog,
    // whose first pass finds out whether the node answers again)
    if (this.sent.size === 0 && this.queue.length === 0) this.stopWatchdog();
  }

  /**
   * Re-broadcast, in nonce order, the signed transactions the node does not hold: not seen for
   * `rebroadcastAfterMs` (or never acknowledged) and `eth_getTransactionByHash` says null while
   * their nonce is still unused. Throws (UNREACHABLE) when the node does not answer.
   */
  private async rebroadcastMissing(): Promise<void> {
    const now = Date.now();
    const candidates = [...this.sent.values()]
      .filter((s) => !s.mined && (s.unconfirmed || now - s.seenAt >= this.rebroadcastAfterMs))
      .sort((a, b) => a.nonce - b.nonce)
      .slice(0, CHECK_BATCH);
    if (candidates.length === 0) {
      if (this.stalled) await this.pendingNonce(); // is the node back?
      return;
    }
    const minedCount = hexNum(
      await this.client.call('eth_getTransactionCount', [this.address, 'latest'], { what: 'checking transactions in flight' }),
      'nonce',
    );
    const open = candidates.filter((s) => s.nonce >= minedCount); // used nonces: the head scan settles them
    const held = await Promise.all(
      open.map((s) => this.client.call('eth_getTransactionByHash', [s.hash], { what: `looking for transaction ${s.hash}` })),
    );
    const missing: Sent[] = [];
    open.forEach((s, i) => {
      if (isRecord(held[i])) {
        s.seenAt = now;
        s.unconfirmed = false;
      } else {
        missing.push(s);
      }
    });
    for (const s of missing) {
      if (this.sent.get(s.nonce) !== s || s.mined) continue;
      try {
        await this.client.call('eth_sendRawTransaction', [s.raw], { send: true, retry: false, what: `re-broadcasting ${s.job.spec.label}` });
      } catch (e) {
        if (!(e instanceof NodeError)) throw e;
        if (!isKnown(e)) {
          // e.g. nonce too low: used meanwhile (the head scan settles it); anything else: the
          // later ones cannot go in before this one, try again next time
          s.seenAt = Date.now();
          break;
        }
      }
      s.seenAt = Date.now();
      s.unconfirmed = false;
      s.rebroadcasts++;
      this.rebroadcasts++;
    }
  }

  /** Jobs past their deadline fail: TIMEOUT, or UNREACHABLE when the node does not answer. */
  private expire(): void {
    const now = Date.now();
    const down = this.client.state !== 'connected';
    const why = (job: Job) =>
      `${job.spec.key ? `anchoring key ${job.spec.key}: ` : ''}${job.spec.label}`;
    let any = false;
    for (const s of [...this.sent.values()]) {
      if (!s.mined && now > s.job.deadline) {
        this.sent.delete(s.nonce);
        any = true;
        s.job.reject(
          new LedgerError(
            down ? 'UNREACHABLE' : 'TIMEOUT',
            `${why(s.job)}: transaction ${s.hash} (nonce ${s.nonce}) not mined within ${s.job.timeoutMs} ms` +
              `${down ? ` and the node ${this.client.rpcUrl} does not answer` : ''}` +
              `${s.rebroadcasts ? ` (re-broadcast ${s.rebroadcasts} times)` : ''}; it may still be mined later (anchoring again is safe)`,
            { key: s.job.spec.key },
          ),
        );
      }
    }
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const j = this.queue[i];
      if (now > j.deadline || j.done) {
        this.queue.splice(i, 1);
        j.reject(
          new LedgerError(
            down ? 'UNREACHABLE' : 'TIMEOUT',
            `${why(j)}: not sent within ${j.timeoutMs} ms${down ? `: the node ${this.client.rpcUrl} does not answer` : ''}`,
            { key: j.spec.key },
          ),
        );
      }
    }
    if (any) this.resync = true;
    if (this.sent.size === 0) this.unlisten();
  }

  private unlisten(): void {
    this.unsubHeads?.();
    this.unsubHeads = null;
  }

  private stopWatchdog(): void {
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.checkTimer = null;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const j of this.queue.splice(0)) {
      j.reject(new LedgerError('TX_FAILED', `${j.spec.label}: the ledger was closed before it was sent`, { key: j.spec.key }));
    }
    for (const s of this.sent.values()) {
      s.job.reject(
        new LedgerError('TIMEOUT', `${s.job.spec.label}: the ledger was closed while transaction ${s.hash} waited to be mined; it may still be mined`, {
          key: s.job.spec.key,
        }),
      );
    }
    this.sent.clear();
    this.unlisten();
    this.stopWatchdog();
    this.client.release();
  }
}

// ---- one sender per (chain, node, account) in the process ------------------------------------

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1', '0.0.0.0']);

/**
 * One spelling per node: scheme family (http/ws, https/wss: one server answers both on a port),
 * lower-case host with every loopback spelling as one, explicit port, no trailing slash, no
 * password. `http://localhost:8545/` and `http://127.0.0.1:8545` are the same node.
 */
export function normaliseRpcUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  const tls = u.protocol === 'https:' || u.protocol === 'wss:';
  const host = LOOPBACK.has(u.hostname.toLowerCase()) || /^127\./.test(u.hostname) ? 'loopback' : u.hostname.toLowerCase();
  const port = u.port || (tls ? '443' : '80');
  const path = u.pathname.replace(/\/+$/, '');
  const user = u.username ? `${decodeURIComponent(u.username)}@` : '';
  return `${tls ? 'tls' : 'plain'}://${user}${host}:${port}${path}${u.search}`;
}

const senders = new Map<string, AccountSender>();

const senderId = (chainId: bigint, rpcUrl: string, address: string) => `${chainId}|${normaliseRpcUrl(rpcUrl)}|${address.toLowerCase()}`;

/**
 * The process-wide sender for this key on this chain and node: created on first use with
 * `client` (which it retains) and `opts`; later callers share it. The per-account settings
 * (`maxInFlight`, `rebroadcastAfterMs`, and the receipt polling of the first caller's client)
 * stay those of the first caller: a later caller asking for other values is told through
 * `onConflict` (the ledger turns it into a warning). `txTimeoutMs` is per transaction
 * (TxSpec.timeoutMs) and never conflicts. Pair every acquire with `releaseSender`.
 */
export function acquireSender(
  client: ChainClient,
  privateKey: string,
  opts: SenderOptions,
  onConflict?: (message: string) => void,
): AccountSender {
  const address = computeAddress(new SigningKey(privateKey).publicKey);
  const id = senderId(client.network.chainId, client.rpcUrl, address);
  const have = senders.get(id);
  if (have && !have.client.isClosed) {
    have.refs++;
    const differ: string[] = [];
    if (have.opts.maxInFlight !== opts.maxInFlight) differ.push(`maxInFlight ${opts.maxInFlight} (in use: ${have.opts.maxInFlight})`);
    const rb = (o: SenderOptions) => o.rebroadcastAfterMs ?? 3000;
    if (rb(have.opts) !== rb(opts)) differ.push(`rebroadcastAfterMs ${rb(opts)} (in use: ${rb(have.opts)})`);
    if (differ.length > 0 && onConflict) {
      onConflict(
        `account ${address} on ${client.rpcUrl} already has a send queue (one nonce queue per account and node): ` +
          `its settings stay, this connection's ${differ.join(', ')} are ignored — give every connection that signs with this key the same values`,
      );
    }
    return have;
  }
  const s = new AccountSender(client.retain(), privateKey, opts);
  senders.set(id, s);
  return s;
}

export function releaseSender(s: AccountSender): void {
  if (--s.refs > 0) return;
  const id = senderId(s.client.network.chainId, s.client.rpcUrl, s.address);
  if (senders.get(id) === s) senders.delete(id);
  s.close();
}
