/**
 * Conformance: Cortex XSOAR's "TAXII 2 Feed" integration (FeedTAXII2 on TAXII2ApiModule) against our
 * server, from its source (demisto/content, Packs/ApiModules/Scripts/TAXII2ApiModule/TAXII2ApiModule.py
 * and Packs/FeedTAXII2/Integrations/FeedTAXII2/FeedTAXII2.py):
 * - `Taxii2FeedClient.__init__`: user `_api_token_key` -> taxii2-client `TokenAuth` (`Authorization:
 *   Token <password>`); user `_header:<Name>` -> that header set to the password on the session;
 *   otherwise requests' HTTPBasicAuth;
 * - `init_server`/`init_roots`: `v21.Server(url)` (discovery, taxii2-client headers), API root = the
 *   configured name, else discovery's `default`, else the first; on a 406 it retries as TAXII 2.0;
 *   `init_collections` lists the collections; `init_collection_to_fetch` matches the configured
 *   collection by TITLE;
 * - `poll_collection`: `v21.as_pages(get_objects, per_request=limit_per_request (100), added_after=...,
 *   type=[objects_to_fetch..., "relationship"])` -> `limit`, `added_after`, `match[type]`, then `next`;
 * - FeedTAXII2 `fetch_one_collection`: the next run's added_after is the newest STIX `modified` it
 *   parsed (`last_fetched_indicator__modified`), not a date_added: records are fetched again until
 *   something newer is modified — duplicates (XSOAR merges indicators), no loss. Checked below.
 */
import { strict as assert } from 'node:assert';
import { list, obj, post as postEnvelope } from './helpers';
import { COL_OPTIONAL, KEYS, basicHeader, objectsOf, pyUrlencode, raw, startInteropServer, stixIndicator, taxii2clientAcceptsContentType, type InteropServer } from './interop-support';

const TAXII21 = 'application/taxii+json;version=2.1';

