/**
 * SETS Fabric Ledger (`setsFabricLedgerApi`): a Hyperledger Fabric channel holding the SETS
 * registry chaincode, reached through a peer's gateway. Property names are the raw keys of
 * lib/ops/connections parseLedgerSettings for kind 'fabric' (+ the secrets privateKey,
 * certificate, tlsCaCert and the optional hmacKey, as on the EVM credential).
 * The identity is the MSP id + enrolment certificate + its private key; the key is required
 * (on Fabric even a read is a signed proposal).
 * Connection test: `testedBy: 'setsFabricLedgerApiTest'` (lib probeLedger).
 */
import type { ICredentialType, Icon, INodeProperties } from 'n8n-workflow';

export class SetsFabricLedgerApi implements ICredentialType {
  name = 'setsFabricLedgerApi';
  displayName = 'SETS Fabric Ledger';
  icon: Icon = 'file:sets.svg';
  documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-sets';
  properties: INodeProperties[] = [
    {
      displayName: 'Peer Endpoint',
      name: 'peerEndpoint',
      type: 'string',
      default: '',
      required: true,
      placeholder: 'peer0.org1.example.com:7051',
      description: "Host and port of a peer's gateway service (no scheme)",
    },
    {
      displayName: 'Connection Security',
      name: 'tlsMode',
      type: 'options',
      options: [
        { name: 'TLS (Recommended)', value: 'tls', description: "Encrypted, the peer's certificate checked against the TLS CA below" },
        { name: 'Plaintext (Test Networks Only)', value: 'insecure', description: 'No TLS: only for a peer that has TLS switched off' },
      ],
      default: 'tls',
    },
    {
      displayName: 'TLS CA Certificate',
      name: 'tlsCaCert',
      type: 'string',
      typeOptions: { rows: 4 },
      default: '',
      required: true,
      displayOptions: { show: { tlsMode: ['tls'] } },
      placeholder: '-----BEGIN CERTIFICATE-----',
      description: "PEM certificate of the CA that issued the peer's TLS certificate (e.g. organizations/peerOrganizations/org1.example.com/tlsca/tlsca.org1.example.com-cert.pem)",
    },
    {
      displayName: 'TLS Server Name Override',
      name: 'serverNameOverride',
      type: 'string',
      default: '',
      displayOptions: { show: { tlsMode: ['tls'] } },
      placeholder: 'peer0.org1.example.com',
      description: "Optional: the host name the peer's TLS certificate was issued for, when the endpoint above uses another name or an IP address",
    },
    {
      displayName: 'MSP ID',
      name: 'mspId',
      type: 'string',
      default: '',
      required: true,
      placeholder: 'Org1MSP',
      description: 'Membership service provider of the identity below (its organisation)',
    },
    {
      displayName: 'Certificate',
      name: 'certificate',
      type: 'string',
      typeOptions: { rows: 4 },
      default: '',
      required: true,
      placeholder: '-----BEGIN CERTIFICATE-----',
      description: 'PEM enrolment certificate of the identity that signs (e.g. …/users/User1@org1.example.com/msp/signcerts/cert.pem)',
    },
    {
      displayName: 'Private Key',
      name: 'privateKey',
      type: 'string',
      typeOptions: { password: true, rows: 4 },
      default: '',
      required: true,
      placeholder: '-----BEGIN PRIVATE KEY-----',
      description: 'PEM private key of that certificate (…/msp/keystore/…_sk). Needed for reads too: every Fabric request is signed. Anchoring also needs the registry admin to have granted this identity (or its MSP or role) the collections it anchors in; Test shows the grants.',
    },
    {
      displayName: 'Channel',
      name: 'channel',
      type: 'string',
      default: '',
      required: true,
      placeholder: 'mychannel',
    },
    {
      displayName: 'Chaincode',
      name: 'chaincode',
      type: 'string',
      default: 'sets-registry',
      description: 'Name the SETS registry chaincode was deployed under',
    },
    {
      displayName: 'Contract Name',
      name: 'contractName',
      type: 'string',
      default: '',
      description: "Optional: the contract inside the chaincode. Empty: the chaincode's default contract (SetsRegistry).",
    },
    {
      displayName: 'Community HMAC Key',
      name: 'hmacKey',
      type: 'string',
      typeOptions: { password: true },
      default: '',
      description:
        'Optional keyed-hash privacy option: h_t = HMAC-SHA256(key, JCS(t)) instead of SHA-256, so tiny objects (one IP) cannot be guessed from the ledger. Producers and consumers of a community must use the same key.',
    },
    {
      displayName: 'Timeout (Ms)',
      name: 'timeout',
      type: 'number',
      typeOptions: { minValue: 100 },
      default: 10000,
      description: 'Longest wait for one request to the peer (read, endorsement, submission)',
    },
    {
      displayName: 'Anchor Deadline (S)',
      name: 'anchorDeadline',
      type: 'number',
      typeOptions: { minValue: 5 },
      default: 120,
      description: 'How long an anchor may take until its transaction is committed, in seconds; then it fails naming the key',
    },
    {
      displayName: 'Coalescing Window (Ms)',
      name: 'coalesceMs',
      type: 'string',
      default: '',
      placeholder: '20',
      description:
        'Optional: concurrent anchors within this window share one AnchorMany transaction and concurrent reads one call; each item still gets its own result or error. Empty: 20; 0: off.',
    },
    {
      displayName: 'Batch Size',
      name: 'maxBatchSize',
      type: 'string',
      default: '',
      placeholder: '500',
      description: 'Optional: most anchors per AnchorMany transaction (1-1000). Empty: 500.',
    },
    {
      displayName: 'Requests in Flight',
      name: 'maxInFlight',
      type: 'string',
      default: '',
      placeholder: '100',
      description: "Optional: most concurrent requests to the peer's gateway (1-10000; a peer refuses more than 500 by default). Empty: 100.",
    },
    {
      displayName: 'Poll Interval (Ms)',
      name: 'pollMs',
      type: 'string',
      default: '',
      placeholder: '1000',
      description: 'Optional: new anchors arrive as events from the peer; only while that event stream is down are awaited objects read again at this interval (10-60000). Empty: 1000.',
    },
  ];
}
