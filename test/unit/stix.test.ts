/**
 * lib/stix: validation rules, payload extraction (all-or-nothing), error messages, and — when
 * the OASIS STIX 2.1 schemas and examples are available (/work/shared/stix, SETS_SHARED_DIR or
 * SETS_STIX_DATA) — a differential test against the official schemas.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import {
  StixValidationError,
  extractObjects,
  formatIssue,
  isSco,
  specVersionOf,
  stixTypeOf,
  validateObject,
  type StixObject,
  type ValidationIssue,
} from '../../lib/stix';

const fixtureDir = path.resolve(__dirname, '../fixtures/stix');
const fixture = (name: string): StixObject => JSON.parse(fs.readFileSync(path.join(fixtureDir, `${name}.json`), 'utf8')) as StixObject;

type Obj = Record<string, unknown>;

const T = '2016-05-12T08:17:27.000Z';
const T2 = '2016-06-01T00:00:00.000Z';
let n = 0;
/** a fresh v4-shaped UUID (deterministic) */
function uuid(): string {
  n++;
  return `${n.toString(16).padStart(8, '0')}-1111-4222-8333-444455556666`;
}
const idOf = (type: string): string => `${type}--${uuid()}`;
const sdo = (type: string, props: Obj): Obj => ({ type, spec_version: '2.1', id: idOf(type), created: T, modified: T, ...props });
const sco = (type: string, props: Obj): Obj => ({ type, id: idOf(type), ...props });

/** a minimal valid object of every STIX 2.1 type, with its type-specific required properties */
const MINIMAL: Array<{ obj: Obj; required: string[] }> = [
  { obj: sdo('attack-pattern', { name: 'Spear phishing' }), required: ['name'] },
  { obj: sdo('campaign', { name: 'Green Group Attacks' }), required: ['name'] },
  { obj: sdo('course-of-action', { name: 'Block IP' }), required: ['name'] },
  { obj: sdo('grouping', { context: 'suspicious-activity', object_refs: [idOf('indicator')] }), required: ['context', 'object_refs'] },
  { obj: sdo('identity', { name: 'ACME', identity_class: 'organization' }), required: ['name'] },
  { obj: sdo('incident', { name: 'Breach' }), required: ['name'] },
  {
    obj: sdo('indicator', { pattern: "[ipv4-addr:value = '198.51.100.1']", pattern_type: 'stix', valid_from: T }),
    required: ['pattern', 'pattern_type', 'valid_from'],
  },
  { obj: sdo('infrastructure', { name: 'C2 server' }), required: ['name'] },
  { obj: sdo('intrusion-set', { name: 'APT1' }), required: ['name'] },
  { obj: sdo('location', { country: 'de' }), required: [] },
  { obj: sdo('malware', { is_family: false }), required: ['is_family'] },
  { obj: sdo('malware-analysis', { product: 'av', result: 'malicious' }), required: ['product'] },
  { obj: sdo('note', { content: 'text', object_refs: [idOf('malware')] }), required: ['content', 'object_refs'] },
  {
    obj: sdo('observed-data', { first_observed: T, last_observed: T2, number_observed: 1, object_refs: [idOf('ipv4-addr')] }),
    required: ['first_observed', 'last_observed', 'number_observed'],
  },
  { obj: sdo('opinion', { opinion: 'agree', object_refs: [idOf('report')] }), required: ['opinion', 'object_refs'] },
  { obj: sdo('report', { name: 'Report', published: T, object_refs: [idOf('indicator')] }), required: ['name', 'published', 'object_refs'] },
  { obj: sdo('threat-actor', { name: 'Evil Org' }), required: ['name'] },
  { obj: sdo('tool', { name: 'VNC' }), required: ['name'] },
  { obj: sdo('vulnerability', { name: 'CVE-2016-1234' }), required: ['name'] },
  {
    obj: sdo('relationship', { relationship_type: 'indicates', source_ref: idOf('indicator'), target_ref: idOf('malware') }),
    required: ['relationship_type', 'source_ref', 'target_ref'],
  },
  { obj: sdo('sighting', { sighting_of_ref: idOf('indicator') }), required: ['sighting_of_ref'] },
  { obj: sco('artifact', { payload_bin: 'aGVsbG8=' }), required: [] },
  { obj: sco('autonomous-system', { number: 15139 }), required: ['number'] },
  { obj: sco('directory', { path: 'C:\\Windows' }), required: ['path'] },
  { obj: sco('domain-name', { value: 'example.com' }), required: ['value'] },
  { obj: sco('email-addr', { value: 'john@example.com' }), required: ['value'] },
  { obj: sco('email-message', { is_multipart: false, body: 'hi' }), required: ['is_multipart'] },
  { obj: sco('file', { name: 'a.exe' }), required: [] },
  { obj: sco('ipv4-addr', { value: '198.51.100.3' }), required: ['value'] },
  { obj: sco('ipv6-addr', { value: '2001:db8::/96' }), required: ['value'] },
  { obj: sco('mac-addr', { value: 'd2:fb:49:24:37:18' }), required: ['value'] },
  { obj: sco('mutex', { name: '__CLEANSWEEP__' }), required: ['name'] },
  { obj: sco('network-traffic', { protocols: ['tcp'], src_ref: idOf('ipv4-addr') }), required: ['protocols'] },
  { obj: sco('process', { pid: 1221 }), required: [] },
  { obj: sco('software', { name: 'Word' }), required: ['name'] },
  { obj: sco('url', { value: 'https://example.com/research/index.html' }), required: ['value'] },
  { obj: sco('user-account', { user_id: '1001' }), required: [] },
  { obj: sco('windows-registry-key', { key: 'HKEY_LOCAL_MACHINE\\System\\Foo' }), required: [] },
  { obj: sco('x509-certificate', { serial_number: '36:f7:d4:32:f4:ab:70:ea:d3:ce:98:6e:ea:99:93:49:32:0a:b7:06' }), required: [] },
  {
    obj: {
      type: 'marking-definition',
      spec_version: '2.1',
      id: 'marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da',
      created: '2017-01-20T00:00:00.000Z',
      definition_type: 'tlp',
      name: 'TLP:GREEN',
      definition: { tlp: 'green' },
    },
    required: ['created'],
  },
  {
    obj: sdo('language-content', { object_ref: idOf('campaign'), contents: { de: { name: 'Bank Angriff' } } }),
    required: ['object_ref', 'contents'],
  },
  {
    obj: sdo('extension-definition', {
      created_by_ref: idOf('identity'),
      name: 'ext',
      schema: 'https://example.com/schema.json',
      version: '1.0',
      extension_types: ['property-extension'],
    }),
    required: ['created_by_ref', 'name', 'schema', 'version', 'extension_types'],
  },
];

