/**
 * An IN-PROCESS broker for SETS distribution: the `Bus` of ./bus.ts without RabbitMQ, for demos,
 * tests and single-process setups. It keeps RabbitMQ's semantics where SETS relies on them:
 *
 * - **Topic exchanges**: routing keys are words separated by `.`; in a binding key `*` matches
 *   exactly one word and `#` zero or more; both are wildcards only as whole words. The empty
 *   routing key has no words (only `#` and the empty binding match it). A queue gets ONE copy of
 *   a message however many of its bindings match.
 * - **Queues**: named queues shared by competing consumers (round-robin among consumers that
 *   have room under their prefetch); server-named temporary queues (`amq.gen-…`), exclusive to
 *   the bus that declared them and deleted with their consumer; auto-delete; `x-expires`;
 *   `x-max-length` with `x-overflow` drop-head / reject-publish / reject-publish-dlx; redeclaring
 *   a queue with other properties fails like RabbitMQ (406 PRECONDITION_FAILED, 405 RESOURCE_LOCKED).
 *   Messages published while a named queue has no consumer stay in it.
 * - **Consuming**: a prefetch bound per consumer; explicit ack / nack(requeue) / reject; a
 *   message given back (nack/reject with requeue, or unsettled when its consumer stops) returns
 *   to its place in the queue and is delivered again with `redelivered: true`; nack/reject
 *   without requeue sends it to the queue's dead-letter exchange with an `x-death` header
 *   (reason `rejected`, or `maxlen`), else drops it — as asked.
 * - **Publishing**: `publish()` resolves once the message is in every bound queue (the confirm);
 *   `mandatory` with no bound queue rejects with UNROUTABLE; a queue full with reject-publish
 *   rejects with NACKED. Deliveries are asynchronous (never inside `publish()` or `ack()`).
 *
 * **Brokers are named, per process.** Every MemoryBus with the same `name` (default `default`)
 * uses the same broker — two Node-RED config nodes with one name talk to each other — and the
 * broker outlives its buses (like a server outlives its connections): a durable named queue
 * keeps its messages while no bus is open. `dropMemoryBroker(name)` forgets an unused one.
 *
 * **NOT DURABLE.** Everything lives in this process's memory: `durable` and `persistent` are
 * accepted and mean nothing here; all queues and messages are gone when the process ends or
 * crashes. A broker holds at most `maxBrokerBytes` of message content (default 64 MiB);
 * beyond that, publishes are refused with NACKED instead of eating the heap. Use RabbitMQ
 * (`AmqpBus`) for anything that must survive a restart or cross a process boundary.
 *
 * - **Delivery limit** (`deliveryLimit`): counted per message in the queue; a requeue after the
 *   last allowed delivery dead-letters it, as on RabbitMQ. `queueType: 'quorum'` is accepted
 *   (same checks: named, durable) and behaves like a classic queue otherwise.
 *
 * Not modelled: connection loss and reconnects (the bus is connected from `start()` until
 * `close()`), per-message TTL, priorities, single-active-consumer. The typed option
 * `messageTtlMs` is ACCEPTED AND NOT HONOURED (messages do not expire here — an in-process broker
 * holds them only as long as the process lives anyway). Raw queue arguments the broker cannot
 * honour (`x-message-ttl`, … in `arguments`) are refused, never ignored.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { STIX_CONTENT_TYPE, bodyToBuffer, checkQueueOptions, cleanHeaders, deliveryLimitReached, deliveryLimitText, explainInequivalent, isPlainObject, parseDeliveryJson, stixPublishRequest } from './common';
import type {
  AckMode,
  Bus,
  BusCounters,
  BusDelivery,
  BusLogger,
  BusState,
  BusStateListener,
  BusStats,
  BusWarningListener,
  DeliveryHandler,
  PublishRequest,
  PublishResult,
  PublishStixOptions,
  QueueInfo,
  StixLike,
  SubscribeOptions,
  Subscription,
  SubscriptionState,
} from './bus';
import { BusError, messageOf, type BusErrorCode } from './errors';
import { parseRoutingKey } from './routing';

export interface MemoryBusConfig {
  /** the broker: every MemoryBus of this process with the same name shares it (default `default`) */
  name?: string;
  /** topic exchange, default `sets` */
  exchange?: string;
  /** default prefetch of subscriptions (unacked deliveries per consumer), default 100 */
  prefetch?: number;
  /** bound on close(): waiting for unsettled deliveries, ms (default 10000) */
  closeTimeoutMs?: number;
  /**
   * Most message bytes the named broker holds (ready and unacked, counted per queue copy);
   * publishes beyond it are refused with NACKED. Taken from the bus that creates the broker;
   * default 64 MiB.
   */
  maxBrokerBytes?: number;
  /** a name for this bus in messages (like AmqpBus's connection name) */
  clientName?: string;
  logger?: BusLogger;
}

const DEFAULTS = {
  name: 'default',
  exchange: 'sets',
  prefetch: 100,
  closeTimeoutMs: 10_000,
  settleTimeoutMs: 5_000,
  maxBrokerBytes: 64 * 1024 * 1024,
  retryInitialMs: 500,
  retryMaxMs: 30_000,
};

/** Deliveries handed out per queue in one turn of the event loop (then it yields). */
const DISPATCH_BATCH = 256;
/** Bookkeeping cost of one queued message, counted against maxBrokerBytes with its content. */
const ENTRY_OVERHEAD = 256;
const MAX_KEY_BYTES = 255;

function positive(name: string, v: number | undefined, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new BusError('BAD_CONFIG', `${name} must be a positive number, got ${String(v)}`);
  }
  return v;
}

// ==================================================================== topic matching

/** Words of a routing or binding key, as RabbitMQ splits them: `''` has none, `a..b` has an empty middle word. */
function splitWords(key: string): string[] {
  return key === '' ? [] : key.split('.');
}

