/**
 * lib/digest: RFC 8785 (JCS) known-answer vectors, SHA-256/HMAC, timestamp normalisation,
 * ledger keys, and the published STIX vectors of docs/vectors.md.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import {
  CanonicalizationError,
  MAX_DEPTH,
  TimestampError,
  canonicalize,
  collectionScope,
  compareTimestamps,
  hashObject,
  identityTag,
  keyForObject,
  ledgerKey,
  normaliseTimestamp,
  objectVersion,
  sha256Hex,
} from '../../lib/digest';
import type { StixObject } from '../../lib/stix';

const fixtureDir = path.resolve(__dirname, '../fixtures/stix');
const fixture = (name: string): StixObject => JSON.parse(fs.readFileSync(path.join(fixtureDir, `${name}.json`), 'utf8')) as StixObject;

/** IEEE 754 double from its 16 hex digits (big-endian bit pattern) */
function fromBits(hex: string): number {
  return Buffer.from(hex.padStart(16, '0'), 'hex').readDoubleBE(0);
}

const isJcsError = (re: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof CanonicalizationError, `expected CanonicalizationError, got ${String(err)}`);
  assert.equal(err.code, 'JCS_INVALID');
  assert.match(err.message, re);
  return true;
};

describe('digest: RFC 8785 JSON Canonicalization Scheme', () => {
  // RFC 8785 Appendix B "Number Serialization Samples" (IEEE 754 bit pattern -> expected text).
  // Source: RFC 8785 Appendix B; the rows were taken from two independent copies of that table
  // found with the code search (serde_jcs tests/basic.rs `test_rfc_appendix_b` and a TypeScript
  // test titled "RFC 8785 Appendix B: number serialization"), which agree row for row.
  const appendixB: Array<[string, string | null, string]> = [
    ['0000000000000000', '0', 'Zero'],
    ['8000000000000000', '0', 'Minus zero'],
    ['0000000000000001', '5e-324', 'Min pos number'],
    ['8000000000000001', '-5e-324', 'Min neg number'],
    ['7fefffffffffffff', '1.7976931348623157e+308', 'Max pos number'],
    ['ffefffffffffffff', '-1.7976931348623157e+308', 'Max neg number'],
    ['4340000000000000', '9007199254740992', 'Max pos int'],
    ['c340000000000000', '-9007199254740992', 'Max neg int'],
    ['4430000000000000', '295147905179352830000', '~2**68'],
    ['7fffffffffffffff', null, 'NaN'],
    ['7ff0000000000000', null, 'Infinity'],
    ['44b52d02c7e14af5', '9.999999999999997e+22', ''],
    ['44b52d02c7e14af6', '1e+23', ''],
    ['44b52d02c7e14af7', '1.0000000000000001e+23', ''],
    ['444b1ae4d6e2ef4e', '999999999999999700000', ''],
    ['444b1ae4d6e2ef4f', '999999999999999900000', ''],
    ['444b1ae4d6e2ef50', '1e+21', ''],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7', ''],
    ['3eb0c6f7a0b5ed8d', '0.000001', ''],
    ['41b3de4355555553', '333333333.3333332', ''],
    ['41b3de4355555554', '333333333.33333325', ''],
    ['41b3de4355555555', '333333333.3333333', ''],
    ['41b3de4355555556', '333333333.3333334', ''],
    ['41b3de4355555557', '333333333.33333343', ''],
    ['becbf647612f3696', '-0.0000033333333333333333', ''],
    ['43143ff3c1cb0959', '1424953923781206.2', 'tie, rounded to even'],
  ];

  describe('Appendix B number serialisation', () => {
    for (const [bits, expected, note] of appendixB) {
      it(`${bits} -> ${expected ?? 'error'}${note ? ` (${note})` : ''}`, () => {
        const n = fromBits(bits);
        if (expected === null) {
          assert.throws(() => canonicalize(n), isJcsError(/is not a JSON number/));
          assert.throws(() => canonicalize({ v: [1, n] }), isJcsError(/\$\.v\[1\]/));
        } else {
          assert.equal(canonicalize(n), expected);
          assert.equal(canonicalize([n]), `[${expected}]`);
        }
      });
    }
    it('-Infinity is rejected as well', () => {
      assert.throws(() => canonicalize(-Infinity), isJcsError(/-Infinity is not a JSON number/));
    });
  });

  // RFC 8785 §3.2.2 sample input (JSON text, escapes as printed in the RFC) and §3.2.3 output;
  // §3.2.4 gives the UTF-8 bytes of that output.
  const rfcSample =
    '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n' +
    '  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n' +
    '  "literals": [null, true, false]\n}';
  const rfcCanonical =
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}';
  const rfcUtf8Hex = [
    '7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72',
    '75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a',
    '5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31',
    '65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37',
    '5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30',
    '30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d',
  ].join(' ');

  it('§3.2.2/§3.2.3 sample: canonical text', () => {
    assert.equal(canonicalize(JSON.parse(rfcSample)), rfcCanonical);
  });

  it('§3.2.4: UTF-8 bytes of the sample, and h_t is the SHA-256 of exactly those bytes', () => {
    const bytes = Buffer.from(canonicalize(JSON.parse(rfcSample)), 'utf8');
    assert.equal(bytes.toString('hex'), rfcUtf8Hex.replace(/ /g, ''));
    assert.equal(hashObject(JSON.parse(rfcSample)), sha256Hex(Buffer.from(rfcUtf8Hex.replace(/ /g, ''), 'hex')));
  });

  it('§3.2.3 sorting example: member names ordered by UTF-16 code units', () => {
    const input = JSON.parse(
      '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One",' +
        '"\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}',
    ) as unknown;
    assert.equal(
      canonicalize(input),
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  // cyberphone/json-canonicalization testdata (the RFC author's reference test files):
  // input/weird.json -> output/weird.json, input/structures.json -> output/structures.json,
  // input/unicode.json -> output/unicode.json.
  it('reference testdata weird.json (sorting incl. a surrogate pair, U+007F kept as is)', () => {
    const input = JSON.parse(
      '{"\\u20ac":"Euro Sign","1":"One","\\u0080":"Control\\u007f","\\ud83d\\ude02":"Smiley",' +
        '"\\u00f6":"Latin Small Letter O With Diaeresis","\\ufb33":"Hebrew Letter Dalet With Dagesh","</script>":"Browser Challenge"}',
    ) as unknown;
    assert.equal(
      canonicalize(input),
      '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude02":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it('reference testdata structures.json (nested sorting, empty containers, 56.0 -> 56)', () => {
    const input = JSON.parse('{"1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},"10": { },"": "empty","a": { },"111": [ { } ],"A": { }}') as unknown;
    assert.equal(canonicalize(input), '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}');
  });

  it('reference testdata unicode.json (no Unicode normalisation)', () => {
    assert.equal(canonicalize({ 'Unnormalized Unicode': '\u1e0d\u0307' }), '{"Unnormalized Unicode":"\u1e0d\u0307"}');
  });

  describe('string escaping (RFC 8785 §3.2.2.2)', () => {
    it('escapes every C0 control: short forms for \\b \\t \\n \\f \\r, lower-case \\u00xx for the rest', () => {
      const short: Record<number, string> = { 8: '\\b', 9: '\\t', 10: '\\n', 12: '\\f', 13: '\\r' };
      for (let c = 0; c < 0x20; c++) {
        const want = short[c] ?? `\\u00${c.toString(16).padStart(2, '0')}`;
        assert.equal(canonicalize(String.fromCharCode(c)), `"${want}"`, `U+${c.toString(16)}`);
      }
      assert.equal(canonicalize('\u001f\u000b'), '"\\u001f\\u000b"');
    });
    it('escapes only " and \\ among printable characters; / DEL U+2028 and non-ASCII stay as is', () => {
      assert.equal(canonicalize('a"b\\c/d'), '"a\\"b\\\\c/d"');
      assert.equal(canonicalize('\u007f\u2028\u2029\u00e9\u4e2d\ud83d\ude00'), '"\u007f\u2028\u2029\u00e9\u4e2d\ud83d\ude00"');
    });
    it('rejects lone surrogates in values and in keys, naming where', () => {
      assert.throws(() => canonicalize({ a: ['ok', 'x\ud800'] }), isJcsError(/\$\.a\[1\].*lone surrogate U\+D800/));
      assert.throws(() => canonicalize('\udc00abc'), isJcsError(/lone surrogate U\+DC00 at offset 0/));
      assert.throws(() => canonicalize('\ude00\ud83d'), isJcsError(/lone surrogate U\+DE00/));
      assert.throws(() => canonicalize({ ['k\udbff']: 1 }), isJcsError(/lone surrogate U\+DBFF/));
      assert.equal(canonicalize('\ud800\udc00'), '"\ud800\udc00"');
    });
  });

  describe('values outside JSON (JSON.stringify semantics where RFC 8785 is silent)', () => {
    it('drops undefined object members, like JSON.stringify', () => {
      assert.equal(canonicalize({ b: undefined, a: 1 }), '{"a":1}');
      assert.equal(canonicalize({ b: undefined }), '{}');
    });
    it('rejects undefined as an array element or as the whole value', () => {
      assert.throws(() => canonicalize([1, undefined]), isJcsError(/\$\[1\].*array element is undefined/));
      // eslint-disable-next-line no-sparse-arrays -- a hole is the case under test
      assert.throws(() => canonicalize([1, , 3]), isJcsError(/\$\[1\]/));
      assert.throws(() => canonicalize(undefined), isJcsError(/undefined is not JSON data/));
    });
    it('rejects functions, symbols and BigInt with the path', () => {
      assert.throws(() => canonicalize({ f: () => 1 }), isJcsError(/\$\.f: a function is not JSON data/));
      assert.throws(() => canonicalize({ s: Symbol('x') }), isJcsError(/\$\.s: a symbol/));
      assert.throws(() => canonicalize({ n: [10n] }), isJcsError(/\$\.n\[0\]: BigInt/));
    });
    it('rejects Map, Set and class instances, accepts null-prototype objects', () => {
      class Thing {
        x = 1;
      }
      assert.throws(() => canonicalize({ m: new Map() }), isJcsError(/\$\.m: a Map object is not JSON data/));
      assert.throws(() => canonicalize(new Set([1])), isJcsError(/a Set object/));
      assert.throws(() => canonicalize(new Thing()), isJcsError(/a Thing object/));
      const bare = Object.create(null) as Record<string, unknown>;
      bare.b = 2;
      bare.a = 1;
      assert.equal(canonicalize(bare), '{"a":1,"b":2}');
    });
    it("accepts plain objects made in another realm (Node-RED's function node runs in a vm context), still refusing that realm's Map and class instances", () => {
      const foreign = vm.runInNewContext('({ type: "indicator", n: [1, { b: 2, a: 1 }], o: Object.assign({}, { z: true }) })') as unknown;
      assert.notEqual(Object.getPrototypeOf(foreign), Object.prototype, 'the object really comes from another realm');
      assert.equal(canonicalize(foreign), '{"n":[1,{"a":1,"b":2}],"o":{"z":true},"type":"indicator"}');
      assert.equal(canonicalize(foreign), canonicalize({ type: 'indicator', n: [1, { b: 2, a: 1 }], o: { z: true } }));
      assert.throws(() => canonicalize(vm.runInNewContext('({ m: new Map() })')), isJcsError(/\$\.m: a Map object is not JSON data/));
      assert.throws(() => canonicalize(vm.runInNewContext('class Thing { constructor() { this.x = 1; } }; new Thing()')), isJcsError(/a Thing object/));
    });
    it('honours toJSON (a Date becomes its ISO string) and unwraps boxed primitives', () => {
      assert.equal(canonicalize({ d: new Date(Date.UTC(2014, 4, 8, 9)) }), '{"d":"2014-05-08T09:00:00.000Z"}');
      assert.equal(canonicalize({ t: { toJSON: (k: string) => `key:${k}` } }), '{"t":"key:t"}');
      assert.equal(canonicalize([new Number(4.5), new String('s'), new Boolean(false)]), '[4.5,"s",false]');
      assert.equal(canonicalize({ o: { a: 1 } }), JSON.stringify({ o: { a: 1 } }));
    });
    it('rejects circular structures but accepts shared references', () => {
      const a: Record<string, unknown> = { x: 1 };
      a.self = a;
      assert.throws(() => canonicalize({ a }), isJcsError(/\$\.a\.self: circular structure/));
      const shared = { k: 'v' };
      assert.equal(canonicalize([shared, { s: shared }]), '[{"k":"v"},{"s":{"k":"v"}}]');
    });
    it(`rejects nesting deeper than ${MAX_DEPTH} levels with a clear error (no stack overflow)`, () => {
      let deep: unknown = 0;
      for (let i = 0; i < MAX_DEPTH + 5; i++) deep = [deep];
      assert.throws(() => canonicalize(deep), isJcsError(/nesting deeper than/));
      let ok: unknown = 0;
      for (let i = 0; i < 100; i++) ok = { a: ok };
      assert.match(canonicalize(ok), /^(\{"a":){100}0\}{100}$/);
    });
    it('quotes odd member names in error paths', () => {
      assert.throws(() => canonicalize({ 'a b': [NaN] }), isJcsError(/\$\["a b"\]\[0\]/));
    });
    it('matches JSON.stringify on plain JSON data without floats or special characters', () => {
      const o = { z: [1, 2, { y: 'x', b: null }], a: true, m: 'text' };
      const sortedStringify = JSON.stringify(o, (_k, v: unknown) =>
        v && typeof v === 'object' && !Array.isArray(v)
          ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : 1)))
          : v,
      );
      assert.equal(canonicalize(o), sortedStringify);
    });
  });
});

