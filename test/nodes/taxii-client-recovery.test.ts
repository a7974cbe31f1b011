/**
 * Issue 10 on a real Node-RED runtime: taxii-inquire against a medallion-like TAXII server
 * (test/support/taxii-test-server.ts with `medallion`) goes through the same lib path as the
 * client — added_after from the node or msg.filters is sent as UTC `Z` with 6 fractional digits
 * (medallion answers 500 otherwise), an unparsable one is refused before any request, and an
 * expired `next` token inside a POST's block of one date_added is resumed without loss or repeat.
 */
import { strict as assert } from 'node:assert';
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';
import { Collector, Recorder, allNodes, helper, nodeRedVersion, placed, until, type FlowNode } from './helper';

type Msg = { payload?: unknown; sets?: { inquiry?: { count: number } } };
const RW = DEFAULT_COLLECTIONS[0].id;

function indicator(n: number): Record<string, unknown> {
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`,
    created: '2021-01-01T00:00:00.000Z',
    modified: '2021-01-01T00:00:00.000Z',
    pattern: `[ipv4-addr:value = '10.3.${Math.floor(n / 256) % 256}.${n % 256}']`,
    pattern_type: 'stix',
    valid_from: '2021-01-01T00:00:00Z',
  };
}

describe(`taxii-inquire against a medallion-like server on Node-RED ${nodeRedVersion} (issue 10)`, function () {
  this.timeout(60_000);
  let taxii: TestTaxiiServer;

  before(async () => {
    await helper.startServer();
  });
  after(async () => {
    await helper.stopServer();
  });
  beforeEach(async () => {
    taxii = await startTestTaxiiServer({ medallion: {} });
  });
  afterEach(async () => {
    await helper.unload();
    await taxii.stop();
  });

  function flow(inquire: Partial<FlowNode>): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'medallion' },
      { id: 'srv', type: 'sets-taxii', url: taxii.apiRootUrl, authType: 'none', tlsVerify: true, timeout: 10000 },
      { id: 'inq', type: 'taxii-inquire', z: 'tab', server: 'srv', collection: RW, operation: 'objects', limit: 40, maxItems: 0, output: 'all', wires: [['got']], ...inquire },
      { id: 'got', type: 'helper', z: 'tab' },
    ].map(placed);
  }

  const objectQueries = (): URLSearchParams[] => taxii.requestsTo('/objects/').map((r) => new URLSearchParams(r.rawQuery));

  it('added_after with an offset (node setting) or 7 digits (msg.filters) is sent as UTC Z with 6 digits', async () => {
    const first = taxii.seed(RW, [indicator(1), indicator(2)]);
    const later = taxii.seed(RW, [indicator(3)]);
    const d = first[0].dateAdded;
    const plus1 = new Date(Date.parse(d) + 3_600_000).toISOString().slice(0, 19) + d.slice(19, 26) + '+01:00';
    await helper.load(allNodes, flow({ addedAfter: plus1 }));
    const got = new Collector(helper.getNode('got'));
    const inq = helper.getNode('inq');
    inq?.receive({ payload: '' });
    const [a] = await got.wait(1);
    assert.deepEqual((a.payload as Array<{ id: string }>).map((o) => o.id), later.map((v) => v.id));
    assert.equal(objectQueries().at(-1)?.get('added_after'), d);
    inq?.receive({ payload: '', filters: { added_after: d.slice(0, 26) + '9Z' } });
    const [, b] = await got.wait(2);
    assert.deepEqual((b.payload as Array<{ id: string }>).map((o) => o.id), later.map((v) => v.id));
    assert.equal(objectQueries().at(-1)?.get('added_after'), d);
  });

  it('an unparsable added_after fails the message with a clear error and no request', async () => {
    taxii.seed(RW, [indicator(1)]);
    await helper.load(allNodes, flow({ addedAfter: '2021-31-12' }));
    const rec = new Recorder(helper.getNode('inq'));
    helper.getNode('inq')?.receive({ payload: '' });
    await until('error', () => rec.errors.length > 0);
    assert.match(String((rec.errors[0].err as Error).message), /added_after "2021-31-12" is not a timestamp/);
    await helper.unload();

    await helper.load(allNodes, flow({}));
    const rec2 = new Recorder(helper.getNode('inq'));
    helper.getNode('inq')?.receive({ payload: '', filters: { added_after: 'last tuesday' } });
    await until('error', () => rec2.errors.length > 0);
    assert.match(String((rec2.errors[0].err as Error).message), /added_after "last tuesday" is not a timestamp/);
    assert.deepEqual(taxii.requestsTo('/objects/'), []);
  });

  it('a next token that expires inside one POST\'s block: every object once', async () => {
    const stored = taxii.seed(RW, Array.from({ length: 100 }, (_, i) => indicator(i))); // one date_added
    // the session is forgotten after the second page, as a slow consumer would make it
    taxii.setFault({ query: /next=/, skip: 1, times: 1, expireNextTokens: true });
    await helper.load(allNodes, flow({ output: 'page' }));
    const got = new Collector(helper.getNode('got'));
    helper.getNode('inq')?.receive({ payload: '' });
    await got.wait(3);
    const qs = objectQueries();
    assert.deepEqual(qs.map((q) => q.has('next')), [false, true, true, false, true, true], 'p1, p2, p3 refused, restart, replayed p2, p3');
    const all = got.messages.flatMap((m) => m.payload as Array<{ id: string }>).map((o) => o.id);
    assert.deepEqual(all, stored.map((v) => v.id));
    assert.equal((got.messages.at(-1) as Msg).sets?.inquiry?.count, 100);
  });
});
