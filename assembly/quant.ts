// Narrow weights: matrix products that read bf16, f16, int8 ("q8") or int4 ("q4") weights as
// they are stored and widen them in registers, never into a copy of the matrix.
// Pointers are byte offsets; ldw / lda / ldc are in elements of their own type (u16 for bf16 and
// f16 weights, f32 for activations and outputs), as in matmul.ts; `acc` adds into y / C.
//
// Formats (W is [n, k], the Hugging Face [out, in] layout):
//   bf16  u16 per weight, the top half of an f32: widened by a shift (an unpack with zero).
//   f16   u16 per weight (IEEE half), finite (the loader rejects inf and NaN): widened exactly,
//         subnormals and ±0 included, by a shift, a mask and a multiply.
//   q8    k a multiple of 32. wq: n rows of k int8, contiguous; wd: f32 scales [n, k/32], one per
//         block of 32 along k; weight = q · d. llama.cpp's Q8_0 (f16 d + 32 int8) repacks into
//         this by copying the bytes and widening d (exact).
//   q4    k a multiple of 32. wq: n rows of k/2 bytes, 16 per block: element j of a block in the
//         low nibble of byte j, element j + 16 in the high nibble (Q4_0's order, so a Q4_0 block's
//         bytes copy straight in); wd as for q8; weight = (q − 8) · d.
// q8 and q4 products take their activations quantised too (quantize_q8_act): int8 per block of 32,
// d_x = max|x| / 127, as llama.cpp's Q8_0 activations, so each block's dot product is exact in
// i32 and only y += d_w·d_x·Σ q_w·q_x rounds (in f32). Activation precision is therefore ~8 bits
// (relative error ≤ 1/254 of a block's largest |x| per element), the same as llama.cpp's.
//
// Integer dot products:
//   plain build   i8 → i16 (i16x8.extend_low/high_i8x16_s), then i32x4.dot_i16x8_s (pmaddwd).
//   relaxed build i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw), whose second operand must be 7-bit
//     (0..127), then i32x4.extadd_pairwise_i16x8_s. Not i32x4.relaxed_dot_i8x16_i7x16_add_s: under
//     Node 20 (V8 11.3) on x64 it returns twice the dot product and drops the addend.
//     q4: the unbiased nibble q (0..15) is the 7-bit operand and x the signed one; Σ(q − 8)·x =
//         Σ q·x − 8·Σ x, the second term computed once per block for both rows of a pair.
//     q8: neither w nor x is 7-bit, so |x| (0..127, as quantize_q8_act makes x) is the 7-bit
//         operand and x's sign moves onto w: (w ^ s) − s with s = all ones where x < 0 (an i8x16
//         compare; x64 has no 8-bit shift), made once per call (prepAct). One pmaddubsw per 16
//         weights, where splitting x into x⁺ and x⁻ took two. It needs w ≥ −127 (−(−128) does not
//         fit in i8): Q8_0 quantisers never write −128, and the loader reads a −128 as −127.
//         llama.cpp's x86 kernels move the sign the same way (_mm256_sign_epi8).
// Nibbles unpack by masks and shifts: Q4_0's codes are linear, so masking yields the integer
// itself; an i8x16.swizzle table would only add a pshufb after the same masking (it pays for
// non-linear codebooks such as IQ4_NL). The relaxed build masks bytes (and 0x0F, 16-bit shift
// right by 4, and 0x0F); the plain build unpacks each i16 lane's four nibbles straight to i16
// (dotCodes) against x split into even and odd elements, skipping the byte-to-i16 widening.
//
// matvec streams W two rows at a time, rows ~PAIR_BYTES apart, each x vector loaded once for both,
// as matmul.ts's f32 matvec does; a row is summed in the same order alone or in a pair. q8 and q4
// products first lay x out as their loops want it (prepAct: widened, split, 8·Σx) in a `prep`
// scratch, once per call instead of once per pair of rows. matmul_nt_* (prefill) run one weight row against all M activation rows
// while it is in L1, re-widening it for each: correct, but compute-bound (see the commit body).
import { madd, hsum, NIBBLES8, EIGHTS8, NIBBLES16, EIGHTS16, ONES16 } from "./simd";

// @ts-ignore: decorator
@inline export const PAIR_BYTES: usize = 2 << 20;
// @ts-ignore: decorator
@inline export const PAIR_MIN_BYTES: usize = 512 << 10;

// @ts-ignore: decorator
@inline export const BF16: i32 = 0;
// @ts-ignore: decorator
@inline export const F16: i32 = 1;
// @ts-ignore: decorator
@inline export const Q8: i32 = 2;
// @ts-ignore: decorator
@inline export const Q4: i32 = 3;

// ---------------------------------------------------------------------------------------------
// Widening bf16 and f16

/** Lanes 0–3 (lo) or 4–7 (hi) of eight u16 as the high halves of four u32: bf16 → f32 bits. */
// @ts-ignore: decorator
@inline function unpackLo(h: v128): v128 {
  return v128.shuffle<i16>(i32x4.splat(0), h, 0, 8, 1, 9, 2, 10, 3, 11);
}
// @ts-ignore: decorator
@inline function unpackHi(h: v128): v128 {
  return v128.shuffle<i16>(i32x4.splat(0), h, 4, 12, 5, 13, 6, 14, 7, 15);
}

