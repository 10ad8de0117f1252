// llama.cpp's K-quants Q4_K, Q5_K and Q6_K, read as the GGUF file stores them (super-blocks of
// 256 values along a row, rows contiguous) by products of their own. None repacks exactly into
// the q8/q4 blocks of quant.ts: Q4_K's and Q5_K's values carry an offset (−dmin·m per 32), and
// Q6_K has a scale per 16 values; all would need rounding again.
//
//   Q4_K, 144 bytes: d (f16) @0, dmin (f16) @2, scales[12] @4, qs[128] @16. Sub-block s (0..7)
//     of 32 values has a 6-bit scale sc_s and min m_s packed in scales[] (sixBits below); its
//     values are the low (s even) or high (s odd) nibbles of qs[32·(s>>1) .. +32], in order;
//     value = (d·sc_s)·q − (dmin·m_s), each product exact in f32.
//   Q5_K, 176 bytes: d @0, dmin @2, scales[12] @4 as Q4_K's, qh[32] @16, qs[128] @48. As Q4_K
//     with a fifth code bit (q 0..31): value l of sub-block s adds 16 when bit s of qh[l] is set.
//   Q6_K, 210 bytes: ql[128] @0, qh[64] @128, scales (int8)[16] @192, d (f16) @208. Half h
//     (0, 1) of 128 values reads ql[64h..], qh[32h..], scales[8h..]; its group g (0..3) of 32
//     values, l = 0..31: low 4 bits from ql[32·(g&1) + l] (low nibble for g < 2, high for g ≥ 2),
//     high 2 bits from qh[l] >> 2g; value = (d·scales[8h + 2g + (l ≥ 16)])·(q − 32).
//
// Products take activations quantised per super-block as llama.cpp's Q8_K (quantize_q8k_act):
// 256 int8 codes with one f32 scale d_x = max|x| / 127, and the sum of every 16 codes. A
// super-block's weights then meet its activations in integers alone, and only its total is
// scaled in f32 (the math of ggml's vec_dot_q4_K_q8_K / _q6_K_q8_K):
//   Q4_K, Q5_K: y += (d·d_x)·Σ_s sc_s·Σ_{32} q·x − (dmin·d_x)·Σ_s m_s·Σ_{32} x
//   Q6_K: y += (d·d_x)·(Σ_b sc_b·Σ_{16} q·x − 32·Σ_b sc_b·Σ_{16} x)      (q the code 0..63)
// The inner sums (≤ 4·15·127 for Q4_K's lanes, 4·31·127 for Q5_K's, ≤ 2·63·127 for Q6_K's) stay in i16 lanes, a
// scale multiplies them into i32 by i32x4.dot_i16x8_s; a super-block's i32 total is at most
// 256·63·127·128 < 2³¹. Per super-block and row that is one or two f32 products, where the
// per-32-activation-block form needs eight to sixteen. Activation precision is one scale per
// 256 values instead of per 32 (as llama.cpp's for K-quants).
// Integer dot products, as quant.ts: relaxed i16x8.relaxed_dot_i8x16_i7x16_s with the code
// (Q4_K's nibble 0..15, Q5_K's 0..31, Q6_K's 0..63) as the 7-bit operand; plain i16x8.mul of the widened
// values (products ≤ 63·127, pairs summed in i16).
// Rows are taken two at a time (see product for which two), sharing the activations' loads; a
// row's arithmetic is the same alone or in a pair, so splits by rows are bit-identical.
// Prefill with many activation rows does not come here: qgemm.ts's qgemm_kq turns panels of
// super-blocks into i16 codes once (superBlockCodes) and runs q8's packed integer GEMM on them.
import { madd, hsum, NIBBLES8 } from "./simd";
import { roundAway, PAIR_BYTES, PAIR_MIN_BYTES } from "./quant";

// @ts-ignore: decorator
@inline const Q4K_BYTES: usize = 144;
// @ts-ignore: decorator
@inline const Q5K_BYTES: usize = 176;
// @ts-ignore: decorator
@inline const Q6K_BYTES: usize = 210;
/** i8x16.splat(0x10): Q5_K's fifth code bit in place. */
const BIT4_8: usize = memory.data<u8>([16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16]);
/** i8x16.splat(0x30): Q6_K's two high code bits in place. */
const HIGH_PAIRS8: usize = memory.data<u8>([48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48]);
/** Bytes of a Q8_K activation super-block's record: 16 i16 sums of 16 codes, then d_x (f32). */
// @ts-ignore: decorator
@inline const ACT_RECORD: usize = 36;

