// The one door from the model to the kernels: every kernel call the decoder and sessions make
// goes through Ops, which splits the big ones across the pool's threads when the work is worth it.
// Chunks keep every output element on the code path it takes in one call, so results are
// bit-identical to one thread, whoever runs which chunk: products by output columns in multiples
// of the kernels' matmul_split_cols, attention by queries in multiples of attn_query_tile, or
// whole items of a batch (heads) at a time; decode attention by segments of keys that depend on
// the context length alone, merged in a fixed order.
//
// A threaded kernel's arguments are laid out in one place each (the put* functions), as a task of
// the pool's protocol (n1 × n2 calls whose arguments step by inc1 and inc2): a call not worth
// splitting runs the very same task on this thread.
import type { Kernels } from '../host/kernels.js';
import type { ThreadPool } from '../host/pool.js';
import { arg, ARGS, ATTN_BLOCK, ATTN_BLOCK_LATENT, ATTN_FINISH, ATTN_INIT, GEMV_ROWS_BF16, GEMV_ROWS_F32, MATMUL_NN, MATMUL_NT,
  MATMUL_NT_BF16, MATMUL_NT_F16, MATMUL_NT_Q4, MATMUL_NT_Q4K, MATMUL_NT_Q6K, MATMUL_NT_Q8, MATVEC_BATCH, MAX_CHUNKS, MAX_TASKS, PROBE_READ, PROBE_READ_PAIRS, QGEMM_Q4, QGEMM_Q8, VECMAT_BATCH } from '../host/protocol.js';
import { matrixBytes, SUPER_BLOCK_BYTES, type Matrix, type Quantizer } from './weights.js';

/** read(): the least bytes a chunk reads. */
const READ_CHUNK = 16 << 20;
// Rates are rough, for this kind of machine: what matters is that a share stays well above the
// hand-off (a few µs).
/** Multiply-adds per ns: GEMM (compute-bound) and GEMV (bound by reading 4 bytes per weight). */
const GEMM_RATE = 20, GEMV_RATE = 4, ATTN_RATE = 8;
/**
 * GEMV chunks: each starts new streams, which the prefetchers take a while to follow, so a GEMV is
 * split into as few chunks as keep every thread busy (a multiple of the threads), more only where
 * each would still read GEMV_PIECE_BYTES of every panel.
 */
const GEMV_PIECE_BYTES = 8 << 20;
/** Chunks per thread at most: enough to even out a late or slow thread, few enough to stay long. */
const CHUNKS_PER_THREAD = 4;
/**
 * One item's attention over a long context (decode) is split by keys into segments, each with its
 * own state, merged in order at the end (flash-decoding): threads then share the keys instead of
 * each reading all of them. At most this many segments, of at least MIN_SEGMENT keys; the split
 * depends on the shape alone, never on the threads, so results stay bit-identical.
 */
const MAX_SEGMENTS = 8, MIN_SEGMENT = 256;
const F = 4; // bytes per f32
/** Narrow weights: rows of W a chunk holds are a multiple of this; and a rough GEMM rate (they re-widen W per row of A). */
const NARROW_ROWS = 8, NARROW_GEMM_RATE = 6;
/** qgemm_q8 / qgemm_q4's arguments (aq, ad, wq, wd, c, ldc, m, k, n, pack): the per-thread one. */
const QGEMM_PACK = 9;
/** Bytes of WebAssembly memory quantising weights at load stages f32 rows in (a row at least). */
const QUANTIZE_STAGING_BYTES = 1 << 20;

/** Bytes of a Q8_K activation record per 256 values (quantize_q8k_act): 16 i16 sums and the f32 scale. */
const ACT_RECORD = 36;

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
export type ScratchKernels = Pick<Kernels, 'matmul_pack_bytes' | 'qgemm_pack_bytes' | 'attn_scratch_bytes' | 'latent_query_bytes'>;

/**
 * Bytes of packing scratch a product of depth k and n columns needs: matmul_nt / matmul_nn's,
 * or qgemm's (q8 / q4 weights) when k is a whole number of blocks and that is more.
 */
export function matmulPackBytes(kernels: ScratchKernels, k: number, n: number): number {
  return Math.max(kernels.matmul_pack_bytes(k, n), k % 32 === 0 ? kernels.qgemm_pack_bytes(k) : 0);
}

/** Bytes of scratch attention needs for `queries` queries at once. */
export function attnScratchBytes(kernels: ScratchKernels, queries: number): number {
  return kernels.attn_scratch_bytes(queries);
}

/** Bytes of one segment's state for nq queries of dv values: acc, m, l, and attn_block's scratch. */
function segmentBytes(k: ScratchKernels, nq: number, dv: number): number {
  return Math.ceil(((nq * dv + 2 * nq) * F + k.attn_scratch_bytes(nq)) / 64) * 64;
}

/** Bytes attention() needs (the `segments` buffer of Ops) to split nq queries of dv values by keys. */
export function attnSegmentBytes(k: ScratchKernels, nq: number, dv: number): number {
  return (MAX_SEGMENTS - 1) * segmentBytes(k, nq, dv);
}

/**
 * Where to cut nq queries (`steps` runs of `step`) into `chunks` runs of steps doing equal work:
 * query r, at position qPos0 + ⌊r / qGroup⌋, reads the keys up to its position (causal), so in a
 * prefill the later queries cost more. Returns chunks + 1 step indices, from 0 to steps, each
 * chunk ≥ 1 step.
 */
export function queryCuts(chunks: number, steps: number, step: number, nq: number, qPos0: number, qGroup: number,
                   kPos0: number, n: number): number[] {
  const work = (r: number) => Math.min(n, Math.max(0, qPos0 + Math.floor(r / qGroup) - kPos0 + 1)) + 1;
  const upTo = [0]; // upTo[j]: work of steps 0 … j − 1
  for (let j = 0; j < steps; j++) {
    let w = 0;
    for (let r = j * step; r < Math.min(nq, (j + 1) * step); r++) w += work(r);
    upTo.push(upTo[j] + w);
  }
  const cuts = [0];
  for (let c = 1; c < chunks; c++) {
    let j = cuts[c - 1] + 1;
    while (j < steps - (chunks - c) && upTo[j] < upTo[steps] * c / chunks) j++;
    cuts.push(j);
  }
  cuts.push(steps);
  return cuts;
}

