// Plain float64 reference of the whole decoder, written from docs/mla.md (and, for YaRN and MoE
// routing, from DeepSeek's and Hugging Face's published model code, cited where used).
// Slow and obvious on purpose: one function per step, every loop spelled out, no caching.
// Everything the wasm decoder computes is checked against this.
//
// Supported: DeepseekV2ForCausalLM / DeepseekV3ForCausalLM (MLA attention, dense or MoE FFN,
// optional YaRN) and LlamaForCausalLM (MHA/GQA/MQA attention, dense FFN).

import { elementCount, parseSafetensorsHeader, readTensorF32 } from '../../src/formats/safetensors.js';
import { attend, matmulNT, rmsnorm, rope, ropeFreqs, silu } from './ops.js';

export interface Tensor { shape: number[]; data: Float32Array }
export type Tensors = Record<string, Tensor>;
/** A Hugging Face config.json object, as parsed. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type HfConfig = any;

// ---------------------------------------------------------------------------------------------
// Reading the config
// ---------------------------------------------------------------------------------------------

export type Arch = 'mla' | 'llama';

export function architectureOf(config: HfConfig): Arch {
  const a: string = config.architectures?.[0] ?? '';
  const t: string = config.model_type ?? '';
  if (a === 'DeepseekV2ForCausalLM' || a === 'DeepseekV3ForCausalLM' || t === 'deepseek_v2' || t === 'deepseek_v3') return 'mla';
  if (isMiniCpm3(config)) return 'mla';
  // Qwen2 is Llama's layout with q, k, v biases (always there, whatever attention_bias says);
  // Mistral is Llama's with a sliding window; Phi-3 fuses q/k/v and gate/up.
  if (a === 'LlamaForCausalLM' || t === 'llama' || a === 'Qwen2ForCausalLM' || t === 'qwen2') return 'llama';
  if (a === 'MistralForCausalLM' || t === 'mistral' || isPhi3(config)) return 'llama';
  throw new Error(`reference: unsupported architecture ${a || t || '(none)'}`);
}

/** Phi-3 (Hugging Face's modeling_phi3): qkv_proj = [q; k; v] rows, gate_up_proj = [gate; up] rows. */
export function isPhi3(config: HfConfig): boolean {
  return config.architectures?.[0] === 'Phi3ForCausalLM' || config.model_type === 'phi3';
}

/** MiniCPM3: DeepSeek-V2's attention, rotated as Llama rotates (rotate_half), LongRoPE, and three scalings. */
export function isMiniCpm3(config: HfConfig): boolean {
  return config.architectures?.[0] === 'MiniCPM3ForCausalLM' || config.model_type === 'minicpm3';
}

/**
 * MiniCPM3's scalings as Hugging Face's MiniCPM3 model applies them (absent keys: MiniCPM3-4B's
 * values, null: none): embeddings × scale_emb, each residual branch × scale_depth / √layers, the
 * final hidden state ÷ (hidden_size / dim_model_base) before lm_head. 1 for other models.
 */
function miniCpm3Scales(config: HfConfig): { embed: number; residual: number; head: number } {
  if (!isMiniCpm3(config)) return { embed: 1, residual: 1, head: 1 };
  const L = config.num_hidden_layers, d = config.hidden_size;
  const depth = config.scale_depth === null ? Math.sqrt(L) : config.scale_depth ?? 1.4;
  const base = config.dim_model_base === null ? d : config.dim_model_base ?? 256;
  return { embed: config.scale_emb ?? 12, residual: depth / Math.sqrt(L), head: 1 / (d / base) };
}

/** Whether layer L's FFN is a mixture of experts (HF: n_routed_experts set, L ≥ first_k_dense_replace, L % moe_layer_freq == 0). */
export function isMoeLayer(config: HfConfig, layer: number): boolean {
  if (architectureOf(config) !== 'mla' || !config.n_routed_experts) return false;
  return layer >= (config.first_k_dense_replace ?? 0) && layer % (config.moe_layer_freq ?? 1) === 0;
}

function llamaHeadDim(config: HfConfig): number {
  return config.head_dim ?? config.hidden_size / config.num_attention_heads;
}

/**
 * Every tensor the config implies, with its shape ([out, in] for matrices), in file order.
 * Biases appear when attention_bias (q_a_proj / q_proj, kv_a_proj_with_mqa, o_proj for MLA; q, k, v, o for
 * Llama) or mlp_bias (Llama) is set.
 */
