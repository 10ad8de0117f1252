// MHA/GQA → MLA, training-free (TransMLA-style). Per layer, in float64:
//   rotary key: for each of the ropeDim/2 highest source frequencies, PCA across the KV heads (the
//     2-D rotation commutes with mixing heads), the principal component becomes the shared rotary
//     key on that rung; the new rope_theta = θ^(ropeDim/headDim) makes the DeepSeek ladder hit
//     exactly those frequencies. What is left of each head's key goes, unrotated, to the nope part.
//   nope keys and values: a joint rank-kvRank PCA (K scaled to V's norm first, BKV-PCA), weighted
//     by the calibration inputs' second moment (text the source samples itself by default, or a
//     text given; or the identity: plain weight SVD).
// Queries: the same per-head combination on the rotary rungs, the original rows for the nope part,
// scaled for the new softmax scale 1/sqrt(headDim + ropeDim). Everything else is copied.
import { checkOptions, MlaError, showValue } from '../errors.js';
import { parseConfig, rotaryDim, type GroupedAttention, type ModelConfig } from '../formats/config.js';
import { openSource, type ExtraFile, type LoadedSource, type ModelSource } from '../formats/source.js';
import { loadTokenizerFiles } from '../formats/tokenizer.js';
import { symmetricEigen } from './eigen.js';
import { attentionInputs, secondMoment } from './calibrate.js';
import { placeRotary, placementCost, rotaryComponents, type RotaryInput } from './rope.js';

export interface ConvertOptions {
  kvRank: number;
  ropeDim: number;
  /**
   * What weights the PCA with the source's activations: a text (or token ids) run through the
   * source; by default text the source samples itself (`samples` tokens); false: nothing, a plain
   * weight SVD (measured worse at every cache size tried).
   */
  calibration?: string | number[] | false;
  /** Tokens the source samples for its own calibration: default max(2048, 4 × hidden_size), whole windows. */
  samples?: number;
  /** Seed of that sampling (default 0): the same seed gives the same conversion. */
  seed?: number;
  /** Keep DeepSeek's RMSNorm on the latent, with its weight fitted on the calibration (needs calibration). */
  latentNorm?: boolean;
  /** Calibration window (positions per sequence), default 192. */
  window?: number;
  /** Work done of total, in calibration windows, then in layers. */
  onProgress?: (done: number, total: number, stage: 'calibration' | 'layers') => void;
  /** Rotary rungs per source frequency step (1: one rung per frequency); default: the spacing with the least placement cost. */
  ropeSpacing?: number;
}

export interface LayerSummary {
  /** Key components (pairs) that keep a rotation, out of kvHeads · headDim/2. */
  rotaryPairs: number;
  sourcePairs: number;
  /** Share of the key energy (all frequencies, all KV heads) on rotary rungs. */
  rotaryEnergy: number;
  /** Share of the balanced nope-K/V energy the latent keeps. */
  latentEnergy: number;
}

export interface ConvertSummary {
  /** What weighted the PCA: text the source sampled, a text given, or nothing (plain weight SVD). */
  method: 'samples' | 'text' | 'weights';
  cacheBefore: number;
  cacheAfter: number;
  ropeTheta: number;
  /** Rungs of the new ladder per source frequency step. */
  ropeSpacing: number;
  calibrationTokens: number;
  layers: LayerSummary[];
}

export interface ConvertedModel {
  config: Record<string, unknown>;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  extras: Partial<Record<ExtraFile, Uint8Array>>;
  summary: ConvertSummary;
}

// Every option's name, checked against the interface: a new option cannot be forgotten here.
const OPTIONS = Object.keys({ kvRank: 1, ropeDim: 1, calibration: 1, samples: 1, seed: 1, latentNorm: 1, window: 1,
  onProgress: 1, ropeSpacing: 1 } satisfies Record<keyof ConvertOptions, 1>);

/** Ladder spacings (rungs per source frequency step) the automatic choice tries. */
const SPACINGS = [1, 1.25, 1.5, 2, 2.5, 3, 4];

