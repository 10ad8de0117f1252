// Q4_K, Q5_K and Q6_K kernels (assembly/kquants.ts) against a float64 reference written here from the
// documented block layouts (llama.cpp's block_q4_K / _q5_K / _q6_K, get_scale_min_k4,
// dequantize_row_q4_K / _q5_K / _q6_K), in both builds:
//   - dequantize_q4k / _q5k / _q6k equal the reference rounded once to f32, bit for bit (ggml's own
//     dequantisation rounds each value once: its products are exact in f32);
//   - quantize_q8k_act (the products' activations, llama.cpp's Q8_K: int8 per 256 with one scale,
//     and the sum of every 16 codes) equals a reference of the same rule, code for code;
//   - a hand-made Q5_K block dequantises to the values llama.cpp's formula gives, written out;
//   - matmul_nt_q4k / _q5k / _q6k (m = 1 is the decode matvec) against Σ w·(x_q·d_x) in float64 over the
//     activations as quantize_q8k_act quantised them, within an f32 bound of the few roundings
//     a super-block's integer total goes through;
//   - a split by rows (what Ops gives each thread) is bit-identical to one call, whatever the
//     parity of the split (a row alone or in a pair computes alike);
//   - qgemm_kq (prefill: panels of super-blocks made i16 codes, q8's packed integer GEMM) against
//     Σ w·(x_q·d_x) in float64 over the activations as quantize_q8_act quantised them (per 32), on
//     shapes past the GEMM's row and column blocks, and split by columns bit-identical to one call.
import { describe, expect, it } from 'vitest';
import { BUILDS, kernelsFor, randomF32, rng } from '../helpers.js';
import type { LoadedKernels } from '../../src/host/load.js';
import { decodeRow } from '../../src/formats/quant-blocks.js';

type KFmt = 'q4k' | 'q5k' | 'q6k';
const BYTES = { q4k: 144, q5k: 176, q6k: 210 };
const FMTS: KFmt[] = ['q4k', 'q5k', 'q6k'];
const TYPE = { q4k: 'Q4_K', q5k: 'Q5_K', q6k: 'Q6_K' } as const;

function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Random blocks: random code bytes, finite f16 super-block scales of varied size (some subnormal, some zero). */
function randomBlocks(fmt: KFmt, count: number, seed: number): Uint8Array {
  const r = rng(seed), b = new Uint8Array(count * BYTES[fmt]), v = new DataView(b.buffer);
  const scale = (i: number) => {
    if (i % 7 === 3) return 0x0001 | (r() < 0 ? 0x8000 : 0); // a subnormal
    if (i % 11 === 5) return 0;
    return ((Math.floor(r(5, 14)) << 10) | Math.floor(r(0, 1024))) | (r() < 0 ? 0x8000 : 0);
  };
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(r(0, 256));
  for (let blk = 0; blk < count; blk++) {
    const at = blk * BYTES[fmt];
    if (fmt !== 'q6k') { v.setUint16(at, scale(blk) & 0x7fff, true); v.setUint16(at + 2, scale(blk + 1) & 0x7fff, true); }
    else v.setUint16(at + 208, scale(blk), true);
  }
  return b;
}

