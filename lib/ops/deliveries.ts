/**
 * Unsettled RabbitMQ deliveries between a subscriber and whatever settles them later (the
 * `rabbit-ack` node at the end of a flow, an n8n step). The consumer acknowledges only after the
 * flow has finished with the message (at-least-once), so a delivery must be findable by a plain
 * string id carried in the message — `msg.amqp.deliveryId` — and must be settled exactly once.
 *
 * - `track(owner, settler)` registers a delivery and returns its id (unique in the process).
 * - `settle(id, action)` acks or nacks it once; a second settle is refused as `already-settled`.
 * - `release(owner)` forgets the owner's unsettled deliveries when the subscriber closes: they are
 *   NOT acked — the broker redelivers them once the channel is gone — and a later settle reports
 *   `released` instead of failing obscurely.
 * Remembered outcomes are bounded (`memory`), so a long-running process does not grow.
 */
import { randomBytes } from 'node:crypto';

export type SettleAction = { kind: 'ack' } | { kind: 'nack'; requeue: boolean };

/** How to settle one delivery on its channel (the bus provides it). */
export interface Settler {
  ack(): void | Promise<void>;
  nack(requeue: boolean): void | Promise<void>;
}

export type SettleOutcome =
  /** done now */
  | { outcome: 'settled'; action: SettleAction; owner: string }
  /** settled earlier: the second settle is ignored */
  | { outcome: 'already-settled'; previous: SettleAction; owner: string }
  /** its subscriber closed before it was settled: the broker redelivers it */
  | { outcome: 'released'; owner: string }
  /** never seen (or forgotten long ago) */
  | { outcome: 'unknown' }
  /** the channel refused the settle (connection lost): the broker redelivers it */
  | { outcome: 'failed'; owner: string; error: Error };

interface Pending {
  owner: string;
  settler: Settler;
}

type Past = { kind: 'settled'; action: SettleAction; owner: string } | { kind: 'released'; owner: string };

export class DeliveryTracker {
  private readonly pending = new Map<string, Pending>();
  private readonly past = new Map<string, Past>();
  private readonly prefix = randomBytes(6).toString('hex');
  private seq = 0;
  private readonly listeners = new Set<(owner: string) => void>();

  /** @param memory how many settled/released ids to remember for clear duplicate warnings */
  constructor(private readonly memory = 10_000) {}

  track(owner: string, settler: Settler): string {
    this.seq += 1;
    const id = `${this.prefix}-${this.seq.toString(36)}`;
    this.pending.set(id, { owner, settler });
    return id;
  }

  /** Called with the owner whenever one of its deliveries is settled or released. */
  onChange(listener: (owner: string) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private changed(owner: string): void {
    for (const l of [...this.listeners]) {
      try {
        l(owner);
      } catch {
        // a listener's failure is not ours
      }
    }
  }

  /** Unsettled deliveries, of one owner or of all. */
  unsettled(owner?: string): number {
    if (owner === undefined) return this.pending.size;
    let n = 0;
    for (const p of this.pending.values()) if (p.owner === owner) n += 1;
    return n;
  }

  /** Owner of an unsettled delivery. */
  ownerOf(id: string): string | undefined {
    return this.pending.get(id)?.owner;
  }

  async settle(id: string, action: SettleAction): Promise<SettleOutcome> {
    const p = this.pending.get(id);
    if (!p) {
      const past = this.past.get(id);
      if (!past) return { outcome: 'unknown' };
      if (past.kind === 'released') return { outcome: 'released', owner: past.owner };
      return { outcome: 'already-settled', previous: past.action, owner: past.owner };
    }
    // settled from now on, whatever the channel says: a retry could double-ack
    this.pending.delete(id);
    this.remember(id, { kind: 'settled', action, owner: p.owner });
    this.changed(p.owner);
    try {
      if (action.kind === 'ack') await p.settler.ack();
      else await p.settler.nack(action.requeue);
      return { outcome: 'settled', action, owner: p.owner };
    } catch (err) {
      return { outcome: 'failed', owner: p.owner, error: err instanceof Error ? err : new Error(String(err)) };
    }
  }

  /** Forget the owner's unsettled deliveries (left to the broker). Returns how many. */
  release(owner: string): number {
    let n = 0;
    for (const [id, p] of this.pending) {
      if (p.owner !== owner) continue;
      this.pending.delete(id);
      this.remember(id, { kind: 'released', owner });
      n += 1;
    }
    if (n > 0) this.changed(owner);
    return n;
  }

  private remember(id: string, past: Past): void {
    this.past.set(id, past);
    while (this.past.size > this.memory) {
      const oldest = this.past.keys().next().value;
      if (oldest === undefined) break;
      this.past.delete(oldest);
    }
  }
}

/** `msg.amqp.nack` override: `{requeue: boolean}` (or `true` = no requeue) -> a nack action; else undefined. */
export function nackOverride(value: unknown): SettleAction | undefined {
  if (value === true) return { kind: 'nack', requeue: false };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const requeue = (value as { requeue?: unknown }).requeue;
  return { kind: 'nack', requeue: requeue === true };
}
