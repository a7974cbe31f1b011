/**
 * SETS (n8n action node `sets`) — Secure and Efficient Threat Sharing: STIX 2.1 over TAXII 2.1 and
 * RabbitMQ with hashes anchored on a permissioned ledger. Thin: every operation is a lib/ops call.
 *
 * CONTRACT (names are stable; workflows depend on them)
 * Parameters: resource, operation, and per operation —
 *   object.publish      collection, stixInput (auto|field), stixField, anchorFirst,
 *                       options {waitForStatus, statusTimeout (ms), onTaxiiRejected (fail|pass)}
 *                       credentials setsTaxiiApi (+ the ledger's when anchorFirst: ledger, below)
 *   object.distribute   collection, stixInput, stixField, options {timeout (ms)}   credential setsAmqpApi
 *   object.inquire      collection, endpoint (objects|object|versions|manifest), objectId, returnAll,
 *                       limit, filters {addedAfter, matchId, matchType, matchVersion, matchSpecVersion},
 *                       options {pageSize, output (split|single)}                 credential setsTaxiiApi
 *   object.delete       collection, objectId, filters {matchVersion, matchSpecVersion}   setsTaxiiApi
 *   hash.anchor         collection, stixInput, stixField                  credential: the ledger's
 *   hash.verify         collection, stixInput, stixField, waitForAnchor (ms), onRejected
 *                       (secondOutput|passThrough|fail), mode (split|whole)  credential: the ledger's
 *   ledger              (hash.*, and object.publish with anchorFirst) evm | fabric, default evm
 *                       (workflows without it are EVM): credential setsEvmLedgerApi | setsFabricLedgerApi
 *   record.markIntegrity  (reads json.sets)                                credential setsStoreApi
 *   record.query        collections, objectId, statuses, limit              credential setsStoreApi
 *   record.counts       collections                                         credential setsStoreApi
 * An empty `collection` means the item's json.collection, else json.sets.collection.
 *
 * Items (the n8n twin of Node-RED's msg.payload / msg.collection / msg.sets):
 *   in   the STIX content in json.object, json.payload, a named property, or the whole json
 *   out  { ...input json, object, collection, sets: { ...input sets, <this step's result> } }
 *        (an input whose whole json was the STIX content gives a fresh {object, collection, sets})
 *   anchor      sets.{collection, items: [{id, type, version, key, hash, anchor: {tx, block, existing?, timings?}}],
 *               key, hash, anchor (one object)}                       one item per input item
 *   verify      sets.verification {status: verified|mismatch|not-anchored|wrong-writer|conflict|unknown, id, collection, version,
 *               key, expected?, actual, writer?, timestamp?, reason?}  one item per object
 *               (mode whole: sets.verification summary + sets.verifications); outputs Verified /
 *               Rejected when onRejected = secondOutput
 *   publish     sets.taxii (TAXII status resource) [+ anchor fields when anchorFirst]
 *   distribute  sets.published {exchange, collection, count, routingKeys, messageIds}
 *   inquire     {object, collection, sets.inquiry} per object; {id, version, collection} per version;
 *               {<manifest record>, collection} per manifest entry; output single: {objects|versions|
 *               manifest: [...], count, collection}; the last item has limitReached when cut
 *   delete      sets.deleted {collection, id, match?}
 *   markIntegrity  sets.integrity {collection, id, version, status (finalized|invalid|pending|absent|
 *               unverified), changed, reason, origin?}
 *   query       one item per record version {collection, id, type, version, status, reason?, statusAt,
 *               dateAdded, key, hash}
 *   counts      {pending, finalized, invalid, collections?}
 * Errors: NodeApiError for TAXII/HTTP failures, NodeOperationError otherwise, with itemIndex; with
 * "Continue On Fail" an item {error, code?, problems?} paired to the failing input item.
 * Connections are opened per execution and closed before execute() returns.
 */
