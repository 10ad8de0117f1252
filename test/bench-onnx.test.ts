// The bench's ONNX models (bench/onnx.ts, bench/e2e/onnx-step.ts) run under onnxruntime-node and compute what
// they claim: a MatMul, MatMulNBits on blocks quantised as ours quantises (bench/e2e/onnx-quant.ts,
// checked against our kernels bit for bit), and our absorbed MLA decode step (on a tiny config,
// against our decoder), with f32 weights and with the int8 / int4 weights of the narrow graphs.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { tensorValues } from '../bench/e2e/checkpoint.js';
import { buildStepGraph, latentCache, NARROW_TOL, ropeInputs, type StepGraph } from '../bench/e2e/onnx-step.js';
import { dequantizeNBits, quantizeNBits } from '../bench/e2e/onnx-quant.js';
import { concat, encodeModel, FLOAT, GraphBuilder, matmulModel, MS_DOMAIN } from '../bench/onnx.js';
import { parseConfig, type MlaAttention } from '../src/formats/config.js';
import { loadModel } from '../src/generate/model.js';
import { expectedTensors } from '../src/model/weights.js';
import { kernelsFor, randomF32 } from './helpers.js';

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

  it('onnx-quant.ts quantises and dequantises as our kernels do, bit for bit', async () => {
    const k = await kernelsFor('simd');
    const rows = 5, cols = 96;
    const w = randomF32(rows * cols, 7);
    w.fill(0, 32, 64); // an all-zero block: d = 0
    w[70] = -w[71]; w[66] = 0.5; w[67] = -0.5; // ties for the largest magnitude
    for (const [bits, fmt] of [[8, 'q8'], [4, 'q4']] as const) {
      const nb = cols / 32, qBytes = fmt === 'q8' ? rows * cols : rows * cols / 2;
      const wp = k.heap.alloc(w.length * 4), qp = k.heap.alloc(qBytes), dp = k.heap.alloc(rows * nb * 4), op = k.heap.alloc(w.length * 4);
      k.heap.f32(wp, w.length).set(w);
      (fmt === 'q8' ? k.kernels.quantize_q8_rows : k.kernels.quantize_q4_rows)(wp, cols, rows, cols, qp, dp);
      (fmt === 'q8' ? k.kernels.dequantize_q8 : k.kernels.dequantize_q4)(qp, dp, op, rows * nb);
      const ours = Array.from(k.heap.f32(op, w.length));
      const q = quantizeNBits(w, rows, cols, bits);
      expect(Array.from(q.scales)).toEqual(Array.from(k.heap.f32(dp, rows * nb)));
      expect(Array.from(dequantizeNBits(q, rows, cols))).toEqual(ours);
      for (const [p, n] of [[wp, w.length * 4], [qp, qBytes], [dp, rows * nb * 4], [op, w.length * 4]]) k.heap.release(p, n);
    }
  });

  it('MatMulNBits (4 and 8 bits, blocks of 32) multiplies by the dequantised weights', async () => {
    const M = 3, K = 64, N = 5;
    const w = randomF32(N * K, 11), a = randomF32(M * K, 12);
    for (const bits of [4, 8] as const) {
      const q = quantizeNBits(w, N, K, bits), wd = dequantizeNBits(q, N, K);
      const g = new GraphBuilder();
      // accuracy_level 0: f32 arithmetic, so that the layout is checked to f32 rounding (the bench's graphs use 4)
      g.op('MatMulNBits', ['a', g.bytes('b', [N, K / 32, bits * 4], q.codes), g.f32('scales', [N, K / 32], q.scales)],
        { K, N, bits, block_size: 32, accuracy_level: 0 }, 'y', MS_DOMAIN);
      const bytes = concat(encodeModel({ name: 'nbits', nodes: g.nodes, initializers: g.initializers,
        inputs: [{ name: 'a', type: FLOAT, shape: [M, K] }], outputs: [{ name: 'y', type: FLOAT, shape: [M, N] }] }));
      const session = await ort.InferenceSession.create(bytes);
      const y: Float32Array = (await session.run({ a: new ort.Tensor('float32', a, [M, K]) })).y.data;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = 0, abs = 0;
          for (let j = 0; j < K; j++) { s += a[m * K + j] * wd[n * K + j]; abs += Math.abs(a[m * K + j] * wd[n * K + j]); }
          expect(Math.abs(y[m * N + n] - s)).toBeLessThanOrEqual(K * 2 ** -24 * abs);
        }
      }
    }
  });

  it('the absorbed decode step graph gives our step\'s logits and cache rows', async () => {
    expect(await stepDiff('f32', 'f32')).toBeLessThanOrEqual(1e-4);
  });

  // Narrow graphs against ours with the same weights format. nbits4 / nbits8 hold ours' very
  // weights, but both sides quantise the activations to int8 (per block of 32), each rounding its
  // own way; mmi8 rounds the same f32 weights per column instead of per block. On this config each
  // side is ~1% of the largest logit from exact arithmetic on ours' weights, and so from the other;
  // a graph of another weights format is ~7% away: NARROW_TOL separates the two.
  it.each([['nbits4', 'int4'], ['nbits8', 'int8'], ['mmi8', 'int8']] as const)('the %s step graph gives our %s step\'s logits', async (graph, weights) => {
    expect(await stepDiff(graph, weights)).toBeLessThanOrEqual(NARROW_TOL);
  });

  it.each([['nbits4', 'int8'], ['nbits8', 'int4'], ['f32', 'int4']] as const)('the %s step graph is told apart from our %s step', async (graph, weights) => {
    expect(await stepDiff(graph, weights)).toBeGreaterThan(NARROW_TOL);
  });
});

/**
 * Our step (prefill 9 tokens, then one) against the graph's on the same cache: max |Δ logit| /
 * max(1, max |logit|); for the f32 graph each layer's new latent row must be ours within 1e-5.
 * Every row of the config is a multiple of 32, so that int8 / int4 quantise every projection.
 */
async function stepDiff(graph: StepGraph, weights: 'f32' | 'int8' | 'int4'): Promise<number> {
  const raw = {
    architectures: ['DeepseekV2ForCausalLM'], vocab_size: 40, hidden_size: 64, intermediate_size: 96,
    num_hidden_layers: 2, num_attention_heads: 2, q_lora_rank: null, kv_lora_rank: 32, qk_nope_head_dim: 16,
    qk_rope_head_dim: 8, v_head_dim: 16, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000,
  };
  const c = parseConfig(raw);
  const a = c.attention as MlaAttention, row = a.kvLoraRank + a.ropeDim;
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of expectedTensors(c)) tensors[name] = { shape, data: tensorValues(name, shape) };
  const model = await loadModel({ config: raw, tensors }, { weights });
  const s = model.createSession({ contextLength: 16 });
  const S = 9;
  s.prefill([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const cache = latentCache(model, s, S);
  const ours = s.step(5);
  const after = latentCache(model, s, S + 1);

  const session = await ort.InferenceSession.create(concat(buildStepGraph(c, graph)));
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
  let worst = 0;
  for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(theirs[i] - ours[i]));
  if (graph === 'f32' && weights === 'f32') {
    // The new latent row of each layer is the one our step appended.
    for (let l = 0; l < c.layers; l++) {
      const mine = after[l].subarray(S * row), got: Float32Array = out[`new_row_${l}`].data;
      for (let i = 0; i < row; i++) expect(Math.abs(got[i] - mine[i])).toBeLessThanOrEqual(1e-5);
    }
  }
  model.dispose();
  return worst / scale;
}
