/**
 * Broker recovery (issue 10) in the n8n nodes, on n8n's own engine (test/support/n8n.ts) against
 * the real RabbitMQ and hardhat: the SETS Trigger without a queue name consumes from its own
 * durable queue (what is published while the workflow is inactive waits for it), and SETS
 * "Publish to RabbitMQ" refuses a message no queue is bound for unless Allow Unroutable is set.
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as amqp from 'amqplib';
import type { IDataObject } from 'n8n-workflow';
import { chain, rabbit } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { N8nHarness, amqpCredential, ledgerCredential, loadFlow, nodeOf, setParameters, type CredentialMap } from '../support/n8n';

describe('n8n engine: broker recovery (own durable trigger queue, unroutable publishes refused)', function () {
  this.timeout(120_000);
  let h: N8nHarness;
  let evm: ChainHandle;
  let admin: amqp.ChannelModel;
  let adminCh: amqp.Channel;
  const queues: string[] = [];

  before(async () => {
    evm = await chain();
    const amqpUrl = (await rabbit()).url;
    const contract = await evm.deployRegistry();
    const credentials: CredentialMap = {
      SetsEvmLedger001: ledgerCredential(evm, contract, evm.accounts[2].privateKey),
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

  const indicator = (): IDataObject => ({
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${randomUUID()}`,
    created: '2024-01-01T00:00:00.000Z',
    modified: '2024-01-01T00:00:00.000Z',
    pattern: "[ipv4-addr:value = '198.51.100.7']",
    pattern_type: 'stix',
    valid_from: '2024-01-01T00:00:00Z',
  });

  it('SETS Trigger without a queue name: its own durable queue sets.n8n.<workflow id>.<node id> keeps what is published while the workflow is inactive', async () => {
    const collection = randomUUID();
    const wf = loadFlow('sets-subscriber');
    wf.id = `wf-${randomUUID().slice(0, 8)}`;
    const trig = nodeOf(wf, 'Shared CTI');
    setParameters(wf, 'Shared CTI', { queue: '', collection, verify: false, options: { ...(trig.parameters.options as IDataObject), deadLetterQueue: '' } });
    const queue = `sets.n8n.${wf.id}.${trig.id}`;
    queues.push(queue);
    const first = await h.activate(wf);
    const q = await adminCh.checkQueue(queue);
    assert.equal(q.consumerCount, 1);
    await first.close();
    // inactive: publish with the SETS node (mandatory: the queue is still bound, so it is routable)
    const producer = loadFlow('sets-producer-rabbitmq');
    setParameters(producer, 'Publish to RabbitMQ', { collection });
    const o = indicator();
    const r = await h.run(producer, { startNode: 'Publish to RabbitMQ', input: [{ json: { object: o } }] });
    assert.equal(r.status, 'success', r.error?.message);
    assert.equal((await adminCh.checkQueue(queue)).messageCount, 1);
    const again = await h.activate(wf);
    try {
      const ex = await again.execution(1);
      assert.equal(ex.status, 'success', ex.error?.message);
      const [item] = ex.output('Shared CTI', 0);
      assert.equal((item.json.object as IDataObject).id, o.id);
      assert.equal((item.json.amqp as IDataObject).queue, queue);
    } finally {
      await again.close();
    }
    const after = await adminCh.checkQueue(queue);
    assert.equal(after.messageCount, 0);
  });

  it('SETS Trigger: an object whose verification is undecided (ledger unreachable) is requeued, never emitted as verified or rejected', async () => {
    const collection = randomUUID();
    h.credentials.add('deadLedger', ledgerCredential(evm, '0x' + '11'.repeat(20), undefined, { rpcUrl: 'http://127.0.0.1:9', timeout: 500 }));
    const wf = loadFlow('sets-subscriber');
    wf.id = `wf-${randomUUID().slice(0, 8)}`;
    const trig = nodeOf(wf, 'Shared CTI');
    trig.credentials = { ...trig.credentials, setsEvmLedgerApi: { id: 'deadLedger', name: 'unreachable ledger' } };
    const queue = `n8n-undecided-${randomUUID()}`;
    queues.push(queue, `${queue}-failed`);
    setParameters(wf, 'Shared CTI', { queue, collection, waitForAnchor: 500, options: { ...(trig.parameters.options as IDataObject), deadLetterQueue: `${queue}-failed` } });
    const active = await h.activate(wf);
    try {
      const producer = loadFlow('sets-producer-rabbitmq');
      setParameters(producer, 'Publish to RabbitMQ', { collection });
      const r = await h.run(producer, { startNode: 'Publish to RabbitMQ', input: [{ json: { object: indicator() } }] });
      assert.equal(r.status, 'success', r.error?.message);
      // verified at once would start an execution; undecided waits 5 s and goes back to the queue
      await new Promise((res) => setTimeout(res, 8_000));
      assert.equal(active.executions.length, 0, 'an undecided object starts no execution (neither Verified nor Rejected)');
    } finally {
      await active.close();
    }
    assert.equal((await adminCh.checkQueue(queue)).messageCount, 1, 'the message is back in its queue');
    assert.equal((await adminCh.checkQueue(`${queue}-failed`)).messageCount, 0, 'not dead-lettered');
  });

  it('SETS Publish to RabbitMQ: UNROUTABLE error naming exchange and routing key when no queue is bound; Allow Unroutable publishes anyway', async () => {
    const collection = randomUUID();
    const producer = loadFlow('sets-producer-rabbitmq');
    setParameters(producer, 'Publish to RabbitMQ', { collection });
    const r = await h.run(producer, { startNode: 'Publish to RabbitMQ', input: [{ json: { object: indicator() } }] });
    assert.equal(r.status, 'error');
    assert.match(String(r.error?.message), /UNROUTABLE/);
    assert.match(String(r.error?.message), new RegExp(`${collection}\\.indicator`));
    const loose = loadFlow('sets-producer-rabbitmq');
    const pub = nodeOf(loose, 'Publish to RabbitMQ');
    setParameters(loose, 'Publish to RabbitMQ', { collection, options: { ...((pub.parameters.options as IDataObject | undefined) ?? {}), allowUnroutable: true } });
    const ok = await h.run(loose, { startNode: 'Publish to RabbitMQ', input: [{ json: { object: indicator() } }] });
    assert.equal(ok.status, 'success', ok.error?.message);
  });
});
