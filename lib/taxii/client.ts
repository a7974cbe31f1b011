/**
 * TAXII 2.1 client (OASIS TAXII 2.1 OS; behaviour of the reference client taxii2-client 2.3
 * where the spec leaves room — see /work/shared/TAXII-NOTES.md).
 *
 * - Every request sends `Accept: application/taxii+json;version=2.1`; POSTs send the same
 *   Content-Type. Resource URLs get a trailing `/`.
 * - Every 2xx body must be TAXII (Content-Type `application/taxii+json`, version 2.1 or absent)
 *   and carry the resource's required properties, else `BAD_RESPONSE`.
 * - Every non-2xx becomes a `TaxiiError` with code `HTTP_<status>` whose message carries the
 *   TAXII error resource (title, description) or a snippet of a non-TAXII body.
 * - A 401 makes a refreshable auth provider (OAuth2) drop its token, and the request is retried
 *   once. Idempotent GETs are retried once after a connection reset (stale keep-alive socket);
 *   POSTs never are.
 * - `addObjects` splits a batch whose envelope exceeds the API root's `max_content_length`,
 *   checks the status counts and polls `{api-root}/status/{id}/` until `complete`.
 * - `iter*` page with `next` when the server gives one, else with `added_after` just before
 *   X-TAXII-Date-Added-Last (1 µs earlier, so records sharing that date_added are not skipped);
 *   an expired `next` token restarts the same way (or from the query's own `added_after` when
 *   the server sends no date headers). Records already delivered are dropped by (id, version),
 *   so a restart neither loses nor duplicates, however many pages share one date_added. A server
 *   that repeats a page (beyond what a restart re-serves) or does not advance is detected (no
 *   endless loop) and reported as `BAD_RESPONSE`.
 * - `added_after` is sent as UTC `Z` with 6 fractional digits whatever spelling was given
 *   (`normaliseAddedAfter`); an unparsable one is refused before any request.
 * - `deleteObject` without versions sends `match[version]=all` (every version is deleted).
 */
import type { AxiosInstance, AxiosResponse } from 'axios';
import { classifyTransportError, closeHttpClient, createHttpClient, type HttpOptions, type TlsOptions } from '../http';
import type { AuthProvider } from '../auth/client';
import { TAXII_MEDIA_TYPE, compareTimestamps, isTaxii21MediaType, parseMediaType, parseTimestamp, taxiiTimestamp } from './media';
import { TaxiiError, bodySnippet, httpErrorMessage, parseTaxiiErrorResource, type TaxiiErrorResource } from './errors';

// ---------------------------------------------------------------------------------------------
// Resources

export interface Discovery {
  title: string;
  description?: string;
  contact?: string;
  default?: string;
  api_roots?: string[];
  [k: string]: unknown;
}

export interface ApiRootInfo {
  title: string;
  description?: string;
  versions: string[];
  max_content_length: number;
  [k: string]: unknown;
}

export interface Collection {
  id: string;
  title: string;
  description?: string;
  alias?: string;
  can_read: boolean;
  can_write: boolean;
  media_types?: string[];
  [k: string]: unknown;
}

export interface StatusDetails {
  id: string;
  version?: string;
  message?: string;
  [k: string]: unknown;
}

export interface TaxiiStatus {
  id: string;
  status: 'complete' | 'pending';
  request_timestamp?: string;
  total_count: number;
  success_count: number;
  failure_count: number;
  pending_count: number;
  successes?: StatusDetails[];
  failures?: StatusDetails[];
  pendings?: StatusDetails[];
  [k: string]: unknown;
}

/** Result of addObjects: the final status; when the batch was split, the sum of the parts. */
export interface AddObjectsResult extends TaxiiStatus {
  /** the status of every POST (one unless the batch was split by max_content_length) */
  requests: TaxiiStatus[];
}

/** A STIX object as received (only `id` and `type` are checked). */
export interface TaxiiObject {
  id: string;
  type: string;
  [k: string]: unknown;
}

export interface ManifestRecord {
  id: string;
  date_added: string;
  version: string;
  media_type?: string;
  [k: string]: unknown;
}

interface PageMeta {
  more: boolean;
  next?: string;
  /** X-TAXII-Date-Added-First of this response */
  dateAddedFirst?: string;
  /** X-TAXII-Date-Added-Last of this response */
  dateAddedLast?: string;
}

export interface ObjectsPage extends PageMeta {
  objects: TaxiiObject[];
}
export interface ManifestPage extends PageMeta {
  objects: ManifestRecord[];
}
export interface VersionsPage extends PageMeta {
  versions: string[];
}

// ---------------------------------------------------------------------------------------------
// Filters

export type MatchValue = string | readonly string[];

export interface TaxiiFilters {
  /** records added strictly after this instant (a Date or an RFC 3339 timestamp) */
  addedAfter?: string | Date;
  /** page size asked of the server */
  limit?: number;
  /** paging token from a previous response */
  next?: string;
  /** `match[<field>]`; array values are joined with commas (OR) */
  match?: {
    id?: MatchValue;
    type?: MatchValue;
    version?: MatchValue;
    spec_version?: MatchValue;
    [field: string]: MatchValue | undefined;
  };
}

const MATCH_ORDER = ['id', 'type', 'version', 'spec_version'];

function invalid(msg: string): TaxiiError {
  return new TaxiiError(msg, { code: 'INVALID_ARGUMENT' });
}

/**
 * An `added_after` value as it goes on the wire: UTC, `Z`, exactly 6 fractional digits
 * (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), whatever RFC 3339 spelling was given (an offset, `t`/`z`, a space
 * for `T`, no or more fractional digits). The OASIS reference server medallion parses it with
 * `%Y-%m-%dT%H:%M:%S.%fZ` and answers 500 to anything else. Digits beyond the microsecond are
 * dropped (rounded down, never up): added_after is "strictly later than", so an earlier bound can
 * only re-serve records, never lose one — and as date_added has µs precision, it selects exactly
 * the same records. Anything that is not an RFC 3339 timestamp (or an invalid Date) is refused
 * with INVALID_ARGUMENT.
 */
