/**
 * Fabric ledger adapter, part 1: the configuration (checked once, at construction, so that a
 * configuration that cannot work fails with LedgerError BAD_CONFIG naming the field), the client
 * identity read from its PEM certificate, and the mapping of Fabric Gateway errors to the
 * `LedgerError` codes every ledger shares.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { LedgerError, type LedgerErrorCode } from './ledger';

export interface FabricLedgerConfig {
  /** host:port of a peer's gateway service (e.g. peer0.org1.example.com:7051) */
  peerEndpoint: string;
  /** PEM of the CA that signed the peer's TLS certificate; absent => plaintext gRPC, allowed only with `insecure: true` */
  tlsCaCert?: string;
  /** plaintext gRPC (test networks only) */
  insecure?: boolean;
  /** the host name the peer's TLS certificate names, when it differs from the endpoint's host (grpc.ssl_target_name_override) */
  serverNameOverride?: string;
  /** MSP id of the client identity's organisation (e.g. Org1MSP) */
  mspId: string;
  /** PEM enrolment certificate of the client identity (not secret) */
  certificate: string;
  /**
   * PEM private key of the client identity (secret). A Fabric peer answers only signed
   * proposals — reads included — so a Fabric ledger without a key cannot work: BAD_CONFIG.
   */
  privateKey?: string;
  /** channel name (e.g. mychannel) */
  channel: string;
  /** chaincode name (default sets-registry) */
  chaincode?: string;
  /** contract name inside the chaincode (default: the default contract) */
  contract?: string;
  /** deadline of each evaluate / endorse / submit call, ms (default 10000) */
  requestTimeoutMs?: number;
  /** how long an anchor waits for its transaction to commit, ms (default 120000) */
  commitTimeoutMs?: number;
  /** gateway requests in flight at once (default 100; a peer's gateway allows 500 by default) */
  maxInFlight?: number;
  /** coalescing window of concurrent anchors (into one AnchorMany) and reads, ms (default 20; 0 = off) */
  coalesceMs?: number;
  /** entries per AnchorMany transaction (default 500; the chaincode takes at most 1000) */
  maxBatchSize?: number;
  /** queries per ReadCTIRecordsMany call (default 200) */
  readBatchSize?: number;
  /** while the chaincode event stream is down, awaited keys are read this often, ms (default 1000) */
  pollMs?: number;
  /** background connection probe, ms (default 15000; 0 = none) */
  healthCheckMs?: number;
  /** told about things worth knowing that do not fail a call; default process.emitWarning */
  onWarning?: (message: string) => void;
}

/** The configuration with defaults applied and every field checked. */
export interface FabricSettings {
  peerEndpoint: string;
  tlsCaCert?: string;
  serverNameOverride?: string;
  mspId: string;
  certificate: string;
  privateKey: KeyObject;
  channel: string;
  chaincode: string;
  contract?: string;
  requestTimeoutMs: number;
  commitTimeoutMs: number;
  maxInFlight: number;
  coalesceMs: number;
  maxBatchSize: number;
  readBatchSize: number;
  pollMs: number;
  healthCheckMs: number;
  warn: (message: string) => void;
}

