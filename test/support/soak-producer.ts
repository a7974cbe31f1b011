/**
 * The soak's producer (a child process of test/support/soak-run.ts; env SETS_SOAK_CONFIG holds a
 * ProducerConfig as JSON): at a steady rate, batches of objects are anchored (lib/ops/anchor →
 * Ledger.anchorMany) and then POSTed to the TAXII server (lib/taxii/client, Basic auth).
 *
 * At least once: a batch whose anchoring or POST fails (chain or server down, connection reset,
 * an object the server could not store) is retried with the same objects — anchoring an
 * identical hash again is idempotent (`existing: true`), and the server answers a duplicate POST
 * with "already present". An object counts as sent once a POST answered 202 listing it among the
 * successes or pendings; it is then appended (fsynced) to the sent file. After `giveUpMs` of
 * failures a batch is given up and its objects are reported unsent.
 */
import { anchorPayload } from '../../lib/ops/anchor';
import { EvmLedger } from '../../lib/ledger/evm';
import { TaxiiClient } from '../../lib/taxii/client';
import { BasicAuth } from '../../lib/auth/client';
import { objectVersion } from '../../lib/digest';
import type { StixObject } from '../../lib/stix';
import { Journal, delay, errText, report, soakObject, type ProducerConfig, type SentLine } from './soak-common';

async function runProducer(cfg: ProducerConfig): Promise<void> {
  const ledger = new EvmLedger({
    rpcUrl: cfg.rpcUrl,
    address: cfg.registry,
    chainId: cfg.chainId,
    privateKey: cfg.privateKey,
    requestTimeoutMs: 5000,
    txTimeoutMs: 30_000,
    healthCheckMs: 0,
  });
  const client = new TaxiiClient({
    apiRootUrl: cfg.apiRootUrl,
    auth: new BasicAuth(cfg.username, cfg.password),
    timeoutMs: 20_000,
    connectTimeoutMs: 3000,
  });
  const sent = new Journal(cfg.sentFile);
  const created = new Date().toISOString();
  const stats = { sent: 0, batchesDone: 0, anchorRetries: 0, postRetries: 0, unsent: 0, lastError: undefined as string | undefined };
  const progress = (done = false): void =>
    report({ kind: 'producer', sent: stats.sent, batchesDone: stats.batchesDone, anchorRetries: stats.anchorRetries, postRetries: stats.postRetries, unsent: stats.unsent, done, ...(stats.lastError ? { lastError: stats.lastError } : {}) });

  const runBatch = async (first: number, objects: StixObject[]): Promise<void> => {
    const start = Date.now();
    const deadline = start + cfg.giveUpMs;
    // 1. anchor (retried until it succeeds: idempotent for identical hashes); not in the no-ledger baseline
    for (; cfg.anchor !== false; ) {
      try {
        await anchorPayload(ledger, { collection: cfg.collection, payload: objects });
        break;
      } catch (err) {
        stats.anchorRetries++;
        stats.lastError = `anchor: ${errText(err)}`;
        if (Date.now() > deadline) {
          stats.unsent += objects.length;
          process.stderr.write(`[producer] giving up batch at #${first} (anchor): ${errText(err)}\n`);
          return;
        }
        await delay(1000);
      }
    }
    // 2. POST until every object is accepted (a retry of accepted objects is answered "already present")
    let left = objects;
    for (;;) {
      try {
        const st = await client.addObjects(cfg.collection, left, { wait: false });
        const accepted = new Set([...(st.successes ?? []), ...(st.pendings ?? [])].map((d) => d.id));
        const now = Date.now();
        for (const o of left) {
          if (!accepted.has(o.id)) continue;
          const line: SentLine = { i: first + objects.indexOf(o), id: o.id, version: objectVersion(o), at: now, start };
          sent.append(line);
          stats.sent++;
        }
        left = left.filter((o) => !accepted.has(o.id));
        if (left.length === 0) break;
        stats.lastError = `POST: ${st.failure_count} failed (${(st.failures ?? []).slice(0, 2).map((f) => f.message ?? f.id).join('; ')})`;
      } catch (err) {
        stats.lastError = `POST: ${errText(err)}`;
      }
      stats.postRetries++;
      if (Date.now() > deadline) {
        stats.unsent += left.length;
        process.stderr.write(`[producer] giving up ${left.length} object(s) of batch at #${first} (POST): ${stats.lastError}\n`);
        return;
      }
      await delay(1000);
    }
  };

  const t0 = Date.now();
  const inflight = new Set<Promise<void>>();
  const ticker = setInterval(() => progress(), 1000);
  for (let first = 0; first < cfg.count; first += cfg.batch) {
    // steady rate: batch j starts at t0 + j × batch / rate
    const due = t0 + (first / cfg.rate) * 1000;
    if (due > Date.now()) await delay(due - Date.now());
    while (inflight.size >= cfg.concurrency) await Promise.race(inflight);
    const objects: StixObject[] = [];
    for (let i = first; i < Math.min(cfg.count, first + cfg.batch); i++) objects.push(soakObject(cfg.runId, i, created));
    const job = runBatch(first, objects).finally(() => {
      inflight.delete(job);
      stats.batchesDone++;
    });
    inflight.add(job);
  }
  await Promise.all(inflight);
  clearInterval(ticker);
  progress(true);
  sent.close();
  client.close();
  await ledger.close();
}

if (require.main === module && process.env.SETS_SOAK_CONFIG) {
  runProducer(JSON.parse(process.env.SETS_SOAK_CONFIG) as ProducerConfig).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`[producer] failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
