/**
 * What the sets-store config node exposes to the nodes that use it (taxii-server,
 * integrity-status), looked up with RED.nodes.getNode(id) and narrowed to this shape.
 */
import type { StoreConnection } from '../../lib/ops/server-store';
import type { ConnectionOwner } from '../shared/use-connection';

export interface StoreOwner extends ConnectionOwner<StoreConnection> {
  /** `embedded` or `mongodb` */
  kind: string;
  /** the embedded store's directory (absent for MongoDB) */
  dir?: string;
}
