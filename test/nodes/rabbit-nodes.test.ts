/**
 * The SETS pipeline over RabbitMQ on a real Node-RED runtime: a producer flow (anchor-hash ->
 * rabbit-publish) and a consumer flow (rabbit-subscribe -> verify-hash -> rabbit-ack), against a
 * real broker (test/support/rabbit.ts, own vhost and user) and a real chain (hardhat).
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import type { RabbitHandle } from '../support/rabbit';
import { AmqpBus, type BusDelivery } from '../../lib/bus/amqp';
import { bindingKeys } from '../../lib/bus/routing';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { keyForObject } from '../../lib/digest';
import type { StixObject } from '../../lib/stix';
import { Collector, OpenHandles, Recorder, allNodes, deployedFlows, helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { TcpGate } from './gate';
import { bundle, collectionId, indicator, malware } from './stix';

interface AmqpInfo {
  routingKey: string;
  exchange: string;
  messageId?: string;
  redelivered: boolean;
  deliveryId?: string;
  acked?: boolean;
  headers: Record<string, unknown>;
}
type Msg = { payload?: unknown; topic?: string; amqp?: AmqpInfo; collection?: string; sets?: { verification?: { status: string; reason?: string }; published?: { count: number; routingKeys: string[] } } };
const asMsg = (m: unknown): Msg => m as Msg;

describe(`RabbitMQ nodes on Node-RED ${nodeRedVersion}`, function () {
  let r: RabbitHandle;
  let c: ChainHandle;
  let registry: string;
  let reader: Ledger;
  let admin: AmqpBus;
  let brokerPort: number;
  const tag = randomBytes(4).toString('hex');
  const vhost = `sets-nodes-${tag}`;
  const user = `sets-node-${tag}`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const WRITER = 3;

  before(async function () {
    this.timeout(180_000);
    [r, c] = await Promise.all([rabbit(), chain()]);
    registry = await c.deployRegistry();
    reader = createLedger({ kind: 'evm', rpcUrl: c.rpcUrl, chainId: c.chainId, address: registry });
    await r.ctl(['add_vhost', vhost]);
    await r.ctl(['add_user', user, password]);
    await r.ctl(['set_permissions', '-p', vhost, user, '.*', '.*', '.*']);
    brokerPort = Number(new URL(r.url).port);
    admin = new AmqpBus({ url: r.url.replace(/\/\/[^@]*@/, '//'), username: user, password, vhost, exchange: `sets-${tag}` });
    await admin.whenConnected();
    await helper.startServer();
  });

  after(async () => {
    await admin?.close();
    await reader?.close();
    await helper.stopServer();
    if (r) {
      await r.ctl(['delete_vhost', vhost]).catch(() => undefined);
      await r.ctl(['delete_user', user]).catch(() => undefined);
    }
  });

  afterEach(async () => {
    await helper.unload();
  });

  /** A durable queue bound to `<coll>.#` on the nodes' exchange, declared up front (as an operator would). */
  async function declareQueue(queue: string, coll: string, extra: { deadLetterQueue?: string } = {}): Promise<void> {
    const sub = admin.subscribe(
      {
        queue,
        bindings: bindingKeys({ collection: coll }),
        ...(extra.deadLetterQueue ? { deadLetterExchange: `${extra.deadLetterQueue}.dlx`, deadLetterQueue: extra.deadLetterQueue } : {}),
      },
      (d: BusDelivery) => {
        d.nack({ requeue: true });
      },
    );
    await sub.ready();
    await sub.cancel();
  }

  const messages = async (queue: string): Promise<number> => (await admin.queueInfo(queue)).messageCount;

  function nodesFor(coll: string, opts: { queue?: string; port?: number; ackMode?: string; deadLetter?: string; withAck?: boolean; types?: string } = {}): FlowNode[] {
    const withAck = opts.withAck ?? true;
    return [
      { id: 'tab', type: 'tab', label: 'pipeline' },
      { id: 'led', type: 'sets-ledger', rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 10000 },
      { id: 'mq', type: 'sets-broker', host: '127.0.0.1', port: opts.port ?? brokerPort, vhost, exchange: `sets-${tag}`, prefetch: 100, heartbeat: 30, timeout: 2000 },
      // producer
      { id: 'anc', type: 'anchor-hash', z: 'tab', ledger: 'led', collection: coll, wires: [['pub']] },
      { id: 'pub', type: 'rabbit-publish', z: 'tab', broker: 'mq', collection: coll, wires: [['published']] },
      { id: 'published', type: 'helper', z: 'tab' },
      // consumer
      {
        id: 'sub',
        type: 'rabbit-subscribe',
        z: 'tab',
        broker: 'mq',
        bindingMode: 'types',
        collection: coll,
        types: opts.types ?? '',
        queue: opts.queue ?? '',
        ackMode: opts.ackMode ?? 'manual',
        deadLetter: opts.deadLetter ?? '',
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

  const creds = () => ({ led: { privateKey: c.accounts[WRITER].privateKey }, mq: { username: user, password } });
  /** Wait until the subscriber's queue exists with a consumer. */
  async function consuming(queue: string): Promise<void> {
    await until(`a consumer on ${queue}`, async () => {
      try {
        return (await admin.queueInfo(queue)).consumerCount > 0;
      } catch {
        return false;
      }
    });
  }

  /** Wait until the rabbit-ack node `id` has acked `n` deliveries (its badge counts them). */
  async function acked(rec: Recorder, n: number): Promise<void> {
    await until(`${n} acked`, () => rec.statuses.some((s) => String(s.text).startsWith(`${n} acked`)), 30_000);
  }

  it('producer flow anchors and publishes; consumer flow receives, verifies and acks', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-e2e`;
    await helper.load(allNodes, nodesFor(coll, { queue }), creds());
    await consuming(queue);
    const published = new Collector(helper.getNode('published'));
    const ok = new Collector(helper.getNode('ok'));
    const recAckE2e = new Recorder(helper.getNode('ack'));
    const recSub = new Recorder(helper.getNode('sub'));
    const objs = [indicator(), malware()];
    helper.getNode('anc')?.receive({ payload: bundle(objs) });
    const [p] = await published.wait(1, 30_000);
    assert.equal(asMsg(p).sets?.published?.count, 2);
    assert.deepEqual(asMsg(p).sets?.published?.routingKeys.sort(), [`${coll}.indicator`, `${coll}.malware`]);
    const got = await ok.wait(2, 30_000);
    const ids = got.map((m) => (m.payload as StixObject).id).sort();
    assert.deepEqual(ids, objs.map((o) => o.id).sort());
    for (const m of got.map(asMsg)) {
      assert.equal(m.sets?.verification?.status, 'verified');
      assert.equal(m.collection, coll, 'the collection comes from the routing key');
      assert.match(String(m.amqp?.deliveryId), /.+/);
      assert.equal(m.topic, m.amqp?.routingKey);
      assert.equal(m.amqp?.headers['x-sets-object-id'], (m.payload as StixObject).id);
    }
    await acked(recAckE2e, 2);
    await until('badge: 2 received, 0 unacked', () => recSub.lastStatus?.text === '2 received · 0 unacked');
    await helper.unload();
    assert.equal(await messages(queue), 0, 'acked messages do not come back when the consumer goes');
  });

  it('a payload altered in transit is rejected as mismatch on output 2 and dead-lettered', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-tamper`;
    const dlq = `dlq-${tag}-tamper`;
    await helper.load(allNodes, nodesFor(coll, { queue, deadLetter: dlq }), creds());
    await consuming(queue);
    const published = new Collector(helper.getNode('published'));
    const o = indicator();
    // anchor only (the flow also publishes the genuine object; the attacker's copy follows)
    helper.getNode('anc')?.receive({ payload: o });
    await published.wait(1, 30_000);
    const ok = new Collector(helper.getNode('ok'));
    await ok.wait(1, 30_000); // the genuine copy verifies
    const rejected = new Collector(helper.getNode('rejected'));
    const evil = new AmqpBus({ url: r.url.replace(/\/\/[^@]*@/, '//'), username: user, password, vhost, exchange: `sets-${tag}` });
    try {
      const altered: StixObject = { ...o, pattern: "[ipv4-addr:value = '192.0.2.66']" };
      await evil.publishStix(coll, altered);
    } finally {
      await evil.close();
    }
    const [bad] = await rejected.wait(1, 30_000);
    assert.equal(asMsg(bad).sets?.verification?.status, 'mismatch');
    assert.match(String(asMsg(bad).sets?.verification?.reason), /mismatch/);
    await until('dead-lettered', async () => (await messages(dlq)) === 1);
  });

  it('a malformed object: clear error, red badge, and NOTHING anchored or published', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-bad`;
    await helper.load(allNodes, nodesFor(coll, { queue }), creds());
    await consuming(queue);
    const caught = new Collector(helper.getNode('caught'));
    const received = new Collector(helper.getNode('received'));
    const recA = new Recorder(helper.getNode('anc'));
    const recAck = new Recorder(helper.getNode('ack'));
    const good = indicator('good');
    const badBundle = bundle([indicator('fine'), { type: 'indicator', id: 'indicator--not-a-uuid', spec_version: '2.1' }]);
    helper.getNode('anc')?.receive({ payload: badBundle });
    const [err] = await caught.wait(1);
    assert.match(String((err as { error?: { message?: string } }).error?.message), /object #1/);
    assert.equal(recA.lastStatus?.fill, 'red');
    // the next, valid message is the first and only one to arrive: nothing of the bad bundle was sent
    helper.getNode('anc')?.receive({ payload: good });
    const [first] = await received.wait(1, 30_000);
    assert.equal((first.payload as StixObject).id, good.id);
    const fine = (badBundle.objects as StixObject[])[0];
    const fineKey = keyForObject(coll, fine);
    assert.deepEqual(await reader.lookup(fineKey.scope, fineKey.key), [], 'nothing anchored');
    await acked(recAck, 1);
    await helper.unload();
    assert.equal(await messages(queue), 0);
  });

  it('non-JSON on the queue: a node error, the message is dead-lettered, not lost silently', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-nonjson`;
    const dlq = `dlq-${tag}-nonjson`;
    await helper.load(allNodes, nodesFor(coll, { queue, deadLetter: dlq }), creds());
    await consuming(queue);
    const rec = new Recorder(helper.getNode('sub'));
    const raw = new AmqpBus({ url: r.url.replace(/\/\/[^@]*@/, '//'), username: user, password, vhost, exchange: `sets-${tag}` });
    try {
      await raw.publish({ routingKey: `${coll}.indicator`, body: Buffer.from('<html>not json</html>') });
    } finally {
      await raw.close();
    }
    await until('node error', () => rec.errors.length > 0);
    assert.match(String(rec.errors[0].err), /not JSON.*dead-lettered/);
    await until('dead-lettered', async () => (await messages(dlq)) === 1);
  });

  it('broker down at start: nodes show connecting, connect later, nothing is lost', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-late`;
    await declareQueue(queue, coll);
    const gate = await TcpGate.create('127.0.0.1', brokerPort);
    try {
      await helper.load(allNodes, nodesFor(coll, { queue, port: gate.port }), creds());
      const recPub = new Recorder(helper.getNode('pub'));
      const published = new Collector(helper.getNode('published'));
      const ok = new Collector(helper.getNode('ok'));
      await until('connecting badge', () => recPub.statuses.some((s) => s.fill === 'yellow' || s.fill === 'red'));
      const o = indicator();
      helper.getNode('anc')?.receive({ payload: o });
      // the publish waits for the broker
      await until('anchored, waiting to publish', async () => (await reader.lookup(keyForObject(coll, o).scope, keyForObject(coll, o).key)).length > 0);
      assert.equal(published.messages.length, 0);
      await gate.open();
      await published.wait(1, 30_000);
      const [v] = await ok.wait(1, 30_000);
      assert.equal((v.payload as StixObject).id, o.id);
      await until('green badge', () => recPub.lastStatus?.fill === 'green');
    } finally {
      await helper.unload();
      await gate.close();
    }
  });

  it('manual ack: an unsettled delivery goes back to the broker when the flow is redeployed', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-redeliver`;
    await helper.load(allNodes, nodesFor(coll, { queue, withAck: false }), creds());
    await consuming(queue);
    const ok = new Collector(helper.getNode('ok'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [first] = await ok.wait(1, 30_000);
    assert.equal(asMsg(first).amqp?.redelivered, false);
    await helper.unload();
    await until('back in the queue', async () => (await messages(queue)) === 1);

    await helper.load(allNodes, nodesFor(coll, { queue }), creds());
    const ok2 = new Collector(helper.getNode('ok'));
    const recAck = new Recorder(helper.getNode('ack'));
    const [again] = await ok2.wait(1, 30_000);
    assert.equal((again.payload as StixObject).id, o.id);
    assert.equal(asMsg(again).amqp?.redelivered, true);
    assert.equal(asMsg(again).amqp?.messageId, asMsg(first).amqp?.messageId);
    await acked(recAck, 1);
    await helper.unload();
    assert.equal(await messages(queue), 0);
  });

  it('rabbit-ack: settles once (second settle warns), unknown or missing ids warn, msg.amqp.nack requeues', async () => {
    const coll = collectionId();
    const queue = `q-${tag}-settle`;
    await helper.load(allNodes, nodesFor(coll, { queue, withAck: false }), creds());
    await consuming(queue);
    const ok = new Collector(helper.getNode('ok'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [m] = await ok.wait(1, 30_000);
    const ack = helper.getNode('ack');
    const recAck = new Recorder(ack);
    // nack with requeue from the message itself
    ack?.receive({ ...m, amqp: { ...asMsg(m).amqp, nack: { requeue: true } } });
    const [, again] = await ok.wait(2, 30_000);
    assert.equal(asMsg(again).amqp?.redelivered, true);
    // settle the redelivery twice: the second is ignored with a warning
    ack?.receive(again);
    ack?.receive(again);
    ack?.receive({ payload: 'x', amqp: { deliveryId: 'no-such-delivery' } });
    ack?.receive({ payload: 'no amqp at all' });
    await until('3 warnings', () => recAck.warnings.length >= 3);
    await acked(recAck, 1);
    const w = recAck.warnings.map(String).join('\n');
    assert.match(w, /already settled/);
    assert.match(w, /unknown/);
    assert.match(w, /deliveryId is missing/);
    assert.equal(recAck.errors.length, 0);
    await helper.unload();
    assert.equal(await messages(queue), 0);
  });

  it('auto ack mode: acked on arrival (msg.amqp.acked), rabbit-ack has nothing to do', async () => {
    const coll = collectionId();
    await helper.load(allNodes, nodesFor(coll, { ackMode: 'auto', types: 'indicator' }), creds());
    const sub = helper.getNode('sub');
    const recSub = new Recorder(sub);
    await until('subscribed', () => recSub.lastStatus?.fill === 'green' || recSub.statuses.some((s) => s.fill === 'green'));
    const ok = new Collector(helper.getNode('ok'));
    const recAck = new Recorder(helper.getNode('ack'));
    const o = indicator();
    helper.getNode('anc')?.receive({ payload: o });
    const [m] = await ok.wait(1, 30_000);
    assert.equal(asMsg(m).amqp?.acked, true);
    assert.equal(asMsg(m).amqp?.deliveryId, undefined);
    await until('received badge', () => /1 received$/.test(String(recSub.lastStatus?.text)));
    assert.equal(recAck.warnings.length, 0);
  });

  it('secrets stay in credentials, and closing releases every connection', async () => {
    const handles = new OpenHandles().start();
    const coll = collectionId();
    const queue = `q-${tag}-secrets`;
    await helper.load(allNodes, nodesFor(coll, { queue }), creds());
    assert.equal(helper.credentials.getDefinition('sets-broker')?.password?.type, 'password');
    await consuming(queue);
    const ok = new Collector(helper.getNode('ok'));
    helper.getNode('anc')?.receive({ payload: indicator() });
    await ok.wait(1, 30_000);
    const flows = JSON.stringify(deployedFlows());
    assert.ok(!flows.includes(password), 'the broker password is not in the flow JSON');
    assert.ok(!flows.includes(user), 'nor the username');
    assert.ok(!logText().includes(password), 'nor in the log');
    await helper.unload();
    await handles.expectNone();
  });

  it('wrong broker password: red badge with the reason, no crash, no password in the log', async () => {
    const coll = collectionId();
    await helper.load(allNodes, nodesFor(coll), { ...creds(), mq: { username: user, password: 'definitely-wrong-pw' } });
    const rec = new Recorder(helper.getNode('sub'));
    await until('refused', () => rec.statuses.some((s) => s.fill === 'red' && /ACCESS|refused|auth|403/i.test(String(s.text))));
    assert.ok(!logText().includes('definitely-wrong-pw') && !rec.text().includes('definitely-wrong-pw'));
  });
});
