/**
 * Tampering suite (issue 11): every way of altering shared CTI that SETS claims to catch, against
 * real services — RabbitMQ (test/support/rabbit.ts), a hardhat node with the SetsRegistry
 * (test/support/hardhat.ts), and the TAXII server library on the embedded LevelDB store.
 *
 * Each case must be CAUGHT: a rejecting verdict (`mismatch`, `not-anchored`, `wrong-writer`,
 * `conflict`), a refused write, or a record marked invalid and no longer served — including a forgery
 * anchored first by a dishonest member entitled to the same collection (key squatting).
 */
import { strict as assert } from 'node:assert';
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ClassicLevel } from 'classic-level';
import { Contract, JsonRpcProvider, Wallet } from 'ethers';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import type { RabbitHandle } from '../support/rabbit';
import { AmqpBus, routingKey, HEADER_COLLECTION, HEADER_HASH, HEADER_OBJECT_ID, HEADER_VERSION, type BusDelivery, type Subscription } from '../../lib/bus';
import { stixPublishRequest } from '../../lib/bus/common';
import { createLedger, decodeRevert, LedgerError, REGISTRY_ABI, type EvmLedger } from '../../lib/ledger';
import { collectionScope, hashObject, identityTag, keyForObject } from '../../lib/digest';
import { bindIdentity, grantWriter, revokeWriter } from '../../lib/ledger/deploy';
import { verifyObject } from '../../lib/verify';
import { verifyPayload } from '../../lib/ops/verify';
import { EmbeddedStore } from '../../lib/store/embedded';
import { createTaxiiServer, type TaxiiServer } from '../../lib/taxii/server';
import type { StixObject } from '../../lib/stix';
import { AUTH, COL_MAIN, indicator, listen, obj, list, post, request, testConfig, type Running } from '../server/helpers';

/** test objects are plain records; the library takes them as STIX objects */
const stix = (o: Record<string, unknown>): StixObject => o as unknown as StixObject;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const COL_A = `tamper-a-${randomUUID()}`;
const COL_B = `tamper-b-${randomUUID()}`;

