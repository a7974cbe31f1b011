/**
 * "Test connection" and the collection picker in the real Node-RED editor (headless Chromium,
 * playwright-core), issue 13.6/13.7: the broker dialog's button succeeds against the real RabbitMQ
 * (the saved password, shown as __PWRD__, is used by the runtime) and reports the reason against a
 * wrong port; the TAXII dialog's button says how many collections it sees; taxii-publish's pick
 * button lists the TAXII server's collections and fills the field; with adminAuth on, the
 * endpoint refuses a read-only login and an anonymous call.
 *
 * Node-RED runs embedded (test/support/node-red.ts, the build this file belongs to).
 */
import { strict as assert } from 'assert';
import * as net from 'net';
import type { Browser } from 'playwright-core';
import { startNodeRed, type NodeRedHandle } from '../support/node-red';
import { rabbit } from '../support/services';
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';
import { EditorSession, launchBrowser } from './support';

async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const TAXII_PW = 'alice-Taxii-pw-9';

/** POST /flows (full deployment), as the editor's Deploy does. */
async function deploy(nr: NodeRedHandle, flow: unknown[]): Promise<void> {
  const res = await fetch(new URL('flows', nr.url), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full', 'Node-RED-API-Version': 'v1' },
    body: JSON.stringify(flow),
  });
  assert.equal(res.status, 204, await res.text());
}

