/**
 * lib/bus against a real RabbitMQ (test/support/rabbit.ts): confirms, topic routing, durable and
 * temporary queues, prefetch, explicit settlement, dead-lettering, broker dropping connections,
 * broker down at start, clean close. Each run works in its own vhost, so parallel runs against
 * one broker do not see each other's queues.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as net from 'node:net';
import * as path from 'node:path';
import { rabbit } from '../support/services';
import type { RabbitHandle } from '../support/rabbit';
import {
  AmqpBus,
  BusError,
  SharedBus,
  probeAmqp,
  bindingKey,
  bindingKeys,
  parseRoutingKey,
  routingKey,
  type AmqpBusConfig,
  type BusDelivery,
  type BusState,
  type SubscribeOptions,
} from '../../lib/bus';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

function indicator(n: number, pad = 0): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${randomUUID()}`,
    created: '2024-01-01T00:00:00.000Z',
    modified: '2024-01-01T00:00:00.000Z',
    name: `test indicator ${n}`,
    pattern: `[ipv4-addr:value = '198.51.100.${n % 256}']`,
    pattern_type: 'stix',
    valid_from: '2024-01-01T00:00:00Z',
    ...(pad > 0 ? { description: 'x'.repeat(pad) } : {}),
  };
}

describe('bus: routing keys', () => {
  it('builds <collection>.<type> and escapes characters that would break topic matching', () => {
    assert.equal(routingKey('c1', 'indicator'), 'c1.indicator');
    assert.equal(routingKey('91a7b528-80eb-42ed-a74d-c6fbd5a26116', 'x-acme-widget'), '91a7b528-80eb-42ed-a74d-c6fbd5a26116.x-acme-widget');
    assert.equal(routingKey('a.b', 'in*di#cator'), 'a%2Eb.in%2Adi%23cator');
    assert.equal(routingKey('50%', 'x'), '50%25.x');
    // injective: "a.b" and "a%2Eb" do not collide
    assert.notEqual(routingKey('a.b', 't'), routingKey('a%2Eb', 't'));
    assert.deepEqual(parseRoutingKey(routingKey('a.b#', 'in*d')), { collection: 'a.b#', stixType: 'in*d' });
    assert.equal(parseRoutingKey('a.b.c'), null);
    assert.throws(() => routingKey('', 'indicator'), (e: unknown) => e instanceof BusError && e.code === 'BAD_INPUT');
    assert.throws(() => routingKey('c'.repeat(300), 'indicator'), (e: unknown) => e instanceof BusError && e.code === 'BAD_INPUT');
  });

  it('builds binding keys for collections and types', () => {
    assert.equal(bindingKey(), '#');
    assert.equal(bindingKey({ collection: 'c1' }), 'c1.#');
    assert.equal(bindingKey({ type: 'indicator' }), '*.indicator');
    assert.equal(bindingKey({ collection: 'c.1', type: 'malware' }), 'c%2E1.malware');
    assert.deepEqual(bindingKeys({}), ['#']);
    assert.deepEqual(bindingKeys({ collection: 'c1', types: ['indicator', 'malware'] }), ['c1.indicator', 'c1.malware']);
    assert.deepEqual(bindingKeys({ collection: ['c1', 'c2'] }), ['c1.#', 'c2.#']);
    assert.deepEqual(bindingKeys({ types: 'indicator' }), ['*.indicator']);
  });
});

describe('bus: without a broker', () => {
  it('rejects bad configuration with BAD_CONFIG', () => {
    assert.throws(() => new AmqpBus({ url: 'http://localhost' }), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    assert.throws(() => new AmqpBus({ url: 'not a url' }), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    assert.throws(() => new AmqpBus({ url: 'amqp://h', prefetch: -1 }), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
  });

  it('keeps publishes waiting while the broker is unreachable, bounded by count and time', async () => {
    const port = await freePort(); // nothing listens there
    const bus = new AmqpBus({ url: `amqp://127.0.0.1:${port}`, brokerWaitMs: 400, maxPendingPublishes: 2, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    const states: BusState[] = [];
    bus.onState((s) => states.push(s));
    try {
      const p1 = bus.publish({ routingKey: 'c.t', body: { n: 1 } });
      const p2 = bus.publish({ routingKey: 'c.t', body: { n: 2 } });
      await assert.rejects(bus.publish({ routingKey: 'c.t', body: { n: 3 } }), (e: unknown) => e instanceof BusError && e.code === 'QUEUE_FULL');
      await assert.rejects(p1, (e: unknown) => e instanceof BusError && e.code === 'TIMEOUT');
      await assert.rejects(p2, (e: unknown) => e instanceof BusError && e.code === 'TIMEOUT');
      assert.ok(states.includes('connecting') && states.includes('disconnected'), `states seen: ${states.join(',')}`);
      assert.equal(bus.stats().publishFailed, 3);
      const p4 = bus.publish({ routingKey: 'c.t', body: { n: 4 }, timeoutMs: 60_000 });
      await bus.close();
      await assert.rejects(p4, (e: unknown) => e instanceof BusError && e.code === 'CLOSED');
      await assert.rejects(bus.publish({ routingKey: 'c.t', body: {} }), (e: unknown) => e instanceof BusError && e.code === 'CLOSED');
      assert.equal(bus.state, 'closed');
    } finally {
      await bus.close();
    }
  });

  it('shares one bus between users and closes it when the last one releases it (SharedBus)', async () => {
    const port = await freePort();
    let made = 0;
    const shared = new SharedBus(() => {
      made++;
      return new AmqpBus({ url: `amqp://127.0.0.1:${port}`, reconnect: { initialDelayMs: 50 } });
    });
    const a = shared.acquire('node-a');
    const b = shared.acquire('node-b');
    assert.equal(a, b);
    assert.equal(made, 1);
    assert.equal(shared.refCount, 2);
    await shared.release('node-a');
    assert.notEqual(a.state, 'closed');
    await shared.release('node-b');
    assert.equal(a.state, 'closed');
    assert.equal(shared.current, undefined);
    const c = shared.acquire('node-a');
    assert.notEqual(c, a);
    assert.equal(made, 2);
    await shared.closeAll();
    assert.equal(c.state, 'closed');
  });
});

describe('bus: RabbitMQ integration', function () {
  this.timeout(90_000);
  let r: RabbitHandle;
  let vhost: string;
  const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const buses: AmqpBus[] = [];

  function newBus(over: Partial<AmqpBusConfig> = {}): AmqpBus {
    const b = new AmqpBus({
      url: r.url,
      vhost,
      clientName: `bus-test-${tag}`,
      reconnect: { initialDelayMs: 200, maxDelayMs: 2000 },
      ...over,
    });
    buses.push(b);
    return b;
  }

  /** subscribe and collect deliveries */
  function collect(bus: AmqpBus, opts: SubscribeOptions, onDelivery?: (d: BusDelivery) => unknown): { got: BusDelivery[]; sub: ReturnType<AmqpBus['subscribe']> } {
    const got: BusDelivery[] = [];
    const sub = bus.subscribe(opts, (d) => {
      got.push(d);
      return onDelivery?.(d);
    });
    return { got, sub };
  }

  before(async function () {
    this.timeout(120_000);
    r = await rabbit();
    vhost = `sets-bus-test-${tag}`;
    await r.ctl(['add_vhost', vhost]);
    await r.ctl(['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
  });

  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });

  after(async () => {
    if (vhost) await r.ctl(['delete_vhost', vhost]).catch(() => undefined);
  });

  it('publishes with a broker confirm and delivers the STIX object with the SETS headers', async () => {
    const bus = newBus();
    const { got, sub } = collect(bus, { bindings: ['c1.#'] });
    await sub.ready();
    assert.match(String(sub.queue), /^amq\.gen-/);
    const obj = indicator(1);
    const res = await bus.publishStix('c1', obj as { type: string; id: string }, { hash: 'ab'.repeat(32) });
    assert.equal(res.routingKey, 'c1.indicator');
    assert.equal(res.attempts, 1);
    await waitFor('delivery', () => got.length === 1);
    const d = got[0];
    assert.deepEqual(d.json(), obj);
    assert.equal(d.routingKey, 'c1.indicator');
    assert.equal(d.collection, 'c1');
    assert.equal(d.stixType, 'indicator');
    assert.equal(d.contentType, 'application/stix+json');
    assert.equal(d.messageId, res.messageId);
    assert.equal(d.headers['x-sets-collection'], 'c1');
    assert.equal(d.headers['x-sets-object-id'], obj.id);
    assert.equal(d.headers['x-sets-version'], obj.modified);
    assert.equal(d.headers['x-sets-hash'], 'ab'.repeat(32));
    assert.equal(d.redelivered, false);
    await waitFor('auto ack', () => bus.stats().acked === 1);
    const s = bus.stats();
    assert.equal(s.state, 'connected');
    assert.equal(s.published, 1);
    assert.equal(s.confirmed, 1);
    assert.equal(s.delivered, 1);
  });

  it('reports refused credentials as state "error" and keeps retrying; probeAmqp tests a config once', async () => {
    const bad = newBus({ username: 'guest', password: 'wrong', reconnect: { initialDelayMs: 100, maxDelayMs: 200 } });
    const warnings: BusError[] = [];
    bad.onWarning((w) => warnings.push(w));
    bad.start();
    await waitFor('state error', () => bad.state === 'error');
    assert.match(bad.detail, /access refused/);
    await waitFor('a second attempt', () => warnings.filter((w) => w.code === 'ACCESS_REFUSED').length >= 2);
    assert.ok(!bad.detail.includes('wrong'), 'no password in status text');
    await bad.close();
    const noVhost = newBus({ vhost: `no-such-vhost-${tag}`, reconnect: { initialDelayMs: 100, maxDelayMs: 200 } });
    noVhost.start();
    await waitFor('state error', () => noVhost.state === 'error');
    assert.match(noVhost.detail, /vhost/);
    await noVhost.close();
    const ok = await probeAmqp({ url: r.url, vhost });
    assert.match(ok.server, /RabbitMQ/);
    await assert.rejects(probeAmqp({ url: r.url, vhost, password: 'wrong', username: 'guest' }), (e: unknown) => e instanceof BusError && e.code === 'ACCESS_REFUSED');
    await assert.rejects(probeAmqp({ url: r.url, vhost: `no-such-vhost-${tag}` }), (e: unknown) => e instanceof BusError && e.code === 'ACCESS_REFUSED');
  });

  it('routes by <collection>.<type>: c1.indicator gets only indicators of c1, c1.# all of c1', async () => {
    const bus = newBus();
    const only = collect(bus, { bindings: bindingKeys({ collection: 'c1', types: 'indicator' }) });
    const all = collect(bus, { bindings: bindingKeys({ collection: 'c1' }) });
    const inds = collect(bus, { bindings: bindingKeys({ types: 'indicator' }) });
    await Promise.all([only.sub.ready(), all.sub.ready(), inds.sub.ready()]);
    const send = (rk: string, n: string): Promise<unknown> => bus.publish({ routingKey: rk, body: { n } });
    await send(routingKey('c1', 'indicator'), 'c1-ind');
    await send(routingKey('c1', 'malware'), 'c1-mal');
    await send(routingKey('c2', 'indicator'), 'c2-ind');
    await send(routingKey('c1.x', 'indicator'), 'c1.x-ind'); // escaped: must not match c1.*
    // one publisher channel => per-queue order; a last message every binding matches marks the end
    await send(routingKey('c1', 'indicator'), 'end');
    const ns = (g: BusDelivery[]): string[] => g.map((d) => (d.json() as { n: string }).n);
    await waitFor('end markers', () => [only, all, inds].every((c) => ns(c.got).includes('end')));
    assert.deepEqual(ns(only.got), ['c1-ind', 'end']);
    assert.deepEqual(ns(all.got), ['c1-ind', 'c1-mal', 'end']);
    assert.deepEqual(ns(inds.got), ['c1-ind', 'c2-ind', 'c1.x-ind', 'end']);
  });

  it('keeps messages in a durable named queue while no consumer runs, across a consumer restart', async () => {
    const queue = `durable-${tag}`;
    const first = newBus();
    const a = collect(first, { queue, bindings: ['c3.#'] });
    await a.sub.ready();
    await a.sub.cancel();
    await first.close();

    const producer = newBus();
    for (let i = 0; i < 3; i++) await producer.publish({ routingKey: 'c3.indicator', body: { i } });
    const info = await producer.queueInfo(queue);
    assert.equal(info.messageCount, 3);
    assert.equal(info.consumerCount, 0);

    const second = newBus();
    const b = collect(second, { queue, bindings: ['c3.#'] });
    await waitFor('3 kept messages', () => b.got.length === 3);
    assert.deepEqual(
      b.got.map((d) => (d.json() as { i: number }).i),
      [0, 1, 2],
    );
    await b.sub.cancel();
    await producer.deleteQueue(queue);
  });

  it('uses an exclusive temporary queue that others cannot use and that disappears with its consumer', async () => {
    const bus = newBus();
    const other = newBus();
    const { sub } = collect(bus, { bindings: ['c4.#'] });
    await sub.ready();
    const q = String(sub.queue);
    await other.whenConnected();
    await assert.rejects(other.queueInfo(q), (e: unknown) => e instanceof BusError && e.amqpCode === 405); // RESOURCE_LOCKED
    await sub.cancel();
    await waitFor('queue deleted', async () => {
      try {
        await other.queueInfo(q);
        return false;
      } catch (e) {
        return e instanceof BusError && e.amqpCode === 404;
      }
    });
  });

  it('respects the prefetch bound: with 100 unacked deliveries nothing more is delivered', async () => {
    const bus = newBus();
    const queue = `prefetch-${tag}`;
    const { got, sub } = collect(bus, { queue, bindings: ['c5.#'], prefetch: 100, ackMode: 'manual' });
    await sub.ready();
    await Promise.all(Array.from({ length: 150 }, (_, i) => bus.publish({ routingKey: 'c5.indicator', body: { i } })));
    await waitFor('100 deliveries and 50 ready in the queue', async () => got.length === 100 && (await bus.queueInfo(queue)).messageCount === 50);
    assert.equal(got.length, 100);
    assert.equal(sub.unsettled, 100);
    assert.equal(got[0].ack(), true);
    assert.equal(got[0].ack(), false); // settled once only
    await waitFor('one more delivery', () => got.length === 101);
    assert.equal((await bus.queueInfo(queue)).messageCount, 49);
    for (const d of got) d.ack();
    await waitFor('all 150', () => got.length === 150);
    for (const d of got) d.ack();
    await waitFor('all acked', () => sub.unsettled === 0);
    await sub.cancel();
    assert.equal((await bus.queueInfo(queue)).messageCount, 0);
    await bus.deleteQueue(queue);
  });

  it('acks only after the handler resolves (auto mode); settling on a dead channel does not throw', async () => {
    const bus = newBus();
    const queue = `autoack-${tag}`;
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    const first = collect(bus, { queue, bindings: ['c6.#'], settleTimeoutMs: 100 }, () => gate);
    await first.sub.ready();
    const res = await bus.publish({ routingKey: 'c6.indicator', body: { x: 1 } });
    await waitFor('delivery', () => first.got.length === 1);
    // the handler has not resolved: the message is not acked, so stopping the consumer gives it back
    await first.sub.cancel();
    await waitFor('message back in the queue', async () => (await bus.queueInfo(queue)).messageCount === 1);
    const warnings: BusError[] = [];
    bus.onWarning((w) => warnings.push(w));
    release(); // handler resolves now: the auto-ack goes to a closed channel — ignored, no throw
    await waitFor('auto-ack attempted', () => first.got[0].settled);
    assert.ok(warnings.some((w) => w.code === 'SETTLE_FAILED'));
    assert.equal(first.got[0].ack(), false);

    const second = collect(bus, { queue, bindings: ['c6.#'] }, () => sleep(10));
    await waitFor('redelivery', () => second.got.length === 1);
    assert.equal(second.got[0].redelivered, true);
    assert.equal(second.got[0].messageId, res.messageId);
    await waitFor('acked after the handler resolved', () => second.got[0].settled);
    await second.sub.cancel();
    assert.equal((await bus.queueInfo(queue)).messageCount, 0);
    await bus.deleteQueue(queue);
  });

  it('nack with requeue redelivers the message', async () => {
    const bus = newBus();
    const { got, sub } = collect(bus, { bindings: ['c7.#'], ackMode: 'manual' }, (d) => {
      if (!d.redelivered) d.nack({ requeue: true });
      else d.ack();
    });
    await sub.ready();
    const res = await bus.publish({ routingKey: 'c7.indicator', body: { x: 1 } });
    await waitFor('redelivery', () => got.length === 2);
    assert.equal(got[0].redelivered, false);
    assert.equal(got[1].redelivered, true);
    assert.equal(got[1].messageId, res.messageId);
    await waitFor('acked', () => sub.unsettled === 0);
    const s = bus.stats();
    assert.equal(s.nacked, 1);
    assert.equal(s.acked, 1);
  });

  it('nack without requeue, and a failing handler, send the message to the dead-letter exchange', async () => {
    const bus = newBus();
    const dlx = `sets.dlx-${tag}`;
    const dlq = `dlq-${tag}`;
    const queue = `work-${tag}`;
    const { sub } = collect(bus, { queue, bindings: ['c8.#'], deadLetterExchange: dlx, deadLetterQueue: dlq }, (d) => {
      const n = (d.json() as { n: number }).n;
      if (n === 1) d.nack({ requeue: false });
      else throw new Error('flow failed');
    });
    await sub.ready();
    const dead = collect(bus, { queue: dlq, bindings: [] });
    await dead.sub.ready();
    await bus.publish({ routingKey: 'c8.indicator', body: { n: 1 } });
    await bus.publish({ routingKey: 'c8.malware', body: { n: 2 } });
    await waitFor('2 dead letters', () => dead.got.length === 2);
    const byN = new Map(dead.got.map((d) => [(d.json() as { n: number }).n, d]));
    assert.equal(byN.get(1)?.routingKey, 'c8.indicator'); // original routing key kept
    assert.equal(byN.get(2)?.routingKey, 'c8.malware');
    const death = byN.get(1)?.headers['x-death'];
    assert.ok(Array.isArray(death) && death.length > 0);
    assert.equal((death[0] as { queue: string; reason: string }).queue, queue);
    assert.equal((death[0] as { queue: string; reason: string }).reason, 'rejected');
    await sub.cancel();
    await dead.sub.cancel();
    await bus.deleteQueue(queue);
    await bus.deleteQueue(dlq);
  });

  it('rejects a publish the broker nacks (queue full with reject-publish overflow)', async () => {
    const bus = newBus();
    const queue = `full-${tag}`;
    const { sub } = collect(bus, { queue, bindings: ['c10.#'], arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    await sub.ready();
    await sub.cancel();
    await bus.publish({ routingKey: 'c10.indicator', body: { n: 1 } });
    await assert.rejects(bus.publish({ routingKey: 'c10.indicator', body: { n: 2 } }), (e: unknown) => e instanceof BusError && e.code === 'NACKED');
    await bus.deleteQueue(queue);
  });

  it('rejects a mandatory publish that no queue is bound for with UNROUTABLE', async () => {
    const bus = newBus();
    await assert.rejects(
      bus.publish({ routingKey: 'nobody.listens', body: {}, mandatory: true }),
      (e: unknown) => e instanceof BusError && e.code === 'UNROUTABLE',
    );
    const { sub } = collect(bus, { bindings: ['nobody.#'] });
    await sub.ready();
    const res = await bus.publish({ routingKey: 'nobody.listens', body: {}, mandatory: true });
    assert.equal(res.attempts, 1);
  });

  it('re-subscribes when the broker cancels the consumer (queue deleted)', async () => {
    const bus = newBus();
    const queue = `deleted-${tag}`;
    const { got, sub } = collect(bus, { queue, bindings: ['c15.#'] });
    await sub.ready();
    await bus.deleteQueue(queue);
    await waitFor('queue declared again', async () => {
      try {
        return (await bus.queueInfo(queue)).consumerCount === 1;
      } catch {
        return false;
      }
    });
    await bus.publish({ routingKey: 'c15.indicator', body: { after: 'delete' } });
    await waitFor('delivery', () => got.length === 1);
    assert.equal(sub.state, 'active');
    await sub.cancel();
    await bus.deleteQueue(queue);
  });

  it('loses nothing when the broker drops all connections while 1,000 messages are published', async () => {
    const queue = `drop-${tag}`;
    const consumer = newBus();
    const ids = new Set<string>();
    let deliveries = 0;
    const { sub } = collect(consumer, { queue, bindings: ['c9.#'] }, (d) => {
      deliveries++;
      ids.add(String(d.messageId));
    });
    await sub.ready();
    const producer = newBus();
    await producer.whenConnected();
    const pubs: Promise<unknown>[] = [];
    const closing = r.closeAllConnections(vhost);
    for (let i = 0; i < 1000; i++) {
      pubs.push(producer.publish({ routingKey: 'c9.indicator', body: indicator(i, 200), messageId: `m-${i}` }));
      if (i % 20 === 19) await sleep(25); // ~1 s of steady publishing around the drop
      if (i === 700) await closing; // the drop happens before the last 300 are sent
    }
    const results = await Promise.allSettled(pubs);
    const rejected = results.filter((x) => x.status === 'rejected');
    assert.equal(rejected.length, 0, `rejected: ${rejected.map((x) => String((x as PromiseRejectedResult).reason)).slice(0, 3).join('; ')}`);
    await waitFor('all 1,000 at the consumer', () => ids.size === 1000, 60_000);
    assert.ok(producer.stats().reconnects >= 1, 'the producer reconnected');
    assert.ok(consumer.stats().reconnects >= 1, 'the consumer reconnected');
    console.log(
      `      drop: producer published ${producer.stats().published} (resent ${producer.stats().resent}), consumer got ${deliveries} deliveries for 1000 ids`,
    );
    await sub.cancel();
    await consumer.deleteQueue(queue);
  });

  it('resends what was unconfirmed when the connection dropped (publishes held back by a memory alarm)', async () => {
    const queue = `held-${tag}`;
    const consumer = newBus();
    const ids = new Set<string>();
    const { sub } = collect(consumer, { queue, bindings: ['c14.#'] }, (d) => {
      ids.add(String(d.messageId));
    });
    await sub.ready();
    const producer = newBus();
    await producer.whenConnected();
    // vm_memory_high_watermark 0 raises the memory alarm: the broker stops reading from publishing
    // connections, so their messages stay unconfirmed until the connection drops.
    await r.ctl(['set_vm_memory_high_watermark', '0']);
    let pubs: Promise<unknown>[] = [];
    try {
      pubs = Array.from({ length: 1000 }, (_, i) => producer.publish({ routingKey: 'c14.indicator', body: indicator(i, 200), messageId: `h-${i}` }));
      await waitFor('producer blocked by the broker', () => producer.stats().blocked);
      assert.ok(producer.stats().pendingPublishes > 0, 'messages are waiting for confirms');
      await r.closeAllConnections(vhost);
      await waitFor('producer reconnected', () => producer.stats().reconnects >= 1);
    } finally {
      await r.ctl(['set_vm_memory_high_watermark', '0.4']);
    }
    const results = await Promise.allSettled(pubs);
    assert.equal(results.filter((x) => x.status === 'rejected').length, 0);
    await waitFor('all 1,000 at the consumer', () => ids.size === 1000, 60_000);
    assert.ok(producer.stats().resent > 0, 'unconfirmed messages were sent again');
    console.log(`      held: resent ${producer.stats().resent} of 1000 after the drop`);
    await sub.cancel();
    await consumer.deleteQueue(queue);
  });

  it('starts while the broker is down, keeps retrying, then connects and delivers', async () => {
    const queue = `late-${tag}`;
    const setup = newBus();
    const pre = collect(setup, { queue, bindings: ['c11.#'] });
    await pre.sub.ready();
    await pre.sub.cancel();
    await setup.close();

    await r.stopApp();
    let started = false;
    try {
      const bus = newBus({ reconnect: { initialDelayMs: 300, maxDelayMs: 1000 } });
      const states: BusState[] = [];
      bus.onState((s) => states.push(s));
      const { got } = collect(bus, { queue, bindings: ['c11.#'] });
      const pub = bus.publish({ routingKey: 'c11.indicator', body: { late: true } });
      await sleep(2000);
      assert.notEqual(bus.state, 'connected');
      await r.startApp();
      started = true;
      await pub;
      await waitFor('delivery after the broker came up', () => got.length === 1, 30_000);
      assert.ok(states.includes('connecting') && states.includes('disconnected') && states.at(-1) === 'connected', `states: ${states.join(',')}`);
      await bus.deleteQueue(queue);
    } finally {
      if (!started) await r.startApp();
    }
  });

  it('close() leaves nothing behind: a process using the bus exits by itself', async () => {
    const lib = path.resolve(__dirname, '..', '..', 'lib', 'bus');
    const deadPort = await freePort();
    const script = `
      const { AmqpBus } = require(${JSON.stringify(lib)});
      process.on('unhandledRejection', (e) => { console.error('UNHANDLED', e); process.exit(3); });
      (async () => {
        const bus = new AmqpBus({ url: process.env.URL, vhost: process.env.VHOST, heartbeatSec: 5 });
        let got;
        const done = new Promise((res) => (got = res));
        const sub = bus.subscribe({ bindings: ['c12.#'] }, (d) => got(d.json()));
        await sub.ready();
        await bus.publish({ routingKey: 'c12.indicator', body: { ok: 1 } });
        const body = await done;
        const dead = new AmqpBus({ url: 'amqp://127.0.0.1:${deadPort}', reconnect: { initialDelayMs: 50 } });
        const p = dead.publish({ routingKey: 'x.y', body: {} }).catch((e) => e.code);
        dead.subscribe({ bindings: ['#'] }, () => undefined);
        await new Promise((r) => setTimeout(r, 300));
        await dead.close();
        await bus.close();
        console.log(JSON.stringify({ body, dead: await p, state: bus.state }));
      })();
    `;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['-e', script], { env: { ...process.env, URL: r.url, VHOST: vhost }, timeout: 30_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`child did not exit cleanly: ${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
    assert.deepEqual(JSON.parse(out.trim()), { body: { ok: 1 }, dead: 'CLOSED', state: 'closed' });
  });

  it('measures throughput: 5,000 persistent ~600-byte messages with confirms and acks', async () => {
    const queue = `bench-${tag}`;
    const bus = newBus();
    let received = 0;
    let allIn!: () => void;
    const all = new Promise<void>((res) => (allIn = res));
    const { sub } = collect(bus, { queue, bindings: ['c13.#'] }, () => {
      if (++received === 5000) allIn();
    });
    await sub.ready();
    const body = Buffer.from(JSON.stringify(indicator(1, 330)));
    const t0 = process.hrtime.bigint();
    const pubs: Promise<unknown>[] = [];
    for (let i = 0; i < 5000; i++) pubs.push(bus.publish({ routingKey: 'c13.indicator', body }));
    await Promise.all(pubs);
    const tConfirmed = process.hrtime.bigint();
    await all;
    await waitFor('all acked', () => sub.unsettled === 0);
    const t1 = process.hrtime.bigint();
    const ms = Number(t1 - t0) / 1e6;
    const msConfirmed = Number(tConfirmed - t0) / 1e6;
    console.log(
      `      throughput: ${body.length}-byte persistent messages: 5000 confirmed in ${msConfirmed.toFixed(0)} ms, ` +
        `delivered+acked in ${ms.toFixed(0)} ms => ${((5000 / ms) * 1000).toFixed(0)} msgs/s end to end`,
    );
    assert.equal(received, 5000);
    assert.equal(bus.stats().confirmed, 5000);
    await sub.cancel();
    await bus.deleteQueue(queue);
  });
});
