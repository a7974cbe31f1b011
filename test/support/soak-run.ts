/**
 * The soak: the whole SETS pipeline under faults, every component real and in its own OS process.
 *
 *   producer (child) ──anchorMany──▶ chain proxy ──▶ hardhat (1 s blocks, SetsRegistry)
 *       └──TAXII POST──▶ Node-RED (child: taxii-server → rabbit-publish + verify-hash → integrity-status)
 *                              └──▶ RabbitMQ (private node) ──durable queue──▶ consumer (child: verify, journal, ack)
 *
 * Faults, each once, at fixed fractions of the nominal production time (count / rate):
 * - consumer: SIGKILL, restarted 2 s later (its journal is fsynced before each ack);
 * - RabbitMQ: the node is really stopped and started again on the same data dir and ports
 *   (test/support/rabbit.ts restart());
 * - EVM node: hardhat cannot persist its chain, so "restarting the EVM node" is EMULATED: the TCP
 *   proxy every component reaches the chain through is cut for `evmOutageMs` (~10 s: connections
 *   reset, new ones refused) and every pending transaction is dropped from hardhat's pool
 *   (hardhat_dropTransaction), as a restarted node without a transaction journal would lose them;
 *   then the proxy is restored. The chain state (mined blocks, the registry) survives, as a real
 *   Quorum node's disk would keep it. Blocks keep being mined meanwhile (the other validators of an
 *   IBFT network would go on).
 * - Node-RED: SIGKILL, restarted 2 s later on the same user dir (flow, embedded store) and port.
 *
 * Then the pipeline is given `drainMs` to settle, and the run is measured from the durable
 * records: the producer's sent file, the consumer's journal, and the store itself (opened after
 * Node-RED stopped) plus what TAXII serves. `runSoak` never throws for a pipeline that loses
 * objects: it reports; it throws only when the experiment itself cannot run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as amqp from 'amqplib';
import { EmbeddedStore } from '../../lib/store/embedded';
import type { IntegrityStatus } from '../../lib/store/store';
import { TaxiiClient } from '../../lib/taxii/client';
import { BasicAuth } from '../../lib/auth/client';
import { startHardhat, type ChainHandle } from './hardhat';
import { startRabbit } from './rabbit';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';
import { SOAK_API_ROOT, SOAK_STORE_SUBDIR, prepareServerUserDir, soakNodeRed, type SoakNodeRed } from './soak-node-red';
import { delay, errText, readJsonLines, type ChildReport, type ConsumerConfig, type JournalLine, type ProducerConfig, type SentLine } from './soak-common';

export type FaultName = 'consumer' | 'rabbitmq' | 'evm' | 'node-red';
export const ALL_FAULTS: FaultName[] = ['consumer', 'rabbitmq', 'evm', 'node-red'];

export interface SoakOptions {
  /** objects to produce (default 10,000) */
  count?: number;
  /** objects per second (default 25) */
  rate?: number;
  /** objects per anchorMany / POST (default: about one second's worth, at least 5) */
  batch?: number;
  /** producer batches in progress at once (default 4) */
  concurrency?: number;
  /** which faults to inject, in this order (default all four) */
  faults?: FaultName[];
  /** where in the nominal production time the faults fall (default spread evenly: 1/(n+1), 2/(n+1), ...) */
  faultAt?: number[];
  /** how long the chain stays unreachable (default 10,000 ms) */
  evmOutageMs?: number;
  /** longest wait for the pipeline to drain after the producer finished (default 120,000 ms) */
  drainMs?: number;
  /** the producer gives a batch up after this long (default 180,000 ms) */
  giveUpMs?: number;
  /**
   * the taxii-server's recovery sweep: seconds between sweeps (default 10; the node's default is 60)
   * and the grace before a pending record is emitted again (default 30; the node's default is 300).
   * Shorter than the node's defaults so that records a crash left pending are recovered within the
   * run; with the defaults allow `drainMs` > grace + interval.
   */
  recoveryIntervalS?: number;
  anchorGraceS?: number;
  /** the consumer's wait for an anchor (default 30,000 ms) */
  consumerWaitMs?: number;
  /** progress lines */
  log?: (line: string) => void;
  /** keep the work dir (logs, journals, store) even when the run passed */
  keep?: boolean;
  /**
   * false: the no-ledger baseline (the benchmark's): a collection with integrity off, the producer
   * POSTs without anchoring, the consumer validates instead of reading the ledger. Default true.
   */
  ledger?: boolean;
  /** false: components reach the chain directly, not through the outage proxy (only without the evm fault); default true */
  chainProxy?: boolean;
  /** how often the progress line is logged, ms (default 10,000) */
  progressMs?: number;
  /** called once every component runs, before the producer starts: what a benchmark needs to watch the processes */
  onStarted?: (w: SoakWatch) => void;
  /** run after the drain, before the measurement, with every component still up (the benchmark's capacity phases) */
  afterDrain?: (s: SoakStack) => Promise<void>;
}