// ---------------------------------------------------------------------------------------------
// The calls, as records: a swap of two numbers of the same kind is then a visible name, not a
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
const LATENT_CODES: Record<LatentFormat, number> = { bf16: 1, int8: 2, int4: 3 };

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

// ---------------------------------------------------------------------------------------------
// Argument layouts, each written once: a kernel's arguments in its order, from a record. The same
// function writes a task's increments (inc1, inc2) from a record of steps.

/** matmul_nt / matmul_nn. */
interface Mm { a: number; lda: number; b: number; ldb: number; c: number; ldc: number; m: number; k: number; n: number; pack: number; acc: number }
const MM_PACK = 9; // the argument each thread offsets to its own packing scratch
function putMatmul(D: Float64Array, x: number, p: Mm): void {
  D[x] = p.a; D[x + 1] = p.lda; D[x + 2] = p.b; D[x + 3] = p.ldb; D[x + 4] = p.c; D[x + 5] = p.ldc;
  D[x + 6] = p.m; D[x + 7] = p.k; D[x + 8] = p.n; D[x + MM_PACK] = p.pack; D[x + 10] = p.acc;
}
const MM_STEPS: Mm = { a: 0, lda: 0, b: 0, ldb: 0, c: 0, ldc: 0, m: 0, k: 0, n: 0, pack: 0, acc: 0 };

/** matvec_batch (nt) / vecmat_batch: x, its rows y, and W (n rows of k for matvec, k rows of n for vecmat). */
interface Gemv { nt: boolean; x: number; xInc: number; w: number; ldw: number; wInc: number; y: number; yInc: number;
  k: number; n: number; count: number; far: number }
function putGemv(D: Float64Array, x: number, p: Gemv): void {
  if (p.nt) {
    D[x] = p.w; D[x + 1] = p.ldw; D[x + 2] = p.wInc; D[x + 3] = p.x; D[x + 4] = p.xInc; D[x + 5] = p.y; D[x + 6] = p.yInc;
    D[x + 7] = p.n; D[x + 8] = p.k;
  } else {
    D[x] = p.x; D[x + 1] = p.xInc; D[x + 2] = p.w; D[x + 3] = p.ldw; D[x + 4] = p.wInc; D[x + 5] = p.y; D[x + 6] = p.yInc;
    D[x + 7] = p.k; D[x + 8] = p.n;
  }
  D[x + 9] = p.count; D[x + 10] = p.far; D[x + 11] = 0; // acc: false
}

/**
 * matmul_nt_bf16 / _f16 and gemv_rows_f32 / _bf16 (a, lda, w, ldw, c, ldc, m, k, n), matmul_nt_q8 / _q4
 * (aq, ad, wq, wd, c, ldc, m, k, n); then acc (default false).
 * _q4k / _q6k take one argument fewer (aq, ar, w, c, ldc, m, k, n, acc): their acc is the 9th, given as 0.
 */
function putNarrow(D: Float64Array, x: number, args: number[], acc = false): void {
  for (let i = 0; i < 9; i++) D[x + i] = args[i];
  D[x + 9] = acc ? 1 : 0;
}

/** attn_block's arguments; attn_init and attn_finish take some of them. */
interface Attn {
  q: number; qStride: number; nq: number; qPos0: number; qGroup: number; dk1: number; dk2: number;
  k1: number; k1Stride: number; k2: number; k2Stride: number; v: number; vStride: number; dv: number;
  n: number; kPos0: number; scale: number; m: number; l: number; acc: number; accStride: number; scratch: number;
  /** 0: attn_block; else attn_block_latent's format code. */
  fmt: number;
}
const ATTN_STEPS: Attn = { fmt: 0, q: 0, qStride: 0, nq: 0, qPos0: 0, qGroup: 0, dk1: 0, dk2: 0, k1: 0, k1Stride: 0, k2: 0, k2Stride: 0,
  v: 0, vStride: 0, dv: 0, n: 0, kPos0: 0, scale: 0, m: 0, l: 0, acc: 0, accStride: 0, scratch: 0 };
function putAttnInit(D: Float64Array, x: number, a: Attn): void {
  D[x] = a.m; D[x + 1] = a.l; D[x + 2] = a.acc; D[x + 3] = a.nq; D[x + 4] = a.dv; D[x + 5] = a.accStride;
}
function putAttnBlock(D: Float64Array, x: number, a: Attn): void {
  D[x] = a.q; D[x + 1] = a.qStride; D[x + 2] = a.nq; D[x + 3] = a.qPos0; D[x + 4] = a.qGroup; D[x + 5] = a.dk1; D[x + 6] = a.dk2;
  D[x + 7] = a.k1; D[x + 8] = a.k1Stride; D[x + 9] = a.k2; D[x + 10] = a.k2Stride; D[x + 11] = a.v; D[x + 12] = a.vStride;
  D[x + 13] = a.dv; D[x + 14] = a.n; D[x + 15] = a.kPos0; D[x + 16] = a.scale; D[x + 17] = a.m; D[x + 18] = a.l;
  D[x + 19] = a.acc; D[x + 20] = a.accStride; D[x + 21] = a.scratch;
}
/** attn_block_latent: latent rows at k1 (k1Stride 4-byte units apart), d_c = dk1, d_r = dk2. */
function putAttnBlockLatent(D: Float64Array, x: number, a: Attn): void {
  D[x] = a.fmt; D[x + 1] = a.q; D[x + 2] = a.qStride; D[x + 3] = a.nq; D[x + 4] = a.qPos0; D[x + 5] = a.qGroup; D[x + 6] = a.dk1;
  D[x + 7] = a.dk2; D[x + 8] = a.k1; D[x + 9] = a.k1Stride; D[x + 10] = a.n; D[x + 11] = a.kPos0; D[x + 12] = a.scale;
  D[x + 13] = a.m; D[x + 14] = a.l; D[x + 15] = a.acc; D[x + 16] = a.accStride; D[x + 17] = a.scratch;
}
/** attn_finish in place: acc / l back into acc. */
function putAttnFinish(D: Float64Array, x: number, a: Attn): void {
  D[x] = a.l; D[x + 1] = a.acc; D[x + 2] = a.accStride; D[x + 3] = a.nq; D[x + 4] = a.dv; D[x + 5] = a.acc; D[x + 6] = a.accStride;
}

