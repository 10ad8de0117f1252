// config.json → the few numbers the decoder needs, validated once. Names follow docs/mla.md §1.
import { MlaError, showValue } from '../errors.js';

/** Multi-head Latent Attention (DeepSeek-V2/V3). */
export interface MlaAttention {
  kind: 'mla';
  heads: number;          // H
  qLoraRank: number | null; // d_q, null = no query compression
  kvLoraRank: number;     // d_c
  nopeDim: number;        // d_n
  ropeDim: number;        // d_r
  vDim: number;           // d_v
  /** RMSNorm on c_kv (kv_a_layernorm); false when config.json says "qk_latent_layernorm": false (converted models). */
  latentNorm: boolean;
}

/** Ordinary attention with kvHeads K/V heads: MHA (kvHeads = heads), GQA, MQA (kvHeads = 1). */
export interface GroupedAttention {
  kind: 'gqa';
  heads: number;
  kvHeads: number;
  headDim: number;  // query/key dim per head (all of it rotated)
  vDim: number;     // value dim per head
  /** Qwen2: the q, k and v projections add biases. */
  qkvBias?: boolean;
}

export type AttentionConfig = MlaAttention | GroupedAttention;

/** YaRN context extension (rope_scaling type "yarn"). */
export interface YarnScaling {
  factor: number;
  originalMaxPositions: number;
  betaFast: number;
  betaSlow: number;
  mscale: number;
  mscaleAllDim: number;
}

/** A feed-forward block: one dense SwiGLU, or a mixture of SwiGLU experts. */
export interface DenseFfn { kind: 'dense'; intermediate: number }

/** DeepSeek MoE (docs/mla.md §7): routed experts chosen per token, plus always-on shared experts. */
export interface MoeFfn {
  kind: 'moe';
  experts: number;            // n_routed_experts
  topK: number;               // num_experts_per_tok
  intermediate: number;       // moe_intermediate_size, per expert
  sharedIntermediate: number; // n_shared_experts · moe_intermediate_size (0: none)
  scoring: 'softmax' | 'sigmoid';
  /** greedy (V2), group_limited_greedy (V2 with groups), noaux_tc (V3: biased selection). */
  method: 'greedy' | 'group_limited_greedy' | 'noaux_tc';
  groups: number;             // n_group
  topkGroup: number;          // topk_group
  normTopk: boolean;          // norm_topk_prob
  scale: number;              // routed_scaling_factor
}

export type FfnConfig = DenseFfn | MoeFfn;

export interface ModelConfig {
  architecture: string;
  vocabSize: number;
  hidden: number;
  layers: number;
  attention: AttentionConfig;
  ffn: FfnConfig[];            // one per layer
  rmsEps: number;
  ropeTheta: number;
  /** 'adjacent': DeepSeek's (x[2k], x[2k+1]) pairs; 'half': Llama's (x[k], x[k+d/2]). */
  ropeStyle: 'adjacent' | 'half';
  yarn: YarnScaling | null;
  /**
   * A divisor for each rotary frequency (rotary dim / 2 of them, f32 values), or null. Llama:
   * rope_scaling "linear" (all the factor) or "llama3" (Llama 3.1+), or as GGUF's rope_freqs holds
   * them (config key rope_freq_factors). MiniCPM3: LongRoPE's short_factor.
   */
  ropeFreqFactors: number[] | null;
  /**
   * MiniCPM3's scalings (1 elsewhere): the embeddings are multiplied by embedScale (scale_emb), each
   * residual branch by residualScale (scale_depth / √layers), and the final hidden state by
   * headScale (dim_model_base / hidden_size) before lm_head.
   */
  embedScale: number;
  residualScale: number;
  headScale: number;
  maxPositions: number;
  tieEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

const DEEPSEEK_ARCHS = ['DeepseekV2ForCausalLM', 'DeepseekV3ForCausalLM'];
/** DeepSeek-V2's attention with Llama's rotary pairing, LongRoPE and three scalings (embedScale …). */
const MINICPM3 = 'MiniCPM3ForCausalLM';
const MLA_ARCHS = [...DEEPSEEK_ARCHS, MINICPM3];
/** Qwen2 is Llama's layout with biases on q, k and v (and its own tokenizer). */
const GQA_ARCHS = ['LlamaForCausalLM', 'Qwen2ForCausalLM'];
const MAX_LAYERS = 4096;
/** Far above any released model (256); bounds what rope scaling allocates for a corrupt config. */
const MAX_HEAD_DIM = 65536;

function bad(msg: string): never {
  throw new MlaError('BAD_CONFIG', `config.json: ${msg}`);
}

function int(raw: Record<string, unknown>, key: string, min = 1): number {
  const v = raw[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) bad(`"${key}" must be an integer ≥ ${min}, got ${showValue(v)}`);
  return v;
}

function optInt(raw: Record<string, unknown>, key: string, fallback: number | null, min = 1): number | null {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  return int(raw, key, min);
}

function num(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(`"${key}" must be a finite number, got ${showValue(raw[key])}`);
  return v;
}

function tokenIds(v: unknown): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x) && x >= 0)) bad(`token ids must be non-negative integers, got ${showValue(v)}`);
  return list as number[];
}

