/**
 * Shared HTTP client factory (axios) for the TAXII client and the OAuth2 token client.
 *
 * Each call makes a fresh axios instance with its own keep-alive agents; global axios defaults are
 * never touched. Timeouts: `connectTimeoutMs` bounds TCP connect + TLS handshake (enforced by the
 * agents), `timeoutMs` bounds a whole request including reading the body (axios' wall-clock
 * timer). TLS: a custom CA (PEM, replaces the system roots as `curl --cacert` does), client
 * certificate (PEM cert+key, or PFX + passphrase), and `rejectUnauthorized` (default true).
 * Proxies are off unless configured (axios would otherwise read HTTP(S)_PROXY from the environment).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';
import axios, { type AxiosInstance, type AxiosProxyConfig } from 'axios';

export interface TlsOptions {
  /** CA certificate(s), PEM. When given they replace Node's built-in roots for this client. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** client certificate chain, PEM */
  cert?: string | Buffer;
  /** client private key, PEM */
  key?: string | Buffer;
  /** PKCS#12 bundle (Buffer, or base64 text) holding the client key and certificate */
  pfx?: string | Buffer;
  /** passphrase of `key` or `pfx` */
  passphrase?: string;
  /** verify the server certificate (default true). Turn off only for testing. */
  rejectUnauthorized?: boolean;
  /** SNI / name to verify, when it differs from the URL host */
  servername?: string;
}

export interface HttpOptions {
  /** total time for one request, body included (default 30 000 ms) */
  timeoutMs?: number;
  /** TCP connect + TLS handshake (default 10 000 ms) */
  connectTimeoutMs?: number;
  tls?: TlsOptions;
  /** proxy URL (`http://user:pass@host:port`); default none — environment variables are ignored */
  proxy?: string;
  /** keep connections open between requests (default true) */
  keepAlive?: boolean;
  /** max sockets per host (default 16) */
  maxSockets?: number;
  /** User-Agent (default `sets/<package version>`) */
  userAgent?: string;
  /** largest response body accepted (default 256 MiB) */
  maxResponseBytes?: number;
  /** redirects followed (default 3); cross-host redirects drop the Authorization header (follow-redirects) */
  maxRedirects?: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

let versionCache: string | undefined;
/**
 * The version of this package, `dev` when unknown. Read from the first package.json above this
 * file — the package root in every layout (the repository's dist/, node-red-contrib-sets and
 * n8n-nodes-sets as installed) — and only when that package is one of ours.
 */
export function packageVersion(): string {
  if (versionCache !== undefined) return versionCache;
  versionCache = 'dev';
  let dir = __dirname;
  for (let i = 0; i < 8; i++) {
    const f = path.join(dir, 'package.json');
    if (fs.existsSync(f)) {
      try {
        const pkg: unknown = JSON.parse(fs.readFileSync(f, 'utf8'));
        if (typeof pkg === 'object' && pkg !== null && 'version' in pkg && 'name' in pkg &&
          typeof pkg.version === 'string' && typeof pkg.name === 'string' && /(^|[-/])sets($|-)/.test(pkg.name)) {
          versionCache = pkg.version;
        }
      } catch {
        // unreadable: the version stays unknown
      }
      break; // the package root, ours or not: never read another package's version
    }
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return versionCache;
}

export function defaultUserAgent(): string {
  return `sets/${packageVersion()}`;
}

function connectTimeoutError(ms: number): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`connect timeout after ${ms} ms`);
  e.code = 'ETIMEDOUT';
  return e;
}

/** Destroy a socket that has not finished connecting (and for TLS: handshaking) within `ms`. */
function armConnectTimer(sock: Duplex | null | undefined, ms: number): void {
  if (!sock || !(ms > 0)) return;
  const isTls = sock instanceof tls.TLSSocket;
  const event = isTls ? 'secureConnect' : 'connect';
  const timer = setTimeout(() => sock.destroy(connectTimeoutError(ms)), ms);
  timer.unref();
  const done = (): void => clearTimeout(timer);
  sock.once(event, done);
  sock.once('close', done);
  sock.once('error', done);
}

class TimedHttpAgent extends http.Agent {
  constructor(opts: http.AgentOptions, private readonly connectTimeoutMs: number) {
    super(opts);
  }
  override createConnection(
    options: http.ClientRequestArgs,
    cb?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const s = super.createConnection(options, cb);
    armConnectTimer(s, this.connectTimeoutMs);
    return s;
  }
}

class TimedHttpsAgent extends https.Agent {
  constructor(opts: https.AgentOptions, private readonly connectTimeoutMs: number) {
    super(opts);
  }
  override createConnection(
    options: https.RequestOptions,
    cb?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const s = super.createConnection(options, cb);
    armConnectTimer(s, this.connectTimeoutMs);
    return s;
  }
}