/** The reference: the values of `count` blocks, in float64, from the documented layout. */
function reference(fmt: KFmt, b: Uint8Array, count: number): Float64Array {
  const out = new Float64Array(count * 256), v = new DataView(b.buffer, b.byteOffset);
  for (let blk = 0; blk < count; blk++) {
    const at = blk * BYTES[fmt], o = blk * 256;
    if (fmt !== 'q6k') {
      // Q4_K: d, dmin, scales[12], qs[128]; Q5_K: d, dmin, scales[12], qh[32], qs[128].
      const d = f16Value(v.getUint16(at, true)), dmin = f16Value(v.getUint16(at + 2, true)), s = b.subarray(at + 4, at + 16);
      const qs = at + (fmt === 'q5k' ? 48 : 16);
      for (let j = 0; j < 8; j++) {
        // 6-bit scale and min of sub-block j: 0–3 in the low 6 bits of s[j], s[j + 4]; 4–7 split
        // between the nibbles of s[j + 4] and the top 2 bits of s[j − 4], s[j].
        const sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        const mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        // Q5_K's fifth bit, as dequantize_row_q5_K: masks u1 = 1, u2 = 2 for sub-blocks 0, 1, shifted left by 2 per pair.
        const u = (j & 1 ? 2 : 1) << (2 * (j >> 1));
        for (let l = 0; l < 32; l++) {
          const byte = b[qs + 32 * (j >> 1) + l];
          const q = (j & 1 ? byte >> 4 : byte & 15) + (fmt === 'q5k' && b[at + 16 + l] & u ? 16 : 0);
          out[o + 32 * j + l] = d * sc * q - dmin * mn;
        }
      }
    } else {
      const d = f16Value(v.getUint16(at + 208, true));
      for (let i = 0; i < 256; i++) {
        const h = i >> 7, g = (i >> 5) & 3, l = i & 31;
        const ql = b[at + 64 * h + 32 * (g & 1) + l], qh = b[at + 128 + 32 * h + l];
        const q = ((g < 2 ? ql & 15 : ql >> 4) | (((qh >> (2 * g)) & 3) << 4)) - 32;
        out[o + i] = d * v.getInt8(at + 192 + 8 * h + 2 * g + (l >> 4)) * q;
      }
    }
  }
  return out;
}

/**
 * Per weight, the magnitude of the terms the products sum it from: |d·sc·q| + |dmin·m| for Q4_K
 * and Q5_K (its two sums can cancel), |d·sc·(q − 32)| for Q6_K (the weight itself, and its −32 part).
 */
function magnitudes(fmt: KFmt, b: Uint8Array, count: number): Float64Array {
  if (fmt === 'q6k') {
    const out = new Float64Array(count * 256), v = new DataView(b.buffer, b.byteOffset);
    const w = reference(fmt, b, count);
    for (let blk = 0; blk < count; blk++) {
      const d = Math.abs(f16Value(v.getUint16(blk * 210 + 208, true)));
      for (let i = 0; i < 256; i++) {
        const sc = Math.abs(v.getInt8(blk * 210 + 192 + (i >> 4)));
        out[blk * 256 + i] = Math.abs(w[blk * 256 + i]) + 32 * d * sc;
      }
    }
    return out;
  }
  // Q4_K / Q5_K: the reference with every sign made positive: |d·sc·q| + |dmin·m|.
  const pos = b.slice(), B = BYTES[fmt];
  for (let blk = 0; blk < count; blk++) { pos[blk * B + 1] &= 0x7f; pos[blk * B + 3] &= 0x7f; }
  const parts = reference(fmt, pos, count), out = new Float64Array(count * 256), v = new DataView(pos.buffer);
  for (let blk = 0; blk < count; blk++) {
    const dmin = f16Value(v.getUint16(blk * B + 2, true)), s = pos.subarray(blk * B + 4, blk * B + 16);
    for (let j = 0; j < 8; j++) {
      const mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      for (let l = 0; l < 32; l++) out[blk * 256 + 32 * j + l] = parts[blk * 256 + 32 * j + l] + 2 * dmin * mn;
    }
  }
  return out;
}

function alloc(k: LoadedKernels, bytes: number): number { return k.heap.alloc(Math.max(16, bytes)); }

/** Bytes of a Q8_K activation record (per 256 values): 16 i16 sums, then the f32 scale. */
const RECORD = 36;

/** The Q8_K activation rule in f32 steps: d = max|x|/127, q = round(x·(1/d)) half away from zero, sums of 16. */
function q8kReference(x: Float32Array): { q: Int8Array; d: Float32Array; sums: Int16Array } {
  const nsb = x.length / 256, q = new Int8Array(x.length), d = new Float32Array(nsb), sums = new Int16Array(nsb * 16);
  for (let sb = 0; sb < nsb; sb++) {
    let amax = 0;
    for (let i = 0; i < 256; i++) amax = Math.max(amax, Math.abs(x[sb * 256 + i]));
    d[sb] = Math.fround(amax / 127);
    const id = d[sb] ? Math.fround(1 / d[sb]) : 0;
    for (let i = 0; i < 256; i++) {
      const v = Math.fround(x[sb * 256 + i] * id);
      q[sb * 256 + i] = v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
      sums[sb * 16 + (i >> 4)] += q[sb * 256 + i];
    }
  }
  return { q, d, sums };
}

