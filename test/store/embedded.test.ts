/**
 * EmbeddedStore (LevelDB): the shared conformance suite plus what only an embedded engine has —
 * directory sharing and locking, physical erasure, crash atomicity, an index consistency check
 * after a random workload, and the scale check (a page of `last` out of 100,000 records is a range
 * scan: counted reads, not timings; timings are printed for the record, never asserted).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { EmbeddedStore, type EmbeddedStoreOptions } from '../../lib/store/embedded';
import { StoreError } from '../../lib/store/errors';
import type { IntegrityStatus, RecordQuery, StoredRecord } from '../../lib/store/store';
import { collect, newRecord, referenceQuery, sdo, storeConformance, type StoreHandle } from './conformance';

const tmpDir = (): Promise<string> => mkdtemp(path.join(os.tmpdir(), 'sets-store-'));

async function embeddedHandle(opts: Omit<EmbeddedStoreOptions, 'dir'> = {}): Promise<StoreHandle & { dir: string; store: EmbeddedStore }> {
  const dir = await tmpDir();
  const handle = {
    dir,
    store: new EmbeddedStore({ dir, ...opts }),
    async reopen(o: Omit<EmbeddedStoreOptions, 'dir'> = {}): Promise<EmbeddedStore> {
      await handle.store.close();
      handle.store = new EmbeddedStore({ dir, ...o });
      await handle.store.open();
      return handle.store;
    },
    async destroy(): Promise<void> {
      await handle.store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await handle.store.open();
  return handle;
}

storeConformance({ name: 'embedded (LevelDB)', create: (opts) => embeddedHandle(opts) });

const EMBEDDED_JS = path.join(__dirname, '../../lib/store/embedded.js');

function runChild(script: string, onLine?: (line: string, kill: () => void) => void): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (b: Buffer) => {
      const text = b.toString();
      out += text;
      for (const line of text.split('\n')) if (line && onLine) onLine(line, () => child.kill('SIGKILL'));
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (err && signal === null && code !== 0) reject(new Error(`child failed (${code}): ${err}`));
      else resolve({ code, signal, out });
    });
  });
}

describe('EmbeddedStore (LevelDB specifics)', function () {
  this.timeout(120_000);
  const C = 'col';

  it('two instances on one directory share one handle; another process gets ERR_STORE_LOCKED', async function () {
    const h = await embeddedHandle();
    try {
      const twin = new EmbeddedStore({ dir: h.dir });
      await Promise.all([twin.open(), twin.open()]);
      const a = await h.store.add(newRecord(C, sdo('indicator', 1, '2021-01-01T00:00:00.000Z')));
      const b = await twin.add(newRecord(C, sdo('indicator', 2, '2021-01-01T00:00:00.000Z')));
      assert.ok(a.record.dateAdded < b.record.dateAdded, 'one clock per directory');
      assert.equal((await twin.add(newRecord(C, sdo('indicator', 1, '2021-01-01T00:00:00.000Z')))).outcome, 'duplicate');
      await twin.close();
      assert.equal((await collect(h.store, { collection: C }, 10)).length, 2, 'closing one user keeps the handle open');
      const script = `
        const { EmbeddedStore } = require(${JSON.stringify(EMBEDDED_JS)});
        new EmbeddedStore({ dir: ${JSON.stringify(h.dir)} }).open()
          .then(() => console.log('opened'), (e) => console.log(e.code + ' ' + e.message));`;
      const { out } = await runChild(script);
      assert.match(out, /^ERR_STORE_LOCKED .*in use by another process/);
    } finally {
      await h.destroy();
    }
  });

  it('delete erases the data from disk (compaction), not only from the indexes', async function () {
    const h = await embeddedHandle();
    try {
      const marker = randomBytes(32).toString('hex');
      for (let i = 0; i < 200; i++) await h.store.add(newRecord(C, sdo('indicator', 100 + i, '2021-01-01T00:00:00.000Z', { name: `keep ${i}` })));
      const secret = sdo('indicator', 99, '2021-01-01T00:00:00.000Z', { description: `secret ${marker}` });
      const secret2 = sdo('indicator', 99, '2021-01-02T00:00:00.000Z', { description: `secret ${marker}` });
      await h.store.add(newRecord(C, secret));
      await h.store.add(newRecord(C, secret2));
      const onDisk = async (): Promise<string[]> => {
        const hits: string[] = [];
        for (const f of await readdir(h.dir)) if ((await readFile(path.join(h.dir, f))).includes(marker)) hits.push(f);
        return hits;
      };
      assert.ok((await onDisk()).length > 0, 'the marker is on disk before the delete (the check can see it)');
      assert.equal(await h.store.delete(C, secret.id), 2);
      assert.deepEqual(await onDisk(), [], 'no file holds the erased object any more');
      assert.deepEqual((await h.store.verifyIntegrity()).problems, []);
      assert.equal((await collect(h.store, { collection: C }, 50)).length, 200);
      // no key of any kind (record, meta, index) mentions the object any more
      await h.store.close();
      const raw = new ClassicLevel<string, string>(h.dir);
      try {
        let stray = 0;
        for await (const k of raw.keys()) if (k.includes(secret.id)) stray++;
        assert.equal(stray, 0);
      } finally {
        await raw.close();
      }
      await h.store.open();
    } finally {
      await h.destroy();
    }
  });

  it('a process killed mid-write leaves no index without its record (atomic batches)', async function () {
    const h = await embeddedHandle();
    await h.store.close();
    try {
      const script = `
        const { EmbeddedStore } = require(${JSON.stringify(EMBEDDED_JS)});
        const rec = (n, v) => {
          const id = 'indicator--00000000-0000-4000-8000-' + String(n).padStart(12, '0');
          const object = { type: 'indicator', id, spec_version: '2.1', created: '2020-01-01T00:00:00.000Z', modified: v, name: 'n' + n };
          return { collection: 'col', id, type: 'indicator', version: v, specVersion: '2.1', mediaType: 'application/stix+json;version=2.1',
                   object, hash: 'h' + n + v, key: 'k', status: 'pending' };
        };
        (async () => {
          const s = new EmbeddedStore({ dir: ${JSON.stringify(h.dir)} });
          await s.open();
          for (let n = 0; ; n += 50) {
            const batch = [];
            for (let i = n; i < n + 50; i++) batch.push(rec(i % 3000, '2021-01-0' + (1 + Math.floor(i / 3000) % 9) + 'T00:00:00.000Z'));
            await s.addMany(batch);
            await s.setStatus('col', batch[0].id, batch[0].version, n % 100 ? 'finalized' : 'invalid');
            if (n % 700 === 0) await s.delete('col', batch[1].id, { versions: ['first'] });
            console.log('done ' + (n + 50));
          }
        })();`;
      let killedAt = 0;
      const res = await runChild(script, (line, kill) => {
        const m = /^done (\d+)/.exec(line);
        if (m && Number(m[1]) >= 4000 && !killedAt) {
          killedAt = Number(m[1]);
          kill();
        }
      });
      assert.equal(res.signal, 'SIGKILL');
      await h.store.open();
      const check = await h.store.verifyIntegrity();
      assert.deepEqual(check.problems, []);
      assert.ok(check.records >= 3000, `records written before the kill survive (${check.records})`);
      const c = await h.store.counts(C);
      assert.equal(c.pending + c.finalized + c.invalid, check.records);
    } finally {
      await h.destroy();
    }
  });

  it('indexes stay consistent through a random workload (checked against a reference model)', async function () {
    const h = await embeddedHandle();
    try {
      let seed = 42;
      const rnd = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      const ref = new Map<string, StoredRecord>(); // id@version -> record
      const statuses: IntegrityStatus[] = ['pending', 'finalized', 'invalid'];
      for (let step = 0; step < 1500; step++) {
        const n = rnd(60);
        const type = n % 4 === 0 ? 'malware' : 'indicator';
        const day = 1 + rnd(6);
        const version = `2021-01-0${day}T00:00:00.000Z`;
        const op = rnd(10);
        const id = String((sdo(type, n, version) as unknown as { id: string }).id);
        if (op < 6) {
          const o = sdo(type, n, version, { spec_version: rnd(5) === 0 ? '2.0' : '2.1', name: `v${rnd(2)}` });
          const r = await h.store.add(newRecord(C, o, statuses[rnd(3)]));
          if (r.outcome === 'added') ref.set(`${id}@${version}`, r.record);
          else assert.ok(ref.has(`${id}@${version}`), `${r.outcome} for a version the reference lacks`);
        } else if (op < 8) {
          const s = statuses[rnd(3)];
          const ok = await h.store.setStatus(C, id, version, s, s === 'invalid' ? 'test' : undefined);
          const r = ref.get(`${id}@${version}`);
          assert.equal(ok, !!r);
          if (r) ref.set(`${id}@${version}`, { ...r, status: s });
        } else if (op < 9) {
          const gone = await h.store.delete(C, id, { versions: [version] });
          assert.equal(gone, ref.has(`${id}@${version}`) ? 1 : 0);
          ref.delete(`${id}@${version}`);
        } else {
          const all = [...ref.keys()].filter((k) => k.startsWith(id + '@'));
          assert.equal(await h.store.delete(C, id), all.length);
          all.forEach((k) => ref.delete(k));
        }
      }
      assert.deepEqual((await h.store.verifyIntegrity()).problems, []);
      const records = [...ref.values()];
      const queries: Array<Omit<RecordQuery, 'limit' | 'cursor'>> = [];
      for (const versions of [undefined, ['first'], ['all'], ['first', 'last'], ['2021-01-03T00:00:00Z']])
        for (const types of [undefined, ['malware']])
          for (const extra of [{}, { includeInvalid: true }, { specVersions: ['2.0'] }, { statuses: ['pending' as const] }]) queries.push({ collection: C, versions, types, ...extra });
      for (const q of queries) {
        const want = referenceQuery(records, q).map((r) => `${r.id}@${r.version}@${r.status}`);
        const got = (await collect(h.store, q, 9)).map((r) => `${r.id}@${r.version}@${r.status}`);
        assert.deepEqual(got, want, JSON.stringify(q));
      }
      const counts = { pending: 0, finalized: 0, invalid: 0 };
      for (const r of records) counts[r.status]++;
      assert.deepEqual(await h.store.counts(C), counts);
    } finally {
      await h.destroy();
    }
  });

  it('rejects bad options with ERR_STORE_CONFIG', function () {
    assert.throws(() => new EmbeddedStore({ dir: '' }), (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_CONFIG');
    assert.throws(() => new EmbeddedStore({ dir: '/tmp/x', statusRetentionMs: 0 }), (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_CONFIG');
  });

  it('a status resource written whole by an earlier version is read as it was and settles (split once into entries)', async function () {
    const h = await embeddedHandle();
    try {
      await h.store.close();
      const V = '2024-01-01T00:00:00.000Z';
      const legacy = {
        id: 'legacy-1',
        status: 'pending',
        request_timestamp: '2024-01-01T00:00:00.000000Z',
        total_count: 3,
        success_count: 1,
        successes: [{ id: 'indicator--00000000-0000-4000-8000-000000000001', version: V }],
        failure_count: 0,
        pending_count: 2,
        pendings: [
          { id: 'indicator--00000000-0000-4000-8000-000000000002', version: V },
          { id: 'indicator--00000000-0000-4000-8000-000000000003', version: V },
        ],
        owner: 'basic:alice',
      };
      const db = new ClassicLevel<string, string>(h.dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
      await db.open();
      const x = Date.now() + 3600_000;
      await db.put(['S', 'legacy-1'].join('\u0000'), JSON.stringify({ x, r: legacy }));
      await db.put(['X', String(x).padStart(16, '0'), 'legacy-1'].join('\u0000'), '');
      await db.close();
      await h.store.open();
      assert.deepEqual(await h.store.getStatus('legacy-1'), legacy);
      assert.deepEqual(await h.store.settleStatus('legacy-1', [{ id: legacy.pendings[1].id, version: V, outcome: 'failure', message: 'hash mismatch' }]), [true]);
      const st = await h.store.getStatus('legacy-1');
      assert.equal(st?.pending_count, 1);
      assert.equal(st?.failure_count, 1);
      assert.deepEqual(st?.pendings, [legacy.pendings[0]]);
      assert.deepEqual(st?.successes, legacy.successes);
      assert.deepEqual(st?.failures, [{ ...legacy.pendings[1], message: 'hash mismatch' }]);
      assert.deepEqual(await h.store.settleStatus('legacy-1', [{ id: legacy.pendings[0].id, version: V, outcome: 'success', message: 'ok' }]), [true]);
      assert.equal((await h.store.getStatus('legacy-1'))?.status, 'complete');
    } finally {
      await h.destroy();
    }
  });

  describe('scale: 100,000 records', function () {
    this.timeout(600_000);
    let big: Awaited<ReturnType<typeof embeddedHandle>>;
    let small: Awaited<ReturnType<typeof embeddedHandle>>;

    /** n objects x 2 versions; all second versions are added after all first versions. */
    async function fill(store: EmbeddedStore, objects: number): Promise<void> {
      for (const version of ['2021-01-01T00:00:00.000Z', '2021-06-01T00:00:00.000Z']) {
        for (let i = 0; i < objects; i += 1000) {
          const batch = [];
          for (let j = i; j < Math.min(objects, i + 1000); j++) {
            const type = j % 5 === 0 ? 'malware' : 'indicator';
            batch.push(newRecord(C, sdo(type, j, version, { name: `object ${j}` }), 'finalized'));
          }
          await store.addMany(batch);
        }
      }
    }

    before(async function () {
      big = await embeddedHandle();
      small = await embeddedHandle();
      const t0 = Date.now();
      await fill(big.store, 50_000);
      console.log(`      [scale] inserted 100,000 records (addMany, batches of 1,000) in ${Date.now() - t0} ms`);
      await fill(small.store, 500);
    });
    after(async function () {
      await big?.destroy();
      await small?.destroy();
    });

    /** Cursor of the page before the last one of `q` (paging the whole result once). */
    async function cursorBeforeLastPage(store: EmbeddedStore, q: Omit<RecordQuery, 'limit' | 'cursor'>, limit: number): Promise<{ cursor?: string; total: number }> {
      let cursor: string | undefined;
      let prev: string | undefined;
      let total = 0;
      for (;;) {
        const p = await store.query({ ...q, limit, cursor });
        total += p.items.length;
        if (!p.more) return { cursor: prev, total };
        prev = p.cursor;
        cursor = p.cursor;
      }
    }

    async function msPerPage(store: EmbeddedStore, q: RecordQuery, runs = 50): Promise<number> {
      await store.query(q);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < runs; i++) await store.query(q);
      return Number(process.hrtime.bigint() - t0) / 1e6 / runs;
    }

    it('the last page of match[version]=last is a range scan of limit+1 index entries', async function () {
      const q = { collection: C };
      const { cursor, total } = await cursorBeforeLastPage(big.store, q, 100);
      assert.equal(total, 50_000, 'one (latest) version per object');
      big.store.resetStats();
      const last = await big.store.query({ ...q, limit: 100, cursor });
      assert.equal(last.items.length, 100);
      assert.equal(last.more, false);
      assert.ok(last.items.every((r) => r.version === '2021-06-01T00:00:00.000Z'));
      assert.deepEqual(big.store.stats, { indexEntriesRead: 100, recordsRead: 100, metasRead: 0 });

      // the same page out of 1,000 records costs the same reads
      const s = await cursorBeforeLastPage(small.store, q, 100);
      small.store.resetStats();
      await small.store.query({ ...q, limit: 100, cursor: s.cursor });
      assert.deepEqual(small.store.stats, big.store.stats);

      // first page of `first` (also an index of one entry per object) and a typed `last` page
      big.store.resetStats();
      const first = await big.store.query({ collection: C, versions: ['first'], limit: 100 });
      assert.equal(first.more, true);
      assert.deepEqual(big.store.stats, { indexEntriesRead: 101, recordsRead: 100, metasRead: 0 });
      big.store.resetStats();
      const typed = await big.store.query({ collection: C, types: ['malware'], limit: 100, addedAfter: first.items[99].dateAdded });
      assert.equal(typed.items.length, 100);
      assert.ok(typed.items.every((r) => r.type === 'malware'));
      assert.deepEqual(big.store.stats, { indexEntriesRead: 101, recordsRead: 100, metasRead: 0 });

      const bigMs = await msPerPage(big.store, { ...q, limit: 100, cursor });
      const smallMs = await msPerPage(small.store, { ...q, limit: 100, cursor: s.cursor });
      const bigAll = await msPerPage(big.store, { collection: C, versions: ['all'], limit: 100, addedAfter: last.items[0].dateAdded });
      const smallAll = await msPerPage(small.store, { collection: C, versions: ['all'], limit: 100 });
      console.log(
        `      [scale] last page (limit 100) of match[version]=last: ${smallMs.toFixed(2)} ms at 1,000 records, ${bigMs.toFixed(2)} ms at 100,000 records`,
      );
      console.log(`      [scale] a page (limit 100) of match[version]=all: ${smallAll.toFixed(2)} ms at 1,000 records, ${bigAll.toFixed(2)} ms at 100,000 records`);
    });
  });
});
