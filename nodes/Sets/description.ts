/** Parameters of the SETS node (see the contract comment in Sets.node.ts). */
import type { INodeProperties } from 'n8n-workflow';
import { ledgerProperty } from '../n8n-shared/connections';

const show = (resource: string, operations: string[]) => ({ show: { resource: [resource], operation: operations } });

/** Operations that take a collection and STIX input. */
const STIX_OPS = { object: ['publish', 'distribute'], hash: ['anchor', 'verify'] };

export const resourceProperty: INodeProperties = {
  displayName: 'Resource',
  name: 'resource',
  type: 'options',
  noDataExpression: true,
  options: [
    { name: 'CTI Object', value: 'object', description: 'STIX objects on a TAXII collection or the RabbitMQ exchange' },
    { name: 'Hash', value: 'hash', description: 'Anchor hashes on the ledger, verify objects against them' },
    { name: 'Record', value: 'record', description: "Records of a SETS TAXII server's store: integrity status" },
  ],
  default: 'object',
};

export const operationProperties: INodeProperties[] = [
  {
    displayName: 'Operation',
    name: 'operation',
    type: 'options',
    noDataExpression: true,
    displayOptions: { show: { resource: ['object'] } },
    options: [
      { name: 'Publish to TAXII', value: 'publish', action: 'Publish STIX objects to a TAXII collection', description: 'POST the objects to a TAXII collection (optionally anchoring their hashes first)' },
      { name: 'Publish to RabbitMQ', value: 'distribute', action: 'Publish STIX objects to RabbitMQ', description: 'Publish each object to the SETS topic exchange, routing key <collection>.<type>' },
      { name: 'Inquire', value: 'inquire', action: 'Inquire a TAXII collection', description: 'GET objects, one object, its versions or the manifest, following every page' },
      { name: 'Delete', value: 'delete', action: 'Delete an object from a TAXII collection', description: 'DELETE an object (all versions, or those matching the filters)' },
    ],
    default: 'publish',
  },
  {
    displayName: 'Operation',
    name: 'operation',
    type: 'options',
    noDataExpression: true,
    displayOptions: { show: { resource: ['hash'] } },
    options: [
      { name: 'Anchor', value: 'anchor', action: 'Anchor the hashes of STIX objects', description: "Write (key, hash) of every input item's objects to the ledger in one batch" },
      { name: 'Verify', value: 'verify', action: 'Verify STIX objects against the ledger', description: 'Recompute each hash and compare it with the anchors of writers allowed to vouch for the collection: verified, mismatch, not-anchored, wrong-writer, conflict, or unknown (ledger unreachable)' },
    ],
    default: 'verify',
  },
  {
    displayName: 'Operation',
    name: 'operation',
    type: 'options',
    noDataExpression: true,
    displayOptions: { show: { resource: ['record'] } },
    options: [
      { name: 'Mark Integrity', value: 'markIntegrity', action: 'Mark a record finalized or invalid', description: 'Settle the record an item of the TAXII server trigger is about, from its verification' },
      { name: 'Query Statuses', value: 'query', action: 'Query record integrity statuses', description: 'One item per stored record version with its integrity status' },
      { name: 'Count Statuses', value: 'counts', action: 'Count records per integrity status', description: 'Pending, finalized and invalid records' },
    ],
    default: 'markIntegrity',
  },
];

const stixInput: INodeProperties[] = [
  {
    displayName: 'Collection',
    name: 'collection',
    type: 'string',
    default: '',
    displayOptions: { show: { resource: ['object', 'hash'], operation: [...STIX_OPS.object, ...STIX_OPS.hash, 'inquire', 'delete'] } },
    placeholder: '91a7b528-80eb-42ed-a74d-c6fbd5a26116',
    description: "TAXII collection id (also part of the ledger key). Empty: the item's collection (json.collection, else json.sets.collection).",
  },
  {
    displayName: 'STIX Input',
    name: 'stixInput',
    type: 'options',
    displayOptions: { show: { resource: ['object', 'hash'], operation: [...STIX_OPS.object, ...STIX_OPS.hash] } },
    options: [
      { name: 'Auto', value: 'auto', description: 'Json.object, else json.payload, else the whole item JSON (without its "sets" key)' },
      { name: 'Property', value: 'field', description: 'A named property of the item' },
    ],
    default: 'auto',
    description: 'Where the STIX content is: one object, a bundle, a TAXII envelope, a list, or their JSON text',
  },
  {
    displayName: 'Property Name',
    name: 'stixField',
    type: 'string',
    default: 'object',
    displayOptions: { show: { resource: ['object', 'hash'], operation: [...STIX_OPS.object, ...STIX_OPS.hash], stixInput: ['field'] } },
    description: 'Dot path of the property holding the STIX content, e.g. "body.bundle"',
  },
];

