// Rotary position embedding. The host keeps the per-dimension frequencies
// (plain or YaRN-blended) in memory; angles are computed in f32 as
// f32(pos) · freq[k], the way DeepSeek's and Hugging Face's code compute them.

/**
 * For t < count, k < half: angle = f32(pos0 + t) * freqs[k];
 * cos[t·half + k] = cos(angle) · scale, sin[t·half + k] = sin(angle) · scale.
 */
export function rope_table(freqs: usize, half: i32, pos0: i32, count: i32, scale: f32,
                           cos: usize, sin: usize): void {
  const sc = <f64>scale;
  for (let t = 0; t < count; t++) {
    const pos = <f32>(pos0 + t);
    const row = (<usize>t * <usize>half) << 2;
    for (let k = 0; k < half; k++) {
      const o = <usize>k << 2;
      // The angle is rounded to f32 (the reference convention); cos/sin are then evaluated
      // in f64 on that exact f32 value and rounded once.
      const angle = <f64>(pos * load<f32>(freqs + o));
      store<f32>(cos + row + o, <f32>(Math.cos(angle) * sc));
      store<f32>(sin + row + o, <f32>(Math.sin(angle) * sc));
    }
  }
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
  const half = dim >> 1;
  if (half <= 0 || heads <= 0) return;
  const hs = <usize>headStride << 2;
  // Sign mask for [−s, s, −s, s] (adjacent pairs).
  const negEven = i32x4(0x80000000, 0, 0x80000000, 0);
  for (let t = 0; t < rows; t++) {
    const xt = x + ((<usize>t * <usize>rowStride) << 2);
    const ct = cos + ((<usize>t * <usize>half) << 2);
    const st = sin + ((<usize>t * <usize>half) << 2);
    let i = 0;
    if (halfSplit == 0) {
      for (; i + 4 <= half; i += 4) {
        const c = v128.load(ct + (<usize>i << 2));
        const s = v128.load(st + (<usize>i << 2));
        const cLo = f32x4.shuffle(c, c, 0, 0, 1, 1), cHi = f32x4.shuffle(c, c, 2, 2, 3, 3);
        const sLo = v128.xor(f32x4.shuffle(s, s, 0, 0, 1, 1), negEven);
        const sHi = v128.xor(f32x4.shuffle(s, s, 2, 2, 3, 3), negEven);
        let p = xt + (<usize>i << 3);
        for (let h = 0; h < heads; h++, p += hs) {
          const a = v128.load(p), b = v128.load(p, 16);
          const aSw = f32x4.shuffle(a, a, 1, 0, 3, 2), bSw = f32x4.shuffle(b, b, 1, 0, 3, 2);
          v128.store(p, f32x4.add(f32x4.mul(a, cLo), f32x4.mul(aSw, sLo)));
          v128.store(p, f32x4.add(f32x4.mul(b, cHi), f32x4.mul(bSw, sHi)), 16);
        }
      }
      for (; i < half; i++) {
        const c = load<f32>(ct + (<usize>i << 2)), s = load<f32>(st + (<usize>i << 2));
        let p = xt + (<usize>i << 3);
        for (let h = 0; h < heads; h++, p += hs) {
          const a = load<f32>(p), b = load<f32>(p, 4);
          store<f32>(p, a * c - b * s);
          store<f32>(p, a * s + b * c, 4);
        }
      }
    } else {
      const ho = <usize>half << 2;
      for (; i + 4 <= half; i += 4) {
        const c = v128.load(ct + (<usize>i << 2));
        const s = v128.load(st + (<usize>i << 2));
        let p = xt + (<usize>i << 2);
        for (let h = 0; h < heads; h++, p += hs) {
          const a = v128.load(p), b = v128.load(p + ho);
          v128.store(p, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
          v128.store(p + ho, f32x4.add(f32x4.mul(a, s), f32x4.mul(b, c)));
        }
      }
      for (; i < half; i++) {
        const c = load<f32>(ct + (<usize>i << 2)), s = load<f32>(st + (<usize>i << 2));
        let p = xt + (<usize>i << 2);
        for (let h = 0; h < heads; h++, p += hs) {
          const a = load<f32>(p), b = load<f32>(p + ho);
          store<f32>(p, a * c - b * s);
          store<f32>(p + ho, a * s + b * c);
        }
      }
    }
  }
}
