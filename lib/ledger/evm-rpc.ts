/**
 * JSON-RPC plumbing of the EVM ledger adapter (ethers v6): one `ChainClient` per ledger owns
 *
 * - the read provider (HTTP, JSON-RPC batching on, so hundreds of concurrent `eth_call`s travel
 *   in a few requests) and the send provider (HTTP, `batchMaxCount: 1`, so raw transactions go
 *   out one request each and in order) — or one WebSocket link when the RPC URL is ws(s);
 * - every call's deadline (`requestTimeoutMs`), retries of transient network failures inside
 *   that deadline, and the mapping of failures to `UNREACHABLE`;
 * - the new-block source shared by everybody who needs "a block arrived" (receipt tracking,
 *   anchor waiters): `eth_subscribe newHeads` over WebSocket when a ws URL is configured,
 *   `eth_blockNumber` polling otherwise (and as a slower safety net beside the socket);
 * - the connection state (`connecting` / `connected` / `disconnected`) and a background probe.
 *
 * ethers pitfalls handled here (see STACK-NOTES): `cacheTimeout: -1` (ethers would otherwise
 * answer identical calls from a 250 ms cache, e.g. a stale nonce), a real `Network` object as
 * `staticNetwork` (never a guessed mainnet, no network detection requests).
 */
import { FetchRequest, JsonRpcProvider, Network, WebSocketProvider } from 'ethers';
import { LedgerError, type LedgerState } from './ledger';

export interface ChainClientOptions {
  rpcUrl: string;
  wsUrl?: string;
  chainId: bigint;
  requestTimeoutMs: number;
  waitPollMs: number;
  /** background probe interval while connected, ms; 0 = no background probing */
  healthCheckMs: number;
  /** concurrent read requests (HTTP); default 16 */
  maxConcurrentReads?: number;
}

/** The body of a JSON-RPC error the node answered with. */
export interface RpcErrorBody {
  code: number;
  message: string;
  data?: unknown;
}

/** The node answered, with a JSON-RPC error (as opposed to not answering). */
export class NodeError extends Error {
  readonly body: RpcErrorBody;
  /** revert data (0x…) when the error carries it */
  readonly revertData?: string;
  constructor(method: string, body: RpcErrorBody, revertData?: string) {
    super(`${method} failed: ${body.message} (JSON-RPC error ${body.code})`);
    this.name = 'NodeError';
    this.body = body;
    this.revertData = revertData;
  }
}

export interface CallOptions {
  /** use the unbatched send provider (raw transactions, nonces) */
  send?: boolean;
  /** retry transient network failures within the deadline (default true) */
  retry?: boolean;
  /** what the call is for, named in error messages */
  what?: string;
}

type HeadListener = (head: number) => void;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const HEX = /^0x[0-9a-fA-F]*$/;

function asBody(v: unknown): RpcErrorBody | null {
  if (!isRecord(v) || typeof v.code !== 'number' || typeof v.message !== 'string') return null;
  return { code: v.code, message: v.message, data: v.data };
}

/** Revert data inside a JSON-RPC error body, wherever the node put it. */
export function revertDataOf(body: RpcErrorBody): string | undefined {
  const d = body.data;
  if (typeof d === 'string' && HEX.test(d) && d.length >= 10) return d;
  if (isRecord(d) && typeof d.data === 'string' && HEX.test(d.data) && d.data.length >= 10) return d.data;
  const m = /return data: (0x[0-9a-fA-F]{8,})/.exec(body.message);
  return m ? m[1] : undefined;
}

/**
 * Splits an ethers / transport failure into "the node answered with an error" (NodeError) and
 * "the node did not answer" (a message for UNREACHABLE).
 */
