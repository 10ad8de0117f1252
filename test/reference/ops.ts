// Plain float64 reference of every operation the kernels implement. Written from the math
// in docs/mla.md, not from the kernels: slow, obvious, and the thing everything is checked against.

export type Vec = Float64Array | Float32Array | number[];

/** C[m, n] = A[m, k] · B[n, k]ᵀ (B in [out, in] layout), row-major, dense strides. */
export function matmulNT(a: Vec, b: Vec, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
      c[i * n + j] = s;
    }
  }
  return c;
}

/** C[m, n] = A[m, k] · B[k, n]. */
export function matmulNN(a: Vec, b: Vec, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p];
      for (let j = 0; j < n; j++) c[i * n + j] += x * b[p * n + j];
    }
  }
  return c;
}

/** RMSNorm of each row: x / sqrt(mean(x²) + eps) · w. */
export function rmsnorm(x: Vec, w: Vec, rows: number, dim: number, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

/** Rotary frequencies θ^(−2k/d) for k < d/2 (no scaling). */
export function ropeFreqs(dim: number, theta: number): Float64Array {
  const f = new Float64Array(dim / 2);
  for (let k = 0; k < dim / 2; k++) f[k] = Math.pow(theta, (-2 * k) / dim);
  return f;
}

/**
 * Rotate one vector of `freqs.length · 2` values at position `pos`, in place.
 * The angle is rounded to f32 as f32(pos) · f32(freq), as DeepSeek's and Hugging Face's code compute it.
 * halfSplit false: DeepSeek's adjacent pairs (x[2k], x[2k+1]); true: Llama's (x[k], x[k + d/2]).
 */
export function rope(x: Vec, offset: number, pos: number, freqs: Vec, halfSplit: boolean, scale = 1): void {
  const half = freqs.length;
  for (let k = 0; k < half; k++) {
    const angle = Math.fround(Math.fround(pos) * Math.fround(freqs[k]));
    const c = Math.cos(angle) * scale, s = Math.sin(angle) * scale;
    const i0 = offset + (halfSplit ? k : 2 * k);
    const i1 = offset + (halfSplit ? k + half : 2 * k + 1);
    const a = x[i0], b = x[i1];
    x[i0] = a * c - b * s;
    x[i1] = a * s + b * c;
  }
}

/**
 * Softmax attention of one query over keys[0..n): out = Σ softmax(scale · q·k_j)_j v_j.
 * keys[j] and values[j] are plain arrays.
 */
export function attend(q: Vec, keys: Vec[], values: Vec[], scale: number): Float64Array {
  const n = keys.length;
  const s = new Float64Array(n);
  let max = -Infinity;
  for (let j = 0; j < n; j++) {
    let d = 0;
    for (let i = 0; i < q.length; i++) d += q[i] * keys[j][i];
    s[j] = d * scale;
    max = Math.max(max, s[j]);
  }
  let sum = 0;
  for (let j = 0; j < n; j++) { s[j] = Math.exp(s[j] - max); sum += s[j]; }
  const dv = values[0]?.length ?? 0;
  const out = new Float64Array(dv);
  for (let j = 0; j < n; j++) for (let i = 0; i < dv; i++) out[i] += (s[j] / sum) * values[j][i];
  return out;
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}