/** One f16 → f32 (the scales), exact: subnormals by the 2¹¹² multiply, as quant.ts's f16Scalar. */
// @ts-ignore: decorator
@inline function half(p: usize): f32 {
  const h = <u32>load<u16>(p);
  const em = h & 0x7FFF;
  let bits = reinterpret<u32>(reinterpret<f32>(em << 13) * <f32>5.192296858534828e+33);
  if (em > 0x7BFF) bits |= 0x7F800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/**
 * Q4_K's eight 6-bit scales (`mins` false) or mins (true) of the block at q (its scales[12]), one
 * a byte, sub-block j in byte j. From the layout: scales 0–3 are the low 6 bits of bytes 0–3,
 * mins 0–3 of bytes 4–7; scale 4 + i is byte 8 + i's low nibble with byte i's top 2 bits above
 * it, min 4 + i byte 8 + i's high nibble with byte 4 + i's top 2 bits.
 */
// @ts-ignore: decorator
@inline function sixBits(q: usize, mins: bool): u64 {
  const lo = load<u32>(q + (mins ? 4 : 0)), b8 = load<u32>(q, 8);
  const hi = ((mins ? b8 >> 4 : b8) & 0x0F0F0F0F) | ((lo >> 2) & 0x30303030);
  return <u64>(lo & 0x3F3F3F3F) | (<u64>hi << 32);
}

/** Σ of 16 products code·x in i16 lanes (pairs): codes c 0..63, x int8 (x16 its i16 halves, plain build). */
// @ts-ignore: decorator
@inline function pairs16(c: v128, x: v128, xl: v128, xh: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(x, c);
  return i16x8.add(i16x8.mul(i16x8.extend_low_i8x16_u(c), xl), i16x8.mul(i16x8.extend_high_i8x16_u(c), xh));
}

/** An int8 vector's i16 halves for pairs16 (the plain build; unused by the relaxed one). */
// @ts-ignore: decorator
@inline function lo16(x: v128): v128 { return ASC_FEATURE_RELAXED_SIMD ? x : i16x8.extend_low_i8x16_s(x); }
// @ts-ignore: decorator
@inline function hi16(x: v128): v128 { return ASC_FEATURE_RELAXED_SIMD ? x : i16x8.extend_high_i8x16_s(x); }

/** i16 lanes s times the scale sc, summed in pairs into i32 lanes. */
// @ts-ignore: decorator
@inline function scaled(s: v128, sc: u32): v128 {
  return i32x4.dot_i16x8_s(s, i16x8.splat(<i16>sc));
}

// @ts-ignore: decorator
@inline function storeLane(p: usize, v: f32, acc: bool): void {
  store<f32>(p, acc ? load<f32>(p) + v : v);
}

/**
 * acc + sub-blocks 2p (low nibbles) and 2p + 1 (high nibbles) of the 32 bytes at q, times their
 * scales (bytes 0, 1 of sc), against the 64 activations x0..x3 (xNl, xNh: pairs16's halves).
 * Q5_K (five): each code's fifth bit is bit 0 (sub-block 2p) or 1 (2p + 1) of h0, h1 (the block's
 * qh, already shifted right by 2p), moved to bit 4 by a 16-bit shift; m10 drops what crossed bytes.
 */
// @ts-ignore: decorator
@inline function nibblePair(five: bool, q: usize, h0: v128, h1: v128, sc: u32, acc: v128, m4: v128, m10: v128,
                            x0: v128, x1: v128, x2: v128, x3: v128, x0l: v128, x0h: v128, x1l: v128, x1h: v128,
                            x2l: v128, x2h: v128, x3l: v128, x3h: v128): v128 {
  const q0 = v128.load(q), q1 = v128.load(q, 16);
  let c0 = v128.and(q0, m4), c1 = v128.and(q1, m4);
  let c2 = v128.and(i16x8.shr_u(q0, 4), m4), c3 = v128.and(i16x8.shr_u(q1, 4), m4);
  if (five) {
    c0 = v128.or(c0, v128.and(i16x8.shl(h0, 4), m10)); c1 = v128.or(c1, v128.and(i16x8.shl(h1, 4), m10));
    c2 = v128.or(c2, v128.and(i16x8.shl(h0, 3), m10)); c3 = v128.or(c3, v128.and(i16x8.shl(h1, 3), m10));
  }
  acc = i32x4.add(acc, scaled(i16x8.add(pairs16(c0, x0, x0l, x0h), pairs16(c1, x1, x1l, x1h)), sc & 0xFF));
  return i32x4.add(acc, scaled(i16x8.add(pairs16(c2, x2, x2l, x2h), pairs16(c3, x3, x3l, x3h)), (sc >> 8) & 0xFF));
}

/**
 * Q4_K (five false) or Q5_K rows ra and rb · Q8_K activations (codes xq, records xr): nsb
 * super-blocks. The two share scales, mins and nibble order; Q5_K adds a fifth code bit from qh.
 */
// @ts-ignore: decorator
@inline function dotMinK(five: bool, ra: usize, rb: usize, xq: usize, xr: usize, nsb: i32,
                         ya: usize, yb: usize, acc: bool): void {
  const m4 = v128.load(NIBBLES8); // loaded once, see there
  const m10 = five ? v128.load(BIT4_8) : i32x4.splat(0);
  const qs: usize = five ? 48 : 16, bytes = five ? Q5K_BYTES : Q4K_BYTES;
  let fa = f32x4.splat(0), fb = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    // Σx of each 32 (sub-block): the records' sums of 16, added in pairs.
    const s0 = v128.load(xr), s1 = v128.load(xr, 16);
    const sum32 = i16x8.add(v128.shuffle<i16>(s0, s1, 0, 2, 4, 6, 8, 10, 12, 14), v128.shuffle<i16>(s0, s1, 1, 3, 5, 7, 9, 11, 13, 15));
    const dx = load<f32>(xr, 32);
    const sca = sixBits(ra + 4, false);
    const minA = i32x4.dot_i16x8_s(sum32, i16x8.extend_low_i8x16_u(i64x2.splat(<i64>sixBits(ra + 4, true))));
    const scb = sixBits(rb + 4, false);
    const minB = i32x4.dot_i16x8_s(sum32, i16x8.extend_low_i8x16_u(i64x2.splat(<i64>sixBits(rb + 4, true))));
    // Q5_K's qh (32 bytes at 16), shifted right by 2 after each pair of sub-blocks.
    let ha0 = five ? v128.load(ra + 16) : m10, ha1 = five ? v128.load(ra + 16, 16) : m10;
    let hb0 = five ? v128.load(rb + 16) : m10, hb1 = five ? v128.load(rb + 16, 16) : m10;
    let ia = i32x4.splat(0), ib = i32x4.splat(0);
    for (let p = 0; p < 4; p++) {
      // Sub-blocks 2p and 2p + 1: 64 activations, widened once for both rows.
      const up = <usize>p, off: usize = (up << 5) + qs, xo = xq + (up << 6);
      const x0 = v128.load(xo), x1 = v128.load(xo, 16), x2 = v128.load(xo, 32), x3 = v128.load(xo, 48);
      const x0l = lo16(x0), x0h = hi16(x0), x1l = lo16(x1), x1h = hi16(x1);
      const x2l = lo16(x2), x2h = hi16(x2), x3l = lo16(x3), x3h = hi16(x3);
      const shift = <u64>(p << 4);
      ia = nibblePair(five, ra + off, ha0, ha1, <u32>(sca >> shift), ia, m4, m10, x0, x1, x2, x3, x0l, x0h, x1l, x1h, x2l, x2h, x3l, x3h);
      ib = nibblePair(five, rb + off, hb0, hb1, <u32>(scb >> shift), ib, m4, m10, x0, x1, x2, x3, x0l, x0h, x1l, x1h, x2l, x2h, x3l, x3h);
      if (five) {
        ha0 = i16x8.shr_u(ha0, 2); ha1 = i16x8.shr_u(ha1, 2); hb0 = i16x8.shr_u(hb0, 2); hb1 = i16x8.shr_u(hb1, 2);
      }
    }
    fa = madd(f32x4.convert_i32x4_s(ia), f32x4.splat(half(ra) * dx), fa);
    fa = madd(f32x4.convert_i32x4_s(minA), f32x4.splat(-(half(ra + 2) * dx)), fa);
    fb = madd(f32x4.convert_i32x4_s(ib), f32x4.splat(half(rb) * dx), fb);
    fb = madd(f32x4.convert_i32x4_s(minB), f32x4.splat(-(half(rb + 2) * dx)), fb);
    ra += bytes; rb += bytes; xq += 256; xr += ACT_RECORD;
  }
  storeLane(ya, hsum(fa), acc);
  if (yb != ya) storeLane(yb, hsum(fb), acc); // rb = ra: a row alone, stored once
}

