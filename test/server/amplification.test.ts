/**
 * Response amplification (issue 11, review leftover): a POST of an envelope full of tiny invalid
 * objects used to buy a status resource listing every failure with a long message — 60 KB of `{}`
 * came back as 3 MB, and was kept in the store for GET …/status/{id}. The status resource (sent and
 * stored) must stay within 2 × the request body + 64 KiB, list every object that has an id, and keep
 * the first failure's message informative.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { boundFailures, capMessage, DETAIL_LIMITS } from '../../lib/taxii/server-body';
import { AUTH, COL_MAIN, TAXII, list, obj, request, startTaxii, testConfig, type Reply, type Running } from './helpers';
import { MemoryStore } from './memory-store';

const MAX_BODY = 2 * 1024 * 1024;
const bound = (requestBytes: number): number => 2 * requestBytes + 64 * 1024;

/** `{"objects":[item(0), item(1), …]}` as long as it stays at most `bytes` long */
function envelopeOf(bytes: number, item: (i: number) => string): { body: string; count: number } {
  const parts: string[] = [];
  let size = '{"objects":[]}'.length;
  for (let i = 0; ; i++) {
    const t = item(i);
    if (size + t.length + 1 > bytes) break;
    parts.push(t);
    size += t.length + (i > 0 ? 1 : 0);
  }
  return { body: `{"objects":[${parts.join(',')}]}`, count: parts.length };
}

/** a tiny invalid indicator: an id, nothing else that STIX requires */
const tinyWithId = (): string => JSON.stringify({ type: 'indicator', id: `indicator--${randomUUID()}` });

