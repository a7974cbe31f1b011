/** Typed errors of the RabbitMQ bus (lib/bus). */

export type BusErrorCode =
  | 'BAD_CONFIG' // the configuration cannot work (bad URL, bad option value)
  | 'BAD_INPUT' // a routing key part, header or body the bus cannot send; content that is not JSON
  | 'CONNECT_FAILED' // TCP/TLS/AMQP handshake failed (the bus keeps retrying)
  | 'ACCESS_REFUSED' // credentials refused or no permission on the vhost (the bus keeps retrying)
  | 'CONNECTION_LOST' // an established connection dropped (the bus reconnects)
  | 'TIMEOUT' // connect, broker operation or publish confirm took longer than configured
  | 'NACKED' // the broker refused to take responsibility for a published message
  | 'UNROUTABLE' // a mandatory publish matched no queue (nobody would have received it)
  | 'QUEUE_FULL' // too many publishes waiting for the broker (maxPendingPublishes)
  | 'PUBLISH_FAILED' // a publish was resent maxPublishAttempts times without a confirm
  | 'CHANNEL_ERROR' // the broker closed a channel (PRECONDITION_FAILED, NOT_FOUND, ...)
  | 'SUBSCRIBE_FAILED' // a subscription could not be set up (queue/binding declaration refused)
  | 'CANCELLED' // the subscription was cancelled before it became active
  | 'HANDLER_FAILED' // a subscription handler threw or rejected
  | 'SETTLE_FAILED' // ack/nack could not be sent (channel gone; the broker redelivers)
  | 'CLOSED'; // the bus was closed

export class BusError extends Error {
  readonly code: BusErrorCode;
  /** What failed: broker address (never with credentials), queue, routing key, ... */
  readonly target?: string;
  /** AMQP reply code from the broker when there is one (403, 404, 405, 406, 320, ...) */
  readonly amqpCode?: number;
  /**
   * A publish that failed after it was written to the broker (TIMEOUT waiting for the confirm,
   * CLOSED, PUBLISH_FAILED after a resend): the broker may have taken it. Re-sending is safe —
   * a STIX publish carries the same messageId, so consumers recognise the copy.
   */
  readonly maybeDelivered?: boolean;
  constructor(code: BusErrorCode, message: string, opts: { target?: string; amqpCode?: number; cause?: unknown; maybeDelivered?: boolean } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'BusError';
    this.code = code;
    this.target = opts.target;
    this.amqpCode = opts.amqpCode;
    if (opts.maybeDelivered) this.maybeDelivered = true;
  }
}

/** AMQP reply code carried by an amqplib error, if any. */
export function amqpCodeOf(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const c = (err as { code: unknown }).code;
    if (typeof c === 'number') return c;
  }
  if (err instanceof Error) {
    const m = /\b(3\d\d|4\d\d|5\d\d)\s*\(/.exec(err.message);
    if (m) return Number(m[1]);
  }
  return undefined;
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
