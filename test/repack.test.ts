// Q3_K, Q5_0, IQ4_NL and IQ4_XS: decodeRow against an independent numpy dequantiser written from
// ggml's block layouts (test/reference/ggml-quants.py), and the exact repacks (src/formats/repack.ts)
// into Q6_K super-blocks and q8 blocks giving back those values bit for bit, on random blocks and
// on the extremes: every scale at its ends (Q3_K s = 0 → −32 and 63; IQ4_XS ls = 0 and 63), every
// code at its ends (Q3_K q = −4 and 3; IQ4 nibbles 0 and 15), f16 scales from subnormal to 65504.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeRow, f32ToF16Bits } from '../src/formats/quant-blocks.js';
import { q3kToQ6k, toQ8, type Q8RepackedType } from '../src/formats/repack.js';

const SCRIPT = fileURLToPath(new URL('./reference/ggml-quants.py', import.meta.url));
const probe = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const numpyReason = probe.error ? `python3: ${probe.error.message}` : probe.status !== 0 ? `python3 has no numpy: ${probe.stderr.trim()}` : '';
if (numpyReason) console.log(`repack: comparisons with numpy skipped (${numpyReason})`);

const SPEC = { Q3_K: { bytes: 110, values: 256, d: 108 }, Q5_0: { bytes: 22, values: 32, d: 0 }, IQ4_NL: { bytes: 18, values: 32, d: 0 }, IQ4_XS: { bytes: 136, values: 256, d: 0 } } as const;
type Type = keyof typeof SPEC;
const TYPES = Object.keys(SPEC) as Type[];

/** A small deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

/** f16 scales worth trying: ±65504, 1, subnormals, zero, and random finite ones. */
const SCALES = [65504, -65504, 1, -1, 2 ** -24, -(2 ** -24), 2 ** -14, 0, 0.0123, -3.5];

/**
 * `blocks` random blocks of `type`, with finite f16 scales, then the extremes: a block with every
 * byte 0x00 and one with every byte 0xff (but the scale) at each scale of SCALES.
 */
function blocksOf(type: Type, blocks: number, seed: number): Uint8Array {
  const { bytes, d } = SPEC[type], next = rng(seed);
  const out = new Uint8Array((blocks + 2 * SCALES.length) * bytes), view = new DataView(out.buffer);
  for (let i = 0; i < out.length; i++) out[i] = next() & 255;
  for (let b = 0; b < blocks; b++) {
    let h = next() & 0xffff;
    if ((h & 0x7c00) === 0x7c00) h &= 0xbfff; // no Inf/NaN scale
    view.setUint16(b * bytes + d, h, true);
  }
  SCALES.forEach((s, i) => {
    for (const [k, fill] of [[0, 0x00], [1, 0xff]]) {
      const at = (blocks + 2 * i + k) * bytes;
      out.fill(fill, at, at + bytes);
      view.setUint16(at + d, f32ToF16Bits(s), true);
    }
  });
  return out;
}

const decode = (type: string, raw: Uint8Array, n: number) => {
  const out = new Float32Array(n);
  decodeRow(type, raw, 0, n, out, 0);
  return out;
};
const bitsOf = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);

describe('repacked GGUF types', () => {
  it.skipIf(!!numpyReason).each(TYPES)('%s: decodeRow gives the numpy dequantiser\'s values bit for bit', (type) => {
    const raw = blocksOf(type, 400, 11), n = (raw.length / SPEC[type].bytes) * SPEC[type].values;
    const r = spawnSync('python3', [SCRIPT, 'dequant', type], { input: raw, maxBuffer: 1 << 28 });
    expect(r.status, String(r.stderr)).toBe(0);
    const ref = new Float32Array(new Uint8Array(r.stdout).buffer);
    expect(ref.length).toBe(n);
    const mine = decode(type, raw, n);
    expect(mine.every(Number.isFinite)).toBe(true);
    expect(bitsOf(mine)).toEqual(bitsOf(ref));
  });

  it('Q3_K → Q6_K: the same values bit for bit, extremes included', () => {
    const raw = blocksOf('Q3_K', 400, 5), blocks = raw.length / 110;
    const q6 = new Uint8Array(blocks * 210);
    for (let b = 0; b < blocks; b++) q3kToQ6k(raw, b * 110, q6, b * 210);
    expect(bitsOf(decode('Q6_K', q6, blocks * 256))).toEqual(bitsOf(decode('Q3_K', raw, blocks * 256)));
    // The all-zero block at scale 65504: s = 0 and q = −4 everywhere, so 65504·(−32)·(−4).
    const zeros = 400 * 256;
    expect(decode('Q6_K', q6, blocks * 256)[zeros]).toBe(65504 * 128);
    expect(new Int8Array(q6.buffer, 400 * 210 + 192, 16)).toEqual(new Int8Array(16).fill(-32));
  });

  it.each(['Q5_0', 'IQ4_NL', 'IQ4_XS'] as const)('%s → q8: codes × scale are the values bit for bit, codes within −127..127', (type: Q8RepackedType) => {
    const raw = blocksOf(type, 400, 7), n = (raw.length / SPEC[type].bytes) * SPEC[type].values;
    const q = new Int8Array(n), d = new Float32Array(n / 32);
    toQ8(type, raw, 0, n, q, 0, d, 0);
    const back = new Float32Array(n);
    for (let i = 0; i < n; i++) back[i] = q[i] * d[i >> 5];
    expect(bitsOf(back)).toEqual(bitsOf(decode(type, raw, n)));
    expect(Math.min(...q)).toBeGreaterThanOrEqual(-127);
    const ends = type === 'Q5_0' ? [-16, 15] : [-127, 113];
    expect([Math.min(...q), Math.max(...q)]).toEqual(ends);
    if (type === 'IQ4_XS') {
      // The all-zero block (ls = 0) and the all-ones one (ls = 63) at scale 65504: −32·d and 31·d.
      const at = 400 * 8;
      expect([d[at], d[at + 8]]).toEqual([65504 * -32, 65504 * 31]);
    }
  });
});