/** Each phase of attention: its kernel and argument layout. */
const PHASES: [number, number, (D: Float64Array, x: number, a: Attn) => void][] = [
  [INIT, ATTN_INIT, putAttnInit], [BLOCK, ATTN_BLOCK, putAttnBlock], [FINISH, ATTN_FINISH, putAttnFinish]];

/** Per item of an attention call: how its arguments step from one item to the next. */
interface AttnSteps { q: number; k1: number; v: number; acc: number }

/** Where tasks go: the pool (a split call), or Here (this thread, at once). */
interface Tasks {
  task(fn: number, n1?: number, n2?: number, threadArg?: number, threadStride?: number): number;
  readonly args: Float64Array;
}

/**
 * Tasks run on this thread, each once the next is appended or at run(): one call not worth
 * splitting, with its arguments laid out exactly as for the pool.
 */
class Here implements Tasks {
  readonly args = new Float64Array(3 * ARGS);
  private fn = -1;
  private n1 = 0;
  private n2 = 0;
  /** FNS[fn] called with the arguments of call (i, j), each with the kernel's own arity. */
  private readonly calls: ((i: number, j: number) => void)[];

  constructor(k: Kernels) {
    // Integer arguments as int32 (what the kernels' i32 parameters make of them anyway): an int
    // reaches WebAssembly faster than a double; attn_block's scale (argument 16) is a float.
    const D = this.args, a = (x: number, i: number, j: number) => arg(D, 0, x, i, j) | 0;
    const calls: ((i: number, j: number) => void)[] = [];
    calls[MATMUL_NT] = (i, j) => k.matmul_nt(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j), a(6, i, j),
      a(7, i, j), a(8, i, j), a(9, i, j), a(10, i, j) !== 0);
    calls[MATMUL_NN] = (i, j) => k.matmul_nn(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j), a(6, i, j),
      a(7, i, j), a(8, i, j), a(9, i, j), a(10, i, j) !== 0);
    calls[MATVEC_BATCH] = (i, j) => k.matvec_batch(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j),
      a(6, i, j), a(7, i, j), a(8, i, j), a(9, i, j), a(10, i, j), a(11, i, j) !== 0);
    calls[VECMAT_BATCH] = (i, j) => k.vecmat_batch(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j),
      a(6, i, j), a(7, i, j), a(8, i, j), a(9, i, j), a(10, i, j), a(11, i, j) !== 0);
    calls[ATTN_INIT] = (i, j) => k.attn_init(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j));
    calls[ATTN_BLOCK] = (i, j) => k.attn_block(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j),
      a(6, i, j), a(7, i, j), a(8, i, j), a(9, i, j), a(10, i, j), a(11, i, j), a(12, i, j), a(13, i, j), a(14, i, j),
      a(15, i, j), arg(D, 0, 16, i, j), a(17, i, j), a(18, i, j), a(19, i, j), a(20, i, j), a(21, i, j));
    calls[ATTN_BLOCK_LATENT] = (i, j) => k.attn_block_latent(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j),
      a(5, i, j), a(6, i, j), a(7, i, j), a(8, i, j), a(9, i, j), a(10, i, j), a(11, i, j), arg(D, 0, 12, i, j), a(13, i, j),
      a(14, i, j), a(15, i, j), a(16, i, j), a(17, i, j));
    calls[ATTN_FINISH] = (i, j) => k.attn_finish(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j), a(6, i, j));
    const narrow = (f: (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number, a7: number, a8: number,
      acc: boolean) => void) => (i: number, j: number) => f(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j),
      a(6, i, j), a(7, i, j), a(8, i, j), a(9, i, j) !== 0);
    calls[MATMUL_NT_BF16] = narrow(k.matmul_nt_bf16);
    calls[MATMUL_NT_F16] = narrow(k.matmul_nt_f16);
    calls[MATMUL_NT_Q8] = narrow(k.matmul_nt_q8);
    calls[MATMUL_NT_Q4] = narrow(k.matmul_nt_q4);
    const superBlocks = (f: (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number, a7: number,
      acc: boolean) => void) => (i: number, j: number) => f(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j),
      a(6, i, j), a(7, i, j), a(8, i, j) !== 0);
    calls[MATMUL_NT_Q4K] = superBlocks(k.matmul_nt_q4k);
    calls[MATMUL_NT_Q6K] = superBlocks(k.matmul_nt_q6k);
    calls[QGEMM_Q8] = (i, j) => k.qgemm_q8(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j), a(6, i, j),
      a(7, i, j), a(8, i, j), a(9, i, j));
    calls[QGEMM_Q4] = (i, j) => k.qgemm_q4(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j), a(6, i, j),
      a(7, i, j), a(8, i, j), a(9, i, j));
    calls[GEMV_ROWS_F32] = narrow(k.gemv_rows_f32);
    calls[GEMV_ROWS_BF16] = narrow(k.gemv_rows_bf16);
    calls[PROBE_READ] = (i, j) => k.probe_read(a(0, i, j), a(1, i, j), a(2, i, j));
    calls[PROBE_READ_PAIRS] = (i, j) => k.probe_read_pairs(a(0, i, j), a(1, i, j), a(2, i, j));
    this.calls = calls;
  }

  task(fn: number, n1 = 1, n2 = 1): number {
    this.run();
    this.fn = fn; this.n1 = n1; this.n2 = n2;
    // A single call reads its steps times 0: they need zeroing only for a task of several.
    if (n1 > 1 || n2 > 1) this.args.fill(0, ARGS);
    return 0;
  }

  /** Run the task appended last, if not yet run. */
  run(): void {
    if (this.fn < 0) return;
    const f = this.calls[this.fn], n1 = this.n1, n2 = this.n2;
    this.fn = -1;
    for (let i = 0; i < n1; i++) for (let j = 0; j < n2; j++) f(i, j);
  }
}

