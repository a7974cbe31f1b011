/**
 * The TAXII server's configuration (lib/taxii/server) from plain settings and secrets — what the
 * Node-RED `taxii-server` node (fields + credentials) or an n8n node holds — so both front ends
 * build the same server: one API root, its collections with read/write roles, HTTP Basic users
 * (given as text, hashed with scrypt here: no password is kept in memory after start), OAuth2
 * bearer tokens checked against a JWKS, anonymous read.
 *
 * URL scheme (under the front end's mount path `<base>`): discovery at `<base>/taxii2/`, the API
 * root at `<base>/<apiRoot>/`.
 */
import { randomUUID } from 'node:crypto';
import type { Store } from '../store/store';
import {
  INTEGRITY_POLICIES,
  hashApiKey,
  hashPassword,
  integrityPolicyOf,
  type ApiKeyEntry,
  type BasicUser,
  type CollectionConfig,
  type IntegrityPolicy,
  type ServerLogger,
  type TaxiiServerConfig,
} from '../taxii/server';
import type { ServerAuthConfig } from '../auth/server-auth';
import { isLoopbackHost, type JwtVerifierConfig } from '../auth/server-jwt';
import { THROTTLE_DEFAULTS } from '../auth/throttle';
import { OpsError } from './errors';
import { ConfigError, bool, int, optInt, optStr, str } from './settings';

export type { IntegrityPolicy };

export interface ServerCollectionSettings {
  /** collection id (UUIDv4 by default); also the collection part of the ledger key */
  id: string;
  title: string;
  description?: string;
  alias?: string;
  /** roles that may read (`*` any authenticated caller, `anonymous` callers without credentials) */
  canRead: string[];
  /** roles that may add (and, with read, delete) objects */
  canWrite: string[];
  /**
   * `required` (default): records start pending until the flow settles them, and are refused once
   * invalid; `optional`: served at once, a mismatch still makes them invalid; `off`: plain TAXII
   */
  integrity?: IntegrityPolicy;
}

export interface ServerOAuth2Settings {
  issuer: string;
  jwksUrl: string;
  /** expected `aud`: required unless `anyAudience` is true */
  audience?: string;
  /** accept tokens issued for any audience (explicit opt-out of the audience check; not recommended) */
  anyAudience?: boolean;
  /** client whose `resource_access.<client>.roles` count (default: the audience) */
  clientId?: string;
  /** allowed clock skew, seconds (default 30) */
  clockToleranceSec?: number;
}

export interface ServerSettings {
  /** discovery title */
  title: string;
  description?: string;
  contact?: string;
  /** API root name = its URL path segment (default `api1`) */
  apiRoot: string;
  apiRootTitle?: string;
  apiRootDescription?: string;
  /** max_content_length in octets (default 10 MiB) */
  maxContentLength?: number;
  collections: ServerCollectionSettings[];
  /** let callers without credentials read collections whose read roles list `anonymous` */
  anonymousRead?: boolean;
  /** no authentication at all (local demos only) */
  open?: boolean;
  oauth2?: ServerOAuth2Settings;
  /** most records in one page (default 1,000) */
  maxPageSize?: number;
  /** recovery sweep of records that stay pending: seconds between sweeps (default 60; 0 = only at start) */
  recoveryIntervalSec?: number;
  /** anchor grace period, seconds (default 300): how long a record may stay unanchored */
  anchorGraceSec?: number;
  /** protection of authentication against floods (lib/auth/throttle.ts); unset fields keep the defaults */
  protection?: ServerProtectionSettings;
}

/**
 * Authentication flood protection (lib/auth/throttle.ts: AuthThrottleOptions, HashGateOptions).
 * Defaults: PROTECTION_DEFAULTS.
 */
export interface ServerProtectionSettings {
  /** failed attempts one remote address may make in a burst (0 = no per-address limit) */
  addressBurst?: number;
  /** failed attempts against one user name in a burst (0 = no per-user-name limit) */
  userBurst?: number;
  /** one attempt is regained every this many ms */
  refillMs?: number;
  /** most addresses and user names tracked, each (the least recently seen are forgotten) */
  maxTracked?: number;
  /** password hashes (scrypt) running at once */
  maxConcurrentHashes?: number;
  /** password checks waiting for a hashing slot; beyond it a check is answered 503 */
  maxQueuedHashes?: number;
}

