/**
 * The n8n SETS nodes on a Hyperledger Fabric ledger (the in-process peer gateway emulator running
 * the real sets-registry chaincode), executed by n8n's own engine (test/support/n8n.ts): the SETS
 * node's "Ledger" parameter set to Fabric with a `setsFabricLedgerApi` credential for Hash › Anchor,
 * Hash › Verify and Publish to TAXII with "Anchor First"; the SETS Trigger verifying what arrives
 * over RabbitMQ on Fabric; the credential's connection test. Workflows without the parameter keep
 * using their EVM credential.
 */
import * as assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import type { IDataObject, INode, INodeExecutionData } from 'n8n-workflow';
import { NodeHelpers } from 'n8n-workflow';
import { chain, rabbit } from '../support/services';
import { startTestTaxiiServer, type TestTaxiiServer } from '../support/taxii-test-server';
import { AmqpBus } from '../../lib/bus/amqp';
import { collectionScope, hashObject, keyForObject } from '../../lib/digest';
import { createLedger } from '../../lib/ledger/index';
import type { StixObject } from '../../lib/stix';
import { N8nHarness, PACKAGE_NAME, amqpCredential, ledgerCredential, type ActiveWorkflow, type WorkflowFile } from '../support/n8n';
import { startFabricNet, type FabricNet } from '../nodes/fabric-harness';
import { indicator, malware } from '../nodes/stix';

const COLLECTION = '91a7b528-80eb-42ed-a74d-c6fbd5a26116'; // the test TAXII server's read-write collection
const SETS = `${PACKAGE_NAME}.sets`;
const TRIGGER = `${PACKAGE_NAME}.setsTrigger`;
const FABRIC = { setsFabricLedgerApi: { id: 'fabricWriter', name: 'SETS Fabric (writer)' } };

type Json = Record<string, unknown>;
const setsOf = (item: INodeExecutionData): Json => (item.json.sets ?? {}) as Json;
const verificationOf = (item: INodeExecutionData): Json => (setsOf(item).verification ?? {}) as Json;

function node(name: string, type: string, parameters: IDataObject, credentials: INode['credentials'], x = 0): INode {
  return { id: randomUUID(), name, type, typeVersion: 1, position: [x, 0], parameters, credentials } as INode;
}

function workflow(name: string, nodes: INode[]): WorkflowFile {
  return { name, nodes, connections: {}, settings: { executionOrder: 'v1' } };
}

/** One SETS node, run on the given items. */
function setsNode(parameters: IDataObject, credentials: INode['credentials'] = FABRIC): WorkflowFile {
  return workflow('fabric', [node('SETS', SETS, parameters, credentials)]);
}

const item = (o: unknown): INodeExecutionData => ({ json: { object: o as IDataObject } });

