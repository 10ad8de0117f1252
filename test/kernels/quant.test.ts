// Narrow-weight kernels (assembly/quant.ts) in both builds against float64 references computed on
// the dequantised weights (and, for q8/q4, on the activations as the kernel quantised them), on
// awkward shapes: n = 1 and odd, k not a multiple of 16 / 8 / 32 for bf16 and f16, k = 32 (a block
// that ends the row), 2048 + 32, rows far enough apart to take the paired path, M = 1, 3, 5;
// strides wider than the rows (padded with NaN) and sentinels around every output. Then the
// quantisers' per-element error bounds, and llama.cpp's Q8_0 / Q4_0 blocks, laid out byte for byte,
// repacked into our layout and dequantised by our kernels to exactly llama.cpp's values.
//
// Tolerances are rounding-error bounds of the kernels' f32 arithmetic (u = 2⁻²⁴), not fitted:
// |fl(Σ t) − Σ t| ≤ γ_D · Σ|t|, γ_D = D·u / (1 − D·u), D the most roundings on any term's path.
//   bf16 / f16: a product (1 rounding, 0 when fused), then ⌈k/16⌉ adds in its lane of the 16-wide
//   loop, 1 for the 8-step, 2 joining the four accumulators, 3 in the lane sum, at most 7 scalar
//   tail adds: D = ⌈k/16⌉ + 14; the terms t = x_j·w_j (widening is exact).
//   q8 / q4: per block an exact i32 lane sum (|Σ| ≤ 32·127·127 < 2²⁴, so its f32 is exact), times
//   d_w·d_x (2 roundings), nb adds in its lane, 3 in the lane sum: D = nb + 5; the terms are bounded
//   by Σ_b |d_w·d_x|·Σ_j |q_w·q_x|.
//   With acc, one more rounding adds y's earlier contents: γ_{D+1}·(Σ|t| + |y_old|).
import { describe, expect, it } from 'vitest';
import { BUILDS, kernelsFor, randomF32, rng } from '../helpers.js';
import type { LoadedKernels } from '../../src/host/load.js';

const U = 2 ** -24;
const SENTINEL = -12345.5;
const gamma = (d: number) => (d * U) / (1 - d * U);

// ---------------------------------------------------------------------------------------------
// Half-precision encodings, written from IEEE 754 (not from the kernels).

const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
const bitsOf = (v: number) => { f32buf[0] = v; return u32buf[0]; };
const fromBits = (b: number) => { u32buf[0] = b >>> 0; return f32buf[0]; };

/** Round half to even of a non-negative t that is exact in float64. */
function rne(t: number): number {
  const f = Math.floor(t), r = t - f;
  return r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** f16 bits → value (exact). */
function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1024 + m) * 2 ** (e - 25);
}

/** f32 bits of a finite f16 h (−0 keeps its sign). */
const f16AsF32Bits = (h: number) => bitsOf(f16Value(h));

/** f32 value → f16 bits, round to nearest even (as GGML_FP32_TO_FP16). */
function toF16(v: number): number {
  v = Math.fround(v);
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0, a = Math.abs(v);
  if (Number.isNaN(v)) return 0x7e00;
  if (a < 2 ** -14) return sign | rne(a * 2 ** 24); // subnormal; 1024 carries into the exponent
  let e = ((bitsOf(a) >>> 23) & 0xff) - 127;
  let hm = rne((a / 2 ** e - 1) * 1024);
  if (hm === 1024) { e++; hm = 0; }
  if (e + 15 >= 31) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | hm;
}