export function expectedTensorShapes(config: HfConfig): Map<string, number[]> {
  const arch = architectureOf(config);
  const d = config.hidden_size, V = config.vocab_size, H = config.num_attention_heads;
  const m = new Map<string, number[]>();
  const lin = (name: string, out: number, inp: number, bias = false) => {
    m.set(`${name}.weight`, [out, inp]);
    if (bias) m.set(`${name}.bias`, [out]);
  };
  const swiglu = (p: string, width: number, bias = false) => {
    lin(`${p}.gate_proj`, width, d, bias);
    lin(`${p}.up_proj`, width, d, bias);
    lin(`${p}.down_proj`, d, width, bias);
  };
  m.set('model.embed_tokens.weight', [V, d]);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    m.set(`${p}.input_layernorm.weight`, [d]);
    const ab = !!config.attention_bias;
    if (arch === 'mla') {
      const dn = config.qk_nope_head_dim, dr = config.qk_rope_head_dim, dv = config.v_head_dim, dc = config.kv_lora_rank;
      const dq = config.q_lora_rank;
      if (dq) {
        lin(`${p}.self_attn.q_a_proj`, dq, d, ab);
        m.set(`${p}.self_attn.q_a_layernorm.weight`, [dq]);
        lin(`${p}.self_attn.q_b_proj`, H * (dn + dr), dq);
      } else {
        lin(`${p}.self_attn.q_proj`, H * (dn + dr), d);
      }
      lin(`${p}.self_attn.kv_a_proj_with_mqa`, dc + dr, d, ab);
      m.set(`${p}.self_attn.kv_a_layernorm.weight`, [dc]);
      lin(`${p}.self_attn.kv_b_proj`, H * (dn + dv), dc);
      lin(`${p}.self_attn.o_proj`, d, H * dv, ab);
    } else {
      const hd = llamaHeadDim(config), KV = config.num_key_value_heads ?? H;
      const qkv = ab || config.architectures?.[0] === 'Qwen2ForCausalLM' || config.model_type === 'qwen2';
      if (isPhi3(config)) {
        lin(`${p}.self_attn.qkv_proj`, (H + 2 * KV) * hd, d);
      } else {
        lin(`${p}.self_attn.q_proj`, H * hd, d, qkv);
        lin(`${p}.self_attn.k_proj`, KV * hd, d, qkv);
        lin(`${p}.self_attn.v_proj`, KV * hd, d, qkv);
      }
      lin(`${p}.self_attn.o_proj`, d, H * hd, ab);
    }
    m.set(`${p}.post_attention_layernorm.weight`, [d]);
    if (isMoeLayer(config, l)) {
      const E = config.n_routed_experts, w = config.moe_intermediate_size;
      m.set(`${p}.mlp.gate.weight`, [E, d]);
      if (config.topk_method === 'noaux_tc') m.set(`${p}.mlp.gate.e_score_correction_bias`, [E]);
      for (let e = 0; e < E; e++) swiglu(`${p}.mlp.experts.${e}`, w);
      if (config.n_shared_experts) swiglu(`${p}.mlp.shared_experts`, config.n_shared_experts * w);
    } else if (isPhi3(config)) {
      lin(`${p}.mlp.gate_up_proj`, 2 * config.intermediate_size, d);
      lin(`${p}.mlp.down_proj`, d, config.intermediate_size);
    } else {
      swiglu(`${p}.mlp`, config.intermediate_size, arch === 'llama' && !!config.mlp_bias);
    }
  }
  m.set('model.norm.weight', [d]);
  if (!config.tie_word_embeddings) m.set('lm_head.weight', [V, d]);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

function weight(tensors: Tensors, name: string, shape: number[]): Float32Array {
  const t = tensors[name];
  if (!t) throw new Error(`reference: missing tensor ${name}`);
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw new Error(`reference: ${name} has shape [${t.shape}], expected [${shape}]`);
  }
  return t.data;
}

/** y[rows, out] = x[rows, in] · Wᵀ (+ bias when the checkpoint has `<name>.bias`). */
function linear(tensors: Tensors, name: string, x: Float64Array, rows: number, inp: number, out: number): Float64Array {
  const y = matmulNT(x, weight(tensors, `${name}.weight`, [out, inp]), rows, inp, out);
  const b = tensors[`${name}.bias`];
  if (b) {
    const bias = weight(tensors, `${name}.bias`, [out]);
    for (let r = 0; r < rows; r++) for (let j = 0; j < out; j++) y[r * out + j] += bias[j];
  }
  return y;
}

function norm(tensors: Tensors, name: string, x: Float64Array, rows: number, dim: number, eps: number): Float64Array {
  return rmsnorm(x, weight(tensors, name, [dim]), rows, dim, eps);
}

/** Columns [from, from + width) of a row-major [rows, cols] matrix. */
function columns(x: Float64Array, rows: number, cols: number, from: number, width: number): Float64Array {
  const y = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) y[r * width + j] = x[r * cols + from + j];
  return y;
}

// ---------------------------------------------------------------------------------------------
// RoPE and YaRN (docs/mla.md §5 and §6)
// ---------------------------------------------------------------------------------------------
//
// Sources: DeepSeek-V3 inference/model.py `precompute_freqs_cis` and MLA.__init__ (softmax_scale);
// Hugging Face modeling_deepseek.py (DeepSeek-V2/V3 remote code) `yarn_find_correction_dim`,
// `yarn_find_correction_range`, `yarn_linear_ramp_mask`, `yarn_get_mscale`,
// `DeepseekV2YarnRotaryEmbedding._set_cos_sin_cache` and DeepseekV2Attention.__init__.
// The formula followed (both sources agree on the frequencies):
//   f_k        = θ^(−2k/d_r),  k < d_r/2
//   corr(r)    = d_r · ln(L_orig / (2π r)) / (2 ln θ)          L_orig = original_max_position_embeddings
//   low        = max(floor(corr(beta_fast)), 0),  high = min(ceil(corr(beta_slow)), d_r − 1)
//   ramp_k     = clamp((k − low) / (high − low), 0, 1)          (high += 0.001 when low == high)
//   f'_k       = f_k / factor · ramp_k + f_k · (1 − ramp_k)
//   mscale(s, m) = 1 if s ≤ 1 else 0.1 · m · ln(s) + 1
//   softmax scale = 1/sqrt(d_n + d_r) · mscale(factor, mscale_all_dim)²   (skipped if mscale_all_dim is 0/absent)
//   cos and sin are multiplied by mscale(factor, mscale) / mscale(factor, mscale_all_dim)
// Where the two differ, we follow Hugging Face, since we read its config.json:
//  - HF applies YaRN whenever rope_scaling.type is "yarn"; DeepSeek's code only when its runtime
//    max_seq_len exceeds original_seq_len.
//  - HF takes the softmax m from mscale_all_dim with the factor ≤ 1 guard; DeepSeek's takes it from
//    its `mscale` argument with no guard (same value for factor ≥ 1 when mscale == mscale_all_dim).
//  - HF scales cos/sin by mscale/mscale_all_dim; DeepSeek's code does not. The ratio is 1 in every
//    released DeepSeek config (V2: 0.707/0.707, V3: 1/1), so this only matters for odd configs.
//  - Both compute frequencies and angles in float32; we compute frequencies in float64 and ops.rope
//    rounds the angle to f32(pos)·f32(freq), which can differ from an all-f32 blend by an ulp.

