/**
 * Issue 11 (review leftover): the authentication flood protection of lib/auth/throttle.ts is set in
 * the SETS TAXII Server Trigger (collection "Protection Against Login Floods"). A lowered "Failed
 * Logins per Address" gives 429 sooner; an out-of-range value fails the activation with a message
 * naming the setting.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { INode } from 'n8n-workflow';
import { N8nHarness, freePort, type WorkflowFile } from '../support/n8n';

const COLL = '0b7e1c52-6f0a-4d8e-9c3b-2a1f5e8d7c61';
const TAXII = 'application/taxii+json;version=2.1';

function serverWorkflow(port: number, protection: Record<string, number>): WorkflowFile {
  const node: INode = {
    id: 'srv',
    name: 'SETS TAXII Server',
    type: 'n8n-nodes-sets.setsTaxiiServerTrigger',
    typeVersion: 1,
    position: [0, 0],
    parameters: {
      port,
      host: '127.0.0.1',
      basePath: '/taxii',
      title: 'SETS protection test',
      apiRoot: 'api1',
      collections: { collection: [{ id: COLL, title: 'members', canRead: 'reader', canWrite: '', integrity: 'required' }] },
      protection,
    },
    credentials: {
      setsStoreApi: { id: 'Store', name: 'store' },
      setsTaxiiServerAuth: { id: 'Auth', name: 'auth' },
    },
  };
  return { name: 'protection', nodes: [node], connections: {} };
}

async function wrongPasswords(port: number, n: number): Promise<{ statuses: number[]; retryAfter: string | null }> {
  const statuses: number[] = [];
  let retryAfter: string | null = null;
  for (let i = 0; i < n; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/taxii/api1/collections/${COLL}/`, {
      headers: { Accept: TAXII, Authorization: `Basic ${Buffer.from(`analyst:wrong-${i}`).toString('base64')}` },
      signal: AbortSignal.timeout(15_000),
    });
    await r.text();
    statuses.push(r.status);
    retryAfter = r.headers.get('retry-after');
  }
  return { statuses, retryAfter };
}

describe('n8n: SETS TAXII Server Trigger protection settings', function () {
  this.timeout(120_000);
  let h: N8nHarness;
  let storeDir: string;

  before(async () => {
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-n8n-protect-'));
    h = await N8nHarness.create({
      credentials: {
        Store: { type: 'setsStoreApi', data: { kind: 'embedded', dir: storeDir } },
        Auth: { type: 'setsTaxiiServerAuth', data: { users: 'analyst:analyst-pw-37:reader', nextTokenSecret: 'n8n-protection-next-token-secret-0123' } },
      },
    });
  });
  after(async () => {
    await h?.close();
    if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
  });

  it('default: the 3rd wrong password is still 401; Failed Logins per Address = 2: it is 429 with Retry-After', async () => {
    const port = await freePort();
    const plain = await h.activate(serverWorkflow(port, {}));
    try {
      assert.deepEqual((await wrongPasswords(port, 3)).statuses, [401, 401, 401]);
    } finally {
      await plain.close();
    }
    const port2 = await freePort();
    const guarded = await h.activate(serverWorkflow(port2, { addressBurst: 2, refillMs: 600_000 }));
    try {
      const r = await wrongPasswords(port2, 3);
      assert.deepEqual(r.statuses, [401, 401, 429]);
      assert.ok(Number(r.retryAfter) > 0, `Retry-After ${String(r.retryAfter)}`);
    } finally {
      await guarded.close();
    }
  });

  it('Password Checks at Once = 0: the activation fails with a message naming the setting', async () => {
    const port = await freePort();
    let error: unknown;
    try {
      const a = await h.activate(serverWorkflow(port, { maxConcurrentHashes: 0 }));
      error = await a.triggerError(10_000).catch((e: unknown) => e);
      await a.close();
    } catch (err) {
      error = err;
    }
    assert.ok(error instanceof Error, `expected an error, got ${String(error)}`);
    assert.match(error.message, /password checks at once \(maxConcurrentHashes\) must be a whole number between 1 and 256, got "0"/);
  });
});
