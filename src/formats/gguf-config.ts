// A GGUF file's metadata → the config.json object parseConfig reads (Hugging Face key names), and
// the layout gguf-tensors.ts needs to rename its tensors. Keys as llama.cpp's converter
// (convert_hf_to_gguf.py) writes them and its loader (llama-model.cpp) reads them:
//   {arch}.context_length, .embedding_length, .block_count, .feed_forward_length,
//   .attention.head_count, .attention.head_count_kv, .attention.layer_norm_rms_epsilon,
//   .rope.freq_base, .rope.dimension_count, .vocab_size, .rope.scaling.{type,factor,…}
//   deepseek2: .attention.q_lora_rank, .attention.kv_lora_rank, .attention.key_length/.value_length
//     (older files: d_n + d_r and d_v; newer MLA files: d_c + d_r and d_c, with the per-head sizes in
//     .attention.key_length_mla/.value_length_mla and head_count_kv = 1), .leading_dense_block_count,
//     .expert_{count,used_count,shared_count,feed_forward_length,weights_scale,weights_norm,
//     gating_func,group_count,group_used_count}, .rope.scaling.yarn_log_multiplier (0.1·mscale_all_dim).
//   minicpm3: .attention.q_lora_rank, .kv_lora_rank, .key_length (d_n + d_r), .value_length (may be
//     absent: hidden / heads), .rope.dimension_count; LongRoPE's factors are tensors.
import { MlaError, showValue } from '../errors.js';
import type { GgufFile, GgufValue } from './gguf.js';
import type { GgufLayout } from './gguf-tensors.js';

export const GGUF_ARCHS = ['deepseek2', 'llama', 'qwen2', 'phi3', 'minicpm3'];

export interface GgufModel {
  /** What config.json would hold (checked later by parseConfig). */
  config: Record<string, unknown>;
  layout: GgufLayout;
}

/** Typed access to metadata: a key of the wrong type is BAD_CONFIG naming it. */
export function metadataReader(gguf: GgufFile, fileName: string) {
  const bad = (key: string, want: string): never => {
    throw new MlaError('BAD_CONFIG', `${fileName}: metadata "${key}" must be ${want}, got ${showValue(gguf.metadata.get(key))}`);
  };
  const num = (key: string): number | undefined => {
    const v = gguf.metadata.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) bad(key, 'a number');
    return v as number;
  };
  return {
    has: (key: string) => gguf.metadata.has(key),
    num,
    int: (key: string, required = false): number | undefined => {
      const v = num(key);
      if (v === undefined) {
        if (required) throw new MlaError('BAD_CONFIG', `${fileName}: metadata "${key}" is missing`);
        return undefined;
      }
      if (!Number.isInteger(v) || v < 0) bad(key, 'a non-negative integer');
      return v;
    },
    str: (key: string): string | undefined => {
      const v = gguf.metadata.get(key);
      if (v === undefined) return undefined;
      if (typeof v !== 'string') bad(key, 'a string');
      return v as string;
    },
    bool: (key: string): boolean | undefined => {
      const v = gguf.metadata.get(key);
      if (v === undefined) return undefined;
      if (typeof v !== 'boolean') bad(key, 'a bool');
      return v as boolean;
    },
    list: (key: string): GgufValue[] | ArrayLike<number> | undefined => {
      const v = gguf.metadata.get(key);
      if (v === undefined) return undefined;
      if (typeof v !== 'object' || v === null) bad(key, 'an array');
      return v as GgufValue[] | ArrayLike<number>;
    },
  };
}

