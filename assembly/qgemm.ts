// Prefill products with q8 / q4 weights (quant.ts formats) as a packed, register-blocked GEMM:
// C[m, n] = A · Wᵀ, A quantised by quantize_qgemm_act (per block of 32, one f32 scale each).
//
// Plain build: for each panel of NR = 8 weight rows (columns of C) the codes are widened once to i16 —
// q4 as q − 8 — and packed in k pairs: pair p of the panel is 32 bytes, [column c: w[c, 2p],
// w[c, 2p + 1]] for c = 0..7, with the panel's scales as [block][8] f32 after the codes. Every
// activation row then runs against the packed panel (from L1/L2) instead of re-widening the row
// per activation row as matmul_nt_q8/q4 do. The micro-kernel, MR rows × 8 columns: per k pair,
// one activation pair broadcast and widened (v128.load16_splat + extend), two i32x4.dot_i16x8_s
// (pmaddwd: 8 multiply-adds each) into i32 accumulators; after each block of 32 the exact block
// sums become f32 and are added as acc += f32(Σ) · (d_w·d_x).
//
// The relaxed build keeps the panel as int8 instead, for relaxed_dot_i8x16_i7x16_s (pmaddubsw,
// 16 multiply-adds): its second operand must be 7-bit, so there the activations are quantised by
// quantize_qgemm_act to ±63 per block and stored + 64 (1..127), and each block's bias 64·Σ_k w is
// removed by starting its accumulator at −64·Σ_k w (per column, packed beside the scales). The
// panel holds k quads: quad q of a block is 32 bytes, [column c: w[c, 4q .. 4q + 3]] for c = 0..7,
// then per block the panel's 8 f32 scales and 8 i32 biases. Per quad, one activation quad
// broadcast (v128.load32_splat) against two 16-byte vectors: pmaddubsw + extadd (pmaddwd) + add
// per 16 multiply-adds, where the i16 path spends two pmaddwd + two adds; with fewer ops per
// row the tile grows to 4 rows × 8 columns (8 i32 + 8 f32 accumulators). Not
// i32x4.relaxed_dot_i8x16_i7x16_add_s: Node 20 miscompiles it on x64 (see quant.ts).
// Each output's arithmetic depends on its column and row alone (not on the tile or chunk it
// falls in), so a split of the columns at multiples of NR gives the one-thread bits.
import { madd } from "./simd";
import { quantBlock } from "./quant";

// @ts-ignore: decorator
@inline const NR: i32 = 8;
// @ts-ignore: decorator
@inline const RELAXED: bool = ASC_FEATURE_RELAXED_SIMD;
// @ts-ignore: decorator
@inline const MR: i32 = RELAXED ? 4 : 2;
// The relaxed build's activation codes: ±LEVELS, stored + BIAS.
// @ts-ignore: decorator
@inline const LEVELS: f32 = 63;
// @ts-ignore: decorator
@inline const BIAS: i32 = 64;

/** Bytes of `pack` scratch qgemm_q8 / qgemm_q4 need for rows of k (a multiple of 32). */
export function qgemm_pack_bytes(k: i32): i32 {
  return RELAXED ? max(k, 0) * NR + (max(k, 0) >> 5) * NR * 8 : max(k, 0) * NR * 2 + (max(k, 0) >> 5) * NR * 4;
}

/**
 * Activations for qgemm_q8 / qgemm_q4: x[k] f32 (k a multiple of 32) → xq (k codes), xd (k/32
 * f32). The plain build: quantize_q8_act's int8. The relaxed build: d = max|v| / 63, codes
 * round(v / d) + 64 (qgemm_act_bias()).
 */
export function quantize_qgemm_act(x: usize, k: i32, xq: usize, xd: usize): void {
  const nb = max(k, 0) >> 5;
  for (let b = 0; b < nb; b++) {
    const ub = <usize>b;
    if (RELAXED) quantBlock(x + ub * 128, xq + ub * 32, xd + ub * 4, LEVELS, <i8>BIAS);
    else quantBlock(x + ub * 128, xq + ub * 32, xd + ub * 4, 127, 0);
  }
}

