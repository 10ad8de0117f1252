// qgemm_q8 / qgemm_q4 (assembly/qgemm.ts) in both builds against a float64 reference on the same
// quantised values (weights by quantize_q8_rows / quantize_q4_rows, activations by
// quantize_q8_act), on awkward shapes: m = 1 (a lone edge row) to 600 with odd counts, k = 32
// (one block), 96, 2048, n odd and below one panel; ldc wider than n with sentinels around C.
// Then a split of the columns at multiples of qgemm_split_cols (what threads run) must give the
// one-call bits.
//
// Tolerance, a rounding-error bound (u = 2⁻²⁴, γ_D = D·u / (1 − D·u)): each block's integer dot
// is exact (|Σ| ≤ 32·127² < 2²⁴, so its f32 is exact too); d_w·d_x rounds once, its product with
// the block sum once (not at all when fused), and the running sum once per block: D = nb + 2 over
// the terms' Σ_b |d_w·d_x|·Σ_j |q_w·q_x|.
import { describe, expect, it } from 'vitest';
import { BUILDS, kernelsFor, randomF32 } from '../helpers.js';
import type { LoadedKernels } from '../../src/host/load.js';

const U = 2 ** -24;
const SENTINEL = -12345.5;
const gamma = (d: number) => (d * U) / (1 - d * U);

type Quant = 'q8' | 'q4';

interface Problem { aq: number; ad: number; wq: number; wd: number; q: Int8Array; dw: Float32Array; x: Int8Array; dx: Float32Array; free(): void }

/** m activation rows and n weight rows of k, quantised by the kernels; codes read back (q4 as 0..15). */
function problem(k: LoadedKernels, fmt: Quant, m: number, n: number, kk: number, seed: number): Problem {
  const K = k.kernels, nb = kk / 32, heap = k.heap;
  const w = randomF32(n * kk, seed, -1, 1);
  if (n * kk >= 64) w.fill(0, 32, 64); // a zero block: d = 0
  const x = randomF32(m * kk, seed + 1, -3, 3);
  if (m * kk >= 96) { x.fill(0, 0, 32); for (let j = 64; j < 96; j++) x[j] *= 10 ** ((j % 7) - 3); }
  const wBytes = fmt === 'q8' ? n * kk : n * kk / 2;
  const wf = heap.alloc(w.length * 4), xf = heap.alloc(x.length * 4);
  heap.f32(wf, w.length).set(w); heap.f32(xf, x.length).set(x);
  const wq = heap.alloc(wBytes), wd = heap.alloc(n * nb * 4), aq = heap.alloc(m * kk), ad = heap.alloc(m * nb * 4);
  (fmt === 'q8' ? K.quantize_q8_rows : K.quantize_q4_rows)(wf, kk, n, kk, wq, wd);
  for (let i = 0; i < m; i++) K.quantize_q8_act(xf + i * kk * 4, kk, aq + i * kk, ad + i * nb * 4);
  heap.release(xf, x.length * 4); heap.release(wf, w.length * 4);
  const buf = heap.memory.buffer;
  const q = new Int8Array(n * kk);
  if (fmt === 'q8') q.set(new Int8Array(buf, wq, wBytes));
  else {
    const b = new Uint8Array(buf, wq, wBytes);
    for (let blk = 0; blk < n * nb; blk++) {
      for (let j = 0; j < 16; j++) { q[blk * 32 + j] = (b[blk * 16 + j] & 15) - 8; q[blk * 32 + j + 16] = (b[blk * 16 + j] >> 4) - 8; }
    }
  }
  return {
    aq, ad, wq, wd, q, dw: heap.f32(wd, n * nb).slice(), x: new Int8Array(buf, aq, m * kk).slice(), dx: heap.f32(ad, m * nb).slice(),
    free() { heap.release(ad, m * nb * 4); heap.release(aq, m * kk); heap.release(wd, n * nb * 4); heap.release(wq, wBytes); },
  };
}

/** C of m rows (stride ldc) with guard floats around it, all sentinels. */
function output(k: LoadedKernels, m: number, ldc: number) {
  const guard = 8, total = m * ldc + 2 * guard, base = k.heap.alloc(total * 4);
  k.heap.f32(base, total).fill(SENTINEL);
  return { base, total, ptr: base + guard * 4, guard };
}

