// Bad input gets a typed error with a code, leaves memory untouched, and the session usable.
import { describe, expect, it } from 'vitest';
import { loadModel, MlaError, type Model } from '../src/index.js';
import { expectClose } from './helpers.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/formats/config.js';
import { quantizeToFile } from '../src/formats/gguf-quantize.js';
import { writeSafetensors } from './reference/safetensors-writer.js';
import { longRopeScaling, makeRandomCheckpoint, tinyLlamaConfig, tinyMiniCpm3Config, tinyMistralConfig, tinyMlaConfig, tinyPhi3Config, tinyQwen2Config } from './reference/model.js';

/** Each edit of `base` is BAD_CONFIG with a message matching its pattern. */
function expectConfigErrors(base: Record<string, unknown>, cases: [Record<string, unknown>, RegExp][]): void {
  for (const [over, message] of cases) {
    let err: unknown;
    try { parseConfig({ ...base, ...over }); } catch (e) { err = e; }
    expect(err, JSON.stringify(over)).toBeInstanceOf(MlaError);
    expect((err as MlaError).code).toBe('BAD_CONFIG');
    expect((err as MlaError).message).toMatch(message);
  }
}

async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<MlaError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) { err = e; }
  expect(err, `expected an MlaError ${code}`).toBeInstanceOf(MlaError);
  expect((err as MlaError).code, (err as Error).message).toBe(code);
  return err as MlaError;
}

/** A copy of the model's whole WebAssembly memory, to prove a failed call wrote nothing. */
function snapshot(model: Model): Uint8Array {
  // @ts-expect-error reaching into the decoder for the test only
  return new Uint8Array(model.decoder.heap.memory.buffer).slice();
}

function expectUnchanged(model: Model, before: Uint8Array): void {
  // @ts-expect-error as above
  const now = new Uint8Array(model.decoder.heap.memory.buffer);
  expect(now.length).toBe(before.length);
  let diff = -1;
  for (let i = 0; i < now.length; i++) if (now[i] !== before[i]) { diff = i; break; }
  expect(diff, 'first changed byte').toBe(-1);
}

const config = tinyMlaConfig({ max_position_embeddings: 32 });
const good = () => makeRandomCheckpoint(config, 5);

