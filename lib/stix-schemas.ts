/**
 * JSON Schemas (draft-07, compiled by ajv in lib/stix.ts) for STIX 2.1 objects, written for this
 * project from the STIX 2.1 specification. They check presence and shape of properties; the
 * rules a JSON Schema cannot say clearly (id prefix = type, modified >= created, "at least one of",
 * spec_version policy, ...) are checked in code in lib/stix.ts.
 *
 * Custom properties are always allowed (no additionalProperties: false on objects).
 * `x-msg` is an annotation keyword: the human message lib/stix.ts reports when a pattern or
 * format below fails.
 */

export type JsonSchema = Record<string, unknown>;

export const UUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}';
/** type names: lower-case ASCII letters, digits and single hyphens, starting with a letter, 3-250 chars */
export const TYPE_NAME = '[a-z][a-z0-9]*(?:-[a-z0-9]+)*';
export const IDENTIFIER_RE = new RegExp(`^(${TYPE_NAME})--(${UUID})$`);
export const TYPE_RE = new RegExp(`^${TYPE_NAME}$`);

const str: JsonSchema = { type: 'string' };
const bool: JsonSchema = { type: 'boolean' };
const int: JsonSchema = { type: 'integer' };
const nonEmptyStr: JsonSchema = { type: 'string', minLength: 1 };
const list = (items: JsonSchema): JsonSchema => ({ type: 'array', minItems: 1, items });
const strList = list(str);
const ts: JsonSchema = {
  type: 'string',
  format: 'stix-timestamp',
  'x-msg': 'must be an RFC 3339 timestamp in UTC, "YYYY-MM-DDTHH:MM:SS[.s+]Z"',
};
const intRange = (minimum: number, maximum: number): JsonSchema => ({ type: 'integer', minimum, maximum });

/** reference to an object of one of `types` (any type when empty) */
export function ref(...types: string[]): JsonSchema {
  if (types.length === 0) {
    return { type: 'string', pattern: `^${TYPE_NAME}--${UUID}$`, 'x-msg': 'must be a STIX identifier "<type>--<UUID>"' };
  }
  const what = types.length === 1 ? `${/^[aeiou]/.test(types[0]) ? 'an' : 'a'} ${types[0]}` : `one of ${types.join(', ')}`;
  return {
    type: 'string',
    pattern: `^(?:${types.join('|')})--${UUID}$`,
    'x-msg': `must be the id of ${what} ("${types[0]}--<UUID>")`,
  };
}
const anyRef = ref();

const hashes: JsonSchema = {
  type: 'object',
  minProperties: 1,
  properties: {
    MD5: { type: 'string', pattern: '^[a-fA-F0-9]{32}$', 'x-msg': 'must be 32 hex digits' },
    'SHA-1': { type: 'string', pattern: '^[a-fA-F0-9]{40}$', 'x-msg': 'must be 40 hex digits' },
    'SHA-256': { type: 'string', pattern: '^[a-fA-F0-9]{64}$', 'x-msg': 'must be 64 hex digits' },
    'SHA-512': { type: 'string', pattern: '^[a-fA-F0-9]{128}$', 'x-msg': 'must be 128 hex digits' },
    'SHA3-256': { type: 'string', pattern: '^[a-fA-F0-9]{64}$', 'x-msg': 'must be 64 hex digits' },
    'SHA3-512': { type: 'string', pattern: '^[a-fA-F0-9]{128}$', 'x-msg': 'must be 128 hex digits' },
  },
  additionalProperties: str,
};

const dictionary: JsonSchema = { type: 'object', minProperties: 1 };

export const externalReference: JsonSchema = {
  type: 'object',
  required: ['source_name'],
  properties: { source_name: nonEmptyStr, description: str, url: str, hashes, external_id: str },
};

export const granularMarking: JsonSchema = {
  type: 'object',
  required: ['selectors'],
  properties: {
    selectors: list(nonEmptyStr),
    lang: str,
    marking_ref: ref('marking-definition'),
  },
};

const killChainPhase: JsonSchema = {
  type: 'object',
  required: ['kill_chain_name', 'phase_name'],
  properties: { kill_chain_name: nonEmptyStr, phase_name: nonEmptyStr },
};

export const EXTENSION_TYPES = ['new-sdo', 'new-sco', 'new-sro', 'property-extension', 'toplevel-property-extension'];

const extensions: JsonSchema = {
  type: 'object',
  minProperties: 1,
  patternProperties: {
    [`^extension-definition--${UUID}$`]: {
      type: 'object',
      properties: { extension_type: { type: 'string', enum: EXTENSION_TYPES } },
    },
    [`^${TYPE_NAME}-ext$`]: { type: 'object', minProperties: 1 },
  },
  additionalProperties: false,
  'x-msg': 'keys must be an extension-definition id or a predefined "<name>-ext" extension',
};