export const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;
export const PEM_KEY = /-----BEGIN (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----[\s\S]+?-----END (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----/;
/** host:port, host a name, IPv4 or [IPv6] */
export const ENDPOINT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;
/** Fabric MSP ids: letters, digits, '.', '-', '_' (configtx names) */
export const MSP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Fabric channel names: lower-case letters, digits, '.', '-' starting with a letter, < 250 characters */
export const CHANNEL = /^[a-z][a-z0-9.-]{0,248}$/;
/** chaincode names: letters, digits, '_', '-' (peer lifecycle) */
export const CHAINCODE = /^[A-Za-z0-9]+([A-Za-z0-9_-]*[A-Za-z0-9])?$/;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

function positiveInt(v: unknown, dflt: number, what: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new LedgerError('BAD_CONFIG', `${what} must be an integer between ${min} and ${max}, got ${String(v)}`);
  }
  return v;
}

/** Check a host:port endpoint; BAD_CONFIG naming the field otherwise. */
export function checkEndpoint(v: unknown, what = 'peerEndpoint'): string {
  const s = typeof v === 'string' ? v.trim() : '';
  const m = ENDPOINT.exec(s);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65_535) {
    throw new LedgerError('BAD_CONFIG', `${what} must be host:port of the peer's gateway (e.g. peer0.org1.example.com:7051, no grpc:// or https://), got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return s;
}

/** The one certificate of a PEM text, parsed; BAD_CONFIG naming the field otherwise. */
export function checkCertificate(v: unknown, what: string): X509Certificate {
  if (typeof v !== 'string' || !PEM_CERT.test(v)) {
    throw new LedgerError('BAD_CONFIG', `${what} must be a PEM certificate (-----BEGIN CERTIFICATE----- …)`);
  }
  try {
    return new X509Certificate((PEM_CERT.exec(v) as RegExpExecArray)[0]);
  } catch (e) {
    throw new LedgerError('BAD_CONFIG', `${what} is not a readable X.509 certificate: ${(e as Error).message}`, { cause: e });
  }
}

/** A PEM private key; BAD_CONFIG naming the field otherwise (the key itself never appears in a message). */
export function checkPrivateKey(v: unknown, what = 'privateKey'): KeyObject {
  if (typeof v !== 'string' || !PEM_KEY.test(v)) {
    throw new LedgerError('BAD_CONFIG', `${what} must be a PEM private key (-----BEGIN PRIVATE KEY----- …, as in the identity's keystore)`);
  }
  try {
    return createPrivateKey(v);
  } catch (e) {
    throw new LedgerError('BAD_CONFIG', `${what} is not a readable private key (${(e as Error).message.replace(/\s+/g, ' ').slice(0, 120)})`, { cause: e });
  }
}

/** Check a configuration and apply the defaults. Throws LedgerError BAD_CONFIG naming the field. */
export function fabricSettings(config: FabricLedgerConfig): FabricSettings {
  if (!isRecord(config)) throw new LedgerError('BAD_CONFIG', 'Fabric ledger configuration missing');
  const peerEndpoint = checkEndpoint(config.peerEndpoint);
  if (config.insecure !== undefined && typeof config.insecure !== 'boolean') throw new LedgerError('BAD_CONFIG', `insecure must be true or false, got ${String(config.insecure)}`);
  let tlsCaCert: string | undefined;
  if (config.tlsCaCert !== undefined && config.tlsCaCert !== '') {
    checkCertificate(config.tlsCaCert, 'tlsCaCert');
    tlsCaCert = config.tlsCaCert;
  } else if (config.insecure !== true) {
    throw new LedgerError('BAD_CONFIG', 'tlsCaCert (the PEM certificate of the CA that signed the peer\'s TLS certificate) is required; plaintext gRPC only with insecure: true');
  }
  let serverNameOverride: string | undefined;
  if (config.serverNameOverride !== undefined && config.serverNameOverride !== '') {
    if (typeof config.serverNameOverride !== 'string' || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(config.serverNameOverride)) {
      throw new LedgerError('BAD_CONFIG', `serverNameOverride must be a host name (the one in the peer's TLS certificate), got ${JSON.stringify(config.serverNameOverride)?.slice(0, 80)}`);
    }
    serverNameOverride = config.serverNameOverride;
  }
  if (typeof config.mspId !== 'string' || !MSP_ID.test(config.mspId)) {
    throw new LedgerError('BAD_CONFIG', `mspId must be the MSP id of the identity's organisation (e.g. Org1MSP), got ${JSON.stringify(config.mspId)?.slice(0, 80)}`);
  }
  const cert = checkCertificate(config.certificate, 'certificate');
  if (config.privateKey === undefined || config.privateKey === '') {
    throw new LedgerError('BAD_CONFIG', 'privateKey is required: a Fabric peer answers only proposals signed by the client identity (reads included); configure the PEM key of the certificate');
  }
  const privateKey = checkPrivateKey(config.privateKey);
  let matches = false;
  try {
    matches = cert.checkPrivateKey(privateKey);
  } catch {
    matches = false;
  }
  if (!matches) throw new LedgerError('BAD_CONFIG', `privateKey does not belong to the certificate (${cert.subject.replace(/\n/g, ', ')})`);
  if (typeof config.channel !== 'string' || !CHANNEL.test(config.channel)) {
    throw new LedgerError('BAD_CONFIG', `channel must be a Fabric channel name (lower-case letters, digits, '.', '-'; e.g. mychannel), got ${JSON.stringify(config.channel)?.slice(0, 80)}`);
  }
  const chaincode = config.chaincode === undefined || config.chaincode === '' ? 'sets-registry' : config.chaincode;
  if (typeof chaincode !== 'string' || !CHAINCODE.test(chaincode)) throw new LedgerError('BAD_CONFIG', `chaincode must be a chaincode name (e.g. sets-registry), got ${JSON.stringify(chaincode)?.slice(0, 80)}`);
  let contract: string | undefined;
  if (config.contract !== undefined && config.contract !== '') {
    if (typeof config.contract !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(config.contract)) throw new LedgerError('BAD_CONFIG', `contract must be a contract name, got ${JSON.stringify(config.contract)?.slice(0, 80)}`);
    contract = config.contract;
  }
  if (config.onWarning !== undefined && typeof config.onWarning !== 'function') throw new LedgerError('BAD_CONFIG', 'onWarning must be a function');
  return {
    peerEndpoint,
    tlsCaCert,
    serverNameOverride,
    mspId: config.mspId,
    certificate: config.certificate,
    privateKey,
    channel: config.channel,
    chaincode,
    contract,
    requestTimeoutMs: positiveInt(config.requestTimeoutMs, 10_000, 'requestTimeoutMs', 100),
    commitTimeoutMs: positiveInt(config.commitTimeoutMs, 120_000, 'commitTimeoutMs', 100),
    maxInFlight: positiveInt(config.maxInFlight, 100, 'maxInFlight', 1, 10_000),
    coalesceMs: positiveInt(config.coalesceMs, 20, 'coalesceMs', 0, 10_000),
    maxBatchSize: positiveInt(config.maxBatchSize, 500, 'maxBatchSize', 1, 1000),
    readBatchSize: positiveInt(config.readBatchSize, 200, 'readBatchSize', 1, 1000),
    pollMs: positiveInt(config.pollMs, 1000, 'pollMs', 10),
    healthCheckMs: positiveInt(config.healthCheckMs, 15_000, 'healthCheckMs', 0),
    warn: config.onWarning ?? ((m: string) => process.emitWarning(m, 'SetsLedgerWarning')),
  };
}

/**
 * The Fabric CA attributes of a certificate (extension 1.2.3.4.5.6.7.8.1, JSON {"attrs": {...}}),
 * {} when it carries none. Node's X509Certificate does not expose arbitrary extensions; the
 * extension's value is the JSON text itself inside an OCTET STRING, so it is found in the DER.
 */
export function certificateAttributes(cert: X509Certificate): Record<string, string> {
  const der = cert.raw;
  // OID 1.2.3.4.5.6.7.8.1 in DER: 06 08 2a 03 04 05 06 07 08 01
  const oid = Buffer.from([0x06, 0x08, 0x2a, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x01]);
  const at = der.indexOf(oid);
  if (at < 0) return {};
  const start = der.indexOf('{', at);
  if (start < 0 || start > at + 40) return {};
  let depth = 0;
  let inString = false;
  for (let i = start; i < der.length; i++) {
    const ch = der[i];
    if (inString) {
      if (ch === 0x5c) i++; // backslash escape
      else if (ch === 0x22) inString = false;
      continue;
    }
    if (ch === 0x22) inString = true;
    else if (ch === 0x7b) depth++;
    else if (ch === 0x7d && --depth === 0) {
      try {
        const parsed: unknown = JSON.parse(der.subarray(start, i + 1).toString('utf8'));
        const attrs = isRecord(parsed) ? parsed.attrs : undefined;
        if (!isRecord(attrs)) return {};
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries(attrs)) if (typeof v === 'string') out[k] = v;
        return out;
      } catch {
        return {};
      }
    }
  }
  return {};
}

/** gRPC status codes the mapping needs (grpc.status). */
const GRPC = { CANCELLED: 1, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, UNIMPLEMENTED: 12, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/** The chaincode's error codes (its messages start with them). */
const CHAINCODE_CODE = /\b(KEY_TAKEN|NOT_AUTHORISED|BAD_INPUT|NOT_INITIALISED):\s*([\s\S]*)$/;

/** A Gateway error's parts as the client library gives them (GatewayError / EndorseError / SubmitError / CommitStatusError). */
interface GatewayLike {
  code?: unknown;
  message?: unknown;
  details?: unknown;
  name?: unknown;
}

/** The peers' own reasons of a gateway error (ErrorDetail.message, with the peer's address), or the gRPC message. */
export function peerReason(err: unknown): string {
  const e = (isRecord(err) ? err : {}) as GatewayLike;
  const details = Array.isArray(e.details) ? e.details.filter(isRecord) : [];
  const parts = details
    .map((d) => {
      const msg = typeof d.message === 'string' ? d.message : '';
      const where = [typeof d.address === 'string' ? d.address : '', typeof d.mspId === 'string' ? d.mspId : ''].filter(Boolean).join(' ');
      return msg ? (where ? `${msg} (${where})` : msg) : '';
    })
    .filter(Boolean);
  const top = typeof e.message === 'string' ? e.message : String(err);
  return parts.length > 0 ? `${top}: ${parts.join('; ')}` : top;
}

/**
 * Map an error of the gateway client (or gRPC) to a LedgerError: the chaincode's own codes
 * (KEY_TAKEN, NOT_AUTHORISED, BAD_INPUT; NOT_INITIALISED is a deployment problem → BAD_CONFIG)
 * with the peer's reason as the message; UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED →
 * UNREACHABLE; an unknown channel or chaincode → BAD_CONFIG; any other endorsement failure →
 * TX_FAILED naming the peer's reason. `what` says what was being done.
 */
export function mapGatewayError(err: unknown, what: string, key?: string): LedgerError {
  if (err instanceof LedgerError) return err;
  const e = (isRecord(err) ? err : {}) as GatewayLike;
  const code = typeof e.code === 'number' ? e.code : undefined;
  const reason = peerReason(err);
  const details = Array.isArray(e.details) ? e.details.filter(isRecord) : [];
  for (const m of [...details.map((d) => (typeof d.message === 'string' ? d.message : '')), typeof e.message === 'string' ? e.message : '']) {
    const cc = CHAINCODE_CODE.exec(m);
    if (!cc) continue;
    const c = cc[1] === 'NOT_INITIALISED' ? 'BAD_CONFIG' : (cc[1] as LedgerErrorCode);
    const text = cc[1] === 'NOT_INITIALISED' ? `the chaincode is not initialised (call Initialize first): ${cc[2]}` : cc[2];
    return new LedgerError(c, text.trim(), { key, cause: err });
  }
  let c: LedgerErrorCode = 'TX_FAILED';
  let hint = '';
  // a peer at its concurrency limit answers UNKNOWN "too many requests for /gateway.Gateway,
  // exceeding concurrency limit (N)" (its limiter returns a plain error), not RESOURCE_EXHAUSTED
  if (/exceeding concurrency limit|too many requests/i.test(reason)) {
    return new LedgerError('UNREACHABLE', `${what} failed: ${reason} (the peer gateway is busy: lower maxInFlight, or raise the peer's peer.limits.concurrency.gatewayService)`, { key, cause: err });
  }
  switch (code) {
    case GRPC.UNAVAILABLE:
    case GRPC.DEADLINE_EXCEEDED:
    case GRPC.CANCELLED:
      c = 'UNREACHABLE';
      break;
    case GRPC.RESOURCE_EXHAUSTED:
      c = 'UNREACHABLE';
      hint = ' (the peer gateway is at its concurrency limit: lower maxInFlight, or raise peer.limits.concurrency.gatewayService)';
      break;
    case GRPC.NOT_FOUND:
    case GRPC.FAILED_PRECONDITION: // a peer's answer for a channel or chaincode it does not know
      c = 'BAD_CONFIG';
      hint = ' (check the channel and chaincode names, and that this peer joined the channel)';
      break;
    case GRPC.UNAUTHENTICATED:
    case GRPC.PERMISSION_DENIED:
      c = 'BAD_CONFIG';
      hint = ' (the peer refused the client identity: check mspId, certificate and key)';
      break;
    case GRPC.UNIMPLEMENTED:
      c = 'BAD_CONFIG';
      hint = ' (the endpoint is not a Fabric peer gateway: Fabric 2.4 or later with the gateway enabled)';
      break;
    default:
      c = 'TX_FAILED';
  }
  if (code === undefined && !(err instanceof Error && /GatewayError|EndorseError|SubmitError|CommitStatusError/.test(err.name))) {
    // not a gRPC error at all (a bug, or the client library refused something locally)
    return new LedgerError('TX_FAILED', `${what} failed: ${reason}`, { key, cause: err });
  }
  return new LedgerError(c, `${what} failed: ${reason}${hint}`, { key, cause: err });
}

/** True for the gRPC codes that mean "the peer could not be reached / did not answer in time". */
export function isUnreachable(err: unknown): boolean {
  const code = isRecord(err) ? (err as GatewayLike).code : undefined;
  return code === GRPC.UNAVAILABLE || code === GRPC.DEADLINE_EXCEEDED;
}
