/**
 * SETS write-once registry of CTI hashes for Hyperledger Fabric — the chaincode twin of
 * contracts/evm/SetsRegistry.sol (same rules, Fabric identities instead of EVM accounts).
 *
 * - A *writer* is the client identity that signed: `<mspId>::<subject DN>` (the subject as
 *   fabric-shim's ClientIdentity formats it). One anchor per (key, writer): a writer can never
 *   block, overwrite or pre-empt another writer's anchor under the same key.
 * - The admin grants *principals* the right to write in a scope (a collection scope, or ANY_SCOPE =
 *   every collection). A principal is `Org1MSP` (every identity of that MSP), `Org1MSP#role=x`
 *   (identities of that MSP whose certificate carries Fabric CA attribute role=x) or
 *   `Org1MSP::<subject>` (exactly one identity).
 * - An anchor stores the writer's MSP id, subject and certificate attributes, so whether it counts
 *   (`entitled`) is judged when it is READ, against the grants and identity bindings of that moment:
 *   revoking a grant withdraws the writer's word, the anchor itself stays.
 * - Deterministic: times come from the transaction header (getTxTimestamp), never the clock; state
 *   is read with point reads on the write path so that Fabric's MVCC check invalidates a write whose
 *   grant or anchor slot changed before it committed.
 *
 * Errors are thrown as `Error`s whose message starts with a code: BAD_INPUT, NOT_AUTHORISED,
 * KEY_TAKEN, NOT_INITIALISED. Results are JSON text.
 */
import { Context, Contract, Info, Returns, Transaction } from 'fabric-contract-api';

/** bytes32 "every collection" (grant only; a write names a real collection scope). */
export const ANY_SCOPE = '0x' + '0'.repeat(64);
/** Most entries one AnchorMany / ReadCTIRecordsMany call takes. */
export const MAX_BATCH = 1000;
/** Name of the chaincode event an anchoring transaction sets. */
export const ANCHOR_EVENT = 'CTIAnchored';

const BYTES32 = /^0x[0-9a-f]{64}$/;
const MSP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
// state keys (composite keys in fabric-shim's format; the admin record is a simple key)
const ADMIN_KEY = 'sets~admin';
const GRANT = 'sets~grant'; // [principal, scope] -> {"granted": bool}
const BIND = 'sets~bind'; // [identityTag, principal] -> {"bound": bool}
const ANCHOR = 'sets~anchor'; // [key, writer] -> StoredAnchor

/** A caller (or an anchor's writer), as the chaincode judges principals against it. */
export interface Subject {
  mspId: string;
  subject: string;
  attrs: Record<string, string>;
}

interface StoredAnchor {
  key: string;
  hash: string;
  scope: string;
  writer: string;
  mspId: string;
  subject: string;
  attrs: Record<string, string>;
  txId: string;
  timestamp: number;
  nanos: number;
}

interface AdminRecord {
  admin: string;
  pendingAdmin: string;
}

/** One (scope, key, hash) triple of an anchoring transaction. */
export interface EntryInput {
  scope: string;
  key: string;
  hash: string;
}

function fail(code: 'BAD_INPUT' | 'NOT_AUTHORISED' | 'KEY_TAKEN' | 'NOT_INITIALISED', message: string): never {
  throw new Error(`${code}: ${message}`);
}

function bytes32(value: unknown, what: string): string {
  if (typeof value !== 'string' || !BYTES32.test(value)) {
    fail('BAD_INPUT', `${what} must be 0x followed by 64 lower-case hex digits, got ${JSON.stringify(value)}`);
  }
  return value;
}

function writeScope(value: unknown): string {
  const scope = bytes32(value, 'scope');
  if (scope === ANY_SCOPE) fail('BAD_INPUT', 'a write must name a collection scope, not ANY_SCOPE (0x00…00)');
  return scope;
}

function nonZeroHash(value: unknown): string {
  const hash = bytes32(value, 'hash');
  if (hash === ANY_SCOPE) fail('BAD_INPUT', 'the zero hash cannot be anchored');
  return hash;
}

/** No NUL (composite-key separator) and no U+10FFFF (range end) inside a key attribute. */
function keySafe(value: string): boolean {
  return value.length > 0 && !value.includes('\u0000') && !value.includes('\u{10ffff}');
}

/**
 * Check a principal: `MSP`, `MSP#attr=value` or `MSP::/subject`. Returns it unchanged.
 */
