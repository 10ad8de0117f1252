// GGUF written by gguf-write.ts and read back by the GGUF source gives the model it was written
// from: the same logits, bit for bit, as the safetensors checkpoint of the same values (F32, F16,
// BF16), and as the dequantised values loaded as f32 (Q8_0, Q4_0). Every architecture and layout
// the reader maps: deepseek2 with and without query compression, MoE V2 and V3 (experts stacked),
// both MLA layouts (attn_kv_b, attn_k_b/attn_v_b), llama with its q/k permutation, tied embeddings.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../src/index.js';
import { parseConfig, type ModelConfig } from '../src/formats/config.js';
import { openSource, type InMemoryModel } from '../src/formats/source.js';
import { writeGguf, type GgufWriteOptions } from '../src/formats/gguf-write.js';
import { decodeRow, quantizeQ4_0, quantizeQ8_0 } from '../src/formats/quant-blocks.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMiniCpm3Config, tinyMlaConfig, tinyMlaMoeV2Config, tinyMlaMoeV3Config, tinyMistralConfig, tinyPhi3Config, tinyQwen2Config, longRopeScaling } from './reference/model.js';
import { writeSafetensors, type FloatDtype } from './reference/safetensors-writer.js';

const FORTUNE = new URL('../models/fortune-mla/', import.meta.url);
const ids = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i * 7919 + 13 * ((i * i) % 11)) % vocab);

async function ggufOf(source: InMemoryModel | URL, options: GgufWriteOptions, tokenizer = null): Promise<Uint8Array> {
  const src = await openSource(source);
  return writeGguf(parseConfig(src.config), src.tensors, tokenizer, options);
}

/** A safetensors checkpoint with the matrices in `dtype` and, as GGUF keeps them, vectors and the router in F32. */
function safetensorsMap(m: InMemoryModel, dtype: FloatDtype): Record<string, Uint8Array> {
  const config = new TextEncoder().encode(JSON.stringify(m.config));
  const tensors = Object.fromEntries(Object.entries(m.tensors).map(([name, t]) =>
    [name, { ...t, dtype: t.shape.length === 1 || /mlp\.gate\.weight$/.test(name) ? 'F32' as const : dtype }]));
  return { 'config.json': config, 'model.safetensors': writeSafetensors(tensors) };
}

/**
 * What a Q8_0/Q4_0 file holds for a matrix: each row quantised and decoded; rows not a multiple of
 * 32 as F16; kv_b_proj exact (F32); with Q4_0, lm_head as Q8_0.
 */
function dequantised(m: InMemoryModel, type: 'Q8_0' | 'Q4_0'): InMemoryModel {
  const tensors: InMemoryModel['tensors'] = {};
  for (const [name, t] of Object.entries(m.tensors)) {
    const cols = t.shape[t.shape.length - 1];
    if (t.shape.length === 1 || /mlp\.gate\.(weight|e_score)|kv_b_proj/.test(name)) { tensors[name] = t; continue; }
    const out = new Float32Array(t.data.length);
    if (cols % 32) {
      const buf = new Uint8Array(t.data.length * 2), v = new DataView(buf.buffer);
      for (let i = 0; i < t.data.length; i++) v.setUint16(2 * i, f16(t.data[i]), true);
      decodeRow('F16', buf, 0, t.data.length, out, 0);
    } else {
      const rowType = type === 'Q4_0' && name === 'lm_head.weight' ? 'Q8_0' : type;
      const block = rowType === 'Q8_0' ? 34 : 18;
      const buf = new Uint8Array((t.data.length / 32) * block);
      (rowType === 'Q8_0' ? quantizeQ8_0 : quantizeQ4_0)(t.data, buf);
      decodeRow(rowType, buf, 0, t.data.length, out, 0);
    }
    tensors[name] = { shape: t.shape, data: out };
  }
  return { config: m.config, tensors };
}
import { f32ToF16Bits as f16 } from '../src/formats/quant-blocks.js';

const cases: [string, Record<string, unknown>][] = [
  ['MLA, query compression', tinyMlaConfig({ hidden_size: 64, intermediate_size: 96, kv_lora_rank: 32, qk_nope_head_dim: 32, v_head_dim: 32 })],
  ['MLA, no query compression, odd dims', tinyMlaConfig({ q_lora_rank: null })],
  ['MLA, tied embeddings', tinyMlaConfig({ tie_word_embeddings: true })],
  ['DeepSeek-V2 MoE', tinyMlaMoeV2Config({})],
  ['DeepSeek-V3 MoE and YaRN', tinyMlaMoeV3Config({})],
  ['Llama GQA', tinyLlamaConfig({})],
  ['Llama MHA, tied', tinyLlamaConfig({ num_key_value_heads: 4, tie_word_embeddings: true })],
  ['Llama 3 rope scaling (rope_freqs)', tinyLlamaConfig({
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  })],
  ['Llama linear rope scaling', tinyLlamaConfig({ rope_scaling: { type: 'linear', factor: 4 } })],
  // llama.cpp's minicpm3 fixes dim_model_base at 256 (the writer refuses other values).
  ['MiniCPM3 (LongRoPE, scalings)', tinyMiniCpm3Config({ dim_model_base: 256 })],
  ['Qwen2 (q, k, v biases)', tinyQwen2Config({})],
  ['Phi-3 (attn_qkv, ffn_up holding gate and up)', tinyPhi3Config()],
  // Long factors in use (context 64 > 8), both sets and the attention factor kept; 8 of 16 dims rotate.
  ['Phi-3 LongRoPE, partial rotary, tied, sliding window', tinyPhi3Config({
    partial_rotary_factor: 0.5, tie_word_embeddings: true, rope_scaling: longRopeScaling(8), sliding_window: 64,
  })],
  ['Mistral (written as llama), sliding window', tinyMistralConfig({ sliding_window: 64 })],
];