// f16 → f32 for finite h, four ops a lane: h unpacked to the top half and shifted right by 3
// (arithmetically) puts |h| at bits 13–27 and the sign at bit 31, with copies of the sign in bits
// 28–30, which the mask clears. Read as an f32 that is |h|·2⁻¹¹² for normals and subnormals alike
// (an f16 subnormal lands on an f32 subnormal), so one multiply by 2¹¹² is exact. The exponent 31
// of inf and NaN would come out finite: f16 matrices hold none (weights.ts checks as it places them).
// @ts-ignore: decorator
@inline const F16_SCALE: f32 = 5.192296858534828e+33; // 2^112
/** The vector path's constants, for a loop to load once before it starts (see NIBBLES8 in simd.ts). */
const F16_K: usize = memory.data<u32>([0x8FFFFFFF, 0x77800000]);

/** F16_K's mask (0) or 2¹¹² (1) in every lane; zero for bf16. */
// @ts-ignore: decorator
@inline function f16Const(fmt: i32, i: i32): v128 {
  if (fmt != F16) return i32x4.splat(0);
  return v128.load32_splat(F16_K + (<usize>i << 2));
}

// f16Lo / f16Hi take f16Const(F16, 0), f16Const(F16, 1) as mask, scale.
// @ts-ignore: decorator
@inline function f16Lo(h: v128, mask: v128, scale: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(unpackLo(h), 3), mask), scale);
}
// @ts-ignore: decorator
@inline function f16Hi(h: v128, mask: v128, scale: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(unpackHi(h), 3), mask), scale);
}

/** One finite f16 (low 16 bits of h) → f32, the same arithmetic as the vector path. */
// @ts-ignore: decorator
@inline function f16Scalar(h: u32): f32 {
  return reinterpret<f32>((<i32>(h << 16) >> 3) & 0x8FFFFFFF) * F16_SCALE;
}

// @ts-ignore: decorator
@inline function bf16Scalar(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** Eight u16 weights → two f32x4: lanes 0–3, 4–7 (k0, k1: f16Const(fmt, 0 … 1)). */
// @ts-ignore: decorator
@inline function wideLo(fmt: i32, h: v128, k0: v128, k1: v128): v128 {
  return fmt == BF16 ? unpackLo(h) : f16Lo(h, k0, k1);
}
// @ts-ignore: decorator
@inline function wideHi(fmt: i32, h: v128, k0: v128, k1: v128): v128 {
  return fmt == BF16 ? unpackHi(h) : f16Hi(h, k0, k1);
}
// @ts-ignore: decorator
@inline function wideScalar(fmt: i32, h: u32): f32 {
  return fmt == BF16 ? bf16Scalar(h) : f16Scalar(h);
}

// ---------------------------------------------------------------------------------------------
// Row dot products. `two` (a constant at every call site) adds a second weight row rb against the
// same x, loaded once; row a's arithmetic is the same either way.

/**
 * bf16 / f16 row(s) · x (f32): 16 weights a step, then one step of 8, then scalars. Each 8 weights
 * are summed as lo·x + hi·x apart from the row's two accumulators (steps alternate between them):
 * with four accumulators a row, V8 (Node 20) spilled some to the stack inside the loop, and the
 * fused build's chains then ran through memory (bf16 decoded ~30% slower; see bench/results).
 */
// @ts-ignore: decorator
@inline function dotWide(fmt: i32, two: bool, ra: usize, rb: usize, x: usize, k: i32,
                         ya: usize, yb: usize, acc: bool): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let pa = ra, pb = rb, q = x;
  const k0 = f16Const(fmt, 0), k1 = f16Const(fmt, 1);
  const end = ra + <usize>(k & ~15) * 2;
  while (pa < end) {
    const x0 = v128.load(q), x1 = v128.load(q, 16), x2 = v128.load(q, 32), x3 = v128.load(q, 48);
    let w = v128.load(pa);
    a0 = f32x4.add(a0, madd(wideHi(fmt, w, k0, k1), x1, f32x4.mul(wideLo(fmt, w, k0, k1), x0)));
    if (two) { w = v128.load(pb); b0 = f32x4.add(b0, madd(wideHi(fmt, w, k0, k1), x1, f32x4.mul(wideLo(fmt, w, k0, k1), x0))); }
    w = v128.load(pa, 16);
    a1 = f32x4.add(a1, madd(wideHi(fmt, w, k0, k1), x3, f32x4.mul(wideLo(fmt, w, k0, k1), x2)));
    if (two) { w = v128.load(pb, 16); b1 = f32x4.add(b1, madd(wideHi(fmt, w, k0, k1), x3, f32x4.mul(wideLo(fmt, w, k0, k1), x2))); }
    pa += 32; pb += 32; q += 64;
  }
  if (k & 8) {
    const x0 = v128.load(q), x1 = v128.load(q, 16);
    let w = v128.load(pa);
    a0 = f32x4.add(a0, madd(wideHi(fmt, w, k0, k1), x1, f32x4.mul(wideLo(fmt, w, k0, k1), x0)));
    if (two) { w = v128.load(pb); b0 = f32x4.add(b0, madd(wideHi(fmt, w, k0, k1), x1, f32x4.mul(wideLo(fmt, w, k0, k1), x0))); }
    pa += 16; pb += 16; q += 32;
  }
  let sa = hsum(f32x4.add(a0, a1));
  let sb: f32 = 0;
  if (two) sb = hsum(f32x4.add(b0, b1));
  for (let t = k & 7; t > 0; t--) {
    const xs = load<f32>(q);
    sa += wideScalar(fmt, <u32>load<u16>(pa)) * xs;
    if (two) sb += wideScalar(fmt, <u32>load<u16>(pb)) * xs;
    pa += 2; pb += 2; q += 4;
  }
  storeLane(ya, sa, acc);
  if (two) storeLane(yb, sb, acc);
}

