/**
 * OAuth2 client credentials against a real authorization server (oidc-provider, test/support/oidc.ts),
 * and its JWT access tokens accepted by the test TAXII server, which verifies them with jose
 * against the provider's JWKS (issuer, audience, Keycloak-style realm role).
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { OAuth2ClientCredentials, discoverTokenEndpoint, type OAuth2ClientCredentialsOptions } from '../../lib/auth/oauth2';
import { AuthError } from '../../lib/auth/client';
import { TaxiiClient } from '../../lib/taxii/client';
import { TaxiiError } from '../../lib/taxii/errors';
import { startOidc, type OidcHandle } from '../support/oidc';
import { DEFAULT_COLLECTIONS, startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';

const RW = DEFAULT_COLLECTIONS[0].id;

async function authFailure(p: Promise<unknown>, code: string): Promise<AuthError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof AuthError, `expected AuthError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected AuthError ${code}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('OAuth2 client credentials against oidc-provider', function () {
  this.timeout(20_000);
  let oidc: OidcHandle;
  let taxii: TestTaxiiServer;
  const secrets = { publisher: 'pub:sec ret/+%&=~', reader: 'reader-secret', post: 'post-secret' };

  before(async () => {
    oidc = await startOidc({
      accessTokenTtl: 5,
      clients: [
        { clientId: 'publisher-client', clientSecret: secrets.publisher, roles: ['publisher'] },
        { clientId: 'reader-client', clientSecret: secrets.reader, roles: ['consumer'], scopes: ['taxii:read'] },
        { clientId: 'post-client', clientSecret: secrets.post, roles: ['publisher'], authMethod: 'client_secret_post' },
      ],
    });
    taxii = await startTestTaxiiServer({ jwks: { jwksUrl: oidc.jwksUrl, issuer: oidc.issuer, audience: oidc.resource, requiredRole: 'publisher' } });
  });
  after(async () => {
    await taxii?.stop();
    await oidc?.stop();
  });
  afterEach(() => {
    taxii.setFault(null);
    oidc.setTokenEndpointDown(false);
  });

  function provider(extra: Partial<OAuth2ClientCredentialsOptions> = {}): OAuth2ClientCredentials {
    return new OAuth2ClientCredentials({ tokenUrl: oidc.tokenUrl, clientId: 'publisher-client', clientSecret: secrets.publisher, ...extra });
  }

  it('issues RS256 JWTs with issuer, audience, scope and realm roles (Keycloak layout)', async () => {
    assert.match(oidc.tokenUrl, /\/realms\/sets\/protocol\/openid-connect\/token$/);
    const token = await provider({ scope: 'taxii:read taxii:write' }).accessToken();
    const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(oidc.jwksUrl)), { issuer: oidc.issuer, audience: oidc.resource });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(protectedHeader.typ, 'at+jwt');
    assert.equal(payload['client_id'], 'publisher-client');
    assert.equal(payload['azp'], 'publisher-client');
    assert.equal(payload['scope'], 'taxii:read taxii:write');
    assert.deepEqual(payload['realm_access'], { roles: ['publisher'] });
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 5);
  });

  it('fetches one token for many TAXII calls; the TAXII server verifies it against the JWKS', async () => {
    const before = oidc.stats.tokenRequests;
    const c = new TaxiiClient({ apiRootUrl: taxii.apiRootUrl, auth: provider(), pollIntervalMs: 10 });
    try {
      taxii.clearRequests();
      await c.apiRoot();
      for (let i = 0; i < 5; i++) await c.collections();
      await c.addObjects(RW, [{ type: 'indicator', spec_version: '2.1', id: 'indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f', created: '2021-01-01T00:00:00.000Z', modified: '2021-01-01T00:00:00.000Z', pattern: "[url:value = 'http://x']", pattern_type: 'stix', valid_from: '2021-01-01T00:00:00Z' }]);
      const objs = await c.getObjects(RW);
      assert.equal(objs.objects.length, 1);
    } finally {
      c.close();
    }
    assert.equal(oidc.stats.tokenRequests - before, 1, 'one token request');
    assert.equal(taxii.state.requests.length, 8);
    for (const r of taxii.state.requests) assert.equal(r.principal, 'jwt:publisher-client');
    assert.equal(new Set(taxii.state.requests.map((r) => r.headers.authorization)).size, 1);
  });

  it('concurrent callers share one token request (single flight)', async () => {
    const before = oidc.stats.tokenRequests;
    const p = provider();
    const all = await Promise.all(Array.from({ length: 25 }, () => p.headers()));
    assert.equal(oidc.stats.tokenRequests - before, 1);
    assert.equal(new Set(all.map((h) => h['Authorization'])).size, 1);
    assert.match(all[0]['Authorization'], /^Bearer eyJ/);
    assert.equal(p.requestCount, 1);
  });

  it('refreshes the token before it expires', async () => {
    // lifetime 5 s; refresh when less than 4.7 s are left, i.e. 0.3 s after issue
    const p = provider({ refreshSkewMs: 4700, refreshSkewRatio: 0.94 });
    const t1 = await p.accessToken();
    assert.equal(await p.accessToken(), t1, 'cached while fresh');
    await sleep(400);
    const t2 = await p.accessToken();
    assert.notEqual(t2, t1);
    const exp1 = decodeJwt(t1).exp ?? 0;
    assert.ok(exp1 * 1000 > Date.now(), 'the old token had not expired yet when it was replaced');
    assert.equal(p.requestCount, 2);
  });

  it('a 401 from the TAXII server drops the token and retries once with a new one', async () => {
    const before = oidc.stats.tokenRequests;
    const c = new TaxiiClient({ apiRootUrl: taxii.apiRootUrl, auth: provider() });
    try {
      await c.collections();
      taxii.clearRequests();
      taxii.setFault({ status: 401, times: 1, title: 'Token revoked' });
      assert.equal((await c.collections()).length, 3);
      const seen = taxii.state.requests.map((r) => r.headers.authorization);
      assert.equal(seen.length, 2);
      assert.notEqual(seen[0], seen[1], 'retried with a fresh token');
      assert.equal(oidc.stats.tokenRequests - before, 2);
      // a server that keeps saying 401: exactly one retry, then the error
      taxii.clearRequests();
      taxii.setFault({ status: 401, title: 'Nope', description: 'always' });
      const e = await c.collections().then(() => undefined, (err: unknown) => err);
      assert.ok(e instanceof TaxiiError && e.code === 'HTTP_401', String(e));
      assert.match(e.message, /-> 401 Unauthorized: Nope: always/);
      assert.equal(taxii.state.requests.length, 2);
    } finally {
      c.close();
    }
  });

  it('a token for the wrong audience or without the role is refused by the TAXII server', async () => {
    const strict = await startTestTaxiiServer({ jwks: { jwksUrl: oidc.jwksUrl, issuer: oidc.issuer, audience: 'https://another.api/' } });
    const a = new TaxiiClient({ apiRootUrl: strict.apiRootUrl, auth: provider() });
    const b = new TaxiiClient({ apiRootUrl: taxii.apiRootUrl, auth: provider({ clientId: 'reader-client', clientSecret: secrets.reader }) });
    try {
      const e = await a.collections().then(() => undefined, (err: unknown) => err);
      assert.ok(e instanceof TaxiiError && e.code === 'HTTP_401', String(e));
      assert.match(e.message, /invalid token: unexpected "aud" claim value/);
      const f = await b.collections().then(() => undefined, (err: unknown) => err);
      assert.ok(f instanceof TaxiiError && f.code === 'HTTP_403', String(f));
      assert.match(f.message, /role publisher required/);
    } finally {
      a.close();
      b.close();
      await strict.stop();
    }
  });

  it('a bad secret fails with a clear error naming the token endpoint; nothing reaches the TAXII server', async () => {
    const p = provider({ clientSecret: 'wrong' });
    const e = await authFailure(p.headers(), 'OAUTH2_ERROR');
    assert.equal(e.message, `OAuth2 token request to ${oidc.tokenUrl} failed: 401 invalid_client: client authentication failed`);
    assert.equal(e.oauthError, 'invalid_client');
    assert.equal(e.httpStatus, 401);
    assert.equal(e.url, oidc.tokenUrl);
    const c = new TaxiiClient({ apiRootUrl: taxii.apiRootUrl, auth: p });
    try {
      taxii.clearRequests();
      await authFailure(c.collections(), 'OAUTH2_ERROR');
      assert.equal(taxii.state.requests.length, 0);
    } finally {
      c.close();
    }
  });

  it('client_secret_post, scopes and resource indicators', async () => {
    const post = new OAuth2ClientCredentials({ tokenUrl: oidc.tokenUrl, clientId: 'post-client', clientSecret: secrets.post, authMethod: 'client_secret_post', resource: oidc.resource });
    assert.equal(decodeJwt(await post.accessToken())['client_id'], 'post-client');
    const wrongPost = new OAuth2ClientCredentials({ tokenUrl: oidc.tokenUrl, clientId: 'post-client', clientSecret: 'bad', authMethod: 'client_secret_post' });
    assert.equal((await authFailure(wrongPost.headers(), 'OAUTH2_ERROR')).oauthError, 'invalid_client');
    const e = await authFailure(provider({ clientId: 'reader-client', clientSecret: secrets.reader, scope: ['taxii:write'] }).headers(), 'OAUTH2_ERROR');
    assert.equal(e.oauthError, 'invalid_scope');
    const r = await authFailure(provider({ resource: 'https://elsewhere.example/' }).headers(), 'OAUTH2_ERROR');
    assert.equal(r.oauthError, 'invalid_target');
  });

  it('token endpoint down: a clear error, or the still-valid cached token', async () => {
    oidc.setTokenEndpointDown(true);
    const e = await authFailure(provider().headers(), 'OAUTH2_HTTP');
    assert.equal(e.message, `OAuth2 token request to ${oidc.tokenUrl} failed: HTTP 503: 503 Service Unavailable`);
    oidc.setTokenEndpointDown(false);
    const p = provider({ refreshSkewMs: 4900, refreshSkewRatio: 0.98 });
    const t1 = await p.accessToken();
    await sleep(200); // refresh due, token still valid for ~4.8 s
    oidc.setTokenEndpointDown(true);
    assert.equal(await p.accessToken(), t1);
    assert.equal(p.requestCount, 2, 'a refresh was attempted');
    assert.equal(await p.accessToken(), t1);
    assert.equal(p.requestCount, 2, 'no new attempt right after a failure');
    p.close();
  });

  it('finds the token endpoint by OpenID discovery from the realm URL', async () => {
    assert.equal(await discoverTokenEndpoint(oidc.issuer), oidc.tokenUrl);
    const e = await authFailure(discoverTokenEndpoint(oidc.issuer.replace(/sets$/, 'nope')), 'OAUTH2_HTTP');
    assert.match(e.message, /^OpenID discovery http:\/\/127\.0\.0\.1:\d+\/realms\/nope\/\.well-known\/openid-configuration failed: HTTP 404/);
  });

  it('a token endpoint that does not answer times out', async function () {
    this.timeout(5000);
    const hang = http.createServer(() => undefined);
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}/realms/x/protocol/openid-connect/token`;
    try {
      const e = await authFailure(new OAuth2ClientCredentials({ tokenUrl: url, clientId: 'c', clientSecret: 's', timeoutMs: 300 }).headers(), 'TIMEOUT');
      assert.match(e.message, new RegExp(`^OAuth2 token request to ${url} failed: timeout`));
    } finally {
      hang.closeAllConnections();
      await new Promise<void>((r) => hang.close(() => r()));
    }
  });
});
