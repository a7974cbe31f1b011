/**
 * TAXII errors: the `TaxiiError` class every TAXII client failure is reported with, and helpers
 * to build / recognise TAXII 2.1 error resources (spec §3.6.1; TAXII-NOTES §3, §9) that the
 * server reuses.
 */
import { STATUS_CODES } from 'node:http';

/** TAXII 2.1 error resource. All values are application-specific. */
export interface TaxiiErrorResource {
  title: string;
  description?: string;
  error_id?: string;
  error_code?: string;
  /** the HTTP status as a string, e.g. "404" */
  http_status?: string;
  external_details?: string;
  details?: Record<string, unknown>;
}

/**
 * Failure codes:
 * - `HTTP_<status>`: the server answered a non-2xx status (e.g. `HTTP_401`, `HTTP_413`);
 * - `TIMEOUT`: connect or total timeout, or the caller's deadline;
 * - `ABORTED`: the caller's AbortSignal fired;
 * - `NETWORK`: connection refused/reset, DNS failure, ...;
 * - `TLS`: certificate verification or handshake failure;
 * - `BAD_RESPONSE`: a 2xx answer that is not valid TAXII (wrong Content-Type, bad JSON, missing
 *   required properties, status counts that do not add up, a server that pages in circles);
 * - `STATUS_TIMEOUT`: an add-objects status still `pending` when polling gave up (`status` holds the last one);
 * - `STATUS_FAILED`: an add-objects status reported failures and the caller asked for all-or-error;
 * - `TOO_LARGE`: a single object does not fit in the API root's `max_content_length`;
 * - `INVALID_ARGUMENT`: the caller passed something unusable (bad URL, bad filter value);
 * - `NOT_FOUND`: discovery has no usable API root.
 */
export type TaxiiErrorCode =
  | `HTTP_${number}`
  | 'TIMEOUT'
  | 'ABORTED'
  | 'NETWORK'
  | 'TLS'
  | 'BAD_RESPONSE'
  | 'STATUS_TIMEOUT'
  | 'STATUS_FAILED'
  | 'TOO_LARGE'
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND';

export interface TaxiiErrorInit {
  code: TaxiiErrorCode;
  method?: string;
  url?: string;
  httpStatus?: number;
  /** the error resource the server sent, when it sent one */
  taxiiError?: TaxiiErrorResource;
  /** start of a non-TAXII error body (HTML, plain text) */
  bodySnippet?: string;
  /** e.g. the last status for STATUS_TIMEOUT / STATUS_FAILED */
  status?: unknown;
  cause?: unknown;
}

export class TaxiiError extends Error {
  readonly code: TaxiiErrorCode;
  readonly method?: string;
  readonly url?: string;
  readonly httpStatus?: number;
  readonly taxiiError?: TaxiiErrorResource;
  readonly bodySnippet?: string;
  readonly status?: unknown;

  constructor(message: string, init: TaxiiErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'TaxiiError';
    this.code = init.code;
    if (init.method !== undefined) this.method = init.method;
    if (init.url !== undefined) this.url = init.url;
    if (init.httpStatus !== undefined) this.httpStatus = init.httpStatus;
    if (init.taxiiError !== undefined) this.taxiiError = init.taxiiError;
    if (init.bodySnippet !== undefined) this.bodySnippet = init.bodySnippet;
    if (init.status !== undefined) this.status = init.status;
  }
}

export function isTaxiiError(e: unknown): e is TaxiiError {
  return e instanceof TaxiiError;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Recognise a TAXII error resource in a parsed body (needs a string `title`; other known
 * properties are kept when they have the right type, numbers in `http_status`/`error_code` are
 * tolerated and turned into strings).
 */
export function parseTaxiiErrorResource(body: unknown): TaxiiErrorResource | undefined {
  if (!isRecord(body) || typeof body['title'] !== 'string') return undefined;
  const out: TaxiiErrorResource = { title: body['title'] };
  const str = (k: string): string | undefined => {
    const v = body[k];
    if (typeof v === 'string') return v;
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    return undefined;
  };
  const description = str('description');
  if (description !== undefined) out.description = description;
  const errorId = str('error_id');
  if (errorId !== undefined) out.error_id = errorId;
  const errorCode = str('error_code');
  if (errorCode !== undefined) out.error_code = errorCode;
  const httpStatus = str('http_status');
  if (httpStatus !== undefined) out.http_status = httpStatus;
  const ext = str('external_details');
  if (ext !== undefined) out.external_details = ext;
  if (isRecord(body['details'])) out.details = body['details'];
  return out;
}

/**
 * Build a TAXII error resource (server side). `http_status` is the status as a string, as the
 * spec's examples do; empty optional values are left out (TAXII forbids empty lists and we keep
 * the resource minimal).
 */
export function taxiiErrorResource(
  httpStatus: number,
  title: string,
  description?: string,
  extra: Omit<TaxiiErrorResource, 'title' | 'description' | 'http_status'> = {},
): TaxiiErrorResource {
  const out: TaxiiErrorResource = { title, http_status: String(httpStatus) };
  if (description) out.description = description;
  if (extra.error_id) out.error_id = extra.error_id;
  if (extra.error_code) out.error_code = extra.error_code;
  if (extra.external_details) out.external_details = extra.external_details;
  if (extra.details && Object.keys(extra.details).length > 0) out.details = extra.details;
  return out;
}

/** `Request Entity Too Large` etc.; falls back to Node's table when the server sent no reason phrase. */
export function reasonPhrase(status: number, given?: string): string {
  if (given && given.trim() !== '') return given.trim();
  return STATUS_CODES[status] ?? 'Unknown Status';
}

/** Make a short one-line excerpt of a non-TAXII body (tags stripped, white space collapsed). */
export function bodySnippet(body: string, max = 200): string {
  let s = body;
  if (/<[a-z!/][^>]*>/i.test(s)) {
    s = s.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]+>/g, ' ');
    s = s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
  }
  s = s.replace(/\s+/g, ' ').trim();
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

/**
 * The message of an HTTP failure:
 * `TAXII POST https://host/api1/collections/x/objects/ -> 413 Request Entity Too Large: <title>: <description>`.
 */
export function httpErrorMessage(
  method: string,
  url: string,
  status: number,
  statusText: string | undefined,
  taxiiError: TaxiiErrorResource | undefined,
  snippet: string | undefined,
): string {
  let msg = `TAXII ${method.toUpperCase()} ${url} -> ${status} ${reasonPhrase(status, statusText)}`;
  if (taxiiError) {
    msg += `: ${taxiiError.title}`;
    if (taxiiError.description) msg += `: ${taxiiError.description}`;
    if (taxiiError.error_code) msg += ` (error_code ${taxiiError.error_code})`;
    if (taxiiError.error_id) msg += ` [error_id ${taxiiError.error_id}]`;
  } else if (snippet) {
    msg += `: ${snippet}`;
  }
  return msg;
}