export function normaliseAddedAfter(value: string | Date): string {
  const shown = value instanceof Date ? String(value) : JSON.stringify(value);
  const fail = (): TaxiiError => invalid(`addedAfter is not an RFC 3339 timestamp such as 2024-01-31T12:00:00Z or 2024-01-31T13:00:00.123+01:00: ${shown}`);
  let p: { epochMs: number; micros: number } | null;
  if (value instanceof Date) p = Number.isFinite(value.getTime()) ? { epochMs: value.getTime(), micros: 0 } : null;
  else p = typeof value === 'string' ? parseTimestamp(value) : null;
  if (!p) throw fail();
  try {
    return taxiiTimestamp(new Date(p.epochMs), p.micros);
  } catch {
    // a year outside 0000..9999 once in UTC
    throw fail();
  }
}

/**
 * The query string for a set of filters, without the leading `?`:
 * `added_after=…&limit=…&next=…&match%5Bid%5D=a,b&…` (names percent-encoded as taxii2-client
 * sends them, values percent-encoded except the commas that separate alternatives).
 */
export function buildTaxiiQuery(filters: TaxiiFilters = {}): string {
  const parts: string[] = [];
  const enc = (v: string): string => encodeURIComponent(v);
  if (filters.addedAfter !== undefined) parts.push(`added_after=${enc(normaliseAddedAfter(filters.addedAfter))}`);
  if (filters.limit !== undefined) {
    if (!Number.isInteger(filters.limit) || filters.limit < 1) throw invalid(`limit must be a positive integer, got ${String(filters.limit)}`);
    parts.push(`limit=${filters.limit}`);
  }
  if (filters.next !== undefined) {
    if (typeof filters.next !== 'string' || filters.next === '') throw invalid('next must be a non-empty string');
    parts.push(`next=${enc(filters.next)}`);
  }
  const match = filters.match ?? {};
  const fields = Object.keys(match).filter((k) => match[k] !== undefined);
  fields.sort((a, b) => {
    const ia = MATCH_ORDER.indexOf(a), ib = MATCH_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : a > b ? 1 : 0);
  });
  for (const f of fields) {
    if (!/^[a-z0-9_]+$/i.test(f)) throw invalid(`invalid match field ${JSON.stringify(f)}`);
    const raw = match[f];
    const values: readonly string[] = typeof raw === 'string' ? [raw] : (raw ?? []);
    if (values.length === 0 || values.some((v) => typeof v !== 'string' || v === '')) {
      throw invalid(`match[${f}] needs one or more non-empty strings`);
    }
    parts.push(`match%5B${f}%5D=${values.map(enc).join(',')}`);
  }
  return parts.join('&');
}

// ---------------------------------------------------------------------------------------------
// Client

