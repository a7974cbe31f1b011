/**
 * Conformance: MISP's TAXII 2.1 client side against our server, from MISP's source (MISP/MISP):
 * - app/Model/TaxiiServer.php `queryInstance` (listing collections, browsing objects): CakePHP
 *   HttpSocket with headers `Accept` and `Content-type` both `application/taxii+json;version=2.1`
 *   (a Content-type even on GETs) and `Authorization: basic <api_key>` — the scheme in LOWER case;
 *   the stored api_key is base64("user:password"). URLs are `baseurl . '/' . api_root .
 *   '/collections/'` (a base URL ending in `/` gives `//`), objects with `limit => 50, next => $next`;
 * - app/files/scripts/taxii/taxii_push.py (the push job): `parse_auth` decodes the same api_key
 *   into requests' HTTPBasicAuth; `taxii2client.ApiRoot(baseurl + "/" + api_root)` reads
 *   max_content_length; `make_taxii_envelopes` packs the misp-stix objects into envelope bytes
 *   `{"objects":[...]}` no larger than max_content_length; `Collection.add_objects(...,
 *   wait_for_completion=False)` (its `_verify_can_write` GETs the collection first); failures are
 *   only logged.
 */
import { strict as assert } from 'node:assert';
import { list, obj } from './helpers';
import {
  COL_OPTIONAL,
  COL_REQUIRED,
  KEYS,
  assertValidStatus,
  basicHeader,
  mispEventObjects,
  objectsOf,
  pyJsonDumps,
  raw,
  startInteropServer,
  taxii2clientAcceptsContentType,
  type InteropServer,
} from './interop-support';

const TAXII21 = 'application/taxii+json;version=2.1';

