/**
 * taxii-inquire (paper step 5, "inquiry"): GET objects, one object, its versions, or the manifest
 * of a TAXII collection, with filters from the node and msg.filters, following every page.
 * Output: one message with everything, one per page, or one per object; msg.collection is set so
 * a verify-hash node downstream checks the objects against the right ledger keys (step 6).
 */
import type { NodeAPI, NodeDef, Node, NodeMessage, NodeStatus, SetsMessage } from '../shared/types';
import { registerAdminEndpoints } from '../shared/admin-endpoints';
import type { TaxiiOwner } from '../shared/owners';
import { int, oneOf, optStr } from '../shared/config';
import { onInput } from '../shared/input';
import { configStatus } from '../shared/status';
import { NoConnectionError } from '../shared/use-connection';
import { collectionSetting } from '../shared/collection-property';
import { mergeSets } from '../../lib/ops/result';
import { buildFilters, inquireItems, type FilterSettings, type InquireItem, type InquireOperation } from '../../lib/ops/taxii';
import { OpsError } from '../../lib/ops/errors';

interface InquireDef extends NodeDef {
  server?: string;
  collection?: string;
  /** str (default, older flows) | msg | flow | env */
  collectionType?: string;
  operation?: string;
  objectId?: string;
  addedAfter?: string;
  matchId?: string;
  matchType?: string;
  matchVersion?: string;
  matchSpecVersion?: string;
  limit?: number | string;
  maxItems?: number | string;
  output?: string;
}

const OPERATIONS = ['objects', 'object', 'versions', 'manifest'] as const;

export = function register(RED: NodeAPI): void {
  registerAdminEndpoints(RED);
  function TaxiiInquireNode(this: Node, def: InquireDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: InquireDef): void {
    const collectionOf = collectionSetting(RED, node, def);
    const owner = (def.server ? RED.nodes.getNode(def.server) : null) as TaxiiOwner | null;
    let setupError: Error | undefined;
    let operation: InquireOperation = 'objects';
    let output: 'all' | 'page' | 'object' = 'all';
    let pageSize = 100;
    let maxItems = 10_000;
    let configFilters: FilterSettings = {};
    try {
      operation = oneOf(def.operation, 'operation', OPERATIONS, 'objects');
      output = oneOf(def.output, 'output', ['all', 'page', 'object'] as const, 'all');
      pageSize = int(def.limit, 'page size', 100, 1, 100_000);
      maxItems = int(def.maxItems, 'at most', 10_000, 0, Number.MAX_SAFE_INTEGER);
      configFilters = {
        added_after: optStr(def.addedAfter),
        limit: pageSize,
        'match[id]': optStr(def.matchId),
        'match[type]': optStr(def.matchType),
        'match[version]': optStr(def.matchVersion),
        'match[spec_version]': optStr(def.matchSpecVersion),
      };
      buildFilters(configFilters);
    } catch (err) {
      setupError = err as Error;
    }
    setupError ??= collectionOf.error;
    if (!owner) node.status(configStatus('taxii-inquire.status.no-server'));
    else if (setupError) node.status(configStatus(setupError.message));

    let last: NodeStatus = {};
    onInput<SetsMessage>(node, { busyText: 'taxii-inquire.status.inquiring', idle: () => last }, async (msg, send) => {
      if (setupError) throw setupError;
      if (!owner) throw new NoConnectionError('NO_CONFIG', 'no TAXII server configured: select one in the node settings');
      const { client } = owner.connection();
      const collection = await collectionOf.resolve(msg);
      const msgFilters = msg.filters;
      if (msgFilters !== undefined && (typeof msgFilters !== 'object' || msgFilters === null || Array.isArray(msgFilters))) {
        throw new OpsError('BAD_FILTER', 'msg.filters must be an object such as {added_after, limit, match: {type: "indicator"}}');
      }
      const filters = buildFilters(configFilters, msgFilters as FilterSettings | undefined);
      const chunk = filters.limit ?? pageSize;
      const objectId = typeof msg.objectId === 'string' && msg.objectId ? msg.objectId : optStr(def.objectId);
      const items = inquireItems(client, { operation, collection, objectId, filters, maxItems });

      const info = (count: number, limitReached: boolean): Record<string, unknown> => ({
        collection,
        operation,
        ...(objectId && (operation === 'object' || operation === 'versions') ? { objectId } : {}),
        count,
        ...(limitReached ? { limitReached: true } : {}),
      });
      const out = (payload: unknown, extra: Record<string, unknown>): NodeMessage => {
        const m = RED.util.cloneMessage(msg) as SetsMessage;
        m.payload = payload;
        m.collection = collection;
        m.sets = mergeSets(m.sets, ['inquiry'], { inquiry: extra });
        return m;
      };

      let total = 0;
      if (output === 'all') {
        const all: InquireItem[] = [];
        for await (const it of items) all.push(it);
        total = all.length;
        send(out(all, info(total, maxItems > 0 && total >= maxItems)));
      } else {
        // hold one message back so the last of the sequence can carry parts.count
        const seqId = RED.util.generateId();
        let pending: NodeMessage | undefined;
        let index = 0;
        const emit = (payload: unknown): void => {
          if (pending) send(pending);
          pending = out(payload, info(total, false));
          pending.parts = { id: seqId, index: index++ };
        };
        let page: InquireItem[] = [];
        for await (const it of items) {
          total += 1;
          if (output === 'object') emit(it);
          else {
            page.push(it);
            if (page.length >= chunk) {
              emit(page);
              page = [];
            }
          }
        }
        if (page.length) emit(page);
        if (pending) {
          const parts = pending.parts as { id: string; index: number; count?: number };
          parts.count = index;
          (pending as SetsMessage).sets = mergeSets((pending as SetsMessage).sets, ['inquiry'], {
            inquiry: info(total, maxItems > 0 && total >= maxItems),
          });
          send(pending);
        }
      }
      last = { fill: 'green', shape: 'dot', text: `${total} ${operation === 'versions' ? 'version(s)' : operation === 'manifest' ? 'record(s)' : 'object(s)'}` };
    });
  }

  RED.nodes.registerType('taxii-inquire', TaxiiInquireNode);
};
