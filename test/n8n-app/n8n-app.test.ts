/**
 * The packed n8n package end to end in the current n8n app: n8n 2.40.7 on Node 24, installed from
 * the npm registry into .cache/n8n-app by scripts/n8n-app.js (first run ~11 min, 3 GB; then cached).
 *
 * - n8n-nodes-sets-<v>.tgz (packed from this build by scripts/pack.js, or SETS_N8N_TARBALL) is
 *   installed into a fresh N8N_USER_FOLDER exactly as n8n's community-package installer does, and
 *   n8n loads it: every node and credential type of the package's manifest is known to n8n
 *   (`n8n export:nodes`, the credential types n8n writes for its editor at `n8n start`).
 * - The workflows shipped in the package (flows/) are imported with `n8n import:workflow`, with
 *   credentials imported by `n8n import:credentials`, and run by n8n's CLI against the real
 *   hardhat node (fresh registry), a real TAXII 2.1 server (lib/taxii/server, embedded store, the
 *   SETS `required` integrity policy with a ledger check settling every record) and the real
 *   RabbitMQ: publisher, inquirer (verified), a tampered object (mismatch), bad TAXII credentials
 *   (the node's error in the saved execution).
 * - A second instance runs `n8n start` with two shipped trigger workflows published: the subscriber
 *   (receives what the RabbitMQ producer workflow, executed by the first instance, publishes) and
 *   the TAXII server (flows/sets-taxii-server.json as shipped; only what a user must set is set:
 *   its credentials' data by `n8n import:credentials`, and a free port instead of 9440). The shipped
 *   publisher POSTs to it with Basic auth: the status completes only after the server workflow
 *   marked every object finalized, every object reached RabbitMQ, and a GET serves them back.
 * Every run is judged by the execution n8n saved in its database (the CLI may segfault on exit
 * after a saved success). Nothing is skipped: without n8n (install failure) the suite fails with
 * the reason.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { createTaxiiServer, hashPassword, type TaxiiServer } from '../../lib/taxii/server';
import { openStore, type Store } from '../../lib/store/index';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { verifyObject } from '../../lib/verify';
import { collectionScope, hashObject, ledgerKey, objectVersion } from '../../lib/digest';
import type { StixObject } from '../../lib/stix';

/* eslint-disable @typescript-eslint/no-require-imports, @typescript-eslint/no-explicit-any -- the harness is a plain CommonJS script; n8n's JSON is untyped */

// <repo>/dist/test/n8n-app -> <repo>; with the build elsewhere (SETS_BUILD_OUT) the repo is the working directory
const builtInRepo = path.resolve(__dirname, '..', '..', '..');
const root = fs.existsSync(path.join(builtInRepo, 'scripts', 'n8n-app.js')) ? builtInRepo : process.cwd();
const buildDir = path.resolve(__dirname, '..', '..');
const app = require(path.join(root, 'scripts', 'n8n-app.js'));

interface Execution {
  id: string;
  workflowId: string;
  status: string;
  finished: boolean;
  mode: string;
  error?: { message?: string; description?: string; name?: string; node?: string };
  stoppedAt?: string;
  nodes: Record<string, Array<{ status?: string; startTime?: number; executionTime?: number; error?: { message?: string; description?: string }; items: any[][] }>>;
}

interface Instance {
  userFolder: string;
  cliTimes: Array<{ args: string; ms: number; code: number | null; signal: string | null }>;
  installPackage(tgz: string): Promise<{ name: string; version: string; dir: string; n8n: { nodes: string[]; credentials: string[] }; ms: number }>;
  importWorkflows(w: unknown[]): Promise<string[]>;
  importCredentials(c: unknown[]): Promise<string[]>;
  publishWorkflow(id: string): Promise<unknown>;
  nodeTypes(): Promise<{ names: string[]; log: string }>;
  executions(id?: string): Promise<Execution[]>;
  execute(id: string): Promise<{ cli: { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }; execution?: Execution }>;
  start(o?: { env?: Record<string, string> }): Promise<{ url: string; startMs: number; output(): string; stop(): Promise<void>; exited(): boolean }>;
  dispose(): void;
}

