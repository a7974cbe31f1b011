/**
 * Issue 10, "TAXII client against the OASIS reference server": our TAXII client against a server
 * that behaves as medallion does (test/support/taxii-test-server.ts with `medallion`): one
 * date_added for every object of a POST, one `next` token per paging session that expires when
 * unused, a 500 for an `added_after` that is not `...SS[.ffffff]Z`, DELETE defaulting to the latest
 * version. And our own server (lib/taxii/server.ts) for the DELETE the client now sends.
 *
 * 1. resuming after an expired token inside a block of records sharing one date_added: every
 *    record once, no "repeated the previous page"; a server that really loops is still stopped.
 * 2. deleteObject without versions deletes every version (match[version]=all).
 * 3. added_after goes out as UTC `Z` with at most 6 fractional digits; unparsable input is
 *    refused before any request.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import { TaxiiClient, type ManifestRecord, type TaxiiObject } from '../../lib/taxii/client';
import { TaxiiError } from '../../lib/taxii/errors';
import { BasicAuth } from '../../lib/auth/client';
import { createTaxiiServer, type TaxiiServer } from '../../lib/taxii/server';
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type StoredVersion, type TestTaxiiServer } from '../support/taxii-test-server';
import { COL_TRUST, indicator as serverIndicator, listen, testConfig, type Running } from '../server/helpers';
import { makeStore, type TestStore } from '../server/stores';

const RW = DEFAULT_COLLECTIONS[0].id;
const TAXII = 'application/taxii+json;version=2.1';

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
    pattern: `[ipv4-addr:value = '10.2.${Math.floor(n / 256) % 256}.${n % 256}']`,
    pattern_type: 'stix',
    valid_from: '2021-01-01T00:00:00Z',
  };
}

const range = (from: number, n: number): Record<string, unknown>[] => Array.from({ length: n }, (_, i) => indicator(from + i));

/** The TAXII timestamp 1 µs before a test-server date_added (`...ss.ssssssZ`). */
function microBefore(ts: string): string {
  const us = BigInt(Date.parse(ts.slice(0, 19) + 'Z')) * 1000n + BigInt(ts.slice(20, 26)) - 1n;
  return new Date(Number(us / 1000n)).toISOString().slice(0, 19) + '.' + String(us % 1000000n).padStart(6, '0') + 'Z';
}