/** properties every SDO and SRO may carry (STIX 2.1 §3.2) */
const commonProperties: Record<string, JsonSchema> = {
  type: { type: 'string', minLength: 3, maxLength: 250, pattern: `^${TYPE_NAME}$`, 'x-msg': 'must be 3-250 characters a-z, 0-9 and single hyphens, starting with a letter' },
  spec_version: str,
  id: anyRef,
  created_by_ref: ref('identity'),
  created: ts,
  modified: ts,
  revoked: bool,
  labels: strList,
  confidence: intRange(0, 100),
  lang: str,
  external_references: list(externalReference),
  object_marking_refs: list(ref('marking-definition')),
  granular_markings: list(granularMarking),
  extensions,
};

/** properties every SCO may carry (STIX 2.1 §6.1) */
const scoCommonProperties: Record<string, JsonSchema> = {
  type: commonProperties.type,
  spec_version: str,
  id: anyRef,
  object_marking_refs: commonProperties.object_marking_refs,
  granular_markings: commonProperties.granular_markings,
  defanged: bool,
  extensions,
};

export type ObjectKind = 'sdo' | 'sro' | 'sco' | 'meta';

export interface TypeSpec {
  kind: ObjectKind;
  required: string[];
  properties: Record<string, JsonSchema>;
}

const sdo = (required: string[], properties: Record<string, JsonSchema>): TypeSpec => ({ kind: 'sdo', required, properties });
const sco = (required: string[], properties: Record<string, JsonSchema>): TypeSpec => ({ kind: 'sco', required, properties });

const named = { name: nonEmptyStr, description: str };
const seen = { first_seen: ts, last_seen: ts };