describe('TAXII server: the status resource of a POST is bounded by the request (issue 11)', function () {
  this.timeout(120_000);
  const store = new MemoryStore();
  let run: Running;

  before(async () => {
    const base = await testConfig(store);
    const api1 = base.apiRoots['api1'];
    run = (await startTaxii(store, { apiRoots: { ...base.apiRoots, api1: { ...api1, maxContentLength: MAX_BODY } } })).run;
  });
  after(() => run.close());

  const postRaw = (body: string): Promise<Reply> =>
    request(run.base, 'POST', `/api1/collections/${COL_MAIN}/objects/`, { auth: AUTH.alice, headers: { 'Content-Type': TAXII }, body });

  /** the answer's checks shared by every size; returns the status resource */
  async function checkBounded(body: string, count: number): Promise<Record<string, unknown>> {
    const r = await postRaw(body);
    assert.equal(r.status, 202, r.text.slice(0, 500));
    const bytes = Buffer.byteLength(body);
    const answered = Buffer.byteLength(r.text);
    assert.ok(answered <= bound(bytes), `a ${bytes}-byte request got a ${answered}-byte status resource (ratio ${(answered / bytes).toFixed(2)}); bound ${bound(bytes)}`);
    const s = obj(r.json);
    assert.equal(s['total_count'], count);
    assert.equal(s['failure_count'], count, 'every item is counted as a failure');
    assert.equal(s['success_count'], 0);
    assert.equal(s['pending_count'], 0);
    // the stored status resource is the same bounded one
    const again = await request(run.base, 'GET', `/api1/status/${String(s['id'])}/`, { auth: AUTH.alice });
    assert.equal(again.status, 200);
    assert.ok(Buffer.byteLength(again.text) <= bound(bytes), `GET status: ${Buffer.byteLength(again.text)} bytes`);
    assert.deepEqual(again.json, r.json);
    return s;
  }

  for (const [label, bytes] of [
    ['60 KB', 60_000],
    ['1 MB', 1_000_000],
  ] as const) {
    it(`${label} of tiny invalid objects with ids: within 2x + 64 KiB, every id listed, the first message informative`, async () => {
      const { body, count } = envelopeOf(bytes, tinyWithId);
      assert.ok(count > 500, `${count} objects`);
      const s = await checkBounded(body, count);
      const failures = list(s['failures']).map(obj);
      const posted = (JSON.parse(body) as { objects: { id: string }[] }).objects.map((o) => o.id);
      assert.deepEqual(
        failures.map((f) => f['id']),
        posted,
        'one entry per object, in order, with its id',
      );
      for (const f of failures) assert.equal(f['version'], '', 'version present on every entry');
      const first = String(failures[0]['message']);
      assert.match(first, /^invalid STIX: object #0 \(indicator--[0-9a-f-]+\): property "spec_version" is required/);
      assert.ok(first.length <= DETAIL_LIMITS.maxMessageChars, `first message ${first.length} characters`);
      for (const f of failures) {
        if (f['message'] !== undefined) assert.ok(String(f['message']).length <= DETAIL_LIMITS.maxMessageChars);
      }
      for (const f of failures.slice(DETAIL_LIMITS.fullMessages)) {
        if (f['message'] !== undefined) assert.ok(String(f['message']).length <= DETAIL_LIMITS.shortMessageChars, String(f['message']));
      }
    });

    it(`${label} of empty objects (the measured 60 KB → 3 MB case): within 2x + 64 KiB, the first ones listed, the rest summarised`, async () => {
      const { body, count } = envelopeOf(bytes, () => '{}');
      const s = await checkBounded(body, count);
      const failures = list(s['failures']).map(obj);
      assert.equal(failures.length, DETAIL_LIMITS.idlessListed + 1);
      for (let i = 0; i < DETAIL_LIMITS.idlessListed; i++) assert.equal(failures[i]['id'], `objects[${i}]`);
      assert.match(String(failures[0]['message']), /^invalid STIX: object #0: property "type" is required/);
      const summary = failures[failures.length - 1];
      assert.equal(summary['id'], `objects[${DETAIL_LIMITS.idlessListed}]..objects[${count - 1}]`);
      assert.equal(summary['version'], '');
      assert.match(String(summary['message']), new RegExp(`^${count - DETAIL_LIMITS.idlessListed} more items without an id .*property "type" is required`));
    });
  }

  it('a small envelope of valid objects and one failure is answered as before (full message)', async () => {
    const bad = { type: 'indicator', id: `indicator--${randomUUID()}`, spec_version: '2.1' };
    const r = await postRaw(JSON.stringify({ objects: [bad] }));
    assert.equal(r.status, 202);
    const f = obj(list(obj(r.json)['failures'])[0]);
    assert.equal(f['id'], bad.id);
    assert.match(String(f['message']), /property "created" is required/);
  });
});

describe('status detail bounding (lib/taxii/server-body)', () => {
  it('capMessage keeps short text, cuts long text to the limit with the count of what was cut', () => {
    assert.equal(capMessage('short', 500), 'short');
    const long = 'x'.repeat(2000);
    const c = capMessage(long, 500);
    assert.ok(c.length <= 500, `${c.length}`);
    const m = / … \((\d+) more characters\) … /.exec(c);
    assert.ok(m, c);
    assert.equal(c.length - m[0].length + Number(m[1]), 2000, 'kept + cut = the whole message');
  });

  it('capMessage keeps the end of a long message, where the cause often is', () => {
    const c = capMessage(`cannot be hashed: cannot canonicalise value at $.x${'[0]'.repeat(1500)}: nesting deeper than 1000 levels`, 500);
    assert.ok(c.length <= 500);
    assert.match(c, /^cannot be hashed: cannot canonicalise value at \$\.x\[0\]/);
    assert.match(c, /: nesting deeper than 1000 levels$/);
  });

  it('capMessage never splits a surrogate pair', () => {
    for (let pad = 0; pad < 4; pad++) {
      const c = capMessage('a'.repeat(pad) + '😀'.repeat(400), 120);
      assert.ok(c.length <= 120);
      assert.doesNotThrow(() => encodeURIComponent(c), 'no lone surrogate');
    }
  });

  it('boundFailures drops messages once the byte budget is spent, never an entry that has an id', () => {
    const failures = Array.from({ length: 1000 }, (_, i) => ({ id: `x--${i}`, version: '', message: 'm'.repeat(1000) }));
    const out = boundFailures(failures, [], 20_000, { ...DETAIL_LIMITS, slackBytes: 0 });
    assert.equal(out.length, 1000);
    assert.deepEqual(
      out.map((d) => d.id),
      failures.map((d) => d.id),
    );
    assert.ok(out[0].message !== undefined, 'the first keeps its message while budget remains');
    assert.equal(out[999].message, undefined, 'the last has none: no budget left');
  });
});
