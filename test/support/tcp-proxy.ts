/**
 * A small TCP proxy for outage tests: listens on a free port of 127.0.0.1 and pipes every
 * connection to `targetPort` on 127.0.0.1. `cut()` destroys every open connection (both sides)
 * and stops listening, so clients see ECONNRESET / ECONNREFUSED exactly as when the node behind
 * it goes down; `restore()` listens again on the same port. Used to "restart" the hardhat node
 * (which cannot persist its chain) without losing its state.
 */
import * as net from 'net';

export interface TcpProxy {
  /** the local port clients connect to (stays the same across cut/restore) */
  port: number;
  /** destroy all connections and stop listening (idempotent) */
  cut(): Promise<void>;
  /** listen again on the same port (idempotent) */
  restore(): Promise<void>;
  /** cut for good */
  close(): Promise<void>;
  /** connections accepted so far (diagnostics) */
  readonly accepted: number;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let server: net.Server | undefined;

  const onConnection = (client: net.Socket) => {
    accepted++;
    const upstream = net.connect({ port: targetPort, host: targetHost });
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  };

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const srv = net.createServer(onConnection);
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => {
        srv.removeListener('error', reject);
        server = srv;
        const addr = srv.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });

  const port = await listen(0);

  const cut = async () => {
    const srv = server;
    server = undefined;
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
  };

  const restore = async () => {
    if (server) return;
    // the port was ours a moment ago; retry briefly in case the OS has not released it yet
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await listen(port);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };

  return {
    port,
    cut,
    restore,
    close: cut,
    get accepted() {
      return accepted;
    },
  };
}
