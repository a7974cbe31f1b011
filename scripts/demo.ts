/**
 * `npm run demo` — the SETS pipeline on embedded defaults, in one command.
 *
 * Starts a local EVM node (hardhat, 1 s blocks like an IBFT network) and deploys the registry,
 * finds RabbitMQ (SETS_AMQP_URL, else a broker on localhost:5672, else a private rabbitmq-server
 * node when the Debian package is installed, else — said loudly — the in-process broker, which
 * SETS_DEMO_BROKER=in-process also forces), then starts Node-RED with our nodes and the example
 * flow `examples/sets-all-in-one-demo.json` deployed. The flow publishes sample CTI at once,
 * tampers with one object in transit and has an insider alter one stored record; the console shows
 * each object VERIFIED or REJECTED, and so does the editor (debug sidebar, status badges). Every
 * inject button can then be pressed again, any number of times and in any order: the start-up log
 * lists them with what each should produce.
 *
 * Environment: SETS_DEMO_PORT (editor/HTTP port, default 1880), SETS_DEMO_DIR (Node-RED user dir,
 * default .sets-demo), SETS_AMQP_URL, SETS_DEMO_EXIT_AFTER (seconds: stop after that long and exit
 * 0 only if the expected verifications and rejections were seen — used by the tests).
 */
import * as fs from 'fs';
import * as http from 'http';
import express from 'express';
import * as path from 'path';
import type { ClassicLevel } from 'classic-level';
import { probeAmqp } from '../lib/bus/amqp';
import { collectionScope } from '../lib/digest';
import { EmbeddedStore } from '../lib/store/embedded';
import { TaxiiClient } from '../lib/taxii/client';
import { BasicAuth } from '../lib/auth/client';
import { startHardhat, type ChainHandle } from '../test/support/hardhat';
import { EDITOR_SETTINGS, EDITOR_THEME, installPackage, repoRoot } from '../test/support/node-red';
import { startRabbit, type RabbitHandle } from '../test/support/rabbit';

// the checkout (examples/, .sets-demo/), wherever the build went (dist/ or SETS_BUILD_OUT)
const root = repoRoot();
const port = Number(process.env.SETS_DEMO_PORT ?? 1880);
const userDir = path.resolve(process.env.SETS_DEMO_DIR ?? path.join(root, '.sets-demo'));
const exitAfter = process.env.SETS_DEMO_EXIT_AFTER ? Number(process.env.SETS_DEMO_EXIT_AFTER) : 0;
const FLOW_FILE = path.join(root, 'examples', 'sets-all-in-one-demo.json');
const COLLECTION = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';
const STORE_TAMPERED_ID = 'malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b';
/**
 * The inject buttons of the demo flow and what one press shows in the debug sidebar (the start-up
 * log prints this; test/browser/demo-buttons.test.ts presses each twice and checks it).
 */
export const DEMO_BUTTONS: ReadonlyArray<{ id: string; name: string; expect: string }> = [
  { id: 'inj-pub', name: 'publish sample CTI', expect: 'a new version of 3 objects: PUBLISHED (status complete, 3 successes), then 3 × VERIFIED at the subscriber' },
  { id: 'inj-transit', name: 'tamper in transit', expect: 'REJECTED at the subscriber (status mismatch), dead-lettered to sets-demo-rejected' },
  {
    id: 'inj-store',
    name: 'insider alters stored malware',
    expect: 'a new malware version is published (PUBLISHED, VERIFIED), altered in the database, then INQUIRY REJECTED and INTEGRITY invalid; the server serves the last good version again',
  },
  { id: 'inj-inq', name: 'inquire shared CTI', expect: 'INQUIRY VERIFIED for each object served (altered versions are no longer served)' },
  { id: 'inj-query', name: 'show record statuses', expect: 'record statuses: pending / finalized / invalid counts per collection' },
];

/** Demo users of the TAXII server (README lists them). */
const USERS = [
  { username: 'producer', password: 'sets-demo-producer', roles: 'publisher' },
  { username: 'consumer', password: 'sets-demo-consumer', roles: 'reader' },
];

function say(line: string): void {
  process.stdout.write(`[sets-demo] ${line}\n`);
}

interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
}

