// llama.cpp's K-quants Q4_K and Q6_K, read as the GGUF file stores them (super-blocks of 256
// values along a row, rows contiguous) by products of their own. Neither repacks exactly into
// the q8/q4 blocks of quant.ts: Q4_K's values carry an offset (−dmin·m per 32), and Q6_K has a
// scale per 16 values; both would need rounding again.
//
//   Q4_K, 144 bytes: d (f16) @0, dmin (f16) @2, scales[12] @4, qs[128] @16. Sub-block s (0..7)
//     of 32 values has a 6-bit scale sc_s and min m_s packed in scales[] (scaleMin below); its
//     values are the low (s even) or high (s odd) nibbles of qs[32·(s>>1) .. +32], in order;
//     value = (d·sc_s)·q − (dmin·m_s), each product exact in f32.
//   Q6_K, 210 bytes: ql[128] @0, qh[64] @128, scales (int8)[16] @192, d (f16) @208. Half h
//     (0, 1) of 128 values reads ql[64h..], qh[32h..], scales[8h..]; its group g (0..3) of 32
//     values, l = 0..31: low 4 bits from ql[32·(g&1) + l] (low nibble for g < 2, high for g ≥ 2),
//     high 2 bits from qh[l] >> 2g; value = (d·scales[8h + 2g + (l ≥ 16)])·(q − 32).
//
// Products take activations quantised by quantize_q8_act (int8 per block of 32 with an f32
// scale), as the q8/q4 products do, so every 32-value block of a super-block lines up with one
// activation block. Per block the integer sums are exact in i32; the scales multiply in f32:
//   Q4_K: y += (d·sc·d_x)·Σ q·x_q − (dmin·m·d_x)·Σ x_q
//   Q6_K: y += (d·sc_lo·d_x)·Σ_{16} (q − 32)·x_q + (d·sc_hi·d_x)·Σ_{16} (q − 32)·x_q
// Rows are taken two at a time (adjacent rows: one stream), sharing the activations' widening;
// a row's arithmetic is the same alone or in a pair, so splits by rows are bit-identical.
import { madd, hsum } from "./simd";

// @ts-ignore: decorator
@inline const Q4K_BYTES: usize = 144;
// @ts-ignore: decorator
@inline const Q6K_BYTES: usize = 210;

/** One f16 → f32 (the scales), exact: subnormals by the 2¹¹² multiply, as quant.ts's f16Scalar. */
// @ts-ignore: decorator
@inline function half(p: usize): f32 {
  const h = <u32>load<u16>(p);
  const em = h & 0x7FFF;
  let bits = reinterpret<u32>(reinterpret<f32>(em << 13) * <f32>5.192296858534828e+33);
  if (em > 0x7BFF) bits |= 0x7F800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/** Q4_K's 6-bit scale (low 16 bits) and min (high 16 bits) of sub-block j, from scales[12] at q. */
// @ts-ignore: decorator
@inline function scaleMin(q: usize, j: i32): u32 {
  const uj = <usize>j;
  if (j < 4) return (<u32>load<u8>(q + uj) & 63) | ((<u32>load<u8>(q + uj + 4) & 63) << 16);
  const a = <u32>load<u8>(q + uj + 4), lo = <u32>load<u8>(q + uj - 4), hi = <u32>load<u8>(q + uj);
  return ((a & 0xF) | ((lo >> 6) << 4)) | (((a >> 4) | ((hi >> 6) << 4)) << 16);
}

/** Σ of 16 products as i32x4: 16 int8 weights w (any sign) · x already widened to i16 (xl, xh). */
// @ts-ignore: decorator
@inline function dot16(w: v128, xl: v128, xh: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), xl), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), xh));
}

/**
 * Σ q·x over 16 values as i32x4, q in 0..63 (7-bit): relaxed dot (x signed, q the 7-bit
 * operand; pairs ≤ 2·63·127, exact in i16), minus `sub` (i16 pairs to take away, e.g. 32·Σx).
 */
// @ts-ignore: decorator
@inline function dotU7(q: v128, x: v128, sub: v128): v128 {
  return i32x4.extadd_pairwise_i16x8_s(i16x8.sub(i16x8.relaxed_dot_i8x16_i7x16_s(x, q), sub));
}

// @ts-ignore: decorator
@inline function storeLane(p: usize, v: f32, acc: bool): void {
  store<f32>(p, acc ? load<f32>(p) + v : v);
}

