// ggml's block formats in plain TypeScript, for reading and writing GGUF files:
//   Q8_0  32 values per 34-byte block: f16 scale d, then 32 int8 codes; x = q·d.
//   Q4_0  32 values per 18-byte block: f16 scale d, then 16 bytes; value j in the low nibble of
//         byte j, value j + 16 in the high nibble; x = (nibble − 8)·d.
//   Q3_K, IQ4_NL, IQ4_XS and the other types read are decoded below, as dequantize_row_* does.
// Quantising follows ggml's reference rounding (quantize_row_q8_0_ref / _q4_0_ref, and gguf-py's
// numpy twins) operation by operation in f32, so a block comes out byte for byte as llama.cpp's.
import { halfToFloatBits } from './safetensors.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The f16 bit pattern nearest to the f32 value x (ties to even, overflow to ±Inf, NaN → 0x7e00). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const a = bits & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x477ff000) return sign | 0x7c00; // 65520 and above round to infinity
  if (a < 0x38800000) {
    // Below the least normal half: a multiple of 2^-24, rounded half to even (exact in a double).
    f32[0] = Math.abs(x);
    const v = f32[0] * 2 ** 24, fl = Math.floor(v), diff = v - fl;
    return sign | (diff > 0.5 || (diff === 0.5 && fl % 2 === 1) ? fl + 1 : fl);
  }
  let h = ((((a >>> 23) - 127 + 15) << 10) | ((a & 0x7fffff) >>> 13)) >>> 0;
  const rest = a & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** The bf16 bit pattern nearest to the f32 value x (ties to even; NaN stays a quiet NaN), as ggml. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

export function f16BitsToF32(h: number): number {
  u32[0] = halfToFloatBits()[h];
  return f32[0];
}

/** round() of C: half away from zero. */
const roundAway = (v: number) => (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5));

/** Quantise n values (n a multiple of 32) of `x` into Q8_0 blocks at `out[at…]`. */
export function quantizeQ8_0(x: ArrayLike<number>, out: Uint8Array, at = 0): void {
  const view = new DataView(out.buffer, out.byteOffset);
  for (let b = 0; b < x.length / 32; b++, at += 34) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(at, f32ToF16Bits(d), true);
    for (let j = 0; j < 32; j++) view.setInt8(at + 2 + j, roundAway(Math.fround(x[b * 32 + j] * id)));
  }
}

/** Quantise n values (n a multiple of 32) of `x` into Q4_0 blocks at `out[at…]`. */
export function quantizeQ4_0(x: ArrayLike<number>, out: Uint8Array, at = 0): void {
  const view = new DataView(out.buffer, out.byteOffset);
  for (let b = 0; b < x.length / 32; b++, at += 18) {
    // The value of largest magnitude, with its sign (the first one on a tie).
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j];
      if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; }
    }
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(at, f32ToF16Bits(d), true);
    const code = (v: number) => Math.min(15, Math.trunc(Math.fround(Math.fround(v * id) + 8.5)));
    for (let j = 0; j < 16; j++) out[at + 2 + j] = code(x[b * 32 + j]) | (code(x[b * 32 + 16 + j]) << 4);
  }
}

/**
 * Decode n values of a row stored as type `type` from `src` (at byte `at`) into out[o…o+n), as
 * f32 exactly as ggml's dequantize_row_* computes them (each product rounds once to f32).
 */