/** Does a binding key (split) match a routing key (split)? Linear in |binding| x |key|. */
function matchWords(binding: readonly string[], key: readonly string[]): boolean {
  const n = key.length;
  // reach[j]: the binding words seen so far can consume exactly the first j key words
  let reach: boolean[] = new Array<boolean>(n + 1).fill(false);
  reach[0] = true;
  for (const w of binding) {
    const next: boolean[] = new Array<boolean>(n + 1).fill(false);
    if (w === '#') {
      let seen = false;
      for (let j = 0; j <= n; j++) {
        seen ||= reach[j];
        next[j] = seen;
      }
    } else {
      let any = false;
      for (let j = 0; j < n; j++) {
        if (reach[j] && (w === '*' || w === key[j])) {
          next[j + 1] = true;
          any = true;
        }
      }
      if (!any) return false;
    }
    reach = next;
  }
  return reach[n];
}

/**
 * Topic-exchange matching exactly as RabbitMQ does it: words separated by `.`, `*` one word,
 * `#` zero or more words, wildcards only as whole words (`a*` is a literal word).
 */
export function topicMatches(bindingKey: string, routingKey: string): boolean {
  return matchWords(splitWords(bindingKey), splitWords(routingKey));
}

// ==================================================================== messages and headers

interface MessageProps {
  messageId?: string;
  contentType?: string;
  correlationId?: string;
  headers: Record<string, unknown>;
  persistent: boolean;
  /** seconds since the epoch, as AMQP has it */
  timestamp: number;
}

interface StoredMessage {
  exchange: string;
  routingKey: string;
  content: Buffer;
  props: MessageProps;
}

/** One message in one queue. */
interface Entry {
  msg: StoredMessage;
  /** broker-wide publish order: a message given back returns to its place */
  seq: number;
  redelivered: boolean;
  size: number;
  /** times handed to a consumer */
  deliveries?: number;
}

/** Deep copy of cleaned header values: every delivery gets its own, as from the wire. */
function copyValue(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(copyValue);
  if (isPlainObject(v)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = copyValue(x);
    return o;
  }
  return v;
}

// ==================================================================== the broker

/** A refusal by the broker, with the AMQP reply code RabbitMQ would give. */
class Refusal extends Error {
  constructor(
    readonly amqpCode: 404 | 405 | 406,
    message: string,
  ) {
    super(message);
    this.name = 'Refusal';
  }
}

type Overflow = 'drop-head' | 'reject-publish' | 'reject-publish-dlx';

interface QueueProps {
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
  deadLetterExchange?: string;
  deadLetterRoutingKey?: string;
  maxLength?: number;
  overflow: Overflow;
  expiresMs?: number;
  queueType: 'classic' | 'quorum';
}

/** Queue arguments the broker honours; two declarations of one queue must agree on them (RabbitMQ checks the same). */
const CHECKED_ARGS = ['x-dead-letter-exchange', 'x-dead-letter-routing-key', 'x-max-length', 'x-overflow', 'x-expires', 'x-queue-type'] as const;

interface QueueDeclaration {
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
  /** `x-…` arguments, as given */
  args: Record<string, unknown>;
}

function queueProps(name: string, d: QueueDeclaration, where: string): QueueProps {
  const bad = (arg: string, why: string): Refusal =>
    new Refusal(406, `PRECONDITION_FAILED - invalid arg '${arg}' for queue '${name}' in ${where}: ${why}`);
  for (const k of Object.keys(d.args)) {
    if (k.startsWith('x-') && !(CHECKED_ARGS as readonly string[]).includes(k)) {
      throw new Refusal(406, `PRECONDITION_FAILED - queue argument '${k}' of queue '${name}' is not supported by the in-process broker (${where}); use RabbitMQ for it`);
    }
  }
  const a = d.args;
  const str = (k: string): string | undefined => {
    const v = a[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw bad(k, 'must be a string');
    return v;
  };
  const int = (k: string, min: number): number | undefined => {
    const v = a[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw bad(k, `must be an integer >= ${min}`);
    return v;
  };
  const overflow = str('x-overflow') ?? 'drop-head';
  if (overflow !== 'drop-head' && overflow !== 'reject-publish' && overflow !== 'reject-publish-dlx') throw bad('x-overflow', `unknown value ${overflow}`);
  const queueType = str('x-queue-type') ?? 'classic';
  if (queueType !== 'classic' && queueType !== 'quorum') throw bad('x-queue-type', `unsupported queue type ${queueType}`);
  if (queueType === 'quorum' && (!d.durable || d.exclusive || d.autoDelete)) {
    throw new Refusal(406, `PRECONDITION_FAILED - a quorum queue must be durable, not exclusive and not auto-delete (queue '${name}' in ${where})`);
  }
  return {
    durable: d.durable,
    exclusive: d.exclusive,
    autoDelete: d.autoDelete,
    deadLetterExchange: str('x-dead-letter-exchange'),
    deadLetterRoutingKey: str('x-dead-letter-routing-key'),
    maxLength: int('x-max-length', 0),
    overflow,
    expiresMs: int('x-expires', 1),
    queueType,
  };
}

/** Who gets messages from a queue: one subscription's consumer. */
interface Consumer {
  readonly prefetch: number;
  /** delivery tag -> message handed out and not settled */
  readonly unacked: Map<number, Entry>;
  deliver(entry: Entry): void;
  /** the queue was deleted under the consumer */
  queueDeleted(): void;
}

class TopicExchange {
  /** queue -> binding key -> its words */
  private readonly bindings = new Map<MemoryQueue, Map<string, string[]>>();

  constructor(readonly name: string) {}

  bind(q: MemoryQueue, key: string): void {
    let keys = this.bindings.get(q);
    if (!keys) {
      keys = new Map();
      this.bindings.set(q, keys);
    }
    if (!keys.has(key)) keys.set(key, splitWords(key));
  }

  unbindQueue(q: MemoryQueue): void {
    this.bindings.delete(q);
  }

  /** Queues with at least one matching binding, each once. */
  route(routingKey: string): MemoryQueue[] {
    const words = splitWords(routingKey);
    const out: MemoryQueue[] = [];
    for (const [q, keys] of this.bindings) {
      for (const b of keys.values()) {
        if (matchWords(b, words)) {
          out.push(q);
          break;
        }
      }
    }
    return out;
  }
}

class MemoryQueue {
  /** ready messages in order; `items[head]` is the next one */
  private items: Array<Entry | undefined> = [];
  private head = 0;
  readonly consumers: Consumer[] = [];
  private rr = 0;
  private hadConsumer = false;
  deleted = false;
  private scheduled = false;
  private expiryTimer?: NodeJS.Timeout;

  constructor(
    readonly broker: MemoryBroker,
    readonly name: string,
    readonly props: QueueProps,
    /** the declaration's checked arguments, for the equivalence check of later declarations */
    readonly args: Readonly<Record<string, unknown>>,
    /** the bus (connection) owning an exclusive queue */
    readonly owner: MemoryBus | undefined,
  ) {}

  get readyCount(): number {
    return this.items.length - this.head;
  }

  push(e: Entry): void {
    this.items.push(e);
    this.schedule();
  }

  shift(): Entry | undefined {
    if (this.head >= this.items.length) return undefined;
    const e = this.items[this.head];
    this.items[this.head] = undefined;
    this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return e;
  }

  /** Put a message given back at its place (publish order), as RabbitMQ does where it can. */
  requeue(e: Entry): void {
    if (this.head < this.items.length && (this.items[this.head] as Entry).seq > e.seq) {
      if (this.head > 0) {
        this.head--;
        this.items[this.head] = e;
      } else {
        this.items.unshift(e);
      }
    } else {
      let lo = this.head;
      let hi = this.items.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((this.items[mid] as Entry).seq < e.seq) lo = mid + 1;
        else hi = mid;
      }
      this.items.splice(lo, 0, e);
    }
    this.schedule();
  }

  /** Take every ready message out. */
  drain(): Entry[] {
    const out = this.items.slice(this.head) as Entry[];
    this.items = [];
    this.head = 0;
    return out;
  }

  addConsumer(c: Consumer): void {
    this.consumers.push(c);
    this.hadConsumer = true;
    this.touch();
    this.schedule();
  }

  removeConsumer(c: Consumer): void {
    const i = this.consumers.indexOf(c);
    if (i < 0) return;
    this.consumers.splice(i, 1);
    if (this.consumers.length === 0 && this.props.autoDelete && this.hadConsumer && !this.deleted) {
      this.broker.deleteQueue(this);
      return;
    }
    this.touch();
  }

  /** (Re)start the x-expires countdown while the queue is unused. */
  touch(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.deleted || this.props.expiresMs === undefined || this.consumers.length > 0) return;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      if (!this.deleted && this.consumers.length === 0) this.broker.deleteQueue(this);
    }, this.props.expiresMs);
    this.expiryTimer.unref();
  }

  stopTimers(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
  }

  /** Deliver soon (never synchronously inside publish/ack/subscribe). */
  schedule(): void {
    if (this.scheduled || this.deleted || this.consumers.length === 0 || this.readyCount === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.dispatch();
    });
  }

  private nextConsumer(): Consumer | undefined {
    const n = this.consumers.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.rr + i) % n;
      const c = this.consumers[idx];
      if (c.unacked.size < c.prefetch) {
        this.rr = (idx + 1) % n;
        return c;
      }
    }
    return undefined;
  }

  private dispatch(): void {
    let budget = DISPATCH_BATCH;
    while (!this.deleted && this.readyCount > 0) {
      if (budget-- === 0) {
        this.schedule();
        return;
      }
      const c = this.nextConsumer();
      if (!c) return; // every consumer is at its prefetch bound: an ack schedules the next turn
      const e = this.shift() as Entry;
      c.deliver(e);
    }
  }
}

