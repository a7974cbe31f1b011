/**
 * What the SETS config nodes expose to the flow nodes that use them (looked up with
 * RED.nodes.getNode(id) and narrowed to these shapes).
 */
import type { AmqpBus } from '../../lib/bus/amqp';
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

/** sets-broker */
export type BrokerOwner = ConnectionOwner<AmqpBus>;
