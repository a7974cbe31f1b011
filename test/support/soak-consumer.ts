/**
 * The soak's consumer (a child process of test/support/soak-run.ts; env SETS_SOAK_CONFIG holds a
 * ConsumerConfig as JSON): subscribes to its durable queue (lib/bus/amqp, manual acks), verifies
 * each object against the ledger (lib/ops/verify verifyPayload, waiting for a not-yet-mined
 * anchor), appends the outcome to its journal (written and fdatasync'ed) and only THEN acks.
 *
 * - verified, first time for (id, version): journal `verified`;
 * - verified again with the same (id, version, hash) — a redelivery after a kill, a broker
 *   restart or a resend: journal `dup` (recognised, counted, not a second object);
 * - mismatch / not-anchored: journal `rejected` with the reason, acked (the run reports them);
 * - `unknown` (ledger unreachable, wait ran out) or a verification error: nack with requeue after
 *   a pause — the broker delivers it again later; nothing is journalled.
 * On start the journal is read back, so duplicates are recognised across a SIGKILL and restart.
 */
import { AmqpBus } from '../../lib/bus/amqp';
import { EvmLedger } from '../../lib/ledger/evm';
import { verifyPayload } from '../../lib/ops/verify';
import type { Verification } from '../../lib/verify';
import { extractObjects } from '../../lib/stix';
import { hashObject, objectVersion } from '../../lib/digest';
import { Journal, delay, errText, readJsonLines, report, type ConsumerConfig, type JournalLine } from './soak-common';

async function runConsumer(cfg: ConsumerConfig): Promise<void> {
  // the consumer fault at the worst moment: the orchestrator asks for a SIGKILL right after the
  // next journal write, before its ack (the redelivery must then be recognised as a duplicate)
  let dieBeforeAck = false;
  process.on('message', (m: { cmd?: string }) => {
    if (m?.cmd === 'die-before-ack') dieBeforeAck = true;
  });
  const maybeDie = (): void => {
    if (dieBeforeAck) process.kill(process.pid, 'SIGKILL');
  };
  const seen = new Map<string, string>(); // `${id}|${version}` -> hash
  const stats = { verified: 0, duplicates: 0, rejected: 0, retried: 0, lastError: undefined as string | undefined };
  for (const l of readJsonLines<JournalLine>(cfg.journalFile)) {
    if (l.k === 'verified') {
      seen.set(`${l.id}|${l.version}`, l.hash);
      stats.verified++;
    } else if (l.k === 'dup') stats.duplicates++;
    else if (l.k === 'rejected') stats.rejected++;
  }
  const journal = new Journal(cfg.journalFile);
  const ledger = new EvmLedger({ rpcUrl: cfg.rpcUrl, address: cfg.registry, chainId: cfg.chainId, requestTimeoutMs: 5000, healthCheckMs: 0 });
  const bus = new AmqpBus({ url: cfg.amqpUrl, prefetch: cfg.prefetch, clientName: 'SETS soak consumer', connectTimeoutMs: 5000, reconnect: { initialDelayMs: 300, maxDelayMs: 3000 } });
  bus.onWarning((w) => {
    stats.lastError = `bus: ${w.message}`;
  });
  const progress = (): void =>
    report({ kind: 'consumer', verified: stats.verified, duplicates: stats.duplicates, rejected: stats.rejected, retried: stats.retried, ...(stats.lastError ? { lastError: stats.lastError } : {}) });

  const sub = bus.subscribe({ queue: cfg.queue, durable: true, bindings: [`${cfg.collection}.#`], ackMode: 'manual', prefetch: cfg.prefetch }, async (d) => {
    const base: Pick<JournalLine, 'messageId' | 'redelivered' | 'at' | 'done'> = { messageId: d.messageId, redelivered: d.redelivered, at: Date.now() };
    let payload: unknown;
    try {
      payload = d.json();
    } catch (err) {
      stats.rejected++;
      journal.append({ k: 'rejected', id: String(d.headers['x-sets-object-id'] ?? '?'), version: null, hash: '', reason: `not JSON: ${errText(err)}`, ...base } satisfies JournalLine);
      d.ack();
      return;
    }
    let v: Pick<Verification, 'status' | 'id' | 'version' | 'actual' | 'reason' | 'cause'> | undefined;
    try {
      if (cfg.verify === 'validate') {
        const o = extractObjects(payload)[0];
        v = { status: 'verified', id: o.id, version: objectVersion(o), actual: hashObject(o) };
      } else {
        const results = await verifyPayload(ledger, { collection: cfg.collection, payload, waitMs: cfg.waitMs });
        v = results[0].verification;
      }
    } catch (err) {
      stats.lastError = `verify: ${errText(err)}`;
    }
    if (!v || v.status === 'unknown') {
      if (v) stats.lastError = `verify: unknown (${v.reason ?? v.cause ?? ''})`;
      stats.retried++;
      await delay(1000);
      d.nack({ requeue: true });
      return;
    }
    base.done = Date.now();
    if (v.status === 'verified') {
      const k = `${v.id}|${v.version}`;
      const had = seen.get(k);
      if (had === v.actual) {
        stats.duplicates++;
        journal.append({ k: 'dup', id: v.id, version: v.version, hash: v.actual, ...base } satisfies JournalLine);
      } else {
        seen.set(k, v.actual);
        stats.verified++;
        journal.append({ k: 'verified', id: v.id, version: v.version, hash: v.actual, ...base } satisfies JournalLine);
      }
    } else {
      stats.rejected++;
      journal.append({ k: 'rejected', id: v.id, version: v.version, hash: v.actual, reason: `${v.status}: ${v.reason ?? ''}`, ...base } satisfies JournalLine);
    }
    maybeDie();
    d.ack();
  });
  const ticker = setInterval(progress, 1000);
  await sub.ready();
  report({ kind: 'ready' });
  progress();
  const stop = (): void => {
    clearInterval(ticker);
    void sub
      .cancel()
      .then(() => bus.close())
      .then(() => ledger.close())
      .finally(() => {
        journal.close();
        process.exit(0);
      });
  };
  process.once('SIGTERM', stop);
  process.once('disconnect', stop);
}

if (require.main === module && process.env.SETS_SOAK_CONFIG) {
  runConsumer(JSON.parse(process.env.SETS_SOAK_CONFIG) as ConsumerConfig).catch((err: unknown) => {
    process.stderr.write(`[consumer] failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
