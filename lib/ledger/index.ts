/**
 * Ledger adapters behind one factory. `createLedger({ kind: 'evm', ... })` gives the EVM adapter
 * (Quorum, Besu, hardhat, any EVM JSON-RPC node); `createLedger({ kind: 'fabric', ... })` the
 * Hyperledger Fabric one (a peer's gateway, the sets-registry chaincode).
 */
import { LedgerError, type Ledger } from './ledger';
import { EvmLedger, type EvmLedgerConfig } from './evm';
import type { FabricLedger, FabricLedgerConfig } from './fabric';

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

// Fabric: the class is loaded on first use (createLedger kind 'fabric'), so lib and every node load
// without gRPC and the Fabric client; import FabricLedger from './fabric' where the class is needed.
export type { FabricLedger, FabricLedgerConfig } from './fabric';
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
    case 'fabric': {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded lazily, see the export above
      const { FabricLedger: Fabric } = require('./fabric') as { FabricLedger: typeof FabricLedger };
      return new Fabric(config as FabricLedgerKindConfig);
    }
    default:
      throw new LedgerError('BAD_CONFIG', `unknown ledger kind ${JSON.stringify(kind)} (supported: "evm", "fabric")`);
  }
}
