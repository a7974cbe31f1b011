#!/usr/bin/env node
// Pictures of every example n8n workflow (flows/*.json), taken from the real n8n editor in headless
// Chromium, for README:
//
//   node scripts/n8n-screenshots.js [--out docs/img] [--keep]
//
// writes <out>/n8n-<flow file basename>.png (1400×800) for every flows/*.json present at run time.
//
// What it does, with the helpers of scripts/n8n-app.js (n8n 2.40.7 on Node 24, installed in
// .cache/n8n-app by `node scripts/n8n-app.js install`):
//   1. a fresh temp N8N_USER_FOLDER; the packed community package .cache/pack/n8n-nodes-sets-*.tgz
//      (built with `node scripts/pack.js` if missing) installed the way n8n installs one;
//   2. every flows/*.json imported with `n8n import:workflow`;
//   3. `n8n start` on a free loopback port (task-broker port free too), telemetry, version
//      notifications, "what's new", templates, personalization survey, dynamic banners and AI off;
//   4. the owner account set up with `POST /rest/owner/setup`, then signed in through the editor's
//      own sign-in form in Chromium (/usr/bin/chromium driven by playwright-core);
//   5. each workflow opened at /workflow/<id>; waits until every node is on the canvas, checks that
//      n8n knows every node type (an unknown type is drawn as a "?" node: reported and the run
//      fails), clicks "Zoom to fit", hides toasts and floating panels, and saves the PNG.
// n8n is stopped and the temp folder removed at the end (--keep leaves the folder for a look).
// The whole run is bounded (SETS_SCREENSHOTS_TIMEOUT_MS, default 5 min); it fails with a message.
/* global clearTimeout, fetch, URL, document -- Node 20+ globals; document only inside page.evaluate callbacks run by Chromium */
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const app = require('./n8n-app');

const root = path.resolve(__dirname, '..');
const CHROMIUM = process.env.SETS_CHROMIUM || '/usr/bin/chromium';
const VIEWPORT = { width: 1400, height: 800 };
const TIMEOUT_MS = Number(process.env.SETS_SCREENSHOTS_TIMEOUT_MS || 300_000);
const OWNER = { email: 'owner@sets.example', firstName: 'SETS', lastName: 'Example', password: 'SetsExample-2026' };

const T0 = Date.now();
function log(s) {
  process.stderr.write(`[n8n-screenshots +${((Date.now() - T0) / 1000).toFixed(1)}s] ${s}\n`);
}

function args() {
  const a = process.argv.slice(2);
  const out = a.includes('--out') ? a[a.indexOf('--out') + 1] : path.join(root, 'docs', 'img');
  return { out: path.resolve(out), keep: a.includes('--keep') };
}

/** The n8n tarball; packs it (build included) only when there is none. */
function tarball() {
  const dir = path.join(root, '.cache', 'pack');
  const find = () => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^n8n-nodes-sets-.*\.tgz$/.test(f)).sort() : []);
  let found = find();
  if (found.length === 0) {
    log('no .cache/pack/n8n-nodes-sets-*.tgz: running node scripts/pack.js');
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'pack.js')], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`node scripts/pack.js failed (exit ${r.status})`);
    found = find();
    if (found.length === 0) throw new Error('node scripts/pack.js wrote no n8n-nodes-sets-*.tgz');
  }
  return path.join(dir, found[found.length - 1]);
}

/** Every flows/*.json as { file, base, workflow }. */
function flows() {
  const dir = path.join(root, 'flows');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const workflow = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      if (Array.isArray(workflow) || !Array.isArray(workflow.nodes)) throw new Error(`flows/${f}: not one n8n workflow (no "nodes" array)`);
      return { file: f, base: path.basename(f, '.json'), workflow };
    });
}

let cleanup = async () => undefined;

