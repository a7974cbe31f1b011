/**
 * Ledger and verification recovery against a real hardhat node: a verifier whose wait runs out
 * or whose event search fails, two senders with one key (two spellings of one URL in a process,
 * and two processes), dropped transactions, and a chain-node outage with its pool lost.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { indicator } from '../nodes/stix';
import { chain } from '../support/services';
import type { ChainHandle } from '../support/hardhat';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { createLedger, LedgerError, type EvmLedger, type EvmLedgerConfig } from '../../lib/ledger';
import { verifyObject } from '../../lib/verify';
import { collectionScope, keyForObject } from '../../lib/digest';

const r32 = () => '0x' + randomBytes(32).toString('hex');
/** the collection scope of the anchors written here (the writers hold ANY_SCOPE) */
const SCOPE = collectionScope('recovery');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}


/**
 * A JSON-RPC HTTP proxy in front of the node that can answer chosen methods with a JSON-RPC
 * error (the node "refuses" them) or refuse connections altogether.
 */
class RpcFaultProxy {
  failing = new Set<string>();
  down = false;
  private server: http.Server | null = null;
  port = 0;
  constructor(private readonly target: string) {}
  async start(): Promise<this> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.down) {
          req.socket.destroy();
          return;
        }
        void this.forward(Buffer.concat(chunks).toString()).then(
          (body) => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(body);
          },
          () => req.socket.destroy(),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this;
  }
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  private async forward(text: string): Promise<string> {
    const parsed = JSON.parse(text) as { id: unknown; method: string } | Array<{ id: unknown; method: string }>;
    const list = Array.isArray(parsed) ? parsed : [parsed];
    const refused = (m: { id: unknown; method: string }) => this.failing.has(m.method);
    const pass = list.filter((m) => !refused(m));
    let answers: Array<{ id: unknown }> = [];
    if (pass.length > 0) {
      const res = await fetch(this.target, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(pass),
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await res.json()) as Array<{ id: unknown }> | { id: unknown };
      answers = Array.isArray(body) ? body : [body];
    }
    const out = list.map((m) =>
      refused(m)
        ? { jsonrpc: '2.0', id: m.id, error: { code: -32005, message: `${m.method} refused by the test proxy (query limit)` } }
        : answers.find((a) => a.id === m.id),
    );
    return JSON.stringify(Array.isArray(parsed) ? out : out[0]);
  }
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }
}

