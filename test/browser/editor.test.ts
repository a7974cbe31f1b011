/**
 * The real Node-RED editor, in headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core): our palette, every edit dialog of our node and config types opening and saving
 * without a JavaScript error, and the all-in-one example importing and deploying.
 *
 * Node-RED runs embedded (test/support/node-red.ts) with this package symlinked into its user dir,
 * so it loads the built nodes from the repository's dist/ — run `npm run build` first.
 * Set SETS_EDITOR_SCREENSHOT to change where the screenshot of the example flow goes.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { repoRoot, startNodeRed, type NodeRedHandle } from '../support/node-red';

const CHROMIUM = process.env.SETS_CHROMIUM ?? '/usr/bin/chromium';
const OUR_TYPES = [
  'anchor-hash',
  'verify-hash',
  'taxii-publish',
  'taxii-inquire',
  'rabbit-subscribe',
  'rabbit-publish',
  'rabbit-ack',
  'taxii-server',
  'integrity-status',
];
const CONFIG_TYPES = ['sets-ledger', 'sets-broker', 'sets-taxii', 'sets-store'];
const EXAMPLE = path.join(repoRoot(), 'examples', 'sets-all-in-one-demo.json');
/** the example's nodes get this id prefix in the copy the dialog tests edit */
const COPY = 'dlg-';

interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
}

/** The part of the editor's global `RED` these tests use. */
interface EditorRed {
  nodes: {
    node(id: string): Record<string, unknown> | null;
    createCompleteNodeSet(opts: { credentials: boolean }): FlowNode[];
  };
  view: { importNodes(nodes: FlowNode[], opts: Record<string, unknown>): void };
  editor: { edit(node: unknown): void; editConfig(name: string, type: string, id: string): void };
  workspaces: { show(id: string): void };
}

function exampleFlow(): FlowNode[] {
  return JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
}

/** The example with every id (and every reference to one) prefixed, under its own tab label. */
function exampleCopy(): FlowNode[] {
  let text = fs.readFileSync(EXAMPLE, 'utf8');
  for (const n of exampleFlow()) text = text.split(JSON.stringify(n.id)).join(JSON.stringify(COPY + n.id));
  const copy = JSON.parse(text) as FlowNode[];
  for (const n of copy) if (n.type === 'tab') n.label = 'dialogs';
  return copy;
}

