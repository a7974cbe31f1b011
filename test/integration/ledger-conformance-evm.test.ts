/**
 * The ledger conformance suite (ledger-conformance.ts) on the EVM adapter against a real hardhat
 * node (test/support/hardhat.ts via services.ts): writers are hardhat accounts, each registry a
 * freshly deployed SetsRegistry, outages a TCP proxy in front of the node.
 */
import * as net from 'node:net';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { startTcpProxy } from '../support/tcp-proxy';
import { bindIdentity, createLedger, grantWriter, LedgerError, revokeWriter, unbindIdentity, type EvmLedger, type Ledger } from '../../lib/ledger';
import { runLedgerConformance, type RegistryHandle, type WriterSpec } from './ledger-conformance';

/** the hardhat account of each writer name (accounts[0] is the registry admin) */
const ACCOUNT: Record<string, number> = { A: 1, B: 2, C: 3, D: 4, E: 5, F: 6, G: 7, R: 8, X: 9 };

let c: ChainHandle | undefined;
const open: Ledger[] = [];
/** the registry address behind each handle */
const addressOf = new Map<RegistryHandle, string>();

function idx(who: string): number {
  const i = ACCOUNT[who];
  if (i === undefined) throw new Error(`no hardhat account for writer ${who}`);
  return i;
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function evmLedger(rpcUrl: string, address: string, i: number | undefined, extra: Record<string, unknown> = {}): EvmLedger {
  const ch = c as ChainHandle;
  const l = createLedger({
    kind: 'evm',
    rpcUrl,
    chainId: ch.chainId,
    address,
    privateKey: i === undefined ? undefined : ch.accounts[i].privateKey,
    waitPollMs: 100,
    healthCheckMs: 0,
    ...extra,
  }) as EvmLedger;
  open.push(l);
  return l;
}

runLedgerConformance({
  name: 'EVM (hardhat)',
  txPattern: /^0x[0-9a-f]{64}$/,
  recordsHaveBlocks: true,
  async registry(writers: WriterSpec[], opts = {}): Promise<RegistryHandle> {
    c ??= await chain();
    const ch = c;
    const admin = { rpcUrl: ch.rpcUrl, chainId: ch.chainId, privateKey: ch.accounts[0].privateKey };
    const address = await ch.deployRegistry({
      writers: writers.map((w) => (w.scopes ? { account: ch.accounts[idx(w.who)].address, scopes: w.scopes } : ch.accounts[idx(w.who)].address)),
    });
    if (opts.blockMs) await ch.setIntervalMining(opts.blockMs);
    const addr = (who: string) => ch.accounts[idx(who)].address;
    const reg: RegistryHandle = {
      ledger: (who, extra) => evmLedger(ch.rpcUrl, address, idx(who), extra),
      writerOf: addr,
      grant: async (who, scope) => void (await grantWriter(admin, address, addr(who), scope)),
      revoke: async (who, scope) => void (await revokeWriter(admin, address, addr(who), scope)),
      bind: async (id, who) => void (await bindIdentity(admin, address, id, addr(who))),
      unbind: async (id, who) => void (await unbindIdentity(admin, address, id, addr(who))),
      sent: async (who) => Number(BigInt(String(await ch.rpc('eth_getTransactionCount', [addr(who), 'latest'])))),
      async outage(who, extra) {
        const proxy = await startTcpProxy(Number(new URL(ch.rpcUrl).port));
        const ledger = evmLedger(`http://127.0.0.1:${proxy.port}`, address, idx(who), extra);
        return {
          ledger,
          down: () => proxy.cut(),
          up: () => proxy.restore(),
          close: async () => {
            await ledger.close();
            await proxy.close();
          },
        };
      },
    };
    addressOf.set(reg, address);
    return reg;
  },
  readOnly(reg) {
    const ch = c as ChainHandle;
    try {
      return evmLedger(ch.rpcUrl, addressOf.get(reg) as string, undefined);
    } catch (e) {
      if (e instanceof LedgerError) return e;
      throw e;
    }
  },
  async unreachable(reg, who) {
    return evmLedger(`http://127.0.0.1:${await closedPort()}`, addressOf.get(reg) as string, idx(who), { requestTimeoutMs: 1500 });
  },
  idle(l) {
    const s = (l as EvmLedger).stats();
    return { waiters: s.waiters, listeners: s.headListeners };
  },
  async afterEach() {
    await c?.setIntervalMining(0);
    await Promise.all(open.splice(0).map((l) => l.close()));
  },
  async after() {
    await Promise.all(open.splice(0).map((l) => l.close()));
  },
});
