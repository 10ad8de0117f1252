import { describe, expect, it } from 'vitest';
import { BUILDS, expectClose, kernelsFor, put, randomF32 } from '../helpers.js';
import { rmsnorm } from '../reference/ops.js';

const SENTINEL = -12345.5;
const GUARD = 16;

describe.each(BUILDS)('rmsnorm (%s build)', (build) => {
  // x rows at stride ldx, y rows at stride ldy (≥ dim); everything outside y's rows must stay untouched.
  async function run(rows: number, dim: number, ldx: number, ldy: number, inPlace: boolean,
                     seed: number, lo = -2, hi = 2, eps = 1e-6) {
    const k = await kernelsFor(build);
    const xd = randomF32(rows * dim, seed, lo, hi);
    const w = randomF32(dim, seed + 1, 0.5, 1.5);
    const xBuf = new Float32Array(rows * ldx + GUARD).fill(SENTINEL);
    for (let r = 0; r < rows; r++) xBuf.set(xd.subarray(r * dim, (r + 1) * dim), r * ldx);
    const xPtr = put(k, xBuf);
    const wPtr = put(k, w);
    const yLen = rows * ldy + GUARD;
    const yPtr = inPlace ? xPtr : put(k, new Float32Array(yLen).fill(SENTINEL));
    k.kernels.rmsnorm(xPtr, ldx, wPtr, yPtr, inPlace ? ldx : ldy, rows, dim, eps);
    const ld = inPlace ? ldx : ldy;
    const y = k.heap.f32(yPtr, rows * ld + GUARD).slice();
    const expected = rmsnorm(xd, w, rows, dim, eps);
    const got = new Float32Array(rows * dim);
    for (let r = 0; r < rows; r++) got.set(y.subarray(r * ld, r * ld + dim), r * dim);
    // y = x·inv·w: a few roundings of a product, whatever the magnitude.
    expectClose(got, expected, 1e-5, 1e-30, `rows ${rows} dim ${dim}`);
    for (let r = 0; r < rows; r++) {
      for (let i = r * ld + dim; i < (r + 1) * ld; i++) expect(y[i], `gap after row ${r}`).toBe(SENTINEL);
    }
    for (let i = rows * ld; i < rows * ld + GUARD; i++) expect(y[i], 'sentinel after y').toBe(SENTINEL);
    expect(Array.from(k.heap.f32(wPtr, dim))).toEqual(Array.from(w));
  }

  it.each([1, 3, 7, 64, 577, 4097])('dim %i, dense rows', async (dim) => {
    await run(1, dim, dim, dim, false, dim);
    await run(3, dim, dim, dim, false, dim + 7);
  });

  it.each([1, 3, 7, 64, 577, 4097])('dim %i, strides larger than rows', async (dim) => {
    await run(3, dim, dim + 5, dim + 2, false, 3 * dim);
  });

  it.each([1, 7, 577])('dim %i, in place', async (dim) => {
    await run(4, dim, dim, dim, true, 5 * dim);
    await run(3, dim, dim + 3, dim + 3, true, 6 * dim);
  });

  it('tiny and large magnitudes (eps matters for the tiny ones)', async () => {
    await run(2, 96, 96, 100, false, 11, -1e-3, 1e-3, 1e-6);
    await run(2, 96, 96, 100, false, 12, -1e3, 1e3, 1e-6);
    await run(2, 33, 40, 33, false, 13, -1e-4, 1e-4, 1e-5);
  });

  it('rows = 0 writes nothing', async () => {
    const k = await kernelsFor(build);
    const y = put(k, new Float32Array(GUARD).fill(SENTINEL));
    const x = put(k, new Float32Array(8).fill(1));
    k.kernels.rmsnorm(x, 8, x, y, 8, 0, 8, 1e-6);
    expect(Array.from(k.heap.f32(y, GUARD))).toEqual(new Array(GUARD).fill(SENTINEL));
  });
});