/** The defaults of lib/auth/throttle.ts, shown as placeholders by the front ends. */
export const PROTECTION_DEFAULTS: Readonly<Required<ServerProtectionSettings>> = THROTTLE_DEFAULTS;

/** Each protection field: its label in error messages and its range. */
const PROTECTION_FIELDS: ReadonlyArray<[keyof ServerProtectionSettings, string, number, number]> = [
  ['addressBurst', 'failed logins per address (addressBurst)', 0, 1_000_000],
  ['userBurst', 'failed logins per user name (userBurst)', 0, 1_000_000],
  ['refillMs', 'login attempt regained every (refillMs, ms)', 1, 86_400_000],
  ['maxTracked', 'addresses and user names tracked (maxTracked)', 1, 10_000_000],
  ['maxConcurrentHashes', 'password checks at once (maxConcurrentHashes)', 1, 256],
  ['maxQueuedHashes', 'password checks queued (maxQueuedHashes)', 0, 1_000_000],
];

/**
 * Protection settings from raw form values (fields named as ServerProtectionSettings; empty = the
 * default). Returns undefined when every field is empty. ConfigError naming the field otherwise.
 */
export function parseProtection(raw: Record<string, unknown>): ServerProtectionSettings | undefined {
  const out: ServerProtectionSettings = {};
  for (const [field, label, min, max] of PROTECTION_FIELDS) {
    const v = optInt(raw[field], label, min, max);
    if (v !== undefined) out[field] = v;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export interface ServerSecrets {
  /**
   * HTTP Basic users: a JSON list `[{"username", "password", "roles": [...]}]` or one user per line
   * `user:password:role1,role2` (`#` starts a comment line). A password may be given as a
   * `scrypt$…` hash made by hashPassword instead.
   */
  users?: string;
  /**
   * API keys (for tools that cannot do OAuth2: MISP, OpenCTI, XSOAR, scripts): a JSON list
   * `[{"name", "key", "roles": [...]}]` or lines `name:key:role1,role2`. A key is accepted as the
   * password of Basic (any user name), as `Token <key>` or as `Bearer <key>`; it may be given as a
   * `sha256$…` hash made by hashApiKey instead.
   */
  apiKeys?: string;
  /**
   * Basic users already parsed (the Node-RED dialog's rows with their kept secrets); when given,
   * `users` is not read. Passwords as in parseUsers (clear or `scrypt$…`).
   */
  userEntries?: UserEntry[];
  /** API keys already parsed (clear or `sha256$…`); when given, `apiKeys` is not read. */
  apiKeyEntries?: ApiKeyLine[];
  /** HMAC secret for `next` tokens (>= 16 bytes; shared by every instance behind a load balancer) */
  nextTokenSecret?: string;
}

/** One Basic user as written by the operator (password in clear or as a scrypt hash). */
export interface UserEntry {
  username: string;
  password: string;
  roles: string[];
}

const API_ROOT_RE = /^[A-Za-z0-9._~-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._~!$&'()*+,;=:@-]+$/;

function bad(message: string): OpsError {
  return new OpsError('BAD_CONFIG', message);
}

function roleList(v: unknown, what: string): string[] {
  if (v === undefined || v === null || v === '') return [];
  const parts = Array.isArray(v) ? v : typeof v === 'string' ? v.split(/[,\s]+/) : null;
  if (!parts) throw bad(`${what} must be a list of roles`);
  const out: string[] = [];
  for (const p of parts) {
    if (typeof p !== 'string') throw bad(`${what} must be a list of role names`);
    const r = p.trim();
    if (r !== '' && !out.includes(r)) out.push(r);
  }
  return out;
}

function optText(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  return s === '' ? undefined : s;
}

/** A fresh collection id (UUIDv4, as TAXII 2.1 recommends). */
export function newCollectionId(): string {
  return randomUUID();
}

/**
 * Collections as an editor list holds them (roles as comma/space separated text or lists).
 * Throws OpsError BAD_CONFIG naming the collection and the field.
 */
export function parseCollections(value: unknown): ServerCollectionSettings[] {
  if (value === undefined || value === null || value === '') return [];
  let list: unknown = value;
  if (typeof value === 'string') {
    try {
      list = JSON.parse(value);
    } catch {
      throw bad('collections must be a JSON list');
    }
  }
  if (!Array.isArray(list)) throw bad('collections must be a list');
  const out: ServerCollectionSettings[] = [];
  const ids = new Set<string>();
  list.forEach((raw: unknown, i) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(`collection #${i + 1} is not an object`);
    const c = raw as Record<string, unknown>;
    const id = optText(c['id']);
    const where = `collection #${i + 1}${id ? ` (${id})` : ''}`;
    if (!id) throw bad(`${where}: the id is empty`);
    if (!SEGMENT_RE.test(id)) throw bad(`${where}: the id cannot be used in a URL (letters, digits and -._~ only)`);
    if (ids.has(id)) throw bad(`${where}: the id is used twice`);
    ids.add(id);
    const title = optText(c['title']) ?? id;
    const given = optText(c['integrity']) ?? 'required';
    // `none` is the editor's older word for off; verify/trust the library's legacy ones
    const integrity = given === 'none' ? 'off' : integrityPolicyOf(given);
    if (!integrity) throw bad(`${where}: integrity policy must be one of ${INTEGRITY_POLICIES.join(', ')}, got "${given}"`);
    const col: ServerCollectionSettings = {
      id,
      title,
      canRead: roleList(c['canRead'], `${where}: read roles`),
      canWrite: roleList(c['canWrite'], `${where}: write roles`),
      integrity,
    };
    const description = optText(c['description']);
    const alias = optText(c['alias']);
    if (description) col.description = description;
    if (alias) {
      if (!SEGMENT_RE.test(alias)) throw bad(`${where}: the alias cannot be used in a URL`);
      col.alias = alias;
    }
    out.push(col);
  });
  return out;
}

/**
 * Basic users from text: a JSON list of `{username, password, roles}` or lines
 * `user:password:role1,role2` (the password may contain `:`; the roles are after the last one).
 * Errors name the entry (line number / index) but never echo a password.
 */
export function parseUsers(text: string | undefined): UserEntry[] {
  const src = (text ?? '').trim();
  if (src === '') return [];
  const out: UserEntry[] = [];
  const seen = new Set<string>();
  const add = (u: UserEntry, where: string): void => {
    if (u.username === '' || u.username.includes(':')) throw bad(`${where}: the user name is empty or contains ':'`);
    if (u.password === '') throw bad(`${where}: user ${u.username} has no password`);
    if (seen.has(u.username)) throw bad(`${where}: user ${u.username} is listed twice`);
    seen.add(u.username);
    out.push(u);
  };
  if (src.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(src);
    } catch {
      throw bad('the user list starts with "[" but is not valid JSON');
    }
    if (!Array.isArray(parsed)) throw bad('the user list must be a JSON list');
    parsed.forEach((raw: unknown, i) => {
      const where = `user #${i + 1}`;
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(`${where} is not an object`);
      const r = raw as Record<string, unknown>;
      if (typeof r['username'] !== 'string' || typeof r['password'] !== 'string') throw bad(`${where} needs "username" and "password" strings`);
      add({ username: r['username'].trim(), password: r['password'], roles: roleList(r['roles'], `${where}: roles`) }, where);
    });
    return out;
  }
  src.split(/\r?\n/).forEach((line, i) => {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const where = `user list line ${i + 1}`;
    const first = l.indexOf(':');
    const last = l.lastIndexOf(':');
    if (first < 0 || last === first) throw bad(`${where}: expected user:password:role1,role2`);
    add({ username: l.slice(0, first).trim(), password: l.slice(first + 1, last), roles: roleList(l.slice(last + 1), `${where}: roles`) }, where);
  });
  return out;
}

/** One API key as written by the operator (in clear or as a `sha256$…` hash). */
export interface ApiKeyLine {
  name: string;
  key: string;
  roles: string[];
}

/**
 * API keys from text: a JSON list of `{name, key, roles}` or lines `name:key:role1,role2`.
 * Errors name the entry but never echo a key.
 */
export function parseApiKeys(text: string | undefined): ApiKeyLine[] {
  const src = (text ?? '').trim();
  if (src === '') return [];
  const out: ApiKeyLine[] = [];
  const add = (k: ApiKeyLine, where: string): void => {
    if (k.name === '') throw bad(`${where}: the key has no name`);
    if (k.key === '') throw bad(`${where}: ${k.name} has no key`);
    if (out.some((o) => o.name === k.name)) throw bad(`${where}: the name ${k.name} is listed twice`);
    out.push(k);
  };
  if (src.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(src);
    } catch {
      throw bad('the API key list starts with "[" but is not valid JSON');
    }
    if (!Array.isArray(parsed)) throw bad('the API key list must be a JSON list');
    parsed.forEach((raw: unknown, i) => {
      const where = `API key #${i + 1}`;
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(`${where} is not an object`);
      const r = raw as Record<string, unknown>;
      if (typeof r['name'] !== 'string' || typeof r['key'] !== 'string') throw bad(`${where} needs "name" and "key" strings`);
      add({ name: r['name'].trim(), key: r['key'].trim(), roles: roleList(r['roles'], `${where}: roles`) }, where);
    });
    return out;
  }
  src.split(/\r?\n/).forEach((line, i) => {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const where = `API key list line ${i + 1}`;
    const first = l.indexOf(':');
    const last = l.lastIndexOf(':');
    if (first < 0 || last === first) throw bad(`${where}: expected name:key:role1,role2`);
    add({ name: l.slice(0, first).trim(), key: l.slice(first + 1, last).trim(), roles: roleList(l.slice(last + 1), `${where}: roles`) }, where);
  });
  return out;
}