import {
  NodeConnectionTypes,
  type IExecuteFunctions,
  type INodeExecutionData,
  type INodeType,
  type INodeTypeDescription,
} from 'n8n-workflow';
import { CRED, LEDGER_CREDENTIALS } from '../n8n-shared/connections';
import { setsAmqpApiTest, setsEvmLedgerApiTest, setsFabricLedgerApiTest, setsStoreApiTest, setsTaxiiApiTest } from '../n8n-shared/credential-tests';
import { errorJson, toNodeError } from '../n8n-shared/errors';
import { properties } from './description';
import * as ops from './operations';

function hasItemIndex(err: unknown): boolean {
  const ctx = (err as { context?: { itemIndex?: unknown } } | null)?.context;
  return typeof ctx?.itemIndex === 'number';
}

type Operation = (ctx: ops.OpContext) => Promise<ops.OpOutput>;

const OPERATIONS: Record<string, Record<string, Operation>> = {
  object: { publish: ops.publish, distribute: ops.distribute, inquire: ops.inquire, delete: ops.remove },
  hash: { anchor: ops.anchor, verify: ops.verify },
  record: { markIntegrity: ops.markIntegrity, query: ops.query, counts: ops.counts },
};

/** Outputs: Verified + Rejected for hash.verify with onRejected = secondOutput, else one (evaluated by n8n). */
function configuredOutputs(parameters: { resource?: string; operation?: string; onRejected?: string }) {
  // plain JavaScript on purpose: n8n evaluates this function's source in its expression sandbox
  const resource = parameters.resource || 'object';
  const operation = parameters.operation || (resource === 'hash' ? 'verify' : '');
  const onRejected = parameters.onRejected || 'secondOutput';
  if (resource === 'hash' && operation === 'verify' && onRejected === 'secondOutput') {
    return [
      { type: 'main', displayName: 'Verified' },
      { type: 'main', displayName: 'Rejected' },
    ];
  }
  return [{ type: 'main' }];
}

export class Sets implements INodeType {
  description: INodeTypeDescription = {
    displayName: 'SETS',
    name: 'sets',
    icon: 'file:sets.svg',
    group: ['transform'],
    version: 1,
    subtitle: '={{ $parameter["operation"] + ": " + $parameter["resource"] }}',
    description: 'Share STIX threat intelligence over TAXII and RabbitMQ with hashes anchored on a ledger (SETS)',
    defaults: { name: 'SETS' },
    inputs: [NodeConnectionTypes.Main],
    outputs: `={{(${configuredOutputs.toString()})($parameter)}}`,
    credentials: [
      { name: CRED.taxii, required: true, testedBy: 'setsTaxiiApiTest', displayOptions: { show: { resource: ['object'], operation: ['publish', 'inquire', 'delete'] } } },
      { name: CRED.amqp, required: true, testedBy: 'setsAmqpApiTest', displayOptions: { show: { resource: ['object'], operation: ['distribute'] } } },
      // one entry per ledger credential, chosen by the "Ledger" parameter (shown for hash.* and for
      // object.publish with anchorFirst): n8n looks a credential's displayOptions up by its first
      // entry of that name, so a second entry of the same type would never be consulted
      ...LEDGER_CREDENTIALS,
      { name: CRED.store, required: true, testedBy: 'setsStoreApiTest', displayOptions: { show: { resource: ['record'] } } },
    ],
    properties,
  };

  methods = {
    credentialTest: { setsTaxiiApiTest, setsAmqpApiTest, setsEvmLedgerApiTest, setsFabricLedgerApiTest, setsStoreApiTest },
  };

  async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
    const items = this.getInputData();
    const resource = this.getNodeParameter('resource', 0) as string;
    const operation = this.getNodeParameter('operation', 0) as string;
    const op = OPERATIONS[resource]?.[operation];
    if (!op) throw toNodeError(this.getNode(), new Error(`unknown operation ${resource}.${operation}`));
    const res = new ops.Resources(this);
    try {
      return await op({ fn: this, items, res });
    } catch (err) {
      // a failure that concerns every item (bad credential, unreachable service); per-item
      // failures were already turned into error items or thrown with their itemIndex
      if (this.continueOnFail() && !hasItemIndex(err)) return [items.map((_, i) => ({ json: errorJson(err), pairedItem: { item: i } }))];
      throw toNodeError(this.getNode(), err);
    } finally {
      await res.close();
    }
  }
}
