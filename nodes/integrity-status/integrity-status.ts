/**
 * integrity-status (paper §4.2 "integrity check" outcome, steps 2.a/2.b and 5.a/5.b): settles the
 * SETS status of stored records and answers status queries.
 *
 * - A message with msg.sets.verification (from verify-hash, either output) settles the record named
 *   by msg.sets (as the taxii-server node emitted it): verified -> `finalized`, mismatch /
 *   not-anchored / wrong-writer -> `invalid` with the reason, conflict -> left pending (reason noted), under the collection's integrity policy (the server's
 *   recordVerification); the TAXII status resource (msg.sets.statusId) moves the object from
 *   `pendings` to `successes` / `failures`. An `invalid` record is never served again.
 *   The result is in msg.sets.integrity.
 * - A page of served records (taxii-server "one message per served page": msg.sets.records) checked
 *   by verify-hash in "whole" mode (msg.sets.verifications, same order) settles every record with
 *   its own verification; msg.sets.integrity = {count, changed, results: [one per record]}.
 * - Any other message is a query: msg.payload = an object id, or a filter {collection?, id?,
 *   status?} (empty = everything) -> msg.payload = the records' statuses.
 *
 * Works on a taxii-server node (recommended; found by its id, or — when none is selected — by the
 * collection a message is about), or directly on a sets-store (records only: no TAXII status
 * resource is updated). The badge counts pending / finalized / invalid records.
 */
import type { NodeAPI, NodeDef, Node, SetsMessage } from '../shared/types';
import { int, list, str } from '../shared/config';
import { onInput } from '../shared/input';
import { ThrottledStatus, shorten, errorLabel, type ConnectionState } from '../shared/status';
import { useConnection } from '../shared/use-connection';
import { mergeSets } from '../../lib/ops/result';
import { OpsError, messageOf } from '../../lib/ops/errors';
import {
  countStatuses,
  integrityTarget,
  parseStatusQuery,
  queryStatuses,
  settleIntegrity,
  storeRecorder,
  verificationOf,
  type IntegrityTarget,
  type VerdictRecorder,
  type VerificationLike,
} from '../../lib/ops/server-integrity';
import type { IntegrityPolicy } from '../../lib/taxii/server';
import type { StoreConnection } from '../../lib/ops/server-store';
import type { Store, StatusCounts } from '../../lib/store/store';
import { countsBadge } from './badge';
import type { StoreOwner } from '../sets-store/owner';
import { all, byCollection, find, watch, type ServerHandle } from '../taxii-server/registry';

interface StatusDef extends NodeDef {
  server?: string;
  store?: string;
  collections?: string;
  maxItems?: string | number;
}

/** How long a message waits for its taxii-server to finish starting. */
const SERVER_WAIT_MS = 10_000;

/** What the node works on for one message. */
interface Target {
  store: Store;
  collections: string[];
  record: VerdictRecorder;
  policyOf?: (collection: string) => IntegrityPolicy | undefined;
}

/**
 * A served page checked as a whole (msg.sets.records from taxii-server, msg.sets.verifications from
 * verify-hash "whole"): each record with its verification; null for any other message. Throws
 * OpsError BAD_PAYLOAD when the two lists do not pair up (lengths or ids differ).
 */
function pageOf(sets: unknown): Array<{ target: IntegrityTarget; verification: VerificationLike }> | null {
  if (typeof sets !== 'object' || sets === null || Array.isArray(sets)) return null;
  const s = sets as Record<string, unknown>;
  const records = s['records'];
  const vs = s['verifications'];
  if (!Array.isArray(records) || !Array.isArray(vs)) return null;
  if (records.length === 0 || records.length !== vs.length) {
    throw new OpsError('BAD_PAYLOAD', `msg.sets.records (${records.length}) and msg.sets.verifications (${vs.length}) must pair up one to one: verify the page with verify-hash in "whole" mode`);
  }
  return records.map((rec, i) => {
    const verification = verificationOf({ verification: vs[i] });
    if (!verification) throw new OpsError('BAD_PAYLOAD', `msg.sets.verifications[${i}] is not a verification`);
    const target = integrityTarget(rec, verification);
    if (verification.id !== undefined && verification.id !== target.id) {
      throw new OpsError('BAD_PAYLOAD', `msg.sets.verifications[${i}] is about ${verification.id}, msg.sets.records[${i}] about ${target.id}: the lists must be in the same order`);
    }
    return { target, verification };
  });
}

