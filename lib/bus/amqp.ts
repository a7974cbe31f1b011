/**
 * SETS distribution over RabbitMQ (paper step 3 "Distribution" and step 4 "Subscribe"), on amqplib 0.10.
 *
 * One `AmqpBus` = one AMQP connection to one broker config, shared by every user of that config
 * (see `SharedBus` for reference counting), with
 * - a durable topic exchange (default `sets`); routing keys `<collection>.<stix-type>` (./routing.ts);
 * - TWO AMQP connections per bus: one for publishing, one for consuming. A broker resource alarm
 *   (memory / disk: `connection.blocked`) stops only connections that publish, so acks, nacks and
 *   deliveries keep flowing while publishers wait; `stats().blocked` and the state detail say so;
 * - one confirm channel for publishing: persistent messages, `publish()` resolves only when the
 *   broker confirmed the message, rejects with a `BusError` on nack, timeout, closed bus, full queue,
 *   and — for a `mandatory` publish — UNROUTABLE when no queue is bound for it;
 * - two bounds per publish: the wait for a broker connection (`brokerWaitMs`, default 120 s, while
 *   the bus reconnects) and, once written, the wait for the confirm (`confirmTimeoutMs`, 30 s); a
 *   publish that timed out after it was written says that it may have arrived (`maybeDelivered`);
 * - one channel per subscription, with its own prefetch bound; deliveries are settled explicitly
 *   (`ack`/`nack`/`reject`), or — `ackMode: 'auto'` — acked when the handler's promise resolves;
 * - automatic reconnect with exponential backoff (capped at 10 s, and at a quarter of brokerWaitMs)
 *   and jitter; subscriptions are re-declared (queue, bindings, consumer) after each reconnect;
 * - per subscription: classic or quorum queue, a delivery limit (quorum: `x-delivery-limit`;
 *   classic: counted by the consumer), message TTL, a dead-letter exchange + queue declared for the
 *   user; a queue that exists with other arguments fails the subscription with a message naming
 *   the argument and the fix (no silent retry loop).
 *
 * Delivery guarantee: **at least once**. Every `publish()` either resolves (the broker confirmed:
 * the message is in every bound queue, on disk for durable queues) or rejects; nothing is dropped
 * silently. Publishes made while disconnected wait (bounded count, bounded time) for the
 * reconnect. Messages written but not confirmed when the connection dropped are sent again, so a
 * consumer may see a message twice; the `messageId` stays the same across resends — consumers that
 * care dedupe by `messageId`. A publish that timed out may still have reached the broker.
 * On the consuming side an unsettled delivery whose channel died is redelivered by the broker
 * (`redelivered: true`); settling it afterwards is a no-op that returns false.
 *
 * Temporary (server-named, exclusive) queues — the paper's client — exist only while connected:
 * messages published while such a subscriber is reconnecting do not reach it. Use a named durable
 * queue when nothing may be missed (the Node-RED and n8n subscribers do by default).
 */
import { randomUUID } from 'node:crypto';
import * as amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { BusError, amqpCodeOf, messageOf, type BusErrorCode } from './errors';
import { parseRoutingKey } from './routing';
import type { Bus } from './bus';
import { STIX_CONTENT_TYPE, bodyToBuffer, checkQueueOptions, cleanHeaders, deliveryLimitReached, deliveryLimitText, explainInequivalent, parseDeliveryJson, stixPublishRequest } from './common';

export type BusState = 'connecting' | 'connected' | 'disconnected' | 'error' | 'closed';

export { STIX_CONTENT_TYPE, HEADER_COLLECTION, HEADER_OBJECT_ID, HEADER_TYPE, HEADER_VERSION, HEADER_HASH } from './common';

export interface BusLogger {
  debug?(msg: string): void;
  info?(msg: string): void;
  warn?(msg: string): void;
}

export interface AmqpTlsOptions {
  ca?: string | Buffer | Array<string | Buffer>;
  cert?: string | Buffer;
  key?: string | Buffer;
  passphrase?: string;
  /** default true; false accepts any server certificate (testing only) */
  rejectUnauthorized?: boolean;
  /** SNI / certificate host name, default the URL's host */
  servername?: string;
}

export interface ReconnectOptions {
  /** first delay after a failure, ms (default 500) */
  initialDelayMs?: number;
  /** upper bound of the delay, ms (default 10000; never more than a quarter of brokerWaitMs) */
  maxDelayMs?: number;
  /** random spread of each delay, as a fraction: 0.2 = ±20 % (default 0.2) */
  jitter?: number;
}

export interface AmqpBusConfig {
  /** amqp://host[:port][/vhost] or amqps://...; credentials in the URL are used when `username` is not given */
  url: string;
  username?: string;
  password?: string;
  /** overrides the URL's vhost (default "/") */
  vhost?: string;
  /** topic exchange (durable), default `sets` */
  exchange?: string;
  /** AMQP heartbeat, seconds (default 30; 0 disables) */
  heartbeatSec?: number;
  /** TCP+TLS+AMQP handshake, and each broker operation while setting up, ms (default 10000) */
  connectTimeoutMs?: number;
  reconnect?: ReconnectOptions;
  /** default prefetch of subscriptions (unacked deliveries per consumer), default 100 */
  prefetch?: number;
  tls?: AmqpTlsOptions;
  /** shown by the broker as the connection name (management UI, rabbitmqctl list_connections) */
  clientName?: string;
  /**
   * how long a publish may wait for a broker connection (while the bus connects or reconnects)
   * before it is rejected with TIMEOUT, ms (default 120000)
   */
  brokerWaitMs?: number;
  /** how long a written publish may wait for the broker's confirm, ms (default 30000) */
  confirmTimeoutMs?: number;
  /** @deprecated the confirm timeout (confirmTimeoutMs); it no longer includes the wait for a reconnect */
  publishTimeoutMs?: number;
  /** publishes waiting or unconfirmed at one time; more are rejected with QUEUE_FULL (default 10000) */
  maxPendingPublishes?: number;
  /** resend attempts of one message whose channel died before the confirm (default 5) */
  maxPublishAttempts?: number;
  /** bound on close(): waiting for confirms, settling deliveries, closing channels, ms (default 10000) */
  closeTimeoutMs?: number;
  logger?: BusLogger;
}

export interface PublishRequest {
  /** use `routingKey(collection, stixType)` */
  routingKey: string;
  /** Buffer and string are sent as they are; anything else is sent as JSON */
  body: unknown;
  /** default: a random UUID (publishStix: derived from collection, id, version, hash); kept across resends (dedupe key for consumers) */
  messageId?: string;
  headers?: Record<string, unknown>;
  /** default application/stix+json */
  contentType?: string;
  /** default true (delivery mode 2) */
  persistent?: boolean;
  correlationId?: string;
  /**
   * true: reject with UNROUTABLE when no queue is bound for the routing key (AMQP mandatory flag).
   * Default false: with no subscriber bound, the broker confirms and drops the message — normal
   * for pub/sub with nobody listening.
   */
  mandatory?: boolean;
  /** overall bound (wait for the broker + confirm), ms; default: none beyond brokerWaitMs / confirmTimeoutMs */
  timeoutMs?: number;
  /** default: the bus's brokerWaitMs */
  brokerWaitMs?: number;
  /** default: the bus's confirmTimeoutMs */
  confirmTimeoutMs?: number;
}

export interface PublishResult {
  messageId: string;
  routingKey: string;
  /** 1 unless the message had to be resent after a connection or channel loss */
  attempts: number;
}

/** The part of a STIX object the bus looks at. */
export interface StixLike {
  type: string;
  id: string;
  created?: unknown;
  modified?: unknown;
}

export interface PublishStixOptions {
  /** h_t, put in the `x-sets-hash` header (informational: consumers recompute it) */
  hash?: string;
  /** default: derived from (collection, object id, version, hash) — the same for a re-send */
  messageId?: string;
  headers?: Record<string, unknown>;
  timeoutMs?: number;
  brokerWaitMs?: number;
  confirmTimeoutMs?: number;
  /** reject with UNROUTABLE when no queue is bound for `<collection>.<type>` (default false here; lib/ops publishes mandatory) */
  mandatory?: boolean;
}

export type AckMode = 'auto' | 'manual';

