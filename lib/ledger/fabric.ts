/**
 * Hyperledger Fabric ledger adapter (@hyperledger/fabric-gateway 1.11 over @grpc/grpc-js): anchors
 * (scope, key, hash) triples with the `sets-registry` chaincode (contracts/fabric), behind the same
 * `Ledger` interface, result shapes and error codes as the EVM adapter.
 *
 * - The writer is the client identity that signs: `mspId::subject` (the chaincode says which in
 *   every answer). A peer answers only signed proposals, so the private key is required.
 * - Connects lazily: one gRPC client (TLS with the configured CA and server-name override, or
 *   plaintext when `insecure`) and one Gateway per ledger; every evaluate / endorse / submit /
 *   commit-status request holds one of `maxInFlight` slots (peer gateways cap concurrent requests).
 * - Writes: concurrent anchor()/anchorMany() calls within `coalescing` ms share one AnchorMany
 *   transaction (at most maxBatchSize entries). The endorsement is the pre-check: the chaincode
 *   answers `existing` for a hash this writer already holds (then nothing is submitted when every
 *   entry is), and refuses KEY_TAKEN / NOT_AUTHORISED / BAD_INPUT before anything is ordered. A
 *   refused batch that carried several calls is endorsed again call by call, so one caller's
 *   problem never fails another. A transaction invalidated at commit (MVCC_READ_CONFLICT,
 *   PHANTOM_READ_CONFLICT) is decided by reading again: this writer holds the hashes → existing;
 *   another hash → KEY_TAKEN; nothing → endorsed and submitted again (at most 3 times).
 * - Reads (ReadCTIRecords / ReadCTIRecordsMany) coalesce like writes. A Fabric read knows the
 *   transaction id of each anchor, not its block: `LedgerRecord.block` stays undefined, and a
 *   receipt of an `existing` anchor names the block only when this ledger saw that transaction commit
 *   (else 0).
 * - waitForAnchor: one ChaincodeEvents stream per ledger while anything waits (checkpointed in
 *   memory: after a cut it resumes after the last event seen), reconnected with backoff; while
 *   it is down the awaited keys are read every `pollMs`. Each waiter reads first, and one final
 *   read decides at the deadline (UNREACHABLE when that read fails, never [] for "could not look").
 */
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  checkpointers,
  connect,
  hash as hashes,
  signers,
  StatusCode,
  type ChaincodeEvent,
  type Checkpointer,
  type CloseableAsyncIterable,
  type Contract,
  type Gateway,
  type Network,
} from '@hyperledger/fabric-gateway';
import {
  ANY_SCOPE,
  checkAnchorEntries,
  checkBytes32 as bytes32,
  LedgerError,
  type AnchorEntry,
  type AnchorReceipt,
  type Ledger,
  type LedgerRecord,
  type LedgerState,
  type LookupQuery,
  type WriterStatus,
} from './ledger';
import { certificateAttributes, fabricSettings, isUnreachable, mapGatewayError, type FabricLedgerConfig, type FabricSettings } from './fabric-config';

export { type FabricLedgerConfig } from './fabric-config';

const ZERO32 = '0x' + '0'.repeat(64);
/** attempts of one batch after MVCC / phantom conflicts: the first + 3 retries */
const MAX_ATTEMPTS = 4;
/** transaction id -> block: the commits this ledger saw (receipts of `existing` anchors) */
const BLOCK_CACHE_MAX = 20_000;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const short = (h: string) => `${h.slice(0, 10)}…`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

interface Entry {
  scope: string;
  key: string;
  hash: string;
}

/** One anchor as the chaincode reports it (ReadCTIRecords). */
interface RawRecord extends LedgerRecord {
  txId: string;
}

interface ReadQuery {
  scope: string;
  key: string;
  /** identity tag, '' = no creator named */
  identity: string;
}

interface ReadReq extends ReadQuery {
  resolve: (r: RawRecord[]) => void;
  reject: (e: unknown) => void;
}

interface AnchorCall {
  input: Entry[];
  /** one entry per key */
  list: Entry[];
  queued: number;
  finished: boolean;
  blocked: boolean;
  resolve: (r: AnchorReceipt[]) => void;
  reject: (e: LedgerError) => void;
}

interface Waiter {
  key: string;
  scope: string;
  identity: string;
  timeoutMs: number;
  resolve: (r: LedgerRecord[]) => void;
  reject: (e: LedgerError) => void;
  timer: NodeJS.Timeout;
  done: boolean;
}

interface Connection {
  client: grpc.Client;
  gateway: Gateway;
  network: Network;
  contract: Contract;
}

/** `mspId::/C=…/O=…/CN=…` as fabric-shim's ClientIdentity formats a subject (a guess until the chaincode names the writer). */
function localWriter(mspId: string, cert: X509Certificate): string {
  const dn = cert.subject
    .split('\n')
    .filter(Boolean)
    .map((rdn) => `/${rdn.replace('/', '\\/')}`)
    .join('');
  return `${mspId}::${dn}`;
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  const text = Buffer.from(bytes).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new LedgerError('BAD_CONFIG', `${what}: the chaincode answered ${JSON.stringify(text.slice(0, 80))}, not JSON — is this the sets-registry chaincode?`);
  }
}

