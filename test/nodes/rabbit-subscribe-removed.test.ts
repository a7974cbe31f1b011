/**
 * rabbit-subscribe's close(removed): what a deleted node leaves on a real RabbitMQ broker (own
 * vhost and user). Deleted and deployed: its consumer is gone and its temporary queue is deleted;
 * a named queue is kept with its bindings (messages published afterwards wait in it). A redeploy
 * of an unchanged flow and a node that stays keep their consumers.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { rabbit } from '../support/services';
import type { RabbitHandle } from '../support/rabbit';
import { AmqpBus } from '../../lib/bus/amqp';
import { routingKey } from '../../lib/bus/routing';
import { allNodes, helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { collectionId, indicator } from './stix';

interface QueueRow {
  name: string;
  consumers: number;
  messages: number;
}

describe(`rabbit-subscribe removed from the flows, on Node-RED ${nodeRedVersion} and a real RabbitMQ`, function () {
  let r: RabbitHandle;
  let admin: AmqpBus;
  const tag = randomBytes(4).toString('hex');
  const vhost = `sets-removed-${tag}`;
  const user = `sets-removed-${tag}`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const exchange = `sets-${tag}`;
  const named = `sets-named-${tag}`;

  before(async function () {
    this.timeout(120_000);
    r = await rabbit();
    await r.ctl(['add_vhost', vhost]);
    await r.ctl(['add_user', user, password]);
    await r.ctl(['set_permissions', '-p', vhost, user, '.*', '.*', '.*']);
    admin = new AmqpBus({ url: r.url.replace(/\/\/[^@]*@/, '//'), username: user, password, vhost, exchange });
    await admin.whenConnected();
    await helper.startServer();
  });

  after(async () => {
    await admin?.close();
    await helper.stopServer();
    if (r) {
      await r.ctl(['delete_vhost', vhost]).catch(() => undefined);
      await r.ctl(['delete_user', user]).catch(() => undefined);
    }
  });

  afterEach(async () => {
    await helper.unload();
  });

  /** The vhost's queues as the broker lists them (rabbitmqctl), without our admin's own. */
  async function queues(): Promise<QueueRow[]> {
    const out = await r.ctl(['list_queues', '-p', vhost, 'name', 'consumers', 'messages', '--no-table-headers', '--quiet']);
    return out
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length === 3 && f[0] !== '')
      .map(([name, consumers, messages]) => ({ name, consumers: Number(consumers), messages: Number(messages) }));
  }
  const temporary = (rows: QueueRow[]): QueueRow[] => rows.filter((q) => q.name.startsWith('amq.gen-'));

  function flow(coll: string, ids: string[]): FlowNode[] {
    const all: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'removed' },
      { id: 'mq', type: 'sets-broker', host: '127.0.0.1', port: Number(new URL(r.url).port), vhost, exchange, prefetch: 10, heartbeat: 30, timeout: 2000 },
      // a temporary queue (server-named, exclusive) and a named durable one, both on `coll`
      { id: 'tmp', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'types', collection: coll, types: '', queueMode: 'temporary', queue: '', ackMode: 'auto', wires: [[]] },
      // no queue name, durable (the default): the node's own queue sets.own
      { id: 'own', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'types', collection: coll, types: '', queue: '', ackMode: 'auto', wires: [[]] },
      { id: 'named', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'types', collection: coll, types: '', queue: named, ackMode: 'auto', wires: [[]] },
      // stays deployed, so the shared connection stays open while the others are removed
      { id: 'stay', type: 'rabbit-subscribe', z: 'tab', broker: 'mq', bindingMode: 'keys', keys: `${coll}.stay`, queueMode: 'temporary', queue: '', ackMode: 'auto', wires: [[]] },
    ];
    return all.filter((n) => n.type === 'tab' || n.type === 'sets-broker' || ids.includes(n.id)).map(placed);
  }
  const creds = { mq: { username: user, password } };

  it('deleted: cancels its consumer and deletes its temporary queue and its own sets.<id> queue; keeps a named queue and its bindings', async function () {
    this.timeout(90_000);
    const coll = collectionId();
    await helper.load(allNodes, flow(coll, ['tmp', 'own', 'named', 'stay']), creds);
    await until('the own durable queue sets.own is consumed', async () => (await queues()).find((q) => q.name === 'sets.own')?.consumers === 1);
    await helper.setFlows(flow(coll, ['tmp', 'named', 'stay']), 'nodes', creds);
    await until('the removed node deleted its own queue sets.own', async () => !(await queues()).some((q) => q.name === 'sets.own'));
    const consumers = (): Promise<QueueRow[]> =>
      until('three consumers', async () => {
        const rows = await queues();
        return temporary(rows).filter((q) => q.consumers === 1).length === 2 && rows.find((q) => q.name === named)?.consumers === 1 ? rows : undefined;
      });
    const first = await consumers();

    // a full redeploy restarts every node (close with removed = false): the named queue stays and
    // is consumed again; the temporary queues are new ones
    await helper.setFlows(flow(coll, ['tmp', 'named', 'stay']), 'full', creds);
    const before = await consumers();
    assert.ok(before.some((q) => q.name === named), 'the named queue survives a redeploy');
    const tmpQueues = temporary(before).map((q) => q.name);
    assert.equal(tmpQueues.filter((n) => temporary(first).some((q) => q.name === n)).length, 0, 'the restarted nodes declared new temporary queues');

    // delete 'tmp' and 'named' (Node-RED closes them with removed = true); 'stay' keeps the connection open
    await helper.setFlows(flow(coll, ['stay']), 'nodes', creds);
    const after = await until('the removed nodes are gone from the broker', async () => {
      const rows = await queues();
      const named0 = rows.find((q) => q.name === named);
      return temporary(rows).length === 1 && named0?.consumers === 0 ? rows : undefined;
    });
    const left = temporary(after);
    assert.equal(left[0].consumers, 1, "the remaining node's temporary queue still has its consumer");
    assert.equal(tmpQueues.filter((n) => after.some((q) => q.name === n)).length, 1, "the removed node's temporary queue is deleted");
    assert.match(logText(), new RegExp(`queue ${named} is kept on the broker`), 'the log says the named queue is kept');

    // the named queue is still bound: what is published for the collection waits in it
    await admin.publish({ routingKey: routingKey(coll, 'indicator'), body: indicator() });
    await until('the message waits in the named queue', async () => (await queues()).find((q) => q.name === named)?.messages === 1);

    // the last user removed: the connection closes and no temporary queue is left
    await helper.setFlows(flow(coll, []), 'nodes', creds);
    await until('no temporary queue and no consumer left', async () => {
      const rows = await queues();
      return temporary(rows).length === 0 && rows.every((q) => q.consumers === 0);
    });
    const conns = await r.ctl(['list_connections', '-p', vhost, 'client_properties', '--no-table-headers', '--quiet']);
    assert.ok(!conns.includes('Node-RED SETS'), 'the broker connection of the flow is closed');
    await admin.deleteQueue(named);
  });
});
