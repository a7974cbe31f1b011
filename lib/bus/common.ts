/**
 * What both brokers (AmqpBus on RabbitMQ, MemoryBus in process) must do identically: the SETS
 * message headers, turning a body and headers into what AMQP can carry, the STIX publish request,
 * and reading a delivery as JSON. One copy here, so the two brokers cannot drift apart.
 */
import { createHash } from 'node:crypto';
import { BusError, messageOf } from './errors';
import { routingKey as makeRoutingKey } from './routing';
import type { PublishRequest, PublishStixOptions, StixLike } from './amqp';

export const STIX_CONTENT_TYPE = 'application/stix+json';
export const HEADER_COLLECTION = 'x-sets-collection';
export const HEADER_OBJECT_ID = 'x-sets-object-id';
export const HEADER_TYPE = 'x-sets-type';
export const HEADER_VERSION = 'x-sets-version';
export const HEADER_HASH = 'x-sets-hash';

/**
 * A message body as bytes: Buffer / Uint8Array and strings as they are, anything else as JSON.
 * `copy`: never share the caller's buffer (the in-process broker keeps messages in memory).
 */
export function bodyToBuffer(body: unknown, copy = false): Buffer {
  if (Buffer.isBuffer(body)) return copy ? Buffer.from(body) : body;
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  let text: string | undefined;
  try {
    text = JSON.stringify(body);
  } catch (err) {
    throw new BusError('BAD_INPUT', `message body cannot be serialised as JSON: ${messageOf(err)}`, { cause: err });
  }
  if (text === undefined) throw new BusError('BAD_INPUT', 'message body is undefined or not JSON-serialisable');
  return Buffer.from(text, 'utf8');
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

/**
 * Header values as AMQP can carry them: strings, finite numbers, booleans, Buffers, and arrays /
 * plain objects of those; Dates become ISO strings; null and undefined are left out. Anything else
 * is BAD_INPUT. `copyBuffers`: Buffers are copied (the result then shares nothing with the input).
 */
export function cleanHeaders(h: Record<string, unknown> | undefined, copyBuffers = false): Record<string, unknown> {
  const check = (path: string, v: unknown, depth: number): unknown => {
    if (depth > 8) throw new BusError('BAD_INPUT', `header ${path} is nested too deeply`);
    if (typeof v === 'string' || typeof v === 'boolean') return v;
    if (Buffer.isBuffer(v)) return copyBuffers ? Buffer.from(v) : v;
    if (v instanceof Date) return v.toISOString();
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new BusError('BAD_INPUT', `header ${path} is not a finite number`);
      return v;
    }
    if (Array.isArray(v)) return v.map((x, i) => check(`${path}[${i}]`, x, depth + 1));
    if (isPlainObject(v)) {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) if (x !== undefined && x !== null) o[k] = check(`${path}.${k}`, x, depth + 1);
      return o;
    }
    throw new BusError('BAD_INPUT', `header ${path} has a type AMQP cannot carry (${typeof v})`);
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined || v === null) continue;
    out[k] = check(k, v, 0);
  }
  return out;
}

/**
 * The messageId of a STIX publish: the same for every publish of one object version with one
 * hash to one collection — a re-send after a timeout or a restart carries the same id, so a
 * consumer recognises it as a copy (dedupe by messageId). UUID-shaped (version nibble 8,
 * "custom"), from SHA-256 over collection, id, version and hash.
 */
