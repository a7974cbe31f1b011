/**
 * The taxii-server dialog in the real Node-RED editor (headless Chromium, playwright-core), issue
 * 13.4: an old flow's "user:password:roles" users appear as rows without any secret; every
 * collection is visible with labelled fields; invalid values get a clear message; changing one
 * user's password in its row and deploying keeps the other users signing in.
 *
 * Node-RED runs embedded (test/support/node-red.ts, the build this file belongs to).
 */
import { strict as assert } from 'assert';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startNodeRed, type NodeRedHandle } from '../support/node-red';

const CHROMIUM = process.env.SETS_CHROMIUM ?? '/usr/bin/chromium';
const COLLS = ['0d8e2a4c-6f0b-4c1e-9a55-6b1f1d2c3e01', '1f9c3b5d-7a1c-4d2f-8b66-7c2a2e3d4f02', '2a0d4c6e-8b2d-4e3a-9c77-8d3b3f4e5a03'];
const OLD_USERS = 'alice:alice-pw-0001:reader\nbob:bob-pw-0002:reader,writer';
const KEY = 'feed-key-0123456789abcdefghij';

interface EditorRed {
  nodes: { node(id: string): Record<string, unknown> | null };
  editor: { edit(node: unknown): void };
}

function flow(): unknown[] {
  return [
    { id: 'tab1', type: 'tab', label: 'server' },
    { id: 'store1', type: 'sets-store', name: 'dialog test', kind: 'embedded', dir: '', retentionHours: 24 },
    {
      id: 'srv1',
      type: 'taxii-server',
      z: 'tab1',
      x: 200,
      y: 100,
      name: '',
      store: 'store1',
      basePath: '/taxii',
      title: 'dialog test',
      apiRoot: 'api1',
      maxContentLength: 10485760,
      maxPageSize: 1000,
      collections: COLLS.map((id, i) => ({ id, title: `collection ${i + 1}`, canRead: ['reader'], canWrite: ['writer'], integrity: 'required' })),
      wires: [[], []],
      credentials: { users: OLD_USERS, apiKeys: `feed:${KEY}:reader` },
    },
  ];
}

