import { describe, expect, it } from 'vitest';
import { BUILDS, expectClose, kernelsFor, put, randomF32 } from '../helpers.js';
import { rope, ropeFreqs } from '../reference/ops.js';

const SENTINEL = -12345.5;
const GUARD = 16;

function guarded(k: Awaited<ReturnType<typeof kernelsFor>>, n: number): number {
  return put(k, new Float32Array(n + GUARD).fill(SENTINEL));
}
function expectGuard(k: Awaited<ReturnType<typeof kernelsFor>>, ptr: number, n: number, what: string) {
  const g = k.heap.f32(ptr + n * 4, GUARD);
  for (let i = 0; i < GUARD; i++) expect(g[i], `${what}: sentinel ${i} after the buffer`).toBe(SENTINEL);
}

describe.each(BUILDS)('rope_table (%s build)', (build) => {
  async function table(half: number, pos0: number, count: number, scale: number, theta = 10000) {
    const k = await kernelsFor(build);
    const freqs = Float32Array.from(ropeFreqs(2 * half, theta));
    const fPtr = put(k, freqs);
    const cPtr = guarded(k, count * half), sPtr = guarded(k, count * half);
    k.kernels.rope_table(fPtr, half, pos0, count, scale, cPtr, sPtr);
    const cos = k.heap.f32(cPtr, count * half).slice(), sin = k.heap.f32(sPtr, count * half).slice();
    expectGuard(k, cPtr, count * half, 'cos');
    expectGuard(k, sPtr, count * half, 'sin');
    return { freqs, cos, sin };
  }

  it.each([
    [1, 0, 1, 1], [3, 0, 5, 1], [32, 0, 4, 1], [37, 1, 3, 0.75], [32, 100000, 3, 1], [32, 99997, 9, 1.3],
    [64, 4095, 2, 1], [8, (1 << 24) + 5, 2, 1],
  ])('half %i, pos0 %i, count %i, scale %f', async (half, pos0, count, scale) => {
    const { freqs, cos, sin } = await table(half, pos0, count, scale);
    const ec = new Float64Array(count * half), es = new Float64Array(count * half);
    for (let t = 0; t < count; t++) {
      for (let j = 0; j < half; j++) {
        // The angle is rounded to f32 (DeepSeek's / Hugging Face's convention), then cos/sin exactly.
        const angle = Math.fround(Math.fround(pos0 + t) * freqs[j]);
        ec[t * half + j] = Math.cos(angle) * scale;
        es[t * half + j] = Math.sin(angle) * scale;
      }
    }
    // f64 evaluation rounded once to f32: within an f32 ulp of the exact value.
    expectClose(cos, ec, 1.2e-7, 1e-30, 'cos');
    expectClose(sin, es, 1.2e-7, 1e-30, 'sin');
  });

  it('position 0 gives cos = scale, sin = 0', async () => {
    const { cos, sin } = await table(16, 0, 1, 0.5);
    expect(Array.from(cos)).toEqual(new Array(16).fill(0.5));
    expect(Array.from(sin)).toEqual(new Array(16).fill(0));
  });

  it('uses the f32-rounded angle, not the exact one, at large positions', async () => {
    const pos = 100000;
    const { freqs, cos } = await table(32, pos, 1, 1);
    let differs = 0;
    for (let j = 0; j < 32; j++) {
      const exact = Math.cos(pos * freqs[j]);
      const f32angle = Math.cos(Math.fround(Math.fround(pos) * freqs[j]));
      if (Math.abs(exact - f32angle) > 1e-4) {
        differs++;
        expect(Math.abs(cos[j] - f32angle)).toBeLessThan(1e-6);
      }
    }
    expect(differs).toBeGreaterThan(0); // the two conventions really differ here
  });
});

