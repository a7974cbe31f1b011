/**
 * SETS EVM Ledger (`setsEvmLedgerApi`): the permissioned EVM chain (Quorum, Besu, any JSON-RPC
 * node) holding the SETS registry contract. Property names are the raw keys of lib/ops/connections
 * parseLedgerSettings (+ the secrets privateKey and hmacKey). Without a private key the ledger is read-only
 * (verification works, anchoring does not).
 * Connection test: `testedBy: 'setsEvmLedgerApiTest'` (lib probeLedger).
 */
import type { ICredentialType, Icon, INodeProperties } from 'n8n-workflow';

export class SetsEvmLedgerApi implements ICredentialType {
  name = 'setsEvmLedgerApi';
  displayName = 'SETS EVM Ledger';
  icon: Icon = 'file:sets.svg';
  documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-sets';
  properties: INodeProperties[] = [
    {
      displayName: 'RPC URL',
      name: 'rpcUrl',
      type: 'string',
      default: '',
      required: true,
      placeholder: 'http://127.0.0.1:8545',
      description: 'JSON-RPC endpoint of the chain (http(s):// or ws(s)://)',
    },
    {
      displayName: 'WebSocket URL',
      name: 'wsUrl',
      type: 'string',
      default: '',
      placeholder: 'ws://127.0.0.1:8546',
      description: 'Optional: WebSocket endpoint for anchor events (waiting for a pending anchor reacts at once instead of polling)',
    },
    {
      displayName: 'Chain ID',
      name: 'chainId',
      type: 'string',
      default: '',
      required: true,
      placeholder: '1337',
    },
    {
      displayName: 'Registry Contract Address',
      name: 'contract',
      type: 'string',
      default: '',
      required: true,
      placeholder: '0x…',
    },
    {
      displayName: 'Writer Private Key',
      name: 'privateKey',
      type: 'string',
      typeOptions: { password: true },
      default: '',
      description: 'Key of an account the registry admin granted the collections it anchors in, or every collection (0x + 64 hex digits; Test shows the grants). Leave empty for a read-only ledger (verification only).',
    },
    {
      displayName: 'Transaction Type',
      name: 'txType',
      type: 'options',
      options: [
        { name: 'Legacy (Type 0, Gas Price)', value: '0' },
        { name: 'EIP-1559 (Type 2)', value: '2' },
      ],
      default: '0',
      description: 'Free-gas Quorum/Besu networks use legacy transactions with gas price 0',
    },
    {
      displayName: 'Gas Price (Wei)',
      name: 'gasPrice',
      type: 'string',
      default: '',
      displayOptions: { show: { txType: ['0'] } },
      description: 'Empty: ask the node',
    },
    {
      displayName: 'Max Fee per Gas (Wei)',
      name: 'maxFeePerGas',
      type: 'string',
      default: '',
      displayOptions: { show: { txType: ['2'] } },
    },
    {
      displayName: 'Max Priority Fee per Gas (Wei)',
      name: 'maxPriorityFeePerGas',
      type: 'string',
      default: '',
      displayOptions: { show: { txType: ['2'] } },
    },
    {
      displayName: 'Gas Limit',
      name: 'gasLimit',
      type: 'string',
      default: '',
      description: 'Empty: estimate per transaction',
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
      description: 'Per-request timeout in milliseconds',
    },
    {
      displayName: 'Anchor Deadline (S)',
      name: 'anchorDeadline',
      type: 'number',
      typeOptions: { minValue: 5 },
      default: 120,
      description:
        'How long an anchor may take from submission, in seconds: it waits out node outages and re-broadcasts dropped transactions until then, then fails naming the key',
    },
    {
      displayName: 'Coalescing Window (Ms)',
      name: 'coalesceMs',
      type: 'string',
      default: '',
      placeholder: '20',
      description:
        'Optional: concurrent anchors within this window share one batch transaction and concurrent reads one call; each item still gets its own result or error. Empty: 20; 0: off.',
    },
    {
      displayName: 'Batch Size',
      name: 'maxBatchSize',
      type: 'string',
      default: '',
      placeholder: '150',
      description: 'Optional: most anchors per batch transaction (1-1000). Empty: 150 (under the 2^24 transaction gas cap).',
    },
    {
      displayName: 'Transactions in Flight',
      name: 'maxInFlight',
      type: 'string',
      default: '',
      placeholder: '64',
      description:
        'Optional: most sent-but-unmined transactions (1-4096). Per account and node: connections signing with the same key share one nonce queue, the first one\'s value holds. Empty: 64.',
    },
    {
      displayName: 'Poll Interval (Ms)',
      name: 'pollMs',
      type: 'string',
      default: '',
      placeholder: '500',
      description: 'Optional: how often the node is asked for new blocks without a WebSocket URL (10-60000). Empty: 500.',
    },
    {
      displayName: 'Confirmations',
      name: 'confirmations',
      type: 'string',
      default: '',
      placeholder: '1',
      description: 'Optional: blocks on top of the including block before an anchor counts as done (1-1000). Empty: 1 (mined).',
    },
  ];
}
