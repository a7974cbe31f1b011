/**
 * SETS Trigger (n8n trigger node `setsTrigger`) — paper step 4, "subscribe": consume STIX objects
 * from RabbitMQ (the SETS topic exchange, routing key `<collection>.<type>`), verify each one
 * against the ledger (optional, on by default), and start one execution per message.
 *
 * CONTRACT (names are stable; workflows depend on them)
 * Parameters:
 *   subscribeTo        types (collection + STIX types) | keys (raw binding keys)
 *   collection         collection id ("types" mode; empty = every collection)
 *   types              comma-separated STIX types ("types" mode; empty = every type)
 *   bindingKeys        comma/newline-separated binding keys ("keys" mode), e.g. `*.indicator`, `#`
 *   queue              durable named queue (shared by competing consumers); empty = the trigger's own
 *                      durable queue `sets.n8n.<workflow id>.<node id>` (a temporary one with
 *                      options.temporaryQueue, and in the editor's "listen for test event")
 *   verify             verify against the ledger
 *   ledger             evm | fabric (verify; default evm, also for workflows without it): credential
 *                      setsEvmLedgerApi | setsFabricLedgerApi
 *   waitForAnchor      ms to wait for a not-yet-mined anchor (verify)
 *   onRejected         secondOutput (output 2 "Rejected", acked after the execution like output 1) |
 *                      deadLetter (nack without requeue -> options.deadLetterQueue) |
 *                      discard (ack, not emitted, logged as a warning)
 *   options            parallelMessages (prefetch, default 10), deadLetterQueue (declares <name>.dlx
 *                      and the durable queue <name>), onExecutionFailure (requeue | deadLetter),
 *                      queueType (auto | classic | quorum; auto = quorum for the trigger's own queue),
 *                      deliveryLimit (default 5, 0 = none), messageTtl (s), temporaryQueue
 * Credentials: setsAmqpApi (required), setsEvmLedgerApi or setsFabricLedgerApi (when verify, per ledger).
 * Items (one execution per message; one item per object when verifying, else per message):
 *   json = { object, collection, sets?: { verification: {status, id, collection, version, key,
 *            expected?, actual, writer?, timestamp?, reason?} }, amqp: { routingKey, exchange, queue,
 *            messageId, redelivered, headers } }
 * Acknowledgement: a message is acked only once its execution has finished successfully
 * (emit(..., donePromise)); a failed execution is requeued or dead-lettered per
 * onExecutionFailure. A message that is not JSON or not verifiable (no STIX id) is nacked without
 * requeue (-> dead-letter queue when set) and logged. A ledger that cannot be read is not a
 * rejection: the message is requeued after a pause — so is a message with an object whose
 * verification is `unknown` (could not decide: ledger unreachable, wait ran out); it is never
 * emitted as verified nor dead-lettered as rejected (after the delivery limit the broker's
 * dead-letter queue keeps it). Items carry `amqp.redelivered` and `amqp.deliveryCount`; the
 * messageId of a STIX publish is derived from (collection, id, version, hash), the key to
 * recognise a copy (at-least-once). In the editor's "listen for test event" the
 * message shown is acknowledged at once.
 * closeFunction cancels the consumer (unsettled messages return to the queue), closes the broker
 * connection and the ledger, and clears every timer.
 */
import {
  type IDataObject,
  type INodeExecutionData,
  type INodeType,
  type INodeTypeDescription,
  type IRun,
  type ITriggerFunctions,
  type ITriggerResponse,
} from 'n8n-workflow';
import { AmqpBus, type BusDelivery, type SubscribeOptions, type Subscription } from '../../lib/bus/amqp';
import { bindingKeys } from '../../lib/bus/routing';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { checkCollection } from '../../lib/ops/collection';
import { isOpsError, messageOf } from '../../lib/ops/errors';
import { list } from '../../lib/ops/settings';
import { verifyPayload } from '../../lib/ops/verify';
import { connectBroker } from '../n8n-shared/broker';
import { CRED, LEDGER_CREDENTIALS, brokerFromCredential, hmacKeyOf, ledgerCredentialType, ledgerFromKind, ledgerKindOf, ledgerProperty } from '../n8n-shared/connections';
import { setsAmqpApiTest, setsEvmLedgerApiTest, setsFabricLedgerApiTest } from '../n8n-shared/credential-tests';
import { operationError, toNodeError } from '../n8n-shared/errors';
import { toJson } from '../n8n-shared/items';
import { within } from '../n8n-shared/util';

