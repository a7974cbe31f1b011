/**
 * Connection tests of the SETS credentials (`testedBy` + `methods.credentialTest`): each calls a
 * lib probe, which never throws and names the reason of a failure. A credential that cannot even
 * be read (a bad URL, a missing secret) fails with the message naming the field.
 */
import type { ICredentialsDecrypted, ICredentialTestFunctions, INodeCredentialTestResult } from 'n8n-workflow';
import { messageOf } from '../../lib/ops/errors';
import { probeBroker, probeLedger, probeStore, probeTaxii, type ProbeResult } from '../../lib/ops/probes';
import { hashApiKeys, parseApiKeys, parseUsers } from '../../lib/ops/server-config';
import { createTaxiiHttpsServer } from '../../lib/taxii/server-https';
import { brokerFromCredential, fabricLedgerFromCredential, ledgerFromCredential, storeFromCredential, taxiiFromCredential, type CredentialData } from './connections';

/** How long a connection test may take. */
const PROBE_TIMEOUT_MS = 15_000;

function result(p: ProbeResult): INodeCredentialTestResult {
  return { status: p.ok ? 'OK' : 'Error', message: p.message };
}

async function run(data: CredentialData | undefined, probe: (d: CredentialData) => Promise<ProbeResult>): Promise<INodeCredentialTestResult> {
  try {
    return result(await probe(data ?? {}));
  } catch (err) {
    return { status: 'Error', message: messageOf(err) };
  }
}

export async function setsTaxiiApiTest(this: ICredentialTestFunctions, credential: ICredentialsDecrypted): Promise<INodeCredentialTestResult> {
  return run(credential.data, (d) => {
    const { settings, secrets } = taxiiFromCredential(d);
    return probeTaxii(settings, secrets);
  });
}

export async function setsEvmLedgerApiTest(this: ICredentialTestFunctions, credential: ICredentialsDecrypted): Promise<INodeCredentialTestResult> {
  return run(credential.data, (d) => probeLedger(ledgerFromCredential(d), { timeoutMs: PROBE_TIMEOUT_MS }));
}

/** The Fabric ledger: a signed read through the peer's gateway, and what this identity is granted. */
export async function setsFabricLedgerApiTest(this: ICredentialTestFunctions, credential: ICredentialsDecrypted): Promise<INodeCredentialTestResult> {
  return run(credential.data, (d) => probeLedger(fabricLedgerFromCredential(d), { timeoutMs: PROBE_TIMEOUT_MS }));
}

export async function setsAmqpApiTest(this: ICredentialTestFunctions, credential: ICredentialsDecrypted): Promise<INodeCredentialTestResult> {
  return run(credential.data, (d) => probeBroker(brokerFromCredential(d, 'n8n SETS credential test'), { timeoutMs: PROBE_TIMEOUT_MS }));
}

export async function setsStoreApiTest(this: ICredentialTestFunctions, credential: ICredentialsDecrypted): Promise<INodeCredentialTestResult> {
  return run(credential.data, (d) => {
    const { settings, secrets } = storeFromCredential(d);
    return probeStore(settings, secrets);
  });
}

/**
 * The server's secrets are checked, not connected to: users and API keys parse, the next-token
 * secret is long enough, the TLS certificate and key (when given) belong together.
 */
export async function setsTaxiiServerAuthTest(this: ICredentialTestFunctions, credential: ICredentialsDecrypted): Promise<INodeCredentialTestResult> {
  return run(credential.data, async (d) => {
    const text = (k: string): string | undefined => (typeof d[k] === 'string' && (d[k] as string).trim() !== '' ? (d[k] as string) : undefined);
    const users = parseUsers(text('users'));
    const keys = hashApiKeys(parseApiKeys(text('apiKeys')));
    const secret = text('nextTokenSecret');
    if (secret !== undefined && Buffer.byteLength(secret.trim(), 'utf8') < 16) {
      return { ok: false, message: 'the next-token secret must be at least 16 characters' };
    }
    const cert = text('tlsCert');
    const key = text('tlsKey');
    let tls = 'no TLS certificate (plain HTTP only)';
    if (cert || key) {
      if (!cert || !key) return { ok: false, message: 'HTTPS needs both the certificate and its private key' };
      // created, never started: no socket is opened
      createTaxiiHttpsServer({ cert, key, ...(text('tlsPassphrase') ? { passphrase: text('tlsPassphrase') } : {}) }, { handle: async () => undefined });
      tls = 'TLS certificate and key match';
    }
    return { ok: true, message: `${users.length} Basic user(s), ${keys.length} API key(s); ${tls}` };
  });
}
