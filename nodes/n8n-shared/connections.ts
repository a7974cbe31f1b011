/**
 * n8n credential data -> lib configuration. The credential property names are the raw keys of the
 * lib parse functions (parseLedgerSettings, parseBrokerSettings, parseTaxiiSettings,
 * parseStoreSettings), so the decrypted credential object is handed to them as it is; secrets are
 * picked out by name. No protocol logic here.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { ICredentialDataDecryptedObject } from 'n8n-workflow';
import type { AmqpBusConfig } from '../../lib/bus/amqp';
import type { LedgerConfig } from '../../lib/ledger/index';
import { brokerConfig, ledgerConfig, parseBrokerSettings, parseLedgerSettings } from '../../lib/ops/connections';
import { parseStoreSettings, type StoreSecrets, type StoreSettings } from '../../lib/ops/server-store';
import { parseTaxiiSettings, type TaxiiSecrets, type TaxiiSettings } from '../../lib/ops/taxii-connection';

export type CredentialData = ICredentialDataDecryptedObject;

/** Credential type names (stable: workflows refer to them). */
export const CRED = {
  taxii: 'setsTaxiiApi',
  ledger: 'setsEvmLedgerApi',
  amqp: 'setsAmqpApi',
  store: 'setsStoreApi',
  serverAuth: 'setsTaxiiServerAuth',
} as const;

function secret(data: CredentialData, key: string): string | undefined {
  const v = data[key];
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  return s === '' ? undefined : s;
}

/** A password is taken as typed (spaces may be part of it); empty = none. */
function password(data: CredentialData, key: string): string | undefined {
  const v = data[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** EVM ledger configuration from a `setsEvmLedgerApi` credential. Throws ConfigError naming the field. */
export function ledgerFromCredential(data: CredentialData): LedgerConfig {
  return ledgerConfig(parseLedgerSettings(data), { privateKey: secret(data, 'privateKey') });
}

/** RabbitMQ configuration from a `setsAmqpApi` credential. Throws ConfigError naming the field. */
export function brokerFromCredential(data: CredentialData, clientName?: string): AmqpBusConfig {
  return brokerConfig(parseBrokerSettings(data, clientName), { username: secret(data, 'username'), password: password(data, 'password') });
}

/** TAXII client settings and secrets from a `setsTaxiiApi` credential. */
export function taxiiFromCredential(data: CredentialData): { settings: TaxiiSettings; secrets: TaxiiSecrets } {
  const settings = parseTaxiiSettings(data);
  const secrets: TaxiiSecrets = {};
  const username = secret(data, 'username');
  const pw = password(data, 'password');
  const token = secret(data, 'token');
  const clientId = secret(data, 'clientId');
  const clientSecret = password(data, 'clientSecret');
  if (username) secrets.username = username;
  if (pw) secrets.password = pw;
  if (token) secrets.token = token;
  if (clientId) secrets.clientId = clientId;
  if (clientSecret) secrets.clientSecret = clientSecret;
  return { settings, secrets };
}

/** n8n's own folder: `$N8N_USER_FOLDER/.n8n`, else `~/.n8n` (where n8n keeps its database and config). */
export function n8nFolder(): string {
  const base = process.env.N8N_USER_FOLDER && process.env.N8N_USER_FOLDER.trim() !== '' ? process.env.N8N_USER_FOLDER : os.homedir();
  return path.join(base, '.n8n');
}

/** Default directory of the embedded store: `<n8n folder>/sets-store/default`. */
export function defaultN8nStoreDir(): string {
  return path.join(n8nFolder(), 'sets-store', 'default');
}

/** Store settings and secrets from a `setsStoreApi` credential. */
export function storeFromCredential(data: CredentialData): { settings: StoreSettings; secrets: StoreSecrets } {
  const settings = parseStoreSettings(data, { defaultDir: defaultN8nStoreDir() });
  const uri = secret(data, 'uri');
  return { settings, secrets: uri ? { uri } : {} };
}