/** f32 value → bf16 bits, round to nearest even (finite inputs). */
function toBF16(v: number): number {
  const b = bitsOf(v);
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
const bf16Value = (h: number) => fromBits(h << 16);

// ---------------------------------------------------------------------------------------------
// Heap helpers

function alloc(k: LoadedKernels, bytes: number): number { return k.heap.alloc(Math.max(bytes, 16)); }
const u16 = (k: LoadedKernels, p: number, n: number) => new Uint16Array(k.heap.memory.buffer, p, n);
const i8 = (k: LoadedKernels, p: number, n: number) => new Int8Array(k.heap.memory.buffer, p, n);
const u8 = (k: LoadedKernels, p: number, n: number) => new Uint8Array(k.heap.memory.buffer, p, n);
const f32 = (k: LoadedKernels, p: number, n: number) => k.heap.f32(p, n);

/** An output of rows × ld floats with `guard` sentinel floats on both sides, earlier contents set. */
function output(k: LoadedKernels, rows: number, cols: number, ld: number, earlier: Float32Array | null) {
  const guard = 8, len = rows * ld, total = len + 2 * guard;
  const base = alloc(k, total * 4);
  f32(k, base, total).fill(SENTINEL);
  const ptr = base + guard * 4;
  if (earlier) for (let i = 0; i < rows; i++) f32(k, ptr + i * ld * 4, cols).set(earlier.subarray(i * cols, (i + 1) * cols));
  return {
    ptr,
    /** The rows × cols results, after checking nothing else changed. */
    read(what: string): Float32Array {
      const all = f32(k, base, total);
      const out = new Float32Array(rows * cols);
      for (let i = 0; i < total; i++) {
        const j = i - guard, inside = j >= 0 && j < len && j % ld < cols;
        if (inside) out[Math.floor(j / ld) * cols + (j % ld)] = all[i];
        else if (all[i] !== SENTINEL) expect.fail(`${what}: float ${j} outside the output was overwritten (${all[i]})`);
      }
      return out;
    },
  };
}

/** Expect |got − ref| ≤ tol elementwise; the message names the first element that breaks it. */
function expectWithin(got: Float32Array, ref: Float64Array, tol: Float64Array, what: string): void {
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    if (!(err <= tol[i])) expect.fail(`${what}: index ${i} is ${got[i]}, expected ${ref[i]} ± ${tol[i]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Weights and activations in each format

type Wide = 'bf16' | 'f16';
type Quant = 'q8' | 'q4';

/** n×k weights in a u16 format with row stride ld (padding NaN), and their exact values. */
function wideWeights(fmt: Wide, n: number, kk: number, ld: number, seed: number) {
  const r = rng(seed);
  const bits = new Uint16Array(Math.max(1, (n - 1) * ld + kk)).fill(fmt === 'bf16' ? 0x7fc0 : 0x7e00);
  const val = new Float64Array(n * kk);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < kk; j++) {
      let h: number;
      if (fmt === 'bf16') h = toBF16(r(-2, 2));
      else {
        // Any finite f16: every exponent (subnormals and zeros included), sign and mantissa.
        const e = Math.floor(r(0, 31)), m = Math.floor(r(0, 1024));
        h = (r() < 0 ? 0x8000 : 0) | (e << 10) | m;
      }
      bits[i * ld + j] = h;
      val[i * kk + j] = fmt === 'bf16' ? bf16Value(h) : f16Value(h);
    }
  }
  return { bits, val };
}

interface Quantised { q: Int8Array; d: Float32Array; ptrQ: number; ptrD: number; bytesQ: number }

/** Quantise rows×k f32 (k % 32 = 0) with the kernels; returns the codes (signed for q8, 0..15 for q4). */
function quantiseRows(k: LoadedKernels, fmt: Quant, w: Float32Array, rows: number, kk: number): Quantised {
  const nb = kk / 32, bytesQ = fmt === 'q8' ? rows * kk : rows * kk / 2;
  const wp = alloc(k, w.length * 4);
  f32(k, wp, w.length).set(w);
  const ptrQ = alloc(k, bytesQ), ptrD = alloc(k, rows * nb * 4);
  (fmt === 'q8' ? k.kernels.quantize_q8_rows : k.kernels.quantize_q4_rows)(wp, kk, rows, kk, ptrQ, ptrD);
  k.heap.release(wp, Math.max(w.length * 4, 16));
  const q = new Int8Array(rows * kk);
  if (fmt === 'q8') q.set(i8(k, ptrQ, bytesQ));
  else {
    const b = u8(k, ptrQ, bytesQ);
    for (let blk = 0; blk < rows * nb; blk++) {
      for (let j = 0; j < 16; j++) {
        q[blk * 32 + j] = b[blk * 16 + j] & 15;
        q[blk * 32 + j + 16] = b[blk * 16 + j] >> 4;
      }
    }
  }
  return { q, d: f32(k, ptrD, rows * nb).slice(), ptrQ, ptrD, bytesQ };
}

/** m activation rows quantised with quantize_q8_act, one call per row, into contiguous rows. */
function quantiseAct(k: LoadedKernels, x: Float32Array, m: number, kk: number): Quantised {
  const nb = kk / 32;
  const xp = alloc(k, x.length * 4);
  f32(k, xp, x.length).set(x);
  const ptrQ = alloc(k, m * kk), ptrD = alloc(k, m * nb * 4);
  for (let i = 0; i < m; i++) k.kernels.quantize_q8_act(xp + i * kk * 4, kk, ptrQ + i * kk, ptrD + i * nb * 4);
  k.heap.release(xp, Math.max(x.length * 4, 16));
  return { q: i8(k, ptrQ, m * kk).slice(), d: f32(k, ptrD, m * nb).slice(), ptrQ, ptrD, bytesQ: m * kk };
}

function freeQ(k: LoadedKernels, t: Quantised, dFloats: number): void {
  k.heap.release(t.ptrD, Math.max(dFloats * 4, 16));
  k.heap.release(t.ptrQ, Math.max(t.bytesQ, 16));
}

/** Random activations with some awkward blocks: all zero, one nonzero, a huge range. */
function activations(len: number, seed: number): Float32Array {
  const x = randomF32(len, seed, -3, 3);
  if (len >= 64) { x.fill(0, 0, 32); x.fill(0, 32, 64); x[40] = -0.7; }
  if (len >= 96) for (let j = 64; j < 96; j++) x[j] *= 10 ** ((j % 7) - 3);
  return x;
}

// ---------------------------------------------------------------------------------------------
// The checks

function checkWide(k: LoadedKernels, fmt: Wide, m: number, n: number, kk: number, seed: number, acc: boolean): void {
  const top = k.heap.usedBytes;
  const ldw = kk + 3, lda = kk + 5, ldc = n + 7;
  const { bits, val } = wideWeights(fmt, n, kk, ldw, seed);
  const x = randomF32(m * kk, seed + 1);
  const earlier = acc ? randomF32(m * n, seed + 2, -4, 4) : null;
  const wp = alloc(k, bits.length * 2);
  u16(k, wp, bits.length).set(bits);
  const ap = alloc(k, (m * lda) * 4);
  f32(k, ap, m * lda).fill(NaN);
  for (let i = 0; i < m; i++) f32(k, ap + i * lda * 4, kk).set(x.subarray(i * kk, (i + 1) * kk));
  // matvec (m = 1) writes y densely; the matmul a C with stride ldc.
  const useMatvec = m === 1 && seed % 2 === 0;
  const out = output(k, m, n, useMatvec ? n : ldc, earlier);
  const K = k.kernels;
  if (useMatvec) (fmt === 'bf16' ? K.matvec_bf16 : K.matvec_f16)(wp, ldw, ap, out.ptr, n, kk, acc);
  else (fmt === 'bf16' ? K.matmul_nt_bf16 : K.matmul_nt_f16)(ap, lda, wp, ldw, out.ptr, ldc, m, kk, n, acc);
  const what = `${useMatvec ? 'matvec' : 'matmul_nt'}_${fmt} m=${m} n=${n} k=${kk}${acc ? ' acc' : ''}`;
  const got = out.read(what);
  const ref = new Float64Array(m * n), tol = new Float64Array(m * n);
  const D = Math.ceil(kk / 16) + 14 + (acc ? 1 : 0);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, sa = 0;
      for (let p = 0; p < kk; p++) { const t = x[i * kk + p] * val[j * kk + p]; s += t; sa += Math.abs(t); }
      const old = earlier ? earlier[i * n + j] : 0;
      ref[i * n + j] = s + old;
      tol[i * n + j] = gamma(D) * (sa + Math.abs(old));
    }
  }
  expectWithin(got, ref, tol, what);
  k.heap.release(out.ptr - 32, (m * (useMatvec ? n : ldc) + 16) * 4);
  k.heap.release(ap, m * lda * 4);
  k.heap.release(wp, bits.length * 2);
  expect(k.heap.usedBytes).toBe(top);
}

/**
 * The prep scratch the q8 / q4 products take (quant_prep_bytes(k) bytes), between guard bytes that
 * free() checks before releasing it.
 */
function prepScratch(k: LoadedKernels, kk: number) {
  const bytes = k.kernels.quant_prep_bytes(kk), guard = 64, total = bytes + 2 * guard;
  const base = alloc(k, total);
  u8(k, base, total).fill(0xA5);
  return {
    ptr: base + guard,
    free(what: string): void {
      const all = u8(k, base, total);
      for (let i = 0; i < total; i++) {
        if ((i < guard || i >= guard + bytes) && all[i] !== 0xA5) expect.fail(`${what}: byte ${i - guard} outside the prep scratch was written`);
      }
      k.heap.release(base, Math.max(total, 16));
    },
  };
}

/** W[n, k] → fmt, m activation rows → q8, then the product against the float64 reference. */
function checkQuant(k: LoadedKernels, fmt: Quant, m: number, n: number, kk: number, seed: number, acc: boolean): void {
  const top = k.heap.usedBytes;
  const nb = kk / 32, ldc = n + 7;
  const w = randomF32(n * kk, seed, -1, 1);
  if (n * kk >= 64) w.fill(0, 32, 64); // a zero block: d = 0
  const W = quantiseRows(k, fmt, w, n, kk);
  const A = quantiseAct(k, activations(m * kk, seed + 1), m, kk);
  const earlier = acc ? randomF32(m * n, seed + 2, -4, 4) : null;
  const useMatvec = m === 1 && seed % 2 === 0;
  const out = output(k, m, n, useMatvec ? n : ldc, earlier);
  const K = k.kernels, prep = prepScratch(k, kk);
  if (useMatvec) (fmt === 'q8' ? K.matvec_q8 : K.matvec_q4)(W.ptrQ, W.ptrD, A.ptrQ, A.ptrD, out.ptr, n, kk, acc, prep.ptr);
  else (fmt === 'q8' ? K.matmul_nt_q8 : K.matmul_nt_q4)(A.ptrQ, A.ptrD, W.ptrQ, W.ptrD, out.ptr, ldc, m, kk, n, acc, prep.ptr);
  const what = `${useMatvec ? 'matvec' : 'matmul_nt'}_${fmt} m=${m} n=${n} k=${kk}${acc ? ' acc' : ''}`;
  prep.free(what);
  const got = out.read(what);
  const ref = new Float64Array(m * n), tol = new Float64Array(m * n);
  const D = nb + 5 + (acc ? 1 : 0), bias = fmt === 'q4' ? 8 : 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, sa = 0;
      for (let b = 0; b < nb; b++) {
        const scale = W.d[j * nb + b] * A.d[i * nb + b];
        let dot = 0, dotAbs = 0;
        for (let p = b * 32; p < b * 32 + 32; p++) {
          const t = (W.q[j * kk + p] - bias) * A.q[i * kk + p];
          dot += t; dotAbs += Math.abs(t);
        }
        s += scale * dot; sa += Math.abs(scale) * dotAbs;
      }
      const old = earlier ? earlier[i * n + j] : 0;
      ref[i * n + j] = s + old;
      tol[i * n + j] = gamma(D) * (sa + Math.abs(old));
    }
  }
  expectWithin(got, ref, tol, what);
  k.heap.release(out.ptr - 32, (m * (useMatvec ? n : ldc) + 16) * 4);
  freeQ(k, A, m * nb);
  freeQ(k, W, n * nb);
  expect(k.heap.usedBytes).toBe(top);
}

// Per element: q8 |w − q·d| ≤ d·(½ + 2⁻¹⁶): q = roundf(fl(w·fl(1/d))) and |fl(w·fl(1/d)) − w/d| ≤
// 127·(2u + u²) < 2⁻¹⁶. q4 |w − (q − 8)·d| ≤ |d|·(½ + 2⁻¹⁹) (|w/d| ≤ 8, so 16u from the scaling and
// ≤ 2⁻²⁰ from adding 8.5), except where the clamp q ≤ 15 bites (w/d > 7.5 − 2⁻¹⁹): ≤ |d|·(1 + 2⁻¹⁹).
function checkQuantError(fmt: Quant, w: Float32Array, t: { q: Int8Array; d: Float32Array }, what: string): void {
  for (let b = 0; b < w.length / 32; b++) {
    const d = t.d[b];
    let amax = 0, first = -1;
    for (let j = 0; j < 32; j++) if (Math.abs(w[b * 32 + j]) > amax) { amax = Math.abs(w[b * 32 + j]); first = j; }
    if (amax === 0) {
      expect(d === 0, `${what} block ${b} d = ${d}`).toBe(true); // Q4_0: 0 / −8 = −0, as llama.cpp
      for (let j = 0; j < 32; j++) expect(t.q[b * 32 + j]).toBe(fmt === 'q8' ? 0 : 8);
      continue;
    }
    if (fmt === 'q8') {
      expect(d).toBe(Math.fround(amax / 127));
      expect(Math.abs(t.q[b * 32 + first])).toBe(127);
    } else {
      expect(d).toBe(Math.fround(w[b * 32 + first] / -8));
      expect((t.q[b * 32 + first] - 8) * d).toBe(w[b * 32 + first]); // the extreme value is exact
    }
    for (let j = 0; j < 32; j++) {
      const v = w[b * 32 + j], q = t.q[b * 32 + j];
      if (fmt === 'q8') {
        expect(Math.abs(q)).toBeLessThanOrEqual(127);
        const err = Math.abs(v - q * d);
        if (!(err <= d * (0.5 + 2 ** -16))) expect.fail(`${what} block ${b} element ${j}: ${v} → ${q}·${d}`);
      } else {
        expect(q >= 0 && q <= 15).toBe(true);
        const clamped = q === 15 && v / d > 7.5 - 2 ** -19;
        const err = Math.abs(v - (q - 8) * d);
        if (!(err <= Math.abs(d) * ((clamped ? 1 : 0.5) + 2 ** -19))) expect.fail(`${what} block ${b} element ${j}: ${v} → (${q} − 8)·${d}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// llama.cpp's blocks, from its published format (ggml-common.h, ggml-quants.c *_ref):
//   block_q8_0 { ggml_half d; int8_t qs[32]; }              34 bytes
//   block_q4_0 { ggml_half d; uint8_t qs[16]; }             18 bytes, qs[j] = x[j] | x[j + 16] << 4
// quantize_row_q8_0_ref: amax = max|x|, d = amax / 127, id = d ? 1/d : 0, qs = roundf(x·id), d → f16.
// quantize_row_q4_0_ref: max = the x of largest |x| (first), d = max / −8, id = d ? 1/d : 0,
//   q = MIN(15, (int8_t)(x·id + 8.5f)), d → f16. Dequantise: q·d and (q − 8)·d in float.

const fr = Math.fround;
const roundf = (v: number) => Math.sign(v) * Math.floor(Math.abs(v) + 0.5); // exact for |v| < 2^52

function llamaQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34), dv = new DataView(out.buffer);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = fr(amax / 127), id = d ? fr(1 / d) : 0;
    dv.setUint16(b * 34, toF16(d), true);
    for (let j = 0; j < 32; j++) dv.setInt8(b * 34 + 2 + j, roundf(fr(x[b * 32 + j] * id)));
  }
  return out;
}

