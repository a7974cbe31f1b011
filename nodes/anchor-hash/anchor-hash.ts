/**
 * anchor-hash (paper steps 0-1 on the producer side): validate the STIX payload — all of it,
 * nothing is anchored if any object is bad — then write (key, hash) of every object to the
 * ledger and report where each anchor landed in msg.sets. msg.payload is left as it was, so a
 * taxii-publish or rabbit-publish node can send the very objects that were anchored.
 */
import type { NodeAPI, NodeDef, Node, NodeStatus, SetsMessage } from '../shared/types';
import type { LedgerOwner } from '../shared/owners';
import { onInput } from '../shared/input';
import { connectionStatus, type ConnectionState } from '../shared/status';
import { useConnection } from '../shared/use-connection';
import type { Ledger } from '../../lib/ledger/ledger';
import { anchorPayload } from '../../lib/ops/anchor';
import { collectionSetting } from '../shared/collection-property';
import { ANCHOR_KEYS, anchorFragment, mergeSets } from '../../lib/ops/result';

interface AnchorDef extends NodeDef {
  ledger?: string;
  collection?: string;
  /** str (default, older flows) | msg | flow | env */
  collectionType?: string;
}

interface AnchorCredentials {
  hmacKey?: string;
}

type AnchorNode = Node<AnchorCredentials>;

export = function register(RED: NodeAPI): void {
  function AnchorHashNode(this: AnchorNode, def: AnchorDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: AnchorNode, def: AnchorDef): void {
    const collectionOf = collectionSetting(RED, node, def);
    const hmacKey = node.credentials?.hmacKey || undefined;
    let conn: { state: ConnectionState; detail?: string } = { state: 'disconnected' };
    let last: NodeStatus | undefined;
    const idle = (): NodeStatus => last ?? connectionStatus(conn.state, conn.detail);
    const owner = (def.ledger ? RED.nodes.getNode(def.ledger) : null) as LedgerOwner | null;
    const ledger = useConnection<Ledger>(node, owner, {
      what: 'ledger',
      missingKey: 'anchor-hash.status.no-ledger',
      listener: (state, detail) => {
        conn = { state, detail };
        // a connection problem replaces the last result; a recovered connection shows it again
        if (state === 'connected' && last) node.status(last);
        else node.status(connectionStatus(state, detail));
      },
    });
    if (owner && owner.readOnly && !owner.configError) {
      node.warn(`ledger ${owner.describe()} has no private key: anchoring will fail (add the writer's key to the ledger configuration)`);
    }

    onInput<SetsMessage>(node, { busyText: 'anchor-hash.status.anchoring', idle }, async (msg, send) => {
      // the collection first: a bad setting is named even while the ledger is missing or down
      const collection = await collectionOf.resolve(msg);
      const l = ledger.get();
      const result = await anchorPayload(l, { collection, payload: msg.payload, hmacKey });
      msg.sets = mergeSets(msg.sets, ANCHOR_KEYS, anchorFragment(result));
      const fresh = result.items.filter((i) => !i.anchor.existing).length;
      const block = Math.max(...result.items.map((i) => i.anchor.block));
      last = {
        fill: 'green',
        shape: 'dot',
        text: `${result.items.length} anchored${fresh < result.items.length ? ` (${result.items.length - fresh} already)` : ''} · block ${block}`,
      };
      send(msg);
    });
  }

  RED.nodes.registerType<AnchorNode, AnchorDef, unknown, AnchorCredentials>('anchor-hash', AnchorHashNode, {
    credentials: { hmacKey: { type: 'password' } },
  });
};