const bad = (msg: string): never => { throw new MlaError('BAD_INPUT', `convertToMla: ${msg}`); };

/** Checks the source and the ranks; returns the parsed config. */
export function checkConvertible(raw: unknown, options: ConvertOptions): ModelConfig {
  checkOptions(options, OPTIONS, 'convertToMla() options');
  const c = parseConfig(raw);
  if (c.ropeFreqFactors) {
    // The MLA model's rotary part can only hold frequencies of the form θ^(−2k/d).
    const r = raw as Record<string, unknown>;
    const what = r.rope_scaling != null ? `rope_scaling ${JSON.stringify(r.rope_scaling)}` : 'scaled rope frequencies (rope_freqs)';
    throw new MlaError('BAD_CONFIG', `convertToMla: the source uses ${what}, which conversion does not support`);
  }
  if (c.attention.kind === 'mla') throw new MlaError('BAD_CONFIG', 'convertToMla: the source is already MLA (DeepSeek); nothing to convert');
  if (c.ffn.some((f) => f.kind !== 'dense')) throw new MlaError('BAD_CONFIG', 'convertToMla: the source is a mixture of experts (MoE); only dense MHA/GQA models convert');
  if (c.attention.kind === 'gqa' && c.attention.qkvBias) {
    throw new MlaError('BAD_CONFIG', 'convertToMla: the source has biases on q, k and v (Qwen2), which conversion does not carry into the latent model');
  }
  if (c.attention.kind === 'gqa' && rotaryDim(c.attention) !== c.attention.headDim) {
    throw new MlaError('BAD_CONFIG', `convertToMla: the source rotates ${rotaryDim(c.attention)} of each head's ${c.attention.headDim} dims (partial_rotary_factor), which conversion does not support`);
  }
  const a = c.attention;
  const { kvRank, ropeDim } = options;
  if (!Number.isInteger(ropeDim) || ropeDim < 2 || ropeDim % 2) bad(`ropeDim must be an even integer ≥ 2, got ${showValue(ropeDim)}`);
  if (ropeDim > a.kvHeads * a.headDim) bad(`ropeDim ${ropeDim} is larger than the source's key width kvHeads·head_dim = ${a.kvHeads * a.headDim}`);
  const maxRank = Math.min(2 * a.kvHeads * a.headDim, c.hidden);
  if (!Number.isInteger(kvRank) || kvRank < 1) bad(`kvRank must be a positive integer, got ${showValue(kvRank)}`);
  if (kvRank > maxRank) bad(`kvRank ${kvRank} is larger than possible (${maxRank}: min of 2·kvHeads·head_dim and hidden_size)`);
  const m = options.ropeSpacing;
  if (m !== undefined && !(m >= 1 && m <= 16)) bad(`ropeSpacing must be a number in [1, 16], got ${showValue(m)}`);
  if (options.latentNorm && options.calibration === false) bad('latentNorm fits the norm\'s weight on the calibration, so it cannot go with calibration: false');
  const { samples, seed } = options;
  if (samples !== undefined && (!Number.isInteger(samples) || samples < 2 * c.hidden)) {
    bad(`samples must be an integer ≥ ${2 * c.hidden} (2 × hidden_size, for a stable PCA), got ${showValue(samples)}`);
  }
  if (seed !== undefined && !Number.isInteger(seed)) bad(`seed must be an integer, got ${showValue(seed)}`);
  const window = options.window;
  if (window !== undefined && (!Number.isInteger(window) || window < 2 || window > c.maxPositions)) {
    bad(`window must be an integer in [2, ${c.maxPositions}] (max_position_embeddings), got ${showValue(window)}`);
  }
  return c;
}

/** The source's extra files; a GGUF source's tokenizer (from its metadata) as the files a folder would hold. */
function tokenizerExtras(src: LoadedSource): LoadedSource['extras'] {
  const t = src.tokenizerFiles;
  if (src.extras['tokenizer.json'] || !t?.tokenizerJson) return src.extras;
  const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2) + '\n');
  return { ...src.extras, 'tokenizer.json': bytes(t.tokenizerJson), 'tokenizer_config.json': bytes(t.tokenizerConfig ?? {}) };
}

