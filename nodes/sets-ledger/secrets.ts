/**
 * The sets-ledger credentials as lib's ledgerConfig takes them, for the node's runtime and for the
 * editor's "Test connection" endpoint alike (so both read a dialog's values the same way).
 * EVM: the account key (hex). Fabric: the identity's key and certificate and the peer's TLS CA
 * certificate, PEM text whose line breaks a one-line password field may have dropped (put back by
 * normalisePem). Empty values are left out.
 */
import type { LedgerSecrets } from '../../lib/ops/connections';
import { normalisePem } from '../../lib/ops/pem';

export interface LedgerCredentialValues {
  privateKey?: unknown;
  certificate?: unknown;
  tlsCaCert?: unknown;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v.trim() : '';
}

function pem(v: unknown): string {
  const t = text(v);
  return t === '' ? '' : normalisePem(t).trim();
}

export function ledgerSecrets(kind: unknown, creds: LedgerCredentialValues | undefined): LedgerSecrets {
  const c = creds ?? {};
  const out: LedgerSecrets = {};
  if (kind === 'fabric') {
    const privateKey = pem(c.privateKey);
    const certificate = pem(c.certificate);
    const tlsCaCert = pem(c.tlsCaCert);
    if (privateKey) out.privateKey = privateKey;
    if (certificate) out.certificate = certificate;
    if (tlsCaCert) out.tlsCaCert = tlsCaCert;
  } else {
    const privateKey = text(c.privateKey);
    if (privateKey) out.privateKey = privateKey;
  }
  return out;
}