interface DeadLetterResult {
  /** set when the message was dropped although the queue has a dead-letter exchange */
  dropped?: string;
}

class MemoryBroker {
  readonly exchanges = new Map<string, TopicExchange>();
  readonly queues = new Map<string, MemoryQueue>();
  readonly connections = new Set<MemoryBus>();
  /** message bytes held (ready + unacked, per queue copy) */
  bytes = 0;
  private seq = 0;

  constructor(
    readonly name: string,
    readonly maxBytes: number,
  ) {}

  get where(): string {
    return `in-process broker '${this.name}'`;
  }

  nextSeq(): number {
    return ++this.seq;
  }

  declareExchange(name: string): TopicExchange {
    let ex = this.exchanges.get(name);
    if (!ex) {
      ex = new TopicExchange(name);
      this.exchanges.set(name, ex);
    }
    return ex;
  }

  /** A queue `owner` may use: 404 when there is none, 405 when another connection has it exclusively. */
  usableQueue(owner: MemoryBus, name: string): MemoryQueue {
    const q = this.queues.get(name);
    if (!q) throw new Refusal(404, `NOT_FOUND - no queue '${name}' in ${this.where}`);
    if (q.props.exclusive && q.owner !== owner) {
      throw new Refusal(405, `RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '${name}' in ${this.where}`);
    }
    return q;
  }

  /** queue.declare: create, or check that the existing queue is equivalent. `name` '' = server-named. */
  declareQueue(owner: MemoryBus, name: string, d: QueueDeclaration): MemoryQueue {
    let qname = name;
    if (qname === '') {
      do qname = `amq.gen-${randomBytes(16).toString('base64url')}`;
      while (this.queues.has(qname));
    }
    const props = queueProps(qname, d, this.where);
    const args: Record<string, unknown> = {};
    for (const k of CHECKED_ARGS) if (d.args[k] !== undefined && d.args[k] !== null) args[k] = d.args[k];
    const existing = this.queues.get(qname);
    if (!existing) {
      const q = new MemoryQueue(this, qname, props, args, props.exclusive ? owner : undefined);
      this.queues.set(qname, q);
      q.touch();
      return q;
    }
    if (existing.props.exclusive ? existing.owner !== owner : props.exclusive) {
      throw new Refusal(
        405,
        `RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '${qname}' in ${this.where}: it was declared on another connection, or with another exclusive flag`,
      );
    }
    const inequivalent = (what: string, received: unknown, current: unknown): Refusal =>
      new Refusal(
        406,
        `PRECONDITION_FAILED - inequivalent arg '${what}' for queue '${qname}' in ${this.where}: received ${received === undefined ? 'none' : `'${String(received)}'`} but current is ${current === undefined ? 'none' : `'${String(current)}'`}`,
      );
    if (existing.props.durable !== props.durable) throw inequivalent('durable', props.durable, existing.props.durable);
    if (existing.props.autoDelete !== props.autoDelete) throw inequivalent('auto_delete', props.autoDelete, existing.props.autoDelete);
    for (const k of CHECKED_ARGS) {
      const dflt = k === 'x-queue-type' ? 'classic' : undefined;
      const now = existing.args[k] ?? dflt;
      const asked = args[k] ?? dflt;
      if (now !== asked) throw inequivalent(k, asked, now);
    }
    existing.touch();
    return existing;
  }