describe('interop: MISP (TaxiiServer.php queryInstance, taxii_push.py) request shapes', function () {
  let s: InteropServer;

  before(async () => {
    s = await startInteropServer();
  });
  after(async () => s.close());

  /** MISP's stored api_key: base64 of "user:password" */
  const apiKeyField = (user: string, pass: string): string => Buffer.from(`${user}:${pass}`).toString('base64');

  /** queryInstance: CakePHP HttpSocket GET */
  const queryInstance = (path: string, apiKey: string) =>
    raw(s.base, 'GET', path, {
      Host: new URL(s.base).host,
      Connection: 'close',
      'User-Agent': 'CakePHP',
      Accept: TAXII21,
      'Content-type': TAXII21,
      Authorization: `basic ${apiKey}`,
    });

  it('lists collections with a lower-case "basic" header and a Content-type on the GET, also under a base URL ending in /', async () => {
    for (const path of ['/api1/collections/', '//api1/collections/']) {
      const r = await queryInstance(path, apiKeyField('alice', 'alice-pw'));
      assert.equal(r.status, 200, r.text);
      const cols = list(obj(r.json)['collections']).map(obj);
      assert.ok(cols.length >= 3 && cols.every((c) => typeof c['id'] === 'string'));
    }
    // an API key issued by this server works in MISP's field as the Basic password, whatever the user name
    const k = await queryInstance('/api1/collections/', apiKeyField('misp', KEYS.producer));
    assert.equal(k.status, 200, k.text);
    // never lenient about the secret itself
    const bad = await queryInstance('/api1/collections/', apiKeyField('alice', 'wrong'));
    assert.equal(bad.status, 401);
    assert.match(String(bad.headers['www-authenticate']), /^Basic realm=/);
  });

  it('taxii_push.py: reads max_content_length, checks the collection, pushes envelopes below it without a 413, does not wait', async () => {
    const auth = basicHeader('misp', KEYS.producer); // HTTPBasicAuth(*b64decode(api_key).split(b':'))
    const pyHeaders = { 'User-Agent': 'taxii2-client/2.3.0', Accept: TAXII21, Authorization: auth, 'Accept-Encoding': 'gzip, deflate', Connection: 'keep-alive' };
    // ApiRoot(baseurl + "/" + api_root) -> "/api1" + "/"
    const root = await raw(s.base, 'GET', '/api1/', pyHeaders);
    assert.equal(root.status, 200);
    assert.ok(taxii2clientAcceptsContentType(root.headers['content-type']));
    const max = Number(obj(root.json)['max_content_length']);
    assert.equal(max, 64 * 1024);
    // Collection(api_root_url + '/collections/' + collection) + "/"; add_objects -> _verify_can_write -> refresh
    const col = await raw(s.base, 'GET', `/api1/collections/${COL_OPTIONAL}/`, pyHeaders);
    assert.equal(obj(col.json)['can_write'], true);

    // make_taxii_envelopes: b'{"objects":[' + serialized objects joined by b',' + b']}', each <= max
    const objects = mispEventObjects(400);
    const envelopes: Buffer[] = [];
    let cur: string[] = [];
    const size = (parts: string[]): number => Buffer.byteLength('{"objects":[' + parts.join(',') + ']}');
    for (const o of objects) {
      const j = pyJsonDumps(o);
      if (cur.length > 0 && size([...cur, j]) > max) {
        envelopes.push(Buffer.from('{"objects":[' + cur.join(',') + ']}'));
        cur = [];
      }
      cur.push(j);
    }
    envelopes.push(Buffer.from('{"objects":[' + cur.join(',') + ']}'));
    assert.ok(envelopes.length >= 2, `${envelopes.length} envelopes`);

    let stored = 0;
    for (const env of envelopes) {
      assert.ok(env.length <= max);
      const r = await raw(s.base, 'POST', `/api1/collections/${COL_OPTIONAL}/objects/`, { Accept: TAXII21, 'Content-Type': TAXII21, 'User-Agent': 'python-requests/2.31.0', Authorization: auth }, env);
      assert.equal(r.status, 202, r.text);
      const st = obj(r.json);
      assertValidStatus(st);
      assert.equal(st['failure_count'], 0, JSON.stringify(st['failures']));
      assert.equal(st['status'], 'complete', 'optional: nothing for MISP to wait for');
      stored += Number(st['success_count']);
    }
    assert.equal(stored, objects.length);

    // what MISP pushed is served at once, unchanged
    const report = objects[1];
    const back = await raw(s.base, 'GET', `/api1/collections/${COL_OPTIONAL}/objects/${String(report['id'])}/`, pyHeaders);
    assert.deepEqual(objectsOf(back), [report]);
  });

  it('a push into a required collection: accepted pending (MISP does not wait); never anchored -> no longer served', async () => {
    const auth = basicHeader('misp', KEYS.producer);
    const objects = mispEventObjects(3);
    const env = Buffer.from('{"objects":[' + objects.map(pyJsonDumps).join(',') + ']}');
    const r = await raw(s.base, 'POST', `/api1/collections/${COL_REQUIRED}/objects/`, { Accept: TAXII21, 'Content-Type': TAXII21, Authorization: auth }, env);
    assert.equal(r.status, 202);
    const st = obj(r.json);
    assertValidStatus(st);
    assert.equal(st['status'], 'pending');
    assert.equal(st['failure_count'], 0, 'taxii_push.py logs nothing');
    // the SETS verifier finds no anchor by the deadline
    for (const o of objects) {
      const v = await s.server.integrityOf(COL_REQUIRED, String(o['id']));
      assert.ok(v);
      await s.server.recordVerification(COL_REQUIRED, v.id, v.version, 'not-anchored', 'deadline passed');
    }
    const gone = await raw(s.base, 'GET', `/api1/collections/${COL_REQUIRED}/objects/${String(objects[0]['id'])}/`, { Accept: TAXII21, Authorization: auth });
    assert.equal(gone.status, 404);
  });

  it('getObjects browses 50 at a time with next (an empty next= on the first call is accepted); getObject reads one', async () => {
    const key = apiKeyField('alice', 'alice-pw');
    const base = `/api1/collections/${COL_OPTIONAL}/objects/`;
    const seen: string[] = [];
    let r = await queryInstance(`${base}?limit=50&next=`, key);
    assert.equal(r.status, 200, r.text);
    let pages = 1;
    seen.push(...objectsOf(r).map((o) => String(o['id'])));
    while (obj(r.json)['more'] === true) {
      r = await queryInstance(`${base}?limit=50&next=${encodeURIComponent(String(obj(r.json)['next']))}`, key);
      assert.equal(r.status, 200, r.text);
      seen.push(...objectsOf(r).map((o) => String(o['id'])));
      assert.ok(++pages < 50);
    }
    assert.equal(new Set(seen).size, seen.length);
    assert.ok(seen.length >= 402, `${seen.length} objects browsed`);
    const one = await queryInstance(`${base}${seen[0]}/`, key);
    assert.equal(one.status, 200);
    assert.equal(objectsOf(one)[0]['id'], seen[0]);
  });
});
