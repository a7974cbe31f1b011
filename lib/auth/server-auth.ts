/**
 * Authentication of TAXII server requests: HTTP Basic users, OAuth2 bearer JWTs, or both, plus
 * an optional anonymous reader. Produces a Principal (name + roles); authorisation against a
 * collection's canRead / canWrite roles happens in the server (lib/taxii/server.ts).
 *
 * Under attack (lib/auth/throttle.ts): failed attempts are throttled per remote address and per
 * Basic user name (429 + Retry-After, before any hashing), and password hashing is capped (503 +
 * Retry-After when its queue is full). Credentials verified recently (Basic cache) and valid API
 * keys are never throttled, so a flood does not lock out the clients that hold them. Both refusals
 * are thrown by `authenticate` as HttpProblem (a TAXII error resource with its headers), which the
 * server answers as is.
 */
import type { IncomingMessage } from 'node:http';
import { BasicVerifier, parseBasicHeader, type BasicUser, type BasicVerifierOptions } from './server-basic';
import { BearerError, JwtVerifier, parseBearerHeader, type JwtVerifierConfig } from './server-jwt';
import { ApiKeyVerifier, parseTokenHeader, type ApiKeyEntry } from './server-apikey';
import { AuthThrottled, FailureThrottle, HashGateFull, clientKey, type AttemptTicket, type AuthThrottleOptions } from './throttle';
import { HttpProblem } from '../taxii/server-http';

export interface Principal {
  /** user name (Basic), token subject name (Bearer), API key name, or `anonymous` */
  name: string;
  roles: string[];
  scheme: 'basic' | 'bearer' | 'apikey' | 'anonymous' | 'open';
}

/** Role every anonymous caller has; list it in a collection's canRead to let anonymous callers read it. */
export const ANONYMOUS_ROLE = 'anonymous';
/** In canRead / canWrite: any authenticated caller (not anonymous ones). */
export const ANY_AUTHENTICATED = '*';

export interface ServerAuthConfig {
  /** realm in WWW-Authenticate (default `TAXII`) */
  realm?: string;
  /** HTTP Basic users */
  basic?: { users: BasicUser[] } & BasicVerifierOptions;
  /**
   * Throttling of failed authentication per remote address and per Basic user name (token buckets;
   * defaults: bursts of 10, one attempt regained every 6 s). `false` turns it off.
   */
  throttle?: AuthThrottleOptions | false;
  /** OAuth2 bearer JWTs */
  oauth2?: JwtVerifierConfig;
  /**
   * API keys (lib/auth/server-apikey.ts), accepted as the password of HTTP Basic with any user
   * name, as `Token <key>`, or as `Bearer <key>`; stored as `hashApiKey` digests.
   */
  apiKeys?: ApiKeyEntry[];
  /**
   * Let requests without credentials read (GET) as the `anonymous` role: discovery, API roots and
   * every collection whose canRead lists `anonymous`. Default false.
   */
  anonymousRead?: boolean;
  /**
   * No authentication at all: every caller may read and write every collection. For local demos
   * only; must be set explicitly (a server without basic/oauth2 and without this refuses to start).
   */
  open?: boolean;
}

export type AuthOutcome =
  | { ok: true; principal: Principal }
  /** 401: no or bad credentials; `description` is safe to show */
  | { ok: false; status: 401; description: string; bearerError?: string }
  /** 503: the credentials could not be checked (JWKS unreachable) */
  | { ok: false; status: 503; description: string };

export class ServerAuthError extends Error {
  readonly code = 'BAD_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'ServerAuthError';
  }
}

