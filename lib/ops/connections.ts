/**
 * Ledger and bus configuration from plain settings + secrets — the shape a Node-RED config node
 * (fields + credentials) or an n8n credential holds — so both front ends build the same thing.
 * Values are already typed here (the front end parses its form); empty optional values are
 * left out so the adapters' defaults apply.
 */
import { normalisePem } from './pem';
import type { EvmLedgerKindConfig, FabricLedgerKindConfig, LedgerConfig } from '../ledger/index';
import type { AmqpBusConfig } from '../bus/amqp';
import { ConfigError, bool, int, oneOf, optInt, optStr, str } from './settings';

/** Raw form values (a Node-RED config node's fields, an n8n credential's data). */
export type RawSettings = Record<string, unknown>;

/** Settings of either ledger kind (`kind` tells them apart). */
export type LedgerSettings = EvmLedgerSettings | FabricLedgerSettings;

export interface EvmLedgerSettings {
  kind: 'evm';
  rpcUrl: string;
  wsUrl?: string;
  chainId: string | number;
  /** registry contract address */
  contract: string;
  txType?: 0 | 2;
  gasPrice?: string;
  maxFeePerGas?: string;
  maxPriorityFeePerGas?: string;
  gasLimit?: number;
  requestTimeoutMs?: number;
  /** anchor deadline: how long an anchor may take from submission, outages and re-broadcasts included, ms */
  anchorDeadlineMs?: number;
  /** coalescing window for concurrent anchors and reads, ms (0 = off) */
  coalesceMs?: number;
  /** entries per batch transaction */
  maxBatchSize?: number;
  /** sent-but-unmined transactions per account (per account and node, not per connection) */
  maxInFlight?: number;
  /** new-block polling interval, ms */
  pollMs?: number;
  /** blocks on top of the including block before an anchor resolves */
  confirmations?: number;
}

export interface FabricLedgerSettings {
  kind: 'fabric';
  /** host:port of the peer's gateway */
  peerEndpoint: string;
  /** the host name in the peer's TLS certificate, when the endpoint names it otherwise */
  serverNameOverride?: string;
  mspId: string;
  channel: string;
  /** chaincode name (default sets-registry) */
  chaincode: string;
  /** contract inside the chaincode (empty: the default contract) */
  contractName?: string;
  /** 'tls' (default; needs the TLS CA certificate) or 'insecure' (plaintext gRPC, test networks) */
  tlsMode: 'tls' | 'insecure';
  requestTimeoutMs: number;
  /** how long an anchor waits for its transaction to commit, ms */
  anchorDeadlineMs: number;
  coalesceMs?: number;
  maxBatchSize?: number;
  /** gateway requests in flight at once */
  maxInFlight?: number;
  /** polling interval of awaited keys while the event stream is down, ms */
  pollMs?: number;
}

/**
 * Ledger settings from raw form values, by `kind` ('evm' when empty, or 'fabric').
 *
 * EVM: rpcUrl, wsUrl, chainId, contract, txType ('0' | '2'), gasPrice, maxFeePerGas,
 * maxPriorityFeePerGas (wei), gasLimit, timeout (ms, default 10 s), anchorDeadline (s, default
 * 120: an anchor waits out node outages and re-broadcasts this long). Tuning (empty = the
 * adapter's default): coalesceMs (0-10000, default 20, 0 = off), maxBatchSize (1-1000, default
 * 150), maxInFlight (1-4096, default 64; per account and node: every connection signing with the
 * key shares one send queue, the first one's value holds), pollMs (new-block polling, 10-60000,
 * default 500), confirmations (1-1000, default 1).
 *
 * Fabric: peerEndpoint (host:port), serverNameOverride, mspId, channel, chaincode (default
 * sets-registry), contractName, tlsMode ('tls' default | 'insecure'), timeout (ms, default 10 s),
 * anchorDeadline (s, default 120: commit wait), coalesceMs (0-10000, default 20), maxBatchSize
 * (1-1000, default 500), maxInFlight (1-10000, default 100), pollMs (10-60000, default 1000). The
 * certificate, key and TLS CA are secrets: ledgerConfig checks them.
 *
 * Throws ConfigError naming the setting.
 */
