/**
 * Conformance: the exact requests of the OASIS reference client taxii2-client 2.3.0 (TAXII 2.1,
 * `taxii2client.v21`) against our server, written from its source (oasis-open/cti-taxii-client):
 * - taxii2client/common.py `_HTTPConnection.get`: headers `User-Agent: taxii2-client/2.3.0` and
 *   `Accept: application/taxii+json;version=2.1` (MEDIA_TYPE_TAXII_V21); the response is refused
 *   unless `valid_content_type` passes; `_filter_kwargs_to_query_params` turns kwargs into
 *   `match[<name>]` (comma-joined), `added_after`, `limit`, `next`, then requests encodes them with
 *   quote_plus (`match%5Btype%5D=indicator%2Cmalware`);
 * - `_HTTPConnection.post`: only `Accept` and `Content-Type` (both TAXII 2.1) are passed, so the
 *   User-Agent is requests' default; the envelope dict is `json.dumps(..., ensure_ascii=False)`;
 * - v21 `_TAXIIEndpoint.__init__`: a trailing `/` is appended to every endpoint URL;
 * - v21 `Collection.add_objects`: status URL `urljoin(collection.url, "../../status/<id>")` (+ `/`),
 *   polled (`wait_until_final`) only when the returned status is not `complete`;
 *   `Status._validate_status`: counts must add up and list lengths match counts;
 * - v21 `as_pages(func, per_request)`: `limit=N` first, then `limit, next` with the same filters
 *   while `more`; the limit drops to the first page's size when the server returned fewer;
 * - v21 `Collection._validate_collection`: id, title, can_read, can_write required and the id must
 *   appear in the collection URL; `ApiRoot._validate_api_root`: title, versions, max_content_length.
 */
import { strict as assert } from 'node:assert';
import { AUTH, list, obj } from './helpers';
import {
  COL_OFF,
  COL_OPTIONAL,
  COL_REQUIRED,
  assertValidStatus,
  basicHeader,
  pyJsonDumps,
  pyUrlencode,
  raw,
  startInteropServer,
  stixIndicator,
  taxii2clientAcceptsContentType,
  type InteropServer,
} from './interop-support';

const TAXII21 = 'application/taxii+json;version=2.1';
/** requests' own defaults on every request of a Session */
const REQUESTS_DEFAULTS = { 'Accept-Encoding': 'gzip, deflate', Connection: 'keep-alive' };

