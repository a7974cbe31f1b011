/**
 * Status badges, the way the core nodes draw them: yellow ring while connecting, green dot when
 * connected, red ring on trouble, blue dot while a message is being worked on, and an empty
 * status to clear. Static texts are i18n keys that the editor translates (`node-red:common.*`
 * from core, `<type>.status.*` from our own catalogues); dynamic texts start with a digit or a
 * symbol so the editor shows them as they are.
 */
import type { NodeStatus } from './types';

/** Ledger states plus the bus's `closed`. */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'error' | 'closed';

/** Longest text we put in a badge; longer texts are cut with an ellipsis. */
const MAX_TEXT = 48;

export function shorten(text: string, max = MAX_TEXT): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/** Badge for a shared connection's state (ledger, broker). */
export function connectionStatus(state: ConnectionState, detail?: string): NodeStatus {
  switch (state) {
    case 'connected':
      return { fill: 'green', shape: 'dot', text: 'node-red:common.status.connected' };
    case 'connecting':
      return { fill: 'yellow', shape: 'ring', text: 'node-red:common.status.connecting' };
    case 'disconnected':
    case 'closed':
      return { fill: 'red', shape: 'ring', text: 'node-red:common.status.disconnected' };
    case 'error':
      return { fill: 'red', shape: 'ring', text: detail ? shorten(`! ${detail}`) : 'node-red:common.status.error' };
  }
}

/** Blue "working" badge while a message is in progress. */
export function busyStatus(textKey: string): NodeStatus {
  return { fill: 'blue', shape: 'dot', text: textKey };
}

/** Red badge for a failed message: the error code when there is one, else a short message. */
export function errorStatus(err: unknown): NodeStatus {
  return { fill: 'red', shape: 'ring', text: shorten(`! ${errorLabel(err)}`) };
}

/** Short label of an error for a badge: `CODE: message` cut to size. */
export function errorLabel(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** Red dot for a node that cannot work until its configuration is fixed. */
export function configStatus(textKey: string): NodeStatus {
  return { fill: 'red', shape: 'dot', text: textKey };
}

export const CLEAR: NodeStatus = {};

/**
 * A badge that changes often (counters) is sent at most every `intervalMs`: the last value always
 * wins, nothing is dropped but intermediate states. `flush()` sends a pending one now; `stop()`
 * cancels the timer (call it on close).
 */
export class ThrottledStatus {
  private timer: NodeJS.Timeout | undefined;
  private pending: NodeStatus | undefined;
  private lastSent = 0;

  constructor(
    private readonly send: (s: NodeStatus) => void,
    private readonly intervalMs = 250,
  ) {}

  set(status: NodeStatus): void {
    this.pending = status;
    const wait = this.lastSent + this.intervalMs - Date.now();
    if (wait <= 0) {
      this.flush();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, wait);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pending) return;
    const s = this.pending;
    this.pending = undefined;
    this.lastSent = Date.now();
    this.send(s);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }
}
