/**
 * Our TAXII client (lib/taxii/client.ts) against the quirks of TAXII servers in the field, played
 * by the independent test server (test/support/taxii-test-server.ts) with its faults switched on:
 * versions newest-first, no X-TAXII-Date-Added-* headers, `more: true` without `next`, expiring
 * `next` tokens, and records sharing one date_added (servers with ms/s precision or one timestamp
 * per batch). For each: every record delivered exactly once, in a bounded number of requests.
 */
import { strict as assert } from 'node:assert';
import { TaxiiClient, type ManifestRecord, type TaxiiObject } from '../../lib/taxii/client';
import { TaxiiError } from '../../lib/taxii/errors';
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type StoredVersion, type TestTaxiiServer } from '../support/taxii-test-server';

const RW = DEFAULT_COLLECTIONS[0].id;

function uuid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function indicator(n: number, modified = '2021-01-01T00:00:00.000Z'): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${uuid(n)}`,
    created: '2021-01-01T00:00:00.000Z',
    modified,
    name: `indicator ${n}`,
    pattern: `[ipv4-addr:value = '10.1.${Math.floor(n / 256) % 256}.${n % 256}']`,
    pattern_type: 'stix',
    valid_from: '2021-01-01T00:00:00Z',
  };
}

/** The TAXII timestamp 1 µs before a test-server date_added (`...ss.ssssssZ`). */
function microBefore(ts: string): string {
  const us = BigInt(Date.parse(ts.slice(0, 19) + 'Z')) * 1000n + BigInt(ts.slice(20, 26)) - 1n;
  return new Date(Number(us / 1000n)).toISOString().slice(0, 19) + '.' + String(us % 1000000n).padStart(6, '0') + 'Z';
}

async function collectUntilError<T>(it: AsyncIterable<T>): Promise<{ items: T[]; error: unknown }> {
  const items: T[] = [];
  try {
    for await (const x of it) items.push(x);
  } catch (error) {
    return { items, error };
  }
  return { items, error: undefined };
}

/** Collect all; `onItem` may switch faults between pages (the iterator fetches lazily). */
async function collect<T>(it: AsyncIterable<T>, onItem?: (n: number) => void): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) {
    out.push(x);
    onItem?.(out.length);
  }
  return out;
}

const ids = (objs: TaxiiObject[]): string[] => objs.map((o) => o.id);

describe('TaxiiClient against quirky TAXII servers', function () {
  this.timeout(20_000);
  let srv: TestTaxiiServer;
  let client: TaxiiClient;

  beforeEach(async () => {
    srv = await startTestTaxiiServer();
    client = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, timeoutMs: 5_000 });
  });
  afterEach(async () => {
    client.close();
    await srv.stop();
  });

  const objectQueries = (): URLSearchParams[] => srv.requestsTo('/objects/').map((r) => new URLSearchParams(r.rawQuery));

  /** Give records k..k+n-1 (in date_added order) the date_added of record k. */
  function tie(stored: StoredVersion[], k: number, n: number): string {
    const d = stored[k].dateAdded;
    for (let i = k; i < k + n; i++) stored[i].dateAdded = d;
    return d;
  }

  describe('versions newest-first', () => {
    const id = `indicator--${uuid(1)}`;
    const mods = Array.from({ length: 7 }, (_, i) => `2021-0${i + 1}-01T00:00:00.000Z`);

    it('with next tokens: every version once', async () => {
      srv.seed(RW, mods.map((m) => indicator(1, m)));
      srv.setFault({ versionsNewestFirst: true });
      const got = [];
      for await (const v of client.iterVersions(RW, id, { limit: 3 })) got.push(v);
      assert.equal(got.length, 7);
      assert.deepEqual([...got].sort(), mods);
      const firstPage = (await client.getVersions(RW, id, { limit: 3 })).versions;
      assert.deepEqual(firstPage, [mods[2], mods[1], mods[0]], 'the server really answers newest-first');
    });

    it('without next (added_after from the later of the two date headers): every version once', async () => {
      srv.seed(RW, mods.map((m) => indicator(1, m)));
      srv.setFault({ versionsNewestFirst: true, moreWithoutNext: true });
      const got = [];
      for await (const v of client.iterVersions(RW, id, { limit: 3 })) got.push(v);
      assert.equal(got.length, 7);
      assert.deepEqual([...got].sort(), mods);
    });
  });

  describe('no X-TAXII-Date-Added-* headers', () => {
    it('pages with next tokens alone: objects and manifest complete, nothing twice', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      srv.setFault({ noDateHeaders: true });
      assert.deepEqual(ids(await collect(client.iterObjects(RW, { limit: 10 }))), stored.map((s) => s.id));
      const man: ManifestRecord[] = await collect(client.iterManifest(RW, { limit: 10 }));
      assert.deepEqual(man.map((m) => m.id), stored.map((s) => s.id));
      assert.equal(srv.requestsTo('/objects/').filter((r) => r.rawQuery.includes('next=')).length, 2);
    });
  });

  describe('more: true without next', () => {
    it('continues with added_after 1 µs before X-TAXII-Date-Added-Last: every object once, in order', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      srv.setFault({ moreWithoutNext: true });
      assert.deepEqual(ids(await collect(client.iterObjects(RW, { limit: 10 }))), stored.map((s) => s.id));
      const qs = objectQueries();
      assert.deepEqual(qs.map((q) => q.get('added_after')), [null, microBefore(stored[9].dateAdded), microBefore(stored[18].dateAdded)]);
      assert.ok(qs.every((q) => q.get('next') === null && q.get('limit') === '10'));
    });

    it('records sharing the date_added of a page boundary are not lost (a naive added_after=Last would skip them)', async () => {
      const stored = srv.seed(RW, Array.from({ length: 30 }, (_, i) => indicator(i)));
      const d = tie(stored, 8, 5); // records 8..12 share one date_added; page 1 ends at record 9
      srv.setFault({ moreWithoutNext: true });
      const naive = await client.getObjects(RW, { limit: 10, addedAfter: d });
      assert.equal(naive.objects[0].id, stored[13].id, 'the quirk: added_after = Last skips records 10..12');

      srv.clearRequests();
      const got = await collect(client.iterObjects(RW, { limit: 10 }));
      assert.deepEqual(ids(got), stored.map((s) => s.id));
      assert.equal(objectQueries()[1].get('added_after'), microBefore(d));
    });

    it('a page made only of records sharing one date_added is asked again with a larger limit', async () => {
      const stored = srv.seed(RW, Array.from({ length: 30 }, (_, i) => indicator(i)));
      tie(stored, 0, 15); // more tied records than one page holds
      srv.setFault({ moreWithoutNext: true });
      const got = await collect(client.iterObjects(RW, { limit: 10 }));
      assert.deepEqual(ids(got), stored.map((s) => s.id));
      assert.ok(objectQueries().some((q) => q.get('limit') === '20'), 'the limit was doubled to get past the tie');
    });

    it('a server that caps its pages below a block of tied records: BAD_RESPONSE, never a silent gap', async () => {
      const stored = srv.seed(RW, Array.from({ length: 20 }, (_, i) => indicator(i)));
      tie(stored, 0, 12);
      srv.state.maxPageSize = 10;
      srv.setFault({ moreWithoutNext: true });
      const { items, error } = await collectUntilError(client.iterObjects(RW, { limit: 10 }));
      assert.deepEqual(ids(items), stored.slice(0, 10).map((s) => s.id), 'what came was delivered once');
      assert.ok(error instanceof TaxiiError && error.code === 'BAD_RESPONSE', String(error));
      assert.match(error.message, /share date_added .* cannot page past them without losing records/);
    });

    it('the manifest takes the same path', async () => {
      const stored = srv.seed(RW, Array.from({ length: 12 }, (_, i) => indicator(i)));
      srv.setFault({ moreWithoutNext: true });
      const man: ManifestRecord[] = await collect(client.iterManifest(RW, { limit: 5 }));
      assert.deepEqual(man.map((m) => m.id), stored.map((s) => s.id));
    });
  });

  describe('expiring next tokens', () => {
    it('a token that expires mid-way: restart from the latest date seen, nothing lost or repeated', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      const got = await collect(client.iterObjects(RW, { limit: 10 }), (n) => {
        if (n === 10) srv.setFault({ expireNextTokens: true, times: 1 });
      });
      assert.deepEqual(ids(got), stored.map((s) => s.id));
      const qs = objectQueries();
      // page 1; next (400, expired); restart with added_after; then next tokens again
      assert.equal(qs[1].get('next') !== null, true);
      assert.equal(qs[2].get('next'), null);
      assert.equal(qs[2].get('added_after'), microBefore(stored[9].dateAdded));
      assert.ok(qs.slice(3).every((q) => q.get('next') !== null));
    });

    it('tokens that always expire: progress by restarting each time', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      srv.setFault({ expireNextTokens: true });
      assert.deepEqual(ids(await collect(client.iterObjects(RW, { limit: 10 }))), stored.map((s) => s.id));
    });

    it('a token that expires on a server without date headers: restart from the query\'s own added_after, replayed records dropped', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      srv.setFault({ noDateHeaders: true });
      const since = '2000-01-01T00:00:00Z';
      const got = await collect(client.iterObjects(RW, { limit: 10, addedAfter: since }), (n) => {
        if (n === 20) srv.setFault({ noDateHeaders: true, expireNextTokens: true, times: 1 });
        if (n === 21) srv.setFault({ noDateHeaders: true });
      });
      assert.deepEqual(ids(got), stored.map((s) => s.id));
      const qs = objectQueries();
      const restarts = qs.filter((q, i) => i > 0 && q.get('next') === null);
      assert.equal(restarts.length, 1);
      assert.equal(restarts[0].get('added_after'), '2000-01-01T00:00:00.000000Z'); // since, as sent
    });

    it('tokens that always expire on a server without date headers: BAD_RESPONSE after bounded restarts, no duplicates', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      srv.setFault({ noDateHeaders: true, expireNextTokens: true });
      const { items, error } = await collectUntilError(client.iterObjects(RW, { limit: 10 }));
      assert.deepEqual(ids(items), stored.slice(0, 10).map((s) => s.id));
      assert.ok(error instanceof TaxiiError && error.code === 'BAD_RESPONSE', String(error));
      assert.match(error.message, /refused again after restarting/);
      assert.ok(objectQueries().length <= 8, `bounded: ${objectQueries().length} requests`);
    });

    it('an expired token at a page boundary inside a block of tied records loses none of them', async () => {
      const stored = srv.seed(RW, Array.from({ length: 30 }, (_, i) => indicator(i)));
      tie(stored, 7, 6); // 7..12 tied; page 1 ends at 9
      srv.setFault({ expireNextTokens: true });
      assert.deepEqual(ids(await collect(client.iterObjects(RW, { limit: 10 }))), stored.map((s) => s.id));
    });
  });
});