function parseRecords(v: unknown, key: string, what: string): RawRecord[] {
  if (!Array.isArray(v)) throw new LedgerError('BAD_CONFIG', `${what}: expected an array of records from the chaincode, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v.map((r) => {
    if (!isRecord(r) || typeof r.hash !== 'string' || typeof r.writer !== 'string' || typeof r.txId !== 'string' || typeof r.timestamp !== 'number' || typeof r.entitled !== 'boolean') {
      throw new LedgerError('BAD_CONFIG', `${what}: a record from the chaincode is not shaped {key, hash, writer, txId, timestamp, entitled}: ${JSON.stringify(r)?.slice(0, 120)}`);
    }
    return { key, hash: r.hash.toLowerCase(), writer: r.writer, timestamp: r.timestamp, entitled: r.entitled, txId: r.txId };
  });
}

const publicRecord = (r: RawRecord): LedgerRecord => ({ key: r.key, hash: r.hash, writer: r.writer, timestamp: r.timestamp, entitled: r.entitled });

export class FabricLedger implements Ledger {
  readonly peerEndpoint: string;
  readonly channel: string;
  readonly chaincode: string;
  readonly mspId: string;
  private readonly s: FabricSettings;
  private readonly cert: X509Certificate;
  /** the writer string of this identity (learnt from the chaincode; the local guess until then) */
  private me: string;
  private meKnown = false;
  private conn: Connection | null = null;
  private closed = false;
  private currentState: LedgerState = 'connecting';
  private stateListeners = new Set<(s: LedgerState, detail?: string) => void>();
  private healthTimer: NodeJS.Timeout | null = null;
  private lastOk = 0;

  // bounded concurrency: requests in flight, and those waiting for a slot
  private active = 0;
  private slotQueue: Array<() => void> = [];

  private readQueue: ReadReq[] = [];
  private readTimer: NodeJS.Timeout | null = null;
  private anchorQueue: AnchorCall[] = [];
  private anchorQueued = 0;
  private anchorTimer: NodeJS.Timeout | null = null;
  private blocks = new Map<string, number>();
  private counters = { reads: 0, readCalls: 0, endorsements: 0, submitted: 0, conflicts: 0, events: 0, streamStarts: 0 };

  // waiting for anchors
  private waiters = new Map<string, Set<Waiter>>();
  private streamGen = 0;
  private events: CloseableAsyncIterable<ChaincodeEvent> | null = null;
  private streamUp = false;
  private checkpointer: Checkpointer | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private backoffMs = 0;
  private streamError: LedgerError | null = null;

  /** Throws LedgerError BAD_CONFIG for configuration that cannot work; connects lazily. */
  constructor(config: FabricLedgerConfig) {
    this.s = fabricSettings(config);
    this.peerEndpoint = this.s.peerEndpoint;
    this.channel = this.s.channel;
    this.chaincode = this.s.chaincode;
    this.mspId = this.s.mspId;
    this.cert = new X509Certificate(this.s.certificate);
    this.me = localWriter(this.s.mspId, this.cert);
    if (this.s.healthCheckMs > 0) {
      this.healthTimer = setInterval(() => void this.healthCheck(), this.s.healthCheckMs);
      this.healthTimer.unref();
    }
  }

  /** The writer string of this identity (`mspId::subject`; as the chaincode formats it once it answered). */
  get writer(): string {
    return this.me;
  }

  private where(): string {
    return `chaincode ${this.chaincode} on channel ${this.channel} at ${this.peerEndpoint}`;
  }

  // ---- state -----------------------------------------------------------------------------------

  get state(): LedgerState {
    return this.currentState;
  }

  onState(listener: (state: LedgerState, detail?: string) => void): () => void {
    this.stateListeners.add(listener);
    return () => {
      this.stateListeners.delete(listener);
    };
  }

  private setState(s: LedgerState, detail?: string): void {
    if (this.closed || s === this.currentState) return;
    this.currentState = s;
    for (const l of [...this.stateListeners]) {
      try {
        l(s, detail);
      } catch {
        // not ours to handle
      }
    }
  }

  /** A request answered: connected. A request failed: disconnected (peer unreachable) or error (configuration). */
  private noteOk(): void {
    this.lastOk = Date.now();
    this.setState('connected');
  }

  private noteFailure(e: LedgerError): void {
    if (e.code === 'UNREACHABLE') this.setState('disconnected', e.message);
    else if (e.code === 'BAD_CONFIG') this.setState('error', e.message);
    else this.noteOk(); // the peer answered (a chaincode refusal is an answer)
  }

  private async healthCheck(): Promise<void> {
    if (this.closed || Date.now() - this.lastOk < this.s.healthCheckMs / 2) return;
    try {
      await this.evaluate('WriterStatus', [ANY_SCOPE], 'checking the connection');
      if (this.waiters.size > 0 && !this.streamUp && !this.reconnectTimer) this.startEvents();
    } catch {
      // a hung stream does not fail by itself: the failed probe ends it (polling takes over)
      if (this.events) this.streamDown(this.streamGen, new LedgerError('UNREACHABLE', 'the connection check failed'));
    }
  }

  // ---- connection and requests -----------------------------------------------------------------

  private connection(): Connection {
    if (this.closed) throw new LedgerError('BAD_CONFIG', 'the ledger is closed');
    if (this.conn) return this.conn;
    const s = this.s;
    const creds = s.tlsCaCert ? grpc.credentials.createSsl(Buffer.from(s.tlsCaCert)) : grpc.credentials.createInsecure();
    const options: grpc.ChannelOptions = {
      // come back within seconds after a peer outage (the default backoff grows to 2 minutes)
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 5000,
      'grpc.max_receive_message_length': 100 * 1024 * 1024,
    };
    if (s.serverNameOverride) {
      options['grpc.ssl_target_name_override'] = s.serverNameOverride;
      options['grpc.default_authority'] = s.serverNameOverride;
    }
    const client = new grpc.Client(s.peerEndpoint, creds, options);
    const deadline = (ms: number) => () => ({ deadline: Date.now() + ms });
    const gateway = connect({
      client,
      identity: { mspId: s.mspId, credentials: Buffer.from(s.certificate) },
      signer: signers.newPrivateKeySigner(s.privateKey),
      hash: hashes.sha256,
      evaluateOptions: deadline(s.requestTimeoutMs),
      endorseOptions: deadline(s.requestTimeoutMs),
      submitOptions: deadline(s.requestTimeoutMs),
      commitStatusOptions: deadline(s.commitTimeoutMs),
    });
    const network = gateway.getNetwork(s.channel);
    const contract = network.getContract(s.chaincode, s.contract);
    this.conn = { client, gateway, network, contract };
    return this.conn;
  }

  /** Run `fn` holding one of maxInFlight request slots. */
  private async withSlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.s.maxInFlight) await new Promise<void>((r) => this.slotQueue.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.slotQueue.shift();
      if (next) next(); // the slot passes on
      else this.active--;
    }
  }

  private async evaluate(fn: string, args: string[], what: string): Promise<unknown> {
    const contract = this.connection().contract;
    let out: Uint8Array;
    try {
      out = await this.withSlot(() => contract.evaluateTransaction(fn, ...args));
    } catch (e) {
      const le = mapGatewayError(e, `${what} (${fn} on ${this.where()})`);
      this.noteFailure(le);
      throw le;
    }
    this.noteOk();
    const v = parseJson(out, `${fn} on ${this.where()}`);
    if (isRecord(v) && typeof v.account === 'string' && fn === 'WriterStatus') this.learnWriter(v.account);
    return v;
  }

  private learnWriter(w: string): void {
    if (w && (!this.meKnown || w !== this.me)) {
      this.me = w;
      this.meKnown = true;
    }
  }

  // ---- reads -----------------------------------------------------------------------------------

  private read(q: ReadQuery): Promise<RawRecord[]> {
    this.counters.reads++;
    if (this.s.coalesceMs === 0) return this.readManyRaw([q]).then((r) => r[0]);
    return new Promise<RawRecord[]>((resolve, reject) => {
      this.readQueue.push({ ...q, resolve, reject });
      if (this.readQueue.length >= this.s.readBatchSize) this.flushReads();
      else this.readTimer ??= setTimeout(() => this.flushReads(), this.s.coalesceMs);
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

  /** Many reads in as few evaluations as possible (identical queries asked once), results in query order. */
  private async readManyRaw(queries: ReadQuery[]): Promise<RawRecord[][]> {
    const index = new Map<string, number>();
    const uniq: ReadQuery[] = [];
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
    const chunks: ReadQuery[][] = [];
    for (let i = 0; i < uniq.length; i += this.s.readBatchSize) chunks.push(uniq.slice(i, i + this.s.readBatchSize));
    this.counters.readCalls += chunks.length;
    const results = await Promise.all(chunks.map((c) => this.readChunk(c)));
    const flat = results.flat();
    return slot.map((i) => flat[i].map((r) => ({ ...r })));
  }

  private async readChunk(qs: ReadQuery[]): Promise<RawRecord[][]> {
    if (qs.length === 1) {
      const q = qs[0];
      const v = await this.evaluate('ReadCTIRecords', [q.scope, q.key, q.identity], `reading key ${short(q.key)}`);
      return [parseRecords(v, q.key, 'ReadCTIRecords')];
    }
    const arg = JSON.stringify(qs.map((q) => (q.identity ? { scope: q.scope, key: q.key, identity: q.identity } : { scope: q.scope, key: q.key })));
    const v = await this.evaluate('ReadCTIRecordsMany', [arg], `reading ${qs.length} keys`);
    if (!Array.isArray(v) || v.length !== qs.length) {
      throw new LedgerError('BAD_CONFIG', `ReadCTIRecordsMany on ${this.where()}: expected ${qs.length} answers, got ${JSON.stringify(v)?.slice(0, 80)}`);
    }
    return v.map((recs, i) => parseRecords(recs, qs[i].key, 'ReadCTIRecordsMany'));
  }

  private static identityArg(identity: string | undefined): string {
    if (identity === undefined) return '';
    const id = bytes32(identity, 'identity');
    return id === ZERO32 ? '' : id;
  }

  async lookup(scope: string, key: string, identity?: string): Promise<LedgerRecord[]> {
    const q = { scope: bytes32(scope, 'scope'), key: bytes32(key, 'key'), identity: FabricLedger.identityArg(identity) };
    return (await this.read(q)).map(publicRecord);
  }

  /** `lookup` for many queries: ceil(n / readBatchSize) ReadCTIRecordsMany evaluations, results in query order. */
  async lookupMany(queries: LookupQuery[]): Promise<LedgerRecord[][]> {
    if (!Array.isArray(queries)) throw new LedgerError('BAD_INPUT', 'lookupMany expects an array of {scope, key, identity?}');
    const qs = queries.map((q, i) => {
      if (!isRecord(q)) throw new LedgerError('BAD_INPUT', `query ${i} is not a {scope, key, identity?} object`);
      return { scope: bytes32(q.scope, 'scope'), key: bytes32(q.key, 'key'), identity: FabricLedger.identityArg(q.identity as string | undefined) };
    });
    if (qs.length === 0) return [];
    this.counters.reads += qs.length;
    return (await this.readManyRaw(qs)).map((recs) => recs.map(publicRecord));
  }

  /** Where this identity may write (`scope` defaults to ANY_SCOPE), as the chaincode judges it now. */
  async writerStatus(scope: string = ANY_SCOPE): Promise<WriterStatus> {
    const s = bytes32(scope, 'scope');
    const v = await this.evaluate('WriterStatus', [s], 'asking where this identity may write');
    if (!isRecord(v) || typeof v.account !== 'string' || typeof v.anyScope !== 'boolean' || typeof v.inScope !== 'boolean') {
      throw new LedgerError('BAD_CONFIG', `WriterStatus on ${this.where()}: unexpected answer ${JSON.stringify(v)?.slice(0, 80)}`);
    }
    return { account: v.account, anyScope: v.anyScope, inScope: v.inScope };
  }

  /** The chaincode's admin (and a proposed successor); BAD_CONFIG "not initialised" before Initialize ran. */
  async registryAdmin(): Promise<{ admin: string; pendingAdmin: string }> {
    const v = await this.evaluate('GetAdmin', [], 'asking for the chaincode admin');
    if (!isRecord(v) || typeof v.admin !== 'string') throw new LedgerError('BAD_CONFIG', `GetAdmin on ${this.where()}: unexpected answer ${JSON.stringify(v)?.slice(0, 80)}`);
    return { admin: v.admin, pendingAdmin: typeof v.pendingAdmin === 'string' ? v.pendingAdmin : '' };
  }

  /** The principals that may name this identity in a grant: its MSP, each certificate attribute, itself. */
  principals(): string[] {
    const attrs = certificateAttributes(this.cert);
    return [this.mspId, ...Object.entries(attrs).map(([k, v]) => `${this.mspId}#${k}=${v}`), this.me];
  }

  /**
   * How much this identity is granted (connection tests): every collection, or the number of
   * collection scopes granted to any principal naming it (its MSP, a certificate attribute, itself).
   */
  async writerGrants(): Promise<{ account: string; anyScope: boolean; scopes: number }> {
    const st = await this.writerStatus(ANY_SCOPE);
    const lists = await Promise.all(this.principals().map((p) => this.evaluate('GrantsOf', [p], `listing the grants of ${p}`)));
    const scopes = new Set<string>();
    for (const l of lists) if (Array.isArray(l)) for (const x of l) if (typeof x === 'string' && x.toLowerCase() !== ANY_SCOPE) scopes.add(x.toLowerCase());
    return { account: st.account, anyScope: st.anyScope, scopes: scopes.size };
  }

  // ---- writes ----------------------------------------------------------------------------------

  async anchor(scope: string, key: string, hash: string): Promise<AnchorReceipt> {
    const [r] = await this.anchorEntries(checkAnchorEntries([{ scope, key, hash }]));
    return r;
  }

  async anchorMany(entries: AnchorEntry[]): Promise<AnchorReceipt[]> {
    const list = checkAnchorEntries(entries);
    if (list.length === 0) return [];
    return this.anchorEntries(list);
  }

  private anchorEntries(entries: Entry[]): Promise<AnchorReceipt[]> {
    const queued = Date.now();
    const wanted = new Map<string, Entry>();
    for (const e of entries) {
      const prev = wanted.get(e.key);
      if (prev !== undefined && prev.hash !== e.hash) return Promise.reject(new LedgerError('BAD_INPUT', `key ${e.key} appears twice with different hashes`, { key: e.key }));
      wanted.set(e.key, e);
    }
    if (this.closed) return Promise.reject(new LedgerError('TX_FAILED', 'the ledger is closed'));
    return new Promise<AnchorReceipt[]>((resolve, reject) => {
      const call: AnchorCall = {
        input: entries,
        list: [...wanted.values()],
        queued,
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
      if (this.s.coalesceMs === 0 || call.list.length >= this.s.maxBatchSize) {
        void this.runAnchors([call]);
        return;
      }
      this.anchorQueue.push(call);
      this.anchorQueued += call.list.length;
      if (this.anchorQueued >= this.s.maxBatchSize) this.flushAnchors();
      else this.anchorTimer ??= setTimeout(() => this.flushAnchors(), this.s.coalesceMs);
    });
  }

  /**
   * The window closed (or a batch is full): the waiting calls go together — except a call naming
   * a key that an earlier call of this batch writes: it waits until that batch is settled, and its
   * endorsement then says what is there (the same hash → existing, another → KEY_TAKEN).
   */
  private flushAnchors(): void {
    if (this.anchorTimer) clearTimeout(this.anchorTimer);
    this.anchorTimer = null;
    const calls = this.anchorQueue.splice(0);
    this.anchorQueued = 0;
    const keys = new Set<string>();
    const now: AnchorCall[] = [];
    const deferred: AnchorCall[] = [];
    for (const c of calls) {
      if (c.finished) continue;
      const conflict = c.list.some((e) => keys.has(e.key));
      if (c.blocked || conflict || (now.length > 0 && this.sizeOf(now) + c.list.length > this.s.maxBatchSize)) {
        this.anchorQueue.push(c);
        this.anchorQueued += c.list.length;
        if (!c.blocked && conflict) deferred.push(c);
        continue;
      }
      for (const e of c.list) keys.add(e.key);
      now.push(c);
    }
    for (const c of deferred) c.blocked = true;
    if (now.length > 0) {
      void this.runAnchors(now).finally(() => {
        for (const c of deferred) c.blocked = false;
        if (deferred.length > 0 && !this.closed) this.anchorTimer ??= setTimeout(() => this.flushAnchors(), this.s.coalesceMs);
      });
    }
    if (this.anchorQueue.some((c) => !c.blocked)) this.anchorTimer ??= setTimeout(() => this.flushAnchors(), this.s.coalesceMs);
  }

  private sizeOf(calls: AnchorCall[]): number {
    return calls.reduce((n, c) => n + c.list.length, 0);
  }

  /** Settle the calls of one batch: each gets its receipts or its own error (never an unhandled rejection). */
  private async runAnchors(calls: AnchorCall[]): Promise<void> {
    try {
      await this.runAnchorsOnce(calls);
    } catch (e) {
      const failure = e instanceof LedgerError ? e : new LedgerError('TX_FAILED', String(e), { cause: e });
      for (const c of calls) c.reject(failure);
    }
  }

  private async runAnchorsOnce(calls: AnchorCall[]): Promise<void> {
    const live = calls.filter((c) => !c.finished);
    if (live.length === 0) return;
    const union = new Map<string, Entry>();
    for (const c of live) for (const e of c.list) union.set(e.key, e);
    const list = [...union.values()];
    const chunks: Entry[][] = [];
    for (let i = 0; i < list.length; i += this.s.maxBatchSize) chunks.push(list.slice(i, i + this.s.maxBatchSize));
    const done = new Map<string, AnchorReceipt>();
    const settled = await Promise.allSettled(chunks.map((ch) => this.writeChunk(ch)));
    const again = new Set<AnchorCall>();
    const failed = new Map<AnchorCall, LedgerError>();
    settled.forEach((st, i) => {
      if (st.status === 'fulfilled') {
        for (const r of st.value) done.set(r.key, r);
        return;
      }
      const failure = st.reason instanceof LedgerError ? st.reason : new LedgerError('TX_FAILED', String(st.reason), { cause: st.reason });
      const keys = new Set(chunks[i].map((e) => e.key));
      const involved = live.filter((c) => c.list.some((e) => keys.has(e.key)));
      // refused by the chaincode while it carried several calls: each again on its own, so that one
      // call's problem (a KEY_TAKEN, a scope it is not granted) is not another's
      const refusal = failure.code === 'KEY_TAKEN' || failure.code === 'NOT_AUTHORISED' || failure.code === 'BAD_INPUT';
      if (involved.length > 1 && refusal) for (const c of involved) again.add(c);
      else for (const c of involved) if (!failed.has(c)) failed.set(c, failure);
    });
    for (const c of live) {
      if (again.has(c)) continue;
      const f = failed.get(c);
      if (f) {
        const got = c.list.filter((e) => done.has(e.key)).length;
        c.reject(
          got > 0
            ? new LedgerError(f.code, `${f.message} [anchorMany: ${got} of ${c.list.length} keys are anchored, the others not; anchoring again is safe]`, { key: f.key, cause: f })
            : f,
        );
        continue;
      }
      c.resolve(
        c.input.map((e) => {
          const r = done.get(e.key) as AnchorReceipt;
          const t = r.timings ?? { queued: c.queued, sent: c.queued, mined: c.queued };
          return { ...r, timings: { queued: c.queued, sent: t.sent, mined: t.mined } };
        }),
      );
    }
    if (again.size > 0) await Promise.all([...again].map((c) => this.runAnchors([c])));
  }

  /** The key a chaincode refusal names (its message names it), else the first of the batch. */
  private keyOf(e: LedgerError, entries: Entry[]): LedgerError {
    const msg = e.message.toLowerCase();
    const named = entries.find((x) => msg.includes(x.key));
    const key = named?.key ?? entries[0]?.key;
    let message = e.message;
    if (e.code === 'NOT_AUTHORISED') {
      const scopes = [...new Set(entries.map((x) => x.scope))];
      const scope = scopes.find((s) => msg.includes(s)) ?? scopes[0];
      message =
        `${this.me} may not anchor in scope ${scope} on ${this.where()}: ${e.message} ` +
        `(the chaincode admin grants it with GrantWriter(<principal>, ${scope}) — the principal ${this.mspId}, ${this.mspId}#<attribute>=<value> or ${this.me})`;
    } else if (e.code === 'KEY_TAKEN' && !message.includes(this.me)) {
      message = `you (${this.me}) already anchored a different hash under key ${key}; the registry is write-once per writer (${e.message})`;
    }
    return new LedgerError(e.code, message, { key, cause: e });
  }

  /**
   * One AnchorMany (Anchor for a single entry) transaction: endorse (the chaincode's answer is
   * the pre-check), submit unless every entry is already held, wait for the commit status. An
   * MVCC / phantom conflict at commit is decided by reading again (existing / KEY_TAKEN / retry).
   */
  private async writeChunk(entries: Entry[]): Promise<AnchorReceipt[]> {
    const contract = this.connection().contract;
    const single = entries.length === 1;
    const fn = single ? 'Anchor' : 'AnchorMany';
    const args = single ? [entries[0].scope, entries[0].key, entries[0].hash] : [JSON.stringify(entries.map((e) => ({ scope: e.scope, key: e.key, hash: e.hash })))];
    const label = single ? `Anchor(${short(entries[0].key)})` : `AnchorMany(${entries.length} keys from ${short(entries[0].key)})`;
    let lastConflict = '';
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const sent = Date.now();
      const proposal = contract.newProposal(fn, { arguments: args });
      let tx;
      try {
        this.counters.endorsements++;
        tx = await this.withSlot(() => proposal.endorse());
      } catch (e) {
        const le = mapGatewayError(e, `${label}: endorsement on ${this.where()}`, entries[0].key);
        this.noteFailure(le);
        throw this.keyOf(le, entries);
      }
      this.noteOk();
      const result = parseJson(tx.getResult(), `${fn} on ${this.where()}`);
      if (!isRecord(result) || typeof result.writer !== 'string') throw new LedgerError('BAD_CONFIG', `${fn} on ${this.where()}: unexpected answer ${JSON.stringify(result)?.slice(0, 80)}`);
      this.learnWriter(result.writer);
      const existing: boolean[] = single ? [result.existing === true] : Array.isArray(result.existing) ? result.existing.map((x) => x === true) : [];
      if (existing.length !== entries.length) throw new LedgerError('BAD_CONFIG', `${fn} on ${this.where()}: expected ${entries.length} existing flags, got ${JSON.stringify(result.existing)?.slice(0, 80)}`);
      if (existing.every(Boolean)) return this.existingReceipts(entries);
      const txId = tx.getTransactionId();
      let submitted;
      try {
        this.counters.submitted++;
        submitted = await this.withSlot(() => tx.submit());
      } catch (e) {
        const le = mapGatewayError(e, `${label}: submitting transaction ${txId} to ${this.where()}`, entries[0].key);
        this.noteFailure(le);
        throw le;
      }
      const status = await this.commitStatus(submitted, txId, label, entries[0].key);
      const mined = Date.now();
      this.rememberBlock(txId, Number(status.blockNumber));
      if (status.successful) {
        const olds = entries.filter((_, i) => existing[i]);
        const oldReceipts = olds.length > 0 ? await this.existingReceipts(olds) : [];
        const byKey = new Map(oldReceipts.map((r) => [r.key, r]));
        return entries.map(
          (e, i): AnchorReceipt =>
            existing[i]
              ? (byKey.get(e.key) as AnchorReceipt)
              : { key: e.key, hash: e.hash, tx: txId, block: Number(status.blockNumber), writer: this.me, timings: { queued: 0, sent, mined } },
        );
      }
      if (status.code !== StatusCode.MVCC_READ_CONFLICT && status.code !== StatusCode.PHANTOM_READ_CONFLICT) {
        throw new LedgerError('TX_FAILED', `${label}: transaction ${txId} was invalidated at commit in block ${status.blockNumber} with status ${statusName(status.code)}`, { key: entries[0].key });
      }
      // invalidated by a concurrent write: what is there now decides
      this.counters.conflicts++;
      lastConflict = `transaction ${txId}: ${statusName(status.code)} in block ${status.blockNumber}`;
      const mine = await this.heldBy(entries);
      const taken = entries.find((e) => mine.has(e.key) && mine.get(e.key)?.hash !== e.hash);
      if (taken) {
        throw new LedgerError('KEY_TAKEN', `you (${this.me}) already anchored a different hash under key ${taken.key} (${mine.get(taken.key)?.hash}, not ${taken.hash}); the registry is write-once per writer`, {
          key: taken.key,
        });
      }
      if (entries.every((e) => mine.has(e.key))) return this.existingReceipts(entries, mine);
      if (attempt < MAX_ATTEMPTS) await sleep(20 * attempt + Math.floor(Math.random() * 30));
    }
    throw new LedgerError('TX_FAILED', `${label}: invalidated by concurrent writes ${MAX_ATTEMPTS} times (last: ${lastConflict}); anchoring again is safe`, { key: entries[0].key });
  }

  /** The commit status of a submitted transaction, waiting through peer outages until commitTimeoutMs. */
  private async commitStatus(
    submitted: { getStatus(o?: grpc.CallOptions): Promise<{ blockNumber: bigint; code: number; successful: boolean }> },
    txId: string,
    label: string,
    key: string,
  ): Promise<{ blockNumber: bigint; code: number; successful: boolean }> {
    const deadline = Date.now() + this.s.commitTimeoutMs;
    let last: LedgerError | null = null;
    while (Date.now() < deadline) {
      try {
        const st = await this.withSlot(() => submitted.getStatus({ deadline }));
        this.noteOk();
        return st;
      } catch (e) {
        last = mapGatewayError(e, `${label}: waiting for transaction ${txId} to commit on ${this.where()}`, key);
        if (!isUnreachable(e)) {
          this.noteFailure(last);
          throw last;
        }
        if (Date.now() < deadline - 10) {
          this.noteFailure(last);
          await sleep(Math.min(500, Math.max(0, deadline - Date.now())));
        }
      }
    }
    const detail = last ? ` (last: ${last.message})` : '';
    throw new LedgerError(
      last && this.currentState === 'disconnected' ? 'UNREACHABLE' : 'TIMEOUT',
      `${label}: transaction ${txId} not known to be committed within ${this.s.commitTimeoutMs} ms${detail}; anchoring again is safe (a repeat reads existing)`,
      { key, cause: last ?? undefined },
    );
  }

  private rememberBlock(txId: string, block: number): void {
    if (this.blocks.size >= BLOCK_CACHE_MAX) {
      const first = this.blocks.keys().next();
      if (!first.done) this.blocks.delete(first.value);
    }
    this.blocks.set(txId, block);
  }

  /** What this writer holds under each key (one read). */
  private async heldBy(entries: Entry[]): Promise<Map<string, RawRecord>> {
    const recs = await this.readManyRaw(entries.map((e) => ({ scope: e.scope, key: e.key, identity: '' })));
    const out = new Map<string, RawRecord>();
    entries.forEach((e, i) => {
      const mine = recs[i].find((r) => r.writer === this.me);
      if (mine) out.set(e.key, mine);
    });
    return out;
  }

  /** Receipts of entries this writer already holds with these hashes (nothing written now). */
  private async existingReceipts(entries: Entry[], held?: Map<string, RawRecord>): Promise<AnchorReceipt[]> {
    const mine = held ?? (await this.heldBy(entries));
    const found = Date.now();
    return entries.map((e) => {
      const r = mine.get(e.key);
      if (!r || r.hash !== e.hash) {
        throw new LedgerError('TX_FAILED', `key ${e.key} should be anchored by ${this.me} with ${e.hash} but reads ${r ? r.hash : 'nothing'}`, { key: e.key });
      }
      return { key: e.key, hash: e.hash, tx: r.txId, block: this.blocks.get(r.txId) ?? 0, existing: true, writer: this.me, timings: { queued: 0, sent: found, mined: found } };
    });
  }

  // ---- waiting for anchors ---------------------------------------------------------------------

  async waitForAnchor(scope: string, key: string, timeoutMs: number, identity?: string): Promise<LedgerRecord[]> {
    const s = bytes32(scope, 'scope');
    const k = bytes32(key, 'key');
    const id = FabricLedger.identityArg(identity);
    if (this.closed) throw new LedgerError('BAD_CONFIG', 'the ledger is closed');
    if (!(timeoutMs > 0)) return this.lookup(s, k, identity);
    let w: Waiter | undefined;
    const p = new Promise<LedgerRecord[]>((resolve, reject) => {
      w = { key: k, scope: s, identity: id, timeoutMs, resolve, reject, done: false, timer: setTimeout(() => this.expireWaiter(w as Waiter), timeoutMs) };
    });
    const waiter = w as Waiter;
    let set = this.waiters.get(k);
    if (!set) this.waiters.set(k, (set = new Set()));
    set.add(waiter);
    this.startEvents();
    try {
      const recs = await this.read({ scope: s, key: k, identity: id });
      if (recs.some((r) => r.entitled)) this.settle(waiter, recs.map(publicRecord));
    } catch (e) {
      this.settle(waiter, e instanceof LedgerError ? e : new LedgerError('UNREACHABLE', String(e), { key: k, cause: e }));
    }
    return p;
  }

  private expireWaiter(w: Waiter): void {
    if (w.done) return;
    this.read({ scope: w.scope, key: w.key, identity: w.identity }).then(
      (recs) => this.settle(w, recs.map(publicRecord)),
      (e: unknown) => {
        const msg = e instanceof Error ? e.message : String(e);
        const code = e instanceof LedgerError && e.code !== 'TX_FAILED' ? e.code : 'UNREACHABLE';
        const during = this.streamError;
        this.settle(
          w,
          new LedgerError(code, `waiting ${w.timeoutMs} ms for key ${w.key}: the final read failed: ${msg}` + (during && during.message !== msg ? `; during the wait: ${during.message}` : ''), {
            key: w.key,
            cause: e,
          }),
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
    if (this.waiters.size === 0) this.stopEvents();
    if (outcome instanceof LedgerError) w.reject(outcome);
    else w.resolve(outcome);
  }

  /** Read an awaited key for each (scope, identity) its waiters ask about; settle those with an entitled anchor. */
  private wake(key: string): Promise<void> {
    const ws = this.waiters.get(key);
    if (!ws) return Promise.resolve();
    const groups = new Map<string, ReadQuery>();
    for (const w of ws) groups.set(`${w.scope}/${w.identity}`, { scope: w.scope, key, identity: w.identity });
    return Promise.all(
      [...groups].map(([g, q]) =>
        this.read(q).then((recs) => {
          if (!recs.some((r) => r.entitled)) return;
          const out = recs.map(publicRecord);
          for (const w of [...(this.waiters.get(key) ?? [])]) if (`${w.scope}/${w.identity}` === g) this.settle(w, out);
        }),
      ),
    ).then(() => undefined);
  }

  /** Start the chaincode event stream (once; a running or reconnecting one is left alone). */
  private startEvents(): void {
    if (this.closed || this.events || this.reconnectTimer || this.waiters.size === 0) return;
    this.checkpointer ??= checkpointers.inMemory();
    const gen = ++this.streamGen;
    void this.runEvents(gen);
  }

  private async runEvents(gen: number): Promise<void> {
    const checkpointer = this.checkpointer as Checkpointer;
    let events: CloseableAsyncIterable<ChaincodeEvent>;
    try {
      const network = this.connection().network;
      this.counters.streamStarts++;
      events = await network.getChaincodeEvents(this.chaincode, { checkpoint: checkpointer });
    } catch (e) {
      this.streamDown(gen, mapGatewayError(e, `listening for chaincode events of ${this.where()}`));
      return;
    }
    if (gen !== this.streamGen) {
      // a stream closed before it is iterated emits an unhandled gRPC error: iterate, then close
      void events[Symbol.asyncIterator]()
        .next()
        .catch(() => undefined);
      events.close();
      return;
    }
    this.events = events;
    this.streamUp = true;
    this.stopPolling();
    // a write that committed between a waiter's read and the stream's start (or, without a
    // checkpoint yet, while the stream was down) is found by one more read of every awaited key
    const catchUp = setTimeout(() => {
      if (gen === this.streamGen) for (const k of [...this.waiters.keys()]) void this.wake(k).catch(() => undefined);
    }, Math.min(this.s.pollMs, 500));
    catchUp.unref();
    try {
      for await (const ev of events) {
        if (gen !== this.streamGen) break;
        this.counters.events++;
        this.backoffMs = 0;
        if (this.streamError) {
          this.streamError = null;
        }
        const keys = ev.eventName === 'CTIAnchored' ? eventKeys(ev.payload) : null;
        const wakes = keys === null ? [] : keys.filter((k) => this.waiters.has(k)).map((k) => this.wake(k).catch(() => undefined));
        void Promise.all(wakes);
        await checkpointer.checkpointChaincodeEvent(ev);
      }
      if (gen === this.streamGen) this.streamDown(gen, new LedgerError('UNREACHABLE', `the peer ended the chaincode event stream of ${this.where()}`));
    } catch (e) {
      this.streamDown(gen, mapGatewayError(e, `listening for chaincode events of ${this.where()}`));
    } finally {
      clearTimeout(catchUp);
    }
  }

  /** The stream failed (or hangs): poll the awaited keys, and reconnect with backoff from the checkpoint. */
  private streamDown(gen: number, e: LedgerError): void {
    if (gen !== this.streamGen || this.closed) return;
    this.streamGen++;
    const ev = this.events;
    this.events = null;
    this.streamUp = false;
    try {
      ev?.close();
    } catch {
      // already closed
    }
    this.streamError = e;
    if (e.code === 'UNREACHABLE') this.setState('disconnected', e.message);
    if (this.waiters.size === 0) return;
    this.startPolling();
    this.backoffMs = Math.min(5000, this.backoffMs === 0 ? 250 : this.backoffMs * 2);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.startEvents();
    }, this.backoffMs);
    this.reconnectTimer.unref();
  }

  private startPolling(): void {
    if (this.pollTimer || this.closed) return;
    this.pollTimer = setInterval(() => {
      for (const k of [...this.waiters.keys()]) void this.wake(k).catch(() => undefined);
    }, this.s.pollMs);
    this.pollTimer.unref();
  }

  private stopPolling(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  /** Nothing waits any more: end the stream and forget the checkpoint (a later wait reads first). */
  private stopEvents(): void {
    this.streamGen++;
    const ev = this.events;
    this.events = null;
    this.streamUp = false;
    try {
      ev?.close();
    } catch {
      // already closed
    }
    this.stopPolling();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.checkpointer = null;
    this.backoffMs = 0;
    this.streamError = null;
  }

  // ---- diagnostics and lifecycle ---------------------------------------------------------------

  /** Waiters, open event streams, requests in flight and waiting for a slot (tests, status displays). */
  stats(): { waiters: number; streams: number; inFlight: number; queued: number } {
    let waiters = 0;
    for (const s of this.waiters.values()) waiters += s.size;
    return { waiters, streams: this.events || this.reconnectTimer ? 1 : 0, inFlight: this.active, queued: this.slotQueue.length };
  }

  /** Traffic of this ledger: reads asked and evaluations serving them, endorsements, transactions submitted, commit conflicts, events, stream (re)starts. */
  trafficStats(): { reads: number; readCalls: number; endorsements: number; submitted: number; conflicts: number; events: number; streamStarts: number } {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const set of [...this.waiters.values()]) {
      for (const w of [...set]) this.settle(w, new LedgerError('TIMEOUT', `the ledger was closed while waiting for key ${w.key}`, { key: w.key }));
    }
    this.closed = true;
    this.stopEvents();
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = null;
    if (this.readTimer) clearTimeout(this.readTimer);
    this.readTimer = null;
    for (const q of this.readQueue.splice(0)) q.reject(new LedgerError('UNREACHABLE', `the ledger was closed before key ${q.key} was read`, { key: q.key }));
    if (this.anchorTimer) clearTimeout(this.anchorTimer);
    this.anchorTimer = null;
    this.anchorQueued = 0;
    for (const c of this.anchorQueue.splice(0)) c.reject(new LedgerError('TX_FAILED', 'the ledger was closed before the anchor was sent (nothing was sent; anchoring again is safe)', { key: c.list[0]?.key }));
    this.stateListeners.clear();
    const conn = this.conn;
    this.conn = null;
    if (conn) {
      conn.gateway.close();
      conn.client.close();
    }
  }
}

function statusName(code: number): string {
  const name = Object.entries(StatusCode).find(([, v]) => v === code)?.[0];
  return name ? `${name} (${code})` : String(code);
}

/** The keys a CTIAnchored event lists; null when the payload is not one. */
function eventKeys(payload: Uint8Array): string[] | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(payload).toString('utf8'));
    if (!isRecord(v) || !Array.isArray(v.entries)) return null;
    return v.entries.filter(isRecord).map((e) => (typeof e.key === 'string' ? e.key.toLowerCase() : '')).filter(Boolean);
  } catch {
    return null;
  }
}
