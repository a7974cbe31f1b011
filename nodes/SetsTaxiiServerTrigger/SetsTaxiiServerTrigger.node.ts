/**
 * SETS TAXII Server Trigger (n8n trigger node `setsTaxiiServerTrigger`) — paper §4.2, steps 2-3 and
 * 5 on the server side: hosts the TAXII 2.1 API of lib/taxii/server on its own port (HTTP, or HTTPS
 * with the certificate and key of the server-secrets credential), records in a SETS store.
 *
 * CONTRACT (names are stable; workflows depend on them)
 * Parameters:
 *   port (default 9440), host (default 127.0.0.1; 0.0.0.0 = every interface), basePath (default
 *   /taxii: discovery at <basePath>/taxii2/, API root at <basePath>/<apiRoot>/), https (boolean)
 *   title, apiRoot (default api1)
 *   collections.collection[]  {id, title, description, alias, canRead, canWrite (comma-separated
 *                              roles; `anonymous` = callers without credentials, `*` = any
 *                              authenticated caller), integrity (required | optional | off)}
 *   anonymousRead, openAccess (no authentication at all: demos only)
 *   oauth2 (boolean) + issuer, jwksUrl, audience, clientId, clockTolerance (s)
 *   options {description, contact, apiRootTitle, maxContentLength (bytes), maxPageSize,
 *            recoveryInterval (s between sweeps of records left pending, default 60, 0 = at start
 *            only), anchorGrace (s, default 300)}
 *   protection {addressBurst, userBurst, refillMs, maxTracked, maxConcurrentHashes, maxQueuedHashes}
 *            (authentication flood protection, lib/auth/throttle.ts; unset = PROTECTION_DEFAULTS)
 *   (the raw keys of lib/ops/server-config parseServerSettings)
 * Credentials: setsStoreApi (required; the SETS node's Record operations must use the same one),
 * setsTaxiiServerAuth (Basic users, API keys, next-token secret, TLS certificate/key).
 * Outputs: 1 "Admitted" — objects a POST stored as pending (persisted BEFORE the 202 answer): the
 *   workflow distributes them (SETS › Publish to RabbitMQ) and verifies them (SETS › Verify, waiting
 *   for the anchor) then settles them (SETS › Mark Integrity), in parallel, as the paper's server;
 *   2 "Served" — objects a GET just returned: re-verify (look once) and mark (step 5).
 *   Objects of one request arrive as the items of one execution.
 * Item: json = { object: <STIX object>, collection, sets: { apiRoot, collection, id, version, key,
 *   hash, status (pending|finalized|invalid), dateAdded, origin (admission|inquiry|recovery), policy,
 *   statusId? (admission, recovery), anchorDeadline? (admission, recovery), attempt? (recovery) } }
 *   Records left pending (lost execution, restart, ledger outage) come out again on "Admitted" with
 *   origin `recovery`: at activation those admitted before it, then every recovery interval those
 *   older than the anchor grace.
 *   Without a next-token secret in the credential, a secret generated once is kept in the store.
 * closeFunction stops accepting connections, lets requests in progress finish (at most 10 s), closes
 * the rest, and releases the store.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  NodeOperationError,
  type IDataObject,
  type INodeExecutionData,
  type INodeType,
  type INodeTypeDescription,
  type ITriggerFunctions,
  type ITriggerResponse,
} from 'n8n-workflow';
import { messageOf } from '../../lib/ops/errors';
import { PROTECTION_DEFAULTS, buildServerConfig, parseServerSettings, type ServerSettings } from '../../lib/ops/server-config';
import { recordInfo } from '../../lib/ops/server-integrity';
import { acquireStore, type StoreLease } from '../../lib/store/shared';
import { createTaxiiServer, type TaxiiServer } from '../../lib/taxii/server';
import { createTaxiiHttpsServer } from '../../lib/taxii/server-https';
import { CRED, storeFromCredential } from '../n8n-shared/connections';
import { setsStoreApiTest, setsTaxiiServerAuthTest } from '../n8n-shared/credential-tests';
import { operationError } from '../n8n-shared/errors';
import { toJson } from '../n8n-shared/items';
import { within } from '../n8n-shared/util';

/** Longest wait for requests in progress when the trigger closes. */
const DRAIN_MS = 10_000;

