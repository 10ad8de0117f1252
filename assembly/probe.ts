// Same-run probes of this machine's limits, so that benchmarks can report kernels as a
// ratio to what this build can do here and now (absolute figures move 20% run to run).
import { madd } from "./simd";
import { matvecPairs } from "./matmul";
import { rows, preparedAct, BF16, F16, Q8, Q4 } from "./quant";

// Independent multiply-add chains in probe_peak. Neither compiler may be able to share or
// hoist a product, or the probe measures adds alone and overstates the peak:
// - relaxed (fused) build: acc_i = fma(x, y, acc_i). An FMA cannot be split, so one loop-variant
//   x is enough; 12 chains cover the FMA latency of both pipes, and 12 + x, y, dx fit in the 15
//   xmm registers V8 allocates.
// - plain build: acc_i = u_p·u_q + acc_i over the 10 distinct pairs of 4 vectors that rotate every
//   round (u0 ← u1 ← u2 ← u3 ← u0 + d), so every product is new each round; 10 accumulators,
//   4 multiplicands and the multiply's temporary fill the registers.
// Per round each build also does one add on the multiplicands, counted in neither flops nor chains.
// @ts-ignore: decorator
@inline const PEAK_CHAINS: i32 = ASC_FEATURE_RELAXED_SIMD ? 12 : 10;

/** How many independent f32x4 accumulators probe_peak runs (flops = iters · chains · 4 · 2). */
export function probe_peak_chains(): i32 {
  return PEAK_CHAINS;
}

/**
 * Compute peak: `iters` rounds of probe_peak_chains() independent `madd`s. Returns a sum of the
 * accumulators (finite for any iters) so that nothing is dead.
 */
export function probe_peak(iters: i32): f32 {
  const s = f32(iters) * 1e-12;
  const d = f32x4.splat(1e-9);
  let a0 = f32x4.splat(0.0), a1 = f32x4.splat(0.1), a2 = f32x4.splat(0.2), a3 = f32x4.splat(0.3);
  let a4 = f32x4.splat(0.4), a5 = f32x4.splat(0.5), a6 = f32x4.splat(0.6), a7 = f32x4.splat(0.7);
  let a8 = f32x4.splat(0.8), a9 = f32x4.splat(0.9);
  if (ASC_FEATURE_RELAXED_SIMD) {
    let x = f32x4.splat(1e-4 + s);
    const y = f32x4.splat(1e-4);
    let a10 = f32x4.splat(1.0), a11 = f32x4.splat(1.1);
    for (let i = 0; i < iters; i++) {
      a0 = madd(x, y, a0); a1 = madd(x, y, a1); a2 = madd(x, y, a2); a3 = madd(x, y, a3);
      a4 = madd(x, y, a4); a5 = madd(x, y, a5); a6 = madd(x, y, a6); a7 = madd(x, y, a7);
      a8 = madd(x, y, a8); a9 = madd(x, y, a9); a10 = madd(x, y, a10); a11 = madd(x, y, a11);
      x = f32x4.add(x, d);
    }
    a0 = f32x4.add(f32x4.add(a0, a10), f32x4.add(a11, x));
  } else {
    let u0 = f32x4.splat(1e-4 + s), u1 = f32x4.splat(2e-4), u2 = f32x4.splat(3e-4), u3 = f32x4.splat(4e-4);
    for (let i = 0; i < iters; i++) {
      a0 = madd(u0, u1, a0); a1 = madd(u2, u3, a1); a2 = madd(u0, u2, a2); a3 = madd(u1, u3, a3);
      a4 = madd(u0, u3, a4); a5 = madd(u1, u2, a5); a6 = madd(u0, u0, a6); a7 = madd(u1, u1, a7);
      a8 = madd(u2, u2, a8); a9 = madd(u3, u3, a9);
      const t = f32x4.add(u0, d); u0 = u1; u1 = u2; u2 = u3; u3 = t;
    }
    a0 = f32x4.add(f32x4.add(a0, u0), f32x4.add(f32x4.add(u1, u2), u3));
  }
  const t = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)),
                      f32x4.add(f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)), f32x4.add(a8, a9)));
  return f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1) +
    f32x4.extract_lane(t, 2) + f32x4.extract_lane(t, 3);
}

// @ts-ignore: decorator
@inline const READ_STEP: i32 = 128;
// @ts-ignore: decorator
@inline const PAIR_HALF: i32 = 2 << 20;

/**
 * The bytes probe_read (pairs 0) or probe_read_pairs (1) reads whole: a tail shorter than this is
 * skipped, so a split into chunks of whole blocks reads what one call would.
 */
export function probe_read_block(pairs: i32): i32 {
  return pairs ? 2 * PAIR_HALF : READ_STEP;
}

