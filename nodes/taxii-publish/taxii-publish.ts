/**
 * taxii-publish (paper step 1, "publish t"): POST the payload's STIX objects as an envelope to a
 * TAXII collection, wait for the server's status (optional), put it in msg.sets.taxii. Objects
 * the server refused fail the message (Catch node) or pass on, by configuration.
 */
import type { NodeAPI, NodeDef, Node, NodeStatus, SetsMessage } from '../shared/types';
import { registerAdminEndpoints } from '../shared/admin-endpoints';
import type { TaxiiOwner } from '../shared/owners';
import { bool, int, oneOf, str } from '../shared/config';
import { onInput } from '../shared/input';
import { configStatus } from '../shared/status';
import { NoConnectionError } from '../shared/use-connection';
import { resolveCollection } from '../../lib/ops/collection';
import { mergeSets } from '../../lib/ops/result';
import { publishToTaxii, rejectionError } from '../../lib/ops/taxii';
import type { AddObjectsResult } from '../../lib/taxii/client';

interface PublishDef extends NodeDef {
  server?: string;
  collection?: string;
  waitStatus?: boolean | string;
  statusTimeout?: number | string;
  onFailure?: string;
}

/** The status resource as it goes into msg.sets.taxii (`requests` only when the batch was split). */
function statusForMsg(status: AddObjectsResult): Record<string, unknown> {
  const { requests, ...rest } = status;
  return requests.length > 1 ? { ...rest, requests } : rest;
}

export = function register(RED: NodeAPI): void {
  registerAdminEndpoints(RED);
  function TaxiiPublishNode(this: Node, def: PublishDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: PublishDef): void {
    const owner = (def.server ? RED.nodes.getNode(def.server) : null) as TaxiiOwner | null;
    let setupError: Error | undefined;
    let wait = true;
    let statusTimeoutMs = 30_000;
    let onFailure: 'error' | 'pass' = 'error';
    try {
      wait = bool(def.waitStatus, true);
      statusTimeoutMs = int(def.statusTimeout, 'status wait', 30_000, 0, 3_600_000);
      onFailure = oneOf(def.onFailure, 'rejected objects', ['error', 'pass'] as const, 'error');
    } catch (err) {
      setupError = err as Error;
    }
    if (!owner) node.status(configStatus('taxii-publish.status.no-server'));
    else if (setupError) node.status(configStatus(setupError.message));

    let last: NodeStatus = {};
    onInput<SetsMessage>(node, { busyText: 'taxii-publish.status.publishing', idle: () => last }, async (msg, send) => {
      if (setupError) throw setupError;
      if (!owner) throw new NoConnectionError('NO_CONFIG', 'no TAXII server configured: select one in the node settings');
      const { client } = owner.connection();
      const collection = resolveCollection(msg.collection, str(def.collection));
      const result = await publishToTaxii(client, { collection, payload: msg.payload, wait, statusTimeoutMs });
      const st = result.status;
      msg.sets = mergeSets(msg.sets, ['taxii'], { taxii: statusForMsg(st) });
      const text = `${st.success_count} ok${st.failure_count ? `, ${st.failure_count} rejected` : ''}${st.pending_count ? `, ${st.pending_count} pending` : ''}`;
      last = st.failure_count ? { fill: 'yellow', shape: 'ring', text } : { fill: 'green', shape: 'dot', text };
      const rejected = rejectionError(collection, st);
      if (rejected && onFailure === 'error') throw rejected;
      send(msg);
    });
  }

  RED.nodes.registerType('taxii-publish', TaxiiPublishNode);
};
