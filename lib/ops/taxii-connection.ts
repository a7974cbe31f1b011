/**
 * A TAXII client from plain settings and secrets — what a Node-RED config node (settings +
 * credentials) or an n8n credential holds. Keeps the token endpoint's HTTP client too, so closing
 * releases every socket (no open handles after a redeploy).
 */
import type { AxiosInstance } from 'axios';
import { createAuthProvider, type AuthConfig } from '../auth/config';
import { closeHttpClient, createHttpClient, type TlsOptions } from '../http';
import { TaxiiClient } from '../taxii/client';
import { OpsError } from './errors';
import { ConfigError, bool, int, oneOf, optStr, str } from './settings';

export type TaxiiAuthType = 'none' | 'basic' | 'bearer' | 'oauth2';

export interface TaxiiSettings {
  /** discovery URL or API root URL */
  url: string;
  authType: TaxiiAuthType;
  /** OAuth2 token endpoint */
  tokenUrl?: string;
  scope?: string;
  audience?: string;
  /** verify the server certificate (default true) */
  tlsVerify?: boolean;
  /** PEM bundle of CAs to trust (default: the system's) */
  ca?: string;
  /** per-request timeout, ms */
  timeoutMs?: number;
}

/**
 * TAXII connection settings from raw form values: url, authType (none | basic | bearer | oauth2),
 * tokenUrl, scope, audience, tlsVerify (default true), ca (PEM), timeout (ms, default 30 s).
 * Throws ConfigError naming the setting.
 */
export function parseTaxiiSettings(raw: Record<string, unknown>): TaxiiSettings {
  const url = str(raw['url']);
  if (!/^https?:\/\/\S+$/i.test(url)) throw new ConfigError(`TAXII URL must be an http:// or https:// discovery or API-root URL, got "${url}"`);
  const s: TaxiiSettings = {
    url,
    authType: oneOf(raw['authType'], 'authentication', ['none', 'basic', 'bearer', 'oauth2'] as const, 'none'),
    tlsVerify: bool(raw['tlsVerify'], true),
    timeoutMs: int(raw['timeout'], 'timeout', 30_000, 100, 600_000),
  };
  const tokenUrl = optStr(raw['tokenUrl']);
  const scope = optStr(raw['scope']);
  const audience = optStr(raw['audience']);
  const ca = optStr(raw['ca']);
  if (tokenUrl) s.tokenUrl = tokenUrl;
  if (scope) s.scope = scope;
  if (audience) s.audience = audience;
  if (ca) s.ca = ca;
  return s;
}

export interface TaxiiSecrets {
  username?: string;
  password?: string;
  token?: string;
  clientId?: string;
  clientSecret?: string;
}

export interface TaxiiConnection {
  client: TaxiiClient;
  /** auth description without secrets, for messages */
  auth: string;
  close(): void;
}

function need(value: string | undefined, what: string, authType: string): string {
  if (!value) throw new OpsError('BAD_CONFIG', `${authType} authentication needs ${what}`);
  return value;
}

/** Build the client. Throws for settings that cannot work (missing secret, bad URL). */
export function createTaxiiConnection(settings: TaxiiSettings, secrets: TaxiiSecrets): TaxiiConnection {
  const tls: TlsOptions = { rejectUnauthorized: settings.tlsVerify ?? true };
  if (settings.ca && settings.ca.trim()) tls.ca = settings.ca;
  const timeoutMs = settings.timeoutMs ?? 30_000;
  let tokenHttp: AxiosInstance | undefined;
  let auth: AuthConfig;
  switch (settings.authType) {
    case 'none':
      auth = { type: 'none' };
      break;
    case 'basic':
      auth = { type: 'basic', username: need(secrets.username, 'a username', 'basic'), password: secrets.password ?? '' };
      break;
    case 'bearer':
      auth = { type: 'bearer', token: need(secrets.token, 'a token', 'bearer') };
      break;
    case 'oauth2': {
      // check the settings first: a client created before a failing check would never be closed
      const tokenUrl = need(settings.tokenUrl, 'a token URL', 'oauth2');
      const clientId = need(secrets.clientId, 'a client id', 'oauth2');
      const clientSecret = need(secrets.clientSecret, 'a client secret', 'oauth2');
      tokenHttp = createHttpClient({ timeoutMs, tls });
      auth = {
        type: 'oauth2',
        tokenUrl,
        clientId,
        clientSecret,
        client: tokenHttp,
        timeoutMs,
        ...(settings.scope ? { scope: settings.scope } : {}),
        ...(settings.audience ? { audience: settings.audience } : {}),
      };
      break;
    }
    default:
      throw new OpsError('BAD_CONFIG', `unknown authentication type ${JSON.stringify(settings.authType)}`);
  }
  const provider = createAuthProvider(auth);
  let client: TaxiiClient;
  try {
    client = new TaxiiClient({ url: settings.url, auth: provider, timeoutMs, tls });
  } catch (err) {
    if (tokenHttp) closeHttpClient(tokenHttp);
    throw err;
  }
  return {
    client,
    auth: provider.describe?.() ?? settings.authType,
    close(): void {
      client.close();
      if (tokenHttp) closeHttpClient(tokenHttp);
    },
  };
}
