/**
 * The bus conformance suite (./bus-conformance.ts) against the in-process broker (MemoryBus) and
 * against the real RabbitMQ (AmqpBus, test/support/rabbit.ts) — the same assertions for both —
 * plus what only the in-process broker has: brokers shared by name, the memory bound, refused
 * queue arguments, the pure topic matcher, and leaving nothing behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { rabbit } from '../support/services';
import type { RabbitHandle } from '../support/rabbit';
import {
  AmqpBus,
  BusError,
  MemoryBus,
  createBus,
  dropMemoryBroker,
  memoryBrokers,
  topicMatches,
  type BusDelivery,
  type MemoryBusConfig,
} from '../../lib/bus';
import { busConformance, collect, waitFor } from './bus-conformance';

const run = randomBytes(4).toString('hex');

// ------------------------------------------------------------------ the same suite, two brokers

{
  const name = `conformance-${run}`;
  busConformance({
    name: 'in-process broker (MemoryBus)',
    async setup() {
      return { bus: (over) => new MemoryBus({ name, ...(over?.prefetch ? { prefetch: over.prefetch } : {}) }) };
    },
    async teardown() {
      assert.equal(dropMemoryBroker(name), true, 'every bus of the suite is closed');
    },
  });
}

{
  let r: RabbitHandle;
  const vhost = `sets-conformance-${run}`;
  busConformance({
    name: 'RabbitMQ (AmqpBus)',
    async setup() {
      r = await rabbit();
      await r.ctl(['add_vhost', vhost]);
      await r.ctl(['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
      return {
        bus: (over) =>
          new AmqpBus({
            url: r.url,
            vhost,
            clientName: `bus-conformance-${run}`,
            reconnect: { initialDelayMs: 200, maxDelayMs: 2000 },
            ...(over?.prefetch ? { prefetch: over.prefetch } : {}),
          }),
      };
    },
    async teardown() {
      if (r) await r.ctl(['delete_vhost', vhost]).catch(() => undefined);
    },
  });
}

// ------------------------------------------------------------------ in-process only

describe('in-process broker: beyond the conformance suite', function () {
  this.timeout(30_000);
  const buses: MemoryBus[] = [];
  const names: string[] = [];
  /** a broker name no other test uses */
  const fresh = (what: string): string => {
    const n = `${what}-${run}-${names.length}`;
    names.push(n);
    return n;
  };
  const mk = (cfg: MemoryBusConfig): MemoryBus => {
    const b = new MemoryBus(cfg);
    buses.push(b);
    return b;
  };

  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
    for (const n of names.splice(0)) dropMemoryBroker(n);
  });

  it('matches topics like RabbitMQ (pure function, edge cases)', () => {
    const yes: Array<[string, string]> = [
      ['#', ''],
      ['#', 'a'],
      ['#', 'a.b.c'],
      ['#.#', ''],
      ['a.#', 'a'],
      ['#.a', 'a'],
      ['a.#.b', 'a.b'],
      ['a.#.b', 'a.x.y.z.b'],
      ['a.#.#.b', 'a.b'],
      ['#.b.#', 'b'],
      ['*.#', 'a'],
      ['#.*', 'a.b'],
      ['*', 'x'],
      ['*.*', 'a.'],
      ['*.*', '.a'],
      ['', ''],
      ['a*', 'a*'],
      ['a.b', 'a.b'],
      ['c%2Ex.#', 'c%2Ex.indicator'],
    ];
    const no: Array<[string, string]> = [
      ['*', ''],
      ['*', 'a.b'],
      ['*.#', ''],
      ['a.*', 'a'],
      ['a.#.b', 'a.b.c'],
      ['a*', 'ab'],
      ['', 'a'],
      ['a', ''],
      ['a.b', 'a.b.c'],
      ['c1.#', 'c1%2Ex.indicator'],
      ['#.a.#.b.#.c', 'a.b.x'],
    ];
    for (const [b, k] of yes) assert.equal(topicMatches(b, k), true, `${JSON.stringify(b)} should match ${JSON.stringify(k)}`);
    for (const [b, k] of no) assert.equal(topicMatches(b, k), false, `${JSON.stringify(b)} should not match ${JSON.stringify(k)}`);
    // many #s against a long key stay linear-time (a naive backtracker takes exponential time here)
    const long = Array.from({ length: 60 }, (_x, i) => `w${i}`).join('.');
    assert.equal(topicMatches(Array.from({ length: 30 }, () => '#').join('.') + '.nope', long), false);
    assert.equal(topicMatches(`#.w59`, long), true);
  });

  it('buses with the same broker name share one broker; other names are separate; the broker outlives its buses', async () => {
    const name = fresh('shared');
    const producer = mk({ name });
    const consumer = mk({ name });
    const stranger = mk({ name: fresh('other') });
    const mine = collect(consumer, { queue: 'q', bindings: ['c.#'] });
    const theirs = collect(stranger, { queue: 'q', bindings: ['c.#'] });
    await Promise.all([mine.sub.ready(), theirs.sub.ready()]);
    await producer.publish({ routingKey: 'c.indicator', body: { n: 1 } });
    await waitFor('delivery on the same broker', () => mine.got.length === 1);
    assert.equal(theirs.got.length, 0);
    assert.equal(producer.target, `memory://${encodeURIComponent(name)}`);
    assert.match(producer.detail, /in-process broker .*not durable/);

    // the broker and its durable queue stay while no bus is open on it
    await Promise.all([producer.close(), consumer.close()]);
    assert.equal(dropMemoryBroker(name), true);
    const again = mk({ name: fresh('keep') });
    const keepName = again.name;
    const k = collect(again, { queue: 'kept', bindings: ['k.#'] });
    await k.sub.ready();
    await k.sub.cancel();
    await again.close();
    const later = mk({ name: keepName });
    await later.publish({ routingKey: 'k.indicator', body: { n: 'kept' } });
    await later.close();
    const info = memoryBrokers().find((b) => b.name === keepName);
    assert.equal(info?.connections, 0);
    assert.deepEqual(
      info?.queues.map((q) => [q.name, q.messageCount]),
      [['kept', 1]],
    );
    const last = mk({ name: keepName });
    assert.equal(dropMemoryBroker(keepName), true, 'a bus that never started holds nothing open');
    last.start();
    assert.equal(dropMemoryBroker(keepName), false, 'refused while a bus is open on it');
  });

  it('refuses publishes beyond maxBrokerBytes (NACKED) instead of growing without bound', async () => {
    const bus = mk({ name: fresh('bounded'), maxBrokerBytes: 8 * 1024 });
    const s = collect(bus, { queue: 'q', bindings: ['c.#'] });
    await s.sub.ready();
    await s.sub.cancel();
    const body = Buffer.alloc(1000, 'x');
    let accepted = 0;
    let refused: unknown;
    for (let i = 0; i < 20 && !refused; i++) {
      try {
        await bus.publish({ routingKey: 'c.indicator', body });
        accepted++;
      } catch (err) {
        refused = err;
      }
    }
    assert.ok(refused instanceof BusError && refused.code === 'NACKED', String(refused));
    assert.match(refused.message, /full/);
    assert.ok(accepted >= 5 && accepted < 10, `accepted ${accepted}`);
    assert.equal((await bus.queueInfo('q')).messageCount, accepted);
    // consuming frees the room again
    const drain = collect(bus, { queue: 'q', bindings: [] });
    await waitFor('drained', () => drain.got.length === accepted && drain.sub.unsettled === 0);
    await bus.publish({ routingKey: 'c.indicator', body });
  });

  it('refuses queue arguments it cannot honour, and quorum queues that are not durable', async () => {
    const bus = mk({ name: fresh('args') });
    const ttl = collect(bus, { queue: 'ttl', bindings: ['c.#'], arguments: { 'x-message-ttl': 1000 } });
    await assert.rejects(ttl.sub.ready(), (e: unknown) => e instanceof BusError && e.code === 'SUBSCRIBE_FAILED' && /x-message-ttl.*not supported/.test(e.message));
    // a quorum queue that is not durable is a configuration that cannot work: refused up front, as AmqpBus does
    assert.throws(() => collect(bus, { queue: 'qq', bindings: ['c.#'], queueType: 'quorum', durable: false }), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    // the typed TTL option is accepted (documented as not honoured in process)
    const typedTtl = collect(bus, { queue: 'ttl2', bindings: ['c.#'], messageTtlMs: 1000 });
    await typedTtl.sub.ready();
    const ok = collect(bus, { queue: 'qq2', bindings: ['c.#'], queueType: 'quorum' });
    await ok.sub.ready();
  });

  it('rejects configurations that cannot work with BAD_CONFIG', () => {
    const bad = (cfg: MemoryBusConfig): void => assert.throws(() => new MemoryBus(cfg), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    bad({ name: '' });
    bad({ name: '  ' });
    bad({ exchange: 'amq.topic' });
    bad({ exchange: '' });
    bad({ prefetch: -1 });
    bad({ maxBrokerBytes: 0 });
    const bus = mk({ name: fresh('cfg') });
    assert.throws(() => bus.subscribe({ bindings: [] }, () => undefined), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    assert.throws(() => bus.subscribe({ queue: 'amq.x', bindings: ['#'] }, () => undefined), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    assert.throws(() => bus.subscribe({ bindings: ['#'], prefetch: 0 }, () => undefined), (e: unknown) => e instanceof BusError && e.code === 'BAD_CONFIG');
    assert.ok(createBus({ kind: 'memory', name: fresh('factory') }) instanceof MemoryBus);
    assert.ok(createBus({ url: 'amqp://127.0.0.1:1' }) instanceof AmqpBus);
  });

  it('publish rejects bodies and headers AMQP could not carry (BAD_INPUT), counting them as failed', async () => {
    const bus = mk({ name: fresh('input') });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await assert.rejects(bus.publish({ routingKey: 'c.t', body: circular }), (e: unknown) => e instanceof BusError && e.code === 'BAD_INPUT');
    await assert.rejects(bus.publish({ routingKey: 'c.t', body: {}, headers: { f: () => 1 } }), (e: unknown) => e instanceof BusError && e.code === 'BAD_INPUT');
    await assert.rejects(bus.publish({ routingKey: 'c.t', body: {}, headers: { n: Number.NaN } }), (e: unknown) => e instanceof BusError && e.code === 'BAD_INPUT');
    await assert.rejects(bus.publish({ routingKey: 'x'.repeat(256), body: {} }), (e: unknown) => e instanceof BusError && e.code === 'BAD_INPUT');
    await assert.rejects(bus.publishStix('c', { type: 'indicator' } as unknown as { type: string; id: string }), (e: unknown) => e instanceof BusError && e.code === 'BAD_INPUT');
    assert.equal(bus.stats().publishFailed, 5);
  });

  it('delivers asynchronously, and each queue gets its own copy of body and headers', async () => {
    const bus = mk({ name: fresh('copies') });
    let inPublish = false;
    const seenInPublish: boolean[] = [];
    const a = collect(bus, { bindings: ['c.#'] }, () => {
      seenInPublish.push(inPublish);
    });
    const b = collect(bus, { bindings: ['c.#'] });
    await Promise.all([a.sub.ready(), b.sub.ready()]);
    const body = Buffer.from('{"n":1}');
    inPublish = true;
    const p = bus.publish({ routingKey: 'c.t', body, headers: { list: [1, 2] } });
    inPublish = false;
    await p;
    body.write('X'); // the caller's buffer is not the message
    await waitFor('both', () => a.got.length === 1 && b.got.length === 1);
    assert.deepEqual(seenInPublish, [false]);
    const [da, db]: BusDelivery[] = [a.got[0], b.got[0]];
    da.content.write('Y');
    (da.headers.list as number[]).push(3);
    assert.deepEqual(db.json(), { n: 1 });
    assert.deepEqual(db.headers.list, [1, 2]);
  });

  it('a queue with autoDeleteDelayMs (x-expires) goes after being unused that long', async () => {
    const bus = mk({ name: fresh('expires') });
    const s = collect(bus, { queue: 'short-lived', bindings: ['c.#'], autoDeleteDelayMs: 50 });
    await s.sub.ready();
    await s.sub.cancel();
    assert.equal((await bus.queueInfo('short-lived')).consumerCount, 0);
    await waitFor('expired', async () => {
      try {
        await bus.queueInfo('short-lived');
        return false;
      } catch (e) {
        return e instanceof BusError && e.amqpCode === 404;
      }
    });
  });

  it('leaves nothing behind: a process using it exits by itself, even with a bus left open', async () => {
    const lib = path.resolve(__dirname, '..', '..', 'lib', 'bus');
    const script = `
      const { MemoryBus } = require(${JSON.stringify(lib)});
      process.on('unhandledRejection', (e) => { console.error('UNHANDLED', e); process.exit(3); });
      (async () => {
        const bus = new MemoryBus({ name: 'exit' });
        let got;
        const done = new Promise((res) => (got = res));
        const sub = bus.subscribe({ queue: 'q', bindings: ['c.#'], autoDeleteDelayMs: 60000 }, (d) => got(d.json()));
        await sub.ready();
        await bus.publish({ routingKey: 'c.indicator', body: { ok: 1 } });
        const body = await done;
        const open = new MemoryBus({ name: 'exit' });
        open.subscribe({ bindings: ['#'] }, () => undefined);
        await bus.close();
        console.log(JSON.stringify({ body, state: bus.state, open: open.state }));
      })();
    `;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['-e', script], { timeout: 20_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`child did not exit cleanly: ${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
    assert.deepEqual(JSON.parse(out.trim()), { body: { ok: 1 }, state: 'closed', open: 'connected' });
  });
});