/**
 * Adds half a Q6_K block's Σ_b sc_b·Σ_{16} q·x to `acc`: row r, its low nibbles at r + lo (64
 * bytes), high bit pairs at r + hi (32), the half's 8 scales as i16 lanes of S, activations at xo (128). Group g's
 * code = (nibble) | (bits 2g, 2g + 1 of qh moved to bits 4, 5); 16-bit shifts, masks drop what crossed bytes.
 * m4 = i8x16.splat(0x0F), m30 = i8x16.splat(0x30).
 */
// @ts-ignore: decorator
@inline function q6Half(r: usize, lo: usize, hi: usize, S: v128, xo: usize, acc: v128, m4: v128, m30: v128): v128 {
  const l0 = v128.load(r + lo), l1 = v128.load(r + lo, 16), l2 = v128.load(r + lo, 32), l3 = v128.load(r + lo, 48);
  const h0 = v128.load(r + hi), h1 = v128.load(r + hi, 16);
  acc = q6Group(v128.or(v128.and(l0, m4), v128.and(i16x8.shl(h0, 4), m30)), v128.or(v128.and(l1, m4), v128.and(i16x8.shl(h1, 4), m30)), S, 0, xo, acc);
  acc = q6Group(v128.or(v128.and(l2, m4), v128.and(i16x8.shl(h0, 2), m30)), v128.or(v128.and(l3, m4), v128.and(i16x8.shl(h1, 2), m30)), S, 1, xo + 32, acc);
  acc = q6Group(v128.or(v128.and(i16x8.shr_u(l0, 4), m4), v128.and(h0, m30)), v128.or(v128.and(i16x8.shr_u(l1, 4), m4), v128.and(h1, m30)), S, 2, xo + 64, acc);
  return q6Group(v128.or(v128.and(i16x8.shr_u(l2, 4), m4), v128.and(i16x8.shr_u(h0, 2), m30)),
    v128.or(v128.and(i16x8.shr_u(l3, 4), m4), v128.and(i16x8.shr_u(h1, 2), m30)), S, 3, xo + 96, acc);
}