/** type-specific properties of the STIX 2.1 objects (§4 SDOs, §5 SROs, §6 SCOs, §7 meta objects) */
export const TYPES: Record<string, TypeSpec> = {
  // --- SDOs
  'attack-pattern': sdo(['name'], { ...named, aliases: strList, kill_chain_phases: list(killChainPhase) }),
  campaign: sdo(['name'], { ...named, aliases: strList, ...seen, objective: str }),
  'course-of-action': sdo(['name'], { ...named }),
  grouping: sdo(['context', 'object_refs'], { name: str, description: str, context: nonEmptyStr, object_refs: list(anyRef) }),
  identity: sdo(['name'], {
    ...named,
    roles: strList,
    identity_class: str,
    sectors: strList,
    contact_information: str,
  }),
  incident: sdo(['name'], { ...named, kill_chain_phases: list(killChainPhase) }),
  indicator: sdo(['pattern', 'pattern_type', 'valid_from'], {
    name: str,
    description: str,
    indicator_types: strList,
    pattern: nonEmptyStr,
    pattern_type: nonEmptyStr,
    pattern_version: str,
    valid_from: ts,
    valid_until: ts,
    kill_chain_phases: list(killChainPhase),
  }),
  infrastructure: sdo(['name'], {
    ...named,
    infrastructure_types: strList,
    aliases: strList,
    kill_chain_phases: list(killChainPhase),
    ...seen,
  }),
  'intrusion-set': sdo(['name'], {
    ...named,
    aliases: strList,
    ...seen,
    goals: strList,
    resource_level: str,
    primary_motivation: str,
    secondary_motivations: strList,
  }),
  location: sdo([], {
    name: str,
    description: str,
    latitude: { type: 'number', minimum: -90, maximum: 90 },
    longitude: { type: 'number', minimum: -180, maximum: 180 },
    precision: { type: 'number', minimum: 0 },
    region: nonEmptyStr,
    country: nonEmptyStr,
    administrative_area: str,
    city: str,
    street_address: str,
    postal_code: str,
  }),
  malware: sdo(['is_family'], {
    name: nonEmptyStr,
    description: str,
    malware_types: strList,
    is_family: bool,
    aliases: strList,
    kill_chain_phases: list(killChainPhase),
    ...seen,
    operating_system_refs: list(ref('software')),
    architecture_execution_envs: strList,
    implementation_languages: strList,
    capabilities: strList,
    sample_refs: list(ref('file', 'artifact')),
  }),
  'malware-analysis': sdo(['product'], {
    product: nonEmptyStr,
    version: str,
    host_vm_ref: ref('software'),
    operating_system_ref: ref('software'),
    installed_software_refs: list(ref('software')),
    configuration_version: str,
    modules: strList,
    analysis_engine_version: str,
    analysis_definition_version: str,
    submitted: ts,
    analysis_started: ts,
    analysis_ended: ts,
    result_name: str,
    result: str,
    analysis_sco_refs: list(anyRef),
    sample_ref: anyRef,
  }),
  note: sdo(['content', 'object_refs'], { abstract: str, content: nonEmptyStr, authors: strList, object_refs: list(anyRef) }),
  'observed-data': sdo(['first_observed', 'last_observed', 'number_observed'], {
    first_observed: ts,
    last_observed: ts,
    number_observed: intRange(1, 999999999),
    objects: dictionary,
    object_refs: list(anyRef),
  }),
  opinion: sdo(['opinion', 'object_refs'], {
    explanation: str,
    authors: strList,
    opinion: { type: 'string', enum: ['strongly-disagree', 'disagree', 'neutral', 'agree', 'strongly-agree'] },
    object_refs: list(anyRef),
  }),
  report: sdo(['name', 'published', 'object_refs'], {
    ...named,
    report_types: strList,
    published: ts,
    object_refs: list(anyRef),
  }),
  'threat-actor': sdo(['name'], {
    ...named,
    threat_actor_types: strList,
    aliases: strList,
    ...seen,
    roles: strList,
    goals: strList,
    sophistication: str,
    resource_level: str,
    primary_motivation: str,
    secondary_motivations: strList,
    personal_motivations: strList,
  }),
  tool: sdo(['name'], {
    ...named,
    tool_types: strList,
    aliases: strList,
    kill_chain_phases: list(killChainPhase),
    tool_version: str,
  }),
  vulnerability: sdo(['name'], { ...named }),

  // --- SROs
  relationship: {
    kind: 'sro',
    required: ['relationship_type', 'source_ref', 'target_ref'],
    properties: {
      relationship_type: { type: 'string', minLength: 1, pattern: '^[a-z0-9-]+$', 'x-msg': 'must use only a-z, 0-9 and hyphens' },
      description: str,
      source_ref: anyRef,
      target_ref: anyRef,
      start_time: ts,
      stop_time: ts,
    },
  },
  sighting: {
    kind: 'sro',
    required: ['sighting_of_ref'],
    properties: {
      description: str,
      ...seen,
      count: intRange(0, 999999999),
      sighting_of_ref: anyRef,
      observed_data_refs: list(ref('observed-data')),
      where_sighted_refs: list(ref('identity', 'location')),
      summary: bool,
    },
  },

  // --- SCOs (light-touch: required properties and obvious shapes)
  artifact: sco([], {
    mime_type: str,
    payload_bin: { type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$', 'x-msg': 'must be base64' },
    url: str,
    hashes,
    encryption_algorithm: { type: 'string', enum: ['AES-256-GCM', 'ChaCha20Poly1305', 'mime-type-indicated'] },
    decryption_key: str,
  }),
  'autonomous-system': sco(['number'], { number: { type: 'integer', minimum: 0 }, name: str, rir: str }),
  directory: sco(['path'], { path: nonEmptyStr, path_enc: str, ctime: ts, mtime: ts, atime: ts, contains_refs: list(ref('file', 'directory')) }),
  'domain-name': sco(['value'], { value: nonEmptyStr, resolves_to_refs: list(ref('ipv4-addr', 'ipv6-addr', 'domain-name')) }),
  'email-addr': sco(['value'], { value: nonEmptyStr, display_name: str, belongs_to_ref: ref('user-account') }),
  'email-message': sco(['is_multipart'], {
    is_multipart: bool,
    date: ts,
    content_type: str,
    from_ref: ref('email-addr'),
    sender_ref: ref('email-addr'),
    to_refs: list(ref('email-addr')),
    cc_refs: list(ref('email-addr')),
    bcc_refs: list(ref('email-addr')),
    message_id: str,
    subject: str,
    received_lines: strList,
    additional_header_fields: dictionary,
    body: str,
    body_multipart: list({ type: 'object' }),
    raw_email_ref: ref('artifact'),
  }),
  file: sco([], {
    hashes,
    size: { type: 'integer', minimum: 0 },
    name: str,
    name_enc: str,
    magic_number_hex: { type: 'string', pattern: '^([a-fA-F0-9]{2})+$', 'x-msg': 'must be hex' },
    mime_type: str,
    ctime: ts,
    mtime: ts,
    atime: ts,
    parent_directory_ref: ref('directory'),
    contains_refs: list(anyRef),
    content_ref: ref('artifact'),
  }),
  'ipv4-addr': sco(['value'], {
    value: { type: 'string', format: 'ipv4-cidr', 'x-msg': 'must be an IPv4 address or CIDR block' },
    resolves_to_refs: list(ref('mac-addr')),
    belongs_to_refs: list(ref('autonomous-system')),
  }),
  'ipv6-addr': sco(['value'], {
    value: { type: 'string', format: 'ipv6-cidr', 'x-msg': 'must be an IPv6 address or CIDR block' },
    resolves_to_refs: list(ref('mac-addr')),
    belongs_to_refs: list(ref('autonomous-system')),
  }),
  'mac-addr': sco(['value'], {
    value: { type: 'string', pattern: '^[0-9a-f]{2}(?:(?::[0-9a-f]{2}){5}|(?::[0-9a-f]{2}){7})$', 'x-msg': 'must be a lower-case colon-separated MAC address' },
  }),
  mutex: sco(['name'], { name: nonEmptyStr }),
  'network-traffic': sco(['protocols'], {
    start: ts,
    end: ts,
    is_active: bool,
    src_ref: ref('ipv4-addr', 'ipv6-addr', 'mac-addr', 'domain-name'),
    dst_ref: ref('ipv4-addr', 'ipv6-addr', 'mac-addr', 'domain-name'),
    src_port: intRange(0, 65535),
    dst_port: intRange(0, 65535),
    protocols: strList,
    src_byte_count: { type: 'integer', minimum: 0 },
    dst_byte_count: { type: 'integer', minimum: 0 },
    src_packets: { type: 'integer', minimum: 0 },
    dst_packets: { type: 'integer', minimum: 0 },
    ipfix: dictionary,
    src_payload_ref: ref('artifact'),
    dst_payload_ref: ref('artifact'),
    encapsulates_refs: list(ref('network-traffic')),
    encapsulated_by_ref: ref('network-traffic'),
  }),
  process: sco([], {
    is_hidden: bool,
    pid: int,
    created_time: ts,
    cwd: str,
    command_line: str,
    environment_variables: dictionary,
    opened_connection_refs: list(ref('network-traffic')),
    creator_user_ref: ref('user-account'),
    image_ref: ref('file'),
    parent_ref: ref('process'),
    child_refs: list(ref('process')),
  }),
  software: sco(['name'], { name: nonEmptyStr, cpe: str, swid: str, languages: strList, vendor: str, version: str }),
  url: sco(['value'], { value: { type: 'string', format: 'uri', 'x-msg': 'must be a URL (RFC 3986)' } }),
  'user-account': sco([], {
    user_id: str,
    credential: str,
    account_login: str,
    account_type: str,
    display_name: str,
    is_service_account: bool,
    is_privileged: bool,
    can_escalate_privs: bool,
    is_disabled: bool,
    account_created: ts,
    account_expires: ts,
    credential_last_changed: ts,
    account_first_login: ts,
    account_last_login: ts,
  }),
  'windows-registry-key': sco([], {
    key: str,
    values: list({ type: 'object' }),
    modified_time: ts,
    creator_user_ref: ref('user-account'),
    number_of_subkeys: { type: 'integer', minimum: 0 },
  }),
  'x509-certificate': sco([], {
    is_self_signed: bool,
    hashes,
    version: str,
    serial_number: str,
    signature_algorithm: str,
    issuer: str,
    validity_not_before: ts,
    validity_not_after: ts,
    subject: str,
    subject_public_key_algorithm: str,
    subject_public_key_modulus: str,
    subject_public_key_exponent: int,
    x509_v3_extensions: { type: 'object' },
  }),

  // --- meta objects (§7)
  'marking-definition': {
    kind: 'meta',
    required: ['created'],
    properties: {
      name: str,
      definition_type: nonEmptyStr,
      definition: { type: 'object' },
    },
  },
  'language-content': {
    kind: 'meta',
    required: ['created', 'modified', 'object_ref', 'contents'],
    properties: { object_ref: anyRef, object_modified: ts, contents: dictionary },
  },
  'extension-definition': {
    kind: 'meta',
    required: ['created', 'modified', 'created_by_ref', 'name', 'schema', 'version', 'extension_types'],
    properties: {
      name: nonEmptyStr,
      description: str,
      schema: nonEmptyStr,
      version: nonEmptyStr,
      extension_types: list({ type: 'string', enum: EXTENSION_TYPES }),
      extension_properties: strList,
    },
  },
};

/** The JSON Schema for one kind of object: common properties + the type's own. */
export function schemaFor(spec: TypeSpec | undefined, kind: ObjectKind): JsonSchema {
  const scoLike = kind === 'sco';
  const common = scoLike ? scoCommonProperties : commonProperties;
  const base = ['type', 'id'];
  // SDOs/SROs need created+modified; meta objects list their own; SCOs have none.
  const commonRequired = kind === 'sdo' || kind === 'sro' ? ['created', 'modified'] : [];
  const required = [...new Set([...base, ...commonRequired, ...(spec?.required ?? [])])];
  return {
    type: 'object',
    required,
    properties: { ...common, ...(spec?.properties ?? {}) },
  };
}
