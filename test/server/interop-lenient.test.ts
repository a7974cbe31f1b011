/**
 * Lenient where the spec allows, strict where it matters (docs/interop.md "Leniency"):
 * Accept without `version`, with `q=`/`charset`, `*\/*` -> answered in TAXII 2.1; missing trailing
 * slashes; the Basic scheme in any letter case; API keys (Basic password with any user name,
 * `Token`, `Bearer`), stored hashed; a STIX bundle posted instead of an envelope; an empty `next=`.
 * Never lenient about credentials, body size or STIX validity.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { hashApiKey } from '../../lib/taxii/server';
import { ApiKeyError } from '../../lib/auth/server-apikey';
import { indicator, list, obj } from './helpers';
import { COL_OFF, COL_OPTIONAL, KEYS, basicHeader, objectsOf, raw, startInteropServer, type InteropServer } from './interop-support';

const TAXII21 = 'application/taxii+json;version=2.1';

describe('interop: lenient where the spec allows, strict where it matters', function () {
  let s: InteropServer;
  const alice = basicHeader('alice', 'alice-pw');
  let objectId: string;
  let statusId: string;

  before(async () => {
    s = await startInteropServer();
    const o = indicator();
    objectId = String(o['id']);
    const r = await raw(s.base, 'POST', `/api1/collections/${COL_OFF}/objects/`, { Accept: TAXII21, 'Content-Type': TAXII21, Authorization: alice }, JSON.stringify({ objects: [o] }));
    statusId = String(obj(r.json)['id']);
  });
  after(async () => s.close());

  describe('content negotiation', () => {
    const accepts: Array<[string | undefined, number]> = [
      ['application/taxii+json;version=2.1', 200],
      ['application/taxii+json', 200],
      ['application/taxii+json; version=2.1; q=0.9', 200],
      ['application/taxii+json;version=2.1;charset=utf-8', 200],
      ['application/taxii+json; charset=UTF-8', 200],
      ['APPLICATION/TAXII+JSON; VERSION="2.1"', 200],
      ['*/*', 200],
      ['application/*', 200],
      ['application/json, application/taxii+json;version=2.1;q=0.5', 200],
      ['text/html,application/xhtml+xml,*/*;q=0.8', 200],
      [undefined, 200],
      ['application/taxii+json;version=2.0', 406],
      ['application/vnd.oasis.taxii+json; version=2.0', 406],
      ['application/json', 406],
      ['application/taxii+json;version=2.1;q=0', 406],
    ];
    for (const [accept, status] of accepts) {
      it(`Accept ${accept === undefined ? '(none)' : JSON.stringify(accept)} -> ${status}, answered as ${TAXII21}`, async () => {
        const r = await raw(s.base, 'GET', `/api1/collections/${COL_OFF}/objects/`, { Authorization: alice, ...(accept !== undefined ? { Accept: accept } : {}) });
        assert.equal(r.status, status, r.text);
        assert.equal(r.headers['content-type'], TAXII21);
        if (status === 406) assert.match(String(obj(r.json)['description']), /answers with application\/taxii\+json;version=2\.1 only/);
      });
    }
  });

  it('every endpoint answers without its trailing slash (GET, HEAD, POST, DELETE)', async () => {
    const paths = [
      '/taxii2',
      '/api1',
      '/api1/collections',
      `/api1/collections/${COL_OFF}`,
      `/api1/collections/${COL_OFF}/objects`,
      `/api1/collections/${COL_OFF}/manifest`,
      `/api1/collections/${COL_OFF}/objects/${objectId}`,
      `/api1/collections/${COL_OFF}/objects/${objectId}/versions`,
      `/api1/status/${statusId}`,
      '/api1/collections/plain/objects',
    ];
    for (const p of paths) {
      const r = await raw(s.base, 'GET', p, { Accept: TAXII21, Authorization: alice });
      assert.equal(r.status, 200, `${p}: ${r.text}`);
      assert.equal((await raw(s.base, 'HEAD', p, { Accept: TAXII21, Authorization: alice })).status, 200, `HEAD ${p}`);
    }
    const o = indicator();
    const p = await raw(s.base, 'POST', `/api1/collections/${COL_OFF}/objects`, { Accept: TAXII21, 'Content-Type': TAXII21, Authorization: alice }, JSON.stringify({ objects: [o] }));
    assert.equal(p.status, 202);
    const d = await raw(s.base, 'DELETE', `/api1/collections/${COL_OFF}/objects/${String(o['id'])}`, { Accept: TAXII21, Authorization: alice });
    assert.equal(d.status, 200);
  });

  it('the Basic scheme in any letter case (MISP sends "basic"); the Bearer and Token schemes too', async () => {
    for (const scheme of ['Basic', 'basic', 'BASIC', 'bAsIc']) {
      const r = await raw(s.base, 'GET', '/taxii2/', { Accept: TAXII21, Authorization: basicHeader('bob', 'bob-pw', scheme) });
      assert.equal(r.status, 200, scheme);
    }
    for (const h of [`bearer ${KEYS.feed}`, `BEARER ${KEYS.feed}`, `token ${KEYS.feed}`, `TOKEN ${KEYS.feed}`]) {
      assert.equal((await raw(s.base, 'GET', '/taxii2/', { Accept: TAXII21, Authorization: h })).status, 200, h);
    }
  });

  it('API keys: as the Basic password with any user name (even empty), as Token or Bearer; roles of the key apply', async () => {
    const col = `/api1/collections/${COL_OFF}/objects/`;
    for (const auth of [basicHeader('anything', KEYS.feed), basicHeader('', KEYS.feed), basicHeader('alice', KEYS.feed), `Token ${KEYS.feed}`, `Bearer ${KEYS.feed}`]) {
      const r = await raw(s.base, 'GET', col, { Accept: TAXII21, Authorization: auth });
      assert.equal(r.status, 200, `${auth}: ${r.text}`);
    }
    // the feed key reads only: its roles, not those of the user name it came with
    const w = await raw(s.base, 'POST', col, { Accept: TAXII21, 'Content-Type': TAXII21, Authorization: basicHeader('alice', KEYS.feed) }, JSON.stringify({ objects: [indicator()] }));
    assert.equal(w.status, 403);
    assert.match(String(obj(w.json)['description']), /feed-consumer may not write/);
    const pw = await raw(s.base, 'POST', col, { Accept: TAXII21, 'Content-Type': TAXII21, Authorization: `Token ${KEYS.producer}` }, JSON.stringify({ objects: [indicator()] }));
    assert.equal(pw.status, 202);
  });

  it('API keys are stored hashed and must be long; nothing secret is visible in the server settings', async () => {
    assert.match(hashApiKey(KEYS.feed), /^sha256\$[A-Za-z0-9_-]{43}$/);
    assert.throws(() => hashApiKey('short-key'), (e: unknown) => e instanceof ApiKeyError && /at least 20 characters/.test(e.message));
    assert.throws(() => hashApiKey('a key with spaces in it!!'), /white space/);
    const settings = JSON.stringify(s.server.settings);
    assert.ok(!settings.includes(KEYS.feed) && !settings.includes(KEYS.producer));
  });

  it('never lenient about credentials: wrong password, wrong or truncated key, unknown scheme, garbage -> 401 with a challenge', async () => {
    const bad = [
      basicHeader('alice', 'wrong'),
      basicHeader('nobody', 'alice-pw'),
      basicHeader('x', KEYS.feed.slice(0, -1)),
      `Token ${KEYS.feed}x`,
      `Bearer ${KEYS.producer.toUpperCase()}`,
      'Basic !!!not-base64!!!',
      'Basic',
      `Digest username="alice"`,
      `ApiKey ${KEYS.feed}`,
    ];
    for (const auth of bad) {
      const r = await raw(s.base, 'GET', '/taxii2/', { Accept: TAXII21, Authorization: auth });
      assert.equal(r.status, 401, auth);
      assert.match(String(r.headers['www-authenticate']), /Basic realm=/);
      assert.equal(r.headers['content-type'], TAXII21);
    }
    // no credentials at all: this server has no anonymous readers
    assert.equal((await raw(s.base, 'GET', '/taxii2/', { Accept: TAXII21 })).status, 401);
  });

  it('a STIX bundle posted instead of an envelope: its objects are stored (not the bundle), with the TAXII or the STIX media type', async () => {
    const a = indicator();
    const b = indicator();
    const bundle = { type: 'bundle', id: `bundle--${randomUUID()}`, objects: [a, b] };
    for (const ct of [TAXII21, 'application/stix+json;version=2.1']) {
      const r = await raw(s.base, 'POST', `/api1/collections/${COL_OPTIONAL}/objects/`, { Accept: TAXII21, 'Content-Type': ct, Authorization: alice }, JSON.stringify(bundle));
      assert.equal(r.status, 202, `${ct}: ${r.text}`);
      assert.equal(obj(r.json)['total_count'], 2);
    }
    const got = await raw(s.base, 'GET', `/api1/collections/${COL_OPTIONAL}/objects/?match[id]=${String(a['id'])},${bundle.id}`, { Accept: TAXII21, Authorization: alice });
    assert.deepEqual(objectsOf(got), [a], 'the objects, not the bundle');
  });

  it('never lenient about the body: bad bundles, a lone STIX object, an envelope as STIX, invalid STIX, oversize bodies', async () => {
    const url = `/api1/collections/${COL_OPTIONAL}/objects/`;
    const send = (body: string, ct = TAXII21, extra: Record<string, string> = {}) => raw(s.base, 'POST', url, { Accept: TAXII21, 'Content-Type': ct, Authorization: alice, ...extra }, body);
    const expect = async (p: Promise<{ status: number; json: unknown }>, status: number, re: RegExp): Promise<void> => {
      const r = await p;
      assert.equal(r.status, status, JSON.stringify(r.json));
      assert.match(String(obj(r.json)['description']), re);
    };
    await expect(send(JSON.stringify({ type: 'bundle', id: 'bundle--nope', objects: [indicator()] })), 422, /bundle with an invalid id/);
    await expect(send(JSON.stringify({ type: 'bundle', id: `bundle--${randomUUID()}` })), 422, /bundle has no "objects"/);
    await expect(send(JSON.stringify(indicator())), 422, /single STIX object \(indicator\); wrap it in an envelope/);
    await expect(send(JSON.stringify({ objects: [indicator()] }), 'application/stix+json;version=2.1'), 415, /accepted for a STIX bundle only/);
    await expect(send(JSON.stringify({ objects: [indicator()] }), 'application/json'), 415, /not supported/);
    // invalid STIX is refused per object (failures), never stored
    const bad = { ...indicator(), pattern_type: undefined, id: 'indicator--not-a-uuid' };
    const r = await send(JSON.stringify({ objects: [indicator(), bad] }));
    assert.equal(r.status, 202);
    const st = obj(r.json);
    assert.equal(st['success_count'], 1);
    assert.equal(st['failure_count'], 1);
    assert.match(String(obj(list(st['failures'])[0])['message']), /invalid STIX/);
    // max_content_length (64 KiB) is enforced on declared and on actual sizes
    const big = JSON.stringify({ objects: Array.from({ length: 400 }, () => indicator()) });
    assert.ok(Buffer.byteLength(big) > 64 * 1024);
    await expect(send(big), 413, /max_content_length/);
    await expect(send(big, TAXII21, { 'Transfer-Encoding': 'chunked' }), 413, /max_content_length/);
  });

  it('an empty next= is "no token" (MISP, taxii2-client as_pages after more without next); a bad token is still a 400', async () => {
    const r = await raw(s.base, 'GET', `/api1/collections/${COL_OFF}/objects/?limit=5&next=`, { Accept: TAXII21, Authorization: alice });
    assert.equal(r.status, 200, r.text);
    const t = await raw(s.base, 'GET', `/api1/collections/${COL_OFF}/objects/?limit=5&next=forged.token`, { Accept: TAXII21, Authorization: alice });
    assert.equal(t.status, 400);
  });
});
