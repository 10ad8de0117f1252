// The narrow latent cache's kernels (assembly/latent.ts): rows written in bf16/int8/int4 and read
// back within each format's bound; query records; attn_block_latent against a float64 reference
// computed on the dequantised rows and the quantised queries, decoded here from the bytes as the
// layout says (not through the kernels), on awkward sizes, in both builds.
import { describe, expect, it } from 'vitest';
import { BUILDS, expectClose, kernelsFor, rng } from '../helpers.js';
import type { SimdBuild } from '../../src/host/wasm.js';
import { attend } from '../reference/ops.js';
import { KvCache } from '../../src/model/kv-cache.js';
import type { MlaAttention } from '../../src/formats/config.js';

const FORMATS = { bf16: 1, int8: 2, int4: 3 } as const;
type Fmt = keyof typeof FORMATS;
const ceil32 = (n: number) => Math.ceil(n / 32) * 32;

/** Bytes before a row's scale (int) or k^R (bf16). */
const codeBytes = (f: Fmt, dc: number) => f === 'bf16' ? 2 * dc : f === 'int8' ? ceil32(dc) : ceil32(dc) / 2;
const bf16 = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];

/** A row's [c_kv ; k^R] as the layout documents it, decoded from its bytes. */
function decodeRow(f: Fmt, bytes: Uint8Array, dc: number, dr: number): Float64Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(dc + dr);
  const cb = codeBytes(f, dc), d = f === 'bf16' ? 1 : v.getFloat32(cb, true);
  for (let i = 0; i < dc; i++) {
    if (f === 'bf16') out[i] = bf16(v.getUint16(2 * i, true));
    else if (f === 'int8') out[i] = v.getInt8(i) * d;
    else {
      const w = i % 32, byte = v.getUint8(Math.floor(i / 32) * 16 + (w % 16));
      out[i] = (((w < 16 ? byte : byte >> 4) & 15) - 8) * d;
    }
  }
  const kr = cb + (f === 'bf16' ? 0 : 8); // int8/int4: the scale, then the sum of the codes
  for (let i = 0; i < dr; i++) out[dc + i] = bf16(v.getUint16(kr + 2 * i, true));
  return out;
}

/** An int8/int4 row's codes (the signed values, padding included) summed, and the sum it stores. */
function codeSums(f: 'int8' | 'int4', bytes: Uint8Array, dc: number): [number, number] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let sum = 0;
  for (let i = 0; i < ceil32(dc); i++) {
    if (f === 'int8') sum += v.getInt8(i);
    else {
      const w = i % 32, byte = v.getUint8(Math.floor(i / 32) * 16 + (w % 16));
      sum += ((w < 16 ? byte : byte >> 4) & 15) - 8;
    }
  }
  return [sum, v.getInt32(codeBytes(f, dc) + 4, true)];
}

/**
 * A query record's [q̃ ; q^R] (int8/int4 caches: codes · d; bf16: the f32 query itself). The
 * simd build's codes are i16 (|code| ≤ 127), the relaxed build's bytes code + 64 (|code| ≤ 63).
 */
function decodeQuery(build: SimdBuild, f: Fmt, bytes: Uint8Array, dc: number, dr: number): Float64Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(dc + dr);
  if (f === 'bf16') { for (let i = 0; i < dc + dr; i++) out[i] = v.getFloat32(4 * i, true); return out; }
  const { codes, code, ropeAt } = queryLayout(build);
  const n = ceil32(dc), d = v.getFloat32(codes * n, true);
  for (let i = 0; i < dc; i++) out[i] = code(v, i) * d;
  for (let i = 0; i < dr; i++) out[dc + i] = v.getFloat32(codes * n + 4 + 4 * ropeAt(i, dr), true);
  return out;
}

/**
 * Where a build's query record keeps code i, bytes per code, the largest |code|, and the slot of
 * q^R value i (relaxed: in each whole 8 the even values, then the odd ones; the rest in order).
 */
function queryLayout(build: SimdBuild): { codes: number; qmax: number; code: (v: DataView, i: number) => number; ropeAt: (i: number, dr: number) => number } {
  return build === 'relaxed'
    ? { codes: 1, qmax: 63, code: (v, i) => v.getUint8(i) - 64, ropeAt: (i, dr) => i < (dr & ~7) ? (i & ~7) + (i % 2) * 4 + ((i % 8) >> 1) : i }
    : { codes: 2, qmax: 127, code: (v, i) => v.getInt16(2 * i, true), ropeAt: (i) => i };
}

