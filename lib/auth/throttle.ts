/**
 * Protection of the TAXII server's authentication against floods (issue 11, item 3).
 *
 * - `HashGate`: at most a few password hashes (scrypt) run at once, with a bounded queue. scrypt
 *   runs on the libuv thread pool (4 threads by default), which LevelDB and file I/O share: an
 *   uncapped flood of password checks made every other request wait for seconds. A check that
 *   finds the queue full is refused at once (`HashGateFull`, answered 503 + Retry-After).
 * - `FailureThrottle`: a token bucket per remote address and per user name. Every credential
 *   check (that is not already known good) takes a token, which is given back when the
 *   credentials are right; an empty bucket is answered 429 + Retry-After before any hashing.
 *   The per-user-name bucket is only applied to addresses that have failed recently, so a flood
 *   against a user name from some addresses does not lock the user out when they log in from an
 *   address with a clean record (the price: an attacker with many addresses gets one guess per
 *   address per refill period once the name's bucket is empty).
 *
 * Both hold bounded state (LRU maps), so a spray of addresses or user names cannot exhaust memory.
 */

export interface AuthThrottleOptions {
  /** failed attempts one remote address may make in a burst (default 10; 0 disables the per-address bucket) */
  addressBurst?: number;
  /** failed attempts against one user name in a burst (default 10; 0 disables the per-user-name bucket) */
  userBurst?: number;
  /** one attempt is regained every this many ms (default 6,000: ten a minute once the burst is used) */
  refillMs?: number;
  /** most addresses and user names tracked, each (default 10,000; the least recently seen are forgotten) */
  maxTracked?: number;
}

export interface HashGateOptions {
  /** password hashes running at once (default 2, leaving the rest of the libuv thread pool to the store) */
  maxConcurrentHashes?: number;
  /** password checks waiting for a hashing slot (default 16); beyond it a check is refused (503) */
  maxQueuedHashes?: number;
}

/** Defaults of AuthThrottleOptions and HashGateOptions (front ends show them as placeholders). */
export const THROTTLE_DEFAULTS = {
  addressBurst: 10,
  userBurst: 10,
  refillMs: 6000,
  maxTracked: 10_000,
  maxConcurrentHashes: 2,
  maxQueuedHashes: 16,
} as const;

/** The hashing queue is full: answer 503 with Retry-After. */
export class HashGateFull extends Error {
  readonly code = 'HASH_GATE_FULL';
  constructor(readonly retryAfterSec: number) {
    super(`the server is busy checking passwords; retry after ${retryAfterSec} s`);
    this.name = 'HashGateFull';
  }
}

/** A semaphore with a bounded FIFO queue. */
export class HashGate {
  readonly max: number;
  readonly maxQueued: number;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(opts: HashGateOptions = {}) {
    this.max = positiveInt(opts.maxConcurrentHashes, THROTTLE_DEFAULTS.maxConcurrentHashes, 'maxConcurrentHashes');
    this.maxQueued = nonNegativeInt(opts.maxQueuedHashes, THROTTLE_DEFAULTS.maxQueuedHashes, 'maxQueuedHashes');
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Run `fn` when a slot is free; rejects with HashGateFull at once when the queue is full. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) {
      if (this.waiting.length >= this.maxQueued) throw new HashGateFull(1);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      // hand the slot over directly (running stays the same) or free it
      if (next) next();
      else this.running--;
    }
  }
}

/** The caller is throttled: answer 429 with Retry-After. */
export class AuthThrottled extends Error {
  readonly code = 'AUTH_THROTTLED';
  constructor(
    readonly retryAfterSec: number,
    readonly by: 'address' | 'username',
  ) {
    super(
      by === 'address'
        ? `too many failed authentication attempts from this address; retry after ${retryAfterSec} s`
        : `too many failed authentication attempts for this user name; retry after ${retryAfterSec} s`,
    );
    this.name = 'AuthThrottled';
  }
}

interface Bucket {
  tokens: number;
  /** when `tokens` was last brought up to date, ms */
  at: number;
  /** last failure, ms (0: none) */
  failedAt: number;
}

/** A bounded map of token buckets (least recently used entries are dropped first). */
class Buckets {
  private readonly map = new Map<string, Bucket>();
  constructor(
    private readonly burst: number,
    private readonly refillMs: number,
    private readonly max: number,
  ) {}

  get(key: string, now: number): Bucket {
    let b = this.map.get(key);
    if (b) {
      this.map.delete(key);
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) / this.refillMs);
      b.at = now;
    } else {
      b = { tokens: this.burst, at: now, failedAt: 0 };
      if (this.map.size >= this.max) {
        const oldest = this.map.keys().next();
        if (!oldest.done) this.map.delete(oldest.value);
      }
    }
    this.map.set(key, b);
    return b;
  }

  retryAfterSec(b: Bucket): number {
    return Math.max(1, Math.ceil(((1 - b.tokens) * this.refillMs) / 1000));
  }

  /** failed within the time the bucket needs to refill completely */
  failedRecently(b: Bucket, now: number): boolean {
    return b.failedAt > 0 && now - b.failedAt < this.burst * this.refillMs;
  }

  get size(): number {
    return this.map.size;
  }
}

