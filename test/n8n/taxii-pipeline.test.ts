/**
 * The SETS pipeline over TAXII, every part an n8n workflow from flows/ executed by n8n's own engine
 * (test/support/n8n.ts): flows/sets-taxii-server.json (the SETS TAXII Server Trigger on a free port,
 * embedded store in a temp dir, distribute + verify + mark), flows/sets-publisher.json (anchor, then
 * publish), flows/sets-inquirer.json (inquire, verify) and flows/sets-subscriber.json (the SETS
 * Trigger receiving what the server distributes), against the real hardhat and RabbitMQ.
 *
 * The publisher and the inquirer start at their first SETS node (n8n-nodes-base is not installed
 * here: the items their Manual Trigger / Set nodes would give are fed in; the n8n app test runs the
 * files whole).
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ClassicLevel } from 'classic-level';
import type { IDataObject, INodeExecutionData } from 'n8n-workflow';
import { chain, rabbit } from '../support/services';
import { collectionScope } from '../../lib/digest';
import type { ChainHandle } from '../support/hardhat';
import {
  N8nHarness,
  activeResources,
  amqpCredential,
  quietResources,
  freePort,
  ledgerCredential,
  loadFlow,
  nodeOf,
  rawSetOutput,
  setParameters,
  settledResources,
  type ActiveWorkflow,
  type RunResult,
  type WorkflowFile,
} from '../support/n8n';

const COLLECTION = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';
const PRODUCER_PW = 'producer-' + randomUUID();
const CONSUMER_PW = 'consumer-' + randomUUID();

type Obj = Record<string, unknown> & { id: string; type: string };

interface Json {
  [k: string]: unknown;
}

function sets(item: INodeExecutionData): Json {
  return (item.json.sets ?? {}) as Json;
}

function statusOf(item: INodeExecutionData): string {
  return String((sets(item).verification as Json | undefined)?.status);
}

/** The sample bundle of the publisher's Set node with fresh ids (one shared ledger and server for all tests). */
function freshBundle(publisher: WorkflowFile): { items: INodeExecutionData[]; objects: Obj[] } {
  const [item] = rawSetOutput(publisher, 'Sample STIX bundle');
  const text = JSON.stringify(item.json.object);
  const ids = new Map<string, string>();
  const renamed = text.replace(/"([a-z0-9-]+)--([0-9a-f-]{36})"/g, (_m, type: string, id: string) => {
    const key = `${type}--${id}`;
    if (!ids.has(key)) ids.set(key, `${type}--${randomUUID()}`);
    return JSON.stringify(ids.get(key));
  });
  const bundle = JSON.parse(renamed) as { objects: Obj[] };
  return { items: [{ json: { object: bundle as unknown as IDataObject } }], objects: bundle.objects };
}

/** An insider edits the stored copy of an object, directly in the embedded store's LevelDB. */
async function tamperStoredRecord(dir: string, collection: string, id: string, change: (o: Obj) => void): Promise<number> {
  const db = new ClassicLevel<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await db.open();
  let changed = 0;
  try {
    const prefix = ['r', collection, id].join('\u0000') + '\u0000';
    for await (const [key, value] of db.iterator({ gte: prefix, lt: prefix.slice(0, -1) + '\u0001' })) {
      const rec = JSON.parse(value) as { object: Obj };
      change(rec.object);
      await db.put(key, JSON.stringify(rec));
      changed++;
    }
  } finally {
    await db.close();
  }
  return changed;
}

