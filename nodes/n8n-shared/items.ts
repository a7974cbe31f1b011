/**
 * Items in and out of the SETS n8n nodes.
 *
 * Item convention (the n8n twin of Node-RED's msg.payload / msg.collection / msg.sets):
 *   json.object      the STIX content (one object; or a bundle / envelope / list on input)
 *   json.collection  the collection id it belongs to (ledger key part)
 *   json.sets        what SETS steps found: anchor {key, hash, anchor, items}, verification,
 *                    taxii (status), integrity, the TAXII server's record info, ...
 *
 * Reading STIX ("STIX Input" parameter):
 *   auto  (default) json.object when the item has one, else json.payload, else the whole json
 *         without its `sets` key (an item that IS a STIX object, bundle or envelope, e.g. from an
 *         HTTP Request node)
 *   field a named property (dot path, e.g. `body.bundle`); its value may be an object, bundle,
 *         envelope, array or JSON text
 */
import type { IDataObject, INodeExecutionData } from 'n8n-workflow';
import { OpsError } from '../../lib/ops/errors';
import { checkCollection } from '../../lib/ops/collection';
import { isRecord } from '../../lib/ops/settings';

export type StixInputMode = 'auto' | 'field';

/** Value at a dot path (`a.b.c`) of an object; undefined when any step is missing. */
export function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.split('.')) {
    if (part === '') continue;
    if (!isRecord(cur) && !Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** The STIX content of an item. Throws OpsError BAD_PAYLOAD naming what is missing. */
export function readStix(item: INodeExecutionData, mode: StixInputMode, field: string): unknown {
  const json = item.json ?? {};
  if (mode === 'field') {
    const name = field.trim();
    if (name === '') throw new OpsError('BAD_PAYLOAD', 'STIX input: no property name given');
    const v = getPath(json, name);
    if (v === undefined || v === null) throw new OpsError('BAD_PAYLOAD', `the item has no property "${name}" holding STIX content`);
    return v;
  }
  if (json.object !== undefined && json.object !== null) return json.object;
  if (json.payload !== undefined && json.payload !== null) return json.payload;
  const { sets: _sets, ...rest } = json;
  if (Object.keys(rest).length === 0) throw new OpsError('BAD_PAYLOAD', 'the item holds no STIX content (no "object", no "payload", empty json)');
  return rest;
}

/** json.sets of an item (an object), or {}. */
export function setsOf(item: INodeExecutionData): IDataObject {
  const s = item.json?.sets;
  return isRecord(s) ? (s as IDataObject) : {};
}

/**
 * The collection for an item: the node parameter when set, else json.collection, else
 * json.sets.collection. Throws OpsError NO_COLLECTION / BAD_COLLECTION.
 */
export function collectionOf(item: INodeExecutionData, param: string): string {
  const p = param.trim();
  if (p !== '') return checkCollection(p);
  const fromItem = item.json?.collection;
  if (typeof fromItem === 'string' && fromItem !== '') return checkCollection(fromItem);
  const fromSets = setsOf(item).collection;
  if (typeof fromSets === 'string' && fromSets !== '') return checkCollection(fromSets);
  throw new OpsError('NO_COLLECTION', 'no collection: set "Collection" on the node or give the item a "collection" property');
}

/** Plain JSON copy (n8n items must hold JSON; lib results may hold undefined values or class instances). */
export function toJson<T>(v: T): IDataObject {
  return JSON.parse(JSON.stringify(v ?? null)) as IDataObject;
}

/** A new output item from an input item: its json plus `extra`, `sets` merged, paired to `itemIndex`. */
export function outItem(input: INodeExecutionData, itemIndex: number, extra: IDataObject, setsFragment?: IDataObject): INodeExecutionData {
  const json: IDataObject = { ...(input.json ?? {}), ...extra };
  if (setsFragment) json.sets = { ...setsOf(input), ...setsFragment };
  const out: INodeExecutionData = { json, pairedItem: { item: itemIndex } };
  if (input.binary) out.binary = input.binary;
  return out;
}