/** HF yarn_get_mscale. */
export function yarnMscale(factor: number, mscale: number): number {
  return factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1;
}

/** The [low, high] pair-index range of the YaRN ramp. */
export function yarnCorrectionRange(dim: number, base: number, originalMax: number, betaFast: number, betaSlow: number): [number, number] {
  const corr = (rotations: number) => (dim * Math.log(originalMax / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(corr(betaFast)), 0);
  const high = Math.min(Math.ceil(corr(betaSlow)), dim - 1) + 0; // + 0: Python's ceil never gives −0
  // As in both sources, nothing keeps high ≥ low (only for extreme configs); the ramp is then used as is.
  return [low, high];
}

/** YaRN-blended rotary frequencies for a rotary dim `dim`. */
export function yarnFreqs(dim: number, base: number, factor: number, originalMax: number, betaFast = 32, betaSlow = 1): Float64Array {
  const f = ropeFreqs(dim, base);
  const [low, high0] = yarnCorrectionRange(dim, base, originalMax, betaFast, betaSlow);
  const high = low === high0 ? high0 + 0.001 : high0;
  for (let k = 0; k < dim / 2; k++) {
    const ramp = Math.min(1, Math.max(0, (k - low) / (high - low)));
    f[k] = (f[k] / factor) * ramp + f[k] * (1 - ramp);
  }
  return f;
}

export interface RopeSetup {
  freqs: Float64Array;
  /** Multiplier on cos and sin (HF's YaRN mscale ratio; 1 otherwise). */
  cosSinScale: number;
  /** false: DeepSeek adjacent pairs; true: Llama half split. */
  halfSplit: boolean;
}

function yarnParams(config: HfConfig): null | { factor: number; originalMax: number; betaFast: number; betaSlow: number; mscale: number; mscaleAllDim: number } {
  const rs = config.rope_scaling;
  if (rs == null) return null;
  const type = rs.type ?? rs.rope_type;
  if (type !== 'yarn') throw new Error(`reference: rope_scaling type ${type} is not supported`);
  return {
    factor: rs.factor,
    originalMax: rs.original_max_position_embeddings ?? 4096, // HF DeepseekV2YarnRotaryEmbedding default
    betaFast: rs.beta_fast ?? 32,
    betaSlow: rs.beta_slow ?? 1,
    mscale: rs.mscale ?? 1,
    mscaleAllDim: rs.mscale_all_dim ?? 0,
  };
}

/**
 * Llama's rope_scaling as Hugging Face's _compute_linear_scaling_rope_parameters and
 * _compute_llama3_parameters apply it: linear divides every frequency by the factor; llama3 keeps
 * wavelengths below L / high_freq_factor, divides those above L / low_freq_factor by the factor,
 * and in between takes (1 − s) · f / factor + s · f, s = (L / λ − low) / (high − low).
 */
function llamaScaledFreqs(f: Float64Array, rs: HfConfig['rope_scaling']): Float64Array {
  if (rs == null) return f;
  const type = rs.rope_type ?? rs.type;
  if (type === 'linear') return f.map((x) => x / rs.factor);
  if (type !== 'llama3') throw new Error(`reference: rope_scaling type ${type} is not supported for Llama`);
  const L = rs.original_max_position_embeddings, low = rs.low_freq_factor, high = rs.high_freq_factor;
  return f.map((x) => {
    const wavelength = (2 * Math.PI) / x;
    if (wavelength > L / low) return x / rs.factor;
    if (wavelength < L / high) return x;
    const s = (L / wavelength - low) / (high - low);
    return (1 - s) * (x / rs.factor) + s * x;
  });
}

/** Phi-3's rotary dims: int(head_dim · partial_rotary_factor). */
function phi3RotaryDim(config: HfConfig): number {
  return Math.floor(llamaHeadDim(config) * (config.partial_rotary_factor ?? 1));
}

/**
 * Phi-3's LongRoPE as Hugging Face's _compute_longrope_parameters and its per-length switch give it
 * for a sequence of `seqLen` tokens: inv_freq / long_factor when seqLen > L
 * (original_max_position_embeddings, at the config's top level, default 4096), else / short_factor;
 * cos and sin × attention_factor, or √(1 + ln s / ln L) with s = max_position_embeddings / L (1 when s ≤ 1).
 */
function phi3Rope(config: HfConfig, seqLen: number): RopeSetup {
  const f = ropeFreqs(phi3RotaryDim(config), config.rope_theta ?? 10000);
  const rs = config.rope_scaling;
  if (rs == null) return { freqs: f, cosSinScale: 1, halfSplit: true };
  const L = config.original_max_position_embeddings ?? rs.original_max_position_embeddings ?? 4096;
  const s = config.max_position_embeddings / L;
  const ext: number[] = seqLen > L ? rs.long_factor : rs.short_factor;
  const attention = rs.attention_factor ?? (s <= 1 ? 1 : Math.sqrt(1 + Math.log(s) / Math.log(L)));
  return { freqs: f.map((x, k) => x / ext[k]), cosSinScale: attention, halfSplit: true };
}

/** Rotary setup for a config: frequencies, cos/sin scale and pair convention (`seqLen`: Phi-3's LongRoPE switch). */
export function ropeSetup(config: HfConfig, seqLen = 0): RopeSetup {
  const theta = config.rope_theta ?? 10000;
  if (isPhi3(config)) return phi3Rope(config, seqLen);
  if (architectureOf(config) === 'llama') {
    return { freqs: llamaScaledFreqs(ropeFreqs(llamaHeadDim(config), theta), config.rope_scaling), cosSinScale: 1, halfSplit: true };
  }
  const dr = config.qk_rope_head_dim;
  if (isMiniCpm3(config)) {
    // LongRoPE (HF _compute_longrope_parameters) within the original context: inv_freq / short_factor, cos and sin unscaled.
    const rs = config.rope_scaling;
    if (rs == null) return { freqs: ropeFreqs(dr, theta), cosSinScale: 1, halfSplit: true };
    if ((rs.rope_type ?? rs.type) !== 'longrope' || config.max_position_embeddings > rs.original_max_position_embeddings) {
      throw new Error('reference: MiniCPM3 takes LongRoPE within its original context only');
    }
    return { freqs: ropeFreqs(dr, theta).map((f, k) => f / rs.short_factor[k]), cosSinScale: 1, halfSplit: true };
  }
  const y = yarnParams(config);
  if (!y) return { freqs: ropeFreqs(dr, theta), cosSinScale: 1, halfSplit: false };
  return {
    freqs: yarnFreqs(dr, theta, y.factor, y.originalMax, y.betaFast, y.betaSlow),
    cosSinScale: yarnMscale(y.factor, y.mscale) / yarnMscale(y.factor, y.mscaleAllDim),
    halfSplit: false,
  };
}

/** Softmax scale s of docs/mla.md §2 step 4 and §6 (or 1/sqrt(head_dim) for Llama). */
export function attentionScale(config: HfConfig): number {
  if (architectureOf(config) === 'llama') return 1 / Math.sqrt(llamaHeadDim(config));
  let s = 1 / Math.sqrt(config.qk_nope_head_dim + config.qk_rope_head_dim);
  if (isMiniCpm3(config)) return s;
  const y = yarnParams(config);
  if (y && y.mscaleAllDim) {
    const m = yarnMscale(y.factor, y.mscaleAllDim);
    s *= m * m;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// MLA attention (docs/mla.md §2), naive formulation (§3)
// ---------------------------------------------------------------------------------------------

/** Step 1. Query: q = q_b_proj · RMSNorm(q_a_proj · h), or q_proj · h. Returns [T, H·(d_n + d_r)], q^R not yet rotated. */
export function mlaQuery(config: HfConfig, tensors: Tensors, layer: number, x: Float64Array, T: number): Float64Array {
  const p = `model.layers.${layer}.self_attn`;
  const d = config.hidden_size, H = config.num_attention_heads;
  const qk = config.qk_nope_head_dim + config.qk_rope_head_dim, dq = config.q_lora_rank;
  if (!dq) return linear(tensors, `${p}.q_proj`, x, T, d, H * qk);
  const cq = norm(tensors, `${p}.q_a_layernorm.weight`, linear(tensors, `${p}.q_a_proj`, x, T, d, dq), T, dq, config.rms_norm_eps);
  return linear(tensors, `${p}.q_b_proj`, cq, T, dq, H * qk);
}

/** Step 2. Latent cache: c_kv = RMSNorm(first d_c of kv_a_proj_with_mqa · h), k^R = RoPE(last d_r, t). */
export function mlaLatent(config: HfConfig, tensors: Tensors, layer: number, x: Float64Array, T: number): { ckv: Float64Array; kR: Float64Array } {
  const p = `model.layers.${layer}.self_attn`;
  const d = config.hidden_size, dc = config.kv_lora_rank, dr = config.qk_rope_head_dim;
  const kva = linear(tensors, `${p}.kv_a_proj_with_mqa`, x, T, d, dc + dr);
  const ckv = norm(tensors, `${p}.kv_a_layernorm.weight`, columns(kva, T, dc + dr, 0, dc), T, dc, config.rms_norm_eps);
  const kR = columns(kva, T, dc + dr, dc, dr);
  const r = ropeSetup(config);
  for (let t = 0; t < T; t++) rope(kR, t * dr, t, r.freqs, r.halfSplit, r.cosSinScale);
  return { ckv, kR };
}

/** Rotates q^R of every head at its position, in place (step 1's RoPE). */
export function mlaRotateQuery(config: HfConfig, q: Float64Array, T: number): void {
  const H = config.num_attention_heads, dn = config.qk_nope_head_dim, dr = config.qk_rope_head_dim;
  const r = ropeSetup(config);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < H; i++) rope(q, (t * H + i) * (dn + dr) + dn, t, r.freqs, r.halfSplit, r.cosSinScale);
  }
}

/** One MLA attention block, naive: expand k_i^C, v_i per token (step 3), causal softmax attention (step 4), o_proj. */
export function mlaAttention(config: HfConfig, tensors: Tensors, layer: number, x: Float64Array, T: number): Float64Array {
  const p = `model.layers.${layer}.self_attn`;
  const d = config.hidden_size, H = config.num_attention_heads;
  const dn = config.qk_nope_head_dim, dr = config.qk_rope_head_dim, dv = config.v_head_dim, dc = config.kv_lora_rank;

  const q = mlaQuery(config, tensors, layer, x, T); // step 1
  mlaRotateQuery(config, q, T);
  const { ckv, kR } = mlaLatent(config, tensors, layer, x, T); // step 2
  const kv = linear(tensors, `${p}.kv_b_proj`, ckv, T, dc, H * (dn + dv)); // step 3: [T, H, d_n + d_v]

  const scale = attentionScale(config);
  const o = new Float64Array(T * H * dv);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < H; i++) {
      const qi = q.subarray((t * H + i) * (dn + dr), (t * H + i + 1) * (dn + dr)); // [q_i^C ; q_i^R]
      const keys: Float64Array[] = [], values: Float64Array[] = [];
      for (let j = 0; j <= t; j++) { // causal: j ≤ t
        const row = (j * H + i) * (dn + dv);
        const k = new Float64Array(dn + dr);
        k.set(kv.subarray(row, row + dn), 0); // k_{j,i}^C
        k.set(kR.subarray(j * dr, (j + 1) * dr), dn); // shared k_j^R
        keys.push(k);
        values.push(kv.subarray(row + dn, row + dn + dv)); // v_{j,i}
      }
      o.set(attend(qi, keys, values, scale), (t * H + i) * dv); // step 4
    }
  }
  return linear(tensors, `${p}.o_proj`, o, T, H * dv, d);
}