/** The running stack, as a client of it sees it (SoakOptions.afterDrain). */
export interface SoakStack {
  apiRootUrl: string;
  /** a user with the publisher role, and one with the reader role */
  publisher: { username: string; password: string };
  reader: { username: string; password: string };
  collection: string;
  rpcUrl: string;
  registry: string;
  chainId: number;
  /** a funded account granted to write (the producer's) */
  privateKey: string;
  runId: string;
  log: (line: string) => void;
}

/** The run's processes, for a benchmark's resource sampling (test/support/bench-*.ts). */
export interface SoakWatch {
  /** the chain node itself (not the outage proxy) */
  chainRpcUrl: string;
  amqpUrl: string;
  /** Node-RED's HTTP port */
  serverPort: number;
  producerPid(): number | undefined;
  consumerPid(): number | undefined;
}

export interface FaultRecord {
  fault: FaultName;
  /** seconds since the producer started */
  atS: number;
  /** objects sent when it began */
  sentBefore: number;
  /** how long the component was down / the fault took until recovered, ms */
  downMs: number;
  detail: string;
  error?: string;
}

export interface SoakResult {
  ok: boolean;
  startedAt: string;
  runId: string;
  params: {
    count: number;
    rate: number;
    batch: number;
    concurrency: number;
    evmOutageMs: number;
    drainMs: number;
    consumerWaitMs: number;
    recoveryIntervalS: number;
    anchorGraceS: number;
    faults: FaultName[];
    faultAt: number[];
  };
  counts: {
    /** objects the producer generated */
    produced: number;
    /** accepted by the server (POST 202 listing them) */
    sent: number;
    /** given up by the producer after giveUpMs of failures */
    unsent: number;
    /** distinct objects in the store (any status) */
    stored: number;
    storedByStatus: Record<IntegrityStatus, number>;
    /** distinct objects the TAXII manifest lists (what the server serves: finalized under `required`) */
    servedByTaxii: number;
    /** distinct objects the consumer received and settled (verified or rejected) */
    distributed: number;
    /** distinct objects verified at the consumer */
    verified: number;
    /** deliveries recognised as duplicates by (id, version, hash) */
    duplicates: number;
    /** deliveries rejected by the consumer (mismatch / not-anchored) */
    rejected: number;
    /** sent and (not verified at the consumer, or not stored) */
    lost: number;
    lostNotVerified: number;
    lostNotStored: number;
    /** store records still `pending` at the end */
    leftPending: number;
    /** messages left in the consumer's queue at the end */
    leftInQueue: number | null;
  };
  /** a few ids of each loss kind */
  samples: { notVerified: string[]; notStored: string[]; pending: string[]; rejected: string[] };
  producer: { anchorRetries: number; postRetries: number; lastError?: string; exitCode: number | null };
  consumer: { retried: number; restarts: number; lastError?: string };
  nodeRed: { starts: number; errors: number; warnings: number; catchMessages: number; samples: string[] };
  faults: FaultRecord[];
  durations: { totalS: number; setupS: number; productionS: number; drainS: number };
  rates: { sentPerS: number; verifiedPerS: number };
  latencyMs: { p50: number; p95: number; max: number } | null;
  workDir: string;
}

