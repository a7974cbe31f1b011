/**
 * taxii-server (paper §4.2, steps 2-3 and 5 on the server side): the whole TAXII 2.1 API of
 * lib/taxii/server mounted on Node-RED's own HTTP server (RED.httpNode), with one API root and
 * its collections, records in a sets-store.
 *
 * URL scheme (under Node-RED's httpNodeRoot): discovery at `<base>/taxii2/`, the API root at
 * `<base>/<api root>/` (default base `/taxii`, API root `api1`). Requests under `<base>` for
 * other paths pass on to the rest of Node-RED's HTTP routes.
 *
 * Output 1: each object a POST admitted (stored `pending`), at once, before any check: the flow
 * distributes it (rabbit-publish) and verifies it (verify-hash -> integrity-status) in parallel.
 * Records that stay pending (lost message, restart, ledger outage) come out again on output 1 with
 * msg.sets.origin = 'recovery' (at start those admitted before it, then every recovery interval those
 * older than the grace period; a duplicate POST of a pending record at once).
 * Output 2: each object a GET served, for re-verification in parallel (step 5).
 * Both carry msg.payload = the STIX object, msg.collection, msg.sets = {apiRoot, collection, id,
 * version, key, hash, status, dateAdded, origin, policy, statusId?, anchorDeadline?, attempt?}.
 * With "served objects: one message per page" (servedAs = 'page') output 2 carries one message per
 * GET answer instead: msg.payload = the list of objects served, msg.sets = {apiRoot, collection,
 * origin: 'inquiry', policy, records: [the per-object msg.sets above, in payload order]} — a
 * verify-hash in "whole" mode checks the page with one batched ledger read and integrity-status
 * settles every record of it (each by its own verification); no record is left out.
 *
 * On close (redeploy, stop) its Express layer is removed from the router stack, so redeploys never
 * stack handlers; requests in progress are finished before the store is released.
 */
import type { NextFunction, Request, Response } from 'express';
import type { NodeAPI, NodeDef, Node, NodeMessage } from '../shared/types';
import { ThrottledStatus, errorLabel, shorten } from '../shared/status';
import type { StoreOwner } from '../sets-store/owner';
import type { StoreConnection, StoreState } from '../../lib/ops/server-store';
import { buildServerConfig, normaliseBasePath, parseServerSettings, type ServerSettings } from '../../lib/ops/server-config';
import { recordInfo } from '../../lib/ops/server-integrity';
import { messageOf } from '../../lib/ops/errors';
import { createTaxiiServer, type TaxiiServer } from '../../lib/taxii/server';
import { LAYER_MARK, all, publish, withdraw, type ServerHandle } from './registry';
import { legacyAccountNames, resolveAccounts, withHashes, type AccountCredentials, type ResolvedAccounts } from './accounts';
import { hashUsers } from '../../lib/ops/server-config';

interface ServerDef extends NodeDef {
  store?: string;
  basePath?: string;
  title?: string;
  description?: string;
  contact?: string;
  apiRoot?: string;
  apiRootTitle?: string;
  maxContentLength?: string | number;
  maxPageSize?: string | number;
  collections?: unknown;
  anonymousRead?: boolean | string;
  openAccess?: boolean | string;
  oauth2?: boolean | string;
  issuer?: string;
  jwksUrl?: string;
  audience?: string;
  anyAudience?: boolean | string;
  clientId?: string;
  clockTolerance?: string | number;
  recoveryInterval?: string | number;
  anchorGrace?: string | number;
  /** output 2: one message per served object ('object', default) or per served page ('page') */
  servedAs?: string;
  // protection against login floods (lib/ops/server-config.ts parseProtection); empty = default
  addressBurst?: string | number;
  userBurst?: string | number;
  refillMs?: string | number;
  maxTracked?: string | number;
  maxConcurrentHashes?: string | number;
  maxQueuedHashes?: string | number;
  /** Basic users edited in the dialog: [{id, name, roles}] (secrets in the credentials: ./accounts.ts); absent in old flows */
  userList?: unknown;
  /** API keys edited in the dialog: [{id, name, roles}]; absent in old flows */
  apiKeyList?: unknown;
}

