import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../src/index.js';
import { convertToMla, writeConvertedFolder, writeConvertedGguf, type ConvertedModel } from '../src/convert/index.js';
import { MlaError } from '../src/errors.js';
import { parseGguf } from '../src/formats/gguf.js';
import { quantizeToFile } from '../src/formats/gguf-quantize.js';
import { memoryFile } from '../src/formats/source.js';
import type { InMemoryModel } from '../src/formats/source.js';
import { ffn, llamaAttention, longRopeScaling, makeRandomCheckpoint, tinyLlamaConfig, tinyMistralConfig, tinyMlaConfig, tinyPhi3Config, tinyQwen2Config } from './reference/model.js';
import { rmsnorm } from './reference/ops.js';
import { writeSafetensors } from './reference/safetensors-writer.js';

const inMemory = (config: Record<string, unknown>, seed: number): InMemoryModel => ({ config, tensors: makeRandomCheckpoint(config, seed) });
const asSource = (m: ConvertedModel): InMemoryModel => ({ config: m.config, tensors: Object.fromEntries(m.tensors) });
const ids = Array.from({ length: 40 }, (_, i) => (i * 7919 + (i * i) % 13) % 50);
const maxAbs = (x: ArrayLike<number>) => { let m = 0; for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i])); return m; };

async function logits(source: InMemoryModel): Promise<Float32Array> {
  const model = await loadModel(source, { threads: 1 });
  try { return model.forward(ids); } finally { model.dispose(); }
}