export interface SubscribeOptions {
  /** named queue; omitted: a server-named temporary queue (exclusive, auto-deleted) */
  queue?: string;
  /** default true for named queues, false for temporary ones */
  durable?: boolean;
  /** default false for named queues, true for temporary ones */
  exclusive?: boolean;
  /** delete the queue when its last consumer goes; default false for named, true for temporary */
  autoDelete?: boolean;
  /** binding keys on the bus exchange (see bindingKeys()); may be empty for an already bound named queue */
  bindings: string[];
  /** unacked deliveries this consumer may hold, default: the bus `prefetch` */
  prefetch?: number;
  /** messages nacked/rejected without requeue go here (queue argument x-dead-letter-exchange); declared as a durable topic exchange */
  deadLetterExchange?: string;
  deadLetterRoutingKey?: string;
  /** a durable queue bound to the dead-letter exchange with `#`, so dead letters are kept, not dropped */
  deadLetterQueue?: string;
  /** delete the queue after it has been unused this long, ms (x-expires) */
  autoDeleteDelayMs?: number;
  /** 'quorum' needs a durable, non-exclusive named queue */
  queueType?: 'classic' | 'quorum';
  /**
   * Most deliveries of one message: a message requeued (nack, failed handler, lost channel) after
   * its last allowed delivery goes to the dead-letter exchange (dropped, with a warning, when there
   * is none) instead of looping for ever. Quorum queues: also the broker's `x-delivery-limit`
   * (counted by the broker, survives restarts). Classic queues: counted by this consumer by
   * messageId (a restarted consumer starts counting again). Default / 0: no limit.
   */
  deliveryLimit?: number;
  /** messages older than this are dead-lettered (or dropped) by the broker, ms (x-message-ttl) */
  messageTtlMs?: number;
  /** extra queue arguments (x-max-length, ...) */
  arguments?: Record<string, unknown>;
  /**
   * 'auto' (default): a delivery the handler did not settle is acked when the handler's promise
   * resolves, and nacked when it throws. 'manual': only the handler/its flow settles; a throw
   * still nacks an unsettled delivery. In both modes a failed delivery is nacked without requeue
   * (-> dead-letter exchange) when the queue has one, else requeued (never dropped).
   */
  ackMode?: AckMode;
  /** how long cancel() waits for unsettled deliveries before closing the channel, ms (default 5000) */
  settleTimeoutMs?: number;
}

export interface BusDelivery {
  readonly content: Buffer;
  /** JSON.parse of the content (UTF-8); throws BusError BAD_INPUT when it is not JSON */
  json(): unknown;
  readonly routingKey: string;
  readonly exchange: string;
  /** parsed from the routing key when it has the `<collection>.<type>` form */
  readonly collection?: string;
  readonly stixType?: string;
  readonly headers: Record<string, unknown>;
  readonly messageId?: string;
  readonly contentType?: string;
  readonly correlationId?: string;
  readonly redelivered: boolean;
  /**
   * 1 for the first delivery; more after requeues (quorum: the broker's x-delivery-count; classic:
   * counted by this consumer, or 2 when only the broker's `redelivered` flag says so)
   */
  readonly deliveryCount: number;
  readonly deliveryTag: number;
  /** queue it came from */
  readonly queue: string;
  readonly settled: boolean;
  /** true when the ack was sent; false when already settled or the channel is gone (broker redelivers) */
  ack(): boolean;
  /** requeue default true; false sends it to the queue's dead-letter exchange (or drops it when there is none) */
  nack(opts?: { requeue?: boolean }): boolean;
  /** basic.reject; requeue default false (-> dead-letter exchange) */
  reject(opts?: { requeue?: boolean }): boolean;
}

export type DeliveryHandler = (delivery: BusDelivery) => unknown;

export type SubscriptionState = 'pending' | 'active' | 'cancelled' | 'failed';

export interface Subscription {
  readonly state: SubscriptionState;
  /** actual queue name (server-named queues get a new name after each reconnect) */
  readonly queue: string | undefined;
  /** deliveries handed to the handler and not settled yet */
  readonly unsettled: number;
  /** resolves when the consumer is first active; rejects if cancelled first or the broker refuses the queue (403/406) */
  ready(): Promise<void>;
  /** stop consuming: cancel the consumer, wait (bounded) for unsettled deliveries, close the channel */
  cancel(): Promise<void>;
}

export interface BusCounters {
  /** messages written to the broker (resends included) */
  published: number;
  confirmed: number;
  /** publishes that rejected (nack, timeout, closed, full, failed) */
  publishFailed: number;
  resent: number;
  delivered: number;
  acked: number;
  nacked: number;
  rejected: number;
  /** successful connections after the first */
  reconnects: number;
}

export interface BusStats extends BusCounters {
  state: BusState;
  detail: string;
  blocked: boolean;
  /** publishes waiting for a channel or for their confirm */
  pendingPublishes: number;
  subscriptions: number;
}

const DEFAULTS = {
  exchange: 'sets',
  heartbeatSec: 30,
  connectTimeoutMs: 10_000,
  initialDelayMs: 500,
  maxDelayMs: 10_000,
  jitter: 0.2,
  prefetch: 100,
  brokerWaitMs: 120_000,
  confirmTimeoutMs: 30_000,
  maxPendingPublishes: 10_000,
  maxPublishAttempts: 5,
  closeTimeoutMs: 10_000,
  settleTimeoutMs: 5_000,
};

interface ConnectArgs {
  options: Options.Connect;
  vhost: string;
  socket: Record<string, unknown>;
  /** broker address for messages, without credentials */
  display: string;
}

function positive(name: string, v: number | undefined, def: number, allowZero = false): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new BusError('BAD_CONFIG', `${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(v)}`);
  }
  return v;
}

function connectArgs(cfg: AmqpBusConfig, connectTimeoutMs: number, heartbeatSec: number): ConnectArgs {
  let u: URL;
  try {
    u = new URL(cfg.url);
  } catch (err) {
    throw new BusError('BAD_CONFIG', `not a valid AMQP URL: ${JSON.stringify(String(cfg.url).replace(/\/\/[^@/]*@/, '//***@'))}`, { cause: err });
  }
  const protocol = u.protocol.replace(/:$/, '');
  if (protocol !== 'amqp' && protocol !== 'amqps') {
    throw new BusError('BAD_CONFIG', `AMQP URL must start with amqp:// or amqps://, got ${protocol}://`);
  }
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  if (!hostname) throw new BusError('BAD_CONFIG', 'AMQP URL has no host');
  const port = u.port ? Number(u.port) : protocol === 'amqps' ? 5671 : 5672;
  const urlVhost = u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/';
  const vhost = cfg.vhost !== undefined && cfg.vhost !== '' ? cfg.vhost : urlVhost;
  let username: string | undefined;
  let password: string | undefined;
  if (cfg.username !== undefined && cfg.username !== '') {
    username = cfg.username;
    password = cfg.password ?? '';
  } else if (u.username !== '' || u.password !== '') {
    username = decodeURIComponent(u.username);
    password = decodeURIComponent(u.password);
  }
  const options: Options.Connect = {
    protocol,
    hostname,
    port,
    heartbeat: heartbeatSec,
    // amqplib unescapes the vhost once (querystring.unescape): hand it an escaped one
    vhost: encodeURIComponent(vhost),
  };
  if (username !== undefined) {
    options.username = username;
    options.password = password ?? '';
  }
  const socket: Record<string, unknown> = {
    timeout: connectTimeoutMs,
    noDelay: true,
    keepAlive: true,
    clientProperties: { connection_name: cfg.clientName ?? 'sets' },
  };
  const tls = cfg.tls ?? {};
  for (const k of ['ca', 'cert', 'key', 'passphrase', 'rejectUnauthorized', 'servername'] as const) {
    if (tls[k] !== undefined) socket[k] = tls[k];
  }
  const display = `${protocol}://${hostname.includes(':') ? `[${hostname}]` : hostname}:${port}/${encodeURIComponent(vhost)}`;
  return { options, vhost, socket, display };
}

/**
 * What a failed connect attempt means. amqplib reports a refused vhost (missing, or no permission)
 * only as "Expected ConnectionOpenOk; got <ConnectionClose ...>", so that is explained here.
 */
