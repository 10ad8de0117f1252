// Narrow weights (loadModel's `weights` option): bf16, int8 and int4 against f32 on the built-in
// model and on small random checkpoints of every attention and FFN kind, in both kernel builds;
// the same bits on 1 and 2 threads; bad options and models that only fit narrow.
import { describe, expect, it } from 'vitest';
import { loadModel, MlaError, type Model, type WeightsOption } from '../src/index.js';
import type { Ops } from '../src/model/ops.js';
import { BUILDS, relativeError } from './helpers.js';
import { parseConfig } from '../src/formats/config.js';
import type { TensorSource } from '../src/formats/tensor-source.js';
import { Heap } from '../src/host/heap.js';
import { placeWeights, weightPlan } from '../src/model/weights.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMlaConfig, tinyMlaMoeV2Config, tinyMlaMoeV3Config } from './reference/model.js';

const text = (s: string) => [256, ...new TextEncoder().encode(s)];
const randomIds = (n: number, vocab: number, seed: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);
const inside = (m: Model) => m as unknown as { decoder: { ops: Ops } };

/**
 * Largest |narrow − f32| over the logits, as a fraction of the largest |f32 logit|. Bounds: bf16
 * rounds each weight to 8 significant bits; int8 / int4 round weights per block of 32 and the
 * activations to int8 per block, the errors that build up over the layers.
 */
const BOUND: Record<Exclude<WeightsOption, 'auto' | 'f32'>, number> = { bf16: 0.01, int8: 0.03, int4: 0.12 };

/** The same for weights held exactly: bf16 is f32 arithmetic in another order; int8 / int4 round the activations. */
const EXACT_BOUND: Record<Exclude<WeightsOption, 'auto' | 'f32'>, number> = { bf16: 1e-5, int8: 0.03, int4: 0.03 };

function expectIdentical(a: Float32Array, b: Float32Array, what: string): void {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let first = -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) { first = i; break; }
  expect(first, `${what}: first difference at ${first}`).toBe(-1);
}

/** Logits of a prefill over `ids` (absorbed and naive MLA paths) and of decode steps after it. */
function outputs(m: Model, ids: number[]): Float32Array[] {
  const out = [m.forward(ids), m.forward(ids, { attention: 'naive' })];
  const s = m.createSession({ contextLength: ids.length });
  out.push(s.prefill(ids.slice(0, ids.length - 3)).slice());
  for (const id of ids.slice(ids.length - 3)) out.push(s.step(id).slice());
  s.dispose();
  return out;
}

const FORMATS = ['bf16', 'int8', 'int4'] as const;

/**
 * The checkpoint with every matrix made exactly representable in `format`: per block of 32 along
 * a row, a power-of-two scale d and codes q with the block's largest |q| present (int8: q·d,
 * |q| ≤ 127; int4: (q − 8)·d with −8·d in every block), so that quantising at load gives back the
 * same values, and bf16 (8 significant bits) holds them too. What the model then differs by from
 * f32 is the kernels' own rounding: the activations' int8 blocks for int8 / int4.
 */
function representable(tensors: Record<string, { shape: number[]; data: Float32Array }>, format: 'int8' | 'int4') {
  const out: typeof tensors = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (t.shape.length !== 2) { out[name] = t; continue; }
    const data = new Float32Array(t.data.length);
    const top = format === 'int8' ? 127 : 8;
    for (let b = 0; b < data.length; b += 32) {
      const block = t.data.subarray(b, b + 32);
      const amax = block.reduce((m, x) => Math.max(m, Math.abs(x)), 0) || 1;
      const d = 2 ** Math.round(Math.log2(amax / top));
      for (let j = 0; j < block.length; j++) {
        const q = Math.max(-top, Math.min(format === 'int8' ? 127 : 7, Math.round(block[j] / d)));
        data[b + j] = q * d;
      }
      data[b] = -top * d; // the block's largest magnitude, so its scale is d exactly
    }
    out[name] = { shape: t.shape, data };
  }
  return out;
}
const configs: [string, Record<string, unknown>][] = [
  ['MLA, query compression', tinyMlaConfig({})],
  ['MLA, no query compression', tinyMlaConfig({ q_lora_rank: null })],
  ['MLA MoE (V2 routing)', tinyMlaMoeV2Config({})],
  ['MLA MoE (V3 routing)', tinyMlaMoeV3Config({})],
  ['Llama GQA', tinyLlamaConfig({})],
];
/**
 * The MoE models with every expert chosen (top-k = all, one group kept … all groups): a choice of
 * experts is discrete, and the activations' rounding can flip it on random weights, which would
 * hide a wrong product behind a legitimately different route.
 */
