// Vector math helpers for the kernels: a four-lane f32 exp.
//
// exp(x) = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln 2 (Cody–Waite: ln 2 split into a
// 9-bit head, so n·head is exact, and a small tail), |r| ≤ ln2/2; e^r is Cephes' degree-7
// polynomial (1 + r + r²·P(r), P of degree 5). n is rounded by the 1.5·2^23 shifter trick, so the
// integer n is read straight from the bits of the shifted value (no float→int conversion).
import { madd } from "./simd";

// @ts-ignore: decorator
@inline const LOG2E: f32 = 1.44269504088896341;
// @ts-ignore: decorator
@inline const SHIFTER: f32 = 12582912.0; // 1.5 · 2^23: adding it rounds to an integer
// @ts-ignore: decorator
@inline const LN2_HI: f32 = 0.693359375; // 355/512, exact in 9 bits
// @ts-ignore: decorator
@inline const LN2_LO: f32 = -2.12194440e-4; // ln 2 − LN2_HI
// @ts-ignore: decorator
@inline const P0: f32 = 1.9875691500e-4;
// @ts-ignore: decorator
@inline const P1: f32 = 1.3981999507e-3;
// @ts-ignore: decorator
@inline const P2: f32 = 8.3334519073e-3;
// @ts-ignore: decorator
@inline const P3: f32 = 4.1665795894e-2;
// @ts-ignore: decorator
@inline const P4: f32 = 1.6666665459e-1;
// @ts-ignore: decorator
@inline const P5: f32 = 5.0000001201e-1;
// @ts-ignore: decorator
@inline const FTZ_BELOW: f32 = -87.3; // e^-87.3 > FLT_MIN = e^-87.336

// expSoftmax4's constants as f32 data, each broadcast from memory where it is used (one load):
// newer V8 (Node 24, Deno, Chromium) rebuilds a constant splat before every use inside a loop
// (three instructions), and thirteen are more than the softmax loop's free registers anyway.
// exp4 keeps splats: Node 20 holds them across SwiGLU's loop, where the loads ran slower.
const EXP_K: usize = memory.data<f32>([SHIFTER, -LN2_HI, -LN2_LO, P0, P1, P2, P3, P4, P5, 1.0, LOG2E, FTZ_BELOW]);
/** i32 127, the exponent bias. */
const EXP_BIAS: usize = memory.data<i32>([127]);

/** EXP_K's entry i in every lane. */
// @ts-ignore: decorator
@inline function k(i: i32): v128 {
  return v128.load32_splat(EXP_K + (<usize>i << 2));
}

/**
 * 1 + r + r²·P(r) ≈ e^r, r = x − n·ln 2, for kn = x·log2 e + SHIFTER (so n = kn − SHIFTER); the
 * constants loaded from EXP_K (Loaded = true) or splats. A type argument, not a parameter: it is
 * settled as AssemblyScript compiles, so exp4's code stays what it was without the loads.
 */
// @ts-ignore: decorator
@inline function expCore<Loaded>(x: v128, kn: v128): v128 {
  const loaded = isBoolean<Loaded>();
  const n = f32x4.sub(kn, loaded ? k(0) : f32x4.splat(SHIFTER));
  let r = madd(n, loaded ? k(1) : f32x4.splat(-LN2_HI), x);
  r = madd(n, loaded ? k(2) : f32x4.splat(-LN2_LO), r);
  let p = madd(loaded ? k(3) : f32x4.splat(P0), r, loaded ? k(4) : f32x4.splat(P1));
  p = madd(p, r, loaded ? k(5) : f32x4.splat(P2));
  p = madd(p, r, loaded ? k(6) : f32x4.splat(P3));
  p = madd(p, r, loaded ? k(7) : f32x4.splat(P4));
  p = madd(p, r, loaded ? k(8) : f32x4.splat(P5));
  const r2 = f32x4.mul(r, r);
  return f32x4.add(madd(p, r2, r), loaded ? k(9) : f32x4.splat(1.0));
}

/**
 * e^x lane-wise over the whole f32 range: +inf above ln(FLT_MAX), gradual underflow to
 * subnormals and then 0 below ln(FLT_MIN), exp(−inf) = 0, NaN stays NaN.
 * The power of two is applied as two factors 2^(n>>1) · 2^(n−(n>>1)), both normal, so the
 * only rounding of the scaling is the final one.
 */
// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
  // pmax/pmin keep a NaN in x (the comparison is false) and clamp ±inf.
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-104.0)), f32x4.splat(89.0));
  const kn = madd(x, f32x4.splat(LOG2E), f32x4.splat(SHIFTER));
  const y = expCore<f32>(x, kn);
  const ni = i32x4.sub(kn, f32x4.splat(SHIFTER)); // integer n from the bits
  const n1 = i32x4.shr_s(ni, 1);
  const n2 = i32x4.sub(ni, n1);
  const s1 = i32x4.shl(i32x4.add(n1, i32x4.splat(127)), 23);
  const s2 = i32x4.shl(i32x4.add(n2, i32x4.splat(127)), 23);
  return f32x4.mul(f32x4.mul(y, s1), s2);
}

/**
 * e^x for the softmax (x ≤ 0 expected; as accurate as exp4 for −87.3 ≤ x ≤ 88, wrong above 88.37):
 * results that would be subnormal (x < −87.3) are flushed to exactly 0, so no subnormal is
 * ever produced (they are slow on x86 and worthless next to the max term, which is 1).
 * exp(−inf) = 0. One scaling multiply instead of two.
 */
// @ts-ignore: decorator
@inline export function expSoftmax4(x: v128): v128 {
  const ftz = k(11);
  const tiny = f32x4.lt(x, ftz);
  const xc = f32x4.pmax(x, ftz);
  const kn = madd(xc, k(10), k(0));
  const y = expCore<bool>(xc, kn);
  const ni = i32x4.sub(kn, k(0));
  const s = i32x4.shl(i32x4.add(ni, v128.load32_splat(EXP_BIAS)), 23);
  return v128.andnot(f32x4.mul(y, s), tiny);
}

/** Test hook (not exported by the kernel module): y[i] = exp4(x[i]) for i < n. */
export function exp_array(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, exp4(v128.load(x + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, f32x4.extract_lane(exp4(f32x4.splat(load<f32>(x + o))), 0));
  }
}

/** Test hook (not exported by the kernel module): y[i] = expSoftmax4(x[i]) for i < n. */
export function exp_softmax_array(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, expSoftmax4(v128.load(x + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, f32x4.extract_lane(expSoftmax4(f32x4.splat(load<f32>(x + o))), 0));
  }
}