function text(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** `/taxii` from the parameter ('' and '/' = the root). */
function normaliseBase(value: string): string {
  let s = value.trim();
  if (s === '' || s === '/') return '';
  if (!s.startsWith('/')) s = '/' + s;
  s = s.replace(/\/+$/, '');
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(s)) throw new Error(`base path "${s}" must be URL path segments of letters, digits and -._~`);
  return s;
}

export class SetsTaxiiServerTrigger implements INodeType {
  description: INodeTypeDescription = {
    displayName: 'SETS TAXII Server Trigger',
    name: 'setsTaxiiServerTrigger',
    icon: 'file:sets.svg',
    group: ['trigger'],
    version: 1,
    subtitle: '={{ ($parameter["https"] ? "https" : "http") + "://" + $parameter["host"] + ":" + $parameter["port"] + $parameter["basePath"] + "/taxii2/" }}',
    description: 'Host a SETS TAXII 2.1 server and receive the objects it admits and serves',
    eventTriggerDescription: 'Waiting for TAXII requests',
    defaults: { name: 'SETS TAXII Server' },
    inputs: [],
    outputs: [
      { type: 'main', displayName: 'Admitted' },
      { type: 'main', displayName: 'Served' },
    ],
    credentials: [
      { name: CRED.store, required: true, testedBy: 'setsStoreApiTest' },
      { name: CRED.serverAuth, required: false, testedBy: 'setsTaxiiServerAuthTest' },
    ],
    properties: [
      { displayName: 'Port', name: 'port', type: 'number', typeOptions: { minValue: 1, maxValue: 65535 }, default: 9440 },
      {
        displayName: 'Host',
        name: 'host',
        type: 'string',
        default: '127.0.0.1',
        description: 'Address to listen on: 127.0.0.1 (this host only, e.g. behind a reverse proxy) or 0.0.0.0 (every interface)',
      },
      { displayName: 'Base Path', name: 'basePath', type: 'string', default: '/taxii', description: 'Discovery at <base path>/taxii2/, the API root at <base path>/<API root>/' },
      {
        displayName: 'HTTPS',
        name: 'https',
        type: 'boolean',
        default: false,
        description: 'Whether to speak TLS with the certificate and key of the server-secrets credential (TAXII 2.1 requires TLS in production)',
      },
      { displayName: 'Title', name: 'title', type: 'string', default: 'SETS TAXII server' },
      { displayName: 'API Root', name: 'apiRoot', type: 'string', default: 'api1', description: 'Name of the API root = its URL path segment' },
      {
        displayName: 'Collections',
        name: 'collections',
        type: 'fixedCollection',
        typeOptions: { multipleValues: true },
        placeholder: 'Add Collection',
        default: {},
        options: [
          {
            displayName: 'Collection',
            name: 'collection',
            values: [
              { displayName: 'ID', name: 'id', type: 'string', default: '', required: true, placeholder: '91a7b528-80eb-42ed-a74d-c6fbd5a26116', description: 'Collection id (a UUIDv4 is recommended); part of the ledger key' },
              { displayName: 'Title', name: 'title', type: 'string', default: '' },
              { displayName: 'Description', name: 'description', type: 'string', default: '' },
              { displayName: 'Alias', name: 'alias', type: 'string', default: '' },
              { displayName: 'Read Roles', name: 'canRead', type: 'string', default: 'reader,publisher', description: 'Comma-separated roles that may read; "anonymous" = callers without credentials, "*" = any authenticated caller' },
              { displayName: 'Write Roles', name: 'canWrite', type: 'string', default: 'publisher', description: 'Comma-separated roles that may add (and, with read, delete) objects' },
              {
                displayName: 'Integrity',
                name: 'integrity',
                type: 'options',
                options: [
                  { name: 'Required (SETS)', value: 'required', description: 'Records stay pending until marked; not anchored by the deadline or altered = invalid, never served' },
                  { name: 'Optional', value: 'optional', description: 'Served at once; a mismatch still makes them invalid' },
                  { name: 'Off (Plain TAXII)', value: 'off', description: 'No verification' },
                ],
                default: 'required',
              },
            ],
          },
        ],
      },
      { displayName: 'Anonymous Read', name: 'anonymousRead', type: 'boolean', default: false, description: 'Whether callers without credentials may read collections whose read roles list "anonymous"' },
      { displayName: 'Open Access (No Authentication)', name: 'openAccess', type: 'boolean', default: false, description: 'Whether to accept every request without authentication — local demos only' },
      { displayName: 'OAuth2 Bearer Tokens', name: 'oauth2', type: 'boolean', default: false, description: 'Whether to accept JWT access tokens checked against an issuer\'s JWKS (e.g. Keycloak)' },
      { displayName: 'Issuer', name: 'issuer', type: 'string', default: '', displayOptions: { show: { oauth2: [true] } } },
      { displayName: 'JWKS URL', name: 'jwksUrl', type: 'string', default: '', displayOptions: { show: { oauth2: [true] } } },
      { displayName: 'Audience', name: 'audience', type: 'string', default: '', displayOptions: { show: { oauth2: [true] } }, description: 'Expected aud of the tokens (required unless Accept Any Audience is on)' },
      { displayName: 'Accept Any Audience', name: 'anyAudience', type: 'boolean', default: false, displayOptions: { show: { oauth2: [true] } }, description: 'Whether to accept tokens the issuer made for any audience (not recommended)' },
      { displayName: 'Client ID', name: 'clientId', type: 'string', default: '', displayOptions: { show: { oauth2: [true] } }, description: 'Client whose resource_access roles count (default: the audience)' },
      { displayName: 'Clock Tolerance (S)', name: 'clockTolerance', type: 'number', default: 30, displayOptions: { show: { oauth2: [true] } } },
      {
        displayName: 'Options',
        name: 'options',
        type: 'collection',
        placeholder: 'Add Option',
        default: {},
        options: [
          { displayName: 'Description', name: 'description', type: 'string', default: '' },
          { displayName: 'Contact', name: 'contact', type: 'string', default: '' },
          { displayName: 'API Root Title', name: 'apiRootTitle', type: 'string', default: '' },
          { displayName: 'Max Content Length (Bytes)', name: 'maxContentLength', type: 'number', default: 10485760 },
          { displayName: 'Max Page Size', name: 'maxPageSize', type: 'number', default: 1000 },
          {
            displayName: 'Recovery Interval (S)',
            name: 'recoveryInterval',
            type: 'number',
            default: 60,
            description:
              'Seconds between sweeps that emit records left pending again on Admitted (origin "recovery"); records pending from before the activation are emitted at once; 0 = only at activation',
          },
          {
            displayName: 'Anchor Grace (S)',
            name: 'anchorGrace',
            type: 'number',
            default: 300,
            description: 'How long a record may stay unanchored: older pending records are re-emitted by the sweep, and a "not anchored" look from a read then counts',
          },
        ],
      },
      {
        displayName: 'Protection Against Login Floods',
        name: 'protection',
        type: 'collection',
        placeholder: 'Add Setting',
        default: {},
        description: 'Throttling of failed sign-ins (answered 429 with Retry-After) and the cap on password hashing (503 beyond it); unset = the default shown',
        options: [
          { displayName: 'Failed Logins per Address', name: 'addressBurst', type: 'number', typeOptions: { minValue: 0 }, default: PROTECTION_DEFAULTS.addressBurst, description: 'Failed sign-ins one client address may make in a burst before 429 (0 = no per-address limit)' },
          { displayName: 'Failed Logins per User Name', name: 'userBurst', type: 'number', typeOptions: { minValue: 0 }, default: PROTECTION_DEFAULTS.userBurst, description: 'Failed sign-ins against one Basic user name in a burst, counted only for addresses that failed recently (0 = no per-user-name limit)' },
          { displayName: 'One More Attempt Every (Ms)', name: 'refillMs', type: 'number', typeOptions: { minValue: 1 }, default: PROTECTION_DEFAULTS.refillMs, description: 'Once a burst is used, one more attempt is allowed every this many milliseconds' },
          { displayName: 'Addresses and User Names Tracked', name: 'maxTracked', type: 'number', typeOptions: { minValue: 1 }, default: PROTECTION_DEFAULTS.maxTracked, description: 'Most addresses and user names remembered, each; the least recently seen are forgotten' },
          { displayName: 'Password Checks at Once', name: 'maxConcurrentHashes', type: 'number', typeOptions: { minValue: 1 }, default: PROTECTION_DEFAULTS.maxConcurrentHashes, description: 'Password hashes (scrypt) running at once; keep it below the libuv thread pool size (4 unless UV_THREADPOOL_SIZE says otherwise), which the store shares' },
          { displayName: 'Password Checks Queued', name: 'maxQueuedHashes', type: 'number', typeOptions: { minValue: 0 }, default: PROTECTION_DEFAULTS.maxQueuedHashes, description: 'Password checks waiting for a hashing slot; beyond it a check is answered 503 with Retry-After' },
        ],
      },
    ],
  };