describe('convertToMla', () => {
  it('MQA with ropeDim = kvRank = head_dim converts exactly (logits to f32 rounding)', async () => {
    const src = inMemory(tinyLlamaConfig({ num_key_value_heads: 1 }), 3);
    for (const calibration of [false as const, undefined, Array.from({ length: 160 }, (_, i) => (i * 31 + 7) % 50)]) {
      const mla = await convertToMla(src, { kvRank: 16, ropeDim: 16, calibration });
      expect(mla.config.architectures).toEqual(['DeepseekV2ForCausalLM']);
      expect(mla.summary.cacheBefore).toBe(32);
      expect(mla.summary.cacheAfter).toBe(32);
      const [a, b] = [await logits(src), await logits(asSource(mla))];
      // Both are f32 decoders over the same math in different orders: 1e-4 of the logits' range.
      const tol = 1e-4 * Math.max(1, maxAbs(a));
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
      expect(worst).toBeLessThan(tol);
    }
  });

  it('plain Phi-3 (fused q/k/v, gate/up) and Mistral (window-limited context) MQA convert exactly too', async () => {
    for (const config of [tinyPhi3Config({ num_key_value_heads: 1 }), tinyMistralConfig({ num_key_value_heads: 1, sliding_window: 40 })]) {
      const src = inMemory(config, 3);
      const mla = await convertToMla(src, { kvRank: 16, ropeDim: 16, calibration: false });
      expect(mla.config.max_position_embeddings).toBe(config.sliding_window ?? config.max_position_embeddings);
      const [a, b] = [await logits(src), await logits(asSource(mla))];
      const tol = 1e-4 * Math.max(1, maxAbs(a));
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
      expect(worst).toBeLessThan(tol);
    }
  });

  it('GQA whose second KV head is the first turned by a phase per frequency converts exactly (complex PCA)', async () => {
    const config = tinyLlamaConfig(); // 2 KV heads × 16
    const tensors = makeRandomCheckpoint(config, 4);
    const hd = 16, half = 8, d = 64;
    for (let l = 0; l < 2; l++) {
      const Wk = tensors[`model.layers.${l}.self_attn.k_proj.weight`].data as Float32Array;
      for (let i = 0; i < half; i++) {
        const phi = 0.7 + 1.3 * i, cs = Math.cos(phi), sn = Math.sin(phi);
        for (let k = 0; k < d; k++) {
          const re = Wk[i * d + k], im = Wk[(i + half) * d + k];
          Wk[(hd + i) * d + k] = 1.5 * (re * cs - im * sn);
          Wk[(hd + i + half) * d + k] = 1.5 * (im * cs + re * sn);
        }
      }
    }
    const src: InMemoryModel = { config, tensors };
    const mla = await convertToMla(src, { kvRank: 32, ropeDim: 16 });
    expect(mla.summary.ropeSpacing).toBe(1);
    const [a, b] = [await logits(src), await logits(asSource(mla))];
    const tol = 1e-4 * Math.max(1, maxAbs(a));
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    expect(worst).toBeLessThan(tol);
  });

  it('calibration sees each layer\'s attention input as the float64 reference computes it', async () => {
    const config = tinyLlamaConfig(), tensors = makeRandomCheckpoint(config, 11);
    const model = await loadModel({ config, tensors }, { threads: 1 });
    const seen: Float32Array[] = [];
    model.tapAttentionInputs((l, x) => { seen[l] = x.slice(); });
    try { model.forward(ids); } finally { model.dispose(); }
    const d = 64, T = ids.length, eps = 1e-6;
    const h = new Float64Array(T * d);
    const E = tensors['model.embed_tokens.weight'].data as Float32Array;
    ids.forEach((id, t) => { for (let i = 0; i < d; i++) h[t * d + i] = E[id * d + i]; });
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}.`, w = (n: string) => tensors[p + n].data as Float32Array;
      const x = rmsnorm(h, w('input_layernorm.weight'), T, d, eps);
      let worst = 0;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - seen[l][i]));
      expect(worst).toBeLessThan(1e-5 * maxAbs(x));
      const u = llamaAttention(config, tensors, l, x, T);
      for (let i = 0; i < h.length; i++) h[i] += u[i];
      const f = ffn(config, tensors, l, rmsnorm(h, w('post_attention_layernorm.weight'), T, d, eps), T);
      for (let i = 0; i < h.length; i++) h[i] += f[i];
    }
  });

  it('by default calibrates on the source\'s own samples: whole windows, the same for the same seed', async () => {
    const src = inMemory(tinyLlamaConfig(), 5);
    const a = await convertToMla(src, { kvRank: 24, ropeDim: 12 });
    expect(a.summary.method).toBe('samples');
    expect(a.summary.calibrationTokens).toBe(2048); // max(2048, 4 × 64), in windows of 128 (max_position_embeddings)
    const b = await convertToMla(src, { kvRank: 24, ropeDim: 12, samples: 200, seed: 0 });
    expect(b.summary.calibrationTokens).toBe(256);
    const again = await convertToMla(src, { kvRank: 24, ropeDim: 12, samples: 200, seed: 0 });
    const other = await convertToMla(src, { kvRank: 24, ropeDim: 12, samples: 200, seed: 1 });
    const kvA = (m: ConvertedModel) => m.tensors.get('model.layers.1.self_attn.kv_a_proj_with_mqa.weight')!.data;
    expect(kvA(again)).toEqual(kvA(b));
    expect(kvA(other)).not.toEqual(kvA(b));
    const svd = await convertToMla(src, { kvRank: 24, ropeDim: 12, calibration: false });
    expect(svd.summary.method).toBe('weights');
    expect(svd.summary.calibrationTokens).toBe(0);
    expect(kvA(svd)).not.toEqual(kvA(b));
  });

  it('GQA converts inexactly but close at a generous rank; a cut rank is worse', async () => {
    const src = inMemory(tinyLlamaConfig(), 5); // 2 KV heads × 16
    const ref = await logits(src);
    const err = async (kvRank: number, ropeDim: number) => {
      const b = await logits(asSource(await convertToMla(src, { kvRank, ropeDim })));
      let s = 0, n = 0;
      for (let i = 0; i < ref.length; i++) { s += (ref[i] - b[i]) ** 2; n += ref[i] ** 2; }
      return Math.sqrt(s / n);
    };
    const full = await err(48, 16), cut = await err(8, 4);
    expect(full).toBeLessThan(cut);
    expect(cut).toBeGreaterThan(1e-3); // not exact: each ladder rung holds one head's component
  });

  it('honours qk_latent_layernorm for --latent-norm (a strict DeepSeek-V2 folder loads)', async () => {
    const src = inMemory(tinyLlamaConfig({ num_key_value_heads: 1 }), 7);
    const mla = await convertToMla(src, { kvRank: 16, ropeDim: 16, latentNorm: true, calibration: Array.from({ length: 160 }, (_, i) => (i * 13) % 50) });
    expect(mla.config.qk_latent_layernorm).toBe(true);
    expect(mla.tensors.has('model.layers.0.self_attn.kv_a_layernorm.weight')).toBe(true);
    const out = await logits(asSource(mla));
    expect(out.every(Number.isFinite)).toBe(true);
  });

  it('writes a folder loadModel loads, via a temporary name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conv-'));
    const srcDir = join(dir, 'src');
    mkdirSync(srcDir);
    const config = tinyLlamaConfig({ num_key_value_heads: 1 });
    writeFileSync(join(srcDir, 'config.json'), JSON.stringify(config));
    writeFileSync(join(srcDir, 'model.safetensors'), writeSafetensors(makeRandomCheckpoint(config, 9)));
    const mla = await convertToMla(srcDir, { kvRank: 16, ropeDim: 16 });
    await writeConvertedFolder(mla, join(dir, 'out'));
    expect(readdirSync(dir).sort()).toEqual(['out', 'src']);
    const model = await loadModel(join(dir, 'out'), { threads: 1 });
    const viaFolder = model.forward(ids);
    model.dispose();
    const direct = await logits(asSource(mla));
    expect(viaFolder).toEqual(direct);
  });

  describe('writes a deepseek2 GGUF (latent norm) that loads with the folder\'s logits', () => {
    const calibration = Array.from({ length: 200 }, (_, i) => (i * 17 + 3) % 50);
    const worstOf = (a: Float32Array, b: Float32Array) => { let w = 0; for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i])); return w; };
    const written = async (mla: ConvertedModel, type?: string) => {
      const dir = mkdtempSync(join(tmpdir(), 'conv-')), file = join(dir, `${type ?? 'f32'}.gguf`);
      await writeConvertedGguf(mla, file, { type });
      expect(readdirSync(dir)).toEqual([`${type ?? 'f32'}.gguf`]);
      const gguf = parseGguf(memoryFile(file, new Uint8Array(readFileSync(file))));
      const model = await loadModel(file, { threads: 1 });
      try {
        expect(model.config.architecture).toMatch(/deepseek/i);
        return { logits: model.forward(ids), qLoraRank: gguf.metadata.get('deepseek2.attention.q_lora_rank'), names: [...gguf.tensors.keys()] };
      } finally { model.dispose(); }
    };

    it('26/27 layers (what llama.cpp reads as V2-Lite): q as attn_q, bit for bit in f32', async () => {
      const mla = await convertToMla(inMemory(tinyLlamaConfig({ num_hidden_layers: 27 }), 6), { kvRank: 24, ropeDim: 12, latentNorm: true, calibration });
      const f32 = await written(mla);
      expect(f32.qLoraRank).toBeUndefined();
      expect(f32.names).toContain('blk.26.attn_q.weight');
      expect(f32.logits).toEqual(await logits(asSource(mla)));
    });

    // Any other layer count: q as the pair q_a = I, q_a_norm = 1, q_b = q_proj·diag(w_in), with
    // w_in folded into kv_a too: exact but for the second RMSNorm's rescaling by about 1 + ε/(2m),
    // m the mean square of the layer's input (measured 5e-6 here; llama-cpp.test.ts has a trained
    // model with small embeddings). A zero in w_in needs nothing special.
    it('other layer counts: q as the pair q_a = I, q_b = q_proj·diag(w_in), to f32 rounding; Q8_0 close', async () => {
      const src = inMemory(tinyLlamaConfig(), 6);
      src.tensors['model.layers.1.input_layernorm.weight'].data[5] = 0;
      const mla = await convertToMla(src, { kvRank: 24, ropeDim: 12, latentNorm: true, calibration });
      const direct = await logits(asSource(mla));
      const f32 = await written(mla);
      expect(f32.qLoraRank).toBe(64);
      expect(f32.names).not.toContain('blk.0.attn_q.weight');
      expect(f32.names).toEqual(expect.arrayContaining(['blk.1.attn_q_a.weight', 'blk.1.attn_q_a_norm.weight', 'blk.1.attn_q_b.weight']));
      const worst = worstOf(f32.logits, direct);
      console.log(`converted GGUF (query pair): largest |Δ logit| ${worst.toExponential(2)} of ${maxAbs(direct).toFixed(2)}`);
      expect(worst).toBeLessThan(1e-4 * Math.max(1, maxAbs(direct))); // two f32 decoders, as above
      const q8 = worstOf((await written(mla, 'q8_0')).logits, direct);
      expect(q8).toBeGreaterThan(0);
      expect(q8).toBeLessThan(0.05 * maxAbs(direct));
    });
  });

  it('a GGUF without the latent norm is a BAD_INPUT error that names it, and no file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conv-'));
    const mla = await convertToMla(inMemory(tinyLlamaConfig(), 6), { kvRank: 24, ropeDim: 12 });
    const e = await writeConvertedGguf(mla, join(dir, 'x.gguf')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(MlaError);
    expect((e as MlaError).code).toBe('BAD_INPUT');
    expect((e as MlaError).message).toMatch(/latent RMSNorm.*--latent-norm/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a GGUF with an unknown option is a BAD_INPUT error naming it (not an F32 file), and no file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conv-'));
    const mla = await convertToMla(inMemory(tinyLlamaConfig(), 6), { kvRank: 24, ropeDim: 12, latentNorm: true, calibration: Array.from({ length: 160 }, (_, i) => (i * 31 + 7) % 50) });
    // @ts-expect-error a typo
    const e = await writeConvertedGguf(mla, join(dir, 'x.gguf'), { typo: 'q8_0' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(MlaError);
    expect((e as MlaError).code).toBe('BAD_INPUT');
    expect((e as MlaError).message).toBe('unknown option "typo" in writeConvertedGguf() options (did you mean "type"?); known: type, onProgress');
    expect(readdirSync(dir)).toEqual([]);
  });

  describe('bad input: a typed MlaError naming it', () => {
    const gqa = () => inMemory(tinyLlamaConfig(), 1);
    const cases: [string, () => Promise<unknown>, string, RegExp][] = [
      ['already MLA', () => convertToMla(inMemory(tinyMlaConfig(), 1), { kvRank: 8, ropeDim: 8 }), 'BAD_CONFIG', /already MLA/],
      ['Qwen2 biases', () => convertToMla({ config: tinyQwen2Config(), tensors: {} }, { kvRank: 8, ropeDim: 8 }), 'BAD_CONFIG', /biases on q, k and v/],
      ['rope scaling', () => convertToMla({ config: tinyLlamaConfig({ rope_scaling: { type: 'linear', factor: 2 } }), tensors: {} }, { kvRank: 8, ropeDim: 8 }), 'BAD_CONFIG', /rope_scaling/],
      ['Phi-3 LongRoPE', () => convertToMla({ config: tinyPhi3Config({ rope_scaling: longRopeScaling(16) }), tensors: {} }, { kvRank: 8, ropeDim: 8 }), 'BAD_CONFIG', /the source uses rope_scaling \{"type":"longrope"/],
      ['Phi-3 partial rotary', () => convertToMla({ config: tinyPhi3Config({ partial_rotary_factor: 0.5 }), tensors: {} }, { kvRank: 8, ropeDim: 8 }), 'BAD_CONFIG', /rotates 8 of each head's 16 dims \(partial_rotary_factor\)/],
      ['odd ropeDim', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 7 }), 'BAD_INPUT', /ropeDim/],
      ['ropeDim > kvHeads·head_dim', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 34 }), 'BAD_INPUT', /ropeDim 34/],
      ['kvRank too large', () => convertToMla(gqa(), { kvRank: 65, ropeDim: 8 }), 'BAD_INPUT', /kvRank 65/],
      ['calibration too short', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 8, calibration: [1, 2, 3] }), 'BAD_INPUT', /calibration text too short/],
      ['too few samples', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 8, samples: 100 }), 'BAD_INPUT', /samples must be an integer ≥ 128/],
      ['a seed that is not an integer', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 8, seed: 0.5 }), 'BAD_INPUT', /seed must be an integer/],
      ['a window past the context', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 8, window: 129 }), 'BAD_INPUT', /window must be an integer in \[2, 128\]/],
      ['latentNorm without calibration', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 8, latentNorm: true, calibration: false }), 'BAD_INPUT', /latentNorm.*calibration: false/],
      // @ts-expect-error a string
      ['a ropeDim given as a string', () => convertToMla(gqa(), { kvRank: 8, ropeDim: '8' }), 'BAD_INPUT', /ropeDim must be an even integer ≥ 2, got "8"/],
      // @ts-expect-error a typo
      ['a misspelt option', () => convertToMla(gqa(), { kvRank: 8, ropeDim: 8, ropedim: 3 }), 'BAD_INPUT', /unknown option "ropedim" in convertToMla\(\) options \(did you mean "ropeDim"\?\)/],
      // @ts-expect-error a typo
      ['a misspelt option, before the source is read', () => convertToMla('/nowhere/at/all', { kvRank: 8, ropeDim: 8, sample: 200 }), 'BAD_INPUT', /unknown option "sample" .*did you mean "samples"/],
    ];
    it.each(cases)('%s', async (_, run, code, msg) => {
      const e = await run().then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(MlaError);
      expect((e as MlaError).code).toBe(code);
      expect((e as MlaError).message).toMatch(msg);
    });

    it('MoE source', async () => {
      const e = await convertToMla({ config: tinyMlaConfig({ n_routed_experts: 4 }), tensors: {} }, { kvRank: 8, ropeDim: 8 }).catch((x) => x);
      expect(e).toBeInstanceOf(MlaError);
    });

    it('a failed write leaves no folder behind', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'conv-'));
      const mla = await convertToMla(inMemory(tinyLlamaConfig({ num_key_value_heads: 1 }), 2), { kvRank: 16, ropeDim: 16 });
      mla.tensors.set('bad', { shape: [1], data: null as unknown as Float32Array });
      await expect(writeConvertedFolder(mla, join(dir, 'out'))).rejects.toBeInstanceOf(MlaError);
      expect(existsSync(join(dir, 'out'))).toBe(false);
      expect(readdirSync(dir)).toEqual([]);
    });

    it('a GGUF source: its tokenizer (from the metadata) encodes the calibration text and goes with the converted model', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'conv-'));
      const gguf = join(dir, 'gqa.gguf');
      await quantizeToFile(new URL('../models/fortune-gqa/', import.meta.url), gguf, { type: 'F32' });
      const text = (JSON.parse(readFileSync(new URL('../models/fortune-gqa/val_records.json', import.meta.url), 'utf8')) as string[]).slice(0, 4).join('\n\n');
      const mla = await convertToMla(gguf, { kvRank: 48, ropeDim: 48, calibration: text });
      expect(Object.keys(mla.extras).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
      const out = join(dir, 'out');
      await writeConvertedFolder(mla, out);
      const model = await loadModel(out);
      expect(model.tokenizer!.encode('Q: Why?')).toEqual((await loadModel(gguf)).tokenizer!.encode('Q: Why?'));
      model.dispose();
    });

    it('an existing --out: a model folder is replaced; a file, or a folder holding anything else, is refused and kept', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'conv-'));
      const mla = await convertToMla(inMemory(tinyLlamaConfig({ num_key_value_heads: 1 }), 2), { kvRank: 16, ropeDim: 16 });
      const out = join(dir, 'out');
      await writeConvertedFolder(mla, out);
      await writeConvertedFolder(mla, out); // again, over its own output
      expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
      writeFileSync(join(dir, 'notes.txt'), 'mine');
      mkdirSync(join(dir, 'sub'));
      for (const [path, msg] of [[dir, /holds 3 file\(s\) that are not a model's \(.*notes\.txt.*\): choose a new or empty folder/],
        [join(dir, 'notes.txt'), /exists and is not a folder/]] as const) {
        const e = await writeConvertedFolder(mla, path).catch((x) => x);
        expect(e).toBeInstanceOf(MlaError);
        expect((e as MlaError).code).toBe('BAD_INPUT');
        expect((e as MlaError).message).toMatch(msg);
      }
      expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('mine');
      expect(readdirSync(dir).sort()).toEqual(['notes.txt', 'out', 'sub']);
    });
  });
});