/**
 * The kernels as the model calls them, split across the pool's threads when the work is big
 * enough, else run on this thread. Holds per-thread scratch for matmul packing and the state of
 * decode attention's segments.
 */
export class Ops {
  readonly pool: ThreadPool | null;
  readonly threads: number;
  /** The least work (ns, estimated) worth a chunk of its own. Tests set 0 to split everything, always. */
  minChunkNs = 20_000;
  /** The fewest keys in a segment of a split by keys. Tests lower it to split short contexts. */
  minSegment = MIN_SEGMENT;
  /** Called after every op with its name, wall time and call (profiling; scripts/profile-step.ts). */
  observer: ((e: OpEvent) => void) | null = null;
  private readonly k: Kernels;
  private readonly here: Here;
  private readonly pack: number;
  private readonly packBytes: number;
  private readonly segments: number;
  private readonly segmentsBytes: number;
  /** Activations quantised for q8/q4 products: actBytes at act (actQuantBytes of the largest). */
  private readonly act: number;
  private readonly actBytes: number;
  // The kernels' tiling, read from the build that runs (see assembly/matmul.ts, attention.ts).
  private readonly splitCols: number;
  private readonly vecL1: number;
  private readonly gemmRows: number;
  /**
   * Rows of A from 2 up to which a product with one weight matrix takes the multi-row GEMV kernels
   * (gemv-rows.ts; the kernels' gemv_rows_max). bench/batch.ts sets 1 to time the paths without them beside.
   */
  rowsMax: number;
  private readonly queryTile: number;

  /**
   * `pack` holds `threads` blocks of `packBytes` (the largest product's packing scratch);
   * `segments` holds `segmentsBytes` (attnSegmentBytes of the largest split by keys), or none.
   */
  constructor(k: Kernels, pool: ThreadPool | null, pack: number, packBytes: number, segments = 0, segmentsBytes = 0,
              act = 0, actBytes = 0) {
    this.k = k;
    this.act = act;
    this.actBytes = actBytes;
    this.here = new Here(k);
    this.pool = pool;
    this.threads = pool?.threads ?? 1;
    this.pack = pack;
    this.packBytes = packBytes;
    this.segments = segments;
    this.segmentsBytes = segmentsBytes;
    this.splitCols = k.matmul_split_cols();
    this.vecL1 = k.vec_l1_floats();
    this.gemmRows = k.matmul_gemm_min_rows();
    this.rowsMax = k.gemv_rows_max();
    this.queryTile = k.attn_query_tile();
  }

  private start(): number {
    return this.observer ? performance.now() : 0;
  }

  private done(e: OpEvent): void {
    this.observer?.(e);
  }

  // -------------------------------------------------------------------------------------------
  // Calls that run on this thread.

  /** out[t, :] = row ids[t] of `table`, widened to f32, for t < count; ids are i32 at `ids`. */
  embed(table: Matrix, ids: number, count: number, out: number): void {
    const t0 = this.start();
    const k = this.k, dim = table.cols;
    switch (table.format) {
      case 'f32': k.embed(table.ptr, dim, ids, count, out); break;
      case 'bf16': k.embed_bf16(table.ptr, dim, ids, count, out); break;
      case 'f16': k.embed_f16(table.ptr, dim, ids, count, out); break;
      case 'q8': k.embed_q8(table.ptr, table.scales, dim, ids, count, out); break;
      case 'q4': k.embed_q4(table.ptr, table.scales, dim, ids, count, out); break;
      case 'q4k': k.embed_q4k(table.ptr, dim, ids, count, out); break;
      case 'q6k': k.embed_q6k(table.ptr, dim, ids, count, out); break;
    }
    if (this.observer) this.done({ op: 'embed', ms: performance.now() - t0 });
  }

  ropeTable(c: RopeTableCall): void {
    const t0 = this.start();
    this.k.rope_table(c.freqs, c.half, c.pos0, c.count, c.scale, c.cos, c.sin);
    if (this.observer) this.done({ op: 'ropeTable', ms: performance.now() - t0 });
  }

  rope(c: RopeCall): void {
    const t0 = this.start();
    this.k.rope_apply(c.x.ptr, c.rows, c.x.stride, c.heads, c.headStride, c.dim, c.table.cos, c.table.sin, c.style === 'half' ? 1 : 0);
    if (this.observer) this.done({ op: 'rope', ms: performance.now() - t0 });
  }

  rmsnorm(c: RmsNormCall): void {
    const t0 = this.start();
    this.k.rmsnorm(c.x.ptr, c.x.stride, c.weight, c.y.ptr, c.y.stride, c.rows, c.dim, c.eps);
    if (this.observer) this.done({ op: 'rmsnorm', ms: performance.now() - t0 });
  }

  swiglu(c: SwigluCall): void {
    const t0 = this.start();
    this.k.swiglu(c.gu.ptr, c.gu.stride, c.out.ptr, c.out.stride, c.rows, c.n);
    if (this.observer) this.done({ op: 'swiglu', ms: performance.now() - t0 });
  }

  /** y[i] += x[i] for i < n. */
  add(y: number, x: number, n: number): void {
    const t0 = this.start();
    this.k.add(y, x, n);
    if (this.observer) this.done({ op: 'add', ms: performance.now() - t0 });
  }

  /** y[i] += alpha · x[i] for i < n. */
  axpy(y: number, x: number, alpha: number, n: number): void {
    const t0 = this.start();
    this.k.axpy(y, x, alpha, n);
    if (this.observer) this.done({ op: 'axpy', ms: performance.now() - t0 });
  }

  /** Index of the first NaN or ±Infinity among n floats at x, or −1. */
  firstNonfinite(x: number, n: number): number {
    const t0 = this.start();
    const i = this.k.first_nonfinite(x, n);
    if (this.observer) this.done({ op: 'firstNonfinite', ms: performance.now() - t0 });
    return i;
  }

  /** Narrow latent rows from f32 ones (a new token's cache rows). */
  latentStore(c: LatentCall): void {
    this.k.latent_store(LATENT_CODES[c.format], c.f32.ptr, c.f32.stride, c.rows, c.dc, c.dr, c.narrow.ptr, c.narrow.stride);
  }