export function parseLedgerSettings<T extends RawSettings>(raw: T): LedgerSettingsOf<T> {
  const kind = oneOf(raw['kind'], 'ledger kind', ['evm', 'fabric'] as const, 'evm');
  return (kind === 'fabric' ? parseFabricLedgerSettings(raw) : parseEvmLedgerSettings(raw)) as LedgerSettingsOf<T>;
}

/**
 * What parseLedgerSettings returns for raw values of type T: form values of unknown shape (an
 * index signature) give either kind; an object literal naming kind 'fabric' the Fabric settings,
 * one naming 'evm' or no kind the EVM settings (callers written before Fabric keep their types).
 */
export type LedgerSettingsOf<T> = string extends keyof T
  ? LedgerSettings
  : T extends { kind: 'fabric' }
    ? FabricLedgerSettings
    : T extends { kind: 'evm' }
      ? EvmLedgerSettings
      : 'kind' extends keyof T
        ? LedgerSettings
        : EvmLedgerSettings;

const ENDPOINT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

function parseFabricLedgerSettings(raw: RawSettings): FabricLedgerSettings {
  const peerEndpoint = str(raw['peerEndpoint']);
  const ep = ENDPOINT.exec(peerEndpoint);
  if (!ep || Number(ep[2]) < 1 || Number(ep[2]) > 65_535) {
    throw new ConfigError(`peer endpoint must be host:port of the peer's gateway (e.g. peer0.org1.example.com:7051, without grpc:// or https://), got "${peerEndpoint}"`);
  }
  const mspId = str(raw['mspId']);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(mspId)) throw new ConfigError(`MSP id must be the identity's organisation MSP id (e.g. Org1MSP), got "${mspId}"`);
  const channel = str(raw['channel']);
  if (!/^[a-z][a-z0-9.-]{0,248}$/.test(channel)) throw new ConfigError(`channel must be a Fabric channel name (lower-case letters, digits, '.', '-'; e.g. mychannel), got "${channel}"`);
  const chaincode = str(raw['chaincode']) || 'sets-registry';
  if (!/^[A-Za-z0-9]+([A-Za-z0-9_-]*[A-Za-z0-9])?$/.test(chaincode)) throw new ConfigError(`chaincode must be a chaincode name (e.g. sets-registry), got "${chaincode}"`);
  const s: FabricLedgerSettings = {
    kind: 'fabric',
    peerEndpoint,
    mspId,
    channel,
    chaincode,
    tlsMode: oneOf(raw['tlsMode'], 'TLS mode', ['tls', 'insecure'] as const, 'tls'),
    requestTimeoutMs: int(raw['timeout'], 'timeout', 10_000, 100, 600_000),
    anchorDeadlineMs: int(raw['anchorDeadline'], 'anchor deadline (seconds)', 120, 5, 86_400) * 1000,
  };
  const sno = optStr(raw['serverNameOverride']);
  if (sno !== undefined) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(sno)) throw new ConfigError(`TLS server name override must be a host name (the one in the peer's TLS certificate), got "${sno}"`);
    s.serverNameOverride = sno;
  }
  const contractName = optStr(raw['contractName']);
  if (contractName !== undefined) {
    if (!/^[A-Za-z0-9_.-]+$/.test(contractName)) throw new ConfigError(`contract name must be letters, digits, '_', '.', '-', got "${contractName}"`);
    s.contractName = contractName;
  }
  const tuning = [
    ['coalesceMs', 'coalescing window (ms)', 0, 10_000],
    ['maxBatchSize', 'batch size', 1, 1000],
    ['maxInFlight', 'requests in flight', 1, 10_000],
    ['pollMs', 'poll interval (ms)', 10, 60_000],
  ] as const;
  for (const [k, name, min, max] of tuning) {
    const v = optInt(raw[k], name, min, max);
    if (v !== undefined) s[k] = v;
  }
  return s;
}