const publishProps: INodeProperties[] = [
  {
    displayName: 'Anchor First',
    name: 'anchorFirst',
    type: 'boolean',
    default: false,
    displayOptions: show('object', ['publish']),
    description: "Whether to anchor the objects' hashes on the ledger before publishing (paper step 1: anchor, then POST)",
  },
  ledgerProperty({ resource: ['object'], operation: ['publish'], anchorFirst: [true] }),
  {
    displayName: 'Options',
    name: 'options',
    type: 'collection',
    placeholder: 'Add Option',
    default: {},
    displayOptions: show('object', ['publish']),
    options: [
      { displayName: 'Wait for Status', name: 'waitForStatus', type: 'boolean', default: true, description: 'Whether to poll the TAXII status until the server has processed every object' },
      { displayName: 'Status Timeout (Ms)', name: 'statusTimeout', type: 'number', typeOptions: { minValue: 0 }, default: 30000, description: 'Give up polling the status after this long' },
      {
        displayName: 'On Rejected Objects',
        name: 'onTaxiiRejected',
        type: 'options',
        options: [
          { name: 'Fail the Item', value: 'fail' },
          { name: 'Pass the Status On', value: 'pass' },
        ],
        default: 'fail',
        description: 'What to do when the server lists objects among its failures',
      },
    ],
  },
];

const distributeProps: INodeProperties[] = [
  {
    displayName: 'Options',
    name: 'options',
    type: 'collection',
    placeholder: 'Add Option',
    default: {},
    displayOptions: show('object', ['distribute']),
    options: [
      {
        displayName: 'Allow Unroutable',
        name: 'allowUnroutable',
        type: 'boolean',
        default: false,
        description: 'Whether a message no queue is bound for may be dropped by the broker without an error (fire and forget). Off: the item fails with UNROUTABLE naming the exchange and routing key.',
      },
      { displayName: 'Confirm Timeout (Ms)', name: 'timeout', type: 'number', typeOptions: { minValue: 100 }, default: 30000, description: 'How long the broker may take to confirm each message once sent (a message that timed out may have arrived)' },
      {
        displayName: 'Wait for Broker (Ms)',
        name: 'brokerWait',
        type: 'number',
        typeOptions: { minValue: 100 },
        default: 120000,
        description: 'How long a message may wait for the broker connection (while it reconnects) before the item fails',
      },
    ],
  },
];

const inquireProps: INodeProperties[] = [
  {
    displayName: 'Endpoint',
    name: 'endpoint',
    type: 'options',
    displayOptions: show('object', ['inquire']),
    options: [
      { name: 'Objects', value: 'objects', description: 'GET …/objects/' },
      { name: 'One Object', value: 'object', description: 'GET …/objects/{id}/' },
      { name: 'Versions of an Object', value: 'versions', description: 'GET …/objects/{id}/versions/' },
      { name: 'Manifest', value: 'manifest', description: 'GET …/manifest/' },
    ],
    default: 'objects',
  },
  {
    displayName: 'Object ID',
    name: 'objectId',
    type: 'string',
    default: '',
    required: true,
    placeholder: 'indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f',
    displayOptions: { show: { resource: ['object'], operation: ['inquire'], endpoint: ['object', 'versions'] } },
  },
  {
    displayName: 'Object ID',
    name: 'objectId',
    type: 'string',
    default: '',
    required: true,
    placeholder: 'indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f',
    displayOptions: show('object', ['delete']),
  },
  {
    displayName: 'Return All',
    name: 'returnAll',
    type: 'boolean',
    default: false,
    displayOptions: show('object', ['inquire']),
    description: 'Whether to return all results or only up to a given limit',
  },
  {
    displayName: 'Limit',
    name: 'limit',
    type: 'number',
    typeOptions: { minValue: 1 },
    default: 50,
    displayOptions: { show: { resource: ['object'], operation: ['inquire'], returnAll: [false] } },
    description: 'Max number of results to return',
  },
  {
    displayName: 'Filters',
    name: 'filters',
    type: 'collection',
    placeholder: 'Add Filter',
    default: {},
    displayOptions: show('object', ['inquire']),
    options: [
      { displayName: 'Added After', name: 'addedAfter', type: 'string', default: '', placeholder: '2024-01-01T00:00:00Z', description: 'Only records added after this timestamp (added_after)' },
      { displayName: 'Match ID', name: 'matchId', type: 'string', default: '', description: 'Comma-separated object ids (match[ID])' },
      { displayName: 'Match Type', name: 'matchType', type: 'string', default: '', placeholder: 'indicator,malware', description: 'Comma-separated STIX types (match[type])' },
      { displayName: 'Match Version', name: 'matchVersion', type: 'string', default: '', placeholder: 'last', description: 'Comma-separated: last, first, all, or timestamps (match[version])' },
      { displayName: 'Match Spec Version', name: 'matchSpecVersion', type: 'string', default: '', placeholder: '2.1', description: 'Comma-separated STIX spec versions (match[spec_version])' },
    ],
  },
  {
    displayName: 'Options',
    name: 'options',
    type: 'collection',
    placeholder: 'Add Option',
    default: {},
    displayOptions: show('object', ['inquire']),
    options: [
      { displayName: 'Page Size', name: 'pageSize', type: 'number', typeOptions: { minValue: 1 }, default: 100, description: 'Records per TAXII request (limit); pages are followed automatically' },
      {
        displayName: 'Output',
        name: 'output',
        type: 'options',
        options: [
          { name: 'One Item per Result', value: 'split' },
          { name: 'One Item With All Results', value: 'single' },
        ],
        default: 'split',
      },
    ],
  },
  {
    displayName: 'Filters',
    name: 'filters',
    type: 'collection',
    placeholder: 'Add Filter',
    default: {},
    displayOptions: show('object', ['delete']),
    options: [
      { displayName: 'Match Version', name: 'matchVersion', type: 'string', default: '', description: 'Delete only these versions (comma-separated timestamps, or first/last/all)' },
      { displayName: 'Match Spec Version', name: 'matchSpecVersion', type: 'string', default: '', description: 'Delete only these spec versions' },
    ],
  },
];

