/**
 * Hashing of STIX objects (paper step 0: h_t = H(t), m_t = (object id, collection id, version)).
 *
 * - `canonicalize` is the JSON Canonicalization Scheme of RFC 8785 (JCS), written here from the
 *   RFC text: no whitespace, object members sorted by UTF-16 code units, strings escaped with the
 *   minimal escapes of ECMAScript JSON.stringify (lower-case \u00xx for other C0 controls,
 *   everything else — including non-ASCII — as is), numbers in ECMAScript Number::toString form.
 * - `hashObject` = sha256(UTF-8(JCS(t))) as '0x' + 64 lower-case hex digits (or an HMAC-SHA256
 *   with a community key: the keyed-hash privacy option, DESIGN.md §3 Privacy).
 * - `ledgerKey` = sha256(UTF-8(JCS([collection, objectId, version]))), the bytes32 key of the ledger.
 *   `version` is the object's `modified` (else `created`) normalised by `normaliseTimestamp`,
 *   so equal instants written differently (".000Z" vs "Z", "+02:00" vs "Z") give the same key.
 *
 * Where RFC 8785 is silent (it canonicalises JSON *data*; JavaScript values are wider) we follow
 * JSON.stringify, except where that would silently hide a bug:
 *   - object members whose value is `undefined` are dropped (as JSON.stringify does);
 *   - `toJSON()` is honoured (so a Date becomes its ISO string, as JSON.stringify does), and
 *     Number/String/Boolean wrapper objects are unwrapped;
 *   - NaN, ±Infinity, BigInt, functions, symbols, `undefined` as an array element or as the
 *     top-level value, strings or keys with lone surrogates, circular structures and objects that
 *     are not plain (Map, Set, class instances without toJSON) throw `CanonicalizationError`
 *     (JSON.stringify would write null/{} or drop them, which changes the data being hashed).
 *   - -0 serialises as "0" (RFC 8785 §3.2.2.3, as ECMAScript does).
 */
import { createHash, createHmac } from 'node:crypto';

/** Error thrown by `canonicalize` (and therefore `hashObject`/`ledgerKey`) for non-JSON input. */
export class CanonicalizationError extends Error {
  readonly code = 'JCS_INVALID';
  /** where in the value the problem is, as a JSONPath-like string ("$.objects[2].name") */
  readonly path: string;
  constructor(message: string, path: string) {
    super(`cannot canonicalise value at ${path}: ${message}`);
    this.name = 'CanonicalizationError';
    this.path = path;
  }
}

/** Error thrown by `normaliseTimestamp` / `objectVersion` for an invalid timestamp. */
export class TimestampError extends Error {
  readonly code = 'TIMESTAMP_INVALID';
  readonly value: unknown;
  constructor(message: string, value: unknown) {
    super(message);
    this.name = 'TimestampError';
    this.value = value;
  }
}

/** Deepest nesting `canonicalize` accepts (STIX content is shallow; this only stops runaway input). */
export const MAX_DEPTH = 1000;

// Characters that need work in a string: C0 controls, '"', '\\' and any surrogate (to check pairing).
// eslint-disable-next-line no-control-regex -- matching C0 control characters is the point here
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;
const SHORT_ESCAPES: Record<number, string> = {
  0x08: '\\b',
  0x09: '\\t',
  0x0a: '\\n',
  0x0c: '\\f',
  0x0d: '\\r',
  0x22: '\\"',
  0x5c: '\\\\',
};

