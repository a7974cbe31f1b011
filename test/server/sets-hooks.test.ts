/**
 * The SETS hooks of the TAXII server (paper §3 steps 2-5, §4.2): pending records announced with
 * `object` events, markIntegrity settling them and their status resources, duplicates and
 * conflicts, invalid records never served again, `inquiry` events on reads.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createTaxiiServer, type InquiryEvent, type ObjectEvent, type TaxiiServer } from '../../lib/taxii/server';
import { hashObject, ledgerKey } from '../../lib/digest';
import { AUTH, COL_MAIN, COL_TRUST, indicator, list, listen, obj, post, request, testConfig, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

describe('TAXII server: SETS hooks', function () {
  let ts: TestStore;
  let run: Running;
  let base: string;
  let server: TaxiiServer;
  let events: ObjectEvent[];
  let inquiries: InquiryEvent[];

  before(async () => {
    ts = await makeStore();
    server = createTaxiiServer(await testConfig(ts.store));
    run = await listen((req, res) => void server.handle(req, res));
    base = run.base;
    server.on('object', (e) => events.push(e));
    server.on('inquiry', (e) => inquiries.push(e));
  });
  beforeEach(() => {
    events = [];
    inquiries = [];
  });
  after(async () => {
    await run.close();
    await ts.dispose();
  });

  const statusOf = async (id: string): Promise<Record<string, unknown>> => {
    const r = await request(base, 'GET', `/api1/status/${id}/`, { auth: AUTH.alice });
    assert.equal(r.status, 200, r.text);
    return obj(r.json);
  };

  it('stores added objects pending, announces each with an object event, and settles the status with markIntegrity', async () => {
    const a = indicator();
    const b = indicator();
    const r = await post(base, COL_MAIN, [a, b]);
    assert.equal(r.status, 202);
    const st = obj(r.json);
    const sid = String(st['id']);
    assert.equal(st['status'], 'pending');
    assert.equal(st['pending_count'], 2);

    // events come right after the reply
    await new Promise((res) => setImmediate(res));
    assert.equal(events.length, 2);
    for (const [i, o] of [a, b].entries()) {
      const e = events[i];
      assert.equal(e.collection, COL_MAIN);
      assert.equal(e.apiRoot, 'api1');
      assert.equal(e.statusId, sid);
      assert.equal(e.record.id, o['id']);
      assert.equal(e.record.status, 'pending');
      assert.equal(e.record.hash, hashObject(o));
      assert.equal(e.record.key, ledgerKey(COL_MAIN, String(o['id']), '2024-01-01T00:00:00Z'));
      assert.deepEqual(e.record.object, o);
    }
    // pending records are served (only invalid ones are not)
    const got = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(a['id'])}/`, { auth: AUTH.bob });
    assert.equal(got.status, 200);

    assert.equal(await server.markIntegrity(COL_MAIN, String(a['id']), events[0].record.version, 'finalized', 'hash matches the ledger'), true);
    let s = await statusOf(sid);
    assert.equal(s['status'], 'pending');
    assert.equal(s['success_count'], 1);
    assert.equal(s['pending_count'], 1);
    assert.deepEqual(s['successes'], [{ id: a['id'], version: events[0].record.version, message: 'hash matches the ledger' }]);

    // the version may be given in any RFC 3339 spelling of the same instant
    assert.equal(await server.markIntegrity(COL_MAIN, String(b['id']), '2024-01-01T01:00:00+01:00', 'invalid', 'hash mismatch: ledger holds 0xabc'), true);
    s = await statusOf(sid);
    assert.equal(s['status'], 'complete');
    assert.equal(s['total_count'], 2);
    assert.equal(s['success_count'], 1);
    assert.equal(s['failure_count'], 1);
    assert.equal(s['pending_count'], 0);
    assert.equal('pendings' in s, false);
    assert.deepEqual(s['failures'], [{ id: b['id'], version: events[1].record.version, message: 'hash mismatch: ledger holds 0xabc' }]);

    const ra = await ts.store.get(COL_MAIN, String(a['id']));
    assert.equal(ra?.status, 'finalized');
    const rb = await ts.store.get(COL_MAIN, String(b['id']));
    assert.equal(rb?.status, 'invalid');
    assert.equal(rb?.statusReason, 'hash mismatch: ledger holds 0xabc');
  });

  it('never serves an invalid record: not in objects, manifest or versions; object GET is a 404 naming the integrity failure', async () => {
    const bad = indicator();
    const good = indicator();
    const id = String(bad['id']);
    assert.equal((await post(base, COL_MAIN, [bad, good])).status, 202);
    assert.equal(await server.markIntegrity(COL_MAIN, id, '2024-01-01T00:00:00.000Z', 'invalid', 'altered in storage'), true);

    const ids = async (path: string): Promise<unknown[]> => {
      const r = await request(base, 'GET', `/api1/collections/${COL_MAIN}/${path}`, { auth: AUTH.bob });
      assert.equal(r.status, 200, r.text);
      const b = obj(r.json);
      return b['objects'] === undefined ? [] : list(b['objects']).map((o) => obj(o)['id']);
    };
    assert.ok(!(await ids('objects/?match[version]=all')).includes(id));
    assert.ok((await ids('objects/?match[version]=all')).includes(good['id']));
    assert.ok(!(await ids('manifest/?match[version]=all')).includes(id));
    assert.ok(!(await ids(`objects/?match[id]=${id}`)).includes(id));

    const one = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${id}/`, { auth: AUTH.bob });
    assert.equal(one.status, 404);
    assert.match(String(obj(one.json)['description']), /failed its integrity check and is no longer served: altered in storage/);
    const vers = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${id}/versions/`, { auth: AUTH.bob });
    assert.equal(vers.status, 404);
    assert.match(String(obj(vers.json)['description']), /integrity/);
  });

  it('re-adding an identical object is a success "already present": not stored twice; re-emitted only while pending', async () => {
    const o = indicator();
    const first = await post(base, COL_MAIN, [o]);
    await new Promise((res) => setImmediate(res));
    assert.equal(events.length, 1);
    const again = await post(base, COL_MAIN, [o]);
    assert.equal(again.status, 202);
    const st = obj(again.json);
    assert.equal(st['status'], 'complete');
    assert.equal(st['success_count'], 1);
    assert.match(String(obj(list(st['successes'])[0])['message']), /already present/);
    await new Promise((res) => setImmediate(res));
    // still pending: its first check may have been lost, so it is handed to the flow again
    assert.equal(events.length, 2, 'a second object event (origin recovery) for the pending record');
    assert.equal(events[1].origin, 'recovery');
    await server.markIntegrity(COL_MAIN, String(o['id']), String(o['modified']), 'verified');
    await post(base, COL_MAIN, [o]);
    await new Promise((res) => setImmediate(res));
    assert.equal(events.length, 2, 'settled: no further object event');
    const v = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(o['id'])}/versions/`, { auth: AUTH.bob });
    assert.equal(list(obj(v.json)['versions']).length, 1);
    // the first status still waits for its own verification
    assert.equal(obj(first.json)['status'], 'pending');
  });

  it('re-adding a duplicate of an invalid record fails with its reason', async () => {
    const o = indicator();
    await post(base, COL_MAIN, [o]);
    await server.markIntegrity(COL_MAIN, String(o['id']), String(o['modified']), 'invalid', 'not anchored on the ledger');
    const again = obj((await post(base, COL_MAIN, [o])).json);
    assert.equal(again['failure_count'], 1);
    assert.match(String(obj(list(again['failures'])[0])['message']), /already present and marked invalid: not anchored/);
  });

  it('a different object with the same id and version is a conflict failure; a new version is added', async () => {
    const o = indicator();
    await post(base, COL_MAIN, [o]);
    const changed = { ...o, name: 'tampered' };
    const next = { ...o, modified: '2024-06-01T00:00:00.000Z' };
    const r = obj((await post(base, COL_MAIN, [changed, next])).json);
    assert.equal(r['failure_count'], 1);
    assert.equal(r['pending_count'], 1);
    const f = obj(list(r['failures'])[0]);
    assert.equal(f['id'], o['id']);
    assert.equal(f['message'], 'a different object already uses this id and version');
  });

  it('unversioned objects (SCOs): version = date_added, a re-add of the same content is a duplicate', async () => {
    const sco = { type: 'ipv4-addr', spec_version: '2.1', id: `ipv4-addr--${randomUUID()}`, value: '198.51.100.7' };
    const r = obj((await post(base, COL_MAIN, [sco])).json);
    assert.equal(r['pending_count'], 1);
    await new Promise((res) => setImmediate(res));
    const ev = events[0];
    assert.equal(ev.record.key, ledgerKey(COL_MAIN, sco.id, null, hashObject(sco)), 'an unversioned object is keyed by its content');
    assert.equal(ev.record.version, ev.record.dateAdded);
    const again = obj((await post(base, COL_MAIN, [sco])).json);
    assert.equal(again['success_count'], 1);
    assert.equal(await server.markIntegrity(COL_MAIN, sco.id, ev.record.version, 'finalized'), true);
    const s = await statusOf(String(r['id']));
    assert.equal(s['status'], 'complete');
  });

  it('answers reads at once and announces the served records with an inquiry event', async () => {
    const o = indicator();
    await post(base, COL_MAIN, [o]);
    inquiries = [];
    const r = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(o['id'])}/`, { auth: AUTH.bob });
    assert.equal(r.status, 200);
    await new Promise((res) => setImmediate(res));
    assert.equal(inquiries.length, 1);
    assert.equal(inquiries[0].collection, COL_MAIN);
    assert.deepEqual(inquiries[0].records.map((x) => x.id), [o['id']]);
    await request(base, 'GET', `/api1/collections/${COL_MAIN}/manifest/?match[id]=${String(o['id'])}`, { auth: AUTH.bob });
    await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(o['id'])}/versions/`, { auth: AUTH.bob });
    await new Promise((res) => setImmediate(res));
    assert.equal(inquiries.length, 3);
    // an empty answer announces nothing
    await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/?match[id]=indicator--${randomUUID()}`, { auth: AUTH.bob });
    await new Promise((res) => setImmediate(res));
    assert.equal(inquiries.length, 3);
  });

  it('a listener that throws does not break the request', async () => {
    const boom = (): void => {
      throw new Error('listener failure');
    };
    server.on('object', boom);
    try {
      const r = await post(base, COL_MAIN, [indicator()]);
      assert.equal(r.status, 202);
    } finally {
      server.off('object', boom);
    }
  });

  it('a trust-mode collection stores records finalized and completes the status at once', async () => {
    const r = obj((await post(base, COL_TRUST, [indicator()])).json);
    assert.equal(r['status'], 'complete');
    assert.equal(r['success_count'], 1);
    await new Promise((res) => setImmediate(res));
    assert.equal(events.length, 1, 'still announced for distribution');
    assert.equal(events[0].record.status, 'finalized');
  });

  it('markIntegrity: false for an unknown version; works from another server instance given the statusId', async () => {
    assert.equal(await server.markIntegrity(COL_MAIN, `indicator--${randomUUID()}`, '2024-01-01T00:00:00Z', 'finalized'), false);
    await assert.rejects(() => server.markIntegrity(COL_MAIN, 'x', 'y', 'pending' as 'finalized'), /finalized or invalid/);

    const o = indicator();
    const r = obj((await post(base, COL_MAIN, [o])).json);
    const other = createTaxiiServer(await testConfig(ts.store));
    assert.equal(await other.markIntegrity(COL_MAIN, String(o['id']), String(o['modified']), 'finalized', undefined, String(r['id'])), true);
    const s = await statusOf(String(r['id']));
    assert.equal(s['status'], 'complete');
    assert.equal(obj(list(s['successes'])[0])['message'], 'integrity verified');
  });

  it('concurrent markIntegrity calls on one status lose no update', async () => {
    const objs = Array.from({ length: 20 }, () => indicator());
    const r = obj((await post(base, COL_MAIN, objs)).json);
    await Promise.all(
      objs.map((o, i) => server.markIntegrity(COL_MAIN, String(o['id']), String(o['modified']), i % 2 === 0 ? 'finalized' : 'invalid', `r${i}`)),
    );
    const s = await statusOf(String(r['id']));
    assert.equal(s['status'], 'complete');
    assert.equal(s['success_count'], 10);
    assert.equal(s['failure_count'], 10);
    assert.equal(s['pending_count'], 0);
  });
});
