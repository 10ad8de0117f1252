// The kernel calls the decoder splits across the pool's threads, with the cost estimate that
// decides into how many shares. Chunks keep every output element on the code path it takes in
// one thread, so results are bit-identical to one thread, whoever runs which chunk: matmul by
// output columns (N) in multiples of MATMUL_COLS, attention by queries in multiples of 4 (its
// query tiles), or whole items of a batch (heads) at a time; decode attention by segments of keys
// that depend on the context length alone, merged in a fixed order.
import type { Kernels } from '../host/kernels.js';
import type { ThreadPool } from '../host/pool.js';
import { ATTN_BLOCK, ATTN_FINISH, ATTN_INIT, ARGS, MATMUL_NN, MATMUL_NT, MATVEC_BATCH, MAX_CHUNKS, MAX_TASKS, PROBE_READ, PROBE_READ_PAIRS,
  VECMAT_BATCH } from '../host/protocol.js';
import type { Matrix } from './weights.js';

/** read(): the least bytes a chunk reads, and the block probe_read_pairs reads whole. */
const READ_CHUNK = 16 << 20, READ_BLOCK = 4 << 20;
// The kernel calls the decoder splits, with the estimate of their cost that decides into how many
// shares. Rates are rough, for this kind of machine: what matters is that a share stays well
// above the hand-off (a few µs).

/** Multiply-adds per ns: GEMM (compute-bound) and GEMV (bound by reading 4 bytes per weight). */
const GEMM_RATE = 20, GEMV_RATE = 4, ATTN_RATE = 8;
/**
 * GEMV chunks: each starts new streams, which the prefetchers take a while to follow, so a GEMV is
 * split into as few chunks as keep every thread busy (a multiple of the threads), more only where
 * each would still read GEMV_PIECE_BYTES of every panel. Measured on 2 threads (scratch,
 * 2026-11-24, median calls): decode's per-head products (4 MiB, V2-Lite) 33–36 GB/s in 8 chunks,
 * 51–56 in 2; down_proj 2048×10944 in 6 panels 70.7 in 8, 75.5 in 2; o_proj 2048×2048 69 in 8,
 * 73 in 2; a 171 MiB matrix the same in 2 to 8.
 */
const GEMV_PIECE_BYTES = 8 << 20;
/** Chunks per thread at most: enough to even out a late or slow thread, few enough to stay long. */
const CHUNKS_PER_THREAD = 4;
/**
 * matmul column chunks are multiples of this: of both builds' tile widths (assembly/matmul.ts:
 * dot tiles 4 plain, 3 relaxed; packed panels 8 plain, 12 relaxed), so no chunk edge cuts a tile
 * short, and of 4 for matvec's four-row groups.
 */
const MATMUL_COLS = 24;
/** matvec/vecmat switch to four-row streaming beyond this many floats (assembly/matmul.ts VEC_L1). */
const VEC_L1 = 4096;

/**
 * One item's attention over a long context (decode) is split by keys into segments, each with its
 * own state, merged in order at the end (flash-decoding): threads then share the keys instead of
 * each reading all of them. At most this many segments, of at least MIN_SEGMENT keys; the split
 * depends on the shape alone, never on the threads, so results stay bit-identical.
 */
const MAX_SEGMENTS = 8, MIN_SEGMENT = 256;

/** Bytes of one segment's state for nq queries of dv values: acc, m, l, and attn_block's scratch. */
function segmentBytes(k: Pick<Kernels, 'attn_scratch_bytes'>, nq: number, dv: number): number {
  return Math.ceil(((nq * dv + 2 * nq) * 4 + k.attn_scratch_bytes(nq)) / 64) * 64;
}

/** Bytes attention() needs (the `segments` buffer of Parallel) to split nq queries of dv values by keys. */
export function attnSegmentBytes(k: Pick<Kernels, 'attn_scratch_bytes'>, nq: number, dv: number): number {
  return (MAX_SEGMENTS - 1) * segmentBytes(k, nq, dv);
}