/** Rejects after ms with message, unless the promise settles first. */
function within(promise, ms, message) {
  let t;
  return Promise.race([promise, new Promise((_, reject) => (t = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(t));
}

// Injected before each picture: no toasts, no floating help/AI/chat buttons, no banners over the canvas.
const HIDE_CSS = `
  .el-notification, .el-message, [data-test-id="toast"], [role="alert"].el-notification { display: none !important; }
  [data-test-id="ask-assistant-floating-button"], [data-test-id="ask-assistant-button"],
  [data-test-id="canvas-chat-button"], [data-test-id="banners"], .n8n-banner,
  [data-test-id="whats-new-notification"], [data-test-id="workflow-suggestions"] { display: none !important; }
  /* the floating "Execute workflow" button sits over the bottom of the fitted canvas */
  [data-test-id="execute-workflow-button"] { visibility: hidden !important; }
  *, *::before, *::after { caret-color: transparent !important; }
`;

async function signIn(page, url, firstWorkflowName) {
  await page.goto(`${url}/signin`, { waitUntil: 'domcontentloaded' });
  const email = page.locator('input[name="emailOrLdapLoginId"], input[type="email"]').first();
  await email.waitFor({ timeout: 30_000 });
  await email.fill(OWNER.email);
  await page.locator('input[name="password"], input[type="password"]').first().fill(OWNER.password);
  await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/rest/login') && r.request().method() === 'POST', { timeout: 30_000 }),
    page.locator('[data-test-id="form-submit-button"], button[type="submit"]').first().click(),
  ]).then(async ([res]) => {
    if (!res.ok()) throw new Error(`sign-in failed: POST /rest/login answered ${res.status()} ${await res.text()}`);
  });
  // settled on the overview (the redirect after sign-in done), with the imported workflows listed
  await page.waitForURL((u) => u.pathname.startsWith('/home'), { timeout: 60_000 });
  await page.getByText(firstWorkflowName, { exact: true }).first().waitFor({ timeout: 60_000 });
}

/**
 * Opens one workflow, checks its nodes, fits it into view and saves the picture.
 * Returns { file, bytes, nodes, unknown, issues }.
 */
async function picture(page, url, flow, outFile, knownTypes) {
  const { workflow } = flow;
  const target = `/workflow/${workflow.id}`;
  // inside the running editor, go through its own router (a full reload of the editor costs ~20 s here)
  const routed = await page
    .evaluate((to) => {
      const router = document.querySelector('#app')?.__vue_app__?.config?.globalProperties?.$router;
      if (!router) return false;
      return router.push(to).then(() => true, () => false);
    }, target)
    .catch(() => false);
  const arrived = routed && (await page.waitForURL((u) => u.pathname === target, { timeout: 10_000 }).then(() => true, () => false));
  if (!arrived) await page.goto(`${url}${target}`, { waitUntil: 'domcontentloaded' });
  const nodeSel = '[data-node-name][data-node-type]'; // every canvas node, sticky notes included
  const names = workflow.nodes.map((n) => n.name);
  try {
    await page.waitForFunction(
      ({ sel, names }) => {
        const shown = new Set([...document.querySelectorAll(sel)].map((el) => el.getAttribute('data-node-name')));
        return shown.size === names.length && names.every((n) => shown.has(n));
      },
      { sel: nodeSel, names },
      { timeout: 60_000 },
    );
  } catch {
    const shot = path.join(require('os').tmpdir(), `n8n-screenshots-failed-${flow.base}.png`);
    await page.screenshot({ path: shot }).catch(() => undefined);
    const seen = await page.locator(nodeSel).count().catch(() => '?');
    throw new Error(`${flow.file}: ${seen} of ${names.length} nodes on the canvas of ${page.url()} after 60 s (picture of the page: ${shot})`);
  }
  const unknown = [...new Set(workflow.nodes.map((n) => n.type))].filter((t) => !knownTypes.has(t));
  // nodes the canvas marks with issues (the red warning triangle: missing credentials, bad parameters)
  const issues = await page.evaluate(() =>
    [...document.querySelectorAll('[data-node-name][data-node-type]')]
      .filter((el) => el.querySelector('[data-test-id="node-issues"]'))
      .map((el) => el.getAttribute('data-node-name')),
  );
  await page.addStyleTag({ content: HIDE_CSS });
  await page.mouse.move(VIEWPORT.width - 5, VIEWPORT.height / 2); // no hover toolbar on a node
  const fit = page.locator('[data-test-id="zoom-to-fit"]');
  if (await fit.count()) await fit.first().click();
  else await page.keyboard.press('1');
  await page.mouse.move(VIEWPORT.width - 5, VIEWPORT.height / 2);
  await page.waitForTimeout(800); // the fit-view transition
  await page.screenshot({ path: outFile, type: 'png' });
  return { file: outFile, bytes: fs.statSync(outFile).size, nodes: names.length, unknown, issues };
}

async function main() {
  const t0 = Date.now();
  const { out, keep } = args();
  if (!app.isInstalled()) throw new Error(`n8n ${app.N8N_VERSION} is not installed: run node scripts/n8n-app.js install`);
  const tgz = tarball();
  const list = flows();
  if (list.length === 0) throw new Error('flows/ holds no *.json workflow');
  const ids = new Set();
  for (const f of list) {
    f.workflow = { ...f.workflow, id: f.workflow.id || app.n8nId() };
    if (ids.has(f.workflow.id)) throw new Error(`flows/${f.file}: workflow id ${f.workflow.id} is used by another file`);
    ids.add(f.workflow.id);
  }
  fs.mkdirSync(out, { recursive: true });

  const inst = await app.createInstance({
    logLevel: 'warn',
    env: {
      N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENABLED: 'false',
      N8N_DYNAMIC_BANNERS_ENABLED: 'false',
      N8N_AI_ENABLED: 'false',
      N8N_DEFAULT_LOCALE: 'en',
    },
  });
  let server;
  let browser;
  const results = [];
  let cleaned;
  // also run by the time limit below: close Chromium, stop n8n, remove the temp folder (once)
  cleanup = () =>
    (cleaned ??= (async () => {
      if (browser) await browser.close().catch(() => undefined);
      if (server) await server.stop().catch((e) => log(`stopping n8n: ${e.message}`));
      if (keep) log(`kept ${inst.userFolder}`);
      else inst.dispose();
    })());
  try {
    const pkg = await inst.installPackage(tgz);
    log(`installed ${pkg.name}@${pkg.version} from ${path.relative(root, tgz)} in ${pkg.ms} ms`);
    await inst.importWorkflows(list.map((f) => f.workflow));
    log(`imported ${list.length} workflows: ${list.map((f) => f.file).join(', ')}`);
    server = await inst.start({ timeoutMs: 120_000 });
    log(`n8n ${app.N8N_VERSION} serving ${server.url} (ready in ${server.startMs} ms)`);
    if (!/Loaded all credentials and nodes from n8n-nodes-sets|n8n-nodes-sets/.test(server.output()) && /Failed to load package/.test(server.output())) {
      log(`warning: n8n logged a package load failure:\n${server.output().slice(-2000)}`);
    }

    const setup = await fetch(`${server.url}/rest/owner/setup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(OWNER),
    });
    if (!setup.ok) throw new Error(`POST /rest/owner/setup answered ${setup.status}: ${await setup.text()}`);

    const { chromium } = require('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1, locale: 'en-US', colorScheme: 'light' });
    const blocked = new Set();
    // only the loopback n8n: anything else (fonts, CDNs, telemetry) is refused at once
    await context.route(
      (u) => !u.href.startsWith(server.url) && !u.protocol.startsWith('data') && !u.protocol.startsWith('blob'),
      (r) => {
        blocked.add(new URL(r.request().url()).host);
        return r.abort();
      },
    );
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e.message || e)));
    await signIn(page, server.url, list[0].workflow.name);
    log('signed in through the editor form');
    // every node type this n8n knows (what the editor loads; an unknown one is drawn as "?")
    const knownTypes = new Set(
      await page.evaluate(async () => {
        const res = await fetch('/types/nodes.json', { credentials: 'include' });
        if (!res.ok) throw new Error(`GET /types/nodes.json answered ${res.status}`);
        return (await res.json()).map((t) => t.name);
      }),
    );
    const ours = [...knownTypes].filter((t) => t.startsWith('n8n-nodes-sets.'));
    log(`n8n knows ${knownTypes.size} node types, ${ours.length} of ours: ${ours.join(', ')}`);

    for (const f of list) {
      const file = path.join(out, `n8n-${f.base}.png`);
      const r = await picture(page, server.url, f, file, knownTypes);
      results.push({ flow: f.file, ...r });
      log(
        `${path.relative(root, file)}: ${r.nodes} nodes, ${(r.bytes / 1024).toFixed(0)} kB` +
          (r.unknown.length ? `, UNKNOWN node types: ${r.unknown.join(', ')}` : '') +
          (r.issues.length ? `, nodes with issues: ${r.issues.join('; ')}` : ''),
      );
    }
    if (blocked.size) log(`refused requests to: ${[...blocked].join(', ')}`);
    if (pageErrors.length) log(`page errors (${pageErrors.length}): ${[...new Set(pageErrors)].slice(0, 5).join(' | ')}`);
  } finally {
    await cleanup();
  }
  const unknown = results.filter((r) => r.unknown.length);
  log(`done: ${results.length} pictures in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (unknown.length) {
    throw new Error(`n8n does not know node types used by ${unknown.map((r) => `${r.flow} (${r.unknown.join(', ')})`).join('; ')}`);
  }
  return results;
}

if (require.main === module) {
  within(main(), TIMEOUT_MS, `n8n screenshots did not finish within ${TIMEOUT_MS / 1000} s`).then(
    () => process.exit(0),
    async (e) => {
      log(`error: ${e.message}`);
      await within(cleanup(), 30_000, 'cleanup timed out').catch((c) => log(c.message));
      process.exit(1); // n8n-app also kills the n8n process group on exit
    },
  );
}

module.exports = { main };