/** The architecture a GGUF file declares, and its config and tensor layout. */
export function ggufModel(gguf: GgufFile, fileName: string): GgufModel {
  const m = metadataReader(gguf, fileName);
  const arch = m.str('general.architecture');
  if (arch === undefined) throw new MlaError('BAD_CONFIG', `${fileName}: metadata "general.architecture" is missing`);
  if (!GGUF_ARCHS.includes(arch)) {
    throw new MlaError('BAD_CONFIG', `${fileName}: architecture ${showValue(arch)} is not supported (expected one of ${GGUF_ARCHS.join(', ')})`);
  }
  const k = (key: string) => `${arch}.${key}`;
  const heads = m.int(k('attention.head_count'), true)!;
  const kvHeads = m.int(k('attention.head_count_kv')) ?? heads;
  const hidden = m.int(k('embedding_length'), true)!;
  const layers = m.int(k('block_count'), true)!;
  const tokens = m.list('tokenizer.ggml.tokens');
  const vocab = m.int(k('vocab_size')) ?? gguf.tensors.get('token_embd.weight')?.ne[1] ?? tokens?.length;
  const config: Record<string, unknown> = {
    vocab_size: vocab,
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    max_position_embeddings: m.int(k('context_length'), true),
    rms_norm_eps: m.num(k('attention.layer_norm_rms_epsilon')) ?? 1e-6,
    rope_theta: m.num(k('rope.freq_base')) ?? 10000,
    tie_word_embeddings: !gguf.tensors.has('output.weight'),
    bos_token_id: m.int('tokenizer.ggml.bos_token_id') ?? null,
    eos_token_id: m.int('tokenizer.ggml.eos_token_id') ?? null,
    hidden_act: 'silu',
  };
  const ropeType = m.str(k('rope.scaling.type'));
  if (ropeType !== undefined && ropeType !== 'none') {
    const logMul = m.num(k('rope.scaling.yarn_log_multiplier'));
    config.rope_scaling = {
      type: ropeType,
      factor: m.num(k('rope.scaling.factor')),
      original_max_position_embeddings: m.int(k('rope.scaling.original_context_length')),
      beta_fast: m.num(k('rope.scaling.yarn_beta_fast')),
      beta_slow: m.num(k('rope.scaling.yarn_beta_slow')),
      // llama.cpp keeps only 0.1·mscale_all_dim, as an f32; DeepSeek's configs have mscale = mscale_all_dim.
      ...(logMul !== undefined ? { mscale: Math.fround(logMul / 0.1), mscale_all_dim: Math.fround(logMul / 0.1) } : {}),
    };
  }

  if (arch === 'llama' || arch === 'qwen2' || arch === 'phi3') {
    const headDim = m.int(k('attention.key_length')) ?? hidden / heads;
    const vDim = m.int(k('attention.value_length')) ?? headDim;
    const rot = m.int(k('rope.dimension_count')) ?? headDim;
    if (vDim !== headDim) throw new MlaError('BAD_CONFIG', `${fileName}: value_length ${vDim} differs from key_length ${headDim}, which is not supported`);
    // phi3 may rotate part of each head (Phi-4-mini), as Hugging Face's partial_rotary_factor says.
    const partial = arch === 'phi3' && rot < headDim && Math.floor(headDim * (rot / headDim)) === rot;
    if (rot !== headDim && !partial) throw new MlaError('BAD_CONFIG', `${fileName}: rope.dimension_count ${rot} rotates part of a ${headDim}-wide head, which is not supported`);
    Object.assign(config, {
      architectures: [arch === 'qwen2' ? 'Qwen2ForCausalLM' : arch === 'phi3' ? 'Phi3ForCausalLM' : 'LlamaForCausalLM'],
      num_key_value_heads: kvHeads,
      head_dim: headDim,
      intermediate_size: m.int(k('feed_forward_length'), true),
      ...(partial ? { partial_rotary_factor: rot / headDim } : {}),
    });
    if (arch === 'phi3') {
      // LongRoPE comes from the rope_factors tensors (gguf-model.ts), not rope.scaling.type.
      delete config.rope_scaling;
      config.sliding_window = m.int(k('attention.sliding_window')) || null;
      config.original_max_position_embeddings = m.int(k('rope.scaling.original_context_length')) ?? config.max_position_embeddings;
    }
    return { config, layout: { arch, heads, kvHeads } };
  }

  if (arch === 'minicpm3') {
    // llama.cpp's minicpm3 graph fixes MiniCPM3-4B's scalings; its converter writes no
    // value_length (llama.cpp then takes hidden / heads) and keeps LongRoPE's factors as tensors
    // (gguf-model.ts puts them in rope_scaling).
    const rope = m.int(k('rope.dimension_count'), true)!;
    const keyLength = m.int(k('attention.key_length'), true)!;
    if (keyLength <= rope) throw new MlaError('BAD_CONFIG', `${fileName}: key length ${keyLength} is not more than the rope dimension ${rope}`);
    Object.assign(config, {
      architectures: ['MiniCPM3ForCausalLM'],
      num_key_value_heads: heads,
      q_lora_rank: m.int(k('attention.q_lora_rank')) || null,
      kv_lora_rank: m.int(k('attention.kv_lora_rank'), true),
      qk_nope_head_dim: keyLength - rope,
      qk_rope_head_dim: rope,
      v_head_dim: m.int(k('attention.value_length')) ?? hidden / heads,
      intermediate_size: m.int(k('feed_forward_length'), true),
      scale_emb: 12, scale_depth: 1.4, dim_model_base: 256,
    });
    delete config.rope_scaling;
    return { config, layout: { arch, heads, kvHeads } };
  }

  // deepseek2
  const rope = m.int(k('rope.dimension_count'), true)!;
  const kvLora = m.int(k('attention.kv_lora_rank'), true)!;
  const mla = m.has(k('attention.key_length_mla'));
  const keyLength = m.int(k(mla ? 'attention.key_length_mla' : 'attention.key_length'), true)!;
  const valueLength = m.int(k(mla ? 'attention.value_length_mla' : 'attention.value_length'), true)!;
  if (keyLength <= rope) throw new MlaError('BAD_CONFIG', `${fileName}: key length ${keyLength} is not more than the rope dimension ${rope}`);
  const experts = m.int(k('expert_count')) || null;
  const groups = m.int(k('expert_group_count')) || 1;
  const gating = m.int(k('expert_gating_func'));
  if (gating !== undefined && gating !== 1 && gating !== 2) {
    throw new MlaError('BAD_CONFIG', `${fileName}: expert_gating_func ${gating} is not supported (1 softmax, 2 sigmoid)`);
  }
  const expertFf = m.int(k('expert_feed_forward_length'));
  const hasBias = [...gguf.tensors.keys()].some((n) => /^blk\.\d+\.exp_probs_b\.bias$/.test(n));
  Object.assign(config, {
    // llama.cpp runs V3 as deepseek2 too; its correction bias (noaux_tc routing) tells them apart.
    architectures: [hasBias ? 'DeepseekV3ForCausalLM' : 'DeepseekV2ForCausalLM'],
    num_key_value_heads: heads,
    q_lora_rank: m.int(k('attention.q_lora_rank')) || null,
    kv_lora_rank: kvLora,
    qk_nope_head_dim: keyLength - rope,
    qk_rope_head_dim: rope,
    v_head_dim: valueLength,
    intermediate_size: m.int(k('feed_forward_length')) ?? expertFf,
    moe_intermediate_size: expertFf ?? null,
    n_routed_experts: experts,
    num_experts_per_tok: experts ? m.int(k('expert_used_count'), true) : null,
    n_shared_experts: m.int(k('expert_shared_count')) ?? 0,
    first_k_dense_replace: m.int(k('leading_dense_block_count')) ?? 0,
    moe_layer_freq: 1,
    routed_scaling_factor: m.num(k('expert_weights_scale')) ?? 1,
    norm_topk_prob: m.bool(k('expert_weights_norm')) ?? false,
    scoring_func: gating === 2 ? 'sigmoid' : 'softmax',
    topk_method: hasBias ? 'noaux_tc' : groups > 1 ? 'group_limited_greedy' : 'greedy',
    n_group: groups,
    topk_group: m.int(k('expert_group_used_count')) || 1,
  });
  return { config, layout: { arch: 'deepseek2', heads, kvHeads } };
}
