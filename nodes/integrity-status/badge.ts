/**
 * The integrity-status badge text, short enough not to be covered by the neighbouring nodes of the
 * example flows: "12 finalized · 1 invalid", with " · 3 pending" only while some records wait.
 */
import type { StatusCounts } from '../../lib/store/store';

export function countsBadge(c: Pick<StatusCounts, 'pending' | 'finalized' | 'invalid'>): string {
  const text = `${c.finalized} finalized · ${c.invalid} invalid`;
  return c.pending > 0 ? `${text} · ${c.pending} pending` : text;
}
