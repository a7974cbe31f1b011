/**
 * A flow node's handle on the connection its config node owns. Covers the cases a user node must
 * survive without crashing: no config node selected, a config node whose settings cannot work,
 * and the connection coming and going. Deregisters on close.
 */
import type { Node } from './types';
import { configStatus, errorStatus } from './status';
import type { SharedConnection, StatefulConnection, StateListener } from './shared-connection';

/** What our config nodes (sets-ledger, sets-broker) expose to their users. */
export interface ConnectionOwner<T extends StatefulConnection> extends Node {
  shared: SharedConnection<T>;
  /** set when the configuration cannot work; users report it instead of connecting */
  configError?: Error;
  /** short description without secrets, for messages */
  describe(): string;
}

export interface ConnectionHandle<T> {
  /** the connection, or throws the reason there is none (clear message, with a code) */
  get(): T;
  /** the config node, when there is one */
  owner: Node | undefined;
}

export class NoConnectionError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'NoConnectionError';
    this.code = code;
  }
}

/**
 * Register `node` with the config node `owner` (from RED.nodes.getNode). `missingKey` is the i18n
 * key of the badge shown when no config node is selected; `what` names it in error messages.
 */
export function useConnection<T extends StatefulConnection>(
  node: Node,
  owner: ConnectionOwner<T> | null | undefined,
  opts: { what: string; missingKey: string; listener?: StateListener },
): ConnectionHandle<T> {
  if (!owner || !owner.shared) {
    node.status(configStatus(opts.missingKey));
    const err = new NoConnectionError('NO_CONFIG', `no ${opts.what} configured: select one in the node's settings`);
    return {
      owner: undefined,
      get(): T {
        throw err;
      },
    };
  }
  let conn: T | undefined;
  let failure: Error | undefined = owner.configError;
  if (!failure) {
    try {
      conn = owner.shared.register(node, opts.listener);
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    }
  }
  if (failure) {
    node.status(errorStatus(failure));
    node.error(`${opts.what} ${owner.describe()} cannot be used: ${failure.message}`);
    const reported = failure;
    return {
      owner,
      get(): T {
        throw reported;
      },
    };
  }
  node.on('close', (_removed: boolean, done: () => void) => {
    owner.shared.deregister(node).then(
      () => done(),
      () => done(),
    );
  });
  const c = conn as T;
  return {
    owner,
    get(): T {
      return owner.shared.current ?? c;
    },
  };
}