/**
 * Where to cut nq queries (`steps` runs of `step`) into `chunks` runs of steps doing equal work:
 * query r, at position qPos0 + ⌊r / qGroup⌋, reads the keys up to its position (causal), so in a
 * prefill the later queries cost more (even counts of queries gave the attention of a 128-token
 * chunk 1.7–1.8× on 2 threads). Returns chunks + 1 step indices, from 0 to steps, each chunk ≥ 1 step.
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

/** Phases of attention(): attn_init, attn_block, attn_finish (in place), any combination. */
export const INIT = 1, BLOCK = 2, FINISH = 4;

/**
 * The kernels as the decoder calls them, split across the pool's threads when the work is big
 * enough, else called directly. Holds per-thread scratch for matmul packing.
 */
export class Parallel {
  readonly k: Kernels;
  readonly pool: ThreadPool | null;
  readonly threads: number;
  /** The least work (ns, estimated) worth a chunk of its own. Tests set 0 to split everything, always. */
  minChunkNs = 20_000;
  /** The fewest keys in a segment of a split by keys. Tests lower it to split short contexts. */
  minSegment = MIN_SEGMENT;
  private readonly pack: number;
  private readonly packBytes: number;
  private readonly segments: number;
  private readonly segmentsBytes: number;

  /**
   * `pack` holds `threads` blocks of `packBytes` (matmul_pack_bytes of the largest product);
   * `segments` holds `segmentsBytes` (attnSegmentBytes of the largest split by keys), or none.
   */
  constructor(k: Kernels, pool: ThreadPool | null, pack: number, packBytes: number, segments = 0, segmentsBytes = 0) {
    this.k = k;
    this.pool = pool;
    this.threads = pool?.threads ?? 1;
    this.pack = pack;
    this.packBytes = packBytes;
    this.segments = segments;
    this.segmentsBytes = segmentsBytes;
  }

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

  /**
   * y[m, W.rows] = x[m, W.cols] · Wᵀ for a weight matrix in column panels (weights.ts Matrix):
   * panel p's product is added to the earlier ones', in order, by the thread that owns the columns.
   */
  linear(x: number, ldx: number, w: Matrix, y: number, ldy: number, m: number): void {
    this.product(true, x, ldx, w.ptr, w.cols, w.panelCols, y, ldy, m, w.cols, w.rows, 1, 0, 0, 0);
  }

  /**
   * For i < batch: C_i = A_i · B_iᵀ (nt, B in [n, k] layout) or A_i · B_i (nn, B in [k, n]),
   * A_i = a + i·aInc etc. (byte offsets), as matmul_nt / matmul_nn.
   */
  matmul(nt: boolean, a: number, lda: number, b: number, ldb: number, c: number, ldc: number,
         m: number, k: number, n: number, batch = 1, aInc = 0, bInc = 0, cInc = 0): void {
    this.product(nt, a, lda, b, ldb, k, c, ldc, m, k, n, batch, aInc, bInc, cInc);
  }

