// Calibration for the conversion: each layer's attention input (RMSNorm(h) · input_layernorm, what
// k_proj and v_proj read) over some tokens, captured from the source model's own forward pass in
// the wasm decoder, where the kernels make it cheap. The tokens are a text the user gives, or
// (the default) text the source samples itself: no data needed, and on fortune-gqa as good as
// held-out text (bench/results/convert.md).
import type { ModelConfig } from '../formats/config.js';
import type { ModelSource } from '../formats/source.js';
import { createRng, sampleToken, type SamplingOptions } from '../generate/sampling.js';
import { openModel, TokenModel } from '../model/model.js';

/** Sequences sampled side by side: one decode step reads the weights once for all of them. */
const SAMPLE_BATCH = 16;
const SAMPLING: SamplingOptions = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 };

export type CalibrationTokens = { ids: number[] } | { samples: number; seed: number };

/**
 * Per layer, the attention inputs [T, hidden] of the calibration tokens (rows in no particular
 * order: what is made of them are sums over tokens). Text is cut into windows that each start
 * with BOS; samples are whole windows from BOS (or token 0), at temperature 1 over the whole
 * vocabulary.
 */
export async function attentionInputs(source: ModelSource, c: ModelConfig, tokens: CalibrationTokens, window: number,
  onProgress?: (done: number, total: number) => void): Promise<Float32Array[]> {
  const bos = c.bosTokenId;
  const windows: number[][] = [];
  if ('ids' in tokens) {
    for (let s = 0; s < tokens.ids.length; s += window - 1) windows.push(bos === null ? tokens.ids.slice(s, s + window) : [bos, ...tokens.ids.slice(s, s + window - 1)]);
  }
  const sequences = 'ids' in tokens ? windows.length : Math.ceil(tokens.samples / window);
  const T = 'ids' in tokens ? windows.reduce((n, w) => n + w.length, 0) : sequences * window;
  const d = c.hidden;
  const inputs = Array.from({ length: c.layers }, () => new Float32Array(T * d));
  const filled = new Array<number>(c.layers).fill(0);
  const model = new TokenModel(await openModel(source));
  try {
    model.tapAttentionInputs((l, x) => { inputs[l].set(x, filled[l]); filled[l] += x.length; });
    if ('ids' in tokens) {
      windows.forEach((w, i) => {
        const s = model.createSession({ contextLength: w.length });
        try { s.prefill(w); } finally { s.dispose(); }
        onProgress?.(i + 1, windows.length);
      });
    } else sample(model, bos ?? 0, sequences, window, tokens.seed, onProgress);
  } finally {
    model.dispose();
  }
  return inputs;
}

/** `sequences` windows of `window` tokens from `start`, each token drawn from the model's distribution. */
function sample(model: TokenModel, start: number, sequences: number, window: number, seed: number,
  onProgress?: (done: number, total: number) => void): void {
  const rng = createRng(seed);
  for (let first = 0; first < sequences; first += SAMPLE_BATCH) {
    const sessions = Array.from({ length: Math.min(SAMPLE_BATCH, sequences - first) }, () => model.createSession({ contextLength: window }));
    try {
      let ids = sessions.map(() => start);
      for (let t = 0; t < window; t++) {
        const logits = model.stepBatch(sessions.map((session, b) => ({ session, id: ids[b] })));
        ids = logits.map((l) => sampleToken(l, SAMPLING, rng));
      }
    } finally {
      for (const s of sessions) s.dispose();
    }
    onProgress?.(Math.min(first + SAMPLE_BATCH, sequences), sequences);
  }
}

/** Σ = Xᵀ X / T (d×d), the second moment of the attention inputs. */
export function secondMoment(x: Float32Array, d: number): Float64Array {
  const T = x.length / d, D = Math.ceil(d / 4) * 4;
  // Columns of X as rows (zero-padded to a multiple of 4), then 4×4 blocks of Σ summed in
  // registers: 8 loads for 16 multiply-adds, where a row-by-row update loads and stores Σ for each.
  const xt = new Float64Array(D * T);
  for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) xt[i * T + t] = x[t * d + i];
  const S = new Float64Array(d * d);
  for (let i = 0; i < D; i += 4) {
    const a0 = i * T, a1 = a0 + T, a2 = a1 + T, a3 = a2 + T;
    for (let j = i; j < D; j += 4) {
      const b0 = j * T, b1 = b0 + T, b2 = b1 + T, b3 = b2 + T;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let t = 0; t < T; t++) {
        const x0 = xt[a0 + t], x1 = xt[a1 + t], x2 = xt[a2 + t], x3 = xt[a3 + t];
        const y0 = xt[b0 + t], y1 = xt[b1 + t], y2 = xt[b2 + t], y3 = xt[b3 + t];
        s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3;
        s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3;
        s20 += x2 * y0; s21 += x2 * y1; s22 += x2 * y2; s23 += x2 * y3;
        s30 += x3 * y0; s31 += x3 * y1; s32 += x3 * y2; s33 += x3 * y3;
      }
      const block = [s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33];
      for (let u = 0; u < 4 && i + u < d; u++) {
        for (let v = 0; v < 4 && j + v < d; v++) {
          const m = block[u * 4 + v] / T;
          S[(i + u) * d + j + v] = m;
          S[(j + v) * d + i + u] = m;
        }
      }
    }
  }
  return S;
}