export interface TaxiiClientOptions {
  /** a discovery URL or an API root URL (told apart by the first response) */
  url?: string;
  /** discovery endpoint, e.g. https://host/taxii2/ */
  discoveryUrl?: string;
  /** API root, e.g. https://host/api1/ (skips discovery) */
  apiRootUrl?: string;
  auth?: AuthProvider;
  /** total time per request (default 30 000 ms) */
  timeoutMs?: number;
  /** TCP connect + TLS handshake (default 10 000 ms) */
  connectTimeoutMs?: number;
  tls?: TlsOptions;
  /** proxy URL; none by default */
  proxy?: string;
  /** more HTTP options (user agent, keep-alive, response size cap, ...) */
  http?: HttpOptions;
  /** status polling interval (default 1 000 ms) */
  pollIntervalMs?: number;
  /** give up polling a pending status after this long (default 60 000 ms) */
  pollTimeoutMs?: number;
  /** `limit` sent by the iter* methods when the filters have none (default 100) */
  pageSize?: number;
  /**
   * how many recently delivered (id, version) keys the iter* methods remember to drop duplicates
   * after a paging restart (default 100,000, about 10 MB); see `paginate`
   */
  dedupeWindow?: number;
  /** accept 2xx bodies labelled `application/json` (or `+json`) too (default false) */
  lenientContentType?: boolean;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface AddObjectsOptions extends CallOptions {
  /** poll until the status is complete (default true) */
  wait?: boolean;
  pollIntervalMs?: number;
  pollTimeoutMs?: number;
  /** throw STATUS_FAILED when any object failed (default false: failures are in the result) */
  failOnFailures?: boolean;
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  url: string;
}

interface SendOptions extends CallOptions {
  query?: string;
  body?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function withSlash(u: string): string {
  return u.endsWith('/') ? u : u + '/';
}

function checkHttpUrl(u: string, what: string): string {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw invalid(`${what} is not a valid URL: ${JSON.stringify(u)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`${what} must be http(s): ${u}`);
  if (url.search || url.hash) throw invalid(`${what} must not have a query or fragment: ${u}`);
  return withSlash(url.href);
}

function seg(s: string, what: string): string {
  if (typeof s !== 'string' || s === '') throw invalid(`${what} must be a non-empty string`);
  return encodeURIComponent(s);
}

function headerMap(res: AxiosResponse): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers ?? {})) {
    if (typeof v === 'string') out[k.toLowerCase()] = v;
    else if (Array.isArray(v)) out[k.toLowerCase()] = v.join(', ');
    else if (typeof v === 'number') out[k.toLowerCase()] = String(v);
  }
  return out;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new TaxiiError('aborted', { code: 'ABORTED' }));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new TaxiiError('aborted while waiting to poll the status', { code: 'ABORTED' }));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class TaxiiClient {
  private readonly opts: TaxiiClientOptions;
  private readonly http: AxiosInstance;
  private readonly closer = new AbortController();
  private readonly timeoutMs: number;
  private discoveryUrl: string | undefined;
  private apiRootUrlP: Promise<string> | undefined;
  private apiRootInfoP: Promise<ApiRootInfo> | undefined;
  private probed: { kind: 'discovery'; body: Discovery } | { kind: 'api-root'; body: ApiRootInfo } | undefined;

  constructor(opts: TaxiiClientOptions) {
    this.opts = opts;
    if (!opts.url && !opts.discoveryUrl && !opts.apiRootUrl) throw invalid('TaxiiClient needs url, discoveryUrl or apiRootUrl');
    if (opts.discoveryUrl) this.discoveryUrl = checkHttpUrl(opts.discoveryUrl, 'discoveryUrl');
    if (opts.apiRootUrl) this.apiRootUrlP = Promise.resolve(checkHttpUrl(opts.apiRootUrl, 'apiRootUrl'));
    if (opts.url) checkHttpUrl(opts.url, 'url');
    this.timeoutMs = opts.timeoutMs ?? opts.http?.timeoutMs ?? 30_000;
    const httpOpts: HttpOptions = { ...opts.http, timeoutMs: this.timeoutMs };
    if (opts.connectTimeoutMs !== undefined) httpOpts.connectTimeoutMs = opts.connectTimeoutMs;
    if (opts.tls !== undefined) httpOpts.tls = opts.tls;
    if (opts.proxy !== undefined) httpOpts.proxy = opts.proxy;
    this.http = createHttpClient(httpOpts);
  }

  /** Abort requests in flight and close idle connections. The client is unusable afterwards. */
  close(): void {
    this.closer.abort();
    closeHttpClient(this.http);
  }

  // ---- transport --------------------------------------------------------------------------

  private async send(method: 'GET' | 'POST' | 'DELETE', baseUrl: string, o: SendOptions = {}): Promise<RawResponse> {
    const url = o.query ? `${baseUrl}?${o.query}` : baseUrl;
    const signals = [this.closer.signal];
    if (o.signal) signals.push(o.signal);
    const signal = signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    let authRetried = false;
    let resetRetried = false;
    for (;;) {
      if (signal.aborted) throw new TaxiiError(`TAXII ${method} ${url} aborted`, { code: 'ABORTED', method, url });
      const authHeaders = this.opts.auth ? await this.opts.auth.headers() : {};
      const headers: Record<string, string> = { ...authHeaders, Accept: TAXII_MEDIA_TYPE };
      if (o.body !== undefined) headers['Content-Type'] = TAXII_MEDIA_TYPE;
      let res: AxiosResponse<unknown>;
      try {
        res = await this.http.request<unknown>({
          method,
          url,
          headers,
          data: o.body,
          signal,
          timeout: this.timeoutMs,
          // redirects are not followed for writes: a 307/308 on POST must not replay the body elsewhere
          ...(method === 'GET' ? {} : { maxRedirects: 0 }),
        });
      } catch (err) {
        const t = classifyTransportError(err);
        if (t.reset && method === 'GET' && !resetRetried) {
          resetRetried = true;
          continue;
        }
        let detail = t.detail;
        if (t.kind === 'TIMEOUT' && /^timeout of \d+ms exceeded$/.test(detail)) detail = `no complete answer within ${this.timeoutMs} ms`;
        if (/maxContentLength/.test(detail)) {
          throw new TaxiiError(`TAXII ${method} ${url} failed: response body too large (${detail})`, { code: 'BAD_RESPONSE', method, url, cause: err });
        }
        const kind = t.kind === 'ABORTED' && !this.closer.signal.aborted && !o.signal?.aborted ? 'NETWORK' : t.kind;
        if (kind === 'TLS' && /UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER/.test(t.code ?? '')) {
          detail += ' (the server certificate is not trusted: give its CA certificate as tls.ca)';
        }
        throw new TaxiiError(`TAXII ${method} ${url} failed: ${kind.toLowerCase()}${t.code ? ` ${t.code}` : ''}: ${detail}`, {
          code: kind,
          method,
          url,
          cause: err,
        });
      }
      const body = typeof res.data === 'string' ? res.data : res.data === undefined || res.data === null ? '' : String(res.data);
      if (res.status === 401 && this.opts.auth?.invalidate && !authRetried) {
        authRetried = true;
        this.opts.auth.invalidate(authHeaders);
        continue;
      }
      if (res.status < 200 || res.status > 299) {
        let parsed: unknown;
        try {
          parsed = body ? JSON.parse(body) : undefined;
        } catch {
          parsed = undefined;
        }
        const taxiiError: TaxiiErrorResource | undefined = parseTaxiiErrorResource(parsed);
        const snippet = taxiiError ? undefined : body ? bodySnippet(body) : undefined;
        let message = httpErrorMessage(method, url, res.status, res.statusText, taxiiError, snippet);
        const location = res.status >= 300 && res.status < 400 ? headerMap(res)['location'] : undefined;
        if (location) message += ` (redirect to ${location} not followed${method === 'GET' ? ': too many redirects' : ' for a ' + method}; configure the final URL)`;
        throw new TaxiiError(message, {
          code: `HTTP_${res.status}`,
          method,
          url,
          httpStatus: res.status,
          ...(taxiiError ? { taxiiError } : {}),
          ...(snippet ? { bodySnippet: snippet } : {}),
        });
      }
      return { status: res.status, headers: headerMap(res), body, url };
    }
  }

  private bad(method: string, url: string, status: number, what: string, extra: { cause?: unknown; status?: unknown } = {}): TaxiiError {
    return new TaxiiError(`TAXII ${method} ${url} -> ${status}: ${what}`, { code: 'BAD_RESPONSE', method, url, httpStatus: status, ...extra });
  }

  /** Parse a 2xx TAXII body into an object (checks the Content-Type first). */
  private json(method: string, r: RawResponse): Record<string, unknown> {
    const ct = r.headers['content-type'];
    let ok = isTaxii21MediaType(ct);
    if (!ok && this.opts.lenientContentType && ct) {
      const mt = parseMediaType(ct);
      ok = !!mt && (mt.essence === 'application/json' || mt.subtype.endsWith('+json')) && (mt.params['version'] ?? '2.1') === '2.1';
    }
    if (!ok) {
      const snip = r.body ? `; body: ${bodySnippet(r.body, 120)}` : '';
      throw this.bad(method, r.url, r.status, `Content-Type is ${ct ? JSON.stringify(ct) : 'missing'}, expected ${TAXII_MEDIA_TYPE}${snip}`);
    }
    let v: unknown;
    try {
      v = JSON.parse(r.body);
    } catch (err) {
      throw this.bad(method, r.url, r.status, `body is not valid JSON: ${bodySnippet(r.body, 120)}`, { cause: err });
    }
    if (!isRecord(v)) throw this.bad(method, r.url, r.status, 'body is not a JSON object');
    return v;
  }

  private async getJson(url: string, o: SendOptions = {}): Promise<{ body: Record<string, unknown>; raw: RawResponse }> {
    const raw = await this.send('GET', url, o);
    return { body: this.json('GET', raw), raw };
  }

  // ---- discovery and API root -----------------------------------------------------------------

  private async probe(signal?: AbortSignal): Promise<NonNullable<TaxiiClient['probed']>> {
    if (this.probed) return this.probed;
    const url = checkHttpUrl(this.opts.url ?? '', 'url');
    const { body, raw } = await this.getJson(url, { signal });
    if ('max_content_length' in body || 'versions' in body) {
      this.probed = { kind: 'api-root', body: this.checkApiRoot(body, raw) };
      this.apiRootUrlP ??= Promise.resolve(url);
    } else {
      this.probed = { kind: 'discovery', body: this.checkDiscovery(body, raw) };
      this.discoveryUrl ??= url;
    }
    return this.probed;
  }

  private checkDiscovery(b: Record<string, unknown>, raw: RawResponse): Discovery {
    if (typeof b['title'] !== 'string') throw this.bad('GET', raw.url, raw.status, 'discovery resource without a title');
    const roots = b['api_roots'];
    if (roots !== undefined && (!Array.isArray(roots) || roots.some((r) => typeof r !== 'string'))) {
      throw this.bad('GET', raw.url, raw.status, 'discovery api_roots is not a list of strings');
    }
    if (b['default'] !== undefined && typeof b['default'] !== 'string') throw this.bad('GET', raw.url, raw.status, 'discovery default is not a string');
    return b as Discovery;
  }

  private checkApiRoot(b: Record<string, unknown>, raw: RawResponse): ApiRootInfo {
    const bad = (w: string): TaxiiError => this.bad('GET', raw.url, raw.status, `API root ${w}`);
    if (typeof b['title'] !== 'string') throw bad('without a title');
    const versions = b['versions'];
    if (!Array.isArray(versions) || versions.some((v) => typeof v !== 'string')) throw bad('versions is not a list of strings');
    if (!versions.some((v: string) => isTaxii21MediaType(v))) throw bad(`does not support TAXII 2.1 (versions: ${versions.join(', ')})`);
    const mcl = b['max_content_length'];
    if (typeof mcl !== 'number' || !Number.isFinite(mcl) || mcl <= 0) throw bad('max_content_length is not a positive number');
    return b as ApiRootInfo;
  }

  /** GET the discovery resource (the configured discovery URL, else `{origin}/taxii2/`). */
  async discover(opts: CallOptions = {}): Promise<Discovery> {
    if (!this.discoveryUrl && this.opts.url) {
      const p = await this.probe(opts.signal);
      if (p.kind === 'discovery') return p.body;
    }
    const url = this.discoveryUrl ?? new URL('/taxii2/', await this.apiRootUrl(opts)).href;
    const { body, raw } = await this.getJson(url, opts);
    return this.checkDiscovery(body, raw);
  }

  /** The API root URL in use: configured, or the discovery's `default`, or its only API root. */
  apiRootUrl(opts: CallOptions = {}): Promise<string> {
    if (!this.apiRootUrlP) {
      const p = this.resolveApiRootUrl(opts.signal);
      this.apiRootUrlP = p;
      p.catch(() => {
        if (this.apiRootUrlP === p) this.apiRootUrlP = undefined;
      });
    }
    return this.apiRootUrlP;
  }

  private async resolveApiRootUrl(signal?: AbortSignal): Promise<string> {
    if (this.opts.url && !this.discoveryUrl) {
      const p = await this.probe(signal);
      if (p.kind === 'api-root') return checkHttpUrl(this.opts.url, 'url');
    }
    const disco = this.probed?.kind === 'discovery' ? this.probed.body : await this.discover({ signal });
    const base = this.discoveryUrl ?? '';
    const roots = disco.api_roots ?? [];
    let chosen: string | undefined;
    if (disco.default) chosen = disco.default;
    else if (roots.length === 1) chosen = roots[0];
    if (!chosen) {
      throw new TaxiiError(
        `TAXII discovery ${base} lists ${roots.length} API roots and no default; configure apiRootUrl` +
          (roots.length ? ` (one of: ${roots.join(', ')})` : ''),
        { code: 'NOT_FOUND', url: base },
      );
    }
    try {
      return checkHttpUrl(new URL(chosen, base).href, 'API root URL from discovery');
    } catch (err) {
      throw new TaxiiError(`TAXII discovery ${base}: unusable API root ${JSON.stringify(chosen)}`, { code: 'BAD_RESPONSE', url: base, cause: err });
    }
  }

  /**
   * GET an API root's information. Without `url`: the API root in use (cached, it provides
   * max_content_length for addObjects); with `url`: that API root (not cached).
   */
  async apiRoot(url?: string, opts: CallOptions = {}): Promise<ApiRootInfo> {
    if (url !== undefined) {
      const u = checkHttpUrl(url, 'API root URL');
      const { body, raw } = await this.getJson(u, opts);
      return this.checkApiRoot(body, raw);
    }
    if (!this.apiRootInfoP) {
      const p = (async () => {
        if (this.opts.url && !this.discoveryUrl && !this.opts.apiRootUrl) {
          const pr = await this.probe(opts.signal);
          if (pr.kind === 'api-root') return pr.body;
        }
        const u = await this.apiRootUrl(opts);
        const { body, raw } = await this.getJson(u, opts);
        return this.checkApiRoot(body, raw);
      })();
      this.apiRootInfoP = p;
      p.catch(() => {
        if (this.apiRootInfoP === p) this.apiRootInfoP = undefined;
      });
    }
    return this.apiRootInfoP;
  }

  // ---- collections -----------------------------------------------------------------------------

  private checkCollection(c: unknown, raw: RawResponse): Collection {
    if (!isRecord(c) || typeof c['id'] !== 'string' || typeof c['title'] !== 'string' ||
      typeof c['can_read'] !== 'boolean' || typeof c['can_write'] !== 'boolean') {
      throw this.bad('GET', raw.url, raw.status, 'collection resource needs id, title, can_read and can_write');
    }
    return c as Collection;
  }

  /** GET `{api-root}/collections/` (an empty list when the server answers `{}`). */
  async collections(opts: CallOptions = {}): Promise<Collection[]> {
    const url = `${await this.apiRootUrl(opts)}collections/`;
    const { body, raw } = await this.getJson(url, opts);
    const list = body['collections'];
    if (list === undefined) return [];
    if (!Array.isArray(list)) throw this.bad('GET', raw.url, raw.status, 'collections is not a list');
    return list.map((c) => this.checkCollection(c, raw));
  }

  /** GET `{api-root}/collections/{id}/`. */
  async collection(collectionId: string, opts: CallOptions = {}): Promise<Collection> {
    const url = await this.collectionUrl(collectionId, opts);
    const { body, raw } = await this.getJson(url, opts);
    return this.checkCollection(body, raw);
  }

  private async collectionUrl(collectionId: string, opts: CallOptions): Promise<string> {
    return `${await this.apiRootUrl(opts)}collections/${seg(collectionId, 'collection id')}/`;
  }

  // ---- status --------------------------------------------------------------------------------

  private checkStatus(b: Record<string, unknown>, raw: RawResponse, method: string): TaxiiStatus {
    const bad = (w: string): TaxiiError => this.bad(method, raw.url, raw.status, `status resource ${w}`, { status: b });
    if (typeof b['id'] !== 'string' || b['id'] === '') throw bad('without an id');
    if (b['status'] !== 'complete' && b['status'] !== 'pending') throw bad(`has status ${JSON.stringify(b['status'])} (expected complete or pending)`);
    const counts: Record<string, number> = {};
    for (const k of ['total_count', 'success_count', 'failure_count', 'pending_count']) {
      const v = b[k];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(`${k} is not a non-negative integer`);
      counts[k] = v;
    }
    if (counts['success_count'] + counts['failure_count'] + counts['pending_count'] !== counts['total_count']) {
      throw bad(`counts do not add up: success ${counts['success_count']} + failure ${counts['failure_count']} + pending ${counts['pending_count']} != total ${counts['total_count']}`);
    }
    for (const [list, count] of [['successes', 'success_count'], ['failures', 'failure_count'], ['pendings', 'pending_count']] as const) {
      const l = b[list];
      if (l === undefined) continue;
      if (!Array.isArray(l) || l.some((d) => !isRecord(d) || typeof d['id'] !== 'string')) throw bad(`${list} is not a list of status details`);
      if (l.length !== counts[count]) throw bad(`${list} has ${l.length} entries but ${count} is ${counts[count]}`);
    }
    if (b['status'] === 'complete' && counts['pending_count'] !== 0) throw bad(`is complete with pending_count ${counts['pending_count']}`);
    return b as TaxiiStatus;
  }

  /** GET `{api-root}/status/{id}/`. */
  async getStatus(statusId: string, opts: CallOptions = {}): Promise<TaxiiStatus> {
    const url = `${await this.apiRootUrl(opts)}status/${seg(statusId, 'status id')}/`;
    const { body, raw } = await this.getJson(url, opts);
    return this.checkStatus(body, raw, 'GET');
  }

  // ---- add objects ---------------------------------------------------------------------------

  /**
   * POST the objects (as envelopes) to a collection and, unless `wait: false`, poll the status
   * until it is complete. Batches whose envelope exceeds the API root's max_content_length are
   * split into several POSTs; the result then sums their statuses (id of the first, `requests`
   * lists all).
   */
  async addObjects(collectionId: string, objects: readonly object[], opts: AddObjectsOptions = {}): Promise<AddObjectsResult> {
    if (!Array.isArray(objects) || objects.length === 0) throw invalid('addObjects needs a non-empty list of objects');
    const serialized = objects.map((o, i) => {
      if (!isRecord(o)) throw invalid(`addObjects: item ${i} is not an object`);
      return JSON.stringify(o);
    });
    const url = `${await this.collectionUrl(collectionId, opts)}objects/`;
    const info = await this.apiRoot(undefined, opts);
    const max = info.max_content_length;
    const chunks = splitEnvelopes(serialized, max);
    if (chunks === null) {
      const i = serialized.findIndex((s) => envelopeBytes([s]) > max);
      const o = objects[i] as Record<string, unknown>;
      throw new TaxiiError(
        `TAXII POST ${url}: object ${String(o['id'] ?? `#${i}`)} alone makes a ${envelopeBytes([serialized[i]])}-byte envelope, over the API root's max_content_length ${max}`,
        { code: 'TOO_LARGE', method: 'POST', url },
      );
    }
    const statuses: TaxiiStatus[] = [];
    for (const chunk of chunks) {
      const raw = await this.send('POST', url, { body: `{"objects":[${chunk.join(',')}]}`, signal: opts.signal });
      let st = this.checkStatus(this.json('POST', raw), raw, 'POST');
      if (st.total_count !== chunk.length) {
        throw this.bad('POST', url, raw.status, `status total_count ${st.total_count} but ${chunk.length} objects were sent`, { status: st });
      }
      if (opts.wait ?? true) st = await this.pollStatus(st, opts);
      statuses.push(st);
    }
    const result = combineStatuses(statuses);
    if (opts.failOnFailures && result.failure_count > 0) {
      const first = (result.failures ?? []).slice(0, 3).map((f) => `${f.id}${f.message ? `: ${f.message}` : ''}`).join('; ');
      throw new TaxiiError(`TAXII POST ${url}: ${result.failure_count} of ${result.total_count} objects failed${first ? ` (${first})` : ''}`, {
        code: 'STATUS_FAILED',
        method: 'POST',
        url,
        status: result,
      });
    }
    return result;
  }