const baseOf = (type: string): Obj => {
  const m = MINIMAL.find((x) => x.obj.type === type);
  assert.ok(m, `no minimal object for ${type}`);
  return structuredClone(m.obj);
};

/** issues of `obj` must include one for `property` whose message matches `re` */
function expectIssue(obj: unknown, property: string, re: RegExp, opts?: Parameters<typeof validateObject>[2]): ValidationIssue[] {
  const issues = validateObject(obj, 3, opts);
  const hit = issues.find((i) => i.property === property && re.test(i.message));
  assert.ok(hit, `expected an issue on "${property}" matching ${re}, got ${JSON.stringify(issues, null, 1)}`);
  assert.equal(hit.index, 3);
  return issues;
}

const expectValid = (obj: unknown, opts?: Parameters<typeof validateObject>[2]): void => {
  assert.deepEqual(validateObject(obj, 0, opts), []);
};

describe('stix: fixtures and minimal objects', () => {
  for (const name of ['indicator', 'malware', 'relationship', 'ipv4-addr']) {
    it(`fixture ${name} is valid`, () => expectValid(fixture(name)));
  }
  for (const { obj, required } of MINIMAL) {
    it(`minimal ${String(obj.type)} is valid; each required property is reported when missing`, () => {
      expectValid(obj);
      const common = isSco(String(obj.type)) ? ['type', 'id'] : obj.type === 'marking-definition' ? ['type', 'id', 'spec_version'] : ['type', 'id', 'spec_version', 'created', 'modified'];
      for (const prop of [...common, ...required]) {
        const copy = structuredClone(obj);
        delete copy[prop];
        expectIssue(copy, prop, /is required/);
      }
    });
  }
});

