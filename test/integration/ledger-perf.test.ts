/**
 * Issue 9 (ledger side) against a real hardhat node: concurrent anchors coalesced into batch
 * transactions (each caller keeps its own receipts and errors), batched reads
 * (readCTIRecordsMany, lookupMany, coalesced lookups, verifyPayload in one read), per-connection
 * tuning, and the timings of an anchor. The before/after figures printed here are for the
 * report; the assertions are about counts (transactions, eth_calls), never about speed.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbiCoder } from 'ethers';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { ANY_SCOPE, createLedger, LedgerError, registryInterface, bindIdentity, type EvmLedger, type EvmLedgerConfig } from '../../lib/ledger';
import { collectionScope, identityTag, keyForObject } from '../../lib/digest';
import { anchorPayload } from '../../lib/ops/anchor';
import { verifyPayload } from '../../lib/ops/verify';
import { parseLedgerSettings, ledgerConfig } from '../../lib/ops/connections';
import { verifyObject } from '../../lib/verify';
import type { StixObject } from '../../lib/stix';

const r32 = () => '0x' + randomBytes(32).toString('hex');
const ZERO32 = '0x' + '0'.repeat(64);
const COL = 'ledger-perf';
const S = collectionScope(COL);
const OTHER = collectionScope('ledger-perf-other');

function isLedgerError(code: string) {
  return (e: unknown) => {
    assert.ok(e instanceof LedgerError, `expected a LedgerError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

function indicator(i: number): StixObject {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${randomBytes(4).toString('hex')}-0000-4000-8000-${String(i).padStart(12, '0')}`,
    created: '2024-01-01T00:00:00.000Z',
    modified: '2024-01-01T00:00:00.000Z',
    pattern: `[ipv4-addr:value = '198.51.100.${i % 250}']`,
    pattern_type: 'stix',
    valid_from: '2024-01-01T00:00:00Z',
  } as StixObject;
}

describe('EVM ledger throughput: coalescing and batched reads (hardhat)', function () {
  this.timeout(120_000);
  let c: ChainHandle;
  let registry: string;
  const open: EvmLedger[] = [];

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

  const txCount = async (i: number) => Number(BigInt(String(await c.rpc('eth_getTransactionCount', [c.accounts[i].address, 'latest']))));
  const waitFor = async (cond: () => boolean, what: string) => {
    for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(cond(), what);
  };

  before(async function () {
    c = await chain();
    // accounts 1-3: every collection; 4: only COL (for NOT_AUTHORISED isolation)
    registry = await c.deployRegistry({ writers: [c.accounts[1].address, c.accounts[2].address, c.accounts[3].address, { account: c.accounts[4].address, scopes: [S] }] });
  });

  afterEach(async () => {
    await c.setIntervalMining(0);
    await Promise.all(open.splice(0).map((l) => l.close()));
  });

  describe('readCTIRecordsMany (contract)', () => {
    it('answers like readCTIRecords for each query, flat with per-query counts; mismatched arrays revert', async () => {
      const a = ledger(1, { coalesceMs: 0 });
      const b = ledger(4, { coalesceMs: 0 });
      const shared = r32();
      const only = r32();
      await a.anchor(S, shared, r32());
      await b.anchor(S, shared, r32());
      await a.anchor(S, only, r32());
      const id = identityTag('identity--aaaaaaaa-0000-4000-8000-000000000001');
      await bindIdentity({ rpcUrl: c.rpcUrl, chainId: c.chainId, privateKey: c.accounts[0].privateKey }, registry, id, c.accounts[4].address);
      const queries: Array<[string, string, string]> = [
        [S, ZERO32, shared],
        [OTHER, ZERO32, shared],
        [S, id, shared],
        [S, ZERO32, r32()],
        [S, ZERO32, only],
      ];
      const call = async (fn: string, args: unknown[]) =>
        registryInterface.decodeFunctionResult(fn, String(await c.rpc('eth_call', [{ to: registry, data: registryInterface.encodeFunctionData(fn, args) }, 'latest'])));
      const many = await call('readCTIRecordsMany', [queries.map((q) => q[0]), queries.map((q) => q[1]), queries.map((q) => q[2])]);
      const counts = (many[0] as unknown as bigint[]).map(Number);
      const records = many[1] as unknown as unknown[][]; // [writer, hash, timestamp, blockNumber, entitled]
      assert.deepEqual(counts, [2, 2, 2, 0, 1]);
      let j = 0;
      for (let qi = 0; qi < queries.length; qi++) {
        const one = await call('readCTIRecords', queries[qi]);
        for (let i = 0; i < counts[qi]; i++, j++) {
          for (let f = 0; f < 5; f++) assert.equal(String(records[j][f]), String((one[f] as unknown as unknown[])[i]), `query ${qi} anchor ${i} field ${f}`);
        }
      }
      assert.equal(j, records.length);
      // the entitlement of each anchor is judged per query: OTHER scope → only ANY_SCOPE writer 1; bound identity → only 4
      assert.deepEqual(
        records.slice(0, 6).map((r) => r[4]),
        [true, true, true, false, false, true],
      );
      await assert.rejects(c.rpc('eth_call', [{ to: registry, data: registryInterface.encodeFunctionData('readCTIRecordsMany', [[S], [], [shared]]) }, 'latest']), /LengthMismatch|revert/i);
    });
  });

  describe('coalescing concurrent anchors', () => {
    it('50 concurrent anchor() calls become one transaction, each caller with its own receipt and timings', async () => {
      const l = ledger(1);
      const items = Array.from({ length: 50 }, () => ({ key: r32(), hash: r32() }));
      const before = await txCount(1);
      const rcs = await Promise.all(items.map((e) => l.anchor(S, e.key, e.hash)));
      assert.equal((await txCount(1)) - before, 1, 'one transaction');
      assert.equal(l.trafficStats().anchorTxs, 1);
      assert.equal(new Set(rcs.map((r) => r.tx)).size, 1);
      rcs.forEach((r, i) => {
        assert.equal(r.key, items[i].key);
        assert.equal(r.hash, items[i].hash);
        assert.equal(r.existing, undefined);
        const t = r.timings;
        assert.ok(t && t.queued > 0 && t.queued <= t.sent && t.sent <= t.mined, JSON.stringify(t));
      });
      const recs = await l.lookupMany(items.map((e) => ({ scope: S, key: e.key })));
      recs.forEach((rs, i) => assert.deepEqual(rs.map((r) => [r.hash, r.entitled]), [[items[i].hash, true]]));
      // coalesceMs 0: one transaction per call, as before
      const off = ledger(2, { coalesceMs: 0 });
      const b2 = await txCount(2);
      await Promise.all(Array.from({ length: 10 }, () => off.anchor(S, r32(), r32())));
      assert.equal((await txCount(2)) - b2, 10);
    });

    it('anchorMany calls coalesce with anchor calls; receipts follow each call; a full batch goes at once', async () => {
      const l = ledger(1, { maxBatchSize: 30, coalesceMs: 5000 });
      const many = Array.from({ length: 10 }, () => ({ scope: S, key: r32(), hash: r32() }));
      const singles = Array.from({ length: 20 }, () => ({ key: r32(), hash: r32() }));
      const t0 = Date.now();
      const [mr, ...sr] = await Promise.all([l.anchorMany([...many, many[0]]), ...singles.map((e) => l.anchor(S, e.key, e.hash))]);
      assert.ok(Date.now() - t0 < 4000, 'the batch was full (30 entries): sent without waiting for the 5 s window');
      assert.deepEqual(
        mr.map((r) => r.key),
        [...many, many[0]].map((e) => e.key),
      );
      assert.deepEqual(
        sr.map((r) => r.key),
        singles.map((e) => e.key),
      );
      assert.equal(new Set([...mr, ...sr].map((r) => r.tx)).size, 1);
    });

    it("one caller's KEY_TAKEN (pre-read) or NOT_AUTHORISED fails that caller only; a repeat is `existing`", async () => {
      const l = ledger(4); // granted COL only
      const taken = r32();
      const first = await l.anchor(S, taken, r32());
      const others = Array.from({ length: 8 }, () => ({ key: r32(), hash: r32() }));
      const results = await Promise.allSettled([
        l.anchor(S, taken, r32()),
        l.anchor(OTHER, r32(), r32()),
        l.anchor(S, taken, first.hash),
        ...others.map((e) => l.anchor(S, e.key, e.hash)),
      ]);
      assert.equal(results[0].status, 'rejected');
      isLedgerError('KEY_TAKEN')((results[0] as PromiseRejectedResult).reason);
      assert.equal(results[1].status, 'rejected');
      isLedgerError('NOT_AUTHORISED')((results[1] as PromiseRejectedResult).reason);
      const again = results[2] as PromiseFulfilledResult<{ existing?: boolean; tx: string }>;
      assert.equal(again.status, 'fulfilled');
      assert.equal(again.value.existing, true);
      assert.equal(again.value.tx, first.tx);
      const ok = results.slice(3) as Array<PromiseFulfilledResult<{ tx: string; key: string }>>;
      assert.ok(ok.every((r) => r.status === 'fulfilled'));
      assert.equal(new Set(ok.map((r) => r.value.tx)).size, 1, 'the others still share one transaction');
      assert.equal((await l.lookup(S, taken))[0].hash, first.hash, 'write-once per writer holds');
    });

    it('two calls wanting different hashes under one key: the first lands, the other gets KEY_TAKEN; a concurrent repeat reads `existing`', async () => {
      const l = ledger(1);
      const k = r32();
      const [a, b] = await Promise.allSettled([l.anchor(S, k, r32()), l.anchor(S, k, r32())]);
      assert.equal(a.status, 'fulfilled');
      assert.equal(b.status, 'rejected');
      isLedgerError('KEY_TAKEN')((b as PromiseRejectedResult).reason);
      const k2 = r32();
      const h2 = r32();
      const [x, y] = await Promise.all([l.anchor(S, k2, h2), l.anchor(S, k2, h2)]);
      assert.equal(x.existing, undefined);
      assert.equal(y.existing, true, 'the repeat is reported as existing, as when it comes later');
      assert.equal(y.tx, x.tx);
    });

    it('a batch transaction that reverts (a race the pre-read could not see) is re-sent caller by caller', async () => {
      // ledger b (same key and node: the same send queue) anchors k first, still in the mempool
      // when ledger a's batch, with another hash for k, is sent: that batch reverts with KeyTaken
      await c.rpc('evm_setAutomine', [false]);
      const a = ledger(3);
      const b = ledger(3, { coalesceMs: 0 });
      const k = r32();
      const pb = b.anchor(S, k, r32());
      await waitFor(() => b.stats().inFlight === 1, 'b sent');
      const clash = a.anchor(S, k, r32());
      const fine = Array.from({ length: 5 }, () => ({ key: r32(), hash: r32() }));
      const pf = fine.map((e) => a.anchor(S, e.key, e.hash));
      await waitFor(() => a.stats().inFlight === 2, 'the batch sent');
      await c.rpc('evm_mine', []);
      await c.setIntervalMining(100);
      await pb;
      await assert.rejects(clash, isLedgerError('KEY_TAKEN'));
      const rcs = await Promise.all(pf);
      rcs.forEach((r, i) => assert.equal(r.key, fine[i].key));
      assert.ok(a.trafficStats().anchorTxs >= 2, 'the failed batch, then the callers on their own');
      for (const e of fine) assert.equal((await a.lookup(S, e.key))[0]?.hash, e.hash);
    });

    it('precheck off: batches go out unread; a repeat is `existing`, another hash KEY_TAKEN for that caller only (after one reverted batch)', async () => {
      const l = ledger(2, { precheck: false });
      const taken = r32();
      const first = await l.anchor(S, taken, r32());
      const before = await txCount(2);
      const again = await l.anchor(S, taken, first.hash);
      assert.equal(again.existing, true);
      assert.equal(again.tx, first.tx);
      assert.equal((await txCount(2)) - before, 1, 'sent unread: one transaction, its revert explained as the earlier anchor');
      const others = Array.from({ length: 6 }, () => ({ key: r32(), hash: r32() }));
      const results = await Promise.allSettled([l.anchor(S, taken, r32()), ...others.map((e) => l.anchor(S, e.key, e.hash))]);
      isLedgerError('KEY_TAKEN')((results[0] as PromiseRejectedResult).reason);
      assert.ok(results.slice(1).every((r) => r.status === 'fulfilled'));
      for (const e of others) assert.equal((await l.lookup(S, e.key))[0]?.hash, e.hash);
      assert.equal((await l.lookup(S, taken))[0].hash, first.hash, 'write-once per writer holds');
      assert.throws(() => ledger(2, { precheck: 'no' as unknown as boolean }), isLedgerError('BAD_CONFIG'));
    });

    it('closing the ledger settles anchors still in the window (nothing sent)', async () => {
      const l = ledger(1, { coalesceMs: 10_000 });
      const p = l.anchor(S, r32(), r32());
      await new Promise((r) => setTimeout(r, 50));
      await l.close();
      await assert.rejects(p, isLedgerError('TX_FAILED'));
    });
  });

  describe('batched reads', () => {
    it('concurrent lookup() calls become one eth_call; lookupMany splits by readBatchSize; results equal single reads', async () => {
      const w = ledger(2);
      const entries = Array.from({ length: 60 }, () => ({ scope: S, key: r32(), hash: r32() }));
      await w.anchorMany(entries);
      const l = ledger(undefined);
      const unanchored = r32();
      const got = await Promise.all([...entries.map((e) => l.lookup(S, e.key)), l.lookup(S, unanchored)]);
      assert.deepEqual(l.trafficStats(), { reads: 61, readCalls: 1, anchorTxs: 0 });
      const single = ledger(undefined, { coalesceMs: 0 });
      const ref = await Promise.all([...entries.map((e) => single.lookup(S, e.key)), single.lookup(S, unanchored)]);
      assert.deepEqual(got, ref);
      assert.equal(single.trafficStats().readCalls, 61);
      const small = ledger(undefined, { readBatchSize: 25 });
      const many = await small.lookupMany([...entries, ...entries.slice(0, 5)].map((e) => ({ scope: S, key: e.key })));
      assert.equal(small.trafficStats().readCalls, 3, '60 distinct queries / 25 per call');
      assert.deepEqual(many.slice(0, 60), ref.slice(0, 60));
      assert.deepEqual(many.slice(60), ref.slice(0, 5));
      await assert.rejects(small.lookupMany([{ scope: S, key: '0x12' }]), isLedgerError('BAD_INPUT'));
    });

    it('a registry without readCTIRecordsMany (deployed before it): one warning, then reads key by key, same results', async () => {
      // the registry source without that one view, compiled and deployed here
      let dir = __dirname;
      while (!fs.existsSync(path.join(dir, 'contracts', 'evm', 'SetsRegistry.sol'))) {
        assert.notEqual(path.dirname(dir), dir, 'contracts/evm/SetsRegistry.sol not found');
        dir = path.dirname(dir);
      }
      const src = fs.readFileSync(path.join(dir, 'contracts', 'evm', 'SetsRegistry.sol'), 'utf8');
      const from = src.indexOf('    /// @notice readCTIRecords for many');
      const to = src.indexOf('    /// @dev Write the anchors under');
      assert.ok(from > 0 && to > from);
      const old = src.slice(0, from) + src.slice(to);
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- solc-js is a build tool without types
      const solc = require('solc') as { compile(input: string): string };
      const out = JSON.parse(
        solc.compile(
          JSON.stringify({
            language: 'Solidity',
            sources: { 'Old.sol': { content: old } },
            settings: { evmVersion: 'paris', optimizer: { enabled: true, runs: 200 }, outputSelection: { '*': { '*': ['evm.bytecode.object'] } } },
          }),
        ),
      ) as { contracts: Record<string, Record<string, { evm: { bytecode: { object: string } } }>> };
      const bytecode = '0x' + out.contracts['Old.sol'].SetsRegistry.evm.bytecode.object;
      const data = bytecode + AbiCoder.defaultAbiCoder().encode(['address[]', 'bytes32[]'], [[c.accounts[2].address], [ANY_SCOPE]]).slice(2);
      // (the compile blocked this process for seconds: the first request may meet a keep-alive socket the node just closed)
      const rpc = (m: string, p: unknown[]) => c.rpc(m, p).catch(() => c.rpc(m, p));
      const txh = await rpc('eth_sendTransaction', [{ from: c.accounts[0].address, data, gas: '0x' + (6_000_000).toString(16) }]);
      const receipt = (await rpc('eth_getTransactionReceipt', [txh])) as { contractAddress: string };
      const oldRegistry = receipt.contractAddress;
      const warnings: string[] = [];
      const w = ledger(2, { onWarning: (m) => warnings.push(m) }, oldRegistry);
      const entries = Array.from({ length: 12 }, () => ({ scope: S, key: r32(), hash: r32() }));
      const rcs = await Promise.all(entries.map((e) => w.anchor(e.scope, e.key, e.hash)));
      assert.ok(rcs.every((r, i) => r.key === entries[i].key && r.tx === rcs[0].tx), 'anchors still coalesce (the pre-read goes key by key)');
      const got = await w.lookupMany([...entries.map((e) => ({ scope: S, key: e.key })), { scope: S, key: r32() }]);
      assert.deepEqual(
        got.map((rs) => rs.map((r) => r.hash)),
        [...entries.map((e) => [e.hash]), []],
      );
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0], /no readCTIRecordsMany/);
    });

    it('verifyPayload of 40 objects costs one read; a tampered copy is still caught, and a pending one waited for', async () => {
      const producer = ledger(2);
      const objs = Array.from({ length: 40 }, (_, i) => indicator(i));
      const anchored = await anchorPayload(producer, { collection: COL, payload: objs });
      assert.ok(anchored.items.every((it) => it.anchor.timings && it.anchor.timings.queued <= it.anchor.timings.mined), 'timings reach msg.sets items');
      const consumer = ledger(undefined);
      const tampered = { ...objs[7], pattern: "[ipv4-addr:value = '10.6.6.6']" } as StixObject;
      const out = await verifyPayload(consumer, { collection: COL, payload: [...objs, tampered] });
      assert.equal(consumer.trafficStats().readCalls, 1);
      assert.deepEqual(
        out.map((v) => v.verification.status),
        [...objs.map(() => 'verified'), 'mismatch'],
      );
      // each object stays verifiable on its own, with the same verdict
      const alone = await verifyObject(ledger(undefined, { coalesceMs: 0 }), COL, tampered);
      assert.deepEqual(alone, out[40].verification);
      // a pending object: the batched read finds nothing, its wait picks the anchor up
      const late = indicator(99);
      const k = keyForObject(COL, late);
      const waiting = verifyPayload(consumer, { collection: COL, payload: [objs[0], late], waitMs: 20_000 });
      await new Promise((r) => setTimeout(r, 300));
      await producer.anchor(k.scope, k.key, k.hash);
      assert.deepEqual(
        (await waiting).map((v) => v.verification.status),
        ['verified', 'verified'],
      );
    });
  });

  describe('tuning per connection', () => {
    it('settings from raw form values reach the adapter; a second connection with the same key and other in-flight limit is warned', async () => {
      const raw = { rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, coalesceMs: '0', maxBatchSize: '7', maxInFlight: '3', pollMs: '50', confirmations: '1' };
      const cfg = ledgerConfig(parseLedgerSettings(raw), { privateKey: c.accounts[1].privateKey });
      assert.equal(cfg.coalesceMs, 0);
      assert.equal(cfg.maxBatchSize, 7);
      assert.equal(cfg.maxInFlight, 3);
      assert.equal(cfg.waitPollMs, 50);
      assert.equal(cfg.confirmations, 1);
      assert.throws(() => parseLedgerSettings({ ...raw, coalesceMs: '-1' }), /coalescing window \(ms\) must be a whole number between 0 and 10000/);
      assert.throws(() => parseLedgerSettings({ ...raw, maxInFlight: '0' }), /transactions in flight must be/);
      assert.equal(ledgerConfig(parseLedgerSettings({ ...raw, coalesceMs: '' }), {}).coalesceMs, undefined, 'empty keeps the default');
      const warnings: string[] = [];
      const first = ledger(undefined, { ...cfg, onWarning: (m) => warnings.push(m) } as Partial<EvmLedgerConfig>);
      const second = ledger(undefined, { ...cfg, maxInFlight: 9, onWarning: (m) => warnings.push(m) } as Partial<EvmLedgerConfig>);
      const third = ledger(undefined, { ...cfg, coalesceMs: 20, onWarning: (m) => warnings.push(m) } as Partial<EvmLedgerConfig>);
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0], /maxInFlight 9 \(in use: 3\).*same values/);
      // per connection: the batch size of each ledger applies to its own calls
      const before = await txCount(1);
      await first.anchorMany(Array.from({ length: 20 }, () => ({ scope: S, key: r32(), hash: r32() })));
      assert.equal((await txCount(1)) - before, 3, '20 entries in batches of 7');
      await Promise.all(Array.from({ length: 5 }, () => third.anchor(S, r32(), r32())));
      assert.equal((await txCount(1)) - before, 4, 'the third connection coalesces, the first does not');
      assert.equal(second.trafficStats().anchorTxs, 0);
      assert.equal(ANY_SCOPE, ZERO32);
    });
  });

  describe('figures (before = coalesceMs 0, after = default)', () => {
    const N = 500;
    async function anchorRun(i: number, coalesceMs: number): Promise<{ txs: number; perSec: number; ms: number }> {
      const l = ledger(i, { coalesceMs, maxInFlight: 512 });
      const before = await txCount(i);
      const t0 = Date.now();
      await Promise.all(Array.from({ length: N }, () => l.anchor(S, r32(), r32())));
      const ms = Date.now() - t0;
      return { txs: (await txCount(i)) - before, perSec: Math.round((N * 1000) / ms), ms };
    }
    async function readRun(keys: string[], coalesceMs: number): Promise<{ calls: number; perSec: number }> {
      const l = ledger(undefined, { coalesceMs });
      await l.lookup(S, keys[0]); // connected
      const t0 = Date.now();
      await Promise.all(keys.map((k) => l.lookup(S, k)));
      const ms = Date.now() - t0;
      return { calls: l.trafficStats().readCalls - 1, perSec: Math.round((keys.length * 1000) / ms) };
    }

    it(`${N} concurrent single anchors and 2000 concurrent lookups, 1 s blocks`, async function () {
      await c.setIntervalMining(1000);
      const off = await anchorRun(1, 0);
      const on = await anchorRun(2, 20);
      console.log(`      anchors, ${N} concurrent anchor(): before ${off.txs} tx, ${off.perSec}/s (${off.ms} ms); after ${on.txs} tx, ${on.perSec}/s (${on.ms} ms)`);
      assert.equal(off.txs, N);
      assert.ok(on.txs <= Math.ceil(N / 150) + 2, `coalesced into few transactions, got ${on.txs}`);
      await c.setIntervalMining(0);
      const w = ledger(3);
      const keys = Array.from({ length: 2000 }, () => r32());
      for (let i = 0; i < keys.length; i += 150) await w.anchorMany(keys.slice(i, i + 150).map((key) => ({ scope: S, key, hash: r32() })));
      const rOff = await readRun(keys, 0);
      const rOn = await readRun(keys, 20);
      console.log(`      reads, 2000 concurrent lookup(): before ${rOff.calls} eth_calls, ${rOff.perSec}/s; after ${rOn.calls} eth_calls, ${rOn.perSec}/s`);
      assert.equal(rOff.calls, 2000);
      assert.ok(rOn.calls <= 12, `batched, got ${rOn.calls}`);
    });
  });
});
