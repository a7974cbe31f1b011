/**
 * lib/ops without a runtime: the pieces the Node-RED nodes (and later the n8n nodes) share —
 * collection rules, lenient payload reading for verification, TAXII filters, the delivery
 * register (settle once), msg.sets builders and connection settings.
 */
import { strict as assert } from 'node:assert';
import { resolveCollection } from '../../lib/ops/collection';
import { objectsToVerify } from '../../lib/ops/payload';
import { buildFilters, rejectionError } from '../../lib/ops/taxii';
import { DeliveryTracker, nackOverride } from '../../lib/ops/deliveries';
import { ANCHOR_KEYS, mergeSets, wholeVerificationFragment } from '../../lib/ops/result';
import { hashesFromSets } from '../../lib/ops/publish';
import { brokerConfig, ledgerConfig, parseBrokerSettings, parseLedgerSettings } from '../../lib/ops/connections';
import { prepareAnchors } from '../../lib/ops/anchor';
import type { Verification } from '../../lib/verify';
import type { AddObjectsResult } from '../../lib/taxii/client';
import { bundle, indicator } from './stix';

const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;

describe('lib/ops', () => {
  it('collection: msg.collection wins over the node setting; none, empty or odd ids are refused', () => {
    assert.equal(resolveCollection('from-msg', 'from-node'), 'from-msg');
    assert.equal(resolveCollection(undefined, 'from-node'), 'from-node');
    assert.equal(resolveCollection('', 'from-node'), 'from-node');
    assert.equal(resolveCollection('a.b*c#d', undefined), 'a.b*c#d', 'routing characters are escaped by lib/bus, not refused');
    assert.throws(() => resolveCollection(undefined, ''), code('NO_COLLECTION'));
    assert.throws(() => resolveCollection(42, 'x'), code('BAD_COLLECTION'));
    assert.throws(() => resolveCollection(' padded', undefined), code('BAD_COLLECTION'));
    assert.throws(() => resolveCollection('x'.repeat(256), undefined), code('BAD_COLLECTION'));
  });

  it('objects to verify: lenient about STIX, strict about what the key needs', () => {
    const o = indicator();
    const tampered = { ...o, pattern: undefined, extra: true };
    assert.equal(objectsToVerify(JSON.stringify(bundle([o, tampered]))).length, 2, 'an altered object is still verified (and will mismatch)');
    assert.equal(objectsToVerify(Buffer.from(JSON.stringify(o)))[0].id, o.id);
    assert.equal(objectsToVerify({ objects: [o], more: false }).length, 1, 'TAXII envelope');
    assert.throws(() => objectsToVerify('nope'), code('BAD_PAYLOAD'));
    assert.throws(() => objectsToVerify([]), code('BAD_PAYLOAD'));
    assert.throws(
      () => objectsToVerify([o, { type: 'indicator' }, { ...o, id: 'indicator--x' }, { ...o, modified: 'yesterday' }]),
      (e: unknown) => {
        const p = (e as { problems?: Array<{ index: number }> }).problems ?? [];
        assert.deepEqual(
          p.map((x) => x.index),
          [1, 2, 3],
        );
        return code('BAD_PAYLOAD')(e);
      },
    );
  });

  it('anchoring prepares nothing for a payload with a bad object', () => {
    assert.throws(() => prepareAnchors({ collection: 'c', payload: bundle([indicator(), { ...indicator(), created: 'soon' }]) }), code('STIX_INVALID'));
    const ok = prepareAnchors({ collection: 'c', payload: [indicator(), indicator()] });
    assert.equal(ok.length, 2);
    assert.notEqual(ok[0].key, ok[1].key);
  });

  it('TAXII filters: layers override field by field; both match spellings; bad values refused', () => {
    const f = buildFilters({ added_after: '2024-01-01T00:00:00Z', limit: '50', 'match[type]': 'indicator, malware' }, { match: { type: ['tool'], id: 'tool--1' }, limit: 10 });
    assert.deepEqual(f, { addedAfter: '2024-01-01T00:00:00.000000Z', limit: 10, match: { id: ['tool--1'], type: ['tool'] } });
    assert.deepEqual(buildFilters({}), {});
    assert.throws(() => buildFilters({ limit: 0 }), code('BAD_FILTER'));
    assert.throws(() => buildFilters({ match: 'type=x' }), code('BAD_FILTER'));
    assert.throws(() => buildFilters({ 'match[id]': 5 }), code('BAD_FILTER'));
  });

  it('TAXII rejections name every failed object with the server reason', () => {
    const st = {
      id: 's',
      status: 'complete',
      total_count: 3,
      success_count: 1,
      failure_count: 2,
      pending_count: 0,
      failures: [
        { id: 'indicator--a', version: '2024-01-01T00:00:00Z', message: 'hash mismatch' },
        { id: 'indicator--b', message: 'not anchored' },
      ],
      requests: [],
    } as AddObjectsResult;
    const err = rejectionError('coll', st);
    assert.equal(err?.code, 'TAXII_REJECTED');
    assert.match(String(err?.message), /2 of 3 object\(s\) rejected — indicator--a: version 2024-01-01T00:00:00Z: hash mismatch; indicator--b: not anchored/);
    assert.equal(rejectionError('coll', { ...st, failure_count: 0, failures: undefined }), undefined);
  });

  it('deliveries: settled once, second settle reported, released ones reported, unknown ids reported', async () => {
    const t = new DeliveryTracker(2);
    const calls: string[] = [];
    const settler = (n: string) => ({ ack: () => void calls.push(`ack ${n}`), nack: (rq: boolean) => void calls.push(`nack ${n} ${rq}`) });
    const a = t.track('sub1', settler('a'));
    const b = t.track('sub1', settler('b'));
    const c = t.track('sub2', settler('c'));
    assert.notEqual(a, b);
    const changes: string[] = [];
    t.onChange((o) => changes.push(o));
    assert.equal(t.unsettled('sub1'), 2);
    assert.equal((await t.settle(a, { kind: 'ack' })).outcome, 'settled');
    const again = await t.settle(a, { kind: 'nack', requeue: true });
    assert.equal(again.outcome, 'already-settled');
    assert.equal(t.release('sub1'), 1);
    assert.equal((await t.settle(b, { kind: 'ack' })).outcome, 'released');
    assert.equal((await t.settle('nope', { kind: 'ack' })).outcome, 'unknown');
    const failing = t.track('sub2', {
      ack: () => {
        throw new Error('channel closed');
      },
      nack: () => undefined,
    });
    const f = await t.settle(failing, { kind: 'ack' });
    assert.equal(f.outcome, 'failed');
    assert.equal((await t.settle(failing, { kind: 'ack' })).outcome, 'already-settled', 'never settled twice, even after a failure');
    assert.deepEqual(calls, ['ack a']);
    assert.deepEqual(changes, ['sub1', 'sub1', 'sub2']);
    assert.equal(t.unsettled(), 1);
    assert.equal(t.ownerOf(c), 'sub2');
    // bounded memory: the oldest outcomes are forgotten
    assert.equal((await t.settle(a, { kind: 'ack' })).outcome, 'unknown');
    assert.deepEqual(nackOverride({ requeue: true }), { kind: 'nack', requeue: true });
    assert.deepEqual(nackOverride({}), { kind: 'nack', requeue: false });
    assert.deepEqual(nackOverride(true), { kind: 'nack', requeue: false });
    assert.equal(nackOverride(undefined), undefined);
  });

  it('msg.sets: a node replaces the keys it owns and keeps the rest', () => {
    const merged = mergeSets({ key: 'old', hash: 'old', taxii: { id: 's' } }, ANCHOR_KEYS, { collection: 'c', items: [] });
    assert.deepEqual(merged, { taxii: { id: 's' }, collection: 'c', items: [] });
    assert.deepEqual(mergeSets('not an object', [], { a: 1 }), { a: 1 });
    const v = (status: Verification['status']): Verification => ({ status, id: `x--${status}`, collection: 'c', version: null, key: 'k', scope: 's', actual: 'h', reason: `${status} reason` });
    const whole = wholeVerificationFragment([v('verified'), v('not-anchored'), v('mismatch')]).verification as Record<string, unknown>;
    assert.equal(whole.status, 'mismatch', 'the worst status wins');
    assert.equal(whole.rejected, 2);
    assert.equal(whole.reason, 'not-anchored reason; mismatch reason');
    const undecided = wholeVerificationFragment([v('verified'), v('unknown')]).verification as Record<string, unknown>;
    assert.equal(undecided.status, 'unknown');
    assert.deepEqual([undecided.verified, undecided.rejected, undecided.undecided], [1, 0, 1], 'undecided is not counted as rejected');
    assert.equal(undecided.reason, 'unknown reason');
    assert.deepEqual([...(hashesFromSets({ items: [{ id: 'a', hash: '0x1' }, { id: 'b' }] }) ?? [])], [['a', '0x1']]);
    assert.equal(hashesFromSets({}), undefined);
  });

  it('connection settings: anchor deadline and broker wait (seconds in the forms) reach the adapters in ms', () => {
    const ledgerRaw = { rpcUrl: 'http://127.0.0.1:8545', chainId: '31337', contract: '0x' + '11'.repeat(20) };
    assert.equal(ledgerConfig(parseLedgerSettings(ledgerRaw), {}).txTimeoutMs, 120_000, 'default 120 s');
    assert.equal(ledgerConfig(parseLedgerSettings({ ...ledgerRaw, anchorDeadline: '600' }), {}).txTimeoutMs, 600_000);
    assert.throws(() => parseLedgerSettings({ ...ledgerRaw, anchorDeadline: '2' }), /anchor deadline \(seconds\) must be a whole number between 5/);
    assert.equal(brokerConfig(parseBrokerSettings({}), {}).brokerWaitMs, 120_000, 'default 120 s');
    assert.equal(brokerConfig(parseBrokerSettings({ brokerWait: 30 }), {}).brokerWaitMs, 30_000);
    assert.throws(() => parseBrokerSettings({ brokerWait: 'soon' }), /broker wait \(seconds\)/);
  });

  it('connection settings: credentials never go into the broker URL; empty optional values are left out', () => {
    const b = brokerConfig({ host: 'mq.example', port: 5671, tls: true, vhost: 'cti', exchange: 'sets' }, { username: 'u', password: 'secret' });
    assert.equal(b.url, 'amqps://mq.example:5671');
    assert.equal(b.username, 'u');
    assert.equal(b.password, 'secret');
    assert.deepEqual(b.tls, { rejectUnauthorized: true });
    assert.equal(brokerConfig({ host: '::1' }, {}).url, 'amqp://[::1]:5672');
    const l = ledgerConfig({ kind: 'evm', rpcUrl: 'http://x', chainId: '1337', contract: '0xabc', gasPrice: '', txType: 0 }, {});
    assert.deepEqual(l, { kind: 'evm', rpcUrl: 'http://x', address: '0xabc', chainId: '1337', txType: 0 });
  });
});
