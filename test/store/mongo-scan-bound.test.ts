/**
 * The MongoDB store's bounded scans (issue 11 review: the embedded store bounds selective scans
 * with maxScanEntries, MongoStore had no bound). There is no MongoDB server on this machine, so
 * this runs without one:
 * - boundedScan / scanFindOptions / isMaxTimeExpired (lib/store/mongo-design.ts) against a cursor
 *   written here;
 * - MongoStore.query over an in-memory stand-in for the driver's Db (only what query() calls: find
 *   with sort/batchSize/maxTimeMS/projection, findOne on the counters), which checks the query it
 *   is given (no specVersion predicate left to the server, maxTimeMS set, object text not read for
 *   candidates) and pages in (dateAdded, _id) order from the cursor clause. What the stand-in does
 *   not check: MongoDB's own planner and its maxTimeMS enforcement (test/store/mongo.test.ts runs
 *   the conformance suite, paging included, against a real server when SETS_TEST_MONGODB_URI is set).
 */
import { strict as assert } from 'node:assert';
import { MongoStore } from '../../lib/store/mongo';
import { DEFAULT_MAX_SCAN_DOCUMENTS, boundedScan, isMaxTimeExpired, scanFindOptions, type ScanCursor } from '../../lib/store/mongo-design';
import { StoreError } from '../../lib/store/errors';
import type { StoredRecord } from '../../lib/store/store';
import { versionKey } from '../../lib/store/common';

const timeLimitError = (): Error => Object.assign(new Error('operation exceeded time limit'), { code: 50, codeName: 'MaxTimeMSExpired' });

