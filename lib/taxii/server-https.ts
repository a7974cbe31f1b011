/**
 * Standalone HTTPS for the TAXII server (TAXII 2.1 §1.6.7 requires TLS in production): a node:https
 * server around `TaxiiServer.handle`, for use outside Node-RED (under Node-RED, the `https` setting
 * of settings.js makes its HTTP server — and so the mounted TAXII server — speak TLS).
 *
 * Certificates and keys are PEM text or buffers (read files yourself: the caller decides where
 * secrets live). A bad certificate/key pair is refused at creation with a TaxiiServerConfigError,
 * not at the first handshake. With `requestCert` the server asks for a client certificate and
 * refuses the handshake without one signed by `ca` (mutual TLS; authorization stays with the
 * TAXII server's own auth).
 */
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { SecureVersion } from 'node:tls';
import { TaxiiServerConfigError } from './server-config';
import type { TaxiiServer } from './server';

export interface TaxiiHttpsOptions {
  /** server certificate chain, PEM */
  cert: string | Buffer;
  /** server private key, PEM */
  key: string | Buffer;
  /** passphrase of an encrypted key */
  passphrase?: string;
  /** CA certificate(s) that sign client certificates (needed with requestCert) */
  ca?: string | Buffer | Array<string | Buffer>;
  /** ask for a client certificate and refuse clients without a valid one (default false) */
  requestCert?: boolean;
  /** lowest TLS version accepted (default TLSv1.2) */
  minVersion?: SecureVersion;
  /** how long a client may take to send the request headers, ms (default 30,000) */
  headersTimeoutMs?: number;
  /** how long a whole request may take, ms (default 120,000; the body timeout of the TAXII server applies too) */
  requestTimeoutMs?: number;
  /** idle keep-alive connections are closed after this many ms (default 5,000) */
  keepAliveTimeoutMs?: number;
}

/** Create (not start) an HTTPS server answering every request with the TAXII server. */
export function createTaxiiHttpsServer(opts: TaxiiHttpsOptions, taxii: Pick<TaxiiServer, 'handle'>): https.Server {
  if (!opts || !opts.cert || !opts.key) throw new TaxiiServerConfigError('HTTPS needs a certificate (cert) and its private key (key), PEM');
  if (opts.requestCert && !opts.ca) throw new TaxiiServerConfigError('HTTPS with requestCert needs the CA that signs client certificates (ca)');
  let server: https.Server;
  try {
    server = https.createServer(
      {
        cert: opts.cert,
        key: opts.key,
        ...(opts.passphrase !== undefined ? { passphrase: opts.passphrase } : {}),
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
        requestCert: opts.requestCert === true,
        rejectUnauthorized: opts.requestCert === true,
        minVersion: opts.minVersion ?? 'TLSv1.2',
      },
      (req, res) => {
        void taxii.handle(req, res);
      },
    );
  } catch (err) {
    // e.g. a key that does not match the certificate, or PEM that does not parse
    throw new TaxiiServerConfigError(`HTTPS certificate/key rejected: ${err instanceof Error ? err.message : String(err)}`);
  }
  server.headersTimeout = opts.headersTimeoutMs ?? 30_000;
  server.requestTimeout = opts.requestTimeoutMs ?? 120_000;
  server.keepAliveTimeout = opts.keepAliveTimeoutMs ?? 5_000;
  // a client that fails the handshake must not take the process down
  server.on('tlsClientError', () => undefined);
  return server;
}

/**
 * Create and start an HTTPS TAXII server; resolves with its URL base (`https://host:port`) and a
 * close function (which also ends keep-alive connections).
 */
export async function listenTaxiiHttps(
  opts: TaxiiHttpsOptions & { host?: string; port?: number },
  taxii: Pick<TaxiiServer, 'handle'>,
): Promise<{ server: https.Server; url: string; close(): Promise<void> }> {
  const server = createTaxiiHttpsServer(opts, taxii);
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new TaxiiServerConfigError(`HTTPS server cannot listen on ${host}:${opts.port ?? 0}: ${err.message}`));
    server.once('error', onError);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `https://${shownHost}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
