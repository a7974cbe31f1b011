/**
 * SETS AMQP Broker (`setsAmqpApi`): the RabbitMQ broker of the SETS topic exchange. Property names
 * are the raw keys of lib/ops/connections parseBrokerSettings (+ the secrets username, password).
 * Our own type: n8n's lint forbids reusing the built-in `rabbitmq` credential.
 * Connection test: `testedBy: 'setsAmqpApiTest'` (lib probeBroker).
 */
import type { ICredentialType, Icon, INodeProperties } from 'n8n-workflow';

export class SetsAmqpApi implements ICredentialType {
  name = 'setsAmqpApi';
  displayName = 'SETS AMQP Broker';
  icon: Icon = 'file:sets.svg';
  documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-sets';
  properties: INodeProperties[] = [
    { displayName: 'Host', name: 'host', type: 'string', default: 'localhost', required: true },
    { displayName: 'Port', name: 'port', type: 'number', default: 5672, description: '5672 (AMQP) or 5671 (AMQPS)' },
    { displayName: 'Virtual Host', name: 'vhost', type: 'string', default: '/' },
    { displayName: 'Username', name: 'username', type: 'string', default: '' },
    { displayName: 'Password', name: 'password', type: 'string', typeOptions: { password: true }, default: '' },
    { displayName: 'TLS (AMQPS)', name: 'tls', type: 'boolean', default: false },
    {
      displayName: 'Verify TLS Certificate',
      name: 'tlsVerify',
      type: 'boolean',
      default: true,
      displayOptions: { show: { tls: [true] } },
      description: 'Whether to refuse brokers whose certificate does not verify (turn off for tests only)',
    },
    {
      displayName: 'CA Certificates (PEM)',
      name: 'ca',
      type: 'string',
      typeOptions: { rows: 4 },
      default: '',
      displayOptions: { show: { tls: [true] } },
    },
    {
      displayName: 'Exchange',
      name: 'exchange',
      type: 'string',
      default: 'sets',
      description: 'Topic exchange of SETS (routing key <collection>.<STIX type>); declared durable if missing',
    },
    {
      displayName: 'Prefetch',
      name: 'prefetch',
      type: 'number',
      typeOptions: { minValue: 1 },
      default: 100,
      description: 'Default number of unacknowledged messages a consumer may hold',
    },
    { displayName: 'Heartbeat (S)', name: 'heartbeat', type: 'number', typeOptions: { minValue: 0 }, default: 30 },
    {
      displayName: 'Timeout (Ms)',
      name: 'timeout',
      type: 'number',
      typeOptions: { minValue: 100 },
      default: 10000,
      description: 'Connect and setup timeout in milliseconds',
    },
    {
      displayName: 'Wait for Broker (S)',
      name: 'brokerWait',
      type: 'number',
      typeOptions: { minValue: 1 },
      default: 120,
      description:
        'How long a publish waits for a lost broker connection to come back, in seconds, before it fails (the confirm timeout counts separately, once the message is sent)',
    },
  ];
}
