/**
 * lib/verify's decision over the anchors a ledger returns (issue 11.1): only anchors by writers
 * entitled to vouch for the collection count; a squatted key gives `conflict`, never `verified`;
 * anchors only by other writers give `wrong-writer`. The ledger here is a table of records that
 * behaves as the Ledger interface documents (the EVM registry itself is exercised end to end in
 * test/integration/tampering.test.ts and ledger.test.ts).
 */
import { strict as assert } from 'node:assert';
import { identityTag, keyForObject } from '../../lib/digest';
import {
  LedgerError,
  type AnchorEntry,
  type AnchorReceipt,
  type Ledger,
  type LedgerRecord,
  type LookupQuery,
  type WriterStatus,
} from '../../lib/ledger/ledger';
import { overallStatus, verifyPayload } from '../../lib/ops/verify';
import { isRejection, verifyObject } from '../../lib/verify';
import type { StixObject } from '../../lib/stix';

const COL = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';
const HONEST = '0x1111111111111111111111111111111111111111';
const ROGUE = '0x2222222222222222222222222222222222222222';
const OUTSIDER = '0x3333333333333333333333333333333333333333';

/**
 * Anchors by key, in write order; `entitled` judged at read time as documented: the writer is
 * granted the scope asked about now (the scope named when writing is not kept, as on chain) and,
 * when the read names a creator identity bound to accounts, is one of them.
 */
class TableLedger implements Ledger {
  readonly state = 'connected' as const;
  readonly rows = new Map<string, Array<{ writer: string; hash: string }>>();
  readonly grants = new Map<string, Set<string>>(); // writer -> scopes
  readonly bindings = new Map<string, Set<string>>(); // identity tag -> accounts
  reads = 0;
  failReads = 0;
  /** identity tags the reads named (undefined: none) */
  readonly identities: Array<string | undefined> = [];
  put(writer: string, _scope: string, key: string, hash: string): void {
    const list = this.rows.get(key) ?? [];
    list.push({ writer, hash });
    this.rows.set(key, list);
  }
  bind(identity: string, account: string): void {
    const s = this.bindings.get(identity) ?? new Set<string>();
    s.add(account);
    this.bindings.set(identity, s);
  }
  grant(writer: string, scope: string): void {
    const s = this.grants.get(writer) ?? new Set<string>();
    s.add(scope);
    this.grants.set(writer, s);
  }
  async lookup(scope: string, key: string, identity?: string): Promise<LedgerRecord[]> {
    this.reads++;
    this.identities.push(identity);
    if (this.failReads > 0) {
      this.failReads--;
      throw new LedgerError('UNREACHABLE', 'node down (test)');
    }
    return (this.rows.get(key) ?? []).map((r) => ({
      key,
      hash: r.hash,
      writer: r.writer,
      timestamp: 1_700_000_000,
      entitled: (this.grants.get(r.writer)?.has(scope) ?? false) && this.boundOk(identity, r.writer),
    }));
  }
  private boundOk(identity: string | undefined, writer: string): boolean {
    const bound = identity === undefined ? undefined : this.bindings.get(identity);
    return bound === undefined || bound.size === 0 || bound.has(writer);
  }
  async waitForAnchor(scope: string, key: string, _timeoutMs: number, identity?: string): Promise<LedgerRecord[]> {
    return this.lookup(scope, key, identity);
  }
  anchor(): Promise<AnchorReceipt> {
    throw new Error('not used');
  }
  anchorMany(_e: AnchorEntry[]): Promise<AnchorReceipt[]> {
    throw new Error('not used');
  }
  writerStatus(): Promise<WriterStatus> {
    throw new Error('not used');
  }
  async close(): Promise<void> {}
  onState(): () => void {
    return () => undefined;
  }
}

/** A TableLedger that also answers batched reads (Ledger.lookupMany), counting them. */
class BatchTableLedger extends TableLedger {
  batches = 0;
  waits = 0;
  async lookupMany(queries: LookupQuery[]): Promise<LedgerRecord[][]> {
    this.batches++;
    const before = this.reads;
    const out = await Promise.all(queries.map((q) => this.lookup(q.scope, q.key, q.identity)));
    this.reads = before; // one batched read, not one per query
    return out;
  }
  override async waitForAnchor(scope: string, key: string, timeoutMs: number, identity?: string): Promise<LedgerRecord[]> {
    this.waits++;
    return super.waitForAnchor(scope, key, timeoutMs, identity);
  }
}

