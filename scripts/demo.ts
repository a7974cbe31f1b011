/**
 * `npm run demo` — the SETS pipeline on embedded defaults, in one command.
 *
 * Starts a local EVM node (hardhat, 1 s blocks like an IBFT network) and deploys the registry,
 * finds RabbitMQ (SETS_AMQP_URL, else a broker on localhost:5672, else a private rabbitmq-server
 * node when the Debian package is installed, else — said loudly — the in-process broker, which
 * SETS_DEMO_BROKER=in-process also forces), then starts Node-RED with our nodes and the example
 * flow `examples/sets-pipeline-rabbitmq.json` deployed. The flow publishes sample CTI at once and
 * tampers with one object in transit; the console shows each object VERIFIED or REJECTED at the
 * consumer, and so does the editor (debug sidebar, status badges).
 *
 * Environment: SETS_DEMO_PORT (editor/HTTP port, default 1880), SETS_DEMO_DIR (Node-RED user dir,
 * default .sets-demo), SETS_AMQP_URL, SETS_DEMO_EXIT_AFTER (seconds: stop after that long and exit
 * 0 only if the expected verifications and rejections were seen — used by the tests).
 */
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { probeAmqp } from '../lib/bus/amqp';
import { startHardhat, type ChainHandle } from '../test/support/hardhat';
import { startRabbit, type RabbitHandle } from '../test/support/rabbit';

const root = path.resolve(__dirname, '..', '..');
const port = Number(process.env.SETS_DEMO_PORT ?? 1880);
const userDir = path.resolve(process.env.SETS_DEMO_DIR ?? path.join(root, '.sets-demo'));
const exitAfter = process.env.SETS_DEMO_EXIT_AFTER ? Number(process.env.SETS_DEMO_EXIT_AFTER) : 0;
const COLLECTION = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';

function say(line: string): void {
  process.stdout.write(`[sets-demo] ${line}\n`);
}

interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
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
  fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
  // Node-RED loads our package from its user dir, as it would after `npm install` there.
  const link = path.join(userDir, 'node_modules', 'node-red-contrib-sets');
  fs.rmSync(link, { force: true, recursive: true });
  fs.symlinkSync(root, link, 'dir');
  const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', 'sets-pipeline-rabbitmq.json'), 'utf8')) as FlowNode[];
  for (const n of flow) {
    if (n.type === 'sets-ledger') Object.assign(n, { rpcUrl: chain.rpcUrl, wsUrl: '', chainId: String(chain.chainId), contract: registry });
    if (n.type === 'sets-broker' && broker.kind === 'in-process') Object.assign(n, { kind: 'in-process', brokerName: 'sets-demo' });
    if (n.type === 'sets-broker' && broker.kind === 'amqp') {
      const u = broker.url;
      Object.assign(n, { kind: 'amqp', host: u.hostname, port: Number(u.port || 5672), vhost: decodeURIComponent(u.pathname.slice(1)) || '/' });
    }
  }
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flow, null, 2));
  // Demo credentials only: hardhat's public development key and the broker's demo user. With
  // credentialSecret false Node-RED keeps them in plain text in flows_cred.json (never do that
  // with real keys).
  const creds: Record<string, Record<string, string>> = {};
  for (const n of flow) {
    if (n.type === 'sets-ledger') creds[n.id] = { privateKey: chain.accounts[0].privateKey };
    if (n.type === 'sets-broker' && broker.kind === 'amqp') {
      creds[n.id] = { username: decodeURIComponent(broker.url.username || 'guest'), password: decodeURIComponent(broker.url.password || 'guest') };
    }
  }
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(creds, null, 2));
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
    const registry = await chain.deployRegistry({ writers: [chain.accounts[0].address] });
    say(`SetsRegistry deployed at ${registry} (writer ${chain.accounts[0].address})`);
    const broker = await findBroker(stops);
    writeUserDir(chain, registry, broker);

    const counts = { verified: 0, rejected: 0, errors: 0 };
    // node-red is loaded at run time: it is the runtime we host, not a dependency of lib/.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const RED = require('node-red') as {
      init(server: http.Server, settings: Record<string, unknown>): void;
      start(): Promise<void>;
      stop(): Promise<void>;
    };
    const server = http.createServer();
    RED.init(server, {
      userDir,
      flowFile: 'flows.json',
      credentialSecret: false,
      uiHost: '127.0.0.1',
      uiPort: port,
      httpAdminRoot: '/',
      httpNodeRoot: '/',
      editorTheme: { tours: false, projects: { enabled: false } },
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
            else if (rec.name === 'ERROR') counts.errors++;
          },
        },
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    await RED.start();
    stops.unshift(async () => {
      await RED.stop();
      await new Promise<void>((r) => server.close(() => r()));
    });
    say(`Node-RED editor: http://127.0.0.1:${port}/  (flow "SETS pipeline (RabbitMQ)")`);
    say(`collection ${COLLECTION}; the producer publishes 3 objects, an attacker alters 1 in transit`);
    say('press the inject buttons in the editor to publish again; Ctrl-C stops everything');

    const finish = async (code: number): Promise<never> => {
      say(`summary: ${counts.verified} verified, ${counts.rejected} rejected, ${counts.errors} errors`);
      await stopAll();
      process.exit(code);
    };
    process.once('SIGINT', () => void finish(0));
    process.once('SIGTERM', () => void finish(0));
    if (exitAfter > 0) {
      const deadline = Date.now() + exitAfter * 1000;
      while (Date.now() < deadline && !(counts.verified >= 3 && counts.rejected >= 1)) {
        await new Promise((r) => setTimeout(r, 250));
      }
      const ok = counts.verified >= 3 && counts.rejected >= 1 && counts.errors === 0;
      say(ok ? 'demo pipeline OK: genuine CTI verified, tampered CTI rejected' : 'demo pipeline did NOT reach the expected result');
      await finish(ok ? 0 : 1);
    }
  } catch (err) {
    say(`failed: ${(err as Error).message}`);
    await stopAll();
    process.exit(1);
  }
}

void main();