/** i32 lane g of s in every lane. */
// @ts-ignore: decorator
@inline function scalePair(s: v128, g: i32): v128 {
  if (g == 0) return v128.shuffle<i32>(s, s, 0, 0, 0, 0);
  if (g == 1) return v128.shuffle<i32>(s, s, 1, 1, 1, 1);
  if (g == 2) return v128.shuffle<i32>(s, s, 2, 2, 2, 2);
  return v128.shuffle<i32>(s, s, 3, 3, 3, 3);
}

/**
 * acc + the 32 codes c0, c1 (scales: i16 lanes 2g, 2g + 1 of S, i.e. its i32 lane g) · the 32
 * activations at xo. Each 16's eight i16 pair sums are halved to four (≤ 4·63·127, still i16) and
 * the two interleaved, so one dot with the scale pair in every i32 lane scales both: one shuffle
 * per 32 codes instead of a scalar load and splat per 16.
 */
// @ts-ignore: decorator
@inline function q6Group(c0: v128, c1: v128, S: v128, g: i32, xo: usize, acc: v128): v128 {
  const x0 = v128.load(xo), x1 = v128.load(xo, 16);
  const p0 = pairs16(c0, x0, lo16(x0), hi16(x0)), p1 = pairs16(c1, x1, lo16(x1), hi16(x1));
  const q = i16x8.add(v128.shuffle<i16>(p0, p1, 0, 8, 1, 9, 2, 10, 3, 11), v128.shuffle<i16>(p0, p1, 4, 12, 5, 13, 6, 14, 7, 15));
  return i32x4.add(acc, i32x4.dot_i16x8_s(q, scalePair(S, g)));
}

