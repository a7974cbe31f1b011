/**
 * rabbit-ack with a "settle as" it cannot read settles nothing (the broker redelivers the message)
 * instead of falling back to ack, which would drop a message meant for requeue or dead-lettering.
 * A per-message msg.amqp.nack still settles as asked.
 */
import { strict as assert } from 'node:assert';
import { deliveries } from '../../nodes/shared/deliveries';
import { Recorder, allNodes, helper, until, type FlowNode } from './helper';

describe('rabbit-ack: unreadable configuration', function () {
  afterEach(async () => {
    await helper.unload();
  });

  const flow: FlowNode[] = [
    { id: 'tab', type: 'tab', label: 'ack' },
    { id: 'ack', type: 'rabbit-ack', z: 'tab', action: 'drop-it' },
  ];

  function tracked(): { id: string; calls: string[] } {
    const calls: string[] = [];
    const id = deliveries.track('test-owner', {
      ack: () => void calls.push('ack'),
      nack: (requeue: boolean) => void calls.push(requeue ? 'requeue' : 'dead-letter'),
    });
    return { id, calls };
  }

  it('does not ack: the message fails with the configuration error and stays unsettled', async () => {
    await helper.load(allNodes, flow);
    const rec = new Recorder(helper.getNode('ack'));
    const d = tracked();
    helper.getNode('ack')?.receive({ payload: {}, amqp: { deliveryId: d.id } });
    await until('the configuration error', () => rec.errors.find((e) => /settle as/.test(String((e.err as Error)?.message ?? e.err))));
    assert.deepEqual(d.calls, [], 'nothing settled');
    assert.equal(deliveries.ownerOf(d.id), 'test-owner', 'still unsettled');
    assert.equal(deliveries.release('test-owner'), 1);
  });

  it('a per-message msg.amqp.nack is still honoured', async () => {
    await helper.load(allNodes, flow);
    const d = tracked();
    helper.getNode('ack')?.receive({ payload: {}, amqp: { deliveryId: d.id, nack: { requeue: true } } });
    await until('settled', () => d.calls.length > 0);
    assert.deepEqual(d.calls, ['requeue']);
  });
});