describe('n8n engine: SETS TAXII server, publisher, inquirer and subscriber workflows (flows/*.json)', function () {
  this.timeout(180_000);
  let h: N8nHarness;
  let evm: ChainHandle;
  let contract: string;
  let storeDir: string;
  let port: number;
  let server: ActiveWorkflow;
  let serverWf: WorkflowFile;
  let taxiiUrl: string;

  before(async () => {
    evm = await chain();
    const amqpUrl = (await rabbit()).url;
    contract = await evm.deployRegistry();
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-n8n-store-'));
    port = await freePort();
    taxiiUrl = `http://127.0.0.1:${port}/taxii/taxii2/`;
    h = await N8nHarness.create({
      credentials: {
        SetsEvmLedger001: ledgerCredential(evm, contract, evm.accounts[2].privateKey),
        SetsAmqpLocal001: amqpCredential(amqpUrl),
        SetsStoreLocal01: { type: 'setsStoreApi', data: { kind: 'embedded', dir: storeDir } },
        SetsTaxiiSrvAuth: {
          type: 'setsTaxiiServerAuth',
          data: { users: `producer:${PRODUCER_PW}:publisher\nconsumer:${CONSUMER_PW}:reader`, nextTokenSecret: 'n8n-test-next-token-secret-0123456789' },
        },
        SetsTaxiiProd001: { type: 'setsTaxiiApi', data: { url: taxiiUrl, authType: 'basic', username: 'producer', password: PRODUCER_PW, timeout: 10000 } },
        SetsTaxiiCons001: { type: 'setsTaxiiApi', data: { url: taxiiUrl, authType: 'basic', username: 'consumer', password: CONSUMER_PW, timeout: 10000 } },
      },
    });
    serverWf = setParameters(loadFlow('sets-taxii-server'), 'SETS TAXII Server', { port });
    server = await h.activate(serverWf);
  });

  after(async () => {
    await h?.close();
    if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
  });

  /** Server executions that admitted or served the given object id. */
  function serverRuns(id: string, output: 0 | 1): RunResult[] {
    return server.executions.filter((ex) => ex.output('SETS TAXII Server', output).some((i) => (i.json.object as Obj).id === id));
  }

  async function publish(items: INodeExecutionData[]): Promise<RunResult> {
    return h.run(loadFlow('sets-publisher'), { startNode: 'Anchor hashes', input: items });
  }

  async function inquire(): Promise<RunResult> {
    const r = await h.run(loadFlow('sets-inquirer'), { startNode: 'Inquire shared CTI' });
    assert.equal(r.status, 'success', r.error?.message);
    return r;
  }

  it('publish: anchored in one transaction, POSTed; the server workflow distributes (the subscriber verifies), verifies and marks every object finalized; the TAXII status completes', async () => {
    const sub = loadFlow('sets-subscriber');
    const queue = `n8n-test-pipeline-${randomUUID()}`;
    setParameters(sub, 'Shared CTI', { queue, waitForAnchor: 5000, options: { deadLetterQueue: `${queue}-failed`, onExecutionFailure: 'deadLetter' } });
    const subscriber = await h.activate(sub);
    try {
      const { items, objects } = freshBundle(loadFlow('sets-publisher'));
      const r = await publish(items);
      assert.equal(r.status, 'success', r.error?.message);
      assert.deepEqual(r.order, ['Anchor hashes', 'Publish to TAXII']);
      const anchored = sets(r.output('Anchor hashes')[0]).items as Array<{ id: string; anchor: { tx: string } }>;
      assert.deepEqual(anchored.map((a) => a.id), objects.map((o) => o.id));
      assert.equal(new Set(anchored.map((a) => a.anchor.tx)).size, 1, 'one transaction for the bundle');
      const taxii = sets(r.output('Publish to TAXII')[0]).taxii as Json;
      assert.equal(taxii.status, 'complete', JSON.stringify(taxii));
      assert.equal(taxii.success_count, 3);
      assert.equal(taxii.failure_count, 0);
      assert.equal(taxii.pending_count, 0);

      // the server side: one execution per POST, admitted objects distributed, verified, finalized
      const [admission] = serverRuns(objects[0].id, 0);
      assert.ok(admission, 'the admission execution');
      assert.equal(admission.status, 'success', admission.error?.message);
      assert.deepEqual(admission.output('SETS TAXII Server', 0).map((i) => (i.json.object as Obj).id).sort(), objects.map((o) => o.id).sort());
      assert.deepEqual(admission.output('SETS TAXII Server', 0).map((i) => sets(i).status), ['pending', 'pending', 'pending']);
      assert.equal(admission.output('Distribute (step 3)').length, 3);
      assert.deepEqual(admission.output('Verify, wait for anchor (2.a/2.b)').map(statusOf), ['verified', 'verified', 'verified']);
      assert.deepEqual(admission.output('Mark integrity').map((i) => (sets(i).integrity as Json).status), ['finalized', 'finalized', 'finalized']);
      // distribution ran before verification ended: n8n ran "Distribute" first
      assert.ok(admission.order.indexOf('Distribute (step 3)') < admission.order.indexOf('Mark integrity'));

      // the subscriber got each object from RabbitMQ and verified it itself (paper step 4)
      await subscriber.waitFor((ex) => ex.length >= 3, 30_000, 'three subscriber executions');
      const seen = subscriber.executions.map((ex) => {
        const [item] = ex.output('Shared CTI', 0);
        assert.equal(statusOf(item), 'verified');
        return (item.json.object as Obj).id;
      });
      assert.deepEqual(seen.sort(), objects.map((o) => o.id).sort());
    } finally {
      await subscriber.close();
    }
  });

  it('inquire → verify over TAXII: every object served is verified by the inquirer, and the server re-verifies what it served (records stay finalized)', async () => {
    const { items, objects } = freshBundle(loadFlow('sets-publisher'));
    assert.equal((await publish(items)).status, 'success');
    const before = server.executions.length;
    const r = await inquire();
    const verified = r.output('Verify answer', 0);
    assert.deepEqual(r.output('Verify answer', 1), [], 'nothing rejected');
    const ids = verified.map((i) => (i.json.object as Obj).id);
    for (const o of objects) assert.ok(ids.includes(o.id), `${o.id} served and verified`);
    assert.ok(verified.every((i) => statusOf(i) === 'verified'));
    // step 5 on the server: the served objects were emitted and re-verified
    await server.waitFor(() => serverRuns(objects[1].id, 1).length > 0, 20_000, 'the served execution');
    const [served] = serverRuns(objects[1].id, 1);
    assert.ok(server.executions.indexOf(served) >= before);
    assert.equal(served.status, 'success', served.error?.message);
    const marks = served.output('Mark integrity').filter((i) => objects.some((o) => o.id === (i.json.object as Obj).id));
    assert.deepEqual(marks.map((i) => (sets(i).integrity as Json).status), ['finalized', 'finalized', 'finalized']);
  });

  it('a stored record altered by an insider: the inquirer rejects it (mismatch), the server marks it invalid and refuses it afterwards', async () => {
    const { items, objects } = freshBundle(loadFlow('sets-publisher'));
    assert.equal((await publish(items)).status, 'success');
    const victim = objects.find((o) => o.type === 'malware') as Obj;
    // the server is down while the insider edits its database (LevelDB: one process at a time)
    await server.close();
    const changed = await tamperStoredRecord(storeDir, COLLECTION, victim.id, (o) => {
      o.name = 'Harmless tool';
    });
    assert.equal(changed, 1);
    server = await h.activate(serverWf);

    const r = await inquire();
    const rejected = r.output('Verify answer', 1);
    assert.deepEqual(rejected.map((i) => (i.json.object as Obj).id), [victim.id]);
    assert.equal(statusOf(rejected[0]), 'mismatch');
    await server.waitFor(() => serverRuns(victim.id, 1).length > 0, 20_000, 'the served execution');
    const [served] = serverRuns(victim.id, 1);
    const mark = served.output('Mark integrity').find((i) => (i.json.object as Obj).id === victim.id);
    assert.ok(mark);
    assert.equal((sets(mark).integrity as Json).status, 'invalid');

    // refused from then on: not listed, and a direct GET is a 404 that says why
    const again = await inquire();
    const ids = [...again.output('Verify answer', 0), ...again.output('Verify answer', 1)].map((i) => (i.json.object as Obj).id);
    assert.ok(!ids.includes(victim.id), 'the invalid record is not served');
    assert.ok(ids.includes(objects[0].id));
    const one = loadFlow('sets-inquirer');
    setParameters(one, 'Inquire shared CTI', { endpoint: 'object', objectId: victim.id });
    const direct = await h.run(one, { startNode: 'Inquire shared CTI' });
    assert.equal(direct.status, 'error');
    assert.equal(direct.error?.name, 'NodeApiError');
    assert.match(String(direct.error?.message), /404|not found/i);
    assert.match(JSON.stringify(direct.error), /invalid|integrity|altered/i);
  });

  it('an object altered between anchoring and POST: the server verifies a mismatch and marks it invalid; the publisher fails naming it', async () => {
    const publisher = loadFlow('sets-publisher');
    const { items, objects } = freshBundle(publisher);
    // anchor only (the run stops after "Anchor hashes")
    const anchorOnly = structuredClone(publisher);
    delete anchorOnly.connections['Anchor hashes'];
    const anchored = await h.run(anchorOnly, { startNode: 'Anchor hashes', input: items });
    assert.equal(anchored.status, 'success', anchored.error?.message);
    assert.deepEqual(anchored.order, ['Anchor hashes']);
    const altered = structuredClone(objects[0]);
    altered.name = 'Altered after anchoring';
    const r = await h.run(publisher, { startNode: 'Publish to TAXII', input: [{ json: { object: { type: 'bundle', id: `bundle--${randomUUID()}`, objects: [altered] } } }] });
    assert.equal(r.status, 'error');
    assert.equal((r.error as { node?: { name?: string } } | undefined)?.node?.name, 'Publish to TAXII');
    assert.ok(String(r.error?.message).includes(altered.id) || JSON.stringify(r.error).includes(altered.id), String(r.error?.message));
    const [admission] = serverRuns(altered.id, 0);
    assert.ok(admission, 'admitted as pending, then verified');
    assert.equal(statusOf(admission.output('Verify, wait for anchor (2.a/2.b)')[0]), 'mismatch');
    assert.equal((sets(admission.output('Mark integrity')[0]).integrity as Json).status, 'invalid');
  });

  it('wrong TAXII password: NodeApiError naming 401; with "Continue On Fail" an error item paired to its input', async () => {
    h.credentials.add('badTaxii', { type: 'setsTaxiiApi', data: { url: taxiiUrl, authType: 'basic', username: 'consumer', password: 'wrong', timeout: 5000 } });
    const wf = loadFlow('sets-inquirer');
    nodeOf(wf, 'Inquire shared CTI').credentials = { setsTaxiiApi: { id: 'badTaxii', name: 'bad TAXII' } };
    const r = await h.run(wf, { startNode: 'Inquire shared CTI' });
    assert.equal(r.status, 'error');
    assert.equal(r.error?.name, 'NodeApiError');
    assert.match(`${r.error?.message} ${r.error?.description ?? ''}`, /401|unauthori[sz]ed|authentication/i);
    assert.equal((r.error as { httpCode?: string }).httpCode, '401');

    nodeOf(wf, 'Inquire shared CTI').onError = 'continueRegularOutput';
    delete wf.connections['Inquire shared CTI']; // error items would flow on into "Verify answer"
    const r2 = await h.run(wf, { startNode: 'Inquire shared CTI', input: [{ json: { n: 1 } }, { json: { n: 2 } }] });
    assert.equal(r2.status, 'success', r2.error?.message);
    const out = r2.output('Inquire shared CTI');
    assert.equal(out.length, 2);
    out.forEach((item, i) => {
      assert.match(String(item.json.error), /401|unauthori[sz]ed|authentication/i);
      assert.deepEqual(item.pairedItem, { item: i });
    });
  });

  it('bad ledger credentials: a malformed private key and a wrong registry address fail with NodeOperationError messages that say so', async () => {
    const wf = loadFlow('sets-publisher');
    const { items } = freshBundle(wf);
    h.credentials.add('badKey', ledgerCredential(evm, contract, '0x1234'));
    nodeOf(wf, 'Anchor hashes').credentials = { setsEvmLedgerApi: { id: 'badKey', name: 'bad key' } };
    const r = await h.run(wf, { startNode: 'Anchor hashes', input: items });
    assert.equal(r.status, 'error');
    assert.equal(r.error?.name, 'NodeOperationError');
    assert.match(String(r.error?.message), /private ?key/i);

    // an address holding no registry (an EOA)
    h.credentials.add('wrongContract', ledgerCredential(evm, evm.accounts[9].address, evm.accounts[2].privateKey));
    nodeOf(wf, 'Anchor hashes').credentials = { setsEvmLedgerApi: { id: 'wrongContract', name: 'wrong contract' } };
    const r2 = await h.run(wf, { startNode: 'Anchor hashes', input: items });
    assert.equal(r2.status, 'error');
    assert.equal(r2.error?.name, 'NodeOperationError');
    assert.match(String(r2.error?.message), /contract|registry|no code|address/i);

    // the credential tests (testedBy) say the same before any workflow runs
    const t1 = await h.testCredential('setsEvmLedgerApi', ledgerCredential(evm, contract, '0x1234').data);
    assert.equal(t1.status, 'Error');
    assert.match(t1.message, /private ?key/i);
    const t2 = await h.testCredential('setsEvmLedgerApi', ledgerCredential(evm, evm.accounts[9].address).data);
    assert.equal(t2.status, 'Error');
    assert.match(t2.message, /contract|registry|no code/i);
    const ok = await h.testCredential('setsEvmLedgerApi', ledgerCredential(evm, contract, evm.accounts[2].privateKey).data);
    assert.equal(ok.status, 'OK', ok.message);
  });

  it('a ledger account bound to another collection: "Anchor hashes" fails naming the collection and the grant to ask for; the credential test says what it is granted', async () => {
    const other = `other-${randomUUID()}`;
    const bound = await evm.deployRegistry({ writers: [{ account: evm.accounts[7].address, scopes: [collectionScope(other)] }] });
    const wf = loadFlow('sets-publisher');
    const { items } = freshBundle(wf);
    h.credentials.add('boundElsewhere', ledgerCredential(evm, bound, evm.accounts[7].privateKey));
    nodeOf(wf, 'Anchor hashes').credentials = { setsEvmLedgerApi: { id: 'boundElsewhere', name: 'bound elsewhere' } };
    const r = await h.run(wf, { startNode: 'Anchor hashes', input: items });
    assert.equal(r.status, 'error');
    assert.match(String(r.error?.message), new RegExp(`not allowed to anchor in collection ${COLLECTION}`));
    assert.match(String(r.error?.message), new RegExp(collectionScope(COLLECTION)));
    const t = await h.testCredential('setsEvmLedgerApi', ledgerCredential(evm, bound, evm.accounts[7].privateKey).data);
    assert.match(t.message, /1 collection/);
  });

  it('unreachable broker for "Publish to RabbitMQ": a clear error; with "Continue On Fail" one error item per input item', async () => {
    const wf = loadFlow('sets-taxii-server');
    h.credentials.add('deadBroker', amqpCredential('amqp://guest:guest@127.0.0.1:9/', { timeout: 1500 }));
    const n = nodeOf(wf, 'Distribute (step 3)');
    n.credentials = { setsAmqpApi: { id: 'deadBroker', name: 'dead broker' } };
    const obj = { type: 'indicator', spec_version: '2.1', id: `indicator--${randomUUID()}`, created: '2026-01-01T00:00:00.000Z', modified: '2026-01-01T00:00:00.000Z', pattern: "[ipv4-addr:value = '192.0.2.1']", pattern_type: 'stix', valid_from: '2026-01-01T00:00:00Z' };
    const input = [{ json: { object: obj, collection: COLLECTION } }, { json: { object: { ...obj, id: `indicator--${randomUUID()}` }, collection: COLLECTION } }];
    const r = await h.run(wf, { startNode: 'Distribute (step 3)', input });
    assert.equal(r.status, 'error');
    assert.equal(r.error?.name, 'NodeOperationError');
    // the broker's host:port and the reason in words — not n8n's generic "The service refused the
    // connection - perhaps it is offline", which a message containing ECONNREFUSED would get
    assert.equal(r.error?.message, 'RabbitMQ broker 127.0.0.1:9 not reachable: connection refused');
    assert.equal((r.error as { description?: string }).description, 'code CONNECT_FAILED, system error ECONNREFUSED (127.0.0.1:9)');
    n.onError = 'continueRegularOutput';
    const r2 = await h.run(wf, { startNode: 'Distribute (step 3)', input });
    assert.equal(r2.status, 'success');
    const out = r2.output('Distribute (step 3)');
    assert.equal(out.length, 2);
    out.forEach((item, i) => {
      assert.equal(item.json.error, 'RabbitMQ broker 127.0.0.1:9 not reachable: connection refused');
      assert.equal(item.json.code, 'CONNECT_FAILED');
      assert.equal(item.json.systemCode, 'ECONNREFUSED');
      assert.deepEqual(item.pairedItem, { item: i });
    });
  });

  it('anchor of N items lands in one transaction (many items per tx)', async () => {
    const wf = loadFlow('sets-publisher');
    const n = 40;
    const input = Array.from({ length: n }, (_v, i) => ({
      json: {
        object: { type: 'indicator', spec_version: '2.1', id: `indicator--${randomUUID()}`, created: '2026-02-01T00:00:00.000Z', modified: '2026-02-01T00:00:00.000Z', pattern: `[ipv4-addr:value = '198.51.100.${i}']`, pattern_type: 'stix', valid_from: '2026-02-01T00:00:00Z' },
      },
    }));
    delete wf.connections['Anchor hashes']; // anchor only
    const r = await h.run(wf, { startNode: 'Anchor hashes', input });
    const anchors = r.output('Anchor hashes').map((i) => sets(i).anchor as { tx: string; block: number; timings?: { queued: number; sent: number; mined: number } });
    assert.equal(anchors.length, n);
    assert.equal(new Set(anchors.map((a) => a.tx)).size, 1, 'one transaction');
    for (const a of anchors) {
      const t = a.timings;
      assert.ok(t && t.queued <= t.sent && t.sent <= t.mined, `timings in order: ${JSON.stringify(t)}`);
    }
    r.output('Anchor hashes').forEach((item, i) => assert.deepEqual(item.pairedItem, { item: i }));
    assert.equal(r.status, 'success', r.error?.message);
  });

  it('closing the server trigger leaves no socket or timer, releases the store and frees the port', async () => {
    await server.close();
    const before = await quietResources();
    server = await h.activate(serverWf);
    const during = activeResources();
    assert.ok((during.TCPServerWrap ?? 0) > (before.TCPServerWrap ?? 0), 'listening while active');
    await inquire();
    await server.waitFor((ex) => ex.length >= 1, 20_000, 'the served execution');
    await server.close();
    assert.deepEqual(await settledResources(before), {}, 'resources left after close');
    // the port and the store directory can be taken again at once
    server = await h.activate(serverWf);
    await inquire();
  });
});
