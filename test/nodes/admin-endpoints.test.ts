/**
 * The editor's admin endpoints (nodes/shared/admin-endpoints.ts) in a Node-RED runtime
 * (node-red-node-test-helper, its admin app): "Test connection" of each config kind against the
 * real services (hardhat, the private RabbitMQ node, a TAXII server, an embedded store) and
 * failing with the reason on a wrong port; saved credentials used where the dialog shows none;
 * no secret in any answer; the collection list for the picker.
 * (The permission check with adminAuth on is in test/browser/connection-test.test.ts: it needs
 * the full editor API, which the helper does not run.)
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { allNodes, helper, type FlowNode, type NodeModule } from './helper';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { startTestTaxiiServer, DEFAULT_COLLECTIONS, type TestTaxiiServer } from '../support/taxii-test-server';

interface Answer {
  status: number;
  body: { ok?: boolean; message?: string; collections?: Array<{ id: string; title: string; can_read: boolean; can_write: boolean }> };
}
interface Req extends PromiseLike<Answer> {
  send(body: unknown): Req;
}
interface Agent {
  post(url: string): Req;
  get(url: string): Req;
}
interface RouteLayer {
  route?: { path: string; methods: Record<string, boolean> };
}

/** supertest against the helper's admin app (the helper's own request(); it ships no types). */
const admin = (): Agent => (helper as unknown as { request(): Agent }).request();

async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- node modules are CommonJS `export =` functions
const storeModule = require('../../nodes/sets-store/sets-store') as NodeModule;

const RABBIT_PW = 'S3cret-Broker-pw';
const TAXII_PW = 'S3cret-Taxii-pw';
const KEY_HINT = 'private key';