  bind(q: MemoryQueue, exchange: string, key: string): void {
    const ex = this.exchanges.get(exchange);
    if (!ex) throw new Refusal(404, `NOT_FOUND - no exchange '${exchange}' in ${this.where}`);
    ex.bind(q, key);
  }

  /** Delete a queue with its ready messages; its consumers are told (they re-subscribe). Returns the ready count. */
  deleteQueue(q: MemoryQueue): number {
    if (q.deleted) return 0;
    q.deleted = true;
    q.stopTimers();
    if (this.queues.get(q.name) === q) this.queues.delete(q.name);
    for (const ex of this.exchanges.values()) ex.unbindQueue(q);
    const ready = q.drain();
    for (const e of ready) this.release(e);
    for (const c of q.consumers.splice(0)) c.queueDeleted();
    return ready.length;
  }

  purge(q: MemoryQueue): number {
    const ready = q.drain();
    for (const e of ready) this.release(e);
    return ready.length;
  }

  /** A message leaves the broker's custody in one queue. */
  release(e: Entry): void {
    this.bytes = Math.max(0, this.bytes - e.size);
  }

  /**
   * Put a message into one queue, applying its length limit. 'rejected': the queue refused it
   * (reject-publish). Messages dropped on the way are reported in `dropped`.
   */
  private enqueue(q: MemoryQueue, msg: StoredMessage, seq: number, dropped: string[]): 'ok' | 'rejected' {
    const size = msg.content.length + ENTRY_OVERHEAD;
    const max = q.props.maxLength;
    if (max !== undefined && q.readyCount >= max) {
      if (q.props.overflow !== 'drop-head') {
        if (q.props.overflow === 'reject-publish-dlx') {
          const r = this.deadLetter(q, { msg, seq, redelivered: false, size }, 'maxlen');
          if (r.dropped) dropped.push(r.dropped);
        }
        return 'rejected';
      }
      while (q.readyCount > 0 && q.readyCount >= max) {
        const head = q.shift() as Entry;
        this.release(head);
        const r = this.deadLetter(q, head, 'maxlen');
        if (r.dropped) dropped.push(r.dropped);
      }
      if (max === 0) {
        const r = this.deadLetter(q, { msg, seq, redelivered: false, size }, 'maxlen');
        if (r.dropped) dropped.push(r.dropped);
        return 'ok';
      }
    }
    this.bytes += size;
    q.push({ msg, seq, redelivered: false, size });
    return 'ok';
  }

  /** Route a message through an exchange into every matching queue. */
  route(msg: StoredMessage, queues: MemoryQueue[]): { rejectedBy: string[]; dropped: string[] } {
    const seq = this.nextSeq();
    const rejectedBy: string[] = [];
    const dropped: string[] = [];
    for (const q of queues) {
      if (this.enqueue(q, msg, seq, dropped) === 'rejected') {
        rejectedBy.push(`queue '${q.name}' is full (x-max-length ${q.props.maxLength}, overflow ${q.props.overflow})`);
      }
    }
    return { rejectedBy, dropped };
  }

  /**
   * Dead-letter a message that left queue `q` (already released by the caller): republish it to
   * the queue's dead-letter exchange with an x-death record, or drop it when the queue has none.
   */
  deadLetter(q: MemoryQueue, e: Entry, reason: 'rejected' | 'maxlen'): DeadLetterResult {
    const dlx = q.props.deadLetterExchange;
    if (dlx === undefined) return {};
    const m = e.msg;
    const ex = this.exchanges.get(dlx);
    if (!ex) return { dropped: `dead-letter exchange '${dlx}' of queue '${q.name}' does not exist: message ${m.props.messageId ?? ''} (${m.routingKey}) dropped` };
    const headers = copyValue(m.props.headers) as Record<string, unknown>;
    const deaths = Array.isArray(headers['x-death']) ? (headers['x-death'] as unknown[]).filter(isPlainObject) : [];
    const i = deaths.findIndex((d) => d.queue === q.name && d.reason === reason);
    const now = Math.floor(Date.now() / 1000);
    if (i >= 0) {
      const [d] = deaths.splice(i, 1);
      deaths.unshift({ ...d, count: (typeof d.count === 'number' ? d.count : 1) + 1, time: now });
    } else {
      deaths.unshift({ count: 1, reason, queue: q.name, time: now, exchange: m.exchange, 'routing-keys': [m.routingKey] });
    }
    headers['x-death'] = deaths;
    headers['x-first-death-exchange'] ??= m.exchange;
    headers['x-first-death-queue'] ??= q.name;
    headers['x-first-death-reason'] ??= reason;
    const rk = q.props.deadLetterRoutingKey ?? m.routingKey;
    const out: StoredMessage = { exchange: dlx, routingKey: rk, content: m.content, props: { ...m.props, headers } };
    const targets = ex.route(rk);
    if (targets.length === 0) return { dropped: `no queue is bound on dead-letter exchange '${dlx}' for ${rk}: message ${m.props.messageId ?? ''} from queue '${q.name}' dropped` };
    const r = this.route(out, targets);
    const lost = [...r.rejectedBy.map((w) => `dead letter from queue '${q.name}' refused: ${w}`), ...r.dropped];
    return lost.length ? { dropped: lost.join('; ') } : {};
  }

  /** A connection closes: its exclusive queues go. */
  disconnect(bus: MemoryBus): void {
    this.connections.delete(bus);
    for (const q of [...this.queues.values()]) if (q.props.exclusive && q.owner === bus) this.deleteQueue(q);
  }
}

// ==================================================================== the registry of named brokers

const brokers = new Map<string, MemoryBroker>();

function brokerNamed(name: string, maxBytes: number): MemoryBroker {
  let b = brokers.get(name);
  if (!b) {
    b = new MemoryBroker(name, maxBytes);
    brokers.set(name, b);
  }
  return b;
}

export interface MemoryBrokerInfo {
  name: string;
  /** open MemoryBus instances on it */
  connections: number;
  exchanges: string[];
  queues: Array<{ name: string; messageCount: number; unacked: number; consumerCount: number; durable: boolean; exclusive: boolean }>;
  bytes: number;
  maxBytes: number;
}

