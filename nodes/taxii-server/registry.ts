/**
 * The running taxii-server nodes of this Node-RED process, for the integrity-status nodes that
 * settle and query their records. A taxii-server publishes its handle once its server is ready and
 * withdraws it on close; integrity-status finds it by node id (its configured server) or by the
 * collection a message is about, and follows redeploys through `watch`.
 */
import type { IntegrityCounts, IntegrityPolicy, TaxiiServer } from '../../lib/taxii/server';
import type { Store } from '../../lib/store/store';
import type { VerdictRecorder } from '../../lib/ops/server-integrity';

export interface ServerHandle {
  /** id of the taxii-server node */
  nodeId: string;
  server: TaxiiServer;
  store: Store;
  apiRoot: string;
  /** where its API root is mounted on RED.httpNode: `<base>/<apiRoot>` */
  mountPath: string;
  /** ids of the collections it serves */
  collections: string[];
  /** recordVerification of the server, also refreshing the node's badge and telling the watchers */
  recordVerification: VerdictRecorder;
  /** counts per integrity status over its collections */
  counts(): Promise<IntegrityCounts>;
  policyOf(collection: string): IntegrityPolicy | undefined;
  /** called after anything that may change the status counts (admission, marking, delete) */
  onChange(listener: () => void): () => void;
}

/** Property naming the taxii-server node on its Express handler (to find its layer; tests count them). */
export const LAYER_MARK = 'setsTaxiiServer';

type Watcher = (nodeId: string, handle: ServerHandle | undefined) => void;

const handles = new Map<string, ServerHandle>();
const watchers = new Set<Watcher>();

function tell(nodeId: string, handle: ServerHandle | undefined): void {
  for (const w of [...watchers]) {
    try {
      w(nodeId, handle);
    } catch {
      // a watcher's failure is its own business
    }
  }
}

export function publish(handle: ServerHandle): void {
  handles.set(handle.nodeId, handle);
  tell(handle.nodeId, handle);
}

export function withdraw(handle: ServerHandle): void {
  if (handles.get(handle.nodeId) !== handle) return;
  handles.delete(handle.nodeId);
  tell(handle.nodeId, undefined);
}

export function find(nodeId: string): ServerHandle | undefined {
  return handles.get(nodeId);
}

/** The server serving `collection` (the first one found), if any. */
export function byCollection(collection: string): ServerHandle | undefined {
  for (const h of handles.values()) if (h.collections.includes(collection)) return h;
  return undefined;
}

/** Every running server. */
export function all(): ServerHandle[] {
  return [...handles.values()];
}

/** Be told whenever a server appears or goes; returns the unsubscribe function. */
export function watch(w: Watcher): () => void {
  watchers.add(w);
  return () => watchers.delete(w);
}
