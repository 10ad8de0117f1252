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
  /** Phi-4-mini (partial_rotary_factor < 1): only the first rotaryDim of each q/k head rotate; absent: headDim. */
  rotaryDim?: number;
}

/** Phi-3's LongRoPE, both factor sets as the checkpoint gives them (f32), for writing GGUF. */
export interface LongRope {
  originalMaxPositions: number;
  short: number[];
  long: number[];
  /** The multiplier on cos and sin (rope_scaling.attention_factor, or √(1 + ln s / ln original)). */
  attentionFactor: number;
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
  /**
   * Phi-3's LongRoPE (absent elsewhere): ropeFreqFactors holds the set in use and ropeAttnFactor
   * multiplies cos and sin.
   */
  longRope?: LongRope;
  ropeAttnFactor?: number;
  /**
   * The checkpoint's sliding_window when it is smaller than its max_position_embeddings (Mistral,
   * Phi-3): maxPositions is then limited to the window, where every key is inside it.
   */
  slidingWindow?: { window: number; maxPositions: number };
  /** What the model computes differently from its checkpoint's own code, for `info`. */
  notes?: string[];
  tieEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

const DEEPSEEK_ARCHS = ['DeepseekV2ForCausalLM', 'DeepseekV3ForCausalLM'];
/** DeepSeek-V2's attention with Llama's rotary pairing, LongRoPE and three scalings (embedScale …). */
const MINICPM3 = 'MiniCPM3ForCausalLM';
const MLA_ARCHS = [...DEEPSEEK_ARCHS, MINICPM3];
/**
 * Qwen2 is Llama's layout with biases on q, k and v (and its own tokenizer); Mistral is Llama's
 * with a sliding window; Phi-3 fuses q/k/v and gate/up (split when opened, src/formats/fused.ts).
 */
const PHI3 = 'Phi3ForCausalLM';
const MISTRAL = 'MistralForCausalLM';
const GQA_ARCHS = ['LlamaForCausalLM', 'Qwen2ForCausalLM', MISTRAL, PHI3];
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
    return factorList(given, '"rope_freq_factors"', half);
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
  return factorList(r.short_factor, 'rope_scaling.short_factor', ropeDim / 2);
}

/** `count` positive numbers, one per rotary frequency, each kept as f32 (as GGUF stores them). */
function factorList(v: unknown, key: string, count: number): number[] {
  if (!Array.isArray(v) || v.length !== count || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) {
    bad(`${key} must be ${count} positive numbers (one per rotary frequency), got ${showValue(v)}`);
  }
  const f = v.map((x) => Math.fround(x));
  // A value that f32 rounds to 0 or to infinity would give no usable frequency.
  if (!f.every((x) => x > 0 && Number.isFinite(x))) bad(`${key} holds values f32 cannot hold (${showValue(v.find((x, i) => !(f[i] > 0 && Number.isFinite(f[i]))))})`);
  return f;
}

/**
 * Phi-3's LongRoPE (Hugging Face's _compute_longrope_parameters): each rotary frequency divided by
 * short_factor or long_factor, cos and sin multiplied by attention_factor (given, or
 * √(1 + ln s / ln L) for s = max_position_embeddings / L > 1, L = original_max_position_embeddings).
 * Hugging Face switches sets per sequence length (long past L tokens); parseConfig chooses once, by
 * the context the model runs at, as llama.cpp does: long when that context > L. The two agree for
 * every sequence when the context ≤ L, and for sequences longer than L otherwise.
 */
function parsePhi3Rope(raw: Record<string, unknown>, rotaryDim: number, maxPositions: number): LongRope | null {
  const s = raw.rope_scaling;
  if (s === undefined || s === null) return null;
  if (typeof s !== 'object' || Array.isArray(s)) bad('"rope_scaling" must be an object or null');
  const r = s as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return null;
  // "su" is the name of LongRoPE in the first Phi-3 releases.
  if (type !== 'longrope' && type !== 'su') bad(`rope_scaling type ${showValue(type)} is not supported for Phi-3 (supported: "longrope")`);
  // Phi3Config keeps L at the top level (default 4096); newer configs may put it in rope_scaling.
  const original = raw.original_max_position_embeddings !== undefined && raw.original_max_position_embeddings !== null
    ? int(raw, 'original_max_position_embeddings', 2) : optInt(r, 'original_max_position_embeddings', 4096, 2)!;
  const half = rotaryDim / 2;
  const short = factorList(r.short_factor, 'rope_scaling.short_factor', half);
  const long = factorList(r.long_factor, 'rope_scaling.long_factor', half);
  const scale = maxPositions / original;
  const given = r.attention_factor;
  const factor = given !== undefined && given !== null ? num(r, 'attention_factor')
    : scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(original));
  const attentionFactor = Math.fround(factor); // GGUF's rope.scaling.attn_factor is f32
  if (!(attentionFactor > 0 && Number.isFinite(attentionFactor))) bad(`rope_scaling.attention_factor must be > 0, got ${showValue(given)}`);
  return { originalMaxPositions: original, short, long, attentionFactor };
}

