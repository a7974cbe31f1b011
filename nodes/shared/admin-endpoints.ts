/**
 * The editor's admin endpoints (issue 13): "Test connection" in the config dialogs and the
 * collection picker of the TAXII client nodes.
 *
 *   POST sets/probe/:kind        kind = ledger | broker | taxii | store
 *        body { id?, config: <dialog values>, credentials: <dialog credential values> }
 *        -> 200 { ok, message }
 *   GET  sets/collections?taxii=<sets-taxii id>      (the deployed configuration)
 *   POST sets/collections  body { id?, config, credentials }   (the dialog's values, saved or not)
 *        -> 200 { ok, message, collections?: [{ id, title, alias?, can_read, can_write }] }
 *
 * The dialog's values are parsed by the same lib/ops parse* functions the nodes use (a bad value
 * answers { ok: false } naming the field) and checked by the same lib/ops probes as the n8n
 * credential tests. A credential the dialog leaves empty or shows as `__PWRD__` (a saved password
 * the editor never sees) is taken from the saved credentials of config node `id` — only when that
 * node is of the kind being tested. Answers never carry a secret: the lib messages name no secret,
 * and every credential value is blanked out of the message anyway. Every answer comes within
 * ANSWER_LIMIT_MS.
 *
 * Registered once per admin app however many node types call registerAdminEndpoints(RED).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Request, Response } from 'express';
import type { NodeAPI } from './types';
import type { TaxiiOwner } from './owners';
import { messageOf } from '../../lib/ops/errors';
import { ConfigError } from '../../lib/ops/settings';
import { brokerConfig, ledgerConfig, parseBrokerSettings, parseLedgerSettings } from '../../lib/ops/connections';
import { ledgerSecrets } from '../sets-ledger/secrets';
import { probeBroker, probeLedger, probeStore, probeTaxii, type ProbeResult } from '../../lib/ops/probes';
import { defaultStoreDir, parseStoreSettings } from '../../lib/ops/server-store';
import { createTaxiiConnection, parseTaxiiSettings, type TaxiiConnection, type TaxiiSecrets, type TaxiiSettings } from '../../lib/ops/taxii-connection';
import type { Collection } from '../../lib/taxii/client';

/** What the editor shows for a saved password it does not know. */
export const SAVED_PASSWORD = '__PWRD__';
/** How long one connection test may take (each probe gets a bit less, so it names its own reason). */
export const PROBE_TIMEOUT_MS = 15_000;
/** Nothing answers later than this, whatever a probe does. */
export const ANSWER_LIMIT_MS = 20_000;

export type ProbeKind = 'ledger' | 'broker' | 'taxii' | 'store';

/** Config node type of each kind: saved credentials are only borrowed from a node of this type. */
export const CONFIG_TYPE: Record<ProbeKind, string> = {
  ledger: 'sets-ledger',
  broker: 'sets-broker',
  taxii: 'sets-taxii',
  store: 'sets-store',
};

export interface CollectionInfo {
  id: string;
  title: string;
  alias?: string;
  can_read: boolean;
  can_write: boolean;
}

export interface EndpointAnswer extends ProbeResult {
  collections?: CollectionInfo[];
}

type Values = Record<string, unknown>;
type Secrets = Record<string, string>;

interface ProbeRequest {
  id?: string;
  config: Values;
  credentials: Values;
}

const registered = new WeakSet<object>();

function isObject(v: unknown): v is Values {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The request body, or a message saying what is wrong with it. */
function readBody(body: unknown): ProbeRequest | string {
  if (!isObject(body)) return 'the request needs a JSON body { id?, config, credentials }';
  const { id, config, credentials } = body;
  if (id !== undefined && id !== null && typeof id !== 'string') return 'id must be a string';
  if (config !== undefined && !isObject(config)) return 'config must be an object';
  if (credentials !== undefined && credentials !== null && !isObject(credentials)) return 'credentials must be an object';
  return { ...(typeof id === 'string' && id ? { id } : {}), config: config ?? {}, credentials: credentials ?? {} };
}

/**
 * The credentials to test with: what the dialog holds, where it holds a value; the saved
 * credentials of node `id` (when that node is a `type` config node) for the rest.
 */
export function mergeCredentials(RED: NodeAPI, type: string, id: string | undefined, typed: Values): Secrets {
  const out: Secrets = {};
  if (id) {
    const node = RED.nodes.getNode(id) as { type?: string } | null;
    const saved = node && node.type === type ? (RED.nodes.getCredentials(id) as Values | undefined) : undefined;
    for (const [k, v] of Object.entries(saved ?? {})) if (typeof v === 'string' && v !== '') out[k] = v;
  }
  for (const [k, v] of Object.entries(typed)) {
    if (typeof v === 'string' && v !== '' && v !== SAVED_PASSWORD) out[k] = v;
  }
  return out;
}

/** credential fields that are names, not secrets (blanking them would mangle messages) */
const NOT_SECRET = new Set(['username', 'clientId']);

/** `text` with every secret value (and the password of any `scheme://user:password@` URL) blanked out. */
export function scrub(text: string, secrets: Secrets): string {
  let out = text.replace(/\/\/([^@/\s:]*):[^@/\s]*@/g, '//$1:***@');
  const values = Object.entries(secrets)
    .filter(([k]) => !NOT_SECRET.has(k))
    .map(([, v]) => v.trim())
    .filter((v) => v.length >= 3)
    .sort((a, b) => b.length - a.length);
  for (const v of values) out = out.split(v).join('***');
  return out;
}

function fail(message: string): ProbeResult {
  return { ok: false, message };
}

/** The answer of `p`, or a failure once `ms` have passed. */
async function within<T extends ProbeResult>(p: Promise<T>, ms: number, what: string): Promise<T | ProbeResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<ProbeResult>((resolve) => (timer = setTimeout(() => resolve(fail(`${what}: no answer within ${ms / 1000} s`)), ms)))]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

