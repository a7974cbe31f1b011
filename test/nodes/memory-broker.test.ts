/**
 * The SETS pipeline on the IN-PROCESS broker (sets-broker kind "in-process", lib/bus/memory.ts)
 * on a real Node-RED runtime and a real chain (hardhat): a producer flow (anchor-hash ->
 * rabbit-publish) and a consumer flow (rabbit-subscribe -> verify-hash -> rabbit-ack), each with
 * its OWN config node — the two meet because they name the same broker. Also: the loud warning,
 * the badges, tampering, redelivery across a redeploy, and older flows without `kind` staying
 * on RabbitMQ.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { MemoryBus, dropMemoryBroker } from '../../lib/bus/memory';
import type { StixObject } from '../../lib/stix';
import { Collector, OpenHandles, Recorder, allNodes, helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { bundle, collectionId, indicator, malware } from './stix';

interface AmqpInfo {
  routingKey: string;
  exchange: string;
  queue?: string;
  messageId?: string;
  redelivered: boolean;
  deliveryId?: string;
  headers: Record<string, unknown>;
}
type Msg = {
  payload?: unknown;
  topic?: string;
  amqp?: AmqpInfo;
  collection?: string;
  sets?: { verification?: { status: string; reason?: string }; published?: { count: number; exchange: string; routingKeys: string[] } };
};
const asMsg = (m: unknown): Msg => m as Msg;

/** Messages the Node-RED log got that contain `text`. */
const logLines = (text: string): string[] =>
  helper
    .log()
    .getCalls()
    .map((c) => JSON.stringify(c.args))
    .filter((l) => l.includes(text));

