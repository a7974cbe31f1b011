/**
 * The soak's server: a real Node-RED in a child process, running the server flow of
 * examples/sets-taxii-server.json (taxii-server with an embedded store → admitted objects
 * distributed by rabbit-publish and verified by verify-hash, waiting for the anchor →
 * integrity-status marks them; served objects re-verified → marked), with one collection
 * (integrity required), pointed at the soak's chain (through the outage proxy) and broker.
 *
 * The user dir and the port are kept across restarts: `kill()` is a SIGKILL (no flush, no
 * close handlers), `start()` again runs Node-RED on the same flow, store and port.
 *
 * The package is installed in the user dir as a real directory holding this package's
 * package.json and a `dist` symlink to the build this file was compiled into, so Node-RED runs
 * exactly the code under test (not whatever the repository's dist/ holds).
 *
 * Added to the example flow for the soak: an HTTP endpoint GET /soak/records?status=pending
 * (http in → integrity-status query → http response) to watch the pipeline drain, and a log
 * handler writing every warning, error and Catch → debug "ERROR" message to nr-events.jsonl.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import express from 'express';
import { repoRoot } from './node-red';

export interface SoakServerSettings {
  userDir: string;
  port: number;
  collection: string;
  rpcUrl: string;
  chainId: number;
  registry: string;
  amqpHost: string;
  amqpPort: number;
  users: Array<{ username: string; password: string; roles: string }>;
  /** taxii-server recovery sweep: seconds between sweeps, and how long a record stays pending before a sweep emits it again */
  recoveryIntervalS: number;
  anchorGraceS: number;
  /** the example's collection to copy: integrity 'required' (default) or 'off' (the benchmark's no-ledger baseline) */
  integrity?: 'required' | 'off';
}

export const SOAK_STORE_SUBDIR = 'soak-store';
export const SOAK_API_ROOT = 'api1';

interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
}

