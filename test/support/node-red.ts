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
 *
 * The package Node-RED loads is the build that holds this file (dist/, or a private
 * SETS_BUILD_OUT folder), installed into the user dir by `installPackage` — the same way
 * `npm run demo` installs it. EDITOR_SETTINGS are the editor settings the demo and these tests share.
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

/**
 * Editor settings of `npm run demo` and the browser tests:
 * - no first-load prompt: Node-RED 4.1 asks "Enable Update Notifications?" (its telemetry consent
 *   dialog) whenever the runtime has no `telemetry` setting; `enabled: false` answers it (no data
 *   is sent, no update check), `updateNotification: false` keeps the update banner off as well;
 * - no welcome tour over the flow;
 * - the SETS palette category first (the core categories follow in their usual order).
 */
export const EDITOR_SETTINGS = {
  telemetry: { enabled: false, updateNotification: false },
  paletteCategories: ['SETS'],
} as const;
export const EDITOR_THEME = { tours: false, projects: { enabled: false } } as const;

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

/** The build output this file belongs to: <build>/test/support/node-red.js -> <build>. */
export function buildRoot(): string {
  return path.resolve(__dirname, '..', '..');
}

/**
 * Installs this package into `<userDir>/node_modules/node-red-contrib-sets`, as `npm install`
 * there would, but for the build that holds this file: a folder with the repository's
 * package.json, `dist` pointing at the build (dist/ itself, or a private SETS_BUILD_OUT folder)
 * and the repository's examples/, resources/ and node_modules/. Replaces an earlier install.
 */
export function installPackage(userDir: string): string {
  const root = repoRoot();
  const pkgDir = path.join(userDir, 'node_modules', 'node-red-contrib-sets');
  fs.mkdirSync(path.dirname(pkgDir), { recursive: true });
  fs.rmSync(pkgDir, { recursive: true, force: true });
  fs.mkdirSync(pkgDir);
  fs.copyFileSync(path.join(root, 'package.json'), path.join(pkgDir, 'package.json'));
  fs.symlinkSync(buildRoot(), path.join(pkgDir, 'dist'), 'dir');
  for (const sub of ['examples', 'resources', 'node_modules']) {
    if (fs.existsSync(path.join(root, sub))) fs.symlinkSync(path.join(root, sub), path.join(pkgDir, sub), 'dir');
  }
  return pkgDir;
}

/**
 * Starts Node-RED in a child process (empty flow unless `flow` is given); resolves once the editor
 * answers. `settings` (JSON data only, e.g. adminAuth) are merged over the harness's RED.init settings.
 */
export function startNodeRed(opts: { startTimeoutMs?: number; flow?: unknown[]; settings?: Record<string, unknown> } = {}): Promise<NodeRedHandle> {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-nr-'));
  installPackage(userDir);
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(opts.flow ?? []));
  const child: ChildProcess = spawn(process.execPath, [__filename], {
    env: { ...process.env, SETS_NR_CHILD_USERDIR: userDir, SETS_NR_CHILD_SETTINGS: JSON.stringify(opts.settings ?? {}) },
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
async function runChild(userDir: string, extra: Record<string, unknown>): Promise<void> {
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
    editorTheme: { ...EDITOR_THEME, palette: { catalogues: [] } },
    ...EDITOR_SETTINGS,
    logging: { console: { level: process.env.SETS_NR_LOG_LEVEL ?? 'fatal', metrics: false, audit: false } },
    ...extra,
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
  runChild(process.env.SETS_NR_CHILD_USERDIR, JSON.parse(process.env.SETS_NR_CHILD_SETTINGS ?? '{}') as Record<string, unknown>).catch((err: unknown) => {
    process.stderr.write(`embedded Node-RED failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
