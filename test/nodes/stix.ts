/** Fresh, valid STIX 2.1 objects for the node tests (random ids, so tests never collide on the ledger). */
import { randomUUID } from 'node:crypto';
import type { StixObject } from '../../lib/stix';

export function indicator(name = 'C2 address', ip = '10.0.0.1'): StixObject {
  const now = new Date().toISOString();
  return {
    type: 'indicator',
    spec_version: '2.1',
    id: `indicator--${randomUUID()}`,
    created: now,
    modified: now,
    name,
    pattern_type: 'stix',
    pattern: `[ipv4-addr:value = '${ip}']`,
    valid_from: now,
  };
}

export function malware(name = 'Poison Ivy'): StixObject {
  const now = new Date().toISOString();
  return {
    type: 'malware',
    spec_version: '2.1',
    id: `malware--${randomUUID()}`,
    created: now,
    modified: now,
    name,
    is_family: false,
  };
}

export function bundle(objects: unknown[]): Record<string, unknown> {
  return { type: 'bundle', id: `bundle--${randomUUID()}`, objects };
}

/** A collection id no other test uses. */
export function collectionId(): string {
  return randomUUID();
}