/** Write the flow, its credentials and the package install into the user dir. */
export function prepareServerUserDir(s: SoakServerSettings): void {
  const root = repoRoot();
  const build = path.resolve(__dirname, '..', '..');
  fs.mkdirSync(s.userDir, { recursive: true });
  const pkgDir = path.join(s.userDir, 'node_modules', 'node-red-contrib-sets');
  fs.rmSync(pkgDir, { recursive: true, force: true });
  fs.mkdirSync(pkgDir, { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(pkgDir, 'package.json'));
  fs.symlinkSync(build, path.join(pkgDir, 'dist'), 'dir');

  const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', 'sets-taxii-server.json'), 'utf8')) as FlowNode[];
  const tab = flow.find((n) => n.type === 'tab')?.id as string;
  const server = flow.find((n) => n.type === 'taxii-server') as FlowNode;
  for (const n of flow) {
    if (n.type === 'sets-store') Object.assign(n, { kind: 'embedded', dir: path.join(s.userDir, SOAK_STORE_SUBDIR) });
    if (n.type === 'sets-ledger') Object.assign(n, { rpcUrl: s.rpcUrl, wsUrl: '', chainId: String(s.chainId), contract: s.registry });
    if (n.type === 'sets-broker') Object.assign(n, { kind: 'amqp', host: s.amqpHost, port: s.amqpPort, vhost: '/' });
    if (n.type === 'taxii-server') {
      const cols = n.collections as Array<Record<string, unknown>>;
      const first = cols.find((c) => c.integrity === (s.integrity ?? 'required')) as Record<string, unknown>;
      n.collections = [{ ...first, id: s.collection }];
      n.apiRoot = SOAK_API_ROOT;
      n.recoveryInterval = s.recoveryIntervalS;
      n.anchorGrace = s.anchorGraceS;
    }
    // 10,000 "INTEGRITY" lines would drown the log; errors stay on the console
    if (n.type === 'debug' && n.name !== 'ERROR') Object.assign(n, { active: false, console: false });
    if (n.type === 'integrity-status' && n.name === 'query statuses') n.maxItems = 100_000;
  }
  flow.push(
    { id: 'soak-http-in', type: 'http in', z: tab, name: 'soak: records by status', url: '/soak/records', method: 'get', upload: false, x: 160, y: 340, wires: [['soak-http-query']] },
    { id: 'soak-http-query', type: 'integrity-status', z: tab, name: 'soak: query', server: server.id, store: '', collections: '', maxItems: 100_000, x: 400, y: 340, wires: [['soak-http-out']] },
    { id: 'soak-http-out', type: 'http response', z: tab, name: '', statusCode: '', headers: {}, x: 600, y: 340, wires: [] },
  );
  fs.writeFileSync(path.join(s.userDir, 'flows.json'), JSON.stringify(flow, null, 2));
  // test credentials only (hardhat is not even used for writing here: the server's ledger is read-only)
  const creds: Record<string, Record<string, string>> = {};
  creds[server.id] = { users: s.users.map((u) => `${u.username}:${u.password}:${u.roles}`).join('\n') };
  for (const n of flow) if (n.type === 'sets-broker') creds[n.id] = { username: 'guest', password: 'guest' };
  fs.writeFileSync(path.join(s.userDir, 'flows_cred.json'), JSON.stringify(creds, null, 2));
}

export interface SoakNodeRed {
  readonly running: boolean;
  /** start Node-RED (again) on the prepared user dir and port; resolves once the flow is started */
  start(timeoutMs?: number): Promise<void>;
  /** SIGKILL: no close handlers, no flush */
  kill(): Promise<void>;
  /** graceful stop (SIGTERM: flows stopped, store closed) */
  stop(): Promise<void>;
  /** starts so far */
  readonly starts: number;
}

export function soakNodeRed(s: Pick<SoakServerSettings, 'userDir' | 'port'>, logFile: string): SoakNodeRed {
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let starts = 0;
  const alive = (): boolean => !!child && child.exitCode === null && child.signalCode === null;
  const onExit = (): void => {
    if (alive()) child?.kill('SIGKILL');
  };
  process.on('exit', onExit);
  const start = (timeoutMs = 60_000): Promise<void> => {
    if (alive()) return Promise.reject(new Error('Node-RED is already running'));
    starts++;
    const out = fs.openSync(logFile, 'a');
    const c = spawn(process.execPath, [__filename], {
      env: { ...process.env, SETS_SOAK_NR_USERDIR: s.userDir, SETS_SOAK_NR_PORT: String(s.port) },
      stdio: ['pipe', 'pipe', out],
    });
    fs.closeSync(out);
    child = c;
    exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    // the child exits when its stdin closes (this process died, however it died)
    c.stdin?.on('error', () => undefined);
    return new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => {
        c.kill('SIGKILL');
        reject(new Error(`Node-RED did not start within ${timeoutMs} ms (log: ${logFile})`));
      }, timeoutMs);
      c.stdout?.on('data', (d: Buffer) => {
        fs.appendFileSync(logFile, d);
        buf = (buf + d.toString()).slice(-2000);
        if (/^SETS_SOAK_NR_READY$/m.test(buf)) {
          buf = '';
          clearTimeout(timer);
          resolve();
        }
      });
      c.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`Node-RED exited (code ${code}, signal ${signal}) before it was ready (log: ${logFile})`));
      });
    });
  };
  return {
    get running() {
      return alive();
    },
    get starts() {
      return starts;
    },
    start,
    async kill() {
      if (alive()) child?.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (alive()) {
        child?.kill('SIGTERM');
        const t = setTimeout(() => child?.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
      process.removeListener('exit', onExit);
    },
  };
}

interface EmbeddedRed {
  init(server: http.Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  httpAdmin: express.Express;
  httpNode: express.Express;
}

interface LogRecord {
  level: number;
  type?: string;
  name?: string;
  id?: string;
  msg?: unknown;
}

/** The child: Node-RED on the given port and user dir; stops on SIGTERM or when stdin closes. */
async function runChild(userDir: string, port: number): Promise<void> {
  // node-red is loaded at run time, in the child only: it is the runtime we host.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const RED = require('node-red') as EmbeddedRed;
  const events = fs.openSync(path.join(userDir, 'nr-events.jsonl'), 'a');
  const app = express();
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  RED.init(server, {
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    uiHost: '127.0.0.1',
    uiPort: port,
    httpAdminRoot: '/admin',
    httpNodeRoot: '/',
    editorTheme: { tours: false, projects: { enabled: false }, palette: { catalogues: [] } },
    telemetry: { enabled: false },
    logging: {
      console: { level: 'warn', metrics: false, audit: false },
      soak: {
        level: 'info',
        metrics: false,
        audit: false,
        handler: () => (rec: LogRecord) => {
          // warn (30), error (20), fatal (10), and the flow's Catch → debug "ERROR" lines
          if (rec.level <= 30 || (rec.type === 'debug' && rec.name === 'ERROR')) {
            const msg = typeof rec.msg === 'string' ? rec.msg : JSON.stringify(rec.msg);
            fs.writeSync(events, JSON.stringify({ at: Date.now(), level: rec.level, type: rec.type, name: rec.name, id: rec.id, msg: msg?.slice(0, 500) }) + '\n');
          }
        },
      },
    },
  });
  app.use('/admin', RED.httpAdmin);
  app.use('/', RED.httpNode);
  await RED.start();
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void RED.stop()
      .catch(() => undefined)
      .then(() => server.closeAllConnections())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();
  // RED.start() resolves before the flows have started: wait for the TAXII discovery to answer
  for (let i = 0; i < 300; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/taxii/taxii2/`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    if (r && (r.status === 200 || r.status === 401)) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  process.stdout.write('SETS_SOAK_NR_READY\n');
}

if (require.main === module && process.env.SETS_SOAK_NR_USERDIR) {
  runChild(process.env.SETS_SOAK_NR_USERDIR, Number(process.env.SETS_SOAK_NR_PORT)).catch((err: unknown) => {
    process.stderr.write(`soak Node-RED failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