describe('loading bad checkpoints', () => {
  it('a wrongly shaped weight is named (BAD_SHAPE)', async () => {
    const tensors = good();
    const name = 'model.layers.1.self_attn.kv_b_proj.weight';
    const [r, c] = tensors[name].shape;
    tensors[name] = { shape: [r - 1, c], data: new Float32Array((r - 1) * c) };
    const e = await expectCode(loadModel({ config, tensors }), 'BAD_SHAPE');
    expect(e.message).toContain(name);
  });

  it('data that does not fill its shape (BAD_SHAPE)', async () => {
    const tensors = good();
    tensors['model.norm.weight'] = { shape: [64], data: new Float32Array(63) };
    await expectCode(loadModel({ config, tensors }), 'BAD_SHAPE');
  });

  it('a missing weight is named (MISSING_TENSOR)', async () => {
    const tensors = good();
    delete tensors['model.layers.0.self_attn.kv_a_layernorm.weight'];
    const e = await expectCode(loadModel({ config, tensors }), 'MISSING_TENSOR');
    expect(e.message).toContain('model.layers.0.self_attn.kv_a_layernorm.weight');
  });

  it('an unexpected weight is named (UNEXPECTED_TENSOR)', async () => {
    const tensors = good();
    tensors['model.layers.9.mlp.gate_proj.weight'] = { shape: [1], data: new Float32Array(1) };
    const e = await expectCode(loadModel({ config, tensors }), 'UNEXPECTED_TENSOR');
    expect(e.message).toContain('model.layers.9.mlp.gate_proj.weight');
  });

  it('NaN in a weight (NON_FINITE)', async () => {
    const tensors = good();
    tensors['model.layers.0.mlp.up_proj.weight'].data[17] = NaN;
    const e = await expectCode(loadModel({ config, tensors }), 'NON_FINITE');
    expect(e.message).toContain('model.layers.0.mlp.up_proj.weight');
  });

  it('a weight past f16 in a row int8 keeps in f16 (NON_FINITE, naming what holds it)', async () => {
    const tensors = good();
    const name = 'model.layers.1.self_attn.o_proj.weight'; // rows of 48: not blocks of 32, so f16 under int8
    tensors[name].data[5] = 70000;
    const e = await expectCode(loadModel({ config, tensors }, { weights: 'int8' }), 'NON_FINITE');
    expect(e.message).toContain(name);
    expect(e.message).toContain("weights 'bf16' or 'f32'");
    (await loadModel({ config, tensors }, { weights: 'bf16' })).dispose();
  });

  it('bad configs (BAD_CONFIG)', async () => {
    await expectCode(loadModel({ config: { ...config, architectures: ['GPT2LMHeadModel'] }, tensors: good() }), 'BAD_CONFIG');
    await expectCode(loadModel({ config: { ...config, kv_lora_rank: -3 }, tensors: good() }), 'BAD_CONFIG');
    await expectCode(loadModel({ config: { ...config, qk_rope_head_dim: 7 }, tensors: good() }), 'BAD_CONFIG');
    await expectCode(loadModel({ config: 'nope', tensors: good() }), 'BAD_CONFIG');
    await expectCode(loadModel({ config: { ...config, rope_scaling: { type: 'dynamic', factor: 2 } }, tensors: good() }), 'BAD_CONFIG');
    const moe = { ...config, n_routed_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 8, first_k_dense_replace: 0 };
    await expectCode(loadModel({ config: { ...moe, num_experts_per_tok: 5 }, tensors: good() }), 'BAD_CONFIG');
    await expectCode(loadModel({ config: { ...moe, scoring_func: 'relu' }, tensors: good() }), 'BAD_CONFIG');
    await expectCode(loadModel({ config: { ...moe, topk_method: 'noaux_tc', n_group: 3 }, tensors: good() }), 'BAD_CONFIG');
    // Values that are no JSON still make a message (found by fuzzing: a BigInt crashed the formatting).
    await expectCode(loadModel({ config: { ...moe, topk_method: 10n }, tensors: good() }), 'BAD_CONFIG');
    await expectCode(loadModel({ config: { ...moe, scoring_func: Object.create(null) }, tensors: good() }), 'BAD_CONFIG');
    // A dense checkpoint under an MoE config: the experts are missing, and named.
    const e = await expectCode(loadModel({ config: moe, tensors: good() }), 'MISSING_TENSOR');
    expect(e.message).toContain('model.layers.0.mlp.experts.0.gate_proj.weight');
  });

  it('Llama rope scaling it cannot read (BAD_CONFIG, naming what)', () => {
    const llama = tinyLlamaConfig({});
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ rope_scaling: { rope_type: 'dynamic', factor: 2 } }, /rope_scaling type "dynamic" is not supported for Llama-layout models \(supported: "linear", "llama3"\)/],
      [{ rope_scaling: { type: 'yarn', factor: 2, original_max_position_embeddings: 64 } }, /type "yarn" is not supported for Llama/],
      [{ rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4, original_max_position_embeddings: 64 } }, /"low_freq_factor" must be a finite number/],
      [{ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 64 } }, /0 < low_freq_factor < high_freq_factor/],
      [{ rope_scaling: { type: 'linear', factor: 0 } }, /factor must be > 0/],
      [{ rope_freq_factors: [1, 2, 3] }, /"rope_freq_factors" must be 8 positive numbers/],
      [{ rope_freq_factors: [1, 1, 1, 1, 1, 1, 1, -1] }, /"rope_freq_factors" must be 8 positive numbers/],
      [{ rope_freq_factors: new Array(8).fill(1), rope_scaling: { type: 'linear', factor: 2 } }, /both set/],
    ];
    expectConfigErrors(llama, cases);
    expectConfigErrors(tinyQwen2Config(), [[{ use_sliding_window: true }, /use_sliding_window \(Qwen2's sliding-window attention\) is not supported/]]);
    expect(() => parseConfig({ ...config, rope_freq_factors: [1, 1] })).toThrow(/for Llama-layout models only/);
    // "default" is Hugging Face's name for no scaling.
    expect(parseConfig({ ...llama, rope_scaling: { rope_type: 'default' } }).ropeFreqFactors).toBeNull();
  });

  it('Phi-3 and Mistral configs it cannot read (BAD_CONFIG, naming the key)', () => {
    const phi3 = tinyPhi3Config({ rope_scaling: longRopeScaling(16) });
    const lr = phi3.rope_scaling;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ rope_scaling: { ...lr, short_factor: [1, 2] } }, /rope_scaling.short_factor must be 8 positive numbers/],
      [{ rope_scaling: { ...lr, long_factor: [1, 1, 1, 1, 1, 1, 1, 0] } }, /rope_scaling.long_factor must be 8 positive numbers/],
      [{ rope_scaling: { ...lr, long_factor: [1, 1, 1, 1, 1, 1, 1, '2'] } }, /rope_scaling.long_factor must be 8 positive numbers/],
      [{ rope_scaling: { ...lr, long_factor: undefined } }, /rope_scaling.long_factor must be 8 positive numbers \(one per rotary frequency\), got undefined/],
      [{ rope_scaling: { ...lr, short_factor: [1, 1, 1, 1, 1, 1, 1, 1e-300] } }, /rope_scaling.short_factor holds values f32 cannot hold/],
      [{ rope_scaling: { ...lr, attention_factor: -1 } }, /rope_scaling.attention_factor must be > 0/],
      [{ rope_scaling: { ...lr, attention_factor: 'x' } }, /"attention_factor" must be a finite number/],
      [{ rope_scaling: { ...lr, type: 'yarn' } }, /rope_scaling type "yarn" is not supported for Phi-3 \(supported: "longrope"\)/],
      [{ rope_scaling: { ...lr, type: undefined } }, /rope_scaling type undefined is not supported for Phi-3/],
      [{ rope_scaling: [1] }, /"rope_scaling" must be an object or null/],
      [{ original_max_position_embeddings: 0 }, /"original_max_position_embeddings" must be an integer ≥ 2/],
      [{ partial_rotary_factor: 0.1 }, /partial_rotary_factor 0.1 must be in \(0, 1\] and rotate an even number ≥ 2 of the 16 dims of a head \(gives 1\)/],
      [{ partial_rotary_factor: 1.5 }, /partial_rotary_factor 1.5 must be in \(0, 1\]/],
      [{ partial_rotary_factor: 'half' }, /"partial_rotary_factor" must be a finite number/],
      [{ sliding_window: 0 }, /"sliding_window" must be an integer ≥ 1 or null, got 0/],
      [{ rope_scaling: null, rope_freq_factors: new Array(8).fill(1) }, /"rope_freq_factors" is for Llama-layout models only/],
      [{ rope_freq_factors: new Array(8).fill(1) }, /"rope_freq_factors" is for Llama-layout models only/],
    ];
    expectConfigErrors(phi3, cases);
    expectConfigErrors(tinyMistralConfig(), [[{ sliding_window: 2.5 }, /"sliding_window" must be an integer ≥ 1 or null, got 2.5/]]);
  });

  it('Phi-3 and Mistral: the LongRoPE set, the attention factor and the sliding window, as parsed', () => {
    const lr = longRopeScaling(16);
    // Context 128 > original 8: long factors, √(1 + ln 16 / ln 8), and a note saying how HF differs.
    const long = parseConfig(tinyPhi3Config({ rope_scaling: lr }));
    expect(long.ropeFreqFactors).toEqual((lr.long_factor as number[]).map(Math.fround));
    expect(long.ropeAttnFactor).toBe(Math.fround(Math.sqrt(1 + Math.log(16) / Math.log(8))));
    expect(long.notes?.join()).toMatch(/long_factor at every length .* Hugging Face uses short_factor while a sequence is within 8 tokens/);
    const short = parseConfig(tinyPhi3Config({ original_max_position_embeddings: 128, rope_scaling: lr }));
    expect(short.ropeFreqFactors).toEqual((lr.short_factor as number[]).map(Math.fround));
    expect(short.ropeAttnFactor).toBe(1);
    expect(parseConfig(tinyPhi3Config({ rope_scaling: { ...lr, attention_factor: 1.5 } })).ropeAttnFactor).toBe(1.5);
    expect(parseConfig(tinyPhi3Config({ rope_scaling: { ...lr, type: 'su' } })).ropeFreqFactors).toEqual(long.ropeFreqFactors);
    // The window below max_position_embeddings limits the context (exact within it); Mistral's
    // config class defaults an absent sliding_window to 4096, Phi-3's to none; null is none.
    const w = parseConfig(tinyMistralConfig({ sliding_window: 20 }));
    expect(w).toMatchObject({ maxPositions: 20, slidingWindow: { window: 20, maxPositions: 128 } });
    expect(w.notes?.join()).toMatch(/context limited to sliding_window 20 \(max_position_embeddings 128\)/);
    expect(parseConfig(tinyMistralConfig({ sliding_window: null })).maxPositions).toBe(128);
    const { sliding_window: _w, ...bare } = tinyMistralConfig({ max_position_embeddings: 32768 });
    expect(parseConfig(bare).maxPositions).toBe(4096);
    expect(parseConfig(tinyPhi3Config({ sliding_window: 16 })).maxPositions).toBe(16);
    expect(parseConfig(tinyPhi3Config({ sliding_window: 4096 }))).not.toHaveProperty('slidingWindow');
    // Models without these keep configs as before (snapshot fingerprints unchanged).
    expect(Object.keys(parseConfig(tinyLlamaConfig()))).not.toContain('notes');
    // The released configs' shapes: Phi-3-mini-4k (window 2047 of 4096, no scaling), Phi-3.5-mini
    // (LongRoPE 4096 → 131072, 48 factors per set), Phi-4-mini (partial rotary 0.75, tied).
    const mini4k = { architectures: ['Phi3ForCausalLM'], model_type: 'phi3', hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 32,
      num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 4096, original_max_position_embeddings: 4096, rms_norm_eps: 1e-5,
      rope_scaling: null, rope_theta: 10000, sliding_window: 2047, tie_word_embeddings: false, vocab_size: 32064, hidden_act: 'silu',
      attention_bias: false, bos_token_id: 1, eos_token_id: 32000, pad_token_id: 32000 };
    expect(parseConfig(mini4k)).toMatchObject({ maxPositions: 2047, ropeFreqFactors: null, attention: { heads: 32, kvHeads: 32, headDim: 96 } });
    const phi35 = { ...mini4k, max_position_embeddings: 131072, sliding_window: 262144,
      rope_scaling: { type: 'longrope', short_factor: new Array(48).fill(1.05), long_factor: new Array(48).fill(2.5) } };
    expect(parseConfig(phi35)).toMatchObject({ maxPositions: 131072, ropeAttnFactor: Math.fround(Math.sqrt(1 + Math.log(32) / Math.log(4096))) });
    expect(parseConfig(phi35).ropeFreqFactors).toEqual(new Array(48).fill(2.5));
    const phi4 = { ...phi35, num_attention_heads: 24, num_key_value_heads: 8, vocab_size: 200064, partial_rotary_factor: 0.75, tie_word_embeddings: true };
    expect(parseConfig(phi4)).toMatchObject({ attention: { headDim: 128, rotaryDim: 96 }, tieEmbeddings: true });
  });

  it('a window-limited model refuses a sequence past its window', async () => {
    const config = tinyMistralConfig({ sliding_window: 20 });
    const model = await loadModel({ config, tensors: makeRandomCheckpoint(config, 3) });
    try {
      expect(() => model.forward(Array.from({ length: 21 }, (_, i) => i % 50))).toThrow(/21 tokens exceed max_position_embeddings \(20\)/);
    } finally {
      model.dispose();
    }
  });

  it('a Phi-3 safetensors file whose fused tensor\'s byte range is short: BAD_CHECKPOINT (parts are read as ranges of it)', async () => {
    const config = tinyPhi3Config();
    const bytes = writeSafetensors(makeRandomCheckpoint(config, 3));
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    header['model.layers.0.mlp.gate_up_proj.weight'].data_offsets[1] -= 4;
    const text = new TextEncoder().encode(JSON.stringify(header).padEnd(n, ' '));
    expect(text.length).toBe(n);
    bytes.set(text, 8);
    const e = await expectCode(loadModel({ 'config.json': new TextEncoder().encode(JSON.stringify(config)), 'model.safetensors': bytes }), 'BAD_CHECKPOINT');
    expect(e.message).toMatch(/tensor "model.layers.0.mlp.gate_up_proj.weight": 49148 data bytes, but F32 \[192,64\] needs 49152/);
  });

  it('a Phi-3 checkpoint whose fused tensors do not split (BAD_SHAPE, naming the tensor)', async () => {
    const config = tinyPhi3Config();
    const tensors = makeRandomCheckpoint(config, 3);
    const qkv = 'model.layers.1.self_attn.qkv_proj.weight';
    tensors[qkv] = { shape: [60, 64], data: new Float32Array(60 * 64) };
    const e = await expectCode(loadModel({ config, tensors }), 'BAD_SHAPE');
    expect(e.message).toMatch(/model.layers.1.self_attn.qkv_proj.weight is \[60,64\], expected \[128, 64\] \(64 rows of q_proj, 32 rows of k_proj, 32 rows of v_proj\)/);
  });

  it('MiniCPM3 configs it cannot read (BAD_CONFIG, naming what), and GGUF files llama.cpp would misread (BAD_INPUT)', async () => {
    const cpm = tinyMiniCpm3Config();
    const longrope = cpm.rope_scaling;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ max_position_embeddings: 256 }, /LongRoPE past its original context \(max_position_embeddings 256 > 128\) switches to long_factor/],
      [{ rope_scaling: { ...longrope, short_factor: [1, 2] } }, /short_factor must be 4 positive numbers/],
      [{ rope_scaling: { type: 'yarn', factor: 2, original_max_position_embeddings: 64 } }, /type "yarn" is not supported for MiniCPM3 \(only "longrope"\)/],
      [{ scale_emb: -1 }, /scale_emb, scale_depth and dim_model_base must be > 0/],
    ];
    expectConfigErrors(cpm, cases);
    // Hugging Face's MiniCPM3Config: absent scalings are MiniCPM3-4B's, null ones none.
    const { scale_emb: _e, scale_depth: _s, dim_model_base: _b, ...bare } = cpm;
    expect(parseConfig(bare)).toMatchObject({ embedScale: 12, residualScale: 1.4 / Math.sqrt(2), headScale: 256 / 64 });
    expect(parseConfig({ ...cpm, scale_depth: null, dim_model_base: null })).toMatchObject({ residualScale: 1, headScale: 1 });
    const path = join(tmpdir(), `mla-never-${process.pid}.gguf`);
    // The tiny config's dim_model_base is 16; llama.cpp's minicpm3 graph fixes 256.
    const e = await expectCode(quantizeToFile({ config: cpm, tensors: makeRandomCheckpoint(cpm, 1) }, path, { type: 'Q8_0' }), 'BAD_INPUT');
    expect(e.message).toMatch(/minicpm3 fixes scale_emb 12, scale_depth 1.4 and dim_model_base 256: this model differs \(headScale\)/);
    const noLora = tinyMiniCpm3Config({ dim_model_base: 256, q_lora_rank: null });
    const f = await expectCode(quantizeToFile({ config: noLora, tensors: makeRandomCheckpoint(noLora, 1) }, path, { type: 'Q8_0' }), 'BAD_INPUT');
    expect(f.message).toMatch(/minicpm3 needs q_lora_rank/);
  });

  it('a folder that does not exist (BAD_SOURCE)', async () => {
    await expectCode(loadModel('/nonexistent/model/folder'), 'BAD_SOURCE');
    // @ts-expect-error a number is no source
    await expectCode(loadModel(42), 'BAD_SOURCE');
  });

  it('relaxed SIMD forced where it is available works; an unknown choice is refused', async () => {
    // @ts-expect-error not a build
    await expectCode(loadModel({ config, tensors: good() }, { simd: 'avx' }), 'BAD_INPUT');
    // @ts-expect-error not a build
    await expectCode(loadModel({ config, tensors: good() }, { simd: 1n }), 'BAD_INPUT');
    // @ts-expect-error not a count
    await expectCode(loadModel({ config, tensors: good() }, { threads: 2n }), 'BAD_INPUT');
  });
});