  methods = {
    credentialTest: { setsStoreApiTest, setsTaxiiServerAuthTest },
  };

  async trigger(this: ITriggerFunctions): Promise<ITriggerResponse> {
    const node = this.getNode();
    const p = (name: string, fallback: unknown): unknown => this.getNodeParameter(name, fallback);
    const options = (p('options', {}) ?? {}) as IDataObject;
    const protection = (p('protection', {}) ?? {}) as IDataObject;

    // -- settings ------------------------------------------------------------------------------
    let settings: ServerSettings;
    let base: string;
    let port: number;
    let host: string;
    const useHttps = p('https', false) === true;
    try {
      const cols = p('collections', {}) as { collection?: unknown };
      settings = parseServerSettings({
        title: p('title', ''),
        apiRoot: p('apiRoot', 'api1'),
        collections: Array.isArray(cols?.collection) ? cols.collection : [],
        anonymousRead: p('anonymousRead', false),
        openAccess: p('openAccess', false),
        oauth2: p('oauth2', false),
        issuer: p('issuer', ''),
        jwksUrl: p('jwksUrl', ''),
        audience: p('audience', ''),
        anyAudience: p('anyAudience', false),
        clientId: p('clientId', ''),
        clockTolerance: p('clockTolerance', ''),
        description: options.description,
        contact: options.contact,
        apiRootTitle: options.apiRootTitle,
        maxContentLength: options.maxContentLength,
        maxPageSize: options.maxPageSize,
        recoveryInterval: options.recoveryInterval,
        anchorGrace: options.anchorGrace,
        addressBurst: protection.addressBurst,
        userBurst: protection.userBurst,
        refillMs: protection.refillMs,
        maxTracked: protection.maxTracked,
        maxConcurrentHashes: protection.maxConcurrentHashes,
        maxQueuedHashes: protection.maxQueuedHashes,
      });
      if (settings.collections.length === 0) throw new Error('no collections: add at least one collection');
      base = normaliseBase(text(p('basePath', '/taxii')));
      port = Number(p('port', 9440));
      if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`port must be a whole number from 1 to 65535, got ${String(p('port', ''))}`);
      host = text(p('host', '127.0.0.1')).trim() || '127.0.0.1';
    } catch (err) {
      throw operationError(node, messageOf(err), { description: 'check the node parameters', cause: err });
    }
    const storeCred = await this.getCredentials(CRED.store);
    let secrets: IDataObject = {};
    try {
      secrets = await this.getCredentials(CRED.serverAuth);
    } catch {
      secrets = {}; // optional credential: open access or anonymous read needs none
    }
    const cert = text(secrets.tlsCert).trim();
    const key = text(secrets.tlsKey).trim();
    if (useHttps && (!cert || !key)) {
      throw new NodeOperationError(node, 'HTTPS needs the TLS certificate and private key of the "SETS TAXII Server Secrets" credential');
    }