export = function register(RED: NodeAPI): void {
  function IntegrityStatusNode(this: Node, def: StatusDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: StatusDef): void {
    let setupError: Error | undefined;
    let maxItems = 1000;
    try {
      maxItems = int(def.maxItems, 'most statuses per query', 1000, 1, 100_000);
    } catch (err) {
      setupError = err as Error;
    }
    const serverId = str(def.server);
    const storeCollections = list(def.collections);

    // -- badge ----------------------------------------------------------------------------------
    let counts: StatusCounts | undefined;
    let lastError: string | undefined;
    const badge = new ThrottledStatus((s) => node.status(s), 250);
    const idle = () => {
      if (lastError) return { fill: 'red' as const, shape: 'ring' as const, text: shorten(`! ${lastError}`) };
      if (!counts) return { fill: 'grey' as const, shape: 'ring' as const, text: 'integrity-status.status.waiting' };
      return {
        fill: counts.invalid > 0 ? ('yellow' as const) : ('green' as const),
        shape: 'dot' as const,
        text: countsBadge(counts),
      };
    };
    let closed = false;
    const show = (): void => {
      if (!closed) badge.set(idle()); // a count finishing after close must not draw (nor start a timer)
    };

    // -- what it works on -----------------------------------------------------------------------
    // (declared before registering with a store: its listener runs at once when the store is open)
    let counting = false;
    let again = false;
    let storeConn: { get(): StoreConnection } | undefined;
    let storeState: ConnectionState = 'disconnected';
    if (!serverId && def.store) {
      const owner = RED.nodes.getNode(def.store) as StoreOwner | null;
      storeConn = useConnection<StoreConnection>(node, owner, {
        what: 'store',
        missingKey: 'integrity-status.status.no-store',
        listener: (state, detail) => {
          storeState = state;
          lastError = state === 'error' ? `store: ${detail ?? 'error'}` : undefined;
          if (state === 'connected') refresh();
          show();
        },
      });
    }

    /** Servers whose counts the badge shows. */
    const watched = (): ServerHandle[] => {
      if (serverId) {
        const h = find(serverId);
        return h ? [h] : [];
      }
      return storeConn ? [] : all();
    };

    function refresh(): void {
      if (counting) {
        again = true;
        return;
      }
      counting = true;
      (async (): Promise<StatusCounts | undefined> => {
        if (storeConn) {
          if (storeState !== 'connected') return undefined;
          const store = storeConn.get().store;
          return storeCollections.length > 0 ? countStatuses(store, storeCollections) : store.counts();
        }
        const hs = watched();
        if (hs.length === 0) return undefined;
        const total: StatusCounts = { pending: 0, finalized: 0, invalid: 0 };
        for (const h of hs) {
          const c = await h.counts();
          total.pending += c.pending;
          total.finalized += c.finalized;
          total.invalid += c.invalid;
        }
        return total;
      })()
        .then(
          (c) => {
            if (c) counts = c;
            show();
          },
          () => undefined,
        )
        .finally(() => {
          counting = false;
          if (again) {
            again = false;
            refresh();
          }
        });
    }

    // follow the servers' changes (and their redeploys)
    const offChanges = new Map<string, () => void>();
    const bind = (h: ServerHandle): void => {
      offChanges.get(h.nodeId)?.();
      offChanges.set(h.nodeId, h.onChange(refresh));
    };
    let offWatch: (() => void) | undefined;
    if (!storeConn) {
      for (const h of watched()) bind(h);
      offWatch = watch((id, h) => {
        if (serverId && id !== serverId) return;
        if (h) bind(h);
        else {
          offChanges.get(id)?.();
          offChanges.delete(id);
        }
        refresh();
      });
      refresh();
    }
    show();

    /** Waits in progress, cancelled on close (their timer and registry watcher released). */
    const waits = new Set<() => void>();
    const waitForServer = (pick: () => ServerHandle | undefined, what: string): Promise<ServerHandle> => {
      const now = pick();
      if (now) return Promise.resolve(now);
      return new Promise((resolve, reject) => {
        const end = (): void => {
          clearTimeout(timer);
          off();
          waits.delete(cancel);
        };
        const cancel = (): void => {
          end();
          reject(new OpsError('BAD_CONFIG', `the node closed while waiting: ${what} is not running`));
        };
        const timer = setTimeout(() => {
          end();
          reject(new OpsError('BAD_CONFIG', `${what} is not running (not deployed, or it failed to start)`));
        }, SERVER_WAIT_MS);
        const off = watch(() => {
          const h = pick();
          if (!h) return;
          end();
          resolve(h);
        });
        waits.add(cancel);
      });
    };

    const viaServer = (h: ServerHandle): Target => ({ store: h.store, collections: h.collections, record: h.recordVerification, policyOf: h.policyOf });

    async function targetFor(collection: string | undefined): Promise<Target> {
      if (serverId) return viaServer(await waitForServer(() => find(serverId), `the taxii-server node ${serverId}`));
      if (storeConn) {
        const conn = storeConn.get();
        const store = await conn.ready();
        return { store, collections: storeCollections, record: storeRecorder(store) };
      }
      if (collection) return viaServer(await waitForServer(() => byCollection(collection), `no taxii-server serving collection ${collection}`));
      const hs = all();
      if (hs.length === 1) return viaServer(hs[0]);
      throw new OpsError(
        'BAD_CONFIG',
        hs.length === 0 ? 'no taxii-server node is running' : 'several taxii-server nodes are running: select one in the node, or query a collection',
      );
    }

    onInput<SetsMessage>(node, { busyText: 'integrity-status.status.working', idle }, async (msg, send) => {
      if (setupError) throw setupError;
      const page = pageOf(msg.sets);
      if (page) {
        const target = await targetFor(page[0].target.collection);
        // every record of the page, each with its own verification (status moves are batched per status id)
        const results = await Promise.all(page.map((p) => settleIntegrity(target.record, p.target, p.verification)));
        const changed = results.filter((r) => r.changed).length;
        if (changed > 0 && storeConn) refresh();
        msg.sets = mergeSets(msg.sets, ['integrity'], { integrity: { count: results.length, changed, results } });
        send(msg);
        return;
      }
      const verification = verificationOf(msg.sets);
      if (verification) {
        const t = integrityTarget(msg.sets, verification);
        const target = await targetFor(t.collection);
        const result = await settleIntegrity(target.record, t, verification);
        if (result.changed && storeConn) refresh();
        msg.sets = mergeSets(msg.sets, ['integrity'], { integrity: result });
        send(msg);
        return;
      }
      const q = parseStatusQuery(msg.payload);
      const target = await targetFor(q.collection);
      if (target.collections.length === 0 && q.collection === undefined) {
        throw new OpsError('BAD_FILTER', 'the query needs a collection (this store node has no collections listed)');
      }
      const cols = target.collections.length > 0 ? target.collections : [q.collection as string];
      const result = await queryStatuses(target.store, cols, q, maxItems, target.policyOf);
      msg.payload = result.items;
      msg.sets = mergeSets(msg.sets, ['statuses'], { statuses: { count: result.items.length, more: result.more, query: q } });
      send(msg);
    });

    node.on('close', () => {
      closed = true;
      for (const cancel of [...waits]) cancel();
      offWatch?.();
      for (const off of offChanges.values()) off();
      offChanges.clear();
      badge.stop();
    });

    if (setupError) {
      lastError = errorLabel(setupError);
      show();
      node.error(`integrity-status: ${messageOf(setupError)}`);
    }
  }

  RED.nodes.registerType('integrity-status', IntegrityStatusNode);
};
