/**
 * Real services for the test suite, started once per mocha process on first use and stopped
 * at the end (mocha root hook plugin, loaded with `--require dist/test/support/services.js`).
 *
 * - RabbitMQ: `SETS_TEST_AMQP_URL` when given, else a private `rabbitmq-server` node on free
 *   ports (test/support/rabbit.ts).
 * - EVM: `SETS_TEST_RPC_URL` when given, else a hardhat JSON-RPC node on a free port
 *   (test/support/hardhat.ts).
 *
 * Tests call `rabbit()` / `chain()` in a `before` hook; a suite that never calls them starts nothing.
 */
import { startRabbit, type RabbitHandle } from './rabbit';
import { startHardhat, type ChainHandle } from './hardhat';

let rabbitP: Promise<RabbitHandle> | undefined;
let chainP: Promise<ChainHandle> | undefined;

export function rabbit(): Promise<RabbitHandle> {
  rabbitP ??= startRabbit();
  return rabbitP;
}

export function chain(): Promise<ChainHandle> {
  chainP ??= startHardhat();
  return chainP;
}

export const mochaHooks = {
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(60_000);
    const stops: Promise<unknown>[] = [];
    if (rabbitP) stops.push(rabbitP.then((r) => r.stop()).catch(() => undefined));
    if (chainP) stops.push(chainP.then((c) => c.stop()).catch(() => undefined));
    await Promise.all(stops);
  },
};
