/**
 * A record store (lib/store) as a stateful connection, for a front end that shares one store among
 * several users and draws its state: the store is opened at once, its state is reported
 * (`connecting` -> `connected`, or `error` with the reason: a locked directory, an unreachable
 * MongoDB or PostgreSQL server), and a failed open is retried every `retryMs` until it works or the store is closed.
 *
 * The embedded store's default directory under a Node-RED user dir is `<userDir>/sets-store/<node id>`
 * (`defaultStoreDir`; `resolveStoreDir` moves a directory of an older version, named after the
 * node's display name, into place).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createStore, type AnyStoreConfig, type StoreConfig } from '../store/index';
import { DEFAULT_PG_POOL_SIZE, DEFAULT_PG_STATEMENT_TIMEOUT_MS, redactPgUrl } from '../store/postgres';
import type { Store } from '../store/store';
import { OpsError, messageOf } from './errors';
import { ConfigError, int, oneOf, optStr } from './settings';

export type StoreState = 'connecting' | 'connected' | 'disconnected' | 'error' | 'closed';

export interface StoreSettings {
  kind: 'embedded' | 'mongodb';
  /** embedded: directory of the database */
  dir?: string;
  /** mongodb: database name */
  db?: string;
  /** mongodb: prefix of the collection names */
  collectionPrefix?: string;
  /** how long TAXII status resources are kept (default 24 h) */
  statusRetentionMs?: number;
}

export interface StoreSecrets {
  /** mongodb:// or mongodb+srv:// URI, or postgres:// / postgresql:// URL (may carry a password) */
  uri?: string;
}

/** Settings of the PostgreSQL store (lib/store/postgres.ts); its URL is a secret (StoreSecrets.uri). */
export interface PostgresStoreSettings {
  kind: 'postgres';
  /** schema of the tables (default public) */
  schema?: string;
  /** prefix of the table names (default sets_) */
  tablePrefix?: string;
  /** most connections per instance (default 10) */
  poolSize?: number;
  /** server-side limit of every statement, ms (default 10,000) */
  statementTimeoutMs?: number;
  /** how long TAXII status resources are kept (default 24 h) */
  statusRetentionMs?: number;
}

/**
 * Settings of every store kind. (StoreSettings is kept to the kinds the front ends and
 * lib/store/shared.ts already handle; the round that wires PostgreSQL into them folds this in.)
 */
export type AnyStoreSettings = StoreSettings | PostgresStoreSettings;

/** `<userDir>/sets-store/<key>`, the key (the config node's id) made safe as one directory name. */
export function defaultStoreDir(userDir: string, key: string): string {
  const safe = key.trim().replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_') || 'default';
  return path.join(userDir, 'sets-store', safe);
}

/** What resolveStoreDir did, for the log. */
export interface StoreDirResolution {
  dir: string;
  /** `moved`: the old name-based directory was renamed to the id-based one; `kept`: it could not be moved and is used where it is */
  migration?: { action: 'moved' | 'kept'; from: string; reason?: string };
}

/**
 * The embedded store's directory for a config node: `<userDir>/sets-store/<id>`, so renaming the
 * node never opens a new, empty store. Migration from versions that named the directory after the
 * node's display name: when the id-based directory does not exist and `<userDir>/sets-store/<name>`
 * does, that directory is renamed to the id-based one (same file system: atomic); if the rename
 * fails, the old directory is used where it is. Synchronous (runs once when the node starts).
 */
export function resolveStoreDir(userDir: string, id: string, name?: string): StoreDirResolution {
  const dir = defaultStoreDir(userDir, id);
  const label = (name ?? '').trim();
  if (label === '' || fs.existsSync(dir)) return { dir };
  const old = defaultStoreDir(userDir, label);
  if (old === dir || !fs.existsSync(old)) return { dir };
  try {
    fs.renameSync(old, dir);
    return { dir, migration: { action: 'moved', from: old } };
  } catch (err) {
    return { dir: old, migration: { action: 'kept', from: old, reason: messageOf(err) } };
  }
}

/**
 * Store settings from raw form values: kind (embedded | mongodb), dir (embedded; default
 * `opts.defaultDir`), db and collectionPrefix (mongodb), retentionHours (status resources, default 24).
 * Throws ConfigError naming the setting. (The MongoDB URI is a secret: storeConfig checks it.)
 */
