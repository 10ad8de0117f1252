// The one door from the model to the kernels: every kernel call the decoder and sessions make
// goes through Ops, which splits the big ones across the pool's threads when the work is worth it.
// Chunks keep every output element on the code path it takes in one call, so results are
// bit-identical to one thread, whoever runs which chunk: products by output columns in multiples
// of the kernels' matmul_split_cols, attention by queries in multiples of attn_query_tile, or
// whole items of a batch (heads) at a time; decode attention by segments of keys that depend on
// the context length alone, merged in a fixed order.
// The calls are records (op-calls.ts), laid out as the pool's tasks (op-tasks.ts), in scratch
// sized before loading (op-scratch.ts).
import type { ThreadPool } from '../host/pool.js';
import type { Kernels } from '../host/kernels.js';
import { ARGS, ATTN_BLOCK_LATENT, GEMV_ROWS_BF16, GEMV_ROWS_F32, MATMUL_NN, MATMUL_NT, MATMUL_NT_BF16, MATMUL_NT_F16, MATMUL_NT_Q4,
  MATMUL_NT_Q4K, MATMUL_NT_Q5K, MATMUL_NT_Q6K, MATMUL_NT_Q8, MATVEC_BATCH, MAX_CHUNKS, MAX_TASKS, PROBE_READ, PROBE_READ_PAIRS, QGEMM_KQ, QGEMM_Q4, QGEMM_Q8,
  VECMAT_BATCH } from '../host/protocol.js';
import { isSuperBlockFormat, matrixBytes, SUPER_BLOCK_BYTES, type Matrix, type MatrixFormat } from './weights.js';
import { BLOCK, FINISH, INIT, LATENT_CODES, type AttentionCall, type LatentCall, type LatentFormat, type LinearCall, type MatmulCall,
  type OpEvent, type RmsNormCall, type RopeCall, type RopeTableCall, type SwigluCall } from './op-calls.js';
import { ACT_RECORD, MAX_SEGMENTS, MIN_SEGMENT, segmentBytes } from './op-scratch.js';
import { ATTN_STEPS, Here, MM_PACK, MM_STEPS, PHASES, putAttnBlockLatent, putGemv, putMatmul, putNarrow, type Attn, type AttnSteps,
  type Tasks } from './op-tasks.js';

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
const F = 4; // bytes per f32
/** Narrow weights: rows of W a chunk holds are a multiple of this; and a rough GEMM rate (they re-widen W per row of A). */
const NARROW_ROWS = 8, NARROW_GEMM_RATE = 6;
/** qgemm_q8 / qgemm_q4's arguments (aq, ad, wq, wd, c, ldc, m, k, n, pack): the per-thread one. */
const QGEMM_PACK = 9;
/** matmul_nt_q8 / matmul_nt_q4's arguments (aq, ad, wq, wd, c, ldc, m, k, n, acc, prep): the per-thread one. */
const QUANT_PREP = 10;
/** qgemm_kq's format codes (its arguments: fmt, aq, ad, w, c, ldc, m, k, n, pack). */
const KQ_CODES = { q4k: 0, q6k: 1, q5k: 2 } as const;
/**
 * Rows of activations from which K-quant products run as a packed integer GEMM (qgemm_kq: each
 * panel's super-blocks made i16 codes once) rather than unpack every row again per activation row.
 */
