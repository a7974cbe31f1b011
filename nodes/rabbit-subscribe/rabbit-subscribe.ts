/**
 * rabbit-subscribe (paper step 4, "subscribe"): consume STIX objects from a queue bound to the
 * SETS exchange (`<collection>.<type>` keys, or raw binding keys) and emit one message per object.
 *
 * Acknowledgement (default "manual", at-least-once): a delivery is acked only when the flow says
 * it is done with it — a rabbit-ack node settles msg.amqp.deliveryId. Unsettled deliveries are
 * bounded by the prefetch; when the node closes (redeploy, stop) they are left to the broker,
 * which redelivers them. "auto" acks on arrival (at-most-once).
 *
 * Removed from the flows (close with removed = true): the consumer is cancelled and a temporary
 * queue deleted; a named queue is durable, may be shared, and is kept (see cleanUpRemoved).
 */
import type { NodeAPI, NodeDef, Node, NodeMessage } from '../shared/types';
import type { BrokerOwner } from '../shared/owners';
import { ConfigError, list, oneOf, optInt, optStr } from '../shared/config';
import { deliveries } from '../shared/deliveries';
import { ThrottledStatus, connectionStatus, type ConnectionState } from '../shared/status';
import { useConnection } from '../shared/use-connection';
import type { Bus, BusDelivery, Subscription, SubscribeOptions } from '../../lib/bus/bus';
import { bindingKeys } from '../../lib/bus/routing';
import { messageOf } from '../../lib/ops/errors';

interface SubscribeDef extends NodeDef {
  broker?: string;
  bindingMode?: string;
  collection?: string;
  types?: string;
  keys?: string;
  queue?: string;
  prefetch?: string | number;
  ackMode?: string;
  deadLetter?: string;
}