// ---------------------------------------------------------------------------------------------
// Llama attention (MHA / GQA / MQA, half-split RoPE)
// ---------------------------------------------------------------------------------------------

export function llamaAttention(config: HfConfig, tensors: Tensors, layer: number, x: Float64Array, T: number): Float64Array {
  const p = `model.layers.${layer}.self_attn`;
  const d = config.hidden_size, H = config.num_attention_heads, KV = config.num_key_value_heads ?? H;
  const hd = llamaHeadDim(config), group = H / KV;
  if (!Number.isInteger(group)) throw new Error('reference: num_attention_heads is not a multiple of num_key_value_heads');
  let q: Float64Array, k: Float64Array, v: Float64Array;
  if (isPhi3(config)) {
    // modeling_phi3: qkv = qkv_proj(x); q, k, v are its first H·hd, next KV·hd and last KV·hd columns.
    const qkv = linear(tensors, `${p}.qkv_proj`, x, T, d, (H + 2 * KV) * hd);
    q = columns(qkv, T, (H + 2 * KV) * hd, 0, H * hd);
    k = columns(qkv, T, (H + 2 * KV) * hd, H * hd, KV * hd);
    v = columns(qkv, T, (H + 2 * KV) * hd, (H + KV) * hd, KV * hd);
  } else {
    q = linear(tensors, `${p}.q_proj`, x, T, d, H * hd);
    k = linear(tensors, `${p}.k_proj`, x, T, d, KV * hd);
    v = linear(tensors, `${p}.v_proj`, x, T, d, KV * hd);
  }
  // Phi-3's partial rotary: the first freqs.length·2 dims of each head rotate (rotate_half over them), the rest pass.
  const r = ropeSetup(config, T);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < H; i++) rope(q, (t * H + i) * hd, t, r.freqs, true, r.cosSinScale);
    for (let g = 0; g < KV; g++) rope(k, (t * KV + g) * hd, t, r.freqs, true, r.cosSinScale);
  }
  const scale = attentionScale(config);
  // Hugging Face's sliding window (Mistral, Phi-3): query t sees key j when t − j < sliding_window.
  const mistral = config.architectures?.[0] === 'MistralForCausalLM' || config.model_type === 'mistral';
  const window: number = (isPhi3(config) || mistral) ? (config.sliding_window === undefined && mistral ? 4096 : config.sliding_window ?? Infinity) : Infinity;
  const o = new Float64Array(T * H * hd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < H; i++) {
      const g = Math.floor(i / group); // query head i reads KV head g
      const keys: Float64Array[] = [], values: Float64Array[] = [];
      for (let j = Math.max(0, t - window + 1); j <= t; j++) {
        keys.push(k.subarray((j * KV + g) * hd, (j * KV + g + 1) * hd));
        values.push(v.subarray((j * KV + g) * hd, (j * KV + g + 1) * hd));
      }
      o.set(attend(q.subarray((t * H + i) * hd, (t * H + i + 1) * hd), keys, values, scale), (t * H + i) * hd);
    }
  }
  return linear(tensors, `${p}.o_proj`, o, T, H * hd, d);
}

