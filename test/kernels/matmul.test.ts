// matmul_nt, matmul_nn, matvec, vecmat and the probes, in both builds, against the float64
// reference on awkward shapes: every tile edge (m % MR, n % NR, k of any size), blocks larger
// than the cache blocking (k > KC, n > NC, m > MC), strides wider than the rows, and sentinels
// around every output and the packing scratch to catch a write out of bounds. With `acc` each
// adds its product into the output's earlier contents (random here), on the same shapes.
import { describe, expect, it } from 'vitest';
import { BUILDS, expectClose, kernelsFor, randomF32 } from '../helpers.js';
import { matmulNN, matmulNT } from '../reference/ops.js';
import type { LoadedKernels } from '../../src/host/load.js';

const SENTINEL = -12345.5;
const SIZES = [1, 3, 7, 8, 9, 17, 33, 64, 65, 130];
// Tile edges of both builds' kernels: NT up to 64 rows runs dot tiles (2×4 plain, 3×3 relaxed),
// NN and NT beyond 64 rows the packed micro-kernel (4×8 plain, 3×12 relaxed).
const TILE_M = [4, 5, 6, 7, 64, 65, 66, 67];
const TILE_N = [4, 11, 12, 13, 23, 24, 25];
const LARGE: [number, number, number][] = [
  [200, 300, 257],   // m > MC, k > KC, n odd
  [128, 512, 512],   // a prefill-like shape
  [133, 700, 1030],  // n > NC (two column blocks, the second ragged), k three blocks
  [241, 260, 1013],  // m > 2·MC, n > 2·NC with a ragged last panel, k just over KC
  [61, 4099, 29],    // NT dot tiles: k in three blocks of KD with a tail of 3
  [64, 2100, 300],   // NT dot tiles at the most rows they take
];

/** Matrix `rows × cols` stored with row stride `ld ≥ cols`; the padding holds NaN so a read of it shows. */
function strided(data: Float32Array, rows: number, cols: number, ld: number): Float32Array {
  const out = new Float32Array(Math.max(0, (rows - 1) * ld + cols)).fill(NaN);
  for (let i = 0; i < rows; i++) out.set(data.subarray(i * cols, (i + 1) * cols), i * ld);
  return out;
}

/** A block of `len` floats with `guard` sentinel floats on both sides; returns the inner offset. */
function guarded(k: LoadedKernels, len: number, guard: number): { ptr: number; base: number; total: number } {
  const total = len + 2 * guard;
  const base = k.heap.alloc(total * 4);
  k.heap.f32(base, total).fill(SENTINEL);
  return { ptr: base + guard * 4, base, total };
}

function putArray(k: LoadedKernels, data: Float32Array): number {
  const ptr = k.heap.alloc(Math.max(1, data.length) * 4);
  k.heap.f32(ptr, data.length).set(data);
  return ptr;
}

function expectSentinels(view: Float32Array, isOutput: (i: number) => boolean, what: string): void {
  for (let i = 0; i < view.length; i++) {
    if (isOutput(i)) continue;
    if (view[i] !== SENTINEL) expect.fail(`${what}: float ${i} outside the output was overwritten (${view[i]})`);
  }
}

type Op = 'nt' | 'nn';

/** ref + the earlier contents when the kernel adds into its output, else ref. */
function withEarlier(ref: Float32Array, earlier: Float32Array | null): Float32Array {
  return earlier ? ref.map((v, i) => v + earlier[i]) : ref;
}

