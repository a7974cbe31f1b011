/**
 * One open store per location per process, shared by reference count.
 *
 * Why: the embedded store is LevelDB, which allows one open handle per directory; in n8n the TAXII
 * server trigger (which keeps its store open while the workflow is active) and the SETS node that
 * settles a record in a later execution run in one process and must use the same handle. A
 * MongoDB store is shared the same way (one connection pool instead of one per execution).
 * The handle is a cache, not state: every record and status lives in the store itself.
 */
import * as path from 'node:path';
import { createStore, type StoreConfig } from './index';
import type { Store } from './store';
import { StoreError } from './errors';

export interface StoreLease {
  readonly store: Store;
  /** Give the store back; the last release closes it. Safe to call twice. */
  release(): Promise<void>;
}

interface Entry {
  store: Store;
  users: number;
  opening: Promise<void>;
  closing?: Promise<void>;
}

const open = new Map<string, Entry>();

/** The identity of a store: its directory, or its MongoDB URI + database + prefix. */
export function storeIdentity(config: StoreConfig): string {
  if (config.kind === 'embedded') return `embedded:${path.resolve(config.dir)}`;
  return `mongodb:${config.uri}#${config.db}#${config.collectionPrefix ?? ''}`;
}

/** Store settings as front ends hold them (lib/ops/server-store StoreSettings), the URI kept apart as a secret. */
export interface StoreSettingsLike {
  kind: 'embedded' | 'mongodb';
  dir?: string;
  db?: string;
  collectionPrefix?: string;
  statusRetentionMs?: number;
}

function toConfig(s: StoreSettingsLike, secrets: { uri?: string }): StoreConfig {
  const extra = s.statusRetentionMs !== undefined ? { statusRetentionMs: s.statusRetentionMs } : {};
  if (s.kind === 'embedded') {
    if (!s.dir) throw new StoreError('ERR_STORE_CONFIG', 'the embedded store needs a directory');
    return { kind: 'embedded', dir: s.dir, ...extra };
  }
  const uri = (secrets.uri ?? '').trim();
  if (!/^mongodb(\+srv)?:\/\/\S+$/.test(uri)) throw new StoreError('ERR_STORE_CONFIG', 'the MongoDB store needs a mongodb:// or mongodb+srv:// URI');
  if (!s.db) throw new StoreError('ERR_STORE_CONFIG', 'the MongoDB store needs a database name');
  return { kind: 'mongodb', uri, db: s.db, ...(s.collectionPrefix ? { collectionPrefix: s.collectionPrefix } : {}), ...extra };
}

/**
 * Open (or join) a store: `acquireStore(config)` with a full StoreConfig, or
 * `acquireStore(settings, { uri })` as front ends hold it. Rejects with the store's open error
 * (the failed entry is dropped, so the next call tries again).
 */
export async function acquireStore(configOrSettings: StoreConfig | StoreSettingsLike, secrets?: { uri?: string }): Promise<StoreLease> {
  const config: StoreConfig = secrets !== undefined ? toConfig(configOrSettings as StoreSettingsLike, secrets) : (configOrSettings as StoreConfig);
  const id = storeIdentity(config);
  let entry = open.get(id);
  if (entry?.closing) {
    // the last user is closing it: wait, then open afresh
    await entry.closing.catch(() => undefined);
    entry = open.get(id);
  }
  if (!entry) {
    const store = createStore(config);
    const created: Entry = { store, users: 0, opening: store.open() };
    entry = created;
    open.set(id, created);
    created.opening.catch(() => {
      if (open.get(id) === created) open.delete(id);
    });
  }
  const mine = entry;
  mine.users += 1;
  try {
    await mine.opening;
  } catch (err) {
    mine.users -= 1;
    throw err;
  }
  let released = false;
  return {
    store: mine.store,
    async release(): Promise<void> {
      if (released) return;
      released = true;
      mine.users -= 1;
      if (mine.users > 0) return;
      mine.closing = mine.store.close().finally(() => {
        if (open.get(id) === mine) open.delete(id);
      });
      await mine.closing;
    },
  };
}

/** How many stores this process holds open (tests: nothing left after close). */
export function openStoreCount(): number {
  return open.size;
}