describe(`in-process broker nodes on Node-RED ${nodeRedVersion}`, function () {
  this.timeout(60_000);
  let c: ChainHandle;
  let registry: string;
  const WRITER = 3;
  const tag = randomBytes(4).toString('hex');
  const brokers: string[] = [];
  const admins: MemoryBus[] = [];

  /** a broker name of its own for each test */
  function brokerName(what: string): string {
    const n = `nodes-${what}-${tag}`;
    brokers.push(n);
    return n;
  }

  /** A bus on the same in-process broker as the flow, for looking at queues (like rabbitmqctl). */
  function admin(name: string): MemoryBus {
    const b = new MemoryBus({ name });
    admins.push(b);
    return b;
  }

  before(async function () {
    this.timeout(120_000);
    c = await chain();
    registry = await c.deployRegistry();
    await helper.startServer();
  });

  after(async () => {
    await helper.stopServer();
  });

  afterEach(async () => {
    await helper.unload();
    await Promise.all(admins.splice(0).map((b) => b.close()));
    for (const n of brokers.splice(0)) dropMemoryBroker(n);
  });

  interface FlowOpts {
    name: string;
    queue?: string;
    deadLetter?: string;
    withAck?: boolean;
  }

  /** Producer and consumer, each with its own in-process sets-broker config node naming the same broker. */
  function nodesFor(coll: string, o: FlowOpts): FlowNode[] {
    const withAck = o.withAck ?? true;
    return [
      { id: 'tab', type: 'tab', label: 'pipeline' },
      { id: 'led', type: 'sets-ledger', rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 10000 },
      { id: 'mqP', type: 'sets-broker', name: 'producer side', kind: 'in-process', brokerName: o.name, exchange: 'sets', prefetch: 100 },
      { id: 'mqC', type: 'sets-broker', name: 'consumer side', kind: 'in-process', brokerName: o.name, exchange: 'sets', prefetch: 100 },
      // producer
      { id: 'anc', type: 'anchor-hash', z: 'tab', ledger: 'led', collection: coll, wires: [['pub']] },
      { id: 'pub', type: 'rabbit-publish', z: 'tab', broker: 'mqP', collection: coll, wires: [['published']] },
      { id: 'published', type: 'helper', z: 'tab' },
      // consumer
      {
        id: 'sub',
        type: 'rabbit-subscribe',
        z: 'tab',
        broker: 'mqC',
        bindingMode: 'types',
        collection: coll,
        types: '',
        queue: o.queue ?? '',
        ackMode: 'manual',
        deadLetter: o.deadLetter ?? '',
        wires: [['ver', 'received']],
      },
      { id: 'received', type: 'helper', z: 'tab' },
      { id: 'ver', type: 'verify-hash', z: 'tab', ledger: 'led', waitMs: 15000, mode: 'split', wires: [['ok', ...(withAck ? ['ack'] : [])], ['rejected', ...(withAck ? ['dead'] : [])]] },
      { id: 'ok', type: 'helper', z: 'tab' },
      { id: 'rejected', type: 'helper', z: 'tab' },
      { id: 'ack', type: 'rabbit-ack', z: 'tab', action: 'ack' },
      { id: 'dead', type: 'rabbit-ack', z: 'tab', action: 'dead-letter' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ].map(placed);
  }

  const creds = () => ({ led: { privateKey: c.accounts[WRITER].privateKey } });

  async function acked(rec: Recorder, n: number): Promise<void> {
    await until(`${n} acked`, () => rec.statuses.some((s) => String(s.text).startsWith(`${n} acked`)), 30_000);
  }

  it('producer and consumer flows with two config nodes on one named broker: anchored, published, verified, acked', async () => {
    const handles = new OpenHandles().start();
    const name = brokerName('e2e');
    const coll = collectionId();
    const queue = `q-${tag}-e2e`;
    await helper.load(allNodes, nodesFor(coll, { name, queue }), creds());
    const recPub = new Recorder(helper.getNode('pub'));
    const recSub = new Recorder(helper.getNode('sub'));
    const recAck = new Recorder(helper.getNode('ack'));
    const published = new Collector(helper.getNode('published'));
    const ok = new Collector(helper.getNode('ok'));
    const mq = admin(name);
    assert.equal((await mq.queueInfo(queue)).consumerCount, 1, 'the subscriber declared its queue at deploy');

    const objs = [indicator(), malware()];
    helper.getNode('anc')?.receive({ payload: bundle(objs) });
    const [p] = await published.wait(1, 30_000);
    assert.equal(asMsg(p).sets?.published?.count, 2);
    assert.equal(asMsg(p).sets?.published?.exchange, 'sets');
    assert.deepEqual(asMsg(p).sets?.published?.routingKeys.sort(), [`${coll}.indicator`, `${coll}.malware`]);
    const got = await ok.wait(2, 30_000);
    assert.deepEqual(got.map((m) => (m.payload as StixObject).id).sort(), objs.map((o) => o.id).sort());
    for (const m of got.map(asMsg)) {
      assert.equal(m.sets?.verification?.status, 'verified');
      assert.equal(m.collection, coll);
      assert.equal(m.amqp?.queue, queue);
      assert.equal(m.amqp?.redelivered, false);
      assert.equal(m.amqp?.headers['x-sets-object-id'], (m.payload as StixObject).id);
      assert.match(String(m.amqp?.deliveryId), /.+/);
    }
    await acked(recAck, 2);

    // said loudly: one warning per in-process config node, and yellow "in-process" badges
    const warned = logLines(`SETS: using the IN-PROCESS broker '${name}'`);
    assert.equal(warned.length, 2, warned.join('\n'));
    assert.match(warned[0], /not durable and stay inside this Node-RED; configure RabbitMQ for real use/);
    await until('subscriber badge', () => recSub.lastStatus?.text === '2 received · 0 unacked · in-process');
    assert.equal(recSub.lastStatus?.fill, 'yellow');
    await until('publisher badge', () => recPub.lastStatus?.text === '2 published · in-process');
    assert.equal(recPub.lastStatus?.fill, 'yellow');
    assert.equal(recSub.errors.length + recPub.errors.length, 0);

    await helper.unload();
    assert.deepEqual(await mq.queueInfo(queue), { queue, messageCount: 0, consumerCount: 0 }, 'all acked; the durable queue outlives the flow');
    await mq.close();
    await handles.expectNone();
  });

  it('an object altered in transit is rejected as mismatch and dead-lettered on the in-process broker', async () => {
    const name = brokerName('tamper');
    const coll = collectionId();
    const queue = `q-${tag}-tamper`;
    const dlq = `dlq-${tag}-tamper`;
    await helper.load(allNodes, nodesFor(coll, { name, queue, deadLetter: dlq }), creds());
    const published = new Collector(helper.getNode('published'));
    const ok = new Collector(helper.getNode('ok'));
    const rejected = new Collector(helper.getNode('rejected'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    await published.wait(1, 30_000);
    await ok.wait(1, 30_000); // the genuine copy verifies
    // an attacker on the same broker publishes an altered copy
    const evil = admin(name);
    const altered: StixObject = { ...o, pattern: "[ipv4-addr:value = '192.0.2.66']" };
    await evil.publishStix(coll, altered);
    const [bad] = await rejected.wait(1, 30_000);
    assert.equal(asMsg(bad).sets?.verification?.status, 'mismatch');
    assert.match(String(asMsg(bad).sets?.verification?.reason), /mismatch/);
    await until('dead-lettered', async () => (await evil.queueInfo(dlq)).messageCount === 1);
    assert.equal((await evil.queueInfo(queue)).messageCount, 0);
  });

  it('an unsettled delivery goes back to the broker on redeploy and comes again, redelivered (the broker outlives its config nodes)', async () => {
    const name = brokerName('redeliver');
    const coll = collectionId();
    const queue = `q-${tag}-redeliver`;
    await helper.load(allNodes, nodesFor(coll, { name, queue, withAck: false }), creds());
    const ok = new Collector(helper.getNode('ok'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [first] = await ok.wait(1, 30_000);
    assert.equal(asMsg(first).amqp?.redelivered, false);
    await helper.unload();
    const mq = admin(name);
    assert.deepEqual(await mq.queueInfo(queue), { queue, messageCount: 1, consumerCount: 0 }, 'back in the queue, kept while no flow runs');

    await helper.load(allNodes, nodesFor(coll, { name, queue }), creds());
    const ok2 = new Collector(helper.getNode('ok'));
    const recAck = new Recorder(helper.getNode('ack'));
    const [again] = await ok2.wait(1, 30_000);
    assert.equal((again.payload as StixObject).id, o.id);
    assert.equal(asMsg(again).amqp?.redelivered, true);
    assert.equal(asMsg(again).amqp?.messageId, asMsg(first).amqp?.messageId);
    await acked(recAck, 1);
    await helper.unload();
    assert.equal((await mq.queueInfo(queue)).messageCount, 0);
  });

  it('config nodes with different broker names do not see each other', async () => {
    const coll = collectionId();
    // the publisher drops silently what nobody is bound for (its default refuses it: UNROUTABLE)
    const flow = nodesFor(coll, { name: brokerName('left') }).map((n) =>
      n.id === 'mqC' ? { ...n, brokerName: brokerName('right') } : n.type === 'rabbit-publish' ? { ...n, unroutable: 'allow' } : n,
    );
    await helper.load(allNodes, flow, creds());
    const published = new Collector(helper.getNode('published'));
    const received = new Collector(helper.getNode('received'));
    const recSub = new Recorder(helper.getNode('sub'));
    await until('subscriber active', () => /in-process/.test(String(recSub.lastStatus?.text)));
    helper.getNode('anc')?.receive({ payload: indicator() });
    const [p] = await published.wait(1, 30_000);
    assert.equal(asMsg(p).sets?.published?.count, 1, 'confirmed: published, and dropped for lack of a queue on that broker');
    // the consumer's broker never got it: publish on the consumer's broker to prove the subscriber is live
    const right = admin(brokers[brokers.length - 1]);
    await right.publishStix(coll, indicator('on the right broker'));
    const [r] = await received.wait(1, 30_000);
    assert.equal((r.payload as StixObject).name, 'on the right broker');
    assert.equal(received.messages.length, 1);
  });

  it('a sets-broker without `kind` (flows saved before it existed) stays RabbitMQ: no in-process broker, no warning', async () => {
    const coll = collectionId();
    const flow: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'legacy' },
      // nothing listens on port 1: the bus keeps retrying, as with any unreachable RabbitMQ
      { id: 'mq', type: 'sets-broker', host: '127.0.0.1', port: 1, vhost: '/', exchange: `legacy-${tag}`, prefetch: 100, heartbeat: 30, timeout: 2000 },
      { id: 'sub', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'types', collection: coll, types: '', queue: '', ackMode: 'manual', wires: [[]] },
    ].map(placed);
    await helper.load(allNodes, flow, { mq: { username: 'guest', password: 'guest' } });
    const mq = helper.getNode('mq') as unknown as { kind?: string; describe(): string };
    assert.equal(mq.kind, 'amqp');
    assert.match(mq.describe(), /^amqp:\/\/127\.0\.0\.1:1\//);
    const rec = new Recorder(helper.getNode('sub'));
    await until('not connected', () => rec.statuses.some((s) => s.fill === 'red' || s.fill === 'yellow'));
    assert.ok(rec.statuses.every((s) => !/in-process/.test(String(s.text))));
    assert.equal(logLines('IN-PROCESS').length, 0);
    assert.ok(!logText().includes('memory://'));
  });

  it('an unknown kind is a configuration error shown by the user nodes, not a crash', async () => {
    const flow: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'bad' },
      { id: 'mq', type: 'sets-broker', kind: 'carrier-pigeon', exchange: 'sets' },
      { id: 'pub', type: 'rabbit-publish', z: 'tab', broker: 'mq', collection: collectionId(), wires: [[]] },
    ].map(placed);
    await helper.load(allNodes, flow);
    const rec = new Recorder(helper.getNode('pub'));
    helper.getNode('pub')?.receive({ payload: indicator() });
    await until('error reported', () => rec.errors.length > 0);
    assert.match(String(rec.errors[0].err), /broker kind must be one of amqp, in-process/);
  });
});
