// Per-token decode time of a synthetic model with DeepSeek-V2-Lite attention dims
// (hidden 2048, 16 heads, kv_lora_rank 512, rope 64, nope 128, v 128, no query compression),
// at several context lengths: MLA absorbed vs MLA naive vs MHA vs GQA-4 vs MQA on the same kernels.
// The cache is filled with random rows (a decode step's cost does not depend on the values),
// then one step at that position is timed.
import { Decoder, expectedTensors, KvCache, loadKernels, loadQuantizer, maxLinearCols, Model, placeWeights, scratchBytes, scratchSizes,
  weightPlan, type AttentionConfig, type AttentionPath, type CacheFormat, type ModelConfig, type SimdBuild, type TensorSource,
  type WeightsOption } from '../src/internal.js';

export interface DecodeRow {
  variant: string;
  context: number;
  cacheBytesPerToken: number;
  cacheBytes: number;
  msPerToken: number;
}

const LAYERS = 2;
const HIDDEN = 2048;
const HEADS = 16;

/** The synthetic model of this bench with the given attention: LAYERS layers, MLP 1408, vocab 1024. */
export function syntheticConfig(attention: AttentionConfig): ModelConfig {
  return {
    architecture: attention.kind === 'mla' ? 'DeepseekV2ForCausalLM' : 'LlamaForCausalLM',
    vocabSize: 1024, hidden: HIDDEN, layers: LAYERS, attention,
    // V2-Lite's expert width: the bench is about attention, so the MLP is kept small.
    ffn: Array.from({ length: LAYERS }, () => ({ kind: 'dense' as const, intermediate: 1408 })),
    rmsEps: 1e-6, ropeTheta: 10000, ropeStyle: attention.kind === 'mla' ? 'adjacent' : 'half', yarn: null, ropeFreqFactors: null, embedScale: 1, residualScale: 1, headScale: 1,
    maxPositions: 1 << 20, tieEmbeddings: false, bosTokenId: null, eosTokenIds: [],
  };
}

const V2_LITE_MLA: AttentionConfig = { kind: 'mla', heads: HEADS, qLoraRank: null, kvLoraRank: 512, nopeDim: 128, ropeDim: 64, vDim: 128, latentNorm: true };

export const VARIANTS: { name: string; attention: AttentionConfig; path: AttentionPath; cache?: CacheFormat }[] = [
  { name: 'MLA absorbed', path: 'absorbed', attention: V2_LITE_MLA },
  // The latent rows in int8 (one scale per row, k^R bf16), read as stored.
  { name: 'MLA, int8 cache', path: 'absorbed', attention: V2_LITE_MLA, cache: 'int8' },
  { name: 'MLA naive', path: 'naive', attention: { kind: 'mla', heads: HEADS, qLoraRank: null, kvLoraRank: 512, nopeDim: 128, ropeDim: 64, vDim: 128, latentNorm: true } },
  // Ordinary attention with MLA's per-head dims: K = d_n + d_r = 192, V = 128 (docs/mla.md §4).
  { name: 'MHA', path: 'absorbed', attention: { kind: 'gqa', heads: HEADS, kvHeads: 16, headDim: 192, vDim: 128 } },
  { name: 'GQA-4', path: 'absorbed', attention: { kind: 'gqa', heads: HEADS, kvHeads: 4, headDim: 192, vDim: 128 } },
  { name: 'MQA', path: 'absorbed', attention: { kind: 'gqa', heads: HEADS, kvHeads: 1, headDim: 192, vDim: 128 } },
];

/** Small random values, deterministic. */
export function randomSource(c: ModelConfig): TensorSource {
  const shapes = expectedTensors(c);
  let seed = 1;
  return {
    names: () => shapes.keys(),
    shape: (n) => shapes.get(n),
    read: (n, out) => {
      const scale = n.endsWith('norm.weight') ? 0 : 1 / Math.sqrt(shapes.get(n)!.at(-1)!);
      for (let i = 0; i < out.length; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        out[i] = scale ? ((seed / 2 ** 32) * 2 - 1) * scale : 1;
      }
    },
  };
}

/** The synthetic model with this attention as a Model, on kernels of its own. */
export async function syntheticModel(attention: AttentionConfig,
  options: { simd?: SimdBuild; threads?: number; weights?: Exclude<WeightsOption, 'auto'> } = {}): Promise<Model> {
  const c = syntheticConfig(attention);
  const { weights: format = 'f32', ...kernelOptions } = options;
  const { kernels, heap, build, pool } = await loadKernels(kernelOptions);
  // Narrow weights are made at load as loadModel makes them (weights.ts's plan, the kernels' quantisers).
  const quantizer = loadQuantizer(kernels, maxLinearCols(c), scratchBytes(scratchSizes(c, kernels, pool?.threads ?? 1)));
  const plan = weightPlan(format);
  const weights = placeWeights(c, randomSource(c), heap, undefined, plan, quantizer);
  const decoder = new Decoder(kernels, heap, c, weights, pool);
  return new Model({ config: c, decoder, simd: build, pool, tokenizer: null, generationConfig: null, weights: format, plan, scratchKernels: kernels });
}

/** The MLA-absorbed synthetic model as a Model (npm run bench:threads, npm run bench:profile, bench/batch.ts). */
export function loadSyntheticModel(threads: number, weights: Exclude<WeightsOption, 'auto'> = 'f32'): Promise<Model> {
  return syntheticModel(VARIANTS[0].attention, { threads, weights });
}

export async function benchDecode(build: SimdBuild, contexts: number[], log: (s: string) => void): Promise<DecodeRow[]> {
  const rows: DecodeRow[] = [];
  for (const v of VARIANTS) {
    const model = await syntheticModel(v.attention, { simd: build });
    const c = model.config;
    const session = model.createSession({ contextLength: Math.max(...contexts) + 1, cache: v.cache });
    if (session.cacheFormat === 'f32') {
      const mem = session.kvCache.all();
      for (let i = 0; i < mem.length; i++) mem[i] = Math.sin(i) * 0.5;
    } else {
      // Any bytes in 0x30…0x3F read as finite, small f32/bf16 (scales, k^R) and as int8 codes.
      const mem = session.kvCache.bytesView();
      for (let i = 0; i < mem.length; i++) mem[i] = 0x30 + ((i * 7) & 15);
    }
    const out = new Float32Array(c.vocabSize);
    for (const context of contexts) {
      // One step at `context`, over the random rows before it.
      const step = () => { session.skipTo(context); session.step(1, { attention: v.path, out }); };
      // Naive decode re-expands the whole cache every step: few repetitions at long context.
      const reps = v.path === 'naive' ? Math.max(2, Math.min(8, Math.round(4096 / context))) : 10;
      const warm = v.path === 'naive' && context > 4096 ? 1 : 3;
      for (let i = 0; i < warm; i++) step(); // warm-up (V8 tier-up)
      const times: number[] = [];
      for (let i = 0; i < reps; i++) {
        const t0 = performance.now();
        step();
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const row: DecodeRow = {
        variant: v.name, context, cacheBytesPerToken: KvCache.bytes(c, 1, v.cache),
        cacheBytes: KvCache.bytes(c, context, v.cache), msPerToken: times[Math.floor(times.length / 2)],
      };
      log(`  ${v.name.padEnd(13)} ctx ${String(context).padStart(6)}: ${row.msPerToken.toFixed(2)} ms/token`);
      rows.push(row);
    }
    model.dispose();
  }
  return rows;
}
