/**
 * The collection setting of the flow nodes (taxii-publish, taxii-inquire, anchor-hash,
 * verify-hash) as a typedInput: `collection` plus `collectionType` — `str` (a fixed id; the
 * default, and what flows saved before the typedInput have), `msg`, `flow` or `env`.
 *
 * - `str`: as before — msg.collection, when it is a non-empty string, overrides the fixed id
 *   (lib/ops/collection resolveCollection).
 * - `msg` / `flow` / `env`: the property is evaluated for each message
 *   (RED.util.evaluateNodeProperty); when it resolves to nothing the message fails with
 *   NO_COLLECTION naming the property, when it is not a string with BAD_COLLECTION.
 */
import type { Node, NodeAPI, NodeMessage } from './types';
import { oneOf, str } from './config';
import { checkCollection, resolveCollection } from '../../lib/ops/collection';
import { ConfigError } from '../../lib/ops/settings';
import { OpsError } from '../../lib/ops/errors';

export const COLLECTION_TYPES = ['str', 'msg', 'flow', 'env'] as const;
export type CollectionType = (typeof COLLECTION_TYPES)[number];

export interface CollectionDef {
  collection?: string;
  collectionType?: string;
}

/** The collection of one message. */
export type CollectionResolver = (msg: NodeMessage & { collection?: unknown }) => Promise<string>;

/** Where a typed property is read from, as a user writes it. */
function describe(type: CollectionType, value: string): string {
  return type === 'env' ? `environment variable ${value}` : `${type}.${value}`;
}

function evaluate(RED: NodeAPI, node: Node, value: string, type: CollectionType, msg: NodeMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    try {
      // the callback form: flow context may live in an asynchronous store
      RED.util.evaluateNodeProperty(value, type, node, msg, (err: Error | null | undefined, result: unknown) => (err ? reject(err) : resolve(result)));
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

export interface CollectionSetting {
  /** the collection of one message; rejects with an OpsError / the setup error */
  resolve: CollectionResolver;
  /** what is wrong with the setting itself (unknown type, empty msg/flow/env name): every message fails with it */
  error?: Error;
}

/** A node's collection setting, read once at setup. Never throws. */
export function collectionSetting(RED: NodeAPI, node: Node, def: CollectionDef): CollectionSetting {
  try {
    return { resolve: collectionResolver(RED, node, def) };
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    return { resolve: () => Promise.reject(error), error };
  }
}

/**
 * The resolver for a node's collection setting. Throws ConfigError at setup for an unknown type
 * or an empty msg/flow/env property.
 */
export function collectionResolver(RED: NodeAPI, node: Node, def: CollectionDef): CollectionResolver {
  const type = oneOf(def.collectionType || undefined, 'collection source', COLLECTION_TYPES, 'str');
  const value = str(def.collection);
  if (type === 'str') return async (msg) => resolveCollection(msg.collection, value);
  if (value.trim() === '') throw new ConfigError(`the collection comes from ${type === 'env' ? 'an environment variable' : type}, but its name is empty`);
  const where = describe(type, value);
  return async (msg) => {
    let v: unknown;
    try {
      v = await evaluate(RED, node, value, type, msg);
    } catch (err) {
      throw new OpsError('BAD_COLLECTION', `cannot read the collection from ${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (v === undefined || v === null || v === '') {
      throw new OpsError('NO_COLLECTION', `no collection: ${where} is ${v === '' ? 'empty' : 'not set'}`);
    }
    if (typeof v !== 'string') {
      throw new OpsError('BAD_COLLECTION', `the collection from ${where} must be a string, got ${Array.isArray(v) ? 'an array' : typeof v}`);
    }
    try {
      return checkCollection(v);
    } catch (err) {
      if (err instanceof OpsError) throw new OpsError(err.code, `${err.message} (from ${where})`);
      throw err;
    }
  };
}