/**
 * q8 / q4 row(s) · quantised x, nb blocks of 32: per block an exact i32x4 dot product, then
 * f32 acc += f32(Σ) · (d_w·d_x) lane-wise, one hsum at the end.
 */
// @ts-ignore: decorator
@inline function dotQuant(fmt: i32, two: bool, ra: usize, sa: usize, rb: usize, sb: usize,
                          xq: usize, xd: usize, nb: i32, ya: usize, yb: usize, acc: bool): void {
  const zero = i32x4.splat(0);
  let fa = f32x4.splat(0), fb = f32x4.splat(0);
  let blk = 0;
  // q4's nibble mask, loaded once (see NIBBLES8).
  const m = fmt != Q4 ? zero : v128.load(ASC_FEATURE_RELAXED_SIMD ? NIBBLES8 : NIBBLES16);
  const ones = fmt == Q8 && ASC_FEATURE_RELAXED_SIMD ? v128.load(ONES16) : zero;
  if (ASC_FEATURE_RELAXED_SIMD) if (fmt == Q4) {
    // Two blocks a step: their i16 lanes (|·| ≤ 4·8·127) interleaved and added in pairs, exactly,
    // then one widening, conversion and multiply-add for both, with [d0, d1, d0, d1] scales.
    for (; blk + 2 <= nb; blk += 2) {
      const xv0 = v128.load(xq), xv1 = v128.load(xq, 16), u = v128.load(xq, 32);
      const xv2 = v128.load(xq, 48), xv3 = v128.load(xq, 64);
      const dx = v128.load64_splat(xd);
      fa = madd(f32x4.mul(f32x4.convert_i32x4_s(nibblePair(ra, xv0, xv1, xv2, xv3, u, m)), dx), v128.load64_splat(sa), fa);
      if (two) fb = madd(f32x4.mul(f32x4.convert_i32x4_s(nibblePair(rb, xv0, xv1, xv2, xv3, u, m)), dx), v128.load64_splat(sb), fb);
      xq += 2 * prepBlock(Q4); xd += 8; ra += 32; sa += 8; rb += 32; sb += 8;
    }
  }
  for (; blk < nb; blk++) {
    let ia: v128, ib: v128 = zero;
    if (fmt == Q8) {
      if (ASC_FEATURE_RELAXED_SIMD) {
        // Each pair's w·x with x's sign on w, |·| ≤ 2·127²: exact in i16 (dotSigned).
        const ax0 = v128.load(xq), ax1 = v128.load(xq, 16), s0 = v128.load(xq, 32), s1 = v128.load(xq, 48);
        ia = dotSigned(v128.load(ra), v128.load(ra, 16), ax0, s0, ax1, s1, ones);
        if (two) ib = dotSigned(v128.load(rb), v128.load(rb, 16), ax0, s0, ax1, s1, ones);
      } else {
        const x0l = v128.load(xq), x0h = v128.load(xq, 16), x1l = v128.load(xq, 32), x1h = v128.load(xq, 48);
        ia = dot32(v128.load(ra), v128.load(ra, 16), x0l, x0h, x1l, x1h);
        if (two) ib = dot32(v128.load(rb), v128.load(rb, 16), x0l, x0h, x1l, x1h);
      }
    } else { // Q4
      if (ASC_FEATURE_RELAXED_SIMD) {
        // i16 lanes: Σ of 4 nibble·x products ≤ 4·15·127, minus 8·Σ of 4 x (≤ 4·8·127): exact.
        const xv0 = v128.load(xq), xv1 = v128.load(xq, 16), u = v128.load(xq, 32);
        ia = dotNibbles(v128.load(ra), xv0, xv1, u, m);
        if (two) ib = dotNibbles(v128.load(rb), xv0, xv1, u, m);
      } else {
        const xe0 = v128.load(xq), xo0 = v128.load(xq, 16), xe1 = v128.load(xq, 32), xo1 = v128.load(xq, 48);
        const u = v128.load(xq, 64);
        ia = dotCodes(v128.load(ra), xe0, xo0, xe1, xo1, u, m);
        if (two) ib = dotCodes(v128.load(rb), xe0, xo0, xe1, xo1, u, m);
      }
    }
    const dx = v128.load32_splat(xd);
    fa = madd(f32x4.mul(f32x4.convert_i32x4_s(ia), dx), v128.load32_splat(sa), fa);
    if (two) fb = madd(f32x4.mul(f32x4.convert_i32x4_s(ib), dx), v128.load32_splat(sb), fb);
    const wStep: usize = fmt == Q8 ? 32 : 16;
    xq += prepBlock(fmt); xd += 4; ra += wStep; sa += 4; rb += wStep; sb += 4;
  }
  storeLane(ya, hsum(fa), acc);
  if (two) storeLane(yb, hsum(fb), acc);
}

/** Σ of 32 products, i32x4: int8 weights w0 (elements 0–15), w1 (16–31) · x widened to i16. */
// @ts-ignore: decorator
@inline function dot32(w0: v128, w1: v128, x0l: v128, x0h: v128, x1l: v128, x1h: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w0), x0l), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w0), x0h)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w1), x1l), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w1), x1h)));
}