export function classify(method: string, err: unknown): NodeError | { transient: true; message: string } {
  if (err instanceof NodeError) return err;
  if (isRecord(err)) {
    const info = isRecord(err.info) ? err.info : undefined;
    const body = asBody(info?.error) ?? asBody(err.error);
    if (body) return new NodeError(method, body, revertDataOf(body));
    if (err.code === 'CALL_EXCEPTION') {
      const data = typeof err.data === 'string' ? err.data : undefined;
      const msg = typeof err.shortMessage === 'string' ? err.shortMessage : 'execution reverted';
      return new NodeError(method, { code: 3, message: msg, data }, data);
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return { transient: true, message: message.split('\n')[0].slice(0, 300) };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(message)), Math.max(1, ms));
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** A small counting semaphore: bounds concurrent requests (unbounded concurrency → ECONNRESET). */
class Semaphore {
  private free: number;
  private waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

function fetchRequest(url: string, timeoutMs: number): FetchRequest {
  const u = new URL(url);
  let user = '';
  let pass = '';
  if (u.username || u.password) {
    user = decodeURIComponent(u.username);
    pass = decodeURIComponent(u.password);
    u.username = '';
    u.password = '';
  }
  const req = new FetchRequest(u.toString());
  req.timeout = timeoutMs;
  if (user || pass) {
    // credentials in the URL are the user's explicit choice, also over plain http
    req.allowInsecureAuthentication = true;
    req.setCredentials(user, pass);
  }
  return req;
}

/**
 * ethers' WebSocketProvider with the pieces ethers leaves out: error/close handlers (without
 * them the `ws` socket's 'error' event would crash the process) and a raw `newHeads`
 * subscription whose notifications we take before ethers' own dispatch.
 */
class HeadsSocket extends WebSocketProvider {
  subId: string | null = null;
  onHead: (n: number) => void = () => undefined;
  /** rejecters of requests waiting on this socket (ethers would leave them pending forever) */
  readonly waiting = new Set<(e: Error) => void>();
  override async _processMessage(message: string): Promise<void> {
    let m: unknown;
    try {
      m = JSON.parse(message);
    } catch {
      return;
    }
    if (isRecord(m) && m.method === 'eth_subscription' && isRecord(m.params)) {
      const p = m.params;
      if (this.subId !== null && p.subscription === this.subId) {
        if (isRecord(p.result) && typeof p.result.number === 'string') this.onHead(parseInt(p.result.number, 16));
        return;
      }
      return; // notifications for subscriptions we do not hold
    }
    return super._processMessage(message);
  }
}

/** One WebSocket link with reconnect: carries calls (ws RPC URL) and/or `newHeads`. */
class WsLink {
  private sock: HeadsSocket | null = null;
  private connecting: Promise<HeadsSocket> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoff = 500;
  private closed = false;
  /** keep reconnecting after a drop (set while someone needs heads) */
  wanted = false;

  constructor(
    readonly url: string,
    private readonly network: Network,
    private readonly timeoutMs: number,
    private readonly onHead: (n: number) => void,
    private readonly onDown: (detail: string) => void,
  ) {}

  get up(): boolean {
    return this.sock !== null && this.sock.subId !== null;
  }

  connect(): Promise<HeadsSocket> {
    if (this.closed) return Promise.reject(new Error('ledger closed'));
    if (this.sock && this.sock.subId !== null) return Promise.resolve(this.sock);
    this.connecting ??= this.open().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async open(): Promise<HeadsSocket> {
    const sock = new HeadsSocket(this.url, this.network, { staticNetwork: this.network, cacheTimeout: -1 });
    let failed: ((e: Error) => void) | null = null;
    const failure = new Promise<never>((_, reject) => {
      failed = reject;
    });
    failure.catch(() => undefined);
    const ws = sock.websocket as unknown as Record<string, unknown>;
    const drop = (why: string) => {
      const err = new Error(`WebSocket ${this.url}: ${why}`);
      failed?.(err);
      for (const reject of [...sock.waiting]) reject(err);
      sock.waiting.clear();
      if (this.sock === sock) this.lost(why);
      void sock.destroy().catch(() => undefined);
    };
    ws.onerror = (ev: unknown) => drop(isRecord(ev) && typeof ev.message === 'string' ? ev.message : 'error');
    ws.onclose = () => drop('closed');
    sock.onHead = this.onHead;
    try {
      const id = await Promise.race([
        withTimeout(sock.send('eth_subscribe', ['newHeads']), this.timeoutMs, `WebSocket ${this.url}: no answer within ${this.timeoutMs} ms`),
        failure,
      ]);
      if (typeof id !== 'string') throw new Error(`WebSocket ${this.url}: eth_subscribe returned ${String(id)}`);
      if (this.closed) throw new Error('ledger closed');
      sock.subId = id;
      this.sock = sock;
      this.backoff = 500;
      return sock;
    } catch (e) {
      failed = null;
      void sock.destroy().catch(() => undefined);
      throw e;
    }
  }

  private lost(why: string): void {
    this.sock = null;
    this.onDown(`WebSocket ${this.url}: ${why}`);
    this.scheduleReconnect();
  }

  scheduleReconnect(): void {
    if (this.closed || !this.wanted || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.closed || !this.wanted) return;
      this.connect().catch(() => {
        this.backoff = Math.min(this.backoff * 2, 30_000);
        this.scheduleReconnect();
      });
    }, this.backoff);
    this.retryTimer.unref();
  }

  async send(method: string, params: unknown[], timeoutMs: number): Promise<unknown> {
    const sock = await withTimeout(this.connect(), timeoutMs, `WebSocket ${this.url}: not connected within ${timeoutMs} ms`);
    // a request written just before the socket dropped is never answered: fail it with the drop
    return new Promise<unknown>((resolve, reject) => {
      sock.waiting.add(reject);
      sock.send(method, params).then(
        (v: unknown) => {
          sock.waiting.delete(reject);
          resolve(v);
        },
        (e: unknown) => {
          sock.waiting.delete(reject);
          reject(e);
        },
      );
    });
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const s = this.sock;
    this.sock = null;
    if (s) void s.destroy().catch(() => undefined);
  }
}

export class ChainClient {
  readonly network: Network;
  readonly rpcUrl: string;
  readonly wsUrl?: string;
  readonly timeoutMs: number;
  readonly pollMs: number;
  private readonly reader?: JsonRpcProvider;
  private readonly sender?: JsonRpcProvider;
  private readonly ws?: WsLink;
  private readonly callsOverWs: boolean;
  private readonly reads: Semaphore;
  private readonly healthMs: number;

  private _state: LedgerState = 'connecting';
  private stateListeners = new Set<(s: LedgerState, detail?: string) => void>();
  private headListeners = new Set<HeadListener>();
  private head = -1;
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private pollAgain = false;
  private healthTimer: NodeJS.Timeout | null = null;
  private healthBackoff = 1000;
  private refs = 1;
  private closed = false;

  constructor(opts: ChainClientOptions) {
    this.rpcUrl = opts.rpcUrl;
    this.timeoutMs = opts.requestTimeoutMs;
    this.pollMs = opts.waitPollMs;
    this.healthMs = opts.healthCheckMs;
    this.network = new Network(`chain-${opts.chainId}`, opts.chainId);
    this.reads = new Semaphore(opts.maxConcurrentReads ?? 16);
    const isWs = /^wss?:\/\//i.test(opts.rpcUrl);
    this.callsOverWs = isWs;
    const wsUrl = opts.wsUrl ?? (isWs ? opts.rpcUrl : undefined);
    this.wsUrl = wsUrl;
    if (wsUrl) {
      this.ws = new WsLink(
        wsUrl,
        this.network,
        this.timeoutMs,
        (n) => this.noteHead(n),
        (detail) => {
          if (this.callsOverWs) this.setState('disconnected', detail);
          this.schedulePoll(0);
        },
      );
    }
    if (!isWs) {
      const common = { staticNetwork: this.network, cacheTimeout: -1 };
      this.reader = new JsonRpcProvider(fetchRequest(opts.rpcUrl, this.timeoutMs), this.network, {
        ...common,
        batchMaxCount: 50,
        batchStallTime: 2,
      });
      this.sender = new JsonRpcProvider(fetchRequest(opts.rpcUrl, this.timeoutMs), this.network, {
        ...common,
        batchMaxCount: 1,
      });
    }
  }

  get state(): LedgerState {
    return this._state;
  }

  onState(listener: (s: LedgerState, detail?: string) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  setState(s: LedgerState, detail?: string): void {
    if (this.closed || s === this._state) return;
    this._state = s;
    for (const l of [...this.stateListeners]) {
      try {
        l(s, detail);
      } catch {
        // a listener's failure is its own business
      }
    }
    this.scheduleHealth();
  }

  /** Another user (a shared sender) keeps this client open. */
  retain(): this {
    this.refs++;
    return this;
  }

  /** Drop one reference; the last one closes providers, sockets and timers. */
  release(): void {
    if (--this.refs > 0 || this.closed) return;
    this.closed = true;
    this.stateListeners.clear();
    this.headListeners.clear();
    if (this.pollTimer) clearTimeout(this.pollTimer);
    if (this.healthTimer) clearTimeout(this.healthTimer);
    this.pollTimer = this.healthTimer = null;
    this.ws?.close();
    this.reader?.destroy();
    this.sender?.destroy();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * One JSON-RPC call with a deadline of `requestTimeoutMs`; transient failures are retried
   * inside the deadline. Rejects with NodeError when the node answered with an error, with
   * LedgerError UNREACHABLE when it did not answer.
   */
  async call(method: string, params: unknown[], opts: CallOptions = {}): Promise<unknown> {
    if (this.closed) throw new LedgerError('UNREACHABLE', `${opts.what ?? method}: the ledger is closed`);
    const deadline = Date.now() + this.timeoutMs;
    const retry = opts.retry ?? true;
    let attempt = 0;
    for (;;) {
      const left = deadline - Date.now();
      try {
        const result = await this.once(method, params, opts.send === true, left);
        if (this._state !== 'connected') this.setState('connected');
        return result;
      } catch (err) {
        const c = classify(method, err);
        if (c instanceof NodeError) {
          if (this._state !== 'connected') this.setState('connected');
          throw c;
        }
        const wait = Math.min(100 * 2 ** attempt++, 2000);
        if (retry && !this.closed && deadline - Date.now() > wait + 50) {
          await sleep(wait);
          continue;
        }
        const detail = `${this.rpcUrl} did not answer ${method}: ${c.message}`;
        this.setState('disconnected', detail);
        throw new LedgerError('UNREACHABLE', opts.what ? `${opts.what}: ${detail}` : detail, { cause: err });
      }
    }
  }

  private async once(method: string, params: unknown[], send: boolean, ms: number): Promise<unknown> {
    const msg = `no answer within ${this.timeoutMs} ms`;
    if (this.callsOverWs && this.ws) return withTimeout(this.ws.send(method, params, ms), ms, msg);
    if (send && this.sender) return withTimeout(this.sender.send(method, params), ms, msg);
    const reader = this.reader as JsonRpcProvider;
    const t0 = Date.now();
    const permit = this.reads.take();
    try {
      await withTimeout(permit, ms, msg);
    } catch (err) {
      // a permit granted after we gave up waiting goes back, or the read slots leak one by one
      void permit.then(() => this.reads.give());
      throw err;
    }
    try {
      return await withTimeout(reader.send(method, params), ms - (Date.now() - t0), msg);
    } finally {
      this.reads.give();
    }
  }

  // ---- new blocks ---------------------------------------------------------------------------

  /** Latest head seen (-1 before the first). */
  get latestHead(): number {
    return this.head;
  }

  /**
   * Be told of every new head while subscribed, and of the latest known head right after
   * subscribing (a head seen just before, e.g. the block that mined the transaction being
   * tracked, must not be missed). Returns the unsubscribe function.
   */
  onHead(listener: HeadListener): () => void {
    this.headListeners.add(listener);
    if (this.head >= 0) {
      setImmediate(() => {
        if (this.headListeners.has(listener)) listener(this.head);
      });
    }
    if (this.ws) {
      this.ws.wanted = true;
      if (!this.ws.up) this.ws.connect().catch(() => this.ws?.scheduleReconnect());
    }
    this.schedulePoll(this.pollMs);
    return () => {
      this.headListeners.delete(listener);
      if (this.headListeners.size === 0) {
        if (this.ws) this.ws.wanted = this.callsOverWs;
        if (this.pollTimer) clearTimeout(this.pollTimer);
        this.pollTimer = null;
      }
    };
  }

  get headListenerCount(): number {
    return this.headListeners.size;
  }

  /** Ask for the head now (e.g. the send pipeline is full and waits for mined transactions). */
  kick(): void {
    this.schedulePoll(0);
  }

  private noteHead(n: number): void {
    if (!Number.isFinite(n) || n <= this.head) return;
    this.head = n;
    for (const l of [...this.headListeners]) {
      try {
        l(n);
      } catch {
        // listeners handle their own errors
      }
    }
  }

  private schedulePoll(delay: number): void {
    if (this.closed || this.headListeners.size === 0) return;
    if (this.polling) {
      if (delay === 0) this.pollAgain = true;
      return;
    }
    if (this.pollTimer) {
      if (delay !== 0) return;
      clearTimeout(this.pollTimer);
    }
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      void this.poll();
    }, delay);
  }

  private async poll(): Promise<void> {
    if (this.closed || this.headListeners.size === 0) return;
    this.polling = true;
    this.pollAgain = false;
    let ok = true;
    try {
      this.noteHead(Number(await this.call('eth_blockNumber', [], { retry: false, what: 'polling for new blocks' })));
    } catch {
      ok = false;
    } finally {
      this.polling = false;
    }
    // beside a live socket, polling is only a slow safety net
    const every = this.ws?.up ? Math.max(this.pollMs * 5, 2000) : this.pollMs;
    this.schedulePoll(this.pollAgain && ok ? 0 : ok ? every : Math.max(this.pollMs, 1000));
  }

  // ---- background probe ----------------------------------------------------------------------

  /** Start background probing (reconnect detection and state reporting). */
  startHealth(): void {
    this.scheduleHealth();
  }

  private scheduleHealth(): void {
    if (this.closed || this.healthMs <= 0) return;
    if (this.healthTimer) clearTimeout(this.healthTimer);
    const delay = this._state === 'connected' ? this.healthMs : this.healthBackoff;
    this.healthTimer = setTimeout(() => {
      this.healthTimer = null;
      this.call('eth_blockNumber', [], { retry: false, what: 'health check' }).then(
        (n) => {
          this.healthBackoff = 1000;
          this.noteHead(Number(n));
          this.scheduleHealth();
        },
        () => {
          this.healthBackoff = Math.min(this.healthBackoff * 2, 30_000);
          this.scheduleHealth();
        },
      );
    }, delay);
    this.healthTimer.unref();
  }
}