function classifyConnectError(err: unknown, vhost: string): { code: BusErrorCode; message: string } {
  const msg = messageOf(err);
  if (err instanceof BusError) return { code: err.code, message: msg };
  if (/ConnectionOpenOk.*ConnectionClose/i.test(msg)) {
    return { code: 'ACCESS_REFUSED', message: `the broker refused vhost ${JSON.stringify(vhost)}: it does not exist or the user has no access to it` };
  }
  if (/\b403\b|ACCESS.REFUSED|\b530\b|NOT.ALLOWED/i.test(msg)) return { code: 'ACCESS_REFUSED', message: msg };
  return { code: 'CONNECT_FAILED', message: msg };
}

/** Resolve/reject `p` within `ms`, else reject with a TIMEOUT BusError; the timer is always cleared. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string, target?: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new BusError('TIMEOUT', `${what} did not finish within ${ms} ms`, { target })), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

interface PendingPublish {
  seq: number;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
  messageId: string;
  attempts: number;
  done: boolean;
  inQueue: boolean;
  /** the broker returned it (mandatory, no queue bound) before confirming */
  returned: boolean;
  timer?: NodeJS.Timeout;
  /** when the current wait for a broker connection ends (set while queued) */
  waitUntil: number;
  /** overall bound from the request's timeoutMs, if any */
  overallUntil?: number;
  brokerWaitMs: number;
  confirmTimeoutMs: number;
  lastError?: unknown;
  resolve(r: PublishResult): void;
  reject(e: BusError): void;
}

/** A channel and whether it is still usable. */
interface ChanRef<C extends Channel = Channel> {
  ch: C;
  open: boolean;
  /** last error the channel reported (set before it closes) */
  error?: unknown;
}

type StateListener = (state: BusState, detail: string) => void;
type WarningListener = (err: BusError) => void;

export class AmqpBus implements Bus {
  readonly exchange: string;
  /** broker address without credentials, for messages and status text */
  readonly target: string;
  readonly vhost: string;

  private readonly cfg: AmqpBusConfig;
  private readonly args: ConnectArgs;
  private readonly connectTimeoutMs: number;
  private readonly brokerWaitMs: number;
  private readonly confirmTimeoutMs: number;
  private readonly maxPending: number;
  private readonly maxAttempts: number;
  private readonly closeTimeoutMs: number;
  private readonly backoff: Required<ReconnectOptions>;
  readonly defaultPrefetch: number;

  private _state: BusState = 'disconnected';
  private _detail = 'not started';
  private blocked = false;
  private started = false;
  private closing = false;
  private closePromise?: Promise<void>;
  private everConnected = false;

  /** the publishing connection (its confirm channel; blocked by broker alarms) */
  private conn?: ChannelModel;
  /** the consuming connection (subscriptions, queue utilities): acks go through while publishers are blocked */
  private cconn?: ChannelModel;
  private pub?: ChanRef<ConfirmChannel>;
  private waitingDrain = false;
  private connecting?: Promise<void>;
  private reconnectTimer?: NodeJS.Timeout;
  private pubReopenTimer?: NodeJS.Timeout;
  private failures = 0;
  /** a generation number per connection, so late events of an old connection are ignored */
  private generation = 0;

  private seq = 0;
  private queue: PendingPublish[] = [];
  /** entries of `queue` not done yet (done ones are skipped when they reach the front) */
  private queuedLive = 0;
  private queueUnsorted = false;
  private readonly inflight = new Set<PendingPublish>();
  private readonly idleWaiters = new Set<() => void>();

  private readonly subs = new Set<SubscriptionImpl>();
  private readonly stateListeners = new Set<StateListener>();
  private readonly warningListeners = new Set<WarningListener>();

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

  constructor(config: AmqpBusConfig) {
    if (typeof config !== 'object' || config === null || typeof config.url !== 'string') {
      throw new BusError('BAD_CONFIG', 'AmqpBus needs a config with a url');
    }
    this.cfg = config;
    this.exchange = config.exchange ?? DEFAULTS.exchange;
    if (this.exchange === '' || this.exchange.startsWith('amq.')) {
      throw new BusError('BAD_CONFIG', `exchange name ${JSON.stringify(this.exchange)} is reserved; use e.g. "sets"`);
    }
    this.connectTimeoutMs = positive('connectTimeoutMs', config.connectTimeoutMs, DEFAULTS.connectTimeoutMs);
    const heartbeat = positive('heartbeatSec', config.heartbeatSec, DEFAULTS.heartbeatSec, true);
    this.brokerWaitMs = positive('brokerWaitMs', config.brokerWaitMs, DEFAULTS.brokerWaitMs);
    this.confirmTimeoutMs = positive(
      'confirmTimeoutMs',
      config.confirmTimeoutMs,
      positive('publishTimeoutMs', config.publishTimeoutMs, DEFAULTS.confirmTimeoutMs),
    );
    this.maxPending = positive('maxPendingPublishes', config.maxPendingPublishes, DEFAULTS.maxPendingPublishes);
    this.maxAttempts = positive('maxPublishAttempts', config.maxPublishAttempts, DEFAULTS.maxPublishAttempts);
    this.closeTimeoutMs = positive('closeTimeoutMs', config.closeTimeoutMs, DEFAULTS.closeTimeoutMs);
    this.defaultPrefetch = positive('prefetch', config.prefetch, DEFAULTS.prefetch);
    const r = config.reconnect ?? {};
    this.backoff = {
      initialDelayMs: positive('reconnect.initialDelayMs', r.initialDelayMs, DEFAULTS.initialDelayMs),
      // a publish waiting for the broker should see a few attempts within its wait
      maxDelayMs: Math.max(
        positive('reconnect.initialDelayMs', r.initialDelayMs, DEFAULTS.initialDelayMs),
        Math.min(positive('reconnect.maxDelayMs', r.maxDelayMs, DEFAULTS.maxDelayMs), Math.floor(this.brokerWaitMs / 4)),
      ),
      jitter: Math.min(1, positive('reconnect.jitter', r.jitter, DEFAULTS.jitter, true)),
    };
    this.args = connectArgs(config, this.connectTimeoutMs, heartbeat);
    this.target = this.args.display;
    this.vhost = this.args.vhost;
  }

  // ---------------------------------------------------------------- state, listeners, stats

  get state(): BusState {
    return this._state;
  }

  get detail(): string {
    return this._detail;
  }

  /** Subscribe to state changes (also re-sent with a new detail, e.g. retry countdown, blocked); returns an unsubscribe function. */
  onState(listener: StateListener): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** Problems the bus handles itself (connection lost, handler failed, settle on a dead channel, ...). */
  onWarning(listener: WarningListener): () => void {
    this.warningListeners.add(listener);
    return () => this.warningListeners.delete(listener);
  }

  stats(): BusStats {
    return {
      ...this.counters,
      state: this._state,
      detail: this._detail,
      blocked: this.blocked,
      pendingPublishes: this.pendingCount(),
      subscriptions: this.subs.size,
    };
  }

  private setState(state: BusState, detail: string): void {
    if (this._state === 'closed') return;
    this._state = state;
    this._detail = detail;
    this.cfg.logger?.debug?.(`amqp ${this.target}: ${state} (${detail})`);
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
    this.cfg.logger?.warn?.(`amqp ${err.target}: ${code}: ${message}`);
    for (const l of [...this.warningListeners]) {
      try {
        l(err);
      } catch {
        // ignore
      }
    }
  }

  // ---------------------------------------------------------------- connection

  /** Start connecting (idempotent). publish() and subscribe() call it. */
  start(): void {
    if (this.closing) return;
    if (this.started) return;
    this.started = true;
    this.connectNow();
  }

