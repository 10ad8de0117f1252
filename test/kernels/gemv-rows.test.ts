// Multi-row GEMV kernels (assembly/gemv-rows.ts) in both builds against float64 references, for
// f32 and bf16 weights, on awkward shapes: rows 1, 2, 3, 5, 6, 7, 8, 9, 16 (whole tiles of 4 and
// every partial group), n = 1, odd, and enough rows to pair them 2 MiB apart; k = 1, 3, not a
// multiple of 4, 96 and 4096 + 32; strides wider than the rows (padded with
// NaN) and sentinels around every output; with and without `acc`. Then: a row's result does not
// depend on the rows beside it (the same bits as a call for that row alone), and Ops.linear over
// these kernels, split across 2 threads by weight rows (f32 in column panels too), gives the bits
// of one thread.
//
// Tolerances are rounding-error bounds (u = 2⁻²⁴), not fitted: |fl(Σ t) − Σ t| ≤ γ_D · Σ|t|,
// γ_D = D·u / (1 − D·u).
//   a term of the vector loop: its product (1 rounding, 0 when fused), ⌊k/4⌋ adds in its lane, 3
//   in the lane sum, 1 adding the tail's sum; a tail term: its product, 2 adds in the tail's sum, 1:
//   D = ⌊k/4⌋ + 5; bf16 widening is exact. With acc, y's earlier contents are added before the tail:
//   one more rounding for every term, γ_{D+1}·(Σ|t| + |y_old|).
import { describe, expect, it } from 'vitest';
import { loadKernels, type LoadedKernels } from '../../src/host/load.js';
import { Ops } from '../../src/model/ops.js';
import type { Matrix, MatrixFormat } from '../../src/model/weights.js';
import { BUILDS, kernelsFor, randomF32, rng } from '../helpers.js';

const U = 2 ** -24;
const SENTINEL = -12345.5;
const gamma = (d: number) => (d * U) / (1 - d * U);
const FORMATS: MatrixFormat[] = ['f32', 'bf16'];
const ROWS = [1, 2, 3, 5, 6, 7, 8, 9, 16];

const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
const bf16Bits = (v: number) => { f32buf[0] = v; return (u32buf[0] + 0x7fff + ((u32buf[0] >>> 16) & 1)) >>> 16; };
const bf16Value = (h: number) => { u32buf[0] = h << 16; return f32buf[0]; };

/** W [n, k] in `fmt` on the heap: its bytes (row stride ldw elements) and exact values. */
interface Weights { ptr: number; bytes: number; ldw: number; val: Float64Array }

function placeWeights(k: LoadedKernels, fmt: MatrixFormat, n: number, kk: number, seed: number, padded = true): Weights {
  const heap = k.heap, r = rng(seed), val = new Float64Array(n * kk);
  const ldw = !padded ? kk : fmt === 'f32' ? kk + 3 : kk + 5; // Ops reads contiguous rows
  const size = fmt === 'f32' ? 4 : 2, bytes = Math.max(1, (n - 1) * ldw + kk) * size;
  const ptr = heap.alloc(bytes);
  const f = heap.f32(ptr, fmt === 'f32' ? bytes / 4 : 0), h = new Uint16Array(heap.memory.buffer, ptr, bytes / 2);
  (fmt === 'f32' ? f : h).fill(fmt === 'f32' ? NaN : 0x7fc0);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < kk; j++) {
      let v = r(-2, 2);
      if (fmt === 'f32') { f[i * ldw + j] = v; v = f[i * ldw + j]; }
      else { h[i * ldw + j] = bf16Bits(v); v = bf16Value(h[i * ldw + j]); }
      val[i * kk + j] = v;
    }
  }
  return { ptr, bytes, ldw, val };
}

/** m activation rows (row stride ldx, padded with NaN). */
interface Acts { ptr: number; ldx: number; val: Float64Array }

function placeActs(k: LoadedKernels, m: number, kk: number, seed: number): Acts {
  const heap = k.heap, ldx = kk + 5, x = randomF32(m * kk, seed, -3, 3);
  if (kk >= 96) for (let j = 64; j < 96; j++) x[j] *= 10 ** ((j % 7) - 3); // a block of very different magnitudes
  const ptr = heap.alloc(m * ldx * 4), X = heap.f32(ptr, m * ldx);
  X.fill(NaN);
  for (let i = 0; i < m; i++) X.set(x.subarray(i * kk, (i + 1) * kk), i * ldx);
  return { ptr, ldx, val: Float64Array.from(x) };
}