const verifyProps: INodeProperties[] = [
  {
    displayName: 'Wait for Anchor (Ms)',
    name: 'waitForAnchor',
    type: 'number',
    typeOptions: { minValue: 0 },
    default: 10000,
    displayOptions: show('hash', ['verify']),
    description: 'How long to wait for an anchor that is not mined yet (0 = look once). Pending is a state, not an error. Records of an integrity-off collection (sets.policy "off" from the SETS TAXII Server Trigger) are looked at once.',
  },
  {
    displayName: 'Rejected Objects',
    name: 'onRejected',
    type: 'options',
    noDataExpression: true,
    displayOptions: show('hash', ['verify']),
    options: [
      { name: 'Send to Second Output', value: 'secondOutput', description: 'Output 1 "Verified", output 2 "Rejected" (mismatch, not-anchored, wrong-writer or conflict)' },
      { name: 'Pass Through', value: 'passThrough', description: 'One output; json.sets.verification.status tells' },
      { name: 'Fail', value: 'fail', description: 'A rejected object fails its item (with "Continue On Fail": an error item)' },
    ],
    default: 'secondOutput',
  },
  {
    displayName: 'Fail on Undecided',
    name: 'failOnUndecided',
    type: 'boolean',
    default: true,
    displayOptions: show('hash', ['verify']),
    description:
      'Whether an object the ledger could not decide (status "unknown": the ledger could not be read by the end of the wait) fails its item, naming the reason. Off: the item goes to the first output with json.sets.verification.status "unknown" — not a rejection, retry it later.',
  },
  {
    displayName: 'Several Objects in an Item',
    name: 'mode',
    type: 'options',
    displayOptions: show('hash', ['verify']),
    options: [
      { name: 'One Item per Object', value: 'split' },
      { name: 'Keep the Item Whole', value: 'whole', description: 'One verification summary (worst status) plus every object\'s in json.sets.verifications' },
    ],
    default: 'split',
  },
];

const recordProps: INodeProperties[] = [
  {
    displayName: 'Collections',
    name: 'collections',
    type: 'string',
    default: '',
    required: true,
    displayOptions: show('record', ['query']),
    description: 'Comma-separated collection ids to look in',
  },
  {
    displayName: 'Collections',
    name: 'collections',
    type: 'string',
    default: '',
    displayOptions: show('record', ['counts']),
    description: 'Comma-separated collection ids (empty: every record of the store)',
  },
  {
    displayName: 'Object ID',
    name: 'objectId',
    type: 'string',
    default: '',
    displayOptions: show('record', ['query']),
    description: 'Only this object (empty: every object)',
  },
  {
    displayName: 'Statuses',
    name: 'statuses',
    type: 'multiOptions',
    options: [
      { name: 'Pending', value: 'pending' },
      { name: 'Finalized', value: 'finalized' },
      { name: 'Invalid', value: 'invalid' },
    ],
    default: [],
    displayOptions: show('record', ['query']),
    description: 'Only records with these statuses (none selected: all)',
  },
  {
    displayName: 'Limit',
    name: 'limit',
    type: 'number',
    typeOptions: { minValue: 1, maxValue: 100000 },
    default: 1000,
    displayOptions: show('record', ['query']),
    description: 'Max number of results to return',
  },
];

export const properties: INodeProperties[] = [
  resourceProperty,
  ...operationProperties,
  ledgerProperty({ resource: ['hash'] }),
  ...stixInput,
  ...publishProps,
  ...distributeProps,
  ...inquireProps,
  ...verifyProps,
  ...recordProps,
];
