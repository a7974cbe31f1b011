/**
 * OAuth2 bearer tokens for the TAXII server: access tokens are JWTs (Keycloak, oidc-provider)
 * verified against the issuer's JWKS with `jose` (paper §4.2: "the server utilises the OAuth2
 * service Keycloak for the authentication and authorization of clients").
 *
 * Checked: signature with a key from the JWKS, `alg` restricted to asymmetric algorithms
 * (RS*, PS*, ES*, EdDSA — `none` and HMAC, the "HS256 signed with the public key" confusion,
 * are refused), `iss`, `aud` (required unless `requireAudience: false`), `exp` (required), `nbf`.
 * The JWKS is fetched over https only, except from a loopback host (127.0.0.0/8, ::1, localhost):
 * keys fetched over plain http could be replaced on the way, and with them every token accepted.
 * Roles are read Keycloak-style from `realm_access.roles` and `resource_access.<client>.roles`
 * (plus optional extra claims), and matched against the collections' canRead / canWrite roles.
 */
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';

/** The asymmetric JWS algorithms a bearer token may use. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA', 'Ed25519',
] as const;

export interface JwtVerifierConfig {
  /** URL of the issuer's JSON Web Key Set (Keycloak: `<realm>/protocol/openid-connect/certs`) */
  jwksUrl?: string;
  /** a fixed key set instead of jwksUrl (keys rotated by configuration) */
  jwks?: JSONWebKeySet;
  /** expected `iss` (required) */
  issuer: string | string[];
  /** expected `aud` (one of); required unless `requireAudience` is false */
  audience?: string | string[];
  /**
   * Default true: a configuration without `audience` is refused. Set false explicitly to accept
   * tokens the issuer made for any audience (any other client or service of the realm) — not
   * recommended.
   */
  requireAudience?: boolean;
  /** allowed `alg` values, a subset of ASYMMETRIC_ALGORITHMS (default: all of them) */
  algorithms?: string[];
  /** clients whose `resource_access.<client>.roles` count as roles (default: the audience values) */
  clients?: string[];
  /** extra claims holding roles, as dotted paths (e.g. `roles`, `groups`); string values are split on spaces */
  roleClaims?: string[];
  /** allowed clock skew, seconds (default 30) */
  clockToleranceSec?: number;
  /** JWKS fetch timeout, ms (default 5,000) */
  timeoutMs?: number;
  /** how long fetched keys are trusted, ms (default 600,000) */
  cacheMaxAgeMs?: number;
  /** after a successful fetch, how long an unknown `kid` waits before another fetch, ms (default 30,000) */
  cooldownMs?: number;
}

export interface BearerIdentity {
  /** preferred_username, else client_id / azp, else sub */
  name: string;
  roles: string[];
  claims: JWTPayload;
}

export type BearerErrorCode =
  /** the token is malformed, badly signed, expired or for someone else: 401 */
  | 'INVALID_TOKEN'
  /** the verifier could not get the keys (JWKS unreachable / timeout / garbage): 503 */
  | 'VERIFIER_UNAVAILABLE'
  | 'BAD_CONFIG';

export class BearerError extends Error {
  readonly code: BearerErrorCode;
  constructor(code: BearerErrorCode, message: string, cause?: unknown) {
    super(message, cause !== undefined ? { cause } : undefined);
    this.name = 'BearerError';
    this.code = code;
  }
}

/** Is a URL host name loopback (127.0.0.0/8, ::1, localhost / *.localhost)? No DNS is asked. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(h) || h === '::ffff:7f00:1') return true;
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h)?.[1] ?? h;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(v4);
  return m !== null && Number(m[1]) === 127 && [m[2], m[3], m[4]].every((o) => Number(o) <= 255);
}

/** Parse an `Authorization` header value of the Bearer scheme (case-insensitive); null otherwise. */
export function parseBearerHeader(value: string): string | null {
  const m = /^\s*bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(value);
  return m ? m[1] : null;
}

function getPath(obj: unknown, path: string[]): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

function rolesAt(obj: unknown, path: string[]): string[] {
  const v = getPath(obj, path);
  if (typeof v === 'string') return v.split(/\s+/).filter((s) => s !== '');
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string');
  return [];
}

/** Keycloak-style roles of a token. */
export function rolesOfClaims(claims: JWTPayload, clients: string[], extra: string[] = []): string[] {
  const roles = new Set<string>(rolesAt(claims, ['realm_access', 'roles']));
  for (const c of clients) for (const r of rolesAt(claims, ['resource_access', c, 'roles'])) roles.add(r);
  for (const path of extra) for (const r of rolesAt(claims, path.split('.'))) roles.add(r);
  return [...roles];
}

const TOKEN_ERROR_CODES = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
  'ERR_JWS_INVALID',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
]);

function aud(a: string | string[] | undefined): boolean {
  return Array.isArray(a) ? a.some((x) => typeof x === 'string' && x.trim() !== '') : typeof a === 'string' && a.trim() !== '';
}

export class JwtVerifier {
  private readonly keys: ReturnType<typeof createRemoteJWKSet> | ReturnType<typeof createLocalJWKSet>;
  private readonly algorithms: string[];
  private readonly clients: string[];
  private readonly where: string;

