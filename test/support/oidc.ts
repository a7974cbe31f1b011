/**
 * A real OAuth 2.0 authorization server for tests: `oidc-provider` 9 (a certified OpenID
 * Provider) issuing client-credentials access tokens as RS256 JWTs (RFC 9068, `typ: at+jwt`),
 * on 127.0.0.1 and a free port, with Keycloak's URL layout:
 *
 *   issuer  http://127.0.0.1:<port>/realms/<realm>
 *   token   {issuer}/protocol/openid-connect/token
 *   JWKS    {issuer}/protocol/openid-connect/certs
 *
 * Tokens carry `aud` = the configured resource (RFC 8707 resource indicators; used as default when
 * the client sends none), `scope`, `client_id`, `azp`, and Keycloak-style roles in
 * `realm_access.roles` (per client, via `extraTokenClaims`). The signing key is generated at start.
 *
 * oidc-provider is ESM-only. With `module: commonjs` TypeScript rewrites `import()` into
 * `require()`, so the import goes through `new Function('s', 'return import(s)')`, which the
 * compiler leaves alone, with the package's resolved file URL (a Function body has no module
 * of its own to resolve bare specifiers against).
 */
import * as http from 'node:http';
import * as crypto from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import { pathToFileURL } from 'node:url';

export interface OidcClientSpec {
  clientId: string;
  clientSecret: string;
  /** scopes this client may request (default: all of the server's scopes) */
  scopes?: string[];
  /** Keycloak-style realm roles put into `realm_access.roles` */
  roles?: string[];
  /** default client_secret_basic */
  authMethod?: 'client_secret_basic' | 'client_secret_post';
}

export interface OidcOptions {
  /** realm name in the URLs (default `sets`) */
  realm?: string;
  /** access token lifetime in seconds (default 300) */
  accessTokenTtl?: number;
  /** resource indicator / audience of the tokens (default `https://taxii.sets.test/`) */
  resource?: string;
  /** scopes the server knows (default taxii:read taxii:write) */
  scopes?: string[];
  /** default: one client `sets-client` (secret random) with roles publisher, consumer */
  clients?: OidcClientSpec[];
}

export interface OidcHandle {
  issuer: string;
  tokenUrl: string;
  jwksUrl: string;
  /** audience of the tokens */
  resource: string;
  clients: OidcClientSpec[];
  /** POST requests seen on the token endpoint / answered 200 */
  stats: { tokenRequests: number; tokensIssued: number };
  /** make the token endpoint answer 503 (HTML) while true */
  setTokenEndpointDown(down: boolean): void;
  stop(): Promise<void>;
}

// ---- the minimal slice of oidc-provider's API used here ------------------------------------------

interface ProviderInstance {
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
}
interface ProviderModule {
  default: new (issuer: string, config: Record<string, unknown>) => ProviderInstance;
  errors: { InvalidTarget: new (description?: string) => Error };
}
interface TokenLike {
  clientId?: string;
}

const importEsm = new Function('s', 'return import(s)') as (specifier: string) => Promise<unknown>;

let modP: Promise<ProviderModule> | undefined;
function loadOidcProvider(): Promise<ProviderModule> {
  modP ??= importEsm(pathToFileURL(require.resolve('oidc-provider')).href) as Promise<ProviderModule>;
  return modP;
}

/** In-memory storage adapter (the provider's own one prints a warning on every start). */
class MemoryAdapter {
  private static stores = new Map<string, Map<string, { payload: Record<string, unknown>; exp?: number }>>();
  private readonly store: Map<string, { payload: Record<string, unknown>; exp?: number }>;
  constructor(name: string) {
    let s = MemoryAdapter.stores.get(name);
    if (!s) {
      s = new Map();
      MemoryAdapter.stores.set(name, s);
    }
    this.store = s;
  }
  async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
    this.store.set(id, { payload, ...(expiresIn ? { exp: Date.now() + expiresIn * 1000 } : {}) });
  }
  async find(id: string): Promise<Record<string, unknown> | undefined> {
    const e = this.store.get(id);
    if (!e) return undefined;
    if (e.exp !== undefined && e.exp < Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return e.payload;
  }
  async findByUserCode(code: string): Promise<Record<string, unknown> | undefined> {
    for (const [id, e] of this.store) if (e.payload['userCode'] === code) return this.find(id);
    return undefined;
  }
  async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
    for (const [id, e] of this.store) if (e.payload['uid'] === uid) return this.find(id);
    return undefined;
  }
  async consume(id: string): Promise<void> {
    const e = this.store.get(id);
    if (e) e.payload['consumed'] = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string): Promise<void> {
    this.store.delete(id);
  }
  async revokeByGrantId(grantId: string): Promise<void> {
    for (const [id, e] of this.store) if (e.payload['grantId'] === grantId) this.store.delete(id);
  }
}

