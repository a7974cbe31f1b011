/**
 * Issue 11 (review leftover): the authentication flood protection (lib/auth/throttle.ts) is
 * reachable from the server settings the front ends parse (lib/ops/server-config.ts).
 */
import { strict as assert } from 'node:assert';
import { OpsError } from '../../lib/ops/errors';
import { PROTECTION_DEFAULTS, buildServerConfig, checkServerSettings, parseProtection, parseServerSettings } from '../../lib/ops/server-config';
import { THROTTLE_DEFAULTS } from '../../lib/auth/throttle';
import { MemoryStore } from './memory-store';

const COLS = [{ id: 'c1', title: 'one', canRead: ['reader'], canWrite: ['writer'] }];

describe('server settings: protection against login floods', () => {
  it('the defaults shown by the front ends are the library\'s', () => {
    assert.deepEqual({ ...PROTECTION_DEFAULTS }, { ...THROTTLE_DEFAULTS });
  });

  it('empty fields: no protection settings (the library defaults apply)', () => {
    assert.equal(parseProtection({}), undefined);
    assert.equal(parseProtection({ addressBurst: '', userBurst: null, refillMs: undefined }), undefined);
    assert.equal(parseServerSettings({ collections: COLS }).protection, undefined);
  });

  it('good values, as text (Node-RED) or numbers (n8n)', () => {
    const s = parseServerSettings({
      collections: COLS,
      addressBurst: '3',
      userBurst: 0,
      refillMs: ' 2500 ',
      maxTracked: 500,
      maxConcurrentHashes: '1',
      maxQueuedHashes: 0,
    });
    assert.deepEqual(s.protection, { addressBurst: 3, userBurst: 0, refillMs: 2500, maxTracked: 500, maxConcurrentHashes: 1, maxQueuedHashes: 0 });
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['addressBurst', '-1', /^failed logins per address \(addressBurst\) must be a whole number between 0 and 1000000, got "-1"$/],
    ['userBurst', '2.5', /^failed logins per user name \(userBurst\) must be a whole number between 0 and 1000000, got "2.5"$/],
    ['refillMs', '0', /^login attempt regained every \(refillMs, ms\) must be a whole number between 1 and 86400000, got "0"$/],
    ['refillMs', 'soon', /\(refillMs, ms\) must be a whole number .* got "soon"$/],
    ['maxTracked', '0', /^addresses and user names tracked \(maxTracked\) must be a whole number between 1 and 10000000/],
    ['maxConcurrentHashes', 0, /^password checks at once \(maxConcurrentHashes\) must be a whole number between 1 and 256, got "0"$/],
    ['maxConcurrentHashes', '1000', /\(maxConcurrentHashes\) must be a whole number between 1 and 256, got "1000"$/],
    ['maxQueuedHashes', '-3', /^password checks queued \(maxQueuedHashes\) must be a whole number between 0 and 1000000, got "-3"$/],
  ];
  for (const [field, value, message] of bad) {
    it(`${field} = ${JSON.stringify(value)}: BAD_CONFIG naming the field`, () => {
      assert.throws(
        () => parseServerSettings({ collections: COLS, [field]: value }),
        (err: unknown) => err instanceof OpsError && err.code === 'BAD_CONFIG' && message.test(err.message),
      );
    });
  }

  it('settings built in code are checked too (checkServerSettings)', () => {
    assert.throws(
      () => checkServerSettings({ title: 't', apiRoot: 'api1', collections: [], protection: { maxQueuedHashes: -1 } }),
      /password checks queued \(maxQueuedHashes\) must be a whole number between 0 and 1000000, got -1/,
    );
  });

  it('buildServerConfig hands them to the throttle and to the Basic hashing gate', async () => {
    const s = parseServerSettings({ collections: COLS, addressBurst: '2', userBurst: '4', refillMs: '100', maxTracked: '50', maxConcurrentHashes: '1', maxQueuedHashes: '3' });
    const cfg = await buildServerConfig(s, { users: 'ann:ann-password-1:reader' }, new MemoryStore(), { scryptN: 1024 });
    assert.deepEqual(cfg.auth.throttle, { addressBurst: 2, userBurst: 4, refillMs: 100, maxTracked: 50 });
    assert.equal(cfg.auth.basic?.maxConcurrentHashes, 1);
    assert.equal(cfg.auth.basic?.maxQueuedHashes, 3);
    const plain = await buildServerConfig(parseServerSettings({ collections: COLS }), { users: 'ann:ann-password-1:reader' }, new MemoryStore(), { scryptN: 1024 });
    assert.equal(plain.auth.throttle, undefined, 'no settings: the library defaults');
  });
});
