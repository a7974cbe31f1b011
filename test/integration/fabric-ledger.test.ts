/**
 * Fabric-specific behaviour of the Fabric ledger adapter (lib/ledger/fabric.ts), driving the
 * unmodified fabric-gateway client against the in-process gateway emulator
 * (test/support/fabric-gateway.ts: the real sets-registry chaincode; NO signature or endorsement
 * policy checks). What every ledger must do is in the conformance suite
 * (ledger-conformance-fabric.test.ts); here: TLS and the server-name override, configuration
 * errors, the peer's reasons, MVCC conflicts, the event stream's checkpoint across a cut, the
 * concurrency bound, a hung peer, grants to MSP and attribute principals, 1 s blocks.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { startFabricGateway, type FabricGatewayHandle, type FabricTestIdentity } from '../support/fabric-gateway';
import { makeTlsServer } from '../support/fabric-pki';
import { ANY_SCOPE, createLedger, LedgerError, type FabricLedgerConfig } from '../../lib/ledger';
import { FabricLedger } from '../../lib/ledger/fabric';
import { collectionScope } from '../../lib/digest';
import type { Contract, Gateway } from '@hyperledger/fabric-gateway';

const r32 = () => '0x' + randomBytes(32).toString('hex');
const S = collectionScope('fabric-ledger-test');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function isLedgerError(code: string, re?: RegExp) {
  return (e: unknown): true => {
    assert.ok(e instanceof LedgerError, `expected a LedgerError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

interface Peer {
  gw: FabricGatewayHandle;
  admin: Gateway;
  contract: Contract;
  writer: FabricTestIdentity;
}

describe('Fabric ledger adapter (gateway emulator)', function () {
  this.timeout(60_000);
  const open: FabricLedger[] = [];
  const peers: Peer[] = [];

  /** a fresh emulated peer, chaincode initialised, one writer granted every collection */
  async function peer(opts: Parameters<typeof startFabricGateway>[0] = {}, init = true): Promise<Peer> {
    const gw = await startFabricGateway({ tls: true, ...opts });
    const admin = gw.connect(gw.identity({ cn: 'admin' }));
    const contract = admin.getNetwork(gw.channel).getContract(gw.chaincode);
    const writer = gw.identity({ cn: `writer-${randomBytes(3).toString('hex')}` });
    if (init) {
      await contract.submitTransaction('Initialize', '');
      await contract.submitTransaction('GrantWriter', writer.writer, ANY_SCOPE);
    }
    const p = { gw, admin, contract, writer };
    peers.push(p);
    return p;
  }

  function config(p: Peer, id: FabricTestIdentity = p.writer, extra: Partial<FabricLedgerConfig> = {}): FabricLedgerConfig {
    return {
      peerEndpoint: p.gw.endpoint,
      tlsCaCert: p.gw.tlsCaCert,
      serverNameOverride: p.gw.serverNameOverride,
      mspId: id.mspId,
      certificate: id.certificate,
      privateKey: id.privateKey,
      channel: p.gw.channel,
      healthCheckMs: 0,
      ...extra,
    };
  }

  function ledger(p: Peer, id: FabricTestIdentity = p.writer, extra: Partial<FabricLedgerConfig> = {}): FabricLedger {
    const l = createLedger({ kind: 'fabric', ...config(p, id, extra) }) as FabricLedger;
    open.push(l);
    return l;
  }

  afterEach(async () => {
    await Promise.all(open.splice(0).map((l) => l.close()));
  });

  after(async () => {
    for (const p of peers.splice(0)) {
      p.admin.close();
      await p.gw.stop();
    }
  });

  describe('TLS and configuration', () => {
    let p: Peer;
    before(async () => {
      p = await peer();
    });

    it('TLS with the CA and the server-name override: anchors and reads; the writer is mspId::subject', async () => {
      const l = ledger(p);
      assert.equal(l.state, 'connecting');
      const k = r32();
      const rc = await l.anchor(S, k, r32());
      assert.equal(rc.writer, p.writer.writer);
      assert.match(p.writer.writer, /^Org1MSP::\/.*CN=writer-/);
      assert.equal(l.writer, p.writer.writer);
      assert.equal(l.state, 'connected');
      assert.deepEqual((await l.lookup(S, k)).map((r) => r.writer), [p.writer.writer]);
    });

    it('without the override the peer certificate does not name 127.0.0.1: UNREACHABLE naming the TLS reason', async function () {
      this.timeout(20_000);
      const l = ledger(p, p.writer, { serverNameOverride: undefined, requestTimeoutMs: 3000 });
      await assert.rejects(l.lookup(S, r32()), isLedgerError('UNREACHABLE', /altnames|Hostname|certificate|name/i));
      assert.equal(l.state, 'disconnected');
    });

    it('a CA that did not sign the peer certificate: UNREACHABLE naming the certificate problem', async function () {
      this.timeout(20_000);
      const other = makeTlsServer({ names: ['peer0.org1.example.com'] });
      const l = ledger(p, p.writer, { tlsCaCert: other.caCert, requestTimeoutMs: 3000 });
      await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('UNREACHABLE', /certificate|self.signed|verify/i));
    });

    it('plaintext to a TLS peer fails UNREACHABLE; plaintext without insecure: true is refused as configuration', async function () {
      this.timeout(20_000);
      const l = ledger(p, p.writer, { tlsCaCert: undefined, insecure: true, requestTimeoutMs: 2000 });
      await assert.rejects(l.lookup(S, r32()), isLedgerError('UNREACHABLE'));
      assert.throws(() => createLedger({ kind: 'fabric', ...config(p, p.writer, { tlsCaCert: undefined }) }), isLedgerError('BAD_CONFIG', /tlsCaCert .* is required/));
    });

    it('configuration that cannot work throws BAD_CONFIG naming the field', () => {
      const other = p.gw.identity({ cn: 'someone-else' });
      const bad: Array<[Partial<FabricLedgerConfig>, RegExp]> = [
        [{ peerEndpoint: 'grpcs://peer0:7051' }, /peerEndpoint must be host:port/],
        [{ peerEndpoint: 'peer0' }, /peerEndpoint/],
        [{ peerEndpoint: 'peer0:99999' }, /peerEndpoint/],
        [{ mspId: 'Org1 MSP' }, /mspId/],
        [{ channel: 'MyChannel' }, /channel/],
        [{ chaincode: 'sets registry' }, /chaincode/],
        [{ certificate: 'not a pem' }, /certificate must be a PEM certificate/],
        [{ certificate: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' }, /certificate is not a readable X.509/],
        [{ privateKey: undefined }, /privateKey is required/],
        [{ privateKey: 'nope' }, /privateKey must be a PEM private key/],
        [{ privateKey: other.privateKey }, /privateKey does not belong to the certificate/],
        [{ tlsCaCert: 'nope' }, /tlsCaCert must be a PEM certificate/],
        [{ serverNameOverride: 'bad name' }, /serverNameOverride/],
        [{ maxInFlight: 0 }, /maxInFlight/],
        [{ maxBatchSize: 1001 }, /maxBatchSize/],
        [{ commitTimeoutMs: -1 }, /commitTimeoutMs/],
      ];
      for (const [b, re] of bad) assert.throws(() => createLedger({ kind: 'fabric', ...config(p, p.writer, b) }), isLedgerError('BAD_CONFIG', re), JSON.stringify(Object.keys(b)));
      // no secret in any message
      try {
        createLedger({ kind: 'fabric', ...config(p, p.writer, { privateKey: other.privateKey }) });
      } catch (e) {
        assert.ok(!(e as Error).message.includes('PRIVATE KEY'));
      }
    });

    it('the peer\'s reasons: unknown chaincode or channel -> BAD_CONFIG naming them; state error', async () => {
      const cc = ledger(p, p.writer, { chaincode: 'no-such-chaincode' });
      await assert.rejects(cc.lookup(S, r32()), isLedgerError('BAD_CONFIG', /no-such-chaincode/));
      await assert.rejects(cc.anchor(S, r32(), r32()), isLedgerError('BAD_CONFIG', /no-such-chaincode/));
      assert.equal(cc.state, 'error');
      const ch = ledger(p, p.writer, { channel: 'otherchannel' });
      await assert.rejects(ch.writerStatus(), isLedgerError('BAD_CONFIG', /otherchannel/));
    });

    it('a chaincode not initialised: BAD_CONFIG saying to call Initialize', async () => {
      const fresh = await peer({}, false);
      const l = ledger(fresh);
      await assert.rejects(l.anchor(S, r32(), r32()), isLedgerError('BAD_CONFIG', /not initialised.*Initialize/));
    });
  });

  describe('writes', () => {
    it('MVCC conflicts: the same writer anchoring one key from two connections at once -> one written, the other existing; another hash -> KEY_TAKEN', async () => {
      const p = await peer({ blockMs: 300 });
      const [l1, l2] = [ledger(p, p.writer, { coalesceMs: 0 }), ledger(p, p.writer, { coalesceMs: 0 })];
      let conflicts = 0;
      for (let i = 0; i < 3; i++) {
        const k = r32();
        const hh = r32();
        const [a, b] = await Promise.all([l1.anchor(S, k, hh), l2.anchor(S, k, hh)]);
        assert.equal([a, b].filter((r) => r.existing === true).length, 1, JSON.stringify([a.existing, b.existing]));
        const first = a.existing ? b : a;
        const second = a.existing ? a : b;
        assert.equal(second.tx, first.tx, 'the existing receipt names the transaction that wrote it');
        const k2 = r32();
        const out = await Promise.allSettled([l1.anchor(S, k2, r32()), l2.anchor(S, k2, r32())]);
        assert.equal(out.filter((o) => o.status === 'fulfilled').length, 1);
        isLedgerError('KEY_TAKEN')((out.find((o) => o.status === 'rejected') as PromiseRejectedResult).reason);
        assert.equal((await l1.lookup(S, k2)).length, 1);
        conflicts = l1.trafficStats().conflicts + l2.trafficStats().conflicts;
      }
      assert.ok(conflicts >= 1, `the conflict path ran (${conflicts} conflicts seen)`);
    });

    it('two writers on one key at once: both written (a conflict, if any, is retried)', async () => {
      const p = await peer({ blockMs: 300 });
      const other = p.gw.identity({ cn: 'writer-two' });
      await p.contract.submitTransaction('GrantWriter', other.writer, S);
      const [l1, l2] = [ledger(p), ledger(p, other)];
      const k = r32();
      const [a, b] = await Promise.all([l1.anchor(S, k, r32()), l2.anchor(S, k, r32())]);
      assert.equal(a.existing, undefined);
      assert.equal(b.existing, undefined);
      assert.deepEqual((await l1.lookup(S, k)).map((r) => r.writer).sort(), [p.writer.writer, other.writer].sort());
    });

    it('grants to an MSP principal and to a certificate attribute principal; writerGrants counts them', async () => {
      const p = await peer();
      const tagged = p.gw.identity({ cn: 'tagged', attrs: { role: 'sets-writer' } });
      const plain = p.gw.identity({ cn: 'plain' });
      const lt = ledger(p, tagged);
      const lp = ledger(p, plain);
      await assert.rejects(lt.anchor(S, r32(), r32()), isLedgerError('NOT_AUTHORISED', /GrantWriter\(/));
      assert.deepEqual(lt.principals(), ['Org1MSP', 'Org1MSP#role=sets-writer', lt.writer]);
      await p.contract.submitTransaction('GrantWriter', 'Org1MSP#role=sets-writer', S);
      await lt.anchor(S, r32(), r32());
      await assert.rejects(lp.anchor(S, r32(), r32()), isLedgerError('NOT_AUTHORISED'));
      assert.deepEqual(await lt.writerGrants(), { account: tagged.writer, anyScope: false, scopes: 1 });
      await p.contract.submitTransaction('GrantWriter', 'Org1MSP', collectionScope('another'));
      await lp.anchor(collectionScope('another'), r32(), r32());
      assert.deepEqual(await lt.writerGrants(), { account: tagged.writer, anyScope: false, scopes: 2 });
    });

    it('the concurrency bound: a peer allowing 4 requests serves 60 concurrent anchors of a ledger with maxInFlight 3; unbounded, the peer refuses some (busy -> UNREACHABLE)', async function () {
      this.timeout(90_000);
      const p = await peer({ maxConcurrent: 4, blockMs: 100 });
      const bounded = ledger(p, p.writer, { maxInFlight: 3, coalesceMs: 0 });
      let peak = 0;
      const sampler = setInterval(() => (peak = Math.max(peak, bounded.stats().inFlight)), 2);
      try {
        const rcs = await Promise.all(Array.from({ length: 60 }, () => bounded.anchor(S, r32(), r32())));
        assert.equal(rcs.length, 60);
      } finally {
        clearInterval(sampler);
      }
      assert.ok(peak <= 3 && peak >= 2, `peak in flight ${peak}`);
      const unbounded = ledger(p, p.writer, { maxInFlight: 100, coalesceMs: 0 });
      const out = await Promise.allSettled(Array.from({ length: 60 }, () => unbounded.anchor(S, r32(), r32())));
      const refused = out.filter((o) => o.status === 'rejected') as PromiseRejectedResult[];
      assert.ok(refused.length > 0, 'without the bound the peer refuses some');
      isLedgerError('UNREACHABLE', /concurrency limit/)(refused[0].reason);
    });

    it('1 s blocks: an anchor resolves once its block is cut; timings and the block in the receipt', async function () {
      this.timeout(30_000);
      const p = await peer({ blockMs: 1000 });
      const l = ledger(p);
      const t0 = Date.now();
      const rcs = await Promise.all(Array.from({ length: 20 }, () => l.anchor(S, r32(), r32())));
      const dt = Date.now() - t0;
      assert.ok(dt >= 900 && dt < 5000, `took ${dt} ms`);
      assert.equal(new Set(rcs.map((r) => r.tx)).size, 1, 'coalesced into one AnchorMany');
      const st = p.gw.txStatus(rcs[0].tx);
      assert.equal(st?.blockNumber, rcs[0].block);
      assert.ok((rcs[0].timings?.mined ?? 0) - (rcs[0].timings?.sent ?? 0) >= 500);
      // an existing anchor names the block when this ledger saw it commit
      const again = await l.anchor(S, rcs[0].key, rcs[0].hash);
      assert.deepEqual([again.existing, again.tx, again.block], [true, rcs[0].tx, rcs[0].block]);
    });
  });

  describe('events and outages', () => {
    it('the event stream is cut while an anchor commits: it resumes from its checkpoint and delivers that event, none twice', async function () {
      this.timeout(40_000);
      const p = await peer({ blockMs: 1000 });
      // polling could find the anchors too: make it too slow to matter, so only the stream can
      const reader = ledger(p, p.gw.identity({ cn: 'reader' }), { pollMs: 60_000, healthCheckMs: 200, requestTimeoutMs: 3000 });
      const writer = ledger(p, p.writer, { requestTimeoutMs: 3000 });
      const [k1, k2, k3] = [r32(), r32(), r32()];
      const w1 = reader.waitForAnchor(S, k1, 30_000);
      const w2 = reader.waitForAnchor(S, k2, 30_000);
      await sleep(700);
      await writer.anchor(S, k1, r32());
      assert.equal((await w1).length, 1);
      assert.equal(reader.trafficStats().events, 1);
      // k3 is submitted, then the peer goes away before its block is cut: the stream is down while it commits
      const before = p.gw.stats.submitted;
      const a3 = writer.anchor(S, k3, r32());
      while (p.gw.stats.submitted === before) await sleep(10);
      await p.gw.pause();
      await sleep(1500);
      await p.gw.resume();
      await a3;
      // after reconnecting from the checkpoint (after k1's transaction) the stream replays k3's event
      for (let i = 0; i < 100 && reader.trafficStats().events < 2; i++) await sleep(100);
      assert.equal(reader.trafficStats().events, 2, 'k3\'s event arrives after the reconnect (checkpoint), k1\'s is not repeated');
      assert.ok(reader.trafficStats().streamStarts >= 2, 'the stream was restarted');
      await writer.anchor(S, k2, r32());
      assert.equal((await w2).length, 1);
      assert.equal(reader.trafficStats().events, 3);
      const { waiters, streams } = reader.stats(); // (a health check may be in flight)
      assert.deepEqual({ waiters, streams }, { waiters: 0, streams: 0 });
    });

    it('a hung peer (connections up, no answers): UNREACHABLE after requestTimeoutMs, connected again after it answers', async function () {
      this.timeout(30_000);
      const p = await peer();
      const l = ledger(p, p.writer, { requestTimeoutMs: 800, healthCheckMs: 200 });
      await l.anchor(S, r32(), r32());
      await p.gw.pause({ hang: true });
      const t0 = Date.now();
      await assert.rejects(l.lookup(S, r32()), isLedgerError('UNREACHABLE', /DEADLINE_EXCEEDED|Deadline/i));
      assert.ok(Date.now() - t0 < 3000);
      assert.equal(l.state, 'disconnected');
      const back = new Promise<void>((resolve) => {
        const off = l.onState((s) => {
          if (s === 'connected') {
            off();
            resolve();
          }
        });
      });
      await p.gw.resume();
      await back;
      await l.anchor(S, r32(), r32());
    });

    it('close() is idempotent, ends waits with TIMEOUT and leaves nothing open; calls after close fail', async () => {
      const p = await peer();
      const l = ledger(p);
      const w = assert.rejects(l.waitForAnchor(S, r32(), 10_000), isLedgerError('TIMEOUT'));
      await sleep(200);
      assert.equal(l.stats().streams, 1);
      await l.close();
      await l.close();
      await w;
      assert.deepEqual(l.stats(), { waiters: 0, streams: 0, inFlight: 0, queued: 0 });
      await assert.rejects(l.anchor(S, r32(), r32()), LedgerError);
      await assert.rejects(l.lookup(S, r32()), LedgerError);
    });
  });
});
