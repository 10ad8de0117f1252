// Shared test utilities: both kernel builds, seeded random data, and a comparison that
// reports the worst element.
import { expect } from 'vitest';
import { loadKernels, type LoadedKernels } from '../src/host/load.js';
import { type SimdBuild } from '../src/host/kernels.js';

export const BUILDS: SimdBuild[] = ['simd', 'relaxed'];

const cache = new Map<SimdBuild, Promise<LoadedKernels>>();
/** One kernel instance per build, shared by a test file (each test allocates what it needs). */
export function kernelsFor(build: SimdBuild): Promise<LoadedKernels> {
  let p = cache.get(build);
  if (!p) { p = loadKernels({ simd: build }); cache.set(build, p); }
  return p;
}

/** Deterministic pseudo-random numbers (mulberry32), uniform in [lo, hi). */
export function rng(seed: number): (lo?: number, hi?: number) => number {
  let a = seed >>> 0;
  return (lo = -1, hi = 1) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return lo + (hi - lo) * u;
  };
}

export function randomF32(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r(lo, hi);
  return a;
}

/** Copy an array into a fresh block of the heap; returns its byte offset. */
export function put(k: LoadedKernels, data: ArrayLike<number>): number {
  const ptr = k.heap.alloc(data.length * 4);
  k.heap.f32(ptr, data.length).set(data);
  return ptr;
}

/**
 * Expect |actual − expected| ≤ atol + rtol·|expected| everywhere; the failure message names the
 * first index that breaks it and the worst error.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, what = ''): void {
  expect(actual.length, `${what} length`).toBe(expected.length);
  let worst = 0, worstAt = -1, firstBad = -1;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    const tol = atol + rtol * Math.abs(expected[i]);
    if (!(err <= tol) && firstBad < 0) firstBad = i;
    if (!(err <= worst)) { worst = err; worstAt = i; }
  }
  if (firstBad >= 0) {
    expect.fail(`${what}: index ${firstBad} is ${actual[firstBad]}, expected ${expected[firstBad]}; ` +
      `worst abs error ${worst} at ${worstAt}`);
  }
}

/** Largest |actual − expected| as a fraction of the largest |expected| (logits of a narrow format against f32). */
export function relativeError(actual: Float32Array, expected: Float32Array): number {
  let err = 0, max = 0;
  for (let i = 0; i < expected.length; i++) {
    err = Math.max(err, Math.abs(actual[i] - expected[i]));
    max = Math.max(max, Math.abs(expected[i]));
  }
  return err / max;
}
