/**
 * SETS TAXII API (`setsTaxiiApi`): a TAXII 2.1 server the SETS node publishes to, inquires and
 * deletes from. Property names are the raw keys of lib/ops/taxii-connection parseTaxiiSettings
 * (+ the secrets username, password, token, clientId, clientSecret).
 *
 * Connection test: `testedBy: 'setsTaxiiApiTest'` on the SETS node (lib probeTaxii: discovery /
 * API root with the TAXII Accept header, every auth type including OAuth2 client credentials, the
 * custom CA, the timeout). There is deliberately no declarative `test` here: n8n uses a credential's
 * `test` in preference to any node's `testedBy`, and a declarative request can express neither the
 * OAuth2 token exchange nor a private CA, so it would report working OAuth2 setups as failing.
 */
import type { ICredentialType, Icon, INodeProperties } from 'n8n-workflow';

export class SetsTaxiiApi implements ICredentialType {
  name = 'setsTaxiiApi';
  displayName = 'SETS TAXII API';
  icon: Icon = 'file:sets.svg';
  documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-sets';
  properties: INodeProperties[] = [
    {
      displayName: 'URL',
      name: 'url',
      type: 'string',
      default: '',
      required: true,
      placeholder: 'https://taxii.example.org/taxii2/',
      description: 'Discovery URL (ending in /taxii2/) or API root URL of the TAXII 2.1 server',
    },
    {
      displayName: 'Authentication',
      name: 'authType',
      type: 'options',
      options: [
        { name: 'None', value: 'none' },
        { name: 'Basic', value: 'basic' },
        { name: 'Bearer Token', value: 'bearer' },
        { name: 'OAuth2 Client Credentials', value: 'oauth2' },
      ],
      default: 'basic',
    },
    {
      displayName: 'Username',
      name: 'username',
      type: 'string',
      default: '',
      displayOptions: { show: { authType: ['basic'] } },
    },
    {
      displayName: 'Password',
      name: 'password',
      type: 'string',
      typeOptions: { password: true },
      default: '',
      displayOptions: { show: { authType: ['basic'] } },
    },
    {
      displayName: 'Token',
      name: 'token',
      type: 'string',
      typeOptions: { password: true },
      default: '',
      displayOptions: { show: { authType: ['bearer'] } },
    },
    {
      displayName: 'Token URL',
      name: 'tokenUrl',
      type: 'string',
      default: '',
      placeholder: 'https://keycloak.example.org/realms/cti/protocol/openid-connect/token',
      displayOptions: { show: { authType: ['oauth2'] } },
    },
    {
      displayName: 'Client ID',
      name: 'clientId',
      type: 'string',
      default: '',
      displayOptions: { show: { authType: ['oauth2'] } },
    },
    {
      displayName: 'Client Secret',
      name: 'clientSecret',
      type: 'string',
      typeOptions: { password: true },
      default: '',
      displayOptions: { show: { authType: ['oauth2'] } },
    },
    {
      displayName: 'Scope',
      name: 'scope',
      type: 'string',
      default: '',
      displayOptions: { show: { authType: ['oauth2'] } },
    },
    {
      displayName: 'Audience',
      name: 'audience',
      type: 'string',
      default: '',
      displayOptions: { show: { authType: ['oauth2'] } },
    },
    {
      displayName: 'Verify TLS Certificate',
      name: 'tlsVerify',
      type: 'boolean',
      default: true,
      description: 'Whether to refuse servers whose certificate does not verify (turn off for tests only)',
    },
    {
      displayName: 'CA Certificates (PEM)',
      name: 'ca',
      type: 'string',
      typeOptions: { rows: 4 },
      default: '',
      description: 'Extra certificate authorities to trust, PEM (default: the system ones)',
    },
    {
      displayName: 'Timeout (Ms)',
      name: 'timeout',
      type: 'number',
      typeOptions: { minValue: 100 },
      default: 30000,
      description: 'Per-request timeout in milliseconds',
    },
  ];
}
