/**
 * Secrets never leak (issue 11), n8n: workflows run through n8n's engine (test/support/n8n.ts)
 * with credentials holding distinctive secrets — ledger private key, RabbitMQ password, TAXII
 * password and OAuth2 client secret — failing (non-writer key, dead RPC, broker wrong password,
 * broker refused, TAXII 401, token endpoint down) and succeeding. The whole execution record
 * (items, errors, error descriptions and contexts, as n8n stores it) must contain none of them.
 */
import * as assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import * as net from 'node:net';
import type { IDataObject, INode } from 'n8n-workflow';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { N8nHarness, amqpCredential, ledgerCredential, type RunResult, type WorkflowFile } from '../support/n8n';
import { startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';

const tag = (what: string): string => `${what}-SECRET-${randomBytes(6).toString('hex')}`;
const COLL = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 1));
    });
  });
}

function indicator(): IDataObject {
  const id = `indicator--${randomUUID()}`;
  return {
    type: 'indicator',
    spec_version: '2.1',
    id,
    created: '2024-01-01T00:00:00.000Z',
    modified: '2024-01-01T00:00:00.000Z',
    name: 'secrets test',
    pattern: "[ipv4-addr:value = '10.0.0.1']",
    pattern_type: 'stix',
    valid_from: '2024-01-01T00:00:00Z',
  };
}

describe('secrets never leak (n8n execution data)', function () {
  this.timeout(180_000);
  let h: N8nHarness;
  let c: ChainHandle;
  let taxii: TestTaxiiServer;
  const NON_WRITER_KEY = '0x' + randomBytes(32).toString('hex');
  const DEAD_RPC_KEY = '0x' + randomBytes(32).toString('hex');
  const BROKER_PW = tag('broker-pw');
  const BROKER_PW_DEAD = tag('broker-pw-dead');
  const TAXII_PW = tag('taxii-pw');
  const CLIENT_SECRET = tag('client-secret');
  let writerKey: string;
  let secrets: string[];

  before(async () => {
    c = await chain();
    const amqpUrl = (await rabbit()).url;
    const contract = await c.deployRegistry();
    writerKey = c.accounts[3].privateKey;
    const dead = await closedPort();
    taxii = await startTestTaxiiServer({ basic: { alice: 'alice-pw' } });
    secrets = [NON_WRITER_KEY, DEAD_RPC_KEY, writerKey, BROKER_PW, BROKER_PW_DEAD, TAXII_PW, CLIENT_SECRET];
    secrets = [...secrets, ...secrets.filter((s) => s.startsWith('0x')).map((s) => s.slice(2))];
    h = await N8nHarness.create({
      credentials: {
        LedgerOk: ledgerCredential(c, contract, writerKey),
        LedgerNonWriter: ledgerCredential(c, contract, NON_WRITER_KEY),
        LedgerDead: ledgerCredential({ rpcUrl: `http://127.0.0.1:${dead}`, chainId: c.chainId }, contract, DEAD_RPC_KEY),
        AmqpWrongPw: amqpCredential(amqpUrl, { password: BROKER_PW, timeout: 3000, brokerWait: 3 }),
        AmqpDead: amqpCredential(`amqp://127.0.0.1:${dead}`, { username: 'guest', password: BROKER_PW_DEAD, timeout: 3000, brokerWait: 3 }),
        Taxii401: { type: 'setsTaxiiApi', data: { url: taxii.discoveryUrl, authType: 'basic', username: 'nobody', password: TAXII_PW, timeout: 5000 } },
        TaxiiOauth: {
          type: 'setsTaxiiApi',
          data: { url: taxii.discoveryUrl, authType: 'oauth2', tokenUrl: `http://127.0.0.1:${dead}/token`, clientId: 'sets', clientSecret: CLIENT_SECRET, timeout: 5000 },
        },
      },
    });
  });
  after(async () => {
    await h?.close(); // releases the shared ledger / broker connections the executions opened
    await taxii?.stop();
  });

  function workflow(params: IDataObject, credentials: INode['credentials'], continueOnFail: boolean): WorkflowFile {
    return {
      name: 'secrets',
      nodes: [
        { id: 'start', name: 'Start', type: 'n8n-nodes-base.manualTrigger', typeVersion: 1, position: [0, 0], parameters: {} },
        {
          id: 'step',
          name: 'Step',
          type: 'n8n-nodes-sets.sets',
          typeVersion: 1,
          position: [200, 0],
          parameters: { collection: COLL, ...params },
          credentials,
          ...(continueOnFail ? { onError: 'continueRegularOutput' as const } : {}),
        },
      ],
      connections: { Start: { main: [[{ node: 'Step', type: 'main', index: 0 }]] } },
    };
  }

  const ledger = (id: string): INode['credentials'] => ({ setsEvmLedgerApi: { id, name: id } });
  const amqp = (id: string): INode['credentials'] => ({ setsAmqpApi: { id, name: id } });
  const taxiiCred = (id: string): INode['credentials'] => ({ setsTaxiiApi: { id, name: id } });

  async function run(params: IDataObject, credentials: INode['credentials'], continueOnFail: boolean): Promise<RunResult> {
    return h.run(workflow(params, credentials, continueOnFail), { startNode: 'Step', input: [{ json: { object: indicator() } }] });
  }

  function assertClean(label: string, r: RunResult): string {
    const text = JSON.stringify(r.run, (_k, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Error) return { ...v, message: v.message, stack: v.stack, description: (v as { description?: unknown }).description };
      return v;
    });
    for (const s of secrets) assert.ok(!text.includes(s), `${label}: secret ${s.slice(0, 14)}… in the execution data`);
    return text;
  }

  const anchor = { resource: 'hash', operation: 'anchor' };
  const distribute = { resource: 'object', operation: 'distribute' };
  const inquire = { resource: 'object', operation: 'inquire', endpoint: 'objects', returnAll: true, filters: {}, options: { pageSize: 10 } };

  it('a success (anchor with the writer key) carries no secret', async () => {
    const r = await run(anchor, ledger('LedgerOk'), false);
    assert.equal(r.status, 'success', String(r.error?.message));
    assertClean('anchor ok', r);
  });

  const failures: Array<[string, IDataObject, () => INode['credentials'], RegExp]> = [
    ['non-writer key', anchor, () => ledger('LedgerNonWriter'), /writer|NOT_AUTHORISED/i],
    ['dead RPC', anchor, () => ledger('LedgerDead'), /127\.0\.0\.1:\d+|unreachable|refused/i],
    ['broker wrong password', distribute, () => amqp('AmqpWrongPw'), /refused|access|auth|login|credential/i],
    ['broker refused', distribute, () => amqp('AmqpDead'), /127\.0\.0\.1:\d+|refused|reach/i],
    ['TAXII 401', inquire, () => taxiiCred('Taxii401'), /401|auth/i],
    ['OAuth2 token endpoint down', inquire, () => taxiiCred('TaxiiOauth'), /token|127\.0\.0\.1:\d+|refused/i],
  ];
  for (const [label, params, creds, why] of failures) {
    it(`a failure (${label}) carries no secret: stopped execution and continue-on-fail items`, async () => {
      const stopped = await run(params, creds(), false);
      assert.equal(stopped.status, 'error', `${label} should fail`);
      assert.match(`${stopped.error?.message} ${String((stopped.error as { description?: unknown } | undefined)?.description)}`, why);
      assertClean(`${label} (stopped)`, stopped);
      const items = await run(params, creds(), true);
      const text = assertClean(`${label} (continue on fail)`, items);
      assert.match(text, why);
    });
  }
});