function userDirOf(RED: NodeAPI): string | undefined {
  const d = (RED.settings as { userDir?: unknown }).userDir;
  return typeof d === 'string' && d !== '' ? d : undefined;
}

/** The nearest existing directory at or above `dir`. */
function existingAncestor(dir: string): string {
  let d = dir;
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

/** A TAXII settings object whose requests cannot outlast a connection test. */
function boundedTaxii(settings: TaxiiSettings): TaxiiSettings {
  return { ...settings, timeoutMs: Math.min(settings.timeoutMs ?? PROBE_TIMEOUT_MS, PROBE_TIMEOUT_MS - 2000) };
}

function taxiiSecrets(s: Secrets): TaxiiSecrets {
  const out: TaxiiSecrets = {};
  for (const k of ['username', 'password', 'token', 'clientId', 'clientSecret'] as const) if (s[k] !== undefined) out[k] = s[k];
  return out;
}

/** Run the lib probe of `kind` with the dialog's values. Never throws. */
export async function probe(RED: NodeAPI, kind: ProbeKind, req: ProbeRequest, secrets: Secrets): Promise<ProbeResult> {
  try {
    switch (kind) {
      case 'ledger': {
        // EVM: the private key; Fabric: the identity's key and certificate and the peer's TLS CA, PEM line
        // breaks that a password input drops put back — the same helper the sets-ledger node uses
        const settings = parseLedgerSettings(req.config);
        return await probeLedger(ledgerConfig(settings, ledgerSecrets(settings.kind, secrets)), { timeoutMs: PROBE_TIMEOUT_MS });
      }
      case 'broker': {
        if (req.config['kind'] === 'in-process') {
          const name = typeof req.config['brokerName'] === 'string' && req.config['brokerName'] ? req.config['brokerName'] : 'default';
          return { ok: true, message: `in-process broker '${name}': it runs inside this Node-RED, there is nothing to connect to` };
        }
        const settings = parseBrokerSettings(req.config, 'Node-RED SETS connection test');
        return await probeBroker(brokerConfig(settings, { username: secrets.username, password: secrets.password }), { timeoutMs: PROBE_TIMEOUT_MS });
      }
      case 'taxii':
        return await probeTaxii(boundedTaxii(parseTaxiiSettings(req.config)), taxiiSecrets(secrets));
      case 'store': {
        const userDir = userDirOf(RED);
        const isMongo = req.config['kind'] === 'mongodb';
        const dirGiven = typeof req.config['dir'] === 'string' && req.config['dir'].trim() !== '';
        if (!isMongo && !dirGiven && !userDir) throw new ConfigError('Node-RED has no user directory (settings.userDir): give the store a directory');
        const defaultDir = !isMongo && !dirGiven && userDir ? defaultStoreDir(userDir, req.id ?? 'new') : undefined;
        const settings = parseStoreSettings(req.config, defaultDir ? { defaultDir } : {});
        if (settings.kind === 'embedded' && settings.dir && !fs.existsSync(settings.dir)) {
          // opening would create it: say whether it can be, and leave no directory behind
          const parent = existingAncestor(settings.dir);
          try {
            if (!fs.statSync(parent).isDirectory()) throw new Error('not a directory');
            fs.accessSync(parent, fs.constants.W_OK);
          } catch {
            return fail(`embedded store ${settings.dir}: does not exist, and ${parent} is not a writable directory`);
          }
          return { ok: true, message: `embedded store ${settings.dir}: does not exist yet; it will be created on deploy (${parent} is writable)` };
        }
        if (settings.kind === 'mongodb' && !secrets.uri) return fail('the MongoDB store needs a URI');
        return await probeStore(settings, { uri: secrets.uri }, { timeoutMs: PROBE_TIMEOUT_MS });
      }
    }
  } catch (err) {
    // ConfigError names the field; anything else is a reason too
    return fail(err instanceof ConfigError ? messageOf(err) : `cannot test: ${messageOf(err)}`);
  }
}

function collectionInfo(c: Collection): CollectionInfo {
  return {
    id: c.id,
    title: c.title,
    ...(typeof c.alias === 'string' && c.alias ? { alias: c.alias } : {}),
    can_read: c.can_read === true,
    can_write: c.can_write === true,
  };
}

function listed(cols: Collection[], where: string): EndpointAnswer {
  const collections = cols.map(collectionInfo);
  return {
    ok: true,
    message: collections.length ? `${collections.length} collection(s) at ${where}` : `${where} lists no collection this user can see`,
    collections,
  };
}

/** The collections a TAXII configuration (dialog values) can see. Never throws. */
export async function listCollections(req: ProbeRequest, secrets: Secrets): Promise<EndpointAnswer> {
  let conn: TaxiiConnection | undefined;
  try {
    const settings = boundedTaxii(parseTaxiiSettings(req.config));
    conn = createTaxiiConnection(settings, taxiiSecrets(secrets));
    return listed(await conn.client.collections(), settings.url);
  } catch (err) {
    return fail(messageOf(err));
  } finally {
    conn?.close();
  }
}

/** The collections of the deployed sets-taxii node `id` (its shared client). Never throws. */
async function listDeployed(RED: NodeAPI, id: string): Promise<EndpointAnswer> {
  const node = RED.nodes.getNode(id) as (TaxiiOwner & { type?: string }) | null;
  if (!node || node.type !== 'sets-taxii') {
    return fail(`no deployed TAXII server configuration ${id}: deploy it first, or ask with the dialog's values (POST)`);
  }
  try {
    return listed(await node.connection().client.collections(), node.describe());
  } catch (err) {
    return fail(messageOf(err));
  }
}

function send(res: Response, answer: EndpointAnswer, secrets: Secrets): void {
  const out: EndpointAnswer = { ok: answer.ok, message: scrub(answer.message, secrets) };
  if (answer.collections) out.collections = answer.collections;
  res.status(200).json(out);
}

function isKind(k: unknown): k is ProbeKind {
  return typeof k === 'string' && Object.prototype.hasOwnProperty.call(CONFIG_TYPE, k);
}

/**
 * Adds the endpoints to RED.httpAdmin, once per admin app (every SETS node type calls this; a
 * test runtime makes a new admin app per flow load).
 */
export function registerAdminEndpoints(RED: NodeAPI): void {
  const app = RED.httpAdmin as unknown as object | undefined;
  if (!app || registered.has(app)) return;
  registered.add(app);

  RED.httpAdmin.post('/sets/probe/:kind', RED.auth.needsPermission('sets.write'), (req: Request, res: Response) => {
    const kind = req.params['kind'];
    if (!isKind(kind)) {
      res.status(404).json({ ok: false, message: `unknown connection kind ${JSON.stringify(kind)} (ledger, broker, taxii or store)` });
      return;
    }
    const body = readBody(req.body);
    if (typeof body === 'string') {
      res.status(400).json({ ok: false, message: body });
      return;
    }
    const secrets = mergeCredentials(RED, CONFIG_TYPE[kind], body.id, body.credentials);
    within(probe(RED, kind, body, secrets), ANSWER_LIMIT_MS, `${kind} connection test`).then(
      (answer) => send(res, answer, secrets),
      (err: unknown) => send(res, fail(messageOf(err)), secrets),
    );
  });

  RED.httpAdmin.post('/sets/collections', RED.auth.needsPermission('sets.write'), (req: Request, res: Response) => {
    const body = readBody(req.body);
    if (typeof body === 'string') {
      res.status(400).json({ ok: false, message: body });
      return;
    }
    const secrets = mergeCredentials(RED, 'sets-taxii', body.id, body.credentials);
    within(listCollections(body, secrets), ANSWER_LIMIT_MS, 'collection list').then(
      (answer) => send(res, answer, secrets),
      (err: unknown) => send(res, fail(messageOf(err)), secrets),
    );
  });

  RED.httpAdmin.get('/sets/collections', RED.auth.needsPermission('sets.read'), (req: Request, res: Response) => {
    const id = req.query['taxii'];
    if (typeof id !== 'string' || id === '') {
      res.status(400).json({ ok: false, message: 'give the TAXII server configuration: ?taxii=<sets-taxii node id>' });
      return;
    }
    const saved = (RED.nodes.getCredentials(id) ?? {}) as Values;
    const secrets: Secrets = {};
    for (const [k, v] of Object.entries(saved)) if (typeof v === 'string') secrets[k] = v;
    within(listDeployed(RED, id), ANSWER_LIMIT_MS, 'collection list').then(
      (answer) => send(res, answer, secrets),
      (err: unknown) => send(res, fail(messageOf(err)), secrets),
    );
  });
}
