/**
 * Authentication under attack (issue 11, item 3): a flood of wrong Basic passwords must neither
 * starve legitimate clients (scrypt and LevelDB share the libuv thread pool) nor lock them out.
 *
 * The server runs for real on 127.0.0.1 with the embedded (LevelDB) store and users hashed with the
 * production scrypt cost (N = 16384). Clients bind distinct loopback source addresses (127.0.0.x,
 * Linux routes all of 127/8 to lo) so that the server sees them as different remote addresses.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import { BasicVerifier, hashPassword } from '../../lib/auth/server-basic';
import { HashGate, HashGateFull, clientKey } from '../../lib/auth/throttle';
import { createTaxiiServer } from '../../lib/taxii/server';
import { COL_MAIN, TAXII, basic, indicator, listen, obj, post, testConfig, type Running } from './helpers';
import { makeStore, type TestStore } from './stores';

interface Hit {
  status: number;
  headers: http.IncomingHttpHeaders;
  json: unknown;
  ms: number;
}

/** One GET from a chosen source address (no keep-alive: every request is a new connection). */
function getFrom(base: string, from: string, path: string, auth: string): Promise<Hit> {
  const url = new URL(path, base);
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const r = http.request(
      {
        method: 'GET',
        hostname: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        localAddress: from,
        headers: { Accept: TAXII, Authorization: auth },
        agent: false,
        timeout: 60_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
        });
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`GET ${path} from ${from} timed out`)));
    r.on('error', reject);
    r.end();
  });
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

function countBy(hits: Hit[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const h of hits) out[h.status] = (out[h.status] ?? 0) + 1;
  return out;
}

describe('TAXII server: authentication flood (wrong Basic passwords)', function () {
  this.timeout(180_000);
  let ts: TestStore;
  let run: Running;
  let base: string;
  const objects = `/api1/collections/${COL_MAIN}/objects/`;
  const ALICE = basic('alice', 'alice-real-pw');
  const BOB = basic('bob', 'bob-real-pw');
  let hashMs = 0;
  let boundMs = 1500;

  before(async () => {
    ts = await makeStore();
    const cfg = await testConfig(ts.store);
    // the production scrypt cost: this is what makes a flood expensive
    cfg.auth = {
      realm: 'flood',
      basic: {
        users: [
          { username: 'alice', passwordHash: await hashPassword('alice-real-pw'), roles: ['reader', 'writer'] },
          { username: 'bob', passwordHash: await hashPassword('bob-real-pw'), roles: ['reader'] },
        ],
      },
    };
    // what one scrypt run costs on this machine right now: the latency bound scales with it, so a
    // loaded machine does not fail the test while the starvation it guards against (legitimate
    // requests queued behind ~200 hashes: ~50 hash times) still does
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await hashPassword(`calibration-${i}`);
      times.push(performance.now() - t);
    }
    hashMs = percentile(times, 50);
    boundMs = Math.max(1500, 10 * hashMs);
    console.log(`      one scrypt hash: ${hashMs.toFixed(1)} ms here; legitimate p99 bound ${boundMs.toFixed(0)} ms`);
    const server = createTaxiiServer(cfg);
    run = await listen((req, res) => void server.handle(req, res));
    base = run.base;
    for (let i = 0; i < 5; i++) assert.equal((await post(base, COL_MAIN, [indicator()], ALICE)).status, 202);
  });
  after(async () => {
    await run?.close();
    await ts?.dispose();
  });

  it('200 concurrent wrong passwords from one address: a legitimate cached reader elsewhere keeps a bounded p99', async () => {
    const warm = await getFrom(base, '127.0.0.2', objects, ALICE);
    assert.equal(warm.status, 200);

    let flooding = true;
    const t0 = Date.now();
    const flood = Promise.all(
      Array.from({ length: 200 }, (_, i) => getFrom(base, '127.0.0.3', objects, basic('alice', `guess-${i}`))),
    ).finally(() => {
      flooding = false;
    });
    const legit: Hit[] = [];
    while (flooding || legit.length < 20) {
      legit.push(await getFrom(base, '127.0.0.2', objects, ALICE));
    }
    const floodHits = await flood;
    const floodMs = Date.now() - t0;
    const lat = legit.map((h) => h.ms);
    const p50 = percentile(lat, 50);
    const p99 = percentile(lat, 99);
    console.log(
      `      flood: ${floodHits.length} wrong passwords in ${floodMs} ms, answers ${JSON.stringify(countBy(floodHits))}; ` +
        `legitimate: ${legit.length} GETs, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms, ` +
        `answers ${JSON.stringify(countBy(legit))}`,
    );
    assert.ok(legit.every((h) => h.status === 200), `legitimate answers ${JSON.stringify(countBy(legit))}`);
    assert.ok(p99 < boundMs, `legitimate p99 ${p99.toFixed(1)} ms under the flood (bound ${boundMs.toFixed(0)} ms = max(1500, 10 × one hash of ${hashMs.toFixed(1)} ms))`);

    // the flood itself: refused, never let in, mostly without hashing (429 with Retry-After)
    assert.ok(floodHits.every((h) => h.status === 401 || h.status === 429 || h.status === 503), JSON.stringify(countBy(floodHits)));
    const throttled = floodHits.filter((h) => h.status === 429);
    assert.ok(throttled.length >= 150, `only ${throttled.length} of 200 throttled`);
    for (const h of throttled) {
      assert.match(String(h.headers['retry-after']), /^[1-9][0-9]*$/);
      const body = obj(h.json);
      assert.equal(body['http_status'], '429');
      assert.equal(body['title'], 'Too Many Requests');
    }
  });

  it('a throttled user name does not lock out the user with the right password from another address', async () => {
    // bob is guessed from 127.0.0.4 until that address is throttled
    const guesses = await Promise.all(Array.from({ length: 40 }, (_, i) => getFrom(base, '127.0.0.4', objects, basic('bob', `nope-${i}`))));
    assert.ok(guesses.some((h) => h.status === 429), JSON.stringify(countBy(guesses)));
    const again = await getFrom(base, '127.0.0.4', objects, basic('bob', 'still-wrong'));
    assert.equal(again.status, 429);
    assert.ok(Number(again.headers['retry-after']) >= 1);
    // bob, never seen before (nothing cached), from another address: let in
    const real = await getFrom(base, '127.0.0.5', objects, BOB);
    assert.equal(real.status, 200);
    // and another address guessing bob is not blocked by 127.0.0.4's flood: it gets a plain 401
    const other = await getFrom(base, '127.0.0.6', objects, basic('bob', 'first-guess'));
    assert.equal(other.status, 401);
    // but once that address has failed too, the user name's empty bucket applies to it: 429
    const second = await getFrom(base, '127.0.0.6', objects, basic('bob', 'second-guess'));
    assert.equal(second.status, 429);
    assert.match(String(obj(second.json)['description']), /for this user name/);
  });

  it('a flood spread over many addresses is capped by the hashing queue (503 + Retry-After), legitimate p99 stays bounded', async () => {
    let flooding = true;
    const flood = Promise.all(
      Array.from({ length: 240 }, (_, i) => getFrom(base, `127.0.1.${1 + (i % 60)}`, objects, basic(`user${i}`, `pw-${i}`))),
    ).finally(() => {
      flooding = false;
    });
    const legit: Hit[] = [];
    while (flooding || legit.length < 20) legit.push(await getFrom(base, '127.0.0.2', objects, ALICE));
    const floodHits = await flood;
    const lat = legit.map((h) => h.ms);
    const p99 = percentile(lat, 99);
    console.log(
      `      spread flood: answers ${JSON.stringify(countBy(floodHits))}; legitimate: ${legit.length} GETs, ` +
        `p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`,
    );
    assert.ok(legit.every((h) => h.status === 200), `legitimate answers ${JSON.stringify(countBy(legit))}`);
    assert.ok(p99 < boundMs, `legitimate p99 ${p99.toFixed(1)} ms under the spread flood (bound ${boundMs.toFixed(0)} ms = max(1500, 10 × one hash of ${hashMs.toFixed(1)} ms))`);
    assert.ok(floodHits.every((h) => h.status === 401 || h.status === 503), JSON.stringify(countBy(floodHits)));
    const busy = floodHits.filter((h) => h.status === 503);
    assert.ok(busy.length > 0, 'the hashing queue bound was never reached');
    for (const h of busy) {
      assert.match(String(h.headers['retry-after']), /^[1-9][0-9]*$/);
      assert.equal(obj(h.json)['http_status'], '503');
    }
  });
});

