/**
 * Ledger adapters behind one factory. `createLedger({ kind: 'evm', ... })` gives the EVM adapter
 * (Quorum, Besu, hardhat, any EVM JSON-RPC node); Fabric joins as `kind: 'fabric'` later.
 */
import { LedgerError, type Ledger } from './ledger';
import { EvmLedger, type EvmLedgerConfig } from './evm';

export * from './ledger';
export { EvmLedger, REGISTRY_ABI, registryInterface, decodeRevert, type EvmLedgerConfig, type Wei } from './evm';
export {
  deployRegistry,
  grantWriter,
  revokeWriter,
  bindIdentity,
  unbindIdentity,
  proposeAdmin,
  acceptAdmin,
  loadRegistryArtifact,
  type DeployOptions,
  type InitialWriter,
  type RegistryAdminConfig,
  type RegistryArtifact,
} from './deploy';

export type EvmLedgerKindConfig = { kind: 'evm' } & EvmLedgerConfig;
/** Configuration of any ledger adapter, told apart by `kind`. */
export type LedgerConfig = EvmLedgerKindConfig;

/** Create the ledger adapter `config.kind` names. Throws LedgerError BAD_CONFIG for unusable configuration. */
export function createLedger(config: LedgerConfig): Ledger {
  const kind: unknown = typeof config === 'object' && config !== null ? (config as { kind?: unknown }).kind : undefined;
  switch (kind) {
    case 'evm':
      return new EvmLedger(config);
    default:
      throw new LedgerError('BAD_CONFIG', `unknown ledger kind ${JSON.stringify(kind)} (supported: "evm")`);
  }
}