  /** Resolve once connected (starting the bus if needed); reject on timeout or close. */
  whenConnected(timeoutMs = this.connectTimeoutMs): Promise<void> {
    if (this.closing) return Promise.reject(new BusError('CLOSED', 'bus is closed', { target: this.target }));
    this.start();
    if (this._state === 'connected') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const off = this.onState((s) => {
        if (s === 'connected') finish();
        else if (s === 'closed') finish(new BusError('CLOSED', 'bus closed before it connected', { target: this.target }));
      });
      const timer = setTimeout(
        () => finish(new BusError('TIMEOUT', `not connected within ${timeoutMs} ms (${this._detail})`, { target: this.target })),
        timeoutMs,
      );
      function finish(err?: BusError): void {
        clearTimeout(timer);
        off();
        if (err) reject(err);
        else resolve();
      }
    });
  }

  private connectNow(): void {
    if (this.closing || this.connecting) return;
    this.setState('connecting', `connecting to ${this.target}`);
    this.connecting = this.openConnection()
      .catch((err: unknown) => this.onConnectFailed(err))
      .finally(() => {
        this.connecting = undefined;
      });
  }

  private async connectOne(role: 'publish' | 'consume'): Promise<ChannelModel> {
    const base = this.args.socket.clientProperties as Record<string, unknown>;
    const socket = { ...this.args.socket, clientProperties: { ...base, connection_name: `${String(base.connection_name)} (${role})` } };
    const attempt = amqp.connect(this.args.options, socket);
    try {
      return await withTimeout(attempt, this.connectTimeoutMs + 1000, 'AMQP connect', this.target);
    } catch (err) {
      // a connection that arrives after we gave up is closed at once
      attempt.then((late) => late.close().catch(() => undefined), () => undefined);
      throw err;
    }
  }

  private async openConnection(): Promise<void> {
    const conn = await this.connectOne('publish');
    let cconn: ChannelModel;
    try {
      cconn = await this.connectOne('consume');
    } catch (err) {
      await withTimeout(conn.close(), this.connectTimeoutMs, 'AMQP close', this.target).catch(() => destroy(conn));
      throw err;
    }
    const gen = ++this.generation;
    for (const [c, role] of [
      [conn, 'publish'],
      [cconn, 'consume'],
    ] as const) {
      c.on('error', (err: unknown) => {
        if (gen === this.generation) this.cfg.logger?.debug?.(`amqp ${this.target}: ${role} connection error: ${messageOf(err)}`);
      });
      // either connection lost: both are recycled together (one generation, one reconnect)
      c.on('close', (err: unknown) => this.onConnectionClosed(gen, err));
    }
    // only the publishing connection is blocked by a broker alarm
    conn.on('blocked', (reason: unknown) => {
      if (gen !== this.generation) return;
      this.blocked = true;
      this.setState(this._state, `blocked by the broker: ${String(reason)}`);
    });
    conn.on('unblocked', () => {
      if (gen !== this.generation) return;
      this.blocked = false;
      this.setState(this._state, `connected to ${this.target}`);
    });
    const closeBoth = async (): Promise<void> => {
      await Promise.all(
        [conn, cconn].map((c) => withTimeout(c.close(), this.connectTimeoutMs, 'AMQP close', this.target).catch(() => destroy(c))),
      );
    };
    if (this.closing) {
      await closeBoth();
      return;
    }
    this.conn = conn;
    this.cconn = cconn;
    try {
      await this.openPublisher(conn, gen);
    } catch (err) {
      this.conn = undefined;
      this.cconn = undefined;
      this.generation++;
      await closeBoth();
      throw err;
    }
    if (this.closing || gen !== this.generation) return; // closing, or the connection already dropped again
    if (this.everConnected) this.counters.reconnects++;
    this.everConnected = true;
    this.failures = 0;
    this.setState('connected', `connected to ${this.target}`);
    this.pump();
    for (const s of this.subs) s.attach(cconn, gen);
  }

  private async openPublisher(conn: ChannelModel, gen: number): Promise<void> {
    const ch = await withTimeout(conn.createConfirmChannel(), this.connectTimeoutMs, 'opening the publish channel', this.target);
    const ref: ChanRef<ConfirmChannel> = { ch, open: true };
    ch.on('error', (err: unknown) => {
      ref.error = err;
    });
    ch.on('return', (msg: { fields?: { routingKey?: unknown }; properties?: { messageId?: unknown } }) => {
      // basic.return comes before the confirm of the same message (RabbitMQ guarantees the order)
      const id = msg.properties?.messageId;
      for (const p of this.inflight) {
        if (p.messageId === id && p.options.mandatory && !p.returned) {
          p.returned = true;
          break;
        }
      }
    });
    ch.on('close', () => {
      ref.open = false;
      if (this.pub === ref) {
        this.pub = undefined;
        this.waitingDrain = false;
        this.onPublisherLost(conn, gen, ref.error);
      }
    });
    try {
      await withTimeout(ch.assertExchange(this.exchange, 'topic', { durable: true }), this.connectTimeoutMs, `declaring exchange ${this.exchange}`, this.target);
    } catch (err) {
      ch.close().catch(() => undefined);
      const code = amqpCodeOf(ref.error ?? err);
      throw new BusError('CHANNEL_ERROR', `cannot declare topic exchange ${JSON.stringify(this.exchange)}: ${messageOf(ref.error ?? err)}`, {
        target: this.target,
        amqpCode: code,
        cause: err,
      });
    }
    this.pub = ref;
    this.waitingDrain = false;
  }

  /** The publish channel died while the connection may live on (e.g. publish to a deleted exchange). */
  private onPublisherLost(conn: ChannelModel, gen: number, err: unknown): void {
    if (this.closing) return;
    // If the connection is going down too, its close handler does the work.
    setImmediate(() => {
      if (this.closing || gen !== this.generation || this.conn !== conn || this.pub) return;
      this.warn('CHANNEL_ERROR', `publish channel closed: ${err ? messageOf(err) : 'closed'}; reopening`, { amqpCode: amqpCodeOf(err), cause: err });
      this.pubReopenTimer = setTimeout(() => {
        this.pubReopenTimer = undefined;
        if (this.closing || gen !== this.generation || this.conn !== conn || this.pub) return;
        this.openPublisher(conn, gen).then(
          () => this.pump(),
          (e: unknown) => {
            // cannot get a publish channel on this connection: start over
            this.warn('CHANNEL_ERROR', `reopening the publish channel failed: ${messageOf(e)}; reconnecting`, { cause: e });
            conn.close().catch(() => destroy(conn));
          },
        );
      }, this.backoff.initialDelayMs);
    });
  }

  private onConnectionClosed(gen: number, err: unknown): void {
    if (gen !== this.generation) return;
    this.generation++; // late events of this connection are stale from now on
    // the sibling connection goes too: the next attempt opens both again
    for (const c of [this.conn, this.cconn]) {
      if (c) withTimeout(c.close(), this.connectTimeoutMs, 'AMQP close', this.target).catch(() => destroy(c));
    }
    this.cconn = undefined;
    this.conn = undefined;
    this.pub = undefined;
    this.waitingDrain = false;
    this.blocked = false;
    for (const s of this.subs) s.detach();
    if (this.closing) return;
    const why = err ? messageOf(err) : 'closed';
    this.warn('CONNECTION_LOST', `connection lost: ${why}`, { amqpCode: amqpCodeOf(err), cause: err });
    this.scheduleReconnect(`connection lost: ${why}`, 'disconnected', true);
  }

  private onConnectFailed(err: unknown): void {
    if (this.closing) return;
    const { code, message: msg } = classifyConnectError(err, this.vhost);
    // configuration problems (credentials, vhost, exchange of another type) show as 'error'
    const state: BusState = code === 'ACCESS_REFUSED' || code === 'CHANNEL_ERROR' ? 'error' : 'disconnected';
    this.warn(code, `cannot connect: ${msg}`, { amqpCode: amqpCodeOf(err), cause: err });
    this.scheduleReconnect(`${code === 'ACCESS_REFUSED' ? 'access refused' : 'cannot connect'}: ${msg}`, state, false);
  }

  private nextDelay(attempt: number): number {
    const base = Math.min(this.backoff.maxDelayMs, this.backoff.initialDelayMs * 2 ** Math.min(attempt, 30));
    const j = this.backoff.jitter;
    return Math.max(0, Math.round(base * (1 - j + 2 * j * Math.random())));
  }

  private scheduleReconnect(reason: string, state: BusState, afterDrop: boolean): void {
    if (this.closing || this.reconnectTimer) return;
    // after a drop of a working connection retry at the initial delay; consecutive failures back off
    const d = this.nextDelay(afterDrop ? 0 : this.failures);
    this.failures++;
    this.setState(state, `${reason}; retrying in ${(d / 1000).toFixed(1)} s`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connectNow();
    }, d);
  }

  /** @internal the live consuming connection and its generation, for subscriptions */
  current(): { conn: ChannelModel; gen: number } | undefined {
    return this.cconn && this._state === 'connected' ? { conn: this.cconn, gen: this.generation } : undefined;
  }

  /** @internal */
  subscriptionBackoff(attempt: number): number {
    return this.nextDelay(attempt);
  }

  /** @internal */
  get isClosing(): boolean {
    return this.closing;
  }

  /** @internal */
  get setupTimeoutMs(): number {
    return this.connectTimeoutMs;
  }

  // ---------------------------------------------------------------- publishing

  /**
   * Publish one message to the bus exchange. Resolves when the broker confirmed it; rejects with
   * BusError NACKED / TIMEOUT / QUEUE_FULL / PUBLISH_FAILED / CLOSED / BAD_INPUT.
   */
  publish(req: PublishRequest): Promise<PublishResult> {
    if (this.closing) return Promise.reject(new BusError('CLOSED', 'bus is closed', { target: this.target }));
    let content: Buffer;
    let headers: Record<string, unknown>;
    try {
      if (typeof req.routingKey !== 'string' || Buffer.byteLength(req.routingKey) > 255) {
        throw new BusError('BAD_INPUT', 'routingKey must be a string of at most 255 bytes');
      }
      content = bodyToBuffer(req.body);
      headers = cleanHeaders(req.headers);
    } catch (err) {
      this.counters.publishFailed++;
      return Promise.reject(err);
    }
    if (this.pendingCount() >= this.maxPending) {
      this.counters.publishFailed++;
      return Promise.reject(
        new BusError('QUEUE_FULL', `${this.pendingCount()} publishes already waiting for ${this.target} (maxPendingPublishes)`, {
          target: this.target,
        }),
      );
    }
    this.start();
    const messageId = req.messageId ?? randomUUID();
    let brokerWaitMs: number;
    let confirmTimeoutMs: number;
    let overallMs: number | undefined;
    try {
      brokerWaitMs = positive('brokerWaitMs', req.brokerWaitMs, this.brokerWaitMs);
      confirmTimeoutMs = positive('confirmTimeoutMs', req.confirmTimeoutMs, this.confirmTimeoutMs);
      overallMs = req.timeoutMs === undefined ? undefined : positive('timeoutMs', req.timeoutMs, 1);
    } catch (err) {
      this.counters.publishFailed++;
      return Promise.reject(err);
    }
    const now = Date.now();
    return new Promise<PublishResult>((resolve, reject) => {
      const p: PendingPublish = {
        seq: ++this.seq,
        routingKey: req.routingKey,
        content,
        options: {
          persistent: req.persistent ?? true,
          contentType: req.contentType ?? STIX_CONTENT_TYPE,
          contentEncoding: 'utf-8',
          messageId,
          correlationId: req.correlationId,
          timestamp: Math.floor(Date.now() / 1000),
          appId: 'sets',
          headers,
          mandatory: req.mandatory === true,
        },
        messageId,
        attempts: 0,
        done: false,
        inQueue: false,
        returned: false,
        waitUntil: now + brokerWaitMs,
        overallUntil: overallMs === undefined ? undefined : now + overallMs,
        brokerWaitMs,
        confirmTimeoutMs,
        resolve,
        reject,
      };
      this.enqueue(p);
      this.armTimer(p, false);
      this.pump();
    });
  }

  /**
   * (Re)arm the publish's deadline: queued, the wait for a broker connection; written, the wait
   * for the confirm — whichever phase it is in, never beyond the request's overall timeoutMs.
   */
  private armTimer(p: PendingPublish, sent: boolean): void {
    clearTimeout(p.timer);
    if (p.done) return;
    const now = Date.now();
    let until = sent ? now + p.confirmTimeoutMs : p.waitUntil;
    if (p.overallUntil !== undefined) until = Math.min(until, p.overallUntil);
    p.timer = setTimeout(() => this.onPublishTimeout(p, sent), Math.max(0, until - now));
  }

  private onPublishTimeout(p: PendingPublish, sent: boolean): void {
    if (p.done) return;
    const id = `${p.routingKey} (messageId ${p.messageId})`;
    const overall = p.overallUntil !== undefined && Date.now() >= p.overallUntil;
    let err: BusError;
    if (sent) {
      err = new BusError(
        'TIMEOUT',
        `publish ${id} was sent but not confirmed by the broker within ${overall ? 'the publish timeout' : `${p.confirmTimeoutMs} ms`}: ` +
          'it may have arrived (a re-send carries the same messageId, so consumers can recognise the copy)',
        { target: this.target, maybeDelivered: true },
      );
    } else if (p.attempts > 0) {
      err = new BusError(
        'TIMEOUT',
        `publish ${id} was sent, the connection dropped before the confirm, and no broker connection came back within ${overall ? 'the publish timeout' : `${p.brokerWaitMs} ms`} (${this._detail}): it may have arrived`,
        { target: this.target, maybeDelivered: true },
      );
    } else {
      err = new BusError(
        'TIMEOUT',
        `publish ${id} not sent: no broker connection within ${overall ? 'the publish timeout' : `${p.brokerWaitMs} ms`} (${this._detail})`,
        { target: this.target },
      );
    }
    this.fail(p, err);
  }

  /** Publish a STIX object to `<collection>.<type>` with the SETS headers. */
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

  private pendingCount(): number {
    return this.queuedLive + this.inflight.size;
  }

  private enqueue(p: PendingPublish, front = false): void {
    p.inQueue = true;
    this.queuedLive++;
    if (front) this.queue.unshift(p);
    else this.queue.push(p);
  }

  private dequeue(): PendingPublish | undefined {
    for (;;) {
      const p = this.queue.shift();
      if (!p) return undefined;
      p.inQueue = false;
      if (!p.done) {
        this.queuedLive--;
        return p;
      }
    }
  }

  private pump(): void {
    const ref = this.pub;
    if (!ref || !ref.open || this.waitingDrain || this._state !== 'connected') return;
    if (this.queueUnsorted) {
      this.queue.sort((a, b) => a.seq - b.seq);
      this.queueUnsorted = false;
    }
    for (;;) {
      const p = this.dequeue();
      if (!p) return;
      p.attempts++;
      p.returned = false;
      const attempt = p.attempts;
      if (attempt > 1) this.counters.resent++;
      this.inflight.add(p);
      let writable: boolean;
      try {
        writable = ref.ch.publish(this.exchange, p.routingKey, p.content, p.options, (err: unknown) => this.onConfirm(p, attempt, err));
      } catch (err) {
        this.inflight.delete(p);
        if (!ref.open || /closed|closing/i.test(messageOf(err))) {
          // the channel went away under us: send again on the next channel
          p.attempts--;
          this.enqueue(p, true);
          p.waitUntil = Date.now() + p.brokerWaitMs;
          this.armTimer(p, false);
          return;
        }
        // amqplib could not encode it; its confirm bookkeeping now holds a slot for a message
        // the broker never saw, so this channel's confirms cannot be trusted: recycle it
        // (its unconfirmed messages are resent on the next channel).
        this.fail(p, new BusError('BAD_INPUT', `cannot encode message for ${p.routingKey}: ${messageOf(err)}`, { target: this.target, cause: err }));
        ref.ch.close().catch(() => undefined);
        return;
      }
      this.counters.published++;
      this.armTimer(p, true);
      if (!writable) {
        this.waitingDrain = true;
        ref.ch.once('drain', () => {
          if (this.pub === ref) {
            this.waitingDrain = false;
            this.pump();
          }
        });
        return;
      }
    }
  }

  private onConfirm(p: PendingPublish, attempt: number, err: unknown): void {
    if (p.attempts !== attempt) return; // a stale callback of an earlier attempt
    this.inflight.delete(p);
    if (p.done) return this.checkIdle();
    if (err === null || err === undefined) {
      this.counters.confirmed++;
      if (p.returned) {
        this.fail(
          p,
          new BusError(
            'UNROUTABLE',
            `no queue is bound for routing key "${p.routingKey}" on exchange "${this.exchange}": nobody would receive the message, so the broker returned it ` +
              '(start the subscriber once so its durable queue exists, or allow unroutable publishes)',
            { target: this.target },
          ),
        );
      } else {
        this.finish(p);
      }
      return;
    }
    const msg = messageOf(err);
    if (/nack/i.test(msg)) {
      this.fail(p, new BusError('NACKED', `broker nacked the message to ${p.routingKey} (${this.target})`, { target: this.target, cause: err }));
      return;
    }
    // channel closed before the confirm: at-least-once => send again
    p.lastError = err;
    if (this.closing) {
      this.fail(p, new BusError('CLOSED', `bus closed before the broker confirmed ${p.routingKey} (it may still arrive)`, { target: this.target, cause: err, maybeDelivered: true }));
    } else if (p.attempts >= this.maxAttempts) {
      this.fail(
        p,
        new BusError('PUBLISH_FAILED', `gave up on ${p.routingKey} after ${p.attempts} attempts (it may have arrived): ${msg}`, {
          target: this.target,
          cause: err,
          maybeDelivered: true,
        }),
      );
    } else {
      this.enqueue(p);
      p.waitUntil = Date.now() + p.brokerWaitMs;
      this.armTimer(p, false);
      this.queueUnsorted = true;
      // pump once the current channel-close cascade is over
      setImmediate(() => this.pump());
    }
  }

  private finish(p: PendingPublish): void {
    if (p.done) return;
    p.done = true;
    if (p.inQueue) this.queuedLive--;
    clearTimeout(p.timer);
    p.resolve({ messageId: p.messageId, routingKey: p.routingKey, attempts: p.attempts });
    this.checkIdle();
  }

  private fail(p: PendingPublish, err: BusError): void {
    if (p.done) return;
    p.done = true;
    if (p.inQueue) this.queuedLive--;
    clearTimeout(p.timer);
    this.inflight.delete(p);
    this.counters.publishFailed++;
    p.reject(err);
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.idleWaiters.size === 0 || this.pendingCount() > 0) return;
    for (const w of [...this.idleWaiters]) w();
  }

  // ---------------------------------------------------------------- subscribing

  /** Start consuming; see SubscribeOptions. The subscription survives reconnects until cancel(). */
  subscribe(opts: SubscribeOptions, handler: DeliveryHandler): Subscription {
    if (this.closing) throw new BusError('CLOSED', 'bus is closed', { target: this.target });
    if (typeof handler !== 'function') throw new BusError('BAD_CONFIG', 'subscribe needs a handler function');
    if (!opts || !Array.isArray(opts.bindings) || opts.bindings.some((b) => typeof b !== 'string' || Buffer.byteLength(b) > 255)) {
      throw new BusError('BAD_CONFIG', 'subscribe needs bindings: string[] (binding keys of at most 255 bytes)');
    }
    if (opts.queue === undefined && opts.bindings.length === 0) {
      throw new BusError('BAD_CONFIG', 'a temporary queue needs at least one binding');
    }
    if (opts.prefetch !== undefined) positive('prefetch', opts.prefetch, 1);
    if (opts.queue !== undefined && (typeof opts.queue !== 'string' || opts.queue === '' || opts.queue.startsWith('amq.'))) {
      throw new BusError('BAD_CONFIG', `queue name ${JSON.stringify(opts.queue)} is empty or reserved`);
    }
    checkQueueOptions(opts);
    const sub = new SubscriptionImpl(this, opts, handler);
    this.subs.add(sub);
    this.start();
    const cur = this.current();
    if (cur) sub.attach(cur.conn, cur.gen);
    return sub;
  }

  /** @internal */
  removeSubscription(sub: SubscriptionImpl): void {
    this.subs.delete(sub);
  }

  // ---------------------------------------------------------------- queue utilities

  private async withTempChannel<T>(what: string, fn: (ch: Channel) => Promise<T>): Promise<T> {
    const cur = this.current();
    if (!cur) throw new BusError('CONNECT_FAILED', `not connected to ${this.target} (${this._detail})`, { target: this.target });
    const ch = await withTimeout(cur.conn.createChannel(), this.connectTimeoutMs, 'opening a channel', this.target);
    let chErr: unknown;
    ch.on('error', (e: unknown) => {
      chErr = e;
    });
    try {
      return await withTimeout(fn(ch), this.connectTimeoutMs, what, this.target);
    } catch (err) {
      const e = chErr ?? err;
      const code = amqpCodeOf(e);
      throw new BusError(err instanceof BusError && err.code === 'TIMEOUT' ? 'TIMEOUT' : 'CHANNEL_ERROR', `${what}: ${messageOf(e)}`, {
        target: this.target,
        amqpCode: code,
        cause: err,
      });
    } finally {
      ch.close().catch(() => undefined);
    }
  }

  /** Ready (not unacked) message count and consumer count of a queue; CHANNEL_ERROR amqpCode 404 when it does not exist. */
  queueInfo(queue: string): Promise<{ queue: string; messageCount: number; consumerCount: number }> {
    return this.withTempChannel(`checking queue ${queue}`, (ch) => ch.checkQueue(queue));
  }

  /** Delete a queue (and the messages in it). */
  async deleteQueue(queue: string): Promise<{ messageCount: number }> {
    return this.withTempChannel(`deleting queue ${queue}`, (ch) => ch.deleteQueue(queue));
  }

  /** Remove the ready messages of a queue. */
  async purgeQueue(queue: string): Promise<{ messageCount: number }> {
    return this.withTempChannel(`purging queue ${queue}`, (ch) => ch.purgeQueue(queue));
  }

  // ---------------------------------------------------------------- close

  /**
   * Stop consuming (unsettled deliveries get up to closeTimeoutMs to settle; the broker redelivers
   * the rest), wait (bounded) for confirms of publishes in flight, reject what is left with CLOSED,
   * close channels and connection. Leaves no timers or sockets behind. Safe to call twice.
   */
  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    const deadline = Date.now() + this.closeTimeoutMs;
    const left = (): number => Math.max(100, deadline - Date.now());
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    clearTimeout(this.pubReopenTimer);
    this.pubReopenTimer = undefined;
    if (this.connecting) await this.connecting.catch(() => undefined);

    // 1. stop consuming
    await Promise.all([...this.subs].map((s) => s.cancel(Math.min(left(), s.settleTimeoutMs)).catch(() => undefined)));

    // 2. publishes: with a live channel, let the queued ones go out and wait for their confirms
    if (this.pub?.open && this.pendingCount() > 0) {
      this.pump();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          this.idleWaiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, left());
        this.idleWaiters.add(done);
        this.checkIdle();
      });
    }
    const rest = [...this.queue, ...this.inflight];
    for (const p of rest) {
      const where = p.inQueue ? 'was sent' : 'was confirmed (it may still arrive)';
      this.fail(p, new BusError('CLOSED', `bus closed before ${p.routingKey} ${where}`, { target: this.target, maybeDelivered: !p.inQueue || p.attempts > 0 }));
    }
    this.queue = [];
    this.queuedLive = 0;

    // 3. channels and connection
    const conns = [this.conn, this.cconn];
    const pub = this.pub;
    this.conn = undefined;
    this.cconn = undefined;
    this.pub = undefined;
    if (pub?.open) await withTimeout(pub.ch.close(), left(), 'closing the publish channel').catch(() => undefined);
    await Promise.all(
      conns.map((conn) => (conn ? withTimeout(conn.close(), left(), 'closing the connection').catch(() => destroy(conn)) : undefined)),
    );
    this.generation++;
    this.setState('closed', 'closed');
  }
}

