/**
 * Trust (paper §3 criterion 3, §4.2): the taxii-server node authenticates organisations with
 * OAuth2 bearer tokens issued by a real OAuth2 server (oidc-provider, Keycloak URL layout and
 * roles; test/support/oidc.ts) — the same client-credentials tokens the client nodes fetch — and
 * with HTTP Basic users kept in credentials; roles map to read/write per collection.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SignJWT, UnsecuredJWT, decodeProtectedHeader, generateKeyPair } from 'jose';
import { startOidc, type OidcHandle } from '../support/oidc';
import { OAuth2ClientCredentials } from '../../lib/auth/oauth2';
import { Collector, OpenHandles, deployedFlows, helper, logText, nodeRedVersion, placed, until, type FlowNode } from './helper';
import { TAXII, baseUrl, basic, bridgeHttpNode, mountedServers, raw, runtimeSettings, serverNodes } from './server-harness';
import { collectionId, indicator } from './stix';

const PRODUCER = { clientId: 'org-a-producer', clientSecret: 'producer-secret-7731', roles: ['publisher'] };
const API_KEY = 'k3y-for-the-misp-feed-0123456789';
const CONSUMER = { clientId: 'org-b-consumer', clientSecret: 'consumer-secret-1187', roles: ['consumer'] };

describe(`taxii-server authentication on Node-RED ${nodeRedVersion}`, function () {
  let oidc: OidcHandle;
  let shortLived: OidcHandle;
  let userDir: string;
  const COLL = collectionId();
  const OPEN_COLL = collectionId();
  const providers: OAuth2ClientCredentials[] = [];

  before(async function () {
    this.timeout(60_000);
    [oidc, shortLived] = await Promise.all([
      startOidc({ clients: [PRODUCER, CONSUMER] }),
      startOidc({ clients: [PRODUCER], accessTokenTtl: 4 }),
    ]);
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-h8-auth-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });

  after(async () => {
    for (const p of providers) p.close();
    await helper.stopServer();
    await oidc?.stop();
    await shortLived?.stop();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await helper.unload();
  });

  function flow(server: Partial<FlowNode> = {}, issuer: OidcHandle = oidc): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'auth' },
      { id: 'store', type: 'sets-store', name: 'auth', kind: 'embedded' },
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: 'store',
        basePath: '/cti',
        title: 'SETS auth test',
        apiRoot: 'org',
        collections: [
          { id: COLL, title: 'members', canRead: ['consumer', 'publisher'], canWrite: ['publisher'], integrity: 'required' },
          { id: OPEN_COLL, title: 'public', canRead: ['anonymous', '*'], canWrite: [], integrity: 'required' },
        ],
        anonymousRead: true,
        oauth2: true,
        issuer: issuer.issuer,
        jwksUrl: issuer.jwksUrl,
        audience: issuer.resource,
        clockTolerance: 0,
        wires: [['admitted'], []],
        ...server,
      },
      { id: 'admitted', type: 'helper', z: 'tab' },
    ].map(placed);
  }
  // a fresh object each time: the runtime keeps the object it is given and deletes removed nodes' entries from it
  const creds = (): Record<string, Record<string, string>> => ({
    srv: { users: 'analyst:analyst-pw-55:consumer\npublisher-bot:bot-pw-66:publisher', apiKeys: `misp-feed:${API_KEY}:consumer` },
  });

  async function token(issuer: OidcHandle, client: { clientId: string; clientSecret: string }): Promise<string> {
    const p = new OAuth2ClientCredentials({ tokenUrl: issuer.tokenUrl, clientId: client.clientId, clientSecret: client.clientSecret, timeoutMs: 10_000 });
    providers.push(p);
    const h = await p.headers();
    return h['Authorization'].replace(/^Bearer /, '');
  }
  const bearer = (t: string): Record<string, string> => ({ Authorization: `Bearer ${t}`, Accept: TAXII });
  const url = (rel: string): string => `${baseUrl()}/cti/org/${rel}`;

  async function post(headers: Record<string, string>, coll = COLL): Promise<{ status: number; json: unknown; headers: Headers }> {
    return raw('POST', url(`collections/${coll}/objects/`), {
      headers: { ...headers, 'Content-Type': TAXII },
      body: JSON.stringify({ objects: [indicator()] }),
    });
  }

  async function expect401(t: string, why: RegExp): Promise<void> {
    const r = await raw('GET', url(`collections/${COLL}/`), { headers: bearer(t) });
    assert.equal(r.status, 401, `expected 401 for a token that is ${why.source}`);
    assert.equal(r.headers.get('content-type'), TAXII);
    assert.match(String(r.headers.get('www-authenticate')), /Bearer realm="TAXII", error="invalid_token"/);
    assert.match(String((r.json as { description?: string }).description), why);
  }

  it('a producer token from the OAuth2 server writes; roles decide can_read / can_write; a consumer token gets 403 on POST', async () => {
    await helper.load(serverNodes, flow(), creds());
    const admitted = new Collector(helper.getNode('admitted'));
    const producerToken = await token(oidc, PRODUCER);
    const consumerToken = await token(oidc, CONSUMER);
    const asProducer = await raw('GET', url(`collections/${COLL}/`), { headers: bearer(producerToken) });
    assert.equal(asProducer.status, 200, JSON.stringify(asProducer.json));
    assert.deepEqual([(asProducer.json as { can_read: boolean }).can_read, (asProducer.json as { can_write: boolean }).can_write], [true, true]);
    const asConsumer = await raw('GET', url(`collections/${COLL}/`), { headers: bearer(consumerToken) });
    assert.deepEqual([(asConsumer.json as { can_read: boolean }).can_read, (asConsumer.json as { can_write: boolean }).can_write], [true, false]);

    const ok = await post(bearer(producerToken));
    assert.equal(ok.status, 202);
    await admitted.wait(1);
    const denied = await post(bearer(consumerToken));
    assert.equal(denied.status, 403);
    assert.equal(denied.headers.get('content-type'), TAXII);
    assert.match(String((denied.json as { description?: string }).description), /org-b-consumer may not write to collection .* publisher/);
    assert.equal(admitted.messages.length, 1, 'nothing admitted from the refused POST');
  });

  it('forged (signed by another key), unsigned (alg none) and expired tokens -> 401', async () => {
    await helper.load(serverNodes, flow(), creds());
    const real = await token(oidc, PRODUCER);
    const { kid } = decodeProtectedHeader(real);
    const claims = JSON.parse(Buffer.from(real.split('.')[1], 'base64url').toString('utf8')) as Record<string, unknown>;
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT({ ...claims, realm_access: { roles: ['publisher', 'admin'] } })
      .setProtectedHeader({ alg: 'RS256', kid: kid ?? 'x', typ: 'at+jwt' })
      .sign(privateKey);
    await expect401(forged, /not valid|signature/);
    const unsigned = new UnsecuredJWT({ ...claims }).encode();
    await expect401(unsigned, /not valid|algorithm/);
    // tampered payload under the real signature
    const [h, , s] = real.split('.');
    const elevated = `${h}.${Buffer.from(JSON.stringify({ ...claims, realm_access: { roles: ['admin'] } })).toString('base64url')}.${s}`;
    await expect401(elevated, /not valid|signature/);
    await helper.unload();

    // a real token of a 4-second lifetime (room for a loaded machine between issue and first use), used after it expired (no clock tolerance configured)
    await helper.load(serverNodes, flow({}, shortLived), creds());
    const brief = await token(shortLived, PRODUCER);
    const fresh = await raw('GET', url(`collections/${COLL}/`), { headers: bearer(brief) });
    assert.equal(fresh.status, 200, 'valid while fresh');
    const exp = Number(JSON.parse(Buffer.from(brief.split('.')[1], 'base64url').toString('utf8')).exp);
    await until('token expired', () => Date.now() / 1000 > exp + 1.1, 10_000);
    await expect401(brief, /expired/);
  });

  it('a token for another audience -> 401', async () => {
    await helper.load(serverNodes, flow({ audience: 'https://some-other-taxii.example/' }), creds());
    await expect401(await token(oidc, PRODUCER), /"aud" claim/);
  });

  it('Basic users from the credential list: right password works, wrong one 401, missing role 403; secrets stay out of flow and log', async () => {
    await helper.load(serverNodes, flow(), creds());
    assert.equal((await raw('GET', url(`collections/${COLL}/objects/`), { headers: basic('analyst', 'analyst-pw-55') })).status, 200);
    const wrong = await raw('GET', url(`collections/${COLL}/objects/`), { headers: basic('analyst', 'not-the-password') });
    assert.equal(wrong.status, 401);
    assert.match(String(wrong.headers.get('www-authenticate')), /Basic realm=/);
    assert.equal((await post(basic('analyst', 'analyst-pw-55'))).status, 403);
    assert.equal((await post(basic('publisher-bot', 'bot-pw-66'))).status, 202);
    const flows = JSON.stringify(deployedFlows());
    for (const secret of ['analyst-pw-55', 'bot-pw-66']) {
      assert.ok(!flows.includes(secret), 'no password in the flow');
      assert.ok(!logText().includes(secret), 'no password in the log');
    }
  });

  it('anonymous read: only collections listing the anonymous role, never writing; without it every request needs credentials', async () => {
    await helper.load(serverNodes, flow(), creds());
    assert.equal((await raw('GET', `${baseUrl()}/cti/taxii2/`, { headers: { Accept: TAXII } })).status, 200);
    assert.equal((await raw('GET', url(`collections/${OPEN_COLL}/objects/`), { headers: { Accept: TAXII } })).status, 200);
    const closed = await raw('GET', url(`collections/${COLL}/objects/`), { headers: { Accept: TAXII } });
    assert.equal(closed.status, 401);
    const write = await post({ Accept: TAXII }, OPEN_COLL);
    assert.equal(write.status, 401);
    await helper.unload();

    await helper.load(serverNodes, flow({ anonymousRead: false }), creds());
    const d = await raw('GET', `${baseUrl()}/cti/taxii2/`, { headers: { Accept: TAXII } });
    assert.equal(d.status, 401);
    assert.match(String(d.headers.get('www-authenticate')), /Basic realm="TAXII".*|Bearer realm="TAXII"/);
  });

  it('settings that cannot work: a clear error naming the problem, nothing mounted', async () => {
    await helper.load(serverNodes, flow({ oauth2: false, anonymousRead: false }), {});
    await until('error logged', () => logText().includes('no way to authenticate'));
    assert.deepEqual(mountedServers(), []);
    await helper.unload();
    await helper.load(serverNodes, flow({ apiRoot: 'taxii2' }), creds());
    await until('error logged', () => logText().includes('API root cannot be named taxii2'));
    assert.deepEqual(mountedServers(), []);
    await helper.unload();
    await helper.load(serverNodes, flow({}), { srv: { users: 'no-password-line' } });
    await until('error logged', () => logText().includes('user list line 1: expected user:password:role1,role2'));
    assert.deepEqual(mountedServers(), []);
  });
  it('API keys from the credential list: as a Basic password with any user name, as Token and as Bearer', async () => {
    await helper.load(serverNodes, flow(), creds());
    const target = url(`collections/${COLL}/objects/`);
    assert.equal((await raw('GET', target, { headers: basic('whatever', API_KEY) })).status, 200);
    assert.equal((await raw('GET', target, { headers: { Authorization: `Token ${API_KEY}`, Accept: TAXII } })).status, 200);
    assert.equal((await raw('GET', target, { headers: bearer(API_KEY) })).status, 200);
    assert.equal((await post(bearer(API_KEY))).status, 403, 'the key holds the consumer role only');
    assert.equal((await raw('GET', target, { headers: { Authorization: `Token ${API_KEY}x`, Accept: TAXII } })).status, 401);
    assert.ok(!JSON.stringify(deployedFlows()).includes(API_KEY));
    assert.ok(!logText().includes(API_KEY));
    assert.equal(helper.credentials.getDefinition('taxii-server')?.apiKeys?.type, 'password');
  });

  it('leaves no open handles after unload (server, store, badges, JWKS client)', async () => {
    const handles = new OpenHandles().start();
    await helper.load(serverNodes, flow(), creds());
    const t = await token(oidc, PRODUCER);
    assert.equal((await post(bearer(t))).status, 202);
    assert.equal((await raw('GET', url(`collections/${COLL}/objects/`), { headers: basic('analyst', 'analyst-pw-55') })).status, 200);
    providers.splice(0).forEach((p) => p.close());
    await helper.unload();
    await handles.expectNone();
  });
});