export async function convertToMla(source: ModelSource, options: ConvertOptions): Promise<ConvertedModel> {
  checkOptions(options, OPTIONS, 'convertToMla() options'); // before the source is read
  const src = await openSource(source);
  const extras = tokenizerExtras(src);
  const c = checkConvertible(src.config, options);
  const a = c.attention as GroupedAttention;
  const { kvRank: r, ropeDim: dr } = options;
  const d = c.hidden, hd = a.headDim, H = a.heads, G = a.kvHeads, half = hd / 2;
  const read = (name: string): Float32Array => {
    const shape = src.tensors.shape(name);
    if (!shape) throw new MlaError('MISSING_TENSOR', `convertToMla: ${name} is not in ${src.name}`);
    const out = new Float32Array(shape.reduce((x, y) => x * y, 1));
    src.tensors.read(name, out);
    return out;
  };

  const W = options.window ?? Math.min(192, c.maxPositions);
  // One rope_theta serves every layer: the ladder spacing with the least placement cost over all
  // layers (weights only, before any calibration pass).
  let m = options.ropeSpacing ?? 0;
  if (!m) {
    const costs = SPACINGS.map(() => 0);
    for (let l = 0; l < c.layers; l++) {
      const Wk = read(`model.layers.${l}.self_attn.k_proj.weight`);
      const rot: RotaryInput = { Wk, KS: Float64Array.from(Wk), d, headDim: hd, kvHeads: G, theta: c.ropeTheta, window: W };
      const comps = rotaryComponents(rot);
      SPACINGS.forEach((sp, k) => { costs[k] += placementCost(comps, dr / 2, sp, rot).cost; });
    }
    m = SPACINGS[costs.indexOf(Math.min(...costs))];
  }

  // Calibration: each layer's attention inputs, from the source's own forward pass.
  let inputs: Float32Array[] | null = null;
  const progress = options.onProgress;
  const calibrationProgress = progress && ((done: number, total: number) => progress(done, total, 'calibration'));
  if (options.calibration === undefined) {
    const n = options.samples ?? Math.max(2048, 4 * d);
    inputs = await attentionInputs(source, c, { samples: n, seed: options.seed ?? 0 }, W, calibrationProgress);
  } else if (options.calibration !== false) {
    let ids: number[];
    if (typeof options.calibration === 'string') {
      const tj = extras['tokenizer.json'];
      if (!tj) bad(`${src.name} has no tokenizer.json to encode the calibration text`);
      const dec = new TextDecoder();
      const tc = extras['tokenizer_config.json'];
      const tok = loadTokenizerFiles({ tokenizerJson: JSON.parse(dec.decode(tj)), tokenizerConfig: tc ? JSON.parse(dec.decode(tc)) : undefined }).tokenizer!;
      ids = tok.encode(options.calibration, { addSpecialTokens: false });
    } else ids = options.calibration;
    // A stable d×d second moment needs more samples than dimensions.
    const need = 2 * d;
    if (ids.length < need) bad(`calibration text too short: ${ids.length} tokens, a stable PCA needs at least ${need} (2 × hidden_size)`);
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new MlaError('BAD_TOKEN', `convertToMla: calibration token ${id} is not in [0, ${c.vocabSize})`);
    inputs = await attentionInputs(source, c, { ids }, W, calibrationProgress);
  }
  const calibrationTokens = inputs ? inputs[0].length / d : 0;

  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const copy = (name: string): void => { tensors.set(name, { shape: [...src.tensors.shape(name)!], data: read(name) }); };
  copy('model.embed_tokens.weight');
  const qScale = Math.sqrt((hd + dr) / hd);
  const layers: LayerSummary[] = [];
  const total = c.layers;
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    const x = inputs?.[l] ?? null;
    const S = x ? secondMoment(x, d) : null;
    const Wq = read(p + 'self_attn.q_proj.weight'), Wk = read(p + 'self_attn.k_proj.weight'), Wv = read(p + 'self_attn.v_proj.weight');
    // Σ-weighted inner products of weight rows: <u, v>_Σ = uᵀ Σ v (Σ = I for plain SVD).
    const SW = (rows: Float64Array, n: number): Float64Array => {
      if (!S) return rows;
      const out = new Float64Array(n * d);
      for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += rows[i * d + k] * S[j * d + k]; // Σ is symmetric: its row j, read in order
        out[i * d + j] = s;
      }
      return out;
    };
    const dot = (a1: Float64Array, i: number, b: Float64Array, j: number): number => {
      let s = 0;
      for (let k = 0; k < d; k++) s += a1[i * d + k] * b[j * d + k];
      return s;
    };
    // Nope key rows start as the source key rows; the rotary plan takes its components out.
    const K = Float64Array.from(Wk);
    const rot: RotaryInput = { Wk, KS: SW(K, G * hd), d, headDim: hd, kvHeads: G, theta: c.ropeTheta, window: W };
    const plan = placeRotary(rot, rotaryComponents(rot), dr, m, K);
    // BKV-PCA over [α·K_nope ; V] (2·G·hd features).
    const V = Float64Array.from(Wv);
    const n = 2 * G * hd;
    const F = new Float64Array(n * d);
    F.set(K, 0); F.set(V, G * hd * d);
    const FS = SW(F, n);
    let eK = 0, eV = 0;
    for (let i = 0; i < G * hd; i++) { eK += dot(F, i, FS, i); eV += dot(F, G * hd + i, FS, G * hd + i); }
    // A nope key that is rounding noise (every component on a rung) must not be blown up to V's size.
    const alpha = eK > 1e-12 * eV ? Math.sqrt(eV / eK) : 1;
    const scaleOf = (i: number): number => (i < G * hd ? alpha : 1);
    const M = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) {
      const m = dot(F, i, FS, j) * scaleOf(i) * scaleOf(j);
      M[i * n + j] = m; M[j * n + i] = m;
    }
    const { values, vectors: E } = symmetricEigen(M, n);
    let eKept = 0, eAll = 0;
    for (let i = 0; i < n; i++) { eAll += Math.max(values[i], 0); if (i < r) eKept += Math.max(values[i], 0); }
    // kv_a: [latent rows = Eᵀ·diag(scale)·F ; rotary key rows].
    const kvA = new Float32Array((r + dr) * d);
    for (let k = 0; k < r; k++) for (let i = 0; i < n; i++) {
      const e = E[i * n + k] * scaleOf(i);
      if (e === 0) continue;
      for (let c2 = 0; c2 < d; c2++) kvA[k * d + c2] += e * F[i * d + c2];
    }
    for (let i = 0; i < dr * d; i++) kvA[r * d + i] = plan.kRope[i];
    // kv_b: per head [hd nope-K rows ; hd V rows] from E (K rows divided by α again).
    const kvB = new Float32Array(H * 2 * hd * r);
    for (let hh = 0; hh < H; hh++) {
      const g = Math.floor(hh / (H / G));
      for (let e = 0; e < hd; e++) for (let k = 0; k < r; k++) {
        kvB[(hh * 2 * hd + e) * r + k] = E[(g * hd + e) * n + k] / alpha;
        kvB[(hh * 2 * hd + hd + e) * r + k] = E[(G * hd + g * hd + e) * n + k];
      }
    }
    // q: per head [hd nope rows (source order) ; dr rotary rows on the rungs], scaled.
    const q = new Float32Array(H * (hd + dr) * d);
    for (let hh = 0; hh < H; hh++) {
      const g = Math.floor(hh / (H / G)), o = hh * (hd + dr);
      for (let e = 0; e < hd; e++) for (let k = 0; k < d; k++) q[(o + e) * d + k] = Wq[(hh * hd + e) * d + k] * qScale;
      for (const { j, i, a: ca, b: cb } of plan.placed) {
        // The query pair turned by the component's complex weight for this head's group.
        const u = ca[g] * qScale, v = cb[g] * qScale;
        for (let k = 0; k < d; k++) {
          const re = Wq[(hh * hd + i) * d + k], im = Wq[(hh * hd + i + half) * d + k];
          q[(o + hd + 2 * j) * d + k] = u * re + v * im;
          q[(o + hd + 2 * j + 1) * d + k] = -v * re + u * im;
        }
      }
    }
    tensors.set(p + 'self_attn.q_proj.weight', { shape: [H * (hd + dr), d], data: q });
    tensors.set(p + 'self_attn.kv_a_proj_with_mqa.weight', { shape: [r + dr, d], data: kvA });
    tensors.set(p + 'self_attn.kv_b_proj.weight', { shape: [H * 2 * hd, r], data: kvB });
    if (options.latentNorm) tensors.set(p + 'self_attn.kv_a_layernorm.weight', { shape: [r], data: fitLatentNorm(kvA, r, d, x!, c.rmsEps) });
    if (inputs) inputs[l] = new Float32Array(0); // done with this layer's inputs
    for (const name of ['self_attn.o_proj.weight', 'input_layernorm.weight', 'post_attention_layernorm.weight',
      'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight']) copy(p + name);
    layers.push({ rotaryPairs: plan.placed.length, sourcePairs: G * half, rotaryEnergy: plan.energy > 0 ? plan.keptEnergy / plan.energy : 1, latentEnergy: eAll > 0 ? eKept / eAll : 1 });
    progress?.(l + 1, total, 'layers');
    await new Promise<void>((res) => setTimeout(res, 0));
  }
  copy('model.norm.weight');
  if (!c.tieEmbeddings) copy('lm_head.weight');

  const raw = src.config as Record<string, unknown>;
  const config: Record<string, unknown> = {
    architectures: ['DeepseekV2ForCausalLM'], model_type: 'deepseek_v2',
    vocab_size: c.vocabSize, hidden_size: d, intermediate_size: (c.ffn[0] as { intermediate: number }).intermediate,
    num_hidden_layers: c.layers, num_attention_heads: H, num_key_value_heads: H,
    q_lora_rank: null, kv_lora_rank: r, qk_nope_head_dim: hd, qk_rope_head_dim: dr, v_head_dim: hd,
    qk_latent_layernorm: options.latentNorm === true,
    rms_norm_eps: c.rmsEps, rope_theta: Math.pow(c.ropeTheta, dr / (hd * m)), rope_scaling: null,
    max_position_embeddings: c.maxPositions, tie_word_embeddings: c.tieEmbeddings,
    bos_token_id: raw.bos_token_id ?? null, eos_token_id: raw.eos_token_id ?? null,
    hidden_act: 'silu', attention_bias: false, torch_dtype: 'float32',
  };
  return {
    config, tensors, extras,
    summary: {
      method: options.calibration === undefined ? 'samples' : options.calibration === false ? 'weights' : 'text', cacheBefore: 2 * G * hd, cacheAfter: r + dr,
      ropeTheta: config.rope_theta as number, ropeSpacing: m, calibrationTokens, layers,
    },
  };
}

/** Per latent dim, the w minimising Σ_t (c_tk / rms(c_t) · w_k − c_tk)² over the calibration tokens. */
function fitLatentNorm(kvA: Float32Array, r: number, d: number, x: Float32Array, eps: number): Float32Array {
  const T = x.length / d, num = new Float64Array(r), den = new Float64Array(r), c = new Float64Array(r);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let k = 0; k < r; k++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += kvA[k * d + j] * x[t * d + j];
      c[k] = s; ss += s * s;
    }
    const inv = 1 / Math.sqrt(ss / r + eps);
    for (let k = 0; k < r; k++) { num[k] += c[k] * c[k] * inv; den[k] += c[k] * c[k] * inv * inv; }
  }
  return Float32Array.from(num, (v, k) => (den[k] > 0 ? v / den[k] : 1));
}