  /** f32 rows from narrow latent ones (naive attention's block of keys). */
  latentWiden(c: LatentCall): void {
    this.k.latent_widen(LATENT_CODES[c.format], c.narrow.ptr, c.narrow.stride, c.rows, c.dc, c.dr, c.f32.ptr, c.f32.stride);
  }

  /** Query records for int8/int4 rows from f32 [q̃ ; q^R] queries. */
  latentQuery(c: LatentCall): void {
    this.k.latent_query(c.f32.ptr, c.f32.stride, c.rows, c.dc, c.dr, c.narrow.ptr, c.narrow.stride);
  }

  /** Bytes of one row, and of one query record, in a narrow format (the kernels' own layout). */
  latentBytes(format: LatentFormat, dc: number, dr: number): { row: number; query: number } {
    const f = LATENT_CODES[format];
    return { row: this.k.latent_row_bytes(f, dc, dr), query: this.k.latent_query_bytes(f, dc, dr) };
  }

  // -------------------------------------------------------------------------------------------
  // Calls split across threads.

  /**
   * How many chunks for work of `ns` (estimated) made of `units` indivisible parts, `tasks` kernel
   * calls each; for a GEMV, `panelBytes` is the weight bytes of each of its panels (0 otherwise).
   */
  private chunks(ns: number, units: number, tasks = 1, panelBytes = 0): number {
    if (!this.pool || (this.minChunkNs > 0 && !this.pool.useful)) return 1;
    const byCost = this.minChunkNs > 0 ? Math.floor(ns / this.minChunkNs) : Infinity;
    const T = this.threads;
    const byBytes = this.minChunkNs > 0 && panelBytes > 0 ? Math.max(T, T * Math.floor(panelBytes / GEMV_PIECE_BYTES / T)) : Infinity;
    const most = Math.min(CHUNKS_PER_THREAD * this.threads, MAX_CHUNKS, Math.floor(MAX_TASKS / tasks));
    return Math.max(1, Math.min(units, byCost, byBytes, most));
  }

  /** The pool for a call split into `chunks`, or this thread for one chunk. */
  private tasks(chunks: number): Tasks {
    return chunks > 1 ? this.pool! : this.here;
  }

  /** Run the tasks a call appended: on every thread, or here. */
  private run(chunks: number): void {
    if (chunks > 1) this.pool!.run();
    else this.here.run();
  }

  /**
   * y = x · Wᵀ for a weight matrix in column panels (weights.ts Matrix): panel p's product is added
   * to the earlier ones', in order, by the thread that owns the columns.
   */
  linear(c: LinearCall): void {
    const t0 = this.start();
    const w = c.w;
    if (w.format !== 'f32') this.narrowLinear(c);
    else this.product(true, c.x.ptr, c.x.stride, w.ptr, w.cols, w.panelCols, c.y.ptr, c.y.stride, c.rows, w.cols, w.rows, 1, 0, 0, 0);
    if (this.observer) this.done({ op: 'linear', ms: performance.now() - t0, call: c });
  }

  /**
   * linear() for bf16 / f16 / q8 / q4 / q4k / q6k weights (one panel): for q8 / q4 the activation
   * rows are quantised here first (quantize_q8_act; q4k / q6k: quantize_q8k_act), once for every
   * chunk; q8 / q4 from gemmRows rows on run as a packed GEMM (assembly/qgemm.ts, each thread
   * packing into its own scratch). Split by rows of W, in runs of NARROW_ROWS (and of whole qgemm
   * panels); each output is computed the same way whichever chunk holds it.
   */
  private narrowLinear(c: LinearCall): void {
    const w = c.w, k = w.cols, n = w.rows, m = c.rows;
    if (m <= 0 || n <= 0) return;
    const quant = w.format === 'q8' || w.format === 'q4';
    const superBlocks = w.format === 'q4k' || w.format === 'q6k';
    const codeBytes = w.format === 'q8' ? k : w.format === 'q4' ? k / 2
      : superBlocks ? (k / 256) * SUPER_BLOCK_BYTES[w.format as 'q4k'] : 2 * k;
    const scaleBytes = k / 8; // one f32 per 32 weights
    const records = (k / 256) * ACT_RECORD;
    if (superBlocks) {
      if (m * (k + records) > this.actBytes) throw new Error(`Ops: ${m} rows of ${k} activations exceed the act scratch`);
      for (let r = 0; r < m; r++) this.k.quantize_q8k_act(c.x.ptr + r * c.x.stride * F, k, this.act + r * k, this.act + m * k + r * records);
    }
    if (quant) {
      if (m * (k + scaleBytes) > this.actBytes) throw new Error(`Ops: ${m} rows of ${k} activations exceed the act scratch`);
      for (let r = 0; r < m; r++) this.k.quantize_q8_act(c.x.ptr + r * c.x.stride * F, k, this.act + r * k, this.act + m * k + r * scaleBytes);
    }
    // One row: matvec (inside matmul_nt_*); bf16 with 2 to rowsMax: the multi-row GEMV, which also
    // streams W once; q8 / q4 with more rows, and a pack scratch that holds a panel: the packed GEMM.
    const rowsKernel = w.format === 'bf16' && m >= 2 && m <= this.rowsMax;
    const packed = !rowsKernel && quant && m >= this.gemmRows && this.k.qgemm_pack_bytes(k) <= this.packBytes;
    const gemv = m === 1 || rowsKernel;
    const ns = m * k * n / (gemv ? GEMV_RATE : packed ? GEMM_RATE : NARROW_GEMM_RATE);
    const unit = packed ? lcm(NARROW_ROWS, this.k.qgemm_split_cols()) : NARROW_ROWS;
    const units = Math.ceil(n / unit);
    const chunks = this.chunks(ns, units, 1, gemv ? matrixBytes(w.format, n, k) : 0);
    const out = this.tasks(chunks), D = out.args;
    const fn = rowsKernel ? GEMV_ROWS_BF16 : packed ? (w.format === 'q8' ? QGEMM_Q8 : QGEMM_Q4)
      : { bf16: MATMUL_NT_BF16, f16: MATMUL_NT_F16, q8: MATMUL_NT_Q8, q4: MATMUL_NT_Q4, q4k: MATMUL_NT_Q4K, q6k: MATMUL_NT_Q6K }[w.format as 'bf16'];
    for (let s = 0; s < chunks; s++) {
      if (chunks > 1) this.pool!.chunk();
      const n0 = unit * Math.floor(units * s / chunks), n1 = Math.min(n, unit * Math.floor(units * (s + 1) / chunks));
      const x = packed ? out.task(fn, 1, 1, QGEMM_PACK, this.packBytes) : out.task(fn);
      if (superBlocks) {
        putNarrow(D, x, [this.act, this.act + m * k, w.ptr + n0 * codeBytes, c.y.ptr + n0 * F, c.y.stride, m, k, n1 - n0, 0]);
      } else if (quant) {
        putNarrow(D, x, [this.act, this.act + m * k, w.ptr + n0 * codeBytes, w.scales + n0 * scaleBytes, c.y.ptr + n0 * F, c.y.stride, m, k, n1 - n0]);
        if (packed) D[x + QGEMM_PACK] = this.pack;
      } else {
        putNarrow(D, x, [c.x.ptr, c.x.stride, w.ptr + n0 * codeBytes, k, c.y.ptr + n0 * F, c.y.stride, m, k, n1 - n0]);
      }
    }
    this.run(chunks);
  }