/** The demo flow's collections whose objects are anchored (integrity policy other than "off"). */
function anchoredCollections(): Array<{ id: string; integrity: string }> {
  const flow = JSON.parse(fs.readFileSync(FLOW_FILE, 'utf8')) as FlowNode[];
  const out: Array<{ id: string; integrity: string }> = [];
  for (const n of flow) {
    if (n.type !== 'taxii-server' || !Array.isArray(n.collections)) continue;
    for (const c of n.collections as Array<{ id?: unknown; integrity?: unknown }>) {
      if (typeof c.id === 'string' && c.integrity !== 'off') out.push({ id: c.id, integrity: String(c.integrity ?? 'required') });
    }
  }
  if (out.length === 0) throw new Error(`${FLOW_FILE}: no TAXII server collection with integrity on`);
  return out;
}

type BrokerChoice = { kind: 'amqp'; url: URL } | { kind: 'in-process' };

async function findBroker(stops: Array<() => Promise<void>>): Promise<BrokerChoice> {
  if (process.env.SETS_DEMO_BROKER === 'in-process') return { kind: 'in-process' };
  if (process.env.SETS_AMQP_URL) return { kind: 'amqp', url: new URL(process.env.SETS_AMQP_URL) };
  const local = new URL('amqp://guest:guest@127.0.0.1:5672/');
  try {
    const { server } = await probeAmqp({ url: local.toString(), connectTimeoutMs: 2000 });
    say(`using the RabbitMQ broker on localhost:5672 (${server})`);
    return { kind: 'amqp', url: local };
  } catch {
    say('no RabbitMQ on localhost:5672 — starting a private rabbitmq-server node (Debian package)');
  }
  try {
    const r: RabbitHandle = await startRabbit();
    stops.push(() => r.stop());
    return { kind: 'amqp', url: new URL(r.url) };
  } catch (err) {
    say('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    say(`!! no RabbitMQ could be found or started (${(err as Error).message.split('\n')[0]})`);
    say('!! the demo uses the IN-PROCESS broker instead: same topic semantics, NOT durable, inside this');
    say('!! Node-RED only. Install rabbitmq-server or set SETS_AMQP_URL for the real thing.');
    say('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    return { kind: 'in-process' };
  }
}

function writeUserDir(chain: ChainHandle, registry: string, broker: BrokerChoice): void {
  // Node-RED loads our package from its user dir, as it would after `npm install` there.
  installPackage(userDir);
  // The chain is new on every run, so the records of an earlier run could not verify: start empty.
  fs.rmSync(path.join(userDir, 'sets-store'), { recursive: true, force: true });
  const flow = JSON.parse(fs.readFileSync(FLOW_FILE, 'utf8')) as FlowNode[];
  for (const n of flow) {
    if (n.type === 'sets-ledger') Object.assign(n, { rpcUrl: chain.rpcUrl, wsUrl: '', chainId: String(chain.chainId), contract: registry });
    if (n.type === 'sets-broker' && broker.kind === 'in-process') Object.assign(n, { kind: 'in-process', brokerName: 'sets-demo' });
    if (n.type === 'sets-broker' && broker.kind === 'amqp') {
      const u = broker.url;
      Object.assign(n, { kind: 'amqp', host: u.hostname, port: Number(u.port || 5672), vhost: decodeURIComponent(u.pathname.slice(1)) || '/' });
    }
    if (n.type === 'sets-taxii') n.url = `http://127.0.0.1:${port}/taxii/taxii2/`;
  }
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flow, null, 2));
  // Demo credentials only: hardhat's public development key and the broker's demo user. With
  // credentialSecret false Node-RED keeps them in plain text in flows_cred.json (never do that
  // with real keys).
  const creds: Record<string, Record<string, string>> = {};
  for (const n of flow) {
    if (n.type === 'sets-ledger') creds[n.id] = { privateKey: chain.accounts[0].privateKey };
    if (n.type === 'taxii-server') creds[n.id] = { users: USERS.map((u) => `${u.username}:${u.password}:${u.roles}`).join('\n') };
    if (n.type === 'sets-taxii') {
      const u = /consumer/.test(String(n.name)) ? USERS[1] : USERS[0];
      creds[n.id] = { username: u.username, password: u.password };
    }
    if (n.type === 'sets-broker' && broker.kind === 'amqp') {
      creds[n.id] = { username: decodeURIComponent(broker.url.username || 'guest'), password: decodeURIComponent(broker.url.password || 'guest') };
    }
  }
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(creds, null, 2));
}

