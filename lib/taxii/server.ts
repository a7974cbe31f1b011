/**
 * TAXII 2.1 server (OASIS TAXII 2.1 §4-5; TAXII-NOTES) with the SETS hooks of the paper's server
 * side (§3 steps 2-5, §4.2), framework-free: `handle(req, res)` is a plain node:http handler and
 * works as Express middleware under a base path (Node-RED mounts it on its HTTP server).
 *
 * SETS: an added object is stored `pending` and announced at once with an `object` event (the
 * flow distributes it and checks its hash against the ledger — steps 2-3); `markIntegrity` settles
 * it as `finalized` or `invalid` and updates the TAXII status resource. Reads answer at once and
 * announce what they served with an `inquiry` event for re-verification in parallel (step 5);
 * `invalid` records are never served again.
 *
 * Each collection has an integrity policy (server-config.ts; docs/interop.md): `required` (the
 * above), `optional` (served and complete at once; a verdict is recorded when an anchor appears,
 * a mismatch still invalidates) or `off` (plain TAXII 2.1). `recordVerification` applies a ledger
 * verdict under the policy. Interoperability leniency (Accept variants, missing slashes, scheme
 * case, API keys, bundles instead of envelopes) never extends to credentials, body size or STIX
 * validity.
 *
 * Nothing lives only in this process's memory that another instance would need: status resources
 * are in the store, each pending record lists the status resources waiting for it
 * (StoredRecord.statusIds), `next` tokens are self-contained and signed — with the configured
 * secret, or one generated once and kept in the store.
 *
 * Recovery: a record whose admission message was lost (a flow error, a ledger outage, a restart)
 * would stay `pending` for ever. `startRecovery` sweeps at start and every `recovery.intervalMs`:
 * records pending longer than the grace period are emitted again as `object` events with origin
 * `recovery` (paged by store query, `recovery.batchSize` per collection and sweep). A duplicate
 * POST of a pending record re-emits it at once.
 */
import { EventEmitter } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddOutcome, IntegrityStatus, Page, RecordQuery, StatusDetail, StatusResource, Store, StoredRecord } from '../store/store';
import { StoreError } from '../store/errors';
import { ServerAuthenticator, hasRole, type Principal } from '../auth/server-auth';
import { acceptsTaxii21, isStix21MediaType, isTaxii21MediaType, taxiiTimestamp, TAXII_MEDIA_TYPE } from './media';
import { HttpProblem, resolveUrl, sendProblem, sendTaxii } from './server-http';
import { parseFilters, QueryError, type FilterEndpoint, type Filters } from './server-query';
import { NextTokens, TokenError } from './server-paging';
import { boundFailures, readBody, type DraftDetail } from './server-body';
import { parseStrictJson, StrictJsonError } from './strict-json';
import { INTEGRITY_VERDICTS, isIntegrityVerdict, prepareRecord, normaliseVersion, type NewRecord } from './server-objects';
import {
  anchorDeadline,
  buildStatus,
  recordVerdict,
  reportedStatus,
  settleStatusEntry,
  withStatusLock,
  type IntegrityOrigin,
  type ReportedIntegrity,
  type VerdictOutcome,
} from './server-verdict';
import {
  integrityPolicySentence,
  resolveConfig,
  type IntegrityPolicy,
  type ResolvedApiRoot,
  type ResolvedCollection,
  type ResolvedConfig,
  type ServerLogger,
  type TaxiiServerConfig,
} from './server-config';

export * from './server-config';
export { hashPassword, type BasicUser } from '../auth/server-basic';
export { hashApiKey, type ApiKeyEntry } from '../auth/server-apikey';
export type { ServerAuthConfig, Principal } from '../auth/server-auth';
export { OFF_REASON, OPTIONAL_PENDING_REASON } from './server-objects';
export { createTaxiiHttpsServer, listenTaxiiHttps, type TaxiiHttpsOptions } from './server-https';
export type { JwtVerifierConfig } from '../auth/server-jwt';

/**
 * `object` event: a record was added (pending) — distribute it and verify it (paper steps 2-3) —
 * or, with origin `recovery`, a record that stayed pending is handed over again to be verified.
 */
export interface ObjectEvent {
  apiRoot: string;
  collection: string;
  record: StoredRecord;
  /**
   * the status resource of the request that added it (lists it among its pendings under
   * `required`); for a recovered record the first one it lists, if any
   */
  statusId?: string;
  /** `admission` (a POST stored it) or `recovery` (re-emitted: it stayed pending, or was POSTed again) */
  origin: Exclude<IntegrityOrigin, 'inquiry'>;
  /** how many times this process has re-emitted the record (recovery only, from 1) */
  attempt?: number;
  /** the record's anchoring deadline (date_added + the grace period), RFC 3339 */
  anchorDeadline: string;
  /**
   * the collection's integrity policy: `required` — verify and settle it (markIntegrity /
   * recordVerification); `optional` — verify it, but `not-anchored` leaves it served; `off` — skip
   * verification (the event still comes, for distribution)
   */
  policy: IntegrityPolicy;
}

/** `inquiry` event: records were just served — re-verify them in parallel (paper step 5). */
export interface InquiryEvent {
  apiRoot: string;
  collection: string;
  records: StoredRecord[];
  /** the collection's integrity policy (`required` or `optional`: `off` collections emit no inquiry events) */
  policy: IntegrityPolicy;
}

/** `delete` event: versions of an object were erased (right to be forgotten). */
export interface DeleteEvent {
  apiRoot: string;
  collection: string;
  id: string;
  count: number;
}

export interface TaxiiServerEvents {
  object: [ObjectEvent];
  inquiry: [InquiryEvent];
  delete: [DeleteEvent];
}

/** Outcome of a ledger check (lib/verify): what `recordVerification` is told. */
export type { IntegrityVerdict } from './server-objects';
import type { IntegrityVerdict } from './server-objects';

/** Integrity of a stored record as the server reports it (`unverified`: its collection's policy is off). */
export type { ReportedIntegrity };
export { recordVerdict, DEFAULT_ANCHOR_GRACE_MS, type VerdictTarget, type VerdictOutcome, type IntegrityOrigin } from './server-verdict';

/** What one recovery sweep did. */
export interface RecoveryReport {
  /** pending records re-emitted */
  emitted: number;
  /** pending records looked at */
  scanned: number;
  /** collections whose sweep failed (the store answered with an error), with the reason */
  errors: Array<{ collection: string; error: string }>;
}

/** What `recordVerification` did (lib/taxii/server-verdict). */
export type VerificationOutcome = VerdictOutcome;

export interface IntegrityView {
  collection: string;
  id: string;
  version: string;
  policy: IntegrityPolicy;
  status: ReportedIntegrity;
  reason?: string;
  /** when the status last changed */
  statusAt: string;
  dateAdded: string;
  hash: string;
  key: string;
}