  matmul(c: MatmulCall): void {
    const t0 = this.start();
    this.product(c.nt, c.a.ptr, c.a.stride, c.b.ptr, c.b.stride, c.k, c.c.ptr, c.c.stride, c.m, c.k, c.n, c.batch ?? 1,
      c.a.step ?? 0, c.b.step ?? 0, c.c.step ?? 0);
    if (this.observer) this.done({ op: 'matmul', ms: performance.now() - t0, call: c });
  }

  /**
   * matmul with B in column panels of `panelCols` (nt, batch 1; panelCols = k: one panel of row
   * stride ldb). Split by whole products when there are enough of them, else by columns of C in
   * multiples of splitCols; a chunk runs every panel of its columns.
   */
  private product(nt: boolean, a: number, lda: number, b: number, ldb: number, panelCols: number, c: number, ldc: number,
                  m: number, k: number, n: number, batch: number, aInc: number, bInc: number, cInc: number): void {
    if (m <= 0 || n <= 0 || batch <= 0) return;
    if (m === 1 && batch > 1 && panelCols >= k) {
      this.gemvBatch(nt, a, aInc, b, ldb, bInc, c, cInc, k, n, batch);
      return;
    }
    // Panel p: columns k0 … k0 + width of A, at b + n·k0 floats, row stride width.
    const panels: { k0: number; width: number; b: number; ldb: number }[] = [];
    if (panelCols >= k) panels.push({ k0: 0, width: k, b, ldb });
    else {
      for (let k0 = 0; k0 < k; k0 += panelCols) {
        const width = Math.min(panelCols, k - k0);
        panels.push({ k0, width, b: b + n * k0 * F, ldb: width });
      }
    }
    // A few rows against one weight matrix (batched decode): the multi-row GEMV, W streamed once.
    const rowsKernel = nt && batch === 1 && m >= 2 && m <= this.rowsMax;
    const gemv = m < this.gemmRows || rowsKernel, COLS = this.splitCols;
    const ns = batch * m * k * n / (gemv ? GEMV_RATE : GEMM_RATE);
    const byItems = batch >= 2 * this.threads;
    // vecmat picks its loop by n, so a column split must leave every chunk on the same side.
    const groups = !nt && gemv && n > this.vecL1 ? 1 : Math.ceil(n / COLS);
    const chunks = this.chunks(ns, byItems ? batch : groups, panels.length, gemv ? batch * Math.min(k, panelCols) * n * F : 0);
    const out = this.tasks(chunks), D = out.args;
    const fn = nt ? MATMUL_NT : MATMUL_NN;
    const steps = batch > 1 ? { ...MM_STEPS, a: aInc, b: bInc, c: cInc } : null; // zero until written
    for (let s = 0; s < chunks; s++) {
      if (chunks > 1) this.pool!.chunk();
      for (const [p, pl] of panels.entries()) {
        let x: number;
        if (rowsKernel) {
          const n0 = COLS * Math.floor(groups * s / chunks), n1 = Math.min(n, COLS * Math.floor(groups * (s + 1) / chunks));
          putNarrow(D, out.task(GEMV_ROWS_F32), [a + pl.k0 * F, lda, pl.b + n0 * pl.ldb * F, pl.ldb, c + n0 * F, ldc, m, pl.width,
            n1 - n0], p > 0);
          continue;
        }
        if (byItems || chunks === 1) {
          const i0 = Math.floor(batch * s / chunks), i1 = Math.floor(batch * (s + 1) / chunks);
          x = out.task(fn, i1 - i0, 1, MM_PACK, this.packBytes);
          putMatmul(D, x, { a: a + i0 * aInc + pl.k0 * F, lda, b: pl.b + i0 * bInc, ldb: pl.ldb, c: c + i0 * cInc, ldc,
            m, k: pl.width, n, pack: this.pack, acc: p > 0 ? 1 : 0 });
        } else {
          const n0 = COLS * Math.floor(groups * s / chunks);
          const n1 = Math.min(n, COLS * Math.floor(groups * (s + 1) / chunks));
          x = out.task(fn, batch, 1, MM_PACK, this.packBytes);
          // Columns n0… of C are rows n0… of B (nt) or its columns n0… (nn).
          putMatmul(D, x, { a: a + pl.k0 * F, lda, b: pl.b + (nt ? n0 * pl.ldb : n0) * F, ldb: pl.ldb, c: c + n0 * F, ldc,
            m, k: pl.width, n: n1 - n0, pack: this.pack, acc: p > 0 ? 1 : 0 });
        }
        if (steps) putMatmul(D, x + ARGS, steps);
      }
    }
    this.run(chunks);
  }

