/**
 * The benchmark's plots, in the style of the paper's Figures 7–10 (a value against the send rate,
 * one line per configuration), with the paper's own figures (bench/paper-figures.json) beside
 * ours. A small SVG writer; PNGs are rendered by headless Chromium (playwright-core, the system's
 * /usr/bin/chromium or SETS_CHROMIUM). No plotting library.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenchRunResult } from './bench-run';

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Array<[number, number]>;
}

export interface Chart {
  file: string;
  title: string;
  xLabel: string;
  yLabel: string;
  log?: boolean;
  /** fixed y range (linear charts) */
  yRange?: [number, number];
  series: Series[];
}

const W = 720;
const H = 440;
const M = { l: 78, r: 20, t: 44, b: 110 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000) return `${Math.round(v / 100) / 10}k`;
  if (a >= 10) return String(Math.round(v));
  if (a >= 1) return String(Math.round(v * 10) / 10);
  return String(Number(v.toPrecision(2)));
}

/** One chart as an SVG document. */
export function svgChart(c: Chart): string {
  const pts = c.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!c.log || y > 0));
  const xs = pts.map(([x]) => x);
  const ys = pts.map(([, y]) => y);
  const xMin = Math.min(40, ...xs);
  const xMax = Math.max(130, ...xs);
  let yMin = c.log ? 10 ** Math.floor(Math.log10(Math.min(...ys, 1))) : Math.min(0, ...ys);
  let yMax = c.log ? 10 ** Math.ceil(Math.log10(Math.max(...ys, 1))) : Math.max(...ys, 0) * 1.1 || 1;
  if (yMax <= yMin) yMax = yMin + 1;
  if (!c.log && yMin > 0) yMin = 0;
  if (!c.log && c.yRange) [yMin, yMax] = [Math.min(c.yRange[0], ...ys), Math.max(c.yRange[1], ...ys)];
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const X = (x: number): number => M.l + ((x - xMin) / (xMax - xMin)) * pw;
  const Y = (y: number): number =>
    c.log ? M.t + ph - ((Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * ph : M.t + ph - ((y - yMin) / (yMax - yMin)) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`,
  ];
  // grid and ticks
  const yTicks: number[] = [];
  if (c.log) for (let v = yMin; v <= yMax * 1.0001; v *= 10) yTicks.push(v);
  else for (let i = 0; i <= 5; i++) yTicks.push(yMin + ((yMax - yMin) * i) / 5);
  for (const v of yTicks) {
    out.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${Y(v)}" y2="${Y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${M.l - 6}" y="${Y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (let x = Math.ceil(xMin / 25) * 25; x <= xMax; x += 25) {
    out.push(`<line x1="${X(x)}" x2="${X(x)}" y1="${M.t}" y2="${M.t + ph}" stroke="#eee"/>`);
    out.push(`<text x="${X(x)}" y="${M.t + ph + 16}" text-anchor="middle">${x}</text>`);
  }
  out.push(`<rect x="${M.l}" y="${M.t}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  out.push(`<text x="${M.l + pw / 2}" y="${M.t + ph + 36}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  // series
  c.series.forEach((s, i) => {
    const p = s.points.filter(([, y]) => Number.isFinite(y) && (!c.log || y > 0)).sort((a, b) => a[0] - b[0]);
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    if (p.length > 1) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${p.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of p) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
    const lx = M.l + (i % 2) * (pw / 2);
    const ly = M.t + ph + 58 + Math.floor(i / 2) * 18;
    out.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${lx + 32}" y="${ly}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

interface PaperRow {
  sendRate: number;
  successRate: number;
  throughput: number;
  latencyS: number;
  cpuPct: number;
  memory: number;
}
interface PaperFigures {
  noLedger: { rows: PaperRow[] };
  ledger: { rows: PaperRow[] };
}

export function readPaper(root: string): PaperFigures {
  return JSON.parse(fs.readFileSync(path.join(root, 'bench', 'paper-figures.json'), 'utf8')) as PaperFigures;
}

/** Figures 7–10 (plus success rate) for a set of runs, ours beside the paper's. */
export function benchCharts(runs: BenchRunResult[], paper: PaperFigures, prefix: string): Chart[] {
  const ours = (ledger: boolean, f: (r: BenchRunResult) => number): Array<[number, number]> => runs.filter((r) => r.ledger === ledger).map((r) => [r.achievedRate, f(r)]);
  const theirs = (ledger: boolean, f: (r: PaperRow) => number): Array<[number, number]> => (ledger ? paper.ledger : paper.noLedger).rows.map((r) => [r.sendRate, f(r)]);
  const four = (f: (r: BenchRunResult) => number, g: (r: PaperRow) => number): Series[] => [
    { name: 'SETS (ours), with ledger', color: '#c0392b', points: ours(true, f) },
    { name: 'SETS (ours), no ledger', color: '#2471a3', points: ours(false, f) },
    { name: 'paper, with Quorum', color: '#e59866', dashed: true, points: theirs(true, g) },
    { name: 'paper, baseline', color: '#7fb3d5', dashed: true, points: theirs(false, g) },
  ];
  const x = 'achieved send rate (events/s)';
  return [
    { file: `${prefix}-fig7-latency.png`, title: "Latency (paper's definition) vs send rate", xLabel: x, yLabel: 'latency (s), log scale', log: true, series: four((r) => r.paperLatencyS, (r) => r.latencyS) },
    {
      file: `${prefix}-fig7b-event-latency.png`,
      title: 'Per-event latency p50 / p99 (ours) vs send rate',
      xLabel: x,
      yLabel: 'latency (s), log scale',
      log: true,
      series: [
        { name: 'with ledger, p50', color: '#c0392b', points: ours(true, (r) => (r.latencyMs?.p50 ?? NaN) / 1000) },
        { name: 'with ledger, p99', color: '#c0392b', dashed: true, points: ours(true, (r) => (r.latencyMs?.p99 ?? NaN) / 1000) },
        { name: 'no ledger, p50', color: '#2471a3', points: ours(false, (r) => (r.latencyMs?.p50 ?? NaN) / 1000) },
        { name: 'no ledger, p99', color: '#2471a3', dashed: true, points: ours(false, (r) => (r.latencyMs?.p99 ?? NaN) / 1000) },
      ],
    },
    { file: `${prefix}-fig8-throughput.png`, title: 'Throughput vs send rate', xLabel: x, yLabel: 'verified events/s, log scale', log: true, series: four((r) => r.throughput, (r) => r.throughput) },
    { file: `${prefix}-success-rate.png`, title: 'Success rate vs send rate', xLabel: x, yLabel: 'verified at consumer / sent', yRange: [0.9, 1.0], series: four((r) => r.successRate, (r) => r.successRate) },
    { file: `${prefix}-fig9-cpu.png`, title: 'CPU: producer + consumer + server, summed peaks', xLabel: x, yLabel: 'CPU (% of one core)', series: four((r) => r.serverSideCpuPeakPct, (r) => r.cpuPct) },
    { file: `${prefix}-fig10-memory.png`, title: 'Memory: producer + consumer + server, summed peaks', xLabel: x, yLabel: 'resident memory (MiB)', series: four((r) => r.serverSidePeakRssMiB, (r) => r.memory) },
  ];
}

/** Render charts to PNG files in `dir` with headless Chromium; returns the files written. */
export async function renderPngs(charts: Chart[], dir: string): Promise<string[]> {
  // playwright-core is a devDependency: loaded only when plots are drawn
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { chromium } = require('playwright-core') as typeof import('playwright-core');
  const browser = await chromium.launch({ executablePath: process.env.SETS_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const files: string[] = [];
  try {
    const page = await browser.newPage({ viewport: { width: W, height: H } });
    for (const c of charts) {
      await page.setContent(`<!doctype html><html><body style="margin:0">${svgChart(c)}</body></html>`);
      const file = path.join(dir, c.file);
      await page.locator('svg').screenshot({ path: file });
      files.push(file);
    }
  } finally {
    await browser.close();
  }
  return files;
}