/** What quantize_qgemm_act adds to every activation code: 64 in the relaxed build, else 0. */
export function qgemm_act_bias(): i32 {
  return RELAXED ? BIAS : 0;
}

/** Columns of C a split of qgemm across threads keeps together (one packed panel). */
export function qgemm_split_cols(): i32 {
  return NR;
}

/**
 * C[m, n] = A · Wᵀ, A rows quantised by quantize_qgemm_act (aq: m rows of k codes, ad: m rows of
 * k/32 f32), W q8 (wq: n rows of k int8, wd: [n, k/32] f32), C f32 (stride ldc); k a multiple of
 * 32; `pack` scratch of qgemm_pack_bytes(k) bytes.
 */
export function qgemm_q8(aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
                         m: i32, k: i32, n: i32, pack: usize): void {
  gemm(false, aq, ad, wq, wd, c, ldc, m, k, n, pack);
}

/** As qgemm_q8 with q4 weights (wq: n rows of k/2 bytes, quant.ts's nibble order). */
export function qgemm_q4(aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
                         m: i32, k: i32, n: i32, pack: usize): void {
  gemm(true, aq, ad, wq, wd, c, ldc, m, k, n, pack);
}

// Not inlined: q4 matters only to the packing, so both formats share one copy of the tiles.
function gemm(q4: bool, aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
              m: i32, k: i32, n: i32, pack: usize): void {
  if (m <= 0 || n <= 0 || k < 32) return;
  const nb = k >> 5;
  const uk = <usize>k, rowBytes: usize = q4 ? uk >> 1 : uk, sBytes = <usize>nb * 4;
  const scales = pack + uk * (RELAXED ? NR : NR * 2);
  const cStride = <usize>ldc * 4;
  const mFull = m - m % MR;
  for (let j = 0; j < n; j += NR) {
    const cols = min(NR, n - j);
    packPanel(q4, wq + <usize>j * rowBytes, rowBytes, wd + <usize>j * sBytes, sBytes, cols, nb, pack, scales);
    const cj = c + <usize>j * 4;
    let i = 0;
    for (; i < mFull; i += MR) {
      if (RELAXED) tile8(MR, aq + <usize>i * uk, uk, ad + <usize>i * sBytes, sBytes, pack, scales, nb, cj + <usize>i * cStride, cStride, cols);
      else tile16(MR, aq + <usize>i * uk, uk, ad + <usize>i * sBytes, sBytes, pack, scales, nb, cj + <usize>i * cStride, cStride, cols);
    }
    for (; i < m; i++) {
      if (RELAXED) tile8(1, aq + <usize>i * uk, uk, ad + <usize>i * sBytes, sBytes, pack, scales, nb, cj + <usize>i * cStride, cStride, cols);
      else tile16(1, aq + <usize>i * uk, uk, ad + <usize>i * sBytes, sBytes, pack, scales, nb, cj + <usize>i * cStride, cStride, cols);
    }
  }
}

/** acc + the four column sums of w·x (16 multiply-adds: column c in bytes 4c .. 4c + 3). */
// @ts-ignore: decorator
@inline function dot4(acc: v128, w: v128, x: v128): v128 {
  return i32x4.add(acc, i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(w, x)));
}

/**
 * The relaxed build's micro-kernel: rows (1..MR, a constant at each call site) of biased 7-bit
 * activations against the int8 panel, storing the first `cols` columns of each row.
 */