export function parsePrincipal(value: unknown): string {
  if (typeof value !== 'string' || !keySafe(value)) {
    fail('BAD_INPUT', `principal must be a non-empty string without NUL, got ${JSON.stringify(value)}`);
  }
  const sep = value.indexOf('::');
  const hashAt = value.indexOf('#');
  if (sep >= 0 && (hashAt < 0 || sep < hashAt)) {
    const msp = value.slice(0, sep);
    const subject = value.slice(sep + 2);
    if (!MSP_ID.test(msp) || !subject.startsWith('/')) {
      fail('BAD_INPUT', `principal ${JSON.stringify(value)}: expected <mspId>::/<subject DN>`);
    }
    return value;
  }
  if (hashAt >= 0) {
    const msp = value.slice(0, hashAt);
    const attr = value.slice(hashAt + 1);
    const eq = attr.indexOf('=');
    if (!MSP_ID.test(msp) || eq <= 0 || eq === attr.length - 1) {
      fail('BAD_INPUT', `principal ${JSON.stringify(value)}: expected <mspId>#<attribute>=<value>`);
    }
    return value;
  }
  if (!MSP_ID.test(value)) fail('BAD_INPUT', `principal ${JSON.stringify(value)}: expected an MSP id such as Org1MSP`);
  return value;
}

/** The writer string of a subject: `<mspId>::<subject DN>`. */
export function writerOf(s: Subject): string {
  return `${s.mspId}::${s.subject}`;
}

/** Every principal string that names `s` (its MSP, itself, each of its certificate attributes). */
export function principalsOf(s: Subject): string[] {
  const out = [s.mspId, writerOf(s)];
  for (const name of Object.keys(s.attrs).sort()) out.push(`${s.mspId}#${name}=${s.attrs[name]}`);
  return out;
}

function matches(s: Subject, principal: string): boolean {
  return principalsOf(s).includes(principal);
}