  private async pollStatus(initial: TaxiiStatus, opts: AddObjectsOptions): Promise<TaxiiStatus> {
    let st = initial;
    const interval = opts.pollIntervalMs ?? this.opts.pollIntervalMs ?? 1000;
    const limit = opts.pollTimeoutMs ?? this.opts.pollTimeoutMs ?? 60_000;
    const deadline = Date.now() + limit;
    while (st.status !== 'complete') {
      const left = deadline - Date.now();
      if (left <= 0) {
        const url = `${await this.apiRootUrl(opts)}status/${encodeURIComponent(initial.id)}/`;
        throw new TaxiiError(
          `TAXII status ${url} still pending after ${limit} ms (${st.success_count} succeeded, ${st.failure_count} failed, ${st.pending_count} pending of ${st.total_count})`,
          { code: 'STATUS_TIMEOUT', method: 'GET', url, status: st },
        );
      }
      await sleep(Math.min(interval, left), opts.signal ? AbortSignal.any([opts.signal, this.closer.signal]) : this.closer.signal);
      const next = await this.getStatus(initial.id, opts);
      if (next.total_count !== initial.total_count) {
        throw new TaxiiError(`TAXII status ${next.id}: total_count changed from ${initial.total_count} to ${next.total_count}`, { code: 'BAD_RESPONSE', status: next });
      }
      st = next;
    }
    return st;
  }

