/**
 * Which Store the server tests run on: the embedded store (lib/store/embedded.ts) in a temporary
 * directory when it is built, else the in-memory test store.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Store } from '../../lib/store/store';
import { MemoryStore } from './memory-store';

export interface TestStore {
  store: Store;
  kind: string;
  dispose(): Promise<void>;
}

type EmbeddedCtor = new (opts: { dir: string }) => Store;

function embeddedCtor(): EmbeddedCtor | undefined {
  if (process.env.SETS_TEST_SERVER_STORE === 'memory') return undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('../../lib/store/embedded') as Record<string, unknown>;
    const ctor = mod['EmbeddedStore'];
    return typeof ctor === 'function' ? (ctor as EmbeddedCtor) : undefined;
  } catch {
    return undefined;
  }
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
