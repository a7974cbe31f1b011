/**
 * The ledger conformance suite (ledger-conformance.ts) on the Fabric adapter against the
 * in-process Fabric Gateway emulator (test/support/fabric-gateway.ts), which runs the real
 * sets-registry chaincode and answers the unmodified fabric-gateway client like a 2.5 peer. It
 * checks no signatures and no endorsement policies (see its header). Writers are throwaway X.509
 * identities of Org1MSP, each granted as an exact identity principal (`mspId::subject`); every
 * registry is a fresh emulated peer over TLS (server name override), outages its pause()/resume().
 */
import * as net from 'node:net';
import { startFabricGateway, type FabricGatewayHandle, type FabricTestIdentity } from '../support/fabric-gateway';
import { ANY_SCOPE, LedgerError, type Ledger } from '../../lib/ledger';
import { FabricLedger } from '../../lib/ledger/fabric';
import type { Contract, Gateway } from '@hyperledger/fabric-gateway';
import { runLedgerConformance, type RegistryHandle, type WriterSpec } from './ledger-conformance';

const open: Ledger[] = [];
const peers: Array<{ gw: FabricGatewayHandle; admin: Gateway }> = [];
const peerOf = new Map<RegistryHandle, { gw: FabricGatewayHandle; ids: (who: string) => FabricTestIdentity }>();

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function fabricLedger(gw: FabricGatewayHandle, id: FabricTestIdentity, extra: Record<string, unknown> = {}): FabricLedger {
  const l = new FabricLedger({
    peerEndpoint: gw.endpoint,
    tlsCaCert: gw.tlsCaCert,
    serverNameOverride: gw.serverNameOverride,
    mspId: id.mspId,
    certificate: id.certificate,
    privateKey: id.privateKey,
    channel: gw.channel,
    healthCheckMs: 0,
    pollMs: 200,
    ...extra,
  });
  open.push(l);
  return l;
}

runLedgerConformance({
  name: 'Fabric (gateway emulator)',
  txPattern: /^[0-9a-f]{64}$/,
  recordsHaveBlocks: false,
  async registry(writers: WriterSpec[], opts = {}): Promise<RegistryHandle> {
    const gw = await startFabricGateway({ tls: true, blockMs: opts.blockMs || 100 });
    const adminId = gw.identity({ cn: 'registry-admin' });
    const admin = gw.connect(adminId);
    peers.push({ gw, admin });
    const contract: Contract = admin.getNetwork(gw.channel).getContract(gw.chaincode);
    await contract.submitTransaction('Initialize', '');
    const idents = new Map<string, FabricTestIdentity>();
    const ids = (who: string): FabricTestIdentity => {
      let id = idents.get(who);
      if (!id) idents.set(who, (id = gw.identity({ cn: `writer-${who.toLowerCase()}` })));
      return id;
    };
    const submit = async (fn: string, ...args: string[]) => void (await contract.submitTransaction(fn, ...args));
    await Promise.all(writers.flatMap((w) => (w.scopes ?? [ANY_SCOPE]).map((s) => submit('GrantWriter', ids(w.who).writer, s))));
    const reg: RegistryHandle = {
      ledger: (who, extra) => fabricLedger(gw, ids(who), extra),
      writerOf: (who) => ids(who).writer,
      grant: (who, scope) => submit('GrantWriter', ids(who).writer, scope),
      revoke: (who, scope) => submit('RevokeWriter', ids(who).writer, scope),
      bind: (id, who) => submit('BindIdentity', id, ids(who).writer),
      unbind: (id, who) => submit('UnbindIdentity', id, ids(who).writer),
      // one peer, admin calls never run while a test counts: every transaction ordered so far
      sent: () => Promise.resolve(gw.stats.submitted),
      outage(who, extra) {
        const ledger = fabricLedger(gw, ids(who), extra);
        return Promise.resolve({ ledger, down: () => gw.pause(), up: () => gw.resume(), close: () => ledger.close() });
      },
    };
    peerOf.set(reg, { gw, ids });
    return reg;
  },
  readOnly(reg) {
    const { gw, ids } = peerOf.get(reg) as { gw: FabricGatewayHandle; ids: (who: string) => FabricTestIdentity };
    try {
      return fabricLedger(gw, ids('R'), { privateKey: undefined });
    } catch (e) {
      if (e instanceof LedgerError) return e;
      throw e;
    }
  },
  async unreachable(reg, who) {
    const { gw, ids } = peerOf.get(reg) as { gw: FabricGatewayHandle; ids: (who: string) => FabricTestIdentity };
    const id = ids(who);
    const l = new FabricLedger({ peerEndpoint: `127.0.0.1:${await closedPort()}`, insecure: true, mspId: id.mspId, certificate: id.certificate, privateKey: id.privateKey, channel: gw.channel, requestTimeoutMs: 1500, healthCheckMs: 0 });
    open.push(l);
    return l;
  },
  idle(l) {
    const s = (l as FabricLedger).stats();
    return { waiters: s.waiters, listeners: s.streams };
  },
  async afterEach() {
    await Promise.all(open.splice(0).map((l) => l.close()));
  },
  async after() {
    await Promise.all(open.splice(0).map((l) => l.close()));
    for (const p of peers.splice(0)) {
      p.admin.close();
      await p.gw.stop();
    }
  },
});
