/**
 * The real Node-RED editor, in headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core), as a new user meets it (issue 13): no prompt over the editor, our node types in
 * the SETS palette category and that category first; every edit dialog of our node and config
 * types opens without a JavaScript error, shows its help in the sidebar, marks an invalid value
 * (and Deploy warns about the node) and saves a valid one; every example imports through
 * Import › Examples alone, and all six in a row without a conflict dialog, and deploys.
 *
 * Node-RED runs embedded (test/support/node-red.ts) with this build installed in its user dir.
 * The demo's buttons are pressed by test/browser/demo-buttons.test.ts.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Browser } from 'playwright-core';
import { repoRoot, startNodeRed, type NodeRedHandle } from '../support/node-red';
import { CONFIG_TYPES, EditorSession, launchBrowser, OUR_TYPES, type FlowNode } from './support';

const EXAMPLES_DIR = path.join(repoRoot(), 'examples');
const EXAMPLES = fs
  .readdirSync(EXAMPLES_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.replace(/\.json$/, ''))
  .sort();
const EXAMPLE = path.join(EXAMPLES_DIR, 'sets-all-in-one-demo.json');
/** the example's nodes get this id prefix in the copy the dialog tests edit */
const COPY = 'dlg-';

function readFlow(name: string): FlowNode[] {
  return JSON.parse(fs.readFileSync(path.join(EXAMPLES_DIR, `${name}.json`), 'utf8')) as FlowNode[];
}

/** The all-in-one example with every id (and every reference to one: z, wires, config properties) prefixed, under its own tab label. */
function exampleCopy(): FlowNode[] {
  const flow = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
  const ids = new Set(flow.map((n) => n.id));
  const ref = (v: unknown): unknown => (typeof v === 'string' && ids.has(v) ? COPY + v : v);
  return flow.map((n) => {
    const c: FlowNode = { ...n, id: COPY + n.id };
    for (const [k, v] of Object.entries(n)) {
      if (k === 'id' || k === 'type' || k === 'name') continue;
      if (k === 'wires') c.wires = (v as string[][]).map((port) => port.map((to) => COPY + to));
      else c[k] = ref(v);
    }
    if (n.type === 'tab') c.label = 'dialogs';
    return c;
  });
}

