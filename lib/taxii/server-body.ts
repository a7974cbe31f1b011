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