describe('bad kernels passed to loadModel', () => {
  // The smallest valid module: no imports, no exports.
  const empty = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['bytes that are no WebAssembly', { wasmBytes: new Uint8Array([1, 2, 3]) }, /^wasmBytes do not compile as WebAssembly: /],
    ['bytes that are not bytes', { wasmBytes: 'kernels.wasm' }, /^wasmBytes must be the kernel module's bytes \(an ArrayBuffer or a typed array\), got "kernels.wasm"$/],
    ['a module that is not a module', { wasmModule: {} }, /^wasmModule must be a WebAssembly.Module \(the kernels, compiled\), got \{\}$/],
    ['another module', { wasmModule: new WebAssembly.Module(empty) }, /^wasmModule is not mla-wasm's kernel module: it does not import env.memory/],
    ['another module\'s bytes', { wasmBytes: empty, threads: 2 }, /^wasmBytes are not mla-wasm's kernel module: it does not import env.memory/],
  ];
  it.each(cases)('%s: BAD_INPUT naming the option, before the model is read', async (_, options, message) => {
    // A folder that does not exist: the kernels are checked first, so the error is theirs.
    const e = await expectCode(loadModel('/nowhere/at/all', options), 'BAD_INPUT');
    expect(e.message).toMatch(message);
    // The same from the built-in model, which is read first otherwise.
    expect((await expectCode(loadModel(undefined, options), 'BAD_INPUT')).message).toBe(e.message);
  });
});

describe('running with bad input', () => {
  it('token ids out of range, not integers, NaN, or empty: BAD_TOKEN / BAD_INPUT, nothing written, session usable', async () => {
    const model = await loadModel({ config, tensors: good() });
    const s = model.createSession();
    const ok = s.prefill([1, 2, 3]);
    const before = snapshot(model);
    for (const ids of [[1, 50], [1, -1], [1.5], [NaN], [1, Infinity]]) {
      await expectCode(() => s.prefill(ids), 'BAD_TOKEN');
    }
    await expectCode(() => s.step(50), 'BAD_TOKEN');
    await expectCode(() => s.prefill([]), 'BAD_INPUT');
    await expectCode(() => model.forward([]), 'BAD_INPUT');
    await expectCode(() => model.forward([3, 99]), 'BAD_TOKEN');
    expectUnchanged(model, before);
    expect(s.position).toBe(3);
    // Still usable, and still right: the next step matches a fresh run.
    const next = s.step(4);
    const fresh = model.forward([1, 2, 3, 4]);
    expectClose(next, fresh.subarray(3 * 50, 4 * 50), 1e-5, 1e-5, 'step after the errors');
    expect(ok.length).toBe(50);
  });

  it('a position past the cache capacity: CACHE_FULL, nothing written, session usable', async () => {
    const model = await loadModel({ config, tensors: good() });
    const s = model.createSession({ contextLength: 8 });
    s.prefill([1, 2, 3, 4, 5, 6]);
    const before = snapshot(model);
    await expectCode(() => s.prefill([1, 2, 3]), 'CACHE_FULL');
    expectUnchanged(model, before);
    expect(s.position).toBe(6);
    s.step(7);
    s.step(8);
    await expectCode(() => s.step(9), 'CACHE_FULL');
    expect(s.position).toBe(8);
    s.reset();
    expect(s.position).toBe(0);
    s.prefill([1, 2, 3, 4, 5, 6, 7, 8]);
    await expectCode(() => model.forward(new Array(33).fill(1)), 'CACHE_FULL');
    await expectCode(() => model.createSession({ contextLength: 33 }), 'BAD_INPUT');
    await expectCode(() => model.createSession({ contextLength: 0 }), 'BAD_INPUT');
  });

  it('a disposed session or model: DISPOSED', async () => {
    const model = await loadModel({ config, tensors: good() });
    const s = model.createSession();
    s.prefill([1, 2]);
    s.dispose();
    await expectCode(() => s.step(1), 'DISPOSED');
    await expectCode(() => s.prefill([1]), 'DISPOSED');
    await expectCode(() => s.reset(), 'DISPOSED');
    s.dispose(); // twice is harmless
    const other = model.createSession();
    model.dispose();
    await expectCode(() => other.step(1), 'DISPOSED');
    await expectCode(() => model.createSession(), 'DISPOSED');
    await expectCode(() => model.forward([1]), 'DISPOSED');
  });

  it('an unknown attention path: BAD_INPUT', async () => {
    const model = await loadModel({ config, tensors: good() });
    // @ts-expect-error not a path
    await expectCode(() => model.createSession().step(1, { attention: 'flash' }), 'BAD_INPUT');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    // @ts-expect-error not a path
    await expectCode(() => model.createSession().step(1, { attention: cyclic }), 'BAD_INPUT');
  });

  it('an out buffer that is not a Float32Array, too short, or a view of the model\'s memory: BAD_INPUT, position unchanged', async () => {
    const model = await loadModel({ config, tensors: good() });
    const V = model.config.vocabSize;
    const s = model.createSession();
    s.prefill([1, 2]);
    // @ts-expect-error not a Float32Array
    expect((await expectCode(() => s.step(1, { out: new Array(V).fill(0) }), 'BAD_INPUT')).message).toContain('out must be a Float32Array');
    // @ts-expect-error not a Float32Array
    await expectCode(() => s.step(1, { out: new Float64Array(V) }), 'BAD_INPUT');
    expect((await expectCode(() => s.step(1, { out: new Float32Array(V - 1) }), 'BAD_INPUT')).message).toContain(`got ${V - 1} floats`);
    // @ts-expect-error reaching in for the model's memory
    const inside = model.decoder.heap.f32(0, V);
    expect((await expectCode(() => s.prefill([3], { out: inside }), 'BAD_INPUT')).message).toContain("got a view of the model's memory");
    expect(s.position).toBe(2);
    // A good one: the same logits, written into it, and it comes back as a view of it.
    const out = new Float32Array(V + 5).fill(7);
    const fresh = model.createSession();
    fresh.prefill([1, 2]);
    const want = fresh.step(3);
    const got = s.step(3, { out });
    expect(got.buffer).toBe(out.buffer);
    expect(got.length).toBe(V);
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(Array.from(out.subarray(V))).toEqual([7, 7, 7, 7, 7]);
  });

  it('logits that overflow: NON_FINITE, position unchanged', async () => {
    const tensors = good();
    tensors['lm_head.weight'].data.fill(3e38);
    const model = await loadModel({ config, tensors });
    const s = model.createSession();
    await expectCode(() => s.prefill([1, 2]), 'NON_FINITE');
    expect(s.position).toBe(0);
    // An out buffer is left as it was.
    const out = new Float32Array(model.config.vocabSize).fill(5);
    await expectCode(() => s.prefill([1, 2], { out }), 'NON_FINITE');
    expect(out.every((v) => v === 5)).toBe(true);
  });
});

describe('steady state', () => {
  it('decoding allocates no WebAssembly memory per token', async () => {
    const model = await loadModel();
    const s = model.createSession({ contextLength: 128 });
    s.prefill([256, 72, 105]);
    const used = model.memoryBytes;
    // @ts-expect-error reaching in for the test
    const size = model.decoder.heap.byteLength;
    for (let i = 0; i < 100; i++) s.step(65 + (i % 26));
    expect(model.memoryBytes).toBe(used);
    // @ts-expect-error as above
    expect(model.decoder.heap.byteLength).toBe(size);
  });

  it('disposed sessions give their cache back', async () => {
    const model = await loadModel();
    const used = model.memoryBytes;
    for (let i = 0; i < 5; i++) model.createSession({ contextLength: 192 }).dispose();
    expect(model.memoryBytes).toBe(used);
  });
});

describe('error messages name the problem, never dump objects', () => {
  const internals = /decoder|cache|heap|ptr|"par"|onDispose|\{"/;
  it('a session of another model, a disposed one, and odd values: short messages without internal fields', async () => {
    const a = await loadModel({ config, tensors: good() });
    const b = await loadModel({ config, tensors: good() });
    const theirs = b.createSession();
    theirs.prefill([1, 2, 3]);
    const disposed = a.createSession();
    disposed.dispose();
    const big = { layers: { k: {}, rows: new Array(500).fill(1) }, extra: { n: 4096 } };
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const messages: string[] = [];
    const record = async (f: () => unknown) => messages.push((await expectCode(f, 'BAD_INPUT')).message);
    await record(() => a.generate([1, 2], { session: theirs }));
    await record(() => a.generate([1, 2], { session: disposed }));
    // @ts-expect-error not a session
    await record(() => a.generate([1, 2], { session: big }));
    // @ts-expect-error not a stop list
    await record(() => a.generate([1, 2], { stop: [big] }));
    // @ts-expect-error not a signal
    await record(() => a.generate([1, 2], { signal: theirs }));
    // @ts-expect-error not a number
    await record(() => a.generate([1, 2], { temperature: new Array(1000).fill(0.5) }));
    // @ts-expect-error not a path
    await record(() => a.createSession().step(1, { attention: big }));
    // @ts-expect-error not a path
    await record(() => a.createSession().step(1, { attention: cyclic }));
    // @ts-expect-error not a string
    await record(() => a.createSession().step(1, { attention: 'x'.repeat(500) }));
    // @ts-expect-error not a build
    await record(() => loadModel({ config, tensors: good() }, { simd: theirs }));
    // @ts-expect-error not a count
    await record(() => loadModel({ config, tensors: good() }, { threads: big }));
    expect(messages[0]).toContain('got a session of another model');
    expect(messages[1]).toContain('got a disposed session');
    for (const m of messages) {
      expect(m.length, m).toBeLessThan(180);
      expect(m, m).not.toMatch(internals);
    }
    // The session from the other model is untouched and still works.
    expect(theirs.position).toBe(3);
    theirs.step(4);
    expect(theirs.position).toBe(4);
  });
  it('values as they are: NaN and Infinity by name, strings quoted (a string is not the number it spells)', async () => {
    const model = await loadModel({ config, tensors: good() });
    const message = async (f: () => unknown, code = 'BAD_INPUT') => (await expectCode(f, code)).message;
    expect(await message(() => model.generate([1, 2], { temperature: NaN }))).toContain('got NaN');
    expect(await message(() => model.generate([1, 2], { topP: -Infinity }))).toContain('got -Infinity');
    const s = model.createSession({ contextLength: 8 });
    // @ts-expect-error a string id
    expect(await message(() => s.step('1'), 'BAD_TOKEN')).toContain('token id "1" at index 0');
    expect(await message(() => s.prefill([1, NaN]), 'BAD_TOKEN')).toContain('token id NaN at index 1');
    // @ts-expect-error a string length
    expect(await message(() => model.createSession({ contextLength: '10' }))).toContain('got "10"');
    // @ts-expect-error a string length
    expect(await message(() => model.memoryFor('int8', { contextLength: '5' }))).toContain('got "5"');
    // @ts-expect-error a string position
    expect(await message(() => s.truncate('0'))).toContain('got "0"');
    // @ts-expect-error a string position
    expect(await message(() => s.skipTo('0'))).toContain('got "0"');
    const snap = s.snapshot();
    // @ts-expect-error a string length
    expect(await message(() => model.restoreSession(snap, { contextLength: '8' }))).toContain('got "8"');
    expect(s.position).toBe(0);
    model.dispose();
  });
});

describe('unknown options are refused everywhere, the same way', () => {
  it('loadModel, createSession, prefill, step, forward and generate: BAD_INPUT naming the key and the known ones', async () => {
    // @ts-expect-error a typo
    let e = await expectCode(loadModel({ config, tensors: good() }, { thread: 2 }), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "thread" in loadModel() options (did you mean "threads"?); known: simd, threads, wasmModule, wasmBytes, onProgress, weights, file, revision, hubUrl, cacheDir, onDownload');
    // @ts-expect-error a typo
    e = await expectCode(loadModel({ config, tensors: good() }, { simdd: 'simd' }), 'BAD_INPUT');
    expect(e.message).toContain('"simdd"');
    expect(e.message).toContain('did you mean "simd"?');
    // @ts-expect-error not an object
    await expectCode(loadModel({ config, tensors: good() }, 'simd'), 'BAD_INPUT');

    const model = await loadModel({ config, tensors: good() });
    // @ts-expect-error a typo
    e = await expectCode(() => model.createSession({ contextLen: 8 }), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "contextLen" in createSession() options (did you mean "contextLength"?); known: contextLength, cache');
    const s = model.createSession();
    s.prefill([1, 2]);
    // @ts-expect-error a typo
    e = await expectCode(() => s.prefill([3], { atention: 'naive' }), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "atention" in prefill() options (did you mean "attention"?); known: attention, out');
    // @ts-expect-error a typo
    e = await expectCode(() => s.step(3, { output: new Float32Array(50) }), 'BAD_INPUT');
    expect(e.message).toContain('unknown option "output" in step() options; known: attention, out');
    // @ts-expect-error not an object
    await expectCode(() => s.step(3, null), 'BAD_INPUT');
    // @ts-expect-error a typo
    e = await expectCode(() => model.forward([1, 2], { attn: 'naive' }), 'BAD_INPUT');
    expect(e.message).toContain('unknown option "attn" in forward() options; known: attention');
    // @ts-expect-error a typo
    e = await expectCode(() => model.generate([1, 2], { maxNewToken: 3 }), 'BAD_INPUT');
    expect(e.message).toContain('unknown option "maxNewToken" in generate() options (did you mean "maxNewTokens"?); known: maxNewTokens,');
    // Nothing ran: the session is where it was, and goes on.
    expect(s.position).toBe(2);
    s.step(3);
    expect(s.position).toBe(3);
  });

  it('memoryFor, stepBatch entries, the tokenizer\'s calls: BAD_INPUT naming the key and the closest known one', async () => {
    const model = await loadModel(); // the built-in model: it has a tokenizer
    // @ts-expect-error a typo
    let e = await expectCode(() => model.memoryFor('int4', { contextLenght: 5 }), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "contextLenght" in memoryFor() options (did you mean "contextLength"?); known: cache, contextLength');
    const s = model.createSession({ contextLength: 8 });
    s.prefill([256, 65]);
    // @ts-expect-error not a BatchStep
    e = await expectCode(() => model.stepBatch([{ session: s, id: 66, foo: 1 }]), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "foo" in stepBatch() entry 0; known: session, id');
    expect(s.position).toBe(2);
    // @ts-expect-error a typo
    e = await expectCode(() => model.tokenizer!.encode('x', { addSpecial: true }), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "addSpecial" in encode() options (did you mean "addSpecialTokens"?); known: addSpecialTokens');
    // @ts-expect-error a typo
    e = await expectCode(() => model.tokenizer!.decode([65], { skipSpecial: true }), 'BAD_INPUT');
    expect(e.message).toContain('(did you mean "skipSpecialTokens"?)');
    // @ts-expect-error a typo
    e = await expectCode(() => model.tokenizer!.createStreamDecoder({ skipSpecialToken: true }), 'BAD_INPUT');
    expect(e.message).toContain('(did you mean "skipSpecialTokens"?)');
    // @ts-expect-error a typo
    e = await expectCode(() => model.tokenizer!.applyChatTemplate([{ role: 'user', content: 'x' }], { generationPrompt: false }), 'BAD_INPUT');
    expect(e.message).toContain('(did you mean "addGenerationPrompt"?)');
    model.dispose();
  });

  it('a key that is part of a known one (or holds one) is suggested; a short one is not', async () => {
    const model = await loadModel({ config, tensors: good() });
    // @ts-expect-error the start of a known name
    let e = await expectCode(() => model.createSession({ context: 10 }), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "context" in createSession() options (did you mean "contextLength"?); known: contextLength, cache');
    // @ts-expect-error a known name and more
    e = await expectCode(() => model.createSession({ cacheFormat: 'f32' }), 'BAD_INPUT');
    expect(e.message).toContain('(did you mean "cache"?)');
    // @ts-expect-error not a known name
    e = await expectCode(() => model.createSession({ length: 10 }), 'BAD_INPUT');
    expect(e.message).toContain('(did you mean "contextLength"?)');
    // @ts-expect-error three letters are no hint
    e = await expectCode(() => model.createSession({ con: 10 }), 'BAD_INPUT');
    expect(e.message).toBe('unknown option "con" in createSession() options; known: contextLength, cache');
    model.dispose();
  });
});