const USERS = [
  { username: 'producer', password: `soak-${randomBytes(6).toString('hex')}`, roles: 'publisher' },
  { username: 'consumer', password: `soak-${randomBytes(6).toString('hex')}`, roles: 'reader' },
];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(p));
    });
  });
}

/** A hardhat node of our own: the shared SETS_TEST_RPC_URL one must not have its pool dropped. */
async function ownHardhat(): Promise<ChainHandle> {
  const saved = process.env.SETS_TEST_RPC_URL;
  delete process.env.SETS_TEST_RPC_URL;
  // startHardhat reads the variable synchronously, before its first await
  const p = startHardhat();
  if (saved !== undefined) process.env.SETS_TEST_RPC_URL = saved;
  return p;
}

interface ChildHandle {
  proc: ChildProcess;
  exited: Promise<number | null>;
  last?: ChildReport;
}

function startChild(file: string, config: unknown, logFile: string, onReport: (r: ChildReport) => void): ChildHandle {
  const out = fs.openSync(logFile, 'a');
  const proc = spawn(process.execPath, [file], {
    env: { ...process.env, SETS_SOAK_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', out, out, 'ipc'],
  });
  fs.closeSync(out);
  const h: ChildHandle = { proc, exited: new Promise((resolve) => proc.once('exit', (code) => resolve(code))) };
  proc.on('message', (m: ChildReport) => {
    h.last = m;
    onReport(m);
  });
  const kill = (): void => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  process.once('exit', kill);
  void h.exited.then(() => process.removeListener('exit', kill));
  return h;
}

function waitFor(what: string, cond: () => boolean, timeoutMs: number, failed?: () => string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tick = (): void => {
      const f = failed?.();
      if (f) return reject(new Error(`${what}: ${f}`));
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`${what}: not within ${timeoutMs} ms`));
      setTimeout(tick, 100);
    };
    tick();
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function runSoak(opts: SoakOptions = {}): Promise<SoakResult> {
  const log = opts.log ?? ((l: string) => process.stdout.write(`[soak] ${l}\n`));
  const count = opts.count ?? 10_000;
  const rate = opts.rate ?? 25;
  const batch = opts.batch ?? Math.max(5, Math.round(rate));
  const concurrency = opts.concurrency ?? 4;
  const faults = opts.faults ?? ALL_FAULTS;
  const faultAt = opts.faultAt ?? faults.map((_f, i) => (i + 1) / (faults.length + 1));
  const evmOutageMs = opts.evmOutageMs ?? 10_000;
  const drainMs = opts.drainMs ?? 120_000;
  const giveUpMs = opts.giveUpMs ?? 180_000;
  const consumerWaitMs = opts.consumerWaitMs ?? 30_000;
  const recoveryIntervalS = opts.recoveryIntervalS ?? 60;
  const anchorGraceS = opts.anchorGraceS ?? 300;
  const ledger = opts.ledger ?? true;
  const runId = randomUUID().slice(0, 8);
  const collection = randomUUID();
  const startedAt = new Date().toISOString();
  const t0 = Date.now();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `sets-soak-${runId}-`));
  const files = {
    sent: path.join(workDir, 'sent.jsonl'),
    journal: path.join(workDir, 'consumer-journal.jsonl'),
    producerLog: path.join(workDir, 'producer.log'),
    consumerLog: path.join(workDir, 'consumer.log'),
    nrLog: path.join(workDir, 'node-red.log'),
    nrUserDir: path.join(workDir, 'node-red'),
  };
  log(
    `run ${runId}: ${count} objects at ${rate}/s (batches of ${batch}, ${concurrency} at once), faults ${faults.join(', ') || 'none'}; ` +
      `server recovery sweep every ${recoveryIntervalS} s, grace ${anchorGraceS} s; work dir ${workDir}`,
  );

  const stops: Array<() => Promise<unknown>> = [];
  const faultRecords: FaultRecord[] = [];
  let nr: SoakNodeRed | undefined;
  let consumer: ChildHandle | undefined;
  let producer: ChildHandle | undefined;
  let consumerRestarts = 0;
  let consumerReady = false;
  let prod: Extract<ChildReport, { kind: 'producer' }> | undefined;
  let cons: Extract<ChildReport, { kind: 'consumer' }> | undefined;
  let removeWorkDir = false;
  try {
    // -- services ---------------------------------------------------------------------------
    const [rabbit, chain] = await Promise.all([startRabbit({ private: true }), ownHardhat()]);
    stops.push(() => rabbit.stop(), () => chain.stop());
    await chain.setIntervalMining(1000);
    const registry = await chain.deployRegistry();
    const chainPort = Number(new URL(chain.rpcUrl).port);
    const proxy: TcpProxy = await startTcpProxy(chainPort);
    stops.push(() => proxy.close());
    // every component reaches the chain through the outage proxy, unless no EVM fault is asked for and
    // `chainProxy` is false (the benchmark: no extra hop)
    const rpcUrl = opts.chainProxy === false && !faults.includes('evm') ? chain.rpcUrl : `http://127.0.0.1:${proxy.port}`;
    const amqpUrl = rabbit.url;
    const amqpPort = Number(new URL(amqpUrl).port);
    log(`RabbitMQ ${amqpUrl.replace(/\/\/[^@]*@/, '//')}, hardhat ${chain.rpcUrl} (via proxy ${rpcUrl}), registry ${registry}`);

    // -- server -----------------------------------------------------------------------------
    const nrPort = await freePort();
    prepareServerUserDir({ userDir: files.nrUserDir, port: nrPort, collection, rpcUrl, chainId: chain.chainId, registry, amqpHost: '127.0.0.1', amqpPort, users: USERS, recoveryIntervalS, anchorGraceS, integrity: ledger ? 'required' : 'off' });
    nr = soakNodeRed({ userDir: files.nrUserDir, port: nrPort }, files.nrLog);
    const nrRef = nr;
    stops.push(() => nrRef.stop());
    await nr.start();
    const base = `http://127.0.0.1:${nrPort}`;
    log(`Node-RED at ${base}/ (TAXII API root ${base}/taxii/${SOAK_API_ROOT}/)`);

    // -- consumer (its durable queue must exist before anything is distributed) -------------
    const consumerCfg: ConsumerConfig = { amqpUrl, queue: `soak-${runId}`, collection, rpcUrl, registry, chainId: chain.chainId, journalFile: files.journal, waitMs: consumerWaitMs, prefetch: 50, verify: ledger ? 'ledger' : 'validate' };
    const consumerFile = path.join(__dirname, 'soak-consumer.js');
    const startConsumer = async (): Promise<void> => {
      consumerReady = false;
      const c = startChild(consumerFile, consumerCfg, files.consumerLog, (r) => {
        if (r.kind === 'ready') consumerReady = true;
        if (r.kind === 'consumer') cons = r;
      });
      consumer = c;
      let exit: number | null | undefined;
      void c.exited.then((code) => (exit = code));
      await waitFor('consumer start', () => consumerReady, 60_000, () => (exit !== undefined ? `exited with ${exit} (see ${files.consumerLog})` : undefined));
    };
    await startConsumer();
    stops.push(async () => {
      if (!consumer) return;
      consumer.proc.kill('SIGTERM');
      const t = setTimeout(() => consumer?.proc.kill('SIGKILL'), 15_000);
      await consumer.exited;
      clearTimeout(t);
    });

    // -- producer ---------------------------------------------------------------------------
    const producerCfg: ProducerConfig = {
      apiRootUrl: `${base}/taxii/${SOAK_API_ROOT}/`,
      username: USERS[0].username,
      password: USERS[0].password,
      collection,
      rpcUrl,
      registry,
      chainId: chain.chainId,
      privateKey: chain.accounts[1].privateKey,
      runId,
      count,
      rate,
      batch,
      concurrency,
      sentFile: files.sent,
      giveUpMs,
      anchor: ledger,
    };
    opts.onStarted?.({ chainRpcUrl: chain.rpcUrl, amqpUrl, serverPort: nrPort, producerPid: () => producer?.proc.pid, consumerPid: () => consumer?.proc.pid });
    const setupS = (Date.now() - t0) / 1000;
    const tp = Date.now();
    producer = startChild(path.join(__dirname, 'soak-producer.js'), producerCfg, files.producerLog, (r) => {
      if (r.kind === 'producer') prod = r;
    });
    stops.push(async () => {
      if (producer && producer.proc.exitCode === null) producer.proc.kill('SIGKILL');
      await producer?.exited;
    });
    let producerExit: number | null | undefined;
    void producer.exited.then((c) => (producerExit = c));
    const ticker = setInterval(() => {
      log(
        `t+${Math.round((Date.now() - tp) / 1000)}s sent ${prod?.sent ?? 0}/${count}, verified ${cons?.verified ?? 0}, dup ${cons?.duplicates ?? 0}, rejected ${cons?.rejected ?? 0}, ` +
          `retries anchor ${prod?.anchorRetries ?? 0} post ${prod?.postRetries ?? 0} verify ${cons?.retried ?? 0}` +
          (prod?.lastError ? ` | producer: ${prod.lastError.slice(0, 120)}` : ''),
      );
    }, opts.progressMs ?? 10_000);
    stops.push(async () => clearInterval(ticker));

    // -- faults -----------------------------------------------------------------------------
    const nominalMs = (count / rate) * 1000;
    const runFault = async (f: FaultName): Promise<FaultRecord> => {
      const rec: FaultRecord = { fault: f, atS: Math.round((Date.now() - tp) / 100) / 10, sentBefore: prod?.sent ?? 0, downMs: 0, detail: '' };
      const s = Date.now();
      log(`FAULT ${f} at t+${rec.atS}s (sent ${rec.sentBefore})`);
      try {
        if (f === 'consumer') {
          // at the worst moment: right after a delivery is journalled, before its ack (else after 10 s)
          const c = consumer as ChildHandle;
          c.proc.send({ cmd: 'die-before-ack' });
          let exitedBy: 'itself' | 'us' = 'itself';
          const t = setTimeout(() => {
            exitedBy = 'us';
            c.proc.kill('SIGKILL');
          }, 10_000);
          await c.exited;
          clearTimeout(t);
          rec.detail = exitedBy === 'itself' ? 'consumer SIGKILLed between its journal write and the ack' : 'consumer SIGKILLed (no delivery within 10 s)';
          await delay(2000);
          consumerRestarts++;
          await startConsumer();
          rec.detail += ', restarted after 2 s on the same journal and durable queue';
        } else if (f === 'rabbitmq') {
          await rabbit.restart();
          rec.detail = 'RabbitMQ node stopped (SIGTERM, graceful) and started again on the same data dir, node name and ports';
        } else if (f === 'evm') {
          // at the worst moment: while a transaction waits in the pool (else after 10 s)
          const pool = async (): Promise<string[]> =>
            (((await chain.rpc('eth_getBlockByNumber', ['pending', false]).catch(() => null)) as { transactions?: string[] } | null)?.transactions ?? []);
          const until = Date.now() + 10_000;
          while (Date.now() < until && (await pool()).length === 0) await delay(20);
          await proxy.cut();
          const hashes = await pool();
          let dropped = 0;
          for (const h of hashes) if ((await chain.rpc('hardhat_dropTransaction', [h]).catch(() => false)) === true) dropped++;
          await delay(evmOutageMs);
          await proxy.restore();
          rec.detail = `EMULATED EVM node restart: chain proxy cut for ${evmOutageMs} ms, ${dropped} of ${hashes.length} pending transaction(s) dropped from the pool; chain state kept`;
        } else {
          // at the worst moment: while records are stored `pending` (admitted, not settled yet), else after 10 s
          const until = Date.now() + 10_000;
          let seen = 0;
          while (Date.now() < until) {
            seen = await fetch(`${base}/soak/records?status=pending`, { signal: AbortSignal.timeout(5000) })
              .then(async (r) => (r.ok ? ((await r.json()) as unknown[]).length : 0))
              .catch(() => 0);
            if (seen > 0) break;
          }
          await nr?.kill();
          await delay(2000);
          await nr?.start();
          rec.detail = `Node-RED SIGKILLed (${seen > 0 ? `while ${seen} record(s) were pending` : 'no pending record seen within 10 s'}), restarted after 2 s on the same user dir (flow, embedded store) and port`;
        }
      } catch (err) {
        rec.error = errText(err);
        log(`FAULT ${f} failed: ${rec.error}`);
      }
      rec.downMs = Date.now() - s;
      log(`FAULT ${f} over after ${rec.downMs} ms: ${rec.detail}`);
      return rec;
    };
    for (let i = 0; i < faults.length; i++) {
      const due = tp + faultAt[i] * nominalMs;
      while (Date.now() < due && producerExit === undefined) await delay(200);
      faultRecords.push(await runFault(faults[i]));
    }
    // -- end of production, drain -----------------------------------------------------------
    await waitFor('producer', () => producerExit !== undefined, nominalMs + giveUpMs + 120_000).catch((err: unknown) => log(errText(err)));
    const productionS = (Date.now() - tp) / 1000;
    log(`producer finished (exit ${producerExit}) after ${productionS.toFixed(1)} s: sent ${prod?.sent ?? 0}, unsent ${prod?.unsent ?? 0}`);
    const td = Date.now();
    const pendingNow = async (): Promise<number | null> => {
      try {
        const r = await fetch(`${base}/soak/records?status=pending`, { signal: AbortSignal.timeout(15_000) });
        if (!r.ok) return null;
        return ((await r.json()) as unknown[]).length;
      } catch {
        return null;
      }
    };
    const sentIds = (): Set<string> => new Set(readJsonLines<SentLine>(files.sent).map((l) => l.id));
    for (;;) {
      const sentN = sentIds().size;
      const settled = (cons?.verified ?? 0) + (cons?.rejected ?? 0);
      const pend = await pendingNow();
      if (settled >= sentN && pend === 0) {
        log(`drained after ${((Date.now() - td) / 1000).toFixed(1)} s`);
        break;
      }
      if (Date.now() - td > drainMs) {
        log(`not drained after ${drainMs} ms: consumer settled ${settled} of ${sentN}, ${pend ?? '?'} record(s) pending`);
        break;
      }
      await delay(2000);
    }
    const drainS = (Date.now() - td) / 1000;
    if (opts.afterDrain) {
      await opts.afterDrain({
        apiRootUrl: producerCfg.apiRootUrl,
        publisher: { username: USERS[0].username, password: USERS[0].password },
        reader: { username: USERS[1].username, password: USERS[1].password },
        collection,
        rpcUrl,
        registry,
        chainId: chain.chainId,
        privateKey: producerCfg.privateKey,
        runId,
        log,
      });
    }

    // -- measure ----------------------------------------------------------------------------
    let servedByTaxii = 0;
    const taxii = new TaxiiClient({ apiRootUrl: `${base}/taxii/${SOAK_API_ROOT}/`, auth: new BasicAuth(USERS[1].username, USERS[1].password), timeoutMs: 30_000 });
    try {
      const served = new Set<string>();
      for await (const m of taxii.iterManifest(collection, { limit: 1000 })) served.add(m.id);
      servedByTaxii = served.size;
    } catch (err) {
      log(`TAXII manifest failed: ${errText(err)}`);
      servedByTaxii = -1;
    } finally {
      taxii.close();
    }
    let leftInQueue: number | null = null;
    try {
      const c = await amqp.connect(amqpUrl, { timeout: 5000 });
      c.on('error', () => undefined);
      const ch = await c.createChannel();
      ch.on('error', () => undefined);
      leftInQueue = (await ch.checkQueue(consumerCfg.queue)).messageCount;
      await c.close();
    } catch (err) {
      log(`queue check failed: ${errText(err)}`);
    }
    // stop the consumer and Node-RED for good, then read the store itself
    const consumerLast = cons;
    if (consumer) {
      consumer.proc.kill('SIGTERM');
      const t = setTimeout(() => consumer?.proc.kill('SIGKILL'), 15_000);
      await consumer.exited;
      clearTimeout(t);
    }
    await nr.stop();
    const byStatus: Record<IntegrityStatus, number> = { pending: 0, finalized: 0, invalid: 0 };
    const storedIds = new Set<string>();
    const pendingIds: string[] = [];
    const store = new EmbeddedStore({ dir: path.join(files.nrUserDir, SOAK_STORE_SUBDIR) });
    await store.open();
    try {
      let cursor: string | undefined;
      for (;;) {
        const page = await store.query({ collection, versions: ['all'], specVersions: ['2.0', '2.1'], includeInvalid: true, limit: 1000, ...(cursor ? { cursor } : {}) });
        for (const r of page.items) {
          storedIds.add(r.id);
          byStatus[r.status]++;
          if (r.status === 'pending') pendingIds.push(r.id);
        }
        if (!page.more || !page.cursor) break;
        cursor = page.cursor;
      }
    } finally {
      await store.close();
    }

    const sentLines = readJsonLines<SentLine>(files.sent);
    const sentAt = new Map<string, number>();
    for (const l of sentLines) if (!sentAt.has(l.id)) sentAt.set(l.id, l.at);
    const journal = readJsonLines<JournalLine>(files.journal);
    const verifiedAt = new Map<string, number>();
    const rejectedIds = new Set<string>();
    let duplicates = 0;
    for (const l of journal) {
      if (l.k === 'verified' && !verifiedAt.has(l.id)) verifiedAt.set(l.id, l.at);
      else if (l.k === 'dup') duplicates++;
      else if (l.k === 'rejected') rejectedIds.add(l.id);
    }
    const notVerified = [...sentAt.keys()].filter((id) => !verifiedAt.has(id));
    const notStored = [...sentAt.keys()].filter((id) => !storedIds.has(id));
    const lost = new Set([...notVerified, ...notStored]);
    const latencies = [...sentAt].flatMap(([id, at]) => (verifiedAt.has(id) ? [(verifiedAt.get(id) as number) - at] : [])).sort((a, b) => a - b);
    // what the nodes said (records with a node type; Node-RED's own start-up notices are left out)
    const events = readJsonLines<{ level: number; type?: string; name?: string; msg?: string }>(path.join(files.nrUserDir, 'nr-events.jsonl')).filter((e) => !!e.type);
    const nrErrors = events.filter((e) => e.level <= 20);
    const catchMsgs = events.filter((e) => e.type === 'debug' && e.name === 'ERROR');
    const sampleMsgs = [...new Set([...nrErrors, ...events.filter((e) => e.level === 30)].map((e) => `${e.type ?? ''} ${String(e.msg ?? '').slice(0, 200)}`))].slice(0, 8);
    const unsent = count - sentAt.size;
    const totalS = (Date.now() - t0) / 1000;
    const result: SoakResult = {
      ok: false,
      startedAt,
      runId,
      params: { count, rate, batch, concurrency, evmOutageMs, drainMs, consumerWaitMs, recoveryIntervalS, anchorGraceS, faults, faultAt },
      counts: {
        produced: count,
        sent: sentAt.size,
        unsent,
        stored: storedIds.size,
        storedByStatus: byStatus,
        servedByTaxii,
        distributed: new Set([...verifiedAt.keys(), ...rejectedIds]).size,
        verified: verifiedAt.size,
        duplicates,
        rejected: rejectedIds.size,
        lost: lost.size,
        lostNotVerified: notVerified.length,
        lostNotStored: notStored.length,
        leftPending: byStatus.pending,
        leftInQueue,
      },
      samples: { notVerified: notVerified.slice(0, 5), notStored: notStored.slice(0, 5), pending: pendingIds.slice(0, 5), rejected: [...rejectedIds].slice(0, 5) },
      producer: { anchorRetries: prod?.anchorRetries ?? 0, postRetries: prod?.postRetries ?? 0, ...(prod?.lastError ? { lastError: prod.lastError } : {}), exitCode: producerExit ?? null },
      consumer: { retried: consumerLast?.retried ?? 0, restarts: consumerRestarts, ...(consumerLast?.lastError ? { lastError: consumerLast.lastError } : {}) },
      nodeRed: { starts: nr.starts, errors: nrErrors.length, warnings: events.filter((e) => e.level === 30).length, catchMessages: catchMsgs.length, samples: sampleMsgs },
      faults: faultRecords,
      durations: { totalS: Math.round(totalS * 10) / 10, setupS: Math.round(setupS * 10) / 10, productionS: Math.round(productionS * 10) / 10, drainS: Math.round(drainS * 10) / 10 },
      rates: {
        sentPerS: Math.round((sentAt.size / productionS) * 10) / 10,
        verifiedPerS: Math.round((verifiedAt.size / (productionS + drainS)) * 10) / 10,
      },
      latencyMs: latencies.length ? { p50: percentile(latencies, 50), p95: percentile(latencies, 95), max: latencies[latencies.length - 1] } : null,
      workDir,
    };
    result.ok = result.counts.lost === 0 && result.counts.leftPending === 0 && result.counts.unsent === 0 && faultRecords.every((f) => !f.error);
    if (result.ok && !opts.keep) removeWorkDir = true;
    return result;
  } finally {
    for (const s of stops.reverse()) await s().catch((err: unknown) => log(`stop: ${errText(err)}`));
    if (removeWorkDir) fs.rmSync(workDir, { recursive: true, force: true });
  }
}

