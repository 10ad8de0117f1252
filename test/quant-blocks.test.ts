// The TypeScript Q8_0/Q4_0 quantisers and f16/bf16 rounding that write GGUF files, byte for byte
// against an independent numpy implementation written as gguf-py computes them
// (test/reference/ggml-quants.py), on awkward blocks: all zeros, ties, a negative largest value,
// tiny scales (subnormal f16), huge values (f16 overflow), NaN-free random data. And decoding:
// Q8_0/Q4_0 blocks back to f32 as ggml's dequantize_row_* does.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeRow, f32ToBf16Bits, f32ToF16Bits, f16BitsToF32, quantizeQ4_0, quantizeQ8_0 } from '../src/formats/quant-blocks.js';
import { randomF32 } from './helpers.js';

const SCRIPT = fileURLToPath(new URL('./reference/ggml-quants.py', import.meta.url));
const probe = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const numpyReason = probe.error ? `python3: ${probe.error.message}` : probe.status !== 0 ? `python3 has no numpy: ${probe.stderr.trim()}` : '';
if (numpyReason) console.log(`quant-blocks: byte comparisons with numpy skipped (${numpyReason})`);

function numpyRef(x: Float32Array): Uint8Array[] {
  const r = spawnSync('python3', [SCRIPT], { input: new Uint8Array(x.buffer), maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`ggml-quants.py failed: ${r.stderr}`);
  const out: Uint8Array[] = [];
  for (let at = 0; at < r.stdout.length;) {
    const n = Number(r.stdout.readBigUInt64LE(at));
    out.push(new Uint8Array(r.stdout.subarray(at + 8, at + 8 + n)));
    at += 8 + n;
  }
  return out;
}

/** 64 awkward blocks of 32, then random blocks of several scales. */
function awkward(): Float32Array {
  const blocks: number[][] = [];
  blocks.push(new Array(32).fill(0));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j % 2 ? -0 : 0)));
  blocks.push(Array.from({ length: 32 }, (_, j) => j - 16));                     // max is −16 (negative)
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 5 ? -3 : j === 9 ? 3 : 0.25 * j))); // |max| tie: first wins
  blocks.push(Array.from({ length: 32 }, (_, j) => (j + 0.5) * (127 / 64)));      // codes land on .5
  blocks.push(Array.from({ length: 32 }, (_, j) => (j - 16) * 1e-8));            // scales subnormal in f16
  blocks.push(Array.from({ length: 32 }, (_, j) => (j - 16) * 1e-30));           // scales flush to zero in f16
  blocks.push(Array.from({ length: 32 }, (_, j) => (j - 15.5) * 1e5));           // scales overflow f16
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 31 ? 1 : 0)));
  blocks.push(Array.from({ length: 32 }, (_, j) => (j === 0 ? -1 : 1e-3 * j)));
  for (let i = 0; i < 54; i++) {
    const scale = 10 ** ((i % 9) - 4);
    blocks.push(Array.from(randomF32(32, 100 + i, -scale, scale)));
  }
  return new Float32Array(blocks.flat());
}

