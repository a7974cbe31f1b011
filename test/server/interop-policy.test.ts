/**
 * Integrity policy per collection (docs/interop.md "Integrity policies"), at the library level:
 * `required` (SETS: pending until verified; not anchored by the deadline -> invalid, never served),
 * `optional` (served at once; a verdict is recorded when an anchor appears; a mismatch still
 * refuses the record), `off` (plain TAXII 2.1: nothing verified, records reported `unverified`).
 * Driven over real HTTP with markIntegrity / recordVerification as the flow would call them.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import {
  createTaxiiServer,
  integrityPolicySentence,
  OFF_REASON,
  TaxiiServerConfigError,
  type InquiryEvent,
  type ObjectEvent,
  type TaxiiServer,
} from '../../lib/taxii/server';
import { AUTH, indicator, list, listen, obj, post, request, testConfig, type Reply, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

const REQ = 'a0000000-0000-4000-8000-000000000001';
const OPT = 'a0000000-0000-4000-8000-000000000002';
const OFF = 'a0000000-0000-4000-8000-000000000003';
const LEGACY_TRUST = 'a0000000-0000-4000-8000-000000000004';
const LEGACY_VERIFY = 'a0000000-0000-4000-8000-000000000005';

describe('TAXII server: integrity policy per collection', function () {
  let ts: TestStore;
  let run: Running;
  let base: string;
  let server: TaxiiServer;
  let events: ObjectEvent[];
  let inquiries: InquiryEvent[];

  before(async () => {
    ts = await makeStore();
    const cfg = await testConfig(ts.store);
    cfg.apiRoots = {
      api1: {
        title: 'policies',
        collections: [
          { id: REQ, title: 'Required', description: 'Verified CTI', canRead: ['reader'], canWrite: ['writer'], integrity: { policy: 'required' } },
          { id: OPT, title: 'Optional', canRead: ['reader'], canWrite: ['writer'], integrity: { policy: 'optional' } },
          { id: OFF, title: 'Off', description: 'Plain feed.', canRead: ['reader'], canWrite: ['writer'], integrity: { policy: 'off' } },
          { id: LEGACY_TRUST, title: 'Legacy trust', canRead: ['reader'], canWrite: ['writer'], integrity: { mode: 'trust' } },
          { id: LEGACY_VERIFY, title: 'Legacy verify', canRead: ['reader'], canWrite: ['writer'], integrity: { mode: 'verify' } },
        ],
      },
    };
    server = createTaxiiServer(cfg);
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

  const tick = (): Promise<void> => new Promise((res) => setImmediate(res));
  const get = (col: string, path: string): Promise<Reply> => request(base, 'GET', `/api1/collections/${col}/${path}`, { auth: AUTH.bob });
  const statusOf = async (id: string): Promise<Record<string, unknown>> => obj((await request(base, 'GET', `/api1/status/${id}/`, { auth: AUTH.alice })).json);
  const served = async (col: string, id: string): Promise<boolean> => {
    const r = await get(col, 'objects/');
    return list(obj(r.json)['objects'] ?? []).some((o) => obj(o)['id'] === id);
  };

  it('resolves the policy: policy names, legacy mode aliases (verify = required, trust = off), conflicts refused', async () => {
    assert.equal(server.policyOf(REQ), 'required');
    assert.equal(server.policyOf(OPT), 'optional');
    assert.equal(server.policyOf(OFF), 'off');
    assert.equal(server.policyOf(LEGACY_TRUST), 'off');
    assert.equal(server.policyOf(LEGACY_VERIFY), 'required');
    assert.equal(server.policyOf('nope'), undefined);
    const legacy = server.settings.roots[0].collections.find((c) => c.id === LEGACY_TRUST);
    assert.equal(legacy?.integrityMode, 'trust', 'the legacy view stays available');

    const cfg = await testConfig(ts.store);
    const one = (integrity: unknown): void => {
      cfg.defaultApiRoot = 'r';
      cfg.apiRoots = { r: { title: 'r', collections: [{ id: 'c1', title: 'c', canRead: [], canWrite: [], integrity: integrity as { policy: 'off' } }] } };
      createTaxiiServer(cfg);
    };
    one({ mode: 'optional' }); // the new names work in the old field too
    assert.throws(() => one({ policy: 'maybe' }), (e: unknown) => e instanceof TaxiiServerConfigError && /integrity.policy must be one of required, optional, off/.test(e.message));
    assert.throws(() => one({ mode: 'sometimes' }), /integrity.mode must be verify, trust or one of/);
    assert.throws(() => one({ policy: 'required', mode: 'trust' }), /disagree/);
  });

  it('reports the policy in each collection description (appended to a configured one), never inside STIX objects', async () => {
    const r = await request(base, 'GET', '/api1/collections/', { auth: AUTH.bob });
    const byId = new Map(list(obj(r.json)['collections']).map((c) => [obj(c)['id'], obj(c)['description']]));
    assert.equal(byId.get(REQ), `Verified CTI. ${integrityPolicySentence('required')}`);
    assert.equal(byId.get(OPT), integrityPolicySentence('optional'));
    assert.equal(byId.get(OFF), `Plain feed. ${integrityPolicySentence('off')}`);
    assert.match(String(byId.get(REQ)), /^Verified CTI\. Integrity policy: required — .*never served\.$/);
    assert.match(String(byId.get(OFF)), /Integrity policy: off — a plain TAXII 2\.1 collection/);
    assert.match(String(obj((await get(OPT, '')).json)['description']), /^Integrity policy: optional/);

    // the stored and served object is byte-for-byte the posted one, in every policy
    for (const col of [REQ, OPT, OFF]) {
      const o = indicator(undefined, undefined, { labels: ['x'], confidence: 80 });
      assert.equal((await post(base, col, [o])).status, 202);
      const back = obj((await get(col, `objects/${String(o['id'])}/`)).json);
      assert.deepEqual(list(back['objects']), [o]);
    }
  });

  it('required: pending until settled; not anchored by the deadline -> invalid, refused, listed as a failure', async () => {
    const a = indicator();
    const b = indicator();
    const r = obj((await post(base, REQ, [a, b])).json);
    assert.equal(r['status'], 'pending');
    assert.equal(r['pending_count'], 2);
    await tick();
    assert.deepEqual(events.map((e) => [e.policy, e.record.status, e.statusId]), [
      ['required', 'pending', r['id']],
      ['required', 'pending', r['id']],
    ]);
    // served while pending (paper step 5: answer at once, verify in parallel), announced for re-verification
    assert.equal(await served(REQ, String(a['id'])), true);
    assert.equal(inquiries.at(-1)?.policy, 'required');

    const va = events[0].record.version;
    const vb = events[1].record.version;
    const ok = await server.recordVerification(REQ, String(a['id']), va, 'verified', undefined, String(r['id']));
    assert.deepEqual(ok, { stored: true, policy: 'required', status: 'finalized', changed: true, reason: 'integrity verified: the hash matches the ledger' });
    const bad = await server.recordVerification(REQ, String(b['id']), vb, 'not-anchored', 'deadline of 30 s passed');
    assert.equal(bad.status, 'invalid');
    assert.equal(bad.reason, 'not anchored: deadline of 30 s passed');

    const st = await statusOf(String(r['id']));
    assert.equal(st['status'], 'complete');
    assert.deepEqual(st['failures'], [{ id: b['id'], version: vb, message: 'not anchored: deadline of 30 s passed' }]);
    assert.equal(await served(REQ, String(b['id'])), false);
    const refused = await get(REQ, `objects/${String(b['id'])}/`);
    assert.equal(refused.status, 404);
    assert.match(String(obj(refused.json)['description']), /failed its integrity check and is no longer served: not anchored/);

    // invalid is final: a late anchor does not bring it back
    const late = await server.recordVerification(REQ, String(b['id']), vb, 'verified');
    assert.equal(late.changed, false);
    assert.equal(late.status, 'invalid');
    assert.equal((await server.integrityOf(REQ, String(b['id'])))?.status, 'invalid');
    const view = await server.integrityOf(REQ, String(a['id']), va);
    assert.equal(view?.status, 'finalized');
    assert.equal(view?.policy, 'required');
    assert.equal(view?.hash, events[0].record.hash);
  });

  it('required: markIntegrity accepts a verdict and applies the policy (not-anchored invalidates)', async () => {
    const o = indicator();
    await post(base, REQ, [o]);
    await tick();
    assert.equal(await server.markIntegrity(REQ, String(o['id']), events[0].record.version, 'not-anchored'), true);
    assert.equal((await server.integrityOf(REQ, String(o['id'])))?.status, 'invalid');
    await assert.rejects(() => server.markIntegrity(REQ, String(o['id']), events[0].record.version, 'pending' as 'finalized'), /finalized or invalid/);
    await assert.rejects(() => server.recordVerification(REQ, String(o['id']), events[0].record.version, 'maybe' as 'verified'), /verdict must be/);
  });

  it('optional: served and complete at once; not-anchored keeps it served (reason recorded); a later anchor finalizes it', async () => {
    const o = indicator();
    const r = obj((await post(base, OPT, [o])).json);
    assert.equal(r['status'], 'complete', 'standard clients are not kept waiting');
    assert.equal(r['success_count'], 1);
    assert.match(String(obj(list(r['successes'])[0])['message']), /integrity optional/);
    await tick();
    assert.equal(events.length, 1);
    assert.equal(events[0].policy, 'optional');
    assert.equal(events[0].record.status, 'pending', 'no verdict yet');
    const v = events[0].record.version;
    assert.equal(await served(OPT, String(o['id'])), true);
    assert.equal(inquiries.at(-1)?.policy, 'optional');

    const na = await server.recordVerification(OPT, String(o['id']), v, 'not-anchored', 'no anchor after 30 s');
    assert.deepEqual(na, {
      stored: true,
      policy: 'optional',
      status: 'pending',
      changed: false,
      reason: 'not anchored on the ledger (integrity policy optional: served unverified): no anchor after 30 s',
    });
    assert.equal(await server.markIntegrity(OPT, String(o['id']), v, 'not-anchored'), true, 'the verdict form of markIntegrity does not invalidate either');
    assert.equal(await served(OPT, String(o['id'])), true);
    const view = await server.integrityOf(OPT, String(o['id']));
    assert.equal(view?.status, 'pending');
    assert.match(String(view?.reason), /not anchored on the ledger/);

    // the producer anchors it later: the next check records the result, queryable
    const ok = await server.recordVerification(OPT, String(o['id']), v, 'verified');
    assert.equal(ok.status, 'finalized');
    assert.equal((await server.integrityOf(OPT, String(o['id'])))?.status, 'finalized');
    assert.equal((await statusOf(String(r['id'])))['status'], 'complete', 'the add status is untouched');
  });

  it('optional: a mismatch against an existing anchor still makes the record invalid and refused', async () => {
    const o = indicator();
    await post(base, OPT, [o]);
    await tick();
    const res = await server.recordVerification(OPT, String(o['id']), events[0].record.version, 'mismatch', 'hash mismatch: ledger holds 0xabc');
    assert.equal(res.status, 'invalid');
    assert.equal(res.changed, true);
    assert.equal(await served(OPT, String(o['id'])), false);
    assert.equal((await get(OPT, `objects/${String(o['id'])}/`)).status, 404);
    // re-posting the same version is reported as a failure, not silently accepted again
    const again = obj((await post(base, OPT, [o])).json);
    assert.equal(again['failure_count'], 1);
    assert.match(String(obj(list(again['failures'])[0])['message']), /marked invalid: hash mismatch/);
  });

  it('off: a plain TAXII collection — complete at once, served, no inquiry events, verdicts ignored, reported unverified', async () => {
    const o = indicator();
    const r = obj((await post(base, OFF, [o])).json);
    assert.equal(r['status'], 'complete');
    assert.deepEqual(r['successes'], [{ id: o['id'], version: '2024-01-01T00:00:00Z' }], 'a plain success, no integrity message');
    await tick();
    assert.equal(events.length, 1, 'still announced, for distribution');
    assert.equal(events[0].policy, 'off');
    const v = events[0].record.version;

    assert.equal(await served(OFF, String(o['id'])), true);
    assert.equal((await get(OFF, `objects/${String(o['id'])}/`)).status, 200);
    assert.equal((await get(OFF, 'manifest/')).status, 200);
    assert.deepEqual(inquiries, [], 'nothing to re-verify');

    const res = await server.recordVerification(OFF, String(o['id']), v, 'mismatch');
    assert.deepEqual(res, { stored: true, policy: 'off', status: 'unverified', changed: false, reason: 'integrity policy off: verification results are not recorded' });
    assert.equal(await server.markIntegrity(OFF, String(o['id']), v, 'invalid', 'flow mistake'), true);
    assert.equal(await server.markIntegrity(OFF, `indicator--${randomUUID()}`, v, 'invalid'), false, 'false when not stored');
    assert.equal(await served(OFF, String(o['id'])), true, 'never invalidated');
    const view = await server.integrityOf(OFF, String(o['id']));
    assert.equal(view?.status, 'unverified');
    assert.equal(view?.reason, OFF_REASON);
    // the legacy `trust` collection is the same thing
    const t = indicator();
    assert.equal(obj((await post(base, LEGACY_TRUST, [t])).json)['status'], 'complete');
    assert.equal((await server.integrityOf(LEGACY_TRUST, String(t['id'])))?.status, 'unverified');
  });

  it('integrityCounts keeps off collections out of the integrity figures', async () => {
    const before = await server.integrityCounts();
    await post(base, OFF, [indicator(), indicator()]);
    await post(base, REQ, [indicator()]);
    const after = await server.integrityCounts();
    assert.equal(after.unverified - before.unverified, 2);
    assert.equal(after.pending - before.pending, 1);
    assert.equal(after.finalized - before.finalized, 0);
    const onlyOff = await server.integrityCounts([OFF]);
    assert.deepEqual({ ...onlyOff, unverified: onlyOff.unverified > 0 }, { pending: 0, finalized: 0, invalid: 0, unverified: true });
  });
});
