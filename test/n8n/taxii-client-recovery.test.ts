/**
 * Issue 10 in n8n's engine (test/support/n8n.ts): the SETS node's Inquire and Delete operations
 * against a medallion-like TAXII server (test/support/taxii-test-server.ts with `medallion`) take
 * the client's lib path — added_after is sent as UTC `Z` with 6 fractional digits (medallion
 * answers 500 otherwise) and an unparsable one fails the item before any request; Delete without
 * versions deletes every version (medallion would delete only the latest); an expired `next`
 * token inside one POST's block of date_added is resumed without loss or repeat.
 */
import * as assert from 'node:assert/strict';
import type { INode, INodeParameters } from 'n8n-workflow';
// not exported from n8n-core's root (the harness imports it the same way)
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';
import { N8nHarness, type WorkflowFile } from '../support/n8n';

const RW = DEFAULT_COLLECTIONS[0].id;

function indicator(n: number, modified = '2021-01-01T00:00:00.000Z'): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`,
    created: '2021-01-01T00:00:00.000Z',
    modified,
    pattern: `[ipv4-addr:value = '10.4.${Math.floor(n / 256) % 256}.${n % 256}']`,
    pattern_type: 'stix',
    valid_from: '2021-01-01T00:00:00Z',
  };
}

function workflow(parameters: INodeParameters): WorkflowFile {
  const node: INode = {
    id: 'a1b2c3d4-0000-4000-8000-000000000010',
    name: 'SETS',
    type: 'n8n-nodes-sets.sets',
    typeVersion: 1,
    position: [0, 0],
    parameters: { resource: 'object', collection: RW, ...parameters },
    credentials: { setsTaxiiApi: { id: 'MedallionTaxii01', name: 'medallion' } },
  };
  return { name: 'issue 10', nodes: [node], connections: {} };
}

describe('n8n engine: SETS Inquire and Delete against a medallion-like TAXII server (issue 10)', function () {
  this.timeout(60_000);
  let taxii: TestTaxiiServer;
  let h: N8nHarness;

  beforeEach(async () => {
    taxii = await startTestTaxiiServer({ medallion: {} });
    h = await N8nHarness.create({
      credentials: { MedallionTaxii01: { type: 'setsTaxiiApi', data: { url: taxii.apiRootUrl, authType: 'none', timeout: 10000 } } },
    });
  });
  afterEach(async () => {
    await h?.close();
    await taxii?.stop();
  });

  const ids = (items: Array<{ json: Record<string, unknown> }>): string[] => items.map((i) => (i.json.object as { id: string }).id);

  it('Inquire: added_after with an offset or more than 6 digits is sent as UTC Z with 6 digits', async () => {
    const first = taxii.seed(RW, [indicator(1), indicator(2)]);
    const later = taxii.seed(RW, [indicator(3), indicator(4)]);
    const d = first[0].dateAdded;
    const minus5 = new Date(Date.parse(d) - 5 * 3_600_000).toISOString().slice(0, 19) + d.slice(19, 26) + '-05:00';
    for (const given of [minus5, d.slice(0, 26) + '42Z']) {
      taxii.clearRequests();
      const r = await h.run(workflow({ operation: 'inquire', endpoint: 'objects', returnAll: true, filters: { addedAfter: given }, options: {} }));
      assert.equal(r.status, 'success', r.error?.message);
      assert.deepEqual(ids(r.output('SETS')), later.map((v) => v.id), given);
      assert.equal(new URLSearchParams(taxii.requestsTo('/objects/')[0].rawQuery).get('added_after'), d, given);
    }
  });

  it('Inquire: an unparsable added_after fails the item with a clear error, no request', async () => {
    taxii.seed(RW, [indicator(1)]);
    const r = await h.run(workflow({ operation: 'inquire', endpoint: 'objects', returnAll: true, filters: { addedAfter: '01/02/2024' }, options: {} }));
    assert.equal(r.status, 'error');
    assert.match(String(r.error?.message), /added_after "01\/02\/2024" is not a timestamp/);
    assert.deepEqual(taxii.requestsTo('/objects/'), []);
  });

  it('Inquire: a next token that expires inside one POST\'s block of date_added: every object once', async () => {
    const stored = taxii.seed(RW, Array.from({ length: 90 }, (_, i) => indicator(i)));
    taxii.setFault({ query: /next=/, skip: 1, times: 1, expireNextTokens: true });
    const r = await h.run(workflow({ operation: 'inquire', endpoint: 'objects', returnAll: true, filters: {}, options: { pageSize: 30 } }));
    assert.equal(r.status, 'success', r.error?.message);
    assert.deepEqual(ids(r.output('SETS')), stored.map((v) => v.id));
  });

  it('Delete without versions: every version is deleted (match[version]=all)', async () => {
    const id = String(indicator(7)['id']);
    taxii.seed(RW, [indicator(7)]);
    taxii.seed(RW, [indicator(7, '2022-01-01T00:00:00.000Z')]);
    taxii.seed(RW, [indicator(8)]);
    const r = await h.run(workflow({ operation: 'delete', objectId: id, filters: {} }));
    assert.equal(r.status, 'success', r.error?.message);
    assert.deepEqual(taxii.state.requests.filter((q) => q.method === 'DELETE').map((q) => q.rawQuery), ['match%5Bversion%5D=all']);
    assert.deepEqual((taxii.state.objects.get(RW) ?? []).map((v) => v.id), [String(indicator(8)['id'])]);
  });
});
