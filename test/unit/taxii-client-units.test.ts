/**
 * Unit tests of the TAXII client's pure parts: query building, envelope splitting, error
 * resources and messages, client-side auth encodings, transport error classification.
 */
import { strict as assert } from 'node:assert';
import { buildTaxiiQuery, normaliseAddedAfter, splitEnvelopes, TaxiiClient } from '../../lib/taxii/client';
import { buildFilters } from '../../lib/ops/taxii';
import { OpsError } from '../../lib/ops/errors';
import { TaxiiError, bodySnippet, httpErrorMessage, parseTaxiiErrorResource, reasonPhrase, taxiiErrorResource } from '../../lib/taxii/errors';
import { AuthError, BasicAuth, BearerAuth, NoAuth } from '../../lib/auth/client';
import { OAuth2ClientCredentials, keycloakTokenUrl } from '../../lib/auth/oauth2';
import { createAuthProvider } from '../../lib/auth/config';
import { classifyTransportError, createHttpClient, closeHttpClient, defaultUserAgent } from '../../lib/http';

function code(e: unknown): string | undefined {
  return e instanceof TaxiiError || e instanceof AuthError ? e.code : undefined;
}

describe('taxii client: query building', () => {
  it('encodes every filter as taxii2-client does, in a fixed order', () => {
    const q = buildTaxiiQuery({
      match: { spec_version: ['2.0', '2.1'], version: 'all', type: ['indicator', 'malware'], id: 'indicator--a' },
      next: 'tok/en+1',
      limit: 10,
      addedAfter: '2021-01-01T00:00:00.000000Z',
    });
    assert.equal(q,
      'added_after=2021-01-01T00%3A00%3A00.000000Z&limit=10&next=tok%2Fen%2B1' +
      '&match%5Bid%5D=indicator--a&match%5Btype%5D=indicator,malware&match%5Bversion%5D=all&match%5Bspec_version%5D=2.0,2.1');
  });
  it('turns a Date into a µs TAXII timestamp and keeps other match fields after the known ones', () => {
    const q = buildTaxiiQuery({ addedAfter: new Date(Date.UTC(2022, 0, 2, 3, 4, 5, 6)), match: { zeta: 'z', alpha: ['a'], id: 'x' } });
    assert.equal(q, 'added_after=2022-01-02T03%3A04%3A05.006000Z&match%5Bid%5D=x&match%5Balpha%5D=a&match%5Bzeta%5D=z');
  });
  it('is empty without filters', () => {
    assert.equal(buildTaxiiQuery(), '');
    assert.equal(buildTaxiiQuery({ match: {} }), '');
  });
  it('refuses unusable values with INVALID_ARGUMENT', () => {
    const bad = [
      { limit: 0 }, { limit: 1.5 }, { addedAfter: 'yesterday' }, { next: '' },
      { match: { id: [] } }, { match: { type: [''] } }, { match: { 'a]b': 'x' } },
    ];
    for (const f of bad) assert.throws(() => buildTaxiiQuery(f), (e: unknown) => code(e) === 'INVALID_ARGUMENT', JSON.stringify(f));
  });
  it('sends added_after as UTC Z with exactly 6 fractional digits (medallion parses nothing else)', () => {
    const cases: Array<[string | Date, string]> = [
      ['2021-01-01T00:00:00Z', '2021-01-01T00:00:00.000000Z'],
      ['2021-01-01T00:00:00.1Z', '2021-01-01T00:00:00.100000Z'],
      ['2021-01-01T00:00:00.123456Z', '2021-01-01T00:00:00.123456Z'],
      // beyond the µs: truncated (an earlier bound re-serves, never loses)
      ['2021-01-01T00:00:00.1234569Z', '2021-01-01T00:00:00.123456Z'],
      ['2021-01-01T00:00:00.999999999Z', '2021-01-01T00:00:00.999999Z'],
      ['2021-01-01T00:00:00+00:00', '2021-01-01T00:00:00.000000Z'],
      ['2021-01-01T02:30:00.5+02:30', '2021-01-01T00:00:00.500000Z'],
      ['2020-12-31T19:00:00.000001-05:00', '2021-01-01T00:00:00.000001Z'],
      ['2021-01-01t00:00:00z', '2021-01-01T00:00:00.000000Z'],
      ['2021-01-01 00:00:00Z', '2021-01-01T00:00:00.000000Z'],
      ['2016-12-31T23:59:60Z', '2016-12-31T23:59:59.000000Z'],
      [new Date(Date.UTC(2021, 0, 1, 0, 0, 0, 7)), '2021-01-01T00:00:00.007000Z'],
    ];
    for (const [given, sent] of cases) {
      assert.equal(normaliseAddedAfter(given), sent, String(given));
      assert.equal(buildTaxiiQuery({ addedAfter: given }), `added_after=${encodeURIComponent(sent)}`, String(given));
    }
  });
  it('refuses an added_after that is not an RFC 3339 timestamp, naming it', () => {
    const bad: Array<string | Date> = [
      'yesterday', '', '2021-01-01', '2021-01-01T00:00:00', '2021-01-01T00:00Z', '2021-02-29T00:00:00Z',
      '2021-01-01T24:00:00Z', '2021-01-01T00:00:00+24:00', '2021-01-01T00:00:00.Z', ' 2021-01-01T00:00:00Z',
      '0000-01-01T00:00:00+01:00', new Date(NaN),
    ];
    for (const v of bad) {
      assert.throws(() => buildTaxiiQuery({ addedAfter: v }), (e: unknown) => code(e) === 'INVALID_ARGUMENT' && (e as Error).message.includes(v instanceof Date ? 'Invalid Date' : JSON.stringify(v)), String(v));
    }
  });
});

