// Well-known MLA configs in Hugging Face config.json form, from each model's published config
// (the built-in model's is in models/): bench/fit.ts and bench/big-model.ts use them.
import { readFileSync } from 'node:fs';

const mla = { architectures: ['DeepseekV2ForCausalLM'], model_type: 'deepseek_v2', rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null };

export interface NamedConfig { name: string; note: string; config: Record<string, unknown> }

export const FORTUNE_MLA: NamedConfig = {
  name: 'fortune-mla (built in)', note: '', config: JSON.parse(readFileSync(new URL('../models/fortune-mla/config.json', import.meta.url), 'utf8')),
};

export const SMOLLM_MLA: NamedConfig = {
  name: 'SmolLM-1.7B-class MLA', note: 'SmolLM-1.7B dims, attention converted to kv_lora_rank 512 + rope 64', config: { ...mla,
    vocab_size: 49152, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 24, num_attention_heads: 32,
    num_key_value_heads: 32, q_lora_rank: null, kv_lora_rank: 512, qk_nope_head_dim: 64, qk_rope_head_dim: 64, v_head_dim: 64,
    max_position_embeddings: 2048, tie_word_embeddings: true },
};

export const MINICPM3_4B: NamedConfig = {
  name: 'MiniCPM3-4B', note: 'its dims as DeepseekV2; its muP scales aside', config: { ...mla,
    vocab_size: 73448, hidden_size: 2560, intermediate_size: 6400, num_hidden_layers: 62, num_attention_heads: 40,
    num_key_value_heads: 40, q_lora_rank: 768, kv_lora_rank: 256, qk_nope_head_dim: 64, qk_rope_head_dim: 32, v_head_dim: 64,
    max_position_embeddings: 32768, tie_word_embeddings: true },
};

export const DEEPSEEK_V2_LITE: NamedConfig = {
  name: 'DeepSeek-V2-Lite', note: '64 routed experts, 6 active, 2 shared', config: { ...mla,
    vocab_size: 102400, hidden_size: 2048, intermediate_size: 10944, moe_intermediate_size: 1408, num_hidden_layers: 27,
    num_attention_heads: 16, num_key_value_heads: 16, q_lora_rank: null, kv_lora_rank: 512, qk_nope_head_dim: 128,
    qk_rope_head_dim: 64, v_head_dim: 128, n_routed_experts: 64, n_shared_experts: 2, num_experts_per_tok: 6,
    first_k_dense_replace: 1, moe_layer_freq: 1, norm_topk_prob: false, routed_scaling_factor: 1.0, topk_method: 'greedy',
    n_group: 1, topk_group: 1, scoring_func: 'softmax', max_position_embeddings: 163840, tie_word_embeddings: false },
};