/** What the named in-process brokers of this process hold (for status pages and tests). */
export function memoryBrokers(): MemoryBrokerInfo[] {
  return [...brokers.values()].map((b) => ({
    name: b.name,
    connections: b.connections.size,
    exchanges: [...b.exchanges.keys()],
    queues: [...b.queues.values()].map((q) => ({
      name: q.name,
      messageCount: q.readyCount,
      unacked: q.consumers.reduce((n, c) => n + c.unacked.size, 0),
      consumerCount: q.consumers.length,
      durable: q.props.durable,
      exclusive: q.props.exclusive,
    })),
    bytes: b.bytes,
    maxBytes: b.maxBytes,
  }));
}

/**
 * Forget a named broker with all its queues and messages. Refused (false) while a bus is open
 * on it; true when it is gone (or never existed).
 */
export function dropMemoryBroker(name: string): boolean {
  const b = brokers.get(name);
  if (!b) return true;
  if (b.connections.size > 0) return false;
  for (const q of [...b.queues.values()]) b.deleteQueue(q);
  brokers.delete(name);
  return true;
}

// ==================================================================== the bus

export class MemoryBus implements Bus {
  readonly exchange: string;
  /** `memory://<broker name>` */
  readonly target: string;
  /** the broker name */
  readonly name: string;
  readonly defaultPrefetch: number;

  private readonly cfg: MemoryBusConfig;
  private readonly maxBrokerBytes: number;
  /** the named broker, looked up when the bus starts (so a dropped broker is not kept alive) */
  private _broker?: MemoryBroker;
  private readonly closeTimeoutMs: number;
  private _state: BusState = 'disconnected';
  private _detail = 'not started';
  private started = false;
  private closing = false;
  private closePromise?: Promise<void>;
  private readonly subs = new Set<MemorySubscription>();
  private readonly stateListeners = new Set<BusStateListener>();
  private readonly warningListeners = new Set<BusWarningListener>();

  /** @internal */
  readonly counters: BusCounters = {
    published: 0,
    confirmed: 0,
    publishFailed: 0,
    resent: 0,
    delivered: 0,
    acked: 0,
    nacked: 0,
    rejected: 0,
    reconnects: 0,
  };

  constructor(config: MemoryBusConfig = {}) {
    if (typeof config !== 'object' || config === null) throw new BusError('BAD_CONFIG', 'MemoryBus needs a config object');
    const name = config.name ?? DEFAULTS.name;
    if (typeof name !== 'string' || name.trim() === '') throw new BusError('BAD_CONFIG', 'the in-process broker name must be a non-empty string');
    this.cfg = config;
    this.name = name;
    this.exchange = config.exchange ?? DEFAULTS.exchange;
    if (typeof this.exchange !== 'string' || this.exchange === '' || this.exchange.startsWith('amq.')) {
      throw new BusError('BAD_CONFIG', `exchange name ${JSON.stringify(this.exchange)} is reserved; use e.g. "sets"`);
    }
    this.defaultPrefetch = positive('prefetch', config.prefetch, DEFAULTS.prefetch);
    this.closeTimeoutMs = positive('closeTimeoutMs', config.closeTimeoutMs, DEFAULTS.closeTimeoutMs);
    this.maxBrokerBytes = positive('maxBrokerBytes', config.maxBrokerBytes, DEFAULTS.maxBrokerBytes);
    this.target = `memory://${encodeURIComponent(name)}`;
  }

  private get broker(): MemoryBroker {
    this._broker ??= brokerNamed(this.name, this.maxBrokerBytes);
    return this._broker;
  }

  // ---------------------------------------------------------------- state, listeners, stats

  get state(): BusState {
    return this._state;
  }

  get detail(): string {
    return this._detail;
  }

  onState(listener: BusStateListener): () => void {
    this.stateListeners.add(listener);
    return () => {
      this.stateListeners.delete(listener);
    };
  }

  onWarning(listener: BusWarningListener): () => void {
    this.warningListeners.add(listener);
    return () => {
      this.warningListeners.delete(listener);
    };
  }

  stats(): BusStats {
    return { ...this.counters, state: this._state, detail: this._detail, blocked: false, pendingPublishes: 0, subscriptions: this.subs.size };
  }

  private setState(state: BusState, detail: string): void {
    if (this._state === 'closed') return;
    this._state = state;
    this._detail = detail;
    this.cfg.logger?.debug?.(`memory ${this.target}: ${state} (${detail})`);
    for (const l of [...this.stateListeners]) {
      try {
        l(state, detail);
      } catch {
        // a listener's failure is not ours
      }
    }
  }

  /** @internal */
  warn(code: BusErrorCode, message: string, opts: { target?: string; amqpCode?: number; cause?: unknown } = {}): void {
    const err = new BusError(code, message, { target: opts.target ?? this.target, amqpCode: opts.amqpCode, cause: opts.cause });
    this.cfg.logger?.warn?.(`memory ${err.target}: ${code}: ${message}`);
    for (const l of [...this.warningListeners]) {
      try {
        l(err);
      } catch {
        // ignore
      }
    }
  }

  /** @internal */
  get isClosing(): boolean {
    return this.closing;
  }

  /** @internal */
  get brokerRef(): MemoryBroker {
    return this.broker;
  }

  // ---------------------------------------------------------------- connection

  /** "Connect" to the named broker (idempotent): declares the exchange; connected at once. */
  start(): void {
    if (this.closing || this.started) return;
    this.started = true;
    this._broker = brokerNamed(this.name, this.maxBrokerBytes);
    this.broker.connections.add(this);
    this.broker.declareExchange(this.exchange);
    this.setState('connected', `in-process broker '${this.name}' (not durable: messages stay in this process)`);
  }