describe('stix: common properties', () => {
  it('type: required, a string, well-formed, not a bundle', () => {
    expectIssue({ id: idOf('indicator') }, 'type', /^is required$/);
    expectIssue({ type: 5, id: idOf('indicator') }, 'type', /must be a string, got a number/);
    expectIssue({ type: 'Indicator', id: idOf('indicator') }, 'type', /"Indicator" is not a valid STIX type/);
    expectIssue({ type: 'ab', id: 'ab--' + uuid() }, 'type', /not a valid STIX type/);
    expectIssue({ type: 'a--b', id: idOf('a--b') }, 'type', /not a valid STIX type/);
    expectIssue({ type: 'x'.repeat(251), id: idOf('x') }, 'type', /not a valid STIX type/);
    expectIssue({ type: 'bundle', id: idOf('bundle'), objects: [] }, 'type', /bundle cannot appear inside a payload/);
  });

  it('id: "<type>--<UUID>" whose prefix is the type; upper-case hex accepted (as in the OASIS examples)', () => {
    expectIssue({ ...baseOf('campaign'), id: 'campaign--1234' }, 'id', /must be a STIX identifier "<type>--<UUID>"/);
    expectIssue({ ...baseOf('campaign'), id: 'campaign--0c7b5b88-8ff7-4a4d-1a4d-feb398cd0061' }, 'id', /STIX identifier/); // bad variant
    expectIssue({ ...baseOf('campaign'), id: 42 }, 'id', /must be a string/);
    expectIssue({ ...baseOf('campaign'), id: idOf('indicator') }, 'id', /must start with "campaign--" \(the object's type\), got "indicator--"/);
    expectValid({ ...baseOf('campaign'), id: 'campaign--0C7B5B88-8FF7-4A4D-AA9D-FEB398CD0061' });
    expectValid({ ...baseOf('ipv4-addr'), id: 'ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd' }); // UUIDv5 (SCO ids)
  });

  it('spec_version: 2.1 accepted; absent on SDO/SRO/marking means 2.0 and is rejected unless allowed', () => {
    const c = baseOf('campaign');
    delete c.spec_version;
    expectIssue(c, 'spec_version', /is required \(a campaign without spec_version is STIX 2\.0; accepted: "2\.1"/);
    expectValid(c, { allowSpecVersions: ['2.0'] });
    assert.equal(specVersionOf(c), '2.0');
    expectIssue({ ...baseOf('campaign'), spec_version: '2.2' }, 'spec_version', /is "2\.2"; accepted: "2\.1" \(option allowSpecVersions widens this\)/);
    expectIssue({ ...baseOf('campaign'), spec_version: 2.1 }, 'spec_version', /must be a string, got a number/);
    expectValid({ ...baseOf('campaign'), spec_version: '2.0' }, { allowSpecVersions: ['2.0'] });
  });

  it('spec_version: an SCO without it is 2.1 and valid; with an explicit other version it is rejected', () => {
    const ip = fixture('ipv4-addr');
    assert.equal(ip.spec_version, undefined);
    assert.equal(specVersionOf(ip), '2.1');
    expectValid(ip);
    expectIssue({ ...ip, spec_version: '2.0' }, 'spec_version', /is "2\.0"/);
  });

  it('a 2.0 object allowed by option gets the common checks only (2.0 type rules differ)', () => {
    const v20 = { type: 'indicator', id: idOf('indicator'), created: T, modified: T, labels: ['malicious-activity'], pattern: '[x:y = 1]', valid_from: T };
    expectValid(v20, { allowSpecVersions: ['2.0'] });
    expectIssue({ ...v20, modified: 'bad' }, 'modified', /RFC 3339/, { allowSpecVersions: ['2.0'] });
  });

  it('created/modified: RFC 3339 UTC "Z" timestamps, real dates, modified >= created', () => {
    expectIssue({ ...baseOf('tool'), created: '2016-05-12T08:17:27+02:00' }, 'created', /must be an RFC 3339 timestamp in UTC/);
    expectIssue({ ...baseOf('tool'), created: '2016-02-30T08:17:27Z' }, 'created', /RFC 3339/);
    expectIssue({ ...baseOf('tool'), modified: '12 May 2016' }, 'modified', /RFC 3339/);
    expectIssue({ ...baseOf('tool'), modified: 1463041047 }, 'modified', /must be a string/);
    expectIssue({ ...baseOf('tool'), created: T2, modified: T }, 'modified', /must be the same as or later than "created"/);
    expectValid({ ...baseOf('tool'), created: '2016-05-12T08:17:27Z', modified: '2016-05-12T08:17:27.000001Z' });
    expectValid({ ...baseOf('tool'), created: '2016-05-12T08:17:27.5Z', modified: '2016-05-12T08:17:27.500Z' });
  });

  it('created_by_ref is an identity id; object_marking_refs are marking-definition ids', () => {
    expectIssue({ ...baseOf('tool'), created_by_ref: idOf('malware') }, 'created_by_ref', /must be the id of an identity/);
    expectIssue({ ...baseOf('tool'), object_marking_refs: [idOf('identity')] }, 'object_marking_refs[0]', /marking-definition/);
    expectIssue({ ...baseOf('tool'), object_marking_refs: [] }, 'object_marking_refs', /must not be an empty list/);
    expectIssue({ ...baseOf('tool'), object_marking_refs: 'marking-definition--x' }, 'object_marking_refs', /must be a list/);
    expectValid({ ...baseOf('tool'), created_by_ref: idOf('identity'), object_marking_refs: ['marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9'] });
  });

  it('labels, confidence, revoked, lang', () => {
    expectIssue({ ...baseOf('tool'), labels: ['a', 3] }, 'labels[1]', /must be a string/);
    expectIssue({ ...baseOf('tool'), labels: [] }, 'labels', /empty list/);
    expectIssue({ ...baseOf('tool'), confidence: 101 }, 'confidence', /must be <= 100/);
    expectIssue({ ...baseOf('tool'), confidence: 5.5 }, 'confidence', /must be an integer/);
    expectIssue({ ...baseOf('tool'), revoked: 'no' }, 'revoked', /must be a boolean/);
    expectIssue({ ...baseOf('tool'), lang: 1 }, 'lang', /must be a string/);
  });

  it('external_references: source_name plus one of description/url/external_id; hashes shape', () => {
    expectIssue({ ...baseOf('tool'), external_references: [{ url: 'https://x' }] }, 'external_references[0].source_name', /is required/);
    expectIssue({ ...baseOf('tool'), external_references: [{ source_name: 'capec' }] }, 'external_references[0]', /needs at least one of description, url or external_id/);
    expectIssue(
      { ...baseOf('tool'), external_references: [{ source_name: 'x', url: 'https://x', hashes: { 'SHA-256': 'abc' } }] },
      'external_references[0].hashes.SHA-256',
      /must be 64 hex digits/,
    );
    expectValid({ ...baseOf('tool'), external_references: [{ source_name: 'capec', external_id: 'CAPEC-163' }, { source_name: 'x', description: 'd' }] });
  });

  it('granular_markings: selectors and exactly one of marking_ref / lang', () => {
    const mref = 'marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9';
    expectIssue({ ...baseOf('tool'), granular_markings: [{ selectors: ['name'] }] }, 'granular_markings[0]', /exactly one of marking_ref or lang/);
    expectIssue({ ...baseOf('tool'), granular_markings: [{ selectors: ['name'], lang: 'en', marking_ref: mref }] }, 'granular_markings[0]', /exactly one/);
    expectIssue({ ...baseOf('tool'), granular_markings: [{ selectors: [], marking_ref: mref }] }, 'granular_markings[0].selectors', /empty list/);
    expectIssue({ ...baseOf('tool'), granular_markings: [{ marking_ref: mref }] }, 'granular_markings[0].selectors', /is required/);
    expectValid({ ...baseOf('tool'), granular_markings: [{ selectors: ['name'], marking_ref: mref }, { selectors: ['description'], lang: 'de' }] });
  });

  it('extensions: extension-definition ids or "*-ext" names, not empty', () => {
    const extId = `extension-definition--${uuid()}`;
    expectValid({ ...baseOf('tool'), extensions: { [extId]: { extension_type: 'property-extension', rank: 5 } } });
    expectValid({ ...baseOf('file'), extensions: { 'ntfs-ext': { sid: '1' } } });
    expectIssue({ ...baseOf('tool'), extensions: { foo: { a: 1 } } }, 'extensions.foo', /is not allowed: keys must be an extension-definition id/);
    expectIssue({ ...baseOf('tool'), extensions: {} }, 'extensions', /must not be an empty object/);
    expectIssue({ ...baseOf('tool'), extensions: { [extId]: { extension_type: 'new-thing' } } }, `extensions.${extId}.extension_type`, /must be one of/);
  });

  it('a non-object is reported as such', () => {
    for (const v of [null, 5, 'text', [1], true]) expectIssue(v, '', /must be a JSON object/);
  });
});

describe('stix: type-specific rules', () => {
  it('malware: name required when is_family is true; is_family must be boolean', () => {
    expectIssue({ ...baseOf('malware'), is_family: true }, 'name', /is required when is_family is true/);
    expectIssue({ ...baseOf('malware'), is_family: 'yes' }, 'is_family', /must be a boolean/);
    expectValid({ ...baseOf('malware'), is_family: true, name: 'Poison Ivy' });
  });
  it('indicator: valid_until later than valid_from; pattern not empty', () => {
    expectIssue({ ...baseOf('indicator'), valid_until: T }, 'valid_until', /must be later than "valid_from"/);
    expectIssue({ ...baseOf('indicator'), pattern: '' }, 'pattern', /must not be empty/);
    expectValid({ ...baseOf('indicator'), valid_until: T2 });
  });
  it('relationship: stop_time later than start_time; refs are identifiers', () => {
    expectIssue({ ...baseOf('relationship'), start_time: T2, stop_time: T }, 'stop_time', /later than "start_time"/);
    expectIssue({ ...baseOf('relationship'), source_ref: 'nope' }, 'source_ref', /STIX identifier/);
    expectIssue({ ...baseOf('relationship'), relationship_type: 'Indicates' }, 'relationship_type', /a-z, 0-9 and hyphens/);
  });
  it('sighting: last_seen >= first_seen, count range, where_sighted_refs types', () => {
    expectIssue({ ...baseOf('sighting'), first_seen: T2, last_seen: T }, 'last_seen', /later than "first_seen"/);
    expectIssue({ ...baseOf('sighting'), count: -1 }, 'count', /must be >= 0/);
    expectIssue({ ...baseOf('sighting'), where_sighted_refs: [idOf('malware')] }, 'where_sighted_refs[0]', /identity, location/);
  });
  it('campaign/intrusion-set/threat-actor/infrastructure: last_seen >= first_seen', () => {
    for (const t of ['campaign', 'intrusion-set', 'threat-actor', 'infrastructure', 'malware']) {
      expectIssue({ ...baseOf(t), first_seen: T2, last_seen: T }, 'last_seen', /later than "first_seen"/);
    }
  });
  it('observed-data: object_refs xor objects, number_observed range, last >= first', () => {
    const od = baseOf('observed-data');
    delete od.object_refs;
    expectIssue(od, 'object_refs', /is required \(or the deprecated "objects"\)/);
    expectIssue({ ...baseOf('observed-data'), objects: { 0: { type: 'ipv4-addr', value: '1.2.3.4' } } }, 'object_refs', /must not be present together with "objects"/);
    expectIssue({ ...baseOf('observed-data'), number_observed: 0 }, 'number_observed', /must be >= 1/);
    expectIssue({ ...baseOf('observed-data'), last_observed: '2000-01-01T00:00:00Z' }, 'last_observed', /later than "first_observed"/);
  });
  it('location: region, country or coordinates; coordinates in pairs and in range', () => {
    const loc = baseOf('location');
    delete loc.country;
    expectIssue(loc, 'region', /is required unless "country" or "latitude"\+"longitude"/);
    expectIssue({ ...loc, latitude: 48.8 }, 'longitude', /is required with the other coordinate/);
    expectIssue({ ...loc, latitude: 91, longitude: 2 }, 'latitude', /must be <= 90/);
    expectIssue({ ...loc, region: 'europe', precision: 10 }, 'precision', /requires latitude and longitude/);
    expectValid({ ...loc, latitude: 48.8566, longitude: 2.3522, precision: 1000 });
  });
  it('malware-analysis: result or analysis_sco_refs', () => {
    const ma = baseOf('malware-analysis');
    delete ma.result;
    expectIssue(ma, 'result', /at least one of result, analysis_sco_refs/);
    expectValid({ ...ma, analysis_sco_refs: [idOf('file')] });
  });
  it('opinion, report, grouping, note: enums and non-empty object_refs', () => {
    expectIssue({ ...baseOf('opinion'), opinion: 'maybe' }, 'opinion', /must be one of: "strongly-disagree"/);
    expectIssue({ ...baseOf('report'), object_refs: [] }, 'object_refs', /empty list/);
    expectIssue({ ...baseOf('grouping'), object_refs: ['x'] }, 'object_refs[0]', /STIX identifier/);
    expectIssue({ ...baseOf('report'), published: 'today' }, 'published', /RFC 3339/);
  });
  it('SCO values: ipv4/ipv6 addresses or CIDR, URL, MAC, domain not empty', () => {
    expectValid({ ...baseOf('ipv4-addr'), value: '10.0.0.0/8' });
    expectIssue({ ...baseOf('ipv4-addr'), value: '999.1.1.1' }, 'value', /IPv4 address or CIDR/);
    expectIssue({ ...baseOf('ipv4-addr'), value: '10.0.0.0/33' }, 'value', /IPv4/);
    expectIssue({ ...baseOf('ipv4-addr'), value: '2001:db8::1' }, 'value', /IPv4/);
    expectValid({ ...baseOf('ipv6-addr'), value: '2001:db8::1' });
    expectIssue({ ...baseOf('ipv6-addr'), value: '2001:db8::/129' }, 'value', /IPv6/);
    expectIssue({ ...baseOf('url'), value: 'not a url' }, 'value', /must be a URL/);
    expectIssue({ ...baseOf('mac-addr'), value: 'D2:FB:49:24:37:18' }, 'value', /lower-case colon-separated/);
    expectIssue({ ...baseOf('domain-name'), value: '' }, 'value', /must not be empty/);
    expectIssue({ ...baseOf('autonomous-system'), number: 'AS1' }, 'number', /must be an integer/);
  });
  it('artifact, file, network-traffic, email-message co-constraints', () => {
    expectIssue({ ...baseOf('artifact'), url: 'https://x/y' }, 'url', /must not be present together with "payload_bin"/);
    const art = baseOf('artifact');
    delete art.payload_bin;
    expectIssue(art, 'payload_bin', /at least one of payload_bin, url/);
    expectIssue({ ...baseOf('artifact'), decryption_key: 'k' }, 'decryption_key', /requires "encryption_algorithm"/);
    const f = baseOf('file');
    delete f.name;
    expectIssue(f, 'hashes', /at least one of hashes, name/);
    expectValid({ ...f, hashes: { MD5: '3773a88f65a5e780c8dff9cdc3a056f3' } });
    const nt = baseOf('network-traffic');
    delete nt.src_ref;
    expectIssue(nt, 'src_ref', /at least one of src_ref, dst_ref/);
    expectIssue({ ...baseOf('network-traffic'), is_active: true, end: T }, 'end', /must not be present when is_active is true/);
    expectIssue({ ...baseOf('network-traffic'), dst_port: 70000 }, 'dst_port', /<= 65535/);
    expectIssue({ ...baseOf('email-message'), is_multipart: true }, 'body', /must not be present when is_multipart is true/);
  });
  it('process/user-account/windows-registry-key/x509-certificate need a property of their own', () => {
    for (const t of ['process', 'user-account', 'windows-registry-key', 'x509-certificate']) {
      expectIssue({ type: t, id: idOf(t), defanged: true }, '', new RegExp(`a ${t} needs at least one of its own properties`));
    }
    expectValid({ type: 'process', id: idOf('process'), extensions: { 'windows-process-ext': { aslr_enabled: true } } });
  });
  it('marking-definition: definition_type + definition (tlp/statement) or an extension', () => {
    expectIssue({ ...baseOf('marking-definition'), definition: { tlp: 'pink' } }, 'definition.tlp', /must be one of: white, green, amber, red/);
    expectIssue(
      { ...baseOf('marking-definition'), id: idOf('marking-definition'), definition_type: 'statement', definition: { text: 'x' } },
      'definition.statement',
      /is required/,
    );
    const md = baseOf('marking-definition');
    delete md.definition;
    expectIssue(md, 'definition', /is required with the other/);
    delete md.definition_type;
    expectIssue(md, 'definition_type', /unless the marking is defined by an extension/);
    expectValid({ ...md, extensions: { [`extension-definition--${uuid()}`]: { extension_type: 'property-extension', tlp_2_0: 'clear' } } });
  });
  it('extension-definition: extension_types values; extension_properties only for toplevel-property-extension', () => {
    expectIssue({ ...baseOf('extension-definition'), extension_types: ['bogus'] }, 'extension_types[0]', /must be one of/);
    expectIssue({ ...baseOf('extension-definition'), extension_properties: ['x_a'] }, 'extension_properties', /only allowed with extension_types "toplevel-property-extension"/);
    expectValid({ ...baseOf('extension-definition'), extension_types: ['toplevel-property-extension'], extension_properties: ['x_a'] });
  });
  it('language-content: contents is a non-empty dictionary', () => {
    expectIssue({ ...baseOf('language-content'), contents: {} }, 'contents', /must not be an empty object/);
  });
});

describe('stix: custom objects', () => {
  it('SDO-like custom types (with timestamps) get the common SDO checks', () => {
    expectValid({ type: 'x-acme-widget', spec_version: '2.1', id: idOf('x-acme-widget'), created: T, modified: T, x_colour: 'red' });
    expectIssue({ type: 'x-acme-widget', spec_version: '2.1', id: idOf('x-acme-widget'), created: T }, 'modified', /is required/);
    expectIssue({ type: 'x-acme-widget', id: idOf('x-acme-widget'), created: T, modified: T }, 'spec_version', /is required/);
    expectIssue({ type: 'x-acme-widget', spec_version: '2.1', id: idOf('tool'), created: T, modified: T }, 'id', /must start with "x-acme-widget--"/);
  });
  it('SCO-like custom types (no timestamps, or an extension declaring new-sco) need no created/modified', () => {
    expectValid({ type: 'x-acme-thing', id: idOf('x-acme-thing'), value: 1 });
    const ext = { [`extension-definition--${uuid()}`]: { extension_type: 'new-sco' } };
    expectValid({ type: 'acme-thing', id: idOf('acme-thing'), created: T, extensions: ext });
    assert.equal(specVersionOf({ type: 'acme-thing', extensions: ext }), '2.1');
    assert.equal(specVersionOf({ type: 'acme-thing', created: T }), '2.0');
  });
});

describe('stix: helpers', () => {
  it('stixTypeOf', () => {
    assert.equal(stixTypeOf('indicator--33fe3b22-0201-47cf-85d0-97c02164528d'), 'indicator');
    assert.equal(stixTypeOf('x-acme-widget--33fe3b22-0201-47cf-85d0-97c02164528d'), 'x-acme-widget');
    assert.throws(
      () => stixTypeOf('indicator-33fe3b22'),
      (err: unknown) => err instanceof StixValidationError && err.code === 'STIX_INVALID' && /"indicator-33fe3b22" is not a STIX identifier/.test(err.message),
    );
  });
  it('isSco knows the 18 STIX 2.1 SCO types only', () => {
    const scos = MINIMAL.map((m) => String(m.obj.type)).filter(isSco);
    assert.equal(scos.length, 18);
    for (const t of ['indicator', 'relationship', 'marking-definition', 'x-acme-thing', 'bundle']) assert.equal(isSco(t), false, t);
  });
  it('formatIssue', () => {
    assert.equal(formatIssue({ index: 2, id: 'indicator--x', property: 'pattern', message: 'is required' }), 'object #2 (indicator--x): property "pattern" is required');
    assert.equal(formatIssue({ index: 0, type: 'tool', property: '', message: 'oops' }), 'object #0 (type tool): oops');
    assert.equal(formatIssue({ index: -1, property: 'id', message: 'bad' }), 'payload: property "id" bad');
    assert.equal(formatIssue({ index: -1, property: '', message: 'payload is not JSON: x' }), 'payload is not JSON: x');
  });
});

describe('stix: extractObjects', () => {
  const ind = fixture('indicator');
  const mal = fixture('malware');
  const rel = fixture('relationship');
  const ip = fixture('ipv4-addr');
  const all = [ind, mal, rel, ip];
  const bundle = { type: 'bundle', id: 'bundle--44af6c39-c09b-49c5-9de2-394224b04982', objects: all };

  const rejects = (payload: unknown, re: RegExp, opts?: Parameters<typeof extractObjects>[1]): StixValidationError => {
    let caught: unknown;
    try {
      extractObjects(payload, opts);
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof StixValidationError, `expected StixValidationError, got ${String(caught)}`);
    assert.equal(caught.code, 'STIX_INVALID');
    assert.match(caught.message, re);
    return caught;
  };

  it('accepts a single object, an array, a bundle and a TAXII envelope (objects in order)', () => {
    assert.deepEqual(extractObjects(ind), [ind]);
    assert.deepEqual(extractObjects(all), all);
    assert.deepEqual(extractObjects(bundle), all);
    assert.deepEqual(extractObjects({ objects: all, more: true, next: 'abc' }), all);
    assert.deepEqual(extractObjects({ objects: all }), all);
  });

  it('accepts JSON text and UTF-8 bytes of each form', () => {
    for (const p of [ind, all, bundle, { objects: all, more: false }]) {
      const text = JSON.stringify(p, null, 2);
      const want = Array.isArray(p) ? p : p === ind ? [ind] : all;
      assert.deepEqual(extractObjects(text), want);
      assert.deepEqual(extractObjects(Buffer.from(text)), want);
      assert.deepEqual(extractObjects(new TextEncoder().encode(text)), want);
    }
    assert.deepEqual(extractObjects('\ufeff' + JSON.stringify(ind)), [ind], 'a byte order mark is ignored');
  });

  it('one bad object among good ones rejects the whole payload, naming object and property', () => {
    const bad = { ...structuredClone(ind), id: 'indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f' } as Obj;
    delete bad.pattern;
    const err = rejects({ ...bundle, objects: [mal, rel, bad, ip] }, /^invalid STIX: object #2 \(indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f\): property "pattern" is required$/);
    assert.deepEqual(err.issues, [
      { index: 2, id: 'indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f', type: 'indicator', property: 'pattern', message: 'is required' },
    ]);
  });

  it('lists every issue of every bad object in one error', () => {
    const err = rejects(
      [ind, { type: 'malware', spec_version: '2.1', id: idOf('malware'), created: T, modified: T }, 7, { ...ip, value: 'x' }],
      /^invalid STIX \(3 issues\): object #1 \(malware--[^)]+\): property "is_family" is required; object #2: must be a JSON object, got a number; object #3 \(ipv4-addr--[^)]+\): property "value" must be an IPv4 address or CIDR block$/,
    );
    assert.deepEqual(err.issues.map((i) => i.index), [1, 2, 3]);
  });

  it('caps the message at 20 issues but keeps them all in .issues', () => {
    // each lacks spec_version, created and modified: 90 issues
    const many = Array.from({ length: 30 }, () => ({ type: 'tool', id: idOf('tool') }));
    const err = rejects(many, /^invalid STIX \(90 issues\): .*\.\.\. and 70 more$/);
    assert.equal(err.issues.length, 90);
    assert.equal(err.message.match(/object #\d+ /g)?.length, 20);
  });

  it('rejects text that is not JSON, empty text, null, undefined, numbers and booleans', () => {
    rejects('{"type": "indicator",', /^invalid STIX: payload is not JSON: /);
    rejects('not json at all', /payload is not JSON/);
    rejects('', /payload is empty \(no JSON text\)/);
    rejects('   \n', /payload is empty/);
    rejects(null, /payload is empty \(null\)/);
    rejects(undefined, /payload is empty \(undefined\)/);
    rejects(42, /payload must be a STIX object, a list of objects, a bundle or a TAXII envelope, got a number/);
    rejects(true, /got a boolean/);
    rejects('42', /got a number/);
    rejects('"indicator"', /got a string/);
  });

  it('rejects empty payloads unless allowEmpty', () => {
    rejects([], /payload contains no objects \(empty array\)/);
    rejects({ type: 'bundle', id: 'bundle--44af6c39-c09b-49c5-9de2-394224b04982', objects: [] }, /no objects \(empty bundle\)/);
    rejects({ type: 'bundle', id: 'bundle--44af6c39-c09b-49c5-9de2-394224b04982' }, /no objects \(empty bundle\)/);
    rejects({}, /no objects \(empty TAXII envelope\)/);
    rejects({ more: false }, /empty TAXII envelope/);
    assert.deepEqual(extractObjects({}, { allowEmpty: true }), []);
    assert.deepEqual(extractObjects('[]', { allowEmpty: true }), []);
  });

  it('checks the bundle and envelope themselves', () => {
    rejects({ type: 'bundle', id: 'indicator--44af6c39-c09b-49c5-9de2-394224b04982', objects: all }, /payload: property "id" must be "bundle--<UUID>"/);
    rejects({ type: 'bundle', objects: all }, /property "id" must be "bundle--<UUID>", got undefined/);
    rejects({ type: 'bundle', id: 'bundle--44af6c39-c09b-49c5-9de2-394224b04982', objects: {} }, /property "objects" must be a list, got an object/);
    rejects({ objects: all, more: 'yes' }, /payload: property "more" must be a boolean/);
    rejects({ objects: all, next: 5 }, /payload: property "next" must be a string/);
    rejects({ objects: 'x' }, /property "objects" must be a list/);
    rejects([bundle], /object #0 \(bundle--[^)]+\): property "type" a bundle cannot appear inside a payload/);
  });

  it('an object without type is a bad single object, not an envelope', () => {
    rejects({ id: idOf('indicator'), name: 'x' }, /object #0 \(indicator--[^)]+\): property "type" is required/);
  });

  it('rejects duplicate (id, version) pairs, comparing versions as instants', () => {
    rejects([ind, mal, ind], /object #2 \(indicator--33fe3b22-0201-47cf-85d0-97c02164528d\): property "id" duplicates object #0 \(same id and version 2014-05-08T09:00:00Z\)/);
    rejects([ind, { ...ind, modified: '2014-05-08T09:00:00Z' }], /duplicates object #0/);
    rejects([ip, ip], /duplicates object #0 \(same id and version \(unversioned\)\)/);
    const newer = { ...ind, modified: '2014-06-01T00:00:00.000Z' };
    assert.deepEqual(extractObjects([ind, newer]), [ind, newer]);
  });

  it('passes allowSpecVersions through', () => {
    const v20 = { type: 'campaign', id: idOf('campaign'), created: T, modified: T, name: 'c' };
    rejects([v20], /property "spec_version" is required/);
    assert.deepEqual(extractObjects([v20], { allowSpecVersions: ['2.0'] }), [v20]);
  });
});

// -------------------------------------------------------------------------------------------
// Differential test against the official OASIS STIX 2.1 JSON schemas and examples.

function sharedStixDir(): string | undefined {
  const candidates = [
    process.env.SETS_STIX_DATA,
    process.env.SETS_SHARED_DIR ? path.join(process.env.SETS_SHARED_DIR, 'stix') : undefined,
    path.resolve(__dirname, '../../..', '../shared/stix'), // <repo>/dist/test/unit -> <repo>/../shared/stix
    path.resolve(process.cwd(), '../shared/stix'), // tests run from the repo root with dist elsewhere
  ];
  return candidates.find((c): c is string => !!c && fs.existsSync(path.join(c, 'schemas')) && fs.existsSync(path.join(c, 'examples')));
}

const stixDir = sharedStixDir();
if (!stixDir) {
  console.log('stix.test: OASIS STIX schemas/examples not found (../shared/stix, SETS_SHARED_DIR, SETS_STIX_DATA): differential tests NOT run');
} else {
  describe(`stix: differential against the OASIS STIX 2.1 schemas and examples (${stixDir})`, () => {
    type Schema = Record<string, unknown>;
    // unicodeRegExp: false because some OASIS patterns are not valid with the RegExp 'u' flag
    const oasis = new Ajv2020({ strict: false, allErrors: true, logger: false, unicodeRegExp: false });
    addFormats(oasis);
    const schemaIdByType = new Map<string, string>();
    const walk = (dir: string): string[] =>
      fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.json') ? [path.join(dir, e.name)] : []));
    for (const file of walk(path.join(stixDir, 'schemas'))) {
      const schema = JSON.parse(fs.readFileSync(file, 'utf8')) as Schema;
      oasis.addSchema(schema);
      const name = path.basename(file, '.json');
      if (!/common/.test(path.dirname(file)) || ['marking-definition', 'language-content', 'extension-definition'].includes(name)) {
        schemaIdByType.set(name, String(schema.$id));
      }
    }
    const oasisErrors = (obj: Obj, type = String(obj.type)): string | null => {
      const id = schemaIdByType.get(type);
      assert.ok(id, `no OASIS schema for ${type}`);
      const validate = oasis.getSchema(id);
      assert.ok(validate);
      return validate(obj) ? null : oasis.errorsText(validate.errors);
    };
    /** `required` lists of a schema, following allOf and $ref (not anyOf/oneOf) */
    const requiredOf = (schemaId: string): string[] => {
      const out = new Set<string>();
      const visit = (s: unknown, base: string): void => {
        if (!s || typeof s !== 'object') return;
        const o = s as Schema;
        if (typeof o.$ref === 'string') {
          const target = new URL(o.$ref, base).href;
          visit(oasis.getSchema(target)?.schema, target);
        }
        if (Array.isArray(o.required)) for (const r of o.required) out.add(String(r));
        if (Array.isArray(o.allOf)) for (const x of o.allOf) visit(x, base);
      };
      visit(oasis.getSchema(schemaId)?.schema, schemaId);
      return [...out];
    };

    const examplesDir = path.join(stixDir, 'examples');
    const exampleFiles = walk(examplesDir).sort();
    // one example object of each type, as the mutation seeds (read here so that test order does not matter)
    const firstOfType = new Map<string, Obj>();
    for (const file of exampleFiles) {
      const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as Obj;
      const objects = (doc.type === 'bundle' ? doc.objects : [doc]) as Obj[];
      for (const obj of objects) if (!firstOfType.has(String(obj.type))) firstOfType.set(String(obj.type), obj);
    }

    it('found the example files', () => assert.ok(exampleFiles.length >= 5, `only ${exampleFiles.length} example files`));

    for (const file of exampleFiles) {
      const rel = path.relative(examplesDir, file);
      it(`${rel}: every object is accepted by our validator and by the OASIS schemas`, () => {
        const text = fs.readFileSync(file, 'utf8');
        const objects = extractObjects(text) as unknown as Obj[];
        assert.ok(objects.length > 0);
        for (const obj of objects) {
          assert.deepEqual(validateObject(obj), [], `${String(obj.id)}`);
          assert.equal(oasisErrors(obj), null, `${String(obj.id)}`);
        }
      });
    }

    it('mutated copies that the OASIS schemas reject are rejected by us too', () => {
      assert.ok(firstOfType.size >= 10, `only ${firstOfType.size} object types in the examples`);
      let checked = 0;
      for (const [type, original] of firstOfType) {
        const mutants: Array<[string, Obj]> = [];
        for (const prop of requiredOf(schemaIdByType.get(type) as string)) {
          if (!(prop in original)) continue;
          const m = structuredClone(original);
          delete m[prop];
          mutants.push([`without ${prop}`, m]);
        }
        const otherType = type === 'tool' ? 'malware' : 'tool';
        mutants.push(['id of another type', { ...structuredClone(original), id: String(original.id).replace(/^[a-z0-9-]+--/, `${otherType}--`) }]);
        mutants.push(['id not a UUID', { ...structuredClone(original), id: `${type}--1234` }]);
        if ('created' in original) mutants.push(['created not a timestamp', { ...structuredClone(original), created: '12 May 2016' }]);
        if ('modified' in original) mutants.push(['modified without Z', { ...structuredClone(original), modified: '2016-05-12T08:17:27.000' }]);
        if ('spec_version' in original) mutants.push(['spec_version 9.9', { ...structuredClone(original), spec_version: '9.9' }]);
        mutants.push(['labels empty', { ...structuredClone(original), labels: [] }]);
        for (const [what, m] of mutants) {
          const theirs = oasisErrors(m, type);
          if (theirs === null) continue; // the OASIS schema does not check this one
          checked++;
          assert.notDeepEqual(validateObject(m), [], `${type} ${what}: OASIS rejects (${theirs}) but we accept`);
        }
      }
      assert.ok(checked >= 100, `only ${checked} mutants compared`); // 174 with the OASIS commit 3bf9e69 examples
    });
  });
}
