/**
 * HTTP Basic authentication for the TAXII server (RFC 7617; TAXII 2.1 §1.6.8 suggests it).
 *
 * Passwords are never stored: a user carries a scrypt hash made by `hashPassword`
 * (`scrypt$N$r$p$<salt base64url>$<key base64url>`). Verification derives the key again and
 * compares in constant time; an unknown user costs the same scrypt work as a known one so
 * response times do not reveal which user names exist.
 *
 * scrypt is deliberately slow (~tens of ms); a TAXII client paging through a collection sends the
 * same header on every request, so successful verifications are remembered for a short time,
 * keyed by an HMAC of the user name and password under a per-process random key (the cache never
 * holds a password). At most `maxConcurrentHashes` scrypt runs happen at once (lib/auth/throttle.ts,
 * HashGate): scrypt shares the libuv thread pool with the store, and a flood of wrong passwords
 * must not starve it; checks beyond the bounded queue are refused with HashGateFull.
 */
import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { HashGate, type HashGateOptions } from './throttle';

export interface BasicUser {
  username: string;
  /** output of `hashPassword` */
  passwordHash: string;
  /** roles granted to this user (matched against a collection's canRead / canWrite) */
  roles: string[];
}

export interface BasicCredentials {
  username: string;
  password: string;
}

export type BasicAuthErrorCode = 'BAD_HASH' | 'BAD_CONFIG';

export class BasicAuthError extends Error {
  readonly code: BasicAuthErrorCode;
  constructor(code: BasicAuthErrorCode, message: string) {
    super(message);
    this.name = 'BasicAuthError';
    this.code = code;
  }
}

const KEY_LEN = 32;
const DEFAULT_N = 16384;
const DEFAULT_R = 8;
const DEFAULT_P = 1;

function scrypt(password: string | Buffer, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function maxmemFor(N: number, r: number, p: number): number {
  // scrypt needs about 128 * N * r * p bytes; leave headroom
  return 128 * N * r * p * 2 + 1024 * 1024;
}

/** Hash a password for a `BasicUser.passwordHash` (scrypt, random 16-byte salt). */
export async function hashPassword(
  password: string,
  opts: { N?: number; r?: number; p?: number } = {},
): Promise<string> {
  const N = opts.N ?? DEFAULT_N;
  const r = opts.r ?? DEFAULT_R;
  const p = opts.p ?? DEFAULT_P;
  if (!Number.isInteger(N) || N < 2 || (N & (N - 1)) !== 0) throw new BasicAuthError('BAD_CONFIG', `scrypt N must be a power of two >= 2, got ${N}`);
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEY_LEN, { N, r, p, maxmem: maxmemFor(N, r, p) });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseHash(hash: string): ParsedHash {
  const parts = hash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') {
    throw new BasicAuthError('BAD_HASH', 'password hash is not in the form scrypt$N$r$p$salt$key (make it with hashPassword)');
  }
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4], 'base64url');
  const key = Buffer.from(parts[5], 'base64url');
  if (![N, r, p].every((v) => Number.isInteger(v) && v > 0) || (N & (N - 1)) !== 0 || N > 2 ** 20 || r > 64 || p > 16) {
    throw new BasicAuthError('BAD_HASH', 'password hash has out-of-range scrypt parameters');
  }
  if (salt.length < 8 || key.length < 16) throw new BasicAuthError('BAD_HASH', 'password hash has a too short salt or key');
  return { N, r, p, salt, key };
}

/** Check a password against a hash made by `hashPassword`, in constant time. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const h = parseHash(hash);
  const key = await scrypt(password, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmemFor(h.N, h.r, h.p) });
  return timingSafeEqual(key, h.key);
}

/**
 * Parse an `Authorization` header value of the Basic scheme (scheme name case-insensitive).
 * Returns null when the header is not Basic or is malformed.
 */