/** Activation rows quantised by quantize_q8k_act: codes at aq, records at ar (m rows of k). */
function quantizeRows(k: LoadedKernels, xp: number, m: number, kk: number, aq: number, ar: number): { q: Int8Array; d: Float32Array } {
  for (let i = 0; i < m; i++) k.kernels.quantize_q8k_act(xp + i * kk * 4, kk, aq + i * kk, ar + i * (kk / 256) * RECORD);
  const q = new Int8Array(k.heap.memory.buffer, aq, m * kk).slice();
  const d = new Float32Array(m * kk / 256), view = new DataView(k.heap.memory.buffer);
  for (let b = 0; b < d.length; b++) d[b] = view.getFloat32(ar + b * RECORD + 32, true);
  return { q, d };
}

describe.each(BUILDS)('K-quant kernels (%s build)', (build) => {
  it.each(FMTS)('%s: dequantize and embed equal the reference rounded once to f32', async (fmt) => {
    const k = await kernelsFor(build), K = k.kernels;
    const top = k.heap.usedBytes;
    for (const count of [1, 3]) {
      const b = randomBlocks(fmt, count, 17 + count), ref = reference(fmt, b, count);
      const wp = alloc(k, b.length), op = alloc(k, count * 1024);
      k.heap.u8(wp, b.length).set(b);
      ({ q4k: K.dequantize_q4k, q5k: K.dequantize_q5k, q6k: K.dequantize_q6k })[fmt](wp, op, count);
      const got = k.heap.f32(op, count * 256);
      for (let i = 0; i < ref.length; i++) expect(got[i], `${fmt} value ${i}`).toBe(Math.fround(ref[i]));
      // The GGUF reader's decoding (what loading widens K-quant tensors with) is the same, bit for bit.
      const host = new Float32Array(count * 256);
      decodeRow(TYPE[fmt], b, 0, count * 256, host, 0);
      expect(Array.from(host)).toEqual(Array.from(got));
      // embed: two tokens of the one row.
      const idp = alloc(k, 8), ep = alloc(k, 2 * count * 1024);
      k.heap.i32(idp, 2).set([0, 0]);
      ({ q4k: K.embed_q4k, q5k: K.embed_q5k, q6k: K.embed_q6k })[fmt](wp, count * 256, idp, 2, ep);
      const e = k.heap.f32(ep, 2 * count * 256);
      for (let i = 0; i < count * 256; i++) { expect(e[i]).toBe(got[i]); expect(e[count * 256 + i]).toBe(got[i]); }
      for (const [p, n] of [[wp, b.length], [op, count * 1024], [idp, 8], [ep, 2 * count * 1024]]) k.heap.release(p, Math.max(16, n));
    }
    expect(k.heap.usedBytes).toBe(top);
  });

  it('q5k: a hand-made block dequantises to llama.cpp\'s values, written out', async () => {
    const k = await kernelsFor(build), K = k.kernels;
    const top = k.heap.usedBytes;
    const b = new Uint8Array(176), v = new DataView(b.buffer);
    v.setUint16(0, 0x3c00, true);  // d = 1
    v.setUint16(2, 0x3800, true);  // dmin = 0.5
    // Sub-blocks 0–3: scales 1, 2, 3, 63 and mins 4, 5, 6, 7 (low 6 bits of bytes 0–3, 4–7). Sub-blocks
    // 4–7: scale 16·(top 2 bits of byte j − 4) + low nibble of byte j + 4, min 16·(top of byte j) + high nibble.
    b.set([1 | 0x40, 2, 3, 63 | 0xc0, 4, 5 | 0x80, 6, 7, 0x21, 0x00, 0xf3, 0x4f], 4);
    b[16] = 0b10000001;            // qh[0]: fifth bit of value 0 in sub-blocks 0 and 7
    b[16 + 31] = 0b00000010;       // qh[31]: of value 31 in sub-block 1
    b[48] = 0xa5;                  // qs[0]: value 0 of sub-block 0 (low nibble 5) and of 1 (high nibble 10)
    b[48 + 31] = 0x0f;             // qs[31]: value 31 of sub-blocks 0 (15) and 1 (0)
    b[48 + 96] = 0x70;             // qs[96]: value 0 of sub-blocks 6 (0) and 7 (7)
    const wp = alloc(k, 176), op = alloc(k, 1024);
    k.heap.u8(wp, 176).set(b);
    K.dequantize_q5k(wp, op, 1);
    const got = k.heap.f32(op, 256);
    // Sub-block 4: scale 16·1 + 1 = 17, min 16·0 + 2 = 2; 5: scale 0, min 16·2 + 0 = 32;
    // 6: scale 3, min 15; 7: scale 16·3 + 15 = 63, min 16·0 + 4 = 4.
    const want: [number, number][] = [
      [0, 1 * (5 + 16) - 0.5 * 4], [31, 1 * 15 - 0.5 * 4], [1, -0.5 * 4],
      [32, 2 * 10 - 0.5 * 5], [63, 2 * (0 + 16) - 0.5 * 5],
      [96, 63 * 0 - 0.5 * 7], [128, 17 * 0 - 0.5 * 2], [160, 0 - 0.5 * 32],
      [192, 3 * 0 - 0.5 * 15], [224, 63 * (7 + 16) - 0.5 * 4], [225, -0.5 * 4],
    ];
    for (const [i, x] of want) expect(got[i], `value ${i}`).toBe(x);
    expect(Array.from(got)).toEqual(Array.from(reference('q5k', b, 1), Math.fround));
    k.heap.release(wp, 176); k.heap.release(op, 1024);
    expect(k.heap.usedBytes).toBe(top);
  });

  it('quantize_q8k_act: codes, scales and sums of 16 as the reference (zeros, tiny and huge values too)', async () => {
    const k = await kernelsFor(build), K = k.kernels;
    const top = k.heap.usedBytes;
    const kk = 1024, x = randomF32(kk, 5, -3, 3);
    x.fill(0, 256, 512);                                  // a super-block of zeros: d = 0, codes 0
    for (let i = 512; i < 768; i++) x[i] = (i % 3 - 1) * 1e-30;
    x[800] = 6e4; x[801] = -6e4; x[802] = 0.5 * 6e4 / 127; // an exact half step rounds away from zero
    const ref = q8kReference(x);
    const xp = alloc(k, kk * 4), aq = alloc(k, kk), ar = alloc(k, 4 * RECORD);
    k.heap.f32(xp, kk).set(x);
    const got = quantizeRows(k, xp, 1, kk, aq, ar);
    expect(Array.from(got.q)).toEqual(Array.from(ref.q));
    expect(Array.from(got.d)).toEqual(Array.from(ref.d));
    for (let sb = 0; sb < 4; sb++) {
      expect(Array.from(new Int16Array(k.heap.memory.buffer.slice(ar + sb * RECORD, ar + sb * RECORD + 32))), `sums of block ${sb}`)
        .toEqual(Array.from(ref.sums.subarray(sb * 16, sb * 16 + 16)));
    }
    for (const [p, n] of [[xp, kk * 4], [aq, kk], [ar, 4 * RECORD]]) k.heap.release(p, Math.max(16, n));
    expect(k.heap.usedBytes).toBe(top);
  });

  const shapes: [number, number, number][] = [[1, 1, 256], [1, 5, 512], [3, 2, 256], [2, 7, 768], [5, 3, 256], [1, 9, 1280]];
  it.each(FMTS)('%s: matmul_nt (m = 1: matvec) against float64, and row splits bit-identical', async (fmt) => {
    const k = await kernelsFor(build), K = k.kernels;
    const top = k.heap.usedBytes;
    const fn = { q4k: K.matmul_nt_q4k, q5k: K.matmul_nt_q5k, q6k: K.matmul_nt_q6k }[fmt];
    // m = 1 pairs rows ~2 MiB apart while they stay 512 KiB apart (assembly/kquants.ts product):
    // these n give a full group of such pairs, a halved one, and a last row alone.
    const farN = { q4k: 2 * 14564 + 2 * 3700 + 1, q5k: 2 * 11916 + 2 * 3000 + 1, q6k: 2 * 9987 + 2 * 2500 + 1 }[fmt];
    for (const [m, n, kk] of [...shapes, [1, farN, 256]]) {
      for (const acc of [false, true]) {
        const nsb = kk / 256, seed = m * 1000 + n * 10 + kk;
        const b = randomBlocks(fmt, n * nsb, seed), w = reference(fmt, b, n * nsb), parts = magnitudes(fmt, b, n * nsb);
        const x = randomF32(m * kk, seed + 1, -3, 3);
        if (kk >= 512) { x.fill(0, 0, 256); x[300] = 1e-3; }
        const wp = alloc(k, b.length), xp = alloc(k, m * kk * 4), aq = alloc(k, m * kk), ar = alloc(k, m * nsb * RECORD);
        k.heap.u8(wp, b.length).set(b);
        k.heap.f32(xp, m * kk).set(x);
        const { q: xq, d: xd } = quantizeRows(k, xp, m, kk, aq, ar);
        const ldc = n + 3, cp = alloc(k, m * ldc * 4), c2 = alloc(k, m * ldc * 4);
        const earlier = randomF32(m * ldc, seed + 2, -4, 4);
        k.heap.f32(cp, m * ldc).set(earlier);
        k.heap.f32(c2, m * ldc).set(earlier);
        fn(aq, ar, wp, cp, ldc, m, kk, n, acc);
        const got = k.heap.f32(cp, m * ldc).slice();
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0, mag = 0;
            for (let t = 0; t < kk; t++) {
              const xv = xq[i * kk + t] * xd[i * nsb + (t >> 8)];
              s += w[j * kk + t] * xv;
              mag += parts[j * kk + t] * Math.abs(xv);
            }
            const earlierMag = acc ? Math.abs(earlier[i * ldc + j]) : 0;
            const want = (acc ? earlier[i * ldc + j] : 0) + s;
            // Per super-block: the i32 total to f32, d·d_x, the product, the lane's running sum
            // (2 terms a super-block for Q4_K and Q5_K); then a 4-lane hsum and the add into C.
            const tol = 2 ** -24 * (4 * nsb + 8) * (mag + earlierMag) + 1e-30;
            expect(Math.abs(got[i * ldc + j] - want), `${fmt} m${m} n${n} k${kk} [${i},${j}]`).toBeLessThanOrEqual(tol);
          }
          for (let j = n; j < ldc; j++) expect(got[i * ldc + j]).toBe(earlier[i * ldc + j]); // untouched
        }
        // Rows split at an odd and an even point, as Ops splits them over threads.
        for (const cut of [1, 2, 3]) {
          if (cut >= n) continue;
          k.heap.f32(c2, m * ldc).set(earlier);
          fn(aq, ar, wp, c2, ldc, m, kk, cut, acc);
          fn(aq, ar, wp + cut * nsb * BYTES[fmt], c2 + cut * 4, ldc, m, kk, n - cut, acc);
          expect(Array.from(k.heap.f32(c2, m * ldc)), `${fmt} split at ${cut}`).toEqual(Array.from(got));
        }
        for (const [p, nb] of [[wp, b.length], [xp, m * kk * 4], [aq, m * kk], [ar, m * nsb * RECORD], [cp, m * ldc * 4], [c2, m * ldc * 4]]) {
          k.heap.release(p, Math.max(16, nb));
        }
      }
    }
    expect(k.heap.usedBytes).toBe(top);
  });

  it.each(FMTS)('%s: qgemm_kq (prefill GEMM) against float64, and column splits bit-identical', async (fmt) => {
    const k = await kernelsFor(build), K = k.kernels;
    const top = k.heap.usedBytes;
    const code = { q4k: 0, q6k: 1, q5k: 2 }[fmt], split = K.qgemm_split_cols();
    // Rows past the tile (4) and its block (128), columns past a panel (8) and not a multiple of it.
    const kqShapes: [number, number, number][] = [[1, 3, 256], [4, 13, 512], [5, 25, 256], [13, 49, 768], [130, 7, 256], [6, 530, 256]];
    for (const [m, n, kk] of kqShapes) {
      const nsb = kk / 256, nb = kk / 32, seed = m * 1000 + n * 10 + kk + 7;
      const b = randomBlocks(fmt, n * nsb, seed), w = reference(fmt, b, n * nsb), parts = magnitudes(fmt, b, n * nsb);
      const x = randomF32(m * kk, seed + 1, -3, 3);
      if (kk >= 512) { x.fill(0, 0, 32); x[40] = 1e-3; } // a block of zeros (d_x = 0), one nearly so
      const ldc = n + 3;
      const wp = alloc(k, b.length), xp = alloc(k, m * kk * 4), aq = alloc(k, m * kk), ad = alloc(k, m * nb * 4);
      const cp = alloc(k, m * ldc * 4), c2 = alloc(k, m * ldc * 4), packBytes = K.qgemm_pack_bytes(kk), pack = alloc(k, packBytes);
      k.heap.u8(wp, b.length).set(b);
      k.heap.f32(xp, m * kk).set(x);
      for (let i = 0; i < m; i++) K.quantize_q8_act(xp + i * kk * 4, kk, aq + i * kk, ad + i * nb * 4);
      const xq = new Int8Array(k.heap.memory.buffer, aq, m * kk).slice(), xd = k.heap.f32(ad, m * nb).slice();
      const earlier = randomF32(m * ldc, seed + 2, -4, 4);
      k.heap.f32(cp, m * ldc).set(earlier);
      K.qgemm_kq(code, aq, ad, wp, cp, ldc, m, kk, n, pack);
      const got = k.heap.f32(cp, m * ldc).slice();
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let sum = 0, mag = 0;
          for (let t = 0; t < kk; t++) {
            const xv = xq[i * kk + t] * xd[i * nb + (t >> 5)];
            sum += w[j * kk + t] * xv;
            mag += parts[j * kk + t] * Math.abs(xv);
          }
          // Per block of 32: the exact i32 sum to f32, d·d_x, the product and its add; Q4_K / Q5_K's
          // offset term as many again.
          expect(Math.abs(got[i * ldc + j] - sum), `${fmt} m${m} n${n} k${kk} [${i},${j}]`).toBeLessThanOrEqual(2 ** -24 * (8 * nb + 4) * mag + 1e-30);
        }
        for (let j = n; j < ldc; j++) expect(got[i * ldc + j]).toBe(earlier[i * ldc + j]); // untouched
      }
      // Columns split where Ops may split them (multiples of qgemm_split_cols).
      for (let cut = split; cut < n; cut += 4 * split) {
        k.heap.f32(c2, m * ldc).set(earlier);
        K.qgemm_kq(code, aq, ad, wp, c2, ldc, m, kk, cut, pack);
        K.qgemm_kq(code, aq, ad, wp + cut * nsb * BYTES[fmt], c2 + cut * 4, ldc, m, kk, n - cut, pack);
        expect(Array.from(k.heap.f32(c2, m * ldc)), `${fmt} split at ${cut}`).toEqual(Array.from(got));
      }
      for (const [p, nbytes] of [[wp, b.length], [xp, m * kk * 4], [aq, m * kk], [ad, m * nb * 4], [cp, m * ldc * 4], [c2, m * ldc * 4], [pack, packBytes]]) {
        k.heap.release(p, Math.max(16, nbytes));
      }
    }
    expect(k.heap.usedBytes).toBe(top);
  });
});
