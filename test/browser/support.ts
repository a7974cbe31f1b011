/**
 * Shared helpers of the browser suites (test/browser/*.test.ts): headless Debian Chromium driven by
 * playwright-core against the real Node-RED editor.
 *
 *   const nr = await startNodeRed();                 // test/support/node-red.ts (this build's package)
 *   const browser = await launchBrowser();
 *   const ed = await EditorSession.open(browser, nr.url);
 *   await ed.importFlow(flow);                       // RED.view.importNodes, ids kept
 *   await ed.openNode('some-id');                    // edit dialog (ed.openConfig for config nodes)
 *   await ed.helpText();                             // the help sidebar's text
 *   await ed.done();                                 // Done, waits for the tray to close
 *   await ed.deploy();                               // Deploy button; returns the notification text
 *   await ed.pressInject('inj-id');                  // the inject node's button on the canvas
 *   await ed.debugMessages();                        // [{ name, text }] from the debug sidebar
 *   assert.deepEqual(ed.errors, []);                 // page errors and console.error lines
 */
import { strict as assert } from 'assert';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.SETS_CHROMIUM ?? '/usr/bin/chromium';

/** Our flow node types (palette category SETS) and config node types. */
export const OUR_TYPES = [
  'anchor-hash',
  'verify-hash',
  'taxii-publish',
  'taxii-inquire',
  'rabbit-subscribe',
  'rabbit-publish',
  'rabbit-ack',
  'taxii-server',
  'integrity-status',
] as const;
export const CONFIG_TYPES = ['sets-ledger', 'sets-broker', 'sets-taxii', 'sets-store'] as const;

export interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
}

/** The part of the editor's global `RED` these helpers use. */
export interface EditorRed {
  nodes: {
    node(id: string): Record<string, unknown> | null;
    createCompleteNodeSet(opts: { credentials: boolean }): FlowNode[];
    clear(): void;
  };
  view: { importNodes(nodes: FlowNode[], opts: Record<string, unknown>): void; redraw(full?: boolean): void };
  editor: { edit(node: unknown): void; editConfig(name: string, type: string, id: string): void };
  workspaces: { show(id: string): void; active(): string };
  sidebar: { show(tab: string): void };
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export interface DebugMessage {
  /** the debug node's name (or id) as the sidebar shows it */
  name: string;
  /** the message text as shown (collapsed objects show their first properties) */
  text: string;
}

export class EditorSession {
  /** pageerror and console.error lines seen since the page opened */
  readonly errors: string[] = [];

  private constructor(readonly page: Page) {}

