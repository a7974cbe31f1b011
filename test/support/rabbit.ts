/**
 * RabbitMQ for the test suite.
 *
 * - `SETS_TEST_AMQP_URL` set: use that broker. `rabbitmqctl` commands (closeAllConnections,
 *   stopApp, ...) go to the node described by `SETS_TEST_RABBIT_CTL` (JSON written by the process
 *   that started a private node, see `ctlEnv`), else to the system `rabbitmqctl` on PATH
 *   (`-n $SETS_TEST_RABBITMQ_NODE` when set). `stop()` never stops a broker it did not start.
 * - Otherwise: a PRIVATE `rabbitmq-server` node — unique node name `sets-test-<pid>-<rand>@localhost`,
 *   free AMQP and distribution ports bound to 127.0.0.1, its own mnesia/log/config/cookie under a
 *   temp dir, no plugins. As root the node runs as the `rabbitmq` user (the Debian scripts do the
 *   same; the temp dir is chowned to it). Erlang cookie: HOME points at the temp dir, which holds a
 *   random `.erlang.cookie`, for the server and for every `rabbitmqctl` we run.
 *   The node is wrapped by a small shell watchdog (process group leader): `stop()` sends SIGTERM to
 *   the group (graceful broker stop, SIGKILL after 20 s), `process.on('exit')` SIGKILLs it, and
 *   when this process dies without running exit handlers (SIGKILL, mocha killed by CI) the
 *   watchdog notices at once (its stdin pipe closes) and stops the broker and removes its dir.
 *   `epmd` (shared, started by Erlang on demand) is left running, as Erlang does.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as amqp from 'amqplib';

export interface RabbitHandle {
  /** amqp://guest:guest@127.0.0.1:<port> (vhost "/") */
  url: string;
  /** Erlang node name, when known */
  node?: string;
  /** Stop the broker (only a broker this handle started); removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** `rabbitmqctl close_all_connections` — the broker drops every client connection (all vhosts, or one). */
  closeAllConnections(vhost?: string): Promise<void>;
  /** `rabbitmqctl stop_app`: the broker stops accepting/serving AMQP (node stays up). */
  stopApp(): Promise<void>;
  /** `rabbitmqctl start_app`, then wait until AMQP connections are accepted again. */
  startApp(): Promise<void>;
  /** Run `rabbitmqctl <args>` against this node; resolves with stdout, rejects with stderr. */
  ctl(args: string[]): Promise<string>;
  /**
   * A full restart of the broker node: the Erlang node is stopped (gracefully, SIGKILL after 20 s)
   * and started again on the same data dir, node name and ports; durable queues and persistent
   * messages survive. Resolves once AMQP connections are accepted again. Only for a broker this
   * handle started (rejects for SETS_TEST_AMQP_URL brokers).
   */
  restart(): Promise<void>;
  /**
   * Environment that lets another process (a child mocha) drive this node with `rabbitmqctl`:
   * pass it as JSON in `SETS_TEST_RABBIT_CTL` next to `SETS_TEST_AMQP_URL`.
   */
  ctlEnv?: Record<string, string>;
}

const START_TIMEOUT_MS = Number(process.env.SETS_TEST_RABBIT_START_TIMEOUT_MS ?? 90_000);
const CTL_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 20_000;

/** Where the real (non-wrapper) RabbitMQ scripts live. */
function findBinDir(): string {
  const candidates = [
    process.env.SETS_RABBITMQ_BIN,
    '/usr/lib/rabbitmq/bin', // Debian/Ubuntu package
    '/usr/local/opt/rabbitmq/sbin', // Homebrew (Intel)
    '/opt/homebrew/opt/rabbitmq/sbin', // Homebrew (Apple silicon)
    '/opt/rabbitmq/sbin',
    '/usr/lib/rabbitmq/sbin',
  ];
  for (const c of candidates) {
    if (c && fs.existsSync(path.join(c, 'rabbitmq-server'))) return c;
  }
  throw new Error(
    'rabbitmq-server not found (looked in /usr/lib/rabbitmq/bin and others): install it (apt-get install rabbitmq-server), ' +
      'set SETS_RABBITMQ_BIN to the directory holding rabbitmq-server and rabbitmqctl, or set SETS_TEST_AMQP_URL',
  );
}

