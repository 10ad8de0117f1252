// The bench's ONNX models (bench/onnx.ts, bench/e2e/onnx-step.ts) run under onnxruntime-node and compute what
// they claim: a MatMul, and our absorbed MLA decode step (on a tiny config, against our decoder).
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { tensorValues } from '../bench/e2e/checkpoint.js';
import { buildStepGraph, latentCache, ropeInputs } from '../bench/e2e/onnx-step.js';
import { concat, matmulModel } from '../bench/onnx.js';
import { parseConfig, type MlaAttention } from '../src/formats/config.js';
import { loadModel } from '../src/generate/model.js';
import { expectedTensors } from '../src/model/weights.js';

const ort = createRequire(import.meta.url)('onnxruntime-node');

describe('bench ONNX models', () => {
  it('MatMul: y = a · b, b an initializer [K, N]', async () => {
    const M = 3, K = 5, N = 4;
    const a = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i) * 0.5);
    const session = await ort.InferenceSession.create(matmulModel(M, K, N, b));
    const y: Float32Array = (await session.run({ a: new ort.Tensor('float32', a, [M, K]) })).y.data;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[m * K + k] * b[k * N + n];
        expect(y[m * N + n]).toBeCloseTo(s, 5);
      }
    }
  });

  it('the absorbed decode step graph gives our step\'s logits and cache rows', async () => {
    const raw = {
      architectures: ['DeepseekV2ForCausalLM'], vocab_size: 40, hidden_size: 32, intermediate_size: 48,
      num_hidden_layers: 2, num_attention_heads: 2, q_lora_rank: null, kv_lora_rank: 16, qk_nope_head_dim: 8,
      qk_rope_head_dim: 8, v_head_dim: 8, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000,
    };
    const c = parseConfig(raw);
    const a = c.attention as MlaAttention, row = a.kvLoraRank + a.ropeDim;
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, shape] of expectedTensors(c)) tensors[name] = { shape, data: tensorValues(name, shape) };
    const model = await loadModel({ config: raw, tensors });
    const s = model.createSession({ contextLength: 16 });
    const S = 9;
    s.prefill([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const cache = latentCache(model, s, S);
    const ours = s.step(5);
    const after = latentCache(model, s, S + 1);

    const session = await ort.InferenceSession.create(concat(buildStepGraph(c)));
    const rope = ropeInputs(c, S);
    const feeds: Record<string, unknown> = {
      ids: new ort.Tensor('int64', BigInt64Array.of(5n), [1]),
      cos: new ort.Tensor('float32', rope.cos, [1, a.ropeDim]),
      sin: new ort.Tensor('float32', rope.sin, [1, a.ropeDim]),
    };
    cache.forEach((layer, l) => { feeds[`cache_${l}`] = new ort.Tensor('float32', layer, [S, row]); });
    const out = await session.run(feeds);
    const theirs: Float32Array = out.logits.data;
    expect(theirs.length).toBe(c.vocabSize);
    const scale = Math.max(1, ...Array.from(ours, Math.abs));
    for (let i = 0; i < ours.length; i++) expect(Math.abs(theirs[i] - ours[i])).toBeLessThanOrEqual(1e-4 * scale);
    // The new latent row of each layer is the one our step appended.
    for (let l = 0; l < c.layers; l++) {
      const mine = after[l].subarray(S * row), got: Float32Array = out[`new_row_${l}`].data;
      for (let i = 0; i < row; i++) expect(Math.abs(got[i] - mine[i])).toBeLessThanOrEqual(1e-5);
    }
    model.dispose();
  });
});
