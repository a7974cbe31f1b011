/**
 * Mounting the TAXII handler: under a base path on a plain node:http server, and as Express
 * middleware (req.url relative, req.baseUrl / originalUrl set), also behind a body parser that
 * already consumed the request body — the way Node-RED's HTTP server would host it.
 */
import { strict as assert } from 'node:assert';
import express from 'express';
import { createTaxiiServer } from '../../lib/taxii/server';
import { AUTH, COL_MAIN, TAXII, indicator, listen, obj, request, testConfig, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

describe('TAXII server: mounting', function () {
  let ts: TestStore;
  const running: Running[] = [];

  before(async () => {
    ts = await makeStore();
  });
  after(async () => {
    for (const r of running) await r.close();
    await ts.dispose();
  });

  it('plain node:http with config.basePath: strips the prefix and builds api_roots under it', async () => {
    const server = createTaxiiServer(await testConfig(ts.store, { basePath: '/sets/taxii/' }));
    const run = await listen((req, res) => void server.handle(req, res));
    running.push(run);
    const d = await request(run.base, 'GET', '/sets/taxii/taxii2/', { auth: AUTH.bob });
    assert.equal(d.status, 200);
    assert.deepEqual(obj(d.json)['api_roots'], ['/sets/taxii/api1/', '/sets/taxii/trust/group/']);
    assert.equal(obj(d.json)['default'], '/sets/taxii/api1/');
    assert.equal((await request(run.base, 'GET', '/sets/taxii/api1', { auth: AUTH.bob })).status, 200);
    const outside = await request(run.base, 'GET', '/taxii2/', { auth: AUTH.bob });
    assert.equal(outside.status, 404);
    assert.equal(outside.headers['content-type'], TAXII);
  });

  it('as Express middleware under app.use(path): uses req.baseUrl, keeps the raw query, answers its own content type', async () => {
    const server = createTaxiiServer(await testConfig(ts.store));
    const app = express();
    app.use(express.json()); // only parses application/json: TAXII bodies pass through unread
    app.use('/red/taxii', (req, res) => void server.handle(req, res));
    app.use((_req, res) => {
      res.status(418).send('not ours');
    });
    const run = await listen(app);
    running.push(run);
    const d = await request(run.base, 'GET', '/red/taxii/taxii2/', { auth: AUTH.bob });
    assert.equal(d.status, 200, d.text);
    assert.equal(d.headers['content-type'], TAXII);
    assert.deepEqual(obj(d.json)['api_roots'], ['/red/taxii/api1/', '/red/taxii/trust/group/']);

    const o = indicator();
    const p = await request(run.base, 'POST', `/red/taxii/api1/collections/${COL_MAIN}/objects/`, {
      auth: AUTH.alice,
      headers: { 'Content-Type': TAXII },
      body: JSON.stringify({ objects: [o] }),
    });
    assert.equal(p.status, 202, p.text);
    // Express's qs parser would nest match[id]; the server reads the raw query itself
    const g = await request(run.base, 'GET', `/red/taxii/api1/collections/${COL_MAIN}/objects/?match[id]=${String(o['id'])}&match[type]=indicator`, { auth: AUTH.bob });
    assert.equal(g.status, 200);
    assert.deepEqual(obj(g.json)['objects'], [o]);
    assert.equal((await request(run.base, 'GET', '/elsewhere', { auth: AUTH.bob })).status, 418);
  });

  it('uses a body that a raw body parser already read, and still enforces max_content_length on it', async () => {
    const server = createTaxiiServer(await testConfig(ts.store));
    const app = express();
    app.use(express.raw({ type: '*/*', limit: '10mb' }));
    app.use('/t', (req, res) => void server.handle(req, res));
    const run = await listen(app);
    running.push(run);
    const o = indicator();
    const p = await request(run.base, 'POST', `/t/api1/collections/${COL_MAIN}/objects/`, {
      auth: AUTH.alice,
      headers: { 'Content-Type': TAXII },
      body: JSON.stringify({ objects: [o] }),
    });
    assert.equal(p.status, 202, p.text);
    assert.equal(obj(p.json)['total_count'], 1);
    const big = JSON.stringify({ objects: [indicator(undefined, undefined, { description: 'x'.repeat(70_000) })] });
    const tooBig = await request(run.base, 'POST', `/t/api1/collections/${COL_MAIN}/objects/`, {
      auth: AUTH.alice,
      headers: { 'Content-Type': TAXII, 'Transfer-Encoding': 'chunked' },
      body: big,
    });
    assert.equal(tooBig.status, 413);
  });
});
