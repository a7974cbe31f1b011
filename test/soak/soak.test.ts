/**
 * The reduced soak (`npm run soak` runs the full one): 1,000 objects at 10/s through the whole
 * pipeline — producer (anchor + TAXII POST), Node-RED server flow, RabbitMQ, consumer (verify,
 * journal, ack) — each in its own process, with every fault once: consumer SIGKILLed between its
 * journal write and its ack, RabbitMQ node restarted, EVM node restart (emulated: chain proxy cut
 * ~10 s and the pending transactions dropped from hardhat's pool; chain state kept), Node-RED
 * SIGKILLed while records are pending. Nothing may be lost or left pending. About 2.5 minutes.
 *
 * Starts its own RabbitMQ node and hardhat node (it restarts / disturbs them), whatever
 * SETS_TEST_AMQP_URL and SETS_TEST_RPC_URL say.
 */
import { strict as assert } from 'node:assert';
import { runSoak, summarise, type SoakResult } from '../support/soak-run';

describe('soak: the whole pipeline under faults (1,000 objects, every fault once)', function () {
  this.timeout(10 * 60_000);
  let r: SoakResult;

  before(async function () {
    r = await runSoak({
      count: Number(process.env.SETS_SOAK_TEST_COUNT ?? 1000),
      rate: 10,
      drainMs: 90_000,
      log: (l) => process.stdout.write(`      [soak] ${l}\n`),
    });
    process.stdout.write(summarise(r).replace(/^/gm, '      ') + '\n');
  });

  it('runs every fault once, each recovered', function () {
    assert.deepEqual(
      r.faults.map((f) => f.fault),
      ['consumer', 'rabbitmq', 'evm', 'node-red'],
    );
    for (const f of r.faults) assert.equal(f.error, undefined, `fault ${f.fault}: ${f.error}`);
    assert.equal(r.consumer.restarts, 1);
    assert.equal(r.nodeRed.starts, 2);
  });

  it('sends every object (the producer retries through every fault)', function () {
    assert.equal(r.counts.unsent, 0, `unsent ${r.counts.unsent}; last producer error: ${r.producer.lastError}`);
    assert.equal(r.counts.sent, r.counts.produced);
  });

  it('stores every object sent and leaves none pending', function () {
    assert.equal(r.counts.lostNotStored, 0, `not stored: ${r.samples.notStored.join(', ')}`);
    assert.equal(r.counts.leftPending, 0, `pending: ${r.samples.pending.join(', ')}`);
    assert.equal(r.counts.storedByStatus.finalized, r.counts.sent);
  });

  it('distributes and verifies every object sent at the consumer, none lost', function () {
    assert.equal(r.counts.rejected, 0, `rejected: ${r.samples.rejected.join(', ')}`);
    assert.equal(r.counts.lostNotVerified, 0, `not verified at the consumer: ${r.samples.notVerified.join(', ')}`);
    assert.equal(r.counts.verified, r.counts.sent);
    assert.equal(r.counts.lost, 0);
  });

  it('recognises the redelivery after the consumer died before its ack as a duplicate', function () {
    const kill = r.faults.find((f) => f.fault === 'consumer');
    assert.match(kill?.detail ?? '', /between its journal write and the ack/);
    assert.ok(r.counts.duplicates >= 1, `duplicates ${r.counts.duplicates}`);
  });
});