describe('Test connection and the collection picker (headless Chromium)', function () {
  this.timeout(120_000);
  let nr: NodeRedHandle | undefined;
  let browser: Browser | undefined;
  let ed: EditorSession;
  let taxii: TestTaxiiServer;
  let amqp: URL;

  before(async function () {
    this.timeout(240_000);
    amqp = new URL((await rabbit()).url);
    taxii = await startTestTaxiiServer({ basic: { alice: TAXII_PW } });
    nr = await startNodeRed();
    // deployed through the admin API as the editor does: the runtime takes the credentials out of the nodes
    await deploy(nr, [
        { id: 'tab1', type: 'tab', label: 'connections' },
        {
          id: 'b1',
          type: 'sets-broker',
          kind: 'amqp',
          host: amqp.hostname,
          port: Number(amqp.port),
          vhost: '/',
          exchange: 'sets',
          prefetch: 100,
          heartbeat: 30,
          timeout: 3000,
          credentials: { username: decodeURIComponent(amqp.username), password: decodeURIComponent(amqp.password) },
        },
        { id: 't1', type: 'sets-taxii', url: taxii.discoveryUrl, authType: 'basic', tlsVerify: true, timeout: 5000, credentials: { username: 'alice', password: TAXII_PW } },
        { id: 'p1', type: 'taxii-publish', z: 'tab1', x: 200, y: 100, server: 't1', collection: '', waitStatus: true, statusTimeout: 30000, onFailure: 'error', wires: [[]] },
    ]);
    browser = await launchBrowser();
    ed = await EditorSession.open(browser, nr.url);
  });

  after(async function () {
    await browser?.close();
    await nr?.stop();
    await taxii?.stop();
  });

  /** The config dialog loads the saved credentials after it opens: wait for the username to appear. */
  async function credentialsShown(): Promise<void> {
    await ed.page.waitForFunction(
      () => (document.querySelector('#node-config-input-username') as HTMLInputElement | null)?.value !== '',
      undefined,
      { timeout: 10_000 },
    );
  }

  /** Clicks the dialog's Test connection and waits for the answer; returns [state, text]. */
  async function testConnection(): Promise<[string, string]> {
    const page = ed.page;
    await page.locator('.sets-test-button:visible').click();
    const result = page.locator('.sets-test-result:visible');
    await page.waitForFunction(() => {
      const el = document.querySelector('.sets-test-result');
      return el !== null && el.getAttribute('data-state') !== 'busy';
    }, undefined, { timeout: 30_000 });
    return [(await result.getAttribute('data-state')) ?? '', (await result.innerText()).trim()];
  }

  it('broker: connected to RabbitMQ with the saved password; a wrong port names the reason', async () => {
    await ed.openConfig('sets-broker', 'b1');
    await credentialsShown();
    assert.equal(await ed.page.locator('#node-config-input-password').inputValue(), '__PWRD__', 'the dialog shows the saved password as __PWRD__');
    const [ok, okText] = await testConnection();
    assert.equal(ok, 'ok', okText);
    assert.match(okText, /connected to RabbitMQ \d/);
    const port = await deadPort();
    await ed.page.locator('#node-config-input-port').fill(String(port));
    const [bad, badText] = await testConnection();
    assert.equal(bad, 'fail', badText);
    assert.match(badText, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}|cannot connect`));
    await ed.cancel();
    assert.deepEqual(ed.errors, []);
  });

  it('TAXII: the unsaved password typed in the dialog is the one tested', async () => {
    await ed.openConfig('sets-taxii', 't1');
    await credentialsShown();
    const [ok, okText] = await testConnection();
    assert.equal(ok, 'ok', okText);
    assert.match(okText, /3 collection\(s\) visible/);
    await ed.page.locator('#node-config-input-password').fill('not-the-password');
    const [bad, badText] = await testConnection();
    assert.equal(bad, 'fail', badText);
    assert.match(badText, /401/);
    assert.ok(!badText.includes('not-the-password') && !badText.includes(TAXII_PW), 'no secret in the answer');
    await ed.cancel();
    assert.deepEqual(ed.errors, []);
  });

  it('taxii-publish: the pick button lists the server\'s collections and fills the field', async () => {
    await ed.openNode('p1');
    const page = ed.page;
    await page.locator('.sets-collection-pick').click();
    const choices = page.locator('.sets-collection-list a.sets-collection-choice');
    await choices.first().waitFor({ state: 'visible', timeout: 30_000 });
    const listed = await choices.evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
    assert.deepEqual(listed, DEFAULT_COLLECTIONS.map((c) => c.id));
    assert.match(await choices.first().innerText(), /Read-write — .* \(read \+ write\)/);
    await page.locator(`.sets-collection-list a[data-id="${DEFAULT_COLLECTIONS[0].id}"]`).click();
    await ed.done();
    const saved = await ed.red((RED, id) => {
      const n = RED.nodes.node(id);
      return n ? { collection: n['collection'], collectionType: n['collectionType'] } : null;
    }, 'p1');
    assert.deepEqual(saved, { collection: DEFAULT_COLLECTIONS[0].id, collectionType: 'str' });
    assert.deepEqual(ed.errors, []);
  });

  describe('with adminAuth on', () => {
    let secured: NodeRedHandle | undefined;
    before(async function () {
      this.timeout(120_000);
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- Node-RED's own bcrypt, for the adminAuth password hashes
      const bcrypt = require('bcryptjs') as { hashSync(pw: string, rounds: number): string };
      secured = await startNodeRed({
        settings: {
          adminAuth: {
            type: 'credentials',
            users: [
              { username: 'admin', password: bcrypt.hashSync('admin-pw-1', 8), permissions: '*' },
              { username: 'viewer', password: bcrypt.hashSync('viewer-pw-1', 8), permissions: 'read' },
            ],
          },
        },
      });
    });
    after(async () => {
      await secured?.stop();
    });

    async function token(username: string, password: string, scope: string): Promise<string> {
      const res = await fetch(new URL('auth/token', secured?.url), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope, username, password }),
      });
      assert.equal(res.status, 200, `token for ${username}`);
      return ((await res.json()) as { access_token: string }).access_token;
    }

    async function probe(bearer?: string): Promise<number> {
      const res = await fetch(new URL('sets/probe/broker', secured?.url), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...(bearer ? { Authorization: `Bearer ${bearer}` } : {}) },
        body: JSON.stringify({ config: { kind: 'in-process' }, credentials: {} }),
      });
      await res.arrayBuffer();
      return res.status;
    }

    it('refuses anonymous and read-only callers; answers an admin', async () => {
      assert.equal(await probe(), 401);
      assert.equal(await probe(await token('viewer', 'viewer-pw-1', 'read')), 401);
      assert.equal(await probe(await token('admin', 'admin-pw-1', '*')), 200);
      const list = await fetch(new URL('sets/collections?taxii=x', secured?.url));
      await list.arrayBuffer();
      assert.equal(list.status, 401);
    });
  });
});
