// node scripts/run-ts.mjs bench/fit.ts
//
// Which weight formats fit in WebAssembly's 4 GiB for well-known MLA configs: the same memoryNeed
// that loadModel checks before it allocates (weights, scratch for one chunk, a chunk's f32 cache,
// one thread). Nothing is timed; the table goes to bench/results/fit.md.
import { writeFileSync } from 'node:fs';
import { loadKernels, memoryNeed, parseConfig, weightPlan, WASM_MEMORY_LIMIT } from '../src/internal.js';

const mla = { architectures: ['DeepseekV2ForCausalLM'], model_type: 'deepseek_v2', rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null };

// Dims from each model's published config.json (the built-in model's is in models/).
const CONFIGS: { name: string; note: string; config: Record<string, unknown> }[] = [
  { name: 'fortune-mla (built in)', note: '', config: JSON.parse((await import('node:fs')).readFileSync('models/fortune-mla/config.json', 'utf8')) },
  { name: 'SmolLM-1.7B-class MLA', note: 'SmolLM-1.7B dims, attention converted to kv_lora_rank 512 + rope 64', config: { ...mla,
    vocab_size: 49152, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 24, num_attention_heads: 32,
    num_key_value_heads: 32, q_lora_rank: null, kv_lora_rank: 512, qk_nope_head_dim: 64, qk_rope_head_dim: 64, v_head_dim: 64,
    max_position_embeddings: 2048, tie_word_embeddings: true } },
  { name: 'MiniCPM3-4B', note: 'its dims as DeepseekV2; its muP scales aside', config: { ...mla,
    vocab_size: 73448, hidden_size: 2560, intermediate_size: 6400, num_hidden_layers: 62, num_attention_heads: 40,
    num_key_value_heads: 40, q_lora_rank: 768, kv_lora_rank: 256, qk_nope_head_dim: 64, qk_rope_head_dim: 32, v_head_dim: 64,
    max_position_embeddings: 32768, tie_word_embeddings: true } },
  { name: 'DeepSeek-V2-Lite', note: '64 routed experts, 6 active, 2 shared', config: { ...mla,
    vocab_size: 102400, hidden_size: 2048, intermediate_size: 10944, moe_intermediate_size: 1408, num_hidden_layers: 27,
    num_attention_heads: 16, num_key_value_heads: 16, q_lora_rank: null, kv_lora_rank: 512, qk_nope_head_dim: 128,
    qk_rope_head_dim: 64, v_head_dim: 128, n_routed_experts: 64, n_shared_experts: 2, num_experts_per_tok: 6,
    first_k_dense_replace: 1, moe_layer_freq: 1, norm_topk_prob: false, routed_scaling_factor: 1.0, topk_method: 'greedy',
    n_group: 1, topk_group: 1, scoring_func: 'softmax', max_position_embeddings: 163840, tie_word_embeddings: false } },
];

const { kernels } = await loadKernels({ threads: 1 });
const size = (b: number) => (b < 2 ** 30 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 2 ** 30).toFixed(2)} GiB`);
const count = (n: number) => (n < 1e9 ? `${(n / 1e6).toFixed(1)} M` : `${(n / 1e9).toFixed(2)} B`);
const formats = ['f32', 'bf16', 'int8', 'int4'] as const;
const lines = [
  '# Which weight formats fit in 4 GiB',
  '',
  '`node scripts/run-ts.mjs bench/fit.ts`: `memoryNeed`, the check `loadModel` makes before it',
  'allocates (weights as placed, scratch for a chunk, a chunk\'s f32 KV cache, one thread): the',
  'WebAssembly memory each format needs; ✗ = refused with `OUT_OF_MEMORY`.',
  '',
  `| model | parameters | ${formats.join(' | ')} |`,
  `|---|---|${formats.map(() => '---').join('|')}|`,
];
for (const { name, note, config } of CONFIGS) {
  const c = parseConfig(config);
  const cells = formats.map((f) => {
    const need = memoryNeed(c, kernels, { plan: weightPlan(f) });
    return `${size(need.total)} ${need.total <= WASM_MEMORY_LIMIT ? '✓' : '✗'}`;
  });
  const params = memoryNeed(c, kernels).weights / 4;
  lines.push(`| ${name}${note ? ` (${note})` : ''} | ${count(params)} | ${cells.join(' | ')} |`);
}
writeFileSync('bench/results/fit.md', lines.join('\n') + '\n');
console.log(lines.join('\n'));
