/**
 * sets-store: where the TAXII server keeps its CTI records, their SETS integrity statuses and its
 * TAXII status resources (paper §4.2 "backend plugins"). Embedded (default: LevelDB under
 * `<userDir>/sets-store/<node id>`, survives restarts and renames; a directory an older version
 * named after the node's name is moved there once) or MongoDB (URI in credentials).
 * Owns ONE open store shared by the nodes that use it (reference-counted: opened for the first
 * user, closed after the last one or with this node on redeploy/stop).
 */
import type { NodeAPI, NodeDef } from '../shared/types';
import { registerAdminEndpoints } from '../shared/admin-endpoints';
import { optStr, str } from '../shared/config';
import { SharedConnection } from '../shared/shared-connection';
import { ConfigError } from '../shared/config';
import { StoreConnection, parseStoreSettings, redactUri, resolveStoreDir, type StoreSettings } from '../../lib/ops/server-store';
import type { StoreOwner } from './owner';

interface StoreDef extends NodeDef {
  kind?: string;
  dir?: string;
  db?: string;
  collectionPrefix?: string;
  retentionHours?: string | number;
}

interface StoreCredentials {
  uri?: string;
}

type StoreConfigNode = StoreOwner & { credentials: StoreCredentials };

export = function register(RED: NodeAPI): void {
  registerAdminEndpoints(RED);
  function SetsStoreNode(this: StoreConfigNode, def: StoreDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: StoreConfigNode, def: StoreDef): void {
    let settings: StoreSettings | undefined;
    const uri = (node.credentials?.uri ?? '').trim();
    node.kind = str(def.kind) || 'embedded';
    try {
      let defaultDir: string | undefined;
      if (!optStr(def.dir) && (def.kind ?? 'embedded') !== 'mongodb') {
        const userDir = (RED.settings as { userDir?: unknown }).userDir;
        if (typeof userDir !== 'string' || userDir === '') {
          throw new ConfigError('Node-RED has no user directory (settings.userDir): give the store a directory');
        }
        // by id: renaming the node must not open a new, empty store
        const resolved = resolveStoreDir(userDir, def.id, str(def.name));
        defaultDir = resolved.dir;
        const m = resolved.migration;
        if (m?.action === 'moved') node.log(`moved the store directory ${m.from} (named after the node) to ${resolved.dir} (named after the node id)`);
        else if (m?.action === 'kept') node.warn(`using the store directory ${m.from} (named after the node): it could not be moved to ${resolved.dir}: ${m.reason ?? ''}`);
      }
      settings = parseStoreSettings(def as unknown as Record<string, unknown>, defaultDir ? { defaultDir } : {});
      if (settings.kind === 'embedded') node.dir = settings.dir;
      else if (!uri) throw new ConfigError('the MongoDB store needs a URI (credentials)');
    } catch (err) {
      node.configError = err instanceof Error ? err : new Error(String(err));
    }
    const label = node.kind === 'mongodb' ? `MongoDB ${redactUri(uri) || '(no URI)'} db ${str(def.db) || '(none)'}` : `embedded store ${node.dir ?? '(no directory)'}`;
    node.describe = () => label;
    node.shared = new SharedConnection<StoreConnection>(node, () => {
      if (node.configError) throw node.configError;
      const conn = StoreConnection.fromSettings(settings as StoreSettings, { uri });
      node.log(`opening ${label}`);
      return conn;
    });
    node.on('close', (_removed: boolean, done: () => void) => {
      node.shared.close().then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType<StoreConfigNode, StoreDef, unknown, StoreCredentials>('sets-store', SetsStoreNode, {
    credentials: { uri: { type: 'password' } },
  });
};