describe('admin endpoints: Test connection and the collection list', function () {
  this.timeout(60_000);
  let c: ChainHandle;
  let registry: string;
  let amqp: URL;
  let taxii: TestTaxiiServer;
  let dir: string;
  let dead: number;
  /** every answer body, checked for secrets at the end */
  const seen: string[] = [];
  let secrets: string[] = [];

  async function call(url: string, body?: unknown): Promise<Answer> {
    const r = body === undefined ? await admin().get(url) : await admin().post(url).send(body);
    seen.push(JSON.stringify(r.body));
    return r;
  }
  const probe = (kind: string, body: unknown): Promise<Answer> => call(`/sets/probe/${kind}`, body);

  before(async function () {
    // hardhat and RabbitMQ start on first use: slow on a loaded machine
    this.timeout(240_000);
    c = await chain();
    registry = await c.deployRegistry();
    amqp = new URL((await rabbit()).url);
    taxii = await startTestTaxiiServer({ basic: { alice: TAXII_PW } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-admin-'));
    dead = await deadPort();
    secrets = [RABBIT_PW, TAXII_PW, c.accounts[0].privateKey, decodeURIComponent(amqp.password)].filter((s) => s.length >= 6);
  });

  after(async function () {
    await taxii?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const rabbitConfig = (port: string | number = amqp.port) => ({ kind: 'amqp', host: amqp.hostname, port, vhost: '/', exchange: 'sets', timeout: 3000 });
  const ledgerValues = (rpcUrl = c.rpcUrl) => ({ kind: 'evm', rpcUrl, chainId: String(c.chainId), contract: registry, timeout: 3000 });

  async function loadConfigs(): Promise<void> {
    const flow: FlowNode[] = [
      { id: 'b1', type: 'sets-broker', ...rabbitConfig() },
      { id: 't1', type: 'sets-taxii', url: taxii.discoveryUrl, authType: 'basic', timeout: 3000 },
      { id: 'l1', type: 'sets-ledger', ...ledgerValues() },
      { id: 's1', type: 'sets-store', kind: 'embedded', dir: path.join(dir, 'saved-store') },
    ];
    await helper.load([...allNodes, storeModule], flow, {
      b1: { username: decodeURIComponent(amqp.username), password: decodeURIComponent(amqp.password) },
      t1: { username: 'alice', password: TAXII_PW },
      l1: { privateKey: c.accounts[0].privateKey },
    });
  }

  describe('Test connection', () => {
    before(loadConfigs);
    after(() => helper.unload());

    it('broker: connected to RabbitMQ with the typed credentials; a wrong port and a wrong password name the reason', async () => {
      const creds = { username: decodeURIComponent(amqp.username), password: decodeURIComponent(amqp.password) };
      const ok = await probe('broker', { config: rabbitConfig(), credentials: creds });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.ok, true, ok.body.message);
      assert.match(ok.body.message ?? '', /connected to RabbitMQ \d/);
      const port = await probe('broker', { config: rabbitConfig(dead), credentials: creds });
      assert.equal(port.body.ok, false);
      assert.match(port.body.message ?? '', /ECONNREFUSED|cannot connect/i);
      const pw = await probe('broker', { config: rabbitConfig(), credentials: { username: creds.username, password: RABBIT_PW } });
      assert.equal(pw.body.ok, false);
      assert.match(pw.body.message ?? '', /ACCESS_REFUSED|credentials|authenticat/i);
    });

    it('broker: the in-process broker needs no connection', async () => {
      const r = await probe('broker', { config: { kind: 'in-process', brokerName: 'demo' }, credentials: {} });
      assert.equal(r.body.ok, true);
      assert.match(r.body.message ?? '', /in-process broker 'demo'/);
    });

    it('saved credentials: __PWRD__ or empty takes the saved value of node id, only from a node of the same type', async () => {
      const saved = await probe('broker', { id: 'b1', config: rabbitConfig(), credentials: { username: '', password: '__PWRD__' } });
      assert.equal(saved.body.ok, true, saved.body.message);
      // a typed value wins over the saved one
      const typed = await probe('broker', { id: 'b1', config: rabbitConfig(), credentials: { username: decodeURIComponent(amqp.username), password: RABBIT_PW } });
      assert.equal(typed.body.ok, false);
      // the TAXII node's password is not lent to a broker test
      const other = await probe('taxii', { id: 'b1', config: { url: taxii.discoveryUrl, authType: 'basic' }, credentials: { username: 'alice', password: '__PWRD__' } });
      assert.equal(other.body.ok, false);
      assert.match(other.body.message ?? '', /401/);
      const taxiiSaved = await probe('taxii', { id: 't1', config: { url: taxii.discoveryUrl, authType: 'basic' }, credentials: { username: 'alice', password: '__PWRD__' } });
      assert.equal(taxiiSaved.body.ok, true, taxiiSaved.body.message);
      const ledgerSaved = await probe('ledger', { id: 'l1', config: ledgerValues(), credentials: { privateKey: '__PWRD__' } });
      assert.equal(ledgerSaved.body.ok, true, ledgerSaved.body.message);
      assert.match(ledgerSaved.body.message ?? '', new RegExp(`account ${c.accounts[0].address} is granted every collection`, 'i'));
    });

    it('ledger: connected names the registry and chain; a wrong port and a bad field name the reason', async () => {
      const ok = await probe('ledger', { config: ledgerValues(), credentials: {} });
      assert.equal(ok.body.ok, true, ok.body.message);
      assert.match(ok.body.message ?? '', new RegExp(`registry ${registry} on chain 31337`));
      const port = await probe('ledger', { config: ledgerValues(`http://127.0.0.1:${dead}`), credentials: {} });
      assert.equal(port.body.ok, false);
      assert.match(port.body.message ?? '', new RegExp(`127\\.0\\.0\\.1:${dead}`));
      const bad = await probe('ledger', { config: { ...ledgerValues(), rpcUrl: 'ftp://x' }, credentials: {} });
      assert.equal(bad.status, 200);
      assert.equal(bad.body.ok, false);
      assert.match(bad.body.message ?? '', /RPC URL must be an http/);
      const key = await probe('ledger', { config: ledgerValues(), credentials: { privateKey: c.accounts[9].privateKey } });
      assert.equal(key.body.ok, false);
      assert.match(key.body.message ?? '', /not granted any collection/);
      assert.ok(!(key.body.message ?? '').includes(c.accounts[9].privateKey.slice(2)), KEY_HINT);
    });

    it('taxii: connected counts the collections; a wrong port, a wrong password and a missing secret name the reason', async () => {
      const ok = await probe('taxii', { config: { url: taxii.discoveryUrl, authType: 'basic' }, credentials: { username: 'alice', password: TAXII_PW } });
      assert.equal(ok.body.ok, true, ok.body.message);
      assert.match(ok.body.message ?? '', /3 collection\(s\) visible/);
      const url = new URL(taxii.discoveryUrl);
      url.port = String(dead);
      const port = await probe('taxii', { config: { url: url.href, authType: 'basic' }, credentials: { username: 'alice', password: TAXII_PW } });
      assert.equal(port.body.ok, false);
      assert.match(port.body.message ?? '', /ECONNREFUSED|NETWORK|connect/i);
      const pw = await probe('taxii', { config: { url: taxii.discoveryUrl, authType: 'basic' }, credentials: { username: 'alice', password: 'wrong-Pw-123' } });
      assert.equal(pw.body.ok, false);
      assert.match(pw.body.message ?? '', /401/);
      const missing = await probe('taxii', { config: { url: taxii.discoveryUrl, authType: 'bearer' }, credentials: {} });
      assert.match(missing.body.message ?? '', /bearer authentication needs a token/);
    });

    it('store: opens an embedded store, says a new one will be created, names what is wrong', async () => {
      const existing = path.join(dir, 'existing');
      fs.mkdirSync(existing);
      const ok = await probe('store', { config: { kind: 'embedded', dir: existing, retentionHours: 24 }, credentials: {} });
      assert.equal(ok.body.ok, true, ok.body.message);
      assert.match(ok.body.message ?? '', /opened embedded store .*0 record\(s\)/);
      const fresh = path.join(dir, 'not-yet', 'db');
      const later = await probe('store', { config: { kind: 'embedded', dir: fresh }, credentials: {} });
      assert.equal(later.body.ok, true, later.body.message);
      assert.match(later.body.message ?? '', /does not exist yet; it will be created on deploy/);
      assert.equal(fs.existsSync(fresh), false, 'a connection test must not create the store');
      fs.writeFileSync(path.join(dir, 'a-file'), 'x');
      const file = await probe('store', { config: { kind: 'embedded', dir: path.join(dir, 'a-file', 'db') }, credentials: {} });
      assert.equal(file.body.ok, false);
      assert.match(file.body.message ?? '', /not a writable directory/);
      const mongo = await probe('store', { config: { kind: 'mongodb', db: 'cti' }, credentials: {} });
      assert.equal(mongo.body.ok, false);
      assert.match(mongo.body.message ?? '', /needs a URI/);
      const mongoDead = await probe('store', { config: { kind: 'mongodb', db: 'cti' }, credentials: { uri: `mongodb://u:${RABBIT_PW}@127.0.0.1:${dead}/?serverSelectionTimeoutMS=1000` } });
      assert.equal(mongoDead.body.ok, false);
      assert.match(mongoDead.body.message ?? '', new RegExp(`MongoDB .*127\\.0\\.0\\.1:${dead}`));
    });

    it('refuses an unknown kind and a body that is not an object', async () => {
      const kind = await probe('fabric-ish', { config: {} });
      assert.equal(kind.status, 404);
      assert.match(kind.body.message ?? '', /unknown connection kind "fabric-ish"/);
      const body = await probe('broker', { config: 'host=x' });
      assert.equal(body.status, 400);
      assert.match(body.body.message ?? '', /config must be an object/);
    });

    it('is registered once, however many SETS node types register it', () => {
      // the helper's admin app (internal): Express 4 keeps its routes in _router, Express 5 in router
      const app = (helper as unknown as { _httpAdmin: { _router?: { stack: RouteLayer[] }; router?: { stack: RouteLayer[] } } })._httpAdmin;
      const stack = (app._router ?? app.router)?.stack ?? [];
      const routes = stack.filter((l) => l.route?.path === '/sets/probe/:kind');
      assert.equal(routes.length, 1);
    });
  });

  describe('collection list', () => {
    before(loadConfigs);
    after(() => helper.unload());

    it('lists the collections of dialog values (saved password), with title and access', async () => {
      const r = await call('/sets/collections', { id: 't1', config: { url: taxii.discoveryUrl, authType: 'basic' }, credentials: { username: 'alice', password: '__PWRD__' } });
      assert.equal(r.body.ok, true, r.body.message);
      assert.deepEqual(
        r.body.collections,
        DEFAULT_COLLECTIONS.map((x) => ({ id: x.id, title: x.title, can_read: x.can_read, can_write: x.can_write })),
      );
    });

    it('lists the collections of a deployed configuration (GET ?taxii=id); names what is wrong otherwise', async () => {
      const r = await call('/sets/collections?taxii=t1');
      assert.equal(r.body.ok, true, r.body.message);
      assert.equal(r.body.collections?.length, 3);
      const none = await call('/sets/collections?taxii=nope');
      assert.equal(none.body.ok, false);
      assert.match(none.body.message ?? '', /no deployed TAXII server configuration nope/);
      const missing = await call('/sets/collections');
      assert.equal(missing.status, 400);
      const refused = await call('/sets/collections', { config: { url: taxii.discoveryUrl, authType: 'basic' }, credentials: { username: 'alice', password: 'wrong-Pw-123' } });
      assert.equal(refused.body.ok, false);
      assert.match(refused.body.message ?? '', /401/);
    });
  });

  // last: mocha runs a suite's own tests before its nested suites
  describe('every answer', () => {
    it('carried no secret', () => {
      assert.ok(seen.length > 10, `only ${seen.length} answers seen`);
      for (const text of seen) {
        for (const s of secrets) assert.ok(!text.includes(s), `an answer holds a secret: ${text}`);
        assert.ok(!text.includes('wrong-Pw-123'), text);
      }
    });
  });
});