// @ts-ignore: decorator
@inline function tile8(rows: i32, a: usize, aStride: usize, ad: usize, adStride: usize, panel: usize, scales: usize,
                       nb: i32, c: usize, cStride: usize, cols: i32): void {
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let f20 = f32x4.splat(0), f21 = f32x4.splat(0), f30 = f32x4.splat(0), f31 = f32x4.splat(0);
  let a0 = a;
  let d0 = ad;
  let pw = panel, ps = scales;
  for (let b = 0; b < nb; b++) {
    const z0 = v128.load(ps, 32), z1 = v128.load(ps, 48);
    let i00 = z0, i01 = z1, i10 = z0, i11 = z1, i20 = z0, i21 = z1, i30 = z0, i31 = z1;
    const end = pw + 8 * 32;
    while (pw < end) {
      const w0 = v128.load(pw), w1 = v128.load(pw, 16);
      let x = v128.load32_splat(a0);
      i00 = dot4(i00, w0, x); i01 = dot4(i01, w1, x);
      if (rows > 1) { x = v128.load32_splat(a0 + aStride); i10 = dot4(i10, w0, x); i11 = dot4(i11, w1, x); }
      if (rows > 2) { x = v128.load32_splat(a0 + 2 * aStride); i20 = dot4(i20, w0, x); i21 = dot4(i21, w1, x); }
      if (rows > 3) { x = v128.load32_splat(a0 + 3 * aStride); i30 = dot4(i30, w0, x); i31 = dot4(i31, w1, x); }
      a0 += 4; pw += 32;
    }
    const s0 = v128.load(ps), s1 = v128.load(ps, 16);
    let dx = f32x4.splat(load<f32>(d0));
    f00 = madd(f32x4.convert_i32x4_s(i00), f32x4.mul(s0, dx), f00);
    f01 = madd(f32x4.convert_i32x4_s(i01), f32x4.mul(s1, dx), f01);
    if (rows > 1) {
      dx = f32x4.splat(load<f32>(d0 + adStride));
      f10 = madd(f32x4.convert_i32x4_s(i10), f32x4.mul(s0, dx), f10);
      f11 = madd(f32x4.convert_i32x4_s(i11), f32x4.mul(s1, dx), f11);
    }
    if (rows > 2) {
      dx = f32x4.splat(load<f32>(d0 + 2 * adStride));
      f20 = madd(f32x4.convert_i32x4_s(i20), f32x4.mul(s0, dx), f20);
      f21 = madd(f32x4.convert_i32x4_s(i21), f32x4.mul(s1, dx), f21);
    }
    if (rows > 3) {
      dx = f32x4.splat(load<f32>(d0 + 3 * adStride));
      f30 = madd(f32x4.convert_i32x4_s(i30), f32x4.mul(s0, dx), f30);
      f31 = madd(f32x4.convert_i32x4_s(i31), f32x4.mul(s1, dx), f31);
    }
    ps += 64; d0 += 4;
  }
  storeRow(c, f00, f01, cols);
  if (rows > 1) storeRow(c + cStride, f10, f11, cols);
  if (rows > 2) storeRow(c + 2 * cStride, f20, f21, cols);
  if (rows > 3) storeRow(c + 3 * cStride, f30, f31, cols);
}

/**
 * The plain build's micro-kernel: rows (1..MR, a constant at each call site) of A against the packed panel,
 * storing the first `cols` columns of each row.
 */
