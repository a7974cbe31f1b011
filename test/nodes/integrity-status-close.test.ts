/**
 * integrity-status releases what a message waiting for its taxii-server holds (a timer and a
 * registry watcher) when the node closes: the message fails at once instead of keeping the
 * process busy for the rest of the wait.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OpenHandles, helper, until, type FlowNode } from './helper';
import { runtimeSettings, serverNodes } from './server-harness';

describe('integrity-status: close while a message waits for its taxii-server', function () {
  let userDir: string;

  before(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-integrity-close-'));
    runtimeSettings({ userDir });
    await helper.startServer();
  });

  after(async () => {
    await helper.stopServer();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('leaves no open timer when it closes while a message waits for the server', async () => {
    const flow: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'close' },
      // a taxii-server id that is not deployed: the message waits for it to start
      { id: 'integ', type: 'integrity-status', z: 'tab', server: 'not-deployed', wires: [[]] },
    ];
    const handles = new OpenHandles().start();
    await helper.load(serverNodes, flow);
    const node = helper.getNode('integ');
    assert.ok(node, 'integrity-status deployed');
    node.receive({
      payload: {},
      sets: { collection: 'c1', id: 'indicator--00000000-0000-4000-8000-000000000000', version: '2024-01-01T00:00:00.000Z', verification: { status: 'verified' } },
    });
    // the message is waiting: its timer is open
    await until('the message waits for the server', () => handles.open().some((h) => h.type === 'Timeout' && /integrity-status/.test(h.stack)), 5_000);
    await helper.unload();
    await handles.expectNone(5_000);
  });
});
