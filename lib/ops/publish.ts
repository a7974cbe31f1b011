/**
 * Paper step 3 ("distribution") from a producer or server flow: each STIX object of a payload is
 * published to the topic exchange with routing key `<collection>.<type>`, persistent, with
 * publisher confirms. Validation comes first (lib/stix, all-or-nothing), so a bad payload sends
 * nothing. The broker confirms each message separately: if some are refused, the error names
 * them and says how many were confirmed (those are delivered; resending is safe — consumers
 * verify, and each object keeps its messageId across re-sends, derived from collection, id,
 * version and hash, so consumers recognise a copy).
 *
 * Unroutable (no queue bound for `<collection>.<type>`): by default refused — the publish is
 * `mandatory`, the broker returns the message, and the error says UNROUTABLE with the exchange
 * and routing key — because a confirmed-but-dropped message looks like a delivered one.
 * `allowUnroutable: true` is fire-and-forget pub/sub: nobody listening = dropped, not an error.
 */
import type { Bus, PublishResult } from '../bus/bus';
import { extractObjects, type StixObject } from '../stix';
import { checkCollection } from './collection';
import { OpsError, messageOf, type ObjectProblem } from './errors';

export interface PublishInput {
  collection: string;
  /** STIX content: object, array, bundle, TAXII envelope, JSON text or bytes */
  payload: unknown;
  /**
   * h_t per object id (from anchor-hash's result) for the informational `x-sets-hash` header.
   * Not recomputed here: with the keyed-hash option a plain hash in a header would undo the privacy.
   */
  hashes?: ReadonlyMap<string, string>;
  /** overall bound per object (wait for the broker + confirm), ms; default: the bus's bounds */
  timeoutMs?: number;
  /** how long to wait for a broker connection, ms (default: the bus's, 120 s) */
  brokerWaitMs?: number;
  /** how long the broker may take to confirm a sent message, ms (default: the bus's, 30 s) */
  confirmTimeoutMs?: number;
  /** true: a message no queue is bound for is dropped by the broker without an error (default false: UNROUTABLE) */
  allowUnroutable?: boolean;
}

export interface PublishOutcome {
  exchange: string;
  collection: string;
  count: number;
  routingKeys: string[];
  messageIds: string[];
}

/** Hashes by object id from an anchor result in msg.sets (`items: [{id, hash}]`), when present. */
export function hashesFromSets(sets: unknown): Map<string, string> | undefined {
  if (typeof sets !== 'object' || sets === null) return undefined;
  const items = (sets as { items?: unknown }).items;
  if (!Array.isArray(items)) return undefined;
  const out = new Map<string, string>();
  for (const it of items) {
    if (typeof it !== 'object' || it === null) continue;
    const { id, hash } = it as { id?: unknown; hash?: unknown };
    if (typeof id === 'string' && typeof hash === 'string') out.set(id, hash);
  }
  return out.size ? out : undefined;
}

export async function publishPayload(bus: Bus, input: PublishInput): Promise<PublishOutcome> {
  const collection = checkCollection(input.collection);
  const objects: StixObject[] = extractObjects(input.payload);
  const settled = await Promise.allSettled(
    objects.map((o) =>
      bus.publishStix(collection, o, {
        ...(input.hashes?.get(o.id) ? { hash: input.hashes.get(o.id) } : {}),
        ...(input.timeoutMs !== undefined ? { timeoutMs: input.timeoutMs } : {}),
        ...(input.brokerWaitMs !== undefined ? { brokerWaitMs: input.brokerWaitMs } : {}),
        ...(input.confirmTimeoutMs !== undefined ? { confirmTimeoutMs: input.confirmTimeoutMs } : {}),
        mandatory: input.allowUnroutable !== true,
      }),
    ),
  );
  const ok: PublishResult[] = [];
  const problems: ObjectProblem[] = [];
  settled.forEach((s, index) => {
    if (s.status === 'fulfilled') ok.push(s.value);
    else problems.push({ index, id: objects[index].id, message: messageOf(s.reason) });
  });
  if (problems.length > 0) {
    const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    const first = rejected[0];
    const codeOf = (e: unknown): string | undefined => (typeof e === 'object' && e !== null ? ((e as { code?: unknown }).code as string | undefined) : undefined);
    const unroutable = rejected.filter((r) => codeOf(r.reason) === 'UNROUTABLE').length;
    const maybeDelivered = rejected.filter((r) => (r.reason as { maybeDelivered?: unknown } | undefined)?.maybeDelivered === true).length;
    const lines = problems.slice(0, 5).map((p) => `${p.id}: ${p.message}`);
    const head =
      unroutable === problems.length
        ? `UNROUTABLE: ${problems.length} of ${objects.length} object(s) not published — no queue is bound for them on exchange "${bus.exchange}"`
        : `${problems.length} of ${objects.length} object(s) not confirmed by the broker`;
    const tail = maybeDelivered > 0 ? `; ${maybeDelivered} of them may have arrived (a re-send carries the same messageId)` : '';
    throw Object.assign(
      new OpsError('PUBLISH_FAILED', `${head} (${ok.length} confirmed)${tail}: ${lines.join('; ')}${problems.length > 5 ? '; …' : ''}`, {
        problems,
        cause: first?.reason,
      }),
      { confirmed: ok.length, unroutable, maybeDelivered },
    );
  }
  return {
    exchange: bus.exchange,
    collection,
    count: ok.length,
    routingKeys: [...new Set(ok.map((r) => r.routingKey))],
    messageIds: ok.map((r) => r.messageId),
  };
}
