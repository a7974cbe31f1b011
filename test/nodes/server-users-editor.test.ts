/**
 * The taxii-server dialog's users / API-keys editor (issue 13.4), on the real Node-RED runtime:
 * deploys go through the runtime's own credential handling (credentials.extract keeps a password
 * credential only when `__PWRD__` is sent and otherwise replaces it), as the editor's deploy does.
 *
 * - an old flow ("user:password:roles" text credentials) still authenticates;
 * - the dialog's save converts it: old passwords kept by name, the text dropped, only hashes kept;
 * - changing one user's password leaves the others signing in; removing a user refuses it;
 *   renaming keeps the password; a restart before the next save ends in the same place;
 * - the admin endpoint gives the dialog an old flow's names and roles, never a secret.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Recorder, helper, nodeRedVersion, placed, until, type Credentials, type FlowNode } from './helper';
import { TAXII, baseUrl, basic, bridgeHttpNode, raw, runtimeSettings, serverNodes } from './server-harness';
import { collectionId } from './stix';

const KEY = 'feed-key-0123456789abcdefghij';
const NEW_KEY = 'new-feed-key-9876543210zyxwvut';
const OLD_USERS = 'alice:alice-pw-0001:reader\nbob:bob-pw-0002:reader,writer';
const OLD_KEYS = `feed:${KEY}:reader`;

/** The helper's supertest handle on the runtime's admin app (untyped in ./helper). */
const admin = helper as unknown as { request(): { get(p: string): PromiseLike<{ status: number; body: unknown }> } };

interface Row {
  id: string;
  name: string;
  roles: string[];
}

