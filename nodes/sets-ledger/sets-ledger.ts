/**
 * sets-ledger: the permissioned ledger holding the SETS registry — an EVM chain (contract) or a
 * Hyperledger Fabric channel (chaincode), by `kind` (absent in flows from before Fabric: EVM).
 * Owns ONE Ledger shared by the anchor-hash / verify-hash nodes that use it (reference-counted,
 * created for the first user, closed after the last one or with this node), and hands its
 * state to them for their badges. Secrets live only in credentials: the private key (both kinds),
 * and for Fabric the enrolment certificate and the peer's TLS CA certificate (not secret, but
 * long PEM text that belongs with the key rather than in the flow file).
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import type { LedgerOwner } from '../shared/owners';
import { str } from '../shared/config';
import { SharedConnection } from '../shared/shared-connection';
import { createLedger, type Ledger, type LedgerConfig } from '../../lib/ledger/index';
import { ledgerConfig, parseLedgerSettings } from '../../lib/ops/connections';
import { registerAdminEndpoints } from '../shared/admin-endpoints';
import { ledgerSecrets } from './secrets';

interface LedgerDef extends NodeDef {
  kind?: string;
  // EVM
  rpcUrl?: string;
  wsUrl?: string;
  chainId?: string | number;
  contract?: string;
  txType?: string | number;
  gasPrice?: string;
  maxFeePerGas?: string;
  maxPriorityFeePerGas?: string;
  gasLimit?: string | number;
  /** EVM: new-block polling; Fabric: reads of awaited keys while the event stream is down */
  pollMs?: string | number;
  confirmations?: string | number;
  // Fabric (pollMs too: reads while the event stream is down)
  peerEndpoint?: string;
  tlsMode?: string;
  serverNameOverride?: string;
  mspId?: string;
  channel?: string;
  chaincode?: string;
  contractName?: string;
  // both
  timeout?: string | number;
  anchorDeadline?: string | number;
  coalesceMs?: string | number;
  maxBatchSize?: string | number;
  maxInFlight?: string | number;
}

interface LedgerCredentials {
  privateKey?: string;
  /** Fabric: PEM enrolment certificate of the signing identity */
  certificate?: string;
  /** Fabric: PEM certificate of the CA that issued the peer's TLS certificate */
  tlsCaCert?: string;
}

type LedgerConfigNode = LedgerOwner & { credentials: LedgerCredentials };

/** What the node is, for messages and the user nodes' warnings (no secrets). */
function describe(def: LedgerDef, readOnly: boolean): string {
  const ro = readOnly ? ' (read-only)' : '';
  if (def.kind === 'fabric') {
    const cc = str(def.chaincode) || 'sets-registry';
    return `Fabric chaincode ${cc} on channel ${str(def.channel) || '(no channel)'} at ${str(def.peerEndpoint) || '(no peer)'}${ro}`;
  }
  return `EVM registry ${str(def.contract) || '(no address)'} at ${str(def.rpcUrl) || '(no URL)'}${ro}`;
}

export = function register(RED: NodeAPI): void {
  // "Test connection" in the dialog (POST sets/probe/ledger), shared by the config nodes
  registerAdminEndpoints(RED);
  function SetsLedgerNode(this: LedgerConfigNode, def: LedgerDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: LedgerConfigNode, def: LedgerDef): void {
    // an EVM key is hex; a Fabric key, certificate and TLS CA are PEM, whose line breaks a
    // one-line password field may have dropped
    const secrets = ledgerSecrets(def.kind, node.credentials);
    node.readOnly = !secrets.privateKey;
    // settings and secrets are checked when the node starts (a Fabric ledger needs its certificate,
    // key and TLS CA): the nodes using it show the reason instead of warning about a missing key
    let config: LedgerConfig | undefined;
    try {
      config = ledgerConfig(parseLedgerSettings(def as unknown as Record<string, unknown>), secrets);
    } catch (err) {
      node.configError = err instanceof Error ? err : new Error(String(err));
    }
    const label = describe(def, node.readOnly);
    node.describe = () => label;
    node.shared = new SharedConnection<Ledger>(node, () => {
      if (node.configError || !config) throw node.configError ?? new Error('ledger configuration missing');
      // settings that cannot apply (e.g. another configuration with this key set the account's
      // in-flight limit differently) are shown as warnings of this node
      return createLedger({ ...config, onWarning: (m: string) => node.warn(m) });
    });
    node.on('close', (_removed: boolean, done: () => void) => {
      node.shared.close().then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType<LedgerConfigNode, LedgerDef, unknown, LedgerCredentials>('sets-ledger', SetsLedgerNode, {
    credentials: {
      privateKey: { type: 'password' },
      certificate: { type: 'text' },
      tlsCaCert: { type: 'text' },
    },
  });
};
