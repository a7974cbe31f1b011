/**
 * Reading a request body under the API root's `max_content_length`. The limit is enforced on the
 * bytes actually received (a chunked body has no Content-Length, and a header can lie): reading
 * stops as soon as the limit is passed. A Content-Length above the limit is refused at once,
 * without waiting for the body.
 */
import type { IncomingMessage } from 'node:http';

export type BodyResult =
  | { ok: true; body: Buffer }
  | { ok: false; reason: 'too-large'; received: number; declared?: number }
  | { ok: false; reason: 'timeout' | 'aborted' | 'unreadable'; detail: string };

/** Express-style request that may carry a body parsed by earlier middleware. */
interface MaybeParsed {
  body?: unknown;
  readableEnded?: boolean;
}

export function readBody(req: IncomingMessage, max: number, timeoutMs: number): Promise<BodyResult> {
  const declaredHeader = req.headers['content-length'];
  const declared = declaredHeader !== undefined && /^\s*\d+\s*$/.test(declaredHeader) ? Number(declaredHeader) : undefined;
  if (declared !== undefined && declared > max) {
    return Promise.resolve({ ok: false, reason: 'too-large', received: 0, declared });
  }

  // A body already consumed by a framework's parser (e.g. Express middleware mounted before us).
  const pre = (req as unknown as MaybeParsed).body;
  if (req.readableEnded || (pre !== undefined && (Buffer.isBuffer(pre) || typeof pre === 'string'))) {
    let buf: Buffer;
    if (Buffer.isBuffer(pre)) buf = pre;
    else if (typeof pre === 'string') buf = Buffer.from(pre, 'utf8');
    else if (pre !== undefined && pre !== null && typeof pre === 'object' && Object.keys(pre).length > 0) buf = Buffer.from(JSON.stringify(pre), 'utf8');
    else if (req.readableEnded) {
      return Promise.resolve({ ok: false, reason: 'unreadable', detail: 'the request body was already consumed by other middleware' });
    } else buf = Buffer.alloc(0);
    if (buf.length > max) return Promise.resolve({ ok: false, reason: 'too-large', received: buf.length });
    return Promise.resolve({ ok: true, body: buf });
  }

  return new Promise<BodyResult>((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const finish = (r: BodyResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (!r.ok) req.pause();
      resolve(r);
    };
    const onData = (chunk: Buffer | string): void => {
      const b = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      received += b.length;
      if (received > max) {
        finish({ ok: false, reason: 'too-large', received, ...(declared !== undefined ? { declared } : {}) });
        return;
      }
      chunks.push(b);
    };
    const onEnd = (): void => finish({ ok: true, body: Buffer.concat(chunks, received) });
    const onError = (err: Error): void => finish({ ok: false, reason: 'aborted', detail: err.message });
    const onAborted = (): void => finish({ ok: false, reason: 'aborted', detail: 'the client closed the connection' });
    const timer = setTimeout(
      () => finish({ ok: false, reason: 'timeout', detail: `the request body did not arrive within ${timeoutMs} ms` }),
      timeoutMs,
    );
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

// ---------------------------------------------------------------------------------------------
// What a request body may cost in the answer. A POST of many tiny invalid objects must not buy a
// status resource many times its size (it is sent, and kept in the store for GET …/status/{id}).

/** A status detail as built by the POST handler, with what the bounding needs to know. */
export interface DraftDetail {
  id: string;
  version: string;
  message?: string;
  /**
   * The posted item had no string `id` (its detail id is `objects[<index>]`): it names no object
   * TAXII could report, so past the first few such items they are summarised in one entry.
   */
  index?: number;
}

export const DETAIL_LIMITS = {
  /** the first failures keep messages of up to `maxMessageChars` */
  fullMessages: 50,
  maxMessageChars: 500,
  /** later ones are cut to this */
  shortMessageChars: 120,
  /** items without an id listed one by one; the rest share one summary entry */
  idlessListed: 50,
  /** the status resource may be up to `ratio` × the request body + `slackBytes` */
  ratio: 2,
  slackBytes: 64 * 1024,
  /** bytes of the status resource outside the detail lists (id, timestamps, counts) */
  overheadBytes: 512,
} as const;

/**
 * `s` at most `max` characters long: a longer one keeps its beginning and its end (where the cause
 * often is: "… at $.x[0][0]…: nesting deeper than 1000 levels") around "… (N more characters) …".
 * Never splits a surrogate pair.
 */
export function capMessage(s: string, max: number): string {
  if (s.length <= max) return s;
  // the marker is at most this long (N has at most 16 digits)
  const room = Math.max(0, max - ' … ( more characters) … '.length - 16);
  let head = Math.ceil(room * 0.6);
  let tail = room - head;
  if (head > 0 && isHighSurrogate(s.charCodeAt(head - 1))) head--;
  if (tail > 0 && isLowSurrogate(s.charCodeAt(s.length - tail))) tail--;
  const cut = s.length - head - tail;
  return `${s.slice(0, head)} … (${cut} more characters) … ${tail > 0 ? s.slice(s.length - tail) : ''}`;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Bytes a detail adds to the JSON text of its list (its object and a comma). */
function detailBytes(d: { id: string; version: string; message?: string }): number {
  return Buffer.byteLength(JSON.stringify({ id: d.id, version: d.version })) + 1 + (d.message === undefined ? 0 : messageBytes(d.message));
}

function messageBytes(m: string): number {
  return Buffer.byteLength(JSON.stringify(m)) + ',"message":'.length;
}

/**
 * Bound the failures of one POST so that the status resource stays within about
 * `ratio` × `requestBytes` + `slackBytes`:
 * - every item with an id keeps its entry (TAXII needs id and version for each object);
 * - items without an id: the first `idlessListed` keep their entry, the others are summarised in one
 *   entry (its message says how many and which indices);
 * - messages: the first `fullMessages` failures keep up to `maxMessageChars` characters, later ones
 *   `shortMessageChars`; once the byte budget left after the entries themselves is spent, later
 *   entries carry no message (TAXII makes it optional).
 * `others` are the successes and pendings of the same status (their size counts against the budget).
 * The count of failures is `failures.length` before bounding; the caller reports that.
 */
export function boundFailures(failures: readonly DraftDetail[], others: readonly DraftDetail[], requestBytes: number, limits = DETAIL_LIMITS): { id: string; version: string; message?: string }[] {
  const kept: DraftDetail[] = [];
  const folded: DraftDetail[] = [];
  let idless = 0;
  for (const f of failures) {
    if (f.index !== undefined && idless++ >= limits.idlessListed) folded.push(f);
    else kept.push(f);
  }
  if (folded.length > 0) {
    const first = folded[0];
    const last = folded[folded.length - 1];
    const idx = (d: DraftDetail): string => `objects[${d.index ?? '?'}]`;
    const range = folded.length === 1 ? idx(first) : `${idx(first)}..${idx(last)}`;
    const sample = first.message === undefined ? '' : `; the first: ${capMessage(first.message, limits.shortMessageChars)}`;
    kept.push({
      id: range,
      version: '',
      message: `${folded.length} more items without an id (between ${idx(first)} and ${idx(last)}) failed and are not listed one by one${sample}`,
    });
  }
  let budget = limits.ratio * requestBytes + limits.slackBytes - limits.overheadBytes;
  for (const d of others) budget -= detailBytes(d);
  for (const d of kept) budget -= detailBytes({ id: d.id, version: d.version });
  return kept.map((d, i) => {
    const out: { id: string; version: string; message?: string } = { id: d.id, version: d.version };
    if (d.message === undefined) return out;
    const summary = folded.length > 0 && i === kept.length - 1;
    const m = summary ? d.message : capMessage(d.message, i < limits.fullMessages ? limits.maxMessageChars : limits.shortMessageChars);
    const cost = messageBytes(m);
    if (summary || cost <= budget) {
      out.message = m;
      budget -= cost;
    }
    return out;
  });
}