/** The kernel of `fmt` on m rows from row0 (ldx 0: row0 m times over): y (row stride ldy) (+)= X · Wᵀ. */
function gemvRows(k: LoadedKernels, fmt: MatrixFormat, a: Acts, w: Weights, y: number, ldy: number, m: number, kk: number, n: number,
                  acc: boolean, row0 = 0, ldx = a.ldx): void {
  const f = fmt === 'f32' ? k.kernels.gemv_rows_f32 : k.kernels.gemv_rows_bf16;
  f(a.ptr + row0 * a.ldx * 4, ldx, w.ptr, w.ldw, y, ldy, m, kk, n, acc);
}

function check(k: LoadedKernels, fmt: MatrixFormat, m: number, n: number, kk: number, seed: number, acc: boolean): void {
  const heap = k.heap, top = heap.usedBytes;
  const w = placeWeights(k, fmt, n, kk, seed), a = placeActs(k, m, kk, seed + 1);
  const ldy = n + 3, guard = 8, total = m * ldy + 2 * guard;
  const base = heap.alloc(total * 4), y = base + guard * 4;
  const earlier = randomF32(m * n, seed + 2, -4, 4);
  heap.f32(base, total).fill(SENTINEL);
  if (acc) for (let i = 0; i < m; i++) heap.f32(y + i * ldy * 4, n).set(earlier.subarray(i * n, (i + 1) * n));
  gemvRows(k, fmt, a, w, y, ldy, m, kk, n, acc);
  const D = Math.floor(kk / 4) + 5 + (acc ? 1 : 0);
  const all = heap.f32(base, total);
  const what = `${fmt} m ${m} n ${n} k ${kk}${acc ? ' acc' : ''}`;
  for (let p = 0; p < total; p++) {
    const q = p - guard, i = Math.floor(q / ldy), j = q - i * ldy;
    if (q < 0 || q >= m * ldy || j >= n) {
      if (all[p] !== SENTINEL) expect.fail(`${what}: float ${q} outside the output was overwritten (${all[p]})`);
      continue;
    }
    let ref = acc ? earlier[i * n + j] : 0, mag = Math.abs(ref);
    for (let t = 0; t < kk; t++) {
      const v = w.val[j * kk + t] * a.val[i * kk + t];
      ref += v; mag += Math.abs(v);
    }
    const err = Math.abs(all[p] - ref);
    if (!(err <= gamma(D) * mag)) expect.fail(`${what}: y[${i}, ${j}] is ${all[p]}, expected ${ref} ± ${gamma(D) * mag}`);
  }
  // Each row alone gives the same bits: no output depends on the tile or the rows beside it. Calls
  // of 1–2 rows have a tile of their own (another summation order), so a row of a call of 3 or
  // more is compared with a call of that row three times over.
  const reps = m <= 2 ? 1 : 3, alone = heap.alloc(reps * n * 4);
  for (let i = 0; i < m; i++) {
    if (acc) for (let r = 0; r < reps; r++) heap.f32(alone + r * n * 4, n).set(earlier.subarray(i * n, (i + 1) * n));
    gemvRows(k, fmt, a, w, alone, n, reps, kk, n, acc, i, reps > 1 ? 0 : a.ldx);
    const got = new Uint32Array(heap.memory.buffer, y + i * ldy * 4, n), one = new Uint32Array(heap.memory.buffer, alone, n);
    for (let j = 0; j < n; j++) if (got[j] !== one[j]) expect.fail(`${what}: row ${i} col ${j} differs from the row alone`);
  }
  heap.release(alone, reps * n * 4);
  heap.release(base, total * 4);
  heap.release(a.ptr, m * a.ldx * 4);
  heap.release(w.ptr, w.bytes);
  expect(heap.usedBytes).toBe(top);
}

