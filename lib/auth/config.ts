/**
 * Build an AuthProvider from plain configuration (what a Node-RED config node or n8n credential
 * holds).
 */
import { AuthError, BasicAuth, BearerAuth, NoAuth, type AuthProvider } from './client';
import { OAuth2ClientCredentials, type OAuth2ClientCredentialsOptions } from './oauth2';

export type AuthConfig =
  | { type: 'none' }
  | { type: 'basic'; username: string; password: string }
  | { type: 'bearer'; token: string }
  | ({ type: 'oauth2' } & OAuth2ClientCredentialsOptions);

export function createAuthProvider(config: AuthConfig | undefined): AuthProvider {
  if (!config) return new NoAuth();
  switch (config.type) {
    case 'none':
      return new NoAuth();
    case 'basic':
      return new BasicAuth(config.username, config.password);
    case 'bearer':
      return new BearerAuth(config.token);
    case 'oauth2': {
      const { type: _type, ...opts } = config;
      return new OAuth2ClientCredentials(opts);
    }
    default: {
      const t: unknown = (config as { type?: unknown }).type;
      throw new AuthError(`unknown auth type ${JSON.stringify(t)}`, { code: 'CONFIG' });
    }
  }
}