function keyPath(path: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** RFC 8785 §3.2.2.2: string serialisation. Throws on lone surrogates (not expressible in UTF-8). */
function serializeString(s: string, path: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : -1;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++; // a well-formed pair is copied as is
        continue;
      }
      throw new CanonicalizationError(
        `string contains a lone surrogate U+${c.toString(16).toUpperCase().padStart(4, '0')} at offset ${i} (not valid Unicode)`,
        path,
      );
    }
    if (c < 0x20 || c === 0x22 || c === 0x5c) {
      out += s.slice(start, i) + (SHORT_ESCAPES[c] ?? `\\u${c.toString(16).padStart(4, '0')}`);
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

/** RFC 8785 §3.2.2.3: ECMAScript Number::toString; -0 -> "0"; NaN/Infinity are not JSON. */
function serializeNumber(n: number, path: string): string {
  if (!Number.isFinite(n)) throw new CanonicalizationError(`${String(n)} is not a JSON number`, path);
  // String(-0) === '0' already; Number.prototype.toString is exactly the ES serialisation JCS requires.
  return String(n);
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  const ctor = (Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null)?.constructor?.name;
  return ctor ? `a ${ctor} object` : 'an object';
}

/**
 * `proto` is Object.prototype of another realm (a vm context: Node-RED's function node builds
 * msg.payload there), so `obj` is a plain object all the same. A class instance of any realm has
 * its class's prototype, whose own prototype is not null — still refused.
 */
function isForeignObjectPrototype(obj: object, proto: unknown): boolean {
  if (typeof proto !== 'object' || proto === null || Object.getPrototypeOf(proto) !== null) return false;
  if (Object.prototype.toString.call(obj) !== '[object Object]') return false;
  const ctor = (proto as { constructor?: unknown }).constructor;
  return typeof ctor === 'function' && ctor.name === 'Object' && Object.prototype.hasOwnProperty.call(proto, 'hasOwnProperty');
}

function hasToJSON(v: object): v is { toJSON: (key: string) => unknown } {
  return typeof (v as { toJSON?: unknown }).toJSON === 'function';
}

function serialize(value: unknown, path: string, key: string, depth: number, seen: Set<object>): string | undefined {
  let v = value;
  if (v !== null && typeof v === 'object' && hasToJSON(v)) v = v.toJSON(key);
  if (v instanceof Number) v = Number(v);
  else if (v instanceof String) v = String(v);
  else if (v instanceof Boolean) v = v.valueOf();

  switch (typeof v) {
    case 'string':
      return serializeString(v, path);
    case 'number':
      return serializeNumber(v, path);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return undefined;
    case 'bigint':
      throw new CanonicalizationError('BigInt is not a JSON number (convert it to a string or a safe number first)', path);
    case 'function':
    case 'symbol':
      throw new CanonicalizationError(`a ${typeof v} is not JSON data`, path);
  }
  if (v === null) return 'null';
  const obj = v as object;
  if (depth >= MAX_DEPTH) throw new CanonicalizationError(`nesting deeper than ${MAX_DEPTH} levels`, path);
  if (seen.has(obj)) throw new CanonicalizationError('circular structure', path);
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      const parts: string[] = [];
      for (let i = 0; i < obj.length; i++) {
        const p = `${path}[${i}]`;
        const s = serialize(obj[i], p, String(i), depth + 1, seen);
        if (s === undefined) throw new CanonicalizationError('array element is undefined (not JSON data)', p);
        parts.push(s);
      }
      return `[${parts.join(',')}]`;
    }
    const proto: unknown = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null && !isForeignObjectPrototype(obj, proto)) {
      throw new CanonicalizationError(`${describeValue(obj)} is not JSON data (use a plain object)`, path);
    }
    const record = obj as Record<string, unknown>;
    // Default sort compares UTF-16 code units, exactly RFC 8785 §3.2.3.
    const keys = Object.keys(record).sort();
    const parts: string[] = [];
    for (const k of keys) {
      const p = keyPath(path, k);
      const s = serialize(record[k], p, k, depth + 1, seen);
      if (s === undefined) continue; // undefined members are dropped, like JSON.stringify
      parts.push(`${serializeString(k, p)}:${s}`);
    }
    return `{${parts.join(',')}}`;
  } finally {
    seen.delete(obj);
  }
}

