/**
 * Self-contained, signed `next` tokens for TAXII pagination (DESIGN.md §3 Scale-out: no server
 * state lives only in a process's memory, any instance can answer any request).
 *
 * A token carries the store cursor, the endpoint it belongs to, a digest of each filter of the
 * query that produced it, and an expiry, as base64url(JSON) + '.' + base64url(HMAC-SHA256).
 * `limit` is not part of the query identity: clients may shrink it between pages
 * (taxii2-client does when the server returned fewer than asked for).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface TokenPayload {
  /** token format version */
  v: 1;
  /** endpoint scope, e.g. `objects:<api root>:<collection>` */
  s: string;
  /** per-filter digests (name -> short hash) */
  f: Record<string, string>;
  /** store cursor */
  c: string;
  /** expiry, ms since epoch */
  e: number;
}

export type TokenProblem = 'malformed' | 'bad-signature' | 'expired' | 'other-endpoint' | 'filters-changed';

export class TokenError extends Error {
  readonly code = 'BAD_NEXT_TOKEN';
  constructor(
    readonly problem: TokenProblem,
    message: string,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

/** Short digest of a filter value (already canonical: sorted lists joined with ','). */
export function filterDigest(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url').slice(0, 16);
}

export class NextTokens {
  private readonly secret: Buffer;

  constructor(
    secret: string | Uint8Array,
    private readonly ttlMs: number,
  ) {
    this.secret = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
    if (this.secret.length < 16) throw new RangeError('next-token secret must be at least 16 bytes');
    if (!(ttlMs >= 600_000)) throw new RangeError('next tokens must stay valid for at least 10 minutes (ttl >= 600000 ms)');
  }

  private mac(data: string): Buffer {
    return createHmac('sha256', this.secret).update(data, 'utf8').digest();
  }

  issue(scope: string, filters: Record<string, string>, cursor: string, now = Date.now()): string {
    const f: Record<string, string> = {};
    for (const k of Object.keys(filters).sort()) f[k] = filterDigest(filters[k]);
    const payload: TokenPayload = { v: 1, s: scope, f, c: cursor, e: now + this.ttlMs };
    const body = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
    return `${body}.${this.mac(body).toString('base64url')}`;
  }

  /** Check a token against the current request; returns the store cursor or throws TokenError. */
  open(token: string, scope: string, filters: Record<string, string>, now = Date.now()): string {
    const dot = token.indexOf('.');
    if (dot <= 0 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
      throw new TokenError('malformed', 'the next token is not one this server issued (malformed)');
    }
    const body = token.slice(0, dot);
    const sig = Buffer.from(token.slice(dot + 1), 'base64url');
    const expected = this.mac(body);
    if (sig.length !== expected.length || !timingSafeEqual(sig, expected)) {
      throw new TokenError('bad-signature', 'the next token is not one this server issued (bad signature)');
    }
    let payload: unknown;
    try {
      payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      throw new TokenError('malformed', 'the next token is malformed');
    }
    if (!isPayload(payload)) throw new TokenError('malformed', 'the next token is malformed');
    if (payload.e < now) {
      throw new TokenError('expired', `the next token expired at ${new Date(payload.e).toISOString()}; start again from the first page (or page with added_after)`);
    }
    if (payload.s !== scope) {
      throw new TokenError('other-endpoint', 'the next token belongs to another endpoint, collection or object');
    }
    const names = new Set([...Object.keys(payload.f), ...Object.keys(filters)]);
    const changed: string[] = [];
    for (const n of [...names].sort()) {
      const now = filters[n] === undefined ? undefined : filterDigest(filters[n]);
      if (now !== payload.f[n]) changed.push(n);
    }
    if (changed.length > 0) {
      throw new TokenError(
        'filters-changed',
        `the next token was issued for a query with different filters (changed: ${changed.join(', ')}); repeat the first page's filters unchanged with next, or start a new query without next`,
      );
    }
    return payload.c;
  }
}

function isPayload(p: unknown): p is TokenPayload {
  if (typeof p !== 'object' || p === null) return false;
  const o = p as Record<string, unknown>;
  if (o['v'] !== 1 || typeof o['s'] !== 'string' || typeof o['c'] !== 'string' || typeof o['e'] !== 'number') return false;
  const f = o['f'];
  if (typeof f !== 'object' || f === null || Array.isArray(f)) return false;
  return Object.values(f as Record<string, unknown>).every((v) => typeof v === 'string');
}
