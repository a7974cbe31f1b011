/**
 * TAXII 2.1 server over real HTTP: every endpoint, every filter, every error code, pagination.
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import { integrityPolicySentence, type TaxiiServer } from '../../lib/taxii/server';
import {
  AUTH,
  COL_ANON,
  COL_MAIN,
  COL_SECRET,
  COL_TRUST,
  TAXII,
  indicator,
  list,
  malware,
  obj,
  post,
  request,
  startTaxii,
  type Reply,
  type Running,
} from './helpers';
import { makeStore, type TestStore } from './stores';

const MICROS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function assertTaxiiError(r: Reply, status: number, descriptionPart?: RegExp): Record<string, unknown> {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  assert.equal(r.headers['content-type'], TAXII);
  const e = obj(r.json);
  assert.equal(typeof e['title'], 'string');
  assert.equal(e['http_status'], String(status));
  if (descriptionPart) assert.match(String(e['description']), descriptionPart);
  return e;
}

describe('TAXII server: resources and errors', function () {
  let ts: TestStore;
  let run: Running;
  let base: string;

  before(async () => {
    ts = await makeStore();
    ({ run } = await startTaxii(ts.store));
    base = run.base;
  });
  after(async () => {
    await run.close();
    await ts.dispose();
  });

  it('serves discovery with the exact TAXII media type, default and api_roots (with or without trailing slash)', async () => {
    for (const path of ['/taxii2/', '/taxii2']) {
      const r = await request(base, 'GET', path, { auth: AUTH.bob });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], TAXII);
      assert.deepEqual(r.json, {
        title: 'SETS test TAXII server',
        description: 'server under test',
        contact: 'cti@example.org',
        default: '/api1/',
        api_roots: ['/api1/', '/trust/group/'],
      });
    }
  });

  it('serves API roots, including a root whose name has two path segments', async () => {
    const r = await request(base, 'GET', '/api1/', { auth: AUTH.bob });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {
      title: 'API root one',
      description: 'first root',
      versions: [TAXII],
      max_content_length: 65536,
    });
    const n = await request(base, 'GET', '/trust/group', { auth: AUTH.bob });
    assert.equal(n.status, 200);
    assert.equal(obj(n.json)['title'], 'Nested API root');
    assert.equal(obj(n.json)['max_content_length'], 10 * 1024 * 1024);
    const e = await request(base, 'GET', '/trust/group/collections/', { auth: AUTH.bob });
    assert.deepEqual(e.json, {});
  });

  it('lists collections with can_read / can_write computed for the caller', async () => {
    const a = await request(base, 'GET', '/api1/collections/', { auth: AUTH.alice });
    assert.equal(a.status, 200);
    const cols = list(obj(a.json)['collections']).map(obj);
    assert.deepEqual(
      cols.map((c) => [c['id'], c['can_read'], c['can_write']]),
      [
        [COL_MAIN, true, true],
        [COL_TRUST, true, true],
        [COL_ANON, true, true],
      ],
      'a collection the caller can neither read nor write is not listed (issue 11)',
    );
    assert.deepEqual(cols[0], {
      id: COL_MAIN,
      title: 'Main',
      description: integrityPolicySentence('required'),
      alias: 'main',
      can_read: true,
      can_write: true,
      media_types: ['application/stix+json;version=2.1'],
    });
    const b = await request(base, 'GET', '/api1/collections/', { auth: AUTH.bob });
    assert.deepEqual(
      list(obj(b.json)['collections']).map(obj).map((c) => [c['can_read'], c['can_write']]),
      [
        [true, false],
        [true, false],
        [true, false],
      ],
    );
  });

  it('serves one collection by id or by alias; 403 for a caller with neither role', async () => {
    const byId = await request(base, 'GET', `/api1/collections/${COL_MAIN}/`, { auth: AUTH.bob });
    assert.equal(byId.status, 200);
    assert.equal(obj(byId.json)['id'], COL_MAIN);
    const byAlias = await request(base, 'GET', '/api1/collections/main', { auth: AUTH.bob });
    assert.deepEqual(byAlias.json, byId.json);
    assertTaxiiError(await request(base, 'GET', `/api1/collections/${COL_SECRET}/`, { auth: AUTH.bob }), 403, /bob may not access/);
  });

  it('answers 404 with a TAXII error for unknown API roots, collections, objects, statuses and paths', async () => {
    assertTaxiiError(await request(base, 'GET', '/nope/', { auth: AUTH.bob }), 404);
    assertTaxiiError(await request(base, 'GET', '/api1/collections/nope/', { auth: AUTH.bob }), 404, /no collection "nope"/);
    assertTaxiiError(await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/indicator--${randomUUID()}/`, { auth: AUTH.bob }), 404, /no object/);
    assertTaxiiError(await request(base, 'GET', `/api1/status/${randomUUID()}/`, { auth: AUTH.bob }), 404, /no status/);
    assertTaxiiError(await request(base, 'GET', `/api1/collections/${COL_MAIN}/whatever/`, { auth: AUTH.bob }), 404);
    assertTaxiiError(await request(base, 'GET', '/api1/%E0%A4%A/', { auth: AUTH.bob }), 404);
  });

  it('answers 405 with Allow for an unsupported method', async () => {
    const r = await request(base, 'PUT', `/api1/collections/${COL_MAIN}/objects/`, { auth: AUTH.alice, body: '{}' });
    assertTaxiiError(r, 405);
    assert.equal(r.headers['allow'], 'GET, HEAD, POST');
    const d = await request(base, 'DELETE', `/api1/collections/${COL_MAIN}/`, { auth: AUTH.alice });
    assertTaxiiError(d, 405);
  });

  it('negotiates Accept: 406 unless a TAXII 2.1 type is admitted', async () => {
    for (const accept of ['application/json', 'application/taxii+json;version=2.0', 'text/html', 'application/taxii+json;version=2.1;q=0']) {
      assertTaxiiError(await request(base, 'GET', '/taxii2/', { auth: AUTH.bob, accept }), 406, /Accept/);
    }
    for (const accept of [null, '*/*', 'application/*', 'application/taxii+json', 'application/taxii+json; version=2.1', 'text/html, application/taxii+json;version=2.1;q=0.5']) {
      const r = await request(base, 'GET', '/taxii2/', { auth: AUTH.bob, accept });
      assert.equal(r.status, 200, `Accept ${accept}: ${r.text}`);
    }
  });

  it('refuses requests without credentials with 401, WWW-Authenticate Basic and a TAXII body; allows anonymous reads where configured', async () => {
    const r = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/`);
    assertTaxiiError(r, 401);
    assert.match(String(r.headers['www-authenticate']), /^Basic realm="SETS test"/);
    // anonymous read: discovery, api root and the public collection
    assert.equal((await request(base, 'GET', '/taxii2/')).status, 200);
    assert.equal((await request(base, 'GET', '/api1/')).status, 200);
    assert.equal((await request(base, 'GET', `/api1/collections/${COL_ANON}/objects/`)).status, 200);
    const cols = list(obj((await request(base, 'GET', '/api1/collections/')).json)['collections']).map(obj);
    assert.deepEqual(cols.map((c) => [c['id'], c['can_read']]), [[COL_ANON, true]], 'anonymous callers see only what they may read');
    // anonymous never writes
    const w = await post(base, COL_ANON, [indicator()], '');
    assertTaxiiError(w, 401);
  });

  it('checks Basic credentials (scheme case-insensitive) and refuses wrong ones or unknown schemes with 401', async () => {
    const lower = AUTH.bob.replace(/^Basic/, 'basic');
    const upper = AUTH.bob.replace(/^Basic/, 'BASIC');
    assert.equal((await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/`, { auth: lower })).status, 200);
    assert.equal((await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/`, { auth: upper })).status, 200);
    const wrong = 'Basic ' + Buffer.from('bob:wrong').toString('base64');
    assertTaxiiError(await request(base, 'GET', '/taxii2/', { auth: wrong }), 401, /invalid user name or password/);
    const nobody = 'Basic ' + Buffer.from('mallory:x').toString('base64');
    assertTaxiiError(await request(base, 'GET', '/taxii2/', { auth: nobody }), 401);
    assertTaxiiError(await request(base, 'GET', '/taxii2/', { auth: 'Basic !!!' }), 401, /malformed/);
    assertTaxiiError(await request(base, 'GET', '/taxii2/', { auth: 'Digest username="bob"' }), 401, /unsupported authentication scheme/);
    assertTaxiiError(await request(base, 'GET', '/taxii2/', { auth: 'Bearer abc.def.ghi' }), 401, /does not accept bearer/);
  });

  it('answers 403 to a caller lacking the role (read, write, delete)', async () => {
    assertTaxiiError(await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/`, { auth: AUTH.carol }), 403, /carol may not read/);
    assertTaxiiError(await request(base, 'GET', `/api1/collections/${COL_MAIN}/manifest/`, { auth: AUTH.carol }), 403);
    assertTaxiiError(await post(base, COL_MAIN, [indicator()], AUTH.bob), 403, /bob may not write/);
    assertTaxiiError(await request(base, 'DELETE', `/api1/collections/${COL_MAIN}/objects/indicator--${randomUUID()}/`, { auth: AUTH.bob }), 403);
  });
});

describe('TAXII server: add objects and request bodies', function () {
  let ts: TestStore;
  let run: Running;
  let base: string;
  let server: TaxiiServer;

  before(async () => {
    ts = await makeStore();
    ({ run, server } = await startTaxii(ts.store));
    base = run.base;
  });
  after(async () => {
    await run.close();
    await ts.dispose();
  });

  it('accepts an envelope with 202 and a pending status resource (µs timestamps), readable at status/', async () => {
    const a = indicator();
    const b = malware();
    const r = await post(base, COL_MAIN, [a, b]);
    assert.equal(r.status, 202, r.text);
    assert.equal(r.headers['content-type'], TAXII);
    const st = obj(r.json);
    assert.match(String(st['id']), /^[0-9a-f-]{36}$/);
    assert.equal(st['status'], 'pending');
    assert.match(String(st['request_timestamp']), MICROS);
    assert.equal(st['total_count'], 2);
    assert.equal(st['pending_count'], 2);
    assert.equal(st['success_count'], 0);
    assert.equal(st['failure_count'], 0);
    assert.equal('successes' in st, false, 'no empty lists');
    assert.deepEqual(list(st['pendings']).map((d) => obj(d)['id']), [a['id'], b['id']]);
    const g = await request(base, 'GET', `/api1/status/${String(st['id'])}/`, { auth: AUTH.alice });
    assert.equal(g.status, 200);
    assert.deepEqual(g.json, st);
    assert.ok(server.settings.maxPageSize > 0);
  });

  it('reports per-object problems as failures, not HTTP errors, and stores the valid ones', async () => {
    const good = indicator();
    const r = await post(base, COL_MAIN, [good, { type: 'indicator', id: 'nope' }, 42, { ...indicator(), spec_version: '2.0' }]);
    assert.equal(r.status, 202, r.text);
    const st = obj(r.json);
    assert.equal(st['total_count'], 4);
    assert.equal(st['pending_count'], 1);
    assert.equal(st['failure_count'], 3);
    const fails = list(st['failures']).map(obj);
    assert.equal(fails[0]['id'], 'nope');
    assert.match(String(fails[0]['message']), /invalid STIX/);
    assert.equal(fails[1]['id'], 'objects[2]');
    assert.match(String(fails[1]['message']), /JSON object/);
    assert.match(String(fails[2]['message']), /spec_version/);
    const back = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(good['id'])}/`, { auth: AUTH.bob });
    assert.equal(back.status, 200);
  });

  it('accepts a STIX bundle posted as the envelope (only objects is read)', async () => {
    const r = await request(base, 'POST', `/api1/collections/${COL_MAIN}/objects/`, {
      auth: AUTH.alice,
      headers: { 'Content-Type': TAXII },
      body: JSON.stringify({ type: 'bundle', id: `bundle--${randomUUID()}`, objects: [indicator()] }),
    });
    assert.equal(r.status, 202);
    assert.equal(obj(r.json)['total_count'], 1);
  });

  it('answers 415 for a missing or non-TAXII Content-Type, or a compressed body', async () => {
    const body = JSON.stringify({ objects: [indicator()] });
    const url = `/api1/collections/${COL_MAIN}/objects/`;
    assertTaxiiError(await request(base, 'POST', url, { auth: AUTH.alice, body }), 415, /no Content-Type/);
    for (const ct of ['application/json', 'application/stix+json;version=2.1', 'application/taxii+json;version=2.0']) {
      assertTaxiiError(await request(base, 'POST', url, { auth: AUTH.alice, body, headers: { 'Content-Type': ct } }), 415, /not supported/);
    }
    assertTaxiiError(
      await request(base, 'POST', url, { auth: AUTH.alice, body, headers: { 'Content-Type': TAXII, 'Content-Encoding': 'gzip' } }),
      415,
      /Content-Encoding/,
    );
    // lenient spelling is fine
    const ok = await request(base, 'POST', url, { auth: AUTH.alice, body, headers: { 'Content-Type': 'Application/TAXII+json; version="2.1"; charset=utf-8' } });
    assert.equal(ok.status, 202, ok.text);
  });

  it('answers 400 for invalid JSON and 422 for bodies that are not envelopes', async () => {
    const url = `/api1/collections/${COL_MAIN}/objects/`;
    const send = (body: string): Promise<Reply> => request(base, 'POST', url, { auth: AUTH.alice, body, headers: { 'Content-Type': TAXII } });
    assertTaxiiError(await send('{"objects": ['), 400, /not valid JSON/);
    assertTaxiiError(await send(''), 400, /not valid JSON/);
    assertTaxiiError(await send('[1,2]'), 422, /envelope/);
    assertTaxiiError(await send('"x"'), 422, /envelope/);
    assertTaxiiError(await send('{"more": false}'), 422, /no "objects"/);
    assertTaxiiError(await send('{"objects": {"a": 1}}'), 422, /must be a list/);
    assertTaxiiError(await send('{"objects": []}'), 422, /empty/);
  });

  it('answers 413 at once for a Content-Length above max_content_length, without waiting for the body', async () => {
    // the client declares 10 MB but sends only a few bytes and waits: a server that read the body would hang
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(run.port, '127.0.0.1', () => {
        sock.write(
          `POST /api1/collections/${COL_MAIN}/objects/ HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\n` +
            `Authorization: ${AUTH.alice}\r\nContent-Length: 10000000\r\n\r\n{"objects": [`,
        );
      });
      let data = '';
      sock.on('data', (d: Buffer) => {
        data += d.toString('utf8');
        if (data.includes('\r\n\r\n') && /"http_status":"413"/.test(data)) {
          sock.destroy();
          resolve(data);
        }
      });
      sock.on('error', reject);
      sock.setTimeout(10_000, () => reject(new Error('no 413 before timeout: ' + data)));
    });
    assert.match(reply, /^HTTP\/1\.1 413 /);
    assert.match(reply, /content-type: application\/taxii\+json;version=2\.1/i);
    assert.match(reply, /max_content_length \(65536 octets; Content-Length 10000000\)/);
  });

  it('answers 413 for a chunked body that grows past max_content_length (decided on bytes read)', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(run.port, '127.0.0.1', () => {
        sock.write(
          `POST /api1/collections/${COL_MAIN}/objects/ HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\n` +
            `Authorization: ${AUTH.alice}\r\nTransfer-Encoding: chunked\r\n\r\n`,
        );
        const chunk = ' '.repeat(16 * 1024);
        let sent = 0;
        const pump = (): void => {
          // keep sending (well past the limit) until the server answers
          if (sent > 40 || sock.destroyed) return;
          sent++;
          sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`, () => setImmediate(pump));
        };
        pump();
      });
      let data = '';
      sock.on('data', (d: Buffer) => {
        data += d.toString('utf8');
        if (/"http_status":"413"/.test(data)) {
          sock.destroy();
          resolve(data);
        }
      });
      sock.on('error', (e: NodeJS.ErrnoException) => (data.includes('413') ? resolve(data) : e.code === 'EPIPE' || e.code === 'ECONNRESET' ? resolve(data) : reject(e)));
      sock.on('close', () => resolve(data));
      sock.setTimeout(10_000, () => reject(new Error('no 413 before timeout')));
    });
    assert.match(reply, /^HTTP\/1\.1 413 /);
    assert.match(reply, /more than 65536 octets received/);
  });

  it('does not answer 413 for a body of exactly max_content_length octets, sent chunked', async () => {
    const env = JSON.stringify({ objects: [indicator()] });
    const padded = env + ' '.repeat(65536 - Buffer.byteLength(env));
    assert.equal(Buffer.byteLength(padded), 65536);
    const r = await request(base, 'POST', `/api1/collections/${COL_MAIN}/objects/`, {
      auth: AUTH.alice,
      headers: { 'Content-Type': TAXII, 'Transfer-Encoding': 'chunked' },
      body: padded,
    });
    assert.equal(r.status, 202, r.text);
    const over = await request(base, 'POST', `/api1/collections/${COL_MAIN}/objects/`, {
      auth: AUTH.alice,
      headers: { 'Content-Type': TAXII },
      body: padded + ' ',
    });
    assertTaxiiError(over, 413);
  });
});

describe('TAXII server: reading with filters and pagination', function () {
  let ts: TestStore;
  let run: Running;
  let base: string;
  const i1 = `indicator--${randomUUID()}`;
  const i2 = `indicator--${randomUUID()}`;
  const m1 = `malware--${randomUUID()}`;
  const V1 = '2024-01-01T00:00:00.000Z';
  const V2 = '2024-02-01T00:00:00.000Z';
  const V3 = '2024-03-01T00:00:00.5Z';
  const bulk: string[] = [];
  const url = (p = ''): string => `/api1/collections/${COL_TRUST}/${p}`;
  const get = (p: string): Promise<Reply> => request(base, 'GET', url(p), { auth: AUTH.bob });

  before(async () => {
    ts = await makeStore();
    ({ run } = await startTaxii(ts.store));
    base = run.base;
    // added in this order: i1 v1, i2, m1, i1 v2, i1 v3, then 7 bulk indicators
    for (const o of [indicator(i1, V1), indicator(i2), malware(m1), indicator(i1, V2), indicator(i1, V3)]) {
      const r = await post(base, COL_TRUST, [o]);
      assert.equal(r.status, 202, r.text);
      assert.equal(obj(r.json)['status'], 'complete', 'trust collection completes at once');
    }
    const more = Array.from({ length: 7 }, () => indicator());
    for (const o of more) bulk.push(String(o['id']));
    assert.equal((await post(base, COL_TRUST, more)).status, 202);
  });
  after(async () => {
    await run.close();
    await ts.dispose();
  });

  it('GET objects: latest version of each object, oldest first, with X-TAXII-Date-Added-First/Last in µs', async () => {
    const r = await get('objects/');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], TAXII);
    const body = obj(r.json);
    assert.equal(body['more'], false);
    assert.equal('next' in body, false);
    const objects = list(body['objects']).map(obj);
    assert.deepEqual(
      objects.map((o) => o['id']),
      [i2, m1, i1, ...bulk],
    );
    assert.equal(objects[2]['modified'], V3);
    const first = String(r.headers['x-taxii-date-added-first']);
    const last = String(r.headers['x-taxii-date-added-last']);
    assert.match(first, MICROS);
    assert.match(last, MICROS);
    assert.ok(first < last);
  });

  it('empty results are {} without date headers', async () => {
    const r = await request(base, 'GET', `/api1/collections/${COL_ANON}/objects/`, { auth: AUTH.bob });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {});
    assert.equal(r.headers['x-taxii-date-added-first'], undefined);
    const m = await request(base, 'GET', `/api1/collections/${COL_ANON}/manifest/`, { auth: AUTH.bob });
    assert.deepEqual(m.json, {});
  });

  it('match[type], match[id] (OR within, AND across), percent-encoded names', async () => {
    const t = obj((await get('objects/?match[type]=malware')).json);
    assert.deepEqual(list(t['objects']).map((o) => obj(o)['id']), [m1]);
    const both = obj((await get(`objects/?match%5Bid%5D=${i1},${m1}&match%5Btype%5D=malware`)).json);
    assert.deepEqual(list(both['objects']).map((o) => obj(o)['id']), [m1]);
    const ids = obj((await get(`objects/?match[id]=${i1}&match[id]=${i2}`)).json);
    assert.deepEqual(list(ids['objects']).map((o) => obj(o)['id']).sort(), [i1, i2].sort());
  });

  it('match[version]: all, first, last, first+last, explicit timestamps compared as instants', async () => {
    const mods = async (q: string): Promise<unknown[]> => list(obj((await get(`objects/?match[id]=${i1}&${q}`)).json)['objects']).map((o) => obj(o)['modified']);
    assert.deepEqual(await mods('match[version]=all'), [V1, V2, V3]);
    assert.deepEqual(await mods('match[version]=first'), [V1]);
    assert.deepEqual(await mods('match[version]=last'), [V3]);
    assert.deepEqual(await mods('match[version]=first,last'), [V1, V3]);
    assert.deepEqual(await mods('match[version]=2024-02-01T00:00:00Z'), [V2]);
    assert.deepEqual(await mods('match[version]=2024-03-01T00:00:00.500000Z'), [V3]);
    assert.deepEqual(await mods(`match[version]=${encodeURIComponent('2024-02-01T01:00:00+01:00')}`), [V2]);
    const none = await get(`objects/?match[id]=${i1}&match[version]=2020-01-01T00:00:00Z`);
    assert.deepEqual(none.json, {});
  });

  it('match[spec_version]', async () => {
    const a = obj((await get('objects/?match[spec_version]=2.1')).json);
    assert.equal(list(a['objects']).length, 10);
    assert.deepEqual((await get('objects/?match[spec_version]=2.0')).json, {});
    assert.equal(list(obj((await get('objects/?match[spec_version]=2.0,2.1')).json)['objects']).length, 10);
  });

  it('added_after: strictly later date_added, any RFC 3339 spelling (also an unencoded +offset)', async () => {
    const all = await get('objects/?match[version]=all');
    const firstAdded = String(all.headers['x-taxii-date-added-first']);
    const r = await get(`objects/?match[version]=all&added_after=${firstAdded}`);
    const ids = list(obj(r.json)['objects']).map((o) => obj(o)['id']);
    assert.equal(ids.length, 11, 'everything but the first record');
    assert.ok(String(r.headers['x-taxii-date-added-first']) > firstAdded);
    const epoch = await get('objects/?added_after=1970-01-01T01:00:00+01:00');
    assert.equal(list(obj(epoch.json)['objects']).length, 10);
    const epoch2 = await get('objects/?added_after=1970-01-01T01:00:00+01:00'.replace('+', '%2B'));
    assert.deepEqual(epoch2.json, epoch.json);
    assert.deepEqual((await get('objects/?added_after=2999-01-01T00:00:00Z')).json, {});
  });

  it('manifest: id, date_added (µs), version, media_type; same filters', async () => {
    const r = await get(`manifest/?match[id]=${i1}&match[version]=all`);
    assert.equal(r.status, 200);
    const recs = list(obj(r.json)['objects']).map(obj);
    assert.equal(recs.length, 3);
    for (const m of recs) {
      assert.deepEqual(Object.keys(m).sort(), ['date_added', 'id', 'media_type', 'version']);
      assert.equal(m['id'], i1);
      assert.match(String(m['date_added']), MICROS);
      assert.equal(m['media_type'], 'application/stix+json;version=2.1');
    }
    assert.deepEqual(recs.map((m) => Date.parse(String(m['version']))), [V1, V2, V3].map((v) => Date.parse(v)));
    assert.equal(r.headers['x-taxii-date-added-first'], recs[0]['date_added']);
    assert.equal(r.headers['x-taxii-date-added-last'], recs[2]['date_added']);
  });

  it('object GET: latest version by default, match[version]=all, 404 for an unknown object, {} when filters exclude all', async () => {
    const r = await get(`objects/${i1}/`);
    assert.equal(r.status, 200);
    assert.deepEqual(list(obj(r.json)['objects']).map((o) => obj(o)['modified']), [V3]);
    assert.match(String(r.headers['x-taxii-date-added-last']), MICROS);
    const all = await get(`objects/${i1}?match[version]=all`);
    assert.equal(list(obj(all.json)['objects']).length, 3);
    assertTaxiiError(await get(`objects/indicator--${randomUUID()}/`), 404);
    const excluded = await get(`objects/${i1}/?match[version]=1999-01-01T00:00:00Z`);
    assert.equal(excluded.status, 200);
    assert.deepEqual(excluded.json, {});
  });

  it('versions: every version of one object', async () => {
    const r = await get(`objects/${i1}/versions/`);
    assert.equal(r.status, 200);
    const body = obj(r.json);
    assert.equal(body['more'], false);
    assert.deepEqual(list(body['versions']).map((v) => Date.parse(String(v))), [V1, V2, V3].map((v) => Date.parse(v)));
    assert.match(String(r.headers['x-taxii-date-added-first']), MICROS);
    assertTaxiiError(await get(`objects/indicator--${randomUUID()}/versions/`), 404);
  });

  it('pages with limit + next (signed tokens), and next works without limit', async () => {
    const seen: string[] = [];
    let r = await get('objects/?match[version]=all&limit=5');
    let body = obj(r.json);
    assert.equal(body['more'], true);
    assert.equal(typeof body['next'], 'string');
    seen.push(...list(body['objects']).map((o) => `${obj(o)['id']}@${obj(o)['modified']}`));
    // second page: same filters, a different limit (clients may shrink it)
    r = await get(`objects/?match[version]=all&limit=3&next=${encodeURIComponent(String(body['next']))}`);
    body = obj(r.json);
    assert.equal(list(body['objects']).length, 3);
    seen.push(...list(body['objects']).map((o) => `${obj(o)['id']}@${obj(o)['modified']}`));
    // the rest: next without limit
    r = await get(`objects/?match[version]=all&next=${encodeURIComponent(String(body['next']))}`);
    body = obj(r.json);
    assert.equal(body['more'], false);
    assert.equal('next' in body, false);
    seen.push(...list(body['objects']).map((o) => `${obj(o)['id']}@${obj(o)['modified']}`));
    assert.equal(seen.length, 12);
    assert.equal(new Set(seen).size, 12);
  });

  it('pages manifest and versions too', async () => {
    const m = obj((await get('manifest/?limit=4')).json);
    assert.equal(list(m['objects']).length, 4);
    const m2 = obj((await get(`manifest/?next=${encodeURIComponent(String(m['next']))}`)).json);
    assert.equal(list(m2['objects']).length, 6);
    const v = obj((await get(`objects/${i1}/versions/?limit=2`)).json);
    assert.equal(v['more'], true);
    const v2 = obj((await get(`objects/${i1}/versions/?next=${encodeURIComponent(String(v['next']))}`)).json);
    assert.equal(list(v2['versions']).length, 1);
    assert.equal(v2['more'], false);
  });

  it('refuses a next token used with different filters, on another endpoint, or tampered with (400)', async () => {
    const first = obj((await get('objects/?match[type]=indicator&limit=2')).json);
    const next = encodeURIComponent(String(first['next']));
    const changed = await get(`objects/?match[type]=malware&next=${next}`);
    assertTaxiiError(changed, 400, /different filters \(changed: match\[type\]\)/);
    const dropped = await get(`objects/?next=${next}`);
    assertTaxiiError(dropped, 400, /changed: match\[type\]/);
    const added = await get(`objects/?match[type]=indicator&added_after=2000-01-01T00:00:00Z&next=${next}`);
    assertTaxiiError(added, 400, /changed: added_after/);
    const elsewhere = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/?match[type]=indicator&next=${next}`, { auth: AUTH.alice });
    assertTaxiiError(elsewhere, 400, /another endpoint/);
    const tampered = String(first['next']).replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
    assertTaxiiError(await get(`objects/?match[type]=indicator&next=${encodeURIComponent(tampered)}`), 400, /not one this server issued/);
    assertTaxiiError(await get('objects/?next=garbage'), 400, /not one this server issued/);
    // same filters in another order / spelling are the same query
    const same = await get(`objects/?match[type]=indicator,indicator&next=${next}`);
    assert.equal(same.status, 200);
  });

  it('refuses bad filter values with 400 and a description naming the parameter', async () => {
    const bad: Array<[string, RegExp]> = [
      ['added_after=yesterday', /added_after "yesterday" is not an RFC 3339 timestamp/],
      ['added_after=2024-02-30T00:00:00Z', /added_after/],
      ['limit=0', /limit must be at least 1/],
      ['limit=-1', /not a positive integer/],
      ['limit=ten', /not a positive integer/],
      ['limit=1&limit=2', /given 2 times/],
      ['match[version]=newest', /match\[version\] value "newest"/],
      ['match[version]=', /match\[version\] is empty/],
      ['match[spec_version]=two', /match\[spec_version\] value "two"/],
      ['match[id]=not-an-id', /not a STIX identifier/],
      ['match[type]=Bad_Type', /not a STIX type/],
      ['match[colour]=red', /unknown filter match\[colour\]/],
    ];
    for (const [q, re] of bad) {
      const e = assertTaxiiError(await get(`objects/?${q}`), 400, re);
      assert.equal(typeof obj(e['details'])['parameter'], 'string');
    }
    assertTaxiiError(await get(`objects/${i1}/versions/?match[id]=${i1}`), 400, /not supported on this endpoint/);
    assertTaxiiError(await get(`objects/${i1}/?match[type]=indicator`), 400, /not supported on this endpoint/);
    // unknown plain parameters are ignored; a limit above the maximum is lowered, not refused
    assert.equal((await get('objects/?_=123')).status, 200);
    const capped = obj((await get('objects/?match[version]=all&limit=100000')).json);
    assert.equal(list(capped['objects']).length, 12);
  });

  it('DELETE erases versions (match[version]) and then the object; 404 when nothing matches', async () => {
    const del = (q = ''): Promise<Reply> => request(base, 'DELETE', url(`objects/${i1}/${q}`), { auth: AUTH.alice });
    const one = await del('?match[version]=first');
    assert.equal(one.status, 200);
    assert.equal(one.headers['content-type'], TAXII);
    assert.equal(one.text, '');
    assert.deepEqual(list(obj((await get(`objects/${i1}/versions/`)).json)['versions']).map((v) => Date.parse(String(v))), [V2, V3].map((v) => Date.parse(v)));
    assertTaxiiError(await del('?limit=3'), 400, /not supported/);
    assert.equal((await del()).status, 200);
    assertTaxiiError(await get(`objects/${i1}/`), 404);
    assertTaxiiError(await del(), 404);
  });
});