function toProxyConfig(u: string): AxiosProxyConfig {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw new TypeError(`invalid proxy URL: ${u}`);
  }
  const cfg: AxiosProxyConfig = {
    protocol: url.protocol.replace(/:$/, ''),
    host: url.hostname,
    port: url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
  };
  if (url.username) {
    cfg.auth = { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
  }
  return cfg;
}

function pfxBuffer(pfx: string | Buffer): Buffer {
  return typeof pfx === 'string' ? Buffer.from(pfx, 'base64') : pfx;
}

/** A new axios instance with its own agents and the options above. */
export function createHttpClient(opts: HttpOptions = {}): AxiosInstance {
  const keepAlive = opts.keepAlive ?? true;
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const maxSockets = opts.maxSockets ?? 16;
  const t = opts.tls ?? {};
  const httpsOpts: https.AgentOptions = {
    keepAlive,
    maxSockets,
    rejectUnauthorized: t.rejectUnauthorized ?? true,
  };
  if (t.ca !== undefined) httpsOpts.ca = t.ca;
  if (t.cert !== undefined) httpsOpts.cert = t.cert;
  if (t.key !== undefined) httpsOpts.key = t.key;
  if (t.pfx !== undefined) httpsOpts.pfx = pfxBuffer(t.pfx);
  if (t.passphrase !== undefined) httpsOpts.passphrase = t.passphrase;
  if (t.servername !== undefined) httpsOpts.servername = t.servername;

  return axios.create({
    timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    httpAgent: new TimedHttpAgent({ keepAlive, maxSockets }, connectTimeoutMs),
    httpsAgent: new TimedHttpsAgent(httpsOpts, connectTimeoutMs),
    proxy: opts.proxy ? toProxyConfig(opts.proxy) : false,
    headers: { 'User-Agent': opts.userAgent ?? defaultUserAgent() },
    maxContentLength: opts.maxResponseBytes ?? 256 * 1024 * 1024,
    maxBodyLength: Infinity,
    maxRedirects: opts.maxRedirects ?? 3,
    transitional: { clarifyTimeoutError: true, silentJSONParsing: true, forcedJSONParsing: false },
    // bodies are parsed by the callers, so they can keep and report a non-JSON body
    responseType: 'text',
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
  });
}

/** Close the idle keep-alive sockets of an instance made by createHttpClient. */
export function closeHttpClient(client: AxiosInstance): void {
  const { httpAgent, httpsAgent } = client.defaults;
  if (httpAgent instanceof http.Agent) httpAgent.destroy();
  if (httpsAgent instanceof http.Agent) httpsAgent.destroy();
}

// ---------------------------------------------------------------------------------------------
// Error classification shared by the HTTP users

export type TransportErrorKind = 'TIMEOUT' | 'ABORTED' | 'NETWORK' | 'TLS';

export interface TransportError {
  kind: TransportErrorKind;
  /** the low-level code, e.g. ECONNREFUSED, DEPTH_ZERO_SELF_SIGNED_CERT */
  code?: string;
  /** a human readable reason */
  detail: string;
  /** a reset of a (possibly stale keep-alive) connection: safe to retry an idempotent request */
  reset: boolean;
}

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|HOSTNAME_MISMATCH$|INVALID_CA$|INVALID_PURPOSE$)/;

function errCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string') return e.code;
  return undefined;
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Classify an error thrown by axios (or below it) for a request that got no HTTP response. */
export function classifyTransportError(err: unknown): TransportError {
  const cause = typeof err === 'object' && err !== null && 'cause' in err ? err.cause : undefined;
  const codes = [errCode(err), errCode(cause)].filter((c): c is string => c !== undefined);
  const detail = cause !== undefined && errMessage(cause) !== errMessage(err)
    ? `${errMessage(err)} (${errMessage(cause)})`
    : errMessage(err);
  const code = codes.find((c) => c !== 'ERR_BAD_REQUEST' && c !== 'ERR_NETWORK') ?? codes[0];
  if (axios.isCancel(err) || codes.includes('ERR_CANCELED')) {
    return { kind: 'ABORTED', code: 'ERR_CANCELED', detail: 'request aborted', reset: false };
  }
  if (codes.some((c) => TLS_CODES.test(c)) || (codes.includes('EPROTO') && /ssl|tls/i.test(detail))) {
    return { kind: 'TLS', code, detail, reset: false };
  }
  if (codes.some((c) => c === 'ETIMEDOUT' || c === 'ECONNABORTED' || c === 'ESOCKETTIMEDOUT')) {
    return { kind: 'TIMEOUT', code, detail, reset: false };
  }
  const reset = codes.some((c) => c === 'ECONNRESET' || c === 'EPIPE') || /socket hang up/i.test(detail);
  return { kind: 'NETWORK', code, detail, reset };
}
