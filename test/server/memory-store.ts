/**
 * A small in-memory Store for the TAXII server tests, written from the interface contract in
 * lib/store/store.ts (ascending date_added, cursor = last date_added, `last` version default,
 * latest spec version default, invalid records hidden unless asked for). Not for production: it
 * scans arrays. The server tests also run against the embedded store when it is available.
 */
import type {
  AddOutcome,
  IntegrityStatus,
  Page,
  RecordQuery,
  SetStatusOptions,
  StatusCounts,
  StatusMove,
  StatusResource,
  Store,
  StoredRecord,
  VersionMatch,
} from '../../lib/store/store';
import { compareTimestamps, createTaxiiClock } from '../../lib/taxii/media';
import { normaliseTimestamp } from '../../lib/digest';
import { assembleStatus, checkMoves, splitStatus, statusVersionKey, type StatusEntry } from '../../lib/store/common';

const clock = createTaxiiClock();

function norm(v: string): string {
  try {
    return normaliseTimestamp(v);
  } catch {
    return v;
  }
}
function cmpVersion(a: StoredRecord, b: StoredRecord): number {
  return compareTimestamps(a.version, b.version);
}

function specKey(v: string): number[] {
  return v.split('.').map((n) => Number(n));
}
function cmpSpec(a: string, b: string): number {
  const x = specKey(a), y = specKey(b);
  return x[0] - y[0] || (x[1] ?? 0) - (y[1] ?? 0);
}

export class MemoryStore implements Store {
  records: StoredRecord[] = [];
  /** status resources: the header as put (without pendings) and its pending entries by (object id, version key) */
  statuses = new Map<string, { header: StatusResource; entries: Map<string, StatusEntry[]> }>();
  opened = false;

  async open(): Promise<void> {
    this.opened = true;
  }
  async close(): Promise<void> {
    this.opened = false;
  }

  async add(rec: Omit<StoredRecord, 'dateAdded' | 'statusAt'> & { dateAdded?: string }): Promise<AddOutcome> {
    const mine = this.records.filter((r) => r.collection === rec.collection && r.id === rec.id);
    if (rec.version === '') {
      const dup = mine.find((r) => r.hash === rec.hash);
      if (dup) return { outcome: 'duplicate', record: dup };
    } else {
      const same = mine.find((r) => norm(r.version) === norm(rec.version));
      if (same) return same.hash === rec.hash ? { outcome: 'duplicate', record: same } : { outcome: 'conflict', record: same };
    }
    const dateAdded = rec.dateAdded ?? clock();
    const record: StoredRecord = { ...rec, version: rec.version === '' ? dateAdded : rec.version, dateAdded, statusAt: new Date().toISOString() };
    this.records.push(record);
    this.records.sort((a, b) => (a.dateAdded < b.dateAdded ? -1 : a.dateAdded > b.dateAdded ? 1 : 0));
    return { outcome: 'added', record };
  }

  async addMany(recs: Array<Omit<StoredRecord, 'dateAdded' | 'statusAt'> & { dateAdded?: string }>): Promise<AddOutcome[]> {
    const out: AddOutcome[] = [];
    for (const r of recs) out.push(await this.add(r));
    return out;
  }

  async get(collection: string, id: string, version?: string): Promise<StoredRecord | null> {
    const all = this.records.filter((r) => r.collection === collection && r.id === id && (version === undefined || norm(r.version) === norm(version)));
    if (all.length === 0) return null;
    return all.reduce((a, b) => (cmpVersion(b, a) > 0 ? b : a));
  }