type ServerCredentials = AccountCredentials;

/** The merged accounts and the `secrets` credential as the merge left it in the store. */
type Merged = ResolvedAccounts & { secrets: string | undefined };

/** The credential fields of the node type (all password type: the editor never receives them). */
const CREDENTIALS = {
  users: { type: 'password' },
  apiKeys: { type: 'password' },
  tokenSecret: { type: 'password' },
  secrets: { type: 'password' },
  secretChanges: { type: 'password' },
} as const;

type ServerNode = Node<ServerCredentials>;

type Middleware = ((req: Request, res: Response, next: NextFunction) => void) & { [LAYER_MARK]?: string };

interface Layer {
  handle?: unknown;
}

/** Express 4 keeps the router in `_router`, Express 5 in `router` (4's `router` getter throws). */
function routerStack(app: unknown): Layer[] | undefined {
  const a = app as { _router?: { stack?: unknown }; router?: { stack?: unknown } };
  let stack: unknown = a._router?.stack;
  if (stack === undefined) {
    try {
      stack = a.router?.stack;
    } catch {
      stack = undefined;
    }
  }
  return Array.isArray(stack) ? (stack as Layer[]) : undefined;
}

/**
 * The running badge, short enough not to be covered by the neighbouring nodes:
 * "listening :1880 · 3 collections", or with records waiting for their check ":1880 · 3 collections · 2 pending".
 */
function runningBadge(port: number | undefined, collections: number, pending: number | undefined): string {
  const cols = `${collections} collection${collections === 1 ? '' : 's'}`;
  const where = port !== undefined ? `:${port}` : '';
  if (pending !== undefined && pending > 0) return `${where ? where + ' · ' : ''}${cols} · ${pending} pending`;
  return `listening${where ? ' ' + where : ''} · ${cols}`;
}

/** Longest wait for requests in progress when the node closes. */
const DRAIN_MS = 10_000;