export = function register(RED: NodeAPI): void {
  function RabbitSubscribeNode(this: Node, def: SubscribeDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: SubscribeDef): void {
    let opts: SubscribeOptions | undefined;
    let ackMode: 'manual' | 'auto' = 'manual';
    let setupError: Error | undefined;
    try {
      ackMode = oneOf(def.ackMode, 'acknowledge', ['manual', 'auto'] as const, 'manual');
      const mode = oneOf(def.bindingMode, 'subscribe to', ['types', 'keys'] as const, 'types');
      const bindings =
        mode === 'keys'
          ? list(def.keys)
          : bindingKeys({ collection: optStr(def.collection), types: list(def.types).length ? list(def.types) : undefined });
      if (bindings.length === 0) throw new ConfigError('no binding keys: give a collection and/or STIX types, or raw binding keys');
      const queue = optStr(def.queue);
      opts = { bindings, ackMode: 'manual', settleTimeoutMs: 0 };
      if (queue) opts.queue = queue; // named queues are durable (lib/bus default)
      const prefetch = optInt(def.prefetch, 'prefetch', 1, 65_535);
      if (prefetch !== undefined) opts.prefetch = prefetch;
      const dlq = optStr(def.deadLetter);
      if (dlq) {
        opts.deadLetterExchange = `${dlq}.dlx`;
        opts.deadLetterQueue = dlq;
      }
    } catch (err) {
      setupError = err as Error;
    }

    let received = 0;
    let conn: { state: ConnectionState; detail?: string } = { state: 'disconnected' };
    const badge = new ThrottledStatus((s) => node.status(s));
    const owner = (def.broker ? RED.nodes.getNode(def.broker) : null) as BrokerOwner | null;
    // the in-process broker is not durable: say so in the badge (yellow) whenever it is in use
    const inProcess = owner?.kind === 'in-process';
    const showStatus = (): void => {
      if (conn.state !== 'connected') {
        badge.set(connectionStatus(conn.state, conn.detail));
        return;
      }
      const unacked = deliveries.unsettled(node.id);
      badge.set({
        fill: inProcess ? 'yellow' : 'green',
        shape: 'dot',
        text: `${received} received${ackMode === 'manual' ? ` · ${unacked} unacked` : ''}${inProcess ? ' · in-process' : ''}`,
      });
    };

    if (setupError) {
      node.status({ fill: 'red', shape: 'dot', text: setupError.message });
      node.error(`rabbit-subscribe cannot start: ${setupError.message}`);
      return;
    }
    const busHandle = useConnection<Bus>(node, owner, {
      what: 'broker',
      missingKey: 'rabbit-subscribe.status.no-broker',
      listener: (state, detail) => {
        // a dropped connection takes its channels along: the broker redelivers what was unsettled
        if (state !== 'connected' && conn.state === 'connected') deliveries.release(node.id);
        conn = { state, detail };
        showStatus();
      },
    });
    const offChange = deliveries.onChange((o) => {
      if (o === node.id) showStatus();
    });

    const handle = (d: BusDelivery): void => {
      received += 1;
      let payload: unknown;
      try {
        payload = d.json();
      } catch (err) {
        // not JSON: nothing a flow could verify. Dead-lettered when the queue has a dead-letter
        // exchange, dropped otherwise — reported either way, never silently.
        d.nack({ requeue: false });
        node.error(
          `message ${d.messageId ?? d.deliveryTag} on ${d.routingKey} is not JSON and was ${opts?.deadLetterQueue ? `dead-lettered to ${opts.deadLetterQueue}` : 'discarded'}: ${messageOf(err)}`,
          { topic: d.routingKey, amqp: { routingKey: d.routingKey, exchange: d.exchange, messageId: d.messageId } },
        );
        showStatus();
        return;
      }
      const amqp: Record<string, unknown> = {
        routingKey: d.routingKey,
        exchange: d.exchange,
        queue: d.queue,
        messageId: d.messageId,
        redelivered: d.redelivered,
        headers: d.headers,
      };
      if (ackMode === 'auto') {
        d.ack();
        amqp.acked = true;
      } else {
        amqp.deliveryId = deliveries.track(node.id, {
          ack: () => {
            if (!d.ack()) throw new Error('the delivery channel is closed; the broker redelivers the message');
          },
          nack: (requeue: boolean) => {
            if (!d.nack({ requeue })) throw new Error('the delivery channel is closed; the broker redelivers the message');
          },
        });
      }
      const msg: NodeMessage = { payload, topic: d.routingKey, amqp };
      if (d.collection !== undefined) msg.collection = d.collection;
      node.send(msg);
      showStatus();
    };

    let sub: Subscription | undefined;
    let closing = false;
    try {
      sub = busHandle.get().subscribe(opts as SubscribeOptions, handle);
      sub.ready().catch((err: unknown) => {
        if (closing) return; // cancelled by our own close before the broker was reached
        node.status({ fill: 'red', shape: 'ring', text: `! ${messageOf(err)}`.slice(0, 48) });
        node.error(`subscription failed: ${messageOf(err)}`);
      });
    } catch (err) {
      // no broker configured / configuration error: useConnection has shown and logged it
      if (busHandle.owner) node.error(`cannot subscribe: ${messageOf(err)}`);
    }

    /**
     * The node was deleted from the flows (not a redeploy or a stop): clean up what it created on
     * the broker that nobody else can use. A temporary queue (server-named, exclusive) is deleted —
     * RabbitMQ's auto-delete removes it once the consumer is cancelled, this also covers a queue
     * declared whose consumer never started. A named queue is durable and may be shared (competing
     * consumers, other Node-RED instances) and holds messages meant for them: it is kept, and said
     * so in the log.
     */
    const cleanUpRemoved = async (queue: string | undefined): Promise<void> => {
      if (!queue) return;
      if (!opts?.queue) {
        try {
          await busHandle.get().deleteQueue(queue);
        } catch (err) {
          // 404: already auto-deleted; CLOSED/CONNECT: the connection went with this node (the
          // broker drops exclusive queues with their connection). Anything else is worth a word.
          const code = (err as { code?: string; amqpCode?: number }).code;
          const amqpCode = (err as { amqpCode?: number }).amqpCode;
          if (amqpCode !== 404 && code !== 'CLOSED' && code !== 'CONNECT_FAILED') {
            node.warn(`could not delete temporary queue ${queue}: ${messageOf(err)}`);
          }
        }
        return;
      }
      node.log(
        `node removed: queue ${queue} is kept on the ${inProcess ? 'in-process broker (in memory until Node-RED restarts)' : 'broker'} ` +
          'with its bindings and messages (a named queue may be shared); delete it on the broker when nothing needs it',
      );
    };

    node.on('close', (removed: boolean, done: () => void) => {
      closing = true;
      offChange();
      badge.stop();
      const left = deliveries.release(node.id);
      if (left > 0) node.log(`${left} unsettled deliveries left to the broker (it redelivers them)`);
      const s = sub;
      sub = undefined;
      const queue = s?.queue ?? opts?.queue;
      (s ? s.cancel() : Promise.resolve())
        .catch(() => undefined)
        .then(() => (removed ? cleanUpRemoved(queue) : undefined))
        .then(
          () => done(),
          () => done(),
        );
    });
  }

  RED.nodes.registerType('rabbit-subscribe', RabbitSubscribeNode);
};
