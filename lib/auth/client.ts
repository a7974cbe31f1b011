/**
 * Client-side authentication for outgoing HTTP requests (TAXII client and anything else that
 * talks to a protected HTTP API).
 *
 * An `AuthProvider` yields the headers to add to a request. Providers whose credentials can go
 * stale (OAuth2 tokens) implement `invalidate`, which the caller invokes after a 401 before
 * retrying once.
 */

export interface AuthProvider {
  /** headers to add to the next request (e.g. `{ Authorization: 'Basic ...' }`) */
  headers(): Promise<Record<string, string>>;
  /**
   * The server rejected these credentials (401): forget them. `rejected` are the headers that
   * were refused; a provider that has meanwhile obtained newer credentials keeps those.
   */
  invalidate?(rejected?: Record<string, string>): void;
  /** a short description without secrets, for logs and error messages */
  describe?(): string;
  /** release what the provider holds (e.g. the token endpoint's keep-alive connections) */
  close?(): void;
}

export type AuthErrorCode =
  /** the provider is misconfigured (missing field, illegal character) */
  | 'CONFIG'
  /** the token endpoint answered with an OAuth2 error (`invalid_client`, `invalid_scope`, ...) */
  | 'OAUTH2_ERROR'
  /** the token endpoint answered with a non-OAuth2 failure (HTML 502, ...) */
  | 'OAUTH2_HTTP'
  /** a 2xx token response without a usable `access_token` */
  | 'BAD_RESPONSE'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'NETWORK'
  | 'TLS';

export interface AuthErrorInit {
  code: AuthErrorCode;
  /** the endpoint that failed (token URL) */
  url?: string;
  httpStatus?: number;
  /** OAuth2 `error` and `error_description` when the server sent them */
  oauthError?: string;
  oauthErrorDescription?: string;
  cause?: unknown;
}

export class AuthError extends Error {
  readonly code: AuthErrorCode;
  readonly url?: string;
  readonly httpStatus?: number;
  readonly oauthError?: string;
  readonly oauthErrorDescription?: string;

  constructor(message: string, init: AuthErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'AuthError';
    this.code = init.code;
    if (init.url !== undefined) this.url = init.url;
    if (init.httpStatus !== undefined) this.httpStatus = init.httpStatus;
    if (init.oauthError !== undefined) this.oauthError = init.oauthError;
    if (init.oauthErrorDescription !== undefined) this.oauthErrorDescription = init.oauthErrorDescription;
  }
}

// eslint-disable-next-line no-control-regex -- header values must not carry control characters
const CTL = /[\u0000-\u001f\u007f]/;

/** No credentials. */
export class NoAuth implements AuthProvider {
  async headers(): Promise<Record<string, string>> {
    return {};
  }
  describe(): string {
    return 'none';
  }
}

/**
 * HTTP Basic (RFC 7617), credentials encoded as UTF-8 (the `charset="UTF-8"` form every modern
 * server expects). A user-id with `:` cannot be expressed and is refused.
 */
export class BasicAuth implements AuthProvider {
  private readonly value: string;
  readonly username: string;

  constructor(username: string, password: string) {
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw new AuthError('Basic auth: username and password must be strings', { code: 'CONFIG' });
    }
    if (username.includes(':')) {
      throw new AuthError('Basic auth: the username must not contain ":" (RFC 7617)', { code: 'CONFIG' });
    }
    if (CTL.test(username) || CTL.test(password)) {
      throw new AuthError('Basic auth: control characters are not allowed in username or password', { code: 'CONFIG' });
    }
    this.username = username;
    this.value = 'Basic ' + Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
  }

  async headers(): Promise<Record<string, string>> {
    return { Authorization: this.value };
  }

  describe(): string {
    return `basic (${this.username})`;
  }
}

/** A static bearer token (RFC 6750). */
export class BearerAuth implements AuthProvider {
  private readonly value: string;

  constructor(token: string) {
    if (typeof token !== 'string' || token.trim() === '') {
      throw new AuthError('Bearer auth: empty token', { code: 'CONFIG' });
    }
    if (CTL.test(token) || /\s/.test(token.trim())) {
      throw new AuthError('Bearer auth: the token must not contain white space or control characters', { code: 'CONFIG' });
    }
    this.value = 'Bearer ' + token.trim();
  }

  async headers(): Promise<Record<string, string>> {
    return { Authorization: this.value };
  }

  describe(): string {
    return 'bearer (static token)';
  }
}