/** Tear down a connection whose close handshake did not finish. */
function destroy(conn: ChannelModel): void {
  const inner: unknown = conn.connection;
  if (typeof inner === 'object' && inner !== null && 'stream' in inner) {
    const stream = (inner as { stream: unknown }).stream;
    if (typeof stream === 'object' && stream !== null && 'destroy' in stream && typeof (stream as { destroy: unknown }).destroy === 'function') {
      (stream as { destroy(): void }).destroy();
    }
  }
}

// ==================================================================== subscriptions

class DeliveryImpl implements BusDelivery {
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
  readonly deliveryTag: number;
  readonly queue: string;
  readonly deliveryCount: number;
  private _settled = false;
  private parsed?: { value: unknown };

  constructor(
    private readonly sub: SubscriptionImpl,
    private readonly ref: ChanRef,
    private readonly msg: ConsumeMessage,
    queue: string,
    deliveryCount: number,
  ) {
    this.deliveryCount = deliveryCount;
    this.content = msg.content;
    this.routingKey = msg.fields.routingKey;
    this.exchange = msg.fields.exchange;
    const parsed = parseRoutingKey(msg.fields.routingKey);
    if (parsed) {
      this.collection = parsed.collection;
      this.stixType = parsed.stixType;
    }
    this.headers = { ...(msg.properties.headers ?? {}) };
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : v === undefined || v === null ? undefined : String(v));
    this.messageId = str(msg.properties.messageId);
    this.contentType = str(msg.properties.contentType);
    this.correlationId = str(msg.properties.correlationId);
    this.redelivered = msg.fields.redelivered;
    this.deliveryTag = msg.fields.deliveryTag;
    this.queue = queue;
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
    if (kind !== 'ack' && requeue && this.sub.limitReached(this.deliveryCount)) {
      requeue = false;
      this.sub.bus.warn('HANDLER_FAILED', `${this.sub.limitText(this)}; not requeued`, { target: this.queue });
    }
    if (!this.ref.open) {
      this.sub.bus.warn('SETTLE_FAILED', `${kind} of delivery ${this.messageId ?? this.deliveryTag} not sent: its channel is closed (the broker redelivers it)`, {
        target: this.queue,
      });
      return false;
    }
    try {
      if (kind === 'ack') this.ref.ch.ack(this.msg);
      else if (kind === 'nack') this.ref.ch.nack(this.msg, false, requeue);
      else this.ref.ch.reject(this.msg, requeue);
    } catch (err) {
      this.sub.bus.warn('SETTLE_FAILED', `${kind} of delivery ${this.messageId ?? this.deliveryTag} not sent: ${messageOf(err)} (the broker redelivers it)`, {
        target: this.queue,
        cause: err,
      });
      return false;
    }
    const c = this.sub.bus.counters;
    if (kind === 'ack') c.acked++;
    else if (kind === 'nack') c.nacked++;
    else c.rejected++;
    return true;
  }
}

