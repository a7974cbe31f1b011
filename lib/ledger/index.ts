/**
 * Ledger adapters behind one factory. `createLedger({ kind: 'evm', ... })` gives the EVM adapter
 * (Quorum, Besu, hardhat, any EVM JSON-RPC node); `createLedger({ kind: 'fabric', ... })` the
 * Hyperledger Fabric one (a peer's gateway, the sets-registry chaincode).
 */
import { LedgerError, type Ledger } from './ledger';
import { EvmLedger, type EvmLedgerConfig } from './evm';
import { FabricLedger, type FabricLedgerConfig } from './fabric';

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

export { FabricLedger, type FabricLedgerConfig } from './fabric';
export { certificateAttributes, mapGatewayError } from './fabric-config';

export type EvmLedgerKindConfig = { kind: 'evm' } & EvmLedgerConfig;
export type FabricLedgerKindConfig = { kind: 'fabric' } & FabricLedgerConfig;
/** Configuration of any ledger adapter, told apart by `kind`. */
export type LedgerConfig = EvmLedgerKindConfig | FabricLedgerKindConfig;

/** Create the ledger adapter `config.kind` names. Throws LedgerError BAD_CONFIG for unusable configuration. */
export function createLedger(config: LedgerConfig): Ledger {
  const kind: unknown = typeof config === 'object' && config !== null ? (config as { kind?: unknown }).kind : undefined;
  switch (kind) {
    case 'evm':
      return new EvmLedger(config as EvmLedgerKindConfig);
    case 'fabric':
      return new FabricLedger(config as FabricLedgerKindConfig);
    default:
      throw new LedgerError('BAD_CONFIG', `unknown ledger kind ${JSON.stringify(kind)} (supported: "evm", "fabric")`);
  }
}
