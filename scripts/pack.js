#!/usr/bin/env node
// `npm run pack`: ONE build, TWO installable packages.
//
//   node-red-contrib-sets-<v>.tgz  the Node-RED package: the root package.json (its `node-red`
//                                  section and `files` list), dist/lib, dist/nodes/<the Node-RED
//                                  node folders + shared>, dist/contracts, examples/, README,
//                                  CHANGELOG, LICENSE.
//   n8n-nodes-sets-<v>.tgz         the n8n community package: a generated package.json (keyword
//                                  n8n-community-node-package, an `n8n` manifest of every
//                                  dist/nodes/*/*.node.js and dist/credentials/*.credentials.js,
//                                  n8n-workflow as a peer dependency only), dist/lib, the n8n node
//                                  and credential folders with their icons and codex files,
//                                  dist/contracts, the n8n workflows of flows/, README, LICENSE.
//
// Each package is assembled in a staging folder from the same build and packed there with
// `npm pack --ignore-scripts`; then every relative require() of every entry file (Node-RED nodes,
// n8n nodes and credentials) is checked to resolve inside its own package, so a node that reaches
// into a folder the package does not ship fails here, not on a user's machine. Inside each package
// the nodes require ../../lib/... relatively: one lib/ copy per process.
//
// A plain `npm pack` at the root gives the same Node-RED package: its `prepack` builds dist/ and
// package.json `files` lists the same folders.
//
// Usage: node scripts/pack.js [--out <dir>] [--no-build]
//   --out       where the tarballs go (default .cache/pack, git-ignored)
//   --no-build  pack the existing build (SETS_BUILD_OUT or dist/) without building first
// Environment: SETS_BUILD_OUT builds into (and packs from) another folder, as scripts/build.js.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const N8N_PACKAGE = 'n8n-nodes-sets';

