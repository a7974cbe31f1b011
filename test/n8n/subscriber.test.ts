/**
 * flows/sets-producer-rabbitmq.json and flows/sets-subscriber.json executed by n8n's own engine
 * (test/support/n8n.ts: n8n-core WorkflowExecute, the trigger activated by n8n-core ActiveWorkflows)
 * against the real RabbitMQ and hardhat of the test services.
 *
 * The producer starts at its first SETS node ("Anchor hashes") with the items of its "Sample STIX
 * bundle" Set node (n8n-nodes-base is not installed here; the n8n app test runs the whole file).
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as amqp from 'amqplib';
import type { IDataObject, INodeExecutionData } from 'n8n-workflow';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import {
  N8nHarness,
  activeResources,
  amqpCredential,
  quietResources,
  credentialRefs,
  ledgerCredential,
  loadFlow,
  nodeOf,
  rawSetOutput,
  setParameters,
  settledResources,
  type ActiveWorkflow,
  type CredentialMap,
  type RunResult,
  type WorkflowFile,
} from '../support/n8n';

const COLLECTION = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';

interface Verification {
  status: string;
  id: string;
  reason?: string;
  expected?: string;
  actual?: string;
}

function verificationOf(item: INodeExecutionData): Verification {
  const sets = item.json.sets as IDataObject | undefined;
  assert.ok(sets && typeof sets.verification === 'object', `item has no sets.verification: ${JSON.stringify(item.json)}`);
  return sets.verification as unknown as Verification;
}

/** The sample bundle with fresh ids (the ledger is shared by every test: keys must not repeat). */
function freshBundle(producer: WorkflowFile): INodeExecutionData[] {
  const [item] = rawSetOutput(producer, 'Sample STIX bundle');
  const bundle = structuredClone(item.json.object) as { id: string; objects: Array<Record<string, unknown>> };
  const ids = new Map<string, string>();
  for (const o of bundle.objects) ids.set(o.id as string, `${o.type as string}--${randomUUID()}`);
  const text = JSON.stringify(bundle).replace(/"([a-z0-9-]+--[0-9a-f-]{36})"/g, (m, id: string) => (ids.has(id) ? JSON.stringify(ids.get(id)) : m));
  return [{ json: { object: JSON.parse(text) as IDataObject } }];
}

function objectsOf(items: INodeExecutionData[]): Array<Record<string, unknown>> {
  return (items[0].json.object as { objects: Array<Record<string, unknown>> }).objects;
}

