/**
 * PEM text pasted into a one-line field (Node-RED's password input, an n8n credential field) loses
 * its line breaks; lib lays it out again before the Fabric adapter reads it, so both front ends take
 * a key or certificate however it was pasted.
 */
import { strict as assert } from 'node:assert';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { normalisePem } from '../../lib/ops/pem';
import { ledgerConfig, parseLedgerSettings } from '../../lib/ops/connections';
import { makeIdentity } from '../support/fabric-pki';

const oneLine = (pem: string): string => pem.replace(/\r?\n/g, '');

describe('PEM pasted into a one-line field', () => {
  const id = makeIdentity({ mspId: 'Org1MSP', cn: 'paste-test' });

  it('normalisePem lays a one-line key and certificate out again; laid-out PEM and non-PEM text come back as they were', () => {
    const key = normalisePem(oneLine(id.privateKey));
    assert.doesNotThrow(() => createPrivateKey(key));
    assert.throws(() => createPrivateKey(oneLine(id.privateKey)), 'the one-line form is what OpenSSL cannot read');
    const cert = normalisePem(oneLine(id.certificate));
    assert.equal(new X509Certificate(cert).subject, new X509Certificate(id.certificate).subject);
    assert.equal(normalisePem(key), key, 'idempotent');
    assert.equal(normalisePem('0xabc'), '0xabc');
    assert.equal(normalisePem('-----BEGIN PRIVATE KEY-----Proc-Type: 4,ENCRYPTED-----END PRIVATE KEY-----'), '-----BEGIN PRIVATE KEY-----Proc-Type: 4,ENCRYPTED-----END PRIVATE KEY-----');
  });

  it('ledgerConfig (the n8n credential path as well as Node-RED) takes one-line PEM for the Fabric key, certificate and TLS CA', () => {
    const settings = parseLedgerSettings({ kind: 'fabric', peerEndpoint: 'peer0.org1.example.com:7051', mspId: 'Org1MSP', channel: 'mychannel' });
    const cfg = ledgerConfig(settings, { privateKey: oneLine(id.privateKey), certificate: oneLine(id.certificate), tlsCaCert: oneLine(id.caCertificate) });
    assert.equal(cfg.kind, 'fabric');
    if (cfg.kind !== 'fabric') return;
    assert.doesNotThrow(() => createPrivateKey(cfg.privateKey ?? ''));
    assert.doesNotThrow(() => new X509Certificate(cfg.certificate));
    assert.doesNotThrow(() => new X509Certificate(cfg.tlsCaCert ?? ''));
  });
});
