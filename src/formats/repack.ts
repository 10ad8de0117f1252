// GGUF block types the kernels have no reader for, rewritten exactly into formats they have, so a
// file's tensors keep their bits a weight and their values (decodeRow of the result is decodeRow
// of the original, bit for bit):
//   Q3_K   → Q6_K super-blocks: x = d·(s − 32)·q with q in −4..3 is Q6_K's d·sc·(q6 − 32) with
//            sc = s − 32 (int8) and q6 = q + 32. 3.44 → 6.56 bits a weight.
//   Q5_0   → q8 (int8 codes, f32 scale per 32): codes q − 16, scale d.
//   IQ4_NL → q8: codes IQ4_VALUES[nibble] (−127..113: never −128, which the q8 kernels refuse), scale d.
//   IQ4_XS → q8: the same codes, scale d·(ls − 32) per 32 (an f16 times a 6-bit integer: exact in f32).
import { f16BitsToF32, IQ4_VALUES, iq4xsScale, q3kScale } from './quant-blocks.js';

/** The types repacked into int8 blocks of 32, with bytes per stored block and values per block. */
export const Q8_REPACKED = { Q5_0: { bytes: 22, values: 32 }, IQ4_NL: { bytes: 18, values: 32 }, IQ4_XS: { bytes: 136, values: 256 } } as const;
export type Q8RepackedType = keyof typeof Q8_REPACKED;
export const isQ8Repacked = (type: string): type is Q8RepackedType => Object.prototype.hasOwnProperty.call(Q8_REPACKED, type);

/** One Q3_K super-block (110 bytes at src[at]) as the Q6_K super-block of the same values (210 bytes at dst[o]). */
export function q3kToQ6k(src: Uint8Array, at: number, dst: Uint8Array, o: number): void {
  dst.fill(0, o, o + 192);
  for (let i = 0; i < 256; i++) {
    const q = ((src[at + 32 + 32 * (i >> 7) + (i & 31)] >> (2 * ((i >> 5) & 3))) & 3) + ((src[at + (i & 31)] >> (i >> 5)) & 1 ? 32 : 28);
    // Q6_K: low nibble of value i in ql[64·h + 32·(g & 1) + l] (high nibble for g ≥ 2), its top two bits in qh[32·h + l] at 2·g.
    const h = i >> 7, g = (i >> 5) & 3, l = i & 31;
    dst[o + 64 * h + 32 * (g & 1) + l] |= g < 2 ? q & 15 : (q & 15) << 4;
    dst[o + 128 + 32 * h + l] |= (q >> 4) << (2 * g);
  }
  for (let j = 0; j < 16; j++) dst[o + 192 + j] = (q3kScale(src, at + 96, j) - 32) & 0xff;
  dst[o + 208] = src[at + 108];
  dst[o + 209] = src[at + 109];
}

/**
 * n values (a multiple of the type's block) of a Q5_0, IQ4_NL or IQ4_XS row at src[at] as q8:
 * int8 codes into q[qo…qo + n) and a scale per 32 into d[dO…dO + n/32).
 */
export function toQ8(type: Q8RepackedType, src: Uint8Array, at: number, n: number, q: Int8Array, qo: number, d: Float32Array, dO: number): void {
  const view = new DataView(src.buffer, src.byteOffset);
  for (let b = 0; b < n / 32; b++, qo += 32) {
    if (type === 'IQ4_XS') {
      const sb = at + (b >> 3) * 136, k = b & 7;
      d[dO + b] = Math.fround(f16BitsToF32(view.getUint16(sb, true)) * (iq4xsScale(src, sb, k) - 32));
      nibbles(src, sb + 8 + 16 * k, q, qo);
      continue;
    }
    const blk = at + b * Q8_REPACKED[type].bytes;
    d[dO + b] = f16BitsToF32(view.getUint16(blk, true));
    if (type === 'IQ4_NL') { nibbles(src, blk + 2, q, qo); continue; }
    const qh = view.getUint32(blk + 2, true);
    for (let j = 0; j < 16; j++) {
      q[qo + j] = ((src[blk + 6 + j] & 15) | (((qh >>> j) & 1) << 4)) - 16;
      q[qo + 16 + j] = ((src[blk + 6 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16;
    }
  }
}

/** 16 bytes of IQ4 nibbles (value j low in byte j, value j + 16 high) as 32 int8 codes. */
function nibbles(src: Uint8Array, at: number, q: Int8Array, qo: number): void {
  for (let j = 0; j < 16; j++) {
    q[qo + j] = IQ4_VALUES[src[at + j] & 15];
    q[qo + 16 + j] = IQ4_VALUES[src[at + j] >> 4];
  }
}