/**
 * The config read back from GGUF: rms_norm_eps as an f32; Mistral as llama.cpp's llama, the window
 * carried as the context it limited (llama's graph has none).
 */
function readBack(c: ModelConfig): ModelConfig {
  const out = { ...c, rmsEps: Math.fround(c.rmsEps) };
  if (c.architecture !== 'MistralForCausalLM') return out;
  delete out.slidingWindow;
  delete out.notes;
  return { ...out, architecture: 'LlamaForCausalLM' };
}

describe.each(cases)('GGUF round trip: %s', (_name, config) => {
  const m: InMemoryModel = { config, tensors: makeRandomCheckpoint(config, 11) };
  const vocab = config.vocab_size as number;
  const x = ids(13, vocab);
  const layouts: ('split' | 'kv_b')[] = String(config.architectures).includes('Deepseek') ? ['split', 'kv_b'] : ['split'];

  it.each(['F32', 'F16', 'BF16'] as const)('%s: the same logits as safetensors, bit for bit', async (type) => {
    const ref = await loadModel(safetensorsMap(m, type), { simd: 'simd', threads: 1 });
    const want = ref.forward(x);
    for (const mlaLayout of layouts) {
      const model = await loadModel({ 'model.gguf': await ggufOf(m, { type, mlaLayout }) }, { simd: 'simd', threads: 1 });
      // GGUF keeps rms_norm_eps as an f32, which is what the kernels use.
      expect(model.config).toEqual(readBack(ref.config));
      expect(model.forward(x)).toEqual(want);
      model.dispose();
    }
    ref.dispose();
  });

  it.each(['Q8_0', 'Q4_0'] as const)('%s read as f32: the same logits as the dequantised values', async (type) => {
    const ref = await loadModel(dequantised(m, type), { simd: 'simd', threads: 1 });
    for (const mlaLayout of layouts) {
      // weights 'f32' widens each block (q·d) as it is read; 'auto' keeps the blocks for the q8/q4 kernels.
      const model = await loadModel({ 'model.gguf': await ggufOf(m, { type, mlaLayout }) }, { simd: 'simd', threads: 1, weights: 'f32' });
      expect(model.forward(x)).toEqual(ref.forward(x));
      model.dispose();
    }
    ref.dispose();
  });

  it.each([['Q8_0', 'int8'], ['Q4_0', 'int4']] as const)('%s written and read back: the logits of the model quantised at load (%s), bit for bit', async (type, weights) => {
    for (const simd of ['simd', 'relaxed'] as const) {
      const ref = await loadModel(m, { simd, threads: 1, weights });
      for (const mlaLayout of layouts) {
        const model = await loadModel({ 'model.gguf': await ggufOf(m, { type, mlaLayout }) }, { simd, threads: 1 });
        expect(model.weightBytes).toBe(ref.weightBytes);
        expect(model.forward(x)).toEqual(ref.forward(x));
        model.dispose();
      }
      ref.dispose();
    }
  });
});

describe('GGUF round trip: fortune-mla (the built-in model)', () => {
  it.each(['F32', 'F16', 'BF16'] as const)('%s: the same logits as from safetensors', async (type) => {
    const src = await openSource(FORTUNE);
    const config = parseConfig(src.config);
    const tensors: InMemoryModel['tensors'] = {};
    for (const name of src.tensors.names()) {
      const shape = [...src.tensors.shape(name)!];
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      src.tensors.read(name, data);
      tensors[name] = { shape, data };
    }
    const ref = await loadModel(safetensorsMap({ config: src.config, tensors }, type), { simd: 'simd', threads: 1 });
    const tokenizer = {
      tokenizerJson: JSON.parse(readFileSync(new URL('tokenizer.json', FORTUNE), 'utf8')),
      tokenizerConfig: JSON.parse(readFileSync(new URL('tokenizer_config.json', FORTUNE), 'utf8')),
    };
    const model = await loadModel({ 'fortune.gguf': writeGguf(config, src.tensors, tokenizer, { type }) }, { simd: 'simd', threads: 1 });
    const x = [256, ...new TextEncoder().encode('Q: Why did the chicken cross the road?\nA:')];
    expect(model.forward(x)).toEqual(ref.forward(x));
  });
});