/**
 * Σ of 32 (q − 8)·x, i32x4 (plain q4): i16 lane j of the 16 code bytes w holds elements 2j, 2j + 16,
 * 2j + 1, 2j + 17 in its nibbles from the bottom, each masked or shifted out as an i16 against x's
 * matching even (xe0, xe1) or odd (xo0, xo1) elements; u = 8·Σx, lanes as Σq·x's. No byte
 * widening: 7 bit operations per 32 codes where extending to i16 took 11. m = i16x8.splat(0x0F).
 */
// @ts-ignore: decorator
@inline function dotCodes(w: v128, xe0: v128, xo0: v128, xe1: v128, xo1: v128, u: v128, m: v128): v128 {
  return i32x4.sub(i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(w, m), xe0), i32x4.dot_i16x8_s(v128.and(i16x8.shr_u(w, 8), m), xo0)),
    i32x4.add(i32x4.dot_i16x8_s(v128.and(i16x8.shr_u(w, 4), m), xe1), i32x4.dot_i16x8_s(i16x8.shr_u(w, 12), xo1))), u);
}

// The q8 and q4 products read x as prepAct laid it out, once per call, rather than rebuilt for
// every row. Per block of 32 int8 x:
//   q8, relaxed: |x| (0–15, 16–31), then x's sign as all-ones bytes (s0, s1), as dotSigned takes them;
//   q8, plain:   x widened to i16 (0–7, 8–15, 16–23, 24–31), as dot32 takes it;
//   q4, relaxed: x's 32 bytes, then u = 8·Σx in dotNibbles' i16 lanes (elements j, j + 1 and
//                j + 16, j + 17); for the first block of each pair nibblePair takes, both
//                blocks' u as it pairs them up;
//   q4, plain:   x's even and odd elements as i16 (the order dotCodes unpacks the codes in),
//                elements 0–15 then 16–31, then u in dotCodes' i32 lanes.
/** Bytes prepAct writes per block of 32. */
// @ts-ignore: decorator
@inline function prepBlock(fmt: i32): usize {
  return fmt == Q8 ? 64 : ASC_FEATURE_RELAXED_SIMD ? 48 : 80;
}
/** Activation rows matmul_nt_q8 / q4 prepare at a time (the scratch holds this many). */
// @ts-ignore: decorator
@inline const PREP_ROWS: i32 = 4;

/** nb blocks of quantised x (int8 at xq) → out, prepBlock(fmt) bytes a block. */
// @ts-ignore: decorator
@inline function prepAct(fmt: i32, xq: usize, nb: i32, out: usize): void {
  const zero = i32x4.splat(0);
  const eight = fmt != Q4 ? zero : v128.load(ASC_FEATURE_RELAXED_SIMD ? EIGHTS8 : EIGHTS16);
  for (let b = 0; b < nb; b++) {
    const xv0 = v128.load(xq), xv1 = v128.load(xq, 16);
    if (fmt == Q8) {
      if (ASC_FEATURE_RELAXED_SIMD) {
        v128.store(out, i8x16.abs(xv0)); v128.store(out, i8x16.abs(xv1), 16);
        v128.store(out, i8x16.lt_s(xv0, zero), 32); v128.store(out, i8x16.lt_s(xv1, zero), 48);
      } else {
        v128.store(out, i16x8.extend_low_i8x16_s(xv0)); v128.store(out, i16x8.extend_high_i8x16_s(xv0), 16);
        v128.store(out, i16x8.extend_low_i8x16_s(xv1), 32); v128.store(out, i16x8.extend_high_i8x16_s(xv1), 48);
      }
    } else if (ASC_FEATURE_RELAXED_SIMD) {
      v128.store(out, xv0); v128.store(out, xv1, 16);
      const u = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xv0, eight), i16x8.relaxed_dot_i8x16_i7x16_s(xv1, eight));
      // Blocks b, b + 1 go through nibblePair together: block b's slot holds both u, paired up.
      if ((b & 1) == 0 && b + 1 < nb) {
        const x2 = v128.load(xq, 32), x3 = v128.load(xq, 48);
        v128.store(out, pairUp(u, i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x2, eight), i16x8.relaxed_dot_i8x16_i7x16_s(x3, eight))), 32);
      } else {
        v128.store(out, u, 32);
      }
    } else {
      const xe0 = i16x8.shr_s(i16x8.shl(xv0, 8), 8), xo0 = i16x8.shr_s(xv0, 8);
      const xe1 = i16x8.shr_s(i16x8.shl(xv1, 8), 8), xo1 = i16x8.shr_s(xv1, 8);
      v128.store(out, xe0); v128.store(out, xo0, 16); v128.store(out, xe1, 32); v128.store(out, xo1, 48);
      v128.store(out, i32x4.dot_i16x8_s(i16x8.add(i16x8.add(xe0, xo0), i16x8.add(xe1, xo1)), eight), 64);
    }
    xq += 32; out += prepBlock(fmt);
  }
}

/** prepAct's layout of nb blocks of x in `prep`, where the q8 / q4 products read it. */
// @ts-ignore: decorator
@inline export function preparedAct(fmt: i32, xq: usize, nb: i32, prep: usize): usize {
  prepAct(fmt, xq, nb, prep);
  return prep;
}

/** Bytes of `prep` scratch the q8 / q4 products (matvec_*, matmul_nt_*) need for rows of k. */
export function quant_prep_bytes(k: i32): i32 {
  return PREP_ROWS * (max(k, 0) >> 5) * <i32>max(prepBlock(Q8), prepBlock(Q4));
}