  whenConnected(_timeoutMs?: number): Promise<void> {
    if (this.closing) return Promise.reject(new BusError('CLOSED', 'bus is closed', { target: this.target }));
    this.start();
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- publishing

  publish(req: PublishRequest): Promise<PublishResult> {
    if (this.closing) return Promise.reject(new BusError('CLOSED', 'bus is closed', { target: this.target }));
    let content: Buffer;
    let headers: Record<string, unknown>;
    try {
      if (typeof req !== 'object' || req === null || typeof req.routingKey !== 'string' || Buffer.byteLength(req.routingKey) > MAX_KEY_BYTES) {
        throw new BusError('BAD_INPUT', `routingKey must be a string of at most ${MAX_KEY_BYTES} bytes`);
      }
      content = bodyToBuffer(req.body, true);
      headers = cleanHeaders(req.headers, true);
    } catch (err) {
      this.counters.publishFailed++;
      return Promise.reject(err);
    }
    this.start();
    const messageId = req.messageId ?? randomUUID();
    const msg: StoredMessage = {
      exchange: this.exchange,
      routingKey: req.routingKey,
      content,
      props: {
        messageId,
        contentType: req.contentType ?? STIX_CONTENT_TYPE,
        correlationId: req.correlationId,
        headers,
        persistent: req.persistent ?? true,
        timestamp: Math.floor(Date.now() / 1000),
      },
    };
    const ex = this.broker.declareExchange(this.exchange);
    const queues = ex.route(req.routingKey);
    this.counters.published++;
    const fail = (err: BusError): Promise<PublishResult> => {
      this.counters.publishFailed++;
      return Promise.reject(err);
    };
    if (queues.length === 0) {
      this.counters.confirmed++;
      if (req.mandatory === true) {
        return fail(new BusError('UNROUTABLE', `no queue is bound for ${req.routingKey} on exchange ${this.exchange}`, { target: this.target }));
      }
      return Promise.resolve({ messageId, routingKey: req.routingKey, attempts: 1 });
    }
    const needed = (content.length + ENTRY_OVERHEAD) * queues.length;
    if (this.broker.bytes + needed > this.broker.maxBytes) {
      return fail(
        new BusError(
          'NACKED',
          `in-process broker '${this.name}' is full (${this.broker.bytes} of ${this.broker.maxBytes} bytes held): message to ${req.routingKey} not accepted; consume or purge queues, or use RabbitMQ`,
          { target: this.target },
        ),
      );
    }
    const r = this.broker.route(msg, queues);
    for (const d of r.dropped) this.warn('UNROUTABLE', d);
    if (r.rejectedBy.length > 0) {
      return fail(new BusError('NACKED', `broker nacked the message to ${req.routingKey} (${this.target}): ${r.rejectedBy.join('; ')}`, { target: this.target }));
    }
    this.counters.confirmed++;
    return Promise.resolve({ messageId, routingKey: req.routingKey, attempts: 1 });
  }

  publishStix(collection: string, object: StixLike, opts: PublishStixOptions = {}): Promise<PublishResult> {
    let req: PublishRequest;
    try {
      req = stixPublishRequest(collection, object, opts);
    } catch (err) {
      this.counters.publishFailed++;
      return Promise.reject(err);
    }
    return this.publish(req);
  }

  // ---------------------------------------------------------------- subscribing

  subscribe(opts: SubscribeOptions, handler: DeliveryHandler): Subscription {
    if (this.closing) throw new BusError('CLOSED', 'bus is closed', { target: this.target });
    if (typeof handler !== 'function') throw new BusError('BAD_CONFIG', 'subscribe needs a handler function');
    if (!opts || !Array.isArray(opts.bindings) || opts.bindings.some((b) => typeof b !== 'string' || Buffer.byteLength(b) > MAX_KEY_BYTES)) {
      throw new BusError('BAD_CONFIG', `subscribe needs bindings: string[] (binding keys of at most ${MAX_KEY_BYTES} bytes)`);
    }
    if (opts.queue === undefined && opts.bindings.length === 0) {
      throw new BusError('BAD_CONFIG', 'a temporary queue needs at least one binding');
    }
    if (opts.prefetch !== undefined) positive('prefetch', opts.prefetch, 1);
    if (opts.queue !== undefined && (typeof opts.queue !== 'string' || opts.queue === '' || opts.queue.startsWith('amq.'))) {
      throw new BusError('BAD_CONFIG', `queue name ${JSON.stringify(opts.queue)} is empty or reserved`);
    }
    checkQueueOptions(opts);
    const sub = new MemorySubscription(this, opts, handler);
    this.subs.add(sub);
    this.start();
    sub.attach();
    return sub;
  }

  /** @internal */
  removeSubscription(sub: MemorySubscription): void {
    this.subs.delete(sub);
  }

  /** @internal settle one delivered message on its queue */
  settleEntry(q: MemoryQueue, e: Entry, kind: 'ack' | 'nack' | 'reject', requeue: boolean): void {
    if (kind === 'ack' || q.deleted) {
      this.broker.release(e);
    } else if (requeue) {
      e.redelivered = true;
      q.requeue(e);
    } else {
      this.broker.release(e);
      const r = this.broker.deadLetter(q, e, 'rejected');
      if (r.dropped) this.warn('UNROUTABLE', r.dropped, { target: q.name });
    }
    q.schedule();
  }

  /** @internal a consumer stops for good: what it still holds goes back to its queue, marked redelivered */
  returnUnsettled(q: MemoryQueue, c: Consumer): void {
    const held = [...c.unacked.values()].sort((a, b) => a.seq - b.seq);
    c.unacked.clear();
    for (const e of held) {
      if (q.deleted) {
        this.broker.release(e);
      } else {
        e.redelivered = true;
        q.requeue(e);
      }
    }
  }

  // ---------------------------------------------------------------- queue utilities

  private queueOp<T>(what: string, fn: () => T): Promise<T> {
    if (this.closing) return Promise.reject(new BusError('CLOSED', `${what}: bus is closed`, { target: this.target }));
    this.start();
    try {
      return Promise.resolve(fn());
    } catch (err) {
      const amqpCode = err instanceof Refusal ? err.amqpCode : undefined;
      return Promise.reject(new BusError('CHANNEL_ERROR', `${what}: ${messageOf(err)}`, { target: this.target, amqpCode, cause: err }));
    }
  }

  queueInfo(queue: string): Promise<QueueInfo> {
    return this.queueOp(`checking queue ${queue}`, () => {
      const q = this.broker.usableQueue(this, queue);
      return { queue: q.name, messageCount: q.readyCount, consumerCount: q.consumers.length };
    });
  }

  deleteQueue(queue: string): Promise<{ messageCount: number }> {
    return this.queueOp(`deleting queue ${queue}`, () => {
      if (!this.broker.queues.has(queue)) return { messageCount: 0 };
      return { messageCount: this.broker.deleteQueue(this.broker.usableQueue(this, queue)) };
    });
  }

  purgeQueue(queue: string): Promise<{ messageCount: number }> {
    return this.queueOp(`purging queue ${queue}`, () => ({ messageCount: this.broker.purge(this.broker.usableQueue(this, queue)) }));
  }

  // ---------------------------------------------------------------- close

  /**
   * Stop consuming (unsettled deliveries get up to closeTimeoutMs to settle; the rest go back to
   * their queues, marked redelivered), delete this bus's exclusive queues. The broker and its
   * named queues stay for other buses. Leaves no timers behind. Safe to call twice.
   */
  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    const deadline = Date.now() + this.closeTimeoutMs;
    const left = (): number => Math.max(0, deadline - Date.now());
    this.closing = true;
    await Promise.all([...this.subs].map((s) => s.cancel(Math.min(left(), s.settleTimeoutMs)).catch(() => undefined)));
    this._broker?.disconnect(this);
    this.setState('closed', 'closed');
  }
}

