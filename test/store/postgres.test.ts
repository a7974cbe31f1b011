/**
 * PostgresStore against a real PostgreSQL server: the shared conformance suite, plus what only a
 * shared SQL server has — commit-ordered paging while several connections insert, two store
 * instances on one database, compare-and-set and settling across instances, statement timeouts,
 * scan bounds, a server restart and a stopped server, and erasure down to the table files.
 *
 * Server: `SETS_TEST_PG_URL` when set, else a private cluster on a free port (test/support/postgres.ts).
 * Each store gets its own schema (sets_t_<pid>_<n>), dropped afterwards. The restart/stop and
 * table-file checks need a cluster these tests started (they are not registered with SETS_TEST_PG_URL).
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import { PostgresStore, redactPgUrl, type PostgresStoreOptions } from '../../lib/store/postgres';
import { pgNames } from '../../lib/store/postgres-sql';
import { StoreError } from '../../lib/store/errors';
import { createStore } from '../../lib/store/index';
import { anyStoreConfig, parseAnyStoreSettings, redactUri } from '../../lib/ops/server-store';
import type { StoredRecord } from '../../lib/store/store';
import { collect, newRecord, sdo, storeConformance, uuid, type StoreHandle } from './conformance';
import { postgres, stopPostgres, type PostgresHandle } from '../support/postgres';

const privateOnly = !process.env.SETS_TEST_PG_URL;
let n = 0;

async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: (await postgres()).url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function pgHandle(opts: Omit<PostgresStoreOptions, 'uri' | 'schema'> = {}): Promise<StoreHandle & { schema: string; uri: string; store: PostgresStore }> {
  const uri = (await postgres()).url;
  const schema = `sets_t_${process.pid}_${++n}`;
  const handle = {
    schema,
    uri,
    store: new PostgresStore({ uri, schema, ...opts }),
    async reopen(o: Omit<PostgresStoreOptions, 'uri' | 'schema'> = {}): Promise<PostgresStore> {
      await handle.store.close();
      handle.store = new PostgresStore({ uri, schema, ...o });
      await handle.store.open();
      return handle.store;
    },
    async destroy(): Promise<void> {
      await handle.store.close();
      await admin((c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
    },
  };
  await handle.store.open();
  return handle;
}

const label = (r: StoredRecord): string => `${r.id}@${r.version}`;
const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('PostgreSQL store', function () {
  // the private cluster stops as soon as these tests are done (not at the end of a long mocha run)
  after(async function () {
    this.timeout(60_000);
    await stopPostgres();
  });

  storeConformance({ name: 'postgres', create: (opts) => pgHandle(opts) });

  describe('PostgresStore (PostgreSQL specifics)', function () {
    this.timeout(120_000);
    const C = 'col';

    it('paging never misses or repeats an object while 4 instances insert on their own connections', async function () {
      const h = await pgHandle();
      const writers = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const s = new PostgresStore({ uri: h.uri, schema: h.schema, poolSize: 3 });
          await s.open();
          return s;
        }),
      );
      try {
        const added: StoredRecord[] = [];
        let writing = true;
        // each writer: single adds and small batches, several in flight at once on its pool
        const write = async (s: PostgresStore, w: number): Promise<void> => {
          for (let k = 0; k < 30; k++) {
            const base = 10_000 * (w + 1) + k * 10;
            const batch = Array.from({ length: 1 + (k % 4) }, (_, j) => newRecord(C, sdo('indicator', base + j, '2021-01-01T00:00:00.000Z')));
            const [one, many] = await Promise.all([s.add(newRecord(C, sdo('malware', base, '2021-01-01T00:00:00.000Z', { is_family: false }))), s.addMany(batch)]);
            for (const o of [one, ...many]) {
              assert.equal(o.outcome, 'added');
              added.push(o.record);
            }
          }
        };
        const writing$ = Promise.all(writers.map((s, w) => write(s, w))).finally(() => {
          writing = false;
        });
        // the pager pages with a small limit while the writers run, then drains what is left
        const seen = new Map<string, StoredRecord>();
        const order: StoredRecord[] = [];
        let cursor: string | undefined;
        let pages = 0;
        for (;;) {
          const stillWriting = writing;
          const page = await h.store.query({ collection: C, limit: 7, versions: ['all'], cursor });
          pages++;
          for (const r of page.items) {
            assert.ok(!seen.has(label(r)), `repeated ${label(r)} on page ${pages}`);
            seen.set(label(r), r);
            order.push(r);
          }
          if (page.cursor) cursor = page.cursor;
          if (!page.more && !stillWriting) break;
          if (!page.more) await delay(5);
        }
        await writing$;
        for (let i = 1; i < order.length; i++) assert.ok(order[i - 1].dateAdded < order[i].dateAdded, `out of order at ${i}`);
        const missed = added.filter((r) => !seen.has(label(r)));
        assert.deepEqual(missed.map(label), [], 'every added object was paged');
        assert.equal(seen.size, added.length);
        assert.ok(pages > 20, `paged while writing (${pages} pages)`);
        console.log(`      paging under 4 writers: ${added.length} objects, ${pages} pages, none missed or repeated`);
      } finally {
        await Promise.all(writers.map((s) => s.close()));
        await h.destroy();
      }
    });

    it('concurrent adds of one instance are group-committed: few transactions, every caller its own outcomes', async function () {
      const h = await pgHandle();
      const T = '2021-01-01T00:00:00.000Z';
      try {
        const pre = (await h.store.add(newRecord(C, sdo('indicator', 40_000, T)))).record;
        const calls = Array.from({ length: 300 }, (_, i) => {
          if (i % 50 === 10) return h.store.add(newRecord(C, sdo('indicator', 40_000, T))).then((o) => [o]); // duplicate of pre
          if (i % 50 === 20) return h.store.add(newRecord(C, sdo('indicator', 40_000, T, { name: `other ${i}` }))).then((o) => [o]); // conflict with pre
          if (i % 50 === 30) return h.store.addMany([0, 1, 2].map((j) => newRecord(C, sdo('malware', 41_000 + i * 3 + j, T, { is_family: false }))));
          return h.store.add(newRecord(C, sdo('indicator', 42_000 + i, T))).then((o) => [o]);
        });
        const out = await Promise.all(calls);
        for (const [i, o] of out.entries()) {
          if (i % 50 === 10) {
            assert.equal(o[0].outcome, 'duplicate');
            assert.deepEqual(o[0].record, pre);
          } else if (i % 50 === 20) {
            assert.equal(o[0].outcome, 'conflict');
            assert.equal(o[0].record.hash, pre.hash);
          } else if (i % 50 === 30) {
            assert.deepEqual(
              o.map((x) => [x.outcome, x.record.id]),
              [0, 1, 2].map((j) => ['added', 'malware--' + uuid(41_000 + i * 3 + j)]),
            );
          } else {
            assert.equal(o.length, 1);
            assert.equal(o[0].outcome, 'added');
            assert.equal(o[0].record.id, 'indicator--' + uuid(42_000 + i));
          }
        }
        const added = out.flat().filter((o) => o.outcome === 'added');
        assert.equal(new Set(added.map((o) => o.record.dateAdded)).size, added.length);
        // rows written by one transaction share their xmin
        const tx = await admin((c) => c.query<{ n: number }>(`SELECT count(DISTINCT xmin::text)::int AS n FROM "${h.schema}".sets_objects WHERE id <> $1`, [pre.id]));
        assert.ok(tx.rows[0].n < 50, `${added.length} adds in ${tx.rows[0].n} transactions`);
        assert.equal((await h.store.counts(C)).pending, added.length + 1);
        console.log(`      group commit: ${added.length} concurrent adds in ${tx.rows[0].n} transactions`);
        // a record the server refuses (an id too long for the primary key index) fails only its caller
        const hugeId = 'indicator--' + randomBytes(4000).toString('hex');
        const mixed = await Promise.allSettled([
          ...Array.from({ length: 10 }, (_, i) => h.store.add(newRecord(C, sdo('indicator', 43_000 + i, T)))),
          h.store.add(newRecord(C, { ...sdo('indicator', 1, T), id: hugeId })),
          ...Array.from({ length: 10 }, (_, i) => h.store.add(newRecord(C, sdo('indicator', 43_100 + i, T)))),
        ]);
        const bad = mixed[10];
        assert.equal(bad.status, 'rejected');
        assert.equal((bad as PromiseRejectedResult).reason.code, 'ERR_STORE_IO');
        assert.deepEqual(
          mixed.filter((_, i) => i !== 10).map((m) => (m.status === 'fulfilled' ? m.value.outcome : String(m.reason))),
          Array.from({ length: 20 }, () => 'added'),
        );
      } finally {
        await h.destroy();
      }
    });

    it('two instances on one database behave as one: clock, flags, compare-and-set, settling, meta', async function () {
      const a = await pgHandle();
      const b = new PostgresStore({ uri: a.uri, schema: a.schema });
      await b.open();
      try {
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) => (i % 2 ? a.store : b).add(newRecord(C, sdo('indicator', i % 10, `2021-01-${String(1 + Math.floor(i / 10)).padStart(2, '0')}T00:00:00.000Z`)))),
        );
        assert.equal(new Set(results.map((r) => r.record.dateAdded)).size, 40);
        assert.equal(results.filter((r) => r.outcome === 'added').length, 40);
        const fromA = await collect(a.store, { collection: C }, 3);
        assert.deepEqual(await collect(b, { collection: C }, 3), fromA);
        assert.equal(fromA.length, 10);
        assert.ok(fromA.every((r) => r.version === '2021-01-04T00:00:00.000Z'));
        // compare-and-set from both instances at once: one winner per record
        const targets = fromA.slice(0, 5);
        const cas = await Promise.all(
          targets.flatMap((r) => Array.from({ length: 10 }, (_, k) => (k % 2 ? a.store : b).setStatus(C, r.id, r.version, k % 3 ? 'finalized' : 'invalid', `w${k}`, { expect: 'pending' }))),
        );
        assert.equal(cas.filter(Boolean).length, 5);
        const counts = await b.counts(C);
        assert.equal(counts.pending, 35);
        assert.equal(counts.finalized + counts.invalid, 5);
        assert.deepEqual(await a.store.counts(C), counts);
        // a status resource put by one instance, settled by both at once: each entry moves once
        const V = '2024-01-01T00:00:00.000Z';
        await a.store.putStatus({
          id: 'shared',
          status: 'pending',
          request_timestamp: '2024-01-01T00:00:00.000000Z',
          total_count: 20,
          success_count: 0,
          failure_count: 0,
          pending_count: 20,
          pendings: Array.from({ length: 20 }, (_, i) => ({ id: 'indicator--' + uuid(500 + i), version: V })),
        });
        const moves = Array.from({ length: 20 }, (_, i) => ({ id: 'indicator--' + uuid(500 + i), version: V, outcome: 'success' as const, message: 'ok' }));
        const [ra, rb] = await Promise.all([a.store.settleStatus('shared', moves), b.settleStatus('shared', [...moves].reverse())]);
        const movedOnce = moves.map((_, i) => Number(ra[i]) + Number(rb[moves.length - 1 - i]));
        assert.deepEqual(movedOnce, moves.map(() => 1));
        const st = await b.getStatus('shared');
        assert.equal(st?.status, 'complete');
        assert.equal(st?.success_count, 20);
        // meta created once whichever instance is first
        const metas = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a.store : b).getOrCreateMeta('token-secret', `v${i}`)));
        assert.equal(new Set(metas).size, 1);
      } finally {
        await b.close();
        await a.destroy();
      }
    });

    it('a status change waiting for an add of a new version of the same object (another instance) keeps one "last"', async function () {
      const a = await pgHandle();
      const b = new PostgresStore({ uri: a.uri, schema: a.schema });
      await b.open();
      const holder = new Client({ connectionString: a.uri });
      await holder.connect();
      try {
        const v1 = (await a.store.add(newRecord(C, sdo('indicator', 50_000, '2021-01-01T00:00:00.000Z')))).record;
        // something holds v1's row: b's add of v2 waits for it first, then a's setStatus of v1
        await holder.query('BEGIN');
        await holder.query(`SELECT 1 FROM "${a.schema}".sets_objects WHERE id = $1 FOR UPDATE`, [v1.id]);
        const adding = b.add(newRecord(C, sdo('indicator', 50_000, '2021-01-02T00:00:00.000Z')));
        await delay(400);
        const setting = a.store.setStatus(C, v1.id, v1.version, 'finalized');
        await delay(400);
        await holder.query('ROLLBACK');
        assert.equal((await adding).outcome, 'added');
        assert.equal(await setting, true);
        const lasts = await admin((c) => c.query<{ version: string }>(`SELECT version FROM "${a.schema}".sets_objects WHERE id = $1 AND is_last`, [v1.id]));
        assert.deepEqual(
          lasts.rows.map((r) => r.version),
          ['2021-01-02T00:00:00.000Z'],
        );
        assert.deepEqual(
          (await collect(a.store, { collection: C }, 5)).map((r) => r.version),
          ['2021-01-02T00:00:00.000Z'],
        );
      } finally {
        await holder.end();
        await b.close();
        await a.destroy();
      }
    });

    it('every statement has a timeout: an add waiting for a writer lock held elsewhere fails with a clear error', async function () {
      const h = await pgHandle({ statementTimeoutMs: 500 });
      const holder = new Client({ connectionString: h.uri });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [pgNames(h.schema, undefined).lockName]);
        const t0 = Date.now();
        await assert.rejects(h.store.add(newRecord(C, sdo('indicator', 1, '2021-01-01T00:00:00.000Z'))), (err: StoreError) => {
          assert.equal(err.code, 'ERR_STORE_IO');
          assert.match(err.message, /add: timed out \(statement timeout 500 ms\)/);
          return true;
        });
        assert.ok(Date.now() - t0 < 5_000);
        await holder.query('ROLLBACK');
        assert.equal((await h.store.add(newRecord(C, sdo('indicator', 1, '2021-01-01T00:00:00.000Z')))).outcome, 'added', 'the store works once the lock is free');
      } finally {
        await holder.end();
        await h.destroy();
      }
    });

    it('a scan judged row by row stops at maxScanRows with a cursor and pages on without loss', async function () {
      const h = await pgHandle({ maxScanRows: 20 });
      try {
        // 100 objects with spec 2.0 (judged one by one for match[spec_version]=2.1) and 3 with 2.1
        const recs = Array.from({ length: 103 }, (_, i) => newRecord(C, sdo('indicator', 700 + i, '2021-01-01T00:00:00.000Z', { spec_version: i % 50 === 7 ? '2.1' : '2.0' })));
        await h.store.addMany(recs);
        const first = await h.store.query({ collection: C, limit: 10, specVersions: ['2.1'] });
        assert.ok(first.items.length < 3 && first.more && first.cursor, 'first page ended at the scan bound');
        // page on (pages may be short or empty with more=true: the bound, not the end)
        const all: StoredRecord[] = [];
        let cursor: string | undefined;
        let pages = 0;
        for (;;) {
          const page = await h.store.query({ collection: C, limit: 10, specVersions: ['2.1'], cursor });
          pages++;
          all.push(...page.items);
          if (!page.more) break;
          assert.ok(page.cursor, 'a page with more=true has a cursor');
          cursor = page.cursor;
        }
        assert.ok(pages >= 5, `the bound of 20 rows split 103 candidates into pages (${pages})`);
        assert.equal(new Set(all.map(label)).size, all.length, 'no repeats');
        assert.deepEqual(
          all.map((r) => r.id).sort(),
          recs
            .filter((r) => r.specVersion === '2.1')
            .map((r) => r.id)
            .sort(),
        );
      } finally {
        await h.destroy();
      }
    });

    it('rejects bad options, texts PostgreSQL cannot hold, and names the server without its password', async function () {
      const bad = (o: Partial<PostgresStoreOptions>): void => {
        assert.throws(
          () => new PostgresStore({ uri: 'postgres://u:p@127.0.0.1/db', ...o }),
          (e: StoreError) => e.code === 'ERR_STORE_CONFIG',
        );
      };
      bad({ uri: 'mysql://x' });
      bad({ schema: 'a;drop' });
      bad({ schema: '1abc' });
      bad({ tablePrefix: 'x-y' });
      bad({ poolSize: 0 });
      bad({ statementTimeoutMs: -1 });
      bad({ maxScanRows: 1.5 });
      assert.equal(redactPgUrl('postgres://sets:s3cret@h:5/db?sslmode=require&password=x2'), 'postgres://sets:***@h:5/db?sslmode=require&password=***');
      assert.equal(redactUri('postgresql://u:pw@h/db'), 'postgresql://u:***@h/db');
      assert.equal(redactUri('mongodb://u:pw@h/db'), 'mongodb://u:***@h/db');
      const h = await pgHandle();
      try {
        await assert.rejects(h.store.add(newRecord(C, sdo('indicator', 2, '2021-01-01T00:00:00.000Z', { name: 'ok' }))).then(() => h.store.add({ ...newRecord(C, sdo('indicator', 3, '2021-01-01T00:00:00.000Z')), collection: 'a\u0000b' })), (e: StoreError) => e.code === 'ERR_STORE_BAD_RECORD');
        // a NUL inside the object text is fine (JSON escapes it) and comes back as given
        const o = sdo('indicator', 4, '2021-01-01T00:00:00.000Z', { name: 'nul \u0000 and \ud83d\ude00' });
        await h.store.add(newRecord(C, o));
        assert.deepEqual((await h.store.get(C, o.id as string))?.object, o);
        assert.equal(await h.store.get(C, 'x\u0000y'), null);
        await assert.rejects(h.store.query({ collection: C, limit: 1, ids: ['a\u0000'] }), (e: StoreError) => e.code === 'ERR_STORE_BAD_QUERY');
      } finally {
        await h.destroy();
      }
      // a server that is not there: ERR_STORE_CONNECT naming it, no password
      const gone = new PostgresStore({ uri: 'postgres://sets:topsecret@127.0.0.1:1/x', connectTimeoutMs: 2000 });
      await assert.rejects(gone.open(), (e: StoreError) => {
        assert.equal(e.code, 'ERR_STORE_CONNECT');
        assert.match(e.message, /postgres:\/\/sets:\*\*\*@127\.0\.0\.1:1\/x/);
        assert.doesNotMatch(e.message, /topsecret/);
        return true;
      });
    });

    it('settings: kind postgres is parsed and checked (schema, prefix, pool, timeout; URL as a secret)', function () {
      const s = parseAnyStoreSettings({ kind: 'postgres', schema: 'sets', tablePrefix: 'taxii_', poolSize: '4', statementTimeoutMs: '2500', retentionHours: '2' });
      assert.deepEqual(s, { kind: 'postgres', schema: 'sets', tablePrefix: 'taxii_', poolSize: 4, statementTimeoutMs: 2500, statusRetentionMs: 7_200_000 });
      assert.deepEqual(anyStoreConfig(s, { uri: ' postgres://u:p@h/db ' }), {
        kind: 'postgres',
        uri: 'postgres://u:p@h/db',
        schema: 'sets',
        tablePrefix: 'taxii_',
        poolSize: 4,
        statementTimeoutMs: 2500,
        statusRetentionMs: 7_200_000,
      });
      assert.ok(createStore(anyStoreConfig(s, { uri: 'postgres://u:p@h/db' })) instanceof PostgresStore);
      assert.deepEqual(parseAnyStoreSettings({ kind: 'postgres' }), { kind: 'postgres', poolSize: 10, statementTimeoutMs: 10_000, statusRetentionMs: 86_400_000 });
      assert.throws(() => parseAnyStoreSettings({ kind: 'postgres', schema: 'x y' }), /schema "x y"/);
      assert.throws(() => parseAnyStoreSettings({ kind: 'postgres', tablePrefix: 'a.b' }), /table prefix "a.b"/);
      assert.throws(() => parseAnyStoreSettings({ kind: 'postgres', poolSize: '0' }), /pool size/);
      assert.throws(() => parseAnyStoreSettings({ kind: 'postgres', statementTimeoutMs: '5' }), /statement timeout/);
      assert.throws(() => anyStoreConfig(s, { uri: 'mongodb://h' }), /postgres:\/\/ or postgresql:\/\/ URL/);
      assert.deepEqual(parseAnyStoreSettings({ kind: 'mongodb', db: 'x' }), { kind: 'mongodb', db: 'x', statusRetentionMs: 86_400_000 });
    });

    if (privateOnly) {
      describe('against a cluster these tests control', function () {
        let pg: PostgresHandle;
        before(async function () {
          pg = await postgres();
        });

        it('a server restart mid-run: operations fail clearly while it is down and resume afterwards on the same store', async function () {
          const h = await pgHandle({ connectTimeoutMs: 2000 });
          try {
            let k = 0;
            const ok: StoredRecord[] = [];
            const errors: StoreError[] = [];
            let running = true;
            const load = (async () => {
              while (running) {
                try {
                  ok.push((await h.store.add(newRecord(C, sdo('indicator', 20_000 + k++, '2021-01-01T00:00:00.000Z')))).record);
                } catch (err) {
                  errors.push(err as StoreError);
                  await delay(50);
                }
              }
            })();
            await delay(300);
            const before = ok.length;
            await pg.restart();
            const atRestart = ok.length;
            // adds go on by themselves (no reopen): wait for a few, at most 30 s
            const until = Date.now() + 30_000;
            while (ok.length < atRestart + 5 && Date.now() < until) await delay(50);
            running = false;
            await load;
            assert.ok(before > 0, 'adds ran before the restart');
            assert.ok(ok.length > atRestart, `adds resumed after the restart (${ok.length} > ${atRestart})`);
            for (const e of errors) {
              assert.ok(e instanceof StoreError, String(e));
              assert.ok(e.code === 'ERR_STORE_CONNECT', `${e.code}: ${e.message}`);
            }
            // what was reported added is stored, once
            const all = await collect(h.store, { collection: C }, 100);
            const ids = new Set(all.map((r) => r.id));
            for (const r of ok) assert.ok(ids.has(r.id), `lost ${r.id}`);
            assert.equal(ids.size, all.length);
            console.log(`      restart: ${before} adds before, ${ok.length - atRestart} after, ${errors.length} failed with ERR_STORE_CONNECT`);

            // stopped: a clear error naming the server (no password); started again: the same store works
            await pg.stopServer();
            try {
              await assert.rejects(h.store.add(newRecord(C, sdo('indicator', 29_999, '2021-01-01T00:00:00.000Z'))), (e: StoreError) => {
                assert.equal(e.code, 'ERR_STORE_CONNECT');
                assert.match(e.message, /postgres store postgres:\/\/sets:\*\*\*@127\.0\.0\.1:\d+\/postgres .*add: cannot reach the server/);
                return true;
              });
              await assert.rejects(h.store.query({ collection: C, limit: 5 }), (e: StoreError) => e.code === 'ERR_STORE_CONNECT');
            } finally {
              await pg.startServer();
            }
            assert.equal((await h.store.add(newRecord(C, sdo('indicator', 29_999, '2021-01-01T00:00:00.000Z')))).outcome, 'added');
            assert.equal((await h.store.counts(C)).pending, ok.length + 1);
          } finally {
            await h.destroy();
          }
        });

        it('delete erases the rows; VACUUM FULL (store.vacuum) removes the bytes from the table files', async function () {
          const h = await pgHandle();
          const marker = `erase-me-${process.pid}-${Date.now()}`;
          const tableFiles = async (): Promise<string[]> =>
            admin(async (c) => {
              await c.query('CHECKPOINT');
              const r = await c.query<{ p: string | null }>(
                `SELECT pg_relation_filepath(c.oid) AS p FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1
                 UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.reltoastrelid <> 0`,
                [h.schema],
              );
              return r.rows.flatMap((x) => (x.p ? [x.p] : []));
            });
          const filesWithMarker = async (): Promise<string[]> => {
            const dataDir = pg.dataDir ?? '';
            const hits: string[] = [];
            for (const rel of await tableFiles()) {
              const base = path.join(dataDir, rel);
              for (const f of fs.readdirSync(path.dirname(base)).filter((x) => x === path.basename(base) || x.startsWith(path.basename(base) + '.'))) {
                if (fs.readFileSync(path.join(path.dirname(base), f)).includes(marker)) hits.push(f);
              }
            }
            return hits;
          };
          try {
            for (let i = 0; i < 50; i++) await h.store.add(newRecord(C, sdo('indicator', 30_000 + i, '2021-01-01T00:00:00.000Z', { name: `keep ${i}` })));
            const secret = sdo('indicator', 30_999, '2021-01-01T00:00:00.000Z', { description: `secret ${marker}` });
            await h.store.add(newRecord(C, secret));
            assert.ok((await filesWithMarker()).length > 0, 'the marker is in the table files before the delete (the check can see it)');
            assert.equal(await h.store.delete(C, secret.id as string), 1);
            const rows = await admin((c) => c.query(`SELECT count(*)::int AS n FROM "${h.schema}".sets_objects WHERE object LIKE $1 OR id = $2`, [`%${marker}%`, secret.id]));
            assert.equal(rows.rows[0].n, 0, 'no row holds the erased object');
            await h.store.vacuum({ full: true });
            assert.deepEqual(await filesWithMarker(), [], 'no table file holds the erased object after VACUUM FULL');
            assert.equal((await collect(h.store, { collection: C }, 20)).length, 50);
          } finally {
            await h.destroy();
          }
        });
      });
    } else {
      console.log('test/store/postgres.test: restart and table-file checks NOT run: SETS_TEST_PG_URL points at a server these tests do not control');
    }
  });
});