/**
 * Σ of 32 products, i32x4 (relaxed q8): w0, w1 int8 with x's sign moved onto them ((w ^ s) − s,
 * s all ones where x < 0) · |x| (ax, the 7-bit operand). Exact for w ≠ −128 (see the top). The i16
 * pairs are summed by a dot with `ones` (ONES16, loaded once by the caller), not extadd_pairwise,
 * whose constant V8 fetches anew at every use (two instructions).
 */
// @ts-ignore: decorator
@inline function dotSigned(w0: v128, w1: v128, ax0: v128, s0: v128, ax1: v128, s1: v128, ones: v128): v128 {
  return i32x4.add(
    i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(i8x16.sub(v128.xor(w0, s0), s0), ax0), ones),
    i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(i8x16.sub(v128.xor(w1, s1), s1), ax1), ones));
}

/**
 * Σ of 32 (q − 8)·x, i32x4 (relaxed q4): the 16 code bytes w, x as two int8 vectors, u = 8·Σx in
 * i16 pairs, m = i8x16.splat(0x0F).
 */
// @ts-ignore: decorator
@inline function dotNibbles(w: v128, xv0: v128, xv1: v128, u: v128, m: v128): v128 {
  const t = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xv0, v128.and(w, m)),
    i16x8.relaxed_dot_i8x16_i7x16_s(xv1, v128.and(i16x8.shr_u(w, 4), m)));
  return i32x4.extadd_pairwise_i16x8_s(i16x8.sub(t, u));
}

/**
 * Two q4 blocks (32 code bytes at w) · x (xv0, xv1 and xv2, xv3; u = pairUp of their 8·Σx):
 * i32x4 whose lanes 0 and 2 sum to the first block's dot product, 1 and 3 to the second's.
 * m = i8x16.splat(0x0F). The i16 sums may wrap before u is subtracted; the result fits, so it is exact.
 */
// @ts-ignore: decorator
@inline function nibblePair(w: usize, xv0: v128, xv1: v128, xv2: v128, xv3: v128, u: v128, m: v128): v128 {
  const w0 = v128.load(w), w1 = v128.load(w, 16);
  const t0 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xv0, v128.and(w0, m)),
    i16x8.relaxed_dot_i8x16_i7x16_s(xv1, v128.and(i16x8.shr_u(w0, 4), m)));
  const t1 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xv2, v128.and(w1, m)),
    i16x8.relaxed_dot_i8x16_i7x16_s(xv3, v128.and(i16x8.shr_u(w1, 4), m)));
  return i32x4.extadd_pairwise_i16x8_s(i16x8.sub(pairUp(t0, t1), u));
}

/** i16 lanes of two blocks interleaved by i32 and added in pairs: [t0₀+t0₂, t1₀+t1₂, t0₁+t0₃, t1₁+t1₃]. */
// @ts-ignore: decorator
@inline function pairUp(t0: v128, t1: v128): v128 {
  return i16x8.add(v128.shuffle<i32>(t0, t1, 0, 4, 1, 5), v128.shuffle<i32>(t0, t1, 2, 6, 3, 7));
}

// @ts-ignore: decorator
@inline function storeLane(p: usize, v: f32, acc: bool): void {
  store<f32>(p, acc ? load<f32>(p) + v : v);
}

/**
 * One or two rows of any format: w/s are the row's weights and scales, x/xs the activation and
 * (q8/q4) its scales, k the row length.
 */
// @ts-ignore: decorator
@inline export function rows(fmt: i32, two: bool, wa: usize, sa: usize, wb: usize, sb: usize,
                      x: usize, xs: usize, k: i32, ya: usize, yb: usize, acc: bool): void {
  if (fmt == BF16 || fmt == F16) dotWide(fmt, two, wa, wb, x, k, ya, yb, acc);
  else dotQuant(fmt, two, wa, sa, wb, sb, x, xs, k >> 5, ya, yb, acc);
}

/**
 * y[n] (+)= W · x for one format: rows i and i + d side by side (d·wStride ≈ PAIR_BYTES, the
 * rows left paired at half their count while that keeps them PAIR_MIN_BYTES apart), then single
 * rows. wStride / sStride: bytes between rows of weights / scales.
 */
// @ts-ignore: decorator
@inline function matvecAny(fmt: i32, w: usize, wStride: usize, s: usize, sStride: usize,
                           x: usize, xs: usize, y: usize, n: i32, k: i32, acc: bool): void {
  let i = 0;
  if (wStride > 0) {
    let d = <i32>((PAIR_BYTES + wStride - 1) / wStride);
    for (;;) {
      if (n - i < 2 * d) {
        d = (n - i) >> 1;
        if (<usize>d * wStride < PAIR_MIN_BYTES) break;
      }
      const far = <usize>d;
      for (let r = i; r < i + d; r++) {
        const ur = <usize>r;
        rows(fmt, true, w + ur * wStride, s + ur * sStride, w + (ur + far) * wStride, s + (ur + far) * sStride,
          x, xs, k, y + ur * 4, y + (ur + far) * 4, acc);
      }
      i += 2 * d;
    }
  }
  for (; i < n; i++) {
    const ui = <usize>i;
    rows(fmt, false, w + ui * wStride, s + ui * sStride, 0, 0, x, xs, k, y + ui * 4, 0, acc);
  }
}