  // ---- objects, manifest, versions ----------------------------------------------------------

  private pageMeta(b: Record<string, unknown>, raw: RawResponse): PageMeta {
    const more = b['more'];
    if (more !== undefined && typeof more !== 'boolean') throw this.bad('GET', raw.url, raw.status, '"more" is not a boolean');
    const next = b['next'];
    if (next !== undefined && (typeof next !== 'string' || next === '')) throw this.bad('GET', raw.url, raw.status, '"next" is not a non-empty string');
    const meta: PageMeta = { more: more === true };
    if (typeof next === 'string') meta.next = next;
    const first = raw.headers['x-taxii-date-added-first'];
    const last = raw.headers['x-taxii-date-added-last'];
    if (first) meta.dateAddedFirst = first.trim();
    if (last) meta.dateAddedLast = last.trim();
    return meta;
  }

  private objectsPage(b: Record<string, unknown>, raw: RawResponse): ObjectsPage {
    const meta = this.pageMeta(b, raw);
    const list = b['objects'];
    if (list === undefined) return { ...meta, objects: [] };
    if (!Array.isArray(list)) throw this.bad('GET', raw.url, raw.status, 'envelope objects is not a list');
    for (const o of list) {
      if (!isRecord(o) || typeof o['id'] !== 'string' || typeof o['type'] !== 'string') {
        throw this.bad('GET', raw.url, raw.status, 'envelope holds an item without string id and type');
      }
    }
    return { ...meta, objects: list as TaxiiObject[] };
  }

