/**
 * rabbit-ack: the end of a consumer flow. Settles the delivery named by msg.amqp.deliveryId —
 * ack, or nack with requeue / dead-letter, by configuration or per message with
 * msg.amqp.nack = {requeue}. A delivery is settled once; a second settle, an unknown id or a
 * delivery whose subscriber has closed is reported as a warning, never a crash.
 */
import type { NodeAPI, NodeDef, Node, NodeMessageInFlow } from '../shared/types';
import { oneOf } from '../shared/config';
import { deliveries } from '../shared/deliveries';
import type { SettleAction } from '../../lib/ops/deliveries';
import { nackOverride } from '../../lib/ops/deliveries';

interface AckDef extends NodeDef {
  action?: string;
}

function describeAction(a: SettleAction): string {
  return a.kind === 'ack' ? 'ack' : a.requeue ? 'nack (requeue)' : 'nack (dead-letter)';
}

export = function register(RED: NodeAPI): void {
  function RabbitAckNode(this: Node, def: AckDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: AckDef): void {
    let action: SettleAction = { kind: 'ack' };
    let setupError: Error | undefined;
    try {
      const a = oneOf(def.action, 'settle as', ['ack', 'requeue', 'dead-letter'] as const, 'ack');
      action = a === 'ack' ? { kind: 'ack' } : { kind: 'nack', requeue: a === 'requeue' };
    } catch (err) {
      setupError = err instanceof Error ? err : new Error(String(err));
      node.error(setupError.message);
    }
    let acked = 0;
    let nacked = 0;

    node.on('input', (msg: NodeMessageInFlow, _send: unknown, done: (err?: Error) => void) => {
      const amqp = (msg as { amqp?: unknown }).amqp;
      const info = typeof amqp === 'object' && amqp !== null ? (amqp as Record<string, unknown>) : undefined;
      if (info?.acked === true) {
        // auto-ack subscriber: nothing left to settle
        done();
        return;
      }
      const id = info?.deliveryId;
      if (typeof id !== 'string' || id === '') {
        node.warn('msg.amqp.deliveryId is missing: this message did not come from a rabbit-subscribe node in manual ack mode; nothing settled');
        done();
        return;
      }
      const override = nackOverride(info?.nack);
      // an unreadable "settle as" must not fall back to ack (the broker would drop a message meant
      // for requeue or the dead-letter queue): settle nothing, the broker redelivers it
      if (setupError && !override) {
        done(setupError);
        return;
      }
      const chosen = override ?? action;
      deliveries.settle(id, chosen).then(
        (r) => {
          switch (r.outcome) {
            case 'settled':
              if (chosen.kind === 'ack') acked += 1;
              else nacked += 1;
              node.status({ fill: 'green', shape: 'dot', text: nacked > 0 ? `${acked} acked · ${nacked} nacked` : `${acked} acked` });
              break;
            case 'already-settled':
              node.warn(`delivery ${id} was already settled (${describeAction(r.previous)}); this ${describeAction(chosen)} is ignored`);
              break;
            case 'released':
              node.warn(`delivery ${id} cannot be settled: its rabbit-subscribe node was closed; the broker redelivers it`);
              break;
            case 'failed':
              node.warn(`delivery ${id}: ${describeAction(chosen)} not sent (${r.error.message})`);
              break;
            case 'unknown':
              node.warn(`delivery ${id} is unknown (never seen here, or forgotten long ago); nothing settled`);
              break;
          }
          done();
        },
        (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
      );
    });
  }

  RED.nodes.registerType('rabbit-ack', RabbitAckNode);
};
