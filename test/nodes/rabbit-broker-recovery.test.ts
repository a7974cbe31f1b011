/**
 * Broker recovery (issue 10) in the Node-RED nodes on a real Node-RED runtime and a real RabbitMQ
 * (own vhost): rabbit-publish refuses unroutable publishes; rabbit-subscribe defaults to its own
 * durable queue (nothing published while it is down is lost), hands back deliveries nobody
 * settled (ack timeout), dead-letters what goes over the delivery limit, marks duplicates, and
 * says clearly when its queue exists with other arguments.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { rabbit } from '../support/services';
import type { RabbitHandle } from '../support/rabbit';
import { AmqpBus } from '../../lib/bus/amqp';
import { Collector, Recorder, allNodes, helper, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { collectionId, indicator } from './stix';

type Msg = {
  payload?: unknown;
  amqp?: { messageId?: string; deliveryId?: string; deliveryCount?: number; redelivered?: boolean };
  sets?: { redelivered?: boolean; deliveryCount?: number; duplicateOf?: { messageId: string; times: number } };
};
const asMsg = (m: unknown): Msg => m as Msg;

describe(`broker recovery in the RabbitMQ nodes on Node-RED ${nodeRedVersion}`, function () {
  this.timeout(120_000);
  let r: RabbitHandle;
  let admin: AmqpBus;
  let brokerPort: number;
  const tag = randomBytes(4).toString('hex');
  const vhost = `sets-nrec-${tag}`;
  const exchange = `sets-${tag}`;

  before(async function () {
    this.timeout(180_000);
    r = await rabbit();
    await r.ctl(['add_vhost', vhost]);
    await r.ctl(['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
    brokerPort = Number(new URL(r.url).port);
    admin = new AmqpBus({ url: r.url, vhost, exchange });
    await admin.whenConnected();
    await helper.startServer();
  });

  after(async function () {
    this.timeout(60_000);
    await admin?.close();
    await helper.stopServer();
    await r?.ctl(['delete_vhost', vhost]).catch(() => undefined);
  });

  afterEach(async () => {
    await helper.unload();
  });

  const broker = (): FlowNode => ({ id: 'mq', type: 'sets-broker', host: '127.0.0.1', port: brokerPort, vhost, exchange, prefetch: 10, heartbeat: 30, timeout: 2000 });
  const creds = { mq: { username: 'guest', password: 'guest' } };

  function subscriberFlow(coll: string, sub: Record<string, unknown>, withAck = true): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'sub' },
      broker(),
      { id: 'sub', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'types', collection: coll, types: '', ackMode: 'manual', ...sub, wires: [withAck ? ['received', 'ack'] : ['received']] },
      { id: 'received', type: 'helper', z: 'tab' },
      { id: 'ack', type: 'rabbit-ack', z: 'tab', action: 'ack' },
    ].map(placed);
  }

  async function consumers(queue: string): Promise<number> {
    try {
      return (await admin.queueInfo(queue)).consumerCount;
    } catch {
      return -1;
    }
  }

  it('rabbit-publish fails with UNROUTABLE (exchange and routing key named) when no queue is bound, unless "drop silently" is chosen', async () => {
    const coll = collectionId();
    const flow = [
      { id: 'tab', type: 'tab', label: 'pub' },
      broker(),
      { id: 'pub', type: 'rabbit-publish', z: 'tab', broker: 'mq', collection: coll, wires: [['published']] },
      { id: 'loose', type: 'rabbit-publish', z: 'tab', broker: 'mq', collection: coll, unroutable: 'allow', wires: [['published']] },
      { id: 'published', type: 'helper', z: 'tab' },
    ].map(placed);
    await helper.load(allNodes, flow, creds);
    const rec = new Recorder(helper.getNode('pub'));
    const published = new Collector(helper.getNode('published'));
    helper.getNode('pub')?.receive({ payload: indicator() });
    await until('an error', () => rec.errors.length > 0, 30_000);
    const text = rec.text();
    assert.match(text, /UNROUTABLE/);
    assert.match(text, new RegExp(`${coll}\\.indicator`));
    assert.match(text, new RegExp(`exchange "${exchange}"`));
    assert.match(String(rec.lastStatus?.text), /UNROUTABLE|PUBLISH_FAILED/);
    assert.equal(published.messages.length, 0, 'nothing reported as published');
    helper.getNode('loose')?.receive({ payload: indicator() });
    await published.wait(1, 30_000);
  });

  it('rabbit-subscribe without a queue name uses its own durable queue sets.<node id>: what is published while the flow is down waits for it', async () => {
    const coll = collectionId();
    const flow = subscriberFlow(coll, {});
    await helper.load(allNodes, flow, creds);
    const queue = 'sets.sub';
    await until('consumer on sets.sub', async () => (await consumers(queue)) === 1, 30_000);
    await helper.unload(); // a redeploy / restart: the node closes, its queue stays
    assert.equal(await consumers(queue), 0);
    const o = indicator();
    await admin.publishStix(coll, o, { mandatory: true }); // routable: the queue is still bound
    await helper.load(allNodes, subscriberFlow(coll, {}), creds);
    const received = new Collector(helper.getNode('received'));
    const [m] = await received.wait(1, 30_000);
    assert.equal((m.payload as { id: string }).id, o.id);
    await until('acked', async () => (await admin.queueInfo(queue)).messageCount === 0 && (await consumers(queue)) === 1);
    await admin.deleteQueue(queue);
  });

  it('hands back a delivery no rabbit-ack settled within the ack timeout, marks the copy as a duplicate, and dead-letters it past the delivery limit', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-timeout`;
    const dlq = `dlq-${tag}-timeout`;
    await helper.load(allNodes, subscriberFlow(coll, { queue, ackTimeout: 1, deliveryLimit: 2, deadLetter: dlq }, false), creds);
    await until('consumer', async () => (await consumers(queue)) === 1, 30_000);
    const rec = new Recorder(helper.getNode('sub'));
    const received = new Collector(helper.getNode('received'));
    await admin.publishStix(coll, indicator(), { mandatory: true });
    const [first, second] = (await received.wait(2, 30_000)).map(asMsg);
    assert.equal(first.sets?.deliveryCount, 1);
    assert.equal(first.sets?.duplicateOf, undefined);
    assert.equal(second.sets?.redelivered, true);
    assert.equal(second.sets?.deliveryCount, 2);
    assert.equal(second.sets?.duplicateOf?.messageId, first.amqp?.messageId);
    await until('dead-lettered after the 2nd delivery', async () => (await admin.queueInfo(dlq)).messageCount === 1, 30_000);
    const warnings = rec.warnings.map(String).join('\n');
    assert.match(warnings, /not settled within 1 s/);
    assert.match(warnings, new RegExp(String(first.amqp?.messageId)));
    assert.match(warnings, /requeued/);
    assert.match(warnings, new RegExp(`dead-lettered to ${dlq}`));
    await until('badge counts the ack timeouts', () => /2 ack timeout/.test(String(rec.lastStatus?.text)));
    assert.equal(received.messages.length, 2, 'not delivered a third time');
    await helper.unload();
    await admin.deleteQueue(queue);
    await admin.deleteQueue(dlq);
  });

  it('a queue that exists with other arguments: red badge naming the argument, an error saying how to fix it, no retry loop', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-ineq`;
    await helper.load(allNodes, subscriberFlow(coll, { queue }), creds);
    await until('consumer', async () => (await consumers(queue)) === 1, 30_000);
    await helper.unload();
    await helper.load(allNodes, subscriberFlow(coll, { queue, deadLetter: `dlq-${tag}-ineq` }), creds);
    const rec = new Recorder(helper.getNode('sub'));
    await until('error', () => rec.errors.length > 0, 30_000);
    assert.match(String(rec.lastStatus?.text), /queue exists with other x-dead-letter-exchange/);
    assert.match(rec.text(), /delete the queue on the broker .* or use a new queue name/);
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(rec.errors.length, 1);
    await helper.unload();
    await admin.deleteQueue(queue);
    await admin.deleteQueue(`dlq-${tag}-ineq`).catch(() => undefined);
  });
});