describe.each(BUILDS)('gemv_rows, %s build', (build) => {
  it.each(FORMATS)('%s: every row count against float64, small and odd shapes', async (fmt) => {
    const k = await kernelsFor(build);
    const shapes: [number, number][] = [[1, 1], [7, 37], [33, 96], [2, 70], [5, 3], [4, 8]];
    for (const m of ROWS) for (const [n, kk] of shapes) for (const acc of [false, true]) check(k, fmt, m, n, kk, m * 131 + n + kk, acc);
  });

  it.each(FORMATS)('%s: a long row (k = 4096 + 32) and enough rows to pair them 2 MiB apart', async (fmt) => {
    const k = await kernelsFor(build);
    check(k, fmt, 9, 3, 4128, 7, false);
    check(k, fmt, 8, 5, 4128, 8, true);
    // Rows 2 MiB apart at this k: f32 rows of 4 · 4128 bytes, so 2 · 128 rows and the rest; bf16
    // rows (2 · 4099 bytes) 130 apart, 1 MiB. Both tiles.
    if (fmt === 'f32') check(k, fmt, 3, 261, 4096 + 3, 9, false);
    check(k, fmt, 2, 261, 4096 + 3, 10, true);
  });
});

describe.each(BUILDS)('Ops.linear over gemv_rows, %s build', (build) => {
  it('split across 2 threads by weight rows gives the bits of one thread, in every format and with column panels', async () => {
    const par = await loadKernels({ threads: 2, simd: build }), one = await kernelsFor(build);
    for (const fmt of FORMATS) {
      for (const [m, n, kk, panelCols] of [[2, 999, 96, 96], [7, 1001, 128, 128], [16, 517, 64, 64], [9, 301, 130, 48]] as const) {
        if (fmt !== 'f32' && (panelCols < kk || kk % 32)) continue; // bf16 weights: one panel, k a multiple of 32
        const out: Uint32Array[] = [];
        for (const k of [one, par]) {
          const heap = k.heap, top = heap.usedBytes;
          const actBytes = m * (kk + kk / 8);
          const act = heap.alloc(actBytes);
          const ops = new Ops(k.kernels, k.pool, 0, 0, 0, 0, act, actBytes);
          ops.minChunkNs = 0; // split everything
          const a = placeActs(k, m, kk, 3);
          const w = panelCols < kk ? placePanels(k, n, kk, panelCols, 5) : placeWeights(k, fmt, n, kk, 5, false);
          const matrix: Matrix = { ptr: w.ptr, rows: n, cols: kk, panelCols, format: fmt, scales: 0 };
          const y = heap.alloc(m * n * 4);
          ops.linear({ x: { ptr: a.ptr, stride: a.ldx }, w: matrix, y: { ptr: y, stride: n }, rows: m });
          out.push(new Uint32Array(heap.f32(y, m * n).slice().buffer));
          // Within the kernels' bounds (those of the tests above, with one panel add: D = ⌊k/4⌋ + 9 covers every format).
          const got = heap.f32(y, m * n);
          for (let i = 0; i < m; i += m - 1) {
            for (let j = 0; j < n; j += 97) {
              let ref = 0, mag = 0;
              for (let t = 0; t < kk; t++) { const v = w.val[j * kk + t] * a.val[i * kk + t]; ref += v; mag += Math.abs(v); }
              expect(Math.abs(got[i * n + j] - ref), `${fmt} m ${m} y[${i}, ${j}]`).toBeLessThanOrEqual(gamma(Math.floor(kk / 4) + 9) * mag);
            }
          }
          heap.release(y, m * n * 4);
          heap.release(w.ptr, w.bytes);
          heap.release(a.ptr, m * a.ldx * 4);
          heap.release(act, actBytes);
          expect(heap.usedBytes).toBe(top);
        }
        expect(Array.from(out[1]), `${fmt} m ${m} n ${n} k ${kk} panels ${panelCols}: 2 threads`).toEqual(Array.from(out[0]));
      }
    }
    par.pool!.dispose();
  });
});

/** f32 weights in column panels of panelCols (weights.ts Matrix). */
function placePanels(k: LoadedKernels, n: number, kk: number, panelCols: number, seed: number): Weights {
  const val = Float64Array.from(randomF32(n * kk, seed, -2, 2));
  const ptr = k.heap.alloc(n * kk * 4), P = k.heap.f32(ptr, n * kk);
  let at = 0;
  for (let c0 = 0; c0 < kk; c0 += panelCols) {
    const width = Math.min(panelCols, kk - c0);
    for (let i = 0; i < n; i++) for (let j = 0; j < width; j++) P[at++] = val[i * kk + c0 + j];
  }
  return { ptr, bytes: n * kk * 4, ldw: kk, val };
}