describe('interop: Cortex XSOAR TAXII 2 Feed (TAXII2ApiModule) request shapes', function () {
  let s: InteropServer;

  before(async () => {
    s = await startInteropServer();
  });
  after(async () => s.close());

  /** the session headers of XSOAR's _HTTPConnection for each way of configuring credentials */
  const credentials = {
    apiToken: { Authorization: `Token ${KEYS.feed}` }, // username "_api_token_key"
    header: { Authorization: `Bearer ${KEYS.feed}` }, // username "_header:Authorization", password "Bearer <key>"
    basic: { Authorization: basicHeader('bob', 'bob-pw') },
    keyAsPassword: { Authorization: basicHeader('xsoar', KEYS.feed) },
  };

  function client(auth: Record<string, string>) {
    const get = async (path: string, params: Array<[string, string | number]> = []) => {
      const q = params.length > 0 ? `?${pyUrlencode(params)}` : '';
      const r = await raw(s.base, 'GET', path + q, { 'User-Agent': 'taxii2-client/2.3.0', Accept: TAXII21, 'Accept-Encoding': 'gzip, deflate', ...auth });
      return r;
    };
    return {
      get,
      /** initialise(): discovery -> default API root -> collections -> the one titled `title` */
      async initialise(title: string): Promise<string> {
        const d = await get('/taxii2/');
        assert.equal(d.status, 200, d.text);
        assert.ok(taxii2clientAcceptsContentType(d.headers['content-type']));
        const disc = obj(d.json);
        const rootUrl = new URL(String(disc['default'] ?? list(disc['api_roots'])[0]), `${s.base}/taxii2/`);
        assert.equal(rootUrl.pathname.split('/').at(-2), 'api1', 'api_root_name = url.split("/")[-2]');
        const cols = await get(`${rootUrl.pathname}collections/`);
        assert.equal(cols.status, 200);
        const c = list(obj(cols.json)['collections']).map(obj).find((x) => x['title'] === title);
        assert.ok(c, `collection titled ${title}`);
        return `${rootUrl.pathname}collections/${String(c['id'])}/`;
      },
      /** build_iterator -> poll_collection -> v21.as_pages; returns the objects of every page */
      async poll(collectionPath: string, addedAfter: string, types: string[], perRequest = 100): Promise<{ objects: Record<string, unknown>[]; queries: string[] }> {
        const filters: Array<[string, string]> = [['added_after', addedAfter], ['match[type]', types.join(',')]];
        const queries: string[] = [];
        let per = perRequest;
        const page = async (extra: Array<[string, string | number]>) => {
          const params: Array<[string, string | number]> = [['limit', per], ...extra, ...filters];
          queries.push(pyUrlencode(params));
          const r = await get(`${collectionPath}objects/`, params);
          assert.equal(r.status, 200, r.text);
          return r;
        };
        let r = await page([]);
        const objects = [...objectsOf(r)];
        if (obj(r.json)['more'] === true && objects.length !== per) per = objects.length;
        for (let i = 0; obj(r.json)['more'] === true; i++) {
          assert.ok(i < 20, 'paging ends');
          r = await page([['next', String(obj(r.json)['next'] ?? '')]]);
          objects.push(...objectsOf(r));
        }
        return { objects, queries };
      },
    };
  }

  /** FeedTAXII2: the newest `modified` among the parsed objects */
  const lastModified = (objects: Record<string, unknown>[]): string => objects.map((o) => String(o['modified'])).sort().at(-1) ?? '';

  it('every credential style XSOAR offers is accepted (Token, custom Authorization header, Basic, API key as password); wrong ones are 401', async () => {
    for (const [how, auth] of Object.entries(credentials)) {
      const r = await client(auth).get('/taxii2/');
      assert.equal(r.status, 200, `${how}: ${r.text}`);
    }
    for (const auth of [{ Authorization: 'Token wrong-token-000000000000000' }, { Authorization: basicHeader('_api_token_key', 'wrong-token-000000000000000') }]) {
      const r = await client(auth).get('/taxii2/');
      assert.equal(r.status, 401);
    }
  });

  it('answers TAXII 2.1 to its first request, so its TAXII 2.0 fallback (on 406) is never needed; a 2.0 Accept is a clear 406', async () => {
    const r = await client(credentials.apiToken).get('/taxii2/');
    assert.equal(r.status, 200);
    const v20 = await raw(s.base, 'GET', '/taxii2/', { Accept: 'application/vnd.oasis.taxii+json; version=2.0', ...credentials.apiToken });
    assert.equal(v20.status, 406);
    assert.equal(v20.headers['content-type'], TAXII21);
  });

  it('fetches by collection title with as_pages (limit, added_after, match[type]) and resumes from the newest modified: no loss', async () => {
    const xs = client(credentials.apiToken);
    const colPath = await xs.initialise('SETS optional');
    assert.equal(colPath, `/api1/collections/${COL_OPTIONAL}/`);

    const objs = Array.from({ length: 130 }, (_, i) => stixIndicator(i, new Date(Date.UTC(2024, 2, 1, 10, i)).toISOString()));
    for (let i = 0; i < objs.length; i += 50) assert.equal((await postEnvelope(s.base, COL_OPTIONAL, objs.slice(i, i + 50))).status, 202);

    // first fetch: first_fetch "3 months" before -> _format_datetime without sub-seconds
    const run1 = await xs.poll(colPath, '2024-01-01T00:00:00Z', ['indicator', 'report', 'relationship']);
    assert.deepEqual(run1.objects.map((o) => o['id']), objs.map((o) => o['id']), 'every object once, in order');
    assert.equal(run1.queries[0], `limit=100&added_after=2024-01-01T00%3A00%3A00Z&match%5Btype%5D=indicator%2Creport%2Crelationship`);
    assert.match(run1.queries[1], /^limit=50&next=[^&]+&added_after=2024-01-01T00%3A00%3A00Z&match%5Btype%5D=indicator%2Creport%2Crelationship$/, 'limit lowered to the page the server returned');

    // next run: added_after = newest STIX modified seen (2024-03-01T12:09:00.000Z), not a date_added
    const since = lastModified(run1.objects);
    assert.equal(since, '2024-03-01T12:09:00.000Z');
    const fresh = Array.from({ length: 10 }, (_, i) => stixIndicator(200 + i, '2024-03-02T00:00:00.000Z'));
    assert.equal((await postEnvelope(s.base, COL_OPTIONAL, fresh)).status, 202);
    const run2 = await xs.poll(colPath, since, ['indicator', 'report', 'relationship']);
    const got2 = run2.objects.map((o) => String(o['id']));
    for (const o of fresh) assert.ok(got2.includes(String(o['id'])), 'new objects arrive');
    // XSOAR's resume point is a modified time, older than our date_added: earlier records come again (duplicates, no loss)
    assert.equal(got2.length, objs.length + fresh.length);
    assert.equal(new Set(got2).size, got2.length, 'no duplicates within one fetch');
  });
});
