/**
 * Connecting to RabbitMQ for an n8n node: wait for the bus's first connection and fail on its first
 * failed attempt, with a message that names the broker (host:port) and the reason in words — the
 * way n8n's own RabbitMQ nodes fail at once and leave retrying to n8n (Retry On Fail, activation
 * retries). Once connected, the bus reconnects by itself when the broker goes away later.
 */
import type { AmqpBus } from '../../lib/bus/amqp';
import { BusError } from '../../lib/bus/errors';
import { messageOf } from '../../lib/ops/errors';
import { hostPort, plainMessage, systemErrorOf } from './errors';

/** Warnings of a failed connect attempt (AmqpBus.onConnectFailed). */
const CONNECT_FAILURES = new Set(['CONNECT_FAILED', 'ACCESS_REFUSED', 'TIMEOUT', 'CHANNEL_ERROR']);

/** The error for a failed connect attempt: a BusError (same code) whose message names the broker. */
export function brokerError(bus: AmqpBus, failure: BusError): BusError {
  const at = hostPort(bus.target);
  const reason = plainMessage(messageOf(failure).replace(/^cannot connect: /, ''));
  const sys = systemErrorOf(failure);
  let message: string;
  if (failure.code === 'ACCESS_REFUSED') message = `RabbitMQ broker ${at} refused access: ${reason}`;
  else if (failure.code === 'CHANNEL_ERROR') message = `RabbitMQ broker ${at}: ${reason}`;
  else message = `RabbitMQ broker ${at} not reachable: ${sys ? sys.words : reason}`;
  return new BusError(failure.code, message, { target: bus.target, ...(failure.amqpCode !== undefined ? { amqpCode: failure.amqpCode } : {}), cause: failure });
}

/**
 * Resolve once `bus` is connected (starting it); reject with brokerError() on the first failed
 * attempt, or when the bus is closed. An attempt ends within the connect timeout (TCP/AMQP
 * handshake) — a refused port at once — plus at most one connect timeout each for the publish
 * channel and the exchange declaration of a broker that accepted the connection: that sum is the
 * guard here. The bus is left as it is (the caller closes it on failure).
 */
export function connectBroker(bus: AmqpBus, connectTimeoutMs: number): Promise<void> {
  const timeoutMs = 3 * connectTimeoutMs + 1000;
  return new Promise<void>((resolve, reject) => {
    const offs: Array<() => unknown> = [];
    let timer: NodeJS.Timeout | undefined = undefined; // set below, once the listeners are in place
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const off of offs) off();
      if (err) reject(err);
      else resolve();
    };
    offs.push(
      bus.onWarning((w) => {
        if (CONNECT_FAILURES.has(w.code)) finish(brokerError(bus, w));
      }),
      bus.onState((state) => {
        if (state === 'connected') finish();
        else if (state === 'closed') finish(new BusError('CLOSED', `RabbitMQ connection to ${hostPort(bus.target)} closed before it was established`, { target: bus.target }));
      }),
    );
    timer = setTimeout(
      () => finish(brokerError(bus, new BusError('TIMEOUT', `no answer within ${timeoutMs} ms (${bus.detail})`, { target: bus.target }))),
      timeoutMs,
    );
    if (bus.state === 'connected') finish();
    else bus.start();
  });
}