  constructor(private readonly config: JwtVerifierConfig) {
    if (!config.issuer || (Array.isArray(config.issuer) && config.issuer.length === 0)) {
      throw new BearerError('BAD_CONFIG', 'OAuth2 bearer verification needs the expected issuer');
    }
    const allowed = new Set<string>(ASYMMETRIC_ALGORITHMS);
    const algs = config.algorithms ?? [...ASYMMETRIC_ALGORITHMS];
    const refused = algs.filter((a) => !allowed.has(a));
    if (refused.length > 0 || algs.length === 0) {
      throw new BearerError(
        'BAD_CONFIG',
        `OAuth2 bearer algorithms must be asymmetric (${ASYMMETRIC_ALGORITHMS.join(', ')}); refused: ${refused.join(', ') || '(empty list)'}`,
      );
    }
    this.algorithms = algs;
    const aud = (config.audience === undefined ? [] : Array.isArray(config.audience) ? config.audience : [config.audience]).filter(
      (a) => typeof a === 'string' && a.trim() !== '',
    );
    this.clients = config.clients ?? aud;
    if (config.jwksUrl) {
      let url: URL;
      try {
        url = new URL(config.jwksUrl);
      } catch {
        throw new BearerError('BAD_CONFIG', `OAuth2 JWKS URL ${JSON.stringify(config.jwksUrl)} is not a URL`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        throw new BearerError('BAD_CONFIG', `OAuth2 JWKS URL must be https: ${config.jwksUrl}`);
      }
      if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
        throw new BearerError(
          'BAD_CONFIG',
          `OAuth2 JWKS URL (option "jwksUrl") must use https (plain http is accepted only on loopback: 127.0.0.0/8, ::1, localhost): ${url.href}`,
        );
      }
      this.keys = createRemoteJWKSet(url, {
        timeoutDuration: config.timeoutMs ?? 5000,
        cacheMaxAge: config.cacheMaxAgeMs ?? 600_000,
        cooldownDuration: config.cooldownMs ?? 30_000,
      });
      this.where = `JWKS ${url.href}`;
    } else if (config.jwks) {
      this.keys = createLocalJWKSet(config.jwks);
      this.where = 'configured JWKS';
    } else {
      throw new BearerError('BAD_CONFIG', 'OAuth2 bearer verification needs jwksUrl or jwks');
    }
    if (aud.length === 0 && config.requireAudience !== false) {
      throw new BearerError(
        'BAD_CONFIG',
        'OAuth2 bearer verification needs the expected audience (option "audience": the client id or resource the tokens are issued for); ' +
          'without it any token of the issuer, for any other service, would be accepted. Set "requireAudience" to false to allow that explicitly.',
      );
    }
  }

  /** Verify a compact JWT; resolves with the caller's identity or rejects with a BearerError. */
  async verify(token: string): Promise<BearerIdentity> {
    let payload: JWTPayload;
    try {
      const res = await jwtVerify(token, this.keys, {
        issuer: this.config.issuer,
        ...(aud(this.config.audience) ? { audience: this.config.audience } : {}),
        algorithms: this.algorithms,
        clockTolerance: this.config.clockToleranceSec ?? 30,
        requiredClaims: ['exp'],
      });
      payload = res.payload;
    } catch (err) {
      throw this.classify(err);
    }
    const name =
      (typeof payload.preferred_username === 'string' && payload.preferred_username) ||
      (typeof payload.client_id === 'string' && payload.client_id) ||
      (typeof payload.azp === 'string' && payload.azp) ||
      (typeof payload.sub === 'string' && payload.sub) ||
      'unknown';
    return { name, roles: rolesOfClaims(payload, this.clients, this.config.roleClaims), claims: payload };
  }

  private classify(err: unknown): BearerError {
    if (err instanceof joseErrors.JWTExpired) return new BearerError('INVALID_TOKEN', 'the bearer token has expired', err);
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      return new BearerError('INVALID_TOKEN', `the bearer token's "${err.claim}" claim is not accepted (${err.reason})`, err);
    }
    if (err instanceof joseErrors.JOSEAlgNotAllowed) {
      return new BearerError('INVALID_TOKEN', `the bearer token's algorithm is not allowed (allowed: ${this.algorithms.join(', ')})`, err);
    }
    if (err instanceof joseErrors.JWKSNoMatchingKey) {
      return new BearerError('INVALID_TOKEN', `no key of the ${this.where} matches the bearer token`, err);
    }
    if (err instanceof joseErrors.JWKSTimeout) {
      return new BearerError('VERIFIER_UNAVAILABLE', `cannot verify bearer tokens: ${this.where} did not answer in time`, err);
    }
    const code = err instanceof joseErrors.JOSEError ? err.code : undefined;
    if (code !== undefined && TOKEN_ERROR_CODES.has(code)) {
      return new BearerError('INVALID_TOKEN', `the bearer token is not valid (${(err as Error).message})`, err);
    }
    return new BearerError(
      'VERIFIER_UNAVAILABLE',
      `cannot verify bearer tokens: ${this.where} could not be used (${err instanceof Error ? err.message : String(err)})`,
      err,
    );
  }
}
