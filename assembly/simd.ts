// SIMD helpers shared by every kernel family. One source serves both builds:
// ASC_FEATURE_RELAXED_SIMD is a compile-time constant, true only in the build
// made with `--enable relaxed-simd`, so the plain build never contains a
// relaxed opcode and validates on every engine with SIMD.

/** a * b + c, lane-wise: fused under relaxed SIMD, mul then add otherwise. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// Splat constants as data, for a loop to load once before it starts: newer V8 (Node 24, Deno,
// Chromium) rebuilds a constant splat before every use inside a loop (three instructions), while
// a loaded value stays in a register (or its spill slot) on every V8.
/** i8x16.splat(0x0F): the low nibble of each byte. */
export const NIBBLES8: usize = memory.data<u8>([15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15]);
/** i8x16.splat(8). */
export const EIGHTS8: usize = memory.data<u8>([8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]);
/** i16x8.splat(0x0F). */
export const NIBBLES16: usize = memory.data<i16>([15, 15, 15, 15, 15, 15, 15, 15]);
/** i16x8.splat(8). */
export const EIGHTS16: usize = memory.data<i16>([8, 8, 8, 8, 8, 8, 8, 8]);
/** i16x8.splat(1). */
export const ONES16: usize = memory.data<i16>([1, 1, 1, 1, 1, 1, 1, 1]);

/** Sum of the four lanes. */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) +
    f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** 1 when this module is the relaxed-SIMD build, else 0 (lets the host check what it loaded). */
export function build_is_relaxed(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}
