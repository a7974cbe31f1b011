/**
 * The benchmark's CI smoke (`npm run bench` runs the full one): 200 events at 50 events/s with the
 * ledger through the whole pipeline — producer (anchor + TAXII POST per event), Node-RED server
 * flow, RabbitMQ, consumer (verify, journal, ack), hardhat with 1 s blocks — measured as the
 * benchmark measures, written as the benchmark writes, and its plots drawn. Under 2 minutes.
 * Figures come from `npm run bench`, not from here: this only keeps the harness working.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { benchRun, envelopePhase, type BenchRunResult, type EnvelopeResult } from '../support/bench-run';
import { svgChart, benchCharts, readPaper } from '../support/bench-plot';
import { repoRoot } from '../support/node-red';

describe('bench: the paper experiment harness (200 events at 50/s with the ledger)', function () {
  this.timeout(4 * 60_000);
  let r: BenchRunResult;
  let env: EnvelopeResult | undefined;

  before(async function () {
    const t = Date.now();
    r = await benchRun({
      ledger: true,
      rate: 50,
      events: 200,
      log: (l) => process.stdout.write(`      ${l}\n`),
      // the --capacity envelope phase, small: a 256 KiB envelope on the same stack once the run drained
      afterDrain: async (s) => {
        env = await envelopePhase(s, 256 * 1024, 60_000);
      },
    });
    process.stdout.write(`      took ${Math.round((Date.now() - t) / 1000)} s: ${JSON.stringify({ ...r, processes: undefined })}\n`);
  });

  it('verifies every event sent at the consumer (success rate 1.0, none lost or pending)', function () {
    assert.equal(r.sent, 200, r.errors.join('; '));
    assert.equal(r.verified, 200, r.errors.join('; '));
    assert.equal(r.successRate, 1);
    assert.equal(r.lost, 0);
    assert.equal(r.leftPending, 0);
    assert.equal(r.rejected, 0);
    assert.ok(r.soakOk, r.errors.join('; '));
  });

  it('measures rate, throughput and latency with a plausible shape', function () {
    assert.equal(r.ledger, true);
    assert.ok(r.achievedRate > 25 && r.achievedRate < 75, `achieved ${r.achievedRate}/s for a target of 50/s`);
    assert.ok(r.throughput > 0 && r.throughput <= r.achievedRate * 1.05, `throughput ${r.throughput}`);
    // the paper's latency is the window over the successes: (last verified − first sent) / verified
    assert.ok(Math.abs(r.paperLatencyS - r.windowS / r.verified) < 0.001, `paper latency ${r.paperLatencyS} vs window ${r.windowS} s`);
    const l = r.latencyMs;
    assert.ok(l, 'per-event latencies');
    // with the ledger an event waits for its anchor's block (1 s blocks): never instant
    assert.ok(l.p50 > 0 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, JSON.stringify(l));
  });

  it('samples every process from /proc: producer, server, consumer, chain node, broker (beam.smp)', function () {
    for (const role of ['producer', 'server', 'consumer', 'chain', 'broker'] as const) {
      const p = r.processes[role];
      assert.ok(p.pid && p.pid > 0, `${role}: no pid`);
      assert.ok(p.peakRssMiB > 10, `${role}: peak RSS ${p.peakRssMiB} MiB`);
      assert.ok(p.cpuAvgPct > 0 && p.cpuPeakPct >= p.cpuAvgPct, `${role}: CPU ${p.cpuAvgPct}% avg, ${p.cpuPeakPct}% peak`);
    }
    assert.equal(r.processes.broker.name, 'beam.smp');
    assert.equal(r.processes.server.name, 'node');
  });

  it('times an envelope of anchored objects: admitted in one request, its status settled', function () {
    assert.ok(env, 'the envelope phase ran');
    assert.equal(env.error, undefined);
    assert.ok(env.bytes <= 256 * 1024 && env.bytes > 250 * 1024, `${env.bytes} bytes`);
    assert.ok(env.objects > 500, `${env.objects} objects`);
    assert.equal(env.requests, 1);
    assert.ok(env.anchorMs !== null && env.admitMs !== null && env.settledMs !== null && env.settledMs >= env.admitMs, JSON.stringify(env));
    assert.deepEqual(env.final, { success: env.objects, pending: 0, failure: 0 });
  });

  it('draws the figures: ours beside the paper’s, as SVG', function () {
    const charts = benchCharts([r], readPaper(repoRoot()), 'smoke');
    assert.equal(charts.length, 6);
    const svg = svgChart(charts[2]);
    assert.match(svg, /^<svg /);
    assert.match(svg, /paper, with Quorum/);
    // ours: one point (a circle) per run and series, the paper's four per series
    assert.equal((svg.match(/<circle /g) ?? []).length, 1 + 4 + 4);
  });

  it('npm run bench rejects bad options with a clear error (exit 2)', function () {
    const script = path.join(__dirname, '..', '..', 'scripts', 'bench.js');
    const out = spawnSync(process.execPath, [script, '--rates', '50,abc', '--out', fs.mkdtempSync(path.join(os.tmpdir(), 'sets-bench-'))], { encoding: 'utf8' });
    assert.equal(out.status, 2);
    assert.match(out.stderr, /--rates must be a positive number, got "abc"/);
  });
});

describe('bench: the no-ledger baseline (200 events at 125/s)', function () {
  this.timeout(4 * 60_000);
  let r: BenchRunResult;

  before(async function () {
    r = await benchRun({ ledger: false, rate: 125, events: 200, log: (l) => process.stdout.write(`      ${l}\n`) });
    process.stdout.write(`      ${JSON.stringify({ ...r, processes: undefined })}\n`);
  });

  it('delivers every event to the consumer, validated, through a collection with integrity off', function () {
    assert.equal(r.ledger, false);
    assert.equal(r.sent, 200, r.errors.join('; '));
    assert.equal(r.verified, 200, r.errors.join('; '));
    assert.equal(r.successRate, 1);
    assert.equal(r.leftPending, 0);
    assert.ok(r.soakOk, r.errors.join('; '));
  });
});
