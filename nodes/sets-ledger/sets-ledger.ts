/**
 * sets-ledger: the permissioned ledger holding the SETS registry (EVM now; Fabric later).
 * Owns ONE Ledger shared by the anchor-hash / verify-hash nodes that use it (reference-counted,
 * created for the first user, closed after the last one or with this node), and hands its
 * state to them for their badges. The private key lives only in credentials.
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import type { LedgerOwner } from '../shared/owners';
import { str } from '../shared/config';
import { SharedConnection } from '../shared/shared-connection';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { ledgerConfig, parseLedgerSettings, type LedgerSettings } from '../../lib/ops/connections';

interface LedgerDef extends NodeDef {
  kind?: string;
  rpcUrl?: string;
  wsUrl?: string;
  chainId?: string | number;
  contract?: string;
  txType?: string | number;
  gasPrice?: string;
  maxFeePerGas?: string;
  maxPriorityFeePerGas?: string;
  gasLimit?: string | number;
  timeout?: string | number;
  anchorDeadline?: string | number;
  coalesceMs?: string | number;
  maxBatchSize?: string | number;
  maxInFlight?: string | number;
  pollMs?: string | number;
  confirmations?: string | number;
}

interface LedgerCredentials {
  privateKey?: string;
}

type LedgerConfigNode = LedgerOwner & { credentials: LedgerCredentials };

export = function register(RED: NodeAPI): void {
  function SetsLedgerNode(this: LedgerConfigNode, def: LedgerDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: LedgerConfigNode, def: LedgerDef): void {
    const privateKey = node.credentials?.privateKey ? node.credentials.privateKey.trim() : '';
    node.readOnly = privateKey === '';
    let settings: LedgerSettings | undefined;
    try {
      settings = parseLedgerSettings(def as unknown as Record<string, unknown>);
    } catch (err) {
      node.configError = err instanceof Error ? err : new Error(String(err));
    }
    const label = `EVM registry ${str(def.contract) || '(no address)'} at ${str(def.rpcUrl) || '(no URL)'}${node.readOnly ? ' (read-only)' : ''}`;
    node.describe = () => label;
    node.shared = new SharedConnection<Ledger>(node, () => {
      if (node.configError) throw node.configError;
      // settings that cannot apply (e.g. another configuration with this key set the account's
      // in-flight limit differently) are shown as warnings of this node
      return createLedger({ ...ledgerConfig(settings as LedgerSettings, { privateKey: privateKey || undefined }), onWarning: (m: string) => node.warn(m) });
    });
    node.on('close', (_removed: boolean, done: () => void) => {
      node.shared.close().then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType<LedgerConfigNode, LedgerDef, unknown, LedgerCredentials>('sets-ledger', SetsLedgerNode, {
    credentials: { privateKey: { type: 'password' } },
  });
};
