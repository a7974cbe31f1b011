/**
 * TaxiiClient against the independent test TAXII server (test/support/taxii-test-server.ts)
 * over real HTTP and HTTPS.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { TaxiiClient, type TaxiiObject } from '../../lib/taxii/client';
import { TaxiiError } from '../../lib/taxii/errors';
import { BasicAuth, BearerAuth } from '../../lib/auth/client';
import { DEFAULT_COLLECTIONS, makeTestPki, startTestTaxiiServer, type TestPki, type TestTaxiiServer } from '../support/taxii-test-server';

const TAXII = 'application/taxii+json;version=2.1';
const RW = DEFAULT_COLLECTIONS[0].id;
const RO = DEFAULT_COLLECTIONS[1].id;
const WO = DEFAULT_COLLECTIONS[2].id;

function uuid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function indicator(n: number, modified = '2021-01-01T00:00:00.000Z', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${uuid(n)}`,
    created: '2021-01-01T00:00:00.000Z',
    modified,
    name: `indicator ${n}`,
    pattern: `[ipv4-addr:value = '10.0.${Math.floor(n / 256) % 256}.${n % 256}']`,
    pattern_type: 'stix',
    valid_from: '2021-01-01T00:00:00Z',
    ...extra,
  };
}

async function rejects(p: Promise<unknown>, code: string, match?: RegExp): Promise<TaxiiError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TaxiiError, `expected TaxiiError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (match) assert.match(e.message, match);
    return e;
  }
  assert.fail(`expected a ${code} failure`);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Collect until the iterator throws; returns what came and the error. */
async function collectUntilError<T>(it: AsyncIterable<T>): Promise<{ items: T[]; error: unknown }> {
  const items: T[] = [];
  try {
    for await (const x of it) items.push(x);
  } catch (error) {
    return { items, error };
  }
  return { items, error: undefined };
}

/** The TAXII timestamp 1 µs before a test-server date_added (`...ss.ssssssZ`). */
function microBefore(ts: string): string {
  const us = BigInt(Date.parse(ts.slice(0, 19) + 'Z')) * 1000n + BigInt(ts.slice(20, 26)) - 1n;
  const ms = Number(us / 1000n);
  return new Date(ms).toISOString().slice(0, 19) + '.' + String(us % 1000000n).padStart(6, '0') + 'Z';
}

