/**
 * Issue 11 items 5 and 6: strict input where hashing depends on it (I-JSON, RFC 7493), and errors
 * real clients can read (a 413 readable by a client still sending; TAXII 404s).
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import { parseStrictJson, StrictJsonError } from '../../lib/taxii/strict-json';
import { AUTH, COL_MAIN, TAXII, indicator, obj, request, startTaxii, type Running } from './helpers';
import { MemoryStore } from './memory-store';

describe('TAXII server: hostile input (issue 11)', function () {
  this.timeout(120_000);
  const store = new MemoryStore();
  let run: Running;

  before(async () => {
    run = (await startTaxii(store)).run;
  });
  after(() => run.close());

  const postRaw = (body: string | Buffer): ReturnType<typeof request> =>
    request(run.base, 'POST', `/api1/collections/${COL_MAIN}/objects/`, { auth: AUTH.alice, headers: { 'Content-Type': TAXII }, body });

  /** an indicator's JSON text with `extra` spliced in before the closing brace */
  const withRaw = (id: string, extra: string): string => {
    const t = JSON.stringify(indicator(id));
    return `{"objects":[${t.slice(0, -1)},${extra}}]}`;
  };

  const refused: Array<[string, (id: string) => string | Buffer, string, RegExp]> = [
    ['a duplicate member name', (id) => withRaw(id, '"name":"a","name":"b"'), 'duplicate-key', /duplicate member name "name" at \$\.objects\[0\]\.name/],
    ['a duplicate name spelled with an escape', (id) => withRaw(id, '"name":"a","\\u006eame":"b"'), 'duplicate-key', /duplicate member name "name"/],
    ['a duplicate name in a nested object', (id) => withRaw(id, '"x_n":{"k":1,"k":2}'), 'duplicate-key', /\$\.objects\[0\]\.x_n\.k/],
    ['an integer above 2^53-1', (id) => withRaw(id, '"x_n":9007199254740993'), 'big-integer', /9007199254740993 at \$\.objects\[0\]\.x_n/],
    ['an integer below -(2^53-1)', (id) => withRaw(id, '"x_n":[1,-9007199254740992]'), 'big-integer', /\$\.objects\[0\]\.x_n\[1\]/],
    ['a number that overflows a double', (id) => withRaw(id, '"x_n":1e400'), 'number-overflow', /1e400/],
    ['an unpaired surrogate escape', (id) => withRaw(id, '"x_s":"a\\ud800b"'), 'lone-surrogate', /surrogate/],
    ['invalid UTF-8', (id) => Buffer.concat([Buffer.from(withRaw(id, '"x_s":"').slice(0, -3)), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]), 'utf8', /not valid UTF-8/],
    ['an overlong UTF-8 encoding', (id) => Buffer.concat([Buffer.from(withRaw(id, '"x_s":"').slice(0, -3)), Buffer.from([0xc0, 0xaf]), Buffer.from('"}]}')]), 'utf8', /not valid UTF-8/],
  ];

  for (const [what, body, problem, msg] of refused) {
    it(`refuses ${what} with a TAXII 400 naming the problem, and stores nothing`, async () => {
      const id = `indicator--${randomUUID()}`;
      const r = await postRaw(body(id));
      assert.equal(r.status, 400, r.text);
      assert.equal(r.headers['content-type'], TAXII);
      const e = obj(r.json);
      assert.match(String(e['description']), msg);
      assert.equal(obj(e['details'])['problem'], problem);
      assert.equal(await store.get(COL_MAIN, id), null, 'nothing stored');
    });
  }

  it('accepts what I-JSON allows: ±(2^53-1), floats, escapes, paired surrogates, a BOM', async () => {
    const id = `indicator--${randomUUID()}`;
    const r = await postRaw('\uFEFF' + withRaw(id, '"x_a":9007199254740991,"x_b":-9007199254740991,"x_c":1.5e300,"x_d":"\\ud83d\\ude00 \\"q\\" \\\\","x_e":{"k":1,"K":2}'));
    assert.equal(r.status, 202, r.text);
    assert.ok(await store.get(COL_MAIN, id));
  });

  it('parses a 10 MiB envelope strictly in bounded time (figure printed)', () => {
    const objs: unknown[] = [];
    let size = 0;
    while (size < 10 * 1024 * 1024) {
      const o = { ...indicator(), x_n: 123456789012, x_f: 3.25, x_s: 'caf\u00e9 \\ "quoted" \ud83d\ude00', x_l: [1, 2, { a: true, b: null }] };
      objs.push(o);
      size += JSON.stringify(o).length + 1;
    }
    const buf = Buffer.from(JSON.stringify({ objects: objs }), 'utf8');
    const t0 = process.hrtime.bigint();
    const plain = JSON.parse(buf.toString('utf8')) as unknown;
    const t1 = process.hrtime.bigint();
    const strict = parseStrictJson(buf);
    const t2 = process.hrtime.bigint();
    assert.deepEqual(strict, plain);
    const plainMs = Number(t1 - t0) / 1e6;
    const strictMs = Number(t2 - t1) / 1e6;
    console.log(`      strict parse of ${(buf.length / 1048576).toFixed(1)} MiB (${objs.length} objects): ${strictMs.toFixed(0)} ms (toString + JSON.parse alone: ${plainMs.toFixed(0)} ms)`);
    assert.ok(strictMs < 30_000, 'bounded (generous: the machine is shared)');
  });

  it('the strict parser reports the path and problem as an error object', () => {
    assert.throws(() => parseStrictJson('{"a":[{"b":1,"b":2}]}'), (e: unknown) => e instanceof StrictJsonError && e.problem === 'duplicate-key' && e.path === '$.a[0].b');
    assert.throws(() => parseStrictJson('{"a":'), (e: unknown) => e instanceof StrictJsonError && e.problem === 'syntax');
    assert.deepEqual(parseStrictJson('{"a":{"b":1},"c":{"b":2},"d":"\\\\\\"b"}'), { a: { b: 1 }, c: { b: 2 }, d: '\\"b' });
  });

  it('lets a client that sends its whole oversized body before reading see the 413 (no connection reset)', async () => {
    const total = 6 * 1024 * 1024; // well above max_content_length (64 KiB) and the old 4 MiB drain bound
    const out = await new Promise<{ data: string; error?: string; sent: number }>((resolve) => {
      // half-open allowed, as a Python client's socket: the server's FIN does not stop the sending
      const sock = net.connect({ port: run.port, host: '127.0.0.1', allowHalfOpen: true });
      let data = '';
      let sent = 0;
      let error: string | undefined;
      sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
      sock.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      sock.on('close', () => resolve({ data, sent, ...(error !== undefined ? { error } : {}) }));
      sock.setTimeout(60_000, () => sock.destroy(new Error('timeout')));
      sock.on('connect', async () => {
        sock.write(
          `POST /api1/collections/${COL_MAIN}/objects/ HTTP/1.1\r\nHost: x\r\nAccept: ${TAXII}\r\nContent-Type: ${TAXII}\r\n` +
            `Authorization: ${AUTH.alice}\r\nContent-Length: ${total}\r\n\r\n`,
        );
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        while (sent < total && error === undefined && !sock.destroyed) {
          sent += chunk.length;
          if (!sock.write(chunk)) await new Promise<void>((r) => sock.once('drain', () => r()).once('close', () => r()));
        }
        // like Python requests: the whole body is sent, then the answer is read and the socket closed
        if (!sock.destroyed) sock.end();
      });
    });
    assert.equal(out.error, undefined, `the client saw ${out.error} after sending ${out.sent} octets`);
    assert.equal(out.sent, 6 * 1024 * 1024);
    assert.match(out.data, /^HTTP\/1\.1 413 /);
    assert.match(out.data, /\r\nconnection: close\r\n/i);
    assert.match(out.data, /"http_status":"413"/);
    // the server is fine afterwards
    assert.equal((await request(run.base, 'GET', '/taxii2/', { auth: AUTH.bob })).status, 200);
  });

  it('answers unknown paths under the base path with a TAXII error resource', async () => {
    for (const p of ['/nope', '/api1/nope/', '/api1/collections/x/y/z/w/v/', '/taxii2/extra/']) {
      const r = await request(run.base, 'GET', p, { auth: AUTH.bob });
      assert.equal(r.status, 404, `${p}: ${r.text}`);
      assert.equal(r.headers['content-type'], TAXII, p);
      assert.equal(obj(r.json)['http_status'], '404', p);
    }
  });
});