const KQ_GEMM_ROWS = 12;

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
  /** Activation rows from which K-quant products run as qgemm_kq (tests lower it to reach that path). */
  kqGemmRows = KQ_GEMM_ROWS;
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
      case 'q5k': k.embed_q5k(table.ptr, dim, ids, count, out); break;
      case 'q6k': k.embed_q6k(table.ptr, dim, ids, count, out); break;
      case 'mixed': throw new Error('Ops.embed: an embedding table is one tensor, never mixed');
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
    const w = c.w;
    if (w.parts) {
      // Each part's rows of y from its own product.
      let row = 0;
      for (const part of w.parts) {
        this.linear({ ...c, w: part, y: { ptr: c.y.ptr + row * F, stride: c.y.stride } });
        row += part.rows;
      }
      return;
    }
    const t0 = this.start();
    const format = w.format;
    if (format === 'mixed') throw new Error('Ops.linear: a mixed matrix without its parts');
    if (format !== 'f32') this.narrowLinear(c, format);
    else this.product(true, c.x.ptr, c.x.stride, w.ptr, w.cols, w.panelCols, c.y.ptr, c.y.stride, c.rows, w.cols, w.rows, 1, 0, 0, 0);
    if (this.observer) this.done({ op: 'linear', ms: performance.now() - t0, call: c });
  }

  /**
   * linear() for bf16 / f16 / q8 / q4 / q4k / q5k / q6k weights (one panel): for q8 / q4 the activation
   * rows are quantised here first (quantize_q8_act; q4k / q5k / q6k: quantize_q8k_act), once for every
   * chunk; q8 / q4 from gemmRows rows on run as a packed GEMM (assembly/qgemm.ts, each thread
   * packing into its own scratch); below that, matmul_nt_q8 / q4 lay their activations out there. Split by rows of W, in runs of NARROW_ROWS (and of whole qgemm
   * panels); each output is computed the same way whichever chunk holds it.
   */
  private narrowLinear(c: LinearCall, format: Exclude<MatrixFormat, 'f32'>): void {
    const w = c.w, k = w.cols, n = w.rows, m = c.rows;
    if (m <= 0 || n <= 0) return;
    const quant = format === 'q8' || format === 'q4';
    const superBlocks = isSuperBlockFormat(format);
    const codeBytes = format === 'q8' ? k : format === 'q4' ? k / 2
      : superBlocks ? (k / 256) * SUPER_BLOCK_BYTES[format as 'q4k'] : 2 * k;
    const scaleBytes = k / 8; // one f32 per 32 weights
    const records = (k / 256) * ACT_RECORD;
    // K-quants from kqGemmRows rows on: qgemm_kq, on activations quantised per 32 as q8's.
    const kqGemm = superBlocks && m >= this.kqGemmRows && this.k.qgemm_pack_bytes(k) <= this.packBytes;
    if (superBlocks && !kqGemm) {
      if (m * (k + records) > this.actBytes) throw new Error(`Ops: ${m} rows of ${k} activations exceed the act scratch`);
      for (let r = 0; r < m; r++) this.k.quantize_q8k_act(c.x.ptr + r * c.x.stride * F, k, this.act + r * k, this.act + m * k + r * records);
    }
    if (quant || kqGemm) {
      if (m * (k + scaleBytes) > this.actBytes) throw new Error(`Ops: ${m} rows of ${k} activations exceed the act scratch`);
      for (let r = 0; r < m; r++) this.k.quantize_q8_act(c.x.ptr + r * c.x.stride * F, k, this.act + r * k, this.act + m * k + r * scaleBytes);
    }
    // One row: matvec (inside matmul_nt_*); bf16 with 2 to rowsMax: the multi-row GEMV, which also
    // streams W once; q8 / q4 with more rows, and a pack scratch that holds a panel: the packed GEMM.
    const rowsKernel = format === 'bf16' && m >= 2 && m <= this.rowsMax;
    const packed = !rowsKernel && quant && m >= this.gemmRows && this.k.qgemm_pack_bytes(k) <= this.packBytes;
    const gemv = m === 1 || rowsKernel;
    const ns = m * k * n / (gemv ? GEMV_RATE : packed || kqGemm ? GEMM_RATE : NARROW_GEMM_RATE);
    const unit = packed || kqGemm ? lcm(NARROW_ROWS, this.k.qgemm_split_cols()) : NARROW_ROWS;
    const units = Math.ceil(n / unit);
    const chunks = this.chunks(ns, units, 1, gemv ? matrixBytes(format, n, k) : 0);
    const out = this.tasks(chunks), D = out.args;
    const fn = kqGemm ? QGEMM_KQ : rowsKernel ? GEMV_ROWS_BF16 : packed ? (format === 'q8' ? QGEMM_Q8 : QGEMM_Q4)
      : { bf16: MATMUL_NT_BF16, f16: MATMUL_NT_F16, q8: MATMUL_NT_Q8, q4: MATMUL_NT_Q4, q4k: MATMUL_NT_Q4K, q5k: MATMUL_NT_Q5K, q6k: MATMUL_NT_Q6K }[format as 'bf16'];
    for (let s = 0; s < chunks; s++) {
      if (chunks > 1) this.pool!.chunk();
      const n0 = unit * Math.floor(units * s / chunks), n1 = Math.min(n, unit * Math.floor(units * (s + 1) / chunks));
      const x = packed || kqGemm ? out.task(fn, 1, 1, QGEMM_PACK, this.packBytes)
        : quant ? out.task(fn, 1, 1, QUANT_PREP, this.packBytes) : out.task(fn);
      if (kqGemm) {
        putNarrow(D, x, [KQ_CODES[format as 'q4k'], this.act, this.act + m * k, w.ptr + n0 * codeBytes, c.y.ptr + n0 * F, c.y.stride, m, k, n1 - n0]);
        D[x + QGEMM_PACK] = this.pack;
      } else if (superBlocks) {
        putNarrow(D, x, [this.act, this.act + m * k, w.ptr + n0 * codeBytes, c.y.ptr + n0 * F, c.y.stride, m, k, n1 - n0, 0]);
      } else if (quant) {
        putNarrow(D, x, [this.act, this.act + m * k, w.ptr + n0 * codeBytes, w.scales + n0 * scaleBytes, c.y.ptr + n0 * F, c.y.stride, m, k, n1 - n0]);
        D[packed ? x + QGEMM_PACK : x + QUANT_PREP] = this.pack;
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
