/**
 * The SETS node's operations: thin calls into lib/ops, item in -> item(s) out. Connections are
 * opened per execution by `Resources` and closed in its `close()` (called in a `finally`).
 */
import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { AmqpBus } from '../../lib/bus/amqp';
import { createLedger, type Ledger } from '../../lib/ledger/index';
import { explainAnchorError, prepareAnchors, type AnchorResult, type AnchoredItem, type PreparedObject } from '../../lib/ops/anchor';
import { OpsError, messageOf } from '../../lib/ops/errors';
import { hashesFromSets, publishPayload } from '../../lib/ops/publish';
import { anchorFragment, wholeVerificationFragment } from '../../lib/ops/result';
import {
  countStatuses,
  effectiveWaitMs,
  integrityTarget,
  parseStatusQuery,
  queryStatuses,
  settleIntegrity,
  storeVerdictRecorder,
  verificationOf,
} from '../../lib/ops/server-integrity';
import { integrityPolicyOf } from '../../lib/taxii/server-config';
import { list } from '../../lib/ops/settings';
import { createTaxiiConnection, type TaxiiConnection } from '../../lib/ops/taxii-connection';
import { buildFilters, inquireItems, publishToTaxii, rejectionError, type InquireOperation } from '../../lib/ops/taxii';
import { verifyPayload } from '../../lib/ops/verify';
import { acquireStore, type StoreLease } from '../../lib/store/shared';
import type { Store } from '../../lib/store/store';
import type { AddObjectsResult } from '../../lib/taxii/client';
import {
  CRED,
  brokerFromCredential,
  hmacKeyOf,
  ledgerCredentialType,
  ledgerFromKind,
  ledgerKindOf,
  storeFromCredential,
  taxiiFromCredential,
} from '../n8n-shared/connections';
import { connectBroker } from '../n8n-shared/broker';
import { errorJson, operationError, toNodeError } from '../n8n-shared/errors';
import { collectionOf, outItem, readStix, setsOf, toJson, type StixInputMode } from '../n8n-shared/items';
import { mapLimit } from '../n8n-shared/util';

/** Items verified / published at once. */
const ITEM_CONCURRENCY = 8;

/** Connections of one execution, opened on first use, all closed by close(). */
export class Resources {
  private ledger?: Promise<{ ledger: Ledger; hmacKey?: string }>;
  private taxii?: Promise<TaxiiConnection>;
  private bus?: Promise<AmqpBus>;
  private store?: Promise<StoreLease>;

  constructor(private readonly ctx: IExecuteFunctions) {}

  getLedger(): Promise<{ ledger: Ledger; hmacKey?: string }> {
    this.ledger ??= (async () => {
      // the "Ledger" parameter (absent in workflows from before it: EVM) picks the credential
      const kind = ledgerKindOf(this.ctx.getNodeParameter('ledger', 0, 'evm'));
      const data = await this.ctx.getCredentials(ledgerCredentialType(kind));
      const hmac = hmacKeyOf(data);
      return { ledger: createLedger(ledgerFromKind(kind, data)), ...(hmac ? { hmacKey: hmac } : {}) };
    })();
    return this.ledger;
  }

  getTaxii(): Promise<TaxiiConnection> {
    this.taxii ??= (async () => {
      const { settings, secrets } = taxiiFromCredential(await this.ctx.getCredentials(CRED.taxii));
      return createTaxiiConnection(settings, secrets);
    })();
    return this.taxii;
  }

  getBus(): Promise<AmqpBus> {
    this.bus ??= (async () => {
      const cfg = brokerFromCredential(await this.ctx.getCredentials(CRED.amqp), `n8n SETS node ${this.ctx.getNode().name}`);
      const bus = new AmqpBus(cfg);
      try {
        // fails on the first failed attempt, naming host:port and the reason ("Retry On Fail" retries)
        await connectBroker(bus, cfg.connectTimeoutMs ?? 10_000);
      } catch (err) {
        await bus.close().catch(() => undefined);
        throw err;
      }
      return bus;
    })();
    return this.bus;
  }

  getStore(): Promise<Store> {
    this.store ??= (async () => {
      const { settings, secrets } = storeFromCredential(await this.ctx.getCredentials(CRED.store));
      return acquireStore(settings, secrets);
    })();
    return this.store.then((l) => l.store);
  }

