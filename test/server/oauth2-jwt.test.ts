/**
 * OAuth2 bearer tokens on the TAXII server: JWTs signed in the test with jose, keys served from a
 * real JWKS endpoint over HTTP. Valid tokens with Keycloak-style roles are accepted; expired,
 * wrong audience/issuer, alg none and HS256-signed-with-the-public-key tokens are refused.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import { SignJWT, UnsecuredJWT, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { createTaxiiServer, type TaxiiServer } from '../../lib/taxii/server';
import { JwtVerifier } from '../../lib/auth/server-jwt';
import { AUTH, COL_MAIN, TAXII, indicator, listen, obj, post, request, testConfig, type Reply, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

const ISSUER = 'https://idp.example.org/realms/sets';
const AUDIENCE = 'taxii-server';

describe('TAXII server: OAuth2 bearer JWTs', function () {
  let ts: TestStore;
  let jwks: Running;
  let run: Running;
  let base: string;
  let rsa: { privateKey: CryptoKey; publicKey: CryptoKey };
  let ec: { privateKey: CryptoKey; publicKey: CryptoKey };
  let other: { privateKey: CryptoKey; publicKey: CryptoKey };
  let jwksHits = 0;
  const hanging: http.ServerResponse[] = [];

  async function token(
    claims: Record<string, unknown>,
    opts: { key?: CryptoKey; alg?: string; kid?: string; iss?: string; aud?: string; exp?: number | string } = {},
  ): Promise<string> {
    let jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: opts.kid ?? 'rsa-1' })
      .setIssuedAt()
      .setIssuer(opts.iss ?? ISSUER)
      .setAudience(opts.aud ?? AUDIENCE);
    jwt = jwt.setExpirationTime(opts.exp ?? '5m');
    return jwt.sign(opts.key ?? rsa.privateKey);
  }

  const asBearer = (t: string): string => `Bearer ${t}`;
  const readMain = (auth: string): Promise<Reply> => request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/`, { auth });

  before(async () => {
    ts = await makeStore();
    rsa = await generateKeyPair('RS256', { extractable: true });
    ec = await generateKeyPair('ES256', { extractable: true });
    other = await generateKeyPair('RS256', { extractable: true });
    const keys: JWK[] = [
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ];
    jwks = await listen((req, res) => {
      if (req.url === '/hang') {
        hanging.push(res);
        return;
      }
      jwksHits++;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ keys }));
    });
    const cfg = await testConfig(ts.store);
    cfg.auth = {
      ...cfg.auth,
      anonymousRead: false,
      oauth2: { jwksUrl: `${jwks.base}/certs`, issuer: ISSUER, audience: AUDIENCE, timeoutMs: 2000 },
    };
    const server = createTaxiiServer(cfg);
    run = await listen((req, res) => void server.handle(req, res));
    base = run.base;
  });
  after(async () => {
    for (const r of hanging) r.destroy();
    await run.close();
    await jwks.close();
    await ts.dispose();
  });

  it('accepts a valid RS256 token; realm roles grant read, not write', async () => {
    const t = await token({ preferred_username: 'reader-svc', realm_access: { roles: ['reader'] } });
    const r = await readMain(asBearer(t));
    assert.equal(r.status, 200, r.text);
    const w = await post(base, COL_MAIN, [indicator()], asBearer(t));
    assert.equal(w.status, 403);
    assert.match(String(obj(w.json)['description']), /reader-svc may not write/);
    const cols = obj((await request(base, 'GET', `/api1/collections/${COL_MAIN}/`, { auth: asBearer(t) })).json);
    assert.equal(cols['can_read'], true);
    assert.equal(cols['can_write'], false);
    assert.ok(jwksHits >= 1);
  });

  it('client roles (resource_access.<audience>.roles) grant write; ES256 tokens are accepted', async () => {
    const t = await token({ azp: 'producer', resource_access: { [AUDIENCE]: { roles: ['writer'] }, other: { roles: ['admin'] } } }, { key: ec.privateKey, alg: 'ES256', kid: 'ec-1' });
    const w = await post(base, COL_MAIN, [indicator()], asBearer(t));
    assert.equal(w.status, 202, w.text);
    // roles of other clients do not count
    const t2 = await token({ resource_access: { other: { roles: ['writer'] } } });
    assert.equal((await post(base, COL_MAIN, [indicator()], asBearer(t2))).status, 403);
  });

  it('keeps the JWKS cached (no fetch per request)', async () => {
    const t = await token({ realm_access: { roles: ['reader'] } });
    const before = jwksHits;
    for (let i = 0; i < 5; i++) assert.equal((await readMain(asBearer(t))).status, 200);
    assert.equal(jwksHits, before);
  });

  async function refused(t: string, re: RegExp): Promise<void> {
    const r = await readMain(asBearer(t));
    assert.equal(r.status, 401, r.text);
    assert.equal(r.headers['content-type'], TAXII);
    assert.match(String(obj(r.json)['description']), re);
    const challenges = String(r.headers['www-authenticate']);
    assert.match(challenges, /Basic realm="SETS test"/);
    assert.match(challenges, /Bearer realm="SETS test", error="invalid_token"/);
  }

  it('refuses an expired token', async () => {
    await refused(await token({ realm_access: { roles: ['reader'] } }, { exp: Math.floor(Date.now() / 1000) - 3600 }), /expired/);
  });

  it('refuses a token without exp', async () => {
    const t = await new SignJWT({ realm_access: { roles: ['reader'] } })
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .sign(rsa.privateKey);
    await refused(t, /"exp" claim/);
  });

  it('refuses a token for another audience', async () => {
    await refused(await token({ realm_access: { roles: ['reader'] } }, { aud: 'someone-else' }), /"aud" claim/);
  });

  it('refuses a token from another issuer', async () => {
    await refused(await token({ realm_access: { roles: ['reader'] } }, { iss: 'https://evil.example.org' }), /"iss" claim/);
  });

  it('refuses an unsigned token (alg none)', async () => {
    const t = new UnsecuredJWT({ realm_access: { roles: ['reader'] } }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').encode();
    await refused(t, /not valid|not allowed/);
  });

  it('refuses an HS256 token whose HMAC key is the public key (algorithm confusion)', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const t = await new SignJWT({ realm_access: { roles: ['reader', 'writer'] } })
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(pem));
    await refused(t, /algorithm is not allowed/);
  });

  it('refuses a token signed by a key not in the JWKS, and garbage', async () => {
    await refused(await token({ realm_access: { roles: ['reader'] } }, { key: other.privateKey, kid: 'rsa-1' }), /not valid/);
    await refused(await token({ realm_access: { roles: ['reader'] } }, { key: other.privateKey, kid: 'unknown-kid' }), /no key/);
    await refused('abc.def.ghi', /not valid/);
  });

  it('still accepts Basic credentials next to bearer tokens; requires credentials for discovery', async () => {
    assert.equal((await request(base, 'GET', '/taxii2/', { auth: AUTH.bob })).status, 200);
    const anon = await request(base, 'GET', '/taxii2/');
    assert.equal(anon.status, 401);
    const challenges = anon.headers['www-authenticate'];
    assert.ok(Array.isArray(challenges) ? challenges.length === 2 : /Bearer/.test(String(challenges)));
  });

  it('answers 503 (not 401) when the JWKS cannot be fetched, and when it does not answer in time', async () => {
    const t = await token({ realm_access: { roles: ['reader'] } });
    for (const [jwksUrl, re] of [
      ['http://127.0.0.1:1/certs', /could not be used/],
      [`${jwks.base}/hang`, /did not answer in time/],
    ] as const) {
      const cfg = await testConfig(ts.store);
      cfg.auth = { oauth2: { jwksUrl, issuer: ISSUER, audience: AUDIENCE, timeoutMs: 300 } };
      const s: TaxiiServer = createTaxiiServer(cfg);
      const r2 = await listen((req, res) => void s.handle(req, res));
      try {
        const r = await request(r2.base, 'GET', '/taxii2/', { auth: asBearer(t) });
        assert.equal(r.status, 503, r.text);
        assert.match(String(obj(r.json)['description']), re);
      } finally {
        await r2.close();
      }
    }
  });

  it('refuses configurations that would allow symmetric or no algorithms', () => {
    for (const algorithms of [['HS256'], ['none'], ['RS256', 'HS512'], []]) {
      assert.throws(() => new JwtVerifier({ jwksUrl: 'http://127.0.0.1/certs', issuer: ISSUER, algorithms }), /must be asymmetric/);
    }
    assert.throws(() => new JwtVerifier({ jwksUrl: 'http://127.0.0.1/certs', issuer: '' }), /issuer/);
    assert.throws(() => new JwtVerifier({ issuer: ISSUER }), /jwksUrl or jwks/);
  });
});
