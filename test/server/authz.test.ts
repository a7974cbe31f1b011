/**
 * Issue 11 item 4 (authorisation leaks): the collections list names only what the caller may
 * read or write; a status resource is readable only by the identity that created it.
 */
import { strict as assert } from 'node:assert';
import { AUTH, COL_ANON, COL_MAIN, COL_SECRET, COL_TRUST, indicator, list, obj, post, request, startTaxii, type Running } from './helpers';
import { MemoryStore } from './memory-store';
import type { TaxiiServer } from '../../lib/taxii/server';

describe('TAXII server: authorisation leaks (issue 11)', function () {
  this.timeout(60_000);
  const store = new MemoryStore();
  let run: Running;
  let server: TaxiiServer;

  before(async () => {
    ({ run, server } = await startTaxii(store));
  });
  after(() => run.close());

  const listed = async (auth: string | null): Promise<string[]> => {
    const r = await request(run.base, 'GET', '/api1/collections/', { auth });
    assert.equal(r.status, 200, r.text);
    return list(obj(r.json)['collections'] ?? []).map((c) => String(obj(c)['id']));
  };

  it('lists only the collections the caller can read or write', async () => {
    assert.deepEqual(await listed(AUTH.alice), [COL_MAIN, COL_TRUST, COL_ANON]);
    assert.deepEqual(await listed(AUTH.bob), [COL_MAIN, COL_TRUST, COL_ANON]);
    assert.ok(!(await listed(AUTH.bob)).includes(COL_SECRET), 'the secret collection is not named');
    // carol has no roles: only the collection readable by any authenticated caller
    assert.deepEqual(await listed(AUTH.carol), [COL_ANON]);
    // anonymous (reads open): only what the anonymous role may read
    assert.deepEqual(await listed(null), [COL_ANON]);
  });

  it('answers a status resource to its creator only (404 to anyone else), without revealing the owner', async () => {
    const r = await post(run.base, COL_MAIN, [indicator()]);
    assert.equal(r.status, 202, r.text);
    const id = String(obj(r.json)['id']);
    const mine = await request(run.base, 'GET', `/api1/status/${id}/`, { auth: AUTH.alice });
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(mine.json, r.json);
    assert.equal('owner' in obj(mine.json), false, 'the owner is not a TAXII property and is not sent');
    for (const other of [AUTH.bob, AUTH.carol]) {
      const theirs = await request(run.base, 'GET', `/api1/status/${id}/`, { auth: other });
      assert.equal(theirs.status, 404, theirs.text);
      assert.match(String(obj(theirs.json)['description']), /no status/);
    }
    assert.equal((await request(run.base, 'GET', `/api1/status/${id}/`, { auth: null })).status, 401);
  });

  it('keeps the owner when the status is settled later', async () => {
    const ind = indicator();
    const r = await post(run.base, COL_MAIN, [ind]);
    const id = String(obj(r.json)['id']);
    assert.equal(await server.markIntegrity(COL_MAIN, String(ind['id']), String(ind['modified']), 'finalized', 'ok', id), true);
    const mine = obj((await request(run.base, 'GET', `/api1/status/${id}/`, { auth: AUTH.alice })).json);
    assert.equal(mine['status'], 'complete');
    assert.equal((await request(run.base, 'GET', `/api1/status/${id}/`, { auth: AUTH.bob })).status, 404);
  });
});
