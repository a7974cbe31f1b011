import { strict as assert } from 'node:assert';
import {
  STIX_MEDIA_TYPE,
  TAXII_MEDIA_TYPE,
  acceptsTaxii21,
  compareTimestamps,
  createTaxiiClock,
  isStix21MediaType,
  isTaxii21MediaType,
  parseAccept,
  parseMediaType,
  parseTimestamp,
  taxiiTimestamp,
  toTaxiiTimestamp,
} from '../../lib/taxii/media';

describe('taxii media types', () => {
  it('has the canonical spellings (no spaces)', () => {
    assert.equal(TAXII_MEDIA_TYPE, 'application/taxii+json;version=2.1');
    assert.equal(STIX_MEDIA_TYPE, 'application/stix+json;version=2.1');
  });

  describe('parseMediaType', () => {
    it('parses the canonical form', () => {
      assert.deepEqual(parseMediaType(TAXII_MEDIA_TYPE), {
        type: 'application', subtype: 'taxii+json', essence: 'application/taxii+json', params: { version: '2.1' }, q: 1,
      });
    });
    it('ignores white space and case of type and parameter names, unquotes values', () => {
      const mt = parseMediaType(' Application/TAXII+JSON ; Version = "2.1" ; charset=UTF-8 ');
      assert.ok(mt);
      assert.equal(mt.essence, 'application/taxii+json');
      assert.deepEqual(mt.params, { version: '2.1', charset: 'UTF-8' });
    });
    it('reads q and keeps it out of params', () => {
      const mt = parseMediaType('application/taxii+json;version=2.1;q=0.4');
      assert.equal(mt?.q, 0.4);
      assert.deepEqual(mt?.params, { version: '2.1' });
      assert.equal(parseMediaType('a/b;q=7')?.q, 1, 'out-of-range q counts as 1');
    });
    it('rejects what is not type/subtype[;name=value]', () => {
      for (const bad of ['', 'json', 'application/', '/json', '*/json', 'a/b;novalue', 'a b/c', 'a/b;=x']) {
        assert.equal(parseMediaType(bad), null, bad);
      }
    });
    it('tolerates empty parameter slots', () => {
      assert.deepEqual(parseMediaType('a/b;;c=d;')?.params, { c: 'd' });
    });
  });

  describe('parseAccept', () => {
    it('splits entries (commas inside quotes stay) and drops garbage', () => {
      const list = parseAccept('text/html, application/x;p="a,b", nonsense, */*;q=0.1');
      assert.deepEqual(list.map((m) => m.essence), ['text/html', 'application/x', '*/*']);
      assert.equal(list[1].params['p'], 'a,b');
      assert.equal(list[2].q, 0.1);
    });
    it('accepts an array of header values and undefined', () => {
      assert.equal(parseAccept(['a/b', 'c/d']).length, 2);
      assert.deepEqual(parseAccept(undefined), []);
    });
  });

  describe('isTaxii21MediaType / isStix21MediaType', () => {
    it('accepts 2.1 with extra parameters and spaces', () => {
      assert.equal(isTaxii21MediaType('application/taxii+json;version=2.1'), true);
      assert.equal(isTaxii21MediaType('application/taxii+json; version=2.1; charset=utf-8'), true);
      assert.equal(isStix21MediaType('application/stix+json; version=2.1'), true);
    });
    it('treats a missing version as 2.1 unless required', () => {
      assert.equal(isTaxii21MediaType('application/taxii+json'), true);
      assert.equal(isTaxii21MediaType('application/taxii+json', { requireVersion: true }), false);
      assert.equal(isStix21MediaType('application/stix+json', { requireVersion: true }), false);
    });
    it('rejects other versions and types', () => {
      for (const v of ['application/taxii+json;version=2.0', 'application/json', 'text/html', STIX_MEDIA_TYPE, '', undefined]) {
        assert.equal(isTaxii21MediaType(v), false, String(v));
      }
      assert.equal(isStix21MediaType(TAXII_MEDIA_TYPE), false);
      assert.equal(isStix21MediaType('application/stix+json;version=2.0'), false);
    });
  });

  describe('acceptsTaxii21', () => {
    const yes = [
      TAXII_MEDIA_TYPE,
      'application/taxii+json; version=2.1',
      'APPLICATION/TAXII+JSON;VERSION=2.1',
      'application/taxii+json',
      'application/taxii+json;version=2.1;q=0.5',
      'application/taxii+json;version=2.1;charset=utf-8',
      '*/*',
      'application/*',
      'text/html, application/taxii+json;version=2.1',
      'application/taxii+json;version=2.0, */*',
      'application/taxii+json;version=2.0, application/taxii+json;version=2.1',
    ];
    const no = [
      'application/json',
      'text/html',
      'application/taxii+json;version=2.0',
      'application/stix+json;version=2.1',
      'application/taxii+json;version=2.1;q=0',
      '*/*;q=0',
      '*/*, application/taxii+json;q=0',
      'application/*, application/taxii+json;version=2.1;q=0',
      'garbage',
    ];
    for (const a of yes) it(`admits ${JSON.stringify(a)}`, () => assert.equal(acceptsTaxii21(a), true));
    for (const a of no) it(`refuses ${JSON.stringify(a)}`, () => assert.equal(acceptsTaxii21(a), false));
    it('admits a missing or empty header (RFC 9110) and array values', () => {
      assert.equal(acceptsTaxii21(undefined), true);
      assert.equal(acceptsTaxii21('  '), true);
      assert.equal(acceptsTaxii21(['text/html', TAXII_MEDIA_TYPE]), true);
      assert.equal(acceptsTaxii21(['text/html']), false);
    });
  });
});

