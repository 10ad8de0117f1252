// Multi-row GEMV: Y[m, n] (+)= X[m, k] · W[n, k]ᵀ for a few activation rows (batched decode: one
// row per session), W in f32 or bf16 (the layouts of matmul.ts and quant.ts).
// Each weight vector is loaded from memory once and used for every activation row of a tile
// while it is in registers; a row group past the first re-reads the weight rows from L1. So W is
// read from DRAM once for any m, as matvec reads it for one row, and the multiply-adds per byte of
// W grow with m. (q8 / q4 have none: qgemm from 4 rows on measured level with one, and at 2–3
// rows its gain did not pay for its 2.5 KB; bench/results/batch.md.)
//
// Tile: two weight rows × four activation rows, one f32x4 accumulator per pair (8): with the
// loaded vectors that is 14 of V8's 15 xmm registers (15 in the plain build, whose product is a
// register of its own), the budget of matmul.ts's tiles. A bf16 weight is widened once (a widening
// load and a shift, exact) for all rows. Rows of a group past the real ones (m % 4) re-read the
// last real row and are not stored, as matmul.ts's dot tiles do, so one tile body serves every
// row count from 3. Calls of one or two rows (batched decode of two sessions) have a 2 × 2 tile
// instead: at 2 rows the 4-row tile wastes half its multiplies, and bf16's widening was what
// bound it (bench/results/batch.md). The two weight rows are read PAIR_BYTES apart where there are
// enough rows, as matvec reads them; a lone last weight row runs as both rows of a pair.
//
// Every output is one accumulator chain over k (steps of 4; of 8 then one of 4 in the 2-row tile),
// reduced by hsum and stored (or added), then the k % 4 tail's products summed in order and added.
// That depends on m only through m ≤ 2 or not: not on the pass an output falls in or on which rows
// a thread's chunk holds, so a split across threads by weight rows gives the one-thread result bit
// for bit. It is not the single-row matvec's order, so a row's result may differ from matvec's by
// rounding.
import { madd, hsum } from "./simd";

// @ts-ignore: decorator
@inline const F32: i32 = 0;
// @ts-ignore: decorator
@inline const BF16: i32 = 1;

// @ts-ignore: decorator
@inline const PAIR_BYTES: usize = 2 << 20;
// @ts-ignore: decorator
@inline const PAIR_MIN_BYTES: usize = 512 << 10;
/** Rows of X up to which the host uses these kernels (gemv_rows_max); beyond, X leaves L2. */
// @ts-ignore: decorator
@inline const ROWS_MAX: i32 = 16;

/** The most rows of X the host should give these kernels; more go to matmul_nt. */
export function gemv_rows_max(): i32 {
  return ROWS_MAX;
}

/** Bytes per weight. */
// @ts-ignore: decorator
@inline function wBytes(fmt: i32): usize {
  return fmt == F32 ? 4 : 2;
}

/** Four weights at p as f32x4 (exact widening). */
// @ts-ignore: decorator
@inline function wide4(fmt: i32, p: usize): v128 {
  if (fmt == F32) return v128.load(p);
  return i32x4.shl(v128.load16x4_u(p), 16);
}

/** One weight at p as f32. */
// @ts-ignore: decorator
@inline function wide1(fmt: i32, p: usize): f32 {
  if (fmt == F32) return load<f32>(p);
  return reinterpret<f32>(<u32>load<u16>(p) << 16);
}

/**
 * Row r of a tile: ya (+)= ra and yb (+)= rb. Both earlier values are loaded before either store,
 * so a lone weight row (wb = wa, yb = ya) stores its one result twice.
 */
// @ts-ignore: decorator
@inline function store2(ya: usize, ra: f32, yb: usize, rb: f32, acc: bool): void {
  if (acc) {
    const oa = load<f32>(ya), ob = load<f32>(yb);
    store<f32>(ya, oa + ra);
    store<f32>(yb, ob + rb);
  } else {
    store<f32>(ya, ra);
    store<f32>(yb, rb);
  }
}

