/**
 * The sets-registry chaincode (contracts/fabric/src) on FabricWorld: the real contract class,
 * dispatched by fabric-shim's own router, with identities made by openssl (test/support/fabric-pki).
 * Covers the spec's rules (issue 12) and the Fabric facts the adapter relies on: reads see committed
 * state only, MVCC invalidates the later of two conflicting transactions, a revoke committed first
 * invalidates a pending anchor of that writer.
 */
import { strict as assert } from 'assert';
import { FabricWorld, compareKeys, type Simulation } from '../support/fabric-world';
import { makeIdentity, type FabricTestIdentity } from '../support/fabric-pki';

const ANY = '0x' + '0'.repeat(64);
const b32 = (c: string): string => '0x' + c.repeat(64);
const SCOPE_A = b32('a');
const SCOPE_B = b32('b');
const KEY1 = b32('1');
const KEY2 = b32('2');
const KEY3 = b32('3');
const H1 = b32('d');
const H2 = b32('e');
const H3 = b32('f');
const TAG = b32('7');

interface Rec {
  key: string;
  hash: string;
  writer: string;
  mspId: string;
  subject: string;
  txId: string;
  timestamp: number;
  entitled: boolean;
}

/** One channel with the chaincode, and helpers that endorse and commit like a client would. */
class Net {
  readonly world = new FabricWorld();
  private n = 0;
  clock = 1_700_000_000;

  /** Simulate only (endorse): nothing is applied. */
  async sim(id: FabricTestIdentity, fn: string, args: string[]): Promise<{ txId: string; sim: Simulation }> {
    this.n += 1;
    this.clock += 1;
    const txId = `tx${String(this.n).padStart(4, '0')}`;
    const sim = await this.world.simulate({ mspId: id.mspId, certificate: id.certificate }, txId, { seconds: this.clock, nanos: 0 }, fn, args);
    return { txId, sim };
  }

  /** Endorse and commit alone in a block; must succeed and be VALID. Returns the parsed result. */
  async submit<T = unknown>(id: FabricTestIdentity, fn: string, ...args: string[]): Promise<T> {
    const tx = await this.sim(id, fn, args);
    assert.equal(tx.sim.status, 200, `${fn} failed: ${tx.sim.message}`);
    const out = this.world.commitBlock([tx]);
    assert.deepEqual(out.results, [{ txId: tx.txId, code: 'VALID' }]);
    return JSON.parse(tx.sim.payload.toString('utf8')) as T;
  }

  /** Evaluate (no commit). */
  async query<T = unknown>(id: FabricTestIdentity, fn: string, ...args: string[]): Promise<T> {
    const { sim } = await this.sim(id, fn, args);
    assert.equal(sim.status, 200, `${fn} failed: ${sim.message}`);
    return JSON.parse(sim.payload.toString('utf8')) as T;
  }

  /** Must be refused by the chaincode with `code` (message starts with it); nothing to commit. */
  async refused(id: FabricTestIdentity, code: string, fn: string, ...args: string[]): Promise<string> {
    const { sim } = await this.sim(id, fn, args);
    assert.equal(sim.status, 500, `${fn} should have failed with ${code}, got ${sim.status} ${sim.payload.toString()}`);
    assert.ok(sim.message.startsWith(`${code}: `), `expected ${code}: …, got ${JSON.stringify(sim.message)}`);
    assert.equal(sim.writes.size, 0);
    assert.equal(sim.event, undefined);
    return sim.message;
  }

  records(id: FabricTestIdentity, scope: string, key: string, identity = ''): Promise<Rec[]> {
    return this.query<Rec[]>(id, 'ReadCTIRecords', scope, key, identity);
  }
}