describe('n8n engine: the SETS nodes on Hyperledger Fabric (Ledger = Fabric, credential setsFabricLedgerApi)', function () {
  this.timeout(120_000);
  let net: FabricNet;
  let h: N8nHarness;
  let amqpUrl: string;
  const EXCHANGE = `sets-n8n-fab-${randomBytes(4).toString('hex')}`;

  before(async function () {
    this.timeout(180_000);
    let r;
    [net, r] = await Promise.all([startFabricNet(), rabbit()]);
    amqpUrl = r.url;
    h = await N8nHarness.create({
      credentials: {
        fabricWriter: { type: 'setsFabricLedgerApi', data: net.credentialData(net.writer) },
        fabricReader: { type: 'setsFabricLedgerApi', data: net.credentialData(net.outsider) },
        amqp: amqpCredential(amqpUrl, { exchange: EXCHANGE }),
      },
    });
  });

  after(async () => {
    await h?.close();
    await net?.stop();
  });

  it('Hash › Anchor on Fabric: every item in one transaction, written by the MSP identity; the same items again are "existing"', async () => {
    const objs = [indicator('n8n on Fabric'), malware('n8n on Fabric')];
    const wf = setsNode({ resource: 'hash', operation: 'anchor', ledger: 'fabric', collection: COLLECTION });
    const r = await h.run(wf, { startNode: 'SETS', input: objs.map(item) });
    assert.equal(r.status, 'success', r.error?.message);
    const out = r.output('SETS');
    assert.equal(out.length, 2);
    const anchors = out.map((i) => setsOf(i).anchor as { tx: string; block: number; existing?: boolean });
    assert.equal(new Set(anchors.map((a) => a.tx)).size, 1, 'one AnchorMany transaction');
    assert.match(anchors[0].tx, /^[0-9a-f]{64}$/);
    for (const [i, o] of objs.entries()) {
      const { scope, key } = keyForObject(COLLECTION, o);
      assert.equal(setsOf(out[i]).hash, hashObject(o));
      const recs = await net.reader.lookup(scope, key);
      assert.equal(recs[0]?.writer, net.writer.writer);
      assert.equal(recs[0]?.entitled, true);
    }
    const again = await h.run(wf, { startNode: 'SETS', input: objs.map(item) });
    assert.ok(again.output('SETS').every((i) => (setsOf(i).anchor as { existing?: boolean }).existing === true));
  });

  it('Hash › Verify on Fabric with a reader identity: Verified / Rejected (mismatch, not-anchored)', async () => {
    const o = indicator('verify on Fabric');
    const anchor = await h.run(setsNode({ resource: 'hash', operation: 'anchor', ledger: 'fabric', collection: COLLECTION }), { startNode: 'SETS', input: [item(o)] });
    assert.equal(anchor.status, 'success', anchor.error?.message);
    const verify = setsNode(
      { resource: 'hash', operation: 'verify', ledger: 'fabric', collection: COLLECTION, waitForAnchor: 0, onRejected: 'secondOutput' },
      { setsFabricLedgerApi: { id: 'fabricReader', name: 'SETS Fabric (reader)' } },
    );
    const altered = { ...o, pattern: "[ipv4-addr:value = '203.0.113.99']" };
    const stranger = indicator('never anchored');
    const r = await h.run(verify, { startNode: 'SETS', input: [item(o), item(altered), item(stranger)] });
    assert.equal(r.status, 'success', r.error?.message);
    const verified = r.output('SETS', 0);
    const rejected = r.output('SETS', 1);
    assert.deepEqual(verified.map((i) => verificationOf(i).status), ['verified']);
    assert.equal(verificationOf(verified[0]).writer, net.writer.writer);
    assert.deepEqual(rejected.map((i) => verificationOf(i).status).sort(), ['mismatch', 'not-anchored']);
  });

  it('Publish to TAXII with "Anchor First" on Fabric: anchored on Fabric, then POSTed', async () => {
    const taxii: TestTaxiiServer = await startTestTaxiiServer();
    try {
      h.credentials.add('taxiiOpen', { type: 'setsTaxiiApi', data: { url: taxii.discoveryUrl, authType: 'none', timeout: 5000 } });
      const o = indicator('anchor first on Fabric');
      const wf = setsNode(
        { resource: 'object', operation: 'publish', collection: COLLECTION, anchorFirst: true, ledger: 'fabric', options: { waitForStatus: true, statusTimeout: 10000 } },
        { ...FABRIC, setsTaxiiApi: { id: 'taxiiOpen', name: 'open TAXII' } },
      );
      const r = await h.run(wf, { startNode: 'SETS', input: [item(o)] });
      assert.equal(r.status, 'success', r.error?.message);
      assert.equal((setsOf(r.output('SETS')[0]).taxii as Json).status, 'complete');
      const { scope, key } = keyForObject(COLLECTION, o);
      assert.equal((await net.reader.lookup(scope, key))[0]?.hash, hashObject(o));
      assert.ok((taxii.state.objects.get(COLLECTION) ?? []).some((v) => v.id === o.id), 'POSTed after anchoring');
    } finally {
      await taxii.stop();
    }
  });

  it('workflows without the Ledger parameter keep using their EVM credential (Hash › Anchor, and Publish with "Anchor First", which found no credential before)', async () => {
    const evm = await chain();
    const contract = await evm.deployRegistry();
    h.credentials.add('evmWriter', ledgerCredential(evm, contract, evm.accounts[2].privateKey));
    const evmCred = { setsEvmLedgerApi: { id: 'evmWriter', name: 'SETS EVM' } };
    const evmReader = createLedger({ kind: 'evm', rpcUrl: evm.rpcUrl, chainId: evm.chainId, address: contract });
    const taxii = await startTestTaxiiServer();
    try {
      const o = indicator('old workflow on EVM');
      const r = await h.run(setsNode({ resource: 'hash', operation: 'anchor', collection: COLLECTION }, evmCred), { startNode: 'SETS', input: [item(o)] });
      assert.equal(r.status, 'success', r.error?.message);
      assert.match(String((setsOf(r.output('SETS')[0]).anchor as Json).tx), /^0x[0-9a-f]{64}$/, 'an EVM transaction');
      assert.equal((await evmReader.lookup(collectionScope(COLLECTION), keyForObject(COLLECTION, o).key))[0]?.hash, hashObject(o));

      h.credentials.add('taxiiOpen2', { type: 'setsTaxiiApi', data: { url: taxii.discoveryUrl, authType: 'none', timeout: 5000 } });
      const p = indicator('anchor first, old workflow');
      const wf = setsNode(
        { resource: 'object', operation: 'publish', collection: COLLECTION, anchorFirst: true, options: { waitForStatus: true, statusTimeout: 10000 } },
        { ...evmCred, setsTaxiiApi: { id: 'taxiiOpen2', name: 'open TAXII' } },
      );
      const r2 = await h.run(wf, { startNode: 'SETS', input: [item(p)] });
      assert.equal(r2.status, 'success', r2.error?.message);
      assert.equal((await evmReader.lookup(collectionScope(COLLECTION), keyForObject(COLLECTION, p).key))[0]?.hash, hashObject(p));
    } finally {
      await evmReader.close();
      await taxii.stop();
    }
  });

  it('the editor asks for the credential of the chosen ledger only; Fabric chosen with only an EVM credential fails naming setsFabricLedgerApi', async () => {
    const type = h.nodeType(SETS).description;
    const shown = (parameters: IDataObject): string[] => {
      const full = NodeHelpers.getNodeParameters(type.properties, parameters as never, true, false, null, type) ?? {};
      return (type.credentials ?? []).filter((c) => NodeHelpers.displayParameter(full, c, null, type)).map((c) => c.name);
    };
    assert.deepEqual(shown({ resource: 'hash', operation: 'anchor' }), ['setsEvmLedgerApi'], 'no Ledger parameter: EVM');
    assert.deepEqual(shown({ resource: 'hash', operation: 'verify', ledger: 'fabric' }), ['setsFabricLedgerApi']);
    assert.deepEqual(shown({ resource: 'object', operation: 'publish', anchorFirst: true, ledger: 'fabric' }).sort(), ['setsFabricLedgerApi', 'setsTaxiiApi']);
    assert.deepEqual(shown({ resource: 'object', operation: 'publish', anchorFirst: true }).sort(), ['setsEvmLedgerApi', 'setsTaxiiApi']);
    assert.deepEqual(shown({ resource: 'object', operation: 'publish', anchorFirst: false, ledger: 'fabric' }), ['setsTaxiiApi']);
    assert.deepEqual(shown({ resource: 'record', operation: 'counts' }), ['setsStoreApi']);
    const trig = h.nodeType(TRIGGER).description;
    const trigShown = (parameters: IDataObject): string[] => {
      const full = NodeHelpers.getNodeParameters(trig.properties, parameters as never, true, false, null, trig) ?? {};
      return (trig.credentials ?? []).filter((c) => NodeHelpers.displayParameter(full, c, null, trig)).map((c) => c.name);
    };
    assert.deepEqual(trigShown({ verify: true }), ['setsAmqpApi', 'setsEvmLedgerApi']);
    assert.deepEqual(trigShown({ verify: true, ledger: 'fabric' }), ['setsAmqpApi', 'setsFabricLedgerApi']);
    assert.deepEqual(trigShown({ verify: false, ledger: 'fabric' }), ['setsAmqpApi']);

    h.credentials.add('evmOnly', ledgerCredential({ rpcUrl: 'http://127.0.0.1:9', chainId: 1 }, `0x${'1'.repeat(40)}`));
    const r = await h.run(setsNode({ resource: 'hash', operation: 'anchor', ledger: 'fabric', collection: COLLECTION }, { setsEvmLedgerApi: { id: 'evmOnly', name: 'EVM' } }), {
      startNode: 'SETS',
      input: [item(indicator())],
    });
    assert.equal(r.status, 'error');
    assert.match(String(r.error?.message), /setsFabricLedgerApi/);
  });

  it('the Fabric credential test: connected as the identity; an identity without a grant, a bad endpoint, a missing certificate or the wrong TLS CA is named', async () => {
    const ok = await h.testCredential('setsFabricLedgerApi', net.credentialData(net.writer));
    assert.equal(ok.status, 'OK', ok.message);
    assert.match(ok.message, new RegExp(net.gw.channel));
    assert.ok(ok.message.includes(net.writer.writer), ok.message);
    // a member without a grant can connect (and verify) but not anchor: the test says so and what to ask for
    const outsider = await h.testCredential('setsFabricLedgerApi', net.credentialData(net.outsider));
    assert.equal(outsider.status, 'Error', outsider.message);
    assert.match(outsider.message, /not granted/);
    assert.match(outsider.message, /GrantWriter/);
    const badEndpoint = await h.testCredential('setsFabricLedgerApi', net.credentialData(net.writer, { peerEndpoint: 'grpcs://peer0:7051' }));
    assert.equal(badEndpoint.status, 'Error');
    assert.match(badEndpoint.message, /peer endpoint/);
    const noCert = await h.testCredential('setsFabricLedgerApi', net.credentialData(net.writer, { certificate: '' }));
    assert.equal(noCert.status, 'Error');
    assert.match(noCert.message, /certificate/);
    const wrongCa = await h.testCredential('setsFabricLedgerApi', net.credentialData(net.writer, { tlsCaCert: net.writer.caCertificate }));
    assert.equal(wrongCa.status, 'Error', wrongCa.message);
    assert.ok(!JSON.stringify([ok, outsider, badEndpoint, noCert, wrongCa]).includes(net.writer.privateKey.split('\n')[1]), 'no key in any answer');
  });

  it('SETS Trigger with Ledger = Fabric: an anchored object is Verified, a tampered copy Rejected (mismatch)', async () => {
    const trigger = node(
      'Shared CTI',
      TRIGGER,
      { subscribeTo: 'types', collection: COLLECTION, types: '', queue: '', verify: true, ledger: 'fabric', waitForAnchor: 10000, onRejected: 'secondOutput', options: { temporaryQueue: true } },
      { setsAmqpApi: { id: 'amqp', name: 'RabbitMQ' }, setsFabricLedgerApi: { id: 'fabricReader', name: 'SETS Fabric (reader)' } },
    );
    let active: ActiveWorkflow | undefined;
    const bus = new AmqpBus({ url: amqpUrl, exchange: EXCHANGE });
    try {
      active = await h.activate(workflow('fabric subscriber', [trigger]));
      const o = indicator('over RabbitMQ, anchored on Fabric');
      const anchor = await h.run(setsNode({ resource: 'hash', operation: 'anchor', ledger: 'fabric', collection: COLLECTION }), { startNode: 'SETS', input: [item(o)] });
      assert.equal(anchor.status, 'success', anchor.error?.message);
      await bus.publishStix(COLLECTION, o);
      const altered: StixObject = { ...o, pattern: "[ipv4-addr:value = '192.0.2.66']" };
      await bus.publishStix(COLLECTION, altered);
      await active.waitFor((ex) => ex.length >= 2, 30_000, 'two executions');
      const outs = active.executions.map((ex) => ({ verified: ex.output('Shared CTI', 0), rejected: ex.output('Shared CTI', 1) }));
      const verified = outs.flatMap((x) => x.verified);
      const rejected = outs.flatMap((x) => x.rejected);
      assert.equal(verified.length, 1);
      assert.equal(verificationOf(verified[0]).status, 'verified');
      assert.equal(verificationOf(verified[0]).writer, net.writer.writer);
      assert.equal(rejected.length, 1);
      assert.equal(verificationOf(rejected[0]).status, 'mismatch');
      assert.deepEqual(active.triggerErrors, []);
    } finally {
      await active?.close();
      await bus.close();
    }
  });
});
