/**
 * Typed errors of the record stores. Every error names the store (directory or database) and the
 * operation that failed; `code` is stable, the message is for people.
 */

export type StoreErrorCode =
  /** a method was called before open() or after close() */
  | 'ERR_STORE_NOT_OPEN'
  /** the embedded store's directory is held by another process (LevelDB lock) */
  | 'ERR_STORE_LOCKED'
  /** cannot reach / authenticate to the database server */
  | 'ERR_STORE_CONNECT'
  /** `cursor` is not one this store issued */
  | 'ERR_STORE_BAD_CURSOR'
  /** a query value is malformed (limit, timestamp, empty filter list...) -> TAXII 400 */
  | 'ERR_STORE_BAD_QUERY'
  /** a record to add is malformed (missing id, bad version timestamp...) */
  | 'ERR_STORE_BAD_RECORD'
  /** the store's configuration is unusable */
  | 'ERR_STORE_CONFIG'
  /** the engine failed (disk, corruption, server error) */
  | 'ERR_STORE_IO';

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

export function isStoreError(err: unknown): err is StoreError {
  return err instanceof StoreError;
}

/** Message of an unknown thrown value (with the code when it has one). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' || typeof code === 'number' ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