/** Pause before a message is handed back after the ledger could not be read (no hot redelivery loop). */
const LEDGER_RETRY_MS = 5_000;
/** Longest wait for the consumer to become active once the broker connection is up. */
const READY_TIMEOUT_MS = 30_000;

function configuredOutputs(parameters: { verify?: boolean; onRejected?: string }) {
  // plain JavaScript on purpose: n8n evaluates this function's source in its expression sandbox
  const verify = parameters.verify !== false;
  const onRejected = parameters.onRejected || 'secondOutput';
  if (verify && onRejected === 'secondOutput') {
    return [
      { type: 'main', displayName: 'Verified' },
      { type: 'main', displayName: 'Rejected' },
    ];
  }
  return [{ type: 'main' }];
}

export class SetsTrigger implements INodeType {
  description: INodeTypeDescription = {
    displayName: 'SETS Trigger',
    name: 'setsTrigger',
    icon: 'file:sets.svg',
    group: ['trigger'],
    version: 1,
    // "collection 91a7b528… · indicator, malware" / "keys: *.indicator, #": the collection id cut
    // to its first 8 characters, the lists joined with ", "
    subtitle:
      '={{ $parameter["subscribeTo"] === "keys" ? "keys: " + (String($parameter["bindingKeys"] || "").split(/[\\n,]/).map(k => k.trim()).filter(k => k).join(", ") || "none") : ($parameter["collection"] ? "collection " + (String($parameter["collection"]).trim().length > 9 ? String($parameter["collection"]).trim().slice(0, 8) + "…" : String($parameter["collection"]).trim()) : "all collections") + (String($parameter["types"] || "").split(",").some(t => t.trim()) ? " · " + String($parameter["types"]).split(",").map(t => t.trim()).filter(t => t).join(", ") : "") }}',
    description: 'Receive STIX objects from RabbitMQ and verify them against the SETS ledger',
    eventTriggerDescription: 'Waiting for a STIX object on RabbitMQ',
    defaults: { name: 'SETS Trigger' },
    inputs: [],
    outputs: `={{(${configuredOutputs.toString()})($parameter)}}`,
    credentials: [
      { name: CRED.amqp, required: true, testedBy: 'setsAmqpApiTest' },
      // the ledger's credential, by the "Ledger" parameter (shown when verifying)
      ...LEDGER_CREDENTIALS,
    ],
    properties: [
      {
        displayName: 'Subscribe To',
        name: 'subscribeTo',
        type: 'options',
        options: [
          { name: 'Collection and STIX Types', value: 'types' },
          { name: 'Raw Binding Keys', value: 'keys' },
        ],
        default: 'types',
      },
      {
        displayName: 'Collection',
        name: 'collection',
        type: 'string',
        default: '',
        displayOptions: { show: { subscribeTo: ['types'] } },
        description: 'Collection id (empty: every collection)',
      },
      {
        displayName: 'STIX Types',
        name: 'types',
        type: 'string',
        default: '',
        placeholder: 'indicator,malware,relationship',
        displayOptions: { show: { subscribeTo: ['types'] } },
        description: 'Comma-separated STIX types (empty: every type)',
      },
      {
        displayName: 'Binding Keys',
        name: 'bindingKeys',
        type: 'string',
        default: '',
        placeholder: '*.indicator',
        displayOptions: { show: { subscribeTo: ['keys'] } },
        description: 'Comma- or newline-separated topic binding keys on the SETS exchange (<collection>.<type>, * one word, # any)',
      },
      {
        displayName: 'Queue',
        name: 'queue',
        type: 'string',
        default: '',
        description:
          'Durable queue name: messages wait there while the workflow is inactive, and several n8n instances share the work. Empty: the trigger\'s own durable queue sets.n8n.<workflow ID>.<node ID> (see Options › Temporary Queue).',
      },
      {
        displayName: 'Verify Against Ledger',
        name: 'verify',
        type: 'boolean',
        default: true,
        noDataExpression: true,
        description: 'Whether to recompute each object\'s hash and compare it with the one anchored on the ledger (paper step 4)',
      },
      ledgerProperty({ verify: [true] }),
      {
        displayName: 'Wait for Anchor (Ms)',
        name: 'waitForAnchor',
        type: 'number',
        typeOptions: { minValue: 0 },
        default: 10000,
        displayOptions: { show: { verify: [true] } },
        description: 'How long to wait for an anchor that is not mined yet (the producer may publish before its anchor is mined)',
      },
      {
        displayName: 'Rejected Objects',
        name: 'onRejected',
        type: 'options',
        noDataExpression: true,
        displayOptions: { show: { verify: [true] } },
        options: [
          { name: 'Send to Second Output', value: 'secondOutput', description: 'Output 2 "Rejected" (mismatch, not-anchored, wrong-writer or conflict, with the reason)' },
          { name: 'Dead-Letter', value: 'deadLetter', description: 'Not emitted; the message goes to the dead-letter queue (set one in the options)' },
          { name: 'Discard', value: 'discard', description: 'Not emitted; acknowledged and logged as a warning' },
        ],
        default: 'secondOutput',
      },
      {
        displayName: 'Options',
        name: 'options',
        type: 'collection',
        placeholder: 'Add Option',
        default: {},
        options: [
          {
            displayName: 'Parallel Messages',
            name: 'parallelMessages',
            type: 'number',
            typeOptions: { minValue: 1, maxValue: 65535 },
            default: 10,
            description: 'Most messages being processed at once (AMQP prefetch)',
          },
          {
            displayName: 'Dead-Letter Queue',
            name: 'deadLetterQueue',
            type: 'string',
            default: '',
            description: 'Durable queue keeping refused messages (declares the exchange <name>.dlx). Empty: refused messages are dropped (and logged).',
          },
          {
            displayName: 'Delivery Limit',
            name: 'deliveryLimit',
            type: 'number',
            typeOptions: { minValue: 0 },
            default: 5,
            description: 'Most deliveries of one message: one handed back more often (failed executions, undecided verification) goes to the dead-letter queue instead of looping. 0: no limit.',
          },
          {
            displayName: 'Message TTL (Seconds)',
            name: 'messageTtl',
            type: 'number',
            typeOptions: { minValue: 0 },
            default: 0,
            description: 'Messages waiting longer are dead-lettered by the broker. 0: none. Cannot be changed on an existing queue.',
          },
          {
            displayName: 'Queue Type',
            name: 'queueType',
            type: 'options',
            options: [
              { name: 'Auto', value: 'auto', description: 'Quorum for the trigger\'s own queue, classic for a queue you named (it may exist already)' },
              { name: 'Quorum', value: 'quorum', description: 'Replicated; the broker counts deliveries' },
              { name: 'Classic', value: 'classic' },
            ],
            default: 'auto',
          },
          {
            displayName: 'Temporary Queue',
            name: 'temporaryQueue',
            type: 'boolean',
            default: false,
            description: 'Whether to use a temporary queue that exists only while the workflow is active (messages sent while it is inactive or reconnecting are lost) instead of a durable one',
          },
          {
            displayName: 'On Execution Failure',
            name: 'onExecutionFailure',
            type: 'options',
            options: [
              { name: 'Requeue', value: 'requeue', description: 'The broker delivers the message again' },
              { name: 'Dead-Letter', value: 'deadLetter', description: 'To the dead-letter queue (or dropped when none is set)' },
            ],
            default: 'requeue',
          },
        ],
      },
    ],
  };