describe('Fabric chaincode sets-registry on FabricWorld', function () {
  this.timeout(60000);
  let admin: FabricTestIdentity;
  let admin2: FabricTestIdentity;
  let w1: FabricTestIdentity; // Org2, attribute role=sets-writer
  let w2: FabricTestIdentity; // Org2, no attributes
  let w3: FabricTestIdentity; // Org3, attribute role=sets-writer
  let other: FabricTestIdentity; // Org3, role=reader

  before(() => {
    admin = makeIdentity({ mspId: 'Org1MSP', cn: 'admin' });
    admin2 = makeIdentity({ mspId: 'Org1MSP', cn: 'admin2' });
    w1 = makeIdentity({ mspId: 'Org2MSP', cn: 'writer1', attrs: { role: 'sets-writer' } });
    w2 = makeIdentity({ mspId: 'Org2MSP', cn: 'writer2' });
    w3 = makeIdentity({ mspId: 'Org3MSP', cn: 'writer3', attrs: { role: 'sets-writer' } });
    other = makeIdentity({ mspId: 'Org3MSP', cn: 'reader', attrs: { role: 'reader' } });
  });

  async function initialised(): Promise<Net> {
    const net = new Net();
    await net.submit(admin, 'Initialize', '');
    return net;
  }

  describe('Initialize and the admin', () => {
    it('initialises once; "" makes the caller admin; admin calls before it are NOT_INITIALISED', async () => {
      const net = new Net();
      await net.refused(admin, 'NOT_INITIALISED', 'GetAdmin');
      await net.refused(admin, 'NOT_INITIALISED', 'GrantWriter', 'Org2MSP', SCOPE_A);
      // an anchor before anything was set up says why
      await net.refused(w1, 'NOT_INITIALISED', 'Anchor', SCOPE_A, KEY1, H1);
      const res = await net.submit<{ admin: string }>(admin, 'Initialize', '');
      assert.deepEqual(res, { admin: admin.writer });
      assert.equal(admin.writer, 'Org1MSP::/C=US/O=Org1MSP/OU=client/CN=admin');
      assert.deepEqual(await net.query(w1, 'GetAdmin'), { admin: admin.writer, pendingAdmin: '' });
      await net.refused(admin, 'NOT_AUTHORISED', 'Initialize', '');
      await net.refused(w1, 'NOT_AUTHORISED', 'Initialize', 'Org2MSP');
    });

    it('Initialize may name another principal (an MSP), whose members are then admin', async () => {
      const net = new Net();
      await net.refused(w2, 'BAD_INPUT', 'Initialize', 'not a principal!');
      await net.submit(w2, 'Initialize', 'Org1MSP');
      await net.submit(admin2, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.refused(w2, 'NOT_AUTHORISED', 'GrantWriter', 'Org2MSP', SCOPE_B);
    });

    it('only the admin grants, revokes, binds, unbinds and proposes', async () => {
      const net = await initialised();
      for (const [fn, args] of [
        ['GrantWriter', ['Org2MSP', SCOPE_A]],
        ['RevokeWriter', ['Org2MSP', SCOPE_A]],
        ['BindIdentity', [TAG, 'Org2MSP']],
        ['UnbindIdentity', [TAG, 'Org2MSP']],
        ['ProposeAdmin', [w1.writer]],
      ] as const) {
        await net.refused(w1, 'NOT_AUTHORISED', fn, ...args);
        await net.submit(admin, fn, ...args);
      }
    });

    it('hands the admin role over in two steps; "" cancels a proposal', async () => {
      const net = await initialised();
      await net.submit(admin, 'ProposeAdmin', admin2.writer);
      assert.deepEqual(await net.query(w1, 'GetAdmin'), { admin: admin.writer, pendingAdmin: admin2.writer });
      await net.refused(w1, 'NOT_AUTHORISED', 'AcceptAdmin');
      // proposing does not hand anything over yet
      await net.refused(admin2, 'NOT_AUTHORISED', 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(admin, 'ProposeAdmin', '');
      await net.refused(admin2, 'NOT_AUTHORISED', 'AcceptAdmin');
      await net.submit(admin, 'ProposeAdmin', admin2.writer);
      assert.deepEqual(await net.submit(admin2, 'AcceptAdmin'), { admin: admin2.writer });
      assert.deepEqual(await net.query(w1, 'GetAdmin'), { admin: admin2.writer, pendingAdmin: '' });
      await net.refused(admin, 'NOT_AUTHORISED', 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(admin2, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.refused(admin2, 'NOT_AUTHORISED', 'AcceptAdmin');
    });
  });

  describe('grants', () => {
    it('by MSP: every identity of that MSP may write, others not', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      assert.deepEqual(await net.submit(w1, 'Anchor', SCOPE_A, KEY1, H1), { writer: w1.writer, existing: false });
      assert.deepEqual(await net.submit(w2, 'Anchor', SCOPE_A, KEY1, H1), { writer: w2.writer, existing: false });
      await net.refused(w3, 'NOT_AUTHORISED', 'Anchor', SCOPE_A, KEY1, H1);
    });

    it('by certificate attribute: only identities of that MSP carrying role=sets-writer', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP#role=sets-writer', SCOPE_A);
      await net.submit(w1, 'Anchor', SCOPE_A, KEY1, H1);
      await net.refused(w2, 'NOT_AUTHORISED', 'Anchor', SCOPE_A, KEY1, H1); // same MSP, no attribute
      await net.refused(w3, 'NOT_AUTHORISED', 'Anchor', SCOPE_A, KEY1, H1); // attribute, other MSP
      await net.refused(other, 'NOT_AUTHORISED', 'Anchor', SCOPE_A, KEY1, H1);
    });

    it('by identity: exactly that one', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', w2.writer, SCOPE_A);
      await net.submit(w2, 'Anchor', SCOPE_A, KEY1, H1);
      await net.refused(w1, 'NOT_AUTHORISED', 'Anchor', SCOPE_A, KEY1, H1);
      assert.deepEqual(await net.query(w2, 'GrantsOf', w2.writer), [SCOPE_A]);
    });

    it('per scope: a scope grant writes there only, ANY_SCOPE everywhere; WriterStatus and GrantsOf say so', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(w1, 'Anchor', SCOPE_A, KEY1, H1);
      const msg = await net.refused(w1, 'NOT_AUTHORISED', 'Anchor', SCOPE_B, KEY2, H1);
      assert.match(msg, new RegExp(SCOPE_B));
      assert.deepEqual(await net.query(w1, 'WriterStatus', SCOPE_A), { account: w1.writer, anyScope: false, inScope: true });
      assert.deepEqual(await net.query(w1, 'WriterStatus', SCOPE_B), { account: w1.writer, anyScope: false, inScope: false });
      await net.submit(admin, 'GrantWriter', w3.writer, ANY);
      await net.submit(w3, 'Anchor', SCOPE_B, KEY2, H1);
      await net.submit(w3, 'Anchor', SCOPE_A, KEY2, H1);
      assert.deepEqual(await net.query(w3, 'WriterStatus', SCOPE_B), { account: w3.writer, anyScope: true, inScope: true });
      assert.deepEqual(await net.query(w3, 'WriterStatus', ''), { account: w3.writer, anyScope: true, inScope: true });
      assert.deepEqual(await net.query(w2, 'GrantsOf', 'Org2MSP'), [SCOPE_A]);
      assert.deepEqual(await net.query(w2, 'GrantsOf', w3.writer), [ANY]);
      // a revoked grant disappears from GrantsOf and stops writes
      await net.submit(admin, 'RevokeWriter', 'Org2MSP', SCOPE_A);
      assert.deepEqual(await net.query(w2, 'GrantsOf', 'Org2MSP'), []);
      await net.refused(w1, 'NOT_AUTHORISED', 'Anchor', SCOPE_A, KEY3, H1);
    });
  });

  describe('Anchor', () => {
    it('is write-once per writer: same hash → existing (nothing written, no event), other hash → KEY_TAKEN', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', ANY);
      const first = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H1]);
      assert.equal(first.sim.status, 200);
      assert.equal(first.sim.event?.name, 'CTIAnchored');
      assert.deepEqual(JSON.parse(first.sim.event!.payload.toString()), { writer: w1.writer, entries: [{ scope: SCOPE_A, key: KEY1, hash: H1 }] });
      const out = net.world.commitBlock([first]);
      assert.equal(out.events.length, 1);
      assert.equal(out.events[0].eventName, 'CTIAnchored');
      assert.equal(out.events[0].chaincodeName, 'sets-registry');
      assert.equal(out.events[0].blockNumber, out.blockNumber);

      const again = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H1]);
      assert.deepEqual(JSON.parse(again.sim.payload.toString()), { writer: w1.writer, existing: true });
      assert.equal(again.sim.writes.size, 0);
      assert.equal(again.sim.event, undefined);
      // and under another scope it is still the same (key, writer) slot
      const otherScope = await net.sim(w1, 'Anchor', [SCOPE_B, KEY1, H1]);
      assert.deepEqual(JSON.parse(otherScope.sim.payload.toString()), { writer: w1.writer, existing: true });

      const msg = await net.refused(w1, 'KEY_TAKEN', 'Anchor', SCOPE_A, KEY1, H2);
      assert.match(msg, new RegExp(KEY1));
      const recs = await net.records(w1, SCOPE_A, KEY1);
      assert.equal(recs.length, 1);
      assert.equal(recs[0].hash, H1);
    });

    it('never blocks other writers under the same key; records come in write order with tx id and tx time', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(admin, 'GrantWriter', 'Org3MSP#role=sets-writer', SCOPE_A);
      const a = await net.sim(w3, 'Anchor', [SCOPE_A, KEY1, H2]);
      const aTime = net.clock;
      net.world.commitBlock([a]);
      const b = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H1]);
      const c = await net.sim(w2, 'SetsRegistry:Anchor', [SCOPE_A, KEY1, H3]); // qualified name routes too
      net.world.commitBlock([b, c]);
      const recs = await net.records(w2, SCOPE_A, KEY1);
      assert.deepEqual(recs.map((r) => [r.writer, r.hash, r.txId]), [
        [w3.writer, H2, a.txId],
        [w1.writer, H1, b.txId],
        [w2.writer, H3, c.txId],
      ]);
      assert.ok(recs.every((r) => r.entitled));
      assert.deepEqual(recs[0], {
        key: KEY1, hash: H2, writer: w3.writer, mspId: 'Org3MSP', subject: '/C=US/O=Org3MSP/OU=client/CN=writer3',
        txId: a.txId, timestamp: aTime, entitled: true,
      });
      assert.deepEqual(await net.records(w2, SCOPE_A, KEY2), []);
    });

    it('is deterministic: the record carries the transaction timestamp, not the endorser clock', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      const ts = { seconds: 1234567890, nanos: 42 };
      const id = { mspId: w1.mspId, certificate: w1.certificate };
      const one = await net.world.simulate(id, 'txdet', ts, 'Anchor', [SCOPE_A, KEY1, H1]);
      await new Promise((r) => setTimeout(r, 1100));
      const two = await net.world.simulate(id, 'txdet', ts, 'Anchor', [SCOPE_A, KEY1, H1]);
      assert.equal(one.status, 200);
      assert.deepEqual([...one.writes], [...two.writes]); // two endorsers agree byte for byte
      net.world.commitBlock([{ txId: 'txdet', sim: one }]);
      const [rec] = await net.records(w1, SCOPE_A, KEY1);
      assert.equal(rec.timestamp, 1234567890);
      assert.equal(rec.txId, 'txdet');
    });
  });

  describe('AnchorMany', () => {
    it('writes a batch, a repeated entry once, and sets one event listing only what it wrote', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_B);
      await net.submit(w1, 'Anchor', SCOPE_A, KEY3, H3);
      const batch = [
        { scope: SCOPE_A, key: KEY1, hash: H1 },
        { scope: SCOPE_B, key: KEY2, hash: H2 },
        { scope: SCOPE_A, key: KEY1, hash: H1 }, // repeated inside the batch
        { scope: SCOPE_A, key: KEY3, hash: H3 }, // anchored before
      ];
      const tx = await net.sim(w1, 'AnchorMany', [JSON.stringify(batch)]);
      assert.equal(tx.sim.status, 200, tx.sim.message);
      assert.deepEqual(JSON.parse(tx.sim.payload.toString()), { writer: w1.writer, existing: [false, false, true, true] });
      assert.equal(tx.sim.writes.size, 2);
      assert.deepEqual(JSON.parse(tx.sim.event!.payload.toString()), { writer: w1.writer, entries: [batch[0], batch[1]] });
      const out = net.world.commitBlock([tx]);
      assert.equal(out.events.length, 1);
      assert.deepEqual((await net.records(w2, SCOPE_A, KEY1)).map((r) => r.hash), [H1]);
      assert.deepEqual((await net.records(w2, SCOPE_B, KEY2)).map((r) => r.hash), [H2]);
      // all already there: existing everywhere, nothing written, no event
      const again = await net.sim(w1, 'AnchorMany', [JSON.stringify(batch.slice(0, 2))]);
      assert.deepEqual(JSON.parse(again.sim.payload.toString()).existing, [true, true]);
      assert.equal(again.sim.writes.size, 0);
      assert.equal(again.sim.event, undefined);
    });

    it('is all-or-nothing: one KEY_TAKEN (earlier or inside the batch) or one unauthorised scope fails it all', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(w1, 'Anchor', SCOPE_A, KEY3, H3);
      const fresh = { scope: SCOPE_A, key: KEY1, hash: H1 };
      await net.refused(w1, 'KEY_TAKEN', 'AnchorMany', JSON.stringify([fresh, { scope: SCOPE_A, key: KEY3, hash: H1 }]));
      await net.refused(w1, 'KEY_TAKEN', 'AnchorMany', JSON.stringify([fresh, { scope: SCOPE_A, key: KEY2, hash: H1 }, { scope: SCOPE_A, key: KEY2, hash: H2 }]));
      await net.refused(w1, 'NOT_AUTHORISED', 'AnchorMany', JSON.stringify([fresh, { scope: SCOPE_B, key: KEY2, hash: H1 }]));
      await net.refused(w1, 'BAD_INPUT', 'AnchorMany', JSON.stringify([fresh, { scope: SCOPE_A, key: KEY2, hash: 'nope' }]));
      assert.deepEqual(await net.records(w2, SCOPE_A, KEY1), []);
      assert.deepEqual(await net.records(w2, SCOPE_A, KEY2), []);
      // another writer's anchor under the key does not count against this one
      await net.submit(w2, 'Anchor', SCOPE_A, KEY2, H2);
      assert.deepEqual(await net.submit(w1, 'AnchorMany', JSON.stringify([fresh, { scope: SCOPE_A, key: KEY2, hash: H1 }])), { writer: w1.writer, existing: [false, false] });
    });
  });

  describe('entitlement is judged at read time', () => {
    it('revoking a grant withdraws the writer\'s word; the anchor stays; ANY_SCOPE counts for every scope', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP#role=sets-writer', SCOPE_A);
      await net.submit(w1, 'Anchor', SCOPE_A, KEY1, H1);
      assert.equal((await net.records(w2, SCOPE_A, KEY1))[0].entitled, true);
      assert.equal((await net.records(w2, SCOPE_B, KEY1))[0].entitled, false); // not granted scope B
      assert.equal((await net.records(w2, ANY, KEY1))[0].entitled, false); // a read names a collection
      await net.submit(admin, 'RevokeWriter', 'Org2MSP#role=sets-writer', SCOPE_A);
      const after = await net.records(w2, SCOPE_A, KEY1);
      assert.equal(after.length, 1);
      assert.equal(after[0].hash, H1);
      assert.equal(after[0].entitled, false);
      await net.submit(admin, 'GrantWriter', w1.writer, ANY);
      assert.equal((await net.records(w2, SCOPE_A, KEY1))[0].entitled, true);
      assert.equal((await net.records(w2, SCOPE_B, KEY1))[0].entitled, true);
    });

    it('identity binding: unbound → the grant alone; bound → only bound principals; unbinding the last → unbound', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(admin, 'GrantWriter', 'Org3MSP', SCOPE_A);
      await net.submit(w1, 'Anchor', SCOPE_A, KEY1, H1);
      await net.submit(w3, 'Anchor', SCOPE_A, KEY1, H2);
      const judge = async (tag: string) => (await net.records(other, SCOPE_A, KEY1, tag)).map((r) => [r.writer, r.entitled]);
      assert.deepEqual(await judge(TAG), [[w1.writer, true], [w3.writer, true]]);
      await net.submit(admin, 'BindIdentity', TAG, 'Org3MSP#role=sets-writer');
      assert.deepEqual(await judge(TAG), [[w1.writer, false], [w3.writer, true]]);
      assert.deepEqual(await judge(''), [[w1.writer, true], [w3.writer, true]]); // no creator named
      assert.deepEqual(await judge(ANY), [[w1.writer, true], [w3.writer, true]]); // zero tag = none
      await net.submit(admin, 'BindIdentity', TAG, w1.writer);
      assert.deepEqual(await judge(TAG), [[w1.writer, true], [w3.writer, true]]);
      await net.submit(admin, 'UnbindIdentity', TAG, 'Org3MSP#role=sets-writer');
      assert.deepEqual(await judge(TAG), [[w1.writer, true], [w3.writer, false]]);
      // a binding does not replace the grant
      await net.submit(admin, 'RevokeWriter', 'Org2MSP', SCOPE_A);
      assert.deepEqual(await judge(TAG), [[w1.writer, false], [w3.writer, false]]);
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(admin, 'UnbindIdentity', TAG, w1.writer);
      assert.deepEqual(await judge(TAG), [[w1.writer, true], [w3.writer, true]]);
    });

    it('ReadCTIRecordsMany answers each query in order, each judged for its own scope and identity', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(w1, 'AnchorMany', JSON.stringify([{ scope: SCOPE_A, key: KEY1, hash: H1 }, { scope: SCOPE_A, key: KEY2, hash: H2 }]));
      await net.submit(admin, 'BindIdentity', TAG, 'Org3MSP');
      const out = await net.query<Rec[][]>(other, 'ReadCTIRecordsMany', JSON.stringify([
        { scope: SCOPE_A, key: KEY2 },
        { scope: SCOPE_B, key: KEY1 },
        { scope: SCOPE_A, key: KEY1, identity: TAG },
        { scope: SCOPE_A, key: KEY3, identity: '' },
      ]));
      assert.deepEqual(out.map((rs) => rs.map((r) => [r.hash, r.entitled])), [[[H2, true]], [[H1, false]], [[H1, false]], []]);
    });
  });

  describe('bad input', () => {
    it('refuses malformed hex, a zero scope in a write, a zero hash, bad principals and tags', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', ANY);
      await net.refused(w1, 'BAD_INPUT', 'Anchor', SCOPE_A, '0x' + 'D'.repeat(64), H1);
      await net.refused(w1, 'BAD_INPUT', 'Anchor', SCOPE_A, KEY1.slice(0, 65), H1);
      await net.refused(w1, 'BAD_INPUT', 'Anchor', SCOPE_A, KEY1.slice(2), H1);
      await net.refused(w1, 'BAD_INPUT', 'Anchor', SCOPE_A, KEY1, H1 + '0');
      await net.refused(w1, 'BAD_INPUT', 'Anchor', ANY, KEY1, H1);
      await net.refused(w1, 'BAD_INPUT', 'Anchor', SCOPE_A, KEY1, ANY);
      await net.refused(w1, 'BAD_INPUT', 'AnchorMany', JSON.stringify([{ scope: ANY, key: KEY1, hash: H1 }]));
      await net.refused(w1, 'BAD_INPUT', 'ReadCTIRecords', 'zz', KEY1, '');
      await net.refused(w1, 'BAD_INPUT', 'ReadCTIRecords', SCOPE_A, KEY1, 'not-a-tag');
      await net.refused(admin, 'BAD_INPUT', 'GrantWriter', 'Org2MSP', 'everything');
      for (const p of ['', 'Org2MSP#role', 'Org2MSP#=x', 'Org2MSP::CN=no-slash', 'bad msp', '::/CN=x', 'Org2MSP\u0000x']) {
        await net.refused(admin, 'BAD_INPUT', 'GrantWriter', p, SCOPE_A);
      }
      await net.refused(admin, 'BAD_INPUT', 'BindIdentity', ANY, 'Org2MSP');
      await net.refused(admin, 'BAD_INPUT', 'ProposeAdmin', 'Org1MSP#x');
      await net.refused(w1, 'BAD_INPUT', 'NoSuchFunction');
    });

    it('refuses bad JSON, non-arrays, empty and oversized batches, entries that are not objects', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', ANY);
      await net.refused(w1, 'BAD_INPUT', 'AnchorMany', '[{"scope":');
      await net.refused(w1, 'BAD_INPUT', 'AnchorMany', '{"scope":"x"}');
      await net.refused(w1, 'BAD_INPUT', 'AnchorMany', '[]');
      await net.refused(w1, 'BAD_INPUT', 'AnchorMany', '[42]');
      await net.refused(w1, 'BAD_INPUT', 'AnchorMany', JSON.stringify([{ scope: SCOPE_A, key: KEY1 }]));
      const many = (n: number) => Array.from({ length: n }, (_, i) => ({ scope: SCOPE_A, key: '0x' + i.toString(16).padStart(64, '0'), hash: H1 }));
      const msg = await net.refused(w1, 'BAD_INPUT', 'AnchorMany', JSON.stringify(many(1001)));
      assert.match(msg, /1001 entries, at most 1000/);
      await net.refused(w1, 'BAD_INPUT', 'ReadCTIRecordsMany', 'nope');
      await net.refused(w1, 'BAD_INPUT', 'ReadCTIRecordsMany', JSON.stringify(Array.from({ length: 1001 }, () => ({ scope: SCOPE_A, key: KEY1 }))));
      // the limit itself is fine
      const ok = await net.sim(w1, 'AnchorMany', [JSON.stringify(many(1000))]);
      assert.equal(ok.sim.status, 200, ok.sim.message);
      assert.equal(ok.sim.writes.size, 1000);
    });
  });

  describe('Fabric transaction semantics', () => {
    it('MVCC: two anchors of one writer on one key endorsed on the same state → the second is MVCC_READ_CONFLICT', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      const t1 = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H1]);
      const t2 = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H2]);
      assert.equal(t1.sim.status, 200);
      assert.equal(t2.sim.status, 200); // neither sees the other at endorsement
      const out = net.world.commitBlock([t1, t2]);
      assert.deepEqual(out.results, [{ txId: t1.txId, code: 'VALID' }, { txId: t2.txId, code: 'MVCC_READ_CONFLICT' }]);
      assert.deepEqual(out.events.map((e) => e.txId), [t1.txId]); // an invalid tx's event is not delivered
      const recs = await net.records(w2, SCOPE_A, KEY1);
      assert.deepEqual(recs.map((r) => [r.writer, r.hash]), [[w1.writer, H1]]);
      // a different writer on the same key in the same block does not conflict
      const t3 = await net.sim(w1, 'Anchor', [SCOPE_A, KEY2, H1]);
      const t4 = await net.sim(w2, 'Anchor', [SCOPE_A, KEY2, H2]);
      assert.deepEqual(net.world.commitBlock([t3, t4]).results.map((r) => r.code), ['VALID', 'VALID']);
    });

    it('reads see committed state only: an endorsed but uncommitted anchor is invisible', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      const pending = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H1]);
      assert.equal(pending.sim.status, 200);
      assert.deepEqual(await net.records(w2, SCOPE_A, KEY1), []);
      // and a second endorsement of the same anchor does not see the first either
      const again = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H1]);
      assert.deepEqual(JSON.parse(again.sim.payload.toString()), { writer: w1.writer, existing: false });
      net.world.commitBlock([pending]);
      assert.deepEqual((await net.records(w2, SCOPE_A, KEY1)).map((r) => r.hash), [H1]);
    });

    it('a simulation keeps its snapshot while a block commits underneath it', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      await net.submit(w1, 'Anchor', SCOPE_A, KEY1, H1);
      const late = await net.sim(w2, 'Anchor', [SCOPE_A, KEY1, H2]);
      // start a read, commit another anchor while the chaincode awaits its reads, then finish
      const reading = net.sim(other, 'ReadCTIRecords', [SCOPE_A, KEY1, '']);
      net.world.commitBlock([late]);
      const { sim } = await reading;
      assert.deepEqual((JSON.parse(sim.payload.toString()) as Rec[]).map((r) => r.hash), [H1]);
      assert.deepEqual((await net.records(other, SCOPE_A, KEY1)).map((r) => r.hash), [H1, H2]);
      // point reads too: w2's own anchor of KEY2 lands while w2 endorses another hash for KEY2
      const mine = await net.sim(w2, 'Anchor', [SCOPE_A, KEY2, H2]);
      const racing = net.sim(w2, 'Anchor', [SCOPE_A, KEY2, H3]);
      net.world.commitBlock([mine]);
      const raced = (await racing).sim;
      assert.equal(raced.status, 200, raced.message); // endorsed on the old state: the slot was free
      assert.ok([...raced.reads.values()].includes(null));
      assert.equal(net.world.commitBlock([{ txId: (await racing).txId, sim: raced }]).results[0].code, 'MVCC_READ_CONFLICT');
    });

    it('a revoke committed before a pending anchor of that writer in the same block invalidates the anchor', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP#role=sets-writer', SCOPE_A);
      const anchor = await net.sim(w1, 'Anchor', [SCOPE_A, KEY1, H1]);
      const revoke = await net.sim(admin, 'RevokeWriter', ['Org2MSP#role=sets-writer', SCOPE_A]);
      assert.equal(anchor.sim.status, 200);
      const out = net.world.commitBlock([revoke, anchor]);
      assert.deepEqual(out.results.map((r) => r.code), ['VALID', 'MVCC_READ_CONFLICT']);
      assert.deepEqual(await net.records(w2, SCOPE_A, KEY1), []);
      // a grant of something else committed first does not invalidate a pending anchor
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      const a2 = await net.sim(w2, 'Anchor', [SCOPE_A, KEY1, H2]);
      const g2 = await net.sim(admin, 'GrantWriter', ['Org3MSP', SCOPE_B]);
      assert.deepEqual(net.world.commitBlock([g2, a2]).results.map((r) => r.code), ['VALID', 'VALID']);
    });

    it('range reads are re-checked: a grant committed after GrantsOf was endorsed → PHANTOM_READ_CONFLICT', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      const listing = await net.sim(admin, 'GrantsOf', ['Org2MSP']);
      assert.equal(listing.sim.ranges.length, 1);
      const grant = await net.sim(admin, 'GrantWriter', ['Org2MSP', SCOPE_B]);
      assert.deepEqual(net.world.commitBlock([grant, listing]).results.map((r) => r.code), ['VALID', 'PHANTOM_READ_CONFLICT']);
      const unchanged = await net.sim(admin, 'GrantsOf', ['Org2MSP']);
      const unrelated = await net.sim(admin, 'GrantWriter', ['Org3MSP', SCOPE_B]);
      assert.deepEqual(net.world.commitBlock([unrelated, unchanged]).results.map((r) => r.code), ['VALID', 'VALID']);
      // a key vanishing from the range is a phantom too (the registry never deletes; a raw
      // simulation that does stands in for another chaincode's write set)
      const before = await net.sim(admin, 'GrantsOf', ['Org2MSP']);
      const [gone] = [...before.sim.ranges[0].keys.keys()];
      const del: Simulation = { status: 200, message: '', payload: Buffer.alloc(0), reads: new Map(), ranges: [], writes: new Map([[gone, null]]) };
      assert.deepEqual(net.world.commitBlock([{ txId: 'txdel', sim: del }, before]).results.map((r) => r.code), ['VALID', 'PHANTOM_READ_CONFLICT']);
      assert.equal(net.world.getState(gone), undefined);
      assert.equal(net.world.versionOf(gone), null);
    });

    it('orders keys as the state database does (UTF-8 bytes), which range reads depend on', () => {
      assert.ok(compareKeys('a', 'b') < 0);
      assert.ok(compareKeys('ab', 'a') > 0);
      assert.ok(compareKeys('\u0000x', '\u0001') < 0);
      // U+10000 (a surrogate pair in UTF-16) sorts after U+FFFF in UTF-8, unlike JS's < operator
      assert.ok('\u{10000}' < '\uffff');
      assert.ok(compareKeys('\u{10000}', '\uffff') > 0);
      assert.ok(compareKeys('\u{10ffff}', '\u{10000}') > 0);
      assert.equal(compareKeys('same', 'same'), 0);
    });

    it('a full batch: 1000 anchors in one tx, then 1000 lookups in one read, in query order', async () => {
      const net = await initialised();
      await net.submit(admin, 'GrantWriter', 'Org2MSP', SCOPE_A);
      const key = (i: number) => '0x' + (i * 7919).toString(16).padStart(64, '0');
      const hash = (i: number) => '0x' + (i + 1).toString(16).padStart(64, 'f');
      const entries = Array.from({ length: 1000 }, (_, i) => ({ scope: SCOPE_A, key: key(i), hash: hash(i) }));
      const res = await net.submit<{ existing: boolean[] }>(w1, 'AnchorMany', JSON.stringify(entries));
      assert.equal(res.existing.filter((e) => !e).length, 1000);
      const queries = entries.map((e) => ({ scope: SCOPE_A, key: e.key })).reverse();
      const t0 = Date.now();
      const out = await net.query<Rec[][]>(other, 'ReadCTIRecordsMany', JSON.stringify(queries));
      assert.ok(Date.now() - t0 < 20000, 'a batched read of 1000 keys should not crawl');
      assert.equal(out.length, 1000);
      out.forEach((rs, i) => {
        assert.equal(rs.length, 1);
        assert.equal(rs[0].key, queries[i].key);
        assert.equal(rs[0].hash, hash(999 - i));
        assert.equal(rs[0].entitled, true);
      });
    });

    it('blocks are numbered after the genesis block; a duplicate tx id or an unendorsed tx is refused whole', async () => {
      const net = new Net();
      assert.equal(net.world.height, 1);
      const init = await net.sim(admin, 'Initialize', ['']);
      assert.equal(net.world.commitBlock([init]).blockNumber, 1);
      assert.equal(net.world.height, 2);
      assert.throws(() => net.world.commitBlock([init]), /duplicate transaction id/);
      const bad = await net.sim(w1, 'GrantWriter', ['Org2MSP', SCOPE_A]);
      assert.equal(bad.sim.status, 500);
      const good = await net.sim(admin, 'GrantWriter', ['Org2MSP', SCOPE_A]);
      assert.throws(() => net.world.commitBlock([good, bad]), /not endorsed/);
      assert.equal(net.world.height, 2);
      assert.deepEqual(await net.query(admin, 'GrantsOf', 'Org2MSP'), []); // nothing of that block applied
    });
  });
});
