/**
 * The example flows' admission path (issue 9): taxii-server output 1 carries every admitted object,
 * of `off` collections too (for distribution, msg.sets.policy = 'off'). The check that waits for
 * the producer's anchor must not get those: nothing anchors them, so it would only wait out its
 * timeout per object (and the verdict is not recorded under `off` anyway). Walks each example's
 * wires from the server's output 1 for a message of each policy, evaluating switch nodes.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

interface FlowNode {
  id: string;
  type: string;
  wires?: string[][];
  [k: string]: unknown;
}

interface SwitchRule {
  t: string;
  v?: unknown;
  vt?: string;
}

// <repo>/<build>/test/server -> <repo> when built in the repo, else the working directory
const candidates = [path.resolve(__dirname, '..', '..', '..'), path.resolve(__dirname, '..', '..', '..', '..'), process.cwd()];
const root = candidates.find((d) => fs.existsSync(path.join(d, 'examples', 'sets-all-in-one-demo.json'))) ?? process.cwd();
const examplesDir = path.join(root, 'examples');

function prop(msg: Record<string, unknown>, p: string): unknown {
  let cur: unknown = msg;
  for (const part of p.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Outputs of a switch node a message leaves on (the rule types the examples use; others fail the test). */
function switchOutputs(n: FlowNode, msg: Record<string, unknown>): number[] {
  assert.equal(n['propertyType'] ?? 'msg', 'msg', `${n.id}: only msg properties are simulated`);
  const value = prop(msg, String(n['property']));
  const rules = (n['rules'] ?? []) as SwitchRule[];
  const out: number[] = [];
  for (const [i, r] of rules.entries()) {
    let hit: boolean;
    if (r.t === 'eq') hit = value === r.v;
    else if (r.t === 'neq') hit = value !== r.v;
    else if (r.t === 'else') hit = out.length === 0;
    else throw new Error(`${n.id}: switch rule ${r.t} is not simulated by this test`);
    if (hit) {
      out.push(i);
      if (n['checkall'] === 'false') break;
    }
  }
  return out;
}

/** The nodes a message from (node, output) reaches, through switch nodes. */
function reached(ids: Map<string, FlowNode>, from: FlowNode, output: number, msg: Record<string, unknown>): FlowNode[] {
  const out: FlowNode[] = [];
  const seen = new Set<string>();
  const walk = (n: FlowNode, port: number): void => {
    for (const to of n.wires?.[port] ?? []) {
      const next = ids.get(to);
      assert.ok(next, `${n.id}: wire to missing ${to}`);
      if (seen.has(next.id)) continue;
      seen.add(next.id);
      out.push(next);
      if (next.type === 'switch') for (const p of switchOutputs(next, msg)) walk(next, p);
    }
  };
  walk(from, output);
  return out;
}

describe('example flows: admission checks skip collections whose integrity policy is off', function () {
  const files = fs.readdirSync(examplesDir).filter((f) => f.endsWith('.json'));
  let servers = 0;

  for (const file of files) {
    const flow = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
    const ids = new Map(flow.map((n) => [n.id, n]));
    for (const srv of flow.filter((n) => n.type === 'taxii-server')) {
      servers++;
      it(`${file}: ${String(srv['name'] ?? srv.id)} — off objects are distributed, not checked; required/optional ones are both`, function () {
        for (const policy of ['required', 'optional', 'off']) {
          const msg = { payload: {}, sets: { policy, origin: 'admission' } };
          const nodes = reached(ids, srv, 0, msg);
          const checks = nodes.filter((n) => n.type === 'verify-hash');
          const distributed = nodes.some((n) => n.type === 'rabbit-publish');
          if (policy === 'off') {
            assert.deepEqual(
              checks.map((n) => `${n.id} (wait ${String(n['waitMs'])} ms)`),
              [],
              `an object of an 'off' collection reaches the anchor check`,
            );
          } else {
            assert.ok(checks.some((n) => Number(n['waitMs']) > 0), `a ${policy} object is not checked with a wait for its anchor`);
          }
          assert.ok(distributed, `a ${policy} object is not distributed`);
        }
      });
    }
  }

  it('found the server flows', function () {
    assert.ok(servers >= 2, `only ${servers} taxii-server node(s) in examples/`);
  });
});
