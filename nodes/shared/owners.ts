/**
 * What the SETS config nodes expose to the flow nodes that use them (looked up with
 * RED.nodes.getNode(id) and narrowed to these shapes).
 */
import type { Bus } from '../../lib/bus/bus';
import type { Ledger } from '../../lib/ledger/ledger';
import type { TaxiiConnection } from '../../lib/ops/taxii-connection';
import type { Node } from './types';
import type { ConnectionOwner } from './use-connection';

/** sets-ledger */
export interface LedgerOwner extends ConnectionOwner<Ledger> {
  /** true when no private key is configured (verification only) */
  readOnly: boolean;
}

/** sets-taxii */
export interface TaxiiOwner extends Node {
  configError?: Error;
  /** the shared client (created on first use); throws the configuration error if any */
  connection(): TaxiiConnection;
  describe(): string;
}

/** sets-broker: RabbitMQ, or the in-process broker (lib/bus/memory.ts) */
export type BrokerKind = 'amqp' | 'in-process';

/** sets-broker */
export interface BrokerOwner extends ConnectionOwner<Bus> {
  /** absent in flows saved before the in-process broker existed: RabbitMQ */
  kind?: BrokerKind;
}
