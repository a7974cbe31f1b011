/**
 * TAXII 2.1 / STIX 2.1 media types, lenient parsing and content negotiation, and TAXII
 * timestamps. Framework-free: the TAXII client and server both use it.
 *
 * Parsing is deliberately lenient (TAXII-NOTES §1): white space is ignored, type, subtype and
 * parameter names are case-insensitive, parameter values may be quoted, and parameters other
 * than `version` (charset, q, ...) never make a TAXII media type unrecognisable. What we *send*
 * is always the canonical spelling below.
 */

/** Canonical TAXII 2.1 media type: Accept of every request, Content-Type of every TAXII body. */
export const TAXII_MEDIA_TYPE = 'application/taxii+json;version=2.1';
/** Canonical STIX 2.1 media type (appears as a value in `media_types` and manifest records). */
export const STIX_MEDIA_TYPE = 'application/stix+json;version=2.1';
/** `type/subtype` of TAXII resources, without parameters. */
export const TAXII_ESSENCE = 'application/taxii+json';
/** `type/subtype` of STIX content, without parameters. */
export const STIX_ESSENCE = 'application/stix+json';
/** The only TAXII version this code speaks. */
export const TAXII_VERSION = '2.1';

export interface MediaType {
  /** lower-cased type, e.g. `application` (may be `*`) */
  type: string;
  /** lower-cased subtype, e.g. `taxii+json` (may be `*`) */
  subtype: string;
  /** `type/subtype` */
  essence: string;
  /** parameters with lower-cased names and unquoted values, excluding `q` */
  params: Record<string, string>;
  /** quality value from an Accept entry (1 when absent or unparsable) */
  q: number;
}

