/**
 * TAXII 2.1 filter parameters (spec §3.4; TAXII-NOTES §6), parsed from the RAW query string with
 * URLSearchParams — never from a framework's nested-object parser (Express/qs would turn
 * `match[id]` into `query.match.id`).
 *
 * Strict where silence would mislead: a filter the endpoint does not support, an unknown
 * `match[...]` field, or a malformed value is a 400 with a description naming it (ignoring a
 * filter would return more than the caller asked for). Other unknown parameters are ignored.
 */
import { normaliseTimestamp } from '../digest';
import { parseTimestamp, taxiiTimestamp } from './media';
import type { VersionMatch } from '../store/store';

export type FilterEndpoint = 'objects' | 'object' | 'manifest' | 'versions' | 'delete';

const ALLOWED: Record<FilterEndpoint, readonly string[]> = {
  objects: ['added_after', 'limit', 'next', 'match[id]', 'match[type]', 'match[version]', 'match[spec_version]'],
  manifest: ['added_after', 'limit', 'next', 'match[id]', 'match[type]', 'match[version]', 'match[spec_version]'],
  object: ['added_after', 'limit', 'next', 'match[version]', 'match[spec_version]'],
  versions: ['added_after', 'limit', 'next', 'match[spec_version]'],
  delete: ['match[version]', 'match[spec_version]'],
};

const KNOWN_MATCH = ['match[id]', 'match[type]', 'match[version]', 'match[spec_version]'];

export interface Filters {
  /** TAXII timestamp (µs, UTC) */
  addedAfter?: string;
  limit?: number;
  next?: string;
  ids?: string[];
  types?: string[];
  versions?: VersionMatch[];
  specVersions?: string[];
  /** canonical value of every filter present except limit/next (identity of the query for next tokens) */
  canonical: Record<string, string>;
}

export class QueryError extends Error {
  readonly code = 'BAD_QUERY';
  constructor(
    message: string,
    readonly parameter: string,
  ) {
    super(message);
    this.name = 'QueryError';
  }
}

/** STIX identifier: `<type>--<UUID>` */
export const STIX_ID_RE = /^[a-z0-9][a-z0-9-]*--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const STIX_TYPE_RE = /^[a-z0-9][a-z0-9-]*$/;
const SPEC_VERSION_RE = /^[0-9]+\.[0-9]+$/;

/** Parse an `added_after` value into the TAXII µs form, or null. Tolerates a `+` decoded to a space. */
export function parseAddedAfter(raw: string): string | null {
  const v = raw.trim().replace(/ (\d{2}:\d{2})$/, '+$1');
  const p = parseTimestamp(v);
  if (!p) return null;
  const d = new Date(p.epochMs);
  if (!Number.isFinite(d.getTime()) || d.getUTCFullYear() < 0 || d.getUTCFullYear() > 9999) return null;
  return taxiiTimestamp(d, p.micros);
}

function listValues(name: string, raws: string[]): string[] {
  const out = new Set<string>();
  for (const raw of raws) {
    for (const part of raw.split(',')) {
      const v = part.trim();
      if (v !== '') out.add(v);
    }
  }
  if (out.size === 0) throw new QueryError(`${name} is empty: give one or more comma-separated values`, name);
  return [...out];
}

function single(params: URLSearchParams, name: string): string | undefined {
  const all = params.getAll(name);
  if (all.length === 0) return undefined;
  const distinct = new Set(all);
  if (distinct.size > 1) throw new QueryError(`${name} is given ${all.length} times with different values`, name);
  return all[0];
}

/**
 * Parse the filters of a request. `rawQuery` is the part after `?` (with or without the `?`).
 * `maxLimit` caps `limit` (larger values are lowered, not refused: the server MAY return fewer).
 */
