/**
 * Store factory: the embedded LevelDB store (default) or MongoDB, chosen by configuration, so a
 * deployment swaps one for the other without code changes (DESIGN.md §3 Embedded defaults).
 *
 *   createStore({ kind: 'embedded', dir: path.join(RED.settings.userDir, 'sets-store', name) })
 *   createStore({ kind: 'mongodb', uri: 'mongodb://host:27017', db: 'sets' })
 *   createStore({ kind: 'postgres', uri: 'postgres://sets:pw@host:5432/sets', schema: 'public' })
 *
 * createStore() only constructs (no I/O); call open() before use, close() when done. openStore()
 * does both construction and open().
 */
import { EmbeddedStore, type EmbeddedStoreOptions } from './embedded';
import { MongoStore, type MongoStoreOptions } from './mongo';
import { PostgresStore, type PostgresStoreOptions } from './postgres';
import { StoreError } from './errors';
import type { Store } from './store';

export type StoreConfig = ({ kind: 'embedded' } & EmbeddedStoreOptions) | ({ kind: 'mongodb' } & MongoStoreOptions);
/** The PostgreSQL store (lib/store/postgres.ts). */
export type PostgresStoreConfig = { kind: 'postgres' } & PostgresStoreOptions;
/**
 * Every store kind createStore() builds. (StoreConfig is kept to the kinds lib/store/shared.ts
 * and the front ends already handle; the round that wires PostgreSQL into them folds this in.)
 */
export type AnyStoreConfig = StoreConfig | PostgresStoreConfig;

export function createStore(config: AnyStoreConfig): Store {
  if (!config || typeof config !== 'object') throw new StoreError('ERR_STORE_CONFIG', 'createStore: config must be an object');
  switch (config.kind) {
    case 'embedded': {
      const { kind: _kind, ...opts } = config;
      return new EmbeddedStore(opts);
    }
    case 'mongodb': {
      const { kind: _kind, ...opts } = config;
      return new MongoStore(opts);
    }
    case 'postgres': {
      const { kind: _kind, ...opts } = config;
      return new PostgresStore(opts);
    }
    default:
      throw new StoreError('ERR_STORE_CONFIG', `createStore: unknown store kind ${JSON.stringify((config as { kind?: unknown }).kind)} (embedded, mongodb or postgres)`);
  }
}

/** createStore() + open(). */
export async function openStore(config: AnyStoreConfig): Promise<Store> {
  const store = createStore(config);
  await store.open();
  return store;
}

export { EmbeddedStore, MongoStore, PostgresStore, StoreError };
export type { EmbeddedStoreOptions, MongoStoreOptions, PostgresStoreOptions };
export type { StoreErrorCode } from './errors';
export type * from './store';
