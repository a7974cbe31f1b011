/**
 * Issue 11 (review leftover): the authentication flood protection of lib/auth/throttle.ts is set in
 * the taxii-server node's dialog (Protection against login floods). A lowered "failed logins per
 * address" gives 429 sooner; a value out of range stops the node with a message naming the setting.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { TAXII, baseUrl, basic, bridgeHttpNode, mountedServers, raw, runtimeSettings, serverNodes } from './server-harness';
import { collectionId } from './stix';

describe(`taxii-server protection settings on Node-RED ${nodeRedVersion}`, function () {
  this.timeout(60_000);
  let userDir: string;
  const COLL = collectionId();

  before(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-protect-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });
  after(async () => {
    await helper.stopServer();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await helper.unload();
  });

  // the editor stores these fields as text
  function flow(server: Record<string, unknown> = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'protection' },
      { id: 'store', type: 'sets-store', name: 'protection', kind: 'embedded' },
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: 'store',
        basePath: '/guarded',
        title: 'SETS protection test',
        apiRoot: 'api1',
        collections: [{ id: COLL, title: 'members', canRead: ['reader'], canWrite: [], integrity: 'required' }],
        wires: [[], []],
        ...server,
      },
    ].map(placed);
  }
  const creds = (): Record<string, Record<string, string>> => ({ srv: { users: 'analyst:analyst-pw-91:reader' } });

  /** statuses of `n` GETs with a wrong password, one after the other */
  async function wrongPasswords(n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = await raw('GET', `${baseUrl()}/guarded/api1/collections/${COLL}/`, { headers: basic('analyst', `wrong-${i}`) });
      out.push(r.status);
    }
    return out;
  }

  it('default: the 3rd wrong password is still 401; addressBurst "2": it is 429 with Retry-After', async () => {
    await helper.load(serverNodes, flow(), creds());
    await until('mounted', () => mountedServers().length === 1);
    assert.deepEqual(await wrongPasswords(3), [401, 401, 401]);
    await helper.unload();

    await helper.load(serverNodes, flow({ addressBurst: '2', refillMs: '600000' }), creds());
    await until('mounted', () => mountedServers().length === 1);
    assert.deepEqual(await wrongPasswords(3), [401, 401, 429]);
    const r = await raw('GET', `${baseUrl()}/guarded/api1/collections/${COLL}/`, { headers: basic('analyst', 'wrong-again') });
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('content-type'), TAXII);
    assert.ok(Number(r.headers.get('retry-after')) > 0, `Retry-After ${String(r.headers.get('retry-after'))}`);
  });

  for (const [field, value, message] of [
    ['addressBurst', '-1', /failed logins per address \(addressBurst\) must be a whole number between 0 and/],
    ['maxConcurrentHashes', '0', /password checks at once \(maxConcurrentHashes\) must be a whole number between 1 and 256/],
    ['refillMs', 'soon', /\(refillMs, ms\) must be a whole number/],
  ] as const) {
    it(`${field} "${value}": the node does not start, the log names the setting`, async () => {
      await helper.load(serverNodes, flow({ [field]: value }), creds());
      await until('error logged', () => message.test(logText()));
      assert.deepEqual(mountedServers(), []);
    });
  }
});
