/**
 * The example flows (Import › Examples reads examples/*.json) must import cleanly: every node type
 * is a Node-RED core type or one of ours, every property a node sets is one its editor defines,
 * every config reference and every wire points at a node of the same file, no id is used by two
 * files (importing a second example must not raise Node-RED's "nodes already exist" conflict
 * dialog, which a config node shared by id across files did), and no secret is shipped. The all-in-one flow is also deployed for real by test/e2e/demo.test.ts.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';

// <repo>/dist/test/unit -> <repo>; with the build output elsewhere (SETS_BUILD_OUT), the repo is the working directory
const builtInRepo = path.resolve(__dirname, '..', '..', '..');
const root = fs.existsSync(path.join(builtInRepo, 'examples')) ? builtInRepo : process.cwd();
const examplesDir = path.join(root, 'examples');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };

const CORE = new Set(['tab', 'comment', 'inject', 'debug', 'function', 'catch', 'change', 'switch', 'delay', 'complete', 'status', 'link in', 'link out', 'group']);
/** keys Node-RED itself puts on nodes */
const STANDARD = new Set(['id', 'type', 'z', 'x', 'y', 'wires', 'name', 'g', 'd', 'info', 'label', 'disabled', 'env']);

interface FlowNode {
  id: string;
  type: string;
  z?: string;
  wires?: string[][];
  [k: string]: unknown;
}

/** The `defaults` keys of our node types, read from their editor files. */
function ourDefaults(): Map<string, { keys: Set<string>; refs: Map<string, string> }> {
  const out = new Map<string, { keys: Set<string>; refs: Map<string, string> }>();
  for (const type of Object.keys(pkg['node-red'].nodes)) {
    const html = fs.readFileSync(path.join(root, 'nodes', type, `${type}.html`), 'utf8');
    const m = html.match(/defaults:\s*\{([\s\S]*?)\n\s{8}\},\n/);
    assert.ok(m, `${type}.html: no defaults block found`);
    const keys = new Set<string>();
    const refs = new Map<string, string>();
    for (const line of m[1].split('\n')) {
      const k = line.match(/^\s{12}(\w+):\s*\{/);
      if (!k) continue;
      keys.add(k[1]);
      const ref = line.match(/type:\s*'([\w-]+)'/);
      if (ref) refs.set(k[1], ref[1]);
    }
    out.set(type, { keys, refs });
  }
  return out;
}

describe('example flows', () => {
  const files = fs.readdirSync(examplesDir).filter((f) => f.endsWith('.json'));
  const defaults = ourDefaults();

  it('exist for the server, publisher, subscriber, inquirer, RabbitMQ pipeline and the all-in-one demo', () => {
    for (const f of ['sets-taxii-server.json', 'sets-publisher.json', 'sets-subscriber.json', 'sets-inquirer.json', 'sets-pipeline-rabbitmq.json', 'sets-all-in-one-demo.json']) {
      assert.ok(files.includes(f), `examples/${f} missing`);
    }
  });

  it('keep what they dead-letter: every subscription whose flow dead-letters or requeues has a dead-letter queue and a delivery limit', () => {
    let checked = 0;
    for (const file of files) {
      const flow = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
      const settles = flow.some((n) => n.type === 'rabbit-ack' && (n['action'] === 'dead-letter' || n['action'] === 'requeue'));
      if (!settles) continue;
      for (const sub of flow.filter((n) => n.type === 'rabbit-subscribe')) {
        checked++;
        assert.ok(typeof sub['deadLetter'] === 'string' && sub['deadLetter'] !== '', `${file}: ${sub.name ?? sub.id} dead-letters without a dead-letter queue (the CTI would be discarded)`);
        assert.ok(Number(sub['deliveryLimit']) > 0, `${file}: ${sub.name ?? sub.id} requeues without a delivery limit (a bad message could loop for ever)`);
      }
    }
    assert.ok(checked >= 3, `only ${checked} subscriptions checked`);
  });

  it('use each node id in one file only, so any two examples import side by side without an id conflict', () => {
    // Rule: every example is self-contained, config nodes included (its own ledger, broker, TAXII
    // connection, store). Shared-by-id config nodes would have to be identical in every file forever
    // and still raise the conflict dialog on the second import.
    const owner = new Map<string, string>();
    let count = 0;
    for (const file of files) {
      const flow = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
      for (const n of flow) {
        const first = owner.get(n.id);
        assert.ok(first === undefined || first === file, `id ${n.id} (${n.type}) is in both ${first} and ${file}`);
        owner.set(n.id, file);
        count++;
      }
    }
    assert.ok(files.length >= 6 && count > 50, `checked ${count} nodes in ${files.length} files`);
  });

  for (const file of files) {
    describe(file, () => {
      const flow = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
      const ids = new Map(flow.map((n) => [n.id, n]));

      it('has unique ids, one tab, and comment nodes that explain it', () => {
        assert.equal(ids.size, flow.length, 'duplicate ids');
        assert.equal(flow.filter((n) => n.type === 'tab').length, 1);
        const comments = flow.filter((n) => n.type === 'comment');
        assert.ok(comments.length >= 1 && comments.some((c) => String(c.info ?? '').length > 100), 'no explanatory comment');
      });

      it('uses only known node types and properties their editors define', () => {
        for (const n of flow) {
          const ours = defaults.get(n.type);
          assert.ok(ours || CORE.has(n.type), `${file}: unknown node type ${n.type}`);
          if (!ours) continue;
          for (const k of Object.keys(n)) {
            if (STANDARD.has(k)) continue;
            assert.ok(ours.keys.has(k), `${file}: ${n.type} ${n.id} sets "${k}", which its editor does not define`);
          }
        }
      });

      it('resolves every config reference and wire inside the file', () => {
        for (const n of flow) {
          if (n.z) assert.ok(ids.get(n.z)?.type === 'tab', `${n.id}: z ${n.z} is not the tab`);
          for (const port of n.wires ?? []) for (const to of port) assert.ok(ids.has(to), `${n.id}: wire to missing ${to}`);
          const ours = defaults.get(n.type);
          for (const [prop, type] of ours?.refs ?? []) {
            const ref = n[prop];
            if (ref === '' || ref === undefined) continue;
            assert.equal(ids.get(String(ref))?.type, type, `${n.id}.${prop} -> ${String(ref)} is not a ${type}`);
          }
        }
      });

      it('ships no credentials', () => {
        for (const n of flow) assert.equal(n.credentials, undefined, `${n.id} carries credentials`);
        assert.doesNotMatch(JSON.stringify(flow), /0x[0-9a-fA-F]{64}"/, 'a 32-byte hex value (private key?) in the flow');
      });
    });
  }
});
