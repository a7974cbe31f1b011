/**
 * n8n credential data -> lib configuration. The credential property names are the raw keys of the
 * lib parse functions (parseLedgerSettings, parseBrokerSettings, parseTaxiiSettings,
 * parseStoreSettings), so the decrypted credential object is handed to them as it is; secrets are
 * picked out by name. No protocol logic here.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { ICredentialDataDecryptedObject, INodeCredentialDescription, INodeProperties } from 'n8n-workflow';
import type { AmqpBusConfig } from '../../lib/bus/amqp';
import type { LedgerConfig } from '../../lib/ledger/index';
import { brokerConfig, ledgerConfig, parseBrokerSettings, parseLedgerSettings } from '../../lib/ops/connections';
import { ConfigError } from '../../lib/ops/settings';
import { parseStoreSettings, type StoreSecrets, type StoreSettings } from '../../lib/ops/server-store';
import { parseTaxiiSettings, type TaxiiSecrets, type TaxiiSettings } from '../../lib/ops/taxii-connection';

export type CredentialData = ICredentialDataDecryptedObject;

/** Credential type names (stable: workflows refer to them). */
export const CRED = {
  taxii: 'setsTaxiiApi',
  ledger: 'setsEvmLedgerApi',
  fabricLedger: 'setsFabricLedgerApi',
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

/**
 * Fabric ledger configuration from a `setsFabricLedgerApi` credential (the same raw names as the
 * sets-ledger node's Fabric fields; the credential type itself says the kind). Throws ConfigError
 * naming the field.
 */
export function fabricLedgerFromCredential(data: CredentialData): LedgerConfig {
  return ledgerConfig(parseLedgerSettings({ ...data, kind: 'fabric' }), {
    privateKey: secret(data, 'privateKey'),
    certificate: secret(data, 'certificate'),
    tlsCaCert: secret(data, 'tlsCaCert'),
  });
}

/** The ledgers a node can use; the node's "Ledger" parameter picks one, and with it the credential. */
export type LedgerKind = 'evm' | 'fabric';

/**
 * The value of a node's "Ledger" parameter. Absent or empty (workflows saved before the choice
 * existed) is EVM, so they keep working with their `setsEvmLedgerApi` credential.
 */
export function ledgerKindOf(value: unknown): LedgerKind {
  if (value === undefined || value === null || value === '' || value === 'evm') return 'evm';
  if (value === 'fabric') return 'fabric';
  throw new ConfigError(`Ledger must be "evm" or "fabric", got "${String(value)}"`);
}

/** Credential type holding the settings of a ledger kind. */
export function ledgerCredentialType(kind: LedgerKind): string {
  return kind === 'fabric' ? CRED.fabricLedger : CRED.ledger;
}

/** Ledger configuration from the credential of that kind. Throws ConfigError naming the field. */
export function ledgerFromKind(kind: LedgerKind, data: CredentialData): LedgerConfig {
  return kind === 'fabric' ? fabricLedgerFromCredential(data) : ledgerFromCredential(data);
}

/** The community HMAC key of a ledger credential (both kinds have the optional field); undefined = none. */
export function hmacKeyOf(data: CredentialData): string | undefined {
  return typeof data.hmacKey === 'string' && data.hmacKey !== '' ? data.hmacKey : undefined;
}

/**
 * The "Ledger" parameter of a node, shown where the node needs a ledger (`show`). The node's
 * credentials list then names each ledger credential with `displayOptions: { show: { ledger:
 * [kind] } }`, as n8n's own nodes do with `authentication`: the editor asks for the credential of
 * the chosen kind only, and a workflow without the parameter gets its default (EVM).
 */
export function ledgerProperty(show: NonNullable<INodeProperties['displayOptions']>['show']): INodeProperties {
  return {
    displayName: 'Ledger',
    name: 'ledger',
    type: 'options',
    noDataExpression: true,
    options: [
      { name: 'EVM (Quorum, Besu, Any EVM Chain)', value: 'evm', description: 'Credential "SETS EVM Ledger": JSON-RPC URL, chain ID, registry contract, account key' },
      { name: 'Hyperledger Fabric', value: 'fabric', description: 'Credential "SETS Fabric Ledger": peer gateway, channel, chaincode, MSP identity' },
    ],
    default: 'evm',
    displayOptions: { show },
    description: 'Which kind of ledger holds the SETS registry; it decides which credential the node asks for',
  };
}

/** The credentials entries for the two ledger kinds, following the node's "Ledger" parameter. */
export const LEDGER_CREDENTIALS: INodeCredentialDescription[] = [
  { name: CRED.ledger, required: true, testedBy: 'setsEvmLedgerApiTest', displayOptions: { show: { ledger: ['evm'] } } },
  { name: CRED.fabricLedger, required: true, testedBy: 'setsFabricLedgerApiTest', displayOptions: { show: { ledger: ['fabric'] } } },
];

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
