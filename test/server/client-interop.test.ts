/**
 * Our TAXII server driven by our TAXII client (lib/taxii/client.ts), with Basic credentials and
 * with OAuth2 client-credentials tokens from a real OAuth2 server (oidc-provider harness,
 * test/support/oidc.ts). A listener on the `object` event plays the SETS verifier and settles the
 * records, so the client's status polling sees `pending` turn `complete`.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { TaxiiClient } from '../../lib/taxii/client';
import { BasicAuth } from '../../lib/auth/client';
import { OAuth2ClientCredentials } from '../../lib/auth/oauth2';
import { createTaxiiServer, type TaxiiServer } from '../../lib/taxii/server';
import { startOidc, type OidcHandle } from '../support/oidc';
import { COL_MAIN, indicator, listen, testConfig, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

describe('TAXII server driven by the TAXII client', function () {
  let ts: TestStore;
  let run: Running;
  let server: TaxiiServer;
  let oidc: OidcHandle;

  before(async () => {
    ts = await makeStore();
    oidc = await startOidc({
      clients: [
        { clientId: 'producer', clientSecret: 'producer-secret', roles: ['writer', 'reader'] },
        { clientId: 'consumer', clientSecret: 'consumer-secret', roles: ['reader'] },
      ],
    });
    const cfg = await testConfig(ts.store, { maxPageSize: 7 });
    cfg.auth = { ...cfg.auth, oauth2: { jwksUrl: oidc.jwksUrl, issuer: oidc.issuer, audience: oidc.resource } };
    server = createTaxiiServer(cfg);
    // the SETS verifier of the flow, in miniature: settle each record shortly after it arrives
    server.on('object', (e) => {
      setTimeout(() => {
        const ok = !String(e.record.object['name']).includes('tampered');
        void server.markIntegrity(e.collection, e.record.id, e.record.version, ok ? 'finalized' : 'invalid', ok ? 'verified' : 'hash mismatch', e.statusId);
      }, 50);
    });
    run = await listen((req, res) => void server.handle(req, res));
  });
  after(async () => {
    await run.close();
    await oidc.stop();
    await ts.dispose();
  });

  it('discovers, lists collections, adds (polling pending -> complete), pages, reads versions/manifest and deletes (Basic)', async () => {
    const client = new TaxiiClient({ url: `${run.base}/taxii2/`, auth: new BasicAuth('alice', 'alice-pw'), pollIntervalMs: 50, pollTimeoutMs: 10_000 });
    try {
      const d = await client.discover();
      assert.equal(d.default, '/api1/');
      const cols = await client.collections();
      assert.ok(cols.some((c) => c.id === COL_MAIN && c.can_read && c.can_write));

      const objs = Array.from({ length: 17 }, () => indicator());
      objs.push(indicator(undefined, undefined, { name: 'tampered indicator' }));
      const st = await client.addObjects(COL_MAIN, objs);
      assert.equal(st.status, 'complete');
      assert.equal(st.total_count, 18);
      assert.equal(st.success_count, 17);
      assert.equal(st.failure_count, 1);
      assert.equal(st.failures?.[0].message, 'hash mismatch');

      // paging through the server's 7-record pages with next tokens; the invalid record is not served
      const seen: string[] = [];
      for await (const o of client.iterObjects(COL_MAIN)) seen.push(o.id);
      assert.equal(seen.length, 17);
      assert.deepEqual(new Set(seen), new Set(objs.slice(0, 17).map((o) => String(o['id']))));

      const man: string[] = [];
      for await (const m of client.iterManifest(COL_MAIN, { match: { type: 'indicator' } })) man.push(m.id);
      assert.equal(man.length, 17);

      const id = String(objs[0]['id']);
      await client.addObjects(COL_MAIN, [{ ...objs[0], modified: '2024-05-01T00:00:00.000Z' }]);
      const versions: string[] = [];
      for await (const v of client.iterVersions(COL_MAIN, id)) versions.push(v);
      assert.equal(versions.length, 2);
      const page = await client.getObject(COL_MAIN, id, { match: { version: 'all' } });
      assert.equal(page.objects.length, 2);
      assert.ok(page.dateAddedFirst);

      await client.deleteObject(COL_MAIN, id);
      await assert.rejects(() => client.getObject(COL_MAIN, id), (err: Error & { code?: string }) => err.code === 'HTTP_404');
    } finally {
      client.close();
    }
  });

  it('accepts OAuth2 client-credentials tokens from a real OAuth2 server; Keycloak-style realm roles decide', async () => {
    const producer = new TaxiiClient({
      apiRootUrl: `${run.base}/api1/`,
      auth: new OAuth2ClientCredentials({ tokenUrl: oidc.tokenUrl, clientId: 'producer', clientSecret: 'producer-secret', resource: oidc.resource }),
      pollIntervalMs: 50,
    });
    const consumer = new TaxiiClient({
      apiRootUrl: `${run.base}/api1/`,
      auth: new OAuth2ClientCredentials({ tokenUrl: oidc.tokenUrl, clientId: 'consumer', clientSecret: 'consumer-secret', resource: oidc.resource }),
    });
    try {
      const o = indicator(`indicator--${randomUUID()}`);
      const st = await producer.addObjects(COL_MAIN, [o]);
      assert.equal(st.success_count, 1);
      const got = await consumer.getObject(COL_MAIN, String(o['id']));
      assert.deepEqual(got.objects, [o]);
      const col = await consumer.collection(COL_MAIN);
      assert.equal(col.can_read, true);
      assert.equal(col.can_write, false);
      await assert.rejects(() => consumer.addObjects(COL_MAIN, [indicator()]), (err: Error & { code?: string }) => err.code === 'HTTP_403');
      assert.ok(oidc.stats.tokensIssued >= 2);
    } finally {
      producer.close();
      consumer.close();
    }
  });
});
