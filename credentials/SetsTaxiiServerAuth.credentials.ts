/**
 * SETS TAXII Server Secrets (`setsTaxiiServerAuth`): the secrets of the SETS TAXII Server Trigger —
 * who may call it (HTTP Basic users, API keys; formats of lib/ops/server-config parseUsers /
 * parseApiKeys), the secret signing `next` paging tokens, and the TLS certificate and key for
 * HTTPS. Passwords and keys may be given in clear or as `scrypt$…` / `sha256$…` hashes.
 * Check: `testedBy: 'setsTaxiiServerAuthTest'` (parses everything, checks the certificate/key pair).
 */
import type { ICredentialType, Icon, INodeProperties } from 'n8n-workflow';

export class SetsTaxiiServerAuth implements ICredentialType {
  name = 'setsTaxiiServerAuth';
  displayName = 'SETS TAXII Server Secrets';
  icon: Icon = 'file:sets.svg';
  documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-sets';
  properties: INodeProperties[] = [
    {
      displayName: 'Basic Users',
      name: 'users',
      type: 'string',
      typeOptions: { password: true, rows: 4 },
      default: '',
      placeholder: 'producer:secret:publisher\nconsumer:secret:reader',
      description: 'One user per line: user:password:role1,role2 (or a JSON list of {username, password, roles}); # starts a comment',
    },
    {
      displayName: 'API Keys',
      name: 'apiKeys',
      type: 'string',
      typeOptions: { password: true, rows: 4 },
      default: '',
      placeholder: 'misp:0123456789abcdef:reader',
      description: 'One key per line: name:key:role1,role2 (or a JSON list of {name, key, roles}). Accepted as Basic password, "Token <key>" or "Bearer <key>".',
    },
    {
      displayName: 'Next-Token Secret',
      name: 'nextTokenSecret',
      type: 'string',
      typeOptions: { password: true },
      default: '',
      description: 'At least 16 characters; signs paging tokens. Empty: a random one per activation (tokens then end with it). Every instance behind one load balancer needs the same.',
    },
    {
      displayName: 'TLS Certificate (PEM)',
      name: 'tlsCert',
      type: 'string',
      typeOptions: { rows: 4 },
      default: '',
      description: 'Certificate chain for HTTPS (the trigger\'s "HTTPS" option)',
    },
    {
      displayName: 'TLS Private Key (PEM)',
      name: 'tlsKey',
      type: 'string',
      typeOptions: { password: true, rows: 4 },
      default: '',
    },
    {
      displayName: 'TLS Key Passphrase',
      name: 'tlsPassphrase',
      type: 'string',
      typeOptions: { password: true },
      default: '',
    },
  ];
}
