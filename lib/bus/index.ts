/**
 * SETS distribution: ./bus.ts (the `Bus` interface), ./amqp.ts (RabbitMQ), ./memory.ts (the
 * in-process broker, not durable), ./routing.ts (routing keys), ./errors.ts.
 */
import { AmqpBus, type AmqpBusConfig } from './amqp';
import type { Bus } from './bus';
import { MemoryBus, type MemoryBusConfig } from './memory';

export * from './amqp';
export * from './bus';
export * from './memory';
export * from './routing';
export * from './errors';

/** What `createBus` builds: RabbitMQ (`kind` 'amqp', the default) or the in-process broker. */
export type BusConfig = ({ kind?: 'amqp' } & AmqpBusConfig) | ({ kind: 'memory' } & MemoryBusConfig);

/** A bus for a configuration (not started: `start()`, `publish()` or `subscribe()` start it). */
export function createBus(config: BusConfig): Bus {
  if (config.kind === 'memory') {
    const { kind: _kind, ...rest } = config;
    return new MemoryBus(rest);
  }
  const { kind: _kind, ...rest } = config;
  return new AmqpBus(rest);
}
