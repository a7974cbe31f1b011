/**
 * sets-taxii: a TAXII 2.1 server (discovery or API-root URL, authentication, TLS, timeout).
 * Secrets live only in credentials. One client is shared by the taxii-publish / taxii-inquire
 * nodes that use this configuration; it is created on first use and closed with the node.
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import { registerAdminEndpoints } from '../shared/admin-endpoints';
import type { TaxiiOwner } from '../shared/owners';
import { str } from '../shared/config';
import { createTaxiiConnection, parseTaxiiSettings, type TaxiiConnection, type TaxiiSettings } from '../../lib/ops/taxii-connection';

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
  registerAdminEndpoints(RED);
  function SetsTaxiiNode(this: TaxiiConfigNode, def: TaxiiDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: TaxiiConfigNode, def: TaxiiDef): void {
    let settings: TaxiiSettings | undefined;
    try {
      settings = parseTaxiiSettings(def as unknown as Record<string, unknown>);
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
