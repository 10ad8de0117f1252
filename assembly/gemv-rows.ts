// Multi-row GEMV: Y[m, n] (+)= X[m, k] · W[n, k]ᵀ for a few activation rows (batched decode: one
// row per session), W in f32, bf16, f16, q8 or q4 (the layouts of matmul.ts and quant.ts).
// Each weight vector is loaded from memory once and used for every activation row of a tile
// while it is in registers; a row group past the first re-reads the weight rows from L1. So W is
// read from DRAM once for any m, as matvec reads it for one row, and the multiply-adds per byte of
// W grow with m: at 8 rows the f32 product is compute-bound rather than read-bound.
//
// Tiles. f32, bf16, f16: two weight rows × up to four activation rows, one f32x4 accumulator per
// pair (8): with the loaded vectors that is 14 of V8's 15 xmm registers (15 in the plain build,
// whose product is a register of its own), the same budget as matmul.ts's tiles. A narrow weight
// is widened once (bf16: a widening load and a shift; f16: bit arithmetic, exact) for all rows.
// The two weight rows are read PAIR_BYTES apart where there are enough rows, as matvec reads
// them. q8 / q4: one weight row × up to four activation rows, activations quantised per block of
// 32 by quantize_q8_act; per block an exact i32 dot product (plain build: i32x4.dot_i16x8_s on
// sign-extending loads; relaxed: the 7-bit relaxed dot, as quant.ts), then acc += f32(Σ) · (d_w·d_x)
// lane-wise, as quant.ts does.
//
// Every output is one accumulator chain over k in steps of 4 (blocks of 32 for q8 / q4), reduced
// by hsum, then (f32 / bf16 / f16) the k % 4 tail added in order. That does not depend on the tile
// or pass an output falls in, on m, or on which rows a thread's chunk holds: a split across
// threads by weight rows gives the one-thread result bit for bit. It is not the single-row
// matvec's order (four chains of 16), so a row's result may differ from matvec's by rounding.
import { madd, hsum } from "./simd";

// @ts-ignore: decorator
@inline const F32: i32 = 0;
// @ts-ignore: decorator
@inline const BF16: i32 = 1;
// @ts-ignore: decorator
@inline const F16: i32 = 2;
// @ts-ignore: decorator
@inline const Q8: i32 = 3;
// @ts-ignore: decorator
@inline const Q4: i32 = 4;

// @ts-ignore: decorator
@inline const PAIR_BYTES: usize = 2 << 20;
// @ts-ignore: decorator
@inline const PAIR_MIN_BYTES: usize = 512 << 10;
/** Activation rows per tile (a pass over the weight rows' k). */
// @ts-ignore: decorator
@inline const XR: i32 = 4;
/** Rows of X up to which the host uses these kernels (gemv_rows_max); beyond, X leaves L2. */
// @ts-ignore: decorator
@inline const ROWS_MAX: i32 = 16;
// @ts-ignore: decorator
@inline const F16_SCALE: f32 = 5.192296858534828e+33; // 2^112, see quant.ts

/** The most rows of X the host should give these kernels; more go to matmul_nt / qgemm. */
export function gemv_rows_max(): i32 {
  return ROWS_MAX;
}

// ---------------------------------------------------------------------------------------------
// f32, bf16, f16

/** Bytes per weight. */
// @ts-ignore: decorator
@inline function wBytes(fmt: i32): usize {
  return fmt == F32 ? 4 : 2;
}