class SubscriptionImpl implements Subscription {
  private _state: SubscriptionState = 'pending';
  private _queue: string | undefined;
  private ref?: ChanRef;
  private consumerTag?: string;
  /** connection generation this subscription is attached to (or being attached to) */
  private gen = -1;
  private attempt = 0;
  private retryTimer?: NodeJS.Timeout;
  private readonly open = new Set<DeliveryImpl>();
  private readonly drainWaiters = new Set<() => void>();
  private readyP: Promise<void>;
  private readyResolve!: () => void;
  private readyReject!: (e: BusError) => void;
  private cancelP?: Promise<void>;
  readonly settleTimeoutMs: number;
  private readonly prefetch: number;
  private readonly ackMode: AckMode;
  /** classic queues: deliveries seen per messageId (bounded), for the delivery limit */
  private readonly counts = new Map<string, number>();

  constructor(
    readonly bus: AmqpBus,
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

  /** (a method, so TypeScript does not narrow the state across awaits) */
  private isCancelled(): boolean {
    return this._state === 'cancelled';
  }

  private get label(): string {
    return this.opts.queue ?? `temporary queue [${this.opts.bindings.join(', ')}]`;
  }

  /** Connection up: declare and consume (unless already doing so on this connection). */
  attach(conn: ChannelModel, gen: number): void {
    if (this._state === 'cancelled' || this._state === 'failed') return;
    if (this.gen === gen) return;
    this.gen = gen;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    void this.establish(conn, gen);
  }

  /** Connection down: its channel is gone; the bus calls attach() again after reconnecting. */
  detach(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.gen = -1;
    if (this.ref) this.ref.open = false;
    this.ref = undefined;
    this.consumerTag = undefined;
    if (this._state === 'active') this._state = 'pending';
  }

  private async establish(conn: ChannelModel, gen: number): Promise<void> {
    const o = this.opts;
    const bus = this.bus;
    const t = bus.setupTimeoutMs;
    let ref: ChanRef | undefined;
    try {
      const ch = await withTimeout(conn.createChannel(), t, 'opening a consumer channel', bus.target);
      const r: ChanRef = { ch, open: true };
      ref = r;
      ch.on('error', (err: unknown) => {
        r.error = err;
      });
      ch.on('close', () => this.onChannelClosed(r));
      if (gen !== this.gen || this._state === 'cancelled') {
        r.open = false;
        await ch.close().catch(() => undefined);
        return;
      }
      this.ref = r;
      await withTimeout(ch.prefetch(this.prefetch, false), t, 'setting prefetch', bus.target);
      if (o.deadLetterExchange) {
        await withTimeout(ch.assertExchange(o.deadLetterExchange, 'topic', { durable: true }), t, `declaring dead-letter exchange ${o.deadLetterExchange}`, bus.target);
        if (o.deadLetterQueue) {
          await withTimeout(ch.assertQueue(o.deadLetterQueue, { durable: true }), t, `declaring dead-letter queue ${o.deadLetterQueue}`, bus.target);
          await withTimeout(ch.bindQueue(o.deadLetterQueue, o.deadLetterExchange, '#'), t, `binding dead-letter queue ${o.deadLetterQueue}`, bus.target);
        }
      }
      const named = o.queue !== undefined;
      const args: Record<string, unknown> = { ...(o.arguments ?? {}) };
      if (o.queueType) args['x-queue-type'] = o.queueType;
      // the broker's own count (quorum) backs ours up: it dead-letters what loops across restarts
      if (o.queueType === 'quorum' && o.deliveryLimit) args['x-delivery-limit'] = o.deliveryLimit;
      if (o.messageTtlMs) args['x-message-ttl'] = o.messageTtlMs;
      const q = await withTimeout(
        ch.assertQueue(o.queue ?? '', {
          durable: o.durable ?? named,
          exclusive: o.exclusive ?? !named,
          autoDelete: o.autoDelete ?? !named,
          deadLetterExchange: o.deadLetterExchange,
          deadLetterRoutingKey: o.deadLetterRoutingKey,
          expires: o.autoDeleteDelayMs,
          arguments: args,
        }),
        t,
        `declaring queue ${this.label}`,
        bus.target,
      );
      this._queue = q.queue;
      for (const b of o.bindings) {
        await withTimeout(ch.bindQueue(q.queue, bus.exchange, b), t, `binding ${q.queue} to ${bus.exchange} with ${b}`, bus.target);
      }
      const queueName = q.queue;
      const ok = await withTimeout(
        ch.consume(queueName, (m) => this.onMessage(r, queueName, m), { noAck: false }),
        t,
        `starting consumer on ${queueName}`,
        bus.target,
      );
      if (!r.open || gen !== this.gen) return; // lost meanwhile; a new attempt is on its way
      this.consumerTag = ok.consumerTag;
      if (this.isCancelled()) {
        await this.shutdownChannel(0);
        return;
      }
      this._state = 'active';
      this.attempt = 0;
      this.readyResolve();
    } catch (err) {
      const cause = ref?.error ?? err;
      const amqpCode = amqpCodeOf(cause);
      if (ref) {
        ref.open = false;
        ref.ch.close().catch(() => undefined);
        if (this.ref === ref) this.ref = undefined;
      }
      if (this._state === 'cancelled' || gen !== this.gen) return;
      const permanent = amqpCode === 403 || amqpCode === 406;
      const msg = `subscription ${this.label}: ${explainInequivalent(messageOf(cause), this.opts.queue) ?? messageOf(cause)}`;
      bus.warn('SUBSCRIBE_FAILED', permanent ? msg : `${msg}; retrying`, { target: this.label, amqpCode, cause });
      if (permanent) {
        this._state = 'failed';
        bus.removeSubscription(this);
        this.readyReject(new BusError('SUBSCRIBE_FAILED', msg, { target: this.label, amqpCode, cause }));
        return;
      }
      this.retryLater(conn, gen);
    }
  }

  private retryLater(conn: ChannelModel, gen: number): void {
    if (this._state === 'cancelled' || this._state === 'failed' || this.bus.isClosing) return;
    const d = this.bus.subscriptionBackoff(this.attempt++);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      const cur = this.bus.current();
      if (!cur || cur.conn !== conn || cur.gen !== gen || this.gen !== gen) return; // reconnect will attach
      void this.establish(conn, gen);
    }, d);
  }

  private onChannelClosed(r: ChanRef): void {
    r.open = false;
    if (this.ref !== r) return;
    this.ref = undefined;
    this.consumerTag = undefined;
    if (this._state === 'active') this._state = 'pending';
    if (this._state === 'cancelled' || this.bus.isClosing) return;
    // Channel died while the connection may live on (queue deleted, broker-side error): set up
    // again after a delay. If the connection is going down, detach()/attach() handle it.
    const gen = this.gen;
    setImmediate(() => {
      // a refused declaration (403/406) has failed the subscription for good: no retry loop
      if (this._state === 'failed' || this._state === 'cancelled') return;
      const cur = this.bus.current();
      if (!cur || cur.gen !== gen || this.gen !== gen || this.ref) return;
      this.bus.warn('CHANNEL_ERROR', `consumer channel of ${this.label} closed: ${r.error ? messageOf(r.error) : 'closed'}; re-subscribing`, {
        target: this.label,
        amqpCode: amqpCodeOf(r.error),
        cause: r.error,
      });
      this.retryLater(cur.conn, gen);
    });
  }

  private onMessage(r: ChanRef, queue: string, m: ConsumeMessage | null): void {
    if (m === null) {
      // the broker cancelled the consumer (queue deleted, ...): recycle the channel and re-declare
      this.bus.warn('CHANNEL_ERROR', `broker cancelled the consumer of ${queue}; re-subscribing`, { target: queue });
      r.ch.close().catch(() => undefined);
      return;
    }
    this.bus.counters.delivered++;
    const d = new DeliveryImpl(this, r, m, queue, this.countDelivery(m));
    if (this._state === 'cancelled') {
      // arrived between cancel() and the broker's cancel-ok: hand it back, the handler is gone
      d.nack({ requeue: true });
      return;
    }
    this.open.add(d);
    if (this.opts.deliveryLimit && d.deliveryCount > this.opts.deliveryLimit) {
      // came back once more than allowed (a lost channel, a crashed consumer): not handed out again
      d.nack({ requeue: false });
      this.bus.warn('HANDLER_FAILED', `${this.limitText(d)}; not handed out again`, { target: queue });
      return;
    }
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

  /**
   * The delivery number of a message: the broker's x-delivery-count (quorum queues) + 1, else our
   * own count by messageId (1 on a first delivery; redelivered ones count up from what we saw, 2
   * when we never saw it).
   */
  private countDelivery(m: ConsumeMessage): number {
    const hdr = m.properties.headers?.['x-delivery-count'];
    if (typeof hdr === 'number' && Number.isFinite(hdr)) return hdr + 1;
    const id = m.properties.messageId === undefined || m.properties.messageId === null ? undefined : String(m.properties.messageId);
    if (!m.fields.redelivered) {
      if (id !== undefined && this.opts.deliveryLimit) this.remember(id, 1);
      return 1;
    }
    if (id === undefined) return 2;
    const n = (this.counts.get(id) ?? 1) + 1;
    if (this.opts.deliveryLimit) this.remember(id, n);
    return n;
  }

  private remember(id: string, n: number): void {
    this.counts.delete(id);
    this.counts.set(id, n);
    if (this.counts.size > 10_000) {
      const oldest = this.counts.keys().next().value;
      if (oldest !== undefined) this.counts.delete(oldest);
    }
  }

  /** @internal the delivery limit is reached: a requeue now dead-letters */
  limitReached(deliveryCount: number): boolean {
    return deliveryLimitReached(this.opts, deliveryCount);
  }

  /** @internal */
  limitText(d: BusDelivery): string {
    return deliveryLimitText(this.opts, d);
  }

  private onHandlerError(d: DeliveryImpl, err: unknown): void {
    const toDlx = Boolean(this.opts.deadLetterExchange);
    this.bus.warn(
      'HANDLER_FAILED',
      `handler failed on ${d.routingKey} (${d.messageId ?? d.deliveryTag}): ${messageOf(err)}${d.settled ? '' : toDlx ? '; dead-lettered' : '; requeued'}`,
      { target: d.queue, cause: err },
    );
    if (!d.settled) d.nack({ requeue: !toDlx });
  }

  /** @internal a delivery was settled (or given up) */
  settled(d: DeliveryImpl): void {
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

  private async shutdownChannel(settleMs: number): Promise<void> {
    const r = this.ref;
    const tag = this.consumerTag;
    const t = this.bus.setupTimeoutMs;
    if (r?.open && tag) await withTimeout(r.ch.cancel(tag), t, 'cancelling consumer').catch(() => undefined);
    await this.waitSettled(settleMs);
    if (r?.open) {
      r.open = false; // settling from now on is a no-op; the broker requeues what is unsettled
      await withTimeout(r.ch.close(), t, 'closing consumer channel').catch(() => undefined);
    }
    this.ref = undefined;
    this.consumerTag = undefined;
  }

  cancel(settleTimeoutMs = this.settleTimeoutMs): Promise<void> {
    this.cancelP ??= (async () => {
      const wasPending = this._state === 'pending';
      this._state = 'cancelled';
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      if (wasPending) this.readyReject(new BusError('CANCELLED', `subscription ${this.label} cancelled before it became active`, { target: this.label }));
      this.bus.removeSubscription(this);
      await this.shutdownChannel(settleTimeoutMs);
    })();
    return this.cancelP;
  }
}

// ==================================================================== sharing

/**
 * Reference-counted owner of one AmqpBus, for a Node-RED config node shared by several nodes
 * (like Node-RED's MQTT broker node): the first `acquire` creates the bus, the last `release`
 * closes it; a later `acquire` creates a fresh one.
 */
export class SharedBus {
  private bus?: AmqpBus;
  private readonly users = new Set<unknown>();
  private closing?: Promise<void>;

  constructor(private readonly factory: () => AmqpBus) {}

  /** The bus for `user` (any identity, e.g. the Node-RED node); creates and starts it on first use. */
  acquire(user: unknown): AmqpBus {
    this.users.add(user);
    if (!this.bus) {
      this.bus = this.factory();
      this.bus.start();
    }
    return this.bus;
  }

  /** Drop `user`; closes the bus when nobody uses it any more. */
  async release(user: unknown): Promise<void> {
    this.users.delete(user);
    if (this.users.size > 0 || !this.bus) {
      await this.closing;
      return;
    }
    const bus = this.bus;
    this.bus = undefined;
    this.closing = bus.close().finally(() => {
      this.closing = undefined;
    });
    await this.closing;
  }

  get refCount(): number {
    return this.users.size;
  }

  get current(): AmqpBus | undefined {
    return this.bus;
  }

  /** Close regardless of users (config node removed / runtime stopping). */
  async closeAll(): Promise<void> {
    this.users.clear();
    const bus = this.bus;
    this.bus = undefined;
    if (bus) await bus.close();
    await this.closing;
  }
}

/**
 * One-shot connection test (e.g. n8n credential test, Node-RED config check): connect, declare
 * nothing, close. Rejects with BusError CONNECT_FAILED / ACCESS_REFUSED / TIMEOUT / BAD_CONFIG.
 */
export async function probeAmqp(config: AmqpBusConfig): Promise<{ server: string }> {
  const timeout = positive('connectTimeoutMs', config.connectTimeoutMs, DEFAULTS.connectTimeoutMs);
  const a = connectArgs(config, timeout, 0);
  let conn: ChannelModel;
  try {
    conn = await withTimeout(amqp.connect(a.options, a.socket), timeout + 1000, 'AMQP connect', a.display);
  } catch (err) {
    const { code, message } = classifyConnectError(err, a.vhost);
    throw new BusError(code, `cannot connect to ${a.display}: ${message}`, { target: a.display, amqpCode: amqpCodeOf(err), cause: err });
  }
  conn.on('error', () => undefined);
  const props = conn.connection.serverProperties;
  const server = `${props?.product ?? 'AMQP'} ${props?.version ?? ''}`.trim();
  await withTimeout(conn.close(), timeout, 'AMQP close', a.display).catch(() => destroy(conn));
  return { server };
}
