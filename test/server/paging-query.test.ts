/**
 * Units of the TAXII server: signed next tokens (expiry, scope, filters, signature) and the
 * raw-query filter parser.
 */
import { strict as assert } from 'node:assert';
import { NextTokens, TokenError } from '../../lib/taxii/server-paging';
import { parseAddedAfter, parseFilters, QueryError } from '../../lib/taxii/server-query';
import { hashPassword, verifyPassword, parseBasicHeader, BasicVerifier } from '../../lib/auth/server-basic';

describe('TAXII server units: next tokens', function () {
  const tokens = new NextTokens('0123456789abcdef0123', 600_000);
  const filters = { 'match[type]': 'indicator', added_after: '2024-01-01T00:00:00.000000Z' };

  it('round-trips the store cursor for the same scope and filters', () => {
    const t = tokens.issue('objects|api1|c1|', filters, 'cursor-42', 1_000);
    assert.equal(tokens.open(t, 'objects|api1|c1|', { ...filters }, 2_000), 'cursor-42');
  });

  it('stays valid for the configured lifetime (>= 10 minutes) and expires after it', () => {
    const t = tokens.issue('s', {}, 'c', 0);
    assert.equal(tokens.open(t, 's', {}, 600_000), 'c');
    assert.throws(() => tokens.open(t, 's', {}, 600_001), (e: TokenError) => e.problem === 'expired');
    assert.throws(() => new NextTokens('0123456789abcdef0123', 60_000), /at least 10 minutes/);
    assert.throws(() => new NextTokens('short', 600_000), /at least 16 bytes/);
  });

  it('names the filters that changed, refuses other scopes, other secrets and edits', () => {
    const t = tokens.issue('s', filters, 'c', 0);
    assert.throws(
      () => tokens.open(t, 's', { 'match[type]': 'malware', 'match[id]': 'x' }, 1),
      (e: TokenError) => e.problem === 'filters-changed' && /changed: added_after, match\[id\], match\[type\]/.test(e.message),
    );
    assert.throws(() => tokens.open(t, 'other', filters, 1), (e: TokenError) => e.problem === 'other-endpoint');
    const stranger = new NextTokens('another-secret-of-16+', 600_000);
    assert.throws(() => stranger.open(t, 's', filters, 1), (e: TokenError) => e.problem === 'bad-signature');
    const [body, sig] = t.split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), c: 'evil' })).toString('base64url');
    assert.throws(() => tokens.open(`${forged}.${sig}`, 's', filters, 1), (e: TokenError) => e.problem === 'bad-signature');
    assert.throws(() => tokens.open('no-dot', 's', filters, 1), (e: TokenError) => e.problem === 'malformed');
  });
});

describe('TAXII server units: filters from the raw query', function () {
  it('parses every filter and builds a canonical identity (order and duplicates do not matter)', () => {
    const a = parseFilters(
      'match%5Btype%5D=malware,indicator&match[id]=indicator--2f0ad3a5-0f0e-4b4f-8c28-0a1a2b3c4d5e&match[version]=LAST,first&match[spec_version]=2.1&added_after=2024-01-01T01:00:00.1234567%2B01:00&limit=5',
      'objects',
      100,
    );
    assert.deepEqual(a.types, ['malware', 'indicator']);
    assert.deepEqual(a.versions, ['last', 'first']);
    assert.equal(a.addedAfter, '2024-01-01T00:00:00.123456Z');
    assert.equal(a.limit, 5);
    const b = parseFilters(
      'match[type]=indicator&match[type]=malware&match[version]=first,last&match[spec_version]=2.1&added_after=2024-01-01T00:00:00.123456Z&match[id]=indicator--2f0ad3a5-0f0e-4b4f-8c28-0a1a2b3c4d5e',
      'objects',
      100,
    );
    assert.deepEqual(a.canonical, b.canonical);
    assert.equal('limit' in a.canonical, false);
  });

  it('caps limit at the server maximum and normalises explicit versions', () => {
    assert.equal(parseFilters('limit=5000', 'manifest', 1000).limit, 1000);
    assert.deepEqual(parseFilters('match[version]=2024-01-01T00:00:00.000Z', 'object', 10).versions, ['2024-01-01T00:00:00Z']);
  });

  it('refuses filters an endpoint does not support, and malformed values, naming the parameter', () => {
    const bad: Array<[string, 'objects' | 'object' | 'manifest' | 'versions' | 'delete', string]> = [
      ['match[id]=indicator--2f0ad3a5-0f0e-4b4f-8c28-0a1a2b3c4d5e', 'object', 'match[id]'],
      ['match[version]=all', 'versions', 'match[version]'],
      ['added_after=2024-01-01T00:00:00Z', 'delete', 'added_after'],
      ['next=x', 'delete', 'next'],
      ['match[foo]=1', 'objects', 'match[foo]'],
      ['match[type]=,', 'objects', 'match[type]'],
      ['added_after=2024-01-01', 'objects', 'added_after'],
    ];
    for (const [q, ep, param] of bad) {
      assert.throws(() => parseFilters(q, ep, 10), (e: QueryError) => e instanceof QueryError && e.parameter === param, `${q} on ${ep}`);
    }
  });

  it('parseAddedAfter accepts any RFC 3339 spelling and refuses impossible instants', () => {
    assert.equal(parseAddedAfter('2024-02-29T23:59:59Z'), '2024-02-29T23:59:59.000000Z');
    assert.equal(parseAddedAfter('2024-03-01T00:00:00-00:30'), '2024-03-01T00:30:00.000000Z');
    assert.equal(parseAddedAfter('2023-02-29T00:00:00Z'), null);
    assert.equal(parseAddedAfter('now'), null);
  });
});

describe('TAXII server units: Basic credentials', function () {
  it('hashes with scrypt, verifies in constant time, parses the header case-insensitively', async () => {
    const h = await hashPassword('s3cret:with:colons', { N: 1024 });
    assert.match(h, /^scrypt\$1024\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
    assert.equal(await verifyPassword('s3cret:with:colons', h), true);
    assert.equal(await verifyPassword('s3cret', h), false);
    assert.deepEqual(parseBasicHeader('bAsIc ' + Buffer.from('u:p:q').toString('base64')), { username: 'u', password: 'p:q' });
    assert.equal(parseBasicHeader('Bearer x'), null);
    assert.equal(parseBasicHeader('Basic ' + Buffer.from('nocolon').toString('base64')), null);
    const v = new BasicVerifier([{ username: 'u', passwordHash: h, roles: ['r'] }]);
    assert.deepEqual(await v.verify({ username: 'u', password: 's3cret:with:colons' }), { username: 'u', roles: ['r'] });
    assert.equal(await v.verify({ username: 'u', password: 'nope' }), null);
    assert.equal(await v.verify({ username: 'x', password: 's3cret:with:colons' }), null);
    assert.throws(() => new BasicVerifier([{ username: 'a:b', passwordHash: h, roles: [] }]), /contains ':'/);
    assert.throws(() => new BasicVerifier([{ username: 'a', passwordHash: 'plain-text', roles: [] }]), /scrypt\$N\$r\$p/);
  });
});
