/**
 * Every workflow in flows/ as n8n sees it on import: n8n-workflow builds it, our nodes' parameters
 * have no issues by n8n's own checker (NodeHelpers.getNodeParametersIssues, what the editor shows
 * as a red warning), every credential a node needs with these parameters is referenced by a stable
 * `{ id, name }`, and connections only join nodes that exist and outputs the node has.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NodeHelpers, type INodeParameters } from 'n8n-workflow';
import { N8nHarness, PACKAGE_NAME, loadFlow, repoRoot, setsNodes } from '../support/n8n';

const flowNames = fs
  .readdirSync(path.join(repoRoot(), 'flows'))
  .filter((f) => f.endsWith('.json'))
  .sort();

describe('n8n engine: the workflows in flows/ as n8n imports them', () => {
  let h: N8nHarness;
  before(async () => {
    h = await N8nHarness.create();
  });

  it('flows/ holds the publisher, producer, subscriber, inquirer and server workflows', () => {
    for (const f of ['sets-publisher.json', 'sets-producer-rabbitmq.json', 'sets-subscriber.json', 'sets-inquirer.json', 'sets-taxii-server.json']) {
      assert.ok(flowNames.includes(f), f);
    }
  });

  for (const file of flowNames) {
    it(`${file}: n8n builds it; SETS nodes have no parameter issues; every needed credential referenced; connections valid`, () => {
      const wf = loadFlow(file);
      assert.equal(typeof wf.name, 'string');
      assert.match(String(wf.id), /^[A-Za-z0-9]{16}$/, 'an n8n workflow id');
      assert.equal(new Set(wf.nodes.map((n) => n.id)).size, wf.nodes.length, 'node ids unique');
      assert.equal(new Set(wf.nodes.map((n) => n.name)).size, wf.nodes.length, 'node names unique');
      const workflow = h.workflow(wf);
      const ours = setsNodes(wf);
      assert.ok(ours.length > 0, 'uses SETS nodes');
      for (const n of ours) {
        const built = workflow.getNode(n.name);
        assert.ok(built);
        const type = h.nodeType(n.type);
        assert.ok(n.type.startsWith(`${PACKAGE_NAME}.`));
        assert.equal(n.typeVersion, type.description.version);
        // n8n filled in the defaults: check the node as n8n holds it
        const issues = NodeHelpers.getNodeParametersIssues(type.description.properties, built, type.description);
        assert.equal(issues, null, `${n.name}: ${JSON.stringify(issues)}`);
        for (const cred of type.description.credentials ?? []) {
          if (!NodeHelpers.displayParameter(built.parameters as INodeParameters, cred, built, type.description, built.parameters)) continue;
          const ref = n.credentials?.[cred.name];
          if (cred.required) assert.ok(ref, `${n.name} needs a ${cred.name} credential`);
          if (ref) {
            assert.match(String(ref.id), /^[A-Za-z0-9]{16}$/, `${n.name}: credential id`);
            assert.ok(ref.name, `${n.name}: credential name`);
            assert.ok(h.credentialTypeNames.includes(cred.name));
          }
        }
        for (const type of Object.keys(n.credentials ?? {})) assert.ok(h.credentialTypeNames.includes(type), `${n.name}: unknown credential type ${type}`);
      }
      const names = new Set(wf.nodes.map((n) => n.name));
      for (const [from, byType] of Object.entries(wf.connections)) {
        assert.ok(names.has(from), `connection from unknown node ${from}`);
        const fromNode = workflow.getNode(from);
        assert.ok(fromNode);
        const outputs = fromNode.type.startsWith(`${PACKAGE_NAME}.`)
          ? NodeHelpers.getNodeOutputs(workflow, fromNode, h.nodeType(fromNode.type).description).length
          : 1;
        const main = byType.main ?? [];
        assert.ok(main.length <= outputs, `${from} has ${outputs} output(s), connected ${main.length}`);
        for (const list of main) for (const c of list ?? []) assert.ok(names.has(c.node), `connection to unknown node ${c.node}`);
      }
    });
  }

  it("the SETS Trigger's subtitle reads as a sentence: the collection id cut, the types or the keys listed", () => {
    const subtitle = (parameters: Record<string, string>): unknown => {
      const wf = loadFlow('sets-subscriber');
      const n = wf.nodes.find((x) => x.name === 'Shared CTI');
      assert.ok(n);
      Object.assign(n.parameters, parameters);
      const workflow = h.workflow(wf);
      const built = workflow.getNode('Shared CTI');
      assert.ok(built);
      const expr = h.nodeType(built.type).description.subtitle;
      assert.equal(typeof expr, 'string');
      return workflow.expression.getSimpleParameterValue(built, expr as string, 'manual', {});
    };
    assert.equal(subtitle({}), 'collection 91a7b528…'); // every type: nothing more to say (n8n cuts long subtitles)
    assert.equal(subtitle({ types: 'indicator,malware , ' }), 'collection 91a7b528… · indicator, malware');
    assert.equal(subtitle({ collection: 'shared', types: 'indicator' }), 'collection shared · indicator');
    assert.equal(subtitle({ collection: '' }), 'all collections');
    assert.equal(subtitle({ subscribeTo: 'keys', bindingKeys: '*.indicator,\n#' }), 'keys: *.indicator, #');
  });

  it('the same credential is shared where it must be: the server trigger and "Mark integrity" use one record store', () => {
    const wf = loadFlow('sets-taxii-server');
    const trig = wf.nodes.find((n) => n.name === 'SETS TAXII Server');
    const mark = wf.nodes.find((n) => n.name === 'Mark integrity');
    assert.deepEqual(trig?.credentials?.setsStoreApi, mark?.credentials?.setsStoreApi);
  });
});
