/**
 * Connection tests: one short, bounded check per kind of service, which never throws and names
 * the reason when it fails. What a Node-RED config node's "test" or an n8n credential test shows:
 * "connected to RabbitMQ 3.10.8", "wrong chain: … serves 1337, the configuration expects 31337",
 * "401 Unauthorized from https://…/taxii2/", "directory … is locked by another process".
 *
 * Each probe opens its own connection and closes it before answering, so a test leaves no socket
 * or timer behind, and never touches a connection the nodes share.
 */
import { ANY_SCOPE, createLedger, type LedgerConfig } from '../ledger/index';
import { EvmLedger } from '../ledger/evm';
import type { FabricLedger } from '../ledger/fabric';
import { probeAmqp, type AmqpBusConfig } from '../bus/amqp';
import { acquireStore } from '../store/shared';
import { messageOf } from './errors';
import { createTaxiiConnection, type TaxiiSecrets, type TaxiiSettings } from './taxii-connection';
import { redactUri, storeConfig, type StoreSecrets, type StoreSettings } from './server-store';

export interface ProbeResult {
  ok: boolean;
  /** what was reached (ok) or why it failed — never a secret */
  message: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** `p`, or a failure naming `what` after `ms`. */
async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/**
 * EVM: the ledger answers with the configured chain id, the registry contract is deployed and
 * readable, and — with a private key — where that account may anchor: every collection, N
 * collection scopes, or nothing (then the probe fails: anchoring could not work).
 * Fabric: the peer's gateway answers (TLS, channel, chaincode) a read signed by the identity, and
 * where that identity may anchor (grants to its MSP, its certificate attributes or itself).
 */
export async function probeLedger(cfg: LedgerConfig, opts: { timeoutMs?: number } = {}): Promise<ProbeResult> {
  const ms = opts.timeoutMs ?? cfg.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  let ledger: ReturnType<typeof createLedger> | undefined;
  try {
    if (cfg.kind === 'fabric') {
      // probes answer once: the adapter's own deadlines stay within the probe's
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- the Fabric client loads only when a Fabric ledger is probed
      const { FabricLedger: Fabric } = require('../ledger/fabric') as { FabricLedger: typeof FabricLedger };
      const fabric = new Fabric({ ...cfg, healthCheckMs: 0, requestTimeoutMs: Math.min(cfg.requestTimeoutMs ?? ms, ms) });
      ledger = fabric;
      const where = `chaincode ${fabric.chaincode} on channel ${fabric.channel} at ${fabric.peerEndpoint}`;
      await bounded(fabric.lookup(ANY_SCOPE, '0x' + '0'.repeat(64)), ms + 1000, `Fabric peer ${fabric.peerEndpoint}`);
      // reads work before Initialize, anchors do not: say so here rather than at the first anchor
      await bounded(fabric.registryAdmin(), ms + 1000, `Fabric peer ${fabric.peerEndpoint}`);
      const grants = await bounded(fabric.writerGrants(), ms + 1000, `Fabric peer ${fabric.peerEndpoint}`);
      const who = `${where} as ${grants.account}`;
      if (grants.anyScope) return { ok: true, message: `connected: ${who}; granted every collection` };
      if (grants.scopes > 0) return { ok: true, message: `connected: ${who}; granted ${grants.scopes} collection(s)` };
      return {
        ok: false,
        message: `connected to ${who}, but this identity is not granted any collection: ask the chaincode admin (GrantWriter(<principal>, collectionScope(collection)) with the principal ${fabric.mspId}, ${fabric.mspId}#<attribute>=<value> or ${grants.account})`,
      };
    }
    ledger = createLedger({ ...cfg, healthCheckMs: 0 });
    await bounded(ledger.lookup(ANY_SCOPE, '0x' + '0'.repeat(64)), ms, `ledger ${cfg.rpcUrl}`);
    const where = `registry ${cfg.address} on chain ${String(cfg.chainId)} at ${cfg.rpcUrl}`;
    if (!(ledger instanceof EvmLedger)) return { ok: true, message: `connected: ${where}` };
    const grants = await bounded(ledger.writerGrants(), ms, `ledger ${cfg.rpcUrl}`);
    if (!grants) return { ok: true, message: `connected (read-only: no private key): ${where}` };
    if (grants.anyScope) return { ok: true, message: `connected: ${where}; account ${grants.account} is granted every collection` };
    if (grants.scopes > 0) {
      return { ok: true, message: `connected: ${where}; account ${grants.account} is granted ${grants.scopes} collection(s)` };
    }
    return {
      ok: false,
      message: `connected to ${where}, but account ${grants.account} is not granted any collection: ask the registry admin (grantWriter(account, collectionScope(collection)))`,
    };
  } catch (err) {
    return { ok: false, message: messageOf(err) };
  } finally {
    await ledger?.close().catch(() => undefined);
  }
}

/** The broker accepts the credentials and the virtual host. */
export async function probeBroker(cfg: AmqpBusConfig, opts: { timeoutMs?: number } = {}): Promise<ProbeResult> {
  const ms = opts.timeoutMs ?? cfg.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  try {
    const { server } = await bounded(probeAmqp({ ...cfg, connectTimeoutMs: ms }), ms + 2000, 'AMQP broker');
    return { ok: true, message: `connected to ${server}${cfg.vhost ? ` (vhost ${cfg.vhost})` : ''}` };
  } catch (err) {
    return { ok: false, message: messageOf(err) };
  }
}

/**
 * The TAXII server answers the discovery or API-root URL with these credentials (an OAuth2
 * token is fetched first), and lists the collections this user can see.
 */
export async function probeTaxii(settings: TaxiiSettings, secrets: TaxiiSecrets): Promise<ProbeResult> {
  let conn: ReturnType<typeof createTaxiiConnection> | undefined;
  try {
    conn = createTaxiiConnection(settings, secrets);
    const ms = (settings.timeoutMs ?? 30_000) + 2000;
    const cols = await bounded(conn.client.collections(), ms, `TAXII ${settings.url}`);
    return { ok: true, message: `connected to ${settings.url} (${conn.auth}): ${cols.length} collection(s) visible` };
  } catch (err) {
    return { ok: false, message: messageOf(err) };
  } finally {
    conn?.close();
  }
}

/**
 * The store opens (an embedded directory that is writable and not locked by another process —
 * or already open in this one, which is fine; a MongoDB server that accepts the URI).
 */
export async function probeStore(settings: StoreSettings, secrets: StoreSecrets, opts: { timeoutMs?: number } = {}): Promise<ProbeResult> {
  const what = settings.kind === 'mongodb' ? `MongoDB ${redactUri(secrets.uri ?? '')} db ${settings.db ?? ''}` : `embedded store ${settings.dir ?? ''}`;
  try {
    const config = storeConfig(settings, secrets);
    const lease = await bounded(acquireStore(config), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, what);
    try {
      const c = await lease.store.counts();
      return { ok: true, message: `opened ${what}: ${c.pending + c.finalized + c.invalid} record(s)` };
    } finally {
      await lease.release();
    }
  } catch (err) {
    return { ok: false, message: `${what}: ${messageOf(err)}` };
  }
}