// ---------------------------------------------------------------------------------------------
// FFN: dense SwiGLU and mixture of experts (docs/mla.md §7)
// ---------------------------------------------------------------------------------------------

/** down(silu(gate(x)) ⊙ up(x)) with weights `<prefix>.{gate,up,down}_proj`. */
export function swiglu(tensors: Tensors, prefix: string, x: Float64Array, T: number, d: number, width: number): Float64Array {
  const g = linear(tensors, `${prefix}.gate_proj`, x, T, d, width);
  const u = linear(tensors, `${prefix}.up_proj`, x, T, d, width);
  for (let i = 0; i < g.length; i++) g[i] = silu(g[i]) * u[i];
  return linear(tensors, `${prefix}.down_proj`, g, T, width, d);
}

/** Indices of the k largest values (ties: lower index first), in descending order of value. */
function topK(values: ArrayLike<number>, k: number, allowed: (i: number) => boolean = () => true): number[] {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (allowed(i)) idx.push(i);
  idx.sort((a, b) => (values[b] - values[a]) || (a - b));
  return idx.slice(0, k);
}

export interface Route { experts: number[]; weights: number[] }

/**
 * Routing of one token from its gate logits (docs/mla.md §7, MoE routing).
 * V2 (scoring_func softmax, topk_method greedy | group_limited_greedy): softmax scores; greedy top-k
 *   (group_limited_greedy first keeps the topk_group groups with the largest max score).
 * V3 (scoring_func sigmoid, topk_method noaux_tc): sigmoid scores; selection on scores +
 *   e_score_correction_bias: groups scored by the sum of their top-2 biased scores, topk_group
 *   groups kept, top-k experts among them; the weights are the unbiased scores.
 * Then: renormalise the k weights if norm_topk_prob (and k > 1), and multiply by
 * routed_scaling_factor (always, as docs/mla.md §7, HF's V3 code and DeepSeek's inference code do; HF's
 * V2 code skips the factor when it renormalises — no released V2 config sets both).
 * Excluded groups are masked with −∞ as in DeepSeek's inference code (HF masks with 0.0, which
 * differs only when every allowed biased score is negative).
 */