export async function startOidc(opts: OidcOptions = {}): Promise<OidcHandle> {
  const mod = await loadOidcProvider();
  const realm = opts.realm ?? 'sets';
  const ttl = opts.accessTokenTtl ?? 300;
  const resource = opts.resource ?? 'https://taxii.sets.test/';
  const scopes = opts.scopes ?? ['taxii:read', 'taxii:write'];
  const clients: OidcClientSpec[] = opts.clients ?? [
    { clientId: 'sets-client', clientSecret: crypto.randomBytes(18).toString('base64url'), roles: ['publisher', 'consumer'] },
  ];

  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

  // listen first: the issuer URL needs the port
  const app: { handler?: (req: http.IncomingMessage, res: http.ServerResponse) => void } = {};
  const stats = { tokenRequests: 0, tokensIssued: 0 };
  let down = false;
  const mount = `/realms/${realm}`;
  const tokenPath = '/protocol/openid-connect/token';
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const handler = app.handler;
    if (!url.startsWith(mount + '/') || !handler) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    const inner = url.slice(mount.length);
    if (req.method === 'POST' && inner.split('?')[0] === tokenPath) {
      stats.tokenRequests++;
      if (down) {
        res.writeHead(503, { 'Content-Type': 'text/html' });
        res.end('<html><body><h1>503 Service Unavailable</h1></body></html>');
        return;
      }
      res.on('finish', () => {
        if (res.statusCode === 200) stats.tokensIssued++;
      });
    }
    // mount the provider under the issuer's path, as a framework's mount() would
    (req as http.IncomingMessage & { originalUrl?: string }).originalUrl = url;
    req.url = inner;
    handler(req, res);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}${mount}`;

  const rolesOf = new Map(clients.map((c) => [c.clientId, c.roles ?? []]));
  const adapterName = `oidc-${port}-${crypto.randomBytes(4).toString('hex')}`;
  const provider = new mod.default(issuer, {
    adapter: class extends MemoryAdapter {
      constructor(model: string) {
        super(`${adapterName}:${model}`);
      }
    },
    jwks: { keys: [jwk] },
    clients: clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: c.authMethod ?? 'client_secret_basic',
      scope: (c.scopes ?? scopes).join(' '),
    })),
    scopes,
    routes: {
      token: tokenPath,
      jwks: '/protocol/openid-connect/certs',
      authorization: '/protocol/openid-connect/auth',
      userinfo: '/protocol/openid-connect/userinfo',
      end_session: '/protocol/openid-connect/logout',
      introspection: '/protocol/openid-connect/token/introspect',
      revocation: '/protocol/openid-connect/revoke',
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, indicator: string) => {
          if (indicator !== resource) throw new mod.errors.InvalidTarget(`unknown resource ${indicator}`);
          return { scope: scopes.join(' '), audience: resource, accessTokenTTL: ttl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        },
      },
    },
    ttl: { ClientCredentials: ttl, AccessToken: ttl },
    extraTokenClaims: (_ctx: unknown, token: TokenLike) => {
      const id = token.clientId;
      if (!id) return undefined;
      return { azp: id, realm_access: { roles: rolesOf.get(id) ?? [] } };
    },
  });
  app.handler = provider.callback();

  return {
    issuer,
    tokenUrl: `${issuer}${tokenPath}`,
    jwksUrl: `${issuer}/protocol/openid-connect/certs`,
    resource,
    clients,
    stats,
    setTokenEndpointDown(d: boolean): void {
      down = d;
    },
    async stop(): Promise<void> {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
