/**
 * Short status badges (issue 13.3): in the example flows neighbouring nodes covered the long ones.
 * integrity-status: "N finalized · N invalid" (pending only while some wait); rabbit-ack: "N acked"
 * (nacked only once there is one); on the real runtime, in-process broker (no RabbitMQ needed).
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dropMemoryBroker } from '../../lib/bus/memory';
import { countsBadge } from '../../nodes/integrity-status/badge';
import { Recorder, helper, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { runtimeSettings, serverNodes } from './server-harness';
import { collectionId, indicator } from './stix';

describe(`short badges on Node-RED ${nodeRedVersion}`, function () {
  this.timeout(60_000);
  let userDir: string;
  const broker = `badges-${randomBytes(4).toString('hex')}`;

  before(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-badges-'));
    runtimeSettings({ userDir });
    await helper.startServer();
  });

  after(async () => {
    await helper.stopServer();
    dropMemoryBroker(broker);
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await helper.unload();
  });

  it('integrity-status counts: finalized and invalid, pending only while some wait', () => {
    assert.equal(countsBadge({ pending: 0, finalized: 12, invalid: 1 }), '12 finalized · 1 invalid');
    assert.equal(countsBadge({ pending: 3, finalized: 12, invalid: 0 }), '12 finalized · 0 invalid · 3 pending');
  });

  it('integrity-status on a store shows "0 finalized · 0 invalid"', async () => {
    const flow: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'badges' },
      { id: 'store', type: 'sets-store', name: 'badges', kind: 'embedded' },
      { id: 'integ', type: 'integrity-status', z: 'tab', store: 'store', collections: collectionId(), maxItems: 1000, wires: [[]] },
    ].map(placed);
    await helper.load(serverNodes, flow);
    const rec = new Recorder(helper.getNode('integ'));
    helper.getNode('integ')?.receive({ payload: '' });
    await until('count badge', () => rec.statuses.some((s) => s.text === '0 finalized · 0 invalid'));
  });

  it('rabbit-ack shows "N acked" until something is nacked', async () => {
    const coll = collectionId();
    const flow: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'ack' },
      { id: 'mq', type: 'sets-broker', name: 'badges', kind: 'in-process', brokerName: broker, exchange: 'sets', prefetch: 10 },
      { id: 'pub', type: 'rabbit-publish', z: 'tab', broker: 'mq', collection: coll, wires: [[]] },
      { id: 'sub', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'types', collection: coll, types: '', queue: '', ackMode: 'manual', deadLetter: '', wires: [['ack']] },
      { id: 'ack', type: 'rabbit-ack', z: 'tab', action: 'ack' },
    ].map(placed);
    await helper.load(serverNodes, flow);
    const rec = new Recorder(helper.getNode('ack'));
    const sub = new Recorder(helper.getNode('sub'));
    await until('subscribed', () => sub.statuses.some((s) => s.fill === 'yellow' || s.fill === 'green'));
    helper.getNode('pub')?.receive({ payload: indicator(), collection: coll });
    await until('acked badge', () => rec.statuses.some((s) => s.text === '1 acked'));
    assert.ok(!rec.statuses.some((s) => /nacked/.test(String(s.text))), `a nacked count in ${JSON.stringify(rec.statuses)}`);
  });
});