describe(`taxii-server users and API keys editor on Node-RED ${nodeRedVersion}`, function () {
  this.timeout(60_000);
  let userDir: string;
  const COLL = collectionId();

  before(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-users-editor-'));
    runtimeSettings({ userDir });
    await helper.startServer();
    bridgeHttpNode();
  });

  after(async () => {
    await helper.stopServer();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await helper.unload();
  });

  function flow(server: Partial<FlowNode> = {}): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'users' },
      { id: 'store', type: 'sets-store', name: 'users editor', kind: 'embedded' },
      {
        id: 'srv',
        type: 'taxii-server',
        z: 'tab',
        store: 'store',
        basePath: '/ue',
        title: 'users editor test',
        apiRoot: 'r',
        collections: [{ id: COLL, title: 'members', canRead: ['reader'], canWrite: ['writer'], integrity: 'required' }],
        wires: [[], []],
        ...server,
      },
    ].map(placed);
  }

  const url = (p: string): string => `${baseUrl()}/ue/r/${p}`;
  async function status(user: string, password: string): Promise<number> {
    return (await raw('GET', url(`collections/${COLL}/`), { headers: basic(user, password) })).status;
  }
  async function keyStatus(key: string): Promise<number> {
    return (await raw('GET', url(`collections/${COLL}/`), { headers: { Authorization: `Token ${key}`, Accept: TAXII } })).status;
  }
  /** wait until the server answers (after a deploy the node restarts and hashes its users) */
  async function ready(user: string, password: string): Promise<void> {
    await until(`${user} signs in`, async () => (await status(user, password)) === 200);
  }
  const stored = (): Record<string, string> => ({ ...(helper.credentials.get('srv') ?? {}) });

  /**
   * A deploy from the editor: the node as the dialog saved it, with the credential fields the
   * dialog sends inline (the runtime's credentials.extract applies them to the stored ones).
   */
  async function deploy(server: Partial<FlowNode>, sent?: Record<string, string>): Promise<void> {
    const nodes = flow(server).map((n) => (n.id === 'srv' && sent ? { ...n, credentials: sent } : n));
    try {
      await helper.setFlows(nodes, 'full');
    } catch (err) {
      // the helper gives up waiting for 'flows:started' after 300 ms; the deploy itself went through
      if (!/timeout waiting event/.test(String(err))) throw err;
    }
  }

  const ROWS: Row[] = [
    { id: 'u-alice', name: 'alice', roles: ['reader'] },
    { id: 'u-bob', name: 'bob', roles: ['reader', 'writer'] },
  ];
  const KEY_ROWS: Row[] = [{ id: 'k-feed', name: 'feed', roles: ['reader'] }];

  /** An old flow, then the dialog's first save: rows referring to the old entries by name. */
  async function converted(): Promise<void> {
    const creds: Credentials = { srv: { users: OLD_USERS, apiKeys: OLD_KEYS } };
    await helper.load(serverNodes, flow(), creds);
    await ready('alice', 'alice-pw-0001');
    const changes = { users: { 'u-alice': { legacy: 'alice' }, 'u-bob': { legacy: 'bob' } }, apiKeys: { 'k-feed': { legacy: 'feed' } } };
    await deploy({ userList: ROWS, apiKeyList: KEY_ROWS }, { secretChanges: JSON.stringify(changes) });
    await ready('bob', 'bob-pw-0002');
    // the clear passwords are replaced by their scrypt hashes once hashed
    await until('only hashes stored', () => {
      const c = stored();
      return c['secrets'] !== undefined && !c['secrets'].includes('"p"') && c['users'] === undefined && c['secretChanges'] === undefined;
    });
  }

  it('an old flow with "user:password:roles" text credentials still authenticates, and its store is left as it was', async () => {
    await helper.load(serverNodes, flow(), { srv: { users: OLD_USERS, apiKeys: OLD_KEYS } });
    await ready('alice', 'alice-pw-0001');
    assert.equal(await status('bob', 'bob-pw-0002'), 200);
    assert.equal(await status('bob', 'wrong-password'), 401);
    assert.equal(await keyStatus(KEY), 200);
    assert.deepEqual(stored(), { users: OLD_USERS, apiKeys: OLD_KEYS });
  });

  it("the dialog's first save converts it: old passwords and keys kept by name, the text dropped, no clear secret kept", async () => {
    await converted();
    assert.equal(await status('alice', 'alice-pw-0001'), 200);
    assert.equal(await keyStatus(KEY), 200);
    const text = JSON.stringify(stored());
    for (const secret of ['alice-pw-0001', 'bob-pw-0002', KEY]) assert.ok(!text.includes(secret), `a clear secret is still stored: ${text}`);
    assert.match(text, /scrypt\$/);
    assert.match(text, /sha256\$/);
  });

  it("changing one user's password: that user signs in with the new one only, the others keep theirs", async () => {
    await converted();
    await deploy({ userList: ROWS, apiKeyList: KEY_ROWS }, { secretChanges: JSON.stringify({ users: { 'u-bob': { password: 'bob-new-pw-0003' } } }) });
    await ready('bob', 'bob-new-pw-0003');
    assert.equal(await status('bob', 'bob-pw-0002'), 401);
    assert.equal(await status('alice', 'alice-pw-0001'), 200);
    assert.equal(await keyStatus(KEY), 200);
    // a save that changes nothing secret (the dialog sends __PWRD__) keeps every secret
    await deploy({ userList: ROWS, apiKeyList: KEY_ROWS, title: 'renamed server' }, { secretChanges: '__PWRD__' });
    await until('title applied', async () => ((await raw('GET', `${baseUrl()}/ue/taxii2/`, { headers: basic('alice', 'alice-pw-0001') })).json as { title?: string } | undefined)?.title === 'renamed server');
    assert.equal(await status('bob', 'bob-new-pw-0003'), 200);
    assert.equal(await status('alice', 'alice-pw-0001'), 200);
  });

  it('removing a user refuses it; renaming keeps the password; a new API key replaces only its row', async () => {
    await converted();
    await deploy(
      { userList: [{ id: 'u-bob', name: 'robert', roles: ['reader'] }], apiKeyList: [...KEY_ROWS, { id: 'k-new', name: 'misp', roles: ['reader'] }] },
      { secretChanges: JSON.stringify({ apiKeys: { 'k-new': { key: NEW_KEY } } }) },
    );
    await ready('robert', 'bob-pw-0002');
    assert.equal(await status('alice', 'alice-pw-0001'), 401);
    assert.equal(await status('bob', 'bob-pw-0002'), 401);
    assert.equal(await keyStatus(KEY), 200);
    assert.equal(await keyStatus(NEW_KEY), 200);
    const secrets = JSON.parse(stored()['secrets'] ?? '{}') as { users: Record<string, unknown>; apiKeys: Record<string, unknown> };
    assert.deepEqual(Object.keys(secrets.users), ['u-bob']);
    assert.deepEqual(Object.keys(secrets.apiKeys).sort(), ['k-feed', 'k-new']);
  });

  it('a restart before the next save (stored secrets and the change-set still on file) ends in the same accounts', async () => {
    await converted();
    const before = stored();
    await helper.unload();
    const onFile = { ...before, secretChanges: JSON.stringify({ users: { 'u-alice': { password: 'alice-new-pw-4' } } }) };
    for (let i = 0; i < 2; i++) {
      await helper.load(serverNodes, flow({ userList: ROWS, apiKeyList: KEY_ROWS }), { srv: onFile });
      await ready('alice', 'alice-new-pw-4');
      assert.equal(await status('alice', 'alice-pw-0001'), 401);
      assert.equal(await status('bob', 'bob-pw-0002'), 200);
      await helper.unload();
    }
  });

  it('a row without a password is left out with a warning naming it; the others sign in', async () => {
    const rows = [...ROWS, { id: 'u-carol', name: 'carol', roles: ['reader'] }];
    const changes = { users: { 'u-alice': { password: 'alice-pw-0001' }, 'u-bob': { password: 'bob-pw-0002' } } };
    await helper.load(serverNodes, flow({ userList: rows }), { srv: { secretChanges: JSON.stringify(changes) } });
    const rec = new Recorder(helper.getNode('srv'));
    await ready('alice', 'alice-pw-0001');
    assert.equal(await status('carol', ''), 401);
    // the warning was given while the node started (before the recorder): read the log instead
    const logged = JSON.stringify(helper.log().getCalls().map((c) => c.args));
    assert.match(logged, /user carol has no password and cannot sign in/);
    assert.ok(!logged.includes('alice-pw-0001'), 'a password reached the log');
    assert.ok(rec.errors.length === 0, `unexpected errors: ${rec.text()}`);
  });

  it('a malformed row is a clear setup error naming it (nothing mounted), not a crash', async () => {
    await helper.load(serverNodes, flow({ userList: [{ id: 'u1', name: 'a:b', roles: [] }] }), {});
    await until('error logged', () => /user #1: the user name a:b contains ':'/.test(JSON.stringify(helper.log().getCalls().map((c) => c.args))));
    assert.equal((await raw('GET', `${baseUrl()}/ue/taxii2/`, { headers: { Accept: TAXII } })).status, 404);
  });

  it("the admin endpoint gives the dialog an old flow's names and roles, never a secret", async () => {
    await helper.load(serverNodes, flow(), { srv: { users: OLD_USERS, apiKeys: OLD_KEYS } });
    const res = await admin.request().get('/sets/taxii-server/srv/accounts');
    assert.equal(res.status, 200);
    const body = res.body as { ok: boolean; users: unknown; apiKeys: unknown };
    assert.deepEqual(body, {
      ok: true,
      users: [
        { name: 'alice', roles: ['reader'] },
        { name: 'bob', roles: ['reader', 'writer'] },
      ],
      apiKeys: [{ name: 'feed', roles: ['reader'] }],
    });
    const text = JSON.stringify(res.body);
    for (const secret of ['alice-pw-0001', 'bob-pw-0002', KEY]) assert.ok(!text.includes(secret));
  });

  it('the running badge is short: "listening … · N collections"', async () => {
    await helper.load(serverNodes, flow(), { srv: { users: OLD_USERS } });
    const rec = new Recorder(helper.getNode('srv'));
    await ready('alice', 'alice-pw-0001');
    await until('green badge', () => rec.lastStatus?.fill === 'green');
    assert.match(String(rec.lastStatus?.text), /^listening( :\d+)? · 1 collection$/);
  });
});
