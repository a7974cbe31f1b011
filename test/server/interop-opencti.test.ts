/**
 * Conformance: OpenCTI's built-in TAXII feed ingester ("Data > Ingestion > TAXII feeds") against
 * our server, from OpenCTI's source (OpenCTI-Platform/opencti,
 * opencti-platform/opencti-graphql/src/manager/ingestionManager.ts):
 * - `taxiiHttpGet`: GET `<uri>/collections/<collection>/objects/` (a `/` is appended to the API
 *   root URI), header `Accept: application/taxii+json;version=2.1`, `Authorization: Basic
 *   base64(<authentication_value "user:password">)` or `Bearer <authentication_value>`; axios
 *   params from `prepareTaxiiGetParam`: `{ next: current_state_cursor, added_after:
 *   added_after_start, limit? }` — so `next` and `added_after` travel together while paging;
 * - `processTaxiiResponse`: objects pushed as a bundle; if `more` and `next` -> keep the cursor,
 *   leave added_after_start; else reset the cursor and set added_after_start =
 *   `utcDate(X-TAXII-Date-Added-Last).toISOString()` (millisecond precision!) or now(); an empty
 *   page changes nothing.
 * The ms truncation means records that share the millisecond of the last record are fetched again
 * on the next poll: duplicates (OpenCTI upserts them), never a loss. Checked below.
 */
import { strict as assert } from 'node:assert';
import { list, obj, post as postEnvelope } from './helpers';
import { COL_OFF, COL_REQUIRED, KEYS, axiosParams, basicHeader, objectsOf, raw, startInteropServer, stixIndicator, type InteropServer } from './interop-support';

interface IngestionState {
  cursor?: string;
  addedAfterStart?: string;
}