  /**
   * product() for one row of A and a batch (decode's per-head products): items i and i + ⌊batch/2⌋
   * go to one call of matvec_batch / vecmat_batch, which reads the pair side by side; an odd
   * batch's last item goes alone. Split by pairs, or by columns of C when there are too few.
   */
  private gemvBatch(nt: boolean, a: number, aInc: number, b: number, ldb: number, bInc: number, c: number, cInc: number,
                    k: number, n: number, batch: number): void {
    const half = batch >> 1, units = half + (batch & 1), COLS = this.splitCols;
    const byUnits = units >= 2 * this.threads;
    const groups = !nt && n > this.vecL1 ? 1 : Math.ceil(n / COLS);
    const chunks = this.chunks(batch * k * n / GEMV_RATE, byUnits ? units : groups, 2, batch * k * n * F);
    const out = this.tasks(chunks), fn = nt ? MATVEC_BATCH : VECMAT_BATCH;
    // Units u0 … u1 − 1 (the pairs, then the odd item) for columns n0 … n1 − 1 of C, which are
    // rows n0… of B (nt) or its columns n0… (nn).
    const put = (u0: number, u1: number, n0: number, n1: number) => {
      const parts: [number, number, number][] = []; // [first item, count, far]
      if (u0 < half) parts.push([u0, Math.min(u1, half) - u0, half]);
      if (u1 > half) parts.push([2 * half, 1, 0]);
      for (const [i, count, far] of parts) {
        putGemv(out.args, out.task(fn), { nt, x: a + i * aInc, xInc: aInc, w: b + i * bInc + (nt ? n0 * ldb : n0) * F, ldw: ldb,
          wInc: bInc, y: c + i * cInc + n0 * F, yInc: cInc, k, n: n1 - n0, count, far });
      }
    };
    if (chunks === 1) put(0, units, 0, n);
    else {
      for (let s = 0; s < chunks; s++) {
        this.pool!.chunk();
        if (byUnits) put(Math.floor(units * s / chunks), Math.floor(units * (s + 1) / chunks), 0, n);
        else {
          const n0 = COLS * Math.floor(groups * s / chunks);
          put(0, units, n0, Math.min(n, COLS * Math.floor(groups * (s + 1) / chunks)));
        }
      }
    }
    this.run(chunks);
  }

  /**
   * The read probes on every thread (the benchmarks' in-process bandwidth probe): [ptr, ptr + bytes)
   * in up to 64 chunks of 16 MiB or more, each read by probe_read (one stream) or probe_read_pairs
   * (two streams). Returns the bytes read.
   */
  read(ptr: number, bytes: number, pairs: boolean): number {
    const fn = pairs ? PROBE_READ_PAIRS : PROBE_READ, block = this.k.probe_read_block(pairs ? 1 : 0);
    const chunks = this.pool ? Math.max(1, Math.min(MAX_CHUNKS, Math.floor(bytes / READ_CHUNK))) : 1;
    // One chunk reads it all; more read whole pair blocks each.
    const size = chunks === 1 ? bytes : bytes / chunks - (bytes / chunks) % this.k.probe_read_block(1);
    const out = this.tasks(chunks), D = out.args;
    for (let c = 0; c < chunks; c++) {
      if (chunks > 1) this.pool!.chunk();
      const x = out.task(fn);
      D[x] = ptr + c * size; D[x + 1] = size; D[x + 2] = 1;
    }
    this.run(chunks);
    return chunks === 1 ? bytes - bytes % block : chunks * size;
  }

  /**
   * Split by items; one item by keys when the context is long and its state fits the segments
   * buffer (decode), else by queries.
   */
  attention(c: AttentionCall): void {
    const t0 = this.start();
    const q = c.queries, kk = c.keys, v = c.values, st = c.state;
    const a: Attn = { q: q.ptr, qStride: q.stride, nq: q.count, qPos0: q.pos0, qGroup: q.group, dk1: kk.dim,
      dk2: c.sharedKeys?.dim ?? 0, k1: kk.ptr, k1Stride: kk.stride, k2: c.sharedKeys?.ptr ?? 0, k2Stride: c.sharedKeys?.stride ?? 0,
      v: v.ptr, vStride: v.stride, dv: v.dim, n: kk.count, kPos0: kk.pos0, scale: c.scale, m: st.m, l: st.l,
      acc: st.acc.ptr, accStride: st.acc.stride, scratch: st.scratch, fmt: c.latent ? LATENT_CODES[c.latent] : 0 };
    this.attend(c.phases, c.items, c.perGroup, a, { q: q.step ?? 0, k1: kk.step ?? 0, v: v.step ?? 0, acc: st.acc.step ?? 0 });
    if (this.observer) this.done({ op: 'attention', ms: performance.now() - t0, call: c });
  }

