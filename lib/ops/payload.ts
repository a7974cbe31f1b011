/**
 * Payloads as they reach a consumer: the objects to verify.
 *
 * Producers validate strictly (lib/stix `extractObjects`: nothing is anchored or sent unless
 * every object is valid STIX). A consumer must be lenient instead: an object altered in transit
 * may no longer be valid STIX, and that is exactly what verification should report — as a hash
 * `mismatch` — rather than fail on. So here only what the ledger key needs is required: a STIX
 * identifier and, when present, valid `modified`/`created` timestamps. Anything else about the
 * object is judged by its hash.
 */
import { objectVersion } from '../digest';
import { IDENTIFIER_RE } from '../stix-schemas';
import type { StixObject } from '../stix';
import { OpsError, type ObjectProblem } from './errors';

const ENVELOPE_KEYS = new Set(['objects', 'more', 'next']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** JSON text or UTF-8 bytes -> value; anything else as is. Throws BAD_PAYLOAD for bad JSON. */
export function parsePayload(payload: unknown): unknown {
  let data = payload;
  if (data instanceof Uint8Array) data = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
  if (typeof data !== 'string') return data;
  if (data.trim() === '') throw new OpsError('BAD_PAYLOAD', 'payload is empty (no JSON text)');
  try {
    return JSON.parse(data) as unknown;
  } catch (err) {
    throw new OpsError('BAD_PAYLOAD', `payload is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** The list inside a payload: one object, an array, a bundle or a TAXII envelope. */
export function unwrapPayload(data: unknown): unknown[] {
  if (data === null || data === undefined) throw new OpsError('BAD_PAYLOAD', `payload is empty (${String(data)})`);
  if (Array.isArray(data)) return data;
  if (!isRecord(data)) {
    throw new OpsError('BAD_PAYLOAD', `payload must be a STIX object, a list of objects, a bundle or a TAXII envelope, got ${describe(data)}`);
  }
  const isBundle = data.type === 'bundle';
  const isEnvelope = data.type === undefined && Object.keys(data).length > 0 && Object.keys(data).every((k) => ENVELOPE_KEYS.has(k));
  if (!isBundle && !isEnvelope) return [data];
  if (data.objects === undefined) return [];
  if (!Array.isArray(data.objects)) {
    throw new OpsError('BAD_PAYLOAD', `${isBundle ? 'bundle' : 'envelope'} "objects" must be a list, got ${describe(data.objects)}`);
  }
  return data.objects;
}

/**
 * Objects to verify: parsed, unwrapped, each with a STIX identifier and valid version timestamps.
 * Throws BAD_PAYLOAD listing every object that cannot be verified (or when there is none).
 */
export function objectsToVerify(payload: unknown): StixObject[] {
  const items = unwrapPayload(parsePayload(payload));
  if (items.length === 0) throw new OpsError('BAD_PAYLOAD', 'payload contains no objects');
  const problems: ObjectProblem[] = [];
  items.forEach((o, index) => {
    if (!isRecord(o)) {
      problems.push({ index, message: `must be a JSON object, got ${describe(o)}` });
      return;
    }
    const id = typeof o.id === 'string' ? o.id : undefined;
    if (!id || !IDENTIFIER_RE.test(id)) {
      problems.push({ index, message: id ? `id ${JSON.stringify(id)} is not a STIX identifier "<type>--<UUID>"` : 'has no id' });
      return;
    }
    try {
      objectVersion(o);
    } catch (err) {
      problems.push({ index, id, message: (err as Error).message });
    }
  });
  if (problems.length > 0) {
    const lines = problems.slice(0, 20).map((p) => `object #${p.index}${p.id ? ` (${p.id})` : ''}: ${p.message}`);
    throw new OpsError('BAD_PAYLOAD', `cannot verify: ${lines.join('; ')}${problems.length > 20 ? `; … and ${problems.length - 20} more` : ''}`, {
      problems,
    });
  }
  return items as StixObject[];
}

/** STIX type of an object (the part of its id before `--`). */
export function typeOfObject(obj: { id: string; type?: unknown }): string {
  return typeof obj.type === 'string' && obj.type ? obj.type : obj.id.slice(0, obj.id.indexOf('--'));
}