/** Q6_K rows ra and rb · Q8_K activations (codes xq, records xr): nsb super-blocks. */
// @ts-ignore: decorator
@inline function dotQ6K(ra: usize, rb: usize, xq: usize, xr: usize, nsb: i32,
                        ya: usize, yb: usize, acc: bool): void {
  let fa = f32x4.splat(0), fb = f32x4.splat(0);
  // q6Half's masks, loaded once (see NIBBLES8 in simd.ts).
  const m4 = v128.load(NIBBLES8), m30 = v128.load(HIGH_PAIRS8);
  for (let sb = 0; sb < nsb; sb++) {
    const s0 = v128.load(xr), s1 = v128.load(xr, 16), dx = load<f32>(xr, 32);
    // The codes' offset of 32: Σ_b sc_b·32·Σx taken away at the end.
    // Each row's 16 scales widened to i16 once: scales 0–7 (half 0), 8–15 (half 1).
    const sa = v128.load(ra + 192), saLo = i16x8.extend_low_i8x16_s(sa), saHi = i16x8.extend_high_i8x16_s(sa);
    const sb2 = v128.load(rb + 192), sbLo = i16x8.extend_low_i8x16_s(sb2), sbHi = i16x8.extend_high_i8x16_s(sb2);
    let ia = i32x4.neg(i32x4.shl(i32x4.add(i32x4.dot_i16x8_s(s0, saLo), i32x4.dot_i16x8_s(s1, saHi)), 5));
    let ib = i32x4.neg(i32x4.shl(i32x4.add(i32x4.dot_i16x8_s(s0, sbLo), i32x4.dot_i16x8_s(s1, sbHi)), 5));
    for (let h = 0; h < 2; h++) {
      const uh = <usize>h, xo = xq + (uh << 7), lo = uh * 64, hi = uh * 32 + 128;
      ia = q6Half(ra, lo, hi, h ? saHi : saLo, xo, ia, m4, m30);
      ib = q6Half(rb, lo, hi, h ? sbHi : sbLo, xo, ib, m4, m30);
    }
    fa = madd(f32x4.convert_i32x4_s(ia), f32x4.splat(half(ra + 208) * dx), fa);
    fb = madd(f32x4.convert_i32x4_s(ib), f32x4.splat(half(rb + 208) * dx), fb);
    ra += Q6K_BYTES; rb += Q6K_BYTES; xq += 256; xr += ACT_RECORD;
  }
  storeLane(ya, hsum(fa), acc);
  if (yb != ya) storeLane(yb, hsum(fb), acc); // rb = ra: a row alone, stored once
}

// @ts-ignore: decorator
@inline const Q4K: i32 = 0;
// @ts-ignore: decorator
@inline const Q6K: i32 = 1;
// @ts-ignore: decorator
@inline const Q5K: i32 = 2;

/** Bytes of one super-block of `fmt`. */
// @ts-ignore: decorator
@inline function blockBytes(fmt: i32): usize {
  return fmt == Q4K ? Q4K_BYTES : fmt == Q5K ? Q5K_BYTES : Q6K_BYTES;
}

/** Bytes of a super-block of K-quant `fmt` (Q4K 0, Q6K 1, Q5K 2, as qgemm_kq takes them). */
export function kquantBlockBytes(fmt: i32): usize {
  return blockBytes(fmt);
}

/** Rows j and j + far of W (far 0: row j alone) against activation row i: one call of the format's dot. */
// @ts-ignore: decorator
@inline function rowDot(fmt: i32, far: usize, aq: usize, ar: usize, w: usize, rowBytes: usize, c: usize, cStride: usize,
                        i: i32, j: i32, k: i32, nsb: i32, acc: bool): void {
  const ui = <usize>i, wa = w + <usize>j * rowBytes, y = c + <usize>j * 4 + ui * cStride;
  const xq = aq + ui * <usize>k, xr = ar + ui * <usize>nsb * ACT_RECORD;
  if (fmt == Q6K) dotQ6K(wa, wa + far * rowBytes, xq, xr, nsb, y, y + far * 4, acc);
  else dotMinK(fmt == Q5K, wa, wa + far * rowBytes, xq, xr, nsb, y, y + far * 4, acc);
}

/**
 * C[m, n] (+)= A · Wᵀ: each pair of weight rows against every activation row. The matvec (m = 1)
 * pairs rows j and j + d, ~PAIR_BYTES apart while they stay PAIR_MIN_BYTES apart, as quant.ts's
 * matvecAny: two long streams. Adjacent rows (short rows, k = 2048: 1680 bytes of Q6_K) hop
 * every pair, and read cold from memory ran ~1.4× slower (bench/results/quant-kquants-2026-12-06b.md).
 */