/** Q4_K row(s) ra (and rb) · quantised x: nsb super-blocks. */
// @ts-ignore: decorator
@inline function dotQ4K(two: bool, ra: usize, rb: usize, xq: usize, xd: usize, nsb: i32,
                        ya: usize, yb: usize, acc: bool): void {
  const m4 = i8x16.splat(0x0F), ones = i16x8.splat(1);
  let fa = f32x4.splat(0), fb = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    const da = half(ra), ma = half(ra + 2);
    let db: f32 = 0, mb: f32 = 0;
    if (two) { db = half(rb); mb = half(rb + 2); }
    for (let j = 0; j < 8; j++) {
      // Sub-block j: 32 activations at xq, the nibbles (low for even j, high for odd) of 32 bytes.
      const x0 = v128.load(xq), x1 = v128.load(xq, 16);
      const off = <usize>(16 + ((j >> 1) << 5)), shift = (j & 1) << 2;
      const wa0 = v128.and(i16x8.shr_u(v128.load(ra + off), shift), m4);
      const wa1 = v128.and(i16x8.shr_u(v128.load(ra + off, 16), shift), m4);
      let wb0 = wa0, wb1 = wa1;
      if (two) {
        wb0 = v128.and(i16x8.shr_u(v128.load(rb + off), shift), m4);
        wb1 = v128.and(i16x8.shr_u(v128.load(rb + off, 16), shift), m4);
      }
      let ia: v128, ib: v128 = i32x4.splat(0), sx: v128;
      if (ASC_FEATURE_RELAXED_SIMD) {
        // Nibbles ≤ 15: the pairs of two relaxed dots sum to ≤ 4·15·127, exact in i16.
        ia = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, wa0), i16x8.relaxed_dot_i8x16_i7x16_s(x1, wa1)));
        if (two) ib = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, wb0), i16x8.relaxed_dot_i8x16_i7x16_s(x1, wb1)));
        sx = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.extadd_pairwise_i8x16_s(x0), i16x8.extadd_pairwise_i8x16_s(x1)));
      } else {
        const x0l = i16x8.extend_low_i8x16_s(x0), x0h = i16x8.extend_high_i8x16_s(x0);
        const x1l = i16x8.extend_low_i8x16_s(x1), x1h = i16x8.extend_high_i8x16_s(x1);
        ia = i32x4.add(dot16(wa0, x0l, x0h), dot16(wa1, x1l, x1h));
        if (two) ib = i32x4.add(dot16(wb0, x0l, x0h), dot16(wb1, x1l, x1h));
        sx = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(x0l, ones), i32x4.dot_i16x8_s(x0h, ones)),
          i32x4.add(i32x4.dot_i16x8_s(x1l, ones), i32x4.dot_i16x8_s(x1h, ones)));
      }
      const dx = load<f32>(xd), sxf = f32x4.convert_i32x4_s(sx);
      const sma = scaleMin(ra + 4, j);
      fa = madd(f32x4.convert_i32x4_s(ia), f32x4.splat(da * <f32>(sma & 0xFFFF) * dx), fa);
      fa = madd(sxf, f32x4.splat(-(ma * <f32>(sma >> 16)) * dx), fa);
      if (two) {
        const smb = scaleMin(rb + 4, j);
        fb = madd(f32x4.convert_i32x4_s(ib), f32x4.splat(db * <f32>(smb & 0xFFFF) * dx), fb);
        fb = madd(sxf, f32x4.splat(-(mb * <f32>(smb >> 16)) * dx), fb);
      }
      xq += 32; xd += 4;
    }
    ra += Q4K_BYTES; rb += Q4K_BYTES;
  }
  storeLane(ya, hsum(fa), acc);
  if (two) storeLane(yb, hsum(fb), acc);
}

/** Q6_K's 6-bit codes (0..63) of 16 values: 4 low bits `lo` (nibbles in place), 2 high bits of qh >> 2g. */
// @ts-ignore: decorator
@inline function q6Codes(ql: v128, qh: v128, g: i32): v128 {
  const m4 = i8x16.splat(0x0F), m30 = i8x16.splat(0x30);
  const lo = g < 2 ? v128.and(ql, m4) : v128.and(i16x8.shr_u(ql, 4), m4);
  // Bits 2g, 2g + 1 of each qh byte moved to bits 4, 5 (16-bit shifts; the mask drops what crossed bytes).
  const hi = g == 3 ? v128.and(i16x8.shr_u(qh, 2), m30) : v128.and(i16x8.shl(qh, 4 - 2 * g), m30);
  return v128.or(lo, hi);
}