describe('n8n engine: SETS producer over RabbitMQ → SETS Trigger (flows/sets-producer-rabbitmq.json, flows/sets-subscriber.json)', function () {
  this.timeout(120_000);
  let h: N8nHarness;
  let evm: ChainHandle;
  let amqpUrl: string;
  let admin: amqp.ChannelModel;
  let adminCh: amqp.Channel;
  const queues: string[] = [];

  before(async () => {
    evm = await chain();
    amqpUrl = (await rabbit()).url;
    const contract = await evm.deployRegistry();
    const credentials: CredentialMap = {
      SetsEvmLedger001: ledgerCredential(evm, contract, evm.accounts[1].privateKey),
      SetsAmqpLocal001: amqpCredential(amqpUrl),
    };
    h = await N8nHarness.create({ credentials });
    admin = await amqp.connect(amqpUrl);
    adminCh = await admin.createChannel();
  });

  after(async () => {
    await h?.close();
    for (const q of queues) await adminCh?.deleteQueue(q).catch(() => undefined);
    await admin?.close().catch(() => undefined);
  });

  /** The subscriber workflow on its own queues (unique per test, deleted after). */
  function subscriber(params: IDataObject = {}, options: IDataObject = {}): { wf: WorkflowFile; queue: string; dlq: string } {
    const wf = loadFlow('sets-subscriber');
    const queue = `n8n-test-sub-${randomUUID()}`;
    const dlq = `${queue}-failed`;
    queues.push(queue, dlq);
    const trig = nodeOf(wf, 'Shared CTI');
    setParameters(wf, 'Shared CTI', {
      queue,
      waitForAnchor: 5000,
      ...params,
      options: { ...(trig.parameters.options as IDataObject), deadLetterQueue: dlq, ...options },
    });
    return { wf, queue, dlq };
  }

  async function produce(items: INodeExecutionData[], from = 'Anchor hashes'): Promise<RunResult> {
    const producer = loadFlow('sets-producer-rabbitmq');
    const r = await h.run(producer, { startNode: from, input: items });
    assert.equal(r.status, 'success', `producer failed: ${r.error?.message}`);
    return r;
  }

  /** on a channel of its own: a missing queue closes the channel that asked */
  async function queueExists(queue: string): Promise<boolean> {
    const ch = await admin.createChannel();
    ch.on('error', () => undefined);
    try {
      await ch.checkQueue(queue);
      await ch.close();
      return true;
    } catch {
      return false;
    }
  }

  async function messages(queue: string): Promise<number> {
    return (await adminCh.checkQueue(queue)).messageCount;
  }

  it('the workflows use our node types and name their credentials', () => {
    const producer = loadFlow('sets-producer-rabbitmq');
    const sub = loadFlow('sets-subscriber');
    assert.deepEqual(
      credentialRefs(producer).map((c) => `${c.node}:${c.type}:${c.id}`),
      ['Anchor hashes:setsEvmLedgerApi:SetsEvmLedger001', 'Publish to RabbitMQ:setsAmqpApi:SetsAmqpLocal001'],
    );
    assert.deepEqual(
      credentialRefs(sub).map((c) => `${c.node}:${c.type}`),
      ['Shared CTI:setsAmqpApi', 'Shared CTI:setsEvmLedgerApi'],
    );
    for (const n of [...producer.nodes, ...sub.nodes].filter((x) => x.type.startsWith('n8n-nodes-sets.'))) {
      assert.ok(h.nodeType(n.type), n.type);
    }
  });

  it('publish → the trigger verifies every object (Verified output), each message acked after its execution: the queue is empty after', async () => {
    const { wf, queue } = subscriber();
    const active = await h.activate(wf);
    try {
      const producer = loadFlow('sets-producer-rabbitmq');
      const input = freshBundle(producer);
      const sent = objectsOf(input);
      const r = await produce(input);
      // anchoring: three objects of one item, one ledger transaction
      const anchors = (r.output('Anchor hashes')[0].json.sets as { items: Array<{ anchor: { tx: string } }> }).items;
      assert.equal(anchors.length, 3);
      assert.equal(new Set(anchors.map((a) => a.anchor.tx)).size, 1);
      const published = r.output('Publish to RabbitMQ')[0].json.sets as { published: { count: number; routingKeys: string[] } };
      assert.equal(published.published.count, 3);
      assert.deepEqual([...published.published.routingKeys].sort(), ['indicator', 'malware', 'relationship'].map((t) => `${COLLECTION}.${t}`));

      await active.waitFor((ex) => ex.length >= 3, 30_000, 'three executions');
      const got = active.executions.map((ex) => {
        assert.equal(ex.status, 'success', ex.error?.message);
        assert.equal(ex.output('Shared CTI', 1).length, 0, 'nothing on Rejected');
        const [item] = ex.output('Shared CTI', 0);
        const v = verificationOf(item);
        assert.equal(v.status, 'verified', JSON.stringify(v));
        assert.equal((item.json.amqp as IDataObject).queue, queue);
        return v.id;
      });
      assert.deepEqual(got.sort(), sent.map((o) => o.id as string).sort());
      assert.deepEqual(active.triggerErrors, []);
    } finally {
      await active.close();
    }
    // consumer cancelled: anything unacked would be back in the queue now
    assert.equal(await messages(queue), 0);
  });

  it('an object altered after its hash was anchored arrives on Rejected (mismatch) and is acked; with "Dead-Letter" it lands in the dead-letter queue', async () => {
    const producer = loadFlow('sets-producer-rabbitmq');
    const input = freshBundle(producer);
    await produce(input);
    // the anchored run also published the originals; subscribe afterwards so only the tampered copy arrives
    const tampered = structuredClone(objectsOf(input)[0]);
    tampered.name = 'Harmless landing page';

    const { wf, queue } = subscriber();
    const active = await h.activate(wf);
    try {
      await produce([{ json: { object: tampered as IDataObject } }], 'Publish to RabbitMQ');
      const ex = await active.execution(1);
      assert.equal(ex.status, 'success', ex.error?.message);
      assert.equal(ex.output('Shared CTI', 0).length, 0, 'nothing on Verified');
      const [item] = ex.output('Shared CTI', 1);
      const v = verificationOf(item);
      assert.equal(v.status, 'mismatch');
      assert.equal(v.id, tampered.id);
      assert.notEqual(v.expected, v.actual);
    } finally {
      await active.close();
    }
    assert.equal(await messages(queue), 0);

    const dl = subscriber({ onRejected: 'deadLetter' });
    const active2 = await h.activate(dl.wf);
    try {
      await produce([{ json: { object: tampered as IDataObject } }], 'Publish to RabbitMQ');
      await waitUntil(async () => (await messages(dl.dlq)) === 1, 15_000, 'the tampered message in the dead-letter queue');
      assert.equal(active2.executions.length, 0, 'a dead-lettered rejection starts no execution');
    } finally {
      await active2.close();
    }
    assert.equal(await messages(dl.queue), 0);
    const m = await adminCh.get(dl.dlq, { noAck: true });
    assert.ok(m, 'dead-lettered message');
    assert.equal((JSON.parse(m.content.toString()) as { id: string }).id, tampered.id);
  });

  it('a failed execution does not ack: the message goes to the dead-letter queue (On Execution Failure: Dead-Letter)', async () => {
    const { wf, queue, dlq } = subscriber();
    // the user's step after Verified fails: publishing to a TAXII server that is not there
    wf.nodes.push({
      id: randomUUID(),
      name: 'Forward to partner TAXII',
      type: 'n8n-nodes-sets.sets',
      typeVersion: 1,
      position: [300, 0],
      parameters: { resource: 'object', operation: 'publish', collection: COLLECTION },
      credentials: { setsTaxiiApi: { id: 'nowhere', name: 'unreachable TAXII' } },
    });
    wf.connections['Shared CTI'] = { main: [[{ node: 'Forward to partner TAXII', type: 'main', index: 0 }], []] };
    h.credentials.add('nowhere', { type: 'setsTaxiiApi', data: { url: 'http://127.0.0.1:9/taxii2/', authType: 'none', timeout: 2000 } });

    const producer = loadFlow('sets-producer-rabbitmq');
    const input = freshBundle(producer);
    const one = objectsOf(input)[1];
    const active = await h.activate(wf);
    try {
      await produce([{ json: { object: { type: 'bundle', id: `bundle--${randomUUID()}`, objects: [one] } } }]);
      const ex = await active.execution(1);
      assert.equal(ex.status, 'error');
      assert.equal(verificationOf(ex.output('Shared CTI', 0)[0]).status, 'verified');
      // the TAXII server named by host:port with the reason in words (n8n's NodeApiError would
      // replace a message containing ECONNREFUSED by "The service refused the connection ...")
      assert.match(String(ex.error?.message), /^TAXII server 127\.0\.0\.1:9 not reachable: connection refused \((GET|POST) http:\/\/127\.0\.0\.1:9\//);
      assert.match(String((ex.error as { description?: string } | undefined)?.description), /code NETWORK, system error ECONNREFUSED/);
      assert.equal((ex.error as { node?: { name?: string } } | undefined)?.node?.name, 'Forward to partner TAXII');
      await waitUntil(async () => (await messages(dlq)) === 1, 15_000, 'the message in the dead-letter queue');
    } finally {
      await active.close();
    }
    assert.equal(await messages(queue), 0);
  });

  it("n8n's manual test mode (\"listen for test event\"): WorkflowExecute runs the trigger, the first message is the run's data", async () => {
    const { wf, queue } = subscriber();
    const producer = loadFlow('sets-producer-rabbitmq');
    const input = freshBundle(producer);
    const one = objectsOf(input)[0];
    const running = h.run(wf, { startNode: 'Shared CTI' });
    // the consumer starts in manualTriggerFunction; publish until the run has its event
    let r: RunResult | undefined;
    void running.then((x) => (r = x));
    await waitUntil(() => queueExists(queue), 20_000, 'the consumer queue');
    await produce([{ json: { object: { type: 'bundle', id: `bundle--${randomUUID()}`, objects: [one] } } }]);
    await waitUntil(async () => r !== undefined, 20_000, 'the manual run');
    const result = r as RunResult;
    assert.equal(result.status, 'success', result.error?.message);
    assert.equal(verificationOf(result.output('Shared CTI', 0)[0]).status, 'verified');
  });

  it('bad settings fail activation with a clear error: unreachable broker, invalid collection', async () => {
    const { wf } = subscriber();
    const broken = structuredClone(wf);
    broken.nodes[broken.nodes.findIndex((n) => n.name === 'Shared CTI')].credentials = {
      setsAmqpApi: { id: 'deadBroker', name: 'dead broker' },
      setsEvmLedgerApi: { id: 'SetsEvmLedger001', name: 'SETS local EVM' },
    };
    h.credentials.add('deadBroker', amqpCredential('amqp://guest:guest@127.0.0.1:9/', { timeout: 1500 }));
    const before = await quietResources();
    const t0 = Date.now();
    await assert.rejects(h.activate(broken), (err: Error) => {
      // n8n's WorkflowActivationError quotes the trigger's NodeOperationError: the broker's
      // host:port and the reason in words, not n8n's generic text for ECONNREFUSED; the node is named
      assert.equal(err.message, 'There was a problem activating the workflow: "RabbitMQ broker 127.0.0.1:9 not reachable: connection refused"');
      assert.doesNotMatch(err.message, /perhaps it is offline/);
      assert.equal((err as { node?: { name?: string } }).node?.name, 'Shared CTI');
      return true;
    });
    // the first refused attempt fails the activation (not the 30 s consumer wait, nor 1.5 s timeout)
    const took = Date.now() - t0;
    assert.ok(took < 5_000, `activation against a dead port failed after ${took} ms`);
    assert.deepEqual(await settledResources(before), {}, 'a failed activation leaves nothing open');

    const bad = subscriber({ collection: 'not a collection id' }).wf;
    await assert.rejects(h.activate(bad), (err: Error) => {
      assert.match(err.message, /problem activating the workflow: ".*collection/i);
      return true;
    });
  });

  it('closing the trigger leaves no socket or timer behind', async () => {
    const { wf } = subscriber();
    // one warm-up activation: lazily created process-wide things (DNS cache, n8n services) are not leaks
    const warm = await h.activate(wf);
    await warm.close();
    const before = await quietResources();
    const active: ActiveWorkflow = await h.activate(wf);
    const during = activeResources();
    assert.ok((during.TCPSocketWrap ?? 0) > (before.TCPSocketWrap ?? 0), `the trigger holds a broker connection while active: ${JSON.stringify(during)}`);
    const producer = loadFlow('sets-producer-rabbitmq');
    const input = freshBundle(producer);
    await produce([{ json: { object: { type: 'bundle', id: `bundle--${randomUUID()}`, objects: [objectsOf(input)[2]] } } }]);
    await active.execution(1);
    await active.close();
    assert.deepEqual(await settledResources(before), {}, 'resources left after close');
  });
});

async function waitUntil(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
