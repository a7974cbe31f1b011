/**
 * Routing keys of the SETS topic exchange: `<collection>.<stix-type>`.
 *
 * A topic routing key is a list of words separated by `.`; in binding keys `*` matches one word
 * and `#` zero or more. A collection id or type containing `.`, `*` or `#` would add words or
 * wildcards, so each part is escaped before it is joined: `%` -> `%25`, `.` -> `%2E`,
 * `*` -> `%2A`, `#` -> `%23` (percent-encoding of exactly these four characters). The escaping is
 * injective — two different collections never share a routing key — and reversible with
 * `parseRoutingKey`. Ordinary ids (UUIDs, `indicator`, `x-acme-widget`) are unchanged.
 * Routing and binding keys are at most 255 bytes (AMQP shortstr).
 */
import { BusError } from './errors';

const MAX_KEY_BYTES = 255;

/** Escape one routing-key word (see module doc). */
export function escapeKeyPart(part: string): string {
  return part.replace(/[%.*#]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}

/** Undo `escapeKeyPart`. */
export function unescapeKeyPart(part: string): string {
  return part.replace(/%(25|2E|2A|23)/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function checkPart(what: string, part: unknown): string {
  if (typeof part !== 'string' || part.length === 0) {
    throw new BusError('BAD_INPUT', `${what} must be a non-empty string`, { target: String(part) });
  }
  return escapeKeyPart(part);
}

function checkLength(key: string): string {
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new BusError('BAD_INPUT', `routing/binding key longer than ${MAX_KEY_BYTES} bytes`, { target: key.slice(0, 80) + '…' });
  }
  return key;
}

/** `<collection>.<stix-type>`, each part escaped. */
export function routingKey(collection: string, stixType: string): string {
  return checkLength(`${checkPart('collection', collection)}.${checkPart('STIX type', stixType)}`);
}

/** Split a routing key made by `routingKey`; null when it does not have exactly two words. */
export function parseRoutingKey(key: string): { collection: string; stixType: string } | null {
  const words = key.split('.');
  if (words.length !== 2 || words[0] === '' || words[1] === '') return null;
  return { collection: unescapeKeyPart(words[0]), stixType: unescapeKeyPart(words[1]) };
}

export interface BindingFilter {
  /** one collection id, or several; omitted = every collection */
  collection?: string | string[];
  /** STIX types (`indicator`, `malware`, ...); omitted = every type */
  types?: string | string[];
}

/** One binding key: `<c>.<t>`, `<c>.#` (all types of c), `*.<t>` (type t of every collection), `#` (all). */
export function bindingKey(filter: { collection?: string; type?: string } = {}): string {
  const c = filter.collection === undefined ? undefined : checkPart('collection', filter.collection);
  const t = filter.type === undefined ? undefined : checkPart('STIX type', filter.type);
  if (c === undefined && t === undefined) return '#';
  if (t === undefined) return checkLength(`${c}.#`);
  return checkLength(`${c ?? '*'}.${t}`);
}

/** The binding keys for every (collection, type) combination of the filter; `['#']` for an empty filter. */
export function bindingKeys(filter: BindingFilter = {}): string[] {
  const list = (v: string | string[] | undefined): (string | undefined)[] =>
    v === undefined ? [undefined] : Array.isArray(v) ? (v.length ? v : [undefined]) : [v];
  const out = new Set<string>();
  for (const collection of list(filter.collection)) {
    for (const type of list(filter.types)) out.add(bindingKey({ collection, type }));
  }
  return [...out];
}
