/**
 * Registry deployment and administration (EVM): deploy SetsRegistry from the compiled artifact,
 * grant / revoke writers per scope (one collection: `collectionScope(collectionId)` from
 * lib/digest, or ANY_SCOPE = every collection), hand over the admin role in two steps (propose,
 * accept). Used by the tests, the demo and operators.
 *
 * Transactions go through the same per-account send queue as the ledger (evm-sender.ts), so a
 * deployment or a grant signed with a key that a ledger in this process also uses never
 * collides with the ledger's nonces.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AbiCoder, SigningKey, computeAddress, getAddress, toQuantity } from 'ethers';
import { ANY_SCOPE, LedgerError } from './ledger';
import { ChainClient, NodeError } from './evm-rpc';
import { acquireSender, releaseSender, type FeeSettings, type MinedTx } from './evm-sender';
import { checkPrivateKey, checkUrl, decodeRevert, parseChainId, registryInterface, toWei, type Wei } from './evm';

export interface RegistryAdminConfig {
  rpcUrl: string;
  chainId: number | bigint | string;
  /** the admin's key (the deployer becomes admin) */
  privateKey: string;
  txType?: 0 | 2;
  gasPrice?: Wei;
  maxFeePerGas?: Wei;
  maxPriorityFeePerGas?: Wei;
  /** gas limit of the deployment (default 1500000) / of an admin call (default 100000) */
  gasLimit?: number;
  confirmations?: number;
  requestTimeoutMs?: number;
  waitPollMs?: number;
  /** how long to wait for mining (default 120000) */
  txTimeoutMs?: number;
}

/** A writer granted at deployment: a bare address is granted ANY_SCOPE (every collection). */
export type InitialWriter = string | { account: string; scopes: string[] };

export interface DeployOptions extends RegistryAdminConfig {
  /** accounts granted from the start (in the deployment transaction) */
  writers?: InitialWriter[];
}

