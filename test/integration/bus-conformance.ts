/**
 * One conformance suite for every Bus (lib/bus/bus.ts): the same assertions run against the real
 * RabbitMQ (AmqpBus) and against the in-process broker (MemoryBus), so the in-process broker is
 * held to RabbitMQ's behaviour — the real broker is the oracle for every expectation written here.
 *
 * A test file calls `busConformance(factory)`. The factory prepares one broker scope for the suite
 * (a vhost, a broker name) and makes buses in it; each `bus()` is a new connection, closed after
 * each test.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Bus, BusDelivery, SubscribeOptions, Subscription } from '../../lib/bus/bus';
import { BusError } from '../../lib/bus/errors';
import { bindingKey, routingKey } from '../../lib/bus/routing';

export interface BusScope {
  /** a new bus — a new connection — on the suite's broker; `prefetch` is its default prefetch */
  bus(over?: { prefetch?: number }): Bus;
}

export interface BusFactory {
  /** shown in the suite title */
  name: string;
  /** once before the suite: start/reach the broker, make an isolated scope (vhost, broker name) */
  setup(): Promise<BusScope>;
  /** once after the suite (every bus is closed by then) */
  teardown(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Collected {
  got: BusDelivery[];
  sub: Subscription;
}

/** Subscribe and keep every delivery (the handler's result decides the auto-ack). */
export function collect(bus: Bus, opts: SubscribeOptions, onDelivery?: (d: BusDelivery) => unknown): Collected {
  const got: BusDelivery[] = [];
  const sub = bus.subscribe(opts, (d) => {
    got.push(d);
    return onDelivery?.(d);
  });
  return { got, sub };
}

/** The `n` field of each delivery's JSON body. */
const ns = (list: BusDelivery[]): unknown[] => list.map((d) => (d.json() as { n: unknown }).n);

const isBusError =
  (code: string, amqpCode?: number) =>
  (e: unknown): boolean =>
    e instanceof BusError && e.code === code && (amqpCode === undefined || e.amqpCode === amqpCode);

export function busConformance(factory: BusFactory): void {
  describe(`bus conformance: ${factory.name}`, function () {
    this.timeout(60_000);
    let scope: BusScope;
    const open: Bus[] = [];
    const tag = randomBytes(4).toString('hex');
    /** a queue name unique to this run */
    const qn = (what: string): string => `conf-${what}-${tag}`;

    function newBus(over?: { prefetch?: number }): Bus {
      const b = scope.bus(over);
      open.push(b);
      return b;
    }

    before(async function () {
      this.timeout(180_000);
      scope = await factory.setup();
    });

    afterEach(async () => {
      await Promise.all(open.splice(0).map((b) => b.close()));
    });

    after(async function () {
      this.timeout(60_000);
      await factory.teardown();
    });

    it('routes like a topic exchange: * one word, # zero or more, whole words only, one copy per queue', async () => {
      const bus = newBus();
      const keys = [
        'c1.indicator', // 0
        'c1.malware', // 1
        'c2.indicator', // 2
        routingKey('c1.x', 'indicator'), // 3: c1%2Ex.indicator — an escaped collection is ONE word
        'c1', // 4
        'c1.indicator.extra', // 5
        'a.b.c', // 6
        'a.c', // 7
        'a.x.y.c', // 8
        'a*.b', // 9: `a*` is a literal word
        '', // 10: no words at all
        'a..c', // 11: an empty middle word
      ];
      const table: Array<{ bindings: string[]; expect: number[] }> = [
        { bindings: ['c1.indicator'], expect: [0] },
        { bindings: [bindingKey({ collection: 'c1' })], expect: [0, 1, 4, 5] }, // c1.#
        { bindings: [bindingKey({ type: 'indicator' })], expect: [0, 2, 3] }, // *.indicator
        { bindings: [bindingKey()], expect: keys.map((_k, i) => i) }, // #
        { bindings: ['a.#.c'], expect: [6, 7, 8, 11] },
        { bindings: ['a.*.c'], expect: [6, 11] },
        { bindings: ['#.c'], expect: [6, 7, 8, 11] },
        { bindings: ['*'], expect: [4] },
        { bindings: ['a*.b'], expect: [9] },
        { bindings: ['*.*'], expect: [0, 1, 2, 3, 7, 9] },
        { bindings: [bindingKey({ collection: 'c1.x' })], expect: [3] }, // c1%2Ex.#
        { bindings: ['c1.indicator', 'c1.#'], expect: [0, 1, 4, 5] }, // two matching bindings, one copy
        { bindings: [''], expect: [10] },
      ];
      const MARK = 'zz.end.mark';
      const subs = table.map((row) => collect(bus, { bindings: [...row.bindings, MARK] }));
      await Promise.all(subs.map((s) => s.sub.ready()));
      for (let i = 0; i < keys.length; i++) await bus.publish({ routingKey: keys[i], body: { n: i } });
      // one publisher: per-queue order is publish order, so the mark comes last everywhere
      await bus.publish({ routingKey: MARK, body: { n: 'end' } });
      await waitFor('the end mark in every queue', () => subs.every((s) => ns(s.got).includes('end')));
      table.forEach((row, i) => {
        assert.deepEqual(ns(subs[i].got), [...row.expect, 'end'], `bindings ${JSON.stringify(row.bindings)}`);
      });
    });

    it('publish resolves after the confirm; the delivery carries body, routing key, collection, type and SETS headers', async () => {
      const bus = newBus();
      const { got, sub } = collect(bus, { bindings: ['c1.#'] });
      await sub.ready();
      assert.match(String(sub.queue), /^amq\.gen-/);
      const obj = { type: 'indicator', id: `indicator--${randomUUID()}`, created: '2024-01-01T00:00:00.000Z', modified: '2024-02-01T00:00:00.000Z', name: 'x' };
      const res = await bus.publishStix('c1', obj, { hash: 'ab'.repeat(32), headers: { 'x-extra': { nested: [1, 'two', true] } } });
      assert.equal(res.routingKey, 'c1.indicator');
      assert.equal(res.attempts, 1);
      await waitFor('delivery', () => got.length === 1);
      const d = got[0];
      assert.deepEqual(d.json(), obj);
      assert.deepEqual(JSON.parse(d.content.toString('utf8')), obj);
      assert.equal(d.routingKey, 'c1.indicator');
      assert.equal(d.exchange, bus.exchange);
      assert.equal(d.queue, sub.queue);
      assert.equal(d.collection, 'c1');
      assert.equal(d.stixType, 'indicator');
      assert.equal(d.contentType, 'application/stix+json');
      assert.equal(d.messageId, res.messageId);
      assert.equal(d.redelivered, false);
      assert.equal(d.headers['x-sets-collection'], 'c1');
      assert.equal(d.headers['x-sets-object-id'], obj.id);
      assert.equal(d.headers['x-sets-type'], 'indicator');
      assert.equal(d.headers['x-sets-version'], obj.modified);
      assert.equal(d.headers['x-sets-hash'], 'ab'.repeat(32));
      assert.deepEqual(d.headers['x-extra'], { nested: [1, 'two', true] });
      await waitFor('auto ack', () => d.settled && bus.stats().acked === 1);
      const s = bus.stats();
      assert.equal(s.state, 'connected');
      assert.equal(s.published, 1);
      assert.equal(s.confirmed, 1);
      assert.equal(s.delivered, 1);
      assert.equal(s.subscriptions, 1);
      // a body that is not JSON is delivered as it is; json() says what is wrong
      await bus.publish({ routingKey: 'c1.note', body: Buffer.from('<not json>'), contentType: 'text/plain' });
      await waitFor('second delivery', () => got.length === 2);
      assert.equal(got[1].content.toString('utf8'), '<not json>');
      assert.equal(got[1].contentType, 'text/plain');
      assert.throws(() => got[1].json(), isBusError('BAD_INPUT'));
    });

    it('competing consumers on a named queue: each message goes to one of them, within each prefetch bound', async () => {
      const queue = qn('compete');
      const a = collect(newBus(), { queue, bindings: ['cc.#'], prefetch: 1, ackMode: 'manual' });
      const producer = newBus();
      const b = collect(newBus(), { queue, bindings: ['cc.#'], prefetch: 1, ackMode: 'manual' });
      await Promise.all([a.sub.ready(), b.sub.ready(), producer.whenConnected()]);
      assert.equal((await producer.queueInfo(queue)).consumerCount, 2);
      for (let n = 0; n < 4; n++) await producer.publish({ routingKey: 'cc.indicator', body: { n } });
      await waitFor('one each, two waiting', async () => a.got.length === 1 && b.got.length === 1 && (await producer.queueInfo(queue)).messageCount === 2);
      assert.deepEqual([...ns(a.got), ...ns(b.got)].sort(), [0, 1]);
      // A makes room: the next message in queue order goes to A, since B is still full
      assert.equal(a.got[0].ack(), true);
      await waitFor('A gets the next', () => a.got.length === 2);
      assert.equal(ns(a.got)[1], 2);
      assert.equal(b.got.length, 1);
      assert.equal(b.got[0].ack(), true);
      await waitFor('B gets the last', () => b.got.length === 2);
      assert.equal(ns(b.got)[1], 3);
      a.got[1].ack();
      b.got[1].ack();
      await waitFor('all settled', () => a.sub.unsettled === 0 && b.sub.unsettled === 0);
      assert.equal((await producer.queueInfo(queue)).messageCount, 0);
      await a.sub.cancel();
      await b.sub.cancel();
      await producer.deleteQueue(queue);
    });

    it('competing consumers share a burst: every message exactly once, both consumers get some', async () => {
      const queue = qn('burst');
      const a = collect(newBus(), { queue, bindings: ['cb.#'], prefetch: 5 });
      const b = collect(newBus(), { queue, bindings: ['cb.#'], prefetch: 5 });
      await Promise.all([a.sub.ready(), b.sub.ready()]);
      const producer = newBus();
      await Promise.all(Array.from({ length: 40 }, (_x, n) => producer.publish({ routingKey: 'cb.indicator', body: { n } })));
      await waitFor('40 deliveries', () => a.got.length + b.got.length === 40);
      const all = [...ns(a.got), ...ns(b.got)].map(Number).sort((x, y) => x - y);
      assert.deepEqual(all, Array.from({ length: 40 }, (_x, n) => n));
      assert.ok(a.got.length > 0 && b.got.length > 0, `a got ${a.got.length}, b got ${b.got.length}`);
      await waitFor('acked', () => a.sub.unsettled === 0 && b.sub.unsettled === 0);
      await producer.deleteQueue(queue);
    });

    it('respects the prefetch bound of a consumer; an ack lets exactly one more in', async () => {
      const bus = newBus({ prefetch: 3 });
      const queue = qn('prefetch');
      const { got, sub } = collect(bus, { queue, bindings: ['cp.#'], ackMode: 'manual' }); // prefetch from the bus
      await sub.ready();
      for (let n = 0; n < 10; n++) await bus.publish({ routingKey: 'cp.indicator', body: { n } });
      await waitFor('3 out, 7 ready', async () => got.length === 3 && (await bus.queueInfo(queue)).messageCount === 7);
      assert.equal(got.length, 3);
      assert.equal(sub.unsettled, 3);
      assert.deepEqual(ns(got), [0, 1, 2]);
      assert.equal(got[1].ack(), true);
      assert.equal(got[1].ack(), false, 'settled once only');
      assert.equal(got[1].nack(), false);
      await waitFor('one more', async () => got.length === 4 && (await bus.queueInfo(queue)).messageCount === 6);
      assert.equal(got.length, 4);
      assert.equal(ns(got)[3], 3);
      await waitFor('all 10 delivered and acked', () => {
        for (const d of got) if (!d.settled) d.ack();
        return got.length === 10 && sub.unsettled === 0;
      });
      assert.deepEqual(ns(got), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.equal((await bus.queueInfo(queue)).messageCount, 0);
      await sub.cancel();
      await bus.deleteQueue(queue);
    });

    it('a delivery limit dead-letters a message requeued after its last allowed delivery; deliveryCount counts', async () => {
      const bus = newBus();
      const queue = qn('limit');
      const dlq = `${queue}.dead`;
      const counts: number[] = [];
      const { sub } = collect(bus, { queue, bindings: ['cl.#'], deliveryLimit: 2, deadLetterExchange: `${dlq}.dlx`, deadLetterQueue: dlq, ackMode: 'manual' }, (d) => {
        counts.push(d.deliveryCount);
        d.nack({ requeue: true });
      });
      await sub.ready();
      await bus.publish({ routingKey: 'cl.indicator', body: { n: 0 }, messageId: `lim-${tag}` });
      await waitFor('dead-lettered', async () => (await bus.queueInfo(dlq)).messageCount === 1);
      assert.deepEqual(counts, [1, 2]);
      await sub.cancel();
      await bus.deleteQueue(queue);
      await bus.deleteQueue(dlq);
    });

    it('gives publishStix a messageId derived from collection, id, version and hash', async () => {
      const bus = newBus();
      const o = { type: 'indicator', id: 'indicator--00000000-0000-4000-8000-000000000001', modified: '2024-01-01T00:00:00.000Z' };
      const queue = qn('stixid');
      const { sub } = collect(bus, { queue, bindings: ['cs.#'] });
      await sub.ready();
      const a = await bus.publishStix('cs', o, { hash: 'x' });
      const b = await bus.publishStix('cs', o, { hash: 'x' });
      const c = await bus.publishStix('cs', o, { hash: 'y' });
      assert.equal(a.messageId, b.messageId);
      assert.notEqual(a.messageId, c.messageId);
      await sub.cancel();
      await bus.deleteQueue(queue);
    });

    it('nack with requeue puts the message back at its place: redelivered, same messageId', async () => {
      const bus = newBus();
      const queue = qn('requeue');
      const { got, sub } = collect(bus, { queue, bindings: ['cr.#'], prefetch: 1, ackMode: 'manual' }, (d) => {
        if ((d.json() as { n: number }).n === 0 && !d.redelivered) d.nack({ requeue: true });
        else d.ack();
      });
      await sub.ready();
      const first = await bus.publish({ routingKey: 'cr.indicator', body: { n: 0 } });
      await bus.publish({ routingKey: 'cr.indicator', body: { n: 1 } });
      await bus.publish({ routingKey: 'cr.indicator', body: { n: 2 } });
      await waitFor('4 deliveries', () => got.length === 4);
      assert.deepEqual(
        got.map((d) => [(d.json() as { n: number }).n, d.redelivered]),
        [
          [0, false],
          [0, true],
          [1, false],
          [2, false],
        ],
      );
      assert.equal(got[1].messageId, first.messageId);
      await waitFor('settled', () => sub.unsettled === 0);
      const s = bus.stats();
      assert.equal(s.nacked, 1);
      assert.equal(s.acked, 3);
      await sub.cancel();
      await bus.deleteQueue(queue);
    });

    it('reject (default: no requeue) without a dead-letter exchange drops the message', async () => {
      const bus = newBus();
      const queue = qn('reject');
      const { got, sub } = collect(bus, { queue, bindings: ['cj.#'], ackMode: 'manual' }, (d) => {
        if ((d.json() as { n: number }).n === 0) assert.equal(d.reject(), true);
        else d.ack();
      });
      await sub.ready();
      await bus.publish({ routingKey: 'cj.indicator', body: { n: 0 } });
      await bus.publish({ routingKey: 'cj.indicator', body: { n: 1 } });
      await waitFor('both seen', () => got.length === 2 && sub.unsettled === 0);
      assert.deepEqual(ns(got), [0, 1], 'the rejected message does not come back');
      assert.equal((await bus.queueInfo(queue)).messageCount, 0);
      assert.equal(bus.stats().rejected, 1);
      await sub.cancel();
      await bus.deleteQueue(queue);
    });

    it('nack without requeue and a failing handler dead-letter the message with x-death; a dead-letter routing key replaces the key', async () => {
      const bus = newBus();
      const dlx = `dlx-${tag}`;
      const dlq = qn('dlq');
      const queue = qn('work');
      const queue2 = qn('work2');
      const { sub } = collect(bus, { queue, bindings: ['cd.#'], deadLetterExchange: dlx, deadLetterQueue: dlq }, (d) => {
        if ((d.json() as { n: number }).n === 1) d.nack({ requeue: false });
        else throw new Error('flow failed');
      });
      await sub.ready();
      const w2 = collect(bus, { queue: queue2, bindings: ['ce.#'], deadLetterExchange: dlx, deadLetterRoutingKey: 'dead.letters', ackMode: 'manual' }, (d) => {
        d.reject();
      });
      await w2.sub.ready();
      const dead = collect(bus, { queue: dlq, bindings: [] });
      await dead.sub.ready();
      await bus.publish({ routingKey: 'cd.indicator', body: { n: 1 } });
      await bus.publish({ routingKey: 'cd.malware', body: { n: 2 } });
      await bus.publish({ routingKey: 'ce.indicator', body: { n: 3 } });
      await waitFor('3 dead letters', () => dead.got.length === 3);
      const byN = new Map(dead.got.map((d) => [(d.json() as { n: number }).n, d]));
      assert.equal(byN.get(1)?.routingKey, 'cd.indicator', 'the original routing key is kept');
      assert.equal(byN.get(2)?.routingKey, 'cd.malware');
      assert.equal(byN.get(3)?.routingKey, 'dead.letters', 'x-dead-letter-routing-key replaces it');
      assert.equal(byN.get(1)?.exchange, dlx);
      assert.equal(byN.get(1)?.redelivered, false);
      for (const [n, q, rk] of [
        [1, queue, 'cd.indicator'],
        [2, queue, 'cd.malware'],
        [3, queue2, 'ce.indicator'],
      ] as const) {
        const h = byN.get(n)?.headers ?? {};
        const death = h['x-death'];
        assert.ok(Array.isArray(death) && death.length === 1, `x-death of ${n}`);
        const d0 = death[0] as Record<string, unknown>;
        assert.equal(d0.queue, q);
        assert.equal(d0.reason, 'rejected');
        assert.equal(d0.count, 1);
        assert.equal(d0.exchange, bus.exchange);
        assert.deepEqual(d0['routing-keys'], [rk]);
        assert.equal(h['x-first-death-queue'], q);
        assert.equal(h['x-first-death-reason'], 'rejected');
        assert.equal(h['x-first-death-exchange'], bus.exchange);
      }
      await sub.cancel();
      await w2.sub.cancel();
      await dead.sub.cancel();
      for (const q of [queue, queue2, dlq]) await bus.deleteQueue(q);
    });

    it('a consumer that stops with unsettled deliveries gives them back: redelivered later, settling them now returns false', async () => {
      const bus = newBus();
      const queue = qn('giveback');
      const first = collect(bus, { queue, bindings: ['cg.#'], ackMode: 'manual', settleTimeoutMs: 50 });
      await first.sub.ready();
      const res = await bus.publish({ routingKey: 'cg.indicator', body: { n: 0 } });
      await bus.publish({ routingKey: 'cg.indicator', body: { n: 1 } });
      await waitFor('2 deliveries', () => first.got.length === 2);
      const warnings: BusError[] = [];
      bus.onWarning((w) => warnings.push(w));
      await first.sub.cancel();
      assert.equal(first.sub.state, 'cancelled');
      await waitFor('both back in the queue', async () => (await bus.queueInfo(queue)).messageCount === 2);
      assert.equal(first.got[0].ack(), false, 'settling after the consumer stopped does nothing');
      assert.ok(warnings.some((w) => w.code === 'SETTLE_FAILED'));
      const second = collect(bus, { queue, bindings: ['cg.#'] });
      await waitFor('redeliveries', () => second.got.length === 2);
      assert.deepEqual(
        second.got.map((d) => [(d.json() as { n: number }).n, d.redelivered]),
        [
          [0, true],
          [1, true],
        ],
      );
      assert.equal(second.got[0].messageId, res.messageId);
      await waitFor('acked', () => second.sub.unsettled === 0);
      await second.sub.cancel();
      assert.equal((await bus.queueInfo(queue)).messageCount, 0);
      await bus.deleteQueue(queue);
    });

    it('auto ack: acked when the handler resolves; a handler that throws gets the message again (no dead-letter exchange)', async () => {
      const bus = newBus();
      const queue = qn('auto');
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const { got, sub } = collect(bus, { queue, bindings: ['ca.#'] }, (d) => {
        if (!d.redelivered) throw new Error('first attempt fails');
        return gate;
      });
      await sub.ready();
      await bus.publish({ routingKey: 'ca.indicator', body: { n: 0 } });
      await waitFor('redelivery', () => got.length === 2);
      assert.equal(got[0].settled, true);
      assert.equal(got[1].redelivered, true);
      assert.equal(got[1].settled, false, 'not acked while the handler runs');
      assert.equal(sub.unsettled, 1);
      release();
      await waitFor('acked after the handler resolved', () => got[1].settled && sub.unsettled === 0);
      const s = bus.stats();
      assert.equal(s.nacked, 1);
      assert.equal(s.acked, 1);
      await sub.cancel();
      assert.equal((await bus.queueInfo(queue)).messageCount, 0);
      await bus.deleteQueue(queue);
    });

    it('a durable named queue keeps messages, in order, while no consumer runs', async () => {
      const queue = qn('durable');
      const first = newBus();
      const a = collect(first, { queue, bindings: ['ck.#'] });
      await a.sub.ready();
      await a.sub.cancel();
      await first.close();

      const producer = newBus();
      for (let n = 0; n < 3; n++) await producer.publish({ routingKey: 'ck.indicator', body: { n } });
      assert.deepEqual(await producer.queueInfo(queue), { queue, messageCount: 3, consumerCount: 0 });

      const b = collect(newBus(), { queue, bindings: ['ck.#'] });
      await waitFor('3 kept messages', () => b.got.length === 3);
      assert.deepEqual(ns(b.got), [0, 1, 2]);
      assert.ok(b.got.every((d) => !d.redelivered));
      await waitFor('acked', () => b.sub.unsettled === 0);
      await b.sub.cancel();
      assert.equal((await producer.deleteQueue(queue)).messageCount, 0);
    });

    it('a temporary queue is server-named, exclusive to its connection (405 elsewhere) and gone with its consumer (404)', async () => {
      const bus = newBus();
      const other = newBus();
      const { sub } = collect(bus, { bindings: ['ct.#'] });
      await sub.ready();
      const q = String(sub.queue);
      assert.match(q, /^amq\.gen-/);
      assert.equal((await bus.queueInfo(q)).consumerCount, 1);
      await other.whenConnected();
      await assert.rejects(other.queueInfo(q), isBusError('CHANNEL_ERROR', 405));
      await sub.cancel();
      await waitFor('queue deleted', async () => {
        try {
          await other.queueInfo(q);
          return false;
        } catch (e) {
          return isBusError('CHANNEL_ERROR', 404)(e);
        }
      });
    });

    it('a named exclusive queue: another connection waits (405, retrying) and gets it once the owner has closed', async () => {
      const owner = newBus();
      const queue = qn('exclusive');
      const mine = collect(owner, { queue, bindings: ['cy.#'], exclusive: true });
      await mine.sub.ready();
      const other = newBus();
      const warnings: BusError[] = [];
      other.onWarning((w) => warnings.push(w));
      const theirs = collect(other, { queue, bindings: ['cy.#'], exclusive: true });
      await waitFor('a 405 warning', () => warnings.some((w) => w.code === 'SUBSCRIBE_FAILED' && w.amqpCode === 405));
      assert.equal(theirs.sub.state, 'pending');
      await owner.close(); // exclusive queues go with their connection
      await theirs.sub.ready();
      assert.equal(theirs.sub.state, 'active');
      await other.publish({ routingKey: 'cy.indicator', body: { n: 0 } });
      await waitFor('delivery to the new owner', () => theirs.got.length === 1);
      assert.equal(mine.got.length, 0);
      await theirs.sub.cancel();
      await other.deleteQueue(queue);
    });

    it('mandatory publish with no bound queue rejects UNROUTABLE; without mandatory it is confirmed and dropped', async () => {
      const bus = newBus();
      const key = `nobody-${tag}.listens`;
      await assert.rejects(bus.publish({ routingKey: key, body: {}, mandatory: true }), isBusError('UNROUTABLE'));
      const res = await bus.publish({ routingKey: key, body: {} });
      assert.equal(res.attempts, 1);
      const { got, sub } = collect(bus, { bindings: [`nobody-${tag}.#`] });
      await sub.ready();
      await bus.publish({ routingKey: key, body: { n: 'routed' }, mandatory: true });
      await waitFor('delivery', () => got.length === 1);
      assert.deepEqual(ns(got), ['routed']);
      assert.equal(bus.stats().publishFailed, 1);
    });

    it('x-max-length: reject-publish nacks the publish; drop-head dead-letters the oldest (reason maxlen)', async () => {
      const bus = newBus();
      const full = qn('full');
      const f = collect(bus, { queue: full, bindings: ['cf.#'], arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
      await f.sub.ready();
      await f.sub.cancel();
      await bus.publish({ routingKey: 'cf.indicator', body: { n: 1 } });
      await assert.rejects(bus.publish({ routingKey: 'cf.indicator', body: { n: 2 } }), isBusError('NACKED'));
      assert.equal((await bus.queueInfo(full)).messageCount, 1);

      const dlx = `dlx-len-${tag}`;
      const dlq = qn('len-dlq');
      const capped = qn('capped');
      const c = collect(bus, { queue: capped, bindings: ['cm.#'], arguments: { 'x-max-length': 2 }, deadLetterExchange: dlx, deadLetterQueue: dlq });
      await c.sub.ready();
      await c.sub.cancel();
      for (let n = 0; n < 3; n++) await bus.publish({ routingKey: 'cm.indicator', body: { n } });
      assert.equal((await bus.queueInfo(capped)).messageCount, 2);
      const dead = collect(bus, { queue: dlq, bindings: [] });
      await waitFor('one dead letter', () => dead.got.length === 1);
      assert.deepEqual(ns(dead.got), [0]);
      const death = dead.got[0].headers['x-death'] as Array<Record<string, unknown>>;
      assert.equal(death[0].reason, 'maxlen');
      assert.equal(death[0].queue, capped);
      const rest = collect(bus, { queue: capped, bindings: [], arguments: { 'x-max-length': 2 }, deadLetterExchange: dlx, deadLetterQueue: dlq });
      await waitFor('the newest two', () => rest.got.length === 2);
      assert.deepEqual(ns(rest.got), [1, 2]);
      await dead.sub.cancel();
      await rest.sub.cancel();
      for (const q of [full, capped, dlq]) await bus.deleteQueue(q);
    });

    it('declaring an existing queue with other properties fails the subscription (406 PRECONDITION_FAILED)', async () => {
      const bus = newBus();
      const queue = qn('inequivalent');
      const a = collect(bus, { queue, bindings: ['ci.#'] });
      await a.sub.ready();
      const b = collect(bus, { queue, bindings: ['ci.#'], durable: false });
      await assert.rejects(b.sub.ready(), isBusError('SUBSCRIBE_FAILED', 406));
      assert.equal(b.sub.state, 'failed');
      const c = collect(bus, { queue, bindings: ['ci.#'], deadLetterExchange: `dlx-ineq-${tag}` });
      await assert.rejects(c.sub.ready(), isBusError('SUBSCRIBE_FAILED', 406));
      // the first subscription is not disturbed
      await bus.publish({ routingKey: 'ci.indicator', body: { n: 0 } });
      await waitFor('delivery', () => a.got.length === 1);
      assert.equal(a.sub.state, 'active');
      await a.sub.cancel();
      await bus.deleteQueue(queue);
    });

    it('re-subscribes when its queue is deleted under it', async () => {
      const bus = newBus();
      const queue = qn('deleted');
      const { got, sub } = collect(bus, { queue, bindings: ['cx.#'] });
      await sub.ready();
      await bus.publish({ routingKey: 'cx.indicator', body: { n: 'before' } });
      await waitFor('first delivery', () => got.length === 1);
      await bus.deleteQueue(queue);
      await waitFor('queue declared again', async () => {
        try {
          return (await bus.queueInfo(queue)).consumerCount === 1;
        } catch {
          return false;
        }
      });
      await bus.publish({ routingKey: 'cx.indicator', body: { n: 'after' } });
      await waitFor('delivery after the re-subscribe', () => got.length === 2);
      assert.deepEqual(ns(got), ['before', 'after']);
      assert.equal(sub.state, 'active');
      await sub.cancel();
      await bus.deleteQueue(queue);
    });

    it('purgeQueue removes the ready messages; a missing queue is 404', async () => {
      const bus = newBus();
      const queue = qn('purge');
      const a = collect(bus, { queue, bindings: ['cu.#'] });
      await a.sub.ready();
      await a.sub.cancel();
      for (let n = 0; n < 4; n++) await bus.publish({ routingKey: 'cu.indicator', body: { n } });
      assert.deepEqual(await bus.purgeQueue(queue), { messageCount: 4 });
      assert.equal((await bus.queueInfo(queue)).messageCount, 0);
      await bus.deleteQueue(queue);
      await assert.rejects(bus.queueInfo(queue), isBusError('CHANNEL_ERROR', 404));
    });

    it('close(): state closed, later publishes and subscribes fail with CLOSED; unsettled deliveries go back', async () => {
      const bus = newBus();
      const queue = qn('close');
      const states: string[] = [];
      bus.onState((s) => states.push(s));
      const { got, sub } = collect(bus, { queue, bindings: ['cz.#'], ackMode: 'manual', settleTimeoutMs: 20 });
      await sub.ready();
      await bus.publish({ routingKey: 'cz.indicator', body: { n: 0 } });
      await waitFor('delivery', () => got.length === 1);
      await bus.close();
      await bus.close(); // twice is fine
      assert.equal(bus.state, 'closed');
      assert.equal(states.at(-1), 'closed');
      assert.equal(sub.state, 'cancelled');
      await assert.rejects(bus.publish({ routingKey: 'cz.indicator', body: {} }), isBusError('CLOSED'));
      assert.throws(() => bus.subscribe({ bindings: ['#'] }, () => undefined), isBusError('CLOSED'));
      await assert.rejects(bus.whenConnected(), isBusError('CLOSED'));
      const other = newBus();
      await other.whenConnected();
      await waitFor('message back in the queue', async () => (await other.queueInfo(queue)).messageCount === 1);
      await other.deleteQueue(queue);
    });
  });
}
