/**
 * The collection setting as a typedInput (str | msg | flow | env) in taxii-publish, taxii-inquire,
 * anchor-hash and verify-hash: evaluated per message, a clear error when it resolves to nothing,
 * old flows (a plain string, no collectionType) unchanged. And taxii-publish's badge for refused
 * objects: which object and why, the full list in the error.
 */
import { strict as assert } from 'node:assert';
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';
import { Collector, Recorder, allNodes, helper, placed, until, type FlowNode } from './helper';
import { indicator, malware } from './stix';

type Msg = {
  collection?: string;
  sets?: { taxii?: { success_count: number; failure_count: number; failures?: Array<{ id: string; message?: string }> }; inquiry?: { collection: string; count: number } };
  error?: { message?: string; code?: string };
};
const asMsg = (m: unknown): Msg => m as Msg;
const RW = DEFAULT_COLLECTIONS[0].id;
const RO = DEFAULT_COLLECTIONS[1].id;

describe('collection typedInput and the publish badge', function () {
  this.timeout(30_000);
  let taxii: TestTaxiiServer;

  before(async () => {
    taxii = await startTestTaxiiServer({ basic: { alice: 'alice-pw-42' } });
  });
  after(async () => {
    await taxii?.stop();
  });
  afterEach(async () => {
    await helper.unload();
  });

  function flow(publish: Partial<FlowNode>, inquire: Partial<FlowNode> = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'collections', env: [{ name: 'SETS_COLL', value: RW, type: 'str' }] },
      { id: 'srv', type: 'sets-taxii', url: taxii.discoveryUrl, authType: 'basic', timeout: 5000 },
      { id: 'pub', type: 'taxii-publish', z: 'tab', server: 'srv', waitStatus: true, statusTimeout: 10000, onFailure: 'error', wires: [['published']], ...publish },
      { id: 'published', type: 'helper', z: 'tab' },
      { id: 'inq', type: 'taxii-inquire', z: 'tab', server: 'srv', operation: 'objects', maxItems: 0, output: 'all', wires: [['got']], ...inquire },
      { id: 'got', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ].map(placed);
  }
  const creds = { srv: { username: 'alice', password: 'alice-pw-42' } };
  const postsTo = (coll: string): number => taxii.requestsTo(`/collections/${coll}/objects/`).filter((r) => r.method === 'POST').length;

  it('old flows: a plain string (no collectionType) is used, msg.collection still overrides it', async () => {
    await helper.load(allNodes, flow({ collection: RW }, { collection: RW }), creds);
    const published = new Collector(helper.getNode('published'));
    const before = postsTo(RW);
    helper.getNode('pub')?.receive({ payload: indicator('old flow') });
    await published.wait(1);
    assert.equal(postsTo(RW), before + 1);
    const got = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ collection: RO });
    const [m] = await got.wait(1);
    assert.equal(asMsg(m).sets?.inquiry?.collection, RO);
  });

  it('msg: read from the named message property for each message', async () => {
    await helper.load(allNodes, flow({ collection: 'target.coll', collectionType: 'msg' }, { collection: 'where', collectionType: 'msg' }), creds);
    const published = new Collector(helper.getNode('published'));
    const before = postsTo(RW);
    helper.getNode('pub')?.receive({ payload: indicator('via msg'), target: { coll: RW } });
    await published.wait(1);
    assert.equal(postsTo(RW), before + 1);
    const got = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ where: RO });
    helper.getNode('inq')?.receive({ where: RW });
    const [a, b] = await got.wait(2);
    assert.deepEqual([asMsg(a).sets?.inquiry?.collection, asMsg(b).sets?.inquiry?.collection].sort(), [RO, RW].sort());
  });

  it('msg: a property that is missing, empty or not a string fails the message with a clear error', async () => {
    await helper.load(allNodes, flow({ collection: 'target', collectionType: 'msg' }), creds);
    const caught = new Collector(helper.getNode('caught'));
    const before = postsTo(RW);
    helper.getNode('pub')?.receive({ payload: indicator('a') });
    helper.getNode('pub')?.receive({ payload: indicator('b'), target: '' });
    helper.getNode('pub')?.receive({ payload: indicator('c'), target: 42 });
    const errs = (await caught.wait(3)).map((m) => String(asMsg(m).error?.message));
    assert.ok(errs.some((e) => /no collection: msg\.target is not set/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /no collection: msg\.target is empty/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /the collection from msg\.target must be a string, got number/.test(e)), errs.join('\n'));
    assert.equal(postsTo(RW), before, 'nothing was sent');
  });

  it('flow and env: read from flow context and from an environment variable of the tab', async () => {
    await helper.load(allNodes, flow({ collection: 'SETS_COLL', collectionType: 'env' }, { collection: 'coll', collectionType: 'flow' }), creds);
    const published = new Collector(helper.getNode('published'));
    const before = postsTo(RW);
    helper.getNode('pub')?.receive({ payload: indicator('via env') });
    await published.wait(1);
    assert.equal(postsTo(RW), before + 1);
    const inq = helper.getNode('inq') as unknown as { context(): { flow: { set(k: string, v: unknown): void } }; receive(m: unknown): void };
    const caught = new Collector(helper.getNode('caught'));
    inq.receive({});
    const [e] = await caught.wait(1);
    assert.match(String(asMsg(e).error?.message), /no collection: flow\.coll is not set/);
    inq.context().flow.set('coll', RO);
    const got = new Collector(helper.getNode('got'));
    inq.receive({});
    const [m] = await got.wait(1);
    assert.equal(asMsg(m).sets?.inquiry?.collection, RO);
  });

  it('an empty msg/flow/env name or an unknown type is a configuration error shown on the node', async () => {
    await helper.load(allNodes, flow({ collection: '', collectionType: 'msg' }, { collection: RW, collectionType: 'global' }), creds);
    const caught = new Collector(helper.getNode('caught'));
    helper.getNode('pub')?.receive({ payload: indicator('x') });
    helper.getNode('inq')?.receive({});
    const errs = (await caught.wait(2)).map((m) => String(asMsg(m).error?.message));
    assert.ok(errs.some((e) => /the collection comes from msg, but its name is empty/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /collection source must be one of str, msg, flow, env/.test(e)), errs.join('\n'));
  });

  it('anchor-hash and verify-hash: a bad collection setting is named before the (missing) ledger', async () => {
    await helper.load(
      allNodes,
      [
        { id: 'tab', type: 'tab', label: 'x' },
        { id: 'anc', type: 'anchor-hash', z: 'tab', ledger: '', collection: '', collectionType: 'env', wires: [[]] },
        { id: 'ver', type: 'verify-hash', z: 'tab', ledger: '', collection: 'x', collectionType: 'jsonata', wires: [[], [], []] },
        { id: 'ver2', type: 'verify-hash', z: 'tab', ledger: '', collection: 'target', collectionType: 'msg', wires: [[], [], []] },
      ].map(placed),
    );
    const anc = new Recorder(helper.getNode('anc'));
    const ver = new Recorder(helper.getNode('ver'));
    const ver2 = new Recorder(helper.getNode('ver2'));
    helper.getNode('anc')?.receive({ payload: indicator('a') });
    helper.getNode('ver')?.receive({ payload: indicator('v') });
    helper.getNode('ver2')?.receive({ payload: indicator('w') });
    await until('three errors', () => anc.errors.length > 0 && ver.errors.length > 0 && ver2.errors.length > 0);
    assert.match(anc.text(), /the collection comes from an environment variable, but its name is empty/);
    assert.match(ver.text(), /collection source must be one of str, msg, flow, env/);
    assert.match(ver2.text(), /no collection: msg\.target is not set/);
  });

  describe('taxii-publish badge for refused objects', () => {
    const REASON = 'already present and marked invalid: hash mismatch: the object differs from the one anchored on the ledger';
    let restore: (() => void) | undefined;
    afterEach(() => restore?.());

    /** The server refuses every malware object with the SETS server's reason. */
    function refuseMalware(): void {
      const statuses = taxii.state.statuses;
      const set = statuses.set.bind(statuses);
      statuses.set = (id, s) => {
        const bad = s.successes.filter((d) => String(d['id']).startsWith('malware--'));
        s.successes = s.successes.filter((d) => !bad.includes(d));
        s.failures = [...s.failures, ...bad.map((d) => ({ ...d, message: REASON }))];
        return set(id, s);
      };
      restore = () => {
        statuses.set = set;
      };
    }

    it('names the first refused object and why; the error lists every one', async () => {
      refuseMalware();
      await helper.load(allNodes, flow({ collection: RW }), creds);
      const rec = new Recorder(helper.getNode('pub'));
      const caught = new Collector(helper.getNode('caught'));
      const m1 = malware('refused one');
      const m2 = malware('refused two');
      helper.getNode('pub')?.receive({ payload: [indicator('fine'), m1, m2] });
      const [e] = await caught.wait(1);
      const text = String(asMsg(e).error?.message);
      assert.match(text, /TAXII collection .*: 2 of 3 object\(s\) rejected/);
      assert.ok(text.includes(m1.id) && text.includes(m2.id), text);
      assert.equal(asMsg(e).sets?.taxii?.failure_count, 2);
      const badge = await until('red badge', () => rec.statuses.find((s) => s.fill === 'red'));
      assert.equal(badge.text, `✗ rejected malware--${m1.id.slice(9, 12)}…: invalid (tampered) (+1)`);
    });

    it('"pass on": a yellow badge with the counts and the first refused object', async () => {
      refuseMalware();
      await helper.load(allNodes, flow({ collection: RW, onFailure: 'pass' }), creds);
      const rec = new Recorder(helper.getNode('pub'));
      const published = new Collector(helper.getNode('published'));
      const m1 = malware('refused');
      helper.getNode('pub')?.receive({ payload: [indicator('fine'), m1] });
      await published.wait(1);
      const badge = await until('yellow badge', () => rec.statuses.find((s) => s.fill === 'yellow'));
      assert.equal(badge.text, `1 ok, 1 rejected: malware--${m1.id.slice(9, 12)}…`);
    });
  });
});