function llamaQ4_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 18), dv = new DataView(out.buffer);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) { const v = x[b * 32 + j]; if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; } }
    const d = fr(max / -8), id = d ? fr(1 / d) : 0;
    dv.setUint16(b * 18, toF16(d), true);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(x[b * 32 + j] * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(x[b * 32 + 16 + j] * id) + 8.5)));
      out[b * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/** llama.cpp's dequantised values of a Q8_0 / Q4_0 row. */
function llamaDequant(fmt: Quant, bytes: Uint8Array, nb: number): Float32Array {
  const size = fmt === 'q8' ? 34 : 18, out = new Float32Array(nb * 32), dv = new DataView(bytes.buffer, bytes.byteOffset);
  for (let b = 0; b < nb; b++) {
    const d = f16Value(dv.getUint16(b * size, true));
    for (let j = 0; j < 32; j++) {
      if (fmt === 'q8') out[b * 32 + j] = fr(dv.getInt8(b * size + 2 + j) * d);
      else {
        const byte = bytes[b * size + 2 + (j & 15)];
        out[b * 32 + j] = fr(((j < 16 ? byte & 15 : byte >> 4) - 8) * d);
      }
    }
  }
  return out;
}

/**
 * Repack llama.cpp blocks into our layout: the code bytes copied, the f16 scales gathered and
 * widened with the kernels' widen_f16 (exact). Returns the pointers.
 */
function repack(k: LoadedKernels, fmt: Quant, bytes: Uint8Array, nb: number): { ptrQ: number; ptrD: number } {
  const size = fmt === 'q8' ? 34 : 18, qBytes = size - 2;
  const ptrQ = alloc(k, nb * qBytes), ptrD = alloc(k, nb * 4), ptrH = alloc(k, nb * 2);
  const h = u16(k, ptrH, nb), q = u8(k, ptrQ, nb * qBytes);
  for (let b = 0; b < nb; b++) {
    h[b] = bytes[b * size] | (bytes[b * size + 1] << 8);
    q.set(bytes.subarray(b * size + 2, (b + 1) * size), b * qBytes);
  }
  k.kernels.widen_f16(ptrH, ptrD, nb);
  k.heap.release(ptrH, Math.max(nb * 2, 16));
  return { ptrQ, ptrD };
}

/** Blocks that exercise the rules' edges, then random ones. */
function llamaTestData(nb: number, seed: number): Float32Array {
  const x = randomF32(nb * 32, seed, -2, 2);
  const blk = (b: number) => x.subarray(b * 32, b * 32 + 32);
  blk(0).fill(0);                                               // d = 0
  blk(1).fill(0); blk(1)[5] = -3.25;                            // one value, negative
  for (let j = 0; j < 32; j++) blk(2)[j] = (j - 16) / 2;        // halves: roundf ties, the clamp
  blk(3).set(blk(4)); blk(3)[3] = 1.5; blk(3)[9] = -1.5;        // |max| tied, opposite signs
  for (let j = 0; j < 32; j++) blk(5)[j] *= 1e-5;               // f16 d subnormal
  for (let j = 0; j < 32; j++) blk(6)[j] *= 3e3;                // large
  for (let j = 0; j < 32; j++) blk(7)[j] = 7 * (j % 2 ? 1 : -1) * (1 + j / 64);
  return x;
}

// ---------------------------------------------------------------------------------------------

describe.each(BUILDS)('narrow-weight kernels, %s build', (build) => {
  it('widen_f16 gives every finite f16 value exactly (subnormals, ±0), widen_bf16 every bf16 value', async () => {
    const k = await kernelsFor(build);
    const n = 65536 + 5; // a scalar tail too
    const hp = alloc(k, n * 2), op = alloc(k, n * 4);
    const h = u16(k, hp, n);
    for (let i = 0; i < n; i++) h[i] = i & 0xffff;
    k.kernels.widen_f16(hp, op, n);
    const got = new Uint32Array(k.heap.memory.buffer, op, n);
    for (let i = 0; i < n; i++) {
      const v = i & 0xffff;
      if ((v & 0x7c00) === 0x7c00) continue; // inf and NaN: never in an f16 matrix (the loader rejects them)
      if (got[i] !== f16AsF32Bits(v)) expect.fail(`f16 0x${v.toString(16)} → 0x${got[i].toString(16)}, expected 0x${f16AsF32Bits(v).toString(16)}`);
    }
    k.kernels.widen_bf16(hp, op, n);
    for (let i = 0; i < n; i++) if (got[i] !== ((i & 0xffff) << 16) >>> 0) expect.fail(`bf16 0x${(i & 0xffff).toString(16)}`);
    k.heap.release(op, n * 4); k.heap.release(hp, n * 2);
  });

  it('matvec_f16 multiplies by every finite f16 weight exactly, in the vector path and the tail', async () => {
    const k = await kernelsFor(build);
    // Row i holds the i-th finite f16 at column i mod 19 (16 vector-path columns, then 3 tail
    // columns) and zeros elsewhere; x is all ones, so y[i] is that weight, unrounded.
    const kk = 19, finite: number[] = [];
    for (let h = 0; h < 65536; h++) if ((h & 0x7c00) !== 0x7c00) finite.push(h);
    const n = finite.length;
    const wp = alloc(k, n * kk * 2), xp = alloc(k, kk * 4), yp = alloc(k, n * 4);
    const w = u16(k, wp, n * kk);
    w.fill(0);
    finite.forEach((h, i) => { w[i * kk + (i % kk)] = h; });
    f32(k, xp, kk).fill(1);
    k.kernels.matvec_f16(wp, kk, xp, yp, n, kk, false);
    const y = f32(k, yp, n);
    finite.forEach((h, i) => { if (y[i] !== f16Value(h)) expect.fail(`f16 0x${h.toString(16)} at column ${i % kk} → ${y[i]}, expected ${f16Value(h)}`); });
    k.heap.release(yp, n * 4); k.heap.release(xp, kk * 4); k.heap.release(wp, n * kk * 2);
  });

  for (const fmt of ['bf16', 'f16'] as Wide[]) {
    it(`matvec_${fmt} / matmul_nt_${fmt}: k of every tail (1, 7, 8, 15, 16, 17, 33, 96, 2080), n = 1 and odd, M = 1, 3, 5`, async () => {
      const k = await kernelsFor(build);
      let seed = 11;
      for (const kk of [1, 7, 8, 15, 16, 17, 33, 96, 2080]) {
        for (const n of [1, 3, 7]) {
          for (const m of [1, 1, 3, 5]) { // m = 1 twice: matvec (even seed) and matmul_nt's m = 1
            checkWide(k, fmt, m, n, kk, seed, seed % 3 === 0);
            seed++;
          }
        }
      }
    });

    it(`matvec_${fmt} on the paired path (rows ≥ 512 KiB apart), odd n, acc and not`, async () => {
      const k = await kernelsFor(build);
      checkWide(k, fmt, 1, 257, 2080, 20, false); // pairs of 128 rows 520 KiB apart, one row left
      checkWide(k, fmt, 1, 301, 2049, 22, true);
    });
  }

  for (const fmt of ['q8', 'q4'] as Quant[]) {
    it(`matvec_${fmt} / matmul_nt_${fmt}: k = 32, 64, 96, 2080; n = 1 and odd; M = 1, 3, 5, 9`, async () => {
      const k = await kernelsFor(build);
      let seed = 101;
      for (const kk of [32, 64, 96, 2080]) {
        for (const n of [1, 3, 7]) {
          for (const m of [1, 1, 3, 5, 9]) {
            checkQuant(k, fmt, m, n, kk, seed, seed % 3 === 0);
            seed++;
          }
        }
      }
    });

    it(`matvec_${fmt} on the paired path (rows ≥ 512 KiB apart), odd n, acc and not`, async () => {
      const k = await kernelsFor(build);
      const n = fmt === 'q8' ? 513 : 1025;
      checkQuant(k, fmt, 1, n, 2080, 200, false);
      checkQuant(k, fmt, 1, n + 2, 2080, 202, true);
    });

    it(`quantize_${fmt}_rows: per-element error within the rule's bound, zero blocks, the extreme value`, async () => {
      const k = await kernelsFor(build);
      const rows = 5, kk = 32 * 9;
      const w = llamaTestData(rows * kk / 32, 300);
      const t = quantiseRows(k, fmt, w, rows, kk);
      checkQuantError(fmt, w, t, `quantize_${fmt}_rows`);
      freeQ(k, t, rows * kk / 32);
    });
  }

  it('quantize_q8_act: Q8_0 rule per block, the same codes as quantize_q8_rows, error within d·(½ + 2⁻¹⁶)', async () => {
    const k = await kernelsFor(build);
    const kk = 32 * 12, x = llamaTestData(kk / 32, 400);
    const A = quantiseAct(k, x, 1, kk);
    checkQuantError('q8', x, A, 'quantize_q8_act');
    const W = quantiseRows(k, 'q8', x, 1, kk);
    expect(Array.from(A.q)).toEqual(Array.from(W.q));
    expect(Array.from(A.d)).toEqual(Array.from(W.d));
    freeQ(k, W, kk / 32); freeQ(k, A, kk / 32);
  });

  for (const fmt of ['q8', 'q4'] as Quant[]) {
    const name = fmt === 'q8' ? 'Q8_0' : 'Q4_0';
    it(`llama.cpp ${name} blocks repack byte for byte: our codes equal theirs, our dequantised values equal theirs exactly`, async () => {
      const k = await kernelsFor(build);
      const nb = 24, x = llamaTestData(nb, 500 + (fmt === 'q8' ? 0 : 1));
      const blocks = fmt === 'q8' ? llamaQ8_0(x) : llamaQ4_0(x);
      const { ptrQ, ptrD } = repack(k, fmt, blocks, nb);
      const outP = alloc(k, nb * 32 * 4);
      (fmt === 'q8' ? k.kernels.dequantize_q8 : k.kernels.dequantize_q4)(ptrQ, ptrD, outP, nb);
      const ours = f32(k, outP, nb * 32), theirs = llamaDequant(fmt, blocks, nb);
      for (let i = 0; i < nb * 32; i++) if (!Object.is(ours[i], theirs[i])) expect.fail(`${name} element ${i}: ${ours[i]} vs llama.cpp ${theirs[i]}`);
      // Our quantiser makes the same codes (it keeps d in f32 where Q8_0 / Q4_0 round it to f16).
      const t = quantiseRows(k, fmt, x, 1, nb * 32);
      const qBytes = fmt === 'q8' ? 32 : 16;
      const ourBytes = u8(k, t.ptrQ, nb * qBytes);
      for (let b = 0; b < nb; b++) {
        expect(Array.from(ourBytes.subarray(b * qBytes, (b + 1) * qBytes)), `${name} block ${b} codes`)
          .toEqual(Array.from(blocks.subarray(b * (qBytes + 2) + 2, (b + 1) * (qBytes + 2))));
        expect(toF16(t.d[b]), `${name} block ${b} scale`).toBe(blocks[b * (qBytes + 2)] | (blocks[b * (qBytes + 2) + 1] << 8));
      }
      freeQ(k, t, nb);
      // And the products read the repacked blocks as llama.cpp's weights: one row of nb blocks.
      const xs = activations(nb * 32, 501), A = quantiseAct(k, xs, 1, nb * 32);
      const yp = alloc(k, 4), prep = prepScratch(k, nb * 32);
      (fmt === 'q8' ? k.kernels.matvec_q8 : k.kernels.matvec_q4)(ptrQ, ptrD, A.ptrQ, A.ptrD, yp, 1, nb * 32, false, prep.ptr);
      prep.free(name);
      let s = 0, sa = 0;
      for (let b = 0; b < nb; b++) {
        for (let j = b * 32; j < b * 32 + 32; j++) { s += theirs[j] * A.q[j] * A.d[b]; sa += Math.abs(theirs[j] * A.q[j] * A.d[b]); }
      }
      expect(Math.abs(f32(k, yp, 1)[0] - s)).toBeLessThanOrEqual(gamma(nb + 5) * sa);
      k.heap.release(yp, 16); freeQ(k, A, nb);
      k.heap.release(outP, nb * 128); k.heap.release(ptrD, nb * 4); k.heap.release(ptrQ, nb * qBytes);
    });
  }

  it('probe_matvec runs the products matvec runs: the same y, bit for bit, every format', async () => {
    const k = await kernelsFor(build);
    const K = k.kernels, top = k.heap.usedBytes;
    const n = 2, kk = 96, reps = 3;
    const w = randomF32(n * kk, 41, -1, 1), x = activations(kk, 42);
    const A = quantiseAct(k, x, 1, kk);
    const xp = alloc(k, kk * 4); f32(k, xp, kk).set(x);
    const wp = alloc(k, n * kk * 4); f32(k, wp, n * kk).set(w);
    const hp = alloc(k, n * kk * 2);
    const bits = new Uint32Array(w.buffer);
    u16(k, hp, n * kk).set(Array.from(bits, (b) => b >>> 16));
    const yp = alloc(k, n * 4), yq = alloc(k, n * 4);
    const same = (what: string) => expect(Array.from(f32(k, yq, n)), what).toEqual(Array.from(f32(k, yp, n)));
    K.matvec(wp, kk, xp, yp, n, kk, false);
    K.probe_matvec(4, wp, 0, xp, 0, yq, n, kk, reps, 0); same('f32');
    K.matvec_bf16(hp, kk, xp, yp, n, kk, false);
    K.probe_matvec(0, hp, 0, xp, 0, yq, n, kk, reps, 0); same('bf16');
    K.matvec_f16(hp, kk, xp, yp, n, kk, false);
    K.probe_matvec(1, hp, 0, xp, 0, yq, n, kk, reps, 0); same('f16');
    for (const [code, fmt] of [[2, 'q8'], [3, 'q4']] as const) {
      const W = quantiseRows(k, fmt, w, n, kk), prep = prepScratch(k, kk);
      (fmt === 'q8' ? K.matvec_q8 : K.matvec_q4)(W.ptrQ, W.ptrD, A.ptrQ, A.ptrD, yp, n, kk, false, prep.ptr);
      K.probe_matvec(code, W.ptrQ, W.ptrD, A.ptrQ, A.ptrD, yq, n, kk, reps, prep.ptr); same(fmt);
      prep.free(`probe_matvec ${fmt}`);
      freeQ(k, W, n * kk / 32);
    }
    k.heap.release(yq, 16); k.heap.release(yp, 16); k.heap.release(hp, n * kk * 2);
    k.heap.release(wp, n * kk * 4); k.heap.release(xp, kk * 4); freeQ(k, A, kk / 32);
    expect(k.heap.usedBytes).toBe(top);
  });

  it('n = 0 writes nothing; k = 0 writes zeros, or with acc leaves y', async () => {
    const k = await kernelsFor(build);
    const K = k.kernels;
    const out = output(k, 1, 4, 4, null);
    K.matvec_bf16(0, 0, 0, out.ptr, 0, 5, false); K.matvec_f16(0, 0, 0, out.ptr, 0, 5, false);
    K.matvec_q8(0, 0, 0, 0, out.ptr, 0, 32, false, 0); K.matvec_q4(0, 0, 0, 0, out.ptr, 0, 32, false, 0);
    K.matmul_nt_q8(0, 0, 0, 0, out.ptr, 4, 0, 32, 4, false, 0); K.matmul_nt_bf16(0, 1, 0, 1, out.ptr, 4, 3, 5, 0, false);
    expect(Array.from(out.read('n = 0'))).toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
    for (const f of [K.matvec_bf16, K.matvec_f16]) {
      f32(k, out.ptr, 4).fill(2); f(0, 0, 0, out.ptr, 4, 0, true);
      expect(Array.from(out.read('k = 0 acc'))).toEqual([2, 2, 2, 2]);
      f(0, 0, 0, out.ptr, 4, 0, false);
      expect(Array.from(out.read('k = 0'))).toEqual([0, 0, 0, 0]);
    }
    for (const f of [K.matvec_q8, K.matvec_q4]) {
      f32(k, out.ptr, 4).fill(2); f(0, 0, 0, 0, out.ptr, 4, 0, false, 0);
      expect(Array.from(out.read('q k = 0'))).toEqual([0, 0, 0, 0]);
    }
    k.heap.release(out.ptr - 32, (4 + 16) * 4);
  });
});
