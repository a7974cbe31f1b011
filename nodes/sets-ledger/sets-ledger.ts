/**
 * sets-ledger: the permissioned ledger holding the SETS registry (EVM now; Fabric later).
 * Owns ONE Ledger shared by the anchor-hash / verify-hash nodes that use it (reference-counted,
 * created for the first user, closed after the last one or with this node), and hands its
 * state to them for their badges. The private key lives only in credentials.
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import type { LedgerOwner } from '../shared/owners';
import { ConfigError, int, oneOf, optInt, optStr, str } from '../shared/config';
import { SharedConnection } from '../shared/shared-connection';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { ledgerConfig, type LedgerSettings } from '../../lib/ops/connections';

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
}

interface LedgerCredentials {
  privateKey?: string;
}

type LedgerConfigNode = LedgerOwner & { credentials: LedgerCredentials };

function readSettings(def: LedgerDef): LedgerSettings {
  oneOf(def.kind, 'ledger kind', ['evm'] as const, 'evm');
  const chainId = str(def.chainId);
  if (!/^\d+$/.test(chainId)) throw new ConfigError(`chain id must be a number, got "${chainId}"`);
  const s: LedgerSettings = {
    kind: 'evm',
    rpcUrl: str(def.rpcUrl),
    chainId,
    contract: str(def.contract),
    txType: oneOf(str(def.txType), 'tx type', ['0', '2'] as const, '0') === '2' ? 2 : 0,
    requestTimeoutMs: int(def.timeout, 'timeout', 10_000, 100, 600_000),
  };
  const wsUrl = optStr(def.wsUrl);
  if (wsUrl) s.wsUrl = wsUrl;
  for (const k of ['gasPrice', 'maxFeePerGas', 'maxPriorityFeePerGas'] as const) {
    const v = optStr(def[k]);
    if (v !== undefined) {
      if (!/^\d+$/.test(v)) throw new ConfigError(`${k} must be a whole number of wei, got "${v}"`);
      s[k] = v;
    }
  }
  const gasLimit = optInt(def.gasLimit, 'gas limit', 21_000);
  if (gasLimit !== undefined) s.gasLimit = gasLimit;
  return s;
}

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
      settings = readSettings(def);
    } catch (err) {
      node.configError = err instanceof Error ? err : new Error(String(err));
    }
    const label = `EVM registry ${str(def.contract) || '(no address)'} at ${str(def.rpcUrl) || '(no URL)'}${node.readOnly ? ' (read-only)' : ''}`;
    node.describe = () => label;
    node.shared = new SharedConnection<Ledger>(node, () => {
      if (node.configError) throw node.configError;
      return createLedger(ledgerConfig(settings as LedgerSettings, { privateKey: privateKey || undefined }));
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
