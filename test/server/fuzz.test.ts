/**
 * Issue 11: a short fuzz run in CI (the full 100,000 cases: `npm run fuzz`). Generated envelopes
 * and query strings (test/support/fuzz-run.ts) against a running TAXII server over real HTTP:
 * no crash (no 5xx but the hashing gate's 503, no socket hang-up, every answer a TAXII JSON
 * resource), the server alive afterwards, and bounded memory (RSS / heapUsed sampled before and
 * after; the bound is generous: the machine is shared and the store's caches grow).
 */
import { strict as assert } from 'node:assert';
import { FUZZ_COL, TAXII, generateCase, runFuzz, startFuzzServer, summariseFuzz, type FuzzServer } from '../support/fuzz-run';
import { request } from './helpers';

const CASES = Number(process.env.SETS_FUZZ_CASES ?? 5000);
const SEED = Number(process.env.SETS_FUZZ_SEED ?? 20261102);

describe('TAXII server: fuzz run (issue 11)', function () {
  this.timeout(300_000);
  let fz: FuzzServer;

  before(async () => {
    fz = await startFuzzServer();
  });
  after(() => fz?.close());

  it('generates the same case for the same seed and index, and different ones otherwise', () => {
    const a = generateCase(SEED, 17);
    const b = generateCase(SEED, 17);
    assert.equal(a.path.replace(/--[0-9a-f-]{36}/g, ''), b.path.replace(/--[0-9a-f-]{36}/g, ''));
    assert.equal(a.method, b.method);
    const kinds = new Set(Array.from({ length: 200 }, (_, i) => generateCase(SEED, i).method));
    assert.ok(kinds.has('POST') && kinds.has('GET'), [...kinds].join(','));
  });

  it('the generator never throws (150,000 cases of two seeds, no requests sent)', () => {
    let bodies = 0;
    for (const seed of [SEED, 7]) {
      for (let i = 0; i < 75_000; i++) if (generateCase(seed, i).body) bodies++; // seed 7, case 70208: the first generator threw
    }
    assert.ok(bodies > 10_000);
  });

  it(`${CASES} generated requests: 0 crashes, server alive, bounded memory`, async () => {
    const r = await runFuzz({ port: fz.port, cases: CASES, seed: SEED, concurrency: 4 });
    console.log(summariseFuzz(r).replace(/^/gm, '      '));
    assert.deepEqual(r.crashes, [], `${r.crashes.length} crashes`);
    const answered = Object.values(r.statuses).reduce((a, b) => a + b, 0);
    assert.equal(answered, CASES, 'every case answered');
    // the run reached the interesting places: accepted envelopes, refusals of each kind, reads
    for (const s of ['200', '202', '400', '404']) assert.ok((r.statuses[s] ?? 0) > 0, `some ${s} answers (${JSON.stringify(r.statuses)})`);
    const grownHeap = r.memory.after.heapUsed - r.memory.before.heapUsed;
    assert.ok(grownHeap < 256 * 1048576, `heapUsed grew by ${(grownHeap / 1048576).toFixed(0)} MiB`);
    assert.ok(r.memory.after.rss < 2048 * 1048576, `rss ${(r.memory.after.rss / 1048576).toFixed(0)} MiB`);
    // alive and serving
    const alive = await request(fz.base, 'GET', `/api1/collections/${FUZZ_COL}/objects/?limit=5`, {
      auth: 'Basic ' + Buffer.from('reader:read-pw').toString('base64'),
    });
    assert.equal(alive.status, 200, alive.text);
    assert.equal(alive.headers['content-type'], TAXII);
  });
});