describe('taxii-server dialog (headless Chromium)', function () {
  this.timeout(90_000);
  let nr: NodeRedHandle;
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];

  async function signIn(user: string, password: string): Promise<number> {
    const res = await fetch(new URL(`taxii/api1/collections/${COLLS[0]}/`, nr.url), {
      headers: { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`, Accept: 'application/taxii+json;version=2.1' },
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer();
    return res.status;
  }

  async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function openDialog(): Promise<void> {
    await page.evaluate(() => {
      const RED = (globalThis as unknown as { RED: EditorRed }).RED;
      RED.editor.edit(RED.nodes.node('srv1'));
    });
    await page.locator('#node-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
  }

  /** every value and text the open dialog shows (inputs but hidden ones, selects, visible text) */
  async function dialogText(): Promise<string> {
    return page.locator('#dialog-form').evaluate((el) => {
      const values = Array.from(el.querySelectorAll('input:not([type=hidden]), textarea, select')).map((i) => (i as HTMLInputElement).value + ' ' + ((i as HTMLInputElement).placeholder ?? ''));
      return values.join('\n') + '\n' + (el as HTMLElement).innerText;
    });
  }

  before(async function () {
    nr = await startNodeRed();
    // deploy the old-format flow (credentials inline, as an import with credentials would)
    const res = await fetch(new URL('flows', nr.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(flow()),
      signal: AbortSignal.timeout(20_000),
    });
    assert.ok(res.status === 200 || res.status === 204, `deploy answered ${res.status}: ${await res.text()}`);
    await until('the old flow serves alice', async () => (await signIn('alice', 'alice-pw-0001')) === 200);
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
    await page.locator('.red-ui-palette-node[data-palette-type="taxii-server"]').waitFor({ state: 'attached', timeout: 30_000 });
    await until('the flow is in the editor', () => page.evaluate(() => !!(globalThis as unknown as { RED: EditorRed }).RED.nodes.node('srv1')));
  });

  after(async function () {
    await browser?.close();
    await nr?.stop();
  });

  it('palette: one-line tiles and plain-language tips for the server-side nodes', async () => {
    for (const type of ['taxii-server', 'integrity-status', 'rabbit-subscribe', 'rabbit-publish', 'rabbit-ack']) {
      const tile = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
      const { lines, height } = await tile.evaluate((el) => ({
        lines: ((el.querySelector('.red-ui-palette-label') as HTMLElement).innerText || '').split('\n').filter((l) => l.trim() !== '').length,
        height: (el as HTMLElement).offsetHeight,
      }));
      assert.equal(lines, 1, `${type}: palette label on ${lines} lines`);
      assert.ok(height <= 30, `${type}: palette tile ${height} px tall`);
      const tip = await page.evaluate((t) => {
        const RED = (globalThis as unknown as { RED: { nodes: { getNodeHelp(t: string): string } } }).RED;
        const div = document.createElement('div');
        div.innerHTML = RED.nodes.getNodeHelp(t);
        return div.querySelector('p')?.textContent ?? '';
      }, type);
      assert.ok(tip.length > 40, `${type}: no tip`);
      assert.doesNotMatch(tip, /paper|H\(t\)|m_t|m\s*t\b|step \d|section \d/i, `${type}: tip in paper notation: ${tip}`);
    }
  });

  it('no label wraps or is cut in the dialogs of the server-side nodes', async () => {
    const extra = [
      { id: 'is1', type: 'integrity-status', z: 'tab1', x: 400, y: 100, server: '', store: '', collections: '', maxItems: 1000, wires: [[]] },
      { id: 'rs1', type: 'rabbit-subscribe', z: 'tab1', x: 400, y: 160, wires: [[], []] },
      { id: 'rp1', type: 'rabbit-publish', z: 'tab1', x: 400, y: 220, wires: [[]] },
      { id: 'ra1', type: 'rabbit-ack', z: 'tab1', x: 400, y: 280, wires: [] },
    ];
    await page.evaluate((nodes) => {
      const RED = (globalThis as unknown as { RED: { view: { importNodes(n: unknown[], o: Record<string, unknown>): void } } }).RED;
      RED.view.importNodes(nodes, { addFlow: false, generateIds: false, notify: false, applyNodeDefaults: true });
    }, extra);
    const problems: string[] = [];
    for (const id of ['srv1', ...extra.map((n) => n.id)]) {
      await page.evaluate((nodeId) => {
        const RED = (globalThis as unknown as { RED: EditorRed }).RED;
        RED.editor.edit(RED.nodes.node(nodeId));
      }, id);
      await page.locator('#node-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
      await page.waitForTimeout(300);
      const bad = await page.locator('#dialog-form label').evaluateAll((els) =>
        els
          .filter((e) => (e as HTMLElement).offsetParent !== null && (e as HTMLElement).offsetWidth < 300)
          .filter((e) => (e as HTMLElement).offsetHeight > 30 || e.scrollWidth > e.clientWidth + 1)
          .map((e) => `${(e as HTMLElement).innerText.trim()} (${(e as HTMLElement).offsetWidth}x${(e as HTMLElement).offsetHeight})`),
      );
      problems.push(...bad.map((b) => `${id}: ${b}`));
      await page.locator('#node-dialog-cancel').click();
      await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
    }
    assert.deepEqual(problems, [], 'labels that wrap or are cut');
  });

  it("shows an old flow's users and API keys as rows, without any secret or __PWRD__", async () => {
    await openDialog();
    const names = page.locator('#node-input-userList-container .sets-a-name');
    await until('two user rows', async () => (await names.count()) === 2);
    assert.deepEqual(await names.evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value)), ['alice', 'bob']);
    const roles = await page.locator('#node-input-userList-container .sets-a-roles').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value));
    assert.deepEqual(roles, ['reader', 'reader, writer']);
    assert.equal(await page.locator('#node-input-apiKeyList-container .sets-a-name').inputValue(), 'feed');
    const text = await dialogText();
    for (const secret of ['__PWRD__', 'alice-pw-0001', 'bob-pw-0002', KEY]) assert.ok(!text.includes(secret), `the dialog shows ${secret}`);
    // what each user may do, in words
    const grants = await page.locator('#node-input-userList-container .sets-a-grants').allInnerTexts();
    assert.match(grants[1], /reads: collection 1, collection 2, collection 3 · adds to: collection 1, collection 2, collection 3/);
    await page.locator('#node-dialog-cancel').click();
    await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
  });

  it('shows every collection with labelled fields, the list growing with its content', async () => {
    await openDialog();
    const rows = page.locator('#node-input-collections-container .sets-row');
    assert.equal(await rows.count(), 3);
    const labels = await rows.first().locator('.sets-field > label').allInnerTexts();
    assert.deepEqual(labels, ['Id', 'Title', 'Alias', 'Description', 'Who may read', 'Who may add', 'Integrity check']);
    // no inner scrolling: the list is as tall as its rows (the dialog scrolls instead)
    const { scroll, client } = await page
      .locator('#node-input-collections-container')
      .evaluate((el) => {
        const box = el.closest('.red-ui-editableList-container') as HTMLElement;
        return { scroll: box.scrollHeight, client: box.clientHeight };
      });
    assert.ok(scroll <= client + 2, `the collections list scrolls inside (${scroll} px in ${client} px)`);
    for (let i = 0; i < 3; i++) {
      await rows.nth(i).locator('.sets-c-id').scrollIntoViewIfNeeded();
      assert.ok(await rows.nth(i).locator('.sets-c-id').isVisible());
    }
    // labels are not cut: every label's text fits its box
    const cut = await page.locator('#dialog-form .sets-field > label').evaluateAll((els) => els.filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => (e as HTMLElement).innerText));
    assert.deepEqual(cut, []);
    await page.locator('#node-dialog-cancel').click();
    await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
  });

  it('refuses invalid values with a clear message (duplicate collection id, new user without a password, short key)', async () => {
    await openDialog();
    await page.locator('#node-input-collections-container').locator('xpath=../..').locator('.red-ui-editableList-addButton').click();
    const newRow = page.locator('#node-input-collections-container .sets-row').nth(3);
    await newRow.locator('.sets-c-id').fill(COLLS[0]);
    assert.match(await newRow.locator('.sets-c-msg').innerText(), /this id is used by another collection/);
    await newRow.locator('.sets-c-id').fill('not a uuid');
    assert.match(await newRow.locator('.sets-c-msg').innerText(), /letters, digits/);
    await newRow.locator('.sets-c-id').fill('my-collection');
    assert.match(await newRow.locator('.sets-c-msg').innerText(), /not a UUIDv4: allowed/);

    await page.locator('#node-input-userList-container').locator('xpath=../..').locator('.red-ui-editableList-addButton').click();
    const user = page.locator('#node-input-userList-container .sets-row').nth(2);
    await user.locator('.sets-a-name').fill('carol');
    assert.match(await user.locator('.sets-a-msg').innerText(), /type a password for the new user/);
    await user.locator('.sets-a-name').fill('bob');
    assert.match(await user.locator('.sets-a-msg').innerText(), /this name is used twice/);

    await page.locator('#node-input-apiKeyList-container').locator('xpath=../..').locator('.red-ui-editableList-addButton').click();
    const key = page.locator('#node-input-apiKeyList-container .sets-row').nth(1);
    await key.locator('.sets-a-name').fill('misp');
    await key.locator('.sets-a-secret').fill('short');
    assert.match(await key.locator('.sets-a-msg').innerText(), /20 or more characters/);
    await key.locator('.sets-a-generate').click();
    assert.equal(await key.locator('.sets-a-msg').innerText(), '');
    await page.locator('#node-dialog-cancel').click();
    await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
    const after = await page.evaluate(() => (globalThis as unknown as { RED: EditorRed }).RED.nodes.node('srv1')?.['collections'] as unknown[]);
    assert.equal(after.length, 3, 'cancel kept the collections');
  });

  it("changing one user's password in its row and deploying: that user signs in with it, the others keep theirs; reopening shows no secret", async () => {
    await openDialog();
    const bob = page.locator('#node-input-userList-container .sets-row').nth(1);
    await until('user rows', async () => (await page.locator('#node-input-userList-container .sets-row').count()) === 2);
    await bob.locator('.sets-a-secret').fill('bob-new-pw-0003');
    await page.locator('#node-dialog-ok').click();
    await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
    await page.locator('#red-ui-header-button-deploy').click();
    // the unconfigured rabbit nodes of the label test make the editor ask first
    const confirm = page.locator('.red-ui-notification button', { hasText: 'Confirm deploy' });
    await confirm.click({ timeout: 3_000 }).catch(() => undefined);
    await until('bob signs in with the new password', async () => (await signIn('bob', 'bob-new-pw-0003')) === 200);
    assert.equal(await signIn('bob', 'bob-pw-0002'), 401);
    assert.equal(await signIn('alice', 'alice-pw-0001'), 200);

    await openDialog();
    assert.deepEqual(await page.locator('#node-input-userList-container .sets-a-name').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value)), ['alice', 'bob']);
    const text = await dialogText();
    for (const secret of ['__PWRD__', 'alice-pw-0001', 'bob-pw-0002', 'bob-new-pw-0003', KEY]) assert.ok(!text.includes(secret), `the dialog shows ${secret}`);
    const secrets = await page.locator('#dialog-form .sets-a-secret').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value));
    assert.deepEqual(secrets, ['', '', ''], 'password and key fields start empty');
    await page.locator('#node-dialog-cancel').click();
    // the next test opens another dialog: this one must be gone first (two 'Done' buttons otherwise)
    await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
    assert.deepEqual(errors, []);
  });

  it('a pasted copy (rows, but no secrets on the runtime) asks for the passwords instead of showing "unchanged"', async () => {
    const copy = {
      id: 'srv2',
      type: 'taxii-server',
      z: 'tab1',
      x: 200,
      y: 400,
      store: 'store1',
      basePath: '/copy',
      title: 'copy',
      apiRoot: 'api1',
      collections: [],
      userList: [{ id: 'u-copy', name: 'carol', roles: ['reader'] }],
      apiKeyList: [],
      wires: [[], []],
    };
    await page.evaluate((n) => {
      const RED = (globalThis as unknown as { RED: { view: { importNodes(n: unknown[], o: Record<string, unknown>): void } } }).RED;
      RED.view.importNodes([n], { addFlow: false, generateIds: false, notify: false });
    }, copy);
    await page.evaluate(() => {
      const RED = (globalThis as unknown as { RED: EditorRed }).RED;
      RED.editor.edit(RED.nodes.node('srv2'));
    });
    await page.locator('#node-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
    const row = page.locator('#node-input-userList-container .sets-row').first();
    await until('the row is drawn', async () => (await row.count()) === 1);
    assert.match(await row.locator('.sets-a-msg').innerText(), /type a password for the new user/);
    await page.locator('#node-dialog-cancel').click();
    await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
    assert.deepEqual(errors, []);
  });
});
