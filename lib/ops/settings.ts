/**
 * Shared by the Node-RED nodes and the n8n nodes/credentials (both hand in raw form values).
 *
 * Reading node configuration: the editor stores numbers and switches as strings or booleans
 * depending on the widget and on the Node-RED version that saved the flow, so every value is
 * parsed here once, with a default and a range, instead of `Number(x) || 0` scattered around.
 */
import { OpsError } from './errors';

/** A setting that cannot work; names the setting (code BAD_CONFIG, like every OpsError of that kind). */
export class ConfigError extends OpsError {
  constructor(message: string) {
    super('BAD_CONFIG', message);
    this.name = 'ConfigError';
  }
}

export function str(value: unknown, fallback = ''): string {
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return fallback;
}

/** Optional string: undefined when empty. */
export function optStr(value: unknown): string | undefined {
  const s = str(value);
  return s === '' ? undefined : s;
}

/**
 * Integer setting. Empty -> fallback. Outside [min, max] or not a number -> ConfigError naming
 * the setting, so a typo in the editor surfaces as a clear message instead of NaN downstream.
 */
export function int(value: unknown, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value === null || value === '') return fallback;
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be a whole number between ${min} and ${max}, got "${String(value)}"`);
  }
  return n;
}

/** Optional integer: undefined when empty. */
export function optInt(value: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return int(value, name, 0, min, max);
}

export function bool(value: unknown, fallback: boolean): boolean {
  if (typeof value === 'boolean') return value;
  if (value === 'true') return true;
  if (value === 'false') return false;
  return fallback;
}

/** One of a fixed set of options; empty -> fallback; anything else -> ConfigError. */
export function oneOf<T extends string>(value: unknown, name: string, options: readonly T[], fallback: T): T {
  const s = str(value);
  if (s === '') return fallback;
  if ((options as readonly string[]).includes(s)) return s as T;
  throw new ConfigError(`${name} must be one of ${options.join(', ')}, got "${s}"`);
}

/** Comma- or newline-separated list, trimmed, empties dropped. */
export function list(value: unknown): string[] {
  if (Array.isArray(value)) return value.map((v) => str(v)).filter((v) => v !== '');
  return str(value)
    .split(/[\n,]/)
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