/** A tile's sums (real rows of them) into Y. Not inlined: one copy for every tile. */
function storeTile(a0: v128, a1: v128, a2: v128, a3: v128, b0: v128, b1: v128, b2: v128, b3: v128, real: i32,
                   ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  store2(ya, hsum(a0), yb, hsum(b0), acc);
  if (real > 1) store2(ya + ldy4, hsum(a1), yb + ldy4, hsum(b1), acc);
  if (real > 2) store2(ya + ldy4 * 2, hsum(a2), yb + ldy4 * 2, hsum(b2), acc);
  if (real > 3) store2(ya + ldy4 * 3, hsum(a3), yb + ldy4 * 3, hsum(b3), acc);
}

/**
 * Weight rows wa, wb × activation rows x … x + (real − 1)·ldx4 over k (real ≤ 4): outputs
 * ya + r·ldy4, yb + r·ldy4.
 */
// @ts-ignore: decorator
@inline function tile(fmt: i32, real: i32, wa: usize, wb: usize, x: usize, ldx4: usize, k: i32,
                      ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  const step = wBytes(fmt) * 4;
  let x0 = x;
  let x1 = real > 1 ? x0 + ldx4 : x0;
  let x2 = real > 2 ? x1 + ldx4 : x1;
  let x3 = real > 3 ? x2 + ldx4 : x2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  let pa = wa, pb = wb;
  const end = wa + <usize>(k >> 2) * step;
  while (pa < end) {
    const va = wide4(fmt, pa), vb = wide4(fmt, pb);
    let xv = v128.load(x0);
    a0 = madd(va, xv, a0); b0 = madd(vb, xv, b0);
    xv = v128.load(x1);
    a1 = madd(va, xv, a1); b1 = madd(vb, xv, b1);
    xv = v128.load(x2);
    a2 = madd(va, xv, a2); b2 = madd(vb, xv, b2);
    xv = v128.load(x3);
    a3 = madd(va, xv, a3); b3 = madd(vb, xv, b3);
    pa += step; pb += step;
    x0 += 16; x1 += 16; x2 += 16; x3 += 16;
  }
  storeTile(a0, a1, a2, a3, b0, b1, b2, b3, real, ya, yb, ldy4, acc);
}

/** Eight weights at p as two f32x4 (elements 0–3, 4–7): two loads (f32) or one load widened twice (bf16). */
// @ts-ignore: decorator
@inline function wideLo8(fmt: i32, p: usize): v128 {
  if (fmt == F32) return v128.load(p);
  return v128.shuffle<i16>(i32x4.splat(0), v128.load(p), 0, 8, 1, 9, 2, 10, 3, 11);
}
// @ts-ignore: decorator
@inline function wideHi8(fmt: i32, p: usize): v128 {
  if (fmt == F32) return v128.load(p, 16);
  return v128.shuffle<i16>(i32x4.splat(0), v128.load(p), 4, 12, 5, 13, 6, 14, 7, 15);
}

/**
 * Weight rows wa, wb × activation rows x0, x1 (x1 = x0 for one row): 8 weights a step, each
 * widened once for both rows, added into one accumulator an output as lo·x + hi·x' (its chain
 * gets one add per 8 weights, so four accumulators hide the add latency; two an output, as matvec
 * has, would need 16 registers with the loaded vectors, one more than V8's 15), then a step of 4
 * if k & 4.
 */
// @ts-ignore: decorator
@inline function tile2(fmt: i32, real: i32, wa: usize, wb: usize, x: usize, ldx4: usize, k: i32,
                       ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  const step = wBytes(fmt) * 8;
  let x0 = x, x1 = real > 1 ? x + ldx4 : x;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let pa = wa, pb = wb;
  const end = wa + <usize>(k >> 3) * step;
  while (pa < end) {
    const la = wideLo8(fmt, pa), ha = wideHi8(fmt, pa), lb = wideLo8(fmt, pb), hb = wideHi8(fmt, pb);
    let xl = v128.load(x0), xh = v128.load(x0, 16);
    a0 = f32x4.add(a0, madd(ha, xh, f32x4.mul(la, xl)));
    b0 = f32x4.add(b0, madd(hb, xh, f32x4.mul(lb, xl)));
    xl = v128.load(x1); xh = v128.load(x1, 16);
    a1 = f32x4.add(a1, madd(ha, xh, f32x4.mul(la, xl)));
    b1 = f32x4.add(b1, madd(hb, xh, f32x4.mul(lb, xl)));
    pa += step; pb += step; x0 += 32; x1 += 32;
  }
  if (k & 4) {
    const va = wide4(fmt, pa), vb = wide4(fmt, pb);
    let xv = v128.load(x0);
    a0 = madd(va, xv, a0); b0 = madd(vb, xv, b0);
    xv = v128.load(x1);
    a1 = madd(va, xv, a1); b1 = madd(vb, xv, b1);
  }
  const z = f32x4.splat(0);
  storeTile(a0, a1, z, z, b0, b1, z, z, real, ya, yb, ldy4, acc);
}