  methods = {
    credentialTest: { setsAmqpApiTest, setsEvmLedgerApiTest, setsFabricLedgerApiTest },
  };

  async trigger(this: ITriggerFunctions): Promise<ITriggerResponse> {
    const node = this.getNode();
    const manual = this.getMode() === 'manual';
    const param = (name: string, fallback: unknown): unknown => this.getNodeParameter(name, fallback);
    const options = (param('options', {}) ?? {}) as IDataObject;

    // -- settings (every problem named before anything is opened) ------------------------------
    let sub: SubscribeOptions;
    const verify = param('verify', true) !== false;
    const onRejected = String(param('onRejected', 'secondOutput'));
    const onFailure = String(options.onExecutionFailure ?? 'requeue');
    const waitMs = Number(param('waitForAnchor', 10_000));
    const configuredCollection = String(param('collection', '')).trim();
    try {
      const mode = String(param('subscribeTo', 'types'));
      const bindings =
        mode === 'keys'
          ? list(param('bindingKeys', ''))
          : bindingKeys({
              ...(configuredCollection ? { collection: checkCollection(configuredCollection) } : {}),
              ...(list(param('types', '')).length ? { types: list(param('types', '')) } : {}),
            });
      if (bindings.length === 0) throw new Error('no binding keys: give raw binding keys, or choose "Collection and STIX Types"');
      sub = { bindings, ackMode: 'manual', settleTimeoutMs: 2_000 };
      const queue = String(param('queue', '')).trim();
      const temporary = options.temporaryQueue === true;
      // the trigger's own durable queue: stable across restarts and renames (workflow id + node id);
      // the editor's test listener uses a temporary one, so it takes nothing meant for the active workflow
      const workflowId = this.getWorkflow().id;
      const own = !queue && !temporary && !manual && workflowId !== undefined && workflowId !== '';
      if (queue && !temporary) sub.queue = queue;
      else if (own) sub.queue = `sets.n8n.${workflowId}.${node.id}`;
      const queueType = String(options.queueType ?? 'auto');
      if (!['auto', 'classic', 'quorum'].includes(queueType)) throw new Error(`unknown Queue Type "${queueType}"`);
      if (sub.queue !== undefined) sub.queueType = queueType === 'quorum' || (queueType === 'auto' && own) ? 'quorum' : 'classic';
      else if (queueType === 'quorum') throw new Error('a temporary queue cannot be a quorum queue: name a queue or turn Temporary Queue off');
      const limit = Number(options.deliveryLimit ?? 5);
      if (!Number.isInteger(limit) || limit < 0) throw new Error('Delivery Limit must be a whole number >= 0');
      if (limit > 0) sub.deliveryLimit = limit;
      const ttl = Number(options.messageTtl ?? 0);
      if (!Number.isInteger(ttl) || ttl < 0) throw new Error('Message TTL must be a whole number of seconds >= 0');
      if (ttl > 0) sub.messageTtlMs = ttl * 1000;
      sub.prefetch = manual ? 1 : Number(options.parallelMessages ?? 10);
      if (!Number.isInteger(sub.prefetch) || sub.prefetch < 1 || sub.prefetch > 65_535) throw new Error('Parallel Messages must be a whole number from 1 to 65535');
      const dlq = String(options.deadLetterQueue ?? '').trim();
      if (dlq) {
        sub.deadLetterExchange = `${dlq}.dlx`;
        sub.deadLetterQueue = dlq;
      }
      if (verify && onRejected === 'deadLetter' && !dlq) throw new Error('"Rejected Objects: Dead-Letter" needs a dead-letter queue (Options › Dead-Letter Queue)');
      if (verify && (!Number.isFinite(waitMs) || waitMs < 0 || waitMs > 3_600_000)) throw new Error('Wait for Anchor must be between 0 and 3,600,000 ms');
    } catch (err) {
      throw operationError(node, messageOf(err), { description: 'check the node parameters', cause: err });
    }

    // -- connections ---------------------------------------------------------------------------
    const amqpCred = await this.getCredentials(CRED.amqp);
    let ledger: Ledger | undefined;
    let hmacKey: string | undefined;
    let bus: AmqpBus | undefined;
    let connectTimeoutMs = 10_000;
    let subscription: Subscription | undefined;
    const timers = new Set<NodeJS.Timeout>();
    let closed = false;
    const closeAll = async (): Promise<void> => {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      if (subscription) await subscription.cancel().catch(() => undefined);
      if (bus) await bus.close().catch(() => undefined);
      if (ledger) await ledger.close().catch(() => undefined);
    };
    try {
      if (verify) {
        // the "Ledger" parameter (absent in workflows from before it: EVM) picks the credential
        const kind = ledgerKindOf(this.getNodeParameter('ledger', 'evm'));
        const ledgerCred = await this.getCredentials(ledgerCredentialType(kind));
        ledger = createLedger(ledgerFromKind(kind, ledgerCred));
        hmacKey = hmacKeyOf(ledgerCred);
      }
      const cfg = brokerFromCredential(amqpCred, `n8n SETS Trigger ${node.name}`);
      if (cfg.connectTimeoutMs !== undefined) connectTimeoutMs = cfg.connectTimeoutMs;
      bus = new AmqpBus(cfg);
      bus.onWarning((w) => this.logger.warn(`SETS Trigger "${node.name}": ${w.message}`));
    } catch (err) {
      await closeAll();
      throw operationError(node, messageOf(err), { description: 'check the credentials', cause: err });
    }

    // -- one delivery ----------------------------------------------------------------------------
    const where = (d: BusDelivery): string => `message ${d.messageId ?? d.deliveryTag} on ${d.routingKey}`;
    const refuse = (d: BusDelivery, why: string): void => {
      d.nack({ requeue: false });
      this.logger.error(`SETS Trigger "${node.name}": ${where(d)} refused and ${sub.deadLetterQueue ? `dead-lettered to ${sub.deadLetterQueue}` : 'dropped (no dead-letter queue set)'}: ${why}`);
    };
    const amqpInfo = (d: BusDelivery): IDataObject =>
      toJson({ routingKey: d.routingKey, exchange: d.exchange, queue: d.queue, messageId: d.messageId, redelivered: d.redelivered, deliveryCount: d.deliveryCount, headers: d.headers });
    const handBack = (d: BusDelivery, why: string): void => {
      this.logger.warn(`SETS Trigger "${node.name}": ${where(d)} ${why}; requeued in ${LEDGER_RETRY_MS / 1000} s (delivery ${d.deliveryCount}${sub.deliveryLimit ? ` of ${sub.deliveryLimit}` : ''})`);
      const t = setTimeout(() => {
        timers.delete(t);
        d.nack({ requeue: true });
      }, LEDGER_RETRY_MS);
      timers.add(t);
    };

    const handle = async (d: BusDelivery): Promise<void> => {
      let payload: unknown;
      try {
        payload = d.json();
      } catch (err) {
        refuse(d, `not JSON: ${messageOf(err)}`);
        return;
      }
      const amqp = amqpInfo(d);
      const collection = d.collection ?? (configuredCollection || undefined);
      const verified: INodeExecutionData[] = [];
      const rejected: INodeExecutionData[] = [];
      if (!ledger) {
        verified.push({ json: { object: toJson(payload), ...(collection ? { collection } : {}), amqp } });
      } else {
        if (!collection) {
          refuse(d, 'no collection: the routing key is not <collection>.<type> and the node names none');
          return;
        }
        let results;
        try {
          results = await verifyPayload(ledger, { collection, payload, waitMs, ...(hmacKey ? { hmacKey } : {}) });
        } catch (err) {
          if (isOpsError(err) && err.code === 'BAD_PAYLOAD') {
            refuse(d, messageOf(err));
            return;
          }
          // the ledger cannot be read: not the message's fault; hand it back after a pause
          handBack(d, `cannot be verified (${messageOf(err)})`);
          return;
        }
        const undecided = results.filter((r) => (r.verification.status as string) === 'unknown');
        if (undecided.length > 0) {
          // could not decide (ledger unreachable, wait ran out): not a rejection, not verified — try again later
          handBack(d, `undecided: ${undecided.map((r) => r.verification.reason ?? `${r.verification.id}: unknown`).join('; ')}`);
          return;
        }
        for (const r of results) {
          const item: INodeExecutionData = { json: { object: toJson(r.object), collection, sets: { verification: toJson(r.verification) }, amqp } };
          (r.verification.status === 'verified' ? verified : rejected).push(item);
        }
      }
      if (closed) return; // deactivated meanwhile: the broker redelivers it
      let emitRejected = false;
      if (rejected.length > 0) {
        const reasons = rejected.map((r) => String((r.json.sets as IDataObject).verification && ((r.json.sets as IDataObject).verification as IDataObject).reason)).join('; ');
        if (onRejected === 'deadLetter') {
          refuse(d, `rejected by verification: ${reasons}`);
          if (verified.length === 0) return;
          // the message is dead-lettered whole; its verified objects still run (already settled)
          this.emit([verified, []]);
          return;
        }
        if (onRejected === 'discard') {
          this.logger.warn(`SETS Trigger "${node.name}": ${where(d)} rejected by verification and discarded: ${reasons}`);
          if (verified.length === 0) {
            d.ack();
            return;
          }
        } else emitRejected = true;
      }
      const data = ledger && onRejected === 'secondOutput' ? [verified, emitRejected ? rejected : []] : [verified];
      if (manual) {
        this.emit(data);
        d.ack();
        return;
      }
      const done = this.helpers.createDeferredPromise<IRun>();
      this.emit(data, undefined, done);
      let run: IRun | undefined;
      try {
        run = await done.promise;
      } catch (err) {
        run = undefined;
        this.logger.error(`SETS Trigger "${node.name}": execution for ${where(d)} failed: ${messageOf(err)}`);
      }
      const failed = !run || run.data?.resultData?.error !== undefined || run.status === 'error' || run.status === 'crashed';
      if (!failed) {
        if (!d.ack()) this.logger.warn(`SETS Trigger "${node.name}": ${where(d)} processed but the channel closed before the ack: the broker delivers it again`);
        return;
      }
      const requeue = onFailure !== 'deadLetter';
      d.nack({ requeue });
      this.logger.warn(`SETS Trigger "${node.name}": execution for ${where(d)} failed; ${requeue ? 'requeued' : sub.deadLetterQueue ? `dead-lettered to ${sub.deadLetterQueue}` : 'dropped (no dead-letter queue set)'}`);
    };

    // -- subscribe (activation fails with the broker's reason) -----------------------------------
    const start = async (): Promise<void> => {
      // the first failed connect attempt fails the activation at once, naming the broker's
      // host:port and the reason (n8n retries activations itself, as for its RabbitMQ trigger);
      // after activation the bus reconnects by itself when the broker goes away
      try {
        await connectBroker(bus as AmqpBus, connectTimeoutMs);
      } catch (err) {
        await closeAll();
        throw toNodeError(node, err);
      }
      try {
        subscription = (bus as AmqpBus).subscribe(sub, handle);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          subscription.ready(),
          new Promise<never>((_resolve, reject) => {
            timer = setTimeout(() => reject(new Error(`RabbitMQ consumer not active after ${READY_TIMEOUT_MS / 1000} s (${bus?.detail || bus?.state})`)), READY_TIMEOUT_MS);
          }),
        ]).finally(() => clearTimeout(timer));
      } catch (err) {
        const detail = bus?.detail;
        await closeAll();
        throw operationError(node, `cannot subscribe: ${messageOf(err)}`, { ...(detail ? { description: detail } : {}), cause: err });
      }
    };
    const closeFunction = async (): Promise<void> => {
      // unsettled deliveries go back to the queue when the channel closes (at-least-once)
      await within(closeAll(), 15_000);
    };
    // in the editor's test mode n8n installs the emit that shows the event only after trigger()
    // returns: consume from manualTriggerFunction, so no message reaches the wrong emit
    if (manual) return { closeFunction, manualTriggerFunction: start };
    await start();
    return { closeFunction };
  }
}