function isLedgerError(code: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof LedgerError, `expected a LedgerError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

describe('tampering suite (issue 11): each alteration is caught', function () {
  this.timeout(120_000);
  let c: ChainHandle;
  let registry: string;
  /** the honest producer (an authorised writer) */
  let producer: EvmLedger;
  /** a read-only ledger for consumers */
  let reader: EvmLedger;
  const open: EvmLedger[] = [];

  function ledger(account: number | undefined, address: string = registry): EvmLedger {
    const l = createLedger({
      kind: 'evm',
      rpcUrl: c.rpcUrl,
      chainId: c.chainId,
      address,
      privateKey: account === undefined ? undefined : c.accounts[account].privateKey,
      waitPollMs: 100,
      healthCheckMs: 0,
    }) as EvmLedger;
    open.push(l);
    return l;
  }

  /** anchor an object for a collection as the honest producer */
  async function anchor(collection: string, o: Record<string, unknown>): Promise<void> {
    const a = keyForObject(collection, stix(o));
    await producer.anchor(a.scope, a.key, a.hash);
  }

  before(async function () {
    this.timeout(180_000);
    c = await chain();
    // writers: accounts[0..3]; accounts[1] is the producer, accounts[2] an authorised but dishonest member
    registry = await c.deployRegistry();
    producer = ledger(1);
    reader = ledger(undefined);
  });

  after(async () => {
    await Promise.all(open.splice(0).map((l) => l.close()));
  });

  describe('altered in transit (real RabbitMQ)', () => {
    let r: RabbitHandle;
    let bus: AmqpBus;
    let sub: Subscription;
    const exchange = `sets-tamper-${randomBytes(4).toString('hex')}`;
    const got: BusDelivery[] = [];

    before(async function () {
      this.timeout(180_000);
      r = await rabbit();
      bus = new AmqpBus({ url: r.url, exchange, connectTimeoutMs: 20_000 });
      sub = bus.subscribe({ bindings: ['#'] }, (d) => {
        got.push(d);
        d.ack();
      });
      await sub.ready();
    });
    after(async () => {
      await bus.close();
    });

    /** publish a request and wait for its delivery (matched by messageId) */
    async function roundTrip(req: Parameters<AmqpBus['publish']>[0]): Promise<BusDelivery> {
      const messageId = req.messageId ?? randomUUID();
      await bus.publish({ ...req, messageId, timeoutMs: 30_000 });
      return waitFor(`delivery ${messageId}`, () => got.find((d) => d.messageId === messageId));
    }

    /** what a consumer does with a delivery: verify against the collection its routing key names */
    async function consume(d: BusDelivery): Promise<{ status: string; writer?: string; reason?: string }> {
      assert.ok(d.collection, `routing key ${d.routingKey} names no collection`);
      const [v] = await verifyPayload(reader, { collection: d.collection, payload: d.content });
      return v.verification;
    }

    it('control: a genuine anchored object arrives verified', async () => {
      const o = indicator();
      await anchor(COL_A, o);
      const d = await roundTrip(stixPublishRequest(COL_A, stix(o)));
      assert.equal((await consume(d)).status, 'verified');
    });

    it('payload: one byte changed in the body -> mismatch', async () => {
      const o = indicator(undefined, undefined, { name: 'Genuine name' });
      await anchor(COL_A, o);
      const body = Buffer.from(JSON.stringify(o), 'utf8');
      const at = body.indexOf('Genuine');
      assert.ok(at > 0);
      body[at] = 'X'.charCodeAt(0); // "Xenuine name": one byte differs
      const d = await roundTrip({ routingKey: routingKey(COL_A, 'indicator'), body });
      const v = await consume(d);
      assert.equal(v.status, 'mismatch', v.reason);
      assert.match(String(v.reason), /altered/);
    });

    it('payload: a whitespace-only change is no alteration (canonical hashing), a value change is', async () => {
      const o = indicator();
      await anchor(COL_A, o);
      const pretty = await roundTrip({ routingKey: routingKey(COL_A, 'indicator'), body: JSON.stringify(o, null, 2) });
      assert.equal((await consume(pretty)).status, 'verified');
      const altered = await roundTrip({ routingKey: routingKey(COL_A, 'indicator'), body: JSON.stringify({ ...o, pattern: "[ipv4-addr:value = '10.0.0.2']" }) });
      assert.equal((await consume(altered)).status, 'mismatch');
    });

    it("routing key: an object anchored for collection A published under B's key -> verified against B -> not anchored", async () => {
      const o = indicator();
      await anchor(COL_A, o);
      const d = await roundTrip({ routingKey: routingKey(COL_B, 'indicator'), body: o });
      assert.equal(d.collection, COL_B);
      const v = await consume(d);
      assert.equal(v.status, 'not-anchored', v.reason);
    });

    it('routing key: an object anchored in A and in B with different content, B content sent under A -> mismatch', async () => {
      const id = `indicator--${randomUUID()}`;
      const inA = indicator(id, undefined, { name: 'as shared in A' });
      const inB = indicator(id, undefined, { name: 'as shared in B' });
      await anchor(COL_A, inA);
      await anchor(COL_B, inB);
      const d = await roundTrip({ routingKey: routingKey(COL_A, 'indicator'), body: inB });
      assert.equal((await consume(d)).status, 'mismatch');
    });

    it('headers: SETS headers rewritten to vouch for an altered body (hash, id, version, collection) -> mismatch', async () => {
      const o = indicator();
      await anchor(COL_A, o);
      const altered = { ...o, name: 'altered in transit' };
      const genuine = stixPublishRequest(COL_A, stix(o), { hash: hashObject(stix(o)) });
      // the attacker keeps the genuine message's headers (the genuine hash, id, version, collection)
      const d = await roundTrip({ ...genuine, body: altered, messageId: randomUUID() });
      assert.equal(d.headers[HEADER_HASH], hashObject(stix(o)));
      const v = await consume(d);
      assert.equal(v.status, 'mismatch', v.reason);
    });

    it('headers: headers rewritten to match the altered body (its hash, another version, another collection) -> still caught', async () => {
      const o = indicator();
      await anchor(COL_A, o);
      const altered = { ...o, name: 'altered again', modified: '2024-02-02T00:00:00.000Z' };
      const d = await roundTrip({
        routingKey: routingKey(COL_A, 'indicator'),
        body: altered,
        headers: {
          [HEADER_COLLECTION]: COL_B,
          [HEADER_OBJECT_ID]: o['id'],
          [HEADER_VERSION]: altered.modified,
          [HEADER_HASH]: hashObject(stix(altered)),
        },
      });
      // the verdict is computed from the body and the routing key, never from what the headers claim
      const v = await consume(d);
      assert.equal(v.status, 'not-anchored', v.reason);
      const same = await roundTrip({
        routingKey: routingKey(COL_A, 'indicator'),
        body: { ...o, name: 'altered, same version' },
        headers: { [HEADER_HASH]: hashObject(stix({ ...o, name: 'altered, same version' })), [HEADER_VERSION]: o['modified'] },
      });
      assert.equal((await consume(same)).status, 'mismatch');
    });
  });

  describe('altered in the store (embedded LevelDB, edited as an insider would)', () => {
    let dir: string;
    let store: EmbeddedStore;
    let server: TaxiiServer;
    let run: Running;
    const work = new Set<Promise<unknown>>();
    const track = (p: Promise<unknown>): void => {
      const q = p.catch((e: unknown) => console.error('verifier failed:', e)).finally(() => work.delete(q));
      work.add(q);
    };

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-tamper-'));
      store = new EmbeddedStore({ dir });
      await store.open();
      server = createTaxiiServer(await testConfig(store));
      // the flow's verifier: admission waits for the producer's anchor, an inquiry looks once
      server.on('object', (e) =>
        track(
          (async () => {
            const v = await verifyObject(reader, e.collection, e.record.object, { waitMs: 20_000 });
            await server.recordVerification(e.collection, e.record.id, e.record.version, v.status, v.reason, e.statusId, e.origin);
          })(),
        ),
      );
      server.on('inquiry', (e) => {
        for (const rec of e.records) {
          track(
            (async () => {
              const v = await verifyObject(reader, e.collection, rec.object);
              await server.recordVerification(e.collection, rec.id, rec.version, v.status, v.reason, undefined, 'inquiry');
            })(),
          );
        }
      });
      run = await listen((req, res) => void server.handle(req, res));
    });
    after(async () => {
      await Promise.all([...work]);
      server.close();
      await run.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    const settled = async (): Promise<void> => {
      while (work.size > 0) await Promise.all([...work]);
    };

    /** the demo's insider: edit the raw LevelDB records of an object, bypassing the store's API */
    async function insiderEdit(collection: string, id: string): Promise<number> {
      const db = (store as unknown as { handle: { db: ClassicLevel<string, string> } }).handle.db;
      const prefix = ['r', collection, id].join('\u0000') + '\u0000';
      let changed = 0;
      for await (const [key, value] of db.iterator({ gte: prefix, lt: prefix.slice(0, -1) + '\u0001' })) {
        const rec = JSON.parse(value) as { object: Record<string, unknown> };
        rec.object['name'] = 'edited by an insider';
        await db.put(key, JSON.stringify(rec));
        changed++;
      }
      return changed;
    }

    it('a stored record edited in LevelDB: the next GET is re-verified, the record marked invalid and refused afterwards', async () => {
      const o = indicator();
      await anchor(COL_MAIN, o);
      const id = String(o['id']);
      const r = await post(run.base, COL_MAIN, [o]);
      assert.equal(r.status, 202, r.text);
      await settled();
      assert.equal((await server.integrityOf(COL_MAIN, id))?.status, 'finalized');

      assert.equal(await insiderEdit(COL_MAIN, id), 1, 'the insider found the record');
      const first = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/${id}/`, { auth: AUTH.alice });
      assert.equal(first.status, 200, first.text); // served once, and re-verified in parallel (paper step 5)
      await settled();
      const view = await server.integrityOf(COL_MAIN, id);
      assert.equal(view?.status, 'invalid');
      assert.match(String(view?.reason), /mismatch/);

      const again = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/${id}/`, { auth: AUTH.alice });
      assert.equal(again.status, 404, again.text);
      assert.match(again.text, /integrity/);
      const listing = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/?match[id]=${id}`, { auth: AUTH.alice });
      assert.ok(!listing.text.includes('edited by an insider'), 'the edited content is not listed');
    });

    it('a second, different object reusing an anchored key: KEY_TAKEN on anchor, mismatch on verify, conflict on POST', async () => {
      const o = indicator();
      const other = { ...o, name: 'a different object, same id and version' };
      await anchor(COL_MAIN, o);
      const again = keyForObject(COL_MAIN, stix(other));
      await assert.rejects(producer.anchor(again.scope, again.key, again.hash), isLedgerError('KEY_TAKEN'));
      const v = await verifyObject(reader, COL_MAIN, stix(other));
      assert.equal(v.status, 'mismatch');
      assert.equal(v.expected, hashObject(stix(o)));

      assert.equal((await post(run.base, COL_MAIN, [o])).status, 202);
      await settled();
      const st = obj((await post(run.base, COL_MAIN, [other])).json);
      assert.equal(st['failure_count'], 1);
      assert.equal(obj(list(st['failures'])[0])['message'], 'a different object already uses this id and version');
      await settled();
      const got = await request(run.base, 'GET', `/api1/collections/${COL_MAIN}/objects/${String(o['id'])}/`, { auth: AUTH.alice });
      assert.equal(got.status, 200);
      assert.ok(!got.text.includes('a different object'), 'the genuine object is served, not the second one');
    });
  });

  describe('on chain: who may vouch (writers bound to collections)', () => {
    // a registry where writers are bound to collections: accounts[1] (honest producer) and
    // accounts[2] (a dishonest member) may vouch for COL_A; accounts[4] only for COL_B; accounts[6]
    // is no writer at all
    let bound: string;
    const onBound = (account: number | undefined): EvmLedger => ledger(account, bound);
    const addr = (i: number) => c.accounts[i].address.toLowerCase();
    before(async () => {
      bound = await c.deployRegistry({
        writers: [
          { account: c.accounts[1].address, scopes: [collectionScope(COL_A)] },
          { account: c.accounts[2].address, scopes: [collectionScope(COL_A)] },
          { account: c.accounts[4].address, scopes: [collectionScope(COL_B)] },
        ],
      });
    });

    it('an overwrite attempt (writeCTIHash again, directly through ethers, another hash) reverts; the anchored hash is unchanged', async () => {
      const o = indicator();
      const a = keyForObject(COL_A, stix(o));
      await onBound(1).anchor(a.scope, a.key, a.hash);
      const provider = new JsonRpcProvider(c.rpcUrl, c.chainId, { staticNetwork: true });
      try {
        const contract = new Contract(bound, REGISTRY_ABI, new Wallet(c.accounts[1].privateKey, provider));
        const other = '0x' + randomBytes(32).toString('hex');
        // an explicit gas limit: no estimate stops it early, the transaction reaches the chain and reverts there
        // (hardhat's automine answers the send with the revert and the mined transaction's hash)
        let revert = '';
        let txHash: string | undefined;
        try {
          await contract.getFunction('writeCTIHash')(a.scope, a.key, other, { gasLimit: 200_000 });
        } catch (e) {
          const text = JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
          revert = decodeRevert(/return data: (0x[0-9a-f]+)/i.exec(text)?.[1]);
          txHash = /"txHash":"(0x[0-9a-f]{64})"/i.exec(text)?.[1];
        }
        assert.match(revert, new RegExp(`^KeyTaken\\(${a.key}, ${c.accounts[1].address}\\)$`, 'i'));
        if (txHash) {
          const receipt = await waitFor('receipt', async () => (await provider.getTransactionReceipt(String(txHash))) ?? undefined);
          assert.equal(receipt.status, 0, 'the overwrite was mined and reverted');
        }
        const [hash] = (await contract.getFunction('readCTIRecord')(a.key, c.accounts[1].address)) as [string];
        assert.equal(hash, a.hash);
        assert.equal((await verifyObject(onBound(undefined), COL_A, stix(o))).status, 'verified');
      } finally {
        provider.destroy();
      }
    });

    it('an anchor by an address that is not a writer -> NOT_AUTHORISED, nothing anchored', async () => {
      const forged = indicator();
      const a = keyForObject(COL_A, stix(forged));
      await assert.rejects(onBound(6).anchor(a.scope, a.key, a.hash), isLedgerError('NOT_AUTHORISED'));
      assert.deepEqual(await onBound(undefined).lookup(a.scope, a.key), []);
      assert.equal((await verifyObject(onBound(undefined), COL_A, stix(forged))).status, 'not-anchored');
    });

    it('a writer bound to another collection cannot write in this one (NOT_AUTHORISED) and its anchor under its own scope does not count (wrong-writer)', async () => {
      const genuine = indicator();
      const a = keyForObject(COL_A, stix(genuine));
      const outsider = onBound(4);
      await assert.rejects(outsider.anchor(a.scope, a.key, a.hash), isLedgerError('NOT_AUTHORISED'));
      // it may write the same key naming its own collection: the registry cannot tell which
      // collection a key belongs to, the verifier can
      await outsider.anchor(collectionScope(COL_B), a.key, a.hash);
      const v = await verifyObject(onBound(undefined), COL_A, stix(genuine));
      assert.equal(v.status, 'wrong-writer');
      assert.equal(v.writer?.toLowerCase(), addr(4));
      // ... and it blocks nobody: the honest producer anchors, and that decides
      await onBound(1).anchor(a.scope, a.key, a.hash);
      const ok = await verifyObject(onBound(undefined), COL_A, stix(genuine));
      assert.equal(ok.status, 'verified');
      assert.equal(ok.writer?.toLowerCase(), addr(1));
    });

    it('key squatting by a dishonest member of the same collection: never verified (conflict); the admin revokes it and the genuine object verifies', async () => {
      const genuine = indicator();
      const forged = { ...genuine, pattern: "[domain-name:value = 'evil.example']" };
      const g = keyForObject(COL_A, stix(genuine));
      const f = keyForObject(COL_A, stix(forged));
      assert.equal(f.key, g.key);
      // the squat comes first ...
      await onBound(2).anchor(f.scope, f.key, f.hash);
      // ... and does not stop the honest producer (each writer has its own slot under a key)
      const receipt = await onBound(1).anchor(g.scope, g.key, g.hash);
      assert.equal(receipt.existing, undefined);
      const reader2 = onBound(undefined);
      for (const o of [genuine, forged]) {
        const v = await verifyObject(reader2, COL_A, stix(o));
        assert.equal(v.status, 'conflict', 'a forgery anchored by an entitled member is never verified while the genuine anchor disagrees');
        assert.deepEqual(new Set(v.anchors?.map((x) => x.writer.toLowerCase())), new Set([addr(1), addr(2)]));
      }
      // the consortium admin (accounts[0]) revokes the dishonest member for COL_A
      await revokeWriter({ rpcUrl: c.rpcUrl, chainId: c.chainId, privateKey: c.accounts[0].privateKey }, bound, c.accounts[2].address, collectionScope(COL_A));
      const vg = await verifyObject(reader2, COL_A, stix(genuine));
      assert.equal(vg.status, 'verified');
      assert.equal(vg.writer?.toLowerCase(), addr(1));
      const vf = await verifyObject(reader2, COL_A, stix(forged));
      assert.equal(vf.status, 'mismatch');
      assert.equal(vf.anchors?.find((x) => x.writer.toLowerCase() === addr(2))?.entitled, false, 'the revoked writer\'s anchor is listed, not counted');
    });

    it("a member publishing a new object in another producer's name: verified only while that identity is unbound; once bound, wrong-writer", async () => {
      const victim = `identity--${randomUUID()}`;
      const inVictimsName = { ...indicator(), created_by_ref: victim };
      const f = keyForObject(COL_A, stix(inVictimsName));
      // a member entitled for COL_A (accounts[8], granted here) anchors an object the victim never published
      const admin = { rpcUrl: c.rpcUrl, chainId: c.chainId, privateKey: c.accounts[0].privateKey };
      await grantWriter(admin, bound, c.accounts[8].address, f.scope);
      await onBound(8).anchor(f.scope, f.key, f.hash);
      const reader2 = onBound(undefined);
      const before = await verifyObject(reader2, COL_A, stix(inVictimsName));
      assert.equal(before.status, 'verified', 'unbound identity: collection entitlement only (the documented residual)');
      assert.equal(before.writer?.toLowerCase(), addr(8));
      // the admin binds the victim's identity to its own account (accounts[1])
      await bindIdentity(admin, bound, identityTag(victim), c.accounts[1].address);
      const after = await verifyObject(reader2, COL_A, stix(inVictimsName));
      assert.equal(after.status, 'wrong-writer');
      assert.equal(after.creator, victim);
      assert.match(after.reason ?? '', new RegExp(`or for its creator ${victim}`));
      // the victim's own objects verify; objects naming no creator keep collection entitlement
      const own = { ...indicator(), created_by_ref: victim };
      const o = keyForObject(COL_A, stix(own));
      await onBound(1).anchor(o.scope, o.key, o.hash);
      assert.equal((await verifyObject(reader2, COL_A, stix(own))).status, 'verified');
      const anonymous = indicator();
      const an = keyForObject(COL_A, stix(anonymous));
      await onBound(8).anchor(an.scope, an.key, an.hash);
      assert.equal((await verifyObject(reader2, COL_A, stix(anonymous))).status, 'verified');
    });

    it('grants and revocations take effect at once: a member granted the collection later squats, writerStatus shows the grant, revoking it restores verified', async () => {
      // (what the TAXII server then does with conflict — pending, not invalid — is in test/server/store-verdict.test.ts)
      const genuine = indicator();
      const forged = { ...genuine, name: 'forged by a member' };
      const g = keyForObject(COL_A, stix(genuine));
      const f = keyForObject(COL_A, stix(forged));
      const admin = { rpcUrl: c.rpcUrl, chainId: c.chainId, privateKey: c.accounts[0].privateKey };
      await grantWriter(admin, bound, c.accounts[5].address, g.scope);
      await onBound(5).anchor(f.scope, f.key, f.hash);
      await onBound(1).anchor(g.scope, g.key, g.hash);
      const reader2 = onBound(undefined);
      assert.equal((await verifyObject(reader2, COL_A, stix(genuine))).status, 'conflict');
      const writer5 = await onBound(5).writerStatus(g.scope);
      assert.deepEqual([writer5.inScope, writer5.anyScope], [true, false]);
      await revokeWriter(admin, bound, c.accounts[5].address, g.scope);
      assert.equal((await onBound(5).writerStatus(g.scope)).inScope, false);
      assert.equal((await verifyObject(reader2, COL_A, stix(genuine))).status, 'verified');
    });
  });
});
