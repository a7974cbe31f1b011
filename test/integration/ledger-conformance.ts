/**
 * Ledger conformance suite: the adapter-level behaviour every `Ledger` must show, whatever the
 * chain — the same result shapes, error codes and guarantees, so that every node works with either
 * ledger by configuration alone. `runLedgerConformance(harness)` registers the mocha tests; a
 * harness (ledger-conformance-evm.test.ts: hardhat; ledger-conformance-fabric.test.ts: the
 * in-process Fabric gateway emulator) gives fresh registries with named writers, the admin's
 * grants and identity bindings, and a way to make the ledger unreachable and bring it back.
 *
 * Writers are named by letters: each registry grants the ones it is given (ANY_SCOPE unless
 * scopes are listed); any other name is an identity/account the registry never granted.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ANY_SCOPE, LedgerError, type AnchorReceipt, type Ledger } from '../../lib/ledger';
import { verifyObject } from '../../lib/verify';
import { collectionScope, identityTag, keyForObject } from '../../lib/digest';
import type { StixObject } from '../../lib/stix';

export const r32 = (): string => '0x' + randomBytes(32).toString('hex');
const ZERO32 = '0x' + '0'.repeat(64);
/** the collection scope most anchors here are written in */
const S = collectionScope('conformance');

export interface WriterSpec {
  who: string;
  /** collection scopes granted (default: ANY_SCOPE, every collection) */
  scopes?: string[];
}

