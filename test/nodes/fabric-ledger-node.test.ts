/**
 * sets-ledger in Fabric mode, with anchor-hash and verify-hash, on a real Node-RED runtime against
 * the in-process Fabric peer gateway emulator (test/support/fabric-gateway.ts: the real
 * sets-registry chaincode, TLS with a server name override, an identity granted through its Fabric
 * CA attribute). Settings that cannot work are shown on the nodes using the ledger, naming the field.
 */
import { strict as assert } from 'node:assert';
import { collectionScope, hashObject, keyForObject } from '../../lib/digest';
import { Collector, OpenHandles, Recorder, allNodes, deployedFlows, helper, logText, nodeRedVersion, placed, type FlowNode } from './helper';
import { callsOf, startFabricNet, statusesOf, type FabricNet } from './fabric-harness';
import { bundle, collectionId, indicator, malware } from './stix';

interface SetsOut {
  collection?: string;
  items?: Array<{ id: string; key: string; hash: string; anchor: { tx: string; block: number; existing?: boolean } }>;
  key?: string;
  hash?: string;
  anchor?: { tx: string; block: number; existing?: boolean };
  verification?: { status: string; expected?: string; actual: string; key: string; writer?: string; reason?: string };
}
const setsOf = (m: object | undefined): SetsOut => ((m as { sets?: unknown } | undefined)?.sets ?? {}) as SetsOut;
const errCode = (e: unknown): unknown => (e as { code?: unknown }).code;