/** A cursor over `docs` in batches; optionally fails with MaxTimeMSExpired once `failAt` were read. */
class ListCursor<D> implements ScanCursor<D> {
  read = 0;
  batch = 100;
  maxTime: number | undefined;
  closed = false;
  constructor(
    readonly docs: D[],
    private readonly failAt?: number,
  ) {}
  sort(): this {
    return this;
  }
  batchSize(n: number): this {
    this.batch = n;
    return this;
  }
  maxTimeMS(ms: number): this {
    this.maxTime = ms;
    return this;
  }
  hasNext(): Promise<boolean> {
    if (this.failAt !== undefined && this.read >= this.failAt) return Promise.reject(timeLimitError());
    return Promise.resolve(this.read < this.docs.length);
  }
  async next(): Promise<D | null> {
    if (!(await this.hasNext())) return null;
    return this.docs[this.read++];
  }
  bufferedCount(): number {
    const end = Math.min(this.docs.length, Math.ceil((this.read + 1) / this.batch) * this.batch);
    return this.read % this.batch === 0 ? 0 : end - this.read;
  }
  toArray(): Promise<D[]> {
    const rest = this.docs.slice(this.read);
    this.read = this.docs.length;
    return Promise.resolve(rest);
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

describe('MongoDB store: bounded scans (no server)', () => {
  describe('boundedScan', () => {
    const nums = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
    const keep = (pred: (n: number) => boolean) => (chunk: number[]) => Promise.resolve(chunk.filter(pred));

    it('stops after maxScan candidates without a full page, at the last one examined, having judged every one before it', async () => {
      const c = new ListCursor(nums(50_000));
      const r = await boundedScan(c, 11, 1000, keep((n) => n % 700 === 0));
      assert.equal(r.examined, 1000);
      assert.equal(c.read, 1000, 'read no more than the bound');
      assert.equal(r.stoppedAt, 999);
      assert.deepEqual(r.docs, [0, 700]);
    });

    it('does not stop on the bound when nothing is left, nor when the page fills first', async () => {
      const all = await boundedScan(new ListCursor(nums(1000)), 11, 1000, keep(() => false));
      assert.equal(all.stoppedAt, undefined);
      assert.equal(all.examined, 1000);
      const full = await boundedScan(new ListCursor(nums(50_000)), 11, 1000, keep(() => true));
      assert.deepEqual(full.docs, nums(11));
      assert.equal(full.stoppedAt, undefined);
    });

    it('paging on from stoppedAt finds every match exactly once, each page within the bound', async () => {
      const docs = nums(20_000);
      const matches = docs.filter((n) => n % 997 === 13);
      const seen: number[] = [];
      let from = 0;
      for (let pages = 0; pages < 100; pages++) {
        const c = new ListCursor(docs.slice(from));
        const r = await boundedScan(c, 6, 1500, keep((n) => n % 997 === 13));
        assert.ok(c.read <= 1500, `page ${pages} read ${c.read}`);
        const page = r.docs.slice(0, 5);
        seen.push(...page);
        const last = r.docs.length > 5 ? page[page.length - 1] : r.stoppedAt ?? page[page.length - 1];
        if (r.docs.length <= 5 && r.stoppedAt === undefined) break;
        from = (last ?? from) + 1;
      }
      assert.deepEqual(seen, matches);
    });

    it("the server's time limit after some candidates ends the page there; before any, the error stands", async () => {
      const r = await boundedScan(new ListCursor(nums(50_000), 300), 11, 10_000, keep((n) => n === 5));
      assert.deepEqual(r.docs, [5]);
      assert.equal(r.stoppedAt, 299);
      await assert.rejects(boundedScan(new ListCursor(nums(50_000), 0), 11, 10_000, keep(() => true)), /time limit/);
      await assert.rejects(
        boundedScan(new ListCursor(nums(10)), 11, 10_000, () => Promise.reject(new Error('versions unreadable'))),
        /versions unreadable/,
        'other errors are not swallowed',
      );
    });

    it('scanFindOptions and isMaxTimeExpired', () => {
      assert.deepEqual(scanFindOptions(11, 10_000, 5000), { sort: { dateAdded: 1, _id: 1 }, batchSize: 100, maxTimeMS: 5000 });
      assert.deepEqual(scanFindOptions(5001, 10_000, 0), { sort: { dateAdded: 1, _id: 1 }, batchSize: 1000 }, 'no maxTimeMS when 0');
      assert.equal(scanFindOptions(11, 40, 1).batchSize, 40, 'a batch never exceeds the bound');
      assert.ok(isMaxTimeExpired(timeLimitError()));
      assert.ok(isMaxTimeExpired({ codeName: 'MaxTimeMSExpired' }));
      assert.ok(!isMaxTimeExpired(new Error('x')));
      assert.ok(!isMaxTimeExpired(null));
    });
  });

  describe('MongoStore.query over a stand-in Db', () => {
    const COL = 'c0ffee00-0000-4000-8000-000000000001';
    interface Doc {
      _id: string;
      collection: string;
      id: string;
      type: string;
      version: string;
      vk: string;
      specVersion: string;
      dateAdded: string;
      mediaType: string;
      json: string;
      hash: string;
      key: string;
      status: string;
      statusAt: string;
      last: boolean;
      first: boolean;
      inD: boolean;
      flagRev: number;
    }
    const N = 25_000;
    const STIX21 = new Set([3, 12_345, 24_999]);
    const docs: Doc[] = Array.from({ length: N }, (_, i) => {
      const id = `indicator--00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      const dateAdded = new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString().replace('Z', '000Z');
      const vk = versionKey('2024-01-01T00:00:00.000Z') ?? '';
      return {
        _id: `${COL}\u0000${id}\u0000${vk}`,
        collection: COL,
        id,
        type: 'indicator',
        version: '2024-01-01T00:00:00.000Z',
        vk,
        specVersion: STIX21.has(i) ? '2.1' : '2.0',
        dateAdded,
        mediaType: 'application/stix+json;version=2.1',
        json: JSON.stringify({ type: 'indicator', id }),
        hash: 'h',
        key: 'k',
        status: 'finalized',
        statusAt: dateAdded,
        last: true,
        first: true,
        inD: true,
        flagRev: 1,
      };
    });

    interface Seen {
      filter: Record<string, unknown>;
      projection?: Record<string, unknown>;
      cursor: ListCursor<Doc>;
    }

    /** The stand-in: objects.find answers the three shapes query() sends; every scan is recorded. */
    function standIn(failAt?: number): { db: unknown; scans: Seen[] } {
      const scans: Seen[] = [];
      const objects = {
        find(filter: Record<string, unknown>, options?: { projection?: Record<string, unknown> }): ListCursor<Doc> {
          const byId = filter['_id'] as { $in?: string[] } | undefined;
          if (byId?.$in) return new ListCursor(docs.filter((d) => byId.$in?.includes(d._id)));
          const ids = filter['id'] as { $in?: string[] } | undefined;
          if (ids?.$in) {
            const want = new Set(ids.$in);
            return new ListCursor(docs.filter((d) => want.has(d.id)).map(({ json: _json, ...rest }) => rest as Doc));
          }
          // a scan: position from the cursor clause, candidates without their text when asked
          let list = docs;
          for (const part of (filter['$and'] as Array<Record<string, unknown>>) ?? []) {
            const or = part['$or'] as Array<Record<string, { $gt?: string } | string>> | undefined;
            if (!or) continue;
            const after = (or[1]['_id'] as { $gt: string }).$gt;
            list = docs.filter((d) => d._id > after);
          }
          const out = options?.projection?.['json'] === 0 ? list.map(({ json: _json, ...rest }) => rest as Doc) : list;
          const cursor = new ListCursor(out, failAt);
          const seen: Seen = { filter, cursor };
          if (options?.projection) seen.projection = options.projection;
          scans.push(seen);
          return cursor;
        },
      };
      const none = { findOne: () => Promise.resolve(null), find: () => new ListCursor([]) };
      return { db: { collection: (name: string) => (name === 'objects' ? objects : none) }, scans };
    }

    function storeOver(db: unknown, opts: { maxScanDocuments?: number; queryMaxTimeMS?: number } = {}): MongoStore {
      const store = new MongoStore({ uri: 'mongodb://127.0.0.1:1', db: 'unused', ...opts });
      // the driver's Db, replaced by the stand-in (what open() would set)
      Reflect.set(store, 'database', db);
      return store;
    }

    it('match[spec_version]: pages end after maxScanDocuments candidates with more and a cursor; paging finds each match once', async () => {
      const { db, scans } = standIn();
      const store = storeOver(db);
      const found: StoredRecord[] = [];
      const pages: Array<{ items: number; more: boolean }> = [];
      let cursor: string | undefined;
      for (let i = 0; i < 10; i++) {
        const page = await store.query({ collection: COL, specVersions: ['2.1'], limit: 10, ...(cursor ? { cursor } : {}) });
        pages.push({ items: page.items.length, more: page.more });
        found.push(...page.items);
        if (!page.more) break;
        assert.ok(page.cursor, 'a page that stopped early has a cursor');
        cursor = page.cursor;
      }
      assert.deepEqual(
        found.map((r) => r.id),
        [...STIX21].map((i) => docs[i].id),
      );
      assert.deepEqual(pages, [
        { items: 1, more: true },
        { items: 1, more: true },
        { items: 1, more: false },
      ]);
      assert.equal(found[0].object.id, docs[3].id, 'items carry the object (read whole for the page)');
      for (const s of scans) {
        assert.ok(s.cursor.read <= DEFAULT_MAX_SCAN_DOCUMENTS, `a scan read ${s.cursor.read} candidates`);
        assert.equal(s.cursor.maxTime, 10_000, 'maxTimeMS set on the scan');
        assert.deepEqual(s.projection, { json: 0 }, 'candidates are read without the object text');
        assert.ok(!JSON.stringify(s.filter).includes('specVersion'), 'spec_version judged by the store, not left to an unindexed server filter');
        assert.ok(s.cursor.closed, 'the cursor is closed');
      }
    });

    it('maxScanDocuments and queryMaxTimeMS are options; 0 = no time limit', async () => {
      const { db, scans } = standIn();
      const store = storeOver(db, { maxScanDocuments: 2000, queryMaxTimeMS: 0 });
      const page = await store.query({ collection: COL, specVersions: ['2.1'], limit: 10 });
      assert.deepEqual(
        page.items.map((r) => r.id),
        [docs[3].id],
      );
      assert.equal(page.more, true);
      assert.equal(scans[0].cursor.read, 2000);
      assert.equal(scans[0].cursor.maxTime, undefined);
      // a limit above the bound: the page can still fill
      const big = await storeOver(standIn().db, { maxScanDocuments: 5 }).query({ collection: COL, versions: ['all'], limit: 20 });
      assert.equal(big.items.length, 20);
    });

    it("the server's time limit ends the page at the last candidate read; before any, the query fails with a StoreError", async () => {
      const cut = standIn(700);
      const page = await storeOver(cut.db).query({ collection: COL, specVersions: ['2.1'], limit: 10 });
      assert.deepEqual(
        page.items.map((r) => r.id),
        [docs[3].id],
      );
      assert.equal(page.more, true);
      const after = standIn();
      const next = await storeOver(after.db, { maxScanDocuments: 20_000 }).query({ collection: COL, specVersions: ['2.1'], limit: 10, cursor: page.cursor });
      assert.equal(after.scans[0].cursor.docs[0]._id, docs[700]._id, 'the next page goes on after the 700th candidate');
      assert.equal(next.items[0]?.id, docs[12_345].id);
      await assert.rejects(storeOver(standIn(0).db).query({ collection: COL, specVersions: ['2.1'], limit: 10 }), (err: unknown) => err instanceof StoreError && /time limit/.test(err.message));
    });

    it('bad options: ERR_STORE_CONFIG naming the option', () => {
      for (const [o, re] of [
        [{ maxScanDocuments: 0 }, /maxScanDocuments must be a positive integer, got 0/],
        [{ maxScanDocuments: 1.5 }, /maxScanDocuments must be a positive integer/],
        [{ queryMaxTimeMS: -1 }, /queryMaxTimeMS must be an integer >= 0/],
      ] as const) {
        assert.throws(
          () => new MongoStore({ uri: 'mongodb://127.0.0.1:1', db: 'x', ...o }),
          (err: unknown) => err instanceof StoreError && err.code === 'ERR_STORE_CONFIG' && re.test(err.message),
        );
      }
    });
  });
});