// @ts-ignore: decorator
@inline function tile16(rows: i32, a: usize, aStride: usize, ad: usize, adStride: usize, panel: usize, scales: usize,
                      nb: i32, c: usize, cStride: usize, cols: i32): void {
  const zero = i32x4.splat(0);
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let a0 = a, a1 = a + aStride;
  let d0 = ad, d1 = ad + adStride;
  let pw = panel, ps = scales;
  for (let b = 0; b < nb; b++) {
    let i00 = zero, i01 = zero, i10 = zero, i11 = zero;
    const end = pw + 16 * 32;
    while (pw < end) {
      const w0 = v128.load(pw), w1 = v128.load(pw, 16);
      const w2 = v128.load(pw, 32), w3 = v128.load(pw, 48);
      let x = i16x8.extend_low_i8x16_s(v128.load16_splat(a0));
      i00 = i32x4.add(i00, i32x4.dot_i16x8_s(x, w0)); i01 = i32x4.add(i01, i32x4.dot_i16x8_s(x, w1));
      if (rows > 1) {
        x = i16x8.extend_low_i8x16_s(v128.load16_splat(a1));
        i10 = i32x4.add(i10, i32x4.dot_i16x8_s(x, w0)); i11 = i32x4.add(i11, i32x4.dot_i16x8_s(x, w1));
      }
      x = i16x8.extend_low_i8x16_s(v128.load16_splat(a0, 2));
      i00 = i32x4.add(i00, i32x4.dot_i16x8_s(x, w2)); i01 = i32x4.add(i01, i32x4.dot_i16x8_s(x, w3));
      if (rows > 1) {
        x = i16x8.extend_low_i8x16_s(v128.load16_splat(a1, 2));
        i10 = i32x4.add(i10, i32x4.dot_i16x8_s(x, w2)); i11 = i32x4.add(i11, i32x4.dot_i16x8_s(x, w3));
      }
      a0 += 4; a1 += 4; pw += 64;
    }
    const s0 = v128.load(ps), s1 = v128.load(ps, 16);
    let dx = f32x4.splat(load<f32>(d0));
    f00 = madd(f32x4.convert_i32x4_s(i00), f32x4.mul(s0, dx), f00);
    f01 = madd(f32x4.convert_i32x4_s(i01), f32x4.mul(s1, dx), f01);
    if (rows > 1) {
      dx = f32x4.splat(load<f32>(d1));
      f10 = madd(f32x4.convert_i32x4_s(i10), f32x4.mul(s0, dx), f10);
      f11 = madd(f32x4.convert_i32x4_s(i11), f32x4.mul(s1, dx), f11);
    }
    ps += 32; d0 += 4; d1 += 4;
  }
  storeRow(c, f00, f01, cols);
  if (rows > 1) storeRow(c + cStride, f10, f11, cols);
}

// @ts-ignore: decorator
@inline function storeRow(c: usize, v0: v128, v1: v128, cols: i32): void {
  if (cols == NR) {
    v128.store(c, v0);
    v128.store(c, v1, 16);
  } else {
    storePartial(c, v0, v1, cols);
  }
}

// Not inlined: the n edge is rare.
function storePartial(c: usize, v0: v128, v1: v128, cols: i32): void {
  if (cols >= 4) { v128.store(c, v0); c += 16; cols -= 4; v0 = v1; }
  if (cols > 0) store<f32>(c, f32x4.extract_lane(v0, 0));
  if (cols > 1) store<f32>(c, f32x4.extract_lane(v0, 1), 4);
  if (cols > 2) store<f32>(c, f32x4.extract_lane(v0, 2), 8);
}

/**
 * Pack `cols` (≤ NR) weight rows from w (rowBytes apart; scales at wd, sBytes apart) into the
 * panel (q4 as q − 8), column-interleaved: the plain build's i16 k pairs, then the scales as
 * [block][NR]; the relaxed build's int8 k quads, then per block the NR scales (f32) and the NR
 * biases −64·Σ_k w (i32). Missing columns repeat the last real row (computed, never stored).
 */
