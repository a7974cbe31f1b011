/**
 * taxii-publish (paper step 1, "publish t"): POST the payload's STIX objects as an envelope to a
 * TAXII collection, wait for the server's status (optional), put it in msg.sets.taxii. Objects
 * the server refused fail the message (Catch node) or pass on, by configuration.
 */
import type { DoneFn, NodeAPI, NodeDef, Node, NodeMessageInFlow, NodeStatus, SendFn, SetsMessage } from '../shared/types';
import { registerAdminEndpoints } from '../shared/admin-endpoints';
import type { TaxiiOwner } from '../shared/owners';
import { bool, int, oneOf } from '../shared/config';
import { busyStatus, configStatus, errorStatus, shorten } from '../shared/status';
import { NoConnectionError } from '../shared/use-connection';
import { collectionSetting } from '../shared/collection-property';
import { mergeSets } from '../../lib/ops/result';
import { publishToTaxii, rejectionError } from '../../lib/ops/taxii';
import { OpsError } from '../../lib/ops/errors';
import type { AddObjectsResult, StatusDetails } from '../../lib/taxii/client';

interface PublishDef extends NodeDef {
  server?: string;
  collection?: string;
  /** str (default, older flows) | msg | flow | env */
  collectionType?: string;
  waitStatus?: boolean | string;
  statusTimeout?: number | string;
  onFailure?: string;
}

/** The status resource as it goes into msg.sets.taxii (`requests` only when the batch was split). */
function statusForMsg(status: AddObjectsResult): Record<string, unknown> {
  const { requests, ...rest } = status;
  return requests.length > 1 ? { ...rest, requests } : rest;
}

/** `malware--8c1…`: enough of a STIX id to find it in the debug sidebar. */
function shortId(id: string | undefined): string {
  if (!id) return '(no id)';
  const m = /^([a-z0-9-]+)--([0-9a-fA-F]{3})/.exec(id);
  return m ? `${m[1]}--${m[2]}…` : shorten(id, 20);
}

/** The server's reason in a few words ("invalid (tampered)"); the full text is in the error and msg.sets.taxii. */
function shortReason(message: string | undefined): string {
  const m = (message ?? '').trim();
  if (m === '') return 'rejected';
  const tampered = /mismatch|differs/i.test(m);
  if (/marked invalid|already invalid/i.test(m)) return tampered ? 'invalid (tampered)' : 'invalid';
  if (tampered) return 'hash mismatch (tampered)';
  if (/not anchored by a writer/i.test(m)) return 'anchored by an unentitled writer';
  if (/not anchored/i.test(m)) return 'not anchored';
  if (/already uses this id/i.test(m)) return 'id and version taken';
  return m.split(/[:;(]/)[0].trim() || m;
}

/** The red badge of a message whose objects were refused: which object and why, first one; how many. */
function rejectionBadge(status: Pick<AddObjectsResult, 'failure_count'> & { failures?: StatusDetails[] }): NodeStatus {
  const first = status.failures?.[0];
  const more = status.failure_count > 1 ? ` (+${status.failure_count - 1})` : '';
  const what = first ? `${shortId(first.id)}: ${shortReason(first.message)}` : `${status.failure_count} object(s)`;
  return { fill: 'red', shape: 'ring', text: shorten(`✗ rejected ${what}${more}`, 60) };
}

export = function register(RED: NodeAPI): void {
  registerAdminEndpoints(RED);
  function TaxiiPublishNode(this: Node, def: PublishDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: PublishDef): void {
    const collectionOf = collectionSetting(RED, node, def);
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
    setupError ??= collectionOf.error;
    if (!owner) node.status(configStatus('taxii-publish.status.no-server'));
    else if (setupError) node.status(configStatus(setupError.message));

    let last: NodeStatus = {};
    const publish = async (msg: SetsMessage, send: SendFn): Promise<NodeStatus | undefined> => {
      if (setupError) throw setupError;
      if (!owner) throw new NoConnectionError('NO_CONFIG', 'no TAXII server configured: select one in the node settings');
      const { client } = owner.connection();
      const collection = await collectionOf.resolve(msg);
      const result = await publishToTaxii(client, { collection, payload: msg.payload, wait, statusTimeoutMs });
      const st = result.status;
      msg.sets = mergeSets(msg.sets, ['taxii'], { taxii: statusForMsg(st) });
      const text = `${st.success_count} ok${st.failure_count ? `, ${st.failure_count} rejected` : ''}${st.pending_count ? `, ${st.pending_count} pending` : ''}`;
      last = st.failure_count ? { fill: 'yellow', shape: 'ring', text: shorten(`${text}: ${shortId(st.failures?.[0]?.id)}`) } : { fill: 'green', shape: 'dot', text };
      const rejected = rejectionError(collection, st);
      if (rejected && onFailure === 'error') {
        // the message fails (Catch node: the full list and every reason); the badge names the first object and why
        last = rejectionBadge(st);
        throw rejected;
      }
      send(msg);
      return undefined;
    };

    // like shared/input onInput, but a refused object gets its own badge instead of the error's code and start
    let inFlight = 0;
    node.on('input', (msg: NodeMessageInFlow, send: SendFn, done: DoneFn) => {
      inFlight += 1;
      if (inFlight === 1) node.status(busyStatus('taxii-publish.status.publishing'));
      const finish = (err?: unknown): void => {
        inFlight -= 1;
        if (err !== undefined) {
          node.status(err instanceof OpsError && err.code === 'TAXII_REJECTED' ? last : errorStatus(err));
          done(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        if (inFlight === 0) node.status(last);
        done();
      };
      publish(msg as SetsMessage, send).then(
        () => finish(),
        (err: unknown) => finish(err ?? new Error('publish failed')),
      );
    });
  }

  RED.nodes.registerType('taxii-publish', TaxiiPublishNode);
};