function parseYarn(raw: Record<string, unknown>): YarnScaling | null {
  const s = raw.rope_scaling;
  if (s === undefined || s === null) return null;
  if (typeof s !== 'object') bad('"rope_scaling" must be an object or null');
  const r = s as Record<string, unknown>;
  const type = r.type ?? r.rope_type;
  if (type !== 'yarn') bad(`rope_scaling type ${showValue(type)} is not supported (only "yarn")`);
  const y: YarnScaling = {
    factor: num(r, 'factor'),
    originalMaxPositions: int(r, 'original_max_position_embeddings'),
    betaFast: num(r, 'beta_fast', 32),
    betaSlow: num(r, 'beta_slow', 1),
    mscale: num(r, 'mscale', 1),
    mscaleAllDim: num(r, 'mscale_all_dim', 0),
  };
  if (y.factor <= 0) bad('rope_scaling.factor must be > 0');
  return y;
}

/**
 * Llama's rope scaling as one divisor per frequency f_k = θ^(−2k/d), each rounded to f32 as GGUF's
 * rope_freqs tensor stores it, so a file written and read back gives the same frequencies:
 *   - "linear": every divisor is the factor;
 *   - "llama3" (Llama 3.1+; Hugging Face's _compute_llama3_parameters, llama.cpp's rope_freqs):
 *     with wavelength λ_k = 2π / f_k and L the original context, 1 where λ_k < L / high_freq_factor,
 *     the factor where λ_k > L / low_freq_factor, and between them 1 / ((1 − s) / factor + s),
 *     s = (L / λ_k − low_freq_factor) / (high_freq_factor − low_freq_factor).
 * GGUF files give the divisors themselves (rope_freq_factors).
 */
function parseLlamaRope(raw: Record<string, unknown>, headDim: number, theta: number): number[] | null {
  const f = llamaRopeFactors(raw, headDim, theta);
  // Kept as f32: a value that f32 rounds to 0 or to infinity would give no usable frequency.
  if (f && !f.every((x) => x > 0 && Number.isFinite(x))) bad(`rope scaling gives frequency factors f32 cannot hold (${showValue(f.find((x) => !(x > 0 && Number.isFinite(x))))})`);
  return f;
}

function llamaRopeFactors(raw: Record<string, unknown>, headDim: number, theta: number): number[] | null {
  const half = headDim / 2;
  const given = raw.rope_freq_factors;
  const s = raw.rope_scaling;
  if (given !== undefined && given !== null) {
    if (s !== undefined && s !== null) bad('"rope_scaling" and "rope_freq_factors" are both set');
    if (!Array.isArray(given) || given.length !== half || !given.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) {
      bad(`"rope_freq_factors" must be ${half} positive numbers (one per rotary frequency), got ${showValue(given)}`);
    }
    return given.map((x) => Math.fround(x));
  }
  if (s === undefined || s === null) return null;
  if (typeof s !== 'object' || Array.isArray(s)) bad('"rope_scaling" must be an object or null');
  const r = s as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return null;
  if (type !== 'linear' && type !== 'llama3') {
    bad(`rope_scaling type ${showValue(type)} is not supported for Llama-layout models (supported: "linear", "llama3")`);
  }
  const factor = num(r, 'factor');
  if (factor <= 0) bad('rope_scaling.factor must be > 0');
  if (type === 'linear') return new Array(half).fill(Math.fround(factor));
  const low = num(r, 'low_freq_factor'), high = num(r, 'high_freq_factor');
  const context = int(r, 'original_max_position_embeddings');
  if (!(low > 0 && high > low)) bad(`rope_scaling needs 0 < low_freq_factor < high_freq_factor, got ${low} and ${high}`);
  return Array.from({ length: half }, (_, k) => {
    const wavelength = 2 * Math.PI * Math.pow(theta, (2 * k) / headDim);
    if (wavelength < context / high) return 1;
    if (wavelength > context / low) return Math.fround(factor);
    const smooth = (context / wavelength - low) / (high - low);
    return Math.fround(1 / ((1 - smooth) / factor + smooth));
  });
}