/** Four weights at p as f32x4 (exact widening). */
// @ts-ignore: decorator
@inline function wide4(fmt: i32, p: usize): v128 {
  if (fmt == F32) return v128.load(p);
  const h = v128.load16x4_u(p); // u16 → u32 lanes
  if (fmt == BF16) return i32x4.shl(h, 16);
  // f16: |h| << 13 as f32 is |h|·2⁻¹¹² for normals and subnormals; ×2¹¹² is exact; exponent 31
  // (inf/NaN) gets 0x7F800000 ORed in, keeping the payload; then the sign.
  const em = v128.and(h, i32x4.splat(0x7FFF));
  const v = f32x4.mul(i32x4.shl(em, 13), f32x4.splat(F16_SCALE));
  const special = v128.and(i32x4.gt_s(em, i32x4.splat(0x7BFF)), i32x4.splat(0x7F800000));
  return v128.or(v128.or(v, special), i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** One weight at p as f32, the same arithmetic as wide4. */
// @ts-ignore: decorator
@inline function wide1(fmt: i32, p: usize): f32 {
  if (fmt == F32) return load<f32>(p);
  const h = <u32>load<u16>(p);
  if (fmt == BF16) return reinterpret<f32>(h << 16);
  const em = h & 0x7FFF;
  let bits = reinterpret<u32>(reinterpret<f32>(em << 13) * F16_SCALE);
  if (em > 0x7BFF) bits |= 0x7F800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/** y (+)= hsum(s) + Σ of the last `tail` (0–3) products w[i]·x[i], in order. */
// @ts-ignore: decorator
@inline function finish(fmt: i32, s: v128, w: usize, x: usize, tail: i32, y: usize, acc: bool): void {
  let r = hsum(s);
  for (let i = 0; i < tail; i++) r += wide1(fmt, w + <usize>i * wBytes(fmt)) * load<f32>(x + <usize>i * 4);
  store<f32>(y, acc ? load<f32>(y) + r : r);
}

/**
 * Weight rows wa (and wb when `two`) × activation rows x … x + (rows − 1)·ldx4 over k: outputs
 * ya + r·ldy4 (and yb + r·ldy4). `two` and `rows` (1 … XR) are constants at each call site.
 */
// @ts-ignore: decorator
@inline function wideTile(fmt: i32, two: bool, rows: i32, wa: usize, wb: usize, x: usize, ldx4: usize, k: i32,
                          ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  const step = wBytes(fmt) * 4;
  let x0 = x, x1 = x + ldx4, x2 = x + ldx4 * 2, x3 = x + ldx4 * 3;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  let pa = wa, pb = wb;
  const end = wa + <usize>(k >> 2) * step;
  while (pa < end) {
    const va = wide4(fmt, pa);
    const vb = two ? wide4(fmt, pb) : va;
    let xv = v128.load(x0);
    a0 = madd(va, xv, a0);
    if (two) b0 = madd(vb, xv, b0);
    if (rows > 1) {
      xv = v128.load(x1);
      a1 = madd(va, xv, a1);
      if (two) b1 = madd(vb, xv, b1);
    }
    if (rows > 2) {
      xv = v128.load(x2);
      a2 = madd(va, xv, a2);
      if (two) b2 = madd(vb, xv, b2);
    }
    if (rows > 3) {
      xv = v128.load(x3);
      a3 = madd(va, xv, a3);
      if (two) b3 = madd(vb, xv, b3);
    }
    pa += step; pb += step;
    x0 += 16; x1 += 16; x2 += 16; x3 += 16;
  }
  const tail = k & 3;
  finish(fmt, a0, pa, x0, tail, ya, acc);
  if (two) finish(fmt, b0, pb, x0, tail, yb, acc);
  if (rows > 1) {
    finish(fmt, a1, pa, x1, tail, ya + ldy4, acc);
    if (two) finish(fmt, b1, pb, x1, tail, yb + ldy4, acc);
  }
  if (rows > 2) {
    finish(fmt, a2, pa, x2, tail, ya + ldy4 * 2, acc);
    if (two) finish(fmt, b2, pb, x2, tail, yb + ldy4 * 2, acc);
  }
  if (rows > 3) {
    finish(fmt, a3, pa, x3, tail, ya + ldy4 * 3, acc);
    if (two) finish(fmt, b3, pb, x3, tail, yb + ldy4 * 3, acc);
  }
}

/** Weight rows wa (and wb) against all m activation rows: tiles of XR rows, then the rest. */
// @ts-ignore: decorator
@inline function wideRows(fmt: i32, two: bool, wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32,
                          ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  let i = 0;
  for (; i + XR <= m; i += XR) {
    const o = <usize>i;
    wideTile(fmt, two, XR, wa, wb, x + o * ldx4, ldx4, k, ya + o * ldy4, yb + o * ldy4, ldy4, acc);
  }
  const o = <usize>i, rest = m - i;
  if (rest == 3) wideTile(fmt, two, 3, wa, wb, x + o * ldx4, ldx4, k, ya + o * ldy4, yb + o * ldy4, ldy4, acc);
  else if (rest == 2) wideTile(fmt, two, 2, wa, wb, x + o * ldx4, ldx4, k, ya + o * ldy4, yb + o * ldy4, ldy4, acc);
  else if (rest == 1) wideTile(fmt, two, 1, wa, wb, x + o * ldx4, ldx4, k, ya + o * ldy4, yb + o * ldy4, ldy4, acc);
}

// One function per format and pairing, so each tile is compiled once with its constants.
function pairF32(wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  wideRows(F32, true, wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
}
function oneF32(wa: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, ldy4: usize, acc: bool): void {
  wideRows(F32, false, wa, wa, x, ldx4, m, k, ya, ya, ldy4, acc);
}
function pairBF16(wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  wideRows(BF16, true, wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
}
function oneBF16(wa: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, ldy4: usize, acc: bool): void {
  wideRows(BF16, false, wa, wa, x, ldx4, m, k, ya, ya, ldy4, acc);
}
function pairF16(wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, yb: usize, ldy4: usize, acc: bool): void {
  wideRows(F16, true, wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
}
function oneF16(wa: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, ldy4: usize, acc: bool): void {
  wideRows(F16, false, wa, wa, x, ldx4, m, k, ya, ya, ldy4, acc);
}

// @ts-ignore: decorator
@inline function pair(fmt: i32, wa: usize, wb: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, yb: usize,
                      ldy4: usize, acc: bool): void {
  if (fmt == F32) pairF32(wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
  else if (fmt == BF16) pairBF16(wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
  else pairF16(wa, wb, x, ldx4, m, k, ya, yb, ldy4, acc);
}

// @ts-ignore: decorator
@inline function one(fmt: i32, wa: usize, x: usize, ldx4: usize, m: i32, k: i32, ya: usize, ldy4: usize, acc: bool): void {
  if (fmt == F32) oneF32(wa, x, ldx4, m, k, ya, ldy4, acc);
  else if (fmt == BF16) oneBF16(wa, x, ldx4, m, k, ya, ldy4, acc);
  else oneF16(wa, x, ldx4, m, k, ya, ldy4, acc);
}

/**
 * Y (+)= X · Wᵀ for a wide format: weight rows j and j + d side by side (d·wStride ≈ PAIR_BYTES,
 * as matvec pairs them, while they stay PAIR_MIN_BYTES apart), then neighbouring pairs, then a
 * lone last row.
 */
// @ts-ignore: decorator
@inline function wideProduct(fmt: i32, x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32,
                             m: i32, k: i32, n: i32, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  const kk = max(k, 0);
  const ldx4 = <usize>ldx * 4, ldy4 = <usize>ldy * 4, wStride = <usize>ldw * wBytes(fmt);
  let j = 0;
  if (wStride > 0) {
    let d = <i32>((PAIR_BYTES + wStride - 1) / wStride);
    for (;;) {
      if (n - j < 2 * d) {
        d = (n - j) >> 1;
        if (<usize>d * wStride < PAIR_MIN_BYTES) break;
      }
      const far = <usize>d;
      for (let r = j; r < j + d; r++) {
        const ur = <usize>r;
        pair(fmt, w + ur * wStride, w + (ur + far) * wStride, x, ldx4, m, kk, y + ur * 4, y + (ur + far) * 4, ldy4, acc);
      }
      j += 2 * d;
    }
  }
  for (; j + 2 <= n; j += 2) {
    const uj = <usize>j;
    pair(fmt, w + uj * wStride, w + (uj + 1) * wStride, x, ldx4, m, kk, y + uj * 4, y + (uj + 1) * 4, ldy4, acc);
  }
  if (j < n) one(fmt, w + <usize>j * wStride, x, ldx4, m, kk, y + <usize>j * 4, ldy4, acc);
}

/** Y[m, n] (+)= X[m, k] · W[n, k]ᵀ; X, Y f32 with row strides ldx, ldy; W f32 with row stride ldw. */
export function gemv_rows_f32(x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  wideProduct(F32, x, ldx, w, ldw, y, ldy, m, k, n, acc);
}

/** As gemv_rows_f32 with bf16 weights (ldw in u16 elements). */
export function gemv_rows_bf16(x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  wideProduct(BF16, x, ldx, w, ldw, y, ldy, m, k, n, acc);
}

/** As gemv_rows_f32 with f16 weights (ldw in u16 elements). */
export function gemv_rows_f16(x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  wideProduct(F16, x, ldx, w, ldw, y, ldy, m, k, n, acc);
}

// ---------------------------------------------------------------------------------------------
// q8, q4

/**
 * acc + f32(Σ of the block's 32 products) · (dw · x's scale), lane-wise: w0 … w3 the block's
 * weights as quantTile loads them, q the activation row's 32 int8 codes, d its scale. The i32 sum is exact. Plain build: i32x4.dot_i16x8_s on sign-extending
 * loads. Relaxed build, as quant.ts: i16x8.relaxed_dot_i8x16_i7x16_s, whose second operand must be
 * 0…127 (not the _add_s form: broken under Node 20, see quant.ts), then pairwise to i32:
 *   q8: x split into max(x, 0) and max(−x, 0); each i16 pair sum w·x⁺ − w·x⁻ is exact (≤ 2·127²).
 *   q4: the nibble n (0…15) is the 7-bit operand: Σ (n − 8)·x = Σ n·x − 8·Σ x, exact in i16.
 */
// @ts-ignore: decorator
@inline function blockDot(fmt: i32, w0: v128, w1: v128, w2: v128, w3: v128, q: usize, d: usize, dw: f32, f: v128): v128 {
  let s: v128;
  if (ASC_FEATURE_RELAXED_SIMD) {
    const xv0 = v128.load(q), xv1 = v128.load(q, 16);
    if (fmt == Q8) {
      const zero = i32x4.splat(0);
      const xp0 = i8x16.max_s(xv0, zero), xp1 = i8x16.max_s(xv1, zero);
      const xn0 = i8x16.sub(xp0, xv0), xn1 = i8x16.sub(xp1, xv1);
      s = i32x4.add(
        i32x4.extadd_pairwise_i16x8_s(i16x8.sub(i16x8.relaxed_dot_i8x16_i7x16_s(w0, xp0), i16x8.relaxed_dot_i8x16_i7x16_s(w0, xn0))),
        i32x4.extadd_pairwise_i16x8_s(i16x8.sub(i16x8.relaxed_dot_i8x16_i7x16_s(w1, xp1), i16x8.relaxed_dot_i8x16_i7x16_s(w1, xn1))));
    } else {
      const eight = i8x16.splat(8);
      const u = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xv0, eight), i16x8.relaxed_dot_i8x16_i7x16_s(xv1, eight));
      const t = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xv0, w0), i16x8.relaxed_dot_i8x16_i7x16_s(xv1, w1));
      s = i32x4.extadd_pairwise_i16x8_s(i16x8.sub(t, u));
    }
  } else {
    s = i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(w0, v128.load8x8_s(q)), i32x4.dot_i16x8_s(w1, v128.load8x8_s(q, 8))),
      i32x4.add(i32x4.dot_i16x8_s(w2, v128.load8x8_s(q, 16)), i32x4.dot_i16x8_s(w3, v128.load8x8_s(q, 24))));
  }
  return madd(f32x4.convert_i32x4_s(s), f32x4.splat(dw * load<f32>(d)), f);
}

/**
 * One q8 / q4 weight row (codes w, scales s) × activation rows (codes xq + r·k, scales
 * xd + r·nb·4) over nb blocks: outputs y + r·ldy4. `rows` (1 … XR) is constant at each call site.
 */
// @ts-ignore: decorator
@inline function quantTile(fmt: i32, rows: i32, w: usize, s: usize, xq: usize, xd: usize, nb: i32,
                           y: usize, ldy4: usize, acc: bool): void {
  const qStride = <usize>nb * 32, dStride = <usize>nb * 4;
  let q0 = xq, q1 = xq + qStride, q2 = xq + qStride * 2, q3 = xq + qStride * 3;
  let d0 = xd, d1 = xd + dStride, d2 = xd + dStride * 2, d3 = xd + dStride * 3;
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let pw = w, ps = s;
  const m = i8x16.splat(0x0F), zero = i32x4.splat(0);
  for (let i = 0; i < nb; i++) {
    // The block's weights, once for every activation row: relaxed q8 as stored (two int8x16),
    // relaxed q4 as unbiased nibbles (elements 0–15, 16–31); plain build as i16x8 of elements
    // 0–7, 8–15, 16–23, 24–31 (q4: code − 8). Element j of a q4 block is in byte j's low nibble,
    // j + 16 in its high nibble.
    let w0 = zero, w1 = zero, w2 = zero, w3 = zero;
    if (ASC_FEATURE_RELAXED_SIMD) {
      if (fmt == Q8) { w0 = v128.load(pw); w1 = v128.load(pw, 16); }
      else { const v = v128.load(pw); w0 = v128.and(v, m); w1 = v128.and(i16x8.shr_u(v, 4), m); }
    } else if (fmt == Q8) {
      w0 = v128.load8x8_s(pw); w1 = v128.load8x8_s(pw, 8); w2 = v128.load8x8_s(pw, 16); w3 = v128.load8x8_s(pw, 24);
    } else {
      const eight = i8x16.splat(8), v = v128.load(pw);
      const lo = i8x16.sub(v128.and(v, m), eight), hi = i8x16.sub(v128.and(i16x8.shr_u(v, 4), m), eight);
      w0 = i16x8.extend_low_i8x16_s(lo); w1 = i16x8.extend_high_i8x16_s(lo);
      w2 = i16x8.extend_low_i8x16_s(hi); w3 = i16x8.extend_high_i8x16_s(hi);
    }
    const dw = load<f32>(ps);
    f0 = blockDot(fmt, w0, w1, w2, w3, q0, d0, dw, f0);
    if (rows > 1) f1 = blockDot(fmt, w0, w1, w2, w3, q1, d1, dw, f1);
    if (rows > 2) f2 = blockDot(fmt, w0, w1, w2, w3, q2, d2, dw, f2);
    if (rows > 3) f3 = blockDot(fmt, w0, w1, w2, w3, q3, d3, dw, f3);
    pw += fmt == Q8 ? 32 : 16; ps += 4;
    q0 += 32; q1 += 32; q2 += 32; q3 += 32;
    d0 += 4; d1 += 4; d2 += 4; d3 += 4;
  }
  storeOut(y, hsum(f0), acc);
  if (rows > 1) storeOut(y + ldy4, hsum(f1), acc);
  if (rows > 2) storeOut(y + ldy4 * 2, hsum(f2), acc);
  if (rows > 3) storeOut(y + ldy4 * 3, hsum(f3), acc);
}

// @ts-ignore: decorator
@inline function storeOut(p: usize, v: f32, acc: bool): void {
  store<f32>(p, acc ? load<f32>(p) + v : v);
}

/** Y (+)= X · Wᵀ for q8 / q4: each weight row against all m activation rows, XR at a time. */
// @ts-ignore: decorator
@inline function quantProduct(fmt: i32, xq: usize, xd: usize, wq: usize, wd: usize, y: usize, ldy: i32,
                              m: i32, k: i32, n: i32, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  const nb = max(k, 0) >> 5, ldy4 = <usize>ldy * 4;
  const wStride = <usize>nb * (fmt == Q8 ? 32 : 16), sStride = <usize>nb * 4;
  const qRows = <usize>nb * 32 * XR, dRows = <usize>nb * 4 * XR;
  for (let j = 0; j < n; j++) {
    const uj = <usize>j;
    const w = wq + uj * wStride, s = wd + uj * sStride, yj = y + uj * 4;
    let i = 0, q = xq, d = xd, yi = yj;
    for (; i + XR <= m; i += XR) {
      quantTile(fmt, XR, w, s, q, d, nb, yi, ldy4, acc);
      q += qRows; d += dRows; yi += ldy4 * XR;
    }
    const rest = m - i;
    if (rest == 3) quantTile(fmt, 3, w, s, q, d, nb, yi, ldy4, acc);
    else if (rest == 2) quantTile(fmt, 2, w, s, q, d, nb, yi, ldy4, acc);
    else if (rest == 1) quantTile(fmt, 1, w, s, q, d, nb, yi, ldy4, acc);
  }
}

/**
 * Y[m, n] (+)= X · Wᵀ, X as m rows quantised by quantize_q8_act (xq: rows of k int8, xd: rows of
 * k/32 f32, both contiguous), W q8 as for matvec_q8 (wq rows of k int8, wd f32 [n, k/32]),
 * Y f32 (row stride ldy); k a multiple of 32.
 */
export function gemv_rows_q8(xq: usize, xd: usize, wq: usize, wd: usize, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  quantProduct(Q8, xq, xd, wq, wd, y, ldy, m, k, n, acc);
}

/** As gemv_rows_q8 with q4 weights (wq rows of k/2 bytes, 16 per block). */
export function gemv_rows_q4(xq: usize, xd: usize, wq: usize, wd: usize, y: usize, ldy: i32, m: i32, k: i32, n: i32, acc: bool): void {
  quantProduct(Q4, xq, xd, wq, wd, y, ldy, m, k, n, acc);
}