function log(s) {
  process.stdout.write(`[pack] ${s}\n`);
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Copy a file or a folder, skipping source maps (and, when asked, declaration files). */
function copy(from, to, opts = {}) {
  const st = fs.statSync(from);
  if (st.isDirectory()) {
    for (const ent of fs.readdirSync(from)) copy(path.join(from, ent), path.join(to, ent), opts);
    return;
  }
  if (from.endsWith('.map')) return;
  if (opts.noDeclarations && from.endsWith('.d.ts')) return;
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
}

/**
 * Every relative require() reachable from `entries` (absolute .js paths inside `pkgDir`) must
 * resolve to a file inside `pkgDir`. Returns the files reached; throws naming each miss.
 */
function checkRequires(pkgDir, entries) {
  const seen = new Set();
  const missing = [];
  const queue = [...entries];
  while (queue.length) {
    const file = queue.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    if (!fs.existsSync(file)) {
      missing.push(path.relative(pkgDir, file));
      continue;
    }
    const src = fs.readFileSync(file, 'utf8');
    for (const m of src.matchAll(/require\((["'])(\.{1,2}\/[^"']+)\1\)/g)) {
      const base = path.resolve(path.dirname(file), m[2]);
      const hit = [base, `${base}.js`, `${base}.json`, path.join(base, 'index.js')].find((f) => fs.existsSync(f) && fs.statSync(f).isFile());
      if (!hit || path.relative(pkgDir, hit).startsWith('..')) {
        missing.push(`${path.relative(pkgDir, file)} -> ${m[2]}`);
        continue;
      }
      if (hit.endsWith('.js')) queue.push(hit);
    }
  }
  if (missing.length) throw new Error(`${path.basename(pkgDir)}: unresolved relative requires:\n  ${missing.join('\n  ')}`);
  return seen;
}

/** `npm pack` a staged folder into `out`; returns the tarball's path. */
function npmPack(dir, out) {
  const res = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const info = JSON.parse(res)[0];
  return { file: path.join(out, info.filename), entries: info.entryCount, size: info.size, files: info.files.map((f) => f.path) };
}

/** Metadata both packages carry, from the root package.json. */
function sharedMeta(pkg) {
  const meta = {};
  for (const k of ['version', 'license', 'author', 'homepage', 'repository', 'bugs', 'engines']) {
    if (pkg[k] !== undefined) meta[k] = pkg[k];
  }
  return meta;
}

function stageNodeRed(pkg, build, stage) {
  const nodeFiles = Object.values(pkg['node-red'].nodes);
  // dist/nodes/<folder>/<type>.js -> the folder
  const folders = [...new Set(nodeFiles.map((f) => path.dirname(f).split('/').slice(1).join('/')))];
  copy(path.join(build, 'lib'), path.join(stage, 'dist', 'lib'));
  for (const f of [...folders, 'nodes/shared']) {
    copy(path.join(build, f), path.join(stage, 'dist', f), { noDeclarations: true });
  }
  // only the EVM artifact: the Fabric chaincode is deployed from contracts/fabric (its own package)
  copy(path.join(build, 'contracts', 'evm'), path.join(stage, 'dist', 'contracts', 'evm'));
  copy(path.join(root, 'examples'), path.join(stage, 'examples'));
  // the editor's shared script (Test connection, collection picker): Node-RED serves a package's
  // resources/ folder at resources/<package>/…, and the dialogs load it from there
  const resources = path.join(root, 'resources');
  if (fs.existsSync(resources)) copy(resources, path.join(stage, 'resources'));
  for (const f of ['README.md', 'CHANGELOG.md', 'LICENSE']) copy(path.join(root, f), path.join(stage, f));
  const manifest = { ...pkg };
  delete manifest.devDependencies;
  delete manifest.scripts; // they build from sources the package does not ship
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
  checkRequires(stage, nodeFiles.map((f) => path.join(stage, f)));
  // the editor half of each node: <type>.html beside <type>.js
  for (const f of nodeFiles) {
    const html = path.join(stage, f.replace(/\.js$/, '.html'));
    if (!fs.existsSync(html)) throw new Error(`node-red package: ${path.relative(stage, html)} missing`);
  }
  return nodeFiles.length;
}

function stageN8n(pkg, build, stage) {
  const nodes = [];
  const nodesDir = path.join(build, 'nodes');
  for (const folder of fs.readdirSync(nodesDir).sort()) {
    const dir = path.join(nodesDir, folder);
    if (!fs.statSync(dir).isDirectory()) continue;
    for (const f of fs.readdirSync(dir).sort()) if (f.endsWith('.node.js')) nodes.push(`dist/nodes/${folder}/${f}`);
  }
  const credsDir = path.join(build, 'credentials');
  const credentials = fs.existsSync(credsDir)
    ? fs.readdirSync(credsDir).filter((f) => f.endsWith('.credentials.js')).sort().map((f) => `dist/credentials/${f}`)
    : [];
  if (nodes.length === 0) throw new Error(`no n8n nodes in the build (${nodesDir}/*/*.node.js)`);

  copy(path.join(build, 'lib'), path.join(stage, 'dist', 'lib'));
  // only the EVM artifact: the Fabric chaincode is deployed from contracts/fabric (its own package)
  copy(path.join(build, 'contracts', 'evm'), path.join(stage, 'dist', 'contracts', 'evm'));
  // each n8n node's folder (code, icons, codex .node.json) and the credentials folder (code, icons)
  for (const n of nodes) copy(path.join(build, path.dirname(n).replace(/^dist\//, '')), path.join(stage, path.dirname(n)), { noDeclarations: true });
  if (credentials.length) copy(credsDir, path.join(stage, 'dist', 'credentials'), { noDeclarations: true });
  // whatever else under dist/nodes the entries require (e.g. nodes/n8n-shared), found by following requires
  const pending = [...nodes, ...credentials].map((f) => path.join(build, f.replace(/^dist\//, '')));
  const reached = checkRequires(build, pending);
  for (const f of reached) {
    const rel = path.relative(build, f);
    if (rel.startsWith(`lib${path.sep}`)) continue;
    const to = path.join(stage, 'dist', rel);
    if (!fs.existsSync(to)) copy(f, to);
  }
  const flowsDir = path.join(root, 'flows');
  let flows = 0;
  if (fs.existsSync(flowsDir)) {
    for (const f of fs.readdirSync(flowsDir).filter((x) => x.endsWith('.json'))) {
      copy(path.join(flowsDir, f), path.join(stage, 'flows', f));
      flows++;
    }
  }
  copy(path.join(root, 'docs', 'n8n-package-README.md'), path.join(stage, 'README.md'));
  for (const f of ['CHANGELOG.md', 'LICENSE']) copy(path.join(root, f), path.join(stage, f));

  const manifest = {
    name: N8N_PACKAGE,
    ...sharedMeta(pkg),
    description: 'SETS — Secure and Efficient Threat Sharing for n8n: STIX 2.1 over TAXII 2.1 and RabbitMQ, with object hashes anchored on a permissioned blockchain and verified by every consumer',
    keywords: ['n8n-community-node-package', 'n8n', 'stix', 'taxii', 'cti', 'threat-intelligence', 'blockchain', 'rabbitmq'],
    main: 'dist/lib/index.js',
    files: ['dist', 'flows', 'README.md', 'CHANGELOG.md', 'LICENSE'],
    n8n: { n8nNodesApiVersion: 1, nodes, credentials },
    dependencies: pkg.dependencies,
    peerDependencies: { 'n8n-workflow': '*' },
  };
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
  checkRequires(stage, [...nodes, ...credentials].map((f) => path.join(stage, f)));
  return { nodes, credentials, flows };
}

/**
 * Build once (unless build === false) into `buildDir` (default SETS_BUILD_OUT, else dist/) and
 * write both tarballs into `out`.
 * Returns { version, nodeRed: {file, entries, size, files}, n8n: {...}, manifest: {nodes, credentials, flows} }.
 */
function pack(opts = {}) {
  const out = path.resolve(opts.out || path.join(root, '.cache', 'pack'));
  const build = path.resolve(opts.buildDir || process.env.SETS_BUILD_OUT || path.join(root, 'dist'));
  const t0 = Date.now();
  if (opts.build !== false) {
    log(`building into ${path.relative(root, build) || build}`);
    execFileSync(process.execPath, [path.join(root, 'scripts', 'build.js')], { cwd: root, stdio: 'inherit', env: { ...process.env, SETS_BUILD_OUT: build } });
  }
  for (const need of ['lib', 'nodes', 'contracts/evm/SetsRegistry.json']) {
    if (!fs.existsSync(path.join(build, need))) throw new Error(`build output ${path.join(build, need)} missing: run the build`);
  }
  const pkg = readJson(path.join(root, 'package.json'));
  const staging = path.join(out, 'staging');
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  for (const f of fs.readdirSync(out)) if (f.endsWith('.tgz')) fs.rmSync(path.join(out, f));

  const nrStage = path.join(staging, 'node-red');
  const nrCount = stageNodeRed(pkg, build, nrStage);
  const nodeRed = npmPack(nrStage, out);
  log(`${nodeRed.file} (${nrCount} Node-RED node types, ${nodeRed.entries} files, ${Math.round(nodeRed.size / 1024)} kB)`);

  const n8nStage = path.join(staging, 'n8n');
  const manifest = stageN8n(pkg, build, n8nStage);
  const n8n = npmPack(n8nStage, out);
  log(
    `${n8n.file} (${manifest.nodes.length} n8n nodes, ${manifest.credentials.length} credential types, ${manifest.flows} workflows, ${n8n.entries} files, ${Math.round(n8n.size / 1024)} kB)`,
  );
  log(`done in ${Date.now() - t0} ms`);
  return { version: pkg.version, out, nodeRed, n8n, manifest };
}

module.exports = { pack, checkRequires };

if (require.main === module) {
  const args = process.argv.slice(2);
  const outAt = args.indexOf('--out');
  try {
    pack({ out: outAt >= 0 ? args[outAt + 1] : undefined, build: !args.includes('--no-build') });
  } catch (err) {
    console.error(`[pack] failed: ${err.message}`);
    process.exit(1);
  }
}