describe('ops: TAXII filters from node and workflow settings', () => {
  it('added_after is trimmed and normalised; a bad one is BAD_FILTER naming the value', () => {
    assert.equal(buildFilters({ added_after: ' 2021-01-01T01:00:00+01:00 ' }).addedAfter, '2021-01-01T00:00:00.000000Z');
    assert.equal(buildFilters({ added_after: '2021-01-01T00:00:00Z' }, { added_after: '2022-01-01T00:00:00.12345678Z' }).addedAfter, '2022-01-01T00:00:00.123456Z');
    assert.equal(buildFilters({ added_after: new Date(Date.UTC(2021, 0, 1)) }).addedAfter, '2021-01-01T00:00:00.000000Z');
    assert.equal(buildFilters({ added_after: '' }).addedAfter, undefined);
    assert.equal(buildFilters({ added_after: '2021-01-01T00:00:00Z' }, { added_after: '  ' }).addedAfter, '2021-01-01T00:00:00.000000Z');
    for (const v of ['last week', '2021-13-01T00:00:00Z', 12]) {
      assert.throws(() => buildFilters({ added_after: v }), (e: unknown) => e instanceof OpsError && e.code === 'BAD_FILTER' && (typeof v !== 'string' || e.message.includes(JSON.stringify(v))), String(v));
    }
  });
});

describe('taxii client: envelope splitting', () => {
  const objs = Array.from({ length: 10 }, (_, i) => JSON.stringify({ id: `x--${i}`, pad: 'p'.repeat(40) }));
  const size = (chunk: string[]): number => Buffer.byteLength(`{"objects":[${chunk.join(',')}]}`);
  it('keeps everything in one envelope when it fits', () => {
    const all = splitEnvelopes(objs, 1_000_000);
    assert.deepEqual(all, [objs]);
  });
  it('splits greedily, never exceeding the limit, preserving order', () => {
    const max = size(objs.slice(0, 3));
    const chunks = splitEnvelopes(objs, max);
    assert.ok(chunks);
    assert.deepEqual(chunks.map((c) => c.length), [3, 3, 3, 1]);
    for (const c of chunks) assert.ok(size(c) <= max);
    assert.deepEqual(chunks.flat(), objs);
    // exactly at the limit still fits, one byte less does not
    assert.equal(splitEnvelopes(objs.slice(0, 3), max)?.length, 1);
    assert.equal(splitEnvelopes(objs.slice(0, 3), max - 1)?.length, 2);
  });
  it('counts bytes, not characters', () => {
    const s = [JSON.stringify({ id: 'x--1', n: 'é'.repeat(10) })];
    assert.equal(splitEnvelopes(s, size(s) - 1), null);
    assert.deepEqual(splitEnvelopes(s, size(s)), [s]);
  });
  it('returns null when one object alone is too large', () => {
    assert.equal(splitEnvelopes(objs, 20), null);
  });
});

