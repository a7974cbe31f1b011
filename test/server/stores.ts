/**
 * Which Store the server tests run on: the embedded store (lib/store/embedded.ts) in a temporary
 * directory, or the in-memory test store when SETS_TEST_SERVER_STORE=memory.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Store } from '../../lib/store/store';
import { EmbeddedStore } from '../../lib/store/embedded';
import { MemoryStore } from './memory-store';

export interface TestStore {
  store: Store;
  kind: string;
  dispose(): Promise<void>;
}

type EmbeddedCtor = new (opts: { dir: string }) => Store;

/**
 * The embedded store, unless SETS_TEST_SERVER_STORE=memory asks for the in-memory one. Imported
 * directly: a store that fails to load must fail the suite, not switch it silently to another store.
 */
function embeddedCtor(): EmbeddedCtor | undefined {
  return process.env.SETS_TEST_SERVER_STORE === 'memory' ? undefined : EmbeddedStore;
}

export async function makeStore(): Promise<TestStore> {
  const Ctor = embeddedCtor();
  if (Ctor) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-server-test-'));
    const store = new Ctor({ dir });
    await store.open();
    return {
      store,
      kind: 'embedded',
      dispose: async () => {
        await store.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const store = new MemoryStore();
  await store.open();
  return { store, kind: 'memory', dispose: () => store.close() };
}
