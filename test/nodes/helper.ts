/**
 * node-red-node-test-helper, typed, initialised against the Node-RED runtime under test:
 * `SETS_NODE_RED_PATH` (a node-red package dir, e.g. Node-RED 5 on Node 24) or the project's own
 * devDependency (Node-RED 4.1). Only the helper's public API is used, so the same suites run on both.
 *
 * Also: the SETS node modules, flow-building shorthands, and small waiting utilities.
 */
import { createHook } from 'node:async_hooks';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Node, NodeAPI, NodeMessage, NodeStatus } from 'node-red';

/** A node definition in a test flow (what the editor would deploy). */
export interface FlowNode {
  id: string;
  type: string;
  z?: string;
  name?: string;
  wires?: string[][];
  [prop: string]: unknown;
}

export type Credentials = Record<string, Record<string, string>>;

export type NodeModule = (RED: NodeAPI) => void | Promise<void>;

interface SpyCall {
  args: unknown[];
}
interface LogSpy {
  getCalls(): SpyCall[];
}

export interface TestHelper {
  init(runtimePath: string, userSettings?: Record<string, unknown>): void;
  load(nodes: NodeModule | NodeModule[], flow: FlowNode[], credentials?: Credentials): Promise<void>;
  setFlows(flow: FlowNode[], type: 'full' | 'flows' | 'nodes', credentials?: Credentials): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): Node | null;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
  log(): LogSpy;
  /** the runtime's credential store (internal module, same in Node-RED 4 and 5) */
  credentials: { get(id: string): Record<string, string> | undefined; getDefinition(type: string): Record<string, { type: string }> | undefined };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the helper ships no types; typed by TestHelper above
export const helper = require('node-red-node-test-helper') as TestHelper;

const runtimePath = require.resolve(process.env.SETS_NODE_RED_PATH || 'node-red');
helper.init(runtimePath);

/** Version of the Node-RED runtime under test (for the suite titles): runtimePath is <pkg>/lib/red.js. */
export const nodeRedVersion = (
  JSON.parse(readFileSync(path.join(path.dirname(runtimePath), '..', 'package.json'), 'utf8')) as { version: string }
).version;

/**
 * A flow node as the editor saves it: with a position. The runtime takes nodes without x/y for
 * config nodes, so every node on a tab gets one (config nodes and tabs are left alone).
 */
export function placed(n: FlowNode): FlowNode {
  if (n.type === 'tab' || !n.z || 'x' in n) return n;
  return { ...n, x: 100, y: 100 };
}

/** Every SETS node module, loaded from the build output next to this file. */
function nodeModule(type: string): NodeModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- node modules are CommonJS `export =` functions
  return require(`../../nodes/${type}/${type}`) as NodeModule;
}

export const NODE_TYPES = [
  'sets-ledger',
  'sets-broker',
  'sets-taxii',
  'anchor-hash',
  'verify-hash',
  'taxii-publish',
  'taxii-inquire',
  'rabbit-subscribe',
  'rabbit-ack',
  'rabbit-publish',
] as const;

export const allNodes: NodeModule[] = NODE_TYPES.map(nodeModule);

/** Messages arriving at a `helper` node, collected and awaitable. */
export class Collector {
  readonly messages: NodeMessage[] = [];
  private waiters: Array<{ n: number; resolve: () => void }> = [];

  constructor(node: Node | null) {
    if (!node) throw new Error('collector: node not found');
    node.on('input', (msg: NodeMessage) => {
      this.messages.push(msg);
      this.waiters = this.waiters.filter((w) => {
        if (this.messages.length >= w.n) {
          w.resolve();
          return false;
        }
        return true;
      });
    });
  }

