/**
 * MongoStore against a real MongoDB server: the shared conformance suite plus a two-instance check.
 * Runs only when SETS_TEST_MONGODB_URI (or SETS_TEST_MONGO_URL) is set (no MongoDB server can be installed on the build
 * machine: none is packaged in Debian and the binary downloads are blocked). Each test uses its own
 * database (sets_test_<pid>_<n>), dropped afterwards.
 */
import { strict as assert } from 'node:assert';
import { MongoClient } from 'mongodb';
import { MongoStore, redactUri, type MongoStoreOptions } from '../../lib/store/mongo';
import { collect, newRecord, sdo, storeConformance, type StoreHandle } from './conformance';

const uri = process.env.SETS_TEST_MONGODB_URI || process.env.SETS_TEST_MONGO_URL;

if (!uri) {
  console.log('test/store/mongo.test: MongoStore tests NOT run: neither SETS_TEST_MONGODB_URI nor SETS_TEST_MONGO_URL is set (no MongoDB server on this machine); set it to a mongodb:// URI to run them');
} else {
  const mongoUri: string = uri;
  let n = 0;

  const dropDb = async (name: string): Promise<void> => {
    const c = new MongoClient(mongoUri, { serverSelectionTimeoutMS: 10_000 });
    try {
      await c.connect();
      await c.db(name).dropDatabase();
    } finally {
      await c.close();
    }
  };

  const mongoHandle = async (opts: Omit<MongoStoreOptions, 'uri' | 'db'> = {}): Promise<StoreHandle & { db: string; store: MongoStore }> => {
    const db = `sets_test_${process.pid}_${++n}`;
    const handle = {
      db,
      store: new MongoStore({ uri: mongoUri, db, ...opts }),
      async reopen(o: Omit<MongoStoreOptions, 'uri' | 'db'> = {}): Promise<MongoStore> {
        await handle.store.close();
        handle.store = new MongoStore({ uri: mongoUri, db, ...o });
        await handle.store.open();
        return handle.store;
      },
      async destroy(): Promise<void> {
        await handle.store.close();
        await dropDb(db);
      },
    };
    await handle.store.open();
    return handle;
  };

  storeConformance({ name: `mongodb (${redactUri(mongoUri)})`, create: (opts) => mongoHandle(opts) });

  describe('MongoStore (MongoDB specifics)', function () {
    this.timeout(60_000);

    it('two store instances on one database (two TAXII servers) share clock, records and flags', async function () {
      const a = await mongoHandle();
      const b = new MongoStore({ uri: mongoUri, db: a.db });
      await b.open();
      try {
        const C = 'col';
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (i % 2 ? a.store : b).add(newRecord(C, sdo('indicator', i % 10, `2021-01-${String(1 + Math.floor(i / 10)).padStart(2, '0')}T00:00:00.000Z`))),
          ),
        );
        assert.equal(new Set(results.map((r) => r.record.dateAdded)).size, 40);
        assert.equal(results.filter((r) => r.outcome === 'added').length, 40);
        const fromA = await collect(a.store, { collection: C }, 3);
        const fromB = await collect(b, { collection: C }, 3);
        assert.deepEqual(fromA, fromB);
        assert.equal(fromA.length, 10, 'one latest version per object');
        assert.ok(fromA.every((r) => r.version === '2021-01-04T00:00:00.000Z'));
      } finally {
        await b.close();
        await a.destroy();
      }
    });
  });
}
