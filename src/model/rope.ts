// Rotary frequencies and the YaRN softmax factor, computed once per model on the host.
// YaRN follows DeepSeek-V3's `precompute_freqs_cis` and Hugging Face's
// `DeepseekV2YarnRotaryEmbedding` (the same blend): reproduced from the math, not copied.
import type { ModelConfig, YarnScaling } from '../formats/config.js';

/** The dimension index whose wavelength makes `rotations` turns over `maxPositions`. */
function correctionDim(rotations: number, dim: number, base: number, maxPositions: number): number {
  return (dim * Math.log(maxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
}

/**
 * f_k = θ^(−2k/d) for k < d/2; under YaRN blended toward f_k / factor:
 * f'_k = f_k/factor · ramp_k + f_k · (1 − ramp_k), ramp rising linearly from 0 to 1 between
 * the correction dims of beta_fast (floored, ≥ 0) and beta_slow (ceiled, ≤ d − 1). Llama's
 * scalings divide each f_k by its factor (config.ropeFreqFactors), as llama.cpp does.
 */
export function ropeFrequencies(dim: number, theta: number, yarn: YarnScaling | null, factors: readonly number[] | null = null): Float32Array {
  const half = dim / 2;
  const f = new Float32Array(half);
  let low = 0, high = 0;
  if (yarn) {
    low = Math.max(Math.floor(correctionDim(yarn.betaFast, dim, theta, yarn.originalMaxPositions)), 0);
    high = Math.min(Math.ceil(correctionDim(yarn.betaSlow, dim, theta, yarn.originalMaxPositions)), dim - 1);
    if (low === high) high += 0.001; // as both reference codes do, to avoid dividing by zero
  }
  for (let k = 0; k < half; k++) {
    const base = Math.pow(theta, (-2 * k) / dim);
    if (!yarn) { f[k] = factors ? base / factors[k] : base; continue; }
    const ramp = Math.min(1, Math.max(0, (k - low) / (high - low)));
    f[k] = (base / yarn.factor) * ramp + base * (1 - ramp);
  }
  return f;
}

/** YaRN's attention temperature: 0.1 · mscale · ln(factor) + 1 (1 when factor ≤ 1). */
export function yarnMscale(factor: number, mscale: number): number {
  return factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1;
}

/** The softmax scale of one attention score: 1/sqrt(d_qk), times m² under YaRN (docs/mla.md §6). */
export function softmaxScale(config: ModelConfig): number {
  const a = config.attention;
  const dqk = a.kind === 'mla' ? a.nopeDim + a.ropeDim : a.headDim;
  let s = 1 / Math.sqrt(dqk);
  if (config.yarn && config.yarn.mscaleAllDim) {
    const m = yarnMscale(config.yarn.factor, config.yarn.mscaleAllDim);
    s *= m * m;
  }
  return s;
}

/**
 * Hugging Face multiplies cos/sin by mscale(mscale)/mscale(mscale_all_dim); it is 1 whenever the
 * two are equal, as in DeepSeek-V2/V3's own configs.
 */
export function ropeAmplitude(yarn: YarnScaling | null): number {
  if (!yarn) return 1;
  return yarnMscale(yarn.factor, yarn.mscale) / yarnMscale(yarn.factor, yarn.mscaleAllDim);
}
