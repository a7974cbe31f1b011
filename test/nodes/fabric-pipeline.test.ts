/**
 * The SETS pipeline once more with a Hyperledger Fabric ledger (the in-process peer gateway
 * emulator running the real sets-registry chaincode, test/support/fabric-gateway.ts) instead of the
 * EVM chain, on a real Node-RED runtime:
 * - producer: anchor-hash (a writer identity of Org1MSP) -> taxii-publish to the flow's own
 *   taxii-server;
 * - server: taxii-server with integrity policy "required" and an embedded store; admitted objects
 *   distributed over a real RabbitMQ (rabbit-publish) and verified on Fabric (verify-hash waiting
 *   for the anchor -> integrity-status): anchored then POSTed -> finalized, tampered -> invalid;
 * - subscriber: rabbit-subscribe -> verify-hash on Fabric: verified, a tampered copy rejected;
 * - inquirer: taxii-inquire -> verify-hash on Fabric: verified, a record altered in the store
 *   rejected.
 * The consumers verify with an identity that holds no grant (reads need only membership).
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { rabbit } from '../support/services';
import type { RabbitHandle } from '../support/rabbit';
import { BasicAuth } from '../../lib/auth/client';
import { collectionScope, hashObject, keyForObject } from '../../lib/digest';
import { TaxiiClient, type TaxiiStatus } from '../../lib/taxii/client';
import type { StixObject } from '../../lib/stix';
import { Collector, helper, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { baseUrl, bridgeHttpNode, runtimeSettings, serverNodes, tamperStoredRecord } from './server-harness';
import { startFabricNet, statusesOf, type FabricNet } from './fabric-harness';
import { bundle, collectionId, indicator, malware } from './stix';

interface SetsOut {
  collection?: string;
  key?: string;
  hash?: string;
  origin?: string;
  status?: string;
  items?: Array<{ id: string; key: string; hash: string; anchor: { tx: string; block: number } }>;
  verification?: { status: string; reason?: string; writer?: string };
  integrity?: { status: string; changed: boolean; reason: string; origin?: string };
  taxii?: { status: string; success_count: number; failure_count: number; failures?: Array<{ id: string; message?: string }> };
}
type Msg = { payload?: unknown; collection?: string; sets?: SetsOut };
const asMsg = (m: unknown): Msg => m as Msg;
const idOf = (m: unknown): string => (asMsg(m).payload as StixObject).id;

const USERS = 'org-a:org-a-pw:member\nreader:reader-pw:viewer';
const WAIT_MS = 3000; // the server's verify-hash waits this long for the producer's anchor

describe(`SETS pipeline on Hyperledger Fabric, Node-RED ${nodeRedVersion}`, function () {
  this.timeout(90_000);
  let net: FabricNet;
  let r: RabbitHandle;
  let brokerPort: number;
  let userDir: string;
  const COLL = collectionId();
  const TAG = randomBytes(4).toString('hex');
  const EXCHANGE = `sets-fab-${TAG}`;
  const QUEUE = `q-fab-${TAG}`;
  const clients: TaxiiClient[] = [];

  before(async function () {
    this.timeout(180_000);
    [net, r] = await Promise.all([startFabricNet(), rabbit()]);
    brokerPort = Number(new URL(r.url).port);
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-fab-userdir-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });

  after(async () => {
    for (const cl of clients) cl.close();
    await helper.stopServer();
    await net?.stop();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await helper.unload();
  });

  function flow(): FlowNode[] {
    const discovery = `${baseUrl()}/taxii/taxii2/`;
    return [
      { id: 'tab', type: 'tab', label: 'SETS on Fabric' },
      // the producer's ledger (a granted writer) and the consumers' (a member without a grant)
      net.ledgerNode('ledW', { name: 'Fabric writer' }),
      net.ledgerNode('ledR', { name: 'Fabric reader' }),
      { id: 'store', type: 'sets-store', name: 'fabric flow store', kind: 'embedded' },
      { id: 'mq', type: 'sets-broker', host: '127.0.0.1', port: brokerPort, vhost: '/', exchange: EXCHANGE, prefetch: 100, heartbeat: 30, timeout: 5000 },
      { id: 'tx', type: 'sets-taxii', url: discovery, authType: 'basic', tlsVerify: true, timeout: 10000 },
      // producer: anchor, then publish (paper step 1)
      { id: 'anc', type: 'anchor-hash', z: 'tab', ledger: 'ledW', collection: COLL, wires: [['pub', 'anchored']] },
      { id: 'ancOnly', type: 'anchor-hash', z: 'tab', ledger: 'ledW', collection: COLL, wires: [['anchored']] },
      { id: 'pub', type: 'taxii-publish', z: 'tab', server: 'tx', collection: COLL, waitStatus: true, statusTimeout: 30000, onFailure: 'pass', wires: [['published']] },
      // server: admission (steps 2-3) and serving (step 5)
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: 'store',
        basePath: '/taxii',
        title: 'SETS on Fabric',
        apiRoot: 'api1',
        collections: [{ id: COLL, title: 'shared CTI', canRead: ['member', 'viewer'], canWrite: ['member'], integrity: 'required' }],
        wires: [['dist', 'verA'], ['verI']],
      },
      { id: 'dist', type: 'rabbit-publish', z: 'tab', broker: 'mq', wires: [[]] },
      { id: 'verA', type: 'verify-hash', z: 'tab', ledger: 'ledR', waitMs: WAIT_MS, wires: [['integ'], ['integ']] },
      { id: 'verI', type: 'verify-hash', z: 'tab', ledger: 'ledR', waitMs: 0, wires: [['integ'], ['integ']] },
      { id: 'integ', type: 'integrity-status', z: 'tab', server: '', wires: [['settled']] },
      // subscriber (step 4)
      { id: 'sub', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'types', collection: COLL, types: '', queue: QUEUE, ackMode: 'auto', deadLetter: '', wires: [['verS']] },
      { id: 'verS', type: 'verify-hash', z: 'tab', ledger: 'ledR', waitMs: 15000, mode: 'split', wires: [['subOk'], ['subRejected']] },
      // inquirer (step 6)
      { id: 'inq', type: 'taxii-inquire', z: 'tab', server: 'tx', collection: COLL, operation: 'objects', limit: 100, maxItems: 0, output: 'all', wires: [['verQ']] },
      { id: 'verQ', type: 'verify-hash', z: 'tab', ledger: 'ledR', waitMs: 0, mode: 'split', wires: [['inqOk'], ['inqRejected']] },
      ...['anchored', 'published', 'settled', 'subOk', 'subRejected', 'inqOk', 'inqRejected', 'caught'].map((id) => ({ id, type: 'helper', z: 'tab' })),
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    ].map(placed);
  }
  // a fresh object each time: the runtime keeps the object it is given
  const creds = (): Record<string, Record<string, string>> => ({
    ledW: net.credentials(net.writer),
    ledR: net.credentials(net.outsider),
    srv: { users: USERS },
    tx: { username: 'org-a', password: 'org-a-pw' },
  });

  function client(): TaxiiClient {
    const cl = new TaxiiClient({ discoveryUrl: `${baseUrl()}/taxii/taxii2/`, auth: new BasicAuth('org-a', 'org-a-pw'), timeoutMs: 10_000, pollIntervalMs: 100 });
    clients.push(cl);
    return cl;
  }

  async function finalStatus(cl: TaxiiClient, id: string): Promise<TaxiiStatus> {
    return until(`status ${id} complete`, async () => {
      const s = await cl.getStatus(id);
      return s.status === 'complete' ? s : null;
    }, 30_000);
  }

  /** Wait until rabbit-subscribe consumes from its queue (its badge turns green: "0 received"). */
  async function subscribed(): Promise<void> {
    await until('rabbit-subscribe consuming', () => statusesOf('sub').pop()?.fill === 'green', 30_000).catch((err: Error) => {
      throw new Error(`${err.message}; rabbit-subscribe badges: ${JSON.stringify(statusesOf('sub'))}`);
    });
  }

  it('server flow: anchor-hash on Fabric then taxii-publish -> admitted pending, verified on Fabric -> finalized; status complete; the subscriber verifies the distributed copy', async () => {
    await helper.load(serverNodes, flow(), creds());
    await subscribed();
    const anchored = new Collector(helper.getNode('anchored'));
    const published = new Collector(helper.getNode('published'));
    const settled = new Collector(helper.getNode('settled'));
    const subOk = new Collector(helper.getNode('subOk'));
    const objs = [indicator('fabric pipeline'), malware('fabric pipeline')];
    helper.getNode('anc')?.receive({ payload: bundle(objs) });
    const [a] = await anchored.wait(1, 30_000);
    const items = asMsg(a).sets?.items ?? [];
    assert.equal(items.length, 2);
    for (const item of items) {
      const recs = await net.reader.lookup(collectionScope(COLL), item.key);
      assert.equal(recs[0]?.writer, net.writer.writer, 'anchored on Fabric by the writer identity');
    }
    const [p] = await published.wait(1, 40_000);
    const st = asMsg(p).sets?.taxii;
    assert.equal(st?.status, 'complete', JSON.stringify(st));
    assert.equal(st?.success_count, 2);
    assert.equal(st?.failure_count, 0);
    const results = await settled.wait(2, 30_000);
    for (const s of results) {
      assert.equal(asMsg(s).sets?.verification?.status, 'verified');
      assert.equal(asMsg(s).sets?.verification?.writer, net.writer.writer);
      assert.equal(asMsg(s).sets?.integrity?.status, 'finalized');
    }
    assert.deepEqual(results.map(idOf).sort(), objs.map((o) => o.id).sort());
    // step 4: the distributed copies, verified on Fabric by the subscriber
    await until('both objects verified by the subscriber', () => objs.every((o) => subOk.messages.some((m) => idOf(m) === o.id)), 30_000);
    for (const m of subOk.messages.filter((x) => objs.some((o) => o.id === idOf(x)))) assert.equal(asMsg(m).sets?.verification?.status, 'verified');
  });

  it('a POST that differs from the anchored object -> mismatch on Fabric, record invalid, status failure; the tampered copy on RabbitMQ is rejected by the subscriber', async () => {
    await helper.load(serverNodes, flow(), creds());
    await subscribed();
    const anchored = new Collector(helper.getNode('anchored'));
    const settled = new Collector(helper.getNode('settled'));
    const subRejected = new Collector(helper.getNode('subRejected'));
    const original = indicator('genuine', '198.51.100.7');
    helper.getNode('ancOnly')?.receive({ payload: original });
    await anchored.wait(1, 30_000);
    const altered = { ...original, pattern: "[ipv4-addr:value = '203.0.113.66']" };
    const cl = client();
    const st = await cl.addObjects(COLL, [altered], { wait: false });
    assert.equal(st.status, 'pending');
    const [s] = await settled.wait(1, 30_000);
    assert.equal(asMsg(s).sets?.verification?.status, 'mismatch');
    assert.equal(asMsg(s).sets?.integrity?.status, 'invalid');
    const done = await finalStatus(cl, st.id);
    assert.equal(done.failure_count, 1);
    assert.match(String(done.failures?.[0]?.message), /hash mismatch/);
    // the server distributed the altered copy at once (step 3 runs beside the check): the
    // subscriber recomputes its hash and rejects it
    const [bad] = await subRejected.wait(1, 30_000);
    assert.equal(idOf(bad), original.id);
    assert.equal(asMsg(bad).sets?.verification?.status, 'mismatch');

    // never anchored: not-anchored after the server's wait, invalid
    const stray = indicator('never anchored on Fabric');
    const st2 = await cl.addObjects(COLL, [stray], { wait: false });
    const [, s2] = await settled.wait(2, WAIT_MS + 30_000);
    assert.equal(idOf(s2), stray.id);
    assert.equal(asMsg(s2).sets?.verification?.status, 'not-anchored');
    assert.equal(asMsg(s2).sets?.integrity?.status, 'invalid');
    const done2 = await finalStatus(cl, st2.id);
    assert.match(String(done2.failures?.[0]?.message), /not anchored/);
  });

  it('inquirer: taxii-inquire -> verify-hash on Fabric verifies what the server serves; a record altered in the store is rejected (mismatch) by the inquirer and marked invalid by the server', async () => {
    await helper.load(serverNodes, flow(), creds());
    let published = new Collector(helper.getNode('published'));
    const keep = indicator('kept on Fabric');
    const victim = malware('altered behind the server');
    helper.getNode('anc')?.receive({ payload: bundle([keep, victim]) });
    const [p] = await published.wait(1, 40_000);
    assert.equal(asMsg(p).sets?.taxii?.success_count, 2);

    let inqOk = new Collector(helper.getNode('inqOk'));
    helper.getNode('inq')?.receive({ payload: '', filters: { match: { id: [keep.id, victim.id] } } });
    const verified = await inqOk.wait(2, 30_000);
    assert.deepEqual(verified.map(idOf).sort(), [keep.id, victim.id].sort());
    for (const v of verified) {
      assert.equal(asMsg(v).sets?.verification?.status, 'verified');
      assert.equal((asMsg(v).sets?.verification as { key?: string } | undefined)?.key, keyForObject(COLL, v.payload as StixObject).key);
      assert.equal((asMsg(v).sets?.verification as { actual?: string } | undefined)?.actual, hashObject(v.payload as StixObject));
    }
    await helper.unload();

    // an insider edits the server's database while it is down
    const dir = path.join(userDir, 'sets-store', 'store');
    assert.equal(
      await tamperStoredRecord(dir, COLL, victim.id, (obj) => {
        obj['name'] = 'Harmless tool';
      }),
      1,
    );

    await helper.load(serverNodes, flow(), creds());
    published = new Collector(helper.getNode('published'));
    inqOk = new Collector(helper.getNode('inqOk'));
    const inqRejected = new Collector(helper.getNode('inqRejected'));
    const settled = new Collector(helper.getNode('settled'));
    helper.getNode('inq')?.receive({ payload: '', filters: { match: { id: [keep.id, victim.id] } } });
    const [rej] = await inqRejected.wait(1, 30_000);
    assert.equal(idOf(rej), victim.id);
    assert.equal(asMsg(rej).sets?.verification?.status, 'mismatch');
    const [ok] = await inqOk.wait(1, 30_000);
    assert.equal(idOf(ok), keep.id);
    // the server re-verified what it served, on Fabric, and refuses the altered record from now on
    await until('the altered record marked invalid', () => settled.messages.some((m) => idOf(m) === victim.id && asMsg(m).sets?.integrity?.status === 'invalid'), 30_000);
    const again = new Collector(helper.getNode('inqOk'));
    helper.getNode('inq')?.receive({ payload: '', filters: { match: { id: [keep.id, victim.id] } } });
    const [only] = await again.wait(1, 30_000);
    assert.equal(idOf(only), keep.id);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(again.messages.length, 1, 'the invalid record is no longer served');
    assert.equal(inqRejected.messages.length, 1);
  });
});
