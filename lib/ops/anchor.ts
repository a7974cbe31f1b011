/**
 * Paper steps 0-1 on the producer side: h_t = H(t) and k = key(m_t) for every object of a
 * payload, written to the ledger in one batch.
 *
 * Order matters for "nothing half-done": the whole payload is validated first (lib/stix
 * `extractObjects`, all-or-nothing), then every key and hash is computed, and only then is the
 * ledger touched. A bad object, bad JSON or a bad collection id fails before any transaction.
 */
import { collectionScope, keyForObject } from '../digest';
import { LedgerError, type AnchorTimings, type Ledger } from '../ledger/ledger';
import { extractObjects, type StixObject } from '../stix';
import { checkCollection } from './collection';
import { typeOfObject } from './payload';

export interface AnchorInput {
  collection: string;
  /** STIX content: object, array, bundle, TAXII envelope, JSON text or bytes */
  payload: unknown;
  /** community key for the keyed-hash privacy option (HMAC-SHA256) */
  hmacKey?: string;
}

/** One object ready to anchor. */
export interface PreparedObject {
  object: StixObject;
  id: string;
  type: string;
  /** normalised version (modified, else created; null for unversioned objects) */
  version: string | null;
  /** the collection's scope on the ledger (writers are granted per scope) */
  scope: string;
  key: string;
  hash: string;
}

export interface AnchoredItem {
  id: string;
  type: string;
  version: string | null;
  key: string;
  hash: string;
  /** where the anchor landed; `timings`: when it was queued, sent and mined (epoch ms; see AnchorReceipt.timings) */
  anchor: { tx: string; block: number; existing?: boolean; timings?: AnchorTimings };
}

export interface AnchorResult {
  collection: string;
  items: AnchoredItem[];
  /** the validated objects, in payload order (to publish them next) */
  objects: StixObject[];
}

/**
 * Validate a payload and compute (key, hash) for each object, without touching the ledger.
 * Throws lib/stix StixValidationError (code STIX_INVALID) listing every problem, or OpsError for
 * a bad collection.
 */
export function prepareAnchors(input: AnchorInput): PreparedObject[] {
  const collection = checkCollection(input.collection);
  const objects = extractObjects(input.payload);
  return objects.map((object) => {
    const { scope, key, hash, version } = keyForObject(collection, object, { hmacKey: input.hmacKey });
    return { object, id: object.id, type: typeOfObject(object), version, scope, key, hash };
  });
}

/**
 * A refused write names a scope (a hash); the user knows collections. Re-word NOT_AUTHORISED so it
 * names the collection and what the registry admin has to do — grantWriter(<account>, scope) on an
 * EVM registry, GrantWriter(<principal>, scope) with the Fabric chaincode (the adapters' own
 * messages say which: the Fabric one names GrantWriter); other errors pass unchanged.
 */
export function explainAnchorError(err: unknown, collection: string): unknown {
  if (!(err instanceof LedgerError) || err.code !== 'NOT_AUTHORISED') return err;
  const scope = collectionScope(collection);
  if (err.message.includes(collection)) return err;
  const fabric = /GrantWriter\(/.test(err.message);
  const how = fabric
    ? `the chaincode admin grants it with GrantWriter(<principal>, ${scope}) (the collection's scope; the principal is the writer's MSP id, MSP id#attribute=value, or its MSP id::subject) or for every collection (ANY_SCOPE)`
    : `the registry admin grants it with grantWriter(<account>, ${scope}) (the collection's scope) or for every collection (ANY_SCOPE)`;
  return new LedgerError('NOT_AUTHORISED', `not allowed to anchor in collection ${collection}: ${err.message} — ${how}`, { key: err.key, cause: err });
}

/** Validate, hash and anchor a payload; resolves once every anchor is mined. */
export async function anchorPayload(ledger: Ledger, input: AnchorInput): Promise<AnchorResult> {
  const prepared = prepareAnchors(input);
  let receipts;
  try {
    receipts = await ledger.anchorMany(prepared.map((p) => ({ scope: p.scope, key: p.key, hash: p.hash })));
  } catch (err) {
    throw explainAnchorError(err, input.collection);
  }
  const items = prepared.map((p, i): AnchoredItem => {
    const r = receipts[i];
    const anchor: AnchoredItem['anchor'] = { tx: r.tx, block: r.block };
    if (r.existing) anchor.existing = true;
    if (r.timings) anchor.timings = { ...r.timings };
    return { id: p.id, type: p.type, version: p.version, key: p.key, hash: p.hash, anchor };
  });
  return { collection: input.collection, items, objects: prepared.map((p) => p.object) };
}
