/**
 * Entry point of the `sets-registry` chaincode: fabric-chaincode-node loads `contracts` from here
 * (package.json "main"). SetsRegistry is the only, and so the default, contract.
 */
import { SetsRegistryContract } from './sets-registry';

export { SetsRegistryContract } from './sets-registry';
export const contracts = [SetsRegistryContract];
