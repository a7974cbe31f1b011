/**
 * verify-hash on a real Node-RED runtime when the ledger cannot be read by the end of the wait:
 * `unknown` goes to output 3 ("undecided, retry later"), never to the rejected output; a flow
 * saved when the node had two outputs gets it as a catchable node.error, never lost.
 */
import { strict as assert } from 'node:assert';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { Collector, Recorder, allNodes, helper, placed, until, type FlowNode } from './helper';
import { collectionId, indicator } from './stix';

interface Verdict {
  status?: string;
  cause?: string;
  reason?: string;
}
const verdictOf = (m: object | undefined): Verdict =>
  ((m as { sets?: { verification?: Verdict } } | undefined)?.sets?.verification ?? {}) as Verdict;

describe('verify-hash with an unreachable ledger (Node-RED)', function () {
  this.timeout(90_000);
  let c: ChainHandle;
  let registry: string;
  let proxy: TcpProxy;

  before(async function () {
    this.timeout(120_000);
    c = await chain();
    registry = await c.deployRegistry();
    await helper.startServer();
  });

  after(async () => {
    await helper.stopServer();
  });

  beforeEach(async () => {
    proxy = await startTcpProxy(Number(new URL(c.rpcUrl).port));
  });

  afterEach(async () => {
    await helper.unload();
    await proxy.close();
  });

  /** outputs 3: all wired; 2: saved before output 3 existed; 'unwired': three outputs, the third unconnected */
  function flow(collection: string, outputs: 2 | 3 | 'unwired', mode = 'split'): FlowNode[] {
    const wires = outputs === 3 ? [['ok'], ['rejected'], ['undecided']] : outputs === 2 ? [['ok'], ['rejected']] : [['ok'], ['rejected'], []];
    return [
      { id: 'tab', type: 'tab', label: 'test' },
      { id: 'led', type: 'sets-ledger', name: 'chain', kind: 'evm', rpcUrl: `http://127.0.0.1:${proxy.port}`, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 500 },
      { id: 'ver', type: 'verify-hash', z: 'tab', ledger: 'led', collection, waitMs: 1500, mode, wires },
      { id: 'ok', type: 'helper', z: 'tab' },
      { id: 'rejected', type: 'helper', z: 'tab' },
      { id: 'undecided', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ].map(placed);
  }

  it('unknown goes to output 3 with the reason; nothing on "rejected"; the badge counts it', async () => {
    await helper.load(allNodes, flow(collectionId(), 3));
    const undecided = new Collector(helper.getNode('undecided'));
    const rejected = new Collector(helper.getNode('rejected'));
    const rec = new Recorder(helper.getNode('ver'));
    await proxy.cut();
    helper.getNode('ver')?.receive({ payload: indicator() });
    const [m] = await undecided.wait(1, 30_000);
    const v = verdictOf(m);
    assert.equal(v.status, 'unknown');
    assert.equal(v.cause, 'unreachable');
    assert.match(String(v.reason), /did not answer|retry later/);
    assert.equal(rejected.messages.length, 0);
    await proxy.restore();
    await until('badge with an undecided count', () => rec.statuses.some((s) => /\? 1/.test(String(s.text))), 30_000);
  });

  it('keep the payload whole: some undecided, none rejected -> output 3', async () => {
    await helper.load(allNodes, flow(collectionId(), 3, 'whole'));
    const undecided = new Collector(helper.getNode('undecided'));
    await proxy.cut();
    helper.getNode('ver')?.receive({ payload: [indicator(), indicator('b')] });
    const [m] = await undecided.wait(1, 30_000);
    assert.equal(verdictOf(m).status, 'unknown');
  });

  for (const outputs of [2, 'unwired'] as const) {
    it(`${outputs === 2 ? 'a flow saved with two outputs' : 'output 3 not connected'}: unknown is a node.error a Catch node receives with the message`, async () => {
      await helper.load(allNodes, flow(collectionId(), outputs));
      const caught = new Collector(helper.getNode('caught'));
      const rejected = new Collector(helper.getNode('rejected'));
      await proxy.cut();
      helper.getNode('ver')?.receive({ payload: indicator() });
      const [m] = await caught.wait(1, 30_000);
      assert.equal(verdictOf(m).status, 'unknown');
      assert.match(String((m as { error?: { message?: string } }).error?.message), /undecided \(retry later\)/);
      assert.equal(rejected.messages.length, 0);
    });
  }
});