/** Hash parsed API keys (a `sha256$…` value is taken as an existing hash); errors name the key's holder. */
export function hashApiKeys(keys: ApiKeyLine[]): ApiKeyEntry[] {
  return keys.map((k) => {
    let keyHash: string;
    try {
      keyHash = k.key.startsWith('sha256$') ? k.key : hashApiKey(k.key);
    } catch (err) {
      throw bad(`API key of ${k.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return { name: k.name, keyHash, roles: [...k.roles] };
  });
}

/** Hash the passwords of parsed users (a `scrypt$…` value is taken as an existing hash). */
export async function hashUsers(users: UserEntry[], opts: { N?: number } = {}): Promise<BasicUser[]> {
  const out: BasicUser[] = [];
  for (const u of users) {
    const passwordHash = u.password.startsWith('scrypt$') ? u.password : await hashPassword(u.password, opts);
    out.push({ username: u.username, passwordHash, roles: [...u.roles] });
  }
  return out;
}

/** Check settings that cannot work, with messages naming the field (no I/O). */
export function checkServerSettings(s: ServerSettings): void {
  if (!optText(s.title)) throw bad('the server title is empty');
  if (!API_ROOT_RE.test(s.apiRoot) || s.apiRoot === '.' || s.apiRoot === '..') {
    throw bad(`API root name "${s.apiRoot}" must be one URL path segment (letters, digits, -._~)`);
  }
  if (s.apiRoot === 'taxii2') throw bad('the API root cannot be named taxii2 (the discovery path)');
  if (s.protection) {
    for (const [field, label, min, max] of PROTECTION_FIELDS) {
      const v = s.protection[field];
      if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw bad(`${label} must be a whole number between ${min} and ${max}, got ${String(v)}`);
    }
  }
  if (s.oauth2) {
    if (!optText(s.oauth2.issuer)) throw bad('OAuth2 needs the issuer');
    if (!/^https?:\/\/\S+$/.test(s.oauth2.jwksUrl ?? '')) throw bad('OAuth2 needs the JWKS URL (https)');
    let host = '';
    try {
      host = new URL(s.oauth2.jwksUrl).hostname;
    } catch {
      throw bad(`OAuth2 JWKS URL "${s.oauth2.jwksUrl}" is not a URL`);
    }
    if (s.oauth2.jwksUrl.startsWith('http:') && !isLoopbackHost(host)) {
      throw bad('OAuth2 JWKS URL must use https (plain http only on loopback: 127.0.0.0/8, ::1, localhost)');
    }
    if (!optText(s.oauth2.audience) && s.oauth2.anyAudience !== true) {
      throw bad('OAuth2 needs the audience (the "Audience" setting: client id or resource the tokens are issued for), or turn on "Accept any audience" (anyAudience) explicitly');
    }
  }
}

/**
 * A mount path from what a form holds: '' and '/' are the root (returned as ''), else
 * `/segment[/segment…]` without a trailing slash (default `/taxii`).
 */
export function normaliseBasePath(value: unknown, fallback = '/taxii'): string {
  let s = str(value, fallback);
  if (s === '' || s === '/') return '';
  if (!s.startsWith('/')) s = '/' + s;
  s = s.replace(/\/+$/, '');
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(s)) throw new ConfigError(`base path "${s}" must be URL path segments of letters, digits and -._~`);
  return s;
}

/**
 * Server settings from raw form values (the Node-RED taxii-server node's fields, the n8n server
 * trigger's parameters): title, description, contact, apiRoot (default api1), apiRootTitle,
 * maxContentLength (bytes, default 10 MiB), maxPageSize (default 1000), recoveryInterval (s between
 * sweeps of records left pending, default 60, 0 = only at start), anchorGrace (s, default 300),
 * collections (list or JSON
 * text, see parseCollections), anonymousRead, openAccess, oauth2 (switch) with issuer, jwksUrl,
 * audience (required unless anyAudience), anyAudience, clientId, clockTolerance (s); authentication
 * flood protection: addressBurst, userBurst, refillMs, maxTracked, maxConcurrentHashes,
 * maxQueuedHashes (see parseProtection; empty = PROTECTION_DEFAULTS). Checked with checkServerSettings; throws ConfigError /
 * OpsError BAD_CONFIG naming the field.
 */
export function parseServerSettings(raw: Record<string, unknown>): ServerSettings {
  const settings: ServerSettings = {
    title: str(raw['title']) || 'SETS TAXII server',
    apiRoot: str(raw['apiRoot']) || 'api1',
    collections: parseCollections(raw['collections']),
    anonymousRead: bool(raw['anonymousRead'], false),
    open: bool(raw['openAccess'], false),
    maxContentLength: int(raw['maxContentLength'], 'max content length', 10 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    maxPageSize: int(raw['maxPageSize'], 'max page size', 1000, 1, 100_000),
    recoveryIntervalSec: int(raw['recoveryInterval'], 'recovery sweep interval (s)', 60, 0, 86_400),
    anchorGraceSec: int(raw['anchorGrace'], 'anchor grace period (s)', 300, 0, 30 * 86_400),
  };
  const protection = parseProtection(raw);
  if (protection) settings.protection = protection;
  const apiRootTitle = optStr(raw['apiRootTitle']);
  const description = optStr(raw['description']);
  const contact = optStr(raw['contact']);
  if (apiRootTitle) settings.apiRootTitle = apiRootTitle;
  if (description) settings.description = description;
  if (contact) settings.contact = contact;
  if (bool(raw['oauth2'], false)) {
    settings.oauth2 = { issuer: str(raw['issuer']), jwksUrl: str(raw['jwksUrl']) };
    const audience = optStr(raw['audience']);
    const clientId = optStr(raw['clientId']);
    const tolerance = optInt(raw['clockTolerance'], 'clock tolerance', 0, 600);
    if (audience) settings.oauth2.audience = audience;
    if (bool(raw['anyAudience'], false)) settings.oauth2.anyAudience = true;
    if (clientId) settings.oauth2.clientId = clientId;
    if (tolerance !== undefined) settings.oauth2.clockToleranceSec = tolerance;
  }
  checkServerSettings(settings);
  return settings;
}

/**
 * Build the TAXII server configuration. Hashes the Basic users (scrypt: tens of ms each).
 * Throws OpsError BAD_CONFIG for settings that cannot work (also when no way to authenticate is
 * configured and the server is not explicitly open).
 */
export async function buildServerConfig(
  s: ServerSettings,
  secrets: ServerSecrets,
  store: Store,
  opts: { log?: ServerLogger; scryptN?: number; nextTokenSecret?: string | Uint8Array } = {},
): Promise<TaxiiServerConfig> {
  checkServerSettings(s);
  const users = secrets.userEntries ?? parseUsers(secrets.users);
  const auth: ServerAuthConfig = {};
  if (s.open) auth.open = true;
  if (s.anonymousRead) auth.anonymousRead = true;
  const p = s.protection ?? {};
  if (users.length > 0) {
    auth.basic = { users: await hashUsers(users, opts.scryptN !== undefined ? { N: opts.scryptN } : {}) };
    if (p.maxConcurrentHashes !== undefined) auth.basic.maxConcurrentHashes = p.maxConcurrentHashes;
    if (p.maxQueuedHashes !== undefined) auth.basic.maxQueuedHashes = p.maxQueuedHashes;
  }
  const throttle: NonNullable<Exclude<ServerAuthConfig['throttle'], false>> = {};
  if (p.addressBurst !== undefined) throttle.addressBurst = p.addressBurst;
  if (p.userBurst !== undefined) throttle.userBurst = p.userBurst;
  if (p.refillMs !== undefined) throttle.refillMs = p.refillMs;
  if (p.maxTracked !== undefined) throttle.maxTracked = p.maxTracked;
  if (Object.keys(throttle).length > 0) auth.throttle = throttle;
  const keys = hashApiKeys(secrets.apiKeyEntries ?? parseApiKeys(secrets.apiKeys));
  if (keys.length > 0) auth.apiKeys = keys;
  if (s.oauth2) {
    const o: JwtVerifierConfig = { issuer: s.oauth2.issuer, jwksUrl: s.oauth2.jwksUrl };
    if (s.oauth2.audience) o.audience = s.oauth2.audience;
    if (s.oauth2.anyAudience === true) o.requireAudience = false;
    const clients = [s.oauth2.clientId, s.oauth2.audience].filter((c): c is string => !!c);
    if (clients.length > 0) o.clients = [...new Set(clients)];
    if (s.oauth2.clockToleranceSec !== undefined) o.clockToleranceSec = s.oauth2.clockToleranceSec;
    auth.oauth2 = o;
  }
  if (!auth.open && !auth.anonymousRead && !auth.basic && !auth.apiKeys && !auth.oauth2) {
    throw bad('no way to authenticate: add Basic users or API keys, configure OAuth2, allow anonymous read, or make the server open (demos only)');
  }
  const collections: CollectionConfig[] = s.collections.map((c) => {
    const cc: CollectionConfig = { id: c.id, title: c.title, canRead: [...c.canRead], canWrite: [...c.canWrite], integrity: { policy: c.integrity ?? 'required' } };
    if (c.description) cc.description = c.description;
    if (c.alias) cc.alias = c.alias;
    return cc;
  });
  const root: TaxiiServerConfig['apiRoots'][string] = { title: s.apiRootTitle || s.apiRoot, collections };
  if (s.apiRootDescription) root.description = s.apiRootDescription;
  if (s.maxContentLength !== undefined) root.maxContentLength = s.maxContentLength;
  const config: TaxiiServerConfig = {
    title: s.title,
    apiRoots: { [s.apiRoot]: root },
    defaultApiRoot: s.apiRoot,
    store,
    auth,
  };
  if (s.description) config.description = s.description;
  if (s.contact) config.contact = s.contact;
  if (s.maxPageSize !== undefined) config.maxPageSize = s.maxPageSize;
  if (s.recoveryIntervalSec !== undefined || s.anchorGraceSec !== undefined) {
    config.recovery = {
      ...(s.recoveryIntervalSec !== undefined ? { intervalMs: s.recoveryIntervalSec * 1000 } : {}),
      ...(s.anchorGraceSec !== undefined ? { graceMs: s.anchorGraceSec * 1000 } : {}),
    };
  }
  const secret = optText(secrets.nextTokenSecret) ?? opts.nextTokenSecret;
  if (secret !== undefined) config.nextTokenSecret = secret;
  if (opts.log) config.log = opts.log;
  return config;
}