const allExperts: [string, Record<string, unknown>][] = [
  ['MLA MoE (V2 routing), every expert chosen', tinyMlaMoeV2Config({ num_experts_per_tok: 8 })],
  ['MLA MoE (V3 routing), every expert chosen', tinyMlaMoeV3Config({ num_experts_per_tok: 8, topk_group: 4 })],
];

describe.each(BUILDS)('narrow weights, %s build', (simd) => {
  it('the built-in model: logits near f32, int8 greedy text the same, weights smaller', async () => {
    const ids = text('Q: Why did the chicken cross the road?\nA:');
    const f32 = await loadModel(undefined, { simd, weights: 'f32', threads: 1 });
    const want = f32.forward(ids);
    const greedy = async (m: Model) => (await m.generate('Q: What is the meaning of life?\nA:', { maxNewTokens: 40, temperature: 0 })).text;
    const wantText = await greedy(f32);
    let last = f32.weightBytes;
    for (const weights of FORMATS) {
      const m = await loadModel(undefined, { simd, weights, threads: 1 });
      expect(m.weightFormat).toBe(weights);
      expect(m.weightBytes).toBeLessThan(last);
      last = m.weightBytes;
      expect(relativeError(m.forward(ids), want), weights).toBeLessThan(BOUND[weights]);
      if (weights !== 'int4') expect(await greedy(m), weights).toBe(wantText);
      m.dispose();
    }
    f32.dispose();
  });

  it.each([...configs.filter(([n]) => !n.includes('MoE')), ...allExperts])('%s: weights the format holds exactly give f32\'s logits, but for the activations\' rounding', async (_name, config) => {
    const ids = randomIds(40, config.vocab_size as number, 3);
    for (const [grid, formats] of [['int8', ['bf16', 'int8']], ['int4', ['int4']]] as const) {
      const source = { config, tensors: representable(makeRandomCheckpoint(config, 21), grid) };
      const f32 = await loadModel(source, { simd, weights: 'f32', threads: 1 });
      const want = outputs(f32, ids);
      f32.dispose();
      for (const weights of formats) {
        const m = await loadModel(source, { simd, weights, threads: 1 });
        outputs(m, ids).forEach((y, i) => expect(relativeError(y, want[i]), `${weights}, output ${i}`).toBeLessThan(EXACT_BOUND[weights]));
        m.dispose();
      }
    }
  });
});

describe('narrow weights on threads', () => {
  it.each(configs)('%s: 1 and 2 threads (every product split) give the same bits', async (_name, config) => {
    const source = { config, tensors: makeRandomCheckpoint(config, 8) };
    const ids = randomIds(40, config.vocab_size as number, 9);
    for (const weights of FORMATS) {
      const one = await loadModel(source, { weights, threads: 1 });
      const two = await loadModel(source, { weights, threads: 2 });
      expect(two.threads).toBe(2);
      inside(two).decoder.ops.minChunkNs = 0;
      const a = outputs(one, ids), b = outputs(two, ids);
      a.forEach((x, i) => expectIdentical(x, b[i], `${weights}, output ${i}`));
      one.dispose();
      two.dispose();
    }
  });
});

