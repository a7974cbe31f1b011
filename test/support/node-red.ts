/**
 * An embedded Node-RED (editor + admin API + HTTP-in routes on our own Express app, as
 * scripts/demo.ts hosts it) with this package installed in a temporary user dir, for the browser
 * tests. It runs in a CHILD process: the node suites share one mocha process with
 * node-red-node-test-helper, which drives the Node-RED runtime singleton itself, so a second
 * runtime in the same process would interfere with it.
 *
 *   const nr = await startNodeRed();   // nr.url = 'http://127.0.0.1:<free port>/'
 *   ...
 *   await nr.stop();                    // stops Node-RED, removes the user dir
 */
import { spawn, type ChildProcess } from 'child_process';
import express from 'express';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';

export interface NodeRedHandle {
  /** base URL of the editor and the admin API, with a trailing slash */
  url: string;
  port: number;
  userDir: string;
  /** log lines the child wrote (stderr and stdout), for failure messages */
  output(): string;
  stop(): Promise<void>;
}

export class NodeRedStartError extends Error {
  readonly code = 'NODE_RED_START';
}

/**
 * The repository root: the parent of the nearest node_modules above this file, symlinks resolved
 * (dist/ lives inside the repo; a build in SETS_BUILD_OUT gets a node_modules symlink to the repo's).
 */
export function repoRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const nm = path.join(dir, 'node_modules');
    if (fs.existsSync(nm)) {
      const root = path.dirname(fs.realpathSync(nm));
      const pkg = path.join(root, 'package.json');
      if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'node-red-contrib-sets') return root;
    }
    if (path.dirname(dir) === dir) throw new NodeRedStartError(`no node-red-contrib-sets checkout found above ${from}`);
  }
}

/** Starts Node-RED in a child process with an empty flow; resolves once the editor answers. */
export function startNodeRed(opts: { startTimeoutMs?: number } = {}): Promise<NodeRedHandle> {
  const root = repoRoot();
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-nr-'));
  fs.mkdirSync(path.join(userDir, 'node_modules'));
  // Node-RED loads our package from its user dir, as it would after `npm install` there.
  fs.symlinkSync(root, path.join(userDir, 'node_modules', 'node-red-contrib-sets'), 'dir');
  fs.writeFileSync(path.join(userDir, 'flows.json'), '[]');
  const child: ChildProcess = spawn(process.execPath, [__filename], {
    env: { ...process.env, SETS_NR_CHILD_USERDIR: userDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    }
    fs.rmSync(userDir, { recursive: true, force: true });
  };
  return new Promise<NodeRedHandle>((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop().then(() => reject(new NodeRedStartError(`Node-RED did not start within ${opts.startTimeoutMs ?? 30_000} ms:\n${out}`)));
    }, opts.startTimeoutMs ?? 30_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const m = /^SETS_NR_READY (\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({ url: `http://127.0.0.1:${port}/`, port, userDir, output: () => out, stop });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fs.rmSync(userDir, { recursive: true, force: true });
      reject(new NodeRedStartError(`Node-RED exited before it was ready (code ${code}, signal ${signal}):\n${out}`));
    });
  });
}

interface EmbeddedRed {
  init(server: http.Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  httpAdmin: express.Express;
  httpNode: express.Express;
}

/** The child: host Node-RED on a free port of 127.0.0.1, print the port, stop on SIGTERM. */
async function runChild(userDir: string): Promise<void> {
  // node-red is loaded at run time, in the child only: it is the runtime we host.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const RED = require('node-red') as EmbeddedRed;
  const app = express();
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  RED.init(server, {
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    uiHost: '127.0.0.1',
    uiPort: port,
    httpAdminRoot: '/',
    httpNodeRoot: '/',
    // no palette catalogue: the editor would fetch catalogue.nodered.org, which tests must not reach
    editorTheme: { tours: false, projects: { enabled: false }, palette: { catalogues: [] } },
    // telemetry off: no update check, and no consent dialog over the editor
    telemetry: { enabled: false },
    logging: { console: { level: process.env.SETS_NR_LOG_LEVEL ?? 'fatal', metrics: false, audit: false } },
  });
  app.use('/', RED.httpAdmin);
  app.use('/', RED.httpNode);
  await RED.start();
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    void RED.stop()
      .catch(() => undefined)
      .then(() => server.closeAllConnections())
      .then(() => process.exit(0));
  });
  process.stdout.write(`SETS_NR_READY ${port}\n`);
}

if (require.main === module && process.env.SETS_NR_CHILD_USERDIR) {
  runChild(process.env.SETS_NR_CHILD_USERDIR).catch((err: unknown) => {
    process.stderr.write(`embedded Node-RED failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