export function stixMessageId(collection: string, id: string, version: string | undefined, hash: string | undefined): string {
  const h = createHash('sha256').update(JSON.stringify(['sets-msg-1', collection, id, version ?? '', hash ?? ''])).digest('hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The publish request for a STIX object: routing key `<collection>.<type>` and the SETS headers. Throws BAD_INPUT. */
export function stixPublishRequest(collection: string, object: StixLike, opts: PublishStixOptions = {}): PublishRequest {
  if (typeof object !== 'object' || object === null || typeof object.type !== 'string' || typeof object.id !== 'string') {
    throw new BusError('BAD_INPUT', 'publishStix needs a STIX object with string "type" and "id"');
  }
  const routingKey = makeRoutingKey(collection, object.type);
  const version = typeof object.modified === 'string' ? object.modified : typeof object.created === 'string' ? object.created : undefined;
  return {
    routingKey,
    body: object,
    messageId: opts.messageId ?? stixMessageId(collection, object.id, version, opts.hash),
    timeoutMs: opts.timeoutMs,
    ...(opts.brokerWaitMs !== undefined ? { brokerWaitMs: opts.brokerWaitMs } : {}),
    ...(opts.confirmTimeoutMs !== undefined ? { confirmTimeoutMs: opts.confirmTimeoutMs } : {}),
    ...(opts.mandatory !== undefined ? { mandatory: opts.mandatory } : {}),
    headers: {
      ...opts.headers,
      [HEADER_COLLECTION]: collection,
      [HEADER_OBJECT_ID]: object.id,
      [HEADER_TYPE]: object.type,
      [HEADER_VERSION]: version,
      [HEADER_HASH]: opts.hash,
    },
  };
}

/** A delivery's body parsed as JSON, or BAD_INPUT naming the message. */
export function parseDeliveryJson(content: Buffer, label: string, routingKey: string, queue: string | undefined): unknown {
  try {
    return JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw new BusError('BAD_INPUT', `message ${label} on ${routingKey} is not JSON: ${messageOf(err)}`, { target: queue, cause: err });
  }
}

/**
 * A queue declaration refused because the queue exists with other arguments (406
 * PRECONDITION_FAILED "inequivalent arg"), in words: which argument differs and how to fix it.
 * Undefined for any other error.
 */
export function explainInequivalent(message: string, queue: string | undefined): string | undefined {
  const m = /inequivalent arg '([^']+)' for queue '([^']*)'[^:]*:\s*(.*?)\s*"?$/i.exec(message);
  if (!m) return undefined;
  const [, arg, q, detail] = m;
  const name = q || queue || '?';
  return (
    `queue "${name}" already exists on the broker with a different ${arg} (${detail.replace(/^received /, 'asked ')}); ` +
    `a queue's arguments cannot change: delete the queue on the broker (e.g. rabbitmqctl delete_queue ${name} — its messages are lost) ` +
    'or use a new queue name, or set the option back to what the queue has'
  );
}

/** Validate the queue options every broker must check the same way (throws BAD_CONFIG). */
export function checkQueueOptions(o: { queue?: string; queueType?: string; exclusive?: boolean; autoDelete?: boolean; durable?: boolean; deliveryLimit?: unknown; messageTtlMs?: unknown }): void {
  if (o.queueType !== undefined && o.queueType !== 'classic' && o.queueType !== 'quorum') {
    throw new BusError('BAD_CONFIG', `queue type must be "classic" or "quorum", got ${JSON.stringify(o.queueType)}`);
  }
  if (o.queueType === 'quorum' && (o.queue === undefined || o.exclusive === true || o.autoDelete === true || o.durable === false)) {
    throw new BusError('BAD_CONFIG', 'a quorum queue must be a named, durable queue (not temporary, exclusive or auto-delete)');
  }
  for (const [k, v] of [
    ['deliveryLimit', o.deliveryLimit],
    ['messageTtlMs', o.messageTtlMs],
  ] as const) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 0)) {
      throw new BusError('BAD_CONFIG', `${k} must be a whole number >= 0, got ${String(v)}`);
    }
  }
}

/** Subscription options the delivery-limit rules read. */
interface LimitOptions {
  deliveryLimit?: number;
  deadLetterQueue?: string;
  deadLetterExchange?: string;
}

/** The delivery limit is reached: a requeue now dead-letters (both brokers apply the same rule). */
export function deliveryLimitReached(opts: LimitOptions, deliveryCount: number): boolean {
  const limit = opts.deliveryLimit;
  return limit !== undefined && limit > 0 && deliveryCount >= limit;
}

/** What happens to a message over the delivery limit, for the warning. */
export function deliveryLimitText(opts: LimitOptions, d: { messageId?: string; deliveryTag: number | string; routingKey: string; deliveryCount?: number }): string {
  const where = opts.deadLetterQueue
    ? `dead-lettered to ${opts.deadLetterQueue}`
    : opts.deadLetterExchange
      ? `dead-lettered to exchange ${opts.deadLetterExchange}`
      : 'DROPPED (the queue has no dead-letter queue)';
  return `message ${d.messageId ?? d.deliveryTag} on ${d.routingKey} reached the delivery limit (${d.deliveryCount} of ${opts.deliveryLimit} deliveries): ${where}`;
}