  /**
   * matmul with B in column panels of `panelCols` (nt, batch 1; panelCols = k: one panel of row
   * stride ldb). Split by whole products when there are enough of them, else by columns of C in
   * multiples of MATMUL_COLS; a chunk runs every panel of its columns.
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
        panels.push({ k0, width, b: b + n * k0 * 4, ldb: width });
      }
    }
    const ns = batch * m * k * n / (m < 4 ? GEMV_RATE : GEMM_RATE);
    const byItems = batch >= 2 * this.threads;
    // vecmat picks its loop by n, so a column split must leave every chunk on the same side.
    const groups = !nt && m < 4 && n > VEC_L1 ? 1 : Math.ceil(n / MATMUL_COLS);
    const chunks = this.chunks(ns, byItems ? batch : groups, panels.length, m < 4 ? batch * Math.min(k, panelCols) * n * 4 : 0);
    if (chunks === 1) {
      const f = nt ? this.k.matmul_nt : this.k.matmul_nn;
      for (let i = 0; i < batch; i++) {
        for (const [p, pl] of panels.entries()) {
          f(a + i * aInc + pl.k0 * 4, lda, pl.b + i * bInc, pl.ldb, c + i * cInc, ldc, m, pl.width, n, this.pack, p > 0);
        }
      }
      return;
    }
    const pool = this.pool!, D = pool.args;
    const fn = nt ? MATMUL_NT : MATMUL_NN;
    for (let s = 0; s < chunks; s++) {
      pool.chunk();
      for (const [p, pl] of panels.entries()) {
        let x: number;
        if (byItems) {
          const i0 = Math.floor(batch * s / chunks), i1 = Math.floor(batch * (s + 1) / chunks);
          x = pool.task(fn, i1 - i0, 1, 9, this.packBytes);
          this.putMatmul(D, x, a + i0 * aInc + pl.k0 * 4, lda, pl.b + i0 * bInc, pl.ldb, c + i0 * cInc, ldc, m, pl.width, n, p > 0);
        } else {
          const n0 = MATMUL_COLS * Math.floor(groups * s / chunks);
          const n1 = Math.min(n, MATMUL_COLS * Math.floor(groups * (s + 1) / chunks));
          x = pool.task(fn, batch, 1, 9, this.packBytes);
          // Columns n0… of C are rows n0… of B (nt) or its columns n0… (nn).
          this.putMatmul(D, x, a + pl.k0 * 4, lda, pl.b + (nt ? n0 * pl.ldb : n0) * 4, pl.ldb, c + n0 * 4, ldc, m, pl.width, n1 - n0, p > 0);
        }
        D[x + ARGS] = aInc; D[x + ARGS + 2] = bInc; D[x + ARGS + 4] = cInc;
      }
    }
    pool.run();
  }

  /**
   * product() for one row of A and a batch (decode's per-head products): items i and i + ⌊batch/2⌋
   * go to one call of matvec_batch / vecmat_batch, which reads the pair side by side; an odd
   * batch's last item goes alone. Split by pairs, or by columns of C when there are too few.
   */
  private gemvBatch(nt: boolean, a: number, aInc: number, b: number, ldb: number, bInc: number, c: number, cInc: number,
                    k: number, n: number, batch: number): void {
    const half = batch >> 1, units = half + (batch & 1);
    const byUnits = units >= 2 * this.threads;
    const groups = !nt && n > VEC_L1 ? 1 : Math.ceil(n / MATMUL_COLS);
    const chunks = this.chunks(batch * k * n / GEMV_RATE, byUnits ? units : groups, 2, batch * k * n * 4);
    const pool = this.pool, fn = nt ? MATVEC_BATCH : VECMAT_BATCH;
    // Units u0 … u1 − 1 (the pairs, then the odd item) for columns n0 … n1 − 1 of C, which are
    // rows n0… of B (nt) or its columns n0… (nn).
    const put = (u0: number, u1: number, n0: number, n1: number) => {
      const parts: [number, number, number][] = []; // [first item, count, far]
      if (u0 < half) parts.push([u0, Math.min(u1, half) - u0, half]);
      if (u1 > half) parts.push([2 * half, 1, 0]);
      for (const [i, count, far] of parts) {
        const ai = a + i * aInc, bi = b + i * bInc + (nt ? n0 * ldb : n0) * 4, ci = c + i * cInc + n0 * 4;
        if (chunks === 1) {
          if (nt) this.k.matvec_batch(bi, ldb, bInc, ai, aInc, ci, cInc, n1 - n0, k, count, far, false);
          else this.k.vecmat_batch(ai, aInc, bi, ldb, bInc, ci, cInc, k, n1 - n0, count, far, false);
          continue;
        }
        const x = pool!.task(fn), D = pool!.args;
        const args = nt ? [bi, ldb, bInc, ai, aInc, ci, cInc, n1 - n0, k] : [ai, aInc, bi, ldb, bInc, ci, cInc, k, n1 - n0];
        for (const [j, v] of [...args, count, far, 0].entries()) D[x + j] = v;
      }
    };
    if (chunks === 1) { put(0, units, 0, n); return; }
    for (let s = 0; s < chunks; s++) {
      pool!.chunk();
      if (byUnits) put(Math.floor(units * s / chunks), Math.floor(units * (s + 1) / chunks), 0, n);
      else {
        const n0 = MATMUL_COLS * Math.floor(groups * s / chunks);
        put(0, units, n0, Math.min(n, MATMUL_COLS * Math.floor(groups * (s + 1) / chunks)));
      }
    }
    pool!.run();
  }