  private attend(phases: number, count: number, perGroup: number, a: Attn, inc: AttnSteps): void {
    const nq = a.nq, n = a.n;
    if (count <= 0 || nq <= 0) return;
    const ns = (phases & BLOCK ? count * nq * Math.max(n, 1) * (a.dk1 + a.dk2 + a.dv) : count * nq * a.dv) / ATTN_RATE;
    const segment = count === 1 && phases & BLOCK ? this.segmentLength(n, nq, a.dv) : 0;
    if (segment) {
      this.attentionByKeys(phases, segment, ns, a);
      return;
    }
    // One item: split its queries in whole tiles, and in multiples of qGroup when the queries
    // have more than one position, so that each chunk's positions follow from its first.
    const tile = this.queryTile;
    const step = nq <= a.qGroup ? tile : lcm(tile, a.qGroup);
    const byItems = count > 1;
    const steps = Math.ceil(nq / step);
    // Split by queries, every chunk reads all the keys: one chunk per thread, not more.
    const chunks = this.chunks(ns, byItems ? count : Math.min(steps, this.threads));
    const out = this.tasks(chunks);
    if (chunks === 1) {
      this.putAttention(out, phases, Math.floor(count / perGroup), perGroup, perGroup, a, inc);
      if (count % perGroup) {
        const i = count - count % perGroup;
        this.putAttention(out, phases, 1, count % perGroup, perGroup, this.item(a, inc, i, perGroup), inc);
      }
      this.run(1);
      return;
    }
    const scratchPerQuery = this.k.attn_scratch_bytes(1);
    const cuts = byItems ? [] : queryCuts(chunks, steps, step, nq, a.qPos0, a.qGroup, a.kPos0, n);
    for (let s = 0; s < chunks; s++) {
      this.pool!.chunk();
      if (byItems) {
        // Items [i0, i1) as runs that share a key group: whole groups in one two-level task.
        const i0 = Math.floor(count * s / chunks), i1 = Math.floor(count * (s + 1) / chunks);
        const sc = a.scratch + i0 * nq * scratchPerQuery;
        let i = i0;
        while (i < i1) {
          const g = Math.floor(i / perGroup);
          let groups = 1, run = Math.min(i1, (g + 1) * perGroup) - i;
          if (i % perGroup === 0 && i1 - i >= perGroup) { groups = Math.floor((i1 - i) / perGroup); run = perGroup; }
          this.putAttention(out, phases, groups, run, perGroup, { ...this.item(a, inc, i, perGroup), scratch: sc }, inc);
          i += groups * run;
        }
      } else {
        const r0 = step * cuts[s], r1 = Math.min(nq, step * cuts[s + 1]);
        this.putAttention(out, phases, 1, 1, perGroup, { ...a, q: a.q + r0 * a.qStride * F, nq: r1 - r0,
          qPos0: a.qPos0 + Math.floor(r0 / a.qGroup), m: a.m + r0 * F, l: a.l + r0 * F, acc: a.acc + r0 * a.accStride * F,
          scratch: a.scratch + r0 * scratchPerQuery }, inc);
      }
    }
    this.run(chunks);
  }

  /** Item i's arguments: its queries, its group's keys and values, its state. */
  private item(a: Attn, inc: AttnSteps, i: number, perGroup: number): Attn {
    const g = Math.floor(i / perGroup), ml = i * a.nq * F;
    return { ...a, q: a.q + i * inc.q, k1: a.k1 + g * inc.k1, v: a.v + g * inc.v, m: a.m + ml, l: a.l + ml, acc: a.acc + i * inc.acc };
  }

  /** Keys per segment to split one item's n keys into (equal shares, rounded up to 4 keys), or 0: no split. */
  private segmentLength(n: number, nq: number, dv: number): number {
    const most = Math.min(MAX_SEGMENTS, Math.floor(n / this.minSegment), 1 + Math.floor(this.segmentsBytes / segmentBytes(this.k, nq, dv)));
    return most < 2 ? 0 : 4 * Math.ceil(n / most / 4);
  }

  /**
   * One item's attention by segments of `len` keys: segment 0 in the caller's state, segment
   * i > 0 from a fresh state in the segments buffer; then merged into segment 0 in order.
   */
  private attentionByKeys(phases: number, len: number, ns: number, a: Attn): void {
    const k = this.k, nq = a.nq, dv = a.dv, n = a.n, segs = Math.ceil(n / len), bytes = segmentBytes(k, nq, dv);
    // Segment i's state: acc (stride dv), m, l, scratch.
    const at = (i: number) => {
      const base = this.segments + (i - 1) * bytes, mi = base + nq * dv * F;
      return i === 0 ? { acc: a.acc, accStride: a.accStride, m: a.m, l: a.l, scratch: a.scratch }
        : { acc: base, accStride: dv, m: mi, l: mi + nq * F, scratch: mi + 2 * nq * F };
    };
    const chunks = this.chunks(ns, segs);
    const out = this.tasks(chunks);
    for (let c = 0; c < chunks; c++) {
      if (chunks > 1) this.pool!.chunk();
      for (let i = Math.floor(segs * c / chunks); i < Math.floor(segs * (c + 1) / chunks); i++) {
        const j0 = i * len, init = i > 0 || phases & INIT;
        this.putAttention(out, (init ? INIT : 0) | BLOCK, 1, 1, 1, { ...a, ...at(i), k1: a.k1 + j0 * a.k1Stride * F,
          k2: a.k2 + j0 * a.k2Stride * F, v: a.v + j0 * a.vStride * F, n: Math.min(len, n - j0), kPos0: a.kPos0 + j0 },
        { q: 0, k1: 0, v: 0, acc: 0 });
      }
    }
    this.run(chunks);
    for (let i = 1; i < segs; i++) {
      const s = at(i);
      k.attn_merge(a.m, a.l, a.acc, a.accStride, s.m, s.l, s.acc, s.accStride, nq, dv);
    }
    if (phases & FINISH) k.attn_finish(a.l, a.acc, a.accStride, nq, dv, a.acc, a.accStride);
  }

  /**
   * Tasks for `groups` × `run` items from `a` (inc1 steps a group of perGroup items, inc2 an item):
   * per phase, one task.
   */
  private putAttention(out: Tasks, phases: number, groups: number, run: number, perGroup: number, a: Attn, inc: AttnSteps): void {
    if (groups <= 0 || run <= 0) return;
    const D = out.args, ml = a.nq * F;
    // The steps (a task's are zero until written) only where there is more than one group or item.
    const byGroup: Attn | null = groups > 1
      ? { ...ATTN_STEPS, q: perGroup * inc.q, k1: inc.k1, v: inc.v, m: perGroup * ml, l: perGroup * ml, acc: perGroup * inc.acc } : null;
    const byItem: Attn | null = run > 1 ? { ...ATTN_STEPS, q: inc.q, m: ml, l: ml, acc: inc.acc } : null;
    for (const [phase, f32Fn, f32Layout] of PHASES) {
      if (!(phases & phase)) continue;
      const [fn, layout] = phase === BLOCK && a.fmt ? [ATTN_BLOCK_LATENT, putAttnBlockLatent] : [f32Fn, f32Layout];
      const x = out.task(fn, groups, run);
      layout(D, x, a);
      if (byGroup) layout(D, x + ARGS, byGroup);
      if (byItem) layout(D, x + 2 * ARGS, byItem);
    }
  }
}

function lcm(a: number, b: number): number {
  let x = a, y = b;
  while (y) { const r = x % y; x = y; y = r; }
  return (a / x) * b;
}