export = function register(RED: NodeAPI): void {
  function TaxiiServerNode(this: ServerNode, def: ServerDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  /**
   * The dialog's accounts merged with the kept secrets (./accounts.ts), at once and before anything
   * else can fail, so a change-set is never lost; the merged secrets go back into the runtime's
   * credential store (saved with the next deploy; until then a restart merges the same again).
   */
  function mergeAccounts(node: ServerNode, def: ServerDef): Merged {
    const creds: ServerCredentials = { ...(RED.nodes.getCredentials(node.id) as ServerCredentials | undefined) };
    const out = resolveAccounts({ userList: def.userList, apiKeyList: def.apiKeyList }, creds);
    if (out.store) void RED.nodes.addCredentials(node.id, out.store);
    for (const w of out.warnings) node.warn(w);
    return { ...out, secrets: out.store ? out.store.secrets : creds.secrets };
  }

  /** Replace the clear passwords just merged by their scrypt hashes, in the store too (when nothing changed it since). */
  async function hashAccounts(node: ServerNode, accounts: Merged): Promise<ResolvedAccounts> {
    const clear = accounts.users.filter((u) => !u.password.startsWith('scrypt$'));
    if (clear.length === 0) return accounts;
    const hashed = await hashUsers(clear);
    const byPassword = new Map<string, string>();
    clear.forEach((u, i) => byPassword.set(u.password, hashed[i].passwordHash));
    const users = accounts.users.map((u) => ({ ...u, password: byPassword.get(u.password) ?? u.password }));
    const current = RED.nodes.getCredentials(node.id) as ServerCredentials | undefined;
    if (current && accounts.secrets !== undefined && current.secrets === accounts.secrets) {
      const secrets = withHashes(current.secrets, byPassword);
      if (secrets !== undefined) void RED.nodes.addCredentials(node.id, { ...current, secrets });
    }
    return { ...accounts, users };
  }

  function setup(node: ServerNode, def: ServerDef): void {
    let settings: ServerSettings | undefined;
    let base = '';
    let setupError: Error | undefined;
    let accounts: Merged | undefined;
    try {
      accounts = mergeAccounts(node, def);
      base = normaliseBasePath(def.basePath);
      settings = parseServerSettings(def as unknown as Record<string, unknown>);
      if (def.servedAs !== undefined && def.servedAs !== '' && def.servedAs !== 'object' && def.servedAs !== 'page') {
        throw new Error(`served objects must be "object" (one message each) or "page" (one message per GET answer), got ${JSON.stringify(def.servedAs)}`);
      }
    } catch (err) {
      setupError = err instanceof Error ? err : new Error(String(err));
    }

    // -- badge ----------------------------------------------------------------------------------
    const port = typeof RED.settings.uiPort === 'number' ? RED.settings.uiPort : undefined;
    const collectionCount = Array.isArray(def.collections) ? def.collections.length : 0;
    let pending: number | undefined;
    let running = false;
    let storeState: { state: StoreState; detail?: string } = { state: 'connecting' };
    let failure: string | undefined;
    let closed = false;
    const badge = new ThrottledStatus((s) => node.status(s), 250);
    const show = (): void => {
      if (closed) return; // requests finishing after close must not draw (nor start a timer)
      if (failure) return badge.set({ fill: 'red', shape: 'dot', text: shorten(`! ${failure}`) });
      if (storeState.state === 'error') return badge.set({ fill: 'red', shape: 'ring', text: shorten(`! store: ${storeState.detail ?? 'error'}`) });
      if (!running) return badge.set({ fill: 'yellow', shape: 'ring', text: 'taxii-server.status.starting' });
      badge.set({ fill: 'green', shape: 'dot', text: runningBadge(port, collectionCount, pending) });
    };
    const fail = (message: string): void => {
      failure = message;
      badge.flush();
      node.status({ fill: 'red', shape: 'dot', text: shorten(`! ${message}`) });
    };

    if (setupError) {
      fail(setupError.message);
      node.error(`taxii-server cannot start: ${setupError.message}`);
      return;
    }
    const app = RED.httpNode as unknown as { use(path: string, fn: Middleware): void } | undefined;
    if (!app || typeof app.use !== 'function') {
      fail('no HTTP server');
      node.error("taxii-server cannot start: Node-RED's HTTP node routes are disabled (settings.httpNodeRoot is false)");
      return;
    }
    const owner = (def.store ? RED.nodes.getNode(def.store) : null) as StoreOwner | null;
    if (!owner || !owner.shared) {
      node.status({ fill: 'red', shape: 'dot', text: 'taxii-server.status.no-store' });
      node.error('taxii-server cannot start: no store configured: select a sets-store in the node settings');
      return;
    }
    if (owner.configError) {
      fail(errorLabel(owner.configError));
      node.error(`taxii-server cannot start: store ${owner.describe()} cannot be used: ${owner.configError.message}`);
      return;
    }
    // declared before registering with the store: its listener runs at once when the store is already open
    let handle: ServerHandle | undefined;
    // -- counts ---------------------------------------------------------------------------------
    const changeListeners = new Set<() => void>();
    let counting = false;
    let countAgain = false;
    function refreshCounts(): void {
      if (counting) {
        countAgain = true;
        return;
      }
      if (storeState.state !== 'connected' || !handle) return;
      counting = true;
      handle.server
        .integrityCounts()
        .then(
          (c) => {
            pending = c.pending;
            show();
          },
          () => undefined, // the store's own state shows trouble
        )
        .finally(() => {
          counting = false;
          if (countAgain) {
            countAgain = false;
            refreshCounts();
          }
        });
    }
    const changed = (): void => {
      refreshCounts();
      for (const l of [...changeListeners]) {
        try {
          l();
        } catch (err) {
          node.warn(`status listener failed: ${messageOf(err)}`);
        }
      }
    };

    let conn: StoreConnection;
    try {
      conn = owner.shared.register(node, (state, detail) => {
        storeState = { state: state as StoreState, detail };
        show();
        if (state === 'connected') refreshCounts();
      });
    } catch (err) {
      fail(errorLabel(err));
      node.error(`taxii-server cannot start: store ${owner.describe()} cannot be used: ${messageOf(err)}`);
      return;
    }
    const cfg = settings as ServerSettings;
    const collections = cfg.collections.map((c) => c.id);
    const servedAsPage = def.servedAs === 'page';

    // -- server ---------------------------------------------------------------------------------
    let active = false;
    const inflight = new Set<Promise<void>>();
    const apiRoot = cfg.apiRoot;
    const rootPath = `/${apiRoot}`;
    // under its own base path the server answers every path (unknown ones with a TAXII 404, not
    // Express's HTML one); mounted at the root of httpNode it claims only its own resources
    const owns = (p: string): boolean => (base !== '' && base !== '/') || p === '/taxii2' || p.startsWith('/taxii2/') || p === rootPath || p.startsWith(rootPath + '/');

    const serve = (server: TaxiiServer, req: Request, res: Response): void => {
      const job = server.handle(req, res).finally(() => {
        inflight.delete(job);
      });
      inflight.add(job);
    };
    // mounted at once: a request arriving while the server starts (users being hashed) waits for it
    // instead of falling through to a 404
    let starting: Promise<void> = Promise.resolve();
    let liveServer: TaxiiServer | undefined;
    const mw: Middleware = (req, res, next) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const p = q < 0 ? url : url.slice(0, q);
      if (!active || !owns(p)) {
        next();
        return;
      }
      if (handle) {
        serve(handle.server, req, res);
        return;
      }
      starting.then(
        () => (active && handle ? serve(handle.server, req, res) : next()),
        () => next(),
      );
    };
    mw[LAYER_MARK] = node.id;

    const unmount = (): void => {
      active = false;
      const stack = routerStack(RED.httpNode);
      if (!stack) return;
      for (let i = stack.length - 1; i >= 0; i--) {
        if (stack[i].handle === mw) stack.splice(i, 1);
      }
    };

    const logServer = (level: 'debug' | 'info' | 'warn' | 'error', message: string, detail?: Record<string, unknown>): void => {
      if (level === 'error') {
        node.error(message);
        if (detail) node.debug(JSON.stringify(detail));
      } else if (level === 'warn') node.warn(message);
      else node.debug(message);
    };

    // without a configured secret the server keeps a generated one in the store (restarts and
    // other instances on the same store accept its next tokens)
    const secret = (node.credentials?.tokenSecret ?? '').trim() || undefined;

    app.use(base || '/', mw);
    active = true;
    starting = (async () => {
      const acc = await hashAccounts(node, accounts as Merged);
      if (closed) return;
      const config = await buildServerConfig(cfg, { userEntries: acc.users, apiKeyEntries: acc.apiKeys }, conn.store, {
        log: logServer,
        ...(secret !== undefined ? { nextTokenSecret: secret } : {}),
      });
      if (closed) return;
      const server: TaxiiServer = createTaxiiServer(config);
      server.on('object', (e) => {
        const sets = recordInfo(e.record, e.apiRoot, e.origin, { statusId: e.statusId, policy: e.policy, attempt: e.attempt, anchorDeadline: e.anchorDeadline });
        node.send([{ payload: e.record.object, collection: e.collection, sets }, null]);
        changed();
      });
      server.on('inquiry', (e) => {
        if (e.records.length === 0) return;
        if (servedAsPage) {
          // one message per page: verified in one batched read (verify-hash "whole"), settled record by record
          const records = e.records.map((r) => recordInfo(r, e.apiRoot, 'inquiry', { policy: e.policy }));
          const sets = { apiRoot: e.apiRoot, collection: e.collection, origin: 'inquiry', policy: e.policy, records };
          node.send([null, { payload: e.records.map((r) => r.object), collection: e.collection, sets }]);
          return;
        }
        const msgs: NodeMessage[] = e.records.map((r) => ({ payload: r.object, collection: e.collection, sets: recordInfo(r, e.apiRoot, 'inquiry', { policy: e.policy }) }));
        node.send([null, msgs]);
      });
      server.on('delete', () => changed());
      handle = {
        nodeId: node.id,
        server,
        store: conn.store,
        apiRoot,
        mountPath: `${base}/${apiRoot}`,
        collections,
        recordVerification: async (collection, id, version, verdict, reason, statusId, origin) => {
          const out = await server.recordVerification(collection, id, version, verdict, reason, statusId, origin);
          if (out.changed) changed();
          return out;
        },
        counts: () => server.integrityCounts(),
        policyOf: (collection) => server.policyOf(collection),
        onChange(listener: () => void): () => void {
          changeListeners.add(listener);
          return () => changeListeners.delete(listener);
        },
      };
      running = true;
      for (const other of all()) {
        if (other.nodeId === node.id) continue;
        if (other.mountPath === handle.mountPath) node.warn(`taxii-server ${other.nodeId} already serves ${handle.mountPath}/: the one deployed first answers`);
        const shared = other.collections.filter((c) => collections.includes(c));
        if (shared.length > 0) node.warn(`collection(s) ${shared.join(', ')} are also served by taxii-server ${other.nodeId}: integrity-status without a selected server settles them on one of the two`);
      }
      publish(handle);
      // records left pending (restart, lost message, ledger outage) come out again on output 1
      server.startRecovery();
      liveServer = server;
      const root = (typeof RED.settings.httpNodeRoot === 'string' ? RED.settings.httpNodeRoot : '/').replace(/\/+$/, '');
      node.log(`TAXII 2.1 discovery at ${root}${base}/taxii2/, API root ${root}${base}/${apiRoot}/ (${collections.length} collection(s))`);
      show();
      refreshCounts();
    })();
    starting.catch((err: unknown) => {
      unmount();
      if (closed) return;
      fail(errorLabel(err));
      node.error(`taxii-server cannot start: ${messageOf(err)}`);
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      unmount();
      badge.stop();
      liveServer?.close();
      void (async () => {
        await starting.catch(() => undefined);
        if (handle) withdraw(handle);
        changeListeners.clear();
        if (inflight.size > 0) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            Promise.allSettled([...inflight]),
            new Promise<void>((resolve) => {
              timer = setTimeout(resolve, DRAIN_MS);
            }),
          ]);
          if (timer) clearTimeout(timer);
        }
        await owner.shared.deregister(node);
      })().then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType<ServerNode, ServerDef, unknown, ServerCredentials>('taxii-server', TaxiiServerNode, {
    credentials: CREDENTIALS,
  });

  // The dialog's rows for an old flow's accounts (text credentials it cannot read): names and roles, no secret.
  const admin = RED.httpAdmin as unknown as { get?: (path: string, ...handlers: unknown[]) => void } | undefined;
  if (admin && typeof admin.get === 'function') {
    admin.get('/sets/taxii-server/:id/accounts', RED.auth.needsPermission('taxii-server.read'), (req: Request, res: Response) => {
      const id = String(req.params['id'] ?? '');
      const creds = RED.nodes.getCredentials(id) as ServerCredentials | undefined;
      try {
        res.json({ ok: true, ...legacyAccountNames(creds ?? {}) });
      } catch (err) {
        // the message names the line, never the secret on it
        res.json({ ok: false, message: messageOf(err), users: [], apiKeys: [] });
      }
    });
  }
};
