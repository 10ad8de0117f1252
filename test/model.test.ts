// The whole decoder against the float64 reference, on the real default model and on small random
// checkpoints with every attention feature, in both kernel builds.
import { describe, expect, it } from 'vitest';
import { CHUNK } from '../src/model/decoder.js';
import { loadModel, type Model } from '../src/index.js';
import type { InMemoryModel } from '../src/formats/source.js';
import { BUILDS, expectClose } from './helpers.js';
import { makeRandomCheckpoint, referenceForward, tinyLlamaConfig, tinyMlaConfig, tinyMlaMoeV2Config, tinyMlaMoeV3Config } from './reference/model.js';

const text = (s: string) => [256, ...new TextEncoder().encode(s)];

/** Max |x|, to set tolerances relative to the size of the logits. */
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

function expectLogits(actual: Float32Array, expected: ArrayLike<number>, what: string): void {
  // f32 kernels against the f64 reference through several layers: errors of a few 1e-6 of the
  // logits' range are rounding; a wrong convention or index shows up as O(1).
  expectClose(actual, expected, 1e-4, 2e-5 * Math.max(1, maxAbs(expected)), what);
}

function inMemory(config: Record<string, unknown>, seed: number): InMemoryModel {
  return { config, tensors: makeRandomCheckpoint(config, seed) };
}

const randomIds = (n: number, vocab: number, seed: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);

describe.each(BUILDS)('decoder, %s build', (simd) => {
  it('fortune-mla (the default model): forward matches the float64 reference', async () => {
    const model = await loadModel(undefined, { simd });
    expect(model.simd).toBe(simd);
    const ids = text('Q: Why did the chicken cross the road?\nA:');
    const { config, tensors } = await realModel('fortune-mla');
    expectLogits(model.forward(ids), referenceForward(config, tensors, ids), 'fortune-mla logits');
  });

  const mlaCases: [string, Record<string, unknown>][] = [
    ['query compression', tinyMlaConfig({})],
    ['no query compression', tinyMlaConfig({ q_lora_rank: null })],
    ['YaRN', tinyMlaConfig({
      max_position_embeddings: 256,
      rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 },
    })],
    ['tied embeddings, V3 architecture', tinyMlaConfig({ tie_word_embeddings: true, architectures: ['DeepseekV3ForCausalLM'] })],
    ['DeepSeek-V2 MoE routing', tinyMlaMoeV2Config({})],
    ['DeepSeek-V2 MoE, group-limited, normalised top-k', tinyMlaMoeV2Config({ topk_method: 'group_limited_greedy', n_group: 2, topk_group: 1, norm_topk_prob: true })],
    ['DeepSeek-V3 MoE routing (sigmoid, bias, groups) and YaRN', tinyMlaMoeV3Config({})],
    // Every projection but kv_b wider than a panel (weights.ts PANEL_COLS, 2048): stored and summed in column panels.
    ['matrices wider than a panel', tinyMlaConfig({ hidden_size: 2100, intermediate_size: 4100, q_lora_rank: 2052 })],
    ['MoE with a router and shared experts wider than a panel', tinyMlaMoeV2Config({ hidden_size: 2100, moe_intermediate_size: 1100 })],
  ];

  describe.each(mlaCases)('MLA with %s', (_name, config) => {
    const source = inMemory(config, 7);
    const vocab = config.vocab_size as number;
    const ids = randomIds(21, vocab, 1);
    let model: Model;
    it('forward (naive and absorbed) matches the reference', async () => {
      model = await loadModel(source, { simd });
      const ref = referenceForward(config, source.tensors, ids);
      expectLogits(model.forward(ids, { attention: 'naive' }), ref, 'naive');
      expectLogits(model.forward(ids, { attention: 'absorbed' }), ref, 'absorbed');
    });

    it('naive and absorbed agree to float rounding', () => {
      const a = model.forward(ids, { attention: 'naive' });
      const b = model.forward(ids, { attention: 'absorbed' });
      expectClose(b, a, 1e-5, 1e-5 * Math.max(1, maxAbs(a)), 'absorbed vs naive');
    });

    it('prefill then step gives the logits of forward, on either path', () => {
      const full = model.forward(ids);
      for (const attention of ['naive', 'absorbed'] as const) {
        const s = model.createSession();
        const split = 8;
        expectClose(s.prefill(ids.slice(0, split), { attention }), full.subarray((split - 1) * vocab, split * vocab), 1e-5, 1e-4, 'prefill');
        for (let t = split; t < ids.length; t++) {
          expectClose(s.step(ids[t], { attention }), full.subarray(t * vocab, (t + 1) * vocab), 1e-5, 1e-4, `step ${t}`);
        }
        expect(s.position).toBe(ids.length);
        s.dispose();
      }
    });
  });

  it('prompts longer than a chunk (CHUNK tokens) run in chunks with the same result', async () => {
    const config = tinyMlaConfig({ num_hidden_layers: 1, max_position_embeddings: 3 * CHUNK });
    const source = inMemory(config, 3);
    const model = await loadModel(source, { simd });
    const ids = randomIds(2 * CHUNK + 9, config.vocab_size as number, 2);
    expectLogits(model.forward(ids), referenceForward(config, source.tensors, ids), 'chunked forward');
  });

  describe.each([['MHA', 4], ['GQA', 2], ['MQA', 1]] as const)('Llama layout, %s', (_name, kvHeads) => {
    it('forward and prefill + step match the reference', async () => {
      const config = tinyLlamaConfig({ num_key_value_heads: kvHeads });
      const source = inMemory(config, 11);
      const model = await loadModel(source, { simd });
      const ids = randomIds(17, config.vocab_size as number, 5);
      const ref = referenceForward(config, source.tensors, ids);
      const full = model.forward(ids);
      expectLogits(full, ref, 'forward');
      const V = config.vocab_size as number;
      const s = model.createSession();
      s.prefill(ids.slice(0, 5));
      for (let t = 5; t < ids.length; t++) expectClose(s.step(ids[t]), full.subarray(t * V, (t + 1) * V), 1e-5, 1e-4, `step ${t}`);
    });
  });
});