/**
 * Weight rows wa, wb against all m activation rows: m ≤ 2 in one 2-row tile, else groups of
 * four, the last of one to four.
 */
// @ts-ignore: decorator
@inline function pairRows(fmt: i32, wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32,
                          ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  if (m <= 2) {
    tile2(fmt, m, wa, wb, x, ldx4, k, ya, yb, ldy4, acc);
    return;
  }
  for (let i = 0; i < m; i += 4) {
    const o = <usize>i;
    tile(fmt, min(4, m - i), wa, wb, x + o * ldx4, ldx4, k, ya + o * ldy4, yb + o * ldy4, ldy4, acc);
  }
}

// One function per format, so each tile is compiled with its constants.
function pairF32(wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  pairRows(F32, wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
}
function pairBF16(wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  pairRows(BF16, wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
}

/**
 * Y (+)= X · Wᵀ: weight rows j and j + d side by side (d·wStride ≈ PAIR_BYTES, as matvec pairs
 * them, while they stay PAIR_MIN_BYTES apart), then neighbouring pairs, then a lone last row.
 */
function product(fmt: i32, x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  const kk = max(k, 0);
  const ldx4 = <usize>ldx * 4, ldy4 = <usize>ldy * 4, wStride = <usize>ldw * wBytes(fmt);
  let j = 0, d = 1;
  if (wStride > 0) d = <i32>((PAIR_BYTES + wStride - 1) / wStride);
  while (j < n) {
    // Pairs d rows apart while they stay far enough apart, then neighbours, then the last row alone.
    if (n - j < 2 * d) {
      d = (n - j) >> 1;
      if (d == 0 || <usize>d * wStride < PAIR_MIN_BYTES) d = n - j >= 2 ? 1 : 0;
    }
    const far = <usize>d;
    for (let r = j, end = j + max(d, 1); r < end; r++) {
      const ur = <usize>r;
      const wa = w + ur * wStride, wb = w + (ur + far) * wStride, ya = y + ur * 4, yb = y + (ur + far) * 4;
      if (fmt == F32) pairF32(wa, wb, x, ldx4, m, kk, ya, yb, ldy4, acc);
      else pairBF16(wa, wb, x, ldx4, m, kk, ya, yb, ldy4, acc);
    }
    j += d > 0 ? 2 * d : 1;
  }
  // The k % 4 tail of every output, summed in order and then added: one loop for all tiles.
  const k4 = kk & ~3, size = wBytes(fmt);
  if (k4 == kk) return;
  for (let r = 0; r < n; r++) {
    const wr = w + <usize>r * wStride + <usize>k4 * size;
    for (let i = 0; i < m; i++) {
      const xi = x + <usize>i * ldx4 + <usize>k4 * 4, yi = y + <usize>i * ldy4 + <usize>r * 4;
      let t: f32 = 0;
      for (let q = 0; q < kk - k4; q++) t += wide1(fmt, wr + <usize>q * size) * load<f32>(xi + <usize>q * 4);
      store<f32>(yi, load<f32>(yi) + t);
    }
  }
}

/** Y[m, n] (+)= X[m, k] · W[n, k]ᵀ; X, Y f32 with row strides ldx, ldy; W f32 with row stride ldw. */
export function gemv_rows_f32(x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  product(F32, x, ldx, w, ldw, y, ldy, m, k, n, acc);
}

/** As gemv_rows_f32 with bf16 weights (ldw in u16 elements). */
export function gemv_rows_bf16(x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  product(BF16, x, ldx, w, ldw, y, ldy, m, k, n, acc);
}