export interface IntegrityCounts {
  pending: number;
  finalized: number;
  invalid: number;
  /** records of `off` collections (never verified) */
  unverified: number;
}

export interface TaxiiServer {
  /** node:http request handler / Express middleware. Never rejects. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /**
   * Settle the integrity of one stored version (paper steps 2.a/2.b, 5.a/5.b): updates the record
   * and moves it from `pendings` to `successes` / `failures` (with the reason) in the status
   * resource(s) listing it; a status becomes `complete` when no pendings remain.
   * `status` is the decision (`finalized` / `invalid`, applied as given) or a ledger verdict
   * (`verified` / `mismatch` / `not-anchored`, applied under the collection's policy — see
   * recordVerification). In an `off` collection nothing is written.
   * Resolves false when that version is not stored.
   */
  markIntegrity(
    collection: string,
    id: string,
    version: string,
    status: Exclude<IntegrityStatus, 'pending'> | IntegrityVerdict,
    reason?: string,
    statusId?: string,
  ): Promise<boolean>;
  /**
   * One recovery sweep now: pending records of the `required` / `optional` collections whose
   * date_added is older than the grace period, or earlier than this server object's creation
   * (left by a previous process or deployment), are emitted again (`object` event, origin
   * `recovery`), at most `recovery.batchSize` per collection, continuing where the previous sweep
   * stopped. Never rejects: store errors are reported and logged.
   */
  recover(): Promise<RecoveryReport>;
  /** Sweep soon (once the listeners are attached) and then every `recovery.intervalMs`. Idempotent. */
  startRecovery(): void;
  /** Stop the periodic sweep (a sweep in progress finishes). */
  close(): void;
  /**
   * Record the final verdict of a ledger check under the collection's policy:
   * - `verified` -> finalized (an `invalid` record stays invalid: it is never served again);
   * - `mismatch` -> invalid (required and optional);
   * - `not-anchored` -> invalid under `required`; under `optional` the record stays served
   *   (`pending`, the reason says it is not anchored). From an `inquiry` (a read's single look) it
   *   counts only once the record is older than the grace period (its anchoring deadline);
   * - `unknown` (the verifier could not decide) -> nothing changes; the record is checked again later;
   * - `off` collections: nothing is recorded.
   * The write is a compare-and-set: concurrent verdicts never turn `invalid` back.
   */
  recordVerification(
    collection: string,
    id: string,
    version: string,
    verdict: IntegrityVerdict,
    reason?: string,
    statusId?: string,
    origin?: IntegrityOrigin,
  ): Promise<VerificationOutcome>;
  /** The integrity of one version (the latest without `version`); null when not stored. */
  integrityOf(collection: string, id: string, version?: string): Promise<IntegrityView | null>;
  /** Counts per integrity status over the configured collections (or the given ones); `off` collections count as unverified. */
  integrityCounts(collections?: readonly string[]): Promise<IntegrityCounts>;
  /** The integrity policy of a configured collection (by id or alias); undefined when unknown. */
  policyOf(collection: string): IntegrityPolicy | undefined;
  on<E extends keyof TaxiiServerEvents>(event: E, listener: (...args: TaxiiServerEvents[E]) => void): this;
  off<E extends keyof TaxiiServerEvents>(event: E, listener: (...args: TaxiiServerEvents[E]) => void): this;
  once<E extends keyof TaxiiServerEvents>(event: E, listener: (...args: TaxiiServerEvents[E]) => void): this;
  /** the anchor grace period in force (ms) */
  readonly graceMs: number;
  /** the validated configuration (without the next-token secret) */
  readonly settings: Readonly<Omit<ResolvedConfig, 'nextTokenSecret'>>;
}

export function createTaxiiServer(config: TaxiiServerConfig): TaxiiServer {
  return new TaxiiServerImpl(config);
}

// ---------------------------------------------------------------------------------------------

type Route =
  | { kind: 'discovery' }
  | { kind: 'root'; root: ResolvedApiRoot }
  | { kind: 'status'; root: ResolvedApiRoot; statusId: string }
  | { kind: 'collections'; root: ResolvedApiRoot }
  | { kind: 'collection'; root: ResolvedApiRoot; col: ResolvedCollection }
  | { kind: 'manifest'; root: ResolvedApiRoot; col: ResolvedCollection }
  | { kind: 'objects'; root: ResolvedApiRoot; col: ResolvedCollection }
  | { kind: 'object'; root: ResolvedApiRoot; col: ResolvedCollection; objectId: string }
  | { kind: 'versions'; root: ResolvedApiRoot; col: ResolvedCollection; objectId: string };

const METHODS: Record<Route['kind'], string[]> = {
  discovery: ['GET', 'HEAD'],
  root: ['GET', 'HEAD'],
  status: ['GET', 'HEAD'],
  collections: ['GET', 'HEAD'],
  collection: ['GET', 'HEAD'],
  manifest: ['GET', 'HEAD'],
  objects: ['GET', 'HEAD', 'POST'],
  object: ['GET', 'HEAD', 'DELETE'],
  versions: ['GET', 'HEAD'],
};

/** name of the generated next-token secret in the store (Store.getOrCreateMeta) */
export const TOKEN_SECRET_META = 'taxii-server.next-token-secret';

/** most records whose re-emission count a server remembers (the oldest are forgotten first) */
const MAX_ATTEMPTS_TRACKED = 100_000;

const BUNDLE_ID_RE = /^bundle--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