describe('fortune-gqa, the GQA twin', () => {
  it('forward matches the float64 reference', async () => {
    const { config, tensors } = await realModel('fortune-gqa');
    const model = await loadModel(new URL('../models/fortune-gqa/', import.meta.url));
    expect(model.config.attention).toMatchObject({ kind: 'gqa', heads: 6, kvHeads: 2, headDim: 32 });
    const ids = text('Q: What is a computer?\nA:');
    expectLogits(model.forward(ids), referenceForward(config, tensors, ids), 'fortune-gqa logits');
  });
});

describe('KV cache sizes', () => {
  it('MLA caches layers × (kv_lora_rank + qk_rope_head_dim) × 4 bytes per token', async () => {
    const model = await loadModel();
    expect(model.kvCacheBytesPerToken).toBe(4 * (48 + 16) * 4);
    const s = model.createSession({ contextLength: 64 });
    s.prefill(text('Hello'));
    expect(s.kvCacheBytes).toBe(6 * 4 * (48 + 16) * 4);
    s.step(65);
    expect(s.kvCacheBytes).toBe(7 * 4 * (48 + 16) * 4);
    // MHA with the same heads: 2·H·d_h numbers, K being d_n + d_r and V d_v (docs/mla.md §4).
    expect(model.mhaCacheBytesPerToken).toBe(4 * 6 * (32 + 16 + 32) * 4);
  });

  it.each([['MHA', 4], ['GQA', 2], ['MQA', 1]] as const)('%s caches layers × 2 · kv_heads · head_dim × 4 bytes per token', async (_n, kvHeads) => {
    const config = tinyLlamaConfig({ num_key_value_heads: kvHeads });
    const model = await loadModel(inMemory(config, 1));
    const headDim = (config.hidden_size as number) / (config.num_attention_heads as number);
    expect(model.kvCacheBytesPerToken).toBe((config.num_hidden_layers as number) * 2 * kvHeads * headDim * 4);
  });
});

async function realModel(name: string) {
  const { readFileSync } = await import('node:fs');
  const { parseSafetensorsHeader, readTensorF32 } = await import('../src/formats/safetensors.js');
  const dir = new URL(`../models/${name}/`, import.meta.url);
  const config = JSON.parse(readFileSync(new URL('config.json', dir), 'utf8'));
  const bytes = new Uint8Array(readFileSync(new URL('model.safetensors', dir)));
  const header = parseSafetensorsHeader(bytes);
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [n, info] of header.tensors) {
    const data = new Float32Array(info.shape.reduce((a, b) => a * b, 1));
    readTensorF32(bytes, info, data);
    tensors[n] = { shape: info.shape, data };
  }
  return { config, tensors };
}
