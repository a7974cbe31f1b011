/**
 * verify-hash (paper steps 4 and 6 on the consumer side): recompute H(t) of each object
 * received, read the anchored hash, and route: output 1 verified, output 2 rejected
 * (`mismatch`, `not-anchored`, `wrong-writer`, `conflict`, with the reason), output 3 undecided (`unknown`: the ledger could
 * not be read by the end of the wait — retry later). A not-yet-mined anchor is waited for up to
 * the configured time — pending is a state, not an error. An undecided object is never a
 * rejection. When output 3 is not wired (flows saved when the node had two outputs, or left
 * unconnected) an undecided message goes to node.error(…, msg) (a Catch node), never silently
 * nowhere. With wait 0 a ledger
 * that cannot be read is an error (Catch node), as before.
 */
import type { NodeAPI, NodeDef, Node, NodeMessage, SetsMessage } from '../shared/types';
import type { LedgerOwner } from '../shared/owners';
import { int, oneOf } from '../shared/config';
import { onInput } from '../shared/input';
import { connectionStatus, type ConnectionState } from '../shared/status';
import { useConnection } from '../shared/use-connection';
import type { Ledger } from '../../lib/ledger/ledger';
import { collectionSetting } from '../shared/collection-property';
import { VERIFY_KEYS, mergeSets, verificationFragment, wholeVerificationFragment } from '../../lib/ops/result';
import { overallStatus, verifyPayload } from '../../lib/ops/verify';
import { effectiveWaitMs } from '../../lib/ops/server-integrity';

interface VerifyDef extends NodeDef {
  ledger?: string;
  collection?: string;
  /** str (default, older flows) | msg | flow | env */
  collectionType?: string;
  waitMs?: string | number;
  mode?: string;
}

interface VerifyCredentials {
  hmacKey?: string;
}

type VerifyNode = Node<VerifyCredentials>;

export = function register(RED: NodeAPI): void {
  function VerifyHashNode(this: VerifyNode, def: VerifyDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: VerifyNode, def: VerifyDef): void {
    const collectionOf = collectionSetting(RED, node, def);
    const hmacKey = node.credentials?.hmacKey || undefined;
    let setupError: Error | undefined;
    let waitMs = 10_000;
    let mode: 'split' | 'whole' = 'split';
    try {
      waitMs = int(def.waitMs, 'wait for anchor', 10_000, 0, 3_600_000);
      mode = oneOf(def.mode, 'several objects', ['split', 'whole'] as const, 'split');
    } catch (err) {
      setupError = err as Error;
    }
    setupError ??= collectionOf.error;

    let verified = 0;
    let rejected = 0;
    let undecided = 0;
    let conn: { state: ConnectionState; detail?: string } = { state: 'disconnected' };
    const counts = (): string => `✓ ${verified}  ✗ ${rejected}${undecided > 0 ? `  ? ${undecided}` : ''}`;
    const idle = () =>
      conn.state === 'connected' && verified + rejected + undecided > 0
        ? { fill: rejected + undecided > 0 ? ('yellow' as const) : ('green' as const), shape: 'dot' as const, text: counts() }
        : connectionStatus(conn.state, conn.detail);
    // Node-RED drops what is sent to an output without wires: a flow saved when this node had two
    // outputs has no third, and an old flow redeployed from the editor has it unconnected — there
    // undecided messages go to node.error instead (the runtime's Node has `wires`; @types/node-red
    // does not declare it)
    const hasThirdOutput = (): boolean => {
      const third = (node as unknown as { wires?: unknown[][] }).wires?.[2];
      return Array.isArray(third) && third.length > 0;
    };
    const route = (m: NodeMessage, status: string, reason: string | undefined, send: (out: Array<NodeMessage | null>) => void): void => {
      if (status === 'verified') send([m, null, null]);
      else if (status !== 'unknown') send([null, m, null]);
      else if (hasThirdOutput()) send([null, null, m]);
      else node.error(`undecided (retry later): ${reason ?? 'the ledger could not be read'}`, m);
    };
    const owner = (def.ledger ? RED.nodes.getNode(def.ledger) : null) as LedgerOwner | null;
    const ledger = useConnection<Ledger>(node, owner, {
      what: 'ledger',
      missingKey: 'verify-hash.status.no-ledger',
      listener: (state, detail) => {
        conn = { state, detail };
        node.status(idle());
      },
    });

    onInput<SetsMessage>(node, { busyText: 'verify-hash.status.verifying', idle }, async (msg, send) => {
      if (setupError) throw setupError;
      // the collection first: a bad setting is named even while the ledger is missing or down
      const collection = await collectionOf.resolve(msg);
      const l = ledger.get();
      const results = await verifyPayload(l, { collection, payload: msg.payload, waitMs: effectiveWaitMs(msg.sets, waitMs), hmacKey });
      const ok = results.filter((r) => r.verification.status === 'verified').length;
      const unsure = results.filter((r) => r.verification.status === 'unknown').length;
      verified += ok;
      undecided += unsure;
      rejected += results.length - ok - unsure;

      if (mode === 'whole' && results.length > 1) {
        const vs = results.map((r) => r.verification);
        msg.sets = mergeSets(msg.sets, VERIFY_KEYS, wholeVerificationFragment(vs));
        const first = vs.find((v) => v.status === 'unknown');
        route(msg, overallStatus(vs), first?.reason, send);
        return;
      }
      const seq = results.length > 1 ? RED.util.generateId() : undefined;
      // each message carries one object: copy the message *without* its payload (cloning the whole
      // N-object payload for each of N messages was quadratic — a served page of 1,000 objects)
      const shell = results.length > 1 ? ({ ...msg, payload: undefined } as SetsMessage) : msg;
      results.forEach((r, index) => {
        const m = (results.length === 1 ? msg : RED.util.cloneMessage(shell)) as SetsMessage;
        m.payload = r.object;
        m.sets = mergeSets(m.sets, VERIFY_KEYS, verificationFragment(r.verification));
        if (seq) {
          // like the core split node: an existing sequence is kept as the parent
          const parent = msg.parts;
          m.parts = { id: seq, index, count: results.length, ...(parent ? { parts: parent } : {}) };
        }
        route(m, r.verification.status, r.verification.reason, send);
      });
    });
  }

  RED.nodes.registerType<VerifyNode, VerifyDef, unknown, VerifyCredentials>('verify-hash', VerifyHashNode, {
    credentials: { hmacKey: { type: 'password' } },
  });
};
