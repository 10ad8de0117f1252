import { describe, expect, it } from 'vitest';
import { BUILDS, expectClose, kernelsFor, put, randomF32, rng } from '../helpers.js';
import { silu } from '../reference/ops.js';

const SENTINEL = -12345.5;
const GUARD = 16;
const SIZES = [1, 3, 7, 64, 577, 4097];
const FLT_MIN = 2 ** -126;

type K = Awaited<ReturnType<typeof kernelsFor>>;
function guarded(k: K, data: ArrayLike<number>): number {
  const buf = new Float32Array(data.length + GUARD).fill(SENTINEL);
  buf.set(data);
  return put(k, buf);
}
function expectGuard(k: K, ptr: number, n: number, what: string) {
  const g = k.heap.f32(ptr + n * 4, GUARD);
  for (let i = 0; i < GUARD; i++) expect(g[i], `${what}: sentinel ${i} after the buffer`).toBe(SENTINEL);
}

describe.each(BUILDS)('swiglu (%s build)', (build) => {
  // gate/up values: mostly moderate, plus the ends where exp(−g) overflows or vanishes.
  function gateUp(rows: number, n: number, seed: number): Float32Array {
    const r = rng(seed);
    const specials = [0, -0, 1e-30, -1e-30, 20, -20, 88, -88, 88.8, -88.8, 90, -90, 104, -104, 200, -200, 1e30, -1e30];
    const a = new Float32Array(rows * 2 * n);
    for (let i = 0; i < a.length; i++) a[i] = r(-12, 12);
    for (let i = 0; i < rows * n; i += 5) {
      const row = Math.floor(i / n), col = i % n;
      a[row * 2 * n + col] = specials[(i / 5) % specials.length];
    }
    return a;
  }

  async function run(rows: number, n: number, ldgu: number, ldo: number, inPlace: boolean, seed: number) {
    const k = await kernelsFor(build);
    const dense = gateUp(rows, n, seed);
    const gu = new Float32Array(rows * ldgu).fill(SENTINEL);
    for (let r = 0; r < rows; r++) gu.set(dense.subarray(r * 2 * n, (r + 1) * 2 * n), r * ldgu);
    const guPtr = guarded(k, gu);
    const outLen = rows * ldo;
    const outPtr = inPlace ? guPtr : guarded(k, new Float32Array(outLen).fill(SENTINEL));
    k.kernels.swiglu(guPtr, ldgu, outPtr, ldo, rows, n);
    const got = new Float32Array(rows * n), expected = new Float64Array(rows * n);
    const out = k.heap.f32(outPtr, outLen + GUARD);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < n; i++) {
        got[r * n + i] = out[r * ldo + i];
        expected[r * n + i] = silu(dense[r * 2 * n + i]) * dense[r * 2 * n + n + i];
      }
    }
    // silu(g)·u: exp (≈1 ulp), 1 + e, a product, a division and a product. The atol (FLT_MIN) only
    // covers results in f32's subnormal range (g ≲ −87), where f32 has no relative precision.
    expectClose(got, expected, 2e-6, FLT_MIN, `rows ${rows} n ${n}`);
    expect(got.every((x) => Number.isFinite(x)), 'no NaN/inf').toBe(true);
    if (!inPlace) {
      for (let r = 0; r < rows; r++) for (let i = n; i < ldo; i++) expect(out[r * ldo + i]).toBe(SENTINEL);
      expectGuard(k, outPtr, outLen, 'out');
      // The input is left alone.
      expect(Array.from(k.heap.f32(guPtr, gu.length))).toEqual(Array.from(gu));
    } else {
      // In place: only the first n of each row are written; the up half and the gaps keep their values.
      for (let r = 0; r < rows; r++) for (let i = n; i < ldgu; i++) expect(out[r * ldgu + i]).toBe(gu[r * ldgu + i]);
    }
    expectGuard(k, guPtr, gu.length, 'gu');
  }

  it.each(SIZES)('n %i, dense rows', async (n) => {
    await run(1, n, 2 * n, n, false, n);
    await run(3, n, 2 * n, n, false, n + 1);
  });
  it.each(SIZES)('n %i, strides larger than rows', async (n) => {
    await run(3, n, 2 * n + 3, n + 5, false, n + 2);
  });
  it.each(SIZES)('n %i, in place (out = gu)', async (n) => {
    await run(3, n, 2 * n, 2 * n, true, n + 3);
    await run(2, n, 2 * n + 1, 2 * n + 1, true, n + 4);
  });
  it('compact output over its own input (out = gu, ldo = n, ldgu = 2n)', async () => {
    const k = await kernelsFor(build);
    const rows = 5, n = 13;
    const dense = gateUp(rows, n, 77);
    const ptr = guarded(k, dense);
    k.kernels.swiglu(ptr, 2 * n, ptr, n, rows, n);
    const got = k.heap.f32(ptr, rows * n).slice();
    const expected = new Float64Array(rows * n);
    for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) expected[r * n + i] = silu(dense[r * 2 * n + i]) * dense[r * 2 * n + n + i];
    expectClose(got, expected, 2e-6, FLT_MIN, 'compact');
    expectGuard(k, ptr, dense.length, 'gu');
  });
});