  /** GET `{collection}/objects/` — one page. */
  async getObjects(collectionId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): Promise<ObjectsPage> {
    const query = buildTaxiiQuery(filters);
    const url = `${await this.collectionUrl(collectionId, opts)}objects/`;
    const { body, raw } = await this.getJson(url, { query, signal: opts.signal });
    return this.objectsPage(body, raw);
  }

  /** All objects matching the filters, page after page. */
  iterObjects(collectionId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): AsyncGenerator<TaxiiObject> {
    return this.paginate((f) => this.getObjects(collectionId, f, opts), (p) => p.objects, objectKey, filters, `objects of collection ${collectionId}`);
  }

  /** GET `{collection}/objects/{object-id}/` — one page of that object's versions. */
  async getObject(collectionId: string, objectId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): Promise<ObjectsPage> {
    const query = buildTaxiiQuery(filters);
    const url = `${await this.collectionUrl(collectionId, opts)}objects/${seg(objectId, 'object id')}/`;
    const { body, raw } = await this.getJson(url, { query, signal: opts.signal });
    return this.objectsPage(body, raw);
  }

  /** All pages of GET `{collection}/objects/{object-id}/`. */
  iterObject(collectionId: string, objectId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): AsyncGenerator<TaxiiObject> {
    return this.paginate((f) => this.getObject(collectionId, objectId, f, opts), (p) => p.objects, objectKey, filters, `object ${objectId} of collection ${collectionId}`);
  }

  /** GET `{collection}/objects/{object-id}/versions/` — one page (order as the server sent it). */
  async getVersions(collectionId: string, objectId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): Promise<VersionsPage> {
    const query = buildTaxiiQuery(filters);
    const url = `${await this.collectionUrl(collectionId, opts)}objects/${seg(objectId, 'object id')}/versions/`;
    const { body, raw } = await this.getJson(url, { query, signal: opts.signal });
    const meta = this.pageMeta(body, raw);
    const list = body['versions'];
    if (list === undefined) return { ...meta, versions: [] };
    if (!Array.isArray(list) || list.some((v) => typeof v !== 'string')) throw this.bad('GET', raw.url, raw.status, 'versions is not a list of strings');
    return { ...meta, versions: list as string[] };
  }

  iterVersions(collectionId: string, objectId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): AsyncGenerator<string> {
    return this.paginate((f) => this.getVersions(collectionId, objectId, f, opts), (p) => p.versions, (v) => v, filters, `versions of ${objectId} in collection ${collectionId}`);
  }

  /** GET `{collection}/manifest/` — one page. */
  async getManifest(collectionId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): Promise<ManifestPage> {
    const query = buildTaxiiQuery(filters);
    const url = `${await this.collectionUrl(collectionId, opts)}manifest/`;
    const { body, raw } = await this.getJson(url, { query, signal: opts.signal });
    const meta = this.pageMeta(body, raw);
    const list = body['objects'];
    if (list === undefined) return { ...meta, objects: [] };
    if (!Array.isArray(list)) throw this.bad('GET', raw.url, raw.status, 'manifest objects is not a list');
    for (const r of list) {
      if (!isRecord(r) || typeof r['id'] !== 'string' || typeof r['date_added'] !== 'string' || typeof r['version'] !== 'string') {
        throw this.bad('GET', raw.url, raw.status, 'manifest record without string id, date_added and version');
      }
    }
    return { ...meta, objects: list as ManifestRecord[] };
  }

  iterManifest(collectionId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): AsyncGenerator<ManifestRecord> {
    return this.paginate((f) => this.getManifest(collectionId, f, opts), (p) => p.objects, (r) => `${r.id}|${r.version}`, filters, `manifest of collection ${collectionId}`);
  }

  /**
   * DELETE `{collection}/objects/{object-id}/`: every version unless `match[version]` names some.
   * Without versions from the caller, `match[version]=all` is sent: servers differ in what a DELETE
   * without it removes (the OASIS reference server medallion applies its usual default, `last`,
   * and leaves the older versions in place), and erasing an object (the right to be forgotten)
   * must not depend on that. `match[spec_version]` is sent only when given.
   */
  async deleteObject(collectionId: string, objectId: string, filters: TaxiiFilters = {}, opts: CallOptions = {}): Promise<void> {
    const f: TaxiiFilters = filters.match?.version === undefined ? { ...filters, match: { ...filters.match, version: 'all' } } : filters;
    const query = buildTaxiiQuery(f);
    const url = `${await this.collectionUrl(collectionId, opts)}objects/${seg(objectId, 'object id')}/`;
    await this.send('DELETE', url, { query, signal: opts.signal });
  }