/** uid/gid of the `rabbitmq` user when we are root (the broker must not run as root), else null. */
function rabbitUser(): { uid: number; gid: number } | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === 'rabbitmq' && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // no /etc/passwd: run as ourselves
  }
  return null;
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

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One AMQP handshake attempt; true when the broker accepted it. */
async function amqpReady(url: string): Promise<boolean> {
  try {
    const c = await amqp.connect(url, { timeout: 2000 });
    c.on('error', () => undefined);
    await c.close().catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}

async function waitAmqp(url: string, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('RabbitMQ node exited during startup');
    if (await amqpReady(url)) return;
    await delay(200);
  }
  throw new Error(`RabbitMQ at ${url.replace(/\/\/[^@]*@/, '//')} did not accept AMQP connections within ${timeoutMs} ms`);
}

interface CtlTarget {
  bin: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  cwd?: string;
}

function runCtl(t: CtlTarget, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      t.bin,
      [...t.args, ...args],
      { env: t.env, uid: t.uid, gid: t.gid, cwd: t.cwd, timeout: CTL_TIMEOUT_MS, maxBuffer: 8 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${String(stderr || stdout || err.message).trim()}`, { cause: err }));
        } else {
          resolve(String(stdout));
        }
      },
    );
  });
}

function handleFor(
  url: string,
  ctlTarget: CtlTarget | null,
  node: string | undefined,
  stop: () => Promise<void>,
  ctlEnv?: Record<string, string>,
  restart: () => Promise<void> = () => Promise.reject(new Error('restart(): this broker was not started by this process (SETS_TEST_AMQP_URL)')),
): RabbitHandle {
  const ctl = (args: string[]): Promise<string> => {
    if (!ctlTarget) return Promise.reject(new Error('rabbitmqctl is not available for this broker'));
    return runCtl(ctlTarget, args);
  };
  return {
    url,
    node,
    stop,
    restart,
    ctl,
    ctlEnv,
    async closeAllConnections(vhost?: string) {
      const scope = vhost ? ['--vhost', vhost] : ['--global'];
      await ctl(['close_all_connections', ...scope, 'sets test: simulated broker drop']);
    },
    async stopApp() {
      await ctl(['stop_app']);
    },
    async startApp() {
      await ctl(['start_app']);
      await waitAmqp(url, START_TIMEOUT_MS);
    },
  };
}

/** A broker somebody else runs (SETS_TEST_AMQP_URL). */
function externalRabbit(url: string): RabbitHandle {
  let target: CtlTarget | null = null;
  const raw = process.env.SETS_TEST_RABBIT_CTL;
  if (raw) {
    const e = JSON.parse(raw) as Record<string, string>;
    const env: NodeJS.ProcessEnv = { ...process.env, ...e };
    target = {
      bin: path.join(e.SETS_RABBITMQ_BIN, 'rabbitmqctl'),
      args: ['-n', e.RABBITMQ_NODENAME],
      env,
      uid: e.SETS_RABBITMQ_UID ? Number(e.SETS_RABBITMQ_UID) : undefined,
      gid: e.SETS_RABBITMQ_GID ? Number(e.SETS_RABBITMQ_GID) : undefined,
      cwd: e.HOME,
    };
    return handleFor(url, target, e.RABBITMQ_NODENAME, async () => undefined, e);
  }
  const node = process.env.SETS_TEST_RABBITMQ_NODE;
  target = { bin: 'rabbitmqctl', args: node ? ['-n', node] : [], env: process.env };
  return handleFor(url, target, node, async () => undefined);
}

// The watchdog: runs rabbitmq-server ($1), forwards TERM/INT/HUP to it (the script stops the
// broker gracefully), and stops it when the test process is gone: its stdin is a pipe from the test
// process that nobody writes to; when that process dies the kernel closes the pipe, `cat` sees EOF
// and signals the watchdog (USR1), which stops the broker and removes the node's temp dir ($2).
// (No polling of /proc/<pid>: that is invisible across users on hidepid mounts. fd 3: a
// background job's stdin is /dev/null in sh unless redirected explicitly.)
const WATCHDOG = `
server="$1"; dir="$2"
"$server" </dev/null &
child=$!
stop_child() { kill -TERM "$child" 2>/dev/null; wait "$child"; }
trap 'stop_child; exit 0' TERM INT HUP
trap 'stop_child; rm -rf "$dir"; exit 0' USR1
exec 3<&0
(cat <&3 >/dev/null; kill -USR1 $$ 2>/dev/null) &
reader=$!
wait "$child"
kill "$reader" 2>/dev/null
`;

async function privateRabbit(): Promise<RabbitHandle> {
  const binDir = findBinDir();
  const user = rabbitUser();
  const [amqpPort, distPort0] = [await freePort(), await freePort()];
  const distPort = distPort0 === amqpPort ? await freePort() : distPort0;
  const node = `sets-test-${process.pid}-${randomBytes(3).toString('hex')}@localhost`;
  // The rabbitmq user must be able to reach the dir: a private TMPDIR (e.g. under /root) would not do.
  const tmpBase = process.env.SETS_TEST_RABBIT_TMP ?? (user ? '/tmp' : os.tmpdir());
  const dir = fs.mkdtempSync(path.join(tmpBase, 'sets-rabbit-'));
  const files = {
    plugins: path.join(dir, 'enabled_plugins'),
    envConf: path.join(dir, 'rabbitmq-env.conf'),
    conf: path.join(dir, 'rabbitmq.conf'),
    advanced: path.join(dir, 'advanced.config'),
    cookie: path.join(dir, '.erlang.cookie'),
    out: path.join(dir, 'console.log'),
  };
  fs.mkdirSync(path.join(dir, 'mnesia'));
  fs.mkdirSync(path.join(dir, 'log'));
  fs.writeFileSync(files.plugins, '[].\n');
  fs.writeFileSync(files.envConf, '# private test node: no system rabbitmq-env.conf\n');
  fs.writeFileSync(files.conf, ['listeners.tcp.1 = 127.0.0.1:' + amqpPort, 'disk_free_limit.absolute = 1MB', ''].join('\n'));
  fs.writeFileSync(files.advanced, '[].\n');
  fs.writeFileSync(files.cookie, randomBytes(20).toString('hex').toUpperCase(), { mode: 0o400 });
  if (user) {
    const chownAll = (p: string): void => {
      fs.chownSync(p, user.uid, user.gid);
      if (fs.statSync(p).isDirectory()) for (const n of fs.readdirSync(p)) chownAll(path.join(p, n));
    };
    chownAll(dir);
  }

  const nodeEnv: Record<string, string> = {
    HOME: dir,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: files.plugins,
    RABBITMQ_CONF_ENV_FILE: files.envConf,
    RABBITMQ_CONFIG_FILE: files.conf,
    RABBITMQ_ADVANCED_CONFIG_FILE: files.advanced,
    // distribution (rabbitmqctl <-> node) on loopback only
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    SETS_RABBITMQ_BIN: binDir,
  };
  if (user) {
    nodeEnv.SETS_RABBITMQ_UID = String(user.uid);
    nodeEnv.SETS_RABBITMQ_GID = String(user.gid);
  }
  // Our own settings win over anything RABBITMQ_*/ERL_* inherited from the caller's environment.
  const baseEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(RABBITMQ_|ERL_)/.test(k)) baseEnv[k] = v;
  }
  const env: NodeJS.ProcessEnv = { ...baseEnv, ...nodeEnv };
  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;

  // One launch of the node (the watchdog and rabbitmq-server under it, in their own process
  // group); restart() launches it again on the same dir, node name and ports.
  interface Launch {
    child: ChildProcess;
    pgid: number | undefined;
    exited: boolean;
    exitedP: Promise<void>;
  }
  const launch = (): Launch => {
    const outFd = fs.openSync(files.out, 'a');
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', WATCHDOG, 'sets-rabbit-watchdog', path.join(binDir, 'rabbitmq-server'), dir], {
        env,
        cwd: dir,
        uid: user?.uid,
        gid: user?.gid,
        detached: true, // own process group: stop() signals the whole group
        stdio: ['pipe', outFd, outFd], // stdin: the parent-death pipe (never written)
      });
    } finally {
      fs.closeSync(outFd);
    }
    const l: Launch = { child, pgid: child.pid, exited: false, exitedP: Promise.resolve() };
    l.exitedP = new Promise<void>((resolve) => {
      child.once('exit', () => {
        l.exited = true;
        resolve();
      });
      child.once('error', () => {
        l.exited = true;
        resolve();
      });
    });
    child.unref();
    // the pipe must not keep this process alive either
    const stdin: unknown = child.stdin;
    if (stdin && typeof (stdin as { unref?: unknown }).unref === 'function') (stdin as { unref(): void }).unref();
    child.stdin?.on('error', () => undefined);
    return l;
  };
  let current = launch();

  const killGroup = (sig: NodeJS.Signals): void => {
    if (current.pgid === undefined) return;
    try {
      process.kill(-current.pgid, sig);
    } catch {
      // already gone
    }
  };
  const onExit = (): void => {
    killGroup('SIGKILL');
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  };
  process.on('exit', onExit);

  /** Stop the current launch: SIGTERM to the group (graceful broker stop), SIGKILL after the grace period. */
  const halt = async (): Promise<void> => {
    if (!current.exited) {
      killGroup('SIGTERM');
      let t: NodeJS.Timeout | undefined;
      await Promise.race([current.exitedP, new Promise<void>((r) => (t = setTimeout(r, STOP_GRACE_MS)))]);
      clearTimeout(t);
    }
    killGroup('SIGKILL'); // stragglers of the group (or all of it after the grace period)
    await current.exitedP;
    current.child.stdin?.destroy();
  };

  let stopped: Promise<void> | undefined;
  let restarting: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await restarting?.catch(() => undefined);
      await halt();
      process.removeListener('exit', onExit);
      fs.rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  const restart = (): Promise<void> => {
    if (stopped) return Promise.reject(new Error(`RabbitMQ node ${node} was stopped: cannot restart it`));
    restarting ??= (async () => {
      try {
        await halt();
        current = launch();
        const l = current;
        await waitAmqp(url, START_TIMEOUT_MS, () => !l.exited);
      } finally {
        restarting = undefined;
      }
    })();
    return restarting;
  };

  try {
    await waitAmqp(url, START_TIMEOUT_MS, () => !current.exited);
  } catch (err) {
    let tail = '';
    try {
      tail = fs.readFileSync(files.out, 'utf8').slice(-3000);
      const logFile = path.join(dir, 'log', `${node}.log`);
      if (fs.existsSync(logFile)) tail += '\n' + fs.readFileSync(logFile, 'utf8').slice(-3000);
    } catch {
      // nothing to add
    }
    await stop();
    throw new Error(`private RabbitMQ node ${node} failed to start: ${(err as Error).message}\n${tail}`);
  }

  const ctlTarget: CtlTarget = {
    bin: path.join(binDir, 'rabbitmqctl'),
    args: ['-n', node],
    env,
    uid: user?.uid,
    gid: user?.gid,
    cwd: dir,
  };
  return handleFor(url, ctlTarget, node, stop, nodeEnv, restart);
}

/**
 * The broker of the tests: SETS_TEST_AMQP_URL when set, else a private node.
 * `{ private: true }`: always a private node this process owns (it can be restarted), whatever
 * SETS_TEST_AMQP_URL says.
 */
export async function startRabbit(opts: { private?: boolean } = {}): Promise<RabbitHandle> {
  const url = process.env.SETS_TEST_AMQP_URL;
  if (url && !opts.private) return externalRabbit(url);
  return privateRabbit();
}
