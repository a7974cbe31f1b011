/**
 * HTTPS for the standalone TAXII server (lib/taxii/server-https.ts) over real TLS, with a throw-away
 * CA and certificates made by the openssl CLI in the test (makeTestPki), and our client verifying
 * the server certificate by default: it fails without the CA, succeeds with it; mutual TLS when
 * the server asks for client certificates; bad certificate material refused at creation.
 */
import { strict as assert } from 'node:assert';
import { createTaxiiServer, createTaxiiHttpsServer, listenTaxiiHttps, TaxiiServerConfigError, type TaxiiServer } from '../../lib/taxii/server';
import { TaxiiClient } from '../../lib/taxii/client';
import { TaxiiError } from '../../lib/taxii/errors';
import { BasicAuth } from '../../lib/auth/client';
import { makeTestPki, type TestPki } from '../support/taxii-test-server';
import { COL_MAIN, indicator, testConfig } from './helpers';
import { makeStore, type TestStore } from './stores';

async function tlsFailure(p: Promise<unknown>): Promise<TaxiiError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TaxiiError, String(e));
    assert.equal(e.code, 'TLS', e.message);
    return e;
  }
  assert.fail('expected a TLS failure');
}

describe('interop: HTTPS (standalone TAXII server over TLS)', function () {
  this.timeout(30_000);
  let pki: TestPki;
  let ts: TestStore;
  let taxii: TaxiiServer;
  let https: { url: string; close(): Promise<void> };

  before(async () => {
    pki = makeTestPki();
    ts = await makeStore();
    taxii = createTaxiiServer(await testConfig(ts.store));
    taxii.on('object', (e) => {
      // a verdict landing after the store closed at teardown must not be an unhandled rejection
      taxii.recordVerification(e.collection, e.record.id, e.record.version, 'verified', undefined, e.statusId).catch(() => undefined);
    });
    https = await listenTaxiiHttps({ cert: pki.serverCert, key: pki.serverKey }, taxii);
  });
  after(async () => {
    await https?.close();
    await ts?.dispose();
  });

  const clientFor = (url: string, tls?: ConstructorParameters<typeof TaxiiClient>[0]['tls']): TaxiiClient =>
    new TaxiiClient({ url: `${url}/taxii2/`, auth: new BasicAuth('alice', 'alice-pw'), pollIntervalMs: 20, ...(tls ? { tls } : {}) });

  it('serves TAXII over TLS to a client that trusts the CA: discovery, add (status polled to complete), read back', async () => {
    assert.match(https.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const c = clientFor(https.url, { ca: pki.caCert });
    try {
      const d = await c.discover();
      assert.equal(d.title, 'SETS test TAXII server');
      const o = indicator();
      const st = await c.addObjects(COL_MAIN, [o]);
      assert.equal(st.status, 'complete');
      const back = await c.getObject(COL_MAIN, String(o['id']));
      assert.deepEqual(back.objects, [o]);
    } finally {
      c.close();
    }
  });

  it('our client verifies the certificate by default: no CA, or another CA, or another name -> TLS error', async () => {
    for (const tls of [undefined, { ca: pki.otherCaCert }, { ca: pki.caCert, servername: 'taxii.example.org' }]) {
      const c = clientFor(https.url, tls);
      try {
        await tlsFailure(c.discover());
      } finally {
        c.close();
      }
    }
  });

  it('mutual TLS: with requestCert a client without a certificate is refused at the handshake, one with a CA-signed certificate gets in', async () => {
    const mtls = await listenTaxiiHttps({ cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, requestCert: true }, taxii);
    try {
      const anon = clientFor(mtls.url, { ca: pki.caCert });
      try {
        await tlsFailure(anon.discover());
      } finally {
        anon.close();
      }
      const withCert = clientFor(mtls.url, { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey });
      try {
        assert.equal((await withCert.discover()).title, 'SETS test TAXII server');
      } finally {
        withCert.close();
      }
    } finally {
      await mtls.close();
    }
  });

  it('bad certificate material is refused when the server is created, with a message that says so', () => {
    const refused = (fn: () => unknown, re: RegExp): void => {
      assert.throws(fn, (e: unknown) => e instanceof TaxiiServerConfigError && re.test(e.message));
    };
    refused(() => createTaxiiHttpsServer({ cert: pki.serverCert, key: pki.clientKey }, taxii), /certificate\/key rejected/);
    refused(() => createTaxiiHttpsServer({ cert: 'not a certificate', key: pki.serverKey }, taxii), /certificate\/key rejected/);
    refused(() => createTaxiiHttpsServer({ cert: '', key: pki.serverKey }, taxii), /needs a certificate/);
    refused(() => createTaxiiHttpsServer({ cert: pki.serverCert, key: pki.serverKey, requestCert: true }, taxii), /needs the CA/);
  });
});
