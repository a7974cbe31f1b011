/**
 * The server side of SETS in a real Node-RED (paper §3 steps 2-3 and 5, §4.2): a taxii-server node
 * mounted on the runtime's HTTP server with an embedded sets-store; its admitted objects are
 * distributed over a real RabbitMQ (rabbit-publish) and verified against a real EVM chain
 * (verify-hash waiting for the anchor -> integrity-status); its served objects are re-verified
 * (verify-hash looking once -> integrity-status). Driven over HTTP with the project's TaxiiClient
 * and raw requests.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import type { RabbitHandle } from '../support/rabbit';
import { AmqpBus, type BusDelivery, type Subscription } from '../../lib/bus/amqp';
import { bindingKeys } from '../../lib/bus/routing';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { hashObject, keyForObject } from '../../lib/digest';
import { BasicAuth } from '../../lib/auth/client';
import { TaxiiClient, type TaxiiStatus } from '../../lib/taxii/client';
import type { StixObject } from '../../lib/stix';
import { Collector, Recorder, deployedFlows, helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { TAXII, baseUrl, basic, bridgeHttpNode, runtimeSettings, mountedServers, raw, serverNodes, tamperStoredRecord } from './server-harness';
import { collectionId, indicator, malware } from './stix';

interface SetsOut {
  apiRoot?: string;
  collection?: string;
  id?: string;
  version?: string;
  key?: string;
  hash?: string;
  status?: string;
  origin?: string;
  policy?: string;
  statusId?: string;
  verification?: { status: string; reason?: string };
  integrity?: { status: string; changed: boolean; reason: string; origin?: string };
  statuses?: { count: number; more: boolean };
  published?: { count: number };
}
type Msg = { payload?: unknown; collection?: string; sets?: SetsOut };
const asMsg = (m: unknown): Msg => m as Msg;

const USERS = 'org-a:org-a-pw:member\n# a reader\nreader:reader-pw:viewer';
const WAIT_MS = 2500; // verify-hash's wait for the producer's anchor on the admission path

describe(`taxii-server flow on Node-RED ${nodeRedVersion}`, function () {
  let c: ChainHandle;
  let r: RabbitHandle;
  let registry: string;
  let producer: Ledger;
  let bus: AmqpBus;
  let sub: Subscription;
  let userDir: string;
  const deliveries = new Map<string, number>();
  const COLL = collectionId();
  const OPT = collectionId();
  const OFF = collectionId();
  const tag = randomBytes(4).toString('hex');
  const EXCHANGE = `sets-h8-${tag}`;
  let brokerPort: number;
  const clients: TaxiiClient[] = [];

  before(async function () {
    this.timeout(180_000);
    [c, r] = await Promise.all([chain(), rabbit()]);
    registry = await c.deployRegistry();
    producer = createLedger({ kind: 'evm', rpcUrl: c.rpcUrl, chainId: c.chainId, address: registry, privateKey: c.accounts[3].privateKey });
    brokerPort = Number(new URL(r.url).port);
    // a consumer of the distribution (paper step 4), bound before anything is published
    bus = new AmqpBus({ url: r.url, exchange: EXCHANGE });
    sub = bus.subscribe({ bindings: [COLL, OPT, OFF].flatMap((collection) => bindingKeys({ collection })) }, (d: BusDelivery) => {
      const o = d.json() as StixObject;
      deliveries.set(o.id, (deliveries.get(o.id) ?? 0) + 1);
      d.ack();
    });
    await sub.ready();
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-h8-userdir-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });

  after(async () => {
    for (const cl of clients) cl.close();
    await sub?.cancel();
    await bus?.close();
    await producer?.close();
    await helper.stopServer();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await helper.unload();
  });

  function flow(server: Partial<FlowNode> = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'SETS server' },
      { id: 'store', type: 'sets-store', name: 'h8 flow store', kind: 'embedded' },
      { id: 'led', type: 'sets-ledger', rpcUrl: c.rpcUrl, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 10000 },
      { id: 'mq', type: 'sets-broker', host: '127.0.0.1', port: brokerPort, vhost: '/', exchange: EXCHANGE, prefetch: 100, heartbeat: 30, timeout: 5000 },
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: 'store',
        basePath: '/taxii',
        title: 'SETS test server',
        apiRoot: 'api1',
        collections: [
          { id: COLL, title: 'shared CTI', canRead: ['member', 'viewer'], canWrite: ['member'], integrity: 'required' },
          { id: OPT, title: 'optional', canRead: ['member', 'viewer'], canWrite: ['member'], integrity: 'optional' },
          { id: OFF, title: 'plain TAXII', canRead: ['member', 'viewer'], canWrite: ['member'], integrity: 'off' },
        ],
        wires: [['dist', 'verA', 'admitted'], ['verI', 'served']],
        ...server,
      },
      // paper §4.2: publish, persist (done by the server) and integrity check, in parallel
      { id: 'dist', type: 'rabbit-publish', z: 'tab', broker: 'mq', wires: [['distributed']] },
      { id: 'verA', type: 'verify-hash', z: 'tab', ledger: 'led', waitMs: WAIT_MS, wires: [['integ'], ['integ']] },
      // step 5: served at once, re-verified in parallel, looking once
      { id: 'verI', type: 'verify-hash', z: 'tab', ledger: 'led', waitMs: 0, wires: [['integ'], ['integ']] },
      // no server selected: it settles records on the server serving msg.sets.collection
      { id: 'integ', type: 'integrity-status', z: 'tab', server: '', wires: [['settled']] },
      { id: 'query', type: 'integrity-status', z: 'tab', server: 'srv', wires: [['answers']] },
      // on the store directly (no server): queries and settling of records only
      { id: 'byStore', type: 'integrity-status', z: 'tab', store: 'store', collections: `${COLL}, ${OPT}`, wires: [['answers']] },
      ...['admitted', 'served', 'distributed', 'settled', 'answers', 'caught'].map((id) => ({ id, type: 'helper', z: 'tab' })),
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    ].map(placed);
  }
  // a fresh object each time: the runtime keeps the object it is given and deletes removed nodes' entries from it
  const creds = (): Record<string, Record<string, string>> => ({ srv: { users: USERS } });

  function client(user = 'org-a', password = 'org-a-pw'): TaxiiClient {
    const cl = new TaxiiClient({ discoveryUrl: `${baseUrl()}/taxii/taxii2/`, auth: new BasicAuth(user, password), timeoutMs: 10_000, pollIntervalMs: 100 });
    clients.push(cl);
    return cl;
  }
  const objectUrl = (id: string): string => `${baseUrl()}/taxii/api1/collections/${COLL}/objects/${id}/`;

  async function anchor(o: StixObject): Promise<void> {
    const a = keyForObject(COLL, o);
    await producer.anchor(a.scope, a.key, a.hash);
  }

  async function finalStatus(cl: TaxiiClient, id: string): Promise<TaxiiStatus> {
    return until(`status ${id} complete`, async () => {
      const s = await cl.getStatus(id);
      return s.status === 'complete' ? s : null;
    }, 20_000);
  }

  async function query(payload: unknown): Promise<Msg> {
    const answers = new Collector(helper.getNode('answers'));
    helper.getNode('query')?.receive({ payload });
    const [m] = await answers.wait(1);
    return asMsg(m);
  }

  it('mounts the TAXII API under the base path: discovery, API root, collections, a TAXII 404 for any other path inside, paths outside left alone', async () => {
    await helper.load(serverNodes, flow(), creds());
    const rec = new Recorder(helper.getNode('srv'));
    await until('server mounted', () => mountedServers().length === 1);
    const d = await raw('GET', `${baseUrl()}/taxii/taxii2/`, { headers: basic('reader', 'reader-pw') });
    assert.equal(d.status, 200, d.text);
    assert.equal(d.headers.get('content-type'), TAXII);
    assert.deepEqual((d.json as { api_roots: string[] }).api_roots, ['/taxii/api1/']);
    assert.equal((d.json as { default: string }).default, '/taxii/api1/');
    const cols = await client('reader', 'reader-pw').collections();
    assert.deepEqual(
      cols.map((x) => [x.id, x.can_read, x.can_write]),
      [COLL, OPT, OFF].map((id) => [id, true, false]),
    );
    assert.match(String(cols[0].description), /Integrity policy: required/);
    const missing = await raw('GET', `${baseUrl()}/taxii/api1/collections/nope/`, { headers: basic('reader', 'reader-pw') });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('content-type'), TAXII);
    // any other path under the base path is the server's too: auth first, then a TAXII 404 error
    // resource (was: Express's HTML 404, which TAXII clients cannot read)
    const otherAnon = await raw('GET', `${baseUrl()}/taxii/elsewhere`);
    assert.equal(otherAnon.status, 401);
    const other = await raw('GET', `${baseUrl()}/taxii/elsewhere`, { headers: basic('reader', 'reader-pw') });
    assert.equal(other.status, 404);
    assert.equal(other.headers.get('content-type'), TAXII);
    assert.equal((other.json as { http_status: string }).http_status, '404');
    // outside the base path Node-RED's own routes answer (here nothing: Express's 404, not TAXII)
    const outside = await raw('GET', `${baseUrl()}/not-taxii/elsewhere`);
    assert.equal(outside.status, 404);
    assert.notEqual(outside.headers.get('content-type'), TAXII);
    const unauth = await raw('GET', `${baseUrl()}/taxii/taxii2/`, { headers: { Accept: TAXII } });
    assert.equal(unauth.status, 401);
    assert.match(String(unauth.headers.get('www-authenticate')), /^Basic /);
    await until('badge: listening, collections', () => rec.statuses.some((s) => /^listening( :\d+)? · \d+ collections?$/.test(String(s.text)) && s.fill === 'green'));
    // the store is in the user dir, under the store node's id (a rename keeps it)
    assert.ok(fs.existsSync(path.join(userDir, 'sets-store', 'store')), 'embedded store under <userDir>/sets-store/<node id>');
    // the user list is a credential: not in the flow, not in the log
    assert.ok(!JSON.stringify(deployedFlows()).includes('org-a-pw'));
    assert.ok(!logText().includes('org-a-pw'));
    assert.equal(helper.credentials.getDefinition('taxii-server')?.users?.type, 'password');
  });

  it('publish -> 202 pending -> distributed at once, verified against the anchor -> status complete with success, record finalized', async () => {
    await helper.load(serverNodes, flow(), creds());
    const admitted = new Collector(helper.getNode('admitted'));
    const distributed = new Collector(helper.getNode('distributed'));
    const settled = new Collector(helper.getNode('settled'));
    const srvRec = new Recorder(helper.getNode('srv'));
    const integRec = new Recorder(helper.getNode('integ'));
    const cl = client();
    const o = indicator('anchored first');
    await anchor(o);
    const st = await cl.addObjects(COLL, [o], { wait: false });
    assert.equal(st.status, 'pending', 'answered before the check');
    assert.equal(st.pending_count, 1);
    assert.deepEqual(
      st.pendings?.map((p) => p.id),
      [o.id],
    );
    const [a] = await admitted.wait(1);
    assert.deepEqual(a.payload, o);
    assert.equal(asMsg(a).collection, COLL);
    const sets = asMsg(a).sets ?? {};
    assert.equal(sets.origin, 'admission');
    assert.equal(sets.statusId, st.id);
    assert.equal(sets.key, keyForObject(COLL, o).key);
    assert.equal(sets.hash, hashObject(o));
    assert.equal(sets.status, 'pending');
    assert.equal(sets.apiRoot, 'api1');
    const [dist] = await distributed.wait(1, 20_000);
    assert.equal(asMsg(dist).sets?.published?.count, 1, 'confirmed by the broker');
    await until('delivered to the subscriber', () => deliveries.get(o.id) === 1);
    const [s] = await settled.wait(1, 20_000);
    assert.equal(asMsg(s).sets?.integrity?.status, 'finalized');
    assert.equal(asMsg(s).sets?.integrity?.changed, true);
    const done = await finalStatus(cl, st.id);
    assert.equal(done.success_count, 1);
    assert.equal(done.pending_count, 0);
    assert.equal(done.successes?.[0]?.id, o.id);
    assert.match(String(done.successes?.[0]?.message), /verified/);
    const q = await query(o.id);
    const statuses = q.payload as Array<{ id: string; status: string; collection: string }>;
    assert.deepEqual(
      statuses.map((x) => [x.id, x.status, x.collection]),
      [[o.id, 'finalized', COLL]],
    );
    await until('integrity-status badge', () => integRec.statuses.some((b) => /^\d+ finalized · 0 invalid$/.test(String(b.text))));
    await until('server badge', () => srvRec.statuses.some((b) => /^listening( :\d+)? · \d+ collections?$/.test(String(b.text))));
    // a reader gets it, and the answer is re-verified in parallel (output 2), nothing changes
    const served = new Collector(helper.getNode('served'));
    const got = await client('reader', 'reader-pw').getObject(COLL, o.id);
    assert.deepEqual(got.objects, [o]);
    const [sv] = await served.wait(1);
    assert.equal(asMsg(sv).sets?.origin, 'inquiry');
    const [, again] = await settled.wait(2);
    assert.equal(asMsg(again).sets?.integrity?.status, 'finalized');
    assert.equal(asMsg(again).sets?.integrity?.changed, false, 'already finalized: nothing written');
  });

  it('an object posted without an anchor -> after the wait: failure "not anchored", never served', async () => {
    await helper.load(serverNodes, flow(), creds());
    const settled = new Collector(helper.getNode('settled'));
    const srvRec = new Recorder(helper.getNode('srv'));
    const integRec = new Recorder(helper.getNode('integ'));
    const cl = client();
    const o = malware('never anchored');
    const st = await cl.addObjects(COLL, [o], { wait: false });
    assert.equal(st.status, 'pending');
    // while verify-hash waits for the anchor, the badges show the pending record
    await until('server badge: 1 pending', () => srvRec.statuses.some((b) => /^(:\d+ · )?\d+ collections? · 1 pending$/.test(String(b.text))), WAIT_MS);
    await until('integrity badge: 1 pending', () => integRec.statuses.some((b) => /^\d+ finalized · \d+ invalid · 1 pending$/.test(String(b.text))), WAIT_MS);
    const [s] = await settled.wait(1, WAIT_MS + 15_000);
    assert.equal(asMsg(s).sets?.verification?.status, 'not-anchored');
    assert.equal(asMsg(s).sets?.integrity?.status, 'invalid');
    const done = await finalStatus(cl, st.id);
    assert.equal(done.failure_count, 1);
    assert.equal(done.success_count, 0);
    assert.match(String(done.failures?.[0]?.message), /not anchored/);
    const get = await raw('GET', objectUrl(o.id), { headers: basic('reader', 'reader-pw') });
    assert.equal(get.status, 404);
    assert.match(String((get.json as { description?: string }).description), /failed its integrity check.*not anchored/);
    const list = await cl.getObjects(COLL, { match: { id: o.id } });
    assert.deepEqual(list.objects, []);
    const q = await query({ status: 'invalid', id: o.id });
    assert.equal((q.payload as Array<{ reason?: string }>)[0]?.reason?.startsWith('not anchored'), true);
    await until('integrity badge turns yellow with the invalid record', () =>
      integRec.statuses.some((b) => b.fill === 'yellow' && /^\d+ finalized · [1-9]\d* invalid$/.test(String(b.text))),
    );
    await until('server badge: 0 pending', () => srvRec.statuses.some((b) => /^listening( :\d+)? · \d+ collections?$/.test(String(b.text))));
  });

  it('tampered in transit (POSTed object differs from the anchored one) -> invalid with the mismatch reason', async () => {
    await helper.load(serverNodes, flow(), creds());
    const settled = new Collector(helper.getNode('settled'));
    const cl = client();
    const original = indicator('genuine', '198.51.100.7');
    await anchor(original);
    const altered = { ...original, pattern: "[ipv4-addr:value = '203.0.113.66']" };
    const st = await cl.addObjects(COLL, [altered], { wait: false });
    const [s] = await settled.wait(1, 20_000);
    assert.equal(asMsg(s).sets?.verification?.status, 'mismatch');
    assert.equal(asMsg(s).sets?.integrity?.status, 'invalid');
    const done = await finalStatus(cl, st.id);
    assert.equal(done.failure_count, 1);
    assert.match(String(done.failures?.[0]?.message), /hash mismatch/);
    const get = await raw('GET', objectUrl(original.id), { headers: basic('org-a', 'org-a-pw') });
    assert.equal(get.status, 404);
    assert.match(String((get.json as { description?: string }).description), /hash mismatch/);
  });

  it('a duplicate POST is reported as a success and not distributed or verified a second time', async () => {
    await helper.load(serverNodes, flow(), creds());
    const admitted = new Collector(helper.getNode('admitted'));
    const settled = new Collector(helper.getNode('settled'));
    const cl = client();
    const o = indicator('twice');
    await anchor(o);
    const first = await cl.addObjects(COLL, [o], { wait: false });
    await settled.wait(1, 20_000);
    await finalStatus(cl, first.id);
    await until('first delivery', () => deliveries.get(o.id) === 1);
    const second = await cl.addObjects(COLL, [o], { wait: false });
    assert.equal(second.status, 'complete');
    assert.equal(second.success_count, 1);
    assert.match(String(second.successes?.[0]?.message), /already present/);
    // a different object reusing the id and version is refused
    const clash = await cl.addObjects(COLL, [{ ...o, name: 'someone else' }], { wait: false });
    assert.equal(clash.failure_count, 1);
    assert.match(String(clash.failures?.[0]?.message), /different object already uses this id and version/);
    // the third POST gives the flow time to show a duplicate emission, were there one
    const marker = indicator('marker');
    await anchor(marker);
    await cl.addObjects(COLL, [marker], { wait: false });
    await admitted.wait(2);
    await until('marker delivered', () => deliveries.get(marker.id) === 1);
    assert.deepEqual(
      admitted.messages.map((m) => (m.payload as StixObject).id),
      [o.id, marker.id],
      'no second message on output 1',
    );
    assert.equal(deliveries.get(o.id), 1, 'distributed once');
  });

  it('records and statuses survive a restart; a record altered in the store is served once, marked invalid, then refused everywhere', async () => {
    await helper.load(serverNodes, flow(), creds());
    let settled = new Collector(helper.getNode('settled'));
    const cl = client();
    const keep = indicator('kept');
    const victim = malware('to be altered');
    await anchor(keep);
    await anchor(victim);
    const st = await cl.addObjects(COLL, [keep, victim], { wait: false });
    await settled.wait(2, 20_000);
    const before = await finalStatus(cl, st.id);
    assert.equal(before.success_count, 2);
    await helper.unload();

    // the attacker edits the database behind the server
    const dir = path.join(userDir, 'sets-store', 'store');
    assert.equal(
      await tamperStoredRecord(dir, COLL, victim.id, (obj) => {
        obj['name'] = 'defanged by an attacker';
      }),
      1,
    );

    await helper.load(serverNodes, flow(), creds());
    settled = new Collector(helper.getNode('settled'));
    // contents and statuses intact
    const after = await cl.getStatus(st.id);
    assert.deepEqual(after, before, 'the status resource survived the restart');
    const q = await query({ collection: COLL, status: 'finalized' });
    const ids = (q.payload as Array<{ id: string }>).map((x) => x.id);
    assert.ok(ids.includes(keep.id) && ids.includes(victim.id));

    // step 5: the inquiry answers at once (with the altered record: the server cannot know yet)...
    const served = new Collector(helper.getNode('served'));
    const first = await cl.getObject(COLL, victim.id);
    assert.equal(first.objects[0]?.['name'], 'defanged by an attacker');
    await served.wait(1);
    // ...and the re-verification marks it invalid
    const [s] = await settled.wait(1, 20_000);
    assert.equal(asMsg(s).sets?.verification?.status, 'mismatch');
    assert.equal(asMsg(s).sets?.integrity?.status, 'invalid');
    assert.equal(asMsg(s).sets?.integrity?.origin, 'inquiry');
    // refused from then on: object, list, manifest, versions
    const get = await raw('GET', objectUrl(victim.id), { headers: basic('reader', 'reader-pw') });
    assert.equal(get.status, 404);
    assert.equal(get.headers.get('content-type'), TAXII);
    assert.match(String((get.json as { description?: string }).description), /failed its integrity check/);
    const listed = (await cl.getObjects(COLL)).objects.map((x) => x.id);
    assert.ok(listed.includes(keep.id) && !listed.includes(victim.id));
    const manifest = (await cl.getManifest(COLL)).objects.map((x) => x.id);
    assert.ok(manifest.includes(keep.id) && !manifest.includes(victim.id));
    const versions = await raw('GET', `${objectUrl(victim.id)}versions/`, { headers: basic('reader', 'reader-pw') });
    assert.equal(versions.status, 404);
    // the untouched record is still served and still verifies
    assert.deepEqual((await cl.getObject(COLL, keep.id)).objects, [keep]);
    const q2 = await query(victim.id);
    assert.equal((q2.payload as Array<{ status: string; reason?: string }>)[0]?.status, 'invalid');
    assert.match(String((q2.payload as Array<{ reason?: string }>)[0]?.reason), /hash mismatch/);
  });

  it('redeploys (full and changed node only) leave exactly one mounted handler that answers', async () => {
    await helper.load(serverNodes, flow(), creds());
    await until('mounted', () => mountedServers().length === 1);
    for (const [i, type] of (['nodes', 'full', 'flows', 'nodes'] as const).entries()) {
      await helper.setFlows(flow({ title: `SETS test server v${i + 2}` }), type, creds());
      await until(`mounted after ${type} deploy`, async () => {
        if (mountedServers().length !== 1) return false;
        const d = await raw('GET', `${baseUrl()}/taxii/taxii2/`, { headers: basic('reader', 'reader-pw') });
        return d.status === 200 && (d.json as { title?: string }).title === `SETS test server v${i + 2}`;
      });
      assert.deepEqual(mountedServers(), ['srv']);
    }
    // removed from the flow: unmounted, its URLs are no longer served
    await helper.setFlows(flow().filter((n) => n.id !== 'srv'), 'full', creds());
    assert.deepEqual(mountedServers(), []);
    const gone = await raw('GET', `${baseUrl()}/taxii/taxii2/`, { headers: basic('reader', 'reader-pw') });
    assert.equal(gone.status, 404);
    assert.notEqual(gone.headers.get('content-type'), TAXII);
  });

  it('integrity-status queries: by id, by filter, everything; bad filters are node errors', async () => {
    await helper.load(serverNodes, flow(), creds());
    const settled = new Collector(helper.getNode('settled'));
    const cl = client();
    const good = indicator('q good');
    const bad = indicator('q bad');
    await anchor(good);
    await cl.addObjects(COLL, [good, bad], { wait: false });
    await settled.wait(2, WAIT_MS + 15_000);
    const byId = await query(good.id);
    assert.deepEqual(
      (byId.payload as Array<{ id: string; status: string }>).map((x) => [x.id, x.status]),
      [[good.id, 'finalized']],
    );
    const invalid = await query({ collection: COLL, status: ['invalid'] });
    const invalidIds = (invalid.payload as Array<{ id: string }>).map((x) => x.id);
    assert.ok(invalidIds.includes(bad.id) && !invalidIds.includes(good.id));
    const everything = await query('');
    assert.ok((everything.sets?.statuses?.count ?? 0) >= 2);
    assert.equal(everything.sets?.statuses?.more, false);
    const caught = new Collector(helper.getNode('caught'));
    helper.getNode('query')?.receive({ payload: { status: 'bogus' } });
    helper.getNode('query')?.receive({ payload: { collection: 'not-served-here' } });
    helper.getNode('query')?.receive({ payload: { colour: 'blue' } });
    const errs = await caught.wait(3);
    const texts = errs.map((e) => String((e as { error?: { message?: string } }).error?.message)).join('\n');
    assert.match(texts, /status must be among pending, finalized, invalid/);
    assert.match(texts, /not-served-here is not one of/);
    assert.match(texts, /unknown status query field "colour"/);
  });
  it('integrity policies: optional serves a not-anchored object and still refuses a mismatch; off is distributed but never verified', async () => {
    await helper.load(serverNodes, flow(), creds());
    const settled = new Collector(helper.getNode('settled'));
    const admitted = new Collector(helper.getNode('admitted'));
    const cl = client();
    const loose = indicator('optional, never anchored');
    const altered = indicator('optional, altered');
    const alteredAnchor = keyForObject(OPT, altered);
    await producer.anchor(alteredAnchor.scope, alteredAnchor.key, alteredAnchor.hash);
    await cl.addObjects(OPT, [loose, { ...altered, name: 'changed in transit' }], { wait: false });
    const results = await settled.wait(2, WAIT_MS + 15_000);
    const byId = new Map(results.map((m) => [String(asMsg(m).sets?.id), asMsg(m).sets]));
    assert.equal(byId.get(loose.id)?.verification?.status, 'not-anchored');
    assert.equal(byId.get(loose.id)?.integrity?.status, 'pending', 'optional: not anchored leaves it served');
    assert.equal(byId.get(altered.id)?.integrity?.status, 'invalid', 'optional: a mismatch is still refused');
    assert.equal(asMsg(admitted.messages[0]).sets?.policy, 'optional');
    assert.deepEqual((await cl.getObject(OPT, loose.id)).objects, [loose]);
    const refused = await raw('GET', `${baseUrl()}/taxii/api1/collections/${OPT}/objects/${altered.id}/`, { headers: basic('reader', 'reader-pw') });
    assert.equal(refused.status, 404);

    const plain = malware('plain TAXII');
    const plainAnchor = keyForObject(OFF, plain);
    await producer.anchor(plainAnchor.scope, plainAnchor.key, plainAnchor.hash); // verified, but nothing is recorded
    const st = await cl.addObjects(OFF, [plain], { wait: false });
    assert.equal(st.status, 'complete', 'off: nothing to wait for');
    await until('distributed', () => deliveries.get(plain.id) === 1);
    const offSettled = await until('the off record settled', () => settled.messages.find((m) => asMsg(m).sets?.id === plain.id), 15_000);
    assert.equal(asMsg(offSettled).sets?.policy, 'off');
    assert.equal(asMsg(offSettled).sets?.integrity?.status, 'unverified');
    assert.equal(asMsg(offSettled).sets?.integrity?.changed, false);
    const q = await query({ collection: OFF });
    assert.deepEqual(
      (q.payload as Array<{ id: string; status: string }>).map((x) => [x.id, x.status]),
      [[plain.id, 'unverified']],
    );
  });

  it('integrity-status on the store alone: queries its collections and settles records (no status resource)', async () => {
    await helper.load(serverNodes, flow(), creds());
    const settled = new Collector(helper.getNode('settled'));
    const cl = client();
    const o = indicator('settled through the store');
    await anchor(o);
    await cl.addObjects(COLL, [o], { wait: false });
    await settled.wait(1, 20_000);
    const answers = new Collector(helper.getNode('answers'));
    const byStore = helper.getNode('byStore');
    byStore?.receive({ payload: o.id });
    const [a] = await answers.wait(1);
    assert.deepEqual(
      (a.payload as Array<{ id: string; status: string }>).map((x) => [x.id, x.status]),
      [[o.id, 'finalized']],
    );
    // a verification result handed to it directly (e.g. from another Node-RED's verify-hash)
    const version = (a.payload as Array<{ version: string }>)[0].version;
    byStore?.receive({ payload: o, sets: { collection: COLL, id: o.id, version, verification: { status: 'mismatch', reason: 'hash mismatch: test' } } });
    const [, b] = await answers.wait(2);
    assert.equal(asMsg(b).sets?.integrity?.status, 'invalid');
    assert.equal(asMsg(b).sets?.integrity?.changed, true);
    const get = await raw('GET', objectUrl(o.id), { headers: basic('reader', 'reader-pw') });
    assert.equal(get.status, 404, 'refused by the server too: the store is shared');
    // a collection the node does not list is refused
    const caught = new Collector(helper.getNode('caught'));
    byStore?.receive({ payload: { collection: OFF } });
    const [e] = await caught.wait(1);
    assert.match(String((e as { error?: { message?: string } }).error?.message), /is not one of/);
  });
});
