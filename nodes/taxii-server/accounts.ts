/**
 * The taxii-server's Basic users and API keys as the dialog edits them (issue 13.4): one row per
 * account, existing passwords kept unless changed in that row.
 *
 * Node-RED keeps a `password` credential only when the editor sends exactly `__PWRD__` and
 * otherwise replaces the stored value, and the editor never sees a stored password — so one
 * credential holding every password could only be replaced as a whole. The storage is therefore:
 *
 * - node properties `userList` / `apiKeyList`: the non-secret rows `{id, name, roles}` (`id` is a
 *   stable random row id: renaming a user keeps its password);
 * - credential `secrets`: JSON `{users: {<row id>: Secret}, apiKeys: {<row id>: Secret}}` — never
 *   sent by the dialog (it has no input for it), so the runtime keeps it across deploys;
 * - credential `secretChanges`: the dialog's change-set JSON
 *   `{users: {<row id>: {password} | {legacy: <name>}}, apiKeys: {<row id>: {key} | {legacy: <name>}}}`
 *   naming only the rows whose secret is new (or taken over from the old text format).
 *
 * At start the node merges: a row takes its secret from the change-set, else from `secrets`, else
 * (legacy) from the old text credential by name; rows removed from the list lose theirs. The merged
 * `secrets` is written back into the runtime's credential store (saved with the next deploy) and the
 * change-set and the old text credentials are dropped. The merge is idempotent — applying the same
 * change-set again gives the same accounts — so a restart before the next save (the file still
 * holding the old `secrets` and the change-set) ends in the same place.
 *
 * Old flows (no `userList` / `apiKeyList` property) keep using the text credentials `users` /
 * `apiKeys` ("user:password:roles" lines or JSON), exactly as before; the dialog converts them on
 * the next save (rows referring to the old entries by name).
 */
import { parseApiKeys, parseUsers, type ApiKeyLine, type UserEntry } from '../../lib/ops/server-config';
import { hashApiKey } from '../../lib/taxii/server';
import { OpsError } from '../../lib/ops/errors';

/** A stored secret: `{h}` a hash (scrypt$… for users, sha256$… for API keys), `{p}` a password not hashed yet. */
export type Secret = { h: string } | { p: string };

export interface StoredSecrets {
  users: Record<string, Secret>;
  apiKeys: Record<string, Secret>;
}

export interface AccountChange {
  /** new password (users) */
  password?: string;
  /** new key (API keys) */
  key?: string;
  /** take the secret of this name from the old text credential */
  legacy?: string;
}

export interface SecretChanges {
  users?: Record<string, AccountChange>;
  apiKeys?: Record<string, AccountChange>;
}

/** One row of the dialog's list (node property). */
export interface AccountRow {
  id: string;
  name: string;
  roles: string[];
}

/** The credentials of a taxii-server node. */
export interface AccountCredentials {
  /** old text format (and n8n's): "user:password:roles" lines or JSON */
  users?: string;
  apiKeys?: string;
  secrets?: string;
  secretChanges?: string;
  tokenSecret?: string;
}

export interface ResolvedAccounts {
  /** Basic users for buildServerConfig (password = a `scrypt$` hash or the clear password) */
  users: UserEntry[];
  /** API keys for buildServerConfig (key = a `sha256$` hash) */
  apiKeys: ApiKeyLine[];
  /** rows that have no secret (left out: they cannot sign in), with why */
  warnings: string[];
  /**
   * The credentials to keep in the runtime's store afterwards, when they differ from the given
   * ones (merged `secrets`, no change-set, no converted text credential); undefined = unchanged.
   */
  store?: AccountCredentials;
}

const ROW_ID = /^[A-Za-z0-9_-]{1,64}$/;

function bad(message: string): OpsError {
  return new OpsError('BAD_CONFIG', message);
}

function roleList(v: unknown): string[] {
  const parts = Array.isArray(v) ? v : typeof v === 'string' ? v.split(/[,\s]+/) : [];
  const out: string[] = [];
  for (const p of parts) {
    if (typeof p !== 'string') continue;
    const r = p.trim();
    if (r !== '' && !out.includes(r)) out.push(r);
  }
  return out;
}

/**
 * The rows of a `userList` / `apiKeyList` property; undefined when the property is absent (an
 * old flow: the text credential applies). Throws BAD_CONFIG naming the row.
 */
