/**
 * `npm run fuzz` — the TAXII server fuzz run on demand (issue 11): 100,000 generated envelopes and
 * query strings (test/support/fuzz-run.ts) against an in-process TAXII server on the embedded
 * store, over real HTTP. Prints the rate, the statuses, RSS / heapUsed before and after, and the
 * first crashes (a crash is reproduced by the seed and its case index: generateCase(seed, i)).
 * Exits 1 on any crash or when heapUsed grew by more than --max-heap-growth MiB (default 256).
 *
 * Options (arguments override the environment):
 *   --cases N        SETS_FUZZ_CASES        default 100000
 *   --seed N         SETS_FUZZ_SEED         default 20261102
 *   --concurrency N  SETS_FUZZ_CONCURRENCY  default 4
 *   --max-heap-growth MiB                  default 256
 * Run with `node --expose-gc` for steadier memory figures (npm run fuzz does).
 */
import { runFuzz, startFuzzServer, summariseFuzz } from '../test/support/fuzz-run';

function arg(name: string, env: string | undefined, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  const raw = i >= 0 ? process.argv[i + 1] : eq ? eq.slice(name.length + 3) : env !== undefined ? process.env[env] : undefined;
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`fuzz: --${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const cases = arg('cases', 'SETS_FUZZ_CASES', 100_000);
  const seed = arg('seed', 'SETS_FUZZ_SEED', 20261102);
  const concurrency = Math.max(1, arg('concurrency', 'SETS_FUZZ_CONCURRENCY', 4));
  const maxGrowth = arg('max-heap-growth', undefined, 256) * 1048576;
  const fz = await startFuzzServer();
  try {
    console.log(`fuzz: ${cases} cases, seed ${seed}, concurrency ${concurrency}, target ${fz.base}`);
    const r = await runFuzz({
      port: fz.port,
      cases,
      seed,
      concurrency,
      progress: (done, ms) => {
        if (done % 10_000 === 0) {
          const m = process.memoryUsage();
          console.log(`  ${done} cases, ${(done / (ms / 1000)).toFixed(0)}/s, rss ${(m.rss / 1048576).toFixed(0)} MiB, heapUsed ${(m.heapUsed / 1048576).toFixed(0)} MiB`);
        }
      },
    });
    console.log(summariseFuzz(r));
    const growth = r.memory.after.heapUsed - r.memory.before.heapUsed;
    const alive = await fetch(`${fz.base}/taxii2/`, {
      headers: { Accept: 'application/taxii+json;version=2.1', Authorization: 'Basic ' + Buffer.from('reader:read-pw').toString('base64') },
      signal: AbortSignal.timeout(10_000),
    });
    console.log(`fuzz: server alive after the run: ${alive.status}`);
    process.exitCode = r.crashes.length > 0 || growth > maxGrowth || alive.status !== 200 ? 1 : 0;
  } finally {
    await fz.close();
  }
}

main().catch((err: unknown) => {
  console.error('fuzz: could not run:', err instanceof Error ? err.stack ?? err.message : err);
  process.exit(2);
});
