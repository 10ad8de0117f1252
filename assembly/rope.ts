// Rotary position embedding. The host keeps the per-dimension frequencies
// (plain or YaRN-blended) in memory; angles are computed in f32 as
// f32(pos) · freq[k], the way DeepSeek's and Hugging Face's code compute them.

/**
 * For t < count, k < half: angle = f32(pos0 + t) * freqs[k];
 * cos[t·half + k] = cos(angle) · scale, sin[t·half + k] = sin(angle) · scale.
 */
export function rope_table(freqs: usize, half: i32, pos0: i32, count: i32, scale: f32,
                           cos: usize, sin: usize): void {
}

/**
 * Rotate, in place, `heads` vectors of `dim` (= 2·half) values for each of `rows` tokens:
 * token t, head h starts at x + (t·rowStride + h·headStride)·4 and uses row t of cos/sin.
 * halfSplit 0: DeepSeek's adjacent pairs (x[2i], x[2i+1]);
 * halfSplit 1: Llama's pairs (x[i], x[i + half]).
 * Each pair (a, b) becomes (a·cos − b·sin, a·sin + b·cos).
 */
export function rope_apply(x: usize, rows: i32, rowStride: i32, heads: i32, headStride: i32,
                           dim: i32, cos: usize, sin: usize, halfSplit: i32): void {
}