export function moeRoute(config: HfConfig, logits: ArrayLike<number>, bias?: ArrayLike<number>): Route {
  const E = config.n_routed_experts, k = config.num_experts_per_tok;
  const scoring = config.scoring_func ?? 'softmax', method = config.topk_method ?? 'greedy';
  const scores = new Float64Array(E);
  if (scoring === 'softmax') {
    let max = -Infinity, sum = 0;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[e]);
    for (let e = 0; e < E; e++) { scores[e] = Math.exp(logits[e] - max); sum += scores[e]; }
    for (let e = 0; e < E; e++) scores[e] /= sum;
  } else if (scoring === 'sigmoid') {
    for (let e = 0; e < E; e++) scores[e] = 1 / (1 + Math.exp(-logits[e]));
  } else {
    throw new Error(`reference: scoring_func ${scoring} is not supported`);
  }

  const choice = Float64Array.from(scores);
  if (method === 'noaux_tc') {
    if (!bias) throw new Error('reference: noaux_tc routing needs e_score_correction_bias');
    for (let e = 0; e < E; e++) choice[e] += bias[e];
  } else if (method !== 'greedy' && method !== 'group_limited_greedy') {
    throw new Error(`reference: topk_method ${method} is not supported`);
  }

  let allowed = (_e: number) => true;
  const G = config.n_group ?? 1;
  if (method !== 'greedy' && G > 1) {
    const per = E / G;
    const groupScore = new Float64Array(G);
    for (let g = 0; g < G; g++) {
      const members = Array.from(choice.subarray(g * per, (g + 1) * per));
      groupScore[g] = method === 'noaux_tc'
        ? topK(members, 2).reduce((s, i) => s + members[i], 0) // sum of the top-2 biased scores
        : Math.max(...members); // group_limited_greedy: the best score
    }
    const keep = new Set(topK(groupScore, config.topk_group));
    allowed = (e) => keep.has(Math.floor(e / per));
  }

  const experts = topK(choice, k, allowed);
  let weights = experts.map((e) => scores[e]);
  if (config.norm_topk_prob && k > 1) {
    const sum = weights.reduce((a, b) => a + b, 0) + 1e-20;
    weights = weights.map((w) => w / sum);
  }
  const rsf = config.routed_scaling_factor ?? 1;
  return { experts, weights: weights.map((w) => w * rsf) };
}

/** Mixture-of-experts FFN of one layer: Σ_e w_e · expert_e(x) + shared_experts(x), token by token. */
export function moeFfn(config: HfConfig, tensors: Tensors, layer: number, x: Float64Array, T: number): Float64Array {
  const p = `model.layers.${layer}.mlp`;
  const d = config.hidden_size, E = config.n_routed_experts, w = config.moe_intermediate_size;
  const logits = linear(tensors, `${p}.gate`, x, T, d, E);
  const bias = config.topk_method === 'noaux_tc' ? weight(tensors, `${p}.gate.e_score_correction_bias`, [E]) : undefined;
  const y = config.n_shared_experts ? swiglu(tensors, `${p}.shared_experts`, x, T, d, config.n_shared_experts * w) : new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    const xt = x.subarray(t * d, (t + 1) * d);
    const route = moeRoute(config, logits.subarray(t * E, (t + 1) * E), bias);
    route.experts.forEach((e, n) => {
      const out = swiglu(tensors, `${p}.experts.${e}`, xt, 1, d, w);
      for (let i = 0; i < d; i++) y[t * d + i] += route.weights[n] * out[i];
    });
  }
  return y;
}