function checkMatmul(k: LoadedKernels, op: Op, m: number, kk: number, n: number, pad: boolean, seed: number, acc = false): void {
  const lda = pad ? kk + 5 : kk;
  const bRows = op === 'nt' ? n : kk, bCols = op === 'nt' ? kk : n;
  const ldb = pad ? bCols + 3 : bCols;
  const ldc = pad ? n + 7 : n;
  const a = randomF32(m * kk, seed);
  const b = randomF32(bRows * bCols, seed + 1);
  const earlier = acc ? randomF32(m * n, seed + 2) : null;
  const ref = withEarlier(op === 'nt' ? matmulNT(a, b, m, kk, n) : matmulNN(a, b, m, kk, n), earlier);

  const heapTop = k.heap.usedBytes;
  const aPtr = putArray(k, strided(a, m, kk, lda));
  const bPtr = putArray(k, strided(b, bRows, bCols, ldb));
  // C: one guard row above and below, and the stride's padding, all sentinels.
  const cLen = m * ldc;
  const cBlk = guarded(k, cLen, ldc);
  if (earlier) for (let i = 0; i < m; i++) k.heap.f32(cBlk.ptr + i * ldc * 4, n).set(earlier.subarray(i * n, (i + 1) * n));
  const packBytes = k.kernels.matmul_pack_bytes(kk, n);
  expect(packBytes % 4).toBe(0);
  const pBlk = guarded(k, packBytes / 4, 16);

  const f = op === 'nt' ? k.kernels.matmul_nt : k.kernels.matmul_nn;
  f(aPtr, lda, bPtr, ldb, cBlk.ptr, ldc, m, kk, n, pBlk.ptr, acc);

  const all = k.heap.f32(cBlk.base, cBlk.total);
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++) c.set(all.subarray(ldc + i * ldc, ldc + i * ldc + n), i * n);
  const what = `${op} ${m}×${kk}×${n}${pad ? ' strided' : ''}${acc ? ' acc' : ''}`;
  expectClose(c, ref, 1e-5, 1e-5 * Math.sqrt(kk), what);
  expectSentinels(all, (i) => i >= ldc && i < ldc + cLen && (i - ldc) % ldc < n, `${what} C`);
  const pk = k.heap.f32(pBlk.base, pBlk.total);
  expectSentinels(pk, (i) => i >= 16 && i < 16 + packBytes / 4, `${what} pack scratch`);

  k.heap.release(pBlk.base, pBlk.total * 4);
  k.heap.release(cBlk.base, cBlk.total * 4);
  k.heap.release(bPtr, Math.max(1, (bRows - 1) * ldb + bCols) * 4);
  k.heap.release(aPtr, Math.max(1, (m - 1) * lda + kk) * 4);
  expect(k.heap.usedBytes).toBe(heapTop);
}

function checkMatvec(k: LoadedKernels, n: number, kk: number, seed: number, acc = false): void {
  const ldw = kk + 3;
  const w = randomF32(n * kk, seed), x = randomF32(kk, seed + 1);
  const earlier = acc ? randomF32(n, seed + 2) : null;
  const ref = withEarlier(matmulNT(x, w, 1, kk, n), earlier);
  const wPtr = putArray(k, strided(w, n, kk, ldw));
  const xPtr = putArray(k, x);
  const yBlk = guarded(k, n, 8);
  if (earlier) k.heap.f32(yBlk.ptr, n).set(earlier);
  k.kernels.matvec(wPtr, ldw, xPtr, yBlk.ptr, n, kk, acc);
  const all = k.heap.f32(yBlk.base, yBlk.total);
  const what = `matvec ${n}×${kk}${acc ? ' acc' : ''}`;
  expectClose(all.slice(8, 8 + n), ref, 1e-5, 1e-5 * Math.sqrt(kk), what);
  expectSentinels(all, (i) => i >= 8 && i < 8 + n, what);
  k.heap.release(yBlk.base, yBlk.total * 4);
  k.heap.release(xPtr, Math.max(1, kk) * 4);
  k.heap.release(wPtr, Math.max(1, (n - 1) * ldw + kk) * 4);
}

function checkVecmat(k: LoadedKernels, kk: number, n: number, seed: number, acc = false): void {
  const ldw = n + 3;
  const w = randomF32(kk * n, seed), x = randomF32(kk, seed + 1);
  const earlier = acc ? randomF32(n, seed + 2) : null;
  const ref = withEarlier(matmulNN(x, w, 1, kk, n), earlier);
  const wPtr = putArray(k, strided(w, kk, n, ldw));
  const xPtr = putArray(k, x);
  const yBlk = guarded(k, n, 8);
  if (earlier) k.heap.f32(yBlk.ptr, n).set(earlier);
  k.kernels.vecmat(xPtr, wPtr, ldw, yBlk.ptr, kk, n, acc);
  const all = k.heap.f32(yBlk.base, yBlk.total);
  const what = `vecmat ${kk}×${n}${acc ? ' acc' : ''}`;
  expectClose(all.slice(8, 8 + n), ref, 1e-5, 1e-5 * Math.sqrt(kk), what);
  expectSentinels(all, (i) => i >= 8 && i < 8 + n, what);
  k.heap.release(yBlk.base, yBlk.total * 4);
  k.heap.release(xPtr, Math.max(1, kk) * 4);
  k.heap.release(wPtr, Math.max(1, (kk - 1) * ldw + n) * 4);
}

