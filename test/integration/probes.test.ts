/**
 * Connection tests (lib/ops/probes) against the real services: the hardhat node with the registry
 * deployed, the private RabbitMQ node, a TAXII server with Basic authentication, the embedded store.
 * Each probe must name the reason of a failure (what an n8n credential test or a config dialog
 * shows), never throw, and leave nothing open.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';
import { probeBroker, probeLedger, probeStore, probeTaxii } from '../../lib/ops/probes';
import { brokerConfig, ledgerConfig, parseBrokerSettings, parseLedgerSettings } from '../../lib/ops/connections';
import { parseTaxiiSettings } from '../../lib/ops/taxii-connection';
import { parseStoreSettings } from '../../lib/ops/server-store';
import { deployRegistry, grantWriter, revokeWriter } from '../../lib/ledger';
import { collectionScope } from '../../lib/digest';
import { startFabricGateway, type FabricGatewayHandle } from '../support/fabric-gateway';
import { makeTlsServer } from '../support/fabric-pki';

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('connection probes (lib/ops/probes)', function () {
  this.timeout(60_000);
  let c: ChainHandle;
  let registry: string;
  let amqpUrl: URL;

  before(async () => {
    c = await chain();
    registry = await c.deployRegistry();
    amqpUrl = new URL((await rabbit()).url);
  });

  const ledger = (raw: Record<string, unknown>, privateKey?: string) =>
    ledgerConfig(parseLedgerSettings({ rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, timeout: 3000, ...raw }), { privateKey });

  describe('ledger', () => {
    it('ok: names the registry, chain and where the account may anchor', async () => {
      const ro = await probeLedger(ledger({}));
      assert.equal(ro.ok, true, ro.message);
      assert.match(ro.message, /read-only/);
      const w = await probeLedger(ledger({}, c.accounts[0].privateKey));
      assert.equal(w.ok, true, w.message);
      assert.match(w.message, new RegExp(`account ${c.accounts[0].address} is granted every collection`, 'i'));
    });

    it('a writer bound to collections: "granted N collection(s)", and "not granted any collection" once revoked', async () => {
      const admin = { rpcUrl: c.rpcUrl, chainId: c.chainId, privateKey: c.accounts[0].privateKey };
      const [s1, s2] = [collectionScope('probe-a'), collectionScope('probe-b')];
      const reg = await deployRegistry({ ...admin, writers: [{ account: c.accounts[5].address, scopes: [s1, s2] }] });
      const probe = () => probeLedger({ ...ledger({}, c.accounts[5].privateKey), address: reg });
      const two = await probe();
      assert.equal(two.ok, true, two.message);
      assert.match(two.message, new RegExp(`account ${c.accounts[5].address} is granted 2 collection\\(s\\)`));
      await revokeWriter(admin, reg, c.accounts[5].address, s1);
      await revokeWriter(admin, reg, c.accounts[5].address, s2);
      const none = await probe();
      assert.equal(none.ok, false);
      assert.match(none.message, /not granted any collection: ask the registry admin \(grantWriter/);
      await grantWriter(admin, reg, c.accounts[5].address);
      assert.match((await probe()).message, /granted every collection/);
    });

    it('fails naming the reason: account not a writer, wrong chain, no contract, nobody listening', async () => {
      const notWriter = await probeLedger(ledger({}, c.accounts[9].privateKey));
      assert.equal(notWriter.ok, false);
      assert.match(notWriter.message, new RegExp(`account ${c.accounts[9].address} is not granted any collection: ask the registry admin \\(grantWriter`));
      const wrongChain = await probeLedger(ledger({ chainId: '1337' }));
      assert.equal(wrongChain.ok, false);
      assert.match(wrongChain.message, /wrong chain: .* serves chain id 31337, the configuration expects 1337/);
      const noContract = await probeLedger(ledger({ contract: '0x' + '12'.repeat(20) }));
      assert.equal(noContract.ok, false);
      assert.match(noContract.message, /no contract at/);
      const dead = await probeLedger(ledger({ rpcUrl: `http://127.0.0.1:${await deadPort()}` }), { timeoutMs: 3000 });
      assert.equal(dead.ok, false);
      assert.match(dead.message, /ECONNREFUSED|unreachable|no answer|cannot reach/i);
    });

    it('bad settings are refused before any connection, naming the field', () => {
      assert.throws(() => parseLedgerSettings({ rpcUrl: 'localhost:8545', chainId: '1', contract: registry }), /RPC URL must be/);
      assert.throws(() => parseLedgerSettings({ rpcUrl: c.rpcUrl, chainId: 'x', contract: registry }), /chain id must be a number/);
      assert.throws(() => parseLedgerSettings({ rpcUrl: c.rpcUrl, chainId: '1', contract: '0x12' }), /registry address must be/);
      assert.throws(() => parseLedgerSettings({ rpcUrl: c.rpcUrl, chainId: '1', contract: registry, gasPrice: '1.5' }), /gasPrice must be a whole number of wei/);
      assert.throws(() => parseLedgerSettings({ rpcUrl: c.rpcUrl, chainId: '1', contract: registry, txType: '1' }), /tx type must be one of 0, 2/);
    });
  });

  describe('Fabric ledger', () => {
    let gw: FabricGatewayHandle;
    let admin: ReturnType<FabricGatewayHandle['connect']>;
    const grant = (principal: string, scope: string) => admin.getNetwork(gw.channel).getContract(gw.chaincode).submitTransaction('GrantWriter', principal, scope);
    const revoke = (principal: string, scope: string) => admin.getNetwork(gw.channel).getContract(gw.chaincode).submitTransaction('RevokeWriter', principal, scope);
    before(async () => {
      gw = await startFabricGateway({ tls: true });
      admin = gw.connect(gw.identity({ cn: 'probe-admin' }));
      await admin.getNetwork(gw.channel).getContract(gw.chaincode).submitTransaction('Initialize', '');
    });
    after(async () => {
      admin.close();
      await gw.stop();
    });
    const raw = (extra: Record<string, unknown> = {}) => ({
      kind: 'fabric' as const,
      peerEndpoint: gw.endpoint,
      serverNameOverride: gw.serverNameOverride,
      mspId: 'Org1MSP',
      channel: gw.channel,
      timeout: 3000,
      ...extra,
    });
    const fabric = (id: { certificate: string; privateKey: string }, extra: Record<string, unknown> = {}, tlsCaCert = gw.tlsCaCert) =>
      ledgerConfig(parseLedgerSettings(raw(extra)), { certificate: id.certificate, privateKey: id.privateKey, tlsCaCert });

    it('ok: names the chaincode, channel, peer and identity, and how many collections it is granted', async () => {
      const id = gw.identity({ cn: 'probe-writer' });
      const none = await probeLedger(fabric(id));
      assert.equal(none.ok, false);
      assert.ok(none.message.startsWith(`connected to chaincode sets-registry on channel ${gw.channel} at ${gw.endpoint} as ${id.writer}, but this identity is not granted any collection`), none.message);
      assert.match(none.message, /GrantWriter\(<principal>/);
      const [s1, s2] = [collectionScope('probe-f1'), collectionScope('probe-f2')];
      await grant(id.writer, s1);
      await grant('Org1MSP', s2);
      const two = await probeLedger(fabric(id));
      assert.equal(two.ok, true, two.message);
      assert.equal(two.message, `connected: chaincode sets-registry on channel ${gw.channel} at ${gw.endpoint} as ${id.writer}; granted 2 collection(s)`);
      await grant(id.writer, '0x' + '0'.repeat(64));
      assert.match((await probeLedger(fabric(id))).message, /; granted every collection$/);
      await revoke('Org1MSP', s2);
    });

    it('fails naming the reason: wrong TLS CA, unknown chaincode, nobody listening, not initialised', async function () {
      this.timeout(60_000);
      const id = gw.identity({ cn: 'probe-other' });
      const wrongCa = await probeLedger(fabric(id, {}, makeTlsServer({ names: ['peer0.org1.example.com'] }).caCert), { timeoutMs: 3000 });
      assert.equal(wrongCa.ok, false);
      assert.match(wrongCa.message, /certificate|self.signed|verify/i);
      const cc = await probeLedger(fabric(id, { chaincode: 'not-deployed' }));
      assert.equal(cc.ok, false);
      assert.match(cc.message, /not-deployed/);
      const dead = await probeLedger(fabric(id, { peerEndpoint: `127.0.0.1:${await deadPort()}` }), { timeoutMs: 3000 });
      assert.equal(dead.ok, false);
      assert.match(dead.message, /UNAVAILABLE|ECONNREFUSED|no answer/i);
      const fresh = await startFabricGateway({ tls: false });
      try {
        const r = await probeLedger(ledgerConfig(parseLedgerSettings(raw({ peerEndpoint: fresh.endpoint, tlsMode: 'insecure', serverNameOverride: '' })), id));
        assert.equal(r.ok, false);
        assert.match(r.message, /not initialised/);
      } finally {
        await fresh.stop();
      }
    });

    it('bad settings and secrets are refused before any connection, naming the field', () => {
      const id = gw.identity({ cn: 'probe-third' });
      assert.throws(() => parseLedgerSettings(raw({ peerEndpoint: 'grpcs://peer0:7051' })), /peer endpoint must be host:port/);
      assert.throws(() => parseLedgerSettings(raw({ peerEndpoint: '' })), /peer endpoint/);
      assert.throws(() => parseLedgerSettings(raw({ mspId: '' })), /MSP id must be/);
      assert.throws(() => parseLedgerSettings(raw({ channel: 'My Channel' })), /channel must be a Fabric channel name/);
      assert.throws(() => parseLedgerSettings(raw({ chaincode: 'a b' })), /chaincode must be a chaincode name/);
      assert.throws(() => parseLedgerSettings(raw({ tlsMode: 'mtls' })), /TLS mode must be one of tls, insecure/);
      assert.throws(() => parseLedgerSettings(raw({ serverNameOverride: 'a b' })), /TLS server name override/);
      assert.throws(() => parseLedgerSettings(raw({ maxInFlight: '0' })), /requests in flight/);
      const s = parseLedgerSettings(raw({ chaincode: '', contractName: 'SetsRegistry', anchorDeadline: '30', coalesceMs: '0', maxBatchSize: '100' }));
      const cfg = ledgerConfig(s, { certificate: id.certificate, privateKey: id.privateKey, tlsCaCert: gw.tlsCaCert });
      assert.deepEqual(
        [cfg.kind, cfg.chaincode, cfg.contract, cfg.commitTimeoutMs, cfg.requestTimeoutMs, cfg.coalesceMs, cfg.maxBatchSize, cfg.insecure, cfg.serverNameOverride],
        ['fabric', 'sets-registry', 'SetsRegistry', 30_000, 3000, 0, 100, undefined, gw.serverNameOverride],
      );
      assert.throws(() => ledgerConfig(s, { privateKey: id.privateKey, tlsCaCert: gw.tlsCaCert }), /certificate is required/);
      assert.throws(() => ledgerConfig(s, { certificate: 'x', privateKey: id.privateKey, tlsCaCert: gw.tlsCaCert }), /certificate must be a PEM certificate/);
      assert.throws(() => ledgerConfig(s, { certificate: id.certificate, tlsCaCert: gw.tlsCaCert }), /private key is required/);
      assert.throws(() => ledgerConfig(s, { certificate: id.certificate, privateKey: '0x' + '1'.repeat(64), tlsCaCert: gw.tlsCaCert }), /private key must be a PEM private key/);
      assert.throws(() => ledgerConfig(s, { certificate: id.certificate, privateKey: id.privateKey }), /TLS CA certificate is required/);
      assert.throws(() => ledgerConfig(s, { certificate: id.certificate, privateKey: id.privateKey, tlsCaCert: id.privateKey }), /TLS CA certificate must be a PEM certificate/);
      const plain = ledgerConfig(parseLedgerSettings(raw({ tlsMode: 'insecure' })), { certificate: id.certificate, privateKey: id.privateKey });
      assert.equal(plain.insecure, true);
      assert.equal(plain.tlsCaCert, undefined);
    });
  });

  describe('broker', () => {
    const settings = (raw: Record<string, unknown>) => parseBrokerSettings({ host: amqpUrl.hostname, port: amqpUrl.port, timeout: 3000, ...raw });
    it('ok with the right credentials; names the broker product', async () => {
      const r = await probeBroker(brokerConfig(settings({}), { username: decodeURIComponent(amqpUrl.username), password: decodeURIComponent(amqpUrl.password) }));
      assert.equal(r.ok, true, r.message);
      assert.match(r.message, /RabbitMQ/);
    });
    it('fails naming the reason: bad password, unknown vhost, nobody listening', async () => {
      const bad = await probeBroker(brokerConfig(settings({}), { username: 'guest', password: 'wrong-password' }));
      assert.equal(bad.ok, false);
      assert.match(bad.message, /ACCESS_REFUSED|credentials|authenticat/i);
      assert.doesNotMatch(bad.message, /wrong-password/);
      const vhost = await probeBroker(brokerConfig(settings({ vhost: 'no-such-vhost' }), { username: 'guest', password: 'guest' }));
      assert.equal(vhost.ok, false);
      assert.match(vhost.message, /vhost|virtual host|NOT_ALLOWED/i);
      const dead = await probeBroker(brokerConfig(settings({ port: await deadPort() }), { username: 'guest', password: 'guest' }));
      assert.equal(dead.ok, false);
      assert.match(dead.message, /ECONNREFUSED|cannot connect/i);
    });
  });

  describe('TAXII', () => {
    let srv: TestTaxiiServer;
    before(async () => {
      srv = await startTestTaxiiServer({ basic: { alice: 'alice-pw' } });
    });
    after(() => srv.stop());
    it('ok with the right password; counts the visible collections', async () => {
      const r = await probeTaxii(parseTaxiiSettings({ url: srv.discoveryUrl, authType: 'basic' }), { username: 'alice', password: 'alice-pw' });
      assert.equal(r.ok, true, r.message);
      assert.match(r.message, /\d+ collection\(s\) visible/);
    });
    it('fails naming the reason: 401, a missing secret, a bad URL', async () => {
      const bad = await probeTaxii(parseTaxiiSettings({ url: srv.discoveryUrl, authType: 'basic' }), { username: 'alice', password: 'nope-pw' });
      assert.equal(bad.ok, false);
      assert.match(bad.message, /401/);
      assert.doesNotMatch(bad.message, /nope-pw/);
      const missing = await probeTaxii(parseTaxiiSettings({ url: srv.discoveryUrl, authType: 'bearer' }), {});
      assert.equal(missing.ok, false);
      assert.match(missing.message, /bearer authentication needs a token/);
      assert.throws(() => parseTaxiiSettings({ url: 'ftp://x' }), /TAXII URL must be an http/);
      assert.throws(() => parseTaxiiSettings({ url: srv.discoveryUrl, authType: 'digest' }), /authentication must be one of/);
    });
  });

  describe('store', () => {
    it('opens an embedded store, counts its records and closes it again; fails naming the reason', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-probe-'));
      try {
        const ok = await probeStore(parseStoreSettings({ kind: 'embedded', dir }), {});
        assert.equal(ok.ok, true, ok.message);
        assert.match(ok.message, /0 record\(s\)/);
        fs.writeFileSync(path.join(dir, 'file'), 'x');
        const bad = await probeStore(parseStoreSettings({ kind: 'embedded', dir: path.join(dir, 'file', 'db') }), {});
        assert.equal(bad.ok, false);
        assert.match(bad.message, /embedded store .*file/);
        const mongo = await probeStore(parseStoreSettings({ kind: 'mongodb', db: 'cti' }), { uri: 'mongodb://u:secret-pw@127.0.0.1:1/' }, { timeoutMs: 3000 });
        assert.equal(mongo.ok, false);
        assert.doesNotMatch(mongo.message, /secret-pw/);
        assert.throws(() => parseStoreSettings({ kind: 'mongodb' }), /needs a database name/);
        assert.throws(() => parseStoreSettings({ kind: 'sqlite' }), /store kind must be one of embedded, mongodb/);
        assert.throws(() => parseStoreSettings({ kind: 'embedded', retentionHours: '0' }), /status retention/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