export function parseFilters(rawQuery: string, endpoint: FilterEndpoint, maxLimit: number): Filters {
  const params = new URLSearchParams(rawQuery.startsWith('?') ? rawQuery.slice(1) : rawQuery);
  const allowed = ALLOWED[endpoint];
  const seen = new Set<string>();
  for (const name of params.keys()) seen.add(name);
  for (const name of seen) {
    const isMatch = /^match\[.*\]$/.test(name) || name.startsWith('match[');
    if (isMatch && !KNOWN_MATCH.includes(name)) {
      throw new QueryError(`unknown filter ${name} (TAXII 2.1 defines ${KNOWN_MATCH.join(', ')})`, name);
    }
    if ((isMatch || name === 'added_after' || name === 'limit' || name === 'next') && !allowed.includes(name)) {
      throw new QueryError(`filter ${name} is not supported on this endpoint (supported: ${allowed.join(', ') || 'none'})`, name);
    }
  }

  const f: Filters = { canonical: {} };

  const aa = single(params, 'added_after');
  if (aa !== undefined) {
    const v = parseAddedAfter(aa);
    if (v === null) {
      throw new QueryError(`added_after ${JSON.stringify(aa)} is not an RFC 3339 timestamp (e.g. 2024-01-31T12:00:00.000000Z)`, 'added_after');
    }
    f.addedAfter = v;
    f.canonical['added_after'] = v;
  }

  const lim = single(params, 'limit');
  if (lim !== undefined) {
    const t = lim.trim();
    if (!/^[0-9]+$/.test(t)) throw new QueryError(`limit ${JSON.stringify(lim)} is not a positive integer`, 'limit');
    const n = t.length > 12 ? Number.MAX_SAFE_INTEGER : Number(t);
    if (n < 1) throw new QueryError('limit must be at least 1', 'limit');
    f.limit = Math.min(n, maxLimit);
  }

  // an empty `next=` means "no token": MISP's collection browser and taxii2-client's as_pages
  // (after a page with more=true but no next) send it
  const next = single(params, 'next');
  if (next !== undefined && next.trim() !== '') f.next = next.trim();

  if (params.has('match[id]')) {
    const ids = listValues('match[id]', params.getAll('match[id]'));
    const bad = ids.find((id) => !STIX_ID_RE.test(id));
    if (bad !== undefined) throw new QueryError(`match[id] value ${JSON.stringify(bad)} is not a STIX identifier (type--UUID)`, 'match[id]');
    f.ids = ids;
    f.canonical['match[id]'] = [...ids].sort().join(',');
  }

  if (params.has('match[type]')) {
    const types = listValues('match[type]', params.getAll('match[type]'));
    const bad = types.find((t) => !STIX_TYPE_RE.test(t));
    if (bad !== undefined) {
      throw new QueryError(`match[type] value ${JSON.stringify(bad)} is not a STIX type (lower-case letters, digits and '-')`, 'match[type]');
    }
    f.types = types;
    f.canonical['match[type]'] = [...types].sort().join(',');
  }

  if (params.has('match[version]')) {
    const raw = listValues('match[version]', params.getAll('match[version]'));
    const out = new Set<VersionMatch>();
    for (const v of raw) {
      const lower = v.toLowerCase();
      if (lower === 'first' || lower === 'last' || lower === 'all') {
        out.add(lower);
        continue;
      }
      try {
        out.add(normaliseTimestamp(v.replace(/ (\d{2}:\d{2})$/, '+$1')));
      } catch {
        throw new QueryError(
          `match[version] value ${JSON.stringify(v)} is neither first, last, all nor an RFC 3339 timestamp`,
          'match[version]',
        );
      }
    }
    f.versions = [...out];
    f.canonical['match[version]'] = [...out].sort().join(',');
  }

  if (params.has('match[spec_version]')) {
    const svs = listValues('match[spec_version]', params.getAll('match[spec_version]'));
    const bad = svs.find((s) => !SPEC_VERSION_RE.test(s));
    if (bad !== undefined) {
      throw new QueryError(`match[spec_version] value ${JSON.stringify(bad)} is not a STIX spec version such as 2.1`, 'match[spec_version]');
    }
    f.specVersions = svs;
    f.canonical['match[spec_version]'] = [...svs].sort().join(',');
  }

  return f;
}
