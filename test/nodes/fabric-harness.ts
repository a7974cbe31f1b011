/**
 * A Fabric network for the node tests: the in-process peer gateway emulator
 * (test/support/fabric-gateway.ts, the real sets-registry chaincode on FabricWorld) with TLS,
 * the registry initialised by an admin identity, and a writer identity granted through a Fabric CA
 * attribute principal (`Org1MSP#role=sets-writer`) for every collection. Gives the sets-ledger
 * node definition + credentials a user would enter for an identity, and a lib FabricLedger
 * (reader) for the tests' own checks.
 *
 * What the emulator does not check (signatures, MSP validation, endorsement policies) is listed in
 * its file header; these tests rely on none of it.
 */
import { startFabricGateway, type FabricGatewayHandle, type FabricTestIdentity } from '../support/fabric-gateway';
import { ANY_SCOPE, createLedger, type Ledger } from '../../lib/ledger/index';
import { helper, type FlowNode } from './helper';

export const WRITER_ROLE = 'sets-writer';

export interface FabricNet {
  gw: FabricGatewayHandle;
  admin: FabricTestIdentity;
  /** granted every collection through its CA attribute role=sets-writer */
  writer: FabricTestIdentity;
  /** same MSP, no grant */
  outsider: FabricTestIdentity;
  /** a lib ledger signing as the outsider (reads work for any member identity) */
  reader: Ledger;
  /** the sets-ledger node a user would configure for this network (credentials apart) */
  ledgerNode(id: string, extra?: Partial<FlowNode>): FlowNode;
  /** the sets-ledger node's credentials for an identity (key, certificate, TLS CA) */
  credentials(id: FabricTestIdentity): Record<string, string>;
  /** the n8n `setsFabricLedgerApi` credential data for an identity */
  credentialData(id: FabricTestIdentity, extra?: Record<string, string | number>): Record<string, string | number>;
  /** submit an admin transaction (GrantWriter, RevokeWriter, …) as the registry admin */
  admin$(fn: string, ...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startFabricNet(opts: { blockMs?: number } = {}): Promise<FabricNet> {
  const gw = await startFabricGateway({ tls: true, blockMs: opts.blockMs ?? 100 });
  const admin = gw.identity({ cn: 'sets-admin' });
  const writer = gw.identity({ cn: 'cti-producer', attrs: { role: WRITER_ROLE } });
  const outsider = gw.identity({ cn: 'someone-else' });
  const adminGw = gw.connect(admin);
  const contract = adminGw.getNetwork(gw.channel).getContract(gw.chaincode);
  const admin$ = async (fn: string, ...args: string[]): Promise<string> => Buffer.from(await contract.submitTransaction(fn, ...args)).toString('utf8');
  await admin$('Initialize', '');
  await admin$('GrantWriter', `${gw.peerMspId}#role=${WRITER_ROLE}`, ANY_SCOPE);
  const tlsCaCert = gw.tlsCaCert ?? '';
  const serverNameOverride = gw.serverNameOverride ?? '';
  const credentials = (id: FabricTestIdentity): Record<string, string> => ({ privateKey: id.privateKey, certificate: id.certificate, tlsCaCert });
  const reader = createLedger({
    kind: 'fabric',
    peerEndpoint: gw.endpoint,
    tlsCaCert,
    serverNameOverride,
    mspId: outsider.mspId,
    certificate: outsider.certificate,
    privateKey: outsider.privateKey,
    channel: gw.channel,
    chaincode: gw.chaincode,
  });
  return {
    gw,
    admin,
    writer,
    outsider,
    reader,
    ledgerNode: (id, extra = {}) => ({
      id,
      type: 'sets-ledger',
      name: '',
      kind: 'fabric',
      peerEndpoint: gw.endpoint,
      tlsMode: 'tls',
      serverNameOverride,
      mspId: gw.peerMspId,
      channel: gw.channel,
      chaincode: gw.chaincode,
      contractName: '',
      timeout: 10000,
      anchorDeadline: 60,
      coalesceMs: '',
      maxBatchSize: '',
      maxInFlight: '',
      ...extra,
    }),
    credentials,
    credentialData: (id, extra = {}) => ({
      peerEndpoint: gw.endpoint,
      tlsMode: 'tls',
      tlsCaCert,
      serverNameOverride,
      mspId: id.mspId,
      certificate: id.certificate,
      privateKey: id.privateKey,
      channel: gw.channel,
      chaincode: gw.chaincode,
      timeout: 10000,
      anchorDeadline: 60,
      ...extra,
    }),
    admin$,
    stop: async () => {
      await reader.close().catch(() => undefined);
      adminGw.close();
      await gw.stop();
    },
  };
}

/**
 * The arguments of every call of a Node method (status, warn, error) a node made since its flow
 * was loaded: the test helper spies on Node.prototype, so this sees the calls made while the flow
 * started, before a Recorder could listen.
 */
export function callsOf(id: string, method: 'status' | 'warn' | 'error'): unknown[][] {
  const node = helper.getNode(id);
  const proto = (helper as unknown as { _NodePrototype: Record<string, { getCalls(): Array<{ thisValue: unknown; args: unknown[] }> }> })._NodePrototype;
  return proto[method]
    .getCalls()
    .filter((c) => c.thisValue === node)
    .map((c) => c.args);
}

/** Every badge a node set since its flow was loaded. */
export function statusesOf(id: string): Array<{ fill?: string; text?: string }> {
  return callsOf(id, 'status').map((args) => args[0] as { fill?: string; text?: string });
}
