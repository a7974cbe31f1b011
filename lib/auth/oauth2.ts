/**
 * OAuth 2.0 client credentials grant (RFC 6749 §4.4) as an AuthProvider.
 *
 * - client authentication `client_secret_basic` (default; id and secret form-encoded before
 *   base64 as RFC 6749 §2.3.1 says, which Keycloak and oidc-provider decode) or `client_secret_post`;
 * - optional `scope`, `audience` and RFC 8707 `resource` parameters;
 * - the token is cached and refreshed before it expires: at `lifetime - min(refreshSkewMs,
 *   lifetime × refreshSkewRatio)` (30 s / 10 % by default); the lifetime comes from `expires_in`,
 *   else the JWT `exp`, else `defaultLifetimeMs`;
 * - single flight: concurrent callers share one token request;
 * - `invalidate()` after a 401 from the resource server drops the token (unless a newer one
 *   was fetched meanwhile), so the caller's retry gets a fresh one;
 * - a refresh that fails while the cached token has not yet expired returns the cached token
 *   (the next call tries again); otherwise an AuthError naming the token endpoint and the OAuth2
 *   `error` / `error_description` is thrown.
 *
 * Keycloak's endpoint is `{base}/realms/{realm}/protocol/openid-connect/token` (`keycloakTokenUrl`).
 */
import type { AxiosInstance } from 'axios';
import { AuthError, type AuthProvider } from './client';
import { classifyTransportError, closeHttpClient, createHttpClient, type HttpOptions } from '../http';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post';

export interface OAuth2ClientCredentialsOptions {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  /** default `client_secret_basic` */
  authMethod?: ClientAuthMethod;
  /** requested scope(s); an array is joined with spaces */
  scope?: string | string[];
  /** `audience` parameter (some servers, e.g. Auth0; ignored by servers that do not know it) */
  audience?: string;
  /** RFC 8707 resource indicator(s) */
  resource?: string | string[];
  /** more form parameters for the token request */
  extraParams?: Record<string, string>;
  /** timeout of one token request (default 10 000 ms) */
  timeoutMs?: number;
  /** TLS/proxy options for the token endpoint when no `client` is given */
  http?: HttpOptions;
  /** use this axios instance (from createHttpClient) instead of making one */
  client?: AxiosInstance;
  /** refresh at most this long before expiry (default 30 000 ms) */
  refreshSkewMs?: number;
  /** ... and at most this fraction of the lifetime before expiry (default 0.1) */
  refreshSkewRatio?: number;
  /** lifetime assumed when the response says nothing (default 300 000 ms) */
  defaultLifetimeMs?: number;
}

interface CachedToken {
  accessToken: string;
  header: string;
  /** refresh after this instant */
  refreshAt: number;
  /** unusable after this instant */
  expiresAt: number;
}

/** Keycloak's token endpoint for a realm. */
export function keycloakTokenUrl(baseUrl: string, realm: string): string {
  const base = baseUrl.replace(/\/+$/, '');
  return `${base}/realms/${encodeURIComponent(realm)}/protocol/openid-connect/token`;
}

/**
 * Find the token endpoint from OpenID Connect discovery (`{issuer}/.well-known/openid-configuration`),
 * e.g. for a Keycloak realm URL `https://kc.example/realms/sets`.
 */
export async function discoverTokenEndpoint(
  issuer: string,
  opts: { client?: AxiosInstance; http?: HttpOptions; timeoutMs?: number } = {},
): Promise<string> {
  let url: string;
  try {
    url = new URL(issuer.replace(/\/+$/, '') + '/.well-known/openid-configuration').href;
  } catch {
    throw new AuthError(`OAuth2: invalid issuer URL ${issuer}`, { code: 'CONFIG' });
  }
  const client = opts.client ?? createHttpClient({ timeoutMs: opts.timeoutMs ?? 10_000, ...opts.http });
  try {
    let status: number;
    let body: string;
    try {
      const res = await client.request<string>({
        method: 'GET', url, timeout: opts.timeoutMs ?? 10_000, headers: { Accept: 'application/json' },
        responseType: 'text', transformResponse: [(d: unknown) => d], validateStatus: () => true,
      });
      status = res.status;
      body = typeof res.data === 'string' ? res.data : '';
    } catch (err) {
      const t = classifyTransportError(err);
      throw new AuthError(`OpenID discovery ${url} failed: ${t.kind.toLowerCase()}: ${t.detail}`, { code: t.kind, url, cause: err });
    }
    if (status !== 200) {
      throw new AuthError(`OpenID discovery ${url} failed: HTTP ${status}${body ? `: ${snippet(body)}` : ''}`, { code: 'OAUTH2_HTTP', url, httpStatus: status });
    }
    let meta: unknown;
    try {
      meta = JSON.parse(body);
    } catch {
      meta = undefined;
    }
    if (!isRecord(meta) || typeof meta['token_endpoint'] !== 'string') {
      throw new AuthError(`OpenID discovery ${url}: no token_endpoint in the answer`, { code: 'BAD_RESPONSE', url, httpStatus: status });
    }
    return meta['token_endpoint'];
  } finally {
    if (!opts.client) closeHttpClient(client);
  }
}

