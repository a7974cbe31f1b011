/**
 * `npm run soak` — the whole SETS pipeline under faults (test/support/soak-run.ts): a producer
 * anchoring and POSTing objects at a steady rate, a real Node-RED running the server flow, a real
 * RabbitMQ node, a hardhat chain with 1 s blocks, and a consumer verifying and acking; each of
 * the four faults once (consumer SIGKILL, RabbitMQ restart, EVM node restart, Node-RED SIGKILL).
 *
 * EVM node restart is EMULATED: hardhat cannot persist its chain, so the chain's TCP proxy is cut
 * for ~10 s and every pending transaction is dropped from the pool (hardhat_dropTransaction), as
 * a restarted node without a transaction journal would lose it; the chain state survives, as a
 * real Quorum node's disk would keep it.
 *
 * Writes soak/results/<timestamp>.json and a readable summary to stdout; exits 1 when anything
 * was lost or left pending (or not sent at all), 2 when the experiment could not run.
 *
 * Options (arguments override the environment):
 *   --count N      SETS_SOAK_COUNT      objects (default 10000)
 *   --rate N       SETS_SOAK_RATE       objects per second (default 25)
 *   --batch N      SETS_SOAK_BATCH      objects per anchorMany / POST (default: one second's worth)
 *   --drain S      SETS_SOAK_DRAIN_S    longest drain after production, seconds (default 120)
 *   --outage S     SETS_SOAK_OUTAGE_S   EVM outage, seconds (default 10)
 *   --faults LIST  SETS_SOAK_FAULTS     e.g. consumer,rabbitmq,evm,node-red (default all; "none" for none)
 *   --sweep S      SETS_SOAK_SWEEP_S    taxii-server recovery sweep interval, seconds (default 60, the node's default)
 *   --grace S      SETS_SOAK_GRACE_S    taxii-server anchor grace before a pending record is re-emitted (default 300, the node's default)
 *   --keep         SETS_SOAK_KEEP=1     keep the work dir (logs, journals, store) even when the run passed
 *   --out DIR      SETS_SOAK_OUT        results directory (default soak/results)
 */
import * as fs from 'fs';
import * as path from 'path';
import { ALL_FAULTS, runSoak, summarise, type FaultName } from '../test/support/soak-run';
import { repoRoot } from '../test/support/node-red';

function arg(name: string, env: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) return process.argv[i + 1] ?? '';
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  return process.env[env] || undefined;
}

function num(name: string, env: string, dflt: number): number {
  const v = arg(name, env);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`soak: --${name} must be a positive number, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const root = repoRoot();
  const count = Math.round(num('count', 'SETS_SOAK_COUNT', 10_000));
  const rate = num('rate', 'SETS_SOAK_RATE', 25);
  const batchArg = arg('batch', 'SETS_SOAK_BATCH');
  const faultsArg = arg('faults', 'SETS_SOAK_FAULTS');
  let faults: FaultName[] = ALL_FAULTS;
  if (faultsArg !== undefined) {
    faults = faultsArg === 'none' ? [] : (faultsArg.split(',').map((s) => s.trim()) as FaultName[]);
    const bad = faults.filter((f) => !ALL_FAULTS.includes(f));
    if (bad.length) {
      process.stderr.write(`soak: unknown fault(s) ${bad.join(', ')} (known: ${ALL_FAULTS.join(', ')}, none)\n`);
      process.exit(2);
    }
  }
  const keep = process.argv.includes('--keep') || process.env.SETS_SOAK_KEEP === '1';
  const outDir = path.resolve(root, arg('out', 'SETS_SOAK_OUT') ?? path.join('soak', 'results'));
  const result = await runSoak({
    count,
    rate,
    ...(batchArg ? { batch: Math.round(num('batch', 'SETS_SOAK_BATCH', 25)) } : {}),
    drainMs: num('drain', 'SETS_SOAK_DRAIN_S', 120) * 1000,
    evmOutageMs: num('outage', 'SETS_SOAK_OUTAGE_S', 10) * 1000,
    recoveryIntervalS: Math.round(num('sweep', 'SETS_SOAK_SWEEP_S', 60)),
    anchorGraceS: Math.round(num('grace', 'SETS_SOAK_GRACE_S', 300)),
    faults,
    keep,
  });
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `${result.startedAt.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`\n${summarise(result)}\n  results: ${path.relative(process.cwd(), file) || file}\n`);
  process.exit(result.ok ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: the experiment could not run: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