describe('TaxiiClient over HTTP against the test TAXII server', function () {
  this.timeout(20_000);
  let srv: TestTaxiiServer;
  let client: TaxiiClient;

  beforeEach(async () => {
    srv = await startTestTaxiiServer();
    client = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, timeoutMs: 5000, pollIntervalMs: 10 });
  });
  afterEach(async () => {
    client.close();
    await srv.stop();
  });

  describe('discovery, API root, collections', () => {
    it('discovers, resolves the default API root and sends the exact Accept header', async () => {
      const c = new TaxiiClient({ discoveryUrl: srv.discoveryUrl });
      try {
        const d = await c.discover();
        assert.equal(d.title, 'Test TAXII server');
        assert.equal(await c.apiRootUrl(), srv.apiRootUrl);
        const info = await c.apiRoot();
        assert.equal(info.max_content_length, 10 * 1024 * 1024);
        assert.ok(info.versions.includes(TAXII));
      } finally {
        c.close();
      }
      assert.ok(srv.state.requests.length >= 2);
      for (const r of srv.state.requests) {
        assert.equal(r.headers.accept, TAXII);
        assert.match(String(r.headers['user-agent']), /^sets\//);
      }
    });

    it('tells a discovery URL from an API root URL given as `url`', async () => {
      const a = new TaxiiClient({ url: srv.discoveryUrl });
      const b = new TaxiiClient({ url: srv.apiRootUrl.replace(/\/$/, '') });
      try {
        assert.equal(await a.apiRootUrl(), srv.apiRootUrl);
        assert.equal((await a.collections()).length, 3);
        assert.equal(await b.apiRootUrl(), srv.apiRootUrl, 'trailing slash appended');
        assert.equal((await b.apiRoot()).title, 'API root 1');
        assert.equal((await b.discover()).title, 'Test TAXII server', 'discovery derived from the origin');
      } finally {
        a.close();
        b.close();
      }
    });

    it('lists and reads collections; unknown collection -> 404 with the TAXII error', async () => {
      const cols = await client.collections();
      assert.deepEqual(cols.map((c) => c.id), DEFAULT_COLLECTIONS.map((c) => c.id));
      const one = await client.collection(RO);
      assert.equal(one.can_write, false);
      assert.equal(srv.requestsTo(`/collections/${RO}/`)[0].path, `/api1/collections/${RO}/`);
      const e = await rejects(client.collection('nope'), 'HTTP_404', /-> 404 Not Found: Collection not found: no collection nope/);
      assert.equal(e.taxiiError?.http_status, '404');
    });

    it('an API root without collections answers {} -> []', async () => {
      const empty = await startTestTaxiiServer({ collections: [] });
      const c = new TaxiiClient({ apiRootUrl: empty.apiRootUrl });
      try {
        assert.deepEqual(await c.collections(), []);
      } finally {
        c.close();
        await empty.stop();
      }
    });
  });

  describe('add objects and status', () => {
    it('POSTs an envelope with the exact media types and returns the complete status', async () => {
      const objs = [indicator(1), indicator(2)];
      const st = await client.addObjects(RW, objs);
      assert.equal(st.status, 'complete');
      assert.equal(st.total_count, 2);
      assert.equal(st.success_count, 2);
      assert.equal(st.requests.length, 1);
      const post = srv.state.requests.find((r) => r.method === 'POST');
      assert.ok(post);
      assert.equal(post.path, `/api1/collections/${RW}/objects/`);
      assert.equal(post.headers['content-type'], TAXII);
      assert.equal(post.headers.accept, TAXII);
      assert.deepEqual(JSON.parse(post.body), { objects: objs });
      assert.equal(srv.requestsTo('/status/').length, 0, 'no polling when complete at once');
      // re-adding the same versions is not an error
      const again = await client.addObjects(RW, objs);
      assert.equal(again.success_count, 2);
      assert.equal(srv.state.objects.get(RW)?.length, 2);
    });

    it('polls a pending status until complete', async () => {
      srv.state.pendingPolls = 2;
      const st = await client.addObjects(RW, [indicator(1)]);
      assert.equal(st.status, 'complete');
      assert.equal(st.success_count, 1);
      const polls = srv.requestsTo('/status/');
      assert.equal(polls.length, 3, 'two pending answers, then complete');
      assert.equal(polls[0].path, `/api1/status/${st.id}/`);
      assert.equal(polls[0].headers.accept, TAXII);
    });

    it('returns the pending status when wait is false, and getStatus reads it later', async () => {
      srv.state.pendingPolls = 1;
      const st = await client.addObjects(RW, [indicator(1)], { wait: false });
      assert.equal(st.status, 'pending');
      assert.equal(st.pending_count, 1);
      assert.equal(srv.requestsTo('/status/').length, 0);
      assert.equal((await client.getStatus(st.id)).status, 'pending');
      assert.equal((await client.getStatus(st.id)).status, 'complete');
      await rejects(client.getStatus('no-such-status'), 'HTTP_404', /Status not found/);
    });

    it('gives up polling with STATUS_TIMEOUT carrying the last status', async () => {
      srv.state.pendingPolls = 1_000_000;
      const e = await rejects(client.addObjects(RW, [indicator(1)], { pollIntervalMs: 10, pollTimeoutMs: 100 }), 'STATUS_TIMEOUT', /still pending after 100 ms/);
      assert.equal((e.status as { status: string }).status, 'pending');
    });

    it('raises BAD_RESPONSE when the status counts do not add up', async () => {
      srv.setFault({ badStatusCounts: true });
      await rejects(client.addObjects(RW, [indicator(1)]), 'BAD_RESPONSE', /counts do not add up/);
    });

    it('reports per-object failures in the result, or as STATUS_FAILED on request', async () => {
      const st = await client.addObjects(RW, [indicator(1), { type: 'indicator' }]);
      assert.equal(st.failure_count, 1);
      assert.equal(st.success_count, 1);
      assert.equal(st.failures?.[0].message, 'object needs id and type');
      await rejects(client.addObjects(RW, [{ type: 'x' }], { failOnFailures: true }), 'STATUS_FAILED', /1 of 1 objects failed/);
    });

    it('splits a batch larger than max_content_length into several POSTs', async () => {
      const small = await startTestTaxiiServer({ maxContentLength: 2000 });
      const c = new TaxiiClient({ apiRootUrl: small.apiRootUrl, pollIntervalMs: 10 });
      try {
        const objs = Array.from({ length: 20 }, (_, i) => indicator(i));
        const st = await c.addObjects(RW, objs);
        const posts = small.state.requests.filter((r) => r.method === 'POST');
        assert.ok(posts.length > 1, `${posts.length} POSTs`);
        assert.equal(st.requests.length, posts.length);
        for (const p of posts) assert.ok(Buffer.byteLength(p.body) <= 2000, `${Buffer.byteLength(p.body)} bytes`);
        assert.deepEqual(posts.flatMap((p) => (JSON.parse(p.body) as { objects: unknown[] }).objects), objs, 'all objects, in order');
        assert.equal(st.total_count, 20);
        assert.equal(st.success_count, 20);
        assert.equal(st.successes?.length, 20);
        assert.equal(small.state.objects.get(RW)?.length, 20);
        // one object that can never fit: refused before anything is sent
        small.clearRequests();
        await rejects(c.addObjects(RW, [indicator(99, undefined, { description: 'x'.repeat(3000) })]), 'TOO_LARGE', /indicator--.*max_content_length 2000/);
        assert.equal(small.state.requests.filter((r) => r.method === 'POST').length, 0);
      } finally {
        c.close();
        await small.stop();
      }
    });

    it('refuses an empty batch and non-objects', async () => {
      await rejects(client.addObjects(RW, []), 'INVALID_ARGUMENT');
      await rejects(client.addObjects(RW, [null as unknown as object]), 'INVALID_ARGUMENT');
    });
  });

  describe('get objects, filters, pagination', () => {
    it('sends every filter in its wire form and the server applies it', async () => {
      srv.seed(RW, [indicator(1), indicator(2), indicator(2, '2022-01-01T00:00:00.000Z'), { type: 'malware', spec_version: '2.1', id: `malware--${uuid(3)}`, created: '2021-01-01T00:00:00.000Z', modified: '2021-01-01T00:00:00.000Z', name: 'm', is_family: false }]);
      const page = await client.getObjects(RW, {
        addedAfter: '2000-01-01T00:00:00Z',
        limit: 5,
        match: { id: [`indicator--${uuid(1)}`, `indicator--${uuid(2)}`], type: 'indicator', version: 'all', spec_version: '2.1' },
      });
      const r = srv.requestsTo('/objects/').at(-1);
      assert.ok(r);
      assert.equal(r.rawQuery,
        `added_after=2000-01-01T00%3A00%3A00.000000Z&limit=5&match%5Bid%5D=indicator--${uuid(1)},indicator--${uuid(2)}` +
        '&match%5Btype%5D=indicator&match%5Bversion%5D=all&match%5Bspec_version%5D=2.1');
      assert.equal(page.objects.length, 3);
      assert.equal(page.more, false);
      assert.equal(page.next, undefined);
      assert.match(page.dateAddedFirst ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
      // default match[version] is last: one version per object
      const latest = await client.getObjects(RW, { match: { type: 'indicator' } });
      assert.equal(latest.objects.length, 2);
      assert.equal(latest.objects.find((o) => o.id === `indicator--${uuid(2)}`)?.['modified'], '2022-01-01T00:00:00.000Z');
      assert.equal(srv.requestsTo('/objects/').at(-1)?.rawQuery, 'match%5Btype%5D=indicator');
      // first,last combined
      const fl = await client.getObjects(RW, { match: { id: `indicator--${uuid(2)}`, version: ['first', 'last'] } });
      assert.equal(fl.objects.length, 2);
      assert.equal(srv.requestsTo('/objects/').at(-1)?.rawQuery, `match%5Bid%5D=indicator--${uuid(2)}&match%5Bversion%5D=first,last`);
      // added_after from a Date is sent with microseconds
      await client.getObjects(RW, { addedAfter: new Date(Date.UTC(2020, 0, 1)) });
      assert.equal(srv.requestsTo('/objects/').at(-1)?.rawQuery, 'added_after=2020-01-01T00%3A00%3A00.000000Z');
    });

    it('an empty collection answers {} -> no objects, more false', async () => {
      const p = await client.getObjects(RW);
      assert.deepEqual(p, { more: false, objects: [] });
      assert.deepEqual(await collect(client.iterObjects(RW)), []);
      assert.deepEqual((await client.getManifest(RW)).objects, []);
    });

    it('iterObjects pages with next, repeating the same filters and limit', async () => {
      srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      const got = await collect(client.iterObjects(RW, { match: { type: 'indicator' } }));
      assert.equal(got.length, 25);
      assert.equal(new Set(got.map((o) => o.id)).size, 25);
      const reqs = srv.requestsTo('/objects/');
      assert.equal(reqs.length, 1, 'default page size 100: one request');
      const c = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, pageSize: 10 });
      try {
        srv.clearRequests();
        const got2 = await collect(c.iterObjects(RW, { match: { type: 'indicator' } }));
        assert.deepEqual(got2.map((o) => o.id), got.map((o) => o.id));
        const qs = srv.requestsTo('/objects/').map((r) => r.rawQuery);
        assert.equal(qs.length, 3);
        assert.equal(qs[0], 'limit=10&match%5Btype%5D=indicator');
        for (const q of qs.slice(1)) assert.match(q, /^limit=10&next=[^&]+&match%5Btype%5D=indicator$/);
      } finally {
        c.close();
      }
    });

    it('honours a server page size smaller than the limit', async () => {
      srv.state.maxPageSize = 4;
      srv.seed(RW, Array.from({ length: 10 }, (_, i) => indicator(i)));
      const got = await collect(client.iterObjects(RW, { limit: 50 }));
      assert.equal(got.length, 10);
      assert.equal(srv.requestsTo('/objects/').length, 3);
    });

    it('falls back to added_after = X-TAXII-Date-Added-Last when more is true without next', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      srv.setFault({ moreWithoutNext: true });
      const got = await collect(client.iterObjects(RW, { limit: 10 }));
      assert.deepEqual(got.map((o) => o.id), stored.map((s) => s.id), 'each object exactly once, in order');
      const qs = srv.requestsTo('/objects/').map((r) => new URLSearchParams(r.rawQuery));
      assert.equal(qs.length, 3);
      assert.equal(qs[0].get('added_after'), null);
      // 1 µs before Last: records sharing Last's date_added are re-served and dropped as duplicates
      assert.equal(qs[1].get('added_after'), microBefore(stored[9].dateAdded));
      assert.equal(qs[2].get('added_after'), microBefore(stored[18].dateAdded));
      assert.ok(qs.every((q) => q.get('limit') === '10' && q.get('next') === null));
    });

    it('recovers from an expired next token with added_after', async () => {
      const stored = srv.seed(RW, Array.from({ length: 25 }, (_, i) => indicator(i)));
      srv.setFault({ expireNextTokens: true });
      const got = await collect(client.iterObjects(RW, { limit: 10 }));
      assert.deepEqual(got.map((o) => o.id), stored.map((s) => s.id));
      const qs = srv.requestsTo('/objects/').map((r) => new URLSearchParams(r.rawQuery));
      // page 1; next (400); added_after page 2 (more, new next); next (400); added_after page 3
      assert.equal(qs.filter((q) => q.get('next') !== null).length, 2);
      const resumed = qs.filter((q) => q.get('added_after') !== null && q.get('next') === null);
      assert.deepEqual(resumed.map((q) => q.get('added_after')), [microBefore(stored[9].dateAdded), microBefore(stored[18].dateAdded)]);
    });

    it('stops with BAD_RESPONSE when more is true but neither next nor date headers come', async () => {
      srv.seed(RW, Array.from({ length: 15 }, (_, i) => indicator(i)));
      srv.setFault({ moreWithoutNext: true, noDateHeaders: true });
      const { items, error } = await collectUntilError(client.iterObjects(RW, { limit: 10 }));
      assert.equal(items.length, 10, 'the first page was delivered');
      assert.ok(error instanceof TaxiiError && error.code === 'BAD_RESPONSE', String(error));
      assert.match(error.message, /neither next nor X-TAXII-Date-Added-Last/);
    });

    it('detects a server that repeats the same page: no loop, no duplicates', async () => {
      srv.seed(RW, Array.from({ length: 15 }, (_, i) => indicator(i)));
      srv.setFault({ repeatFirstPage: true });
      const { items, error } = await collectUntilError(client.iterObjects(RW, { limit: 10 }));
      assert.equal(items.length, 10);
      assert.equal(new Set(items.map((o: TaxiiObject) => o.id)).size, 10);
      assert.ok(error instanceof TaxiiError && error.code === 'BAD_RESPONSE', String(error));
      assert.match(error.message, /repeated the previous page/);
      assert.equal(srv.requestsTo('/objects/').length, 2);
    });

    it('getObject returns the versions of one object; wire form of its filters', async () => {
      srv.seed(RW, [indicator(1), indicator(1, '2021-06-01T00:00:00.000Z'), indicator(1, '2022-01-01T00:00:00.000Z'), indicator(2)]);
      const id = `indicator--${uuid(1)}`;
      const last = await client.getObject(RW, id);
      assert.deepEqual(last.objects.map((o) => o['modified']), ['2022-01-01T00:00:00.000Z']);
      const all = await client.getObject(RW, id, { match: { version: 'all', spec_version: '2.1' }, limit: 2 });
      assert.equal(all.objects.length, 2);
      assert.equal(all.more, true);
      const r = srv.requestsTo(`/objects/${id}/`).at(-1);
      assert.equal(r?.rawQuery, 'limit=2&match%5Bversion%5D=all&match%5Bspec_version%5D=2.1');
      const every = await collect(client.iterObject(RW, id, { match: { version: 'all' }, limit: 2 }));
      assert.equal(every.length, 3);
      const exact = await client.getObject(RW, id, { match: { version: '2021-06-01T00:00:00Z' } });
      assert.deepEqual(exact.objects.map((o) => o['modified']), ['2021-06-01T00:00:00.000Z'], 'versions compared as instants');
      await rejects(client.getObject(RW, `indicator--${uuid(77)}`), 'HTTP_404', /Object not found/);
    });

    it('versions: one page, all pages, newest-first servers, added_after fallback', async () => {
      const id = `indicator--${uuid(1)}`;
      const mods = ['2021-01-01T00:00:00.000Z', '2021-06-01T00:00:00.000Z', '2022-01-01T00:00:00.000Z'];
      srv.seed(RW, mods.map((m) => indicator(1, m)));
      const p = await client.getVersions(RW, id, { addedAfter: '2000-01-01T00:00:00Z', match: { spec_version: '2.1' } });
      assert.deepEqual(p.versions, mods);
      assert.equal(srv.requestsTo('/versions/').at(-1)?.rawQuery, 'added_after=2000-01-01T00%3A00%3A00.000000Z&match%5Bspec_version%5D=2.1');
      assert.deepEqual(await collect(client.iterVersions(RW, id, { limit: 2 })), mods);
      srv.setFault({ versionsNewestFirst: true });
      assert.deepEqual((await collect(client.iterVersions(RW, id, { limit: 2 }))).sort(), mods);
      srv.setFault({ versionsNewestFirst: true, moreWithoutNext: true });
      const fb = await collect(client.iterVersions(RW, id, { limit: 2 }));
      assert.deepEqual([...fb].sort(), mods, 'each version once although pages are newest-first');
      assert.equal(fb.length, 3);
    });

    it('manifest: records, filters and paging', async () => {
      const stored = srv.seed(RW, Array.from({ length: 7 }, (_, i) => indicator(i)));
      const p = await client.getManifest(RW, { match: { type: 'indicator' }, limit: 3 });
      assert.equal(p.objects.length, 3);
      assert.equal(p.more, true);
      assert.deepEqual(p.objects[0], { id: stored[0].id, date_added: stored[0].dateAdded, version: stored[0].version, media_type: 'application/stix+json;version=2.1' });
      assert.equal(srv.requestsTo('/manifest/').at(-1)?.rawQuery, 'limit=3&match%5Btype%5D=indicator');
      const all = await collect(client.iterManifest(RW, { limit: 3 }));
      assert.deepEqual(all.map((r) => r.id), stored.map((s) => s.id));
    });

    it('deleteObject removes versions as filtered, then all; 404 afterwards', async () => {
      const id = `indicator--${uuid(1)}`;
      srv.seed(RW, [indicator(1), indicator(1, '2022-01-01T00:00:00.000Z')]);
      await client.deleteObject(RW, id, { match: { version: 'first' } });
      const del = srv.state.requests.filter((r) => r.method === 'DELETE');
      assert.equal(del.length, 1);
      assert.equal(del[0].path, `/api1/collections/${RW}/objects/${id}/`);
      assert.equal(del[0].rawQuery, 'match%5Bversion%5D=first');
      assert.equal(del[0].headers.accept, TAXII);
      assert.deepEqual((await client.getObject(RW, id, { match: { version: 'all' } })).objects.map((o) => o['modified']), ['2022-01-01T00:00:00.000Z']);
      await client.deleteObject(RW, id);
      await rejects(client.getObject(RW, id), 'HTTP_404');
      await rejects(client.deleteObject(RW, id), 'HTTP_404');
    });

    it('permissions: read a write-only collection or write a read-only one -> 403', async () => {
      await rejects(client.getObjects(WO), 'HTTP_403', /-> 403 Forbidden: Forbidden: collection is not readable/);
      await rejects(client.addObjects(RO, [indicator(1)]), 'HTTP_403', /collection is not writable/);
    });
  });

  describe('failures', () => {
    const cases: Array<[number, string]> = [
      [401, 'Unauthorized'], [403, 'Forbidden'], [406, 'Not Acceptable'], [413, 'Payload Too Large'], [422, 'Unprocessable Entity'], [500, 'Internal Server Error'],
    ];
    for (const [status, reason] of cases) {
      it(`${status} with a TAXII error body is surfaced with title and description`, async () => {
        const method = status === 413 || status === 422 ? 'POST' : 'GET';
        srv.setFault({ status, method, title: `Title ${status}`, description: `Because ${status}` });
        const p = method === 'POST' ? client.addObjects(RW, [indicator(1)]) : client.collections();
        const e = await rejects(p, `HTTP_${status}`);
        const url = method === 'POST' ? `${srv.apiRootUrl}collections/${RW}/objects/` : `${srv.apiRootUrl}collections/`;
        assert.equal(e.message, `TAXII ${method} ${url} -> ${status} ${reason}: Title ${status}: Because ${status}`);
        assert.equal(e.httpStatus, status);
        assert.deepEqual(e.taxiiError, { title: `Title ${status}`, description: `Because ${status}`, http_status: String(status) });
      });
    }

    it('an HTML error body is reported as a readable snippet', async () => {
      srv.setFault({ status: 502, body: 'html', title: 'Bad Gateway', description: 'upstream <down>' });
      const e = await rejects(client.collections(), 'HTTP_502');
      assert.equal(e.taxiiError, undefined);
      assert.equal(e.bodySnippet, '502 Bad Gateway Bad Gateway upstream <down>');
      assert.match(e.message, /-> 502 Bad Gateway: 502 Bad Gateway Bad Gateway upstream <down>$/);
    });

    it('an error without a body still names method, URL and status', async () => {
      srv.setFault({ status: 503, body: 'empty' });
      const e = await rejects(client.collections(), 'HTTP_503');
      assert.equal(e.message, `TAXII GET ${srv.apiRootUrl}collections/ -> 503 Service Unavailable`);
    });

    it('a wrong Content-Type on a 2xx answer is BAD_RESPONSE (unless lenient for JSON)', async () => {
      srv.setFault({ contentType: 'text/html' });
      await rejects(client.collections(), 'BAD_RESPONSE', /Content-Type is "text\/html", expected application\/taxii\+json;version=2\.1/);
      srv.setFault({ contentType: 'application/json' });
      await rejects(client.collections(), 'BAD_RESPONSE', /Content-Type is "application\/json"/);
      const lenient = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, lenientContentType: true });
      try {
        assert.equal((await lenient.collections()).length, 3);
      } finally {
        lenient.close();
      }
      srv.setFault({ contentType: 'application/taxii+json; version=2.1; charset=utf-8' });
      assert.equal((await client.collections()).length, 3);
      srv.setFault({ contentType: 'application/taxii+json;version=2.0' });
      await rejects(client.collections(), 'BAD_RESPONSE');
    });

    it('a hanging server fails with TIMEOUT', async function () {
      this.timeout(5000);
      srv.setFault({ hang: true });
      const c = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, timeoutMs: 300 });
      try {
        await rejects(c.collections(), 'TIMEOUT', /no complete answer within 300 ms/);
      } finally {
        c.close();
      }
    });

    it('a connect/handshake that never completes fails with TIMEOUT (connectTimeoutMs)', async function () {
      this.timeout(5000);
      const sockets: net.Socket[] = [];
      const mute = net.createServer((s) => sockets.push(s)); // accepts TCP, never speaks TLS
      await new Promise<void>((r) => mute.listen(0, '127.0.0.1', () => r()));
      const c = new TaxiiClient({ apiRootUrl: `https://127.0.0.1:${(mute.address() as AddressInfo).port}/api1/`, connectTimeoutMs: 200, timeoutMs: 60_000 });
      try {
        await rejects(c.collections(), 'TIMEOUT', /connect timeout after 200 ms/);
      } finally {
        c.close();
        sockets.forEach((s) => s.destroy());
        await new Promise<void>((r) => mute.close(() => r()));
      }
    });

    it('retries a GET once after a connection reset, never a POST', async () => {
      srv.setFault({ reset: true, times: 1 });
      assert.equal((await client.collections()).length, 3);
      assert.equal(srv.requestsTo('/collections/').length, 2);
      srv.clearRequests();
      srv.setFault({ reset: true, times: 2 });
      await rejects(client.collections(), 'NETWORK', /ECONNRESET|socket hang up/);
      assert.equal(srv.requestsTo('/collections/').length, 2, 'one retry only');
      srv.clearRequests();
      srv.setFault({ reset: true, times: 1, method: 'POST' });
      await rejects(client.addObjects(RW, [indicator(1)]), 'NETWORK');
      assert.equal(srv.state.requests.filter((r) => r.method === 'POST').length, 1, 'POST not retried');
    });

    it('follows a redirect for a GET, never for a POST', async () => {
      srv.setFault({ path: '/collections/', method: 'GET', redirect: `${srv.apiRootUrl}collections/?moved=1`, times: 1 });
      srv.state.requests.length = 0;
      await rejects(client.collections(), 'HTTP_400', /parameter moved is not supported/);
      assert.deepEqual(srv.state.requests.map((r) => r.rawQuery), ['', 'moved=1'], 'redirect followed');
      srv.setFault({ method: 'POST', redirect: `${srv.apiRootUrl}collections/${RO}/objects/` });
      const e = await rejects(client.addObjects(RW, [indicator(1)]), 'HTTP_308');
      assert.match(e.message, /-> 308 Permanent Redirect: moved to .* \(redirect to .* not followed for a POST; configure the final URL\)$/);
    });

    it('connection refused is NETWORK naming the URL', async () => {
      const gone = await startTestTaxiiServer();
      const url = gone.apiRootUrl;
      await gone.stop();
      const c = new TaxiiClient({ apiRootUrl: url });
      try {
        await rejects(c.collections(), 'NETWORK', new RegExp(`TAXII GET ${url}collections/ failed: network ECONNREFUSED`));
      } finally {
        c.close();
      }
    });

    it('close() and an AbortSignal abort requests in flight', async () => {
      srv.setFault({ hang: true });
      const c = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, timeoutMs: 10_000 });
      const p = c.collections();
      setTimeout(() => c.close(), 50);
      await rejects(p, 'ABORTED');
      const ac = new AbortController();
      const p2 = client.collections({ signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await rejects(p2, 'ABORTED');
    });
  });

  describe('proxy', () => {
    it('ignores HTTP_PROXY from the environment and uses a configured proxy', async () => {
      const seen: string[] = [];
      const proxy = http.createServer((req, res) => {
        seen.push(`${req.method} ${req.url}`);
        const up = http.request(req.url ?? '', { method: req.method, headers: req.headers }, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
      const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const saved = { HTTP_PROXY: process.env.HTTP_PROXY, http_proxy: process.env.http_proxy };
      process.env.HTTP_PROXY = process.env.http_proxy = proxyUrl;
      const direct = new TaxiiClient({ apiRootUrl: srv.apiRootUrl });
      const proxied = new TaxiiClient({ apiRootUrl: srv.apiRootUrl, proxy: proxyUrl });
      try {
        assert.equal((await direct.collections()).length, 3);
        assert.deepEqual(seen, [], 'environment proxy not used');
        assert.equal((await proxied.collections()).length, 3);
        assert.deepEqual(seen, [`GET ${srv.apiRootUrl}collections/`]);
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
        direct.close();
        proxied.close();
        proxy.closeAllConnections();
        await new Promise<void>((r) => proxy.close(() => r()));
      }
    });
  });

  describe('authentication', () => {
    it('HTTP Basic: accepted (UTF-8 password), rejected with the server\'s 401 error', async () => {
      const s = await startTestTaxiiServer({ basic: { alice: 'pässwörd' } });
      const ok = new TaxiiClient({ apiRootUrl: s.apiRootUrl, auth: new BasicAuth('alice', 'pässwörd') });
      const bad = new TaxiiClient({ apiRootUrl: s.apiRootUrl, auth: new BasicAuth('alice', 'wrong') });
      const none = new TaxiiClient({ apiRootUrl: s.apiRootUrl });
      try {
        assert.equal((await ok.collections()).length, 3);
        assert.equal(s.state.requests.at(-1)?.principal, 'basic:alice');
        await rejects(bad.collections(), 'HTTP_401', /-> 401 Unauthorized: Unauthorized: bad username or password/);
        await rejects(none.collections(), 'HTTP_401', /credentials required/);
      } finally {
        ok.close();
        bad.close();
        none.close();
        await s.stop();
      }
    });

    it('static Bearer token', async () => {
      const s = await startTestTaxiiServer({ bearerTokens: ['t0ken'] });
      const ok = new TaxiiClient({ apiRootUrl: s.apiRootUrl, auth: new BearerAuth('t0ken') });
      const bad = new TaxiiClient({ apiRootUrl: s.apiRootUrl, auth: new BearerAuth('other') });
      try {
        assert.equal((await ok.collections()).length, 3);
        assert.equal(s.state.requests.at(-1)?.headers.authorization, 'Bearer t0ken');
        await rejects(bad.collections(), 'HTTP_401');
      } finally {
        ok.close();
        bad.close();
        await s.stop();
      }
    });
  });
});

describe('TaxiiClient over HTTPS', function () {
  this.timeout(30_000);
  let pki: TestPki;
  let srv: TestTaxiiServer;

  before(async () => {
    pki = makeTestPki();
    srv = await startTestTaxiiServer({ tls: { key: pki.serverKey, cert: pki.serverCert } });
  });
  after(async () => {
    await srv?.stop();
  });

  async function tryClient(c: TaxiiClient): Promise<unknown> {
    try {
      return await c.collections();
    } finally {
      c.close();
    }
  }

  it('verifies the server against a custom CA', async () => {
    const cols = await tryClient(new TaxiiClient({ apiRootUrl: srv.apiRootUrl, tls: { ca: pki.caCert } }));
    assert.equal((cols as unknown[]).length, 3);
  });

  it('rejects the self-signed chain without the CA, or with another CA (TLS)', async () => {
    await rejects(tryClient(new TaxiiClient({ apiRootUrl: srv.apiRootUrl })), 'TLS', /failed: tls/);
    await rejects(tryClient(new TaxiiClient({ apiRootUrl: srv.apiRootUrl, tls: { ca: pki.otherCaCert } })), 'TLS');
  });

  it('rejects a certificate for another name (TLS)', async () => {
    await rejects(tryClient(new TaxiiClient({ apiRootUrl: srv.apiRootUrl, tls: { ca: pki.caCert, servername: 'taxii.example.org' } })), 'TLS');
  });

  it('accepts anything with verification off', async () => {
    const cols = await tryClient(new TaxiiClient({ apiRootUrl: srv.apiRootUrl, tls: { rejectUnauthorized: false } }));
    assert.equal((cols as unknown[]).length, 3);
  });

  it('presents a client certificate (PEM or PFX) when the server requires one', async () => {
    const mtls = await startTestTaxiiServer({ tls: { key: pki.serverKey, cert: pki.serverCert, ca: pki.caCert, requestClientCert: true } });
    try {
      const pem = await tryClient(new TaxiiClient({ apiRootUrl: mtls.apiRootUrl, tls: { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey } }));
      assert.equal((pem as unknown[]).length, 3);
      const pfx = await tryClient(new TaxiiClient({ apiRootUrl: mtls.apiRootUrl, tls: { ca: pki.caCert, pfx: pki.clientPfx, passphrase: pki.pfxPassphrase } }));
      assert.equal((pfx as unknown[]).length, 3);
      const pfxB64 = await tryClient(new TaxiiClient({ apiRootUrl: mtls.apiRootUrl, tls: { ca: pki.caCert, pfx: pki.clientPfx.toString('base64'), passphrase: pki.pfxPassphrase } }));
      assert.equal((pfxB64 as unknown[]).length, 3);
      const e = await rejects(tryClient(new TaxiiClient({ apiRootUrl: mtls.apiRootUrl, tls: { ca: pki.caCert } })), 'TLS');
      assert.match(e.message, /certificate/i);
    } finally {
      await mtls.stop();
    }
  });
});