/** application/x-www-form-urlencoded encoding of one value (RFC 6749 Appendix B). */
function formEncode(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%20/g, '+');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `exp` (seconds) from a JWT's payload, without verifying it — used only to schedule a refresh. */
function jwtExp(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (isRecord(payload) && typeof payload['exp'] === 'number' && Number.isFinite(payload['exp'])) return payload['exp'];
  } catch {
    // not a JWT
  }
  return undefined;
}

function snippet(s: string, max = 200): string {
  const t = s.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
  return t.length > max ? t.slice(0, max - 1) + '…' : t;
}

export class OAuth2ClientCredentials implements AuthProvider {
  private readonly opts: OAuth2ClientCredentialsOptions;
  private readonly client: AxiosInstance;
  private readonly ownsClient: boolean;
  private cached: CachedToken | undefined;
  private inflight: Promise<CachedToken> | undefined;
  /** after a failed refresh while the cached token is still valid: no new attempt before this */
  private retryAt = 0;
  /** token requests sent so far (diagnostics) */
  requestCount = 0;

  constructor(opts: OAuth2ClientCredentialsOptions) {
    for (const k of ['tokenUrl', 'clientId', 'clientSecret'] as const) {
      if (typeof opts[k] !== 'string' || opts[k] === '') {
        throw new AuthError(`OAuth2 client credentials: ${k} is required`, { code: 'CONFIG' });
      }
    }
    try {
      const u = new URL(opts.tokenUrl);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      throw new AuthError(`OAuth2 client credentials: invalid token URL ${opts.tokenUrl}`, { code: 'CONFIG' });
    }
    if (opts.authMethod !== undefined && opts.authMethod !== 'client_secret_basic' && opts.authMethod !== 'client_secret_post') {
      throw new AuthError(`OAuth2 client credentials: unsupported auth method ${String(opts.authMethod)}`, { code: 'CONFIG' });
    }
    this.opts = opts;
    this.ownsClient = !opts.client;
    this.client = opts.client ?? createHttpClient({ timeoutMs: opts.timeoutMs ?? 10_000, ...opts.http });
  }

  /** Close the idle connections of the HTTP client this provider made (not of one passed in). */
  close(): void {
    if (this.ownsClient) closeHttpClient(this.client);
  }

  describe(): string {
    return `oauth2 client_credentials (${this.opts.clientId} @ ${this.opts.tokenUrl})`;
  }

  async headers(): Promise<Record<string, string>> {
    const t = await this.getToken();
    return { Authorization: t.header };
  }

  /** the current access token (fetching one when needed) */
  async accessToken(): Promise<string> {
    return (await this.getToken()).accessToken;
  }

  invalidate(rejected?: Record<string, string>): void {
    if (!this.cached) return;
    const auth = rejected ? (rejected['Authorization'] ?? rejected['authorization']) : undefined;
    if (auth === undefined || auth === this.cached.header) this.cached = undefined;
  }

  private async getToken(): Promise<CachedToken> {
    const now = Date.now();
    const c = this.cached;
    if (c && (now < c.refreshAt || (now < this.retryAt && now < c.expiresAt))) return c;
    try {
      return await this.refresh();
    } catch (err) {
      // the endpoint is briefly unavailable but the token we hold is still good: use it, and
      // do not ask again for a while (a quarter of its remaining life, at most 5 s)
      const t = Date.now();
      if (c && this.cached === c && t < c.expiresAt) {
        this.retryAt = t + Math.min(5000, (c.expiresAt - t) / 4);
        return c;
      }
      throw err;
    }
  }

  private refresh(): Promise<CachedToken> {
    if (!this.inflight) {
      this.inflight = this.requestToken().then(
        (t) => {
          this.inflight = undefined;
          this.cached = t;
          return t;
        },
        (err: unknown) => {
          this.inflight = undefined;
          throw err;
        },
      );
    }
    return this.inflight;
  }

