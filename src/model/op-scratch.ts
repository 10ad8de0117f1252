// The scratch memory Ops needs, worked out before anything is allocated: the decoder and
// memoryNeed size their buffers from these, asking the kernels about their own tiling. Also the
// staging block in which weights are quantised at load.
import type { Kernels } from '../host/kernels.js';
import type { Quantizer } from './weights.js';

const F = 4; // bytes per f32

/**
 * One item's attention over a long context (decode) is split by keys into segments, each with its
 * own state, merged in order at the end (flash-decoding): threads then share the keys instead of
 * each reading all of them. At most this many segments, of at least MIN_SEGMENT keys; the split
 * depends on the shape alone, never on the threads, so results stay bit-identical.
 */
export const MAX_SEGMENTS = 8, MIN_SEGMENT = 256;

/** Bytes of WebAssembly memory quantising weights at load stages f32 rows in (a row at least). */
const QUANTIZE_STAGING_BYTES = 1 << 20;

/** Bytes of a Q8_K activation record per 256 values (quantize_q8k_act): 16 i16 sums and the f32 scale. */
export const ACT_RECORD = 36;

/** Bytes of quantised activations (codes and scales: per 32, or Q8_K records per 256) for `rows` rows of `k` values. */
export function actQuantBytes(rows: number, k: number): number {
  return rows * (k + Math.max(Math.ceil(k / 32) * 4, Math.ceil(k / 256) * ACT_RECORD));
}

/**
 * The quantizer placeWeights uses to make q8 / q4 weights from wider ones at load: rows of at most
 * `maxCols` floats staged in a block of stagingBytes, then the kernels' Q8_0 / Q4_0 rules
 * (quantize_q8_rows / quantize_q4_rows).
 */
export function loadQuantizer(k: Kernels, maxCols: number, scratchBytes: number): Quantizer {
  return {
    // No more than the decoder's scratch, which takes the block's place once loading is done.
    stagingBytes: Math.max(maxCols * F, Math.min(QUANTIZE_STAGING_BYTES, scratchBytes)),
    quantize(format, staging, rows, cols, q, d) {
      if (format === 'q8') k.quantize_q8_rows(staging, cols, rows, cols, q, d);
      else k.quantize_q4_rows(staging, cols, rows, cols, q, d);
    },
  };
}

/** The kernels' answers to "how much scratch do you need" (all that sizing memory asks of them). */
export type ScratchKernels = Pick<Kernels, 'matmul_pack_bytes' | 'qgemm_pack_bytes' | 'quant_prep_bytes' | 'attn_scratch_bytes'
  | 'latent_query_bytes'>;

/**
 * Bytes of packing scratch a product of depth k and n columns needs: matmul_nt / matmul_nn's,
 * or, when k is a whole number of blocks and that is more, qgemm's (q8 / q4 weights) or what
 * matmul_nt_q4 prepares its activations in.
 */
export function matmulPackBytes(kernels: ScratchKernels, k: number, n: number): number {
  return Math.max(kernels.matmul_pack_bytes(k, n), k % 32 === 0 ? Math.max(kernels.qgemm_pack_bytes(k), kernels.quant_prep_bytes(k)) : 0);
}

/** Bytes of scratch attention needs for `queries` queries at once. */
export function attnScratchBytes(kernels: ScratchKernels, queries: number): number {
  return kernels.attn_scratch_bytes(queries);
}

/** Bytes of one segment's state for nq queries of dv values: acc, m, l, and attn_block's scratch. */
export function segmentBytes(k: ScratchKernels, nq: number, dv: number): number {
  return Math.ceil(((nq * dv + 2 * nq) * F + k.attn_scratch_bytes(nq)) / 64) * 64;
}

/** Bytes attention() needs (the `segments` buffer of Ops) to split nq queries of dv values by keys. */
export function attnSegmentBytes(k: ScratchKernels, nq: number, dv: number): number {
  return (MAX_SEGMENTS - 1) * segmentBytes(k, nq, dv);
}
