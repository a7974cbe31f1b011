#!/usr/bin/env node
// README pictures of the Node-RED side, taken from the real editor in headless Chromium:
//
//   npm run screenshots            (after `npm run build`)
//   node scripts/screenshots.js [--out docs/img] [--n8n]
//
// writes <out>/
//   nr-<example>.png              every examples/*.json flow, laid out as it imports (the all-in-one
//                                 demo after its start-up run, with its status badges)
//   nr-debug-verified-rejected.png the debug sidebar after "publish sample CTI" and "tamper in
//                                 transit": VERIFIED objects and the REJECTED one (status mismatch)
//   nr-taxii-server-dialog.png    the taxii-server edit dialog with its help
// --n8n also runs scripts/n8n-screenshots.js (n8n-*.png; installs n8n 2.40.7 on first use, minutes).
//
// How: `npm run demo`'s script (dist/scripts/demo.js, or the build in SETS_BUILD_OUT) in a child
// process — its own hardhat chain, RabbitMQ if one is found else the in-process broker — then
// Chromium (/usr/bin/chromium or SETS_CHROMIUM, driven by playwright-core) with the helpers of the
// browser tests (test/browser/support.js). The other examples are imported into the same editor
// (not deployed). The run is bounded (SETS_SCREENSHOTS_TIMEOUT_MS, default 5 min).
/* global document, clearTimeout -- document only inside page.evaluate callbacks run by Chromium */
'use strict';
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const build = path.resolve(process.env.SETS_BUILD_OUT || path.join(root, 'dist'));
const args = process.argv.slice(2);
const outArg = args.indexOf('--out');
const OUT = path.resolve(outArg >= 0 ? args[outArg + 1] : path.join(root, 'docs', 'img'));
const TIMEOUT_MS = Number(process.env.SETS_SCREENSHOTS_TIMEOUT_MS || 300_000);
const T0 = Date.now();