const genuine: StixObject = {
  type: 'indicator',
  spec_version: '2.1',
  id: 'indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f',
  created: '2024-01-01T00:00:00.000Z',
  modified: '2024-01-01T00:00:00.000Z',
  pattern: "[ipv4-addr:value = '198.51.100.1']",
  pattern_type: 'stix',
  valid_from: '2024-01-01T00:00:00Z',
} as StixObject;
const forged = { ...genuine, pattern: "[ipv4-addr:value = '10.6.6.6']" } as StixObject;

describe('lib/verify: who may vouch (issue 11.1)', () => {
  let l: TableLedger;
  const g = keyForObject(COL, genuine);
  const f = keyForObject(COL, forged);
  const otherScope = keyForObject('another-collection', genuine).scope;
  beforeEach(() => {
    l = new TableLedger();
    l.grant(HONEST, g.scope);
    l.grant(ROGUE, g.scope);
    l.grant(OUTSIDER, otherScope);
  });

  it('verified: the entitled writer anchored this hash; the verdict names it', async () => {
    l.put(HONEST, g.scope, g.key, g.hash);
    const v = await verifyObject(l, COL, genuine);
    assert.equal(v.status, 'verified');
    assert.equal(v.writer, HONEST);
    assert.equal(v.scope, g.scope);
    assert.equal(v.expected, g.hash);
    assert.equal(v.anchors, undefined, 'one anchor: no list');
  });

  it('key squatting: a dishonest entitled writer anchors a forgery first → conflict for both copies, never verified', async () => {
    assert.equal(f.key, g.key, 'same id and version: the same key');
    l.put(ROGUE, g.scope, f.key, f.hash);
    l.put(HONEST, g.scope, g.key, g.hash);
    for (const o of [genuine, forged]) {
      const v = await verifyObject(l, COL, o);
      assert.equal(v.status, 'conflict', o.pattern as string);
      assert.ok(isRejection(v.status));
      assert.equal(v.anchors?.length, 2);
      assert.match(v.reason ?? '', new RegExp(`${ROGUE}.*revokeWriter|revokeWriter`));
      assert.match(v.reason ?? '', /entitled writers anchored different hashes/);
    }
    assert.match((await verifyObject(l, COL, genuine)).reason ?? '', new RegExp(`this copy matches ${HONEST}`));
    // the admin revokes the rogue: the genuine copy verifies, the forgery is a mismatch
    l.grants.delete(ROGUE);
    assert.equal((await verifyObject(l, COL, genuine)).status, 'verified');
    const vf = await verifyObject(l, COL, forged);
    assert.equal(vf.status, 'mismatch');
    assert.equal(vf.writer, HONEST);
    assert.equal(vf.anchors?.find((a) => a.writer === ROGUE)?.entitled, false);
  });

  it('the rogue alone: its forgery is "verified" only as vouched by the rogue, named in the verdict', async () => {
    // the residual risk of a shared collection, stated in README Security: a writer granted a
    // collection can vouch for objects the honest producer never anchored; `writer` says who.
    l.put(ROGUE, g.scope, f.key, f.hash);
    const v = await verifyObject(l, COL, forged);
    assert.equal(v.status, 'verified');
    assert.equal(v.writer, ROGUE);
  });

  it('wrong-writer: anchored only by a writer granted another collection (or revoked) → refused, naming it', async () => {
    l.put(OUTSIDER, otherScope, g.key, g.hash);
    const v = await verifyObject(l, COL, genuine);
    assert.equal(v.status, 'wrong-writer');
    assert.ok(isRejection(v.status));
    assert.equal(v.writer, OUTSIDER);
    assert.match(v.reason ?? '', /not entitled to vouch for this collection/);
    // an entitled writer anchoring too decides; the outsider's anchor is listed, not counted
    l.put(HONEST, g.scope, g.key, g.hash);
    const ok = await verifyObject(l, COL, genuine);
    assert.equal(ok.status, 'verified');
    assert.equal(ok.writer, HONEST);
    assert.deepEqual(ok.anchors?.map((a) => a.entitled), [false, true]);
  });

  it('an outsider squatting the key cannot block or spoil the genuine anchor (other writers never count)', async () => {
    l.put(OUTSIDER, g.scope, f.key, f.hash); // named the right scope, but is not granted it
    l.put(HONEST, g.scope, g.key, g.hash);
    assert.equal((await verifyObject(l, COL, genuine)).status, 'verified');
    assert.equal((await verifyObject(l, COL, forged)).status, 'mismatch');
  });

  it('a creator bound to HONEST: ROGUE (granted the collection) no longer vouches for its objects; without created_by_ref it still does', async () => {
    const creator = 'identity--0f8e2b1c-5d44-4c3e-9a51-6f0a2d7c9b10';
    const tagged = { ...genuine, created_by_ref: creator } as StixObject;
    const t = keyForObject(COL, tagged);
    l.put(ROGUE, g.scope, t.key, t.hash);
    // unbound: the collection grant decides
    assert.equal((await verifyObject(l, COL, tagged)).status, 'verified');
    assert.equal(l.identities.at(-1), identityTag(creator), 'the read names identityTag(created_by_ref)');
    l.bind(identityTag(creator), HONEST);
    const v = await verifyObject(l, COL, tagged, { waitMs: 20 });
    assert.equal(v.status, 'wrong-writer');
    assert.equal(v.writer, ROGUE);
    assert.equal(v.creator, creator);
    assert.equal(l.identities.at(-1), identityTag(creator), 'waitForAnchor names it too');
    l.put(HONEST, g.scope, t.key, t.hash);
    const ok = await verifyObject(l, COL, tagged);
    assert.equal(ok.status, 'verified');
    assert.equal(ok.writer, HONEST);
    // an object without a creator: no identity in the read, ROGUE's grant counts
    const other = { ...genuine, id: 'indicator--5b0d3a1e-7c2f-4e8a-9d61-2f4c8b7a6e03' } as StixObject;
    const o = keyForObject(COL, other);
    l.put(ROGUE, o.scope, o.key, o.hash);
    const plain = await verifyObject(l, COL, other);
    assert.equal(l.identities.at(-1), undefined);
    assert.equal(plain.status, 'verified');
    assert.equal(plain.writer, ROGUE);
  });

  it('two entitled writers agreeing is verified', async () => {
    l.put(HONEST, g.scope, g.key, g.hash);
    l.put(ROGUE, g.scope, g.key, g.hash);
    const v = await verifyObject(l, COL, genuine);
    assert.equal(v.status, 'verified');
    assert.equal(v.anchors?.length, 2);
  });

  it('not-anchored when nothing is anchored; an unversioned object altered reads not-anchored (its key is its content)', async () => {
    assert.equal((await verifyObject(l, COL, genuine)).status, 'not-anchored');
    const sco = { type: 'ipv4-addr', spec_version: '2.1', id: 'ipv4-addr--1e4ffad7-0b88-41d4-ba4d-77d27490b956', value: '198.51.100.3' } as StixObject;
    const s = keyForObject(COL, sco);
    l.put(HONEST, s.scope, s.key, s.hash);
    assert.equal((await verifyObject(l, COL, sco)).status, 'verified');
    const altered = await verifyObject(l, COL, { ...sco, value: '198.51.100.4' } as StixObject);
    assert.equal(altered.status, 'not-anchored');
    assert.match(altered.reason ?? '', /keyed by its content/);
  });

  it('a ledger that cannot be read: error with wait 0, unknown (not a rejection) at the end of a wait', async () => {
    l.failReads = 1;
    await assert.rejects(verifyObject(l, COL, genuine), (e: unknown) => e instanceof LedgerError && e.code === 'UNREACHABLE');
    l.failReads = 1000;
    const v = await verifyObject(l, COL, genuine, { waitMs: 50 });
    assert.equal(v.status, 'unknown');
    assert.equal(isRejection(v.status), false);
  });

  it('verifyPayload reads a whole payload in one batched read (lookupMany) with the same verdicts; tampering still caught', async () => {
    const b = new BatchTableLedger();
    b.grant(HONEST, g.scope);
    b.grant(OUTSIDER, otherScope);
    const objs: StixObject[] = Array.from({ length: 40 }, (_, i) => ({ ...genuine, id: `indicator--00000000-0000-4000-8000-${String(i).padStart(12, '0')}` }) as StixObject);
    for (const o of objs) {
      const k = keyForObject(COL, o);
      b.put(HONEST, k.scope, k.key, k.hash);
    }
    const withCreator = { ...objs[3], created_by_ref: 'identity--11111111-1111-4111-8111-111111111111' } as StixObject;
    b.bind(identityTag(withCreator.created_by_ref as string), OUTSIDER); // HONEST is not bound to this creator
    const kc = keyForObject(COL, withCreator);
    b.put(HONEST, kc.scope, kc.key, kc.hash);
    const tampered = { ...objs[5], pattern: "[ipv4-addr:value = '10.6.6.6']" } as StixObject;
    const payload = [...objs, tampered, withCreator];
    const out = await verifyPayload(b, { collection: COL, payload });
    assert.equal(b.batches, 1, 'one batched read');
    assert.equal(b.reads, 0, 'no read per object');
    // the same verdicts as one read per object
    const plain = new TableLedger();
    for (const [k, rows] of b.rows) plain.rows.set(k, rows);
    for (const [w, sc] of b.grants) plain.grants.set(w, sc);
    for (const [id, acc] of b.bindings) plain.bindings.set(id, acc);
    const each = await Promise.all(payload.map((o) => verifyObject(plain, COL, o)));
    assert.deepEqual(
      out.map((v) => v.verification),
      each,
    );
    assert.deepEqual(
      out.slice(38).map((v) => v.verification.status),
      ['verified', 'verified', 'mismatch', 'wrong-writer'],
    );
    assert.ok(b.identities.includes(identityTag(withCreator.created_by_ref as string)), 'the creator identity reached the batched read');
  });

  it('verifyPayload with a wait: anchors found by the batched read decide at once, only the pending object waits on the ledger', async () => {
    const b = new BatchTableLedger();
    b.grant(HONEST, g.scope);
    b.put(HONEST, g.scope, g.key, g.hash);
    const pending = { ...genuine, id: 'indicator--00000000-0000-4000-8000-000000000099' } as StixObject;
    const p = keyForObject(COL, pending);
    const out = await verifyPayload(b, { collection: COL, payload: [genuine, pending], waitMs: 50 });
    assert.equal(b.batches, 1);
    assert.equal(b.waits, 1, 'only the object without an entitled anchor waits');
    assert.deepEqual(
      out.map((v) => v.verification.status),
      ['verified', 'not-anchored'],
    );
    // the batched read failing: the wait still decides object by object (unknown at worst, never a crash)
    const down = new BatchTableLedger();
    down.grant(HONEST, g.scope);
    down.put(HONEST, p.scope, p.key, p.hash);
    down.failReads = 1;
    const again = await verifyPayload(down, { collection: COL, payload: [genuine, pending], waitMs: 50 });
    assert.deepEqual(
      again.map((v) => v.verification.status),
      ['not-anchored', 'verified'],
    );
    down.failReads = 1;
    await assert.rejects(verifyPayload(down, { collection: COL, payload: [genuine, pending] }), (e: unknown) => e instanceof LedgerError && e.code === 'UNREACHABLE');
  });

  it('overallStatus: conflict > mismatch > wrong-writer > not-anchored > unknown > verified', () => {
    const v = (status: Parameters<typeof isRejection>[0]) => ({ status }) as Parameters<typeof overallStatus>[0][number];
    assert.equal(overallStatus([v('verified'), v('unknown')]), 'unknown');
    assert.equal(overallStatus([v('not-anchored'), v('unknown')]), 'not-anchored');
    assert.equal(overallStatus([v('not-anchored'), v('wrong-writer')]), 'wrong-writer');
    assert.equal(overallStatus([v('wrong-writer'), v('mismatch')]), 'mismatch');
    assert.equal(overallStatus([v('mismatch'), v('conflict'), v('verified')]), 'conflict');
  });
});
