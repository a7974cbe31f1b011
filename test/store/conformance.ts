/**
 * One conformance suite for every Store implementation (lib/store/store.ts). A test file calls
 * `storeConformance(factory)`; every test gets a fresh, empty store from the factory.
 *
 * Query results are checked two ways: hand-written expectations that pin the TAXII semantics
 * (TAXII-NOTES §5-7), and a brute-force reference model compared over a grid of filter combinations,
 * each paged through with a small limit.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import type { IntegrityStatus, RecordQuery, StatusResource, Store, StoredRecord, VersionMatch } from '../../lib/store/store';
import { StoreError } from '../../lib/store/errors';

export interface StoreTestOptions {
  /** clock of the store in ms */
  now?: () => number;
  statusRetentionMs?: number;
}

export interface StoreHandle {
  store: Store;
  /** close the store (if open) and open the same storage again, as after a process restart */
  reopen(opts?: StoreTestOptions): Promise<Store>;
  /** close and remove everything this handle created */
  destroy(): Promise<void>;
}

export interface StoreFactory {
  name: string;
  /** a new, empty, opened store */
  create(opts?: StoreTestOptions): Promise<StoreHandle>;
}

// ---------------------------------------------------------------------------------------------
// Test data

type Obj = StoredRecord['object'];
type NewRec = Omit<StoredRecord, 'dateAdded' | 'statusAt'> & { dateAdded?: string };

let uuidSeq = 0;
/** Deterministic UUID-shaped ids (readable in failures). */
export function uuid(n = ++uuidSeq): string {
  const h = n.toString(16).padStart(12, '0');
  return `00000000-0000-4000-8000-${h}`;
}

export function stixObject(type: string, id: string, fields: Record<string, unknown> = {}): Obj {
  return { type, id, ...fields } as unknown as Obj;
}

export function sha256(o: unknown): string {
  return '0x' + createHash('sha256').update(JSON.stringify(o)).digest('hex');
}

/** A record for `object`: version = modified, else created, else '' (unversioned). */
export function newRecord(collection: string, object: Obj, status: IntegrityStatus = 'pending'): NewRec {
  const o = object as unknown as Record<string, unknown>;
  const id = String(o.id);
  const version = typeof o.modified === 'string' ? o.modified : typeof o.created === 'string' ? o.created : '';
  const spec = typeof o.spec_version === 'string' ? o.spec_version : version === '' ? '2.1' : '2.0';
  return {
    collection,
    id,
    type: id.slice(0, id.indexOf('--')),
    version,
    specVersion: spec,
    mediaType: 'application/stix+json;version=2.1',
    object,
    hash: sha256(object),
    key: sha256([collection, id, version]),
    status,
  };
}

/** An SDO version: created fixed, modified = `modified`. */
export function sdo(type: string, n: number, modified: string, extra: Record<string, unknown> = {}): Obj {
  return stixObject(type, `${type}--${uuid(n)}`, {
    spec_version: '2.1',
    created: '2020-01-01T00:00:00.000Z',
    modified,
    ...extra,
  });
}

const ts = (i: number): string => new Date(Date.UTC(2021, 0, 1) + i * 1000).toISOString();

/** Page through a query; checks page sizes, order and cursors on the way. */
export async function collect(store: Store, q: Omit<RecordQuery, 'limit' | 'cursor'>, limit: number): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  let cursor: string | undefined;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 100_000, 'paging does not terminate');
    const page = await store.query({ ...q, limit, cursor });
    assert.ok(page.items.length <= limit, `page of ${page.items.length} items exceeds limit ${limit}`);
    if (page.more) assert.equal(page.items.length, limit, 'a page with more=true must be full');
    out.push(...page.items);
    if (page.items.length > 0) assert.ok(page.cursor, 'a non-empty page has a cursor');
    if (!page.more) break;
    cursor = page.cursor;
  }
  for (let i = 1; i < out.length; i++) {
    assert.ok(out[i - 1].dateAdded < out[i].dateAdded, `results out of date_added order at ${i}: ${out[i - 1].dateAdded} !< ${out[i].dateAdded}`);
  }
  return out;
}

const label = (r: StoredRecord): string => `${r.id}@${r.version}`;
const labels = (rs: StoredRecord[]): string[] => rs.map(label);

const instant = (t: string): number => Date.parse(t);
const specNum = (s: string): number => Number(s);

/** Brute-force reference of the TAXII selection semantics (independent of lib/store/common). */
export function referenceQuery(all: StoredRecord[], q: Omit<RecordQuery, 'limit' | 'cursor'>): StoredRecord[] {
  const allowInvalid = q.includeInvalid === true || (q.statuses ?? []).includes('invalid');
  const versions: VersionMatch[] = q.versions && q.versions.length ? q.versions : ['last'];
  const byId = new Map<string, StoredRecord[]>();
  for (const r of all) {
    if (r.collection !== q.collection) continue;
    const l = byId.get(r.id) ?? [];
    l.push(r);
    byId.set(r.id, l);
  }
  const out: StoredRecord[] = [];
  for (const recs of byId.values()) {
    let cands = recs.filter((r) => allowInvalid || r.status !== 'invalid');
    if (q.specVersions && q.specVersions.length) cands = cands.filter((r) => q.specVersions?.includes(r.specVersion));
    else if (cands.length) {
      const top = Math.max(...cands.map((r) => specNum(r.specVersion)));
      cands = cands.filter((r) => specNum(r.specVersion) === top);
    }
    if (!cands.length) continue;
    cands.sort((a, b) => instant(a.version) - instant(b.version));
    const chosen = new Set<StoredRecord>();
    for (const v of versions) {
      if (v === 'all') cands.forEach((r) => chosen.add(r));
      else if (v === 'first') chosen.add(cands[0]);
      else if (v === 'last') chosen.add(cands[cands.length - 1]);
      else cands.filter((r) => instant(r.version) === instant(v)).forEach((r) => chosen.add(r));
    }
    for (const r of chosen) {
      if (q.ids && q.ids.length && !q.ids.includes(r.id)) continue;
      if (q.types && q.types.length && !q.types.includes(r.type)) continue;
      if (q.statuses && q.statuses.length && !q.statuses.includes(r.status)) continue;
      // (the grid passes date_added values, so µs text comparison is exact)
      if (q.addedAfter && !(r.dateAdded > q.addedAfter)) continue;
      out.push(r);
    }
  }
  return out.sort((a, b) => (a.dateAdded < b.dateAdded ? -1 : 1));
}

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