const TOKEN = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/** Split on `sep` outside double quotes. */
function splitOutsideQuotes(s: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && quoted && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === '"') {
      quoted = !quoted;
      cur += c;
    } else if (c === sep && !quoted) {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

function unquote(v: string): string {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
    return v.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  return v;
}

/**
 * Parse one media type (a Content-Type value or one Accept entry). White space around `/`, `;`
 * and `=` is ignored, names are lower-cased. Returns null when the value is not `type/subtype[;param=value]*`.
 */
export function parseMediaType(value: string): MediaType | null {
  const parts = splitOutsideQuotes(value, ';').map((p) => p.trim());
  const essence = (parts[0] ?? '').toLowerCase().replace(/\s*\/\s*/, '/');
  const slash = essence.indexOf('/');
  if (slash <= 0 || slash === essence.length - 1) return null;
  const type = essence.slice(0, slash);
  const subtype = essence.slice(slash + 1);
  if (!TOKEN.test(type) || !TOKEN.test(subtype)) return null;
  if (type === '*' && subtype !== '*') return null;
  const params: Record<string, string> = {};
  let q = 1;
  for (const p of parts.slice(1)) {
    if (p === '') continue; // tolerate `a/b;` and `a/b;;c=d`
    const eq = p.indexOf('=');
    if (eq <= 0) return null;
    const name = p.slice(0, eq).trim().toLowerCase();
    const val = unquote(p.slice(eq + 1).trim());
    if (!TOKEN.test(name)) return null;
    if (name === 'q') {
      const n = Number(val);
      q = Number.isFinite(n) && n >= 0 && n <= 1 && val !== '' ? n : 1;
    } else {
      params[name] = val;
    }
  }
  return { type, subtype, essence, params, q };
}

/** Parse an Accept header into its entries (unparsable entries are dropped). */
export function parseAccept(header: string | readonly string[] | undefined): MediaType[] {
  if (header === undefined) return [];
  const joined = typeof header === 'string' ? header : header.join(',');
  const out: MediaType[] = [];
  for (const entry of splitOutsideQuotes(joined, ',')) {
    if (entry.trim() === '') continue;
    const mt = parseMediaType(entry);
    if (mt) out.push(mt);
  }
  return out;
}

/** True when `value` names a TAXII 2.1 resource type; a missing `version` counts as 2.1 unless `requireVersion`. */
export function isTaxii21MediaType(value: string | undefined, opts: { requireVersion?: boolean } = {}): boolean {
  if (!value) return false;
  const mt = parseMediaType(value);
  if (!mt || mt.essence !== TAXII_ESSENCE) return false;
  const v = mt.params['version'];
  return v === undefined ? !opts.requireVersion : v === TAXII_VERSION;
}

/** True when `value` names STIX 2.1 content; a missing `version` counts as 2.1 unless `requireVersion`. */
export function isStix21MediaType(value: string | undefined, opts: { requireVersion?: boolean } = {}): boolean {
  if (!value) return false;
  const mt = parseMediaType(value);
  if (!mt || mt.essence !== STIX_ESSENCE) return false;
  const v = mt.params['version'];
  return v === undefined ? !opts.requireVersion : v === TAXII_VERSION;
}

/**
 * Does this Accept header admit a TAXII 2.1 response? The most specific matching range decides
 * (RFC 9110 §12.5.1): `application/taxii+json;version=2.1` > `application/taxii+json` >
 * `application/*` > `*\/*`; a range with another `version` does not match; `q=0` refuses.
 * A missing or empty header admits anything (RFC 9110), although TAXII requires clients to send
 * one — a server that wants to insist can check presence itself.
 */
export function acceptsTaxii21(acceptHeader: string | readonly string[] | undefined): boolean {
  if (acceptHeader === undefined) return true;
  const raw = typeof acceptHeader === 'string' ? acceptHeader : acceptHeader.join(',');
  if (raw.trim() === '') return true;
  let best = -1;
  let bestQ = 0;
  for (const mt of parseAccept(raw)) {
    let spec = -1;
    if (mt.essence === '*/*') spec = 0;
    else if (mt.type === 'application' && mt.subtype === '*') spec = 1;
    else if (mt.essence === TAXII_ESSENCE) {
      const v = mt.params['version'];
      if (v === undefined) spec = 2;
      else if (v === TAXII_VERSION) spec = 3;
    }
    if (spec < 0) continue;
    if (spec > best) {
      best = spec;
      bestQ = mt.q;
    } else if (spec === best) {
      bestQ = Math.max(bestQ, mt.q);
    }
  }
  return best >= 0 && bestQ > 0;
}

// ---------------------------------------------------------------------------------------------
// Timestamps (TAXII-NOTES §4)

/**
 * A TAXII timestamp `YYYY-MM-DDTHH:MM:SS.ssssssZ` (UTC, microseconds). JavaScript dates carry
 * milliseconds only; `micros` (0..999) supplies the three extra digits.
 */
export function taxiiTimestamp(date: Date = new Date(), micros = 0): string {
  const t = date.getTime();
  if (!Number.isFinite(t)) throw new RangeError('taxiiTimestamp: invalid date');
  if (!Number.isInteger(micros) || micros < 0 || micros > 999) {
    throw new RangeError(`taxiiTimestamp: micros must be an integer 0..999, got ${micros}`);
  }
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ, or ±YYYYYY-... outside 0..9999
  if (iso.length !== 24) throw new RangeError(`taxiiTimestamp: year out of range in ${iso}`);
  return iso.slice(0, 23) + String(micros).padStart(3, '0') + 'Z';
}

export interface ParsedTimestamp {
  /** milliseconds since the epoch (UTC) */
  epochMs: number;
  /** sub-millisecond microseconds 0..999 (digits beyond the 6th fractional digit are dropped) */
  micros: number;
}

const TS_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parse an RFC 3339 timestamp (any fractional precision, `Z` or an offset) into an instant with
 * microsecond precision. Returns null for anything else, including impossible dates.
 */
export function parseTimestamp(value: string): ParsedTimestamp | null {
  const m = TS_RE.exec(value);
  if (!m) return null;
  const [, ys, mos, ds, hs, mis, ss, frac = '', zone] = m;
  const y = Number(ys), mo = Number(mos), d = Number(ds), h = Number(hs), mi = Number(mis);
  let s = Number(ss);
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60) return null;
  const dim = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (d > dim) return null;
  if (s === 60) s = 59; // leap second: the nearest representable instant
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const oh = Number(zone.slice(1, 3)), om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offsetMin = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const digits = (frac + '000000').slice(0, 6);
  const ms = Number(digits.slice(0, 3));
  const micros = Number(digits.slice(3, 6));
  const base = Date.UTC(y, mo - 1, d, h, mi, s, ms);
  // Date.UTC maps years 0..99 to 1900..1999
  const fixed = y < 100 ? new Date(base).setUTCFullYear(y) : base;
  return { epochMs: fixed - offsetMin * 60_000, micros };
}

/** Compare two RFC 3339 timestamps as instants (µs precision). Throws on an unparsable value. */
export function compareTimestamps(a: string, b: string): number {
  const pa = parseTimestamp(a);
  const pb = parseTimestamp(b);
  if (!pa) throw new RangeError(`not an RFC 3339 timestamp: ${JSON.stringify(a)}`);
  if (!pb) throw new RangeError(`not an RFC 3339 timestamp: ${JSON.stringify(b)}`);
  return pa.epochMs - pb.epochMs || pa.micros - pb.micros;
}

/** Normalise any RFC 3339 timestamp to the TAXII form (UTC, 6 fractional digits). */
export function toTaxiiTimestamp(value: string | Date): string {
  if (value instanceof Date) return taxiiTimestamp(value);
  const p = parseTimestamp(value);
  if (!p) throw new RangeError(`not an RFC 3339 timestamp: ${JSON.stringify(value)}`);
  return taxiiTimestamp(new Date(p.epochMs), p.micros);
}

/**
 * A clock that hands out strictly increasing TAXII timestamps, so two records added within the
 * same millisecond still get distinct, ordered `date_added` values.
 */
export function createTaxiiClock(now: () => number = Date.now): () => string {
  let lastMs = -Infinity;
  let lastMicros = 0;
  return () => {
    const t = now();
    if (t > lastMs) {
      lastMs = t;
      lastMicros = 0;
    } else if (lastMicros < 999) {
      lastMicros++;
    } else {
      lastMs++;
      lastMicros = 0;
    }
    return taxiiTimestamp(new Date(lastMs), lastMicros);
  };
}