  // ---- pagination ----------------------------------------------------------------------------

  /**
   * Page through a TAXII list endpoint, for servers as they are (docs/interop.md):
   * - `next` tokens are followed with the same filters and limit;
   * - `more: true` without `next` continues with `added_after` = X-TAXII-Date-Added-Last minus 1 µs
   *   (the later of First/Last: some servers order a page newest-first). `added_after` is strictly
   *   "later than", so resuming at Last itself would skip records that share its date_added (servers
   *   with ms or s precision, or one timestamp per batch); the overlap re-serves the boundary
   *   record(s), which are dropped as already delivered; a page made only of records sharing one
   *   date_added is asked again with a doubled limit, and when the server caps its pages below
   *   that, BAD_RESPONSE says so instead of skipping records;
   * - an expired or forgotten `next` token (400/404/410) restarts from the latest date seen (minus
   *   1 µs), or, when the server sends no date headers, from the added_after of the query being
   *   paged — again without duplicates. The restart re-serves every record of that date_added
   *   already delivered, which can be many pages: the OASIS reference server medallion gives all
   *   objects of one POST one date_added, so a consumer slower than its session lifetime resumes
   *   at the start of a whole batch. Those records are dropped one by one;
   * - duplicates are recognised by (id, version, spec_version) for objects, (id, version) for
   *   manifest records, the version for versions, within the last `dedupeWindow` deliveries;
   * - a loop is told apart from such a replay by counting: a restart may re-serve at most the
   *   records delivered since the point it restarts from (those of pages whose latest date_added
   *   is the one restarted before; all since the query's added_after without date headers). A page
   *   with nothing new beyond that budget, the same `next` token again with nothing new beyond it,
   *   empty pages with more=true, or a position that does not advance stop with BAD_RESPONSE.
   */
  private async *paginate<P extends PageMeta, T>(
    fetchPage: (f: TaxiiFilters) => Promise<P>,
    itemsOf: (p: P) => T[],
    keyOf: (t: T) => string,
    filters: TaxiiFilters,
    what: string,
  ): AsyncGenerator<T> {
    let f: TaxiiFilters = { ...filters };
    if (f.limit === undefined) f.limit = this.opts.pageSize ?? 100;
    // refused here, before any request, when unusable; sent and compared in one spelling
    if (f.addedAfter !== undefined) f.addedAfter = normaliseAddedAfter(f.addedAfter);
    const seen = new RecentKeys(this.opts.dedupeWindow ?? 100_000);
    /** added_after of the query currently paged with `next` (where a restart without dates goes back to) */
    let segmentStart: string | Date | undefined = f.addedAfter;
    /** records delivered since segmentStart (what a restart from it re-serves at most) */
    let segmentDelivered = 0;
    /** the latest date_added seen in any page header */
    let latestSeen: string | undefined;
    /** records delivered in pages whose latest date_added is latestSeen (a restart from just before it re-serves at most these) */
    let deliveredAtLatest = 0;
    /** already delivered records the server may serve again after the last restart (not a loop) */
    let replayLeft = 0;
    let emptyPages = 0;
    let restartsWithoutNews = 0;
    for (;;) {
      let page: P;
      try {
        page = await fetchPage(f);
      } catch (err) {
        const expired = err instanceof TaxiiError && f.next !== undefined && (err.httpStatus === 400 || err.httpStatus === 404 || err.httpStatus === 410);
        if (!expired) throw err;
        if (++restartsWithoutNews > 2) {
          throw new TaxiiError(`TAXII paging (${what}): the next token was refused again after restarting without new records (${err.message})`, { code: 'BAD_RESPONSE', cause: err });
        }
        // the paging token expired or was forgotten: restart just before the latest date seen
        const restart: TaxiiFilters = { ...f };
        delete restart.next;
        const from: string | Date | undefined = latestSeen !== undefined ? microBefore(latestSeen) : segmentStart;
        if (from === undefined) delete restart.addedAfter;
        else restart.addedAfter = from;
        replayLeft = latestSeen !== undefined ? deliveredAtLatest : segmentDelivered;
        f = restart;
        segmentStart = from;
        segmentDelivered = replayLeft;
        continue;
      }
      const items = itemsOf(page);
      let fresh = 0;
      for (const it of items) {
        if (!seen.add(keyOf(it))) continue;
        fresh++;
        yield it;
      }
      segmentDelivered += fresh;
      if (fresh > 0) restartsWithoutNews = 0;
      // records delivered before: expected (up to replayLeft) after a restart, else a repeat
      const dup = items.length - fresh;
      const replayed = Math.min(dup, replayLeft);
      replayLeft -= replayed;
      const unexpected = dup - replayed;
      if (!page.more) return;
      const where = `${f.next !== undefined ? `next=${f.next}` : f.addedAfter !== undefined ? `added_after=${stamp(f.addedAfter)}` : 'the first page'}`;
      if (items.length === 0) {
        if (++emptyPages > 3) throw new TaxiiError(`TAXII paging (${what}): the server keeps answering more=true with empty pages (after ${where})`, { code: 'BAD_RESPONSE' });
      } else {
        emptyPages = 0;
      }
      const latest = latestOf(page.dateAddedFirst, page.dateAddedLast);
      if (latest !== undefined) {
        const cmp = latestSeen === undefined ? 1 : safeCompare(latest, latestSeen);
        if (cmp > 0) {
          latestSeen = latest;
          deliveredAtLatest = fresh;
        } else if (cmp === 0) {
          deliveredAtLatest += fresh;
        }
      }
      if (page.next !== undefined) {
        if (items.length > 0 && fresh === 0 && unexpected > 0) {
          throw new TaxiiError(`TAXII paging (${what}): the server repeated the previous page (after ${where}); stopped to avoid a loop`, { code: 'BAD_RESPONSE' });
        }
        if (page.next === f.next && fresh === 0 && (items.length === 0 || unexpected > 0)) {
          throw new TaxiiError(`TAXII paging (${what}): the server returned the same next token ${page.next} without new records`, { code: 'BAD_RESPONSE' });
        }
        f = { ...f, next: page.next };
      } else if (latest !== undefined) {
        const cur = f.addedAfter === undefined ? undefined : stamp(f.addedAfter);
        if (cur !== undefined && safeCompare(latest, cur) <= 0) {
          throw new TaxiiError(`TAXII paging (${what}): more=true without next, and X-TAXII-Date-Added-Last ${latest} does not advance past added_after ${cur}`, { code: 'BAD_RESPONSE' });
        }
        const overlap = microBefore(latest);
        if (cur === undefined || safeCompare(overlap, cur) > 0) {
          const nf: TaxiiFilters = { ...f, addedAfter: overlap };
          delete nf.next;
          f = nf;
          segmentStart = overlap;
          // the records of date_added `latest` come again
          replayLeft = deliveredAtLatest;
          segmentDelivered = deliveredAtLatest;
        } else {
          // every record of this page shares one date_added (Last = added_after + 1 µs): only a
          // larger page gets past them; resuming at Last would skip the rest of them silently
          const lim = f.limit ?? items.length;
          if (items.length < lim || lim >= MAX_TIE_PAGE) {
            throw new TaxiiError(
              `TAXII paging (${what}): more than ${items.length} records share date_added ${latest} and the server pages without next tokens ` +
                `and at most ${items.length} records per page; cannot page past them without losing records`,
              { code: 'BAD_RESPONSE' },
            );
          }
          f = { ...f, limit: Math.min(lim * 2, MAX_TIE_PAGE) };
          replayLeft = deliveredAtLatest;
        }
      } else {
        throw new TaxiiError(`TAXII paging (${what}): the server said more=true but sent neither next nor X-TAXII-Date-Added-Last (after ${where}); cannot continue`, { code: 'BAD_RESPONSE' });
      }
    }
  }
}