const roundEven = (x: number) => { const r = Math.round(x); return Math.abs(x % 1) === 0.5 && r % 2 ? r - 1 : r; };

describe.each(BUILDS)('latent cache kernels, %s build', (build) => {
  it('KvCache sizes rows as the kernels lay them out (latent_row_bytes), for every d_c and d_r tail', async () => {
    const k = await kernelsFor(build);
    for (const dc of [1, 15, 16, 31, 32, 33, 48, 64, 100, 512]) {
      for (const dr of [1, 7, 8, 16, 64]) {
        const a: MlaAttention = { kind: 'mla', heads: 1, qLoraRank: null, kvLoraRank: dc, nopeDim: 8, ropeDim: dr, vDim: 8, latentNorm: true };
        for (const f of Object.keys(FORMATS) as Fmt[]) expect(KvCache.rowBytesOf(a, f)).toBe(k.kernels.latent_row_bytes(FORMATS[f], dc, dr));
      }
    }
  });

  for (const f of Object.keys(FORMATS) as Fmt[]) {
    const fmt = FORMATS[f];

    it(`latent_store (${f}): each value within the format's bound; padding is zero; the codes' sum is stored; latent_widen reads what the layout says`, async () => {
      const k = await kernelsFor(build);
      for (const [dc, dr] of [[1, 1], [5, 3], [48, 16], [67, 9], [512, 64]]) {
        const rows = 3, R = k.kernels.latent_row_bytes(fmt, dc, dr);
        expect(R % 16).toBe(0);
        const r = rng(dc * 31 + dr);
        const x = Float32Array.from({ length: rows * (dc + dr) }, () => r(-3, 3));
        x.fill(0, dc + dr, dc + dr + dc); // row 1's c_kv all zero: d = 0, codes 0
        x[2 * (dc + dr)] = 0.5; // row 2: one value far above the rest sets d
        const src = k.heap.alloc(x.length * 4), dst = k.heap.alloc(rows * R + 64), wide = k.heap.alloc(x.length * 4);
        try {
          k.heap.f32(src, x.length).set(x);
          new Uint8Array(k.heap.memory.buffer, dst, rows * R + 64).fill(0xAB);
          k.kernels.latent_store(fmt, src, dc + dr, rows, dc, dr, dst, R);
          const mem = new Uint8Array(k.heap.memory.buffer);
          expect([...mem.subarray(dst + rows * R, dst + rows * R + 64)].every((b) => b === 0xAB)).toBe(true);
          k.kernels.latent_widen(fmt, dst, R, rows, dc, dr, wide, dc + dr);
          const widened = k.heap.f32(wide, x.length);
          for (let row = 0; row < rows; row++) {
            const bytes = mem.slice(dst + row * R, dst + (row + 1) * R);
            const got = decodeRow(f, bytes, dc, dr);
            const xs = x.subarray(row * (dc + dr), (row + 1) * (dc + dr));
            let amax = 0;
            for (let i = 0; i < dc; i++) amax = Math.max(amax, Math.abs(xs[i]));
            const bound = f === 'bf16' ? 0 : amax / (f === 'int8' ? 127 : 7) * (0.5 + 1e-6);
            for (let i = 0; i < dc + dr; i++) {
              // bf16: half an ulp, ≤ 2⁻⁸ of the value; int: half a step of the row's scale.
              const tol = i >= dc || f === 'bf16' ? Math.abs(xs[i]) * 2 ** -8 : bound;
              if (!(Math.abs(got[i] - xs[i]) <= tol)) expect.fail(`${f} dc ${dc} dr ${dr} row ${row} value ${i}: ${got[i]} for ${xs[i]}`);
              expect(widened[row * (dc + dr) + i]).toBe(Math.fround(got[i]));
            }
            if (f !== 'bf16') {
              // Codes past dc are 0 (int4: nibble 8), so they add nothing to a dot product.
              for (let i = dc; i < ceil32(dc); i++) {
                const w = i % 32, byte = bytes[f === 'int8' ? i : Math.floor(i / 32) * 16 + (w % 16)];
                expect(f === 'int8' ? byte : ((w < 16 ? byte : byte >> 4) & 15)).toBe(f === 'int8' ? 0 : 8);
              }
              if (row === 1) expect(new DataView(bytes.buffer).getFloat32(codeBytes(f, dc), true)).toBe(0);
              const [sum, stored] = codeSums(f, bytes, dc);
              expect(stored, `${f} dc ${dc} row ${row}: the stored sum of the codes`).toBe(sum);
            }
          }
        } finally {
          k.heap.release(src, x.length * 4); k.heap.release(dst, rows * R + 64); k.heap.release(wide, x.length * 4);
        }
      }
    });
  }

  it('latent_query: q̃ rounded to codes (ties to even) of d = max|q̃| / qmax (simd 127, relaxed 63), q^R copied as f32 (relaxed: evens, then odds, per 8)', async () => {
    const k = await kernelsFor(build);
    for (const [dc, dr] of [[1, 0], [5, 3], [48, 16], [67, 9]]) {
      const nq = 3, Q = k.kernels.latent_query_bytes(2, dc, dr), stride = dc + dr + 2;
      const r = rng(dc);
      const x = Float32Array.from({ length: nq * stride }, () => r(-2, 2));
      const src = k.heap.alloc(x.length * 4), dst = k.heap.alloc(nq * Q);
      try {
        k.heap.f32(src, x.length).set(x);
        k.kernels.latent_query(src, stride, nq, dc, dr, dst, Q);
        for (let q = 0; q < nq; q++) {
          const v = new DataView(k.heap.memory.buffer, dst + q * Q, Q);
          const xs = x.subarray(q * stride, q * stride + dc + dr);
          let amax = 0;
          for (let i = 0; i < dc; i++) amax = Math.max(amax, Math.abs(xs[i]));
          const { codes, qmax, code, ropeAt } = queryLayout(build);
          const inv = Math.fround(qmax / Math.fround(amax)), n = ceil32(dc);
          expect(v.getFloat32(codes * n, true)).toBe(Math.fround(Math.fround(amax) / qmax));
          for (let i = 0; i < n; i++) expect(code(v, i)).toBe(i < dc ? roundEven(Math.fround(xs[i] * inv)) : 0);
          for (let i = 0; i < dr; i++) expect(v.getFloat32(codes * n + 4 + 4 * ropeAt(i, dr), true)).toBe(xs[dc + i]);
        }
      } finally {
        k.heap.release(src, x.length * 4); k.heap.release(dst, nq * Q);
      }
    }
  });

  for (const f of Object.keys(FORMATS) as Fmt[]) {
    const fmt = FORMATS[f];
    // [nq, qGroup, qPos0, dc, dr, n, kPos0]: decode (one position, nq heads), prefill (causal), one key, odd counts.
    const shapes: [number, number, number, number, number, number, number][] = [
      [2, 2, 0, 48, 16, 1, 0], [3, 3, 0, 48, 16, 1, 0], [4, 4, 0, 48, 16, 1, 0], [1, 1, 4, 48, 16, 5, 0], [1, 1, 0, 48, 16, 1, 0], [6, 6, 4, 48, 16, 5, 0], [16, 16, 130, 512, 64, 131, 0], [7, 7, 70, 67, 9, 71, 0],
      [5, 5, 40, 1, 1, 41, 0], [3 * 6, 6, 60, 48, 16, 63, 0], [4 * 5, 5, 9, 40, 8, 13, 0], [9, 3, 3, 33, 3, 6, 0],
    ];
    it(`attn_block_latent (${f}) equals the float64 reference on the dequantised rows and queries`, async () => {
      const k = await kernelsFor(build);
      for (const [nq, qGroup, qPos0, dc, dr, n, kPos0] of shapes) {
        const R = k.kernels.latent_row_bytes(fmt, dc, dr), Q = k.kernels.latent_query_bytes(fmt, dc, dr);
        const r = rng(nq * 7 + dc);
        const lat = dc + dr;
        const keys = Float32Array.from({ length: n * lat }, () => r(-1, 1));
        const qs = Float32Array.from({ length: nq * lat }, () => r(-1, 1));
        const scale = 1 / Math.sqrt(lat);
        const blocks = [[n], n > 3 ? [1, n - 3, 2] : [n]];
        const alloc: [number, number][] = [];
        const A = (bytes: number) => { const p = k.heap.alloc(bytes); alloc.push([p, bytes]); return p; };
        try {
          const kf = A(keys.length * 4), rows = A(n * R), qf = A(qs.length * 4), qr = f === 'bf16' ? qf : A(nq * Q);
          k.heap.f32(kf, keys.length).set(keys); k.heap.f32(qf, qs.length).set(qs);
          k.kernels.latent_store(fmt, kf, lat, n, dc, dr, rows, R);
          if (f !== 'bf16') k.kernels.latent_query(qf, lat, nq, dc, dr, qr, Q);
          const mem = () => new Uint8Array(k.heap.memory.buffer);
          const kd = Array.from({ length: n }, (_, b) => decodeRow(f, mem().slice(rows + b * R, rows + (b + 1) * R), dc, dr));
          const qd = Array.from({ length: nq }, (_, q) => decodeQuery(build, f, mem().slice(qr + q * Q, qr + (q + 1) * Q), dc, dr));
          const expected = qd.map((q, i) => {
            const seen = kd.filter((_, b) => kPos0 + b <= qPos0 + Math.floor(i / qGroup));
            return attend(q, seen, seen.map((row) => row.subarray(0, dc)), Math.fround(scale));
          });
          const m = A(nq * 4), l = A(nq * 4), acc = A(nq * (dc + 1) * 4), scratch = A(k.kernels.attn_scratch_bytes(nq));
          for (const bl of blocks) {
            k.kernels.attn_init(m, l, acc, nq, dc, dc + 1);
            let start = 0;
            for (const nb of bl) {
              k.kernels.attn_block_latent(fmt, qr, Q / 4, nq, qPos0, qGroup, dc, dr, rows + start * R, R / 4, nb, kPos0 + start, scale,
                m, l, acc, dc + 1, scratch);
              start += nb;
            }
            k.kernels.attn_finish(l, acc, dc + 1, nq, dc, acc, dc + 1);
            const got = k.heap.f32(acc, nq * (dc + 1));
            const g = new Float32Array(nq * dc), e = new Float64Array(nq * dc);
            for (let q = 0; q < nq; q++) { g.set(got.subarray(q * (dc + 1), q * (dc + 1) + dc), q * dc); e.set(expected[q], q * dc); }
            const what = `${f} nq ${nq} dc ${dc} dr ${dr} n ${n} blocks [${bl}]`;
            if (f === 'bf16') {
              // f32 products and sums over ≤ 131 keys of values |v| ≤ 1: as attn_block's tolerance.
              expectClose(g, e, 1e-5, 5e-7, what);
            } else {
              // int8/int4 rows sum the values with their weights p_b·d_b rounded to W levels (per
              // query and block of keys, step max(p·d) / W ≤ max d / W, p ≤ 1 and l ≥ 1 once
              // finished; simd W = 32767 (i16), relaxed W = 127 (7 bits)):
              // |error| ≤ Σ_b (max d / 2W)·|code_b| per column, on top of attn_block's tolerance.
              const W = build === 'relaxed' ? 127 : 32767;
              const d = kd.map((_, b) => new DataView(mem().buffer, rows + b * R).getFloat32(codeBytes(f, dc), true));
              const maxD = Math.max(...d);
              const bound = new Float64Array(nq * dc);
              for (let q = 0; q < nq; q++) {
                for (let b = 0; b < n; b++) {
                  if (kPos0 + b > qPos0 + Math.floor(q / qGroup) || d[b] === 0) continue;
                  for (let c = 0; c < dc; c++) bound[q * dc + c] += maxD / (2 * W) * Math.abs(kd[b][c] / d[b]);
                }
              }
              for (let i = 0; i < g.length; i++) {
                const tol = 5e-7 + 1e-5 * Math.abs(e[i]) + bound[i];
                if (!(Math.abs(g[i] - e[i]) <= tol)) expect.fail(`${what}: index ${i} is ${g[i]}, expected ${e[i]} ± ${tol}`);
              }
              // The rounding is unbiased: on average far inside the bound (a wrong index or scale is O(1)).
              let sum = 0, room = 0;
              for (let i = 0; i < g.length; i++) { sum += Math.abs(g[i] - e[i]); room += bound[i]; }
              if (build === 'relaxed') expect(sum, what).toBeLessThan(0.1 * room);
              else expect(sum / g.length, what).toBeLessThan(2e-5);
            }
          }
        } finally {
          for (const [p, b] of alloc) k.heap.release(p, b);
        }
      }
    });
  }
});