export function ffn(config: HfConfig, tensors: Tensors, layer: number, x: Float64Array, T: number): Float64Array {
  if (isMoeLayer(config, layer)) return moeFfn(config, tensors, layer, x, T);
  if (isPhi3(config)) {
    // modeling_phi3: gate, up = gate_up_proj(x).chunk(2); down(up · silu(gate)).
    const p = `model.layers.${layer}.mlp`, d = config.hidden_size, w = config.intermediate_size;
    const gu = linear(tensors, `${p}.gate_up_proj`, x, T, d, 2 * w);
    const h = new Float64Array(T * w);
    for (let t = 0; t < T; t++) for (let i = 0; i < w; i++) h[t * w + i] = silu(gu[t * 2 * w + i]) * gu[t * 2 * w + w + i];
    return linear(tensors, `${p}.down_proj`, h, T, w, d);
  }
  return swiglu(tensors, `model.layers.${layer}.mlp`, x, T, config.hidden_size, config.intermediate_size);
}

// ---------------------------------------------------------------------------------------------
// The whole decoder
// ---------------------------------------------------------------------------------------------

/** Logits for every position, row-major [T, vocab], of a causal LM run over `ids` from position 0. */
export function referenceForward(config: HfConfig, tensors: Tensors, ids: number[]): Float64Array {
  const arch = architectureOf(config);
  const T = ids.length, d = config.hidden_size, V = config.vocab_size, eps = config.rms_norm_eps;
  if (T === 0) throw new Error('reference: no tokens');

  // Embedding.
  const embed = weight(tensors, 'model.embed_tokens.weight', [V, d]);
  const x = new Float64Array(T * d);
  const scales = miniCpm3Scales(config);
  ids.forEach((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`reference: token ${id} out of range`);
    for (let i = 0; i < d; i++) x[t * d + i] = embed[id * d + i] * scales.embed;
  });

  // Pre-norm residual blocks: h += Attn(RMSNorm(h)); h += FFN(RMSNorm(h)).
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const a = norm(tensors, `${p}.input_layernorm.weight`, x, T, d, eps);
    const attn = arch === 'mla' ? mlaAttention(config, tensors, l, a, T) : llamaAttention(config, tensors, l, a, T);
    for (let i = 0; i < x.length; i++) x[i] += attn[i] * scales.residual;
    const f = norm(tensors, `${p}.post_attention_layernorm.weight`, x, T, d, eps);
    const out = ffn(config, tensors, l, f, T);
    for (let i = 0; i < x.length; i++) x[i] += out[i] * scales.residual;
  }

  // Final norm and LM head (tied to the embedding when tie_word_embeddings).
  const h = norm(tensors, 'model.norm.weight', x, T, d, eps).map((v) => v * scales.head);
  const head = config.tie_word_embeddings ? embed : weight(tensors, 'lm_head.weight', [V, d]);
  return matmulNT(h, head, T, d, V);
}

