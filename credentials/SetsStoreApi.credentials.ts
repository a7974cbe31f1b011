/**
 * SETS Record Store (`setsStoreApi`): where the SETS TAXII server keeps its records and status
 * resources — embedded (LevelDB in a directory on the n8n host) or MongoDB. Property names are the
 * raw keys of lib/ops/server-store parseStoreSettings (+ the secret uri). The TAXII server trigger
 * and the SETS node's Record operations must use the same store (same credential) so that marking
 * a record in one execution is seen by the server. Our own type, not n8n's `mongoDb`.
 * Connection test: `testedBy: 'setsStoreApiTest'` (lib probeStore).
 */
import type { ICredentialType, Icon, INodeProperties } from 'n8n-workflow';

export class SetsStoreApi implements ICredentialType {
  name = 'setsStoreApi';
  displayName = 'SETS Record Store';
  icon: Icon = 'file:sets.svg';
  documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-sets';
  properties: INodeProperties[] = [
    {
      displayName: 'Kind',
      name: 'kind',
      type: 'options',
      options: [
        { name: 'Embedded (LevelDB on This Host)', value: 'embedded' },
        { name: 'MongoDB', value: 'mongodb' },
      ],
      default: 'embedded',
    },
    {
      displayName: 'Directory',
      name: 'dir',
      type: 'string',
      default: '',
      placeholder: '~/.n8n/sets-store/default',
      displayOptions: { show: { kind: ['embedded'] } },
      description: "Empty: <n8n folder>/sets-store/default (n8n's folder is $N8N_USER_FOLDER/.n8n, else ~/.n8n). One n8n process holds it open.",
    },
    {
      displayName: 'Connection URI',
      name: 'uri',
      type: 'string',
      typeOptions: { password: true },
      default: '',
      placeholder: 'mongodb://user:password@host:27017/?replicaSet=rs0',
      displayOptions: { show: { kind: ['mongodb'] } },
    },
    {
      displayName: 'Database',
      name: 'db',
      type: 'string',
      default: 'sets',
      displayOptions: { show: { kind: ['mongodb'] } },
    },
    {
      displayName: 'Collection Prefix',
      name: 'collectionPrefix',
      type: 'string',
      default: '',
      displayOptions: { show: { kind: ['mongodb'] } },
      description: 'Prefix of the MongoDB collection names (to share one database)',
    },
    {
      displayName: 'Status Retention (Hours)',
      name: 'retentionHours',
      type: 'number',
      typeOptions: { minValue: 1 },
      default: 24,
      description: 'How long TAXII status resources are kept',
    },
  ];
}
