/**
 * Re-verification of served records, batched per page (issue 9): a taxii-server node with "Output 2:
 * one message per served page" sends one message per GET answer (msg.payload = the objects,
 * msg.sets.records = each one's record info); verify-hash in "whole" mode reads their anchors in
 * one batched ledger read, and integrity-status settles every record of the page with its own
 * verification — none is left out. Real Node-RED, real EVM chain (hardhat).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { keyForObject } from '../../lib/digest';
import type { StixObject } from '../../lib/stix';
import { Collector, helper, logText, placed, until, type FlowNode } from '../nodes/helper';
import { TAXII, baseUrl, basic, bridgeHttpNode, mountedServers, raw, runtimeSettings, serverNodes } from '../nodes/server-harness';
import { collectionId, indicator } from '../nodes/stix';

interface PageSets {
  origin?: string;
  policy?: string;
  records?: Array<{ id: string; version: string; origin: string }>;
  verifications?: Array<{ id: string; status: string }>;
  integrity?: { count: number; changed: number; results: Array<{ id: string; status: string; changed: boolean }> };
}
type Msg = { payload?: unknown; sets?: PageSets };

const USERS = 'org-a:org-a-pw:member';

describe('taxii-server: served objects re-verified one page at a time', function () {
  this.timeout(120_000);
  let c: ChainHandle;
  let registry: string;
  let producer: Ledger;
  let userDir: string;
  const COLL = collectionId();

  before(async function () {
    this.timeout(180_000);
    c = await chain();
    registry = await c.deployRegistry();
    producer = createLedger({ kind: 'evm', rpcUrl: c.rpcUrl, chainId: c.chainId, address: registry, privateKey: c.accounts[3].privateKey });
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-page-userdir-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });
  after(async () => {
    await producer?.close();
    await helper.stopServer();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await helper.unload();
  });

  const flow = (servedAs: string): FlowNode[] =>
    [
      { id: 'tab', type: 'tab', label: 'SETS served pages' },
      { id: 'store', type: 'sets-store', name: 'page store', kind: 'embedded' },
      { id: 'led', type: 'sets-ledger', rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 10000 },
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: 'store',
        basePath: '/taxii',
        title: 'SETS page test',
        apiRoot: 'api1',
        anchorGrace: 0, // a read's "not anchored" counts at once
        servedAs,
        collections: [{ id: COLL, title: 'shared CTI', canRead: ['member'], canWrite: ['member'], integrity: 'required' }],
        // admissions are left pending here: only the inquiry path settles
        wires: [['admitted'], ['verI', 'served']],
      },
      { id: 'verI', type: 'verify-hash', z: 'tab', ledger: 'led', waitMs: 0, mode: 'whole', wires: [['integ'], ['integ'], ['integ']] },
      { id: 'integ', type: 'integrity-status', z: 'tab', server: 'srv', wires: [['settled']] },
      ...['admitted', 'served', 'settled', 'caught'].map((id) => ({ id, type: 'helper', z: 'tab' })),
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    ].map(placed);

  const post = (objects: StixObject[]): ReturnType<typeof raw> =>
    raw('POST', `${baseUrl()}/taxii/api1/collections/${COLL}/objects/`, {
      headers: { ...basic('org-a', 'org-a-pw'), 'Content-Type': TAXII },
      body: JSON.stringify({ objects }),
    });

  it('one message per GET answer; every record of the page is settled with its own verdict', async () => {
    await helper.load(serverNodes, flow('page'), { srv: { users: USERS } });
    await until('server mounted', () => mountedServers().length === 1);
    const served = new Collector(helper.getNode('served'));
    const settled = new Collector(helper.getNode('settled'));
    const caught = new Collector(helper.getNode('caught'));
    const objs = Array.from({ length: 5 }, (_, k) => indicator(`page ${k}`, `10.0.9.${k}`));
    // all but the last are anchored by their producer
    for (const o of objs.slice(0, 4)) {
      const a = keyForObject(COLL, o);
      await producer.anchor(a.scope, a.key, a.hash);
    }
    const p = await post(objs);
    assert.equal(p.status, 202, p.text);
    const statusId = (p.json as { id: string }).id;

    const page = await raw('GET', `${baseUrl()}/taxii/api1/collections/${COLL}/objects/`, { headers: basic('org-a', 'org-a-pw') });
    assert.equal(page.status, 200, page.text);
    assert.equal((page.json as { objects: unknown[] }).objects.length, 5);

    const [m] = (await served.wait(1)) as Msg[];
    assert.ok(Array.isArray(m.payload), 'the page is one message');
    assert.equal((m.payload as unknown[]).length, 5);
    assert.equal(m.sets?.origin, 'inquiry');
    assert.deepEqual(
      m.sets?.records?.map((r) => r.id),
      (m.payload as StixObject[]).map((o) => o.id),
      'records in payload order',
    );

    const [s] = (await settled.wait(1, 30_000)) as Msg[];
    const integ = s.sets?.integrity;
    assert.ok(integ, JSON.stringify(s.sets));
    assert.equal(integ.count, 5);
    assert.equal(integ.changed, 5);
    const byId = new Map(integ.results.map((r) => [r.id, r.status]));
    for (const o of objs.slice(0, 4)) assert.equal(byId.get(o.id), 'finalized');
    assert.equal(byId.get(objs[4].id), 'invalid');
    assert.equal(caught.messages.length, 0);

    // the status resource of the POST followed, and the unanchored object is refused from now on
    const st = await raw('GET', `${baseUrl()}/taxii/api1/status/${statusId}/`, { headers: basic('org-a', 'org-a-pw') });
    const sj = st.json as { status: string; success_count: number; failure_count: number };
    assert.equal(sj.status, 'complete');
    assert.equal(sj.success_count, 4);
    assert.equal(sj.failure_count, 1);
    const gone = await raw('GET', `${baseUrl()}/taxii/api1/collections/${COLL}/objects/${objs[4].id}/`, { headers: basic('org-a', 'org-a-pw') });
    assert.equal(gone.status, 404);
    // only one message went out on output 2 for the 5 objects
    assert.equal(served.messages.length, 1);
  });

  it('an unknown served-objects setting stops the node with a clear error', async () => {
    await helper.load(serverNodes, flow('batch'), { srv: { users: USERS } });
    await until('the error is logged', () => /served objects must be \\"object\\"/.test(logText()));
    assert.equal(mountedServers().length, 0, 'not mounted');
  });
});
