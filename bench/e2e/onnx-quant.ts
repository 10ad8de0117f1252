// Our load-time quantisers (assembly/quant.ts: q8Block, quantize_q4_rows) replayed in f32 in
// TypeScript, writing the blocks in the layout of onnxruntime's MatMulNBits (com.microsoft): B
// uint8 [N, K/32, blob], codes low-first along K, scales f32 [N, K/32], no zero points (the
// default, 2^(bits−1)). A weight is (code − zero point) · scale, which is our q8 value q · d and our
// q4 value (q − 8) · d exactly, so the ONNX graph multiplies by the very weights ours holds.

/** MatMulNBits' B and scales for W [rows, cols] (cols a multiple of 32). */
export interface NBits { bits: 4 | 8; codes: Uint8Array; scales: Float32Array }

const f = Math.fround;
/** C's roundf: half away from zero (what q8Block's roundAway computes). */
const roundAway = (v: number) => (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5));

/** Quantise W [rows, cols] by blocks of 32 along each row, as ours does for `bits` (8: q8, 4: q4). */
export function quantizeNBits(w: Float32Array, rows: number, cols: number, bits: 4 | 8): NBits {
  if (cols % 32 !== 0) throw new Error(`quantizeNBits: ${cols} columns are not blocks of 32`);
  const nb = cols / 32, blob = bits * 4;
  const codes = new Uint8Array(rows * nb * blob), scales = new Float32Array(rows * nb);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const p = r * cols + b * 32, out = (r * nb + b) * blob;
      if (bits === 8) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(w[p + j]));
        const d = f(amax / 127), id = d !== 0 ? f(1 / d) : 0;
        for (let j = 0; j < 32; j++) codes[out + j] = roundAway(f(w[p + j] * id)) + 128;
        scales[r * nb + b] = d;
      } else {
        // The value of largest magnitude, with its sign (the first on a tie): d = mx / −8.
        let amax = 0, mx = 0;
        for (let j = 0; j < 32; j++) if (amax < Math.abs(w[p + j])) { amax = Math.abs(w[p + j]); mx = w[p + j]; }
        const d = f(mx / -8), id = d !== 0 ? f(1 / d) : 0;
        const code = (v: number) => Math.min(15, Math.trunc(f(f(v * id) + 8.5)));
        for (let j = 0; j < 16; j++) codes[out + j] = code(w[p + 2 * j]) | (code(w[p + 2 * j + 1]) << 4);
        scales[r * nb + b] = d;
      }
    }
  }
  return { bits, codes, scales };
}

/** The weights the blocks stand for, [rows, cols] f32: (code − 2^(bits−1)) · scale. */
export function dequantizeNBits(q: NBits, rows: number, cols: number): Float32Array {
  const nb = cols / 32, blob = q.bits * 4, out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const d = q.scales[r * nb + b], at = (r * nb + b) * blob, o = r * cols + b * 32;
      for (let j = 0; j < 32; j++) {
        const c = q.bits === 8 ? q.codes[at + j] - 128 : ((q.codes[at + (j >> 1)] >> (4 * (j & 1))) & 15) - 8;
        out[o + j] = f(c * d);
      }
    }
  }
  return out;
}