const COLLECTION = '91a7b528-80eb-42ed-a74d-c6fbd5a26116'; // the collection of flows/*.json
const COL_PLAIN = '91a7b528-80eb-42ed-a74d-c6fbd5a2ffff'; // integrity off: holds the tampered copy
const CRED = {
  ledger: { id: 'SetsEvmLedger001', name: 'SETS local EVM' },
  producer: { id: 'SetsTaxiiProd001', name: 'SETS TAXII (producer)' },
  consumer: { id: 'SetsTaxiiCons001', name: 'SETS TAXII (consumer)' },
  amqp: { id: 'SetsAmqpLocal001', name: 'SETS local RabbitMQ' },
  badTaxii: { id: 'SetsTaxiiBadPw01', name: 'SETS TAXII (wrong password)' },
  // the ids flows/sets-taxii-server.json refers to
  store: { id: 'SetsStoreLocal01', name: 'SETS record store' },
  srvAuth: { id: 'SetsTaxiiSrvAuth', name: 'SETS TAXII server secrets' },
};
// the Basic users of the SETS TAXII Server Trigger in n8n (its SETS TAXII Server Secrets credential)
const SRV_PRODUCER_PW = `producer-${randomUUID()}`;
const SRV_CONSUMER_PW = `consumer-${randomUUID()}`;