describe('Node-RED editor (headless Chromium)', function () {
  this.timeout(60_000);
  let nr: NodeRedHandle;
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];

  async function importFlow(flow: FlowNode[]): Promise<void> {
    await page.evaluate((nodes) => {
      const RED = (globalThis as unknown as { RED: EditorRed }).RED;
      RED.view.importNodes(nodes, { addFlow: false, generateIds: false, notify: false });
    }, flow);
  }

  /** The open dialog shows our template's inputs, with every label translated (no raw i18n key). */
  async function checkForm(form: string, prefix: string): Promise<void> {
    const { inputs, text } = await page.locator(form).evaluate(
      (el, p) => ({ inputs: el.querySelectorAll(`[id^="${p}"]`).length, text: (el as unknown as { innerText: string }).innerText }),
      prefix,
    );
    assert.ok(inputs > 0, `the dialog ${form} has no ${prefix}* inputs: ${text}`);
    const raw = /\b[a-z-]+\.(label|placeholder|tip)\.[A-Za-z]+/.exec(text);
    assert.equal(raw, null, `untranslated label in the dialog: ${raw?.[0]}`);
  }

  /** Opens the edit dialog of a flow node, clicks Done and waits for the tray to close. */
  async function editAndSave(id: string, fill?: (p: Page) => Promise<void>): Promise<void> {
    await page.evaluate((nodeId) => {
      const RED = (globalThis as unknown as { RED: EditorRed }).RED;
      const n = RED.nodes.node(nodeId);
      if (!n) throw new Error(`no node ${nodeId} in the editor`);
      RED.editor.edit(n);
    }, id);
    const done = page.locator('#node-dialog-ok');
    await done.waitFor({ state: 'visible', timeout: 10_000 });
    await checkForm('#dialog-form', 'node-input-');
    if (fill) await fill(page);
    await done.click({ timeout: 10_000 });
    await done.waitFor({ state: 'detached', timeout: 10_000 });
  }

  before(async function () {
    nr = await startNodeRed();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.on('pageerror', (err) => errors.push(`pageerror: ${err.stack ?? err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(`console.error: ${msg.text()} (${msg.location().url})`);
    });
    await page.goto(nr.url, { waitUntil: 'load', timeout: 30_000 });
    await page.locator('.red-ui-palette-node[data-palette-type="anchor-hash"]').waitFor({ state: 'attached', timeout: 30_000 });
  });

  after(async function () {
    await browser?.close();
    await nr?.stop();
  });

  it('shows our node types in the SETS palette category', async function () {
    const inSets = await page
      .locator('#red-ui-palette-container-SETS .red-ui-palette-node')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-palette-type')));
    for (const t of OUR_TYPES) assert.ok(inSets.includes(t), `palette category SETS lacks ${t}; it has ${inSets.join(', ')}`);
    const header = await page.locator('#red-ui-palette-header-SETS').innerText();
    assert.equal(header.trim(), 'SETS');
  });

  it('opens and saves the edit dialog of every node and config type without a JavaScript error', async function () {
    const copy = exampleCopy();
    await importFlow(copy);
    for (const type of OUR_TYPES) {
      const n = copy.find((x) => x.type === type);
      assert.ok(n, `the example has no ${type} node`);
      await editAndSave(n.id);
    }
    for (const type of CONFIG_TYPES) {
      const n = copy.find((x) => x.type === type);
      assert.ok(n, `the example has no ${type} config node`);
      await page.evaluate(([t, id]) => (globalThis as unknown as { RED: EditorRed }).RED.editor.editConfig('', t, id), [type, n.id] as const);
      const done = page.locator('#node-config-dialog-ok');
      await done.waitFor({ state: 'visible', timeout: 10_000 });
      await checkForm('#node-config-dialog-edit-form', 'node-config-input-');
      await done.click();
      await done.waitFor({ state: 'detached', timeout: 10_000 });
    }
    assert.deepEqual(errors, []);
  });

  it('saves what is typed into the anchor-hash dialog', async function () {
    const id = COPY + 'anchor';
    const collection = 'b1e2c3d4-0000-4000-8000-editor-test';
    const before = await page.evaluate((nodeId) => (globalThis as unknown as { RED: EditorRed }).RED.nodes.node(nodeId)?.collection, id);
    assert.notEqual(before, collection);
    await editAndSave(id, async (p) => {
      await p.locator('#node-input-collection').fill(collection);
    });
    const after = await page.evaluate((nodeId) => (globalThis as unknown as { RED: EditorRed }).RED.nodes.node(nodeId)?.collection, id);
    assert.equal(after, collection);
    assert.deepEqual(errors, []);
  });

  it('imports the all-in-one example and deploys it through the admin API', async function () {
    const flow = exampleFlow();
    await importFlow(flow);
    const ids = new Set(flow.map((n) => n.id));
    // What the editor made of the import — the example's nodes only, not the dialog copy.
    const exported = (await page.evaluate(() => (globalThis as unknown as { RED: EditorRed }).RED.nodes.createCompleteNodeSet({ credentials: false }))).filter((n) =>
      ids.has(n.id),
    );
    assert.deepEqual(exported.map((n) => n.id).sort(), [...ids].sort());
    const res = await fetch(new URL('flows', nr.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(exported),
      signal: AbortSignal.timeout(20_000),
    });
    assert.ok(res.status === 200 || res.status === 204, `deploy answered ${res.status}: ${await res.text()}`);
    const deployed = (await (await fetch(new URL('flows', nr.url), { signal: AbortSignal.timeout(10_000) })).json()) as FlowNode[];
    assert.deepEqual(deployed.map((n) => n.id).sort(), [...ids].sort());

    await page.evaluate(() => (globalThis as unknown as { RED: EditorRed }).RED.workspaces.show('sets-aio'));
    await page.waitForTimeout(500);
    await page.screenshot({ path: process.env.SETS_EDITOR_SCREENSHOT ?? path.join(os.tmpdir(), 'sets-editor.png') });
    assert.deepEqual(errors, []);
  });
});
