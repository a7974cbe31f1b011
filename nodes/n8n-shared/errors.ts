/**
 * Lib errors -> n8n errors. Every lib error carries a `code` and a message that names what failed;
 * here it becomes a NodeApiError (the TAXII server or the network between us answered badly) or a
 * NodeOperationError (anything else: bad input, bad settings, ledger, broker, store), always with
 * the item index, and with the code in the description so a user can search for it.
 *
 * n8n-workflow (1.120) NodeError.setDescriptiveErrorMessage replaces a message that contains, in
 * any case and anywhere, one of its COMMON_ERRORS keys (ECONNREFUSED, ETIMEDOUT, ENOTFOUND,
 * ECONNRESET, EACCES, ENOENT, GETADDRINFO, ...) by a generic sentence ("The service refused the
 * connection - perhaps it is offline") that names neither the service nor the address; NodeApiError
 * does the same when the response's `code`/`httpCode` is such a key. So the Node.js system error
 * codes are put into words here (`plainMessage`), the raw code goes to the description (and
 * `systemCode`), and the message we built is put back should n8n have rewritten it anyway.
 */
import { NodeApiError, NodeOperationError, type INode, type JsonObject } from 'n8n-workflow';
import { TaxiiError } from '../../lib/taxii/errors';
import { messageOf } from '../../lib/ops/errors';

/** Node.js system error codes -> words (every COMMON_ERRORS key of n8n-workflow is here). */
const SYSTEM_ERROR_WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by the other side',
  ECONNABORTED: 'connection aborted',
  ETIMEDOUT: 'connection timed out',
  ESOCKETTIMEDOUT: 'connection timed out',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed (DNS did not answer)',
  EHOSTUNREACH: 'host unreachable',
  EHOSTDOWN: 'host is down',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network is down',
  EADDRNOTAVAIL: 'address not available on this host',
  EADDRINUSE: 'address already in use',
  ERRADDRINUSE: 'address already in use',
  EPIPE: 'connection closed by the other side while writing',
  EPROTO: 'protocol error',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory, not a file',
  ENOTDIR: 'not a directory',
  EEXIST: 'already exists',
};
/** Node's own words after `<syscall> <CODE>:` (dropped: the code is put into words). */
const NODE_WORDS =
  'address already in use|permission denied|no such file or directory|file already exists|operation not permitted|illegal operation on a directory|not a directory|connection refused|address not available|connection reset by peer|broken pipe';
const CODE_RE = new RegExp(
  `(?:\\b(connect|getaddrinfo|getnameinfo|query\\w*|listen|bind|read|write|open|stat|lstat|mkdir|rmdir|unlink|rename|scandir|access|copyfile|spawn)\\s+)?\\b(${Object.keys(SYSTEM_ERROR_WORDS).join('|')})\\b(?::\\s*(?:${NODE_WORDS}))?(?:\\s+(\\[[0-9a-f:.]+\\]:\\d+|[\\w.:-]+:\\d+|[\\w.-]+\\.[a-z]{2,}|localhost))?`,
  'gi',
);

/** A Node.js system error (ECONNREFUSED, ENOTFOUND, ...) found on an error or its causes. */
export interface SystemError {
  /** the raw code, e.g. ECONNREFUSED */
  code: string;
  /** the code in words, e.g. "connection refused" */
  words: string;
  /** host:port or host name the error is about, when known */
  at?: string;
}

/** The first Node.js system error on `err` or along its `cause` chain (also inside an AggregateError). */
export function systemErrorOf(err: unknown, depth = 0): SystemError | undefined {
  if (typeof err !== 'object' || err === null || depth > 6) return undefined;
  const e = err as { code?: unknown; address?: unknown; port?: unknown; hostname?: unknown; cause?: unknown; errors?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code.toUpperCase() : undefined;
  if (code && SYSTEM_ERROR_WORDS[code]) {
    const at =
      typeof e.address === 'string' && e.port !== undefined
        ? `${e.address.includes(':') ? `[${e.address}]` : e.address}:${String(e.port)}`
        : typeof e.hostname === 'string'
          ? e.hostname
          : undefined;
    return { code, words: SYSTEM_ERROR_WORDS[code], ...(at ? { at } : {}) };
  }
  const fromCause = systemErrorOf(e.cause, depth + 1);
  if (fromCause) return fromCause;
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const found = systemErrorOf(inner, depth + 1);
      if (found) return found;
    }
  }
  // a plain Error that only names the code (amqplib: "connect ETIMEDOUT")
  if (depth === 0 && typeof e.message === 'string') {
    CODE_RE.lastIndex = 0;
    const m = CODE_RE.exec(e.message);
    if (m) return { code: m[2].toUpperCase(), words: SYSTEM_ERROR_WORDS[m[2].toUpperCase()], ...(m[3] ? { at: m[3] } : {}) };
  }
  return undefined;
}

/**
 * `message` with every Node.js system error code put into words, e.g. "connect ECONNREFUSED
 * 127.0.0.1:9" -> "connection refused (127.0.0.1:9)", "getaddrinfo ENOTFOUND x.example" -> "host
 * name not found (x.example)": a message n8n does not replace by its generic sentence.
 */
export function plainMessage(message: string): string {
  return message.replace(CODE_RE, (_all, _syscall: string | undefined, code: string, at: string | undefined) => {
    const words = SYSTEM_ERROR_WORDS[code.toUpperCase()] ?? code;
    return at ? `${words} (${at})` : words;
  });
}

