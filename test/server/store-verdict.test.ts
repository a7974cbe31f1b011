/**
 * Settling records through the store alone (lib/ops recordVerdict, lib/store acquireStore): what an
 * n8n execution does for a record that a TAXII server — held by another execution, the server
 * trigger — admitted earlier. The server's status resource and its refusal of invalid records must
 * follow exactly as when the server object itself records the verdict.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createTaxiiServer, type ObjectEvent, type TaxiiServer } from '../../lib/taxii/server';
import { recordVerdict } from '../../lib/ops/server-integrity';
import { acquireStore, openStoreCount, storeIdentity } from '../../lib/store/shared';
import { AUTH, COL_MAIN, indicator, listen, obj, post, request, testConfig, type Running } from './helpers';

describe('settling through the store (recordVerdict, acquireStore)', function () {
  let dir: string;
  let run: Running;
  let base: string;
  let server: TaxiiServer;
  let events: ObjectEvent[];
  let release: () => Promise<void>;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-verdict-'));
    const lease = await acquireStore({ kind: 'embedded', dir });
    release = lease.release;
    server = createTaxiiServer(await testConfig(lease.store));
    run = await listen((req, res) => void server.handle(req, res));
    base = run.base;
    server.on('object', (e) => events.push(e));
  });
  beforeEach(() => {
    events = [];
  });
  after(async () => {
    await run.close();
    await release();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const admit = async (objects: Record<string, unknown>[]): Promise<string> => {
    const r = await post(base, COL_MAIN, objects);
    assert.equal(r.status, 202, r.text);
    await new Promise((res) => setImmediate(res));
    assert.equal(events.length, objects.length);
    return String(obj(r.json)['id']);
  };
  const statusOf = async (id: string): Promise<Record<string, unknown>> => {
    const r = await request(base, 'GET', `/api1/status/${id}/`, { auth: AUTH.alice });
    assert.equal(r.status, 200, r.text);
    return obj(r.json);
  };

  it('a second lease on the same directory shares the open LevelDB handle (a second open would be refused by its lock)', async () => {
    const before = openStoreCount();
    const other = await acquireStore({ kind: 'embedded' as const, dir: dir + '/' }, {});
    try {
      assert.equal(openStoreCount(), before, 'no second handle');
      assert.equal(storeIdentity({ kind: 'embedded', dir: dir + '/.' }), storeIdentity({ kind: 'embedded', dir }));
      const c = await other.store.counts();
      assert.equal(typeof c.pending, 'number');
    } finally {
      await other.release();
      await other.release(); // twice is harmless
    }
    assert.equal(openStoreCount(), before, 'the server still holds it open');
    // the server's lease is still good
    const r = await request(base, 'GET', '/api1/', { auth: AUTH.alice });
    assert.equal(r.status, 200);
  });

  it('verified -> finalized, and the status resource moves the object from pendings to successes', async () => {
    const a = indicator();
    const b = indicator();
    const sid = await admit([a, b]);
    const [ea, eb] = events;
    const lease = await acquireStore({ kind: 'embedded', dir });
    try {
      const outA = await recordVerdict(lease.store, { collection: ea.collection, id: ea.record.id, version: ea.record.version, verdict: 'verified', statusId: sid, policy: ea.policy });
      assert.deepEqual(
        { stored: outA.stored, status: outA.status, changed: outA.changed },
        { stored: true, status: 'finalized', changed: true },
      );
      let st = await statusOf(sid);
      assert.equal(st['status'], 'pending');
      assert.equal(st['success_count'], 1);
      assert.equal(st['pending_count'], 1);
      const outB = await recordVerdict(lease.store, { collection: eb.collection, id: eb.record.id, version: eb.record.version, verdict: 'mismatch', reason: 'altered in the test', statusId: sid });
      assert.equal(outB.status, 'invalid');
      assert.match(outB.reason, /altered in the test/);
      st = await statusOf(sid);
      assert.equal(st['status'], 'complete');
      assert.equal(st['success_count'], 1);
      assert.equal(st['failure_count'], 1);
      const failures = st['failures'] as Array<Record<string, unknown>>;
      assert.equal(failures[0]['id'], b.id);
      // the server refuses the invalid record from then on
      const got = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(b.id)}/`, { auth: AUTH.alice });
      assert.equal(got.status, 404, got.text);
      assert.match(got.text, /invalid|integrity/i);
      const ok = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(a.id)}/`, { auth: AUTH.alice });
      assert.equal(ok.status, 200);
    } finally {
      await lease.release();
    }
  });

  it('keeps the server rules: invalid stays invalid, a second verified changes nothing, an absent record is reported', async () => {
    const a = indicator();
    const sid = await admit([a]);
    const e = events[0];
    const lease = await acquireStore({ kind: 'embedded', dir });
    try {
      const t = { collection: e.collection, id: e.record.id, version: e.record.version, statusId: sid };
      assert.equal((await recordVerdict(lease.store, { ...t, verdict: 'not-anchored' })).status, 'invalid');
      const again = await recordVerdict(lease.store, { ...t, verdict: 'verified' });
      assert.equal(again.status, 'invalid');
      assert.equal(again.changed, false);
      assert.match(again.reason, /never served again/);
      const absent = await recordVerdict(lease.store, { ...t, id: 'indicator--00000000-0000-4000-8000-000000000000', verdict: 'verified' });
      assert.deepEqual([absent.stored, absent.status, absent.changed], [false, 'absent', false]);
      await assert.rejects(recordVerdict(lease.store, { ...t, verdict: 'maybe' as never }), /verdict must be one of verified, mismatch, not-anchored, wrong-writer, conflict, unknown/);
    } finally {
      await lease.release();
    }
  });

  it('policy optional: not anchored leaves the record pending and served; off: nothing is recorded', async () => {
    const a = indicator();
    await admit([a]);
    const e = events[0];
    const lease = await acquireStore({ kind: 'embedded', dir });
    try {
      const t = { collection: e.collection, id: e.record.id, version: e.record.version };
      const opt = await recordVerdict(lease.store, { ...t, verdict: 'not-anchored', policy: 'optional' });
      assert.deepEqual([opt.status, opt.changed], ['pending', false]);
      assert.match(opt.reason, /served unverified/);
      const off = await recordVerdict(lease.store, { ...t, verdict: 'mismatch', policy: 'off' });
      assert.equal(off.changed, false);
      assert.equal(off.status, 'unverified');
      const rec = await lease.store.get(t.collection, t.id, t.version);
      assert.equal(rec?.status, 'pending');
    } finally {
      await lease.release();
    }
  });

  it('conflict (entitled writers disagree) leaves a pending record pending with the reason, served nowhere as settled; a later verified settles it', async () => {
    const a = indicator();
    const sid = await admit([a]);
    const e = events[0];
    const lease = await acquireStore({ kind: 'embedded', dir });
    try {
      const t = { collection: e.collection, id: e.record.id, version: e.record.version, statusId: sid };
      const c = await recordVerdict(lease.store, { ...t, verdict: 'conflict', reason: '0xA and 0xB disagree' });
      assert.deepEqual([c.status, c.changed], ['pending', false]);
      assert.match(c.reason, /conflicting anchors \(0xA and 0xB disagree\).*revokes the dishonest writer/);
      const rec = await lease.store.get(t.collection, t.id, t.version);
      assert.equal(rec?.status, 'pending', 'a rogue writer cannot get genuine CTI refused for good');
      assert.match(rec?.statusReason ?? '', /conflicting anchors/);
      assert.equal((await statusOf(sid))['pending_count'], 1);
      // the admin revoked the rogue: the next check is verified and settles it
      const v = await recordVerdict(lease.store, { ...t, verdict: 'verified' });
      assert.deepEqual([v.status, v.changed], ['finalized', true]);
      // conflict on a settled record changes nothing
      const later = await recordVerdict(lease.store, { ...t, verdict: 'conflict' });
      assert.deepEqual([later.status, later.changed], ['finalized', false]);
    } finally {
      await lease.release();
    }
  });

  it('settling keeps failure_count when the POST summarised many failures of items without an id in one entry', async () => {
    const a = indicator();
    const idless = Array.from({ length: 80 }, () => ({}));
    const r = await post(base, COL_MAIN, [...idless, a]);
    assert.equal(r.status, 202, r.text);
    await new Promise((res) => setImmediate(res));
    const sid = String(obj(r.json)['id']);
    const before = await statusOf(sid);
    assert.equal(before['failure_count'], 80);
    assert.ok((before['failures'] as unknown[]).length < 80, 'the failures are summarised');
    const e = events[0];
    const lease = await acquireStore({ kind: 'embedded', dir });
    try {
      await recordVerdict(lease.store, { collection: e.collection, id: e.record.id, version: e.record.version, verdict: 'verified', statusId: sid });
      const after = await statusOf(sid);
      assert.deepEqual([after['failure_count'], after['success_count'], after['pending_count'], after['total_count']], [80, 1, 0, 81]);
    } finally {
      await lease.release();
    }
  });

  it('wrong-writer counts as not anchored: invalid under required, pending and served under optional', async () => {
    const a = indicator();
    const b = indicator();
    const sid = await admit([a, b]);
    const [ea, eb] = events;
    const lease = await acquireStore({ kind: 'embedded', dir });
    try {
      const req = await recordVerdict(lease.store, { collection: ea.collection, id: ea.record.id, version: ea.record.version, verdict: 'wrong-writer', statusId: sid });
      assert.deepEqual([req.status, req.changed], ['invalid', true]);
      assert.match(req.reason, /not anchored by a writer entitled to vouch for this collection/);
      const opt = await recordVerdict(lease.store, { collection: eb.collection, id: eb.record.id, version: eb.record.version, verdict: 'wrong-writer', policy: 'optional' });
      assert.deepEqual([opt.status, opt.changed], ['pending', false]);
    } finally {
      await lease.release();
    }
  });

  it('a store that cannot open is reported and not cached: the next acquire tries again', async () => {
    const file = path.join(dir, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const n = openStoreCount();
    await assert.rejects(acquireStore({ kind: 'embedded', dir: path.join(file, 'db') }), (err: Error) => err.message.length > 0);
    assert.equal(openStoreCount(), n);
    await assert.rejects(acquireStore({ kind: 'mongodb' }, { uri: 'http://nope' }), /mongodb:\/\/ or mongodb\+srv:\/\/ URI/);
    await assert.rejects(acquireStore({ kind: 'embedded' }, {}), /needs a directory/);
  });

  it('the last release closes the store, and it can be opened again afterwards', async () => {
    const d2 = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-verdict2-'));
    try {
      const n = openStoreCount();
      const l1 = await acquireStore({ kind: 'embedded', dir: d2 });
      const l2 = await acquireStore({ kind: 'embedded', dir: d2 });
      assert.equal(l1.store, l2.store);
      assert.equal(openStoreCount(), n + 1);
      await l1.release();
      assert.equal(openStoreCount(), n + 1);
      await l2.release();
      assert.equal(openStoreCount(), n);
      const l3 = await acquireStore({ kind: 'embedded', dir: d2 });
      assert.notEqual(l3.store, l1.store);
      await l3.store.counts();
      await l3.release();
    } finally {
      fs.rmSync(d2, { recursive: true, force: true });
    }
  });
});