  async close(): Promise<void> {
    const jobs: Array<Promise<unknown>> = [];
    if (this.ledger) jobs.push(this.ledger.then((l) => l.ledger.close()));
    if (this.taxii) jobs.push(this.taxii.then((t) => t.close()));
    if (this.bus) jobs.push(this.bus.then((b) => b.close()));
    if (this.store) jobs.push(this.store.then((s) => s.release()));
    await Promise.allSettled(jobs);
  }
}

export interface OpContext {
  fn: IExecuteFunctions;
  items: INodeExecutionData[];
  res: Resources;
}

/** Output of an operation: one list per node output. */
export type OpOutput = INodeExecutionData[][];

/** Per-item failure: an error item (continue on fail) or the n8n error to throw. */
function fail(ctx: OpContext, i: number, err: unknown, extra: IDataObject = {}): INodeExecutionData {
  if (ctx.fn.continueOnFail()) return { json: { ...extra, ...errorJson(err) }, pairedItem: { item: i } };
  throw toNodeError(ctx.fn.getNode(), err, i);
}

function str(ctx: OpContext, name: string, i: number, fallback = ''): string {
  const v = ctx.fn.getNodeParameter(name, i, fallback);
  return typeof v === 'string' ? v : v === undefined || v === null ? fallback : String(v);
}