/**
 * Read bandwidth: `reps` passes of v128.load over [ptr, ptr + bytes), summed into four
 * independent accumulators (128 bytes a step; a tail shorter than 128 bytes is skipped).
 * Bytes read = reps · (bytes rounded down to 128).
 */
export function probe_read(ptr: usize, bytes: i32, reps: i32): f32 {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  const end = ptr + (<usize>(bytes & ~(READ_STEP - 1)));
  for (let r = 0; r < reps; r++) {
    for (let p = ptr; p < end; p += <usize>READ_STEP) {
      s0 = f32x4.add(s0, f32x4.add(v128.load(p), v128.load(p, 16)));
      s1 = f32x4.add(s1, f32x4.add(v128.load(p, 32), v128.load(p, 48)));
      s2 = f32x4.add(s2, f32x4.add(v128.load(p, 64), v128.load(p, 80)));
      s3 = f32x4.add(s3, f32x4.add(v128.load(p, 96), v128.load(p, 112)));
    }
  }
  const t = f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3));
  return f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1) +
    f32x4.extract_lane(t, 2) + f32x4.extract_lane(t, 3);
}

/**
 * Read bandwidth of two streams: each 4 MiB block of [ptr, ptr + bytes) is read as its two 2 MiB
 * halves side by side (the way matvec pairs rows, see PAIR_BYTES in matmul.ts), `reps` passes.
 * Bytes read = reps · (bytes rounded down to 4 MiB).
 */
export function probe_read_pairs(ptr: usize, bytes: i32, reps: i32): f32 {
  const half: usize = <usize>PAIR_HALF;
  const blocks = <usize>bytes / (2 * half);
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  for (let r = 0; r < reps; r++) {
    for (let b: usize = 0; b < blocks; b++) {
      const start = ptr + b * 2 * half, end = start + half;
      for (let p = start; p < end; p += 64) {
        const q = p + half;
        s0 = f32x4.add(s0, f32x4.add(v128.load(p), v128.load(q)));
        s1 = f32x4.add(s1, f32x4.add(v128.load(p, 16), v128.load(q, 16)));
        s2 = f32x4.add(s2, f32x4.add(v128.load(p, 32), v128.load(q, 32)));
        s3 = f32x4.add(s3, f32x4.add(v128.load(p, 48), v128.load(q, 48)));
      }
    }
  }
  const t = f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3));
  return f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1) +
    f32x4.extract_lane(t, 2) + f32x4.extract_lane(t, 3);
}

// @ts-ignore: decorator
@inline const F32: i32 = 4;

/**
 * Compute rate of the decode GEMVs: `reps` passes of the matvec pair loop of one weights format
 * (0 bf16, 1 f16, 2 q8, 3 q4 as in quant.ts, 4 f32) over n rows of k, row j beside row j + n/2 as
 * matvec pairs rows far apart, but small enough to stay in L1: the same instructions without
 * DRAM. w/s: weights and (q8, q4) scales as matvec_* take them; x/xs: x in f32, or int8 and
 * scales from quantize_q8_act; y: n floats; prep: q8 / q4's scratch as matvec_q8 / q4 take it.
 * n even, k a multiple of 32.
 */
export function probe_matvec(fmt: i32, w: usize, s: usize, x: usize, xs: usize, y: usize, n: i32, k: i32, reps: i32,
                             prep: usize): void {
  const half = n >> 1;
  // x laid out once, as in a matvec whose many rows share it.
  const xq = fmt == Q8 || fmt == Q4 ? preparedAct(fmt, x, k >> 5, prep) : x;
  for (let r = 0; r < reps; r++) {
    if (fmt == F32) matvecPairs(w, k, x, y, half, k, false);
    else if (fmt == BF16) pairsInL1(BF16, w, <usize>k * 2, s, 0, x, xs, y, half, k);
    else if (fmt == F16) pairsInL1(F16, w, <usize>k * 2, s, 0, x, xs, y, half, k);
    else if (fmt == Q8) pairsInL1(Q8, w, <usize>k, s, <usize>(k >> 5) * 4, xq, xs, y, half, k);
    else pairsInL1(Q4, w, <usize>(k >> 1), s, <usize>(k >> 5) * 4, xq, xs, y, half, k);
  }
}

// @ts-ignore: decorator
@inline function pairsInL1(fmt: i32, w: usize, wStride: usize, s: usize, sStride: usize,
                           x: usize, xs: usize, y: usize, half: i32, k: i32): void {
  const far = <usize>half;
  for (let i = 0; i < half; i++) {
    const ui = <usize>i;
    rows(fmt, true, w + ui * wStride, s + ui * sStride, w + (ui + far) * wStride, s + (ui + far) * sStride,
      x, xs, k, y + ui * 4, y + (ui + far) * 4, false);
  }
}
