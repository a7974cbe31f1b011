/**
 * EVM ledger adapter and SetsRegistry contract against a real hardhat JSON-RPC node
 * (test/support/hardhat.ts, shared per mocha process through services.ts).
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Interface } from 'ethers';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import {
  createLedger,
  decodeRevert,
  deployRegistry,
  grantWriter,
  LedgerError,
  REGISTRY_ABI,
  registryInterface,
  revokeWriter,
  transferAdmin,
  type EvmLedger,
  type EvmLedgerConfig,
} from '../../lib/ledger';
import { verifyObject } from '../../lib/verify';
import { hashObject, keyForObject } from '../../lib/digest';
import type { StixObject } from '../../lib/stix';

const r32 = () => '0x' + randomBytes(32).toString('hex');
const ZERO32 = '0x' + '0'.repeat(64);

/** A TCP proxy to the node whose connections the test can cut, and which can go away and come back. */
class CuttableProxy {
  private server: net.Server | null = null;
  private sockets = new Set<net.Socket>();
  port = 0;
  constructor(private readonly target: number) {}
  async start(port = 0): Promise<this> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this;
  }
  cut(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
  async stop(): Promise<void> {
    const srv = this.server;
    this.server = null;
    this.cut();
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }
}

function isLedgerError(code: string) {
  return (e: unknown) => {
    assert.ok(e instanceof LedgerError, `expected a LedgerError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

describe('EVM ledger (hardhat)', function () {
  this.timeout(60_000);
  let c: ChainHandle;
  let registry: string;
  const open: EvmLedger[] = [];

  /** a ledger on the test chain signing with accounts[i] (undefined = read-only) */
  function ledger(i: number | undefined, extra: Partial<EvmLedgerConfig> = {}, at = registry): EvmLedger {
    const l = createLedger({
      kind: 'evm',
      rpcUrl: c.rpcUrl,
      chainId: c.chainId,
      address: at,
      privateKey: i === undefined ? undefined : c.accounts[i].privateKey,
      waitPollMs: 100,
      healthCheckMs: 0,
      ...extra,
    }) as EvmLedger;
    open.push(l);
    return l;
  }

  const nonce = async (i: number, tag: string) => Number(BigInt(String(await c.rpc('eth_getTransactionCount', [c.accounts[i].address, tag]))));
  const admin = () => ({ rpcUrl: c.rpcUrl, chainId: c.chainId, privateKey: c.accounts[0].privateKey });

  /** eth_call of a registry function from `from`; returns the decoded revert, or 'ok' */
  async function simulate(from: string, at: string, fn: string, args: unknown[]): Promise<string> {
    try {
      await c.rpc('eth_call', [{ from, to: at, data: registryInterface.encodeFunctionData(fn, args) }, 'latest']);
      return 'ok';
    } catch (e) {
      const m = /return data: (0x[0-9a-f]+)/i.exec(String((e as Error).message));
      return decodeRevert(m?.[1]);
    }
  }

  before(async function () {
    this.timeout(120_000);
    c = await chain();
    registry = await c.deployRegistry();
  });

  afterEach(async () => {
    await c.setIntervalMining(0);
    await Promise.all(open.splice(0).map((l) => l.close()));
  });

  describe('SetsRegistry contract', () => {
    it('the adapter ABI matches the compiled artifact', () => {
      const file = path.join(__dirname, '../../contracts/evm/SetsRegistry.json');
      const art = JSON.parse(fs.readFileSync(file, 'utf8')) as { abi: unknown[]; compiler: { evmVersion: string } };
      const fromArtifact = new Interface(art.abi as never[]).format().slice().sort();
      const fromAdapter = new Interface(REGISTRY_ABI).format().slice().sort();
      assert.deepEqual(fromAdapter, fromArtifact);
      assert.equal(art.compiler.evmVersion, 'paris');
    });

    it('is write-once, rejects the zero hash and non-writers, and reads zeros when absent', async () => {
      const w = c.accounts[1].address;
      const l = ledger(1);
      const k = r32();
      const h = r32();
      assert.equal(await simulate(w, registry, 'writeCTIHash', [k, ZERO32]), `ZeroHash(${k})`);
      assert.equal(await simulate(c.accounts[6].address, registry, 'writeCTIHash', [k, h]), `NotWriter(${c.accounts[6].address})`);
      const absent = registryInterface.decodeFunctionResult(
        'readCTIHash',
        String(await c.rpc('eth_call', [{ to: registry, data: registryInterface.encodeFunctionData('readCTIHash', [k]) }, 'latest'])),
      );
      assert.deepEqual([absent[0], absent[1], absent[2]], [ZERO32, '0x0000000000000000000000000000000000000000', 0n]);
      await l.anchor(k, h);
      // a second write of the key reverts, with the same hash too
      assert.equal(await simulate(w, registry, 'writeCTIHash', [k, h]), `KeyTaken(${k})`);
      assert.equal(await simulate(w, registry, 'writeCTIHash', [k, r32()]), `KeyTaken(${k})`);
    });

    it('batch: length mismatch reverts, a different hash reverts the whole batch, identical hashes are skipped', async () => {
      const w = c.accounts[1].address;
      const l = ledger(1);
      const k = r32();
      const h = r32();
      await l.anchor(k, h);
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[r32()], []]), 'LengthMismatch(1, 0)');
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[r32(), k], [r32(), r32()]]), `KeyTaken(${k})`);
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[r32(), k], [r32(), h]]), 'ok');
    });
  });

  describe('anchor / lookup', () => {
    it('lookup: null when absent, the record when present', async () => {
      const l = ledger(1);
      const k = r32();
      const h = r32();
      assert.equal(await l.lookup(k), null);
      const rc = await l.anchor(k, h);
      assert.equal(rc.key, k);
      assert.equal(rc.hash, h);
      assert.match(rc.tx, /^0x[0-9a-f]{64}$/);
      assert.ok(rc.block > 0);
      assert.equal(rc.existing, undefined);
      const rec = await l.lookup(k);
      assert.ok(rec);
      assert.equal(rec.hash, h);
      assert.equal(rec.writer, c.accounts[1].address);
      const block = (await c.rpc('eth_getBlockByNumber', ['0x' + rc.block.toString(16), false])) as { timestamp: string };
      assert.equal(rec.timestamp, Number(BigInt(block.timestamp)));
      // keys and hashes are accepted in any hex case and reported lower-case
      assert.equal((await l.lookup(k.toUpperCase().replace('0X', '0x')))?.hash, h);
    });

    it('same key and hash again -> existing (nothing sent); a different hash -> KEY_TAKEN (nothing sent)', async () => {
      const l = ledger(1);
      const k = r32();
      const h = r32();
      const first = await l.anchor(k, h);
      const before = await nonce(1, 'latest');
      const again = await l.anchor(k, h);
      assert.deepEqual(again, { ...first, existing: true });
      await assert.rejects(l.anchor(k, r32()), (e: unknown) => isLedgerError('KEY_TAKEN')(e) && (e as LedgerError).key === k);
      assert.equal(await nonce(1, 'latest'), before);
    });

    it('anchorMany writes a batch in one transaction and reports existing entries', async () => {
      const l = ledger(1);
      const old = { key: r32(), hash: r32() };
      const oldRc = await l.anchor(old.key, old.hash);
      const fresh = Array.from({ length: 5 }, () => ({ key: r32(), hash: r32() }));
      const rcs = await l.anchorMany([fresh[0], old, ...fresh.slice(1), fresh[2]]);
      assert.equal(rcs.length, 7);
      assert.deepEqual(rcs[1], { ...oldRc, existing: true });
      const txs = new Set([0, 2, 3, 4, 5, 6].map((i) => rcs[i].tx));
      assert.equal(txs.size, 1, 'one transaction for the batch');
      assert.deepEqual(rcs[6], rcs[3], 'a duplicate entry gets the same receipt');
      for (const e of fresh) assert.equal((await l.lookup(e.key))?.hash, e.hash);
    });

    it('anchorMany with a key holding a different hash rejects KEY_TAKEN and writes nothing', async () => {
      const l = ledger(1);
      const taken = { key: r32(), hash: r32() };
      await l.anchor(taken.key, taken.hash);
      const fresh = [{ key: r32(), hash: r32() }, { key: r32(), hash: r32() }];
      await assert.rejects(l.anchorMany([fresh[0], { key: taken.key, hash: r32() }, fresh[1]]), isLedgerError('KEY_TAKEN'));
      for (const e of fresh) assert.equal(await l.lookup(e.key), null);
      await assert.rejects(l.anchorMany([{ key: fresh[0].key, hash: r32() }, { key: fresh[0].key, hash: r32() }]), isLedgerError('BAD_INPUT'));
      assert.deepEqual(await l.anchorMany([]), []);
    });

    it('rejects malformed keys and hashes with BAD_INPUT', async () => {
      const l = ledger(1);
      for (const bad of ['', '0x12', r32().slice(2), r32() + '00', '0x' + 'g'.repeat(64)]) {
        await assert.rejects(l.anchor(bad, r32()), isLedgerError('BAD_INPUT'));
        await assert.rejects(l.anchor(r32(), bad), isLedgerError('BAD_INPUT'));
        await assert.rejects(l.lookup(bad), isLedgerError('BAD_INPUT'));
      }
      await assert.rejects(l.anchor(r32(), ZERO32), isLedgerError('BAD_INPUT'));
      await assert.rejects(l.anchorMany([{ key: r32(), hash: 'nope' }]), isLedgerError('BAD_INPUT'));
    });

    it('a read-only ledger looks up but rejects anchors with BAD_CONFIG', async () => {
      const l = ledger(undefined);
      assert.equal(await l.lookup(r32()), null);
      await assert.rejects(l.anchor(r32(), r32()), (e: unknown) => isLedgerError('BAD_CONFIG')(e) && /no signing key/.test((e as Error).message));
    });

    it('ws:// as the RPC URL: anchors and lookups over one WebSocket', async () => {
      const l = ledger(1, { rpcUrl: c.wsUrl });
      const k = r32();
      const h = r32();
      const rcs = await Promise.all([l.anchor(k, h), ...Array.from({ length: 20 }, () => l.anchor(r32(), r32()))]);
      assert.equal(rcs.length, 21);
      assert.equal((await l.lookup(k))?.hash, h);
      assert.equal(l.state, 'connected');
    });
  });

  describe('roles', () => {
    let reg: string;
    before(async () => {
      reg = await c.deployRegistry({ writers: [c.accounts[1].address, c.accounts[2].address] });
    });

    it('an unauthorised account -> NOT_AUTHORISED, without sending a transaction', async () => {
      const l = ledger(6, {}, reg);
      const before = await nonce(6, 'latest');
      await assert.rejects(l.anchor(r32(), r32()), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && /grantWriter/.test((e as Error).message));
      await assert.rejects(l.anchorMany([{ key: r32(), hash: r32() }]), isLedgerError('NOT_AUTHORISED'));
      assert.equal(await nonce(6, 'latest'), before);
    });

    it('revokeWriter stops a writer, also one whose transaction is already on its way', async () => {
      const l = ledger(2, {}, reg);
      const k = r32();
      await l.anchor(k, r32()); // the writer check is now cached for a few seconds
      await revokeWriter(admin(), reg, c.accounts[2].address);
      // sent (cached check) and reverted on chain: the revert is explained
      await assert.rejects(l.anchor(r32(), r32()), isLedgerError('NOT_AUTHORISED'));
      // a fresh ledger checks before sending
      await assert.rejects(ledger(2, {}, reg).anchor(r32(), r32()), isLedgerError('NOT_AUTHORISED'));
      // what it anchored stays
      assert.ok(await l.lookup(k));
    });

    it('only the admin grants; grantWriter enables a new writer; transferAdmin moves the role', async () => {
      const notAdmin = { ...admin(), privateKey: c.accounts[1].privateKey };
      await assert.rejects(grantWriter(notAdmin, reg, c.accounts[7].address), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && /NotAdmin/.test((e as Error).message));
      await grantWriter(admin(), reg, c.accounts[7].address);
      const l = ledger(7, {}, reg);
      const k = r32();
      await l.anchor(k, r32());
      assert.equal((await l.lookup(k))?.writer, c.accounts[7].address);
      await transferAdmin(admin(), reg, c.accounts[8].address);
      await assert.rejects(grantWriter(admin(), reg, c.accounts[9].address), isLedgerError('NOT_AUTHORISED'));
      await grantWriter({ ...admin(), privateKey: c.accounts[8].privateKey }, reg, c.accounts[9].address);
    });
  });

  describe('waitForAnchor', () => {
    it('resolves at once when already anchored', async () => {
      const l = ledger(1);
      const k = r32();
      const h = r32();
      await l.anchor(k, h);
      assert.equal((await l.waitForAnchor(k, 5000))?.hash, h);
      assert.equal((await l.waitForAnchor(k, 0))?.hash, h);
      assert.deepEqual(l.stats(), { waiters: 0, headListeners: 0, queued: 0, inFlight: 0 });
    });

    it('resolves when the anchor is mined later (1 s interval mining), for every waiter of the key', async () => {
      await c.setIntervalMining(1000);
      const reader = ledger(undefined);
      const writer = ledger(3);
      const k = r32();
      const h = r32();
      const waits = [reader.waitForAnchor(k, 15_000), reader.waitForAnchor(k, 15_000), reader.waitForAnchor(r32(), 15_000)];
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(reader.stats().waiters, 3);
      const rc = await writer.anchor(k, h);
      const [a, b] = await Promise.all(waits.slice(0, 2));
      assert.equal(a?.hash, h);
      assert.equal(b?.writer, c.accounts[3].address);
      assert.ok(rc.block > 0);
      assert.equal(reader.stats().waiters, 1, 'the waiter of the other key still waits');
      await reader.close();
      await assert.rejects(waits[2], isLedgerError('TIMEOUT'));
      assert.deepEqual(reader.stats(), { waiters: 0, headListeners: 0, queued: 0, inFlight: 0 });
    });

    it('over a WebSocket newHeads subscription', async () => {
      await c.setIntervalMining(1000);
      const reader = ledger(undefined, { wsUrl: c.wsUrl, waitPollMs: 5000 });
      const k = r32();
      const h = r32();
      const w = reader.waitForAnchor(k, 15_000);
      await ledger(3).anchor(k, h);
      assert.equal((await w)?.hash, h);
    });

    it('falls back to polling when the WebSocket cannot connect', async () => {
      await c.setIntervalMining(1000);
      const srv = net.createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      const port = (srv.address() as net.AddressInfo).port;
      await new Promise<void>((r) => srv.close(() => r()));
      const reader = ledger(undefined, { wsUrl: `ws://127.0.0.1:${port}`, requestTimeoutMs: 1000 });
      const k = r32();
      const h = r32();
      const w = reader.waitForAnchor(k, 15_000);
      await ledger(3).anchor(k, h);
      assert.equal((await w)?.hash, h);
    });

    it('survives a dropped WebSocket (heads resume, waiters still resolve)', async () => {
      await c.setIntervalMining(1000);
      const proxy = await new CuttableProxy(Number(new URL(c.rpcUrl).port)).start();
      try {
        const reader = ledger(undefined, { wsUrl: `ws://127.0.0.1:${proxy.port}`, waitPollMs: 200 });
        const first = r32();
        const w1 = reader.waitForAnchor(first, 15_000);
        await ledger(3).anchor(first, r32());
        assert.ok(await w1);
        proxy.cut();
        const k = r32();
        const h = r32();
        const w2 = reader.waitForAnchor(k, 15_000);
        await ledger(3).anchor(k, h);
        assert.equal((await w2)?.hash, h);
      } finally {
        await proxy.stop();
      }
    });

    it('times out with null and leaves no listener behind', async () => {
      const l = ledger(undefined);
      const results = await Promise.all(Array.from({ length: 20 }, () => l.waitForAnchor(r32(), 300)));
      assert.deepEqual(results, Array(20).fill(null));
      assert.deepEqual(l.stats(), { waiters: 0, headListeners: 0, queued: 0, inFlight: 0 });
    });
  });

  describe('pipelined send queue', () => {
    let reg: string;
    before(async () => {
      reg = await c.deployRegistry({ writers: [c.accounts[4].address, c.accounts[5].address] });
    });

    async function landAll(l: EvmLedger, mode: string, maxInFlight?: number): Promise<void> {
      const n = 500;
      const items = Array.from({ length: n }, () => ({ key: r32(), hash: r32() }));
      let t0 = Date.now();
      const rcs = await Promise.all(items.map((e) => l.anchor(e.key, e.hash)));
      const dt = Date.now() - t0;
      assert.equal(new Set(rcs.map((r) => r.tx)).size, n);
      t0 = Date.now();
      const batch = Array.from({ length: n }, () => ({ key: r32(), hash: r32() }));
      const brcs = await l.anchorMany(batch);
      const dtBatch = Date.now() - t0;
      const lookedUp = await Promise.all([...items, ...batch].map((e) => l.lookup(e.key)));
      lookedUp.forEach((rec, i) => assert.equal(rec?.hash, [...items, ...batch][i].hash));
      const blocks = new Set(rcs.map((r) => r.block)).size;
      console.log(
        `      ${mode}${maxInFlight ? `, maxInFlight ${maxInFlight}` : ''}: 500 concurrent anchor() in ${dt} ms = ` +
          `${((n * 1000) / dt).toFixed(0)} tx/s over ${blocks} blocks; anchorMany(500) in ${dtBatch} ms ` +
          `(${new Set(brcs.map((r) => r.tx)).size} transactions)`,
      );
      assert.deepEqual(l.stats(), { waiters: 0, headListeners: 0, queued: 0, inFlight: 0 });
    }

    it('500 concurrent anchor() calls and anchorMany(500) all land (automine)', async function () {
      await landAll(ledger(4, {}, reg), 'automine');
    });

    it('500 concurrent anchor() calls and anchorMany(500) all land (1 s interval mining)', async function () {
      await c.setIntervalMining(1000);
      await landAll(ledger(4, { maxInFlight: 512 }, reg), '1 s blocks', 512);
    });

    it('a send the node refuses mid-pipeline leaves no nonce gap', async () => {
      await c.setIntervalMining(1000);
      // the batch transaction's gas limit is below its intrinsic gas: the node refuses it at send
      const l = ledger(5, { batchGasBase: 21_000, gasPerBatchItem: 1 }, reg);
      const first = Array.from({ length: 20 }, () => l.anchor(r32(), r32()));
      for (let i = 0; i < 200 && l.stats().inFlight < 20; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(l.stats().inFlight, 20, 'the first 20 are sent and wait in the mempool');
      const bad = Array.from({ length: 30 }, () => ({ key: r32(), hash: r32() }));
      const refused = l.anchorMany(bad);
      const after = Array.from({ length: 20 }, () => l.anchor(r32(), r32()));
      await assert.rejects(refused, (e: unknown) => isLedgerError('TX_FAILED')(e) && /refused/.test((e as Error).message));
      const rcs = await Promise.all([...first, ...after]);
      assert.equal(rcs.length, 40);
      for (const e of bad) assert.equal(await l.lookup(e.key), null);
      assert.equal(await nonce(5, 'pending'), await nonce(5, 'latest'), 'nothing stuck behind a gap');
    });

    it('a transaction reverting mid-pipeline (automine reports it as a send error) leaves no nonce gap', async () => {
      const l = ledger(5, {}, reg);
      const k = r32();
      const calls = [
        ...Array.from({ length: 10 }, () => l.anchor(r32(), r32())),
        l.anchor(k, r32()),
        l.anchor(k, r32()), // same key, other hash: both pass the pre-check, the later one reverts
        ...Array.from({ length: 10 }, () => l.anchor(r32(), r32())),
      ];
      const out = await Promise.allSettled(calls);
      const pair = out.slice(10, 12);
      assert.equal(pair.filter((o) => o.status === 'fulfilled').length, 1);
      const lost = pair.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      isLedgerError('KEY_TAKEN')(lost.reason);
      assert.ok([...out.slice(0, 10), ...out.slice(12)].every((o) => o.status === 'fulfilled'));
      await l.anchor(r32(), r32());
      assert.equal(await nonce(5, 'pending'), await nonce(5, 'latest'));
    });
  });

  describe('configuration and failures', () => {
    it('node unreachable (closed port) -> UNREACHABLE, state disconnected, no crash', async function () {
      this.timeout(10_000);
      const srv = net.createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      const port = (srv.address() as net.AddressInfo).port;
      await new Promise<void>((r) => srv.close(() => r()));
      const l = ledger(1, { rpcUrl: `http://127.0.0.1:${port}`, requestTimeoutMs: 1500 });
      const states: string[] = [];
      l.onState((s) => states.push(s));
      await assert.rejects(l.lookup(r32()), isLedgerError('UNREACHABLE'));
      await assert.rejects(l.anchor(r32(), r32()), isLedgerError('UNREACHABLE'));
      await assert.rejects(l.waitForAnchor(r32(), 1000), isLedgerError('UNREACHABLE'));
      assert.equal(l.state, 'disconnected');
      assert.ok(states.includes('disconnected'));
    });

    it('node accepts connections but never answers -> UNREACHABLE after requestTimeoutMs', async function () {
      this.timeout(10_000);
      const sockets: net.Socket[] = [];
      const srv = net.createServer((s) => sockets.push(s));
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      try {
        const port = (srv.address() as net.AddressInfo).port;
        const l = ledger(1, { rpcUrl: `http://127.0.0.1:${port}`, requestTimeoutMs: 700 });
        await assert.rejects(l.lookup(r32()), (e: unknown) => isLedgerError('UNREACHABLE')(e) && /did not answer/.test((e as Error).message));
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => srv.close(() => r()));
      }
    });

    it('ws:// RPC URL: a dropped socket is reopened for the next call', async () => {
      const proxy = await new CuttableProxy(Number(new URL(c.rpcUrl).port)).start();
      try {
        const l = ledger(1, { rpcUrl: `ws://127.0.0.1:${proxy.port}`, requestTimeoutMs: 3000 });
        await l.anchor(r32(), r32());
        proxy.cut();
        const k = r32();
        await l.anchor(k, r32());
        assert.ok(await l.lookup(k));
        assert.equal(l.state, 'connected');
      } finally {
        await proxy.stop();
      }
    });

    it('node goes away and comes back: UNREACHABLE meanwhile, then connected again and anchoring', async function () {
      this.timeout(20_000);
      const proxy = await new CuttableProxy(Number(new URL(c.rpcUrl).port)).start();
      const port = proxy.port;
      try {
        const l = ledger(1, { rpcUrl: `http://127.0.0.1:${port}`, requestTimeoutMs: 1000, healthCheckMs: 200 });
        await l.anchor(r32(), r32());
        await proxy.stop();
        await assert.rejects(l.anchor(r32(), r32()), isLedgerError('UNREACHABLE'));
        assert.equal(l.state, 'disconnected');
        const back = new Promise<void>((resolve) => {
          const off = l.onState((s) => {
            if (s === 'connected') {
              off();
              resolve();
            }
          });
        });
        await proxy.start(port);
        await back;
        const k = r32();
        await l.anchor(k, r32());
        assert.ok(await l.lookup(k));
        assert.equal(await nonce(1, 'pending'), await nonce(1, 'latest'));
      } finally {
        await proxy.stop();
      }
    });

    it('chain id mismatch -> BAD_CONFIG and state error', async () => {
      const l = ledger(1, { chainId: 1 });
      await assert.rejects(l.lookup(r32()), (e: unknown) => isLedgerError('BAD_CONFIG')(e) && /chain id 31337/.test((e as Error).message));
      await assert.rejects(l.anchor(r32(), r32()), isLedgerError('BAD_CONFIG'));
      assert.equal(l.state, 'error');
    });

    it('no contract at the address -> BAD_CONFIG', async () => {
      const l = ledger(1, {}, c.accounts[9].address);
      await assert.rejects(l.lookup(r32()), (e: unknown) => isLedgerError('BAD_CONFIG')(e) && /no contract/.test((e as Error).message));
    });

    it('unusable configuration throws BAD_CONFIG at once', () => {
      const base = { kind: 'evm' as const, rpcUrl: c.rpcUrl, chainId: c.chainId, address: registry };
      const bad: Record<string, unknown>[] = [
        { rpcUrl: 'localhost:8545' },
        { address: '0x1234' },
        { chainId: 'mainnet' },
        { privateKey: '0x1234' },
        { txType: 1 },
        { gasPrice: '-1' },
        { maxInFlight: 0 },
      ];
      for (const b of bad) assert.throws(() => createLedger({ ...base, ...b } as never), isLedgerError('BAD_CONFIG'), JSON.stringify(b));
      assert.throws(() => createLedger({ ...base, kind: 'fabric' } as never), isLedgerError('BAD_CONFIG'));
    });

    it('EIP-1559 transactions with explicit fees, and free gas (type 0, gasPrice 0) refused by a node that charges', async () => {
      const l = ledger(1, { txType: 2, maxFeePerGas: '100000000000', maxPriorityFeePerGas: 1_000_000_000 });
      const rc = await l.anchor(r32(), r32());
      const tx = (await c.rpc('eth_getTransactionByHash', [rc.tx])) as { type: string; maxFeePerGas: string };
      assert.equal(Number(tx.type), 2);
      assert.equal(BigInt(tx.maxFeePerGas), 100_000_000_000n);
      const free = ledger(1, { txType: 0, gasPrice: 0 });
      await assert.rejects(free.anchor(r32(), r32()), isLedgerError('TX_FAILED'));
      assert.equal(await nonce(1, 'pending'), await nonce(1, 'latest'));
    });

    it('deployRegistry rejects bad writers and a wrong chain', async () => {
      await assert.rejects(deployRegistry({ ...admin(), writers: ['nope'] }), isLedgerError('BAD_INPUT'));
      await assert.rejects(deployRegistry({ ...admin(), chainId: 5 }), isLedgerError('BAD_CONFIG'));
    });
  });

  describe('verifyObject over the ledger', () => {
    const indicator = JSON.parse(
      fs.readFileSync(path.join(__dirname, '../fixtures/stix/indicator.json'), 'utf8'),
    ) as StixObject;

    it('verified, mismatch, not-anchored, and pending resolved by waiting', async () => {
      const l = ledger(1);
      const collection = `collection-${randomBytes(4).toString('hex')}`;
      const { key } = keyForObject(collection, indicator);
      assert.equal((await verifyObject(l, collection, indicator)).status, 'not-anchored');
      await l.anchor(key, hashObject(indicator));
      const ok = await verifyObject(l, collection, indicator);
      assert.equal(ok.status, 'verified');
      assert.equal(ok.writer, c.accounts[1].address);
      const tampered = { ...indicator, pattern: "[ipv4-addr:value = '10.0.0.1']" };
      assert.equal((await verifyObject(l, collection, tampered)).status, 'mismatch');

      await c.setIntervalMining(1000);
      const other = `collection-${randomBytes(4).toString('hex')}`;
      const pending = verifyObject(l, other, indicator, { waitMs: 15_000 });
      await l.anchor(keyForObject(other, indicator).key, hashObject(indicator));
      assert.equal((await pending).status, 'verified');
    });
  });
});