/** Collect every item; `onItem` may act between items (the iterator fetches lazily) and may wait. */
async function collect<T>(it: AsyncIterable<T>, onItem?: (n: number) => void | Promise<void>): Promise<{ items: T[]; error: unknown }> {
  const items: T[] = [];
  try {
    for await (const x of it) {
      items.push(x);
      await onItem?.(items.length);
    }
  } catch (error) {
    return { items, error };
  }
  return { items, error: undefined };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ids = (objs: Array<TaxiiObject | ManifestRecord>): string[] => objs.map((o) => o.id);
const storedIds = (s: StoredVersion[]): string[] => s.map((v) => v.id);

function assertBadResponse(error: unknown, re: RegExp): void {
  assert.ok(error instanceof TaxiiError, String(error));
  assert.equal(error.code, 'BAD_RESPONSE', error.message);
  assert.match(error.message, re);
}

describe('TaxiiClient against a medallion-like server (issue 10)', function () {
  this.timeout(60_000);
  let srv: TestTaxiiServer;
  let client: TaxiiClient;

  afterEach(async () => {
    client?.close();
    await srv?.stop();
  });

  async function start(ttl?: number): Promise<void> {
    srv = await startTestTaxiiServer({ medallion: ttl === undefined ? {} : { nextTokenTtlMs: ttl } });
    client = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, timeoutMs: 10_000 });
  }

  const queries = (part: string): URLSearchParams[] => srv.requestsTo(part).filter((r) => r.method === 'GET').map((r) => new URLSearchParams(r.rawQuery));

  describe('1. a next token that expires inside a block of one date_added', () => {
    it('the emulation: one POST shares one date_added, one token per session, an expired token is a 400', async () => {
      await start();
      await client.addObjects(RW, range(0, 5));
      const stored = srv.state.objects.get(RW) ?? [];
      assert.equal(new Set(stored.map((s) => s.dateAdded)).size, 1);
      const p1 = await client.getObjects(RW, { limit: 2 });
      const p2 = await client.getObjects(RW, { limit: 2, next: p1.next as string });
      assert.equal(p2.next, p1.next, 'medallion hands out the same token on every page');
      srv.expireSessions();
      await assert.rejects(client.getObjects(RW, { limit: 2, next: p1.next as string }), (e: TaxiiError) => e.httpStatus === 400 && /'next' not valid/.test(e.message));
    });

    it('expired after 1.5 pages of a 250-object POST: restart just before that date_added, every object once, in order', async () => {
      await start();
      const stored = srv.seed(RW, range(0, 250));
      const { items, error } = await collect(client.iterObjects(RW, { limit: 100 }), (n) => {
        if (n === 150) srv.expireSessions(); // the consumer took longer than the session lifetime
      });
      assert.equal(error, undefined, String(error));
      assert.deepEqual(ids(items), storedIds(stored));
      const qs = queries('/objects/');
      const restart = qs.findIndex((q, i) => i > 0 && q.get('next') === null);
      assert.ok(restart > 0, 'restarted without the token');
      assert.equal(qs[restart].get('added_after'), microBefore(stored[0].dateAdded));
      // page 1, page 2, refused page 3, then 100 + 100 replayed and the last 50: six GETs
      assert.equal(qs.length, 6);
    });

    it('a session that really expires (TTL) for a consumer that pauses on every page', async function () {
      await start(1_000);
      await client.addObjects(RW, range(0, 250)); // one POST: one date_added
      const stored = srv.state.objects.get(RW) ?? [];
      const { items, error } = await collect(client.iterObjects(RW, { limit: 100 }), async (n) => {
        if (n % 100 === 0) await sleep(1_500); // slower than the session lifetime
      });
      assert.equal(error, undefined, String(error));
      assert.deepEqual(ids(items), storedIds(stored));
      // each pause outlived the session: the client restarted (a GET without next after the first) at least twice
      const restarts = queries('/objects/').filter((q, i) => i > 0 && q.get('next') === null);
      assert.ok(restarts.length >= 2, `restarts: ${restarts.length}`);
      assert.ok(restarts.every((q) => q.get('added_after') === microBefore(stored[0].dateAdded)));
    });

    it('tokens that expire after every page across several POSTs (objects and manifest): every record once', async () => {
      await start();
      const stored = [...srv.seed(RW, range(0, 120)), ...srv.seed(RW, range(200, 90)), ...srv.seed(RW, range(400, 130))];
      assert.equal(new Set(stored.map((s) => s.dateAdded)).size, 3);
      const expireEvery = (n: number): void => {
        if (n % 50 === 0) srv.expireSessions();
      };
      const objs = await collect(client.iterObjects(RW, { limit: 50 }), expireEvery);
      assert.equal(objs.error, undefined, String(objs.error));
      assert.deepEqual(ids(objs.items), storedIds(stored));
      const man = await collect(client.iterManifest(RW, { limit: 50 }), expireEvery);
      assert.equal(man.error, undefined, String(man.error));
      assert.deepEqual(ids(man.items), storedIds(stored));
    });

    it('a query with added_after over a block whose token keeps expiring: replayed objects dropped, nothing lost', async () => {
      await start();
      srv.seed(RW, range(0, 10));
      const since = (srv.state.objects.get(RW) ?? [])[0].dateAdded;
      const stored = srv.seed(RW, range(100, 230));
      const { items, error } = await collect(client.iterObjects(RW, { limit: 60, addedAfter: since }), (n) => {
        if (n === 60 || n === 130 || n === 200) srv.expireSessions();
      });
      assert.equal(error, undefined, String(error));
      assert.deepEqual(ids(items), storedIds(stored));
    });

    it('a session that stops advancing after a restart is still stopped: BAD_RESPONSE, bounded, no duplicates', async () => {
      await start();
      const stored = srv.seed(RW, range(0, 250));
      const { items, error } = await collect(client.iterObjects(RW, { limit: 100 }), (n) => {
        if (n === 150) {
          srv.expireSessions();
          srv.setFault({ repeatFirstPage: true });
        }
      });
      assertBadResponse(error, /repeated|same next token/);
      assert.deepEqual(ids(items), storedIds(stored).slice(0, 200));
      // 200 already delivered records of that date_added can be re-served at most once: 2 pages, then stop
      assert.ok(queries('/objects/').length <= 7, `bounded: ${queries('/objects/').length} GETs`);
    });

    it('a plain server that repeats a page after a restart is still stopped', async () => {
      srv = await startTestTaxiiServer();
      client = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, timeoutMs: 10_000 });
      const stored = srv.seed(RW, range(0, 25));
      const { items, error } = await collect(client.iterObjects(RW, { limit: 10 }), (n) => {
        if (n === 10) srv.setFault({ expireNextTokens: true, times: 1 });
        if (n === 11) srv.setFault({ repeatFirstPage: true });
      });
      assertBadResponse(error, /repeated|same next token/);
      assert.deepEqual(ids(items), storedIds(stored).slice(0, 19));
      assert.ok(queries('/objects/').length <= 6, `bounded: ${queries('/objects/').length} GETs`);
    });
  });

  describe('2. delete without versions', () => {
    it('the emulation: medallion deletes only the latest version when match[version] is absent', async () => {
      await start();
      const id = `indicator--${uuid(1)}`;
      srv.seed(RW, [indicator(1)]);
      srv.seed(RW, [indicator(1, '2022-01-01T00:00:00.000Z')]);
      const res = await fetch(`${srv.apiRootUrl}collections/${RW}/objects/${id}/`, { method: 'DELETE', headers: { Accept: TAXII } });
      assert.equal(res.status, 200);
      assert.deepEqual((srv.state.objects.get(RW) ?? []).map((v) => v.version), ['2021-01-01T00:00:00.000Z']);
    });

    it('deleteObject(id) sends match[version]=all: every version is gone', async () => {
      await start();
      const id = `indicator--${uuid(1)}`;
      srv.seed(RW, [indicator(1)]);
      srv.seed(RW, [indicator(1, '2022-01-01T00:00:00.000Z')]);
      srv.seed(RW, [indicator(1, '2023-01-01T00:00:00.000Z'), indicator(2)]);
      await client.deleteObject(RW, id);
      const del = srv.state.requests.filter((r) => r.method === 'DELETE');
      assert.deepEqual(del.map((r) => r.rawQuery), ['match%5Bversion%5D=all']);
      assert.deepEqual((srv.state.objects.get(RW) ?? []).map((v) => v.id), [`indicator--${uuid(2)}`]);
      await assert.rejects(client.getObject(RW, id, { match: { version: 'all' } }), (e: TaxiiError) => e.code === 'HTTP_404');
    });

    it('versions given by the caller are sent as given; spec_version alone still deletes all versions', async () => {
      await start();
      const id = `indicator--${uuid(1)}`;
      srv.seed(RW, [indicator(1)]);
      srv.seed(RW, [indicator(1, '2022-01-01T00:00:00.000Z')]);
      srv.seed(RW, [indicator(1, '2023-01-01T00:00:00.000Z')]);
      await client.deleteObject(RW, id, { match: { version: 'first' } });
      await client.deleteObject(RW, id, { match: { spec_version: '2.1' } });
      const del = srv.state.requests.filter((r) => r.method === 'DELETE');
      assert.deepEqual(del.map((r) => r.rawQuery), ['match%5Bversion%5D=first', 'match%5Bversion%5D=all&match%5Bspec_version%5D=2.1']);
      assert.deepEqual(srv.state.objects.get(RW) ?? [], []);
    });
  });

  describe('3. added_after as medallion parses it', () => {
    it('the emulation: medallion fails with a 500 on an offset or 7 fractional digits', async () => {
      await start();
      srv.seed(RW, range(0, 2));
      for (const v of ['2021-01-01T00:00:00+00:00', '2021-01-01T00:00:00.0000000Z', '2021-01-01T00:00:00.000000z']) {
        const res = await fetch(`${srv.apiRootUrl}collections/${RW}/objects/?added_after=${encodeURIComponent(v)}`, { headers: { Accept: TAXII } });
        assert.equal(res.status, 500, v);
        await res.text();
      }
    });

    it('an offset, lower-case letters or more than 6 fractional digits are sent as UTC Z with 6 digits and select the same records', async () => {
      await start();
      const a = srv.seed(RW, range(0, 3));
      await sleep(5);
      const b = srv.seed(RW, range(10, 3));
      const d = a[0].dateAdded; // YYYY-MM-DDTHH:MM:SS.ffffffZ
      const ms = Date.parse(d);
      const plus2 = new Date(ms + 2 * 3_600_000).toISOString().slice(0, 19) + d.slice(19, 26) + '+02:00';
      const minus0130 = new Date(ms - 90 * 60_000).toISOString().slice(0, 19) + d.slice(19, 26) + '-01:30';
      const cases: Array<[string, string]> = [
        [plus2, d],
        [minus0130, d],
        [d.slice(0, 26) + '999Z', d], // 9 digits: truncated to the µs, which selects exactly the same records
        [d.toLowerCase(), d],
        [d.slice(0, 10) + ' ' + d.slice(11), d],
      ];
      for (const [given, sent] of cases) {
        srv.clearRequests();
        const { items, error } = await collect(client.iterObjects(RW, { addedAfter: given }));
        assert.equal(error, undefined, `${given}: ${String(error)}`);
        assert.deepEqual(ids(items), storedIds(b), given);
        assert.equal(queries('/objects/')[0].get('added_after'), sent, given);
        const page = await client.getManifest(RW, { addedAfter: given });
        assert.deepEqual(ids(page.objects), storedIds(b), given);
      }
      // a Date is sent the same way
      srv.clearRequests();
      await client.getObjects(RW, { addedAfter: new Date(ms) });
      assert.equal(queries('/objects/')[0].get('added_after'), d.slice(0, 23) + '000Z');
    });

    it('an unparsable added_after is refused with INVALID_ARGUMENT before any request (also before discovery)', async () => {
      await start();
      srv.seed(RW, range(0, 2));
      const viaDiscovery = new TaxiiClient({ url: srv.discoveryUrl, timeoutMs: 10_000 });
      try {
        for (const c of [client, viaDiscovery]) {
          for (const bad of ['yesterday', '2021-02-30T00:00:00Z', '2021-01-01T00:00:00', '2021-01-01', '2021-01-01T25:00:00Z']) {
            srv.clearRequests();
            const isInvalid = (e: TaxiiError): boolean => e.code === 'INVALID_ARGUMENT' && e.message.includes(JSON.stringify(bad));
            await assert.rejects(c.getObjects(RW, { addedAfter: bad }), isInvalid, bad);
            await assert.rejects(c.getManifest(RW, { addedAfter: bad }), isInvalid, bad);
            await assert.rejects(c.getVersions(RW, `indicator--${uuid(0)}`, { addedAfter: bad }), isInvalid, bad);
            const it = await collect(c.iterObjects(RW, { addedAfter: bad }));
            assert.ok(it.error instanceof TaxiiError && isInvalid(it.error), `${bad}: ${String(it.error)}`);
            assert.deepEqual(srv.state.requests, [], `${bad}: no request`);
          }
        }
      } finally {
        viaDiscovery.close();
      }
    });
  });
});

