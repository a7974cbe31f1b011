/**
 * HTTP plumbing of the TAXII server: URL resolution under a base path (plain node:http or
 * Express mount), responses that always carry the TAXII media type, and the HttpProblem thrown
 * by handlers for anticipated failures (turned into TAXII error resources).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TAXII_MEDIA_TYPE } from './media';
import { taxiiErrorResource, type TaxiiErrorResource } from './errors';

/** An anticipated failure: HTTP status + TAXII error resource (+ extra headers). */
export class HttpProblem extends Error {
  readonly code = 'HTTP_PROBLEM';
  constructor(
    readonly status: number,
    readonly title: string,
    readonly description: string,
    readonly headers: Record<string, string | string[]> = {},
    readonly extra: Omit<TaxiiErrorResource, 'title' | 'description' | 'http_status'> = {},
  ) {
    super(`${status} ${title}: ${description}`);
    this.name = 'HttpProblem';
  }
}

/** Express adds these; a plain node:http request has none of them. */
interface ExpressLike {
  baseUrl?: unknown;
  originalUrl?: unknown;
}

export interface ResolvedUrl {
  /** path below the server's base, always starting with `/` (percent-encoded as received) */
  rel: string;
  /** the server's base path as seen by the client ('' at the root), used to build URLs */
  prefix: string;
  /** raw query string (without `?`) */
  query: string;
}

function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q + 1);
  const h = path.indexOf('#');
  return { path: h < 0 ? path : path.slice(0, h), query };
}

/**
 * Resolve the request URL. Under Express, `req.url` is relative to the mount point and
 * `req.baseUrl` holds the mount path; in plain node:http, `req.url` is the full path and
 * `basePath` (config) is stripped. Returns null when the request is not under `basePath`.
 */
export function resolveUrl(req: IncomingMessage, basePath: string | undefined): ResolvedUrl | null {
  const ex = req as IncomingMessage & ExpressLike;
  const baseUrl = typeof ex.baseUrl === 'string' ? ex.baseUrl : '';
  let raw = req.url ?? '/';
  // absolute-form request targets (proxies): keep the path only
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
    try {
      const u = new URL(raw);
      raw = u.pathname + u.search;
    } catch {
      raw = '/';
    }
  }
  const { path, query } = splitUrl(raw);
  const full = (baseUrl + (path.startsWith('/') ? path : '/' + path)).replace(/\/{2,}/g, '/');
  if (basePath) {
    if (full === basePath) return { rel: '/', prefix: basePath, query };
    if (!full.startsWith(basePath + '/')) return null;
    return { rel: full.slice(basePath.length), prefix: basePath, query };
  }
  const prefix = baseUrl.replace(/\/+$/, '');
  const rel = path.startsWith('/') ? path : '/' + path;
  return { rel: rel.replace(/\/{2,}/g, '/'), prefix, query };
}

/** Write a TAXII response (JSON body, or empty), with the TAXII media type in every case. */
export function sendTaxii(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string | string[]> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // encoded once: the length is the buffer's (a page of 1,000 objects is megabytes; measuring the
  // string's UTF-8 length and then encoding it again showed in the paging profile)
  const bytes = Buffer.from(body === undefined ? '' : JSON.stringify(body), 'utf8');
  res.statusCode = status;
  for (const name of res.getHeaderNames()) {
    // drop headers a framework may have set before us (e.g. X-Powered-By stays; Content-Type does not)
    if (name === 'content-type' || name === 'content-length' || name === 'etag') res.removeHeader(name);
  }
  res.setHeader('Content-Type', TAXII_MEDIA_TYPE);
  res.setHeader('Content-Length', bytes.length);
  res.setHeader('Cache-Control', 'no-store');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.end(bytes);
}

/** Write a TAXII error resource. */
export function sendProblem(res: ServerResponse, p: HttpProblem): void {
  sendTaxii(res, p.status, taxiiErrorResource(p.status, p.title, p.description, p.extra), p.headers);
}