export interface RegistryArtifact {
  contractName: string;
  abi: unknown[];
  bytecode: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

const ARTIFACT = path.join('contracts', 'evm', 'SetsRegistry.json');

/**
 * Where the compiled SetsRegistry is: `<package>/dist/contracts/evm/SetsRegistry.json`, written by
 * scripts/build.js. Found by walking up from this file to the first package.json (the package
 * root), so it is found from dist/, from a build in another folder (SETS_BUILD_OUT) and from both
 * packed layouts (node-red-contrib-sets, n8n-nodes-sets) wherever npm installed them. Returns the
 * candidate paths searched when there is none.
 */
export function findRegistryArtifact(from: string = __dirname): { file?: string; searched: string[] } {
  const searched: string[] = [];
  let dir = from;
  for (let i = 0; i < 8; i++) {
    for (const candidate of [path.join(dir, ARTIFACT), path.join(dir, 'dist', ARTIFACT)]) {
      searched.push(candidate);
      if (fs.existsSync(candidate)) return { file: candidate, searched };
    }
    if (fs.existsSync(path.join(dir, 'package.json'))) break; // the package root: stop here
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return { searched };
}

/** The compiled SetsRegistry (see findRegistryArtifact). */
export function loadRegistryArtifact(): RegistryArtifact {
  const { file, searched } = findRegistryArtifact();
  if (!file) {
    throw new LedgerError(
      'BAD_CONFIG',
      `the compiled SetsRegistry contract is missing (looked for ${searched.join(', ')}): build the package (npm run build) or reinstall it`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LedgerError('BAD_CONFIG', `cannot read the SetsRegistry artifact ${file} (run the build): ${(e as Error).message}`, { cause: e });
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.abi) || typeof parsed.bytecode !== 'string' || !/^0x[0-9a-f]+$/i.test(parsed.bytecode)) {
    throw new LedgerError('BAD_CONFIG', `${file} is not a compiled contract artifact`);
  }
  return { contractName: String(parsed.contractName ?? 'SetsRegistry'), abi: parsed.abi, bytecode: parsed.bytecode };
}

/** Run one transaction from the admin's account and return it mined (any status). */
async function transact(config: RegistryAdminConfig, to: string | null, data: string, gasLimit: number, label: string): Promise<MinedTx> {
  const chainId = parseChainId(config.chainId);
  const client = new ChainClient({
    rpcUrl: checkUrl(config.rpcUrl, 'rpcUrl'),
    chainId,
    requestTimeoutMs: config.requestTimeoutMs ?? 10_000,
    waitPollMs: config.waitPollMs ?? 250,
    healthCheckMs: 0,
  });
  const sender = acquireSender(client, checkPrivateKey(config.privateKey), { maxInFlight: 64, txTimeoutMs: config.txTimeoutMs ?? 120_000 });
  try {
    const id = BigInt(String(await client.call('eth_chainId', [], { what: 'checking the chain id' })));
    if (id !== chainId) {
      throw new LedgerError('BAD_CONFIG', `wrong chain: ${config.rpcUrl} serves chain id ${id}, the configuration expects ${chainId}`);
    }
    const txType = config.txType ?? 0;
    const fees: FeeSettings = {
      type: txType,
      gasPrice: toWei(config.gasPrice, 'gasPrice'),
      maxFeePerGas: toWei(config.maxFeePerGas, 'maxFeePerGas'),
      maxPriorityFeePerGas: toWei(config.maxPriorityFeePerGas, 'maxPriorityFeePerGas'),
    };
    return await sender.submit({ to, data, gasLimit: BigInt(config.gasLimit ?? gasLimit), fees, confirmations: config.confirmations ?? 1, label });
  } finally {
    releaseSender(sender);
    client.release();
  }
}

async function explain(config: RegistryAdminConfig, address: string, data: string, mined: MinedTx, label: string): Promise<never> {
  let why = mined.gasUsed * 64n >= mined.gasLimit * 63n ? `ran out of gas (gas limit ${mined.gasLimit})` : 'reverted';
  const client = new ChainClient({
    rpcUrl: config.rpcUrl,
    chainId: parseChainId(config.chainId),
    requestTimeoutMs: config.requestTimeoutMs ?? 10_000,
    waitPollMs: 1000,
    healthCheckMs: 0,
  });
  try {
    const from = computeAddress(new SigningKey(checkPrivateKey(config.privateKey)).publicKey);
    await client.call('eth_call', [{ from, to: address, data }, toQuantity(Math.max(0, mined.block - 1))], { what: `replaying ${label}` });
  } catch (e) {
    if (e instanceof NodeError) why = decodeRevert(e.revertData);
  } finally {
    client.release();
  }
  const code = /^(NotAdmin|NotPendingAdmin|NotWriter)\(/.test(why) ? 'NOT_AUTHORISED' : /^(ZeroAddress|ZeroScope|LengthMismatch)\(/.test(why) ? 'BAD_INPUT' : 'TX_FAILED';
  throw new LedgerError(code, `${label}: transaction ${mined.hash} failed: ${why}`);
}

const SCOPE = /^0x[0-9a-fA-F]{64}$/;

function checkScope(v: unknown, what: string): string {
  if (typeof v !== 'string' || !SCOPE.test(v)) {
    throw new LedgerError('BAD_INPUT', `${what}: a scope must be 0x + 64 hex digits (collectionScope(collectionId), or ANY_SCOPE), got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return v.toLowerCase();
}

/** An identity tag: 0x + 64 hex digits, never zero (zero means "no creator named"). */
function checkIdentity(v: unknown, what: string): string {
  if (typeof v !== 'string' || !SCOPE.test(v)) {
    throw new LedgerError('BAD_INPUT', `${what}: an identity tag must be 0x + 64 hex digits (identityTag(created_by_ref) from lib/digest), got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  if (/^0x0{64}$/.test(v)) throw new LedgerError('BAD_INPUT', `${what}: the identity tag cannot be zero (identityTag(created_by_ref) from lib/digest)`);
  return v.toLowerCase();
}

function checkAccount(v: unknown, what: string): string {
  try {
    return getAddress(String(v));
  } catch (e) {
    throw new LedgerError('BAD_INPUT', `${what} must be a 0x… address, got ${JSON.stringify(v)?.slice(0, 80)}`, { cause: e });
  }
}

/**
 * Deploy SetsRegistry; the signer becomes admin, `writers` are granted in the same transaction
 * (a bare address: ANY_SCOPE; `{account, scopes}`: each scope). Resolves with the contract address.
 */
export async function deployRegistry(config: DeployOptions): Promise<string> {
  const art = loadRegistryArtifact();
  const accounts: string[] = [];
  const scopes: string[] = [];
  for (const [i, w] of (config.writers ?? []).entries()) {
    if (typeof w === 'string') {
      accounts.push(checkAccount(w, `writers[${i}]`));
      scopes.push(ANY_SCOPE);
    } else if (isRecord(w) && Array.isArray(w.scopes)) {
      const account = checkAccount(w.account, `writers[${i}].account`);
      for (const s of w.scopes) {
        accounts.push(account);
        scopes.push(checkScope(s, `writers[${i}].scopes`));
      }
    } else {
      throw new LedgerError('BAD_INPUT', `writers[${i}] must be a 0x… address or {account, scopes}`);
    }
  }
  const data = art.bytecode + AbiCoder.defaultAbiCoder().encode(['address[]', 'bytes32[]'], [accounts, scopes]).slice(2);
  const mined = await transact(config, null, data, 2_000_000 + 60_000 * accounts.length, 'deploying SetsRegistry');
  if (mined.status !== 1 || !mined.contractAddress) {
    throw new LedgerError('TX_FAILED', `deploying SetsRegistry: transaction ${mined.hash} failed (gas used ${mined.gasUsed} of ${mined.gasLimit})`);
  }
  return getAddress(mined.contractAddress);
}

async function adminCall(config: RegistryAdminConfig, registry: string, fn: string, args: unknown[], label: string): Promise<string> {
  const to = checkAccount(registry, `${fn}: registry`);
  const data = registryInterface.encodeFunctionData(fn, args);
  const what = `${label} on ${to}`;
  const mined = await transact(config, to, data, 100_000, what);
  if (mined.status !== 1) return explain(config, to, data, mined, what);
  return mined.hash;
}

/**
 * Let `account` anchor in `scope` (admin only; NOT_AUTHORISED otherwise): a collection's scope
 * (`collectionScope(collectionId)`), or ANY_SCOPE (the default) for every collection. Resolves
 * with the tx hash.
 */
export function grantWriter(config: RegistryAdminConfig, registry: string, account: string, scope: string = ANY_SCOPE): Promise<string> {
  return Promise.resolve().then(() => {
    const who = checkAccount(account, 'grantWriter: account');
    const s = checkScope(scope, 'grantWriter');
    return adminCall(config, registry, 'grantWriter', [who, s], `grantWriter(${who}, ${s})`);
  });
}

/**
 * Withdraw `account`'s right to anchor in `scope` (admin only; default ANY_SCOPE). Its anchors
 * stay on chain but no longer count for that scope: verification judges entitlement at read time.
 */
export function revokeWriter(config: RegistryAdminConfig, registry: string, account: string, scope: string = ANY_SCOPE): Promise<string> {
  return Promise.resolve().then(() => {
    const who = checkAccount(account, 'revokeWriter: account');
    const s = checkScope(scope, 'revokeWriter');
    return adminCall(config, registry, 'revokeWriter', [who, s], `revokeWriter(${who}, ${s})`);
  });
}

/**
 * Bind producer identity `identity` (`identityTag(created_by_ref)` from lib/digest) to `account`
 * (admin only). From the first binding on, only bound accounts are entitled for objects naming that
 * identity as creator — another member of the collection can no longer vouch for them.
 */
export function bindIdentity(config: RegistryAdminConfig, registry: string, identity: string, account: string): Promise<string> {
  return Promise.resolve().then(() => {
    const who = checkAccount(account, 'bindIdentity: account');
    const id = checkIdentity(identity, 'bindIdentity');
    return adminCall(config, registry, 'bindIdentity', [id, who], `bindIdentity(${id}, ${who})`);
  });
}

/** Withdraw a binding (admin only); with no binding left the identity is unbound again. */
export function unbindIdentity(config: RegistryAdminConfig, registry: string, identity: string, account: string): Promise<string> {
  return Promise.resolve().then(() => {
    const who = checkAccount(account, 'unbindIdentity: account');
    const id = checkIdentity(identity, 'unbindIdentity');
    return adminCall(config, registry, 'unbindIdentity', [id, who], `unbindIdentity(${id}, ${who})`);
  });
}

/**
 * First step of the admin hand-over (admin only): propose `proposed`, which must then call
 * acceptAdmin. The zero address cancels a proposal; the current admin keeps the role until the
 * proposed account accepts.
 */
export function proposeAdmin(config: RegistryAdminConfig, registry: string, proposed: string): Promise<string> {
  return Promise.resolve().then(() => {
    const who = checkAccount(proposed, 'proposeAdmin: proposed');
    return adminCall(config, registry, 'proposeAdmin', [who], `proposeAdmin(${who})`);
  });
}

/** Second step: the proposed account (`config.privateKey`) takes the admin role (NOT_AUTHORISED for anyone else). */
export function acceptAdmin(config: RegistryAdminConfig, registry: string): Promise<string> {
  return adminCall(config, registry, 'acceptAdmin', [], 'acceptAdmin()');
}
