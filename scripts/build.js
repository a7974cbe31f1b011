#!/usr/bin/env node
// Build: compile the Solidity registry with solc-js (offline, evmVersion paris), compile the
// TypeScript sources to CommonJS under dist/, and copy the Node-RED editor assets beside the
// compiled node files (Node-RED looks for <node>.html, icons/ and locales/ next to the .js file).
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
// SETS_BUILD_OUT lets parallel work build into its own folder; SETS_BUILD_LENIENT=1 keeps going
// past type errors in files one is not working on (tsc still emits). CI uses neither.
const dist = path.resolve(process.env.SETS_BUILD_OUT || path.join(root, 'dist'));

function compileContracts() {
  const solc = require('solc');
  const srcDir = path.join(root, 'contracts', 'evm');
  const outDir = path.join(dist, 'contracts', 'evm');
  fs.mkdirSync(outDir, { recursive: true });
  const sources = {};
  for (const f of fs.readdirSync(srcDir).filter((n) => n.endsWith('.sol'))) {
    sources[f] = { content: fs.readFileSync(path.join(srcDir, f), 'utf8') };
  }
  if (Object.keys(sources).length === 0) return;
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      // paris: no PUSH0, so the bytecode deploys on GoQuorum and older Besu genesis files.
      evmVersion: 'paris',
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors || []).filter((e) => e.severity === 'error');
  for (const e of out.errors || []) console.error(e.formattedMessage);
  if (errors.length) throw new Error('solc failed');
  for (const [file, contracts] of Object.entries(out.contracts)) {
    for (const [name, c] of Object.entries(contracts)) {
      const artifact = {
        contractName: name,
        sourceName: file,
        compiler: { solc: solc.version(), evmVersion: 'paris' },
        abi: c.abi,
        bytecode: '0x' + c.evm.bytecode.object,
        deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      };
      fs.writeFileSync(path.join(outDir, name + '.json'), JSON.stringify(artifact, null, 2));
    }
  }
}

function compileTs() {
  const tsc = require.resolve('typescript/bin/tsc');
  try {
    const args = [tsc, '-p', path.join(root, 'tsconfig.json'), '--outDir', dist];
    // parallel work rebuilds its own folder often: let tsc reuse what did not change there
    if (process.env.SETS_BUILD_OUT) args.push('--incremental', '--tsBuildInfoFile', path.join(dist, '.tsbuildinfo'));
    execFileSync(process.execPath, args, { stdio: 'inherit' });
  } catch (err) {
    if (process.env.SETS_BUILD_LENIENT !== '1') throw err;
    console.error('build: type errors (SETS_BUILD_LENIENT=1, continuing)');
  }
}

function copyAssets(dir) {
  const src = path.join(root, dir);
  if (!fs.existsSync(src)) return;
  const walk = (rel) => {
    for (const ent of fs.readdirSync(path.join(src, rel), { withFileTypes: true })) {
      const r = path.join(rel, ent.name);
      if (ent.isDirectory()) walk(r);
      else if (!/\.ts$/.test(ent.name)) {
        const to = path.join(dist, dir, r);
        fs.mkdirSync(path.dirname(to), { recursive: true });
        fs.copyFileSync(path.join(src, r), to);
      }
    }
  };
  walk('');
}

const t0 = Date.now();
compileContracts();
compileTs();
copyAssets('nodes');
copyAssets('credentials');
copyAssets('test/fixtures');
console.log(`build: done in ${Date.now() - t0} ms`);