describe.each(BUILDS)('rope_apply (%s build)', (build) => {
  async function apply(opts: { half: number; rows: number; heads: number; headStride: number; rowStride: number;
                               pos0: number; scale: number; halfSplit: boolean; seed: number }) {
    const { half, rows, heads, headStride, rowStride, pos0, scale, halfSplit, seed } = opts;
    const dim = 2 * half;
    const k = await kernelsFor(build);
    const freqs = Float32Array.from(ropeFreqs(dim, 10000));
    const fPtr = put(k, freqs);
    const cPtr = guarded(k, rows * half), sPtr = guarded(k, rows * half);
    k.kernels.rope_table(fPtr, half, pos0, rows, scale, cPtr, sPtr);
    const len = rows * rowStride;
    // Fill the whole strided buffer with sentinels, then the rotated vectors with data.
    const buf = new Float32Array(len + GUARD).fill(SENTINEL);
    const data = randomF32(rows * heads * dim, seed);
    for (let t = 0; t < rows; t++) {
      for (let h = 0; h < heads; h++) {
        buf.set(data.subarray((t * heads + h) * dim, (t * heads + h + 1) * dim), t * rowStride + h * headStride);
      }
    }
    const xPtr = put(k, buf);
    k.kernels.rope_apply(xPtr, rows, rowStride, heads, headStride, dim, cPtr, sPtr, halfSplit ? 1 : 0);
    const out = k.heap.f32(xPtr, len + GUARD).slice();
    const expected = Float64Array.from(buf);
    const inside = new Uint8Array(len + GUARD);
    for (let t = 0; t < rows; t++) {
      for (let h = 0; h < heads; h++) {
        const off = t * rowStride + h * headStride;
        rope(expected, off, pos0 + t, freqs, halfSplit, scale);
        inside.fill(1, off, off + dim);
      }
    }
    // |x| ≤ 1: each output is a·c ± b·s, so the error is a few f32 ulps of scale.
    expectClose(out, expected, 1e-5, 1e-6 * scale, `half ${half} heads ${heads}`);
    for (let i = 0; i < len + GUARD; i++) if (!inside[i]) expect(out[i], `untouched element ${i}`).toBe(SENTINEL);
  }

  for (const halfSplit of [false, true]) {
    const conv = halfSplit ? 'half split (Llama)' : 'adjacent pairs (DeepSeek)';
    it.each([
      // half, rows, heads, headStride, rowStride, pos0, scale
      [1, 1, 1, 2, 2, 0, 1],
      [1, 3, 2, 3, 7, 1, 1],
      [3, 2, 3, 7, 25, 5, 1],
      [32, 1, 16, 64, 1024, 100000, 1],
      [32, 4, 16, 64, 1030, 7, 1.25],
      [32, 3, 1, 64, 64, 0, 1],
      [37, 3, 5, 80, 411, 99990, 0.8],
      [4, 2, 128, 8, 1024, 3, 1],
      [64, 2, 3, 192, 600, 123, 1],
    ])(`${conv}: half %i, rows %i, heads %i, headStride %i, rowStride %i, pos0 %i, scale %f`,
      async (half, rows, heads, headStride, rowStride, pos0, scale) => {
        await apply({ half, rows, heads, headStride, rowStride, pos0, scale, halfSplit, seed: half * 31 + rows });
      });
  }

  it('the two conventions differ (a mixed-up flag would fail the tests above)', async () => {
    const k = await kernelsFor(build);
    const half = 4, dim = 8;
    const freqs = Float32Array.from(ropeFreqs(dim, 10000));
    const cPtr = guarded(k, half), sPtr = guarded(k, half);
    k.kernels.rope_table(put(k, freqs), half, 3, 1, 1, cPtr, sPtr);
    const x = randomF32(dim, 9);
    const a = put(k, x), b = put(k, x);
    k.kernels.rope_apply(a, 1, dim, 1, dim, dim, cPtr, sPtr, 0);
    k.kernels.rope_apply(b, 1, dim, 1, dim, dim, cPtr, sPtr, 1);
    expect(Array.from(k.heap.f32(a, dim))).not.toEqual(Array.from(k.heap.f32(b, dim)));
  });
});