describe(`sets-ledger in Fabric mode on Node-RED ${nodeRedVersion}`, function () {
  this.timeout(60_000);
  let net: FabricNet;

  before(async function () {
    this.timeout(120_000);
    net = await startFabricNet();
    await helper.startServer();
  });

  after(async () => {
    await helper.stopServer();
    await net?.stop();
  });

  afterEach(async () => {
    await helper.unload();
  });

  /** anchor-hash and verify-hash sharing one Fabric ledger, a Catch node for the tab. */
  function flow(collection: string, ledger: Partial<FlowNode> = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'fabric' },
      net.ledgerNode('led', ledger),
      { id: 'anc', type: 'anchor-hash', z: 'tab', ledger: 'led', collection, wires: [['anchored']] },
      { id: 'anchored', type: 'helper', z: 'tab' },
      { id: 'ver', type: 'verify-hash', z: 'tab', ledger: 'led', collection, waitMs: 0, mode: 'split', wires: [['ok'], ['rejected']] },
      { id: 'ok', type: 'helper', z: 'tab' },
      { id: 'rejected', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ].map(placed);
  }

  it('anchors a bundle on Fabric in one transaction: key, hash, Fabric tx id and block per object, written by the MSP identity', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), { led: net.credentials(net.writer) });
    const out = new Collector(helper.getNode('anchored'));
    const objs = [indicator(), malware()];
    helper.getNode('anc')?.receive({ payload: bundle(objs) });
    const [m] = await out.wait(1, 30_000);
    const items = setsOf(m).items ?? [];
    assert.equal(items.length, 2);
    assert.equal(new Set(items.map((i) => i.anchor.tx)).size, 1, 'one AnchorMany transaction');
    for (const [i, item] of items.entries()) {
      assert.equal(item.hash, hashObject(objs[i]));
      assert.match(item.anchor.tx, /^[0-9a-f]{64}$/, 'a Fabric transaction id');
      assert.ok(item.anchor.block > 0, 'the commit block');
      const recs = await net.reader.lookup(collectionScope(coll), item.key);
      assert.equal(recs.length, 1);
      assert.equal(recs[0].hash, item.hash);
      assert.equal(recs[0].writer, net.writer.writer, 'writer = mspId::subject of the signing certificate');
      assert.equal(recs[0].entitled, true);
    }
    // the same objects again: existing, not an error
    helper.getNode('anc')?.receive({ payload: bundle(objs) });
    const [, again] = await out.wait(2, 30_000);
    assert.ok(setsOf(again).items?.every((i) => i.anchor.existing === true));
    const led = helper.getNode('led') as unknown as { describe(): string };
    assert.equal(led.describe(), `Fabric chaincode ${net.gw.chaincode} on channel ${net.gw.channel} at ${net.gw.endpoint}`);
  });

  it('verify-hash on Fabric: verified on output 1; altered -> mismatch and never anchored -> not-anchored on output 2', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), { led: net.credentials(net.writer) });
    const anchored = new Collector(helper.getNode('anchored'));
    const ok = new Collector(helper.getNode('ok'));
    const rejected = new Collector(helper.getNode('rejected'));
    const o = indicator('fabric anchored');
    helper.getNode('anc')?.receive({ payload: o });
    await anchored.wait(1, 30_000);
    const ver = helper.getNode('ver');
    ver?.receive({ payload: JSON.stringify(o) });
    const [v] = await ok.wait(1, 20_000);
    const sv = setsOf(v).verification;
    assert.equal(sv?.status, 'verified');
    assert.equal(sv?.expected, hashObject(o));
    assert.equal(sv?.key, keyForObject(coll, o).key);
    assert.equal(sv?.writer, net.writer.writer);

    const altered = { ...o, pattern: "[ipv4-addr:value = '203.0.113.66']" };
    ver?.receive({ payload: altered });
    const [r1] = await rejected.wait(1, 20_000);
    assert.equal(setsOf(r1).verification?.status, 'mismatch');
    assert.equal(setsOf(r1).verification?.actual, hashObject(altered));

    ver?.receive({ payload: indicator('never anchored') });
    const [, r2] = await rejected.wait(2, 20_000);
    assert.equal(setsOf(r2).verification?.status, 'not-anchored');
    assert.equal(ok.messages.length, 1);
  });

  it('a verifier identity with no grant reads (verifies) but cannot anchor: NOT_AUTHORISED naming the collection, nothing written', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), { led: net.credentials(net.outsider) });
    const caught = new Collector(helper.getNode('caught'));
    const rec = new Recorder(helper.getNode('anc'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [m] = await caught.wait(1, 30_000);
    assert.equal(errCode(rec.errors.find((e) => e.err instanceof Error)?.err), 'NOT_AUTHORISED');
    assert.match(String((m as { error?: { message?: string } }).error?.message), new RegExp(coll));
    const { scope, key } = keyForObject(coll, o);
    assert.deepEqual(await net.reader.lookup(scope, key), []);
    const rejected = new Collector(helper.getNode('rejected'));
    helper.getNode('ver')?.receive({ payload: o });
    const [r] = await rejected.wait(1, 20_000);
    assert.equal(setsOf(r).verification?.status, 'not-anchored', 'reads work with any member identity');
  });

  it('a private key pasted without its line breaks (a password field is one line) still signs', async () => {
    const coll = collectionId();
    const flat = net.writer.privateKey.replace(/\r?\n/g, '');
    assert.ok(!flat.includes('\n'));
    await helper.load(allNodes, flow(coll), { led: { ...net.credentials(net.writer), privateKey: flat } });
    const out = new Collector(helper.getNode('anchored'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [m] = await out.wait(1, 30_000);
    assert.equal(setsOf(m).hash, hashObject(o));
    const recs = await net.reader.lookup(collectionScope(coll), keyForObject(coll, o).key);
    assert.equal(recs[0]?.writer, net.writer.writer);
  });

  describe('settings that cannot work are shown on the nodes using the ledger (red badge naming the field) and fail each message with BAD_CONFIG', () => {
    const cases: Array<{ title: string; ledger?: Partial<FlowNode>; creds?: (c: Record<string, string>) => Record<string, string>; expect: RegExp }> = [
      { title: 'an endpoint with a scheme', ledger: { peerEndpoint: 'grpcs://peer0.org1.example.com:7051' }, expect: /peer endpoint/ },
      { title: 'an endpoint without a port', ledger: { peerEndpoint: 'peer0.org1.example.com' }, expect: /peer endpoint/ },
      { title: 'no channel', ledger: { channel: '' }, expect: /channel/ },
      { title: 'no MSP id', ledger: { mspId: '' }, expect: /MSP id/ },
      { title: 'an unknown TLS mode', ledger: { tlsMode: 'maybe' }, expect: /TLS mode/ },
      { title: 'no certificate', creds: (c) => ({ ...c, certificate: '' }), expect: /certificate is required/ },
      { title: 'a certificate that is not PEM', creds: (c) => ({ ...c, certificate: 'MIIB-not-pem' }), expect: /certificate must be a PEM/ },
      { title: 'no private key', creds: (c) => ({ ...c, privateKey: '' }), expect: /private key is required/ },
      { title: 'TLS without the TLS CA certificate', creds: (c) => ({ ...c, tlsCaCert: '' }), expect: /TLS CA certificate is required/ },
    ];
    for (const c of cases) {
      it(c.title, async () => {
        const coll = collectionId();
        const creds = c.creds ? c.creds(net.credentials(net.writer)) : net.credentials(net.writer);
        await helper.load(allNodes, flow(coll, c.ledger ?? {}), { led: creds });
        const recA = new Recorder(helper.getNode('anc'));
        const recV = new Recorder(helper.getNode('ver'));
        const caught = new Collector(helper.getNode('caught'));
        // the badge was set while the flow started, before a Recorder could listen: read the
        // helper's spy on Node.prototype.status for calls made by that node
        for (const id of ['anc', 'ver']) {
          const s = statusesOf(id).pop();
          assert.equal(s?.fill, 'red', `${id} badge red: ${JSON.stringify(s)}`);
          assert.match(String(s?.text), /BAD_CONFIG/);
          assert.match(String(s?.text), c.expect);
        }
        // the reason, not a guess: no "has no private key" warning from anchor-hash
        assert.deepEqual(callsOf('anc', 'warn').map((a) => String(a[0])).filter((w) => /private key/.test(w)), []);
        helper.getNode('anc')?.receive({ payload: indicator() });
        helper.getNode('ver')?.receive({ payload: indicator() });
        const errs = await caught.wait(2, 15_000);
        for (const e of errs) assert.match(String((e as { error?: { message?: string } }).error?.message), c.expect);
        const inputError = recA.errors.find((e) => e.err instanceof Error)?.err;
        assert.equal(errCode(inputError), 'BAD_CONFIG', String(inputError));
        assert.ok(recV.errors.length > 0);
        // no secret in what the user sees
        const key = net.writer.privateKey.split('\n')[1];
        assert.ok(!logText().includes(key) && !recA.text().includes(key));
      });
    }
  });

  it('certificate, key and TLS CA are credentials: never in the deployed flow JSON or the log', async () => {
    const coll = collectionId();
    const withCreds = flow(coll).map((n) => (n.id === 'led' ? { ...n, credentials: net.credentials(net.writer) } : n));
    await helper.load(allNodes, flow(coll), {});
    await helper.setFlows(withCreds, 'full');
    const def = helper.credentials.getDefinition('sets-ledger');
    assert.equal(def?.privateKey?.type, 'password');
    assert.equal(def?.certificate?.type, 'text');
    assert.equal(def?.tlsCaCert?.type, 'text');
    const anchored = new Collector(helper.getNode('anchored'));
    helper.getNode('anc')?.receive({ payload: indicator() });
    await anchored.wait(1, 30_000);
    const deployed = JSON.stringify(deployedFlows());
    const keyLine = net.writer.privateKey.split('\n')[1];
    const certLine = net.writer.certificate.split('\n')[1];
    assert.ok(!deployed.includes(keyLine) && !deployed.includes(certLine), 'no PEM in the flow JSON');
    assert.equal(helper.credentials.get('led')?.privateKey, net.writer.privateKey);
    assert.ok(!logText().includes(keyLine));
  });

  it('Test connection (POST sets/probe/ledger) with the dialog\'s Fabric values: connected as the identity, also with a key typed without line breaks and with the saved credentials behind __PWRD__', async () => {
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), { led: net.credentials(net.writer) });
    // supertest against the helper's admin app (the helper's own request(); it ships no types)
    const admin = () => (helper as unknown as { request(): { post(url: string): { send(body: unknown): PromiseLike<{ status: number; body: { ok?: boolean; message?: string } }> } } }).request();
    const probe = async (body: unknown): Promise<{ ok?: boolean; message?: string }> => {
      const r = await admin().post('/sets/probe/ledger').send(body);
      assert.equal(r.status, 200);
      return r.body;
    };
    const config = net.ledgerNode('led');
    const flat = net.writer.privateKey.replace(/\r?\n/g, '');
    const typed = await probe({ config, credentials: { privateKey: flat, certificate: net.writer.certificate, tlsCaCert: net.gw.tlsCaCert } });
    assert.equal(typed.ok, true, typed.message);
    assert.ok(String(typed.message).includes(net.writer.writer), typed.message);
    const saved = await probe({ id: 'led', config, credentials: { privateKey: '__PWRD__', certificate: '', tlsCaCert: '' } });
    assert.equal(saved.ok, true, saved.message);
    const wrong = await probe({ config: { ...config, peerEndpoint: 'https://peer0:7051' }, credentials: { privateKey: flat, certificate: net.writer.certificate, tlsCaCert: net.gw.tlsCaCert } });
    assert.equal(wrong.ok, false);
    assert.match(String(wrong.message), /peer endpoint/);
    const keyLine = net.writer.privateKey.split('\n')[1];
    assert.ok(![typed, saved, wrong].some((a) => JSON.stringify(a).includes(keyLine.slice(0, 20))), 'no key in any answer');
  });

  it('closing releases the Fabric connection: no sockets or timers left after unload', async () => {
    const handles = new OpenHandles().start();
    const coll = collectionId();
    await helper.load(allNodes, flow(coll), { led: net.credentials(net.writer) });
    const anchored = new Collector(helper.getNode('anchored'));
    const ok = new Collector(helper.getNode('ok'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    await anchored.wait(1, 30_000);
    helper.getNode('ver')?.receive({ payload: o });
    await ok.wait(1, 20_000);
    await helper.unload();
    await handles.expectNone();
  });
});