/**
 * C[m, n] (+)= A · Wᵀ for one format, m ≥ 2: each weight row against all m activation rows
 * while it is in L1 (A, m·k f32 or m·k int8, from L2). aStride / asStride: bytes between rows of
 * A / its scales.
 */
// @ts-ignore: decorator
@inline function matmulAny(fmt: i32, a: usize, aStride: usize, as: usize, asStride: usize,
                           w: usize, wStride: usize, s: usize, sStride: usize,
                           c: usize, ldc: i32, m: i32, k: i32, n: i32, acc: bool): void {
  const cStride = <usize>ldc * 4;
  for (let j = 0; j < n; j++) {
    const uj = <usize>j;
    const wj = w + uj * wStride, sj = s + uj * sStride;
    for (let i = 0; i < m; i++) {
      const ui = <usize>i;
      rows(fmt, false, wj, sj, 0, 0, a + ui * aStride, as + ui * asStride, k, c + ui * cStride + uj * 4, 0, acc);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Exports: products

/** y[n] (+)= W[n, k] · x[k], W bf16 with row stride ldw (u16 elements), x and y f32. */
export function matvec_bf16(w: usize, ldw: i32, x: usize, y: usize, n: i32, k: i32, acc: bool): void {
  if (n <= 0) return;
  matvecAny(BF16, w, <usize>ldw * 2, 0, 0, x, 0, y, n, max(k, 0), acc);
}

/** y[n] (+)= W[n, k] · x[k], W f16 with row stride ldw (u16 elements), x and y f32. */
export function matvec_f16(w: usize, ldw: i32, x: usize, y: usize, n: i32, k: i32, acc: bool): void {
  if (n <= 0) return;
  matvecAny(F16, w, <usize>ldw * 2, 0, 0, x, 0, y, n, max(k, 0), acc);
}

/**
 * y[n] (+)= W[n, k] · x, W q8 (wq rows of k bytes, wd scales [n, k/32]), x quantised by
 * quantize_q8_act into xq (k int8) and xd (k/32 f32); k a multiple of 32; `prep` scratch of
 * quant_prep_bytes(k) bytes.
 */
export function matvec_q8(wq: usize, wd: usize, xq: usize, xd: usize, y: usize, n: i32, k: i32, acc: bool, prep: usize): void {
  if (n <= 0) return;
  const kk = max(k, 0);
  matvecAny(Q8, wq, <usize>kk, wd, <usize>(kk >> 5) * 4, preparedAct(Q8, xq, kk >> 5, prep), xd, y, n, kk, acc);
}

/**
 * As matvec_q8 for q4 weights: wq rows of k/2 bytes (16 per block), wd scales [n, k/32].
 */
export function matvec_q4(wq: usize, wd: usize, xq: usize, xd: usize, y: usize, n: i32, k: i32, acc: bool, prep: usize): void {
  if (n <= 0) return;
  const kk = max(k, 0);
  matvecAny(Q4, wq, <usize>(kk >> 1), wd, <usize>(kk >> 5) * 4, preparedAct(Q4, xq, kk >> 5, prep), xd, y, n, kk, acc);
}

/** C[m, n] (+)= A[m, k] · W[n, k]ᵀ, A f32 (stride lda), W bf16 (stride ldw, u16), C f32 (stride ldc). */
export function matmul_nt_bf16(a: usize, lda: i32, w: usize, ldw: i32, c: usize, ldc: i32,
                               m: i32, k: i32, n: i32, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  if (m == 1) { matvec_bf16(w, ldw, a, c, n, k, acc); return; }
  matmulAny(BF16, a, <usize>lda * 4, 0, 0, w, <usize>ldw * 2, 0, 0, c, ldc, m, max(k, 0), n, acc);
}

/** As matmul_nt_bf16 with f16 weights. */
export function matmul_nt_f16(a: usize, lda: i32, w: usize, ldw: i32, c: usize, ldc: i32,
                              m: i32, k: i32, n: i32, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  if (m == 1) { matvec_f16(w, ldw, a, c, n, k, acc); return; }
  matmulAny(F16, a, <usize>lda * 4, 0, 0, w, <usize>ldw * 2, 0, 0, c, ldc, m, max(k, 0), n, acc);
}

/**
 * C[m, n] (+)= A · Wᵀ, A as m rows quantised by quantize_q8_act (aq: rows of k int8, ad: rows of
 * k/32 f32, both contiguous), W q8 as for matvec_q8, C f32 (stride ldc); `prep` scratch of
 * quant_prep_bytes(k) bytes: PREP_ROWS rows of A are prepared at a time, and W runs over each group.
 */
export function matmul_nt_q8(aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
                             m: i32, k: i32, n: i32, acc: bool, prep: usize): void {
  if (m <= 0 || n <= 0) return;
  if (m == 1) { matvec_q8(wq, wd, aq, ad, c, n, k, acc, prep); return; }
  matmulQuant(Q8, aq, ad, wq, wd, c, ldc, m, max(k, 0), n, acc, prep);
}

/** As matmul_nt_q8 with q4 weights. */
export function matmul_nt_q4(aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
                             m: i32, k: i32, n: i32, acc: bool, prep: usize): void {
  if (m <= 0 || n <= 0) return;
  if (m == 1) { matvec_q4(wq, wd, aq, ad, c, n, k, acc, prep); return; }
  matmulQuant(Q4, aq, ad, wq, wd, c, ldc, m, max(k, 0), n, acc, prep);
}

// @ts-ignore: decorator
@inline function matmulQuant(fmt: i32, aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
                             m: i32, k: i32, n: i32, acc: bool, prep: usize): void {
  const nb = k >> 5, sb = <usize>nb * 4, rowBytes = <usize>nb * prepBlock(fmt);
  const wStride: usize = fmt == Q8 ? <usize>k : <usize>(k >> 1);
  for (let i0 = 0; i0 < m; i0 += PREP_ROWS) {
    const mr = min(PREP_ROWS, m - i0), u0 = <usize>i0;
    for (let r = 0; r < mr; r++) prepAct(fmt, aq + (u0 + <usize>r) * <usize>k, nb, prep + <usize>r * rowBytes);
    matmulAny(fmt, prep, rowBytes, ad + u0 * sb, sb, wq, wStride, wd, sb, c + u0 * <usize>ldc * 4, ldc, mr, k, n, acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Exports: quantising and widening

/**
 * Q8_0's rule on one block of 32 f32 at p: d = max|v| / 127, q = round(v · (1/d)), half away
 * from zero (llama.cpp's roundf), q = 0 when d = 0. Stores 32 int8 at q and d at dp.
 */
// @ts-ignore: decorator
@inline function q8Block(p: usize, q: usize, dp: usize): void {
  const v0 = v128.load(p), v1 = v128.load(p, 16), v2 = v128.load(p, 32), v3 = v128.load(p, 48);
  const v4 = v128.load(p, 64), v5 = v128.load(p, 80), v6 = v128.load(p, 96), v7 = v128.load(p, 112);
  const m = f32x4.max(
    f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
    f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))));
  const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)),
    max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  const d: f32 = amax / 127;
  const id: f32 = d != 0 ? <f32>1 / d : 0;
  const idv = f32x4.splat(id);
  const a = i16x8.narrow_i32x4_s(roundAway(v0, idv), roundAway(v1, idv));
  const b = i16x8.narrow_i32x4_s(roundAway(v2, idv), roundAway(v3, idv));
  const c = i16x8.narrow_i32x4_s(roundAway(v4, idv), roundAway(v5, idv));
  const e = i16x8.narrow_i32x4_s(roundAway(v6, idv), roundAway(v7, idv));
  v128.store(q, i8x16.narrow_i16x8_s(a, b));
  v128.store(q, i8x16.narrow_i16x8_s(c, e), 16);
  store<f32>(dp, d);
}

/** i32x4 of roundf(v · id): trunc, then one more away from zero where the dropped part is ≥ ½. */
// @ts-ignore: decorator
@inline export function roundAway(v: v128, id: v128): v128 {
  const s = f32x4.mul(v, id);
  const t = f32x4.trunc(s);
  const up = f32x4.ge(f32x4.abs(f32x4.sub(s, t)), f32x4.splat(0.5));
  const one = v128.or(f32x4.splat(1), v128.and(s, i32x4.splat(0x80000000)));
  return i32x4.trunc_sat_f32x4_s(f32x4.add(t, v128.and(up, one)));
}

/**
 * Activations for matvec_q8 / matvec_q4 / matmul_nt_q8 / matmul_nt_q4: x[k] f32 (k a multiple
 * of 32) → xq (k int8), xd (k/32 f32), Q8_0's rule per block of 32. Run once per activation row.
 */
export function quantize_q8_act(x: usize, k: i32, xq: usize, xd: usize): void {
  const nb = max(k, 0) >> 5;
  for (let b = 0; b < nb; b++) {
    const ub = <usize>b;
    q8Block(x + ub * 128, xq + ub * 32, xd + ub * 4);
  }
}

/**
 * W[n, k] f32 (row stride ldw floats, k a multiple of 32) → q8: wq (n rows of k int8), wd
 * (f32 [n, k/32]), Q8_0's rule per block, d kept in f32 (Q8_0 rounds it to f16 afterwards).
 */
export function quantize_q8_rows(w: usize, ldw: i32, n: i32, k: i32, wq: usize, wd: usize): void {
  const nb = max(k, 0) >> 5;
  for (let i = 0; i < n; i++) {
    const row = w + <usize>i * <usize>ldw * 4;
    const qr = wq + <usize>i * <usize>(nb * 32), dr = wd + <usize>i * <usize>(nb * 4);
    for (let b = 0; b < nb; b++) {
      const ub = <usize>b;
      q8Block(row + ub * 128, qr + ub * 32, dr + ub * 4);
    }
  }
}

/**
 * W[n, k] f32 → q4 (wq: n rows of k/2 bytes, wd: f32 [n, k/32]) by Q4_0's rule per block: the
 * value of largest magnitude `mx` (the first, if tied) gives d = mx / −8, q = min(15,
 * trunc(v · (1/d) + 8.5)), q = 8 when d = 0; d kept in f32. Element j in byte j's low nibble,
 * j + 16 in its high nibble. Load-time code: scalar, in llama.cpp's order of operations.
 */
export function quantize_q4_rows(w: usize, ldw: i32, n: i32, k: i32, wq: usize, wd: usize): void {
  const nb = max(k, 0) >> 5;
  for (let i = 0; i < n; i++) {
    const row = w + <usize>i * <usize>ldw * 4;
    const qr = wq + <usize>i * <usize>(nb * 16), dr = wd + <usize>i * <usize>(nb * 4);
    for (let b = 0; b < nb; b++) {
      const p = row + <usize>b * 128;
      let amax: f32 = 0, mx: f32 = 0;
      for (let j = 0; j < 32; j++) {
        const v = load<f32>(p + <usize>j * 4);
        if (amax < abs(v)) { amax = abs(v); mx = v; }
      }
      const d: f32 = mx / -8;
      const id: f32 = d != 0 ? <f32>1 / d : 0;
      const qb = qr + <usize>b * 16;
      for (let j = 0; j < 16; j++) {
        const lo = min(15, <i32>(load<f32>(p + <usize>j * 4) * id + <f32>8.5));
        const hi = min(15, <i32>(load<f32>(p + <usize>(j + 16) * 4) * id + <f32>8.5));
        store<u8>(qb + <usize>j, <u8>(lo | (hi << 4)));
      }
      store<f32>(dr + <usize>b * 4, d);
    }
  }
}

/** out[32·nb] = q · d for nb q8 blocks (wq: 32 int8 each, wd: one f32 each): tests and tools. */
export function dequantize_q8(wq: usize, wd: usize, out: usize, nb: i32): void {
  for (let b = 0; b < nb; b++) {
    const q = wq + <usize>b * 32, o = out + <usize>b * 128;
    const d = v128.load32_splat(wd + <usize>b * 4);
    const v0 = v128.load(q), v1 = v128.load(q, 16);
    widenStore(o, i16x8.extend_low_i8x16_s(v0), d, 0);
    widenStore(o, i16x8.extend_high_i8x16_s(v0), d, 32);
    widenStore(o, i16x8.extend_low_i8x16_s(v1), d, 64);
    widenStore(o, i16x8.extend_high_i8x16_s(v1), d, 96);
  }
}

/** out[32·nb] = (q − 8) · d for nb q4 blocks (wq: 16 bytes each, wd: one f32 each). */
export function dequantize_q4(wq: usize, wd: usize, out: usize, nb: i32): void {
  const m = i8x16.splat(0x0F), eight = i8x16.splat(8);
  for (let b = 0; b < nb; b++) {
    const v = v128.load(wq + <usize>b * 16), o = out + <usize>b * 128;
    const d = v128.load32_splat(wd + <usize>b * 4);
    const lo = i8x16.sub(v128.and(v, m), eight), hi = i8x16.sub(v128.and(i16x8.shr_u(v, 4), m), eight);
    widenStore(o, i16x8.extend_low_i8x16_s(lo), d, 0);
    widenStore(o, i16x8.extend_high_i8x16_s(lo), d, 32);
    widenStore(o, i16x8.extend_low_i8x16_s(hi), d, 64);
    widenStore(o, i16x8.extend_high_i8x16_s(hi), d, 96);
  }
}

// @ts-ignore: decorator
@inline function widenStore(o: usize, v16: v128, d: v128, off: usize): void {
  v128.store(o + off, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v16)), d));
  v128.store(o + off, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v16)), d), 16);
}