/**
 * sliding_window, or null for none (Mistral's config class defaults to 4096 when the key is
 * absent, Phi-3's to none).
 */
function slidingWindow(raw: Record<string, unknown>, architecture: string): number | null {
  const v = raw.sliding_window === undefined && architecture === MISTRAL ? 4096 : raw.sliding_window;
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad(`"sliding_window" must be an integer ≥ 1 or null, got ${showValue(v)}`);
  return v;
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
  // The context the model runs at: max_position_embeddings, or a smaller sliding window.
  let context = maxPositions, windowKept = false;
  let longRope: LongRope | null = null;
  const notes: string[] = [];
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
    const qwen2 = architecture === 'Qwen2ForCausalLM', phi3 = architecture === PHI3;
    let rotaryDim = headDim;
    if (phi3 && raw.partial_rotary_factor !== undefined && raw.partial_rotary_factor !== null) {
      // Hugging Face's int(head_dim · factor); llama.cpp's int(factor · hidden) / heads is the same here.
      const f = num(raw, 'partial_rotary_factor');
      rotaryDim = Math.floor(headDim * f);
      if (!(f > 0 && f <= 1) || rotaryDim < 2 || rotaryDim % 2) {
        bad(`partial_rotary_factor ${f} must be in (0, 1] and rotate an even number ≥ 2 of the ${headDim} dims of a head (gives ${rotaryDim})`);
      }
    }
    attention = { kind: 'gqa', heads, kvHeads, headDim, vDim: headDim, ...(qwen2 ? { qkvBias: true } : {}), ...(rotaryDim < headDim ? { rotaryDim } : {}) };
    ropeStyle = 'half';
    if (raw.attention_bias === true || raw.mlp_bias === true) bad('attention_bias / mlp_bias are not supported');
    if (qwen2 && raw.use_sliding_window === true) bad('use_sliding_window (Qwen2\'s sliding-window attention) is not supported');
    if (phi3 || architecture === MISTRAL) {
      // Hugging Face masks keys `window` or more positions back. Within `window` tokens none is, so
      // the context is limited to it: exact there, rather than an attention that ignores the window.
      const window = slidingWindow(raw, architecture);
      if (window !== null && window < maxPositions) {
        context = window;
        windowKept = true;
        notes.push(`context limited to sliding_window ${window} (max_position_embeddings ${maxPositions}): within it no key is outside the window`);
      }
    }
    if (phi3) {
      // Phi-3's factors come as LongRoPE's two sets (GGUF: rope_factors_long/short), never as one list.
      if (raw.rope_freq_factors !== undefined && raw.rope_freq_factors !== null) bad('"rope_freq_factors" is for Llama-layout models only');
      longRope = parsePhi3Rope(raw, rotaryDim, maxPositions);
      if (longRope) {
        const useLong = context > longRope.originalMaxPositions;
        ropeFreqFactors = useLong ? longRope.long : longRope.short;
        if (useLong) notes.push(`LongRoPE long_factor at every length (context ${context} > original ${longRope.originalMaxPositions}), as llama.cpp chooses; Hugging Face uses short_factor while a sequence is within ${longRope.originalMaxPositions} tokens`);
      }
    } else {
      ropeFreqFactors = parseLlamaRope(raw, headDim, ropeTheta);
    }
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
    maxPositions: context,
    // Present only where they apply, so other models' configs (and snapshot fingerprints) stay as they were.
    ...(longRope ? { longRope, ropeAttnFactor: longRope.attentionFactor } : {}),
    ...(windowKept ? { slidingWindow: { window: context, maxPositions } } : {}),
    ...(notes.length ? { notes } : {}),
    tieEmbeddings: raw.tie_word_embeddings === true,
    bosTokenId: optInt(raw, 'bos_token_id', null, 0),
    eosTokenIds: tokenIds(raw.eos_token_id),
  };
}

/** The dims of each q/k head that rotate: all of them but where partial_rotary_factor < 1. */
export function rotaryDim(a: GroupedAttention): number {
  return a.rotaryDim ?? a.headDim;
}

/** Numbers per token per layer that MHA with the same head dims would cache (for comparisons). */
export function mhaCacheNumbers(a: AttentionConfig): number {
  return a.kind === 'mla' ? a.heads * (a.nopeDim + a.ropeDim + a.vDim) : a.heads * (a.headDim + a.vDim);
}