export function parseBasicHeader(value: string): BasicCredentials | null {
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (!m) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export interface BasicVerifierOptions extends HashGateOptions {
  /** how long a successful check is remembered, ms (default 300,000; 0 disables) */
  cacheTtlMs?: number;
  /** most remembered checks (default 1,000) */
  cacheMax?: number;
}

/** Verifies Basic credentials against a fixed user list. */
export class BasicVerifier {
  private readonly users = new Map<string, { user: BasicUser; hash: ParsedHash }>();
  private readonly cache = new Map<string, { username: string; roles: string[]; expires: number }>();
  private readonly cacheKey = randomBytes(32);
  private readonly cacheTtlMs: number;
  private readonly cacheMax: number;
  private readonly dummy: ParsedHash;
  private readonly gate: HashGate;

  constructor(users: BasicUser[], opts: BasicVerifierOptions = {}) {
    for (const user of users) {
      if (typeof user.username !== 'string' || user.username === '' || user.username.includes(':')) {
        throw new BasicAuthError('BAD_CONFIG', `Basic user name ${JSON.stringify(user.username)} is empty or contains ':'`);
      }
      if (this.users.has(user.username)) throw new BasicAuthError('BAD_CONFIG', `Basic user ${user.username} is listed twice`);
      let hash: ParsedHash;
      try {
        hash = parseHash(user.passwordHash);
      } catch (err) {
        throw new BasicAuthError('BAD_CONFIG', `Basic user ${user.username}: ${(err as Error).message}`);
      }
      this.users.set(user.username, { user: { ...user, roles: [...user.roles] }, hash });
    }
    this.cacheTtlMs = opts.cacheTtlMs ?? 300_000;
    this.cacheMax = opts.cacheMax ?? 1000;
    this.gate = new HashGate(opts);
    // an unknown user name is checked against this so that it costs the same time as a known one
    const like = this.users.values().next().value?.hash;
    this.dummy = { N: like?.N ?? DEFAULT_N, r: like?.r ?? DEFAULT_R, p: like?.p ?? DEFAULT_P, salt: randomBytes(16), key: randomBytes(like?.key.length ?? KEY_LEN) };
  }

  private cacheKeyOf(creds: BasicCredentials): string {
    // length-prefixed so that no two (user name, password) pairs give the same input
    const u = Buffer.from(creds.username, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(u.length);
    return createHmac('sha256', this.cacheKey).update(len).update(u).update(creds.password, 'utf8').digest('base64');
  }

  /**
   * The user's name and roles when these exact credentials were verified recently (no hashing: an
   * HMAC and a map look-up), else null.
   */
  cached(creds: BasicCredentials): { username: string; roles: string[] } | null {
    if (this.cacheTtlMs <= 0) return null;
    const ck = this.cacheKeyOf(creds);
    const hit = this.cache.get(ck);
    if (!hit) return null;
    if (hit.expires <= Date.now()) {
      this.cache.delete(ck);
      return null;
    }
    return { username: hit.username, roles: [...hit.roles] };
  }

  /** scrypt runs now / checks waiting for a slot */
  get hashing(): { active: number; queued: number } {
    return { active: this.gate.active, queued: this.gate.queued };
  }

  /**
   * The user's name and roles when the credentials are right, else null. Rejects with
   * HashGateFull (lib/auth/throttle.ts) when too many checks are already waiting.
   */
  async verify(creds: BasicCredentials): Promise<{ username: string; roles: string[] } | null> {
    const hit = this.cached(creds);
    if (hit) return hit;

    const entry = this.users.get(creds.username);
    const h = entry?.hash ?? this.dummy;
    const key = await this.gate.run(() => scrypt(creds.password, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmemFor(h.N, h.r, h.p) }));
    const ok = timingSafeEqual(key, h.key) && entry !== undefined;
    if (!ok || !entry) return null;
    if (this.cacheTtlMs > 0) {
      if (this.cache.size >= this.cacheMax) {
        const oldest = this.cache.keys().next();
        if (!oldest.done) this.cache.delete(oldest.value);
      }
      this.cache.set(this.cacheKeyOf(creds), { username: entry.user.username, roles: entry.user.roles, expires: Date.now() + this.cacheTtlMs });
    }
    return { username: entry.user.username, roles: [...entry.user.roles] };
  }
}