describe('Node-RED editor (headless Chromium)', function () {
  this.timeout(120_000);
  let nr: NodeRedHandle;
  let browser: Browser;
  let ed: EditorSession;

  /** The open dialog shows our template's inputs, with every label translated (no raw i18n key). */
  async function checkForm(form: string, prefix: string): Promise<void> {
    const { inputs, text } = await ed.page.locator(form).evaluate(
      (el, p) => ({ inputs: el.querySelectorAll(`[id^="${p}"]`).length, text: (el as unknown as { innerText: string }).innerText }),
      prefix,
    );
    assert.ok(inputs > 0, `the dialog ${form} has no ${prefix}* inputs: ${text}`);
    const raw = /\b[a-z-]+\.(label|placeholder|tip)\.[A-Za-z]+/.exec(text);
    assert.equal(raw, null, `untranslated label in the dialog: ${raw?.[0]}`);
  }

  /**
   * A text input of the open dialog whose `defaults` validator refuses one of a few bad values:
   * { prop, bad } — found in the page from the node type's own definition.
   */
  async function refusedValue(type: string, id: string, prefix: string): Promise<{ prop: string; bad: string } | null> {
    return ed.page.evaluate(
      ({ t, nodeId, p }) => {
        type Def = { defaults: Record<string, { validate?: (this: unknown, v: unknown, opt?: unknown) => unknown }> };
        const RED = (globalThis as unknown as { RED: { nodes: { getType(t: string): Def; node(id: string): unknown } } }).RED;
        const def = RED.nodes.getType(t);
        const node = RED.nodes.node(nodeId);
        for (const [prop, d] of Object.entries(def.defaults)) {
          if (typeof d.validate !== 'function') continue;
          const input = document.getElementById(p + prop) as HTMLInputElement | null;
          // plain visible text/number inputs only (typedInputs, selects and lists have their own widgets)
          if (!input || input.tagName !== 'INPUT' || !['text', 'number', ''].includes(input.type) || input.offsetParent === null) continue;
          if (input.classList.contains('red-ui-typedInput') || input.style.display === 'none') continue;
          for (const bad of input.type === 'number' ? ['-1', '0', '99999999999'] : ['not valid !', '-1', '']) {
            let ok: unknown;
            try {
              ok = d.validate.call(node, bad, {});
            } catch {
              ok = false;
            }
            if (ok === false || typeof ok === 'string') return { prop, bad };
          }
        }
        return null;
      },
      { t: type, nodeId: id, p: prefix },
    );
  }

  before(async function () {
    nr = await startNodeRed();
    browser = await launchBrowser();
    ed = await EditorSession.open(browser, nr.url);
  });

  after(async function () {
    await browser?.close();
    await nr?.stop();
  });

  it('opens with no prompt over the editor, and our node types in the SETS category, first in the palette', async function () {
    await ed.settle(1500);
    const popovers = await ed.page.locator('.red-ui-popover:visible, .ui-dialog:visible').allInnerTexts();
    assert.deepEqual(popovers, [], 'something covers the editor on first load');
    const inSets = await ed.page
      .locator('#red-ui-palette-container-SETS .red-ui-palette-node')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-palette-type')));
    for (const t of OUR_TYPES) assert.ok(inSets.includes(t), `palette category SETS lacks ${t}; it has ${inSets.join(', ')}`);
    assert.equal((await ed.page.locator('#red-ui-palette-header-SETS').innerText()).trim(), 'SETS');
    const categories = await ed.page.locator('#red-ui-palette-container > .red-ui-palette-category').evaluateAll((els) => els.map((e) => e.id));
    assert.equal(categories[0], 'red-ui-palette-container-SETS', `palette order: ${categories.join(', ')}`);
  });

  it('opens every dialog of ours with its help in the sidebar, marks an invalid value, and saves a valid one', async function () {
    const copy = exampleCopy();
    await ed.importFlow(copy);
    const refused: string[] = [];
    for (const type of [...OUR_TYPES, ...CONFIG_TYPES]) {
      const n = copy.find((x) => x.type === type);
      assert.ok(n, `the example has no ${type} node`);
      const config = (CONFIG_TYPES as readonly string[]).includes(type);
      const prefix = config ? 'node-config-input-' : 'node-input-';
      if (config) await ed.openConfig(type, n.id);
      else await ed.openNode(n.id);
      await checkForm(config ? '#node-config-dialog-edit-form' : '#dialog-form', prefix);
      // the help sidebar shows this type's help: core's layout starts with a paragraph, then Inputs/Outputs or Details
      const help = await ed.helpText();
      assert.ok(help.length > 200, `${type}: help too short or missing: ${help}`);
      assert.doesNotMatch(help, /\b[a-z-]+\.(label|tip|help)\.[A-Za-z]+\b/, `${type}: raw i18n key in the help`);
      assert.deepEqual(await ed.invalidInputs(), [], `${type}: the example's own values are marked invalid`);

      const bad = await refusedValue(type, n.id, prefix);
      if (bad) {
        const good = await ed.page.locator(`#${prefix}${bad.prop}`).inputValue();
        await ed.setValue(prefix + bad.prop, bad.bad);
        const marked = await ed.invalidInputs();
        assert.ok(marked.includes(`${prefix}${bad.prop}`), `${type}: "${bad.bad}" in ${bad.prop} is not marked invalid (marked: ${marked.join(', ')})`);
        await ed.setValue(prefix + bad.prop, good);
        assert.ok(!(await ed.invalidInputs()).includes(`${prefix}${bad.prop}`), `${type}: the valid value "${good}" stays marked invalid`);
        refused.push(`${type}.${bad.prop}`);
      }
      await ed.done();
      assert.ok(await ed.isValid(n.id), `${type}: the saved node is invalid`);
    }
    // the dialogs whose validators refuse a typed value: at least the collection ids and ports
    assert.ok(refused.length >= 5, `only ${refused.length} dialogs refused an invalid value: ${refused.join(', ')}`);
    assert.deepEqual(ed.errors, []);
  });

  it('saves what is typed into the anchor-hash dialog; an invalid collection id is refused and Deploy warns', async function () {
    const id = COPY + 'anchor';
    const collection = 'b1e2c3d4-0000-4000-8000-00000000e2e7';
    assert.notEqual(await ed.red((RED, nodeId) => RED.nodes.node(nodeId)?.collection, id), collection);
    await ed.openNode(id);
    await ed.setValue('node-input-collection', collection);
    await ed.done();
    assert.equal(await ed.red((RED, nodeId) => RED.nodes.node(nodeId)?.collection, id), collection);

    // an invalid value saved anyway: the node is marked invalid and Deploy says so (cancelled here)
    await ed.openNode(id);
    await ed.setValue('node-input-collection', 'not a collection id !');
    await ed.done();
    assert.equal(await ed.isValid(id), false, 'a collection id with spaces is accepted');
    const { warned } = await ed.deploy({ confirm: false });
    assert.match(warned, /not properly configured/i);
    await ed.openNode(id);
    await ed.setValue('node-input-collection', collection);
    await ed.done();
    assert.ok(await ed.isValid(id));
    assert.deepEqual(ed.errors, []);
  });

  /** Import › Examples › node-red-contrib-sets › <name>, through the menu's dialog. */
  async function importExample(name: string): Promise<string> {
    const page = ed.page;
    await ed.red((RED) => (RED as unknown as { actions: { invoke(a: string): void } }).actions.invoke('core:show-import-dialog'), null);
    const dialog = page.locator('.ui-dialog:visible');
    await dialog.getByRole('link', { name: 'Examples' }).click();
    const tree = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
    const pkg = tree.locator('.red-ui-treeList-label:visible', { hasText: 'node-red-contrib-sets' });
    const entry = tree.locator('.red-ui-treeList-label:visible').filter({ hasText: new RegExp(`^\\s*${name}\\s*$`) });
    if (!(await entry.count())) await pkg.click();
    // the dialog loads the example when its entry is selected, then enables Import (a click while
    // the tree is still settling can be lost: select again)
    const importButton = page.locator('#red-ui-clipboard-dialog-ok');
    for (let attempt = 1; ; attempt++) {
      await entry.first().click();
      const enabled = await page
        .waitForFunction(() => !(document.getElementById('red-ui-clipboard-dialog-ok') as { disabled?: boolean } | null)?.disabled, null, { timeout: 5000 })
        .then(() => true)
        .catch(() => false);
      if (enabled) break;
      assert.ok(attempt < 3, `Import › Examples › ${name}: the Import button stays disabled`);
    }
    await importButton.click();
    await ed.settle(800);
    // no conflict dialog ("nodes already exist") or any other dialog left open
    const open = await page.locator('.ui-dialog:visible').allInnerTexts();
    assert.deepEqual(open, [], `importing ${name} left a dialog open`);
    const note = await page.locator('.red-ui-notification:visible').allInnerTexts();
    return note.join(' | ');
  }

  /** Empty the editor and the runtime (a full deploy of nothing), then reload the page. */
  async function reset(): Promise<void> {
    const res = await fetch(new URL('flows', nr.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: '[]',
      signal: AbortSignal.timeout(20_000),
    });
    assert.ok(res.ok, `emptying the flows answered ${res.status}`);
    const errors = ed.errors.splice(0);
    await ed.page.close();
    ed = await EditorSession.open(browser, nr.url);
    ed.errors.push(...errors);
  }

  /** Ids of the deployed nodes, without the empty "Flow 1" tab the editor adds to an empty workspace. */
  async function deployedIds(): Promise<string[]> {
    const flows = (await (await fetch(new URL('flows', nr.url), { signal: AbortSignal.timeout(10_000) })).json()) as FlowNode[];
    const used = new Set(flows.map((n) => n['z']));
    return flows
      .filter((n) => !(n.type === 'tab' && !used.has(n.id) && /^Flow \d+$/.test(String(n['label']))))
      .map((n) => n.id)
      .sort();
  }

  it('lists the six examples under Import › Examples', async function () {
    assert.deepEqual(EXAMPLES, ['sets-all-in-one-demo', 'sets-inquirer', 'sets-pipeline-rabbitmq', 'sets-publisher', 'sets-subscriber', 'sets-taxii-server']);
    await reset();
    await ed.red((RED) => (RED as unknown as { actions: { invoke(a: string): void } }).actions.invoke('core:show-import-dialog'), null);
    await ed.page.locator('.ui-dialog:visible').getByRole('link', { name: 'Examples' }).click();
    const tree = ed.page.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await tree.locator('.red-ui-treeList-label:visible', { hasText: 'node-red-contrib-sets' }).click();
    await ed.settle(500);
    const labels = (await tree.locator('.red-ui-treeList-label:visible').allInnerTexts()).map((t) => t.trim());
    for (const name of EXAMPLES) assert.ok(labels.includes(name), `Import › Examples does not list ${name}: ${labels.join(', ')}`);
    await ed.page.locator('.ui-dialog:visible .ui-dialog-buttonpane button', { hasText: 'Cancel' }).click();
  });

  for (const name of EXAMPLES) {
    it(`imports ${name} alone through Import › Examples and deploys it`, async function () {
      await reset();
      const note = await importExample(name);
      const flow = readFlow(name);
      assert.match(note, new RegExp(`Imported:[\\s\\S]*${flow.filter((n) => n.z).length} nodes`));
      const { warned, text } = await ed.deploy({ confirm: false });
      assert.equal(warned, '', `deploy warned: ${warned}`);
      assert.match(text, /Successfully deployed/);
      assert.deepEqual(await deployedIds(), flow.map((n) => n.id).sort());
      assert.deepEqual(ed.errors, []);
    });
  }

  it('imports all six in a row without a conflict dialog and deploys them together', async function () {
    await reset();
    const all: string[] = [];
    for (const name of EXAMPLES) {
      await importExample(name);
      all.push(...readFlow(name).map((n) => n.id));
    }
    const { warned, text } = await ed.deploy({ confirm: false });
    assert.equal(warned, '', `deploy warned: ${warned}`);
    assert.match(text, /Successfully deployed/);
    assert.deepEqual(await deployedIds(), all.sort());
    assert.deepEqual(ed.errors, []);
  });
});