describe('taxii timestamps', () => {
  it('formats UTC with six fractional digits', () => {
    const d = new Date(Date.UTC(2021, 5, 10, 12, 34, 56, 789));
    assert.equal(taxiiTimestamp(d), '2021-06-10T12:34:56.789000Z');
    assert.equal(taxiiTimestamp(d, 42), '2021-06-10T12:34:56.789042Z');
    assert.match(taxiiTimestamp(), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
  });
  it('refuses bad micros, invalid dates and years beyond 9999', () => {
    assert.throws(() => taxiiTimestamp(new Date(0), 1000), RangeError);
    assert.throws(() => taxiiTimestamp(new Date(0), 1.5), RangeError);
    assert.throws(() => taxiiTimestamp(new Date(NaN)), RangeError);
    assert.throws(() => taxiiTimestamp(new Date(Date.UTC(10000, 0, 1))), RangeError);
  });
  it('parses RFC 3339 at µs precision, with offsets', () => {
    assert.deepEqual(parseTimestamp('1970-01-01T00:00:01.000001Z'), { epochMs: 1000, micros: 1 });
    assert.deepEqual(parseTimestamp('1970-01-01T01:00:00+01:00'), { epochMs: 0, micros: 0 });
    assert.deepEqual(parseTimestamp('1970-01-01T00:00:00.1234567891z'), { epochMs: 123, micros: 456 });
    assert.equal(parseTimestamp('0001-01-01T00:00:00Z')?.epochMs, Date.parse('0001-01-01T00:00:00Z'));
  });
  it('rejects malformed and impossible timestamps', () => {
    for (const bad of ['2021-02-29T00:00:00Z', '2021-13-01T00:00:00Z', '2021-01-01T24:00:00Z', '2021-01-01', '2021-01-01T00:00:00', 'x', '2021-01-01T00:00:00.Z']) {
      assert.equal(parseTimestamp(bad), null, bad);
    }
  });
  it('compares as instants, not strings', () => {
    assert.equal(compareTimestamps('2021-01-01T00:00:00.000Z', '2021-01-01T00:00:00Z'), 0);
    assert.equal(compareTimestamps('2021-01-01T01:00:00+01:00', '2021-01-01T00:00:00Z'), 0);
    assert.ok(compareTimestamps('2021-01-01T00:00:00.000002Z', '2021-01-01T00:00:00.000001Z') > 0);
    assert.ok(compareTimestamps('2020-12-31T23:59:59.999999Z', '2021-01-01T00:00:00Z') < 0);
    assert.throws(() => compareTimestamps('nope', '2021-01-01T00:00:00Z'), RangeError);
  });
  it('normalises to the TAXII form', () => {
    assert.equal(toTaxiiTimestamp('2021-01-01T01:00:00.5+01:00'), '2021-01-01T00:00:00.500000Z');
    assert.equal(toTaxiiTimestamp(new Date(0)), '1970-01-01T00:00:00.000000Z');
    assert.throws(() => toTaxiiTimestamp('yesterday'), RangeError);
  });
  it('clock hands out strictly increasing values within one millisecond and across a rollover', () => {
    let now = 1_000;
    const clock = createTaxiiClock(() => now);
    const seen: string[] = [];
    for (let i = 0; i < 1001; i++) seen.push(clock());
    assert.equal(seen[0], '1970-01-01T00:00:01.000000Z');
    assert.equal(seen[999], '1970-01-01T00:00:01.000999Z');
    assert.equal(seen[1000], '1970-01-01T00:00:01.001000Z');
    now = 900; // the wall clock goes backwards
    seen.push(clock());
    now = 5_000;
    seen.push(clock());
    for (let i = 1; i < seen.length; i++) assert.ok(compareTimestamps(seen[i], seen[i - 1]) > 0, `${seen[i]} > ${seen[i - 1]}`);
    assert.equal(seen.at(-1), '1970-01-01T00:00:05.000000Z');
  });
});