describe('taxii errors', () => {
  it('builds error resources with http_status as a string and no empty values', () => {
    assert.deepEqual(taxiiErrorResource(404, 'Not found'), { title: 'Not found', http_status: '404' });
    assert.deepEqual(taxiiErrorResource(413, 'Too big', 'limit 10', { error_code: 'E1', details: {}, error_id: 'id-1' }), {
      title: 'Too big', http_status: '413', description: 'limit 10', error_id: 'id-1', error_code: 'E1',
    });
  });
  it('recognises an error resource (and tolerates numeric codes)', () => {
    assert.deepEqual(parseTaxiiErrorResource({ title: 'T', description: 'D', http_status: 500, error_code: 7, details: { a: 1 }, x: 'ignored' }), {
      title: 'T', description: 'D', http_status: '500', error_code: '7', details: { a: 1 },
    });
    assert.equal(parseTaxiiErrorResource({ description: 'no title' }), undefined);
    assert.equal(parseTaxiiErrorResource('text'), undefined);
    assert.equal(parseTaxiiErrorResource([{ title: 'x' }]), undefined);
  });
  it('formats the message with method, URL, status, reason, title and description', () => {
    const m = httpErrorMessage('post', 'https://h/api1/collections/c/objects/', 413, 'Request Entity Too Large', { title: 'Too big', description: 'max 10' }, undefined);
    assert.equal(m, 'TAXII POST https://h/api1/collections/c/objects/ -> 413 Request Entity Too Large: Too big: max 10');
    // no reason phrase from the server: Node's table
    assert.equal(httpErrorMessage('GET', 'u', 413, '', { title: 't' }, undefined), 'TAXII GET u -> 413 Payload Too Large: t');
    assert.equal(httpErrorMessage('GET', 'u', 500, 'Oops', undefined, 'snippet'), 'TAXII GET u -> 500 Oops: snippet');
    assert.equal(httpErrorMessage('GET', 'u', 599, undefined, { title: 'x', error_code: 'c', error_id: 'i' }, undefined), 'TAXII GET u -> 599 Unknown Status: x (error_code c) [error_id i]');
    assert.equal(reasonPhrase(406), 'Not Acceptable');
  });
  it('makes one-line snippets of HTML and long text', () => {
    assert.equal(bodySnippet('<html><head><style>p{}</style><title>401</title></head><body><h1>Unauthorized   Access</h1>\n<p>a &amp; b</p></body></html>'),
      '401 Unauthorized Access a & b');
    assert.equal(bodySnippet('x'.repeat(300)).length, 200);
  });
  it('TaxiiError keeps its fields', () => {
    const e = new TaxiiError('m', { code: 'HTTP_401', httpStatus: 401, url: 'u', method: 'GET', taxiiError: { title: 't' }, cause: new Error('c') });
    assert.equal(e.code, 'HTTP_401');
    assert.equal(e.httpStatus, 401);
    assert.equal(e.taxiiError?.title, 't');
    assert.ok(e.cause instanceof Error);
    assert.equal(e.name, 'TaxiiError');
  });
});

