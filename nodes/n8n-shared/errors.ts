/**
 * Lib errors -> n8n errors. Every lib error carries a `code` and a message that names what failed;
 * here it becomes a NodeApiError (the TAXII server or the network between us answered badly) or a
 * NodeOperationError (anything else: bad input, bad settings, ledger, broker, store), always with
 * the item index, and with the code in the description so a user can search for it.
 */
import { NodeApiError, NodeOperationError, type INode, type JsonObject } from 'n8n-workflow';
import { TaxiiError } from '../../lib/taxii/errors';
import { messageOf } from '../../lib/ops/errors';

function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** One line per object problem (OpsError / StixValidationError list every bad object). */
function problemLines(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const problems = (err as { problems?: unknown }).problems;
  if (!Array.isArray(problems) || problems.length === 0) return undefined;
  return problems
    .slice(0, 20)
    .map((p: unknown) => {
      const o = (typeof p === 'object' && p !== null ? p : {}) as { index?: unknown; id?: unknown; message?: unknown };
      return `object #${String(o.index ?? '?')}${typeof o.id === 'string' ? ` (${o.id})` : ''}: ${String(o.message ?? '')}`;
    })
    .join('\n');
}

/** The n8n error for a failure of item `itemIndex` (already an n8n error: returned as is). */
export function toNodeError(node: INode, err: unknown, itemIndex?: number): NodeApiError | NodeOperationError {
  if (err instanceof NodeApiError || err instanceof NodeOperationError) {
    if (itemIndex !== undefined && err.context.itemIndex === undefined) err.context.itemIndex = itemIndex;
    return err;
  }
  const code = codeOf(err);
  const message = messageOf(err);
  const at = itemIndex !== undefined ? { itemIndex } : {};
  if (err instanceof TaxiiError) {
    const body: JsonObject = { code: err.code, message };
    if (err.httpStatus !== undefined) body.httpStatus = err.httpStatus;
    if (err.url) body.url = err.url;
    if (err.taxiiError) body.taxiiError = err.taxiiError as unknown as JsonObject;
    const description = [
      `code ${err.code}`,
      err.taxiiError?.description && err.taxiiError.description !== message ? err.taxiiError.description : undefined,
    ]
      .filter(Boolean)
      .join(' — ');
    return new NodeApiError(node, body, {
      message,
      description,
      ...(err.httpStatus !== undefined ? { httpCode: String(err.httpStatus) } : {}),
      ...at,
    });
  }
  const description = [code ? `code ${code}` : undefined, problemLines(err)].filter(Boolean).join('\n');
  const e = new NodeOperationError(node, err instanceof Error ? err : new Error(message), { message, ...(description ? { description } : {}), ...at });
  return e;
}

/** `{error, code?}` for an item when the node continues on fail. */
export function errorJson(err: unknown): JsonObject {
  const out: JsonObject = { error: messageOf(err) };
  const code = codeOf(err);
  if (code) out.code = code;
  if (err instanceof NodeApiError && err.httpCode) out.httpCode = err.httpCode;
  const lines = problemLines(err);
  if (lines) out.problems = lines.split('\n');
  return out;
}