/**
 * MiniCPM3's LongRoPE (Hugging Face's _compute_longrope_parameters): short_factor divides the
 * frequencies while the sequence is within original_max_position_embeddings, long_factor past it,
 * where cos and sin are also scaled. Only the first regime is implemented: a model whose
 * max_position_embeddings passes the original context is refused.
 */
function parseLongRope(raw: Record<string, unknown>, ropeDim: number, maxPositions: number): number[] | null {
  const s = raw.rope_scaling;
  if (s === undefined || s === null) return null;
  if (typeof s !== 'object' || Array.isArray(s)) bad('"rope_scaling" must be an object or null');
  const r = s as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type !== 'longrope') bad(`rope_scaling type ${showValue(type)} is not supported for MiniCPM3 (only "longrope")`);
  const original = int(r, 'original_max_position_embeddings');
  if (maxPositions > original) {
    bad(`LongRoPE past its original context (max_position_embeddings ${maxPositions} > ${original}) switches to long_factor, which is not supported`);
  }
  const f = r.short_factor;
  if (!Array.isArray(f) || f.length !== ropeDim / 2 || !f.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) {
    bad(`rope_scaling.short_factor must be ${ropeDim / 2} positive numbers, got ${showValue(f)}`);
  }
  const factors = f.map((x) => Math.fround(x));
  if (!factors.every((x) => x > 0 && Number.isFinite(x))) bad('rope_scaling.short_factor holds values f32 cannot hold');
  return factors;
}

/** Far above any released model (DeepSeek-V3: 256); bounds the work of checking a config. */
const MAX_EXPERTS = 4096;

function parseMoe(raw: Record<string, unknown>): MoeFfn {
  const experts = int(raw, 'n_routed_experts');
  const scoring = raw.scoring_func ?? 'softmax';
  if (scoring !== 'softmax' && scoring !== 'sigmoid') bad(`scoring_func ${showValue(scoring)} is not supported`);
  const method = raw.topk_method ?? 'greedy';
  if (method !== 'greedy' && method !== 'group_limited_greedy' && method !== 'noaux_tc') {
    bad(`topk_method ${showValue(method)} is not supported`);
  }
  const moe: MoeFfn = {
    kind: 'moe', experts,
    topK: int(raw, 'num_experts_per_tok'),
    intermediate: int(raw, 'moe_intermediate_size'),
    sharedIntermediate: (optInt(raw, 'n_shared_experts', 0, 0) ?? 0) * int(raw, 'moe_intermediate_size'),
    scoring, method,
    groups: optInt(raw, 'n_group', 1)!,
    topkGroup: optInt(raw, 'topk_group', 1)!,
    normTopk: raw.norm_topk_prob === true,
    scale: num(raw, 'routed_scaling_factor', 1),
  };
  if (experts > MAX_EXPERTS) bad(`n_routed_experts (${experts}) is more than ${MAX_EXPERTS}`);
  if (moe.topK > experts) bad(`num_experts_per_tok (${moe.topK}) exceeds n_routed_experts (${experts})`);
  if (experts % moe.groups) bad(`n_routed_experts (${experts}) must be a multiple of n_group (${moe.groups})`);
  if (moe.topkGroup > moe.groups) bad(`topk_group (${moe.topkGroup}) exceeds n_group (${moe.groups})`);
  if (method !== 'greedy' && moe.topK > moe.topkGroup * (experts / moe.groups)) {
    bad(`num_experts_per_tok (${moe.topK}) exceeds the experts in topk_group groups`);
  }
  if (method === 'noaux_tc' && experts / moe.groups < 2) bad('noaux_tc routing needs at least 2 experts per group');
  return moe;
}

/** Layer l is MoE when n_routed_experts is set, l ≥ first_k_dense_replace and l % moe_layer_freq = 0. */
function parseFfn(raw: Record<string, unknown>, layers: number, intermediate: number, deepseek: boolean): FfnConfig[] {
  const dense: DenseFfn = { kind: 'dense', intermediate };
  if (!deepseek || raw.n_routed_experts === undefined || raw.n_routed_experts === null) return new Array(layers).fill(dense);
  const moe = parseMoe(raw);
  const firstDense = optInt(raw, 'first_k_dense_replace', 0, 0)!;
  const freq = optInt(raw, 'moe_layer_freq', 1)!;
  return Array.from({ length: layers }, (_, l) => (l >= firstDense && l % freq === 0 ? moe : dense));
}