/** A ledger that can be cut off from its node/peer and brought back. */
export interface Outage {
  ledger: Ledger;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

/** One fresh registry (EVM contract / Fabric channel with the chaincode) and its admin. */
export interface RegistryHandle {
  /** a ledger signing as `who` (requestTimeoutMs etc. in `extra`); closed by the harness after each test */
  ledger(who: string, extra?: Record<string, unknown>): Ledger;
  /** the writer string records and receipts name for `who` */
  writerOf(who: string): string;
  grant(who: string, scope: string): Promise<void>;
  revoke(who: string, scope: string): Promise<void>;
  bind(identity: string, who: string): Promise<void>;
  unbind(identity: string, who: string): Promise<void>;
  /** how many transactions `who` has had ordered/mined so far ("nothing was sent" checks) */
  sent(who: string): Promise<number>;
  /** a ledger of `who` whose node/peer the test can take away and bring back */
  outage(who: string, extra?: Record<string, unknown>): Promise<Outage>;
}

export interface LedgerHarness {
  name: string;
  /** what a receipt's `tx` looks like */
  txPattern: RegExp;
  /** lookups report the block of each anchor (EVM: yes; Fabric: the transaction id is known, not the block) */
  recordsHaveBlocks: boolean;
  /**
   * a ledger configured without a signing key: EVM gives a read-only ledger (reads work, writes
   * BAD_CONFIG); Fabric refuses the configuration (BAD_CONFIG: a peer answers only signed proposals)
   */
  readOnly(reg: RegistryHandle): Ledger | LedgerError;
  /** a fresh registry granting `writers`; `blockMs` 0 = a block per transaction (EVM automine; Fabric 100 ms) */
  registry(writers: WriterSpec[], opts?: { blockMs?: number }): Promise<RegistryHandle>;
  /** a ledger of `who` pointed at a closed port */
  unreachable(reg: RegistryHandle, who: string): Promise<Ledger>;
  /** waiters and event listeners/streams of a ledger (0/0 when idle) */
  idle(l: Ledger): { waiters: number; listeners: number };
  /** after each test: close ledgers, restore block timing */
  afterEach(): Promise<void>;
  /** after all: stop what the harness started */
  after(): Promise<void>;
}

export function isLedgerError(code: string) {
  return (e: unknown): true => {
    assert.ok(e instanceof LedgerError, `expected a LedgerError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

/** a receipt without its timings (they differ between a write and its later `existing` report) */
function sansTimings(r: AnchorReceipt): Omit<AnchorReceipt, 'timings'> {
  const { timings: _t, ...rest } = r;
  return rest;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function runLedgerConformance(h: LedgerHarness): void {
  describe(`ledger conformance: ${h.name}`, function () {
    this.timeout(60_000);
    afterEach(() => h.afterEach());
    after(() => h.after());

    describe('anchor / lookup', () => {
      let reg: RegistryHandle;
      before(async () => {
        reg = await h.registry([{ who: 'A' }, { who: 'B' }, { who: 'C' }, { who: 'D', scopes: [S] }]);
      });

      it('lookup: [] when absent, the record when present; any hex case; entitlement judged for the scope asked about', async () => {
        const l = reg.ledger('A');
        const k = r32();
        const h1 = r32();
        assert.deepEqual(await l.lookup(S, k), []);
        const t0 = Math.floor(Date.now() / 1000);
        const rc = await l.anchor(S, k, h1);
        assert.equal(rc.key, k);
        assert.equal(rc.hash, h1);
        assert.equal(rc.writer, reg.writerOf('A'));
        assert.match(rc.tx, h.txPattern);
        assert.ok(rc.block > 0, `block ${rc.block}`);
        assert.equal(rc.existing, undefined);
        assert.ok(rc.timings && rc.timings.queued <= rc.timings.sent && rc.timings.sent <= rc.timings.mined, JSON.stringify(rc.timings));
        const recs = await l.lookup(S, k);
        assert.equal(recs.length, 1);
        const { timestamp, block, ...rest } = recs[0];
        assert.deepEqual(rest, { key: k, hash: h1, writer: reg.writerOf('A'), entitled: true });
        assert.ok(Math.abs(timestamp - t0) <= 120, `timestamp ${timestamp} near ${t0}`);
        assert.equal(block, h.recordsHaveBlocks ? rc.block : undefined);
        const upper = (x: string) => x.toUpperCase().replace('0X', '0x');
        assert.equal((await l.lookup(upper(S), upper(k)))[0]?.hash, h1);
        // judged for another collection: A holds ANY_SCOPE, so it counts there too; D (granted S only) does not
        assert.deepEqual((await l.lookup(collectionScope('elsewhere'), k)).map((r) => r.entitled), [true]);
        const kd = r32();
        await reg.ledger('D').anchor(S, kd, h1);
        assert.deepEqual((await l.lookup(S, kd)).map((r) => r.entitled), [true]);
        assert.deepEqual((await l.lookup(collectionScope('elsewhere'), kd)).map((r) => r.entitled), [false]);
      });

      it('per-writer records: two writers, one key, different hashes: both written, no KEY_TAKEN, read in write order', async () => {
        const k = r32();
        const [h1, h2] = [r32(), r32()];
        const a = await reg.ledger('A').anchor(S, k, h1);
        const b = await reg.ledger('B').anchor(S, k, h2);
        assert.equal(b.existing, undefined);
        assert.equal(b.writer, reg.writerOf('B'));
        assert.notEqual(b.tx, a.tx);
        const recs = await reg.ledger('C').lookup(S, k);
        assert.deepEqual(
          recs.map((r) => [r.writer, r.hash, r.entitled]),
          [
            [reg.writerOf('A'), h1, true],
            [reg.writerOf('B'), h2, true],
          ],
        );
        // a batch by a third writer is not blocked either
        const [rc] = await reg.ledger('C').anchorMany([{ scope: S, key: k, hash: r32() }, { scope: S, key: r32(), hash: r32() }]);
        assert.equal(rc.existing, undefined);
        assert.equal((await reg.ledger('A').lookup(S, k)).length, 3);
      });

      it('same key and hash again -> existing (nothing sent); a different hash -> KEY_TAKEN (nothing sent)', async () => {
        const l = reg.ledger('A');
        const k = r32();
        const hh = r32();
        const first = await l.anchor(S, k, hh);
        const before = await reg.sent('A');
        const again = await l.anchor(S, k, hh);
        assert.deepEqual(sansTimings(again), { ...sansTimings(first), existing: true });
        await assert.rejects(l.anchor(S, k, r32()), (e: unknown) => isLedgerError('KEY_TAKEN')(e) && (e as LedgerError).key === k && (e as Error).message.includes(k));
        // the same hash named under another collection is `existing` too: entitlement is judged at read time
        assert.deepEqual(sansTimings(await l.anchor(collectionScope('elsewhere'), k, hh)), { ...sansTimings(first), existing: true });
        assert.deepEqual((await l.anchorMany([{ scope: collectionScope('elsewhere'), key: k, hash: hh }])).map(sansTimings), [{ ...sansTimings(first), existing: true }]);
        assert.equal(await reg.sent('A'), before, 'nothing sent');
      });

      it('anchorMany writes a batch in one transaction and reports existing entries', async () => {
        const l = reg.ledger('A');
        const old = { scope: S, key: r32(), hash: r32() };
        const oldRc = await l.anchor(S, old.key, old.hash);
        const fresh = Array.from({ length: 5 }, () => ({ scope: S, key: r32(), hash: r32() }));
        const rcs = await l.anchorMany([fresh[0], old, ...fresh.slice(1), fresh[2]]);
        assert.equal(rcs.length, 7);
        assert.deepEqual(sansTimings(rcs[1]), { ...sansTimings(oldRc), existing: true });
        assert.equal(new Set([0, 2, 3, 4, 5, 6].map((i) => rcs[i].tx)).size, 1, 'one transaction for the batch');
        assert.deepEqual(rcs[6], rcs[3], 'a duplicate entry gets the same receipt');
        const recs = await l.lookupMany?.(fresh.map((e) => ({ scope: S, key: e.key })));
        assert.deepEqual(recs?.map((r) => r[0]?.hash), fresh.map((e) => e.hash), 'lookupMany in query order');
      });

      it('anchorMany with a key holding a different hash rejects KEY_TAKEN and writes nothing', async () => {
        const l = reg.ledger('A');
        const taken = { scope: S, key: r32(), hash: r32() };
        await l.anchor(S, taken.key, taken.hash);
        const fresh = [
          { scope: S, key: r32(), hash: r32() },
          { scope: S, key: r32(), hash: r32() },
        ];
        await assert.rejects(l.anchorMany([fresh[0], { scope: S, key: taken.key, hash: r32() }, fresh[1]]), isLedgerError('KEY_TAKEN'));
        for (const e of fresh) assert.deepEqual(await l.lookup(S, e.key), []);
        await assert.rejects(l.anchorMany([{ scope: S, key: fresh[0].key, hash: r32() }, { scope: S, key: fresh[0].key, hash: r32() }]), isLedgerError('BAD_INPUT'));
        assert.deepEqual(await l.anchorMany([]), []);
      });

      it('concurrent anchor() calls coalesced together: one caller\'s KEY_TAKEN does not fail the others', async () => {
        const l = reg.ledger('B');
        const taken = { key: r32(), hash: r32() };
        await l.anchor(S, taken.key, taken.hash);
        const good = Array.from({ length: 8 }, () => ({ key: r32(), hash: r32() }));
        const out = await Promise.allSettled([...good.slice(0, 4).map((e) => l.anchor(S, e.key, e.hash)), l.anchor(S, taken.key, r32()), ...good.slice(4).map((e) => l.anchor(S, e.key, e.hash))]);
        assert.equal(out[4].status, 'rejected');
        isLedgerError('KEY_TAKEN')((out[4] as PromiseRejectedResult).reason);
        const ok = [...out.slice(0, 4), ...out.slice(5)];
        assert.ok(ok.every((o) => o.status === 'fulfilled'), JSON.stringify(ok.map((o) => (o.status === 'rejected' ? String(o.reason) : 'ok'))));
        const recs = await l.lookupMany?.(good.map((e) => ({ scope: S, key: e.key })));
        assert.deepEqual(recs?.map((r) => r[0]?.hash), good.map((e) => e.hash));
        // a concurrent repeat of the same (key, hash) is `existing`, another hash KEY_TAKEN
        const k = r32();
        const hh = r32();
        const [x, y, z] = await Promise.allSettled([l.anchor(S, k, hh), l.anchor(S, k, hh), l.anchor(S, k, r32())]);
        assert.equal(x.status, 'fulfilled');
        assert.equal(y.status === 'fulfilled' && y.value.existing, true);
        assert.equal(z.status, 'rejected');
        isLedgerError('KEY_TAKEN')((z as PromiseRejectedResult).reason);
      });

      it('rejects malformed scopes, keys and hashes, and the zero scope in a write, with BAD_INPUT', async () => {
        const l = reg.ledger('A');
        for (const bad of ['', '0x12', r32().slice(2), r32() + '00', '0x' + 'g'.repeat(64)]) {
          await assert.rejects(l.anchor(S, bad, r32()), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.anchor(S, r32(), bad), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.anchor(bad, r32(), r32()), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.lookup(S, bad), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.lookup(bad, r32()), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.lookup(S, r32(), bad), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.waitForAnchor(S, r32(), 100, bad), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.waitForAnchor(bad, r32(), 100), isLedgerError('BAD_INPUT'));
          await assert.rejects(l.writerStatus(bad), isLedgerError('BAD_INPUT'));
        }
        await assert.rejects(l.anchor(S, r32(), ZERO32), isLedgerError('BAD_INPUT'));
        await assert.rejects(l.anchor(ANY_SCOPE, r32(), r32()), (e: unknown) => isLedgerError('BAD_INPUT')(e) && /never ANY_SCOPE/.test((e as Error).message));
        await assert.rejects(l.anchorMany([{ scope: S, key: r32(), hash: 'nope' }]), isLedgerError('BAD_INPUT'));
        await assert.rejects(l.anchorMany([{ key: r32(), hash: r32() } as never]), isLedgerError('BAD_INPUT'));
        await assert.rejects(l.anchorMany([{ scope: ANY_SCOPE, key: r32(), hash: r32() }]), isLedgerError('BAD_INPUT'));
        await assert.rejects(l.anchorMany('nope' as never), isLedgerError('BAD_INPUT'));
        await assert.rejects(l.lookupMany?.([{ scope: S, key: 'nope' }]) ?? Promise.reject(new LedgerError('BAD_INPUT', 'no lookupMany')), isLedgerError('BAD_INPUT'));
      });

      it('without a signing key: read-only (anchors and writerStatus BAD_CONFIG) or refused as configuration (BAD_CONFIG)', async () => {
        const ro = h.readOnly(reg);
        if (ro instanceof LedgerError) {
          isLedgerError('BAD_CONFIG')(ro);
          assert.match(ro.message, /privateKey|private key|signing key/i);
          return;
        }
        assert.deepEqual(await ro.lookup(S, r32()), []);
        await assert.rejects(ro.anchor(S, r32(), r32()), (e: unknown) => isLedgerError('BAD_CONFIG')(e) && /no signing key/.test((e as Error).message));
        await assert.rejects(ro.writerStatus(), isLedgerError('BAD_CONFIG'));
      });
    });

    describe('roles', () => {
      const [mine, theirs] = [collectionScope('bound-mine'), collectionScope('bound-theirs')];
      let reg: RegistryHandle;
      before(async () => {
        reg = await h.registry([{ who: 'A' }, { who: 'B' }, { who: 'F', scopes: [mine] }, { who: 'G' }]);
      });

      it('an identity/account not granted anything -> NOT_AUTHORISED, without sending a transaction', async () => {
        const l = reg.ledger('X');
        const before = await reg.sent('X');
        await assert.rejects(l.anchor(S, r32(), r32()), (e: unknown) => isLedgerError('NOT_AUTHORISED')(e) && (e as Error).message.includes(S) && /grantwriter\(/i.test((e as Error).message));
        await assert.rejects(l.anchorMany([{ scope: S, key: r32(), hash: r32() }]), isLedgerError('NOT_AUTHORISED'));
        assert.equal(await reg.sent('X'), before);
        assert.deepEqual(await l.writerStatus(), { account: reg.writerOf('X'), anyScope: false, inScope: false });
      });

      it('a writer bound to one collection: anchors there, NOT_AUTHORISED in another (nothing sent); writerStatus says where', async () => {
        const l = reg.ledger('F');
        assert.deepEqual(await l.writerStatus(mine), { account: reg.writerOf('F'), anyScope: false, inScope: true });
        assert.deepEqual(await l.writerStatus(theirs), { account: reg.writerOf('F'), anyScope: false, inScope: false });
        assert.deepEqual(await l.writerStatus(), { account: reg.writerOf('F'), anyScope: false, inScope: false });
        assert.deepEqual(await reg.ledger('G').writerStatus(theirs), { account: reg.writerOf('G'), anyScope: true, inScope: true });
        const k = r32();
        const rc = await l.anchor(mine, k, r32());
        assert.equal(rc.writer, reg.writerOf('F'));
        const before = await reg.sent('F');
        await assert.rejects(l.anchor(theirs, r32(), r32()), (e: unknown) => {
          isLedgerError('NOT_AUTHORISED')(e);
          const m = (e as Error).message;
          assert.ok(m.includes(theirs) && /grantwriter\(/i.test(m), m);
          return true;
        });
        // a batch mixing both scopes is refused whole
        const mixed = [
          { scope: mine, key: r32(), hash: r32() },
          { scope: theirs, key: r32(), hash: r32() },
        ];
        await assert.rejects(l.anchorMany(mixed), isLedgerError('NOT_AUTHORISED'));
        assert.equal(await reg.sent('F'), before);
        assert.deepEqual(await l.lookup(mine, mixed[0].key), []);
      });

      it('revoking stops a writer; its anchor stays but no longer counts; granting again restores it', async () => {
        const l = reg.ledger('B');
        const k = r32();
        await l.anchor(S, k, r32());
        assert.deepEqual((await l.lookup(S, k)).map((r) => r.entitled), [true]);
        await reg.revoke('B', ANY_SCOPE);
        // a ledger that checked the grant moments ago may send, the registry refuses: either way NOT_AUTHORISED
        await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('NOT_AUTHORISED'));
        await assert.rejects(reg.ledger('B').anchor(S, r32(), r32()), isLedgerError('NOT_AUTHORISED'));
        assert.deepEqual((await l.lookup(S, k)).map((r) => [r.writer, r.entitled]), [[reg.writerOf('B'), false]]);
        await reg.grant('B', S);
        assert.deepEqual((await l.lookup(S, k)).map((r) => r.entitled), [true]);
        assert.deepEqual((await l.lookup(collectionScope('elsewhere'), k)).map((r) => r.entitled), [false]);
      });
    });

    describe('producer identity binding', () => {
      const col = collectionScope('bind-collection');
      const newIdentity = () => identityTag(`identity--${randomBytes(16).toString('hex')}`);
      let reg: RegistryHandle;
      before(async () => {
        reg = await h.registry([
          { who: 'A', scopes: [col] },
          { who: 'B', scopes: [col] },
          { who: 'C', scopes: [collectionScope('bind-elsewhere')] },
        ]);
      });

      it('unbound identity: any collection writer entitled; bound: only bound writers; unbinding the last: unbound again', async () => {
        const id = newIdentity();
        const k = r32();
        const hh = r32();
        await reg.ledger('A').anchor(col, k, hh);
        await reg.ledger('B').anchor(col, k, hh);
        const reader = reg.ledger('C');
        const flags = async (identity?: string) => (await reader.lookup(col, k, identity)).map((r) => r.entitled);
        assert.deepEqual(await flags(), [true, true]);
        assert.deepEqual(await flags(id), [true, true], 'unbound: the collection grant decides');
        assert.deepEqual(await flags(ZERO32), [true, true], 'the zero identity is "no creator named"');
        await reg.bind(id, 'A');
        assert.deepEqual(await flags(id), [true, false], 'bound to A: B (same collection) no longer counts for this creator');
        assert.deepEqual(await flags(), [true, true], 'no creator named: collection entitlement only');
        assert.deepEqual(await flags(newIdentity()), [true, true], 'another identity stays unbound');
        assert.deepEqual(await flags(id.toUpperCase().replace('0X', '0x')), [true, false], 'any hex case');
        // bound, but not granted the collection: not entitled there
        await reg.bind(id, 'C');
        const kc = r32();
        await reg.ledger('C').anchor(collectionScope('bind-elsewhere'), kc, hh);
        assert.deepEqual((await reader.lookup(col, kc, id)).map((r) => r.entitled), [false]);
        await reg.bind(id, 'B');
        assert.deepEqual(await flags(id), [true, true]);
        await reg.unbind(id, 'A');
        assert.deepEqual(await flags(id), [false, true], 'A unbound while others stay bound: A no longer counts');
        await reg.unbind(id, 'B');
        await reg.unbind(id, 'C');
        assert.deepEqual(await flags(id), [true, true], 'no binding left: unbound again, the collection grant decides');
        const many = await reader.lookupMany?.([
          { scope: col, key: k, identity: id },
          { scope: col, key: k },
        ]);
        assert.deepEqual(many?.map((rs) => rs.length), [2, 2]);
      });
    });

    describe('waitForAnchor', () => {
      it('resolves at once when already anchored', async () => {
        const reg = await h.registry([{ who: 'A' }]);
        const l = reg.ledger('A');
        const k = r32();
        const hh = r32();
        await l.anchor(S, k, hh);
        assert.equal((await l.waitForAnchor(S, k, 5000))[0]?.hash, hh);
        assert.equal((await l.waitForAnchor(S, k, 0))[0]?.hash, hh);
        assert.deepEqual(h.idle(l), { waiters: 0, listeners: 0 });
      });

      it('resolves when the anchor lands later (1 s blocks), for every waiter of the key', async () => {
        const reg = await h.registry([{ who: 'A' }, { who: 'R' }], { blockMs: 1000 });
        const reader = reg.ledger('R');
        const writer = reg.ledger('A');
        const k = r32();
        const hh = r32();
        const waits = [reader.waitForAnchor(S, k, 15_000), reader.waitForAnchor(S, k, 15_000), reader.waitForAnchor(S, r32(), 15_000)];
        await sleep(300);
        assert.equal(h.idle(reader).waiters, 3);
        const rc = await writer.anchor(S, k, hh);
        const [a, b] = await Promise.all(waits.slice(0, 2));
        assert.equal(a[0]?.hash, hh);
        assert.equal(b[0]?.writer, reg.writerOf('A'));
        assert.ok(rc.block > 0);
        assert.equal(h.idle(reader).waiters, 1, 'the waiter of the other key still waits');
        await reader.close();
        await assert.rejects(waits[2], isLedgerError('TIMEOUT'));
        assert.deepEqual(h.idle(reader), { waiters: 0, listeners: 0 });
      });

      it('ignores an anchor that is not entitled and resolves on the entitled one', async () => {
        const [mine, theirs] = [collectionScope('wait-mine'), collectionScope('wait-theirs')];
        const reg = await h.registry([{ who: 'F', scopes: [theirs] }, { who: 'G', scopes: [mine] }], { blockMs: 700 });
        const reader = reg.ledger('R');
        const k = r32();
        const hh = r32();
        let settled = false;
        const w = reader.waitForAnchor(mine, k, 20_000).then((recs) => {
          settled = true;
          return recs;
        });
        // a writer not granted `mine` anchors under the key (for its own collection): no wake-up
        await reg.ledger('F').anchor(theirs, k, r32());
        await sleep(1500);
        assert.equal(settled, false, 'an anchor that is not entitled does not end the wait');
        assert.equal(h.idle(reader).waiters, 1);
        await reg.ledger('G').anchor(mine, k, hh);
        const recs = await w;
        assert.deepEqual(
          recs.map((x) => [x.writer, x.entitled]),
          [
            [reg.writerOf('F'), false],
            [reg.writerOf('G'), true],
          ],
        );
        assert.equal(recs[1].hash, hh);
        assert.deepEqual(h.idle(reader), { waiters: 0, listeners: 0 });
      });

      it('with a creator identity: ignores an anchor by a writer not bound to it and resolves on the bound one; at the deadline returns the unbound one', async () => {
        const col = collectionScope('wait-identity');
        const reg = await h.registry([{ who: 'F', scopes: [col] }, { who: 'G', scopes: [col] }], { blockMs: 700 });
        const id = identityTag(`identity--${randomBytes(16).toString('hex')}`);
        await reg.bind(id, 'G');
        const reader = reg.ledger('R');
        const k = r32();
        const hh = r32();
        let settled = false;
        const w = reader.waitForAnchor(col, k, 20_000, id).then((recs) => {
          settled = true;
          return recs;
        });
        // a waiter on the same key without a creator: any writer of the collection ends its wait
        const plain = reader.waitForAnchor(col, k, 20_000);
        await reg.ledger('F').anchor(col, k, r32());
        assert.deepEqual((await plain).map((x) => [x.writer, x.entitled]), [[reg.writerOf('F'), true]]);
        await sleep(1000);
        assert.equal(settled, false, 'an anchor by an unbound writer does not end the wait');
        assert.equal(h.idle(reader).waiters, 1);
        await reg.ledger('G').anchor(col, k, hh);
        const recs = await w;
        assert.deepEqual(
          recs.map((x) => [x.writer, x.hash === hh, x.entitled]),
          [
            [reg.writerOf('F'), false, false],
            [reg.writerOf('G'), true, true],
          ],
        );
        assert.deepEqual(h.idle(reader), { waiters: 0, listeners: 0 });
        assert.equal((await reader.waitForAnchor(col, k, 5000, id)).length, 2);
        const k2 = r32();
        await reg.ledger('F').anchor(col, k2, r32());
        const t0 = Date.now();
        const late = await reader.waitForAnchor(col, k2, 600, id);
        assert.ok(Date.now() - t0 >= 550, 'waited to the deadline');
        assert.deepEqual(late.map((x) => [x.writer, x.entitled]), [[reg.writerOf('F'), false]]);
      });

      it('at the deadline, the final read returns what is there: only anchors that are not entitled', async () => {
        const other = collectionScope('wait-other');
        const reg = await h.registry([{ who: 'F', scopes: [other] }]);
        const k = r32();
        await reg.ledger('F').anchor(other, k, r32());
        const reader = reg.ledger('R');
        const t0 = Date.now();
        const recs = await reader.waitForAnchor(S, k, 600);
        assert.ok(Date.now() - t0 >= 550, 'waited to the deadline');
        assert.deepEqual(recs.map((x) => [x.writer, x.entitled]), [[reg.writerOf('F'), false]]);
      });

      it('times out with [] and leaves no listener behind', async () => {
        const reg = await h.registry([{ who: 'A' }]);
        const l = reg.ledger('R');
        const results = await Promise.all(Array.from({ length: 20 }, () => l.waitForAnchor(S, r32(), 300)));
        assert.deepEqual(results, Array(20).fill([]));
        assert.deepEqual(h.idle(l), { waiters: 0, listeners: 0 });
      });
    });

    describe('load', () => {
      it('500 concurrent anchor() calls and anchorMany(500) all land (1 s blocks)', async function () {
        this.timeout(120_000);
        const reg = await h.registry([{ who: 'A' }], { blockMs: 1000 });
        const l = reg.ledger('A');
        const n = 500;
        const items = Array.from({ length: n }, () => ({ scope: S, key: r32(), hash: r32() }));
        let t0 = Date.now();
        const rcs = await Promise.all(items.map((e) => l.anchor(S, e.key, e.hash)));
        const dt = Date.now() - t0;
        assert.equal(rcs.length, n);
        rcs.forEach((r, i) => assert.equal(r.key, items[i].key));
        t0 = Date.now();
        const batch = Array.from({ length: n }, () => ({ scope: S, key: r32(), hash: r32() }));
        const brcs = await l.anchorMany(batch);
        const dtBatch = Date.now() - t0;
        assert.equal(brcs.length, n);
        const all = [...items, ...batch];
        const looked = await (l.lookupMany as NonNullable<Ledger['lookupMany']>)(all.map((e) => ({ scope: S, key: e.key })));
        looked.forEach((recs, i) => assert.equal(recs[0]?.hash, all[i].hash));
        console.log(`      ${h.name}: 500 concurrent anchor() in ${dt} ms (${new Set(rcs.map((r) => r.tx)).size} transactions); anchorMany(500) in ${dtBatch} ms (${new Set(brcs.map((r) => r.tx)).size})`);
      });
    });

    describe('outages', () => {
      it('an unreachable endpoint -> UNREACHABLE, state disconnected, no crash', async function () {
        this.timeout(20_000);
        const reg = await h.registry([{ who: 'A' }]);
        const l = await h.unreachable(reg, 'A');
        const states: string[] = [];
        l.onState((s) => states.push(s));
        await assert.rejects(l.lookup(S, r32()), isLedgerError('UNREACHABLE'));
        await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('UNREACHABLE'));
        await assert.rejects(l.waitForAnchor(S, r32(), 1000), isLedgerError('UNREACHABLE'));
        assert.equal(l.state, 'disconnected');
        assert.ok(states.includes('disconnected'));
      });

      it('the node/peer goes away and comes back: UNREACHABLE meanwhile, then connected again and anchoring', async function () {
        this.timeout(30_000);
        const reg = await h.registry([{ who: 'A' }]);
        const o = await reg.outage('A', { requestTimeoutMs: 1000, healthCheckMs: 200 });
        try {
          const l = o.ledger;
          await l.anchor(S, r32(), r32());
          assert.equal(l.state, 'connected');
          await o.down();
          await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('UNREACHABLE'));
          await assert.rejects(l.lookup(S, r32()), isLedgerError('UNREACHABLE'));
          assert.equal(l.state, 'disconnected');
          const back = new Promise<void>((resolve) => {
            const off = l.onState((s) => {
              if (s === 'connected') {
                off();
                resolve();
              }
            });
          });
          await o.up();
          await back;
          const k = r32();
          await l.anchor(S, k, r32());
          assert.equal((await l.lookup(S, k)).length, 1);
        } finally {
          await o.close();
        }
      });

      it('a waiter survives an outage during its wait (its event source reconnects) and resolves on a later anchor', async function () {
        this.timeout(30_000);
        const reg = await h.registry([{ who: 'A' }]);
        const o = await reg.outage('R', { requestTimeoutMs: 1000, healthCheckMs: 200, pollMs: 200, waitPollMs: 200 });
        try {
          const k = r32();
          const hh = r32();
          const w = o.ledger.waitForAnchor(S, k, 20_000);
          await sleep(300);
          await o.down();
          await sleep(800);
          await o.up();
          await sleep(500);
          await reg.ledger('A').anchor(S, k, hh);
          assert.equal((await w)[0]?.hash, hh);
          assert.deepEqual(h.idle(o.ledger), { waiters: 0, listeners: 0 });
        } finally {
          await o.close();
        }
      });
    });

    describe('verifyObject over the ledger', () => {
      const indicator = JSON.parse(fs.readFileSync(path.join(__dirname, '../fixtures/stix/indicator.json'), 'utf8')) as StixObject;
      const newId = () => `indicator--${randomBytes(16).toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-')}`;

      it('verified, mismatch, not-anchored, and pending resolved by waiting', async () => {
        const reg = await h.registry([{ who: 'A' }], { blockMs: 1000 });
        const l = reg.ledger('A');
        const collection = `collection-${randomBytes(4).toString('hex')}`;
        const { scope, key, hash } = keyForObject(collection, indicator);
        assert.equal((await verifyObject(l, collection, indicator)).status, 'not-anchored');
        await l.anchor(scope, key, hash);
        const ok = await verifyObject(l, collection, indicator);
        assert.equal(ok.status, 'verified');
        assert.equal(ok.writer, reg.writerOf('A'));
        const tampered = { ...indicator, pattern: "[ipv4-addr:value = '10.0.0.1']" };
        assert.equal((await verifyObject(l, collection, tampered)).status, 'mismatch');
        const other = `collection-${randomBytes(4).toString('hex')}`;
        const pending = verifyObject(l, other, indicator, { waitMs: 15_000 });
        const o = keyForObject(other, indicator);
        await l.anchor(o.scope, o.key, o.hash);
        assert.equal((await pending).status, 'verified');
      });

      it('an object naming its creator: bound to A, anchored only by B → wrong-writer; by A → verified; without created_by_ref → the collection grant alone', async () => {
        const collection = `collection-${randomBytes(4).toString('hex')}`;
        const scope = collectionScope(collection);
        const creator = `identity--${randomBytes(16).toString('hex')}`;
        const reg = await h.registry([{ who: 'A', scopes: [scope] }, { who: 'B', scopes: [scope] }], { blockMs: 700 });
        await reg.bind(identityTag(creator), 'A');
        const [la, lb] = [reg.ledger('A'), reg.ledger('B')];
        const reader = reg.ledger('R');
        const obj = { ...indicator, id: newId(), created_by_ref: creator } as StixObject;
        const o = keyForObject(collection, obj);
        await lb.anchor(o.scope, o.key, o.hash);
        const wrong = await verifyObject(reader, collection, obj);
        assert.equal(wrong.status, 'wrong-writer', wrong.reason);
        assert.equal(wrong.writer, reg.writerOf('B'));
        assert.equal(wrong.creator, creator);
        assert.match(wrong.reason ?? '', new RegExp(`or for its creator ${creator}`));
        await la.anchor(o.scope, o.key, o.hash);
        const ok = await verifyObject(reader, collection, obj);
        assert.equal(ok.status, 'verified');
        assert.equal(ok.writer, reg.writerOf('A'));
        assert.deepEqual(ok.anchors?.map((x) => [x.writer, x.entitled]), [
          [reg.writerOf('B'), false],
          [reg.writerOf('A'), true],
        ]);
        const forged = { ...obj, pattern: "[ipv4-addr:value = '10.6.6.6']" } as StixObject;
        assert.equal((await verifyObject(reader, collection, forged)).status, 'mismatch');
        const plain = { ...indicator, id: newId() } as StixObject;
        const p = keyForObject(collection, plain);
        await lb.anchor(p.scope, p.key, p.hash);
        const vp = await verifyObject(reader, collection, plain);
        assert.equal(vp.status, 'verified');
        assert.equal(vp.writer, reg.writerOf('B'));
        // waiting: a pending object naming the creator resolves on A's anchor only
        const later = { ...obj, modified: '2020-01-01T00:00:00.000Z' } as StixObject;
        const lk = keyForObject(collection, later);
        const pending = verifyObject(reader, collection, later, { waitMs: 20_000 });
        await lb.anchor(lk.scope, lk.key, lk.hash);
        await la.anchor(lk.scope, lk.key, lk.hash);
        const vl = await pending;
        assert.equal(vl.status, 'verified');
        assert.equal(vl.writer, reg.writerOf('A'));
      });
    });
  });
}