describe('auth throttle parts', () => {
  it('clientKey: IPv4-mapped addresses become IPv4, IPv6 is grouped by /64, Express req.ip wins', () => {
    assert.equal(clientKey({ socket: { remoteAddress: '::ffff:10.1.2.3' } }), '10.1.2.3');
    assert.equal(clientKey({ socket: { remoteAddress: '2001:db8:0:12::1' } }), '2001:db8:0:12::/64');
    assert.equal(clientKey({ socket: { remoteAddress: '2001:db8:0:12:ffff::9' } }), '2001:db8:0:12::/64');
    assert.equal(clientKey({ socket: { remoteAddress: '10.0.0.1' }, ip: '203.0.113.7' }), '203.0.113.7');
    assert.equal(clientKey({ socket: null }), 'unknown');
  });

  it('HashGate: runs at most max at once, queues up to maxQueued, refuses the rest at once', async () => {
    const gate = new HashGate({ maxConcurrentHashes: 2, maxQueuedHashes: 3 });
    const release: Array<() => void> = [];
    let peak = 0;
    const task = (): Promise<void> =>
      gate.run(
        () =>
          new Promise<void>((resolve) => {
            peak = Math.max(peak, gate.active);
            release.push(resolve);
          }),
      );
    const runs = Array.from({ length: 5 }, task);
    await assert.rejects(task(), (e: unknown) => e instanceof HashGateFull && e.retryAfterSec === 1);
    assert.equal(gate.active, 2);
    assert.equal(gate.queued, 3);
    while (release.length > 0 || gate.active > 0) {
      const r = release.shift();
      if (r) r();
      await new Promise((res) => setImmediate(res));
    }
    await Promise.all(runs);
    assert.equal(peak, 2);
    assert.equal(gate.queued, 0);
  });

  it('the verification cache cannot be confused by moving bytes between user name and password', async () => {
    const v = new BasicVerifier([
      { username: 'a\0', passwordHash: await hashPassword('b', { N: 1024 }), roles: ['r'] },
      { username: 'a', passwordHash: await hashPassword('other', { N: 1024 }), roles: [] },
    ]);
    assert.deepEqual(await v.verify({ username: 'a\0', password: 'b' }), { username: 'a\0', roles: ['r'] });
    assert.equal(v.cached({ username: 'a', password: '\0b' }), null);
    assert.equal(await v.verify({ username: 'a', password: '\0b' }), null);
  });
});
