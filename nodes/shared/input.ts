/**
 * Async input handling shared by every SETS flow node (Node-RED 1.0+ `(msg, send, done)`):
 * a blue "working" badge while messages are in flight, the node's idle badge after, errors
 * handed to `done(err)` (so Catch nodes see them) with a red badge — and never an unhandled
 * rejection, whatever the handler throws.
 */
import type { DoneFn, Node, NodeMessageInFlow, NodeStatus, SendFn } from './types';
import { busyStatus, errorStatus } from './status';

export interface InputOptions {
  /** i18n key of the blue badge while working */
  busyText: string;
  /** the badge to show when nothing is in flight and the last message succeeded (default: clear) */
  idle?: () => NodeStatus;
}

export type InputHandler<M extends NodeMessageInFlow> = (msg: M, send: SendFn) => Promise<void>;

/** Message handed to `done(err)` keeps the lib error's `code` (Catch nodes show `error.code`). */
function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(typeof err === 'string' ? err : `unexpected failure: ${String(err)}`);
}

/**
 * Register an async input handler. Returns a function that reports how many messages are still
 * in flight (the close handler may wait for them).
 */
export function onInput<M extends NodeMessageInFlow>(node: Node, opts: InputOptions, handler: InputHandler<M>): () => number {
  let inFlight = 0;
  node.on('input', (msg: NodeMessageInFlow, send: SendFn, done: DoneFn) => {
    inFlight += 1;
    if (inFlight === 1) node.status(busyStatus(opts.busyText));
    let settled = false;
    const finish = (failed: boolean, err?: unknown): void => {
      if (settled) return;
      settled = true;
      inFlight -= 1;
      if (failed) {
        node.status(errorStatus(err));
        done(asError(err));
        return;
      }
      // the idle badge (which clears an earlier failure's red one) once nothing else is pending
      if (inFlight === 0) node.status(opts.idle ? opts.idle() : {});
      done();
    };
    try {
      handler(msg as M, send).then(
        () => finish(false),
        (err: unknown) => finish(true, err),
      );
    } catch (err) {
      finish(true, err);
    }
  });
  return () => inFlight;
}