describe('client-side auth', () => {
  it('Basic encodes UTF-8 (RFC 7617 examples)', async () => {
    assert.deepEqual(await new BasicAuth('Aladdin', 'open sesame').headers(), { Authorization: 'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==' });
    assert.deepEqual(await new BasicAuth('test', '123\u00a3').headers(), { Authorization: 'Basic dGVzdDoxMjPCow==' });
  });
  it('Basic refuses a colon in the user-id and control characters', () => {
    assert.throws(() => new BasicAuth('a:b', 'c'), (e: unknown) => code(e) === 'CONFIG');
    assert.throws(() => new BasicAuth('a', 'c\nd'), (e: unknown) => code(e) === 'CONFIG');
  });
  it('Bearer sends the token and refuses empty or spaced tokens', async () => {
    assert.deepEqual(await new BearerAuth(' abc.def ').headers(), { Authorization: 'Bearer abc.def' });
    assert.throws(() => new BearerAuth(''), (e: unknown) => code(e) === 'CONFIG');
    assert.throws(() => new BearerAuth('a b'), (e: unknown) => code(e) === 'CONFIG');
    assert.deepEqual(await new NoAuth().headers(), {});
  });
  it('createAuthProvider builds each kind and describes it without secrets', () => {
    assert.equal(createAuthProvider(undefined).describe?.(), 'none');
    assert.equal(createAuthProvider({ type: 'basic', username: 'u', password: 'secret' }).describe?.(), 'basic (u)');
    assert.equal(createAuthProvider({ type: 'bearer', token: 'secret' }).describe?.(), 'bearer (static token)');
    const o = createAuthProvider({ type: 'oauth2', tokenUrl: 'https://kc/realms/r/protocol/openid-connect/token', clientId: 'c', clientSecret: 'secret' });
    assert.ok(o instanceof OAuth2ClientCredentials);
    assert.ok(!o.describe?.().includes('secret'));
    assert.throws(() => createAuthProvider({ type: 'kerberos' } as never), (e: unknown) => code(e) === 'CONFIG');
  });
  it('OAuth2 checks its configuration', () => {
    assert.throws(() => new OAuth2ClientCredentials({ tokenUrl: 'not a url', clientId: 'c', clientSecret: 's' }), (e: unknown) => code(e) === 'CONFIG');
    assert.throws(() => new OAuth2ClientCredentials({ tokenUrl: 'ftp://x/', clientId: 'c', clientSecret: 's' }), (e: unknown) => code(e) === 'CONFIG');
    assert.throws(() => new OAuth2ClientCredentials({ tokenUrl: 'http://x/', clientId: '', clientSecret: 's' }), (e: unknown) => code(e) === 'CONFIG');
  });
  it('keycloakTokenUrl follows Keycloak\'s layout', () => {
    assert.equal(keycloakTokenUrl('https://kc.example/', 'sets'), 'https://kc.example/realms/sets/protocol/openid-connect/token');
  });
});

describe('http helpers', () => {
  it('classifies transport errors', () => {
    const mk = (c: string, msg = c): Error => Object.assign(new Error(msg), { code: c });
    assert.equal(classifyTransportError(mk('ECONNREFUSED')).kind, 'NETWORK');
    assert.equal(classifyTransportError(mk('ECONNRESET')).reset, true);
    assert.equal(classifyTransportError(mk('ETIMEDOUT')).kind, 'TIMEOUT');
    assert.equal(classifyTransportError(mk('DEPTH_ZERO_SELF_SIGNED_CERT')).kind, 'TLS');
    assert.equal(classifyTransportError(mk('ERR_TLS_CERT_ALTNAME_INVALID')).kind, 'TLS');
    assert.equal(classifyTransportError(Object.assign(new Error('wrapped'), { code: 'ERR_BAD_REQUEST', cause: mk('UNABLE_TO_VERIFY_LEAF_SIGNATURE') })).kind, 'TLS');
    assert.equal(classifyTransportError(mk('ERR_CANCELED')).kind, 'ABORTED');
  });
  it('creates independent instances with the sets User-Agent and no proxy', () => {
    const a = createHttpClient();
    const b = createHttpClient({ userAgent: 'x/1' });
    assert.notEqual(a, b);
    assert.match(String(a.defaults.headers['User-Agent']), /^sets\//);
    assert.equal(b.defaults.headers['User-Agent'], 'x/1');
    assert.equal(a.defaults.proxy, false);
    assert.match(defaultUserAgent(), /^sets\/\S+$/);
    closeHttpClient(a);
    closeHttpClient(b);
  });
  it('TaxiiClient refuses unusable configuration', () => {
    assert.throws(() => new TaxiiClient({}), (e: unknown) => code(e) === 'INVALID_ARGUMENT');
    assert.throws(() => new TaxiiClient({ apiRootUrl: 'ftp://x/' }), (e: unknown) => code(e) === 'INVALID_ARGUMENT');
    assert.throws(() => new TaxiiClient({ discoveryUrl: 'http://x/taxii2/?a=b' }), (e: unknown) => code(e) === 'INVALID_ARGUMENT');
  });
});
