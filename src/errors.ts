/** Every failure the package reports on purpose is an MlaError with a stable `code`. */
export type MlaErrorCode =
  | 'BAD_SOURCE'        // a model source that is not a folder, URL, file map or { config, tensors }
  | 'BAD_CONFIG'        // config.json missing, unreadable, or a value we cannot run
  | 'BAD_CHECKPOINT'    // a safetensors file that is truncated, corrupt or lies in its header
  | 'UNSUPPORTED_DTYPE' // a tensor dtype the loader does not read
  | 'MISSING_TENSOR'    // a weight the config needs is not in the checkpoint
  | 'UNEXPECTED_TENSOR' // the checkpoint holds a weight the config does not explain
  | 'BAD_SHAPE'         // a weight whose shape is not the one the config implies
  | 'BAD_TOKEN'         // a token id that is not an integer in [0, vocab)
  | 'BAD_INPUT'         // an empty or malformed argument (ids, options)
  | 'NON_FINITE'        // NaN or ±Inf in weights or activations
  | 'CACHE_FULL'        // the session's KV cache has no room for more positions
  | 'OUT_OF_MEMORY'     // the model does not fit WebAssembly's 4 GiB
  | 'DISPOSED'          // a session or model used after dispose()
  | 'BUSY'              // a session a generate() or chat() stream is still running on: one caller at a time
  | 'NO_SIMD'           // the runtime cannot compile the WebAssembly SIMD kernels
  | 'WORKER_FAILED'     // a worker thread died or stalled: the call was abandoned, the model goes on on one thread
  | 'BAD_SNAPSHOT'      // a session snapshot of another model or cache format, a future version, or truncated or altered
  | 'FETCH_FAILED'      // a download from the hub failed: the message names the URL and the HTTP status or break
  | 'ABORTED';          // generation stopped by an AbortSignal

export class MlaError extends Error {
  readonly code: MlaErrorCode;
  constructor(code: MlaErrorCode, message: string) {
    super(message);
    this.name = 'MlaError';
    this.code = code;
  }
}

const PREVIEW = 60;

/**
 * A value as an error message shows it: short, and never the insides of an object (a session
 * passed where another model's was wanted once put 4 KB of its state in a message). Strings and
 * plain data show as JSON cut at PREVIEW characters; instances by their class name. Never throws
 * (BigInts, cycles and prototype-less objects are no JSON).
 */
export function showValue(v: unknown): string {
  try {
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'function') return v.name ? `a function ${v.name}` : 'a function';
    if (typeof v === 'symbol') return v.toString();
    if (typeof v === 'number' && !Number.isFinite(v)) return String(v); // JSON would say null
    if (typeof v !== 'object' || v === null) return cut(JSON.stringify(v) ?? String(v));
    if (Array.isArray(v)) return isSmallData(v) ? cut(JSON.stringify(v)) : `an array of ${v.length}`;
    if (ArrayBuffer.isView(v)) return `${article(v.constructor.name)} of ${(v as unknown as ArrayLike<unknown>).length ?? v.byteLength}`;
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      const name = typeof proto?.constructor === 'function' ? proto.constructor.name : '';
      return name ? article(name) : 'an object';
    }
    return isSmallData(v) ? cut(JSON.stringify(v)) : `an object with keys ${cut(Object.keys(v).join(', '))}`;
  } catch {
    return typeof v === 'object' ? 'an object' : typeof v;
  }
}

const cut = (s: string) => (s.length <= PREVIEW ? s : `${s.slice(0, PREVIEW - 1)}…`);
const article = (name: string) => `${/^[AEIOU]/i.test(name) ? 'an' : 'a'} ${name}`;

/** Plain data worth showing as JSON: few keys or items, nested at most two deep, no instances. */
function isSmallData(v: unknown, depth = 0): boolean {
  if (typeof v === 'bigint' || typeof v === 'function' || typeof v === 'symbol') return false;
  if (typeof v !== 'object' || v === null) return true;
  if (depth >= 2) return false;
  const proto = Object.getPrototypeOf(v);
  if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) return false;
  const values = Object.values(v);
  return values.length <= 8 && values.every((x) => isSmallData(x, depth + 1));
}

/**
 * Refuse an options object that is not an object or has a key outside `known` (BAD_INPUT naming
 * the key, the closest known one when it looks like a typo, and all the known ones): a misspelt
 * option would otherwise be ignored without a word. `undefined` is no options at all.
 */
export function checkOptions(options: unknown, known: Iterable<string>, what = 'options'): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new MlaError('BAD_INPUT', `${what} must be an object, got ${showValue(options)}`);
  }
  const names = [...known];
  for (const key of Object.keys(options)) {
    if (names.includes(key)) continue;
    const close = closest(key, names);
    throw new MlaError('BAD_INPUT', `unknown option ${showValue(key)} in ${what}` +
      `${close ? ` (did you mean ${JSON.stringify(close)}?)` : ''}; known: ${names.join(', ')}`);
  }
}

const PART_MIN = 4;

/**
 * The known name nearest to `key` by edit distance (case ignored), when it is near enough to be a
 * typo; else one that contains the key or is contained in it (`context` for `contextLength`).
 */
function closest(key: string, names: string[]): string | null {
  const k = key.toLowerCase();
  let best: string | null = null, bestD = Infinity;
  for (const n of names) {
    const d = editDistance(k, n.toLowerCase());
    if (d < bestD) { best = n; bestD = d; }
  }
  if (best !== null && bestD <= Math.max(1, Math.floor(best.length / 3))) return best;
  // Four letters at least on the shorter side: `out` is no hint for `output`.
  const part = (a: string, b: string) => a.length >= PART_MIN && b.includes(a);
  return names.find((n) => part(k, n.toLowerCase()) || part(n.toLowerCase(), k)) ?? null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