export function parseStoreSettings(raw: Record<string, unknown>, opts: { defaultDir?: string } = {}): StoreSettings {
  const kind = oneOf(raw['kind'], 'store kind', ['embedded', 'mongodb'] as const, 'embedded');
  const hours = int(raw['retentionHours'], 'status retention (hours)', 24, 1, 24 * 365);
  const s: StoreSettings = { kind, statusRetentionMs: hours * 3_600_000 };
  if (kind === 'embedded') {
    const dir = optStr(raw['dir']) ?? opts.defaultDir;
    if (!dir) throw new ConfigError('the embedded store needs a directory');
    s.dir = path.resolve(dir);
  } else {
    const db = optStr(raw['db']);
    if (!db) throw new ConfigError('the MongoDB store needs a database name');
    s.db = db;
    const prefix = optStr(raw['collectionPrefix']);
    if (prefix) s.collectionPrefix = prefix;
  }
  return s;
}

const PG_IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Settings of any store kind from raw form values: as parseStoreSettings, plus kind `postgres` with
 * schema (default public), tablePrefix (default sets_), poolSize (1-1000, default 10),
 * statementTimeoutMs (100-3,600,000, default 10,000) and retentionHours. The URL is a secret
 * (anyStoreConfig checks it). Throws ConfigError naming the setting.
 */
export function parseAnyStoreSettings(raw: Record<string, unknown>, opts: { defaultDir?: string } = {}): AnyStoreSettings {
  const kind = oneOf(raw['kind'], 'store kind', ['embedded', 'mongodb', 'postgres'] as const, 'embedded');
  if (kind !== 'postgres') return parseStoreSettings(raw, opts);
  const hours = int(raw['retentionHours'], 'status retention (hours)', 24, 1, 24 * 365);
  const s: PostgresStoreSettings = {
    kind,
    statusRetentionMs: hours * 3_600_000,
    poolSize: int(raw['poolSize'], 'pool size', DEFAULT_PG_POOL_SIZE, 1, 1000),
    statementTimeoutMs: int(raw['statementTimeoutMs'], 'statement timeout (ms)', DEFAULT_PG_STATEMENT_TIMEOUT_MS, 100, 3_600_000),
  };
  const schema = optStr(raw['schema']);
  if (schema !== undefined) {
    if (!PG_IDENT.test(schema) || schema.length > 63) throw new ConfigError(`schema "${schema}" must be 1-63 letters, digits or _ (not starting with a digit)`);
    s.schema = schema;
  }
  const prefix = raw['tablePrefix'];
  if (prefix !== undefined && prefix !== null) {
    const p = typeof prefix === 'string' ? prefix.trim() : String(prefix);
    if (p !== '' && (!PG_IDENT.test(p) || p.length > 40)) throw new ConfigError(`table prefix "${p}" must be empty or up to 40 letters, digits or _ (not starting with a digit)`);
    s.tablePrefix = p;
  }
  return s;
}

/** Store configuration of any kind from settings + secrets; throws OpsError BAD_CONFIG for what cannot work. */
export function anyStoreConfig(s: AnyStoreSettings, secrets: StoreSecrets): AnyStoreConfig {
  if (s.kind !== 'postgres') return storeConfig(s, secrets);
  const uri = (secrets.uri ?? '').trim();
  if (!/^postgres(ql)?:\/\/\S+$/.test(uri)) throw new OpsError('BAD_CONFIG', 'the PostgreSQL store needs a postgres:// or postgresql:// URL');
  return {
    kind: 'postgres',
    uri,
    ...(s.schema !== undefined ? { schema: s.schema } : {}),
    ...(s.tablePrefix !== undefined ? { tablePrefix: s.tablePrefix } : {}),
    ...(s.poolSize !== undefined ? { poolSize: s.poolSize } : {}),
    ...(s.statementTimeoutMs !== undefined ? { statementTimeoutMs: s.statementTimeoutMs } : {}),
    ...(s.statusRetentionMs !== undefined ? { statusRetentionMs: s.statusRetentionMs } : {}),
  };
}

