/**
 * Secrets never leak (issue 11): a real Node-RED runtime runs flows whose config nodes hold
 * distinctive secret strings — sets-ledger (private key), sets-broker (password), sets-taxii
 * (password, OAuth2 client secret), taxii-server (Basic users, API keys, token secret),
 * sets-store (MongoDB URI with a password) — through failures (wrong RPC URL, non-writer key,
 * broker refused, broker wrong password, TAXII 401, OAuth2 token endpoint down, store unreachable)
 * and successes. Every log line, node error / warning / status, emitted msg, HTTP answer and the
 * flow export must be free of them: credentials live in the credentials store only.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { NodeMessage } from 'node-red';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { Collector, Recorder, deployedFlows, helper, logText, placed, until, type FlowNode } from './helper';
import { baseUrl, basic, bridgeHttpNode, raw, runtimeSettings, serverNodes, TAXII } from './server-harness';
import { indicator } from './stix';

const tag = (what: string): string => `${what}-SECRET-${randomBytes(6).toString('hex')}`;

/** a port nothing listens on */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 1));
    });
  });
}

describe('secrets never leak (Node-RED)', function () {
  this.timeout(120_000);
  let c: ChainHandle;
  let registry: string;
  let userDir: string;
  let amqpPort: number;
  let deadPort: number;

  // distinctive secrets; the private keys must be real keys (hex), so they are random ones
  const NON_WRITER_KEY = '0x' + randomBytes(32).toString('hex');
  const DEAD_RPC_KEY = '0x' + randomBytes(32).toString('hex');
  const BROKER_PW = tag('broker-pw');
  const BROKER_PW_DEAD = tag('broker-pw-dead');
  const TAXII_PW_WRONG = tag('taxii-pw-wrong');
  const ALICE_PW = tag('alice-pw');
  const BOB_PW = tag('bob-pw');
  const API_KEY = tag('apikey');
  const TOKEN_SECRET = tag('token-secret');
  const CLIENT_SECRET = tag('client-secret');
  const MONGO_PW = tag('mongo-pw');
  let writerKey: string;

  before(async function () {
    this.timeout(180_000);
    c = await chain();
    registry = await c.deployRegistry();
    writerKey = c.accounts[3].privateKey;
    amqpPort = Number(new URL((await rabbit()).url).port);
    deadPort = await closedPort();
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-secrets-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });
  after(async () => {
    await helper.unload();
    await helper.stopServer();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  const COLL = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';

  function flow(): FlowNode[] {
    const ledger = (id: string, rpcUrl: string): FlowNode => ({ id, type: 'sets-ledger', kind: 'evm', rpcUrl, chainId: String(c.chainId), contract: registry, txType: '0', timeout: 5000 });
    const broker = (id: string, port: number): FlowNode => ({ id, type: 'sets-broker', host: '127.0.0.1', port, vhost: '/', exchange: 'sets-secrets', prefetch: 10, heartbeat: 30, timeout: 3000, brokerWait: 3 });
    return [
      { id: 'tab', type: 'tab', label: 'secrets' },
      { id: 'store', type: 'sets-store', kind: 'embedded', dir: path.join(userDir, 'store') },
      { id: 'mongo', type: 'sets-store', kind: 'mongodb', db: 'sets', retentionHours: 24 },
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: 'store',
        basePath: '/cti',
        title: 'secrets',
        apiRoot: 'org',
        collections: [{ id: COLL, title: 'members', canRead: ['reader', 'writer'], canWrite: ['writer'], integrity: 'required' }],
        wires: [['admitted'], []],
      },
      { id: 'admitted', type: 'helper', z: 'tab' },
      { id: 'srv-mongo', type: 'taxii-server', z: 'tab', store: 'mongo', basePath: '/cti-mongo', title: 'mongo', apiRoot: 'org', collections: [{ id: COLL, title: 'm', canRead: ['reader'], canWrite: ['writer'], integrity: 'required' }], wires: [[], []] },
      ledger('led-ok', c.rpcUrl),
      ledger('led-nonwriter', c.rpcUrl),
      ledger('led-dead', `http://127.0.0.1:${deadPort}`),
      broker('mq-wrongpw', amqpPort),
      broker('mq-dead', deadPort),
      { id: 'taxii-ok', type: 'sets-taxii', url: `${baseUrl()}/cti/taxii2/`, authType: 'basic', tlsVerify: true, timeout: 5000 },
      { id: 'taxii-401', type: 'sets-taxii', url: `${baseUrl()}/cti/taxii2/`, authType: 'basic', tlsVerify: true, timeout: 5000 },
      { id: 'taxii-oauth', type: 'sets-taxii', url: `${baseUrl()}/cti/taxii2/`, authType: 'oauth2', tokenUrl: `http://127.0.0.1:${deadPort}/token`, scope: 'taxii', tlsVerify: true, timeout: 5000 },
      { id: 'anc-ok', type: 'anchor-hash', z: 'tab', ledger: 'led-ok', collection: COLL, wires: [['out']] },
      { id: 'anc-nonwriter', type: 'anchor-hash', z: 'tab', ledger: 'led-nonwriter', collection: COLL, wires: [['out']] },
      { id: 'anc-dead', type: 'anchor-hash', z: 'tab', ledger: 'led-dead', collection: COLL, wires: [['out']] },
      { id: 'ver-ok', type: 'verify-hash', z: 'tab', ledger: 'led-ok', collection: COLL, waitMs: 0, mode: 'split', wires: [['out'], ['out']] },
      { id: 'pub-wrongpw', type: 'rabbit-publish', z: 'tab', broker: 'mq-wrongpw', collection: COLL, wires: [['out']] },
      { id: 'pub-dead', type: 'rabbit-publish', z: 'tab', broker: 'mq-dead', collection: COLL, wires: [['out']] },
      { id: 'tp-ok', type: 'taxii-publish', z: 'tab', server: 'taxii-ok', collection: COLL, waitStatus: false, onFailure: 'error', wires: [['out']] },
      { id: 'inq-ok', type: 'taxii-inquire', z: 'tab', server: 'taxii-ok', collection: COLL, operation: 'objects', limit: 10, maxItems: 0, output: 'all', wires: [['out']] },
      { id: 'inq-401', type: 'taxii-inquire', z: 'tab', server: 'taxii-401', collection: COLL, operation: 'objects', limit: 10, maxItems: 0, output: 'all', wires: [['out']] },
      { id: 'inq-oauth', type: 'taxii-inquire', z: 'tab', server: 'taxii-oauth', collection: COLL, operation: 'objects', limit: 10, maxItems: 0, output: 'all', wires: [['out']] },
      { id: 'out', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ].map(placed);
  }

  const creds = (): Record<string, Record<string, string>> => ({
    'led-ok': { privateKey: writerKey },
    'led-nonwriter': { privateKey: NON_WRITER_KEY },
    'led-dead': { privateKey: DEAD_RPC_KEY },
    'mq-wrongpw': { username: 'guest', password: BROKER_PW },
    'mq-dead': { username: 'guest', password: BROKER_PW_DEAD },
    'taxii-ok': { username: 'alice', password: ALICE_PW },
    'taxii-401': { username: 'alice', password: TAXII_PW_WRONG },
    'taxii-oauth': { clientId: 'sets-client', clientSecret: CLIENT_SECRET },
    srv: { users: `alice:${ALICE_PW}:reader,writer\nbob:${BOB_PW}:reader`, apiKeys: `feed:${API_KEY}:reader`, tokenSecret: TOKEN_SECRET },
    'srv-mongo': { users: `alice:${ALICE_PW}:reader,writer` },
    mongo: { uri: `mongodb://sets:${MONGO_PW}@127.0.0.1:${deadPort}/sets?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000` },
  });

  it('no secret in logs, errors, warnings, statuses, messages, HTTP answers or the flow export — failing and succeeding', async () => {
    const secrets = [NON_WRITER_KEY, DEAD_RPC_KEY, writerKey, BROKER_PW, BROKER_PW_DEAD, TAXII_PW_WRONG, ALICE_PW, BOB_PW, API_KEY, TOKEN_SECRET, CLIENT_SECRET, MONGO_PW];
    // hex keys also appear without their 0x
    const needles = [...secrets, ...secrets.filter((s) => s.startsWith('0x')).map((s) => s.slice(2))];
    await helper.load(serverNodes, flow(), creds());
    const ids = ['srv', 'srv-mongo', 'anc-ok', 'anc-nonwriter', 'anc-dead', 'ver-ok', 'pub-wrongpw', 'pub-dead', 'tp-ok', 'inq-ok', 'inq-401', 'inq-oauth', 'led-ok', 'led-nonwriter', 'led-dead', 'mq-wrongpw', 'mq-dead', 'taxii-ok', 'taxii-401', 'taxii-oauth', 'store', 'mongo'];
    const rec = new Map(ids.map((id) => [id, new Recorder(helper.getNode(id))]));
    const out = new Collector(helper.getNode('out'));
    const caught = new Collector(helper.getNode('caught'));
    const admitted = new Collector(helper.getNode('admitted'));
    const answers: string[] = [];
    const send = (id: string, msg: Record<string, unknown>): void => helper.getNode(id)?.receive(msg as NodeMessage);
    const step = async (id: string, msg: Record<string, unknown>, n: number): Promise<void> => {
      send(id, msg);
      await out.wait(n, 30_000).catch((e: Error) => {
        throw new Error(`${id}: ${e.message}; caught: ${JSON.stringify(caught.messages.map((m) => (m as { error?: unknown }).error))}`);
      });
    };

    // successes: anchor, verify, publish to the TAXII server, read it back
    const o = indicator();
    await step('anc-ok', { payload: o }, 1);
    await step('ver-ok', { payload: o }, 2);
    await step('tp-ok', { payload: o }, 3);
    await admitted.wait(1, 30_000);
    await step('inq-ok', {}, 4);

    // failures: non-writer key, dead RPC, broker wrong password, broker refused, TAXII 401, OAuth2 token endpoint down
    for (const id of ['anc-nonwriter', 'anc-dead']) send(id, { payload: indicator() });
    for (const id of ['pub-wrongpw', 'pub-dead']) send(id, { payload: indicator() });
    for (const id of ['inq-401', 'inq-oauth']) send(id, {});
    await caught.wait(6, 60_000);

    // the servers answer failures: wrong password, unknown API key, a store that cannot be reached
    answers.push((await raw('GET', `${baseUrl()}/cti/org/collections/`, { headers: basic('alice', TAXII_PW_WRONG) })).text);
    answers.push((await raw('GET', `${baseUrl()}/cti/org/collections/`, { headers: { Authorization: `Bearer ${API_KEY}x`, Accept: TAXII } })).text);
    answers.push((await raw('GET', `${baseUrl()}/cti/org/collections/${COLL}/objects/`, { headers: basic('alice', ALICE_PW) })).text);
    answers.push((await raw('GET', `${baseUrl()}/cti-mongo/org/collections/${COLL}/objects/`, { headers: basic('alice', ALICE_PW) })).text);
    await until('the MongoDB store to report it cannot connect', () => (rec.get('srv-mongo')?.statuses.length ?? 0) + (rec.get('mongo')?.statuses.length ?? 0) > 0 || rec.get('srv-mongo')?.errors.length, 30_000);

    const statusText = [...rec.values()].flatMap((r) => r.statuses.map((s) => JSON.stringify(s))).join('\n');
    const nodeText = [...rec.values()].map((r) => r.text()).join('\n');
    const msgText = [...out.messages, ...caught.messages, ...admitted.messages]
      .map((m) => JSON.stringify(m, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)))
      .join('\n');
    const exported = JSON.stringify(deployedFlows());
    const corpus: Record<string, string> = { log: logText(), nodeErrorsAndWarnings: nodeText, statuses: statusText, messages: msgText, httpAnswers: answers.join('\n'), flowExport: exported };

    // the failures really happened (else the check proves nothing)
    assert.match(msgText, /NOT_AUTHORISED|not an authorised writer|not a writer/i);
    assert.match(msgText + nodeText, /127\.0\.0\.1:\d+/);
    assert.match(answers[0], /401|authenticat/i);
    // the flow export holds the config, never the credentials
    assert.ok(exported.includes('led-nonwriter') && exported.includes('"mongo"'), 'the export lists the config nodes');
    for (const [where, text] of Object.entries(corpus)) {
      for (const s of needles) assert.ok(!text.includes(s), `secret ${s.slice(0, 14)}… leaked into ${where}`);
    }
    // and the credentials are where they belong
    assert.equal(helper.credentials.get('mq-wrongpw')?.password, BROKER_PW);
    assert.equal(helper.credentials.get('mongo')?.uri?.includes(MONGO_PW), true);
  });
});
