/**
 * sets-ledger, anchor-hash and verify-hash on a real Node-RED runtime against a real EVM chain
 * (hardhat, test/support/services.ts) with a freshly deployed SetsRegistry.
 */
import { strict as assert } from 'node:assert';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { collectionScope, hashObject, keyForObject } from '../../lib/digest';
import type { StixObject } from '../../lib/stix';
import { Collector, OpenHandles, Recorder, allNodes, deployedFlows, helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { TcpGate } from './gate';
import { bundle, collectionId, indicator, malware } from './stix';

interface SetsOut {
  collection?: string;
  items?: Array<{ id: string; type: string; version: string | null; key: string; hash: string; anchor: { tx: string; block: number; existing?: boolean } }>;
  key?: string;
  hash?: string;
  anchor?: { tx: string; block: number };
  verification?: { status: string; expected?: string; actual: string; key: string; reason?: string; id?: string };
  verifications?: Array<{ status: string; id: string }>;
}

const setsOf = (m: object | undefined): SetsOut => ((m as { sets?: unknown } | undefined)?.sets ?? {}) as SetsOut;
const errCode = (e: unknown): unknown => (e as { code?: unknown }).code;

describe(`ledger nodes on Node-RED ${nodeRedVersion}`, function () {
  let c: ChainHandle;
  let registry: string;
  let reader: Ledger;
  const WRITER = 3; // a writer of the registry (deployRegistry grants accounts 0..3)

  before(async function () {
    this.timeout(120_000);
    c = await chain();
    registry = await c.deployRegistry();
    reader = createLedger({ kind: 'evm', rpcUrl: c.rpcUrl, chainId: c.chainId, address: registry });
    await helper.startServer();
  });

  after(async () => {
    await reader?.close();
    await helper.stopServer();
  });

  afterEach(async () => {
    await helper.unload();
    await c.setIntervalMining(0);
  });

  function ledgerNode(extra: Partial<FlowNode> = {}): FlowNode {
    return { id: 'led', type: 'sets-ledger', name: 'chain', kind: 'evm', rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 10000, ...extra };
  }

  /** anchor-hash and verify-hash sharing one ledger, a Catch node for each tab. */
  function flow(collection: string, opts: { waitMs?: number; mode?: string; ledger?: Partial<FlowNode> } = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'test' },
      ledgerNode(opts.ledger),
      { id: 'anc', type: 'anchor-hash', z: 'tab', ledger: 'led', collection, wires: [['anchored']] },
      { id: 'anchored', type: 'helper', z: 'tab' },
      { id: 'ver', type: 'verify-hash', z: 'tab', ledger: 'led', collection, waitMs: opts.waitMs ?? 0, mode: opts.mode ?? 'split', wires: [['ok'], ['rejected']] },
      { id: 'ok', type: 'helper', z: 'tab' },
      { id: 'rejected', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ].map(placed);
  }

  const writerCreds = () => ({ led: { privateKey: c.accounts[WRITER].privateKey } });

  async function expectNothingAnchored(collection: string, objects: StixObject[]): Promise<void> {
    for (const o of objects) {
      const { scope, key } = keyForObject(collection, o);
      assert.deepEqual(await reader.lookup(scope, key), [], `${o.id} must not be anchored`);
    }
  }

  it('anchors every object of a bundle and reports key, hash and block of each', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), writerCreds());
    const out = new Collector(helper.getNode('anchored'));
    const objs = [indicator(), malware(), indicator('second')];
    const payload = bundle(objs);
    helper.getNode('anc')?.receive({ payload });
    const [m] = await out.wait(1, 30_000);
    const sets = setsOf(m);
    assert.equal(sets.collection, coll);
    assert.equal(sets.items?.length, 3);
    assert.equal(sets.key, undefined, 'top-level key only for a single object');
    for (const [i, item] of (sets.items ?? []).entries()) {
      assert.equal(item.id, objs[i].id);
      assert.equal(item.type, objs[i].type);
      assert.equal(item.hash, hashObject(objs[i]));
      assert.match(item.anchor.tx, /^0x[0-9a-f]{64}$/);
      const [rec, ...more] = await reader.lookup(collectionScope(coll), item.key);
      assert.equal(more.length, 0);
      assert.equal(rec?.hash, item.hash);
      assert.equal(rec?.entitled, true);
      assert.equal(rec?.writer.toLowerCase(), c.accounts[WRITER].address.toLowerCase());
    }
    assert.deepEqual(m.payload, payload, 'msg.payload passes through unchanged');
  });

  it('a single object (JSON text) gets key, hash and anchor at the top level; re-anchoring is idempotent', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), writerCreds());
    const out = new Collector(helper.getNode('anchored'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: JSON.stringify(o) });
    helper.getNode('anc')?.receive({ payload: o });
    const [first, second] = await out.wait(2, 30_000);
    const s1 = setsOf(first);
    assert.equal(s1.hash, hashObject(o));
    assert.equal(s1.key, keyForObject(coll, o).key);
    assert.ok(s1.anchor && s1.anchor.block > 0);
    const s2 = setsOf(second);
    assert.equal(s2.key, s1.key);
    assert.equal(s2.items?.[0].anchor.existing, true, 'the same (key, hash) again is reported as existing, not an error');
  });

  it('msg.collection overrides the configured collection', async () => {
    const coll = collectionId();
    const other = collectionId();
    await helper.load(allNodes, flow(coll), writerCreds());
    const out = new Collector(helper.getNode('anchored'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o, collection: other });
    const [m] = await out.wait(1, 30_000);
    assert.equal(setsOf(m).collection, other);
    const there = keyForObject(other, o);
    assert.equal((await reader.lookup(there.scope, there.key))[0]?.hash, hashObject(o));
    const here = keyForObject(coll, o);
    assert.deepEqual(await reader.lookup(here.scope, here.key), []);
  });

  it('one bad object among good ones: a clear error for the Catch node, red badge, NOTHING anchored', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), writerCreds());
    const caught = new Collector(helper.getNode('caught'));
    const rec = new Recorder(helper.getNode('anc'));
    const good = [indicator(), malware()];
    const bad = { ...indicator(), pattern: undefined, modified: 'yesterday' };
    helper.getNode('anc')?.receive({ payload: bundle([good[0], bad, good[1]]) });
    const [m] = await caught.wait(1);
    const error = (m as { error?: { message?: string; source?: { id?: string } } }).error;
    assert.equal(error?.source?.id, 'anc');
    assert.match(String(error?.message), /object #1/);
    assert.match(String(error?.message), /modified/);
    await until('red badge', () => rec.lastStatus?.fill === 'red');
    assert.equal(errCode(rec.errors[0]?.err), 'STIX_INVALID');
    await expectNothingAnchored(coll, good);
    assert.equal(new Collector(helper.getNode('anchored')).messages.length, 0);
  });

  it('non-JSON payloads, empty bundles and missing collections are clear errors, nothing anchored', async () => {
    await helper.load(allNodes, flow(''), writerCreds());
    const rec = new Recorder(helper.getNode('anc'));
    const anc = helper.getNode('anc');
    anc?.receive({ payload: 'this is not { json', collection: 'c1' });
    anc?.receive({ payload: 42, collection: 'c1' });
    anc?.receive({ payload: bundle([]), collection: 'c1' });
    anc?.receive({ payload: indicator() });
    await until('4 errors', () => rec.errors.length >= 4);
    const text = rec.errors.map((e) => `${String(errCode(e.err))} ${(e.err as Error).message}`).join('\n');
    assert.match(text, /STIX_INVALID .*not JSON/);
    assert.match(text, /STIX_INVALID .*must be a STIX object/);
    assert.match(text, /STIX_INVALID .*no objects/);
    assert.match(text, /NO_COLLECTION .*msg\.collection/);
  });

  it('verify-hash: verified on output 1, altered in transit -> mismatch on output 2, never anchored -> not-anchored', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), writerCreds());
    const anchored = new Collector(helper.getNode('anchored'));
    const ok = new Collector(helper.getNode('ok'));
    const rejected = new Collector(helper.getNode('rejected'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    await anchored.wait(1, 30_000);
    const ver = helper.getNode('ver');
    ver?.receive({ payload: JSON.stringify(o) });
    const [v] = await ok.wait(1);
    assert.deepEqual(v.payload, o);
    const sv = setsOf(v).verification;
    assert.equal(sv?.status, 'verified');
    assert.equal(sv?.expected, hashObject(o));
    assert.equal(sv?.actual, hashObject(o));
    assert.equal(sv?.key, keyForObject(coll, o).key);

    const altered = { ...o, pattern: "[ipv4-addr:value = '203.0.113.66']" };
    ver?.receive({ payload: altered });
    const [r1] = await rejected.wait(1);
    const s1 = setsOf(r1).verification;
    assert.equal(s1?.status, 'mismatch');
    assert.equal(s1?.expected, hashObject(o));
    assert.equal(s1?.actual, hashObject(altered));
    assert.match(String(s1?.reason), /altered/);

    const stranger = indicator();
    ver?.receive({ payload: stranger });
    const [, r2] = await rejected.wait(2);
    assert.equal(setsOf(r2).verification?.status, 'not-anchored');
    assert.match(String(setsOf(r2).verification?.reason), /no hash anchored/);
    assert.equal(ok.messages.length, 1);
    const rec = new Recorder(helper.getNode('ver'));
    ver?.receive({ payload: o });
    await ok.wait(2);
    await until('count badge', () => rec.statuses.some((s) => s.text === '✓ 2  ✗ 2'));
  });

  it('an object whose anchor is not mined yet (1 s blocks) waits and then verifies', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll, { waitMs: 20_000 }), writerCreds());
    await c.setIntervalMining(1000);
    const ok = new Collector(helper.getNode('ok'));
    const anchored = new Collector(helper.getNode('anchored'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    // the consumer receives the object before the producer's transaction is mined
    helper.getNode('ver')?.receive({ payload: o });
    const [v] = await ok.wait(1, 30_000);
    assert.equal(setsOf(v).verification?.status, 'verified');
    await anchored.wait(1, 30_000);
  });

  it('several objects: one message per object (msg.parts), or the payload kept whole', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), writerCreds());
    const anchored = new Collector(helper.getNode('anchored'));
    const objs = [indicator(), malware(), indicator('third')];
    helper.getNode('anc')?.receive({ payload: bundle(objs) });
    await anchored.wait(1, 30_000);
    const ok = new Collector(helper.getNode('ok'));
    const rejected = new Collector(helper.getNode('rejected'));
    const tampered = [objs[0], { ...objs[1], name: 'renamed' }, objs[2]];
    helper.getNode('ver')?.receive({ payload: bundle(tampered), topic: 'feed-7', meta: { source: 'partner', tags: ['a'] } });
    const good = await ok.wait(2);
    const [bad] = await rejected.wait(1);
    // every message keeps the other properties, each its own copy (the payload is not copied N times)
    for (const m of [...good, bad]) {
      const mm = m as { topic?: string; meta?: { source: string; tags: string[] } };
      assert.equal(mm.topic, 'feed-7');
      assert.deepEqual(mm.meta, { source: 'partner', tags: ['a'] });
    }
    assert.notEqual((good[0] as { meta?: object }).meta, (good[1] as { meta?: object }).meta, 'cloned, not shared');
    assert.deepEqual(
      good.map((m) => (m.payload as StixObject).id),
      [objs[0].id, objs[2].id],
    );
    assert.equal((bad.payload as StixObject).id, objs[1].id);
    assert.equal(setsOf(bad).verification?.status, 'mismatch');
    const parts = [...good, bad].map((m) => (m as { parts?: { index: number; count: number; id: string } }).parts);
    assert.deepEqual(parts.map((p) => p?.index).sort(), [0, 1, 2]);
    assert.ok(parts.every((p) => p?.count === 3 && p.id === parts[0]?.id));
    await helper.unload();

    await helper.load(allNodes, flow(coll, { mode: 'whole' }), writerCreds());
    const ok2 = new Collector(helper.getNode('ok'));
    const rej2 = new Collector(helper.getNode('rejected'));
    helper.getNode('ver')?.receive({ payload: bundle(objs) });
    helper.getNode('ver')?.receive({ payload: bundle(tampered) });
    const [whole] = await ok2.wait(1);
    const [wholeBad] = await rej2.wait(1);
    assert.equal(setsOf(whole).verification?.status, 'verified');
    assert.equal(setsOf(whole).verifications?.length, 3);
    assert.equal(setsOf(wholeBad).verification?.status, 'mismatch');
    assert.deepEqual(
      setsOf(wholeBad).verifications?.map((v) => v.status),
      ['verified', 'mismatch', 'verified'],
    );
  });

  it('keyed hash (HMAC community key): verifies only with the same key', async () => {
    const coll = collectionId();
    const nodes = flow(coll);
    await helper.load(allNodes, nodes, { ...writerCreds(), anc: { hmacKey: 'community-key-1' }, ver: { hmacKey: 'community-key-1' } });
    const anchored = new Collector(helper.getNode('anchored'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [a] = await anchored.wait(1, 30_000);
    assert.equal(setsOf(a).hash, hashObject(o, 'community-key-1'));
    assert.notEqual(setsOf(a).hash, hashObject(o));
    const ok = new Collector(helper.getNode('ok'));
    helper.getNode('ver')?.receive({ payload: o });
    await ok.wait(1);
    await helper.unload();

    await helper.load(allNodes, flow(coll), writerCreds());
    const rejected = new Collector(helper.getNode('rejected'));
    helper.getNode('ver')?.receive({ payload: o });
    const [r] = await rejected.wait(1);
    assert.equal(setsOf(r).verification?.status, 'mismatch');
  });

  it('a writer bound to another collection: anchor-hash fails with NOT_AUTHORISED naming the collection and the grant to ask for; its anchor elsewhere reads wrong-writer on output 2', async () => {
    const mine = collectionId();
    const theirs = collectionId();
    const OTHER = 5;
    // a registry where account 5 may vouch for `theirs` only
    const bound = await c.deployRegistry({ writers: [{ account: c.accounts[OTHER].address, scopes: [collectionScope(theirs)] }] });
    await helper.load(allNodes, flow(mine, { ledger: { contract: bound } }), { led: { privateKey: c.accounts[OTHER].privateKey } });
    const caught = new Collector(helper.getNode('caught'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [err] = await caught.wait(1, 30_000);
    const text = String((err as { error?: { message?: string } }).error?.message);
    assert.match(text, new RegExp(`not allowed to anchor in collection ${mine}`));
    assert.match(text, new RegExp(`grantWriter\\(<account>, ${collectionScope(mine)}\\)`));
    // the same writer anchors the object under its own collection's scope (allowed there) ...
    const writer = createLedger({ kind: 'evm', rpcUrl: c.rpcUrl, chainId: c.chainId, address: bound, privateKey: c.accounts[OTHER].privateKey });
    try {
      const a = keyForObject(mine, o);
      await writer.anchor(collectionScope(theirs), a.key, a.hash);
    } finally {
      await writer.close();
    }
    // ... which does not vouch for `mine`: verify-hash rejects with wrong-writer
    const rejected = new Collector(helper.getNode('rejected'));
    helper.getNode('ver')?.receive({ payload: o });
    const [r] = await rejected.wait(1, 30_000);
    const v = setsOf(r).verification as { status: string; reason?: string; writer?: string };
    assert.equal(v.status, 'wrong-writer');
    assert.equal(v.writer?.toLowerCase(), c.accounts[OTHER].address.toLowerCase());
    assert.match(String(v.reason), /not entitled to vouch for this collection/);
  });

  it('a record of an integrity-off collection (msg.sets.policy "off", as the taxii-server emits it) is looked at once, not waited for', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll, { waitMs: 20_000 }), writerCreds());
    const rejected = new Collector(helper.getNode('rejected'));
    const t0 = Date.now();
    helper.getNode('ver')?.receive({ payload: indicator(), sets: { policy: 'off', collection: coll } });
    const [r] = await rejected.wait(1, 15_000);
    assert.ok(Date.now() - t0 < 15_000, 'not held for the 20 s wait');
    assert.equal(setsOf(r).verification?.status, 'not-anchored');
    assert.doesNotMatch(String(setsOf(r).verification?.reason), /within/, 'one look, no wait');
  });

  it('ledger unreachable: anchor and verify fail with a clear error (not a rejection), badges red, no crash', async () => {
    const gate = await TcpGate.create('127.0.0.1', 1); // closed: nothing listens on its port
    const coll = collectionId();
    await helper.load(allNodes, flow(coll, { ledger: { rpcUrl: `http://127.0.0.1:${gate.port}`, timeout: 1000 } }), writerCreds());
    const caught = new Collector(helper.getNode('caught'));
    const rejected = new Collector(helper.getNode('rejected'));
    const recA = new Recorder(helper.getNode('anc'));
    helper.getNode('anc')?.receive({ payload: indicator() });
    helper.getNode('ver')?.receive({ payload: indicator() });
    const errs = await caught.wait(2, 30_000);
    const messages = errs.map((m) => String((m as { error?: { message?: string } }).error?.message));
    for (const text of messages) assert.match(text, new RegExp(`127\\.0\\.0\\.1:${gate.port}|unreachable|ECONNREFUSED`, 'i'));
    assert.equal(errCode(recA.errors[0]?.err), 'UNREACHABLE');
    assert.equal(rejected.messages.length, 0, 'an unreadable ledger is not a rejection');
    await until('red badge', () => recA.lastStatus?.fill === 'red');
  });

  it('no ledger selected, or a ledger whose settings cannot work: errors on input, no crash', async () => {
    const nodes: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'test' },
      ledgerNode({ contract: 'not-an-address' }),
      { id: 'a1', type: 'anchor-hash', z: 'tab', ledger: '', collection: 'c', wires: [[]] },
      { id: 'a2', type: 'anchor-hash', z: 'tab', ledger: 'led', collection: 'c', wires: [[]] },
    ].map(placed);
    await helper.load(allNodes, nodes, { led: { privateKey: '0xSECRET-not-a-key' } });
    const r1 = new Recorder(helper.getNode('a1'));
    const r2 = new Recorder(helper.getNode('a2'));
    helper.getNode('a1')?.receive({ payload: indicator() });
    helper.getNode('a2')?.receive({ payload: indicator() });
    await until('errors', () => r1.errors.length > 0 && r2.errors.length > 0);
    assert.match((r1.errors[0].err as Error).message, /no ledger configured/);
    const inputError = r2.errors.find((e) => e.err instanceof Error)?.err;
    assert.equal(errCode(inputError), 'BAD_CONFIG', String(inputError));
    assert.match(String((inputError as Error).message), /address/);
    assert.ok(!logText().includes('SECRET') && !r2.text().includes('SECRET'), 'the private key never reaches the log');
  });

  it('secrets stay in credentials: not in the deployed flow JSON, not in the log', async () => {
    const coll = collectionId();
    const key = c.accounts[WRITER].privateKey;
    const nodes = flow(coll).map((n) =>
      n.id === 'led' ? { ...n, credentials: { privateKey: key } } : n.id === 'anc' ? { ...n, credentials: { hmacKey: 'hmac-secret-xyz' } } : n,
    );
    await helper.load(allNodes, flow(coll), {});
    await helper.setFlows(nodes, 'full');
    assert.equal(helper.credentials.getDefinition('sets-ledger')?.privateKey?.type, 'password');
    assert.equal(helper.credentials.getDefinition('anchor-hash')?.hmacKey?.type, 'password');
    assert.equal(helper.credentials.getDefinition('verify-hash')?.hmacKey?.type, 'password');
    const anchored = new Collector(helper.getNode('anchored'));
    helper.getNode('anc')?.receive({ payload: indicator() });
    await anchored.wait(1, 30_000);
    const deployed = JSON.stringify(deployedFlows());
    assert.ok(!deployed.includes(key.slice(2)), 'private key not in the flow JSON');
    assert.ok(!deployed.includes('hmac-secret-xyz'), 'HMAC key not in the flow JSON');
    assert.equal(helper.credentials.get('led')?.privateKey, key);
    assert.ok(!logText().includes(key.slice(2)) && !logText().includes('hmac-secret-xyz'));
  });

  it('closing the config node releases the connection: no sockets or timers left after unload', async () => {
    const handles = new OpenHandles().start();
    const coll = collectionId();
    await helper.load(allNodes, flow(coll, { ledger: { wsUrl: c.wsUrl } }), writerCreds());
    await until('connected', () => (helper.getNode('led') as unknown as { shared: { state: string } }).shared.state === 'connected');
    const anchored = new Collector(helper.getNode('anchored'));
    const ok = new Collector(helper.getNode('ok'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    await anchored.wait(1, 30_000);
    helper.getNode('ver')?.receive({ payload: o });
    await ok.wait(1);
    await helper.unload();
    await handles.expectNone();
  });
});
