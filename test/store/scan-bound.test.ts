/**
 * Issue 11 item 5 (second half): a selective filter the indexes cannot answer directly
 * (match[spec_version], statuses) used to scan every record of a collection in one query. The
 * embedded store now examines at most `maxScanEntries` index entries per query and ends the page
 * there with `more: true` and a cursor at the last examined entry. Checked here with a small bound
 * and matches that are sparse beyond it: reads per query stay bounded (counted, not timed), and
 * paging — through the store and through the TAXII server's `next` tokens — returns every match
 * exactly once, in date_added order.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore } from '../../lib/store/embedded';
import { StoreError } from '../../lib/store/errors';
import type { RecordQuery, StoredRecord } from '../../lib/store/store';
import { newRecord, referenceQuery, sdo } from './conformance';
import { AUTH, COL_MAIN, list, obj, request, startTaxii, type Running } from '../server/helpers';

const CAP = 50;
const N = 600;
/** object numbers stored as spec_version 2.0 / marked verified: sparse, with one dense cluster */
const SPARSE = new Set([3, 170, 171, 172, 173, 174, 175, 176, 390, 599]);

describe('embedded store: bounded scans for selective filters (issue 11)', function () {
  this.timeout(120_000);
  let dir: string;
  let store: EmbeddedStore;
  const all: StoredRecord[] = [];
  const col = 'scan-bound';

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sets-scan-bound-'));
    store = new EmbeddedStore({ dir, maxScanEntries: CAP });
    await store.open();
    const recs = [];
    for (let i = 0; i < N; i++) {
      const o = sdo(i % 2 ? 'malware' : 'indicator', i, '2024-01-01T00:00:00.000Z', SPARSE.has(i) ? { spec_version: '2.0' } : {});
      recs.push(newRecord(col, o, SPARSE.has(i) ? 'finalized' : 'pending'));
      recs.push(newRecord(COL_MAIN, o, SPARSE.has(i) ? 'finalized' : 'pending'));
    }
    for (const out of await store.addMany(recs)) {
      assert.equal(out.outcome, 'added');
      if (out.record.collection === col) all.push(out.record);
    }
  });
  after(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses a bad bound', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new EmbeddedStore({ dir: '/tmp/x', maxScanEntries: bad }), (e: unknown) => e instanceof StoreError && /maxScanEntries/.test(e.message));
    }
  });

  // [what, filter, whether the filter is checked entry by entry (so the bound is hit)]
  const cases: Array<[string, Omit<RecordQuery, 'limit' | 'cursor' | 'collection'>, boolean]> = [
    ['match[spec_version]=2.0', { specVersions: ['2.0'] }, true],
    ['match[spec_version]=2.0 and match[type]=indicator', { specVersions: ['2.0'], types: ['indicator'] }, true],
    ['match[spec_version]=2.0 and match[version]=all', { specVersions: ['2.0'], versions: ['all'] }, true],
    ['statuses=finalized (default candidates)', { statuses: ['finalized'] }, true],
    // answered by the status index directly: no stops needed
    ['statuses=finalized, match[version]=all', { statuses: ['finalized'], versions: ['all'] }, false],
  ];

  for (const [what, filter, scanned] of cases) {
    it(`${what}: every page reads a bounded number of entries, paging returns each match exactly once`, async () => {
      const q = { collection: col, ...filter };
      const expected = referenceQuery(all, q).map((r) => r.id);
      assert.ok(expected.length > 0, 'the filter matches something');
      for (const limit of [1, 3, 100]) {
        const got: StoredRecord[] = [];
        let cursor: string | undefined;
        let pages = 0;
        let emptyPages = 0;
        for (;;) {
          assert.ok(++pages < 1000, 'paging terminates');
          store.resetStats();
          const page = await store.query({ ...q, limit, ...(cursor !== undefined ? { cursor } : {}) });
          // bounded: at most the bound plus one read-ahead batch per index range, never the collection
          const bound = Math.max(CAP, limit + 1);
          assert.ok(store.stats.indexEntriesRead <= 2 * bound + limit + 1, `page ${pages} read ${store.stats.indexEntriesRead} index entries`);
          assert.ok(store.stats.metasRead <= bound + limit + 1, `page ${pages} read ${store.stats.metasRead} metas`);
          assert.ok(page.items.length <= limit);
          got.push(...page.items);
          if (page.items.length === 0) emptyPages++;
          if (!page.more) break;
          assert.ok(page.cursor, 'a page with more=true has a cursor, even when empty');
          cursor = page.cursor;
        }
        assert.deepEqual(got.map((r) => r.id), expected, `limit ${limit}: every match once, in order`);
        for (let i = 1; i < got.length; i++) assert.ok(got[i - 1].dateAdded < got[i].dateAdded);
        if (scanned && limit === 3) assert.ok(emptyPages > 0, 'the sparse matches beyond the bound give empty pages with more');
      }
    });
  }

  it('an unselective query is unaffected, also with a page size above the bound (full pages)', async () => {
    for (const limit of [CAP - 1, CAP, CAP + 1, 100, 250]) {
      const page = await store.query({ collection: col, limit });
      assert.equal(page.items.length, limit);
      assert.equal(page.more, true);
    }
  });

  describe('through the TAXII server (next tokens over empty pages)', () => {
    let run: Running;
    before(async () => {
      run = (await startTaxii(store)).run;
    });
    after(() => run?.close());

    it('GET objects with match[spec_version]=2.0 pages through every sparse match exactly once', async () => {
      const expected = referenceQuery(all, { collection: col, specVersions: ['2.0'] }).map((r) => r.id);
      const got: string[] = [];
      let next: string | undefined;
      let pages = 0;
      let empty = 0;
      for (;;) {
        assert.ok(++pages < 1000, 'paging terminates');
        const qs = `match[spec_version]=2.0&limit=4${next !== undefined ? `&next=${encodeURIComponent(next)}` : ''}`;
        const r = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/?${qs}`, { auth: AUTH.bob });
        assert.equal(r.status, 200, r.text);
        const body = obj(r.json);
        const objs = body['objects'] === undefined ? [] : list(body['objects']);
        if (objs.length === 0) empty++;
        got.push(...objs.map((o) => String(obj(o)['id'])));
        if (body['more'] !== true) break;
        assert.equal(typeof body['next'], 'string', 'more: true comes with next');
        next = String(body['next']);
      }
      assert.deepEqual(got, expected);
      assert.ok(empty > 0, 'some pages were empty with more: true (the bound was hit)');
    });
  });
});
