/**
 * The SETS bus as the rest of the code sees it (lib/ops, the Node-RED nodes, later n8n): publish
 * STIX objects to a topic exchange, subscribe with explicit settlement, watch the state.
 *
 * Two implementations:
 * - `AmqpBus` (./amqp.ts) — RabbitMQ over amqplib; the real thing.
 * - `MemoryBus` (./memory.ts) — an in-process broker with the same topic, queue, prefetch,
 *   acknowledgement and dead-letter semantics, for demos and tests. NOT durable: everything it
 *   holds is gone when the process ends.
 *
 * Code that only moves messages takes a `Bus`; only the code that builds one names a class (or
 * uses `createBus` from ./index.ts). The option, delivery and result types are the ones
 * ./amqp.ts declares; they are re-exported here so that users of the interface need not import
 * the RabbitMQ client.
 */
import type { BusError } from './errors';
import type {
  BusState,
  BusStats,
  DeliveryHandler,
  PublishRequest,
  PublishResult,
  PublishStixOptions,
  StixLike,
  SubscribeOptions,
  Subscription,
} from './amqp';

export type {
  AckMode,
  BusCounters,
  BusDelivery,
  BusLogger,
  BusState,
  BusStats,
  DeliveryHandler,
  PublishRequest,
  PublishResult,
  PublishStixOptions,
  StixLike,
  SubscribeOptions,
  Subscription,
  SubscriptionState,
} from './amqp';

/** What `queueInfo` reports: ready (not unacked) messages and consumers of one queue. */
export interface QueueInfo {
  queue: string;
  messageCount: number;
  consumerCount: number;
}

export type BusStateListener = (state: BusState, detail: string) => void;
export type BusWarningListener = (warning: BusError) => void;

export interface Bus {
  /** the topic exchange every publish goes to and every binding is made on */
  readonly exchange: string;
  /** where the bus goes, without credentials: `amqp://host:5672/vhost` or `memory://<broker name>` */
  readonly target: string;
  readonly state: BusState;
  /** human-readable detail of the state (retry countdown, reason of an error, ...) */
  readonly detail: string;

  /** Start connecting (idempotent); publish() and subscribe() call it. */
  start(): void;
  /** Resolve once connected (starting the bus if needed); reject with TIMEOUT or CLOSED. */
  whenConnected(timeoutMs?: number): Promise<void>;
  /** State changes (and new details of the same state); returns the unsubscribe function. */
  onState(listener: BusStateListener): () => void;
  /** Problems the bus handles itself (connection lost, handler failed, settle on a closed channel, ...). */
  onWarning(listener: BusWarningListener): () => void;
  stats(): BusStats;

  /**
   * Resolves once the broker has taken the message (it is in every queue bound for its routing
   * key); rejects with a BusError (NACKED, UNROUTABLE for a mandatory publish nobody is bound
   * for, TIMEOUT, QUEUE_FULL, CLOSED, BAD_INPUT, ...).
   */
  publish(req: PublishRequest): Promise<PublishResult>;
  /** Publish a STIX object to `<collection>.<type>` with the SETS headers. */
  publishStix(collection: string, object: StixLike, opts?: PublishStixOptions): Promise<PublishResult>;
  /** Declare the queue and bindings and start consuming; see SubscribeOptions. */
  subscribe(opts: SubscribeOptions, handler: DeliveryHandler): Subscription;

  /** BusError CHANNEL_ERROR with amqpCode 404 when the queue does not exist, 405 when another connection owns it exclusively. */
  queueInfo(queue: string): Promise<QueueInfo>;
  deleteQueue(queue: string): Promise<{ messageCount: number }>;
  /** Remove the ready messages of a queue. */
  purgeQueue(queue: string): Promise<{ messageCount: number }>;

  /** Stop consuming, settle what can be settled (bounded), release everything. Safe twice. */
  close(): Promise<void>;
}