/** host:port of a URL (default port of its scheme when none is given). */
export function hostPort(url: string): string {
  try {
    const u = new URL(url);
    const defaults: Record<string, string> = { 'http:': '80', 'https:': '443', 'amqp:': '5672', 'amqps:': '5671' };
    return `${u.hostname}:${u.port || defaults[u.protocol] || '?'}`;
  } catch {
    return url;
  }
}

/** n8n may still have rewritten the message (a key inside another word): put ours back. */
function keepMessage<E extends NodeApiError | NodeOperationError>(e: E, message: string): E {
  if (e.message !== message) {
    e.messages = e.messages.filter((m) => m !== message);
    e.message = message;
  }
  return e;
}

/** A NodeOperationError whose message n8n shows as given (system error codes put into words). */
export function operationError(node: INode, message: string, opts: { description?: string; cause?: unknown; itemIndex?: number } = {}): NodeOperationError {
  const text = plainMessage(message);
  const sys = opts.cause !== undefined ? systemErrorOf(opts.cause) : undefined;
  const description = [opts.description, sys ? `system error ${sys.code}${sys.at ? ` (${sys.at})` : ''}` : undefined].filter(Boolean).join('\n');
  const e = new NodeOperationError(node, opts.cause instanceof Error ? opts.cause : new Error(text), {
    message: text,
    ...(description ? { description } : {}),
    ...(opts.itemIndex !== undefined ? { itemIndex: opts.itemIndex } : {}),
  });
  if (sys) e.context.systemCode = sys.code;
  return keepMessage(e, text);
}

function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** One line per object problem (OpsError / StixValidationError list every bad object). */
function problemLines(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const problems = (err as { problems?: unknown }).problems;
  if (!Array.isArray(problems) || problems.length === 0) return undefined;
  return problems
    .slice(0, 20)
    .map((p: unknown) => {
      const o = (typeof p === 'object' && p !== null ? p : {}) as { index?: unknown; id?: unknown; message?: unknown };
      return `object #${String(o.index ?? '?')}${typeof o.id === 'string' ? ` (${o.id})` : ''}: ${String(o.message ?? '')}`;
    })
    .join('\n');
}

/** The description: the lib code, the raw system error code, then one line per object problem. */
function describe(code: string | undefined, sys: SystemError | undefined, ...more: Array<string | undefined>): string {
  const head = [code ? `code ${code}` : undefined, sys ? `system error ${sys.code}${sys.at ? ` (${sys.at})` : ''}` : undefined].filter(Boolean).join(', ');
  return [head, ...more].filter(Boolean).join('\n');
}

/** The message shown: system error codes in words; an unreachable TAXII server named with host:port. */
export function readableMessage(err: unknown): string {
  const sys = systemErrorOf(err);
  if (err instanceof TaxiiError && err.url && sys && (err.code === 'NETWORK' || err.code === 'TIMEOUT' || err.code === 'ABORTED')) {
    return `TAXII server ${hostPort(err.url)} not reachable: ${sys.words}${err.method ? ` (${err.method} ${err.url})` : ''}`;
  }
  return plainMessage(messageOf(err));
}

/** The n8n error for a failure of item `itemIndex` (already an n8n error: returned as is). */
export function toNodeError(node: INode, err: unknown, itemIndex?: number): NodeApiError | NodeOperationError {
  if (err instanceof NodeApiError || err instanceof NodeOperationError) {
    if (itemIndex !== undefined && err.context.itemIndex === undefined) err.context.itemIndex = itemIndex;
    return err;
  }
  const code = codeOf(err);
  const sys = systemErrorOf(err);
  const message = readableMessage(err);
  const at = itemIndex !== undefined ? { itemIndex } : {};
  if (err instanceof TaxiiError) {
    // no `code` that n8n would map to a generic text: the lib code is not a system error code
    const body: JsonObject = { code: err.code, message };
    if (sys) body.systemCode = sys.code;
    if (err.httpStatus !== undefined) body.httpStatus = err.httpStatus;
    if (err.url) body.url = err.url;
    if (err.taxiiError) body.taxiiError = err.taxiiError as unknown as JsonObject;
    const description = [
      describe(err.code, sys),
      err.taxiiError?.description && err.taxiiError.description !== message ? err.taxiiError.description : undefined,
    ]
      .filter(Boolean)
      .join(' — ');
    const e = new NodeApiError(node, body, {
      message,
      description,
      ...(err.httpStatus !== undefined ? { httpCode: String(err.httpStatus) } : {}),
      ...at,
    });
    if (sys) e.context.systemCode = sys.code;
    return keepMessage(e, message);
  }
  const description = describe(code, sys, problemLines(err));
  const e = new NodeOperationError(node, err instanceof Error ? err : new Error(message), { message, ...(description ? { description } : {}), ...at });
  if (sys) e.context.systemCode = sys.code;
  return keepMessage(e, message);
}

/** `{error, code?, systemCode?}` for an item when the node continues on fail. */
export function errorJson(err: unknown): JsonObject {
  const out: JsonObject = { error: err instanceof NodeApiError || err instanceof NodeOperationError ? err.message : readableMessage(err) };
  const code = codeOf(err);
  if (code) out.code = code;
  const sys = systemErrorOf(err);
  if (sys) out.systemCode = sys.code;
  if (err instanceof NodeApiError && err.httpCode) out.httpCode = err.httpCode;
  const lines = problemLines(err);
  if (lines) out.problems = lines.split('\n');
  return out;
}
