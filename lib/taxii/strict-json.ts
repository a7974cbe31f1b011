/**
 * Strict JSON input (I-JSON, RFC 7493) for bodies whose content is hashed and anchored.
 *
 * `JSON.parse` is lenient where two parties must agree byte-for-byte on what was sent: it keeps
 * the last of duplicate member names, rounds integers beyond 2^53 silently, and `Buffer#toString`
 * turns invalid UTF-8 into U+FFFD. Each lets a producer and a consumer (another parser, another
 * language) see — and hash — different objects from the same bytes. `parseStrictJson` refuses
 * all of them, plus escaped lone surrogates (I-JSON §2.1) and numbers that overflow a double:
 *
 * 1. the bytes are decoded with a fatal UTF-8 decoder (a leading BOM is dropped);
 * 2. `JSON.parse` checks the syntax and builds the value;
 * 3. a single linear scan of the (now known valid) text finds duplicate member names per object
 *    (after unescaping: `"a"` and `"\u0061"` are the same name), integer literals whose magnitude
 *    exceeds 2^53-1, numbers that overflow to Infinity, and strings with unpaired surrogates.
 *    The scan keeps an explicit stack (no recursion: deep nesting cannot overflow it) and reports
 *    the JSON path of the offending member.
 */

export type StrictJsonProblem = 'utf8' | 'syntax' | 'duplicate-key' | 'big-integer' | 'number-overflow' | 'lone-surrogate';

export class StrictJsonError extends Error {
  readonly code = 'ERR_STRICT_JSON';
  constructor(
    readonly problem: StrictJsonProblem,
    message: string,
    /** JSON path of the offending value (`$.objects[3].name`), when known */
    readonly path?: string,
  ) {
    super(message);
    this.name = 'StrictJsonError';
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decode UTF-8 strictly (a leading BOM is dropped); throws StrictJsonError('utf8'). */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new StrictJsonError('utf8', `the body is not valid UTF-8 (at or after byte ${firstBadUtf8(bytes)})`);
  }
}

/** Offset of the first byte that does not start / continue a valid UTF-8 sequence (for the message). */
function firstBadUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    let n: number;
    let min: number;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      min = 0x10000;
    } else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return i;
}

const hasLoneSurrogate: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => !(s as string & { isWellFormed(): boolean }).isWellFormed()
    : (s) => /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);

interface Frame {
  /** object: member names seen so far; array: null */
  keys: Set<string> | null;
  /** object: the current member name; array: the current index */
  at: string | number;
}

function pathOf(stack: readonly Frame[]): string {
  let p = '$';
  for (const f of stack) {
    if (f.keys === null) p += `[${String(f.at)}]`;
    else if (typeof f.at === 'string' && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(f.at)) p += `.${f.at}`;
    else p += `[${JSON.stringify(f.at)}]`;
  }
  return p;
}

/**
 * Parse strictly. Accepts a Buffer / Uint8Array (decoded as fatal UTF-8) or an already decoded
 * string. Throws StrictJsonError naming the problem (and the JSON path where there is one).
 */
export function parseStrictJson(input: Uint8Array | string): unknown {
  let text = typeof input === 'string' ? input : decodeUtf8Strict(input);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StrictJsonError('syntax', `the body is not valid JSON (${(err as Error).message})`);
  }
  checkStrict(text);
  return value;
}

/** The scan (step 3). `text` must be valid JSON (JSON.parse accepted it). */
function checkStrict(text: string): void {
  const stack: Frame[] = [];
  const n = text.length;
  /** in an object, the next string is a member name */
  let expectKey = false;
  let i = 0;
  /** position of the next backslash at or after the scan position (-1: none left); cached, or each string would search to the end */
  let nextBs = text.indexOf('\\');
  while (i < n) {
    const c = text.charCodeAt(i);
    switch (c) {
      case 0x7b: // {
        stack.push({ keys: new Set(), at: '' });
        expectKey = true;
        i++;
        break;
      case 0x5b: // [
        stack.push({ keys: null, at: 0 });
        expectKey = false;
        i++;
        break;
      case 0x7d: // }
      case 0x5d: // ]
        stack.pop();
        expectKey = false;
        i++;
        break;
      case 0x2c: {
        // ,
        const top = stack[stack.length - 1];
        if (top.keys === null) {
          top.at = (top.at as number) + 1;
          expectKey = false;
        } else expectKey = true;
        i++;
        break;
      }
      case 0x3a: // :
        expectKey = false;
        i++;
        break;
      case 0x22: {
        // " : find the closing quote (not preceded by an odd run of backslashes)
        let j = i + 1;
        let escaped = false;
        for (;;) {
          const q = text.indexOf('"', j);
          if (nextBs !== -1 && nextBs < j) nextBs = text.indexOf('\\', j);
          if (nextBs !== -1 && nextBs < q) {
            escaped = true;
            j = nextBs + 2; // skip the escaped character (an escaped quote included)
            continue;
          }
          j = q;
          break;
        }
        let s = expectKey && !escaped ? text.slice(i + 1, j) : '';
        if (escaped) {
          s = JSON.parse(text.slice(i, j + 1)) as string;
          if (hasLoneSurrogate(s)) {
            throw new StrictJsonError('lone-surrogate', `a string holds an unpaired UTF-16 surrogate escape (I-JSON forbids it) at ${pathOf(stack)}`, pathOf(stack));
          }
        }
        if (expectKey) {
          const top = stack[stack.length - 1];
          top.at = s;
          if (top.keys?.has(s)) {
            const p = pathOf(stack);
            throw new StrictJsonError('duplicate-key', `duplicate member name ${JSON.stringify(s)} at ${p} (I-JSON forbids duplicate names)`, p);
          }
          top.keys?.add(s);
          expectKey = false;
        }
        i = j + 1;
        break;
      }
      case 0x20:
      case 0x09:
      case 0x0a:
      case 0x0d:
        i++;
        break;
      default: {
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
          let j = i + 1;
          let integer = true;
          for (; j < n; j++) {
            const d = text.charCodeAt(j);
            if (d >= 0x30 && d <= 0x39) continue;
            if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) {
              integer = false;
              continue;
            }
            break;
          }
          // 15 digits or fewer (plus a sign) are always safe: look closer only at longer literals
          if (j - i > 15) {
            const lit = text.slice(i, j);
            if (integer) {
              const big = BigInt(lit);
              if (big > MAX_SAFE || big < -MAX_SAFE) {
                const p = pathOf(stack);
                throw new StrictJsonError('big-integer', `the integer ${lit.length > 40 ? lit.slice(0, 40) + '…' : lit} at ${p} is beyond ±(2^53-1) and cannot be represented exactly (I-JSON)`, p);
              }
            } else if (!Number.isFinite(Number(lit))) {
              const p = pathOf(stack);
              throw new StrictJsonError('number-overflow', `the number ${lit.slice(0, 40)} at ${p} overflows a double (I-JSON)`, p);
            }
          } else if (!integer && !Number.isFinite(Number(text.slice(i, j)))) {
            const p = pathOf(stack);
            throw new StrictJsonError('number-overflow', `the number ${text.slice(i, j)} at ${p} overflows a double (I-JSON)`, p);
          }
          i = j;
        } else {
          // true / false / null
          i++;
          while (i < n) {
            const d = text.charCodeAt(i);
            if (d < 0x61 || d > 0x7a) break;
            i++;
          }
        }
      }
    }
  }
}