describe('interop: OpenCTI TAXII feed ingester (ingestionManager.ts) request shapes', function () {
  let s: InteropServer;

  before(async () => {
    s = await startInteropServer();
  });
  after(async () => s.close());

  /** One run of taxiiV21DataHandler: returns the objects it pushed to the workers. */
  async function runOnce(col: string, state: IngestionState, authorization: string, limit?: number): Promise<{ status: number; objects: Record<string, unknown>[] }> {
    const uri = `${s.base}/api1`; // as configured by the user, without the trailing slash
    const prepared = uri.endsWith('/') ? uri : `${uri}/`;
    const url = new URL(`${prepared}collections/${col}/objects/`);
    const query = axiosParams({ next: state.cursor, added_after: state.addedAfterStart, ...(limit ? { limit } : {}) });
    const r = await raw(s.base, 'GET', `${url.pathname}${query ? `?${query}` : ''}`, {
      Accept: 'application/taxii+json;version=2.1',
      Authorization: authorization,
      'User-Agent': 'axios/1.7.9',
      'Accept-Encoding': 'gzip, compress, deflate, br',
    });
    if (r.status !== 200) return { status: r.status, objects: [] };
    const data = obj(r.json);
    const objects = objectsOf(r);
    const addedLast = r.headers['x-taxii-date-added-last'];
    if (objects.length > 0) {
      assert.equal(typeof addedLast, 'string', 'OpenCTI needs X-TAXII-Date-Added-Last, else it resumes from now() and loses records');
      if (data['more'] === true && typeof data['next'] === 'string' && data['next'] !== '') {
        state.cursor = data['next'];
      } else {
        state.cursor = undefined;
        state.addedAfterStart = addedLast ? new Date(String(addedLast)).toISOString() : new Date().toISOString();
      }
    }
    return { status: r.status, objects };
  }

  /** Runs until one brings nothing new in; returns every delivery (duplicates included). */
  async function ingest(col: string, state: IngestionState, authorization: string, limit?: number): Promise<string[]> {
    const got: string[] = [];
    for (let run = 0; run < 40; run++) {
      const known = new Set(got);
      const { status, objects } = await runOnce(col, state, authorization, limit);
      assert.equal(status, 200);
      const ids = objects.map((o) => String(o['id']));
      got.push(...ids);
      if (state.cursor === undefined && ids.every((id) => known.has(id))) break;
    }
    return got;
  }

  async function dateAdded(col: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let next: string | undefined;
    for (;;) {
      const r = await raw(s.base, 'GET', `/api1/collections/${col}/manifest/?limit=50${next ? `&next=${next}` : ''}`, { Accept: 'application/taxii+json;version=2.1', Authorization: basicHeader('alice', 'alice-pw') });
      for (const m of list(obj(r.json)['objects'] ?? []).map(obj)) out.set(String(m['id']), String(m['date_added']));
      if (obj(r.json)['more'] !== true) return out;
      next = String(obj(r.json)['next']);
    }
  }

  it('polls with next + added_after, then resumes from Date-Added-Last (ms): nothing lost, repeats only within the last millisecond', async () => {
    const first = Array.from({ length: 120 }, (_, i) => stixIndicator(i));
    for (let i = 0; i < first.length; i += 40) assert.equal((await postEnvelope(s.base, COL_OFF, first.slice(i, i + 40))).status, 202);
    const state: IngestionState = { addedAfterStart: new Date('2024-01-01T00:00:00Z').toISOString() };
    const auth = basicHeader('bob', 'bob-pw');

    const got1 = await ingest(COL_OFF, state, auth, 20);
    assert.deepEqual([...new Set(got1)].sort(), first.map((o) => String(o['id'])).sort(), 'every record ingested');
    assert.equal(state.cursor, undefined);
    assert.match(String(state.addedAfterStart), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'OpenCTI keeps ms precision');

    const later = Array.from({ length: 30 }, (_, i) => stixIndicator(500 + i));
    const lastBefore = state.addedAfterStart;
    assert.equal((await postEnvelope(s.base, COL_OFF, later)).status, 202);
    const got2 = await ingest(COL_OFF, state, auth, 20);
    for (const o of later) assert.ok(got2.includes(String(o['id'])), 'new records ingested');

    // the only repeats: records added in the same millisecond as the previous Last (ms-truncated)
    const dates = await dateAdded(COL_OFF);
    const repeated = got2.filter((id) => got1.includes(id));
    for (const id of repeated) {
      const d = String(dates.get(id));
      assert.equal(d.slice(0, 23) + 'Z', lastBefore, `${id} (${d}) repeated although outside the last millisecond`);
    }
    const all = new Set([...got1, ...got2]);
    assert.equal(all.size, 150);
  });

  it('Bearer authentication with an API key of this server; a bad token is a 401 and leaves the ingestion state alone', async () => {
    const state: IngestionState = { addedAfterStart: '2024-01-01T00:00:00.000Z' };
    const ok = await runOnce(COL_OFF, state, `Bearer ${KEYS.feed}`);
    assert.equal(ok.status, 200);
    assert.ok(ok.objects.length > 0);
    const before = { ...state };
    const bad = await runOnce(COL_OFF, state, 'Bearer not-a-key-of-this-server-123456');
    assert.equal(bad.status, 401);
    assert.deepEqual(state, before);
  });

  it('from a required collection it ingests pending records and never the ones found invalid', async () => {
    const objs = Array.from({ length: 5 }, (_, i) => stixIndicator(900 + i));
    assert.equal((await postEnvelope(s.base, COL_REQUIRED, objs)).status, 202);
    const bad = await s.server.integrityOf(COL_REQUIRED, String(objs[2]['id']));
    assert.ok(bad);
    await s.server.recordVerification(COL_REQUIRED, bad.id, bad.version, 'mismatch');
    const state: IngestionState = { addedAfterStart: '2024-01-01T00:00:00.000Z' };
    const got = await ingest(COL_REQUIRED, state, `Bearer ${KEYS.feed}`);
    const ids = objs.map((o) => String(o['id']));
    assert.deepEqual([...new Set(got.filter((id) => ids.includes(id)))].sort(), ids.filter((_, i) => i !== 2).sort());
  });
});