/** What `FailureThrottle.admit` took; settle it with `success()` or `failure()`. */
export interface AttemptTicket {
  /** the credentials were right: give the tokens back */
  success(): void;
  /** the credentials were wrong: the tokens stay taken, the failure is recorded */
  failure(): void;
  /** the check could not be made (server side trouble): give the tokens back, record nothing */
  cancel(): void;
}

const NOOP_TICKET: AttemptTicket = { success: () => undefined, failure: () => undefined, cancel: () => undefined };

export class FailureThrottle {
  private readonly addresses?: Buckets;
  private readonly users?: Buckets;

  constructor(opts: AuthThrottleOptions = {}) {
    const refillMs = positiveInt(opts.refillMs, THROTTLE_DEFAULTS.refillMs, 'refillMs');
    const max = positiveInt(opts.maxTracked, THROTTLE_DEFAULTS.maxTracked, 'maxTracked');
    const aBurst = nonNegativeInt(opts.addressBurst, THROTTLE_DEFAULTS.addressBurst, 'addressBurst');
    const uBurst = nonNegativeInt(opts.userBurst, THROTTLE_DEFAULTS.userBurst, 'userBurst');
    if (aBurst > 0) this.addresses = new Buckets(aBurst, refillMs, max);
    if (uBurst > 0) this.users = new Buckets(uBurst, refillMs, max);
  }

  /**
   * Take a token for an attempt from `address` (and against `username` for Basic); throws
   * AuthThrottled when a bucket is empty.
   */
  admit(address: string, username?: string): AttemptTicket {
    if (!this.addresses && !this.users) return NOOP_TICKET;
    const now = Date.now();
    const a = this.addresses?.get(address, now);
    if (a && this.addresses && a.tokens < 1) throw new AuthThrottled(this.addresses.retryAfterSec(a), 'address');
    let u: Bucket | undefined;
    if (username !== undefined && this.users) {
      u = this.users.get(username, now);
      // a user name under attack is throttled only for addresses that have failed recently
      const suspect = !a || !this.addresses || this.addresses.failedRecently(a, now);
      if (u.tokens < 1 && suspect) throw new AuthThrottled(this.users.retryAfterSec(u), 'username');
    }
    const takenA = a ? 1 : 0;
    const takenU = u ? Math.min(1, Math.max(0, u.tokens)) : 0;
    if (a) a.tokens -= takenA;
    if (u) u.tokens -= takenU;
    let settled = false;
    const giveBack = (): void => {
      if (a) a.tokens += takenA;
      if (u) u.tokens += takenU;
    };
    return {
      success: () => {
        if (settled) return;
        settled = true;
        giveBack();
      },
      cancel: () => {
        if (settled) return;
        settled = true;
        giveBack();
      },
      failure: () => {
        if (settled) return;
        settled = true;
        const t = Date.now();
        if (a) a.failedAt = t;
        if (u) u.failedAt = t;
      },
    };
  }

  /** Tracked entries (for tests and metrics). */
  get tracked(): { addresses: number; usernames: number } {
    return { addresses: this.addresses?.size ?? 0, usernames: this.users?.size ?? 0 };
  }
}

/**
 * The key a request is throttled under: Express's `req.ip` when present (it honours Express's
 * `trust proxy` setting, so a server behind a reverse proxy can throttle by the real client),
 * else the socket's remote address. IPv4-mapped IPv6 addresses become IPv4; other IPv6 addresses
 * are grouped by their /64 prefix (one host usually holds a whole /64).
 */
export function clientKey(req: { socket?: { remoteAddress?: string | undefined } | null; ip?: unknown }): string {
  const raw = typeof req.ip === 'string' && req.ip !== '' ? req.ip : req.socket?.remoteAddress ?? '';
  if (raw === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(raw);
  if (mapped) return mapped[1];
  if (!raw.includes(':')) return raw;
  return ipv6Prefix64(raw);
}

function ipv6Prefix64(addr: string): string {
  const noZone = addr.split('%')[0].toLowerCase();
  const [head, tail] = noZone.includes('::') ? noZone.split('::', 2) : [noZone, undefined];
  const h = head === '' ? [] : head.split(':');
  let groups: string[];
  if (tail === undefined) {
    groups = h;
  } else {
    const t = tail === '' ? [] : tail.split(':');
    groups = [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  }
  if (groups.length < 4) return noZone;
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':') + '::/64';
}

function positiveInt(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`);
  return v;
}

function nonNegativeInt(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0, got ${String(v)}`);
  return v;
}