const notFound = (what: string): HttpProblem => new HttpProblem(404, 'Not Found', what);

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw notFound(`the path segment ${JSON.stringify(s)} is not valid percent-encoding`);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class TaxiiServerImpl extends EventEmitter implements TaxiiServer {
  private readonly cfg: ResolvedConfig;
  private readonly store: Store;
  private readonly auth: ServerAuthenticator;
  private tokens?: NextTokens;
  private tokensLoading?: Promise<NextTokens>;
  private readonly log: ServerLogger;
  private readonly routingRoots: ResolvedApiRoot[];
  /** record key -> how many times the recovery sweep re-emitted it (this process) */
  private readonly attempts = new Map<string, number>();
  /** per collection: where the next recovery sweep continues */
  private readonly sweepCursor = new Map<string, string>();
  private sweeping?: Promise<RecoveryReport>;
  private recoveryTimer?: NodeJS.Timeout;
  private closed = false;
  /**
   * When this server object was created (ms). Records admitted before it were admitted by an
   * earlier process or deployment whose verification died with it: the sweep takes them at once,
   * without waiting out the grace period.
   */
  private readonly startedAt = Date.now();
  /** requests answered 413: the API root's max_content_length (bounds the body read and dropped after the answer) */
  private readonly lingerLimit = new WeakMap<IncomingMessage, number>();
  /** configured collections by id and alias (ids are unique across API roots) */
  private readonly collectionsByKey = new Map<string, ResolvedCollection>();

  constructor(config: TaxiiServerConfig) {
    super();
    this.cfg = resolveConfig(config);
    this.store = config.store;
    this.auth = new ServerAuthenticator(config.auth);
    if (this.cfg.nextTokenSecret !== undefined) this.tokens = new NextTokens(this.cfg.nextTokenSecret, this.cfg.nextTokenTtlMs);
    this.log =
      config.log ??
      ((level, message, detail) => {
        if (level === 'error') console.error(`[taxii-server] ${message}`, detail ?? '');
        else if (level === 'warn') console.warn(`[taxii-server] ${message}`, detail ?? '');
      });
    this.routingRoots = [...this.cfg.roots].sort((a, b) => b.name.length - a.name.length);
    for (const root of this.cfg.roots) {
      for (const c of root.collections) {
        this.collectionsByKey.set(c.id, c);
        if (c.alias !== undefined && !this.collectionsByKey.has(c.alias)) this.collectionsByKey.set(c.alias, c);
      }
    }
    this.handle = this.handle.bind(this);
  }

  get graceMs(): number {
    return this.cfg.recovery.graceMs;
  }

  /**
   * The next-token signer: with the configured secret, else with the secret kept in the store
   * (generated once, atomically, by whichever instance comes first; the same after a restart).
   */
  private async nextTokens(): Promise<NextTokens> {
    if (this.tokens) return this.tokens;
    this.tokensLoading ??= (async () => {
      const secret = await this.store.getOrCreateMeta(TOKEN_SECRET_META, randomBytes(32).toString('base64url'));
      this.tokens = new NextTokens(secret, this.cfg.nextTokenTtlMs);
      return this.tokens;
    })();
    try {
      return await this.tokensLoading;
    } catch (err) {
      this.tokensLoading = undefined;
      throw err;
    }
  }

  get settings(): Readonly<Omit<ResolvedConfig, 'nextTokenSecret'>> {
    const { nextTokenSecret: _secret, ...rest } = this.cfg;
    return rest;
  }

  // -------------------------------------------------------------------------------------------
  // entry point

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.dispatch(req, res);
    } catch (err) {
      if (err instanceof HttpProblem) {
        if (err.status === 413) {
          const limit = this.lingerLimit.get(req);
          // let the client finish sending and read the 413 (bounded: a few times the limit)
          if (limit !== undefined) lingerAfter413(req, Math.max(4 * limit, LINGER_413_MIN_BYTES));
          sendProblem(res, err);
          return;
        }
        sendProblem(res, err);
        return;
      }
      const mapped = storeProblem(err);
      if (mapped) {
        if (mapped.status >= 500) this.log('warn', `store unavailable answering ${req.method} ${req.url}: ${(err as Error).message}`);
        sendProblem(res, mapped);
        return;
      }
      const errorId = randomUUID();
      this.log('error', `unexpected error answering ${req.method} ${req.url} (error_id ${errorId})`, {
        errorId,
        error: err instanceof Error ? err.stack ?? err.message : String(err),
      });
      try {
        sendProblem(
          res,
          new HttpProblem(500, 'Internal Server Error', 'the server failed to process this request; the error is logged under error_id', {}, {
            error_id: errorId,
          }),
        );
      } catch {
        res.destroy();
      }
    }
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = resolveUrl(req, this.cfg.basePath);
    if (!url) throw notFound(`this server lives under ${this.cfg.basePath}/`);
    const method = (req.method ?? 'GET').toUpperCase();

    const outcome = await this.auth.authenticate(req);
    if (!outcome.ok) {
      if (outcome.status === 503) throw new HttpProblem(503, 'Service Unavailable', outcome.description, { 'Retry-After': '10' });
      throw new HttpProblem(401, 'Unauthorized', outcome.description, {
        'WWW-Authenticate': this.auth.challenges(
          outcome.bearerError ? { error: outcome.bearerError, description: outcome.description } : undefined,
        ),
      });
    }
    const principal = outcome.principal;
    await this.ensureOpen();

    const route = this.route(url.rel);
    if (!route) throw notFound(`no TAXII resource at ${url.prefix}${url.rel}`);
    const allowed = METHODS[route.kind];
    if (!allowed.includes(method)) {
      throw new HttpProblem(405, 'Method Not Allowed', `${method} is not supported here (allowed: ${allowed.join(', ')})`, {
        Allow: allowed.join(', '),
      });
    }
    if (principal.scheme === 'anonymous' && method !== 'GET' && method !== 'HEAD') {
      throw this.unauthorized('authentication required to change anything');
    }
    if (!acceptsTaxii21(req.headers.accept)) {
      throw new HttpProblem(
        406,
        'Not Acceptable',
        `this server answers with ${TAXII_MEDIA_TYPE} only; the Accept header ${JSON.stringify(req.headers.accept)} does not admit it`,
      );
    }

    switch (route.kind) {
      case 'discovery':
        return this.discovery(res, url.prefix);
      case 'root':
        return this.apiRoot(res, route.root);
      case 'status':
        return this.getStatus(res, principal, route.statusId);
      case 'collections':
        return this.listCollections(res, principal, route.root);
      case 'collection':
        this.requireAccess(principal, route.col, 'read-or-write');
        return sendTaxii(res, 200, this.collectionResource(route.col, principal));
      case 'manifest':
        this.requireAccess(principal, route.col, 'read');
        return this.getRecords(res, route.root, route.col, 'manifest', url.query, undefined, method);
      case 'objects':
        if (method === 'POST') {
          this.requireAccess(principal, route.col, 'write');
          return this.addObjects(req, res, route.root, route.col, principal);
        }
        this.requireAccess(principal, route.col, 'read');
        return this.getRecords(res, route.root, route.col, 'objects', url.query, undefined, method);
      case 'object':
        if (method === 'DELETE') {
          this.requireAccess(principal, route.col, 'read');
          this.requireAccess(principal, route.col, 'write');
          return this.deleteObject(res, route.root, route.col, route.objectId, url.query);
        }
        this.requireAccess(principal, route.col, 'read');
        return this.getRecords(res, route.root, route.col, 'object', url.query, route.objectId, method);
      case 'versions':
        this.requireAccess(principal, route.col, 'read');
        return this.getRecords(res, route.root, route.col, 'versions', url.query, route.objectId, method);
    }
  }

  private opening?: Promise<void>;

  /** Store.open() is idempotent: open it on first use so the owner may hand over a closed store. */
  private async ensureOpen(): Promise<void> {
    this.opening ??= this.store.open();
    try {
      await this.opening;
    } catch (err) {
      this.opening = undefined;
      const msg = err instanceof Error ? err.message : String(err);
      throw new HttpProblem(503, 'Service Unavailable', `the record store cannot be opened: ${msg}`, { 'Retry-After': '10' });
    }
  }

  private route(rel: string): Route | null {
    let path = rel;
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1); // tolerate a missing trailing slash
    if (path === '/taxii2') return { kind: 'discovery' };
    for (const root of this.routingRoots) {
      const base = '/' + root.name;
      if (path !== base && !path.startsWith(base + '/')) continue;
      const rest = path.slice(base.length).split('/').slice(1).map(decodeSegment);
      if (rest.length === 0) return { kind: 'root', root };
      if (rest[0] === 'status') {
        if (rest.length === 2 && rest[1] !== '') return { kind: 'status', root, statusId: rest[1] };
        return null;
      }
      if (rest[0] !== 'collections') return null;
      if (rest.length === 1) return { kind: 'collections', root };
      const col = root.byKey.get(rest[1]);
      if (!col) throw notFound(`no collection ${JSON.stringify(rest[1])} in API root ${root.name}`);
      if (rest.length === 2) return { kind: 'collection', root, col };
      if (rest[2] === 'manifest' && rest.length === 3) return { kind: 'manifest', root, col };
      if (rest[2] !== 'objects') return null;
      if (rest.length === 3) return { kind: 'objects', root, col };
      const objectId = rest[3];
      if (objectId === '') return null;
      if (rest.length === 4) return { kind: 'object', root, col, objectId };
      if (rest.length === 5 && rest[4] === 'versions') return { kind: 'versions', root, col, objectId };
      return null;
    }
    return null;
  }

  private unauthorized(description: string): HttpProblem {
    return new HttpProblem(401, 'Unauthorized', description, { 'WWW-Authenticate': this.auth.challenges() });
  }

  private requireAccess(p: Principal, col: ResolvedCollection, need: 'read' | 'write' | 'read-or-write'): void {
    const r = hasRole(p, col.canRead);
    const w = hasRole(p, col.canWrite);
    const ok = need === 'read' ? r : need === 'write' ? w : r || w;
    if (ok) return;
    if (p.scheme === 'anonymous') throw this.unauthorized(`collection ${col.id} is not readable without credentials`);
    const what = need === 'read' ? 'read' : need === 'write' ? 'write to' : 'access';
    throw new HttpProblem(403, 'Forbidden', `${p.name} may not ${what} collection ${col.id} (needs one of the roles: ${(need === 'write' ? col.canWrite : col.canRead).join(', ') || 'none'})`);
  }

  // -------------------------------------------------------------------------------------------
  // simple resources

  private discovery(res: ServerResponse, prefix: string): void {
    const body: Record<string, unknown> = { title: this.cfg.title };
    if (this.cfg.description) body['description'] = this.cfg.description;
    if (this.cfg.contact) body['contact'] = this.cfg.contact;
    const urls = this.cfg.roots.map((r) => `${prefix}/${r.name}/`);
    if (this.cfg.defaultApiRoot) body['default'] = `${prefix}/${this.cfg.defaultApiRoot}/`;
    if (urls.length > 0) body['api_roots'] = urls;
    sendTaxii(res, 200, body);
  }

  private apiRoot(res: ServerResponse, root: ResolvedApiRoot): void {
    const body: Record<string, unknown> = { title: root.title };
    if (root.description) body['description'] = root.description;
    body['versions'] = [TAXII_MEDIA_TYPE];
    body['max_content_length'] = root.maxContentLength;
    sendTaxii(res, 200, body);
  }

  private collectionResource(col: ResolvedCollection, p: Principal): Record<string, unknown> {
    const body: Record<string, unknown> = { id: col.id, title: col.title };
    // the policy is reported in the description (TAXII has no property for it; STIX objects are never touched)
    const sentence = integrityPolicySentence(col.integrityPolicy);
    body['description'] = col.description ? `${col.description.replace(/\s+$/, '')}${/[.!?]$/.test(col.description.trim()) ? '' : '.'} ${sentence}` : sentence;
    if (col.alias) body['alias'] = col.alias;
    body['can_read'] = hasRole(p, col.canRead);
    body['can_write'] = hasRole(p, col.canWrite);
    body['media_types'] = col.mediaTypes;
    return body;
  }

  private listCollections(res: ServerResponse, p: Principal, root: ResolvedApiRoot): void {
    // only what the caller may read or write: the others are not even named
    const cols = root.collections.filter((c) => hasRole(p, c.canRead) || hasRole(p, c.canWrite)).map((c) => this.collectionResource(c, p));
    sendTaxii(res, 200, cols.length > 0 ? { collections: cols } : {});
  }

  private async getStatus(res: ServerResponse, p: Principal, statusId: string): Promise<void> {
    if (p.scheme === 'anonymous') throw this.unauthorized('status resources are not readable without credentials');
    const status = await this.store.getStatus(statusId);
    // only the identity that created it reads a status resource; to anyone else it does not
    // exist (404, not 403: status ids are not confirmed to strangers). Statuses written before
    // owners were recorded (no owner) stay readable by any authenticated caller until they expire.
    if (!status || (status.owner !== undefined && p.scheme !== 'open' && status.owner !== principalId(p))) {
      throw notFound(`no status ${JSON.stringify(statusId)} (unknown, or expired)`);
    }
    sendTaxii(res, 200, cleanStatus(status));
  }

  // -------------------------------------------------------------------------------------------
  // reads: objects, object, manifest, versions

  private parse(query: string, endpoint: FilterEndpoint): Filters {
    try {
      return parseFilters(query, endpoint, this.cfg.maxPageSize);
    } catch (err) {
      if (err instanceof QueryError) throw new HttpProblem(400, 'Bad Request', err.message, {}, { details: { parameter: err.parameter } });
      throw err;
    }
  }

  private async getRecords(
    res: ServerResponse,
    root: ResolvedApiRoot,
    col: ResolvedCollection,
    endpoint: 'objects' | 'manifest' | 'object' | 'versions',
    rawQuery: string,
    objectId: string | undefined,
    method: string,
  ): Promise<void> {
    const f = this.parse(rawQuery, endpoint);
    const scope = `${endpoint === 'manifest' ? 'objects' : endpoint}|${root.name}|${col.id}|${objectId ?? ''}`;
    let cursor: string | undefined;
    const tokens = await this.nextTokens();
    if (f.next !== undefined) {
      try {
        cursor = tokens.open(f.next, scope, f.canonical);
      } catch (err) {
        if (err instanceof TokenError) throw new HttpProblem(400, 'Bad Request', err.message, {}, { details: { parameter: 'next', problem: err.problem } });
        throw err;
      }
    }
    const q: RecordQuery = {
      collection: col.id,
      limit: f.limit ?? this.cfg.defaultPageSize,
    };
    if (f.addedAfter !== undefined) q.addedAfter = f.addedAfter;
    if (objectId !== undefined) q.ids = [objectId];
    else if (f.ids) q.ids = f.ids;
    if (f.types) q.types = f.types;
    if (endpoint === 'versions') q.versions = ['all'];
    else if (f.versions) q.versions = f.versions;
    if (f.specVersions) q.specVersions = f.specVersions;
    if (cursor !== undefined) q.cursor = cursor;

    const page: Page<StoredRecord> = await this.store.query(q);
    const items = page.items.filter((r) => r.status !== 'invalid'); // never served, whatever the store did

    if (items.length === 0 && objectId !== undefined && cursor === undefined) {
      await this.explainMissing(col, objectId, q);
    }

    const headers: Record<string, string> = {};
    if (items.length > 0) {
      headers['X-TAXII-Date-Added-First'] = items[0].dateAdded;
      headers['X-TAXII-Date-Added-Last'] = items[items.length - 1].dateAdded;
    }
    const body: Record<string, unknown> = {};
    if (items.length > 0 || page.more) {
      body['more'] = page.more;
      if (page.more && page.cursor !== undefined) body['next'] = tokens.issue(scope, f.canonical, page.cursor);
    }
    if (items.length > 0) {
      if (endpoint === 'manifest') {
        body['objects'] = items.map((r) => ({ id: r.id, date_added: r.dateAdded, version: r.version, media_type: r.mediaType }));
      } else if (endpoint === 'versions') {
        body['versions'] = items.map((r) => r.version);
      } else {
        body['objects'] = items.map((r) => r.object);
      }
    }
    sendTaxii(res, 200, body, headers);
    // a HEAD request is answered without the records: nothing was served, nothing to re-verify;
    // an `off` collection has nothing to re-verify either
    if (items.length > 0 && method !== 'HEAD' && col.integrityPolicy !== 'off') {
      this.emitSafely('inquiry', { apiRoot: root.name, collection: col.id, records: items, policy: col.integrityPolicy });
    }
  }

  /** An object GET / versions GET found nothing: 404 (integrity failure or absent) or an empty 200. */
  private async explainMissing(col: ResolvedCollection, objectId: string, q: RecordQuery): Promise<void> {
    const invalid = await this.store.query({ ...q, includeInvalid: true, statuses: ['invalid'], limit: 1, cursor: undefined });
    const bad = invalid.items[0];
    if (bad) {
      throw new HttpProblem(
        404,
        'Not Found',
        `object ${objectId} (version ${bad.version}) in collection ${col.id} failed its integrity check and is no longer served` +
          (bad.statusReason ? `: ${bad.statusReason}` : ''),
        {},
        { details: { integrity: 'invalid' } },
      );
    }
    const any = await this.store.get(col.id, objectId);
    if (!any) throw notFound(`no object ${objectId} in collection ${col.id}`);
    // the object exists but the filters exclude every version: an empty result
  }

  // -------------------------------------------------------------------------------------------
  // add objects (paper steps 1-3)

  private async addObjects(req: IncomingMessage, res: ServerResponse, root: ResolvedApiRoot, col: ResolvedCollection, principal: Principal): Promise<void> {
    const ct = req.headers['content-type'];
    // TAXII 2.1 (version optional); STIX 2.1 is accepted too, for a bundle only (checked below)
    const stixBody = !isTaxii21MediaType(ct) && isStix21MediaType(ct);
    if (!isTaxii21MediaType(ct) && !stixBody) {
      throw new HttpProblem(
        415,
        'Unsupported Media Type',
        ct === undefined
          ? `the request has no Content-Type; send ${TAXII_MEDIA_TYPE}`
          : `Content-Type ${JSON.stringify(ct)} is not supported; send ${TAXII_MEDIA_TYPE}`,
      );
    }
    const enc = req.headers['content-encoding'];
    if (enc !== undefined && enc.trim().toLowerCase() !== 'identity') {
      throw new HttpProblem(415, 'Unsupported Media Type', `Content-Encoding ${JSON.stringify(enc)} is not supported; send the envelope uncompressed`);
    }
    const body = await readBody(req, root.maxContentLength, this.cfg.bodyTimeoutMs);
    if (!body.ok) {
      if (body.reason === 'too-large') {
        this.lingerLimit.set(req, root.maxContentLength);
        const got = body.declared !== undefined ? `Content-Length ${body.declared}` : `more than ${root.maxContentLength} octets received`;
        throw new HttpProblem(
          413,
          'Payload Too Large',
          `the request body is larger than this API root's max_content_length (${root.maxContentLength} octets; ${got}); split the envelope`,
          { Connection: 'close' },
        );
      }
      if (body.reason === 'timeout') throw new HttpProblem(408, 'Request Timeout', body.detail, { Connection: 'close' });
      throw new HttpProblem(400, 'Bad Request', `the request body could not be read: ${body.detail}`, { Connection: 'close' });
    }
    // strict (I-JSON): what is hashed must be what every party reads from these bytes
    let envelope: unknown;
    try {
      envelope = parseStrictJson(body.body);
    } catch (err) {
      if (err instanceof StrictJsonError) {
        const details: Record<string, unknown> = { problem: err.problem };
        if (err.path !== undefined) details['path'] = err.path;
        throw new HttpProblem(400, 'Bad Request', err.problem === 'syntax' ? err.message : `the request body is refused: ${err.message}`, {}, { details });
      }
      throw err;
    }
    if (!isRecord(envelope)) throw new HttpProblem(422, 'Unprocessable Content', 'the request body must be a TAXII envelope: a JSON object with an "objects" list');
    // A STIX bundle instead of an envelope (what many tools export): its `objects` are read, the
    // bundle itself is not stored. It must be a well-formed bundle, not any object with `objects`.
    const isBundle = envelope['type'] === 'bundle';
    if (isBundle && (typeof envelope['id'] !== 'string' || !BUNDLE_ID_RE.test(envelope['id']))) {
      throw new HttpProblem(422, 'Unprocessable Content', `the body is a STIX bundle with an invalid id ${JSON.stringify(envelope['id'])} (expected bundle--<UUID>)`);
    }
    if (stixBody && !isBundle) {
      throw new HttpProblem(415, 'Unsupported Media Type', `Content-Type ${JSON.stringify(ct)} is not supported for a TAXII envelope (it is accepted for a STIX bundle only); send ${TAXII_MEDIA_TYPE}`);
    }
    if (!isBundle && typeof envelope['type'] === 'string' && typeof envelope['id'] === 'string' && !('objects' in envelope)) {
      throw new HttpProblem(422, 'Unprocessable Content', `the body is a single STIX object (${envelope['type']}); wrap it in an envelope: {"objects": [...]}`);
    }
    if (!('objects' in envelope)) throw new HttpProblem(422, 'Unprocessable Content', `the ${isBundle ? 'bundle' : 'envelope'} has no "objects" property`);
    const objects = envelope['objects'];
    if (!Array.isArray(objects)) throw new HttpProblem(422, 'Unprocessable Content', 'the envelope\'s "objects" must be a list of STIX objects');
    if (objects.length === 0) throw new HttpProblem(422, 'Unprocessable Content', 'the envelope\'s "objects" list is empty (TAXII forbids empty lists)');

    const statusId = randomUUID();
    const successes: StatusDetail[] = [];
    const failures: DraftDetail[] = [];
    const pendings: StatusDetail[] = [];
    const added: StoredRecord[] = [];
    /** pending records POSTed again: handed to the flow again (their first check may have been lost) */
    const again: StoredRecord[] = [];
    const requestTimestamp = taxiiTimestamp(new Date());

    // Held until the status resource is written, so that a markIntegrity racing in (a reader's
    // inquiry re-verifies a record before this request has finished) finds the status.
    const status = await this.withStatusLock(statusId, async (): Promise<StatusResource> => {
      const prepared = objects.map((o, i) => prepareRecord(o, i, col));
      // a record that starts pending under `required` lists this request's status resource, so a
      // verdict recorded later (after a restart, on another instance) still settles it there
      const listed = col.integrityPolicy === 'required';
      const toStore = prepared.flatMap((p) => (p.ok ? [listed && p.record.status === 'pending' ? { ...p.record, statusIds: [statusId] } : p.record] : []));
      const outcomes = await this.storeAll(toStore, col);
      let k = 0;
      for (const [i, prep] of prepared.entries()) {
        if (!prep.ok) {
          const item: unknown = objects[i];
          const named = isRecord(item) && typeof item['id'] === 'string';
          failures.push(named ? { id: prep.id, version: prep.version, message: prep.message } : { id: prep.id, version: prep.version, message: prep.message, index: i });
          continue;
        }
        const outcome = outcomes[k++];
        if (outcome instanceof Error) {
          const errorId = randomUUID();
          this.log('error', `storing ${prep.record.id} in ${col.id} failed (error_id ${errorId})`, { errorId, error: outcome.stack ?? outcome.message });
          failures.push({ id: prep.record.id, version: prep.record.version, message: `the server could not store this object (error_id ${errorId})` });
          continue;
        }
        const rec = outcome.record;
        const d = { id: rec.id, version: rec.version };
        if (outcome.outcome === 'added') {
          if (rec.status === 'pending' && col.integrityPolicy === 'required') {
            pendings.push(d);
          } else if (col.integrityPolicy === 'optional') {
            successes.push({ ...d, message: 'added; integrity optional: verified when its hash is anchored' });
          } else {
            successes.push(d);
          }
          added.push(rec);
        } else if (outcome.outcome === 'duplicate') {
          if (rec.status === 'invalid') {
            failures.push({ ...d, message: `already present and marked invalid${rec.statusReason ? `: ${rec.statusReason}` : ''}` });
          } else {
            const checking = rec.status === 'pending' && col.integrityPolicy === 'required';
            successes.push({ ...d, message: checking ? 'already present (integrity check pending)' : 'already present' });
            if (rec.status === 'pending' && col.integrityPolicy !== 'off') again.push(rec);
          }
        } else {
          failures.push({ id: prep.record.id, version: prep.record.version || rec.version, message: 'a different object already uses this id and version' });
        }
      }

      // bounded: the answer (and the stored status) stays within about 2x the body + 64 KiB
      const listedFailures = boundFailures(failures, [...successes, ...pendings], body.body.length);
      const built = buildStatus(statusId, requestTimestamp, successes, listedFailures, pendings, successes.length + failures.length + pendings.length, principalId(principal));
      built.failure_count = failures.length;
      try {
        await this.store.putStatus(built);
      } catch (err) {
        // the records are stored: still announce them, then report the failure
        for (const rec of added) this.emitSafely('object', this.objectEvent(root.name, col, rec, 'admission', statusId));
        for (const rec of again) this.emitAgain(root.name, col, rec);
        throw err;
      }
      return built;
    });
    sendTaxii(res, 202, cleanStatus(status));
    for (const rec of added) this.emitSafely('object', this.objectEvent(root.name, col, rec, 'admission', statusId));
    for (const rec of again) this.emitAgain(root.name, col, rec);
  }

  private objectEvent(apiRoot: string, col: ResolvedCollection, rec: StoredRecord, origin: ObjectEvent['origin'], statusId?: string, attempt?: number): ObjectEvent {
    const deadline = anchorDeadline(rec.dateAdded, this.cfg.recovery.graceMs);
    const e: ObjectEvent = {
      apiRoot,
      collection: col.id,
      record: rec,
      policy: col.integrityPolicy,
      origin,
      anchorDeadline: Number.isFinite(deadline) ? new Date(deadline).toISOString() : rec.dateAdded,
    };
    const sid = statusId ?? rec.statusIds?.[0];
    if (sid !== undefined) e.statusId = sid;
    if (attempt !== undefined) e.attempt = attempt;
    return e;
  }

  /** Re-emit a pending record for verification (recovery), counting the attempts. */
  private emitAgain(apiRoot: string, col: ResolvedCollection, rec: StoredRecord): void {
    const key = pendingKey(rec.collection, rec.id, normaliseVersion(rec.version));
    const n = (this.attempts.get(key) ?? 0) + 1;
    this.attempts.delete(key); // re-inserted last: the map forgets the least recently emitted first
    if (this.attempts.size >= MAX_ATTEMPTS_TRACKED) {
      const oldest = this.attempts.keys().next();
      if (!oldest.done) this.attempts.delete(oldest.value);
    }
    this.attempts.set(key, n);
    this.emitSafely('object', this.objectEvent(apiRoot, col, rec, 'recovery', undefined, n));
  }

  // -------------------------------------------------------------------------------------------
  // recovery of records that stay pending

  startRecovery(): void {
    if (this.closed || this.recoveryTimer) return;
    const every = this.cfg.recovery.intervalMs;
    const tick = (): void => {
      this.recoveryTimer = undefined;
      if (this.closed) return;
      void this.recover().finally(() => {
        if (!this.closed && every > 0) {
          this.recoveryTimer = setTimeout(tick, every);
          this.recoveryTimer.unref();
        }
      });
    };
    // soon, not now: the caller attaches its listeners first
    this.recoveryTimer = setTimeout(tick, 0);
    this.recoveryTimer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
    this.recoveryTimer = undefined;
  }

  recover(): Promise<RecoveryReport> {
    // one sweep at a time: a second call joins the one in progress
    this.sweeping ??= this.sweep().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async sweep(): Promise<RecoveryReport> {
    const report: RecoveryReport = { emitted: 0, scanned: 0, errors: [] };
    try {
      this.opening ??= this.store.open();
      await this.opening;
    } catch (err) {
      this.opening = undefined;
      const msg = err instanceof Error ? err.message : String(err);
      this.log('warn', `recovery sweep skipped: the record store cannot be opened: ${msg}`);
      for (const root of this.cfg.roots) for (const c of root.collections) report.errors.push({ collection: c.id, error: msg });
      return report;
    }
    const { graceMs, batchSize } = this.cfg.recovery;
    for (const root of this.cfg.roots) {
      for (const col of root.collections) {
        if (col.integrityPolicy === 'off' || this.closed) continue;
        try {
          await this.sweepCollection(root.name, col, graceMs, batchSize, report);
        } catch (err) {
          const msg = err instanceof Error ? err.message : String(err);
          report.errors.push({ collection: col.id, error: msg });
          this.sweepCursor.delete(col.id);
          this.log('warn', `recovery sweep of collection ${col.id} failed (retried at the next sweep): ${msg}`);
        }
      }
    }
    if (report.emitted > 0) this.log('info', `recovery sweep: ${report.emitted} pending record(s) emitted again for verification`);
    return report;
  }

  /** One page of a collection's pending records, oldest first, from where the last sweep stopped. */
  private async sweepCollection(apiRoot: string, col: ResolvedCollection, graceMs: number, batchSize: number, report: RecoveryReport): Promise<void> {
    // older than the grace period, or admitted before this server object existed (orphans of a
    // restart / redeploy: nothing in this process is verifying them)
    const horizon = Math.max(Date.now() - graceMs, this.startedAt - 1);
    const cursor = this.sweepCursor.get(col.id);
    const page = await this.store.query({
      collection: col.id,
      statuses: ['pending'],
      versions: ['all'],
      specVersions: ['2.0', '2.1'],
      limit: batchSize,
      ...(cursor !== undefined ? { cursor } : {}),
    });
    let reachedYoung = false;
    for (const rec of page.items) {
      if (rec.status !== 'pending') continue;
      report.scanned++;
      const added = Date.parse(rec.dateAdded);
      if (!(added <= horizon)) {
        // ascending date_added: every record after this one is younger still
        reachedYoung = true;
        break;
      }
      this.emitAgain(apiRoot, col, rec);
      report.emitted++;
    }
    if (reachedYoung || !page.more || page.cursor === undefined) this.sweepCursor.delete(col.id);
    else this.sweepCursor.set(col.id, page.cursor);
  }

  /**
   * Store an envelope's records in one atomic write; when the store refuses the batch, store them
   * one by one so that one bad record fails alone (its Error takes its place in the result).
   */
  private async storeAll(recs: NewRecord[], col: ResolvedCollection): Promise<Array<AddOutcome | Error>> {
    if (recs.length === 0) return [];
    try {
      const out = await this.store.addMany(recs);
      if (out.length === recs.length) return out;
      this.log('warn', `store.addMany returned ${out.length} outcomes for ${recs.length} records in ${col.id}; adding one by one`);
    } catch (err) {
      if (storeProblem(err)?.status === 503) throw err;
      this.log('warn', `store.addMany failed in ${col.id}, adding one by one: ${err instanceof Error ? err.message : String(err)}`);
    }
    const out: Array<AddOutcome | Error> = [];
    for (const r of recs) {
      try {
        out.push(await this.store.add(r));
      } catch (err) {
        if (storeProblem(err)?.status === 503) throw err;
        out.push(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // delete (right to be forgotten)

  private async deleteObject(res: ServerResponse, root: ResolvedApiRoot, col: ResolvedCollection, objectId: string, rawQuery: string): Promise<void> {
    const f = this.parse(rawQuery, 'delete');
    const filter: { versions?: string[]; specVersions?: string[] } = {};
    if (f.versions) filter.versions = f.versions;
    if (f.specVersions) filter.specVersions = f.specVersions;
    const count = await this.store.delete(col.id, objectId, filter);
    if (count === 0) throw notFound(`no object ${objectId} in collection ${col.id} matches`);
    sendTaxii(res, 200, undefined);
    this.emitSafely('delete', { apiRoot: root.name, collection: col.id, id: objectId, count });
  }

  // -------------------------------------------------------------------------------------------
  // SETS integrity (paper §4.2)

  policyOf(collection: string): IntegrityPolicy | undefined {
    return this.collectionsByKey.get(collection)?.integrityPolicy;
  }

  /** Policy of a collection id as stored; a collection not configured here is treated as `required`. */
  private policyFor(collection: string): { id: string; policy: IntegrityPolicy } {
    const col = this.collectionsByKey.get(collection);
    return col ? { id: col.id, policy: col.integrityPolicy } : { id: collection, policy: 'required' };
  }

  async markIntegrity(
    collection: string,
    id: string,
    version: string,
    status: Exclude<IntegrityStatus, 'pending'> | IntegrityVerdict,
    reason?: string,
    statusId?: string,
  ): Promise<boolean> {
    if (isIntegrityVerdict(status)) {
      return (await this.recordVerification(collection, id, version, status, reason, statusId)).stored;
    }
    if (status !== 'finalized' && status !== 'invalid') {
      throw new RangeError(`markIntegrity: status must be finalized or invalid (or a verdict: verified, mismatch, not-anchored, unknown), got ${String(status)}`);
    }
    const { id: colId, policy } = this.policyFor(collection);
    if (policy === 'off') return (await this.store.get(colId, id, normaliseVersion(version))) !== null;
    return this.settle(colId, id, version, status, reason, statusId);
  }

  async recordVerification(
    collection: string,
    id: string,
    version: string,
    verdict: IntegrityVerdict,
    reason?: string,
    statusId?: string,
    origin?: IntegrityOrigin,
  ): Promise<VerificationOutcome> {
    if (!isIntegrityVerdict(verdict)) {
      throw new RangeError(`recordVerification: verdict must be one of ${INTEGRITY_VERDICTS.join(', ')}, got ${String(verdict)}`);
    }
    const { id: colId, policy } = this.policyFor(collection);
    const v = normaliseVersion(version);
    const out = await recordVerdict(this.store, {
      collection: colId,
      id,
      version: v,
      verdict,
      ...(reason !== undefined ? { reason } : {}),
      statusIds: statusId ? [statusId] : [],
      policy,
      ...(origin !== undefined ? { origin } : {}),
      anchorGraceMs: this.cfg.recovery.graceMs,
    });
    if (out.changed || !out.stored) this.attempts.delete(pendingKey(colId, id, v));
    return out;
  }

  async integrityOf(collection: string, id: string, version?: string): Promise<IntegrityView | null> {
    const { id: colId, policy } = this.policyFor(collection);
    const rec = await this.store.get(colId, id, version === undefined ? undefined : normaliseVersion(version));
    if (!rec) return null;
    const view: IntegrityView = {
      collection: rec.collection,
      id: rec.id,
      version: rec.version,
      policy,
      status: reportedStatus(rec, policy),
      statusAt: rec.statusAt,
      dateAdded: rec.dateAdded,
      hash: rec.hash,
      key: rec.key,
    };
    if (rec.statusReason) view.reason = rec.statusReason;
    return view;
  }

  async integrityCounts(collections?: readonly string[]): Promise<IntegrityCounts> {
    const ids = collections ?? [...new Set([...this.collectionsByKey.values()].map((c) => c.id))];
    const total: IntegrityCounts = { pending: 0, finalized: 0, invalid: 0, unverified: 0 };
    for (const c of ids) {
      const { id, policy } = this.policyFor(c);
      const n = await this.store.counts(id);
      if (policy === 'off') {
        total.unverified += n.pending + n.finalized + n.invalid;
      } else {
        total.pending += n.pending;
        total.finalized += n.finalized;
        total.invalid += n.invalid;
      }
    }
    return total;
  }

  /** Write a decision and move the record in the status resource(s) listing it as pending. */
  /** A direct mark (markIntegrity with a status): the record and every status resource listing it. */
  private async settle(
    collection: string,
    id: string,
    version: string,
    status: Exclude<IntegrityStatus, 'pending'>,
    reason?: string,
    statusId?: string,
  ): Promise<boolean> {
    const v = normaliseVersion(version);
    const rec = await this.store.get(collection, id, v);
    if (!rec) return false;
    const ok = await this.store.setStatus(collection, id, v, status, reason);
    if (!ok) return false;
    const key = pendingKey(collection, id, v);
    const ids = new Set<string>(rec.statusIds ?? []);
    if (statusId) ids.add(statusId);
    this.attempts.delete(key);
    for (const sid of ids) await settleStatusEntry(this.store, sid, id, v, status, reason);
    return true;
  }

  private withStatusLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return withStatusLock(this.store, id, fn);
  }

  private emitSafely<E extends keyof TaxiiServerEvents>(event: E, ...args: TaxiiServerEvents[E]): void {
    // each listener on its own: one that throws neither breaks the request nor starves the others
    for (const listener of this.listeners(event) as Array<(...a: TaxiiServerEvents[E]) => unknown>) {
      try {
        const ret = listener.apply(this, args);
        if (ret instanceof Promise) ret.catch((err: unknown) => this.listenerFailed(event, err));
      } catch (err) {
        this.listenerFailed(event, err);
      }
    }
  }

  private listenerFailed(event: string, err: unknown): void {
    this.log('error', `a listener of the ${event} event failed`, { error: err instanceof Error ? err.stack ?? err.message : String(err) });
  }
}

/** How long a 413 answer waits for the client to finish sending the body it refused (ms). */
export const LINGER_413_MS = 10_000;
/** Octets of a refused body read and dropped after a 413: 4 × max_content_length, at least this. */
export const LINGER_413_MIN_BYTES = 16 * 1024 * 1024;

/**
 * After a 413 (answered with `Connection: close`) the rest of the body is unread. Closing the
 * socket at once makes the kernel reset the connection while the client is still sending, and a
 * client that sends its whole body before reading (Python `requests`, so the OASIS reference
 * client) then sees a connection reset instead of the 413. So the socket is half-closed (our FIN
 * follows the answer) and the body is read and dropped until the client closes its side, or
 * `maxBytes` more octets arrived, or `LINGER_413_MS` passed; then the socket is destroyed.
 *
 * Node's HTTP server destroys the socket right after a `Connection: close` answer
 * (`socket.destroySoon()`); that call is replaced for this one socket. The HTTP parser consumes
 * the socket directly (no `data` events), so the byte bound is checked on `socket.bytesRead`.
 */
function lingerAfter413(req: IncomingMessage, maxBytes: number): void {
  const socket = req.socket as IncomingMessage['socket'] & { destroySoon?: () => void };
  if (!socket || socket.destroyed) return;
  const startBytes = socket.bytesRead;
  const startedAt = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const finish = (): void => {
    if (timer) clearInterval(timer);
    timer = undefined;
    socket.destroy();
  };
  const check = (): void => {
    if (socket.destroyed) {
      if (timer) clearInterval(timer);
      return;
    }
    if (socket.bytesRead - startBytes > maxBytes || Date.now() - startedAt > LINGER_413_MS) finish();
  };
  timer = setInterval(check, 50);
  timer.unref();
  socket.once('end', finish); // the client closed its side: it has read the answer (or gave up)
  socket.once('close', () => {
    if (timer) clearInterval(timer);
  });
  // half-close instead of destroy when the HTTP server is done with the answer
  socket.destroySoon = () => {
    if (socket.writable) socket.end();
  };
  // the body must keep flowing (and be dropped) for the client to finish sending
  req.resume();
}

/** Store errors a client can act on (bad cursor/query: 400) or wait out (unreachable: 503). */
function storeProblem(err: unknown): HttpProblem | null {
  const code = err instanceof StoreError ? err.code : isRecord(err) && typeof err['code'] === 'string' ? err['code'] : undefined;
  const msg = err instanceof Error ? err.message : String(err);
  switch (code) {
    case 'ERR_STORE_BAD_CURSOR':
      return new HttpProblem(400, 'Bad Request', `the next token does not name a position in this collection (${msg})`, {}, { details: { parameter: 'next' } });
    case 'ERR_STORE_BAD_QUERY':
      return new HttpProblem(400, 'Bad Request', msg);
    case 'ERR_STORE_CONNECT':
    case 'ERR_STORE_NOT_OPEN':
    case 'ERR_STORE_LOCKED':
      return new HttpProblem(503, 'Service Unavailable', `the record store is not available: ${msg}`, { 'Retry-After': '10' });
    default:
      return null;
  }
}

/** A record's integrity as reported: records of an `off` collection (or stored under `off`) are `unverified`. */

/** The identity a status resource is bound to: scheme and name (a Basic user and a JWT subject of the same name differ). */
function principalId(p: Principal): string {
  return `${p.scheme}:${p.name}`;
}

function pendingKey(collection: string, id: string, version: string): string {
  return JSON.stringify([collection, id, version]);
}


/** A status resource as sent: no empty lists (TAXII forbids them), only the spec's properties. */
function cleanStatus(s: StatusResource): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: s.id,
    status: s.status,
    request_timestamp: s.request_timestamp,
    total_count: s.total_count,
    success_count: s.success_count,
    failure_count: s.failure_count,
    pending_count: s.pending_count,
  };
  if (s.successes && s.successes.length > 0) out['successes'] = s.successes;
  if (s.failures && s.failures.length > 0) out['failures'] = s.failures;
  if (s.pendings && s.pendings.length > 0) out['pendings'] = s.pendings;
  return out;
}
