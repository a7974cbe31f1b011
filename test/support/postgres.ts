/**
 * PostgreSQL for the test suite (the PostgreSQL store, lib/store/postgres.ts).
 *
 * - `SETS_TEST_PG_URL` set: use that server (a postgres:// URL whose user may create schemas in its
 *   database). `restart()`/`stopServer()`/`startServer()` reject: we never stop a server we did not
 *   start.
 * - Otherwise: a PRIVATE cluster — `initdb` into a temp dir (Debian's binaries under
 *   /usr/lib/postgresql/<15..>/bin, or `SETS_PG_BIN`), `postgres` listening on 127.0.0.1 on a free
 *   port, its Unix socket in the temp dir (never /var/run/postgresql), password (SCRAM) auth for a
 *   random password. As root the cluster runs as the `postgres` user (PostgreSQL refuses to run as
 *   root; the Debian package creates that user), the temp dir chowned to it.
 *   A small shell watchdog (as that user) holds a pipe from this process: when this process dies
 *   without stopping the cluster (SIGKILL, mocha killed by CI) the pipe closes, and the watchdog
 *   stops the cluster (`pg_ctl stop -m immediate`) and removes its temp dir.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';

export interface PostgresHandle {
  /** postgres://user:password@127.0.0.1:port/postgres */
  url: string;
  /** true for a cluster this handle started (restart/stop/start work) */
  private: boolean;
  /** the data directory of a private cluster */
  dataDir?: string;
  /** Stop the cluster (only one this handle started) and remove its temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** `pg_ctl restart -m fast`: every connection is dropped; resolves once connections are accepted again. */
  restart(): Promise<void>;
  /** `pg_ctl stop -m fast` (the cluster stays installed; startServer() brings it back). */
  stopServer(): Promise<void>;
  /** `pg_ctl start`, then wait until connections are accepted. */
  startServer(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;

function findBinDir(): string {
  const candidates = [process.env.SETS_PG_BIN];
  try {
    const versions = fs
      .readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(path.join('/usr/lib/postgresql', v, 'bin'));
  } catch {
    // no Debian layout
  }
  candidates.push('/usr/local/bin', '/usr/bin');
  for (const c of candidates) if (c && fs.existsSync(path.join(c, 'initdb')) && fs.existsSync(path.join(c, 'pg_ctl'))) return c;
  throw new Error(
    'PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/<version>/bin: install them ' +
      '(apt-get install postgresql), set SETS_PG_BIN to their directory, or set SETS_TEST_PG_URL to a running server',
  );
}

/** uid/gid of the `postgres` user when we are root (PostgreSQL refuses to run as root), else null. */
function postgresUser(): { uid: number; gid: number } | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === 'postgres' && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error('running as root, but there is no `postgres` user to run the test cluster as (apt-get install postgresql creates it)');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function accepting(url: string): Promise<boolean> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function waitAccepting(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await accepting(url)) return;
    await delay(200);
  }
  throw new Error(`PostgreSQL at ${url.replace(/\/\/[^@]*@/, '//')} did not accept connections within ${timeoutMs} ms`);
}

function run(bin: string, args: string[], user: { uid: number; gid: number } | null, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { uid: user?.uid, gid: user?.gid, cwd, timeout: START_TIMEOUT_MS, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(bin)} ${args.join(' ')} failed: ${String(stderr || stdout || err.message).trim()}`, { cause: err }));
      else resolve(String(stdout));
    });
  });
}

// The watchdog ($1 = pg_ctl, $2 = data dir, $3 = temp dir): waits for EOF on its stdin (a pipe from
// the test process that nobody writes to), then stops the cluster at once and removes the temp dir.
const WATCHDOG = `
cat >/dev/null
"$1" -D "$2" stop -m immediate >/dev/null 2>&1
rm -rf "$3"
`;

function external(url: string): PostgresHandle {
  const no = (what: string) => (): Promise<void> => Promise.reject(new Error(`${what}(): the server at SETS_TEST_PG_URL was not started by these tests`));
  return { url, private: false, stop: async () => undefined, restart: no('restart'), stopServer: no('stopServer'), startServer: no('startServer') };
}

async function privateCluster(): Promise<PostgresHandle> {
  const bin = findBinDir();
  const user = postgresUser();
  const port = await freePort();
  // the postgres user must reach the dir: a private TMPDIR (e.g. under /root) would not do
  const dir = fs.mkdtempSync(path.join(user ? '/tmp' : os.tmpdir(), 'sets-pg-'));
  const data = path.join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const pwfile = path.join(dir, 'pw');
  fs.writeFileSync(pwfile, password + '\n', { mode: 0o600 });
  if (user) {
    fs.chownSync(dir, user.uid, user.gid);
    fs.chownSync(pwfile, user.uid, user.gid);
  }
  const pgCtl = path.join(bin, 'pg_ctl');
  const logFile = path.join(dir, 'server.log');
  // fsync off: a throwaway cluster on a shared build machine (crash safety is not under test)
  const serverOpts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200`;
  let watchdog: ChildProcess | undefined;
  try {
    await run(path.join(bin, 'initdb'), ['-D', data, '-U', 'sets', `--pwfile=${pwfile}`, '--auth-local=scram-sha-256', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'], user, dir);
    fs.rmSync(pwfile, { force: true });
    watchdog = spawn('/bin/sh', ['-c', WATCHDOG, 'sets-pg-watchdog', pgCtl, data, dir], { stdio: ['pipe', 'ignore', 'ignore'], uid: user?.uid, gid: user?.gid, detached: true });
    watchdog.unref();
    await run(pgCtl, ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', serverOpts, 'start'], user, dir);
  } catch (err) {
    watchdog?.stdin?.end();
    if (!watchdog) fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `postgres://sets:${password}@127.0.0.1:${port}/postgres`;
  await waitAccepting(url, START_TIMEOUT_MS);
  const wd = watchdog;
  let stopped: Promise<void> | undefined;
  const onExit = (): void => {
    wd.stdin?.end();
  };
  process.once('exit', onExit);
  return {
    url,
    private: true,
    dataDir: data,
    stop(): Promise<void> {
      stopped ??= (async () => {
        process.removeListener('exit', onExit);
        await run(pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop'], user, dir).catch(() => undefined);
        const exited = new Promise<void>((r) => {
          if (wd.exitCode !== null || wd.signalCode !== null) r();
          else wd.once('exit', () => r());
        });
        wd.stdin?.end(); // the watchdog removes the temp dir
        await Promise.race([exited, delay(10_000)]);
        fs.rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
    async restart(): Promise<void> {
      await run(pgCtl, ['-D', data, '-l', logFile, '-m', 'fast', '-w', '-t', '60', '-o', serverOpts, 'restart'], user, dir);
      await waitAccepting(url, START_TIMEOUT_MS);
    },
    async stopServer(): Promise<void> {
      await run(pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop'], user, dir);
    },
    async startServer(): Promise<void> {
      await run(pgCtl, ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', serverOpts, 'start'], user, dir);
      await waitAccepting(url, START_TIMEOUT_MS);
    },
  };
}

let shared: Promise<PostgresHandle> | undefined;

/** The test server: SETS_TEST_PG_URL, else one private cluster per process (started on first use). */
export function postgres(): Promise<PostgresHandle> {
  const url = process.env.SETS_TEST_PG_URL;
  shared ??= url ? Promise.resolve(external(url)) : privateCluster();
  return shared;
}

/** Stop the process's cluster if one was started (call from an `after` hook). */
export async function stopPostgres(): Promise<void> {
  const p = shared;
  shared = undefined;
  if (p) await (await p.catch(() => undefined))?.stop();
}
