/**
 * Resource use of the benchmark's processes, read from /proc (Linux): CPU time from
 * /proc/<pid>/stat (utime + stime, clock ticks), resident memory from /proc/<pid>/status (VmRSS,
 * VmHWM = the process's peak resident set). Services are found by the TCP port they listen on
 * (/proc/net/tcp{,6} → socket inode → the process holding it), so the broker is its beam.smp, the
 * chain its hardhat node, the server its Node-RED process.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

export type Role = 'producer' | 'server' | 'consumer' | 'chain' | 'broker' | 'harness';
export const ROLES: Role[] = ['producer', 'server', 'consumer', 'chain', 'broker', 'harness'];

export interface ProcSample {
  t: number;
  /** utime + stime, clock ticks */
  ticks: number;
  rssKb: number;
  hwmKb: number;
}

export interface ProcUse {
  pid: number | null;
  /** the process's name (comm): node, beam.smp */
  name: string;
  /** CPU time over the window / the window, % of one core */
  cpuAvgPct: number;
  /** highest CPU over any ~1 s between samples in the window, % of one core */
  cpuPeakPct: number;
  /** the process's peak resident set (VmHWM), MiB */
  peakRssMiB: number;
}

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** One reading of a process, or undefined when it is gone (or not readable). */
export function readProc(pid: number): ProcSample | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after "(comm)": state is field 3, utime 14, stime 15
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(rest[11]) + Number(rest[12]);
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { t: Date.now(), ticks, rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** The pid of the process listening on 127.0.0.1/0.0.0.0/:: `port` (TCP), when this user can see it. */
export function listeningPid(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A') continue; // 0A: LISTEN
      if (parseInt(cols[1].split(':')[1], 16) === port) inodes.add(`socket:[${cols[9]}]`);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${d}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(fs.readlinkSync(`/proc/${d}/fd/${fd}`))) return Number(d);
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

/** The process's short name (comm), e.g. beam.smp, node. */
export function procName(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Samples every role's process every `everyMs` until stopped; pids are looked up until found. */
export class ProcSampler {
  readonly samples = new Map<Role, ProcSample[]>();
  readonly pids = new Map<Role, number>();
  /** each process's name (comm), read when it was found: the process may be gone when the run is summed up */
  readonly names = new Map<Role, string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly find: Partial<Record<Role, () => number | undefined>>,
    private readonly everyMs = 500,
  ) {}

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.tick();
  }

  private tick(): void {
    for (const [role, find] of Object.entries(this.find) as Array<[Role, () => number | undefined]>) {
      let pid = this.pids.get(role);
      if (pid === undefined) {
        pid = find();
        if (pid === undefined) continue;
        this.pids.set(role, pid);
        this.names.set(role, procName(pid));
      }
      const s = readProc(pid);
      if (!s) continue;
      const list = this.samples.get(role) ?? [];
      list.push(s);
      this.samples.set(role, list);
    }
  }

  /** CPU and memory of each role over [from, to] (ms). */
  use(from: number, to: number): Record<Role, ProcUse> {
    const hz = ticksPerSecond();
    const out = {} as Record<Role, ProcUse>;
    for (const role of ROLES) {
      const all = this.samples.get(role) ?? [];
      // the last sample at or before the window, and every sample in it
      const before = all.filter((s) => s.t <= from).pop();
      const win = [...(before ? [before] : []), ...all.filter((s) => s.t > from && s.t <= to)];
      let avg = 0;
      let peak = 0;
      if (win.length >= 2) {
        const first = win[0];
        const last = win[win.length - 1];
        avg = ((last.ticks - first.ticks) / hz / Math.max(0.001, (to - from) / 1000)) * 100;
        for (let i = 0; i < win.length; i++) {
          const j = win.findIndex((s, k) => k > i && s.t - win[i].t >= 950);
          if (j < 0) break;
          peak = Math.max(peak, ((win[j].ticks - win[i].ticks) / hz / ((win[j].t - win[i].t) / 1000)) * 100);
        }
      }
      const hwm = Math.max(0, ...all.filter((s) => s.t <= to).map((s) => s.hwmKb));
      out[role] = { pid: this.pids.get(role) ?? null, name: this.names.get(role) ?? '?', cpuAvgPct: round1(avg), cpuPeakPct: round1(Math.max(peak, avg)), peakRssMiB: round1(hwm / 1024) };
    }
    return out;
  }
}

export function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