  /** Resolve once `n` messages have arrived in total; reject after `timeoutMs`. */
  wait(n: number, timeoutMs = 15_000): Promise<NodeMessage[]> {
    if (this.messages.length >= n) return Promise.resolve(this.messages.slice(0, n));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`expected ${n} message(s), got ${this.messages.length} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.messages.slice(0, n));
        },
      };
      this.waiters.push(waiter);
    });
  }
}

/** Wait until `check` returns a truthy value (polling every 20 ms), or fail after `timeoutMs`. */
export async function until<T>(what: string, check: () => T | Promise<T>, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * What a node reported: status badges, errors (`done(err)` and `node.error`), warnings. Uses the
 * helper's `call:<method>` events, so it sees calls made after it is attached.
 */
export class Recorder {
  readonly statuses: NodeStatus[] = [];
  readonly errors: Array<{ err: unknown; msg?: NodeMessage }> = [];
  readonly warnings: unknown[] = [];

  constructor(node: Node | null) {
    if (!node) throw new Error('recorder: node not found');
    const n = node as unknown as { on(event: string, fn: (call: SpyCall) => void): void };
    n.on('call:status', (call) => this.statuses.push(call.args[0] as NodeStatus));
    n.on('call:error', (call) => this.errors.push({ err: call.args[0], msg: call.args[1] as NodeMessage | undefined }));
    n.on('call:warn', (call) => this.warnings.push(call.args[0]));
  }

  get lastStatus(): NodeStatus | undefined {
    return this.statuses[this.statuses.length - 1];
  }

  /** Text of every error and warning, for "no secret in the log" checks. */
  text(): string {
    const str = (v: unknown): string => (v instanceof Error ? `${v.message} ${String((v as { code?: unknown }).code)}` : JSON.stringify(v) ?? '');
    return [...this.errors.map((e) => str(e.err)), ...this.warnings.map(str)].join('\n');
  }
}

/** Every message the Node-RED log received while the flow ran (for "no secret in the log" checks). */
export function logText(): string {
  return helper
    .log()
    .getCalls()
    .map((c) => JSON.stringify(c.args))
    .join('\n');
}

/** Resource types that keep a process alive when left open. */
const HANDLE_TYPES = new Set(['Timeout', 'TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'UDPWRAP', 'FSEVENTWRAP', 'SIGNALWRAP']);

interface Tracked {
  type: string;
  res: { hasRef?: () => boolean; _destroyed?: boolean };
  stack: string;
}

/**
 * Open handles created while tracking (async_hooks, like mocha's and jest's open-handle
 * detection): timers and sockets that still hold the event loop. Unref'd resources (an idle
 * keep-alive socket in Node's agent pool, which closes by itself) do not count.
 */
export class OpenHandles {
  private readonly live = new Map<number, Tracked>();
  private readonly hook = createHook({
    init: (id, type, _trigger, res) => {
      if (!HANDLE_TYPES.has(type)) return;
      const full = new Error().stack ?? '';
      if (full.includes(`${path.sep}mocha${path.sep}`)) return; // the test runner's own timers
      const stack = full.split('\n').slice(3, 9).join('\n');
      this.live.set(id, { type, res: res as Tracked['res'], stack });
    },
    destroy: (id) => {
      this.live.delete(id);
    },
  });

  start(): this {
    this.hook.enable();
    return this;
  }

  stop(): void {
    this.hook.disable();
  }

  /** Handles created since start() that still hold the event loop. */
  open(): Tracked[] {
    return [...this.live.values()].filter((t) => !t.res._destroyed && (t.res.hasRef ? t.res.hasRef() : true));
  }

  /** Wait until none is open (closing is often asynchronous), else fail listing where they were made. */
  async expectNone(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let left = this.open();
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50).unref());
      left = this.open();
    }
    this.stop();
    if (left.length > 0) {
      throw new Error(`${left.length} open handle(s) after unload:\n${left.map((t) => `${t.type}\n${t.stack}`).join('\n---\n')}`);
    }
  }
}

/**
 * The flow configuration as the runtime holds it after a deploy — what it saves as flows.json
 * (credentials are stored apart). Read through the helper's handle on the runtime's nodes module,
 * which Node-RED 4 and 5 both expose as `getFlows()`.
 */
export function deployedFlows(): unknown {
  const internal = helper as unknown as { _redNodes: { getFlows(): { flows?: unknown } | null } };
  return internal._redNodes.getFlows()?.flows;
}
