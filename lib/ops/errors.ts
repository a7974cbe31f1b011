/**
 * Errors of the SETS operations (anchor, verify, publish, subscribe, inquire): a `code` to branch
 * on, a message that names what failed, and — for payload problems — one entry per bad object, so
 * a user sees every problem of a bundle at once instead of fixing them one by one. Errors of the
 * layers below (StixValidationError, LedgerError, BusError, TaxiiError) pass through unchanged:
 * they already carry a code and name the thing that failed.
 */

export type OpsErrorCode =
  /**
   * the payload cannot be verified: not JSON, not an object/array/bundle/envelope, empty, or an
   * object without a usable identity (id, created/modified) — see `problems`. (Producer-side
   * payloads are checked by lib/stix `extractObjects` and fail with its STIX_INVALID error.)
   */
  | 'BAD_PAYLOAD'
  /** no collection id in the node configuration nor in msg.collection */
  | 'NO_COLLECTION'
  /** the collection id cannot be used (whitespace, control characters, too long) */
  | 'BAD_COLLECTION'
  /** settings that cannot work (a secret missing for the chosen authentication, ...) */
  | 'BAD_CONFIG'
  /** a TAXII filter value is unusable */
  | 'BAD_FILTER'
  /** a delivery cannot be settled (unknown id, already settled, subscriber gone) */
  | 'BAD_DELIVERY'
  /** the broker did not confirm some published objects (see `problems`) */
  | 'PUBLISH_FAILED'
  /** the TAXII server's status lists objects it did not accept (see `problems`) */
  | 'TAXII_REJECTED';

/** What is wrong with one object of a payload. */
export interface ObjectProblem {
  /** position in the payload's object list */
  index: number;
  /** the object's id when it has a usable one */
  id?: string;
  message: string;
}

export class OpsError extends Error {
  readonly code: OpsErrorCode;
  readonly problems?: ObjectProblem[];
  constructor(code: OpsErrorCode, message: string, opts: { problems?: ObjectProblem[]; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'OpsError';
    this.code = code;
    if (opts.problems) this.problems = opts.problems;
  }
}

export function isOpsError(err: unknown): err is OpsError {
  return err instanceof OpsError;
}

/** Message of any thrown value. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
