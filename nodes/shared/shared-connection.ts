/**
 * One connection owned by a config node and shared by the flow nodes that use it — the pattern
 * of Node-RED core's mqtt-broker node: users register and deregister, the connection is created
 * for the first user and closed after the last one left (or when the config node itself closes),
 * and every state change is handed to each user so it can draw its badge.
 */
import type { Node } from './types';
import { connectionStatus, type ConnectionState } from './status';

/** What a shared connection must offer: lib's Ledger and Bus (AmqpBus, MemoryBus) all fit. */
export interface StatefulConnection {
  readonly state: ConnectionState;
  onState(listener: (state: ConnectionState, detail?: string) => void): () => void;
  close(): Promise<void>;
}

export type StateListener = (state: ConnectionState, detail?: string) => void;

interface User {
  node: Node;
  listener: StateListener;
}

export class SharedConnection<T extends StatefulConnection> {
  private conn: T | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly users = new Map<string, User>();
  private lastState: ConnectionState = 'disconnected';
  private lastDetail: string | undefined;
  private closing: Promise<void> | undefined;

  /**
   * @param owner the config node (its own badge follows the state too)
   * @param factory creates the connection; may throw for a configuration that cannot work
   */
  constructor(
    private readonly owner: Node,
    private readonly factory: () => T,
  ) {}

  /** Number of registered users. */
  get userCount(): number {
    return this.users.size;
  }

  /** The connection if one is open. */
  get current(): T | undefined {
    return this.conn;
  }

  get state(): ConnectionState {
    return this.conn ? this.conn.state : 'disconnected';
  }

  /**
   * Register a user and return the shared connection, creating it for the first user.
   * `listener` gets every state change (default: the standard connection badge on the user).
   * Throws what the factory throws (a configuration error); the user is then not registered.
   */
  register(user: Node, listener?: StateListener): T {
    const conn = this.open();
    const l: StateListener = listener ?? ((state, detail) => user.status(connectionStatus(state, detail)));
    this.users.set(user.id, { node: user, listener: l });
    l(this.lastState, this.lastDetail);
    return conn;
  }

  /** Remove a user; the connection closes when no user is left. Never rejects. */
  async deregister(user: Node): Promise<void> {
    this.users.delete(user.id);
    if (this.users.size === 0) await this.close();
  }

  /** Close the connection (config node closing, or last user gone). Never rejects; safe twice. */
  async close(): Promise<void> {
    const conn = this.conn;
    if (!conn) return this.closing ?? Promise.resolve();
    this.conn = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.closing = conn.close().catch((err: unknown) => {
      this.owner.warn(`closing the connection failed: ${err instanceof Error ? err.message : String(err)}`);
    });
    await this.closing;
    this.closing = undefined;
    this.lastState = 'disconnected';
    this.lastDetail = undefined;
  }

  private open(): T {
    if (this.conn) return this.conn;
    const conn = this.factory();
    this.conn = conn;
    this.lastState = conn.state;
    this.unsubscribe = conn.onState((state, detail) => this.fanOut(state, detail));
    this.owner.status(connectionStatus(conn.state));
    return conn;
  }

  private fanOut(state: ConnectionState, detail?: string): void {
    this.lastState = state;
    this.lastDetail = detail;
    this.owner.status(connectionStatus(state, detail));
    for (const u of this.users.values()) {
      try {
        u.listener(state, detail);
      } catch (err) {
        u.node.warn(`status update failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}