describe('TaxiiClient DELETE against our own TAXII server (match[version]=all)', function () {
  this.timeout(30_000);
  let ts: TestStore;
  let run: Running;
  let server: TaxiiServer;
  const queries: string[] = [];

  before(async () => {
    ts = await makeStore();
    server = createTaxiiServer(await testConfig(ts.store));
    run = await listen((req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.method === 'DELETE') queries.push((req.url ?? '').split('?')[1] ?? '');
      void server.handle(req, res);
    });
  });
  after(async () => {
    await run?.close();
    await ts?.dispose();
  });

  it('deleteObject(id) removes every version; a given version only that one', async () => {
    const client = new TaxiiClient({ apiRootUrl: `${run.base}/api1/`, auth: new BasicAuth('alice', 'alice-pw'), pollIntervalMs: 50, pollTimeoutMs: 10_000 });
    try {
      const a = serverIndicator(undefined, '2024-01-01T00:00:00.000Z');
      const id = String(a['id']);
      const versions = ['2024-01-01T00:00:00.000Z', '2024-02-01T00:00:00.000Z', '2024-03-01T00:00:00.000Z'];
      for (const v of versions.slice(1)) await client.addObjects(COL_TRUST, [{ ...a, modified: v }]);
      await client.addObjects(COL_TRUST, [a]);
      const all = async (): Promise<string[]> => (await client.getObject(COL_TRUST, id, { match: { version: 'all' } })).objects.map((o) => String(o['modified'])).sort();
      assert.deepEqual(await all(), versions);
      await client.deleteObject(COL_TRUST, id, { match: { version: '2024-02-01T00:00:00.000Z' } });
      assert.deepEqual(await all(), [versions[0], versions[2]]);
      await client.deleteObject(COL_TRUST, id);
      await assert.rejects(client.getObject(COL_TRUST, id, { match: { version: 'all' } }), (e: TaxiiError) => e.code === 'HTTP_404');
      assert.deepEqual(queries, ['match%5Bversion%5D=2024-02-01T00%3A00%3A00.000Z', 'match%5Bversion%5D=all']);
    } finally {
      client.close();
    }
  });
});