export function decodeRow(type: string, src: Uint8Array, at: number, n: number, out: Float32Array, o: number): void {
  const view = new DataView(src.buffer, src.byteOffset);
  const half = halfToFloatBits();
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  switch (type) {
    case 'F32':
      for (let i = 0; i < n; i++) out[o + i] = view.getFloat32(at + 4 * i, true);
      return;
    case 'F16':
      for (let i = 0; i < n; i++) bits[o + i] = half[view.getUint16(at + 2 * i, true)];
      return;
    case 'BF16':
      for (let i = 0; i < n; i++) bits[o + i] = view.getUint16(at + 2 * i, true) << 16;
      return;
    case 'Q8_0':
      for (let b = 0; b < n / 32; b++, at += 34) {
        const d = f16BitsToF32(view.getUint16(at, true));
        for (let j = 0; j < 32; j++) out[o + b * 32 + j] = view.getInt8(at + 2 + j) * d;
      }
      return;
    case 'Q4_0':
      for (let b = 0; b < n / 32; b++, at += 18) {
        const d = f16BitsToF32(view.getUint16(at, true));
        for (let j = 0; j < 16; j++) {
          const q = src[at + 2 + j];
          out[o + b * 32 + j] = ((q & 15) - 8) * d;
          out[o + b * 32 + 16 + j] = ((q >> 4) - 8) * d;
        }
      }
      return;
    case 'Q5_0':
    case 'Q5_1': {
      // Blocks of 32: d (f16), for Q5_1 m (f16), qh (u32: value j's fifth bit is bit j), qs[16]
      // (values j and j + 16 the low and high nibbles of qs[j]). Q5_0: (q − 16)·d; Q5_1: q·d + m.
      // llama.cpp writes them where a row is no multiple of 256 in a Q4_K_M / Q5_K_M file.
      const one = type === 'Q5_1', size = one ? 24 : 22, h = one ? 4 : 2;
      for (let b = 0; b < n / 32; b++, at += size) {
        const d = f16BitsToF32(view.getUint16(at, true)), m = one ? f16BitsToF32(view.getUint16(at + 2, true)) : 0;
        const qh = view.getUint32(at + h, true);
        for (let j = 0; j < 32; j++) {
          const q = ((j < 16 ? src[at + h + 4 + j] & 15 : src[at + h + 4 + j - 16] >> 4) | (((qh >>> j) & 1) << 4)) - (one ? 0 : 16);
          out[o + b * 32 + j] = one ? q * d + m : q * d; // Q5_0 as ggml: no + 0, which would turn −0 into +0
        }
      }
      return;
    }
    case 'Q4_K':
    case 'Q5_K': {
      // Q4_K, 144 bytes per 256: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of
      // nibbles. Q5_K, 176: the same with 32 bytes of fifth bits (qh) before the nibbles; sub-block
      // j's value l takes bit j of qh[l].
      const five = type === 'Q5_K', size = five ? 176 : 144, qs = five ? 48 : 16;
      for (let b = 0; b < n / 256; b++, at += size) {
        const d = f16BitsToF32(view.getUint16(at, true)), dmin = f16BitsToF32(view.getUint16(at + 2, true));
        for (let j = 0; j < 8; j++) {
          const s = at + 4;
          const sc = j < 4 ? src[s + j] & 63 : (src[s + j + 4] & 15) | ((src[s + j - 4] >> 6) << 4);
          const mn = j < 4 ? src[s + j + 4] & 63 : (src[s + j + 4] >> 4) | ((src[s + j] >> 6) << 4);
          const d1 = Math.fround(d * sc), m1 = Math.fround(dmin * mn);
          for (let l = 0; l < 32; l++) {
            const byte = src[at + qs + 32 * (j >> 1) + l], high = five ? ((src[at + 16 + l] >> j) & 1) << 4 : 0;
            out[o + b * 256 + 32 * j + l] = d1 * ((j & 1 ? byte >> 4 : byte & 15) | high) - m1;
          }
        }
      }
      return;
    }
    case 'Q6_K':
      // 210 bytes per 256: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, d (f16).
      for (let b = 0; b < n / 256; b++, at += 210) {
        const d = f16BitsToF32(view.getUint16(at + 208, true));
        for (let i = 0; i < 256; i++) {
          const h = i >> 7, g = (i >> 5) & 3, l = i & 31;
          const ql = src[at + 64 * h + 32 * (g & 1) + l], qh = src[at + 128 + 32 * h + l];
          const q = ((g < 2 ? ql & 15 : ql >> 4) | (((qh >> (2 * g)) & 3) << 4)) - 32;
          out[o + b * 256 + i] = Math.fround(d * view.getInt8(at + 192 + 8 * h + 2 * g + (l >> 4))) * q;
        }
      }
      return;
    case 'Q3_K':
      // 110 bytes per 256: hmask[32] (value i's third bit is bit i >> 5 of hmask[i & 31]; clear
      // means minus 4), qs[64] (2 bits, byte 32·(i >> 7) + (i & 31), bits 2·((i >> 5) & 3)),
      // 12 bytes of 6-bit scales s (one per 16, used as s − 32), d (f16). x = d·(s − 32)·q.
      for (let b = 0; b < n / 256; b++, at += 110) {
        const d = f16BitsToF32(view.getUint16(at + 108, true));
        for (let i = 0; i < 256; i++) {
          const q = ((src[at + 32 + 32 * (i >> 7) + (i & 31)] >> (2 * ((i >> 5) & 3))) & 3) - ((src[at + (i & 31)] >> (i >> 5)) & 1 ? 0 : 4);
          out[o + b * 256 + i] = Math.fround(d * (q3kScale(src, at + 96, i >> 4) - 32)) * q;
        }
      }
      return;
    case 'IQ4_NL':
      // Blocks of 32 as Q4_0's (d, then nibbles j and j + 16 in byte j), a nibble indexing IQ4_VALUES.
      for (let b = 0; b < n / 32; b++, at += 18) {
        const d = f16BitsToF32(view.getUint16(at, true));
        for (let j = 0; j < 16; j++) {
          out[o + b * 32 + j] = d * IQ4_VALUES[src[at + 2 + j] & 15];
          out[o + b * 32 + 16 + j] = d * IQ4_VALUES[src[at + 2 + j] >> 4];
        }
      }
      return;
    case 'IQ4_XS':
      // 136 bytes per 256: d (f16), scales_h (u16, 2 bits per 32), scales_l[4] (4 bits per 32),
      // then 8 runs of 16 bytes, each 32 values as IQ4_NL's. x = d·(ls − 32)·IQ4_VALUES[nibble].
      for (let b = 0; b < n / 256; b++, at += 136) {
        const d = f16BitsToF32(view.getUint16(at, true));
        for (let k = 0; k < 8; k++) {
          const dl = Math.fround(d * (iq4xsScale(src, at, k) - 32));
          for (let j = 0; j < 16; j++) {
            const byte = src[at + 8 + 16 * k + j];
            out[o + b * 256 + 32 * k + j] = dl * IQ4_VALUES[byte & 15];
            out[o + b * 256 + 32 * k + 16 + j] = dl * IQ4_VALUES[byte >> 4];
          }
        }
      }
      return;
    default:
      throw new Error(`decodeRow: type ${type} is not decoded`);
  }
}

/** IQ4_NL's and IQ4_XS's 16 levels (ggml-common.h's kvalues_iq4nl). */
export const IQ4_VALUES = Int8Array.of(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

/** Q3_K's 6-bit scale j (0..15) from its 12 bytes at src[at]: low 4 bits from bytes 0–7, high 2 from bytes 8–11. */
export function q3kScale(src: Uint8Array, at: number, j: number): number {
  const low = j < 8 ? src[at + j] & 15 : src[at + j - 8] >> 4;
  return low | (((src[at + 8 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4);
}

/** IQ4_XS's 6-bit scale of its block k (0..7) of 32, in the super-block at src[at]. */
export function iq4xsScale(src: Uint8Array, at: number, k: number): number {
  return ((src[at + 4 + (k >> 1)] >> (4 * (k & 1))) & 15) | (((src[at + 2 + (k >> 2)] >> (2 * (k & 3))) & 3) << 4);
}
