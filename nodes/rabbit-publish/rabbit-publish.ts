/**
 * rabbit-publish (paper step 3, "distribution"): publish each STIX object of msg.payload to the
 * SETS exchange with routing key `<collection>.<type>`, persistent, with publisher confirms. The
 * message passes on only after the broker confirmed every object. While the broker is down the
 * publish waits (bounded, 120 s) for the reconnect instead of failing at once.
 *
 * No queue bound for a routing key (nobody subscribed): by default the publish fails with
 * UNROUTABLE naming the exchange and routing key (the broker would otherwise confirm and drop it);
 * "No subscriber: drop silently" is fire-and-forget. A broker resource alarm (memory / disk) blocks
 * publishing: the badge says so (yellow) while publishes wait.
 */
import type { NodeAPI, NodeDef, Node, NodeStatus, SetsMessage } from '../shared/types';
import type { BrokerOwner } from '../shared/owners';
import { oneOf, str } from '../shared/config';
import { onInput } from '../shared/input';
import { connectionStatus, type ConnectionState } from '../shared/status';
import { useConnection } from '../shared/use-connection';
import type { Bus } from '../../lib/bus/bus';
import { resolveCollection } from '../../lib/ops/collection';
import { hashesFromSets, publishPayload } from '../../lib/ops/publish';
import { mergeSets } from '../../lib/ops/result';

interface PublishDef extends NodeDef {
  broker?: string;
  collection?: string;
  /** 'refuse' (default): UNROUTABLE error when no queue is bound | 'allow': dropped by the broker */
  unroutable?: string;
}

export = function register(RED: NodeAPI): void {
  function RabbitPublishNode(this: Node, def: PublishDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: PublishDef): void {
    let published = 0;
    let conn: { state: ConnectionState; detail?: string } = { state: 'disconnected' };
    let allowUnroutable = false;
    let setupError: Error | undefined;
    try {
      allowUnroutable = oneOf(def.unroutable, 'no subscriber', ['refuse', 'allow'] as const, 'refuse') === 'allow';
    } catch (err) {
      setupError = err instanceof Error ? err : new Error(String(err));
    }
    const owner = (def.broker ? RED.nodes.getNode(def.broker) : null) as BrokerOwner | null;
    // the in-process broker is not durable: say so in the badge (yellow) whenever it is in use
    const inProcess = owner?.kind === 'in-process';
    const idle = (): NodeStatus => {
      if (conn.state !== 'connected') return connectionStatus(conn.state, conn.detail);
      if (conn.detail && /^blocked/.test(conn.detail)) return { fill: 'yellow', shape: 'ring', text: 'rabbit-publish.status.blocked' };
      if (inProcess) return { fill: 'yellow', shape: 'dot', text: published > 0 ? `${published} published · in-process` : '⚠ in-process broker' };
      return published > 0 ? { fill: 'green', shape: 'dot', text: `${published} published` } : connectionStatus(conn.state, conn.detail);
    };
    const bus = useConnection<Bus>(node, owner, {
      what: 'broker',
      missingKey: 'rabbit-publish.status.no-broker',
      listener: (state, detail) => {
        conn = { state, detail };
        node.status(idle());
      },
    });

    onInput<SetsMessage>(node, { busyText: 'rabbit-publish.status.publishing', idle }, async (msg, send) => {
      if (setupError) throw setupError;
      const b = bus.get();
      const collection = resolveCollection(msg.collection, str(def.collection));
      const out = await publishPayload(b, { collection, payload: msg.payload, hashes: hashesFromSets(msg.sets), allowUnroutable });
      published += out.count;
      msg.sets = mergeSets(msg.sets, ['published'], { published: out });
      send(msg);
    });
  }

  RED.nodes.registerType('rabbit-publish', RabbitPublishNode);
};