describe('digest: sha256Hex / hashObject', () => {
  it('sha256Hex: FIPS 180-2 known answers, strings as UTF-8, bytes as is', () => {
    assert.equal(sha256Hex(''), '0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256Hex('abc'), '0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(sha256Hex(new Uint8Array([0x61, 0x62, 0x63])), sha256Hex('abc'));
    assert.equal(sha256Hex('\u20ac'), sha256Hex(Buffer.from([0xe2, 0x82, 0xac])));
  });

  it('hashObject is sha256(JCS(obj)), independent of member order and whitespace', () => {
    const a = { b: [1, 2], a: 'x', c: { e: 1, d: 2 } };
    const b = JSON.parse('{ "c": {"d": 2.0, "e": 1e0}, "a": "x", "b": [1, 2] }') as unknown;
    assert.equal(hashObject(a), sha256Hex(canonicalize(a)));
    assert.equal(hashObject(a), hashObject(b));
    assert.match(hashObject(a), /^0x[0-9a-f]{64}$/);
    assert.notEqual(hashObject({ b: [2, 1], a: 'x', c: { e: 1, d: 2 } }), hashObject(a), 'array order matters');
  });

  it('hashObject with an HMAC key (keyed-hash privacy option)', () => {
    const ind = fixture('indicator');
    // cross-checked with: printf '%s' "$JCS" | openssl dgst -sha256 -hmac 'sets-demo-community-key'
    const want = '0x4b84ec90724965c177d4173d4cc5ed7fd87cf212c4bf9cc8458a971109630609';
    assert.equal(hashObject(ind, 'sets-demo-community-key'), want);
    assert.equal(hashObject(ind, Buffer.from('sets-demo-community-key')), want);
    assert.equal(hashObject(ind, new TextEncoder().encode('sets-demo-community-key')), want);
    assert.notEqual(hashObject(ind, 'another-key'), want);
    assert.notEqual(hashObject(ind), want);
    assert.throws(
      () => hashObject(ind, ''),
      (err: unknown) => (err as { code?: string }).code === 'HMAC_KEY_EMPTY' && /HMAC key is empty/.test((err as Error).message),
    );
  });

  it('propagates canonicalisation errors', () => {
    assert.throws(() => hashObject({ x: NaN }), CanonicalizationError);
  });
});

describe('digest: normaliseTimestamp / compareTimestamps', () => {
  const good: Array<[string, string]> = [
    ['2016-05-12T08:17:27.000Z', '2016-05-12T08:17:27Z'],
    ['2016-05-12T08:17:27Z', '2016-05-12T08:17:27Z'],
    ['2016-05-12T08:17:27.100Z', '2016-05-12T08:17:27.1Z'],
    ['2016-05-12T08:17:27.123456789Z', '2016-05-12T08:17:27.123456789Z'],
    ['2016-05-12T08:17:27.1234567890000Z', '2016-05-12T08:17:27.123456789Z'],
    ['2014-05-08T09:00:00.000000Z', '2014-05-08T09:00:00Z'],
    ['2016-05-12t08:17:27.5z', '2016-05-12T08:17:27.5Z'],
    ['2016-05-12T10:17:27.000+02:00', '2016-05-12T08:17:27Z'],
    ['2016-05-12T03:47:27.250-04:30', '2016-05-12T08:17:27.25Z'],
    ['2016-05-12T08:17:27-00:00', '2016-05-12T08:17:27Z'],
    ['2016-05-12T08:17:27+00:00', '2016-05-12T08:17:27Z'],
    ['2017-01-01T01:30:00.000001+02:00', '2016-12-31T23:30:00.000001Z'],
    ['2016-12-31T22:00:00-03:00', '2017-01-01T01:00:00Z'],
    ['2016-03-01T00:59:59+01:00', '2016-02-29T23:59:59Z'],
    ['2015-03-01T00:59:59+01:00', '2015-02-28T23:59:59Z'],
    ['2000-02-29T12:00:00Z', '2000-02-29T12:00:00Z'],
    ['2016-12-31T23:59:60Z', '2016-12-31T23:59:60Z'],
    ['2017-01-01T00:59:60.5+01:00', '2016-12-31T23:59:60.5Z'],
    ['0000-01-01T00:00:00Z', '0000-01-01T00:00:00Z'],
    ['9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
  ];
  for (const [input, want] of good) {
    it(`${input} -> ${want}`, () => assert.equal(normaliseTimestamp(input), want));
  }

  const bad: Array<[unknown, RegExp]> = [
    ['2016-05-12T08:17:27', /expected RFC 3339/],
    ['2016-05-12 08:17:27Z', /expected RFC 3339/],
    ['2016-05-12T08:17:27.Z', /expected RFC 3339/],
    ['2016-5-12T08:17:27Z', /expected RFC 3339/],
    ['2016-05-12T08:17:27+0200', /expected RFC 3339/],
    ['', /expected RFC 3339/],
    [' 2016-05-12T08:17:27Z', /expected RFC 3339/],
    ['2016-13-01T00:00:00Z', /month 13 out of range/],
    ['2016-00-01T00:00:00Z', /month 00 out of range/],
    ['2016-02-30T00:00:00Z', /day 30 does not exist in 2016-02/],
    ['2015-02-29T00:00:00Z', /day 29 does not exist in 2015-02/],
    ['1900-02-29T00:00:00Z', /day 29 does not exist/],
    ['2016-04-31T00:00:00Z', /day 31 does not exist/],
    ['2016-04-00T00:00:00Z', /day 00 does not exist/],
    ['2016-04-01T24:00:00Z', /hour 24 out of range/],
    ['2016-04-01T23:60:00Z', /minute 60 out of range/],
    ['2016-04-01T23:59:61Z', /second 61 out of range/],
    ['2016-04-01T12:00:60Z', /leap second/],
    ['2016-04-01T12:00:00+24:00', /offset \+24:00 out of range/],
    ['2016-04-01T12:00:00+01:60', /offset/],
    ['0000-01-01T00:00:00+00:01', /outside years 0000-9999/],
    ['9999-12-31T23:59:00-00:01', /outside years 0000-9999/],
    [1463041047000, /must be a string, got number/],
    [null, /must be a string, got null/],
  ];
  for (const [input, re] of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => normaliseTimestamp(input as string),
        (err: unknown) => err instanceof TimestampError && err.code === 'TIMESTAMP_INVALID' && re.test(err.message),
      );
    });
  }

  it('equal instants give equal strings; the ms part agrees with Date for 3000 pseudo-random instants', () => {
    let seed = 20240601;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const offsets = [0, 60, -60, 330, -570, 845, -720, 840, 1439, -1439];
    for (let i = 0; i < 3000; i++) {
      const ms = rnd(2 ** 31) * 2000 + rnd(2000); // ~1970..2106 with ms
      const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
      const want = iso.replace(/\.?0+Z$/, 'Z').replace(/\.Z$/, 'Z');
      const off = offsets[rnd(offsets.length)];
      const local = new Date(ms + off * 60000).toISOString().slice(0, 23);
      const sign = off < 0 ? '-' : '+';
      const abs = Math.abs(off);
      const withOffset = `${local}${rnd(2) ? '0000' : ''}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
      assert.equal(normaliseTimestamp(withOffset), want, withOffset);
      assert.equal(normaliseTimestamp(iso), want, iso);
    }
  });

  it('compareTimestamps compares instants, fractions digit by digit', () => {
    assert.equal(compareTimestamps('2016-05-12T08:17:27Z', '2016-05-12T08:17:27.000Z'), 0);
    assert.equal(compareTimestamps('2016-05-12T08:17:27Z', '2016-05-12T08:17:27.5Z'), -1);
    assert.equal(compareTimestamps('2016-05-12T08:17:27.5Z', '2016-05-12T08:17:27.49999999Z'), 1);
    assert.equal(compareTimestamps('2016-05-12T08:17:27.0000001Z', '2016-05-12T08:17:27Z'), 1);
    assert.equal(compareTimestamps('2016-05-12T10:17:27+02:00', '2016-05-12T08:17:27Z'), 0);
    assert.equal(compareTimestamps('2016-05-12T08:17:28Z', '2016-05-12T10:17:27.999+02:00'), 1);
    assert.equal(compareTimestamps('2016-12-31T23:59:60Z', '2017-01-01T00:00:00Z'), -1);
    assert.throws(() => compareTimestamps('nope', '2016-05-12T08:17:27Z'), TimestampError);
  });
});

describe('digest: objectVersion / ledgerKey / keyForObject', () => {
  const collection = '91a7b528-80eb-42ed-a74d-c6fbd5a26116';

  it('objectVersion: normalised modified, else created, else null', () => {
    assert.equal(objectVersion({ created: '2016-01-01T00:00:00.000Z', modified: '2016-05-12T08:17:27.000Z' }), '2016-05-12T08:17:27Z');
    assert.equal(objectVersion({ created: '2016-01-01T00:00:00.100Z' }), '2016-01-01T00:00:00.1Z');
    assert.equal(objectVersion({ created: '2016-01-01T00:00:00Z', modified: undefined }), '2016-01-01T00:00:00Z');
    assert.equal(objectVersion({}), null);
    assert.equal(objectVersion(fixture('ipv4-addr')), null);
  });

  it('objectVersion: invalid timestamps are errors naming the property', () => {
    assert.throws(
      () => objectVersion({ modified: 'yesterday', created: '2016-01-01T00:00:00Z' }),
      (err: unknown) => err instanceof TimestampError && /property "modified": invalid timestamp "yesterday"/.test(err.message),
    );
    assert.throws(
      () => objectVersion({ created: 12 }),
      (err: unknown) => err instanceof TimestampError && /property "created" must be a timestamp string, got number/.test(err.message),
    );
  });

  it('ledgerKey = sha256(JCS([collection, id, version])), bytes32 hex', () => {
    const id = 'indicator--33fe3b22-0201-47cf-85d0-97c02164528d';
    const key = ledgerKey(collection, id, '2014-05-08T09:00:00Z');
    assert.equal(key, sha256Hex(`["${collection}","${id}","2014-05-08T09:00:00Z"]`));
    assert.match(key, /^0x[0-9a-f]{64}$/);
    assert.notEqual(ledgerKey('other-collection', id, '2014-05-08T09:00:00Z'), key);
    assert.notEqual(ledgerKey(collection, id, '2014-05-08T09:00:01Z'), key);
  });

  it('ledgerKey of an unversioned object = sha256(JCS([collection, id, null, h_t])): keyed by its content', () => {
    const id = 'ipv4-addr--1e4ffad7-0b88-41d4-ba4d-77d27490b956';
    const h = '0x' + 'ab'.repeat(32);
    assert.equal(ledgerKey(collection, id, null, h), sha256Hex(`["${collection}","${id}",null,"${h}"]`));
    assert.notEqual(ledgerKey(collection, id, null, '0x' + 'cd'.repeat(32)), ledgerKey(collection, id, null, h));
  });

  it('two producers\' SCOs with one deterministic id and different content get different keys', () => {
    // STIX ids of SCOs are UUIDv5 over some properties only (ipv4-addr: value), so the same id can
    // carry different content (here: a different resolves_to_refs list)
    const a = { ...fixture('ipv4-addr'), resolves_to_refs: ['mac-addr--65cfcf98-8a6e-5a1b-8f61-379ac4f92d00'] };
    const b = { ...fixture('ipv4-addr'), resolves_to_refs: ['mac-addr--4a2b8a1f-1b26-5b0d-9d6c-4a5c0ba8f4d1'] };
    assert.equal(a.id, b.id);
    const ka = keyForObject(collection, a);
    const kb = keyForObject(collection, b);
    assert.notEqual(ka.key, kb.key);
    assert.equal(ka.version, null);
    // an identical copy has the identical key (anchor and verify agree)
    assert.equal(keyForObject(collection, JSON.parse(JSON.stringify(a)) as typeof a).key, ka.key);
    // keyed with the community key, the key uses the keyed hash (the plain one would let anyone
    // confirm a guessed IP address from the key on chain)
    const keyed = keyForObject(collection, a, { hmacKey: 'k' });
    assert.equal(keyed.key, ledgerKey(collection, a.id, null, hashObject(a, 'k')));
    assert.notEqual(keyed.key, ka.key);
    // the published keyed vector (docs/vectors.md 3.4)
    assert.equal(
      keyForObject(collection, fixture('ipv4-addr'), { hmacKey: 'sets-demo-community-key' }).key,
      '0x38a9125591a2c65928c54794ba820a17ddfcfbbc80c4b9499b3abee2baa6baad',
    );
  });

  it('identityTag = sha256(JCS(["identity", id])): differs from the scope of a collection of the same name', () => {
    const id = 'identity--f431f809-377b-45e0-aa1c-6a4751cae5ff';
    assert.equal(identityTag(id), sha256Hex(`["identity","${id}"]`));
    assert.equal(identityTag(id), '0xfd0d5c01abfb94ea02980e9a55b448b57490d1af7a41a29aad039ed5053082dd', 'docs/vectors.md 3.6');
    assert.notEqual(identityTag(id), collectionScope(id));
    assert.throws(() => identityTag(''), (err: unknown) => (err as { code?: string }).code === 'KEY_INVALID');
  });

  it('collectionScope = sha256(JCS([collection])), never equal to a key', () => {
    assert.equal(collectionScope(collection), '0xc435b33dffbdc30710f5029d909814ab8789ab84671e9b4fbf20844e2bf02404');
    assert.equal(collectionScope(collection), sha256Hex(`["${collection}"]`));
    assert.notEqual(collectionScope('other'), collectionScope(collection));
    assert.equal(keyForObject(collection, fixture('indicator')).scope, collectionScope(collection));
    assert.throws(() => collectionScope(''), (err: unknown) => (err as { code?: string }).code === 'KEY_INVALID');
  });

  it('ledgerKey rejects bad arguments with code KEY_INVALID', () => {
    const isKeyErr = (re: RegExp) => (err: unknown) => (err as { code?: string }).code === 'KEY_INVALID' && re.test((err as Error).message);
    assert.throws(() => ledgerKey('', 'x--1', null), isKeyErr(/collection id/));
    assert.throws(() => ledgerKey(collection, '', null), isKeyErr(/object id/));
    assert.throws(() => ledgerKey(collection, 'x', 5 as unknown as string), isKeyErr(/version/));
    assert.throws(() => ledgerKey(collection, 'x', null), isKeyErr(/unversioned object is keyed by its hash/));
    assert.throws(() => ledgerKey(collection, 'x', null, 'not-a-hash'), isKeyErr(/unversioned object is keyed by its hash/));
  });

  it('keyForObject: the same key for the same instant written differently', () => {
    const ind = fixture('indicator');
    const a = keyForObject(collection, ind);
    const b = keyForObject(collection, { ...ind, modified: '2014-05-08T11:00:00+02:00' });
    assert.equal(a.key, b.key);
    assert.equal(a.version, b.version);
    assert.notEqual(a.hash, b.hash, 'the hash covers the object as written');
    assert.equal(a.version, '2014-05-08T09:00:00Z');
    assert.equal(a.key, ledgerKey(collection, ind.id, objectVersion(ind)));
  });

  // Published vectors (docs/vectors.md). JCS strings were also produced independently with
  // Python's json.dumps(sort_keys=True, separators=(',', ':'), ensure_ascii=False) (identical for
  // these ASCII-keyed, integer-free objects) and the SHA-256 values cross-checked in the shell:
  //   printf '%s' "$JCS" | sha256sum
  const vectors: Array<{ name: string; jcs: string; hash: string; keyInput: string; key: string }> = [
    {
      name: 'indicator',
      jcs:
        '{"created":"2014-05-08T09:00:00.000Z","description":"Test description C2 channel.","id":"indicator--33fe3b22-0201-47cf-85d0-97c02164528d",' +
        '"indicator_types":["malicious-activity"],"modified":"2014-05-08T09:00:00.000Z","name":"IP Address for known C2 channel",' +
        '"pattern":"[ipv4-addr:value = \'10.0.0.0\']","pattern_type":"stix","spec_version":"2.1","type":"indicator","valid_from":"2014-05-08T09:00:00.000000Z"}',
      hash: '0x0b3d46b27e5db3dd83b061ab3b3ef87a576c73d2a8597335feb974c983e32f60',
      keyInput: '["91a7b528-80eb-42ed-a74d-c6fbd5a26116","indicator--33fe3b22-0201-47cf-85d0-97c02164528d","2014-05-08T09:00:00Z"]',
      key: '0xdaa81c1a084f98375ccc42321a1433c33adbca12f6693b7410e544e430b82407',
    },
    {
      name: 'malware',
      jcs:
        '{"created":"2017-01-27T13:49:53.997Z","created_by_ref":"identity--f690c992-8e7d-4b9a-9303-3312616c0220","description":"variant",' +
        '"id":"malware--fdd60b30-b67c-41e3-b0b9-f01faf20d111","is_family":true,"malware_types":["remote-access-trojan"],' +
        '"modified":"2017-01-27T13:49:53.997Z","name":"Poison Ivy","spec_version":"2.1","type":"malware"}',
      hash: '0x627b0050c9b4c6787ed652bd7b43caf617420ab88abfab158fa321da2cbaa0e5',
      keyInput: '["91a7b528-80eb-42ed-a74d-c6fbd5a26116","malware--fdd60b30-b67c-41e3-b0b9-f01faf20d111","2017-01-27T13:49:53.997Z"]',
      key: '0x685ee444a1bc1a942b86c3b70c9c3c0379addb4f0467d40e623838e508def0b3',
    },
    {
      name: 'relationship',
      jcs:
        '{"created":"2014-09-09T19:58:39.609Z","id":"relationship--eca24e47-2259-4850-9705-fd1065c77236","modified":"2014-09-09T19:58:39.609Z",' +
        '"relationship_type":"indicates","source_ref":"indicator--c43a0a05-e8d2-4f64-ae37-3f3fb153f8d9","spec_version":"2.1",' +
        '"target_ref":"campaign--b549a58c-afd9-4847-85c3-5be13d56d3cc","type":"relationship"}',
      hash: '0x354153b6788ae9d73b83c86b98348ead59479e091faec9fe932a38d82375b905',
      keyInput: '["91a7b528-80eb-42ed-a74d-c6fbd5a26116","relationship--eca24e47-2259-4850-9705-fd1065c77236","2014-09-09T19:58:39.609Z"]',
      key: '0xaa6bf80f14053586b18261cc853a513aafc7d80d299c4b5e4954b66101836c0e',
    },
    {
      name: 'ipv4-addr',
      jcs: '{"id":"ipv4-addr--1e4ffad7-0b88-41d4-ba4d-77d27490b956","type":"ipv4-addr","value":"198.51.100.3"}',
      hash: '0x5cbf8a81c3b4e19be9b7d8b7a019992a356e4985f44731c715c0fb5df78937a3',
      keyInput:
        '["91a7b528-80eb-42ed-a74d-c6fbd5a26116","ipv4-addr--1e4ffad7-0b88-41d4-ba4d-77d27490b956",null,"0x5cbf8a81c3b4e19be9b7d8b7a019992a356e4985f44731c715c0fb5df78937a3"]',
      key: '0x85cc7ed365226ea6290c1e69b0958a51467325d1130d8eb28ea212296837017b',
    },
  ];

  describe(`published STIX vectors (collection ${collection})`, () => {
    for (const v of vectors) {
      it(`${v.name}: JCS, h_t, key input and key`, () => {
        const obj = fixture(v.name);
        assert.equal(canonicalize(obj), v.jcs);
        assert.equal(hashObject(obj), v.hash);
        assert.equal(sha256Hex(v.jcs), v.hash);
        const { key, version, hash } = keyForObject(collection, obj);
        assert.equal(hash, v.hash);
        assert.equal(canonicalize(version === null ? [collection, obj.id, null, hash] : [collection, obj.id, version]), v.keyInput);
        assert.equal(key, v.key);
        assert.equal(sha256Hex(v.keyInput), v.key);
      });
      it(`${v.name}: h_t survives a JSON round trip with reordered members and indentation`, () => {
        const obj = fixture(v.name);
        const reordered = Object.fromEntries(Object.entries(obj).reverse());
        const roundTrip = JSON.parse(JSON.stringify(reordered, null, 4)) as unknown;
        assert.equal(hashObject(roundTrip), v.hash);
      });
    }
  });
});
