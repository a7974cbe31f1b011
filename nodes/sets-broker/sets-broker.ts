/**
 * sets-broker: the broker for SETS distribution. Owns ONE bus shared by the rabbit-subscribe /
 * rabbit-publish nodes that use it (reference-counted), and hands its state to them for their
 * badges.
 *
 * `kind`:
 * - `amqp` (default, and for flows saved before `kind` existed): RabbitMQ through AmqpBus,
 *   reconnecting by itself. Username and password live only in credentials; the URL built from
 *   the settings carries none.
 * - `in-process`: lib/bus/memory.ts — a broker inside this Node-RED with the same topic / queue /
 *   ack semantics, for demos and tests. Config nodes with the same broker name share it. NOT
 *   durable; said loudly in the log and in the users' badges.
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import { registerAdminEndpoints } from '../shared/admin-endpoints';
import type { BrokerKind, BrokerOwner } from '../shared/owners';
import { bool, int, oneOf, str } from '../shared/config';
import { SharedConnection } from '../shared/shared-connection';
import { AmqpBus } from '../../lib/bus/amqp';
import type { Bus } from '../../lib/bus/bus';
import { MemoryBus, type MemoryBusConfig } from '../../lib/bus/memory';
import { brokerConfig, parseBrokerSettings, type BrokerSettings } from '../../lib/ops/connections';

interface BrokerDef extends NodeDef {
  /** 'amqp' | 'in-process'; absent in older flows = 'amqp' */
  kind?: string;
  /** in-process: the broker's name (config nodes with one name share one broker) */
  brokerName?: string;
  host?: string;
  port?: string | number;
  vhost?: string;
  tls?: boolean | string;
  tlsVerify?: boolean | string;
  ca?: string;
  exchange?: string;
  prefetch?: string | number;
  heartbeat?: string | number;
  timeout?: string | number;
}

interface BrokerCredentials {
  username?: string;
  password?: string;
}

type BrokerConfigNode = BrokerOwner & { credentials: BrokerCredentials };

/** broker name when the setting is empty */
const IN_PROCESS_DEFAULT_NAME = 'default';

export = function register(RED: NodeAPI): void {
  registerAdminEndpoints(RED);
  function SetsBrokerNode(this: BrokerConfigNode, def: BrokerDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: BrokerConfigNode, def: BrokerDef): void {
    let kind: BrokerKind = 'amqp';
    try {
      kind = oneOf(def.kind, 'broker kind', ['amqp', 'in-process'] as const, 'amqp');
    } catch (err) {
      node.configError = err instanceof Error ? err : new Error(String(err));
    }
    node.kind = kind;
    if (kind === 'in-process') setupInProcess(node, def);
    else setupAmqp(node, def);
    node.on('close', (_removed: boolean, done: () => void) => {
      node.shared.close().then(
        () => done(),
        () => done(),
      );
    });
  }

  function setupInProcess(node: BrokerConfigNode, def: BrokerDef): void {
    const name = str(def.brokerName) || IN_PROCESS_DEFAULT_NAME;
    let cfg: MemoryBusConfig | undefined;
    try {
      cfg = {
        name,
        exchange: str(def.exchange, 'sets') || 'sets',
        prefetch: int(def.prefetch, 'prefetch', 100, 1, 65_535),
        clientName: `Node-RED SETS ${def.name || def.id}`,
      };
    } catch (err) {
      node.configError ??= err instanceof Error ? err : new Error(String(err));
    }
    node.describe = () => `in-process broker '${name}' exchange ${cfg?.exchange ?? 'sets'}`;
    if (!node.configError) {
      node.warn(`SETS: using the IN-PROCESS broker '${name}' — messages are not durable and stay inside this Node-RED; configure RabbitMQ for real use`);
    }
    node.shared = new SharedConnection<Bus>(node, () => {
      if (node.configError) throw node.configError;
      const bus = new MemoryBus(cfg);
      bus.start();
      return bus;
    });
  }

  function setupAmqp(node: BrokerConfigNode, def: BrokerDef): void {
    let settings: BrokerSettings | undefined;
    try {
      settings = parseBrokerSettings(def as unknown as Record<string, unknown>, `Node-RED SETS ${def.name || def.id}`);
    } catch (err) {
      node.configError ??= err instanceof Error ? err : new Error(String(err));
    }
    const label = `${bool(def.tls, false) ? 'amqps' : 'amqp'}://${str(def.host) || 'localhost'}:${str(def.port) || '5672'}${str(def.vhost) || '/'} exchange ${str(def.exchange) || 'sets'}`;
    node.describe = () => label;
    node.shared = new SharedConnection<Bus>(node, () => {
      if (node.configError) throw node.configError;
      const creds = node.credentials ?? {};
      const bus = new AmqpBus(brokerConfig(settings as BrokerSettings, { username: creds.username, password: creds.password }));
      bus.start();
      return bus;
    });
  }

  RED.nodes.registerType<BrokerConfigNode, BrokerDef, unknown, BrokerCredentials>('sets-broker', SetsBrokerNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' } },
  });
};