function quote(s: string): string {
  // header values must stay printable ASCII (Node refuses others): anything else becomes '?'
  return '"' + s.replace(/["\\]/g, '\\$&').replace(/[^\x20-\x7e]/g, '?') + '"';
}

export class ServerAuthenticator {
  private readonly basic?: BasicVerifier;
  private readonly jwt?: JwtVerifier;
  private readonly keys?: ApiKeyVerifier;
  private readonly throttle?: FailureThrottle;
  readonly realm: string;
  readonly anonymousRead: boolean;
  readonly open: boolean;

  constructor(config: ServerAuthConfig) {
    this.realm = config.realm ?? 'TAXII';
    this.anonymousRead = config.anonymousRead === true;
    this.open = config.open === true;
    if (config.basic) this.basic = new BasicVerifier(config.basic.users, config.basic);
    if (config.oauth2) this.jwt = new JwtVerifier(config.oauth2);
    if (config.apiKeys && config.apiKeys.length > 0) this.keys = new ApiKeyVerifier(config.apiKeys);
    if (config.throttle !== false) {
      try {
        this.throttle = new FailureThrottle(config.throttle ?? {});
      } catch (err) {
        throw new ServerAuthError(`TAXII server auth throttle: ${(err as Error).message}`);
      }
    }
    if (!this.basic && !this.jwt && !this.keys && !this.open && !this.anonymousRead) {
      throw new ServerAuthError('TAXII server auth: configure basic users, apiKeys and/or oauth2, or set anonymousRead / open explicitly');
    }
  }

  get schemes(): string[] {
    const s: string[] = [];
    if (this.basic || this.keys) s.push('Basic');
    if (this.jwt || this.keys) s.push('Bearer');
    if (this.keys) s.push('Token');
    return s;
  }

  /**
   * WWW-Authenticate challenges for a 401 (one per configured scheme; Basic is always offered when
   * nothing else is, as TAXII suggests it).
   */
  challenges(bearerError?: { error: string; description: string }): string[] {
    const out: string[] = [];
    if (this.basic || this.keys || !this.jwt) out.push(`Basic realm=${quote(this.realm)}, charset="UTF-8"`);
    if (this.jwt) {
      out.push(
        bearerError
          ? `Bearer realm=${quote(this.realm)}, error=${quote(bearerError.error)}, error_description=${quote(bearerError.description)}`
          : `Bearer realm=${quote(this.realm)}`,
      );
    }
    return out;
  }

  /**
   * Authenticate a request from its Authorization header. Rejects with an HttpProblem 429 (this
   * address / user name failed too often) or 503 (password hashing queue full), each with
   * Retry-After; the server answers these as they are.
   */
  async authenticate(req: IncomingMessage): Promise<AuthOutcome> {
    if (this.open) return { ok: true, principal: { name: 'anonymous', roles: [ANONYMOUS_ROLE], scheme: 'open' } };
    const header = req.headers.authorization;
    if (header === undefined || header.trim() === '') {
      if (this.anonymousRead) return { ok: true, principal: { name: 'anonymous', roles: [ANONYMOUS_ROLE], scheme: 'anonymous' } };
      return { ok: false, status: 401, description: `authentication required (${this.schemes.join(' or ')})` };
    }
    const address = clientKey(req as IncomingMessage & { ip?: unknown });
    // the scheme name is case-insensitive (RFC 9110 §11.1): MISP sends `basic`
    const scheme = /^\s*(\S+)/.exec(header)?.[1]?.toLowerCase() ?? '';
    if (scheme === 'basic') {
      if (!this.basic && !this.keys) return { ok: false, status: 401, description: 'this server does not accept Basic credentials' };
      const creds = parseBasicHeader(header);
      if (!creds) return { ok: false, status: 401, description: 'malformed Basic credentials (expected base64 of user:password)' };
      // an API key as the password, whatever the user name (XSOAR, MISP, scripts)
      const key = this.keys?.verify(creds.password);
      if (key) return { ok: true, principal: { name: key.name, roles: key.roles, scheme: 'apikey' } };
      // credentials verified recently pass without hashing and without throttling
      const known = this.basic?.cached(creds);
      if (known) return { ok: true, principal: { name: known.username, roles: known.roles, scheme: 'basic' } };
      const ticket = this.admit(address, this.basic ? creds.username : undefined);
      if (!this.basic) {
        ticket.failure();
        return { ok: false, status: 401, description: 'invalid API key (send it as the Basic password)' };
      }
      let user: { username: string; roles: string[] } | null;
      try {
        user = await this.basic.verify(creds);
      } catch (err) {
        ticket.cancel();
        if (err instanceof HashGateFull) throw busy(err);
        throw err;
      }
      if (!user) {
        ticket.failure();
        return { ok: false, status: 401, description: 'invalid user name or password' };
      }
      ticket.success();
      return { ok: true, principal: { name: user.username, roles: user.roles, scheme: 'basic' } };
    }
    if (scheme === 'token') {
      if (!this.keys) return { ok: false, status: 401, description: 'this server does not accept API keys' };
      const presented = parseTokenHeader(header);
      const key = presented === null ? null : this.keys.verify(presented);
      if (!key) {
        this.admit(address).failure();
        return { ok: false, status: 401, description: presented === null ? 'malformed Token credentials (expected "Token <key>")' : 'invalid API key' };
      }
      return { ok: true, principal: { name: key.name, roles: key.roles, scheme: 'apikey' } };
    }
    if (scheme === 'bearer') {
      if (this.keys) {
        const raw = /^\s*\S+\s+(\S+)\s*$/.exec(header)?.[1];
        const key = raw === undefined ? null : this.keys.verify(raw);
        if (key) return { ok: true, principal: { name: key.name, roles: key.roles, scheme: 'apikey' } };
        if (!this.jwt) {
          this.admit(address).failure();
          return { ok: false, status: 401, description: 'invalid API key', bearerError: 'invalid_token' };
        }
      }
      if (!this.jwt) return { ok: false, status: 401, description: 'this server does not accept bearer tokens' };
      const token = parseBearerHeader(header);
      if (!token) return { ok: false, status: 401, description: 'malformed bearer token', bearerError: 'invalid_request' };
      const ticket = this.admit(address);
      try {
        const id = await this.jwt.verify(token);
        ticket.success();
        return { ok: true, principal: { name: id.name, roles: id.roles, scheme: 'bearer' } };
      } catch (err) {
        if (err instanceof BearerError && err.code === 'VERIFIER_UNAVAILABLE') {
          ticket.cancel();
          return { ok: false, status: 503, description: err.message };
        }
        ticket.failure();
        const description = err instanceof Error ? err.message : 'the bearer token is not valid';
        return { ok: false, status: 401, description, bearerError: 'invalid_token' };
      }
    }
    return { ok: false, status: 401, description: `unsupported authentication scheme ${JSON.stringify(scheme)} (use ${this.schemes.join(' or ') || 'none'})` };
  }

  /** Take a throttle token for an attempt, or throw the 429 answer. */
  private admit(address: string, username?: string): AttemptTicket {
    if (!this.throttle) return NO_TICKET;
    try {
      return this.throttle.admit(address, username);
    } catch (err) {
      if (err instanceof AuthThrottled) {
        throw new HttpProblem(429, 'Too Many Requests', err.message, { 'Retry-After': String(err.retryAfterSec) });
      }
      throw err;
    }
  }
}

const NO_TICKET: AttemptTicket = { success: () => undefined, failure: () => undefined, cancel: () => undefined };

function busy(err: HashGateFull): HttpProblem {
  return new HttpProblem(503, 'Service Unavailable', err.message, { 'Retry-After': String(err.retryAfterSec) });
}

/** Does a principal hold one of the roles a collection lists? */
export function hasRole(principal: Principal, allowed: readonly string[]): boolean {
  if (principal.scheme === 'open') return true;
  for (const r of allowed) {
    if (r === ANY_AUTHENTICATED && principal.scheme !== 'anonymous') return true;
    if (principal.roles.includes(r)) return true;
  }
  return false;
}