/** Store configuration from settings + secrets; throws OpsError BAD_CONFIG for what cannot work. */
export function storeConfig(s: StoreSettings, secrets: StoreSecrets): StoreConfig {
  const extra = s.statusRetentionMs !== undefined ? { statusRetentionMs: s.statusRetentionMs } : {};
  if (s.kind === 'embedded') {
    if (!s.dir) throw new OpsError('BAD_CONFIG', 'the embedded store needs a directory');
    return { kind: 'embedded', dir: s.dir, ...extra };
  }
  if (s.kind === 'mongodb') {
    const uri = (secrets.uri ?? '').trim();
    if (!/^mongodb(\+srv)?:\/\/\S+$/.test(uri)) throw new OpsError('BAD_CONFIG', 'the MongoDB store needs a mongodb:// or mongodb+srv:// URI');
    if (!s.db) throw new OpsError('BAD_CONFIG', 'the MongoDB store needs a database name');
    return { kind: 'mongodb', uri, db: s.db, ...(s.collectionPrefix ? { collectionPrefix: s.collectionPrefix } : {}), ...extra };
  }
  throw new OpsError('BAD_CONFIG', `unknown store kind ${JSON.stringify((s as { kind?: unknown }).kind)} (embedded or mongodb)`);
}

/**
 * A connection string (MongoDB or PostgreSQL) without its password — the user-info password and a
 * `password=` parameter — for messages (one rule for the stores and their nodes).
 */
export function redactUri(uri: string): string {
  return redactPgUrl(uri);
}

export class StoreConnection {
  readonly store: Store;
  private _state: StoreState = 'connecting';
  private detail: string | undefined;
  private readonly listeners = new Set<(state: StoreState, detail?: string) => void>();
  private retryTimer: NodeJS.Timeout | undefined;
  private opening: Promise<void> | undefined;
  private closed = false;

  /**
   * @param store a store not yet opened (createStore)
   * @param opts.retryMs wait between attempts after a failed open (default 10 s; 0 = no retry)
   * @param opts.describe how to name the store in messages (no secrets)
   */
  constructor(
    store: Store,
    private readonly opts: { retryMs?: number; describe?: string } = {},
  ) {
    this.store = store;
    this.attempt();
  }

  static fromSettings(s: AnyStoreSettings, secrets: StoreSecrets, opts: { retryMs?: number } = {}): StoreConnection {
    const describe =
      s.kind === 'embedded'
        ? `embedded store ${s.dir ?? ''}`
        : s.kind === 'postgres'
          ? `PostgreSQL ${redactUri(secrets.uri ?? '')} tables ${s.schema ?? 'public'}.${s.tablePrefix ?? 'sets_'}*`
          : `MongoDB ${redactUri(secrets.uri ?? '')} db ${s.db ?? ''}`;
    return new StoreConnection(createStore(anyStoreConfig(s, secrets)), { ...opts, describe });
  }

  get state(): StoreState {
    return this._state;
  }

  /** The reason of the last failure, if the state is `error`. */
  get error(): string | undefined {
    return this._state === 'error' ? this.detail : undefined;
  }

  onState(listener: (state: StoreState, detail?: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once the store is open; rejects with the open error (a retry may still follow). */
  async ready(): Promise<Store> {
    if (this.closed) throw new OpsError('BAD_CONFIG', `${this.opts.describe ?? 'store'} is closed`);
    if (this._state === 'connected') return this.store;
    if (!this.opening) this.attempt();
    await this.opening;
    return this.store;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.opening?.catch(() => undefined);
    try {
      await this.store.close();
    } finally {
      this.set('closed');
      this.listeners.clear();
    }
  }

  private attempt(): void {
    if (this.closed || this.opening) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.set('connecting');
    const p = this.store.open().then(
      () => {
        this.opening = undefined;
        if (!this.closed) this.set('connected');
      },
      (err: unknown) => {
        this.opening = undefined;
        if (this.closed) return;
        this.set('error', messageOf(err));
        const retry = this.opts.retryMs ?? 10_000;
        if (retry > 0) {
          this.retryTimer = setTimeout(() => this.attempt(), retry);
          this.retryTimer.unref();
        }
        throw err;
      },
    );
    this.opening = p;
    p.catch(() => undefined);
  }

  private set(state: StoreState, detail?: string): void {
    this._state = state;
    this.detail = detail;
    for (const l of [...this.listeners]) {
      try {
        l(state, detail);
      } catch {
        // a listener's failure is its own business
      }
    }
  }
}