/** Q6_K row(s) ra (and rb) · quantised x: nsb super-blocks. */
// @ts-ignore: decorator
@inline function dotQ6K(two: bool, ra: usize, rb: usize, xq: usize, xd: usize, nsb: i32,
                        ya: usize, yb: usize, acc: bool): void {
  const b32 = i8x16.splat(32);
  let fa = f32x4.splat(0), fb = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    const da = half(ra + 208);
    let db: f32 = 0;
    if (two) db = half(rb + 208);
    for (let h = 0; h < 2; h++) {
      const uh = <usize>h;
      for (let g = 0; g < 4; g++) {
        const x0 = v128.load(xq), x1 = v128.load(xq, 16);
        const lOff = uh * 64 + <usize>((g & 1) << 5), hOff = 128 + uh * 32;
        const qa0 = q6Codes(v128.load(ra + lOff), v128.load(ra + hOff), g);
        const qa1 = q6Codes(v128.load(ra + lOff, 16), v128.load(ra + hOff, 16), g);
        let qb0 = qa0, qb1 = qa1;
        if (two) {
          qb0 = q6Codes(v128.load(rb + lOff), v128.load(rb + hOff), g);
          qb1 = q6Codes(v128.load(rb + lOff, 16), v128.load(rb + hOff, 16), g);
        }
        let ia0: v128, ia1: v128, ib0: v128 = i32x4.splat(0), ib1: v128 = i32x4.splat(0);
        if (ASC_FEATURE_RELAXED_SIMD) {
          // Σ q·x − 32·Σx per pair: |·| ≤ 2·32·127, exact in i16.
          const s0 = i16x8.relaxed_dot_i8x16_i7x16_s(x0, b32), s1 = i16x8.relaxed_dot_i8x16_i7x16_s(x1, b32);
          ia0 = dotU7(qa0, x0, s0); ia1 = dotU7(qa1, x1, s1);
          if (two) { ib0 = dotU7(qb0, x0, s0); ib1 = dotU7(qb1, x1, s1); }
        } else {
          const x0l = i16x8.extend_low_i8x16_s(x0), x0h = i16x8.extend_high_i8x16_s(x0);
          const x1l = i16x8.extend_low_i8x16_s(x1), x1h = i16x8.extend_high_i8x16_s(x1);
          ia0 = dot16(i8x16.sub(qa0, b32), x0l, x0h); ia1 = dot16(i8x16.sub(qa1, b32), x1l, x1h);
          if (two) { ib0 = dot16(i8x16.sub(qb0, b32), x0l, x0h); ib1 = dot16(i8x16.sub(qb1, b32), x1l, x1h); }
        }
        const dx = load<f32>(xd), sc = uh * 8 + <usize>(2 * g) + 192;
        fa = madd(f32x4.convert_i32x4_s(ia0), f32x4.splat(da * <f32>load<i8>(ra + sc) * dx), fa);
        fa = madd(f32x4.convert_i32x4_s(ia1), f32x4.splat(da * <f32>load<i8>(ra + sc + 1) * dx), fa);
        if (two) {
          fb = madd(f32x4.convert_i32x4_s(ib0), f32x4.splat(db * <f32>load<i8>(rb + sc) * dx), fb);
          fb = madd(f32x4.convert_i32x4_s(ib1), f32x4.splat(db * <f32>load<i8>(rb + sc + 1) * dx), fb);
        }
        xq += 32; xd += 4;
      }
    }
    ra += Q6K_BYTES; rb += Q6K_BYTES;
  }
  storeLane(ya, hsum(fa), acc);
  if (two) storeLane(yb, hsum(fb), acc);
}

// @ts-ignore: decorator
@inline const Q4K: i32 = 0;
// @ts-ignore: decorator
@inline const Q6K: i32 = 1;

