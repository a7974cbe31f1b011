/**
 * Broker recovery (issue 10, "Broker"), lib/bus + lib/ops against a real RabbitMQ
 * (test/support/rabbit.ts, own vhost): unroutable publishes refused, the wait for a reconnect
 * separate from the confirm timeout, deterministic message ids, delivery limits on classic and
 * quorum queues, dead-letter queues and TTL, a clear error for a queue redeclared with other
 * arguments, and acks that still go through while a broker alarm blocks publishers.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { rabbit } from '../support/services';
import type { RabbitHandle } from '../support/rabbit';
import { AmqpBus, BusError, MemoryBus, type AmqpBusConfig, type Bus, type BusDelivery, type SubscribeOptions } from '../../lib/bus';
import { publishPayload } from '../../lib/ops/publish';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function indicator(n: number, modified = '2024-01-01T00:00:00.000Z'): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${randomUUID()}`,
    created: '2024-01-01T00:00:00.000Z',
    modified,
    name: `recovery indicator ${n}`,
    pattern: `[ipv4-addr:value = '198.51.100.${n % 256}']`,
    pattern_type: 'stix',
    valid_from: '2024-01-01T00:00:00Z',
  };
}

describe('bus: broker recovery on RabbitMQ', function () {
  this.timeout(120_000);
  let r: RabbitHandle;
  const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const vhost = `sets-recovery-${tag}`;
  const buses: AmqpBus[] = [];

  function newBus(over: Partial<AmqpBusConfig> = {}): AmqpBus {
    const b = new AmqpBus({ url: r.url, vhost, clientName: `recovery-${tag}`, reconnect: { initialDelayMs: 200, maxDelayMs: 1000 }, ...over });
    buses.push(b);
    return b;
  }

  before(async function () {
    this.timeout(180_000);
    r = await rabbit();
    await r.ctl(['add_vhost', vhost]);
    await r.ctl(['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
  });

  after(async function () {
    this.timeout(60_000);
    await Promise.all(buses.map((b) => b.close().catch(() => undefined)));
    await r?.ctl(['set_vm_memory_high_watermark', '0.4']).catch(() => undefined);
    await r?.ctl(['delete_vhost', vhost]).catch(() => undefined);
  });

  it('refuses a publish nobody is bound for (UNROUTABLE naming exchange and routing key) unless unroutable is allowed', async () => {
    const bus = newBus();
    const coll = `unbound-${tag}`;
    await assert.rejects(publishPayload(bus, { collection: coll, payload: indicator(1) }), (e: unknown) => {
      const m = (e as Error).message;
      assert.match(m, /UNROUTABLE/);
      assert.match(m, new RegExp(`${coll}\\.indicator`));
      assert.match(m, /exchange "sets"/);
      assert.equal((e as { unroutable?: number }).unroutable, 1);
      return true;
    });
    const out = await publishPayload(bus, { collection: coll, payload: indicator(2), allowUnroutable: true });
    assert.equal(out.count, 1);
    // with a queue bound the same publish goes through
    const sub = bus.subscribe({ queue: `bound-${tag}`, bindings: [`${coll}.#`] }, () => undefined);
    await sub.ready();
    assert.equal((await publishPayload(bus, { collection: coll, payload: indicator(3) })).count, 1);
    await sub.cancel();
    await bus.deleteQueue(`bound-${tag}`);
  });

  it('gives a STIX object version the same messageId on every publish (a re-send is recognisable)', async () => {
    const bus = newBus();
    const queue = `ids-${tag}`;
    const got: BusDelivery[] = [];
    const sub = bus.subscribe({ queue, bindings: ['cid.#'] }, (d) => void got.push(d));
    await sub.ready();
    const o = indicator(1);
    const a = await bus.publishStix('cid', o as never, { hash: 'h1' });
    const b = await bus.publishStix('cid', o as never, { hash: 'h1' });
    const c = await bus.publishStix('cid', { ...o, modified: '2024-02-01T00:00:00.000Z' } as never, { hash: 'h1' });
    const d = await bus.publishStix('cid2', o as never, { hash: 'h1' }).catch(() => ({ messageId: 'unroutable' }));
    assert.equal(a.messageId, b.messageId);
    assert.notEqual(a.messageId, c.messageId);
    assert.notEqual(a.messageId, d.messageId);
    assert.match(a.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // the in-process broker derives the same id
    const mem = new MemoryBus({ name: `ids-${tag}` });
    try {
      assert.equal((await mem.publishStix('cid', o as never, { hash: 'h1' })).messageId, a.messageId);
    } finally {
      await mem.close();
    }
    await waitFor('3 deliveries', () => got.length === 3);
    assert.equal(got[0].messageId, got[1].messageId);
    await sub.cancel();
    await bus.deleteQueue(queue);
  });

  it('keeps a publish waiting through a broker outage longer than its confirm timeout, then delivers it', async () => {
    const queue = `outage-${tag}`;
    const setup = newBus();
    const got: BusDelivery[] = [];
    const sub = setup.subscribe({ queue, bindings: ['out.#'] }, (d) => void got.push(d));
    await sub.ready();
    const bus = newBus({ publishTimeoutMs: 2000, brokerWaitMs: 60_000 });
    await bus.whenConnected();
    await r.stopApp();
    let started = false;
    try {
      await waitFor('producer disconnected', () => bus.state !== 'connected');
      const t0 = Date.now();
      const pub = bus.publish({ routingKey: 'out.indicator', body: { during: 'outage' }, mandatory: true });
      pub.catch(() => undefined);
      await sleep(5000); // longer than the 2 s confirm timeout
      await r.startApp();
      started = true;
      const res = await pub;
      assert.ok(Date.now() - t0 >= 5000);
      assert.equal(res.routingKey, 'out.indicator');
      await waitFor('delivery after the outage', () => got.length === 1);
    } finally {
      if (!started) await r.startApp();
    }
    await waitFor('subscriber back', async () => (await setup.queueInfo(queue).catch(() => ({ consumerCount: 0 }))).consumerCount === 1);
    await sub.cancel();
    await setup.deleteQueue(queue);
  });

  it('says a publish may have arrived when it timed out after being sent, and a broker alarm blocks only the publisher: acks still go through', async () => {
    const queue = `alarm-${tag}`;
    const bus = newBus({ confirmTimeoutMs: 1500 });
    const held: BusDelivery[] = [];
    const sub = bus.subscribe({ queue, bindings: ['alarm.#'], ackMode: 'manual' }, (d) => void held.push(d));
    await sub.ready();
    await bus.publish({ routingKey: 'alarm.indicator', body: { n: 1 } });
    await waitFor('delivery held unacked', () => held.length === 1);
    await r.ctl(['set_vm_memory_high_watermark', '0']);
    try {
      const blockedPub = bus.publish({ routingKey: 'alarm.indicator', body: { n: 2 } });
      blockedPub.catch(() => undefined);
      await waitFor('publisher blocked', () => bus.stats().blocked);
      assert.match(bus.detail, /blocked/);
      // the ack of the message delivered before the alarm is not held back by the alarm
      assert.equal(held[0].ack(), true);
      await waitFor('the ack reached the broker (nothing unacked in the queue)', async () => {
        const out = await r.ctl(['list_queues', '-p', vhost, 'name', 'messages_unacknowledged']);
        return new RegExp(`^${queue}\\s+0$`, 'm').test(out);
      }, 15_000);
      await assert.rejects(blockedPub, (e: unknown) => {
        assert.ok(e instanceof BusError && e.code === 'TIMEOUT', String(e));
        assert.equal(e.maybeDelivered, true);
        assert.match(e.message, /may have arrived/);
        return true;
      });
    } finally {
      await r.ctl(['set_vm_memory_high_watermark', '0.4']);
    }
    await waitFor('publisher unblocked', () => !bus.stats().blocked);
    await sub.cancel();
    await bus.deleteQueue(queue);
  });

  for (const queueType of ['classic', 'quorum'] as const) {
    it(`dead-letters a message requeued past the delivery limit (${queueType} queue) instead of looping`, async () => {
      const bus = newBus();
      const queue = `limit-${queueType}-${tag}`;
      const dlq = `${queue}.dead`;
      const counts: number[] = [];
      const opts: SubscribeOptions = { queue, bindings: [`lim${queueType}.#`], queueType, deliveryLimit: 3, deadLetterExchange: `${dlq}.dlx`, deadLetterQueue: dlq, ackMode: 'manual' };
      const sub = bus.subscribe(opts, (d) => {
        counts.push(d.deliveryCount);
        d.nack({ requeue: true });
      });
      await sub.ready();
      await bus.publish({ routingKey: `lim${queueType}.indicator`, body: { bad: true }, messageId: `bad-${queueType}` });
      await waitFor('message in the dead-letter queue', async () => (await bus.queueInfo(dlq)).messageCount === 1);
      await sleep(300);
      assert.deepEqual(counts, [1, 2, 3]);
      await sub.cancel();
      await bus.deleteQueue(queue);
      await bus.deleteQueue(dlq);
    });
  }

  it('dead-letters messages older than the message TTL', async () => {
    const bus = newBus();
    const queue = `ttl-${tag}`;
    const dlq = `${queue}.dead`;
    const sub = bus.subscribe({ queue, bindings: ['ttl.#'], messageTtlMs: 200, deadLetterExchange: `${dlq}.dlx`, deadLetterQueue: dlq }, () => undefined);
    await sub.ready();
    await sub.cancel();
    await bus.publish({ routingKey: 'ttl.indicator', body: { old: true } });
    await waitFor('expired message dead-lettered', async () => (await bus.queueInfo(dlq)).messageCount === 1);
    assert.equal((await bus.queueInfo(queue)).messageCount, 0);
    await bus.deleteQueue(queue);
    await bus.deleteQueue(dlq);
  });

  it('fails a subscription whose queue exists with other arguments, naming the argument and the fix', async () => {
    const bus = newBus();
    const queue = `ineq-${tag}`;
    const first = bus.subscribe({ queue, bindings: ['ineq.#'] }, () => undefined);
    await first.ready();
    await first.cancel();
    const warnings: BusError[] = [];
    bus.onWarning((w) => warnings.push(w));
    const second = bus.subscribe({ queue, bindings: ['ineq.#'], deadLetterExchange: `${queue}.dlx`, deadLetterQueue: `${queue}.dead` }, () => undefined);
    await assert.rejects(second.ready(), (e: unknown) => {
      assert.ok(e instanceof BusError && e.code === 'SUBSCRIBE_FAILED');
      assert.equal(e.amqpCode, 406);
      assert.match(e.message, /x-dead-letter-exchange/);
      assert.match(e.message, /delete the queue/);
      assert.match(e.message, /new queue name/);
      return true;
    });
    assert.equal(second.state, 'failed');
    await sleep(1500);
    assert.equal(warnings.filter((w) => w.code === 'SUBSCRIBE_FAILED').length, 1, `no retry loop: ${warnings.map((w) => w.message).join(' / ')}`);
    await bus.deleteQueue(queue);
    await bus.deleteQueue(`${queue}.dead`);
  });

  it('rejects a quorum queue that is not named and durable, on both brokers', () => {
    const mem: Bus = new MemoryBus({ name: `q-${tag}` });
    for (const b of [newBus(), mem]) {
      assert.throws(() => b.subscribe({ bindings: ['x.#'], queueType: 'quorum' }, () => undefined), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
      assert.throws(() => b.subscribe({ queue: 'q', bindings: ['x.#'], deliveryLimit: -1 }, () => undefined), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    }
    void mem.close();
  });
});
