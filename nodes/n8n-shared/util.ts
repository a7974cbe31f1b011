/** Small helpers of the n8n glue (no protocol logic). */

/** map with at most `limit` calls running at once; results in input order. */
export async function mapLimit<T, R>(input: readonly T[], limit: number, fn: (v: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(input.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < input.length) {
      const i = next++;
      out[i] = await fn(input[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), input.length) }, worker));
  return out;
}

/** Resolve after `ms` at most, or when `p` settles (whichever comes first); the timer never outlives it. */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  if (timer) clearTimeout(timer);
}