/**
 * Attack 2 of the demo: an insider with access to the database edits a stored record, bypassing
 * the store's API. The embedded store shares one LevelDB handle per directory in a process, so we
 * reach its raw database the way such an insider would reach the files. Demo only.
 * `version` (the object's `modified`) limits the edit to that version; without it every version is edited.
 */
async function tamperStoredRecord(dir: string, collection: string, id: string, version?: string): Promise<number> {
  const store = new EmbeddedStore({ dir });
  await store.open();
  try {
    const db = (store as unknown as { handle: { db: ClassicLevel<string, string> } }).handle.db;
    const prefix = ['r', collection, id].join('\u0000') + '\u0000';
    let changed = 0;
    for await (const [key, value] of db.iterator({ gte: prefix, lt: prefix.slice(0, -1) + '\u0001' })) {
      const rec = JSON.parse(value) as { version?: string; object: Record<string, unknown> };
      if (version !== undefined && rec.version !== version && rec.object.modified !== version) continue;
      rec.object.name = 'Harmless updater (edited by an insider)';
      await db.put(key, JSON.stringify(rec));
      changed++;
    }
    return changed;
  } finally {
    await store.close();
  }
}

interface LogRecord {
  level: number;
  type?: string;
  name?: string;
  msg?: unknown;
}