  /** Opens the editor at `url` in a new page and waits for our palette to load. */
  static async open(browser: Browser, url: string, opts: { width?: number; height?: number } = {}): Promise<EditorSession> {
    const page = await browser.newPage({ viewport: { width: opts.width ?? 1600, height: opts.height ?? 1000 } });
    const ed = new EditorSession(page);
    page.on('pageerror', (err) => ed.errors.push(`pageerror: ${err.stack ?? err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') ed.errors.push(`console.error: ${msg.text()} (${msg.location().url})`);
    });
    await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    await page.locator('.red-ui-palette-node[data-palette-type="anchor-hash"]').waitFor({ state: 'attached', timeout: 30_000 });
    return ed;
  }

  /** Runs `fn(RED, arg)` in the page. */
  red<T, A>(fn: (RED: EditorRed, arg: A) => T, arg: A): Promise<T> {
    return this.page.evaluate(
      ({ src, a }) => {
        const RED = (globalThis as unknown as { RED: EditorRed }).RED;
        // the function is sent as text: page.evaluate cannot take a closure with an extra argument
        return (new Function('RED', 'arg', `return (${src})(RED, arg);`) as (r: EditorRed, x: unknown) => T)(RED, a);
      },
      { src: fn.toString(), a: arg },
    ) as Promise<T>;
  }

  /** Imports nodes as they are (ids kept, no notification), like a paste of a flow's JSON. */
  async importFlow(flow: FlowNode[]): Promise<void> {
    await this.red((RED, nodes) => RED.view.importNodes(nodes, { addFlow: false, generateIds: false, notify: false }), flow);
  }

  /** Opens the edit dialog of a flow node and waits for it. */
  async openNode(id: string): Promise<void> {
    await this.red((RED, nodeId) => {
      const n = RED.nodes.node(nodeId);
      if (!n) throw new Error(`no node ${nodeId} in the editor`);
      RED.editor.edit(n);
    }, id);
    await this.page.locator('#node-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
    await this.settle();
  }

  /** Opens the edit dialog of a config node and waits for it. */
  async openConfig(type: string, id: string): Promise<void> {
    await this.red((RED, [t, nodeId]) => RED.editor.editConfig('', t, nodeId), [type, id] as const);
    await this.page.locator('#node-config-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
    await this.settle();
  }

  /** Clicks Done of the open (config or flow) dialog and waits for its tray to close. */
  async done(): Promise<void> {
    const config = this.page.locator('#node-config-dialog-ok');
    const done = (await config.isVisible()) ? config : this.page.locator('#node-dialog-ok');
    await done.click({ timeout: 10_000 });
    await done.waitFor({ state: 'detached', timeout: 10_000 });
  }

  /** Clicks Cancel of the open dialog. */
  async cancel(): Promise<void> {
    const config = this.page.locator('#node-config-dialog-cancel');
    const cancel = (await config.isVisible()) ? config : this.page.locator('#node-dialog-cancel');
    await cancel.click({ timeout: 10_000 });
    await cancel.waitFor({ state: 'detached', timeout: 10_000 });
  }

  /** Clicks the open dialog's help button (the book) and returns the help sidebar's text. */
  async helpText(): Promise<string> {
    await this.page.locator('.red-ui-tray-footer-left button:has(i.fa-book):visible').last().click();
    const help = this.page.locator('.red-ui-help:visible');
    await help.first().waitFor({ state: 'visible', timeout: 10_000 });
    return (await help.first().innerText()).trim();
  }

  /**
   * Sets input `#<id>` of the open dialog as a user would: typed into a plain input (then `change`),
   * or through the widget's own API for a typedInput (type kept unless `type` is given).
   */
  async setValue(id: string, value: string, type?: string): Promise<void> {
    const input = this.page.locator(`#${id}`);
    const typed = await input.evaluate((el) => el.classList.contains('red-ui-typedInput'));
    if (typed) {
      await this.page.evaluate(
        ({ sel, v, t }) => {
          const $ = (globalThis as unknown as { $: (s: string) => { typedInput(m: string, v?: string): unknown } }).$;
          if (t) $(sel).typedInput('type', t);
          $(sel).typedInput('value', v);
        },
        { sel: `#${id}`, v: value, t: type },
      );
    } else {
      await input.fill(value);
      await input.dispatchEvent('change');
    }
    await this.settle(200);
  }

  /** Ids of the inputs of the open dialog that the editor marks invalid (class input-error). */
  async invalidInputs(): Promise<string[]> {
    // a typedInput is marked on its container: report the id of the input inside it
    return this.page.locator('.red-ui-tray .input-error').evaluateAll((els) =>
      els.map((e) => e.id || e.parentElement?.querySelector('input.red-ui-typedInput')?.id || e.querySelector('input')?.id || e.className),
    );
  }

  /** Whether the editor marks node `id` invalid (the red triangle on the canvas). */
  async isValid(id: string): Promise<boolean> {
    return this.red((RED, nodeId) => {
      const n = RED.nodes.node(nodeId);
      if (!n) throw new Error(`no node ${nodeId}`);
      return n.valid !== false;
    }, id);
  }

  /**
   * Clicks Deploy. `confirm`: what to do with the "not properly configured" dialog if it comes.
   * Resolves with { warned, text } once a deploy notification appeared (text: the notifications shown).
   */
  async deploy(opts: { confirm?: boolean } = {}): Promise<{ warned: string; text: string }> {
    const page = this.page;
    const before = await page.locator('.red-ui-notification').count();
    await page.locator('#red-ui-header-button-deploy').click();
    let warned = '';
    const dialog = page.locator('.red-ui-notification:has(button)').filter({ hasText: /not properly configured|unknown|invalid/i });
    const ok = page.locator('.red-ui-notification').filter({ hasText: /Successfully deployed|Deployed/i });
    await Promise.race([dialog.first().waitFor({ state: 'visible', timeout: 20_000 }), ok.first().waitFor({ state: 'visible', timeout: 20_000 })]).catch(() => undefined);
    if (await dialog.first().isVisible()) {
      warned = (await dialog.first().innerText()).trim();
      if (opts.confirm === false) {
        await dialog.first().locator('button').filter({ hasText: /Cancel/i }).click();
        return { warned, text: '' };
      }
      await dialog.first().locator('button').filter({ hasText: /Confirm deploy/i }).click();
      await ok.first().waitFor({ state: 'visible', timeout: 20_000 });
    }
    const texts = await page.locator('.red-ui-notification').allInnerTexts();
    assert.ok(texts.length > before || texts.some((t) => /deployed/i.test(t)), `no deploy notification: ${texts.join(' | ')}`);
    return { warned, text: texts.join(' | ') };
  }

  /** Shows the tab of flow `tabId`. */
  async showTab(tabId: string): Promise<void> {
    await this.red((RED, id) => RED.workspaces.show(id), tabId);
    await this.page.waitForTimeout(300);
  }

  /** Clicks the button of inject node `id` on the canvas (its tab is shown first). */
  async pressInject(id: string): Promise<void> {
    const z = await this.red((RED, nodeId) => String(RED.nodes.node(nodeId)?.z ?? ''), id);
    assert.ok(z, `no inject node ${id} on a tab`);
    if ((await this.red((RED) => RED.workspaces.active(), null)) !== z) await this.showTab(z);
    const button = this.page.locator(`g.red-ui-flow-node-group[id="${id}"] .red-ui-flow-node-button`);
    await button.scrollIntoViewIfNeeded();
    await button.click({ timeout: 10_000 });
  }

  /** The status text of node `id` as the canvas shows it ('' when it has none). */
  async statusText(id: string): Promise<string> {
    const label = this.page.locator(`g.red-ui-flow-node-group[id="${id}"] .red-ui-flow-node-status-label`);
    return (await label.count()) ? ((await label.first().textContent()) ?? '').trim() : '';
  }

  /** Opens the debug sidebar and returns its messages, oldest first. */
  async debugMessages(): Promise<DebugMessage[]> {
    await this.red((RED) => RED.sidebar.show('debug'), null);
    return this.page.locator('.red-ui-debug-content .red-ui-debug-msg').evaluateAll((els) =>
      els.map((el) => {
        const name = el.querySelector('.red-ui-debug-msg-name')?.textContent ?? '';
        const text = (el.querySelector('.red-ui-debug-msg-payload') as { innerText?: string } | null)?.innerText ?? '';
        return { name: name.replace(/^node:\s*/, '').trim(), text };
      }),
    );
  }

  /**
   * Starts recording every debug message the runtime sends to this page (RED.comms topic
   * 'debug'), with its full content; `debugLog()` returns them. The sidebar shows the same
   * messages, abbreviated.
   */
  async recordDebug(): Promise<void> {
    await this.page.evaluate(() => {
      const w = globalThis as unknown as { __setsDebug?: unknown[]; RED: { comms: { subscribe(t: string, cb: (t: string, m: unknown) => void): void } } };
      if (w.__setsDebug) return;
      w.__setsDebug = [];
      w.RED.comms.subscribe('debug', (_t, m) => w.__setsDebug?.push(m));
    });
  }

  /** Debug messages recorded since `recordDebug()` (or the last `clearDebugLog()`): node name and message text. */
  async debugLog(): Promise<Array<{ name: string; msg: string }>> {
    return this.page.evaluate(() => {
      const log = ((globalThis as unknown as { __setsDebug?: Array<{ name?: string; id?: string; msg?: unknown }> }).__setsDebug ?? []);
      return log.map((m) => ({ name: String(m.name ?? m.id ?? ''), msg: typeof m.msg === 'string' ? m.msg : JSON.stringify(m.msg) }));
    });
  }

  async clearDebugLog(): Promise<void> {
    await this.page.evaluate(() => {
      const w = globalThis as unknown as { __setsDebug?: unknown[] };
      if (w.__setsDebug) w.__setsDebug.length = 0;
    });
  }

  /** Clears the debug sidebar. */
  async clearDebug(): Promise<void> {
    await this.red((RED) => RED.sidebar.show('debug'), null);
    await this.page.locator('#red-ui-sidebar-debug-clear').click();
  }

  /** Waits until `pred(messages)` holds; fails with the messages seen. */
  async waitForDebug(pred: (m: DebugMessage[]) => boolean, what: string, timeoutMs = 60_000): Promise<DebugMessage[]> {
    const deadline = Date.now() + timeoutMs;
    let seen: DebugMessage[] = [];
    while (Date.now() < deadline) {
      seen = await this.debugMessages();
      if (pred(seen)) return seen;
      await this.page.waitForTimeout(250);
    }
    assert.fail(`${what}: not seen within ${timeoutMs} ms; debug sidebar:\n${seen.map((m) => `  ${m.name}: ${m.text.slice(0, 160).replace(/\s+/g, ' ')}`).join('\n')}`);
  }

  /** Lets the editor finish what a click started (animations, async dialog set-up). */
  async settle(ms = 300): Promise<void> {
    await this.page.waitForTimeout(ms);
  }
}
