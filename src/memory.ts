// The WebAssembly memory a model needs, computed from its config alone, so that a model that
// cannot fit in WebAssembly's 4 GiB is refused before anything big is allocated or read.
import type { ModelConfig } from './config.js';
import { cacheNumbersPerTokenPerLayer } from './config.js';
import { CHUNK } from './decoder.js';
import { MlaError } from './errors.js';
import { fmtBytes } from './heap.js';
import { weightBytes } from './weights.js';

/** WebAssembly's limit for a 32-bit memory: 65536 pages of 64 KiB. */
export const WASM_MEMORY_LIMIT = 2 ** 32;
/** The heap's reserved first page plus the 64-byte rounding of its blocks (generously). */
const OVERHEAD = 65536 + 64 * 64;
/** Cached positions the naive MLA path expands at a time (decoder.ts's KEY_BLOCK). */
const KEY_BLOCK = 64;

export interface MemoryNeed {
  /** The weights as f32 (F16 and BF16 files are widened at load). */
  weights: number;
  /** The decoder's activation buffers for one chunk of tokens (kernel-specific packing space excluded). */
  scratch: number;
  /** A KV cache of `cachePositions` positions. */
  cache: number;
  cachePositions: number;
  /** Everything above plus the heap's own overhead. */
  total: number;
}

/** Bytes of WebAssembly memory a model needs: its weights, its scratch and a minimal KV cache. */
export function memoryNeed(c: ModelConfig, cachePositions = Math.min(c.maxPositions, CHUNK)): MemoryNeed {
  const a = c.attention, T = CHUNK, H = a.heads, d = c.hidden;
  const maxInter = c.ffn.reduce((m, f) => Math.max(m, f.intermediate), 0);
  let inRows: number, qWidth = 0, ropeDim: number, mlaExtra = 0;
  if (a.kind === 'mla') {
    qWidth = H * (a.nopeDim + a.ropeDim);
    inRows = (a.qLoraRank ?? qWidth) + a.kvLoraRank + a.ropeDim;
    ropeDim = a.ropeDim;
    mlaExtra = KEY_BLOCK * H * (a.nopeDim + a.vDim) + T * H * (a.kvLoraRank + a.ropeDim) + T * H * a.kvLoraRank;
  } else {
    inRows = H * a.headDim + a.kvHeads * (a.headDim + a.vDim);
    ropeDim = a.headDim;
  }
  const numbers = T + 3 * T * d + T * inRows + T * qWidth + T * H * a.vDim + T * 2 * maxInter + T * c.vocabSize +
    T * ropeDim + ropeDim / 2 + 2 * T * H + mlaExtra;
  const weights = weightBytes(c);
  const scratch = numbers * 4;
  const cache = cachePositions * c.layers * cacheNumbersPerTokenPerLayer(a) * 4;
  return { weights, scratch, cache, cachePositions, total: weights + scratch + cache + OVERHEAD };
}

/** Throws OUT_OF_MEMORY, naming the need, when the model cannot fit in WebAssembly memory. */
export function checkMemory(c: ModelConfig): MemoryNeed {
  const need = memoryNeed(c);
  if (!(need.total <= WASM_MEMORY_LIMIT)) {
    throw new MlaError('OUT_OF_MEMORY',
      `the model needs ${fmtBytes(need.total)} (${need.total} bytes) of WebAssembly memory: ${fmtBytes(need.weights)} of weights ` +
      `as f32, ${fmtBytes(need.scratch)} of scratch and ${fmtBytes(need.cache)} for a ${need.cachePositions}-position KV cache; ` +
      `WebAssembly memory stops at 4 GiB`);
  }
  return need;
}
