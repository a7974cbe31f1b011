/**
 * Node-RED types used by the SETS nodes (from @types/node-red), plus the small shapes our
 * config and flow nodes share. Type-only: nothing here exists at run time.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow, NodeStatus } from 'node-red';

export type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow, NodeStatus };

/** `send` as handed to an async input handler (Node-RED 1.0+). */
export type SendFn = (msg: NodeMessage | Array<NodeMessage | NodeMessage[] | null>) => void;
/** `done` as handed to an async input handler (Node-RED 1.0+). */
export type DoneFn = (err?: Error) => void;

/** A message as it travels through our nodes: `sets` carries the SETS results. */
export interface SetsMessage extends NodeMessageInFlow {
  collection?: unknown;
  sets?: Record<string, unknown>;
}
