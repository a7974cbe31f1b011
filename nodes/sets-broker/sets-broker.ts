/**
 * sets-broker: a RabbitMQ broker for SETS distribution. Owns ONE AmqpBus shared by the
 * rabbit-subscribe / rabbit-publish nodes that use it (reference-counted, reconnecting by
 * itself), and hands its state to them for their badges. Username and password live only in
 * credentials; the URL built from the settings carries none.
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import type { BrokerOwner } from '../shared/owners';
import { bool, int, optStr, str } from '../shared/config';
import { SharedConnection } from '../shared/shared-connection';
import { AmqpBus } from '../../lib/bus/amqp';
import { brokerConfig, type BrokerSettings } from '../../lib/ops/connections';

interface BrokerDef extends NodeDef {
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

export = function register(RED: NodeAPI): void {
  function SetsBrokerNode(this: BrokerConfigNode, def: BrokerDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: BrokerConfigNode, def: BrokerDef): void {
    let settings: BrokerSettings | undefined;
    try {
      const tls = bool(def.tls, false);
      settings = {
        host: str(def.host, 'localhost') || 'localhost',
        port: int(def.port, 'port', tls ? 5671 : 5672, 1, 65_535),
        vhost: str(def.vhost, '/') || '/',
        tls,
        tlsVerify: bool(def.tlsVerify, true),
        exchange: str(def.exchange, 'sets') || 'sets',
        prefetch: int(def.prefetch, 'prefetch', 100, 1, 65_535),
        heartbeatSec: int(def.heartbeat, 'heartbeat', 30, 0, 3600),
        timeoutMs: int(def.timeout, 'timeout', 10_000, 100, 600_000),
        clientName: `Node-RED SETS ${def.name || def.id}`,
      };
      const ca = optStr(def.ca);
      if (ca) settings.ca = ca;
    } catch (err) {
      node.configError = err instanceof Error ? err : new Error(String(err));
    }
    const label = `${bool(def.tls, false) ? 'amqps' : 'amqp'}://${str(def.host) || 'localhost'}:${str(def.port) || '5672'}${str(def.vhost) || '/'} exchange ${str(def.exchange) || 'sets'}`;
    node.describe = () => label;
    node.shared = new SharedConnection<AmqpBus>(node, () => {
      if (node.configError) throw node.configError;
      const creds = node.credentials ?? {};
      const bus = new AmqpBus(brokerConfig(settings as BrokerSettings, { username: creds.username, password: creds.password }));
      bus.start();
      return bus;
    });
    node.on('close', (_removed: boolean, done: () => void) => {
      node.shared.close().then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType<BrokerConfigNode, BrokerDef, unknown, BrokerCredentials>('sets-broker', SetsBrokerNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' } },
  });
};