  /**
   * The read probes on every thread (the benchmarks' in-process bandwidth probe): [ptr, ptr + bytes)
   * in up to 64 chunks of 16 MiB or more, each read by probe_read (one stream) or probe_read_pairs
   * (two streams). Returns the bytes read.
   */
  read(ptr: number, bytes: number, pairs: boolean): number {
    const fn = pairs ? PROBE_READ_PAIRS : PROBE_READ;
    const chunks = Math.min(MAX_CHUNKS, Math.floor(bytes / READ_CHUNK));
    if (!this.pool || chunks < 2) {
      if (pairs) this.k.probe_read_pairs(ptr, bytes, 1);
      else this.k.probe_read(ptr, bytes, 1);
      return pairs ? bytes - bytes % READ_BLOCK : bytes - bytes % 128;
    }
    const size = bytes / chunks - (bytes / chunks) % READ_BLOCK;
    const pool = this.pool, D = pool.args;
    for (let c = 0; c < chunks; c++) {
      pool.chunk();
      const x = pool.task(fn);
      D[x] = ptr + c * size; D[x + 1] = size; D[x + 2] = 1;
    }
    pool.run();
    return chunks * size;
  }

  private putMatmul(D: Float64Array, x: number, a: number, lda: number, b: number, ldb: number, c: number, ldc: number,
                    m: number, k: number, n: number, acc: boolean): void {
    D[x] = a; D[x + 1] = lda; D[x + 2] = b; D[x + 3] = ldb; D[x + 4] = c; D[x + 5] = ldc;
    D[x + 6] = m; D[x + 7] = k; D[x + 8] = n; D[x + 9] = this.pack; // + thread index · packBytes
    D[x + 10] = acc ? 1 : 0;
  }

