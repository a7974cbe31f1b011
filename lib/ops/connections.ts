/**
 * Ledger and bus configuration from plain settings + secrets — the shape a Node-RED config node
 * (fields + credentials) or an n8n credential holds — so both front ends build the same thing.
 * Values are already typed here (the front end parses its form); empty optional values are
 * left out so the adapters' defaults apply.
 */
import type { LedgerConfig } from '../ledger/index';
import type { AmqpBusConfig } from '../bus/amqp';

export interface LedgerSettings {
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
}

export interface LedgerSecrets {
  privateKey?: string;
}

export function ledgerConfig(s: LedgerSettings, secrets: LedgerSecrets): LedgerConfig {
  const cfg: LedgerConfig = { kind: 'evm', rpcUrl: s.rpcUrl, address: s.contract, chainId: s.chainId };
  if (s.wsUrl) cfg.wsUrl = s.wsUrl;
  if (secrets.privateKey) cfg.privateKey = secrets.privateKey;
  if (s.txType !== undefined) cfg.txType = s.txType;
  if (s.gasPrice) cfg.gasPrice = s.gasPrice;
  if (s.maxFeePerGas) cfg.maxFeePerGas = s.maxFeePerGas;
  if (s.maxPriorityFeePerGas) cfg.maxPriorityFeePerGas = s.maxPriorityFeePerGas;
  if (s.gasLimit) cfg.gasLimit = s.gasLimit;
  if (s.requestTimeoutMs) cfg.requestTimeoutMs = s.requestTimeoutMs;
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
  /** shown in the broker's connection list */
  clientName?: string;
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
  if (s.clientName) cfg.clientName = s.clientName;
  if (s.tls) {
    cfg.tls = { rejectUnauthorized: s.tlsVerify ?? true };
    if (s.ca && s.ca.trim()) cfg.tls.ca = s.ca;
  }
  return cfg;
}
