// The calls Ops takes, as records: a swap of two numbers of the same kind is then a visible name,
// not a position. Pointers are byte offsets into the kernels' memory.
import type { Matrix } from './weights.js';

// position.

/** f32 rows at byte offset `ptr`, row r at ptr + r·stride·4 (stride in floats). */
export interface Rows {
  ptr: number;
  stride: number;
}

/** Rows of one item of a batch; item i's at ptr + i·step (bytes; 0 or absent: shared by every item). */
export interface BatchRows extends Rows {
  step?: number;
}

/** y[rows, w.rows] = x[rows, w.cols] · wᵀ, for a weight matrix in column panels (weights.ts Matrix). */
export interface LinearCall {
  x: Rows;
  w: Matrix;
  y: Rows;
  rows: number;
}

/** For i < batch: C_i[m, n] = A_i[m, k] · B_iᵀ (B in [n, k] rows: `nt`) or A_i · B_i (B in [k, n] rows). */
export interface MatmulCall {
  nt: boolean;
  a: BatchRows;
  b: BatchRows;
  c: BatchRows;
  m: number;
  k: number;
  n: number;
  /** Default 1. */
  batch?: number;
}

/** Phases of attention(): attn_init, attn_block, attn_finish (in place), any combination. */
export const INIT = 1, BLOCK = 2, FINISH = 4;

/**
 * Attention for `items` items (heads, or groups of heads) with an online softmax whose state the
 * caller keeps: per `phases`, initialise it, run a block of keys, and/or finish (acc / l).
 */
export interface AttentionCall {
  phases: number;
  /** Items, and how many of them share each key/value group (item i reads group ⌊i / perGroup⌋). */
  items: number;
  perGroup: number;
  /**
   * `count` queries of `dim` (keys.dim + sharedKeys.dim) values; query r is at position
   * pos0 + ⌊r / group⌋ (causal); item i's queries at ptr + i·step.
   */
  queries: BatchRows & { count: number; pos0: number; group: number };
  /** `count` keys at positions pos0 …, of `dim` values (the first part of each); group g's at ptr + g·step. */
  keys: BatchRows & { dim: number; count: number; pos0: number };
  /** The rest of each key, the same for every item (MLA's k^R), or none. */
  sharedKeys: (Rows & { dim: number }) | null;
  /** A value of `dim` per key; group g's at ptr + g·step. */
  values: BatchRows & { dim: number };
  /** Softmax scale of a score. */
  scale: number;
  /**
   * Keys and values are MLA latent cache rows in this narrow format (assembly/latent.ts): keys.ptr
   * and keys.stride (in 4-byte units) locate the rows, keys.dim is d_c, sharedKeys.dim d_r and
   * values.dim d_c; the queries are records as latentQuery (int8, int4) writes them, or f32 (bf16).
   */
  latent?: LatentFormat;
  /**
   * The state: running max `m` and sum `l` (count floats per item, item i's at + i·count·4), the
   * accumulator rows `acc` (item i's at + i·step; the output once finished), and `scratch` of
   * attnScratchBytes(items · count) bytes.
   */
  state: { m: number; l: number; acc: BatchRows; scratch: number };
}

/** A narrow latent cache row's format (KvCache's, f32 aside). */
export type LatentFormat = 'bf16' | 'int8' | 'int4';
export const LATENT_CODES: Record<LatentFormat, number> = { bf16: 1, int8: 2, int4: 3 };

/** Narrow latent rows (assembly/latent.ts): write them from f32, widen them back, or quantise queries for them. */
export interface LatentCall {
  format: LatentFormat;
  /** f32 [c_kv ; k^R] rows (store, query: the input; widen: the output), stride in floats. */
  f32: Rows;
  /** The narrow rows (or, for query, the records), stride in bytes. */
  narrow: Rows;
  rows: number;
  dc: number;
  dr: number;
}

/** Which values of a head RoPE rotates together: DeepSeek's adjacent pairs (x[2i], x[2i+1]) or Llama's halves (x[i], x[i + dim/2]). */
export type RopeStyle = 'adjacent' | 'half';

/** cos/sin of `count` positions from pos0, `half` frequencies each (rope_table). */
export interface RopeTableCall {
  freqs: number;
  half: number;
  pos0: number;
  count: number;
  /** Multiplies cos and sin (YaRN's amplitude). */
  scale: number;
  cos: number;
  sin: number;
}

/** Rotate in place `heads` vectors of `dim` values in each of `rows` rows, row t by row t of the table. */
export interface RopeCall {
  x: Rows;
  rows: number;
  heads: number;
  /** Floats from one head's vector to the next. */
  headStride: number;
  dim: number;
  table: { cos: number; sin: number };
  style: RopeStyle;
}

/** y = RMSNorm(x) · weight over the first `dim` values of each of `rows` rows. */
export interface RmsNormCall {
  x: Rows;
  weight: number;
  y: Rows;
  rows: number;
  dim: number;
  eps: number;
}

/** out[r, :n] = silu(gu[r, :n]) ⊙ gu[r, n:2n] for `rows` rows. */
export interface SwigluCall {
  gu: Rows;
  out: Rows;
  rows: number;
  n: number;
}

/** What the profiling observer is told after each op: its name, wall time and (for the split ones) its call. */
export type OpEvent =
  | { op: 'linear'; ms: number; call: LinearCall }
  | { op: 'matmul'; ms: number; call: MatmulCall }
  | { op: 'attention'; ms: number; call: AttentionCall }
  | { op: 'embed' | 'ropeTable' | 'rope' | 'rmsnorm' | 'swiglu' | 'add' | 'axpy' | 'firstNonfinite'; ms: number };