/** The readable summary of a result. */
export function summarise(r: SoakResult): string {
  const c = r.counts;
  const lines = [
    `SETS soak ${r.runId} — ${r.ok ? 'PASSED' : 'FAILED'} (${r.params.count} objects at ${r.params.rate}/s, faults: ${r.params.faults.join(', ') || 'none'}; ` +
      `recovery sweep every ${r.params.recoveryIntervalS} s, grace ${r.params.anchorGraceS} s)`,
    `  sent ${c.sent} of ${c.produced} (unsent ${c.unsent}) · stored ${c.stored} (finalized ${c.storedByStatus.finalized}, pending ${c.storedByStatus.pending}, invalid ${c.storedByStatus.invalid}) · served by TAXII ${c.servedByTaxii}`,
    `  distributed ${c.distributed} · verified ${c.verified} · duplicates recognised ${c.duplicates} · rejected ${c.rejected} · left in queue ${c.leftInQueue ?? '?'}`,
    `  LOST ${c.lost} (not verified at the consumer ${c.lostNotVerified}, not stored ${c.lostNotStored}) · LEFT PENDING ${c.leftPending}`,
    `  time ${r.durations.totalS} s (setup ${r.durations.setupS}, production ${r.durations.productionS}, drain ${r.durations.drainS}) · ${r.rates.sentPerS} sent/s · ${r.rates.verifiedPerS} verified/s` +
      (r.latencyMs ? ` · POST→verified p50 ${r.latencyMs.p50} ms p95 ${r.latencyMs.p95} ms max ${r.latencyMs.max} ms` : ''),
    `  producer: ${r.producer.anchorRetries} anchor retries, ${r.producer.postRetries} POST retries${r.producer.lastError ? ` (last: ${r.producer.lastError.slice(0, 160)})` : ''}`,
    `  consumer: ${r.consumer.restarts} restart(s), ${r.consumer.retried} verification retries${r.consumer.lastError ? ` (last: ${r.consumer.lastError.slice(0, 160)})` : ''}`,
    `  Node-RED: ${r.nodeRed.starts} start(s), ${r.nodeRed.errors} error(s), ${r.nodeRed.warnings} warning(s), ${r.nodeRed.catchMessages} caught`,
    ...r.nodeRed.samples.map((s) => `    · ${s}`),
    ...r.faults.map((f) => `  fault ${f.fault} at t+${f.atS}s (sent ${f.sentBefore}): ${f.downMs} ms — ${f.detail}${f.error ? ` — FAILED: ${f.error}` : ''}`),
  ];
  if (c.lostNotVerified) lines.push(`  e.g. not verified: ${r.samples.notVerified.join(', ')}`);
  if (c.leftPending) lines.push(`  e.g. pending: ${r.samples.pending.join(', ')}`);
  lines.push(`  work dir: ${r.workDir}`);
  return lines.join('\n');
}
