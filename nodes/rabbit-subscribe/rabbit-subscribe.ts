/**
 * rabbit-subscribe (paper step 4, "subscribe"): consume STIX objects from a queue bound to the
 * SETS exchange (`<collection>.<type>` keys, or raw binding keys) and emit one message per object.
 *
 * Acknowledgement (default "manual", at-least-once): a delivery is acked only when the flow says
 * it is done with it — a rabbit-ack node settles msg.amqp.deliveryId. Unsettled deliveries are
 * bounded by the prefetch; when the node closes (redeploy, stop) they are left to the broker,
 * which redelivers them. "auto" acks on arrival (at-most-once).
 *
 * Queue: by default a DURABLE queue named `sets.<node id>` (quorum), so messages published while
 * the node is redeployed, Node-RED restarts or the broker connection is down wait for it; a queue
 * name of your own (classic unless chosen, may be shared by competing consumers); or — asked for —
 * a temporary queue (exclusive, gone with the connection: at-most-once across reconnects).
 * Robustness: delivery limit (default 5: a message requeued more often is dead-lettered instead of
 * looping), message TTL, a dead-letter queue declared for the user, an ack timeout (default 300 s:
 * a delivery no rabbit-ack settled is requeued with a warning, so a flow path that never reaches
 * rabbit-ack cannot stall the subscription at the prefetch limit).
 * Duplicates: msg.sets.redelivered (the broker says it was delivered before) and
 * msg.sets.duplicateOf (this node already passed on a message with this messageId — STIX
 * publishes derive it from collection, id, version and hash).
 *
 * Removed from the flows (close with removed = true): the consumer is cancelled; a temporary queue
 * and the node's own `sets.<node id>` queue are deleted; a queue named by the user is durable, may
 * be shared, and is kept (see cleanUpRemoved).
 */
import type { NodeAPI, NodeDef, Node, NodeMessage } from '../shared/types';
import type { BrokerOwner } from '../shared/owners';
import { ConfigError, list, oneOf, optInt, optStr } from '../shared/config';
import { deliveries } from '../shared/deliveries';
import { ThrottledStatus, connectionStatus, shorten, type ConnectionState } from '../shared/status';
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
  /** 'durable' (default) | 'temporary' */
  queueMode?: string;
  /** 'auto' (default: quorum for the node's own queue, classic for a named one) | 'classic' | 'quorum' */
  queueType?: string;
  /** deliveries of one message before it is dead-lettered; default 5, 0 = no limit */
  deliveryLimit?: string | number;
  /** message TTL, seconds; empty / 0 = none */
  messageTtl?: string | number;
  /** seconds a delivery may stay unsettled (manual mode); default 300, 0 = off */
  ackTimeout?: string | number;
  prefetch?: string | number;
  ackMode?: string;
  deadLetter?: string;
}

/** messageIds remembered per node for msg.sets.duplicateOf */
const SEEN_MEMORY = 10_000;

