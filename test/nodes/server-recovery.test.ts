/**
 * Recovery in a real Node-RED runtime (issue 10, "Server and stores"): the embedded store's
 * directory follows the sets-store node's id, so renaming the node keeps the records; a directory
 * that an older version named after the node's name is moved into place; records left pending
 * come out again on the taxii-server's output 1 with msg.sets.origin = 'recovery'.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore } from '../../lib/store/embedded';
import { hashObject, ledgerKey } from '../../lib/digest';
import { Collector, helper, logText, placed, type FlowNode } from './helper';
import { TAXII, baseUrl, bridgeHttpNode, raw, runtimeSettings, serverNodes } from './server-harness';

const COLL = '0d6b1f5e-7a43-4c3e-9d62-5e1b7c0f4a11';

function indicator(): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${randomUUID()}`,
    created: '2024-01-01T00:00:00.000Z',
    modified: '2024-01-01T00:00:00.000Z',
    name: 'recovery test',
    pattern: "[ipv4-addr:value = '198.51.100.7']",
    pattern_type: 'stix',
    valid_from: '2024-01-01T00:00:00Z',
  };
}

describe('taxii-server / sets-store recovery in Node-RED', function () {
  this.timeout(60_000);
  let userDir: string;

  before(async function () {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-recovery-userdir-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });
  after(async () => {
    await helper.stopServer();
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await helper.unload();
  });

  function flow(storeId: string, storeName: string, server: Partial<FlowNode> = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'recovery' },
      { id: storeId, type: 'sets-store', name: storeName, kind: 'embedded' },
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: storeId,
        basePath: '/taxii',
        title: 'recovery test',
        apiRoot: 'api1',
        openAccess: true,
        collections: [{ id: COLL, title: 'shared', canRead: ['*'], canWrite: ['*'], integrity: 'required' }],
        wires: [['admitted'], []],
        ...server,
      },
      { id: 'admitted', type: 'helper', z: 'tab' },
    ].map(placed);
  }
  const objectsUrl = (): string => `${baseUrl()}/taxii/api1/collections/${COLL}/objects/`;
  const listIds = async (): Promise<string[]> => {
    const r = await raw('GET', objectsUrl(), { headers: { Accept: TAXII } });
    assert.equal(r.status, 200, r.text);
    return ((r.json as { objects?: Array<{ id: string }> }).objects ?? []).map((o) => o.id);
  };

  it('renaming the store node keeps its records (the directory is named after the node id)', async () => {
    await helper.load(serverNodes, flow('store-a', 'first name'), {});
    const o = indicator();
    const post = await raw('POST', objectsUrl(), { headers: { Accept: TAXII, 'Content-Type': TAXII }, body: JSON.stringify({ objects: [o] }) });
    assert.equal(post.status, 202, post.text);
    assert.deepEqual(await listIds(), [o['id']]);
    assert.ok(fs.existsSync(path.join(userDir, 'sets-store', 'store-a')), 'under <userDir>/sets-store/<node id>');
    await helper.unload();
    await helper.load(serverNodes, flow('store-a', 'renamed'), {});
    assert.deepEqual(await listIds(), [o['id']], 'the same store after the rename');
    assert.ok(!fs.existsSync(path.join(userDir, 'sets-store', 'renamed')), 'no new, empty store');
  });

  it('a directory named after the node (older versions) is moved to the id-based path and used; a left-pending record is re-emitted', async () => {
    // what an older version left: <userDir>/sets-store/<name>, with a record still pending
    const legacy = path.join(userDir, 'sets-store', 'legacy_store');
    const o = indicator();
    const old = new EmbeddedStore({ dir: legacy });
    await old.open();
    await old.add({
      collection: COLL,
      id: String(o['id']),
      type: 'indicator',
      version: String(o['modified']),
      specVersion: '2.1',
      mediaType: 'application/stix+json;version=2.1',
      object: o as never,
      hash: hashObject(o as never),
      key: ledgerKey(COLL, String(o['id']), String(o['modified'])),
      status: 'pending',
    });
    await old.close();
    await helper.load(serverNodes, flow('store-b', 'legacy store', { anchorGrace: 0, recoveryInterval: 0 }), {});
    const admitted = new Collector(helper.getNode('admitted'));
    const [msg] = await admitted.wait(1, 30_000);
    const sets = (msg as { sets?: Record<string, unknown> }).sets ?? {};
    assert.deepEqual([sets['origin'], sets['id'], sets['attempt'], sets['status']], ['recovery', o['id'], 1, 'pending']);
    assert.deepEqual(await listIds(), [o['id']]);
    assert.ok(fs.existsSync(path.join(userDir, 'sets-store', 'store-b')), 'moved to the id-based directory');
    assert.ok(!fs.existsSync(legacy), 'the name-based directory is gone');
    assert.match(logText(), /moved the store directory .*legacy_store .*store-b/);
  });
});