// ==================================================================== subscriptions

class MemoryConsumer implements Consumer {
  open = true;
  private tagSeq = 0;
  readonly unacked = new Map<number, Entry>();

  constructor(
    readonly sub: MemorySubscription,
    readonly queue: MemoryQueue,
    readonly prefetch: number,
  ) {}

  deliver(entry: Entry): void {
    const tag = ++this.tagSeq;
    entry.deliveries = (entry.deliveries ?? 0) + 1;
    this.unacked.set(tag, entry);
    this.sub.onMessage(this, entry, tag);
  }

  queueDeleted(): void {
    this.sub.onQueueDeleted(this);
  }
}

class MemoryDelivery implements BusDelivery {
  readonly content: Buffer;
  readonly routingKey: string;
  readonly exchange: string;
  readonly collection?: string;
  readonly stixType?: string;
  readonly headers: Record<string, unknown>;
  readonly messageId?: string;
  readonly contentType?: string;
  readonly correlationId?: string;
  readonly redelivered: boolean;
  readonly queue: string;
  readonly deliveryCount: number;
  private _settled = false;
  private parsed?: { value: unknown };

  constructor(
    private readonly sub: MemorySubscription,
    private readonly consumer: MemoryConsumer,
    private readonly entry: Entry,
    readonly deliveryTag: number,
  ) {
    const m = entry.msg;
    this.content = Buffer.from(m.content);
    this.routingKey = m.routingKey;
    this.exchange = m.exchange;
    const parsed = parseRoutingKey(m.routingKey);
    if (parsed) {
      this.collection = parsed.collection;
      this.stixType = parsed.stixType;
    }
    this.headers = copyValue(m.props.headers) as Record<string, unknown>;
    this.messageId = m.props.messageId;
    this.contentType = m.props.contentType;
    this.correlationId = m.props.correlationId;
    this.redelivered = entry.redelivered;
    this.deliveryCount = entry.deliveries ?? 1;
    this.queue = consumer.queue.name;
  }

  get settled(): boolean {
    return this._settled;
  }

  json(): unknown {
    this.parsed ??= { value: parseDeliveryJson(this.content, String(this.messageId ?? this.deliveryTag), this.routingKey, this.queue) };
    return this.parsed.value;
  }

  ack(): boolean {
    return this.settle('ack', false);
  }

  nack(opts: { requeue?: boolean } = {}): boolean {
    return this.settle('nack', opts.requeue ?? true);
  }

  reject(opts: { requeue?: boolean } = {}): boolean {
    return this.settle('reject', opts.requeue ?? false);
  }

  private settle(kind: 'ack' | 'nack' | 'reject', requeue: boolean): boolean {
    if (this._settled) return false;
    this._settled = true;
    this.sub.settled(this);
    const c = this.consumer;
    const bus = this.sub.bus;
    if (!c.open || c.unacked.get(this.deliveryTag) !== this.entry) {
      bus.warn('SETTLE_FAILED', `${kind} of delivery ${this.messageId ?? this.deliveryTag} not done: its consumer has stopped (the message went back to ${this.queue}, or the queue is gone)`, {
        target: this.queue,
      });
      return false;
    }
    c.unacked.delete(this.deliveryTag);
    if (kind !== 'ack' && requeue && this.sub.limitReached(this.deliveryCount)) {
      requeue = false;
      bus.warn('HANDLER_FAILED', `${this.sub.limitText(this)}; not requeued`, { target: this.queue });
    }
    bus.settleEntry(c.queue, this.entry, kind, requeue);
    if (kind === 'ack') bus.counters.acked++;
    else if (kind === 'nack') bus.counters.nacked++;
    else bus.counters.rejected++;
    return true;
  }
}

class MemorySubscription implements Subscription {
  private _state: SubscriptionState = 'pending';
  private _queue: string | undefined;
  private consumer?: MemoryConsumer;
  private attempt = 0;
  private retryTimer?: NodeJS.Timeout;
  private readonly open = new Set<MemoryDelivery>();
  private readonly drainWaiters = new Set<() => void>();
  private readonly readyP: Promise<void>;
  private readyResolve!: () => void;
  private readyReject!: (e: BusError) => void;
  private cancelP?: Promise<void>;
  readonly settleTimeoutMs: number;
  private readonly prefetch: number;
  private readonly ackMode: AckMode;

  constructor(
    readonly bus: MemoryBus,
    private readonly opts: SubscribeOptions,
    private readonly handler: DeliveryHandler,
  ) {
    this.readyP = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.readyP.catch(() => undefined); // a rejection nobody asked about is not unhandled
    this.settleTimeoutMs = opts.settleTimeoutMs ?? DEFAULTS.settleTimeoutMs;
    this.prefetch = opts.prefetch ?? bus.defaultPrefetch;
    this.ackMode = opts.ackMode ?? 'auto';
    this._queue = opts.queue;
  }

  get state(): SubscriptionState {
    return this._state;
  }

  get queue(): string | undefined {
    return this._queue;
  }

  get unsettled(): number {
    return this.open.size;
  }

  ready(): Promise<void> {
    return this.readyP;
  }