function num(ctx: OpContext, name: string, i: number, fallback: number): number {
  const v = ctx.fn.getNodeParameter(name, i, fallback);
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) throw new OpsError('BAD_CONFIG', `parameter ${name} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

function opts(ctx: OpContext, name: string, i: number): IDataObject {
  const v = ctx.fn.getNodeParameter(name, i, {});
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as IDataObject) : {};
}

/** The STIX content of item i, its collection, and whether the item's whole json was the content. */
function stixOf(ctx: OpContext, i: number): { payload: unknown; collection: string; whole: boolean } {
  const item = ctx.items[i];
  const mode = str(ctx, 'stixInput', i, 'auto') as StixInputMode;
  const payload = readStix(item, mode, str(ctx, 'stixField', i, 'object'));
  const j = item.json ?? {};
  const whole = mode === 'auto' && (j.object === undefined || j.object === null) && (j.payload === undefined || j.payload === null);
  return { payload, collection: collectionOf(item, str(ctx, 'collection', i)), whole };
}

/**
 * An output item for item i: the input json (or, when the whole json was the STIX content, a fresh
 * `{object, collection}`), with `extra` and the `sets` fragment merged.
 */
function resultItem(ctx: OpContext, i: number, whole: boolean, extra: IDataObject, sets: IDataObject): INodeExecutionData {
  const input = ctx.items[i];
  if (!whole) return outItem(input, i, extra, sets);
  const base: INodeExecutionData = { json: { sets: setsOf(input) }, pairedItem: { item: i } };
  if (input.binary) base.binary = input.binary;
  return outItem(base, i, extra, sets);
}

// ---------------------------------------------------------------------------------------------
// hash: anchor (one ledger batch for every item)

interface AnchorPlan {
  i: number;
  collection: string;
  prepared: PreparedObject[];
  whole: boolean;
  payload: unknown;
}

/**
 * Anchor the objects of the given items in ONE anchorMany call. Returns, per item index, its
 * AnchorResult or the error that concerns it (bad payload, key conflict, ledger failure).
 */
async function anchorBatch(ctx: OpContext, indices: number[]): Promise<Map<number, { plan?: AnchorPlan; result?: AnchorResult; error?: unknown }>> {
  const out = new Map<number, { plan?: AnchorPlan; result?: AnchorResult; error?: unknown }>();
  const plans: AnchorPlan[] = [];
  const { ledger, hmacKey } = await ctx.res.getLedger();
  const byKey = new Map<string, { scope: string; hash: string; item: number }>();
  for (const i of indices) {
    try {
      const { payload, collection, whole } = stixOf(ctx, i);
      const prepared = prepareAnchors({ collection, payload, ...(hmacKey ? { hmacKey } : {}) });
      // one key, one hash within the batch: an item contradicting an earlier one fails alone
      for (const p of prepared) {
        const seen = byKey.get(p.key);
        if (seen && seen.hash !== p.hash) {
          throw new OpsError('BAD_PAYLOAD', `${p.id} version ${p.version ?? '(unversioned)'} appears in item ${seen.item} with different content: one key, one hash`);
        }
      }
      for (const p of prepared) if (!byKey.has(p.key)) byKey.set(p.key, { scope: p.scope, hash: p.hash, item: i });
      const plan = { i, collection, prepared, whole, payload };
      plans.push(plan);
      out.set(i, { plan });
    } catch (err) {
      out.set(i, { error: err });
    }
  }
  if (byKey.size === 0) return out;
  try {
    const entries = [...byKey].map(([key, v]) => ({ scope: v.scope, key, hash: v.hash }));
    const receipts = await ledger.anchorMany(entries);
    const byReceipt = new Map(receipts.map((r) => [r.key, r]));
    for (const plan of plans) {
      const items = plan.prepared.map((p): AnchoredItem => {
        const r = byReceipt.get(p.key);
        if (!r) throw new OpsError('BAD_PAYLOAD', `the ledger returned no receipt for ${p.id}`);
        return { id: p.id, type: p.type, version: p.version, key: p.key, hash: p.hash, anchor: { tx: r.tx, block: r.block, ...(r.existing ? { existing: true } : {}), ...(r.timings ? { timings: r.timings } : {}) } };
      });
      out.set(plan.i, { plan, result: { collection: plan.collection, items, objects: plan.prepared.map((p) => p.object) } });
    }
  } catch (caught) {
    // the batch is one transaction stream: name the item whose key failed when the ledger says
    const key = (caught as { key?: unknown }).key;
    const culprit = typeof key === 'string' ? byKey.get(key)?.item : undefined;
    const culpritPlan = culprit === undefined ? undefined : plans.find((p) => p.i === culprit);
    const oneCollection = new Set(plans.map((p) => p.collection)).size === 1 ? plans[0]?.collection : undefined;
    const where = culpritPlan?.collection ?? oneCollection;
    const err = where === undefined ? caught : explainAnchorError(caught, where);
    for (const plan of plans) {
      const mine = culprit === undefined || culprit === plan.i;
      out.set(plan.i, {
        plan,
        error: mine ? err : new OpsError('BAD_PAYLOAD', `not anchored: the ledger batch failed on item ${culprit}: ${messageOf(err)}`, { cause: err }),
      });
    }
  }
  return out;
}

export async function anchor(ctx: OpContext): Promise<OpOutput> {
  const indices = ctx.items.map((_, i) => i);
  // without "continue on fail" nothing is anchored unless every item is valid (nothing half-done)
  const batch = await anchorBatch(ctx, ctx.fn.continueOnFail() ? indices : validated(ctx, indices));
  const out: INodeExecutionData[] = [];
  for (const i of indices) {
    const r = batch.get(i);
    if (!r || r.error !== undefined || !r.result || !r.plan) {
      out.push(fail(ctx, i, r?.error ?? new OpsError('BAD_PAYLOAD', 'not anchored')));
      continue;
    }
    const extra: IDataObject = { collection: r.plan.collection };
    if (r.plan.whole) extra.object = toJson(r.plan.payload);
    out.push(resultItem(ctx, i, r.plan.whole, extra, toJson(anchorFragment(r.result))));
  }
  return [out];
}

/** Check every item's STIX input before anything is written; throws for the first bad one. */
function validated(ctx: OpContext, indices: number[]): number[] {
  for (const i of indices) {
    try {
      const { payload, collection } = stixOf(ctx, i);
      prepareAnchors({ collection, payload });
    } catch (err) {
      throw toNodeError(ctx.fn.getNode(), err, i);
    }
  }
  return indices;
}

// ---------------------------------------------------------------------------------------------
// hash: verify

export async function verify(ctx: OpContext): Promise<OpOutput> {
  const { ledger, hmacKey } = await ctx.res.getLedger();
  const perItem = await mapLimit(ctx.items, ITEM_CONCURRENCY, async (_item, i) => {
    try {
      const { payload, collection, whole } = stixOf(ctx, i);
      const waitMs = num(ctx, 'waitForAnchor', i, 10_000);
      if (waitMs < 0 || waitMs > 3_600_000) throw new OpsError('BAD_CONFIG', 'Wait for Anchor must be between 0 and 3,600,000 ms');
      const wait = effectiveWaitMs((ctx.items[i]?.json as IDataObject | undefined)?.['sets'], waitMs);
      const results = await verifyPayload(ledger, { collection, payload, waitMs: wait, ...(hmacKey ? { hmacKey } : {}) });
      return { results, collection, whole };
    } catch (err) {
      return { error: err };
    }
  });
  const verified: INodeExecutionData[] = [];
  const rejected: INodeExecutionData[] = [];
  // the node's outputs follow this parameter (not an expression: noDataExpression)
  const onRejected = str(ctx, 'onRejected', 0, 'secondOutput');
  const twoOutputs = onRejected === 'secondOutput';
  perItem.forEach((r, i) => {
    if ('error' in r) {
      verified.push(fail(ctx, i, r.error));
      return;
    }
    const mode = str(ctx, 'mode', i, 'split');
    const failOnUndecided = ctx.fn.getNodeParameter('failOnUndecided', i, true) !== false;
    const route = (item: INodeExecutionData, status: string | undefined, reason: string | undefined): void => {
      const ok = status === 'verified';
      if (status === 'unknown') {
        // could not decide (ledger unreachable): never a rejection — fail the item, or pass it on marked unknown
        if (!failOnUndecided) {
          verified.push(item);
          return;
        }
        // operationError: n8n would replace a message quoting ECONNREFUSED & co. by a generic sentence
        const err = operationError(ctx.fn.getNode(), `undecided (retry later): ${reason ?? 'the ledger could not be read'}`, {
          itemIndex: i,
          description: 'the ledger could not be read by the end of the wait, so nothing is known about the object; turn "Fail on Undecided" off to pass such items on with status "unknown"',
        });
        if (!ctx.fn.continueOnFail()) throw err;
        verified.push({ json: { ...item.json, error: err.message }, pairedItem: { item: i } });
        return;
      }
      if (ok || onRejected === 'passThrough') verified.push(item);
      else if (onRejected === 'secondOutput') rejected.push(item);
      else {
        const err = new NodeOperationError(ctx.fn.getNode(), `rejected: ${reason ?? 'verification failed'}`, { itemIndex: i, description: 'the object does not match the hash anchored on the ledger, nothing is anchored for it by a writer allowed to vouch for the collection, or such writers anchored conflicting hashes' });
        if (!ctx.fn.continueOnFail()) throw err;
        verified.push({ json: { ...item.json, error: err.message }, pairedItem: { item: i } });
      }
    };
    if (mode === 'whole' && r.results.length > 1) {
      const frag = wholeVerificationFragment(r.results.map((x) => x.verification));
      const extra: IDataObject = { collection: r.collection };
      if (r.whole) extra.object = toJson(r.results.map((x) => x.object));
      const status = (frag.verification as { status?: string }).status;
      route(resultItem(ctx, i, r.whole, extra, toJson(frag)), status, (frag.verification as { reason?: string }).reason);
      return;
    }
    for (const x of r.results) {
      // the input item's other properties (amqp, the server's record info, ...) are kept
      route(resultItem(ctx, i, r.whole, { object: toJson(x.object), collection: r.collection }, { verification: toJson(x.verification) }), x.verification.status, x.verification.reason);
    }
  });
  return twoOutputs ? [verified, rejected] : [verified];
}

// ---------------------------------------------------------------------------------------------
// object: publish (TAXII), distribute (RabbitMQ), inquire, delete

/** The status resource for the item (`requests` only when the batch was split). */
function statusJson(status: AddObjectsResult): IDataObject {
  const { requests, ...rest } = status;
  return toJson(requests.length > 1 ? { ...rest, requests } : rest);
}

export async function publish(ctx: OpContext): Promise<OpOutput> {
  const anchorIdx = ctx.items.map((_, i) => i).filter((i) => ctx.fn.getNodeParameter('anchorFirst', i, false) === true);
  const anchored = anchorIdx.length > 0 ? await anchorBatch(ctx, ctx.fn.continueOnFail() ? anchorIdx : validated(ctx, anchorIdx)) : new Map();
  const { client } = await ctx.res.getTaxii();
  const signal = ctx.fn.getExecutionCancelSignal();
  const out = await mapLimit(ctx.items, ITEM_CONCURRENCY, async (_item, i): Promise<INodeExecutionData | { error: unknown }> => {
    try {
      const a = anchored.get(i);
      if (a?.error !== undefined) throw a.error;
      const { payload, collection, whole } = stixOf(ctx, i);
      const o = opts(ctx, 'options', i);
      const statusTimeoutMs = o.statusTimeout === undefined ? 30_000 : Number(o.statusTimeout);
      const result = await publishToTaxii(client, { collection, payload, wait: o.waitForStatus !== false, statusTimeoutMs, ...(signal ? { signal } : {}) });
      const rejectedErr = rejectionError(collection, result.status);
      if (rejectedErr && (o.onTaxiiRejected ?? 'fail') === 'fail') throw rejectedErr;
      const sets: IDataObject = { taxii: statusJson(result.status) };
      if (a?.result) Object.assign(sets, toJson(anchorFragment(a.result)));
      const extra: IDataObject = { collection };
      if (whole) extra.object = toJson(payload);
      return resultItem(ctx, i, whole, extra, sets);
    } catch (err) {
      return { error: err };
    }
  });
  return [out.map((r, i) => ('error' in r ? fail(ctx, i, r.error) : r))];
}

export async function distribute(ctx: OpContext): Promise<OpOutput> {
  const bus = await ctx.res.getBus();
  const out = await mapLimit(ctx.items, ITEM_CONCURRENCY, async (_item, i): Promise<INodeExecutionData | { error: unknown }> => {
    try {
      const { payload, collection, whole } = stixOf(ctx, i);
      const o = opts(ctx, 'options', i);
      const hashes = hashesFromSets(setsOf(ctx.items[i]));
      // no queue bound = UNROUTABLE unless the user allows fire-and-forget; the confirm timeout
      // no longer includes the wait for a reconnect (brokerWait)
      const published = await publishPayload(bus, {
        collection,
        payload,
        ...(hashes ? { hashes } : {}),
        ...(o.timeout !== undefined ? { confirmTimeoutMs: Number(o.timeout) } : {}),
        ...(o.brokerWait !== undefined ? { brokerWaitMs: Number(o.brokerWait) } : {}),
        allowUnroutable: o.allowUnroutable === true,
      });
      const extra: IDataObject = { collection };
      if (whole) extra.object = toJson(payload);
      return resultItem(ctx, i, whole, extra, { published: toJson(published) });
    } catch (err) {
      return { error: err };
    }
  });
  return [out.map((r, i) => ('error' in r ? fail(ctx, i, r.error) : r))];
}

export async function inquire(ctx: OpContext): Promise<OpOutput> {
  const { client } = await ctx.res.getTaxii();
  const signal = ctx.fn.getExecutionCancelSignal();
  const out: INodeExecutionData[] = [];
  for (let i = 0; i < ctx.items.length; i++) {
    try {
      const collection = collectionOf(ctx.items[i], str(ctx, 'collection', i));
      const endpoint = str(ctx, 'endpoint', i, 'objects') as InquireOperation;
      const objectId = endpoint === 'object' || endpoint === 'versions' ? str(ctx, 'objectId', i).trim() : undefined;
      const returnAll = ctx.fn.getNodeParameter('returnAll', i, false) === true;
      const maxItems = returnAll ? 0 : num(ctx, 'limit', i, 50);
      const f = opts(ctx, 'filters', i);
      const o = opts(ctx, 'options', i);
      const filters = buildFilters({
        added_after: f.addedAfter,
        'match[id]': f.matchId,
        'match[type]': f.matchType,
        'match[version]': f.matchVersion,
        'match[spec_version]': f.matchSpecVersion,
        limit: o.pageSize ?? 100,
      });
      const inquiry: IDataObject = { collection, endpoint, ...(objectId ? { objectId } : {}) };
      const results: INodeExecutionData[] = [];
      const all: unknown[] = [];
      const single = o.output === 'single';
      for await (const it of inquireItems(client, { operation: endpoint, collection, ...(objectId ? { objectId } : {}), filters, maxItems, ...(signal ? { signal } : {}) })) {
        if (single) {
          all.push(it);
          continue;
        }
        let json: IDataObject;
        if (endpoint === 'versions') json = { id: objectId, version: it as string, collection };
        else if (endpoint === 'manifest') json = { ...toJson(it), collection };
        else json = { object: toJson(it), collection, sets: { inquiry } };
        results.push({ json, pairedItem: { item: i } });
      }
      const limitReached = maxItems > 0 && (single ? all.length : results.length) >= maxItems;
      if (single) {
        out.push({ json: { collection, [endpoint === 'versions' ? 'versions' : endpoint === 'manifest' ? 'manifest' : 'objects']: toJson(all) as unknown as IDataObject[], count: all.length, ...(limitReached ? { limitReached } : {}), sets: { inquiry } }, pairedItem: { item: i } });
      } else {
        if (limitReached && results.length > 0) results[results.length - 1].json.limitReached = true;
        out.push(...results);
      }
    } catch (err) {
      out.push(fail(ctx, i, err));
    }
  }
  return [out];
}

export async function remove(ctx: OpContext): Promise<OpOutput> {
  const { client } = await ctx.res.getTaxii();
  const signal = ctx.fn.getExecutionCancelSignal();
  const out: INodeExecutionData[] = [];
  for (let i = 0; i < ctx.items.length; i++) {
    try {
      const collection = collectionOf(ctx.items[i], str(ctx, 'collection', i));
      const objectId = str(ctx, 'objectId', i).trim();
      if (objectId === '') throw new OpsError('BAD_FILTER', 'Delete needs an object id');
      const f = opts(ctx, 'filters', i);
      const filters = buildFilters({ 'match[version]': f.matchVersion, 'match[spec_version]': f.matchSpecVersion });
      await client.deleteObject(collection, objectId, filters, signal ? { signal } : {});
      out.push(outItem(ctx.items[i], i, {}, { deleted: toJson({ collection, id: objectId, ...(filters.match ? { match: filters.match } : {}) }) }));
    } catch (err) {
      out.push(fail(ctx, i, err));
    }
  }
  return [out];
}

// ---------------------------------------------------------------------------------------------
// record: markIntegrity, query, counts

export async function markIntegrity(ctx: OpContext): Promise<OpOutput> {
  const store = await ctx.res.getStore();
  const out: INodeExecutionData[] = [];
  for (let i = 0; i < ctx.items.length; i++) {
    try {
      const sets = setsOf(ctx.items[i]);
      const v = verificationOf(sets);
      if (!v) throw new OpsError('BAD_PAYLOAD', 'the item has no json.sets.verification: put a SETS "Verify" step between the TAXII server trigger and this one');
      const target = integrityTarget(sets, v);
      // the policy the server emitted with the record; anything else (absent, unknown) -> required
      const policy = integrityPolicyOf(sets.policy) ?? undefined;
      const result = await settleIntegrity(storeVerdictRecorder(store, () => policy), target, v);
      out.push(outItem(ctx.items[i], i, {}, { integrity: toJson(result) }));
    } catch (err) {
      out.push(fail(ctx, i, err));
    }
  }
  return [out];
}

export async function query(ctx: OpContext): Promise<OpOutput> {
  const store = await ctx.res.getStore();
  const out: INodeExecutionData[] = [];
  for (let i = 0; i < ctx.items.length; i++) {
    try {
      const collections = list(str(ctx, 'collections', i));
      if (collections.length === 0) throw new OpsError('BAD_FILTER', 'Query Statuses needs the collection ids to look in');
      const statuses = ctx.fn.getNodeParameter('statuses', i, []) as unknown;
      const id = str(ctx, 'objectId', i).trim();
      const q = parseStatusQuery({ ...(id ? { id } : {}), ...(Array.isArray(statuses) && statuses.length > 0 ? { status: statuses } : {}) });
      const max = num(ctx, 'limit', i, 1000);
      const { items, more } = await queryStatuses(store, collections, q, max);
      const rows = items.map((r): INodeExecutionData => ({ json: toJson(r), pairedItem: { item: i } }));
      if (more && rows.length > 0) rows[rows.length - 1].json.limitReached = true;
      out.push(...rows);
    } catch (err) {
      out.push(fail(ctx, i, err));
    }
  }
  return [out];
}

export async function counts(ctx: OpContext): Promise<OpOutput> {
  const store = await ctx.res.getStore();
  const out: INodeExecutionData[] = [];
  for (let i = 0; i < ctx.items.length; i++) {
    try {
      const collections = list(str(ctx, 'collections', i));
      const c = collections.length > 0 ? await countStatuses(store, collections) : await store.counts();
      out.push({ json: { pending: c.pending, finalized: c.finalized, invalid: c.invalid, ...(collections.length ? { collections } : {}) }, pairedItem: { item: i } });
    } catch (err) {
      out.push(fail(ctx, i, err));
    }
  }
  return [out];
}
