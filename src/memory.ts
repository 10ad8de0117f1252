// The WebAssembly memory a model needs, computed from its config alone, so that a model that
// cannot fit in WebAssembly's 4 GiB is refused before anything big is allocated or read.
import type { ModelConfig } from './config.js';
import { cacheNumbersPerTokenPerLayer } from './config.js';
import { CHUNK, scratchBytes, scratchSizes, type ScratchKernels } from './decoder.js';
import { MlaError } from './errors.js';
import { fmtBytes } from './heap.js';
import { weightBlockBytes } from './weights.js';

/** WebAssembly's limit for a 32-bit memory: 65536 pages of 64 KiB. */
export const WASM_MEMORY_LIMIT = 2 ** 32;
/** The heap's reserved first page plus the 64-byte rounding of its blocks (generously). */
const OVERHEAD = 65536 + 64 * 64;

export interface MemoryNeed {
  /** The weights as f32 (F16 and BF16 files are widened at load), with their alignment. */
  weights: number;
  /** The decoder's scratch buffers (its run state) for one chunk of tokens. */
  scratch: number;
  /** A KV cache of `cachePositions` positions. */
  cache: number;
  cachePositions: number;
  /** Everything above plus the heap's own overhead. */
  total: number;
}

/** Bytes of WebAssembly memory a model needs: its weights, its scratch and a minimal KV cache. */
export function memoryNeed(c: ModelConfig, kernels: ScratchKernels, cachePositions = Math.min(c.maxPositions, CHUNK)): MemoryNeed {
  const weights = weightBlockBytes(c);
  const scratch = scratchBytes(scratchSizes(c, kernels));
  const cache = cachePositions * c.layers * cacheNumbersPerTokenPerLayer(c.attention) * 4;
  return { weights, scratch, cache, cachePositions, total: weights + scratch + cache + OVERHEAD };
}

/** Throws OUT_OF_MEMORY, naming the need, when the model cannot fit in WebAssembly memory. */
export function checkMemory(c: ModelConfig, kernels: ScratchKernels): MemoryNeed {
  const need = memoryNeed(c, kernels);
  if (!(need.total <= WASM_MEMORY_LIMIT)) {
    throw new MlaError('OUT_OF_MEMORY',
      `the model needs ${fmtBytes(need.total)} (${need.total} bytes) of WebAssembly memory: ${fmtBytes(need.weights)} of weights ` +
      `as f32, ${fmtBytes(need.scratch)} of scratch and ${fmtBytes(need.cache)} for a ${need.cachePositions}-position KV cache; ` +
      `WebAssembly memory stops at 4 GiB`);
  }
  return need;
}