// @ts-ignore: decorator
@inline function product(fmt: i32, aq: usize, ar: usize, w: usize, c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  const kk = max(k, 0), nsb = kk >> 8;
  const rowBytes = <usize>nsb * blockBytes(fmt), cStride = <usize>ldc * 4;
  // d: rows between the two of a pair, and rows paired so (then j += 2d).
  let j = 0, d = m == 1 && rowBytes > 0 ? <i32>((PAIR_BYTES + rowBytes - 1) / rowBytes) : 1;
  while (j < n) {
    // A last row alone is paired with itself (d = 0) and stored once: one copy of the dot's code.
    if (j + 2 > n) d = 0;
    else if (d > 1 && n - j < 2 * d) {
      d = (n - j) >> 1;
      if (<usize>d * rowBytes < PAIR_MIN_BYTES) d = 1;
    }
    for (let r = j; r < j + max(d, 1); r++) {
      for (let i = 0; i < m; i++) rowDot(fmt, <usize>d, aq, ar, w, rowBytes, c, cStride, i, r, kk, nsb, acc);
    }
    j += d ? 2 * d : 1;
  }
}

/**
 * C[m, n] (+)= A · Wᵀ, A as m rows quantised by quantize_q8k_act (aq: rows of k int8, ar: rows of
 * k/256 records, contiguous), W Q4_K rows (k a multiple of 256, k/256 blocks a row), C f32
 * (stride ldc). m = 1 is the decode matvec.
 */
export function matmul_nt_q4k(aq: usize, ar: usize, w: usize, c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  product(Q4K, aq, ar, w, c, ldc, m, k, n, acc);
}

/** As matmul_nt_q4k with Q5_K rows. */
export function matmul_nt_q5k(aq: usize, ar: usize, w: usize, c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  product(Q5K, aq, ar, w, c, ldc, m, k, n, acc);
}

/** As matmul_nt_q4k with Q6_K rows. */
export function matmul_nt_q6k(aq: usize, ar: usize, w: usize, c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  product(Q6K, aq, ar, w, c, ldc, m, k, n, acc);
}

/**
 * Activations for matmul_nt_q4k / _q6k, llama.cpp's Q8_K rule: x[k] f32 (k a multiple of 256) →
 * xq (k int8) and xr (k/256 records of ACT_RECORD bytes: the i16 sum of each 16 codes, then d).
 * Per super-block d = max|x| / 127, q = round(x / d) half away from zero (quantize_q8_act's
 * rounding; ggml's Q8_K takes the signed extreme and gives −128 at it, we stay within ±127).
 */
export function quantize_q8k_act(x: usize, k: i32, xq: usize, xr: usize): void {
  const nsb = max(k, 0) >> 8;
  for (let sb = 0; sb < nsb; sb++) {
    let m = f32x4.splat(0);
    for (let i: usize = 0; i < 1024; i += 16) m = f32x4.max(m, f32x4.abs(v128.load(x + i)));
    const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    const d: f32 = amax / 127;
    const idv = f32x4.splat(d != 0 ? <f32>1 / d : 0);
    for (let b: usize = 0; b < 16; b++) {
      const p = x + (b << 6);
      const lo = i16x8.narrow_i32x4_s(roundAway(v128.load(p), idv), roundAway(v128.load(p, 16), idv));
      const hi = i16x8.narrow_i32x4_s(roundAway(v128.load(p, 32), idv), roundAway(v128.load(p, 48), idv));
      v128.store(xq + (b << 4), i8x16.narrow_i16x8_s(lo, hi));
      const s = i32x4.extadd_pairwise_i16x8_s(i16x8.add(lo, hi));
      store<i16>(xr + (b << 1), i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3));
    }
    store<f32>(xr, d, 32);
    x += 1024; xq += 256; xr += ACT_RECORD;
  }
}

/**
 * out[256·nsb] f32 = a Q4_K (five false) or Q5_K row of nsb blocks at w, as ggml's
 * dequantize_row_q4_K / _q5_K: d1·q − m1, a product and a difference each rounded to f32 as ggml
 * rounds them (no fused multiply-add). Q5_K's fifth bit of sub-block j is bit j of qh[l].
 */