function statusResource(id: string, extra: Partial<StatusResource> = {}): StatusResource {
  return {
    id,
    status: 'pending',
    request_timestamp: '2024-01-01T00:00:00.000000Z',
    total_count: 2,
    success_count: 1,
    successes: [{ id: 'indicator--' + uuid(1), version: '2024-01-01T00:00:00.000Z' }],
    failure_count: 0,
    pending_count: 1,
    pendings: [{ id: 'indicator--' + uuid(2), version: '2024-01-01T00:00:00.000Z' }],
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------------

export function storeConformance(factory: StoreFactory): void {
  describe(`Store conformance: ${factory.name}`, function () {
    let h: StoreHandle;
    let store: Store;
    const C = 'collection-a';

    beforeEach(async function () {
      h = await factory.create();
      store = h.store;
    });
    afterEach(async function () {
      await h?.destroy();
    });

    describe('add / get', function () {
      it('adds a version and gets it back with a µs date_added', async function () {
        const o = sdo('indicator', 1, '2021-01-01T00:00:00.000Z', { pattern: "[ipv4-addr:value = '10.0.0.1']" });
        const r = await store.add(newRecord(C, o));
        assert.equal(r.outcome, 'added');
        assert.match(r.record.dateAdded, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
        assert.ok(!Number.isNaN(Date.parse(r.record.statusAt)));
        assert.equal(r.record.status, 'pending');
        const got = await store.get(C, r.record.id, '2021-01-01T00:00:00.000Z');
        assert.deepEqual(got, r.record);
        assert.deepEqual(got?.object, o);
        // the same instant written differently finds the same version
        assert.deepEqual(await store.get(C, r.record.id, '2021-01-01T00:00:00Z'), r.record);
        assert.deepEqual(await store.get(C, r.record.id, '2021-01-01T01:00:00+01:00'), r.record);
        assert.equal(await store.get(C, r.record.id, '2021-01-02T00:00:00Z'), null);
        assert.equal(await store.get('other', r.record.id), null);
        assert.equal(await store.get(C, 'indicator--' + uuid(999)), null);
      });

      it('get without a version returns the latest version (whatever its status)', async function () {
        await store.add(newRecord(C, sdo('malware', 2, '2021-01-02T00:00:00.000Z')));
        await store.add(newRecord(C, sdo('malware', 2, '2021-01-03T00:00:00.000Z'), 'invalid'));
        await store.add(newRecord(C, sdo('malware', 2, '2021-01-01T00:00:00.000Z')));
        const got = await store.get(C, 'malware--' + uuid(2));
        assert.equal(got?.version, '2021-01-03T00:00:00.000Z');
        assert.equal(got?.status, 'invalid');
      });

      it('duplicate: same id, version and hash is not stored twice and keeps its date_added', async function () {
        const o = sdo('indicator', 3, '2021-01-01T00:00:00.000Z');
        const first = await store.add(newRecord(C, o));
        const again = await store.add(newRecord(C, o));
        assert.equal(again.outcome, 'duplicate');
        assert.deepEqual(again.record, first.record);
        // same instant, other spelling of the version
        const spelled = { ...newRecord(C, o), version: '2021-01-01T00:00:00Z' };
        const third = await store.add(spelled);
        assert.equal(third.outcome, 'duplicate');
        assert.equal(third.record.dateAdded, first.record.dateAdded);
        const all = await collect(store, { collection: C, versions: ['all'] }, 10);
        assert.equal(all.length, 1);
        assert.deepEqual(await store.counts(C), { pending: 1, finalized: 0, invalid: 0 });
      });

      it('conflict: same id and version with another hash is refused, the stored one is kept', async function () {
        const o = sdo('indicator', 4, '2021-01-01T00:00:00.000Z', { name: 'a' });
        const first = await store.add(newRecord(C, o));
        const evil = sdo('indicator', 4, '2021-01-01T00:00:00.000Z', { name: 'b' });
        const r = await store.add(newRecord(C, evil));
        assert.equal(r.outcome, 'conflict');
        assert.deepEqual(r.record, first.record);
        assert.deepEqual((await store.get(C, first.record.id))?.object, o);
        assert.deepEqual(await store.counts(C), { pending: 1, finalized: 0, invalid: 0 });
      });

      it('the same id in two collections is two independent objects', async function () {
        const o = sdo('indicator', 5, '2021-01-01T00:00:00.000Z');
        assert.equal((await store.add(newRecord('c1', o))).outcome, 'added');
        assert.equal((await store.add(newRecord('c2', o))).outcome, 'added');
        await store.setStatus('c1', o.id, '2021-01-01T00:00:00.000Z', 'invalid');
        assert.equal((await store.get('c2', o.id))?.status, 'pending');
        assert.equal(await store.delete('c1', o.id), 1);
        assert.ok(await store.get('c2', o.id));
        assert.deepEqual(await store.counts(), { pending: 1, finalized: 0, invalid: 0 });
      });

      it('unversioned objects get date_added as version; a re-add with the same hash is a duplicate', async function () {
        const sco = stixObject('ipv4-addr', 'ipv4-addr--' + uuid(6), { value: '10.0.0.1', spec_version: '2.1' });
        const a = await store.add(newRecord(C, sco));
        assert.equal(a.outcome, 'added');
        assert.equal(a.record.version, a.record.dateAdded);
        const b = await store.add(newRecord(C, sco));
        assert.equal(b.outcome, 'duplicate');
        assert.deepEqual(b.record, a.record);
        const sco2 = stixObject('ipv4-addr', 'ipv4-addr--' + uuid(6), { value: '10.0.0.2', spec_version: '2.1' });
        const c = await store.add(newRecord(C, sco2));
        assert.equal(c.outcome, 'added');
        assert.ok(c.record.version > a.record.version);
        const last = await collect(store, { collection: C }, 5);
        assert.deepEqual(labels(last), [label(c.record)]);
        assert.deepEqual(await store.get(C, sco.id, a.record.version), a.record);
      });

      it('keeps a given date_added (normalised to µs) and stays increasing after it', async function () {
        const o = sdo('indicator', 7, '2021-01-01T00:00:00.000Z');
        const future = new Date(Date.now() + 3_600_000).toISOString();
        const r = await store.add({ ...newRecord(C, o), dateAdded: future });
        assert.equal(r.record.dateAdded, future.slice(0, 23) + '000Z');
        const n = await store.add(newRecord(C, sdo('indicator', 8, '2021-01-01T00:00:00.000Z')));
        assert.ok(n.record.dateAdded > r.record.dateAdded, 'the clock moved past the given date_added');
      });

      it('addMany applies records in order, atomically, with one outcome each', async function () {
        const v1 = sdo('indicator', 9, '2021-01-01T00:00:00.000Z');
        const v2 = sdo('indicator', 9, '2021-01-02T00:00:00.000Z');
        const other = sdo('indicator', 9, '2021-01-01T00:00:00.000Z', { name: 'x' });
        const out = await store.addMany([newRecord(C, v1), newRecord(C, v2), newRecord(C, v1), newRecord(C, other)]);
        assert.deepEqual(
          out.map((o) => o.outcome),
          ['added', 'added', 'duplicate', 'conflict'],
        );
        assert.ok(out[0].record.dateAdded < out[1].record.dateAdded);
        assert.deepEqual(out[2].record, out[0].record);
        assert.deepEqual(await store.addMany([]), []);
        const all = await collect(store, { collection: C, versions: ['all'] }, 10);
        assert.deepEqual(labels(all), [label(out[0].record), label(out[1].record)]);
      });

      it('rejects malformed records with ERR_STORE_BAD_RECORD and writes nothing', async function () {
        const good = newRecord(C, sdo('indicator', 10, '2021-01-01T00:00:00.000Z'));
        await rejects(store.add({ ...good, version: 'yesterday' }), 'ERR_STORE_BAD_RECORD');
        await rejects(store.add({ ...good, type: 'malware' }), 'ERR_STORE_BAD_RECORD');
        await rejects(store.add({ ...good, id: '' }), 'ERR_STORE_BAD_RECORD');
        await rejects(store.add({ ...good, status: 'ok' as IntegrityStatus }), 'ERR_STORE_BAD_RECORD');
        await rejects(store.addMany([good, { ...good, dateAdded: 'now' }]), 'ERR_STORE_BAD_RECORD');
        assert.deepEqual(await collect(store, { collection: C, versions: ['all'], includeInvalid: true }, 10), []);
      });
    });

    describe('date_added', function () {
      it('is strictly increasing over 1,000 adds in a tight loop and 200 concurrent adds', async function () {
        this.timeout(120_000);
        const seen: string[] = [];
        for (let i = 0; i < 1000; i++) {
          const r = await store.add(newRecord(C, sdo('indicator', 100_000 + i, '2021-01-01T00:00:00.000Z')));
          seen.push(r.record.dateAdded);
        }
        for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1] < seen[i], `date_added not increasing at ${i}: ${seen[i - 1]} ${seen[i]}`);
        const conc = await Promise.all(
          Array.from({ length: 200 }, (_, i) => store.add(newRecord(C, sdo('indicator', 200_000 + i, '2021-01-01T00:00:00.000Z')))),
        );
        const dates = conc.map((r) => r.record.dateAdded);
        assert.equal(new Set(dates).size, 200, 'concurrent adds got distinct date_added values');
        assert.ok(dates.every((d) => d > seen[seen.length - 1]));
        const all = await collect(store, { collection: C }, 250);
        assert.equal(all.length, 1200);
      });

      it('concurrent adds of the same key: one is added, the others are duplicates or conflicts', async function () {
        const o = sdo('indicator', 11, '2021-01-01T00:00:00.000Z');
        const same = await Promise.all(Array.from({ length: 10 }, () => store.add(newRecord(C, o))));
        assert.equal(same.filter((r) => r.outcome === 'added').length, 1);
        assert.equal(same.filter((r) => r.outcome === 'duplicate').length, 9);
        const diff = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.add(newRecord(C, sdo('indicator', 12, '2021-01-01T00:00:00.000Z', { name: `n${i}` })))),
        );
        assert.equal(diff.filter((r) => r.outcome === 'added').length, 1);
        assert.equal(diff.filter((r) => r.outcome === 'conflict').length, 9);
        const winner = diff.find((r) => r.outcome === 'added')?.record;
        assert.ok(diff.every((r) => r.record.hash === winner?.hash));
        assert.equal((await collect(store, { collection: C, versions: ['all'] }, 10)).length, 2);
      });
    });

    describe('queries', function () {
      /**
       * A: indicator v1, v2 (invalid), v3            B: indicator, one version
       * Cm: malware 2.0@t1, 2.1@t2, 2.0@t3            D: malware v1 pending, v2 finalized, v3 invalid
       * E: report v2 added before v1                  F: identity, all versions invalid
       * G: ipv4-addr, unversioned                     + the same A id in another collection
       */
      let recs: StoredRecord[];
      const ids = {
        A: 'indicator--' + uuid(21),
        B: 'indicator--' + uuid(22),
        Cm: 'malware--' + uuid(23),
        D: 'malware--' + uuid(24),
        E: 'report--' + uuid(25),
        F: 'identity--' + uuid(26),
        G: 'ipv4-addr--' + uuid(27),
      };
      const v = (id: string, modified: string, extra: Record<string, unknown> = {}): Obj =>
        stixObject(id.slice(0, id.indexOf('--')), id, { spec_version: '2.1', created: '2020-01-01T00:00:00.000Z', modified, ...extra });

      async function load(): Promise<void> {
        const adds: Array<[Obj, IntegrityStatus]> = [
          [v(ids.A, ts(1)), 'pending'],
          [v(ids.B, ts(2)), 'finalized'],
          [v(ids.A, ts(3)), 'invalid'],
          [stixObject('malware', ids.Cm, { created: '2020-01-01T00:00:00.000Z', modified: ts(4), is_family: false }), 'pending'],
          [v(ids.Cm, ts(5), { is_family: false }), 'finalized'],
          [v(ids.D, ts(6)), 'pending'],
          [v(ids.E, ts(8)), 'pending'],
          [v(ids.E, ts(7)), 'finalized'],
          [v(ids.A, ts(9)), 'finalized'],
          [v(ids.D, ts(10)), 'finalized'],
          [stixObject('malware', ids.Cm, { created: '2020-01-01T00:00:00.000Z', modified: ts(11), is_family: true }), 'finalized'],
          [v(ids.D, ts(12)), 'invalid'],
          [v(ids.F, ts(13)), 'invalid'],
          [v(ids.F, ts(14)), 'invalid'],
          [stixObject('ipv4-addr', ids.G, { spec_version: '2.1', value: '10.1.1.1' }), 'pending'],
        ];
        recs = [];
        for (const [o, s] of adds) {
          const r = await store.add(newRecord(C, o, s));
          assert.equal(r.outcome, 'added');
          recs.push(r.record);
        }
        await store.add(newRecord('collection-b', v(ids.A, ts(20))));
      }
      const rec = (id: string, version: string): StoredRecord => {
        const r = recs.find((x) => x.id === id && x.version === version);
        assert.ok(r, `test data has ${id} ${version}`);
        return r;
      };
      const q = (extra: Partial<RecordQuery> = {}): Omit<RecordQuery, 'limit' | 'cursor'> => ({ collection: C, ...extra });
      const byDate = (rs: StoredRecord[]): string[] => labels([...rs].sort((a, b) => (a.dateAdded < b.dateAdded ? -1 : 1)));

      beforeEach(load);

      it('default (match[version]=last, latest spec_version, no invalid records)', async function () {
        const got = await collect(store, q(), 2);
        const g = recs[recs.length - 1];
        assert.deepEqual(labels(got), byDate([rec(ids.B, ts(2)), rec(ids.Cm, ts(5)), rec(ids.E, ts(8)), rec(ids.A, ts(9)), rec(ids.D, ts(10)), g]));
      });

      it('first, all, first+last, explicit versions (compared as instants)', async function () {
        const g = recs[recs.length - 1];
        assert.deepEqual(
          labels(await collect(store, q({ versions: ['first'] }), 3)),
          byDate([rec(ids.A, ts(1)), rec(ids.B, ts(2)), rec(ids.Cm, ts(5)), rec(ids.D, ts(6)), rec(ids.E, ts(7)), g]),
        );
        assert.deepEqual(
          labels(await collect(store, q({ versions: ['all'] }), 3)),
          byDate([rec(ids.A, ts(1)), rec(ids.B, ts(2)), rec(ids.Cm, ts(5)), rec(ids.D, ts(6)), rec(ids.E, ts(8)), rec(ids.E, ts(7)), rec(ids.A, ts(9)), rec(ids.D, ts(10)), g]),
        );
        assert.deepEqual(
          labels(await collect(store, q({ versions: ['first', 'last'], types: ['indicator'] }), 1)),
          byDate([rec(ids.A, ts(1)), rec(ids.B, ts(2)), rec(ids.A, ts(9))]),
        );
        const explicit = ts(9).replace('.000Z', 'Z'); // same instant, other spelling
        assert.deepEqual(labels(await collect(store, q({ versions: [explicit] }), 2)), [label(rec(ids.A, ts(9)))]);
        assert.deepEqual(
          labels(await collect(store, q({ versions: [ts(1).replace('Z', '+00:00'), 'last'], ids: [ids.A] }), 2)),
          byDate([rec(ids.A, ts(1)), rec(ids.A, ts(9))]),
        );
        // an explicit version that is invalid is not served unless asked for
        assert.deepEqual(await collect(store, q({ versions: [ts(3)] }), 2), []);
        assert.deepEqual(labels(await collect(store, q({ versions: [ts(3)], includeInvalid: true }), 2)), [label(rec(ids.A, ts(3)))]);
      });

      it('spec_version: absent = latest spec version of each object; given = those', async function () {
        assert.deepEqual(labels(await collect(store, q({ ids: [ids.Cm] }), 5)), [label(rec(ids.Cm, ts(5)))]);
        assert.deepEqual(labels(await collect(store, q({ ids: [ids.Cm], specVersions: ['2.0'] }), 5)), [label(rec(ids.Cm, ts(11)))]);
        assert.deepEqual(labels(await collect(store, q({ types: ['malware'], specVersions: ['2.0', '2.1'] }), 5)), byDate([rec(ids.Cm, ts(11)), rec(ids.D, ts(10))]));
        assert.deepEqual(
          labels(await collect(store, q({ types: ['malware'], specVersions: ['2.0'], versions: ['all'] }), 1)),
          byDate([rec(ids.Cm, ts(4)), rec(ids.Cm, ts(11))]),
        );
      });

      it('invalid records are excluded everywhere unless asked for; latest valid version is served', async function () {
        const all = await collect(store, q({ versions: ['all'] }), 4);
        assert.ok(all.every((r) => r.status !== 'invalid'));
        assert.deepEqual(labels(await collect(store, q({ ids: [ids.F] }), 4)), []);
        assert.deepEqual(labels(await collect(store, q({ ids: [ids.D] }), 4)), [label(rec(ids.D, ts(10)))]);
        assert.deepEqual(labels(await collect(store, q({ ids: [ids.D], includeInvalid: true }), 4)), [label(rec(ids.D, ts(12)))]);
        assert.deepEqual(
          labels(await collect(store, q({ statuses: ['invalid'], versions: ['all'] }), 2)),
          byDate([rec(ids.A, ts(3)), rec(ids.D, ts(12)), rec(ids.F, ts(13)), rec(ids.F, ts(14))]),
        );
        // statuses filter the selected versions: the latest valid versions that are pending
        assert.deepEqual(labels(await collect(store, q({ statuses: ['pending'] }), 2)), byDate([rec(ids.E, ts(8)), recs[recs.length - 1]]));
      });

      it('added_after is about date_added, strictly later, and ANDs with last', async function () {
        const e8 = rec(ids.E, ts(8));
        const after = await collect(store, q({ addedAfter: e8.dateAdded, versions: ['all'] }), 3);
        assert.ok(after.every((r) => r.dateAdded > e8.dateAdded));
        assert.ok(!labels(after).includes(label(e8)));
        // E@ts(7) was added after E@ts(8) but is not E's latest version: not served as "last"
        const lastAfter = await collect(store, q({ addedAfter: e8.dateAdded }), 3);
        assert.ok(!lastAfter.some((r) => r.id === ids.E));
        // any RFC 3339 spelling of the bound works
        const asOffset = new Date(Date.parse(e8.dateAdded)).toISOString().replace('Z', '+00:00');
        assert.ok((await collect(store, q({ addedAfter: asOffset, versions: ['all'] }), 3)).length >= after.length);
      });

      it('matches the reference model over a grid of filter combinations, paged', async function () {
        this.timeout(300_000);
        const idSets = [undefined, [ids.A], [ids.A, ids.Cm, ids.F, 'indicator--' + uuid(9999)]];
        const typeSets = [undefined, ['indicator'], ['malware', 'report', 'ipv4-addr']];
        const versionSets: Array<VersionMatch[] | undefined> = [undefined, ['first'], ['last'], ['all'], ['first', 'last'], [ts(9), 'first'], [ts(11), ts(5)]];
        const specSets = [undefined, ['2.0'], ['2.0', '2.1']];
        const statusSets: Array<Partial<RecordQuery>> = [{}, { includeInvalid: true }, { statuses: ['pending'] }, { statuses: ['invalid'] }, { statuses: ['finalized', 'pending'] }];
        const afterSets = [undefined, rec(ids.E, ts(7)).dateAdded];
        let n = 0;
        for (const idsF of idSets)
          for (const types of typeSets)
            for (const versions of versionSets)
              for (const specVersions of specSets)
                for (const st of statusSets)
                  for (const addedAfter of afterSets) {
                    const query = q({ ids: idsF, types, versions, specVersions, addedAfter, ...st });
                    const want = labels(referenceQuery(recs, query));
                    const got = labels(await collect(store, query, 1 + (n++ % 3)));
                    assert.deepEqual(got, want, `query ${JSON.stringify(query)}`);
                  }
        assert.equal(n, 1890);
      });

      it('rejects bad limits, timestamps and cursors with typed errors', async function () {
        await rejects(store.query({ collection: C, limit: 0 }), 'ERR_STORE_BAD_QUERY');
        await rejects(store.query({ collection: C, limit: 1.5 }), 'ERR_STORE_BAD_QUERY');
        await rejects(store.query({ collection: C, limit: 5, addedAfter: 'yesterday' }), 'ERR_STORE_BAD_QUERY');
        await rejects(store.query({ collection: C, limit: 5, versions: ['latest'] }), 'ERR_STORE_BAD_QUERY');
        await rejects(store.query({ collection: C, limit: 5, cursor: 'not-a-cursor' }), 'ERR_STORE_BAD_CURSOR');
        await rejects(store.query({ collection: C, limit: 5, cursor: 'c1.' + Buffer.from('[1,2]').toString('base64url') }), 'ERR_STORE_BAD_CURSOR');
      });
    });

    describe('paging', function () {
      for (const limit of [1, 7, 100]) {
        it(`limit ${limit} over 1,000 records with concurrent adds between pages: no loss, no duplicates`, async function () {
          this.timeout(300_000);
          const base = 300_000 + limit * 10_000;
          const batch = Array.from({ length: 1000 }, (_, i) =>
            newRecord(C, sdo(i % 3 === 0 ? 'malware' : 'indicator', base + i, '2021-01-01T00:00:00.000Z', i % 3 === 0 ? { is_family: false } : {})),
          );
          for (let i = 0; i < 1000; i += 250) await store.addMany(batch.slice(i, i + 250));
          const seen = new Map<string, StoredRecord>();
          const order: StoredRecord[] = [];
          let cursor: string | undefined;
          let pages = 0;
          const added: StoredRecord[] = [];
          for (;;) {
            const extra = pages < 60 && pages % 3 === 0;
            const [page, add] = await Promise.all([
              store.query({ collection: C, limit, cursor }),
              extra ? store.add(newRecord(C, sdo('indicator', base + 5000 + pages, '2021-01-01T00:00:00.000Z'))) : Promise.resolve(undefined),
            ]);
            // also a new version of an object that may already have been served
            if (extra && pages % 2 === 0) await store.add(newRecord(C, sdo('indicator', base + 1 + pages, '2022-01-01T00:00:00.000Z')));
            if (add) added.push(add.record);
            pages++;
            assert.ok(page.items.length <= limit);
            if (page.more) assert.equal(page.items.length, limit);
            for (const r of page.items) {
              assert.ok(!seen.has(label(r)), `duplicate ${label(r)} on page ${pages}`);
              seen.set(label(r), r);
              order.push(r);
            }
            if (!page.more) break;
            cursor = page.cursor;
          }
          for (let i = 1; i < order.length; i++) assert.ok(order[i - 1].dateAdded < order[i].dateAdded);
          // every original object is served (its first version, or its newer version added later)
          const servedIds = new Set(order.map((r) => r.id));
          for (const b of batch) assert.ok(servedIds.has(b.id), `lost ${b.id}`);
          // every record added while paging is served (all of them were added after earlier pages)
          for (const a of added) assert.ok(seen.has(label(a)), `lost concurrently added ${label(a)}`);
          assert.ok(pages >= Math.ceil(1000 / limit));
        });
      }

      it('an empty page has no cursor and more=false; the last page has more=false', async function () {
        const empty = await store.query({ collection: C, limit: 5 });
        assert.deepEqual(empty, { items: [], more: false });
        for (let i = 0; i < 5; i++) await store.add(newRecord(C, sdo('indicator', 400 + i, '2021-01-01T00:00:00.000Z')));
        const p1 = await store.query({ collection: C, limit: 5 });
        assert.equal(p1.items.length, 5);
        assert.equal(p1.more, false);
        const p2 = await store.query({ collection: C, limit: 5, cursor: p1.cursor });
        assert.deepEqual(p2, { items: [], more: false });
      });
    });

    describe('statuses and counts', function () {
      it('setStatus changes a version, its reason and the counts; unknown versions give false', async function () {
        const rs: StoredRecord[] = [];
        for (let i = 0; i < 5; i++) rs.push((await store.add(newRecord(C, sdo('indicator', 500 + i, '2021-01-01T00:00:00.000Z')))).record);
        await store.add(newRecord('other', sdo('indicator', 600, '2021-01-01T00:00:00.000Z'), 'finalized'));
        assert.deepEqual(await store.counts(C), { pending: 5, finalized: 0, invalid: 0 });
        assert.equal(await store.setStatus(C, rs[0].id, rs[0].version, 'finalized'), true);
        assert.equal(await store.setStatus(C, rs[1].id, '2021-01-01T00:00:00Z', 'finalized'), true);
        assert.equal(await store.setStatus(C, rs[2].id, rs[2].version, 'invalid', 'hash mismatch: ledger has 0xab'), true);
        assert.equal(await store.setStatus(C, rs[3].id, '2020-01-01T00:00:00Z', 'finalized'), false);
        assert.equal(await store.setStatus(C, 'indicator--' + uuid(9998), rs[3].version, 'finalized'), false);
        assert.equal(await store.setStatus('nope', rs[3].id, rs[3].version, 'finalized'), false);
        assert.deepEqual(await store.counts(C), { pending: 2, finalized: 2, invalid: 1 });
        assert.deepEqual(await store.counts(), { pending: 2, finalized: 3, invalid: 1 });
        assert.deepEqual(await store.counts('empty'), { pending: 0, finalized: 0, invalid: 0 });
        const inv = await store.get(C, rs[2].id);
        assert.equal(inv?.status, 'invalid');
        assert.equal(inv?.statusReason, 'hash mismatch: ledger has 0xab');
        assert.ok(inv && inv.statusAt >= rs[2].statusAt);
        // back to pending clears the reason; setting the same status again is harmless
        assert.equal(await store.setStatus(C, rs[2].id, rs[2].version, 'pending'), true);
        assert.equal((await store.get(C, rs[2].id))?.statusReason, undefined);
        assert.equal(await store.setStatus(C, rs[0].id, rs[0].version, 'finalized'), true);
        assert.deepEqual(await store.counts(C), { pending: 3, finalized: 2, invalid: 0 });
        const pend = await collect(store, { collection: C, statuses: ['pending'], versions: ['all'] }, 2);
        assert.deepEqual(labels(pend), labels([rs[2], rs[3], rs[4]]));
      });

      it('an invalid latest version makes the previous valid one the "last"; valid again restores it', async function () {
        const a = (await store.add(newRecord(C, sdo('indicator', 700, '2021-01-01T00:00:00.000Z')))).record;
        const b = (await store.add(newRecord(C, sdo('indicator', 700, '2021-01-02T00:00:00.000Z')))).record;
        assert.deepEqual(labels(await collect(store, { collection: C }, 5)), [label(b)]);
        await store.setStatus(C, b.id, b.version, 'invalid');
        assert.deepEqual(labels(await collect(store, { collection: C }, 5)), [label(a)]);
        assert.deepEqual(labels(await collect(store, { collection: C, versions: ['first'] }, 5)), [label(a)]);
        await store.setStatus(C, a.id, a.version, 'invalid');
        assert.deepEqual(await collect(store, { collection: C }, 5), []);
        await store.setStatus(C, b.id, b.version, 'finalized');
        assert.deepEqual(labels(await collect(store, { collection: C }, 5)), [label(b)]);
        assert.deepEqual(labels(await collect(store, { collection: C, versions: ['first'] }, 5)), [label(b)]);
      });
    });

    describe('recovery support: status ids, compare-and-set, meta values', function () {
      it('statusIds given at add are kept with the record (get, query, restart); malformed ones are refused', async function () {
        const o = sdo('indicator', 1200, '2021-01-01T00:00:00.000Z');
        const added = await store.add({ ...newRecord(C, o), statusIds: ['status-1', 'status-1', 'status-2'] });
        assert.deepEqual(added.record.statusIds, ['status-1', 'status-2']);
        assert.deepEqual((await store.get(C, added.record.id))?.statusIds, ['status-1', 'status-2']);
        const plain = (await store.add(newRecord(C, sdo('indicator', 1201, '2021-01-01T00:00:00.000Z')))).record;
        assert.equal(plain.statusIds, undefined);
        const page = await collect(store, { collection: C, statuses: ['pending'], versions: ['all'] }, 5);
        assert.deepEqual(page.map((r) => r.statusIds), [['status-1', 'status-2'], undefined]);
        await store.setStatus(C, added.record.id, added.record.version, 'finalized');
        store = await h.reopen();
        const after = await store.get(C, added.record.id);
        assert.deepEqual([after?.status, after?.statusIds], ['finalized', ['status-1', 'status-2']]);
        await rejects(store.add({ ...newRecord(C, sdo('indicator', 1202, '2021-01-01T00:00:00.000Z')), statusIds: [''] }), 'ERR_STORE_BAD_RECORD');
      });

      it('setStatus with expect is a compare-and-set: written only from the expected status', async function () {
        const r = (await store.add(newRecord(C, sdo('indicator', 1210, '2021-01-01T00:00:00.000Z')))).record;
        assert.equal(await store.setStatus(C, r.id, r.version, 'finalized', 'ok', { expect: 'invalid' }), false);
        assert.equal((await store.get(C, r.id))?.status, 'pending', 'nothing written');
        assert.equal(await store.setStatus(C, r.id, r.version, 'invalid', 'mismatch', { expect: ['pending', 'finalized'] }), true);
        assert.equal(await store.setStatus(C, r.id, r.version, 'finalized', 'late', { expect: 'pending' }), false);
        const now = await store.get(C, r.id);
        assert.deepEqual([now?.status, now?.statusReason], ['invalid', 'mismatch']);
        assert.deepEqual(await store.counts(C), { pending: 0, finalized: 0, invalid: 1 });
        assert.equal(await store.setStatus(C, 'indicator--' + uuid(9997), r.version, 'finalized', undefined, { expect: 'pending' }), false);
      });

      it('many concurrent conflicting compare-and-sets on one record: exactly one wins, counts stay exact', async function () {
        this.timeout(60_000);
        const rs: StoredRecord[] = [];
        for (let i = 0; i < 10; i++) rs.push((await store.add(newRecord(C, sdo('indicator', 1220 + i, '2021-01-01T00:00:00.000Z')))).record);
        const results = await Promise.all(
          rs.flatMap((r) =>
            Array.from({ length: 20 }, (_, k) =>
              store.setStatus(C, r.id, r.version, k % 2 ? 'finalized' : 'invalid', `writer ${k}`, { expect: 'pending' }).then((ok) => ({ r, k, ok })),
            ),
          ),
        );
        for (const r of rs) {
          const wins = results.filter((x) => x.r === r && x.ok);
          assert.equal(wins.length, 1, `one winner for ${r.id}`);
          const now = await store.get(C, r.id);
          assert.equal(now?.status, wins[0].k % 2 ? 'finalized' : 'invalid');
          assert.equal(now?.statusReason, `writer ${wins[0].k}`);
        }
        const c = await store.counts(C);
        assert.equal(c.pending, 0);
        assert.equal(c.finalized + c.invalid, 10);
      });

      it('a burst of concurrent status changes (many records, several changes each) ends as applied in call order, indexes and counts exact', async function () {
        this.timeout(60_000);
        const added = await store.addMany(Array.from({ length: 1500 }, (_, i) => newRecord(C, sdo('indicator', 3000 + i, '2021-01-01T00:00:00.000Z'))));
        const rs = added.map((a) => a.record);
        // per record, in call order: finalized; then (every 3rd) invalid; then (every 5th) finalized unless invalid
        const calls: Array<Promise<boolean>> = [];
        for (const r of rs) calls.push(store.setStatus(C, r.id, r.version, 'finalized', 'first', { expect: 'pending' }));
        for (const [i, r] of rs.entries()) if (i % 3 === 0) calls.push(store.setStatus(C, r.id, r.version, 'invalid', 'second', { expect: ['pending', 'finalized'] }));
        for (const [i, r] of rs.entries()) if (i % 5 === 0) calls.push(store.setStatus(C, r.id, r.version, 'finalized', 'third', { expect: 'pending' }));
        const out = await Promise.all(calls);
        const n3 = rs.filter((_, i) => i % 3 === 0).length;
        assert.equal(out.filter(Boolean).length, rs.length + n3, 'every first and second change applies, no third (not pending any more)');
        const c = await store.counts(C);
        assert.deepEqual(c, { pending: 0, finalized: rs.length - n3, invalid: n3 });
        for (const [i, r] of rs.entries()) {
          if (i % 50 !== 0) continue;
          const now = await store.get(C, r.id, r.version);
          assert.equal(now?.status, i % 3 === 0 ? 'invalid' : 'finalized');
          assert.equal(now?.statusReason, i % 3 === 0 ? 'second' : 'first');
        }
        const served = await collect(store, { collection: C }, 500);
        assert.equal(served.filter((r) => r.id.startsWith('indicator--') && rs.some((x) => x.id === r.id)).length, rs.length - n3, 'invalid ones are not served');
      });

      it('getOrCreateMeta creates a value once, atomically, and keeps it across restarts', async function () {
        const got = await Promise.all(Array.from({ length: 20 }, (_, i) => store.getOrCreateMeta('secret', `candidate-${i}`)));
        assert.equal(new Set(got).size, 1, 'every caller gets the same value');
        assert.match(got[0], /^candidate-\d+$/);
        assert.equal(await store.getOrCreateMeta('other', 'x'), 'x');
        store = await h.reopen();
        assert.equal(await store.getOrCreateMeta('secret', 'late'), got[0]);
        assert.equal(await store.getOrCreateMeta('other', 'y'), 'x');
        await rejects(store.getOrCreateMeta('', 'v'), 'ERR_STORE_BAD_RECORD');
      });
    });

    describe('delete', function () {
      async function threeVersions(n: number): Promise<StoredRecord[]> {
        const out: StoredRecord[] = [];
        for (const d of ['2021-01-01T00:00:00.000Z', '2021-01-02T00:00:00.000Z', '2021-01-03T00:00:00.000Z']) {
          out.push((await store.add(newRecord(C, sdo('indicator', n, d), 'finalized'))).record);
        }
        return out;
      }

      it('delete all versions: gone from get, queries and counts', async function () {
        const vs = await threeVersions(800);
        const keep = (await store.add(newRecord(C, sdo('indicator', 801, '2021-01-01T00:00:00.000Z')))).record;
        assert.equal(await store.delete(C, vs[0].id), 3);
        for (const r of vs) assert.equal(await store.get(C, r.id, r.version), null);
        assert.equal(await store.get(C, vs[0].id), null);
        for (const versions of [['all'], ['first'], ['last']]) {
          assert.deepEqual(labels(await collect(store, { collection: C, versions, includeInvalid: true }, 2)), [label(keep)]);
        }
        assert.deepEqual(await collect(store, { collection: C, ids: [vs[0].id], versions: ['all'] }, 2), []);
        assert.deepEqual(await store.counts(C), { pending: 1, finalized: 0, invalid: 0 });
        assert.equal(await store.delete(C, vs[0].id), 0);
        assert.equal(await store.delete('nope', keep.id), 0);
        // the id can be used again afterwards
        assert.equal((await store.add(newRecord(C, sdo('indicator', 800, '2021-01-02T00:00:00.000Z', { name: 'new' })))).outcome, 'added');
      });

      it('delete by version (last, first, explicit) and by spec_version', async function () {
        const vs = await threeVersions(810);
        assert.equal(await store.delete(C, vs[0].id, { versions: ['last'] }), 1);
        assert.equal(await store.get(C, vs[2].id, vs[2].version), null);
        assert.deepEqual(labels(await collect(store, { collection: C }, 2)), [label(vs[1])]);
        assert.equal(await store.delete(C, vs[0].id, { versions: ['first'] }), 1);
        assert.deepEqual(labels(await collect(store, { collection: C, versions: ['all'] }, 2)), [label(vs[1])]);
        assert.deepEqual(labels(await collect(store, { collection: C, versions: ['first'] }, 2)), [label(vs[1])]);
        assert.equal(await store.delete(C, vs[0].id, { versions: ['2021-01-05T00:00:00Z'] }), 0);
        assert.equal(await store.delete(C, vs[0].id, { versions: ['2021-01-02T00:00:00Z'] }), 1);
        assert.equal(await store.get(C, vs[0].id), null);
        const ws = await threeVersions(811);
        assert.equal(await store.delete(C, ws[0].id, { specVersions: ['2.0'] }), 0);
        assert.equal(await store.delete(C, ws[0].id, { specVersions: ['2.1'], versions: ['first', 'last'] }), 2);
        assert.deepEqual(labels(await collect(store, { collection: C, versions: ['all'] }, 2)), [label(ws[1])]);
        assert.deepEqual(await store.counts(C), { pending: 0, finalized: 1, invalid: 0 });
        // invalid versions are erased too
        await store.setStatus(C, ws[1].id, ws[1].version, 'invalid');
        assert.equal(await store.delete(C, ws[1].id), 1);
        assert.deepEqual(await store.counts(C), { pending: 0, finalized: 0, invalid: 0 });
      });
    });

    describe('TAXII status resources', function () {
      it('put, update and get; unknown ids give null', async function () {
        const s = statusResource('status-1');
        await store.putStatus(s);
        assert.deepEqual(await store.getStatus('status-1'), s);
        const done = statusResource('status-1', { status: 'complete', success_count: 2, pending_count: 0, pendings: undefined });
        delete done.pendings;
        await store.putStatus(done);
        assert.deepEqual(await store.getStatus('status-1'), done);
        assert.equal(await store.getStatus('status-2'), null);
      });

      it('are kept 24 h by default and expire after their retention', async function () {
        let now = Date.now();
        const h2 = await factory.create({ now: () => now });
        try {
          await h2.store.putStatus(statusResource('s-day'));
          now += 23 * 3600_000;
          assert.ok(await h2.store.getStatus('s-day'));
          now += 3600_000 + 1;
          assert.equal(await h2.store.getStatus('s-day'), null);
        } finally {
          await h2.destroy();
        }
        let t = Date.now();
        const h3 = await factory.create({ now: () => t, statusRetentionMs: 1000 });
        try {
          await h3.store.putStatus(statusResource('s-a'));
          t += 600;
          await h3.store.putStatus(statusResource('s-b'));
          t += 600; // s-a expired, s-b not
          assert.equal(await h3.store.getStatus('s-a'), null);
          assert.ok(await h3.store.getStatus('s-b'));
          await h3.store.putStatus(statusResource('s-b', { status: 'complete' })); // renews s-b
          t += 900;
          assert.equal((await h3.store.getStatus('s-b'))?.status, 'complete');
          t += 200;
          assert.equal(await h3.store.getStatus('s-b'), null);
        } finally {
          await h3.destroy();
        }
      });
    });

    describe('TAXII status resources: settling entries (settleStatus)', function () {
      const V = '2024-01-01T00:00:00.000Z';
      const ind = (n: number): string => 'indicator--' + uuid(n);
      const manyPending = (id: string, n: number, extra: Partial<StatusResource> = {}): StatusResource => ({
        id,
        status: 'pending',
        request_timestamp: '2024-01-01T00:00:00.000000Z',
        total_count: n,
        success_count: 0,
        failure_count: 0,
        pending_count: n,
        pendings: Array.from({ length: n }, (_, i) => ({ id: ind(100 + i), version: V })),
        ...extra,
      });

      it('moves pending entries to successes / failures, adjusts counts, completes; false for unknown or settled ones', async function () {
        await store.putStatus(manyPending('st-1', 3, { owner: 'basic:alice' }));
        assert.deepEqual(
          await store.settleStatus('st-1', [
            { id: ind(101), version: '2024-01-01T00:00:00Z', outcome: 'success', message: 'integrity verified' }, // same instant, other text
            { id: ind(999), version: V, outcome: 'success', message: 'x' }, // not listed
            { id: ind(100), version: '2023-01-01T00:00:00.000Z', outcome: 'success', message: 'x' }, // other version
          ]),
          [true, false, false],
        );
        let st = await store.getStatus('st-1');
        assert.equal(st?.status, 'pending');
        assert.equal(st?.success_count, 1);
        assert.equal(st?.pending_count, 2);
        assert.equal(st?.owner, 'basic:alice');
        assert.deepEqual(st?.successes, [{ id: ind(101), version: V, message: 'integrity verified' }]);
        assert.deepEqual(st?.pendings?.map((d) => d.id), [ind(100), ind(102)]);
        // settled once only
        assert.deepEqual(await store.settleStatus('st-1', [{ id: ind(101), version: V, outcome: 'failure', message: 'late' }]), [false]);
        assert.deepEqual(
          await store.settleStatus('st-1', [
            { id: ind(102), version: V, outcome: 'failure', message: 'hash mismatch' },
            { id: ind(100), version: V, outcome: 'success', message: 'ok' },
          ]),
          [true, true],
        );
        st = await store.getStatus('st-1');
        assert.deepEqual(st, {
          id: 'st-1',
          status: 'complete',
          request_timestamp: '2024-01-01T00:00:00.000000Z',
          total_count: 3,
          success_count: 2,
          successes: [
            { id: ind(100), version: V, message: 'ok' },
            { id: ind(101), version: V, message: 'integrity verified' },
          ],
          failure_count: 1,
          failures: [{ id: ind(102), version: V, message: 'hash mismatch' }],
          pending_count: 0,
          owner: 'basic:alice',
        });
        assert.deepEqual(await store.settleStatus('no-such-status', [{ id: ind(100), version: V, outcome: 'success', message: 'x' }]), [false]);
        assert.deepEqual(await store.settleStatus('st-1', []), []);
      });

      it('keeps what the lists do not show: listed successes/failures as put, and unlisted failure counts', async function () {
        // 5 failures counted, 1 listed (the others summarised by the server's bound)
        const s = manyPending('st-2', 2, {
          total_count: 8,
          success_count: 1,
          successes: [{ id: ind(1), version: V, message: 'already present' }],
          failure_count: 5,
          failures: [{ id: ind(2), version: V, message: '4 more failures not listed' }],
        });
        await store.putStatus(s);
        assert.deepEqual(await store.getStatus('st-2'), s, 'unchanged until settled');
        await store.settleStatus('st-2', [{ id: ind(100), version: V, outcome: 'failure', message: 'not anchored' }]);
        const st = await store.getStatus('st-2');
        assert.equal(st?.failure_count, 6);
        assert.equal(st?.success_count, 1);
        assert.equal(st?.pending_count, 1);
        assert.deepEqual(st?.failures?.map((d) => d.message), ['4 more failures not listed', 'not anchored']);
        assert.deepEqual(st?.successes, s.successes);
      });

      it('a resource put again replaces its entries; settled entries survive a restart', async function () {
        await store.putStatus(manyPending('st-3', 2));
        await store.settleStatus('st-3', [{ id: ind(100), version: V, outcome: 'success', message: 'ok' }]);
        await store.putStatus(manyPending('st-3', 1, { pendings: [{ id: ind(500), version: V }] }));
        let st = await store.getStatus('st-3');
        assert.deepEqual(st?.pendings, [{ id: ind(500), version: V }]);
        assert.equal(st?.successes, undefined);
        assert.deepEqual(await store.settleStatus('st-3', [{ id: ind(101), version: V, outcome: 'success', message: 'ok' }]), [false], 'the old entry is gone');
        assert.deepEqual(await store.settleStatus('st-3', [{ id: ind(500), version: V, outcome: 'success', message: 'ok' }]), [true]);
        const before = await store.getStatus('st-3');
        store = await h.reopen();
        st = await store.getStatus('st-3');
        assert.deepEqual(st, before);
        assert.equal(st?.status, 'complete');
      });

      it('settling renews the retention; an expired resource settles nothing', async function () {
        let t = Date.now();
        const h2 = await factory.create({ now: () => t, statusRetentionMs: 1000 });
        try {
          await h2.store.putStatus(manyPending('st-r', 2));
          t += 800;
          assert.deepEqual(await h2.store.settleStatus('st-r', [{ id: ind(100), version: V, outcome: 'success', message: 'ok' }]), [true]);
          t += 800; // 1,600 ms after the put, 800 after the settle
          assert.equal((await h2.store.getStatus('st-r'))?.success_count, 1);
          t += 300;
          assert.equal(await h2.store.getStatus('st-r'), null);
          assert.deepEqual(await h2.store.settleStatus('st-r', [{ id: ind(101), version: V, outcome: 'success', message: 'ok' }]), [false]);
        } finally {
          await h2.destroy();
        }
      });

      it('concurrent settles of one entry move it once; 3,000 entries settle one call each', async function () {
        this.timeout(60_000);
        const n = 3000;
        await store.putStatus(manyPending('st-big', n));
        const races = await Promise.all(
          Array.from({ length: 20 }, (_, k) => store.settleStatus('st-big', [{ id: ind(100), version: V, outcome: k % 2 ? 'success' : 'failure', message: `writer ${k}` }])),
        );
        assert.equal(races.filter((r) => r[0]).length, 1, 'exactly one writer moved it');
        const started = Date.now();
        for (let i = 1; i < n; i++) {
          const [moved] = await store.settleStatus('st-big', [{ id: ind(100 + i), version: V, outcome: i % 10 ? 'success' : 'failure', message: 'm' }]);
          assert.equal(moved, true);
        }
        const ms = Date.now() - started;
        const st = await store.getStatus('st-big');
        assert.equal(st?.status, 'complete');
        assert.equal((st?.success_count ?? 0) + (st?.failure_count ?? 0), n);
        assert.equal((st?.successes?.length ?? 0) + (st?.failures?.length ?? 0), n);
        assert.equal(st?.pending_count, 0);
        console.log(`      (${factory.name}: ${n - 1} single-entry settles of one ${n}-entry status resource in ${ms} ms)`);
      });

      it('rejects malformed moves and resources with ERR_STORE_BAD_RECORD', async function () {
        await rejects(store.settleStatus('', [{ id: ind(1), version: V, outcome: 'success', message: 'x' }]), 'ERR_STORE_BAD_RECORD');
        await rejects(store.settleStatus('s', [{ id: ind(1), version: V, outcome: 'maybe' as 'success', message: 'x' }]), 'ERR_STORE_BAD_RECORD');
        await rejects(store.putStatus({ ...manyPending('s', 1), pendings: [{ id: 5 as unknown as string, version: V }] }), 'ERR_STORE_BAD_RECORD');
      });
    });

    describe('lifecycle', function () {
      it('open and close are idempotent; use after close is a typed error', async function () {
        await store.open();
        await store.open();
        await store.add(newRecord(C, sdo('indicator', 900, '2021-01-01T00:00:00.000Z')));
        await store.close();
        await store.close();
        await rejects(store.query({ collection: C, limit: 1 }), 'ERR_STORE_NOT_OPEN');
        await rejects(store.add(newRecord(C, sdo('indicator', 901, '2021-01-01T00:00:00.000Z'))), 'ERR_STORE_NOT_OPEN');
        await store.open();
        assert.equal((await collect(store, { collection: C }, 5)).length, 1);
      });

      it('restart: contents, statuses, status resources survive; date_added keeps increasing', async function () {
        this.timeout(60_000);
        const rs: StoredRecord[] = [];
        for (let i = 0; i < 30; i++) {
          const o = sdo(i % 2 ? 'indicator' : 'malware', 950 + (i % 10), `2021-01-0${1 + Math.floor(i / 10)}T00:00:00.000Z`);
          rs.push((await store.add(newRecord(C, o))).record);
        }
        await store.setStatus(C, rs[3].id, rs[3].version, 'invalid', 'mismatch');
        await store.setStatus(C, rs[4].id, rs[4].version, 'finalized');
        await store.putStatus(statusResource('restart-status'));
        const snapshot = async (s: Store): Promise<unknown> => ({
          all: await collect(s, { collection: C, versions: ['all'], includeInvalid: true }, 7),
          last: await collect(s, { collection: C }, 7),
          first: await collect(s, { collection: C, versions: ['first'] }, 7),
          counts: await s.counts(C),
          status: await s.getStatus('restart-status'),
          got: await s.get(C, rs[3].id, rs[3].version),
        });
        const before = await snapshot(store);
        // the clock after the restart is far in the past: date_added must not go backwards
        store = await h.reopen({ now: () => Date.parse('2001-01-01T00:00:00Z') });
        assert.deepEqual(await snapshot(store), before);
        const n = await store.add(newRecord(C, sdo('indicator', 999, '2021-01-01T00:00:00.000Z')));
        const maxBefore = rs.map((r) => r.dateAdded).sort().pop() ?? '';
        assert.ok(n.record.dateAdded > maxBefore, `${n.record.dateAdded} > ${maxBefore}`);
        const m = await store.add(newRecord(C, sdo('indicator', 998, '2021-01-01T00:00:00.000Z')));
        assert.ok(m.record.dateAdded > n.record.dateAdded);
      });
    });
  });
}