export function parseRows(value: unknown, what: 'user' | 'API key'): AccountRow[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (!Array.isArray(value)) throw bad(`the ${what} list must be a list`);
  const out: AccountRow[] = [];
  value.forEach((raw: unknown, i) => {
    const where = `${what} #${i + 1}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(`${where} is not an object`);
    const r = raw as Record<string, unknown>;
    const id = typeof r['id'] === 'string' ? r['id'] : '';
    const name = typeof r['name'] === 'string' ? r['name'].trim() : '';
    if (!ROW_ID.test(id)) throw bad(`${where}: the row id is missing or malformed (open the dialog and save it again)`);
    if (name === '') throw bad(`${where}: the name is empty`);
    if (what === 'user' && name.includes(':')) throw bad(`${where}: the user name ${name} contains ':'`);
    if (out.some((o) => o.id === id)) throw bad(`${where}: the row id ${id} is used twice`);
    if (out.some((o) => o.name === name)) throw bad(`${where}: ${name} is listed twice`);
    out.push({ id, name, roles: roleList(r['roles']) });
  });
  return out;
}

function parseJson<T>(text: string | undefined, what: string): T | undefined {
  const s = (text ?? '').trim();
  if (s === '' || s === '__PWRD__') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    throw bad(`the stored ${what} are not valid JSON (save the dialog again and retype the passwords)`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`the stored ${what} are not an object`);
  return v as T;
}

function secretMap(v: unknown): Record<string, Secret> {
  const out: Record<string, Secret> = {};
  if (typeof v !== 'object' || v === null) return out;
  for (const [id, s] of Object.entries(v as Record<string, unknown>)) {
    if (typeof s !== 'object' || s === null) continue;
    const o = s as Record<string, unknown>;
    if (typeof o['h'] === 'string' && o['h'] !== '') out[id] = { h: o['h'] };
    else if (typeof o['p'] === 'string' && o['p'] !== '') out[id] = { p: o['p'] };
  }
  return out;
}

function changeMap(v: unknown): Record<string, AccountChange> {
  const out: Record<string, AccountChange> = {};
  if (typeof v !== 'object' || v === null) return out;
  for (const [id, c] of Object.entries(v as Record<string, unknown>)) {
    if (typeof c !== 'object' || c === null) continue;
    const o = c as Record<string, unknown>;
    const ch: AccountChange = {};
    if (typeof o['password'] === 'string' && o['password'] !== '') ch.password = o['password'];
    if (typeof o['key'] === 'string' && o['key'] !== '') ch.key = o['key'];
    if (typeof o['legacy'] === 'string' && o['legacy'] !== '') ch.legacy = o['legacy'];
    out[id] = ch;
  }
  return out;
}

/** The stored secrets credential (empty maps when absent). */
export function parseSecrets(text: string | undefined): StoredSecrets {
  const v = parseJson<Record<string, unknown>>(text, 'account secrets');
  return { users: secretMap(v?.['users']), apiKeys: secretMap(v?.['apiKeys']) };
}

/** The dialog's change-set credential (empty when absent). */
export function parseChanges(text: string | undefined): { users: Record<string, AccountChange>; apiKeys: Record<string, AccountChange> } {
  const v = parseJson<Record<string, unknown>>(text, 'account changes');
  return { users: changeMap(v?.['users']), apiKeys: changeMap(v?.['apiKeys']) };
}

function userSecret(password: string): Secret {
  return password.startsWith('scrypt$') ? { h: password } : { p: password };
}

function keySecret(key: string, name: string): Secret {
  if (key.startsWith('sha256$')) return { h: key };
  try {
    return { h: hashApiKey(key) };
  } catch (err) {
    throw bad(`API key ${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function secretText(s: Secret): string {
  return 'h' in s ? s.h : s.p;
}

/**
 * Merge the rows, the stored secrets, the dialog's change-set and (for rows converted from an old
 * flow) the old text credentials. Synchronous (API keys are hashed with SHA-256 here, user
 * passwords later with scrypt: see hashPending). Errors name the row, never a secret.
 */
export function resolveAccounts(props: { userList?: unknown; apiKeyList?: unknown }, creds: AccountCredentials): ResolvedAccounts {
  const userRows = parseRows(props.userList, 'user');
  const keyRows = parseRows(props.apiKeyList, 'API key');
  const warnings: string[] = [];
  const stored = parseSecrets(creds.secrets);
  const changes = parseChanges(creds.secretChanges);
  const merged: StoredSecrets = { users: {}, apiKeys: {} };

  let users: UserEntry[];
  if (userRows === undefined) {
    users = parseUsers(creds.users);
  } else {
    let legacy: UserEntry[] | undefined;
    const legacyUsers = (): UserEntry[] => (legacy ??= parseUsers(creds.users));
    users = [];
    for (const row of userRows) {
      const ch = changes.users[row.id];
      let s: Secret | undefined;
      if (ch?.password !== undefined) s = { p: ch.password };
      else if (stored.users[row.id]) s = stored.users[row.id];
      else if (ch?.legacy !== undefined) {
        const old = legacyUsers().find((u) => u.username === ch.legacy);
        if (old) s = userSecret(old.password);
      }
      if (!s) {
        warnings.push(`user ${row.name} has no password and cannot sign in: type one in the dialog`);
        continue;
      }
      merged.users[row.id] = s;
      users.push({ username: row.name, password: secretText(s), roles: row.roles });
    }
  }

  let apiKeys: ApiKeyLine[];
  if (keyRows === undefined) {
    apiKeys = parseApiKeys(creds.apiKeys);
  } else {
    let legacy: ApiKeyLine[] | undefined;
    const legacyKeys = (): ApiKeyLine[] => (legacy ??= parseApiKeys(creds.apiKeys));
    apiKeys = [];
    for (const row of keyRows) {
      const ch = changes.apiKeys[row.id];
      let s: Secret | undefined;
      if (ch?.key !== undefined) s = keySecret(ch.key.trim(), row.name);
      else if (stored.apiKeys[row.id]) s = stored.apiKeys[row.id];
      else if (ch?.legacy !== undefined) {
        const old = legacyKeys().find((k) => k.name === ch.legacy);
        if (old) s = keySecret(old.key, row.name);
      }
      if (s && 'p' in s) s = keySecret(s.p, row.name);
      if (!s) {
        warnings.push(`API key ${row.name} has no key and cannot be used: type or generate one in the dialog`);
        continue;
      }
      merged.apiKeys[row.id] = s;
      apiKeys.push({ name: row.name, key: secretText(s), roles: row.roles });
    }
  }

  // what the runtime's credential store should hold from now on
  const next: AccountCredentials = {};
  if (creds.tokenSecret !== undefined) next.tokenSecret = creds.tokenSecret;
  if (userRows === undefined && creds.users !== undefined) next.users = creds.users;
  if (keyRows === undefined && creds.apiKeys !== undefined) next.apiKeys = creds.apiKeys;
  const keepUsers = userRows === undefined ? stored.users : merged.users;
  const keepKeys = keyRows === undefined ? stored.apiKeys : merged.apiKeys;
  if (Object.keys(keepUsers).length > 0 || Object.keys(keepKeys).length > 0) next.secrets = JSON.stringify({ users: keepUsers, apiKeys: keepKeys });
  const same = (a: string | undefined, b: string | undefined): boolean => (a ?? '') === (b ?? '');
  const unchanged =
    creds.secretChanges === undefined &&
    same(next.secrets, creds.secrets) &&
    same(next.users, creds.users) &&
    same(next.apiKeys, creds.apiKeys) &&
    same(next.tokenSecret, creds.tokenSecret);
  const out: ResolvedAccounts = { users, apiKeys, warnings };
  if (!unchanged) out.store = next;
  return out;
}

/**
 * The stored secrets with every clear password replaced by its hash (`hashed` maps a clear
 * password to its scrypt hash), or undefined when there was none to replace.
 */
export function withHashes(secretsText: string | undefined, hashed: ReadonlyMap<string, string>): string | undefined {
  const s = parseSecrets(secretsText);
  let changed = false;
  for (const [id, v] of Object.entries(s.users)) {
    if ('p' in v) {
      const h = hashed.get(v.p);
      if (h !== undefined) {
        s.users[id] = { h };
        changed = true;
      }
    }
  }
  return changed ? JSON.stringify(s) : undefined;
}

/** Names and roles of the accounts in the old text credentials (for the dialog: no secret). */
export function legacyAccountNames(creds: AccountCredentials): { users: Array<{ name: string; roles: string[] }>; apiKeys: Array<{ name: string; roles: string[] }> } {
  return {
    users: parseUsers(creds.users).map((u) => ({ name: u.username, roles: u.roles })),
    apiKeys: parseApiKeys(creds.apiKeys).map((k) => ({ name: k.name, roles: k.roles })),
  };
}