/** Parse and check a Hugging Face config.json object. */
export function parseConfig(json: unknown): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('not a JSON object');
  const raw = json as Record<string, unknown>;
  const archs = raw.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : '';
  const hidden = int(raw, 'hidden_size');
  const heads = int(raw, 'num_attention_heads');
  const layers = int(raw, 'num_hidden_layers');
  // Far above any real model; keeps a corrupt value from building millions of layer records.
  if (layers > MAX_LAYERS) bad(`"num_hidden_layers" ${layers} is more than ${MAX_LAYERS}`);
  const intermediate = int(raw, 'intermediate_size');

  let attention: AttentionConfig;
  let ropeStyle: ModelConfig['ropeStyle'];
  let ropeFreqFactors: number[] | null = null;
  let embedScale = 1, residualScale = 1, headScale = 1;
  const ropeTheta = num(raw, 'rope_theta', 10000);
  const maxPositions = int(raw, 'max_position_embeddings');
  if (MLA_ARCHS.includes(architecture)) {
    const ropeDim = int(raw, 'qk_rope_head_dim');
    if (ropeDim % 2) bad(`"qk_rope_head_dim" must be even, got ${ropeDim}`);
    attention = {
      kind: 'mla', heads,
      qLoraRank: optInt(raw, 'q_lora_rank', null),
      kvLoraRank: int(raw, 'kv_lora_rank'),
      nopeDim: int(raw, 'qk_nope_head_dim'),
      ropeDim,
      vDim: int(raw, 'v_head_dim'),
      latentNorm: raw.qk_latent_layernorm !== false,
    };
    ropeStyle = 'adjacent';
    if (raw.rope_freq_factors !== undefined && raw.rope_freq_factors !== null) bad('"rope_freq_factors" is for Llama-layout models only');
    if (architecture === MINICPM3) {
      // Hugging Face's MiniCPM3Config: absent keys take MiniCPM3-4B's values; scale_depth and
      // dim_model_base null mean no scaling.
      ropeStyle = 'half';
      ropeFreqFactors = parseLongRope(raw, ropeDim, maxPositions);
      embedScale = num(raw, 'scale_emb', 12);
      residualScale = raw.scale_depth === null ? 1 : num(raw, 'scale_depth', 1.4) / Math.sqrt(layers);
      headScale = raw.dim_model_base === null ? 1 : num(raw, 'dim_model_base', 256) / hidden;
      if (!(embedScale > 0 && residualScale > 0 && headScale > 0)) bad('scale_emb, scale_depth and dim_model_base must be > 0');
    }
  } else if (GQA_ARCHS.includes(architecture)) {
    const kvHeads = optInt(raw, 'num_key_value_heads', heads)!;
    if (heads % kvHeads) bad(`num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
    const headDim = optInt(raw, 'head_dim', hidden / heads)!;
    if (!Number.isInteger(headDim) || headDim % 2) bad(`head_dim must be an even integer, got ${headDim}`);
    // Rope scaling makes one factor per frequency here: a corrupt head_dim must not allocate first.
    if (headDim > MAX_HEAD_DIM) bad(`head_dim ${headDim} is more than ${MAX_HEAD_DIM}`);
    const qwen2 = architecture === 'Qwen2ForCausalLM';
    attention = { kind: 'gqa', heads, kvHeads, headDim, vDim: headDim, ...(qwen2 ? { qkvBias: true } : {}) };
    ropeStyle = 'half';
    if (raw.attention_bias === true || raw.mlp_bias === true) bad('attention_bias / mlp_bias are not supported');
    if (qwen2 && raw.use_sliding_window === true) bad('use_sliding_window (Qwen2\'s sliding-window attention) is not supported');
    ropeFreqFactors = parseLlamaRope(raw, headDim, ropeTheta);
  } else {
    bad(`architecture ${showValue(architecture)} is not supported (expected one of ${[...MLA_ARCHS, ...GQA_ARCHS].join(', ')})`);
  }
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') bad(`hidden_act ${showValue(act)} is not supported (only "silu")`);

  return {
    architecture,
    vocabSize: int(raw, 'vocab_size'),
    hidden,
    layers,
    attention,
    ffn: parseFfn(raw, layers, intermediate, DEEPSEEK_ARCHS.includes(architecture)),
    rmsEps: num(raw, 'rms_norm_eps', 1e-6),
    ropeTheta,
    ropeStyle,
    yarn: DEEPSEEK_ARCHS.includes(architecture) ? parseYarn(raw) : null,
    ropeFreqFactors,
    embedScale, residualScale, headScale,
    maxPositions,
    tieEmbeddings: raw.tie_word_embeddings === true,
    bosTokenId: optInt(raw, 'bos_token_id', null, 0),
    eosTokenIds: tokenIds(raw.eos_token_id),
  };
}

/** Numbers per token per layer that MHA with the same head dims would cache (for comparisons). */
export function mhaCacheNumbers(a: AttentionConfig): number {
  return a.kind === 'mla' ? a.heads * (a.nopeDim + a.ropeDim + a.vDim) : a.heads * (a.headDim + a.vDim);
}