function dequantizeMinK(five: bool, w: usize, out: usize, nsb: i32): void {
  const m4 = v128.load(NIBBLES8), one = i8x16.splat(1);
  for (let sb = 0; sb < nsb; sb++) {
    const d = half(w), dmin = half(w + 2), scales = sixBits(w + 4, false), mins = sixBits(w + 4, true);
    const h0 = five ? v128.load(w + 16) : m4, h1 = five ? v128.load(w + 32) : m4;
    for (let j = 0; j < 8; j++) {
      const at = <u64>(j << 3);
      const d1 = f32x4.splat(d * <f32>(<u32>(scales >> at) & 0xFF)), m1 = f32x4.splat(dmin * <f32>(<u32>(mins >> at) & 0xFF));
      const q = w + (five ? 48 : 16) + <usize>((j >> 1) << 5), shift = <u32>((j & 1) << 2);
      let c0 = v128.and(i16x8.shr_u(v128.load(q), shift), m4), c1 = v128.and(i16x8.shr_u(v128.load(q, 16), shift), m4);
      if (five) {
        c0 = v128.or(c0, i16x8.shl(v128.and(i16x8.shr_u(h0, <u32>j), one), 4));
        c1 = v128.or(c1, i16x8.shl(v128.and(i16x8.shr_u(h1, <u32>j), one), 4));
      }
      storeCodes(out, c0, d1, m1);
      storeCodes(out + 64, c1, d1, m1);
      out += 128;
    }
    w += five ? Q5K_BYTES : Q4K_BYTES;
  }
}

/**
 * One super-block of `fmt` for qgemm.ts's integer GEMM: its 256 values as i16 codes at `codes`
 * with each sub-block's scale folded in (Q4_K / Q5_K: sc·q, ≤ 63·31; Q6_K: sc·(q − 32), ≤ 128·32),
 * so that value = d·code − offset; each 32's offset (Q4_K / Q5_K: dmin·m, exact in f32; Q6_K: 0)
 * negated at offsets + j·offStride. Returns d.
 */
export function superBlockCodes(fmt: i32, w: usize, codes: usize, offsets: usize, offStride: usize): f32 {
  const m4 = v128.load(NIBBLES8);
  if (fmt == Q6K) {
    const three = i8x16.splat(3), bias = i8x16.splat(32);
    for (let h: usize = 0; h < 2; h++) {
      for (let g = 0; g < 4; g++) {
        const ql = w + h * 64 + <usize>((g & 1) << 5), qh = w + 128 + h * 32;
        const lshift = <u32>((g >> 1) << 2), hshift = <u32>(2 * g);
        for (let half16: usize = 0; half16 < 32; half16 += 16) {
          const low = v128.and(i16x8.shr_u(v128.load(ql + half16), lshift), m4);
          const high = v128.and(i16x8.shr_u(v128.load(qh + half16), hshift), three);
          const q = i8x16.sub(v128.or(low, i16x8.shl(high, 4)), bias);
          const sc = i16x8.splat(<i16>load<i8>(w + 192 + h * 8 + <usize>(2 * g) + (half16 >> 4)));
          v128.store(codes, i16x8.mul(i16x8.extend_low_i8x16_s(q), sc));
          v128.store(codes, i16x8.mul(i16x8.extend_high_i8x16_s(q), sc), 16);
          codes += 32;
        }
        store<f32>(offsets + <usize>(h * 4 + <usize>g) * offStride, 0);
      }
    }
    return half(w + 208);
  }
  const five = fmt == Q5K, one = i8x16.splat(1);
  const dmin = half(w + 2), scales = sixBits(w + 4, false), mins = sixBits(w + 4, true);
  const h0 = five ? v128.load(w + 16) : m4, h1 = five ? v128.load(w + 32) : m4;
  for (let j = 0; j < 8; j++) {
    const at = <u64>(j << 3);
    const sc = i16x8.splat(<i16>(<u32>(scales >> at) & 0xFF));
    const q = w + (five ? 48 : 16) + <usize>((j >> 1) << 5), shift = <u32>((j & 1) << 2);
    let c0 = v128.and(i16x8.shr_u(v128.load(q), shift), m4), c1 = v128.and(i16x8.shr_u(v128.load(q, 16), shift), m4);
    if (five) {
      c0 = v128.or(c0, i16x8.shl(v128.and(i16x8.shr_u(h0, <u32>j), one), 4));
      c1 = v128.or(c1, i16x8.shl(v128.and(i16x8.shr_u(h1, <u32>j), one), 4));
    }
    v128.store(codes, i16x8.mul(i16x8.extend_low_i8x16_u(c0), sc));
    v128.store(codes, i16x8.mul(i16x8.extend_high_i8x16_u(c0), sc), 16);
    v128.store(codes, i16x8.mul(i16x8.extend_low_i8x16_u(c1), sc), 32);
    v128.store(codes, i16x8.mul(i16x8.extend_high_i8x16_u(c1), sc), 48);
    codes += 64;
    store<f32>(offsets + <usize>j * offStride, -(dmin * <f32>(<u32>(mins >> at) & 0xFF)));
  }
  return half(w);
}