async function main(): Promise<void> {
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    say('starting a local EVM node (hardhat, chain 31337, 1 s blocks)');
    const chain = await startHardhat();
    stops.push(() => chain.stop());
    await chain.setIntervalMining(1000);
    // the producer is bound to the collections it vouches for (not ANY_SCOPE): its anchors count
    // there and nowhere else, and no other account's anchors count there
    const anchored = anchoredCollections();
    const producer = chain.accounts[0].address;
    const registry = await chain.deployRegistry({ writers: [{ account: producer, scopes: anchored.map((c) => collectionScope(c.id)) }] });
    say(`SetsRegistry deployed at ${registry}`);
    say(`ledger writer:    ${producer}, granted ${anchored.map((c) => `${c.id.slice(0, 8)}… (${c.integrity})`).join(', ')} only`);
    const broker = await findBroker(stops);
    writeUserDir(chain, registry, broker);

    const counts = { verified: 0, rejected: 0, inquiryRejected: 0, invalid: 0, errors: 0 };
    /** the record the insider edited last (the 404 check below asks for that version) */
    let altered: { id: string; version?: string } = { id: STORE_TAMPERED_ID };
    // node-red is loaded at run time: it is the runtime we host, not a dependency of lib/.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const RED = require('node-red') as {
      init(server: http.Server, settings: Record<string, unknown>): void;
      start(): Promise<void>;
      stop(): Promise<void>;
      nodes: { getNode(id: string): unknown };
      httpAdmin: express.Express;
      httpNode: express.Express;
    };
    // Embedded Node-RED serves nothing by itself: mount its editor/admin API and the HTTP-in
    // routes (our TAXII server lives there) on our own Express app.
    const app = express();
    const server = http.createServer(app);
    RED.init(server, {
      userDir,
      flowFile: 'flows.json',
      credentialSecret: false,
      uiHost: '127.0.0.1',
      uiPort: port,
      httpAdminRoot: '/',
      httpNodeRoot: '/',
      // no update-notification prompt over the demo, SETS first in the palette
      editorTheme: { ...EDITOR_THEME },
      ...EDITOR_SETTINGS,
      functionGlobalContext: {
        setsDemo: {
          tamperStoredRecord: (collection: string, id: string, version?: string): Promise<number> => {
            const store = RED.nodes.getNode('aio-store') as { dir?: string } | null;
            if (!store?.dir) return Promise.reject(new Error('demo store not found'));
            if (typeof id !== 'string' || (version !== undefined && typeof version !== 'string')) return Promise.reject(new TypeError('tamperStoredRecord(collection, id, version?) takes strings'));
            altered = { id, version };
            return tamperStoredRecord(store.dir, collection, id, version);
          },
        },
      },
      logging: {
        console: { level: 'info', metrics: false, audit: false },
        sets: {
          level: 'info',
          metrics: false,
          audit: false,
          handler: () => (rec: LogRecord) => {
            if (rec.type !== 'debug') return;
            if (rec.name === 'VERIFIED') counts.verified++;
            else if (rec.name === 'REJECTED') counts.rejected++;
            else if (rec.name === 'INQUIRY REJECTED') counts.inquiryRejected++;
            else if (rec.name === 'INTEGRITY' && /status: 'invalid'/.test(String(rec.msg))) counts.invalid++;
            else if (rec.name === 'ERROR') counts.errors++;
          },
        },
      },
    });
    app.use('/', RED.httpAdmin);
    app.use('/', RED.httpNode);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    await RED.start();
    stops.unshift(async () => {
      await RED.stop();
      await new Promise<void>((r) => server.close(() => r()));
    });
    say(`Node-RED editor:  http://127.0.0.1:${port}/  (flow "SETS all-in-one demo")`);
    say(`TAXII discovery:  http://127.0.0.1:${port}/taxii/taxii2/   API root: http://127.0.0.1:${port}/taxii/api1/`);
    say(`EVM JSON-RPC:     ${chain.rpcUrl} (chain ${chain.chainId}), SetsRegistry ${registry} — e.g. for the n8n workflows' ledger credential`);
    say(`TAXII users:      ${USERS.map((u) => `${u.username} / ${u.password} (${u.roles})`).join(', ')}`);
    say(`collections:      ${COLLECTION} (integrity required), 5f0c7a3e-… (optional), c3e6d2a5-… (off)`);
    say('at start (4-20 s) the flow runs once: the producer publishes 3 objects; an attacker alters 1 in transit;');
    say('an insider alters 1 stored record. Watch the debug sidebar (bug icon, top right of the editor).');
    say('then press any inject button (the square left of the node), as often as you like, in any order:');
    for (const b of DEMO_BUTTONS) say(`  [${b.name}] -> ${b.expect}`);
    say('Ctrl-C stops everything');

    const finish = async (code: number): Promise<never> => {
      say(
        `summary: ${counts.verified} verified, ${counts.rejected} rejected, ${counts.inquiryRejected} rejected on inquiry, ` +
          `${counts.invalid} marked invalid, ${counts.errors} errors`,
      );
      await stopAll();
      process.exit(code);
    };
    // Step 5.b: once marked invalid, the server refuses the altered record (a TAXII 404 that says why).
    const refusedFromNowOn = async (): Promise<boolean> => {
      const client = new TaxiiClient({ url: `http://127.0.0.1:${port}/taxii/taxii2/`, auth: new BasicAuth(USERS[1].username, USERS[1].password), timeoutMs: 5000 });
      try {
        await client.getObject(COLLECTION, altered.id, altered.version ? { match: { version: altered.version } } : {});
        say(`the altered record ${altered.id} (version ${altered.version ?? 'latest'}) is still served`);
        return false;
      } catch (err) {
        say(`the server now refuses the altered record: ${(err as Error).message}`);
        return /404/.test((err as Error).message);
      } finally {
        client.close();
      }
    };
    // The URLs README gives: the editor, and TAXII discovery for the demo users.
    const urlsAnswer = async (): Promise<boolean> => {
      const editor = await fetch(`http://127.0.0.1:${port}/`);
      const editorOk = editor.ok && /Node-RED/.test(await editor.text());
      const client = new TaxiiClient({ url: `http://127.0.0.1:${port}/taxii/taxii2/`, auth: new BasicAuth(USERS[0].username, USERS[0].password), timeoutMs: 5000 });
      try {
        const d = await client.discover();
        const cols = await client.collections();
        say(`editor answers: ${editorOk}; TAXII discovery "${d.title}" lists ${cols.length} collections`);
        return editorOk && cols.length === 3;
      } finally {
        client.close();
      }
    };
    process.once('SIGINT', () => void finish(0));
    process.once('SIGTERM', () => void finish(0));
    if (exitAfter > 0) {
      const deadline = Date.now() + exitAfter * 1000;
      const done = (): boolean => counts.verified >= 3 && counts.rejected >= 1 && counts.inquiryRejected >= 1 && counts.invalid >= 1;
      while (Date.now() < deadline && !done()) await new Promise((r) => setTimeout(r, 250));
      const refused = done() && (await refusedFromNowOn());
      const served = await urlsAnswer();
      const ok = done() && refused && served && counts.errors === 0;
      say(ok ? 'demo pipeline OK: genuine CTI verified, tampering in transit and in the store caught' : 'demo pipeline did NOT reach the expected result');
      await finish(ok ? 0 : 1);
    }
  } catch (err) {
    say(`failed: ${(err as Error).message}`);
    await stopAll();
    process.exit(1);
  }
}

// run only as the demo script: the browser tests import DEMO_BUTTONS from here
if (require.main === module) void main();
