/**
 * Recovery of the TAXII server (issue 10, "Server and stores"): what survives a restart or a lost
 * message on the embedded store — the record -> status-resource index, the recovery sweep that
 * re-emits records left pending, duplicate POSTs of a pending record, the anchoring deadline of an
 * inquiry's `not-anchored`, compare-and-set verdicts, the `unknown` verification, and the
 * generated next-token secret kept in the store.
 *
 * A "restart" is a new server object on the same directory, after the first one's store was
 * closed: nothing in process memory survives it.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore } from '../../lib/store/embedded';
import type { Store } from '../../lib/store/store';
import { createTaxiiServer, type ObjectEvent, type TaxiiServer, type TaxiiServerConfig } from '../../lib/taxii/server';
import { recordVerdict } from '../../lib/ops/server-integrity';
import { AUTH, COL_MAIN, indicator, list, listen, obj, post, request, testConfig, type Running } from './helpers';

describe('TAXII server recovery (restart, lost messages, concurrent verdicts)', function () {
  this.timeout(60_000);
  let dir: string;
  let store: Store;
  let server: TaxiiServer;
  let run: Running;
  let events: ObjectEvent[];

  const start = async (patch: Partial<TaxiiServerConfig> = {}): Promise<void> => {
    store = new EmbeddedStore({ dir });
    await store.open();
    server = createTaxiiServer(await testConfig(store, patch));
    events = [];
    server.on('object', (e) => events.push(e));
    run = await listen((req, res) => void server.handle(req, res));
  };
  const stop = async (): Promise<void> => {
    server.close();
    await run.close();
    await store.close();
  };
  const restart = async (patch: Partial<TaxiiServerConfig> = {}): Promise<void> => {
    await stop();
    await start(patch);
  };
  const statusOf = async (id: string): Promise<Record<string, unknown>> => {
    const r = await request(run.base, 'GET', `/api1/status/${id}/`, { auth: AUTH.alice });
    assert.equal(r.status, 200, r.text);
    return obj(r.json);
  };
  const admit = async (objects: Record<string, unknown>[]): Promise<string> => {
    const r = await post(run.base, COL_MAIN, objects);
    assert.equal(r.status, 202, r.text);
    await new Promise((res) => setImmediate(res));
    return String(obj(r.json)['id']);
  };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-server-recovery-'));
    await start();
  });
  afterEach(async () => {
    await stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a verdict recorded after a restart, without the statusId, still completes the TAXII status resource', async () => {
    const o = indicator();
    const sid = await admit([o]);
    await restart();
    const out = await server.recordVerification(COL_MAIN, String(o['id']), String(o['modified']), 'verified');
    assert.deepEqual([out.status, out.changed], ['finalized', true]);
    const st = await statusOf(sid);
    assert.equal(st['status'], 'complete', 'the status resource follows the record');
    assert.equal(st['success_count'], 1);
    assert.equal(st['pending_count'], 0);
  });

  it('the recovery sweep re-emits records left pending (origin recovery, attempt count), not settled ones', async () => {
    const [a, b, c] = [indicator(), indicator(), indicator()];
    const sid = await admit([a, b, c]);
    await server.recordVerification(COL_MAIN, String(c['id']), String(c['modified']), 'verified');
    // restart with a grace period of 0: every pending record is overdue
    await restart({ recovery: { graceMs: 0, intervalMs: 0 } });
    const report = await server.recover();
    assert.equal(report.emitted, 2);
    assert.deepEqual(report.errors, []);
    assert.deepEqual(events.map((e) => e.record.id).sort(), [a['id'], b['id']].sort());
    for (const e of events) {
      assert.equal(e.origin, 'recovery');
      assert.equal(e.attempt, 1);
      assert.equal(e.statusId, sid, 'the status resource it was admitted with');
      assert.equal(e.policy, 'required');
    }
    // the flow settles what it got: the original status resource completes
    for (const e of events) await server.recordVerification(e.collection, e.record.id, e.record.version, 'verified', undefined, e.statusId, e.origin);
    assert.equal((await statusOf(sid))['status'], 'complete');
    events = [];
    assert.equal((await server.recover()).emitted, 0, 'nothing pending any more');
    assert.equal(events.length, 0);
  });

  it('the sweep waits for the grace period and pages through pending records in bounded batches', async () => {
    await restart({ recovery: { graceMs: 3_600_000, intervalMs: 0, batchSize: 2 } });
    const objects = Array.from({ length: 5 }, () => indicator());
    await admit(objects);
    assert.equal((await server.recover()).emitted, 0, 'admitted by this server and younger than the grace period: left alone');
    await restart({ recovery: { graceMs: 0, intervalMs: 0, batchSize: 2 } });
    const sizes: number[] = [];
    for (let i = 0; i < 3; i++) sizes.push((await server.recover()).emitted);
    assert.deepEqual(sizes, [2, 2, 1], 'at most batchSize per sweep, continuing where the last stopped');
    assert.deepEqual(events.map((e) => e.record.id), objects.map((o) => o['id']), 'oldest first, each once');
    const again = await server.recover();
    assert.equal(again.emitted, 2, 'after the last page the next sweep starts over');
    assert.deepEqual(events.slice(5).map((e) => e.attempt), [2, 2]);
  });

  it('records admitted before a restart are swept at once, without waiting out the grace period', async () => {
    const before = [indicator(), indicator()];
    await admit(before);
    // a grace period of an hour: only the orphans of the previous server object qualify
    await restart({ recovery: { graceMs: 3_600_000, intervalMs: 0 } });
    const young = indicator();
    await admit([young]);
    const report = await server.recover();
    assert.equal(report.emitted, 2);
    const recovered = events.filter((e) => e.origin === 'recovery');
    assert.deepEqual(recovered.map((e) => e.record.id).sort(), before.map((o) => String(o['id'])).sort());
    assert.ok(!recovered.some((e) => e.record.id === young['id']), 'admitted by this server: still within its grace period');
  });

  it('startRecovery sweeps at start (restart with records pending), and close() stops it', async () => {
    const o = indicator();
    await admit([o]);
    await stop();
    await start({ recovery: { graceMs: 0, intervalMs: 1000 } });
    server.startRecovery();
    const deadline = Date.now() + 30_000;
    while (events.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(events[0]?.record.id, o['id']);
    assert.equal(events[0]?.origin, 'recovery');
    server.close();
  });

  it('a duplicate POST of a pending record re-emits it for verification; of a settled one, not', async () => {
    const o = indicator();
    await admit([o]);
    assert.equal(events.length, 1);
    const again = await post(run.base, COL_MAIN, [o]);
    assert.equal(again.status, 202);
    assert.match(String(obj(list(obj(again.json)['successes'])[0])['message']), /already present \(integrity check pending\)/);
    await new Promise((res) => setImmediate(res));
    assert.equal(events.length, 2, 'handed to the flow again');
    assert.deepEqual([events[1].origin, events[1].record.id, events[1].attempt], ['recovery', o['id'], 1]);
    await server.recordVerification(COL_MAIN, String(o['id']), String(o['modified']), 'verified');
    await post(run.base, COL_MAIN, [o]);
    await new Promise((res) => setImmediate(res));
    assert.equal(events.length, 2, 'a finalized record is not checked twice');
  });

  it('an inquiry\'s not-anchored is deferred before the anchoring deadline and applied after it (policy required)', async () => {
    const o = indicator();
    await admit([o]);
    const young = await server.recordVerification(COL_MAIN, String(o['id']), String(o['modified']), 'not-anchored', 'no hash', undefined, 'inquiry');
    assert.deepEqual([young.status, young.changed], ['pending', false]);
    assert.match(young.reason, /not anchored yet; its anchoring deadline is/);
    await restart({ recovery: { graceMs: 0, intervalMs: 0 } });
    const old = await server.recordVerification(COL_MAIN, String(o['id']), String(o['modified']), 'not-anchored', 'no hash', undefined, 'inquiry');
    assert.deepEqual([old.status, old.changed], ['invalid', true]);
    const get = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(o['id'])}/`, { auth: AUTH.bob });
    assert.equal(get.status, 404, 'an unanchored object is no longer served');
  });

  it('the same through the store alone (recordVerdict with origin inquiry and a grace period)', async () => {
    const o = indicator();
    await admit([o]);
    const t = { collection: COL_MAIN, id: String(o['id']), version: String(o['modified']), verdict: 'not-anchored' as const, origin: 'inquiry' as const };
    assert.equal((await recordVerdict(store, { ...t, anchorGraceMs: 3_600_000 })).status, 'pending');
    assert.equal((await recordVerdict(store, { ...t, anchorGraceMs: 0 })).status, 'invalid');
  });

  it('unknown (the verifier could not decide) changes nothing and is no error', async () => {
    const o = indicator();
    const sid = await admit([o]);
    const out = await server.recordVerification(COL_MAIN, String(o['id']), String(o['modified']), 'unknown', 'ledger unreachable');
    assert.deepEqual([out.stored, out.status, out.changed], [true, 'pending', false]);
    assert.match(out.reason, /could not decide \(ledger unreachable\): left pending, to be checked again later/);
    assert.equal(await server.markIntegrity(COL_MAIN, String(o['id']), String(o['modified']), 'unknown'), true);
    assert.equal((await statusOf(sid))['status'], 'pending');
    assert.equal((await store.get(COL_MAIN, String(o['id'])))?.status, 'pending');
  });

  it('invalid is final under many concurrent conflicting verdicts (compare-and-set)', async () => {
    const objects = Array.from({ length: 10 }, () => indicator());
    const sid = await admit(objects);
    // mismatches first, verified last: a read-decide-write without compare-and-set lets the last
    // `verified` (decided on a pending read) overwrite an `invalid` written in between
    const jobs = objects.flatMap((o) => [
      ...Array.from({ length: 5 }, () => server.recordVerification(COL_MAIN, String(o['id']), String(o['modified']), 'mismatch', 'altered')),
      ...Array.from({ length: 5 }, () => server.recordVerification(COL_MAIN, String(o['id']), String(o['modified']), 'verified')),
    ]);
    const outs = await Promise.all(jobs);
    for (const o of objects) {
      const rec = await store.get(COL_MAIN, String(o['id']));
      assert.equal(rec?.status, 'invalid', `${String(o['id'])} stays invalid`);
    }
    assert.ok(outs.every((x) => x.stored));
    assert.deepEqual(await store.counts(COL_MAIN), { pending: 0, finalized: 0, invalid: 10 });
    const st = await statusOf(sid);
    assert.equal(st['status'], 'complete');
    assert.equal(st['failure_count'], 10, 'each object once, as a failure');
    assert.equal(st['success_count'], 0);
  });

  it('without a configured secret, a next token issued before a restart still works after it', async () => {
    await restart({ nextTokenSecret: undefined });
    await admit(Array.from({ length: 3 }, () => indicator()));
    for (const o of await store.query({ collection: COL_MAIN, limit: 10 }).then((p) => p.items)) {
      await server.recordVerification(COL_MAIN, o.id, o.version, 'verified');
    }
    const first = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/?limit=1`, { auth: AUTH.bob });
    assert.equal(first.status, 200, first.text);
    const next = String(obj(first.json)['next']);
    assert.ok(next.length > 10);
    await restart({ nextTokenSecret: undefined });
    const second = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/?limit=1&next=${encodeURIComponent(next)}`, { auth: AUTH.bob });
    assert.equal(second.status, 200, second.text);
    assert.equal(list(obj(second.json)['objects']).length, 1);
  });
});
