/**
 * A real EVM JSON-RPC node for the tests: hardhat 2.29 (`hardhat node`) as a child process on a
 * free port of 127.0.0.1, HTTP and WebSocket on the same port, chain id 31337, automine on.
 *
 * `SETS_TEST_RPC_URL` (and optionally `SETS_TEST_WS_URL`) point the tests at a node that is
 * already running instead; its accounts must be hardhat's well-known development accounts.
 *
 * The hardhat configuration is written to a temporary directory; hardhat never compiles
 * anything here (the build compiles the registry with solc-js), and its per-transaction
 * console logging is off (it costs the node a lot of time under load).
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { HDNodeWallet } from 'ethers';
import { deployRegistry as deploy, type InitialWriter } from '../../lib/ledger/deploy';

export interface ChainAccount {
  address: string;
  privateKey: string;
}

export interface ChainHandle {
  rpcUrl: string;
  wsUrl: string;
  chainId: number;
  /** hardhat's development accounts (funded), accounts[0] is the registry admin */
  accounts: ChainAccount[];
  /**
   * deploy a fresh SetsRegistry (admin accounts[0]); writers default to accounts[0..3], each
   * granted ANY_SCOPE (a bare address); `{account, scopes}` binds a writer to collections
   */
  deployRegistry(opts?: { writers?: InitialWriter[] }): Promise<string>;
  /** 0 = automine (a block per transaction), else one block every `ms` */
  setIntervalMining(ms: number): Promise<void>;
  /** a raw JSON-RPC call (tests only) */
  rpc(method: string, params?: unknown[]): Promise<unknown>;
  stop(): Promise<void>;
}

/** hardhat's default development mnemonic (public test keys, funded on hardhat only) */
const MNEMONIC = 'test test test test test test test test test test test junk';
const ACCOUNTS = 10;
const START_TIMEOUT_MS = 60_000;

function devAccounts(): ChainAccount[] {
  const root = HDNodeWallet.fromPhrase(MNEMONIC, undefined, "m/44'/60'/0'/0");
  const out: ChainAccount[] = [];
  for (let i = 0; i < ACCOUNTS; i++) {
    const w = root.deriveChild(i);
    out.push({ address: w.address, privateKey: w.privateKey });
  }
  return out;
}

async function rpcCall(url: string, method: string, params: unknown[] = [], timeoutMs = 10_000): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = (await res.json()) as { result?: unknown; error?: { message?: string } };
  if (body.error) throw new Error(`${method}: ${body.error.message ?? JSON.stringify(body.error)}`);
  return body.result;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** The project directory holding node_modules/hardhat (hardhat insists on a local install). */
function hardhatHome(): { cli: string; cwd: string } {
  const pkg = fs.realpathSync(require.resolve('hardhat/package.json'));
  const dir = path.dirname(pkg);
  return { cli: path.join(dir, 'internal', 'cli', 'cli.js'), cwd: path.resolve(dir, '..', '..') };
}

function handle(
  rpcUrl: string,
  wsUrl: string,
  chainId: number,
  accounts: ChainAccount[],
  stop: () => Promise<void>,
): ChainHandle {
  const rpc = (method: string, params: unknown[] = []) => rpcCall(rpcUrl, method, params);
  return {
    rpcUrl,
    wsUrl,
    chainId,
    accounts,
    rpc,
    deployRegistry: (opts = {}) =>
      deploy({
        rpcUrl,
        chainId,
        privateKey: accounts[0].privateKey,
        writers: opts.writers ?? accounts.slice(0, 4).map((a) => a.address),
      }),
    async setIntervalMining(ms: number) {
      if (ms > 0) {
        await rpc('evm_setAutomine', [false]);
        await rpc('evm_setIntervalMining', [ms]);
      } else {
        await rpc('evm_setIntervalMining', [0]);
        await rpc('evm_setAutomine', [true]);
      }
    },
    stop,
  };
}

async function useExisting(rpcUrl: string): Promise<ChainHandle> {
  const wsUrl = process.env.SETS_TEST_WS_URL || rpcUrl.replace(/^http/i, 'ws');
  const chainId = Number(BigInt(String(await rpcCall(rpcUrl, 'eth_chainId'))));
  const accounts = devAccounts();
  const balance = BigInt(String(await rpcCall(rpcUrl, 'eth_getBalance', [accounts[0].address, 'latest'])));
  if (balance === 0n) {
    throw new Error(`SETS_TEST_RPC_URL ${rpcUrl}: hardhat's development account ${accounts[0].address} has no funds there`);
  }
  return handle(rpcUrl, wsUrl, chainId, accounts, async () => undefined);
}

export async function startHardhat(): Promise<ChainHandle> {
  const given = process.env.SETS_TEST_RPC_URL;
  if (given) return useExisting(given);

  const { cli, cwd } = hardhatHome();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-hardhat-'));
  const config = path.join(dir, 'hardhat.config.js');
  fs.writeFileSync(config, 'module.exports = { networks: { hardhat: { chainId: 31337, loggingEnabled: false } } };\n');
  // watchdog: the node exits when our end of its stdin closes, i.e. when this process dies,
  // however it dies (a SIGKILLed test runner runs no exit handlers)
  const watchdog = path.join(dir, 'watchdog.js');
  fs.writeFileSync(
    watchdog,
    "'use strict';\n" +
      "process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();\n" +
      `require(${JSON.stringify(cli)});\n`,
  );
  const port = await freePort();
  const rpcUrl = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    process.execPath,
    [watchdog, 'node', '--hostname', '127.0.0.1', '--port', String(port), '--config', config],
    {
      cwd,
      env: { ...process.env, HARDHAT_DISABLE_TELEMETRY_PROMPT: 'true', NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const keep = (b: Buffer) => {
    output = (output + b.toString()).slice(-4000);
  };
  child.stdin?.on('error', () => undefined);
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const killOnExit = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(t);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  let chainId = 0;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`hardhat node exited during startup:\n${output}`);
    }
    try {
      chainId = Number(BigInt(String(await rpcCall(rpcUrl, 'eth_chainId', [], 2000))));
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`hardhat node did not answer on ${rpcUrl} within ${START_TIMEOUT_MS} ms:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const accounts = devAccounts();
  const listed = (await rpcCall(rpcUrl, 'eth_accounts')) as string[];
  if (!Array.isArray(listed) || listed[0]?.toLowerCase() !== accounts[0].address.toLowerCase()) {
    await stop();
    throw new Error(`hardhat node on ${rpcUrl} does not hold the development accounts (eth_accounts: ${JSON.stringify(listed)})`);
  }
  return handle(rpcUrl, `ws://127.0.0.1:${port}`, chainId, accounts, stop);
}
