/**
 * STIX 2.1 checks: what an object must look like before it is hashed, anchored, stored or
 * distributed, and how payloads (single object, array, bundle, TAXII envelope, JSON text) are
 * turned into a list of objects — all-or-nothing: one bad object rejects the whole payload, and
 * the error lists every problem found (object index, id and property).
 *
 * Property shapes are JSON Schemas (lib/stix-schemas.ts) compiled once per type by ajv; rules a
 * schema cannot express clearly are checked here in code.
 *
 * Decisions:
 * - Only `spec_version` "2.1" is accepted by default. An SDO/SRO/marking without spec_version is
 *   STIX 2.0 (STIX 2.1 §3.2); an SCO without it is 2.1. Other versions are accepted when listed
 *   in `allowSpecVersions`; such objects get the common checks only (2.0 type rules differ).
 * - Unknown (custom) types are accepted with the common checks. They are treated as SCOs when an
 *   extension declares `extension_type: "new-sco"` or when they have neither created nor modified,
 *   else as SDOs/SROs (created + modified required).
 * - created/modified/other timestamps must be RFC 3339 UTC with "Z" (STIX 2.1 timestamp type);
 *   any number of fractional digits is accepted (the OASIS schemas insist on >= 3 for created/
 *   modified; we do not reject coarser producers, the ledger key normalises the version anyway).
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { isIPv4, isIPv6 } from 'node:net';
import { compareTimestamps, normaliseTimestamp, objectVersion } from './digest';
import { IDENTIFIER_RE, TYPES, TYPE_RE, schemaFor, type ObjectKind } from './stix-schemas';

export interface StixObject {
  id: string;
  type: string;
  spec_version?: string;
  created?: string;
  modified?: string;
  [k: string]: unknown;
}

export interface ValidationIssue {
  /** position of the object in the payload (0-based); -1 for the payload itself */
  index: number;
  id?: string;
  type?: string;
  /** property path inside the object ("pattern", "external_references[0].url"); '' for the object itself */
  property: string;
  message: string;
}

export interface ValidateOptions {
  /** spec_version values accepted besides "2.1" (e.g. ["2.0"]) */
  allowSpecVersions?: string[];
}

export interface ExtractOptions extends ValidateOptions {
  /** return [] for an empty bundle/envelope/array instead of throwing */
  allowEmpty?: boolean;
}

/** One line per issue, e.g. `object #2 (indicator--…): property "pattern" is required`. */
export function formatIssue(issue: ValidationIssue): string {
  const prop = issue.property ? `property "${issue.property}" ` : '';
  if (issue.index < 0) return issue.property ? `payload: ${prop}${issue.message}` : issue.message;
  const who = issue.id ? ` (${issue.id})` : issue.type ? ` (type ${issue.type})` : '';
  return `object #${issue.index}${who}: ${prop}${issue.message}`;
}

const MAX_LISTED = 20;