/** Every tensor of a safetensors file (F32), read with our own reader. */
export function tensorsFromSafetensors(bytes: Uint8Array, fileName?: string): Tensors {
  const out: Tensors = {};
  for (const info of parseSafetensorsHeader(bytes, fileName).tensors.values()) {
    const data = new Float32Array(elementCount(info.shape));
    readTensorF32(bytes, info, data, fileName);
    out[info.name] = { shape: info.shape, data };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Random checkpoints and tiny configs for tests
// ---------------------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random weights for every tensor the config implies (expectedTensorShapes), deterministic in
 * `seed`. Matrices are uniform ±sqrt(3 / fan_in) (unit-variance outputs for unit-variance inputs, so
 * attention scores and logits are O(1) and attention is far from uniform), norms 1 ± 0.2, biases and
 * e_score_correction_bias ±0.1, embeddings ±1.
 */
export function makeRandomCheckpoint(config: HfConfig, seed: number): Tensors {
  const r = mulberry32(seed);
  const u = (a: number) => (2 * r() - 1) * a;
  const out: Tensors = {};
  for (const [name, shape] of expectedTensorShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name === 'model.embed_tokens.weight') for (let i = 0; i < n; i++) data[i] = u(1);
    else if (name.endsWith('norm.weight')) for (let i = 0; i < n; i++) data[i] = 1 + u(0.2);
    else if (shape.length === 1) for (let i = 0; i < n; i++) data[i] = u(0.1);
    else { const a = Math.sqrt(3 / shape[1]); for (let i = 0; i < n; i++) data[i] = u(a); }
    out[name] = { shape: shape.slice(), data };
  }
  return out;
}

/** A tiny DeepSeek-V2 MLA config (dense FFN, q_lora_rank 32; pass q_lora_rank: null for q_proj). */
export function tinyMlaConfig(overrides: Record<string, unknown> = {}): HfConfig {
  return {
    architectures: ['DeepseekV2ForCausalLM'],
    model_type: 'deepseek_v2',
    vocab_size: 50,
    hidden_size: 64,
    intermediate_size: 96,
    moe_intermediate_size: null,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    q_lora_rank: 32,
    kv_lora_rank: 24,
    qk_nope_head_dim: 16,
    qk_rope_head_dim: 8,
    v_head_dim: 12, // ≠ qk_nope_head_dim on purpose
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    max_position_embeddings: 128,
    rope_scaling: null,
    n_routed_experts: null,
    n_shared_experts: null,
    num_experts_per_tok: null,
    first_k_dense_replace: 0,
    moe_layer_freq: 1,
    routed_scaling_factor: 1,
    scoring_func: 'softmax',
    topk_method: 'greedy',
    n_group: 1,
    topk_group: 1,
    norm_topk_prob: false,
    tie_word_embeddings: false,
    attention_bias: false,
    bos_token_id: 0,
    eos_token_id: 1,
    torch_dtype: 'float32',
    ...overrides,
  };
}

/**
 * Tiny MiniCPM3: the dense MLA above with rotate_half rotary, LongRoPE short factors within its
 * original context, and MiniCPM3-4B's scalings (scale_emb 12, scale_depth 1.4, dim_model_base 16
 * of 64, as 256 of 2560 there).
 */
export function tinyMiniCpm3Config(overrides: Record<string, unknown> = {}): HfConfig {
  return tinyMlaConfig({
    architectures: ['MiniCPM3ForCausalLM'],
    model_type: 'minicpm3',
    scale_emb: 12,
    scale_depth: 1.4,
    dim_model_base: 16,
    rope_scaling: { rope_type: 'longrope', original_max_position_embeddings: 128,
      short_factor: [1, 1.5, 3, 12], long_factor: [1, 2, 8, 32] },
    ...overrides,
  });
}

/** Tiny DeepSeek-V2 MoE: layer 0 dense, layer 1 MoE (8 experts, top-2, softmax greedy, 2 shared). */
export function tinyMlaMoeV2Config(overrides: Record<string, unknown> = {}): HfConfig {
  return tinyMlaConfig({
    q_lora_rank: null,
    moe_intermediate_size: 32,
    n_routed_experts: 8,
    n_shared_experts: 2,
    num_experts_per_tok: 2,
    first_k_dense_replace: 1,
    routed_scaling_factor: 1.5,
    ...overrides,
  });
}

/**
 * Tiny DeepSeek-V3: layer 0 dense, layer 1 MoE (8 experts in 4 groups, 2 groups kept, top-3,
 * sigmoid + correction bias, renormalised × 2.5, 1 shared expert), YaRN factor 4 over 32 original positions.
 */
export function tinyMlaMoeV3Config(overrides: Record<string, unknown> = {}): HfConfig {
  return tinyMlaConfig({
    architectures: ['DeepseekV3ForCausalLM'],
    model_type: 'deepseek_v3',
    moe_intermediate_size: 32,
    n_routed_experts: 8,
    n_shared_experts: 1,
    num_experts_per_tok: 3,
    first_k_dense_replace: 1,
    routed_scaling_factor: 2.5,
    scoring_func: 'sigmoid',
    topk_method: 'noaux_tc',
    n_group: 4,
    topk_group: 2,
    norm_topk_prob: true,
    rope_theta: 100,
    rope_scaling: {
      type: 'yarn', factor: 4, original_max_position_embeddings: 32,
      beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1,
    },
    ...overrides,
  });
}

/** A tiny Llama config with grouped-query attention (4 query heads, 2 KV heads of 16 dims). */
/**
 * Tiny Phi-3: the Llama above with fused qkv_proj / gate_up_proj; LongRoPE over an original context
 * of 8 (so the 30-token conformance sequences use long_factor and the attention factor), unless overridden.
 */
export function tinyPhi3Config(overrides: Record<string, unknown> = {}): HfConfig {
  return tinyLlamaConfig({
    architectures: ['Phi3ForCausalLM'], model_type: 'phi3', rms_norm_eps: 1e-5, original_max_position_embeddings: 8,
    sliding_window: null, rope_scaling: null, ...overrides,
  });
}

/** LongRoPE factors for a rotary dim of `dim`: short near 1, long growing with the wavelength. */
export function longRopeScaling(dim: number): Record<string, unknown> {
  const half = dim / 2;
  return {
    type: 'longrope',
    short_factor: Array.from({ length: half }, (_, k) => 1 + k / half),
    long_factor: Array.from({ length: half }, (_, k) => 1 + 3 * k * k / half),
  };
}

/** Tiny Mistral: the Llama above with a sliding window of 40 (more than the tests' sequences). */
export function tinyMistralConfig(overrides: Record<string, unknown> = {}): HfConfig {
  return tinyLlamaConfig({ architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 40, ...overrides });
}

/** Tiny Qwen2: the Llama above with Qwen2's q, k, v biases and its rope_theta. */
export function tinyQwen2Config(overrides: Record<string, unknown> = {}): HfConfig {
  return tinyLlamaConfig({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', rope_theta: 1_000_000, use_sliding_window: false, ...overrides });
}

export function tinyLlamaConfig(overrides: Record<string, unknown> = {}): HfConfig {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 50,
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    max_position_embeddings: 128,
    rope_scaling: null,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: 0,
    eos_token_id: 1,
    torch_dtype: 'float32',
    ...overrides,
  };
}
