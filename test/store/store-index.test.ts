/**
 * createStore/openStore and the MongoDB store's failure path (a real connection attempt to a
 * loopback port where nothing listens: no MongoDB server is needed for this).
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore, MongoStore, StoreError, createStore, openStore, type StoreConfig } from '../../lib/store';
import { newRecord, sdo } from './conformance';

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof StoreError, `expected a StoreError, got ${String(e)}`);
  assert.equal(e.code, code);
  return true;
};

/** A loopback port that refuses connections (bound then released). */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

describe('createStore / openStore', function () {
  it('builds an embedded store from config and opens it', async function () {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sets-store-'));
    try {
      const s = createStore({ kind: 'embedded', dir: path.join(dir, 'sets-store', 'main') });
      assert.ok(s instanceof EmbeddedStore);
      const o = await openStore({ kind: 'embedded', dir: path.join(dir, 'sets-store', 'other') });
      assert.equal((await o.add(newRecord('c', sdo('indicator', 1, '2021-01-01T00:00:00.000Z')))).outcome, 'added');
      await o.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('builds a MongoDB store without connecting; rejects bad configs with ERR_STORE_CONFIG', function () {
    assert.ok(createStore({ kind: 'mongodb', uri: 'mongodb://127.0.0.1:27017', db: 'sets' }) instanceof MongoStore);
    assert.throws(() => createStore({ kind: 'mongodb', uri: 'http://x', db: 'sets' }), isCode('ERR_STORE_CONFIG'));
    assert.throws(() => createStore({ kind: 'mongodb', uri: 'mongodb://x', db: '' }), isCode('ERR_STORE_CONFIG'));
    assert.throws(() => createStore({ kind: 'sqlite' } as unknown as StoreConfig), isCode('ERR_STORE_CONFIG'));
  });

  it('MongoDB unreachable: open() fails within the server selection timeout with ERR_STORE_CONNECT, password redacted', async function () {
    const port = await closedPort();
    const s = new MongoStore({ uri: `mongodb://sets:s3cret@127.0.0.1:${port}/?directConnection=true`, db: 'sets', serverSelectionTimeoutMS: 500, connectTimeoutMS: 500 });
    await assert.rejects(s.open(), (e: unknown) => {
      isCode('ERR_STORE_CONNECT')(e);
      const msg = (e as Error).message;
      assert.match(msg, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.ok(!msg.includes('s3cret'), 'no password in the message');
      return true;
    });
    await assert.rejects(s.query({ collection: 'c', limit: 1 }), isCode('ERR_STORE_NOT_OPEN'));
    await s.close();
  });
});
