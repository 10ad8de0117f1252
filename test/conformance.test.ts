// Checkpoints written to disk the way users get them (config.json + safetensors in F32, BF16 or
// F16, one file or shards), loaded from the folder, and compared with the float64 reference on
// the same (rounded) weights: forward logits for every position, and prefill + step.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/index.js';
import { expectClose } from './helpers.js';
import { makeRandomCheckpoint, referenceForward, tensorsFromSafetensors, tinyLlamaConfig, tinyMiniCpm3Config, tinyMlaConfig, tinyMlaMoeV2Config, tinyMlaMoeV3Config, tinyQwen2Config, tinyPhi3Config, tinyMistralConfig, longRopeScaling } from './reference/model.js';
import { writeSafetensors, writeShardedSafetensors, type FloatDtype } from './reference/safetensors-writer.js';

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/** Write a Hugging Face folder; return it and the weights as the file holds them (rounded). */
function writeFolder(config: Record<string, unknown>, seed: number, dtype: FloatDtype, shards: number) {
  const dir = mkdtempSync(join(tmpdir(), 'mla-conformance-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const tensors = makeRandomCheckpoint(config, seed);
  const files = shards > 1
    ? writeShardedSafetensors(tensors, shards, { dtype })
    : { 'model.safetensors': writeSafetensors(tensors, undefined, { dtype }) };
  const onDisk: ReturnType<typeof tensorsFromSafetensors> = {};
  for (const [name, bytes] of Object.entries(files)) {
    writeFileSync(join(dir, name), bytes);
    if (name.endsWith('.safetensors')) Object.assign(onDisk, tensorsFromSafetensors(bytes, name));
  }
  return { dir, tensors: onDisk };
}

const CASES: [string, Record<string, unknown>, FloatDtype, number][] = [
  ['dense MLA with query compression, F32', tinyMlaConfig({}), 'F32', 1],
  ['dense MLA without query compression, BF16', tinyMlaConfig({ q_lora_rank: null }), 'BF16', 1],
  ['MLA with YaRN, F16, 3 shards', tinyMlaConfig({
    max_position_embeddings: 256,
    rope_scaling: { type: 'yarn', factor: 8, original_max_position_embeddings: 32, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 },
  }), 'F16', 3],
  ['DeepSeek-V2 MoE routing, BF16', tinyMlaMoeV2Config({}), 'BF16', 1],
  ['DeepSeek-V3 MoE routing with YaRN, BF16, 2 shards', tinyMlaMoeV3Config({}), 'BF16', 2],
  ['Llama GQA, BF16', tinyLlamaConfig({}), 'BF16', 1],
  // With head_dim 16: 1 frequency kept, 2 blended, 5 divided by the factor, over 30 positions.
  ['Llama 3 rope scaling (llama3), F32', tinyLlamaConfig({
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  }), 'F32', 1],
  ['Llama, linear rope scaling, F16', tinyLlamaConfig({ rope_scaling: { type: 'linear', factor: 4 } }), 'F16', 1],
  ['MiniCPM3 (LongRoPE, embedding, residual and head scalings), BF16', tinyMiniCpm3Config(), 'BF16', 1],
  ['Qwen2 (q, k, v biases), BF16', tinyQwen2Config(), 'BF16', 1],
  ['Qwen2, tied embeddings, F32, 2 shards', tinyQwen2Config({ tie_word_embeddings: true }), 'F32', 2],
  ['Phi-3 (fused q/k/v and gate/up), BF16', tinyPhi3Config(), 'BF16', 1],
  // Original context 8 < 30 tokens: Hugging Face and we both take long_factor, cos/sin × √(1 + ln 16 / ln 8).
  ['Phi-3 LongRoPE past the original context, F32, 2 shards', tinyPhi3Config({ rope_scaling: longRopeScaling(16) }), 'F32', 2],
  ['Phi-3 LongRoPE within the original context (short factors), F16', tinyPhi3Config({ original_max_position_embeddings: 128, rope_scaling: longRopeScaling(16) }), 'F16', 1],
  // Phi-4-mini's shape: partial_rotary_factor (8 of 16 dims rotate), tied embeddings, LongRoPE.
  ['Phi-3 partial rotary, tied, LongRoPE, BF16', tinyPhi3Config({ partial_rotary_factor: 0.5, tie_word_embeddings: true, rope_scaling: longRopeScaling(8) }), 'BF16', 1],
  ['Mistral (sliding window 40 > 30 tokens), BF16', tinyMistralConfig(), 'BF16', 1],
  ['MiniCPM3 with tied embeddings and no query compression, F32', tinyMiniCpm3Config({ tie_word_embeddings: true, q_lora_rank: null }), 'F32', 2],
];

describe.each(CASES)('%s', (_name, config, dtype, shards) => {
  it('forward and prefill + step match the reference on the file\'s weights', async () => {
    const { dir, tensors } = writeFolder(config, 17, dtype, shards);
    const model = await loadModel(dir);
    const V = config.vocab_size as number;
    const ids = Array.from({ length: 30 }, (_, i) => (i * 31 + 7) % V);
    const ref = referenceForward(config, tensors, ids);
    const full = model.forward(ids);
    expectClose(full, ref, 1e-4, 2e-5 * Math.max(1, maxAbs(ref)), 'forward');
    const s = model.createSession();
    expectClose(s.prefill(ids.slice(0, 11)), ref.subarray(10 * V, 11 * V), 1e-4, 2e-5 * Math.max(1, maxAbs(ref)), 'prefill');
    for (let t = 11; t < ids.length; t++) {
      expectClose(s.step(ids[t]), ref.subarray(t * V, (t + 1) * V), 1e-4, 2e-5 * Math.max(1, maxAbs(ref)), `step ${t}`);
    }
    expect(s.position).toBe(ids.length);
  });
});