function parseJsonArray(text: string, what: string): unknown[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    fail('BAD_INPUT', `${what} is not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed)) fail('BAD_INPUT', `${what} must be a JSON array`);
  if (parsed.length > MAX_BATCH) fail('BAD_INPUT', `${what} has ${parsed.length} entries, at most ${MAX_BATCH} allowed`);
  return parsed;
}

function field(obj: unknown, name: string, index: number): unknown {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) fail('BAD_INPUT', `entry ${index} must be an object`);
  return (obj as Record<string, unknown>)[name];
}

@Info({ title: 'SetsRegistry', description: 'SETS write-once registry of CTI hashes (per-writer anchors, scoped grants, identity bindings)' })
export class SetsRegistryContract extends Contract {
  constructor() {
    super('SetsRegistry');
  }

  override async beforeTransaction(ctx: Context): Promise<void> {
    // the caller must be an X.509 identity the registry can name; fabric-shim built it already
    this.caller(ctx);
  }

  override async unknownTransaction(ctx: Context): Promise<void> {
    const { fcn } = ctx.stub.getFunctionAndParameters();
    fail('BAD_INPUT', `no such function ${JSON.stringify(fcn)} in contract SetsRegistry`);
  }

  // ---------------------------------------------------------------- admin

  @Transaction()
  @Returns('string')
  async Initialize(ctx: Context, adminPrincipal: string): Promise<string> {
    const existing = await this.readAdmin(ctx);
    if (existing) fail('NOT_AUTHORISED', 'the registry is already initialised');
    const admin = adminPrincipal === '' ? writerOf(this.caller(ctx)) : parsePrincipal(adminPrincipal);
    await this.putJson(ctx, ADMIN_KEY, { admin, pendingAdmin: '' } satisfies AdminRecord);
    return JSON.stringify({ admin });
  }

  @Transaction()
  @Returns('string')
  async GrantWriter(ctx: Context, principal: string, scope: string): Promise<string> {
    await this.requireAdmin(ctx);
    const p = parsePrincipal(principal);
    const s = bytes32(scope, 'scope');
    await this.putJson(ctx, ctx.stub.createCompositeKey(GRANT, [p, s]), { granted: true });
    return '{}';
  }

  @Transaction()
  @Returns('string')
  async RevokeWriter(ctx: Context, principal: string, scope: string): Promise<string> {
    await this.requireAdmin(ctx);
    const p = parsePrincipal(principal);
    const s = bytes32(scope, 'scope');
    const key = ctx.stub.createCompositeKey(GRANT, [p, s]);
    // never deleted: a tombstone keeps the key's version history simple for readers and MVCC
    if (await this.flag(ctx, key, 'granted')) await this.putJson(ctx, key, { granted: false });
    return '{}';
  }

  @Transaction()
  @Returns('string')
  async BindIdentity(ctx: Context, identityTag: string, principal: string): Promise<string> {
    await this.requireAdmin(ctx);
    const tag = this.identityTag(identityTag);
    const p = parsePrincipal(principal);
    await this.putJson(ctx, ctx.stub.createCompositeKey(BIND, [tag, p]), { bound: true });
    return '{}';
  }

  @Transaction()
  @Returns('string')
  async UnbindIdentity(ctx: Context, identityTag: string, principal: string): Promise<string> {
    await this.requireAdmin(ctx);
    const tag = this.identityTag(identityTag);
    const p = parsePrincipal(principal);
    const key = ctx.stub.createCompositeKey(BIND, [tag, p]);
    if (await this.flag(ctx, key, 'bound')) await this.putJson(ctx, key, { bound: false });
    return '{}';
  }

  @Transaction()
  @Returns('string')
  async ProposeAdmin(ctx: Context, principal: string): Promise<string> {
    const rec = await this.requireAdmin(ctx);
    const pendingAdmin = principal === '' ? '' : parsePrincipal(principal);
    await this.putJson(ctx, ADMIN_KEY, { admin: rec.admin, pendingAdmin } satisfies AdminRecord);
    return JSON.stringify({ admin: rec.admin });
  }

  @Transaction()
  @Returns('string')
  async AcceptAdmin(ctx: Context): Promise<string> {
    const rec = await this.readAdmin(ctx);
    if (!rec) fail('NOT_INITIALISED', 'call Initialize(adminPrincipal) first');
    const me = this.caller(ctx);
    if (rec.pendingAdmin === '' || !matches(me, rec.pendingAdmin)) {
      fail('NOT_AUTHORISED', `${writerOf(me)} is not the proposed admin`);
    }
    await this.putJson(ctx, ADMIN_KEY, { admin: rec.pendingAdmin, pendingAdmin: '' } satisfies AdminRecord);
    return JSON.stringify({ admin: rec.pendingAdmin });
  }

  // ---------------------------------------------------------------- writes

  @Transaction()
  @Returns('string')
  async Anchor(ctx: Context, scope: string, key: string, hash: string): Promise<string> {
    const entry = { scope: writeScope(scope), key: bytes32(key, 'key'), hash: nonZeroHash(hash) };
    const result = await this.anchorAll(ctx, [entry]);
    return JSON.stringify({ writer: result.writer, existing: result.existing[0] });
  }

  @Transaction()
  @Returns('string')
  async AnchorMany(ctx: Context, entriesJson: string): Promise<string> {
    const raw = parseJsonArray(entriesJson, 'entries');
    if (raw.length === 0) fail('BAD_INPUT', 'entries must hold at least one entry');
    const entries = raw.map((e, i) => ({
      scope: writeScope(field(e, 'scope', i)),
      key: bytes32(field(e, 'key', i), `entries[${i}].key`),
      hash: nonZeroHash(field(e, 'hash', i)),
    }));
    return JSON.stringify(await this.anchorAll(ctx, entries));
  }

  // ---------------------------------------------------------------- reads

  @Transaction(false)
  @Returns('string')
  async ReadCTIRecords(ctx: Context, scope: string, key: string, identityTag: string): Promise<string> {
    const q = { scope: bytes32(scope, 'scope'), key: bytes32(key, 'key'), identity: this.optionalTag(identityTag) };
    return JSON.stringify(await this.records(ctx, q.scope, q.key, q.identity));
  }

  @Transaction(false)
  @Returns('string')
  async ReadCTIRecordsMany(ctx: Context, queriesJson: string): Promise<string> {
    const raw = parseJsonArray(queriesJson, 'queries');
    const queries = raw.map((q, i) => {
      const identity = field(q, 'identity', i);
      return {
        scope: bytes32(field(q, 'scope', i), `queries[${i}].scope`),
        key: bytes32(field(q, 'key', i), `queries[${i}].key`),
        identity: identity === undefined || identity === null ? '' : this.optionalTag(identity),
      };
    });
    const out: unknown[] = [];
    for (const q of queries) out.push(await this.records(ctx, q.scope, q.key, q.identity));
    return JSON.stringify(out);
  }

  @Transaction(false)
  @Returns('string')
  async WriterStatus(ctx: Context, scope: string): Promise<string> {
    const s = scope === '' ? ANY_SCOPE : bytes32(scope, 'scope');
    const me = this.caller(ctx);
    const anyScope = await this.granted(ctx, me, ANY_SCOPE);
    const inScope = anyScope || (s !== ANY_SCOPE && (await this.granted(ctx, me, s)));
    return JSON.stringify({ account: writerOf(me), anyScope, inScope });
  }

  @Transaction(false)
  @Returns('string')
  async GetAdmin(ctx: Context): Promise<string> {
    const rec = await this.readAdmin(ctx);
    if (!rec) fail('NOT_INITIALISED', 'call Initialize(adminPrincipal) first');
    return JSON.stringify({ admin: rec.admin, pendingAdmin: rec.pendingAdmin });
  }

  @Transaction(false)
  @Returns('string')
  async GrantsOf(ctx: Context, principal: string): Promise<string> {
    const p = parsePrincipal(principal);
    const scopes: string[] = [];
    for await (const kv of ctx.stub.getStateByPartialCompositeKey(GRANT, [p])) {
      if (this.parseFlag(kv.value, 'granted')) scopes.push(ctx.stub.splitCompositeKey(kv.key).attributes[1]);
    }
    return JSON.stringify(scopes);
  }

  // ---------------------------------------------------------------- internals

  /** The signing identity: MSP id, subject DN (from ClientIdentity.getID) and Fabric CA attributes. */
  private caller(ctx: Context): Subject {
    const ci = ctx.clientIdentity;
    const id = ci.getID();
    const mspId = ci.getMSPID();
    if (!id.startsWith('x509::')) fail('NOT_AUTHORISED', 'the caller is not an X.509 identity');
    const end = id.indexOf('::', 6);
    const subject = end < 0 ? id.slice(6) : id.slice(6, end);
    if (!MSP_ID.test(mspId) || !keySafe(subject)) fail('NOT_AUTHORISED', 'the caller identity cannot be named');
    // fabric-shim keeps the parsed certificate attributes ({"attrs":{…}} of extension
    // 1.2.3.4.5.6.7.8.1) in `attrs`; the typings only offer lookups by name
    const rawAttrs = (ci as unknown as { attrs?: unknown }).attrs;
    const attrs: Record<string, string> = {};
    if (rawAttrs && typeof rawAttrs === 'object') {
      for (const [name, value] of Object.entries(rawAttrs as Record<string, unknown>)) {
        if (typeof value === 'string' && keySafe(name) && keySafe(value) && !name.includes('=')) attrs[name] = value;
      }
    }
    return { mspId, subject, attrs };
  }

  private identityTag(value: unknown): string {
    const tag = bytes32(value, 'identity tag');
    if (tag === ANY_SCOPE) fail('BAD_INPUT', 'the identity tag cannot be zero');
    return tag;
  }

  /** "" or the zero tag: no creator named. */
  private optionalTag(value: unknown): string {
    if (value === '') return '';
    const tag = bytes32(value, 'identity tag');
    return tag === ANY_SCOPE ? '' : tag;
  }

  private async readAdmin(ctx: Context): Promise<AdminRecord | undefined> {
    const buf = await ctx.stub.getState(ADMIN_KEY);
    if (!buf || buf.length === 0) return undefined;
    return JSON.parse(Buffer.from(buf).toString('utf8')) as AdminRecord;
  }

  private async requireAdmin(ctx: Context): Promise<AdminRecord> {
    const rec = await this.readAdmin(ctx);
    if (!rec) fail('NOT_INITIALISED', 'call Initialize(adminPrincipal) first');
    const me = this.caller(ctx);
    if (!matches(me, rec.admin)) fail('NOT_AUTHORISED', `${writerOf(me)} is not the registry admin`);
    return rec;
  }

  private async putJson(ctx: Context, key: string, value: unknown): Promise<void> {
    await ctx.stub.putState(key, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  private parseFlag(buf: Uint8Array | undefined, name: string): boolean {
    if (!buf || buf.length === 0) return false;
    const v = JSON.parse(Buffer.from(buf).toString('utf8')) as Record<string, unknown>;
    return v[name] === true;
  }

  private async flag(ctx: Context, key: string, name: string): Promise<boolean> {
    return this.parseFlag(await ctx.stub.getState(key), name);
  }

  /** Whether one of `s`'s principals is granted `scope` (point reads: MVCC guards them). */
  private async granted(ctx: Context, s: Subject, scope: string): Promise<boolean> {
    for (const p of principalsOf(s)) {
      if (await this.flag(ctx, ctx.stub.createCompositeKey(GRANT, [p, scope]), 'granted')) return true;
    }
    return false;
  }

  private async anchorAll(ctx: Context, entries: EntryInput[]): Promise<{ writer: string; existing: boolean[] }> {
    const me = this.caller(ctx);
    const writer = writerOf(me);
    const anyScope = await this.granted(ctx, me, ANY_SCOPE);
    const scopeOk = new Map<string, boolean>();
    for (const e of entries) {
      if (anyScope) break;
      if (!scopeOk.has(e.scope)) scopeOk.set(e.scope, await this.granted(ctx, me, e.scope));
      if (!scopeOk.get(e.scope)) {
        if (!(await this.readAdmin(ctx))) fail('NOT_INITIALISED', 'call Initialize(adminPrincipal) first');
        fail('NOT_AUTHORISED', `${writer} is granted neither scope ${e.scope} nor ANY_SCOPE`);
      }
    }
    const { seconds, nanos } = ctx.stub.getTxTimestamp();
    const txId = ctx.stub.getTxID();
    const timestamp = typeof seconds === 'number' ? seconds : seconds.toNumber();
    // reads see committed state only, so this batch's own writes are tracked here
    const held = new Map<string, string>();
    const existing: boolean[] = [];
    const written: EntryInput[] = [];
    for (const e of entries) {
      let prior = held.get(e.key);
      if (prior === undefined) {
        const buf = await ctx.stub.getState(ctx.stub.createCompositeKey(ANCHOR, [e.key, writer]));
        if (buf && buf.length > 0) prior = (JSON.parse(Buffer.from(buf).toString('utf8')) as StoredAnchor).hash;
      }
      if (prior !== undefined) {
        if (prior !== e.hash) fail('KEY_TAKEN', `${writer} already anchored a different hash under key ${e.key}`);
        existing.push(true);
        held.set(e.key, prior);
        continue;
      }
      const rec: StoredAnchor = {
        key: e.key, hash: e.hash, scope: e.scope, writer, mspId: me.mspId, subject: me.subject, attrs: me.attrs,
        txId, timestamp, nanos,
      };
      await this.putJson(ctx, ctx.stub.createCompositeKey(ANCHOR, [e.key, writer]), rec);
      held.set(e.key, e.hash);
      existing.push(false);
      written.push({ scope: e.scope, key: e.key, hash: e.hash });
    }
    if (written.length > 0) {
      ctx.stub.setEvent(ANCHOR_EVENT, Buffer.from(JSON.stringify({ writer, entries: written }), 'utf8'));
    }
    return { writer, existing };
  }

  /** Every anchor under `key` in write order, each judged for `scope` and `identity` now. */
  private async records(ctx: Context, scope: string, key: string, identity: string): Promise<unknown[]> {
    const anchors: StoredAnchor[] = [];
    for await (const kv of ctx.stub.getStateByPartialCompositeKey(ANCHOR, [key])) {
      if (kv.value && kv.value.length > 0) anchors.push(JSON.parse(Buffer.from(kv.value).toString('utf8')) as StoredAnchor);
    }
    anchors.sort((a, b) => a.timestamp - b.timestamp || a.nanos - b.nanos || (a.txId < b.txId ? -1 : a.txId > b.txId ? 1 : 0));
    let bound: string[] | undefined;
    if (identity !== '') {
      bound = [];
      for await (const kv of ctx.stub.getStateByPartialCompositeKey(BIND, [identity])) {
        if (this.parseFlag(kv.value, 'bound')) bound.push(ctx.stub.splitCompositeKey(kv.key).attributes[1]);
      }
    }
    const judged = new Map<string, boolean>();
    const out: unknown[] = [];
    for (const a of anchors) {
      let entitled = judged.get(a.writer);
      if (entitled === undefined) {
        const s: Subject = { mspId: a.mspId, subject: a.subject, attrs: a.attrs ?? {} };
        entitled = scope !== ANY_SCOPE && ((await this.granted(ctx, s, ANY_SCOPE)) || (await this.granted(ctx, s, scope)));
        if (entitled && bound && bound.length > 0) entitled = bound.some((p) => matches(s, p));
        judged.set(a.writer, entitled);
      }
      out.push({
        key: a.key, hash: a.hash, writer: a.writer, mspId: a.mspId, subject: a.subject, txId: a.txId,
        timestamp: a.timestamp, entitled,
      });
    }
    return out;
  }
}
