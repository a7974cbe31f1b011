/**
 * What the soak's processes (test/support/soak-run.ts and its children soak-producer.ts,
 * soak-consumer.ts, soak-node-red.ts) share: the objects produced, the child configurations, the
 * progress messages sent to the orchestrator over IPC, and the durable journals (JSON lines,
 * fsynced) each child appends to.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { StixObject } from '../../lib/stix';

/** The producer's configuration (env SETS_SOAK_CONFIG, JSON). */
export interface ProducerConfig {
  /** the TAXII API root, e.g. http://127.0.0.1:<port>/taxii/api1/ */
  apiRootUrl: string;
  username: string;
  password: string;
  collection: string;
  /** the chain as everybody reaches it: through the outage proxy */
  rpcUrl: string;
  registry: string;
  chainId: number;
  privateKey: string;
  runId: string;
  count: number;
  /** objects per second the producer aims at */
  rate: number;
  /** objects per anchorMany batch (and per POST) */
  batch: number;
  /** batches in progress at once (anchor, then POST) */
  concurrency: number;
  /** JSON lines: one per object the server accepted (POST answered 202 listing it as success or pending) */
  sentFile: string;
  /** give up retrying a batch after this long, ms (then it is reported unsent) */
  giveUpMs: number;
  /** false: POST without anchoring (the benchmark's no-ledger baseline, a collection with integrity off); default true */
  anchor?: boolean;
}

/** The consumer's configuration (env SETS_SOAK_CONFIG, JSON). */
export interface ConsumerConfig {
  amqpUrl: string;
  queue: string;
  collection: string;
  rpcUrl: string;
  registry: string;
  chainId: number;
  /** JSON lines: one per delivery settled (verified, duplicate or rejected), written and fsynced BEFORE the ack */
  journalFile: string;
  /** how long verifyPayload waits for a not-yet-mined anchor, ms */
  waitMs: number;
  prefetch: number;
  /**
   * 'ledger' (default): verifyPayload against the ledger. 'validate': the benchmark's no-ledger
   * baseline — the object is parsed and STIX-validated (lib/stix extractObjects) and hashed, no
   * ledger read; journalled as `verified` (meaning received and valid).
   */
  verify?: 'ledger' | 'validate';
}

/** Progress a child reports to the orchestrator (IPC). */
export type ChildReport =
  | { kind: 'ready' }
  | { kind: 'producer'; sent: number; batchesDone: number; anchorRetries: number; postRetries: number; unsent: number; done: boolean; lastError?: string }
  | { kind: 'consumer'; verified: number; duplicates: number; rejected: number; retried: number; lastError?: string };

/** One line of the consumer's journal. */
export interface JournalLine {
  /** verified: first verification of (id, version); dup: the same (id, version, hash) again; rejected: mismatch / not-anchored */
  k: 'verified' | 'dup' | 'rejected';
  id: string;
  version: string | null;
  hash: string;
  messageId?: string;
  redelivered: boolean;
  reason?: string;
  at: number;
  /** when the delivery was settled (verification done, journal about to be written), ms */
  done?: number;
}

/** One line of the producer's sent file. */
export interface SentLine {
  i: number;
  id: string;
  version: string | null;
  at: number;
  /** when the producer began this object's batch (before anchoring), ms */
  start?: number;
}

/** A UUID (v4 layout) derived from a seed: the same object on every retry. */
export function seededUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Object number `i` of run `runId`: a STIX 2.1 indicator, created at `created`. */
export function soakObject(runId: string, i: number, created: string): StixObject {
  const a = (i >> 16) & 255;
  const b = (i >> 8) & 255;
  const c = i & 255;
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${seededUuid(`${runId}/${i}`)}`,
    created,
    modified: created,
    name: `soak ${runId} #${i}`,
    pattern_type: 'stix',
    pattern: `[ipv4-addr:value = '10.${a}.${b}.${c}']`,
    valid_from: created,
  };
}

/** An append-only JSON-lines file; every append is written and fdatasync'ed before it returns. */
export class Journal {
  private readonly fd: number;
  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'a');
  }
  append(obj: unknown): void {
    fs.writeSync(this.fd, JSON.stringify(obj) + '\n');
    fs.fdatasyncSync(this.fd);
  }
  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

/** Every complete line of a JSON-lines file (a torn last line, from a SIGKILL mid-write, is skipped). */
export function readJsonLines<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  const out: T[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // torn line
    }
  }
  return out;
}

/** Send a report to the orchestrator when this process has an IPC channel. */
export function report(r: ChildReport): void {
  if (typeof process.send === 'function' && process.connected) {
    try {
      process.send(r);
    } catch {
      // the orchestrator is gone
    }
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