describe('interop: taxii2-client 2.3.0 (OASIS reference client) request shapes', function () {
  let s: InteropServer;
  /** verdicts recorded in the background (the flow's verifier in miniature) */
  const verifying = new Set<Promise<unknown>>();
  const auth = basicHeader('alice', 'alice-pw');

  /** `_HTTPConnection.get` */
  const get = async (url: string, params: Array<[string, string | number]> = []): Promise<Record<string, unknown>> => {
    const u = new URL(url);
    const q = params.length > 0 ? `?${pyUrlencode(params)}` : '';
    const r = await raw(s.base, 'GET', u.pathname + q, { 'User-Agent': 'taxii2-client/2.3.0', Accept: TAXII21, Authorization: auth, ...REQUESTS_DEFAULTS });
    assert.equal(r.status, 200, `${u.pathname}${q}: ${r.text}`);
    assert.ok(taxii2clientAcceptsContentType(r.headers['content-type']), `taxii2-client refuses Content-Type ${r.headers['content-type']}`);
    return obj(r.json);
  };
  /** `_HTTPConnection.post` via Collection.add_objects */
  const post = async (url: string, envelope: unknown): Promise<Record<string, unknown>> => {
    const r = await raw(
      s.base,
      'POST',
      new URL(url).pathname,
      { Accept: TAXII21, 'Content-Type': TAXII21, 'User-Agent': 'python-requests/2.31.0', Authorization: auth, ...REQUESTS_DEFAULTS },
      Buffer.from(pyJsonDumps(envelope), 'utf8'),
    );
    assert.equal(r.status, 202, r.text);
    return obj(r.json);
  };

  before(async () => {
    s = await startInteropServer();
    // the SETS verifier of the flow, in miniature: settle required records shortly after they arrive
    s.server.on('object', (e) => {
      if (e.policy === 'off') return;
      const settled = new Promise<unknown>((resolve) => setTimeout(resolve, 30)).then(() =>
        s.server.recordVerification(e.collection, e.record.id, e.record.version, 'verified', undefined, e.statusId),
      );
      verifying.add(settled);
      void settled.finally(() => verifying.delete(settled)).catch(() => undefined);
    });
  });
  // close the store only after the verifications still under way (a verdict after close would be
  // an unhandled "store was closed" — seen in a clean-clone run when the last one was 30 ms late)
  after(async () => {
    await Promise.allSettled([...verifying]);
    await s.close();
  });

  it('Server -> ApiRoot -> collections: discovery, API root and collection resources pass its validation', async () => {
    const discoveryUrl = `${s.base}/taxii2/`;
    const d = await get(discoveryUrl);
    assert.equal(typeof d['title'], 'string');
    const roots = list(d['api_roots']).map((u) => new URL(String(u), discoveryUrl).href); // urljoin(self.url, url)
    assert.deepEqual(roots, [`${s.base}/api1/`]);
    assert.equal(new URL(String(d['default']), discoveryUrl).href, roots[0], 'default is one of api_roots');

    const root = await get(roots[0]);
    assert.ok(root['title'] && Array.isArray(root['versions']) && list(root['versions']).includes(TAXII21));
    assert.equal(typeof root['max_content_length'], 'number');

    const cols = list((await get(`${roots[0]}collections/`))['collections']).map(obj);
    assert.equal(cols.length, 3);
    for (const c of cols) {
      const url = `${roots[0]}collections/${String(c['id'])}/`;
      for (const k of ['id', 'title', 'can_read', 'can_write']) assert.ok(c[k] !== undefined && c[k] !== null, `collection without ${k}`);
      assert.ok(url.includes(String(c['id'])));
      assert.deepEqual(await get(url), c, 'Collection.refresh gives the same resource');
    }
  });

  it('add_objects on a required collection: 202 pending, then wait_until_final polls the urljoin status URL until complete', async () => {
    const collectionUrl = `${s.base}/api1/collections/${COL_REQUIRED}/`;
    const objs = [stixIndicator(1), stixIndicator(2), stixIndicator(3)];
    const st = await post(`${collectionUrl}objects/`, { objects: objs });
    assertValidStatus(st);
    assert.equal(st['status'], 'pending');
    // status_url = urljoin(self.url, "../../status/{}".format(id)); Status() appends "/"
    const statusUrl = new URL(`../../status/${String(st['id'])}`, collectionUrl).href + '/';
    assert.equal(statusUrl, `${s.base}/api1/status/${String(st['id'])}/`);
    let cur = st;
    for (let i = 0; i < 50 && cur['status'] !== 'complete'; i++) {
      await new Promise((r) => setTimeout(r, 20)); // poll_interval
      cur = await get(statusUrl);
      assertValidStatus(cur);
    }
    assert.equal(cur['status'], 'complete');
    assert.equal(cur['success_count'], 3);
  });

  it('add_objects on optional and off collections: complete at once (no polling), the ids listed as successes', async () => {
    for (const col of [COL_OPTIONAL, COL_OFF]) {
      const o = stixIndicator(4);
      const st = await post(`${s.base}/api1/collections/${col}/objects/`, { objects: [o] });
      assertValidStatus(st);
      assert.equal(st['status'], 'complete');
      assert.equal(obj(list(st['successes'])[0])['id'], o['id']);
    }
  });

  it('as_pages(get_objects, per_request=100, added_after=..., type=[...]): limit then next, lowered limit, every object once', async () => {
    const collectionUrl = `${s.base}/api1/collections/${COL_OFF}/`;
    const since = '2000-01-01T00:00:00Z';
    const posted = Array.from({ length: 120 }, (_, i) => stixIndicator(100 + i));
    for (let i = 0; i < posted.length; i += 40) await post(`${collectionUrl}objects/`, { objects: posted.slice(i, i + 40) });

    // as_pages: envelope = func(limit=per_request, **kwargs) -> kwargs order: limit, added_after, type
    const filters: Array<[string, string]> = [['added_after', since], ['match[type]', 'indicator,malware']];
    let perRequest = 100;
    const seen: string[] = [];
    let env = await get(`${collectionUrl}objects/`, [['limit', perRequest], ...filters]);
    const first = list(env['objects'] ?? []).length;
    seen.push(...list(env['objects'] ?? []).map((o) => String(obj(o)['id'])));
    if (env['more'] === true && first !== perRequest) perRequest = first; // "Setting limit=%s"
    assert.equal(perRequest, 50, 'the server capped the page at 50, the client follows');
    let pages = 1;
    while (env['more'] === true) {
      // func(limit=per_request, next=envelope.get("next", ""), **kwargs)
      env = await get(`${collectionUrl}objects/`, [['limit', perRequest], ['next', String(env['next'] ?? '')], ...filters]);
      seen.push(...list(env['objects'] ?? []).map((o) => String(obj(o)['id'])));
      pages++;
      assert.ok(pages < 10, 'paging ends');
    }
    const ours = posted.map((o) => String(o['id']));
    assert.deepEqual(seen.filter((id) => ours.includes(id)), ours, 'every posted object once, in date_added order');
    assert.equal(new Set(seen).size, seen.length, 'no duplicates');
  });

  it('get_object, object_versions, get_manifest (as_pages) and delete_object with its filter kwargs', async () => {
    const collectionUrl = `${s.base}/api1/collections/${COL_OPTIONAL}/`;
    const v1 = stixIndicator(7, '2024-03-01T10:00:00.000Z');
    const v2 = { ...v1, modified: '2024-03-02T10:00:00.000Z' };
    const v3 = { ...v1, modified: '2024-03-03T10:00:00.000Z' };
    await post(`${collectionUrl}objects/`, { objects: [v1, v2, v3] });
    const id = String(v1['id']);
    // get_object(obj_id, version=["first", "last"], spec_version="2.1")
    const both = await get(`${collectionUrl}objects/${id}/`, [['match[version]', 'first,last'], ['match[spec_version]', '2.1']]);
    assert.deepEqual(list(both['objects']).map((o) => obj(o)['modified']), [v1['modified'], v3['modified']]);
    // get_object(obj_id, version=datetime) -> _format_datetime drops zero sub-seconds: 2024-03-02T10:00:00Z
    const at = await get(`${collectionUrl}objects/${id}/`, [['match[version]', '2024-03-02T10:00:00Z']]);
    assert.deepEqual(list(at['objects']).map((o) => obj(o)['modified']), [v2['modified']]);
    const versions = await get(`${collectionUrl}objects/${id}/versions/`, [['match[spec_version]', '2.1']]);
    assert.deepEqual(list(versions['versions']).map((v) => Date.parse(String(v))).sort(), [v1, v2, v3].map((o) => Date.parse(String(o['modified']))));

    const man = await get(`${collectionUrl}manifest/`, [['limit', 2], ['match[id]', id], ['match[version]', 'all']]);
    assert.equal(list(man['objects']).length, 2);
    assert.equal(man['more'], true);
    const man2 = await get(`${collectionUrl}manifest/`, [['limit', 2], ['next', String(man['next'])], ['match[id]', id], ['match[version]', 'all']]);
    assert.equal(list(man2['objects']).length, 1);
    assert.equal(man2['more'], false);

    // delete_object(obj_id, version="first"): DELETE with Accept only; the body is not parsed
    const del = await raw(s.base, 'DELETE', `/api1/collections/${COL_OPTIONAL}/objects/${id}/?${pyUrlencode([['match[version]', 'first']])}`, {
      Accept: TAXII21,
      Authorization: auth,
      'User-Agent': 'python-requests/2.31.0',
      ...REQUESTS_DEFAULTS,
    });
    assert.equal(del.status, 200, del.text);
    assert.equal(list((await get(`${collectionUrl}objects/${id}/versions/`))['versions']).length, 2);
  });

  it('ApiRoot.get_status(id) and a reader (can_write false) refused with 403 on add_objects', async () => {
    const st = await post(`${s.base}/api1/collections/${COL_OFF}/objects/`, { objects: [stixIndicator(9)] });
    const again = await get(`${s.base}/api1/status/${String(st['id'])}/`);
    assertValidStatus(again);
    assert.deepEqual(again, st);
    const r = await raw(s.base, 'POST', `/api1/collections/${COL_OFF}/objects/`, { Accept: TAXII21, 'Content-Type': TAXII21, Authorization: AUTH.bob }, JSON.stringify({ objects: [stixIndicator(10)] }));
    assert.equal(r.status, 403);
    assert.ok(taxii2clientAcceptsContentType(r.headers['content-type']), 'errors carry the TAXII media type too');
  });
});
