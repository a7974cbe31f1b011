/**
 * Kind on errors: bad input never yields a 500, an unexpected failure yields a 500 TAXII error
 * with an error_id that is logged, a store that is down yields 503; HEAD answers without a body.
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { createTaxiiServer } from '../../lib/taxii/server';
import { StoreError } from '../../lib/store/errors';
import type { Page, RecordQuery, StoredRecord } from '../../lib/store/store';
import { AUTH, COL_MAIN, TAXII, indicator, listen, obj, post, request, testConfig, type Running } from './helpers';
import { MemoryStore } from './memory-store';

class FlakyStore extends MemoryStore {
  mode: 'ok' | 'crash' | 'down' = 'ok';
  override async query(q: RecordQuery): Promise<Page<StoredRecord>> {
    if (this.mode === 'crash') throw new TypeError("Cannot read properties of undefined (reading 'x')");
    if (this.mode === 'down') throw new StoreError('ERR_STORE_CONNECT', 'mongodb://db.example:27017 unreachable after 5000 ms');
    return super.query(q);
  }
}

describe('TAXII server: robustness', function () {
  const store = new FlakyStore();
  const logged: Array<{ level: string; message: string; detail?: Record<string, unknown> }> = [];
  let run: Running;
  let base: string;

  before(async () => {
    const server = createTaxiiServer(await testConfig(store, { log: (level, message, detail) => logged.push({ level, message, detail }) }));
    run = await listen((req, res) => void server.handle(req, res));
    base = run.base;
  });
  after(() => run.close());
  afterEach(() => {
    store.mode = 'ok';
  });

  it('answers an unexpected failure with 500, a TAXII error body and an error_id that is logged', async () => {
    store.mode = 'crash';
    const r = await request(base, 'GET', `/api1/collections/${COL_MAIN}/objects/`, { auth: AUTH.bob });
    assert.equal(r.status, 500);
    assert.equal(r.headers['content-type'], TAXII);
    const e = obj(r.json);
    assert.match(String(e['error_id']), /^[0-9a-f-]{36}$/);
    assert.doesNotMatch(String(e['description']), /Cannot read/, 'internals are not shown to the client');
    const log = logged.find((l) => l.level === 'error' && l.message.includes(String(e['error_id'])));
    assert.ok(log, 'the error is logged under its error_id');
    assert.match(String(log.detail?.['error']), /Cannot read properties/);
  });

  it('answers 503 with Retry-After when the store is unreachable', async () => {
    store.mode = 'down';
    const r = await request(base, 'GET', `/api1/collections/${COL_MAIN}/manifest/`, { auth: AUTH.bob });
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '10');
    assert.match(String(obj(r.json)['description']), /record store is not available: mongodb:\/\/db.example:27017 unreachable/);
  });

  it('answers HEAD like GET without a body', async () => {
    await post(base, COL_MAIN, [indicator()]);
    const r = await request(base, 'HEAD', `/api1/collections/${COL_MAIN}/objects/`, { auth: AUTH.bob });
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    assert.equal(r.headers['content-type'], TAXII);
    assert.ok(r.headers['x-taxii-date-added-last']);
  });

  it('never answers 500 to malformed input', async () => {
    logged.length = 0;
    const col = `/api1/collections/${COL_MAIN}`;
    const deep = '['.repeat(20000) + ']'.repeat(20000);
    const deepObj = `{"objects":[{"type":"indicator","id":"indicator--2f0ad3a5-0f0e-4b4f-8c28-0a1a2b3c4d5e","x":${deep}}]}`;
    const cases: Array<[string, string, { body?: string; headers?: Record<string, string> }]> = [
      ['GET', `${col}/objects/?match[id]=%ZZ`, {}],
      ['GET', `${col}/objects/?limit=99999999999999999999999`, {}],
      ['GET', `${col}/objects/?added_after=2024-13-45T99:99:99Z`, {}],
      ['GET', `${col}/objects/?next=${'A'.repeat(5000)}.${'B'.repeat(43)}`, {}],
      ['GET', `${col}/objects/?match[version]=first,,last`, {}],
      ['GET', `${col}/objects/%00/`, {}],
      ['GET', `${col}/objects/${encodeURIComponent('../../../etc/passwd')}/`, {}],
      ['GET', '/api1/status/%20/', {}],
      ['GET', '/api1/collections/%2e%2e/', {}],
      ['POST', `${col}/objects/`, { body: deep, headers: { 'Content-Type': TAXII } }],
      ['POST', `${col}/objects/`, { body: deepObj, headers: { 'Content-Type': TAXII } }],
      ['POST', `${col}/objects/`, { body: '{"objects":[{"__proto__":{"polluted":1},"type":"indicator"}]}', headers: { 'Content-Type': TAXII } }],
      ['POST', `${col}/objects/`, { body: '{"objects":[null,true,"s",[],{}]}', headers: { 'Content-Type': TAXII } }],
      ['POST', `${col}/objects/`, { body: '\uFEFF{"objects":[1]}', headers: { 'Content-Type': TAXII } }],
      ['POST', `${col}/objects/`, { body: '\xff\xfe garbage', headers: { 'Content-Type': TAXII } }],
      ['POST', `${col}/objects/`, { body: '{}', headers: { 'Content-Type': 'application/taxii+json;version=2.1;version=2.0' } }],
      ['DELETE', `${col}/objects/indicator--2f0ad3a5-0f0e-4b4f-8c28-0a1a2b3c4d5e/?match[version]=bogus`, {}],
    ];
    for (const [method, path, o] of cases) {
      const r = await request(base, method, path, { auth: AUTH.alice, ...o });
      assert.ok(r.status >= 200 && r.status < 500, `${method} ${path.slice(0, 80)} -> ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.headers['content-type'], TAXII, `${method} ${path.slice(0, 80)}`);
    }
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    assert.deepEqual(logged.filter((l) => l.level === 'error'), []);
  });

  it('survives a client that disconnects in the middle of a body', async () => {
    await new Promise<void>((resolve, reject) => {
      const sock = net.connect(run.port, '127.0.0.1', () => {
        sock.write(
          `POST /api1/collections/${COL_MAIN}/objects/ HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\n` +
            `Authorization: ${AUTH.alice}\r\nContent-Length: 1000\r\n\r\n{"objects": [`,
          () => setTimeout(() => {
            sock.destroy();
            resolve();
          }, 100),
        );
      });
      sock.on('error', reject);
    });
    const r = await request(base, 'GET', '/taxii2/', { auth: AUTH.bob });
    assert.equal(r.status, 200);
  });
});