/**
 * Ledger settings from raw form values: rpcUrl, wsUrl, chainId, contract, txType ('0' | '2'),
 * gasPrice, maxFeePerGas, maxPriorityFeePerGas (wei), gasLimit, timeout (ms, default 10 s),
 * anchorDeadline (s, default 120: an anchor waits out node outages and re-broadcasts this long).
 * Tuning (empty = the adapter's default): coalesceMs (0-10000, default 20, 0 = off), maxBatchSize
 * (1-1000, default 150), maxInFlight (1-4096, default 64; per account and node: every connection
 * signing with the key shares one send queue, the first one's value holds), pollMs (new-block
 * polling, 10-60000, default 500), confirmations (1-1000, default 1).
 * Throws ConfigError naming the setting.
 */
function parseEvmLedgerSettings(raw: RawSettings): EvmLedgerSettings {
  const rpcUrl = str(raw['rpcUrl']);
  if (!/^(https?|wss?):\/\/\S+$/i.test(rpcUrl)) throw new ConfigError(`RPC URL must be an http(s):// or ws(s):// URL, got "${rpcUrl}"`);
  const chainId = str(raw['chainId']);
  if (!/^\d+$/.test(chainId)) throw new ConfigError(`chain id must be a number, got "${chainId}"`);
  const contract = str(raw['contract']);
  if (!/^0x[0-9a-fA-F]{40}$/.test(contract)) throw new ConfigError(`registry address must be a 0x-prefixed 20-byte hex address, got "${contract}"`);
  const s: EvmLedgerSettings = {
    kind: 'evm',
    rpcUrl,
    chainId,
    contract,
    txType: oneOf(str(raw['txType']), 'tx type', ['0', '2'] as const, '0') === '2' ? 2 : 0,
    requestTimeoutMs: int(raw['timeout'], 'timeout', 10_000, 100, 600_000),
    anchorDeadlineMs: int(raw['anchorDeadline'], 'anchor deadline (seconds)', 120, 5, 86_400) * 1000,
  };
  const wsUrl = optStr(raw['wsUrl']);
  if (wsUrl) {
    if (!/^wss?:\/\/\S+$/i.test(wsUrl)) throw new ConfigError(`WebSocket URL must be a ws:// or wss:// URL, got "${wsUrl}"`);
    s.wsUrl = wsUrl;
  }
  for (const k of ['gasPrice', 'maxFeePerGas', 'maxPriorityFeePerGas'] as const) {
    const v = optStr(raw[k]);
    if (v !== undefined) {
      if (!/^\d+$/.test(v)) throw new ConfigError(`${k} must be a whole number of wei, got "${v}"`);
      s[k] = v;
    }
  }
  const gasLimit = optInt(raw['gasLimit'], 'gas limit', 21_000);
  if (gasLimit !== undefined) s.gasLimit = gasLimit;
  const tuning = [
    ['coalesceMs', 'coalescing window (ms)', 0, 10_000],
    ['maxBatchSize', 'batch size', 1, 1000],
    ['maxInFlight', 'transactions in flight', 1, 4096],
    ['pollMs', 'poll interval (ms)', 10, 60_000],
    ['confirmations', 'confirmations', 1, 1000],
  ] as const;
  for (const [k, name, min, max] of tuning) {
    const v = optInt(raw[k], name, min, max);
    if (v !== undefined) s[k] = v;
  }
  return s;
}

export interface LedgerSecrets {
  /** EVM: 0x + 64 hex; Fabric: the identity's PEM private key */
  privateKey?: string;
  /** Fabric: the identity's PEM enrolment certificate */
  certificate?: string;
  /** Fabric: PEM certificate of the CA that signed the peer's TLS certificate */
  tlsCaCert?: string;
}