  async query(q: RecordQuery): Promise<Page<StoredRecord>> {
    let rs = this.records.filter((r) => r.collection === q.collection);
    if (!q.includeInvalid) rs = rs.filter((r) => r.status !== 'invalid');
    if (q.statuses) rs = rs.filter((r) => q.statuses?.includes(r.status));
    if (q.ids) rs = rs.filter((r) => q.ids?.includes(r.id));
    if (q.types) rs = rs.filter((r) => q.types?.includes(r.type));
    // spec versions
    if (q.specVersions) rs = rs.filter((r) => q.specVersions?.includes(r.specVersion));
    else {
      const best = new Map<string, string>();
      for (const r of rs) {
        const b = best.get(r.id);
        if (b === undefined || cmpSpec(r.specVersion, b) > 0) best.set(r.id, r.specVersion);
      }
      rs = rs.filter((r) => best.get(r.id) === r.specVersion);
    }
    // versions
    const vm: VersionMatch[] = q.versions ?? ['last'];
    if (!vm.includes('all')) {
      const byId = new Map<string, StoredRecord[]>();
      for (const r of rs) byId.set(r.id, [...(byId.get(r.id) ?? []), r]);
      const keep = new Set<StoredRecord>();
      for (const list of byId.values()) {
        const sorted = [...list].sort(cmpVersion);
        for (const m of vm) {
          if (m === 'first') keep.add(sorted[0]);
          else if (m === 'last') keep.add(sorted[sorted.length - 1]);
          else for (const r of sorted) if (norm(r.version) === norm(m)) keep.add(r);
        }
      }
      rs = rs.filter((r) => keep.has(r));
    }
    if (q.addedAfter) rs = rs.filter((r) => r.dateAdded > (q.addedAfter as string));
    if (q.cursor) {
      if (!/^\d{4}-/.test(q.cursor)) throw Object.assign(new Error('bad cursor'), { code: 'ERR_STORE_BAD_CURSOR' });
      rs = rs.filter((r) => r.dateAdded > (q.cursor as string));
    }
    const items = rs.slice(0, q.limit);
    const more = rs.length > items.length;
    return { items, more, ...(items.length > 0 ? { cursor: items[items.length - 1].dateAdded } : {}) };
  }

  async setStatus(collection: string, id: string, version: string, status: IntegrityStatus, reason?: string, opts?: SetStatusOptions): Promise<boolean> {
    const r = this.records.find((x) => x.collection === collection && x.id === id && norm(x.version) === norm(version));
    if (!r) return false;
    const expect = opts?.expect === undefined ? undefined : typeof opts.expect === 'string' ? [opts.expect] : opts.expect;
    if (expect && !expect.includes(r.status)) return false;
    r.status = status;
    if (reason !== undefined) r.statusReason = reason;
    r.statusAt = new Date().toISOString();
    return true;
  }

  async delete(collection: string, id: string, filter?: { versions?: VersionMatch[]; specVersions?: string[] }): Promise<number> {
    const before = this.records.length;
    const mine = this.records.filter((r) => r.collection === collection && r.id === id);
    const sorted = [...mine].sort(cmpVersion);
    const drop = new Set<StoredRecord>();
    for (const r of mine) {
      if (filter?.specVersions && !filter.specVersions.includes(r.specVersion)) continue;
      const vm = filter?.versions ?? ['all'];
      const hit = vm.some((m) => m === 'all' || (m === 'first' && r === sorted[0]) || (m === 'last' && r === sorted[sorted.length - 1]) || norm(m) === norm(r.version));
      if (hit) drop.add(r);
    }
    this.records = this.records.filter((r) => !drop.has(r));
    return before - this.records.length;
  }

  async counts(collection?: string): Promise<StatusCounts> {
    const c: StatusCounts = { pending: 0, finalized: 0, invalid: 0 };
    for (const r of this.records) if (collection === undefined || r.collection === collection) c[r.status]++;
    return c;
  }

  meta = new Map<string, string>();
  async getOrCreateMeta(name: string, initial: string): Promise<string> {
    const cur = this.meta.get(name);
    if (cur !== undefined) return cur;
    this.meta.set(name, initial);
    return initial;
  }

  async putStatus(status: StatusResource): Promise<void> {
    const { header, entries } = splitStatus(status);
    const byKey = new Map<string, StatusEntry[]>();
    for (const e of entries) {
      const k = `${e.id}\u0000${statusVersionKey(e.version)}`;
      byKey.set(k, [...(byKey.get(k) ?? []), e]);
    }
    this.statuses.set(status.id, { header, entries: byKey });
  }
  async getStatus(id: string): Promise<StatusResource | null> {
    const s = this.statuses.get(id);
    if (!s) return null;
    return JSON.parse(JSON.stringify(assembleStatus(s.header, [...s.entries.values()].flat()))) as StatusResource;
  }
  async settleStatus(statusId: string, moves: readonly StatusMove[]): Promise<boolean[]> {
    const checked = checkMoves(statusId, moves);
    const s = this.statuses.get(statusId);
    return checked.map((m) => {
      let moved = false;
      for (const e of s?.entries.get(`${m.id}\u0000${m.vk}`) ?? []) {
        if (e.st !== undefined) continue;
        e.st = m.outcome === 'success' ? 's' : 'f';
        e.m = m.message;
        moved = true;
      }
      return moved;
    });
  }
}