    // -- emitting ------------------------------------------------------------------------------
    let closed = false;
    let admitted: INodeExecutionData[] = [];
    let served: INodeExecutionData[] = [];
    let flushing: NodeJS.Immediate | undefined;
    const flush = (): void => {
      flushing = undefined;
      const a = admitted;
      const s = served;
      admitted = [];
      served = [];
      if (a.length + s.length === 0) return;
      if (closed) {
        if (a.length) this.logger.warn(`SETS TAXII Server "${node.name}": ${a.length} admitted object(s) not emitted (trigger closing); they stay pending in the store`);
        return;
      }
      this.emit([a, s]);
    };
    // objects of one request come as one execution: collect what the request's events bring
    const later = (): void => {
      flushing ??= setImmediate(flush);
    };
    const item = (object: unknown, collection: string, sets: object): INodeExecutionData => ({ json: { object: toJson(object), collection, sets: toJson(sets) } });

    // -- store, server, listener ---------------------------------------------------------------
    let lease: StoreLease | undefined;
    let taxii: TaxiiServer | undefined;
    let listener: http.Server | undefined;
    const inflight = new Set<Promise<void>>();
    const release = async (): Promise<void> => {
      const l = lease;
      lease = undefined;
      if (l) await l.release().catch((err: unknown) => this.logger.warn(`SETS TAXII Server "${node.name}": store release failed: ${messageOf(err)}`));
    };
    const closeAll = async (): Promise<void> => {
      closed = true;
      taxii?.close();
      const srv = listener;
      listener = undefined;
      if (srv) {
        await new Promise<void>((resolve) => {
          srv.close(() => resolve());
          srv.closeIdleConnections();
          // requests in progress may finish (bounded); then every connection is cut
          void within(Promise.allSettled([...inflight]), DRAIN_MS).then(() => srv.closeAllConnections());
        });
      }
      if (flushing) clearImmediate(flushing);
      flush();
      await release();
    };