describe('ledger recovery (hardhat)', function () {
  this.timeout(120_000);
  let c: ChainHandle;
  let registry: string;
  const open: EvmLedger[] = [];
  const proxies: Array<{ stop(): Promise<void> } | TcpProxy> = [];

  function ledger(i: number | undefined, extra: Partial<EvmLedgerConfig> = {}): EvmLedger {
    const l = createLedger({
      kind: 'evm',
      rpcUrl: c.rpcUrl,
      chainId: c.chainId,
      address: registry,
      privateKey: i === undefined ? undefined : c.accounts[i].privateKey,
      waitPollMs: 100,
      healthCheckMs: 0,
      ...extra,
    }) as EvmLedger;
    open.push(l);
    return l;
  }

  const nonce = async (i: number, tag: string) => Number(BigInt(String(await c.rpc('eth_getTransactionCount', [c.accounts[i].address, tag]))));
  const port = () => Number(new URL(c.rpcUrl).port);
  /** no blocks at all until mining is switched on again */
  const stopMining = async () => {
    await c.rpc('evm_setAutomine', [false]);
    await c.rpc('evm_setIntervalMining', [0]);
  };
  /** what a node restarted without a transaction journal does to its pool */
  async function dropPending(): Promise<number> {
    const block = (await c.rpc('eth_getBlockByNumber', ['pending', false])) as { transactions: string[] };
    let dropped = 0;
    for (const h of block.transactions) if ((await c.rpc('hardhat_dropTransaction', [h])) === true) dropped++;
    return dropped;
  }

  before(async function () {
    this.timeout(120_000);
    c = await chain();
    registry = await c.deployRegistry({ writers: c.accounts.slice(0, 8).map((a) => a.address) });
  });

  afterEach(async () => {
    await c.setIntervalMining(0);
    await Promise.all(proxies.splice(0).map((p) => (p as { stop?: () => Promise<void> }).stop?.() ?? (p as TcpProxy).close()));
    await Promise.all(open.splice(0).map((l) => l.close()));
  });

  describe('verification: a wait that runs out, an event search that fails', () => {
    it('eth_getLogs failing during the wait: the anchored object is verified by the final read, and the state leaves connected', async () => {
      const proxy = await new RpcFaultProxy(c.rpcUrl).start();
      proxies.push(proxy);
      proxy.failing.add('eth_getLogs');
      const reader = ledger(undefined, { rpcUrl: proxy.url, requestTimeoutMs: 3000 });
      const writer = ledger(1);
      const states: string[] = [];
      reader.onState((s) => states.push(s));
      await c.setIntervalMining(300);
      const obj = indicator();
      const { scope, key, hash } = keyForObject('c1', obj);
      const pending = verifyObject(reader, 'c1', obj, { waitMs: 2500 });
      await sleep(300);
      await writer.anchor(scope, key, hash);
      const v = await pending;
      assert.equal(v.status, 'verified', v.reason);
      assert.ok(states.includes('error'), `states seen: ${states.join(', ')}`);
    });

    it('the search fails while waiting: state "error" with the RPC error as detail, back to connected once it works', async () => {
      const proxy = await new RpcFaultProxy(c.rpcUrl).start();
      proxies.push(proxy);
      proxy.failing.add('eth_getLogs');
      const reader = ledger(undefined, { rpcUrl: proxy.url, requestTimeoutMs: 3000 });
      const seen: Array<[string, string | undefined]> = [];
      reader.onState((s, d) => seen.push([s, d]));
      await c.setIntervalMining(200);
      const w = reader.waitForAnchor(SCOPE, r32(), 4000);
      await until('state error', () => reader.state === 'error', 10_000);
      const err = seen.find(([s]) => s === 'error');
      assert.match(String(err?.[1]), /eth_getLogs refused by the test proxy/);
      proxy.failing.clear();
      await until('state connected again', () => reader.state === 'connected', 10_000);
      assert.deepEqual(await w, []);
    });

    it('nothing anchored and the ledger readable: not-anchored "within N ms"', async () => {
      const reader = ledger(undefined);
      const v = await verifyObject(reader, 'c1', indicator(), { waitMs: 600 });
      assert.equal(v.status, 'not-anchored');
      assert.match(String(v.reason), /within 600 ms/);
      assert.equal(v.cause, undefined);
    });

    it('the ledger unreachable during the wait and for the final read: unknown, cause unreachable, the RPC error named', async () => {
      const proxy = await new RpcFaultProxy(c.rpcUrl).start();
      proxies.push(proxy);
      const reader = ledger(undefined, { rpcUrl: proxy.url, requestTimeoutMs: 500 });
      await reader.ready();
      proxy.down = true;
      const v = await verifyObject(reader, 'c1', indicator(), { waitMs: 2000 });
      assert.equal(v.status, 'unknown', v.reason);
      assert.equal(v.cause, 'unreachable');
      assert.match(String(v.reason), /did not answer/);
      assert.match(String(v.reason), /within 2000 ms/);
    });

    it('the ledger unreachable at first, back before the wait ends: the anchor is found', async () => {
      const proxy = await new RpcFaultProxy(c.rpcUrl).start();
      proxies.push(proxy);
      const reader = ledger(undefined, { rpcUrl: proxy.url, requestTimeoutMs: 500 });
      const writer = ledger(1);
      const obj = indicator();
      const { scope, key, hash } = keyForObject('c1', obj);
      await writer.anchor(scope, key, hash);
      proxy.down = true;
      const pending = verifyObject(reader, 'c1', obj, { waitMs: 6000 });
      await sleep(1500);
      proxy.down = false;
      const v = await pending;
      assert.equal(v.status, 'verified', v.reason);
    });

    it('waitMs 0 and the ledger unreachable: throws LedgerError UNREACHABLE (one look, the ledger\'s own error)', async () => {
      const proxy = await new RpcFaultProxy(c.rpcUrl).start();
      proxies.push(proxy);
      proxy.down = true;
      const reader = ledger(undefined, { rpcUrl: proxy.url, requestTimeoutMs: 500 });
      await assert.rejects(verifyObject(reader, 'c1', indicator()), (e: unknown) => e instanceof LedgerError && e.code === 'UNREACHABLE');
    });
  });

  describe('one key, two senders', () => {
    it('one process, two spellings of the node URL: one nonce queue serves both, 40 + 40 concurrent anchors land', async () => {
      // coalescing off: one transaction per anchor, to load the shared send queue
      const a = ledger(2, { rpcUrl: `http://127.0.0.1:${port()}`, maxInFlight: 128, coalesceMs: 0 });
      const b = ledger(2, { rpcUrl: `http://localhost:${port()}/`, maxInFlight: 128, coalesceMs: 0 });
      await stopMining();
      const all = [...Array.from({ length: 40 }, () => a.anchor(SCOPE, r32(), r32())), ...Array.from({ length: 40 }, () => b.anchor(SCOPE, r32(), r32()))];
      await until('80 in flight', () => a.stats().inFlight === 80);
      assert.equal(b.stats().inFlight, 80, 'both ledgers see the one shared queue');
      await c.setIntervalMining(500);
      const rcs = await Promise.all(all);
      assert.equal(new Set(rcs.map((r) => r.tx)).size, 80);
      assert.equal(a.sendStats().collisions, 0);
      assert.equal(await nonce(2, 'pending'), await nonce(2, 'latest'));
    });

    for (const mode of ['automine', '1 s blocks'] as const) {
      it(`two processes with one key (${mode}): 40 concurrent anchors each, all 80 land, no nonce gap`, async function () {
        if (mode !== 'automine') await c.setIntervalMining(1000);
        const cfg = { kind: 'evm', rpcUrl: c.rpcUrl, chainId: c.chainId, address: registry, privateKey: c.accounts[3].privateKey, healthCheckMs: 0, waitPollMs: 100 };
        const lib = path.resolve(__dirname, '../../lib/ledger/index.js');
        const script = `
          const { createLedger } = require(${JSON.stringify(lib)});
          const { randomBytes } = require('crypto');
          const r32 = () => '0x' + randomBytes(32).toString('hex');
          const l = createLedger(${JSON.stringify(cfg)});
          const SCOPE = ${JSON.stringify(SCOPE)};
          l.writerStatus().then(() => {
            process.stdout.write('ready\\n');
            process.stdin.once('data', async () => {
              const out = await Promise.allSettled(Array.from({ length: 40 }, () => l.anchor(SCOPE, r32(), r32())));
              const ok = out.filter((o) => o.status === 'fulfilled').length;
              const errors = out.filter((o) => o.status === 'rejected').map((o) => String(o.reason && o.reason.message));
              process.stdout.write(JSON.stringify({ ok, errors: errors.slice(0, 3), collisions: l.sendStats().collisions }) + '\\n');
              await l.close();
              process.exit(0);
            });
          }, (e) => { process.stdout.write(JSON.stringify({ ok: 0, errors: [String(e)] }) + '\\n'); process.exit(1); });
        `;
        const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
        let out = '';
        const lines: string[] = [];
        const nextLine = () =>
          new Promise<string>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`child said nothing (${out})`)), 90_000);
            const poll = setInterval(() => {
              if (lines.length > 0) {
                clearTimeout(t);
                clearInterval(poll);
                resolve(lines.shift() as string);
              }
            }, 20);
          });
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          let i: number;
          while ((i = out.indexOf('\n')) >= 0) {
            lines.push(out.slice(0, i));
            out = out.slice(i + 1);
          }
        });
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        try {
          const here = ledger(3);
          await here.writerStatus();
          assert.equal(await nextLine(), 'ready');
          child.stdin.write('go\n');
          const mine = await Promise.allSettled(Array.from({ length: 40 }, () => here.anchor(SCOPE, r32(), r32())));
          const theirs = JSON.parse(await nextLine()) as { ok: number; errors: string[]; collisions: number };
          const failed = mine.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => String((o.reason as Error).message));
          assert.deepEqual(failed.slice(0, 3), [], 'this process');
          assert.deepEqual(theirs.errors, [], 'the other process');
          assert.equal(theirs.ok, 40);
          console.log(`      ${mode}: 80 anchors from two processes, nonce collisions resolved: ${here.sendStats().collisions} here, ${theirs.collisions} in the other process`);
          assert.equal(await nonce(3, 'pending'), await nonce(3, 'latest'));
        } finally {
          child.kill();
          await exited;
        }
      });
    }
  });

  describe('dropped transactions and node outages', () => {
    it('a dropped transaction is re-broadcast within seconds (same signed transaction) and its anchor lands', async () => {
      const l = ledger(4, { txTimeoutMs: 40_000, rebroadcastAfterMs: 1000, coalesceMs: 0 });
      await l.writerStatus();
      await stopMining();
      const items = Array.from({ length: 10 }, () => ({ key: r32(), hash: r32() }));
      const all = items.map((e) => l.anchor(SCOPE, e.key, e.hash));
      await until('10 in flight', () => l.stats().inFlight === 10);
      const sentHashes = ((await c.rpc('eth_getBlockByNumber', ['pending', false])) as { transactions: string[] }).transactions;
      assert.equal(await dropPending(), 10);
      await c.setIntervalMining(500);
      const t0 = Date.now();
      const rcs = await Promise.all(all);
      console.log(`      10 dropped transactions re-broadcast and mined ${Date.now() - t0} ms after the drop`);
      assert.deepEqual(new Set(rcs.map((r) => r.tx)), new Set(sentHashes), 'the very transactions that were dropped');
      for (const e of items) assert.equal((await l.lookup(SCOPE, e.key))[0]?.hash, e.hash);
      assert.ok(l.sendStats().rebroadcasts >= 10);
      assert.equal(await nonce(4, 'pending'), await nonce(4, 'latest'));
    });

    it('a chain-node outage with its pool lost: 50 anchors in flight wait, are re-broadcast when it answers again, and land', async function () {
      const proxy = await startTcpProxy(port());
      proxies.push(proxy);
      const l = ledger(5, { rpcUrl: `http://127.0.0.1:${proxy.port}`, requestTimeoutMs: 1000, txTimeoutMs: 60_000, rebroadcastAfterMs: 1000, coalesceMs: 0 });
      await l.writerStatus();
      await stopMining();
      const items = Array.from({ length: 50 }, () => ({ key: r32(), hash: r32() }));
      const all = items.map((e) => l.anchor(SCOPE, e.key, e.hash));
      const settled = Promise.allSettled(all);
      await until('50 in flight', () => l.stats().inFlight === 50);
      await proxy.cut();
      assert.equal(await dropPending(), 50);
      await c.setIntervalMining(500);
      await sleep(5000);
      assert.equal(l.state, 'disconnected');
      assert.equal(l.stats().inFlight, 50, 'nothing given up during the outage');
      await proxy.restore();
      const t0 = Date.now();
      const out = await settled;
      const failed = out.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => String((o.reason as Error).message));
      assert.deepEqual(failed.slice(0, 3), []);
      console.log(`      50 anchors landed ${Date.now() - t0} ms after the node came back (${l.sendStats().rebroadcasts} re-broadcasts)`);
      for (const e of items) assert.equal((await l.lookup(SCOPE, e.key))[0]?.hash, e.hash);
      assert.equal(await nonce(5, 'pending'), await nonce(5, 'latest'), 'no nonce gap');
      // and the queue goes on
      await l.anchor(SCOPE, r32(), r32());
    });

    it('past the anchor deadline during an outage: UNREACHABLE naming the key; nothing left behind', async () => {
      const proxy = await startTcpProxy(port());
      proxies.push(proxy);
      const l = ledger(6, { rpcUrl: `http://127.0.0.1:${proxy.port}`, requestTimeoutMs: 500, txTimeoutMs: 3000, rebroadcastAfterMs: 500 });
      await l.writerStatus();
      await stopMining();
      const key = r32();
      const p = l.anchor(SCOPE, key, r32());
      p.catch(() => undefined);
      await until('in flight', () => l.stats().inFlight === 1);
      await proxy.cut();
      await dropPending();
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof LedgerError);
        assert.equal(e.code, 'UNREACHABLE', e.message);
        assert.equal(e.key, key);
        assert.ok(e.message.includes(key), e.message);
        assert.match(e.message, /not mined within 3000 ms/);
        return true;
      });
      assert.deepEqual(l.stats(), { waiters: 0, headListeners: 0, queued: 0, inFlight: 0 });
      await proxy.restore();
      await c.setIntervalMining(0);
      await l.anchor(SCOPE, r32(), r32());
      assert.equal(await nonce(6, 'pending'), await nonce(6, 'latest'), 'no nonce gap after giving up');
    });
  });
});
