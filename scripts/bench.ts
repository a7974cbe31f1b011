/**
 * `npm run bench` — the paper's experiment (section 5.2, Tables 1–4, Figures 7–10) on our stack,
 * every component real and in its own process (test/support/bench-run.ts): 1 producer, 1
 * consumer, 1,000 STIX events at 50, 75, 100 and 125 events/s, each with and without the ledger;
 * hardhat mining a block every 1 s; a private RabbitMQ node; the server flow in a real Node-RED.
 *
 * Writes bench/results/<timestamp>.json, the plots bench/results/<timestamp>-*.png (ours beside
 * the paper's figures, bench/paper-figures.json) and prints the table. Exit 1 when a run lost an
 * event, 2 when the experiment could not run.
 *
 * Options:
 *   --events N          events per run (default 1000)
 *   --rates 50,75       send rates, events/s (default 50,75,100,125)
 *   --no-ledger-only    only the baseline runs (no ledger)
 *   --ledger-only       only the runs with the ledger
 *   --quick             200 events at 50 and 125 events/s
 *   --capacity          with the ledger, raise the rate (doubling from 200/s) until an event is
 *                       lost or p99 > 2 s; report the highest sustained verified rate
 *                       (--start N: the first rate, default 200/s; halving when that fails)
 *                       and one ~10 MiB envelope of anchored objects POSTed at once: admission and
 *                       status settled timed (--no-envelope / --envelope-only)
 *   --no-plots          skip the PNGs
 *   --out DIR           results directory (default bench/results)
 */
import * as fs from 'fs';
import * as path from 'path';
import { DEFINITIONS, benchCapacity, benchEnvelope, benchRun, machine, table, type BenchRunResult, type CapacityResult } from '../test/support/bench-run';
import { benchCharts, readPaper, renderPngs } from '../test/support/bench-plot';
import { repoRoot } from '../test/support/node-red';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) return process.argv[i + 1] ?? '';
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : undefined;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);

function fail(msg: string): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) fail(`--${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<void> {
  const root = repoRoot();
  const quick = flag('quick');
  const events = Math.round(positive('events', arg('events') ?? (quick ? '200' : '1000')));
  const ratesArg = arg('rates');
  const rates = (ratesArg ?? (quick ? '50,125' : '50,75,100,125')).split(',').map((s) => positive('rates', s.trim()));
  if (flag('no-ledger-only') && flag('ledger-only')) fail('--no-ledger-only and --ledger-only exclude each other');
  const modes = flag('no-ledger-only') ? [false] : flag('ledger-only') ? [true] : [true, false];
  const outDir = path.resolve(root, arg('out') ?? path.join('bench', 'results'));
  const log = (l: string): void => void process.stdout.write(`${l}\n`);
  const startedAt = new Date().toISOString();
  const stamp = startedAt.replace(/[:.]/g, '-');
  const m = machine();
  log(`SETS bench ${startedAt} on ${m.cpus} CPU(s) (${m.cpuModel}), load ${JSON.stringify(m.loadAvgAtStart)}`);

  const runs: BenchRunResult[] = [];
  let capacity: CapacityResult | undefined;
  if (flag('capacity')) {
    capacity = flag('envelope-only') ? { criterion: '', steps: [], sustainedVerifiedPerS: 0, omitted: ['the rate ramp (--envelope-only)'] } : await benchCapacity({ log, ...(arg('start') ? { startRate: positive('start', arg('start') as string) } : {}) });
    if (!flag('no-envelope')) capacity.envelope = await benchEnvelope({ log });
  } else {
    for (const ledger of modes) {
      for (const rate of rates) {
        log(`[bench] run ${runs.length + 1}/${modes.length * rates.length}: ${events} events at ${rate}/s, ${ledger ? 'with' : 'without'} the ledger`);
        const r = await benchRun({ ledger, rate, events, log });
        runs.push(r);
        log(
          `[bench] → achieved ${r.achievedRate}/s, success ${r.successRate.toFixed(3)}, ${r.throughput} verified/s, paper latency ${r.paperLatencyS} s, ` +
            `p50/p99 ${r.latencyMs?.p50 ?? '-'}/${r.latencyMs?.p99 ?? '-'} ms${r.errors.length ? ` | ${r.errors[0].slice(0, 160)}` : ''}`,
        );
      }
    }
  }
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `${stamp}${capacity ? '-capacity' : ''}.json`);
  const paper = readPaper(root);
  const result = { startedAt, finishedAt: new Date().toISOString(), machine: m, definitions: DEFINITIONS, paper: 'bench/paper-figures.json', params: { events, rates, modes: modes.map((l) => (l ? 'ledger' : 'no-ledger')), blockTimeMs: 1000 }, runs, ...(capacity ? { capacity } : {}) };
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  const rel = (f: string): string => path.relative(process.cwd(), f) || f;
  log('');
  for (const [k, v] of Object.entries(DEFINITIONS)) log(`  ${k}: ${v}`);
  log('');
  log(table(capacity ? capacity.steps : runs));
  if (capacity) {
    log(`\ncapacity: highest sustained verified rate with the ledger ${capacity.sustainedVerifiedPerS}/s (${capacity.criterion}); not measured: ${capacity.omitted.join('; ')}`);
    const e = capacity.envelope;
    if (e) {
      log(
        `envelope: ${e.objects} objects, ${(e.bytes / 2 ** 20).toFixed(2)} MiB in ${e.requests} request(s): anchored in ${e.anchorMs ?? '-'} ms, admitted in ${e.admitMs ?? '-'} ms, ` +
          `${e.settledMs !== null ? `status settled after ${e.settledMs} ms` : `status NOT settled within ${e.settleTimeoutMs} ms`} (${JSON.stringify(e.final)})${e.error ? ` — ${e.error}` : ''}`,
      );
    }
  }
  log(`\nresults: ${rel(file)}`);
  if (!capacity && !flag('no-plots') && runs.length) {
    try {
      const pngs = await renderPngs(benchCharts(runs, paper, stamp), outDir);
      log(`plots: ${pngs.map(rel).join(', ')}`);
    } catch (err) {
      log(`plots not drawn: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const lossy = (capacity ? [] : runs).some((r) => r.lost > 0 || r.successRate < 1);
  process.exit(lossy ? 1 : 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: the experiment could not run: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