  private async requestToken(): Promise<CachedToken> {
    const o = this.opts;
    const url = o.tokenUrl;
    const form = new URLSearchParams();
    form.set('grant_type', 'client_credentials');
    const headers: Record<string, string> = {
      'Content-Type': 'application/x-www-form-urlencoded',
      Accept: 'application/json',
    };
    if ((o.authMethod ?? 'client_secret_basic') === 'client_secret_basic') {
      headers['Authorization'] = 'Basic ' + Buffer.from(`${formEncode(o.clientId)}:${formEncode(o.clientSecret)}`, 'utf8').toString('base64');
    } else {
      form.set('client_id', o.clientId);
      form.set('client_secret', o.clientSecret);
    }
    const scope = Array.isArray(o.scope) ? o.scope.join(' ') : o.scope;
    if (scope) form.set('scope', scope);
    if (o.audience) form.set('audience', o.audience);
    for (const r of Array.isArray(o.resource) ? o.resource : o.resource ? [o.resource] : []) form.append('resource', r);
    for (const [k, v] of Object.entries(o.extraParams ?? {})) form.set(k, v);

    const started = Date.now();
    this.requestCount++;
    let status: number;
    let body: string;
    try {
      const res = await this.client.request<string>({
        method: 'POST',
        url,
        data: form.toString(),
        headers,
        timeout: o.timeoutMs ?? 10_000,
        responseType: 'text',
        transformResponse: [(d: unknown) => d],
        validateStatus: () => true,
        maxRedirects: 0,
      });
      status = res.status;
      body = typeof res.data === 'string' ? res.data : String(res.data ?? '');
    } catch (err) {
      const t = classifyTransportError(err);
      throw new AuthError(`OAuth2 token request to ${url} failed: ${t.kind.toLowerCase()}: ${t.detail}`, {
        code: t.kind,
        url,
        cause: err,
      });
    }

    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      json = undefined;
    }

    if (status < 200 || status >= 300) {
      if (isRecord(json) && typeof json['error'] === 'string') {
        const desc = typeof json['error_description'] === 'string' ? json['error_description'] : undefined;
        throw new AuthError(
          `OAuth2 token request to ${url} failed: ${status} ${json['error']}${desc ? `: ${desc}` : ''}`,
          { code: 'OAUTH2_ERROR', url, httpStatus: status, oauthError: json['error'], ...(desc !== undefined ? { oauthErrorDescription: desc } : {}) },
        );
      }
      throw new AuthError(`OAuth2 token request to ${url} failed: HTTP ${status}${body ? `: ${snippet(body)}` : ''}`, {
        code: 'OAUTH2_HTTP',
        url,
        httpStatus: status,
      });
    }

    if (!isRecord(json) || typeof json['access_token'] !== 'string' || json['access_token'] === '') {
      // a successful token response may carry other secrets (refresh/id tokens): name its fields, never echo it
      const shape = isRecord(json) ? `fields: ${Object.keys(json).slice(0, 10).join(', ') || 'none'}` : 'not a JSON object';
      throw new AuthError(`OAuth2 token response from ${url} has no access_token (${shape})`, {
        code: 'BAD_RESPONSE',
        url,
        httpStatus: status,
      });
    }
    const tokenType = typeof json['token_type'] === 'string' ? json['token_type'] : 'Bearer';
    if (tokenType.toLowerCase() !== 'bearer') {
      throw new AuthError(`OAuth2 token response from ${url}: unsupported token_type ${tokenType} (only Bearer)`, {
        code: 'BAD_RESPONSE',
        url,
        httpStatus: status,
      });
    }
    const accessToken = json['access_token'];
    if (/[\s\u0000-\u001f\u007f]/.test(accessToken)) { // eslint-disable-line no-control-regex
      throw new AuthError(`OAuth2 token response from ${url}: access_token contains white space or control characters`, {
        code: 'BAD_RESPONSE',
        url,
      });
    }

    let lifetimeMs: number;
    const ei = json['expires_in'];
    const eiNum = typeof ei === 'number' ? ei : typeof ei === 'string' && ei.trim() !== '' ? Number(ei) : NaN;
    if (Number.isFinite(eiNum) && eiNum > 0) {
      lifetimeMs = eiNum * 1000;
    } else {
      const exp = jwtExp(accessToken);
      lifetimeMs = exp !== undefined ? exp * 1000 - started : o.defaultLifetimeMs ?? 300_000;
    }
    lifetimeMs = Math.max(0, lifetimeMs);
    const skew = Math.min(o.refreshSkewMs ?? 30_000, lifetimeMs * (o.refreshSkewRatio ?? 0.1));
    return {
      accessToken,
      header: `Bearer ${accessToken}`,
      refreshAt: started + lifetimeMs - skew,
      expiresAt: started + lifetimeMs,
    };
  }
}