  /**
   * Attention for `count` items (heads, or groups of heads), each as attn_init / attn_block /
   * attn_finish (in place) with the kernels' arguments, per `phases`. Item i reads its queries at
   * q + i·qInc, its keys at k1 + ⌊i/perGroup⌋·k1Inc (k2 is shared), values at
   * v + ⌊i/perGroup⌋·vInc, and keeps its state at m, l + i·nq·4 and acc + i·accInc.
   * `scratch` holds attn_scratch_bytes(count·nq). Split by items; one item by keys when the
   * context is long and its state fits the segments buffer (decode), else by queries.
   */
  attention(phases: number, count: number, perGroup: number,
            q: number, qStride: number, nq: number, qPos0: number, qGroup: number, dk1: number, dk2: number,
            k1: number, k1Stride: number, k2: number, k2Stride: number, v: number, vStride: number, dv: number,
            n: number, kPos0: number, scale: number, m: number, l: number, acc: number, accStride: number, scratch: number,
            qInc = 0, k1Inc = 0, vInc = 0, accInc = 0): void {
    if (count <= 0 || nq <= 0) return;
    const ns = (phases & BLOCK ? count * nq * Math.max(n, 1) * (dk1 + dk2 + dv) : count * nq * dv) / ATTN_RATE;
    const segment = count === 1 && phases & BLOCK ? this.segmentLength(n, nq, dv) : 0;
    if (segment) {
      this.attentionByKeys(phases, segment, ns, q, qStride, nq, qPos0, qGroup, dk1, dk2, k1, k1Stride, k2, k2Stride,
        v, vStride, dv, n, kPos0, scale, m, l, acc, accStride, scratch);
      return;
    }
    // One item: split its queries in multiples of 4 (the kernel's tiles), and of qGroup when the
    // queries have more than one position, so that each chunk's positions follow from its first.
    const step = nq <= qGroup ? 4 : lcm(4, qGroup);
    const byItems = count > 1;
    const steps = Math.ceil(nq / step);
    // Split by queries, every chunk reads all the keys: one chunk per thread, not more.
    const chunks = this.chunks(ns, byItems ? count : Math.min(steps, this.threads));
    if (chunks === 1) {
      const k = this.k;
      for (let i = 0; i < count; i++) {
        const g = Math.floor(i / perGroup);
        const qi = q + i * qInc, mi = m + i * nq * 4, li = l + i * nq * 4, ai = acc + i * accInc;
        if (phases & INIT) k.attn_init(mi, li, ai, nq, dv, accStride);
        if (phases & BLOCK) {
          k.attn_block(qi, qStride, nq, qPos0, qGroup, dk1, dk2, k1 + g * k1Inc, k1Stride, k2, k2Stride,
            v + g * vInc, vStride, dv, n, kPos0, scale, mi, li, ai, accStride, scratch);
        }
        if (phases & FINISH) k.attn_finish(li, ai, accStride, nq, dv, ai, accStride);
      }
      return;
    }
    const pool = this.pool!, D = pool.args;
    const scratchPerQuery = this.k.attn_scratch_bytes(1);
    const cuts = byItems ? [] : queryCuts(chunks, steps, step, nq, qPos0, qGroup, kPos0, n);
    for (let s = 0; s < chunks; s++) {
      pool.chunk();
      if (byItems) {
        // Items [i0, i1) as runs that share a key group: whole groups in one two-level task.
        const i0 = Math.floor(count * s / chunks), i1 = Math.floor(count * (s + 1) / chunks);
        const sc = scratch + i0 * nq * scratchPerQuery;
        let i = i0;
        while (i < i1) {
          const g = Math.floor(i / perGroup);
          let groups = 1, run = Math.min(i1, (g + 1) * perGroup) - i;
          if (i % perGroup === 0 && i1 - i >= perGroup) { groups = Math.floor((i1 - i) / perGroup); run = perGroup; }
          this.putAttention(pool, D, phases, groups, run, perGroup, q + i * qInc, qStride, nq, qPos0, qGroup, dk1, dk2,
            k1 + g * k1Inc, k1Stride, k2, k2Stride, v + g * vInc, vStride, dv, n, kPos0, scale,
            m + i * nq * 4, l + i * nq * 4, acc + i * accInc, accStride, sc, qInc, k1Inc, vInc, accInc);
          i += groups * run;
        }
      } else {
        const r0 = step * cuts[s], r1 = Math.min(nq, step * cuts[s + 1]);
        this.putAttention(pool, D, phases, 1, 1, perGroup, q + r0 * qStride * 4, qStride, r1 - r0, qPos0 + Math.floor(r0 / qGroup),
          qGroup, dk1, dk2, k1, k1Stride, k2, k2Stride, v, vStride, dv, n, kPos0, scale,
          m + r0 * 4, l + r0 * 4, acc + r0 * accStride * 4, accStride, scratch + r0 * scratchPerQuery, 0, 0, 0, 0);
      }
    }
    pool.run();
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
  private attentionByKeys(phases: number, len: number, ns: number,
                          q: number, qStride: number, nq: number, qPos0: number, qGroup: number, dk1: number, dk2: number,
                          k1: number, k1Stride: number, k2: number, k2Stride: number, v: number, vStride: number, dv: number,
                          n: number, kPos0: number, scale: number, m: number, l: number, acc: number, accStride: number, scratch: number): void {
    const k = this.k, segs = Math.ceil(n / len), bytes = segmentBytes(k, nq, dv);
    // Segment i's state: acc (stride dv), m, l, scratch.
    const at = (i: number) => {
      const base = this.segments + (i - 1) * bytes, mi = base + nq * dv * 4;
      return i === 0 ? { acc, accStride, m, l, scratch } : { acc: base, accStride: dv, m: mi, l: mi + nq * 4, scratch: mi + 2 * nq * 4 };
    };
    const chunks = this.chunks(ns, segs);
    const pool = this.pool, D = pool?.args;
    for (let c = 0; c < chunks; c++) {
      if (chunks > 1) pool!.chunk();
      for (let i = Math.floor(segs * c / chunks); i < Math.floor(segs * (c + 1) / chunks); i++) {
        const s = at(i), j0 = i * len, nj = Math.min(len, n - j0), init = i > 0 || phases & INIT;
        const k1i = k1 + j0 * k1Stride * 4, k2i = k2 + j0 * k2Stride * 4, vi = v + j0 * vStride * 4;
        if (chunks > 1) {
          this.putAttention(pool!, D!, (init ? INIT : 0) | BLOCK, 1, 1, 1, q, qStride, nq, qPos0, qGroup, dk1, dk2,
            k1i, k1Stride, k2i, k2Stride, vi, vStride, dv, nj, kPos0 + j0, scale, s.m, s.l, s.acc, s.accStride, s.scratch, 0, 0, 0, 0);
        } else {
          if (init) k.attn_init(s.m, s.l, s.acc, nq, dv, s.accStride);
          k.attn_block(q, qStride, nq, qPos0, qGroup, dk1, dk2, k1i, k1Stride, k2i, k2Stride, vi, vStride, dv,
            nj, kPos0 + j0, scale, s.m, s.l, s.acc, s.accStride, s.scratch);
        }
      }
    }
    if (chunks > 1) pool!.run();
    for (let i = 1; i < segs; i++) {
      const s = at(i);
      k.attn_merge(m, l, acc, accStride, s.m, s.l, s.acc, s.accStride, nq, dv);
    }
    if (phases & FINISH) k.attn_finish(l, acc, accStride, nq, dv, acc, accStride);
  }

  /** Tasks for `groups` × `run` items (inc1 steps a group of perGroup items, inc2 an item). */
  private putAttention(pool: ThreadPool, D: Float64Array, phases: number, groups: number, run: number, perGroup: number,
                       q: number, qStride: number, nq: number, qPos0: number, qGroup: number, dk1: number, dk2: number,
                       k1: number, k1Stride: number, k2: number, k2Stride: number, v: number, vStride: number, dv: number,
                       n: number, kPos0: number, scale: number, m: number, l: number, acc: number, accStride: number, scratch: number,
                       qInc: number, k1Inc: number, vInc: number, accInc: number): void {
    const ml = nq * 4;
    const g1 = ARGS, g2 = 2 * ARGS;
    if (phases & INIT) {
      const x = pool.task(ATTN_INIT, groups, run);
      D[x] = m; D[x + 1] = l; D[x + 2] = acc; D[x + 3] = nq; D[x + 4] = dv; D[x + 5] = accStride;
      D[x + g1] = perGroup * ml; D[x + g1 + 1] = perGroup * ml; D[x + g1 + 2] = perGroup * accInc;
      D[x + g2] = ml; D[x + g2 + 1] = ml; D[x + g2 + 2] = accInc;
    }
    if (phases & BLOCK) {
      const x = pool.task(ATTN_BLOCK, groups, run);
      D[x] = q; D[x + 1] = qStride; D[x + 2] = nq; D[x + 3] = qPos0; D[x + 4] = qGroup; D[x + 5] = dk1; D[x + 6] = dk2;
      D[x + 7] = k1; D[x + 8] = k1Stride; D[x + 9] = k2; D[x + 10] = k2Stride; D[x + 11] = v; D[x + 12] = vStride;
      D[x + 13] = dv; D[x + 14] = n; D[x + 15] = kPos0; D[x + 16] = scale; D[x + 17] = m; D[x + 18] = l;
      D[x + 19] = acc; D[x + 20] = accStride; D[x + 21] = scratch;
      D[x + g1] = perGroup * qInc; D[x + g1 + 7] = k1Inc; D[x + g1 + 11] = vInc;
      D[x + g1 + 17] = perGroup * ml; D[x + g1 + 18] = perGroup * ml; D[x + g1 + 19] = perGroup * accInc;
      D[x + g2] = qInc; D[x + g2 + 17] = ml; D[x + g2 + 18] = ml; D[x + g2 + 19] = accInc;
    }
    if (phases & FINISH) {
      const x = pool.task(ATTN_FINISH, groups, run);
      D[x] = l; D[x + 1] = acc; D[x + 2] = accStride; D[x + 3] = nq; D[x + 4] = dv; D[x + 5] = acc; D[x + 6] = accStride;
      D[x + g1] = perGroup * ml; D[x + g1 + 1] = perGroup * accInc; D[x + g1 + 5] = perGroup * accInc;
      D[x + g2] = ml; D[x + g2 + 1] = accInc; D[x + g2 + 5] = accInc;
    }
  }
}

function lcm(a: number, b: number): number {
  let x = a, y = b;
  while (y) { const r = x % y; x = y; y = r; }
  return (a / x) * b;
}