  private get label(): string {
    return this.opts.queue ?? `temporary queue [${this.opts.bindings.join(', ')}]`;
  }

  /** (a method, so TypeScript does not narrow the state across calls) */
  private isLive(): boolean {
    return this._state !== 'cancelled' && this._state !== 'failed' && !this.bus.isClosing;
  }

  /** Declare the exchanges, queues and bindings, and start consuming — at once. */
  attach(): void {
    if (!this.isLive() || this.consumer) return;
    const o = this.opts;
    const broker = this.bus.brokerRef;
    try {
      if (o.deadLetterExchange) {
        broker.declareExchange(o.deadLetterExchange);
        if (o.deadLetterQueue) {
          const dq = broker.declareQueue(this.bus, o.deadLetterQueue, { durable: true, exclusive: false, autoDelete: false, args: {} });
          broker.bind(dq, o.deadLetterExchange, '#');
        }
      }
      const named = o.queue !== undefined;
      const args: Record<string, unknown> = { ...(o.arguments ?? {}) };
      if (o.queueType) args['x-queue-type'] = o.queueType;
      if (o.deadLetterExchange) args['x-dead-letter-exchange'] = o.deadLetterExchange;
      if (o.deadLetterRoutingKey) args['x-dead-letter-routing-key'] = o.deadLetterRoutingKey;
      if (o.autoDeleteDelayMs !== undefined) args['x-expires'] = o.autoDeleteDelayMs;
      const q = broker.declareQueue(this.bus, o.queue ?? '', {
        durable: o.durable ?? named,
        exclusive: o.exclusive ?? !named,
        autoDelete: o.autoDelete ?? !named,
        args,
      });
      this._queue = q.name;
      for (const b of o.bindings) broker.bind(q, this.bus.exchange, b);
      const c = new MemoryConsumer(this, q, this.prefetch);
      this.consumer = c;
      this._state = 'active';
      this.attempt = 0;
      q.addConsumer(c);
      this.readyResolve();
    } catch (err) {
      const amqpCode = err instanceof Refusal ? err.amqpCode : undefined;
      const msg = `subscription ${this.label}: ${explainInequivalent(messageOf(err), this.opts.queue) ?? messageOf(err)}`;
      // RESOURCE_LOCKED may pass (its owner closes); the rest is a configuration that cannot work
      const retry = amqpCode === 405;
      this.bus.warn('SUBSCRIBE_FAILED', retry ? `${msg}; retrying` : msg, { target: this.label, amqpCode, cause: err });
      if (!retry) {
        this._state = 'failed';
        this.bus.removeSubscription(this);
        this.readyReject(new BusError('SUBSCRIBE_FAILED', msg, { target: this.label, amqpCode, cause: err }));
        return;
      }
      this.retryLater();
    }
  }

  private retryLater(): void {
    if (!this.isLive()) return;
    const d = Math.min(DEFAULTS.retryMaxMs, DEFAULTS.retryInitialMs * 2 ** Math.min(this.attempt++, 16));
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.attach();
    }, d);
  }

  /** @internal */
  onMessage(c: MemoryConsumer, entry: Entry, tag: number): void {
    this.bus.counters.delivered++;
    const d = new MemoryDelivery(this, c, entry, tag);
    this.open.add(d);
    let result: unknown;
    try {
      result = this.handler(d);
    } catch (err) {
      this.onHandlerError(d, err);
      return;
    }
    Promise.resolve(result).then(
      () => {
        if (this.ackMode === 'auto' && !d.settled) d.ack();
      },
      (err: unknown) => this.onHandlerError(d, err),
    );
  }

  private onHandlerError(d: MemoryDelivery, err: unknown): void {
    const toDlx = Boolean(this.opts.deadLetterExchange);
    this.bus.warn(
      'HANDLER_FAILED',
      `handler failed on ${d.routingKey} (${d.messageId ?? d.deliveryTag}): ${messageOf(err)}${d.settled ? '' : toDlx ? '; dead-lettered' : '; requeued'}`,
      { target: d.queue, cause: err },
    );
    if (!d.settled) d.nack({ requeue: !toDlx });
  }

  /** @internal the queue was deleted (by someone's deleteQueue, x-expires): declare it again, like AmqpBus after the broker's cancel */
  onQueueDeleted(c: MemoryConsumer): void {
    if (this.consumer !== c) return;
    c.open = false;
    this.bus.returnUnsettled(c.queue, c); // the queue is gone: releases them
    this.consumer = undefined;
    if (this._state === 'active') this._state = 'pending';
    if (!this.isLive()) return;
    this.bus.warn('CHANNEL_ERROR', `the broker cancelled the consumer of ${c.queue.name} (queue deleted); re-subscribing`, { target: c.queue.name });
    setImmediate(() => {
      if (this._state === 'pending') this.attach();
    });
  }

  /** @internal the delivery limit is reached: a requeue now dead-letters */
  limitReached(deliveryCount: number): boolean {
    return deliveryLimitReached(this.opts, deliveryCount);
  }

  /** @internal */
  limitText(d: BusDelivery): string {
    return deliveryLimitText(this.opts, d);
  }

  /** @internal a delivery was settled (or given up) */
  settled(d: MemoryDelivery): void {
    this.open.delete(d);
    if (this.open.size === 0) for (const w of [...this.drainWaiters]) w();
  }

  private waitSettled(ms: number): Promise<void> {
    if (this.open.size === 0 || ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.drainWaiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.drainWaiters.add(done);
    });
  }

  cancel(settleTimeoutMs = this.settleTimeoutMs): Promise<void> {
    this.cancelP ??= (async () => {
      const wasPending = this._state === 'pending';
      this._state = 'cancelled';
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      if (wasPending) this.readyReject(new BusError('CANCELLED', `subscription ${this.label} cancelled before it became active`, { target: this.label }));
      this.bus.removeSubscription(this);
      const c = this.consumer;
      // no new deliveries from here on (an auto-delete queue goes now, as on RabbitMQ)
      if (c) c.queue.removeConsumer(c);
      await this.waitSettled(settleTimeoutMs);
      if (c) {
        c.open = false; // settling from now on is a no-op that returns false
        this.bus.returnUnsettled(c.queue, c);
      }
      this.consumer = undefined;
    })();
    return this.cancelP;
  }
}