/**
 * matvec_batch (nt: item j is W_j [n, k] · x_j) or vecmat_batch (nn: x_j · W_j [k, n]) over items
 * i < count and, with far > 0, i + far, W items `wInc` bytes apart (the gap NaN), and y items with
 * sentinels between them: every item against the reference, nothing else written. Returns each
 * item's y.
 */
function checkBatch(k: LoadedKernels, op: Op, count: number, far: number, n: number, kk: number, wInc: number,
                    seed: number, acc = false): Map<number, Float32Array> {
  const items = count + far;
  const ld = op === 'nt' ? kk : n, wLen = n * kk;
  const wFloats = wInc / 4, xInc = kk + 5, yInc = n + 6;
  const heapTop = k.heap.usedBytes;
  const wAll = new Float32Array(items * wFloats).fill(NaN);
  const ws: Float32Array[] = [], xs = randomF32(items * xInc, seed + 1);
  for (let j = 0; j < items; j++) {
    ws.push(randomF32(wLen, seed + 10 + j));
    wAll.set(ws[j], j * wFloats);
  }
  const wPtr = putArray(k, wAll), xPtr = putArray(k, xs);
  const yBlk = guarded(k, items * yInc, 8);
  const earlier = randomF32(items * yInc, seed + 2);
  const used = (j: number) => j < count || (far > 0 && j >= far && j < far + count);
  if (acc) for (let j = 0; j < items; j++) if (used(j)) k.heap.f32(yBlk.ptr + j * yInc * 4, n).set(earlier.subarray(j * yInc, j * yInc + n));
  if (op === 'nt') k.kernels.matvec_batch(wPtr, ld, wInc, xPtr, xInc * 4, yBlk.ptr, yInc * 4, n, kk, count, far, acc);
  else k.kernels.vecmat_batch(xPtr, xInc * 4, wPtr, ld, wInc, yBlk.ptr, yInc * 4, kk, n, count, far, acc);
  const all = k.heap.f32(yBlk.base, yBlk.total);
  const out = new Map<number, Float32Array>();
  const what = `${op === 'nt' ? 'matvec' : 'vecmat'}_batch ${count} + ${far} far, ${n}×${kk}, items ${wInc} B apart${acc ? ', acc' : ''}`;
  for (let j = 0; j < items; j++) {
    if (!used(j)) continue;
    const x = xs.subarray(j * xInc, j * xInc + kk);
    const ref = withEarlier(op === 'nt' ? matmulNT(x, ws[j], 1, kk, n) : matmulNN(x, ws[j], 1, kk, n),
      acc ? earlier.subarray(j * yInc, j * yInc + n) : null);
    const y = all.slice(8 + j * yInc, 8 + j * yInc + n);
    expectClose(y, ref, 1e-5, 1e-5 * Math.sqrt(kk), `${what}, item ${j}`);
    out.set(j, y);
  }
  expectSentinels(all, (i) => i >= 8 && used(Math.floor((i - 8) / yInc)) && (i - 8) % yInc < n, what);
  k.heap.release(yBlk.base, yBlk.total * 4);
  k.heap.release(xPtr, xs.length * 4);
  k.heap.release(wPtr, wAll.length * 4);
  expect(k.heap.usedBytes).toBe(heapTop);
  return out;
}

