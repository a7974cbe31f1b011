/**
 * The n8n SETS node's hash › verify when the ledger cannot be read by the end of the wait
 * (n8n's engine in-process, test/support/n8n.ts): status `unknown` fails the item naming the
 * reason ("Fail on Undecided", default on), or — option off — passes it on the first output
 * marked `unknown`; never the "Rejected" output.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import type { INodeExecutionData, INodeParameters } from 'n8n-workflow';
import { indicator } from '../nodes/stix';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { N8nHarness, ledgerCredential, type WorkflowFile } from '../support/n8n';


function verifyWorkflow(params: INodeParameters, continueOnFail = false): WorkflowFile {
  return {
    name: 'verify with an unreachable ledger',
    nodes: [
      {
        id: randomUUID(),
        name: 'Verify',
        type: 'n8n-nodes-sets.sets',
        typeVersion: 1,
        position: [0, 0],
        parameters: { resource: 'hash', operation: 'verify', collection: 'c1', waitForAnchor: 1500, onRejected: 'secondOutput', mode: 'split', ...params },
        credentials: { setsEvmLedgerApi: { id: 'LedgerViaProxy01', name: 'ledger via a cuttable proxy' } },
        ...(continueOnFail ? { continueOnFail: true } : {}),
      },
    ],
    connections: {},
  } as unknown as WorkflowFile;
}

describe('n8n SETS verify with an unreachable ledger', function () {
  this.timeout(90_000);
  let c: ChainHandle;
  let proxy: TcpProxy;
  let h: N8nHarness;
  const input = (): INodeExecutionData[] => [{ json: { object: indicator() } }];

  before(async function () {
    this.timeout(120_000);
    c = await chain();
    const registry = await c.deployRegistry();
    proxy = await startTcpProxy(Number(new URL(c.rpcUrl).port));
    h = await N8nHarness.create({
      credentials: { LedgerViaProxy01: ledgerCredential({ rpcUrl: `http://127.0.0.1:${proxy.port}`, chainId: c.chainId }, registry, undefined, { timeout: 500 }) },
    });
  });

  after(async () => {
    await h?.close();
    await proxy?.close();
  });

  afterEach(async () => {
    await proxy.restore();
  });

  it('Fail on Undecided (default): the item fails with "undecided (retry later)" and the ledger error', async () => {
    await proxy.cut();
    const r = await h.run(verifyWorkflow({}), { startNode: 'Verify', input: input() });
    assert.equal(r.status, 'error');
    assert.match(String(r.error?.message), /undecided \(retry later\)/);
    assert.match(String(r.error?.message), /did not answer/);
  });

  it('Fail on Undecided + Continue On Fail: an error item on the first output, nothing "Rejected"', async () => {
    await proxy.cut();
    const r = await h.run(verifyWorkflow({}, true), { startNode: 'Verify', input: input() });
    assert.equal(r.status, 'success');
    const [item] = r.output('Verify', 0);
    assert.match(String(item?.json.error), /undecided \(retry later\)/);
    assert.equal(r.output('Verify', 1).length, 0);
  });

  it('Fail on Undecided off: the item goes to the first output with verification.status "unknown", cause and reason', async () => {
    await proxy.cut();
    const r = await h.run(verifyWorkflow({ failOnUndecided: false }), { startNode: 'Verify', input: input() });
    assert.equal(r.status, 'success', String(r.error?.message));
    const [item] = r.output('Verify', 0);
    const v = (item?.json.sets as { verification?: { status?: string; cause?: string; reason?: string } } | undefined)?.verification;
    assert.equal(v?.status, 'unknown');
    assert.equal(v?.cause, 'unreachable');
    assert.match(String(v?.reason), /retry later/);
    assert.equal(r.output('Verify', 1).length, 0, 'not rejected');
  });
});