/** 16 codes (bytes, < 128) at out as f32: s·c − m, rounded as two f32 operations. */
// @ts-ignore: decorator
@inline function storeCodes(out: usize, c: v128, s: v128, m: v128): void {
  const lo = i16x8.extend_low_i8x16_s(c), hi = i16x8.extend_high_i8x16_s(c);
  v128.store(out, f32x4.sub(f32x4.mul(s, f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo))), m));
  v128.store(out, f32x4.sub(f32x4.mul(s, f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo))), m), 16);
  v128.store(out, f32x4.sub(f32x4.mul(s, f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi))), m), 32);
  v128.store(out, f32x4.sub(f32x4.mul(s, f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi))), m), 48);
}

/** out[256·nsb] f32 = a Q4_K row of nsb blocks at w, as ggml's dequantize_row_q4_K (each value rounds once). */
export function dequantize_q4k(w: usize, out: usize, nsb: i32): void {
  dequantizeMinK(false, w, out, nsb);
}

/** As dequantize_q4k for a Q5_K row (ggml's dequantize_row_q5_K). */
export function dequantize_q5k(w: usize, out: usize, nsb: i32): void {
  dequantizeMinK(true, w, out, nsb);
}

/** out[256·nsb] f32 = a Q6_K row of nsb blocks at w, as ggml's dequantize_row_q6_K ((d·sc)·(q − 32)). */
export function dequantize_q6k(w: usize, out: usize, nsb: i32): void {
  const m4 = v128.load(NIBBLES8), three = i8x16.splat(3), bias = i8x16.splat(32), zero = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    const d = half(w + 208);
    for (let h = 0; h < 2; h++) {
      const uh = <usize>h;
      for (let g = 0; g < 4; g++) {
        const ql = w + uh * 64 + <usize>((g & 1) << 5), qh = w + 128 + uh * 32;
        const lshift = <u32>((g >> 1) << 2), hshift = <u32>(2 * g);
        for (let half16: usize = 0; half16 < 32; half16 += 16) {
          const low = v128.and(i16x8.shr_u(v128.load(ql + half16), lshift), m4);
          const high = v128.and(i16x8.shr_u(v128.load(qh + half16), hshift), three);
          const q = i8x16.sub(v128.or(low, i16x8.shl(high, 4)), bias);
          const s = f32x4.splat(d * <f32>load<i8>(w + 192 + uh * 8 + <usize>(2 * g) + (half16 >> 4)));
          storeCodes(out + half16 * 4, q, s, zero);
        }
        out += 128;
      }
    }
    w += Q6K_BYTES;
  }
}

/** out[t, :] = row ids[t] (i32) of a table in `fmt` of rows `dim` long (a multiple of 256), widened. */
function embedK(fmt: i32, table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  const nsb = dim >> 8, rowBytes = <usize>nsb * blockBytes(fmt);
  for (let t = 0; t < count; t++) {
    const row = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes, o = out + <usize>t * <usize>dim * 4;
    if (fmt == Q6K) dequantize_q6k(row, o, nsb);
    else dequantizeMinK(fmt == Q5K, row, o, nsb);
  }
}

/** out[t, :] = row ids[t] (i32) of a Q4_K table of rows `dim` long (a multiple of 256), widened. */
export function embed_q4k(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  embedK(Q4K, table, dim, ids, count, out);
}

/** As embed_q4k for a Q5_K table. */
export function embed_q5k(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  embedK(Q5K, table, dim, ids, count, out);
}

/** As embed_q4k for a Q6_K table. */
export function embed_q6k(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  embedK(Q6K, table, dim, ids, count, out);
}