describe.each(BUILDS)('matmul kernels, %s build', (build) => {
  for (const op of ['nt', 'nn'] as Op[]) {
    it(`matmul_${op} on every combination of m, k, n in {${SIZES.join(', ')}}, dense and strided`, async () => {
      const k = await kernelsFor(build);
      let seed = 1;
      for (const m of SIZES) for (const kk of SIZES) for (const n of SIZES) {
        checkMatmul(k, op, m, kk, n, (seed & 1) === 0, seed);
        seed += 2;
      }
    });

    it(`matmul_${op} on every tile edge: m in {${TILE_M.join(', ')}}, n in {${TILE_N.join(', ')}}`, async () => {
      const k = await kernelsFor(build);
      let seed = 3;
      for (const m of TILE_M) for (const n of TILE_N) for (const kk of [1, 5, 19]) {
        checkMatmul(k, op, m, kk, n, (seed & 2) === 0, seed);
        seed += 2;
      }
    });

    it(`matmul_${op} on large shapes crossing the cache blocks`, async () => {
      const k = await kernelsFor(build);
      for (const [m, kk, n] of LARGE) {
        checkMatmul(k, op, m, kk, n, true, m + kk + n);
        checkMatmul(k, op, m, kk, n, false, m * kk + n);
      }
    });

    it(`matmul_${op} with acc adds into C on every path (matvec rows, dot tiles, packed, k blocks)`, async () => {
      const k = await kernelsFor(build);
      let seed = 500;
      for (const [m, kk, n] of [[1, 7, 5], [3, 33, 9], [5, 19, 13], [64, 130, 25], [67, 260, 23], ...LARGE.slice(0, 3)]) {
        checkMatmul(k, op, m, kk, n, (seed & 2) === 0, seed, true);
        seed += 3;
      }
    });

    it(`matmul_${op} with m, n = 0 writes nothing and with k = 0 writes zeros (or, with acc, leaves C)`, async () => {
      const k = await kernelsFor(build);
      const f = op === 'nt' ? k.kernels.matmul_nt : k.kernels.matmul_nn;
      const cBlk = guarded(k, 5 * 6, 6);
      f(0, 1, 0, 1, cBlk.ptr, 6, 0, 4, 6, 0, false);
      f(0, 1, 0, 1, cBlk.ptr, 6, 5, 4, 0, 0, false);
      f(0, 1, 0, 1, cBlk.ptr, 6, 5, 0, 4, 0, true);
      expectSentinels(k.heap.f32(cBlk.base, cBlk.total), () => false, `${op} empty`);
      f(0, 1, 0, 1, cBlk.ptr, 6, 5, 0, 4, 0, false);
      const all = k.heap.f32(cBlk.base, cBlk.total);
      const written = (i: number) => i >= 6 && i < 36 && (i - 6) % 6 < 4;
      for (let i = 0; i < all.length; i++) if (written(i)) expect(all[i]).toBe(0);
      expectSentinels(all, written, `${op} k = 0`);
      k.heap.release(cBlk.base, cBlk.total * 4);
    });
  }

  it('matmul_pack_bytes is bounded by the cache block, not by the whole of B', async () => {
    const k = await kernelsFor(build);
    expect(k.kernels.matmul_pack_bytes(1, 1)).toBeGreaterThanOrEqual(8 * 4);
    expect(k.kernels.matmul_pack_bytes(4096, 4096)).toBeLessThanOrEqual(1 << 20);
    expect(k.kernels.matmul_pack_bytes(0, 10)).toBe(0);
  });

  it('the result does not depend on the contents of the pack scratch', async () => {
    const k = await kernelsFor(build);
    const [m, kk, n] = [9, 40, 19];
    const a = randomF32(m * kk, 5), b = randomF32(n * kk, 6);
    const ref = matmulNT(a, b, m, kk, n);
    const aPtr = putArray(k, a), bPtr = putArray(k, b);
    const cPtr = k.heap.alloc(m * n * 4);
    const bytes = k.kernels.matmul_pack_bytes(kk, n);
    const pack = k.heap.alloc(bytes);
    for (const fill of [NaN, 1e30, 0]) {
      k.heap.f32(pack, bytes / 4).fill(fill);
      k.heap.f32(cPtr, m * n).fill(NaN);
      k.kernels.matmul_nt(aPtr, kk, bPtr, kk, cPtr, n, m, kk, n, pack, false);
      expectClose(k.heap.f32(cPtr, m * n), ref, 1e-5, 1e-5 * Math.sqrt(kk), `pack filled with ${fill}`);
    }
    k.heap.release(pack, bytes); k.heap.release(cPtr, m * n * 4);
    k.heap.release(bPtr, n * kk * 4); k.heap.release(aPtr, m * kk * 4);
  });

  it('matvec on small, odd and large shapes (m < MR rows go this way too)', async () => {
    const k = await kernelsFor(build);
    let seed = 100;
    for (const n of [1, 2, 3, 4, 5, 7, 9, 17]) {
      for (const kk of [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 130]) checkMatvec(k, n, kk, seed++);
    }
    // k > 4096 goes four rows at a time (the n % 4 rows one at a time), k ≤ 4096 one row at a time.
    checkMatvec(k, 4099, 1031, seed++);
    checkMatvec(k, 1031, 4099, seed++);
    checkMatvec(k, 3, 5000, seed++);
    checkMatvec(k, 6, 4097, seed++);
    checkMatvec(k, 5, 4096, seed++);
    for (const [n, kk] of [[1, 1], [7, 17], [9, 130], [6, 4097], [5, 4096]]) checkMatvec(k, n, kk, seed++, true);
  });

  it('matvec pairs rows 2 MiB apart: whole blocks, a last block at half size, single rows left', async () => {
    const k = await kernelsFor(build);
    let seed = 200;
    // Row strides are k + 3 floats. 257 × 4112 bytes: pairs 128 rows apart, one row left.
    // 1000 × 4108: pairs 500 apart. 2040 × 2412: a block of 2·870, then 300 rows one at a time
    // (150 rows apart would be under 512 KiB). 2700 × 2416: a block of 2·869, a last one of 2·481.
    // 1100 × 4132: a block of 2·508, 84 rows alone; every k tail (16, 4, 1).
    for (const [n, kk] of [[257, 1025], [1000, 1024], [2040, 600], [2700, 601], [1100, 1030]]) {
      checkMatvec(k, n, kk, seed++);
      checkMatvec(k, n, kk, seed++, true);
    }
  });

  it('a matvec row gives the same bits whichever rows it is computed with (paired or alone)', async () => {
    const k = await kernelsFor(build);
    const n = 1100, kk = 1030, ldw = kk;
    const w = putArray(k, randomF32(n * kk, 7)), x = putArray(k, randomF32(kk, 8));
    const y = k.heap.alloc(n * 4), y1 = k.heap.alloc(4);
    k.kernels.matvec(w, ldw, x, y, n, kk, false);
    const all = k.heap.f32(y, n).slice();
    for (let i = 0; i < n; i++) {
      k.kernels.matvec(w + i * ldw * 4, ldw, x, y1, 1, kk, false);
      expect(Object.is(k.heap.f32(y1, 1)[0], all[i]), `row ${i}`).toBe(true);
    }
    k.heap.release(y1, 4); k.heap.release(y, n * 4);
    k.heap.release(x, kk * 4); k.heap.release(w, n * kk * 4);
  });

  it('vecmat on small, odd and large shapes', async () => {
    const k = await kernelsFor(build);
    let seed = 300;
    for (const kk of [1, 2, 3, 4, 5, 7, 9, 17]) {
      for (const n of [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 130]) checkVecmat(k, kk, n, seed++);
    }
    // n > 4096 goes four rows of W at a time (the k % 4 rows one at a time).
    checkVecmat(k, 4099, 1031, seed++);
    checkVecmat(k, 1031, 4099, seed++);
    checkVecmat(k, 3, 5003, seed++);
    checkVecmat(k, 6, 4097, seed++);
    checkVecmat(k, 5, 4096, seed++);
    for (const [kk, n] of [[1, 1], [7, 17], [9, 130], [6, 4097], [5, 4096]]) checkVecmat(k, kk, n, seed++, true);
  });

  it('matvec_batch and vecmat_batch: paired items (512 KiB or more apart), unpaired, an odd item alone, every tail', async () => {
    const k = await kernelsFor(build);
    let seed = 400;
    const PAIR = 512 << 10;
    for (const op of ['nt', 'nn'] as const) {
      // [n, k] of an item (nt: n rows of k; nn: k rows of n), count, far.
      for (const [n, kk, count, far] of [[1, 1, 1, 0], [1, 1, 2, 2], [3, 7, 3, 3], [5, 9, 2, 3], [17, 13, 1, 1],
        [128, 512, 8, 8], [4, 33, 3, 0], [7, 130, 2, 2]]) {
        const bytes = n * kk * 4;
        for (const apart of [bytes, Math.max(bytes, Math.ceil(PAIR / Math.max(far, 1) / 4) * 4)]) {
          checkBatch(k, op, count, far, n, kk, apart, seed++);
          checkBatch(k, op, count, far, n, kk, apart, seed++, true);
        }
      }
    }
    // Past VEC_L1 (4096): matvec streams four rows at a time, vecmat four rows of W; no pairing.
    checkBatch(k, 'nt', 1, 1, 6, 4099, 6 * 4099 * 4, seed++);
    checkBatch(k, 'nn', 1, 1, 4099, 5, 4099 * 5 * 4, seed++, true);
  });

  it('a batch item gives the same bits read beside its partner or alone', async () => {
    const k = await kernelsFor(build);
    for (const op of ['nt', 'nn'] as const) {
      const [n, kk] = op === 'nt' ? [128, 515] : [515, 128];
      // Items 1 MiB apart: 0–3 read beside 4–7, then all eight alone (the same seeds, the same numbers).
      const paired = checkBatch(k, op, 4, 4, n, kk, n * kk * 4, 500);
      const alone = checkBatch(k, op, 8, 0, n, kk, n * kk * 4, 500);
      for (let j = 0; j < 8; j++) {
        expect(alone.get(j)!.every((v, i) => Object.is(v, paired.get(j)![i])), `${op} item ${j}`).toBe(true);
      }
    }
  });

  it('matvec and vecmat with k = 0 write zeros, with n = 0 nothing', async () => {
    const k = await kernelsFor(build);
    for (const n of [0, 3, 4097]) {
      const yBlk = guarded(k, n, 8);
      k.kernels.matvec(0, 0, 0, yBlk.ptr, n, 0, false);
      let all = k.heap.f32(yBlk.base, yBlk.total);
      for (let i = 8; i < 8 + n; i++) expect(all[i]).toBe(0);
      expectSentinels(all, (i) => i >= 8 && i < 8 + n, `matvec ${n}×0`);
      all.fill(SENTINEL);
      k.kernels.vecmat(0, 0, 0, yBlk.ptr, 0, n, false);
      all = k.heap.f32(yBlk.base, yBlk.total);
      for (let i = 8; i < 8 + n; i++) expect(all[i]).toBe(0);
      expectSentinels(all, (i) => i >= 8 && i < 8 + n, `vecmat 0×${n}`);
      k.heap.release(yBlk.base, yBlk.total * 4);
    }
  });

  it('the probes run and return finite numbers', async () => {
    const k = await kernelsFor(build);
    const chains = k.kernels.probe_peak_chains();
    expect(chains).toBeGreaterThanOrEqual(8);
    expect(chains).toBeLessThanOrEqual(12);
    for (const iters of [0, 1, 1000, 100_000]) expect(Number.isFinite(k.kernels.probe_peak(iters))).toBe(true);
    const bytes = 64 * 1024 + 100;
    const ptr = k.heap.alloc(bytes);
    k.heap.f32(ptr, bytes >> 2).fill(0.5);
    // 128-byte steps: the 100-byte tail is not read; 3 passes of 512 steps of 32 halves.
    expect(k.kernels.probe_read(ptr, bytes, 3)).toBe(3 * (64 * 1024 / 4) * 0.5);
    expect(k.kernels.probe_read(ptr, 0, 5)).toBe(0);
    k.heap.release(ptr, bytes);
    // Pairs of 2 MiB halves: only whole 4 MiB blocks are read (here one, twice).
    const big = (4 << 20) + 4096;
    const p2 = k.heap.alloc(big);
    k.heap.f32(p2, big >> 2).fill(0.25);
    expect(k.kernels.probe_read_pairs(p2, big, 2)).toBe(2 * ((4 << 20) / 4) * 0.25);
    expect(k.kernels.probe_read_pairs(p2, (4 << 20) - 4, 1)).toBe(0);
    k.heap.release(p2, big);
  });
});