    const start = async (): Promise<void> => {
      try {
        const { settings: storeSettings, secrets: storeSecrets } = storeFromCredential(storeCred);
        lease = await acquireStore(storeSettings, storeSecrets);
        const log = (level: 'debug' | 'info' | 'warn' | 'error', message: string): void => {
          this.logger[level](`SETS TAXII Server "${node.name}": ${message}`);
        };
        // empty: the server keeps a generated secret in the store (the same after a restart)
        const nextTokenSecret = text(secrets.nextTokenSecret).trim();
        const config = await buildServerConfig(
          settings,
          { users: text(secrets.users), apiKeys: text(secrets.apiKeys), ...(nextTokenSecret ? { nextTokenSecret } : {}) },
          lease.store,
          { log },
        );
        config.basePath = base;
        const server = createTaxiiServer(config);
        taxii = server;
        server.on('object', (e) => {
          admitted.push(
            item(e.record.object, e.collection, recordInfo(e.record, e.apiRoot, e.origin, { statusId: e.statusId, policy: e.policy, attempt: e.attempt, anchorDeadline: e.anchorDeadline })),
          );
          later();
        });
        server.on('inquiry', (e) => {
          for (const r of e.records) served.push(item(r.object, e.collection, recordInfo(r, e.apiRoot, 'inquiry', { policy: e.policy })));
          if (e.records.length) later();
        });
        const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
          const job = server.handle(req, res).finally(() => inflight.delete(job));
          inflight.add(job);
        };
        let srv: http.Server;
        if (useHttps) {
          const passphrase = text(secrets.tlsPassphrase);
          srv = createTaxiiHttpsServer({ cert, key, ...(passphrase ? { passphrase } : {}) }, { handle: async (req, res) => onRequest(req, res) });
        } else {
          srv = http.createServer(onRequest);
          srv.headersTimeout = 30_000;
          srv.requestTimeout = 120_000;
          srv.keepAliveTimeout = 5_000;
        }
        listener = srv;
        await new Promise<void>((resolve, reject) => {
          const onError = (err: Error): void => reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
          srv.once('error', onError);
          srv.listen(port, host, () => {
            srv.off('error', onError);
            resolve();
          });
        });
        srv.on('error', (err) => this.logger.error(`SETS TAXII Server "${node.name}": ${err.message}`));
        // records left pending (restart, lost execution, ledger outage) come out again on Admitted
        server.startRecovery();
        const addr = srv.address() as AddressInfo;
        this.logger.info(
          `SETS TAXII Server "${node.name}": discovery at ${useHttps ? 'https' : 'http'}://${addr.address}:${addr.port}${base}/taxii2/, API root ${base}/${settings.apiRoot}/ (${settings.collections.length} collection(s))`,
        );
      } catch (err) {
        await closeAll();
        throw operationError(node, `the TAXII server cannot start: ${messageOf(err)}`, { cause: err });
      }
    };
    const closeFunction = async (): Promise<void> => {
      await within(closeAll(), DRAIN_MS + 5_000);
    };
    if (this.getMode() === 'manual') return { closeFunction, manualTriggerFunction: start };
    await start();
    return { closeFunction };
  }
}
