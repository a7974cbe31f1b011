/**
 * Throwaway X.509 material for the Fabric tests, made with the `openssl` CLI at test time (no key
 * is ever committed): client identities as a Fabric CA would issue them (EC P-256, optionally with
 * the Fabric CA attribute extension 1.2.3.4.5.6.7.8.1 = {"attrs":{...}}), and TLS server
 * certificates for the in-process gateway.
 *
 * One certificate authority per MSP id (per process) signs that MSP's identities, so two identities
 * of one MSP share an issuer, as on a real network.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** A client identity: what a Fabric wallet holds. */
export interface FabricTestIdentity {
  mspId: string;
  /** PEM X.509 certificate (EC P-256) */
  certificate: string;
  /** PEM PKCS#8 private key */
  privateKey: string;
  /** PEM certificate of the MSP's CA that issued `certificate` */
  caCertificate: string;
  /** subject DN as fabric-shim's ClientIdentity formats it, e.g. /C=US/O=Org1MSP/OU=client/CN=user1 */
  subject: string;
  /** the writer string the chaincode records: `<mspId>::<subject>` */
  writer: string;
}

export interface FabricTlsMaterial {
  /** PEM of the CA that signed `cert` (what a client trusts) */
  caCert: string;
  /** PEM server certificate, SAN = the names asked for */
  cert: string;
  /** PEM PKCS#8 private key of `cert` */
  key: string;
}

interface Ca {
  dir: string;
  cert: string;
  certPath: string;
  keyPath: string;
}

const cas = new Map<string, Ca>();
let workDir: string | undefined;
let serial = 0;

/** Safe as a DN value / attribute name: no characters that would need escaping in openssl -subj. */
const PLAIN = /^[A-Za-z0-9][A-Za-z0-9 ._@-]*$/;

function work(): string {
  if (!workDir) {
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-fabric-pki-'));
    const dir = workDir;
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return workDir;
}

function openssl(args: string[], cwd: string): string {
  try {
    return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === 'ENOENT') throw new Error('fabric-pki: the openssl CLI is needed to make test certificates (apt-get install openssl)');
    throw new Error(`fabric-pki: openssl ${args[0]} failed: ${e.stderr || e.message}`);
  }
}

function newKey(dir: string, name: string): string {
  const keyPath = path.join(dir, name);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath], dir);
  return keyPath;
}

function makeCa(label: string, subject: string): Ca {
  const dir = fs.mkdtempSync(path.join(work(), 'ca-'));
  const keyPath = newKey(dir, 'ca.key');
  const certPath = path.join(dir, 'ca.pem');
  fs.writeFileSync(
    path.join(dir, 'ca.cnf'),
    [
      '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', `CN = ${label}`,
      '[v3_ca]', 'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign, digitalSignature',
      'subjectKeyIdentifier = hash', '',
    ].join('\n'),
  );
  openssl(['req', '-x509', '-new', '-key', keyPath, '-subj', subject, '-days', '3650', '-sha256',
    '-config', 'ca.cnf', '-extensions', 'v3_ca', '-out', certPath], dir);
  return { dir, cert: fs.readFileSync(certPath, 'utf8'), certPath, keyPath };
}

/** Issue a leaf certificate for a fresh key; `ext` are the lines of its [ext] config section. */
function issue(ca: Ca, subject: string, ext: string[]): { cert: string; key: string } {
  const dir = fs.mkdtempSync(path.join(work(), 'leaf-'));
  const keyPath = newKey(dir, 'leaf.key');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), ['[ext]', ...ext, ''].join('\n'));
  openssl(['req', '-new', '-key', keyPath, '-subj', subject, '-out', 'leaf.csr'], dir);
  serial += 1;
  openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', ca.certPath, '-CAkey', ca.keyPath,
    '-set_serial', String(1000 + serial) + String(Date.now()), '-days', '365', '-sha256',
    '-extfile', 'ext.cnf', '-extensions', 'ext', '-out', 'leaf.pem'], dir);
  const out = { cert: fs.readFileSync(path.join(dir, 'leaf.pem'), 'utf8'), key: fs.readFileSync(keyPath, 'utf8') };
  fs.rmSync(dir, { recursive: true, force: true });
  return out;
}

function mspCa(mspId: string): Ca {
  let ca = cas.get(mspId);
  if (!ca) {
    ca = makeCa(`ca.${mspId}`, `/C=US/O=${mspId}/CN=ca.${mspId}`);
    cas.set(mspId, ca);
  }
  return ca;
}

/**
 * A client identity of `mspId` named `cn`, signed by that MSP's test CA. With `attrs`, the
 * certificate carries them as Fabric CA does (extension 1.2.3.4.5.6.7.8.1, JSON {"attrs":{…}}), so
 * fabric-shim's ClientIdentity.getAttributeValue sees them.
 */
export function makeIdentity(opts: { mspId: string; cn: string; attrs?: Record<string, string> }): FabricTestIdentity {
  const { mspId, cn, attrs } = opts;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(mspId)) throw new Error(`fabric-pki: unusable MSP id ${JSON.stringify(mspId)}`);
  if (!PLAIN.test(cn)) throw new Error(`fabric-pki: unusable common name ${JSON.stringify(cn)}`);
  const ext = [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
  ];
  if (attrs && Object.keys(attrs).length > 0) {
    // Fabric CA stores the raw JSON bytes as the extension value (not DER-wrapped): DER:<hex> does that
    const json = Buffer.from(JSON.stringify({ attrs }), 'utf8');
    ext.push(`1.2.3.4.5.6.7.8.1 = DER:${json.toString('hex').replace(/(..)/g, '$1:').slice(0, -1)}`);
  }
  const subject = `/C=US/O=${mspId}/OU=client/CN=${cn}`;
  const ca = mspCa(mspId);
  const { cert, key } = issue(ca, subject, ext);
  return { mspId, certificate: cert, privateKey: key, caCertificate: ca.cert, subject, writer: `${mspId}::${subject}` };
}

/**
 * A TLS server certificate for `names` (DNS names and/or IP addresses, first one is the CN),
 * signed by a fresh CA returned alongside.
 */
export function makeTlsServer(opts: { names: string[] }): FabricTlsMaterial {
  const names = opts.names;
  if (names.length === 0) throw new Error('fabric-pki: makeTlsServer needs at least one name');
  const san = names.map((n) => {
    if (/^[0-9.]+$/.test(n) || n.includes(':')) return `IP:${n}`;
    if (!/^[A-Za-z0-9*][A-Za-z0-9.*-]*$/.test(n)) throw new Error(`fabric-pki: unusable TLS name ${JSON.stringify(n)}`);
    return `DNS:${n}`;
  });
  const ca = makeCa('tlsca', `/C=US/O=SETS test/CN=tlsca ${++serial}`);
  const { cert, key } = issue(ca, `/C=US/O=SETS test/CN=${names[0].replace(/[^A-Za-z0-9.-]/g, '_')}`, [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature, keyEncipherment',
    'extendedKeyUsage = serverAuth, clientAuth',
    `subjectAltName = ${san.join(', ')}`,
  ]);
  return { caCert: ca.cert, cert, key };
}