export = function register(RED: NodeAPI): void {
  function RabbitSubscribeNode(this: Node, def: SubscribeDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: SubscribeDef): void {
    let opts: SubscribeOptions | undefined;
    let ownQueue = false;
    let deliveryLimit = 5;
    let ackTimeoutMs = 300_000;
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
      const named = optStr(def.queue);
      const queueMode = oneOf(def.queueMode, 'queue', ['durable', 'temporary'] as const, 'durable');
      opts = { bindings, ackMode: 'manual', settleTimeoutMs: 0 };
      if (queueMode === 'durable') {
        ownQueue = named === undefined;
        opts.queue = named ?? `sets.${node.id}`; // durable (lib/bus default for named queues)
      }
      const queueType = oneOf(def.queueType, 'queue type', ['auto', 'classic', 'quorum'] as const, 'auto');
      if (queueMode === 'temporary' && queueType === 'quorum') throw new ConfigError('a temporary queue cannot be a quorum queue: choose a durable queue or queue type classic');
      // auto: quorum for the node's own queue (new); a named queue may exist already as classic
      const quorum = queueType === 'quorum' || (queueType === 'auto' && ownQueue);
      if (queueMode === 'durable') opts.queueType = quorum ? 'quorum' : 'classic';
      deliveryLimit = optInt(def.deliveryLimit, 'delivery limit', 0, 1_000_000) ?? 5;
      if (deliveryLimit > 0) opts.deliveryLimit = deliveryLimit;
      const ttl = optInt(def.messageTtl, 'message TTL', 0, 365 * 86_400);
      if (ttl) opts.messageTtlMs = ttl * 1000;
      ackTimeoutMs = (optInt(def.ackTimeout, 'ack timeout', 0, 86_400) ?? 300) * 1000;
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
    let timedOut = 0;
    let deadLettered = 0;
    /** messageId -> when this node first passed it on, and how often */
    const seen = new Map<string, { first: number; times: number }>();
    /** deliveryId -> ack timeout timer */
    const ackTimers = new Map<string, NodeJS.Timeout>();
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
        text:
          `${received} received${ackMode === 'manual' ? ` · ${unacked} unacked` : ''}` +
          `${timedOut ? ` · ${timedOut} ack timeout` : ''}${deadLettered ? ` · ${deadLettered} over limit` : ''}${inProcess ? ' · in-process' : ''}`,
      });
    };

    if (setupError) {
      node.status({ fill: 'red', shape: 'dot', text: shorten(`! ${setupError.message}`) });
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
      if (o !== node.id) return;
      // settled (or released): its ack timeout is moot
      for (const [id, t] of ackTimers) {
        if (deliveries.ownerOf(id) === undefined) {
          clearTimeout(t);
          ackTimers.delete(id);
        }
      }
      showStatus();
    });
    let offWarning: () => void = () => undefined;

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
      amqp.deliveryCount = d.deliveryCount;
      if (ackMode === 'auto') {
        d.ack();
        amqp.acked = true;
      } else {
        const id = deliveries.track(node.id, {
          ack: () => {
            if (!d.ack()) throw new Error('the delivery channel is closed; the broker redelivers the message');
          },
          nack: (requeue: boolean) => {
            if (!d.nack({ requeue })) throw new Error('the delivery channel is closed; the broker redelivers the message');
          },
        });
        amqp.deliveryId = id;
        if (ackTimeoutMs > 0) {
          const t = setTimeout(() => {
            ackTimers.delete(id);
            if (deliveries.ownerOf(id) !== node.id) return;
            void deliveries.settle(id, { kind: 'nack', requeue: true }).then((r) => {
              if (r.outcome !== 'settled') return;
              timedOut += 1;
              const last = deliveryLimit > 0 && d.deliveryCount >= deliveryLimit;
              node.warn(
                `message ${d.messageId ?? d.deliveryTag} on ${d.routingKey} was not settled within ${ackTimeoutMs / 1000} s ` +
                  '(no rabbit-ack reached? every path of the flow should end in one): ' +
                  (last
                    ? `delivery ${d.deliveryCount} of ${deliveryLimit}, so ${opts?.deadLetterQueue ? `dead-lettered to ${opts.deadLetterQueue}` : 'dropped (no dead-letter queue set)'}`
                    : `requeued (delivery ${d.deliveryCount}${deliveryLimit > 0 ? ` of ${deliveryLimit}` : ''})`),
              );
              showStatus();
            });
          }, ackTimeoutMs);
          ackTimers.set(id, t);
        }
      }
      // duplicates: the broker's redelivered flag, and messageIds this node passed on before
      const sets: Record<string, unknown> = { redelivered: d.redelivered, deliveryCount: d.deliveryCount };
      if (d.messageId !== undefined) {
        const prev = seen.get(d.messageId);
        if (prev) {
          prev.times += 1;
          sets.duplicateOf = { messageId: d.messageId, firstSeen: new Date(prev.first).toISOString(), times: prev.times };
          seen.delete(d.messageId);
          seen.set(d.messageId, prev);
        } else {
          seen.set(d.messageId, { first: Date.now(), times: 1 });
          if (seen.size > SEEN_MEMORY) {
            const oldest = seen.keys().next().value;
            if (oldest !== undefined) seen.delete(oldest);
          }
        }
      }
      const msg: NodeMessage = { payload, topic: d.routingKey, amqp, sets };
      if (d.collection !== undefined) msg.collection = d.collection;
      node.send(msg);
      showStatus();
    };

    let sub: Subscription | undefined;
    let closing = false;
    try {
      const bus = busHandle.get();
      sub = bus.subscribe(opts as SubscribeOptions, handle);
      offWarning = bus.onWarning((w) => {
        if (w.target === sub?.queue && /reached the delivery limit/.test(w.message)) {
          deadLettered += 1;
          node.warn(w.message);
          showStatus();
        }
      });
      sub.ready().catch((err: unknown) => {
        if (closing) return; // cancelled by our own close before the broker was reached
        const text = /already exists on the broker with a different (\S+)/.exec(messageOf(err));
        node.status({ fill: 'red', shape: 'ring', text: text ? `! queue exists with other ${text[1]}` : `! ${messageOf(err)}`.slice(0, 48) });
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
     * declared whose consumer never started. The node's own durable queue `sets.<node id>` serves
     * only this node: it is deleted too, with what it still holds. A queue named by the user is durable and may be shared (competing
     * consumers, other Node-RED instances) and holds messages meant for them: it is kept, and said
     * so in the log.
     */
    const cleanUpRemoved = async (queue: string | undefined): Promise<void> => {
      if (!queue) return;
      if (!opts?.queue || ownQueue) {
        try {
          await busHandle.get().deleteQueue(queue);
        } catch (err) {
          // 404: already auto-deleted; CLOSED/CONNECT: the connection went with this node (the
          // broker drops exclusive queues with their connection). Anything else is worth a word.
          const code = (err as { code?: string; amqpCode?: number }).code;
          const amqpCode = (err as { amqpCode?: number }).amqpCode;
          if (amqpCode !== 404 && code !== 'CLOSED' && code !== 'CONNECT_FAILED') {
            node.warn(`could not delete ${ownQueue ? "the node's own" : "temporary"} queue ${queue}: ${messageOf(err)}`);
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
      offWarning();
      for (const t of ackTimers.values()) clearTimeout(t);
      ackTimers.clear();
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