/** C[m, n] (+)= A · Wᵀ: each pair of weight rows against every activation row (m = 1: a matvec). */
// @ts-ignore: decorator
@inline function product(fmt: i32, aq: usize, ad: usize, w: usize, c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  const kk = max(k, 0), nsb = kk >> 8;
  const rowBytes = <usize>nsb * (fmt == Q4K ? Q4K_BYTES : Q6K_BYTES);
  const aStride = <usize>kk, adStride = <usize>(kk >> 5) * 4, cStride = <usize>ldc * 4;
  let j = 0;
  for (; j + 2 <= n; j += 2) {
    const wa = w + <usize>j * rowBytes, y = c + <usize>j * 4;
    for (let i = 0; i < m; i++) {
      const ui = <usize>i;
      if (fmt == Q4K) dotQ4K(true, wa, wa + rowBytes, aq + ui * aStride, ad + ui * adStride, nsb, y + ui * cStride, y + ui * cStride + 4, acc);
      else dotQ6K(true, wa, wa + rowBytes, aq + ui * aStride, ad + ui * adStride, nsb, y + ui * cStride, y + ui * cStride + 4, acc);
    }
  }
  if (j < n) {
    const wa = w + <usize>j * rowBytes, y = c + <usize>j * 4;
    for (let i = 0; i < m; i++) {
      const ui = <usize>i;
      if (fmt == Q4K) dotQ4K(false, wa, 0, aq + ui * aStride, ad + ui * adStride, nsb, y + ui * cStride, 0, acc);
      else dotQ6K(false, wa, 0, aq + ui * aStride, ad + ui * adStride, nsb, y + ui * cStride, 0, acc);
    }
  }
}

/**
 * C[m, n] (+)= A · Wᵀ, A as m rows quantised by quantize_q8_act (aq: rows of k int8, ad: rows of
 * k/32 f32, contiguous), W Q4_K rows (k a multiple of 256, k/256 blocks a row), C f32 (stride ldc).
 * m = 1 is the decode matvec.
 */
export function matmul_nt_q4k(aq: usize, ad: usize, w: usize, c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  product(Q4K, aq, ad, w, c, ldc, m, k, n, acc);
}

/** As matmul_nt_q4k with Q6_K rows. */
export function matmul_nt_q6k(aq: usize, ad: usize, w: usize, c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  product(Q6K, aq, ad, w, c, ldc, m, k, n, acc);
}

/** out[256·nsb] f32 = a Q4_K row of nsb blocks at w, as ggml's dequantize_row_q4_K (each value rounds once). */
export function dequantize_q4k(w: usize, out: usize, nsb: i32): void {
  for (let sb = 0; sb < nsb; sb++) {
    const d = half(w), dmin = half(w + 2);
    for (let j = 0; j < 8; j++) {
      const sm = scaleMin(w + 4, j);
      const d1 = d * <f32>(sm & 0xFFFF), m1 = dmin * <f32>(sm >> 16);
      const q = w + 16 + <usize>((j >> 1) << 5), shift = <u32>((j & 1) << 2);
      for (let l = 0; l < 32; l++) {
        const ul = <usize>l;
        store<f32>(out + ul * 4, d1 * <f32>((<u32>load<u8>(q + ul) >> shift) & 15) - m1);
      }
      out += 128;
    }
    w += Q4K_BYTES;
  }
}

/** out[256·nsb] f32 = a Q6_K row of nsb blocks at w, as ggml's dequantize_row_q6_K. */
export function dequantize_q6k(w: usize, out: usize, nsb: i32): void {
  for (let sb = 0; sb < nsb; sb++) {
    const d = half(w + 208);
    for (let h = 0; h < 2; h++) {
      const uh = <usize>h;
      for (let g = 0; g < 4; g++) {
        const ql = w + uh * 64 + <usize>((g & 1) << 5), qh = w + 128 + uh * 32;
        const lshift = <u32>((g >> 1) << 2), hshift = <u32>(2 * g);
        for (let l = 0; l < 32; l++) {
          const ul = <usize>l;
          const q = <i32>(((<u32>load<u8>(ql + ul) >> lshift) & 15) | (((<u32>load<u8>(qh + ul) >> hshift) & 3) << 4)) - 32;
          const s = d * <f32>load<i8>(w + 192 + uh * 8 + <usize>(2 * g + (l >> 4)));
          store<f32>(out + ul * 4, s * <f32>q);
        }
        out += 128;
      }
    }
    w += Q6K_BYTES;
  }
}

/** out[t, :] = row ids[t] (i32) of a Q4_K table of rows `dim` long (a multiple of 256), widened. */
export function embed_q4k(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  const nsb = dim >> 8, rowBytes = <usize>nsb * Q4K_BYTES;
  for (let t = 0; t < count; t++) {
    dequantize_q4k(table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes, out + <usize>t * <usize>dim * 4, nsb);
  }
}

/** As embed_q4k for a Q6_K table. */
export function embed_q6k(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  const nsb = dim >> 8, rowBytes = <usize>nsb * Q6K_BYTES;
  for (let t = 0; t < count; t++) {
    dequantize_q6k(table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes, out + <usize>t * <usize>dim * 4, nsb);
  }
}