/** dst[count] f32 = src[count] finite f16, with the matvec_f16 widening (embeddings, tests). */
export function widen_f16(src: usize, dst: usize, count: i32): void {
  const k0 = f16Const(F16, 0), k1 = f16Const(F16, 1);
  let i = 0;
  for (; i + 8 <= count; i += 8) {
    const h = v128.load(src + <usize>i * 2), o = dst + <usize>i * 4;
    v128.store(o, f16Lo(h, k0, k1));
    v128.store(o, f16Hi(h, k0, k1), 16);
  }
  for (; i < count; i++) store<f32>(dst + <usize>i * 4, f16Scalar(<u32>load<u16>(src + <usize>i * 2)));
}

/** dst[count] f32 = src[count] bf16 (a shift). */
export function widen_bf16(src: usize, dst: usize, count: i32): void {
  let i = 0;
  for (; i + 8 <= count; i += 8) {
    const h = v128.load(src + <usize>i * 2), o = dst + <usize>i * 4;
    v128.store(o, unpackLo(h));
    v128.store(o, unpackHi(h), 16);
  }
  for (; i < count; i++) store<f32>(dst + <usize>i * 4, bf16Scalar(<u32>load<u16>(src + <usize>i * 2)));
}

// ---------------------------------------------------------------------------------------------
// Exports: embedding rows of a narrow table (one row per token, widened into out)

/** out[t, :] = row ids[t] of a bf16 table [*, dim] for t < count (ids: i32). */
export function embed_bf16(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  for (let t = 0; t < count; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    widen_bf16(table + id * <usize>dim * 2, out + <usize>t * <usize>dim * 4, dim);
  }
}

/** As embed_bf16 for an f16 table. */
export function embed_f16(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  for (let t = 0; t < count; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    widen_f16(table + id * <usize>dim * 2, out + <usize>t * <usize>dim * 4, dim);
  }
}

/** As embed_bf16 for a q8 table (wq rows of dim bytes, wd [*, dim/32] f32); dim a multiple of 32. */
export function embed_q8(wq: usize, wd: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  const nb = dim >> 5;
  for (let t = 0; t < count; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    dequantize_q8(wq + id * <usize>dim, wd + id * <usize>nb * 4, out + <usize>t * <usize>dim * 4, nb);
  }
}

/** As embed_q8 for a q4 table (wq rows of dim/2 bytes). */
export function embed_q4(wq: usize, wd: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  const nb = dim >> 5;
  for (let t = 0; t < count; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    dequantize_q4(wq + id * <usize>(dim >> 1), wd + id * <usize>nb * 4, out + <usize>t * <usize>dim * 4, nb);
  }
}
