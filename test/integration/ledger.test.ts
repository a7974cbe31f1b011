/**
 * EVM ledger adapter and SetsRegistry contract against a real hardhat JSON-RPC node
 * (test/support/hardhat.ts, shared per mocha process through services.ts): what is EVM's own —
 * the contract's ABI, reverts and gas, admin calls, WebSockets, the nonce pipeline, chain id and
 * fees. What every ledger must do (lookups, per-writer write-once, existing / KEY_TAKEN, batches,
 * BAD_INPUT, grants and revocation, identity binding, waits, outages, verifyObject) is in the
 * conformance suite: ledger-conformance.ts, run here by ledger-conformance-evm.test.ts.
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
  acceptAdmin,
  ANY_SCOPE,
  bindIdentity,
  createLedger,
  decodeRevert,
  deployRegistry,
  grantWriter,
  LedgerError,
  proposeAdmin,
  REGISTRY_ABI,
  registryInterface,
  revokeWriter,
  unbindIdentity,
  type EvmLedger,
  type EvmLedgerConfig,
} from '../../lib/ledger';
import { collectionScope, identityTag } from '../../lib/digest';

const r32 = () => '0x' + randomBytes(32).toString('hex');
const ZERO32 = '0x' + '0'.repeat(64);
const ZERO_ADDRESS = '0x0000000000000000000000000000000000000000';
/** the collection scope most anchors here are written in (the default writers hold ANY_SCOPE) */
const S = collectionScope('ledger-test');

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

  /** a view function of the registry at `at`, decoded */
  async function read(at: string, fn: string, args: unknown[]) {
    const out = await c.rpc('eth_call', [{ to: at, data: registryInterface.encodeFunctionData(fn, args) }, 'latest']);
    return registryInterface.decodeFunctionResult(fn, String(out));
  }

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

    it('is write-once per writer, rejects the zero hash, the zero scope and non-writers, and reads zeros when absent', async () => {
      const w = c.accounts[1].address;
      const l = ledger(1);
      const k = r32();
      const h = r32();
      assert.equal(await simulate(w, registry, 'writeCTIHash', [S, k, ZERO32]), `ZeroHash(${k})`);
      assert.equal(await simulate(w, registry, 'writeCTIHash', [ANY_SCOPE, k, h]), 'ZeroScope()');
      assert.equal(await simulate(c.accounts[6].address, registry, 'writeCTIHash', [S, k, h]), `NotWriter(${c.accounts[6].address}, ${S})`);
      const absent = await read(registry, 'readCTIRecord', [k, w]);
      assert.deepEqual([...absent], [ZERO32, 0n, 0n]);
      const none = await read(registry, 'readCTIRecords', [S, ZERO32, k]);
      assert.equal(none.length, 5, 'writers, hashes, timestamps, blocks, entitled');
      for (const list of none) assert.equal((list as unknown[]).length, 0);
      const rc = await l.anchor(S, k, h);
      const held = await read(registry, 'readCTIRecord', [k, w]);
      assert.deepEqual([...held], [h, held[1], BigInt(rc.block)]);
      assert.ok((held[1] as bigint) > 0n, 'a timestamp');
      // a second write of the key by the same writer reverts, with the same hash too
      assert.equal(await simulate(w, registry, 'writeCTIHash', [S, k, h]), `KeyTaken(${k}, ${w})`);
      assert.equal(await simulate(w, registry, 'writeCTIHash', [S, k, r32()]), `KeyTaken(${k}, ${w})`);
      // … but another writer's write of the key goes through
      assert.equal(await simulate(c.accounts[2].address, registry, 'writeCTIHash', [S, k, r32()]), 'ok');
    });

    it('batch: length mismatch and the zero scope revert, a different hash reverts the whole batch, identical ones are skipped (whatever scope they name)', async () => {
      const w = c.accounts[1].address;
      const l = ledger(1);
      const k = r32();
      const h = r32();
      await l.anchor(S, k, h);
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[S], [r32()], []]), 'LengthMismatch()');
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[S, S], [r32()], [r32(), r32()]]), 'LengthMismatch()');
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[S, ANY_SCOPE], [r32(), r32()], [r32(), r32()]]), 'ZeroScope()');
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[S, S], [r32(), k], [r32(), r32()]]), `KeyTaken(${k}, ${w})`);
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[S, S], [r32(), k], [r32(), h]]), 'ok');
      // the scope is not stored (it is in the event only): the identical hash named under another
      // collection (this ANY_SCOPE writer may write there) is skipped too
      assert.equal(await simulate(w, registry, 'writeCTIHashes', [[S, collectionScope('elsewhere')], [r32(), k], [r32(), h]]), 'ok');
      // another writer is not blocked by accounts[1]'s record
      assert.equal(await simulate(c.accounts[2].address, registry, 'writeCTIHashes', [[S, S], [r32(), k], [r32(), r32()]]), 'ok');
    });

    it('batch: an entry repeated within the batch is written once (one event), the repeat skipped', async () => {
      const reg = await c.deployRegistry();
      const k = r32();
      const h = r32();
      const data = registryInterface.encodeFunctionData('writeCTIHashes', [[S, S], [k, k], [h, h]]);
      const txHash = String(await c.rpc('eth_sendTransaction', [{ from: c.accounts[2].address, to: reg, data, gas: '0x' + (400_000).toString(16) }]));
      const receipt = (await c.rpc('eth_getTransactionReceipt', [txHash])) as { status: string; logs: unknown[] };
      assert.equal(Number(receipt.status), 1);
      assert.equal(receipt.logs.length, 1);
      assert.equal((await read(reg, 'readCTIRecords', [S, ZERO32, k]))[0].length, 1);
    });

    it('gas: one write, 100 and 200 entries in one transaction, 200 in default batches (the adapter defaults cover them and fit a block and the transaction gas cap)', async () => {
      const gasOf = async (tx: string) => Number(BigInt(((await c.rpc('eth_getTransactionReceipt', [tx])) as { gasUsed: string }).gasUsed));
      const sentOf = async (tx: string) => Number(BigInt(((await c.rpc('eth_getTransactionByHash', [tx])) as { gas: string }).gas));
      const entries = (n: number) => Array.from({ length: n }, () => ({ scope: S, key: r32(), hash: r32() }));
      const blockLimit = Number(BigInt(((await c.rpc('eth_getBlockByNumber', ['latest', false])) as { gasLimit: string }).gasLimit));
      const cap = Math.min(blockLimit, 2 ** 24);
      const one = await ledger(3).anchor(S, r32(), r32());
      const g1 = await gasOf(one.tx);
      /** gas of one transaction holding all of `n` fresh entries */
      const batchOf = async (n: number) => {
        const rcs = await ledger(3, { maxBatchSize: n }).anchorMany(entries(n));
        const txs = new Set(rcs.map((r) => r.tx));
        assert.equal(txs.size, 1, `${n} entries in one transaction`);
        const tx = [...txs][0];
        return { used: await gasOf(tx), sent: await sentOf(tx) };
      };
      const b100 = await batchOf(100);
      const b200 = await batchOf(200);
      const byDefault = await ledger(3).anchorMany(entries(200));
      const txs = [...new Set(byDefault.map((r) => r.tx))];
      assert.equal(txs.length, 2, 'two transactions: the default batch is 150 entries');
      const used = await Promise.all(txs.map(gasOf));
      const sent = await Promise.all(txs.map(sentOf));
      console.log(
        `      gas: writeCTIHash ${g1}; writeCTIHashes(100) ${b100.used} (${Math.round(b100.used / 100)} per entry); ` +
          `writeCTIHashes(200) ${b200.used} (${Math.round(b200.used / 200)} per entry, limit sent ${b200.sent}); ` +
          `200 by default: ${used.join(' + ')} (limits ${sent.join(' + ')}); block gas limit ${blockLimit}, transaction gas cap ${2 ** 24}`,
      );
      // regression bounds: the first anchor of a key is the two-slot layout of version 1
      // (measured: 74.8k for one write, 49.3k per batch entry)
      assert.ok(g1 < 90_000, `writeCTIHash ${g1} < 90000`);
      assert.ok(b100.used / 100 < 60_000, `${b100.used / 100} per entry (100) < 60000`);
      assert.ok(b200.used / 200 < 60_000, `${b200.used / 200} per entry (200) < 60000`);
      assert.ok(b200.sent <= cap, 'a 200-entry batch fits under the cap with the default gas per entry');
      for (let i = 0; i < 2; i++) {
        assert.ok(used[i] < sent[i] * 0.8, `writeCTIHashes: ${used[i]} used, ${sent[i]} sent: a margin is left`);
        assert.ok(sent[i] <= cap, 'a default batch fits in a block and under the EIP-7825 transaction gas cap');
      }
      assert.equal(sent[0], 60_000 + 150 * 80_000, 'default batch limit: batchGasBase + 150 × gasPerBatchItem');
    });

    it('gas: a second writer of a key joins a list and pays more; a full default batch of such entries still fits its gas limit', async () => {
      const gasOf = async (tx: string) => Number(BigInt(((await c.rpc('eth_getTransactionReceipt', [tx])) as { gasUsed: string }).gasUsed));
      const k = r32();
      const a = await ledger(1).anchor(S, k, r32());
      const b = await ledger(2).anchor(S, k, r32());
      const [ga, gb] = [await gasOf(a.tx), await gasOf(b.tx)];
      assert.ok(gb > ga, `second writer ${gb} > first ${ga}`);
      assert.ok(gb < 120_000, `second writer ${gb} within the default gasLimit 150000, with a margin`);
      // the worst case of a default batch: 150 keys all anchored first by another writer
      const keys = Array.from({ length: 150 }, () => r32());
      const firsts = await ledger(1).anchorMany(keys.map((key) => ({ scope: S, key, hash: r32() })));
      const seconds = await ledger(2).anchorMany(keys.map((key) => ({ scope: S, key, hash: r32() })));
      const [tx1, tx2] = [firsts[0].tx, seconds[0].tx];
      assert.ok(seconds.every((r) => r.tx === tx2 && r.existing === undefined), 'one transaction, all written');
      const [u1, u2] = [await gasOf(tx1), await gasOf(tx2)];
      const sent = Number(BigInt(((await c.rpc('eth_getTransactionByHash', [tx2])) as { gas: string }).gas));
      console.log(
        `      gas: writeCTIHash first ${ga}, second writer ${gb}; writeCTIHashes(150) first anchors ${u1} (${Math.round(u1 / 150)} per entry), ` +
          `second writers ${u2} (${Math.round(u2 / 150)} per entry, limit ${sent})`,
      );
      assert.ok(u2 > u1);
      assert.ok(u2 / 150 < 80_000, 'a second writer\'s entry stays under the default gasPerBatchItem');
      assert.ok(u2 < sent * 0.97, `${u2} used of ${sent}`);
    });

    it('the first anchor of a key and a second writer\'s: both readable, KEY_TAKEN only for the same writer', async () => {
      const [w1, w2, w3] = [c.accounts[1].address, c.accounts[2].address, c.accounts[3].address];
      const k = r32();
      const [h1, h2, h3] = [r32(), r32(), r32()];
      const a = await ledger(1).anchor(S, k, h1);
      const b = await ledger(2).anchor(S, k, h2);
      const held = async (w: string) => [...(await read(registry, 'readCTIRecord', [k, w]))];
      assert.deepEqual((await held(w1)).filter((_, i) => i !== 1), [h1, BigInt(a.block)]);
      assert.deepEqual((await held(w2)).filter((_, i) => i !== 1), [h2, BigInt(b.block)]);
      assert.deepEqual(await held(w3), [ZERO32, 0n, 0n], 'a writer that anchored nothing reads zeros');
      // the first writer (first-anchor slot) and the second (list) are each write-once
      for (const [i, w] of [
        [1, w1],
        [2, w2],
      ] as const) {
        assert.equal(await simulate(w, registry, 'writeCTIHash', [S, k, r32()]), `KeyTaken(${k}, ${w})`);
        await assert.rejects(ledger(i).anchor(S, k, r32()), isLedgerError('KEY_TAKEN'));
        assert.equal(await simulate(w, registry, 'writeCTIHashes', [[S, S], [r32(), k], [r32(), r32()]]), `KeyTaken(${k}, ${w})`);
      }
      // each still gets its own hash back as existing, and a third writer is not blocked
      assert.equal((await ledger(2).anchor(S, k, h2)).existing, true);
      const c3 = await ledger(3).anchor(S, k, h3);
      assert.equal(c3.existing, undefined);
      assert.deepEqual(
        (await ledger(undefined).lookup(S, k)).map((r) => [r.writer, r.hash, r.block]),
        [
          [w1, h1, a.block],
          [w2, h2, b.block],
          [w3, h3, c3.block],
        ],
      );
      assert.deepEqual((await held(w3)).filter((_, i) => i !== 1), [h3, BigInt(c3.block)]);
    });

    it('canWrite, grantsOf and the entitled flags: judged by the grant at read time (not the scope named when writing), revoked writer, ANY_SCOPE writer', async () => {
      const [s1, s2] = [collectionScope('c-one'), collectionScope('c-two')];
      const [scoped, any, other] = [c.accounts[6].address, c.accounts[7].address, c.accounts[8].address];
      const reg = await c.deployRegistry({ writers: [{ account: scoped, scopes: [s1] }, any, { account: other, scopes: [s1, s2] }] });
      assert.equal((await read(reg, 'canWrite', [s1, scoped]))[0], true);
      assert.equal((await read(reg, 'canWrite', [s2, scoped]))[0], false);
      assert.equal((await read(reg, 'canWrite', [ANY_SCOPE, any]))[0], false, 'nobody writes in ANY_SCOPE itself');
      assert.equal((await read(reg, 'canWrite', [s2, any]))[0], true);
      const grants = async (a: string) => (await read(reg, 'grantsOf', [a]))[0] as bigint;
      assert.deepEqual([await grants(scoped), await grants(any), await grants(other)], [1n, 1n, 2n]);
      const k = r32();
      const [hs, ha, ho] = [r32(), r32(), r32()];
      await ledger(6, {}, reg).anchor(s1, k, hs);
      await ledger(7, {}, reg).anchor(s1, k, ha);
      // named s2 when writing; the scope is in the event only, so it counts wherever `other` is granted
      await ledger(8, {}, reg).anchor(s2, k, ho);
      const reader = ledger(undefined, {}, reg);
      const flags = async (scope: string) => (await reader.lookup(scope, k)).map((r) => [r.writer, r.hash, r.entitled]);
      assert.deepEqual(await flags(s1), [
        [scoped, hs, true],
        [any, ha, true],
        [other, ho, true],
      ]);
      assert.deepEqual((await flags(s2)).map((f) => f[2]), [false, true, true], 'scoped is not granted s2');
      assert.equal('scope' in (await reader.lookup(s1, k))[0], false, 'records carry no scope');
      await revokeWriter(admin(), reg, scoped, s1);
      await revokeWriter(admin(), reg, other, s2);
      assert.deepEqual((await flags(s1)).map((f) => f[2]), [false, true, true], 'revoking withdraws the word (other keeps s1)');
      assert.deepEqual((await flags(s2)).map((f) => f[2]), [false, true, false]);
      assert.equal(await grants(scoped), 0n);
      assert.equal((await reader.lookup(s1, k)).length, 3, 'the records themselves stay');
      await grantWriter(admin(), reg, scoped);
      assert.deepEqual((await flags(s1)).map((f) => f[2]), [true, true, true], 'ANY_SCOPE covers every collection');
      assert.deepEqual((await flags(s2)).map((f) => f[2]), [true, true, false]);
      assert.deepEqual((await flags(collectionScope('c-three'))).map((f) => f[2]), [true, true, false]);
    });

    it('isEntitled: a collection grant alone while the identity is unbound; bound accounts only once bound', async () => {
      const s1 = collectionScope('ent-one');
      const id = identityTag(`identity--${randomBytes(8).toString('hex')}`);
      const [a, b, outsider] = [c.accounts[6].address, c.accounts[7].address, c.accounts[8].address];
      const reg = await c.deployRegistry({ writers: [{ account: a, scopes: [s1] }, { account: b, scopes: [s1] }] });
      const ent = async (identity: string, who: string) => (await read(reg, 'isEntitled', [s1, identity, who]))[0] as boolean;
      assert.deepEqual([await ent(ZERO32, a), await ent(id, a), await ent(id, b), await ent(id, outsider)], [true, true, true, false]);
      await bindIdentity(admin(), reg, id, a);
      await bindIdentity(admin(), reg, id, outsider); // bound, but not granted the collection
      assert.deepEqual([await ent(ZERO32, b), await ent(id, a), await ent(id, b), await ent(id, outsider)], [true, true, false, false]);
      assert.equal((await read(reg, 'isEntitled', [ANY_SCOPE, id, a]))[0], false, 'never for ANY_SCOPE itself');
      assert.equal((await read(reg, 'bindingsOf', [id]))[0], 2n);
    });
  });

  describe('anchor / lookup', () => {
    it('lookup: [] when absent, the record when present', async () => {
      const l = ledger(1);
      const k = r32();
      const h = r32();
      assert.deepEqual(await l.lookup(S, k), []);
      const rc = await l.anchor(S, k, h);
      assert.equal(rc.key, k);
      assert.equal(rc.hash, h);
      assert.equal(rc.writer, c.accounts[1].address);
      assert.match(rc.tx, /^0x[0-9a-f]{64}$/);
      assert.ok(rc.block > 0);
      assert.equal(rc.existing, undefined);
      const recs = await l.lookup(S, k);
      const block = (await c.rpc('eth_getBlockByNumber', ['0x' + rc.block.toString(16), false])) as { timestamp: string };
      assert.deepEqual(recs, [{ key: k, hash: h, writer: c.accounts[1].address, timestamp: Number(BigInt(block.timestamp)), entitled: true, block: rc.block }]);
      // keys, scopes and hashes are accepted in any hex case and reported lower-case
      const upper = (x: string) => x.toUpperCase().replace('0X', '0x');
      assert.equal((await l.lookup(upper(S), upper(k)))[0]?.hash, h);
      // judged for another collection: accounts[1] holds ANY_SCOPE, so it counts there too; a
      // writer granted only S does not
      assert.deepEqual((await l.lookup(collectionScope('elsewhere'), k)).map((r) => r.entitled), [true]);
      const reg = await c.deployRegistry({ writers: [{ account: c.accounts[6].address, scopes: [S] }] });
      const k6 = r32();
      await ledger(6, {}, reg).anchor(S, k6, h);
      assert.deepEqual((await ledger(undefined, {}, reg).lookup(S, k6)).map((r) => r.entitled), [true]);
      assert.deepEqual((await ledger(undefined, {}, reg).lookup(collectionScope('elsewhere'), k6)).map((r) => r.entitled), [false]);
    });

    it('ws:// as the RPC URL: anchors and lookups over one WebSocket', async () => {
      const l = ledger(1, { rpcUrl: c.wsUrl });
      const k = r32();
      const h = r32();
      const rcs = await Promise.all([l.anchor(S, k, h), ...Array.from({ length: 20 }, () => l.anchor(S, r32(), r32()))]);
      assert.equal(rcs.length, 21);
      assert.equal((await l.lookup(S, k))[0]?.hash, h);
      assert.equal(l.state, 'connected');
    });
  });

  describe('roles', () => {
    let reg: string;
    before(async () => {
      reg = await c.deployRegistry({ writers: [c.accounts[1].address, c.accounts[2].address] });
    });

    it('a writer bound to one collection: anchors there, NOT_AUTHORISED in another (no transaction sent); writerStatus says where', async () => {
      const [mine, theirs] = [collectionScope('bound-mine'), collectionScope('bound-theirs')];
      const r = await c.deployRegistry({ writers: [{ account: c.accounts[6].address, scopes: [mine] }, c.accounts[7].address] });
      const l = ledger(6, {}, r);
      assert.deepEqual(await l.writerStatus(mine), { account: c.accounts[6].address, anyScope: false, inScope: true });
      assert.deepEqual(await l.writerStatus(theirs), { account: c.accounts[6].address, anyScope: false, inScope: false });
      assert.deepEqual(await l.writerStatus(), { account: c.accounts[6].address, anyScope: false, inScope: false });
      assert.deepEqual(await ledger(7, {}, r).writerStatus(theirs), { account: c.accounts[7].address, anyScope: true, inScope: true });
      assert.deepEqual(await ledger(8, {}, r).writerStatus(mine), { account: c.accounts[8].address, anyScope: false, inScope: false });
      const k = r32();
      const rc = await l.anchor(mine, k, r32());
      assert.equal(rc.writer, c.accounts[6].address);
      const before = await nonce(6, 'latest');
      await assert.rejects(l.anchor(theirs, r32(), r32()), (e: unknown) => {
        isLedgerError('NOT_AUTHORISED')(e);
        const m = (e as Error).message;
        assert.ok(m.includes(c.accounts[6].address) && m.includes(theirs) && m.includes(`grantWriter(${c.accounts[6].address}, ${theirs})`), m);
        return true;
      });
      // a batch mixing both scopes is refused whole
      const mixed = [
        { scope: mine, key: r32(), hash: r32() },
        { scope: theirs, key: r32(), hash: r32() },
      ];
      await assert.rejects(l.anchorMany(mixed), isLedgerError('NOT_AUTHORISED'));
      assert.equal(await nonce(6, 'latest'), before);
      assert.deepEqual(await l.lookup(mine, mixed[0].key), []);
      // on chain too: the contract refuses it (a stale or bypassed client check cannot help)
      assert.equal(await simulate(c.accounts[6].address, r, 'writeCTIHash', [theirs, r32(), r32()]), `NotWriter(${c.accounts[6].address}, ${theirs})`);
      assert.equal(await simulate(c.accounts[6].address, r, 'writeCTIHashes', [[mine, theirs], [r32(), r32()], [r32(), r32()]]), `NotWriter(${c.accounts[6].address}, ${theirs})`);
    });

    it('admin calls: only the admin grants; grants per scope; bad input refused before sending', async () => {
      const notAdmin = { ...admin(), privateKey: c.accounts[1].privateKey };
      await assert.rejects(grantWriter(notAdmin, reg, c.accounts[7].address), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && /NotAdmin/.test((e as Error).message));
      const s7 = collectionScope('granted-to-7');
      await grantWriter(admin(), reg, c.accounts[7].address, s7);
      const l = ledger(7, {}, reg);
      const k = r32();
      await l.anchor(s7, k, r32());
      assert.equal((await l.lookup(s7, k))[0]?.writer, c.accounts[7].address);
      await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('NOT_AUTHORISED'));
      await assert.rejects(grantWriter(admin(), reg, 'nope'), isLedgerError('BAD_INPUT'));
      await assert.rejects(grantWriter(admin(), reg, c.accounts[7].address, '0x12'), isLedgerError('BAD_INPUT'));
      await assert.rejects(grantWriter(admin(), reg, ZERO_ADDRESS), (e: unknown) => isLedgerError('BAD_INPUT')(e) && /ZeroAddress/.test((e as Error).message));
    });

    it('two-step admin hand-over: propose, a wrong acceptor refused, accept, the old admin loses its rights; cancel', async () => {
      const r = await c.deployRegistry({ writers: [] });
      const as = (i: number) => ({ ...admin(), privateKey: c.accounts[i].privateKey });
      const state = async () => [(await read(r, 'admin', []))[0], (await read(r, 'pendingAdmin', []))[0]];
      await assert.rejects(proposeAdmin(as(1), r, c.accounts[8].address), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && /NotAdmin/.test((e as Error).message));
      await proposeAdmin(admin(), r, c.accounts[8].address);
      assert.deepEqual(await state(), [c.accounts[0].address, c.accounts[8].address], 'proposing moves nothing yet');
      // the current admin still rules until the hand-over completes
      await grantWriter(admin(), r, c.accounts[5].address);
      await assert.rejects(acceptAdmin(as(9), r), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && (e as Error).message.includes(`NotPendingAdmin(${c.accounts[9].address})`));
      await assert.rejects(acceptAdmin(admin(), r), isLedgerError('NOT_AUTHORISED'));
      await acceptAdmin(as(8), r);
      assert.deepEqual(await state(), [c.accounts[8].address, ZERO_ADDRESS]);
      await assert.rejects(grantWriter(admin(), r, c.accounts[9].address), isLedgerError('NOT_AUTHORISED'));
      await assert.rejects(revokeWriter(admin(), r, c.accounts[5].address), isLedgerError('NOT_AUTHORISED'));
      await assert.rejects(proposeAdmin(admin(), r, c.accounts[0].address), isLedgerError('NOT_AUTHORISED'));
      await assert.rejects(acceptAdmin(as(8), r), isLedgerError('NOT_AUTHORISED'), 'accepting twice');
      await grantWriter(as(8), r, c.accounts[9].address);
      // cancel: propose, then propose the zero address; the once-proposed account cannot accept
      await proposeAdmin(as(8), r, c.accounts[7].address);
      await proposeAdmin(as(8), r, ZERO_ADDRESS);
      assert.deepEqual(await state(), [c.accounts[8].address, ZERO_ADDRESS]);
      await assert.rejects(acceptAdmin(as(7), r), isLedgerError('NOT_AUTHORISED'));
      // and nobody can "accept" the zero pending admin
      assert.equal(await simulate(ZERO_ADDRESS, r, 'acceptAdmin', []), `NotPendingAdmin(${ZERO_ADDRESS})`);
      assert.deepEqual(await state(), [c.accounts[8].address, ZERO_ADDRESS]);
    });
  });

  describe('producer identity binding', () => {
    const col = collectionScope('bind-collection');
    const newIdentity = () => identityTag(`identity--${randomBytes(16).toString('hex')}`);
    let reg: string;
    before(async () => {
      // accounts[6] and [7] write in `col`; accounts[8] in another collection only
      reg = await c.deployRegistry({
        writers: [
          { account: c.accounts[6].address, scopes: [col] },
          { account: c.accounts[7].address, scopes: [col] },
          { account: c.accounts[8].address, scopes: [collectionScope('bind-elsewhere')] },
        ],
      });
    });

    it('unbound identity: any collection writer entitled; bound: only bound accounts; unbinding the last: unbound again', async () => {
      const [a, b] = [c.accounts[6].address, c.accounts[7].address];
      const id = newIdentity();
      const k = r32();
      const h = r32();
      await ledger(6, {}, reg).anchor(col, k, h);
      await ledger(7, {}, reg).anchor(col, k, h);
      const reader = ledger(undefined, {}, reg);
      const flags = async (identity?: string) => (await reader.lookup(col, k, identity)).map((r) => r.entitled);
      const bindings = async () => (await read(reg, 'bindingsOf', [id]))[0] as bigint;
      const bound = async (who: string) => (await read(reg, 'isBoundTo', [id, who]))[0] as boolean;
      assert.deepEqual(await flags(), [true, true]);
      assert.deepEqual(await flags(id), [true, true], 'unbound: the collection grant decides');
      assert.deepEqual(await flags(ZERO32), [true, true], 'the zero identity is "no creator named"');
      const tx = await bindIdentity(admin(), reg, id, a);
      const receipt = (await c.rpc('eth_getTransactionReceipt', [tx])) as { logs: Array<{ topics: string[]; data: string }> };
      const ev = registryInterface.parseLog(receipt.logs[0]);
      assert.deepEqual([ev?.name, String(ev?.args[0]), String(ev?.args[1])], ['IdentityBound', id, a]);
      assert.deepEqual(await flags(id), [true, false], 'bound to A: B (same collection) no longer counts for this creator');
      assert.deepEqual(await flags(), [true, true], 'no creator named: collection entitlement only');
      assert.deepEqual(await flags(newIdentity()), [true, true], 'another identity stays unbound');
      assert.deepEqual(await flags(id.toUpperCase().replace('0X', '0x')), [true, false], 'any hex case');
      assert.deepEqual([await bindings(), await bound(a), await bound(b)], [1n, true, false]);
      await bindIdentity(admin(), reg, id, a); // binding twice changes nothing
      assert.equal(await bindings(), 1n);
      // bound, but not granted the collection: not entitled there
      await bindIdentity(admin(), reg, id, c.accounts[8].address);
      const k8 = r32();
      await ledger(8, {}, reg).anchor(collectionScope('bind-elsewhere'), k8, h);
      assert.deepEqual((await reader.lookup(col, k8, id)).map((r) => r.entitled), [false]);
      await bindIdentity(admin(), reg, id, b);
      assert.deepEqual(await flags(id), [true, true]);
      await unbindIdentity(admin(), reg, id, a);
      assert.deepEqual(await flags(id), [false, true], 'A unbound while others stay bound: A no longer counts');
      await unbindIdentity(admin(), reg, id, b);
      await unbindIdentity(admin(), reg, id, c.accounts[8].address);
      assert.deepEqual([await bindings(), await bound(a), await bound(b)], [0n, false, false]);
      assert.deepEqual(await flags(id), [true, true], 'no binding left: unbound again, the collection grant decides');
      await unbindIdentity(admin(), reg, id, b); // unbinding what is not bound changes nothing
      assert.equal(await bindings(), 0n);
    });

    it('bindIdentity / unbindIdentity: admin only (NOT_AUTHORISED); bad input refused with BAD_INPUT before sending', async () => {
      const id = newIdentity();
      const notAdmin = { ...admin(), privateKey: c.accounts[6].privateKey };
      await assert.rejects(bindIdentity(notAdmin, reg, id, c.accounts[6].address), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && /NotAdmin/.test((e as Error).message));
      await assert.rejects(unbindIdentity(notAdmin, reg, id, c.accounts[6].address), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && /NotAdmin/.test((e as Error).message));
      assert.equal((await read(reg, 'bindingsOf', [id]))[0], 0n);
      const before = await nonce(0, 'latest');
      for (const fn of [bindIdentity, unbindIdentity]) {
        await assert.rejects(fn(admin(), reg, ZERO32, c.accounts[6].address), (e: unknown) => isLedgerError('BAD_INPUT')(e) && /cannot be zero/.test((e as Error).message));
        for (const bad of ['', '0x12', id.slice(2), 'identity--x', 42 as unknown as string]) {
          await assert.rejects(fn(admin(), reg, bad, c.accounts[6].address), (e: unknown) => isLedgerError('BAD_INPUT')(e) && /identity tag/.test((e as Error).message));
        }
        await assert.rejects(fn(admin(), reg, id, 'nope'), isLedgerError('BAD_INPUT'));
        await assert.rejects(fn(admin(), 'nope', id, c.accounts[6].address), isLedgerError('BAD_INPUT'));
      }
      assert.equal(await nonce(0, 'latest'), before, 'nothing sent');
      // on chain too
      assert.equal(await simulate(c.accounts[0].address, reg, 'bindIdentity', [ZERO32, c.accounts[6].address]), 'ZeroScope()');
      assert.equal(await simulate(c.accounts[0].address, reg, 'bindIdentity', [id, ZERO_ADDRESS]), 'ZeroAddress()');
      assert.equal(await simulate(c.accounts[6].address, reg, 'bindIdentity', [id, c.accounts[6].address]), `NotAdmin(${c.accounts[6].address})`);
      await assert.rejects(bindIdentity(admin(), reg, id, ZERO_ADDRESS), (e: unknown) => isLedgerError('BAD_INPUT')(e) && /ZeroAddress/.test((e as Error).message));
    });
  });

  describe('waitForAnchor', () => {
    it('over a WebSocket newHeads subscription', async () => {
      await c.setIntervalMining(1000);
      const reader = ledger(undefined, { wsUrl: c.wsUrl, waitPollMs: 5000 });
      const k = r32();
      const h = r32();
      const w = reader.waitForAnchor(S, k, 15_000);
      await ledger(3).anchor(S, k, h);
      assert.equal((await w)[0]?.hash, h);
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
      const w = reader.waitForAnchor(S, k, 15_000);
      await ledger(3).anchor(S, k, h);
      assert.equal((await w)[0]?.hash, h);
    });

    it('survives a dropped WebSocket (heads resume, waiters still resolve)', async () => {
      await c.setIntervalMining(1000);
      const proxy = await new CuttableProxy(Number(new URL(c.rpcUrl).port)).start();
      try {
        const reader = ledger(undefined, { wsUrl: `ws://127.0.0.1:${proxy.port}`, waitPollMs: 200 });
        const first = r32();
        const w1 = reader.waitForAnchor(S, first, 15_000);
        await ledger(3).anchor(S, first, r32());
        assert.equal((await w1).length, 1);
        proxy.cut();
        const k = r32();
        const h = r32();
        const w2 = reader.waitForAnchor(S, k, 15_000);
        await ledger(3).anchor(S, k, h);
        assert.equal((await w2)[0]?.hash, h);
      } finally {
        await proxy.stop();
      }
    });

  });

  describe('pipelined send queue', () => {
    let reg: string;
    before(async () => {
      reg = await c.deployRegistry({ writers: [c.accounts[4].address, c.accounts[5].address] });
    });

    async function landAll(l: EvmLedger, mode: string, maxInFlight?: number): Promise<void> {
      const n = 500;
      const items = Array.from({ length: n }, () => ({ scope: S, key: r32(), hash: r32() }));
      let t0 = Date.now();
      const rcs = await Promise.all(items.map((e) => l.anchor(S, e.key, e.hash)));
      const dt = Date.now() - t0;
      assert.equal(new Set(rcs.map((r) => r.tx)).size, n);
      t0 = Date.now();
      const batch = Array.from({ length: n }, () => ({ scope: S, key: r32(), hash: r32() }));
      const brcs = await l.anchorMany(batch);
      const dtBatch = Date.now() - t0;
      const lookedUp = await Promise.all([...items, ...batch].map((e) => l.lookup(S, e.key)));
      lookedUp.forEach((recs, i) => assert.equal(recs[0]?.hash, [...items, ...batch][i].hash));
      const blocks = new Set(rcs.map((r) => r.block)).size;
      console.log(
        `      ${mode}${maxInFlight ? `, maxInFlight ${maxInFlight}` : ''}: 500 concurrent anchor() in ${dt} ms = ` +
          `${((n * 1000) / dt).toFixed(0)} tx/s over ${blocks} blocks; anchorMany(500) in ${dtBatch} ms ` +
          `(${new Set(brcs.map((r) => r.tx)).size} transactions)`,
      );
      assert.deepEqual(l.stats(), { waiters: 0, headListeners: 0, queued: 0, inFlight: 0 });
    }

    // coalescing off: the send queue itself, one transaction per anchor() (coalescing: ledger-perf.test.ts)
    it('500 concurrent anchor() calls and anchorMany(500) all land (automine)', async function () {
      await landAll(ledger(4, { coalesceMs: 0 }, reg), 'automine');
    });

    it('500 concurrent anchor() calls and anchorMany(500) all land (1 s interval mining)', async function () {
      await c.setIntervalMining(1000);
      await landAll(ledger(4, { maxInFlight: 512, coalesceMs: 0 }, reg), '1 s blocks', 512);
    });

    it('a send the node refuses mid-pipeline leaves no nonce gap', async () => {
      await c.setIntervalMining(1000);
      // the batch transaction's gas limit is below its intrinsic gas: the node refuses it at send
      const l = ledger(5, { batchGasBase: 21_000, gasPerBatchItem: 1, coalesceMs: 0 }, reg);
      const first = Array.from({ length: 20 }, () => l.anchor(S, r32(), r32()));
      for (let i = 0; i < 200 && l.stats().inFlight < 20; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(l.stats().inFlight, 20, 'the first 20 are sent and wait in the mempool');
      const bad = Array.from({ length: 30 }, () => ({ scope: S, key: r32(), hash: r32() }));
      const refused = l.anchorMany(bad);
      const after = Array.from({ length: 20 }, () => l.anchor(S, r32(), r32()));
      await assert.rejects(refused, (e: unknown) => isLedgerError('TX_FAILED')(e) && /refused/.test((e as Error).message));
      const rcs = await Promise.all([...first, ...after]);
      assert.equal(rcs.length, 40);
      for (const e of bad) assert.deepEqual(await l.lookup(S, e.key), []);
      assert.equal(await nonce(5, 'pending'), await nonce(5, 'latest'), 'nothing stuck behind a gap');
    });

    it('a transaction reverting mid-pipeline (automine reports it as a send error) leaves no nonce gap', async () => {
      const l = ledger(5, { coalesceMs: 0 }, reg);
      const k = r32();
      const calls = [
        ...Array.from({ length: 10 }, () => l.anchor(S, r32(), r32())),
        l.anchor(S, k, r32()),
        l.anchor(S, k, r32()), // same key, other hash: both pass the pre-check, the later one reverts
        ...Array.from({ length: 10 }, () => l.anchor(S, r32(), r32())),
      ];
      const out = await Promise.allSettled(calls);
      const pair = out.slice(10, 12);
      assert.equal(pair.filter((o) => o.status === 'fulfilled').length, 1);
      const lost = pair.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      isLedgerError('KEY_TAKEN')(lost.reason);
      assert.ok([...out.slice(0, 10), ...out.slice(12)].every((o) => o.status === 'fulfilled'));
      await l.anchor(S, r32(), r32());
      assert.equal(await nonce(5, 'pending'), await nonce(5, 'latest'));
    });
  });

  describe('configuration and failures', () => {
    it('node accepts connections but never answers -> UNREACHABLE after requestTimeoutMs', async function () {
      this.timeout(10_000);
      const sockets: net.Socket[] = [];
      const srv = net.createServer((s) => sockets.push(s));
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      try {
        const port = (srv.address() as net.AddressInfo).port;
        const l = ledger(1, { rpcUrl: `http://127.0.0.1:${port}`, requestTimeoutMs: 700 });
        await assert.rejects(l.lookup(S, r32()), (e: unknown) => isLedgerError('UNREACHABLE')(e) && /did not answer/.test((e as Error).message));
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => srv.close(() => r()));
      }
    });

    it('ws:// RPC URL: a dropped socket is reopened for the next call', async () => {
      const proxy = await new CuttableProxy(Number(new URL(c.rpcUrl).port)).start();
      try {
        const l = ledger(1, { rpcUrl: `ws://127.0.0.1:${proxy.port}`, requestTimeoutMs: 3000 });
        await l.anchor(S, r32(), r32());
        proxy.cut();
        const k = r32();
        await l.anchor(S, k, r32());
        assert.equal((await l.lookup(S, k)).length, 1);
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
        await l.anchor(S, r32(), r32());
        await proxy.stop();
        await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('UNREACHABLE'));
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
        await l.anchor(S, k, r32());
        assert.equal((await l.lookup(S, k)).length, 1);
        assert.equal(await nonce(1, 'pending'), await nonce(1, 'latest'));
      } finally {
        await proxy.stop();
      }
    });

    it('chain id mismatch -> BAD_CONFIG and state error', async () => {
      const l = ledger(1, { chainId: 1 });
      await assert.rejects(l.lookup(S, r32()), (e: unknown) => isLedgerError('BAD_CONFIG')(e) && /chain id 31337/.test((e as Error).message));
      await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('BAD_CONFIG'));
      assert.equal(l.state, 'error');
    });

    it('no contract at the address -> BAD_CONFIG', async () => {
      const l = ledger(1, {}, c.accounts[9].address);
      await assert.rejects(l.lookup(S, r32()), (e: unknown) => isLedgerError('BAD_CONFIG')(e) && /no contract/.test((e as Error).message));
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
      const rc = await l.anchor(S, r32(), r32());
      const tx = (await c.rpc('eth_getTransactionByHash', [rc.tx])) as { type: string; maxFeePerGas: string };
      assert.equal(Number(tx.type), 2);
      assert.equal(BigInt(tx.maxFeePerGas), 100_000_000_000n);
      const free = ledger(1, { txType: 0, gasPrice: 0 });
      await assert.rejects(free.anchor(S, r32(), r32()), isLedgerError('TX_FAILED'));
      assert.equal(await nonce(1, 'pending'), await nonce(1, 'latest'));
    });

    it('deployRegistry rejects bad writers and a wrong chain', async () => {
      await assert.rejects(deployRegistry({ ...admin(), writers: ['nope'] }), isLedgerError('BAD_INPUT'));
      await assert.rejects(deployRegistry({ ...admin(), chainId: 5 }), isLedgerError('BAD_CONFIG'));
    });
  });
});