function packPanel(q4: bool, w: usize, rowBytes: usize, wd: usize, sBytes: usize, cols: i32, nb: i32,
                   panel: usize, scales: usize): void {
  const last = <usize>(cols - 1);
  // Bytes of one block's codes (8 columns × 32 k) and of its scales (and biases).
  const blockBytes: usize = RELAXED ? 8 * 32 : 16 * 32, scaleBytes: usize = RELAXED ? NR * 8 : NR * 4;
  for (let g: usize = 0; g < <usize>NR; g += 4) {
    const r0 = w + min(g, last) * rowBytes, r1 = w + min(g + 1, last) * rowBytes;
    const r2 = w + min(g + 2, last) * rowBytes, r3 = w + min(g + 3, last) * rowBytes;
    let dst = panel + g * 4;
    for (let b = 0; b < nb; b++) {
      if (q4) {
        const o = <usize>b * 16;
        const v0 = v128.load(r0 + o), v1 = v128.load(r1 + o), v2 = v128.load(r2 + o), v3 = v128.load(r3 + o);
        packCodes(dst, lowNibbles(v0), lowNibbles(v1), lowNibbles(v2), lowNibbles(v3));
        packCodes(dst + blockBytes / 2, highNibbles(v0), highNibbles(v1), highNibbles(v2), highNibbles(v3));
      } else {
        const o = <usize>b * 32;
        packCodes(dst, v128.load(r0 + o), v128.load(r1 + o), v128.load(r2 + o), v128.load(r3 + o));
        packCodes(dst + blockBytes / 2, v128.load(r0 + o, 16), v128.load(r1 + o, 16), v128.load(r2 + o, 16), v128.load(r3 + o, 16));
      }
      if (RELAXED) {
        // Σ_k w of these four columns: byte pairs to i16 (|Σ| ≤ 8·256), then i16 pairs to i32.
        let s = i16x8.splat(0);
        for (let q: usize = 0; q < 8; q++) s = i16x8.add(s, i16x8.extadd_pairwise_i8x16_s(v128.load(dst + q * 32)));
        v128.store(scales + <usize>b * scaleBytes + NR * 4 + g * 4, i32x4.mul(i32x4.extadd_pairwise_i16x8_s(s), i32x4.splat(-BIAS)));
      }
      dst += blockBytes;
    }
  }
  for (let c = 0; c < NR; c++) {
    const src = wd + min(<usize>c, last) * sBytes;
    for (let b = 0; b < nb; b++) store<f32>(scales + <usize>b * scaleBytes + <usize>c * 4, load<f32>(src + <usize>b * 4));
  }
}

/**
 * Sixteen int8 codes (k values kk..kk + 15) of four columns into the panel: in the relaxed
 * build as they are, quad t at dst + t·32; in the plain build widened, as pack16.
 */
// @ts-ignore: decorator
@inline function packCodes(dst: usize, c0: v128, c1: v128, c2: v128, c3: v128): void {
  if (RELAXED) transposeStore(dst, c0, c1, c2, c3);
  else pack16(dst, c0, c1, c2, c3);
}

// @ts-ignore: decorator
@inline function lowNibbles(v: v128): v128 {
  return i8x16.sub(v128.and(v, i8x16.splat(0x0F)), i8x16.splat(8));
}
// @ts-ignore: decorator
@inline function highNibbles(v: v128): v128 {
  return i8x16.sub(v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0F)), i8x16.splat(8));
}

/**
 * Sixteen int8 codes (k values kk..kk + 15) of four columns → eight k pairs of those columns:
 * pair t of column q at dst + t·32 + q·4 (i16, i16).
 */
// @ts-ignore: decorator
@inline function pack16(dst: usize, c0: v128, c1: v128, c2: v128, c3: v128): void {
  transposeStore(dst, i16x8.extend_low_i8x16_s(c0), i16x8.extend_low_i8x16_s(c1),
    i16x8.extend_low_i8x16_s(c2), i16x8.extend_low_i8x16_s(c3));
  transposeStore(dst + 4 * 32, i16x8.extend_high_i8x16_s(c0), i16x8.extend_high_i8x16_s(c1),
    i16x8.extend_high_i8x16_s(c2), i16x8.extend_high_i8x16_s(c3));
}

/** Rows x, y, z, w of four 32-bit lanes, transposed: lane t of each as one vector at d + t·32. */
// @ts-ignore: decorator
@inline function transposeStore(d: usize, x: v128, y: v128, z: v128, w: v128): void {
  const t0 = v128.shuffle<i32>(x, y, 0, 4, 1, 5);
  const t1 = v128.shuffle<i32>(x, y, 2, 6, 3, 7);
  const t2 = v128.shuffle<i32>(z, w, 0, 4, 1, 5);
  const t3 = v128.shuffle<i32>(z, w, 2, 6, 3, 7);
  v128.store(d, v128.shuffle<i32>(t0, t2, 0, 1, 4, 5));
  v128.store(d, v128.shuffle<i32>(t0, t2, 2, 3, 6, 7), 32);
  v128.store(d, v128.shuffle<i32>(t1, t3, 0, 1, 4, 5), 64);
  v128.store(d, v128.shuffle<i32>(t1, t3, 2, 3, 6, 7), 96);
}