describe('the weights option', () => {
  const code = async (p: Promise<unknown>) => {
    try { await p; } catch (e) { return [(e as MlaError).code, (e as Error).message]; }
    return ['no error', ''];
  };

  it('an unknown format is BAD_INPUT naming the choices', async () => {
    for (const weights of ['int3', 'q4_0', 8, '']) {
      const [c, message] = await code(loadModel(undefined, { weights: weights as WeightsOption }));
      expect(c, String(weights)).toBe('BAD_INPUT');
      expect(message).toContain("'auto', 'f32', 'bf16', 'int8', 'int4'");
    }
  });

  it('a model too big for 4 GiB in f32 is OUT_OF_MEMORY naming the format; in int4 it passes the memory check', async () => {
    // About 1.9 B parameters: 7.6 GB in f32, about 1.1 GB in int4. No tensors: past the memory check comes MISSING_TENSOR.
    const config = tinyLlamaConfig({ hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 10, num_attention_heads: 32,
      num_key_value_heads: 8, head_dim: 128, vocab_size: 32000 });
    const [c32, m32] = await code(loadModel({ config, tensors: {} }, { weights: 'f32', threads: 1 }));
    expect(c32).toBe('OUT_OF_MEMORY');
    expect(m32).toContain("weights 'f32'");
    const [c4] = await code(loadModel({ config, tensors: {} }, { weights: 'int4', threads: 1 }));
    expect(c4).toBe('MISSING_TENSOR');
  });

  it('memoryFor tells the bytes of each format and whether it fits', async () => {
    const m = await loadModel(undefined, { threads: 1 });
    const f32 = m.memoryFor('f32'), int8 = m.memoryFor('int8'), int4 = m.memoryFor('int4');
    expect(f32.fits && int8.fits && int4.fits).toBe(true);
    expect(int8.weights).toBeLessThan(f32.weights / 2.5);
    expect(int4.weights).toBeLessThan(int8.weights);
    expect(() => m.memoryFor('int2' as 'int8')).toThrow(MlaError);
    // 'auto': the matrices as this model holds them (the built-in model is F32 on disk).
    expect(m.memoryFor('auto')).toEqual(f32);
    m.dispose();
    // Loaded narrow, 'auto' replays that load's choices, after its source is gone.
    const m8 = await loadModel(undefined, { threads: 1, weights: 'int8' });
    expect(m8.memoryFor('auto')).toEqual(m8.memoryFor('int8'));
    expect(m8.memoryFor('auto').weights).toBe(int8.weights);
    m8.dispose();
  });

  it('memoryFor counts the cache at its own format and length', async () => {
    const m = await loadModel(undefined, { threads: 1 });
    const L = 160;
    const f32 = m.memoryFor('int8', { contextLength: L });
    expect(f32.cacheFormat).toBe('f32');
    expect(f32.cache).toBe(m.cacheBytesPerToken('f32') * L);
    for (const cache of ['bf16', 'int8', 'int4'] as const) {
      const need = m.memoryFor('int8', { cache, contextLength: L });
      expect(need.cacheFormat).toBe(cache);
      expect(need.cache).toBe(m.cacheBytesPerToken(cache) * L);
      expect(need.cache).toBeLessThan(f32.cache);
      expect(need.weights).toBe(f32.weights);
      // What a session of that format and length really takes.
      const s = m.createSession({ cache, contextLength: L });
      expect(s.kvCacheBytesPerToken * L).toBe(need.cache);
      s.dispose();
    }
    const code = (f: () => unknown) => { try { f(); return 'none'; } catch (e) { return (e as MlaError).code; } };
    expect(code(() => m.memoryFor('int8', { cache: 'int3' as 'int8' }))).toBe('BAD_INPUT');
    expect(code(() => m.memoryFor('int8', { contextLength: 0 }))).toBe('BAD_INPUT');
    m.dispose();
  });
});

describe('Q8_0 codes of −128', () => {
  // The q8 kernels take codes −127..127 (assembly/quant.ts moves x's sign onto w); no Q8_0
  // quantiser writes −128, and the loader reads one as −127.
  it('are placed as −127', () => {
    const m = { config: tinyMlaConfig(), tensors: makeRandomCheckpoint(tinyMlaConfig(), 5) };
    const config = parseConfig(m.config);
    const blocksOf = (minus128: number): TensorSource => ({
      names: () => Object.keys(m.tensors),
      shape: (name) => m.tensors[name]?.shape,
      read: (name, out) => out.set(m.tensors[name].data),
      stored: (name) => (m.tensors[name].shape.length === 2 && m.tensors[name].shape[1] % 32 === 0 ? 'Q8_0' : 'F32'),
      readBlocks: (_name, q, d) => {
        for (let i = 0; i < q.length; i++) q[i] = i % 5 === 0 ? minus128 : (i * 37) & 0x7f;
        d.fill(0.01);
      },
    });
    const placed = (minus128: number) => {
      const heap = new Heap();
      const src = blocksOf(minus128);
      const w = placeWeights(config, src, heap, undefined, weightPlan('auto', src));
      expect(w.layers[0].wDown!.format).toBe('q8');
      return heap.u8(w.block, w.blockBytes).slice();
    };
    expect(placed(0x80)).toEqual(placed(0x81));
  });
});
