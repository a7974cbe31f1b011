/**
 * API keys for the TAXII server: long random secrets handed to a feed consumer or producer
 * (MISP, OpenCTI, Cortex XSOAR, scripts) that cannot do OAuth2 and should not share a user's
 * password.
 *
 * Where a key is accepted (docs/interop.md, "Authentication"):
 * - as the password of HTTP Basic, with ANY user name (the name is only a label): XSOAR and MISP
 *   put the key there, and some tools send an empty or fixed user name;
 * - as `Authorization: Token <key>` (taxii2-client's TokenAuth; XSOAR's `_api_token_key` user);
 * - as `Authorization: Bearer <key>` (OpenCTI's "bearer" TAXII feed authentication), checked before
 *   the JWT verifier so an opaque key never reaches it.
 *
 * Keys are never stored: a key entry carries `sha256$<base64url digest>` made by `hashApiKey`.
 * A fast hash is enough because keys are random and long (`hashApiKey` refuses keys shorter than
 * 20 characters); slow hashing (scrypt, as for passwords) would cost tens of ms on every request.
 * Look-up is by digest, so the comparison time does not depend on how much of a key is right.
 */
import { createHash } from 'node:crypto';

export interface ApiKeyEntry {
  /** who holds the key (shown as the principal's name, in logs and 403 messages) */
  name: string;
  /** output of `hashApiKey` */
  keyHash: string;
  /** roles granted (matched against a collection's canRead / canWrite) */
  roles: string[];
}

export class ApiKeyError extends Error {
  readonly code = 'BAD_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'ApiKeyError';
  }
}

/** Shortest key `hashApiKey` accepts (a fast hash is only safe for long random keys). */
export const MIN_API_KEY_LENGTH = 20;

const HASH_RE = /^sha256\$([A-Za-z0-9_-]{43})$/;

function digest(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('base64url');
}

/** Hash an API key for an `ApiKeyEntry.keyHash` (`sha256$<base64url>`). */
export function hashApiKey(key: string): string {
  if (typeof key !== 'string' || key.length < MIN_API_KEY_LENGTH) {
    throw new ApiKeyError(`an API key must be a string of at least ${MIN_API_KEY_LENGTH} characters (use a random one, e.g. 32 bytes base64url)`);
  }
  if (/[\s:]/.test(key)) throw new ApiKeyError('an API key must not contain white space or ":" (it travels in HTTP headers and Basic credentials)');
  return `sha256$${digest(key)}`;
}

/** Checks presented keys against the configured entries. */
export class ApiKeyVerifier {
  private readonly byDigest = new Map<string, ApiKeyEntry>();

  constructor(entries: readonly ApiKeyEntry[]) {
    const names = new Set<string>();
    for (const e of entries) {
      if (!e || typeof e.name !== 'string' || e.name.trim() === '') throw new ApiKeyError('every API key needs a name');
      if (names.has(e.name)) throw new ApiKeyError(`API key name ${e.name} is used twice`);
      names.add(e.name);
      const m = typeof e.keyHash === 'string' ? HASH_RE.exec(e.keyHash) : null;
      if (!m) throw new ApiKeyError(`API key ${e.name}: keyHash must be the output of hashApiKey (sha256$<base64url>)`);
      if (!Array.isArray(e.roles) || e.roles.some((r) => typeof r !== 'string')) throw new ApiKeyError(`API key ${e.name}: roles must be a list of strings`);
      if (this.byDigest.has(m[1])) throw new ApiKeyError(`API key ${e.name} has the same key as ${this.byDigest.get(m[1])?.name ?? 'another'}`);
      this.byDigest.set(m[1], { name: e.name, keyHash: e.keyHash, roles: [...e.roles] });
    }
  }

  get size(): number {
    return this.byDigest.size;
  }

  /** The entry whose key this is, or null. */
  verify(presented: string): { name: string; roles: string[] } | null {
    if (presented.length < MIN_API_KEY_LENGTH || presented.length > 4096) return null;
    const e = this.byDigest.get(digest(presented));
    return e ? { name: e.name, roles: [...e.roles] } : null;
  }
}

/** Parse `Token <key>` (any letter case of the scheme); null otherwise. */
export function parseTokenHeader(value: string): string | null {
  const m = /^\s*token\s+(\S+)\s*$/i.exec(value);
  return m ? m[1] : null;
}