const PEM_CERT = /^-----BEGIN CERTIFICATE-----\s[\s\S]+?\s-----END CERTIFICATE-----/;
const PEM_KEY = /^-----BEGIN (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----\s[\s\S]+?\s-----END (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----/;

/**
 * The adapter configuration of parsed settings and secrets. Fabric: the certificate and the
 * private key are required (a peer answers only signed proposals), the TLS CA certificate too
 * unless tlsMode is 'insecure'; each must be PEM of its kind (ConfigError naming it otherwise).
 */
export function ledgerConfig(s: EvmLedgerSettings, secrets: LedgerSecrets): EvmLedgerKindConfig;
export function ledgerConfig(s: FabricLedgerSettings, secrets: LedgerSecrets): FabricLedgerKindConfig;
export function ledgerConfig(s: LedgerSettings, secrets: LedgerSecrets): LedgerConfig;
export function ledgerConfig(s: LedgerSettings, secrets: LedgerSecrets): LedgerConfig {
  return s.kind === 'fabric' ? fabricLedgerConfig(s, secrets) : evmLedgerConfig(s, secrets);
}

function fabricLedgerConfig(s: FabricLedgerSettings, secrets: LedgerSecrets): FabricLedgerKindConfig {
  // PEM pasted into a one-line field (Node-RED's password input, an n8n field) lost its line breaks
  const pemOf = (v: string | undefined): string => (v ? normalisePem(v.trim()).trim() : '');
  const certificate = pemOf(secrets.certificate);
  if (!certificate) throw new ConfigError('certificate is required: the PEM enrolment certificate of the Fabric identity (signcerts/cert.pem)');
  if (!PEM_CERT.test(certificate)) throw new ConfigError('certificate must be a PEM certificate (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)');
  const privateKey = pemOf(secrets.privateKey);
  if (!privateKey) throw new ConfigError('private key is required: a Fabric peer answers only proposals signed by the identity (reads included) — the PEM key from its keystore');
  if (!PEM_KEY.test(privateKey)) throw new ConfigError('private key must be a PEM private key (-----BEGIN PRIVATE KEY----- … -----END PRIVATE KEY-----)');
  const cfg: FabricLedgerKindConfig = {
    kind: 'fabric',
    peerEndpoint: s.peerEndpoint,
    mspId: s.mspId,
    channel: s.channel,
    chaincode: s.chaincode,
    certificate,
    privateKey,
    requestTimeoutMs: s.requestTimeoutMs,
    commitTimeoutMs: s.anchorDeadlineMs,
  };
  const ca = pemOf(secrets.tlsCaCert);
  if (s.tlsMode === 'insecure') {
    cfg.insecure = true;
  } else {
    if (!ca) throw new ConfigError('TLS CA certificate is required with TLS: the PEM certificate of the CA that signed the peer\'s TLS certificate (tlsca), or choose TLS mode "insecure" for a plaintext test network');
    if (!PEM_CERT.test(ca)) throw new ConfigError('TLS CA certificate must be a PEM certificate (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)');
    cfg.tlsCaCert = ca;
  }
  if (s.serverNameOverride) cfg.serverNameOverride = s.serverNameOverride;
  if (s.contractName) cfg.contract = s.contractName;
  if (s.coalesceMs !== undefined) cfg.coalesceMs = s.coalesceMs;
  if (s.maxBatchSize !== undefined) cfg.maxBatchSize = s.maxBatchSize;
  if (s.maxInFlight !== undefined) cfg.maxInFlight = s.maxInFlight;
  if (s.pollMs !== undefined) cfg.pollMs = s.pollMs;
  return cfg;
}

function evmLedgerConfig(s: EvmLedgerSettings, secrets: LedgerSecrets): EvmLedgerKindConfig {
  const cfg: EvmLedgerKindConfig = { kind: 'evm', rpcUrl: s.rpcUrl, address: s.contract, chainId: s.chainId };
  if (s.wsUrl) cfg.wsUrl = s.wsUrl;
  if (secrets.privateKey) cfg.privateKey = secrets.privateKey;
  if (s.txType !== undefined) cfg.txType = s.txType;
  if (s.gasPrice) cfg.gasPrice = s.gasPrice;
  if (s.maxFeePerGas) cfg.maxFeePerGas = s.maxFeePerGas;
  if (s.maxPriorityFeePerGas) cfg.maxPriorityFeePerGas = s.maxPriorityFeePerGas;
  if (s.gasLimit) cfg.gasLimit = s.gasLimit;
  if (s.requestTimeoutMs) cfg.requestTimeoutMs = s.requestTimeoutMs;
  if (s.anchorDeadlineMs) cfg.txTimeoutMs = s.anchorDeadlineMs;
  if (s.coalesceMs !== undefined) cfg.coalesceMs = s.coalesceMs;
  if (s.maxBatchSize !== undefined) cfg.maxBatchSize = s.maxBatchSize;
  if (s.maxInFlight !== undefined) cfg.maxInFlight = s.maxInFlight;
  if (s.pollMs !== undefined) cfg.waitPollMs = s.pollMs;
  if (s.confirmations !== undefined) cfg.confirmations = s.confirmations;
  return cfg;
}

export interface BrokerSettings {
  host: string;
  port?: number;
  vhost?: string;
  tls?: boolean;
  /** verify the broker certificate (default true) */
  tlsVerify?: boolean;
  /** PEM bundle of CAs to trust */
  ca?: string;
  exchange?: string;
  prefetch?: number;
  heartbeatSec?: number;
  /** connect / setup timeout, ms */
  timeoutMs?: number;
  /** how long a publish waits for the broker to come back (reconnect) before it fails, ms */
  brokerWaitMs?: number;
  /** shown in the broker's connection list */
  clientName?: string;
}

/**
 * RabbitMQ settings from raw form values: host (default localhost), port (5672, 5671 with TLS),
 * vhost ('/'), tls, tlsVerify (default true), ca (PEM), exchange ('sets'), prefetch (100),
 * heartbeat (s, 30), timeout (ms, 10 s), brokerWait (s, 120: how long a publish waits for a reconnect).
 * Throws ConfigError naming the setting.
 */
export function parseBrokerSettings(raw: RawSettings, clientName?: string): BrokerSettings {
  const tls = bool(raw['tls'], false);
  const s: BrokerSettings = {
    host: str(raw['host'], 'localhost') || 'localhost',
    port: int(raw['port'], 'port', tls ? 5671 : 5672, 1, 65_535),
    vhost: str(raw['vhost'], '/') || '/',
    tls,
    tlsVerify: bool(raw['tlsVerify'], true),
    exchange: str(raw['exchange'], 'sets') || 'sets',
    prefetch: int(raw['prefetch'], 'prefetch', 100, 1, 65_535),
    heartbeatSec: int(raw['heartbeat'], 'heartbeat', 30, 0, 3600),
    timeoutMs: int(raw['timeout'], 'timeout', 10_000, 100, 600_000),
    brokerWaitMs: int(raw['brokerWait'], 'broker wait (seconds)', 120, 1, 86_400) * 1000,
  };
  if (/[\s/]/.test(s.host)) throw new ConfigError(`host must be a host name or address without scheme or path, got "${s.host}"`);
  const ca = optStr(raw['ca']);
  if (ca) s.ca = ca;
  if (clientName) s.clientName = clientName;
  return s;
}

export interface BrokerSecrets {
  username?: string;
  password?: string;
}

/** The broker URL carries no credentials (they go in the config's own fields, never in a URL that might be logged). */
export function brokerConfig(s: BrokerSettings, secrets: BrokerSecrets): AmqpBusConfig {
  const scheme = s.tls ? 'amqps' : 'amqp';
  const host = s.host.includes(':') && !s.host.startsWith('[') ? `[${s.host}]` : s.host;
  const port = s.port ?? (s.tls ? 5671 : 5672);
  const cfg: AmqpBusConfig = { url: `${scheme}://${host}:${port}` };
  if (s.vhost) cfg.vhost = s.vhost;
  if (secrets.username) cfg.username = secrets.username;
  if (secrets.password !== undefined && secrets.username) cfg.password = secrets.password;
  if (s.exchange) cfg.exchange = s.exchange;
  if (s.prefetch) cfg.prefetch = s.prefetch;
  if (s.heartbeatSec !== undefined) cfg.heartbeatSec = s.heartbeatSec;
  if (s.timeoutMs) cfg.connectTimeoutMs = s.timeoutMs;
  if (s.brokerWaitMs) cfg.brokerWaitMs = s.brokerWaitMs;
  if (s.clientName) cfg.clientName = s.clientName;
  if (s.tls) {
    cfg.tls = { rejectUnauthorized: s.tlsVerify ?? true };
    if (s.ca && s.ca.trim()) cfg.tls.ca = s.ca;
  }
  return cfg;
}
