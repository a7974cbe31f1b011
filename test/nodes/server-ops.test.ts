/**
 * The framework-free logic behind the server nodes (lib/ops/server-*.ts), shared with n8n:
 * settings -> TAXII server configuration (users, API keys, collections, OAuth2), the integrity
 * rules applied to verification results, status queries, and the store as a shared connection —
 * on a real embedded store in a temporary directory.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedStore } from '../../lib/store/embedded';
import type { Store } from '../../lib/store/store';
import { hashObject, ledgerKey, objectVersion } from '../../lib/digest';
import { BasicVerifier } from '../../lib/auth/server-basic';
import {
  buildServerConfig,
  checkServerSettings,
  hashApiKeys,
  parseApiKeys,
  parseCollections,
  parseUsers,
  type ServerSettings,
} from '../../lib/ops/server-config';
import {
  effectiveWaitMs,
  inquiryDefers,
  integrityTarget,
  parseStatusQuery,
  queryStatuses,
  countStatuses,
  recordInfo,
  settleIntegrity,
  storeRecorder,
  verificationOf,
  type VerdictRecorder,
} from '../../lib/ops/server-integrity';
import { StoreConnection, defaultStoreDir, redactUri, storeConfig } from '../../lib/ops/server-store';
import { until } from './helper';
import { collectionId, indicator, malware } from './stix';

const throwsCode = (fn: () => unknown, code: string, re: RegExp): void => {
  assert.throws(fn, (err: Error & { code?: string }) => err.code === code && re.test(err.message));
};

describe('server operations (lib/ops/server-*)', function () {
  describe('users, API keys, collections', () => {
    it('parses user lines (comments, passwords with ":") and JSON lists', () => {
      assert.deepEqual(parseUsers('# team\nalice:pa:ss:w0rd:reader, writer\n\n bob : b0b-pw :reader'), [
        { username: 'alice', password: 'pa:ss:w0rd', roles: ['reader', 'writer'] },
        { username: 'bob', password: ' b0b-pw ', roles: ['reader'] },
      ]);
      assert.deepEqual(parseUsers('[{"username":"carol","password":"c","roles":"a b"}]'), [{ username: 'carol', password: 'c', roles: ['a', 'b'] }]);
      assert.deepEqual(parseUsers('  '), []);
    });

    it('refuses bad user lists naming the line, never echoing a password', () => {
      throwsCode(() => parseUsers('alice:secret-1'), 'BAD_CONFIG', /line 1: expected user:password:role1,role2/);
      throwsCode(() => parseUsers('a:x:r\na:secret-2:r'), 'BAD_CONFIG', /line 2: user a is listed twice/);
      throwsCode(() => parseUsers(':secret-3:r'), 'BAD_CONFIG', /user name is empty/);
      throwsCode(() => parseUsers('[{"username":"a"}]'), 'BAD_CONFIG', /user #1 needs "username" and "password"/);
      throwsCode(() => parseUsers('[not json'), 'BAD_CONFIG', /not valid JSON/);
      for (const text of ['alice:secret-1', 'a:x:r\na:secret-2:r', ':secret-3:r']) {
        try {
          parseUsers(text);
        } catch (err) {
          assert.ok(!/secret-\d/.test((err as Error).message), 'no password in the message');
        }
      }
    });

    it('API keys: lines and JSON, hashed; a short key is refused naming its holder only', () => {
      const keys = parseApiKeys('feed:0123456789abcdefghijk:consumer,reader');
      assert.deepEqual(keys, [{ name: 'feed', key: '0123456789abcdefghijk', roles: ['consumer', 'reader'] }]);
      const [entry] = hashApiKeys(keys);
      assert.match(entry.keyHash, /^sha256\$[A-Za-z0-9_-]{43}$/);
      assert.equal(hashApiKeys([{ name: 'pre', key: entry.keyHash, roles: [] }])[0].keyHash, entry.keyHash, 'a hash is taken as is');
      assert.throws(
        () => hashApiKeys(parseApiKeys('[{"name":"bot","key":"short-key-1","roles":[]}]')),
        (err: Error) => /API key of bot: .*at least 20/.test(err.message) && !err.message.includes('short-key-1'),
      );
      throwsCode(() => parseApiKeys('a:k1234567890123456789:r\na:k1234567890123456780:r'), 'BAD_CONFIG', /line 2: the name a is listed twice/);
    });

    it('collections: defaults, role text, policies (legacy spellings too) and clear refusals', () => {
      const [c] = parseCollections([{ id: 'c1', canRead: '*, reader', canWrite: 'writer' }]);
      assert.deepEqual(c, { id: 'c1', title: 'c1', canRead: ['*', 'reader'], canWrite: ['writer'], integrity: 'required' });
      const policies = parseCollections(
        ['required', 'optional', 'off', 'verify', 'trust', 'none'].map((integrity, i) => ({ id: `p${i}`, integrity, canRead: [], canWrite: [] })),
      ).map((x) => x.integrity);
      assert.deepEqual(policies, ['required', 'optional', 'off', 'required', 'off', 'off']);
      assert.equal(parseCollections(JSON.stringify([{ id: 'x', alias: 'feed', description: 'd' }]))[0].alias, 'feed');
      throwsCode(() => parseCollections([{ id: 'a' }, { id: 'a' }]), 'BAD_CONFIG', /collection #2 \(a\): the id is used twice/);
      throwsCode(() => parseCollections([{ id: 'has space' }]), 'BAD_CONFIG', /cannot be used in a URL/);
      throwsCode(() => parseCollections([{ id: '' }]), 'BAD_CONFIG', /collection #1: the id is empty/);
      throwsCode(() => parseCollections([{ id: 'a', integrity: 'sometimes' }]), 'BAD_CONFIG', /integrity policy must be one of required, optional, off/);
      throwsCode(() => parseCollections([{ id: 'a', alias: 'a b' }]), 'BAD_CONFIG', /alias cannot be used in a URL/);
    });
  });

  describe('server configuration', () => {
    let dir: string;
    let store: EmbeddedStore;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-h8-ops-cfg-'));
      store = new EmbeddedStore({ dir });
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    const base = (over: Partial<ServerSettings> = {}): ServerSettings => ({
      title: 'T',
      apiRoot: 'api1',
      collections: parseCollections([{ id: 'c1', canRead: ['r'], canWrite: ['w'], integrity: 'optional' }]),
      ...over,
    });

    it('builds one API root with its collections, hashed users and API keys, OAuth2 with Keycloak client roles', async () => {
      const cfg = await buildServerConfig(
        base({ oauth2: { issuer: 'https://kc/realms/cti', jwksUrl: 'https://kc/realms/cti/certs', audience: 'taxii', clientId: 'taxii-server', clockToleranceSec: 5 } }),
        { users: 'alice:alice-pw:r', apiKeys: 'feed:0123456789abcdefghijk:r', nextTokenSecret: 'a-shared-secret-of-32-characters' },
        store,
        { scryptN: 1024 },
      );
      assert.deepEqual(Object.keys(cfg.apiRoots), ['api1']);
      assert.equal(cfg.defaultApiRoot, 'api1');
      assert.deepEqual(cfg.apiRoots['api1'].collections[0].integrity, { policy: 'optional' });
      const users = cfg.auth.basic?.users ?? [];
      assert.equal(users.length, 1);
      assert.ok(!JSON.stringify(cfg.auth).includes('alice-pw'), 'no clear password kept');
      assert.deepEqual(await new BasicVerifier(users).verify({ username: 'alice', password: 'alice-pw' }), { username: 'alice', roles: ['r'] });
      assert.equal(cfg.auth.apiKeys?.[0]?.name, 'feed');
      assert.deepEqual(cfg.auth.oauth2?.clients, ['taxii-server', 'taxii']);
      assert.equal(cfg.auth.oauth2?.clockToleranceSec, 5);
      assert.equal(cfg.nextTokenSecret, 'a-shared-secret-of-32-characters');
    });

    it('refuses a server nobody could use, and names bad API roots and OAuth2 settings', async () => {
      await assert.rejects(buildServerConfig(base(), {}, store), /no way to authenticate/);
      const open = await buildServerConfig(base({ open: true }), {}, store);
      assert.equal(open.auth.open, true);
      for (const [apiRoot, re] of [
        ['taxii2', /cannot be named taxii2/],
        ['a/b', /one URL path segment/],
        ['..', /one URL path segment/],
      ] as const) {
        throwsCode(() => checkServerSettings(base({ apiRoot, open: true })), 'BAD_CONFIG', re);
      }
      throwsCode(() => checkServerSettings(base({ oauth2: { issuer: 'x', jwksUrl: 'ftp://nope' } })), 'BAD_CONFIG', /JWKS URL/);
      throwsCode(() => checkServerSettings(base({ oauth2: { issuer: ' ', jwksUrl: 'https://kc/certs' } })), 'BAD_CONFIG', /issuer/);
    });
  });

  describe('integrity rules, queries and counts on an embedded store', () => {
    let dir: string;
    let store: Store;
    const C = collectionId();
    const add = async (o: ReturnType<typeof indicator>): Promise<string> => {
      const version = objectVersion(o) as string;
      const out = await store.add({
        collection: C,
        id: o.id,
        type: o.type,
        version,
        specVersion: '2.1',
        mediaType: 'application/stix+json;version=2.1',
        object: o,
        hash: hashObject(o),
        key: ledgerKey(C, o.id, version),
        status: 'pending',
      });
      return out.record.version;
    };

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-h8-ops-'));
      store = new EmbeddedStore({ dir });
      await store.open();
    });
    after(async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('reads the verification and its record from msg.sets, refusing what cannot be told', () => {
      assert.equal(verificationOf({}), null);
      assert.equal(verificationOf({ verification: 'x' }), null);
      assert.equal(effectiveWaitMs({ policy: 'off' }, 30_000), 0);
      assert.equal(effectiveWaitMs({ policy: 'required' }, 30_000), 30_000);
      assert.equal(effectiveWaitMs(undefined, 30_000), 30_000);
      throwsCode(() => verificationOf({ verification: { status: 'fine' } }), 'BAD_PAYLOAD', /must be one of verified, mismatch, not-anchored, wrong-writer, conflict, unknown/);
      assert.deepEqual(verificationOf({ verification: { status: 'unknown', reason: 'ledger unreachable' } }), { status: 'unknown', reason: 'ledger unreachable' });
      const v = verificationOf({ verification: { status: 'mismatch', reason: 'r', id: 'i', collection: 'c', version: null } });
      assert.deepEqual(v, { status: 'mismatch', reason: 'r', id: 'i', collection: 'c', version: null });
      throwsCode(() => integrityTarget({}, { status: 'verified', id: 'x' }), 'BAD_PAYLOAD', /needs collection, id and version/);
      assert.deepEqual(integrityTarget({ collection: 'c', id: 'i', version: 'v', statusId: 's', origin: 'inquiry', status: 'pending' }, { status: 'verified' }), {
        collection: 'c',
        id: 'i',
        version: 'v',
        statusId: 's',
        origin: 'inquiry',
        status: 'pending',
      });
    });

    it('an inquiry that finds no anchor yet leaves an unsettled record to its admission check until its anchoring deadline', async () => {
      const future = new Date(Date.now() + 3_600_000).toISOString();
      const past = new Date(Date.now() - 1000).toISOString();
      assert.equal(inquiryDefers({ status: 'not-anchored' }, { origin: 'inquiry', status: 'pending', anchorDeadline: future }), true);
      assert.equal(inquiryDefers({ status: 'not-anchored' }, { origin: 'inquiry', status: 'pending', anchorDeadline: past }), false, 'deadline passed: it counts');
      assert.equal(inquiryDefers({ status: 'not-anchored' }, { origin: 'inquiry', status: 'pending' }), false, 'no deadline given: the recorder decides from the stored record');
      assert.equal(inquiryDefers({ status: 'not-anchored' }, { origin: 'inquiry', status: 'finalized', anchorDeadline: future }), false);
      assert.equal(inquiryDefers({ status: 'not-anchored' }, { origin: 'admission', status: 'pending', anchorDeadline: future }), false);
      assert.equal(inquiryDefers({ status: 'mismatch' }, { origin: 'inquiry', status: 'pending', anchorDeadline: future }), false);
      const calls: string[] = [];
      const recorder: VerdictRecorder = async (_c, id, _v, verdict, _r, _s, origin) => {
        calls.push(`${id}:${verdict}:${origin ?? ''}`);
        return { stored: true, status: 'invalid', changed: true, reason: 'r' };
      };
      const t = { collection: 'c', id: 'i', version: 'v', origin: 'inquiry' as const, status: 'pending' as const, anchorDeadline: future };
      const deferred = await settleIntegrity(recorder, t, { status: 'not-anchored' });
      assert.deepEqual([deferred.status, deferred.changed, calls.length], ['pending', false, 0]);
      const applied = await settleIntegrity(recorder, t, { status: 'mismatch' });
      assert.deepEqual([applied.status, applied.changed, calls], ['invalid', true, ['i:mismatch:inquiry']]);
      const late = await settleIntegrity(recorder, { ...t, anchorDeadline: past }, { status: 'not-anchored' });
      assert.deepEqual([late.changed, calls[1]], [true, 'i:not-anchored:inquiry'], 'after the deadline the verdict goes to the recorder');
      const gone = await settleIntegrity(async () => ({ stored: false, status: 'absent', changed: false, reason: 'deleted' }), t, { status: 'verified' });
      assert.equal(gone.status, 'absent');
    });

    it('storeRecorder: verified -> finalized once, mismatch / not anchored -> invalid with the reason, invalid stays invalid', async () => {
      const rec = storeRecorder(store);
      const a = indicator('a');
      const b = malware('b');
      const c = indicator('c');
      const [va, vb, vc] = [await add(a), await add(b), await add(c)];
      assert.deepEqual(await rec(C, a.id, va, 'verified'), { stored: true, status: 'finalized', changed: true, reason: 'integrity verified: the hash matches the ledger' });
      assert.equal((await rec(C, a.id, va, 'verified')).changed, false, 'already finalized: nothing written');
      const m = await rec(C, b.id, vb, 'mismatch', 'hash mismatch for b');
      assert.deepEqual([m.status, m.reason], ['invalid', 'hash mismatch for b']);
      assert.equal((await rec(C, b.id, vb, 'verified')).status, 'invalid', 'an invalid record stays invalid');
      assert.match((await rec(C, c.id, vc, 'not-anchored', 'no hash within 5 ms')).reason, /^not anchored: no hash within 5 ms/);
      assert.equal((await rec(C, 'indicator--00000000-0000-4000-8000-000000000000', va, 'verified')).status, 'absent');

      assert.deepEqual(await countStatuses(store, [C]), { pending: 0, finalized: 1, invalid: 2 });
      const all = await queryStatuses(store, [C], {});
      assert.deepEqual(
        all.items.map((x) => [x.id, x.status]),
        [
          [a.id, 'finalized'],
          [b.id, 'invalid'],
          [c.id, 'invalid'],
        ],
      );
      const invalid = await queryStatuses(store, [C], parseStatusQuery({ status: 'invalid' }), 1);
      assert.deepEqual([invalid.items.length, invalid.more], [1, true]);
      const one = await queryStatuses(store, [C], parseStatusQuery(b.id));
      assert.deepEqual([one.items[0].reason, one.items[0].key], ['hash mismatch for b', ledgerKey(C, b.id, vb)]);
      const off = await queryStatuses(store, [C], { id: a.id }, 10, () => 'off');
      assert.equal(off.items[0].status, 'unverified');
      await assert.rejects(queryStatuses(store, [C], { collection: 'elsewhere' }), /collection elsewhere is not one of/);
    });

    it('status queries: id string, filter, nothing; refuses unknown fields and statuses', () => {
      assert.deepEqual(parseStatusQuery(undefined), {});
      assert.deepEqual(parseStatusQuery(' indicator--x '), { id: 'indicator--x' });
      assert.deepEqual(parseStatusQuery({ collection: 'c', status: ['pending', 'pending', 'invalid'] }), { collection: 'c', statuses: ['pending', 'invalid'] });
      throwsCode(() => parseStatusQuery({ colour: 1 }), 'BAD_FILTER', /unknown status query field "colour"/);
      throwsCode(() => parseStatusQuery({ status: [] }), 'BAD_FILTER', /status must be among/);
      throwsCode(() => parseStatusQuery({ id: 5 }), 'BAD_FILTER', /id must be a string/);
      throwsCode(() => parseStatusQuery(42), 'BAD_FILTER', /an object id \(string\) or a filter/);
    });

    it('recordInfo: what the server hands to the flow', async () => {
      const o = indicator('info');
      await add(o);
      const r = await store.get(C, o.id);
      assert.ok(r);
      assert.deepEqual(recordInfo(r, 'api1', 'admission', { statusId: 's1', policy: 'required' }), {
        apiRoot: 'api1',
        collection: C,
        id: o.id,
        version: r.version,
        key: r.key,
        hash: hashObject(o),
        status: 'pending',
        dateAdded: r.dateAdded,
        origin: 'admission',
        policy: 'required',
        statusId: 's1',
      });
    });
  });

  describe('the store as a shared connection', () => {
    let tmp: string;
    before(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-h8-conn-'));
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it('default directory under the user dir, config errors, URIs without passwords', () => {
      assert.equal(defaultStoreDir('/u', 'My store/../x'), path.join('/u', 'sets-store', 'My_store_.._x'));
      assert.equal(defaultStoreDir('/u', '..'), path.join('/u', 'sets-store', '_'));
      assert.equal(defaultStoreDir('/u', ' '), path.join('/u', 'sets-store', 'default'));
      throwsCode(() => storeConfig({ kind: 'mongodb', db: 'sets' }, {}), 'BAD_CONFIG', /mongodb:\/\/ or mongodb\+srv:\/\//);
      throwsCode(() => storeConfig({ kind: 'mongodb' }, { uri: 'mongodb://h' }), 'BAD_CONFIG', /database name/);
      throwsCode(() => storeConfig({ kind: 'embedded' }, {}), 'BAD_CONFIG', /directory/);
      assert.deepEqual(storeConfig({ kind: 'mongodb', db: 'sets', collectionPrefix: 'p_' }, { uri: 'mongodb://u:pw@h:27017' }), {
        kind: 'mongodb',
        uri: 'mongodb://u:pw@h:27017',
        db: 'sets',
        collectionPrefix: 'p_',
      });
      assert.equal(redactUri('mongodb+srv://user:s3cret@cluster/x'), 'mongodb+srv://user:***@cluster/x');
    });

    it('opens at once (connecting -> connected), reports a store that cannot open, and retries until it can', async () => {
      const ok = StoreConnection.fromSettings({ kind: 'embedded', dir: path.join(tmp, 'ok') }, {});
      const seen: string[] = [ok.state];
      ok.onState((s) => seen.push(s));
      const s = await ok.ready();
      await s.counts();
      assert.deepEqual(seen, ['connecting', 'connected']);
      await ok.close();
      assert.equal(ok.state, 'closed');
      await assert.rejects(ok.ready(), /closed/);

      // a file where the directory should be: cannot open; once it is removed, the retry succeeds
      const blocked = path.join(tmp, 'blocked');
      fs.writeFileSync(blocked, 'not a directory');
      const bad = StoreConnection.fromSettings({ kind: 'embedded', dir: blocked }, {}, { retryMs: 100 });
      await assert.rejects(bad.ready());
      assert.equal(bad.state, 'error');
      assert.match(String(bad.error), /blocked/);
      fs.rmSync(blocked);
      await until('retried and open', () => bad.state === 'connected', 5000);
      await bad.close();
    });
  });
});
