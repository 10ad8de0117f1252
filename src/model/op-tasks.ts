// How Ops hands a kernel call to a thread: each threaded kernel's arguments laid out in one place
// (the put* functions), as a task of the pool's protocol (n1 × n2 calls whose arguments step by
// inc1 and inc2). The same function writes a task's increments from a record of steps. A call not
// worth splitting runs the very same task on this thread (Here).
import type { Kernels } from '../host/kernels.js';
import { arg, ARGS, ATTN_BLOCK, ATTN_FINISH, ATTN_INIT, GEMV_ROWS_BF16, GEMV_ROWS_F32, MATMUL_NN, MATMUL_NT, MATMUL_NT_BF16,
  MATMUL_NT_F16, MATMUL_NT_Q4, MATMUL_NT_Q4K, MATMUL_NT_Q5K, MATMUL_NT_Q6K, MATMUL_NT_Q8, MATVEC_BATCH, PROBE_READ, PROBE_READ_PAIRS, QGEMM_Q4,
  QGEMM_Q8, VECMAT_BATCH, ATTN_BLOCK_LATENT, QGEMM_KQ } from '../host/protocol.js';
import { BLOCK, FINISH, INIT } from './op-calls.js';

/** matmul_nt / matmul_nn. */
export interface Mm { a: number; lda: number; b: number; ldb: number; c: number; ldc: number; m: number; k: number; n: number; pack: number; acc: number }
export const MM_PACK = 9; // the argument each thread offsets to its own packing scratch
export function putMatmul(D: Float64Array, x: number, p: Mm): void {
  D[x] = p.a; D[x + 1] = p.lda; D[x + 2] = p.b; D[x + 3] = p.ldb; D[x + 4] = p.c; D[x + 5] = p.ldc;
  D[x + 6] = p.m; D[x + 7] = p.k; D[x + 8] = p.n; D[x + MM_PACK] = p.pack; D[x + 10] = p.acc;
}
export const MM_STEPS: Mm = { a: 0, lda: 0, b: 0, ldb: 0, c: 0, ldc: 0, m: 0, k: 0, n: 0, pack: 0, acc: 0 };

/** matvec_batch (nt) / vecmat_batch: x, its rows y, and W (n rows of k for matvec, k rows of n for vecmat). */
export interface Gemv { nt: boolean; x: number; xInc: number; w: number; ldw: number; wInc: number; y: number; yInc: number;
  k: number; n: number; count: number; far: number }
export function putGemv(D: Float64Array, x: number, p: Gemv): void {
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
 * _q4k / _q5k / _q6k take one argument fewer (aq, ar, w, c, ldc, m, k, n, acc): their acc is the 9th, given as 0.
 */
export function putNarrow(D: Float64Array, x: number, args: number[], acc = false): void {
  for (let i = 0; i < 9; i++) D[x + i] = args[i];
  D[x + 9] = acc ? 1 : 0;
}

/** attn_block's arguments; attn_init and attn_finish take some of them. */
export interface Attn {
  q: number; qStride: number; nq: number; qPos0: number; qGroup: number; dk1: number; dk2: number;
  k1: number; k1Stride: number; k2: number; k2Stride: number; v: number; vStride: number; dv: number;
  n: number; kPos0: number; scale: number; m: number; l: number; acc: number; accStride: number; scratch: number;
  /** 0: attn_block; else attn_block_latent's format code. */
  fmt: number;
}
export const ATTN_STEPS: Attn = { fmt: 0, q: 0, qStride: 0, nq: 0, qPos0: 0, qGroup: 0, dk1: 0, dk2: 0, k1: 0, k1Stride: 0, k2: 0, k2Stride: 0,
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
export function putAttnBlockLatent(D: Float64Array, x: number, a: Attn): void {
  D[x] = a.fmt; D[x + 1] = a.q; D[x + 2] = a.qStride; D[x + 3] = a.nq; D[x + 4] = a.qPos0; D[x + 5] = a.qGroup; D[x + 6] = a.dk1;
  D[x + 7] = a.dk2; D[x + 8] = a.k1; D[x + 9] = a.k1Stride; D[x + 10] = a.n; D[x + 11] = a.kPos0; D[x + 12] = a.scale;
  D[x + 13] = a.m; D[x + 14] = a.l; D[x + 15] = a.acc; D[x + 16] = a.accStride; D[x + 17] = a.scratch;
}
/** attn_finish in place: acc / l back into acc. */
function putAttnFinish(D: Float64Array, x: number, a: Attn): void {
  D[x] = a.l; D[x + 1] = a.acc; D[x + 2] = a.accStride; D[x + 3] = a.nq; D[x + 4] = a.dv; D[x + 5] = a.acc; D[x + 6] = a.accStride;
}

/** Each phase of attention: its kernel and argument layout. */
export const PHASES: [number, number, (D: Float64Array, x: number, a: Attn) => void][] = [
  [INIT, ATTN_INIT, putAttnInit], [BLOCK, ATTN_BLOCK, putAttnBlock], [FINISH, ATTN_FINISH, putAttnFinish]];

/** Per item of an attention call: how its arguments step from one item to the next. */
export interface AttnSteps { q: number; k1: number; v: number; acc: number }

/** Where tasks go: the pool (a split call), or Here (this thread, at once). */
export interface Tasks {
  task(fn: number, n1?: number, n2?: number, threadArg?: number, threadStride?: number): number;
  readonly args: Float64Array;
}

/**
 * Tasks run on this thread, each once the next is appended or at run(): one call not worth
 * splitting, with its arguments laid out exactly as for the pool.
 */
export class Here implements Tasks {
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
    const quant = (f: (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number, a7: number, a8: number,
      acc: boolean, prep: number) => void) => (i: number, j: number) => f(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j),
      a(4, i, j), a(5, i, j), a(6, i, j), a(7, i, j), a(8, i, j), a(9, i, j) !== 0, a(10, i, j));
    calls[MATMUL_NT_Q8] = quant(k.matmul_nt_q8);
    calls[MATMUL_NT_Q4] = quant(k.matmul_nt_q4);
    const superBlocks = (f: (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number, a7: number,
      acc: boolean) => void) => (i: number, j: number) => f(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j),
      a(6, i, j), a(7, i, j), a(8, i, j) !== 0);
    calls[MATMUL_NT_Q4K] = superBlocks(k.matmul_nt_q4k);
    calls[MATMUL_NT_Q5K] = superBlocks(k.matmul_nt_q5k);
    calls[MATMUL_NT_Q6K] = superBlocks(k.matmul_nt_q6k);
    calls[QGEMM_Q8] = (i, j) => k.qgemm_q8(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j), a(6, i, j),
      a(7, i, j), a(8, i, j), a(9, i, j));
    calls[QGEMM_Q4] = (i, j) => k.qgemm_q4(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j), a(6, i, j),
      a(7, i, j), a(8, i, j), a(9, i, j));
    calls[QGEMM_KQ] = (i, j) => k.qgemm_kq(a(0, i, j), a(1, i, j), a(2, i, j), a(3, i, j), a(4, i, j), a(5, i, j),
      a(6, i, j), a(7, i, j), a(8, i, j), a(9, i, j));
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