/** RFC 8785 canonical JSON text of `value` (hash its UTF-8 bytes). Throws CanonicalizationError. */
export function canonicalize(value: unknown): string {
  const out = serialize(value, '$', '', 0, new Set());
  if (out === undefined) throw new CanonicalizationError('undefined is not JSON data', '$');
  return out;
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** SHA-256 of a string's UTF-8 bytes (or of raw bytes) as '0x' + 64 lower-case hex digits. */
export function sha256Hex(data: string | Uint8Array): string {
  return '0x' + createHash('sha256').update(toBytes(data)).digest('hex');
}

/**
 * h_t: sha256(JCS(obj)) as '0x' + hex. With `hmacKey` (a string is used as its UTF-8 bytes):
 * HMAC-SHA256(hmacKey, JCS(obj)) — the keyed-hash option that stops enumeration of small objects.
 */
export function hashObject(obj: unknown, hmacKey?: string | Uint8Array): string {
  const jcs = canonicalize(obj);
  if (hmacKey === undefined) return sha256Hex(jcs);
  const key = toBytes(hmacKey);
  if (key.length === 0) {
    throw Object.assign(new Error('hashObject: the HMAC key is empty (omit it for an unkeyed hash)'), {
      code: 'HMAC_KEY_EMPTY',
    });
  }
  return '0x' + createHmac('sha256', key).update(jcs, 'utf8').digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Timestamps

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function daysInMonth(y: number, m: number): number {
  return [31, isLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
}

/** Days since 1970-01-01 of a proleptic Gregorian date (integer arithmetic, any year). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const mp = (m + 9) % 12; // March = 0
  const doy = Math.floor((153 * mp + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** Inverse of daysFromCivil. */
function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [era * 400 + yoe + (m <= 2 ? 1 : 0), m, d];
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/**
 * Parse an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`) and return it in UTC
 * as `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, with the fraction's trailing zeros removed (no dot when it
 * is zero). The fraction is kept digit for digit (string arithmetic, no Date rounding), so equal
 * instants give equal strings at any precision. A leap second (:60) is accepted only at 23:59 UTC.
 * Throws TimestampError on anything else.
 */
export function normaliseTimestamp(ts: string): string {
  if (typeof ts !== 'string') throw new TimestampError(`timestamp must be a string, got ${describeValue(ts)}`, ts);
  const m = RFC3339.exec(ts);
  if (!m) {
    throw new TimestampError(
      `invalid timestamp ${JSON.stringify(ts)}: expected RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (or an offset ±HH:MM)`,
      ts,
    );
  }
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const fraction = (m[7] ?? '').replace(/0+$/, '');
  const bad = (what: string): never => {
    throw new TimestampError(`invalid timestamp ${JSON.stringify(ts)}: ${what}`, ts);
  };
  if (month < 1 || month > 12) bad(`month ${pad(month)} out of range`);
  if (day < 1 || day > daysInMonth(year, month)) bad(`day ${pad(day)} does not exist in ${pad(year, 4)}-${pad(month)}`);
  if (hour > 23) bad(`hour ${pad(hour)} out of range`);
  if (minute > 59) bad(`minute ${pad(minute)} out of range`);
  if (second > 60) bad(`second ${pad(second)} out of range`);
  let offset = 0; // minutes east of UTC
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) bad(`offset ${m[9]}${m[10]}:${m[11]} out of range`);
    offset = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  let y = year;
  let mo = month;
  let d = day;
  let h = hour;
  let mi = minute;
  if (offset !== 0) {
    const total = daysFromCivil(year, month, day) * 1440 + hour * 60 + minute - offset;
    const days = Math.floor(total / 1440);
    const rest = total - days * 1440;
    [y, mo, d] = civilFromDays(days);
    h = Math.floor(rest / 60);
    mi = rest % 60;
    if (y < 0 || y > 9999) bad('the instant in UTC is outside years 0000-9999');
  }
  if (second === 60 && (h !== 23 || mi !== 59)) bad('a leap second (:60) can only occur at 23:59:60 UTC');
  return `${pad(y, 4)}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(second)}${fraction ? '.' + fraction : ''}Z`;
}

/**
 * Compare two timestamps as instants (-1, 0, 1). Both are normalised first, so any RFC 3339 form
 * is accepted; the fractions are compared digit by digit (no precision is lost). Throws
 * TimestampError on invalid input.
 */
export function compareTimestamps(a: string, b: string): number {
  const na = normaliseTimestamp(a);
  const nb = normaliseTimestamp(b);
  // 'YYYY-MM-DDTHH:MM:SS' is fixed width, so plain string order is time order.
  const sa = na.slice(0, 19);
  const sb = nb.slice(0, 19);
  if (sa !== sb) return sa < sb ? -1 : 1;
  const fa = na.length > 20 ? na.slice(20, -1) : '';
  const fb = nb.length > 20 ? nb.slice(20, -1) : '';
  const width = Math.max(fa.length, fb.length);
  const pa = fa.padEnd(width, '0');
  const pb = fb.padEnd(width, '0');
  return pa === pb ? 0 : pa < pb ? -1 : 1;
}

/**
 * The version of an object for the ledger key: normalised `modified`, else normalised `created`,
 * else null (SCOs carry no timestamps). Throws TimestampError when the chosen property is not a
 * valid timestamp.
 */
export function objectVersion(obj: { modified?: unknown; created?: unknown }): string | null {
  for (const prop of ['modified', 'created'] as const) {
    const v = obj[prop];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') throw new TimestampError(`property "${prop}" must be a timestamp string, got ${describeValue(v)}`, v);
    try {
      return normaliseTimestamp(v);
    } catch (err) {
      throw new TimestampError(`property "${prop}": ${(err as Error).message}`, v);
    }
  }
  return null;
}

const BYTES32 = /^0x[0-9a-f]{64}$/;

/**
 * Ledger key k, as '0x' + 64 hex digits (bytes32):
 * - versioned objects (SDOs, SROs, …): k = sha256(JCS([collection, objectId, version])), `version`
 *   normalised (see objectVersion);
 * - unversioned objects (most SCOs: no `modified`/`created`): k = sha256(JCS([collection, objectId,
 *   null, h_t])) — the object's own hash h_t (the one anchored, keyed or not) stands in for the
 *   version. An SCO's deterministic id covers only some of its properties, so two producers can hold
 *   different content under one id; keying by content gives each its own key (no KEY_TAKEN, no false
 *   mismatch). The price: an altered SCO has another key, so it reads `not-anchored`, never `mismatch`.
 */
export function ledgerKey(collection: string, objectId: string, version: string | null, hash?: string): string {
  if (typeof collection !== 'string' || collection.length === 0) {
    throw Object.assign(new Error('ledgerKey: collection id must be a non-empty string'), { code: 'KEY_INVALID' });
  }
  if (typeof objectId !== 'string' || objectId.length === 0) {
    throw Object.assign(new Error('ledgerKey: object id must be a non-empty string'), { code: 'KEY_INVALID' });
  }
  if (version !== null && typeof version !== 'string') {
    throw Object.assign(new Error('ledgerKey: version must be a normalised timestamp string or null'), { code: 'KEY_INVALID' });
  }
  if (version === null) {
    if (typeof hash !== 'string' || !BYTES32.test(hash)) {
      throw Object.assign(new Error('ledgerKey: an unversioned object is keyed by its hash: pass h_t as 0x + 64 lower-case hex digits'), {
        code: 'KEY_INVALID',
      });
    }
    return sha256Hex(canonicalize([collection, objectId, null, hash]));
  }
  return sha256Hex(canonicalize([collection, objectId, version]));
}

/**
 * Scope of a collection on the ledger: sha256(JCS([collectionId])) (bytes32). Writers are granted
 * the right to vouch per scope (see lib/ledger/ledger.ts); a one-element array can never equal a
 * key's three- or four-element input.
 */
export function collectionScope(collection: string): string {
  if (typeof collection !== 'string' || collection.length === 0) {
    throw Object.assign(new Error('collectionScope: collection id must be a non-empty string'), { code: 'KEY_INVALID' });
  }
  return sha256Hex(canonicalize([collection]));
}

/**
 * Tag of a producer identity on the ledger: sha256(JCS(["identity", identityId])) (bytes32), where
 * identityId is the STIX `identity--…` id objects name in `created_by_ref`. The registry admin may
 * bind a tag to the accounts that speak for that producer; verifiers pass the tag of the object's
 * `created_by_ref`. A two-element array never equals a scope's or a key's input.
 */
export function identityTag(identityId: string): string {
  if (typeof identityId !== 'string' || identityId.length === 0) {
    throw Object.assign(new Error('identityTag: identity id must be a non-empty string'), { code: 'KEY_INVALID' });
  }
  return sha256Hex(canonicalize(['identity', identityId]));
}

/** Where and what to anchor for one object: scope, key, hash and normalised version. */
export interface ObjectAnchor {
  scope: string;
  key: string;
  hash: string;
  /** normalised version (null for unversioned objects) */
  version: string | null;
}

/**
 * Scope, key, hash h_t (keyed with `hmacKey` when given) and version of a STIX object in a
 * collection — everything a producer anchors and a verifier recomputes.
 */
export function keyForObject(
  collection: string,
  obj: { id: string; modified?: unknown; created?: unknown },
  opts: { hmacKey?: string | Uint8Array } = {},
): ObjectAnchor {
  const version = objectVersion(obj);
  const hash = hashObject(obj, opts.hmacKey);
  return { scope: collectionScope(collection), key: ledgerKey(collection, obj.id, version, hash), hash, version };
}
