/**
 * Public API of the SETS library (framework-free: no Node-RED or n8n imports).
 * Grouped by concern; each group is also importable on its own path (e.g. `…/dist/lib/digest`).
 */
export * as digest from './digest';
export * as stix from './stix';
export * as ledger from './ledger';
export * as bus from './bus';
export * as store from './store';
export * as taxiiClient from './taxii/client';
export * as taxiiServer from './taxii/server';
export * as taxiiMedia from './taxii/media';
export * as taxiiErrors from './taxii/errors';
export * as auth from './auth/config';
export * as authClient from './auth/client';
export * as oauth2 from './auth/oauth2';
export * as ops from './ops/index';
export { isRejection, REJECTING_STATUSES, verifyObject, type AnchorSeen, type Verification, type VerificationStatus, type VerifyOptions } from './verify';
export { canonicalize, collectionScope, hashObject, identityTag, keyForObject, ledgerKey, objectVersion, type ObjectAnchor } from './digest';
export { extractObjects, validateObject, StixValidationError, type StixObject } from './stix';
