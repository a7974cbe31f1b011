/**
 * sets-taxii: a TAXII 2.1 server (discovery or API-root URL, authentication, TLS, timeout).
 * Secrets live only in credentials. One client is shared by the taxii-publish / taxii-inquire
 * nodes that use this configuration; it is created on first use and closed with the node.
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import type { TaxiiOwner } from '../shared/owners';
import { bool, int, oneOf, optStr, str } from '../shared/config';
import { createTaxiiConnection, type TaxiiConnection, type TaxiiSettings } from '../../lib/ops/taxii-connection';

interface TaxiiDef extends NodeDef {
  url?: string;
  authType?: string;
  tokenUrl?: string;
  scope?: string;
  audience?: string;
  tlsVerify?: boolean | string;
  ca?: string;
  timeout?: number | string;
}

interface TaxiiCredentials {
  username?: string;
  password?: string;
  token?: string;
  clientId?: string;
  clientSecret?: string;
}

type TaxiiConfigNode = TaxiiOwner & { credentials: TaxiiCredentials };

export = function register(RED: NodeAPI): void {
  function SetsTaxiiNode(this: TaxiiConfigNode, def: TaxiiDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: TaxiiConfigNode, def: TaxiiDef): void {
    let settings: TaxiiSettings | undefined;
    try {
      settings = {
        url: str(def.url),
        authType: oneOf(def.authType, 'authentication', ['none', 'basic', 'bearer', 'oauth2'] as const, 'none'),
        tlsVerify: bool(def.tlsVerify, true),
        timeoutMs: int(def.timeout, 'timeout', 30_000, 100, 600_000),
      };
      const tokenUrl = optStr(def.tokenUrl);
      const scope = optStr(def.scope);
      const audience = optStr(def.audience);
      const ca = optStr(def.ca);
      if (tokenUrl) settings.tokenUrl = tokenUrl;
      if (scope) settings.scope = scope;
      if (audience) settings.audience = audience;
      if (ca) settings.ca = ca;
    } catch (err) {
      node.configError = err instanceof Error ? err : new Error(String(err));
    }
    const label = `${str(def.url) || '(no URL)'} [${str(def.authType) || 'none'}]`;
    node.describe = () => label;

    let conn: TaxiiConnection | undefined;
    node.connection = (): TaxiiConnection => {
      if (node.configError) throw node.configError;
      if (!conn) {
        const creds = node.credentials ?? {};
        conn = createTaxiiConnection(settings as TaxiiSettings, {
          username: creds.username,
          password: creds.password,
          token: creds.token,
          clientId: creds.clientId,
          clientSecret: creds.clientSecret,
        });
      }
      return conn;
    };

    node.on('close', (_removed: boolean, done: () => void) => {
      try {
        conn?.close();
      } finally {
        conn = undefined;
        done();
      }
    });
  }

  RED.nodes.registerType<TaxiiConfigNode, TaxiiDef, unknown, TaxiiCredentials>('sets-taxii', SetsTaxiiNode, {
    credentials: {
      username: { type: 'text' },
      password: { type: 'password' },
      token: { type: 'password' },
      clientId: { type: 'text' },
      clientSecret: { type: 'password' },
    },
  });
};
