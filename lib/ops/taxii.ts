/**
 * TAXII operations of the SETS client (paper steps 1 and 5): publish a payload's objects to a
 * collection and read the server's verdict; inquire a collection with filters, page after page.
 */
import { extractObjects, type StixObject } from '../stix';
import { normaliseAddedAfter, type AddObjectsResult, type ManifestRecord, type TaxiiClient, type TaxiiFilters, type TaxiiObject } from '../taxii/client';
import { checkCollection } from './collection';
import { OpsError, type ObjectProblem } from './errors';

// ---------------------------------------------------------------------------------------------
// publish

export interface TaxiiPublishInput {
  collection: string;
  /** STIX content: object, array, bundle, TAXII envelope, JSON text or bytes (validated strictly) */
  payload: unknown;
  /** poll the status until it is complete (default true) */
  wait?: boolean;
  /** give up polling after this long, ms */
  statusTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface TaxiiPublishResult {
  collection: string;
  objects: StixObject[];
  /** the server's status resource (summed when the batch was split) */
  status: AddObjectsResult;
}

/**
 * Validate the payload (all-or-nothing, lib/stix) and POST its objects to the collection.
 * HTTP failures throw the client's TaxiiError (code HTTP_<status>, TIMEOUT, ...); objects the
 * server refused are reported in the result's status (see `rejectionError`).
 */
export async function publishToTaxii(client: TaxiiClient, input: TaxiiPublishInput): Promise<TaxiiPublishResult> {
  const collection = checkCollection(input.collection);
  const objects = extractObjects(input.payload);
  const status = await client.addObjects(collection, objects, {
    wait: input.wait ?? true,
    ...(input.statusTimeoutMs !== undefined ? { pollTimeoutMs: input.statusTimeoutMs } : {}),
    ...(input.signal ? { signal: input.signal } : {}),
  });
  return { collection, objects, status };
}

/**
 * The error for a status with failures (every failed object and the server's message for it),
 * or undefined when nothing failed.
 */
export function rejectionError(collection: string, status: AddObjectsResult): OpsError | undefined {
  if (status.failure_count === 0) return undefined;
  const failures = status.failures ?? [];
  const problems: ObjectProblem[] = failures.map((f, index) => ({
    index,
    id: f.id,
    message: `${f.version ? `version ${f.version}: ` : ''}${f.message ?? 'rejected (no reason given)'}`,
  }));
  const listed = problems.slice(0, 10).map((p) => `${p.id}: ${p.message}`);
  if (problems.length > 10) listed.push(`… and ${problems.length - 10} more`);
  return new OpsError(
    'TAXII_REJECTED',
    `TAXII collection ${collection}: ${status.failure_count} of ${status.total_count} object(s) rejected` +
      (listed.length ? ` — ${listed.join('; ')}` : ' (the server listed no details)'),
    { problems },
  );
}

// ---------------------------------------------------------------------------------------------
// inquire

export type InquireOperation = 'objects' | 'object' | 'versions' | 'manifest';

export interface InquireRequest {
  operation: InquireOperation;
  collection: string;
  /** for `object` and `versions` */
  objectId?: string;
  filters: TaxiiFilters;
  /** stop after this many items (0 = no limit) */
  maxItems?: number;
  signal?: AbortSignal;
}

export type InquireItem = TaxiiObject | ManifestRecord | string;

/** Filter settings as a node or workflow holds them (strings from a form, TAXII names). */
export interface FilterSettings {
  added_after?: unknown;
  limit?: unknown;
  'match[id]'?: unknown;
  'match[type]'?: unknown;
  'match[version]'?: unknown;
  'match[spec_version]'?: unknown;
  /** the same match fields as an object: {id, type, version, spec_version} */
  match?: unknown;
}

const MATCH_FIELDS = ['id', 'type', 'version', 'spec_version'] as const;

function listOf(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : undefined;
  if (!items || items.some((x) => typeof x !== 'string')) {
    throw new OpsError('BAD_FILTER', `${what} must be a string (comma-separated) or a list of strings`);
  }
  const out = (items as string[]).map((s) => s.trim()).filter((s) => s !== '');
  return out.length ? out : undefined;
}

/**
 * TAXII filters from settings, later ones overriding earlier ones field by field (node config,
 * then msg.filters). Throws BAD_FILTER for values of the wrong kind.
 */
export function buildFilters(...layers: Array<FilterSettings | undefined>): TaxiiFilters {
  const f: TaxiiFilters = {};
  const match: NonNullable<TaxiiFilters['match']> = {};
  for (const layer of layers) {
    if (!layer) continue;
    const aa = typeof layer.added_after === 'string' ? layer.added_after.trim() : layer.added_after;
    if (aa !== undefined && aa !== '') {
      if (!(aa instanceof Date) && typeof aa !== 'string') throw new OpsError('BAD_FILTER', 'added_after must be a timestamp string');
      // refused here (at deploy time for a node setting), sent as UTC Z with 6 fractional digits
      try {
        f.addedAfter = normaliseAddedAfter(aa);
      } catch (err) {
        throw new OpsError('BAD_FILTER', `added_after ${typeof aa === 'string' ? JSON.stringify(aa) : String(aa)} is not a timestamp: use RFC 3339 such as 2024-01-31T12:00:00Z (an offset such as +01:00 is converted to UTC)`, { cause: err });
      }
    }
    if (layer.limit !== undefined && layer.limit !== '' && layer.limit !== null) {
      const n = typeof layer.limit === 'number' ? layer.limit : Number(String(layer.limit));
      if (!Number.isInteger(n) || n < 1) throw new OpsError('BAD_FILTER', `limit must be a positive whole number, got ${JSON.stringify(layer.limit)}`);
      f.limit = n;
    }
    const nested = layer.match;
    if (nested !== undefined && (typeof nested !== 'object' || nested === null || Array.isArray(nested))) {
      throw new OpsError('BAD_FILTER', 'match must be an object {id, type, version, spec_version}');
    }
    for (const field of MATCH_FIELDS) {
      const flat = listOf(layer[`match[${field}]`], `match[${field}]`);
      const deep = nested ? listOf((nested as Record<string, unknown>)[field], `match.${field}`) : undefined;
      const v = deep ?? flat;
      if (v) match[field] = v;
    }
  }
  if (Object.keys(match).length) f.match = match;
  return f;
}

/** Items of an inquiry, one by one, across all pages (the client pages and detects loops). */
export async function* inquireItems(client: TaxiiClient, req: InquireRequest): AsyncGenerator<InquireItem> {
  const collection = checkCollection(req.collection);
  const opts = req.signal ? { signal: req.signal } : {};
  const needId = (): string => {
    if (!req.objectId) throw new OpsError('BAD_FILTER', `operation "${req.operation}" needs an object id (node setting or msg.objectId)`);
    return req.objectId;
  };
  let source: AsyncGenerator<InquireItem>;
  switch (req.operation) {
    case 'objects':
      source = client.iterObjects(collection, req.filters, opts);
      break;
    case 'object':
      source = client.iterObject(collection, needId(), withoutMatch(req.filters, ['id', 'type']), opts);
      break;
    case 'versions':
      source = client.iterVersions(collection, needId(), withoutMatch(req.filters, ['id', 'type', 'version']), opts);
      break;
    case 'manifest':
      source = client.iterManifest(collection, req.filters, opts);
      break;
  }
  const max = req.maxItems ?? 0;
  let n = 0;
  for await (const item of source) {
    yield item;
    n += 1;
    if (max > 0 && n >= max) {
      await source.return(undefined);
      return;
    }
  }
}

/** Drop match fields an endpoint does not take (TAXII-NOTES §6). */
function withoutMatch(filters: TaxiiFilters, fields: string[]): TaxiiFilters {
  if (!filters.match) return filters;
  const match = { ...filters.match };
  for (const k of fields) delete match[k];
  const out: TaxiiFilters = { ...filters };
  if (Object.keys(match).length) out.match = match;
  else delete out.match;
  return out;
}
