/**
 * What the server-side node tests share: the SETS node modules plus the three server nodes, a
 * bridge from node-red-node-test-helper's real HTTP server to the runtime's RED.httpNode (the
 * helper builds a fresh, unmounted express app as RED.httpNode on every load), raw HTTP requests,
 * and direct access to an embedded store's LevelDB files to play an attacker who alters a record.
 */
import type { Express, NextFunction, Request, Response } from 'express';
import { ClassicLevel } from 'classic-level';
import { allNodes, helper, type NodeModule } from './helper';
import { LAYER_MARK } from '../../nodes/taxii-server/registry';

/* eslint-disable @typescript-eslint/no-require-imports -- node modules are CommonJS `export =` functions */
const storeModule = require('../../nodes/sets-store/sets-store') as NodeModule;
const serverModule = require('../../nodes/taxii-server/taxii-server') as NodeModule;
const statusModule = require('../../nodes/integrity-status/integrity-status') as NodeModule;
/* eslint-enable @typescript-eslint/no-require-imports */

/** The helper's methods that test/nodes/helper.ts does not type. */
const extra = helper as unknown as { url(): string; settings(s: Record<string, unknown>): Record<string, unknown> };

/** Base URL of the helper's HTTP server (after startServer). */
export function baseUrl(): string {
  return extra.url();
}

/** Runtime settings for the next load() (e.g. `userDir`); merged with Node-RED's defaults. */
export function runtimeSettings(s: Record<string, unknown>): void {
  extra.settings(s);
}

/** RED.httpNode of the runtime under test, as the last load() created it. */
let httpNode: Express | undefined;

/** A module that only remembers RED.httpNode (the helper hands every module the same RED). */
const capture: NodeModule = (RED) => {
  httpNode = (RED as unknown as { httpNode: Express }).httpNode;
};

/** Every SETS node, the server nodes included. */
export const serverNodes: NodeModule[] = [capture, ...allNodes, storeModule, serverModule, statusModule];

/** helper apps already forwarding (startServer makes a new one each time) */
const bridged = new WeakSet<Express>();

/**
 * Route requests reaching the helper's HTTP server (helper.url()) to RED.httpNode, as Node-RED's
 * own server does (httpNodeRoot `/`). Call after helper.startServer().
 */
export function bridgeHttpNode(): void {
  const app = (helper as unknown as { _app?: Express })._app;
  if (!app) throw new Error('bridgeHttpNode: start the helper server first');
  if (bridged.has(app)) return;
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (httpNode) httpNode(req, res, next);
    else next();
  });
  bridged.add(app);
}

/** Express layers on RED.httpNode that belong to taxii-server nodes, by node id. */
export function mountedServers(): string[] {
  const a = httpNode as unknown as { _router?: { stack?: Array<{ handle?: Record<string, unknown> }> } } | undefined;
  const stack = a?._router?.stack ?? [];
  return stack.map((l) => l.handle?.[LAYER_MARK]).filter((v): v is string => typeof v === 'string');
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** One HTTP request with a timeout; the body is parsed as JSON when it is JSON. */
export async function raw(method: string, url: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const res = await fetch(url, { method, headers: opts.headers, body: opts.body, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export const TAXII = 'application/taxii+json;version=2.1';

export function basic(user: string, password: string): Record<string, string> {
  return { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`, Accept: TAXII };
}

/**
 * Alter a stored record in an embedded store's LevelDB directory while no process has it open
 * (Node-RED unloaded): the attacker of paper step 5.b who edits the database behind the server.
 * Returns how many record versions were changed.
 */
export async function tamperStoredRecord(dir: string, collection: string, id: string, change: (object: Record<string, unknown>) => void): Promise<number> {
  const db = new ClassicLevel<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await db.open();
  let changed = 0;
  try {
    const prefix = ['r', collection, id].join('\u0000') + '\u0000';
    for await (const [key, value] of db.iterator({ gte: prefix, lt: prefix.slice(0, -1) + '\u0001' })) {
      const rec = JSON.parse(value) as { object: Record<string, unknown> };
      change(rec.object);
      await db.put(key, JSON.stringify(rec));
      changed++;
    }
  } finally {
    await db.close();
  }
  return changed;
}
