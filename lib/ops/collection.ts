/**
 * Which collection an operation works on. One rule for every node: `msg.collection` when it is a
 * non-empty string, else the node's configured collection; without either the operation fails
 * with NO_COLLECTION (nothing guessed).
 *
 * The collection id is part of the ledger key (m_t = collection, object id, version), so producer
 * and consumer must use the very same string: it is taken as given (no trimming, no case folding);
 * whitespace and control characters are refused. (In RabbitMQ routing keys lib/bus escapes `.`,
 * `*` and `#`, so any id can travel.)
 */
import { OpsError } from './errors';

export const MAX_COLLECTION_LENGTH = 255;

/** Check a collection id; returns it unchanged or throws NO_COLLECTION / BAD_COLLECTION. */
export function checkCollection(id: string): string {
  if (id.length === 0) throw new OpsError('NO_COLLECTION', 'the collection id is empty');
  if (id.length > MAX_COLLECTION_LENGTH) {
    throw new OpsError('BAD_COLLECTION', `collection id is longer than ${MAX_COLLECTION_LENGTH} characters`);
  }
  if (/\s/.test(id)) throw new OpsError('BAD_COLLECTION', `collection id ${JSON.stringify(id)} contains whitespace`);
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(id)) throw new OpsError('BAD_COLLECTION', 'collection id contains control characters');
  return id;
}

/**
 * The collection for one message: `fromMsg` (msg.collection) when it is a non-empty string,
 * else `fromConfig`. Throws NO_COLLECTION / BAD_COLLECTION.
 */
export function resolveCollection(fromMsg: unknown, fromConfig: string | undefined): string {
  if (fromMsg !== undefined && fromMsg !== null && fromMsg !== '') {
    if (typeof fromMsg !== 'string') {
      throw new OpsError('BAD_COLLECTION', `msg.collection must be a string, got ${Array.isArray(fromMsg) ? 'an array' : typeof fromMsg}`);
    }
    return checkCollection(fromMsg);
  }
  if (fromConfig !== undefined && fromConfig !== '') return checkCollection(fromConfig);
  throw new OpsError('NO_COLLECTION', 'no collection: set one in the node or pass msg.collection');
}