/** Largest `limit` the pager asks for to get past records sharing one date_added. */
const MAX_TIE_PAGE = 10_000;

/** Insertion-ordered set of the most recent keys (the oldest are forgotten beyond `max`). */
class RecentKeys {
  private readonly keys = new Set<string>();
  constructor(private readonly max: number) {}
  /** false when the key is already there */
  add(k: string): boolean {
    if (this.keys.has(k)) return false;
    this.keys.add(k);
    if (this.keys.size > Math.max(1, this.max)) {
      const oldest = this.keys.values().next();
      if (!oldest.done) this.keys.delete(oldest.value);
    }
    return true;
  }
}

function stamp(v: string | Date): string {
  return v instanceof Date ? taxiiTimestamp(v) : v;
}

/** The TAXII timestamp 1 µs before `ts` (any RFC 3339 spelling). */
function microBefore(ts: string): string {
  const p = parseTimestamp(ts);
  if (!p) throw new TaxiiError(`TAXII paging: unparsable X-TAXII-Date-Added header value ${JSON.stringify(ts)}`, { code: 'BAD_RESPONSE' });
  return p.micros > 0 ? taxiiTimestamp(new Date(p.epochMs), p.micros - 1) : taxiiTimestamp(new Date(p.epochMs - 1), 999);
}

function safeCompare(a: string, b: string): number {
  try {
    return compareTimestamps(a, b);
  } catch {
    throw new TaxiiError(`TAXII paging: unparsable X-TAXII-Date-Added header value (${JSON.stringify(a)} or ${JSON.stringify(b)})`, { code: 'BAD_RESPONSE' });
  }
}

/** The later of the two page headers (a server may order newest-first). */
function latestOf(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return safeCompare(a, b) >= 0 ? a : b;
}

function objectKey(o: TaxiiObject): string {
  const ver = typeof o['modified'] === 'string' ? o['modified'] : typeof o['created'] === 'string' ? o['created'] : '';
  const sv = typeof o['spec_version'] === 'string' ? o['spec_version'] : '';
  return `${o.id}|${ver}|${sv}`;
}

const ENVELOPE_OVERHEAD = Buffer.byteLength('{"objects":[]}');

function envelopeBytes(items: readonly string[]): number {
  let n = ENVELOPE_OVERHEAD + Math.max(0, items.length - 1);
  for (const s of items) n += Buffer.byteLength(s);
  return n;
}

/** Greedy split of serialized objects into envelopes of at most `max` bytes; null if one object alone is too big. */
export function splitEnvelopes(serialized: readonly string[], max: number): string[][] | null {
  const out: string[][] = [];
  let cur: string[] = [];
  let size = ENVELOPE_OVERHEAD;
  for (const s of serialized) {
    const b = Buffer.byteLength(s);
    if (ENVELOPE_OVERHEAD + b > max) return null;
    const add = b + (cur.length > 0 ? 1 : 0);
    if (cur.length > 0 && size + add > max) {
      out.push(cur);
      cur = [];
      size = ENVELOPE_OVERHEAD;
    }
    size += b + (cur.length > 0 ? 1 : 0);
    cur.push(s);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

function combineStatuses(statuses: TaxiiStatus[]): AddObjectsResult {
  if (statuses.length === 1) return { ...statuses[0], requests: statuses };
  const sum = (k: 'total_count' | 'success_count' | 'failure_count' | 'pending_count'): number =>
    statuses.reduce((n, s) => n + s[k], 0);
  const countOf = { successes: 'success_count', failures: 'failure_count', pendings: 'pending_count' } as const;
  // a list is kept only when every part listed its entries (or had none), so lengths match counts
  const cat = (k: 'successes' | 'failures' | 'pendings'): StatusDetails[] | undefined => {
    if (!statuses.every((s) => s[k] !== undefined || s[countOf[k]] === 0)) return undefined;
    const all = statuses.flatMap((s) => s[k] ?? []);
    return all.length > 0 ? all : undefined;
  };
  const out: AddObjectsResult = {
    id: statuses[0].id,
    status: statuses.every((s) => s.status === 'complete') ? 'complete' : 'pending',
    total_count: sum('total_count'),
    success_count: sum('success_count'),
    failure_count: sum('failure_count'),
    pending_count: sum('pending_count'),
    requests: statuses,
  };
  if (statuses[0].request_timestamp !== undefined) out.request_timestamp = statuses[0].request_timestamp;
  for (const k of ['successes', 'failures', 'pendings'] as const) {
    const l = cat(k);
    if (l) out[k] = l;
  }
  return out;
}
