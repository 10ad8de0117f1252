// The WebAssembly memory a model needs, computed from its config alone, so that a model that
// cannot fit in WebAssembly's 4 GiB is refused before anything big is allocated or read.
import type { ModelConfig } from '../formats/config.js';
import { CHUNK, scratchBytes, scratchSizes } from './decoder.js';
import { KvCache, type CacheFormat } from './kv-cache.js';
import type { ScratchKernels } from './op-scratch.js';
import { MlaError } from '../errors.js';
import { fmtBytes, heapBytesFor } from '../host/heap.js';
import { poolBytes } from '../host/protocol.js';
import { weightBlockBytes, weightPlan, type WeightPlan, type WeightsOption } from './weights.js';

/** WebAssembly's limit for a 32-bit memory: 65536 pages of 64 KiB. */
export const WASM_MEMORY_LIMIT = 2 ** 32;

export interface MemoryNeed {
  /** The weights in the formats of the plan (default all f32), with their alignment. */
  weights: number;
  /** The decoder's scratch buffers (its run state) for one chunk of tokens, with matmul packing scratch per thread. */
  scratch: number;
  /** A KV cache of `cachePositions` positions in format `cacheFormat`. */
  cache: number;
  cachePositions: number;
  cacheFormat: CacheFormat;
  /** Threads the kernels run on, and the worker pool's control block (0 for one thread). */
  threads: number;
  pool: number;
  /** The memory's byteLength once it holds all of the above: the heap's reserved first page, each block
   * rounded to 64 bytes, whole 64 KiB pages. */
  total: number;
}

export interface NeedOptions {
  /** Threads including the caller (default 1). */
  threads?: number;
  /** Positions of the one KV cache counted (default: a chunk's, or the model's max if less). */
  cachePositions?: number;
  /** Each matrix's format (default: all f32). */
  plan?: WeightPlan;
  /** The KV cache's format (default f32): a narrow latent cache counts at its own bytes. */
  cache?: CacheFormat;
}

/**
 * Bytes of WebAssembly memory a model needs: its weights, its scratch, a worker pool's control
 * block and one KV cache; exactly what loadModel and a session of `cachePositions` grow it to.
 */
export function memoryNeed(c: ModelConfig, kernels: ScratchKernels, options: NeedOptions = {}): MemoryNeed {
  const threads = options.threads ?? 1;
  const cachePositions = options.cachePositions ?? Math.min(c.maxPositions, CHUNK);
  const weights = weightBlockBytes(c, options.plan ?? weightPlan('f32'));
  const scratch = scratchBytes(scratchSizes(c, kernels, threads));
  const cacheFormat = options.cache ?? 'f32';
  const cache = KvCache.bytes(c, cachePositions, cacheFormat);
  const pool = poolBytes(threads);
  // In the order loadModel allocates: the pool's control block, weights, scratch, then a session's cache.
  const total = heapBytesFor([...(pool ? [pool] : []), weights, scratch, cache]);
  return { weights, scratch, cache, cachePositions, cacheFormat, threads, pool, total };
}

/** Throws OUT_OF_MEMORY, naming the need, when the model cannot fit in WebAssembly memory on `threads` threads. */
export function checkMemory(c: ModelConfig, kernels: ScratchKernels, threads = 1,
  weights: { option: WeightsOption; plan: WeightPlan } = { option: 'f32', plan: weightPlan('f32') }): MemoryNeed {
  const need = memoryNeed(c, kernels, { threads, plan: weights.plan });
  if (!(need.total <= WASM_MEMORY_LIMIT)) {
    const perThread = threads > 1 ? ` (with matmul packing for ${threads} threads)` : '';
    throw new MlaError('OUT_OF_MEMORY',
      `the model needs ${fmtBytes(need.total)} (${need.total} bytes) of WebAssembly memory: ${fmtBytes(need.weights)} of weights ` +
      `(weights '${weights.option}'), ${fmtBytes(need.scratch)} of scratch${perThread} and ${fmtBytes(need.cache)} for a ${need.cachePositions}-position KV cache; ` +
      `WebAssembly memory stops at 4 GiB`);
  }
  return need;
}
