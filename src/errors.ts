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
  | 'NO_SIMD'           // the runtime cannot compile the WebAssembly SIMD kernels
  | 'WORKER_FAILED'     // a worker thread died or stalled: the call was abandoned, the model goes on on one thread
  | 'ABORTED';          // generation stopped by an AbortSignal

export class MlaError extends Error {
  readonly code: MlaErrorCode;
  constructor(code: MlaErrorCode, message: string) {
    super(message);
    this.name = 'MlaError';
    this.code = code;
  }
}

/** A value as an error message shows it; never throws (BigInts, cycles and prototype-less objects are no JSON). */
export function showValue(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    try { return String(v); } catch { return Object.prototype.toString.call(v); }
  }
}