function run(k: LoadedKernels, fmt: Quant, p: Problem, c: number, ldc: number, m: number, kk: number, n0: number, n1: number, pack: number): void {
  const nb = kk / 32, wRow = fmt === 'q8' ? kk : kk / 2;
  (fmt === 'q8' ? k.kernels.qgemm_q8 : k.kernels.qgemm_q4)(p.aq, p.ad, p.wq + n0 * wRow, p.wd + n0 * nb * 4, c + n0 * 4, ldc, m, kk, n1 - n0, pack);
}

function check(k: LoadedKernels, fmt: Quant, m: number, n: number, kk: number, seed: number): void {
  const top = k.heap.usedBytes, nb = kk / 32, ldc = n + 5;
  const p = problem(k, fmt, m, n, kk, seed);
  const packBytes = k.kernels.qgemm_pack_bytes(kk);
  const pack = k.heap.alloc(packBytes);
  const out = output(k, m, ldc);
  run(k, fmt, p, out.ptr, ldc, m, kk, 0, n, pack);
  const what = `qgemm_${fmt} m=${m} n=${n} k=${kk}`;
  const all = k.heap.f32(out.base, out.total).slice();
  for (let t = 0; t < out.total; t++) {
    const e = t - out.guard, inside = e >= 0 && e < m * ldc && e % ldc < n;
    if (!inside && all[t] !== SENTINEL) expect.fail(`${what}: float ${e} outside C was overwritten (${all[t]})`);
  }
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, sa = 0;
      for (let b = 0; b < nb; b++) {
        const scale = p.dw[j * nb + b] * p.dx[i * nb + b];
        let dot = 0, dotAbs = 0;
        for (let t = b * 32; t < b * 32 + 32; t++) { const v = p.q[j * kk + t] * p.x[i * kk + t]; dot += v; dotAbs += Math.abs(v); }
        s += scale * dot; sa += Math.abs(scale) * dotAbs;
      }
      const got = all[out.guard + i * ldc + j], tol = gamma(nb + 2) * sa;
      if (!(Math.abs(got - s) <= tol)) expect.fail(`${what}: C[${i}, ${j}] is ${got}, expected ${s} ± ${tol}`);
    }
  }
  // Columns split at multiples of the split unit (as the threads run them): the same bits.
  const unit = k.kernels.qgemm_split_cols();
  if (n > unit) {
    const split = output(k, m, ldc);
    const cut = unit * Math.max(1, Math.floor(n / unit / 2));
    run(k, fmt, p, split.ptr, ldc, m, kk, cut, n, pack);
    run(k, fmt, p, split.ptr, ldc, m, kk, 0, cut, pack);
    const a = new Uint32Array(all.buffer), b = new Uint32Array(k.heap.memory.buffer, split.base, split.total);
    for (let t = 0; t < out.total; t++) if (a[t] !== b[t]) expect.fail(`${what}: split at column ${cut} changed float ${t - out.guard}`);
    k.heap.release(split.base, split.total * 4);
  }
  k.heap.release(out.base, out.total * 4);
  k.heap.release(pack, packBytes);
  p.free();
  expect(k.heap.usedBytes).toBe(top);
}

const M = [1, 2, 3, 7, 10, 17, 64, 65, 512, 600];
const KS = [32, 96, 2048];
const N = [1, 7, 9, 13, 23, 31];

describe.each(BUILDS)('qgemm, %s build', (build) => {
  for (const fmt of ['q8', 'q4'] as Quant[]) {
    it(`${fmt}: every m × k, n odd, against float64 on the quantised values`, async () => {
      const k = await kernelsFor(build);
      let seed = 1;
      for (const m of M) {
        for (const kk of KS) {
          const n = N[seed % N.length];
          // Keep the float64 reference quick: the largest m run with the smaller n.
          check(k, fmt, m, m * kk > 200_000 ? Math.min(n, 13) : n, kk, seed++);
        }
      }
    });
  }

  it('does nothing for m = 0, n = 0 or k < 32', async () => {
    const k = await kernelsFor(build);
    const out = output(k, 2, 4);
    k.kernels.qgemm_q8(0, 0, 0, 0, out.ptr, 4, 0, 32, 4, 0);
    k.kernels.qgemm_q4(0, 0, 0, 0, out.ptr, 4, 2, 32, 0, 0);
    k.kernels.qgemm_q8(0, 0, 0, 0, out.ptr, 4, 2, 0, 4, 0);
    expect(k.heap.f32(out.base, out.total).every((v) => v === SENTINEL)).toBe(true);
    k.heap.release(out.base, out.total * 4);
  });
});