function log(s) {
  process.stderr.write(`[screenshots +${((Date.now() - T0) / 1000).toFixed(1)}s] ${s}\n`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, fn, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Hides the palette and the sidebar, then zooms out until the active tab's nodes fit; returns their clip on screen. */
async function frameFlow(ed) {
  const page = ed.page;
  await page.evaluate(() => {
    const RED = globalThis.RED;
    RED.menu.setSelected('menu-item-palette', false);
    RED.menu.setSelected('menu-item-sidebar', false);
    RED.actions.invoke('core:zoom-reset');
  });
  await ed.settle(500);
  // the active tab's nodes in flow coordinates, padded for badges (below/right) and inject buttons (left)
  const content = await page.evaluate(() => {
    const RED = globalThis.RED;
    const z = RED.workspaces.active();
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    RED.nodes.eachNode((n) => {
      if (n.z !== z) return;
      const w = n.w || 120;
      const h = n.h || 30;
      minX = Math.min(minX, n.x - w / 2);
      maxX = Math.max(maxX, n.x + w / 2);
      minY = Math.min(minY, n.y - h / 2);
      maxY = Math.max(maxY, n.y + h / 2);
    });
    const chart = document.getElementById('red-ui-workspace-chart');
    return { x: minX - 40, y: minY - 20, w: maxX - minX + 40 + 200, h: maxY - minY + 20 + 40, cw: chart.clientWidth, ch: chart.clientHeight };
  });
  const target = Math.min(1, content.cw / content.w, content.ch / content.h);
  for (let i = 0; i < 10 && (await page.evaluate(() => globalThis.RED.view.scale())) > target + 1e-6; i++) {
    await page.evaluate(() => globalThis.RED.actions.invoke('core:zoom-out'));
    await ed.settle(200);
  }
  const clip = await page.evaluate((c) => {
    const s = globalThis.RED.view.scale();
    const chart = document.getElementById('red-ui-workspace-chart');
    chart.scrollLeft = Math.max(0, c.x * s);
    chart.scrollTop = Math.max(0, c.y * s);
    const r = chart.getBoundingClientRect();
    const x = r.left + c.x * s - chart.scrollLeft;
    const y = r.top + c.y * s - chart.scrollTop;
    return { x: Math.floor(Math.max(r.left, x)), y: Math.floor(Math.max(r.top, y)), width: Math.ceil(Math.min(c.w * s, chart.clientWidth)), height: Math.ceil(Math.min(c.h * s, chart.clientHeight)) };
  }, content);
  await ed.settle(300);
  return clip;
}

async function main() {
  for (const f of ['scripts/demo.js', 'test/browser/support.js', 'test/support/node-red.js']) {
    if (!fs.existsSync(path.join(build, f))) throw new Error(`${path.join(build, f)} missing: run npm run build first`);
  }
  const { EditorSession, launchBrowser } = require(path.join(build, 'test', 'browser', 'support.js'));
  fs.mkdirSync(OUT, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-screenshots-'));
  const port = await freePort();
  log(`starting the demo on port ${port}`);
  const env = { ...process.env, SETS_DEMO_DIR: dir, SETS_DEMO_PORT: String(port) };
  delete env.SETS_DEMO_EXIT_AFTER;
  const demo = spawn(process.execPath, [path.join(build, 'scripts', 'demo.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  demo.stdout.on('data', (d) => (out += d.toString()));
  demo.stderr.on('data', (d) => (out += d.toString()));
  let browser;
  const timer = setTimeout(() => {
    log(`timed out after ${TIMEOUT_MS} ms; demo output:\n${out.slice(-3000)}`);
    demo.kill('SIGKILL');
    process.exit(1);
  }, TIMEOUT_MS);
  try {
    await until('the demo starting', () => /Node-RED editor:/.test(out) || demo.exitCode !== null, 120_000);
    if (demo.exitCode !== null) throw new Error(`the demo exited:\n${out.slice(-3000)}`);
    const url = `http://127.0.0.1:${port}/`;
    browser = await launchBrowser();
    const ed = await EditorSession.open(browser, url, { width: 1700, height: 1400 });
    log('waiting for the start-up run (published, tampered in transit, insider caught)');
    // the start-up run ends with the server marking the insider's version invalid (console debug output)
    await until('the start-up run', () => /origin: 'inquiry',\s*status: 'invalid'/.test(out), 120_000);
    await ed.settle(2000);

    // 1. the debug sidebar: a verified run and a rejected one
    await ed.page.setViewportSize({ width: 1600, height: 1000 });
    await ed.clearDebug();
    await ed.pressInject('inj-transit');
    await ed.waitForDebug((m) => m.some((x) => x.name === 'REJECTED'), 'REJECTED');
    await ed.pressInject('inj-pub');
    await ed.waitForDebug((m) => m.filter((x) => x.name === 'VERIFIED').length >= 3, 'VERIFIED x3');
    await ed.settle(1500);
    // open the REJECTED message's content, as a user would to see why
    const rejected = ed.page.locator('.red-ui-debug-msg', { has: ed.page.locator('.red-ui-debug-msg-name', { hasText: 'REJECTED' }) }).last();
    await rejected.locator('.red-ui-debug-msg-object-handle').first().click();
    await ed.settle(500);
    // the REJECTED message opened at the top, the VERIFIED ones below it
    await rejected.evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await ed.page.mouse.move(700, 500);
    await ed.red((RED) => RED.view.reveal && RED.view.reveal('verify-sub', false), null);
    await ed.settle(800);
    const sidebar = await ed.page.locator('#red-ui-sidebar').boundingBox();
    const sideClip = { x: Math.max(0, sidebar.x - 760), y: 40, width: sidebar.width + 760, height: 1000 - 40 - 2 };
    await ed.page.screenshot({ path: path.join(OUT, 'nr-debug-verified-rejected.png'), clip: sideClip });
    log('nr-debug-verified-rejected.png');

    // 2. the taxii-server dialog with its help
    await ed.openNode('srv');
    await ed.helpText();
    await ed.page.mouse.move(900, 300);
    await ed.settle(800);
    await ed.page.screenshot({ path: path.join(OUT, 'nr-taxii-server-dialog.png') });
    await ed.cancel();
    log('nr-taxii-server-dialog.png');

    // 3. every example flow: the demo as it runs, the others imported beside it
    await ed.page.setViewportSize({ width: 1700, height: 1400 });
    // the imported (not deployed) examples would carry the editor's blue "changed" dots
    await ed.page.addStyleTag({ content: '.red-ui-flow-node-changed { display: none !important; }' });
    const examples = fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.json')).sort();
    for (const f of examples) {
      const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', f), 'utf8'));
      const tab = flow.find((n) => n.type === 'tab');
      const present = await ed.red((RED, id) => Boolean(RED.nodes.workspace && RED.nodes.workspace(id)), tab.id);
      if (!present) await ed.importFlow(flow);
      await ed.showTab(tab.id);
      const clip = await frameFlow(ed);
      const file = `nr-${f.replace(/^sets-/, '').replace(/\.json$/, '')}.png`;
      await ed.page.screenshot({ path: path.join(OUT, file), clip });
      log(`${file} (${clip.width}x${clip.height})`);
    }
    const errors = ed.errors.filter((e) => !/catalogue\.nodered\.org/.test(e));
    if (errors.length) throw new Error(`the editor reported errors:\n${errors.join('\n')}`);
  } finally {
    clearTimeout(timer);
    if (browser) await browser.close();
    if (demo.exitCode === null) {
      demo.kill('SIGTERM');
      await new Promise((r) => demo.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (args.includes('--n8n')) {
    log('n8n pictures: scripts/n8n-screenshots.js');
    const r = spawnSync(process.execPath, [path.join(__dirname, 'n8n-screenshots.js'), '--out', OUT], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`n8n-screenshots.js exited ${r.status}`);
  }
  log(`done: pictures in ${OUT}`);
}

main().catch((err) => {
  process.stderr.write(`[screenshots] failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
