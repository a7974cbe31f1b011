/**
 * JWT configuration hardening (issue 11, item 4, JWT part): the audience is required unless turned
 * off explicitly, and the JWKS is fetched over https except from loopback. Tokens come from a real
 * oidc-provider (test/support/oidc.ts) on 127.0.0.1 (loopback: plain http allowed).
 */
import { strict as assert } from 'node:assert';
import { BearerError, JwtVerifier, isLoopbackHost } from '../../lib/auth/server-jwt';
import { OAuth2ClientCredentials } from '../../lib/auth/oauth2';
import { OpsError } from '../../lib/ops/errors';
import { checkServerSettings, parseServerSettings, type ServerSettings } from '../../lib/ops/server-config';
import { createTaxiiServer } from '../../lib/taxii/server';
import { startOidc, type OidcHandle } from '../support/oidc';
import { COL_MAIN, listen, obj, request, testConfig, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

function badConfig(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BearerError || err instanceof OpsError, String(err));
    assert.equal((err as { code: string }).code, 'BAD_CONFIG');
    assert.match((err as Error).message, re);
    return true;
  });
}

describe('TAXII server: strict JWT configuration (audience, https JWKS)', function () {
  this.timeout(60_000);
  let oidc: OidcHandle;
  let ts: TestStore;
  const servers: Running[] = [];

  before(async () => {
    oidc = await startOidc({ clients: [{ clientId: 'reader-client', clientSecret: 'reader-secret', roles: ['reader'] }] });
    ts = await makeStore();
  });
  after(async () => {
    for (const s of servers) await s.close();
    await ts?.dispose();
    await oidc?.stop();
  });

  async function serve(oauth2: { audience?: string; requireAudience?: boolean }): Promise<string> {
    const cfg = await testConfig(ts.store);
    cfg.auth = { oauth2: { jwksUrl: oidc.jwksUrl, issuer: oidc.issuer, clients: ['reader-client'], ...oauth2 } };
    const server = createTaxiiServer(cfg);
    const run = await listen((req, res) => void server.handle(req, res));
    servers.push(run);
    return run.base;
  }

  const token = (): Promise<string> =>
    new OAuth2ClientCredentials({ tokenUrl: oidc.tokenUrl, clientId: 'reader-client', clientSecret: 'reader-secret' }).accessToken();

  it('refuses a verifier without an audience, naming the option and the explicit opt-out', async () => {
    for (const audience of [undefined, '', [], ['  ']]) {
      badConfig(() => new JwtVerifier({ jwksUrl: oidc.jwksUrl, issuer: oidc.issuer, ...(audience !== undefined ? { audience } : {}) }), /"audience".*"requireAudience"/s);
    }
    await assert.rejects(
      (async () => {
        const cfg = await testConfig(ts.store);
        cfg.auth = { oauth2: { jwksUrl: oidc.jwksUrl, issuer: oidc.issuer } };
        createTaxiiServer(cfg);
      })(),
      /audience/,
    );
  });

  it('the oidc-provider token is accepted with the right audience and refused with another', async () => {
    const t = await token();
    const good = await serve({ audience: oidc.resource });
    const r = await request(good, 'GET', `/api1/collections/${COL_MAIN}/`, { auth: `Bearer ${t}` });
    assert.equal(r.status, 200, r.text);
    const other = await serve({ audience: 'https://another-service.example/' });
    const r2 = await request(other, 'GET', `/api1/collections/${COL_MAIN}/`, { auth: `Bearer ${t}` });
    assert.equal(r2.status, 401);
    assert.match(String(obj(r2.json)['description']), /"aud" claim/);
  });

  it('requireAudience: false (explicit) accepts the issuer\'s tokens for any audience', async () => {
    const t = await token();
    const any = await serve({ requireAudience: false });
    const r = await request(any, 'GET', `/api1/collections/${COL_MAIN}/`, { auth: `Bearer ${t}` });
    assert.equal(r.status, 200, r.text);
  });

  it('fetches the JWKS over https only, plain http only from loopback', () => {
    const ok = (jwksUrl: string): JwtVerifier => new JwtVerifier({ jwksUrl, issuer: oidc.issuer, audience: 'x' });
    for (const u of [
      'https://idp.example.org/certs',
      'http://127.0.0.1:8080/certs',
      'http://127.9.8.7/certs',
      'http://localhost:8080/certs',
      'http://[::1]:8080/certs',
      oidc.jwksUrl,
    ]) {
      assert.ok(ok(u) instanceof JwtVerifier, u);
    }
    for (const u of ['http://idp.example.org/certs', 'http://10.0.0.5/certs', 'http://128.0.0.1/certs', 'http://127.0.0.1.evil.example/certs', 'http://[::2]/certs']) {
      badConfig(() => ok(u), /"jwksUrl".*https/);
    }
    assert.equal(isLoopbackHost('LOCALHOST'), true);
    assert.equal(isLoopbackHost('[0:0:0:0:0:0:0:1]'), true);
    assert.equal(isLoopbackHost('localhost.example.org'), false);
  });

  it('the node / n8n settings: audience required unless "Accept any audience", https JWKS', () => {
    const raw = { title: 't', apiRoot: 'api1', oauth2: true, issuer: 'https://kc/realms/cti' };
    badConfig(() => parseServerSettings({ ...raw, jwksUrl: 'https://kc/certs' }), /audience.*anyAudience/);
    assert.equal(parseServerSettings({ ...raw, jwksUrl: 'https://kc/certs', audience: 'taxii' }).oauth2?.audience, 'taxii');
    assert.equal(parseServerSettings({ ...raw, jwksUrl: 'https://kc/certs', anyAudience: true }).oauth2?.anyAudience, true);
    badConfig(() => parseServerSettings({ ...raw, jwksUrl: 'http://kc/certs', audience: 'taxii' }), /https/);
    assert.ok(parseServerSettings({ ...raw, jwksUrl: 'http://127.0.0.1:9/certs', audience: 'taxii' }).oauth2);
    const s: ServerSettings = { title: 't', apiRoot: 'api1', collections: [], oauth2: { issuer: 'i', jwksUrl: 'http://[::1]/certs', audience: 'a' } };
    checkServerSettings(s);
  });
});