function log(s: string): void {
  process.stdout.write(`      [n8n-app] ${s}\n`);
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The tarball under test: SETS_N8N_TARBALL, else packed now from this build (so it is never stale). */
function tarball(): string {
  const given = process.env.SETS_N8N_TARBALL;
  if (given) {
    if (!fs.existsSync(given)) throw new Error(`SETS_N8N_TARBALL=${given} does not exist`);
    return path.resolve(given);
  }
  const out = path.join(root, '.cache', 'n8n-app', 'pack');
  const t0 = Date.now();
  execFileSync(process.execPath, [path.join(root, 'scripts', 'pack.js'), '--no-build', '--out', out], {
    cwd: root,
    env: { ...process.env, SETS_BUILD_OUT: buildDir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  const file = path.join(out, `n8n-nodes-sets-${version}.tgz`);
  if (!fs.existsSync(file)) throw new Error(`scripts/pack.js did not write ${file}`);
  log(`packed ${path.relative(root, file)} from ${buildDir} in ${secs(Date.now() - t0)}`);
  return file;
}

/** The type name a node or credential class of the build declares (the same files are packed). */
function declaredName(file: string, kind: 'node' | 'credential'): string {
  const suffix = kind === 'node' ? '.node.js' : '.credentials.js';
  const cls = path.basename(file).slice(0, -suffix.length);
  const mod = require(path.join(buildDir, path.relative('dist', file)));
  const Ctor = mod[cls];
  assert.equal(typeof Ctor, 'function', `${file} exports no class ${cls} (n8n requires the class name to match the file name)`);
  const inst = new Ctor();
  return kind === 'node' ? inst.description.name : inst.name;
}

function readFlow(pkgDir: string, name: string): any {
  const file = path.join(pkgDir, 'flows', `${name}.json`);
  assert.ok(fs.existsSync(file), `the package has no flows/${name}.json`);
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** A copy of a workflow with a new id and name and `patch` applied to named nodes. */
function variant(wf: any, name: string, patch: Record<string, (node: any) => void>): any {
  const copy = JSON.parse(JSON.stringify(wf));
  delete copy.id;
  copy.name = `${wf.name} (${name})`;
  for (const [node, fn] of Object.entries(patch)) {
    const n = copy.nodes.find((x: any) => x.name === node);
    assert.ok(n, `workflow ${wf.name} has no node ${node}`);
    fn(n);
  }
  return copy;
}

function outputs(e: Execution | undefined, node: string): any[][] {
  assert.ok(e, 'n8n saved no execution');
  const runs = e.nodes[node];
  assert.ok(runs && runs.length > 0, `node ${node} did not run (ran: ${Object.keys(e.nodes).join(', ')})`);
  return runs[runs.length - 1].items;
}

function describeRun(r: { cli: { code: number | null; signal: string | null; stdout: string; stderr: string }; execution?: Execution }): string {
  return `exit ${r.cli.code}${r.cli.signal ? ` (${r.cli.signal})` : ''}; saved: ${JSON.stringify(r.execution)?.slice(0, 3000)}\n${(r.cli.stdout + r.cli.stderr).slice(-3000)}`;
}

/** Waits until the broker has the queue (a passive declare on a throw-away channel). */
async function waitForQueue(queue: string, ms: number, output: () => string): Promise<void> {
  const amqp = require('amqplib');
  const conn = await amqp.connect((await rabbit()).url);
  try {
    const deadline = Date.now() + ms;
    for (;;) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      try {
        await ch.checkQueue(queue);
        await ch.close();
        return;
      } catch {
        /* not declared yet (the failed check closed the channel) */
      }
      if (Date.now() > deadline) throw new Error(`the SETS Trigger did not declare queue ${queue} within ${ms} ms (workflow not activated?):\n${output().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await conn.close();
  }
}

/** Removes what the test left in the shared broker (durable queues and exchanges of its unique names). */
async function deleteBrokerState(queues: string[], exchanges: string[]): Promise<void> {
  const amqp = require('amqplib');
  const conn = await amqp.connect((await rabbit()).url);
  try {
    const ch = await conn.createChannel();
    for (const q of queues) await ch.deleteQueue(q);
    for (const x of exchanges) await ch.deleteExchange(x);
    await ch.close();
  } catch (err) {
    log(`broker clean-up: ${String(err)}`);
  } finally {
    await conn.close();
  }
}

/** Waits until a URL answers at all (any HTTP status). */
async function waitForHttp(url: string, ms: number, output: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(2000) });
      return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`nothing answers on ${url} within ${ms} ms:\n${output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Finished executions of a workflow, polled until `node` produced `count` items in all (or the time is up). */
async function waitForRuns(inst: Instance, workflowId: string, node: string, count: number, ms: number): Promise<Execution[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const runs = (await inst.executions()).filter((e) => e.workflowId === workflowId && !['running', 'new', 'waiting'].includes(e.status));
    const items = runs.flatMap((e) => (e.nodes[node]?.[0]?.items ?? []).flat());
    if (items.length >= count || Date.now() > deadline) return runs;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** A TAXII 2.1 server as a SETS server runs it: `required` integrity, every record checked against the ledger and settled. */
async function startTaxii(store: Store, ledger: Ledger): Promise<{ url: string; server: TaxiiServer; close(): Promise<void> }> {
  const users = [
    { username: 'producer', passwordHash: await hashPassword('producer-pw', { N: 1024 }), roles: ['writer', 'reader'] },
    { username: 'consumer', passwordHash: await hashPassword('consumer-pw', { N: 1024 }), roles: ['reader'] },
  ];
  const server = createTaxiiServer({
    title: 'SETS TAXII server (n8n app test)',
    defaultApiRoot: 'api1',
    apiRoots: {
      api1: {
        title: 'SETS',
        collections: [
          { id: COLLECTION, title: 'Shared CTI', canRead: ['reader'], canWrite: ['writer'], integrity: { policy: 'required' } },
          { id: COL_PLAIN, title: 'Plain TAXII (no integrity)', canRead: ['reader'], canWrite: ['writer'], integrity: { policy: 'off' } },
        ],
      },
    },
    store,
    auth: { realm: 'SETS', basic: { users } },
  } as any);
  server.on('object', (e) => {
    if (e.policy === 'off') return;
    void (async () => {
      const v = await verifyObject(ledger, e.collection, e.record.object as StixObject, { waitMs: 10_000 });
      if (v.status === 'unknown') return; // undecided: the record stays pending
      await server.recordVerification(e.collection, e.record.id, e.record.version, v.status, v.reason, e.statusId);
    })().catch((err) => log(`server-side verification failed: ${String(err)}`));
  });
  const srv = http.createServer((req, res) => void server.handle(req, res));
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/api1/`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections();
        srv.close(() => resolve());
      }),
  };
}

describe('n8n app: the packed n8n-nodes-sets in n8n 2.40.7 on Node 24 (CLI, real services)', function () {
  this.timeout(30 * 60_000);
  const t0 = Date.now();
  let tgz: string;
  let hh: ChainHandle;
  let registry: string;
  let ledger: Ledger;
  let store: Store;
  let storeDir: string;
  let taxii: Awaited<ReturnType<typeof startTaxii>>;
  let amqpUrl: URL;
  let taxiiPort = 0; // the SETS TAXII Server Trigger's port (a free one: 9440 may be taken)
  let exchange: string;
  let n8n: Instance;
  let pkgDir: string;
  let manifest: { nodes: string[]; credentials: string[] };
  const instances: Instance[] = [];

  function credentials(): unknown[] {
    const ledgerData = {
      rpcUrl: hh.rpcUrl,
      wsUrl: '',
      chainId: String(hh.chainId),
      contract: registry,
      privateKey: hh.accounts[1].privateKey,
      txType: '0',
      gasPrice: '',
      gasLimit: '',
      timeout: 10000,
    };
    const taxiiData = (username: string, password: string) => ({ url: taxii.url, authType: 'basic', username, password, tlsVerify: true, timeout: 30000 });
    return [
      { ...CRED.ledger, type: 'setsEvmLedgerApi', data: ledgerData },
      { ...CRED.producer, type: 'setsTaxiiApi', data: taxiiData('producer', 'producer-pw') },
      { ...CRED.consumer, type: 'setsTaxiiApi', data: taxiiData('consumer', 'consumer-pw') },
      { ...CRED.badTaxii, type: 'setsTaxiiApi', data: taxiiData('consumer', 'not-the-password') },
      {
        ...CRED.amqp,
        type: 'setsAmqpApi',
        data: {
          host: amqpUrl.hostname,
          port: Number(amqpUrl.port || 5672),
          vhost: '/',
          username: decodeURIComponent(amqpUrl.username),
          password: decodeURIComponent(amqpUrl.password),
          tls: false,
          exchange,
        },
      },
    ];
  }

  async function newInstance(): Promise<Instance> {
    const inst: Instance = await app.createInstance({});
    instances.push(inst);
    const pk = await inst.installPackage(tgz);
    log(`installed ${pk.name}@${pk.version} into ${inst.userFolder}/.n8n/nodes as n8n does (npm install --ignore-scripts, peer deps stripped) in ${secs(pk.ms)}`);
    return inst;
  }

  before(async function () {
    const ti = Date.now();
    let installed;
    try {
      installed = app.install(); // ~11 min and 3 GB the first time, then cached in .cache/n8n-app
    } catch (err) {
      throw new Error(`n8n ${app.N8N_VERSION} on Node ${app.NODE24_VERSION} could not be installed (scripts/n8n-app.js install): ${(err as Error).message}`);
    }
    log(`n8n ${installed.n8nVersion} on Node ${app.NODE24_VERSION} ${installed.installed ? `installed in ${secs(Date.now() - ti)} ${JSON.stringify(installed.times)}` : 'already installed'} (${path.relative(root, installed.appDir)})`);
    tgz = tarball();

    hh = await chain();
    registry = await hh.deployRegistry();
    ledger = createLedger({ kind: 'evm', rpcUrl: hh.rpcUrl, chainId: hh.chainId, address: registry, privateKey: hh.accounts[2].privateKey });
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-n8n-app-store-'));
    store = await openStore({ kind: 'embedded', dir: storeDir });
    taxii = await startTaxii(store, ledger);
    amqpUrl = new URL((await rabbit()).url);
    taxiiPort = await app.freePort();
    exchange = `sets-n8n-app-${randomUUID().slice(0, 8)}`;

    n8n = await newInstance();
    pkgDir = path.join(n8n.userFolder, '.n8n', 'nodes', 'node_modules', 'n8n-nodes-sets');
    manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).n8n;
    await n8n.importCredentials(credentials());
  });

  after(async function () {
    for (const i of instances) {
      log(`CLI runs of ${i.userFolder}: ${i.cliTimes.map((c) => `${c.args.split(' ')[0]} ${secs(c.ms)}${c.signal ? ` ${c.signal}` : ''}`).join(', ')}`);
      if (!process.env.SETS_N8N_KEEP) i.dispose();
    }
    await taxii?.close();
    await store?.close();
    await ledger?.close();
    if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
    log(`suite wall time ${secs(Date.now() - t0)}`);
  });

  it('loads the package: every node type of its manifest is known to n8n (export:nodes)', async () => {
    const { names, log: out } = await n8n.nodeTypes();
    assert.doesNotMatch(out, /Failed to load package "n8n-nodes-sets"/);
    const expected = manifest.nodes.map((f) => `n8n-nodes-sets.${declaredName(f, 'node')}`).sort();
    assert.equal(expected.length, 3);
    assert.deepEqual(names.filter((n) => n.startsWith('n8n-nodes-sets.')).sort(), expected);
  });

  it('publisher workflow (flows/sets-publisher.json): anchors and publishes; the server settles every object finalized', async () => {
    const [id] = await n8n.importWorkflows([readFlow(pkgDir, 'sets-publisher')]);
    const r = await n8n.execute(id);
    log(`publisher: n8n execute ${secs(r.cli.ms)}, exit ${r.cli.code}${r.cli.signal ? ` ${r.cli.signal}` : ''}`);
    assert.equal(r.execution?.status, 'success', describeRun(r));
    const anchored = outputs(r.execution, 'Anchor hashes')[0];
    const published = outputs(r.execution, 'Publish to TAXII')[0];
    assert.ok(anchored.length >= 1 && published.length === anchored.length, describeRun(r));
    const items = anchored.flatMap((i) => i.sets.items);
    assert.ok(items.length >= 2, `expected a bundle of several objects, got ${JSON.stringify(anchored)}`);
    for (const it of items) assert.match(String(it.anchor?.tx), /^0x[0-9a-f]{64}$/i);
    const status = published[0].sets.taxii;
    assert.equal(status.status, 'complete', JSON.stringify(status));
    assert.equal(status.success_count, items.length, JSON.stringify(status));
    const counts = await taxii.server.integrityCounts([COLLECTION]);
    assert.equal(counts.finalized, items.length, JSON.stringify(counts));
  });

  it('inquirer workflow (flows/sets-inquirer.json): every object read back is verified against the ledger', async () => {
    const [id] = await n8n.importWorkflows([readFlow(pkgDir, 'sets-inquirer')]);
    const r = await n8n.execute(id);
    log(`inquirer: n8n execute ${secs(r.cli.ms)}, exit ${r.cli.code}${r.cli.signal ? ` ${r.cli.signal}` : ''}`);
    assert.equal(r.execution?.status, 'success', describeRun(r));
    const [verified, rejected] = outputs(r.execution, 'Verify answer');
    assert.ok(verified.length >= 2, describeRun(r));
    assert.deepEqual(rejected ?? [], [], describeRun(r));
    for (const it of verified) assert.equal(it.sets.verification.status, 'verified', JSON.stringify(it.sets));
  });

  it('a tampered copy of an anchored object is rejected as mismatch', async () => {
    // the producer anchored the original in COL_PLAIN; a server without integrity checks serves an altered copy
    const original: StixObject = {
      type: 'indicator',
      spec_version: '2.1',
      id: `indicator--${randomUUID()}`,
      created: '2024-05-01T00:00:00.000Z',
      modified: '2024-05-01T00:00:00.000Z',
      name: 'C2 server',
      pattern: "[ipv4-addr:value = '198.51.100.7']",
      pattern_type: 'stix',
      valid_from: '2024-05-01T00:00:00Z',
    } as StixObject;
    await ledger.anchor(collectionScope(COL_PLAIN), ledgerKey(COL_PLAIN, original.id, objectVersion(original)), hashObject(original));
    const tampered = { ...original, pattern: "[ipv4-addr:value = '203.0.113.66']" };
    const res = await fetch(`${taxii.url}collections/${COL_PLAIN}/objects/`, {
      method: 'POST',
      headers: {
        'content-type': 'application/taxii+json;version=2.1',
        accept: 'application/taxii+json;version=2.1',
        authorization: 'Basic ' + Buffer.from('producer:producer-pw').toString('base64'),
      },
      body: JSON.stringify({ objects: [tampered] }),
    });
    assert.equal(res.status, 202, await res.text());

    const wf = variant(readFlow(pkgDir, 'sets-inquirer'), 'tampered', {
      'Inquire shared CTI': (n) => (n.parameters.collection = COL_PLAIN),
    });
    const [id] = await n8n.importWorkflows([wf]);
    const r = await n8n.execute(id);
    log(`tampered inquirer: n8n execute ${secs(r.cli.ms)}, exit ${r.cli.code}${r.cli.signal ? ` ${r.cli.signal}` : ''}`);
    assert.equal(r.execution?.status, 'success', describeRun(r));
    const [verified, rejected] = outputs(r.execution, 'Verify answer');
    assert.deepEqual(verified ?? [], [], describeRun(r));
    assert.equal(rejected.length, 1, describeRun(r));
    assert.equal(rejected[0].sets.verification.status, 'mismatch', JSON.stringify(rejected[0].sets));
    assert.equal(rejected[0].sets.verification.id, original.id);
  });

  it('bad TAXII credentials: the saved execution fails at the inquire node with its clear error', async () => {
    const wf = variant(readFlow(pkgDir, 'sets-inquirer'), 'wrong password', {
      'Inquire shared CTI': (n) => (n.credentials = { setsTaxiiApi: CRED.badTaxii }),
    });
    const [id] = await n8n.importWorkflows([wf]);
    const r = await n8n.execute(id);
    log(`bad credentials: n8n execute ${secs(r.cli.ms)}, exit ${r.cli.code}${r.cli.signal ? ` ${r.cli.signal}` : ''}`);
    assert.equal(r.execution?.status, 'error', describeRun(r));
    assert.equal(r.execution?.error?.node, 'Inquire shared CTI', describeRun(r));
    const text = `${r.execution?.error?.message} ${r.execution?.error?.description ?? ''}`;
    log(`bad credentials error: ${text}`);
    assert.match(text, /401|unauthori[sz]ed|authenticat|credential/i, describeRun(r));
    assert.equal(r.execution?.nodes['Verify answer'], undefined, 'nothing after the failing node ran');
  });

  describe('n8n start with the shipped trigger workflows active (a second n8n instance)', function () {
    let srv: Instance;
    let server: Awaited<ReturnType<Instance['start']>>;
    let subId: string;
    let taxiiSrvId: string;
    let serverStoreDir: string;
    const queue = `sets-n8n-app-${randomUUID().slice(0, 8)}`;
    const srvBase = () => `http://127.0.0.1:${taxiiPort}/taxii`;

    before(async function () {
      serverStoreDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-n8n-app-srvstore-'));
      srv = await newInstance();
      const serverCredentials = [
        { ...CRED.store, type: 'setsStoreApi', data: { kind: 'embedded', dir: serverStoreDir } },
        { ...CRED.srvAuth, type: 'setsTaxiiServerAuth', data: { users: `producer:${SRV_PRODUCER_PW}:publisher\nconsumer:${SRV_CONSUMER_PW}:reader` } },
      ];
      await srv.importCredentials([...credentials(), ...serverCredentials]);
      const subscriber = readFlow(pkgDir, 'sets-subscriber');
      const trigger = subscriber.nodes.find((n: any) => n.type === 'n8n-nodes-sets.setsTrigger');
      assert.ok(trigger, 'flows/sets-subscriber.json has no SETS Trigger');
      trigger.parameters.queue = queue;
      if (trigger.parameters.options?.deadLetterQueue) trigger.parameters.options.deadLetterQueue = `${queue}-failed`;
      // flows/sets-taxii-server.json as shipped; the one parameter a user may have to change is the port
      const taxiiServer = readFlow(pkgDir, 'sets-taxii-server');
      const serverTrigger = taxiiServer.nodes.find((n: any) => n.type === 'n8n-nodes-sets.setsTaxiiServerTrigger');
      assert.ok(serverTrigger, 'flows/sets-taxii-server.json has no SETS TAXII Server Trigger');
      assert.equal(serverTrigger.parameters.port, 9440);
      assert.equal(serverTrigger.parameters.openAccess, false, 'shipped with authentication on');
      assert.ok(serverTrigger.parameters.collections.collection.some((c: any) => c.id === COLLECTION && c.integrity === 'required'));
      serverTrigger.parameters.port = taxiiPort;
      // every credential the shipped workflow refers to is one a user imports (by its id)
      const imported = new Set([...credentials(), ...serverCredentials].map((c: any) => c.id));
      const needed = taxiiServer.nodes.flatMap((n: any) => Object.values(n.credentials ?? {}).map((c: any) => c.id));
      assert.ok(needed.length >= 4 && needed.every((id: string) => imported.has(id)), `credentials referred to: ${needed.join(', ')}`);
      [subId, taxiiSrvId] = await srv.importWorkflows([subscriber, taxiiServer]);
      assert.equal(taxiiSrvId, 'SetsTaxiiServer1');
      await srv.publishWorkflow(subId);
      await srv.publishWorkflow(taxiiSrvId);
      server = await srv.start();
      log(`n8n start ready in ${secs(server.startMs)} at ${server.url}; SETS TAXII server on port ${taxiiPort}`);
      // the triggers are up once the broker has the subscriber's queue and the TAXII port answers
      await waitForQueue(queue, 60_000, () => server.output());
      await waitForHttp(`${srvBase()}/taxii2/`, 60_000, () => server.output());
    });

    after(async function () {
      await server?.stop();
      await deleteBrokerState([queue, `${queue}-failed`], [exchange, `${queue}-failed.dlx`]);
      if (serverStoreDir) fs.rmSync(serverStoreDir, { recursive: true, force: true });
    });

    it('knows every credential type of the manifest (the type files n8n writes for its editor)', () => {
      const credTypes = JSON.parse(fs.readFileSync(path.join(srv.userFolder, '.cache', 'n8n', 'public', 'types', 'credentials.json'), 'utf8'));
      const known = new Set(credTypes.map((c: any) => c.name));
      // TAXII client, EVM ledger, Fabric ledger, AMQP broker, record store, TAXII server auth
      assert.equal(manifest.credentials.length, 6);
      const names = manifest.credentials.map((f: string) => declaredName(f, 'credential'));
      for (const name of names) assert.ok(known.has(name), `credential type ${name} unknown to n8n`);
      assert.ok(names.includes('setsFabricLedgerApi'), 'the Fabric ledger credential ships and n8n knows it');
    });

    it('subscriber trigger (flows/sets-subscriber.json) receives what the RabbitMQ producer workflow publishes, verified', async () => {
      const [prodId] = await n8n.importWorkflows([readFlow(pkgDir, 'sets-producer-rabbitmq')]);
      const r = await n8n.execute(prodId);
      log(`producer over RabbitMQ: n8n execute ${secs(r.cli.ms)}, exit ${r.cli.code}${r.cli.signal ? ` ${r.cli.signal}` : ''}`);
      assert.equal(r.execution?.status, 'success', describeRun(r));
      const sent = outputs(r.execution, 'Publish to RabbitMQ')[0];
      const count = sent.reduce((s, i) => s + Number(i.sets.published.count), 0);
      assert.ok(count >= 2, describeRun(r));

      const runs = await waitForRuns(srv, subId, 'Shared CTI', count, 60_000);
      log(`subscriber: ${runs.length} trigger executions`);
      assert.ok(runs.length >= 1, `no execution of the subscriber within 60 s:\n${server.output().slice(-3000)}`);
      for (const e of runs) assert.equal(e.status, 'success', JSON.stringify(e));
      const [verified, rejected] = [0, 1].map((o) => runs.flatMap((e) => e.nodes['Shared CTI'][0].items[o] ?? []));
      assert.equal(verified.length, count, JSON.stringify(runs));
      assert.equal(rejected.length, 0, JSON.stringify(rejected));
      for (const it of verified) assert.equal(it.sets.verification.status, 'verified', JSON.stringify(it));
    });

    it('TAXII server workflow (flows/sets-taxii-server.json): the publisher POSTs with Basic auth; distributed to RabbitMQ, marked finalized before the status completes, served back by a GET and re-verified', async () => {
      const srvRuns = async () => (await srv.executions()).filter((e) => e.workflowId === taxiiSrvId);
      const before = new Set((await srvRuns()).map((e) => e.id));
      // a queue of the test's own on the exchange the server workflow distributes to, bound before anything is published
      const amqp = require('amqplib');
      const conn = await amqp.connect((await rabbit()).url);
      const distributed: Array<{ routingKey: string; id: string }> = [];
      let anchored: Array<{ id: string; type?: string }>;
      try {
        const ch = await conn.createChannel();
        await ch.checkExchange(exchange);
        const { queue: probe } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
        await ch.bindQueue(probe, exchange, `${COLLECTION}.#`);
        await ch.consume(probe, (m: any) => m && distributed.push({ routingKey: m.fields.routingKey, id: JSON.parse(m.content.toString('utf8')).id }), { noAck: true });

        // what a user does: point the producer's SETS TAXII credential at the n8n-hosted server (its discovery URL, Basic auth)
        await n8n.importCredentials([
          { ...CRED.producer, type: 'setsTaxiiApi', data: { url: `${srvBase()}/taxii2/`, authType: 'basic', username: 'producer', password: SRV_PRODUCER_PW, tlsVerify: true, timeout: 30000 } },
        ]);
        const [id] = await n8n.importWorkflows([readFlow(pkgDir, 'sets-publisher')]);
        const r = await n8n.execute(id);
        log(`publisher to the n8n TAXII server: n8n execute ${secs(r.cli.ms)}, exit ${r.cli.code}${r.cli.signal ? ` ${r.cli.signal}` : ''}`);
        assert.equal(r.execution?.status, 'success', describeRun(r));
        anchored = outputs(r.execution, 'Anchor hashes')[0].flatMap((i) => i.sets.items);
        assert.ok(anchored.length >= 2, describeRun(r));
        const ids = anchored.map((a) => a.id).sort();
        const publish = r.execution!.nodes['Publish to TAXII'][0];
        const status = publish.items[0][0].sets.taxii;
        // the publisher waited for the TAXII status: complete, every object a success
        assert.equal(status.status, 'complete', JSON.stringify(status));
        assert.equal(status.success_count, anchored.length, JSON.stringify(status));
        assert.equal(status.failure_count, 0, JSON.stringify(status));
        assert.equal(status.pending_count, 0, JSON.stringify(status));

        // the server workflow: admitted pending, distributed, verified, marked finalized
        const runs = (await waitForRuns(srv, taxiiSrvId, 'Mark integrity', anchored.length, 60_000)).filter((e) => !before.has(e.id));
        const admissions = runs.filter((e) => e.nodes['Distribute (step 3)']);
        log(`server workflow: ${runs.length} trigger executions, ${admissions.length} admitting`);
        assert.ok(admissions.length >= 1, `no admission execution:\n${JSON.stringify(runs).slice(0, 3000)}\n${server.output().slice(-3000)}`);
        for (const e of admissions) assert.equal(e.status, 'success', JSON.stringify(e));
        const admitted = admissions.flatMap((e) => outputs(e, 'SETS TAXII Server')[0]);
        assert.deepEqual(admitted.map((it) => it.object.id).sort(), ids);
        for (const it of admitted) assert.equal(it.sets.status, 'pending', JSON.stringify(it.sets));
        assert.equal(admissions.flatMap((e) => outputs(e, 'Distribute (step 3)')[0]).length, anchored.length);
        for (const it of admissions.flatMap((e) => outputs(e, 'Verify, wait for anchor (2.a/2.b)')[0])) assert.equal(it.sets.verification.status, 'verified', JSON.stringify(it.sets));
        const marked = admissions.flatMap((e) => outputs(e, 'Mark integrity')[0]);
        assert.deepEqual(marked.map((it) => it.object.id).sort(), ids);
        for (const it of marked) assert.equal(it.sets.integrity.status, 'finalized', JSON.stringify(it.sets));
        // and the status completed only after that: each marking ran within the publisher's wait for the status
        const publishEnd = Number(publish.startTime) + Number(publish.executionTime);
        for (const e of admissions) {
          const mark = e.nodes['Mark integrity'][0];
          assert.ok(Number(mark.startTime) >= Number(publish.startTime), `marked at ${mark.startTime}, before the POST at ${publish.startTime}`);
          log(`server workflow: marked finalized ${publishEnd - (Number(mark.startTime) + Number(mark.executionTime))} ms before the publisher's status wait ended`);
          assert.ok(Number(mark.startTime) + Number(mark.executionTime) <= publishEnd, `marking ended at ${Number(mark.startTime) + Number(mark.executionTime)}, after the publisher had its complete status at ${publishEnd}`);
        }

        // step 3: every object reached RabbitMQ under <collection>.<type>
        const deadline = Date.now() + 30_000;
        while (distributed.length < anchored.length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 250));
        await new Promise((res) => setTimeout(res, 500)); // nothing more comes
        assert.deepEqual(distributed.map((d) => d.id).sort(), ids, JSON.stringify(distributed));
        for (const d of distributed) assert.equal(d.routingKey, `${COLLECTION}.${d.id.split('--')[0]}`);
      } finally {
        await conn.close();
      }

      // a TAXII client reading the collection: Basic auth required, and every object comes back
      const objectsUrl = `${srvBase()}/api1/collections/${COLLECTION}/objects/`;
      const accept = { accept: 'application/taxii+json;version=2.1' };
      const anon = await fetch(objectsUrl, { headers: accept });
      assert.equal(anon.status, 401, await anon.text());
      const res = await fetch(objectsUrl, { headers: { ...accept, authorization: 'Basic ' + Buffer.from(`consumer:${SRV_CONSUMER_PW}`).toString('base64') } });
      assert.equal(res.status, 200);
      const env = (await res.json()) as { objects?: Array<{ id: string }> };
      const ids = anchored.map((a) => a.id).sort();
      assert.deepEqual((env.objects ?? []).map((o) => o.id).sort(), ids);

      // step 5: what the GET served left on "Served", was re-verified and stays finalized
      const deadline = Date.now() + 30_000;
      let served: Execution[] = [];
      let remarked: any[] = [];
      for (;;) {
        served = (await srvRuns()).filter((e) => !before.has(e.id) && e.nodes['Re-verify served (step 5)'] && !['running', 'new', 'waiting'].includes(e.status));
        remarked = served.flatMap((e) => e.nodes['Mark integrity']?.[0]?.items[0] ?? []);
        if (remarked.length >= ids.length || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      assert.ok(served.length >= 1, `no execution for the objects served within 30 s:\n${server.output().slice(-3000)}`);
      for (const e of served) assert.equal(e.status, 'success', JSON.stringify(e));
      assert.deepEqual(remarked.map((it) => it.object.id).sort(), ids);
      for (const it of remarked) assert.equal(it.sets.integrity.status, 'finalized', JSON.stringify(it.sets));
    });
  });
});
