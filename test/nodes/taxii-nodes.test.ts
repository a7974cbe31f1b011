/**
 * sets-taxii, taxii-publish and taxii-inquire on a real Node-RED runtime against TAXII 2.1 servers
 * over real HTTP: the independent test server (test/support/taxii-test-server.ts) for protocol and
 * error handling, an OAuth2 server (test/support/oidc.ts) for client credentials, and the project's
 * own SETS TAXII server (lib/taxii/server.ts + embedded store) verifying admissions against the
 * chain, for the paper's steps 1, 2.a/2.b, 5 and 6 end to end.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { startOidc, type OidcHandle } from '../support/oidc';
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { verifyObject } from '../../lib/verify';
import { EmbeddedStore } from '../../lib/store/embedded';
import { createTaxiiServer, hashPassword, type TaxiiServer } from '../../lib/taxii/server';
import type { StixObject } from '../../lib/stix';
import { Collector, OpenHandles, Recorder, allNodes, deployedFlows, helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { bundle, collectionId, indicator, malware } from './stix';

type Msg = {
  payload?: unknown;
  collection?: string;
  parts?: { id: string; index: number; count?: number };
  sets?: {
    taxii?: { status: string; success_count: number; failure_count: number; pending_count: number; total_count: number; failures?: Array<{ id: string; message?: string }> };
    inquiry?: { count: number; operation: string; collection: string; limitReached?: boolean };
    verification?: { status: string };
  };
  error?: { message?: string };
};
const asMsg = (m: unknown): Msg => m as Msg;
const RW = DEFAULT_COLLECTIONS[0].id;

describe(`TAXII nodes on Node-RED ${nodeRedVersion}`, function () {
  let taxii: TestTaxiiServer;

  before(async () => {
    taxii = await startTestTaxiiServer({ basic: { alice: 'alice-pw-42' }, bearerTokens: ['static-token-77'] });
    await helper.startServer();
  });
  after(async () => {
    await taxii?.stop();
    await helper.stopServer();
  });
  afterEach(async () => {
    taxii.setFault(null);
    await helper.unload();
  });

  function flow(server: Partial<FlowNode>, extra: { publish?: Partial<FlowNode>; inquire?: Partial<FlowNode> } = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'taxii' },
      { id: 'srv', type: 'sets-taxii', url: taxii.discoveryUrl, authType: 'basic', tlsVerify: true, timeout: 5000, ...server },
      { id: 'pub', type: 'taxii-publish', z: 'tab', server: 'srv', collection: RW, waitStatus: true, statusTimeout: 10000, onFailure: 'error', wires: [['published']], ...extra.publish },
      { id: 'published', type: 'helper', z: 'tab' },
      { id: 'inq', type: 'taxii-inquire', z: 'tab', server: 'srv', collection: RW, operation: 'objects', limit: 2, maxItems: 0, output: 'all', wires: [['got']], ...extra.inquire },
      { id: 'got', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ].map(placed);
  }
  const basicCreds = { srv: { username: 'alice', password: 'alice-pw-42' } };
  const bearer = { srv: { token: 'static-token-77' } };

  it('taxii-publish posts the objects as an envelope and puts the status in msg.sets.taxii', async () => {
    await helper.load(allNodes, flow({}), basicCreds);
    const published = new Collector(helper.getNode('published'));
    const objs = [indicator(), malware()];
    helper.getNode('pub')?.receive({ payload: JSON.stringify(bundle(objs)) });
    const [m] = await published.wait(1);
    const st = asMsg(m).sets?.taxii;
    assert.equal(st?.status, 'complete');
    assert.equal(st?.success_count, 2);
    assert.equal(st?.failure_count, 0);
    const stored = (taxii.state.objects.get(RW) ?? []).map((v) => v.id);
    for (const o of objs) assert.ok(stored.includes(o.id), `${o.id} stored on the server`);
    const posts = taxii.requestsTo(`/collections/${RW}/objects/`).filter((r) => r.method === 'POST');
    assert.equal(JSON.parse(posts[posts.length - 1].body).objects.length, 2, 'one envelope with both objects');
  });

  it('taxii-publish waits for a pending status to complete (or passes it on when told not to wait)', async () => {
    const slow = await startTestTaxiiServer({ pendingPolls: 2 });
    try {
      await helper.load(allNodes, flow({ url: slow.apiRootUrl, authType: 'none' }, { publish: { statusTimeout: 20000 } }), {});
      const published = new Collector(helper.getNode('published'));
      helper.getNode('pub')?.receive({ payload: indicator() });
      const [m] = await published.wait(1, 20_000);
      assert.equal(asMsg(m).sets?.taxii?.status, 'complete');
      assert.ok(slow.requestsTo('/status/').length >= 2, 'the status was polled');
      await helper.unload();

      await helper.load(allNodes, flow({ url: slow.apiRootUrl, authType: 'none' }, { publish: { waitStatus: false } }), {});
      const p2 = new Collector(helper.getNode('published'));
      helper.getNode('pub')?.receive({ payload: indicator() });
      const [m2] = await p2.wait(1);
      assert.equal(asMsg(m2).sets?.taxii?.status, 'pending');
      assert.equal(asMsg(m2).sets?.taxii?.pending_count, 1);
    } finally {
      await helper.unload();
      await slow.stop();
    }
  });

  it('a malformed payload fails before anything is sent to the server', async () => {
    await helper.load(allNodes, flow({}), basicCreds);
    const caught = new Collector(helper.getNode('caught'));
    taxii.clearRequests();
    helper.getNode('pub')?.receive({ payload: bundle([indicator(), { type: 'malware', id: 'malware--1', spec_version: '2.1' }]) });
    helper.getNode('pub')?.receive({ payload: '{not json' });
    const errs = await caught.wait(2);
    assert.match(String(asMsg(errs[0]).error?.message), /object #1/);
    assert.match(String(asMsg(errs[1]).error?.message), /not JSON/);
    assert.equal(taxii.requestsTo('/objects/').length, 0);
  });

  for (const [status, what] of [
    [401, /401|Unauthorized/],
    [406, /406/],
    [413, /413/],
    [422, /422/],
    [500, /500/],
  ] as const) {
    it(`a TAXII server answering ${status} gives a clear node error (code HTTP_${status}), red badge, no crash`, async () => {
      await helper.load(allNodes, flow({}), basicCreds);
      taxii.setFault({ method: 'POST', status, title: `fault ${status}`, description: `the test server says ${status}` });
      const caught = new Collector(helper.getNode('caught'));
      const rec = new Recorder(helper.getNode('pub'));
      helper.getNode('pub')?.receive({ payload: indicator() });
      const [m] = await caught.wait(1);
      const text = String(asMsg(m).error?.message);
      assert.match(text, what);
      assert.match(text, /POST/);
      assert.match(text, new RegExp(RW));
      const err = rec.errors.find((e) => e.err instanceof Error)?.err as { code?: string } | undefined;
      assert.equal(err?.code, `HTTP_${status}`);
      await until('red badge', () => rec.lastStatus?.fill === 'red');
      // the node keeps working once the server is fine again
      taxii.setFault(null);
      const published = new Collector(helper.getNode('published'));
      helper.getNode('pub')?.receive({ payload: indicator() });
      await published.wait(1);
    });
  }

  it('wrong credentials: taxii-inquire fails with the 401, the password stays out of the log', async () => {
    await helper.load(allNodes, flow({}), { srv: { username: 'alice', password: 'wrong-password-x' } });
    const caught = new Collector(helper.getNode('caught'));
    helper.getNode('inq')?.receive({ payload: '' });
    const [m] = await caught.wait(1);
    assert.match(String(asMsg(m).error?.message), /401/);
    assert.ok(!logText().includes('wrong-password-x'));
  });

  it('taxii-inquire: all objects in one message, across pages, with filters from the node and msg.filters', async () => {
    const coll = collectionId();
    taxii.state.collections.push({ id: coll, title: 'inquiry', can_read: true, can_write: true });
    const objs = [indicator('a'), malware('m1'), indicator('b'), indicator('c'), malware('m2')];
    taxii.seed(coll, objs);
    await helper.load(allNodes, flow({ url: taxii.apiRootUrl, authType: 'bearer' }, { inquire: { collection: coll } }), { srv: { token: 'static-token-77' } });
    const got = new Collector(helper.getNode('got'));
    const inq = helper.getNode('inq');
    inq?.receive({ payload: '' });
    const [all] = await got.wait(1);
    assert.deepEqual(
      (all.payload as StixObject[]).map((o) => o.id),
      objs.map((o) => o.id),
    );
    assert.equal(asMsg(all).collection, coll, 'msg.collection set for verify-hash downstream');
    assert.equal(asMsg(all).sets?.inquiry?.count, 5);
    assert.ok(taxii.requestsTo(`/collections/${coll}/objects/`).length >= 3, 'paged with limit 2');
    inq?.receive({ payload: '', filters: { match: { type: 'malware' } } });
    const [, malwares] = await got.wait(2);
    assert.deepEqual(
      (malwares.payload as StixObject[]).map((o) => o.id),
      [objs[1].id, objs[4].id],
    );
    const last = taxii.requestsTo(`/collections/${coll}/objects/`).pop();
    assert.match(String(last?.rawQuery), /match%5Btype%5D=malware/);
  });

  it('taxii-inquire: one message per page or per object, as a msg.parts sequence', async () => {
    const coll = collectionId();
    taxii.state.collections.push({ id: coll, title: 'seq', can_read: true, can_write: true });
    const objs = [indicator('1'), indicator('2'), indicator('3')];
    taxii.seed(coll, objs);
    await helper.load(allNodes, flow({ url: taxii.apiRootUrl, authType: 'bearer' }, { inquire: { collection: coll, output: 'page' } }), bearer);
    const got = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ payload: '' });
    const pages = await got.wait(2);
    assert.deepEqual(
      pages.map((p) => (p.payload as unknown[]).length),
      [2, 1],
    );
    assert.deepEqual(
      pages.map((p) => asMsg(p).parts?.index),
      [0, 1],
    );
    assert.equal(asMsg(pages[1]).parts?.count, 2);
    await helper.unload();

    await helper.load(allNodes, flow({ url: taxii.apiRootUrl, authType: 'bearer' }, { inquire: { collection: coll, output: 'object', maxItems: 2 } }), bearer);
    const got2 = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ payload: '' });
    const each = await got2.wait(2);
    assert.deepEqual(
      each.map((m) => (m.payload as StixObject).id),
      [objs[0].id, objs[1].id],
    );
    assert.equal(asMsg(each[1]).parts?.count, 2);
    assert.equal(asMsg(each[1]).sets?.inquiry?.limitReached, true);
  });

  it('taxii-inquire: one object by id, its versions, and the manifest', async () => {
    const coll = collectionId();
    taxii.state.collections.push({ id: coll, title: 'versions', can_read: true, can_write: true });
    const v1 = { ...indicator('v'), modified: '2024-01-01T00:00:00.000Z', created: '2024-01-01T00:00:00.000Z' };
    const v2 = { ...v1, modified: '2024-02-01T00:00:00.000Z', name: 'v2' };
    taxii.seed(coll, [v1, v2, malware()]);
    const mk = (op: string): FlowNode[] =>
      flow({ url: taxii.apiRootUrl, authType: 'bearer' }, { inquire: { collection: coll, operation: op, objectId: v1.id, matchVersion: op === 'object' ? 'all' : '' } });
    await helper.load(allNodes, mk('object'), bearer);
    let got = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ payload: '' });
    let [m] = await got.wait(1);
    assert.deepEqual(
      (m.payload as StixObject[]).map((o) => o.modified),
      ['2024-01-01T00:00:00.000Z', '2024-02-01T00:00:00.000Z'],
    );
    await helper.unload();

    await helper.load(allNodes, mk('versions'), bearer);
    got = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ payload: '' });
    [m] = await got.wait(1);
    assert.equal((m.payload as string[]).length, 2);
    await helper.unload();

    await helper.load(allNodes, mk('manifest'), bearer);
    got = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ payload: '' });
    [m] = await got.wait(1);
    const records = m.payload as Array<{ id: string; version: string; date_added: string }>;
    assert.equal(records.length, 2, 'latest version of each object');
    assert.ok(records.every((r) => typeof r.date_added === 'string'));
    await helper.unload();

    await helper.load(allNodes, flow({ url: taxii.apiRootUrl, authType: 'bearer' }, { inquire: { collection: coll, operation: 'object' } }), bearer);
    const rec = new Recorder(helper.getNode('inq'));
    helper.getNode('inq')?.receive({ payload: '' });
    await until('error', () => rec.errors.length > 0);
    assert.match(String((rec.errors.find((e) => e.err instanceof Error)?.err as Error).message), /object id/);
  });

  describe('OAuth2 client credentials', () => {
    let oidc: OidcHandle;
    let guarded: TestTaxiiServer;
    before(async () => {
      oidc = await startOidc({ clients: [{ clientId: 'node-red-producer', clientSecret: 'oauth-secret-991', roles: ['publisher'] }] });
      guarded = await startTestTaxiiServer({ jwks: { jwksUrl: oidc.jwksUrl, issuer: oidc.issuer, audience: oidc.resource, requiredRole: 'publisher' } });
    });
    after(async () => {
      await guarded?.stop();
      await oidc?.stop();
    });

    it('fetches a token from the token URL, uses it, and keeps the secret out of flow JSON and log', async () => {
      const handles = new OpenHandles().start();
      const server = { url: guarded.discoveryUrl, authType: 'oauth2', tokenUrl: oidc.tokenUrl, audience: oidc.resource };
      await helper.load(allNodes, flow(server), { srv: { clientId: 'node-red-producer', clientSecret: 'oauth-secret-991' } });
      const published = new Collector(helper.getNode('published'));
      helper.getNode('pub')?.receive({ payload: indicator() });
      helper.getNode('pub')?.receive({ payload: indicator() });
      const [m] = await published.wait(2);
      assert.equal(asMsg(m).sets?.taxii?.success_count, 1);
      assert.equal(oidc.stats.tokensIssued, 1, 'one token for both requests');
      const flows = JSON.stringify(deployedFlows());
      assert.ok(!flows.includes('oauth-secret-991'));
      assert.ok(!logText().includes('oauth-secret-991'));
      assert.equal(helper.credentials.getDefinition('sets-taxii')?.clientSecret?.type, 'password');
      assert.equal(helper.credentials.getDefinition('sets-taxii')?.token?.type, 'password');
      assert.equal(helper.credentials.getDefinition('sets-taxii')?.password?.type, 'password');
      await helper.unload();
      await handles.expectNone();
    });

    it('a missing client secret is a clear configuration error', async () => {
      const server = { url: guarded.discoveryUrl, authType: 'oauth2', tokenUrl: oidc.tokenUrl };
      await helper.load(allNodes, flow(server), { srv: { clientId: 'node-red-producer' } });
      const caught = new Collector(helper.getNode('caught'));
      helper.getNode('pub')?.receive({ payload: indicator() });
      const [m] = await caught.wait(1);
      assert.match(String(asMsg(m).error?.message), /client secret/);
    });
  });

  describe('against the SETS TAXII server (admission checked on the ledger)', () => {
    let c: ChainHandle;
    let registry: string;
    let serverLedger: Ledger;
    let store: EmbeddedStore;
    let dir: string;
    let server: TaxiiServer;
    let httpServer: http.Server;
    let base: string;
    const COLL = collectionId();

    before(async function () {
      this.timeout(120_000);
      c = await chain();
      registry = await c.deployRegistry();
      serverLedger = createLedger({ kind: 'evm', rpcUrl: c.rpcUrl, chainId: c.chainId, address: registry });
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-h5-taxii-'));
      store = new EmbeddedStore({ dir });
      await store.open();
      server = createTaxiiServer({
        title: 'SETS',
        apiRoots: { api1: { title: 'api1', collections: [{ id: COLL, title: 'shared', canRead: ['member'], canWrite: ['member'] }] } },
        defaultApiRoot: 'api1',
        store,
        auth: { basic: { users: [{ username: 'org-a', passwordHash: await hashPassword('org-a-pw'), roles: ['member'] }] } },
        log: () => undefined,
      });
      // the server side of paper steps 2.a / 2.b: verify each added object against the ledger
      server.on('object', (e) => {
        void verifyObject(serverLedger, e.collection, e.record.object, { waitMs: 1000 }).then((v) =>
          server.markIntegrity(e.collection, e.record.id, e.record.version, v.status === 'verified' ? 'finalized' : 'invalid', v.reason ?? 'hash matches the ledger', e.statusId),
        );
      });
      httpServer = http.createServer((req, res) => void server.handle(req, res));
      await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', () => resolve()));
      base = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
    });
    after(async () => {
      await new Promise<void>((resolve) => httpServer?.close(() => resolve()));
      await serverLedger?.close();
      await store?.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    function pipeline(onFailure: string): FlowNode[] {
      return [
        ...flow({ url: `${base}/taxii2/`, authType: 'basic' }, { publish: { collection: COLL, onFailure }, inquire: { collection: COLL, limit: 100 } }),
        { id: 'led', type: 'sets-ledger', rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 10000 },
        { id: 'anc', type: 'anchor-hash', z: 'tab', ledger: 'led', collection: COLL, wires: [['pub']] },
        { id: 'ver', type: 'verify-hash', z: 'tab', ledger: 'led', waitMs: 0, wires: [['ok'], ['rejected']] },
        { id: 'ok', type: 'helper', z: 'tab' },
        { id: 'rejected', type: 'helper', z: 'tab' },
      ].map(placed);
    }
    const creds = () => ({ srv: { username: 'org-a', password: 'org-a-pw' }, led: { privateKey: c.accounts[3].privateKey } });

    it('anchored objects are admitted; an unanchored one is rejected in the status -> node error listing it', async () => {
      await helper.load(allNodes, pipeline('error'), creds());
      const published = new Collector(helper.getNode('published'));
      const caught = new Collector(helper.getNode('caught'));
      const a = indicator('anchored');
      helper.getNode('anc')?.receive({ payload: a });
      const [ok] = await published.wait(1, 30_000);
      assert.equal(asMsg(ok).sets?.taxii?.success_count, 1);
      // published straight to TAXII without anchoring first: the server finds no hash on the ledger
      const stray = indicator('never anchored');
      helper.getNode('pub')?.receive({ payload: bundle([indicator('also never anchored'), stray]) });
      const [failed] = await caught.wait(1, 30_000);
      const msg = String(asMsg(failed).error?.message);
      assert.match(msg, /2 of 2 object\(s\) rejected/);
      assert.ok(msg.includes(stray.id), 'names the rejected object');
      assert.match(msg, /no hash anchored/);
      assert.equal(asMsg(failed).sets?.taxii?.failure_count, 2, 'the status is in msg.sets.taxii for the Catch flow');
    });

    it('"pass on" mode: the message continues with the failures in msg.sets.taxii', async () => {
      await helper.load(allNodes, pipeline('pass'), creds());
      const published = new Collector(helper.getNode('published'));
      helper.getNode('pub')?.receive({ payload: indicator('unanchored') });
      const [m] = await published.wait(1, 30_000);
      const st = asMsg(m).sets?.taxii;
      assert.equal(st?.failure_count, 1);
      assert.match(String(st?.failures?.[0]?.message), /no hash anchored/);
      const rec = new Recorder(helper.getNode('pub'));
      helper.getNode('pub')?.receive({ payload: indicator('unanchored 2') });
      await published.wait(2, 30_000);
      await until('yellow badge', () => rec.lastStatus?.fill === 'yellow');
    });

    it('inquiry answer verified by the consumer (steps 5-6): taxii-inquire -> verify-hash', async () => {
      await helper.load(allNodes, pipeline('error'), creds());
      const published = new Collector(helper.getNode('published'));
      const objs = [indicator('x'), malware('y')];
      helper.getNode('anc')?.receive({ payload: bundle(objs) });
      await published.wait(1, 30_000);
      const got = new Collector(helper.getNode('got'));
      helper.getNode('inq')?.receive({ payload: '', filters: { match: { id: objs.map((o) => o.id) } } });
      const [answer] = await got.wait(1, 30_000);
      assert.equal((answer.payload as unknown[]).length, 2);
      const ok = new Collector(helper.getNode('ok'));
      helper.getNode('ver')?.receive(answer);
      const verified = await ok.wait(2);
      assert.ok(verified.every((v) => asMsg(v).sets?.verification?.status === 'verified'));
    });
  });
});