describe('ggml block quantisation', () => {
  const x = awkward();

  it.skipIf(!!numpyReason)('Q8_0, Q4_0, f16 and bf16: byte for byte as gguf-py (numpy)', () => {
    const more = randomF32(32 * 512, 7, -3, 3);
    for (const values of [x, more]) {
      const [q8, q4, f16, bf16] = numpyRef(values);
      const mine8 = new Uint8Array((values.length / 32) * 34), mine4 = new Uint8Array((values.length / 32) * 18);
      quantizeQ8_0(values, mine8);
      quantizeQ4_0(values, mine4);
      expect(mine8).toEqual(q8);
      expect(mine4).toEqual(q4);
      expect(new Uint8Array(new Uint16Array(Array.from(values, f32ToF16Bits)).buffer)).toEqual(f16);
      expect(new Uint8Array(new Uint16Array(Array.from(values, f32ToBf16Bits)).buffer)).toEqual(bf16);
    }
  });

  it('f16 rounding: ties to even, subnormals, overflow, signed zero, NaN', () => {
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);            // tie, to even (down)
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);        // tie, to even (up)
    expect(f32ToF16Bits(2 ** -24)).toBe(1);                     // least subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0);                     // tie between 0 and 2^-24: even
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(2);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(NaN) & 0x7e00).toBe(0x7e00);
    for (let h = 0; h < 0x7c00; h += 7) expect(f32ToF16Bits(f16BitsToF32(h))).toBe(h);
  });

  it('decoding: x = q·d (Q8_0) and (nibble − 8)·d (Q4_0), rounded once to f32', () => {
    const q8 = new Uint8Array((x.length / 32) * 34), q4 = new Uint8Array((x.length / 32) * 18);
    quantizeQ8_0(x, q8);
    quantizeQ4_0(x, q4);
    const out8 = new Float32Array(x.length), out4 = new Float32Array(x.length);
    decodeRow('Q8_0', q8, 0, x.length, out8, 0);
    decodeRow('Q4_0', q4, 0, x.length, out4, 0);
    const v8 = new DataView(q8.buffer), v4 = new DataView(q4.buffer);
    for (let i = 0; i < x.length; i++) {
      const b = Math.floor(i / 32), j = i % 32;
      const d8 = f16BitsToF32(v8.getUint16(b * 34, true));
      expect(out8[i]).toBe(Math.fround(v8.getInt8(b * 34 + 2 + j) * d8));
      const d4 = f16BitsToF32(v4.getUint16(b * 18, true));
      const byte = q4[b * 18 + 2 + (j % 16)];
      expect(out4[i]).toBe(Math.fround(((j < 16 ? byte & 15 : byte >> 4) - 8) * d4));
    }
  });

  it('decoding Q5_0 and Q5_1 (llama.cpp\'s fallbacks in K-quant mixes): hand-made blocks, values written out', () => {
    // Q5_0: d = 0.5 (f16 0x3800), qh = bits 0, 17 and 31, qs[0] = 0x3a, qs[1] = 0xf0, qs[15] = 0x81.
    const q50 = new Uint8Array(22), v0 = new DataView(q50.buffer);
    v0.setUint16(0, 0x3800, true);
    v0.setUint32(2, (1 << 0) | (1 << 17) | (1 << 31) >>> 0, true);
    q50.set([0x3a, 0xf0], 6); q50[6 + 15] = 0x81;
    const out0 = new Float32Array(32);
    decodeRow('Q5_0', q50, 0, 32, out0, 0);
    // Value j < 16: low nibble of qs[j] | bit j of qh << 4, minus 16; value j + 16: high nibble | bit j + 16.
    const want0: [number, number][] = [[0, (10 + 16 - 16) * 0.5], [1, (0 - 16) * 0.5], [15, (1 - 16) * 0.5], [16, (3 - 16) * 0.5],
      [17, (15 + 16 - 16) * 0.5], [31, (8 + 16 - 16) * 0.5], [2, -8]];
    for (const [j, x] of want0) expect(out0[j], `Q5_0 value ${j}`).toBe(x);
    // Q5_1: the same codes, d = 0.5, m = −2 (f16 0xc000), no offset: q·d + m.
    const q51 = new Uint8Array(24), v1 = new DataView(q51.buffer);
    v1.setUint16(0, 0x3800, true); v1.setUint16(2, 0xc000, true);
    v1.setUint32(4, (1 << 0) | (1 << 17) | (1 << 31) >>> 0, true);
    q51.set([0x3a, 0xf0], 8); q51[8 + 15] = 0x81;
    const out1 = new Float32Array(32);
    decodeRow('Q5_1', q51, 0, 32, out1, 0);
    const want1: [number, number][] = [[0, 26 * 0.5 - 2], [1, -2], [15, 0.5 - 2], [16, 3 * 0.5 - 2], [17, 31 * 0.5 - 2], [31, 24 * 0.5 - 2], [2, -2]];
    for (const [j, x] of want1) expect(out1[j], `Q5_1 value ${j}`).toBe(x);
  });
});