describe.each(BUILDS)('add, axpy, embed (%s build)', (build) => {
  it.each(SIZES)('add, n %i', async (n) => {
    const k = await kernelsFor(build);
    const a = randomF32(n, n, -3, 3), b = randomF32(n, n + 1, -3, 3);
    const aPtr = guarded(k, a), bPtr = guarded(k, b);
    k.kernels.add(aPtr, bPtr, n);
    // One f32 rounding of the exact sum.
    const expected = Array.from(a, (x, i) => Math.fround(x + b[i]));
    expect(Array.from(k.heap.f32(aPtr, n))).toEqual(expected);
    expectGuard(k, aPtr, n, 'a');
    expect(Array.from(k.heap.f32(bPtr, n))).toEqual(Array.from(b));
  });

  it('add of a buffer to itself doubles it', async () => {
    const k = await kernelsFor(build);
    const a = randomF32(37, 5);
    const p = guarded(k, a);
    k.kernels.add(p, p, 37);
    expect(Array.from(k.heap.f32(p, 37))).toEqual(Array.from(a, (x) => 2 * x));
    expectGuard(k, p, 37, 'a');
  });

  it.each(SIZES)('axpy, n %i', async (n) => {
    const k = await kernelsFor(build);
    const y = randomF32(n, 2 * n, -3, 3), x = randomF32(n, 2 * n + 1, -3, 3);
    for (const alpha of [0.3125, -1.7, 0]) {
      const yPtr = guarded(k, y), xPtr = guarded(k, x);
      k.kernels.axpy(yPtr, xPtr, alpha, n);
      const a32 = Math.fround(alpha);
      const expected = Array.from(y, (v, i) => v + a32 * x[i]);
      // Fused or not: at most two roundings; near-cancellation needs an atol of a few ulps of 3.
      expectClose(k.heap.f32(yPtr, n), expected, 1.2e-7 * 2, 1e-6, `alpha ${alpha}`);
      expectGuard(k, yPtr, n, 'y');
    }
  });

  it.each([[1, 1, 1], [7, 3, 5], [64, 50, 12], [577, 100, 9], [4097, 5, 3]])('embed, dim %i, vocab %i, count %i',
    async (dim, vocab, count) => {
      const k = await kernelsFor(build);
      const table = randomF32(vocab * dim, dim * 3);
      const r = rng(dim);
      const ids = new Int32Array(count);
      for (let t = 0; t < count; t++) ids[t] = t === 0 ? vocab - 1 : t === 1 ? 0 : Math.floor(r(0, vocab));
      if (count > 2) ids[2] = ids[0]; // a repeated id
      const tPtr = put(k, table);
      const idPtr = k.heap.alloc(count * 4);
      k.heap.i32(idPtr, count).set(ids);
      const outPtr = guarded(k, new Float32Array(count * dim));
      k.kernels.embed(tPtr, dim, idPtr, count, outPtr);
      const out = k.heap.f32(outPtr, count * dim);
      for (let t = 0; t < count; t++) {
        expect(Array.from(out.subarray(t * dim, (t + 1) * dim)), `row ${t}`)
          .toEqual(Array.from(table.subarray(ids[t] * dim, (ids[t] + 1) * dim)));
      }
      expectGuard(k, outPtr, count * dim, 'out');
    });
});

describe.each(BUILDS)('first_nonfinite (%s build)', (build) => {
  it.each(SIZES)('finds the first NaN, +inf or −inf wherever it is, n %i', async (n) => {
    const k = await kernelsFor(build);
    // Large but finite values (and the largest float, and −0) are not flagged; the float just past n is never read.
    const x = randomF32(n, n + 7, -3e38, 3e38);
    x[0] = 3.4028234663852886e38;
    if (n > 1) x[n - 1] = -0;
    const p = put(k, [...x, NaN]);
    expect(k.kernels.first_nonfinite(p, n)).toBe(-1);
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const at of new Set([0, n >> 1, n - 1, Math.max(0, n - 5)])) {
        const y = k.heap.f32(p, n);
        y[at] = bad;
        if (at + 3 < n) y[at + 3] = -bad; // a later one does not count
        expect(k.kernels.first_nonfinite(p, n), `${bad} at ${at}`).toBe(at);
        y.set(x);
      }
    }
    expect(k.kernels.first_nonfinite(p, 0)).toBe(-1);
  });
});