export class StixValidationError extends Error {
  readonly code = 'STIX_INVALID';
  readonly issues: ValidationIssue[];
  constructor(issues: ValidationIssue[], message?: string) {
    const lines = issues.slice(0, MAX_LISTED).map(formatIssue);
    if (issues.length > MAX_LISTED) lines.push(`... and ${issues.length - MAX_LISTED} more`);
    super(
      message ??
        (issues.length === 1 ? `invalid STIX: ${lines[0]}` : `invalid STIX (${issues.length} issues): ${lines.join('; ')}`),
    );
    this.name = 'StixValidationError';
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return v.length === 0 ? 'an empty string' : 'a string';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

const SCO_TYPES = new Set(Object.entries(TYPES).filter(([, s]) => s.kind === 'sco').map(([t]) => t));
/** properties every SCO may have that do not count as "content" for the at-least-one rules */
const SCO_COMMON = new Set(['type', 'id', 'spec_version', 'object_marking_refs', 'granular_markings', 'defanged']);

/** The type part of a STIX identifier ("indicator--<uuid>" -> "indicator"). */
export function stixTypeOf(id: string): string {
  const m = typeof id === 'string' ? IDENTIFIER_RE.exec(id) : null;
  if (!m) {
    throw new StixValidationError(
      [{ index: -1, property: '', message: `${JSON.stringify(id)} is not a STIX identifier "<type>--<UUID>"` }],
      `${JSON.stringify(id)} is not a STIX identifier "<type>--<UUID>"`,
    );
  }
  return m[1];
}

/** True for the 18 Cyber-observable Object types defined by STIX 2.1. */
export function isSco(type: string): boolean {
  return SCO_TYPES.has(type);
}

function kindOf(type: string, obj: JsonObject): ObjectKind {
  const spec = TYPES[type];
  if (spec) return spec.kind;
  if (isObject(obj.extensions)) {
    for (const ext of Object.values(obj.extensions)) {
      if (!isObject(ext)) continue;
      if (ext.extension_type === 'new-sco') return 'sco';
      if (ext.extension_type === 'new-sdo') return 'sdo';
      if (ext.extension_type === 'new-sro') return 'sro';
    }
  }
  return 'created' in obj || 'modified' in obj ? 'sdo' : 'sco';
}

/**
 * The STIX version an object claims: its spec_version, else "2.1" for SCOs (they are top-level
 * only since 2.1) and "2.0" for everything else (STIX 2.1 §3.2).
 */
export function specVersionOf(obj: { type?: unknown; spec_version?: unknown; [k: string]: unknown }): string {
  if (typeof obj.spec_version === 'string') return obj.spec_version;
  const type = typeof obj.type === 'string' ? obj.type : '';
  return kindOf(type, obj) === 'sco' ? '2.1' : '2.0';
}

// ---------------------------------------------------------------------------------------------
// ajv

const STIX_TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/;

function isStixTimestamp(s: string): boolean {
  if (!STIX_TS.test(s)) return false;
  try {
    normaliseTimestamp(s);
    return true;
  } catch {
    return false;
  }
}

function cidr(isAddr: (s: string) => boolean, maxPrefix: number): (s: string) => boolean {
  return (s) => {
    const slash = s.indexOf('/');
    if (slash < 0) return isAddr(s);
    const prefix = s.slice(slash + 1);
    return isAddr(s.slice(0, slash)) && /^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix;
  };
}

let ajvInstance: Ajv | undefined;
const validators = new Map<string, ValidateFunction>();

function ajv(): Ajv {
  if (!ajvInstance) {
    const a = new Ajv({ allErrors: true, strict: true, verbose: true });
    addFormats(a, ['uri']);
    a.addFormat('stix-timestamp', { type: 'string', validate: isStixTimestamp });
    a.addFormat('ipv4-cidr', { type: 'string', validate: cidr(isIPv4, 32) });
    a.addFormat('ipv6-cidr', { type: 'string', validate: cidr(isIPv6, 128) });
    a.addKeyword({ keyword: 'x-msg', schemaType: 'string' }); // annotation only (message text)
    ajvInstance = a;
  }
  return ajvInstance;
}

/** compiled validator for a known type (typeSpecific) or for the common properties of a kind */
function validatorFor(type: string, kind: ObjectKind, typeSpecific: boolean): ValidateFunction {
  const cacheKey = typeSpecific ? `type:${type}` : `kind:${kind}`;
  let v = validators.get(cacheKey);
  if (!v) {
    v = ajv().compile(schemaFor(typeSpecific ? TYPES[type] : undefined, kind));
    validators.set(cacheKey, v);
  }
  return v;
}

function pointerToPath(pointer: string): string {
  if (!pointer) return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}

const EMPTY_LIST = 'must not be an empty list (STIX forbids empty lists)';

const join = (base: string, prop: string): string => (base ? `${base}.${prop}` : prop);

function ajvIssue(e: ErrorObject): { property: string; message: string } {
  const path = pointerToPath(e.instancePath);
  const params = e.params as Record<string, unknown>;
  const custom = isObject(e.parentSchema) && typeof e.parentSchema['x-msg'] === 'string' ? e.parentSchema['x-msg'] : undefined;
  switch (e.keyword) {
    case 'required':
      return { property: join(path, String(params.missingProperty)), message: 'is required' };
    case 'type': {
      const t = String(params.type) === 'array' ? 'list' : String(params.type);
      return { property: path, message: `must be ${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t}` };
    }
    case 'pattern':
      return { property: path, message: custom ?? `does not match ${String(params.pattern)}` };
    case 'format':
      return { property: path, message: custom ?? `must be a valid ${String(params.format)}` };
    case 'enum':
      return { property: path, message: `must be one of: ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'minItems':
      return { property: path, message: EMPTY_LIST };
    case 'minProperties':
      return { property: path, message: 'must not be an empty object' };
    case 'minLength':
      return { property: path, message: Number(params.limit) <= 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters` };
    case 'maxLength':
      return { property: path, message: `must be at most ${String(params.limit)} characters` };
    case 'minimum':
    case 'maximum':
      return { property: path, message: `must be ${String(params.comparison)} ${String(params.limit)}` };
    case 'additionalProperties':
      return { property: join(path, String(params.additionalProperty)), message: `is not allowed: ${custom ?? 'unknown key'}` };
    default:
      return { property: path, message: e.message ?? `fails ${e.keyword}` };
  }
}

// ---------------------------------------------------------------------------------------------
// rules in code

type Add = (property: string, message: string) => void;

const has = (o: JsonObject, k: string): boolean => o[k] !== undefined;

/** a must not be later than b (or strictly earlier when `strict`); silent when either is invalid */
function order(o: JsonObject, a: string, b: string, add: Add, strict = false): void {
  const va = o[a];
  const vb = o[b];
  if (typeof va !== 'string' || typeof vb !== 'string' || !isStixTimestamp(va) || !isStixTimestamp(vb)) return;
  const c = compareTimestamps(va, vb);
  if (strict ? c >= 0 : c > 0) add(b, `must be ${strict ? 'later than' : 'the same as or later than'} "${a}" (${vb} < ${va})`);
}

function atLeastOne(o: JsonObject, props: string[], add: Add): void {
  if (!props.some((p) => has(o, p))) add(props[0], `is required unless ${props.slice(1).map((p) => `"${p}"`).join(' or ')} is present (at least one of ${props.join(', ')})`);
}

function notBoth(o: JsonObject, a: string, b: string, add: Add): void {
  if (has(o, a) && has(o, b)) add(b, `must not be present together with "${a}"`);
}

function commonRules(o: JsonObject, type: string, add: Add): void {
  if (typeof o.id === 'string') {
    const m = IDENTIFIER_RE.exec(o.id);
    if (m && m[1] !== type) add('id', `must start with "${type}--" (the object's type), got "${m[1]}--"`);
  }
  order(o, 'created', 'modified', add);
  // "Empty lists are prohibited in STIX" — also for custom properties the schemas do not know.
  for (const [k, v] of Object.entries(o)) {
    if (Array.isArray(v) && v.length === 0) add(k, EMPTY_LIST);
  }
  if (Array.isArray(o.external_references)) {
    o.external_references.forEach((r, i) => {
      if (isObject(r) && !has(r, 'description') && !has(r, 'url') && !has(r, 'external_id')) {
        add(`external_references[${i}]`, 'needs at least one of description, url or external_id besides source_name');
      }
    });
  }
  if (Array.isArray(o.granular_markings)) {
    o.granular_markings.forEach((g, i) => {
      if (!isObject(g)) return;
      if (has(g, 'marking_ref') === has(g, 'lang')) {
        add(`granular_markings[${i}]`, 'must have exactly one of marking_ref or lang');
      }
    });
  }
}

const TLP = ['white', 'green', 'amber', 'red'];

function typeRules(o: JsonObject, type: string, add: Add): void {
  switch (type) {
    case 'campaign':
    case 'intrusion-set':
    case 'threat-actor':
    case 'infrastructure':
    case 'sighting':
      order(o, 'first_seen', 'last_seen', add);
      break;
    case 'malware':
      order(o, 'first_seen', 'last_seen', add);
      if (o.is_family === true && !has(o, 'name')) add('name', 'is required when is_family is true');
      break;
    case 'indicator':
      order(o, 'valid_from', 'valid_until', add, true);
      break;
    case 'relationship':
      order(o, 'start_time', 'stop_time', add, true);
      break;
    case 'observed-data':
      order(o, 'first_observed', 'last_observed', add);
      if (!has(o, 'objects') && !has(o, 'object_refs')) add('object_refs', 'is required (or the deprecated "objects")');
      notBoth(o, 'objects', 'object_refs', add);
      break;
    case 'location':
      if (!has(o, 'region') && !has(o, 'country') && !(has(o, 'latitude') && has(o, 'longitude'))) {
        add('region', 'is required unless "country" or "latitude"+"longitude" are present');
      }
      if (has(o, 'latitude') !== has(o, 'longitude')) add(has(o, 'latitude') ? 'longitude' : 'latitude', 'is required with the other coordinate');
      if (has(o, 'precision') && !(has(o, 'latitude') && has(o, 'longitude'))) add('precision', 'requires latitude and longitude');
      break;
    case 'malware-analysis':
      atLeastOne(o, ['result', 'analysis_sco_refs'], add);
      order(o, 'analysis_started', 'analysis_ended', add);
      break;
    case 'artifact':
      atLeastOne(o, ['payload_bin', 'url'], add);
      notBoth(o, 'payload_bin', 'url', add);
      if (has(o, 'decryption_key') && !has(o, 'encryption_algorithm')) add('decryption_key', 'requires "encryption_algorithm"');
      break;
    case 'file':
      atLeastOne(o, ['hashes', 'name'], add);
      break;
    case 'email-message':
      if (o.is_multipart === true && has(o, 'body')) add('body', 'must not be present when is_multipart is true (use body_multipart)');
      if (o.is_multipart === false && has(o, 'body_multipart')) add('body_multipart', 'must not be present when is_multipart is false');
      break;
    case 'network-traffic':
      atLeastOne(o, ['src_ref', 'dst_ref'], add);
      if (o.is_active === true && has(o, 'end')) add('end', 'must not be present when is_active is true');
      order(o, 'start', 'end', add);
      break;
    case 'process':
    case 'user-account':
    case 'windows-registry-key':
    case 'x509-certificate':
      if (!Object.keys(o).some((k) => !SCO_COMMON.has(k) && o[k] !== undefined)) add('', `a ${type} needs at least one of its own properties (or an extension)`);
      break;
    case 'marking-definition':
      if (has(o, 'definition_type') !== has(o, 'definition')) {
        add(has(o, 'definition') ? 'definition_type' : 'definition', 'is required with the other of definition_type/definition');
      } else if (!has(o, 'definition_type') && !has(o, 'extensions')) {
        add('definition_type', 'is required (with "definition") unless the marking is defined by an extension');
      }
      if (o.definition_type === 'tlp' && isObject(o.definition) && !TLP.includes(String(o.definition.tlp))) {
        add('definition.tlp', `must be one of: ${TLP.join(', ')}`);
      }
      if (o.definition_type === 'statement' && isObject(o.definition) && typeof o.definition.statement !== 'string') {
        add('definition.statement', 'is required (a string) for a statement marking');
      }
      break;
    case 'extension-definition':
      if (has(o, 'extension_properties') && !(Array.isArray(o.extension_types) && o.extension_types.includes('toplevel-property-extension'))) {
        add('extension_properties', 'is only allowed with extension_types "toplevel-property-extension"');
      }
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// public validation API

/**
 * All problems of one object (empty list = valid). `index` is the object's position in its
 * payload and is copied into each issue.
 */
export function validateObject(obj: unknown, index = 0, opts: ValidateOptions = {}): ValidationIssue[] {
  if (!isObject(obj)) return [{ index, property: '', message: `must be a JSON object, got ${describeValue(obj)}` }];
  const id = typeof obj.id === 'string' ? obj.id : undefined;
  const type = typeof obj.type === 'string' ? obj.type : undefined;
  const issues: ValidationIssue[] = [];
  const seenIssue = new Set<string>();
  const add: Add = (property, message) => {
    const k = `${property}\u0000${message}`;
    if (seenIssue.has(k)) return;
    seenIssue.add(k);
    issues.push({ index, ...(id !== undefined ? { id } : {}), ...(type !== undefined ? { type } : {}), property, message });
  };

  if (type === undefined) {
    add('type', obj.type === undefined ? 'is required' : `must be a string, got ${describeValue(obj.type)}`);
    if (obj.id === undefined) add('id', 'is required');
    return issues;
  }
  if (type === 'bundle') {
    add('type', 'a bundle cannot appear inside a payload (nested bundles are not STIX)');
    return issues;
  }
  if (!TYPE_RE.test(type) || type.length < 3 || type.length > 250) {
    add('type', `${JSON.stringify(type)} is not a valid STIX type (3-250 characters a-z, 0-9 and single hyphens, starting with a letter)`);
    return issues;
  }

  const kind = kindOf(type, obj);
  const version = specVersionOf(obj);
  const allowed = new Set(['2.1', ...(opts.allowSpecVersions ?? [])]);
  if (obj.spec_version !== undefined && typeof obj.spec_version !== 'string') {
    add('spec_version', `must be a string, got ${describeValue(obj.spec_version)}`);
  } else if (!allowed.has(version)) {
    const accepted = [...allowed].map((v) => `"${v}"`).join(', ');
    add(
      'spec_version',
      obj.spec_version === undefined
        ? `is required (a ${type} without spec_version is STIX ${version}; accepted: ${accepted}, option allowSpecVersions widens this)`
        : `is "${version}"; accepted: ${accepted} (option allowSpecVersions widens this)`,
    );
  }
  const typeSpecific = version === '2.1' && TYPES[type] !== undefined;

  const validate = validatorFor(type, kind, typeSpecific);
  if (!validate(obj)) {
    for (const e of validate.errors ?? []) {
      const { property, message } = ajvIssue(e);
      add(property, message);
    }
  }
  commonRules(obj, type, add);
  if (typeSpecific) typeRules(obj, type, add);
  return issues;
}

function payloadIssue(message: string, property = ''): ValidationIssue {
  return { index: -1, property, message };
}

const ENVELOPE_KEYS = new Set(['objects', 'more', 'next']);

/**
 * Objects of a payload: one STIX object, an array of them, a STIX bundle, a TAXII envelope
 * (`{objects, more?, next?}`), or JSON text / UTF-8 bytes of any of these. Every object is
 * validated and (id, version) pairs must be unique; any problem throws one StixValidationError
 * listing all issues, so a payload is accepted whole or not at all. An empty payload throws too
 * unless `allowEmpty`.
 */
export function extractObjects(payload: unknown, opts: ExtractOptions = {}): StixObject[] {
  let data = payload;
  if (data instanceof Uint8Array) data = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
  if (typeof data === 'string') {
    const text = data.charCodeAt(0) === 0xfeff ? data.slice(1) : data; // a UTF-8 byte order mark is not JSON
    if (text.trim() === '') throw new StixValidationError([payloadIssue('payload is empty (no JSON text)')]);
    try {
      data = JSON.parse(text) as unknown;
    } catch (err) {
      throw new StixValidationError([payloadIssue(`payload is not JSON: ${(err as Error).message}`)]);
    }
  }
  if (data === null || data === undefined) throw new StixValidationError([payloadIssue(`payload is empty (${String(data)})`)]);

  let objects: unknown[];
  let what: string;
  if (Array.isArray(data)) {
    objects = data;
    what = 'array';
  } else if (isObject(data)) {
    if (data.type === 'bundle') {
      what = 'bundle';
      const issues: ValidationIssue[] = [];
      if (typeof data.id !== 'string' || !/^bundle--/.test(data.id) || !IDENTIFIER_RE.test(data.id)) {
        issues.push(payloadIssue(`must be "bundle--<UUID>", got ${typeof data.id === 'string' ? JSON.stringify(data.id) : describeValue(data.id)}`, 'id'));
      }
      if (data.objects !== undefined && !Array.isArray(data.objects)) {
        issues.push(payloadIssue(`must be a list, got ${describeValue(data.objects)}`, 'objects'));
      }
      if (issues.length) throw new StixValidationError(issues);
      objects = (data.objects as unknown[] | undefined) ?? [];
    } else if (data.type === undefined && Object.keys(data).every((k) => ENVELOPE_KEYS.has(k))) {
      what = 'TAXII envelope';
      const issues: ValidationIssue[] = [];
      if (data.objects !== undefined && !Array.isArray(data.objects)) issues.push(payloadIssue(`must be a list, got ${describeValue(data.objects)}`, 'objects'));
      if (data.more !== undefined && typeof data.more !== 'boolean') issues.push(payloadIssue(`must be a boolean, got ${describeValue(data.more)}`, 'more'));
      if (data.next !== undefined && typeof data.next !== 'string') issues.push(payloadIssue(`must be a string, got ${describeValue(data.next)}`, 'next'));
      if (issues.length) throw new StixValidationError(issues);
      objects = (data.objects as unknown[] | undefined) ?? [];
    } else {
      objects = [data];
      what = 'object';
    }
  } else {
    throw new StixValidationError([
      payloadIssue(`payload must be a STIX object, a list of objects, a bundle or a TAXII envelope, got ${describeValue(data)}`),
    ]);
  }

  if (objects.length === 0) {
    if (opts.allowEmpty) return [];
    throw new StixValidationError([payloadIssue(`payload contains no objects (empty ${what})`)]);
  }

  const issues: ValidationIssue[] = [];
  const firstIndex = new Map<string, number>();
  objects.forEach((o, i) => {
    const found = validateObject(o, i, opts);
    issues.push(...found);
    if (found.length > 0 || !isObject(o) || typeof o.id !== 'string') return;
    let version: string | null;
    try {
      version = objectVersion(o);
    } catch {
      return; // already reported as a timestamp issue
    }
    const k = `${o.id}\u0000${version ?? ''}`;
    const first = firstIndex.get(k);
    if (first === undefined) firstIndex.set(k, i);
    else {
      issues.push({
        index: i,
        id: o.id,
        type: String(o.type),
        property: 'id',
        message: `duplicates object #${first} (same id and version ${version ?? '(unversioned)'})`,
      });
    }
  });
  if (issues.length) throw new StixValidationError(issues);
  return objects as StixObject[];
}
